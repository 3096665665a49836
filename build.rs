//! Owns: keeping kcert's layers honest at build time: every module imports only the layers
//! below its own, and the modules that must do no I/O (`pki`, `playbook`, `plan`,
//! `gather::facts`, `text`, `error`) import no module or crate that does. A change that breaks
//! either rule fails `cargo build`, naming the file, the line and the rule.
//! Must not: look at anything but `src/`, or change a file.

use std::path::{Path, PathBuf};

/// The layers, from the user down: a module may use its own layer's modules only when they are
/// the same top-level module, and any module of a lower layer.
pub const LAYERS: &[(&str, u8)] = &[
    ("cli", 10),
    ("render", 9),
    ("ops", 8),
    ("report", 7),
    ("run", 6),
    ("plan", 5),
    ("gather", 4),
    ("reach", 3),
    ("playbook", 2),
    ("pki", 1),
    ("text", 0),
    ("error", 0),
    ("fault", 0),
    ("par", 0),
];

/// Modules that do no I/O, and may use only one another.
pub const PURE: &[&str] = &["pki", "playbook", "plan", "gather::facts", "text", "error", "par"];

/// What a pure module must not name: crates and std modules that reach outside the process.
pub const IO: &[&str] = &["tokio::", "russh", "futures::", "std::fs", "std::process", "std::net::Tcp", "std::net::Udp", "async fn", ".await"];

fn layer(top: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == top).map(|(_, l)| *l)
}

fn is_pure(path: &[String]) -> bool {
    let joined = path.join("::");
    PURE.iter().any(|p| joined == *p || joined.starts_with(&format!("{p}::")))
}

/// The module path of a source file under `src`: `src/plan/rotation/mod.rs` -> plan::rotation.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap_or(file);
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs").to_string();
        if stem != "mod" && stem != "lib" && stem != "main" {
            parts.push(stem);
        }
    }
    parts
}

/// The `a::b::c` path at the start of `t`, and what follows it.
fn path_at(t: &str) -> (Vec<String>, &str) {
    let word = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let mut path = Vec::new();
    let mut t = t;
    loop {
        let w = word(t);
        if w.is_empty() || w == "self" {
            break;
        }
        t = &t[w.len()..];
        path.push(w);
        match t.strip_prefix("::") {
            Some(n) => t = n,
            None => break,
        }
    }
    (path, t)
}

/// The module paths a line names: `crate::a::b` as [a, b], `super::x` resolved against `here`.
fn references(line: &str, here: &[String], is_mod_file: bool) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        let tail = &rest[i + 7..];
        if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_')) {
            let (path, _) = path_at(tail);
            if !path.is_empty() {
                out.push(path);
            }
        }
        rest = tail;
    }
    // `super::` from a file module climbs from its parent; a `mod.rs` is its own parent.
    let mut rest = line;
    while let Some(i) = rest.find("super::") {
        let after_word = rest[..i].chars().last().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
        let mut t = &rest[i..];
        if after_word {
            rest = &t[7..];
            continue;
        }
        let mut base: Vec<String> = here.to_vec();
        if !is_mod_file {
            base.pop();
        }
        while let Some(n) = t.strip_prefix("super::") {
            base.pop();
            t = n;
        }
        let (path, after) = path_at(t);
        base.extend(path);
        out.push(base);
        rest = after;
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Every broken rule under `src`, as `file:line: what`.
pub fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut out = Vec::new();
    for file in files {
        let here = module_of(src, &file);
        let Some(top) = here.first().cloned() else { continue };
        let Some(mine) = layer(&top) else {
            out.push(format!("{}: module {top} is in no layer (add it to build.rs's LAYERS)", file.display()));
            continue;
        };
        let pure = is_pure(&here);
        let is_mod_file = file.file_name().is_some_and(|n| n == "mod.rs");
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim_start();
            // Unit tests come last in a file and may use what they like (openssl, temp files).
            if line == "#[cfg(test)]" {
                break;
            }
            if line.starts_with("//") {
                continue;
            }
            let at = format!("{}:{}", file.display(), i + 1);
            for r in references(line, &here, is_mod_file) {
                let Some(target) = r.first() else { continue };
                let Some(theirs) = layer(target) else { continue };
                if *target != top && theirs >= mine {
                    out.push(format!("{at}: {} (layer {mine}) uses {} (layer {theirs}): imports go down the layers only", here.join("::"), r.join("::")));
                }
                if pure && !is_pure(&r) {
                    out.push(format!("{at}: {} does no I/O, but uses {}, which may", here.join("::"), r.join("::")));
                }
            }
            if pure && let Some(io) = IO.iter().find(|io| line.contains(*io)) {
                out.push(format!("{at}: {} does no I/O, but names {io}", here.join("::")));
            }
        }
    }
    out
}

#[allow(dead_code)]
fn main() {
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=build.rs");
    let src = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("src");
    let bad = violations(&src);
    if !bad.is_empty() {
        panic!("kcert's layers are broken ({} problems):\n  {}", bad.len(), bad.join("\n  "));
    }
}
