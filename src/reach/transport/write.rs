//! Owns: the shell scripts that write and append to a node's files atomically (temporary
//! files, fsync, renames, sums read back), and the pure parse of what they print.
//! Must not: send anything anywhere; the SSH transport runs these.

use std::collections::BTreeMap;

use base64::Engine;

use super::WriteFile;
use crate::text::shell_quote as quote;

/// Writes files atomically (see `Transport::write_files`): every temp file is written and
/// fsynced before the first rename; on any failure the temp files are removed and the
/// script exits 1 naming the file. Prints one sha256 per file, read back after the renames.
pub fn write_files(files: &[WriteFile]) -> String {
    let mut s = String::from(WRITE_HEADER);
    s.push_str(&write_body(files, &[]));
    s
}

/// Defines `fail`: says why, removes the temporary files made so far (`clean`, which a write
/// defines once it makes any), exits 1.
pub(super) const WRITE_HEADER: &str = r#"set -u
umask 077
clean() { :; }
fail() { echo "$1" >&2; clean; exit 1; }
"#;

/// A name no earlier script made (with the node shell's `$$` beside it): the temporary
/// directories of a write are made with `mkdir`, which fails on one already there.
fn nonce() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    format!("{:x}", (now.as_nanos() as u64) ^ n.rotate_left(40) ^ u64::from(std::process::id()).rotate_left(20))
}

/// The directory a path names its file in ("/" for a file at the root).
fn dir_of(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some(("", _)) | None => "/",
        Some((d, _)) => d,
    }
}

/// Every file is written to a temporary file, synced, then renamed into place; the directories
/// are synced and the sha256 of each printed, one line per file. Programs are what a write
/// costs on a node (each loads from disk, a few ms on an overlay filesystem; a step writes a
/// dozen files), so the temporary files of the files in one directory sit in one new
/// directory beside them (`.kcert.<pid>.<nonce>`, mode 0700, made by one `mkdir` for the
/// whole write) under the files' own names: one `cp --attributes-only` gives them the owner
/// and mode of the files they replace, one `mv` renames them all into place (each a
/// rename(2), atomic). A file that is a symlink is written where the link points, its temp
/// beside that target, one by one. Public text is written by the shell's own `printf` (a
/// builtin in dash, bash and busybox ash, each failing on a short write, a full disk
/// included), other bytes by `base64 -d`. A file written back as it was (a backup's round
/// trip) keeps its time stamps too: k3s refuses to start when a CA file on disk is newer than
/// its datastore's copy (ReconcileBootstrapData). `same[i]`: whether file i's new bytes are
/// known to be what it holds now (the caller checked its sha256), so the script need not
/// compare them; missing or `None`: it compares.
pub(super) fn write_body(files: &[WriteFile], same: &[Option<bool>]) -> String {
    let mut s = String::new();
    if files.is_empty() {
        return s;
    }
    // The directories as the paths name them, in order; a file's index -> its directory's.
    let mut dirs: Vec<&str> = Vec::new();
    let mut group: Vec<usize> = Vec::with_capacity(files.len());
    for f in files {
        let d = dir_of(&f.path);
        let k = dirs.iter().position(|x| *x == d).unwrap_or_else(|| {
            dirs.push(d);
            dirs.len() - 1
        });
        group.push(k);
    }
    // A path written twice in one write (no plan does; the script stays correct if one did):
    // its last bytes win, as renames in order would have it. The earlier ones share its temp
    // file, so only the last is given its owner and renamed.
    let last: Vec<bool> = (0..files.len()).map(|i| !files[i + 1..].iter().any(|f| f.path == files[i].path)).collect();
    let nonce = nonce();
    let temp_dir = |d: &str| format!("{}{}.kcert.\"$$\".{nonce}", quote(d), if d.ends_with('/') { "" } else { "/" });
    for (k, d) in dirs.iter().enumerate() {
        let first = files.iter().enumerate().find(|(i, _)| group[*i] == k).map(|(_, f)| f.path.replace('"', "")).unwrap_or_default();
        s.push_str(&format!(
            "[ -d {q} ] || mkdir -p -- {q} 2>/dev/null || fail \"cannot create directory {} for {first}\"\ng{k}={}\n",
            d.replace('"', ""),
            temp_dir(d),
            q = quote(d)
        ));
    }
    let all_groups: Vec<String> = (0..dirs.len()).map(|k| format!("\"$g{k}\"")).collect();
    let all_groups = all_groups.join(" ");
    // What a failure removes: the temporary directories once made, and a link's temp file.
    s.push_str(&format!("made=\nclean() {{\n  [ -z \"$made\" ] || rm -rf -- {all_groups}\n"));
    for i in 0..files.len() {
        s.push_str(&format!("  [ -z \"${{l{i}:-}}\" ] || [ -z \"${{t{i}:-}}\" ] || rm -f -- \"$t{i}\"\n"));
    }
    s.push_str("}\n");
    s.push_str(&format!(
        "mkdir -- {all_groups} || {{ rmdir -- {all_groups} 2>/dev/null; fail \"cannot create a temporary directory beside the files to write (disk full or read-only?)\"; }}\nmade=1\n"
    ));
    for (i, f) in files.iter().enumerate() {
        let p = quote(&f.path);
        let path = f.path.replace('"', "");
        let k = group[i];
        let name = f.path.rsplit_once('/').map_or(f.path.as_str(), |(_, n)| n);
        let keep = same.get(i).copied().flatten();
        // The file is there: a link's target gets its owner and mode now; any other file is
        // marked for its directory's `cp` (e=1), or for the one that keeps time stamps (e=2).
        let (compare, keep_link, mark) = match keep {
            Some(true) => (String::new(), ",timestamps", format!("e{i}=2")),
            Some(false) => (String::new(), "", format!("e{i}=1")),
            None => (format!("k=; cmp -s -- \"$f{i}\" \"$t{i}\" && k=,timestamps\n  "), "$k", format!("e{i}=1; cmp -s -- \"$f{i}\" \"$t{i}\" && e{i}=2")),
        };
        let (head, tail) = content(&f.bytes, f.private, i);
        s.push_str(&format!(
            r#"f{i}={p}; l{i}=; e{i}=; n{i}=
if [ -L "$f{i}" ]; then
  l{i}=1; f{i}=$(readlink -f -- {p} 2>/dev/null); [ -n "$f{i}" ] || f{i}={p}
  d=${{f{i}%/*}}; [ -n "$d" ] || d=/
  [ -d "$d" ] || mkdir -p "$d" 2>/dev/null || fail "cannot create directory $d for {path}"
  t{i}="$d/.kcert.$$.{i}"; set -C
  if true 2>/dev/null > "$t{i}"; then set +C; else set +C; t{i}=$(mktemp "$d/.kcert.XXXXXX" 2>/dev/null) || fail "cannot create a temporary file in $d (disk full or read-only?) for {path}"; fi
else
  d={dq}; t{i}="$g{k}"/{nq}
fi
{head} || fail "cannot write {path}: $(df -Pk "$d" | awk 'NR==2 {{print $4 " KiB free on " $6}}')"{tail}
if [ ! -e "$f{i}" ]; then n{i}=1
elif [ -n "$l{i}" ]; then
  {compare}cp --attributes-only --preserve=mode,ownership{keep_link} -- "$f{i}" "$t{i}" || fail "cannot copy owner and mode of {path}"
else {mark}; fi
"#,
            dq = quote(dirs[k]),
            nq = quote(name),
        ));
    }
    // Each directory's files take the owner and mode of those they replace, in one `cp` for
    // each way of keeping time stamps that its files may take.
    for (k, d) in dirs.iter().enumerate() {
        let members: Vec<usize> = (0..files.len()).filter(|i| group[*i] == k && last[*i]).collect();
        for (class, keep) in [(1, ""), (2, ",timestamps")] {
            let may = members.iter().any(|i| match same.get(*i).copied().flatten() {
                Some(true) => class == 2,
                Some(false) => class == 1,
                None => true,
            });
            if may {
                let adds: String = members.iter().map(|i| format!("[ \"$e{i}\" = {class} ] && set -- \"$@\" \"$f{i}\"; ")).collect();
                s.push_str(&format!(
                    "set --; {adds}\n[ $# = 0 ] || cp --attributes-only --preserve=mode,ownership{keep} -- \"$@\" \"$g{k}/\" || fail \"cannot copy owner and mode of the files in {}\"\n",
                    d.replace('"', "")
                ));
            }
        }
    }
    // New files get their mode (a temp file is made 0600: umask 077), one `chmod` a mode;
    // private keys 0600 whatever the file they replace had.
    let mut modes: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, f) in files.iter().enumerate() {
        let mode = if f.private { 0o600 } else { f.mode };
        if mode != 0o600 {
            modes.entry(mode).or_default().push(i);
        }
    }
    for (mode, members) in modes {
        let adds: String = members.iter().map(|i| format!("[ -n \"$n{i}\" ] && set -- \"$@\" \"$t{i}\"; ")).collect();
        s.push_str(&format!("set --; {adds}\n[ $# = 0 ] || chmod {mode:o} -- \"$@\" || fail \"cannot set the mode of the new files\"\n"));
    }
    let private: Vec<String> = files.iter().enumerate().filter(|(_, f)| f.private).map(|(i, _)| format!("\"$t{i}\"")).collect();
    if !private.is_empty() {
        s.push_str(&format!("chmod 600 -- {} || fail \"cannot make the new private keys private\"\n", private.join(" ")));
    }
    let temps: Vec<String> = (0..files.len()).map(|i| format!("\"$t{i}\"")).collect();
    s.push_str(&format!("sync {} 2>/dev/null || sync\n", temps.join(" ")));
    // One `mv` a directory; a link's target one by one.
    for (k, d) in dirs.iter().enumerate() {
        let members: Vec<usize> = (0..files.len()).filter(|i| group[*i] == k && last[*i]).collect();
        let adds: String = members.iter().map(|i| format!("[ -z \"$l{i}\" ] && set -- \"$@\" \"$t{i}\"; ")).collect();
        s.push_str(&format!("set --; {adds}\n[ $# = 0 ] || mv -f -- \"$@\" {}/ || fail \"cannot rename the new files into place in {}\"\n", quote(d), d.replace('"', "")));
    }
    for (i, f) in files.iter().enumerate() {
        s.push_str(&format!("[ -z \"$l{i}\" ] || mv -f \"$t{i}\" \"$f{i}\" || fail \"cannot rename the new {} into place\"\n", f.path.replace('"', "")));
    }
    s.push_str(&format!("rmdir -- {all_groups} 2>/dev/null; made=\n"));
    let all: Vec<String> = (0..files.len()).map(|i| format!("\"$f{i}\"")).collect();
    let synced: Vec<String> = (0..files.len()).map(|i| format!("\"${{f{i}%/*}}/\"")).collect();
    s.push_str(&format!("sync {} 2>/dev/null || sync\n", synced.join(" ")));
    // One sha256sum for every file, in order (a name with a newline or backslash gets a
    // leading backslash: the parse takes it off).
    s.push_str(&format!("sha256sum -- {}\n", all.join(" ")));
    s
}

/// Appends `bytes` to the file at `path` when it is `had` bytes long, then syncs it; prints the
/// size it then has (`A<size>`), or the size it had instead (`S<size>`, -1: absent) and appends
/// nothing. A failed append leaves at most a torn tail, which the size says.
pub fn append_file(path: &str, had: u64, bytes: &[u8]) -> String {
    let p = quote(path);
    let (head, tail) = put(bytes, false, ">>", "\"$f\"");
    format!(
        r#"f={p}; s=$(stat -L -c %s -- "$f" 2>/dev/null) || s=-1
if [ "$s" != {had} ]; then printf 'S%s\n' "$s"; exit 0; fi
{head}{tail}
sync "$f" 2>/dev/null || sync
printf 'A%s\n' "$(stat -L -c %s -- "$f")"
"#
    )
}

/// What `append_file` printed: Ok(Some(size)) once appended, Ok(None) when the file was not
/// the size expected (nothing appended).
pub fn parse_append_file(stdout: &[u8]) -> Result<Option<u64>, String> {
    let text = String::from_utf8_lossy(stdout);
    let line = text.lines().next().unwrap_or_default();
    let size = |v: &str| v.parse::<u64>().map_err(|_| format!("a bad answer to an append: {text:?}"));
    match (line.strip_prefix('A'), line.strip_prefix('S')) {
        (Some(v), _) => size(v).map(Some),
        (_, Some(_)) => Ok(None),
        _ => Err(format!("a bad answer to an append: {text:?}")),
    }
}

/// The command that puts `bytes` into temp file i, and what follows its line (a here-document):
/// public text (UTF-8 without NUL, which no shell word can hold) by `printf`, single-quoted
/// as is; anything else through `base64 -d`. Key material never goes by `printf`: were it not
/// a builtin where the script runs, the key would be in a process's arguments (`ps`).
fn content(bytes: &[u8], private: bool, i: usize) -> (String, String) {
    put(bytes, private, ">|", &format!("\"$t{i}\""))
}

/// As `content`, into `target` (a shell word) by redirection `op` (`>|` or `>>`).
fn put(bytes: &[u8], private: bool, op: &str, target: &str) -> (String, String) {
    let public = |t: &str| !private && !t.contains('\0') && !t.contains("PRIVATE KEY") && !t.contains("key-data");
    match std::str::from_utf8(bytes) {
        Ok(text) if public(text) => (format!("printf '%s' '{}' {op} {target}", text.replace('\'', "'\\''")), String::new()),
        _ => (format!("base64 -d {op} {target} <<'KCERT_EOF'"), format!("\n{}\nKCERT_EOF", wrap(&base64::engine::general_purpose::STANDARD.encode(bytes)))),
    }
}

fn wrap(b64: &str) -> String {
    let mut out = String::with_capacity(b64.len() + b64.len() / 76 + 1);
    for (i, c) in b64.chars().enumerate() {
        if i > 0 && i % 76 == 0 {
            out.push('\n');
        }
        out.push(c);
    }
    out
}

pub fn parse_write_files(stdout: &[u8], count: usize) -> Result<Vec<String>, String> {
    let sums: Vec<String> = String::from_utf8_lossy(stdout).lines().map(|l| l.trim_start_matches('\\').split(' ').next().unwrap_or_default().to_string()).collect();
    if sums.len() != count || sums.iter().any(|s| s.len() != 64) {
        return Err(format!("expected {count} sha256 sums after writing, got {sums:?}"));
    }
    Ok(sums)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_atomic_keep_mode_follow_links_and_report_sums() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.pem");
        std::fs::write(&real, b"old").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link.pem")).unwrap();
        let new = dir.path().join("sub/new.key");
        let files = vec![
            WriteFile { path: dir.path().join("link.pem").to_string_lossy().into_owned(), bytes: b"new".to_vec(), mode: 0o644, private: false },
            WriteFile { path: new.to_string_lossy().into_owned(), bytes: vec![7u8; 5000], mode: 0o644, private: true },
        ];
        let out = std::process::Command::new("sh").arg("-c").arg(write_files(&files)).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let sums = parse_write_files(&out.stdout, 2).unwrap();
        assert_eq!(sums[0], crate::pki::sha256(b"new"));
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
        assert!(std::fs::symlink_metadata(dir.path().join("link.pem")).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::metadata(&real).unwrap().permissions().mode() & 0o777, 0o640);
        assert_eq!(std::fs::read(&new).unwrap(), vec![7u8; 5000]);
        assert_eq!(std::fs::metadata(&new).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3, "no temp files left");
    }

    #[test]
    fn text_is_written_byte_for_byte_and_key_material_never_in_plain_sight() {
        let dir = tempfile::tempdir().unwrap();
        let key = b"-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIKEYBODY\n-----END EC PRIVATE KEY-----\n".to_vec();
        let cases: Vec<(&str, Vec<u8>, bool)> = vec![
            ("quotes.yaml", "it's 'quoted' $HOME `x` %s %% \\n \\ \"dq\"\r\nno newline at the end, é ✓".as_bytes().to_vec(), false),
            ("empty.pem", Vec::new(), false),
            ("nul.bin", b"a\0b\xff\n".to_vec(), false),
            ("key.pem", key.clone(), true),
            ("unmarked.pem", key.clone(), false),
            ("admin.conf", b"users:\n- user:\n    client-key-data: S0VZQk9EWQ==\n".to_vec(), false),
        ];
        let files: Vec<WriteFile> =
            cases.iter().map(|(n, b, private)| WriteFile { path: dir.path().join(n).to_string_lossy().into_owned(), bytes: b.clone(), mode: 0o644, private: *private }).collect();
        let script = write_files(&files);
        for secret in ["KEYBODY", "S0VZQk9EWQ=="] {
            assert!(!script.contains(secret), "{secret} in plain sight in the script");
        }
        let out = std::process::Command::new("sh").arg("-c").arg(&script).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let sums = parse_write_files(&out.stdout, cases.len()).unwrap();
        for ((n, b, _), sum) in cases.iter().zip(sums) {
            assert_eq!(&std::fs::read(dir.path().join(n)).unwrap(), b, "{n}");
            assert_eq!(sum, crate::pki::sha256(b), "{n}");
        }
        // A full disk fails either way of writing, so the script says so and changes nothing.
        for private in [false, true] {
            let (head, tail) = content(b"some text\n", private, 0);
            let out = std::process::Command::new("sh").arg("-c").arg(format!("t0=/dev/full\n{head} || echo FAILED{tail}\n")).output().unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "FAILED", "private: {private}");
        }
    }

    #[test]
    fn an_append_goes_only_onto_a_file_of_the_size_left_and_says_the_size_it_made() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("it's a journal.jsonl");
        let p = path.to_string_lossy().into_owned();
        let sh = |script: String| {
            let out = std::process::Command::new("sh").arg("-c").arg(&script).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            parse_append_file(&out.stdout).unwrap()
        };
        // Absent: nothing appended, nothing made.
        assert_eq!(sh(append_file(&p, 0, b"x")), None);
        assert!(!path.exists());
        std::fs::write(&path, b"{\"a\":1}\n").unwrap();
        // The size left: appended byte for byte (quotes, $, backslashes, no final newline).
        let more = "{\"b\":\"it's $HOME \\\\ `x` %s\"}\n{\"c\":".as_bytes();
        assert_eq!(sh(append_file(&p, 8, more)), Some(8 + more.len() as u64));
        assert_eq!(std::fs::read(&path).unwrap(), [&b"{\"a\":1}\n"[..], more].concat());
        // Another size (a copy changed meanwhile): nothing appended.
        let before = std::fs::read(&path).unwrap();
        assert_eq!(sh(append_file(&p, 8, b"never")), None);
        assert_eq!(std::fs::read(&path).unwrap(), before);
        // Bytes that are not text go through base64, as a write's do.
        let n = before.len() as u64;
        assert_eq!(sh(append_file(&p, n, b"\0\xff")), Some(n + 2));
        assert!(std::fs::read(&path).unwrap().ends_with(b"\0\xff"));
        assert!(parse_append_file(b"garbage").is_err());
    }

    #[test]
    fn odd_names_are_written_and_summed_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let names = ["new\nline.pem", "back\\slash.pem", "sp ace.pem", "plain.pem"];
        let files: Vec<WriteFile> =
            names.iter().map(|n| WriteFile { path: dir.path().join(n).to_string_lossy().into_owned(), bytes: n.as_bytes().to_vec(), mode: 0o644, private: false }).collect();
        let out = std::process::Command::new("sh").arg("-c").arg(write_files(&files)).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let sums = parse_write_files(&out.stdout, names.len()).unwrap();
        for (n, sum) in names.iter().zip(sums) {
            assert_eq!(std::fs::read(dir.path().join(n)).unwrap(), n.as_bytes());
            assert_eq!(sum, crate::pki::sha256(n.as_bytes()), "{n:?}");
        }
    }

    #[test]
    fn a_failed_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.pem");
        std::fs::write(&a, b"old").unwrap();
        let files = vec![
            WriteFile { path: a.to_string_lossy().into_owned(), bytes: b"new".to_vec(), mode: 0o644, private: false },
            WriteFile { path: "/proc/kcert-cannot/x".into(), bytes: b"x".to_vec(), mode: 0o644, private: false },
        ];
        let out = std::process::Command::new("sh").arg("-c").arg(write_files(&files)).output().unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("/proc/kcert-cannot/x"));
        assert_eq!(std::fs::read(&a).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "temp files removed");
    }

    /// Runs `script` in `sh` with every program it starts logged (a shim for each, first on
    /// PATH); returns the output and the programs in the order they started.
    fn logged(script: &str) -> (std::process::Output, Vec<String>) {
        let shims = tempfile::tempdir().unwrap();
        let log = shims.path().join("log");
        for prog in ["mkdir", "cp", "mv", "chmod", "sync", "sha256sum", "base64", "rmdir", "rm", "cmp", "readlink", "mktemp", "df", "awk", "cat"] {
            let real = String::from_utf8(std::process::Command::new("sh").arg("-c").arg(format!("command -v {prog}")).output().unwrap().stdout).unwrap();
            let shim = shims.path().join(prog);
            std::fs::write(&shim, format!("#!/bin/sh\necho {prog} >> '{}'\nexec {} \"$@\"\n", log.display(), real.trim())).unwrap();
            std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
        let path = format!("{}:{}", shims.path().display(), std::env::var("PATH").unwrap_or_default());
        let out = std::process::Command::new("sh").arg("-c").arg(script).env("PATH", path).output().unwrap();
        let progs = std::fs::read_to_string(&log).unwrap_or_default().lines().map(str::to_string).collect();
        (out, progs)
    }

    #[test]
    fn a_write_starts_programs_per_directory_not_per_file_and_keeps_owner_and_mode() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("pki"), dir.path().join("pki/etcd"));
        std::fs::create_dir_all(&b).unwrap();
        let root = std::os::unix::fs::chown(&a, Some(0), Some(0)).is_ok();
        // Each directory holds public files that exist (0640, owned by someone else), a key that
        // exists with a mode too open, and new files of each kind.
        let files = |n: usize| -> Vec<WriteFile> {
            let mut v = Vec::new();
            for d in [&a, &b] {
                for i in 0..n {
                    let crt = d.join(format!("leaf{i}.crt"));
                    std::fs::write(&crt, b"old").unwrap();
                    std::fs::set_permissions(&crt, std::fs::Permissions::from_mode(0o640)).unwrap();
                    if root {
                        std::os::unix::fs::chown(&crt, Some(1234), Some(4321)).unwrap();
                    }
                    v.push(WriteFile { path: crt.to_string_lossy().into_owned(), bytes: format!("new {i}").into_bytes(), mode: 0o644, private: false });
                    v.push(WriteFile { path: d.join(format!("new{i}.crt")).to_string_lossy().into_owned(), bytes: format!("made {n}").into_bytes(), mode: 0o644, private: false });
                }
                let key = d.join("leaf.key");
                std::fs::write(&key, b"old key").unwrap();
                std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
                v.push(WriteFile { path: key.to_string_lossy().into_owned(), bytes: b"-----BEGIN PRIVATE KEY-----\nnew\n".to_vec(), mode: 0o644, private: true });
            }
            v
        };
        let mut counts = Vec::new();
        let mut progs_seen = Vec::new();
        for n in [2, 6] {
            let files = files(n);
            // As a step's write: whether each file's bytes change is known (see `replace`).
            let same = vec![Some(false); files.len()];
            let (out, progs) = logged(&format!("{WRITE_HEADER}{}", write_body(&files, &same)));
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let sums = parse_write_files(&out.stdout, files.len()).unwrap();
            for (f, sum) in files.iter().zip(sums) {
                assert_eq!(std::fs::read(&f.path).unwrap(), f.bytes, "{}", f.path);
                assert_eq!(sum, crate::pki::sha256(&f.bytes));
                let meta = std::fs::metadata(&f.path).unwrap();
                let want = if f.private {
                    0o600
                } else if f.path.contains("leaf") {
                    0o640
                } else {
                    0o644
                };
                assert_eq!(meta.permissions().mode() & 0o777, want, "{}", f.path);
                if root && f.path.contains("leaf") && !f.private {
                    assert_eq!((meta.uid(), meta.gid()), (1234, 4321), "{}: its owner kept", f.path);
                }
            }
            for d in [&a, &b] {
                let left: Vec<String> =
                    std::fs::read_dir(d).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with(".kcert.")).collect();
                assert!(left.is_empty(), "{left:?}");
            }
            counts.push(progs.len());
            progs_seen.push(progs.join(" "));
            // The programs a write starts: a few a directory, one `base64` a key; none a public file.
            assert!(progs.iter().filter(|p| *p == "mv").count() <= 2, "{progs:?}");
        }
        assert_eq!(counts[0], counts[1], "eight more public files started more programs: {progs_seen:?}");
        if !root {
            eprintln!("not root: the owner of each file was not changed, so not compared");
        }
    }

    #[test]
    fn a_path_written_twice_in_one_write_holds_its_last_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.pem"), dir.path().join("b.pem"));
        std::fs::write(&a, b"old").unwrap();
        let w = |p: &std::path::Path, bytes: &[u8]| WriteFile { path: p.to_string_lossy().into_owned(), bytes: bytes.to_vec(), mode: 0o644, private: false };
        let files = vec![w(&a, b"first"), w(&b, b"other"), w(&a, b"second")];
        let out = std::process::Command::new("sh").arg("-c").arg(write_files(&files)).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read(&a).unwrap(), b"second");
        assert_eq!(std::fs::read(&b).unwrap(), b"other");
        let sums = parse_write_files(&out.stdout, 3).unwrap();
        assert_eq!((sums[0].as_str(), sums[2].as_str()), (crate::pki::sha256(b"second").as_str(), crate::pki::sha256(b"second").as_str()));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "no temporary file or directory left");
    }

    #[test]
    fn a_write_failing_after_its_temporary_files_leaves_every_file_and_directory_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.pem");
        std::fs::write(&a, b"old").unwrap();
        // A directory where a file is to go: the owner and mode cannot be taken from it.
        std::fs::create_dir(dir.path().join("b.pem")).unwrap();
        let files = vec![
            WriteFile { path: a.to_string_lossy().into_owned(), bytes: b"new".to_vec(), mode: 0o644, private: false },
            WriteFile { path: dir.path().join("b.pem").to_string_lossy().into_owned(), bytes: b"x".to_vec(), mode: 0o644, private: true },
        ];
        let out = std::process::Command::new("sh").arg("-c").arg(write_files(&files)).output().unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains(&dir.path().to_string_lossy().into_owned()), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read(&a).unwrap(), b"old");
        assert!(dir.path().join("b.pem").is_dir());
        let names: Vec<String> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(names.len(), 2, "the temporary directory and its files removed: {names:?}");
    }
}
