//! The test fleet for scenario binaries (fleet.rs, rotation_fleet.rs, hardway_fleet.rs,
//! k3s_fleet.rs): one fleet per run under a name of its own, scenarios run in order against it,
//! torn down whatever happened. Without a Docker daemon the run fails and says so; it never skips.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};

use super::{Run, Test, kubeconfig_certs, pem_certs};

pub struct Node {
    pub name: String,
    pub container: String,
    pub ip: String,
    pub control_plane: bool,
}

pub struct Fleet {
    pub name: String,
    pub state: PathBuf,
    pub nodes: Vec<Node>,
    /// `kubeadm` (the default layout), `hardway` (binaries from systemd units) or `k3s`.
    pub flavour: &'static str,
}

/// Where a flavour's PKI and the files that say how it is used live on a node: what a
/// snapshot covers and where kcert's temporary files could be left.
pub fn pki_paths(flavour: &str) -> &'static [&'static str] {
    match flavour {
        "k3s" => &["/var/lib/rancher/k3s/server/tls", "/var/lib/rancher/k3s/server/cred", "/var/lib/rancher/k3s/agent", "/etc/rancher/k3s", "/etc/systemd/system"],
        "hardway" => &["/var/lib/kubernetes", "/etc/etcd", "/var/lib/kubelet", "/var/lib/kube-proxy", "/opt/kubernetes/cfg", "/etc/systemd/system", "/etc/kubernetes", "/root/admin.kubeconfig", "/home/ops/.kube"],
        _ => &["/etc/kubernetes", "/var/lib/kubelet"],
    }
}

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd:?} failed ({}):\n{}{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Fleet {
    pub fn up(small_pki: Option<&str>) -> Fleet {
        Fleet::up_flavour("kubeadm", small_pki)
    }

    /// A fleet of `flavour` (`docker/fleet up --flavour`).
    pub fn up_flavour(flavour: &'static str, small_pki: Option<&str>) -> Fleet {
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() % 100_000;
        let name = format!("kt{}-{stamp}", std::process::id());
        let state = repo().join("target/fleet").join(&name);
        let mut fleet = Fleet { name: name.clone(), state: state.clone(), nodes: Vec::new(), flavour };
        let mut up = Command::new(repo().join("docker/fleet"));
        up.args(["up", &name, "--state"]).arg(&state);
        if flavour != "kubeadm" {
            up.args(["--flavour", flavour]);
        }
        if let Some(n) = small_pki {
            up.args(["--small-pki", n]);
        }
        if let Err(e) = run(&mut up) {
            drop(fleet);
            panic!("the test fleet did not come up (fleet tests need a Docker daemon; they never skip):\n{e}");
        }
        let tsv = std::fs::read_to_string(state.join("nodes.tsv")).unwrap();
        fleet.nodes = tsv
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                Node { name: f[0].into(), container: f[1].into(), ip: f[2].into(), control_plane: f[3].contains("control-plane") }
            })
            .collect();
        fleet
    }

    pub fn inventory(&self) -> PathBuf {
        self.state.join("inventory.yaml")
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes.iter().find(|n| n.name == name).unwrap()
    }

    pub fn kcert(&self, args: &[&str]) -> Test {
        Test::new().args(args.iter().copied()).args(["-i".as_ref(), self.inventory().as_os_str()])
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = run(Command::new(repo().join("docker/fleet")).args(["down", &self.name]));
    }
}

/// A shell script run as root inside a container.
pub fn sh(container: &str, script: &str) -> String {
    run(Command::new("docker").args(["exec", container, "sh", "-ec", script])).unwrap_or_else(|e| panic!("{e}"))
}

pub fn wait_for(container: &str, script: &str) {
    for _ in 0..120 {
        if run(Command::new("docker").args(["exec", container, "sh", "-c", script])).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    panic!("{container}: gave up waiting for `{script}`");
}

pub fn derived_inventory(f: &Fleet, dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let inv = dir.join("inventory.yaml");
    std::fs::write(&inv, edit(std::fs::read_to_string(f.inventory()).unwrap())).unwrap();
    inv
}

/// sha256 of every file under the PKI directories of every node (the flavour's: see
/// `pki_paths`); on a hardway or k3s fleet also every symbolic link there and where it points,
/// and each file's mode.
pub fn pki_snapshot(f: &Fleet) -> std::collections::BTreeMap<String, String> {
    let script = match f.flavour {
        "hardway" | "k3s" => format!(
            r#"set --; for p in {}; do [ ! -e "$p" ] || set -- "$@" "$p"; done
            find "$@" -type f -print0 | sort -z | xargs -0 sha256sum
            find "$@" -type f -printf '%m %p\n' | sort
            find "$@" -type l -printf '%p -> %l\n' | sort"#,
            pki_paths(f.flavour).join(" ")
        ),
        _ => "find /etc/kubernetes /var/lib/kubelet -type f -print0 | sort -z | xargs -0 sha256sum".to_string(),
    };
    f.nodes.iter().map(|n| (n.name.clone(), sh(&n.container, &script))).collect()
}

pub fn assert_same_snapshot(what: &str, a: &std::collections::BTreeMap<String, String>, b: &std::collections::BTreeMap<String, String>) {
    for (node, sums) in a {
        assert_eq!(sums, &b[node], "{what}: files on {node} differ");
    }
}

pub fn probe(f: &Fleet, verb: &str) -> Result<String, String> {
    run(Command::new(repo().join("docker/probe")).args([verb, &f.name, "--state"]).arg(&f.state))
}

/// Runs `what` while the probes make handshakes along every edge: starts them, runs `what`,
/// stops them. Returns what `what` returned and what `probe stop` said (`Err`: a handshake failed).
pub fn under_probes<T>(f: &Fleet, what: impl FnOnce() -> T) -> (T, Result<String, String>) {
    probe(f, "start").unwrap();
    let out = what();
    (out, probe(f, "stop"))
}

/// Fails, saying `during` what ("during the rotation"), when a handshake failed; prints the
/// probes' table otherwise.
pub fn no_failed_handshake(probes: Result<String, String>, during: &str) {
    let table = probes.unwrap_or_else(|e| panic!("handshakes failed {during}:\n{e}"));
    eprintln!("{table}");
}

/// `kcert verify --live` exits 0 and finds nothing broken.
pub fn verify_live_clean(f: &Fleet) {
    f.kcert(&["verify", "--live"]).run().status(0).stdout_has(" 0 broken");
}

/// A scenario's kcert state dir, beside the fleet's state (not created here).
pub fn kcert_state(f: &Fleet, name: &str) -> PathBuf {
    f.state.join("kcert-state").join(name)
}

/// Keeps a text beside the fleet's state (`outputs/NAME.txt`), for a reader and for
/// rotation_fleet's scan for private key bytes.
pub fn keep_text(f: &Fleet, name: &str, text: &str) {
    let dir = f.state.join("outputs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.txt")), text).unwrap();
}

/// Keeps a command's output (its command line, stdout and stderr), as `keep_text`.
pub fn keep(f: &Fleet, name: &str, r: &Run) {
    keep_text(f, name, &format!("{}\n--- stdout\n{}\n--- stderr\n{}", r.cmdline, r.stdout, r.stderr));
}

/// The first run folder (`runs/<id>`) of a kcert state dir, as the directory lists it.
pub fn first_run(sd: &Path) -> PathBuf {
    std::fs::read_dir(sd.join("runs")).unwrap().flatten().next().unwrap().path()
}

/// How many `written` journal records each file has in a state dir, keyed by the records'
/// `fields` (e.g. step, node, path).
pub fn writes(sd: &Path, fields: &[&str]) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for v in journal_lines(sd).iter().filter(|v| v["event"] == "written") {
        *seen.entry(fields.iter().map(|k| v[*k].to_string()).collect::<Vec<_>>().join(" ")).or_insert(0) += 1;
    }
    seen
}

/// No file has two `written` records (see `writes`).
pub fn assert_written_once(seen: &BTreeMap<String, usize>) {
    assert!(seen.values().all(|n| *n == 1), "a file was written twice: {:?}", seen.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>());
}

/// openssl inside the container, on one PEM certificate: (serial, not_after, subject).
pub fn openssl_in(container: &str, pem: &str) -> (String, String, String) {
    let script = format!("printf '%s' '{pem}' | openssl x509 -noout -serial -enddate -subject -nameopt sep_comma_plus_space,esc_2253,utf8,sname -dateopt iso_8601");
    let out = sh(container, &script);
    let field = |k: &str| out.lines().find_map(|l| l.strip_prefix(k)).unwrap().to_string();
    (field("serial=").to_lowercase(), field("notAfter=").replace(' ', "T"), field("subject="))
}

/// The rows of an `expiry -o json` for one node and source (`file`, `kubeconfig`, `endpoint`).
pub fn certs_of(json: &serde_json::Value, node: &str, source: &str) -> Vec<serde_json::Value> {
    json["certificates"].as_array().unwrap().iter().filter(|c| c["node"] == node && c["source"] == source).cloned().collect()
}

/// A certificate as kcert's expiry and openssl are compared on: (path, source, serial,
/// not_after, subject).
pub type CertRow = (String, String, String, String, String);

/// Every certificate (PEM blocks, kubeconfig data) in the files that the shell command `find`
/// lists in the container, read by openssl there: what is on the node, enumerated
/// independently of kcert.
pub fn openssl_rows(container: &str, find: &str) -> BTreeSet<CertRow> {
    let mut rows = BTreeSet::new();
    for path in sh(container, find).lines() {
        let text = sh(container, &format!("cat '{path}'"));
        for (source, blocks) in [("file", pem_certs(&text)), ("kubeconfig", kubeconfig_certs(&text))] {
            for b in blocks {
                let (serial, not_after, subject) = openssl_in(container, &b);
                rows.insert((path.to_string(), source.to_string(), serial, not_after, subject));
            }
        }
    }
    rows
}

/// kcert's `file` and `kubeconfig` rows for `node` in an `expiry -o json`, as `CertRow`s.
pub fn kcert_rows(json: &serde_json::Value, node: &str) -> BTreeSet<CertRow> {
    ["file", "kubeconfig"]
        .iter()
        .flat_map(|s| certs_of(json, node, s))
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap().to_string();
            (s("path"), s("source"), s("serial"), s("not_after"), s("subject"))
        })
        .collect()
}

/// Every port of `node` serves the cert of the file behind it: the `endpoint` rows of an
/// `expiry -o json` are those of `ports`, each `ok`.
pub fn assert_ports_serve_their_files(json: &serde_json::Value, node: &str, ports: BTreeSet<String>) {
    let served: BTreeSet<String> = certs_of(json, node, "endpoint").iter().map(|c| c["path"].as_str().unwrap().to_string()).collect();
    assert_eq!(served, ports, "{node}: served ports");
    for c in certs_of(json, node, "endpoint") {
        assert_eq!(c["status"], "ok", "{c}");
    }
}

/// `openssl ARGS...` run in `dir` succeeds.
pub fn openssl_ok(dir: &Path, args: &[&str]) -> bool {
    Command::new("openssl").args(args).current_dir(dir).output().unwrap().status.success()
}

/// openssl verifies the certificate `pem` against the CA file `ca_file` in `dir` (`pem` is
/// written there as cert.pem first).
pub fn verifies(dir: &Path, ca_file: &str, pem: &str) -> bool {
    std::fs::write(dir.join("cert.pem"), pem).unwrap();
    openssl_ok(dir, &["verify", "-CAfile", ca_file, "cert.pem"])
}

/// The certificate `addr` serves, as openssl's s_client sees it from cp1 with the client
/// cert `cert`/`key` (paths on cp1).
pub fn served_cert(f: &Fleet, addr: &str, cert: &str, key: &str) -> String {
    sh(&f.node("cp1").container, &format!("openssl s_client -connect {addr} -cert {cert} -key {key} </dev/null 2>/dev/null | openssl x509"))
}

/// All three etcd members answer healthy to etcdctl on cp1, with the CA and client cert given
/// (paths on cp1).
pub fn assert_etcd_healthy(f: &Fleet, cacert: &str, cert: &str, key: &str) {
    let eps: Vec<String> = f.nodes.iter().filter(|n| n.control_plane).map(|n| format!("https://{}:2379", n.ip)).collect();
    let health = sh(&f.node("cp1").container, &format!("ETCDCTL_API=3 etcdctl --endpoints={} --cacert {cacert} --cert {cert} --key {key} endpoint health 2>&1", eps.join(",")));
    assert_eq!(health.matches("is healthy").count(), 3, "{health}");
}

pub fn walk_journal(state: &Path) -> PathBuf {
    let runs = state.join("runs");
    let mut all: Vec<PathBuf> = std::fs::read_dir(&runs).unwrap().flatten().map(|e| e.path().join("journal.jsonl")).collect();
    all.sort();
    all.pop().expect("a run journal")
}

/// Starts kcert in the background, its output kept in `dir`.
pub fn spawn(f: &Fleet, args: &[&str], dir: &Path, name: &str) -> Child {
    spawn_env(f, args, dir, name, &[])
}

/// `spawn` with environment variables set for kcert (`KCERT_FAULT`).
pub fn spawn_env(f: &Fleet, args: &[&str], dir: &Path, name: &str, env: &[(&str, &str)]) -> Child {
    let out = std::fs::File::create(dir.join(format!("{name}.out"))).unwrap();
    let err = std::fs::File::create(dir.join(format!("{name}.err"))).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_kcert"));
    c.args(args).args(["-i".as_ref(), f.inventory().as_os_str()]).env("NO_COLOR", "1").env_remove("KCERT_FAULT");
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdin(Stdio::null()).stdout(out).stderr(err).spawn().unwrap()
}

/// What a kcert started by `spawn` as `name` printed: its stdout, then its stderr.
pub fn spawned_output(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}.out"))).unwrap() + &std::fs::read_to_string(dir.join(format!("{name}.err"))).unwrap()
}

pub fn journal_lines(sd: &Path) -> Vec<serde_json::Value> {
    let Ok(runs) = std::fs::read_dir(sd.join("runs")) else { return Vec::new() };
    let mut out = Vec::new();
    for r in runs.flatten() {
        let text = std::fs::read_to_string(r.path().join("journal.jsonl")).unwrap_or_default();
        out.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok()));
    }
    out
}

/// SIGKILLs `child` as soon as the journal gets a record matching `when` (beyond `skip`
/// records already there); fails when kcert ends first.
pub fn kill_when(child: &mut Child, sd: &Path, skip: usize, what: &str, when: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(400);
    loop {
        if journal_lines(sd).iter().skip(skip).any(&when) {
            child.kill().unwrap();
            child.wait().unwrap();
            eprintln!("killed kcert {what}");
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("kcert ended ({status}) before the kill point {what}");
        }
        assert!(Instant::now() < deadline, "the kill point {what} never came");
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn is(v: &serde_json::Value, event: &str, stage: &str, step: Option<u64>) -> bool {
    v["event"] == event && v["stage"] == stage && step.is_none_or(|s| v["step"] == s)
}

/// No temporary file of an interrupted write is left anywhere kcert writes, on any node.
pub fn assert_no_temp_files(f: &Fleet, after: &str) {
    let dirs = pki_paths(f.flavour).join(" ");
    for n in &f.nodes {
        let left = sh(&n.container, &format!("find {dirs} /var/lib/kcert -name '.kcert.*' 2>/dev/null || true"));
        assert!(left.trim().is_empty(), "{after}: temporary files left on {}:\n{left}", n.name);
    }
}

pub type Scenario = fn(&Fleet);

/// Runs `scenarios` in order against one fleet brought up for this run (`--small-pki NODE`
/// when given), and tears it down.
pub fn harness(scenarios: Vec<(&'static str, Scenario)>, small_pki: Option<&str>) {
    harness_flavour(scenarios, "kubeadm", small_pki)
}

/// `harness` on a fleet of `flavour`.
pub fn harness_flavour(scenarios: Vec<(&'static str, Scenario)>, flavour: &'static str, small_pki: Option<&str>) {
    let args = Arguments::from_args();
    let selected = |name: &str| match &args.filter {
        Some(f) if args.exact => name == f,
        Some(f) => name.contains(f.as_str()),
        None => true,
    } && !args.skip.iter().any(|s| name.contains(s.as_str()));
    // Bring the fleet up only when a scenario will run (not for --list or a filter that excludes all).
    let needed = !args.list && scenarios.iter().any(|(n, _)| selected(n));
    let fleet = needed.then(|| std::sync::Arc::new(Fleet::up_flavour(flavour, small_pki)));
    let trials = scenarios
        .into_iter()
        .map(|(name, scenario)| {
            let fleet = fleet.clone();
            Trial::test(name, move || {
                let fleet = fleet.ok_or_else(|| Failed::from("no fleet"))?;
                let started = Instant::now();
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(&fleet)));
                eprintln!("{name}: {:.1}s", started.elapsed().as_secs_f64());
                result.map_err(|e| {
                    Failed::from(e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default())
                })
            })
        })
        .collect();
    // Scenarios share one fleet and change it in turn: run them one at a time, in order.
    let mut args = args;
    args.test_threads = Some(1);
    let conclusion = libtest_mimic::run(&args, trials);
    drop(fleet);
    conclusion.exit();
}
