//! Owns: the CA rotation runbook's trust stages as steps over the model: S2 trust old+new,
//! S4 re-sign every leaf and kubeconfig client cert with the new CA, S5 prune the old CA,
//! each node's writes followed by restarts of what reads them, batch by batch.
//! Must not: do I/O or decide the batches (callers pass them, control plane first).

use std::collections::BTreeSet;

use super::{CaId, Content, FileId, Model, PLAN_VERSION, Plan, Stage, Step};

/// One CA being replaced: the model's id of the old one and the id the new one will have.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub old: CaId,
    pub new: CaId,
}

fn stage(model: &Model, name: &str, batches: &[Vec<String>], change: impl Fn(&Content) -> Option<Content>) -> Stage {
    let mut steps = Vec::new();
    for batch in batches {
        // Writes of the whole batch first, then its restarts: what a batch gate will see.
        let mut restarts = Vec::new();
        for node in batch {
            let mut changed = BTreeSet::new();
            for (FileId { node: n, path }, content) in &model.files {
                if n != node {
                    continue;
                }
                if let Some(new) = change(content) {
                    steps.push(Step::Write { node: node.clone(), path: path.clone(), content: new });
                    changed.insert(path.clone());
                }
            }
            for c in model.components.iter().filter(|c| &c.node == node && !c.fresh) {
                if c.reads.iter().any(|r| changed.contains(r)) {
                    restarts.push(Step::Restart { node: node.clone(), component: c.name.clone() });
                }
            }
        }
        steps.extend(restarts);
    }
    Stage { name: name.into(), steps }
}

/// The trust stages of rotating `rotations` (S1 makes the new CAs; S3 is API objects).
pub fn plan(model: &Model, rotations: &[Rotation], batches: &[Vec<String>]) -> Plan {
    let renamed = |id: &CaId| rotations.iter().find(|r| &r.old == id).map(|r| r.new.clone());
    let add = |set: &BTreeSet<CaId>| -> Option<BTreeSet<CaId>> {
        let extra: BTreeSet<CaId> = set.iter().filter_map(renamed).filter(|n| !set.contains(n)).collect();
        (!extra.is_empty()).then(|| set.union(&extra).cloned().collect())
    };
    let prune = |set: &BTreeSet<CaId>| -> Option<BTreeSet<CaId>> {
        let old: BTreeSet<&CaId> = rotations.iter().map(|r| &r.old).filter(|o| set.contains(*o) && renamed(o).is_some_and(|n| set.contains(&n))).collect();
        (!old.is_empty()).then(|| set.iter().filter(|c| !old.contains(c)).cloned().collect())
    };
    let s2 = stage(model, "S2 trust old and new", batches, |c| match c {
        Content::Trust { cas } => add(cas).map(|cas| Content::Trust { cas }),
        Content::Kubeconfig { client_signer, trusts } => add(trusts).map(|trusts| Content::Kubeconfig { client_signer: client_signer.clone(), trusts }),
        Content::Leaf { .. } => None,
    });
    // After S2 every trust holds both: apply S2's writes to see S4's inputs.
    let after = |m: &Model, s: &Stage| -> Model {
        let mut m = m.clone();
        for step in &s.steps {
            if let Step::Write { node, path, content } = step {
                m.files.insert(FileId::new(node, path), content.clone());
            }
        }
        m
    };
    let m2 = after(model, &s2);
    let s4 = stage(&m2, "S4 re-sign leaves with the new CA", batches, |c| match c {
        Content::Leaf { signer } => renamed(signer).map(|signer| Content::Leaf { signer }),
        Content::Kubeconfig { client_signer: Some(s), trusts } => renamed(s).map(|n| Content::Kubeconfig { client_signer: Some(n), trusts: trusts.clone() }),
        _ => None,
    });
    let m4 = after(&m2, &s4);
    let s5 = stage(&m4, "S5 prune the old CA", batches, |c| match c {
        Content::Trust { cas } => prune(cas).map(|cas| Content::Trust { cas }),
        Content::Kubeconfig { client_signer, trusts } => prune(trusts).map(|trusts| Content::Kubeconfig { client_signer: client_signer.clone(), trusts }),
        Content::Leaf { .. } => None,
    });
    Plan { version: PLAN_VERSION, stages: vec![s2, s4, s5] }
}
