//! Owns: the parts every plan is made of, whichever command plans it: a file op and its
//! keyless recipe (checked to rebuild exactly the planned bytes), the batches, the gate of a
//! batch, which components restart after a node's writes, the facts a plan carries, S0, and
//! the proof run over the finished plan.
//! Must not: do I/O or decide what a file's new content is (the planners do).

use std::collections::{BTreeMap, BTreeSet};

use super::gates::Check;
use super::model::Model;
use super::prove;
use super::schema::{Action, Fact, FileOp, KubeconfigField, Plan, Proof, Recipe, Reissued, StageId, StagePlan, Text};
use crate::gather::facts::NodeFacts;
use crate::gather::facts::{Site, flags_now};
use crate::pki::sign::key_matches;
use crate::pki::{edit, first_cert, kubeconfig, sha256};
use crate::playbook::Playbook;
use crate::pki::sign::MAX_CLOCK_SKEW;

/// Which CA key a private file op writes, from the run's key store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyRef {
    /// The CA's new key.
    New(String),
    /// The CA's old key, copied for its other use.
    Old(String),
}

/// PEM texts as a recipe carries them.
fn texts(pems: Vec<String>) -> Vec<Text> {
    pems.into_iter().map(Text::from).collect()
}

/// A file op from a file's bytes before and after. `ca_key`: the file is the new key of
/// this CA (rebuilt from the run's key store); `key_of` finds those keys, to check the
/// recipe. Refused when the recipe would carry key bytes or does not rebuild `new` exactly.
pub fn file_op(path: &str, old: Option<&[u8]>, new: Option<&[u8]>, ca_key: Option<KeyRef>, private: bool, key_of: &dyn Fn(&str) -> Option<String>, changes: Vec<String>, certificates: Vec<Reissued>) -> Result<FileOp, String> {
    let action = match (old, new) {
        (None, Some(_)) => Action::Create,
        (Some(_), None) => Action::Remove,
        _ => Action::Modify,
    };
    let is_kubeconfig = old.is_some_and(kubeconfig::looks_like_kubeconfig);
    let recipe = match (new, &ca_key) {
        (None, _) => Recipe::Remove,
        (Some(n), Some(KeyRef::New(ca))) => Recipe::CaKey { ca: ca.clone(), certs: if old.is_some_and(|o| !edit::cert_shas(o).unwrap_or_default().is_empty()) { texts(edit::cert_pems(n)?) } else { Vec::new() } },
        (Some(_), Some(KeyRef::Old(ca))) => Recipe::OldCaKey { ca: ca.clone() },
        (Some(n), None) if is_kubeconfig => {
            let o = old.expect("a kubeconfig being modified exists");
            let (before, after) = (kubeconfig::parsed_kubeconfig(o), kubeconfig::parsed_kubeconfig(n));
            let (before, after) = (before.as_ref().as_ref()?, after.as_ref().as_ref()?);
            let mut fields = Vec::new();
            for e in &after.embedded {
                let was = before.embedded.iter().find(|b| b.field.display() == e.field.display()).map(|b| b.raw.split_whitespace().collect::<String>());
                if was.as_deref() != Some(e.raw.split_whitespace().collect::<String>().as_str()) {
                    let pem = edit::kubeconfig_data(n, &e.field.display())?;
                    fields.push(KubeconfigField { field: e.field.display(), pem: String::from_utf8(pem).map_err(|_| "new data is not text")?.into() });
                }
            }
            Recipe::Kubeconfig { fields }
        }
        (Some(n), None) if edit::has_private_key(n) => Recipe::Certs { certs: texts(edit::cert_pems(n)?) },
        (Some(n), None) => Recipe::Text { text: String::from_utf8(n.to_vec()).map_err(|_| "not text")?.into() },
    };
    // The recipe must rebuild exactly the planned bytes, and never carry a key.
    if edit::has_private_key(recipe.carried_text().as_bytes()) {
        return Err("would put private key material in the plan; refused".into());
    }
    let rebuilt = recipe.apply(old, key_of)?;
    if rebuilt.as_deref() != new {
        return Err("the recipe does not rebuild the planned bytes (kcert bug): refused".into());
    }
    Ok(FileOp {
        path: path.to_string(),
        action,
        old_sha256: old.map(sha256),
        new_sha256: new.map(sha256),
        mode: if private { 0o600 } else { 0o644 },
        private,
        bytes: new.map_or(0, |n| n.len() as u64),
        old_bytes: old.map_or(0, |o| o.len() as u64),
        recipe,
        changes: changes.into(),
        certificates,
    })
}

/// Control-plane nodes one at a time (etcd members among them: quorum holds), then
/// workers `batch_size` at a time.
pub fn batches(nodes: &[NodeFacts], batch_size: usize) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = nodes.iter().filter(|n| n.control_plane).map(|n| vec![n.name.clone()]).collect();
    let workers: Vec<String> = nodes.iter().filter(|n| !n.control_plane).map(|n| n.name.clone()).collect();
    out.extend(workers.chunks(batch_size.max(1)).map(<[String]>::to_vec));
    out
}

/// The gate of a batch: every check that starts or ends on one of its nodes, and etcd's
/// quorum from every member.
pub fn gates_for(pb: &Playbook, checks: &[Check], nodes: &[String]) -> Vec<Check> {
    let quorum = crate::playbook::quorum_edges(pb);
    checks.iter().filter(|c| nodes.contains(&c.from) || nodes.contains(&c.to) || quorum.contains(&c.edge)).cloned().collect()
}

/// The components on `node` to restart after these files changed there: those whose refs,
/// `read_by` files or own manifest/config name one of them, or that read a file whose trust
/// (as the model sees it) changed. In the playbook's order.
pub fn restarts(pb: &Playbook, node: &NodeFacts, readers: &ReaderIndex<'_>, changed: &[String], model_changed: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    for c in &pb.components {
        if !node.pki.components.contains_key(&c.name) {
            continue;
        }
        let mut reads: BTreeSet<&str> = node.pki.refs.iter().filter(|((comp, _), _)| comp == &c.name).map(|(_, p)| p.as_str()).collect();
        reads.extend(pb.files.iter().filter(|f| f.read_by.as_deref() == Some(c.name.as_str())).filter_map(|f| node.pki.named.get(&f.name).map(String::as_str)));
        reads.extend(node.pki.sources.get(&c.name).into_iter().flatten().map(String::as_str));
        let model_reads = readers.reads(&node.name, &c.name).iter().any(|p| model_changed.contains(p));
        if model_reads || changed.iter().any(|p| reads.contains(p.as_str())) {
            out.push(c.name.clone());
        }
    }
    out
}

/// The model's readers by (node, name): looked up for every node of every step, so made once.
pub struct ReaderIndex<'m> {
    model: &'m Model,
    by: BTreeMap<(&'m str, &'m str), usize>,
}

impl<'m> ReaderIndex<'m> {
    pub fn new(model: &'m Model) -> ReaderIndex<'m> {
        ReaderIndex { model, by: model.readers.iter().enumerate().map(|(i, r)| ((r.node.as_str(), r.name.as_str()), i)).collect() }
    }
    /// The files a reader loads (none for one the model does not know).
    pub fn reads(&self, node: &str, name: &str) -> &'m [String] {
        self.by.get(&(node, name)).map(|&i| self.model.readers[i].reads.as_slice()).unwrap_or(&[])
    }
}

/// sha256 of every file the plan is made from, per node, sorted (the nodes on every core).
pub fn facts(nodes: &[NodeFacts]) -> Vec<Fact> {
    facts_by(nodes, true)
}

/// The same on the caller's thread alone (for a caller that has it work beside the cores).
pub fn facts_on_one_core(nodes: &[NodeFacts]) -> Vec<Fact> {
    facts_by(nodes, false)
}

fn facts_by(nodes: &[NodeFacts], every_core: bool) -> Vec<Fact> {
    let mut by_name: Vec<&NodeFacts> = nodes.iter().collect();
    by_name.sort_by(|a, b| a.name.cmp(&b.name));
    // Each distinct content is digested once: gathering holds equal bytes as one shared copy
    // (a fleet's workers share their CA bundle, kubeconfigs and manifests), told by its address.
    // Each file's content by its place among the distinct ones, in the files' order.
    let mut at: foldhash::HashMap<(usize, usize), usize> = foldhash::HashMap::default();
    let mut distinct: Vec<&[u8]> = Vec::new();
    let slots: Vec<usize> = by_name
        .iter()
        .flat_map(|n| n.files.values())
        .map(|b| {
            *at.entry((b.as_ptr() as usize, b.len())).or_insert_with(|| {
                distinct.push(b);
                distinct.len() - 1
            })
        })
        .collect();
    let digests: Vec<String> = if every_core { crate::par::map(&distinct, |b| sha256(b)) } else { distinct.iter().map(|b| sha256(b)).collect() };
    let files = by_name.iter().flat_map(|n| n.files.keys().map(move |p| (&n.name, p)));
    let mut v: Vec<Fact> = files.zip(slots).map(|((node, path), k)| Fact { node: node.clone(), path: path.clone(), sha256: digests[k].clone() }).collect();
    // Each node's files come in path order: in node order they are sorted already, unless
    // two nodes share a name.
    if !v.is_sorted() {
        v.sort();
    }
    v
}

/// S0: what the runner checks before anything changes (`extra` is the planner's own).
pub fn preflight(offline: bool, extra: &[&str]) -> StagePlan {
    let mut checks = vec![
        "every node answers: SSH, host key, sudo (discovery read every node)".to_string(),
        "every file the plan was made from is unchanged (sha256)".to_string(),
        "free space for the backups and new files, in every directory written, on every node".to_string(),
        "every file and directory written can be written (not read-only, not immutable)".to_string(),
    ];
    checks.extend(extra.iter().map(|s| s.to_string()));
    if !offline {
        checks.push(format!("clock skew under {}s on every node", MAX_CLOCK_SKEW.as_secs()));
        checks.push("etcd has quorum: every member answers /health through its client TLS".into());
    }
    StagePlan { id: StageId::Preflight, name: StageId::Preflight.name().into(), checks, steps: Vec::new(), undo: None }
}

/// Proves a finished plan on the model it was made from, and records the proof's figures.
pub fn prove(model: &Model, plan: &mut Plan) -> Result<(), Vec<String>> {
    let effects = plan.effects();
    match prove::prove(model, &effects) {
        Ok(()) => {}
        // S0 has no steps: a violation there is how the cluster stands before anything changes.
        Err(v) if v.stage.starts_with("S0") => {
            return Err(vec![format!("the cluster's trust is already broken before anything changes: edge {} breaks: {}; fix it first (kcert verify)", v.edge, v.why)]);
        }
        Err(v) => return Err(vec![format!("the plan was refused by its proof: {v}")]),
    }
    plan.proof = Proof { edges: model.edges.len(), steps: effects.iter().map(|s| s.effects.len()).sum(), tokens: plan.proof.tokens };
    Ok(())
}

/// The model without the edges already broken before any change, and those edges, for a
/// plan that must not make anything worse but cannot mend them (a renewal).
pub fn without_broken_edges(mut model: Model) -> (Model, Vec<String>) {
    let broken = prove::broken(&model);
    let said = broken.iter().map(|(i, why)| format!("edge {}: {why}", model.edges[*i].label())).collect();
    let drop: BTreeSet<usize> = broken.into_iter().map(|(i, _)| i).collect();
    model.edges = model.edges.into_iter().enumerate().filter(|(i, _)| !drop.contains(i)).map(|(_, e)| e).collect();
    (model, said)
}

/// Every kubeconfig of the playbook that cannot be read as kubectl reads it, or holds a field
/// that does not decode, named by node, file and field: a plan that skipped it would leave it
/// trusting only the old CA, so it stops the plan.
pub fn unreadable_kubeconfigs(pb: &Playbook, nodes: &[NodeFacts]) -> Vec<String> {
    let mut out = Vec::new();
    for n in nodes {
        for f in pb.files.iter().filter(|f| f.kind == crate::playbook::FileKind::Kubeconfig) {
            let Some(path) = n.pki.named.get(&f.name) else { continue };
            let Some(bytes) = n.files.get(path) else { continue };
            let at = format!("{}: {path}", n.name);
            match &*kubeconfig::parsed_kubeconfig(bytes) {
                Err(e) => out.push(format!("{at}: not a readable kubeconfig: {e}")),
                Ok(kc) => {
                    let bad: Vec<String> = kc.embedded.iter().filter_map(|e| e.content.as_ref().err().map(|err| format!("{at}: {}: {err}", e.field.display()))).collect();
                    if bad.is_empty()
                        && let Err(e) = kubeconfig::public_identity(bytes)
                    {
                        out.push(format!("{at}: {e}"));
                    }
                    out.extend(bad);
                }
            }
        }
    }
    out.dedup();
    out
}

/// Every signing pair (the playbook's `pairs`: the controller-manager's cluster-signing cert
/// and key) of every node that would not be one matching cert and key, with the files as
/// `get` has them after stage `stage`.
pub fn pair_problems(pb: &Playbook, nodes: &[NodeFacts], stage: StageId, get: &dyn Fn(&str, &str) -> Option<Vec<u8>>) -> Vec<String> {
    let mut out = Vec::new();
    for n in nodes {
        for pair in &pb.pairs {
            let Some(comp) = pb.component(&pair.component) else { continue };
            if !n.pki.components.contains_key(&pair.component) {
                continue;
            }
            let Some(flags) = flags_now(comp, &n.pki, &|p| get(&n.name, p)) else { continue };
            let (Some(cp), Some(kp)) = (flags.get(&pair.cert), flags.get(&pair.key)) else { continue };
            let (Some(c), Some(k)) = (get(&n.name, cp).and_then(|b| first_cert(&b).ok()), get(&n.name, kp)) else { continue };
            if !key_matches(&c, &k).unwrap_or(false) {
                out.push(format!("after {stage}, {}: {} {cp} and {} {kp} would not be one matching cert and key", n.name, pair.cert, pair.key));
            }
        }
    }
    out
}

/// How a component's flag is rewritten in the file that sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagEdit {
    /// A static pod manifest's container command.
    Manifest,
    /// `--flag=value` written in a unit, drop-in or environment file.
    Word,
    /// The whole value of this variable (`ETCD_CERT_FILE=`, `--flag=${X}`).
    Var(String),
}

impl FlagEdit {
    pub fn apply(&self, bytes: &[u8], flag: &str, value: &str) -> Result<Vec<u8>, String> {
        match self {
            FlagEdit::Manifest => edit::set_flag(bytes, flag, value),
            FlagEdit::Word => crate::pki::unit::set_word_flag(bytes, flag, value),
            FlagEdit::Var(name) => crate::pki::unit::set_var(bytes, name, value),
        }
    }
}

/// The file on node `n` that sets `component`'s `flag`, and how to rewrite it there: its
/// static pod manifest, or the unit, drop-in or environment file the flag is written in.
pub fn flag_file(pb: &Playbook, n: &NodeFacts, component: &str, flag: &str) -> Result<(String, FlagEdit), String> {
    let c = pb.component(component).ok_or_else(|| format!("no component {component} in the playbook"))?;
    if let Some(m) = &c.manifest {
        return Ok((m.clone(), FlagEdit::Manifest));
    }
    match n.pki.sites.get(&(component.to_string(), flag.to_string())) {
        Some(Site::Word(f)) => Ok((f.clone(), FlagEdit::Word)),
        Some(Site::Var(f, v)) => Ok((f.clone(), FlagEdit::Var(v.clone()))),
        Some(Site::Fixed(f)) => Err(format!("{}: {component}'s {flag} is set in {f} in a way kcert does not rewrite (a YAML config, or a bare flag); set it as --flag=value", n.name)),
        None => Err(format!("{}: {component}'s {flag} is set nowhere kcert can rewrite ({})", n.name, c.origin())),
    }
}

#[cfg(test)]
mod tests {
    use crate::gather::facts::{NodeFacts, NodePki, Shared};

    #[test]
    fn every_file_read_has_its_own_digest_whether_its_content_is_shared_or_not() {
        let shared: Shared = b"one bundle\n".to_vec().into();
        let node = |name: &str, own: &[u8]| NodeFacts {
            name: name.into(),
            address: "10.0.0.1".into(),
            control_plane: false,
            offline: true,
            pki: NodePki::default(),
            files: [("/ca.crt".to_string(), shared.clone()), ("/own.pem".to_string(), own.to_vec().into()), ("/same.pem".to_string(), b"equal bytes, held apart\n".to_vec().into())].into(),
            hostname: None,
        };
        // Given out of name order: the facts come sorted by node, then path.
        let nodes = [node("w2", b"w2's leaf\n"), node("w1", b"w1's leaf\n")];
        let facts = super::facts(&nodes);
        assert_eq!(facts, super::facts_on_one_core(&nodes));
        let got: Vec<(&str, &str, &str)> = facts.iter().map(|f| (f.node.as_str(), f.path.as_str(), f.sha256.as_str())).collect();
        let want: Vec<(String, String, String)> = ["w1", "w2"]
            .iter()
            .flat_map(|n| {
                let own = format!("{n}'s leaf\n");
                [("/ca.crt", "one bundle\n".to_string()), ("/own.pem", own), ("/same.pem", "equal bytes, held apart\n".to_string())].map(|(p, b)| (n.to_string(), p.to_string(), crate::pki::sha256(b.as_bytes())))
            })
            .collect();
        assert_eq!(got, want.iter().map(|(n, p, s)| (n.as_str(), p.as_str(), s.as_str())).collect::<Vec<_>>());
    }
}
