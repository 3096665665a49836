//! Owns: the distribution playbooks (embedded YAML), their schema, their validation, and
//! the digest that names exactly which text a plan was made with.
//! Must not: do I/O (a playbook file is read by `reach::inventory`), or touch nodes.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub mod reissue;

const EMBEDDED: &[(&str, &str)] = &[
    // Detected in this order: a binary cluster's marks first, as they exclude kubeadm's.
    ("hardway", include_str!("../../playbooks/hardway.yaml")),
    ("kubeadm", include_str!("../../playbooks/kubeadm.yaml")),
    ("k3s", include_str!("../../playbooks/k3s.yaml")),
    ("rke2", include_str!("../../playbooks/rke2.yaml")),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    Cert,
    Key,
    Trust,
    Kubeconfig,
    Pubkey,
}

impl FileKind {
    /// Files whose bytes kcert reads to report certificates. Keys are only checked to exist;
    /// a public key is read (it may be a certificate: binary clusters' service-account.pem).
    pub fn holds_certs(self) -> bool {
        matches!(self, FileKind::Cert | FileKind::Trust | FileKind::Kubeconfig | FileKind::Pubkey)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The distribution is detected on a node when any of these paths exists...
    pub detect: Vec<String>,
    /// ...and none of these does (another distribution's marks).
    #[serde(default)]
    pub detect_unless: Vec<String>,
    /// Where the PKI lives: free space is measured here.
    pub pki_dir: String,
    /// Directories (or files) whose every certificate and kubeconfig is reported.
    #[serde(default)]
    pub scan: Vec<String>,
    #[serde(default)]
    pub files: Vec<KnownFile>,
    #[serde(default)]
    pub components: Vec<Component>,
    #[serde(default)]
    pub edges: Vec<Edge>,
    #[serde(default)]
    pub pairs: Vec<Pair>,
    /// Who signs service-account tokens with which key, and who verifies them with which:
    /// not TLS, but a CA key that is also one of these keys must keep working (tokens).
    #[serde(default)]
    pub tokens: Option<Tokens>,
    /// How `rotate-ca` rotates this distribution's CAs (absent: it cannot).
    #[serde(default)]
    pub rotation: Option<Rotation>,
    /// How `renew` has the distribution's own tool re-issue its leaves (absent: kcert re-signs them).
    #[serde(default)]
    pub reissue: Option<reissue::Reissue>,
    /// Which text this is: set when parsed, never read from the YAML.
    #[serde(skip)]
    pub source: Origin,
}

/// Where a playbook's text came from and its sha256: plans record it, and a plan whose
/// playbook changed since is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub name: String,
    pub sha256: String,
    /// A playbook given as a file (absent: embedded in kcert).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
}

/// The CA rotation runbook's distribution-specific parts, as data.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    /// `--ca` name -> the `files` entry of that CA's certificate (which names its key).
    pub cas: std::collections::BTreeMap<String, String>,
    /// Directory under `pki_dir` where S1 puts the new CAs (`new/`) and S2 the signing
    /// pair's copy of the old CA (`old/`); removed at the end of S5.
    #[serde(default = "default_staging")]
    pub staging: String,
    /// Leaves signed by no CA of the rotation (self-signed) that S4 moves onto the new CA
    /// of their `signer`, with the node's names added (kubelet serving certs).
    #[serde(default)]
    pub rehome: Vec<String>,
    /// The kubeconfig (a `files` entry) that API steps run `kubectl` with, on a control-plane node.
    #[serde(default)]
    pub kubeconfig: Option<String>,
    /// The `--ca` name whose CAs the API objects carry (kube-root-ca.crt, token secrets).
    #[serde(default = "default_api_ca")]
    pub api_ca: String,
    /// Steps against the cluster's API: `when: trust` runs in S3 (after every file trusts old
    /// and new), `when: prune` at the end of S5. Scripts get {kubeconfig}, {ca_b64} (base64 of
    /// the CA bundle of that moment), {new_marker} and {old_marker} (a line of each CA's PEM).
    #[serde(default)]
    pub api: Vec<ApiStep>,
    /// The API steps of another embedded playbook, when they are the same objects (a binary
    /// cluster's are kubeadm's); used when `api` is empty.
    #[serde(default)]
    pub api_from: Option<String>,
}

fn default_api_ca() -> String {
    "cluster".into()
}

fn default_staging() -> String {
    "kcert-rotation".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiWhen {
    Trust,
    Prune,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiStep {
    pub name: String,
    pub when: ApiWhen,
    pub script: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownFile {
    pub name: String,
    pub path: String,
    pub kind: FileKind,
    /// For a certificate: the `files` entry of its private key.
    #[serde(default)]
    pub key: Option<String>,
    /// For a leaf (or a kubeconfig's client cert): the `files` entry of the CA that signs it.
    #[serde(default)]
    pub signer: Option<String>,
    /// Part of `renew --certs all` (default true).
    #[serde(default = "yes")]
    pub in_all: bool,
    /// Renewing adds the node's host name and addresses to the SANs.
    #[serde(default)]
    pub node_sans: bool,
    /// A component that reads this file although no ref of it names the file.
    #[serde(default)]
    pub read_by: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    pub name: String,
    /// A static pod manifest whose container command carries the flags in `refs`.
    #[serde(default)]
    pub manifest: Option<String>,
    /// A YAML config file whose fields (dotted paths) are the keys in `refs`.
    #[serde(default)]
    pub config: Option<String>,
    /// A systemd unit (`kube-apiserver` for kube-apiserver.service) whose command line, with
    /// its drop-ins and environment files, carries the flags in `refs`.
    #[serde(default)]
    pub unit: Option<String>,
    /// A file whose presence says the component runs on the node, for components with no
    /// flags kcert can read (k3s's and RKE2's, run inside one process from fixed paths):
    /// each ref is then its file's default path, and its key only names the ref.
    #[serde(default)]
    pub present: Option<String>,
    /// For a unit: the flag naming a YAML config file whose dotted fields are keys too (the
    /// kubelet's `--config`); relative paths in it are relative to its directory.
    #[serde(default)]
    pub config_flag: Option<String>,
    /// For a unit with a config: command-line flags that set a config field (the flag wins,
    /// as the kubelet's does), `--tls-cert-file: tlsCertFile`.
    #[serde(default)]
    pub flag_fields: std::collections::BTreeMap<String, String>,
    /// Keys naming a directory the component keeps certificates in (the kubelet's
    /// `--cert-dir`): scanned like `scan`, and where a ref's `default_in` file is looked for.
    #[serde(default)]
    pub cert_dirs: Vec<String>,
    /// For a unit: etcd's own settings are read too (`ETCD_*` variables where no flag is
    /// set, and `--config-file`, which then replaces every other setting).
    #[serde(default)]
    pub etcd_settings: bool,
    #[serde(default)]
    pub refs: Vec<FileRef>,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// How the component is restarted (used by changing commands; inventories may override).
    #[serde(default)]
    pub restart: Option<String>,
    #[serde(default)]
    pub health: Option<String>,
    /// A boolean config field: when true the component renews its own client cert.
    #[serde(default)]
    pub self_rotates: Option<String>,
    /// More config fields read as facts (manifest flags are all read anyway).
    #[serde(default)]
    pub facts: Vec<String>,
    /// Settings `verify` points out.
    #[serde(default)]
    pub warn: Vec<Warn>,
    /// Flags naming kubeconfigs of servers outside the cluster (webhooks): a CA their client
    /// certificate is signed by is trusted by a party kcert cannot reach.
    #[serde(default)]
    pub external: Vec<External>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct External {
    /// The flag (or config field) whose value is the kubeconfig's path.
    pub key: String,
    /// What is at the other end, for people: `the authentication webhook`.
    pub what: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Warn {
    pub key: String,
    /// `set`: warn when the key is unset; any other value: warn unless the key has it.
    pub unless: String,
    pub message: String,
}

/// One side of a TLS edge: a component's refs (by key), kubeconfigs, or files (by name).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Side {
    #[serde(default)]
    pub component: Option<String>,
    #[serde(default)]
    pub kubeconfigs: Vec<String>,
    #[serde(default)]
    pub cert: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    /// What this side trusts the other side's certificate with.
    #[serde(default)]
    pub trusts: Option<String>,
    /// The port the server side answers on, and a path that answers 200 when healthy.
    #[serde(default)]
    pub endpoint: Option<u16>,
    /// On a client side: its flag listing the servers' URLs (`--etcd-servers`), said when
    /// the servers run outside the inventory.
    #[serde(default)]
    pub urls: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    pub name: String,
    pub client: Side,
    pub server: Side,
}

/// Service-account tokens: every signer's key must be one of every verifier's keys, and the
/// keys that signed the tokens already out must stay among them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tokens {
    /// (component, ref key) of each private key tokens are signed with.
    pub signers: Vec<KeyUse>,
    /// (component, ref key) of each file of public keys tokens are verified with.
    pub verifiers: Vec<KeyUse>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyUse {
    pub component: String,
    pub key: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pair {
    pub component: String,
    pub cert: String,
    pub key: String,
}

impl Component {
    /// The one file the component's flags or fields are read from (none for a unit, whose
    /// files discovery finds: `NodePki::sources`).
    pub fn source(&self) -> Option<&str> {
        self.manifest.as_deref().or(self.config.as_deref())
    }

    /// Where its flags come from, for people: a path, or `the kube-apiserver systemd unit`.
    pub fn origin(&self) -> String {
        match (&self.unit, self.source()) {
            (Some(u), _) => format!("the {u} systemd unit"),
            (None, Some(s)) => s.to_string(),
            (None, None) => self.name.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRef {
    /// A flag (`--tls-cert-file`) in a manifest, or a dotted field path in a config.
    pub key: String,
    /// The `files` entry this reference names (its name and default path).
    pub file: String,
    /// Overrides the file's kind for this reference (a CA cert read as a trust bundle).
    #[serde(default)]
    pub kind: Option<FileKind>,
    /// The component falls back to the file's default path when the key is unset.
    #[serde(default)]
    pub default_when_unset: bool,
    /// With `default_when_unset`: the default is the file's name inside the directory this
    /// key names when it is set (the kubelet's `kubelet.crt` in its `--cert-dir`).
    #[serde(default)]
    pub default_in: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub port: u16,
    /// A flag that overrides the port.
    #[serde(default)]
    pub port_key: Option<String>,
    /// A flag listing the URLs the component listens on; its first host is dialled.
    #[serde(default)]
    pub listen_key: Option<String>,
    /// The ref key whose file this endpoint should serve.
    pub serves: String,
}

impl Playbook {
    pub fn file(&self, name: &str) -> Option<&KnownFile> {
        self.files.iter().find(|f| f.name == name)
    }

    pub fn component(&self, name: &str) -> Option<&Component> {
        self.components.iter().find(|c| c.name == name)
    }

    /// Every component's `present` file.
    pub fn presence_files(&self) -> impl Iterator<Item = &String> {
        self.components.iter().filter_map(|c| c.present.as_ref())
    }

    fn validate(self, origin: &str) -> Result<Self> {
        let bad = |msg: String| Error::input(format!("playbook {origin}"), msg);
        let mut names = BTreeSet::new();
        for f in &self.files {
            if !names.insert(f.name.as_str()) {
                return Err(bad(format!("file {:?} is listed twice", f.name)));
            }
            let home_kubeconfig = f.path.starts_with("~/") && f.kind == FileKind::Kubeconfig;
            if !(f.path.starts_with('/') || home_kubeconfig) {
                return Err(bad(format!("file {:?}: path {:?} is not absolute (~/, the login user's home, is for kubeconfigs)", f.name, f.path)));
            }
        }
        for f in &self.files {
            for (what, other) in [("key", &f.key), ("signer", &f.signer)] {
                if let Some(o) = other
                    && self.file(o).is_none()
                {
                    return Err(bad(format!("file {:?}: {what} names unknown file {o:?}", f.name)));
                }
            }
            if let Some(c) = &f.read_by
                && self.component(c).is_none()
            {
                return Err(bad(format!("file {:?}: read_by names unknown component {c:?}", f.name)));
            }
        }
        for c in &self.components {
            if let Some(p) = &c.present
                && !p.starts_with('/')
            {
                return Err(bad(format!("component {:?}: present {p:?} is not an absolute path", c.name)));
            }
        }
        for e in &self.edges {
            for side in [&e.client, &e.server] {
                match &side.component {
                    Some(c) => {
                        let Some(comp) = self.component(c) else {
                            return Err(bad(format!("edge {:?}: unknown component {c:?}", e.name)));
                        };
                        for k in [&side.cert, &side.key, &side.trusts].into_iter().flatten() {
                            if !comp.refs.iter().any(|r| &r.key == k) {
                                return Err(bad(format!("edge {:?}: component {c:?} has no ref {k:?}", e.name)));
                            }
                        }
                    }
                    None => {
                        for k in side.kubeconfigs.iter().chain([&side.cert, &side.key, &side.trusts].into_iter().flatten()) {
                            if self.file(k).is_none() {
                                return Err(bad(format!("edge {:?}: unknown file {k:?}", e.name)));
                            }
                        }
                    }
                }
            }
        }
        if let Some(r) = &self.rotation {
            for (alias, f) in &r.cas {
                match self.file(f) {
                    Some(file) if file.kind == FileKind::Cert && file.key.is_some() && file.signer.is_none() => {}
                    _ => return Err(bad(format!("rotation.cas.{alias}: {f:?} is not a CA certificate with a key among the files"))),
                }
            }
            if !r.api.is_empty() && !r.cas.contains_key(&r.api_ca) {
                return Err(bad(format!("rotation.api_ca: {:?} is not one of rotation.cas", r.api_ca)));
            }
            for f in &r.rehome {
                if self.file(f).is_none_or(|x| x.signer.is_none()) {
                    return Err(bad(format!("rotation.rehome: {f:?} is not a certificate with a signer among the files")));
                }
            }
            if let Some(k) = &r.kubeconfig
                && !self.file(k).is_some_and(|x| x.kind == FileKind::Kubeconfig)
            {
                return Err(bad(format!("rotation.kubeconfig: {k:?} is not a kubeconfig among the files")));
            }
            if r.staging.is_empty() || r.staging.starts_with('/') || r.staging.contains("..") {
                return Err(bad(format!("rotation.staging: {:?} must be a relative directory under pki_dir", r.staging)));
            }
        }
        if let Some(r) = &self.reissue
            && let Some(p) = r.problems(&|f| self.file(f).is_some(), &|c| self.component(c).is_some()).into_iter().next()
        {
            return Err(bad(p));
        }
        if let Some(t) = &self.tokens {
            for u in t.signers.iter().chain(&t.verifiers) {
                if !self.component(&u.component).is_some_and(|c| c.refs.iter().any(|r| r.key == u.key)) {
                    return Err(bad(format!("tokens: component {:?} has no ref {:?}", u.component, u.key)));
                }
            }
        }
        for c in &self.components {
            if [c.manifest.is_some(), c.config.is_some(), c.unit.is_some(), c.present.is_some()].iter().filter(|x| **x).count() != 1 {
                return Err(bad(format!("component {:?} needs exactly one of manifest, config, unit or present", c.name)));
            }
            if c.unit.is_none() && (c.config_flag.is_some() || !c.flag_fields.is_empty() || c.etcd_settings) {
                return Err(bad(format!("component {:?}: config_flag, flag_fields and etcd_settings are for units", c.name)));
            }
            for r in &c.refs {
                if self.file(&r.file).is_none() {
                    return Err(bad(format!("component {:?}: ref {} names unknown file {:?}", c.name, r.key, r.file)));
                }
                if let Some(d) = &r.default_in
                    && (!r.default_when_unset || !c.cert_dirs.contains(d))
                {
                    return Err(bad(format!("component {:?}: ref {} has default_in {d:?}, which needs default_when_unset and {d:?} among its cert_dirs", c.name, r.key)));
                }
            }
            for e in &c.endpoints {
                if !c.refs.iter().any(|r| r.key == e.serves) {
                    return Err(bad(format!("component {:?}: endpoint {} serves unknown ref {:?}", c.name, e.port, e.serves)));
                }
            }
        }
        Ok(self)
    }
}

pub fn embedded_names() -> impl Iterator<Item = &'static str> {
    EMBEDDED.iter().map(|(n, _)| *n)
}

/// An embedded playbook by name (`kubeadm`).
pub fn builtin(name: &str) -> Option<Playbook> {
    EMBEDDED.iter().find(|(n, _)| *n == name).map(|(n, t)| parse(t, n, None).expect("embedded playbooks are valid"))
}

/// Does this `distribution:` value name a file rather than an embedded playbook?
pub fn names_a_file(name_or_path: &str) -> bool {
    name_or_path.contains('/') || name_or_path.ends_with(".yaml") || name_or_path.ends_with(".yml")
}

/// The error for a name that is neither embedded nor a file.
pub fn unknown(name: &str) -> Error {
    let known: Vec<_> = embedded_names().collect();
    Error::input(format!("distribution {name:?}"), format!("no such playbook; known: {}, or a path to a playbook YAML file", known.join(", ")))
}

pub fn embedded() -> Vec<Playbook> {
    EMBEDDED.iter().map(|(n, t)| parse(t, n, None).expect("embedded playbooks are valid")).collect()
}

/// Parses and validates a playbook's text; `path` is the file it was read from, if any.
pub fn parse(text: &str, origin: &str, path: Option<PathBuf>) -> Result<Playbook> {
    let mut pb: Playbook = crate::pki::yaml::from_str(text).map_err(|e| {
        let (line, column, message) = crate::pki::yaml::said(&e);
        Error::InputAt { file: origin.into(), line, column, message }
    })?;
    pb.source = Origin { name: pb.name.clone(), sha256: crate::pki::sha256(text.as_bytes()), path };
    if let Some(r) = pb.rotation.as_mut()
        && let Some(from) = r.api_from.clone()
    {
        let Some((n, t)) = EMBEDDED.iter().find(|(n, _)| *n == from && *n != pb.name) else {
            return Err(Error::input(format!("playbook {origin}"), format!("rotation.api_from: no embedded playbook {from:?}")));
        };
        if r.api.is_empty() {
            r.api = parse(t, n, None)?.rotation.map(|x| x.api).unwrap_or_default();
        }
    }
    pb.validate(origin)
}

/// The edges whose checks prove etcd's quorum: a plain client (the health check) of a
/// component whose health is `etcd-quorum`. They gate every batch, from every member.
pub fn quorum_edges(pb: &Playbook) -> Vec<String> {
    pb.edges
        .iter()
        .filter(|e| e.client.component.is_none() && e.client.kubeconfigs.is_empty())
        .filter(|e| e.server.component.as_deref().and_then(|c| pb.component(c)).and_then(|c| c.health.as_deref()) == Some("etcd-quorum"))
        .map(|e| e.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_playbooks_are_valid() {
        let all = embedded();
        assert_eq!(all.len(), EMBEDDED.len());
        let kubeadm = builtin("kubeadm").unwrap();
        assert_eq!(kubeadm.source.name, "kubeadm");
        assert_eq!(kubeadm.source.sha256, crate::pki::sha256(EMBEDDED[1].1.as_bytes()));
        assert_eq!(quorum_edges(&kubeadm), ["etcd-healthcheck-client -> etcd"]);
        assert!(kubeadm.component("kube-apiserver").is_some());
        assert_eq!(kubeadm.file("etcd-ca").unwrap().path, "/etc/kubernetes/pki/etcd/ca.crt");
    }

    #[test]
    fn unknown_distribution_names_the_known_ones() {
        assert!(builtin("talos").is_none());
        let err = unknown("talos").to_string();
        assert!(err.contains("kubeadm") && err.contains("talos"), "{err}");
    }

    #[test]
    fn a_component_is_found_one_way() {
        let pb = |c: &str| parse(&format!("name: x\ndetect: []\npki_dir: /x\nfiles:\n- {{name: f, path: /f, kind: cert}}\ncomponents:\n- name: c\n{c}  refs:\n  - {{key: --a, file: f}}\n"), "x.yaml", None);
        let k3s = builtin("k3s").unwrap();
        assert_eq!(k3s.component("kube-apiserver").unwrap().present.as_deref(), Some("/var/lib/rancher/k3s/server/tls/serving-kube-apiserver.crt"));
        assert!(pb("  present: /p\n").is_ok());
        let err = pb("  present: /p\n  manifest: /m\n").unwrap_err().to_string();
        assert!(err.contains("exactly one of manifest, config, unit or present"), "{err}");
        let err = pb("  present: p\n").unwrap_err().to_string();
        assert!(err.contains("not an absolute path"), "{err}");
    }

    #[test]
    fn a_ref_to_an_unknown_file_is_refused() {
        let text = "name: x\ndetect: []\npki_dir: /x\ncomponents:\n- name: c\n  manifest: /m\n  refs:\n  - {key: --a, file: nope}\n";
        let err = parse(text, "x.yaml", None).unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
    }
}
