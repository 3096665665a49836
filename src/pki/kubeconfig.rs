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
    /// The base64 text as it stands in the file (for replacing it in place).
    pub raw: String,
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

/// True when the text has the shape of a kubeconfig (so scanned YAML files can be told apart);
/// PEM text never is one.
pub fn looks_like_kubeconfig(bytes: &[u8]) -> bool {
    // Byte searches: the planner asks this of every file it changes.
    if memchr::memmem::find(bytes, b"-----BEGIN").is_some() {
        return false;
    }
    // A line that starts with `key`: at the start, or right after a newline.
    let has = |key: &str| memchr::memmem::find_iter(bytes, key.as_bytes()).any(|i| i == 0 || bytes[i - 1] == b'\n');
    (has("clusters:") || has("users:")) && (has("apiVersion:") || has("kind: Config") || has("contexts:"))
}

/// Kubeconfigs parsed so far (the planner reads each many times; up to 4 MiB of texts).
static PARSED: super::memo::Memo<Result<Kubeconfig, String>> = super::memo::Memo::new(4 << 20);

/// A kubeconfig's clusters and users: embedded data parsed, file references resolved later.
pub fn parse_kubeconfig(bytes: &[u8]) -> Result<Kubeconfig, String> {
    PARSED.get_or(bytes, || parse_uncached(bytes))
}

/// The same, shared with every other caller that parsed these bytes (nothing copied).
pub fn parsed_kubeconfig(bytes: &[u8]) -> std::sync::Arc<Result<Kubeconfig, String>> {
    PARSED.shared(bytes, || parse_uncached(bytes))
}

fn parse_uncached(bytes: &[u8]) -> Result<Kubeconfig, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let raw: Raw = super::yaml::from_str(text).map_err(|e| one_line(&e.to_string()))?;
    let mut out = Kubeconfig::default();
    for (i, c) in raw.clusters.unwrap_or_default().into_iter().enumerate() {
        let owner = c.name.unwrap_or_else(|| i.to_string());
        let Some(cluster) = c.cluster else { continue };
        let field = |key| Field { kind: EmbeddedKind::Cluster, owner: owner.clone(), key };
        if let Some(data) = cluster.ca_data {
            out.embedded.push(Embedded { field: field("certificate-authority-data"), content: decode(&data), raw: data });
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
            out.embedded.push(Embedded { field: field("client-certificate-data"), content: decode(&data), raw: data });
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

/// The kubeconfig with one `*-data` value replaced by the base64 of `pem`, every other byte
/// as it was. The old value must occur exactly once in the file.
pub fn replace_data(bytes: &[u8], old_raw: &str, pem: &[u8]) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let old = old_raw.trim();
    // Every place the value stands must be a whole `*-data: VALUE` line: then all of them are
    // the same field's value in entries that share it (two clusters with one CA), and all change.
    let whole = |at: usize| {
        let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        let before = text[line_start..at].trim();
        let after = text[at + old.len()..].split('\n').next().unwrap_or("").trim();
        before.ends_with("-data:") && before.split(':').count() == 2 && after.is_empty()
    };
    let not_plain = || "the embedded value is not a plain `*-data: VALUE` YAML line; kcert will not rewrite it".to_string();
    if old.is_empty() {
        return Err(not_plain());
    }
    // One byte search (memchr's) for a value of a kilobyte or more, in every kubeconfig a plan edits.
    let places: Vec<usize> = memchr::memmem::find_iter(bytes, old.as_bytes()).collect();
    if places.is_empty() || !places.iter().all(|&i| whole(i)) {
        return Err(not_plain());
    }
    let new = base64::engine::general_purpose::STANDARD.encode(pem);
    let mut out = Vec::with_capacity(bytes.len() + places.len() * new.len());
    let mut last = 0;
    for &i in &places {
        out.extend_from_slice(&bytes[last..i]);
        out.extend_from_slice(new.as_bytes());
        last = i + old.len();
    }
    out.extend_from_slice(&bytes[last..]);
    Ok(out)
}

/// Where a kubeconfig's TLS material is: embedded bytes, or a path (relative to the kubeconfig).
#[derive(Clone)]
pub enum Material {
    Data(Vec<u8>),
    Path(String),
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Material::Data(d) => write!(f, "Data({} bytes)", d.len()),
            Material::Path(p) => write!(f, "Path({p})"),
        }
    }
}

/// What a client needs to connect as a kubeconfig's current user. Holds key material: used
/// for handshakes only; its Debug never shows bytes.
#[derive(Debug, Clone)]
pub struct Identity {
    pub server: String,
    pub ca: Option<Material>,
    pub cert: Option<Material>,
    pub key: Option<Material>,
}

/// Which credential of a kubeconfig's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Part {
    Ca,
    Cert,
    Key,
}

impl Identity {
    pub fn part(&self, which: Part) -> Option<&Material> {
        match which {
            Part::Ca => self.ca.as_ref(),
            Part::Cert => self.cert.as_ref(),
            Part::Key => self.key.as_ref(),
        }
    }

    /// The files the identity names, as absolute paths (relative to the kubeconfig at `kc_path`).
    pub fn referenced(&self, kc_path: &str) -> Vec<String> {
        [&self.ca, &self.cert, &self.key]
            .into_iter()
            .flatten()
            .filter_map(|m| match m {
                Material::Path(rel) => Some(resolve_reference(kc_path, rel)),
                Material::Data(_) => None,
            })
            .collect()
    }

    /// The bytes of one credential: embedded, or from `files` (what was read, by absolute path).
    /// None: the identity has no such credential; an error names a referenced file not read.
    pub fn load(&self, which: Part, kc_path: &str, files: &std::collections::BTreeMap<String, impl AsRef<[u8]>>) -> Result<Option<Vec<u8>>, String> {
        match self.part(which) {
            None => Ok(None),
            Some(Material::Data(d)) => Ok(Some(d.clone())),
            Some(Material::Path(rel)) => {
                let abs = resolve_reference(kc_path, rel);
                files.get(&abs).map(|b| Some(b.as_ref().to_vec())).ok_or_else(|| format!("{abs} (named by {kc_path}): missing"))
            }
        }
    }
}

#[derive(Deserialize)]
struct IdRaw {
    #[serde(default, rename = "current-context")]
    current: Option<String>,
    // `null` lists are what kubectl itself writes for an empty kubeconfig: read as empty.
    #[serde(default)]
    contexts: Option<Vec<IdNamed<IdContext>>>,
    #[serde(default)]
    clusters: Option<Vec<IdNamed<IdCluster>>>,
    #[serde(default)]
    users: Option<Vec<IdNamed<IdUser>>>,
}
#[derive(Deserialize)]
struct IdNamed<T> {
    #[serde(default)]
    name: Option<String>,
    #[serde(alias = "user", alias = "context")]
    cluster: Option<T>,
}
#[derive(Deserialize)]
struct IdContext {
    cluster: Option<String>,
    user: Option<String>,
}
#[derive(Deserialize)]
struct IdCluster {
    #[serde(default)]
    server: Option<String>,
    #[serde(rename = "certificate-authority-data", default)]
    ca_data: Option<String>,
    #[serde(rename = "certificate-authority", default)]
    ca_path: Option<String>,
}
#[derive(Deserialize)]
struct IdUser {
    #[serde(rename = "client-certificate-data", default)]
    cert_data: Option<String>,
    #[serde(rename = "client-certificate", default)]
    cert_path: Option<String>,
    #[serde(rename = "client-key-data", default)]
    key_data: Option<String>,
    #[serde(rename = "client-key", default)]
    key_path: Option<String>,
}

/// The current context's server, CA and client credentials (the first of each when there is
/// no current context). Only for making handshakes; nothing here is ever printed.
pub fn identity(bytes: &[u8]) -> Result<Identity, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let raw: IdRaw = super::yaml::from_str(text).map_err(|e| one_line(&e.to_string()))?;
    let (contexts, clusters, users) = (raw.contexts.unwrap_or_default(), raw.clusters.unwrap_or_default(), raw.users.unwrap_or_default());
    let ctx = raw.current.as_ref().and_then(|c| contexts.iter().find(|x| x.name.as_ref() == Some(c))).and_then(|x| x.cluster.as_ref());
    let pick = |want: Option<&String>, n: usize, names: Vec<Option<&String>>| want.and_then(|w| names.iter().position(|x| *x == Some(w))).or((n > 0).then_some(0));
    let ci = pick(ctx.and_then(|c| c.cluster.as_ref()), clusters.len(), clusters.iter().map(|c| c.name.as_ref()).collect());
    let ui = pick(ctx.and_then(|c| c.user.as_ref()), users.len(), users.iter().map(|c| c.name.as_ref()).collect());
    let cluster = ci.and_then(|i| clusters[i].cluster.as_ref()).ok_or("no cluster entry")?;
    let user = ui.and_then(|i| users[i].cluster.as_ref());
    Ok(Identity {
        server: cluster.server.clone().ok_or("the cluster entry has no server")?,
        ca: material(&cluster.ca_data, &cluster.ca_path)?,
        cert: match user {
            Some(u) => material(&u.cert_data, &u.cert_path)?,
            None => None,
        },
        key: match user {
            Some(u) => material(&u.key_data, &u.key_path)?,
            None => None,
        },
    })
}

fn material(d: &Option<String>, p: &Option<String>) -> Result<Option<Material>, String> {
    if let Some(d) = d {
        let compact: String = d.split_whitespace().collect();
        return base64::engine::general_purpose::STANDARD.decode(compact).map(|b| Some(Material::Data(b))).map_err(|_| "bad base64 data".to_string());
    }
    Ok(p.clone().map(Material::Path))
}

/// Public identities worked out so far (without their keys; up to 4 MiB of texts).
static PUBLIC: super::memo::Memo<Result<Identity, String>> = super::memo::Memo::new(4 << 20);

/// `identity` without the client key (`key` is None; an unreadable key is still an error):
/// the server, CA and client certificate, which the trust model and the plans' checks read
/// for every node's kubeconfigs (most workers' are one text), remembered by text.
pub fn public_identity(bytes: &[u8]) -> Result<Identity, String> {
    PUBLIC.get_or(bytes, || identity(bytes).map(|id| Identity { key: None, ..id }))
}

/// The client key of the user named `user` (its own, whatever the current context says).
pub fn user_key(bytes: &[u8], user: &str) -> Result<Option<Material>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let raw: IdRaw = super::yaml::from_str(text).map_err(|e| one_line(&e.to_string()))?;
    let users = raw.users.unwrap_or_default();
    // Unnamed entries are named by their index, as `parse_kubeconfig` names their fields.
    let entry = users.iter().enumerate().find(|(i, u)| u.name.clone().unwrap_or_else(|| i.to_string()) == user).and_then(|(_, u)| u.cluster.as_ref());
    match entry {
        Some(u) => material(&u.key_data, &u.key_path).map_err(|e| format!("users[{user}].client-key-data: {e}")),
        None => Ok(None),
    }
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
    fn a_kubeconfig_is_told_by_keys_that_start_a_line_and_never_holds_pem() {
        assert!(looks_like_kubeconfig(b"apiVersion: v1\r\nclusters:\r\n- name: k\r\n"));
        assert!(looks_like_kubeconfig(b"# made by hand\nusers:\n- name: u\nkind: Config\n"));
        // Keys inside a line, or only one of the two kinds, are not enough.
        assert!(!looks_like_kubeconfig(b"spec:\n  clusters: 3\n  apiVersion: v1\n"));
        assert!(!looks_like_kubeconfig(b"clusters:\n- name: k\n"));
        assert!(!looks_like_kubeconfig(b"apiVersion: v1\nclusters:\n-----BEGIN CERTIFICATE-----\n"));
        // Bytes that are not UTF-8 do not hide the keys.
        assert!(looks_like_kubeconfig(b"\xff\xfe\napiVersion: v1\nusers: []\n"));
    }

    #[test]
    fn relative_references_resolve_against_the_kubeconfig_directory() {
        assert_eq!(resolve_reference("/etc/kubernetes/admin.conf", "../pki/a.crt"), "/etc/pki/a.crt");
        assert_eq!(resolve_reference("/etc/k/admin.conf", "/var/x.pem"), "/var/x.pem");
        assert_eq!(resolve_reference("/etc/k/admin.conf", "x.pem"), "/etc/k/x.pem");
    }

    #[test]
    fn replacing_data_changes_only_that_value() {
        let kc = KC.replace("client-certificate: ../pki/a.crt", "client-certificate-data: b2xk");
        let out = replace_data(kc.as_bytes(), "b2xk", b"new").unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), kc.replace("b2xk", "bmV3"));
        assert!(replace_data(kc.as_bytes(), "Zm9v Zm9v", b"x").is_err());
        assert!(replace_data(kc.as_bytes(), " ", b"x").is_err(), "no value: nothing to find, not a match everywhere");
    }

    #[test]
    fn identity_follows_the_current_context() {
        let id = identity(KC.as_bytes()).unwrap();
        assert_eq!(id.server, "https://x:6443");
        assert!(matches!(id.key, Some(Material::Data(ref d)) if d == b"secret"));
        assert!(matches!(id.cert, Some(Material::Path(ref p)) if p == "../pki/a.crt"));
        assert!(!format!("{id:?}").contains("secret"));
    }

    #[test]
    fn the_public_identity_is_the_identity_without_its_key() {
        let id = public_identity(KC.as_bytes()).unwrap();
        assert_eq!(id.server, "https://x:6443");
        assert!(matches!(id.cert, Some(Material::Path(ref p)) if p == "../pki/a.crt"));
        assert!(id.key.is_none(), "the key is never kept");
        assert!(public_identity(KC.as_bytes()).unwrap().key.is_none(), "nor when remembered");
        // A key that does not decode is still an error, as `identity` says.
        let bad = KC.replace(&base64::engine::general_purpose::STANDARD.encode("secret"), "not*base64");
        assert_eq!(public_identity(bad.as_bytes()).unwrap_err(), identity(bad.as_bytes()).unwrap_err());
    }

    #[test]
    fn null_lists_read_as_empty_as_kubectl_writes_them() {
        let kc = "apiVersion: v1\nkind: Config\ncontexts: null\ncurrent-context: \"\"\nclusters:\n- name: k\n  cluster:\n    server: https://x:6443\nusers: null\n";
        let id = identity(kc.as_bytes()).unwrap();
        assert_eq!(id.server, "https://x:6443");
        assert!(id.cert.is_none() && id.key.is_none());
    }

    #[test]
    fn each_user_has_its_own_key() {
        let kc = "apiVersion: v1\ncurrent-context: a\ncontexts:\n- name: a\n  context: {cluster: k, user: admin}\nclusters:\n- name: k\n  cluster: {server: https://x:6443}\nusers:\n- name: admin\n  user:\n    client-key-data: YWRtaW4=\n- name: other\n  user:\n    client-key: other.key\n";
        assert!(matches!(user_key(kc.as_bytes(), "admin").unwrap(), Some(Material::Data(d)) if d == b"admin"));
        assert!(matches!(user_key(kc.as_bytes(), "other").unwrap(), Some(Material::Path(p)) if p == "other.key"));
        assert!(user_key(kc.as_bytes(), "nobody").unwrap().is_none());
    }

    #[test]
    fn a_value_two_clusters_share_changes_in_both() {
        let kc = "clusters:\n- name: a\n  cluster:\n    certificate-authority-data: b2xk\n- name: b\n  cluster:\n    certificate-authority-data: b2xk\n";
        let out = String::from_utf8(replace_data(kc.as_bytes(), "b2xk", b"new").unwrap()).unwrap();
        assert_eq!(out, kc.replace("b2xk", "bmV3"));
        // A value that also stands elsewhere (here in a comment) is not rewritten blindly.
        assert!(replace_data(format!("{kc}# b2xk\n").as_bytes(), "b2xk", b"new").is_err());
    }

    #[test]
    fn users_without_certificates_are_fine() {
        let kc = parse_kubeconfig(b"apiVersion: v1\nusers:\n- name: u\n  user:\n    username: admin\n    password: p\n").unwrap();
        assert!(kc.embedded.is_empty() && kc.references.is_empty());
    }
}
