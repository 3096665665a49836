//! Owns: the one script that checks, backs up and replaces a node's files of a step
//! (`Transport::replace_files` over SSH), and the pure parse of what it prints.
//! Must not: send anything anywhere, or change a file before every file passed the check.

use super::script::{remove_empty_dirs, remove_files};
use super::write::{WRITE_HEADER, parse_write_files, write_body};
use super::{Replace, Replaced, WriteFile};
use crate::pki::sha256;
use crate::text::shell_quote as quote;

/// `Transport::replace_files` in one script: the check (exit 2, printing `C i` for a file
/// present or absent against expectation and `H` with the sha256 of those that should exist),
/// the backups (`B` with their sha256 read back; exit 3 when one differs), then the writes,
/// removals and prunes (`W`, then one sha256 line per file written). Exit 1: `fail` said why.
pub fn replace_files(files: &[Replace], prune: &[String]) -> String {
    let mut s = String::from(WRITE_HEADER);
    s.push_str("bad=\"\"\n");
    let mut present = Vec::new();
    let mut expected = String::new();
    for (i, f) in files.iter().enumerate() {
        s.push_str(&format!("p{i}={}\n", quote(&f.file.path)));
        match &f.expect {
            None => s.push_str(&format!("if [ -e \"$p{i}\" ] || [ -L \"$p{i}\" ]; then echo \"C {i}\"; bad=1; fi\n")),
            Some(sha) => {
                s.push_str(&format!("[ -f \"$p{i}\" ] || {{ echo \"C {i}\"; bad=1; }}\n"));
                present.push(format!("\"$p{i}\""));
                expected.push_str(&format!("{sha} "));
            }
        }
    }
    s.push_str("[ -z \"$bad\" ] || exit 2\n");
    let sums = |files: &[String]| format!("$(sha256sum -- {} 2>/dev/null | while read -r h _; do printf '%s ' \"${{h#\\\\}}\"; done)", files.join(" "));
    if !present.is_empty() {
        s.push_str(&format!("got={}\necho \"H $got\"\n[ \"$got\" = {} ] || exit 2\n", sums(&present), quote(&expected)));
    }
    let mut backups = Vec::new();
    let mut backed = String::new();
    let mut one_by_one = String::new();
    let mut sources = Vec::new();
    for (i, f) in files.iter().enumerate() {
        if let (Some(b), Some(sha)) = (&f.backup, &f.expect) {
            let path = f.file.path.replace('"', "");
            s.push_str(&format!("b{i}={}\n", quote(b)));
            one_by_one.push_str(&format!(
                "d=${{b{i}%/*}}; [ -d \"$d\" ] || mkdir -p \"$d\" || fail \"cannot create $d for the backup of {path}\"\ncp -- \"$p{i}\" \"$b{i}\" || fail \"cannot back up {path} to $b{i}\"\n"
            ));
            sources.push((i, b.strip_suffix(f.file.path.as_str()).filter(|root| !root.is_empty() && f.file.path.starts_with('/'))));
            backups.push(format!("\"$b{i}\" \"${{b{i}%/*}}/\""));
            backed.push_str(&format!("{sha} "));
        }
    }
    // Backups under one root mirroring the files' paths (as the runner lays them out) are one
    // `cp --parents` (GNU); where that fails or does not apply, one `cp` per file.
    let root = sources.first().and_then(|(_, r)| *r);
    if let Some(root) = root.filter(|r| sources.iter().all(|(_, x)| *x == Some(*r))) {
        let from: Vec<String> = sources.iter().map(|(i, _)| format!("\"$p{i}\"")).collect();
        s.push_str(&format!("if ! {{ mkdir -p {root} 2>/dev/null && cp --parents -- {} {root} 2>/dev/null; }}; then\n{one_by_one}fi\n", from.join(" "), root = quote(root)));
    } else {
        s.push_str(&one_by_one);
    }
    if !backups.is_empty() {
        let files: Vec<String> = backups.iter().map(|b| b.split(' ').next().unwrap_or_default().to_string()).collect();
        s.push_str(&format!("sync -- {} 2>/dev/null || sync\n", backups.join(" ")));
        s.push_str(&format!("got={}\necho \"B $got\"\n[ \"$got\" = {} ] || exit 3\n", sums(&files), quote(&backed)));
    }
    let writes: Vec<WriteFile> = files.iter().filter(|f| !f.remove).map(|f| f.file.clone()).collect();
    // The check above proved what each file holds: whether the new bytes are the same is known.
    let same: Vec<Option<bool>> = files.iter().filter(|f| !f.remove).map(|f| Some(f.expect.as_deref() == Some(sha256(&f.file.bytes).as_str()))).collect();
    let removes: Vec<String> = files.iter().filter(|f| f.remove).map(|f| f.file.path.clone()).collect();
    s.push_str("echo W\n");
    s.push_str(&write_body(&writes, &same));
    if !removes.is_empty() {
        s.push_str(&remove_files(&removes));
    }
    if !prune.is_empty() {
        s.push_str(&remove_empty_dirs(prune));
    }
    s
}

/// What `replace_files` printed, with its exit status and what it said on stderr.
pub fn parse_replace_files(stdout: &[u8], status: Option<u32>, stderr: &str, files: &[Replace]) -> Result<Replaced, String> {
    let text = String::from_utf8_lossy(stdout);
    let mut out = Replaced::default();
    let mut lines = text.lines();
    let words = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<String>>();
    let mut written = false;
    for l in lines.by_ref() {
        match l.split_once(' ').map_or((l, ""), |(a, b)| (a, b)) {
            ("C", i) => out.changed.push((i.trim().parse().map_err(|_| format!("a bad check line {l:?}"))?, None)),
            ("H", got) => {
                let got = words(got);
                let expect = files.iter().enumerate().filter_map(|(i, f)| f.expect.as_ref().map(|e| (i, e)));
                for (k, (i, e)) in expect.enumerate() {
                    if got.get(k) != Some(e) {
                        out.changed.push((i, got.get(k).cloned()));
                    }
                }
            }
            ("B", got) => out.backups = words(got),
            ("W", _) => {
                written = true;
                break;
            }
            _ => return Err(format!("an unexpected line {l:?}")),
        }
    }
    match status {
        Some(2) if !out.changed.is_empty() => out.backups.clear(),
        Some(3) => out.failure = Some("a backup reads back with another sha256".into()),
        Some(1) => out.failure = Some(stderr.to_string()),
        Some(0) if written => {
            let count = files.iter().filter(|f| !f.remove).count();
            out.written = parse_write_files(lines.collect::<Vec<_>>().join("\n").as_bytes(), count)?;
        }
        _ => return Err(format!("exit status {status:?}: {stderr}")),
    }
    Ok(out)
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::sha256;
    use crate::reach::transport::{LocalTransport, Transport};
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    /// The script run in a real shell, and the transport's own composition of its primitives
    /// (what `--root` and this machine use), on two copies of the same files.
    type Setup<'a> = &'a dyn Fn(&Path) -> (Vec<Replace>, Vec<String>);

    fn both(files: Setup) -> [(Replaced, tempfile::TempDir); 2] {
        let shell = {
            let dir = tempfile::tempdir().unwrap();
            let (reps, prune) = files(dir.path());
            let out = std::process::Command::new("sh").arg("-c").arg(replace_files(&reps, &prune)).output().unwrap();
            let got = parse_replace_files(&out.stdout, out.status.code().map(|c| c as u32), &String::from_utf8_lossy(&out.stderr), &reps).unwrap();
            (got, dir)
        };
        let local = {
            let dir = tempfile::tempdir().unwrap();
            let (reps, prune) = files(dir.path());
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let got = rt.block_on(LocalTransport::new("n", None).replace_files(&reps, &prune)).unwrap();
            (got, dir)
        };
        [shell, local]
    }

    fn rep(path: &Path, new: Option<&[u8]>, expect: Option<&[u8]>, backup: Option<&Path>) -> Replace {
        let s = |p: &Path| p.to_string_lossy().into_owned();
        Replace {
            file: WriteFile { path: s(path), bytes: new.unwrap_or_default().to_vec(), mode: 0o644, private: false },
            remove: new.is_none(),
            expect: expect.map(sha256),
            backup: backup.map(s),
        }
    }

    #[test]
    fn files_are_checked_backed_up_and_replaced_in_one_script_as_the_primitives_do() {
        let setup = |d: &Path| {
            std::fs::write(d.join("a.crt"), b"old a").unwrap();
            std::fs::set_permissions(d.join("a.crt"), std::fs::Permissions::from_mode(0o640)).unwrap();
            std::fs::create_dir_all(d.join("staging")).unwrap();
            std::fs::write(d.join("staging/r.key"), b"old r").unwrap();
            let b = d.join("backups/S1");
            let reps = vec![
                rep(&d.join("a.crt"), Some(b"new a"), Some(b"old a"), Some(&b.join("a.crt"))),
                rep(&d.join("c.crt"), Some(b"new c"), None, None),
                rep(&d.join("staging/r.key"), None, Some(b"old r"), Some(&b.join("r.key"))),
            ];
            (reps, vec![d.join("staging").to_string_lossy().into_owned()])
        };
        for (got, dir) in both(&setup) {
            let d = dir.path();
            assert_eq!(got, Replaced { changed: vec![], backups: vec![sha256(b"old a"), sha256(b"old r")], written: vec![sha256(b"new a"), sha256(b"new c")], failure: None });
            assert_eq!(std::fs::read(d.join("a.crt")).unwrap(), b"new a");
            assert_eq!(std::fs::metadata(d.join("a.crt")).unwrap().permissions().mode() & 0o777, 0o640, "mode kept");
            assert_eq!(std::fs::read(d.join("c.crt")).unwrap(), b"new c");
            assert!(!d.join("staging").exists(), "removed, and its emptied directory pruned");
            for (b, old) in [("a.crt", "old a"), ("r.key", "old r")] {
                let p = d.join("backups/S1").join(b);
                assert_eq!(std::fs::read(&p).unwrap(), old.as_bytes());
                assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600, "backups are private");
            }
        }
    }

    #[test]
    fn a_file_written_back_as_it_was_keeps_its_time_stamps_and_a_changed_one_does_not() {
        // k3s refuses to start on a CA file newer than its datastore's copy: a file whose bytes
        // do not change keeps its mtime, whether the script knows it (replace) or compares.
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        let mtime = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for n in ["same.crt", "changed.crt", "written-same.crt"] {
            std::fs::write(d.join(n), b"old").unwrap();
            std::fs::File::options().write(true).open(d.join(n)).unwrap().set_modified(old).unwrap();
        }
        let reps = vec![rep(&d.join("same.crt"), Some(b"old"), Some(b"old"), None), rep(&d.join("changed.crt"), Some(b"new"), Some(b"old"), None)];
        let out = std::process::Command::new("sh").arg("-c").arg(replace_files(&reps, &[])).output().unwrap();
        let got = parse_replace_files(&out.stdout, out.status.code().map(|c| c as u32), &String::from_utf8_lossy(&out.stderr), &reps).unwrap();
        assert_eq!(got.written, vec![sha256(b"old"), sha256(b"new")]);
        let w = vec![WriteFile { path: d.join("written-same.crt").to_string_lossy().into_owned(), bytes: b"old".to_vec(), mode: 0o644, private: false }];
        assert!(std::process::Command::new("sh").arg("-c").arg(super::super::write::write_files(&w)).status().unwrap().success());
        assert_eq!(mtime(&d.join("same.crt")), old);
        assert_eq!(mtime(&d.join("written-same.crt")), old);
        assert_ne!(mtime(&d.join("changed.crt")), old);
        assert_eq!(std::fs::read(d.join("changed.crt")).unwrap(), b"new");
    }

    #[test]
    fn backups_mirroring_the_files_paths_are_one_copy_and_the_same_as_one_by_one() {
        // As the runner lays backups out: <root><the file's absolute path>. A link is backed
        // up as what it points to, as `cp` of one file does.
        let setup = |d: &Path| {
            std::fs::create_dir_all(d.join("pki/etcd")).unwrap();
            std::fs::write(d.join("pki/ca.crt"), b"old ca").unwrap();
            std::fs::write(d.join("pki/etcd/peer.key"), b"old key").unwrap();
            std::fs::set_permissions(d.join("pki/etcd/peer.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
            std::fs::write(d.join("pki/client-2026.pem"), b"old client").unwrap();
            std::os::unix::fs::symlink(d.join("pki/client-2026.pem"), d.join("pki/client-current.pem")).unwrap();
            let root = d.join("backups/run/S2");
            let mirror = |p: &Path| Path::new(&format!("{}{}", root.display(), p.display())).to_path_buf();
            let files = [("pki/ca.crt", "old ca"), ("pki/etcd/peer.key", "old key"), ("pki/client-current.pem", "old client")];
            let reps: Vec<Replace> = files.iter().map(|(f, old)| rep(&d.join(f), Some(b"new"), Some(old.as_bytes()), Some(&mirror(&d.join(f))))).collect();
            (reps, vec![])
        };
        let (reps, _) = setup(tempfile::tempdir().unwrap().path());
        assert!(replace_files(&reps, &[]).contains("cp --parents"), "one copy for every backup");
        for (got, dir) in both(&setup) {
            let d = dir.path();
            assert_eq!(got.backups, [sha256(b"old ca"), sha256(b"old key"), sha256(b"old client")]);
            for (f, old) in [("pki/ca.crt", "old ca"), ("pki/etcd/peer.key", "old key"), ("pki/client-current.pem", "old client")] {
                let b = Path::new(&format!("{}/backups/run/S2{}", d.display(), d.join(f).display())).to_path_buf();
                assert_eq!(std::fs::read(&b).unwrap(), old.as_bytes(), "{f}");
                let meta = std::fs::symlink_metadata(&b).unwrap();
                assert!(meta.is_file() && meta.permissions().mode() & 0o777 == 0o600, "{f}: a private file, not a link");
            }
            assert_eq!(std::fs::read(d.join("pki/client-2026.pem")).unwrap(), b"new", "written through the link");
        }
    }

    #[test]
    fn a_file_not_as_expected_changes_nothing_anywhere() {
        let setup = |d: &Path| {
            std::fs::write(d.join("a.crt"), b"old a").unwrap();
            std::fs::write(d.join("b.crt"), b"changed by someone").unwrap();
            std::fs::write(d.join("c.crt"), b"was to be created").unwrap();
            let b = d.join("backups");
            let reps = vec![
                rep(&d.join("a.crt"), Some(b"new a"), Some(b"old a"), Some(&b.join("a.crt"))),
                rep(&d.join("b.crt"), Some(b"new b"), Some(b"old b"), Some(&b.join("b.crt"))),
                rep(&d.join("c.crt"), Some(b"new c"), None, None),
            ];
            (reps, vec![])
        };
        for (got, dir) in both(&setup) {
            let d = dir.path();
            // The script stops at the first kind of difference it sees (one present that should
            // not be); either way only files not as expected are named, with what they hold.
            assert!(!got.changed.is_empty() && got.changed.iter().all(|(i, _)| [1, 2].contains(i)), "{got:?}");
            if let Some((_, now)) = got.changed.iter().find(|(i, _)| *i == 1) {
                assert_eq!(now.as_deref(), Some(sha256(b"changed by someone").as_str()));
            }
            assert!(got.backups.is_empty() && got.written.is_empty() && got.failure.is_none());
            assert_eq!(std::fs::read(d.join("a.crt")).unwrap(), b"old a");
            assert!(!d.join("backups").exists(), "no backup made");
        }
    }

    #[test]
    fn a_changed_file_is_named_with_what_it_holds() {
        let setup = |d: &Path| {
            std::fs::write(d.join("a.crt"), b"old a").unwrap();
            std::fs::write(d.join("b.crt"), b"changed by someone").unwrap();
            let reps = vec![rep(&d.join("a.crt"), Some(b"new a"), Some(b"old a"), Some(&d.join("bk/a"))), rep(&d.join("b.crt"), Some(b"new b"), Some(b"old b"), Some(&d.join("bk/b")))];
            (reps, vec![])
        };
        for (got, dir) in both(&setup) {
            assert_eq!(got, Replaced { changed: vec![(1, Some(sha256(b"changed by someone")))], ..Default::default() });
            assert_eq!(std::fs::read(dir.path().join("a.crt")).unwrap(), b"old a");
            assert!(!dir.path().join("bk").exists());
        }
    }

    #[test]
    fn a_write_that_fails_after_the_backups_says_so_and_leaves_the_files() {
        let setup = |d: &Path| {
            std::fs::write(d.join("a.crt"), b"old a").unwrap();
            let reps = vec![
                rep(&d.join("a.crt"), Some(b"new a"), Some(b"old a"), Some(&d.join("backups/a.crt"))),
                rep(Path::new("/proc/kcert-cannot/x.crt"), Some(b"x"), None, None),
            ];
            (reps, vec![])
        };
        for (got, dir) in both(&setup) {
            let d = dir.path();
            assert_eq!(got.backups, vec![sha256(b"old a")]);
            assert!(got.failure.as_deref().is_some_and(|f| f.contains("/proc/kcert-cannot/x.crt")), "{got:?}");
            assert_eq!(std::fs::read(d.join("a.crt")).unwrap(), b"old a", "no file written");
            assert_eq!(std::fs::read(d.join("backups/a.crt")).unwrap(), b"old a");
        }
    }
}
