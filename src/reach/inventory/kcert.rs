//! Owns: kcert's own inventory format (YAML: cluster, ssh, nodes, components) read into the
//! spec every inventory format becomes, errors at file:line:column naming the field; and the
//! same format without `nodes:` as the settings beside an Ansible inventory.
//! Must not: resolve SSH settings or read key files (`resolve` does, for every format).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{At, Inventory, LoadOptions, NodeSpec, Role, Spec, SshSpec, read_config, resolve};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Become {
    Sudo,
    None,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    #[serde(default)]
    cluster: Option<Spanned<String>>,
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
    #[serde(default)]
    nodes: Option<Spanned<Vec<RawNode>>>,
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

fn at<T>(s: Spanned<T>, file: &Path, field: impl Into<String>) -> At<T> {
    At { line: s.referenced.line(), column: s.referenced.column(), value: s.value, file: file.to_path_buf(), field: field.into() }
}

fn opt<T>(s: Option<Spanned<T>>, file: &Path, field: impl Into<String>) -> Option<At<T>> {
    s.map(|s| at(s, file, field))
}

/// What kcert's own format says, its `nodes:` as written.
fn settings(text: &str, path: &Path) -> Result<(SideSettings, Option<Spanned<Vec<RawNode>>>)> {
    let raw: RawInventory = crate::pki::yaml::from_str(text).map_err(|e| yaml_error(path, &e))?;
    let ssh = raw.ssh.unwrap_or_default();
    let f = path;
    let side = SideSettings {
        cluster: opt(raw.cluster, f, "cluster"),
        distribution: opt(raw.distribution, f, "distribution"),
        ssh: SshSpec {
            user: opt(ssh.user, f, "ssh.user"),
            port: opt(ssh.port, f, "ssh.port"),
            identity_file: opt(ssh.identity_file, f, "ssh.identity_file"),
            known_hosts: opt(ssh.known_hosts, f, "ssh.known_hosts"),
            become_: opt(ssh.become_, f, "ssh.become").map(|b| b.map(|b| b == Become::Sudo)),
            jump: opt(ssh.jump, f, "ssh.jump"),
            config_file: opt(ssh.config_file, f, "ssh.config_file"),
            connect_timeout: opt(ssh.connect_timeout, f, "ssh.connect_timeout"),
            command_timeout: opt(ssh.command_timeout, f, "ssh.command_timeout"),
        },
        concurrency: opt(raw.concurrency, f, "concurrency"),
        batch_size: opt(raw.batch_size, f, "batch_size"),
        kubernetes_api: raw.kubernetes_api,
        components: raw.components.unwrap_or_default().into_iter().map(|(name, c)| (name.clone(), at(c, f, format!("components.{name}")))).collect(),
    };
    Ok((side, raw.nodes))
}

/// A kcert inventory (YAML).
pub fn parse(text: &str, path: &Path, opts: &LoadOptions) -> Result<Inventory> {
    let (s, nodes) = settings(text, path)?;
    let missing = |field: &str| Error::InputAt { file: path.to_path_buf(), line: 1, column: 1, message: format!("missing field `{field}`") };
    let cluster = s.cluster.ok_or_else(|| missing("cluster"))?;
    let raw_nodes = nodes.ok_or_else(|| missing("nodes"))?;
    let nodes_at = at(Spanned { value: (), referenced: raw_nodes.referenced, defined: raw_nodes.defined }, path, "nodes");
    let nodes = raw_nodes
        .value
        .into_iter()
        .enumerate()
        .map(|(i, n)| {
            let field = |name: &str| format!("nodes[{i}].{name}");
            NodeSpec {
                name: at(n.name, path, field("name")),
                host: opt(n.host, path, field("host")),
                roles: opt(n.roles, path, field("roles")),
                ssh: SshSpec {
                    user: opt(n.user, path, field("user")),
                    port: opt(n.port, path, field("port")),
                    identity_file: opt(n.identity_file, path, field("identity_file")),
                    become_: opt(n.become_, path, field("become")).map(|b| b.map(|b| b == Become::Sudo)),
                    jump: opt(n.jump, path, field("jump")),
                    ..SshSpec::default()
                },
            }
        })
        .collect();
    let spec = Spec {
        path: path.to_path_buf(),
        cluster,
        distribution: s.distribution,
        ssh: s.ssh,
        concurrency: s.concurrency,
        batch_size: s.batch_size,
        kubernetes_api: s.kubernetes_api,
        nodes: nodes_at.map(|_| nodes),
        components: s.components,
    };
    resolve(spec, opts)
}

/// kcert's settings for an Ansible inventory: a kcert inventory without `nodes:` (the nodes
/// are the Ansible inventory's), every field optional.
pub(super) fn side_settings(text: &str, path: &Path) -> Result<SideSettings> {
    let (s, nodes) = settings(text, path)?;
    if let Some(n) = &nodes {
        return Err(Error::InputAt {
            file: path.to_path_buf(),
            line: n.referenced.line(),
            column: n.referenced.column(),
            message: "nodes: beside an Ansible inventory, the nodes are the Ansible inventory's; this file holds kcert's own settings only (cluster, distribution, ssh, concurrency, batch_size, kubernetes_api, components)".into(),
        });
    }
    Ok(s)
}

/// The settings beside an Ansible inventory.
#[derive(Default)]
pub(super) struct SideSettings {
    pub cluster: Option<At<String>>,
    pub distribution: Option<At<String>>,
    pub ssh: SshSpec,
    pub concurrency: Option<At<usize>>,
    pub batch_size: Option<At<usize>>,
    pub kubernetes_api: Option<bool>,
    pub components: Vec<(String, At<ComponentOverride>)>,
}

fn yaml_error(path: &Path, e: &serde_saphyr::Error) -> Error {
    let (line, column, mut message) = crate::pki::yaml::said(e);
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
