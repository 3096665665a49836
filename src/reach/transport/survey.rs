//! Owns: the survey: many reads, listings, existence checks and small commands asked of a
//! node in one script (one round trip), and the pure parse of what it prints.
//! Must not: know what the paths are for (callers choose them) or send anything anywhere.
//!
//! The script forks a fixed number of programs whatever the number of files: `find -L` tags
//! every path (missing, not a file, unreadable, too large, to read), one `stat` gives the
//! sizes and one `cat | base64` the bytes of every file to read (of every group at once),
//! split by those sizes; the shell's own `[ -e ]` answers existence.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;

use super::{CmdOutput, FileData, MAX_FILE_BYTES};
use crate::text::shell_quote as quote;

/// What to ask a node in one round trip. Paths are absolute node paths; others are left out
/// (their questions go to the transport as usual).
#[derive(Debug, Clone, Default)]
pub struct Survey {
    /// Files to read, each answered as `Transport::read_files` would.
    pub read: Vec<String>,
    /// Paths whose existence is asked (`Transport::exists`).
    pub exists: Vec<String>,
    /// Directories listed as `Transport::list_files` lists them, every file in them read too,
    /// except those whose names match a `skip` pattern.
    pub list_read: Vec<String>,
    /// Directories only listed.
    pub list: Vec<String>,
    /// `find -name` patterns of files never read from `list_read` directories.
    pub skip: Vec<String>,
    /// Small scripts whose output (text) is kept, answered to `Transport::run` of the same text.
    pub run: Vec<String>,
    /// More `list_read` directories, from the first alternative that holds on the node only.
    pub alternatives: Vec<Alternative>,
}

impl Survey {
    /// Asks what `other` asks too, in the same round trip.
    pub fn merge(&mut self, other: &Survey) {
        self.read.extend(other.read.iter().cloned());
        self.exists.extend(other.exists.iter().cloned());
        self.list_read.extend(other.list_read.iter().cloned());
        self.list.extend(other.list.iter().cloned());
        self.skip.extend(other.skip.iter().filter(|p| !self.skip.contains(p)).cloned().collect::<Vec<_>>());
        self.run.extend(other.run.iter().cloned());
        self.alternatives.extend(other.alternatives.iter().cloned());
    }
}

/// Directories surveyed only where one of `when` exists and none of `unless` does (and no
/// earlier alternative held): a distribution's own directories, where it was detected.
#[derive(Debug, Clone, Default)]
pub struct Alternative {
    pub when: Vec<String>,
    pub unless: Vec<String>,
    pub list_read: Vec<String>,
}

/// What a survey found: answers to some of the questions a transport is asked.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    files: BTreeMap<String, FileData>,
    /// The files asked by name: one absent from `files` is missing.
    asked: BTreeSet<String>,
    /// The directories whose every entry was seen: a path under one that is absent from
    /// `files` and from its listing is missing.
    whole: Vec<String>,
    listed: BTreeMap<String, Vec<String>>,
    exists: BTreeMap<String, bool>,
    ran: BTreeMap<String, CmdOutput>,
}

impl Snapshot {
    /// The file as `read_files` gives it, when the survey answers it.
    pub fn file(&self, path: &str) -> Option<FileData> {
        if let Some(d) = self.files.get(path) {
            return Some(d.clone());
        }
        let seen_absent =
            || self.whole.iter().any(|d| path.strip_prefix(d.as_str()).is_some_and(|r| r.starts_with('/')) && !self.listed.get(d).is_some_and(|l| l.iter().any(|p| p == path)));
        (self.asked.contains(path) || seen_absent()).then_some(FileData::Missing)
    }

    /// Every file under the directory, when the survey listed it.
    pub fn listing(&self, dir: &str) -> Option<&[String]> {
        self.listed.get(dir).map(Vec::as_slice)
    }

    /// Whether the path exists, when the survey can tell.
    pub fn exists(&self, path: &str) -> Option<bool> {
        if let Some(e) = self.exists.get(path) {
            return Some(*e);
        }
        if let Some(d) = self.file(path) {
            return Some(d != FileData::Missing);
        }
        self.listed.values().any(|l| l.iter().any(|p| p == path)).then_some(true)
    }

    pub fn ran(&self, script: &str) -> Option<&CmdOutput> {
        self.ran.get(script)
    }

    /// Only the answers to what `req` asks (its files, its directories' listings and files, its
    /// paths and scripts): what a caller that asked `req` beside a larger survey keeps.
    pub fn answers_to(&self, req: &Survey) -> Snapshot {
        let dirs: Vec<&str> = req.list_read.iter().chain(&req.list).map(|d| d.trim_end_matches('/')).collect();
        let under = |p: &str| dirs.iter().any(|d| p.strip_prefix(d).is_some_and(|r| r.is_empty() || r.starts_with('/'))) || req.read.iter().any(|r| r == p);
        Snapshot {
            files: self.files.iter().filter(|(p, _)| under(p)).map(|(p, d)| (p.clone(), d.clone())).collect(),
            asked: self.asked.iter().filter(|p| req.read.contains(p)).cloned().collect(),
            whole: self.whole.iter().filter(|d| dirs.contains(&d.as_str())).cloned().collect(),
            listed: self.listed.iter().filter(|(d, _)| dirs.contains(&d.trim_end_matches('/'))).map(|(d, l)| (d.clone(), l.clone())).collect(),
            exists: self.exists.iter().filter(|(p, _)| req.exists.contains(p)).map(|(p, e)| (p.clone(), *e)).collect(),
            ran: self.ran.iter().filter(|(s, _)| req.run.contains(s)).map(|(s, o)| (s.clone(), o.clone())).collect(),
        }
    }
}

fn absolute(paths: &[String]) -> Vec<&String> {
    let mut v: Vec<&String> = paths.iter().filter(|p| p.starts_with('/')).collect();
    v.sort();
    v.dedup();
    v
}

/// The survey as one POSIX shell script (GNU find, stat and base64). `root` is prepended to
/// every path on the node and taken off what it prints: empty on a real node; a directory laid
/// out like a node's filesystem in tests.
///
/// It starts few programs, whatever the number of files (each costs the node about a
/// millisecond of CPU): a `find` prints the first line, a second tags the files asked by name,
/// a third lists and tags every directory to read (the alternative that holds included), a
/// fourth lists the directories only listed; then one pipeline gives the sizes and the bytes
/// of every file to read; the shell itself answers existence.
pub fn script(req: &Survey, root: &str) -> String {
    let at = |p: &str| quote(&format!("{root}{p}"));
    let words = |paths: &[String]| absolute(paths).iter().map(|p| at(p)).collect::<Vec<_>>().join(" ");
    let (big, small) = (MAX_FILE_BYTES, MAX_FILE_BYTES + 1);
    // A file whose bytes the survey gives (the others are tagged, not read).
    let readable = |skip: &str| format!("-type f{skip} -readable -size -{small}c -print0");
    let tags = format!(r"\( \( ! -readable -printf 'U%p\0' \) -o \( -size +{big}c -printf 'Z%s %p\0' \) -o -printf 'F%p\0' \)");
    let kinds = |rest: &str| format!(r"\( -type l -printf 'M%p\0' \) -o \( ! -type f -printf 'D%p\0' \) -o {rest}");
    let skip: String = req.skip.iter().map(|s| format!(" ! -name {}", quote(s))).collect();
    // The first line is printed by find itself, with the GNU dialect the rest needs (`-readable`,
    // `-printf`, `,`): a node whose find lacks it gives no answer (asked file by file), not one
    // where every file looks missing.
    let mut s = String::from("set -u\nfind / -maxdepth 0 \\( -readable -o -true \\) -printf 'kcert-survey' , -printf ' 1\\0' 2>/dev/null\nset --\n");
    // The alternative that holds puts its directories in "$@", read with the others.
    let exists = |p: &String| format!("[ -e {} ]", at(p));
    let any = |ps: &[String]| if ps.is_empty() { "false".to_string() } else { ps.iter().map(exists).collect::<Vec<_>>().join(" || ") };
    for (i, a) in req.alternatives.iter().enumerate() {
        let when = format!("{{ {}; }} && ! {{ {}; }}", any(&a.when), any(&a.unless));
        s.push_str(&format!("{} {when}; then\nprintf 'A{i}\\0'\nset -- {}\n", if i == 0 { "if" } else { "elif" }, words(&a.list_read)));
    }
    if !req.alternatives.is_empty() {
        s.push_str("fi\n");
    }
    let read = words(&req.read);
    let mut to_read = Vec::new();
    if !read.is_empty() {
        s.push_str(&format!(r"find -L {read} -maxdepth 0 {} 2>/dev/null", kinds(&tags)));
        s.push('\n');
        to_read.push(format!("find -L {read} -maxdepth 0 {}", readable("")));
    }
    // Never a bare `find` (it would walk the working directory): "$@" only where it holds some.
    let dirs = words(&req.list_read);
    let (dirs, guard) = match (dirs.is_empty(), req.alternatives.is_empty()) {
        (_, true) => (dirs, ""),
        (false, false) => (format!("{dirs} \"$@\""), ""),
        (true, false) => ("\"$@\"".to_string(), "[ $# -gt 0 ] && "),
    };
    if !dirs.is_empty() {
        // Listed and tagged in one walk (GNU find's `,` evaluates both sides for every path).
        s.push_str(&format!(r"{guard}find -L {dirs} \( -type f -printf 'I%H\0%p\0' \) , \( {} \) 2>/dev/null", kinds(&format!(r"\({skip} {tags} \)"))));
        s.push('\n');
        to_read.push(format!("{guard}find -L {dirs} {}", readable(&skip)));
    }
    let listed = words(&req.list);
    if !listed.is_empty() {
        s.push_str(&format!(r"find -L {listed} -type f -printf 'I%H\0%p\0' 2>/dev/null"));
        s.push('\n');
    }
    // stat and cat skip alike a file gone meanwhile, so sizes and bytes stay in step.
    if !to_read.is_empty() {
        s.push_str(&format!(
            "{{ {}; }} 2>/dev/null | xargs -0r sh -c 'stat -L --printf \"S%s %n\\0\" -- \"$@\"; printf B; cat -- \"$@\" | base64 -w0; printf \"\\0\"' sh 2>/dev/null\n",
            to_read.join("; ")
        ));
    }
    // `[ -e ]` follows links as `find -L` does: a broken link does not exist.
    for p in absolute(&req.exists) {
        s.push_str(&format!("{} && printf 'X%s\\0' {}\n", exists(p), at(p)));
    }
    for (i, cmd) in req.run.iter().enumerate() {
        s.push_str(&format!("o=$( ( {}\n) 2>/dev/null </dev/null; printf '/%s' \"$?\"); printf 'C{i}\\0%s\\0' \"$o\"\n", cmd.trim_end()));
    }
    s.push_str("printf 'E\\0'\n");
    s
}

/// Reads what `script(req, root)` printed. An answer that did not finish, or whose bytes do
/// not add up to the sizes it gave, is an error: callers then ask as usual.
pub fn parse(stdout: &[u8], req: &Survey, root: &str) -> Result<Snapshot, String> {
    let node = |raw: &[u8]| -> Result<String, String> {
        let p = String::from_utf8_lossy(raw);
        p.strip_prefix(root).map(str::to_string).ok_or_else(|| format!("a path outside the survey: {p:?}"))
    };
    let mut snap = Snapshot::default();
    let mut records = stdout.split(|b| *b == 0);
    if records.next() != Some(b"kcert-survey 1".as_slice()) {
        return Err("the survey did not start".into());
    }
    let mut sizes: Vec<(usize, String)> = Vec::new();
    let mut finished = false;
    let mut chosen: Option<&Alternative> = None;
    while let Some(r) = records.next() {
        let Some((&tag, rest)) = r.split_first() else {
            continue;
        };
        match tag {
            b'M' => {
                snap.files.insert(node(rest)?, FileData::Missing);
            }
            b'D' => {
                snap.files.insert(node(rest)?, FileData::NotAFile);
            }
            b'U' => {
                snap.files.insert(node(rest)?, FileData::Unreadable("permission denied".into()));
            }
            b'Z' | b'S' => {
                let text = String::from_utf8_lossy(rest);
                let (n, p) = text.split_once(' ').ok_or_else(|| format!("a bad size record: {text:?}"))?;
                let n: u64 = n.parse().map_err(|_| format!("a bad size: {n:?}"))?;
                let p = node(p.as_bytes())?;
                if tag == b'Z' {
                    snap.files.insert(p, FileData::TooLarge(n));
                } else {
                    sizes.push((n as usize, p));
                }
            }
            // Read below, from the bytes; one that went meanwhile stays unanswered.
            b'F' => {}
            b'B' => {
                let bytes = base64::engine::general_purpose::STANDARD.decode(rest).map_err(|e| format!("file bytes are not base64: {e}"))?;
                let total: usize = sizes.iter().map(|(n, _)| n).sum();
                if total != bytes.len() {
                    return Err(format!("files changed while read: {} bytes for sizes adding up to {total}", bytes.len()));
                }
                let mut at = 0;
                for (n, p) in sizes.drain(..) {
                    snap.files.insert(p, FileData::Found(bytes[at..at + n].to_vec()));
                    at += n;
                }
            }
            b'I' => {
                let dir = node(rest)?;
                let file = node(records.next().ok_or("a listing ended early")?)?;
                snap.listed.entry(dir).or_default().push(file);
            }
            b'X' => {
                snap.exists.insert(node(rest)?, true);
            }
            b'A' => {
                let i: usize = String::from_utf8_lossy(rest).parse().map_err(|_| "a bad alternative record")?;
                chosen = Some(req.alternatives.get(i).ok_or("an alternative the survey did not ask")?);
            }
            b'C' => {
                let i: usize = String::from_utf8_lossy(rest).parse().map_err(|_| "a bad command record")?;
                let out = records.next().ok_or("a command's output is missing")?;
                let cut = out.iter().rposition(|b| *b == b'/').ok_or("a command's status is missing")?;
                let status = String::from_utf8_lossy(&out[cut + 1..]).parse().ok();
                let script = req.run.get(i).ok_or("a command the survey did not ask")?;
                snap.ran.insert(script.clone(), CmdOutput { status, stdout: out[..cut].to_vec(), stderr: Vec::new() });
            }
            b'E' => finished = true,
            other => return Err(format!("an unexpected record {:?}", other as char)),
        }
    }
    if !finished {
        return Err("the survey did not finish".into());
    }
    if !sizes.is_empty() {
        return Err("file sizes without their bytes".into());
    }
    snap.asked = absolute(&req.read).into_iter().cloned().collect();
    let list_read: Vec<String> = req.list_read.iter().chain(chosen.map(|a| a.list_read.as_slice()).unwrap_or_default()).cloned().collect();
    snap.whole = absolute(&list_read).into_iter().map(|d| d.trim_end_matches('/').to_string()).collect();
    for d in absolute(&list_read).into_iter().chain(absolute(&req.list)) {
        snap.listed.entry(d.clone()).or_default();
    }
    for p in absolute(&req.exists) {
        snap.exists.entry(p.clone()).or_insert(false);
    }
    Ok(snap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(s: &str) -> Vec<u8> {
        let out = std::process::Command::new("sh").arg("-c").arg(s).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    #[test]
    fn one_script_answers_as_the_separate_scripts_do_in_a_real_shell() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_string_lossy().into_owned();
        let w = |p: &str, b: &[u8]| {
            let f = dir.path().join(p.trim_start_matches('/'));
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, b).unwrap();
        };
        w("/pki/ca.crt", b"CA\n");
        w("/pki/ca.key", b"secret");
        w("/pki/empty.crt", b"");
        w("/pki/sub/it's.pem", &[0, 1, 2, 255]);
        w("/pki/big.crt", &vec![b'x'; MAX_FILE_BYTES as usize + 1]);
        w("/etc/kubelet.conf", b"apiVersion: v1\n");
        std::os::unix::fs::symlink("../etc/kubelet.conf", dir.path().join("pki/link.conf")).unwrap();
        std::os::unix::fs::symlink("nowhere", dir.path().join("pki/broken.pem")).unwrap();
        std::fs::create_dir_all(dir.path().join("units")).unwrap();
        let req = Survey {
            read: vec!["/etc/kubelet.conf".into(), "/etc/none".into(), "/pki".into(), "/pki/broken.pem".into(), "relative".into()],
            exists: vec!["/pki/ca.key".into(), "/pki/nokey".into(), "/pki/broken.pem".into()],
            list_read: vec!["/pki".into(), "/gone".into()],
            list: vec!["/units".into()],
            skip: vec!["*.key".into()],
            run: vec!["echo hello\n".into(), "printf 'a\\n\\n'; exit 3\n".into()],
            alternatives: Vec::new(),
        };
        let snap = parse(&run(&script(&req, &root)), &req, &root).unwrap();
        assert_eq!(snap.file("/etc/kubelet.conf"), Some(FileData::Found(b"apiVersion: v1\n".to_vec())));
        assert_eq!(snap.file("/etc/none"), Some(FileData::Missing));
        assert_eq!(snap.file("/pki"), Some(FileData::NotAFile));
        assert_eq!(snap.file("/pki/broken.pem"), Some(FileData::Missing), "a broken link is missing, as `[ -e ]` says");
        assert_eq!(snap.file("relative"), None, "not asked of the node");
        assert_eq!(snap.file("/pki/ca.crt"), Some(FileData::Found(b"CA\n".to_vec())));
        assert_eq!(snap.file("/pki/empty.crt"), Some(FileData::Found(Vec::new())));
        assert_eq!(snap.file("/pki/sub/it's.pem"), Some(FileData::Found(vec![0, 1, 2, 255])));
        assert_eq!(snap.file("/pki/link.conf"), Some(FileData::Found(b"apiVersion: v1\n".to_vec())), "links followed");
        assert_eq!(snap.file("/pki/big.crt"), Some(FileData::TooLarge(MAX_FILE_BYTES + 1)));
        assert_eq!(snap.file("/pki/ca.key"), None, "a skipped name is never read");
        assert_eq!(snap.file("/pki/sub"), Some(FileData::NotAFile), "a directory under a listed one");
        assert_eq!(snap.file("/pki/sub/none.pem"), Some(FileData::Missing), "absent under a directory seen whole");
        assert_eq!(snap.file("/gone/x.crt"), Some(FileData::Missing));
        assert_eq!(snap.file("/units/x.crt"), None, "a directory only listed says nothing of what it lacks");
        let mut listed = snap.listing("/pki").unwrap().to_vec();
        listed.sort();
        assert_eq!(listed, ["/pki/big.crt", "/pki/ca.crt", "/pki/ca.key", "/pki/empty.crt", "/pki/link.conf", "/pki/sub/it's.pem"]);
        assert_eq!(snap.listing("/gone"), Some(&[][..]));
        assert_eq!(snap.listing("/units"), Some(&[][..]));
        assert_eq!(snap.listing("/etc"), None);
        assert_eq!((snap.exists("/pki/ca.key"), snap.exists("/pki/nokey"), snap.exists("/pki/broken.pem")), (Some(true), Some(false), Some(false)));
        let hello = snap.ran("echo hello\n").unwrap();
        assert_eq!((hello.status, hello.stdout.as_slice()), (Some(0), b"hello\n".as_slice()));
        let failed = snap.ran("printf 'a\\n\\n'; exit 3\n").unwrap();
        assert_eq!((failed.status, failed.stdout.as_slice()), (Some(3), b"a\n\n".as_slice()), "output kept exactly, status too");
        // Kept for a smaller question asked beside it: its answers, as they were, and no other.
        let small = Survey { list_read: vec!["/pki".into()], ..Survey::default() };
        let kept = snap.answers_to(&small);
        for p in ["/pki/ca.crt", "/pki/sub/it's.pem", "/pki/sub/none.pem", "/pki/big.crt", "/pki/link.conf"] {
            assert_eq!(kept.file(p), snap.file(p), "{p}");
        }
        assert_eq!(kept.listing("/pki"), snap.listing("/pki"));
        assert_eq!((kept.file("/etc/kubelet.conf"), kept.file("/gone/x.crt"), kept.listing("/units")), (None, None, None), "what it did not ask is let go");
        assert!(kept.ran("echo hello\n").is_none() && kept.exists("/etc/none").is_none());

        // The same files through the separate scripts give the same answers.
        let paths: Vec<String> = ["/etc/kubelet.conf", "/etc/none", "/pki", "/pki/ca.crt", "/pki/big.crt", "/pki/sub/it's.pem"].iter().map(|p| format!("{root}{p}")).collect();
        let each = super::super::script::parse_read_files(&run(&super::super::script::read_files(&paths)), paths.len()).unwrap();
        for (p, d) in paths.iter().zip(each) {
            assert_eq!(snap.file(p.strip_prefix(&root).unwrap()), Some(d), "{p}");
        }
        let mut each = super::super::script::parse_list_files(&run(&super::super::script::list_files(&[format!("{root}/pki")])));
        each.sort();
        assert_eq!(each.iter().map(|p| p.strip_prefix(&root).unwrap()).collect::<Vec<_>>(), listed);

        // Unreadable to a non-root user: said so (root reads everything, so only checked then).
        std::fs::set_permissions(dir.path().join("pki/ca.crt"), std::fs::Permissions::from_mode(0o000)).unwrap();
        let snap = parse(&run(&script(&req, &root)), &req, &root).unwrap();
        if std::fs::read(dir.path().join("pki/ca.crt")).is_err() {
            assert_eq!(snap.file("/pki/ca.crt"), Some(FileData::Unreadable("permission denied".into())));
        }
    }

    #[test]
    fn only_the_first_alternative_that_holds_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_string_lossy().into_owned();
        for (p, b) in [("/a/marker", "m"), ("/a/dir/x.crt", "x"), ("/b/marker", "m"), ("/b/dir/y.crt", "y"), ("/c/dir/z.crt", "z")] {
            let f = dir.path().join(p.trim_start_matches('/'));
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, b).unwrap();
        }
        let alt = |when: &str, unless: &str, dir: &str| Alternative { when: vec![when.into()], unless: vec![unless.into()], list_read: vec![dir.into()] };
        let req = Survey { alternatives: vec![alt("/none", "/nothing", "/c/dir"), alt("/a/marker", "/b/marker", "/a/dir"), alt("/b/marker", "/nothing", "/b/dir"), alt("/a/marker", "/nothing", "/c/dir")], ..Default::default() };
        let snap = parse(&run(&script(&req, &root)), &req, &root).unwrap();
        assert_eq!(snap.listing("/b/dir"), Some(&["/b/dir/y.crt".to_string()][..]), "the first that holds: /b (/a is ruled out by its unless)");
        assert_eq!(snap.file("/b/dir/y.crt"), Some(FileData::Found(b"y".to_vec())));
        assert_eq!(snap.file("/b/dir/none.crt"), Some(FileData::Missing));
        assert_eq!((snap.listing("/a/dir"), snap.listing("/c/dir")), (None, None), "no other alternative is read");
        assert_eq!((snap.file("/a/dir/x.crt"), snap.file("/c/dir/z.crt")), (None, None));
        // None holds: nothing is walked (a bare `find` would walk the working directory, whose
        // paths are outside the survey and refused).
        let none = Survey { alternatives: vec![alt("/none", "/nothing", "/c/dir")], ..Default::default() };
        let snap = parse(&run(&script(&none, &root)), &none, &root).unwrap();
        assert_eq!((snap.listing("/c/dir"), snap.file("/c/dir/z.crt")), (None, None));
    }

    #[test]
    fn a_find_without_gnu_dialect_gives_no_answer_rather_than_every_file_missing() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("node").to_string_lossy().into_owned();
        std::fs::create_dir_all(format!("{root}/etc")).unwrap();
        std::fs::write(format!("{root}/etc/a.crt"), "A").unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        // BusyBox's find: no -printf, -readable or `,` (it says so and exits 1).
        std::fs::write(bin.join("find"), "#!/bin/sh\necho 'find: unrecognized: -printf' >&2\nexit 1\n").unwrap();
        std::fs::set_permissions(bin.join("find"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let req = Survey { read: vec!["/etc/a.crt".into()], list_read: vec!["/etc".into()], ..Default::default() };
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let out = std::process::Command::new("sh").arg("-c").arg(script(&req, &root)).env("PATH", path).output().unwrap();
        assert!(parse(&out.stdout, &req, &root).is_err(), "{:?}", String::from_utf8_lossy(&out.stdout));
        assert_eq!(parse(&run(&script(&req, &root)), &req, &root).unwrap().file("/etc/a.crt"), Some(FileData::Found(b"A".to_vec())), "GNU find answers");
    }

    #[test]
    fn an_answer_cut_short_or_out_of_step_is_refused() {
        let req = Survey { read: vec!["/a".into()], ..Default::default() };
        assert!(parse(b"kcert-survey 1\0Fa\0", &req, "").is_err(), "no end");
        assert!(parse(b"kcert-survey 1\0S3 /a\0BYWI=\0E\0", &req, "").is_err(), "2 bytes for 3");
        assert!(parse(b"something else\0E\0", &req, "").is_err());
        let ok = parse(b"kcert-survey 1\0F/a\0S2 /a\0BYWI=\0E\0", &req, "").unwrap();
        assert_eq!(ok.file("/a"), Some(FileData::Found(b"ab".to_vec())));
        assert_eq!(parse(b"kcert-survey 1\0E\0", &req, "").unwrap().file("/a"), Some(FileData::Missing));
    }
}
