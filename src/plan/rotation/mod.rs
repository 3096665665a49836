//! Owns: a CA rotation as a concrete plan: the runbook's stages S0-S5 assembled from what
//! each stage does to each node (`stages`), in batches with restarts and gates, the signing
//! pair checked at every boundary, and the whole plan proven on the trust model.
//! Must not: do I/O; callers gather the facts, make the new CAs and carry the plan out.

mod api;
mod cas;
mod describe;
mod planner;
mod presign;
mod stages;

use std::collections::{BTreeMap, BTreeSet};

pub use api::render_script;
pub use cas::{NewCaInput, OldCa, external_cas, old_cas, successors};
use planner::{Pending, Planner, Rot, Vfs};

use super::build;
use super::gates::Check;
use super::parts;
use super::schema::{Batch, Fact, Kind, MadeWith, ModelWrite, NewCa, NodeOps, Options, PLAN_VERSION, Plan, PlanTarget, Proof, StageId, StagePlan, StepPlan};
use crate::gather::facts::NodeFacts;
use crate::par::Beside;
use crate::pki::cert::{first_cert, parse_pem};
use crate::pki::find_issuer;
use crate::pki::sign::{KeyType, Signer, Validity};
use crate::playbook::{ApiWhen, FileKind, Playbook};
use crate::text::{prefix, rfc3339};

pub struct Input<'a> {
    pub playbook: &'a Playbook,
    pub target: PlanTarget,
    pub nodes: &'a [NodeFacts],
    /// Every live check of the cluster (none offline): each batch's gate is drawn from them.
    pub checks: Vec<Check>,
    pub opts: Options,
    pub id: String,
    pub cluster: String,
    pub now: i64,
}

impl Input<'_> {
    /// A rotation plan of these stages, not yet proven: what every rotation planner fills in the same way.
    pub fn rotation(&self, cas: Vec<NewCa>, stages: Vec<StagePlan>, notes: Vec<String>) -> Plan {
        self.rotation_of(parts::facts(self.nodes), cas, stages, notes)
    }

    /// The same, with the digests of the files read (`parts::facts`) already worked out.
    fn rotation_of(&self, facts: Vec<Fact>, cas: Vec<NewCa>, stages: Vec<StagePlan>, notes: Vec<String>) -> Plan {
        Plan {
            version: PLAN_VERSION,
            kind: Kind::RotateCa,
            id: self.id.clone(),
            created_at: rfc3339(self.now),
            cluster: self.cluster.clone(),
            made_with: MadeWith::now(self.playbook),
            target: self.target.clone(),
            options: self.opts.clone(),
            facts,
            cas,
            stages,
            proof: Proof::default(),
            notes,
            node_notes: Vec::new(),
        }
    }
}

/// Makes the whole plan: stages, steps, file ops with recipes, restarts and gates; then
/// proves it. Every problem found is returned (nothing is half planned).
pub fn plan(input: &Input<'_>, olds: Vec<OldCa>, new_cas: Vec<NewCaInput>) -> Result<Plan, Vec<String>> {
    // The digest of every file read (the plan's facts: what makes a saved plan stale) is
    // worked out beside the planning, on a thread of its own, while the model is built and
    // the signatures are set going (work that keeps one core busy, not two).
    crate::par::beside(|| parts::facts_on_one_core(input.nodes), |facts| plan_with(input, olds, new_cas, facts))
}

fn plan_with(input: &Input<'_>, olds: Vec<OldCa>, new_cas: Vec<NewCaInput>, facts: Beside<'_, Vec<Fact>>) -> Result<Plan, Vec<String>> {
    let pb = input.playbook;
    let model = build::model(pb, input.nodes);
    let mut problems = parts::unreadable_kubeconfigs(pb, input.nodes);
    let mut rots = Vec::new();
    for old in olds {
        let Some(n) = new_cas.iter().find(|n| n.name == old.name) else {
            problems.push(format!("no new CA was made for {}", old.name));
            continue;
        };
        let Some(new_cert) = parse_pem(n.cert_pem.as_bytes()).ok().and_then(|c| c.certs.into_iter().next()) else {
            problems.push(format!("the new {} CA does not parse", old.name));
            continue;
        };
        let signer = match Signer::new(&new_cert, n.key_pem.as_bytes(), input.now) {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!("the new {} CA: {e}", old.name));
                continue;
            }
        };
        let old_pem = format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", b64_lines(&old.cert.der));
        rots.push(Rot { new_id: format!("{}@{}", old.name, prefix(&new_cert.sha256, 8)), new_pem: n.cert_pem.clone(), key_pem: n.key_pem.clone(), old_pem, new_cert, signer: signer.into(), old });
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut notes = Vec::new();
    for r in &rots {
        if r.old.cert.not_after <= input.now {
            notes.push(format!("the old {} CA {} expired on {}: edges that rely on it are already broken until S4 re-signs them", r.old.alias, r.old.cert.subject, rfc3339(r.old.cert.not_after)));
        }
    }
    let mut planner = Planner {
        input,
        state: BTreeMap::new(),
        model: &model.files,
        vfs: Vfs::new(input.nodes.iter().map(|n| (n.name.as_str(), &n.files)).collect()),
        v: Validity { now: input.now, days: input.opts.leaf_days },
        rots,
        splits: BTreeMap::new(),
        sa_splits: Vec::new(),
        staged: BTreeMap::new(),
        private: BTreeMap::new(),
        problems: Vec::new(),
        capped: Default::default(),
        presigned: presign::Presign::none(),
        index: input.nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect(),
        holders: Vec::new(),
        tokens: crate::plan::tokens::TokenBaseline::new(pb, input.nodes),
        texts: Default::default(),
        made: Default::default(),
        edits: Default::default(),
        ours: Default::default(),
    };
    planner.holders = planner.rots.iter().map(|r| Planner::find_key_holders(input, r)).collect();
    let node_batches = parts::batches(input.nodes, input.opts.batch_size);
    // Signing starts first: what follows until S4 is planned beside it.
    planner.presigned = planner.presign_start(&node_batches.concat());
    // A proof over no edge proves nothing: a node that holds a CA key but runs none of the
    // playbook's components (its manifests moved away) leaves kcert blind to who reads what.
    let sources: Vec<String> = pb.components.iter().map(|c| c.origin()).collect();
    let mut blind: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (ri, hs) in planner.holders.iter().enumerate() {
        for (node, _, _) in hs.iter().filter(|(node, _, _)| planner.node(node).pki.components.is_empty()) {
            blind.entry(node.clone()).or_default().push(planner.rots[ri].old.alias.clone());
        }
    }
    for (node, aliases) in blind {
        planner.problems.push(format!(
            "{node}: holds the key of the {} CA, but none of the {} playbook's components is there ({}): kcert cannot tell who reads which file, and will not rotate blind",
            aliases.join(", "),
            pb.name,
            sources.join(", ")
        ));
    }
    if model.edges.is_empty() {
        planner.problems.push(format!("no TLS edge between the nodes' components was found ({} looked for): a rotation proven over no edge proves nothing; refused", sources.join(", ")));
    }
    let readers = parts::ReaderIndex::new(&model);
    let mut stages: Vec<StagePlan> = vec![parts::preflight(input.opts.offline, &["the trust graph verifies as the files stand (kcert verify)"])];

    // S1: the new CAs onto the nodes that hold the old ones' keys.
    let mut s1 = Batch { nodes: Vec::new(), ops: Vec::new(), gates: Vec::new() };
    let mut s1_nodes: Vec<String> = Vec::new();
    for hs in &planner.holders {
        for (n, _, _) in hs {
            if !s1_nodes.contains(n) {
                s1_nodes.push(n.clone());
            }
        }
    }
    s1_nodes.sort_by_key(|n| planner.index[n]);
    for node in &s1_nodes {
        let mut p = Pending::default();
        for i in 0..planner.rots.len() {
            let Some((cert, key)) = planner.holder(i, node) else {
                continue;
            };
            let (sc, sk) = planner.staged_pair(&cert, &key);
            if planner.vfs.get(node, &sc).is_some() || planner.vfs.get(node, &sk).is_some() {
                planner.problems.push(format!("{node}: {sc} already exists: a rotation left unfinished? (kcert runs)"));
            }
            let pem = planner.rots[i].new_pem.clone();
            planner.touch(&mut p, node, &sc, Some(pem.into_bytes()));
            planner.write_key(&mut p, node, &sk, i);
            planner.staged.entry(node.clone()).or_default().extend([sc, sk]);
        }
        let files = planner.ops(node, &mut p);
        s1.ops.push(NodeOps { node: node.clone(), files, restarts: Vec::new(), model: Vec::new(), reissue: None });
    }
    s1.nodes = s1_nodes.clone();
    stages.push(StagePlan { id: StageId::NewCa, name: StageId::NewCa.name().into(), checks: Vec::new(), steps: vec![StepPlan::Batch(s1)], undo: None });

    let trust: StageFn = Planner::trust_both;
    let sign: StageFn = Planner::resign_all;
    let prune: StageFn = Planner::prune;
    let changing = [(StageId::Trust, trust), (StageId::Resign, sign), (StageId::Prune, prune)];
    // A batch of nodes that hold no CA key, run no signing pair and use no service-account key
    // changes only its own files in S2, S4 and S5, and no check between stages reads them: it
    // is planned through all three at once and its files let go (held until S5's end, every
    // worker's changed files would be in memory at once: ~8 KB a node).
    let alone: Vec<bool> = node_batches.iter().map(|b| b.iter().all(|n| planner.on_its_own(n, &s1_nodes))).collect();
    let mut ahead: Vec<Vec<Option<Batch>>> = node_batches.iter().map(|_| Vec::new()).collect();
    for (si, &(id, _)) in changing.iter().enumerate() {
        let mut steps = Vec::new();
        for (bi, nodes) in node_batches.iter().enumerate() {
            let made = if alone[bi] {
                if si == 0 {
                    ahead[bi] = changing.iter().map(|&(_, f)| step(&mut planner, &readers, f, nodes)).collect();
                    planner.release(nodes);
                }
                ahead[bi][si].take()
            } else {
                step(&mut planner, &readers, changing[si].1, nodes)
            };
            let Some(batch) = made else { continue };
            steps.push(StepPlan::Batch(batch));
            // Service-account tokens keep verifying after every step, not only at the end
            // (a step that changes no node with a use of their keys leaves them as they were).
            if nodes.iter().any(|n| planner.tokens.involves(planner.index[n])) {
                let when = format!("the plan was refused by its proof: {id} step {} ({})", steps.len(), nodes.join(", "));
                let tokens = planner.check_tokens(&when);
                planner.problems.extend(tokens);
            }
        }
        if id == StageId::Prune {
            steps.extend(planner.api_calls(ApiWhen::Prune));
            // Clean-up: the staged copies go; the last gate is every edge, as `verify --live`.
            let mut clean = Batch { nodes: Vec::new(), ops: Vec::new(), gates: input.checks.clone() };
            for (node, paths) in planner.staged.clone() {
                let mut p = Pending::default();
                for path in paths {
                    planner.touch(&mut p, &node, &path, None);
                }
                let files = planner.ops(&node, &mut p);
                clean.nodes.push(node.clone());
                clean.ops.push(NodeOps { node, files, restarts: Vec::new(), model: Vec::new(), reissue: None });
            }
            clean.nodes.sort_by_key(|n| planner.index[n]);
            clean.ops.sort_by_key(|o| planner.index[&o.node]);
            if !clean.ops.is_empty() {
                steps.push(StepPlan::Batch(clean));
            }
        }
        stages.push(StagePlan { id, name: id.name().into(), checks: Vec::new(), steps, undo: None });
        if id == StageId::Trust {
            stages.push(StagePlan { id: StageId::ApiObjects, name: StageId::ApiObjects.name().into(), checks: Vec::new(), steps: planner.api_calls(ApiWhen::Trust), undo: None });
        }
        // The signing pair is one matching cert and key at every boundary.
        let pair_problems = planner.check_pairs(id);
        planner.problems.extend(pair_problems.into_iter().map(|p| format!("{p} (kcert bug): refused")));
    }
    if !planner.problems.is_empty() {
        let mut p = planner.problems;
        p.dedup();
        return Err(p);
    }

    let cas: Vec<NewCa> = planner
        .rots
        .iter()
        .enumerate()
        .map(|(ri, r)| {
            let (cert_path, key_path) = planner.holders[ri].first().map(|(_, c, k)| (c.clone(), k.clone())).unwrap_or_default();
            NewCa {
                alias: r.old.alias.clone(),
                name: r.old.name.clone(),
                staged_cert: planner.staged_pair(&cert_path, &key_path).0,
                staged_key: planner.staged_pair(&cert_path, &key_path).1,
                path: cert_path,
                key_path,
                old_id: r.old.id.clone(),
                old_subject: r.old.cert.subject.clone(),
                old_sha256: r.old.cert.sha256.clone(),
                old_not_after: r.old.cert.not_after,
                new_id: r.new_id.clone(),
                new_subject: r.new_cert.subject.clone(),
                new_sha256: r.new_cert.sha256.clone(),
                new_not_after: r.new_cert.not_after,
                key_type: KeyType::of(&r.new_cert).map(|k| k.label().to_string()).unwrap_or_default(),
                cert_pem: r.new_pem.clone(),
                old_pem: r.old_pem.clone(),
            }
        })
        .collect();
    notes.extend(default_notes(pb, &planner));
    if planner.capped.load(std::sync::atomic::Ordering::Relaxed) > 0 {
        let ends = planner.rots.iter().map(|r| format!("{} {}", r.old.alias, rfc3339(r.new_cert.not_after))).collect::<Vec<_>>().join(", ");
        notes.push(format!(
            "{} re-signed certificates expire with their new CA ({ends}), sooner than --days {} asked: --ca-days is shorter",
            planner.capped.load(std::sync::atomic::Ordering::Relaxed),
            input.opts.leaf_days
        ));
    }
    let mut plan = input.rotation_of(facts.take(), cas, stages, notes);
    plan.proof.tokens = planner.tokens.edges();
    // The planner's copy of every changed file is not needed to prove the plan: let it go first.
    drop(planner);
    parts::prove(&model, &mut plan)?;
    Ok(plan)
}

type StageFn<'x> = fn(&Planner<'x>, &str, &mut Pending);

/// One changing stage's step over one batch: each node's changes, on every core (a stage
/// reads only its own node's files and model as the step before left them, and collects its
/// changes apart); taken in, in the batch's order, before the file ops are made (on every
/// core too). `None` when the step changes no file.
fn step<'x>(planner: &mut Planner<'x>, readers: &parts::ReaderIndex<'_>, f: StageFn<'x>, nodes: &[String]) -> Option<Batch> {
    let pb = planner.input.playbook;
    let mut batch = Batch { nodes: nodes.to_vec(), ops: Vec::with_capacity(nodes.len()), gates: Vec::new() };
    let made = crate::par::map(nodes, |node| {
        let mut p = Pending::default();
        f(planner, node, &mut p);
        p
    });
    let mut pending: Vec<(&String, Pending)> = nodes.iter().zip(made).collect();
    for (node, p) in &mut pending {
        planner.absorb(node, p);
    }
    let made = crate::par::map(&pending, |(node, p)| planner.ops_of(node, p));
    for ((node, p), (files, problems)) in pending.into_iter().zip(made) {
        planner.problems.extend(problems);
        let changed: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
        let model_changed: BTreeSet<String> = p.model.keys().cloned().collect();
        let model = p.model.into_iter().map(|(path, content)| ModelWrite { path, content }).collect();
        let restarts = if files.is_empty() { Vec::new() } else { parts::restarts(pb, planner.node(node), readers, &changed, &model_changed) };
        batch.ops.push(NodeOps { node: node.clone(), files, restarts, model, reissue: None });
    }
    planner.end_step();
    if !batch.ops.iter().any(|o| !o.files.is_empty()) {
        return None;
    }
    if batch.ops.iter().any(|o| !o.restarts.is_empty()) {
        batch.gates = parts::gates_for(pb, &planner.input.checks, nodes);
    }
    Some(batch)
}

fn b64_lines(der: &[u8]) -> String {
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD.encode(der);
    b.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("base64 is ASCII")).collect::<Vec<_>>().join("\n")
}

fn default_notes(pb: &Playbook, p: &Planner<'_>) -> Vec<String> {
    let mut notes = Vec::new();
    if p.sa_splits.is_empty() && pb.files.iter().any(|f| f.kind == FileKind::Pubkey) {
        let mut paths: Vec<&str> = p.input.nodes.iter().flat_map(|n| ["sa.key", "sa.pub"].into_iter().filter_map(|k| n.pki.named.get(k).map(String::as_str))).collect();
        paths.sort();
        paths.dedup();
        let which = if paths.is_empty() { "sa.key/sa.pub".to_string() } else { paths.join(", ") };
        notes.push(format!("the service-account signing key pair ({which}) is not a CA: it is not rotated, and tokens stay valid"));
    }
    for ((node, comp), (ri, cert, key)) in &p.splits {
        notes.push(format!(
            "{node}: {comp} signs with {cert} and {key}; while {cert} holds both CAs, it signs with a copy of the old CA (S2), then with the new one (S4), then with {cert} again (S5): one matching cert and key throughout ({})",
            p.rots[*ri].old.alias
        ));
    }
    for s in &p.sa_splits {
        let flags: Vec<String> = s.uses.iter().map(|(c, f)| format!("{c} {f}")).collect();
        notes.push(format!(
            "{}: {}, the {} CA key, is also the service-account key ({}): S2 copies the old key to {} (0600, kept for good) and points those flags at it, so every service-account token stays valid; the CA key itself then changes in S5",
            s.node,
            s.key,
            p.rots[s.ri].old.alias,
            flags.join(", "),
            s.copy
        ));
    }
    let rehomed: Vec<String> = p
        .input
        .nodes
        .iter()
        .filter(|n| {
            pb.rotation.as_ref().is_some_and(|r| {
                r.rehome.iter().any(|f| {
                    n.pki.named.get(f).and_then(|path| n.files.get(path)).and_then(|b| first_cert(b).ok()).is_some_and(|c| p.rots.iter().all(|x| find_issuer(&c, &[&x.old.cert]).is_none()))
                })
            })
        })
        .map(|n| n.name.clone())
        .collect();
    if !rehomed.is_empty() {
        notes.push(format!(
            "self-signed kubelet serving certificates on {} move onto the new cluster CA in S4 (as `kcert renew --certs kubelet-serving` would), with the node's name and address in their SANs",
            rehomed.join(", ")
        ));
    }
    notes
}
