//! kcert against the k3s flavour of the test fleet (`docker/fleet up --flavour k3s`): three
//! servers with embedded etcd and two agents, laid out as k3s lays its files out
//! (docker/pki/make-k3s-pki.sh). k3s itself is a STAND-IN (docker/node/run-*.sh): real etcd
//! started from the config k3s writes for it, nginx for the apiserver on :6444, for the
//! supervisor on :6443 (serving the certificate kept in dynamic-cert.json) and for the kubelet,
//! and on agents a TCP load balancer on 127.0.0.1:6444 to the server they joined. Scenarios run
//! in order, each leaving the fleet as it found it; the fleet is torn down whatever happened.

mod common;

use std::collections::BTreeSet;

use common::fleet::{
    Fleet, Scenario, assert_etcd_healthy, assert_ports_serve_their_files, assert_same_snapshot, certs_of, harness_flavour, kcert_rows, openssl_rows, pki_snapshot, sh,
    verify_live_clean, wait_for,
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
    sh(
        cp1,
        &format!(
            r#"t=$(mktemp -d); cd "$t"
        openssl ecparam -name prime256v1 -genkey -noout -out k
        printf 'extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n' > ext
        openssl req -new -key k -subj /O=k3s/CN=k3s | openssl x509 -req -CA {TLS}/server-ca.crt -CAkey {TLS}/server-ca.key -set_serial 0x7e57 -days 200 -extfile ext -out c
        printf '{{"kind":"Secret","apiVersion":"v1","metadata":{{"name":"k3s-serving","namespace":"kube-system"}},"data":{{"tls.crt":"%s","tls.key":"%s"}},"type":"kubernetes.io/tls"}}' "$(base64 -w0 c)" "$(base64 -w0 k)" > {DYNAMIC}
        rm -rf "$t""#
        ),
    );
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

fn renew_and_rotate_ca_refuse_on_k3s_and_change_nothing(f: &Fleet) {
    let before = pki_snapshot(f);
    let run = f.kcert(&["renew", "--yes"]).run();
    run.status(2);
    assert!(run.stderr.contains("distribution k3s") && run.stderr.contains("k3s certificate rotate"), "{}", run.stderr);
    f.kcert(&["rotate-ca", "--yes"]).run().status(2);
    assert_same_snapshot("after a refused renew and rotate-ca", &before, &pki_snapshot(f));
}

fn main() {
    let scenarios: Vec<(&'static str, Scenario)> = vec![
        ("expiry_sees_every_certificate_and_what_each_port_serves", expiry_sees_every_certificate_and_what_each_port_serves),
        ("verify_live_handshakes_along_every_k3s_edge", verify_live_handshakes_along_every_k3s_edge),
        ("a_supervisor_serving_a_stale_cert_is_said_until_it_restarts", a_supervisor_serving_a_stale_cert_is_said_until_it_restarts),
        ("a_removed_dynamic_cert_is_made_again_from_the_server_ca_at_start", a_removed_dynamic_cert_is_made_again_from_the_server_ca_at_start),
        ("renew_and_rotate_ca_refuse_on_k3s_and_change_nothing", renew_and_rotate_ca_refuse_on_k3s_and_change_nothing),
    ];
    harness_flavour(scenarios, "k3s", None);
}
