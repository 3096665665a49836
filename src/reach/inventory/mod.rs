//! Owns: reading the user's files: an inventory (kcert's YAML, or Ansible's INI or YAML as
//! kubespray writes it) into resolved nodes (SSH settings merged from the inventory, the
//! node's overrides and ~/.ssh/config), with errors at file:line:column, and a playbook named
//! by path.
//! Must not: connect to anything; it only reads the inventory, ssh config, key paths, playbooks.

mod ansible;
mod ansible_vars;
mod kcert;
mod sshconf;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::playbook::{self, Playbook};
use crate::reach::transport::ssh::SshOptions;

pub use kcert::{ComponentOverride, parse};
pub use sshconf::{parse_jump, parse_ssh_config};

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
    /// Read through `ansible-inventory --list`: plans and runs record it, to reach the nodes
    /// the same way again.
    pub from_ansible: bool,
}

/// Settings that come from the command line rather than the file.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub accept_new_host_keys: bool,
    pub connect_timeout: Option<Duration>,
    pub command_timeout: Option<Duration>,
    /// Read the inventory through `ansible-inventory -i FILE --list` (dynamic inventories).
    pub from_ansible: bool,
}

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// A value read from a user's file, with where it was written and under which name, so an
/// error can name file:line:column and the field whatever format the file is in.
#[derive(Debug, Clone)]
pub(crate) struct At<T> {
    pub value: T,
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
    pub field: String,
}

impl<T> At<T> {
    pub fn error(&self, message: impl std::fmt::Display) -> Error {
        if self.line == 0 {
            // No line to name (what `ansible-inventory --list` printed).
            return Error::input(self.file.display().to_string(), format!("{}: {message}", self.field));
        }
        Error::InputAt { file: self.file.clone(), line: self.line, column: self.column, message: format!("{}: {message}", self.field) }
    }

    /// An error about a field missing beside this one (`nodes[0].name` -> `nodes[0].host`).
    pub fn sibling_error(&self, sibling: &str, message: impl std::fmt::Display) -> Error {
        let field = match self.field.rsplit_once('.') {
            Some((parent, _)) => format!("{parent}.{sibling}"),
            None => sibling.to_string(),
        };
        Error::InputAt { file: self.file.clone(), line: self.line, column: self.column, message: format!("{field}: {message}") }
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> At<U> {
        At { value: f(self.value), file: self.file, line: self.line, column: self.column, field: self.field }
    }
}

impl At<String> {
    /// `~/` is the home directory; other relative paths are relative to the file that says it.
    pub fn path(&self) -> PathBuf {
        relative_to(&self.file, &self.value)
    }
}

fn relative_to(file: &Path, p: &str) -> PathBuf {
    let expanded = expand_home(p);
    if expanded.is_absolute() {
        return expanded;
    }
    match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.join(expanded),
        _ => PathBuf::from(".").join(expanded),
    }
}

/// SSH settings for every node, or one node's overrides of them.
#[derive(Debug, Clone, Default)]
pub(crate) struct SshSpec {
    pub user: Option<At<String>>,
    pub port: Option<At<u16>>,
    pub identity_file: Option<At<String>>,
    pub known_hosts: Option<At<String>>,
    /// true: sudo; false: none.
    pub become_: Option<At<bool>>,
    pub jump: Option<At<String>>,
    pub config_file: Option<At<String>>,
    pub connect_timeout: Option<At<String>>,
    pub command_timeout: Option<At<String>>,
}

#[derive(Debug, Clone)]
pub(crate) struct NodeSpec {
    pub name: At<String>,
    pub host: Option<At<String>>,
    pub roles: Option<At<Vec<Role>>>,
    /// The node's own user, port, identity_file, known_hosts, become and jump.
    pub ssh: SshSpec,
}

/// An inventory as written, whatever its format: what `resolve` turns into nodes.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub path: PathBuf,
    pub cluster: At<String>,
    pub distribution: Option<At<String>>,
    pub ssh: SshSpec,
    pub concurrency: Option<At<usize>>,
    pub batch_size: Option<At<usize>>,
    pub kubernetes_api: Option<bool>,
    pub nodes: At<Vec<NodeSpec>>,
    pub components: Vec<(String, At<ComponentOverride>)>,
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

/// Reads an inventory: kcert's own YAML, or an Ansible inventory (INI or YAML, told apart by
/// content) with kcert's own settings from an optional `kcert.yaml` beside it.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Inventory> {
    if opts.from_ansible {
        return resolve(ansible_vars::spec_via_ansible(path)?, opts);
    }
    let text = read_config(path).map_err(|e| Error::input(path.display().to_string(), format!("cannot read inventory: {e}")))?;
    parse_any(&text, path, opts)
}

/// An inventory's text in any format kcert reads (`path` names it in errors, and is where
/// `kcert.yaml`, `group_vars/` and `host_vars/` beside an Ansible inventory are looked for).
pub fn parse_any(text: &str, path: &Path, opts: &LoadOptions) -> Result<Inventory> {
    match ansible::detect(text) {
        ansible::Format::Kcert => parse(text, path, opts),
        ansible::Format::AnsiblePlugin => Err(Error::input(
            path.display().to_string(),
            "this is an Ansible inventory plugin's configuration (`plugin:`): only Ansible can list its hosts; add --inventory-from-ansible to read it through `ansible-inventory --list`",
        )),
        format => resolve(ansible_vars::spec(text, path, format)?, opts),
    }
}

/// The nodes of an inventory, their SSH settings merged (node, inventory, ~/.ssh/config,
/// defaults), every path checked that must be readable.
pub(crate) fn resolve(spec: Spec, opts: &LoadOptions) -> Result<Inventory> {
    if spec.cluster.value.trim().is_empty() {
        return Err(spec.cluster.error("must not be empty"));
    }
    // No `distribution:`: each node's is detected (kubeadm, hardway, k3s, RKE2).
    let playbook = match &spec.distribution {
        None => None,
        Some(d) => {
            let name = if d.value.contains('/') { d.path().to_string_lossy().into_owned() } else { d.value.clone() };
            Some(load_playbook(&name).map_err(|e| d.error(e))?)
        }
    };
    let at_least_one = |v: &Option<At<usize>>, default: usize| match v {
        Some(c) if c.value == 0 => Err(c.error("must be at least 1")),
        Some(c) => Ok(c.value),
        None => Ok(default),
    };
    let concurrency = at_least_one(&spec.concurrency, 10)?;
    let batch_size = at_least_one(&spec.batch_size, 1)?;
    let ssh = &spec.ssh;
    let timeout = |s: &Option<At<String>>, cli: Option<Duration>, default: Duration| -> Result<Duration> {
        if let Some(d) = cli {
            return Ok(d);
        }
        match s {
            None => Ok(default),
            Some(v) => humantime::parse_duration(&v.value).map_err(|e| v.error(format!("{e} (e.g. 10s, 2m)"))),
        }
    };
    let connect_timeout = timeout(&ssh.connect_timeout, opts.connect_timeout, DEFAULT_CONNECT_TIMEOUT)?;
    let command_timeout = timeout(&ssh.command_timeout, opts.command_timeout, DEFAULT_COMMAND_TIMEOUT)?;
    let ssh_config = sshconf::load(ssh.config_file.as_ref())?;

    if spec.nodes.value.is_empty() {
        return Err(spec.nodes.error("the inventory lists no nodes"));
    }
    let mut nodes: Vec<Node> = Vec::new();
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for n in &spec.nodes.value {
        let name = n.name.value.trim().to_string();
        if name.is_empty() || name.contains(char::is_whitespace) || name.contains('/') {
            return Err(n.name.error(format!("{:?} is not a usable node name", n.name.value)));
        }
        if let Some(first) = seen.get(&name) {
            return Err(n.name.error(format!("duplicate node name {name:?} (first defined at line {first})")));
        }
        seen.insert(name.clone(), n.name.line);
        let Some(host) = &n.host else {
            return Err(n.name.sibling_error("host", format!("node {name:?} has no host")));
        };
        if host.value.trim().is_empty() {
            return Err(host.error("must not be empty"));
        }
        let roles = match &n.roles {
            None => return Err(n.name.sibling_error("roles", format!("node {name:?} has no roles (control-plane, etcd, worker)"))),
            Some(r) if r.value.is_empty() => return Err(r.error("must list at least one of control-plane, etcd, worker")),
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
        let user = n.ssh.user.as_ref().or(ssh.user.as_ref()).map(|u| u.value.clone()).or_else(|| params.as_ref().and_then(|p| p.user.clone())).unwrap_or_else(local_user);
        let port = n.ssh.port.as_ref().or(ssh.port.as_ref()).map(|p| p.value).or_else(|| params.as_ref().and_then(|p| p.port)).unwrap_or(22);
        let identity_files = match n.ssh.identity_file.as_ref().or(ssh.identity_file.as_ref()) {
            Some(f) => {
                let p = f.path();
                if let Err(e) = std::fs::File::open(&p) {
                    return Err(f.error(format!("cannot read identity file {}: {e}", p.display())));
                }
                vec![p]
            }
            None => match params.as_ref().and_then(|p| p.identity_file.clone()) {
                Some(files) => files.iter().map(|f| expand_home(&f.to_string_lossy())).collect(),
                None => ["id_ed25519", "id_ecdsa", "id_rsa"].iter().map(|k| expand_home(&format!("~/.ssh/{k}"))).filter(|p| p.exists()).collect(),
            },
        };
        let known_hosts = match n.ssh.known_hosts.as_ref().or(ssh.known_hosts.as_ref()) {
            Some(k) => k.path(),
            None => expand_home("~/.ssh/known_hosts"),
        };
        let become_sudo = n.ssh.become_.as_ref().or(ssh.become_.as_ref()).map(|b| b.value).unwrap_or(true);
        let jump_spec = n
            .ssh
            .jump
            .as_ref()
            .or(ssh.jump.as_ref())
            .map(|j| (j.value.clone(), Some(j)))
            .or_else(|| params.as_ref().and_then(|p| p.proxy_jump.as_ref()).and_then(|v| v.first().cloned()).map(|j| (j, None)));
        let jump = match jump_spec {
            None => None,
            Some((spec, _)) if spec == "none" => None,
            Some((spec, at)) => Some(parse_jump(&spec, &user, ssh_config.as_ref()).map_err(|e| match at {
                Some(s) => s.error(e),
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
                known_hosts,
                become_sudo,
                jump,
                connect_timeout,
                command_timeout,
                accept_new_host_keys: opts.accept_new_host_keys,
                kex: params.as_ref().filter(|p| !p.kex_algorithms.is_default()).map(|p| p.kex_algorithms.algorithms().to_vec()),
            },
        });
    }

    let mut components = BTreeMap::new();
    for (name, c) in spec.components {
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
            return Err(c.error(format!("{which} no component {name:?} (known: {})", known.join(", "))));
        }
        components.insert(name, c.value);
    }

    Ok(Inventory { path: spec.path, cluster: spec.cluster.value, playbook, concurrency, batch_size, kubernetes_api: spec.kubernetes_api.unwrap_or(true), nodes, components, from_ansible: opts.from_ansible })
}

fn local_user() -> String {
    std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "root".into())
}
