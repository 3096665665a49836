//! `kcert rotate-ca` offline (`--root`) on copies of the real-world kubeadm sets, judged by
//! openssl: after a rotation every leaf and kubeconfig client cert verifies against the new
//! CAs and not the old ones, no file trusts an old CA, the CA keys match the new CAs, the
//! signing pair is back on ca.crt/ca.key; rollback restores every byte; saved plans are
//! refused once the files moved; bad input changes nothing; no key bytes leak anywhere.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Test, kubeconfig_certs, pem_certs, walk};

const SETS: &[&str] = &["kubeadm-zetaoss-zeta-linux", "kubeadm-Eddicson-testdevops", "kubeadm-MaxxMoney-kubeadm_etc_kubernetes", "kubeadm-sijong09-k8s", "kubeadm-legacy-rongfengliang-k8sconfig"];

/// A copy of a set to change, and a state dir.
struct Copy {
    _dir: tempfile::TempDir,
    root: PathBuf,
    state: PathBuf,
}

fn copy(set: &str) -> Copy {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let ok = Command::new("cp").arg("-a").arg(common::real_world().join(set)).arg(&root).status().unwrap().success();
    assert!(ok, "cp -a {set}");
    let state = dir.path().join("state");
    Copy { root, state, _dir: dir }
}

impl Copy {
    fn kcert(&self, args: &[&str]) -> Test {
        Test::new().args(args.iter().copied()).args(["--state-dir".as_ref(), self.state.as_os_str()])
    }
    fn rotate(&self, extra: &[&str]) -> Test {
        let mut a = vec!["rotate-ca", "--local", "--root", self.root.to_str().unwrap()];
        a.extend_from_slice(extra);
        self.kcert(&a)
    }
    fn pki(&self) -> PathBuf {
        self.root.join("etc/kubernetes/pki")
    }
    /// sha256 of every file of the node, kcert's own backups left out.
    fn snapshot(&self) -> BTreeMap<String, String> {
        walk(&self.root, &self.root)
            .into_iter()
            .filter(|(_, rel)| !rel.starts_with("/var/lib/kcert/"))
            .map(|(p, rel)| (rel, sha256(&std::fs::read(p).unwrap())))
            .collect()
    }
}

fn sha256(b: &[u8]) -> String {
    use sha2::Digest;
    kcert::pki::cert::hex(&sha2::Sha256::digest(b))
}

fn openssl_ok(dir: &Path, args: &[&str]) -> bool {
    Command::new("openssl").args(args).current_dir(dir).output().unwrap().status.success()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// The CA files of a set (absent ones skipped) and their certificates as PEM.
fn ca_files(root: &Path) -> Vec<(String, Vec<String>)> {
    ["ca.crt", "etcd/ca.crt", "front-proxy-ca.crt"]
        .iter()
        .filter_map(|f| {
            let p = root.join("etc/kubernetes/pki").join(f);
            p.exists().then(|| (f.to_string(), pem_certs(&std::fs::read_to_string(p).unwrap())))
        })
        .collect()
}

/// Every leaf of the node: PEM files under pki/ that are not CAs, and kubeconfig client certs.
fn leaves(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (p, rel) in walk(root, &root.join("etc/kubernetes")) {
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        if rel.contains("/pki/") && !rel.ends_with("ca.crt") {
            out.extend(pem_certs(&text).into_iter().take(1).map(|c| (rel.clone(), c)));
        }
        if rel.ends_with(".conf") {
            // kubeconfig_certs gives certificate-authority-data first, then the client cert.
            out.extend(kubeconfig_certs(&text).into_iter().skip(1).map(|c| (format!("{rel} client cert"), c)));
        }
    }
    out
}

#[test]
fn every_kubeadm_set_rotates_offline_onto_the_new_cas_and_rolls_back_byte_for_byte() {
    for set in SETS {
        let c = copy(set);
        let before = c.snapshot();
        let old_cas = ca_files(&c.root);
        let run = c.rotate(&["--yes", "-o", "json"]).run();
        run.status(0);
        let run_id = run.json()["run_id"].as_str().unwrap().to_string();
        let new_cas = ca_files(&c.root);
        let scratch = tempfile::tempdir().unwrap();
        let d = scratch.path();
        let all_old: String = old_cas.iter().flat_map(|(_, v)| v.clone()).collect();
        let all_new: String = new_cas.iter().flat_map(|(_, v)| v.clone()).collect();
        write(&d.join("old.pem"), &all_old);
        write(&d.join("new.pem"), &all_new);
        for ((f, old), (_, new)) in old_cas.iter().zip(&new_cas) {
            assert_eq!(new.len(), 1, "{set}: {f} holds only the new CA after the rotation");
            assert!(!old.contains(&new[0]), "{set}: {f} is a new CA");
        }
        let leaves = leaves(&c.root);
        assert!(leaves.len() >= 7, "{set}: {} leaves", leaves.len());
        for (what, pem) in &leaves {
            write(&d.join("leaf.pem"), pem);
            assert!(openssl_ok(d, &["verify", "-CAfile", "new.pem", "leaf.pem"]), "{set}: {what} does not verify against the new CAs");
            assert!(!openssl_ok(d, &["verify", "-no_check_time", "-CAfile", "old.pem", "leaf.pem"]), "{set}: {what} still verifies against an old CA");
        }
        // No trust anywhere holds an old CA: bundles, kubeconfig CA data.
        for (p, rel) in walk(&c.root, &c.root.join("etc/kubernetes")) {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            for cert in pem_certs(&text).into_iter().chain(kubeconfig_certs(&text)) {
                assert!(!all_old.contains(&cert), "{set}: {rel} still holds an old CA");
            }
        }
        // Each CA key is the new CA's; the signing pair is back on ca.crt/ca.key; no staging left.
        let pki = c.pki();
        for (f, _) in &new_cas {
            let key = f.replace(".crt", ".key");
            let a = Command::new("openssl").args(["x509", "-noout", "-pubkey", "-in", f]).current_dir(&pki).output().unwrap().stdout;
            let b = Command::new("openssl").args(["pkey", "-pubout", "-in", &key]).current_dir(&pki).output().unwrap().stdout;
            assert_eq!(a, b, "{set}: {key} is not the new {f}'s key");
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(pki.join(&key)).unwrap().permissions().mode() & 0o777, 0o600, "{set}: {key} mode");
        }
        let cm = std::fs::read_to_string(c.root.join("etc/kubernetes/manifests/kube-controller-manager.yaml")).unwrap();
        assert!(cm.contains("--cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt") && cm.contains("--cluster-signing-key-file=/etc/kubernetes/pki/ca.key"), "{set}: {cm}");
        assert!(!pki.join("kcert-rotation").exists(), "{set}: the staging directory is cleaned up");
        // Only what a rotation changes changed: the rest is byte for byte as it was.
        let after = c.snapshot();
        for (rel, sha) in &before {
            let changes = rel.contains("/pki/") || rel.ends_with(".conf") || rel.ends_with("kube-controller-manager.yaml");
            if !changes {
                assert_eq!(after.get(rel), Some(sha), "{set}: {rel} changed");
            }
        }
        c.kcert(&["rollback", &run_id, "--yes"]).run().status(0).stdout_has("rolled back");
        assert_eq!(c.snapshot(), before, "{set}: rollback restores every byte");
    }
}

#[test]
fn a_dry_run_shows_every_stage_and_changes_nothing() {
    let c = copy(SETS[0]);
    let before = c.snapshot();
    let run = c.rotate(&["--dry-run"]).run();
    run.status(0)
        .stdout_has("S1 new CA")
        .stdout_has("S2 trust old and new")
        .stdout_has("S3 cluster API objects")
        .stdout_has("skipped: offline")
        .stdout_has("S4 re-sign every leaf")
        .stdout_has("S5 prune the old CA")
        .stdout_has("~ /etc/kubernetes/pki/ca.crt")
        .stdout_has("+ CN=kubernetes (successor")
        .stdout_has("re-signed CN=kube-apiserver: issuer CN=kubernetes [")
        .stdout_has("--cluster-signing-cert-file: /etc/kubernetes/pki/ca.crt -> /etc/kubernetes/pki/kcert-rotation/old/ca.crt")
        .stdout_has("Proof: each of the");
    assert_eq!(c.snapshot(), before, "a dry run changes no byte");
    assert!(!c.state.exists(), "a dry run journals nothing");
    let json = c.rotate(&["--dry-run", "-o", "json"]).run();
    json.status(0);
    let v = json.json();
    let ids: Vec<&str> = v["stages"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["S0", "S1", "S2", "S3", "S4", "S5"]);
    assert_eq!(v["kind"], "rotate-ca");
    assert_eq!(v["cas"].as_array().unwrap().len(), 3);
    // A re-signed leaf reads with its old issuer and the new CA that signed it, by fingerprint.
    let ca = v["cas"].as_array().unwrap().iter().find(|c| c["old_subject"] == "CN=kubernetes").unwrap();
    let label = |side: &str| format!("{} [{}]", ca[format!("{side}_subject")].as_str().unwrap(), &ca[format!("{side}_sha256")].as_str().unwrap()[..8]);
    let want = format!("re-signed CN=kube-apiserver: issuer {} -> {}, expires", label("old"), label("new"));
    assert!(json.stdout.contains(&want), "no {want:?} in the plan");
}


#[test]
fn no_private_key_bytes_in_the_plan_the_journal_the_output_or_the_logs() {
    let c = copy(SETS[0]);
    let plan = c.state.parent().unwrap().join("plan.json");
    let saved = c.rotate(&["--plan-out", plan.to_str().unwrap(), "-vv"]).run();
    saved.status(0).stderr_has("kcert apply");
    let applied = c.kcert(&["apply", plan.to_str().unwrap(), "--yes", "-o", "json", "-vv"]).run();
    applied.status(0);
    let dry = c.rotate(&["--dry-run", "-o", "yaml", "-vvv"]).run();
    let run_dir = c.state.join("runs");
    let mut texts = vec![saved.stdout.clone(), saved.stderr.clone(), applied.stdout.clone(), applied.stderr.clone(), dry.stdout.clone(), dry.stderr.clone(), common::text_of(&plan)];
    for (p, rel) in walk(&run_dir, &run_dir) {
        if !rel.contains("/keys/") {
            texts.push(common::text_of(&p));
        }
    }
    // The original keys (in the set) and the new CA keys (in the run folder's keys/).
    let original = common::real_world().join(SETS[0]);
    let keys = common::private_key_lines(&[&original, &run_dir]);
    assert!(keys.len() > 20, "{} key lines", keys.len());
    for t in &texts {
        assert!(!t.contains("PRIVATE KEY-----"), "a private key block in:\n{}", &t[..t.len().min(300)]);
        for k in &keys {
            assert!(!t.contains(k.as_str()), "private key bytes leaked: {k}");
        }
    }
    // The keys kcert keeps are 0600 in 0700 folders, and the saved plan's copy is gone once applied.
    use std::os::unix::fs::PermissionsExt;
    for (p, rel) in walk(&run_dir, &run_dir) {
        if rel.contains("/keys/") {
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600, "{rel}");
        }
    }
    assert!(!c.state.join("plans").read_dir().map(|mut d| d.next().is_some()).unwrap_or(false), "the plan's key copy is removed once applied");
}

#[test]
fn a_saved_plan_is_refused_once_a_file_moved_and_runs_while_the_facts_hold() {
    let c = copy(SETS[2]);
    let plan = c.state.parent().unwrap().join("plan.json");
    c.rotate(&["--plan-out", plan.to_str().unwrap()]).run().status(0);
    let before = c.snapshot();
    let admin = c.root.join("etc/kubernetes/admin.conf");
    let orig = std::fs::read(&admin).unwrap();
    let mut moved = orig.clone();
    moved.extend_from_slice(b"# edited by hand\n");
    std::fs::write(&admin, &moved).unwrap();
    let run = c.kcert(&["apply", plan.to_str().unwrap(), "--yes"]).run();
    run.status(2).stderr_has("the cluster moved").stderr_has("/etc/kubernetes/admin.conf changed").stderr_has("nothing was changed");
    std::fs::write(&admin, &orig).unwrap();
    assert_eq!(c.snapshot(), before, "a refused apply changes nothing");
    // Without a terminal and without --yes: refused, nothing changed.
    c.kcert(&["apply", plan.to_str().unwrap()]).run().status(2).stderr_has("--yes");
    let run = c.kcert(&["apply", plan.to_str().unwrap(), "--yes"]).run();
    run.status(0).stdout_has("S5").stdout_has("done");
    let ca = std::fs::read_to_string(c.pki().join("ca.crt")).unwrap();
    assert!(!before.is_empty() && pem_certs(&ca).len() == 1);
    let plan_v = common::plan_json(&plan);
    let new_ca = plan_v["cas"].as_array().unwrap().iter().find(|x| x["alias"] == "cluster").unwrap()["cert_pem"].as_str().unwrap().to_string();
    assert_eq!(pem_certs(&ca), pem_certs(&new_ca), "the plan's own new CA is the one in place");
    // Applied once, the facts moved: a second apply is refused.
    c.kcert(&["apply", plan.to_str().unwrap(), "--yes"]).run().status(2).stderr_has("moved");
}

#[test]
fn bad_input_is_refused_naming_what_and_where_and_changes_nothing() {
    let c = copy(SETS[0]);
    let pki = c.pki();
    let before = c.snapshot();
    c.rotate(&["--ca", "cluster,nope", "--dry-run"]).run().status(2).stderr_has("--ca nope").stderr_has("known: cluster, etcd, front-proxy");
    c.rotate(&["--key-type", "dsa1024", "--dry-run"]).run().status(2).stderr_has("rsa2048");
    c.rotate(&[]).run().status(2).stderr_has("--yes");
    // Plans that are not plans.
    let junk = c.state.parent().unwrap().join("junk.json");
    std::fs::write(&junk, "{\"kind\": \"bogus\", \"version\": 2}").unwrap();
    c.kcert(&["apply", junk.to_str().unwrap(), "--yes"]).run().status(2).stderr_has("not a kcert plan of a known kind (rotate-ca or renew): its kind is \"bogus\"");
    std::fs::write(&junk, "{\"kind\": \"renew\", \"version\": 1}").unwrap();
    c.kcert(&["apply", junk.to_str().unwrap(), "--yes"]).run().status(2).stderr_has("plan format version 1 (an older kcert's format); this kcert reads version 5");
    std::fs::write(&junk, "{\"kind\": ").unwrap();
    c.kcert(&["apply", junk.to_str().unwrap(), "--yes"]).run().status(2).stderr_has("junk.json:1:").stderr_has("not a kcert plan");
    c.kcert(&["apply", "/nonexistent/plan.json", "--yes"]).run().status(2).stderr_has("plan /nonexistent/plan.json");
    c.kcert(&["resume", "no-such-run", "--yes"]).run().status(2).stderr_has("run no-such-run");
    assert_eq!(c.snapshot(), before);
    // A CA key that is not the CA's.
    let ca_key = std::fs::read(pki.join("ca.key")).unwrap();
    std::fs::copy(pki.join("front-proxy-ca.key"), pki.join("ca.key")).unwrap();
    let mismatched = c.snapshot();
    c.rotate(&["--yes"]).run().status(2).stderr_has("/etc/kubernetes/pki/ca.key on local").stderr_has("does not match").stderr_has("nothing was changed");
    assert_eq!(c.snapshot(), mismatched);
    std::fs::write(pki.join("ca.key"), &ca_key).unwrap();
    // A CA file that already holds two CAs: a rotation left half done.
    let ca = std::fs::read_to_string(pki.join("ca.crt")).unwrap();
    let fp = std::fs::read_to_string(pki.join("front-proxy-ca.crt")).unwrap();
    write(&pki.join("ca.crt"), &format!("{ca}{fp}"));
    c.rotate(&["--yes"]).run().status(2).stderr_has("hold 2 different CAs").stderr_has("kcert runs");
    write(&pki.join("ca.crt"), &ca);
    // A leaf that is not PEM at all: the edge that reads it is named, and the file.
    let leaf = std::fs::read(pki.join("apiserver-etcd-client.crt")).unwrap();
    std::fs::write(pki.join("apiserver-etcd-client.crt"), "garbage\n").unwrap();
    let corrupt = c.snapshot();
    c.rotate(&["--dry-run"]).run().status(2).stderr_has("apiserver-etcd-client.crt is missing or unreadable").stderr_has("edge kube-apiserver -> etcd").stderr_has("nothing was changed");
    assert_eq!(c.snapshot(), corrupt);
    std::fs::write(pki.join("apiserver-etcd-client.crt"), &leaf).unwrap();
    // An absent CA key: kubeadm's external-CA mode.
    std::fs::remove_file(pki.join("etcd/ca.key")).unwrap();
    c.rotate(&["--yes", "--ca", "etcd"]).run().status(2).stderr_has("external-CA").stderr_has("looked for local: /etc/kubernetes/pki/etcd/ca.key");
    assert!(!c.state.join("runs").exists(), "no run was started");
}

#[test]
fn rolling_back_to_a_stage_keeps_the_earlier_ones_and_resume_carries_on_from_there() {
    let c = copy(SETS[3]);
    let run = c.rotate(&["--yes", "-o", "json"]).run();
    run.status(0);
    let id = run.json()["run_id"].as_str().unwrap().to_string();
    let rotated = c.snapshot();
    c.kcert(&["rollback", &id, "--to-stage", "S4", "--yes"]).run().status(0);
    // S1-S3 stand: every trust holds old and new; the leaves are the old CA's again.
    let ca = std::fs::read_to_string(c.pki().join("ca.crt")).unwrap();
    assert_eq!(pem_certs(&ca).len(), 2, "ca.crt holds both CAs at the S4 boundary");
    let scratch = tempfile::tempdir().unwrap();
    write(&scratch.path().join("old.pem"), &pem_certs(&ca)[0]);
    write(&scratch.path().join("leaf.pem"), &pem_certs(&std::fs::read_to_string(c.pki().join("apiserver.crt")).unwrap())[0]);
    assert!(openssl_ok(scratch.path(), &["verify", "-no_check_time", "-CAfile", "old.pem", "leaf.pem"]), "apiserver.crt is back to the old CA's");
    c.kcert(&["runs"]).run().status(0).stdout_has(&id).stdout_has("rolled back");
    let resumed = c.kcert(&["resume", &id, "--yes"]).run();
    resumed.status(0).stdout_has("done earlier");
    // The same plan carried out again: the same bytes (the re-signed leaves are the plan's).
    assert_eq!(c.snapshot(), rotated);
    c.kcert(&["resume", &id, "--yes"]).run().status(2).stderr_has("finished");
    // The run log beside the journal tells the story, rollback and resume included.
    let log = std::fs::read_to_string(c.state.join("runs").join(&id).join("run.log")).unwrap();
    for want in ["S1 new CA", "S4 step 1/1: local", "S5 rollback", "S4 re-sign every leaf"] {
        assert!(log.contains(want), "run.log lacks {want:?}:\n{log}");
    }
}

#[test]
fn one_ca_can_be_rotated_alone_and_the_new_key_type_chosen() {
    let c = copy(SETS[1]);
    let before = c.snapshot();
    let run = c.rotate(&["--ca", "etcd", "--key-type", "ecdsa-p256", "--yes", "-o", "json"]).run();
    run.status(0);
    let after = c.snapshot();
    // Only the etcd CA moved: its files, the etcd leaves, the apiserver's etcd client cert.
    for (rel, sha) in &before {
        // Leaves keep their keys; the CA's key is the new one.
        let etcd = (rel.contains("/pki/etcd/") && (rel.ends_with(".crt") || rel.ends_with("/ca.key"))) || rel.ends_with("apiserver-etcd-client.crt");
        assert_eq!(after.get(rel) == Some(sha), !etcd, "{rel}: changed {}", after.get(rel) != Some(sha));
    }
    let pki = c.pki();
    let text = String::from_utf8(Command::new("openssl").args(["x509", "-noout", "-text", "-in", "etcd/ca.crt"]).current_dir(&pki).output().unwrap().stdout).unwrap();
    assert!(text.contains("NIST CURVE: P-256") && text.contains("etcd-ca (successor"), "{text}");
    for leaf in ["etcd/server.crt", "etcd/peer.crt", "etcd/healthcheck-client.crt", "apiserver-etcd-client.crt"] {
        assert!(openssl_ok(&pki, &["verify", "-CAfile", "etcd/ca.crt", leaf]), "{leaf}");
    }
    // The API objects carry the cluster CA, which this run did not touch: said so in the plan.
    let plan = common::plan_json(&c.state.join("runs").join(run.json()["run_id"].as_str().unwrap()).join("plan.json.gz"));
    let s3 = plan["stages"].as_array().unwrap().iter().find(|s| s["id"] == "S3").unwrap();
    assert!(s3["steps"].as_array().unwrap().iter().all(|s| s["skipped"].as_str().is_some()), "{s3}");
}

#[test]
fn no_second_run_starts_while_one_on_the_cluster_is_unfinished() {
    let c = copy(SETS[3]);
    let run = c.rotate(&["--yes", "-o", "json"]).run();
    run.status(0);
    let id = run.json()["run_id"].as_str().unwrap().to_string();
    // Back to the start of S4: S1-S3 stand, both CAs trusted; the rotation is unfinished.
    c.kcert(&["rollback", &id, "--to-stage", "S4", "--yes"]).run().status(0);
    let half = c.snapshot();
    let root = c.root.to_str().unwrap();
    for cmd in [vec!["renew", "--local", "--root", root, "--yes"], vec!["rotate-ca", "--local", "--root", root, "--yes"]] {
        c.kcert(&cmd).run().status(2).stderr_has(&format!("the rotate-ca run {id} on this cluster is unfinished")).stderr_has(&format!("kcert resume {id}")).stderr_has(&format!("kcert rollback {id}"));
        assert_eq!(c.snapshot(), half, "{cmd:?} changed something");
    }
    // A dry run still shows its plan, and says it cannot run yet.
    c.kcert(&["renew", "--local", "--root", root, "--dry-run"]).run().status(0).stdout_has("cannot run until that run is resumed or rolled back");
    // A plan saved meanwhile is refused when applied: by this machine, and by one that never
    // saw the run (the node's copy says it).
    let saved = tempfile::tempdir().unwrap();
    let plan = saved.path().join("renew.plan");
    c.kcert(&["renew", "--local", "--root", root, "--plan-out", plan.to_str().unwrap()]).run().status(0);
    c.kcert(&["apply", plan.to_str().unwrap(), "--yes"]).run().status(2).stderr_has(&format!("run {id} on this cluster is unfinished"));
    let other = saved.path().join("state");
    Test::new().args(["apply", plan.to_str().unwrap(), "--yes", "--state-dir", other.to_str().unwrap()]).run().status(2).stderr_has(&format!("run {id} on this cluster is unfinished")).stderr_has("kept on local");
    assert_eq!(c.snapshot(), half, "a refused apply changed nothing");
    // Once it is finished, a new run may start.
    c.kcert(&["resume", &id, "--yes"]).run().status(0);
    c.kcert(&["renew", "--local", "--root", root, "--yes"]).run().status(0);
}

#[test]
fn a_hand_edited_plan_is_refused_naming_the_field_and_a_changed_playbook_naming_both_digests() {
    let c = copy(SETS[0]);
    let dir = c.state.parent().unwrap().to_path_buf();
    // A playbook of one's own, as a file: the plan records its path and sha256.
    let pb = dir.join("my-kubeadm.yaml");
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/kubeadm.yaml"), &pb).unwrap();
    let plan = dir.join("plan.json");
    c.rotate(&["--distribution", pb.to_str().unwrap(), "--plan-out", plan.to_str().unwrap()]).run().status(0);
    let before = c.snapshot();
    let text = common::text_of(&plan);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["made_with"]["playbook"]["path"], pb.to_str().unwrap());
    assert_eq!(v["made_with"]["kcert"], env!("CARGO_PKG_VERSION"));
    let edited = dir.join("edited.json");
    // A truncated sha256 and a missing field: exit 2 naming each, no panic, nothing changed.
    let sha = v["facts"][0]["sha256"].as_str().unwrap();
    std::fs::write(&edited, text.replacen(sha, &sha[..7], 1)).unwrap();
    c.kcert(&["apply", edited.to_str().unwrap(), "--yes"]).run().status(2).stderr_has("facts[0].sha256").stderr_has("is not a sha256");
    let mut missing = v.clone();
    missing.as_object_mut().unwrap().remove("made_with");
    std::fs::write(&edited, serde_json::to_string(&missing).unwrap()).unwrap();
    c.kcert(&["apply", edited.to_str().unwrap(), "--yes"]).run().status(2).stderr_has("missing field `made_with`");
    let mut stages = v.clone();
    stages["stages"].as_array_mut().unwrap().remove(5);
    std::fs::write(&edited, serde_json::to_string(&stages).unwrap()).unwrap();
    c.kcert(&["apply", edited.to_str().unwrap(), "--yes"]).run().status(2).stderr_has("stages: a rotate-ca plan has stages S0, S1, S2, S3, S4, S5");
    assert_eq!(c.snapshot(), before);
    // The playbook changed since the plan was made: refused, naming both digests.
    let old = sha256(&std::fs::read(&pb).unwrap());
    let mut changed = std::fs::read(&pb).unwrap();
    changed.extend_from_slice(b"# edited after the plan was made\n");
    std::fs::write(&pb, &changed).unwrap();
    let run = c.kcert(&["apply", plan.to_str().unwrap(), "--yes"]).run();
    run.status(2).stderr_has(&old).stderr_has(&sha256(&changed)).stderr_has("make the plan again");
    assert_eq!(c.snapshot(), before);
    assert!(!c.state.join("runs").exists(), "no run was started");
}

#[test]
fn the_node_keeps_the_run_so_another_machine_sees_it_and_carries_it_on_or_back() {
    let c = copy(SETS[0]);
    let before = c.snapshot();
    let run = c.rotate(&["--yes", "-o", "json"]).run();
    run.status(0);
    let id = run.json()["run_id"].as_str().unwrap().to_string();
    // The node keeps the plan and the journal, private, as the operator's machine does.
    let kept = c.root.join("var/lib/kcert/runs").join(&id);
    use std::os::unix::fs::PermissionsExt;
    for f in ["plan.json.gz", "journal.jsonl"] {
        let meta = std::fs::metadata(kept.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{f}");
    }
    assert_eq!(std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(std::fs::read(kept.join("journal.jsonl")).unwrap(), std::fs::read(c.state.join("runs").join(&id).join("journal.jsonl")).unwrap(), "the node's journal is the operator's");
    // Beside it, what it says of the run, so that later runs need not read it: ended, with
    // its number of records.
    let state = || std::fs::read_to_string(kept.join("state")).unwrap();
    let records = || std::fs::read_to_string(kept.join("journal.jsonl")).unwrap().lines().count();
    assert_eq!(state(), format!("ended {}\n", records()));
    assert_eq!(std::fs::metadata(kept.join("state")).unwrap().permissions().mode() & 0o777, 0o600);
    let rotated = c.snapshot();
    // Back to the S4 boundary: the run is unfinished.
    c.kcert(&["rollback", &id, "--to-stage", "S4", "--yes"]).run().status(0);
    let at_s4 = c.snapshot();
    assert_eq!(state(), "open\n", "a run rolled back part of the way is open again");
    // A second operator, on a machine that never saw the run (another state dir), is told of it.
    let other = tempfile::tempdir().unwrap();
    let elsewhere = |args: &[&str]| Test::new().args(args.iter().copied()).args(["--state-dir".as_ref(), other.path().as_os_str()]);
    let root = c.root.to_str().unwrap();
    elsewhere(&["runs", "--root", root]).run().status(0).stdout_has(&id).stdout_has("rolled back").stdout_has("KEPT ON");
    elsewhere(&["renew", "--local", "--root", root, "--yes"]).run().status(2).stderr_has(&format!("run {id} on this cluster is unfinished")).stderr_has("kept on local");
    assert_eq!(c.snapshot(), at_s4, "the refused renewal changed nothing");
    // That machine carries it on from the node's copy (the keys come from the node too)...
    let resumed = elsewhere(&["resume", "--root", root, &id, "--yes"]).run();
    resumed.status(0).stderr_has("this machine has no journal of it; took local's");
    assert_eq!(c.snapshot(), rotated, "resumed from the node's copy: the plan's own bytes");
    // ...and a third one, with nothing at all, undoes the whole run from it.
    let third = tempfile::tempdir().unwrap();
    Test::new().args(["rollback", "--root", root, "--yes", "--state-dir", third.path().to_str().unwrap()]).run().status(0).stderr_has(&format!("run {id}"));
    assert_eq!(c.snapshot(), before, "rolled back from the node's copy: every byte as before");
    assert_eq!(state(), format!("ended {}\n", records()), "rolled back whole: nothing is left to finish");
    // An ended run's journal is not read by later runs' check for an unfinished one: garbage
    // in it stops nothing. Without its state (a copy an older kcert made) it is read, and said.
    let journal = std::fs::read(kept.join("journal.jsonl")).unwrap();
    std::fs::write(kept.join("journal.jsonl"), "garbage\nmore garbage\n").unwrap();
    elsewhere(&["renew", "--local", "--root", root, "--dry-run"]).run().status(0);
    std::fs::remove_file(kept.join("state")).unwrap();
    // Bad input on the node, as a corrupt PEM is: exit 2, nothing changed.
    elsewhere(&["renew", "--local", "--root", root, "--dry-run"]).run().status(2).stderr_has(&format!("runs/{id}/journal.jsonl: line 1")).stderr_has(&format!("move /var/lib/kcert/runs/{id} aside"));
    std::fs::write(kept.join("journal.jsonl"), journal).unwrap();
    // The operator's first machine, shorter now, is said so and the longest copy wins.
    let first = c.kcert(&["runs", "--root", root]).run();
    first.status(0).stdout_has(&id).stdout_has("rolled back");
}

#[test]
fn a_cluster_leased_to_another_run_refuses_a_changing_command_and_a_stale_lease_is_broken_only_when_asked() {
    let c = copy(SETS[1]);
    let lease_file = c.root.join("var/lib/kcert/lease.json");
    std::fs::create_dir_all(lease_file.parent().unwrap()).unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    // A live lease: this test's own process holds it (it runs), taken a minute ago.
    let live = format!(r#"{{"run_id":"20261203T000000Z-rotate-ca-abcdef","command":"rotate-ca","user":"ann","host":"{host}","pid":{},"since":"2026-12-03T00:00:00Z","heartbeat":{}}}"#, std::process::id(), now - 5);
    std::fs::write(&lease_file, &live).unwrap();
    let before = c.snapshot();
    for args in [&["--yes"][..], &["--yes", "--break-lease"][..]] {
        c.rotate(args).run().status(2).stderr_has("leased to run 20261203T000000Z-rotate-ca-abcdef (rotate-ca) by ann@").stderr_has("nothing was changed");
    }
    assert_eq!(c.snapshot(), before);
    assert_eq!(std::fs::read_to_string(&lease_file).unwrap(), live, "a refused command leaves the lease alone");
    // Read-only commands never touch it.
    Test::new().args(["expiry", "--local", "--root", c.root.to_str().unwrap()]).run();
    assert_eq!(std::fs::read_to_string(&lease_file).unwrap(), live);
    // Stale (not renewed for ten minutes, another machine's): refused without --break-lease, taken with it.
    let stale = live.replace(&format!("\"host\":\"{host}\""), "\"host\":\"laptop-of-ann\"").replace(&format!("\"heartbeat\":{}", now - 5), &format!("\"heartbeat\":{}", now - 600));
    std::fs::write(&lease_file, &stale).unwrap();
    c.rotate(&["--yes"]).run().status(2).stderr_has("stale").stderr_has("--break-lease");
    assert_eq!(c.snapshot(), before);
    c.rotate(&["--yes", "--break-lease"]).run().status(0).stderr_has("broke the stale lease of run 20261203T000000Z-rotate-ca-abcdef");
    assert!(!lease_file.exists(), "the run gave its lease back when it finished");
}
