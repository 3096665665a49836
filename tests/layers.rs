//! The layering rule `build.rs` enforces, tried on trees it must refuse: an import that goes up
//! a layer, a pure module that uses one doing I/O, a pure module naming tokio. And the real
//! tree passes it (the build itself would fail otherwise; this says why, if it ever does).

#[path = "../build.rs"]
#[allow(dead_code)]
mod build_script;

use std::path::Path;

fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

#[test]
fn the_real_tree_keeps_its_layers() {
    let bad = build_script::violations(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn an_import_up_a_layer_is_named_with_file_and_line() {
    let t = tree(&[("gather/discover.rs", "//! x\nuse crate::run::journal::Record;\n"), ("run/mod.rs", "use crate::plan::Plan;\n")]);
    let bad = build_script::violations(t.path());
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].contains("discover.rs:2") && bad[0].contains("uses run::journal::Record"), "{}", bad[0]);
}

#[test]
fn super_paths_are_resolved_before_judging() {
    // gather::discover reaching `super::super::ops` climbs to the root: upward.
    let t = tree(&[("gather/discover.rs", "use super::super::ops::Mode;\nuse super::facts::NodePki;\n"), ("gather/facts.rs", "")]);
    let bad = build_script::violations(t.path());
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].contains("discover.rs:1") && bad[0].contains("ops::Mode"), "{}", bad[0]);
}

#[test]
fn pure_modules_use_nothing_that_does_io() {
    let t = tree(&[
        ("plan/schema.rs", "use crate::gather::facts::NodeFacts;\nuse crate::gather::discover::detect;\nuse crate::reach::transport::Transport;\n"),
        ("pki/cert.rs", "fn f() { let _ = std::fs::read(\"x\"); }\n#[cfg(test)]\nmod tests { fn g() { std::fs::read(\"y\").ok(); } }\n"),
        ("playbook.rs", "pub async fn load() {}\n"),
    ]);
    let bad = build_script::violations(t.path());
    let said = bad.join("\n");
    assert_eq!(bad.len(), 4, "{said}");
    assert!(said.contains("schema.rs:2") && said.contains("gather::discover::detect"), "{said}");
    assert!(said.contains("schema.rs:3") && said.contains("reach::transport::Transport"), "{said}");
    assert!(said.contains("cert.rs:1") && said.contains("std::fs"), "{said}");
    assert!(said.contains("playbook.rs:1") && said.contains("async fn"), "{said}");
    assert!(!said.contains("schema.rs:1"), "gather::facts is pure: {said}");
}

#[test]
fn the_offline_tier_lists_every_test_binary_but_the_fleet_ones() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = std::fs::read_to_string(repo.join(".cargo/config.toml")).unwrap();
    let alias = config.lines().find_map(|l| l.strip_prefix("test-offline = ")).expect("the test-offline alias");
    let listed: Vec<&str> = alias.trim_matches('"').split_whitespace().collect::<Vec<_>>().windows(2).filter(|w| w[0] == "--test").map(|w| w[1]).collect();
    let manifest = std::fs::read_to_string(repo.join("Cargo.toml")).unwrap();
    for entry in std::fs::read_dir(repo.join("tests")).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".rs") else { continue };
        // The fleet binaries bring Docker containers up (`fleet`, `*_fleet`): a custom harness
        // each, in Cargo.toml.
        let fleet = stem == "fleet" || stem.ends_with("_fleet");
        if fleet {
            assert!(manifest.contains(&format!("name = \"{stem}\"\nharness = false")), "tests/{name}: a fleet test without its own harness in Cargo.toml");
        }
        assert_eq!(listed.contains(&stem), !fleet, "tests/{name}: {} the offline tier", if fleet { "a fleet test in" } else { "missing from" });
    }
}
