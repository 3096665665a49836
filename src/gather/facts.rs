//! Owns: what discovery finds on a node, as data (certificates, errors, endpoints, the
//! components' flags and the paths their refs name), and the pure parsing that turns a
//! file's bytes into those facts.
//! Must not: do I/O; `discover` reads the files and hands the bytes here.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::pki::kubeconfig::{self, EmbeddedKind};
use crate::pki::manifest::manifest_flags;
pub use crate::pki::unit::Site;
use crate::pki::{CertInfo, PkiError, parse_pem};
use crate::playbook::{Component, FileKind, Playbook};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    File,
    Kubeconfig,
    Endpoint,
    /// A `kubernetes.io/tls` Secret kept as JSON (k3s's `dynamic-cert.json`): its `tls.crt`.
    Secret,
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

/// A file that is there and kcert cannot read (`why`: the refusal, or its size).
pub(super) fn unreadable(path: &str, why: impl std::fmt::Display) -> FoundError {
    FoundError { kind: FoundErrorKind::Unreadable, path: Some(path.to_string()), error: format!("unreadable: {why}") }
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
    if let Some(crt) = crate::pki::k3s::tls_secret(bytes) {
        read_secret(path, crt, &base, pki);
        return Vec::new();
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

fn push_certs(pki: &mut NodePki, path: &str, source: Source, field: Option<(Option<kubeconfig::EmbeddedKind>, String)>, base: &str, certs: Vec<CertInfo>) {
    for (i, cert) in certs.into_iter().enumerate() {
        let name = if i == 0 { base.to_string() } else { format!("{base}[{i}]") };
        let (embedded_kind, embedded_key) = field.clone().map_or((None, None), |(k, key)| (k, Some(key)));
        pki.certs.push(FoundCert { path: path.to_string(), source, embedded_kind, embedded_key, name, cert });
    }
}

/// A TLS Secret kept as JSON: its certificates, under the field they came from.
fn read_secret(path: &str, crt: Result<Vec<u8>, String>, base: &str, pki: &mut NodePki) {
    pki.files.insert(path.to_string());
    let certs = crt.and_then(|pem| parse_pem(&pem).map_err(|e| format!("data[\"tls.crt\"]: {e}")));
    match certs {
        Ok(content) if !content.certs.is_empty() => push_certs(pki, path, Source::Secret, Some((None, "data[tls.crt]".into())), base, content.certs),
        Ok(_) => pki.errors.push(FoundError { kind: FoundErrorKind::Invalid, path: Some(path.to_string()), error: "data[\"tls.crt\"]: no certificate in it".into() }),
        Err(e) => pki.errors.push(FoundError { kind: FoundErrorKind::Invalid, path: Some(path.to_string()), error: e }),
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
            Ok(content) => push_certs(pki, path, Source::Kubeconfig, Some((Some(e.field.kind), e.field.display())), base, content.certs),
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

/// A component's flags as its files stand in `get` (a plan's view of them after a stage):
/// from its manifest, or from its unit and the files the unit names.
pub fn flags_now(c: &Component, pki: &NodePki, get: &dyn Fn(&str) -> Option<Vec<u8>>) -> Option<BTreeMap<String, String>> {
    if c.unit.is_some() {
        let units = pki.units.get(&c.name)?;
        return Some(super::units::unit_keys(c, units, get).flags.keys);
    }
    let bytes = get(c.source()?)?;
    component_keys(c, &bytes).ok()
}

/// Dotted fields of a YAML config (the kubelet's), as strings. Relative paths in a kubelet
/// config are relative to the config's directory, as the kubelet resolves them.
pub(super) fn config_fields(text: &str, c: &Component, config_path: &str) -> Result<BTreeMap<String, String>, String> {
    let value: serde_json::Value = crate::pki::yaml::from_str(text).map_err(|e| e.to_string().lines().next().unwrap_or("").to_string())?;
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
            None => ref_default(pb, c, r, keys).map(|p| (p, r, false)),
        })
        .collect()
}

/// The file a ref falls back to when its key is unset (`default_when_unset`): the file's
/// default path, or its name inside the directory `default_in` names (the kubelet's
/// `kubelet.crt` in its `--cert-dir`). A component found by its `present` file has no flags:
/// every ref is its file's default path.
fn ref_default(pb: &Playbook, c: &Component, r: &crate::playbook::FileRef, keys: &BTreeMap<String, String>) -> Option<String> {
    if !r.default_when_unset && c.present.is_none() {
        return None;
    }
    let f = pb.file(&r.file)?;
    match r.default_in.as_ref().and_then(|k| keys.get(k)).filter(|d| d.starts_with('/')) {
        Some(dir) => Some(kubeconfig::normalize(&format!("{}/{}", dir.trim_end_matches('/'), f.path.rsplit('/').next().unwrap_or(&f.path)))),
        None => Some(f.path.clone()),
    }
}

/// A playbook path as it is on a node: `~/x` is `x` in the login user's home (`home`), and
/// names nothing where there is no login user (a `--root` tree).
pub fn expand_home(path: &str, home: Option<&str>) -> Option<String> {
    match path.strip_prefix("~/") {
        Some(rest) => home.map(|h| format!("{}/{rest}", h.trim_end_matches('/'))),
        None => Some(path.to_string()),
    }
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
            let file = keys.get(&e.serves).cloned().or_else(|| ref_default(pb, c, r, keys));
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

/// A file's bytes as gathered, held once however many paths and nodes hold them.
pub type Shared = std::sync::Arc<[u8]>;

/// Distinct contents, each held once: equal bytes given to `hold` again come back as the
/// copy already held. Gathering keeps one (`Held`), so does the rotation planner's view of
/// the files it changes.
#[derive(Default)]
pub struct Contents(foldhash::HashSet<Shared>);

impl Contents {
    pub fn hold(&mut self, bytes: Vec<u8>) -> Shared {
        if let Some(have) = self.0.get(bytes.as_slice()) {
            return have.clone();
        }
        let b: Shared = bytes.into();
        self.0.insert(b.clone());
        b
    }

    /// Lets go of contents nothing but this holds any more.
    pub fn forget_unused(&mut self) {
        self.0.retain(|b| std::sync::Arc::strong_count(b) > 1);
    }
}

/// Every distinct content gathered so far: a file read under another path (a symlink and its
/// target) or on another node (a kubeadm worker's `ca.crt`, `kubelet.conf`, `config.yaml`)
/// with the same bytes shares one copy. Nodes are read at the same time, so it is locked.
#[derive(Default)]
pub struct Held(std::sync::Mutex<Contents>);

impl Held {
    pub fn hold(&self, bytes: Vec<u8>) -> Shared {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).hold(bytes)
    }
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
    /// kubeconfigs and leaves name. Equal contents are held once (`Shared`): a symlink and its
    /// target, and the files most nodes share (a kubeadm worker's `ca.crt`, `kubelet.conf`).
    pub files: BTreeMap<String, Shared>,
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

    /// Where the key of the playbook's CA file `ca` may be on this node, first found first:
    /// the path a flag names, the certificate's own file when it holds a key too, beside the
    /// certificate by the usual names (`x.crt` / `x.key`, `x.pem` / `x-key.pem`), and last the
    /// playbook's default path.
    pub fn ca_key_candidates(&self, pb: &Playbook, ca: &str) -> Vec<String> {
        let mut out = Vec::new();
        let key_name = pb.file(ca).and_then(|f| f.key.as_deref());
        if let Some(k) = key_name {
            out.extend(self.pki.named.get(k).cloned());
        }
        if let Some(cert) = self.pki.named.get(ca) {
            if self.files.get(cert).is_some_and(|b| crate::pki::edit::has_private_key(b)) {
                out.push(cert.clone());
            }
            out.extend(key_beside(cert));
        }
        out.extend(key_name.and_then(|k| pb.file(k)).map(|k| k.path.clone()));
        let mut seen = BTreeSet::new();
        out.retain(|p| seen.insert(p.clone()));
        out
    }

    /// The CA key of `ca` this node holds, and where.
    pub fn ca_key(&self, pb: &Playbook, ca: &str) -> Option<(String, &Shared)> {
        self.ca_key_candidates(pb, ca).into_iter().find_map(|p| self.files.get(&p).map(|b| (p, b)))
    }

    /// Where the key of CA file `ca` was looked for on these nodes (those that hold its
    /// certificate), for a message saying it is on none: `cp1: /x/ca-key.pem, ...`.
    pub fn ca_key_tried<'a>(pb: &Playbook, nodes: impl IntoIterator<Item = &'a NodeFacts>, ca: &str) -> String {
        let tried: Vec<String> = nodes.into_iter().filter(|n| n.pki.named.contains_key(ca)).flat_map(|n| n.ca_key_candidates(pb, ca).into_iter().map(|p| format!("{}: {p}", n.name))).collect();
        if tried.is_empty() { "no node holds its certificate".into() } else { tried.join(", ") }
    }

    /// Each kubeconfig's server URL, by path.
    pub fn kubeconfig_servers(&self) -> BTreeMap<&str, String> {
        self.files
            .iter()
            .filter(|(_, b)| kubeconfig::looks_like_kubeconfig(b))
            .filter_map(|(p, b)| kubeconfig::public_identity(b).ok().map(|id| (p.as_str(), id.server)))
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

    #[test]
    fn equal_contents_are_held_once_and_different_ones_apart() {
        let held = Held::default();
        let a = held.hold(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec());
        let b = held.hold(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec());
        let c = held.hold(b"-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n".to_vec());
        assert!(std::sync::Arc::ptr_eq(&a, &b), "the same bytes read twice are one copy");
        assert!(!std::sync::Arc::ptr_eq(&a, &c) && *a != *c);
        assert_eq!(&*c, b"-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n");
    }
}
