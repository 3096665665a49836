//! Owns: reading an Ansible inventory, INI or YAML, as Ansible's own inventory plugins do
//! (`ansible/plugins/inventory/ini.py`, `yaml.py`): groups with hosts, `:children` and
//! `:vars`, host ranges (`node[01:10]`, `[a:f]`, a stride), `host:port`, quoted values,
//! comments; and telling those formats apart from kcert's own by content.
//! Must not: decide what a group or a variable means to kcert (`ansible_vars` does).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Kcert,
    AnsibleIni,
    AnsibleYaml,
    /// An inventory plugin's configuration (`plugin: amazon.aws.aws_ec2`): only Ansible can
    /// turn it into hosts.
    AnsiblePlugin,
}

/// Which format an inventory's text is in. kcert's own has top-level `cluster:` or `nodes:`;
/// Ansible's YAML has groups (`all:`) whose values hold `hosts`, `children` or `vars`; INI
/// has `[group]` lines. Anything else is read as kcert's, whose errors then say what is wrong.
pub fn detect(text: &str) -> Format {
    let significant: Vec<&str> = text.lines().map(str::trim_end).filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#') && !l.trim_start().starts_with(';')).collect();
    // `[group]` first (or a broken `[group` header: INI all the same, whose reader says so).
    if significant.first().is_some_and(|l| section(l.trim()).is_some() || l.starts_with('[') && !l.contains(',') && !l.trim_end().ends_with(']')) {
        return Format::AnsibleIni;
    }
    let top_keys: Vec<&str> = significant.iter().filter(|l| !l.starts_with([' ', '\t', '-'])).filter_map(|l| l.split_once(':').map(|(k, _)| k.trim())).collect();
    if top_keys.iter().any(|k| *k == "cluster" || *k == "nodes") {
        return Format::Kcert;
    }
    if top_keys.contains(&"plugin") {
        return Format::AnsiblePlugin;
    }
    let second_level = significant.iter().filter(|l| l.starts_with([' ', '\t'])).filter_map(|l| l.trim().split_once(':').map(|(k, _)| k.trim()));
    if top_keys.contains(&"all") || second_level.into_iter().any(|k| k == "hosts" || k == "children") {
        return Format::AnsibleYaml;
    }
    Format::Kcert
}

/// A variable's value as written, and where. Values are kept as text the way Ansible reads
/// them (quotes removed; YAML booleans and numbers as `true`, `22`); lists and maps are not
/// scalars.
#[derive(Debug, Clone, PartialEq)]
pub struct Var {
    pub value: String,
    pub scalar: bool,
    pub line: u64,
    pub column: u64,
    /// The file it was set in, when not the inventory (`group_vars/`, `host_vars/`).
    pub file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Group {
    pub hosts: Vec<String>,
    pub children: Vec<String>,
    pub vars: BTreeMap<String, Var>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    pub name: String,
    /// Where the host was first named.
    pub line: u64,
    pub vars: BTreeMap<String, Var>,
}

/// An Ansible inventory: its groups by name, its hosts in the order first named.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    pub groups: BTreeMap<String, Group>,
    pub hosts: Vec<Host>,
    /// Where each host is in `hosts`, and which (group, host) pairs exist: lookups stay fast
    /// however many hosts a range makes.
    index: HashMap<String, usize>,
    members: HashSet<(String, String)>,
}

/// More hosts than any cluster has: a range or a file that makes more is refused.
const MAX_HOSTS: usize = 100_000;

impl Parsed {
    pub(super) fn group(&mut self, name: &str) -> &mut Group {
        self.groups.entry(name.to_string()).or_default()
    }

    pub fn in_group(&self, group: &str, host: &str) -> bool {
        self.members.contains(&(group.to_string(), host.to_string()))
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.index.get(name).map(|i| &self.hosts[*i])
    }

    pub(super) fn host_mut(&mut self, name: &str) -> Option<&mut Host> {
        self.index.get(name).map(|i| &mut self.hosts[*i])
    }

    fn add_host(&mut self, group: &str, name: &str, line: u64, vars: BTreeMap<String, Var>) {
        if self.members.insert((group.to_string(), name.to_string())) {
            self.group(group).hosts.push(name.to_string());
        }
        match self.index.get(name) {
            Some(i) => self.hosts[*i].vars.extend(vars),
            None => {
                self.index.insert(name.to_string(), self.hosts.len());
                self.hosts.push(Host { name: name.to_string(), line, vars });
            }
        }
    }
}

enum Section {
    Hosts(String),
    Vars(String),
    Children(String),
}

/// `[name]`, `[name:vars]`, `[name:children]`, `[name:hosts]`, an optional comment after.
fn section(line: &str) -> Option<std::result::Result<Section, String>> {
    let rest = line.strip_prefix('[')?;
    let (inner, after) = rest.split_once(']')?;
    let after = after.trim();
    if !(after.is_empty() || after.starts_with('#') || after.starts_with(';')) {
        return None;
    }
    let (name, kind) = inner.split_once(':').unwrap_or((inner, "hosts"));
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Some(Err(format!("[{inner}]: not a group name")));
    }
    Some(match kind {
        "hosts" => Ok(Section::Hosts(name.into())),
        "vars" => Ok(Section::Vars(name.into())),
        "children" => Ok(Section::Children(name.into())),
        other => Err(format!("[{inner}]: unknown section kind {other:?} (Ansible knows :vars, :children, :hosts)")),
    })
}

/// An INI inventory.
pub fn parse_ini(text: &str, path: &Path) -> Result<Parsed> {
    let err = |line: usize, column: usize, message: String| Error::InputAt { file: path.to_path_buf(), line: line as u64 + 1, column: column as u64 + 1, message };
    let mut out = Parsed::default();
    out.group("all");
    let mut current = Section::Hosts("ungrouped".into());
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let indent = raw.len() - raw.trim_start().len();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') && section(line).is_none() && !matches!(current, Section::Vars(_)) {
            return Err(err(i, indent, format!("{line:?}: not a section header ([group], [group:vars], [group:children])")));
        }
        if let Some(s) = section(line) {
            current = s.map_err(|m| err(i, indent, m))?;
            let (Section::Hosts(g) | Section::Vars(g) | Section::Children(g)) = &current;
            out.group(g);
            continue;
        }
        match &current {
            Section::Hosts(g) => {
                let tokens = split_words(line).map_err(|m| err(i, indent, m))?;
                let Some((pattern, rest)) = tokens.split_first() else { continue };
                let mut vars = BTreeMap::new();
                for t in rest {
                    let Some((k, v)) = t.split_once('=') else {
                        return Err(err(i, indent + raw.trim_start().find(t.as_str()).unwrap_or(0), format!("expected key=value host variable assignment, got {t:?}")));
                    };
                    let column = raw.find(&format!("{k}=")).unwrap_or(indent) as u64 + 1;
                    vars.insert(k.to_string(), Var { value: literal(v), scalar: true, line: i as u64 + 1, column, file: None });
                }
                let (names, port) = host_pattern(pattern).map_err(|m| err(i, indent, m))?;
                if let Some(p) = port {
                    vars.insert("ansible_port".into(), Var { value: p, scalar: true, line: i as u64 + 1, column: indent as u64 + 1, file: None });
                }
                if out.hosts.len() + names.len() > MAX_HOSTS {
                    return Err(err(i, indent, format!("more than {MAX_HOSTS} hosts in the inventory")));
                }
                for name in names {
                    out.add_host(g, &name, i as u64 + 1, vars.clone());
                }
            }
            Section::Vars(g) => {
                let Some((k, v)) = line.split_once('=') else {
                    return Err(err(i, indent, format!("expected key=value, got {line:?}")));
                };
                let var = Var { value: literal(v.trim()), scalar: true, line: i as u64 + 1, column: indent as u64 + 1, file: None };
                out.group(g).vars.insert(k.trim().to_string(), var);
            }
            Section::Children(g) => {
                let child = line.split([' ', '\t', '#', ';']).next().unwrap_or(line);
                let g = g.clone();
                out.group(child);
                let parent = out.group(&g);
                if !parent.children.iter().any(|c| c == child) {
                    parent.children.push(child.to_string());
                }
            }
        }
    }
    Ok(out)
}

/// A value as Ansible's INI reader leaves it: one pair of matching quotes removed.
fn literal(v: &str) -> String {
    for q in ['\'', '"'] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return v[1..v.len() - 1].to_string();
        }
    }
    v.to_string()
}

/// A host line's words as POSIX shell splits them (Ansible uses `shlex.split(line,
/// comments=True)`): quotes group, a backslash escapes, `#` at a word's start ends the line.
pub(super) fn split_words(line: &str) -> std::result::Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                words.extend(word.take());
            }
            '#' if word.is_none() => break,
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("a quote (') is not closed".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => w.push(c),
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err("a quote (\") is not closed".into()),
                        },
                        Some(c) => w.push(c),
                        None => return Err("a quote (\") is not closed".into()),
                    }
                }
            }
            '\\' => {
                if let Some(c) = chars.next() {
                    word.get_or_insert_with(String::new).push(c);
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

/// A host pattern's names (ranges expanded) and port, if it names one (`web[1:3]:2222`).
pub fn host_pattern(pattern: &str) -> std::result::Result<(Vec<String>, Option<String>), String> {
    // A colon outside the range brackets starts a port; `[ipv6]:port` is bracketed whole.
    let outside: String = pattern.split('[').map(|part| part.split_once(']').map_or(part, |(_, after)| after)).collect();
    let (name, port) = match pattern.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) && outside.matches(':').count() == 1 => {
            let v6 = h.strip_prefix('[').and_then(|x| x.strip_suffix(']')).filter(|x| x.parse::<std::net::Ipv6Addr>().is_ok());
            (v6.unwrap_or(h), Some(p.to_string()))
        }
        _ => (pattern, None),
    };
    if let Some(p) = &port {
        p.parse::<u16>().map_err(|_| format!("{pattern}: port {p} is out of range"))?;
    }
    Ok((expand(name)?, port))
}

/// `prefix[beg:end(:step)]suffix`, numeric (leading zeros kept) or single letters, ranges in
/// the suffix expanded too (Ansible's `expand_hostname_range`).
fn expand(pattern: &str) -> std::result::Result<Vec<String>, String> {
    let (Some(open), Some(close)) = (pattern.find('['), pattern.find(']')) else {
        return Ok(vec![pattern.to_string()]);
    };
    if close < open {
        return Err(format!("{pattern}: not a host range"));
    }
    let (head, range, tail) = (&pattern[..open], &pattern[open + 1..close], &pattern[close + 1..]);
    let parts: Vec<&str> = range.split(':').collect();
    let (beg, end, step) = match parts.as_slice() {
        [b, e] => (*b, *e, 1usize),
        [b, e, s] => (*b, *e, s.parse::<usize>().ok().filter(|s| *s > 0).ok_or_else(|| format!("{pattern}: bad range step {s:?}"))?),
        _ => return Err(format!("{pattern}: a host range is [begin:end] or [begin:end:step]")),
    };
    let mut names = Vec::new();
    if let (Ok(b), Ok(e)) = (beg.parse::<u64>(), end.parse::<u64>()) {
        let width = if beg.len() > 1 && beg.starts_with('0') {
            if beg.len() != end.len() {
                return Err(format!("{pattern}: a zero-padded range needs begin and end of the same width"));
            }
            beg.len()
        } else {
            0
        };
        if b > e {
            return Err(format!("{pattern}: the range begins after it ends"));
        }
        if (e - b) / step as u64 >= MAX_HOSTS as u64 {
            return Err(format!("{pattern}: more than {MAX_HOSTS} hosts"));
        }
        for n in (b..=e).step_by(step) {
            names.push(format!("{head}{n:0width$}"));
        }
    } else {
        let letter = |s: &str| {
            let mut c = s.chars();
            match (c.next(), c.next()) {
                (Some(ch), None) if ch.is_ascii_alphabetic() => Ok(ch),
                _ => Err(format!("{pattern}: a range is of numbers or of single letters")),
            }
        };
        let (b, e) = (letter(beg)?, letter(end)?);
        if b > e {
            return Err(format!("{pattern}: the range begins after it ends"));
        }
        for c in (b..=e).step_by(step) {
            names.push(format!("{head}{c}"));
        }
    }
    let tails = expand(tail)?;
    if names.len().saturating_mul(tails.len()) > MAX_HOSTS {
        return Err(format!("{pattern}: more than {MAX_HOSTS} hosts"));
    }
    Ok(names.iter().flat_map(|n| tails.iter().map(move |t| format!("{n}{t}"))).collect())
}

/// A YAML map read in file order.
struct Ordered<V>(Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visit<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Visit<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> std::result::Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some((k, val)) = m.next_entry::<String, V>()? {
                    v.push((k, val));
                }
                Ok(Ordered(v))
            }
            fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
                Ok(Ordered(Vec::new()))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlGroup {
    #[serde(default)]
    hosts: Option<Ordered<Option<Ordered<Spanned<serde_json::Value>>>>>,
    #[serde(default)]
    children: Option<Ordered<Option<YamlGroup>>>,
    #[serde(default)]
    vars: Option<Ordered<Spanned<serde_json::Value>>>,
}

/// A YAML or JSON value as text the way Ansible uses it, and whether it is a scalar.
fn text_of(v: serde_json::Value) -> (String, bool) {
    match v {
        serde_json::Value::String(s) => (s, true),
        serde_json::Value::Null => (String::new(), true),
        v @ (serde_json::Value::Bool(_) | serde_json::Value::Number(_)) => (v.to_string(), true),
        v => (v.to_string(), false),
    }
}

fn yaml_var(v: Spanned<serde_json::Value>) -> Var {
    let (value, scalar) = text_of(v.value);
    Var { value, scalar, line: v.referenced.line(), column: v.referenced.column(), file: None }
}

/// Ansible's YAML (an inventory, a variables file) with kcert's YAML limits, errors at
/// file:line:column saying which kind of file it is.
fn from_yaml<T: for<'de> Deserialize<'de>>(text: &str, path: &Path, kind: &str) -> Result<T> {
    crate::pki::yaml::from_str(text).map_err(|e| {
        let (line, column, message) = crate::pki::yaml::said(&e);
        Error::InputAt { file: path.to_path_buf(), line, column, message: format!("{kind}: {message}") }
    })
}

/// A YAML inventory.
pub fn parse_yaml(text: &str, path: &Path) -> Result<Parsed> {
    let root: Ordered<Option<YamlGroup>> = from_yaml(text, path, "Ansible YAML inventory")?;
    let mut out = Parsed::default();
    out.group("all");
    let mut line_of_host = 0;
    fn walk(out: &mut Parsed, name: &str, g: Option<YamlGroup>, last_line: &mut u64) -> std::result::Result<(), String> {
        out.group(name);
        let Some(g) = g else { return Ok(()) };
        for (k, v) in g.vars.map(|v| v.0).unwrap_or_default() {
            out.group(name).vars.insert(k, yaml_var(v));
        }
        for (pattern, vars) in g.hosts.map(|h| h.0).unwrap_or_default() {
            let vars: BTreeMap<String, Var> = vars.map(|v| v.0).unwrap_or_default().into_iter().map(|(k, v)| (k, yaml_var(v))).collect();
            if let Some(l) = vars.values().map(|v| v.line).min() {
                *last_line = l;
            }
            let (names, port) = host_pattern(&pattern)?;
            let mut vars = vars;
            if let Some(p) = port {
                vars.insert("ansible_port".into(), Var { value: p, scalar: true, line: *last_line, column: 1, file: None });
            }
            if out.hosts.len() + names.len() > MAX_HOSTS {
                return Err(format!("more than {MAX_HOSTS} hosts in the inventory"));
            }
            for n in names {
                out.add_host(name, &n, *last_line, vars.clone());
            }
        }
        for (child, cg) in g.children.map(|c| c.0).unwrap_or_default() {
            let parent = out.group(name);
            if !parent.children.contains(&child) {
                parent.children.push(child.clone());
            }
            walk(out, &child, cg, last_line)?;
        }
        Ok(())
    }
    for (name, g) in root.0 {
        walk(&mut out, &name, g, &mut line_of_host).map_err(|m| Error::input(path.display().to_string(), m))?;
    }
    Ok(out)
}

/// The JSON `ansible-inventory --list` prints: groups with `hosts`, `children` and `vars`,
/// and every host's variables (already merged by Ansible) under `_meta.hostvars`. No lines:
/// variables are placed at line 0, which errors show as "no line".
pub fn parse_list_json(json: &[u8], shown: &Path) -> Result<Parsed> {
    #[derive(Deserialize)]
    struct JsonGroup {
        #[serde(default)]
        hosts: Vec<String>,
        #[serde(default)]
        children: Vec<String>,
        #[serde(default)]
        vars: BTreeMap<String, serde_json::Value>,
    }
    let bad = |e: String| Error::input(shown.display().to_string(), format!("ansible-inventory --list printed what kcert cannot read: {e}"));
    let mut root: BTreeMap<String, serde_json::Value> = serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
    let meta = root.remove("_meta");
    let var = |v: serde_json::Value| {
        let (value, scalar) = text_of(v);
        Var { value, scalar, line: 0, column: 0, file: None }
    };
    let mut hostvars: BTreeMap<String, BTreeMap<String, serde_json::Value>> = match meta.and_then(|m| m.get("hostvars").cloned()) {
        Some(h) => serde_json::from_value(h).map_err(|e| bad(format!("_meta.hostvars: {e}")))?,
        None => BTreeMap::new(),
    };
    let mut out = Parsed::default();
    out.group("all");
    // `all` first, then the groups in the order it names them, so hosts keep Ansible's order.
    let mut order: Vec<String> = vec!["all".into()];
    let mut i = 0;
    while i < order.len() {
        if let Some(g) = root.get(&order[i]).and_then(|g| g.get("children")).and_then(|c| c.as_array()) {
            for c in g.iter().filter_map(|c| c.as_str()) {
                if !order.iter().any(|o| o == c) {
                    order.push(c.to_string());
                }
            }
        }
        i += 1;
    }
    order.extend(root.keys().filter(|k| !order.contains(k)).cloned().collect::<Vec<_>>());
    for name in order {
        let Some(g) = root.remove(&name) else { continue };
        let g: JsonGroup = serde_json::from_value(g).map_err(|e| bad(format!("group {name}: {e}")))?;
        out.group(&name).vars = g.vars.into_iter().map(|(k, v)| (k, var(v))).collect();
        out.group(&name).children = g.children;
        for h in g.hosts {
            let vars = hostvars.remove(&h).unwrap_or_default().into_iter().map(|(k, v)| (k, var(v))).collect();
            out.add_host(&name, &h, 0, vars);
        }
    }
    Ok(out)
}

/// A `group_vars/` or `host_vars/` file (YAML, or JSON which is YAML): its top-level
/// variables, each naming this file.
pub fn parse_var_file(text: &str, path: &Path) -> Result<BTreeMap<String, Var>> {
    let vars: Ordered<Spanned<serde_json::Value>> = from_yaml(text, path, "Ansible variables file")?;
    Ok(vars.0.into_iter().map(|(k, v)| (k, Var { file: Some(path.to_path_buf()), ..yaml_var(v) })).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_apart_by_content() {
        assert_eq!(detect("# hosts\n[kube_control_plane]\nnode1\n"), Format::AnsibleIni);
        assert_eq!(detect("all:\n  hosts:\n    node1:\n"), Format::AnsibleYaml);
        assert_eq!(detect("k8s:\n  children:\n    etcd:\n"), Format::AnsibleYaml);
        assert_eq!(detect("cluster: c\nnodes:\n  - name: a\n"), Format::Kcert);
        assert_eq!(detect("nodes: [\n"), Format::Kcert);
        assert_eq!(detect("plugin: amazon.aws.aws_ec2\nregions: [eu-west-1]\n"), Format::AnsiblePlugin);
    }

    #[test]
    fn ranges_expand_as_ansible_does() {
        assert_eq!(expand("node[01:03]").unwrap(), ["node01", "node02", "node03"]);
        assert_eq!(expand("n[1:5:2].x").unwrap(), ["n1.x", "n3.x", "n5.x"]);
        assert_eq!(expand("db-[a:c]").unwrap(), ["db-a", "db-b", "db-c"]);
        assert_eq!(expand("r[1:2]-[a:b]").unwrap(), ["r1-a", "r1-b", "r2-a", "r2-b"]);
        assert!(expand("n[01:100]").unwrap_err().contains("same width"));
        assert!(expand("n[5:1]").unwrap_err().contains("begins after"));
        // Hostile ranges are refused before they are made, nested ones too.
        assert!(expand("n[1:99999999]").unwrap_err().contains("more than 100000 hosts"));
        assert!(expand("a[1:1000]b[1:1000]").unwrap_err().contains("more than 100000 hosts"));
        assert_eq!(host_pattern("web[1:2]:2222").unwrap(), (vec!["web1".to_string(), "web2".to_string()], Some("2222".to_string())));
        assert_eq!(host_pattern("[::1]:2200").unwrap(), (vec!["::1".to_string()], Some("2200".to_string())));
        assert_eq!(host_pattern("fe80::1").unwrap().1, None);
    }

    #[test]
    fn host_lines_split_like_shlex_with_comments() {
        let w = split_words(r#"node1 ansible_host=10.0.0.1 ansible_ssh_common_args='-o ProxyJump=b' x="a \"q\"" # ip=10.3.0.1"#).unwrap();
        assert_eq!(w, ["node1", "ansible_host=10.0.0.1", "ansible_ssh_common_args=-o ProxyJump=b", "x=a \"q\""]);
        assert!(split_words("n a='x").is_err());
    }

    #[test]
    fn ini_groups_children_vars_and_bad_lines() {
        let text = "[all]\nnode1 ansible_host=10.0.0.1\nnode2 ansible_host=10.0.0.2 ansible_port=2222\n\n[kube_control_plane]\nnode1\n\n[kube_node]\nnode[2:3]\n\n[k8s_cluster:children]\nkube_control_plane\nkube_node\n\n[all:vars]\nansible_user = 'ops'\n";
        let p = parse_ini(text, Path::new("hosts.ini")).unwrap();
        assert_eq!(p.hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(), ["node1", "node2", "node3"]);
        assert_eq!(p.groups["kube_node"].hosts, ["node2", "node3"]);
        assert_eq!(p.groups["k8s_cluster"].children, ["kube_control_plane", "kube_node"]);
        assert_eq!(p.groups["all"].vars["ansible_user"].value, "ops");
        assert_eq!(p.hosts[1].vars["ansible_port"].line, 3);
        let e = parse_ini("[kube_node]\nnode1 ansible_host\n", Path::new("hosts.ini")).unwrap_err().to_string();
        assert!(e.starts_with("hosts.ini:2:") && e.contains("key=value"), "{e}");
        assert_eq!(detect("[kube_node\nw1\n"), Format::AnsibleIni);
        let e = parse_ini("[kube_node\nw1\n", Path::new("hosts.ini")).unwrap_err().to_string();
        assert!(e.starts_with("hosts.ini:1:") && e.contains("not a section header"), "{e}");
        let e = parse_yaml("all:\n  hosts:\n    w1: [1\n", Path::new("hosts.yaml")).unwrap_err().to_string();
        assert!(e.starts_with("hosts.yaml:3:") && !e.contains("error: line"), "{e}");
        let e = parse_ini("[k:weird]\n", Path::new("hosts.ini")).unwrap_err().to_string();
        assert!(e.starts_with("hosts.ini:1:") && e.contains("weird"), "{e}");
    }

    #[test]
    fn yaml_groups_children_vars_in_file_order() {
        let text = "all:\n  hosts:\n    node2:\n      ansible_host: 10.0.0.2\n    node1:\n      ansible_host: 10.0.0.1\n      ansible_port: 2222\n  children:\n    kube_control_plane:\n      hosts:\n        node2:\n    kube_node:\n      hosts:\n        node1:\n  vars:\n    ansible_become: true\n";
        let p = parse_yaml(text, Path::new("hosts.yaml")).unwrap();
        assert_eq!(p.hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(), ["node2", "node1"]);
        assert_eq!(p.hosts[1].vars["ansible_port"].value, "2222");
        assert_eq!(p.hosts[1].vars["ansible_port"].line, 7);
        assert_eq!(p.groups["all"].children, ["kube_control_plane", "kube_node"]);
        assert_eq!(p.groups["all"].vars["ansible_become"].value, "true");
        let e = parse_yaml("all:\n  hostz:\n    a:\n", Path::new("hosts.yaml")).unwrap_err().to_string();
        assert!(e.starts_with("hosts.yaml:2:") && e.contains("hostz"), "{e}");
    }

    #[test]
    fn ansible_inventory_list_json_reads_as_the_same_groups() {
        // The shape `ansible-inventory --list` prints (ansible/cli/inventory.py, json_inventory).
        let json = br#"{"_meta": {"hostvars": {"node1": {"ansible_host": "10.0.0.11", "ansible_port": 2222}, "node2": {}}},
            "all": {"children": ["ungrouped", "k8s_cluster"]},
            "k8s_cluster": {"children": ["kube_control_plane", "kube_node"]},
            "kube_control_plane": {"hosts": ["node1"]},
            "kube_node": {"hosts": ["node2"], "vars": {"ansible_user": "ops"}}}"#;
        let p = parse_list_json(json, Path::new("aws_ec2.yaml")).unwrap();
        assert_eq!(p.hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(), ["node1", "node2"]);
        assert_eq!(p.hosts[0].vars["ansible_port"].value, "2222");
        assert_eq!(p.groups["kube_node"].vars["ansible_user"].value, "ops");
        assert_eq!(p.groups["k8s_cluster"].children, ["kube_control_plane", "kube_node"]);
        let e = parse_list_json(b"{not json", Path::new("aws_ec2.yaml")).unwrap_err().to_string();
        assert!(e.starts_with("aws_ec2.yaml: ansible-inventory --list printed"), "{e}");
    }
}
