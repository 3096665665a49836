//! The fuzz corpus, replayed without the fuzzer: every file under `fuzz/corpus/<target>/` goes
//! through the same parser entry points the fuzz targets drive (`fuzz/src/lib.rs`, included
//! here), and each must return, Ok or Err, without a panic and within a time bound. Inputs that
//! once crashed a parser live in the corpus, so they stay fixed. And hostile YAML (alias bombs,
//! 10,000-deep nesting, a 50 MB scalar) and hostile plans are refused fast, at every parse site.

#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod targets;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Generous: a debug build on a loaded 2-core machine. A hang or an alias bomb takes far longer.
const BOUND: Duration = Duration::from_secs(20);

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target)
}

/// Runs `f` on a thread: Err names a panic or a run past `bound`.
fn bounded<T: Send + 'static>(bound: Duration, f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    let (tx, rx) = mpsc::channel();
    let started = Instant::now();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(bound) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(p)) => Err(format!("panicked: {}", p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default())),
        Err(_) => Err(format!("still running after {:?}", started.elapsed())),
    }
}

fn replay(target: &str) {
    let f = targets::TARGETS.iter().find(|(n, _)| *n == target).map(|(_, f)| *f).unwrap_or_else(|| panic!("no target {target}"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus(target)).unwrap_or_else(|e| panic!("fuzz/corpus/{target}: {e}")).map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(!files.is_empty(), "fuzz/corpus/{target} is empty");
    let mut failed = Vec::new();
    for file in &files {
        let data = std::fs::read(file).unwrap();
        if let Err(e) = bounded(BOUND, move || f(&data)) {
            failed.push(format!("{}: {e}", file.display()));
        }
    }
    assert!(failed.is_empty(), "{} of {} inputs of {target} failed:\n{}", failed.len(), files.len(), failed.join("\n"));
    eprintln!("{target}: {} inputs replayed", files.len());
}

macro_rules! replays {
    ($($t:ident),*) => { $( #[test] fn $t() { replay(stringify!($t)); } )* };
}
mod corpus {
    use super::replay;
    replays!(inventory, ssh_config, known_hosts, pem, kubeconfig, manifest, unit, playbook, plan, journal);
}

#[test]
fn every_corpus_directory_is_a_target_and_every_target_has_one() {
    let dirs: Vec<String> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    for d in &dirs {
        assert!(targets::TARGETS.iter().any(|(n, _)| n == d), "fuzz/corpus/{d} is no target of fuzz/src/lib.rs");
    }
    let cargo = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/Cargo.toml")).unwrap();
    for (n, _) in targets::TARGETS {
        assert!(dirs.iter().any(|d| d == n), "target {n} has no fuzz/corpus/{n}");
        assert!(cargo.contains(&format!("name = \"{n}\"")), "target {n} is not a [[bin]] of fuzz/Cargo.toml");
    }
}

// ---- hostile input at every parse site ----

fn alias_bomb(prefix: &str) -> String {
    let mut t = format!("{prefix}a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..12 {
        t.push_str(&format!("a{i}: &a{i} [{}]\n", vec![format!("*a{}", i - 1); 10].join(", ")));
    }
    t
}

/// The same bomb as one flow value, to stand where a site reads a value: 10^12 laughs.
fn inline_bomb() -> String {
    let mut items = vec!["&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]".to_string()];
    for i in 1..12 {
        items.push(format!("&a{i} [{}]", vec![format!("*a{}", i - 1); 10].join(", ")));
    }
    format!("[{}]", items.join(", "))
}

/// Hostile values, by name, each to stand in a document where the site reads a value.
fn hostile_values() -> Vec<(&'static str, String)> {
    vec![
        ("alias bomb", inline_bomb()),
        ("10,000-deep flow nesting", format!("{}{}", "[".repeat(10_000), "]".repeat(10_000))),
        ("50 MB scalar", "x".repeat(50 << 20)),
    ]
}

type Site = (&'static str, &'static str, fn(&str) -> Option<String>);

/// Every YAML parse site kcert has: a document it accepts, with `@@` where a hostile value goes,
/// and the error it gives (None: it accepted the text).
fn parse_sites() -> Vec<Site> {
    vec![
        ("inventory", "cluster: @@\nssh: {config_file: none, user: ops}\nnodes: [{name: a, host: h, roles: [worker]}]\n", |t| {
            kcert::reach::inventory::parse(t, Path::new("/nonexistent/inv.yaml"), &Default::default()).err().map(|e| e.to_string())
        }),
        ("ansible yaml inventory", "all:\n  hosts:\n    n1:\n      ansible_user: @@\n  children:\n    kube_node:\n      hosts:\n        n1:\n", |t| {
            kcert::reach::inventory::parse_any(t, Path::new("/nonexistent/hosts.yaml"), &Default::default()).err().map(|e| e.to_string())
        }),
        ("playbook", "name: @@\ndescription: d\ndetect: [/x]\npki_dir: /x\nscan: [/x]\nfiles: []\ncomponents: []\n", |t| kcert::playbook::parse(t, "pb.yaml", None).err().map(|e| e.to_string())),
        ("kubeconfig", "apiVersion: v1\nclusters:\n- name: c\n  cluster: {server: https://x, certificate-authority: @@}\n", |t| kcert::pki::kubeconfig::parse_kubeconfig(t.as_bytes()).err()),
        ("kubeconfig identity", "clusters:\n- name: c\n  cluster: {server: @@}\n", |t| kcert::pki::kubeconfig::identity(t.as_bytes()).err()),
        ("kubeconfig user key", "users:\n- name: u\n  user: {client-key: @@}\n", |t| kcert::pki::kubeconfig::user_key(t.as_bytes(), "u").err()),
        ("static pod manifest", "spec:\n  containers:\n  - command: [kube-apiserver, @@]\n", |t| kcert::pki::manifest::manifest_flags(t).err()),
        ("etcd config", "name: etcd0\ncert-file: @@\n", |t| kcert::pki::unit::etcd_config(t, "/etc/etcd/etcd.yaml").err()),
        // What the kubelet's config is read with (gather::facts).
        ("kubelet config", "authentication: {x509: {clientCAFile: @@}}\n", |t| kcert::pki::yaml::from_str::<serde_json::Value>(t).err().map(|e| e.to_string())),
    ]
}

#[test]
fn hostile_yaml_is_refused_fast_at_every_parse_site() {
    let mut failed = Vec::new();
    for (site, template, parse) in parse_sites() {
        // The template itself is accepted: what refuses the hostile ones is their hostility.
        let sane = template.replace("@@", "v");
        if let Some(e) = parse(&sane) {
            failed.push(format!("{site}: the template is refused: {e}"));
        }
        let mut texts: Vec<(&str, String)> = hostile_values().into_iter().map(|(what, v)| (what, template.replace("@@", &v))).collect();
        texts.push(("10,000-deep block nesting", format!("{sane}zz:\n{}x\n", "- ".repeat(10_000))));
        texts.push(("alias bomb beside", format!("{sane}{}", alias_bomb("zz: 1\n"))));
        for (what, text) in texts {
            let t = Instant::now();
            match bounded(Duration::from_secs(5), move || parse(&text)) {
                Ok(Some(e)) => eprintln!("{site}, {what}: refused in {:?}: {}", t.elapsed(), e.lines().next().unwrap_or("")),
                Ok(None) => failed.push(format!("{site}, {what}: accepted")),
                Err(e) => failed.push(format!("{site}, {what}: {e}")),
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn the_yaml_limits_name_what_they_refused() {
    let e = |t: &str| kcert::pki::yaml::from_str::<serde_json::Value>(t).unwrap_err().to_string();
    assert!(e(&format!("a: {}\n", "x".repeat(50 << 20))).contains("too large"));
    assert!(e(&alias_bomb("")).contains("alias bomb"), "{}", e(&alias_bomb("")));
    assert!(e(&format!("a:\n{}x\n", "- ".repeat(10_000))).contains("nested deeper than 32 levels"));
    assert!(e(&format!("a: {}{}\n", "[".repeat(10_000), "]".repeat(10_000))).contains("nested deeper than 32 levels"));
    // Where the type takes anything: a kubeconfig's unknown fields are skipped, but skipping
    // still expands them; the budget stops it, and the error says what it was.
    let kc = kcert::pki::kubeconfig::parse_kubeconfig(alias_bomb("apiVersion: v1\nclusters: []\n").as_bytes()).unwrap_err();
    assert!(kc.contains("alias bomb"), "{kc}");
    // What real files do with anchors still works.
    let v: serde_json::Value = kcert::pki::yaml::from_str("d: &d {a: 1}\nx:\n  <<: *d\n  b: 2\n").unwrap();
    assert_eq!(v["x"]["a"], 1);
}

#[test]
fn hostile_plans_are_refused_fast() {
    let read = |bytes: Vec<u8>| bounded(Duration::from_secs(5), move || kcert::plan::read::read(&bytes, Path::new("plan.json")).map(|_| ()).map_err(|e| e.to_string()));
    let deep = format!("{{\"kind\":\"renew\",\"version\":2,\"x\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
    let e = read(deep.into_bytes()).expect("returns").expect_err("refused");
    assert!(e.contains("recursion limit"), "{e}");
    // A saved plan kcert made, with one field made 50 MB long.
    let good = std::fs::read_to_string(corpus("plan").join("renew-plan.json")).unwrap();
    read(good.clone().into_bytes()).expect("returns").expect("the corpus's renew plan reads");
    let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
    v["cluster"] = serde_json::Value::String("x".repeat(50 << 20));
    let e = read(serde_json::to_vec(&v).unwrap()).expect("returns").expect_err("refused");
    assert!(e.contains("longer than any file kcert writes"), "{e}");
}
