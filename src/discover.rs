//! Owns: finding a node's PKI from the files its components actually read: manifest flags,
//! the kubelet config, kubeconfigs (embedded and referenced), the playbook's defaults and
//! scanned directories. Orchestration is async over a Transport; parsing is pure.
//! Must not: read private keys (their existence is checked, their bytes are never fetched
//! unless they share a file with a certificate), or report; callers decide what to show.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::pki::kubeconfig::{self, EmbeddedKind};
use crate::pki::{CertInfo, PkiError, parse_pem};
use crate::playbook::{Component, FileKind, Playbook};
use crate::transport::{FileData, NodeResult, Transport};

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
    pub path: Option<String>,
    pub error: String,
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
struct Want {
    kind: Option<FileKind>,
    name: Option<String>,
    /// Why we look: `--tls-cert-file in /etc/kubernetes/manifests/kube-apiserver.yaml`.
    origin: Option<String>,
    /// A missing file is an error only when something names it.
    required: bool,
}

/// The embedded playbook whose `detect` paths exist on the node, if any.
pub async fn detect(t: &dyn Transport, playbooks: &[Playbook]) -> NodeResult<Option<String>> {
    let paths: Vec<String> = playbooks.iter().flat_map(|p| p.detect.iter().cloned()).collect();
    let found = t.exists(&paths).await?;
    let mut i = 0;
    for p in playbooks {
        let n = p.detect.len();
        if found[i..i + n].iter().any(|b| *b) {
            return Ok(Some(p.name.clone()));
        }
        i += n;
    }
    Ok(None)
}

fn is_key_name(path: &str) -> bool {
    path.ends_with(".key") || path.ends_with("-key.pem")
}

pub async fn discover(t: &dyn Transport, playbook: Option<&Playbook>, extra_paths: &[String]) -> NodeResult<NodePki> {
    let mut wants: BTreeMap<String, Want> = BTreeMap::new();
    let add = |wants: &mut BTreeMap<String, Want>, path: String, want: Want| {
        let e = wants.entry(path).or_insert(Want { kind: None, name: None, origin: None, required: false });
        e.kind = e.kind.or(want.kind);
        e.name = e.name.clone().or(want.name);
        e.origin = e.origin.clone().or(want.origin);
        e.required |= want.required;
    };

    // Round 1: the components' own config, every default path, and the scanned directories.
    let sources: Vec<String> = playbook.map(|p| p.components.iter().filter_map(|c| c.source().map(str::to_string)).collect()).unwrap_or_default();
    let mut scan: Vec<String> = playbook.map(|p| p.scan.clone()).unwrap_or_default();
    scan.extend(extra_paths.iter().cloned());
    let (source_data, listed) = tokio::join!(t.read_files(&sources), t.list_files(&scan));
    let source_data = source_data?;
    let listed = listed?;
    let source_text: BTreeMap<String, Vec<u8>> = sources
        .iter()
        .zip(source_data)
        .filter_map(|(p, d)| match d {
            FileData::Found(b) => Some((p.clone(), b)),
            _ => None,
        })
        .collect();

    let mut pki = NodePki::default();
    if let Some(pb) = playbook {
        for f in &pb.files {
            add(&mut wants, f.path.clone(), Want { kind: Some(f.kind), name: Some(f.name.clone()), origin: None, required: false });
        }
        for c in &pb.components {
            let Some(src) = c.source() else { continue };
            let Some(bytes) = source_text.get(src) else { continue };
            let keys = match component_keys(c, bytes) {
                Ok(k) => k,
                Err(e) => {
                    pki.errors.push(FoundError { path: Some(src.to_string()), error: format!("cannot parse {}: {e}", c.name) });
                    continue;
                }
            };
            pki.files.insert(src.to_string());
            for (path, r, required) in resolve_refs(pb, c, src, &keys) {
                let file = pb.file(&r.file).expect("playbook validated");
                pki.refs.entry((c.name.clone(), r.key.clone())).or_insert_with(|| path.clone());
                pki.named.entry(file.name.clone()).or_insert_with(|| path.clone());
                add(&mut wants, path, Want {
                    kind: Some(r.kind.unwrap_or(file.kind)),
                    name: Some(file.name.clone()),
                    origin: Some(format!("{} in {src}", r.key)),
                    required,
                });
            }
            pki.endpoints.extend(endpoint_targets(pb, c, src, &keys));
            pki.components.insert(c.name.clone(), keys);
        }
    }
    for path in listed {
        add(&mut wants, path, Want { kind: None, name: None, origin: None, required: false });
    }

    // Round 2: every file that may hold certificates; keys only need to exist.
    let (to_read, key_paths): (Vec<String>, Vec<String>) = {
        let mut read = Vec::new();
        let mut keys = Vec::new();
        for (p, w) in &wants {
            match w.kind {
                Some(k) if k.holds_certs() => read.push(p.clone()),
                Some(_) => keys.push(p.clone()),
                None if is_key_name(p) => keys.push(p.clone()),
                None => read.push(p.clone()),
            }
        }
        (read, keys)
    };
    let (data, present) = tokio::join!(t.read_files(&to_read), t.exists(&key_paths));
    let data = data?;
    for (p, ok) in key_paths.iter().zip(present?) {
        let w = &wants[p];
        if ok {
            pki.files.insert(p.clone());
        } else if w.required {
            pki.errors.push(missing(p, w));
        }
    }

    let mut kubeconfig_refs: Vec<(String, Want)> = Vec::new();
    for (path, d) in to_read.iter().zip(data) {
        let w = &wants[path];
        match d {
            FileData::Found(bytes) => {
                let refs = classify(path, &bytes, w, &mut pki);
                kubeconfig_refs.extend(refs);
            }
            FileData::Missing if w.required => pki.errors.push(missing(path, w)),
            FileData::Missing => {}
            FileData::NotAFile if w.required => pki.errors.push(FoundError { path: Some(path.clone()), error: "not a regular file".into() }),
            FileData::NotAFile => {}
            FileData::Unreadable(e) => pki.errors.push(FoundError { path: Some(path.clone()), error: format!("unreadable: {e}") }),
            FileData::TooLarge(n) if w.kind.is_some() => {
                pki.errors.push(FoundError { path: Some(path.clone()), error: format!("{n} bytes: too large to be a certificate or kubeconfig") })
            }
            FileData::TooLarge(_) => {}
        }
    }

    // Round 3: files that kubeconfigs point at and that were not read yet.
    let mut extra_read: Vec<(String, Want)> = Vec::new();
    let mut extra_keys: Vec<(String, Want)> = Vec::new();
    let mut seen: BTreeSet<String> = to_read.iter().cloned().collect();
    for (p, w) in kubeconfig_refs {
        if w.kind == Some(FileKind::Key) {
            if !pki.files.contains(&p) && seen.insert(p.clone()) {
                extra_keys.push((p, w));
            }
        } else if seen.insert(p.clone()) {
            extra_read.push((p, w));
        }
    }
    let read_paths: Vec<String> = extra_read.iter().map(|(p, _)| p.clone()).collect();
    let key_paths: Vec<String> = extra_keys.iter().map(|(p, _)| p.clone()).collect();
    let (data, present) = tokio::join!(t.read_files(&read_paths), t.exists(&key_paths));
    for ((p, w), d) in extra_read.iter().zip(data?) {
        match d {
            FileData::Found(bytes) => {
                classify(p, &bytes, w, &mut pki);
            }
            FileData::Unreadable(e) => pki.errors.push(FoundError { path: Some(p.clone()), error: format!("unreadable: {e}") }),
            _ => pki.errors.push(missing(p, w)),
        }
    }
    for ((p, w), ok) in extra_keys.iter().zip(present?) {
        if ok {
            pki.files.insert(p.clone());
        } else {
            pki.errors.push(missing(p, w));
        }
    }
    if let Some(pb) = playbook {
        for f in &pb.files {
            if !pki.named.contains_key(&f.name) && pki.files.contains(&f.path) {
                pki.named.insert(f.name.clone(), f.path.clone());
            }
        }
    }
    Ok(pki)
}

fn missing(path: &str, w: &Want) -> FoundError {
    let why = w.origin.as_deref().map(|o| format!(" (named by {o})")).unwrap_or_default();
    FoundError { path: Some(path.to_string()), error: format!("missing{why}") }
}

/// Reads one file's certificates into `pki`; returns the files a kubeconfig points at.
fn classify(path: &str, bytes: &[u8], want: &Want, pki: &mut NodePki) -> Vec<(String, Want)> {
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
                pki.errors.push(FoundError { path: Some(path.to_string()), error: no_cert_message(want, &content.other_labels) });
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
            pki.errors.push(FoundError { path: Some(path.to_string()), error: format!("{e}{origin}") });
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
            pki.errors.push(FoundError { path: Some(path.to_string()), error: format!("not a readable kubeconfig: {e}") });
            return Vec::new();
        }
    };
    pki.files.insert(path.to_string());
    for e in kc.embedded {
        match e.content {
            Ok(content) if content.certs.is_empty() => pki.errors.push(FoundError {
                path: Some(path.to_string()),
                error: format!("{}: no certificate in the data", e.field.display()),
            }),
            Ok(content) => push_certs(pki, path, Source::Kubeconfig, Some(&e.field), base, content.certs),
            Err(err) => pki.errors.push(FoundError { path: Some(path.to_string()), error: format!("{}: {err}", e.field.display()) }),
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
fn component_keys(c: &Component, bytes: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    if c.manifest.is_some() { manifest_flags(text) } else { config_fields(text, c) }
}

#[derive(Deserialize)]
struct Pod {
    #[serde(default)]
    spec: Option<PodSpec>,
}
#[derive(Deserialize)]
struct PodSpec {
    #[serde(default)]
    containers: Vec<Container>,
}
#[derive(Deserialize)]
struct Container {
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    args: Vec<String>,
}

/// `--flag=value` and `--flag value` from every container's command and args; first wins.
pub fn manifest_flags(text: &str) -> Result<BTreeMap<String, String>, String> {
    let pod: Pod = serde_saphyr::from_str(text).map_err(|e| e.to_string().lines().next().unwrap_or("").to_string())?;
    let mut flags = BTreeMap::new();
    for c in pod.spec.map(|s| s.containers).unwrap_or_default() {
        let items: Vec<&String> = c.command.iter().chain(c.args.iter()).collect();
        let mut i = 0;
        while i < items.len() {
            let item = items[i].as_str();
            if let Some(flag) = item.strip_prefix("--") {
                match flag.split_once('=') {
                    Some((k, v)) => {
                        flags.entry(format!("--{k}")).or_insert_with(|| v.to_string());
                    }
                    None if i + 1 < items.len() && !items[i + 1].starts_with('-') => {
                        flags.entry(item.to_string()).or_insert_with(|| items[i + 1].clone());
                        i += 1;
                    }
                    None => {
                        flags.entry(item.to_string()).or_insert_with(|| "true".into());
                    }
                }
            }
            i += 1;
        }
    }
    Ok(flags)
}

/// Dotted fields of a YAML config (the kubelet's), as strings. Relative paths in a kubelet
/// config are relative to the config's directory, as the kubelet resolves them.
fn config_fields(text: &str, c: &Component) -> Result<BTreeMap<String, String>, String> {
    let value: serde_json::Value = serde_saphyr::from_str(text).map_err(|e| e.to_string().lines().next().unwrap_or("").to_string())?;
    let dir = c.config.as_deref().and_then(|p| p.rsplit_once('/')).map(|(d, _)| d.to_string()).unwrap_or_default();
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
fn resolve_refs<'a>(pb: &'a Playbook, c: &'a Component, _src: &str, keys: &BTreeMap<String, String>) -> Vec<(String, &'a crate::playbook::FileRef, bool)> {
    c.refs
        .iter()
        .filter_map(|r| match keys.get(&r.key) {
            Some(v) => Some((v.clone(), r, true)),
            None if r.default_when_unset => pb.file(&r.file).map(|f| (f.path.clone(), r, false)),
            None => None,
        })
        .collect()
}

fn endpoint_targets(pb: &Playbook, c: &Component, _src: &str, keys: &BTreeMap<String, String>) -> Vec<EndpointTarget> {
    c.endpoints
        .iter()
        .map(|e| {
            let port = e.port_key.as_ref().and_then(|k| keys.get(k)).and_then(|v| v.parse().ok()).unwrap_or(e.port);
            let host = e
                .listen_key
                .as_ref()
                .and_then(|k| keys.get(k))
                .and_then(|urls| urls.split(',').next().map(url_host))
                .filter(|h| !h.is_empty() && h != "0.0.0.0" && h != "::")
                .unwrap_or_else(|| "127.0.0.1".to_string());
            let r = c.refs.iter().find(|r| r.key == e.serves).expect("playbook validated");
            let file = keys.get(&e.serves).cloned().or_else(|| r.default_when_unset.then(|| pb.file(&r.file).map(|f| f.path.clone())).flatten());
            EndpointTarget { component: c.name.clone(), name: r.file.clone(), host, port, file }
        })
        .collect()
}

/// The host of `https://10.0.0.1:2379` (brackets of IPv6 literals removed).
fn url_host(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let hostport = rest.split('/').next().unwrap_or("");
    if let Some(v6) = hostport.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("").to_string();
    }
    hostport.rsplit_once(':').map(|(h, _)| h).unwrap_or(hostport).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playbook;

    const APISERVER: &str = "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - command:\n    - kube-apiserver\n    - --tls-cert-file=/x/apiserver.crt\n    - --secure-port=8443\n    - --client-ca-file\n    - /x/ca.crt\n    - --allow-privileged=true\n    name: kube-apiserver\n";

    #[test]
    fn flags_come_from_both_spellings() {
        let f = manifest_flags(APISERVER).unwrap();
        assert_eq!(f["--tls-cert-file"], "/x/apiserver.crt");
        assert_eq!(f["--client-ca-file"], "/x/ca.crt");
        assert_eq!(f["--secure-port"], "8443");
    }

    #[test]
    fn manifest_flags_override_defaults_and_set_the_endpoint() {
        let pb = playbook::load("kubeadm").unwrap();
        let c = pb.component("kube-apiserver").unwrap();
        let keys = component_keys(c, APISERVER.as_bytes()).unwrap();
        let refs = resolve_refs(&pb, c, "m", &keys);
        assert!(refs.iter().any(|(p, r, req)| p == "/x/apiserver.crt" && r.file == "apiserver" && *req));
        let eps = endpoint_targets(&pb, c, "m", &keys);
        assert_eq!(eps, vec![EndpointTarget { component: "kube-apiserver".into(), name: "apiserver".into(), host: "127.0.0.1".into(), port: 8443, file: Some("/x/apiserver.crt".into()) }]);
    }

    #[test]
    fn kubelet_serving_cert_defaults_when_unset() {
        let pb = playbook::load("kubeadm").unwrap();
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
        let pb = playbook::load("kubeadm").unwrap();
        let c = pb.component("etcd").unwrap();
        let m = "spec:\n  containers:\n  - command: [etcd, '--listen-client-urls=https://127.0.0.1:2379,https://10.0.0.5:2379', '--listen-peer-urls=https://10.0.0.5:2380', '--peer-cert-file=/p.crt', '--cert-file=/s.crt']\n";
        let keys = component_keys(c, m.as_bytes()).unwrap();
        let eps = endpoint_targets(&pb, c, "m", &keys);
        assert_eq!((eps[0].host.as_str(), eps[0].port, eps[0].file.as_deref()), ("127.0.0.1", 2379, Some("/s.crt")));
        assert_eq!((eps[1].host.as_str(), eps[1].port, eps[1].file.as_deref()), ("10.0.0.5", 2380, Some("/p.crt")));
    }

    #[test]
    fn url_hosts_parse() {
        assert_eq!(url_host("https://10.0.0.1:2379"), "10.0.0.1");
        assert_eq!(url_host("https://[::1]:2379"), "::1");
        assert_eq!(url_host("unix://local"), "local");
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
