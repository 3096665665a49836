//! kcert against the hardway flavour of the test fleet (`docker/fleet up --flavour hardway`):
//! the same five containers, laid out as a binary ("Kubernetes the hard way") install: one CA
//! (/var/lib/kubernetes/ca.pem) for everything, one kubernetes.pem serving the apiserver and
//! etcd, the CA key as the service-account key, every component's flags in a systemd unit (an
//! environment file, a drop-in, etcd's ETCD_* variables, the kubelet's --config). Real etcd,
//! STAND-INs for kube-apiserver and the kubelet rendered from those units, probes making real
//! mTLS handshakes along every edge. Scenarios run in order, each leaving the fleet consistent
//! for the next; the fleet is torn down whatever happened.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::fleet::{Fleet, Scenario, assert_etcd_healthy, assert_no_temp_files, assert_ports_serve_their_files, assert_same_snapshot, derived_inventory, harness_flavour, is, kcert_rows, kcert_state, keep, keep_text, kill_when, no_failed_handshake, openssl_rows, pki_snapshot, probe, served_cert, sh, spawn, spawned_output, under_probes, verifies, verify_live_clean};
use common::{Run, Test, kubeconfig_certs, pem_certs};

const LIB: &str = "/var/lib/kubernetes";
/// Where certificates live on a hardway node (files, kubeconfigs, the kubelet's pki).
const CERT_PATHS: &str = "/var/lib/kubernetes /etc/etcd /var/lib/kubelet /var/lib/kube-proxy /root/admin.kubeconfig";

/// A changing run that did not finish leaves the nodes leased to it: roll it back (best
/// effort) so the next scenario starts from a consistent fleet, then fail with what kcert said.
fn finished_or_rolled_back(f: &Fleet, what: &str, r: &Run, sd: &Path) {
    if r.status == 0 {
        return;
    }
    let rb = f.kcert(&["rollback", "--yes", "--state-dir", sd.to_str().unwrap()]).run();
    let slug: String = what.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    keep(f, &format!("{slug}-cleanup-rollback"), &rb);
    panic!("{what}: `{}` exited {} (rolled back: exit {})\n--- stdout\n{}\n--- stderr\n{}", r.cmdline, r.status, rb.status, r.stdout, r.stderr);
}

/// The only run in a state dir.
fn run_id(sd: &Path) -> String {
    let runs: Vec<String> = std::fs::read_dir(sd.join("runs")).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].clone()
}

/// A flag's value as the component gets it: the unit, its drop-ins and environment files read
/// as systemd would (the fleet's own reader, the one the stand-ins start from).
fn unit_flag(container: &str, unit: &str, flag: &str) -> String {
    sh(container, &format!(". /opt/kcert-fleet/lib.sh; unit_flags {unit} | pick {flag}")).trim().to_string()
}

/// The public key of a private key, public key or certificate file, as openssl prints it.
fn public_key(container: &str, path: &str) -> String {
    sh(container, &format!("openssl pkey -in '{path}' -pubout 2>/dev/null || openssl pkey -pubin -in '{path}' -pubout 2>/dev/null || openssl x509 -in '{path}' -noout -pubkey"))
}

/// `kcert expiry -o json` with `inv`: exit 0 (or 3, a certificate inside the warning window),
/// and no error row.
fn expiry(inv: &Path) -> serde_json::Value {
    let run = Test::new().args(["expiry", "-o", "json", "-i"]).args([inv]).run();
    assert!(run.status == 0 || run.status == 3, "`{}` exited {}:\n{}\n{}", run.cmdline, run.status, run.stdout, run.stderr);
    let json = run.json();
    assert_eq!(json["errors"].as_array().unwrap().len(), 0, "errors:\n{}", serde_json::to_string_pretty(&json["errors"]).unwrap());
    json
}

/// Every node's distribution as `kcert check` detects it.
fn distributions(inv: &Path) -> BTreeMap<String, String> {
    let run = Test::new().args(["check", "-o", "json", "-i"]).args([inv]).run();
    run.status(0);
    run.json()["nodes"].as_array().unwrap().iter().map(|n| (n["node"].as_str().unwrap().to_string(), n["distribution"].as_str().unwrap_or("").to_string())).collect()
}

fn expiry_reads_every_certificate_from_the_units_and_detects_hardway(f: &Fleet) {
    let json = expiry(&f.inventory());
    for n in &f.nodes {
        // What is on the node, enumerated independently with openssl in the container.
        let want = openssl_rows(&n.container, &format!("find -L {CERT_PATHS} -type f 2>/dev/null || true"));
        // cp: CA, kubernetes.pem x2, the etcd CA copy, kubelet serving + client (and its link),
        // 4 kubeconfigs x2; workers: CA, kubelet serving + client (and link), kube-proxy's x2.
        let least = if n.control_plane { 15 } else { 6 };
        assert!(want.len() >= least, "{}: only {} certificates on the node", n.name, want.len());
        assert_eq!(kcert_rows(&json, &n.name), want, "{}: kcert and openssl in the container disagree", n.name);
        // And every port serves the cert of the file behind it.
        let mut ports = BTreeSet::from(["127.0.0.1:10250".to_string()]);
        if n.control_plane {
            ports.extend(["127.0.0.1:6443".to_string(), format!("{}:2379", n.ip), format!("{}:2380", n.ip)]);
        }
        assert_ports_serve_their_files(&json, &n.name, ports);
    }
    let all = |j: &serde_json::Value| -> BTreeSet<String> { j["certificates"].as_array().unwrap().iter().map(|c| format!("{} {} {} {}", c["node"], c["source"], c["path"], c["serial"])).collect() };
    for (node, d) in distributions(&f.inventory()) {
        assert_eq!(d, "hardway", "{node}");
    }
    // Without `distribution:` the units are what tells: hardway detected on every node, the
    // same certificates read.
    let bare_dir = tempfile::tempdir().unwrap();
    let bare = derived_inventory(f, bare_dir.path(), |t| {
        assert!(t.contains("\ndistribution: hardway\n") && t.contains("\ncomponents:\n"), "{t}");
        t.replace("\ndistribution: hardway\n", "\n").split("# No systemd").next().unwrap().to_string()
    });
    same_rows(&all(&expiry(&bare)), &all(&json), "expiry without distribution: in the inventory");
    for (node, d) in distributions(&bare) {
        assert_eq!(d, "hardway", "{node}: detected without distribution: in the inventory");
    }
    Test::new().args(["check", "-i"]).args([&bare]).run().status(0).stdout_has("hardway");
    // The fleet's own inventory but for that line: its restart overrides name kube-proxy, a
    // component of the hardway playbook the nodes are detected as.
    let copy_dir = tempfile::tempdir().unwrap();
    let copy = derived_inventory(f, copy_dir.path(), |t| t.replace("\ndistribution: hardway\n", "\n"));
    for (node, d) in distributions(&copy) {
        assert_eq!(d, "hardway", "{node}: detected without distribution: in an inventory with hardway's components");
    }
    same_rows(&all(&expiry(&copy)), &all(&json), "expiry without distribution:, with the fleet's overrides");
}

/// The rows of an expiry are those of another (`want`), said briefly when not.
fn same_rows(got: &BTreeSet<String>, want: &BTreeSet<String>, what: &str) {
    let missing: Vec<&String> = want.difference(got).collect();
    let extra: Vec<&String> = got.difference(want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} rows where the inventory naming hardway gives {}; {} missing (first: {:?}), {} more (first: {:?})",
        got.len(),
        want.len(),
        missing.len(),
        missing.iter().take(3).collect::<Vec<_>>(),
        extra.len(),
        extra.iter().take(3).collect::<Vec<_>>()
    );
}

/// Every leaf on every node (PEM files, the kubelet's bootstrapped client pem and its link,
/// kubeconfig client certs) verifies against `new` and not `old`; no file holds the old CA;
/// every port serves a cert of the new CA, not the old one's; etcd has three healthy members;
/// `kcert verify --live` finds nothing broken.
fn assert_rotated(f: &Fleet, old: &str, new: &str) {
    let scratch = tempfile::tempdir().unwrap();
    let d = scratch.path();
    std::fs::write(d.join("old.pem"), old).unwrap();
    std::fs::write(d.join("new.pem"), new).unwrap();
    for n in &f.nodes {
        assert_eq!(pem_certs(&sh(&n.container, &format!("cat {LIB}/ca.pem"))), [new], "{}: {LIB}/ca.pem is the new CA alone", n.name);
        if n.control_plane {
            assert_eq!(pem_certs(&sh(&n.container, "cat /etc/etcd/ca.pem")), [new], "{}: /etc/etcd/ca.pem is the new CA alone", n.name);
        }
        let mut leaves = 0;
        for path in sh(&n.container, &format!("find -L {CERT_PATHS} -type f 2>/dev/null || true")).lines() {
            let text = sh(&n.container, &format!("cat '{path}'"));
            let certs = pem_certs(&text);
            let embedded = kubeconfig_certs(&text);
            for c in certs.iter().chain(embedded.iter()) {
                assert!(c != old, "{}: {path} still holds the old CA", n.name);
            }
            let mut mine: Vec<String> = certs.into_iter().filter(|c| c != new).take(1).collect();
            mine.extend(embedded.into_iter().skip(1));
            for leaf in mine {
                assert!(verifies(d, "new.pem", &leaf), "{}: {path} does not verify against the new CA", n.name);
                assert!(!verifies(d, "old.pem", &leaf), "{}: {path} still verifies against the old CA", n.name);
                leaves += 1;
            }
        }
        // cp: kubernetes.pem x2, kubelet serving, client pem and its link, 4 kubeconfigs; workers: 4.
        let want = if n.control_plane { 9 } else { 4 };
        assert!(leaves >= want, "{}: only {leaves} leaves checked", n.name);
        let mut ports = vec![10250];
        if n.control_plane {
            ports.extend([6443, 2379, 2380]);
        }
        for port in ports {
            let served = served_cert(f, &format!("{}:{port}", n.ip), &format!("{LIB}/kubernetes.pem"), &format!("{LIB}/kubernetes-key.pem"));
            assert!(verifies(d, "new.pem", &served), "{}:{port} serves a certificate the new CA did not sign", n.name);
            assert!(!verifies(d, "old.pem", &served), "{}:{port} still serves a certificate of the old CA", n.name);
        }
    }
    assert_etcd_healthy(f, &format!("{LIB}/ca.pem"), &format!("{LIB}/kubernetes.pem"), &format!("{LIB}/kubernetes-key.pem"));
    verify_live_clean(f);
}

/// The public key of every service-account key the apiserver and controller-manager read.
fn service_account_keys(f: &Fleet) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for n in f.nodes.iter().filter(|n| n.control_plane) {
        for (unit, flag) in [("kube-apiserver", "service-account-key-file"), ("kube-apiserver", "service-account-signing-key-file"), ("kube-controller-manager", "service-account-private-key-file")] {
            let path = unit_flag(&n.container, unit, flag);
            assert!(!path.is_empty(), "{}: {unit} has no --{flag}", n.name);
            out.insert(format!("{} {unit} --{flag}={path}", n.name), public_key(&n.container, &path));
        }
    }
    out
}

fn killed_inside_s4_then_resumed_with_no_failed_handshake_then_rolled_back_byte_for_byte(f: &Fleet) {
    let sd = kcert_state(f, "kill-s4");
    let sdir = sd.to_str().unwrap();
    std::fs::create_dir_all(&sd).unwrap();
    let logs = tempfile::tempdir().unwrap();
    let before = pki_snapshot(f);
    probe(f, "start").unwrap();
    let mut child = spawn(f, &["rotate-ca", "--yes", "--state-dir", sdir], logs.path(), "rotate");
    let killed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| kill_when(&mut child, &sd, 0, "inside S4's cp2 batch (restarting)", |v| is(v, "restarted", "S4", Some(1)))));
    let out = spawned_output(logs.path(), "rotate");
    keep_text(f, "kill-s4-rotate", &out);
    if let Err(e) = killed {
        let _ = probe(f, "stop");
        let rb = f.kcert(&["rollback", "--yes", "--state-dir", sdir]).run();
        keep(f, "kill-s4-cleanup-rollback", &rb);
        eprintln!("kcert rotate-ca said:\n{out}");
        std::panic::resume_unwind(e);
    }
    // The operator's machine is gone: another one, with nothing but the inventory, carries the
    // rotation on from the control plane's copy of the run (its journal, plan and keys).
    let id = run_id(&sd);
    let elsewhere = kcert_state(f, "kill-s4-elsewhere");
    let done = f.kcert(&["resume", "--yes", "--state-dir", elsewhere.to_str().unwrap()]).run();
    let probes = probe(f, "stop");
    keep(f, "kill-s4-resume", &done);
    finished_or_rolled_back(f, "resume after a kill inside S4, from another machine", &done, &elsewhere);
    done.stderr_has(&format!("run {id}: this machine has no journal of it; took cp"));
    no_failed_handshake(probes, "while kcert was killed inside S4 and resumed from another machine");
    assert_no_temp_files(f, "a kill inside S4 and a resume");
    verify_live_clean(f);
    // The cluster knows the run, kept on every control-plane node.
    f.kcert(&["runs", "--state-dir", kcert_state(f, "a-third-machine").to_str().unwrap()]).run().status(0).stdout_has(&id).stdout_has("finished").stdout_has("cp1,cp2,cp3");
    // The finished rotation rolled back from a third machine: every file, mode and link on
    // every node as it was, every component it restarted restarted again.
    let third = kcert_state(f, "rollback-elsewhere");
    let (rb, probes) = under_probes(f, || f.kcert(&["rollback", &id, "--yes", "-o", "json", "--state-dir", third.to_str().unwrap()]).run());
    keep(f, "kill-s4-rollback", &rb);
    rb.status(0);
    let report = rb.json();
    let restarts: u64 = report["stages"].as_array().unwrap().iter().map(|s| s["restarts"].as_u64().unwrap()).sum();
    assert!(restarts > 0, "the rollback's summary counts its restarts: {}", report["stages"]);
    assert!(report["stages"].as_array().unwrap().iter().any(|s| s["status"] == "rolled back"), "{}", report["stages"]);
    assert_same_snapshot("a resumed rotation rolled back", &before, &pki_snapshot(f));
    assert_no_temp_files(f, "a rollback");
    no_failed_handshake(probes, "during the rollback");
    verify_live_clean(f);
}

fn rotate_ca_with_no_failed_handshake_keeps_the_service_account_key(f: &Fleet) {
    let cp1 = &f.node("cp1").container;
    let old = pem_certs(&sh(cp1, &format!("cat {LIB}/ca.pem"))).remove(0);
    let old_key = public_key(cp1, &format!("{LIB}/ca-key.pem"));
    let sa_before = service_account_keys(f);
    assert!(sa_before.values().all(|k| *k == old_key), "the fixture's service-account key is the CA key: {sa_before:?}");
    let sd = kcert_state(f, "rotate");
    // As the user ops, through sudo: ops's own ~/.kube/config is rotated too.
    let sudo = f.state.join("inventory-sudo.yaml");
    let rotate = || Test::new().args(["rotate-ca", "--yes", "--state-dir", sd.to_str().unwrap(), "-i"]).args([&sudo]).run();
    let (run, probes) = under_probes(f, rotate);
    keep(f, "rotate-ca", &run);
    finished_or_rolled_back(f, "rotate-ca", &run, &sd);
    no_failed_handshake(probes, "during the rotation");
    // The lease is given back; every kubeconfig off the flags' paths follows the new CA: ops's
    // ~/.kube/config (kubectl as ops still works) and each kubelet's bootstrap kubeconfig.
    for n in &f.nodes {
        let c = &n.container;
        assert_eq!(sh(c, "test -e /var/lib/kcert/lease.json && echo leased || echo free").trim(), "free", "{}: the lease was given back", n.name);
        let new_ca = pem_certs(&sh(c, &format!("cat {LIB}/ca.pem")));
        assert_eq!(kubeconfig_certs(&sh(c, "cat /var/lib/kubelet/bootstrap-kubeconfig")), new_ca, "{}: the bootstrap kubeconfig trusts the new CA alone", n.name);
        if n.control_plane {
            assert_eq!(kubeconfig_certs(&sh(c, "cat /home/ops/.kube/config"))[0], new_ca[0], "{}: ops's kubeconfig trusts the new CA", n.name);
            sh(c, "su -s /bin/sh ops -c 'kubectl --request-timeout=5s get --raw /livez'");
        }
    }
    let new = pem_certs(&sh(cp1, &format!("cat {LIB}/ca.pem"))).remove(0);
    assert_ne!(new, old, "ca.pem is a new CA");
    assert_rotated(f, &old, &new);
    // Tokens signed before stay valid: every service-account key read is still the old CA
    // key, and the CA key itself is new.
    let new_key = public_key(cp1, &format!("{LIB}/ca-key.pem"));
    assert_ne!(new_key, old_key, "ca-key.pem is the new CA's key");
    for (what, k) in service_account_keys(f) {
        assert_eq!(k, old_key, "{what}: not the old CA key (tokens signed before the rotation would be refused)");
    }
    assert_no_temp_files(f, "a rotation");
}

fn renew_all_with_no_failed_handshake_moves_every_leaf(f: &Fleet) {
    let leaves = |j: &serde_json::Value| -> BTreeMap<(String, String), String> {
        j["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["source"] != "endpoint" && c["is_ca"] == false)
            .map(|c| ((c["node"].as_str().unwrap().to_string(), c["path"].as_str().unwrap().to_string()), c["not_after"].as_str().unwrap().to_string()))
            .collect()
    };
    let before = leaves(&expiry(&f.inventory()));
    assert!(before.len() >= 3 * 9 + 2 * 4, "{} leaves", before.len());
    let sd = kcert_state(f, "renew");
    let (run, probes) = under_probes(f, || f.kcert(&["renew", "--certs", "all", "--yes", "--state-dir", sd.to_str().unwrap()]).run());
    keep(f, "renew-all", &run);
    finished_or_rolled_back(f, "renew --certs all", &run, &sd);
    no_failed_handshake(probes, "during the renewal");
    let json = expiry(&f.inventory());
    let after = leaves(&json);
    assert_eq!(after.keys().collect::<Vec<_>>(), before.keys().collect::<Vec<_>>(), "the same leaves, in the same files");
    let t = |s: &str| time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap();
    let stale: Vec<String> = before.iter().filter(|(k, was)| t(&after[*k]) <= t(was)).map(|((node, path), was)| format!("{node} {path} (notAfter {was})")).collect();
    assert!(stale.is_empty(), "not renewed:\n{}", stale.join("\n"));
    // What is served is what the files hold now: every component restarted onto them.
    for c in json["certificates"].as_array().unwrap().iter().filter(|c| c["source"] == "endpoint") {
        assert_eq!(c["status"], "ok", "{c}");
    }
    verify_live_clean(f);
    assert_no_temp_files(f, "a renewal");
}

/// Two operators at once: while one kcert (renew) runs, another (rotate-ca, from another
/// state dir) is refused with exit 2 naming the holder, and changes nothing; the first finishes.
fn a_second_kcert_is_refused_while_the_cluster_is_leased(f: &Fleet) {
    let logs = tempfile::tempdir().unwrap();
    let first = kcert_state(f, "lease-first");
    // Should an assertion below fail, the first run is still waited for, so the scenarios
    // after this one find the fleet as it ends (not leased to a run still going).
    struct WaitOnDrop(std::process::Child);
    impl Drop for WaitOnDrop {
        fn drop(&mut self) {
            let _ = self.0.wait();
        }
    }
    let mut renew = WaitOnDrop(spawn(f, &["renew", "--yes", "--state-dir", first.to_str().unwrap()], logs.path(), "renew"));
    let cp1 = &f.node("cp1").container;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while sh(cp1, "test -e /var/lib/kcert/lease.json && echo leased || echo free").trim() != "leased" {
        assert!(renew.0.try_wait().unwrap().is_none(), "renew ended before it took the lease:\n{}", spawned_output(logs.path(), "renew"));
        assert!(std::time::Instant::now() < deadline, "renew never took the lease");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let holder: serde_json::Value = serde_json::from_str(&sh(cp1, "cat /var/lib/kcert/lease.json")).unwrap();
    // No snapshot of the files here: the first run is writing them (its temporary files come
    // and go under `find`). The refused run's "nothing was changed" and its stdout say it.
    let second = f.kcert(&["rotate-ca", "--yes", "--state-dir", kcert_state(f, "lease-second").to_str().unwrap()]).run();
    keep(f, "lease-second", &second);
    second.status(2).stderr_has(&format!("leased to run {} (renew)", holder["run_id"].as_str().unwrap())).stderr_has("nothing was changed");
    let status = renew.0.wait().unwrap();
    assert!(status.success(), "the first kcert finished:\n{}", spawned_output(logs.path(), "renew"));
    assert!(!second.stdout.contains("S1"), "the refused rotation ran nothing");
    assert_eq!(sh(cp1, "test -e /var/lib/kcert/lease.json && echo leased || echo free").trim(), "free", "the lease was given back");
}

fn main() {
    // Kill, resume and roll back first: it ends where the fleet began (the CA key still the
    // service-account key), so the full rotation after it splits that key off too.
    let scenarios: Vec<(&'static str, Scenario)> = vec![
        ("expiry_reads_every_certificate_from_the_units_and_detects_hardway", expiry_reads_every_certificate_from_the_units_and_detects_hardway),
        ("killed_inside_s4_then_resumed_with_no_failed_handshake_then_rolled_back_byte_for_byte", killed_inside_s4_then_resumed_with_no_failed_handshake_then_rolled_back_byte_for_byte),
        ("rotate_ca_with_no_failed_handshake_keeps_the_service_account_key", rotate_ca_with_no_failed_handshake_keeps_the_service_account_key),
        ("a_second_kcert_is_refused_while_the_cluster_is_leased", a_second_kcert_is_refused_while_the_cluster_is_leased),
        ("renew_all_with_no_failed_handshake_moves_every_leaf", renew_all_with_no_failed_handshake_moves_every_leaf),
    ];
    harness_flavour(scenarios, "hardway", None);
}
