//! RKE2 as kcert reads and plans it, offline: an RKE2 cluster's files as RKE2 lays them out
//! (`PRODUCT=rke2 docker/pki/make-k3s-pki.sh`, made with openssl, never with kcert), and the
//! real-world RKE2 set. RKE2 runs k3s's code (`playbooks/rke2.yaml`; tests/k3s.rs covers what
//! they share), so what is checked here is where RKE2 differs: its paths and names, its ports
//! (the apiserver itself on :6443, the supervisor on :9345), its units, its commands, and the
//! join token in config.yaml.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Test, assert_same, expected_in, pem_certs, rancher_tree, real_world, reported, snapshot, staged};
use kcert::pki::k3s::{self, JoinToken};

const TLS: &str = "var/lib/rancher/rke2/server/tls";

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn subject(dir: &Path, pem: &str) -> String {
    let f = dir.join("subject.pem");
    std::fs::write(&f, pem).unwrap();
    let out = Command::new("openssl").args(["x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in"]).arg(&f).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn an_rke2_tree_is_read_whole_under_rke2_s_names_and_ports() {
    let tmp = tempfile::tempdir().unwrap();
    rancher_tree(tmp.path(), "rke2");
    for node in ["s1", "s2", "a1"] {
        let root = tmp.path().join(node);
        let run = Test::new().args(["expiry", "--local", "--root"]).args([&root]).args(["-o", "json"]).run();
        run.status(0);
        let json = run.json();
        assert_same(node, &reported(&json), &expected_in(&root, &["/var/lib/rancher", "/etc/rancher"]));
        assert!(json["errors"].as_array().unwrap().is_empty(), "{node}: {}", run.stdout);
        assert!(!run.stdout.contains("/k3s"), "{node}: a k3s path read on an RKE2 node: {}", run.stdout);
        if node != "a1" {
            // The supervisor's certificate (on :9345), from dynamic-cert.json's tls.crt.
            let served = json["certificates"].as_array().unwrap().iter().find(|c| c["source"] == "secret").expect("dynamic-cert.json read");
            assert_eq!(served["subject"], "O=rke2, CN=rke2");
        }
    }
    // Every trust edge, rke2.yaml and the agent's kubeconfigs reaching the apiserver itself.
    let s2 = tmp.path().join("s2");
    Test::new()
        .args(["verify", "--local", "--root"])
        .args([&s2])
        .run()
        .status(0)
        .stdout_has("local:/etc/rancher/rke2/rke2.yaml")
        .stdout_has("local:/var/lib/rancher/rke2/agent/rke2controller.kubeconfig")
        .stdout_has("14 edges checked, 0 broken.");
    // A joining node's token is in config.yaml and pins the server CA's hash.
    let hash = k3s::ca_hash(&std::fs::read(s2.join(TLS).join("server-ca.crt")).unwrap(), now()).unwrap();
    for node in ["s2", "a1"] {
        let text = std::fs::read_to_string(tmp.path().join(node).join("etc/rancher/rke2/config.yaml")).unwrap();
        let token = text.lines().find_map(|l| l.strip_prefix("token: ")).unwrap();
        assert_eq!(JoinToken::parse(token).unwrap().ca_hash.as_deref(), Some(hash.as_str()), "{node}");
    }
}

#[test]
fn renew_on_rke2_is_rke2_s_own_procedure_on_its_units_and_ports() {
    let tmp = tempfile::tempdir().unwrap();
    rancher_tree(tmp.path(), "rke2");
    let s2 = tmp.path().join("s2");
    let before = snapshot(&s2);
    let run = Test::new().args(["renew", "--local", "--root"]).args([&s2]).args(["--dry-run"]).run();
    run.status(0)
        .stdout_has("kubectl --kubeconfig '/etc/rancher/rke2/rke2.yaml' -n kube-system delete secret rke2-serving --ignore-not-found")
        .stdout_has("stop    systemctl stop rke2-server (skipped: offline)")
        .stdout_has("backup  /var/lib/rancher/rke2/server/tls/client-rke2-controller.crt")
        .stdout_has("rke2 certificate rotate --service admin --service api-server")
        .stdout_has("--service rke2-server --service kube-proxy --service kubelet --service rke2-controller (skipped: offline)")
        .stdout_has("run     rm -f '/var/lib/rancher/rke2/server/tls/dynamic-cert.json'")
        .stdout_has("127.0.0.1:6443 serves what /var/lib/rancher/rke2/server/tls/serving-kube-apiserver.crt then holds")
        .stdout_has("127.0.0.1:9345 serves what /var/lib/rancher/rke2/server/tls/dynamic-cert.json then holds");
    assert!(!run.stdout.contains("k3s"), "{}", run.stdout);
    // An agent: its own unit, only its own services.
    Test::new()
        .args(["renew", "--local", "--root"])
        .args([tmp.path().join("a1")])
        .args(["--dry-run"])
        .run()
        .status(0)
        .stdout_has("stop    systemctl stop rke2-agent (skipped: offline)")
        .stdout_has("rke2 certificate rotate --service kube-proxy --service kubelet --service rke2-controller (skipped: offline)");
    // rke2 makes the files at its start: on files alone it is refused, nothing changed.
    Test::new().args(["renew", "--local", "--root"]).args([&s2]).args(["--yes"]).run().status(2).stderr_has("files alone (--root) cannot be changed this way");
    assert_eq!(snapshot(&s2), before, "a refused renewal changed a file");
    // The real-world set holds only CAs: nothing rke2 re-issues.
    Test::new().args(["renew", "--local", "--root"]).args([real_world().join("rke2-cachac-kubelabsAdmin")]).args(["--dry-run"]).run().status(0).stdout_has("nothing to renew");
}

#[test]
fn rotate_ca_on_rke2_stages_rke2_s_set_and_follows_the_token_in_config_yaml() {
    let tmp = tempfile::tempdir().unwrap();
    rancher_tree(tmp.path(), "rke2");
    let s2 = tmp.path().join("s2");
    let before = snapshot(&s2);
    let run = Test::new().args(["rotate-ca", "--local", "--root"]).args([&s2]).args(["--dry-run"]).run();
    run.status(0)
        .stdout_has("/var/lib/rancher/rke2/server/kcert-rotate-ca/")
        .stdout_has("rke2 certificate rotate-ca --path /var/lib/rancher/rke2/server/kcert-rotate-ca/")
        .stdout_has("rollback: rke2 certificate rotate-ca --path='/var/lib/rancher/rke2/server/kcert-rotate-ca/")
        .stdout_has("delete the kube-system/rke2-serving secret")
        .stdout_has("~ /etc/rancher/rke2/config.yaml")
        .stdout_has("holds a join token's secret: never shown")
        .stdout_has("stop    systemctl stop rke2-server (skipped: offline)")
        .stdout_has("127.0.0.1:9345 serves what /var/lib/rancher/rke2/server/tls/dynamic-cert.json then holds");
    assert!(!run.stdout.contains("k3s"), "{}", run.stdout);

    let json = Test::new().args(["rotate-ca", "--local", "--root"]).args([&s2]).args(["--dry-run", "-o", "json"]).run();
    json.status(0);
    let config = std::fs::read_to_string(s2.join("etc/rancher/rke2/config.yaml")).unwrap();
    let secret = config.lines().find_map(|l| l.strip_prefix("token: ")).unwrap().rsplit(':').next().unwrap().to_string();
    assert!(!json.stdout.contains(&secret) && !json.stdout.contains("PRIVATE KEY-----"), "a secret in the plan");
    let plan = json.json();
    // rke2's names on the new CAs (rotate-default-ca-certs.sh with PRODUCT=rke2), the old root last.
    let bundle = staged(&plan, "S1", "/tls/server-ca.crt");
    let certs = pem_certs(&bundle);
    assert_eq!(certs.len(), 4, "intermediate, root, cross-signed root, old root");
    assert!(subject(tmp.path(), &certs[0]).contains("CN=rke2-server-ca@"), "{}", certs[0]);
    assert_eq!(certs[3].trim(), std::fs::read_to_string(s2.join(TLS).join("server-ca.crt")).unwrap().trim());
    // config.yaml's token follows the new server CA's hash.
    let tokens: Vec<&serde_json::Value> = plan["stages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["steps"].as_array().unwrap())
        .flat_map(|st| st["ops"].as_array().into_iter().flatten())
        .flat_map(|o| o["files"].as_array().unwrap())
        .filter(|f| f["recipe"]["kind"] == "join-token")
        .collect();
    assert_eq!(tokens.len(), 1, "{}", json.stdout);
    assert_eq!(tokens[0]["path"], "/etc/rancher/rke2/config.yaml");
    assert_eq!(tokens[0]["recipe"]["from"], k3s::ca_hash(&std::fs::read(s2.join(TLS).join("server-ca.crt")).unwrap(), now()).unwrap().as_str());
    assert_eq!(tokens[0]["recipe"]["to"], k3s::ca_hash(bundle.as_bytes(), now()).unwrap().as_str());
    assert_eq!(snapshot(&s2), before, "a dry run changed a file");

    // The real-world set: only the server CA has its key there; every other type is refused by name.
    let rw = real_world().join("rke2-cachac-kubelabsAdmin");
    Test::new().args(["rotate-ca", "--local", "--root"]).args([&rw]).args(["--dry-run"]).run().status(2).stderr_has("/var/lib/rancher/rke2/server/tls/client-ca.key is not there");
    Test::new()
        .args(["rotate-ca", "--local", "--root"])
        .args([&rw])
        .args(["--dry-run", "--ca", "server"])
        .run()
        .status(0)
        .stdout_has("rke2 certificate rotate-ca --path /var/lib/rancher/rke2/server/kcert-rotate-ca/");
}
