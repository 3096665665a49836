//! Owns: simulating a plan on the model, step by step, and checking DESIGN.md's invariant 1
//! (trust continuity) after every step: for every edge, the client's certificate (as the
//! client has loaded it) chains to a CA the server has loaded as trusted, and the server's
//! certificate to a CA the client trusts.
//! Must not: do I/O or build plans; it only judges them.

use std::collections::{BTreeMap, BTreeSet};

use super::model::{CaId, Content, Edge, Effect, Effects, End, Model, Reader};

/// Why a plan is refused: where it breaks and which edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stage {stage:?}, after step {step} ({what}): edge {edge} breaks: {why}")]
pub struct Violation {
    pub stage: String,
    /// 1-based index of the step after which the invariant fails (0: before the stage).
    pub step: usize,
    pub what: String,
    pub edge: String,
    pub why: String,
}

/// Files on disk and, per component, the files as it loaded them at its last start; every
/// name and content borrowed from the model and the plan (a check after each of tens of
/// thousands of steps allocates nothing).
#[derive(Clone)]
struct State<'m> {
    disk: BTreeMap<(&'m str, &'m str), &'m Content>,
    loaded: BTreeMap<(&'m str, &'m str), BTreeMap<&'m str, &'m Content>>,
    /// (node, component) -> the component, looked up for every side of every check.
    readers: BTreeMap<(&'m str, &'m str), &'m Reader>,
    model: &'m Model,
}

impl<'m> State<'m> {
    fn new(model: &'m Model) -> State<'m> {
        let disk: BTreeMap<(&str, &str), &Content> = model.files.iter().map(|(k, c)| ((k.node.as_str(), k.path.as_str()), c)).collect();
        let mut loaded = BTreeMap::new();
        for c in &model.readers {
            loaded.insert((c.node.as_str(), c.name.as_str()), snapshot(&disk, &c.node, &c.reads));
        }
        let readers = model.readers.iter().map(|c| ((c.node.as_str(), c.name.as_str()), c)).collect();
        State { disk, loaded, readers, model }
    }

    /// A step's change: a file written, or a component restarted (it loads what is on disk).
    fn apply(&mut self, step: &'m Effect) {
        match step {
            Effect::Write { node, path, content } => {
                self.disk.insert((node.as_str(), path.as_str()), content);
            }
            Effect::Restart { node, component } => {
                let reads = self.readers.get(&(node.as_str(), component.as_str())).map(|c| c.reads.as_slice()).unwrap_or(&[]);
                let snap = snapshot(&self.disk, node, reads);
                self.loaded.insert((node.as_str(), component.as_str()), snap);
            }
        }
    }

    /// What a side sees of one of its files: fresh clients read the disk, the rest what they loaded.
    fn view(&self, side: &End, path: &str) -> Option<&'m Content> {
        let fresh = self.readers.get(&(side.node.as_str(), side.component.as_str())).is_none_or(|c| c.fresh);
        if fresh {
            return self.disk.get(&(side.node.as_str(), path)).copied();
        }
        self.loaded.get(&(side.node.as_str(), side.component.as_str())).and_then(|m| m.get(path)).copied()
    }

    fn presents(&self, side: &End) -> Result<Option<&'m CaId>, String> {
        let Some(path) = &side.cert else { return Ok(None) };
        match self.view(side, path) {
            Some(Content::Leaf { signer }) => Ok(Some(signer)),
            Some(Content::Kubeconfig { client_signer, .. }) => Ok(client_signer.as_ref()),
            Some(Content::Trust { .. }) => Err(format!("{path} holds no leaf")),
            None => Err(format!("{}:{path} is missing or unreadable", side.node)),
        }
    }

    fn trusts(&self, side: &End) -> Result<Option<&'m BTreeSet<CaId>>, String> {
        let Some(path) = &side.trust else { return Ok(None) };
        match self.view(side, path) {
            Some(Content::Trust { cas }) => Ok(Some(cas)),
            Some(Content::Kubeconfig { trusts, .. }) => Ok(Some(trusts)),
            Some(Content::Leaf { .. }) => Err(format!("{path} is a leaf, not a trust bundle")),
            None => Err(format!("{}:{path} is missing or unreadable", side.node)),
        }
    }

    fn check(&self, e: &Edge) -> Result<(), String> {
        let pair = [(&e.client, &e.server, "client"), (&e.server, &e.client, "server")];
        for (presenter, verifier, role) in pair {
            let (Some(signer), Some(trust)) = (self.presents(presenter)?, self.trusts(verifier)?) else { continue };
            if !self.model.accepts(trust, signer) {
                let held: Vec<&str> = trust.iter().map(String::as_str).collect();
                return Err(format!("the {role}'s certificate is signed by {signer}, which the {} does not trust (it trusts {})", if role == "client" { "server" } else { "client" }, held.join(", ")));
            }
        }
        Ok(())
    }
}

fn snapshot<'m>(disk: &BTreeMap<(&'m str, &'m str), &'m Content>, node: &'m str, reads: &'m [String]) -> BTreeMap<&'m str, &'m Content> {
    reads.iter().filter_map(|p| disk.get(&(node, p.as_str())).map(|c| (p.as_str(), *c))).collect()
}

fn describe(step: &Effect) -> String {
    match step {
        Effect::Write { node, path, .. } => format!("write {node}:{path}"),
        Effect::Restart { node, component } => format!("restart {component} on {node}"),
    }
}

/// The edges broken as the model stands, before anything changes: (index, why).
pub fn broken(model: &Model) -> Vec<(usize, String)> {
    let state = State::new(model);
    model.edges.iter().enumerate().filter_map(|(i, e)| state.check(e).err().map(|why| (i, why))).collect()
}

/// Simulates `plan` on `model`; the first broken edge refuses the plan. Every edge is
/// checked once before the first stage; after a step, only the edges that step can change:
/// a write, those with a side that reads the written file from disk (a fresh reader); a
/// restart, those with a side that is the restarted component. Every other edge sees what it
/// saw before, so by induction every edge holds after every step. Each stage is judged on a
/// core of its own, from the state the stages before it leave (their steps applied unchecked:
/// each is judged by its own job); the earliest stage that breaks an edge is the answer, so
/// the verdict is the one a step-by-step run gives.
pub fn prove<'m>(model: &'m Model, plan: &'m [Effects]) -> Result<(), Violation> {
    let base = State::new(model);
    let index = edge_index(model, &base);
    let stages: Vec<usize> = (0..plan.len()).collect();
    let verdicts = crate::par::map(&stages, |&k| {
        let mut state = base.clone();
        plan[..k].iter().flat_map(|s| &s.effects).for_each(|step| state.apply(step));
        judge(model, &index, state, &plan[k], k == 0)
    });
    verdicts.into_iter().find_map(Result::err).map_or(Ok(()), Err)
}

/// One stage's steps, from `state` (every edge checked first when it is the first stage).
fn judge<'m>(model: &'m Model, (by_file, by_reader): &(EdgeIndex<'m>, EdgeIndex<'m>), mut state: State<'m>, stage: &'m Effects, first: bool) -> Result<(), Violation> {
    let check = |state: &State, edges: &mut dyn Iterator<Item = &Edge>, step: usize, what: &dyn Fn() -> String| -> Result<(), Violation> {
        for e in edges {
            if let Err(why) = state.check(e) {
                return Err(Violation { stage: stage.name.clone(), step, what: what(), edge: e.label(), why });
            }
        }
        Ok(())
    };
    if first {
        check(&state, &mut model.edges.iter(), 0, &|| "before the stage".into())?;
    }
    let none: &[usize] = &[];
    for (i, step) in stage.effects.iter().enumerate() {
        state.apply(step);
        let touched = match step {
            Effect::Write { node, path, .. } => by_file.get(&(node.as_str(), path.as_str())).map_or(none, Vec::as_slice),
            Effect::Restart { node, component } => by_reader.get(&(node.as_str(), component.as_str())).map_or(none, Vec::as_slice),
        };
        check(&state, &mut touched.iter().map(|&j| &model.edges[j]), i + 1, &|| describe(step))?;
    }
    Ok(())
}

type EdgeIndex<'m> = std::collections::HashMap<(&'m str, &'m str), Vec<usize>>;

/// Which edges a step can change: by (node, file) read from disk by a fresh side, and by
/// (node, component) of a side that sees what it loaded at its last start.
fn edge_index<'m>(model: &'m Model, state: &State<'m>) -> (EdgeIndex<'m>, EdgeIndex<'m>) {
    let mut by_file: EdgeIndex = Default::default();
    let mut by_reader: EdgeIndex = Default::default();
    for (i, e) in model.edges.iter().enumerate() {
        for side in [&e.client, &e.server] {
            let fresh = state.readers.get(&(side.node.as_str(), side.component.as_str())).is_none_or(|c| c.fresh);
            if fresh {
                for path in [&side.cert, &side.trust].into_iter().flatten() {
                    let v = by_file.entry((side.node.as_str(), path.as_str())).or_default();
                    if v.last() != Some(&i) {
                        v.push(i);
                    }
                }
            } else {
                let v = by_reader.entry((side.node.as_str(), side.component.as_str())).or_default();
                if v.last() != Some(&i) {
                    v.push(i);
                }
            }
        }
    }
    (by_file, by_reader)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::model::FileId;
    

    fn trust(cas: &[&str]) -> Content {
        Content::Trust { cas: cas.iter().map(|s| s.to_string()).collect() }
    }
    fn leaf(ca: &str) -> Content {
        Content::Leaf { signer: ca.into() }
    }

    /// Two control-plane nodes; each apiserver serves apiserver.crt and trusts ca.crt for
    /// clients; each node's admin.conf (read fresh by kubectl) talks to its own apiserver;
    /// the apiservers are clients of each node's kubelet, which trusts ca.crt too.
    fn cluster() -> Model {
        let mut m = Model::default();
        for n in ["cp1", "cp2"] {
            m.files.insert(FileId::new(n, "ca.crt"), trust(&["ca@old"]));
            m.files.insert(FileId::new(n, "apiserver.crt"), leaf("ca@old"));
            m.files.insert(FileId::new(n, "kubelet-client.crt"), leaf("ca@old"));
            m.files.insert(FileId::new(n, "admin.conf"), Content::Kubeconfig { client_signer: Some("ca@old".into()), trusts: ["ca@old".to_string()].into() });
            m.files.insert(FileId::new(n, "kubelet.crt"), leaf("ca@old"));
            m.readers.push(Reader { node: n.into(), name: "kube-apiserver".into(), reads: vec!["ca.crt".into(), "apiserver.crt".into(), "kubelet-client.crt".into()], fresh: false });
            m.readers.push(Reader { node: n.into(), name: "kubelet".into(), reads: vec!["ca.crt".into(), "kubelet.crt".into()], fresh: false });
            m.readers.push(Reader { node: n.into(), name: "kubectl".into(), reads: vec!["admin.conf".into()], fresh: true });
            m.edges.push(Edge {
                name: "admin.conf -> kube-apiserver".into(),
                client: End { node: n.into(), component: "kubectl".into(), cert: Some("admin.conf".into()), trust: Some("admin.conf".into()) },
                server: End { node: n.into(), component: "kube-apiserver".into(), cert: Some("apiserver.crt".into()), trust: Some("ca.crt".into()) },
            });
        }
        for a in ["cp1", "cp2"] {
            for k in ["cp1", "cp2"] {
                m.edges.push(Edge {
                    name: "kube-apiserver -> kubelet".into(),
                    client: End { node: a.into(), component: "kube-apiserver".into(), cert: Some("kubelet-client.crt".into()), trust: Some("ca.crt".into()) },
                    server: End { node: k.into(), component: "kubelet".into(), cert: Some("kubelet.crt".into()), trust: Some("ca.crt".into()) },
                });
            }
        }
        m
    }

    fn per_node(f: impl Fn(&str) -> Vec<Effect>) -> Vec<Effect> {
        ["cp1", "cp2"].iter().flat_map(|n| f(n)).collect()
    }

    fn restarts(n: &str) -> Vec<Effect> {
        ["kube-apiserver", "kubelet"].iter().map(|c| Effect::Restart { node: n.into(), component: c.to_string() }).collect()
    }

    fn resign(n: &str, ca: &str) -> Vec<Effect> {
        let mut v: Vec<Effect> = ["apiserver.crt", "kubelet-client.crt", "kubelet.crt"].iter().map(|p| Effect::Write { node: n.into(), path: p.to_string(), content: leaf(ca) }).collect();
        v.push(Effect::Write { node: n.into(), path: "admin.conf".into(), content: Content::Kubeconfig { client_signer: Some(ca.into()), trusts: ["ca@old".to_string(), "ca@new".to_string()].into() } });
        v
    }

    fn runbook() -> Vec<Effects> {
        let both = || trust(&["ca@old", "ca@new"]);
        let bundle = |n: &str| {
            let mut v = vec![
                Effect::Write { node: n.into(), path: "ca.crt".into(), content: both() },
                Effect::Write { node: n.into(), path: "admin.conf".into(), content: Content::Kubeconfig { client_signer: Some("ca@old".into()), trusts: ["ca@old".to_string(), "ca@new".to_string()].into() } },
            ];
            v.extend(restarts(n));
            v
        };
        let sign = |n: &str| {
            let mut v = resign(n, "ca@new");
            v.extend(restarts(n));
            v
        };
        let prune = |n: &str| {
            let mut v = vec![
                Effect::Write { node: n.into(), path: "ca.crt".into(), content: trust(&["ca@new"]) },
                Effect::Write { node: n.into(), path: "admin.conf".into(), content: Content::Kubeconfig { client_signer: Some("ca@new".into()), trusts: ["ca@new".to_string()].into() } },
            ];
            v.extend(restarts(n));
            v
        };
        vec![
            Effects { name: "S2 trust old+new".into(), effects: per_node(bundle) },
            Effects { name: "S4 re-sign leaves".into(), effects: per_node(sign) },
            Effects { name: "S5 prune".into(), effects: per_node(prune) },
        ]
    }

    #[test]
    fn the_runbook_order_keeps_every_edge_at_every_step() {
        prove(&cluster(), &runbook()).unwrap();
    }

    #[test]
    fn re_signing_leaves_before_trust_is_bundled_is_refused() {
        let naive = vec![Effects { name: "S4 re-sign leaves".into(), effects: per_node(|n| resign(n, "ca@new")) }];
        let err = prove(&cluster(), &naive).unwrap_err();
        assert_eq!(err.stage, "S4 re-sign leaves");
        // kubectl reads admin.conf fresh: the first write that it sees breaks it at once.
        assert!(err.edge.contains("admin.conf -> kube-apiserver"), "{err}");
        assert!(err.why.contains("ca@new"), "{err}");
    }

    #[test]
    fn a_restart_inside_a_batch_is_checked_against_components_not_yet_restarted() {
        // Trust bundled and loaded on cp1 only; cp1 then restarts with a new-CA client cert
        // while cp2's kubelet still has only the old CA loaded: refused at that restart.
        let mut plan = runbook();
        plan[0].effects.retain(|s| !matches!(s, Effect::Restart { node, .. } if node == "cp2"));
        let err = prove(&cluster(), &plan).unwrap_err();
        assert_eq!(err.stage, "S4 re-sign leaves");
        assert!(err.what.starts_with("restart kube-apiserver on cp1"), "{err}");
        assert!(err.edge.contains("cp1/kube-apiserver -> cp2/kubelet"), "{err}");
    }

    #[test]
    fn pruning_before_every_leaf_is_re_signed_is_refused() {
        let mut plan = runbook();
        plan.swap(1, 2);
        let err = prove(&cluster(), &plan).unwrap_err();
        assert_eq!(err.stage, "S5 prune");
    }

    /// k3s's way: one node at a time takes a bundle of old and new and a leaf of the new CA,
    /// with no stage of trust first. Only the cross-signed copy of the new root (vouched for by
    /// the old) lets the nodes still on the old bundle accept the new leaves.
    #[test]
    fn a_cross_signed_ca_is_accepted_where_the_ca_that_vouches_for_it_is_trusted() {
        let at_once = |n: &str| {
            let mut v = resign(n, "ca@new");
            v.insert(0, Effect::Write { node: n.into(), path: "ca.crt".into(), content: trust(&["ca@old", "ca@new"]) });
            v.extend(restarts(n));
            v
        };
        let plan = vec![Effects { name: "S4 every node restarts onto the new CA".into(), effects: per_node(at_once) }];
        let err = prove(&cluster(), &plan).unwrap_err();
        assert!(err.why.contains("signed by ca@new, which the server does not trust (it trusts ca@old)"), "{err}");
        let mut crossed = cluster();
        crossed.vouched.insert("ca@new".into(), ["ca@old".to_string()].into());
        prove(&crossed, &plan).unwrap();
        // Pruning the old CA while a leaf of it is still loaded somewhere is refused all the same.
        let mut early = plan.clone();
        early[0].effects.splice(0..0, [Effect::Write { node: "cp2".into(), path: "ca.crt".into(), content: trust(&["ca@new"]) }, Effect::Restart { node: "cp2".into(), component: "kubelet".into() }]);
        let err = prove(&crossed, &early).unwrap_err();
        assert!(err.why.contains("ca@old"), "{err}");
    }

    /// The proof as it was before the edge index: every edge after every step.
    fn prove_every_edge(model: &Model, plan: &[Effects]) -> Result<(), Violation> {
        let mut state = State::new(model);
        for stage in plan {
            for (i, step) in std::iter::once(None).chain(stage.effects.iter().map(Some)).enumerate() {
                if let Some(step) = step {
                    state.apply(step);
                }
                if let Some(e) = model.edges.iter().find(|e| state.check(e).is_err()) {
                    let what = step.map_or_else(|| "before the stage".to_string(), describe);
                    return Err(Violation { stage: stage.name.clone(), step: i, what, edge: e.label(), why: state.check(e).unwrap_err() });
                }
            }
        }
        Ok(())
    }

    #[test]
    fn checking_only_the_edges_a_step_can_change_judges_as_checking_every_edge() {
        // Every plan one step short of the runbook, and every pair of stages swapped: the
        // indexed proof must refuse exactly where (and why) checking every edge refuses.
        let model = cluster();
        let full = runbook();
        let mut variants = vec![full.clone()];
        for s in 0..full.len() {
            for k in 0..full[s].effects.len() {
                let mut v = full.clone();
                v[s].effects.remove(k);
                variants.push(v);
            }
            for t in s + 1..full.len() {
                let mut v = full.clone();
                v.swap(s, t);
                variants.push(v);
            }
        }
        let mut refused = 0;
        for v in &variants {
            let (fast, slow) = (prove(&model, v), prove_every_edge(&model, v));
            assert_eq!(fast, slow);
            refused += usize::from(fast.is_err());
        }
        assert!(refused > 5, "the variants must include refused plans ({refused} of {})", variants.len());
    }
}
