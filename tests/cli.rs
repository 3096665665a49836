//! The command line's contract: bad input exits 2 with a message naming file, line and
//! field, and writes nothing anywhere; exit codes and formats are as documented.

mod common;

use std::path::Path;

use common::Test;

/// Every file below `dir`, for "nothing was written" checks.
fn tree(dir: &Path) -> Vec<String> {
    common::walk(dir, dir).into_iter().map(|(_, rel)| rel).collect()
}

/// Runs kcert on an inventory in an empty HOME and checks that it changed no file there.
fn refused(inventory: &str, expect: &[&str]) {
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let inv = work.path().join("prod.yaml");
    std::fs::write(&inv, inventory).unwrap();
    for cmd in ["check", "expiry"] {
        let run = Test::new().env("HOME", home.path()).args([cmd, "-i"]).args([&inv]).run();
        run.status(2);
        for e in expect {
            run.stderr_has(e);
        }
        assert!(run.stdout.is_empty(), "nothing on stdout: {}", run.stdout);
    }
    assert!(tree(home.path()).is_empty(), "HOME untouched: {:?}", tree(home.path()));
    assert_eq!(tree(work.path()), vec!["/prod.yaml"]);
}

#[test]
fn malformed_yaml_names_file_and_line() {
    refused("cluster: c\nnodes:\n  - name: a\n    host: [unclosed\n    roles: [worker]\n", &["prod.yaml:", "kcert: error"]);
}

#[test]
fn an_unknown_field_is_named_with_its_line() {
    refused("cluster: c\nnodes:\n  - name: cp1\n    host: 10.0.0.1\n    roles: [worker]\n    hostname: x\n", &["prod.yaml:6:5:", "unknown field `hostname`"]);
}

#[test]
fn a_duplicate_node_is_named_with_both_lines() {
    refused(
        "cluster: c\nnodes:\n  - name: cp1\n    host: 10.0.0.1\n    roles: [worker]\n  - name: cp1\n    host: 10.0.0.2\n    roles: [worker]\n",
        &["prod.yaml:6:", "nodes[1].name", "duplicate node name \"cp1\" (first defined at line 3)"],
    );
}

#[test]
fn a_missing_identity_file_is_named() {
    refused(
        "cluster: c\nssh:\n  identity_file: /nonexistent/id_ed25519\nnodes:\n  - name: cp1\n    host: 10.0.0.1\n    roles: [worker]\n",
        &["prod.yaml:3:", "ssh.identity_file", "/nonexistent/id_ed25519"],
    );
}

#[test]
fn a_bad_role_and_a_missing_host_are_named() {
    refused("cluster: c\nnodes:\n  - name: cp1\n    host: 10.0.0.1\n    roles: [master]\n", &["prod.yaml:5:", "roles", "master"]);
    refused("cluster: c\nnodes:\n  - name: cp1\n    roles: [worker]\n", &["prod.yaml:3:", "nodes[0].host"]);
}

#[test]
fn a_missing_inventory_file_is_bad_input() {
    Test::new().args(["expiry", "-i", "/nonexistent/inventory.yaml"]).run().status(2).stderr_has("/nonexistent/inventory.yaml");
}

#[test]
fn usage_errors_exit_2() {
    Test::new().args(["expiry"]).run().status(2);
    Test::new().args(["expiry", "--local", "-i", "x.yaml"]).run().status(2);
    Test::new().args(["expiry", "--local", "--root", "/nonexistent-root"]).run().status(2).stderr_has("/nonexistent-root");
    Test::new().args(["expiry", "--local", "--root", "/", "--path", "relative/dir"]).run().status(2).stderr_has("must be absolute");
    Test::new().args(["check", "--local", "-o", "prom"]).run().status(2);
}

#[test]
fn help_documents_the_exit_codes() {
    for cmd in [vec!["--help"], vec!["expiry", "--help"], vec!["check", "--help"]] {
        Test::new().args(cmd).run().status(0).stdout_has("Exit codes:").stdout_has("3  expiry/verify found");
    }
}

#[test]
fn completions_and_man_page_are_generated() {
    Test::new().args(["completions", "bash"]).run().status(0).stdout_has("kcert");
    Test::new().args(["completions", "man"]).run().status(0).stdout_has(".TH kcert");
}

/// A PKI made with openssl in a temporary root: one healthy CA and leaf, one near expiry.
fn openssl_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let pki = root.path().join("etc/kubernetes/pki");
    std::fs::create_dir_all(&pki).unwrap();
    let sh = |script: &str| {
        let out = std::process::Command::new("sh").arg("-ec").arg(script).current_dir(&pki).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj /CN=kubernetes 2>/dev/null");
    sh("openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out a.csr -subj /CN=kube-apiserver 2>/dev/null && \
        openssl x509 -req -in a.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 365 2>/dev/null && rm a.csr");
    sh("openssl req -newkey rsa:2048 -nodes -keyout front-proxy-client.key -out f.csr -subj /CN=front-proxy-client 2>/dev/null && \
        openssl x509 -req -in f.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out front-proxy-client.crt -days 10 2>/dev/null && rm f.csr");
    root
}

#[test]
fn warn_window_decides_exit_3() {
    let root = openssl_root();
    // 10 days left is inside the default 30d window...
    let run = Test::new().args(["expiry", "--local", "--root"]).args([root.path()]).run();
    run.status(3);
    let line = run.stdout.lines().find(|l| l.contains("front-proxy-client")).unwrap();
    assert!(line.contains("warning") && (line.contains(" 9d ") || line.contains(" 10d ")), "{line}");
    // ...and outside a 5-day one.
    Test::new().args(["expiry", "--local", "--warn", "5d", "--root"]).args([root.path()]).run().status(0);
}

#[test]
fn a_corrupt_pem_is_an_error_row_naming_the_file() {
    let root = openssl_root();
    let crt = root.path().join("etc/kubernetes/pki/apiserver.crt");
    let text = std::fs::read_to_string(&crt).unwrap();
    std::fs::write(&crt, &text[..text.len() / 2]).unwrap();
    let run = Test::new().args(["expiry", "--local", "--warn", "1d", "-o", "json", "--root"]).args([root.path()]).run();
    run.status(3);
    let json = run.json();
    let errs = json["errors"].as_array().unwrap();
    assert_eq!(errs.len(), 1, "{json}");
    assert_eq!(errs[0]["path"], "/etc/kubernetes/pki/apiserver.crt");
    assert!(errs[0]["error"].as_str().unwrap().contains("corrupt PEM"), "{json}");
    // The other certificates are still reported.
    assert_eq!(json["certificates"].as_array().unwrap().len(), 2);
}

#[test]
fn check_offline_counts_pki_files() {
    let root = openssl_root();
    let run = Test::new().args(["check", "--local", "-o", "json", "--root"]).args([root.path()]).run();
    run.status(0);
    let json = run.json();
    let node = &json["nodes"][0];
    assert_eq!(node["distribution"], "kubeadm");
    assert_eq!(node["pki_files"], 6, "{json}");
    assert!(node["free_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn the_example_inventory_is_valid() {
    // Every field documented in inventory.example.yaml must parse (its identity file is
    // swapped for a readable one, since the example's cannot exist on a test machine).
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id");
    std::fs::write(&key, "x").unwrap();
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory.example.yaml"))
        .unwrap()
        .replace("~/.ssh/id_ed25519   #", &format!("{}   #", key.display()))
        .replace("config_file: ~/.ssh/config ", "config_file: none ");
    let inv = dir.path().join("inv.yaml");
    std::fs::write(&inv, text).unwrap();
    let inv = kcert::reach::inventory::load(&inv, &Default::default()).unwrap();
    assert_eq!(inv.nodes.len(), 3);
    assert_eq!(inv.nodes[2].ssh.port, 2222);
    assert_eq!(inv.nodes[2].ssh.user, "admin");
    assert_eq!(inv.nodes[0].ssh.jump.as_ref().unwrap().host, "bastion.example.net");
}

#[test]
fn each_command_takes_only_the_formats_it_can_print() {
    let state = tempfile::tempdir().unwrap();
    let sd = state.path().to_str().unwrap();
    let root = openssl_root();
    let r = root.path().to_str().unwrap();
    for (args, bad) in [
        (vec!["runs", "--state-dir", sd], "prom"),
        (vec!["runs", "--state-dir", sd], "dot"),
        (vec!["check", "--local", "--root", r], "prom"),
        (vec!["renew", "--local", "--root", r, "--dry-run"], "dot"),
        (vec!["rotate-ca", "--local", "--root", r, "--dry-run"], "prom"),
        (vec!["apply", "/nonexistent/plan.json"], "prom"),
        (vec!["resume", "--state-dir", sd], "dot"),
        (vec!["rollback", "--state-dir", sd], "prom"),
        (vec!["expiry", "--local", "--root", r], "dot"),
        (vec!["verify", "--local", "--root", r], "prom"),
    ] {
        Test::new().args(&args).args(["-o", bad]).run().status(2).stderr_has(&format!("invalid value '{bad}'"));
    }
    Test::new().args(["runs", "--state-dir", sd, "-o", "json"]).run().status(0).stdout_has("\"runs\": []");
}

#[test]
fn a_node_without_a_distribution_or_pki_is_a_failed_row_not_an_empty_report() {
    let empty = tempfile::tempdir().unwrap();
    let e = empty.path().to_str().unwrap();
    let run = Test::new().args(["expiry", "--local", "--root", e, "-o", "json"]).run();
    run.status(1);
    let errs = run.json()["errors"].as_array().unwrap().clone();
    assert_eq!(errs.len(), 1, "{}", run.stdout);
    assert!(errs[0]["error"].as_str().unwrap().contains("no PKI found") && errs[0]["error"].as_str().unwrap().contains("no known distribution"), "{}", errs[0]);
    Test::new().args(["check", "--local", "--root", e]).run().status(1).stdout_has("no known distribution detected").stdout_has("no PKI files found");
    Test::new().args(["verify", "--local", "--root", e]).run().status(1).stderr_has("no known distribution found");
    // With a distribution named but none of its files there: the same, naming where it looked.
    let run = Test::new().args(["expiry", "--local", "--root", e, "--distribution", "kubeadm"]).run();
    run.status(1).stdout_has("none where the kubeadm playbook looks");
}

/// `--inventory-from-ansible` runs `ansible-inventory -i FILE --list`. Ansible is not
/// installed here: a STAND-IN script prints what the real one prints for a dynamic inventory
/// (the `--list` JSON shape of ansible/cli/inventory.py: groups with hosts/children/vars,
/// `_meta.hostvars`). The nodes it names are unreachable ports, so the rows show what kcert
/// took from it: names, addresses, ports.
#[test]
fn a_dynamic_inventory_is_read_through_ansible_inventory() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let script = bin.join("ansible-inventory");
    std::fs::write(&script, "#!/bin/sh\n# STAND-IN for ansible-inventory (see the test's comment)\n[ \"$1\" = -i ] && [ \"$3\" = --list ] || { echo \"unexpected arguments: $*\" >&2; exit 5; }\nexec cat \"$2.json\"\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cloud = dir.path().join("eu-cloud");
    std::fs::create_dir(&cloud).unwrap();
    let inv = cloud.join("aws_ec2.yaml");
    std::fs::write(&inv, "plugin: amazon.aws.aws_ec2\nregions: [eu-west-1]\n").unwrap();
    std::fs::write(
        cloud.join("aws_ec2.yaml.json"),
        r#"{"_meta": {"hostvars": {"cp-a": {"ansible_host": "127.0.0.1", "ansible_port": 1}, "wk-b": {"ansible_host": "127.0.0.1", "ansible_port": 9}}},
            "all": {"children": ["ungrouped", "kube_control_plane", "kube_node"]},
            "kube_control_plane": {"hosts": ["cp-a"]}, "kube_node": {"hosts": ["wk-b"]}}"#,
    )
    .unwrap();
    std::fs::write(cloud.join("kcert.yaml"), "ssh:\n  config_file: none\n  user: ops\n").unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let run = Test::new().args(["expiry", "--inventory-from-ansible", "--connect-timeout", "2s", "-i"]).args([&inv]).env("PATH", &path).run();
    run.status(1).stdout_has("cp-a").stdout_has("wk-b").stdout_has("cp-a: cannot connect to [127.0.0.1]:1").stdout_has("wk-b: cannot connect to [127.0.0.1]:9");
    // Without the flag, the plugin config is no inventory kcert can read itself: said plainly.
    Test::new().args(["expiry", "-i"]).args([&inv]).env("PATH", &path).run().status(2).stderr_has("aws_ec2.yaml").stderr_has("--inventory-from-ansible");
    // `runs`, `resume` and `rollback` read it through Ansible too: they try cp-a (the one
    // control-plane node, refused at its port) for the cluster's runs; without the flag, the
    // plugin config is refused as above, nothing reached.
    let state = dir.path().join("state");
    for cmd in [&["runs"][..], &["resume", "--yes"], &["rollback", "--yes"]] {
        let run = Test::new().args(cmd).args(["--state-dir"]).args([&state]).args(["--inventory-from-ansible", "-i"]).args([&inv]).env("PATH", &path).run();
        run.status(1).stderr_has("no control-plane node answers").stderr_has("cp-a: cannot connect to [127.0.0.1]:1");
        Test::new().args(cmd).args(["--state-dir"]).args([&state]).args(["-i"]).args([&inv]).env("PATH", &path).run().status(2).stderr_has("--inventory-from-ansible");
    }
    // Without ansible-inventory on PATH: said, with what to do.
    Test::new().args(["expiry", "--inventory-from-ansible", "-i"]).args([&inv]).env("PATH", "/nonexistent").run().status(2).stderr_has("ansible-inventory is not installed");
}
