//! Owns: the shell scripts that read, list and stat files on a remote node, and the pure
//! functions that parse what they print. A fact is a command plus a parse function.
//! Must not: send anything anywhere; the SSH transport runs these.

use base64::Engine;

use super::{FileData, MAX_FILE_BYTES};
use crate::text::shell_quote as quote;

/// Put before every script kcert sends a node: the C locale for the script and every program it
/// starts. What kcert parses (stat, df, sha256sum, tools' complaints) then reads the same on
/// every node, and no program loads locale data at start: a login's `LANG=C.UTF-8` (Debian's
/// sshd sets it through PAM) has each program that calls setlocale(3) open a dozen locale
/// files first, 3 ms a program on the test fleet's overlay filesystem, a tenth of a second on
/// one step's write.
const IN_C_LOCALE: &str = "LC_ALL=C; export LC_ALL\n";

/// `script`, run in the C locale (see `IN_C_LOCALE`).
pub fn in_c_locale(script: &str) -> String {
    let mut s = String::with_capacity(IN_C_LOCALE.len() + script.len());
    s.push_str(IN_C_LOCALE);
    s.push_str(script);
    s
}

fn words(paths: &[String]) -> String {
    paths.iter().map(|p| quote(p)).collect::<Vec<_>>().join(" ")
}

/// One header line per file, then for found files one line of base64: line-framed, so a
/// failing `cat` cannot desynchronise the parse.
pub fn read_files(paths: &[String]) -> String {
    read_files_up_to(paths, MAX_FILE_BYTES)
}

/// `read_files`, with files up to `max` bytes read.
pub fn read_files_up_to(paths: &[String], max: u64) -> String {
    format!(
        r#"for f in {}; do
  if [ ! -e "$f" ]; then echo M
  elif [ ! -f "$f" ]; then echo D
  elif [ ! -r "$f" ]; then echo U
  else s=$(wc -c < "$f" 2>/dev/null || echo x)
    case "$s" in *[!0-9\ ]*|'') echo U ;;
      *) if [ "$s" -gt {max} ]; then echo "L $s"; else echo F; base64 < "$f" | tr -d '\n'; echo; fi ;;
    esac
  fi
done
"#,
        words(paths),
    )
}

/// Compare-and-swap of one small file (see `Transport::compare_and_swap`): under `flock` on a
/// lock file beside it, prints what the file holds (base64, or `-` when absent), then, when
/// that is `expect`, writes `new` through a temp file and a rename (or removes the file) and
/// prints `swapped`.
pub fn compare_and_swap(path: &str, expect: Option<&[u8]>, new: Option<&[u8]>) -> String {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let expect = expect.map(b64).unwrap_or_else(|| "-".into());
    let change = match new {
        Some(b) => format!("t=\"$d/.kcert.swap.$$\"; (umask 077; printf '%s' {} | base64 -d > \"$t\") && sync \"$t\" && mv -f \"$t\" \"$p\" || {{ rm -f \"$t\"; exit 3; }}", quote(&b64(b))),
        None => "rm -f \"$p\" || exit 3".to_string(),
    };
    format!(
        r#"set -u
p={p}; d=$(dirname "$p")
mkdir -p "$d" && chmod 700 "$d" || exit 3
command -v flock >/dev/null || {{ echo "flock (util-linux) is not installed on this node: kcert's lease needs it" >&2; exit 3; }}
exec 9>>"$d/.lock" || exit 3
flock -w 10 9 || {{ echo "the lock $d/.lock stayed busy for 10 s" >&2; exit 3; }}
rm -f "$d"/.kcert.swap.*
if [ -e "$p" ]; then cur=$(base64 < "$p" | tr -d '
'); else cur=-; fi
echo "$cur"
[ "$cur" = {expect} ] || exit 0
{change}
sync "$d" 2>/dev/null || sync
echo swapped
"#,
        p = quote(path),
        expect = quote(&expect),
    )
}

pub fn parse_compare_and_swap(stdout: &[u8]) -> Result<super::Swapped, String> {
    let text = String::from_utf8_lossy(stdout);
    let mut lines = text.lines();
    let cur = lines.next().ok_or("no answer")?.trim();
    let before = if cur == "-" { None } else { Some(base64::engine::general_purpose::STANDARD.decode(cur).map_err(|e| format!("not base64: {e}"))?) };
    Ok(super::Swapped { before, swapped: lines.next() == Some("swapped") })
}

pub fn parse_read_files(stdout: &[u8], count: usize) -> Result<Vec<FileData>, String> {
    let text = String::from_utf8_lossy(stdout);
    let mut lines = text.lines();
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let header = lines.next().ok_or("file listing ended early")?;
        out.push(match header.split_once(' ').map_or((header, ""), |(a, b)| (a, b)) {
            ("M", _) => FileData::Missing,
            ("D", _) => FileData::NotAFile,
            ("U", _) => FileData::Unreadable("permission denied".into()),
            ("L", size) => FileData::TooLarge(size.trim().parse().unwrap_or(0)),
            ("F", _) => {
                let body = lines.next().ok_or("file body missing")?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(body.trim())
                    .map_err(|e| format!("file body is not base64: {e}"))?;
                FileData::Found(bytes)
            }
            (other, _) => return Err(format!("unexpected line in file listing: {other:?}")),
        });
    }
    Ok(out)
}

pub fn list_files(paths: &[String]) -> String {
    format!("for p in {}; do [ -e \"$p\" ] && find -L \"$p\" -type f -print0 2>/dev/null; done; true\n", words(paths))
}

pub fn parse_list_files(stdout: &[u8]) -> Vec<String> {
    stdout
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

pub fn exists(paths: &[String]) -> String {
    format!("for p in {}; do if [ -e \"$p\" ]; then echo 1; else echo 0; fi; done\n", words(paths))
}

pub fn parse_exists(stdout: &[u8], count: usize) -> Result<Vec<bool>, String> {
    let v: Vec<bool> = String::from_utf8_lossy(stdout).lines().map(|l| l.trim() == "1").collect();
    if v.len() != count {
        return Err(format!("expected {count} answers, got {}", v.len()));
    }
    Ok(v)
}

/// Removes files (see `Transport::remove_files`); exits 1 naming the first it cannot remove.
pub fn remove_files(paths: &[String]) -> String {
    let mut s = String::from("set -u\n");
    for p in paths {
        let q = quote(p);
        s.push_str(&format!("if [ -e {q} ] || [ -L {q} ]; then rm -f -- {q} || {{ echo \"cannot remove {}\" >&2; exit 1; }}; fi\n", p.replace('"', "")));
    }
    let dirs: std::collections::BTreeSet<String> = paths.iter().map(|p| p.rsplit_once('/').map(|(d, _)| if d.is_empty() { "/".to_string() } else { d.to_string() }).unwrap_or_else(|| "/".into())).collect();
    let dirs: Vec<String> = dirs.iter().map(|d| quote(d)).collect();
    s.push_str(&format!("sync {} 2>/dev/null || sync\n", dirs.join(" ")));
    s
}

/// Removes the directories that are empty, in order (see `Transport::remove_empty_dirs`).
pub fn remove_empty_dirs(dirs: &[String]) -> String {
    let mut s = String::new();
    for d in dirs {
        s.push_str(&format!("rmdir -- {} 2>/dev/null\n", quote(d)));
    }
    s.push_str("true\n");
    s
}

/// Removes the `.kcert.*` temporary files in each directory, and the `.kcert.*` directories a
/// write makes for them (never following a link); prints how many went.
pub fn remove_temps(dirs: &[String]) -> String {
    let mut s = String::from("n=0\n");
    for d in dirs {
        s.push_str(&format!(
            "for f in {}/.kcert.*; do if [ -L \"$f\" ] || [ -f \"$f\" ]; then rm -f -- \"$f\" && n=$((n+1)); elif [ -d \"$f\" ]; then rm -rf -- \"$f\" && n=$((n+1)); fi; done\n",
            quote(d)
        ));
    }
    s.push_str("echo $n\n");
    s
}

/// One line per path: `ok`, or why it cannot be written (see `Transport::unwritable`).
pub fn unwritable(paths: &[String]) -> String {
    let mut s = String::new();
    for p in paths {
        s.push_str(&format!(
            r#"p={p}
if [ -f "$p" ]; then
  if [ -w "$p" ] && : >> "$p" 2>/dev/null; then echo ok; else echo "the file cannot be written (read-only or immutable)"; fi
else
  d="$p"; while [ ! -e "$d" ] && [ "$d" != / ]; do d=$(dirname "$d"); done
  if [ ! -d "$d" ]; then echo "$d is in the way: a file where a directory must be made"
  else t=$(mktemp "$d/.kcert.XXXXXX" 2>/dev/null) && rm -f -- "$t" && echo ok || echo "nothing can be created in $d (read-only, immutable, or full)"
  fi
fi
"#,
            p = quote(p)
        ));
    }
    s
}

pub fn parse_lines(stdout: &[u8], count: usize) -> Result<Vec<Option<String>>, String> {
    let text = String::from_utf8_lossy(stdout);
    let lines: Vec<Option<String>> = text.lines().map(|l| if l == "ok" { None } else { Some(l.to_string()) }).collect();
    if lines.len() != count {
        return Err(format!("expected {count} answers, got {}", lines.len()));
    }
    Ok(lines)
}

/// `df` of the nearest existing parent of each path, in one `df` (a line per path, in order,
/// the same filesystem as often as it is named).
pub fn free_space_all(paths: &[String]) -> String {
    let quoted: Vec<String> = paths.iter().map(|p| quote(p)).collect();
    format!(
        "set --\nfor p in {}; do while [ ! -e \"$p\" ] && [ \"$p\" != / ]; do p=${{p%/*}}; [ -n \"$p\" ] || p=/; done; set -- \"$@\" \"$p\"; done\ndf -Pk -- \"$@\"\n",
        quoted.join(" ")
    )
}

/// Available bytes from `df -Pk` output (the fourth column of the second line).
pub fn parse_df(stdout: &[u8]) -> Result<u64, String> {
    parse_df_all(stdout, 1).map(|v| v[0])
}

/// Available bytes of each of `count` paths from one `df -Pk` (the fourth column of each line
/// after the header).
pub fn parse_df_all(stdout: &[u8], count: usize) -> Result<Vec<u64>, String> {
    let text = String::from_utf8_lossy(stdout);
    let lines: Vec<&str> = text.lines().skip(1).collect();
    if lines.len() != count {
        return Err(format!("unexpected df output (a line for each of {count} paths): {text:?}"));
    }
    lines
        .iter()
        .map(|line| line.split_whitespace().nth(3).and_then(|v| v.parse::<u64>().ok()).map(|kb| kb * 1024).ok_or_else(|| format!("unexpected df output: {line:?}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_files_output_parses_in_order() {
        let out = b"M\nF\naGVsbG8=\nL 2000000\nU\nD\n";
        let got = parse_read_files(out, 5).unwrap();
        assert_eq!(
            got,
            vec![
                FileData::Missing,
                FileData::Found(b"hello".to_vec()),
                FileData::TooLarge(2_000_000),
                FileData::Unreadable("permission denied".into()),
                FileData::NotAFile
            ]
        );
        assert!(parse_read_files(b"F\n", 1).is_err());
    }

    #[test]
    fn empty_files_round_trip() {
        assert_eq!(parse_read_files(b"F\n\n", 1).unwrap(), vec![FileData::Found(vec![])]);
    }

    #[test]
    fn df_output_gives_available_bytes() {
        let out = b"Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/vda 100 50 42 55% /\n";
        assert_eq!(parse_df(out).unwrap(), 42 * 1024);
    }

    #[test]
    fn every_program_a_script_starts_runs_in_the_c_locale_whatever_the_login_sets() {
        let out = std::process::Command::new("sh").arg("-s").env("LANG", "C.UTF-8").env("LC_ALL", "de_DE.UTF-8").stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(in_c_locale("env\n").as_bytes())?;
            c.wait_with_output()
        });
        let env = String::from_utf8(out.unwrap().stdout).unwrap();
        assert!(env.lines().any(|l| l == "LC_ALL=C"), "a program the script starts sees LC_ALL=C: {env}");
        assert!(!env.contains("de_DE"), "{env}");
    }

    #[test]
    fn scripts_run_in_a_real_shell() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("it's.pem");
        std::fs::write(&f, b"abc").unwrap();
        let paths = vec![f.to_string_lossy().into_owned(), dir.path().join("none").to_string_lossy().into_owned()];
        let run = |s: String| std::process::Command::new("sh").arg("-c").arg(s).output().unwrap().stdout;
        assert_eq!(parse_read_files(&run(read_files(&paths)), 2).unwrap(), vec![FileData::Found(b"abc".to_vec()), FileData::Missing]);
        assert_eq!(parse_list_files(&run(list_files(&[dir.path().to_string_lossy().into_owned()]))), vec![paths[0].clone()]);
        assert_eq!(parse_exists(&run(exists(&paths)), 2).unwrap(), vec![true, false]);
        assert!(parse_df(&run(free_space_all(&paths[1..2]))).unwrap() > 0);
        let deep = dir.path().join("none/deeper/still").to_string_lossy().into_owned();
        let all = parse_df_all(&run(free_space_all(&[paths[0].clone(), deep, "/".into()])), 3).unwrap();
        assert!(all.iter().all(|b| *b > 0), "a line for each path, even one not made yet: {all:?}");
        assert!(parse_df_all(b"Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/vda 100 50 42 55% /\n", 2).is_err(), "a path without its line");
    }

    #[test]
    fn compare_and_swap_in_a_real_shell_swaps_only_what_it_expects() {
        let dir = tempfile::tempdir().unwrap();
        let p = format!("{}/kcert/lease.json", dir.path().display());
        let run = |s: String| {
            let out = std::process::Command::new("sh").arg("-c").arg(s).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            parse_compare_and_swap(&out.stdout).unwrap()
        };
        // Only while absent: taken; again: refused, showing what is there.
        assert_eq!(run(compare_and_swap(&p, None, Some(b"A"))), super::super::Swapped { before: None, swapped: true });
        assert_eq!(run(compare_and_swap(&p, None, Some(b"B"))), super::super::Swapped { before: Some(b"A".to_vec()), swapped: false });
        assert_eq!(std::fs::read(&p).unwrap(), b"A");
        // While it holds what is expected: replaced, 0600 in a 0700 directory; then removed.
        assert!(run(compare_and_swap(&p, Some(b"A"), Some(b"{\"x\": 'y'}\n"))).swapped);
        assert_eq!(std::fs::read(&p).unwrap(), b"{\"x\": 'y'}\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(dir.path().join("kcert")).unwrap().permissions().mode() & 0o777, 0o700);
        assert!(!run(compare_and_swap(&p, Some(b"A"), None)).swapped, "not what it holds: kept");
        assert!(run(compare_and_swap(&p, Some(b"{\"x\": 'y'}\n"), None)).swapped);
        assert!(!std::path::Path::new(&p).exists());
    }

    #[test]
    fn temps_are_swept_and_writability_probed_in_a_real_shell() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_string_lossy().into_owned();
        std::fs::write(dir.path().join(".kcert.AbC123"), b"a key").unwrap();
        std::fs::write(dir.path().join(".kcert.4242.0.99"), b"a key").unwrap();
        std::fs::create_dir(dir.path().join(".kcert.4242.5f3a")).unwrap();
        std::fs::write(dir.path().join(".kcert.4242.5f3a/ca.key"), b"a key").unwrap();
        std::fs::write(dir.path().join("ca.crt"), b"keep").unwrap();
        std::fs::write(dir.path().join("blocker"), b"a file").unwrap();
        let run = |s: String| std::process::Command::new("sh").arg("-c").arg(s).output().unwrap().stdout;
        assert_eq!(String::from_utf8(run(remove_temps(std::slice::from_ref(&d)))).unwrap().trim(), "3");
        let left: Vec<String> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        assert!(left.iter().all(|n| !n.starts_with(".kcert.")), "{left:?}");
        let paths = vec![format!("{d}/ca.crt"), format!("{d}/new/sub/x.key"), format!("{d}/blocker/sub/x.key")];
        let answers = parse_lines(&run(unwritable(&paths)), 3).unwrap();
        assert_eq!(answers[0], None);
        assert_eq!(answers[1], None);
        assert!(answers[2].as_deref().is_some_and(|a| a.contains("blocker is in the way")), "{answers:?}");
    }

    #[test]
    fn removal_takes_links_not_targets_and_only_empty_directories() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.pem");
        std::fs::write(&real, b"x").unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link.pem")).unwrap();
        let sub = dir.path().join("staging/new");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("ca.key"), b"k").unwrap();
        let p = |x: &std::path::Path| x.to_string_lossy().into_owned();
        let files = vec![p(&dir.path().join("link.pem")), p(&sub.join("ca.key")), p(&dir.path().join("gone"))];
        let out = std::process::Command::new("sh").arg("-c").arg(remove_files(&files)).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(real.exists() && !dir.path().join("link.pem").exists() && !sub.join("ca.key").exists());
        std::fs::write(dir.path().join("staging/keep"), b"k").unwrap();
        let dirs = vec![p(&sub), p(&dir.path().join("staging"))];
        assert!(std::process::Command::new("sh").arg("-c").arg(remove_empty_dirs(&dirs)).status().unwrap().success());
        assert!(!sub.exists() && dir.path().join("staging/keep").exists(), "an empty directory goes, a non-empty one stays");
    }
}
