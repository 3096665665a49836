//! Binary ("hard way") clusters offline (`--root`): the two real-world cfssl sets, laid into
//! a node tree the way Kubernetes the Hard Way installs them (controller and worker on one
//! node), with systemd units, an environment file and component configs this test writes.
//! kcert finds everything from the units alone (no --path, no --distribution); openssl
//! judges every renewal and rotation; rollback restores every byte.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{OpensslFacts, Test, kubeconfig_certs, openssl_facts, pem_certs, walk};

const SETS: &[&str] = &["hardway-vanduc95-kubernetes-the-hard-way", "hardway-weibeld-kubernetes-the-hard-way-files"];

/// A laid-out node tree and a state dir.
struct Node {
    _dir: tempfile::TempDir,
    root: PathBuf,
    state: PathBuf,
}

/// How the service-account flags are set: the guides' own key pair, or the CA key itself.
#[derive(Clone, Copy, PartialEq)]
enum Sa {
    OwnKey,
    CaKey,
}

fn put(root: &Path, rel: &str, bytes: &[u8], mode: u32) {
    let p = root.join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// KTHW's layout: /var/lib/kubernetes (CA, kubernetes.pem, service account, component
/// kubeconfigs), /etc/etcd (CA copy and kubernetes.pem again), /var/lib/kubelet (worker-0),
/// /var/lib/kube-proxy, /root/admin.kubeconfig. The controller-manager's flags sit in an
/// environment file, the apiserver's port in a drop-in, etcd's client URLs in ETCD_*.
fn lay(set: &str, sa: Sa) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let src = common::real_world().join(set);
    let from = |f: &str| std::fs::read(src.join(f)).unwrap_or_else(|e| panic!("{set}/{f}: {e}"));
    let lib = "/var/lib/kubernetes";
    for f in ["ca.pem", "kubernetes.pem", "service-account.pem", "kube-controller-manager.kubeconfig", "kube-scheduler.kubeconfig"] {
        put(&root, &format!("{lib}/{f}"), &from(f), 0o644);
    }
    for f in ["ca-key.pem", "kubernetes-key.pem", "service-account-key.pem"] {
        put(&root, &format!("{lib}/{f}"), &from(f), 0o600);
    }
    put(&root, "/etc/etcd/ca.pem", &from("ca.pem"), 0o644);
    put(&root, "/etc/etcd/kubernetes.pem", &from("kubernetes.pem"), 0o644);
    put(&root, "/etc/etcd/kubernetes-key.pem", &from("kubernetes-key.pem"), 0o600);
    put(&root, "/var/lib/kubelet/worker-0.pem", &from("worker-0.pem"), 0o644);
    put(&root, "/var/lib/kubelet/worker-0-key.pem", &from("worker-0-key.pem"), 0o600);
    put(&root, "/var/lib/kubelet/kubeconfig", &from("worker-0.kubeconfig"), 0o600);
    put(&root, "/var/lib/kube-proxy/kubeconfig", &from("kube-proxy.kubeconfig"), 0o600);
    put(&root, "/root/admin.kubeconfig", &from("admin.kubeconfig"), 0o600);
    let (sa_pub, sa_key) = match sa {
        Sa::OwnKey => (format!("{lib}/service-account.pem"), format!("{lib}/service-account-key.pem")),
        Sa::CaKey => (format!("{lib}/ca-key.pem"), format!("{lib}/ca-key.pem")),
    };
    let units = "/etc/systemd/system";
    put(&root, &format!("{units}/etcd.service"), b"[Unit]\nDescription=etcd\n\n[Service]\nEnvironmentFile=-/etc/etcd/etcd.conf\nExecStart=/usr/local/bin/etcd \\\n  --name controller-0 \\\n  --cert-file=/etc/etcd/kubernetes.pem \\\n  --key-file=/etc/etcd/kubernetes-key.pem \\\n  --peer-cert-file=/etc/etcd/kubernetes.pem \\\n  --peer-key-file=/etc/etcd/kubernetes-key.pem \\\n  --trusted-ca-file=/etc/etcd/ca.pem \\\n  --peer-trusted-ca-file=/etc/etcd/ca.pem \\\n  --peer-client-cert-auth \\\n  --client-cert-auth \\\n  --data-dir=/var/lib/etcd\nRestart=on-failure\n", 0o644);
    put(&root, "/etc/etcd/etcd.conf", b"# etcd reads these itself\nETCD_LISTEN_CLIENT_URLS=\"https://10.240.0.10:2379,https://127.0.0.1:2379\"\nETCD_LISTEN_PEER_URLS=https://10.240.0.10:2380\n", 0o644);
    let apiserver = format!(
        "[Service]\nExecStart=/usr/local/bin/kube-apiserver \\\n  --advertise-address=10.240.0.10 \\\n  --secure-port=${{PORT}} \\\n  --client-ca-file={lib}/ca.pem \\\n  --etcd-cafile={lib}/ca.pem \\\n  --etcd-certfile={lib}/kubernetes.pem \\\n  --etcd-keyfile={lib}/kubernetes-key.pem \\\n  --etcd-servers=https://10.240.0.10:2379 \\\n  --kubelet-certificate-authority={lib}/ca.pem \\\n  --kubelet-client-certificate={lib}/kubernetes.pem \\\n  --kubelet-client-key={lib}/kubernetes-key.pem \\\n  --service-account-key-file={sa_pub} \\\n  --tls-cert-file={lib}/kubernetes.pem \\\n  --tls-private-key-file={lib}/kubernetes-key.pem \\\n  --v=2\nRestart=on-failure\n"
    );
    put(&root, &format!("{units}/kube-apiserver.service"), apiserver.as_bytes(), 0o644);
    put(&root, &format!("{units}/kube-apiserver.service.d/10-port.conf"), b"[Service]\nEnvironment=\"PORT=6443\"\n", 0o644);
    put(&root, &format!("{units}/kube-controller-manager.service"), b"[Service]\nEnvironmentFile=-/opt/kubernetes/cfg/kube-controller-manager.conf\nExecStart=/usr/local/bin/kube-controller-manager $KUBE_CONTROLLER_MANAGER_OPTS\n", 0o644);
    let kcm = format!(
        "KUBE_CONTROLLER_MANAGER_OPTS=\"--address=0.0.0.0 \\\n  --cluster-signing-cert-file={lib}/ca.pem \\\n  --cluster-signing-key-file={lib}/ca-key.pem \\\n  --kubeconfig={lib}/kube-controller-manager.kubeconfig \\\n  --root-ca-file={lib}/ca.pem \\\n  --service-account-private-key-file={sa_key}\"\n"
    );
    put(&root, "/opt/kubernetes/cfg/kube-controller-manager.conf", kcm.as_bytes(), 0o644);
    put(&root, &format!("{units}/kube-scheduler.service"), b"[Service]\nExecStart=/usr/local/bin/kube-scheduler --config=/etc/kubernetes/config/kube-scheduler.yaml --v=2\n", 0o644);
    put(&root, "/etc/kubernetes/config/kube-scheduler.yaml", format!("apiVersion: kubescheduler.config.k8s.io/v1alpha1\nkind: KubeSchedulerConfiguration\nclientConnection:\n  kubeconfig: \"{lib}/kube-scheduler.kubeconfig\"\n").as_bytes(), 0o644);
    put(&root, &format!("{units}/kubelet.service"), b"[Service]\nExecStart=/usr/local/bin/kubelet \\\n  --config=/var/lib/kubelet/kubelet-config.yaml \\\n  --kubeconfig=/var/lib/kubelet/kubeconfig \\\n  --register-node=true\n", 0o644);
    put(&root, "/var/lib/kubelet/kubelet-config.yaml", b"kind: KubeletConfiguration\napiVersion: kubelet.config.k8s.io/v1beta1\nauthentication:\n  anonymous:\n    enabled: false\n  x509:\n    clientCAFile: \"/var/lib/kubernetes/ca.pem\"\ntlsCertFile: \"/var/lib/kubelet/worker-0.pem\"\ntlsPrivateKeyFile: \"/var/lib/kubelet/worker-0-key.pem\"\n", 0o644);
    put(&root, &format!("{units}/kube-proxy.service"), b"[Service]\nExecStart=/usr/local/bin/kube-proxy --config=/var/lib/kube-proxy/kube-proxy-config.yaml\n", 0o644);
    put(&root, "/var/lib/kube-proxy/kube-proxy-config.yaml", b"kind: KubeProxyConfiguration\napiVersion: kubeproxy.config.k8s.io/v1alpha1\nclientConnection:\n  kubeconfig: \"/var/lib/kube-proxy/kubeconfig\"\nmode: \"iptables\"\n", 0o644);
    let state = dir.path().join("state");
    Node { root, state, _dir: dir }
}

impl Node {
    /// A changing command (its runs go to this node's state dir).
    fn kcert(&self, cmd: &str, extra: &[&str]) -> Test {
        self.look(cmd, extra).args(["--state-dir", self.state.to_str().unwrap()])
    }
    /// A reading command.
    fn look(&self, cmd: &str, extra: &[&str]) -> Test {
        Test::new().args([cmd, "--local", "--root", self.root.to_str().unwrap()]).args(extra.iter().copied())
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }
    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap()
    }
    /// sha256 of every file of the node, kcert's own backups left out.
    fn snapshot(&self) -> BTreeMap<String, String> {
        use sha2::Digest;
        walk(&self.root, &self.root)
            .into_iter()
            .filter(|(_, rel)| !rel.starts_with("/var/lib/kcert/"))
            .map(|(p, rel)| (rel, kcert::pki::cert::hex(&sha2::Sha256::digest(std::fs::read(p).unwrap()))))
            .collect()
    }
    /// The CA, valid again: the cfssl sets' CAs expired in 2024. openssl re-signs it with its
    /// own key (same subject, key and extensions), so every leaf still chains to it.
    fn refresh_ca(&self) {
        let ok = Command::new("openssl")
            .args(["x509", "-in", "ca.pem", "-signkey", "ca-key.pem", "-days", "3650", "-out", "ca.pem"])
            .current_dir(self.path("/var/lib/kubernetes"))
            .status()
            .unwrap()
            .success();
        assert!(ok, "openssl re-signs the CA");
        std::fs::copy(self.path("/var/lib/kubernetes/ca.pem"), self.path("/etc/etcd/ca.pem")).unwrap();
    }
}

fn openssl(dir: &Path, args: &[&str], stdin: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new("openssl").args(args).current_dir(dir).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Does `cert` verify against the CA file `ca` (time not checked: the sets' leaves expired)?
fn verifies(ca: &Path, cert: &str) -> bool {
    openssl(Path::new("/"), &["verify", "-no_check_time", "-CAfile", ca.to_str().unwrap()], cert).0
}

/// What must survive a re-signing: subject, SANs, usages and the public key (each extension
/// with its value lines, in any order).
fn identity(cert: &str) -> Vec<String> {
    let (_, text) = openssl(Path::new("/"), &["x509", "-noout", "-subject", "-ext", "subjectAltName,keyUsage,extendedKeyUsage", "-pubkey"], cert);
    let mut groups: Vec<String> = Vec::new();
    for line in text.lines() {
        match groups.last_mut() {
            Some(g) if line.starts_with(' ') => g.push_str(line.trim()),
            _ => groups.push(line.to_string()),
        }
    }
    groups.sort();
    groups
}

/// Every leaf of the node, by where it is: the PEM leaves and each kubeconfig's client cert.
fn leaves(n: &Node) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for f in ["/var/lib/kubernetes/kubernetes.pem", "/etc/etcd/kubernetes.pem", "/var/lib/kubelet/worker-0.pem"] {
        out.insert(f.to_string(), pem_certs(&n.read(f)).remove(0));
    }
    for k in ["/var/lib/kubernetes/kube-controller-manager.kubeconfig", "/var/lib/kubernetes/kube-scheduler.kubeconfig", "/var/lib/kubelet/kubeconfig", "/var/lib/kube-proxy/kubeconfig"] {
        // kubeconfig_certs gives certificate-authority-data first, then the client cert.
        let certs = kubeconfig_certs(&n.read(k));
        assert_eq!(certs.len(), 2, "{k}: CA data and one client cert");
        out.insert(format!("{k} client cert"), certs[1].clone());
    }
    out
}

fn public_key_of_private(path: &Path) -> String {
    let out = Command::new("openssl").args(["pkey", "-in", path.to_str().unwrap(), "-pubout"]).output().unwrap();
    assert!(out.status.success(), "{} is a private key", path.display());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_certificate_is_found_from_the_units_alone() {
    for set in SETS {
        let n = lay(set, Sa::OwnKey);
        // What openssl finds in every file of the tree (unit and config files hold none).
        let mut want: Vec<OpensslFacts> = Vec::new();
        for (p, _) in walk(&n.root, &n.root) {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            want.extend(pem_certs(&text).iter().chain(kubeconfig_certs(&text).iter()).map(|c| openssl_facts(c)));
        }
        want.sort();
        let run = n.look("expiry", &["-o", "json"]).run();
        run.status(3); // the sets expired years ago
        let json = run.json();
        assert_eq!(json["errors"].as_array().unwrap().len(), 0, "{set}: {}", json["errors"]);
        let mut got: Vec<OpensslFacts> = json["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| OpensslFacts { subject: c["subject"].as_str().unwrap().into(), serial: c["serial"].as_str().unwrap().into(), not_after: c["not_after"].as_str().unwrap().into() })
            .collect();
        got.sort();
        assert_eq!(got, want, "{set}: kcert reports exactly the certificates openssl finds");
        // `check` names the distribution it detected and counts certificate files, not units.
        let check = n.look("check", &[]).run();
        let row = check.stdout.lines().nth(1).unwrap_or_default().to_string();
        assert!(row.contains(" hardway "), "{set}: {row}");
        // Leaves are attributed to the one CA by its shortest name.
        let table = n.look("expiry", &[]).run();
        let row = table.stdout.lines().find(|l| l.ends_with("/var/lib/kubernetes/kubernetes.pem")).unwrap_or_else(|| panic!("{set}: no kubernetes.pem row"));
        assert!(row.split_whitespace().any(|w| w == "ca") && !row.contains("etcd-ca"), "{set}: {row}");
    }
}

#[test]
fn renew_all_re_signs_every_leaf_with_ca_pem_keeping_what_it_is() {
    for set in SETS {
        let n = lay(set, Sa::OwnKey);
        // An expired CA is refused, naming it; nothing changes.
        let before = n.snapshot();
        let refused = n.kcert("renew", &["--dry-run"]).run();
        refused.status(2).stderr_has("/var/lib/kubernetes/ca-key.pem").stderr_has("expired").stderr_has("CA ca (also the etcd-ca CA)");
        assert_eq!(refused.stderr.matches("expired").count(), 1, "{set}: one CA, said once: {}", refused.stderr);
        assert_eq!(n.snapshot(), before);
        n.refresh_ca();
        let ca = n.path("/var/lib/kubernetes/ca.pem");
        let old = leaves(&n);
        n.kcert("renew", &["--certs", "all", "--days", "100", "--yes"]).run().status(0);
        let new = leaves(&n);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        for (what, cert) in &new {
            assert!(verifies(&ca, cert), "{set}: {what} verifies against ca.pem");
            assert_eq!(identity(cert), identity(&old[what]), "{set}: {what} keeps subject, SANs, usages and key");
            let (_, end) = openssl(Path::new("/"), &["x509", "-noout", "-checkend", &(99 * 86400).to_string()], cert);
            assert!(end.contains("will not expire"), "{set}: {what} is valid for the 100 days asked ({now})");
        }
        // One file in several roles (kubernetes.pem: serving, etcd client, kubelet client) is
        // re-signed once, and its key block stays byte for byte.
        assert_eq!(pem_certs(&n.read("/var/lib/kubernetes/kubernetes.pem")).len(), 1);
        assert_eq!(n.read("/var/lib/kubernetes/kubernetes-key.pem"), String::from_utf8(std::fs::read(common::real_world().join(set).join("kubernetes-key.pem")).unwrap()).unwrap());
    }
}

#[test]
fn rotate_ca_moves_every_leaf_and_trust_to_the_new_ca_and_rollback_restores_every_byte() {
    for (set, sa) in [(SETS[0], Sa::OwnKey), (SETS[1], Sa::CaKey)] {
        let n = lay(set, sa);
        let before = n.snapshot();
        let old_ca_pem = n.read("/var/lib/kubernetes/ca.pem");
        let old_ca = n.root.parent().unwrap().join("old-ca.pem");
        std::fs::write(&old_ca, &old_ca_pem).unwrap();
        let old_ca_public = public_key_of_private(&n.path("/var/lib/kubernetes/ca-key.pem"));
        let old_sa_public = public_key_of_private(&n.path("/var/lib/kubernetes/service-account-key.pem"));

        let plan = n.kcert("rotate-ca", &["--dry-run"]).run();
        plan.status(0).stdout_has("(hardway)").stdout_has("one CA plays the cluster and etcd roles");
        if sa == Sa::CaKey {
            plan.stdout_has("is also the service-account key").stdout_has("/var/lib/kubernetes/sa-from-ca-key.pem");
        } else {
            plan.stdout_has("is not a CA: it is not rotated");
        }
        assert_eq!(n.snapshot(), before, "{set}: a dry run changes nothing");

        n.kcert("rotate-ca", &["--yes"]).run().status(0);
        let ca = n.path("/var/lib/kubernetes/ca.pem");
        assert_eq!(pem_certs(&n.read("/var/lib/kubernetes/ca.pem")).len(), 1, "{set}: ca.pem holds only the new CA");
        for (what, cert) in leaves(&n) {
            assert!(verifies(&ca, &cert), "{set}: {what} verifies against the new CA");
            assert!(!verifies(&old_ca, &cert), "{set}: {what} no longer verifies against the old CA");
        }
        // No trust anywhere holds the old CA: the CA copies and every kubeconfig's CA data.
        for f in ["/etc/etcd/ca.pem", "/var/lib/kubernetes/ca.pem"] {
            assert_eq!(pem_certs(&n.read(f)), pem_certs(&n.read("/var/lib/kubernetes/ca.pem")), "{set}: {f} is the new CA alone");
        }
        for k in ["/var/lib/kubernetes/kube-controller-manager.kubeconfig", "/var/lib/kubernetes/kube-scheduler.kubeconfig", "/var/lib/kubelet/kubeconfig", "/var/lib/kube-proxy/kubeconfig", "/root/admin.kubeconfig"] {
            let data = kubeconfig_certs(&n.read(k));
            assert!(!data.iter().any(|c| pem_certs(&old_ca_pem).contains(c)), "{set}: {k} still holds the old CA");
        }
        let key = n.path("/var/lib/kubernetes/ca-key.pem");
        let (_, new_ca_public) = openssl(Path::new("/"), &["x509", "-noout", "-pubkey", "-in", ca.to_str().unwrap()], "");
        assert_eq!(public_key_of_private(&key), new_ca_public, "{set}: ca-key.pem matches the new ca.pem");
        assert_ne!(public_key_of_private(&key), old_ca_public);
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600, "{set}: ca-key.pem is 0600");
        // The service-account key stays the old one for both readers.
        let flag = |file: &str, flag: &str| -> String {
            let text = n.read(file);
            let at = text.find(&format!("{flag}=")).unwrap_or_else(|| panic!("{file} has {flag}")) + flag.len() + 1;
            text[at..].split(|c: char| c.is_whitespace() || c == '"' || c == '\\').next().unwrap().to_string()
        };
        let signer = flag("/opt/kubernetes/cfg/kube-controller-manager.conf", "--service-account-private-key-file");
        let verifier = flag("/etc/systemd/system/kube-apiserver.service", "--service-account-key-file");
        match sa {
            Sa::OwnKey => {
                assert_eq!(public_key_of_private(&n.path(&signer)), old_sa_public, "{set}: the service-account key did not change");
                assert_eq!(n.snapshot().get("/var/lib/kubernetes/service-account.pem"), before.get("/var/lib/kubernetes/service-account.pem"));
            }
            Sa::CaKey => {
                assert_eq!(signer, "/var/lib/kubernetes/sa-from-ca-key.pem", "{set}: the controller-manager signs tokens with the split-off key");
                assert_eq!(verifier, signer, "{set}: the apiserver verifies them with it");
                assert_eq!(public_key_of_private(&n.path(&signer)), old_ca_public, "{set}: the split-off key is the old CA key: every token stays valid");
                assert_eq!(std::fs::metadata(n.path(&signer)).unwrap().permissions().mode() & 0o777, 0o600);
            }
        }
        // The signing pair is back on ca.pem / ca-key.pem.
        assert_eq!(flag("/opt/kubernetes/cfg/kube-controller-manager.conf", "--cluster-signing-cert-file"), "/var/lib/kubernetes/ca.pem");
        assert_eq!(flag("/opt/kubernetes/cfg/kube-controller-manager.conf", "--cluster-signing-key-file"), "/var/lib/kubernetes/ca-key.pem");
        n.look("verify", &[]).run().status(0);

        Test::new().args(["rollback", "--yes", "--state-dir", n.state.to_str().unwrap()]).run().status(0);
        assert_eq!(n.snapshot(), before, "{set}: rollback restores every byte");
    }
}

#[test]
fn a_binary_node_with_no_recognisable_pki_is_an_error_row_naming_what_was_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    put(root, "/etc/systemd/system/kubelet.service", b"[Service]\nExecStart=/usr/local/bin/kubelet --config=/var/lib/kubelet/kubelet-config.yaml\n", 0o644);
    put(root, "/var/lib/kubelet/kubelet-config.yaml", b"kind: KubeletConfiguration\n", 0o644);
    Test::new()
        .args(["expiry", "--local", "--root", root.to_str().unwrap()])
        .run()
        .status(1)
        .stdout_has("no PKI found: none where the hardway playbook looks")
        .stdout_has("/etc/systemd/system/kubelet.service")
        .stdout_has("/var/lib/kubernetes");
    // An environment file the unit needs (no `-`) that is missing is named.
    put(root, "/etc/systemd/system/kube-apiserver.service", b"[Service]\nEnvironmentFile=/opt/kubernetes/cfg/kube-apiserver.conf\nExecStart=/usr/local/bin/kube-apiserver $KUBE_APISERVER_OPTS\n", 0o644);
    Test::new()
        .args(["expiry", "--local", "--root", root.to_str().unwrap()])
        .run()
        .status(3)
        .stdout_has("/opt/kubernetes/cfg/kube-apiserver.conf: missing (named by the kube-apiserver systemd unit)");
}

/// Replaces `from` with `to` in a file of the node (the test fails when `from` is not there).
fn replace(n: &Node, rel: &str, from: &str, to: &str) {
    let text = n.read(rel);
    assert!(text.contains(from), "{rel} holds {from:?}");
    std::fs::write(n.path(rel), text.replace(from, to)).unwrap();
}

fn public_key_of_cert(pem: &str) -> String {
    openssl(Path::new("/"), &["x509", "-noout", "-pubkey"], pem).1
}

/// The value a unit or environment file gives `flag`.
fn flag_in(n: &Node, file: &str, flag: &str) -> String {
    let text = n.read(file);
    let at = text.find(&format!("{flag}=")).unwrap_or_else(|| panic!("{file} has {flag}")) + flag.len() + 1;
    text[at..].split(|c: char| c.is_whitespace() || c == '"' || c == '\\').next().unwrap().to_string()
}

#[test]
fn the_kubelets_cert_dir_its_bootstrap_kubeconfig_and_a_flag_built_from_a_variable_are_read_and_rotated() {
    let set = SETS[1];
    let n = lay(set, Sa::CaKey);
    let lib = "/var/lib/kubernetes";
    // The kubelet keeps its certificates in --cert-dir: a self-signed kubelet.crt (no
    // tlsCertFile, as the kubelet makes it: CN host@timestamp) and its bootstrapped client
    // cert, cert and key in one dated file behind a -current link; a bootstrap kubeconfig
    // holds a token and the CA.
    replace(&n, "/etc/systemd/system/kubelet.service", "--kubeconfig=/var/lib/kubelet/kubeconfig \\\n", "--kubeconfig=/var/lib/kubelet/kubeconfig \\\n  --bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.kubeconfig \\\n  --cert-dir=/opt/kubelet/pki \\\n");
    replace(&n, "/var/lib/kubelet/kubelet-config.yaml", "tlsCertFile: \"/var/lib/kubelet/worker-0.pem\"\ntlsPrivateKeyFile: \"/var/lib/kubelet/worker-0-key.pem\"\n", "rotateCertificates: false\n");
    // Outside every directory the playbook scans: found through --cert-dir alone.
    let certs = n.path("/opt/kubelet/pki");
    std::fs::create_dir_all(&certs).unwrap();
    // As client-go's GenerateSelfSignedCertKey: a throwaway CA `host-ca@ts`, the serving cert
    // `host@ts` it signed, both in kubelet.crt.
    for args in [
        &["req", "-x509", "-nodes", "-newkey", "rsa:2048", "-keyout", "ca.key", "-out", "ca.crt", "-days", "365", "-subj", "/CN=worker-0-ca@1600000000"][..],
        &["req", "-nodes", "-newkey", "rsa:2048", "-keyout", "kubelet.key", "-out", "kubelet.csr", "-subj", "/CN=worker-0@1600000000"][..],
        &["x509", "-req", "-in", "kubelet.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-set_serial", "7", "-days", "365", "-out", "leaf.crt", "-extfile", "ext"][..],
    ] {
        std::fs::write(certs.join("ext"), "subjectAltName=DNS:worker-0\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n").unwrap();
        let out = Command::new("openssl").args(args).current_dir(&certs).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let self_signed = [std::fs::read(certs.join("leaf.crt")).unwrap(), std::fs::read(certs.join("ca.crt")).unwrap()].concat();
    std::fs::write(certs.join("kubelet.crt"), self_signed).unwrap();
    for f in ["ca.key", "ca.crt", "kubelet.csr", "leaf.crt", "ext"] {
        std::fs::remove_file(certs.join(f)).unwrap();
    }
    let src = common::real_world().join(set);
    let client = [std::fs::read(src.join("worker-0.pem")).unwrap(), std::fs::read(src.join("worker-0-key.pem")).unwrap()].concat();
    put(&n.root, "/opt/kubelet/pki/kubelet-client-2020-01-01-00-00-00.pem", &client, 0o600);
    std::os::unix::fs::symlink("kubelet-client-2020-01-01-00-00-00.pem", certs.join("kubelet-client-current.pem")).unwrap();
    let kubelet_kc = n.read("/var/lib/kubelet/kubeconfig");
    let user_at = kubelet_kc.find("  user:\n").expect("the kubeconfig has a user");
    let referenced = format!("{}  user:\n    client-certificate: /opt/kubelet/pki/kubelet-client-current.pem\n    client-key: /opt/kubelet/pki/kubelet-client-current.pem\n", &kubelet_kc[..user_at]);
    put(&n.root, "/var/lib/kubelet/kubeconfig", referenced.as_bytes(), 0o600);
    let ca_b64 = kubelet_kc.lines().find_map(|l| l.trim().strip_prefix("certificate-authority-data: ")).unwrap().to_string();
    let bootstrap = format!("apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {ca_b64}\n    server: https://10.240.0.10:6443\n  name: kubernetes\ncontexts:\n- context:\n    cluster: kubernetes\n    user: kubelet-bootstrap\n  name: default\ncurrent-context: default\nusers:\n- name: kubelet-bootstrap\n  user:\n    token: 07401b.f395accd246ae52d\n");
    put(&n.root, "/etc/kubernetes/bootstrap-kubelet.kubeconfig", bootstrap.as_bytes(), 0o600);
    // A self-signed kubelet serving cert is only sound where the apiserver does not verify
    // kubelets (no --kubelet-certificate-authority), as on kubeadm's defaults.
    replace(&n, "/etc/systemd/system/kube-apiserver.service", &format!("  --kubelet-certificate-authority={lib}/ca.pem \\\n"), "");
    // The apiserver's service-account key flag is a variable inside a longer word.
    replace(&n, "/etc/systemd/system/kube-apiserver.service", &format!("--service-account-key-file={lib}/ca-key.pem"), "--service-account-key-file=${SSL}/ca-key.pem");
    put(&n.root, "/etc/systemd/system/kube-apiserver.service.d/20-ssl.conf", format!("[Service]\nEnvironment=SSL={lib}\n").as_bytes(), 0o644);

    // expiry finds every certificate openssl finds, the cert dir and the bootstrap CA among them.
    let json = n.look("expiry", &["-o", "json"]).run().json();
    assert_eq!(json["errors"].as_array().unwrap().len(), 0, "{}", json["errors"]);
    let paths: Vec<&str> = json["certificates"].as_array().unwrap().iter().map(|c| c["path"].as_str().unwrap()).collect();
    for p in ["/opt/kubelet/pki/kubelet.crt", "/opt/kubelet/pki/kubelet-client-current.pem", "/etc/kubernetes/bootstrap-kubelet.kubeconfig"] {
        assert!(paths.contains(&p), "expiry lists {p}: {paths:?}");
    }

    let before = n.snapshot();
    let old_ca_pem = n.read(&format!("{lib}/ca.pem"));
    let old_ca_public = public_key_of_cert(&old_ca_pem);
    let key_block = client[std::str::from_utf8(&client).unwrap().find("-----BEGIN RSA PRIVATE KEY").unwrap()..].to_vec();
    let dry = n.kcert("rotate-ca", &["--dry-run"]).run();
    dry.status(0).stdout_has("service-account token edges").stdout_has("/opt/kubelet/pki/kubelet.crt").stdout_has("/etc/kubernetes/bootstrap-kubelet.kubeconfig");
    n.kcert("rotate-ca", &["--yes"]).run().status(0);
    let ca = n.path(&format!("{lib}/ca.pem"));
    let new_ca_pem = n.read(&format!("{lib}/ca.pem"));
    // The self-signed serving cert moved onto the new CA; the client cert was re-signed in its
    // dated file, its key block byte for byte, the link still a link.
    let serving = n.read("/opt/kubelet/pki/kubelet.crt");
    assert!(verifies(&ca, &pem_certs(&serving)[0]), "kubelet.crt in --cert-dir verifies against the new CA");
    let dated = std::fs::read(certs.join("kubelet-client-2020-01-01-00-00-00.pem")).unwrap();
    assert!(verifies(&ca, &pem_certs(std::str::from_utf8(&dated).unwrap())[0]), "the bootstrapped client cert verifies against the new CA");
    assert!(dated.ends_with(&key_block), "its key block is kept byte for byte");
    assert!(std::fs::symlink_metadata(certs.join("kubelet-client-current.pem")).unwrap().file_type().is_symlink());
    // The bootstrap kubeconfig trusts the new CA alone.
    assert_eq!(kubeconfig_certs(&n.read("/etc/kubernetes/bootstrap-kubelet.kubeconfig")), pem_certs(&new_ca_pem));
    // The flag made of a variable now names the split-off key, written out.
    let unit = n.read("/etc/systemd/system/kube-apiserver.service");
    assert!(unit.contains(&format!("--service-account-key-file={lib}/sa-from-ca-key.pem")) && !unit.contains("${SSL}/ca-key.pem"), "{unit}");
    assert_eq!(public_key_of_private(&n.path(&format!("{lib}/sa-from-ca-key.pem"))), old_ca_public);
    n.look("verify", &[]).run().status(0);

    Test::new().args(["rollback", "--yes", "--state-dir", n.state.to_str().unwrap()]).run().status(0);
    assert_eq!(n.snapshot(), before, "rollback restores every byte");
    assert!(std::fs::symlink_metadata(certs.join("kubelet-client-current.pem")).unwrap().file_type().is_symlink());
}

#[test]
fn a_ca_whose_certificate_and_key_share_one_file_is_rotated_in_that_file() {
    let set = SETS[0];
    let n = lay(set, Sa::OwnKey);
    let lib = "/var/lib/kubernetes";
    let combined = format!("{}{}", n.read(&format!("{lib}/ca.pem")), n.read(&format!("{lib}/ca-key.pem")));
    put(&n.root, &format!("{lib}/ca.pem"), combined.as_bytes(), 0o600);
    std::fs::remove_file(n.path(&format!("{lib}/ca-key.pem"))).unwrap();
    replace(&n, "/opt/kubernetes/cfg/kube-controller-manager.conf", &format!("--cluster-signing-key-file={lib}/ca-key.pem"), &format!("--cluster-signing-key-file={lib}/ca.pem"));
    let before = n.snapshot();
    let old_ca = n.root.parent().unwrap().join("old-ca.pem");
    std::fs::write(&old_ca, pem_certs(&combined).concat()).unwrap();

    let plan = n.kcert("rotate-ca", &["--plan-out", n.root.parent().unwrap().join("plan.json").to_str().unwrap()]).run();
    plan.status(0);
    let saved = common::text_of(&n.root.parent().unwrap().join("plan.json"));
    assert!(!saved.contains("PRIVATE KEY"), "the plan carries no key");
    n.kcert("rotate-ca", &["--yes"]).run().status(0);
    let after = n.read(&format!("{lib}/ca.pem"));
    let certs = pem_certs(&after);
    assert_eq!(certs.len(), 1, "ca.pem holds the new CA alone");
    let ca = n.path(&format!("{lib}/ca.pem"));
    assert_eq!(public_key_of_private(&ca), public_key_of_cert(&certs[0]), "and its key, the new CA's");
    assert_ne!(public_key_of_cert(&certs[0]), public_key_of_cert(&pem_certs(&combined)[0]));
    assert_eq!(std::fs::metadata(&ca).unwrap().permissions().mode() & 0o777, 0o600);
    for (what, cert) in leaves(&n) {
        assert!(verifies(&ca, &cert), "{what} verifies against the new CA");
        assert!(!verifies(&old_ca, &cert), "{what} no longer verifies against the old CA");
    }
    n.look("verify", &[]).run().status(0);
    Test::new().args(["rollback", "--yes", "--state-dir", n.state.to_str().unwrap()]).run().status(0);
    assert_eq!(n.snapshot(), before, "rollback restores every byte");

    // The key gone from the file its flag names: refused, naming the file; nothing changes.
    put(&n.root, &format!("{lib}/ca.pem"), pem_certs(&combined).concat().as_bytes(), 0o644);
    let unchanged = n.snapshot();
    n.kcert("rotate-ca", &["--yes"]).run().status(2).stderr_has(&format!("{lib}/ca.pem on local: no private key"));
    assert_eq!(n.snapshot(), unchanged);
}

#[test]
fn a_verifying_key_that_is_the_ca_certificate_is_split_off_with_the_signing_one() {
    // As some binary guides do: the apiserver verifies tokens with ca.pem itself, the
    // controller-manager signs them with ca-key.pem.
    let n = lay(SETS[1], Sa::CaKey);
    let lib = "/var/lib/kubernetes";
    replace(&n, "/etc/systemd/system/kube-apiserver.service", &format!("--service-account-key-file={lib}/ca-key.pem"), &format!("--service-account-key-file={lib}/ca.pem"));
    let old_ca_public = public_key_of_cert(&n.read(&format!("{lib}/ca.pem")));
    n.kcert("rotate-ca", &["--dry-run"]).run().status(0).stdout_has("is also the service-account key");
    n.kcert("rotate-ca", &["--yes"]).run().status(0);
    let signer = flag_in(&n, "/opt/kubernetes/cfg/kube-controller-manager.conf", "--service-account-private-key-file");
    let verifier = flag_in(&n, "/etc/systemd/system/kube-apiserver.service", "--service-account-key-file");
    assert_eq!(verifier, signer, "the apiserver verifies tokens with the split-off key");
    assert_eq!(public_key_of_private(&n.path(&verifier)), old_ca_public, "which is the old CA's: every token stays valid");
}

#[test]
fn a_flag_that_shares_its_variable_with_another_is_not_rewritten_under_it() {
    let n = lay(SETS[0], Sa::OwnKey);
    let lib = "/var/lib/kubernetes";
    // --cluster-signing-cert-file and --root-ca-file both read ${CA}: repointing the signing
    // cert during the rotation would repoint the root CA file with it.
    replace(&n, "/opt/kubernetes/cfg/kube-controller-manager.conf", &format!("--cluster-signing-cert-file={lib}/ca.pem \\\n  "), "");
    replace(&n, "/opt/kubernetes/cfg/kube-controller-manager.conf", &format!(" \\\n  --root-ca-file={lib}/ca.pem"), "");
    replace(&n, "/etc/systemd/system/kube-controller-manager.service", "$KUBE_CONTROLLER_MANAGER_OPTS\n", &format!("$KUBE_CONTROLLER_MANAGER_OPTS --cluster-signing-cert-file=${{CA}} --root-ca-file=${{CA}}\nEnvironment=CA={lib}/ca.pem\n"));
    let before = n.snapshot();
    n.kcert("rotate-ca", &["--yes"]).run().status(2).stderr_has("would also change kube-controller-manager's --root-ca-file").stderr_has("share a variable");
    assert_eq!(n.snapshot(), before, "nothing changed");
}
