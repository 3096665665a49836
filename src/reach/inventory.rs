//! Owns: reading the user's files: an inventory into resolved nodes (SSH settings merged from
//! the inventory, the node's overrides and ~/.ssh/config), with errors at file:line:column,
//! and a playbook named by path.
//! Must not: connect to anything; it only reads the inventory, ssh config, key paths, playbooks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::error::{Error, Result};
use crate::playbook::{self, Playbook};
use crate::reach::transport::ssh::{JumpHost, SshOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    ControlPlane,
    Etcd,
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ControlPlane => "control-plane",
            Role::Etcd => "etcd",
            Role::Worker => "worker",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Become {
    Sudo,
    None,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    cluster: Spanned<String>,
    #[serde(default)]
    distribution: Option<Spanned<String>>,
    #[serde(default)]
    ssh: Option<RawSsh>,
    #[serde(default)]
    concurrency: Option<Spanned<usize>>,
    #[serde(default)]
    batch_size: Option<Spanned<usize>>,
    #[serde(default)]
    kubernetes_api: Option<bool>,
    nodes: Spanned<Vec<RawNode>>,
    #[serde(default)]
    components: Option<BTreeMap<String, Spanned<RawComponent>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSsh {
    #[serde(default)]
    user: Option<Spanned<String>>,
    #[serde(default)]
    port: Option<Spanned<u16>>,
    #[serde(default)]
    identity_file: Option<Spanned<String>>,
    #[serde(default)]
    known_hosts: Option<Spanned<String>>,
    #[serde(default, rename = "become")]
    become_: Option<Spanned<Become>>,
    #[serde(default)]
    jump: Option<Spanned<String>>,
    #[serde(default)]
    config_file: Option<Spanned<String>>,
    #[serde(default)]
    connect_timeout: Option<Spanned<String>>,
    #[serde(default)]
    command_timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: Spanned<String>,
    #[serde(default)]
    host: Option<Spanned<String>>,
    #[serde(default)]
    roles: Option<Spanned<Vec<Role>>>,
    #[serde(default)]
    user: Option<Spanned<String>>,
    #[serde(default)]
    port: Option<Spanned<u16>>,
    #[serde(default)]
    identity_file: Option<Spanned<String>>,
    #[serde(default, rename = "become")]
    become_: Option<Spanned<Become>>,
    #[serde(default)]
    jump: Option<Spanned<String>>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawComponent {
    #[serde(default)]
    pub restart: Option<String>,
    #[serde(default)]
    pub health: Option<String>,
}

pub type ComponentOverride = RawComponent;

#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub roles: Vec<Role>,
    pub ssh: SshOptions,
}

#[derive(Debug, Clone)]
pub struct Inventory {
    pub path: PathBuf,
    pub cluster: String,
    /// The inventory's `distribution:`; none: detected on each node.
    pub playbook: Option<Playbook>,
    pub concurrency: usize,
    pub batch_size: usize,
    pub kubernetes_api: bool,
    pub nodes: Vec<Node>,
    pub components: BTreeMap<String, ComponentOverride>,
}

/// Settings that come from the command line rather than the file.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub accept_new_host_keys: bool,
    pub connect_timeout: Option<Duration>,
    pub command_timeout: Option<Duration>,
}

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

struct Ctx<'a> {
    file: &'a Path,
    dir: PathBuf,
}

impl Ctx<'_> {
    fn at<T>(&self, s: &Spanned<T>, field: &str, message: impl std::fmt::Display) -> Error {
        Error::InputAt {
            file: self.file.to_path_buf(),
            line: s.referenced.line(),
            column: s.referenced.column(),
            message: format!("{field}: {message}"),
        }
    }

    /// `~/` is the home directory; other relative paths are relative to the inventory file.
    fn path(&self, p: &str) -> PathBuf {
        let expanded = expand_home(p);
        if expanded.is_absolute() { expanded } else { self.dir.join(expanded) }
    }
}

pub fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), home()) {
        (Some(rest), Some(h)) => h.join(rest),
        _ if p == "~" => home().unwrap_or_else(|| PathBuf::from("/")),
        _ => PathBuf::from(p),
    }
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

/// A configuration file is text of a few kilobytes: one that is not a regular file (a device,
/// a FIFO) or larger than this is refused before a byte is read.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Reads a user's configuration file: a regular file (links followed), at most 1 MiB, UTF-8.
pub fn read_config(path: &Path) -> std::result::Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(format!("{} bytes: too large for a configuration file (at most {MAX_CONFIG_BYTES})", meta.len()));
    }
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path).and_then(|f| f.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text)).map_err(|e| e.to_string())?;
    Ok(text)
}

/// A playbook by its embedded name (`kubeadm`), or read from a YAML file.
pub fn load_playbook(name_or_path: &str) -> Result<Playbook> {
    if let Some(pb) = playbook::builtin(name_or_path) {
        return Ok(pb);
    }
    if !playbook::names_a_file(name_or_path) {
        return Err(playbook::unknown(name_or_path));
    }
    let path = Path::new(name_or_path);
    let text = read_config(path).map_err(|e| Error::input(format!("playbook {name_or_path}"), e))?;
    playbook::parse(&text, name_or_path, Some(std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())))
}

pub fn load(path: &Path, opts: &LoadOptions) -> Result<Inventory> {
    let text = read_config(path).map_err(|e| Error::input(path.display().to_string(), format!("cannot read inventory: {e}")))?;
    parse(&text, path, opts)
}

pub fn parse(text: &str, path: &Path, opts: &LoadOptions) -> Result<Inventory> {
    let raw: RawInventory = crate::pki::yaml::from_str(text).map_err(|e| yaml_error(path, &e))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
    let cx = Ctx { file: path, dir };

    if raw.cluster.value.trim().is_empty() {
        return Err(cx.at(&raw.cluster, "cluster", "must not be empty"));
    }
    // No `distribution:`: each node's is detected (kubeadm, hardway, k3s, RKE2).
    let playbook = match &raw.distribution {
        None => None,
        Some(d) => {
            let name = if d.value.contains('/') { cx.path(&d.value).to_string_lossy().into_owned() } else { d.value.clone() };
            Some(load_playbook(&name).map_err(|e| cx.at(d, "distribution", e))?)
        }
    };
    let concurrency = match &raw.concurrency {
        Some(c) if c.value == 0 => return Err(cx.at(c, "concurrency", "must be at least 1")),
        Some(c) => c.value,
        None => 10,
    };
    let batch_size = match &raw.batch_size {
        Some(b) if b.value == 0 => return Err(cx.at(b, "batch_size", "must be at least 1")),
        Some(b) => b.value,
        None => 1,
    };
    let ssh = raw.ssh.unwrap_or_default();
    let timeout = |s: &Option<Spanned<String>>, field: &str, cli: Option<Duration>, default: Duration| -> Result<Duration> {
        if let Some(d) = cli {
            return Ok(d);
        }
        match s {
            None => Ok(default),
            Some(v) => humantime::parse_duration(&v.value).map_err(|e| cx.at(v, field, format!("{e} (e.g. 10s, 2m)"))),
        }
    };
    let connect_timeout = timeout(&ssh.connect_timeout, "ssh.connect_timeout", opts.connect_timeout, DEFAULT_CONNECT_TIMEOUT)?;
    let command_timeout = timeout(&ssh.command_timeout, "ssh.command_timeout", opts.command_timeout, DEFAULT_COMMAND_TIMEOUT)?;
    let ssh_config = load_ssh_config(&ssh, &cx)?;
    let known_hosts = match &ssh.known_hosts {
        Some(k) => cx.path(&k.value),
        None => expand_home("~/.ssh/known_hosts"),
    };

    if raw.nodes.value.is_empty() {
        return Err(cx.at(&raw.nodes, "nodes", "the inventory lists no nodes"));
    }
    let mut nodes: Vec<Node> = Vec::new();
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for (i, n) in raw.nodes.value.iter().enumerate() {
        let field = |f: &str| format!("nodes[{i}].{f}");
        let name = n.name.value.trim().to_string();
        if name.is_empty() || name.contains(char::is_whitespace) || name.contains('/') {
            return Err(cx.at(&n.name, &field("name"), format!("{:?} is not a usable node name", n.name.value)));
        }
        if let Some(first) = seen.get(&name) {
            return Err(cx.at(&n.name, &field("name"), format!("duplicate node name {name:?} (first defined at line {first})")));
        }
        seen.insert(name.clone(), n.name.referenced.line());
        let Some(host) = &n.host else {
            return Err(cx.at(&n.name, &field("host"), format!("node {name:?} has no host")));
        };
        if host.value.trim().is_empty() {
            return Err(cx.at(host, &field("host"), "must not be empty"));
        }
        let roles = match &n.roles {
            None => return Err(cx.at(&n.name, &field("roles"), format!("node {name:?} has no roles (control-plane, etcd, worker)"))),
            Some(r) if r.value.is_empty() => return Err(cx.at(r, &field("roles"), "must list at least one of control-plane, etcd, worker")),
            Some(r) => {
                let mut v = r.value.clone();
                v.sort();
                v.dedup();
                v
            }
        };
        let alias = host.value.trim();
        let params = ssh_config.as_ref().map(|c| c.query(alias));
        let hostname = params.as_ref().and_then(|p| p.host_name.clone()).unwrap_or_else(|| alias.to_string());
        let user = n
            .user
            .as_ref()
            .or(ssh.user.as_ref())
            .map(|u| u.value.clone())
            .or_else(|| params.as_ref().and_then(|p| p.user.clone()))
            .unwrap_or_else(local_user);
        let port = n.port.as_ref().or(ssh.port.as_ref()).map(|p| p.value).or_else(|| params.as_ref().and_then(|p| p.port)).unwrap_or(22);
        let identity_files = match n.identity_file.as_ref().map(|f| (f, field("identity_file"))).or(ssh.identity_file.as_ref().map(|f| (f, "ssh.identity_file".to_string()))) {
            Some((f, fieldname)) => {
                let p = cx.path(&f.value);
                if let Err(e) = std::fs::File::open(&p) {
                    return Err(cx.at(f, &fieldname, format!("cannot read identity file {}: {e}", p.display())));
                }
                vec![p]
            }
            None => match params.as_ref().and_then(|p| p.identity_file.clone()) {
                Some(files) => files.iter().map(|f| expand_home(&f.to_string_lossy())).collect(),
                None => ["id_ed25519", "id_ecdsa", "id_rsa"].iter().map(|k| expand_home(&format!("~/.ssh/{k}"))).filter(|p| p.exists()).collect(),
            },
        };
        let become_sudo = n.become_.as_ref().or(ssh.become_.as_ref()).map(|b| b.value == Become::Sudo).unwrap_or(true);
        let jump_spec = n
            .jump
            .as_ref()
            .or(ssh.jump.as_ref())
            .map(|j| (j.value.clone(), Some(j)))
            .or_else(|| params.as_ref().and_then(|p| p.proxy_jump.as_ref()).and_then(|v| v.first().cloned()).map(|j| (j, None)));
        let jump = match jump_spec {
            None => None,
            Some((spec, at)) if spec == "none" => {
                let _ = at;
                None
            }
            Some((spec, at)) => Some(parse_jump(&spec, &user, ssh_config.as_ref()).map_err(|e| match at {
                Some(s) => cx.at(s, "jump", e),
                None => Error::input(format!("~/.ssh/config ProxyJump for {alias}"), e),
            })?),
        };
        nodes.push(Node {
            name,
            roles,
            ssh: SshOptions {
                host: hostname,
                port,
                user,
                identity_files,
                known_hosts: known_hosts.clone(),
                become_sudo,
                jump,
                connect_timeout,
                command_timeout,
                accept_new_host_keys: opts.accept_new_host_keys,
            },
        });
    }

    let mut components = BTreeMap::new();
    for (name, c) in raw.components.unwrap_or_default() {
        let candidates: Vec<Playbook> = match &playbook {
            Some(p) => vec![p.clone()],
            None => playbook::embedded(),
        };
        if !candidates.iter().any(|p| p.component(&name).is_some()) {
            let mut known: Vec<&str> = candidates.iter().flat_map(|p| p.components.iter().map(|c| c.name.as_str())).collect();
            known.sort();
            known.dedup();
            let which = match &playbook {
                Some(p) => format!("the {} playbook has", p.name),
                None => "no embedded playbook has".to_string(),
            };
            return Err(cx.at(&c, &format!("components.{name}"), format!("{which} no component {name:?} (known: {})", known.join(", "))));
        }
        components.insert(name, c.value);
    }

    Ok(Inventory {
        path: path.to_path_buf(),
        cluster: raw.cluster.value,
        playbook,
        concurrency,
        batch_size,
        kubernetes_api: raw.kubernetes_api.unwrap_or(true),
        nodes,
        components,
    })
}

fn local_user() -> String {
    std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "root".into())
}

fn yaml_error(path: &Path, e: &serde_saphyr::Error) -> Error {
    let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
    let text = e.to_string();
    // serde-saphyr renders a snippet after the first line; the message is the first line.
    let mut message = text.lines().next().unwrap_or("").trim().trim_start_matches("error: ").to_string();
    if let Some(rest) = message.strip_prefix(&format!("line {line} column {column}: ")) {
        message = rest.to_string();
    }
    // Name the field even when serde's message does not (a bad value rather than a bad key).
    if !message.contains("field `")
        && let Some(key) = source_key(path, line)
    {
        message = format!("{key}: {message}");
    }
    Error::InputAt { file: path.to_path_buf(), line, column, message }
}

/// The YAML key written on `line` of the file, if the line has one (`  roles: [x]` -> roles).
fn source_key(path: &Path, line: u64) -> Option<String> {
    let text = read_config(path).ok()?;
    let l = text.lines().nth(line.checked_sub(1)? as usize)?;
    let (key, _) = l.trim_start().trim_start_matches("- ").split_once(':')?;
    let key = key.trim();
    (!key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')).then(|| key.to_string())
}

fn load_ssh_config(ssh: &RawSsh, cx: &Ctx) -> Result<Option<ssh2_config::SshConfig>> {
    let path = match &ssh.config_file {
        Some(f) if f.value == "none" => return Ok(None),
        Some(f) => {
            let p = cx.path(&f.value);
            if !p.exists() {
                return Err(cx.at(f, "ssh.config_file", format!("{} does not exist (use `none` to read no ssh config)", p.display())));
            }
            p
        }
        None => {
            let p = expand_home("~/.ssh/config");
            if !p.exists() {
                return Ok(None);
            }
            p
        }
    };
    let text = read_config(&path).map_err(|e| Error::input(path.display().to_string(), e))?;
    parse_ssh_config(&text, &path).map(Some)
}

/// An ssh config's text (`path` names it in errors), as kcert reads it: `Match` blocks are
/// refused, unknown and unsupported fields kept aside.
pub fn parse_ssh_config(text: &str, path: &Path) -> Result<ssh2_config::SshConfig> {
    if let Some((i, _)) = text.lines().enumerate().find(|(_, l)| l.trim_start().to_ascii_lowercase().starts_with("match ")) {
        return Err(Error::InputAt {
            file: path.to_path_buf(),
            line: i as u64 + 1,
            column: 1,
            message: "Match: kcert does not evaluate Match blocks and will not guess; set the SSH fields in the inventory, or point ssh.config_file at a config without Match".into(),
        });
    }
    let rules = ssh2_config::ParseRule::ALLOW_UNKNOWN_FIELDS | ssh2_config::ParseRule::ALLOW_UNSUPPORTED_FIELDS;
    ssh2_config::SshConfig::default()
        .parse(&mut text.as_bytes(), rules)
        .map_err(|e| Error::input(path.display().to_string(), format!("cannot parse ssh config: {e}")))
}

/// `[user@]host[:port]`, with `host` resolved through the ssh config like any other alias.
pub fn parse_jump(spec: &str, default_user: &str, config: Option<&ssh2_config::SshConfig>) -> std::result::Result<JumpHost, String> {
    let (user, rest) = match spec.split_once('@') {
        Some((u, r)) => (Some(u.to_string()), r),
        None => (None, spec),
    };
    let (alias, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p.parse::<u16>().map_err(|_| format!("bad port in jump host {spec:?}"))?)),
        _ => (rest, None),
    };
    if alias.is_empty() {
        return Err(format!("jump host {spec:?} has no host"));
    }
    let params = config.map(|c| c.query(alias));
    Ok(JumpHost {
        host: params.as_ref().and_then(|p| p.host_name.clone()).unwrap_or_else(|| alias.to_string()),
        port: port.or_else(|| params.as_ref().and_then(|p| p.port)).unwrap_or(22),
        user: user.or_else(|| params.as_ref().and_then(|p| p.user.clone())).unwrap_or_else(|| default_user.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> Result<Inventory> {
        parse(text, Path::new("inv.yaml"), &LoadOptions::default())
    }

    const GOOD: &str = "cluster: c\nssh:\n  config_file: none\n  user: ops\nnodes:\n  - name: cp1\n    host: 10.0.0.1\n    roles: [control-plane, etcd]\n  - name: w1\n    host: 10.0.0.2\n    port: 2222\n    roles: [worker]\n";

    #[test]
    fn a_good_inventory_resolves_per_node_overrides() {
        let inv = load_str(GOOD).unwrap();
        assert_eq!(inv.nodes.len(), 2);
        assert_eq!(inv.nodes[0].ssh.port, 22);
        assert_eq!(inv.nodes[1].ssh.port, 2222);
        assert_eq!(inv.nodes[1].ssh.user, "ops");
        assert!(inv.nodes[0].ssh.become_sudo);
        assert!(inv.playbook.is_none(), "no distribution: each node's is detected");
    }

    fn err(text: &str) -> String {
        load_str(text).unwrap_err().to_string()
    }

    #[test]
    fn unknown_fields_name_file_line_and_field() {
        let e = err("cluster: c\nnodes:\n  - name: a\n    host: h\n    roles: [worker]\n    colour: red\n");
        assert!(e.starts_with("inv.yaml:6:"), "{e}");
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn duplicate_nodes_and_missing_hosts_are_refused() {
        let e = err("cluster: c\nnodes:\n  - name: a\n    host: h\n    roles: [worker]\n  - name: a\n    host: h2\n    roles: [worker]\n");
        assert!(e.starts_with("inv.yaml:6:") && e.contains("nodes[1].name") && e.contains("duplicate"), "{e}");
        let e = err("cluster: c\nnodes:\n  - name: a\n    roles: [worker]\n");
        assert!(e.starts_with("inv.yaml:3:") && e.contains("nodes[0].host"), "{e}");
    }

    #[test]
    fn bad_roles_and_missing_identity_files_are_refused() {
        let e = err("cluster: c\nnodes:\n  - name: a\n    host: h\n    roles: [master]\n");
        assert!(e.starts_with("inv.yaml:5:") && e.contains("master"), "{e}");
        let e = err("cluster: c\nssh:\n  identity_file: /nonexistent/key\nnodes:\n  - name: a\n    host: h\n    roles: [worker]\n");
        assert!(e.starts_with("inv.yaml:3:") && e.contains("ssh.identity_file") && e.contains("/nonexistent/key"), "{e}");
    }

    #[test]
    fn unknown_components_and_distributions_are_refused() {
        let e = err("cluster: c\nnodes:\n  - name: a\n    host: h\n    roles: [worker]\ncomponents:\n  kubelett:\n    restart: x\n");
        assert!(e.contains("components.kubelett") && e.contains("kubelet"), "{e}");
        let e = err("cluster: c\ndistribution: talos\nnodes:\n  - name: a\n    host: h\n    roles: [worker]\n");
        assert!(e.starts_with("inv.yaml:2:") && e.contains("distribution"), "{e}");
    }

    #[test]
    fn malformed_yaml_names_the_line() {
        let e = err("cluster: c\nnodes:\n  - name: a\n   host: [\n");
        assert!(e.starts_with("inv.yaml:"), "{e}");
    }

    #[test]
    fn ssh_config_aliases_resolve_like_ssh() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config");
        std::fs::write(&cfg, "Host cp-*\n  User admin\n  Port 2200\n  ProxyJump bastion\nHost cp-1\n  HostName 10.1.1.1\nHost bastion\n  HostName 10.9.9.9\n  User jumper\n").unwrap();
        let text = format!("cluster: c\nssh:\n  config_file: {}\nnodes:\n  - name: a\n    host: cp-1\n    roles: [worker]\n", cfg.display());
        let inv = load_str(&text).unwrap();
        let n = &inv.nodes[0].ssh;
        assert_eq!((n.host.as_str(), n.port, n.user.as_str()), ("10.1.1.1", 2200, "admin"));
        let j = n.jump.as_ref().unwrap();
        assert_eq!((j.host.as_str(), j.port, j.user.as_str()), ("10.9.9.9", 22, "jumper"));
    }

    #[test]
    fn match_blocks_are_refused_not_misread() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config");
        std::fs::write(&cfg, "Host *\n  User a\nMatch host x\n  User b\n").unwrap();
        let text = format!("cluster: c\nssh:\n  config_file: {}\nnodes:\n  - name: a\n    host: x\n    roles: [worker]\n", cfg.display());
        let e = err(&text);
        assert!(e.contains(":3:1: Match"), "{e}");
    }
}
