//! Owns: the cluster's trust as the planner and the proof see it: which CA signed each leaf,
//! which CAs each trust file and kubeconfig holds, which reader loads which file, and every
//! TLS edge between two readers; and a plan's effect on it (writes and restarts).
//! Must not: hold bytes or do I/O; `build` makes it from discovered facts.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A CA as the model knows it: a name and a generation, e.g. `ca@1a2b3c4d`.
pub type CaId = String;

/// What a file holds, as far as trust goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Content {
    /// A leaf certificate (with its key) and the CA that signed it.
    Leaf { signer: CaId },
    /// A trust bundle: the CAs it holds.
    Trust { cas: BTreeSet<CaId> },
    /// A kubeconfig: its client cert's signer and the CAs of `certificate-authority-data`.
    Kubeconfig { client_signer: Option<CaId>, trusts: BTreeSet<CaId> },
}

/// A file on a node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileId {
    pub node: String,
    pub path: String,
}

impl FileId {
    pub fn new(node: &str, path: &str) -> FileId {
        FileId { node: node.into(), path: path.into() }
    }
}

/// Something on a node that reads TLS files: a component loads them when it (re)starts; a
/// client that reads its files on every connection (kubectl and a kubeconfig) is `fresh`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reader {
    pub node: String,
    pub name: String,
    pub reads: Vec<String>,
    #[serde(default)]
    pub fresh: bool,
}

/// One end of an edge: the reader and the files it presents and trusts with.
#[derive(Debug, Clone, Serialize, Deserialize)]
/// Its names are shared (`Arc<str>`): a 5,000-node cluster has ~30,000 edges, most of them
/// to the same few servers, with the same few paths.
pub struct End {
    pub node: Arc<str>,
    pub component: Arc<str>,
    /// The leaf it presents (or a kubeconfig, for a kubeconfig client).
    pub cert: Option<Arc<str>>,
    /// What it verifies the other end with (a trust file, or the kubeconfig itself).
    pub trust: Option<Arc<str>>,
}

/// A TLS edge between two readers: the client's cert must chain to the server's trust and
/// the server's cert to the client's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Edge {
    pub name: Arc<str>,
    pub client: End,
    pub server: End,
}

impl Edge {
    pub fn label(&self) -> String {
        format!("{} ({}/{} -> {}/{})", self.name, self.client.node, self.client.component, self.server.node, self.server.component)
    }
}

/// The cluster as the planner sees it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Model {
    pub files: BTreeMap<FileId, Content>,
    pub readers: Vec<Reader>,
    pub edges: Vec<Edge>,
    /// Cross-signing: a CA -> the CAs that vouch for it. A certificate it signed is accepted
    /// where one of those is trusted, because the presenter sends the cross-signed copy with
    /// its leaf (k3s's leaf files carry their CA bundle after the leaf: deps.go). Empty where
    /// nothing is cross-signed (every kubeadm and binary cluster).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vouched: BTreeMap<CaId, BTreeSet<CaId>>,
}

impl Model {
    /// Whether a bundle trusting `trust` accepts a certificate signed by `signer`: directly,
    /// or through a CA that cross-signed it.
    pub fn accepts(&self, trust: &BTreeSet<CaId>, signer: &CaId) -> bool {
        trust.contains(signer) || self.vouched.get(signer).is_some_and(|by| by.iter().any(|c| trust.contains(c)))
    }
}

/// One thing a plan does to the model: borrowed from the plan it is read from (a 5,000-node
/// plan has ~45,000 of them), or owned when made up (tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect<'a> {
    Write { node: Cow<'a, str>, path: Cow<'a, str>, content: Cow<'a, Content> },
    Restart { node: Cow<'a, str>, component: Cow<'a, str> },
}

/// A stage's effects in order; the invariant must hold after every one.
#[derive(Debug, Clone)]
pub struct Effects<'a> {
    pub name: String,
    pub effects: Vec<Effect<'a>>,
}
