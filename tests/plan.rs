//! The planner on real clusters' files: a model built from what discovery reads in each
//! real-world kubeadm set, the rotation of its CAs planned concretely and proven step by
//! step, no key in the plan, and the naive order (re-sign before trusting) refused.

mod common;

use std::path::Path;

use kcert::plan::schema::{Options, Recipe, StageId};
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
        let same_cas = || news.iter().map(|n| rotation::NewCaInput { name: n.name.clone(), cert_pem: n.cert_pem.clone(), key_pem: n.key_pem.clone() }).collect::<Vec<_>>();
        // What `kcert rotate-ca` hands its planner: the certificates discovery listed let go
        // (`Gathered::for_planning`). The same changes are planned from it, file for file.
        let lean = rt.block_on(kcert::gather::gather(&fleet, &[])).unwrap().for_planning();
        assert!(lean.nodes.iter().all(|n| n.pki.certs.is_empty()) && g.nodes.iter().any(|n| !n.pki.certs.is_empty()));
        let lean_input = Input { nodes: &lean.nodes, opts: input.opts.clone(), target: Default::default(), checks: vec![], id: "t".into(), cluster: "c".into(), ..input };
        let lean_plan = rotation::plan(&lean_input, rotation::old_cas(&lean_input, &aliases).unwrap(), same_cas()).unwrap_or_else(|e| panic!("{set}: {}", e.join("\n")));
        let p = rotation::plan(&input, olds, news).unwrap_or_else(|e| panic!("{set}: {}", e.join("\n")));
        let shape = |p: &kcert::plan::Plan| -> Vec<String> {
            let batches = p.stages.iter().flat_map(|s| s.steps.iter().map(move |st| (s.id, st))).filter_map(|(id, st)| match st { kcert::plan::schema::StepPlan::Batch(b) => Some((id, b)), _ => None });
            // What a file held before a step is compared up to S2: from S4 on it holds leaves
            // this plan signed, each with a serial of its own.
            let before = |id, f: &kcert::plan::schema::FileOp| f.old_sha256.clone().filter(|_| matches!(id, StageId::NewCa | StageId::Trust));
            batches.flat_map(|(id, b)| b.ops.iter().map(move |o| format!("{id:?} {} {:?} {:?} {}", o.node, o.files.iter().map(|f| (&f.path, f.action, before(id, f), f.mode)).collect::<Vec<_>>(), o.restarts, serde_json::to_string(&o.model).unwrap()))).collect()
        };
        assert_eq!(shape(&lean_plan), shape(&p), "{set}: a plan made from the lean facts differs");
        assert!(shape(&p).len() > 3, "{set}: {:?}", shape(&p));
        let text = serde_json::to_string(&p).unwrap();
        assert!(!text.contains("PRIVATE KEY"), "{set}: a private key block is in the plan");
        for k in &keys {
            for line in k.lines().filter(|l| !l.starts_with("-----")) {
                assert!(!text.contains(line), "{set}: a new CA key's bytes are in the plan");
            }
        }
        // Saved, each text is stored once and the plan reads back as it was: the same recipes,
        // so the same bytes applied; a plan of the previous format (texts inline) is refused.
        let saved = kcert::plan::stored::to_json(&p);
        let back = kcert::plan::read::read(&saved, Path::new("plan.json")).unwrap_or_else(|e| panic!("{set}: {e}"));
        assert_eq!(serde_json::to_value(&back).unwrap(), serde_json::to_value(&p).unwrap(), "{set}: the saved plan reads back changed");
        let v: serde_json::Value = serde_json::from_slice(&saved).unwrap();
        let stored = v["texts"].as_object().unwrap().len();
        let mut distinct = std::collections::BTreeSet::new();
        let mut held = std::collections::BTreeMap::new();
        let mut uses = 0;
        for f in p.stages.iter().flat_map(|s| &s.steps).filter_map(|st| match st { kcert::plan::schema::StepPlan::Batch(b) => Some(b), _ => None }).flat_map(|b| &b.ops).flat_map(|o| &o.files) {
            let texts: Vec<&kcert::plan::schema::Text> = match &f.recipe {
                Recipe::Text { text } => vec![text],
                Recipe::Certs { certs } | Recipe::CaKey { certs, .. } => certs.iter().collect(),
                Recipe::Kubeconfig { fields } => fields.iter().map(|x| &x.pem).collect(),
                _ => Vec::new(),
            };
            uses += texts.len();
            for t in texts {
                // In memory too, one copy per distinct text, however many ops carry it.
                let first = held.entry(t.to_string()).or_insert_with(|| t.clone());
                assert!(std::sync::Arc::ptr_eq(first, t), "{set}: a recipe text is held twice in memory");
                distinct.insert(t.to_string());
            }
        }
        assert_eq!(stored, distinct.len(), "{set}: each distinct recipe text is stored once");
        assert_eq!(String::from_utf8_lossy(&saved).matches("\"sha256:").count(), uses, "{set}: every recipe text is a reference");
        // As kcert saves it: gzip of that JSON, read back the same; damaged, refused by name.
        let gz = kcert::plan::stored::to_bytes(&p);
        assert!(gz.starts_with(&[0x1f, 0x8b]) && gz.len() * 3 < saved.len(), "{set}: the saved plan is gzip, {} bytes for {} of JSON", gz.len(), saved.len());
        let mut json = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(gz.as_slice()), &mut json).unwrap();
        assert_eq!(json.as_bytes(), saved.as_slice(), "{set}: the compressed plan is that JSON");
        // Saved into its file as it is compressed (`--plan-out` 0644, a run's copy 0600): the
        // same bytes, and the sha256 the journal records is theirs.
        let out = tempfile::tempdir().unwrap();
        for (private, mode) in [(false, 0o644), (true, 0o600)] {
            let file = out.path().join(format!("plan-{mode:o}.json.gz"));
            let sha = kcert::run::keys::save_plan(&file, &p, private).unwrap();
            assert_eq!(std::fs::read(&file).unwrap(), gz, "{set}: the file saved as it was compressed differs from the plan's bytes");
            assert_eq!(sha, kcert::pki::sha256(&gz), "{set}: the sha256 save_plan returns is not its file's");
            assert_eq!(std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions()) & 0o777, mode, "{set}: {}", file.display());
        }
        let back = kcert::plan::read::read(&gz, Path::new("plan.json.gz")).unwrap_or_else(|e| panic!("{set}: {e}"));
        assert_eq!(serde_json::to_value(&back).unwrap(), serde_json::to_value(&p).unwrap(), "{set}: the compressed plan reads back changed");
        let err = kcert::plan::read::read(&gz[..gz.len() / 2], Path::new("cut.json.gz")).unwrap_err().to_string();
        assert!(err.contains("plan cut.json.gz") && err.contains("gzip stream is damaged"), "{set}: {err}");
        assert!(!String::from_utf8_lossy(&saved).contains("\"text\": \"-----BEGIN"), "{set}: a recipe's text is inline");
        // Carried out on a copy of the files, step by step, the saved plan's recipes make
        // exactly the bytes the plan promises (keys aside: they come from the key store).
        let mut files: std::collections::BTreeMap<(String, String), Option<Vec<u8>>> = Default::default();
        let mut rebuilt = 0;
        for op in back.stages.iter().flat_map(|s| &s.steps).filter_map(|st| match st { kcert::plan::schema::StepPlan::Batch(b) => Some(b), _ => None }).flat_map(|b| &b.ops) {
            let node = g.nodes.iter().find(|n| n.name == op.node).unwrap();
            for f in &op.files {
                let key = (op.node.clone(), f.path.clone());
                let old = files.entry(key.clone()).or_insert_with(|| node.files.get(&f.path).map(|b| b.to_vec())).clone();
                if f.private {
                    files.remove(&key);
                    continue;
                }
                assert_eq!(old.as_deref().map(kcert::pki::sha256), f.old_sha256, "{set}: {}:{}", op.node, f.path);
                let new = f.recipe.apply(old.as_deref(), &|_: &str| None).unwrap_or_else(|e| panic!("{set}: {}:{}: {e}", op.node, f.path));
                assert_eq!(new.as_deref().map(kcert::pki::sha256), f.new_sha256, "{set}: {}:{} rebuilds other bytes from the saved plan", op.node, f.path);
                files.insert(key, new);
                rebuilt += 1;
            }
        }
        assert!(rebuilt > 10, "{set}: only {rebuilt} file ops rebuilt");
        // A stored text changed by hand: refused, naming its entry.
        let mut bad = v.clone();
        let (sha, _) = v["texts"].as_object().unwrap().iter().next().unwrap();
        bad["texts"][sha] = "-----BEGIN CERTIFICATE-----\nedited\n".into();
        let err = kcert::plan::read::read(&serde_json::to_vec(&bad).unwrap(), Path::new("edited.json")).unwrap_err().to_string();
        assert!(err.contains(&format!("texts.{sha}: its text's sha256 is")) && err.contains("nothing was changed"), "{set}: {err}");
        let mut v2 = serde_json::to_value(&p).unwrap();
        v2["version"] = 2.into();
        let err = kcert::plan::read::read(&serde_json::to_vec(&v2).unwrap(), Path::new("old.json")).unwrap_err().to_string();
        assert!(err.contains("plan format version 2 (an older kcert's format)") && err.contains("make the plan again"), "{set}: {err}");
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

#[test]
fn gathering_holds_a_symlink_and_its_target_as_one_copy_of_their_bytes() {
    // A node made by the project's openssl script: the kubelet's client pem under its dated
    // name and under the `kubelet-client-current.pem` symlink, one file on disk.
    let dir = tempfile::tempdir().unwrap();
    let ok = std::process::Command::new("bash").arg(common::fleet::repo().join("docker/pki/make-kubeadm-pki.sh")).arg(dir.path()).arg("cp1:10.0.0.11:cp").status().unwrap();
    assert!(ok.success(), "make-kubeadm-pki.sh");
    let fleet = Fleet::local(Some(dir.path().join("cp1")), Some(kcert::playbook::builtin("kubeadm").unwrap())).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let g = rt.block_on(kcert::gather::gather(&fleet, &[])).unwrap();
    let files = &g.nodes[0].files;
    let link = &files["/var/lib/kubelet/pki/kubelet-client-current.pem"];
    let (target, bytes) = files.iter().find(|(p, _)| p.starts_with("/var/lib/kubelet/pki/kubelet-client-2")).expect("the link's dated target was read");
    assert_eq!(std::fs::read(dir.path().join("cp1").join(&target[1..])).unwrap(), **bytes, "{target} as read");
    assert!(std::sync::Arc::ptr_eq(link, bytes), "the link and {target} are held as one copy");
    let apiserver = &files["/etc/kubernetes/pki/apiserver.crt"];
    assert!(!std::sync::Arc::ptr_eq(link, apiserver) && **link != **apiserver);
}

#[test]
fn workers_planned_a_batch_at_a_time_end_on_the_new_ca_alone_in_the_stages_order() {
    use kcert::plan::rotation::{self, Input};
    use kcert::plan::schema::StepPlan;
    // A kubeadm control plane and three workers, made with openssl; batches of two workers.
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/pki/make-kubeadm-pki.sh");
    let made = std::process::Command::new(script).arg(dir.path()).args(["cp1:10.0.0.1:cp", "w1:10.0.1.1:worker", "w2:10.0.1.2:worker", "w3:10.0.1.3:worker"]).status().unwrap();
    assert!(made.success(), "make-kubeadm-pki.sh failed");
    let pb = kcert::playbook::builtin("kubeadm").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let nodes: Vec<_> = ["cp1", "w1", "w2", "w3"]
        .iter()
        .map(|name| {
            let fleet = Fleet::local(Some(dir.path().join(name)), Some(pb.clone())).unwrap();
            let mut n = rt.block_on(kcert::gather::gather(&fleet, &[])).unwrap().for_planning().nodes.remove(0);
            (n.name, n.control_plane, n.offline) = (name.to_string(), *name == "cp1", false);
            n
        })
        .collect();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let all: Vec<String> = pb.rotation.as_ref().unwrap().cas.keys().cloned().collect();
    let opts = Options { cas: all.clone(), ca_days: Some(3650), leaf_days: 365, key_type: None, batch_size: 2, kubernetes_api: false, offline: false, certs: vec![] };
    let input = Input { playbook: &pb, target: Default::default(), nodes: &nodes, checks: vec![], opts, id: "t".into(), cluster: "c".into(), now };
    let olds = rotation::old_cas(&input, &all).unwrap();
    let news = rotation::successors(&olds, 3650, now, None).unwrap();
    let keys = news.iter().map(|n| (n.name.clone(), n.key_pem.clone())).collect();
    let p = rotation::plan(&input, olds, news).unwrap();
    // The trust model's edges share their names: every worker's kubelet reaches cp1's
    // apiserver through one copy of its end, and each worker's own end is one copy too.
    let m = build::model(&pb, &nodes);
    let to_api: Vec<_> = m.edges.iter().filter(|e| &*e.server.component == "kube-apiserver" && e.client.node.starts_with('w')).collect();
    assert!(to_api.len() >= 3, "{} edges to the apiserver from the workers", to_api.len());
    for e in &to_api {
        let same = to_api.iter().find(|x| x.name == e.name).unwrap();
        assert!(std::sync::Arc::ptr_eq(&e.server.node, &same.server.node) && std::sync::Arc::ptr_eq(e.server.cert.as_ref().unwrap(), same.server.cert.as_ref().unwrap()), "{}", e.label());
        assert!(std::sync::Arc::ptr_eq(&e.name, &same.name));
    }
    let w1: Vec<_> = m.edges.iter().flat_map(|e| [&e.client.node, &e.server.node]).filter(|n| &***n == "w1").collect();
    assert!(w1.len() >= 2 && w1.iter().all(|n| std::sync::Arc::ptr_eq(n, w1[0])), "w1 is one name in all its {} ends", w1.len());
    // Every changing stage goes batch by batch, control plane first, each worker batch once.
    for id in [StageId::Trust, StageId::Resign, StageId::Prune] {
        let stage = p.stages.iter().find(|s| s.id == id).unwrap();
        let batches: Vec<Vec<String>> = stage.steps.iter().filter_map(|s| if let StepPlan::Batch(b) = s { Some(b.nodes.clone()) } else { None }).filter(|b| b.iter().any(|n| n.starts_with('w'))).collect();
        assert_eq!(batches, [vec!["w1".to_string(), "w2".to_string()], vec!["w3".to_string()]], "{id}");
        let first = stage.steps.iter().position(|s| matches!(s, StepPlan::Batch(b) if b.nodes.iter().any(|n| n.starts_with('w'))));
        assert!(stage.steps.iter().take(first.unwrap()).any(|s| matches!(s, StepPlan::Batch(b) if b.nodes == ["cp1"])), "{id}: the control plane goes first");
    }
    // Replayed op by op on every node's files: each worker trusts the new CAs alone and
    // holds leaves they signed (a worker's S4 or S5 planned from anything but its own
    // previous stage would leave an old CA behind).
    let replayed = kcert::plan::replay::replay(&pb, &nodes, &p, &keys, &Default::default());
    assert!(replayed.is_empty(), "{replayed:#?}");
    let before = kcert::plan::outcome::rotation_problems(&pb, &nodes, &p);
    for w in ["w1", "w2", "w3"] {
        assert!(before.iter().any(|b| b.starts_with(&format!("{w}:")) && b.contains("still trusts the old")), "{w} is checked: {before:#?}");
    }
}
