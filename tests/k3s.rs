//! k3s's own PKI shapes, judged by openssl: the cross-signed CA set kcert makes for
//! `k3s certificate rotate-ca --path` (old leaves keep verifying against the new bundle, new
//! leaves verify against the old root through the cross-signed copy, and once the old root
//! is let go only new leaves do), and the CA hash a join token pins (k3s `hashCA`).
//! And a k3s cluster's files as k3s lays them out (`docker/pki/make-k3s-pki.sh`), read whole.
//! The old CAs and every leaf are made by openssl, never by kcert.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Test, assert_same, expected_in, pem_certs, real_world, reported, snapshot, staged};
use kcert::pki::k3s::{self, JoinToken};

fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn must(dir: &Path, args: &[&str]) -> String {
    let (ok, out) = openssl(dir, args);
    assert!(ok, "openssl {}: {out}", args.join(" "));
    out
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A k3s-style self-signed CA (ECDSA P-256, CN k3s-server-ca@<time>) as `name.crt`/`name.key`.
fn old_ca(dir: &Path, name: &str) {
    must(dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", &format!("{name}.key")]);
    must(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-sha256",
            "-days",
            "3650",
            "-subj",
            &format!("/CN=k3s-{name}@1700000000"),
            "-key",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign",
        ],
    );
}

/// A serving leaf signed by `ca`.crt/`ca`.key, as `leaf`.crt.
fn leaf(dir: &Path, ca_crt: &str, ca_key: &str, leaf: &str) {
    must(dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", &format!("{leaf}.key")]);
    must(dir, &["req", "-new", "-key", &format!("{leaf}.key"), "-subj", &format!("/CN={leaf}"), "-out", &format!("{leaf}.csr")]);
    std::fs::write(dir.join("ext"), "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost\n").unwrap();
    must(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{leaf}.csr"),
            "-CA",
            ca_crt,
            "-CAkey",
            ca_key,
            "-CAcreateserial",
            "-days",
            "365",
            "-sha256",
            "-extfile",
            "ext",
            "-out",
            &format!("{leaf}.crt"),
        ],
    );
}

fn verify(dir: &Path, trusted: &str, untrusted: Option<&str>, cert: &str) -> (bool, String) {
    let mut args = vec!["verify", "-CAfile", trusted];
    if let Some(u) = untrusted {
        args.extend(["-untrusted", u]);
    }
    args.push(cert);
    openssl(dir, &args)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The first private key block of a PEM text.
fn first_key(text: &str) -> String {
    let start = text.find("-----BEGIN").unwrap();
    let end_marker = text[start..].find("-----END").unwrap() + start;
    let end = text[end_marker..].find('\n').map(|i| end_marker + i + 1).unwrap_or(text.len());
    text[start..end].to_string()
}

#[test]
fn the_cross_signed_set_keeps_old_and_new_leaves_verifying_until_the_old_root_goes() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    old_ca(d, "server-ca");
    leaf(d, "server-ca.crt", "server-ca.key", "old-leaf");
    let set = k3s::cross_signed("k3s", "server", &std::fs::read(d.join("server-ca.crt")).unwrap(), &std::fs::read(d.join("server-ca.key")).unwrap(), 3650, now(), None).unwrap();
    write(d, "new-ca.crt", &set.cert);
    write(d, "new-ca.key", &set.key);
    write(d, "int.crt", &set.intermediate);
    write(d, "int.key", &first_key(&set.key));
    write(d, "chain.crt", &[set.intermediate.as_str(), set.cross.as_str()].concat());
    leaf(d, "int.crt", "int.key", "new-leaf");

    // The layout k3s's script makes: intermediate, root, cross-signed root, old root.
    let certs = pem_certs(&set.cert);
    assert_eq!(certs.len(), 4);
    let subject = |pem: &str| must(d, &["x509", "-noout", "-subject", "-in", write(d, "one.pem", pem).to_str().unwrap()]).trim().to_string();
    let issuer = |pem: &str| must(d, &["x509", "-noout", "-issuer", "-in", write(d, "one.pem", pem).to_str().unwrap()]).trim().to_string();
    let pubkey = |pem: &str| must(d, &["x509", "-noout", "-pubkey", "-in", write(d, "one.pem", pem).to_str().unwrap()]);
    assert!(subject(&certs[0]).contains("k3s-server-ca@"), "{}", subject(&certs[0]));
    assert!(subject(&certs[1]).contains("k3s-server-root@"), "{}", subject(&certs[1]));
    assert_eq!(subject(&certs[1]).replace("subject=", ""), issuer(&certs[1]).replace("issuer=", ""), "the new root is self-signed");
    assert_eq!(subject(&certs[2]), subject(&certs[1]), "the cross-signed root is the new root's subject");
    assert_eq!(pubkey(&certs[2]), pubkey(&certs[1]), "the cross-signed root carries the new root's key");
    assert!(issuer(&certs[2]).contains("k3s-server-ca@1700000000"), "the cross-signed root is issued by the old: {}", issuer(&certs[2]));
    assert_eq!(certs[3].trim(), std::fs::read_to_string(d.join("server-ca.crt")).unwrap().trim(), "the old root last, as it was");
    assert!(must(d, &["x509", "-noout", "-text", "-in", "int.crt"]).contains("prime256v1"), "ECDSA P-256 as the old");
    // The key file: the intermediate's key, then the new root's.
    assert_eq!(set.key.matches("-----BEGIN").count(), 2, "two keys");
    let second = &set.key[set.key[1..].find("-----BEGIN").unwrap() + 1..];
    write(d, "root.key", second);
    assert_eq!(must(d, &["pkey", "-in", "int.key", "-pubout"]), pubkey(&certs[0]), "the first key is the intermediate's");
    assert_eq!(must(d, &["pkey", "-in", "root.key", "-pubout"]), pubkey(&certs[1]), "the second key is the new root's");
    let (ok, out) = openssl(d, &["x509", "-noout", "-in", "int.crt", "-checkend", "0"]);
    assert!(ok, "{out}");

    // During the window: an old leaf verifies against the new bundle; a new leaf against the
    // new bundle, and against the old root alone with the chain its server sends.
    for (trusted, untrusted, cert) in
        [("new-ca.crt", None, "old-leaf.crt"), ("new-ca.crt", None, "new-leaf.crt"), ("server-ca.crt", Some("chain.crt"), "new-leaf.crt"), ("server-ca.crt", None, "old-leaf.crt")]
    {
        let (ok, out) = verify(d, trusted, untrusted, cert);
        assert!(ok, "{cert} against {trusted} (+{untrusted:?}): {out}");
    }
    // Without the cross-signed copy the old root cannot reach a new leaf: it is what carries trust.
    write(d, "int-only.crt", &set.intermediate);
    let (ok, _) = verify(d, "server-ca.crt", Some("int-only.crt"), "new-leaf.crt");
    assert!(!ok, "a new leaf verified against the old root without the cross-signed root");

    // After the window: the old root is let go; only new leaves verify.
    let pruned = k3s::without_old_root(set.cert.as_bytes()).unwrap();
    assert_eq!(pem_certs(&pruned).len(), 2);
    write(d, "final.crt", &pruned);
    let (ok, out) = verify(d, "final.crt", None, "new-leaf.crt");
    assert!(ok, "{out}");
    let (ok, _) = verify(d, "final.crt", None, "old-leaf.crt");
    assert!(!ok, "an old leaf still verified once the old root was let go");
}

#[test]
fn a_second_rotation_cross_signs_from_the_first_ones_root() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    old_ca(d, "client-ca");
    let c = |p: &str| std::fs::read(d.join(p)).unwrap();
    let first = k3s::cross_signed("k3s", "client", &c("client-ca.crt"), &c("client-ca.key"), 3650, now(), None).unwrap();
    let second = k3s::cross_signed("k3s", "client", first.cert.as_bytes(), first.key.as_bytes(), 3650, now() + 1, None).unwrap();
    assert_eq!(second.old_root.trim(), first.root.trim(), "the first rotation's root is the one cross-signing the second");
    write(d, "first-root.crt", &first.root);
    write(d, "chain.crt", &[second.intermediate.as_str(), second.cross.as_str()].concat());
    write(d, "int.crt", &second.intermediate);
    write(d, "int.key", &first_key(&second.key));
    leaf(d, "int.crt", "int.key", "leaf2");
    let (ok, out) = verify(d, "first-root.crt", Some("chain.crt"), "leaf2.crt");
    assert!(ok, "{out}");
}

#[test]
fn bad_old_cas_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    old_ca(d, "a");
    old_ca(d, "b");
    let c = |p: &str| std::fs::read(d.join(p)).unwrap();
    let err = k3s::cross_signed("k3s", "server", &c("a.crt"), &c("b.key"), 3650, now(), None).err().unwrap().to_string();
    assert!(err.contains("server-ca") && err.contains("no self-signed CA in it has its key"), "{err}");
    let err = k3s::cross_signed("k3s", "server", &c("a.crt"), b"not a key", 3650, now(), None).err().unwrap().to_string();
    assert!(err.contains("no private key"), "{err}");
    // An intermediate-signed CA (a custom CA rooted elsewhere) has no root here to cross-sign from.
    leaf(d, "a.crt", "a.key", "x");
    let err = k3s::cross_signed("k3s", "server", &c("x.crt"), &c("x.key"), 3650, now(), None).err().unwrap().to_string();
    assert!(err.contains("rooted elsewhere"), "{err}");
    let err = k3s::cross_signed("k3s", "server", &c("a.crt"), &c("a.key"), 3650, now() + 20 * 365 * 86_400, None).err().unwrap().to_string();
    assert!(err.contains("expired"), "{err}");
}

#[test]
fn the_token_ca_hash_is_k3s_s() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let sha256sum = |p: &Path| {
        let out = Command::new("sha256sum").arg(p).output().unwrap();
        String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
    };
    // One certificate: the file's bytes, as they are (a trailing line break counts).
    old_ca(d, "server-ca");
    let one = std::fs::read(d.join("server-ca.crt")).unwrap();
    assert_eq!(k3s::ca_hash(&one, now()).unwrap(), sha256sum(&d.join("server-ca.crt")));
    // A real k3s-made server CA (RKE2), read in place.
    let real = real_world().join("rke2-cachac-kubelabsAdmin/var/lib/rancher/rke2/server/tls/server-ca.crt");
    assert_eq!(k3s::ca_hash(&std::fs::read(&real).unwrap(), now()).unwrap(), sha256sum(&real));
    // A cross-signed bundle: the DER of the new self-signed root (the bundle's second
    // certificate), which the intermediate chains to first.
    let set = k3s::cross_signed("k3s", "server", &one, &std::fs::read(d.join("server-ca.key")).unwrap(), 3650, now(), None).unwrap();
    write(d, "root.pem", &set.root);
    must(d, &["x509", "-in", "root.pem", "-outform", "DER", "-out", "root.der"]);
    let hash = k3s::ca_hash(set.cert.as_bytes(), now()).unwrap();
    assert_eq!(hash, sha256sum(&d.join("root.der")));
    assert_ne!(hash, sha256sum(&d.join("server-ca.crt")), "a rotation to a new root changes the hash: every secure token must follow");
    // The pruned bundle pins the same root: dropping the old root later changes no token.
    assert_eq!(k3s::ca_hash(k3s::without_old_root(set.cert.as_bytes()).unwrap().as_bytes(), now()).unwrap(), hash);

    // Tokens as k3s parses them.
    let t = JoinToken::parse(&format!("K10{}::server:s3cret\n", "AB".repeat(32))).unwrap();
    assert_eq!(t.ca_hash.as_deref(), Some("ab".repeat(32).as_str()));
    assert_eq!(t.with_hash(&hash), format!("K10{hash}::server:s3cret"));
    assert!(!format!("{t:?}").contains("s3cret"), "a token's secret is never shown");
    assert_eq!(JoinToken::parse("abcdef.0123456789abcdef").unwrap().ca_hash, None, "a bare bootstrap token pins nothing");
    assert_eq!(JoinToken::parse("K10::node:pw").unwrap().ca_hash, None);
    assert!(JoinToken::parse("K10abc::x:y").unwrap_err().contains("64 hex digits"));
    assert!(JoinToken::parse("").is_err());
}

/// The base64 of a TLS Secret's tls.key, as the JSON holds it.
fn tls_key_b64(path: &Path) -> String {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["data"]["tls.key"].as_str().unwrap().to_string()
}

/// Two servers and an agent, as k3s lays their files out (made with openssl).
fn k3s_tree(dir: &Path) {
    common::rancher_tree(dir, "k3s");
}

#[test]
fn a_k3s_tree_is_read_whole_and_every_token_pins_its_server_ca() {
    let tmp = tempfile::tempdir().unwrap();
    k3s_tree(tmp.path());
    for (node, certs) in [("s1", 48), ("s2", 48), ("a1", 10)] {
        let root = tmp.path().join(node);
        let run = Test::new().args(["expiry", "--local", "--root"]).args([&root]).args(["-o", "json"]).run();
        run.status(0);
        let json = run.json();
        let want = expected_in(&root, &["/var/lib/rancher", "/etc/rancher"]);
        assert_same(node, &reported(&json), &want);
        assert_eq!(want.values().map(Vec::len).sum::<usize>(), certs, "{node}: the certificates k3s keeps (each leaf file holds its CA too)");
        assert!(json["errors"].as_array().unwrap().is_empty(), "{node}: {}", run.stdout);
        // Each certificate's CA is named by the CA's own file, never by the copy that rides in
        // another leaf's file after it (every k3s leaf file holds its CA too): no `name[1]` in
        // the CERTIFICATE AUTHORITY column (an embedded field, `(users[default]...)`, may have one).
        let table = Test::new().args(["expiry", "--local", "--root"]).args([&root]).run();
        for line in table.stdout.lines().skip(1) {
            let words: Vec<&str> = line.split_whitespace().collect();
            assert!(!words[2..].iter().any(|w| w.contains('[') && !w.starts_with('(')), "{node}: a CA named by a chain copy: {line}");
        }
        if node != "a1" {
            let etcd_client = table.stdout.lines().find(|l| l.split_whitespace().nth(1) == Some("etcd-client")).expect("etcd/client.crt read");
            assert!(etcd_client.contains(" etcd-server-ca "), "{node}: {etcd_client}");
            // The supervisor's :6443 cert, from dynamic-cert.json's tls.crt, never its tls.key.
            let served = json["certificates"].as_array().unwrap().iter().find(|c| c["source"] == "secret").expect("dynamic-cert.json read");
            assert_eq!(served["subject"], "O=k3s, CN=k3s");
            assert_eq!(served["embedded_key"], "data[tls.crt]");
            let key_b64 = tls_key_b64(&root.join("var/lib/rancher/k3s/server/tls/dynamic-cert.json"));
            assert!(!run.stdout.contains(&key_b64[..40]), "the Secret's tls.key is in the output");
        }
    }
    // A damaged Secret is an error row naming the file, the other certificates still reported.
    let dynamic = tmp.path().join("s2/var/lib/rancher/k3s/server/tls/dynamic-cert.json");
    let text = std::fs::read_to_string(&dynamic).unwrap().replace("\"tls.crt\":\"", "\"tls.crt\":\"!");
    std::fs::write(&dynamic, text).unwrap();
    let run = Test::new().args(["expiry", "--local", "--root"]).args([tmp.path().join("s2")]).args(["-o", "json"]).run();
    let json = run.json();
    let errors = json["errors"].as_array().unwrap();
    assert!(errors.len() == 1 && errors[0]["path"] == "/var/lib/rancher/k3s/server/tls/dynamic-cert.json" && errors[0]["error"].as_str().unwrap().contains("not base64"), "{}", run.stdout);
    assert_eq!(json["certificates"].as_array().unwrap().len(), 46);
    // The server token and every joining node's K3S_TOKEN pin the server CA's hash, as k3s
    // computes it for the bundle a joining node downloads.
    let server_ca = std::fs::read(tmp.path().join("s1/var/lib/rancher/k3s/server/tls/server-ca.crt")).unwrap();
    let hash = k3s::ca_hash(&server_ca, now()).unwrap();
    let token = std::fs::read_to_string(tmp.path().join("s1/var/lib/rancher/k3s/server/token")).unwrap();
    assert_eq!(JoinToken::parse(&token).unwrap().ca_hash.as_deref(), Some(hash.as_str()));
    for env in ["s2/etc/systemd/system/k3s.service.env", "a1/etc/systemd/system/k3s-agent.service.env"] {
        let text = std::fs::read_to_string(tmp.path().join(env)).unwrap();
        let value = text.lines().find_map(|l| l.strip_prefix("K3S_TOKEN=")).unwrap().trim_matches('\'');
        assert_eq!(JoinToken::parse(value).unwrap().ca_hash.as_deref(), Some(hash.as_str()), "{env}");
    }
}


/// A join token kcert cannot read (here larger than the 1 MiB it reads; a refused read is the
/// same case) is not taken for absent: its hash would then be left pinning the old CA, and a
/// node could no longer join once the rotation ends. The rotation is refused, naming the file.
#[test]
fn a_join_token_kcert_cannot_read_refuses_the_rotation_and_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    k3s_tree(tmp.path());
    let s2 = tmp.path().join("s2");
    let env = s2.join("etc/systemd/system/k3s.service.env");
    let mut text = std::fs::read_to_string(&env).unwrap();
    text.push_str(&format!("# {}\n", "x".repeat(1 << 20)));
    std::fs::write(&env, &text).unwrap();
    let before = snapshot(&s2);
    let dry_run = || Test::new().args(["rotate-ca", "--local", "--root"]).args([&s2]).args(["--dry-run"]).run();
    let run = dry_run();
    run.status(2);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(said.contains("/etc/systemd/system/k3s.service.env: unreadable: ") && said.contains("more than kcert reads"), "{said}");
    assert_eq!(snapshot(&s2), before, "a refused dry run changed files");
    // Read as it was, the same tree plans the token's new hash.
    std::fs::write(&env, &text[..text.find("# xxx").unwrap()]).unwrap();
    dry_run().status(0).stdout_has("/etc/systemd/system/k3s.service.env");
}

#[test]
fn verify_checks_every_k3s_trust_edge_and_names_a_broken_one() {
    let tmp = tempfile::tempdir().unwrap();
    k3s_tree(tmp.path());
    let s1 = tmp.path().join("s1");
    let run = Test::new().args(["verify", "--local", "--root"]).args([&s1]).args(["-o", "json"]).run();
    run.status(0);
    let json = run.json();
    let edges = json["edges"].as_array().unwrap();
    let named = |edge: &str, client: &str| edges.iter().find(|e| e["edge"] == edge && e["client"].as_str().unwrap().ends_with(client)).unwrap_or_else(|| panic!("no {edge} from {client}: {}", run.stdout));
    // k3s's edges, from the files k3s itself reads (deps.go, server.go): 10 kubeconfigs to the
    // apiserver, the apiserver to etcd and to the kubelet, etcd's peers, the auth proxy.
    assert_eq!(edges.len(), 14, "{}", run.stdout);
    assert!(edges.iter().all(|e| e["ok"] == true), "{}", run.stdout);
    for kc in ["/server/cred/admin.kubeconfig", "/etc/rancher/k3s/k3s.yaml", "/agent/kubelet.kubeconfig", "/agent/kubeproxy.kubeconfig"] {
        assert!(named("kubeconfig -> kube-apiserver", kc)["server"].as_str().unwrap().ends_with("/server/tls/serving-kube-apiserver.crt"));
    }
    let kubelet = named("kube-apiserver -> kubelet", "/server/tls/client-kube-apiserver.crt");
    assert!(kubelet["server"].as_str().unwrap().ends_with("/agent/serving-kubelet.crt"));
    assert_eq!(kubelet["server_trust_file"], "/var/lib/rancher/k3s/agent/client-ca.crt");
    assert_eq!(kubelet["client_trust_file"], "/var/lib/rancher/k3s/server/tls/server-ca.crt");
    named("kube-apiserver -> etcd", "/server/tls/etcd/client.crt");
    named("etcd peer -> etcd peer", "/server/tls/etcd/peer-server-client.crt");

    // The kubelet's serving cert re-made by another CA: that edge, and only it, breaks.
    let d = tmp.path();
    old_ca(d, "stranger");
    leaf(d, "stranger.crt", "stranger.key", "kubelet");
    let agent = s1.join("var/lib/rancher/k3s/agent");
    std::fs::copy(d.join("kubelet.crt"), agent.join("serving-kubelet.crt")).unwrap();
    std::fs::copy(d.join("kubelet.key"), agent.join("serving-kubelet.key")).unwrap();
    let run = Test::new().args(["verify", "--local", "--root"]).args([&s1]).run();
    run.status(3).stdout_has("kube-apiserver -> kubelet").stdout_has("1 broken");
}

#[test]
fn renew_on_k3s_plans_k3s_s_own_procedure_and_never_runs_on_files_alone() {
    let tmp = tempfile::tempdir().unwrap();
    k3s_tree(tmp.path());
    let s1 = tmp.path().join("s1");
    let before = snapshot(&s1);
    // A server: its unit stopped, every file the tool makes again backed up first, the tool
    // told each service, the supervisor's kept cert removed, the unit started.
    let run = Test::new().args(["renew", "--local", "--root"]).args([&s1]).args(["--dry-run"]).run();
    run.status(0)
        .stdout_has("delete secret k3s-serving")
        .stdout_has("stop    systemctl stop k3s (skipped: offline)")
        .stdout_has("backup  /var/lib/rancher/k3s/server/tls/serving-kube-apiserver.crt")
        .stdout_has("backup  /var/lib/rancher/k3s/server/tls/client-kubelet.key")
        .stdout_has("run     k3s certificate rotate --service admin --service api-server --service auth-proxy --service cloud-controller --service controller-manager --service etcd --service scheduler --service supervisor --service k3s-server --service kube-proxy --service kubelet --service k3s-controller (skipped: offline)")
        .stdout_has("run     rm -f '/var/lib/rancher/k3s/server/tls/dynamic-cert.json'")
        .stdout_has("start   systemctl start k3s (skipped: offline): k3s makes the 38 files above again");
    // The plan holds no key: not the Secret's tls.key, not a PEM key block.
    let json = Test::new().args(["renew", "--local", "--root"]).args([&s1]).args(["--dry-run", "-o", "json"]).run();
    json.status(0);
    let key_b64 = tls_key_b64(&s1.join("var/lib/rancher/k3s/server/tls/dynamic-cert.json"));
    assert!(!json.stdout.contains(&key_b64[..40]) && !json.stdout.contains("PRIVATE KEY-----"), "key material in the plan");
    // One service: its files only, and the tool told only it.
    let one = Test::new().args(["renew", "--local", "--root"]).args([&s1]).args(["--dry-run", "--certs", "api-server"]).run();
    one.status(0).stdout_has("run     k3s certificate rotate --service api-server (skipped").stdout_has("k3s makes the 4 files above again");
    assert!(!one.stdout.contains("rm -f") && !one.stdout.contains("client-admin"), "{}", one.stdout);
    // An agent: its own unit and services.
    let agent = Test::new().args(["renew", "--local", "--root"]).args([tmp.path().join("a1")]).args(["--dry-run"]).run();
    agent.status(0).stdout_has("systemctl stop k3s-agent").stdout_has("k3s certificate rotate --service kube-proxy --service kubelet --service k3s-controller (skipped").stdout_has("8 files above");
    // A service k3s does not know is refused, naming those it does.
    let bad = Test::new().args(["renew", "--local", "--root"]).args([&s1]).args(["--dry-run", "--certs", "apiserver"]).run();
    bad.status(2).stderr_has("\"apiserver\"").stderr_has("api-server, auth-proxy");
    // Files alone cannot be renewed by k3s's start: refused, nothing changed.
    let run = Test::new().args(["renew", "--local", "--root"]).args([&s1]).args(["--yes"]).run();
    run.status(2).stderr_has("distribution k3s").stderr_has("files alone (--root) cannot be changed this way");
    assert_eq!(snapshot(&s1), before, "a refused renewal changed a file");
}

#[test]
fn rotate_ca_on_k3s_reads_as_k3s_s_runbook_and_never_runs_on_files_alone() {
    let tmp = tempfile::tempdir().unwrap();
    k3s_tree(tmp.path());
    let s2 = tmp.path().join("s2");
    let tls = s2.join("var/lib/rancher/k3s/server/tls");
    let before = snapshot(&s2);
    let run = Test::new().args(["rotate-ca", "--local", "--root"]).args([&s2]).args(["--dry-run"]).run();
    run.status(0)
        .stdout_has("S1 the cross-signed CAs (and the old, for a rollback) staged on local")
        .stdout_has("-old/tls/server-ca.key  (new, mode 0600)")
        .stdout_has("/var/lib/rancher/k3s/server/kcert-rotate-ca/")
        .stdout_has("/tls/etcd/peer-ca.key  (new, mode 0600)")
        .stdout_has("/tls/service.key  (new, mode 0600)")
        .stdout_has("k3s certificate rotate-ca --path /var/lib/rancher/k3s/server/kcert-rotate-ca/")
        .stdout_has("S4 k3s's datastore takes the new CAs and every node restarts onto them (k3s re-issues every leaf): servers one at a time, then the agents")
        .stdout_has("rollback: k3s certificate rotate-ca --path='/var/lib/rancher/k3s/server/kcert-rotate-ca/")
        .stdout_has("-old' --force")
        .stdout_has("delete the kube-system/k3s-serving secret")
        .stdout_has("~ /etc/systemd/system/k3s.service.env")
        .stdout_has("holds a join token's secret: never shown")
        .stdout_has("stop    systemctl stop k3s (skipped: offline)")
        .stdout_has("backup  /var/lib/rancher/k3s/agent/server-ca.crt")
        .stdout_has("run     rm -f '/var/lib/rancher/k3s/server/tls/dynamic-cert.json'")
        .stdout_has("S5 the old roots let go")
        .stdout_has("-prune/tls/server-ca.crt  (new, mode 0644)")
        .stdout_has("backup  /var/lib/rancher/k3s/server/tls/server-ca.crt  (as S4 leaves it)");
    // In S4 a server's leaves are backed up (k3s re-issues them); in S5 only its bundles.
    let s5 = &run.stdout[run.stdout.find("\nS5 ").unwrap()..];
    let s4 = &run.stdout[run.stdout.find("\nS4 ").unwrap()..run.stdout.find("\nS5 ").unwrap()];
    assert!(s4.contains("backup  /var/lib/rancher/k3s/server/tls/serving-kube-apiserver.crt") && !s5.contains("serving-kube-apiserver.crt"), "{}", run.stdout);
    // In S4 the hand-over first, then the secret, then the first stop.
    assert!(s4.find("k3s certificate rotate-ca --path").unwrap() < s4.find("k3s-serving").unwrap() && s4.find("k3s-serving").unwrap() < s4.find("systemctl stop k3s").unwrap());

    // The plan, as JSON: no key, no token secret; what it stages is k3s's layout, judged by
    // openssl; the token follows the staged server CA's hash, as k3s computes it.
    let json = Test::new().args(["rotate-ca", "--local", "--root"]).args([&s2]).args(["--dry-run", "-o", "json"]).run();
    json.status(0);
    let env = std::fs::read_to_string(s2.join("etc/systemd/system/k3s.service.env")).unwrap();
    let token = env.lines().find_map(|l| l.strip_prefix("K3S_TOKEN=")).unwrap().trim_matches('\'');
    let secret = token.rsplit(':').next().unwrap();
    assert!(!json.stdout.contains(secret) && !json.stdout.contains("PRIVATE KEY-----"), "a secret in the plan");
    let plan = json.json();
    let bundle = staged(&plan, "S1", "/tls/server-ca.crt");
    let certs = pem_certs(&bundle);
    assert_eq!(certs.len(), 4, "intermediate, root, cross-signed root, old root");
    assert_eq!(certs[3].trim(), std::fs::read_to_string(tls.join("server-ca.crt")).unwrap().trim(), "the old root last, as it is on disk");
    let d = tmp.path();
    write(d, "bundle.crt", &bundle);
    write(d, "int.crt", &certs[0]);
    write(d, "chain.crt", &[certs[0].as_str(), certs[2].as_str()].concat());
    // The old server CA's leaves verify against the new bundle; the new intermediate verifies
    // against the old root through the cross-signed copy.
    let (ok, out) = verify(d, "bundle.crt", None, tls.join("serving-kube-apiserver.crt").to_str().unwrap());
    assert!(ok, "{out}");
    let (ok, out) = verify(d, tls.join("server-ca.crt").to_str().unwrap(), Some("chain.crt"), "int.crt");
    assert!(ok, "{out}");
    let pruned = staged(&plan, "S5", "/tls/server-ca.crt");
    assert_eq!(pem_certs(&pruned), certs[..2].to_vec(), "the old roots let go: intermediate and new root");
    let tokens: Vec<&serde_json::Value> = plan["stages"].as_array().unwrap().iter().flat_map(|s| s["steps"].as_array().unwrap()).flat_map(|st| st["ops"].as_array().into_iter().flatten()).flat_map(|o| o["files"].as_array().unwrap()).filter(|f| f["recipe"]["kind"] == "join-token").collect();
    assert_eq!(tokens.len(), 1, "{}", json.stdout);
    let old_hash = k3s::ca_hash(&std::fs::read(tls.join("server-ca.crt")).unwrap(), now()).unwrap();
    assert_eq!(tokens[0]["recipe"]["from"], old_hash.as_str());
    assert_eq!(tokens[0]["recipe"]["to"], k3s::ca_hash(bundle.as_bytes(), now()).unwrap().as_str());
    assert_ne!(old_hash, tokens[0]["recipe"]["to"].as_str().unwrap());

    // One CA type: only it staged; the client CA's rotation leaves every token as it is.
    let one = Test::new().args(["rotate-ca", "--local", "--root"]).args([&s2]).args(["--dry-run", "--ca", "client"]).run();
    one.status(0).stdout_has("/tls/client-ca.crt  (new").stdout_has("the server CA's hash does not change: no join token is rewritten");
    assert!(!one.stdout.contains("/tls/server-ca.crt  (new") && !one.stdout.contains("k3s.service.env") && !one.stdout.contains("k3s-serving"), "{}", one.stdout);
    Test::new().args(["rotate-ca", "--local", "--root"]).args([&s2]).args(["--dry-run", "--ca", "cluster"]).run().status(2).stderr_has("--ca cluster: not one of k3s's CA types (client, server, request-header, etcd/peer, etcd/server)");
    // An agent alone has no server to hand the set to.
    Test::new().args(["rotate-ca", "--local", "--root"]).args([tmp.path().join("a1")]).args(["--dry-run"]).run().status(2).stderr_has("no k3s server among the nodes");
    // k3s's start makes the files: on files alone it is refused, nothing changed.
    Test::new().args(["rotate-ca", "--local", "--root"]).args([&s2]).args(["--yes"]).run().status(2).stderr_has("files alone (--root) cannot be changed this way");
    assert_eq!(snapshot(&s2), before, "a refused rotation changed a file");
}

#[test]
fn rotate_ca_on_k3s_names_the_file_that_stops_it() {
    let tmp = tempfile::tempdir().unwrap();
    k3s_tree(tmp.path());
    let s2 = tmp.path().join("s2");
    let tls = s2.join("var/lib/rancher/k3s/server/tls");
    let good = std::fs::read(tls.join("client-ca.crt")).unwrap();
    std::fs::write(tls.join("client-ca.crt"), "not a certificate\n").unwrap();
    let before = snapshot(&s2);
    let run = Test::new().args(["rotate-ca", "--local", "--root"]).args([&s2]).args(["--dry-run", "--ca", "client"]).run();
    run.status(2).stderr_has("/var/lib/rancher/k3s/server/tls/client-ca.crt");
    assert_eq!(snapshot(&s2), before, "a refused rotation changed a file");
    std::fs::write(tls.join("client-ca.crt"), good).unwrap();
    std::fs::remove_file(tls.join("service.key")).unwrap();
    std::fs::write(tls.join("service.key"), "-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n").unwrap();
    let before = snapshot(&s2);
    let run = Test::new().args(["rotate-ca", "--local", "--root"]).args([&s2]).args(["--dry-run", "--ca", "server"]).run();
    run.status(2).stderr_has("/var/lib/rancher/k3s/server/tls/service.key: service.key: key 1 of 1");
    assert_eq!(snapshot(&s2), before, "a refused rotation changed a file");
}

#[test]
fn renew_on_k3s_says_which_file_of_a_pair_is_missing_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    k3s_tree(tmp.path());
    let s1 = tmp.path().join("s1");
    let crt = "/var/lib/rancher/k3s/server/tls/serving-kube-apiserver.crt";
    std::fs::remove_file(s1.join(&crt[1..])).unwrap();
    let before = snapshot(&s1);
    // Its key is backed up and the tool told; the missing half is named, not passed over.
    let run = Test::new().args(["renew", "--local", "--root"]).args([&s1]).args(["--dry-run", "--certs", "api-server"]).run();
    run.status(0)
        .stdout_has("backup  /var/lib/rancher/k3s/server/tls/serving-kube-apiserver.key")
        .stdout_has("k3s makes the 3 files above again")
        .stdout_has(&format!("note    {crt} is not there, though /var/lib/rancher/k3s/server/tls/serving-kube-apiserver.key is"));
    assert!(!run.stdout.contains(&format!("backup  {crt}")), "{}", run.stdout);
    assert_eq!(snapshot(&s1), before, "a dry run changed a file");
    // An agent has no server files, and neither half of them: nothing to say of them.
    let agent = Test::new().args(["renew", "--local", "--root"]).args([tmp.path().join("a1")]).args(["--dry-run"]).run();
    agent.status(0);
    assert!(!agent.stdout.contains("is not there"), "{}", agent.stdout);
}

#[test]
fn renew_on_k3s_says_when_a_key_is_not_the_key_of_its_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    k3s_tree(tmp.path());
    let s1 = tmp.path().join("s1");
    let crt = "/var/lib/rancher/k3s/server/tls/serving-kube-apiserver.crt";
    let key = "/var/lib/rancher/k3s/server/tls/serving-kube-apiserver.key";
    // Another key where the apiserver's serving key was: the pair no longer matches.
    must(s1.join(&key[1..]).parent().unwrap(), &["genrsa", "-out", "serving-kube-apiserver.key", "2048"]);
    let before = snapshot(&s1);
    let run = Test::new().args(["renew", "--local", "--root"]).args([&s1]).args(["--dry-run", "--certs", "api-server"]).run();
    run.status(0).stdout_has(&format!("backup  {key}")).stdout_has(&format!("note    {key} is not the key of {crt} (CN=kube-apiserver"));
    assert!(run.stdout.contains("k3s makes both again, which mends the pair"), "{}", run.stdout);
    assert_eq!(snapshot(&s1), before, "a dry run changed a file");
    // Not a key at all: said so, by file.
    std::fs::write(s1.join(&key[1..]), "not a key\n").unwrap();
    let run = Test::new().args(["renew", "--local", "--root"]).args([&s1]).args(["--dry-run", "--certs", "api-server"]).run();
    run.status(0).stdout_has(&format!("note    {key} cannot be checked against {crt}: no private key kcert can read in it"));
    // A matching pair is not remarked on.
    let fresh = tempfile::tempdir().unwrap();
    k3s_tree(fresh.path());
    let run = Test::new().args(["renew", "--local", "--root"]).args([fresh.path().join("s1")]).args(["--dry-run"]).run();
    run.status(0);
    assert!(!run.stdout.contains("which mends the pair") && !run.stdout.contains("cannot be checked against"), "{}", run.stdout);
}

#[test]
fn renew_dry_run_on_the_real_world_k3s_sets_names_k3s_s_commands() {
    let rw = common::real_world();
    // k3s.yaml alone (a server's): the admin's embedded certificate, by the server's unit.
    let run = Test::new().args(["renew", "--local", "--root"]).args([rw.join("k3s-Towak4153-K3s-kluster")]).args(["--dry-run"]).run();
    run.status(0).stdout_has("systemctl stop k3s (skipped").stdout_has("backup  /etc/rancher/k3s/k3s.yaml").stdout_has("k3s certificate rotate --service admin (skipped").stdout_has("O=system:masters, CN=system:admin, expires 2025-02-21");
    // A server's apiserver client cert and key.
    let run = Test::new().args(["renew", "--local", "--root"]).args([rw.join("k3s-bl000m-k3d_keycloak")]).args(["--dry-run"]).run();
    run.status(0).stdout_has("k3s certificate rotate --service api-server (skipped").stdout_has("backup  /var/lib/rancher/k3s/server/tls/client-kube-apiserver.key");
    // k3s v1.17's k3s.yaml holds no client certificate: nothing for k3s to make again.
    let run = Test::new().args(["renew", "--local", "--root"]).args([rw.join("k3s-legacy-cly1213-k3s-3nodes")]).args(["--dry-run"]).run();
    run.status(0).stdout_has("nothing to renew");
    // A public repository holds no CA key: the new CAs cannot be cross-signed, and the refusal
    // says which key and whose command needs it.
    let run = Test::new().args(["rotate-ca", "--local", "--root"]).args([rw.join("k3s-bl000m-k3d_keycloak")]).args(["--dry-run"]).run();
    run.status(2).stderr_has("the server CA cannot be cross-signed: /var/lib/rancher/k3s/server/tls/server-ca.key is not there").stderr_has("as `k3s certificate rotate-ca` requires");
}
