//! Owns: reading a kubeconfig's certificate fields, embedded (`*-data`) and referenced (paths).
//! Must not: decode `client-key-data` (it is never deserialized) or read referenced files.

use base64::Engine;
use serde::Deserialize;

use super::cert::{PemContent, PkiError, parse_pem};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddedKind {
    Cluster,
    User,
}

impl EmbeddedKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EmbeddedKind::Cluster => "cluster",
            EmbeddedKind::User => "user",
        }
    }
}

/// A certificate field of a kubeconfig entry, e.g. `users[kubernetes-admin].client-certificate-data`.
#[derive(Debug, Clone)]
pub struct Field {
    pub kind: EmbeddedKind,
    /// The cluster or user name the field belongs to.
    pub owner: String,
    /// The kubeconfig key, e.g. `certificate-authority-data`.
    pub key: &'static str,
}

impl Field {
    /// How the field is named in reports: `clusters[NAME].KEY` or `users[NAME].KEY`.
    pub fn display(&self) -> String {
        let list = match self.kind {
            EmbeddedKind::Cluster => "clusters",
            EmbeddedKind::User => "users",
        };
        format!("{list}[{}].{}", self.owner, self.key)
    }
}

#[derive(Debug, Clone)]
pub struct Embedded {
    pub field: Field,
    pub content: Result<PemContent, PkiError>,
}

#[derive(Debug, Clone)]
pub struct Reference {
    pub field: Field,
    /// The path as written in the kubeconfig (relative paths are relative to the kubeconfig).
    pub path: String,
}

#[derive(Debug, Clone, Default)]
pub struct Kubeconfig {
    pub embedded: Vec<Embedded>,
    pub references: Vec<Reference>,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    clusters: Option<Vec<RawNamed<RawCluster>>>,
    #[serde(default)]
    users: Option<Vec<RawNamed<RawUser>>>,
}

#[derive(Deserialize)]
struct RawNamed<T> {
    name: Option<String>,
    #[serde(alias = "user")]
    cluster: Option<T>,
}

#[derive(Deserialize)]
struct RawCluster {
    #[serde(rename = "certificate-authority-data", default)]
    ca_data: Option<String>,
    #[serde(rename = "certificate-authority", default)]
    ca_path: Option<String>,
}

// `client-key-data` is deliberately absent: key material is never deserialized.
#[derive(Deserialize)]
struct RawUser {
    #[serde(rename = "client-certificate-data", default)]
    cert_data: Option<String>,
    #[serde(rename = "client-certificate", default)]
    cert_path: Option<String>,
    #[serde(rename = "client-key", default)]
    key_path: Option<String>,
}

/// True when the text has the shape of a kubeconfig (so scanned YAML files can be told apart).
pub fn looks_like_kubeconfig(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let has = |key: &str| text.lines().any(|l| l.starts_with(key));
    (has("clusters:") || has("users:")) && (has("apiVersion:") || has("kind: Config") || has("contexts:"))
}

pub fn parse_kubeconfig(bytes: &[u8]) -> Result<Kubeconfig, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let raw: Raw = serde_saphyr::from_str(text).map_err(|e| one_line(&e.to_string()))?;
    let mut out = Kubeconfig::default();
    for (i, c) in raw.clusters.unwrap_or_default().into_iter().enumerate() {
        let owner = c.name.unwrap_or_else(|| i.to_string());
        let Some(cluster) = c.cluster else { continue };
        let field = |key| Field { kind: EmbeddedKind::Cluster, owner: owner.clone(), key };
        if let Some(data) = cluster.ca_data {
            out.embedded.push(Embedded { field: field("certificate-authority-data"), content: decode(&data) });
        }
        if let Some(path) = cluster.ca_path {
            out.references.push(Reference { field: field("certificate-authority"), path });
        }
    }
    for (i, u) in raw.users.unwrap_or_default().into_iter().enumerate() {
        let owner = u.name.unwrap_or_else(|| i.to_string());
        let Some(user) = u.cluster else { continue };
        let field = |key| Field { kind: EmbeddedKind::User, owner: owner.clone(), key };
        if let Some(data) = user.cert_data {
            out.embedded.push(Embedded { field: field("client-certificate-data"), content: decode(&data) });
        }
        if let Some(path) = user.cert_path {
            out.references.push(Reference { field: field("client-certificate"), path });
        }
        if let Some(path) = user.key_path {
            out.references.push(Reference { field: field("client-key"), path });
        }
    }
    Ok(out)
}

fn decode(data: &str) -> Result<PemContent, PkiError> {
    let compact: String = data.split_whitespace().collect();
    let pem = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| PkiError::CorruptPem(format!("bad base64 in kubeconfig data: {e}")))?;
    parse_pem(&pem)
}

/// A referenced path as the client reads it: relative paths are relative to the kubeconfig's directory.
pub fn resolve_reference(kubeconfig_path: &str, reference: &str) -> String {
    if reference.starts_with('/') {
        return reference.to_string();
    }
    let dir = kubeconfig_path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    let dir = if dir.is_empty() { "/" } else { dir };
    normalize(&format!("{dir}/{reference}"))
}

/// Lexical `.`/`..` removal, as Go's filepath.Clean does for kubeconfig paths.
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

fn one_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KC: &str = "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: Zm9v\n    server: https://x:6443\n  name: k\nusers:\n- name: admin\n  user:\n    client-certificate: ../pki/a.crt\n    client-key-data: c2VjcmV0\n";

    #[test]
    fn finds_embedded_and_referenced_fields() {
        let kc = parse_kubeconfig(KC.as_bytes()).unwrap();
        assert_eq!(kc.embedded.len(), 1);
        assert_eq!(kc.embedded[0].field.display(), "clusters[k].certificate-authority-data");
        // "foo" is not PEM: reported, not panicked on.
        assert_eq!(kc.embedded[0].content.as_ref().unwrap_err(), &PkiError::NotPem);
        assert_eq!(kc.references.len(), 1);
        assert_eq!(kc.references[0].field.display(), "users[admin].client-certificate");
        assert!(looks_like_kubeconfig(KC.as_bytes()));
    }

    #[test]
    fn relative_references_resolve_against_the_kubeconfig_directory() {
        assert_eq!(resolve_reference("/etc/kubernetes/admin.conf", "../pki/a.crt"), "/etc/pki/a.crt");
        assert_eq!(resolve_reference("/etc/k/admin.conf", "/var/x.pem"), "/var/x.pem");
        assert_eq!(resolve_reference("/etc/k/admin.conf", "x.pem"), "/etc/k/x.pem");
    }

    #[test]
    fn users_without_certificates_are_fine() {
        let kc = parse_kubeconfig(b"apiVersion: v1\nusers:\n- name: u\n  user:\n    username: admin\n    password: p\n").unwrap();
        assert!(kc.embedded.is_empty() && kc.references.is_empty());
    }
}
