//! Owns: simulating a plan on the model, step by step, and checking DESIGN.md's invariant 1
//! (trust continuity) after every step: for every edge, the client's certificate (as the
//! client has loaded it) chains to a CA the server has loaded as trusted, and the server's
//! certificate to a CA the client trusts.
//! Must not: do I/O or build plans; it only judges them.

use std::collections::BTreeSet;

use foldhash::HashMap;

use super::model::{CaId, Content, Effect, Effects, End, Model};

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

/// Where a side of an edge sees one of its files: on disk (a fresh reader, or a side that is
/// no component of the model), or as its component loaded it (the file's place among what
/// it reads; `None` when it does not read that file at all).
#[derive(Clone, Copy)]
enum Look {
    Disk(usize),
    Loaded(usize, Option<usize>),
}

/// One step, by number: a file written, or a component (of the model, or none) restarted.
enum Step<'m> {
    Write(usize, &'m Content),
    Restart(Option<usize>),
}

/// Every (node, file) and (node, component) the model and the plan name, numbered once, so a
/// step and a check find a file by its index, not by comparing names (a proof checks tens of
/// thousands of steps).
struct Resolved<'m> {
    model: &'m Model,
    files: HashMap<(&'m str, &'m str), usize>,
    /// (node, component) -> its reader (the last of that name, as a map would keep it).
    readers: HashMap<(&'m str, &'m str), usize>,
    /// Each reader's files, by number, in the order it reads them.
    reads: Vec<Vec<usize>>,
    /// Each edge's client and server: where each sees its certificate and its trust.
    sides: Vec<[(Option<Look>, Option<Look>); 2]>,
    /// Each stage's steps.
    stages: Vec<Vec<Step<'m>>>,
}

impl<'m> Resolved<'m> {
    fn new(model: &'m Model, plan: &'m [Effects]) -> Resolved<'m> {
        let mut r = Resolved { model, files: HashMap::default(), readers: HashMap::default(), reads: Vec::new(), sides: Vec::new(), stages: Vec::new() };
        for k in model.files.keys() {
            r.file(&k.node, &k.path);
        }
        for (i, c) in model.readers.iter().enumerate() {
            r.readers.insert((c.node.as_str(), c.name.as_str()), i);
            let reads = c.reads.iter().map(|p| r.file(&c.node, p)).collect();
            r.reads.push(reads);
        }
        for e in &model.edges {
            let sides = [&e.client, &e.server].map(|side| {
                let loaded = r.readers.get(&(&*side.node, &*side.component)).copied().filter(|&i| !model.readers[i].fresh);
                let mut look = |path: &'m Option<std::sync::Arc<str>>| {
                    let f = r.file(&side.node, path.as_deref()?);
                    Some(match loaded {
                        None => Look::Disk(f),
                        Some(i) => Look::Loaded(i, r.reads[i].iter().position(|&x| x == f)),
                    })
                };
                (look(&side.cert), look(&side.trust))
            });
            r.sides.push(sides);
        }
        for stage in plan {
            let steps = stage
                .effects
                .iter()
                .map(|step| match step {
                    Effect::Write { node, path, content } => Step::Write(r.file(node, path), content),
                    Effect::Restart { node, component } => Step::Restart(r.readers.get(&(node.as_ref(), component.as_ref())).copied()),
                })
                .collect();
            r.stages.push(steps);
        }
        r
    }

    fn file(&mut self, node: &'m str, path: &'m str) -> usize {
        let n = self.files.len();
        *self.files.entry((node, path)).or_insert(n)
    }
}

/// Files on disk and, per component, the files as it loaded them at its last start; every
/// content borrowed from the model and the plan (a check after each of tens of thousands of
/// steps allocates nothing).
#[derive(Clone)]
struct State<'m> {
    disk: Vec<Option<&'m Content>>,
    /// By reader: what it loaded of each file it reads, in its order.
    loaded: Vec<Vec<Option<&'m Content>>>,
}

impl<'m> State<'m> {
    fn new(r: &Resolved<'m>) -> State<'m> {
        let mut disk = vec![None; r.files.len()];
        for (k, c) in &r.model.files {
            disk[r.files[&(k.node.as_str(), k.path.as_str())]] = Some(c);
        }
        let loaded = r.reads.iter().map(|reads| reads.iter().map(|&f| disk[f]).collect()).collect();
        State { disk, loaded }
    }

    /// A step's change: a file written, or a component restarted (it loads what is on disk).
    fn apply(&mut self, r: &Resolved<'m>, step: &Step<'m>) {
        match *step {
            Step::Write(f, content) => self.disk[f] = Some(content),
            Step::Restart(Some(i)) => {
                let disk = &self.disk;
                self.loaded[i].iter_mut().zip(&r.reads[i]).for_each(|(held, &f)| *held = disk[f]);
            }
            Step::Restart(None) => {}
        }
    }

    /// What a side sees of one of its files: fresh clients read the disk, the rest what they loaded.
    fn view(&self, look: Look) -> Option<&'m Content> {
        match look {
            Look::Disk(f) => self.disk[f],
            Look::Loaded(i, slot) => slot.and_then(|s| self.loaded[i][s]),
        }
    }

    fn presents(&self, side: &End, look: Option<Look>) -> Result<Option<&'m CaId>, String> {
        let (Some(path), Some(look)) = (&side.cert, look) else { return Ok(None) };
        match self.view(look) {
            Some(Content::Leaf { signer }) => Ok(Some(signer)),
            Some(Content::Kubeconfig { client_signer, .. }) => Ok(client_signer.as_ref()),
            Some(Content::Trust { .. }) => Err(format!("{path} holds no leaf")),
            None => Err(format!("{}:{path} is missing or unreadable", side.node)),
        }
    }

    fn trusts(&self, side: &End, look: Option<Look>) -> Result<Option<&'m BTreeSet<CaId>>, String> {
        let (Some(path), Some(look)) = (&side.trust, look) else { return Ok(None) };
        match self.view(look) {
            Some(Content::Trust { cas }) => Ok(Some(cas)),
            Some(Content::Kubeconfig { trusts, .. }) => Ok(Some(trusts)),
            Some(Content::Leaf { .. }) => Err(format!("{path} is a leaf, not a trust bundle")),
            None => Err(format!("{}:{path} is missing or unreadable", side.node)),
        }
    }

    /// Edge `i` of the model, as this state leaves it.
    fn check(&self, r: &Resolved<'m>, i: usize) -> Result<(), String> {
        let (e, [client, server]) = (&r.model.edges[i], r.sides[i]);
        let pair = [(&e.client, client.0, &e.server, server.1, "client"), (&e.server, server.0, &e.client, client.1, "server")];
        for (presenter, cert, verifier, trust_look, role) in pair {
            let (Some(signer), Some(trust)) = (self.presents(presenter, cert)?, self.trusts(verifier, trust_look)?) else { continue };
            if !r.model.accepts(trust, signer) {
                let held: Vec<&str> = trust.iter().map(String::as_str).collect();
                return Err(format!("the {role}'s certificate is signed by {signer}, which the {} does not trust (it trusts {})", if role == "client" { "server" } else { "client" }, held.join(", ")));
            }
        }
        Ok(())
    }
}

fn describe(step: &Effect) -> String {
    match step {
        Effect::Write { node, path, .. } => format!("write {node}:{path}"),
        Effect::Restart { node, component } => format!("restart {component} on {node}"),
    }
}

/// The edges broken as the model stands, before anything changes: (index, why).
pub fn broken(model: &Model) -> Vec<(usize, String)> {
    let r = Resolved::new(model, &[]);
    let state = State::new(&r);
    (0..model.edges.len()).filter_map(|i| state.check(&r, i).err().map(|why| (i, why))).collect()
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
    let r = Resolved::new(model, plan);
    let base = State::new(&r);
    let index = edge_index(&r);
    let stages: Vec<usize> = (0..plan.len()).collect();
    let verdicts = crate::par::map(&stages, |&k| {
        let mut state = base.clone();
        r.stages[..k].iter().flatten().for_each(|step| state.apply(&r, step));
        judge(&r, &index, state, &plan[k], &r.stages[k], k == 0)
    });
    verdicts.into_iter().find_map(Result::err).map_or(Ok(()), Err)
}

/// One stage's steps, from `state` (every edge checked first when it is the first stage).
fn judge<'m>(r: &Resolved<'m>, (by_file, by_reader): &(Vec<Vec<usize>>, Vec<Vec<usize>>), mut state: State<'m>, stage: &'m Effects, steps: &[Step<'m>], first: bool) -> Result<(), Violation> {
    let check = |state: &State<'m>, edges: &mut dyn Iterator<Item = usize>, step: usize, what: &dyn Fn() -> String| -> Result<(), Violation> {
        for i in edges {
            if let Err(why) = state.check(r, i) {
                return Err(Violation { stage: stage.name.clone(), step, what: what(), edge: r.model.edges[i].label(), why });
            }
        }
        Ok(())
    };
    if first {
        check(&state, &mut (0..r.model.edges.len()), 0, &|| "before the stage".into())?;
    }
    for (i, (step, effect)) in steps.iter().zip(&stage.effects).enumerate() {
        state.apply(r, step);
        let touched: &[usize] = match *step {
            Step::Write(f, _) => &by_file[f],
            Step::Restart(Some(c)) => &by_reader[c],
            Step::Restart(None) => &[],
        };
        check(&state, &mut touched.iter().copied(), i + 1, &|| describe(effect))?;
    }
    Ok(())
}

/// Which edges a step can change: by file read from disk by a fresh side (or a side that is
/// no component), and by the component of a side that sees what it loaded at its last start.
fn edge_index(r: &Resolved<'_>) -> (Vec<Vec<usize>>, Vec<Vec<usize>>) {
    let mut by_file = vec![Vec::new(); r.files.len()];
    let mut by_reader = vec![Vec::new(); r.reads.len()];
    let add = |v: &mut Vec<usize>, i: usize| {
        if v.last() != Some(&i) {
            v.push(i);
        }
    };
    for (i, sides) in r.sides.iter().enumerate() {
        for look in sides.iter().flat_map(|(cert, trust)| [*cert, *trust]).flatten() {
            match look {
                Look::Disk(f) => add(&mut by_file[f], i),
                Look::Loaded(c, _) => add(&mut by_reader[c], i),
            }
        }
    }
    (by_file, by_reader)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::model::{Edge, FileId, Reader};
    use std::borrow::Cow;
    

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

    fn per_node(f: impl Fn(&str) -> Vec<Effect<'static>>) -> Vec<Effect<'static>> {
        ["cp1", "cp2"].iter().flat_map(|n| f(n)).collect()
    }

    fn restarts(n: &str) -> Vec<Effect<'static>> {
        ["kube-apiserver", "kubelet"].iter().map(|c| Effect::Restart { node: n.to_string().into(), component: c.to_string().into() }).collect()
    }

    fn resign(n: &str, ca: &str) -> Vec<Effect<'static>> {
        let mut v: Vec<Effect<'static>> = ["apiserver.crt", "kubelet-client.crt", "kubelet.crt"].iter().map(|p| Effect::Write { node: n.to_string().into(), path: p.to_string().into(), content: Cow::Owned(leaf(ca)) }).collect();
        v.push(Effect::Write { node: n.to_string().into(), path: "admin.conf".into(), content: Cow::Owned(Content::Kubeconfig { client_signer: Some(ca.into()), trusts: ["ca@old".to_string(), "ca@new".to_string()].into() }) });
        v
    }

    fn runbook() -> Vec<Effects<'static>> {
        let both = || trust(&["ca@old", "ca@new"]);
        let bundle = |n: &str| {
            let mut v = vec![
                Effect::Write { node: n.to_string().into(), path: "ca.crt".into(), content: Cow::Owned(both()) },
                Effect::Write { node: n.to_string().into(), path: "admin.conf".into(), content: Cow::Owned(Content::Kubeconfig { client_signer: Some("ca@old".into()), trusts: ["ca@old".to_string(), "ca@new".to_string()].into() }) },
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
                Effect::Write { node: n.to_string().into(), path: "ca.crt".into(), content: Cow::Owned(trust(&["ca@new"])) },
                Effect::Write { node: n.to_string().into(), path: "admin.conf".into(), content: Cow::Owned(Content::Kubeconfig { client_signer: Some("ca@new".into()), trusts: ["ca@new".to_string()].into() }) },
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
    fn each_side_sees_a_file_as_it_reads_it_and_a_file_the_plan_makes_is_seen_once_written() {
        let mut m = cluster();
        let end = |node: &str, component: &str, cert: Option<&str>, trust: Option<&str>| End { node: node.into(), component: component.into(), cert: cert.map(Into::into), trust: trust.map(Into::into) };
        // The kubelet loaded only ca.crt and kubelet.crt: a file it never read is not there for it.
        m.edges.push(Edge { name: "odd".into(), client: end("cp1", "kubectl", Some("admin.conf"), Some("admin.conf")), server: end("cp1", "kubelet", Some("apiserver.crt"), None) });
        let b = broken(&m);
        assert_eq!(b.len(), 1, "{b:?}");
        assert!(b[0].1.contains("cp1:apiserver.crt is missing or unreadable"), "{b:?}");
        m.edges.pop();
        // A side that is no component reads the disk; a file the model lacks appears when written;
        // a restart of a component the model does not know is taken as no change.
        m.edges.push(Edge { name: "curl".into(), client: end("cp2", "curl", Some("new.crt"), None), server: end("cp2", "kube-apiserver", Some("apiserver.crt"), Some("ca.crt")) });
        let plan = vec![Effects { name: "S1".into(), effects: vec![Effect::Restart { node: "cp2".into(), component: "nothing".into() }, Effect::Write { node: "cp2".into(), path: "new.crt".into(), content: Cow::Owned(leaf("ca@old")) }] }];
        let r = Resolved::new(&m, &plan);
        let (mut state, e) = (State::new(&r), m.edges.len() - 1);
        assert!(state.check(&r, e).unwrap_err().contains("cp2:new.crt is missing or unreadable"));
        state.apply(&r, &r.stages[0][0]);
        state.apply(&r, &r.stages[0][1]);
        state.check(&r, e).unwrap();
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
            v.insert(0, Effect::Write { node: n.to_string().into(), path: "ca.crt".into(), content: Cow::Owned(trust(&["ca@old", "ca@new"])) });
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
        early[0].effects.splice(0..0, [Effect::Write { node: "cp2".into(), path: "ca.crt".into(), content: Cow::Owned(trust(&["ca@new"])) }, Effect::Restart { node: "cp2".into(), component: "kubelet".into() }]);
        let err = prove(&crossed, &early).unwrap_err();
        assert!(err.why.contains("ca@old"), "{err}");
    }

    /// The proof as it was before the edge index: every edge after every step.
    fn prove_every_edge(model: &Model, plan: &[Effects]) -> Result<(), Violation> {
        let r = Resolved::new(model, plan);
        let mut state = State::new(&r);
        for (stage, steps) in plan.iter().zip(&r.stages) {
            for (i, step) in std::iter::once(None).chain(stage.effects.iter().zip(steps).map(Some)).enumerate() {
                if let Some((_, step)) = step {
                    state.apply(&r, step);
                }
                if let Some(e) = (0..model.edges.len()).find(|&e| state.check(&r, e).is_err()) {
                    let what = step.map_or_else(|| "before the stage".to_string(), |(effect, _)| describe(effect));
                    return Err(Violation { stage: stage.name.clone(), step: i, what, edge: model.edges[e].label(), why: state.check(&r, e).unwrap_err() });
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
