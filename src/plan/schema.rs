//! Owns: a changing run as data, the same for every command that changes a cluster: stages
//! of steps (a batch of nodes, or an API step); per node the files that change (path, old and
//! new sha256, mode, and a recipe that rebuilds the new bytes without carrying a private key),
//! the restarts and the gate; what it was made from and made with; its proof's figures.
//! Must not: do I/O or decide what changes (the planners do), or hold a private key.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::gates::Check;
use super::model::{CaId, Content, Effect, Effects};
pub use super::recipe::{KubeconfigField, Recipe, Text, Texts, old_key_id};
use crate::pki::sign::KeyType;

/// The version of the plan format; a saved plan of another version is refused. 3: recipe
/// texts stored once in a table by sha256 (`stored`). 4: a node's renewal by its own tool
/// (`NodeOps::reissue`), which a kcert of format 3 would not know to run. 5: a rotation
/// through a datastore (k3s), undone through it (`StagePlan::undo`, `ApiCall::undo`) and
/// backing up what an earlier stage made (`ReissuedFile::made_in`), which a kcert of format 4
/// would roll back file by file, against the datastore.
pub const PLAN_VERSION: u32 = 5;

/// What a plan does: which command made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    RotateCa,
    Renew,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::RotateCa => "rotate-ca",
            Kind::Renew => "renew",
        }
    }
    pub const ALL: [Kind; 2] = [Kind::RotateCa, Kind::Renew];
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stage of a plan. A rotation walks the runbook S0-S5; a renewal is S0 and R1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum StageId {
    #[serde(rename = "S0")]
    Preflight,
    #[serde(rename = "S1")]
    NewCa,
    #[serde(rename = "S2")]
    Trust,
    #[serde(rename = "S3")]
    ApiObjects,
    #[serde(rename = "S4")]
    Resign,
    #[serde(rename = "S5")]
    Prune,
    #[serde(rename = "R1")]
    Renew,
}

impl StageId {
    pub const ALL: [StageId; 7] = [StageId::Preflight, StageId::NewCa, StageId::Trust, StageId::ApiObjects, StageId::Resign, StageId::Prune, StageId::Renew];

    pub fn as_str(self) -> &'static str {
        match self {
            StageId::Preflight => "S0",
            StageId::NewCa => "S1",
            StageId::Trust => "S2",
            StageId::ApiObjects => "S3",
            StageId::Resign => "S4",
            StageId::Prune => "S5",
            StageId::Renew => "R1",
        }
    }

    /// What the stage does, for a person.
    pub fn name(self) -> &'static str {
        match self {
            StageId::Preflight => "preflight",
            StageId::NewCa => "new CA, distributed to the nodes that hold the old one",
            StageId::Trust => "trust old and new",
            StageId::ApiObjects => "cluster API objects trust old and new",
            StageId::Resign => "re-sign every leaf with the new CA",
            StageId::Prune => "prune the old CA",
            StageId::Renew => "re-sign leaves with their current CA",
        }
    }

    /// `S4` or `s4`, as a person types it.
    pub fn parse(s: &str) -> Option<StageId> {
        StageId::ALL.into_iter().find(|id| id.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for StageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub version: u32,
    pub kind: Kind,
    pub id: String,
    pub created_at: String,
    pub cluster: String,
    /// The kcert and the playbook that made it: `apply`, `resume` and `rollback` refuse a
    /// playbook whose text changed since.
    pub made_with: MadeWith,
    /// How the nodes were reached: `apply` and `resume` reach them the same way.
    pub target: PlanTarget,
    pub options: Options,
    /// sha256 of every file the plan was made from, per node: `apply` refuses when one moved.
    pub facts: Vec<Fact>,
    /// The CAs a rotation replaces (none for a renewal).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cas: Vec<NewCa>,
    pub stages: Vec<StagePlan>,
    pub proof: Proof,
    pub notes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_notes: Vec<NodeNote>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MadeWith {
    pub kcert: String,
    pub playbook: crate::playbook::Origin,
}

impl MadeWith {
    pub fn now(pb: &crate::playbook::Playbook) -> MadeWith {
        MadeWith { kcert: env!("CARGO_PKG_VERSION").to_string(), playbook: pb.source.clone() }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<std::path::PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<std::path::PathBuf>,
    /// The inventory is read through `ansible-inventory --list` (`--inventory-from-ansible`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_ansible: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Options {
    /// Workers changed together; control-plane nodes go one at a time.
    pub batch_size: usize,
    pub kubernetes_api: bool,
    /// Files only (`--root`): restarts, gates and API steps are skipped.
    pub offline: bool,
    /// Validity of re-signed leaves, in days.
    pub leaf_days: u32,
    /// rotate-ca: `--ca` names (cluster, etcd, front-proxy), the new CAs' validity and key type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cas: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_type: Option<KeyType>,
    /// renew: `--certs` names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Fact {
    pub node: String,
    pub path: String,
    pub sha256: String,
}

/// One CA being replaced: the old one as found and the new one made for it (public parts).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewCa {
    /// `--ca` name (cluster) and playbook file name (ca).
    pub alias: String,
    pub name: String,
    pub path: String,
    pub key_path: String,
    pub old_id: CaId,
    pub old_subject: String,
    pub old_sha256: String,
    pub old_not_after: i64,
    pub new_id: CaId,
    pub new_subject: String,
    pub new_sha256: String,
    pub new_not_after: i64,
    pub key_type: String,
    pub cert_pem: String,
    /// The old CA's certificate (public): what no trust may hold once the rotation is done.
    pub old_pem: String,
    /// Where S1 puts the new CA's certificate and key until S5 moves them into place.
    pub staged_cert: String,
    pub staged_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StagePlan {
    pub id: StageId,
    pub name: String,
    /// What S0 checks before anything changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<String>,
    pub steps: Vec<StepPlan>,
    /// How the stage is undone where undoing each step's files in reverse is not enough.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<StageUndo>,
}

impl StagePlan {
    /// The stage's batches, its API steps left out.
    pub fn batches(&self) -> impl Iterator<Item = &Batch> {
        self.steps.iter().filter_map(|s| match s {
            StepPlan::Batch(b) => Some(b),
            StepPlan::Api(_) => None,
        })
    }
}

/// A stage whose changes a datastore carries (k3s), undone first step first: the datastore
/// set back (its API step's `undo`), then each node restarted onto what it holds again before
/// the nodes that followed it, as the rotation went (an agent checks its restored token
/// against the CA a server hands out, which must be the old one by then).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageUndo {
    pub in_order: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StepPlan {
    Batch(Batch),
    Api(ApiCall),
}

impl StepPlan {
    pub fn label(&self) -> String {
        match self {
            StepPlan::Batch(b) => b.nodes.join(", "),
            StepPlan::Api(a) => a.name.clone(),
        }
    }
}

/// Nodes changed together: every node's writes, then its restarts, then the gate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Batch {
    pub nodes: Vec<String>,
    pub ops: Vec<NodeOps>,
    pub gates: Vec<Check>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeOps {
    pub node: String,
    pub files: Vec<FileOp>,
    /// Components restarted after the writes, in the playbook's order.
    pub restarts: Vec<String>,
    /// The writes as the trust model sees them (what the proof simulated).
    pub model: Vec<ModelWrite>,
    /// Where the distribution's own tool re-issues the node's certificates (k3s): done in
    /// place of `files` and `restarts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reissue: Option<Reissue>,
}

/// A node whose own tool re-issues its certificates: its unit stopped, kcert backing up every
/// file the tool will make again, the tool run, the unit started, each file checked to be new.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reissue {
    pub unit: String,
    pub stop: String,
    /// With the unit stopped, after the backups: the tool, then the removal of the stores the
    /// unit would otherwise start from again.
    pub run: Vec<String>,
    pub start: String,
    /// The components that stop and start with the unit on this node.
    pub components: Vec<String>,
    pub files: Vec<ReissuedFile>,
    /// Paths the tool may create (a trigger for the unit's start): one absent before the run
    /// and there after it is journaled as created, so a rollback removes it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub creates: Vec<String>,
    /// The node's ports that serve one of those files: after the start each must serve what
    /// its file then holds (a stale listener, k3s issues 3144 and 8762, fails the step).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub serves: Vec<Served>,
}

/// A port on a node and the file whose certificate it serves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Served {
    pub host: String,
    pub port: u16,
    pub path: String,
}

/// A file the node's tool makes again: its bytes now (backed up first); its new bytes are the node's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReissuedFile {
    pub path: String,
    pub old_sha256: String,
    /// Holds a private key: its backup and any restore are 0600.
    pub private: bool,
    pub bytes: u64,
    /// What it holds now, for a reviewer (none for a key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub what: Option<String>,
    /// The unit makes it anew at every start (an agent's kubelet certificates): a rollback
    /// restores its backup whatever it holds by then, as any later start changes it again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remade: bool,
    /// Its bytes by then are what the node made in this earlier stage of the same run (read
    /// back and journaled there), not known when planned: `old_sha256` is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub made_in: Option<StageId>,
}

/// What a reviewer should know of one node's part (a file left alone, and why).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeNote {
    pub node: String,
    pub note: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelWrite {
    pub path: String,
    pub content: Content,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Create,
    Modify,
    Remove,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileOp {
    pub path: String,
    pub action: Action,
    pub old_sha256: Option<String>,
    pub new_sha256: Option<String>,
    /// Mode of a created file (an existing file keeps its owner and mode).
    pub mode: u32,
    /// Holds a private key: written 0600, never shown.
    pub private: bool,
    /// Sizes of the new and old content, for the free-space preflight.
    pub bytes: u64,
    pub old_bytes: u64,
    pub recipe: Recipe,
    /// What changes in it, for a reviewer: shared (`Arc`) by the copies of one op a plan
    /// holds on many nodes (the same bundle edit on every worker).
    pub changes: Arc<[String]>,
    /// The certificates re-issued in it, old and new expiry (a renewal's, S4's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<Reissued>,
}

/// One certificate re-issued inside a file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reissued {
    pub name: String,
    /// The kubeconfig field, for embedded certificates.
    pub field: Option<String>,
    pub subject: String,
    pub signer: String,
    pub old_not_after: String,
    pub new_not_after: String,
    /// Shorter than asked: never past the signing CA's own expiry.
    pub capped_at_ca_expiry: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiCall {
    pub name: String,
    pub node: String,
    pub script: String,
    /// Why it does not run (no API server reachable, offline).
    pub skipped: Option<String>,
    /// What sets it back when its stage is rolled back (none: nothing to set back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Proof {
    /// Trust edges checked, and the writes and restarts they were checked after.
    pub edges: usize,
    pub steps: usize,
    /// Service-account token edges (signer -> verifier, tokens already out -> verifier),
    /// checked after every step.
    #[serde(default)]
    pub tokens: usize,
}

impl Plan {
    /// Every file op with where it sits: (stage index, step index, node, op).
    pub fn file_ops(&self) -> impl Iterator<Item = (usize, usize, &str, &FileOp)> {
        self.stages.iter().enumerate().flat_map(|(si, s)| {
            s.steps.iter().enumerate().flat_map(move |(bi, step)| {
                let ops: Vec<(usize, usize, &str, &FileOp)> = match step {
                    StepPlan::Batch(b) => b.ops.iter().flat_map(|n| n.files.iter().map(move |f| (si, bi, n.node.as_str(), f))).collect(),
                    StepPlan::Api(_) => Vec::new(),
                };
                ops
            })
        })
    }

    /// The key store ids the plan's recipes need: each new CA's key, and the old key of a CA
    /// whose other use keeps a copy of it.
    pub fn key_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.cas.iter().map(|c| c.name.clone()).collect();
        for (_, _, _, f) in self.file_ops() {
            match &f.recipe {
                Recipe::OldCaKey { ca } => ids.push(old_key_id(ca)),
                Recipe::CaKey { ca, .. } => ids.push(ca.clone()),
                _ => {}
            }
        }
        ids.sort();
        ids.dedup();
        ids
    }

    pub fn stage(&self, id: StageId) -> Option<&StagePlan> {
        self.stages.iter().find(|s| s.id == id)
    }

    /// (file changes, restarts, nodes changed).
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut files = 0;
        let mut restarts = 0;
        let mut nodes = BTreeSet::new();
        for b in self.batches() {
            for n in &b.ops {
                let (re_files, re_restarts) = n.reissue.as_ref().map_or((0, 0), |r| (r.files.len(), r.components.len()));
                files += n.files.len() + re_files;
                restarts += n.restarts.len() + re_restarts;
                if !n.files.is_empty() || re_files > 0 {
                    nodes.insert(n.node.clone());
                }
            }
        }
        (files, restarts, nodes.len())
    }

    pub fn batches(&self) -> impl Iterator<Item = &Batch> {
        self.stages.iter().flat_map(StagePlan::batches)
    }

    /// The nodes make the new files themselves at start (k3s's procedures): kcert orders, backs
    /// up and checks, and what the files will hold is known only once they have started.
    pub fn made_by_nodes(&self) -> bool {
        self.batches().any(|b| b.ops.iter().any(|o| o.reissue.is_some()))
    }

    /// A rotation carried by a datastore (k3s): its stages are undone first step first, the
    /// datastore set back before the nodes restart onto it.
    pub fn by_datastore(&self) -> bool {
        self.stages.iter().any(|s| s.undo.is_some())
    }

    /// Every node the plan was made from, in the plan's order.
    pub fn nodes(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for f in &self.facts {
            if !out.contains(&f.node.as_str()) {
                out.push(&f.node);
            }
        }
        out
    }

    /// Steps in all stages.
    pub fn step_count(&self) -> usize {
        self.stages.iter().map(|s| s.steps.len()).sum()
    }

    /// The plan's effect on the trust model, as the proof simulates it.
    pub fn effects(&self) -> Vec<Effects<'_>> {
        self.stages
            .iter()
            .map(|s| {
                let mut effects = Vec::new();
                for step in &s.steps {
                    let StepPlan::Batch(b) = step else { continue };
                    for n in &b.ops {
                        effects.extend(n.model.iter().map(|w| Effect::Write { node: n.node.as_str().into(), path: w.path.as_str().into(), content: std::borrow::Cow::Borrowed(&w.content) }));
                    }
                    for n in &b.ops {
                        let reissued = n.reissue.iter().flat_map(|r| &r.components);
                        effects.extend(n.restarts.iter().chain(reissued).map(|c| Effect::Restart { node: n.node.as_str().into(), component: c.as_str().into() }));
                    }
                }
                Effects { name: format!("{} {}", s.id, s.name), effects }
            })
            .collect()
    }
}
