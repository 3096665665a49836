//! kcert against certificate sets from public clusters, read in place under ../shared.
//! Every certificate openssl finds in a set must be reported by `kcert expiry -o json` with
//! the subject, serial and expiry openssl gives, and nothing else.

mod common;

use common::{Test, assert_same, expected_in, real_world, reported, walk};

fn errors(json: &serde_json::Value) -> Vec<String> {
    json["errors"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap_or("").to_string()).collect()
}

fn sets() -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(real_world()).unwrap().flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    v.sort();
    assert!(v.len() >= 18, "expected the 18 real-world sets, found {}", v.len());
    v
}

/// Errors a set must produce (everything else must be clean), by set name.
fn expected_errors(set: &str, whole_tree: bool) -> Vec<&'static str> {
    match (set, whole_tree) {
        // kubelet.conf points at the rotating client cert, which these copies do not include.
        ("kubeadm-zetaoss-zeta-linux" | "kubeadm-Eddicson-testdevops", _) => vec!["/var/lib/kubelet/pki/kubelet-client-current.pem"],
        // A placeholder text file named ca.pem: rejected cleanly, by name.
        ("k8s-testdata-kubernetes-client-go", true) => vec!["/rest/testdata/ca.pem"],
        // carlos.kubeconfig points its CA at a key file that is not in the repository.
        ("rke2-cachac-kubelabsAdmin", true) => vec!["/repo-root/server-ca.key"],
        _ => vec![],
    }
}

#[test]
fn distribution_layouts_are_discovered_without_help() {
    let mut checked = 0;
    for set in sets() {
        let name = set.file_name().unwrap().to_string_lossy().into_owned();
        let scopes: Vec<&str> = ["/etc/kubernetes", "/var/lib/rancher", "/etc/rancher"].into_iter().filter(|s| set.join(&s[1..]).exists()).collect();
        if scopes.is_empty() {
            continue;
        }
        let run = Test::new().args(["expiry", "--local", "--root"]).args([&set]).args(["-o", "json"]).run();
        let json = run.json();
        assert_same(&name, &reported(&json), &expected_in(&set, &scopes));
        assert_eq!(errors(&json), expected_errors(&name, false), "{name}: errors\n{}", run.stdout);
        checked += 1;
    }
    assert_eq!(checked, 9, "kubeadm, k3s and rke2 sets checked");
}

#[test]
fn every_certificate_of_every_set_is_found_by_scanning() {
    let mut total = 0;
    for set in sets() {
        let name = set.file_name().unwrap().to_string_lossy().into_owned();
        let run = Test::new().args(["expiry", "--local", "--root"]).args([&set]).args(["--path", "/", "-o", "json"]).run();
        let json = run.json();
        let want = expected_in(&set, &["/"]);
        assert_same(&name, &reported(&json), &want);
        assert_eq!(errors(&json), expected_errors(&name, true), "{name}: errors\n{}", run.stdout);
        total += want.values().map(Vec::len).sum::<usize>();
    }
    // INDEX.md counts 211 certificates across the sets.
    assert_eq!(total, 211);
}

#[test]
fn expired_sets_exit_3_and_name_what_expired() {
    let set = real_world().join("kubeadm-MaxxMoney-kubeadm_etc_kubernetes");
    Test::new()
        .args(["expiry", "--local", "--root"])
        .args([&set])
        .run()
        .status(3)
        .stdout_has("CERTIFICATE AUTHORITY")
        .stdout_has("apiserver-etcd-client")
        .stdout_has("expired");
}

#[test]
fn a_file_with_the_same_subject_as_another_ca_is_attributed_by_signature() {
    // The v1.8 front-proxy CA is also called CN=kubernetes.
    let set = real_world().join("kubeadm-legacy-rongfengliang-k8sconfig");
    let run = Test::new().args(["expiry", "--local", "--root"]).args([&set]).run();
    let line = run.stdout.lines().find(|l| l.contains("/etc/kubernetes/pki/front-proxy-client.crt")).expect("front-proxy-client listed");
    assert!(line.contains("front-proxy-ca"), "{line}");
}

#[test]
fn no_private_key_material_in_any_output_format() {
    let set = real_world().join("kubeadm-zetaoss-zeta-linux");
    let mut key_lines = Vec::new();
    for (file, _) in walk(&set, &set) {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let mut in_key = false;
        for l in text.lines() {
            if l.contains("PRIVATE KEY-----") {
                in_key = l.contains("BEGIN");
                continue;
            }
            if in_key && l.len() >= 40 {
                key_lines.push(l.to_string());
            }
            // Kubeconfigs carry keys as one base64 value.
            if let Some(v) = l.trim().strip_prefix("client-key-data:") {
                key_lines.push(v.trim().to_string());
            }
        }
    }
    assert!(key_lines.len() > 20, "the fixture holds keys to look for");
    for format in ["table", "json", "yaml", "prom"] {
        let run = Test::new().args(["expiry", "--local", "--root"]).args([&set]).args(["--path", "/", "-o", format]).run();
        run.status(3);
        assert!(!run.stdout.contains("PRIVATE KEY") && !run.stderr.contains("PRIVATE KEY"), "{format}");
        for k in &key_lines {
            let probe = &k[..40.min(k.len())];
            assert!(!run.stdout.contains(probe) && !run.stderr.contains(probe), "{format} output holds key bytes");
        }
    }
}

#[test]
fn prometheus_output_uses_the_exporter_metric_names() {
    let set = real_world().join("kubeadm-sijong09-k8s");
    let run = Test::new().args(["expiry", "--local", "--root"]).args([&set]).args(["-o", "prom"]).run();
    run.status(3);
    for m in ["# TYPE x509_cert_not_after gauge", "# TYPE x509_cert_not_before gauge", "# TYPE x509_cert_expired gauge"] {
        run.stdout_has(m);
    }
    let line = run.stdout.lines().find(|l| l.starts_with("x509_cert_expired{") && l.contains("filepath=\"/etc/kubernetes/pki/apiserver.crt\"")).expect("apiserver row");
    for label in ["embedded_kind=\"\"", "subject_CN=\"kube-apiserver\"", "issuer_CN=\"kubernetes\"", "node=\"local\"", "serial_number=\""] {
        assert!(line.contains(label), "{label} in {line}");
    }
    assert!(line.ends_with(" 1"), "expired in 2020: {line}");
    assert!(run.stdout.contains("embedded_kind=\"user\",embedded_key=\"client-certificate-data\""), "kubeconfig rows carry embedded labels");
}

#[test]
fn yaml_output_carries_the_json_fields() {
    let set = real_world().join("k3s-Towak4153-K3s-kluster");
    let run = Test::new().args(["expiry", "--local", "--root"]).args([&set]).args(["-o", "yaml"]).run();
    for k in ["certificates:", "source: kubeconfig", "embedded_key: users[default].client-certificate-data", "residual_seconds:", "not_after: \"20", "errors: []"] {
        run.stdout_has(k);
    }
}

#[test]
fn hard_way_directories_are_read_through_path() {
    let set = real_world().join("hardway-weibeld-kubernetes-the-hard-way-files");
    // The directory tree is not a known distribution: nothing without --path...
    let json = Test::new().args(["expiry", "--local", "--root"]).args([&set]).args(["-o", "json"]).run().json();
    assert_eq!(json["certificates"].as_array().unwrap().len(), 0);
    // ...and every certificate with it; kubeconfig copies are tied to the CA by signature.
    let run = Test::new().args(["expiry", "--local", "--root"]).args([&set]).args(["--path", "/", "-o", "json"]).run();
    let json = run.json();
    assert_eq!(json["certificates"].as_array().unwrap().len(), 24);
    let run = Test::new().args(["expiry", "--local", "--root"]).args([&set]).args(["--path", "/"]).run();
    let line = run.stdout.lines().find(|l| l.contains("/kubernetes.pem")).unwrap();
    assert!(line.contains("ca.pem") && line.contains("expired"), "{line}");
}
