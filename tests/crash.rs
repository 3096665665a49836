//! The crash matrix, offline: a full `rotate-ca` of a real-world kubeadm set (`--root`) is
//! killed (SIGKILL, by kcert's own fault point `KCERT_FAULT`) right after every journal record
//! it writes, and in every batch of atomic writes between its temp files and their renames.
//! After each kill, one copy of the tree is carried on with `resume`, another undone with
//! `rollback` (half of them from the node's own copy of the run, as a machine that never saw
//! it would): every resumed tree passes the checks an uninterrupted rotation passes (openssl
//! the judge), every rolled-back tree is byte for byte the tree before. The counts are printed.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{kubeconfig_certs, pem_certs, walk};

const SET: &str = "kubeadm-zetaoss-zeta-linux";

fn kcert(args: &[&str], fault: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kcert"));
    c.args(args).env("NO_COLOR", "1").env_remove("KCERT_FAULT");
    if let Some(f) = fault {
        c.env("KCERT_FAULT", f);
    }
    c.output().unwrap()
}

fn cp(from: &Path, to: &Path) {
    assert!(Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap().success(), "cp -a {}", from.display());
}

/// sha256 of every file of a tree, kcert's own records on the node (backups, run copies,
/// the lease) left out.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    use sha2::Digest;
    walk(root, root).into_iter().filter(|(_, rel)| !rel.starts_with("/var/lib/kcert/")).map(|(p, rel)| (rel, kcert::pki::cert::hex(&sha2::Sha256::digest(std::fs::read(p).unwrap())))).collect()
}

/// Every CA certificate of the tree's three CA files.
fn cas(root: &Path) -> Vec<String> {
    ["ca.crt", "etcd/ca.crt", "front-proxy-ca.crt"].iter().flat_map(|f| pem_certs(&std::fs::read_to_string(root.join("etc/kubernetes/pki").join(f)).unwrap_or_default())).collect()
}

/// openssl's verdict on each leaf of the tree against a CA file: (what, verified).
fn verdicts(root: &Path, ca: &str, scratch: &Path) -> Vec<(String, bool)> {
    let mut leaves = Vec::new();
    for (p, rel) in walk(root, &root.join("etc/kubernetes")) {
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        if rel.contains("/pki/") && !rel.ends_with("ca.crt") && !rel.contains("kcert-rotation") {
            leaves.extend(pem_certs(&text).into_iter().take(1).map(|c| (rel.clone(), c)));
        }
        if rel.ends_with(".conf") {
            leaves.extend(kubeconfig_certs(&text).into_iter().skip(1).map(|c| (format!("{rel} client cert"), c)));
        }
    }
    std::fs::write(scratch.join("ca.pem"), ca).unwrap();
    let mut files = Vec::new();
    for (i, (_, pem)) in leaves.iter().enumerate() {
        let f = scratch.join(format!("leaf{i}.pem"));
        std::fs::write(&f, pem).unwrap();
        files.push(f);
    }
    // One openssl run for all: it says `FILE: OK` for each that verifies.
    let out = Command::new("openssl").args(["verify", "-no_check_time", "-CAfile"]).arg(scratch.join("ca.pem")).args(&files).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    leaves.into_iter().zip(&files).map(|((what, _), f)| (what, text.contains(&format!("{}: OK", f.display())))).collect()
}

/// What an uninterrupted rotation leaves, or why this tree falls short: each CA file holds one
/// new CA, every leaf and kubeconfig client cert verifies against the new CAs and none against
/// the old, no file holds an old CA, no staging directory is left.
fn rotated(root: &Path, old: &[String], scratch: &Path) -> Result<(), String> {
    let new = cas(root);
    if new.len() != 3 || new.iter().any(|c| old.contains(c)) {
        return Err(format!("the CA files hold {} certificates, {} of them old", new.len(), new.iter().filter(|c| old.contains(c)).count()));
    }
    for (what, ok) in verdicts(root, &new.concat(), scratch) {
        if !ok {
            return Err(format!("{what} does not verify against the new CAs"));
        }
    }
    for (what, ok) in verdicts(root, &old.concat(), scratch) {
        if ok {
            return Err(format!("{what} still verifies against an old CA"));
        }
    }
    for (p, rel) in walk(root, &root.join("etc/kubernetes")) {
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        if pem_certs(&text).into_iter().chain(kubeconfig_certs(&text)).any(|c| old.contains(&c)) {
            return Err(format!("{rel} still holds an old CA"));
        }
    }
    if root.join("etc/kubernetes/pki/kcert-rotation").exists() {
        return Err("the staging directory is left".into());
    }
    Ok(())
}

struct Point {
    fault: String,
    /// Resume and roll back from the node's copy of the run, with a state dir that never saw it.
    from_node: bool,
}

/// One kill point: the killed tree, copied; `resume` on one copy, `rollback` on the other.
/// Ok(what happened) when both ends are consistent.
fn try_point(base: &Path, before: &BTreeMap<String, String>, old: &[String], p: &Point) -> Result<String, String> {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let (a, sa) = (w.join("a"), w.join("a-state"));
    cp(base, &a);
    let args = |root: &Path, state: &Path| -> Vec<String> { vec!["--local".into(), "--root".into(), root.display().to_string(), "--yes".into(), "--state-dir".into(), state.display().to_string()] };
    let mut rotate = vec!["rotate-ca".to_string()];
    rotate.extend(args(&a, &sa));
    let run = kcert(&rotate.iter().map(String::as_str).collect::<Vec<_>>(), Some(&p.fault));
    if run.status.code().is_some() {
        // The run ended before the point came: there are no more points of this kind.
        return Ok("no kill".into());
    }
    let (b, sb) = (w.join("b"), w.join("b-state"));
    cp(&a, &b);
    if sa.exists() {
        cp(&sa, &sb);
    }
    // Resume on a; rollback on b. From the node: the state dirs are new, the tree's copy counts.
    let (ra, rb) = if p.from_node { (w.join("a-fresh"), w.join("b-fresh")) } else { (sa.clone(), sb.clone()) };
    // Each copy is reached as its own tree (`--root`): the run recorded the first one's path.
    let reach = |root: &Path, state: &Path| -> Vec<String> { vec!["--state-dir".to_string(), state.display().to_string(), "--yes".to_string(), "--root".to_string(), root.display().to_string()] };
    let mut resume = vec!["resume".to_string()];
    resume.extend(reach(&a, &ra));
    let resumed = kcert(&resume.iter().map(String::as_str).collect::<Vec<_>>(), None);
    let said = |o: &Output| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    // Refused with nothing changed: killed before the run changed anything, or (from another
    // machine) before S1 put the new CA keys where that machine can find them.
    let nothing = |o: &Output| {
        o.status.code() == Some(2)
            && ["nothing to resume", "nothing to undo", "no runs recorded", "no run is kept", "cannot carry it on from this machine"].iter().any(|m| said(o).contains(m))
    };
    let scratch = w.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    match resumed.status.code() {
        Some(0) => rotated(&a, old, &scratch).map_err(|e| format!("resumed, but {e}:\n{}", said(&resumed)))?,
        // Killed as it wrote that it finished: nothing is left to do, and the files show it.
        Some(2) if said(&resumed).contains("it finished") => rotated(&a, old, &scratch).map_err(|e| format!("said finished, but {e}"))?,
        // Killed before the run changed anything: nothing to carry on, and nothing changed.
        _ if nothing(&resumed) && snapshot(&a) == *before => {}
        _ => return Err(format!("resume failed ({:?}):\n{}", resumed.status.code(), said(&resumed))),
    }
    let mut rollback = vec!["rollback".to_string()];
    rollback.extend(reach(&b, &rb));
    let undone = kcert(&rollback.iter().map(String::as_str).collect::<Vec<_>>(), None);
    if !(undone.status.success() || nothing(&undone)) {
        return Err(format!("rollback failed ({:?}):\n{}", undone.status.code(), said(&undone)));
    }
    if snapshot(&b) != *before {
        let after = snapshot(&b);
        let diff: Vec<&String> = before.keys().chain(after.keys()).filter(|k| before.get(*k) != after.get(*k)).collect();
        return Err(format!("rolled back, but not byte for byte: {diff:?}\n{}", said(&undone)));
    }
    // No tree is left with a temp file (some hold private keys). One exception: a kill while
    // the lease itself was being written, before the run was recorded anywhere else, leaves
    // that lease's temp (no key in it) in /var/lib/kcert, swept by the next kcert to take it.
    for (p, rel) in walk(&a, &a).into_iter().chain(walk(&b, &b)) {
        let temp = rel.rsplit('/').next().is_some_and(|n| n.starts_with(".kcert."));
        let lease_temp = rel.starts_with("/var/lib/kcert/.kcert.") && std::fs::read_to_string(&p).is_ok_and(|t| t.contains("\"heartbeat\"") && !t.contains("PRIVATE KEY"));
        if temp && !lease_temp {
            return Err(format!("a temp file is left: {rel}"));
        }
    }
    Ok(if resumed.status.success() { "resumed, rolled back".into() } else { "nothing to carry on".into() })
}

/// Its own harness (libtest-mimic), so that the figures it prints are shown, passed or failed.
fn main() {
    let args = libtest_mimic::Arguments::from_args();
    let name = "killed_at_every_record_and_between_writes_and_renames_it_resumes_or_rolls_back_consistently";
    let trial = libtest_mimic::Trial::test(name, || {
        std::panic::catch_unwind(killed_at_every_record_and_between_writes_and_renames_it_resumes_or_rolls_back_consistently)
            .map_err(|e| libtest_mimic::Failed::from(e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()))
    });
    libtest_mimic::run(&args, vec![trial]).exit();
}

fn killed_at_every_record_and_between_writes_and_renames_it_resumes_or_rolls_back_consistently() {
    let dir = tempfile::tempdir().unwrap();
    let base: PathBuf = dir.path().join("base");
    cp(&common::real_world().join(SET), &base);
    let before = snapshot(&base);
    let old = cas(&base);
    // How many records an uninterrupted rotation writes: every one of them is a kill point.
    let probe = dir.path().join("probe");
    cp(&base, &probe);
    let state = dir.path().join("probe-state");
    let out = kcert(&["rotate-ca", "--local", "--root", probe.to_str().unwrap(), "--yes", "--state-dir", state.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    rotated(&probe, &old, dir.path()).expect("an uninterrupted rotation passes its own checks");
    let records = std::fs::read_dir(state.join("runs")).unwrap().flatten().map(|e| std::fs::read_to_string(e.path().join("journal.jsonl")).unwrap().lines().count()).sum::<usize>();
    assert!(records > 50, "{records} records");
    let mut points: Vec<Point> = (1..=records).map(|n| Point { fault: format!("record:{n}"), from_node: n % 2 == 0 }).collect();
    // Batches of writes: until one no kill comes for (the run finished first).
    points.extend((1..=200).map(|n| Point { fault: format!("rename:{n}"), from_node: n % 2 == 1 }));
    let points = std::sync::Mutex::new(points.into_iter());
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                loop {
                    let Some(p) = points.lock().unwrap().next() else { break };
                    // Past the last write batch there are no more rename points.
                    let r = try_point(&base, &before, &old, &p);
                    let stop = matches!(&r, Ok(w) if w == "no kill") && p.fault.starts_with("rename");
                    results.lock().unwrap().push((p.fault.clone(), p.from_node, r));
                    if stop {
                        // Drain the remaining rename points: none of them can kill.
                        let mut it = points.lock().unwrap();
                        let rest: Vec<Point> = it.by_ref().filter(|q| !q.fault.starts_with("rename")).collect();
                        *it = rest.into_iter();
                    }
                }
            });
        }
    });
    let results = results.into_inner().unwrap();
    let tried: Vec<_> = results.iter().filter(|(_, _, r)| !matches!(r, Ok(w) if w == "no kill")).collect();
    let failed: Vec<String> = tried.iter().filter_map(|(f, node, r)| r.as_ref().err().map(|e| format!("{f}{}: {e}", if *node { " (from the node's copy)" } else { "" }))).collect();
    let renames = tried.iter().filter(|(f, _, _)| f.starts_with("rename")).count();
    let from_node = tried.iter().filter(|(_, n, _)| *n).count();
    eprintln!(
        "crash matrix: {} kill points tried ({records} journal records, {renames} write batches between temp files and renames; {from_node} carried on or back from the node's copy), {} consistent ends (resumed and rolled back), {} failed",
        tried.len(),
        (tried.len() - failed.len()) * 2,
        failed.len()
    );
    assert!(renames > 5, "the write batches were reached: {renames}");
    assert!(failed.is_empty(), "{} kill points ended inconsistently:\n{}", failed.len(), failed.join("\n\n"));
}
