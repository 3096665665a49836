//! Owns: the shell scripts that read, list and stat files on a remote node, and the pure
//! functions that parse what they print. A fact is a command plus a parse function.
//! Must not: send anything anywhere; the SSH transport runs these.

use base64::Engine;

use super::{FileData, MAX_FILE_BYTES};

/// Quotes a word for a POSIX shell.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn words(paths: &[String]) -> String {
    paths.iter().map(|p| quote(p)).collect::<Vec<_>>().join(" ")
}

/// One header line per file, then for found files one line of base64: line-framed, so a
/// failing `cat` cannot desynchronise the parse.
pub fn read_files(paths: &[String]) -> String {
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
        max = MAX_FILE_BYTES
    )
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

/// `df` of the nearest existing parent of `path`.
pub fn free_space(path: &str) -> String {
    format!(
        "p={}; while [ ! -e \"$p\" ] && [ \"$p\" != / ]; do p=$(dirname \"$p\"); done; df -Pk \"$p\"\n",
        quote(path)
    )
}

/// Available bytes from `df -Pk` output (the fourth column of the second line).
pub fn parse_df(stdout: &[u8]) -> Result<u64, String> {
    let text = String::from_utf8_lossy(stdout);
    let line = text.lines().nth(1).ok_or_else(|| format!("unexpected df output: {text:?}"))?;
    let kb: u64 = line
        .split_whitespace()
        .nth(3)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("unexpected df output: {line:?}"))?;
    Ok(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(quote("a'b"), r"'a'\''b'");
    }

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
    fn scripts_run_in_a_real_shell() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("it's.pem");
        std::fs::write(&f, b"abc").unwrap();
        let paths = vec![f.to_string_lossy().into_owned(), dir.path().join("none").to_string_lossy().into_owned()];
        let run = |s: String| std::process::Command::new("sh").arg("-c").arg(s).output().unwrap().stdout;
        assert_eq!(parse_read_files(&run(read_files(&paths)), 2).unwrap(), vec![FileData::Found(b"abc".to_vec()), FileData::Missing]);
        assert_eq!(parse_list_files(&run(list_files(&[dir.path().to_string_lossy().into_owned()]))), vec![paths[0].clone()]);
        assert_eq!(parse_exists(&run(exists(&paths)), 2).unwrap(), vec![true, false]);
        assert!(parse_df(&run(free_space(&paths[1]))).unwrap() > 0);
    }
}
