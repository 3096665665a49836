//! kcert against the real test fleet (docker/fleet): five containers with real sshd and etcd,
//! stand-ins for kube-apiserver and the kubelet. The fleet is brought up once per run under a
//! name of its own, every scenario runs in order (each undoes what it changes), and the fleet
//! is torn down whatever happened. Without a Docker daemon this fails and says so.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::fleet::{Fleet, Scenario, assert_no_temp_files, assert_ports_serve_their_files, assert_same_snapshot, assert_written_once, certs_of, derived_inventory, first_run, harness, is, journal_lines, kcert_rows, kill_when, no_failed_handshake, openssl_rows, pki_snapshot, probe, run, sh, spawn, under_probes, wait_for, walk_journal, writes};
use common::{Run, Test};

/// `args` run with the transport's debug log, which says how many commands each connection
/// ran when it closes.
fn counting_execs(f: &Fleet, args: &[&str]) -> Run {
    f.kcert(args).env("RUST_LOG", "kcert::reach::transport::ssh=debug").run()
}

/// Each node was reached over one connection that ran one command (one exec channel).
fn one_exec_per_node(f: &Fleet, run: &Run, what: &str) {
    for n in &f.nodes {
        let closed: Vec<&str> = run.stderr.lines().filter(|l| l.contains("connection closed") && l.contains(&format!("node={} ", n.name))).collect();
        assert_eq!(closed.len(), 1, "{what}: {}: one connection\n{}", n.name, run.stderr);
        assert!(closed[0].ends_with("execs=1"), "{what}: {}: reading the node is one command (one exec channel): {}", n.name, closed[0]);
    }
}

fn expiry_matches_openssl_on_every_node(f: &Fleet) {
    let run = counting_execs(f, &["expiry", "-o", "json"]);
    run.status(0);
    one_exec_per_node(f, &run, "expiry");
    let json = run.json();
    assert_eq!(json["errors"].as_array().unwrap().len(), 0, "{}", run.stdout);
    for n in &f.nodes {
        // What is on the node, enumerated independently: every file under the PKI directories.
        let want = openssl_rows(&n.container, "find -L /etc/kubernetes /var/lib/kubelet -type f");
        assert_eq!(kcert_rows(&json, &n.name), want, "{}: kcert and openssl in the container disagree", n.name);
        // And every port serves the cert of the file behind it.
        let mut ports = BTreeSet::from(["127.0.0.1:10250".to_string()]);
        if n.control_plane {
            ports.extend(["127.0.0.1:6443".to_string(), "127.0.0.1:2379".to_string(), format!("{}:2380", n.ip)]);
        }
        assert_ports_serve_their_files(&json, &n.name, ports);
    }
}

fn the_table_lists_all_five_nodes(f: &Fleet) {
    let run = f.kcert(&["expiry"]).run();
    run.status(0).stdout_has("CERTIFICATE AUTHORITY").stdout_has("RESIDUAL TIME");
    for n in &f.nodes {
        assert!(run.stdout.lines().any(|l| l.starts_with(&format!("{} ", n.name))), "{} missing:\n{}", n.name, run.stdout);
    }
}

fn a_sudo_user_sees_what_root_sees(f: &Fleet) {
    let key = |j: serde_json::Value| -> BTreeSet<String> { j["certificates"].as_array().unwrap().iter().map(|c| format!("{} {} {}", c["node"], c["path"], c["serial"])).collect() };
    let root = f.kcert(&["expiry", "-o", "json"]).run();
    let sudo = Test::new().args(["expiry", "-o", "json", "-i"]).args([f.state.join("inventory-sudo.yaml")]).run();
    sudo.status(0);
    assert_eq!(key(sudo.json()), key(root.json()));
}

fn check_passes_as_root_and_as_the_sudo_user(f: &Fleet) {
    for (inv, sudo) in [("inventory.yaml", serde_json::Value::Null), ("inventory-sudo.yaml", serde_json::Value::Bool(true))] {
        let run = Test::new().args(["check", "-o", "json", "-i"]).args([f.state.join(inv)]).run();
        run.status(0);
        let json = run.json();
        for n in json["nodes"].as_array().unwrap() {
            assert_eq!(n["ok"], true, "{n}");
            assert_eq!(n["sudo"], sudo, "{inv}: {n}");
            assert_eq!(n["distribution"], "kubeadm");
            assert!(n["clock_skew_seconds"].as_f64().unwrap().abs() < 5.0);
            assert!(n["free_bytes"].as_u64().unwrap() > 0);
            let want = if n["node"].as_str().unwrap().starts_with("cp") { 30 } else { 5 };
            assert!(n["pki_files"].as_u64().unwrap() >= want, "{n}");
        }
    }
    Test::new().args(["check", "-i"]).args([f.state.join("inventory-sudo.yaml")]).run().status(0).stdout_has("SUDO").stdout_has("kubeadm");
}

fn sudo_that_needs_a_password_is_said_plainly(f: &Fleet) {
    let inv = f.state.join("inventory-needpw.yaml");
    std::fs::write(&inv, std::fs::read_to_string(f.state.join("inventory-sudo.yaml")).unwrap().replace("user: ops", "user: needpw")).unwrap();
    let run = Test::new().args(["check", "--nodes", "w1", "-o", "json", "-i"]).args([&inv]).run();
    run.status(1);
    let n = &run.json()["nodes"][0];
    assert_eq!((n["authenticated"].clone(), n["sudo"].clone()), (serde_json::Value::Bool(true), serde_json::Value::Bool(false)), "{n}");
    assert!(n["problems"][0].as_str().unwrap().contains("needs a password"), "{n}");
    Test::new().args(["expiry", "--nodes", "w1", "-i"]).args([&inv]).run().status(1).stdout_has("needs a password");
}

fn a_replaced_cert_without_restart_is_served_differs(f: &Fleet) {
    let c = &f.node("cp2").container;
    // A new apiserver cert for the same key, signed by the cluster CA with openssl.
    sh(c, "cd /etc/kubernetes/pki && cp -p apiserver.crt /root/apiserver.crt.orig && \
           san=$(openssl x509 -in apiserver.crt -noout -ext subjectAltName | tail -n1 | sed 's/IP Address:/IP:/g; s/ //g') && \
           printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' \"$san\" > /tmp/ext && \
           openssl req -new -key apiserver.key -subj /CN=kube-apiserver -out /tmp/a.csr && \
           openssl x509 -req -in /tmp/a.csr -CA ca.crt -CAkey ca.key -set_serial 0x1234 -days 200 -extfile /tmp/ext -out apiserver.crt 2>/dev/null");
    let run = f.kcert(&["expiry", "-o", "json", "--nodes", "cp2"]).run();
    run.status(3);
    let json = run.json();
    let served = certs_of(&json, "cp2", "endpoint").into_iter().find(|x| x["path"] == "127.0.0.1:6443").unwrap();
    assert_eq!(served["status"], "served-differs", "{served}");
    let file = certs_of(&json, "cp2", "file").into_iter().find(|x| x["path"] == "/etc/kubernetes/pki/apiserver.crt").unwrap();
    assert_eq!(file["serial"], "1234");
    f.kcert(&["expiry", "--nodes", "cp2"]).run().status(3).stdout_has("was not restarted since the file changed");
    // Restarting the stand-in makes it serve the file: clean again.
    sh(c, "supervisorctl restart kube-apiserver >/dev/null");
    wait_for(c, "kubectl --kubeconfig /etc/kubernetes/admin.conf get --raw /healthz");
    f.kcert(&["expiry", "--nodes", "cp2"]).run().status(0);
    sh(c, "cp -p /root/apiserver.crt.orig /etc/kubernetes/pki/apiserver.crt && supervisorctl restart kube-apiserver >/dev/null");
    wait_for(c, "kubectl --kubeconfig /etc/kubernetes/admin.conf get --raw /healthz");
}

fn a_near_expiry_leaf_exits_3(f: &Fleet) {
    let c = &f.node("w1").container;
    // A kubelet serving cert with explicit dates (openssl ca -startdate/-enddate), 10 days left.
    sh(c, r#"cd /var/lib/kubelet/pki && cp -p kubelet.crt /root/kubelet.crt.orig && mkdir -p /tmp/ca && cd /tmp/ca &&
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 -subj /CN=test-ca 2>/dev/null &&
        : > index.txt && echo 1000 > serial &&
        printf '[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nserial=serial\nnew_certs_dir=.\ndefault_md=sha256\npolicy=p\ncopy_extensions=copy\n[p]\ncommonName=supplied\n' > ca.cnf &&
        openssl x509 -in /var/lib/kubelet/pki/kubelet.crt -x509toreq -signkey /var/lib/kubelet/pki/kubelet.key -out k.csr 2>/dev/null &&
        openssl ca -batch -config ca.cnf -cert ca.crt -keyfile ca.key -in k.csr -out k.crt -notext \
          -startdate $(date -u -d '-1 day' +%Y%m%d%H%M%SZ) -enddate $(date -u -d '+10 days' +%Y%m%d%H%M%SZ) 2>/dev/null &&
        cp k.crt /var/lib/kubelet/pki/kubelet.crt && supervisorctl restart kubelet >/dev/null"#);
    wait_for(c, "curl -sk -o /dev/null https://127.0.0.1:10250/healthz; test $? -ne 7");
    let run = f.kcert(&["expiry", "-o", "json", "--nodes", "w1"]).run();
    run.status(3);
    let json = run.json();
    for source in ["file", "endpoint"] {
        let row = certs_of(&json, "w1", source).into_iter().find(|x| x["name"] == "kubelet-serving").unwrap();
        assert_eq!(row["status"], "warning", "{row}");
        let left = row["residual_seconds"].as_i64().unwrap();
        assert!((9 * 86_400..=10 * 86_400).contains(&left), "{row}");
    }
    // Outside a 5-day window it is fine.
    f.kcert(&["expiry", "--nodes", "w1", "--warn", "5d"]).run().status(0);
    sh(c, "cp -p /root/kubelet.crt.orig /var/lib/kubelet/pki/kubelet.crt && supervisorctl restart kubelet >/dev/null");
    wait_for(c, "curl -sk -o /dev/null https://127.0.0.1:10250/healthz; test $? -ne 7");
}

fn a_stopped_node_is_reported_and_the_others_still_are(f: &Fleet) {
    let w2 = f.node("w2");
    run(Command::new("docker").args(["stop", "-t", "1", &w2.container])).unwrap();
    let result = std::panic::catch_unwind(|| {
        let run = f.kcert(&["expiry", "-o", "json", "--connect-timeout", "3s"]).run();
        run.status(1);
        let json = run.json();
        let errs: Vec<_> = json["errors"].as_array().unwrap().iter().filter(|e| e["node"] == "w2").collect();
        assert_eq!(errs.len(), 1, "{json}");
        assert!(errs[0]["path"].is_null() && errs[0]["error"].as_str().unwrap().contains(&w2.ip), "{}", errs[0]);
        for n in f.nodes.iter().filter(|n| n.name != "w2") {
            assert!(!certs_of(&json, &n.name, "file").is_empty(), "{} still reported", n.name);
        }
        let run = f.kcert(&["check", "-o", "json", "--connect-timeout", "3s"]).run();
        run.status(1);
        let json = run.json();
        for n in json["nodes"].as_array().unwrap() {
            assert_eq!(n["reachable"], n["node"] != "w2", "{n}");
        }
        f.kcert(&["check", "--connect-timeout", "3s"]).run().status(1).stdout_has("cannot connect to");
    });
    run(Command::new("docker").args(["start", &w2.container])).unwrap();
    wait_for(&w2.container, "supervisorctl status sshd | grep -q RUNNING && supervisorctl status kubelet | grep -q RUNNING");
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

fn fingerprint(pubkey_line: &str) -> String {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), pubkey_line).unwrap();
    let out = run(Command::new("ssh-keygen").arg("-lf").arg(tmp.path())).unwrap();
    out.split_whitespace().nth(1).unwrap().to_string()
}

fn a_changed_host_key_is_refused_with_both_fingerprints(f: &Fleet) {
    let w1 = f.node("w1");
    let old = std::fs::read_to_string(f.state.join("known_hosts")).unwrap();
    let old_line = old.lines().find(|l| l.starts_with(&format!("{} ssh-ed25519", w1.ip))).unwrap();
    let old_fp = fingerprint(&old_line[w1.ip.len() + 1..]);
    sh(&w1.container, "mkdir -p /root/hostkeys && cp -p /etc/ssh/ssh_host_* /root/hostkeys/ && rm /etc/ssh/ssh_host_* && ssh-keygen -A >/dev/null && supervisorctl restart sshd >/dev/null");
    let new_fp = fingerprint(&sh(&w1.container, "cat /etc/ssh/ssh_host_ed25519_key.pub"));
    assert_ne!(old_fp, new_fp);
    let result = std::panic::catch_unwind(|| {
        for accept in [false, true] {
            let mut args = vec!["check", "--nodes", "w1"];
            if accept {
                args.push("--accept-new-host-keys"); // never accepts a changed key
            }
            let run = f.kcert(&args).run();
            run.status(1).stdout_has("HOST KEY CHANGED").stdout_has(&old_fp).stdout_has(&new_fp);
        }
        assert_eq!(std::fs::read_to_string(f.state.join("known_hosts")).unwrap(), old, "known_hosts untouched");
    });
    sh(&w1.container, "cp -p /root/hostkeys/* /etc/ssh/ && supervisorctl restart sshd >/dev/null");
    wait_for(&w1.container, "supervisorctl status sshd | grep -q RUNNING");
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    f.kcert(&["check", "--nodes", "w1"]).run().status(0);
}

fn an_unknown_host_key_needs_accept_new(f: &Fleet) {
    let w1 = f.node("w1");
    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("known_hosts");
    let others: String = std::fs::read_to_string(f.state.join("known_hosts")).unwrap().lines().filter(|l| !l.starts_with(&format!("{} ", w1.ip))).map(|l| format!("{l}\n")).collect();
    std::fs::write(&kh, &others).unwrap();
    let inv = dir.path().join("inventory.yaml");
    std::fs::write(&inv, std::fs::read_to_string(f.inventory()).unwrap().replace(&f.state.join("known_hosts").display().to_string(), &kh.display().to_string())).unwrap();
    let kcert = |extra: &[&str]| Test::new().args(["check", "--nodes", "w1", "-i"]).args([&inv]).args(extra.iter().copied()).run();
    kcert(&[]).status(1).stdout_has("is not in").stdout_has("--accept-new-host-keys");
    assert_eq!(std::fs::read_to_string(&kh).unwrap(), others, "nothing recorded without the flag");
    kcert(&["--accept-new-host-keys"]).status(0);
    let learned = std::fs::read_to_string(&kh).unwrap();
    assert!(learned.lines().any(|l| l.starts_with(&format!("{} ", w1.ip))), "recorded:\n{learned}");
    kcert(&[]).status(0);
}

fn a_jump_host_reaches_the_node_behind_it(f: &Fleet) {
    let dir = tempfile::tempdir().unwrap();
    let cp1 = f.node("cp1");
    // Every node reached through cp1's sshd (a direct-tcpip tunnel), cp1's host key verified too.
    let inv = derived_inventory(f, dir.path(), |t| t.replace("  config_file: none\n", &format!("  config_file: none\n  jump: root@{}:22\n", cp1.ip)));
    let run = Test::new().args(["check", "-o", "json", "--nodes", "w1,w2", "-i"]).args([&inv]).run();
    run.status(0);
    // A jump host that does not answer is named as such.
    let inv = derived_inventory(f, dir.path(), |t| t.replace("  config_file: none\n", "  config_file: none\n  jump: root@127.0.0.1:1\n"));
    Test::new().args(["check", "--nodes", "w1", "-i"]).args([&inv]).run().status(1).stdout_has("127.0.0.1");
}

fn the_ssh_agent_authenticates_when_no_key_file_is_given(f: &Fleet) {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let mut agent = Command::new("ssh-agent").args(["-D", "-a"]).arg(&sock).stdout(std::process::Stdio::null()).spawn().expect("ssh-agent runs");
    for _ in 0..100 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let result = std::panic::catch_unwind(|| {
        run(Command::new("ssh-add").arg(f.state.join("id_ed25519")).env("SSH_AUTH_SOCK", &sock)).unwrap();
        let home = tempfile::tempdir().unwrap();
        let inv = derived_inventory(f, dir.path(), |t| t.lines().filter(|l| !l.contains("identity_file")).map(|l| format!("{l}\n")).collect());
        let kcert = |sock: &Path| Test::new().env("HOME", home.path()).env("SSH_AUTH_SOCK", sock).args(["check", "--nodes", "cp1", "-i"]).args([&inv]).run();
        kcert(&sock).status(0);
        // Without an agent and without key files, the message says what was tried.
        kcert(&dir.path().join("none.sock")).status(1).stdout_has("authentication as root@");
    });
    let _ = agent.kill();
    let _ = agent.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

fn renew_dry_run_changes_nothing(f: &Fleet) {
    let before = pki_snapshot(f);
    let state = tempfile::tempdir().unwrap();
    let run = counting_execs(f, &["renew", "--dry-run", "--state-dir", state.path().to_str().unwrap()]);
    // The keys a renewal signs with are read with the rest of a node's files, in one command.
    one_exec_per_node(f, &run, "renew --dry-run");
    run.status(0).stdout_has("node cp1").stdout_has("restart etcd").stdout_has("gate    admin.conf -> kube-apiserver").stdout_has("expires");
    assert_same_snapshot("--dry-run", &before, &pki_snapshot(f));
    assert!(std::fs::read_dir(state.path()).map(|d| d.count()).unwrap_or(0) == 0, "a dry run journals nothing");
}

fn bad_input_is_refused_and_changes_nothing_on_any_node(f: &Fleet) {
    let state = tempfile::tempdir().unwrap();
    let sd = state.path().to_str().unwrap();
    let cp1 = &f.node("cp1").container;
    // A CA key that does not match its certificate.
    sh(cp1, "cp -p /etc/kubernetes/pki/ca.key /root/ca.key.orig && cp /etc/kubernetes/pki/front-proxy-ca.key /etc/kubernetes/pki/ca.key");
    let before = pki_snapshot(f);
    let run = f.kcert(&["renew", "--yes", "--state-dir", sd]).run();
    sh(cp1, "cp -p /root/ca.key.orig /etc/kubernetes/pki/ca.key");
    run.status(2).stderr_has("/etc/kubernetes/pki/ca.key on cp1").stderr_has("does not match").stderr_has("nothing was changed");
    let after = pki_snapshot(f);
    sh(cp1, "cp /etc/kubernetes/pki/front-proxy-ca.key /etc/kubernetes/pki/ca.key");
    assert_same_snapshot("a mismatched CA key", &before, &pki_snapshot(f));
    sh(cp1, "cp -p /root/ca.key.orig /etc/kubernetes/pki/ca.key");
    assert_same_snapshot("restored", &after, &pki_snapshot(f));

    // A node whose PKI disk is full (cp3's /etc/kubernetes/pki is a small tmpfs).
    let cp3 = &f.node("cp3").container;
    sh(cp3, "df -P /etc/kubernetes/pki | grep -q tmpfs; dd if=/dev/zero of=/etc/kubernetes/pki/.filler bs=4k 2>/dev/null || true");
    let before = pki_snapshot(f);
    let run = f.kcert(&["renew", "--yes", "--state-dir", sd]).run();
    sh(cp3, "rm -f /etc/kubernetes/pki/.filler");
    run.status(1).stderr_has("cp3: /etc/kubernetes/pki").stderr_has("bytes free").stderr_has("nothing was changed");
    let mut after = pki_snapshot(f);
    // The filler itself is gone now; everything else must be as it was.
    let filler = |m: &mut std::collections::BTreeMap<String, String>| {
        for v in m.values_mut() {
            *v = v.lines().filter(|l| !l.ends_with("/.filler")).map(|l| format!("{l}\n")).collect();
        }
    };
    let mut before = before;
    filler(&mut before);
    filler(&mut after);
    assert_same_snapshot("a full disk", &before, &after);
}

fn a_failing_gate_restores_the_node_and_stops(f: &Fleet) {
    let dir = tempfile::tempdir().unwrap();
    // A restart override that breaks the apiserver stand-in: the gate must catch it.
    let inv = derived_inventory(f, dir.path(), |t| {
        assert!(t.contains("restart: supervisorctl signal HUP kube-apiserver"), "{t}");
        t.replace("restart: supervisorctl signal HUP kube-apiserver", "restart: supervisorctl stop kube-apiserver")
    });
    let before = pki_snapshot(f);
    let run = Test::new().args(["renew", "--yes", "--gate-timeout", "8s", "--state-dir"]).args([dir.path()]).args(["-i"]).args([&inv]).run();
    let cp1 = &f.node("cp1").container;
    sh(cp1, "supervisorctl start kube-apiserver >/dev/null");
    wait_for(cp1, "kubectl --kubeconfig /etc/kubernetes/admin.conf get --raw /healthz");
    run.status(1).stdout_has("STOPPED: R1").stdout_has("cp1: health gate failed").stdout_has("kube-apiserver").stdout_has("edge").stdout_has("restored");
    // Progress said, while it waited, which edge it was waiting for.
    run.stderr_has("R1 step 1/").stderr_has("cp1: restarting kube-apiserver").stderr_has("waiting for edge");
    assert_same_snapshot("a failed gate", &before, &pki_snapshot(f));
    let journal = std::fs::read_to_string(walk_journal(dir.path())).unwrap();
    assert!(journal.contains("\"event\":\"restored\",\"node\":\"cp1\""), "{journal}");
    assert!(!journal.contains("\"node\":\"cp2\""), "the run stopped at cp1:\n{journal}");

    // The cluster remembers the stopped run: another renewal, from another machine (a
    // fresh state dir), is refused until it is carried on or undone, and undoing it from
    // there restores nothing it had not already restored.
    let id = walk_journal(dir.path()).parent().unwrap().file_name().unwrap().to_str().unwrap().to_string();
    let other = tempfile::tempdir().unwrap();
    let od = other.path().to_str().unwrap();
    f.kcert(&["renew", "--yes", "--state-dir", od]).run().status(2).stderr_has(&id).stderr_has("unfinished").stderr_has("nothing was changed");
    f.kcert(&["rollback", "--yes", "--state-dir", od, &id]).run().status(0);
    assert_same_snapshot("the stopped run rolled back", &before, &pki_snapshot(f));
    f.kcert(&["runs", "--state-dir", od]).run().status(0).stdout_has(&id).stdout_has("rolled back");
}

fn renew_everything_with_zero_probe_failures_then_roll_back(f: &Fleet) {
    let state = tempfile::tempdir().unwrap();
    let sd = state.path().to_str().unwrap();
    let before = pki_snapshot(f);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let ((all, serving), probes) = under_probes(f, || {
        let all = f.kcert(&["renew", "--certs", "all", "--yes", "-o", "json", "--state-dir", sd]).run();
        let serving = f.kcert(&["renew", "--certs", "kubelet-serving", "--days", "3650", "--yes", "-o", "json", "--state-dir", sd]).run();
        (all, serving)
    });
    all.status(0);
    serving.status(0);
    no_failed_handshake(probes, "during the renewal");
    let all_id = all.json()["run_id"].as_str().unwrap().to_string();
    let serving_id = serving.json()["run_id"].as_str().unwrap().to_string();
    assert_eq!(all.json()["nodes"].as_array().unwrap().len(), 5);

    // On disk and on the wire: every leaf renewed (kubelet client certs rotate by themselves).
    let run = f.kcert(&["expiry", "-o", "json"]).run();
    run.status(0);
    for c in run.json()["certificates"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        if c["is_ca"].as_bool().unwrap() || name.contains("kubelet.conf") || name.contains("kubelet-client") {
            continue;
        }
        let after = c["not_after"].as_str().unwrap();
        let t = time::OffsetDateTime::parse(after, &time::format_description::well_known::Rfc3339).unwrap().unix_timestamp();
        assert!(t > now + 300 * 86_400, "not renewed: {c}");
    }
    for n in &f.nodes {
        // Re-signed by the cluster CA: the self-signed original's throwaway CA is gone from the file.
        assert_eq!(sh(&n.container, "grep -c 'BEGIN CERTIFICATE' /var/lib/kubelet/pki/kubelet.crt").trim(), "1", "{}", n.name);
        sh(&f.node("cp1").container, &format!(
            "curl -sf --cacert /etc/kubernetes/pki/ca.crt --cert /etc/kubernetes/pki/apiserver-kubelet-client.crt --key /etc/kubernetes/pki/apiserver-kubelet-client.key https://{}:10250/healthz",
            n.ip
        ));
    }
    f.kcert(&["verify", "--live"]).run().status(0).stdout_has("0 broken");
    let dot = f.kcert(&["verify", "-o", "dot"]).run();
    dot.status(0);
    let mut child = Command::new("docker").args(["exec", "-i", &f.node("cp1").container, "dot", "-Tsvg"]).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), dot.stdout.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("<svg"), "dot -Tsvg refused the DOT output: {}", String::from_utf8_lossy(&out.stderr));

    // Rolling both runs back restores every file on every node byte for byte.
    f.kcert(&["rollback", &serving_id, "--yes", "--state-dir", sd]).run().status(0).stdout_has("restored");
    Test::new().args(["rollback", &all_id, "--yes", "--state-dir", sd]).run().status(0).stdout_has("restored");
    assert_same_snapshot("rollback", &before, &pki_snapshot(f));
    f.kcert(&["verify", "--live"]).run().status(0);
}

fn a_renewal_killed_mid_way_resumes_with_nothing_written_twice_then_rolls_back_gated(f: &Fleet) {
    let sd = tempfile::tempdir().unwrap();
    let sdir = sd.path().to_str().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let before = pki_snapshot(f);
    probe(f, "start").unwrap();
    // Killed once cp2's files are written (the second control-plane batch), before its restarts.
    let mut child = spawn(f, &["renew", "--yes", "--state-dir", sdir], logs.path(), "renew");
    kill_when(&mut child, sd.path(), 0, "inside R1's cp2 batch (its files written)", |v| is(v, "written", "R1", Some(1)));
    Test::new().args(["runs", "--state-dir", sdir]).run().status(0).stdout_has("interrupted").stdout_has("in R1");
    // A second renewal is refused while this one is unfinished.
    let refused = f.kcert(&["renew", "--yes", "--state-dir", sdir]).run();
    refused.status(2).stderr_has("is unfinished").stderr_has("kcert resume").stderr_has("kcert rollback");
    assert_eq!(refused.stderr.matches("kcert resume").count(), 1, "what to do is said once: {}", refused.stderr);
    let done = f.kcert(&["resume", "--yes", "-o", "json", "--state-dir", sdir]).run();
    done.status(0);
    assert!(done.json()["failure"].is_null(), "{}", done.stdout);
    assert_written_once(&writes(sd.path(), &["step", "node", "path"]));
    // Every file of the plan holds the bytes the plan says (those written before the kill
    // were left as they were, the rest written once).
    let run_dir = first_run(sd.path());
    let plan = common::plan_json(&run_dir.join("plan.json.gz"));
    let mut checked = 0;
    for step in plan["stages"][1]["steps"].as_array().unwrap() {
        for o in step["ops"].as_array().unwrap() {
            let node = f.node(o["node"].as_str().unwrap());
            for file in o["files"].as_array().unwrap() {
                let got = sh(&node.container, &format!("sha256sum {} | cut -d' ' -f1", file["path"].as_str().unwrap()));
                assert_eq!(got.trim(), file["new_sha256"].as_str().unwrap(), "{}: {}", node.name, file["path"]);
                checked += 1;
            }
        }
    }
    assert!(checked >= 30, "{checked} files in the renewal's plan");
    Test::new().args(["runs", "--state-dir", sdir]).run().status(0).stdout_has("finished");
    // Rolled back: every file as it was, each batch gated again after its files came back.
    let rb = f.kcert(&["rollback", "--yes", "--state-dir", sdir]).run();
    let probes = probe(f, "stop");
    rb.status(0).stdout_has("restored");
    assert_same_snapshot("a renewal rolled back", &before, &pki_snapshot(f));
    assert_no_temp_files(f, "a renewal killed, resumed and rolled back");
    no_failed_handshake(probes, "while the renewal was killed, resumed and rolled back");
    let lines = journal_lines(sd.path());
    let first_restore = lines.iter().position(|v| v["event"] == "restored").expect("restored records");
    let gates_after: Vec<&serde_json::Value> = lines[first_restore..].iter().filter(|v| v["event"] == "gate").collect();
    assert!(!gates_after.is_empty() && gates_after.iter().all(|v| v["ok"] == true), "the rollback gated each batch after restoring");
    assert!(lines[first_restore..].iter().any(|v| v["event"] == "restarted" && v["undo"] == true), "the rollback restarted what the run restarted");
}

fn a_rotation_of_the_fleet_is_planned_and_proven(f: &Fleet) {
    let run = counting_execs(f, &["rotate-ca", "--dry-run", "-o", "json"]);
    run.status(0);
    one_exec_per_node(f, &run, "rotate-ca --dry-run");
    let p = run.json();
    assert_eq!(p["cas"].as_array().unwrap().len(), 3, "{}", p["cas"]);
    // Cross-node edges are proven too: etcd peers, apiservers to every kubelet, workers' kubelet.conf.
    assert!(p["proof"]["edges"].as_u64().unwrap() >= 50, "{}", p["proof"]);
    // Control-plane nodes one at a time (so one etcd member restarts at a time), then workers.
    for stage in ["S2", "S4", "S5"] {
        let s = p["stages"].as_array().unwrap().iter().find(|s| s["id"] == stage).unwrap();
        let batches: Vec<Vec<String>> = s["steps"].as_array().unwrap().iter().filter(|x| x["kind"] == "batch" && x["ops"].as_array().unwrap().iter().any(|o| !o["restarts"].as_array().unwrap().is_empty())).map(|b| b["nodes"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect()).collect();
        assert_eq!(batches, [vec!["cp1"], vec!["cp2"], vec!["cp3"], vec!["w1"], vec!["w2"]], "{stage}");
        for b in s["steps"].as_array().unwrap().iter().filter(|x| x["kind"] == "batch") {
            let etcd = b["ops"].as_array().unwrap().iter().filter(|o| o["restarts"].as_array().unwrap().iter().any(|r| r == "etcd")).count();
            assert!(etcd <= 1, "{stage}: {etcd} etcd members restart in one batch");
        }
    }
}

/// The fleet's inventory as kubespray writes one (INI: `[all]` with addresses, the role
/// groups, `k8s_cluster:children`, connection variables in `[all:vars]`), with kcert's own
/// settings (distribution, components, ...) in `kcert.yaml` beside it: its nodes' SSH fields
/// removed there, so they can only come from the Ansible variables.
fn as_kubespray_ini(f: &Fleet, dir: &Path) -> PathBuf {
    let d = dir.join(&f.name);
    std::fs::create_dir_all(&d).unwrap();
    let mut ini = String::from("# kubespray layout\n[all]\n");
    for n in &f.nodes {
        ini += &format!("{} ansible_host={}  # ip={}\n", n.name, n.ip, n.ip);
    }
    let group = |g: &str, cp: bool| format!("\n[{g}]\n{}", f.nodes.iter().filter(|n| n.control_plane == cp).map(|n| format!("{}\n", n.name)).collect::<String>());
    ini += &group("kube_control_plane", true);
    ini += &group("etcd", true);
    ini += &group("kube_node", false);
    ini += "\n[calico_rr]\n\n[k8s_cluster:children]\nkube_control_plane\nkube_node\ncalico_rr\n\n[all:vars]\nansible_user=root\n";
    ini += &format!("ansible_ssh_private_key_file={}\n", f.state.join("id_ed25519").display());
    ini += &format!("ansible_ssh_common_args='-o UserKnownHostsFile={} -o StrictHostKeyChecking=no'\n", f.state.join("known_hosts").display());
    let path = d.join("inventory.ini");
    std::fs::write(&path, ini).unwrap();
    // kcert's settings: the YAML inventory without its nodes or its SSH user, key and known_hosts.
    let yaml = std::fs::read_to_string(f.inventory()).unwrap();
    let mut side = String::new();
    let mut in_nodes = false;
    for l in yaml.lines() {
        if !l.starts_with([' ', '#']) {
            in_nodes = l.starts_with("nodes:");
        }
        let ssh_field = ["  user:", "  port:", "  identity_file:", "  known_hosts:"].iter().any(|k| l.starts_with(k));
        if !in_nodes && !ssh_field {
            side += l;
            side += "\n";
        }
    }
    assert!(!side.contains("identity_file") && !side.contains("nodes:") && side.contains("components:"), "{side}");
    std::fs::write(d.join("kcert.yaml"), side).unwrap();
    path
}

/// What a rotation plan does, without its fresh keys and times: per stage, per step, its
/// kind, nodes and restarts; the proof's edge count.
fn plan_shape(p: &serde_json::Value) -> Vec<String> {
    let mut out = vec![format!("cas {} edges {}", p["cas"].as_array().unwrap().len(), p["proof"]["edges"])];
    for s in p["stages"].as_array().unwrap() {
        for x in s["steps"].as_array().unwrap() {
            let restarts: Vec<String> = x["ops"].as_array().map(|ops| ops.iter().map(|o| format!("{}", o["restarts"])).collect()).unwrap_or_default();
            out.push(format!("{} {} {} {}", s["id"], x["kind"], x["nodes"], restarts.join(";")));
        }
    }
    out
}

fn a_kubespray_inventory_drives_kcert_as_the_yaml_one_does(f: &Fleet) {
    let dir = tempfile::tempdir().unwrap();
    let ini = as_kubespray_ini(f, dir.path());
    let via = |inv: &Path, args: &[&str]| Test::new().args(args.iter().copied()).args(["-i".as_ref(), inv.as_os_str()]).run();
    let (yaml_expiry, ini_expiry) = (via(&f.inventory(), &["expiry", "-o", "json"]), via(&ini, &["expiry", "-o", "json"]));
    yaml_expiry.status(0);
    ini_expiry.status(0);
    // Every field of every row, but the seconds left (the two runs are not in the same second).
    let certs = |r: &Run| {
        let mut v = r.json()["certificates"].clone();
        for c in v.as_array_mut().unwrap() {
            c.as_object_mut().unwrap().remove("residual_seconds").expect("a residual_seconds field");
        }
        v
    };
    assert!(certs(&yaml_expiry).as_array().unwrap().len() > 40);
    assert_eq!(certs(&ini_expiry), certs(&yaml_expiry), "expiry through the INI inventory");
    let (yaml_plan, ini_plan) = (via(&f.inventory(), &["rotate-ca", "--dry-run", "-o", "json"]), via(&ini, &["rotate-ca", "--dry-run", "-o", "json"]));
    yaml_plan.status(0);
    ini_plan.status(0);
    assert_eq!(plan_shape(&ini_plan.json()), plan_shape(&yaml_plan.json()), "rotate-ca --dry-run through the INI inventory");
    // A bad line names the file and the line, and nothing is reached.
    let text = std::fs::read_to_string(&ini).unwrap().replace("ansible_user=root", "ansible_user=root\nansible_port=ssh");
    std::fs::write(&ini, text).unwrap();
    via(&ini, &["expiry"]).status(2).stderr_has("inventory.ini:").stderr_has("ansible_port of cp1").stderr_has("not a port");
}

fn main() {
    let scenarios: Vec<(&'static str, Scenario)> = vec![
        ("expiry_matches_openssl_on_every_node", expiry_matches_openssl_on_every_node),
        ("the_table_lists_all_five_nodes", the_table_lists_all_five_nodes),
        ("a_sudo_user_sees_what_root_sees", a_sudo_user_sees_what_root_sees),
        ("check_passes_as_root_and_as_the_sudo_user", check_passes_as_root_and_as_the_sudo_user),
        ("sudo_that_needs_a_password_is_said_plainly", sudo_that_needs_a_password_is_said_plainly),
        ("a_replaced_cert_without_restart_is_served_differs", a_replaced_cert_without_restart_is_served_differs),
        ("a_near_expiry_leaf_exits_3", a_near_expiry_leaf_exits_3),
        ("a_stopped_node_is_reported_and_the_others_still_are", a_stopped_node_is_reported_and_the_others_still_are),
        ("a_changed_host_key_is_refused_with_both_fingerprints", a_changed_host_key_is_refused_with_both_fingerprints),
        ("an_unknown_host_key_needs_accept_new", an_unknown_host_key_needs_accept_new),
        ("a_jump_host_reaches_the_node_behind_it", a_jump_host_reaches_the_node_behind_it),
        ("the_ssh_agent_authenticates_when_no_key_file_is_given", the_ssh_agent_authenticates_when_no_key_file_is_given),
        ("a_rotation_of_the_fleet_is_planned_and_proven", a_rotation_of_the_fleet_is_planned_and_proven),
        ("a_kubespray_inventory_drives_kcert_as_the_yaml_one_does", a_kubespray_inventory_drives_kcert_as_the_yaml_one_does),
        ("renew_dry_run_changes_nothing", renew_dry_run_changes_nothing),
        ("bad_input_is_refused_and_changes_nothing_on_any_node", bad_input_is_refused_and_changes_nothing_on_any_node),
        ("a_failing_gate_restores_the_node_and_stops", a_failing_gate_restores_the_node_and_stops),
        ("renew_everything_with_zero_probe_failures_then_roll_back", renew_everything_with_zero_probe_failures_then_roll_back),
        ("a_renewal_killed_mid_way_resumes_with_nothing_written_twice_then_rolls_back_gated", a_renewal_killed_mid_way_resumes_with_nothing_written_twice_then_rolls_back_gated),
    ];
    harness(scenarios, Some("cp3"));
}
