//! The planner on real clusters' files: a model built from what discovery reads in each
//! real-world kubeadm set, the rotation of its CAs planned concretely and proven step by
//! step, no key in the plan, and the naive order (re-sign before trusting) refused.

mod common;

use kcert::plan::schema::Options;
use kcert::plan::{build, prove};
use kcert::reach::fleet::Fleet;

const SETS: &[&str] = &["kubeadm-zetaoss-zeta-linux", "kubeadm-Eddicson-testdevops", "kubeadm-MaxxMoney-kubeadm_etc_kubernetes", "kubeadm-sijong09-k8s", "kubeadm-legacy-rongfengliang-k8sconfig"];

#[test]
fn the_concrete_rotation_of_every_kubeadm_set_is_proven_keyless_and_its_naive_order_refused() {
    use kcert::plan::rotation::{self, Input};
    for set in SETS {
        let root = common::real_world().join(set);
        let fleet = Fleet::local(Some(root), Some(kcert::playbook::builtin("kubeadm").unwrap())).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let g = rt.block_on(kcert::gather::gather(&fleet, &[])).unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let all: Vec<String> = g.playbook.rotation.as_ref().unwrap().cas.keys().cloned().collect();
        let opts = Options { cas: all.clone(), ca_days: Some(3650), leaf_days: 365, key_type: None, batch_size: 1, kubernetes_api: false, offline: true, certs: vec![] };
        let input = Input { playbook: &g.playbook, target: Default::default(), nodes: &g.nodes, checks: vec![], opts, id: "t".into(), cluster: "c".into(), now };
        // The v1.8 set has no etcd CA: rotate what it has.
        let aliases: Vec<String> = all.into_iter().filter(|a| rotation::old_cas(&input, std::slice::from_ref(a)).is_ok()).collect();
        let olds = rotation::old_cas(&input, &aliases).unwrap_or_else(|e| panic!("{set}: {e:?}"));
        let news = rotation::successors(&olds, 3650, now, None).unwrap();
        let keys: Vec<String> = news.iter().map(|n| n.key_pem.clone()).collect();
        let p = rotation::plan(&input, olds, news).unwrap_or_else(|e| panic!("{set}: {}", e.join("\n")));
        let text = serde_json::to_string(&p).unwrap();
        assert!(!text.contains("PRIVATE KEY"), "{set}: a private key block is in the plan");
        for k in &keys {
            for line in k.lines().filter(|l| !l.starts_with("-----")) {
                assert!(!text.contains(line), "{set}: a new CA key's bytes are in the plan");
            }
        }
        // The plan's own effect on the model, re-signing before trusting: refused, naming S4 and an edge.
        let m = build::model(&g.playbook, &g.nodes);
        let effects = p.effects();
        prove::prove(&m, &effects).unwrap_or_else(|v| panic!("{set}: {v}"));
        let s4 = effects.iter().position(|s| s.name.starts_with("S4")).unwrap();
        let naive = vec![effects[s4].clone()];
        let v = prove::prove(&m, &naive).expect_err("re-signing first is refused");
        assert!(v.stage.starts_with("S4") && v.why.contains("does not trust"), "{set}: {v}");
    }
}

#[test]
fn the_files_judge_a_rotation_not_the_plan_before_it_the_old_cas_are_everywhere_after_it_nowhere() {
    use kcert::plan::rotation::{self, Input};
    let root = common::real_world().join(SETS[3]);
    let fleet = Fleet::local(Some(root), Some(kcert::playbook::builtin("kubeadm").unwrap())).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let g = rt.block_on(kcert::gather::gather(&fleet, &[])).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let all: Vec<String> = g.playbook.rotation.as_ref().unwrap().cas.keys().cloned().collect();
    let opts = Options { cas: all.clone(), ca_days: Some(3650), leaf_days: 365, key_type: None, batch_size: 1, kubernetes_api: false, offline: true, certs: vec![] };
    let input = Input { playbook: &g.playbook, target: Default::default(), nodes: &g.nodes, checks: vec![], opts, id: "t".into(), cluster: "c".into(), now };
    let olds = rotation::old_cas(&input, &all).unwrap();
    let news = rotation::successors(&olds, 3650, now, None).unwrap();
    let keys = news.iter().map(|n| (n.name.clone(), n.key_pem.clone())).collect();
    let p = rotation::plan(&input, olds, news).unwrap();
    // Before: every trust holds an old CA, every leaf is signed by one, the CA files are the old ones.
    let before = kcert::plan::outcome::rotation_problems(&g.playbook, &g.nodes, &p);
    for want in ["/etc/kubernetes/pki/ca.crt still trusts the old cluster CA's key", "/etc/kubernetes/pki/apiserver.crt is still signed by the old CA", "users[kubernetes-admin].client-certificate-data is still signed by the old CA", "/etc/kubernetes/pki/ca.crt starts with CN=kubernetes, not the new cluster CA"] {
        assert!(before.iter().any(|b| b.contains(want)), "{want} not in {before:#?}");
    }
    // Replayed op by op on the files: the end is a finished rotation.
    let replayed = kcert::plan::replay::replay(&g.playbook, &g.nodes, &p, &keys, &Default::default());
    assert!(replayed.is_empty(), "{replayed:#?}");
    // Without the new keys, the recipes cannot be carried out: said, not panicked on.
    let no_keys = kcert::plan::replay::replay(&g.playbook, &g.nodes, &p, &Default::default(), &Default::default());
    assert!(no_keys.iter().any(|b| b.contains("not in the run's key store")), "{no_keys:#?}");
}
