//! Owns: reading a component's command line from systemd units as flags (`ExecStart=` with
//! continuation lines, `Environment=` / `EnvironmentFile=` and `$VAR` / `${VAR}` expansion,
//! drop-ins overriding in order), etcd's `ETCD_*` variables and config file, and rewriting one
//! flag's value in a unit or environment file, byte for byte otherwise.
//! Must not: do I/O (callers hand it the texts) or know which flags matter (playbooks say).

use std::collections::BTreeMap;

/// Where a flag's value sits, so an edit changes that text and nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Site {
    /// `--flag=value` or `--flag value`, written in this file (a unit's `ExecStart=` or an
    /// environment file's variable holding the options).
    Word(String),
    /// The whole value of a variable of this file: `ETCD_CERT_FILE=/x` or `--flag=${X}`.
    Var(String, String),
    /// Made of pieces kcert will not rewrite (quoting mixed with variables, a YAML config).
    Fixed(String),
}

impl Site {
    pub fn file(&self) -> &str {
        match self {
            Site::Word(f) | Site::Var(f, _) | Site::Fixed(f) => f,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    pub value: String,
    pub site: Site,
}

/// What a unit and its drop-ins say, in systemd's order: the last `ExecStart=` after any
/// reset, `Environment=` assignments, and `EnvironmentFile=` paths (`true`: optional, `-`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// The command line and the file it is written in.
    pub exec: Option<(String, String)>,
    /// Variable -> (value, file that sets it).
    pub env: BTreeMap<String, (String, String)>,
    pub env_files: Vec<(String, bool)>,
}

/// A unit's logical lines in `[Service]`: (key, value), comments dropped, a line ending in a
/// backslash joined with the next (systemd.syntax(7)).
fn service_lines(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut pending = String::new();
    for raw in text.lines() {
        let line = raw.trim_end_matches('\r');
        if pending.is_empty() {
            let t = line.trim_start();
            if t.starts_with('#') || t.starts_with(';') {
                continue;
            }
            if t.starts_with('[') {
                section = t.trim_end().to_string();
                continue;
            }
        } else if line.trim_start().starts_with('#') || line.trim_start().starts_with(';') {
            // A comment inside a continued line is skipped, and the line goes on.
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
            }
            None => {
                pending.push_str(line);
                let logical = std::mem::take(&mut pending);
                if section == "[Service]"
                    && let Some((k, v)) = logical.split_once('=')
                {
                    out.push((k.trim().to_string(), v.trim().to_string()));
                }
            }
        }
    }
    out
}

/// Reads a unit and its drop-ins, given in systemd's order (the unit first, then the drop-ins
/// sorted by file name): later settings override, an empty assignment resets the list.
pub fn settings(files: &[(&str, &str)]) -> Settings {
    let mut s = Settings::default();
    for (path, text) in files {
        for (key, value) in service_lines(text) {
            match key.as_str() {
                "ExecStart" if value.is_empty() => s.exec = None,
                "ExecStart" => s.exec = Some((value, path.to_string())),
                "Environment" if value.is_empty() => s.env.clear(),
                "Environment" => {
                    for word in split_words(&value).into_iter().map(|w| w.text) {
                        if let Some((k, v)) = word.split_once('=') {
                            s.env.insert(k.to_string(), (v.to_string(), path.to_string()));
                        }
                    }
                }
                "EnvironmentFile" if value.is_empty() => s.env_files.clear(),
                "EnvironmentFile" => {
                    let (p, optional) = match value.strip_prefix('-') {
                        Some(p) => (p.to_string(), true),
                        None => (value.clone(), false),
                    };
                    s.env_files.push((p, optional));
                }
                _ => {}
            }
        }
    }
    s
}

/// The assignments of an environment file (systemd.exec(5) `EnvironmentFile=`): `KEY=VALUE`
/// lines, `#`/`;` comments, values in double quotes (which may span lines, `\` + newline
/// joining them) or single quotes, a trailing backslash continuing an unquoted value.
pub fn env_file(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let b: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < b.len() {
        // At a line start.
        while i < b.len() && (b[i] == ' ' || b[i] == '\t') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        if b[i] == '#' || b[i] == ';' || b[i] == '\n' || b[i] == '\r' {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i] != '=' && b[i] != '\n' {
            i += 1;
        }
        if i >= b.len() || b[i] == '\n' {
            i += 1;
            continue;
        }
        let mut key: String = b[start..i].iter().collect::<String>().trim().to_string();
        if let Some(k) = key.strip_prefix("export ") {
            key = k.trim().to_string();
        }
        i += 1;
        while i < b.len() && (b[i] == ' ' || b[i] == '\t') {
            i += 1;
        }
        let mut value = String::new();
        if i < b.len() && (b[i] == '"' || b[i] == '\'') {
            let q = b[i];
            i += 1;
            while i < b.len() && b[i] != q {
                if q == '"' && b[i] == '\\' && i + 1 < b.len() {
                    match b[i + 1] {
                        '\n' => {}
                        c @ ('"' | '\\' | '$' | '`') => value.push(c),
                        c => {
                            value.push('\\');
                            value.push(c);
                        }
                    }
                    i += 2;
                    continue;
                }
                value.push(b[i]);
                i += 1;
            }
            i += 1;
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else {
            while i < b.len() && b[i] != '\n' {
                if b[i] == '\\' && i + 1 < b.len() && b[i + 1] == '\n' {
                    i += 2;
                    continue;
                }
                value.push(b[i]);
                i += 1;
            }
            value = value.trim_end().trim_end_matches('\r').to_string();
        }
        i += 1;
        if !key.is_empty() {
            out.push((key, value));
        }
    }
    out
}

/// A word of a command line, and whether it was quoted (a quoted `$VAR` is not split).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Word {
    text: String,
    quoted: bool,
}

/// Splits a command line into words as systemd does: whitespace separates, "..." and '...'
/// quote, a backslash escapes the next character.
fn split_words(line: &str) -> Vec<Word> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut in_word, mut quoted) = (false, false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                if in_word {
                    out.push(Word { text: std::mem::take(&mut cur), quoted });
                    in_word = false;
                    quoted = false;
                }
            }
            '"' | '\'' => {
                in_word = true;
                quoted = true;
                for d in chars.by_ref() {
                    if d == c {
                        break;
                    }
                    cur.push(d);
                }
            }
            '\\' => {
                in_word = true;
                if let Some(d) = chars.next() {
                    cur.push(d);
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(Word { text: cur, quoted });
    }
    out
}

/// `${NAME}` or `$NAME` as a whole word, if it is one.
fn whole_var(word: &str) -> Option<&str> {
    let name = word.strip_prefix("${").and_then(|w| w.strip_suffix('}')).or_else(|| word.strip_prefix('$'))?;
    name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_').then_some(name)
}

/// Replaces every `${NAME}` (and `$NAME` up to a non-name character) in a word.
fn expand_inline(word: &str, env: &BTreeMap<String, (String, String)>) -> String {
    let mut out = String::new();
    let mut rest = word;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, len) = if let Some(inner) = after.strip_prefix('{') {
            match inner.find('}') {
                Some(j) => (&inner[..j], j + 2),
                None => ("", 0),
            }
        } else {
            let j = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            (&after[..j], j)
        };
        if name.is_empty() {
            out.push('$');
            rest = after;
            continue;
        }
        out.push_str(env.get(name).map(|(v, _)| v.as_str()).unwrap_or(""));
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

/// The flags of a unit's command line: its words expanded with the environment (the unit's
/// `Environment=`, overridden by its environment files), `$VAR` alone split at whitespace,
/// `${VAR}` kept one word (systemd.service(5) "Command lines"). `--flag=value`,
/// `--flag value` and a bare `--flag` ("true"); the last setting of a flag wins, as pflag does.
pub fn flags(s: &Settings, env_files: &[(String, String)]) -> BTreeMap<String, Flag> {
    let mut env = s.env.clone();
    for (path, text) in env_files {
        for (k, v) in env_file(text) {
            env.insert(k, (v, path.clone()));
        }
    }
    let mut out = BTreeMap::new();
    let Some((line, unit_path)) = &s.exec else { return out };
    // (word, where it is written, the variable that is its whole value).
    let mut words: Vec<(String, Site)> = Vec::new();
    for w in split_words(line) {
        match whole_var(&w.text) {
            Some(name) if !w.quoted && w.text.starts_with('$') && !w.text.starts_with("${") => {
                if let Some((value, file)) = env.get(name) {
                    words.extend(split_words(value).into_iter().map(|x| (x.text, Site::Word(file.clone()))));
                }
            }
            _ => {
                let site = match w.text.split_once('=').map(|(_, v)| v).and_then(whole_var) {
                    Some(name) => match env.get(name) {
                        Some((_, file)) => Site::Var(file.clone(), name.to_string()),
                        None => Site::Fixed(unit_path.clone()),
                    },
                    // A variable inside a longer word (`--x=${DIR}/ca.pem`): an edit writes
                    // the whole value out in place of the word's value.
                    None if w.text.contains('$') => Site::Word(unit_path.clone()),
                    None => Site::Word(unit_path.clone()),
                };
                words.push((expand_inline(&w.text, &env), site));
            }
        }
    }
    let mut i = 1; // words[0] is the binary
    while i < words.len() {
        let (w, site) = &words[i];
        if let Some(flag) = w.strip_prefix("--").filter(|f| !f.is_empty()) {
            match flag.split_once('=') {
                Some((k, v)) => {
                    out.insert(format!("--{k}"), Flag { value: v.to_string(), site: site.clone() });
                }
                None if i + 1 < words.len() && !words[i + 1].0.starts_with('-') => {
                    let (v, vsite) = &words[i + 1];
                    out.insert(w.clone(), Flag { value: v.clone(), site: vsite.clone() });
                    i += 1;
                }
                None => {
                    out.insert(w.clone(), Flag { value: "true".into(), site: Site::Fixed(site.file().to_string()) });
                }
            }
        }
        i += 1;
    }
    out
}

/// etcd's settings from its environment (`ETCD_CERT_FILE` is `--cert-file`), where no flag
/// sets them: etcd reads a variable only for a flag the command line leaves unset.
pub fn etcd_env(s: &Settings, env_files: &[(String, String)], flags: &mut BTreeMap<String, Flag>) {
    let mut env: BTreeMap<String, (String, String)> = s.env.clone();
    for (path, text) in env_files {
        for (k, v) in env_file(text) {
            env.insert(k, (v, path.clone()));
        }
    }
    for (k, (v, file)) in env {
        let Some(rest) = k.strip_prefix("ETCD_").filter(|r| !r.is_empty()) else { continue };
        let flag = format!("--{}", rest.to_ascii_lowercase().replace('_', "-"));
        flags.entry(flag).or_insert(Flag { value: v, site: Site::Var(file, k) });
    }
}

/// etcd's `--config-file` YAML as flags (etcd then ignores its other flags and variables):
/// top-level keys are flag names, `client-transport-security` holds the client TLS settings
/// and `peer-transport-security` the `--peer-*` ones (etcd's embed.Config YAML names).
pub fn etcd_config(text: &str, path: &str) -> Result<BTreeMap<String, Flag>, String> {
    let v: serde_json::Value = super::yaml::from_str(text).map_err(|e| e.to_string().lines().next().unwrap_or("").to_string())?;
    let mut out = BTreeMap::new();
    let Some(map) = v.as_object() else { return Ok(out) };
    let scalar = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Bool(_) | serde_json::Value::Number(_) => Some(v.to_string()),
        _ => None,
    };
    let fixed = || Site::Fixed(path.to_string());
    for (k, val) in map {
        match (k.as_str(), val) {
            ("client-transport-security" | "peer-transport-security", serde_json::Value::Object(tls)) => {
                let prefix = if k.starts_with("peer") { "--peer-" } else { "--" };
                for (tk, tv) in tls {
                    if let Some(s) = scalar(tv) {
                        out.insert(format!("{prefix}{tk}"), Flag { value: s, site: fixed() });
                    }
                }
            }
            (_, v) => {
                if let Some(s) = scalar(v) {
                    out.insert(format!("--{k}"), Flag { value: s, site: fixed() });
                }
            }
        }
    }
    Ok(out)
}

/// Is `c` a character that ends an option word in a unit or environment file?
fn ends_word(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'"' | b'\'' | b'\\')
}

/// Rewrites the value of `--flag=value` / `--flag value` wherever it is written in a unit or
/// an environment file (outside comments); every other byte stays. Errors when it is not there.
pub fn set_word_flag(bytes: &[u8], flag: &str, value: &str) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut found = 0;
    let mut pos = 0;
    while let Some(i) = text[pos..].find(flag).map(|i| pos + i) {
        pos = i + flag.len();
        let before_ok = i == 0 || matches!(b[i - 1], b' ' | b'\t' | b'\n' | b'"' | b'\'' | b'=');
        let line_start = text[..i].rfind('\n').map(|j| j + 1).unwrap_or(0);
        let comment = matches!(text[line_start..i].trim_start().as_bytes().first(), Some(b'#' | b';'));
        let Some(&next) = b.get(pos) else { continue };
        if !before_ok || comment || !(next == b'=' || next == b' ' || next == b'\t') {
            continue;
        }
        let mut v = pos + 1;
        if next != b'=' {
            while v < b.len() && (b[v] == b' ' || b[v] == b'\t') {
                v += 1;
            }
        }
        let mut e = v;
        while e < b.len() && !ends_word(b[e]) {
            e += 1;
        }
        if e == v || (next != b'=' && b[v] == b'-') {
            continue;
        }
        out.push_str(&text[last..v]);
        out.push_str(value);
        last = e;
        pos = e;
        found += 1;
    }
    if found == 0 {
        return Err(format!("{flag} is not written in the file"));
    }
    out.push_str(&text[last..]);
    Ok(out.into_bytes())
}

/// Rewrites the value of `NAME=value` (or `Environment=NAME=value`), keeping its quotes.
pub fn set_var(bytes: &[u8], name: &str, value: &str) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let needle = format!("{name}=");
    let b = text.as_bytes();
    let mut pos = 0;
    while let Some(i) = text[pos..].find(&needle).map(|i| pos + i) {
        pos = i + needle.len();
        let line_start = text[..i].rfind('\n').map(|j| j + 1).unwrap_or(0);
        let head = text[line_start..i].trim_start();
        let ok_before = i == line_start || matches!(b[i - 1], b' ' | b'\t' | b'"' | b'=') || head == "export";
        if !ok_before || head.starts_with('#') || head.starts_with(';') {
            continue;
        }
        let mut v = pos;
        let quote = b.get(v).copied().filter(|c| *c == b'"' || *c == b'\'');
        if quote.is_some() {
            v += 1;
        }
        let mut e = v;
        while e < b.len() && !ends_word(b[e]) {
            e += 1;
        }
        return Ok(format!("{}{value}{}", &text[..v], &text[e..]).into_bytes());
    }
    Err(format!("{name} is not set in the file"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIT: &str = "[Unit]\nDescription=Kubernetes API Server\n\n[Service]\nEnvironmentFile=-/opt/kubernetes/cfg/kube-apiserver.conf\nEnvironment=\"PORT=6443\" EXTRA=--v=2\n# ExecStart=/old --tls-cert-file=/nope\nExecStart=/usr/local/bin/kube-apiserver \\\n  --secure-port=${PORT} \\\n  --client-ca-file /var/lib/kubernetes/ca.pem \\\n  $KUBE_APISERVER_OPTS $EXTRA\nRestart=on-failure\n";
    const ENV: &str = "# options\nKUBE_APISERVER_OPTS=\"--tls-cert-file=/opt/kubernetes/ssl/kubernetes.pem \\\n--tls-private-key-file=/opt/kubernetes/ssl/kubernetes-key.pem \\\n--etcd-servers=https://10.0.0.1:2379\"\n";

    fn parsed() -> BTreeMap<String, Flag> {
        let s = settings(&[("/etc/systemd/system/kube-apiserver.service", UNIT)]);
        flags(&s, &[("/opt/kubernetes/cfg/kube-apiserver.conf".into(), ENV.into())])
    }

    #[test]
    fn continuation_lines_variables_and_environment_files_make_the_flags() {
        let f = parsed();
        let v = |k: &str| f.get(k).map(|x| x.value.as_str());
        assert_eq!(v("--secure-port"), Some("6443"));
        assert_eq!(v("--client-ca-file"), Some("/var/lib/kubernetes/ca.pem"));
        assert_eq!(v("--tls-cert-file"), Some("/opt/kubernetes/ssl/kubernetes.pem"));
        assert_eq!(v("--etcd-servers"), Some("https://10.0.0.1:2379"));
        assert_eq!(v("--v"), Some("2"));
        assert_eq!(f["--tls-cert-file"].site, Site::Word("/opt/kubernetes/cfg/kube-apiserver.conf".into()));
        assert_eq!(f["--client-ca-file"].site, Site::Word("/etc/systemd/system/kube-apiserver.service".into()));
        assert_eq!(f["--secure-port"].site, Site::Var("/etc/systemd/system/kube-apiserver.service".into(), "PORT".into()));
        assert!(!f.values().any(|x| x.value == "/nope"), "a commented-out line is not read");
        assert_eq!(settings(&[("/u", UNIT)]).env_files, vec![("/opt/kubernetes/cfg/kube-apiserver.conf".to_string(), true)]);
    }

    #[test]
    fn a_braced_variable_stays_one_word_and_quotes_group() {
        let unit = "[Service]\nEnvironment=\"OPTS=--a=1 --b=2\"\nExecStart=/bin/x ${OPTS} \"--c=with space\"\n";
        let f = flags(&settings(&[("/u", unit)]), &[]);
        assert_eq!(f["--a"].value, "1 --b=2");
        assert_eq!(f["--c"].value, "with space");
        assert!(!f.contains_key("--b"));
    }

    #[test]
    fn drop_ins_override_in_order_and_an_empty_exec_start_resets() {
        let main = "[Service]\nExecStart=/bin/etcd --cert-file=/a.pem\nEnvironment=A=1\n";
        let d1 = "[Service]\nExecStart=\nExecStart=/bin/etcd --cert-file=/b.pem --key-file=$K\nEnvironment=K=/k.pem\n";
        let d2 = "[Service]\nEnvironment=K=/k2.pem\n";
        let f = flags(&settings(&[("/main", main), ("/d/10.conf", d1), ("/d/20.conf", d2)]), &[]);
        assert_eq!(f["--cert-file"].value, "/b.pem");
        assert_eq!(f["--cert-file"].site, Site::Word("/d/10.conf".into()));
        assert_eq!(f["--key-file"].value, "/k2.pem");
        // An empty EnvironmentFile= resets the list.
        let s = settings(&[("/m", "[Service]\nEnvironmentFile=/a\n"), ("/d", "[Service]\nEnvironmentFile=\nEnvironmentFile=-/b\n")]);
        assert_eq!(s.env_files, vec![("/b".to_string(), true)]);
    }

    #[test]
    fn environment_files_quote_continue_and_comment() {
        let text = "; c\n# c\nA=plain value  \nB='single $x'\nC=\"double \\\"q\\\" \\\n next\"\nexport D=d\nE=one \\\ntwo\n";
        let v = env_file(text);
        let get = |k: &str| v.iter().find(|(a, _)| a == k).map(|(_, b)| b.as_str());
        assert_eq!(get("A"), Some("plain value"));
        assert_eq!(get("B"), Some("single $x"));
        assert_eq!(get("C"), Some("double \"q\"  next"));
        assert_eq!(get("D"), Some("d"));
        assert_eq!(get("E"), Some("one two"));
    }

    #[test]
    fn etcd_reads_its_variables_unless_a_flag_is_set_and_its_yaml_config() {
        let unit = "[Service]\nEnvironmentFile=/etc/etcd/etcd.conf\nExecStart=/usr/bin/etcd --name=e1\n";
        let env = "ETCD_CERT_FILE=\"/etc/etcd/ssl/server.pem\"\nETCD_PEER_TRUSTED_CA_FILE=/etc/etcd/ssl/ca.pem\nETCD_NAME=ignored\n";
        let s = settings(&[("/u", unit)]);
        let files = vec![("/etc/etcd/etcd.conf".to_string(), env.to_string())];
        let mut f = flags(&s, &files);
        etcd_env(&s, &files, &mut f);
        assert_eq!(f["--cert-file"].value, "/etc/etcd/ssl/server.pem");
        assert_eq!(f["--cert-file"].site, Site::Var("/etc/etcd/etcd.conf".into(), "ETCD_CERT_FILE".into()));
        assert_eq!(f["--peer-trusted-ca-file"].value, "/etc/etcd/ssl/ca.pem");
        assert_eq!(f["--name"].value, "e1");
        let yaml = "name: e1\nlisten-client-urls: https://10.0.0.1:2379\nclient-transport-security:\n  cert-file: /s.pem\n  trusted-ca-file: /ca.pem\n  client-cert-auth: true\npeer-transport-security:\n  cert-file: /p.pem\n";
        let c = etcd_config(yaml, "/etc/etcd/etcd.yaml").unwrap();
        assert_eq!(c["--cert-file"].value, "/s.pem");
        assert_eq!(c["--trusted-ca-file"].value, "/ca.pem");
        assert_eq!(c["--client-cert-auth"].value, "true");
        assert_eq!(c["--peer-cert-file"].value, "/p.pem");
        assert_eq!(c["--listen-client-urls"].value, "https://10.0.0.1:2379");
    }

    #[test]
    fn an_edit_rewrites_only_the_value_it_changes() {
        let out = set_word_flag(ENV.as_bytes(), "--tls-cert-file", "/new/k.pem").unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), ENV.replace("/opt/kubernetes/ssl/kubernetes.pem", "/new/k.pem"));
        let out = set_word_flag(UNIT.as_bytes(), "--client-ca-file", "/n/ca.pem").unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, UNIT.replace("--client-ca-file /var/lib/kubernetes/ca.pem", "--client-ca-file /n/ca.pem"));
        assert!(text.contains("# ExecStart=/old --tls-cert-file=/nope"));
        assert!(set_word_flag(UNIT.as_bytes(), "--tls-cert-file", "/x").is_err(), "only a comment names it there");
        assert!(set_word_flag(UNIT.as_bytes(), "--client-ca", "/x").is_err(), "a prefix of a flag is not the flag");
        // A variable inside a longer word: the whole value is written out.
        let unit = "[Service]\nEnvironment=SSL=/opt/kubernetes/ssl\nExecStart=/bin/kcm --service-account-private-key-file=${SSL}/ca-key.pem --root-ca-file=$SSL/ca.pem\n";
        let f = flags(&settings(&[("/u", unit)]), &[]);
        assert_eq!(f["--service-account-private-key-file"].value, "/opt/kubernetes/ssl/ca-key.pem");
        assert_eq!(f["--root-ca-file"].value, "/opt/kubernetes/ssl/ca.pem");
        assert_eq!(f["--service-account-private-key-file"].site, Site::Word("/u".into()));
        let out = String::from_utf8(set_word_flag(unit.as_bytes(), "--service-account-private-key-file", "/opt/kubernetes/ssl/sa.pem").unwrap()).unwrap();
        assert_eq!(out, unit.replace("${SSL}/ca-key.pem", "/opt/kubernetes/ssl/sa.pem"));
        let env = "A=1\nETCD_CERT_FILE=\"/etc/etcd/ssl/server.pem\"\n";
        assert_eq!(String::from_utf8(set_var(env.as_bytes(), "ETCD_CERT_FILE", "/n.pem").unwrap()).unwrap(), "A=1\nETCD_CERT_FILE=\"/n.pem\"\n");
    }
}
