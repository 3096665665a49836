//! The planner on real clusters' files: a model built from what discovery reads in each
//! real-world kubeadm set, the rotation of its three CAs planned and proven step by step,
//! and the naive order (re-sign before trusting) refused.

mod common;

use kcert::fleet::Fleet;
use kcert::plan::{self, Content, Plan, Step, build, prove, rotate};

const SETS: &[&str] = &["kubeadm-zetaoss-zeta-linux", "kubeadm-Eddicson-testdevops", "kubeadm-MaxxMoney-kubeadm_etc_kubernetes", "kubeadm-sijong09-k8s", "kubeadm-legacy-rongfengliang-k8sconfig"];

fn model_of(set: &str) -> (plan::Model, Vec<rotate::Rotation>) {
    let root = common::real_world().join(set);
    let fleet = Fleet::local(Some(root), Some(kcert::playbook::load("kubeadm").unwrap())).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let g = rt.block_on(kcert::renew::gather(&fleet, &[])).unwrap();
    let facts: Vec<build::NodeFacts<'_>> = g.nodes.iter().map(|n| build::NodeFacts { name: &n.target.name, pki: &n.pki, files: &n.files }).collect();
    let m = build::model(&g.playbook, &facts);
    let rotations = build::cas(&g.playbook, &facts).keys().map(|old| rotate::Rotation { old: old.clone(), new: format!("{}@new", old.split('@').next().unwrap()) }).collect();
    (m, rotations)
}

fn writes(p: &Plan, stage: usize) -> usize {
    p.stages[stage].steps.iter().filter(|s| matches!(s, Step::Write { .. })).count()
}

#[test]
fn rotating_every_ca_of_every_kubeadm_set_is_planned_and_proven() {
    for set in SETS {
        let (m, rotations) = model_of(set);
        assert!(rotations.len() >= 2, "{set}: CAs {rotations:?}");
        assert!(m.edges.len() >= 4, "{set}: {} edges", m.edges.len());
        let leaves = m.files.values().filter(|c| matches!(c, Content::Leaf { signer } if rotations.iter().any(|r| &r.old == signer))).count()
            + m.files.values().filter(|c| matches!(c, Content::Kubeconfig { client_signer: Some(s), .. } if rotations.iter().any(|r| &r.old == s))).count();
        let p = rotate::plan(&m, &rotations, &[vec!["local".to_string()]]);
        prove::prove(&m, &p).unwrap_or_else(|v| panic!("{set}: the runbook order was refused: {v}"));
        assert_eq!(writes(&p, 1), leaves, "{set}: S4 re-signs every leaf and kubeconfig client cert");
        assert!(writes(&p, 0) > 0 && writes(&p, 2) == writes(&p, 0), "{set}: S2 bundles and S5 prunes the same files");
        // Re-signing before the trust is bundled breaks an edge, and the proof says which.
        let naive = Plan { version: p.version, stages: vec![p.stages[1].clone()] };
        let v = prove::prove(&m, &naive).expect_err("naive order proven");
        assert!(v.stage.starts_with("S4") && v.why.contains("@new"), "{set}: {v}");
    }
}
