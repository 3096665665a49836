//! Owns: what discovery finds on a node, as data (certificates, errors, endpoints, the
//! components' flags and the paths their refs name), and the pure parsing that turns a
//! file's bytes into those facts.
//! Must not: do I/O; `discover` reads the files and hands the bytes here.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::pki::kubeconfig::{self, EmbeddedKind};
use crate::pki::manifest::manifest_flags;
pub use crate::pki::unit::Site;
use crate::pki::unit;
use crate::pki::{CertInfo, PkiError, parse_pem};
use crate::playbook::{Component, FileKind, Playbook};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    File,
    Kubeconfig,
    Endpoint,
}

#[derive(Debug, Clone)]
pub struct FoundCert {
    /// The file on the node, or `host:port` for a served certificate.
    pub path: String,
    pub source: Source,
    pub embedded_kind: Option<EmbeddedKind>,
    /// For kubeconfigs: which field held it, e.g. `users[admin].client-certificate-data`.
    pub embedded_key: Option<String>,
    pub name: String,
    pub cert: CertInfo,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundError {
    pub kind: FoundErrorKind,
    pub path: Option<String>,
    pub error: String,
}

/// What went wrong with a file discovery looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoundErrorKind {
    /// Something names it, and it is not there.
    Missing,
    /// It is there, and kcert may not read it.
    Unreadable,
    /// It is read, and is not what it should be (corrupt PEM, no certificate, bad YAML).
    Invalid,
}

/// A port a component serves TLS on, and the file whose certificate it should serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointTarget {
    pub component: String,
    pub name: String,
    pub host: String,
    pub port: u16,
    pub file: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct NodePki {
    pub certs: Vec<FoundCert>,
    pub errors: Vec<FoundError>,
    /// Every PKI file found (certificates, keys, kubeconfigs, bundles).
    pub files: BTreeSet<String>,
    pub endpoints: Vec<EndpointTarget>,
    /// Components whose manifest or config is on the node, with their flags or fields.
    pub components: BTreeMap<String, BTreeMap<String, String>>,
    /// (component, ref key) -> the path that ref names on this node.
    pub refs: BTreeMap<(String, String), String>,
    /// Playbook file name -> its path on this node (a ref's value first, else the default
    /// path when the file exists there).
    pub named: BTreeMap<String, String>,
    /// Component -> every file its flags were read from (a manifest or config; a unit, its
    /// drop-ins, environment and config files).
    pub sources: BTreeMap<String, Vec<String>>,
    /// Component -> its unit file and drop-ins, in systemd's order (units only).
    pub units: BTreeMap<String, Vec<String>>,
    /// (component, flag) -> where a unit's flag is written (units only).
    pub sites: BTreeMap<(String, String), Site>,
}

impl NodePki {
    /// The path a component's ref names, or a playbook file's path by name.
    pub fn path_of(&self, component: Option<&str>, key: &str) -> Option<&str> {
        match component {
            Some(c) => self.refs.get(&(c.to_string(), key.to_string())).map(String::as_str),
            None => self.named.get(key).map(String::as_str),
        }
    }

    /// Certificates found in one file (in file order).
    pub fn certs_in(&self, path: &str) -> Vec<&FoundCert> {
        self.certs.iter().filter(|c| c.path == path && c.source != Source::Endpoint).collect()
    }
}

/// Where a path came from and what it is expected to hold.
#[derive(Debug, Clone)]
pub(super) struct Want {
    pub kind: Option<FileKind>,
    pub name: Option<String>,
    /// Why we look: `--tls-cert-file in /etc/kubernetes/manifests/kube-apiserver.yaml`.
    pub origin: Option<String>,
    /// A missing file is an error only when something names it.
    pub required: bool,
}

pub(super) fn is_key_name(path: &str) -> bool {
    path.ends_with(".key") || path.ends_with("-key.pem")
}

pub(super) fn missing(path: &str, w: &Want) -> FoundError {
    let why = w.origin.as_deref().map(|o| format!(" (named by {o})")).unwrap_or_default();
    FoundError { kind: FoundErrorKind::Missing, path: Some(path.to_string()), error: format!("missing{why}") }
}

/// Reads one file's certificates into `pki`; returns the files a kubeconfig points at.
pub(super) fn classify(path: &str, bytes: &[u8], want: &Want, pki: &mut NodePki) -> Vec<(String, Want)> {
    let base = want.name.clone().unwrap_or_else(|| path.rsplit('/').next().unwrap_or(path).to_string());
    let is_kubeconfig = match want.kind {
        Some(FileKind::Kubeconfig) => true,
        Some(_) => false,
        None => kubeconfig::looks_like_kubeconfig(bytes),
    };
    if is_kubeconfig {
        return read_kubeconfig(path, bytes, &base, pki);
    }
    let expects_certs = matches!(want.kind, Some(FileKind::Cert | FileKind::Trust));
    match parse_pem(bytes) {
        Ok(content) if content.certs.is_empty() => {
            if expects_certs {
                pki.errors.push(FoundError { kind: FoundErrorKind::Invalid, path: Some(path.to_string()), error: no_cert_message(want, &content.other_labels) });
            } else if !content.other_labels.is_empty() {
                pki.files.insert(path.to_string());
            }
        }
        Ok(content) => {
            pki.files.insert(path.to_string());
            push_certs(pki, path, Source::File, None, &base, content.certs);
        }
        Err(PkiError::NotPem) if !expects_certs && !named_like_pem(path) => {}
        Err(e) => {
            pki.files.insert(path.to_string());
            let origin = want.origin.as_deref().map(|o| format!(" (named by {o})")).unwrap_or_default();
            pki.errors.push(FoundError { kind: FoundErrorKind::Invalid, path: Some(path.to_string()), error: format!("{e}{origin}") });
        }
    }
    Vec::new()
}

fn no_cert_message(want: &Want, labels: &[String]) -> String {
    let holds = if labels.is_empty() { String::new() } else { format!(" (it holds: {})", labels.join(", ")) };
    let origin = want.origin.as_deref().map(|o| format!(", named by {o}")).unwrap_or_default();
    format!("no certificate in the file{holds}{origin}")
}

fn named_like_pem(path: &str) -> bool {
    [".crt", ".pem", ".cer"].iter().any(|e| path.ends_with(e))
}

fn push_certs(pki: &mut NodePki, path: &str, source: Source, field: Option<&kubeconfig::Field>, base: &str, certs: Vec<CertInfo>) {
    for (i, cert) in certs.into_iter().enumerate() {
        let name = if i == 0 { base.to_string() } else { format!("{base}[{i}]") };
        pki.certs.push(FoundCert {
            path: path.to_string(),
            source,
            embedded_kind: field.map(|f| f.kind),
            embedded_key: field.map(|f| f.display()),
            name,
            cert,
        });
    }
}

fn read_kubeconfig(path: &str, bytes: &[u8], base: &str, pki: &mut NodePki) -> Vec<(String, Want)> {
    let kc = match kubeconfig::parse_kubeconfig(bytes) {
        Ok(kc) => kc,
        Err(e) => {
            pki.errors.push(FoundError { kind: FoundErrorKind::Invalid, path: Some(path.to_string()), error: format!("not a readable kubeconfig: {e}") });
            return Vec::new();
        }
    };
    pki.files.insert(path.to_string());
    for e in kc.embedded {
        match e.content {
            Ok(content) if content.certs.is_empty() => pki.errors.push(FoundError {
                kind: FoundErrorKind::Invalid,
                path: Some(path.to_string()),
                error: format!("{}: no certificate in the data", e.field.display()),
            }),
            Ok(content) => push_certs(pki, path, Source::Kubeconfig, Some(&e.field), base, content.certs),
            Err(err) => pki.errors.push(FoundError { kind: FoundErrorKind::Invalid, path: Some(path.to_string()), error: format!("{}: {err}", e.field.display()) }),
        }
    }
    kc.references
        .into_iter()
        .map(|r| {
            let target = kubeconfig::resolve_reference(path, &r.path);
            let kind = if r.field.key == "client-key" { FileKind::Key } else { FileKind::Cert };
            let want = Want {
                kind: Some(kind),
                name: Some(format!("{base} {}", r.field.key)),
                origin: Some(format!("{} in {path}", r.field.display())),
                required: true,
            };
            (target, want)
        })
        .collect()
}

/// The values of a component's keys: flags from a manifest, or dotted fields from a config.
pub(super) fn component_keys(c: &Component, bytes: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    if c.manifest.is_some() { manifest_flags(text) } else { config_fields(text, c, c.config.as_deref().unwrap_or_default()) }
}

/// A component's keys as read from its files, and where they came from.
#[derive(Debug, Clone, Default)]
pub struct ComponentFlags {
    pub keys: BTreeMap<String, String>,
    /// Where each flag is written (units only).
    pub sites: BTreeMap<String, Site>,
    /// The unit file and its drop-ins, in order (units only).
    pub units: Vec<String>,
    /// Every file read.
    pub sources: Vec<String>,
}

/// What reading a unit gave, and the files it needs that `get` did not have: (path,
/// required) — an optional `-` environment file is not required.
pub struct UnitRead {
    pub flags: ComponentFlags,
    pub wanted: Vec<(String, bool)>,
    pub error: Option<String>,
}

/// Where systemd looks for a unit, most important first (systemd.unit(5) "Unit File Load Path").
const UNIT_DIRS: &[&str] = &["/etc/systemd/system", "/run/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"];

/// The unit files and drop-in directories of `unit` to look at.
pub fn unit_candidates(unit: &str) -> (Vec<String>, Vec<String>) {
    (UNIT_DIRS.iter().map(|d| format!("{d}/{unit}.service")).collect(), UNIT_DIRS.iter().map(|d| format!("{d}/{unit}.service.d")).collect())
}

/// The unit file systemd loads (the first found) and its drop-ins: every `*.conf` of the
/// drop-in directories, a name in an earlier directory hiding the same name in a later one,
/// applied in the order of their names. A unit masked (empty, or linked to /dev/null, in an
/// earlier directory) does not run: none.
pub fn unit_files(units: &[String], dropin_dirs: &[String], have: &BTreeMap<String, Vec<u8>>, listed: &[String]) -> Vec<String> {
    let Some(main) = units.iter().find(|p| have.contains_key(*p)) else { return Vec::new() };
    if have[main].iter().all(|b| b.is_ascii_whitespace()) {
        return Vec::new();
    }
    let mut by_name: BTreeMap<String, String> = BTreeMap::new();
    for dir in dropin_dirs.iter().rev() {
        for f in listed.iter().filter(|f| f.strip_prefix(dir.as_str()).and_then(|r| r.strip_prefix('/')).is_some_and(|r| !r.contains('/') && r.ends_with(".conf"))) {
            by_name.insert(f.rsplit('/').next().unwrap_or(f).to_string(), f.clone());
        }
    }
    std::iter::once(main.clone()).chain(by_name.into_values()).collect()
}

/// A unit component's keys from its files (`get` hands their bytes): the command line's
/// flags, etcd's own settings when the playbook says so, and the fields of the config file
/// `config_flag` names, a flag in `flag_fields` winning over its field.
pub fn unit_keys(c: &Component, units: &[String], get: &dyn Fn(&str) -> Option<Vec<u8>>) -> UnitRead {
    let mut wanted = Vec::new();
    let text = |p: &str| get(p).map(|b| String::from_utf8_lossy(&b).into_owned());
    let texts: Vec<(String, String)> = units.iter().filter_map(|p| text(p).map(|t| (p.clone(), t))).collect();
    let pairs: Vec<(&str, &str)> = texts.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
    let s = unit::settings(&pairs);
    let mut sources: Vec<String> = units.to_vec();
    let mut envs: Vec<(String, String)> = Vec::new();
    for (p, optional) in &s.env_files {
        match text(p) {
            Some(t) => {
                sources.push(p.clone());
                envs.push((p.clone(), t));
            }
            None => wanted.push((p.clone(), !optional)),
        }
    }
    let mut flags = unit::flags(&s, &envs);
    let mut error = None;
    if c.etcd_settings {
        unit::etcd_env(&s, &envs, &mut flags);
        if let Some(cfg) = flags.get("--config-file").map(|f| f.value.clone()) {
            match text(&cfg) {
                Some(t) => {
                    sources.push(cfg.clone());
                    match unit::etcd_config(&t, &cfg) {
                        Ok(f) => flags = f,
                        Err(e) => error = Some(format!("{cfg}: {e}")),
                    }
                }
                None => wanted.push((cfg, true)),
            }
        }
    }
    let mut keys: BTreeMap<String, String> = flags.iter().map(|(k, f)| (k.clone(), f.value.clone())).collect();
    let mut sites: BTreeMap<String, Site> = flags.into_iter().map(|(k, f)| (k, f.site)).collect();
    if let Some(cfg) = c.config_flag.as_ref().and_then(|k| keys.get(k)).cloned() {
        match text(&cfg) {
            Some(t) => {
                sources.push(cfg.clone());
                match config_fields(&t, c, &cfg) {
                    Ok(fields) => {
                        for (k, v) in fields {
                            keys.entry(k).or_insert(v);
                        }
                    }
                    Err(e) => error = Some(format!("{cfg}: {e}")),
                }
            }
            None => wanted.push((cfg, true)),
        }
    }
    for (flag, field) in &c.flag_fields {
        if let Some(v) = keys.get(flag).cloned() {
            keys.insert(field.clone(), v);
            if let Some(site) = sites.get(flag).cloned() {
                sites.insert(field.clone(), site);
            }
        }
    }
    sources.dedup();
    UnitRead { flags: ComponentFlags { keys, sites, units: units.to_vec(), sources }, wanted, error }
}

/// A component's flags as its files stand in `get` (a plan's view of them after a stage):
/// from its manifest, or from its unit and the files the unit names.
pub fn flags_now(c: &Component, pki: &NodePki, get: &dyn Fn(&str) -> Option<Vec<u8>>) -> Option<BTreeMap<String, String>> {
    if c.unit.is_some() {
        let units = pki.units.get(&c.name)?;
        return Some(unit_keys(c, units, get).flags.keys);
    }
    let bytes = get(c.source()?)?;
    component_keys(c, &bytes).ok()
}

/// Dotted fields of a YAML config (the kubelet's), as strings. Relative paths in a kubelet
/// config are relative to the config's directory, as the kubelet resolves them.
fn config_fields(text: &str, c: &Component, config_path: &str) -> Result<BTreeMap<String, String>, String> {
    let value: serde_json::Value = serde_saphyr::from_str(text).map_err(|e| e.to_string().lines().next().unwrap_or("").to_string())?;
    let dir = config_path.rsplit_once('/').map(|(d, _)| d.to_string()).unwrap_or_default();
    let get = |key: &str| -> Option<&serde_json::Value> {
        let mut v = &value;
        for part in key.split('.') {
            v = v.get(part)?;
        }
        Some(v)
    };
    let mut out = BTreeMap::new();
    for r in &c.refs {
        if let Some(s) = get(&r.key).and_then(|v| v.as_str())
            && !s.is_empty()
        {
            let path = if s.starts_with('/') { s.to_string() } else { kubeconfig::normalize(&format!("{dir}/{s}")) };
            out.insert(r.key.clone(), path);
        }
    }
    for key in c.facts.iter().chain(c.self_rotates.iter()) {
        match get(key) {
            Some(serde_json::Value::String(s)) => out.insert(key.clone(), s.clone()),
            Some(v) if !v.is_null() => out.insert(key.clone(), v.to_string()),
            _ => None,
        };
    }
    Ok(out)
}

/// (path, ref, required) for each file a component names, or falls back to when unset.
pub(super) fn resolve_refs<'a>(pb: &'a Playbook, c: &'a Component, _src: &str, keys: &BTreeMap<String, String>) -> Vec<(String, &'a crate::playbook::FileRef, bool)> {
    c.refs
        .iter()
        .filter_map(|r| match keys.get(&r.key) {
            Some(v) => Some((v.clone(), r, true)),
            None if r.default_when_unset => pb.file(&r.file).map(|f| (f.path.clone(), r, false)),
            None => None,
        })
        .collect()
}

pub(super) fn endpoint_targets(pb: &Playbook, c: &Component, _src: &str, keys: &BTreeMap<String, String>) -> Vec<EndpointTarget> {
    c.endpoints
        .iter()
        .map(|e| {
            let port = e.port_key.as_ref().and_then(|k| keys.get(k)).and_then(|v| v.parse().ok()).unwrap_or(e.port);
            let host = e
                .listen_key
                .as_ref()
                .and_then(|k| keys.get(k))
                .and_then(|urls| urls.split(',').next().map(crate::text::url_host))
                .filter(|h| !h.is_empty() && h != "0.0.0.0" && h != "::")
                .unwrap_or_else(|| "127.0.0.1".to_string());
            let r = c.refs.iter().find(|r| r.key == e.serves).expect("playbook validated");
            let file = keys.get(&e.serves).cloned().or_else(|| r.default_when_unset.then(|| pb.file(&r.file).map(|f| f.path.clone())).flatten());
            EndpointTarget { component: c.name.clone(), name: r.file.clone(), host, port, file }
        })
        .collect()
}

/// The private key files that usually sit beside a certificate file.
pub fn key_beside(cert: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(stem) = cert.strip_suffix(".crt") {
        out.push(format!("{stem}.key"));
    }
    if let Some(stem) = cert.strip_suffix(".pem") {
        out.push(format!("{stem}-key.pem"));
        out.push(format!("{stem}.key"));
    }
    out
}

/// One node's facts, as gathered: what the planners and reports work on. Holds file bytes
/// (never private keys, except where a key shares a file with a certificate or is embedded in
/// a kubeconfig: those are copied through, never shown); Debug shows no bytes.
#[derive(Clone)]
pub struct NodeFacts {
    pub name: String,
    /// The address other nodes reach this one on.
    pub address: String,
    /// Changed alone and first (control plane, etcd, or a `--root` copy of a control-plane node).
    pub control_plane: bool,
    /// A directory tree (`--root`): files only, no ports, no restarts.
    pub offline: bool,
    pub pki: NodePki,
    /// Every file read, by path: certificates, kubeconfigs, manifests, configs, the keys
    /// kubeconfigs and leaves name.
    pub files: BTreeMap<String, Vec<u8>>,
    pub hostname: Option<String>,
}

impl std::fmt::Debug for NodeFacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeFacts({}, {} files)", self.name, self.files.len())
    }
}

impl NodeFacts {
    /// Host name and address to add to kubelet serving certs.
    pub fn node_sans(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(h) = self.hostname.as_ref().filter(|h| !h.is_empty()) {
            v.push(h.clone());
        }
        let addr = self.address.clone();
        if addr.parse::<std::net::IpAddr>().is_ok() && !(self.offline && addr == "127.0.0.1") && !v.contains(&addr) {
            v.push(addr);
        }
        v
    }

    /// Where the key of the playbook's CA file `ca` may be on this node: the path a flag or
    /// the playbook names, then beside the certificate by the usual names (`x.crt` / `x.key`,
    /// `x.pem` / `x-key.pem`), first found first.
    pub fn ca_key_candidates(&self, pb: &Playbook, ca: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(key_name) = pb.file(ca).and_then(|f| f.key.as_deref()) {
            out.extend(self.pki.named.get(key_name).cloned());
            out.extend(pb.file(key_name).map(|k| k.path.clone()));
        }
        if let Some(cert) = self.pki.named.get(ca) {
            out.extend(key_beside(cert));
        }
        out.dedup();
        let mut seen = BTreeSet::new();
        out.retain(|p| seen.insert(p.clone()));
        out
    }

    /// The CA key of `ca` this node holds, and where.
    pub fn ca_key(&self, pb: &Playbook, ca: &str) -> Option<(String, &Vec<u8>)> {
        self.ca_key_candidates(pb, ca).into_iter().find_map(|p| self.files.get(&p).map(|b| (p, b)))
    }

    /// Each kubeconfig's server URL, by path.
    pub fn kubeconfig_servers(&self) -> BTreeMap<&str, String> {
        self.files
            .iter()
            .filter(|(_, b)| kubeconfig::looks_like_kubeconfig(b))
            .filter_map(|(p, b)| kubeconfig::identity(b).ok().map(|id| (p.as_str(), id.server)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playbook;

    const APISERVER: &str = "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - command:\n    - kube-apiserver\n    - --tls-cert-file=/x/apiserver.crt\n    - --secure-port=8443\n    - --client-ca-file\n    - /x/ca.crt\n    - --allow-privileged=true\n    name: kube-apiserver\n";

    #[test]
    fn manifest_flags_override_defaults_and_set_the_endpoint() {
        let pb = playbook::builtin("kubeadm").unwrap();
        let c = pb.component("kube-apiserver").unwrap();
        let keys = component_keys(c, APISERVER.as_bytes()).unwrap();
        let refs = resolve_refs(&pb, c, "m", &keys);
        assert!(refs.iter().any(|(p, r, req)| p == "/x/apiserver.crt" && r.file == "apiserver" && *req));
        let eps = endpoint_targets(&pb, c, "m", &keys);
        assert_eq!(eps, vec![EndpointTarget { component: "kube-apiserver".into(), name: "apiserver".into(), host: "127.0.0.1".into(), port: 8443, file: Some("/x/apiserver.crt".into()) }]);
    }

    #[test]
    fn kubelet_serving_cert_defaults_when_unset() {
        let pb = playbook::builtin("kubeadm").unwrap();
        let c = pb.component("kubelet").unwrap();
        let cfg = "apiVersion: kubelet.config.k8s.io/v1beta1\nauthentication:\n  x509:\n    clientCAFile: /etc/kubernetes/pki/ca.crt\n";
        let keys = component_keys(c, cfg.as_bytes()).unwrap();
        let refs = resolve_refs(&pb, c, "m", &keys);
        assert!(refs.iter().any(|(p, r, req)| p == "/var/lib/kubelet/pki/kubelet.crt" && r.file == "kubelet-serving" && !*req));
        let eps = endpoint_targets(&pb, c, "m", &keys);
        assert_eq!(eps[0].port, 10250);
        assert_eq!(eps[0].file.as_deref(), Some("/var/lib/kubelet/pki/kubelet.crt"));
    }

    #[test]
    fn etcd_peer_endpoint_dials_the_listen_address() {
        let pb = playbook::builtin("kubeadm").unwrap();
        let c = pb.component("etcd").unwrap();
        let m = "spec:\n  containers:\n  - command: [etcd, '--listen-client-urls=https://127.0.0.1:2379,https://10.0.0.5:2379', '--listen-peer-urls=https://10.0.0.5:2380', '--peer-cert-file=/p.crt', '--cert-file=/s.crt']\n";
        let keys = component_keys(c, m.as_bytes()).unwrap();
        let eps = endpoint_targets(&pb, c, "m", &keys);
        assert_eq!((eps[0].host.as_str(), eps[0].port, eps[0].file.as_deref()), ("127.0.0.1", 2379, Some("/s.crt")));
        assert_eq!((eps[1].host.as_str(), eps[1].port, eps[1].file.as_deref()), ("10.0.0.5", 2380, Some("/p.crt")));
    }

    #[test]
    fn the_unit_systemd_loads_and_its_drop_ins_in_name_order_make_the_kubelet_keys() {
        let (units, dirs) = unit_candidates("kubelet");
        let mut have: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        have.insert("/lib/systemd/system/kubelet.service".into(), b"[Service]\nExecStart=/bin/kubelet --config=/old.yaml\n".to_vec());
        have.insert("/etc/systemd/system/kubelet.service".into(), b"[Service]\nExecStart=/bin/kubelet --config=/var/lib/kubelet/c.yaml --kubeconfig=/k --tls-cert-file=/flag.pem\n".to_vec());
        let listed = vec![
            "/usr/lib/systemd/system/kubelet.service.d/20-b.conf".to_string(),
            "/etc/systemd/system/kubelet.service.d/20-b.conf".to_string(),
            "/usr/lib/systemd/system/kubelet.service.d/10-a.conf".to_string(),
            "/etc/systemd/system/kubelet.service.d/notes.txt".to_string(),
        ];
        let files = unit_files(&units, &dirs, &have, &listed);
        assert_eq!(files, ["/etc/systemd/system/kubelet.service", "/usr/lib/systemd/system/kubelet.service.d/10-a.conf", "/etc/systemd/system/kubelet.service.d/20-b.conf"]);
        // Masked in /etc (linked to /dev/null: read as empty): the /lib unit does not run either.
        let mut masked = have.clone();
        masked.insert("/etc/systemd/system/kubelet.service".into(), Vec::new());
        assert!(unit_files(&units, &dirs, &masked, &listed).is_empty());
        have.insert("/var/lib/kubelet/c.yaml".into(), b"authentication:\n  x509:\n    clientCAFile: ca.pem\ntlsCertFile: /config.pem\nrotateCertificates: true\n".to_vec());
        let pb = playbook::builtin("hardway").unwrap();
        let c = pb.component("kubelet").unwrap();
        let read = unit_keys(c, &files, &|p: &str| have.get(p).cloned());
        assert!(read.wanted.is_empty() && read.error.is_none());
        let k = &read.flags.keys;
        assert_eq!(k["--kubeconfig"], "/k");
        assert_eq!(k["authentication.x509.clientCAFile"], "/var/lib/kubelet/ca.pem", "relative to the config's directory");
        assert_eq!(k["tlsCertFile"], "/flag.pem", "the flag wins over the config field");
        assert_eq!(k["rotateCertificates"], "true");
        assert!(read.flags.sources.contains(&"/var/lib/kubelet/c.yaml".to_string()));
        // A required environment file that is not there is asked for, then said missing.
        have.insert("/etc/systemd/system/kubelet.service".into(), b"[Service]\nEnvironmentFile=/etc/k.env\nEnvironmentFile=-/etc/opt.env\nExecStart=/bin/kubelet $OPTS\n".to_vec());
        let read = unit_keys(c, &files, &|p: &str| have.get(p).cloned());
        assert_eq!(read.wanted, vec![("/etc/k.env".to_string(), true), ("/etc/opt.env".to_string(), false)]);
    }

    #[test]
    fn scanned_non_certificates_are_ignored_but_corrupt_pem_is_reported() {
        let mut pki = NodePki::default();
        let want = Want { kind: None, name: None, origin: None, required: false };
        classify("/d/ca-config.json", b"{\"signing\":{}}", &want, &mut pki);
        classify("/d/admin.csr", b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", &want, &mut pki);
        assert!(pki.errors.is_empty() && pki.certs.is_empty());
        classify("/d/bad.crt", b"-----BEGIN CERTIFICATE-----\nAAAA\n", &want, &mut pki);
        classify("/d/placeholder.pem", b"a CA bundle lives here\n", &want, &mut pki);
        let paths: Vec<_> = pki.errors.iter().map(|e| e.path.clone().unwrap()).collect();
        assert_eq!(paths, vec!["/d/bad.crt", "/d/placeholder.pem"]);
    }
}
