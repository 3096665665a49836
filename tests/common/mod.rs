//! Shared test helpers: a builder that runs the real kcert binary, and openssl-based oracles.
#![allow(dead_code)]

pub mod fleet;

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Test {
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
}

impl Test {
    pub fn new() -> Test {
        Test { args: Vec::new(), env: vec![("NO_COLOR".into(), "1".into())] }
    }

    pub fn args<I, S>(mut self, args: I) -> Test
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, k: impl Into<OsString>, v: impl Into<OsString>) -> Test {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn run(self) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kcert"));
        cmd.args(&self.args).stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("kcert runs");
        Run {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            cmdline: format!("kcert {}", self.args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")),
        }
    }
}

pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
    pub cmdline: String,
}

impl Run {
    fn explain(&self) -> String {
        format!("`{}` exited {}\n--- stdout\n{}\n--- stderr\n{}", self.cmdline, self.status, self.stdout, self.stderr)
    }

    pub fn status(&self, code: i32) -> &Run {
        assert_eq!(self.status, code, "{}", self.explain());
        self
    }

    pub fn stdout_has(&self, s: &str) -> &Run {
        assert!(self.stdout.contains(s), "stdout lacks {s:?}\n{}", self.explain());
        self
    }

    pub fn stderr_has(&self, s: &str) -> &Run {
        assert!(self.stderr.contains(s), "stderr lacks {s:?}\n{}", self.explain());
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON: {e}\n{}", self.explain()))
    }
}

/// `../shared` beside the checkout; its absence is a failure, never a skip.
pub fn shared_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    assert!(dir.join("fixtures/real-world/INDEX.md").exists(), "the shared fixtures are missing at {}: CI and developers have ../shared beside the checkout", dir.display());
    dir.canonicalize().unwrap()
}

pub fn real_world() -> PathBuf {
    shared_dir().join("fixtures/real-world")
}

/// What openssl says of one certificate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OpensslFacts {
    pub subject: String,
    pub serial: String,
    pub not_after: String,
}

/// Runs `openssl x509` on one PEM certificate, with a name format comparable to kcert's.
pub fn openssl_facts(pem: &str) -> OpensslFacts {
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-serial", "-enddate", "-nameopt", "sep_comma_plus_space,esc_2253,utf8,sname", "-dateopt", "iso_8601"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is installed");
    child.stdin.take().unwrap().write_all(pem.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl x509 failed: {}\n{pem}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let field = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)).unwrap_or_else(|| panic!("no {k} in {text}")).to_string();
    // iso_8601 prints "2025-02-03 07:54:33Z"
    OpensslFacts { subject: field("subject="), serial: field("serial=").to_lowercase(), not_after: field("notAfter=").replace(' ', "T") }
}

/// The PEM certificate blocks of a text, in order.
pub fn pem_certs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        let l = line.trim();
        if l == "-----BEGIN CERTIFICATE-----" {
            cur = Some(String::new());
        }
        if let Some(c) = cur.as_mut() {
            c.push_str(l);
            c.push('\n');
        }
        if l == "-----END CERTIFICATE-----" {
            out.extend(cur.take());
        }
    }
    out
}

/// Certificates embedded in a kubeconfig's `*-certificate-*-data` values.
pub fn kubeconfig_certs(text: &str) -> Vec<String> {
    use base64::Engine;
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(':')?;
            (k == "certificate-authority-data" || k == "client-certificate-data").then(|| v.trim().to_string())
        })
        .filter_map(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
        .flat_map(|pem| pem_certs(&String::from_utf8_lossy(&pem)))
        .collect()
}

/// Every file below `dir`, as (absolute path, path relative to `root` with a leading /).
pub fn walk(root: &Path, dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(root, &p));
        } else if p.is_file() {
            out.push((p.clone(), format!("/{}", p.strip_prefix(root).unwrap().display())));
        }
    }
    out.sort();
    out
}

/// (path, source) -> what openssl says of each certificate there, sorted.
pub type Expected = std::collections::BTreeMap<(String, String), Vec<OpensslFacts>>;

/// What kcert must report of a tree, as openssl sees it: every certificate in every file
/// below `scopes` (PEM files and kubeconfig data), by (path, source).
pub fn expected_in(set: &Path, scopes: &[&str]) -> Expected {
    let mut exp = Expected::new();
    for scope in scopes {
        for (file, rel) in walk(set, &set.join(scope.trim_start_matches('/'))) {
            if ["/REPORT.md", "/SOURCE.md"].contains(&rel.as_str()) {
                continue;
            }
            let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
            for (source, certs) in [("file", pem_certs(&text)), ("kubeconfig", kubeconfig_certs(&text)), ("secret", tls_secret_certs(&text))] {
                if !certs.is_empty() {
                    let mut facts: Vec<OpensslFacts> = certs.iter().map(|c| openssl_facts(c)).collect();
                    facts.sort();
                    exp.insert((rel.clone(), source.to_string()), facts);
                }
            }
        }
    }
    exp
}

/// The certificates of a `kubernetes.io/tls` Secret kept as JSON (k3s's dynamic-cert.json):
/// `data["tls.crt"]`, base64-decoded.
pub fn tls_secret_certs(text: &str) -> Vec<String> {
    use base64::Engine;
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else { return Vec::new() };
    if v["kind"] != "Secret" || v["type"] != "kubernetes.io/tls" {
        return Vec::new();
    }
    let crt = base64::engine::general_purpose::STANDARD.decode(v["data"]["tls.crt"].as_str().unwrap_or_default()).unwrap_or_default();
    pem_certs(&String::from_utf8_lossy(&crt))
}

/// What `kcert expiry -o json` reported, in `expected_in`'s form.
pub fn reported(json: &serde_json::Value) -> Expected {
    let mut got = Expected::new();
    for c in json["certificates"].as_array().unwrap() {
        let s = |k: &str| c[k].as_str().unwrap_or_else(|| panic!("{k} missing in {c}")).to_string();
        got.entry((s("path"), s("source"))).or_default().push(OpensslFacts { subject: s("subject"), serial: s("serial"), not_after: s("not_after") });
    }
    for v in got.values_mut() {
        v.sort();
    }
    got
}

/// Equal maps, or a failure that shows only the entries that differ.
pub fn assert_same(set: &str, got: &Expected, want: &Expected) {
    let keys: std::collections::BTreeSet<_> = got.keys().chain(want.keys()).collect();
    let diffs: Vec<String> = keys
        .into_iter()
        .filter(|k| got.get(*k) != want.get(*k))
        .map(|k| format!("{k:?}\n  kcert:   {:?}\n  openssl: {:?}", got.get(k), want.get(k)))
        .collect();
    assert!(diffs.is_empty(), "{set}: kcert and openssl disagree on {} file(s):\n{}", diffs.len(), diffs.join("\n"));
}

/// Every base64 line (40+ characters: unmistakable) of every private key under `dirs`, and the
/// start of every kubeconfig `client-key-data`: what must never appear in kcert's output.
pub fn private_key_lines(dirs: &[&Path]) -> Vec<String> {
    let mut out = Vec::new();
    for dir in dirs {
        for (p, _) in walk(dir, dir) {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let mut inside = false;
            for l in text.lines() {
                if l.starts_with("-----BEGIN") && l.contains("PRIVATE KEY") {
                    inside = true;
                } else if l.starts_with("-----END") {
                    inside = false;
                } else if inside && l.len() >= 40 {
                    out.push(l.to_string());
                }
                if let Some(v) = l.trim().strip_prefix("client-key-data:") {
                    out.push(v.trim()[..60.min(v.trim().len())].to_string());
                }
            }
        }
    }
    out
}

/// A file's text as a person reads it: a saved plan (gzip-compressed JSON) decompressed, any
/// other file as it is. Scans for leaked key bytes read files through this, so a compressed
/// plan is searched, not passed over.
pub fn text_of(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = kcert::plan::stored::json_of(&bytes, u64::MAX - 1).unwrap_or_else(|e| panic!("{}: {e}", path.display())).into_owned();
    String::from_utf8(text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A saved plan's JSON (`--plan-out FILE`, or `plan.json.gz` in a run folder).
pub fn plan_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&text_of(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every file below `root`, by path: its bytes' sha256.
pub fn snapshot(root: &Path) -> std::collections::BTreeMap<String, String> {
    walk(root, root).into_iter().map(|(p, rel)| (rel, kcert::pki::sha256(&std::fs::read(p).unwrap()))).collect()
}

/// Two servers (s1, s2) and an agent (a1) of a k3s cluster, or with `product` "rke2" an RKE2
/// one, as it lays their files out (`docker/pki/make-k3s-pki.sh`, openssl only).
pub fn rancher_tree(dir: &Path, product: &str) {
    let script = format!("{}/docker/pki/make-k3s-pki.sh", env!("CARGO_MANIFEST_DIR"));
    let ok = Command::new("bash").arg(script).arg(dir).args(["s1:10.0.0.1:server", "s2:10.0.0.2:server", "a1:10.0.1.1:agent"]).env("PRODUCT", product).status().unwrap();
    assert!(ok.success(), "make-k3s-pki.sh ({product})");
}

/// The recipe text of a k3s/RKE2 rotation plan's staged file ending in `name` (the new set, not
/// the old), in the stage `stage`.
pub fn staged(plan: &serde_json::Value, stage: &str, name: &str) -> String {
    let stage = plan["stages"].as_array().unwrap().iter().find(|s| s["id"] == stage).unwrap();
    let op = stage["steps"][0]["ops"][0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"].as_str().is_some_and(|p| p.ends_with(name) && !p.contains("-old/")))
        .unwrap_or_else(|| panic!("{name} not staged"));
    let text = &op["recipe"]["text"];
    // A saved plan stores each text once, by sha256; a dry run's JSON carries it in place.
    text.as_str().map(str::to_string).unwrap_or_else(|| plan["texts"][text["sha256"].as_str().unwrap()].as_str().unwrap().to_string())
}
