//! `kcert renew` and `kcert rollback` offline (`--local --root`) on copies of the real-world
//! kubeadm sets, judged by openssl: the renewed certificates verify against their own CA and
//! keep subject, SANs, usages and key; nothing else changes; rollback restores every byte.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Test, real_world, walk};
use sha2::Digest;

const SETS: &[&str] = &[
    "kubeadm-zetaoss-zeta-linux",
    "kubeadm-Eddicson-testdevops",
    "kubeadm-MaxxMoney-kubeadm_etc_kubernetes",
    "kubeadm-sijong09-k8s",
    "kubeadm-legacy-rongfengliang-k8sconfig",
];

fn copy_set(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join(name);
    let st = Command::new("cp").arg("-a").arg(real_world().join(name)).arg(&dst).status().unwrap();
    assert!(st.success());
    (tmp, dst)
}

/// sha256 of every file under the tree, by path relative to it (kcert's backups left out).
fn sums(root: &Path) -> BTreeMap<String, String> {
    walk(root, root)
        .into_iter()
        .filter(|(_, rel)| !rel.starts_with("/var/lib/kcert/"))
        .map(|(p, rel)| (rel, hex(&sha2::Sha256::digest(std::fs::read(p).unwrap()))))
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn openssl(args: &[&str], stdin: &[u8]) -> (bool, String) {
    let mut child = Command::new("openssl").args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// What a renewal must keep, as openssl prints it, one extension at a time.
fn kept(pem: &str) -> String {
    let mut all = String::new();
    for ext in ["subjectAltName", "keyUsage", "extendedKeyUsage", "basicConstraints"] {
        all.push_str(&openssl(&["x509", "-noout", "-subject", "-pubkey", "-ext", ext], pem.as_bytes()).1);
    }
    all
}

fn not_after(pem: &str) -> i64 {
    let (ok, out) = openssl(&["x509", "-noout", "-enddate", "-dateopt", "iso_8601"], pem.as_bytes());
    assert!(ok, "{out}");
    let v = out.trim().trim_start_matches("notAfter=").replace(' ', "T");
    time::OffsetDateTime::parse(&v, &time::format_description::well_known::Rfc3339).unwrap().unix_timestamp()
}

/// The CA files of the set that verify `pem` (openssl verify, the real-world REPORT's way).
fn verifying_cas(root: &Path, pem: &str, check_time: bool) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.pem");
    std::fs::write(&f, pem).unwrap();
    ["etc/kubernetes/pki/ca.crt", "etc/kubernetes/pki/etcd/ca.crt", "etc/kubernetes/pki/front-proxy-ca.crt"]
        .into_iter()
        .filter(|ca| root.join(ca).exists())
        .filter(|ca| {
            let mut cmd = Command::new("openssl");
            cmd.arg("verify");
            if !check_time {
                cmd.arg("-no_check_time");
            }
            let out = cmd.arg("-CAfile").arg(root.join(ca)).arg(&f).output().unwrap();
            out.status.success()
        })
        .map(str::to_string)
        .collect()
}

fn client_cert_pems(text: &str) -> Vec<(usize, String)> {
    use base64::Engine;
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| l.trim().strip_prefix("client-certificate-data:").map(|v| (i, v.trim().to_string())))
        .map(|(i, v)| (i, String::from_utf8(base64::engine::general_purpose::STANDARD.decode(v).unwrap()).unwrap()))
        .collect()
}

#[test]
fn renew_all_on_every_kubeadm_set_is_judged_right_by_openssl() {
    for set in SETS {
        let (_tmp, root) = copy_set(set);
        let state = tempfile::tempdir().unwrap();
        let before = sums(&root);

        // A dry run changes no byte and writes no backup.
        let run = Test::new().args(["renew", "--local", "--root"]).args([&root]).args(["--certs", "all", "--days", "400", "--dry-run"]).run();
        run.status(0).stdout_has("apiserver").stdout_has("(skipped: offline)");
        assert_eq!(sums(&root), before, "{set}: --dry-run changed the tree");
        assert!(!root.join("var/lib/kcert").exists(), "{set}: --dry-run wrote backups");

        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        Test::new()
            .args(["renew", "--local", "--root"])
            .args([&root])
            .args(["--certs", "all", "--days", "400", "--yes", "--state-dir"])
            .args([state.path()])
            .run()
            .status(0)
            .stdout_has("written");
        let after = sums(&root);
        assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>(), "{set}: files appeared or vanished");
        let changed: Vec<&String> = before.keys().filter(|k| before[*k] != after[*k]).collect();
        assert!(changed.len() >= 7, "{set}: only {changed:?} changed");
        for rel in &changed {
            assert!(rel.ends_with(".crt") || rel.ends_with(".conf"), "{set}: {rel} changed but is neither a cert nor a kubeconfig");
            let old_text = std::fs::read_to_string(real_world().join(set).join(&rel[1..])).unwrap();
            let new_text = std::fs::read_to_string(root.join(&rel[1..])).unwrap();
            let pairs: Vec<(String, String)> = if rel.ends_with(".conf") {
                // Only the client-certificate-data lines differ.
                let (o, n): (Vec<&str>, Vec<&str>) = (old_text.lines().collect(), new_text.lines().collect());
                assert_eq!(o.len(), n.len(), "{set}: {rel} changed shape");
                for (a, b) in o.iter().zip(&n) {
                    assert!(a == b || a.trim().starts_with("client-certificate-data:"), "{set}: {rel}: a line other than client-certificate-data changed:\n{a}\n{b}");
                }
                client_cert_pems(&old_text).into_iter().zip(client_cert_pems(&new_text)).map(|((_, a), (_, b))| (a, b)).collect()
            } else {
                vec![(old_text, new_text)]
            };
            for (old, new) in pairs {
                let old_cas = verifying_cas(&root, &old, false);
                assert_eq!(old_cas.len(), 1, "{set}: {rel}: the original verifies against {old_cas:?}");
                assert_eq!(verifying_cas(&root, &new, true), old_cas, "{set}: {rel}: renewed cert does not verify against its own CA");
                assert_eq!(kept(&new), kept(&old), "{set}: {rel}: subject, SANs, usages or key changed");
                let want = now + 400 * 86_400;
                assert!((not_after(&new) - want).abs() <= 60, "{set}: {rel}: expires {} not now+400d {want}", not_after(&new));
            }
        }
        // Every file the renewal should touch was touched: each leaf .crt signed by a CA of the set.
        for (rel, _) in before.iter().filter(|(r, _)| r.ends_with(".crt") && !r.ends_with("ca.crt")) {
            assert!(changed.contains(&rel), "{set}: {rel} was not renewed");
        }

        // Rollback restores every byte.
        Test::new().args(["rollback", "--yes", "--state-dir"]).args([state.path()]).run().status(0).stdout_has("restored");
        assert_eq!(sums(&root), before, "{set}: rollback did not restore every byte");
    }
}

#[test]
fn changing_without_a_terminal_or_yes_is_refused() {
    let (_tmp, root) = copy_set("kubeadm-sijong09-k8s");
    let before = sums(&root);
    let state = tempfile::tempdir().unwrap();
    Test::new().args(["renew", "--local", "--root"]).args([&root]).args(["--state-dir"]).args([state.path()]).run().status(2).stderr_has("--yes");
    assert_eq!(sums(&root), before);
}

#[test]
fn bad_ca_material_is_refused_naming_node_and_file_and_changes_nothing() {
    let state = tempfile::tempdir().unwrap();
    let pki = "etc/kubernetes/pki";
    type Case<'a> = (&'a str, Box<dyn Fn(&Path)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "a CA key that does not match its cert",
            Box::new(move |root: &Path| std::fs::copy(root.join(pki).join("front-proxy-ca.key"), root.join(pki).join("ca.key")).map(|_| ()).unwrap()),
            "does not match the CA certificate",
        ),
        ("an absent CA key", Box::new(move |root: &Path| std::fs::remove_file(root.join(pki).join("etcd/ca.key")).unwrap()), "external-CA"),
        (
            "an expired CA",
            Box::new(move |root: &Path| {
                // Same key, same subject, dates in the past: made with `openssl ca -selfsign`.
                let p = root.join(pki);
                let work = tempfile::tempdir().unwrap();
                let w = work.path();
                std::fs::write(w.join("index.txt"), "").unwrap();
                std::fs::write(w.join("serial"), "01\n").unwrap();
                std::fs::write(
                    w.join("ca.conf"),
                    format!("[ca]\ndefault_ca=c\n[c]\ndatabase={0}/index.txt\nserial={0}/serial\nnew_certs_dir={0}\ndefault_md=sha256\npolicy=p\nx509_extensions=x\n[p]\ncommonName=supplied\n[x]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n", w.display()),
                )
                .unwrap();
                let key = p.join("front-proxy-ca.key");
                let csr = w.join("ca.csr");
                let out = Command::new("openssl").args(["req", "-new", "-subj", "/CN=front-proxy-ca", "-key"]).arg(&key).arg("-out").arg(&csr).output().unwrap();
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                let out = Command::new("openssl")
                    .args(["ca", "-batch", "-selfsign", "-notext", "-config"])
                    .arg(w.join("ca.conf"))
                    .args(["-startdate", "20200101000000Z", "-enddate", "20210101000000Z", "-keyfile"])
                    .arg(&key)
                    .arg("-in")
                    .arg(&csr)
                    .arg("-out")
                    .arg(p.join("front-proxy-ca.crt"))
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            }),
            "expired on 2021-01-01",
        ),
        (
            "a leaf whose key does not match it",
            Box::new(move |root: &Path| std::fs::copy(root.join(pki).join("apiserver-etcd-client.key"), root.join(pki).join("apiserver.key")).map(|_| ()).unwrap()),
            "/etc/kubernetes/pki/apiserver.crt: its private key /etc/kubernetes/pki/apiserver.key does not match it",
        ),
    ];
    for (what, break_it, says) in cases {
        let (_tmp, root) = copy_set("kubeadm-zetaoss-zeta-linux");
        break_it(&root);
        let before = sums(&root);
        let run = Test::new().args(["renew", "--local", "--root"]).args([&root]).args(["--yes", "--state-dir"]).args([state.path()]).run();
        run.status(2).stderr_has(says).stderr_has("local: /etc/kubernetes/").stderr_has("nothing was changed");
        assert_eq!(sums(&root), before, "{what}: the tree changed");
    }
}

#[test]
fn no_private_key_bytes_in_dry_run_output_or_journal() {
    let (_tmp, root) = copy_set("kubeadm-MaxxMoney-kubeadm_etc_kubernetes");
    let state = tempfile::tempdir().unwrap();
    let mut secrets = Vec::new();
    for (p, _) in walk(&root, &root) {
        let text = std::fs::read_to_string(p).unwrap_or_default();
        let mut in_key = false;
        for l in text.lines() {
            if l.contains("PRIVATE KEY-----") {
                in_key = l.contains("BEGIN");
                continue;
            }
            if in_key && l.len() >= 40 {
                secrets.push(l[..40].to_string());
            }
            if let Some(v) = l.trim().strip_prefix("client-key-data:") {
                secrets.push(v.trim()[..40].to_string());
            }
        }
    }
    assert!(secrets.len() > 20);
    let mut seen = String::new();
    for args in [vec!["--dry-run"], vec!["--dry-run", "-o", "json"], vec!["--yes", "-v"], vec!["--yes", "-o", "json"]] {
        let run = Test::new().args(["renew", "--local", "--root"]).args([&root]).args(args).args(["--state-dir"]).args([state.path()]).run();
        run.status(0);
        seen.push_str(&run.stdout);
        seen.push_str(&run.stderr);
    }
    for (p, _) in walk(state.path(), state.path()) {
        seen.push_str(&common::text_of(&p));
    }
    assert!(seen.contains("\"event\":\"written\""), "the journal was read");
    assert!(!seen.contains("PRIVATE KEY"));
    for s in &secrets {
        assert!(!seen.contains(s.as_str()), "key bytes in output or journal");
    }
}

/// The client cert, server cert and trust files of one verify edge, as PEM, read from the tree.
fn edge_pems(root: &Path, e: &serde_json::Value) -> (String, Option<String>, Option<String>, Option<String>) {
    let file = |label: &str| label.split_once(':').map(|(_, p)| p.to_string()).unwrap();
    let read = |p: &str| std::fs::read_to_string(root.join(&p[1..])).unwrap_or_default();
    let client = file(e["client"].as_str().unwrap());
    let kubeconfig = client.ends_with(".conf");
    let client_pem = if kubeconfig {
        client_cert_pems(&read(&client)).into_iter().next().map(|(_, p)| p).unwrap_or_default()
    } else {
        read(&client)
    };
    let server_pem = e["server_cert"].is_object().then(|| read(&file(e["server"].as_str().unwrap())));
    let server_trust = e["server_trust_file"].as_str().map(&read);
    let client_trust = e["client_trust_file"].as_str().map(|p| {
        if p == "certificate-authority-data" {
            use base64::Engine;
            let text = read(&client);
            let v = text.lines().find_map(|l| l.trim().strip_prefix("certificate-authority-data:")).unwrap().trim().to_string();
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(v).unwrap()).unwrap()
        } else {
            read(p)
        }
    });
    (client_pem, server_pem, server_trust, client_trust)
}

fn openssl_verifies(trust: &str, cert: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.pem"), trust).unwrap();
    std::fs::write(dir.path().join("c.pem"), cert).unwrap();
    Command::new("openssl").args(["verify", "-CAfile", "t.pem", "c.pem"]).current_dir(dir.path()).output().unwrap().status.success()
}

#[test]
fn verify_agrees_with_openssl_on_every_kubeadm_set_before_and_after_renewal() {
    // set -> (edges, broken as collected, broken after `renew --certs all`), and why.
    let table: &[(&str, usize, usize, usize)] = &[
        // kubelet.conf points at kubelet-client-current.pem, absent from the copy: broken either way.
        ("kubeadm-zetaoss-zeta-linux", 9, 9, 1),
        ("kubeadm-Eddicson-testdevops", 8, 8, 1),
        ("kubeadm-MaxxMoney-kubeadm_etc_kubernetes", 8, 8, 0),
        ("kubeadm-sijong09-k8s", 8, 8, 0),
        // v1.8: no etcd TLS, so only the kubeconfig and front-proxy edges.
        ("kubeadm-legacy-rongfengliang-k8sconfig", 5, 5, 0),
    ];
    for &(set, edges, broken_before, broken_after) in table {
        let (_tmp, root) = copy_set(set);
        let state = tempfile::tempdir().unwrap();
        for (stage, want_broken) in [("as collected", broken_before), ("renewed", broken_after)] {
            if stage == "renewed" {
                Test::new().args(["renew", "--local", "--root"]).args([&root]).args(["--yes", "--state-dir"]).args([state.path()]).run().status(0);
            }
            let run = Test::new().args(["verify", "--local", "--root"]).args([&root]).args(["-o", "json"]).run();
            let json = run.json();
            let list = json["edges"].as_array().unwrap();
            let broken = list.iter().filter(|e| !e["ok"].as_bool().unwrap()).count();
            assert_eq!((list.len(), broken), (edges, want_broken), "{set} {stage}: {}", run.stdout);
            run.status(if want_broken > 0 { 3 } else { 0 });
            for e in list {
                let (client, server, server_trust, client_trust) = edge_pems(&root, e);
                let mut openssl_ok = !client.is_empty();
                if let Some(t) = &server_trust {
                    openssl_ok &= openssl_verifies(t, &client);
                }
                if let (Some(t), Some(s)) = (&client_trust, &server) {
                    openssl_ok &= openssl_verifies(t, s);
                }
                assert_eq!(e["ok"].as_bool().unwrap(), openssl_ok, "{set} {stage}: kcert and openssl disagree on {e}");
            }
        }
    }
}

#[test]
fn without_a_terminal_progress_is_plain_lines_naming_stage_step_and_node() {
    let (_d, root) = copy_set(SETS[0]);
    let state = tempfile::tempdir().unwrap();
    let run = Test::new().args(["renew", "--local", "--root"]).args([&root]).args(["--yes", "--state-dir"]).args([state.path()]).run();
    run.status(0);
    // One line per event, each stamped with the time since the run began.
    for want in ["] R1 re-sign leaves", "] R1 step 1/1: local", "]   local: backing up and writing 11 files"] {
        assert!(run.stderr.lines().any(|l| l.starts_with("kcert [") && l.contains(want)), "{want:?} not in:\n{}", run.stderr);
    }
}

#[test]
fn unknown_certificate_names_and_formats_are_usage_errors() {
    let set = real_world().join("kubeadm-sijong09-k8s");
    Test::new().args(["renew", "--local", "--root"]).args([&set]).args(["--certs", "apiserverr", "--dry-run"]).run().status(2).stderr_has("apiserverr").stderr_has("kubelet-serving");
    Test::new().args(["verify", "--local", "--root"]).args([&set]).args(["-o", "prom"]).run().status(2);
    Test::new().args(["expiry", "--local", "--root"]).args([&set]).args(["-o", "dot"]).run().status(2);
    Test::new().args(["rollback", "--state-dir", "/nonexistent/kcert-state"]).run().status(2).stderr_has("no runs");
}

/// The paths whose bytes differ between two snapshots.
fn changed_between(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
    a.keys().filter(|k| a.get(*k) != b.get(*k)).cloned().collect()
}

#[test]
fn a_saved_renewal_applies_exactly_its_plan_the_same_renewal_as_yes_and_not_once_a_file_moved() {
    for set in SETS {
        let (_a, root_a) = copy_set(set);
        let (_b, root_b) = copy_set(set);
        let state = tempfile::tempdir().unwrap();
        let before = sums(&root_a);
        let plan_path = state.path().join("renew-plan.json");
        let saved = Test::new().args(["renew", "--local", "--root"]).args([&root_a]).args(["--days", "400", "--plan-out"]).args([&plan_path]).args(["--state-dir"]).args([state.path()]).run();
        saved.status(0).stderr_has("kcert apply");
        assert_eq!(sums(&root_a), before, "{set}: --plan-out changed the tree");
        let plan = common::plan_json(&plan_path);
        assert_eq!(plan["kind"], "renew");
        assert_eq!(plan["stages"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect::<Vec<_>>(), ["S0", "R1"], "{set}");
        assert_eq!(plan["made_with"]["playbook"]["name"], "kubeadm");

        Test::new().args(["apply"]).args([&plan_path]).args(["--yes", "--state-dir"]).args([state.path()]).run().status(0).stdout_has("written");
        Test::new().args(["renew", "--local", "--root"]).args([&root_b]).args(["--days", "400", "--yes", "--state-dir"]).args([tempfile::tempdir().unwrap().path()]).run().status(0);
        let (after_a, after_b) = (sums(&root_a), sums(&root_b));
        // The same files renewed either way; applied, each holds exactly the bytes the plan says.
        assert_eq!(changed_between(&before, &after_a), changed_between(&before, &after_b), "{set}: apply and --yes renewed different files");
        let planned: BTreeMap<String, String> = plan["stages"][1]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["ops"].as_array().unwrap().iter())
            .flat_map(|o| o["files"].as_array().unwrap().iter())
            .map(|f| (f["path"].as_str().unwrap().to_string(), f["new_sha256"].as_str().unwrap().to_string()))
            .collect();
        assert_eq!(planned.keys().cloned().collect::<Vec<_>>(), changed_between(&before, &after_a), "{set}");
        for (path, sha) in &planned {
            assert_eq!(&after_a[path], sha, "{set}: {path} is not the plan's bytes");
        }
        // And the same renewal: what openssl sees of each renewed cert is the same but serial and dates.
        for rel in planned.keys().filter(|r| r.ends_with(".crt")) {
            let a = std::fs::read_to_string(root_a.join(&rel[1..])).unwrap();
            let b = std::fs::read_to_string(root_b.join(&rel[1..])).unwrap();
            assert_eq!(kept(&a), kept(&b), "{set}: {rel}");
            assert!((not_after(&a) - not_after(&b)).abs() <= 120, "{set}: {rel}");
        }
        // Applied once, the facts moved: a second apply is refused, naming a file, changing nothing.
        let run = Test::new().args(["apply"]).args([&plan_path]).args(["--yes", "--state-dir"]).args([state.path()]).run();
        run.status(2).stderr_has("the cluster moved").stderr_has("changed (sha256").stderr_has("nothing was changed");
        assert_eq!(sums(&root_a), after_a);
    }
}

#[test]
fn an_older_renewal_is_not_rolled_back_over_a_newer_one() {
    let (_tmp, root) = copy_set("kubeadm-sijong09-k8s");
    let state = tempfile::tempdir().unwrap();
    let original = sums(&root);
    let renew = |certs: &str| {
        let run = Test::new().args(["renew", "--local", "--root"]).args([&root]).args(["--certs", certs, "--yes", "-o", "json", "--state-dir"]).args([state.path()]).run();
        run.status(0);
        run.json()["run_id"].as_str().unwrap().to_string()
    };
    let older = renew("all");
    let after_older = sums(&root);
    let newer = renew("apiserver");
    let after_newer = sums(&root);
    let run = Test::new().args(["rollback", &older, "--yes", "--state-dir"]).args([state.path()]).run();
    run.status(2).stderr_has("/etc/kubernetes/pki/apiserver.crt changed since this run wrote it").stderr_has("nothing was changed");
    assert_eq!(sums(&root), after_newer, "a refused rollback changes nothing");
    // Newest first, each rollback restores what its run found.
    Test::new().args(["rollback", &newer, "--yes", "--state-dir"]).args([state.path()]).run().status(0).stdout_has("restored");
    assert_eq!(sums(&root), after_older);
    Test::new().args(["rollback", &older, "--yes", "--state-dir"]).args([state.path()]).run().status(0).stdout_has("restored");
    assert_eq!(sums(&root), original);
    // Nothing of either is left: a third rollback has nothing to do, and says so.
    Test::new().args(["rollback", &older, "--yes", "--state-dir"]).args([state.path()]).run().status(2).stderr_has("nothing to undo");
}

#[test]
fn a_kill_between_the_writes_and_their_journal_records_still_rolls_back_byte_for_byte() {
    let (_tmp, root) = copy_set("kubeadm-Eddicson-testdevops");
    let state = tempfile::tempdir().unwrap();
    let original = sums(&root);
    let run = Test::new().args(["renew", "--local", "--root"]).args([&root]).args(["--yes", "-o", "json", "--state-dir"]).args([state.path()]).run();
    run.status(0);
    let id = run.json()["run_id"].as_str().unwrap().to_string();
    // As a SIGKILL right after the first file's record leaves it: every file written on disk,
    // one journaled as written, the run not finished.
    let journal = state.path().join("runs").join(&id).join("journal.jsonl");
    let text = std::fs::read_to_string(&journal).unwrap();
    let mut seen_written = false;
    let kept: Vec<&str> = text
        .lines()
        .take_while(|l| !l.contains("\"event\":\"run-finished\""))
        .filter(|l| {
            let written = l.contains("\"event\":\"written\"");
            let keep = (!written || !seen_written) && !l.contains("\"event\":\"step-done\"") && !l.contains("\"event\":\"stage-done\"");
            seen_written |= written;
            keep
        })
        .collect();
    std::fs::write(&journal, kept.join("\n") + "\n").unwrap();
    Test::new().args(["runs", "--state-dir"]).args([state.path()]).run().status(0).stdout_has("interrupted");
    Test::new().args(["rollback", &id, "--yes", "--state-dir"]).args([state.path()]).run().status(0).stdout_has("restored");
    assert_eq!(sums(&root), original, "every byte back, the unjournaled writes too");
}

#[test]
fn a_pair_the_renewal_leaves_alone_whose_key_does_not_match_is_said_and_not_touched() {
    // A kubeadm node made by the project's openssl script; the kubelet's serving key replaced
    // by another key (the kubelet could not serve with the pair). A default renewal does not
    // change kubelet serving certs (`--certs kubelet-serving` does).
    let made = |dir: &Path| {
        let ok = Command::new("bash").arg(format!("{}/docker/pki/make-kubeadm-pki.sh", env!("CARGO_MANIFEST_DIR"))).arg(dir).arg("cp1:10.0.0.11:cp").status().unwrap();
        assert!(ok.success(), "make-kubeadm-pki.sh");
        dir.join("cp1")
    };
    let note = "/var/lib/kubelet/pki/kubelet.crt: its private key /var/lib/kubelet/pki/kubelet.key does not match it";
    let dir = tempfile::tempdir().unwrap();
    let root = made(dir.path());
    let pki = root.join("var/lib/kubelet/pki");
    let (ok, out) = openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", pki.join("kubelet.key").to_str().unwrap()], b"");
    assert!(ok, "{out}");
    let before = sums(&root);
    let state = tempfile::tempdir().unwrap();
    let kcert = |extra: &[&str]| Test::new().args(["renew", "--local", "--root"]).args([&root]).args(["--state-dir"]).args([state.path()]).args(extra.iter().copied()).run();
    kcert(&["--dry-run"]).status(0).stdout_has(note).stdout_has("this renewal leaves kubelet-serving alone");
    kcert(&["--yes"]).status(0).stdout_has(note);
    let after = sums(&root);
    for f in ["/var/lib/kubelet/pki/kubelet.crt", "/var/lib/kubelet/pki/kubelet.key"] {
        assert_eq!(after.get(f), before.get(f), "{f} was left alone");
    }
    assert_ne!(after.get("/etc/kubernetes/pki/apiserver.crt"), before.get("/etc/kubernetes/pki/apiserver.crt"), "the renewal itself went ahead");
    // Asked for, the pair is refused as before, naming it.
    kcert(&["--yes", "--certs", "kubelet-serving"]).status(2).stderr_has(note);
    // A node whose pairs all match is given no such note.
    let clean = tempfile::tempdir().unwrap();
    let root = made(clean.path());
    let run = Test::new().args(["renew", "--local", "--root"]).args([&root]).args(["--dry-run", "--state-dir"]).args([state.path()]).run();
    run.status(0);
    assert!(!run.stdout.contains("does not match"), "{}", run.stdout);
}
