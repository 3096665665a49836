//! Owns: what an Ansible inventory means to kcert: kubespray's groups as roles, the
//! connection variables resolved per host as Ansible does (`all`, then groups from parent to
//! child, then the host's own), the ssh arguments kcert can honour, kubespray's `bastion`
//! group, and kcert's own settings from `kcert.yaml` beside the inventory.
//! Must not: parse INI or YAML (`ansible` does) or resolve SSH settings (`resolve` does).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::ansible::{self, Format, Parsed, Var};
use super::kcert::{SideSettings, side_settings};
use super::{At, NodeSpec, Role, Spec, SshSpec, read_config};
use crate::error::{Error, Result};

/// kubespray's groups (and their older names) and the role each gives a host.
const ROLE_GROUPS: &[(&str, Role)] = &[
    ("kube_control_plane", Role::ControlPlane),
    ("kube-master", Role::ControlPlane),
    ("kube_master", Role::ControlPlane),
    ("etcd", Role::Etcd),
    ("kube_node", Role::Worker),
    ("kube-node", Role::Worker),
];

/// The file of kcert's own settings an Ansible inventory may have beside it.
pub const SIDE_FILE: &str = "kcert.yaml";

/// An Ansible inventory's text as the spec every inventory becomes.
pub(super) fn spec(text: &str, path: &Path, format: Format) -> Result<Spec> {
    let mut parsed = match format {
        Format::AnsibleYaml => ansible::parse_yaml(text, path)?,
        _ => ansible::parse_ini(text, path)?,
    };
    if let Some(dir) = path.parent() {
        read_var_dirs(&mut parsed, if dir.as_os_str().is_empty() { Path::new(".") } else { dir })?;
    }
    from_parsed(&parsed, path, side(path)?)
}

/// Ansible reads `group_vars/<group>` and `host_vars/<host>` beside the inventory (a file
/// `<name>`, `<name>.yml`, `.yaml` or `.json`, or a directory `<name>/` of such files, in name
/// order); what they set overrides the inventory's own variables of that group or host. Only
/// files that set a connection variable (a line starting `ansible_`, or `"ansible_` in JSON)
/// are parsed: kubespray's many other settings are none of kcert's business.
fn read_var_dirs(p: &mut Parsed, dir: &Path) -> Result<()> {
    let groups: Vec<String> = p.groups.keys().cloned().collect();
    let hosts: Vec<String> = p.hosts.iter().map(|h| h.name.clone()).collect();
    for (kind, names) in [("group_vars", groups), ("host_vars", hosts)] {
        let base = dir.join(kind);
        if !base.is_dir() {
            continue;
        }
        for name in names {
            for file in var_files(&base, &name) {
                let text = read_config(&file).map_err(|e| Error::input(file.display().to_string(), e))?;
                if !text.lines().any(|l| l.starts_with("ansible_") || l.contains("\"ansible_")) {
                    continue;
                }
                let vars = ansible::parse_var_file(&text, &file)?;
                if kind == "group_vars" {
                    p.groups.entry(name.clone()).or_default().vars.extend(vars);
                } else if let Some(h) = p.host_mut(&name) {
                    h.vars.extend(vars);
                }
            }
        }
    }
    Ok(())
}

/// The variables files Ansible's `host_group_vars` plugin reads for one group or host.
fn var_files(base: &Path, name: &str) -> Vec<PathBuf> {
    let wanted = |p: &Path| {
        let file = p.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        !file.starts_with('.') && matches!(p.extension().and_then(|e| e.to_str()), None | Some("yml" | "yaml" | "json"))
    };
    let mut out: Vec<PathBuf> = ["", ".yml", ".yaml", ".json"].iter().map(|ext| base.join(format!("{name}{ext}"))).filter(|f| f.is_file()).collect();
    let d = base.join(name);
    if d.is_dir() {
        let mut inner: Vec<PathBuf> = std::fs::read_dir(&d).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.is_file() && wanted(p)).collect();
        inner.sort();
        out.extend(inner);
    }
    out
}

/// kcert's settings beside an Ansible inventory (inside it, when the inventory is a
/// directory, as Ansible allows), if there are any.
fn side(path: &Path) -> Result<SideSettings> {
    let dir = if path.is_dir() { Some(path) } else { path.parent() };
    let side_path = dir.map(|d| d.join(SIDE_FILE)).unwrap_or_else(|| PathBuf::from(SIDE_FILE));
    if !side_path.is_file() {
        return Ok(SideSettings::default());
    }
    let text = read_config(&side_path).map_err(|e| Error::input(side_path.display().to_string(), e))?;
    side_settings(&text, &side_path)
}

/// An inventory of any kind Ansible reads (a dynamic inventory script or plugin config
/// too), through `ansible-inventory -i PATH --list`.
pub(super) fn spec_via_ansible(path: &Path) -> Result<Spec> {
    let what = path.display().to_string();
    let out = std::process::Command::new("ansible-inventory").arg("-i").arg(path).arg("--list").stdin(std::process::Stdio::null()).output().map_err(|e| {
        let why = if e.kind() == std::io::ErrorKind::NotFound { "ansible-inventory is not installed (or not on PATH)".to_string() } else { format!("cannot run ansible-inventory: {e}") };
        Error::input(what.clone(), format!("{why}; --inventory-from-ansible runs `ansible-inventory -i {what} --list` (without the flag, kcert reads INI and YAML inventories itself)"))
    })?;
    if !out.status.success() {
        let said: String = String::from_utf8_lossy(&out.stderr).lines().filter(|l| !l.trim().is_empty()).take(5).collect::<Vec<_>>().join(" / ");
        return Err(Error::input(what, format!("`ansible-inventory --list` failed ({}): {said}", out.status)));
    }
    let shown = PathBuf::from(format!("{what} (through ansible-inventory --list)"));
    let parsed = ansible::parse_list_json(&out.stdout, &shown)?;
    let mut spec = from_parsed(&parsed, &shown, side(path)?)?;
    spec.path = path.to_path_buf();
    Ok(spec)
}

/// Each group's depth below `all` (a group no other names as a child is `all`'s child), the
/// order Ansible merges group variables in: shallower first, then by name.
fn depths(p: &Parsed) -> BTreeMap<&str, usize> {
    let mut parents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, g) in &p.groups {
        for c in &g.children {
            parents.entry(c.as_str()).or_default().push(name.as_str());
        }
    }
    let mut depth: BTreeMap<&str, usize> = p.groups.keys().map(|g| (g.as_str(), if g == "all" { 0 } else { 1 })).collect();
    // Longest path from `all`; a cycle is cut off after as many rounds as there are groups.
    for _ in 0..p.groups.len() {
        let mut changed = false;
        for (child, ps) in &parents {
            let d = ps.iter().map(|p| depth.get(p).copied().unwrap_or(0) + 1).max().unwrap_or(1);
            if depth.get(child).copied().unwrap_or(0) < d && *child != "all" {
                depth.insert(child, d);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    depth
}

/// The groups a host is in: those naming it, their parents, up to `all`.
fn groups_of<'a>(p: &'a Parsed, host: &str) -> BTreeSet<&'a str> {
    let mut set: BTreeSet<&str> = p.groups.keys().filter(|g| p.in_group(g, host)).map(String::as_str).collect();
    set.insert("all");
    loop {
        let parents: Vec<&str> = p.groups.iter().filter(|(n, g)| !set.contains(n.as_str()) && g.children.iter().any(|c| set.contains(c.as_str()))).map(|(n, _)| n.as_str()).collect();
        if parents.is_empty() {
            return set;
        }
        set.extend(parents);
    }
}

/// A host's variables as Ansible resolves them: `all`, the groups shallow to deep (by name
/// at one depth), the host's own last.
fn vars_of<'a>(p: &'a Parsed, host: &'a ansible::Host, groups: &BTreeSet<&'a str>, depth: &BTreeMap<&str, usize>) -> BTreeMap<&'a str, &'a Var> {
    let mut groups: Vec<&str> = groups.iter().copied().collect();
    groups.sort_by_key(|g| (depth.get(g).copied().unwrap_or(1), *g));
    let mut out = BTreeMap::new();
    for g in groups {
        out.extend(p.groups[g].vars.iter().map(|(k, v)| (k.as_str(), v)));
    }
    out.extend(host.vars.iter().map(|(k, v)| (k.as_str(), v)));
    out
}

struct HostVars<'a> {
    file: &'a Path,
    host: &'a str,
    vars: BTreeMap<&'a str, &'a Var>,
}

impl HostVars<'_> {
    /// The first of these variables the host has, as text kcert can use.
    fn text(&self, names: &[&str]) -> Result<Option<At<String>>> {
        let Some((name, v)) = names.iter().find_map(|n| self.vars.get(n).map(|v| (*n, *v))) else { return Ok(None) };
        let file = v.file.clone().unwrap_or_else(|| self.file.to_path_buf());
        let at = At { value: v.value.trim().to_string(), file, line: v.line, column: v.column, field: format!("{name} of {}", self.host) };
        if !v.scalar {
            return Err(at.error("is a list or a map; kcert needs one value"));
        }
        if v.value.contains("{{") || v.value.contains("{%") {
            return Err(at.error(format!("{:?} is an Ansible template: kcert does not evaluate templates; write the value itself, or set it in {SIDE_FILE} beside the inventory", v.value)));
        }
        Ok(Some(at))
    }

    fn port(&self, names: &[&str]) -> Result<Option<At<u16>>> {
        match self.text(names)? {
            None => Ok(None),
            Some(at) => match at.value.parse::<u16>() {
                Ok(p) if p > 0 => Ok(Some(at.map(|_| p))),
                _ => Err(at.error(format!("{:?} is not a port (1-65535)", at.value))),
            },
        }
    }

    fn flag(&self, name: &str) -> Result<Option<At<bool>>> {
        match self.text(&[name])? {
            None => Ok(None),
            Some(at) => match at.value.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Ok(Some(at.map(|_| true))),
                "false" | "no" | "off" | "0" => Ok(Some(at.map(|_| false))),
                other => Err(at.error(format!("{other:?} is not a boolean (true/false, yes/no)"))),
            },
        }
    }
}

pub(super) fn from_parsed(p: &Parsed, path: &Path, side: SideSettings) -> Result<Spec> {
    let depth = depths(p);
    let file_at = |field: &str| At { value: (), file: path.to_path_buf(), line: 1, column: 1, field: field.to_string() };
    let bastion = bastion_jump(p, path, &depth)?;
    let mut nodes = Vec::new();
    for host in &p.hosts {
        let groups = groups_of(p, &host.name);
        let mut roles: Vec<Role> = ROLE_GROUPS.iter().filter(|(g, _)| groups.contains(g)).map(|(_, r)| *r).collect();
        roles.sort();
        roles.dedup();
        if roles.is_empty() {
            continue; // a bastion, a route reflector: not a node of the cluster
        }
        let hv = HostVars { file: path, host: &host.name, vars: vars_of(p, host, &groups, &depth) };
        if let Some(c) = hv.text(&["ansible_connection"])?
            && !matches!(c.value.as_str(), "ssh" | "smart" | "paramiko" | "ansible.builtin.ssh" | "ansible.builtin.paramiko_ssh")
        {
            return Err(c.error(format!("kcert reaches nodes over SSH only, not {:?}; point ansible_host at the node's SSH address", c.value)));
        }
        if let Some(m) = hv.text(&["ansible_become_method"])?
            && m.value != "sudo"
        {
            return Err(m.error(format!("kcert becomes root with `sudo -n` only, not {:?}", m.value)));
        }
        if let Some(u) = hv.text(&["ansible_become_user"])?
            && u.value != "root"
        {
            return Err(u.error(format!("kcert needs root on the node, not {:?}", u.value)));
        }
        if let Some(pw) = hv.text(&["ansible_password", "ansible_ssh_pass", "ansible_ssh_password"])? {
            return Err(pw.error("kcert signs in with keys (a key file or the ssh-agent), not passwords; set ansible_ssh_private_key_file"));
        }
        let name_at = At { value: host.name.clone(), file: path.to_path_buf(), line: host.line, column: 1, field: format!("host {}", host.name) };
        let host_at = hv.text(&["ansible_host", "ansible_ssh_host"])?.unwrap_or_else(|| name_at.clone());
        let mut ssh = SshSpec {
            user: hv.text(&["ansible_user", "ansible_ssh_user"])?,
            port: hv.port(&["ansible_port", "ansible_ssh_port"])?,
            identity_file: hv.text(&["ansible_ssh_private_key_file", "ansible_private_key_file"])?,
            become_: hv.flag("ansible_become")?,
            ..SshSpec::default()
        };
        for name in ["ansible_ssh_common_args", "ansible_ssh_extra_args"] {
            if let Some(args) = hv.text(&[name])? {
                ssh_args(&args, &mut ssh)?;
            }
        }
        if ssh.jump.is_none() && !groups.contains("bastion") {
            ssh.jump = bastion.clone();
        }
        nodes.push(NodeSpec { name: name_at, host: Some(host_at), roles: Some(file_at("roles").map(|_| roles)), ssh });
    }
    if nodes.is_empty() {
        let groups: Vec<&str> = ROLE_GROUPS.iter().map(|(g, _)| *g).collect();
        return Err(file_at("hosts").error(format!("no host is in any of the groups {} (kubespray's): kcert cannot tell the control plane from the workers", groups.join(", "))));
    }
    let cluster = match side.cluster {
        Some(c) => c,
        None => {
            let dir = std::path::absolute(path).ok().and_then(|p| p.parent().and_then(|d| d.file_name()).map(|n| n.to_string_lossy().into_owned()));
            file_at("cluster").map(|_| dir.unwrap_or_else(|| "cluster".into()))
        }
    };
    Ok(Spec {
        path: path.to_path_buf(),
        cluster,
        distribution: side.distribution,
        ssh: side.ssh,
        concurrency: side.concurrency,
        batch_size: side.batch_size,
        kubernetes_api: side.kubernetes_api,
        nodes: file_at("hosts").map(|_| nodes),
        components: side.components,
    })
}

/// kubespray's `bastion` group: every other host is reached through its (first) host.
fn bastion_jump(p: &Parsed, path: &Path, depth: &BTreeMap<&str, usize>) -> Result<Option<At<String>>> {
    let Some(name) = p.groups.get("bastion").and_then(|g| g.hosts.first()) else { return Ok(None) };
    let Some(host) = p.host(name) else { return Ok(None) };
    let hv = HostVars { file: path, host: name, vars: vars_of(p, host, &groups_of(p, name), depth) };
    let addr = hv.text(&["ansible_host", "ansible_ssh_host"])?.map(|a| a.value).unwrap_or_else(|| name.clone());
    let user = hv.text(&["ansible_user", "ansible_ssh_user"])?.map(|u| format!("{}@", u.value)).unwrap_or_default();
    let port = hv.port(&["ansible_port", "ansible_ssh_port"])?.map(|p| format!(":{}", p.value)).unwrap_or_default();
    Ok(Some(At { value: format!("{user}{addr}{port}"), file: path.to_path_buf(), line: host.line, column: 1, field: format!("bastion {name}") }))
}

/// The ssh arguments kcert honours: ProxyJump (`-J`), a ProxyCommand of the form
/// `ssh -W %h:%p [user@]host`, UserKnownHostsFile, Port (`-p`), User (`-l`), IdentityFile
/// (`-i`). Others (StrictHostKeyChecking among them: kcert always checks host keys) change
/// nothing kcert does.
fn ssh_args(args: &At<String>, ssh: &mut SshSpec) -> Result<()> {
    let words = ansible::split_words(&args.value).map_err(|e| args.error(e))?;
    let set = |v: &str| At { value: v.to_string(), ..args.clone() };
    let mut it = words.iter();
    while let Some(w) = it.next() {
        let mut next = || it.next().map(String::as_str).ok_or_else(|| args.error(format!("{w} needs a value")));
        let option = match w.as_str() {
            "-o" => next()?.to_string(),
            o if o.starts_with("-o") => o[2..].to_string(),
            "-J" => format!("ProxyJump={}", next()?),
            "-p" => format!("Port={}", next()?),
            "-l" => format!("User={}", next()?),
            "-i" => format!("IdentityFile={}", next()?),
            _ => continue,
        };
        let (key, value) = option.split_once(['=', ' ']).map(|(k, v)| (k.trim(), v.trim())).unwrap_or((option.as_str(), ""));
        match key.to_ascii_lowercase().as_str() {
            "proxyjump" => ssh.jump = Some(set(value.split(',').next().unwrap_or(value))),
            "proxycommand" => ssh.jump = Some(set(&proxy_command_jump(value).map_err(|e| args.error(e))?)),
            "userknownhostsfile" => ssh.known_hosts = Some(set(value.split_whitespace().next().unwrap_or(value))),
            "port" => match value.parse::<u16>() {
                Ok(p) if p > 0 => ssh.port = Some(set(value).map(|_| p)),
                _ => return Err(args.error(format!("Port {value:?} is not a port (1-65535)"))),
            },
            "user" => ssh.user = Some(set(value)),
            "identityfile" => ssh.identity_file = Some(set(value)),
            _ => {}
        }
    }
    Ok(())
}

/// `ssh [options] -W %h:%p [user@]host`, the ProxyCommand kubespray's bastion config writes,
/// as a jump host `[user@]host[:port]`.
fn proxy_command_jump(cmd: &str) -> std::result::Result<String, String> {
    let refuse = || format!("ProxyCommand {cmd:?}: kcert follows a ProxyCommand only of the form `ssh -W %h:%p [user@]host`; use ProxyJump");
    let words = ansible::split_words(cmd)?;
    let mut it = words.iter().map(String::as_str);
    if !matches!(it.next(), Some("ssh" | "/usr/bin/ssh")) {
        return Err(refuse());
    }
    let (mut forwards, mut port, mut user, mut dest) = (false, None, None, None);
    while let Some(w) = it.next() {
        match w {
            "-W" => forwards = it.next() == Some("%h:%p"),
            "-p" => port = it.next(),
            "-l" => user = it.next(),
            "-o" | "-i" | "-F" | "-J" => {
                it.next();
            }
            o if o.starts_with('-') => {}
            d => dest = Some(d),
        }
    }
    match (forwards, dest) {
        (true, Some(d)) => Ok(format!("{}{d}{}", user.map(|u| format!("{u}@")).unwrap_or_default(), port.map(|p| format!(":{p}")).unwrap_or_default())),
        _ => Err(refuse()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Inventory, LoadOptions, load};
    use super::*;

    /// An Ansible inventory written into its own directory (named `prod-eu1`) with the
    /// settings beside it, loaded as `-i` would.
    fn load_in(inventory_name: &str, text: &str, side: &str) -> (tempfile::TempDir, Result<Inventory>) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("prod-eu1");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("id_ops"), "not read here").unwrap();
        std::fs::write(d.join(inventory_name), text).unwrap();
        std::fs::write(d.join(SIDE_FILE), side).unwrap();
        let inv = load(&d.join(inventory_name), &LoadOptions::default());
        (dir, inv)
    }

    const SIDE: &str = "ssh:\n  config_file: none\n";

    /// kubespray's sample layout: `[all]` with addresses, the role groups, an empty
    /// `calico_rr`, `k8s_cluster:children`, a bastion, `:vars` sections.
    const KUBESPRAY: &str = "\
# ## Configure 'ip' variable to bind kubernetes services on a different ip than the default iface
[all]
node1 ansible_host=10.0.0.11  # ip=10.3.0.1 etcd_member_name=etcd1
node2 ansible_host=10.0.0.12 etcd_member_name=etcd2
node3 ansible_host=10.0.0.13
node4 ansible_host=10.0.0.14
bastion ansible_host=203.0.113.5 ansible_user=jump

[bastion]
bastion

[kube_control_plane]
node1
node2

[etcd]
node[1:3]

[kube_node]
node[2:4]

[calico_rr]

[k8s_cluster:children]
kube_control_plane
kube_node
calico_rr

[all:vars]
ansible_user=ops
ansible_ssh_private_key_file=id_ops

[kube_node:vars]
ansible_port=2222
";

    #[test]
    fn a_kubespray_sample_inventory_reads_as_is() {
        let (_d, inv) = load_in("inventory.ini", KUBESPRAY, SIDE);
        let inv = inv.unwrap();
        assert_eq!(inv.cluster, "prod-eu1", "the inventory's directory names the cluster");
        let names: Vec<&str> = inv.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["node1", "node2", "node3", "node4"], "the bastion is not a node");
        let roles = |i: usize| inv.nodes[i].roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",");
        assert_eq!(roles(0), "control-plane,etcd");
        assert_eq!(roles(1), "control-plane,etcd,worker");
        assert_eq!(roles(2), "etcd,worker");
        assert_eq!(roles(3), "worker");
        let n1 = &inv.nodes[0].ssh;
        assert_eq!((n1.host.as_str(), n1.port, n1.user.as_str()), ("10.0.0.11", 22, "ops"));
        assert!(n1.identity_files[0].ends_with("prod-eu1/id_ops"), "{:?}", n1.identity_files);
        assert_eq!(inv.nodes[3].ssh.port, 2222, "kube_node's vars");
        let j = inv.nodes[2].ssh.jump.as_ref().expect("through the bastion");
        assert_eq!((j.host.as_str(), j.port, j.user.as_str()), ("203.0.113.5", 22, "jump"));
        assert!(n1.become_sudo, "sudo by default, as for kcert's own inventories");
    }

    #[test]
    fn variables_are_inherited_as_ansible_does() {
        let text = "[kube_control_plane]\ncp1\n[kube_node]\nw1\nw2 ansible_user=host\n[k8s_cluster:children]\nkube_control_plane\nkube_node\n[all:vars]\nansible_user=all\nansible_port=2200\n[k8s_cluster:vars]\nansible_user=parent\n[kube_node:vars]\nansible_user=child\n[kube_control_plane:vars]\nansible_become=false\n";
        let (_d, inv) = load_in("hosts", text, SIDE);
        let inv = inv.unwrap();
        let user = |i: usize| inv.nodes[i].ssh.user.clone();
        assert_eq!((user(0), user(1), user(2)), ("parent".into(), "child".into(), "host".into()));
        assert!(inv.nodes.iter().all(|n| n.ssh.port == 2200));
        assert!(!inv.nodes[0].ssh.become_sudo && inv.nodes[1].ssh.become_sudo);
        assert_eq!(inv.nodes[0].ssh.host, "cp1", "no ansible_host: the inventory name is the address");
    }

    #[test]
    fn the_yaml_form_reads_the_same_as_the_ini_form() {
        let yaml = "all:\n  hosts:\n    node1:\n      ansible_host: 10.0.0.11\n    node2:\n      ansible_host: 10.0.0.12\n      ansible_port: 2222\n  vars:\n    ansible_user: ops\n  children:\n    kube_control_plane:\n      hosts:\n        node1:\n    etcd:\n      hosts:\n        node1:\n    kube_node:\n      hosts:\n        node2:\n    k8s_cluster:\n      children:\n        kube_control_plane:\n        kube_node:\n";
        let ini = "[all]\nnode1 ansible_host=10.0.0.11\nnode2 ansible_host=10.0.0.12 ansible_port=2222\n[all:vars]\nansible_user=ops\n[kube_control_plane]\nnode1\n[etcd]\nnode1\n[kube_node]\nnode2\n";
        let (_a, y) = load_in("hosts.yaml", yaml, SIDE);
        let (_b, i) = load_in("hosts.ini", ini, SIDE);
        let show = |inv: Inventory| inv.nodes.iter().map(|n| format!("{} {:?} {}@{}:{}", n.name, n.roles, n.ssh.user, n.ssh.host, n.ssh.port)).collect::<Vec<_>>();
        assert_eq!(show(y.unwrap()), show(i.unwrap()));
    }

    #[test]
    fn ssh_arguments_kcert_can_honour_are_honoured() {
        let text = "[kube_control_plane]\ncp1 ansible_ssh_common_args='-o ProxyJump=hop@10.9.9.9:2201 -o UserKnownHostsFile=/tmp/kh -o StrictHostKeyChecking=no'\n[kube_node]\nw1 ansible_ssh_common_args='-o ProxyCommand=\"ssh -o StrictHostKeyChecking=no -W %h:%p -p 2202 admin@10.8.8.8\"'\n";
        let (_d, inv) = load_in("hosts", text, SIDE);
        let inv = inv.unwrap();
        let j = inv.nodes[0].ssh.jump.as_ref().unwrap();
        assert_eq!((j.host.as_str(), j.port, j.user.as_str()), ("10.9.9.9", 2201, "hop"));
        assert_eq!(inv.nodes[0].ssh.known_hosts, std::path::PathBuf::from("/tmp/kh"));
        let j = inv.nodes[1].ssh.jump.as_ref().unwrap();
        assert_eq!((j.host.as_str(), j.port, j.user.as_str()), ("10.8.8.8", 2202, "admin"));
    }

    fn refused(text: &str, side: &str, wants: &[&str]) {
        let (_d, inv) = load_in("hosts.ini", text, side);
        let e = inv.unwrap_err().to_string();
        for w in wants {
            assert!(e.contains(w), "{w:?} not in: {e}");
        }
    }

    #[test]
    fn what_kcert_cannot_honour_is_refused_naming_file_and_line() {
        refused("[kube_node]\nw1\nw2 ansible_user=\"{{ user }}\"\n", SIDE, &["hosts.ini:3:", "ansible_user of w2", "template"]);
        refused("[kube_node]\nw1 ansible_port=99999\n", SIDE, &["hosts.ini:2:", "ansible_port of w1", "not a port"]);
        refused("[kube_node]\nw1 ansible_connection=local\n", SIDE, &["hosts.ini:2:", "SSH only"]);
        refused("[kube_node]\nw1 ansible_ssh_pass=secret\n", SIDE, &["hosts.ini:2:", "not passwords"]);
        refused("[kube_node]\nw1 ansible_become_method=su\n", SIDE, &["sudo"]);
        refused("[kube_node]\nw1 ansible_ssh_common_args='-o ProxyCommand=\"nc %h %p\"'\n", SIDE, &["hosts.ini:2:", "ProxyCommand"]);
        refused("[webservers]\nw1\n", SIDE, &["hosts.ini:1:", "kube_control_plane"]);
        refused("[kube_node]\nw1 ansible_host\n", SIDE, &["hosts.ini:2:", "key=value"]);
        refused("[kube_node]\nw1\n", "ssh:\n  config_file: none\nnodes: []\n", &["kcert.yaml:3:", "nodes"]);
        refused("[kube_node]\nw1\n", "ssh:\n  config_file: none\nbatch_size: 0\n", &["kcert.yaml:3:", "batch_size"]);
    }

    #[test]
    fn group_vars_and_host_vars_beside_it_override_the_inventory() {
        let (d, _) = load_in("hosts.ini", "", SIDE);
        let dir = d.path().join("prod-eu1");
        std::fs::create_dir_all(dir.join("group_vars/all")).unwrap();
        std::fs::create_dir_all(dir.join("host_vars")).unwrap();
        // kubespray's own settings (templates and all) are not parsed: no connection variable.
        std::fs::write(dir.join("group_vars/all/all.yml"), "kube_version: \"{{ k8s }}\"\nbad: [unclosed\n").unwrap();
        std::fs::write(dir.join("group_vars/all/ssh.yml"), "---\nansible_user: fromvars\nansible_port: 2200\n").unwrap();
        std::fs::write(dir.join("group_vars/kube_node.yaml"), "ansible_port: 2300\n").unwrap();
        std::fs::write(dir.join("host_vars/w2.json"), "{\"ansible_host\": \"10.0.0.99\"}").unwrap();
        std::fs::write(dir.join("host_vars/w1.yml"), "ansible_port: not-a-port\n").unwrap();
        let ini = dir.join("hosts.ini");
        std::fs::write(&ini, "[kube_control_plane]\ncp1 ansible_port=2222\n[kube_node]\nw2\n[all:vars]\nansible_user=frominventory\n").unwrap();
        let inv = load(&ini, &LoadOptions::default()).unwrap();
        let show: Vec<String> = inv.nodes.iter().map(|n| format!("{}@{}:{}", n.ssh.user, n.ssh.host, n.ssh.port)).collect();
        assert_eq!(show, ["fromvars@cp1:2222", "fromvars@10.0.0.99:2300"]);
        // A bad value there is named at its own file and line.
        std::fs::write(&ini, "[kube_node]\nw1\n").unwrap();
        let e = load(&ini, &LoadOptions::default()).unwrap_err().to_string();
        assert!(e.contains("host_vars/w1.yml:1:") && e.contains("ansible_port of w1") && e.contains("not a port"), "{e}");
    }

    #[test]
    fn the_settings_beside_it_name_the_cluster_and_playbook() {
        let (_d, inv) = load_in("hosts.ini", "[kube_node]\nw1\n", "cluster: eu-west\ndistribution: hardway\nbatch_size: 3\nssh:\n  config_file: none\n  user: fallback\n");
        let inv = inv.unwrap();
        assert_eq!((inv.cluster.as_str(), inv.batch_size, inv.nodes[0].ssh.user.as_str()), ("eu-west", 3, "fallback"));
        assert_eq!(inv.playbook.unwrap().name, "hardway");
    }
}
