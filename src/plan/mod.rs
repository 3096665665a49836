//! Owns: a changing run as data (stages of steps: file writes, restarts) over a model of the
//! cluster's trust (which CA signed each leaf, which CAs each trust file holds, what each
//! component has loaded), and the proof that a plan keeps every TLS edge working at every
//! step boundary, including inside a batch where some components restarted and some not.
//! Must not: do I/O; callers build the model from discovered facts and carry out the steps.

pub mod build;
pub mod prove;
pub mod rotation;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The version of the plan format; a saved plan of another version is refused.
pub const PLAN_VERSION: u32 = 1;

/// A CA as the model knows it: a name and a generation, e.g. `ca@old`, `ca@new`.
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

/// A running component: it loads the files it reads when it (re)starts. A client that reads
/// its files on every connection (kubectl and a kubeconfig) is `fresh`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Component {
    pub node: String,
    pub name: String,
    pub reads: Vec<String>,
    #[serde(default)]
    pub fresh: bool,
}

/// One side of an edge instance: the component and the files it presents and trusts with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Side {
    pub node: String,
    pub component: String,
    /// The leaf it presents (or a kubeconfig, for a kubeconfig client).
    pub cert: Option<String>,
    /// What it verifies the other side with (a trust file, or the kubeconfig itself).
    pub trust: Option<String>,
}

/// A TLS edge between two running components: the client's cert must chain to the server's
/// trust and the server's cert to the client's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Edge {
    pub name: String,
    pub client: Side,
    pub server: Side,
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
    pub components: Vec<Component>,
    pub edges: Vec<Edge>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "kebab-case")]
pub enum Step {
    Write { node: String, path: String, content: Content },
    Restart { node: String, component: String },
}

/// A stage of the runbook: its steps in order; the invariant must hold after every step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stage {
    pub name: String,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub version: u32,
    pub stages: Vec<Stage>,
}
