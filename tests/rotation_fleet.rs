//! `kcert rotate-ca` against the real test fleet (docker/fleet): three control-plane nodes
//! with real etcd and two workers, stand-ins for kube-apiserver and the kubelet, probes making
//! real mTLS handshakes along every edge while rotations run. Each scenario leaves the fleet
//! consistent (rotated, or rolled back) for the next; the fleet is torn down whatever happened.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::fleet::{Fleet, Scenario, assert_etcd_healthy, assert_no_temp_files, assert_same_snapshot, assert_written_once, derived_inventory, first_run, harness, is, journal_lines, kcert_state, keep, keep_text, kill_when, no_failed_handshake, pki_snapshot, run, served_cert, sh, spawn, spawned_output, under_probes, verifies, verify_live_clean, wait_for, writes};
use common::{Test, kubeconfig_certs, pem_certs};

/// The three CA certificates as cp1 holds them (PEM, one per file).
fn cas_on(f: &Fleet) -> Vec<String> {
    ["ca.crt", "etcd/ca.crt", "front-proxy-ca.crt"].iter().flat_map(|p| pem_certs(&sh(&f.node("cp1").container, &format!("cat /etc/kubernetes/pki/{p}")))).collect()
}

/// Everything a reviewer checks after a rotation: every leaf of every node (files, the
/// kubelet's client pem, kubeconfig client certs) verifies against the new CAs and not the
/// old; no file holds an old CA; every port serves a new-CA cert; etcd has three healthy
/// members; `kcert verify --live` is clean.
fn assert_rotated(f: &Fleet, old: &[String], new: &[String]) {
    let scratch = tempfile::tempdir().unwrap();
    let d = scratch.path();
    std::fs::write(d.join("old.pem"), old.concat()).unwrap();
    std::fs::write(d.join("new.pem"), new.concat()).unwrap();
    for n in &f.nodes {
        let files = sh(&n.container, "find -L /etc/kubernetes /var/lib/kubelet -type f");
        let mut leaves = 0;
        for path in files.lines() {
            let text = sh(&n.container, &format!("cat '{path}'"));
            let certs = pem_certs(&text);
            for c in certs.iter().chain(kubeconfig_certs(&text).iter()) {
                assert!(!old.contains(c), "{}: {path} still holds an old CA", n.name);
            }
            let mut mine: Vec<String> = Vec::new();
            if !path.ends_with("ca.crt") {
                mine.extend(certs.into_iter().take(1));
            }
            mine.extend(kubeconfig_certs(&text).into_iter().skip(1));
            for leaf in mine {
                assert!(verifies(d, "new.pem", &leaf), "{}: {path} does not verify against the new CAs", n.name);
                assert!(!verifies(d, "old.pem", &leaf), "{}: {path} still verifies against an old CA", n.name);
                leaves += 1;
            }
        }
        // Control plane: 7 PKI leaves, the kubelet's serving cert and client pem (and its link), 4 kubeconfigs.
        let want = if n.control_plane { 14 } else { 3 };
        assert!(leaves >= want, "{}: only {leaves} leaves checked", n.name);
        // What each port serves, as openssl's s_client sees it from cp1 (with a client cert the port accepts).
        let pki = "/etc/kubernetes/pki";
        let mut ports = vec![(10250, "apiserver-kubelet-client")];
        if n.control_plane {
            ports.extend([(6443, "apiserver-kubelet-client"), (2379, "etcd/healthcheck-client"), (2380, "etcd/peer")]);
        }
        for (port, client) in ports {
            let served = served_cert(f, &format!("{}:{port}", n.ip), &format!("{pki}/{client}.crt"), &format!("{pki}/{client}.key"));
            assert!(verifies(d, "new.pem", &served), "{}:{port} serves a certificate the new CAs did not sign", n.name);
        }
    }
    assert_etcd_healthy(f, "/etc/kubernetes/pki/etcd/ca.crt", "/etc/kubernetes/pki/etcd/healthcheck-client.crt", "/etc/kubernetes/pki/etcd/healthcheck-client.key");
    verify_live_clean(f);
}

fn plan_cas(plan: &Path) -> Vec<String> {
    let v = common::plan_json(plan);
    v["cas"].as_array().unwrap().iter().map(|c| pem_certs(c["cert_pem"].as_str().unwrap()).remove(0)).collect()
}

fn rotate_ca_dry_run_shows_the_plan_and_changes_nothing(f: &Fleet) {
    let before = pki_snapshot(f);
    let sd = kcert_state(f, "dry");
    let run = f.kcert(&["rotate-ca", "--dry-run", "--state-dir", sd.to_str().unwrap()]).run();
    keep(f, "dry-run", &run);
    run.status(0)
        .stdout_has("Rotates 3 CAs on 5 nodes")
        .stdout_has("step 1/5: cp1")
        .stdout_has("step 5/5: w2")
        .stdout_has("restart etcd, kube-apiserver")
        .stdout_has("etcd-healthcheck-client -> etcd x3")
        .stdout_has("skipped: kubernetes_api: false")
        .stdout_has("re-signed O=system:nodes, CN=system:node:w1")
        .stdout_has("Proof: each of the");
    assert_same_snapshot("rotate-ca --dry-run", &before, &pki_snapshot(f));
    assert!(!sd.exists(), "a dry run journals nothing");
    // A rotation changes the whole cluster: a subset of nodes is refused.
    f.kcert(&["rotate-ca", "--dry-run", "--nodes", "cp1"]).run().status(2).stderr_has("whole cluster");
}

fn a_saved_plan_is_refused_after_a_node_changed_then_rotates_with_no_failed_handshake(f: &Fleet) {
    let sd = kcert_state(f, "main");
    let plan = f.state.join("rotation-plan.json");
    let saved = f.kcert(&["rotate-ca", "--plan-out", plan.to_str().unwrap(), "--state-dir", sd.to_str().unwrap()]).run();
    keep(f, "plan-out", &saved);
    saved.status(0).stderr_has("kcert apply");
    let before = pki_snapshot(f);
    let cp2 = &f.node("cp2").container;
    sh(cp2, "cp -p /etc/kubernetes/scheduler.conf /root/scheduler.conf.orig && echo '# hand edit' >> /etc/kubernetes/scheduler.conf");
    let changed = pki_snapshot(f);
    let refused = f.kcert(&["apply", plan.to_str().unwrap(), "--yes", "--state-dir", sd.to_str().unwrap()]).run();
    refused.status(2).stderr_has("cp2: /etc/kubernetes/scheduler.conf changed").stderr_has("nothing was changed");
    assert_same_snapshot("a refused apply", &changed, &pki_snapshot(f));
    sh(cp2, "cp -p /root/scheduler.conf.orig /etc/kubernetes/scheduler.conf");
    assert_same_snapshot("restored by hand", &before, &pki_snapshot(f));

    let old = cas_on(f);
    let (applied, probes) = under_probes(f, || f.kcert(&["apply", plan.to_str().unwrap(), "--yes", "-v", "--state-dir", sd.to_str().unwrap()]).run());
    keep(f, "apply", &applied);
    applied.status(0).stdout_has("S5").stdout_has("kcert's own work");
    no_failed_handshake(probes, "during the rotation");
    // Every member restarts in each of S2, S4 and S5, so the leader is handed off in each first.
    let run_dir = first_run(&sd);
    let log = std::fs::read_to_string(run_dir.join("run.log")).unwrap();
    assert!(log.matches("etcd leadership handed to").count() >= 3, "{log}");
    assert_rotated(f, &old, &plan_cas(&plan));
}

fn killed_three_times_then_resumed_with_no_failed_handshake(f: &Fleet) {
    let sd = kcert_state(f, "kills");
    let sdir = sd.to_str().unwrap();
    std::fs::create_dir_all(&sd).unwrap();
    let logs = tempfile::tempdir().unwrap();
    let old = cas_on(f);
    let (done, probes) = under_probes(f, || {
        let mut child = spawn(f, &["rotate-ca", "--yes", "--state-dir", sdir], logs.path(), "rotate");
        kill_when(&mut child, &sd, 0, "after S1", |v| is(v, "stage-done", "S1", None));
        let n = journal_lines(&sd).len();
        let mut child = spawn(f, &["resume", "--yes", "--state-dir", sdir], logs.path(), "resume1");
        kill_when(&mut child, &sd, n, "inside S2's cp2 batch (its files written)", |v| is(v, "written", "S2", Some(1)));
        let n = journal_lines(&sd).len();
        let mut child = spawn(f, &["resume", "--yes", "--state-dir", sdir], logs.path(), "resume2");
        kill_when(&mut child, &sd, n, "inside S4's cp3 batch (restarting)", |v| is(v, "restarted", "S4", Some(2)));
        f.kcert(&["resume", "--yes", "-o", "json", "--state-dir", sdir]).run()
    });
    keep(f, "resume-final", &done);
    for name in ["rotate", "resume1", "resume2"] {
        keep_text(f, &format!("kills-{name}"), &spawned_output(logs.path(), name));
    }
    done.status(0);
    let report = done.json();
    assert!(report["failure"].is_null(), "{report}");
    assert_no_temp_files(f, "three kills and resumes");
    no_failed_handshake(probes, "while kcert was killed and resumed");
    // No file was written twice: each (stage, step, node, path) has at most one written record.
    let seen = writes(&sd, &["stage", "step", "node", "path"]);
    assert!(seen.len() > 100, "{} writes journaled", seen.len());
    assert_written_once(&seen);
    assert_rotated(f, &old, &plan_cas(&first_run(&sd).join("plan.json.gz")));
    Test::new().args(["runs", "--state-dir", sdir]).run().status(0).stdout_has("finished");
}

fn killed_inside_s5_then_rolled_back_byte_for_byte(f: &Fleet) {
    let sd = kcert_state(f, "rollback");
    let sdir = sd.to_str().unwrap();
    std::fs::create_dir_all(&sd).unwrap();
    let logs = tempfile::tempdir().unwrap();
    let before = pki_snapshot(f);
    let mut child = spawn(f, &["rotate-ca", "--yes", "--state-dir", sdir], logs.path(), "rotate");
    kill_when(&mut child, &sd, 0, "inside S5's cp3 batch (its files written)", |v| is(v, "written", "S5", Some(2)));
    Test::new().args(["runs", "--state-dir", sdir]).run().status(0).stdout_has("interrupted").stdout_has("in S5");
    let (rb, probes) = under_probes(f, || f.kcert(&["rollback", "--yes", "--state-dir", sdir]).run());
    keep(f, "rollback", &rb);
    rb.status(0).stdout_has("rolled back");
    assert_same_snapshot("rollback after a kill", &before, &pki_snapshot(f));
    assert_no_temp_files(f, "a kill inside S5 and a rollback");
    no_failed_handshake(probes, "during the rollback");
    verify_live_clean(f);
}

fn a_failed_gate_in_s4_rolls_s4_back_to_a_clean_s3_boundary(f: &Fleet) {
    let sd = kcert_state(f, "gate");
    let sdir = sd.to_str().unwrap();
    let before = pki_snapshot(f);
    let cp1 = &f.node("cp1").container;
    let aki_of = |c: &str| sh(c, "openssl x509 -noout -ext authorityKeyIdentifier -in /etc/kubernetes/pki/apiserver.crt | tail -n1 | tr -d ' '").trim().to_string();
    let aki = aki_of(cp1);
    // A restart override that breaks the apiserver stand-in once apiserver.crt is the new CA's
    // (S4), and restarts it as usual otherwise (S2, S5, and the rollback).
    let dir = tempfile::tempdir().unwrap();
    let inv = derived_inventory(f, dir.path(), |t| {
        assert!(t.contains("restart: supervisorctl signal HUP kube-apiserver"), "{t}");
        t.replace(
            "restart: supervisorctl signal HUP kube-apiserver",
            &format!("restart: \"if [ \\\"$(openssl x509 -noout -ext authorityKeyIdentifier -in /etc/kubernetes/pki/apiserver.crt | tail -n1 | tr -d ' ')\\\" = '{aki}' ]; then supervisorctl start kube-apiserver >/dev/null 2>&1; supervisorctl signal HUP kube-apiserver; else supervisorctl stop kube-apiserver; fi\""),
        )
    });
    let run = Test::new().args(["rotate-ca", "--yes", "--gate-timeout", "20s", "--state-dir", sdir, "-i"]).args([&inv]).run();
    keep(f, "failed-gate", &run);
    run.status(1).stdout_has("STOPPED: S4").stdout_has("health gate failed").stdout_has("kube-apiserver").stdout_has("stage S4 was rolled back").stdout_has("rolled back");
    // At the S3 boundary: every trust holds old and new, every leaf is still the old CA's.
    for n in &f.nodes {
        assert_eq!(sh(&n.container, "grep -c 'BEGIN CERTIFICATE' /etc/kubernetes/pki/ca.crt").trim(), "2", "{}", n.name);
        if n.control_plane {
            assert_eq!(aki_of(&n.container), aki, "{}: apiserver.crt is back to the old CA's", n.name);
        }
    }
    verify_live_clean(f);
    Test::new().args(["runs", "--state-dir", sdir]).run().status(0).stdout_has("stopped");
    let rb = f.kcert(&["rollback", "--yes", "--state-dir", sdir]).run();
    keep(f, "failed-gate-rollback", &rb);
    rb.status(0);
    assert_same_snapshot("rolled back from the S3 boundary", &before, &pki_snapshot(f));
    f.kcert(&["verify", "--live"]).run().status(0);
}

fn a_node_lost_mid_run_stops_it_and_resume_finishes_with_no_failed_handshake(f: &Fleet) {
    let sd = kcert_state(f, "lost-node");
    let sdir = sd.to_str().unwrap();
    std::fs::create_dir_all(&sd).unwrap();
    let logs = tempfile::tempdir().unwrap();
    let old = cas_on(f);
    let w2 = f.node("w2");
    let mut child = spawn(f, &["rotate-ca", "--yes", "--gate-timeout", "10s", "--state-dir", sdir], logs.path(), "rotate");
    // w2 goes away once S2 has started: cp1's gate cannot reach it, S2 is rolled back, the run stops.
    let deadline = Instant::now() + Duration::from_secs(300);
    while !journal_lines(&sd).iter().any(|v| v["event"] == "stage-started" && v["stage"] == "S2") {
        assert!(Instant::now() < deadline && child.try_wait().unwrap().is_none(), "S2 never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    run(Command::new("docker").args(["stop", "-t", "1", &w2.container])).unwrap();
    let status = child.wait().unwrap();
    let out = std::fs::read_to_string(logs.path().join("rotate.out")).unwrap();
    keep_text(f, "lost-node", &out);
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains("STOPPED: S2") && out.contains(&w2.ip), "{out}");
    run(Command::new("docker").args(["start", &w2.container])).unwrap();
    wait_for(&w2.container, "curl -sk -o /dev/null https://127.0.0.1:10250/healthz");
    // Back, and resumed under the probes: the stage redone in full, components restarted on
    // the files they must load (a rollback's restart does not count as the step's).
    let (resumed, probes) = under_probes(f, || f.kcert(&["resume", "--yes", "--state-dir", sdir]).run());
    keep(f, "lost-node-resume", &resumed);
    resumed.status(0);
    no_failed_handshake(probes, "while the run was resumed after losing a node");
    assert_rotated(f, &old, &plan_cas(&first_run(&sd).join("plan.json.gz")));
}

fn no_private_key_bytes_in_any_plan_journal_output_or_log(f: &Fleet) {
    // The fleet's own PKI (made by openssl) and every new CA key in the run folders.
    let mut dirs = vec![f.state.join("pki")];
    let mut texts: Vec<(String, String)> = Vec::new();
    for (p, rel) in common::walk(&f.state.join("kcert-state"), &f.state.join("kcert-state")) {
        if rel.contains("/keys/") || rel.contains("/plans/") {
            continue;
        }
        texts.push((rel, common::text_of(&p)));
    }
    dirs.push(f.state.join("kcert-state"));
    for (p, rel) in common::walk(&f.state.join("outputs"), &f.state.join("outputs")) {
        texts.push((rel, std::fs::read_to_string(p).unwrap()));
    }
    texts.push(("rotation-plan.json".into(), common::text_of(&f.state.join("rotation-plan.json"))));
    let keys = common::private_key_lines(&dirs.iter().map(PathBuf::as_path).collect::<Vec<_>>());
    assert!(keys.len() > 200, "{} key lines", keys.len());
    assert!(texts.len() > 10, "{} texts", texts.len());
    for (what, t) in &texts {
        assert!(!t.contains("PRIVATE KEY-----"), "a private key block in {what}");
        for k in &keys {
            assert!(!t.contains(k.as_str()), "private key bytes in {what}");
        }
    }
}

fn main() {
    let scenarios: Vec<(&'static str, Scenario)> = vec![
        ("rotate_ca_dry_run_shows_the_plan_and_changes_nothing", rotate_ca_dry_run_shows_the_plan_and_changes_nothing),
        ("a_saved_plan_is_refused_after_a_node_changed_then_rotates_with_no_failed_handshake", a_saved_plan_is_refused_after_a_node_changed_then_rotates_with_no_failed_handshake),
        ("killed_three_times_then_resumed_with_no_failed_handshake", killed_three_times_then_resumed_with_no_failed_handshake),
        ("killed_inside_s5_then_rolled_back_byte_for_byte", killed_inside_s5_then_rolled_back_byte_for_byte),
        ("a_failed_gate_in_s4_rolls_s4_back_to_a_clean_s3_boundary", a_failed_gate_in_s4_rolls_s4_back_to_a_clean_s3_boundary),
        ("a_node_lost_mid_run_stops_it_and_resume_finishes_with_no_failed_handshake", a_node_lost_mid_run_stops_it_and_resume_finishes_with_no_failed_handshake),
        ("no_private_key_bytes_in_any_plan_journal_output_or_log", no_private_key_bytes_in_any_plan_journal_output_or_log),
    ];
    harness(scenarios, None);
}
