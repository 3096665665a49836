//! kcert against the k3s flavour of the test fleet (`docker/fleet up --flavour k3s`): three
//! servers with embedded etcd and two agents, laid out as k3s lays its files out
//! (docker/pki/make-k3s-pki.sh). k3s itself is a STAND-IN (docker/node/run-*.sh): real etcd
//! started from the config k3s writes for it, nginx for the apiserver on :6444, for the
//! supervisor on :6443 (serving the certificate kept in dynamic-cert.json) and for the kubelet,
//! and on agents a TCP load balancer on 127.0.0.1:6444 to the servers; `k3s certificate
//! rotate` and systemctl's stop/start of the k3s units are stand-ins too (docker/node/k3s,
//! docker/node/systemctl: a start makes missing or expiring leaves again, agents fetch theirs
//! from a server). Scenarios run in order; the fleet is torn down whatever happened.

mod common;

use std::collections::BTreeSet;

use common::fleet::{
    Fleet, Scenario, assert_etcd_healthy, assert_ports_serve_their_files, assert_same_snapshot, certs_of, harness_flavour, journal_lines, kcert_rows, kill_when, no_failed_handshake,
    openssl_rows, pki_snapshot, probe, sh, spawn, under_probes, verify_live_clean, wait_for,
};

const TLS: &str = "/var/lib/rancher/k3s/server/tls";
/// Where certificates live on a k3s node (server/tls, server/cred, agent/, k3s.yaml).
const CERT_PATHS: &str = "/var/lib/rancher/k3s/server/tls /var/lib/rancher/k3s/server/cred /var/lib/rancher/k3s/agent /etc/rancher/k3s";
const DYNAMIC: &str = "/var/lib/rancher/k3s/server/tls/dynamic-cert.json";

/// `kcert expiry -o json` on the fleet, with the exit code it must have.
fn expiry(f: &Fleet, status: i32) -> serde_json::Value {
    let run = f.kcert(&["expiry", "-o", "json"]).run();
    assert_eq!(run.status, status, "`{}`:\n{}\n{}", run.cmdline, run.stdout, run.stderr);
    let json = run.json();
    assert_eq!(json["errors"].as_array().unwrap().len(), 0, "errors:\n{}", serde_json::to_string_pretty(&json["errors"]).unwrap());
    json
}

/// The serial of the certificate `node` serves on :6443, as openssl sees it there.
fn served_6443(f: &Fleet, node: &str) -> String {
    let c = &f.node(node).container;
    sh(c, "openssl s_client -connect 127.0.0.1:6443 </dev/null 2>/dev/null | openssl x509 -noout -serial").trim().trim_start_matches("serial=").to_lowercase()
}

/// The serial of dynamic-cert.json's tls.crt on `node`, decoded in the container.
fn stored_serial(f: &Fleet, node: &str) -> String {
    let c = &f.node(node).container;
    let script = format!(r#"sed -n 's/.*"tls.crt":"\([^"]*\)".*/\1/p' {DYNAMIC} | base64 -d | openssl x509 -noout -serial"#);
    sh(c, &script).trim().trim_start_matches("serial=").to_lowercase()
}

/// A script writing a new certificate for the supervisor (serial `serial`, from the server CA,
/// for the node's address too, as dynamiclistener's: agents reach :6443 by it) as
/// dynamiclistener keeps it, a TLS Secret as JSON, to `dest`.
fn secret_script(serial: &str, dest: &str) -> String {
    format!(
        r#"set -e; t=$(mktemp -d); cd "$t"
        openssl ecparam -name prime256v1 -genkey -noout -out k
        printf 'extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1,IP:%s\n' "$(hostname -i | awk '{{print $1}}')" > ext
        openssl req -new -key k -subj /O=k3s/CN=k3s | openssl x509 -req -CA {TLS}/server-ca.crt -CAkey {TLS}/server-ca.key -set_serial {serial} -days 200 -extfile ext -out c
        printf '{{"kind":"Secret","apiVersion":"v1","metadata":{{"name":"k3s-serving","namespace":"kube-system"}},"data":{{"tls.crt":"%s","tls.key":"%s"}},"type":"kubernetes.io/tls"}}' "$(base64 -w0 c)" "$(base64 -w0 k)" > {dest}
        chmod 600 {dest}; cd /; rm -rf "$t""#
    )
}

fn expiry_sees_every_certificate_and_what_each_port_serves(f: &Fleet) {
    let json = expiry(f, 0);
    for n in &f.nodes {
        let want = openssl_rows(&n.container, &format!("find -L {CERT_PATHS} -type f 2>/dev/null || true"));
        assert!(!want.is_empty(), "{}: openssl found no certificate", n.name);
        assert_eq!(kcert_rows(&json, &n.name), want, "{}: kcert and openssl in the container disagree", n.name);
        let ports: BTreeSet<String> = if n.control_plane {
            ["2379", "2380", "6443", "6444", "10250"].iter().map(|p| format!("127.0.0.1:{p}")).collect()
        } else {
            BTreeSet::from(["127.0.0.1:10250".to_string()])
        };
        assert_ports_serve_their_files(&json, &n.name, ports);
        if n.control_plane {
            // The supervisor's certificate, from the Secret it is kept in, is what :6443 serves.
            let kept = certs_of(&json, &n.name, "secret");
            assert_eq!(kept.len(), 2, "{}: dynamic-cert.json's tls.crt (the cert, then the server CA)", n.name);
            assert_eq!(kept[0]["serial"].as_str().unwrap(), served_6443(f, &n.name));
        }
    }
    assert_etcd_healthy(f, &format!("{TLS}/etcd/server-ca.crt"), &format!("{TLS}/etcd/client.crt"), &format!("{TLS}/etcd/client.key"));
}

fn verify_live_handshakes_along_every_k3s_edge(f: &Fleet) {
    verify_live_clean(f);
    // Agents' kubeconfigs reach the servers through their load balancer: those edges are live too.
    let run = f.kcert(&["verify", "--live", "-o", "json"]).run();
    run.status(0);
    let json = run.json();
    let live = json["live"].as_array().unwrap();
    for node in ["w1", "w2"] {
        let from: Vec<_> = live.iter().filter(|e| e["from"] == node && e["edge"].as_str().unwrap().starts_with("kubelet.kubeconfig")).collect();
        assert!(!from.is_empty() && from.iter().all(|e| e["ok"] == true), "{node}: {}", run.stdout);
    }
}

fn a_supervisor_serving_a_stale_cert_is_said_until_it_restarts(f: &Fleet) {
    let cp1 = &f.node("cp1").container;
    let before = served_6443(f, "cp1");
    // A new certificate kept (as if the Secret had been renewed), the listener not restarted.
    sh(cp1, &secret_script("0x7e57", DYNAMIC));
    assert_eq!(stored_serial(f, "cp1"), "7e57");
    let json = expiry(f, 3);
    let served: Vec<_> = certs_of(&json, "cp1", "endpoint").into_iter().filter(|c| c["path"] == "127.0.0.1:6443").collect();
    assert_eq!(served.len(), 1);
    assert_eq!(served[0]["status"], "served-differs", "{}", served[0]);
    assert_eq!(served[0]["serial"].as_str().unwrap(), before);
    let table = f.kcert(&["expiry"]).run();
    table.status(3).stdout_has("127.0.0.1:6443 serves serial").stdout_has(&format!("{DYNAMIC} holds serial 7e57"));
    // Restarted, the supervisor serves what is kept: clean again.
    sh(cp1, "supervisorctl restart supervisor >/dev/null");
    wait_for(cp1, "openssl s_client -connect 127.0.0.1:6443 </dev/null 2>/dev/null | openssl x509 -noout -serial | grep -qi 7E57");
    expiry(f, 0);
}

fn a_removed_dynamic_cert_is_made_again_from_the_server_ca_at_start(f: &Fleet) {
    let cp2 = &f.node("cp2").container;
    let before = served_6443(f, "cp2");
    sh(cp2, &format!("rm {DYNAMIC} && supervisorctl restart supervisor >/dev/null"));
    wait_for(cp2, &format!("test -s {DYNAMIC} && openssl s_client -connect 127.0.0.1:6443 </dev/null 2>/dev/null | openssl x509 -noout"));
    let after = served_6443(f, "cp2");
    assert_ne!(after, before, "the stand-in served the old certificate after its file was removed");
    assert_eq!(stored_serial(f, "cp2"), after);
    sh(cp2, &format!("openssl s_client -connect 127.0.0.1:6443 </dev/null 2>/dev/null | openssl x509 > /tmp/s.pem && openssl verify -CAfile {TLS}/server-ca.crt /tmp/s.pem"));
    expiry(f, 0);
}

/// `openssl x509` fields of the certificate `node` serves on `port`, read in the container.
fn served(f: &Fleet, node: &str, port: u16, fields: &str) -> String {
    sh(&f.node(node).container, &format!("openssl s_client -connect 127.0.0.1:{port} </dev/null 2>/dev/null | openssl x509 -noout {fields}")).trim().to_string()
}

/// Whether the certificate `node` serves on `port` is in date for `days` more days.
fn served_for_days(f: &Fleet, node: &str, port: u16, days: u32) -> bool {
    let c = &f.node(node).container;
    let script = format!("openssl s_client -connect 127.0.0.1:{port} </dev/null 2>/dev/null | openssl x509 -noout -checkend {} >/dev/null && echo yes || echo no", days * 86400);
    sh(c, &script).trim() == "yes"
}

/// The seed's pitfall, as a year of k3s leaves it: on cp1 the apiserver's serving cert and the
/// supervisor's kept one expire in 10 days.
fn age_cp1(f: &Fleet) {
    let script = format!(
        r#"set -e; t=$(mktemp -d); cd "$t"; T={TLS}
        ip=$(hostname -i | awk '{{print $1}}')
        printf 'extendedKeyUsage=serverAuth\nsubjectAltName=DNS:kubernetes,DNS:localhost,DNS:%s,IP:127.0.0.1,IP:%s\n' "$(hostname)" "$ip" > ext
        openssl req -new -key $T/serving-kube-apiserver.key -subj /CN=kube-apiserver | openssl x509 -req -CA $T/server-ca.crt -CAkey $T/server-ca.key -set_serial 0x5eed01 -days 10 -extfile ext -out c
        cat c $T/server-ca.crt > $T/serving-kube-apiserver.crt
        openssl ecparam -name prime256v1 -genkey -noout -out k
        openssl req -new -key k -subj /O=k3s/CN=k3s | openssl x509 -req -CA $T/server-ca.crt -CAkey $T/server-ca.key -set_serial 0x5eed02 -days 10 -extfile ext -out d
        cat $T/server-ca.crt >> d
        printf '{{"kind":"Secret","apiVersion":"v1","metadata":{{"name":"k3s-serving","namespace":"kube-system"}},"data":{{"tls.crt":"%s","tls.key":"%s"}},"type":"kubernetes.io/tls"}}' "$(base64 -w0 d)" "$(base64 -w0 k)" > {DYNAMIC}
        chmod 600 {DYNAMIC}; cd /; rm -rf "$t""#
    );
    sh(&f.node("cp1").container, &script);
}

fn the_seed_s_pitfall_a_restart_leaves_6443_stale_and_renew_mends_it(f: &Fleet) {
    age_cp1(f);
    // A plain restart: k3s re-issues the apiserver's cert (within 120 days of expiry), but the
    // supervisor serves what dynamic-cert.json keeps (k3s issues 3144, 8762).
    sh(&f.node("cp1").container, "systemctl restart k3s");
    assert!(served_for_days(f, "cp1", 6444, 300), "k3s's start did not re-issue the apiserver's expiring cert");
    assert_eq!(served(f, "cp1", 6443, "-serial"), "serial=5EED02", "the stale supervisor cert should still be served after a plain restart");
    let json = expiry(f, 3);
    let port: Vec<_> = certs_of(&json, "cp1", "endpoint").into_iter().filter(|c| c["path"] == "127.0.0.1:6443").collect();
    assert_eq!(port[0]["status"], "warning", "{}", port[0]);
    // The plan reads as k3s's runbook.
    let dry = f.kcert(&["renew", "--dry-run"]).run();
    dry.status(0)
        .stdout_has("systemctl stop k3s\n")
        .stdout_has("k3s certificate rotate --service admin")
        .stdout_has("--service k3s-server")
        .stdout_has(&format!("rm -f '{DYNAMIC}'"))
        .stdout_has("systemctl start k3s: k3s makes the 38 files above again")
        .stdout_has("systemctl stop k3s-agent")
        .stdout_has("k3s certificate rotate --service kube-proxy --service kubelet --service k3s-controller")
        .stdout_has("delete secret k3s-serving");
    let before: Vec<String> = ["cp1", "cp2", "cp3"].iter().map(|n| served(f, n, 6443, "-serial")).collect();
    let (run, probes) = under_probes(f, || f.kcert(&["renew", "--yes"]).run());
    run.status(0).stdout_has("cp1    38");
    no_failed_handshake(probes, "during the k3s renewal");
    // Every port serves its file's cert, in date for a year; 6443 a new one on every server.
    let json = expiry(f, 0);
    for n in &f.nodes {
        let ports: BTreeSet<String> =
            if n.control_plane { ["2379", "2380", "6443", "6444", "10250"].iter().map(|p| format!("127.0.0.1:{p}")).collect() } else { BTreeSet::from(["127.0.0.1:10250".to_string()]) };
        assert_ports_serve_their_files(&json, &n.name, ports);
        assert!(served_for_days(f, &n.name, 10250, 300), "{}: kubelet", n.name);
    }
    for (i, n) in ["cp1", "cp2", "cp3"].iter().enumerate() {
        assert_ne!(served(f, n, 6443, "-serial"), before[i], "{n}: :6443 still serves its old certificate");
        assert!(served_for_days(f, n, 6443, 300), "{n}: :6443");
        // k3s's own backup of server/tls, and kcert's of each file (a key's 0600).
        sh(&f.node(n).container, "ls -d /var/lib/rancher/k3s/server/tls-* >/dev/null");
        let mode = sh(&f.node(n).container, "stat -c %a /var/lib/kcert/backups/*/R1/var/lib/rancher/k3s/server/tls/serving-kube-apiserver.key");
        assert_eq!(mode.trim(), "600", "{n}: a key's backup");
    }
    verify_live_clean(f);
}

fn a_renewal_killed_inside_a_server_resumes_then_rolls_back(f: &Fleet) {
    let sd = tempfile::tempdir().unwrap();
    let sdir = sd.path().to_str().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let servers = |f: &Fleet| steady(f).into_iter().filter(|(n, _)| n.starts_with("cp")).collect::<std::collections::BTreeMap<_, _>>();
    let before = servers(f);
    probe(f, "start").unwrap();
    // Killed once cp2's files are backed up: its k3s stopped, the tool maybe run, maybe not.
    let mut child = spawn(f, &["renew", "--yes", "--state-dir", sdir], logs.path(), "renew");
    kill_when(&mut child, sd.path(), 0, "inside cp2's renewal (its files backed up)", |v| v["event"] == "backup" && v["node"] == "cp2");
    let done = f.kcert(&["resume", "--yes", "--state-dir", sdir]).run();
    done.status(0);
    let lines = journal_lines(sd.path());
    let reissued: Vec<_> = lines.iter().filter(|v| v["event"] == "restarted" && v["component"] == "k3s").collect();
    assert_eq!(reissued.len(), 3, "every server renewed once");
    assert_eq!(lines.iter().filter(|v| v["event"] == "written" && v["node"] == "cp2").count(), 38, "cp2's files journaled as made again, once each");
    expiry(f, 0);
    // Rolled back: every server's files as they were (an agent fetches new ones at every start, as k3s's does).
    let rb = f.kcert(&["rollback", "--yes", "--state-dir", sdir]).run();
    let probes = probe(f, "stop");
    rb.status(0).stdout_has("restored");
    no_failed_handshake(probes, "while the renewal was killed, resumed and rolled back");
    assert_same_snapshot("a k3s renewal rolled back", &before, &servers(f));
    verify_live_clean(f);
}

fn a_listener_still_serving_its_old_cert_stops_the_renewal_and_it_rolls_back(f: &Fleet) {
    let cp1 = &f.node("cp1").container;
    // As the seed's k3s did: a new certificate is kept at the start, but :6443's listener does
    // not come back with it (here the stand-in's unit leaves the supervisor running through
    // the stop and start, and its start keeps a new Secret).
    sh(cp1, &secret_script("0x5a1e", "/tmp/fresh-dynamic.json"));
    sh(
        cp1,
        r#"sed -i -e 's/ k3s-certs supervisor kubelet"/ k3s-certs kubelet"/' -e 's|^server_start() {$|server_start() {\n  cp /tmp/fresh-dynamic.json "$tls/dynamic-cert.json"|' /usr/local/bin/systemctl
        grep -q ' k3s-certs kubelet"' /usr/local/bin/systemctl && grep -q fresh-dynamic /usr/local/bin/systemctl"#,
    );
    let before = served(f, "cp1", 6443, "-serial");
    let others = || steady(f).into_iter().filter(|(n, _)| n != "cp1").collect::<std::collections::BTreeMap<_, _>>();
    let untouched = others();
    let sd = tempfile::tempdir().unwrap();
    let sdir = sd.path().to_str().unwrap();
    let run = f.kcert(&["renew", "--yes", "--certs", "k3s-server", "--gate-timeout", "10s", "--on-failure", "pause", "--state-dir", sdir]).run();
    sh(cp1, "cp /opt/kcert-fleet/systemctl /usr/local/bin/systemctl");
    run.status(1);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(said.contains(&format!("127.0.0.1:6443 does not serve the certificate {DYNAMIC} holds after the start")) && said.contains("stale listener"), "{said}");
    assert!(said.contains("serial 5a1e"), "the serial the file holds is named: {said}");
    // The run stopped at cp1: no other node was touched; rolled back, cp1 keeps and serves its old cert.
    assert_same_snapshot("after a renewal stopped at cp1", &untouched, &others());
    f.kcert(&["rollback", "--yes", "--state-dir", sdir]).run().status(0).stdout_has("restored");
    assert_eq!(served(f, "cp1", 6443, "-serial"), before);
    expiry(f, 0);
}

fn a_tool_failing_half_way_leaves_the_node_up_and_its_files_as_they_were(f: &Fleet) {
    let cp1 = &f.node("cp1").container;
    let before = steady(f);
    // The tool deletes the files, then fails.
    sh(cp1, r#"mv /usr/local/bin/k3s /usr/local/bin/k3s.real && printf '#!/bin/sh\n/usr/local/bin/k3s.real "$@"\necho "datastore unreachable" >&2\nexit 1\n' > /usr/local/bin/k3s && chmod +x /usr/local/bin/k3s"#);
    let run = f.kcert(&["renew", "--yes", "--gate-timeout", "20s"]).run();
    sh(cp1, "mv /usr/local/bin/k3s.real /usr/local/bin/k3s");
    run.status(1);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(said.contains("cp1: `k3s certificate rotate --service admin") && said.contains("exit 1: datastore unreachable (k3s was started again)") && said.contains("rolled back"), "{said}");
    // Started again, k3s made what the tool deleted; the rollback put every file back.
    assert_same_snapshot("after the failed renewal's rollback", &before, &steady(f));
    expiry(f, 0);
    verify_live_clean(f);
}

/// The kubelet certificates every node's agent (a server's own too) is given anew at each
/// start (pkg/agent/config), left out of a comparison with the files before.
const REMADE: [&str; 2] = ["/var/lib/rancher/k3s/agent/client-kubelet.crt", "/var/lib/rancher/k3s/agent/serving-kubelet.crt"];

/// `pki_snapshot` without the files in `REMADE`.
fn steady(f: &Fleet) -> std::collections::BTreeMap<String, String> {
    pki_snapshot(f).into_iter().map(|(n, s)| (n, s.lines().filter(|l| !REMADE.iter().any(|r| l.ends_with(r))).collect::<Vec<_>>().join("\n"))).collect()
}

/// The hash a join token pins for `node`'s server CA bundle, as k3s computes it (the stand-in's
/// own hashCA, docker/pki/k3s-bootstrap.sh).
fn ca_hash_on(f: &Fleet, node: &str, bundle: &str) -> String {
    sh(&f.node(node).container, &format!("bash -c '. /opt/kcert-fleet/pki/k3s-bootstrap.sh; k3s_ca_hash {bundle}'")).trim().to_string()
}

/// The CA hash pinned by the join token in `node`'s unit environment, if any.
fn pinned(f: &Fleet, node: &str) -> Option<String> {
    let env = sh(&f.node(node).container, "cat /etc/systemd/system/k3s*.service.env");
    env.lines().find_map(|l| l.strip_prefix("K3S_TOKEN='K10")).map(|t| t.split("::").next().unwrap().to_string())
}

/// Last of the scenarios (the longest, and a failure in it cannot leave a run unfinished for another).
fn rotate_ca_killed_resumed_under_probes_then_rolled_back(f: &Fleet) {
    let sd = tempfile::tempdir().unwrap();
    let sdir = sd.path().to_str().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let before = steady(f);
    let old_hash = ca_hash_on(f, "cp1", &format!("{TLS}/server-ca.crt"));
    let joined = ["cp2", "cp3", "w1", "w2"];
    for n in joined {
        assert_eq!(pinned(f, n).as_deref(), Some(old_hash.as_str()), "{n} joined with a secure token");
    }
    // The dry run reads as k3s's runbook.
    let plan = f.kcert(&["rotate-ca", "--dry-run"]).run();
    plan.status(0).stdout_has("k3s certificate rotate-ca --path /var/lib/rancher/k3s/server/kcert-rotate-ca/").stdout_has("~ /etc/systemd/system/k3s-agent.service.env").stdout_has("S5 the old roots let go");
    probe(f, "start").unwrap();
    // Killed inside S4 once cp2's files are backed up (cp1 already on the new CAs).
    let mut child = spawn(f, &["rotate-ca", "--yes", "--state-dir", sdir], logs.path(), "rotate-ca");
    kill_when(&mut child, sd.path(), 0, "inside cp2's restart onto the new CAs (its files backed up)", |v| v["event"] == "backup" && v["node"] == "cp2");
    let done = f.kcert(&["resume", "--yes", "--state-dir", sdir]).run();
    done.status(0);
    let probes = probe(f, "stop");
    no_failed_handshake(probes, "while the CAs were rotated, killed and resumed");
    let lines = journal_lines(sd.path());
    let handed: Vec<_> = lines.iter().filter(|v| v["event"] == "api" && v["ok"] == true && v["name"].as_str().unwrap().starts_with("k3s certificate rotate-ca")).collect();
    assert_eq!(handed.len(), 2, "the new set handed over once, the pruned set once: {handed:?}");
    // Every leaf on every node chains to the new roots, and only to them.
    for n in ["cp1", "cp2", "cp3"] {
        let c = &f.node(n).container;
        for (leaf, ca) in [("serving-kube-apiserver", "server-ca"), ("client-admin", "client-ca"), ("etcd/server-client", "etcd/server-ca"), ("etcd/peer-server-client", "etcd/peer-ca"), ("client-auth-proxy", "request-header-ca")] {
            sh(c, &format!("test $(grep -c BEGIN {TLS}/{ca}.crt) = 2 && openssl verify -CAfile {TLS}/{ca}.crt {TLS}/{leaf}.crt"));
            let old = std::fs::read_to_string(f.state.join(format!("pki/{n}{TLS}/{ca}.crt"))).unwrap();
            assert!(!sh(c, &format!("cat {TLS}/{ca}.crt")).contains(old.lines().nth(1).unwrap()), "{n}: {ca}.crt still holds the old root");
        }
    }
    for n in ["cp1", "cp2", "cp3", "w1", "w2"] {
        sh(&f.node(n).container, "a=/var/lib/rancher/k3s/agent; test $(grep -c BEGIN $a/server-ca.crt) = 2 && openssl verify -CAfile $a/server-ca.crt $a/serving-kubelet.crt && openssl verify -CAfile $a/client-ca.crt $a/client-kubelet.crt");
    }
    // Every secure token follows the new CA's hash, as k3s computes it for what it hands out.
    let new_hash = ca_hash_on(f, "cp1", &format!("{TLS}/server-ca.crt"));
    assert_ne!(new_hash, old_hash);
    for n in joined {
        assert_eq!(pinned(f, n).as_deref(), Some(new_hash.as_str()), "{n}: its token");
    }
    assert!(sh(&f.node("cp1").container, "cat /var/lib/rancher/k3s/server/token").starts_with(&format!("K10{new_hash}::")));
    expiry(f, 0);
    verify_live_clean(f);

    // Rolled back through the datastore: the old CAs, the old tokens, every file as it was.
    probe(f, "start").unwrap();
    let rb = f.kcert(&["rollback", "--yes", "--state-dir", sdir]).run();
    let probes = probe(f, "stop");
    rb.status(0).stdout_has("restored");
    no_failed_handshake(probes, "while the rotation was rolled back");
    // Every server byte for byte; an agent fetches all its certificates and keys again at each
    // start (pkg/agent/config), so its CAs and token are compared, and its certificates must
    // chain to the old CAs.
    let after = steady(f);
    let agent_kept = |s: &str| s.lines().filter(|l| [".service.env", "/agent/client-ca.crt", "/agent/server-ca.crt"].iter().any(|e| l.ends_with(e))).collect::<Vec<_>>().join("\n");
    for (n, sums) in &before {
        if n.starts_with("cp") {
            assert_eq!(sums, &after[n], "a k3s CA rotation rolled back: files on {n} differ");
        } else {
            assert_eq!(agent_kept(sums), agent_kept(&after[n]), "a k3s CA rotation rolled back: {n}'s CAs or token differ");
            sh(&f.node(n).container, "a=/var/lib/rancher/k3s/agent; openssl verify -CAfile $a/server-ca.crt $a/serving-kubelet.crt && openssl verify -CAfile $a/client-ca.crt $a/client-kubelet.crt $a/client-kube-proxy.crt");
        }
    }
    for n in joined {
        assert_eq!(pinned(f, n).as_deref(), Some(old_hash.as_str()), "{n}: its token after the rollback");
    }
    verify_live_clean(f);
}

fn main() {
    let scenarios: Vec<(&'static str, Scenario)> = vec![
        ("expiry_sees_every_certificate_and_what_each_port_serves", expiry_sees_every_certificate_and_what_each_port_serves),
        ("verify_live_handshakes_along_every_k3s_edge", verify_live_handshakes_along_every_k3s_edge),
        ("a_supervisor_serving_a_stale_cert_is_said_until_it_restarts", a_supervisor_serving_a_stale_cert_is_said_until_it_restarts),
        ("a_removed_dynamic_cert_is_made_again_from_the_server_ca_at_start", a_removed_dynamic_cert_is_made_again_from_the_server_ca_at_start),
        ("the_seed_s_pitfall_a_restart_leaves_6443_stale_and_renew_mends_it", the_seed_s_pitfall_a_restart_leaves_6443_stale_and_renew_mends_it),
        ("a_renewal_killed_inside_a_server_resumes_then_rolls_back", a_renewal_killed_inside_a_server_resumes_then_rolls_back),
        ("a_listener_still_serving_its_old_cert_stops_the_renewal_and_it_rolls_back", a_listener_still_serving_its_old_cert_stops_the_renewal_and_it_rolls_back),
        ("a_tool_failing_half_way_leaves_the_node_up_and_its_files_as_they_were", a_tool_failing_half_way_leaves_the_node_up_and_its_files_as_they_were),
        ("rotate_ca_killed_resumed_under_probes_then_rolled_back", rotate_ca_killed_resumed_under_probes_then_rolled_back),
    ];
    harness_flavour(scenarios, "k3s", None);
}
