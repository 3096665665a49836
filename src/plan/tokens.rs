//! Owns: service-account tokens as the plans must keep them: who signs them with which key and
//! who verifies them with which (the playbook's `tokens`), the pairs that hold before a
//! change, and what a change would break (a signer's tokens rejected, tokens already out
//! rejected), checked after every step of a rotation and on replay.
//! Must not: do I/O, or decide how a key is kept (the rotation planner splits it off).

use std::collections::{BTreeMap, BTreeSet};

use crate::gather::facts::{NodeFacts, flags_now};
use crate::playbook::Playbook;

/// One use of a service-account key on a node (the playbook's `tokens`): who, with which flag.
struct TokenUse<'p> {
    node: usize,
    component: &'p crate::playbook::Component,
    key: &'p str,
    signs: bool,
}

impl TokenUse<'_> {
    fn label(&self, nodes: &[NodeFacts], path: &str) -> String {
        format!("{} on {} ({} {path})", self.component.name, nodes[self.node].name, self.key)
    }
}

/// Every use of a service-account key the playbook's `tokens` names, on the nodes where its
/// component runs and kcert read the file it names (only a file kcert read can be one it
/// changes), in a fixed order.
fn token_uses<'p>(pb: &'p Playbook, nodes: &[NodeFacts]) -> Vec<TokenUse<'p>> {
    let Some(t) = &pb.tokens else { return Vec::new() };
    let mut out = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        for (u, signs) in t.signers.iter().map(|u| (u, true)).chain(t.verifiers.iter().map(|u| (u, false))) {
            let Some(c) = pb.component(&u.component) else { continue };
            let read = n.pki.refs.get(&(u.component.clone(), u.key.clone())).is_some_and(|p| n.files.contains_key(p));
            if n.pki.components.contains_key(&u.component) && read {
                out.push(TokenUse { node: i, component: c, key: &u.key, signs });
            }
        }
    }
    out
}

/// Service-account tokens as the files stand before any change: which signer/verifier pairs
/// hold (a token the signer makes, the verifier accepts), and the keys tokens already out
/// were signed with. A plan must keep every pair that held and accept every such token.
pub struct TokenBaseline {
    /// Every use, as (node index, component index in the playbook, key flag, signs): found
    /// once, as they depend only on the facts (a check after every step walks only these).
    uses: Vec<Use>,
    held: BTreeSet<(usize, usize)>,
    /// (who signed them, the key, the verifiers that accept them).
    issued: Vec<(String, Vec<u8>, Vec<usize>)>,
}

impl TokenBaseline {
    pub fn new(pb: &Playbook, nodes: &[NodeFacts]) -> TokenBaseline {
        let get = |node: &str, path: &str| nodes.iter().find(|n| n.name == node).and_then(|n| n.files.get(path).map(|b| b.to_vec()));
        let uses: Vec<Use> = token_uses(pb, nodes)
            .into_iter()
            .filter_map(|u| Some((u.node, pb.components.iter().position(|c| std::ptr::eq(c, u.component))?, u.key.to_string(), u.signs)))
            .collect();
        let state = token_state(pb, nodes, &uses, &get);
        let mut held = BTreeSet::new();
        let mut issued = Vec::new();
        for (si, (_, s, key)) in state.iter().enumerate().filter(|(_, (u, _, _))| u.signs) {
            let Ok(Some(k)) = key.as_ref().map(|ks| ks.first().cloned()) else { continue };
            let accept: Vec<usize> = state.iter().enumerate().filter(|(_, (u, _, ks))| !u.signs && ks.as_ref().is_ok_and(|ks| ks.contains(&k))).map(|(vi, _)| vi).collect();
            held.extend(accept.iter().map(|&vi| (si, vi)));
            if !issued.iter().any(|(_, x, _)| *x == k) {
                issued.push((s.clone(), k, accept));
            }
        }
        TokenBaseline { uses, held, issued }
    }

    /// Whether a change to node `i`'s files can change what the tokens' keys are: only the
    /// nodes with a use (a step that changes none of them leaves every token edge as it was).
    pub fn involves(&self, i: usize) -> bool {
        self.uses.iter().any(|(n, ..)| *n == i)
    }

    /// The token edges a plan is checked on: signer to verifier, and tokens already out to
    /// every verifier that accepts them.
    pub fn edges(&self) -> usize {
        self.held.len() + self.issued.iter().map(|(_, _, v)| v.len()).sum::<usize>()
    }
}

/// A use as the baseline keeps it: (node index, component index in the playbook, key flag, signs).
type Use = (usize, usize, String, bool);

/// A use with what its file holds now: its label, and its public keys or why there are none.
type UseState<'p> = (TokenUse<'p>, String, Result<Vec<Vec<u8>>, String>);

/// Each use with what its file holds now.
fn token_state<'p>(pb: &'p Playbook, nodes: &[NodeFacts], uses: &'p [Use], get: &dyn Fn(&str, &str) -> Option<Vec<u8>>) -> Vec<UseState<'p>> {
    let mut flags: BTreeMap<(usize, &str), Option<BTreeMap<String, String>>> = BTreeMap::new();
    uses.iter()
        .map(|(node, c, key, signs)| TokenUse { node: *node, component: &pb.components[*c], key, signs: *signs })
        .map(|u| {
            let n = &nodes[u.node];
            let f = flags.entry((u.node, u.component.name.as_str())).or_insert_with(|| flags_now(u.component, &n.pki, &|p| get(&n.name, p)));
            let path = f.as_ref().and_then(|f| f.get(u.key)).cloned().unwrap_or_default();
            let label = u.label(nodes, &path);
            let keys = match get(&n.name, &path) {
                None => Err(format!("{label} names no readable file")),
                Some(b) => match crate::pki::sign::public_keys(&b) {
                    k if k.is_empty() => Err(format!("{label} holds no key")),
                    k => Ok(k),
                },
            };
            (u, label, keys)
        })
        .collect()
}

/// Every way service-account tokens would stop verifying with the files as `get` has them
/// (`when`: after which step): a signer whose tokens a verifier accepted and no longer does,
/// or a token already out that a verifier no longer accepts.
pub fn token_problems(pb: &Playbook, nodes: &[NodeFacts], base: &TokenBaseline, get: &dyn Fn(&str, &str) -> Option<Vec<u8>>, when: &str) -> Vec<String> {
    let state = token_state(pb, nodes, &base.uses, get);
    let mut out = Vec::new();
    for &(si, vi) in &base.held {
        let ((_, s, sk), (_, v, vk)) = (&state[si], &state[vi]);
        match (sk, vk) {
            (Err(e), _) | (_, Err(e)) => out.push(format!("{when}: {e}: service-account tokens would stop verifying")),
            (Ok(sk), Ok(vk)) if !sk.first().is_some_and(|k| vk.contains(k)) => {
                out.push(format!("{when}: tokens {s} signs would not verify at {v}: it no longer holds that key"))
            }
            _ => {}
        }
    }
    for (who, key, accept) in &base.issued {
        for &vi in accept {
            let (_, v, vk) = &state[vi];
            if vk.as_ref().is_ok_and(|vk| !vk.contains(key)) {
                out.push(format!("{when}: tokens signed before the run by {who} would no longer verify at {v}: every service-account token in the cluster would be rejected"));
            }
        }
    }
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gather::facts::NodePki;

    const PKI: &str = "/etc/kubernetes/pki";

    fn manifest(component: &str, flags: &[(&str, &str)]) -> Vec<u8> {
        let args: String = flags.iter().map(|(k, v)| format!("    - {k}={v}\n")).collect();
        format!("apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - command:\n    - {component}\n{args}    name: {component}\n").into_bytes()
    }

    /// A kubeadm control-plane node whose controller-manager signs tokens with `signer` and
    /// whose apiserver verifies them with `verifier` (paths in `files`).
    fn node(name: &str, signer: &str, verifier: &str, files: &[(&str, Vec<u8>)]) -> NodeFacts {
        let pb = crate::playbook::builtin("kubeadm").unwrap();
        let mut pki = NodePki::default();
        let mut all: BTreeMap<String, Vec<u8>> = files.iter().map(|(p, b)| (p.to_string(), b.clone())).collect();
        for (c, flag, path) in [("kube-controller-manager", "--service-account-private-key-file", signer), ("kube-apiserver", "--service-account-key-file", verifier)] {
            let src = pb.component(c).unwrap().manifest.clone().unwrap();
            all.insert(src.clone(), manifest(c, &[(flag, path)]));
            pki.components.insert(c.into(), [(flag.to_string(), path.to_string())].into());
            pki.refs.insert((c.into(), flag.into()), path.into());
        }
        NodeFacts { name: name.into(), address: "10.0.0.1".into(), control_plane: true, offline: true, pki, files: all.into_iter().map(|(p, b)| (p, b.into())).collect(), hostname: None }
    }

    #[test]
    fn tokens_must_keep_verifying_after_every_change_to_their_keys() {
        let pb = crate::playbook::builtin("kubeadm").unwrap();
        let old = rcgen::KeyPair::generate().unwrap().serialize_pem().into_bytes();
        let new = rcgen::KeyPair::generate().unwrap().serialize_pem().into_bytes();
        let (sa, copy) = (format!("{PKI}/sa.key"), format!("{PKI}/sa-old.key"));
        let nodes = vec![node("cp1", &sa, &sa, &[(&sa, old.clone())])];
        let base = TokenBaseline::new(&pb, &nodes);
        assert_eq!(base.edges(), 2, "signer -> verifier, and the tokens it issued -> verifier");
        // A node with no use of the keys (a worker) cannot change them: the planner skips the
        // check after a step that touched only such nodes.
        let worker = NodeFacts { name: "w1".into(), address: "10.0.1.1".into(), control_plane: false, offline: true, pki: NodePki::default(), files: BTreeMap::new(), hostname: None };
        let with_worker = TokenBaseline::new(&pb, &[worker, nodes[0].clone()]);
        assert!(!with_worker.involves(0) && with_worker.involves(1), "only the control-plane node holds a use");
        fn files(f: Vec<(&str, Vec<u8>)>) -> impl Fn(&str, &str) -> Option<Vec<u8>> {
            let f: Vec<(String, Vec<u8>)> = f.into_iter().map(|(p, b)| (p.to_string(), b)).collect();
            move |_: &str, p: &str| f.iter().find(|(q, _)| q == p).map(|(_, b)| b.clone())
        }
        let m = |c: &str, flag: &str, path: &str| (pb.component(c).unwrap().manifest.clone().unwrap(), manifest(c, &[(flag, path)]));
        let (kcm, api) = (m("kube-controller-manager", "--service-account-private-key-file", &sa), m("kube-apiserver", "--service-account-key-file", &sa));
        // As it stands: nothing to say.
        let same = files(vec![(sa.as_str(), old.clone()), (&kcm.0, kcm.1.clone()), (&api.0, api.1.clone())]);
        assert!(token_problems(&pb, &nodes, &base, &same, "now").is_empty());
        // The key file replaced by another key: tokens already out stop verifying.
        let swapped = files(vec![(sa.as_str(), new.clone()), (&kcm.0, kcm.1.clone()), (&api.0, api.1.clone())]);
        let p = token_problems(&pb, &nodes, &base, &swapped, "after S5");
        assert!(p.iter().any(|x| x.contains("tokens signed before the run") && x.contains("after S5")), "{p:?}");
        // The signer moved to a copy of the old key while the verifier kept it: all good;
        // the verifier moved to a new key while the signer kept the old: said.
        let kcm2 = m("kube-controller-manager", "--service-account-private-key-file", &copy);
        let split = files(vec![(sa.as_str(), new.clone()), (copy.as_str(), old.clone()), (&kcm2.0, kcm2.1.clone()), (&api.0, api.1.clone())]);
        let p = token_problems(&pb, &nodes, &base, &split, "s");
        assert!(p.iter().any(|x| x.contains("would not verify at kube-apiserver on cp1")), "{p:?}");
        let api2 = m("kube-apiserver", "--service-account-key-file", &copy);
        let both = files(vec![(sa.as_str(), new), (copy.as_str(), old), (&kcm2.0, kcm2.1), (&api2.0, api2.1)]);
        assert!(token_problems(&pb, &nodes, &base, &both, "s").is_empty());
        // A key file kcert never read (kubeadm's sa.key) is no edge: it is never written.
        let unread = vec![node("cp1", &sa, &sa, &[])];
        assert_eq!(TokenBaseline::new(&pb, &unread).edges(), 0);
    }
}
