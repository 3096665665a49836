//! Layouts a hostile tester made from the real-world kubeadm sets with openssl, on which
//! `rotate-ca` (and `renew`, `apply`, `resume`, `rollback`, `verify`) once reported success and
//! left the cluster broken or unsafe. Each is now handled right, judged by openssl, or refused
//! with exit 2 and nothing changed.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Test, pem_certs, walk};

const SET: &str = "kubeadm-sijong09-k8s";

struct Tree {
    _dir: tempfile::TempDir,
    root: PathBuf,
    state: PathBuf,
    work: PathBuf,
}

fn tree(set: &str) -> Tree {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    assert!(Command::new("cp").arg("-a").arg(common::real_world().join(set)).arg(&root).status().unwrap().success());
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    Tree { state: dir.path().join("state"), work, root, _dir: dir }
}

impl Tree {
    fn pki(&self, f: &str) -> PathBuf {
        self.root.join("etc/kubernetes/pki").join(f)
    }
    fn etc(&self, f: &str) -> PathBuf {
        self.root.join("etc/kubernetes").join(f)
    }
    fn kcert(&self, args: &[&str]) -> Test {
        Test::new().args(args.iter().copied()).args(["--state-dir".as_ref(), self.state.as_os_str()])
    }
    fn local(&self, cmd: &str, extra: &[&str]) -> Test {
        let mut a = vec![cmd, "--local", "--root", self.root.to_str().unwrap()];
        a.extend_from_slice(extra);
        self.kcert(&a)
    }
    /// A report (expiry, verify): it keeps no state.
    fn report(&self, cmd: &str, extra: &[&str]) -> Test {
        Test::new().args([cmd, "--local", "--root", self.root.to_str().unwrap()]).args(extra.iter().copied())
    }
    fn snapshot(&self) -> BTreeMap<String, String> {
        walk(&self.root, &self.root).into_iter().filter(|(_, r)| !r.starts_with("/var/lib/kcert/")).map(|(p, r)| (r, sha256(&std::fs::read(p).unwrap()))).collect()
    }
    fn read(&self, p: &Path) -> String {
        std::fs::read_to_string(p).unwrap()
    }
    /// Does openssl verify `cert` (PEM text) against `ca_file`?
    fn verifies(&self, ca_file: &Path, cert: &str) -> bool {
        self.verifies_with(ca_file, cert, &[])
    }
    fn verifies_with(&self, ca_file: &Path, cert: &str, opts: &[&str]) -> bool {
        let f = self.work.join("leaf.pem");
        std::fs::write(&f, cert).unwrap();
        Command::new("openssl").arg("verify").args(opts).arg("-CAfile").arg(ca_file).arg(&f).output().unwrap().status.success()
    }
    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl").args(args).current_dir(&self.work).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    fn edit(&self, p: &Path, f: impl Fn(String) -> String) {
        let text = self.read(p);
        std::fs::write(p, f(text)).unwrap();
    }
}

fn sha256(b: &[u8]) -> String {
    use sha2::Digest;
    kcert::pki::cert::hex(&sha2::Sha256::digest(b))
}

/// `(field, PEM text)` of every `*-data` value of a kubeconfig.
fn data_fields(text: &str) -> Vec<(String, String)> {
    use base64::Engine;
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(": ")?;
            if !k.ends_with("-data") || k == "client-key-data" {
                return None;
            }
            let pem = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(v.trim()).ok()?).ok()?;
            Some((k.to_string(), pem))
        })
        .collect()
}

fn public_key(t: &Tree, args: &[&str], input: &str) -> String {
    let f = t.work.join("in.pem");
    std::fs::write(&f, input).unwrap();
    let out = Command::new("openssl").args(args).arg("-in").arg(&f).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn without_its_manifests_a_node_holding_the_cas_is_not_rotated_blind_and_verify_sees_a_ca_key_that_is_not_its_own() {
    let t = tree(SET);
    std::fs::remove_dir_all(t.etc("manifests")).unwrap();
    let before = t.snapshot();
    let run = t.local("rotate-ca", &["--yes"]).run();
    run.status(2).stderr_has("none of the kubeadm playbook's components is there").stderr_has("will not rotate blind").stderr_has("proves nothing").stderr_has("nothing was changed");
    assert_eq!(t.snapshot(), before, "a refused rotation changes nothing");
    // A CA key that is not its certificate's: verify says so (exit 3), naming both files.
    t.openssl(&["genrsa", "-out", "other.key", "2048"]);
    std::fs::copy(t.work.join("other.key"), t.pki("ca.key")).unwrap();
    t.report("verify", &[]).run().status(3).stdout_has("/etc/kubernetes/pki/ca.crt (CN=kubernetes) and /etc/kubernetes/pki/ca.key are not one matching cert and key");
}

#[test]
fn an_external_etcd_keeps_its_ca_by_default_and_refuses_it_by_name() {
    let t = tree(SET);
    std::fs::remove_file(t.etc("manifests/etcd.yaml")).unwrap();
    t.edit(&t.etc("manifests/kube-apiserver.yaml"), |s| s.lines().map(|l| if l.contains("--etcd-servers=") { "    - --etcd-servers=https://10.9.9.9:2379".to_string() } else { l.to_string() }).collect::<Vec<_>>().join("\n") + "\n");
    let before = t.snapshot();
    t.local("rotate-ca", &["--ca", "etcd", "--yes"]).run().status(2).stderr_has("--ca etcd: kube-apiserver -> etcd on local talks to etcd, which runs on none of the inventory's nodes (--etcd-servers=https://10.9.9.9:2379)");
    assert_eq!(t.snapshot(), before);
    let dry = t.local("rotate-ca", &["--dry-run", "-o", "json"]).run();
    dry.status(0);
    let plan = dry.json();
    let aliases: Vec<&str> = plan["cas"].as_array().unwrap().iter().map(|c| c["alias"].as_str().unwrap()).collect();
    assert_eq!(aliases, ["cluster", "front-proxy"]);
    assert!(plan["notes"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().starts_with("the etcd CA is left alone")), "{}", plan["notes"]);
    t.local("rotate-ca", &["--yes"]).run().status(0);
    let after = t.snapshot();
    for f in ["/etc/kubernetes/pki/etcd/ca.crt", "/etc/kubernetes/pki/etcd/ca.key", "/etc/kubernetes/pki/apiserver-etcd-client.crt"] {
        assert_eq!(after[f], before[f], "{f} is the external etcd's: untouched");
    }
    // (The set's leaves expired long ago: only the signature is in question here.)
    assert!(t.verifies_with(&t.pki("etcd/ca.crt"), &t.read(&t.pki("apiserver-etcd-client.crt")), &["-no_check_time"]), "the apiserver's etcd client cert still verifies against the etcd CA");
    assert_ne!(after["/etc/kubernetes/pki/ca.crt"], before["/etc/kubernetes/pki/ca.crt"], "the cluster CA was rotated");
}

#[test]
fn a_saved_plan_edited_by_hand_is_refused_before_anything_changes() {
    let t = tree(SET);
    let plan = t.work.join("plan.json");
    t.local("rotate-ca", &["--plan-out", plan.to_str().unwrap()]).run().status(0);
    let before = t.snapshot();
    let v = common::plan_json(&plan);
    // S5's write of ca.crt left out: ca.crt would keep old and new while ca.key is the new key.
    let mut cut = v.clone();
    let s5 = cut["stages"].as_array_mut().unwrap().iter_mut().find(|s| s["id"] == "S5").unwrap();
    let files = s5["steps"][0]["ops"][0]["files"].as_array_mut().unwrap();
    let at = files.iter().position(|f| f["path"] == "/etc/kubernetes/pki/ca.crt").unwrap();
    files.remove(at);
    let edited = t.work.join("edited.json");
    std::fs::write(&edited, serde_json::to_vec(&cut).unwrap()).unwrap();
    t.kcert(&["apply", edited.to_str().unwrap(), "--yes"]).run().status(2).stderr_has("does not hold up").stderr_has("would not be one matching cert and key").stderr_has("nothing was changed");
    assert_eq!(t.snapshot(), before);
    // One character of a re-signed certificate changed: its recipe no longer makes its sha256.
    let text = common::text_of(&plan);
    let i = text.find("MII").unwrap() + 40;
    let flip = if &text[i..i + 1] == "A" { "B" } else { "A" };
    std::fs::write(&edited, format!("{}{flip}{}", &text[..i], &text[i + 1..])).unwrap();
    t.kcert(&["apply", edited.to_str().unwrap(), "--yes"]).run().status(2).stderr_has("nothing was changed");
    assert_eq!(t.snapshot(), before);
    assert!(!t.state.join("runs").exists(), "no run was started");
    // The plan as saved runs.
    t.kcert(&["apply", plan.to_str().unwrap(), "--yes"]).run().status(0);
}

#[test]
fn kubeconfigs_are_read_as_kubectl_reads_them_and_one_that_cannot_be_read_stops_the_run() {
    let t = tree(SET);
    // contexts: null (as kubectl writes an empty list), a second cluster sharing the first's CA
    // data, and a second user with a key and certificate of its own.
    t.openssl(&["genrsa", "-out", "u2.key", "2048"]);
    t.openssl(&["req", "-new", "-key", "u2.key", "-subj", "/O=system:masters/CN=second-admin", "-out", "u2.csr"]);
    let ca = t.pki("ca.crt");
    let ca_key = t.pki("ca.key");
    std::fs::write(t.work.join("ext"), "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n").unwrap();
    t.openssl(&["x509", "-req", "-in", "u2.csr", "-CA", ca.to_str().unwrap(), "-CAkey", ca_key.to_str().unwrap(), "-set_serial", "4242", "-days", "100", "-extfile", "ext", "-out", "u2.crt"]);
    use base64::Engine;
    let b64 = |p: &str| base64::engine::general_purpose::STANDARD.encode(std::fs::read(t.work.join(p)).unwrap());
    let admin = t.etc("admin.conf");
    t.edit(&admin, |s| {
        let ca_line = s.lines().find(|l| l.trim_start().starts_with("certificate-authority-data:")).unwrap().to_string();
        let server = s.lines().find(|l| l.trim_start().starts_with("server:")).unwrap().to_string();
        let mut out = String::new();
        let mut skip = false;
        for l in s.lines() {
            if l.starts_with("contexts:") {
                out.push_str("contexts: null\n");
                skip = true;
                continue;
            }
            if skip && (l.starts_with("- ") || l.starts_with("  ")) {
                continue;
            }
            skip = false;
            out.push_str(l);
            out.push('\n');
            if l.starts_with("clusters:") {
                out.push_str(&format!("- cluster:\n{ca_line}\n{server}\n  name: second\n"));
            }
            if l.starts_with("users:") {
                out.push_str(&format!("- name: second-admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n", b64("u2.crt"), b64("u2.key")));
            }
        }
        out
    });
    assert!(t.read(&admin).contains("contexts: null"));
    // Renewed, each user's certificate stays the one of its own key.
    t.local("renew", &["--certs", "admin.conf", "--yes"]).run().status(0);
    let text = t.read(&admin);
    let users: Vec<String> = data_fields(&text).into_iter().filter(|(k, _)| k == "client-certificate-data").map(|(_, v)| v).collect();
    assert_eq!(users.len(), 2, "{text}");
    let second = users.iter().find(|c| public_key(&t, &["x509", "-noout", "-subject"], c).contains("second-admin")).unwrap();
    assert_eq!(public_key(&t, &["x509", "-noout", "-pubkey"], second), public_key(&t, &["pkey", "-pubout"], &std::fs::read_to_string(t.work.join("u2.key")).unwrap()));
    // Rotated: both clusters' CA data hold only the new CA, both users' certs verify against it.
    t.local("rotate-ca", &["--ca", "cluster", "--yes"]).run().status(0);
    let text = t.read(&admin);
    let new_ca = t.read(&ca);
    for (k, v) in data_fields(&text) {
        if k == "certificate-authority-data" {
            assert_eq!(pem_certs(&v), pem_certs(&new_ca), "{k} holds only the new CA");
        } else {
            assert!(t.verifies(&ca, &v), "{k} verifies against the new CA");
        }
    }
    // A value that is not base64: named, refused, nothing changed, for renew and rotate-ca alike.
    t.edit(&t.etc("scheduler.conf"), |s| s.lines().map(|l| if l.trim_start().starts_with("client-certificate-data:") { "    client-certificate-data: notbase64%%%".into() } else { l.to_string() }).collect::<Vec<_>>().join("\n") + "\n");
    let before = t.snapshot();
    for cmd in ["renew", "rotate-ca"] {
        t.local(cmd, &["--yes"]).run().status(2).stderr_has("/etc/kubernetes/scheduler.conf: users[system:kube-scheduler].client-certificate-data: corrupt PEM: bad base64").stderr_has("nothing was changed");
        assert_eq!(t.snapshot(), before, "{cmd}");
    }
}

#[test]
fn an_intermediate_cluster_ca_is_refused_with_what_to_do_alone_or_with_its_root() {
    let t = tree(SET);
    t.openssl(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "root.key", "-out", "root.crt", "-subj", "/CN=offline-root", "-days", "3650"]);
    let key = t.pki("ca.key");
    t.openssl(&["req", "-new", "-key", key.to_str().unwrap(), "-subj", "/CN=kubernetes", "-out", "ca.csr"]);
    std::fs::write(t.work.join("ca.ext"), "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign,digitalSignature\n").unwrap();
    t.openssl(&["x509", "-req", "-in", "ca.csr", "-CA", "root.crt", "-CAkey", "root.key", "-set_serial", "77", "-days", "3650", "-extfile", "ca.ext", "-out", "intermediate.crt"]);
    std::fs::copy(t.work.join("intermediate.crt"), t.pki("ca.crt")).unwrap();
    // The kubeconfigs trust it too, as they would in such a cluster.
    use base64::Engine;
    let (old64, new64) = (base64::engine::general_purpose::STANDARD.encode(std::fs::read(common::real_world().join(SET).join("etc/kubernetes/pki/ca.crt")).unwrap()), base64::engine::general_purpose::STANDARD.encode(std::fs::read(t.work.join("intermediate.crt")).unwrap()));
    for kc in ["admin.conf", "controller-manager.conf", "scheduler.conf", "kubelet.conf"] {
        t.edit(&t.etc(kc), |s| s.replace(&old64, &new64));
    }
    let before = t.snapshot();
    t.local("rotate-ca", &["--yes"]).run().status(2).stderr_has("the cluster CA CN=kubernetes").stderr_has("is an intermediate, issued by CN=offline-root").stderr_has("sign a successor with your root");
    assert_eq!(t.snapshot(), before);
    // Intermediate and root in one file: a chain, said as such, not "a rotation left unfinished".
    let chain = t.read(&t.work.join("intermediate.crt")) + &t.read(&t.work.join("root.crt"));
    std::fs::write(t.pki("ca.crt"), chain).unwrap();
    let run = t.local("rotate-ca", &["--yes"]).run();
    run.status(2).stderr_has("is an intermediate, issued by CN=offline-root (the file also holds the root that issued it)");
    assert!(!run.stderr.contains("left unfinished"), "{}", run.stderr);
    // Leaving it out rotates the others.
    t.local("rotate-ca", &["--ca", "etcd,front-proxy", "--yes"]).run().status(0);
}

#[test]
fn ca_keys_beside_their_certs_corrupt_ca_files_encrypted_keys_and_ed25519_are_handled_or_said() {
    // The front-proxy CA moved to /srv/fp, its key beside it: found there, and rotated.
    let t = tree(SET);
    std::fs::create_dir_all(t.root.join("srv/fp")).unwrap();
    for f in ["front-proxy-ca.crt", "front-proxy-ca.key"] {
        std::fs::rename(t.pki(f), t.root.join("srv/fp").join(f)).unwrap();
    }
    for m in ["kube-apiserver.yaml", "kube-controller-manager.yaml"] {
        t.edit(&t.etc(&format!("manifests/{m}")), |s| s.replace("/etc/kubernetes/pki/front-proxy-ca.crt", "/srv/fp/front-proxy-ca.crt"));
    }
    t.local("rotate-ca", &["--ca", "front-proxy", "--yes"]).run().status(0);
    let fp = t.root.join("srv/fp/front-proxy-ca.crt");
    assert!(t.verifies(&fp, &t.read(&t.pki("front-proxy-client.crt"))));
    assert_eq!(public_key(&t, &["x509", "-noout", "-pubkey"], &t.read(&fp)), public_key(&t, &["pkey", "-pubout"], &t.read(&t.root.join("srv/fp/front-proxy-ca.key"))), "the key beside it is the new CA's");

    // A CA file the flags name that is corrupt: said as corrupt, not "on no node".
    let t = tree(SET);
    std::fs::write(t.pki("front-proxy-ca.crt"), "-----BEGIN CERTIFICATE-----\nMIIBroken\n").unwrap();
    let before = t.snapshot();
    t.local("rotate-ca", &["--yes"]).run().status(2).stderr_has("the front-proxy CA file cannot be read: local: /etc/kubernetes/pki/front-proxy-ca.crt: corrupt PEM");
    assert_eq!(t.snapshot(), before);

    // An encrypted CA key: said, for renew and rotate-ca, nothing changed.
    let t = tree(SET);
    let key = t.pki("ca.key");
    t.openssl(&["pkey", "-in", key.to_str().unwrap(), "-aes256", "-passout", "pass:secret", "-out", "enc.key"]);
    std::fs::copy(t.work.join("enc.key"), &key).unwrap();
    let before = t.snapshot();
    for cmd in ["renew", "rotate-ca"] {
        t.local(cmd, &["--yes"]).run().status(2).stderr_has("the key is encrypted (it needs a passphrase)");
        assert_eq!(t.snapshot(), before, "{cmd}");
    }

    // Ed25519: a new CA of that type, and then rotating an Ed25519 CA again.
    let t = tree(SET);
    for _ in 0..2 {
        let mut a = vec!["--ca", "front-proxy", "--yes"];
        if !public_key(&t, &["x509", "-noout", "-text"], &t.read(&t.pki("front-proxy-ca.crt"))).contains("ED25519") {
            a.extend_from_slice(&["--key-type", "ed25519"]);
        }
        t.local("rotate-ca", &a).run().status(0);
        assert!(public_key(&t, &["x509", "-noout", "-text"], &t.read(&t.pki("front-proxy-ca.crt"))).contains("ED25519"));
        assert!(t.verifies(&t.pki("front-proxy-ca.crt"), &t.read(&t.pki("front-proxy-client.crt"))));
    }
}

#[test]
fn files_that_are_not_configuration_files_are_refused_at_once() {
    let t = tree(SET);
    t.report("expiry", &["--distribution", "/dev/zero"]).run().status(2).stderr_has("playbook /dev/zero").stderr_has("not a regular file");
    for (field, value) in [("distribution", "/dev/zero"), ("ssh:\n  config_file", "/dev/zero")] {
        let inv = t.work.join("inv.yaml");
        std::fs::write(&inv, format!("cluster: c\n{field}: {value}\nnodes:\n  - name: cp1\n    host: 127.0.0.1\n    roles: [control-plane]\n")).unwrap();
        Test::new().args(["check", "-i"]).args([&inv]).run().status(2).stderr_has("not a regular file");
    }
    // A kubeconfig naming a file by a path of 20,000 components: an error row, at once.
    let long = "a/".repeat(20_000);
    t.edit(&t.etc("admin.conf"), |s| s.lines().map(|l| if l.trim_start().starts_with("client-certificate-data:") { format!("    client-certificate: {long}x.crt") } else { l.to_string() }).collect::<Vec<_>>().join("\n") + "\n");
    let run = t.report("expiry", &["-o", "json"]).run();
    assert!(run.json()["errors"].as_array().unwrap().iter().any(|e| e["error"].as_str().unwrap().contains("longer than PATH_MAX")), "{}", run.stdout);
}

#[test]
fn resume_and_rollback_sweep_the_temp_files_a_kill_left_and_a_run_killed_before_it_changed_anything_is_said_so() {
    let t = tree(SET);
    let run = t.local("rotate-ca", &["--yes", "-o", "json"]).run();
    run.status(0);
    let id = run.json()["run_id"].as_str().unwrap().to_string();
    t.kcert(&["rollback", &id, "--to-stage", "S4", "--yes"]).run().status(0);
    // What a kcert killed mid-write leaves: temp files beside the targets and in the backups,
    // and the temporary directory an SSH write makes beside its targets (holding keys).
    let temps = [t.pki(".kcert.4242.0.17"), t.pki("etcd/.kcert.Ab12Cd"), t.root.join(format!("var/lib/kcert/backups/{id}/S4/etc/kubernetes/pki/.kcert.77.1.2"))];
    let temp_dir = t.pki(".kcert.4242.5e1f0c");
    let leave = || {
        std::fs::create_dir_all(&temp_dir).unwrap();
        std::fs::write(temp_dir.join("ca.key"), "what a killed write left: a new CA key").unwrap();
    };
    for p in &temps {
        std::fs::write(p, "what a killed write left: it could be a new CA key").unwrap();
    }
    leave();
    t.kcert(&["resume", &id, "--yes"]).run().status(0);
    for p in temps.iter().chain([&temp_dir]) {
        assert!(!p.exists(), "{} survived resume", p.display());
    }
    for p in &temps[..2] {
        std::fs::write(p, "a temp").unwrap();
    }
    leave();
    t.kcert(&["rollback", &id, "--yes"]).run().status(0);
    for p in temps[..2].iter().chain([&temp_dir]) {
        assert!(!p.exists(), "{} survived rollback", p.display());
    }
    // A run folder whose journal says nothing changed: said so; resume and rollback have nothing to do.
    let empty = "20990101T000000Z-rotate-ca-000000";
    let dir = t.state.join("runs").join(empty);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(t.state.join("runs").join(&id).join("plan.json.gz"), dir.join("plan.json.gz")).unwrap();
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    let first = std::fs::read_to_string(t.state.join("runs").join(&id).join("journal.jsonl")).unwrap().lines().next().unwrap().replace(&id, empty);
    std::fs::write(dir.join("journal.jsonl"), format!("{first}\n")).unwrap();
    t.kcert(&["runs"]).run().status(0).stdout_has("before it changed anything: nothing to resume or roll back");
    t.kcert(&["resume", empty, "--yes"]).run().status(2).stderr_has("nothing to resume");
    t.kcert(&["rollback", empty, "--yes"]).run().status(2).stderr_has("nothing to undo");
}

#[test]
fn s0_finds_what_cannot_be_written_before_s1_writes_and_a_capped_validity_is_said_in_a_real_run() {
    let t = tree(SET);
    // A file where S1 must make its staging directory.
    std::fs::write(t.pki("kcert-rotation"), "in the way").unwrap();
    let before = t.snapshot();
    let run = t.local("rotate-ca", &["--yes"]).run();
    run.status(1).stdout_has("STOPPED: S0 preflight").stdout_has("kcert-rotation is in the way").stdout_has("nothing was changed");
    assert_eq!(t.snapshot(), before, "S0 stopped it before S1 wrote");
    std::fs::remove_file(t.pki("kcert-rotation")).unwrap();
    // New CAs for 100 days, leaves asked for 365: capped, and said in the run's own output.
    t.local("rotate-ca", &["--ca-days", "100", "--days", "365", "--yes"]).run().status(0).stdout_has("re-signed certificates expire with their new CA").stdout_has("sooner than --days 365 asked");
}

#[test]
fn a_webhook_that_trusts_the_cluster_ca_keeps_it_unrotated() {
    let t = tree(SET);
    // The apiserver presents a client certificate the cluster CA signed to a webhook elsewhere.
    t.openssl(&["genrsa", "-out", "wh.key", "2048"]);
    t.openssl(&["req", "-new", "-key", "wh.key", "-subj", "/CN=apiserver-webhook-client", "-out", "wh.csr"]);
    let (ca, ca_key) = (t.pki("ca.crt"), t.pki("ca.key"));
    t.openssl(&["x509", "-req", "-in", "wh.csr", "-CA", ca.to_str().unwrap(), "-CAkey", ca_key.to_str().unwrap(), "-set_serial", "99", "-days", "100", "-out", "wh.crt"]);
    use base64::Engine;
    let b64 = |p: &str| base64::engine::general_purpose::STANDARD.encode(std::fs::read(t.work.join(p)).unwrap());
    std::fs::write(
        t.etc("webhook.conf"),
        format!("apiVersion: v1\nkind: Config\nclusters:\n- name: wh\n  cluster:\n    server: https://authn.example.net:8443\ncontexts:\n- name: wh\n  context: {{cluster: wh, user: apiserver}}\ncurrent-context: wh\nusers:\n- name: apiserver\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n", b64("wh.crt"), b64("wh.key")),
    )
    .unwrap();
    t.edit(&t.etc("manifests/kube-apiserver.yaml"), |s| s.replace("    - --etcd-servers=", "    - --authentication-token-webhook-config-file=/etc/kubernetes/webhook.conf\n    - --etcd-servers="));
    let dry = t.local("rotate-ca", &["--dry-run", "-o", "json"]).run();
    dry.status(0);
    let plan = dry.json();
    assert!(!plan["cas"].as_array().unwrap().iter().any(|c| c["alias"] == "cluster"), "{}", plan["cas"]);
    assert!(plan["notes"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().contains("the cluster CA is left alone: the authentication webhook (/etc/kubernetes/webhook.conf")), "{}", plan["notes"]);
    t.local("rotate-ca", &["--ca", "cluster", "--dry-run"]).run().status(2).stderr_has("the authentication webhook");
}
