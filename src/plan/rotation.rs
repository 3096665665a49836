//! Owns: a CA rotation as a concrete, serializable plan: the runbook's stages S0-S5, each of
//! steps (a batch of nodes, or an API step); per node the files that change (path, old and
//! new sha256, mode, and a recipe that rebuilds the new bytes without carrying any private
//! key), the restarts and the gate; and its proof: the plan's effect on the trust model,
//! checked after every write and restart, plus the signing pair checked at every boundary.
//! Must not: do I/O; callers gather the facts, make the new CAs and carry the plan out.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{CaId, Content, FileId, Model, PLAN_VERSION, Plan, Stage, Step, build, prove};
use crate::pki::edit;
use crate::discover::{NodePki, manifest_flags};
use crate::gate::Check;
use crate::pki::cert::{CertInfo, parse_pem};
use crate::pki::find_issuer;
use crate::pki::kubeconfig;
use crate::pki::sign::{KeyType, Signer, Validity, key_matches};
use crate::playbook::{ApiWhen, FileKind, Playbook};

pub const KIND: &str = "rotate-ca";

/// The stages, by id and name, in the runbook's order.
pub const STAGES: [(&str, &str); 6] = [
    ("S0", "preflight"),
    ("S1", "new CA, distributed to the nodes that hold the old one"),
    ("S2", "trust old and new"),
    ("S3", "cluster API objects trust old and new"),
    ("S4", "re-sign every leaf with the new CA"),
    ("S5", "prune the old CA"),
];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RotationPlan {
    pub version: u32,
    pub kind: String,
    pub id: String,
    pub created_at: String,
    pub cluster: String,
    pub distribution: String,
    /// How the nodes were reached: `apply` and `resume` reach them the same way.
    pub target: PlanTarget,
    pub options: Options,
    /// sha256 of every file the plan was made from, per node: `apply` refuses when one moved.
    pub facts: Vec<Fact>,
    pub cas: Vec<NewCa>,
    pub stages: Vec<StagePlan>,
    pub proof: Proof,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PlanTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<std::path::PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Options {
    /// `--ca` names (cluster, etcd, front-proxy).
    pub cas: Vec<String>,
    pub ca_days: u32,
    pub leaf_days: u32,
    pub key_type: Option<KeyType>,
    pub batch_size: usize,
    pub kubernetes_api: bool,
    pub offline: bool,
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
    /// Where S1 puts the new CA's certificate and key until S5 moves them into place.
    pub staged_cert: String,
    pub staged_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StagePlan {
    pub id: String,
    pub name: String,
    /// What S0 checks before anything changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<String>,
    pub steps: Vec<StepPlan>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StepPlan {
    Batch(Batch),
    Api(ApiCall),
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
    /// What changes in it, for a reviewer.
    pub changes: Vec<String>,
}

/// How the new bytes are made from the old ones on the node. Never carries a private key:
/// files holding one are rebuilt from their old bytes (key blocks kept) or from the run's key store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Recipe {
    /// The whole new content (certificates, bundles, manifests: public).
    Text {
        text: String,
    },
    /// The file's certificate blocks become these; every other block (a key) stays as it was.
    Certs {
        certs: Vec<String>,
    },
    /// These kubeconfig `*-data` fields become these PEM texts; every other byte stays.
    Kubeconfig {
        fields: Vec<KubeconfigField>,
    },
    /// The new private key of this CA (a playbook file name), from the run's key store.
    CaKey {
        ca: String,
    },
    Remove,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeconfigField {
    pub field: String,
    pub pem: String,
}

impl Recipe {
    /// The new bytes (None: the file is removed), given the old ones and the new CA keys.
    pub fn apply(&self, old: Option<&[u8]>, key_of: &dyn Fn(&str) -> Option<String>) -> Result<Option<Vec<u8>>, String> {
        let old_bytes = || old.ok_or_else(|| "the file is missing".to_string());
        Ok(match self {
            Recipe::Text { text } => Some(text.clone().into_bytes()),
            Recipe::Certs { certs } => Some(edit::set_certs(old_bytes()?, certs)?),
            Recipe::Kubeconfig { fields } => {
                let mut b = old_bytes()?.to_vec();
                for f in fields {
                    b = edit::edit_kubeconfig(&b, &f.field, |_| Ok(f.pem.clone().into_bytes())).map_err(|e| format!("{}: {e}", f.field))?;
                }
                Some(b)
            }
            Recipe::CaKey { ca } => Some(key_of(ca).ok_or_else(|| format!("the new key of CA {ca} is not in the run's key store"))?.into_bytes()),
            Recipe::Remove => None,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiCall {
    pub name: String,
    pub node: String,
    pub script: String,
    /// Why it does not run (no API server reachable, offline).
    pub skipped: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Proof {
    /// Trust edges checked, and the writes and restarts they were checked after.
    pub edges: usize,
    pub steps: usize,
}

impl RotationPlan {
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

    pub fn counts(&self) -> (usize, usize, usize) {
        let mut files = 0;
        let mut restarts = 0;
        let mut nodes = BTreeSet::new();
        for s in &self.stages {
            for step in &s.steps {
                if let StepPlan::Batch(b) = step {
                    for n in &b.ops {
                        files += n.files.len();
                        restarts += n.restarts.len();
                        if !n.files.is_empty() {
                            nodes.insert(n.node.clone());
                        }
                    }
                }
            }
        }
        (files, restarts, nodes.len())
    }

    /// The plan's effect on the trust model, as the proof simulates it.
    pub fn model_plan(&self) -> Plan {
        let mut stages = Vec::new();
        for s in &self.stages {
            let mut steps = Vec::new();
            for step in &s.steps {
                let StepPlan::Batch(b) = step else { continue };
                for n in &b.ops {
                    steps.extend(n.model.iter().map(|w| Step::Write { node: n.node.clone(), path: w.path.clone(), content: w.content.clone() }));
                }
                for n in &b.ops {
                    steps.extend(n.restarts.iter().map(|c| Step::Restart { node: n.node.clone(), component: c.clone() }));
                }
            }
            stages.push(Stage { name: format!("{} {}", s.id, s.name), steps });
        }
        Plan { version: PLAN_VERSION, stages }
    }
}

/// One node's facts.
pub struct NodeInput<'a> {
    pub name: &'a str,
    pub control_plane: bool,
    pub pki: &'a NodePki,
    pub files: &'a BTreeMap<String, Vec<u8>>,
    /// Names and addresses added to re-homed serving certs.
    pub node_sans: Vec<String>,
}

/// An old CA to replace, as found on the nodes.
#[derive(Debug, Clone)]
pub struct OldCa {
    pub alias: String,
    pub name: String,
    pub id: CaId,
    pub cert: CertInfo,
    pub key_name: String,
}

/// A new CA made for an old one. The key stays in memory and the run's key store.
pub struct NewCaInput {
    pub name: String,
    pub cert_pem: String,
    pub key_pem: String,
}

pub struct Input<'a> {
    pub playbook: &'a Playbook,
    pub target: PlanTarget,
    pub nodes: Vec<NodeInput<'a>>,
    pub checks: Vec<Check>,
    pub opts: Options,
    pub id: String,
    pub cluster: String,
    pub now: i64,
}

fn facts_of<'a>(nodes: &'a [NodeInput<'a>]) -> Vec<build::NodeFacts<'a>> {
    nodes.iter().map(|n| build::NodeFacts { name: n.name, pki: n.pki, files: n.files }).collect()
}

/// The CAs `aliases` name, as the nodes hold them; every problem found is returned. Refuses a
/// CA file holding more than one CA (a rotation left half done), nodes that disagree, and a
/// CA whose key is absent (external-CA mode) or does not match.
pub fn old_cas(input: &Input<'_>, aliases: &[String]) -> Result<Vec<OldCa>, Vec<String>> {
    let pb = input.playbook;
    let Some(rot) = &pb.rotation else {
        return Err(vec![format!("the {} playbook does not say how to rotate its CAs (no `rotation` section)", pb.name)]);
    };
    let found = build::cas(pb, &facts_of(&input.nodes));
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for alias in aliases {
        let Some(name) = rot.cas.get(alias) else {
            problems.push(format!("--ca {alias}: no such CA in the {} playbook (known: {})", pb.name, rot.cas.keys().cloned().collect::<Vec<_>>().join(", ")));
            continue;
        };
        let ids: Vec<(&CaId, &CertInfo)> = found.iter().filter(|(id, _)| id.split('@').next() == Some(name.as_str())).collect();
        let holders: Vec<String> = input.nodes.iter().filter_map(|n| n.pki.named.get(name).map(|p| format!("{}: {p}", n.name))).collect();
        match ids.len() {
            0 => {
                problems.push(format!("the {alias} CA ({name}) is on no node"));
                continue;
            }
            1 => {}
            n => {
                let subjects: Vec<String> = ids.iter().map(|(id, c)| format!("{} [{}]", c.subject, &id[id.len() - 8..])).collect();
                problems.push(format!(
                    "the {alias} CA files ({}) hold {n} different CAs ({}): a rotation left unfinished? Finish or roll it back (kcert runs, kcert resume, kcert rollback) before starting another",
                    holders.join(", "),
                    subjects.join("; ")
                ));
                continue;
            }
        }
        let (id, cert) = ids[0];
        let Some(key_name) = pb.file(name).and_then(|f| f.key.clone()) else {
            continue;
        };
        let mut keys = 0;
        for n in &input.nodes {
            let key_path = n.pki.named.get(&key_name).cloned().or_else(|| pb.file(&key_name).map(|k| k.path.clone())).unwrap_or_default();
            if !n.pki.named.contains_key(name) {
                continue;
            }
            if let Some(k) = n.files.get(&key_path) {
                keys += 1;
                match key_matches(cert, k) {
                    Ok(true) => {}
                    Ok(false) => problems.push(format!("{key_path} on {}: the {alias} CA key does not match the CA certificate {}", n.name, cert.subject)),
                    Err(e) => problems.push(format!("{key_path} on {}: {e}", n.name)),
                }
            }
        }
        if keys == 0 {
            problems.push(format!(
                "the {alias} CA key ({}) is on no node (kubeadm external-CA mode?): kcert would put a new CA key on the nodes; rotate with your external CA instead",
                pb.file(&key_name).map(|k| k.path.as_str()).unwrap_or(&key_name)
            ));
        }
        out.push(OldCa { alias: alias.clone(), name: name.clone(), id: id.clone(), cert: cert.clone(), key_name });
    }
    if problems.is_empty() { Ok(out) } else { Err(problems) }
}

/// A successor for each old CA (same key type and size unless `key_type`), valid `days`.
pub fn successors(olds: &[OldCa], days: u32, now: i64, key_type: Option<KeyType>) -> Result<Vec<NewCaInput>, String> {
    olds.iter()
        .map(|o| {
            let (cert_pem, key_pem) = crate::pki::sign::successor_ca(&o.cert, days, now, key_type).map_err(|e| format!("making the new {} CA: {e}", o.alias))?;
            Ok(NewCaInput { name: o.name.clone(), cert_pem, key_pem })
        })
        .collect()
}

/// What the planner keeps per rotated CA.
struct Rot {
    old: OldCa,
    new_id: CaId,
    new_cert: CertInfo,
    new_pem: String,
    old_pem: String,
    key_pem: String,
    signer: Signer,
}

/// Current bytes of every file, as the plan so far leaves them.
struct Vfs<'a> {
    base: BTreeMap<&'a str, &'a BTreeMap<String, Vec<u8>>>,
    cur: BTreeMap<(String, String), Option<Vec<u8>>>,
}

impl Vfs<'_> {
    fn get(&self, node: &str, path: &str) -> Option<Vec<u8>> {
        match self.cur.get(&(node.to_string(), path.to_string())) {
            Some(v) => v.clone(),
            None => self.base.get(node).and_then(|f| f.get(path)).cloned(),
        }
    }
    fn set(&mut self, node: &str, path: &str, bytes: Option<Vec<u8>>) {
        self.cur.insert((node.to_string(), path.to_string()), bytes);
    }
}

/// One stage's changes to one node, being collected.
#[derive(Default)]
struct Pending {
    /// (path) -> the ca name whose key it holds: written from the key store.
    private: BTreeMap<String, String>,
    /// Paths touched, in order, with their bytes before the stage touched them.
    touched: Vec<String>,
    before: BTreeMap<String, Option<Vec<u8>>>,
    model: BTreeMap<String, Content>,
}

struct Planner<'a> {
    input: &'a Input<'a>,
    /// The trust model before the rotation (what the proof starts from) ...
    model: Model,
    /// ... and as the plan so far leaves it.
    state: BTreeMap<FileId, Content>,
    rots: Vec<Rot>,
    vfs: Vfs<'a>,
    v: Validity,
    /// (node, component) of a signing pair split off the CA bundle in S2: (rotation index,
    /// original cert flag value, original key flag value, manifest path).
    splits: BTreeMap<(String, String), (usize, String, String, String)>,
    /// Staged files created in S1/S2, per node, for the clean-up.
    staged: BTreeMap<String, Vec<String>>,
    /// Private keys written, (node, path) -> ca name: rebuilt from the key store.
    private: BTreeMap<(String, String), String>,
    problems: Vec<String>,
    /// Node name -> its index in the input; per rotation, the nodes holding its key
    /// (node, cert path, key path): looked up for every node, so made once.
    index: BTreeMap<String, usize>,
    holders: Vec<Vec<(String, String, String)>>,
}

fn first_cert(bytes: &[u8]) -> Option<CertInfo> {
    parse_pem(bytes).ok()?.certs.into_iter().next()
}

impl<'a> Planner<'a> {
    fn node(&self, name: &str) -> &NodeInput<'a> {
        &self.input.nodes[self.index[name]]
    }

    fn staged_path(&self, path: &str, which: &str) -> String {
        let pb = self.input.playbook;
        let dir = pb.pki_dir.trim_end_matches('/');
        let staging = pb.rotation.as_ref().map(|r| r.staging.as_str()).unwrap_or("kcert-rotation");
        let rel = path.strip_prefix(&format!("{dir}/")).unwrap_or_else(|| path.rsplit('/').next().unwrap_or(path));
        format!("{dir}/{staging}/{which}/{rel}")
    }

    fn rot_of_old(&self, id: &str) -> Option<usize> {
        self.rots.iter().position(|r| r.old.id == id)
    }

    /// Rotation `ri`'s CA files on `node` (cert path, key path), when the node holds its key.
    fn holder(&self, ri: usize, node: &str) -> Option<(String, String)> {
        self.holders[ri].iter().find(|(n, _, _)| n == node).map(|(_, c, k)| (c.clone(), k.clone()))
    }

    /// Nodes that hold rotation `r`'s CA key: they get the new CA in S1 and its key in S5.
    fn find_key_holders(input: &Input<'_>, r: &Rot) -> Vec<(String, String, String)> {
        let pb = input.playbook;
        input
            .nodes
            .iter()
            .filter_map(|n| {
                let cert = n.pki.named.get(&r.old.name)?;
                let key = n.pki.named.get(&r.old.key_name).cloned().or_else(|| pb.file(&r.old.key_name).map(|k| k.path.clone()))?;
                n.files.contains_key(&key).then(|| (n.name.to_string(), cert.clone(), key))
            })
            .collect()
    }

    fn touch(&mut self, p: &mut Pending, node: &str, path: &str, bytes: Option<Vec<u8>>) {
        if !p.before.contains_key(path) {
            p.touched.push(path.to_string());
            p.before.insert(path.to_string(), self.vfs.get(node, path));
        }
        self.vfs.set(node, path, bytes);
    }

    /// Applies `f` to a file's current bytes (a problem is recorded when it fails).
    fn edit(&mut self, p: &mut Pending, node: &str, path: &str, f: impl FnOnce(&[u8]) -> Result<Vec<u8>, String>) {
        let Some(old) = self.vfs.get(node, path) else {
            self.problems.push(format!("{node}: {path}: was not read; kcert will not change a file it has not seen"));
            return;
        };
        match f(&old) {
            Ok(new) if new != old => self.touch(p, node, path, Some(new)),
            Ok(_) => {}
            Err(e) => self.problems.push(format!("{node}: {path}: {e}")),
        }
    }

    /// Re-signs a PEM text's first certificate with rotation `ri`'s new CA; later
    /// certificates that are the old CA become the new one, and with `rehome` a
    /// self-signed leaf's own throwaway CA is dropped.
    fn resign_text(&self, bytes: &[u8], ri: usize, extra_sans: &[String], rehome: bool) -> Result<Vec<u8>, String> {
        let r = &self.rots[ri];
        let pems = edit::cert_pems(bytes)?;
        let parsed = parse_pem(bytes).map_err(|e| e.to_string())?.certs;
        let leaf = parsed.first().ok_or("no certificate in it")?;
        let renewed = r.signer.resign(leaf, self.v, extra_sans).map_err(|e| e.to_string())?;
        let mut out = vec![renewed.pem];
        for (pem, c) in pems.iter().zip(&parsed).skip(1) {
            if let Some(x) = self.rots.iter().find(|x| x.old.cert.sha256 == c.sha256) {
                out.push(x.new_pem.clone());
            } else if rehome && c.is_ca && find_issuer(leaf, &[c]).is_some() {
                continue;
            } else {
                out.push(pem.clone());
            }
        }
        edit::set_certs(bytes, &out)
    }

    fn model_files(&self, node: &str) -> Vec<(String, Content)> {
        let from = FileId::new(node, "");
        self.state.range(from..).take_while(|(k, _)| k.node == node).map(|(k, c)| (k.path.clone(), c.clone())).collect()
    }

    /// Every embedded `certificate-authority-data` field of a kubeconfig that holds `sha`.
    fn ca_fields(bytes: &[u8], sha: &str) -> Vec<String> {
        let Ok(kc) = kubeconfig::parse_kubeconfig(bytes) else {
            return Vec::new();
        };
        kc.embedded
            .iter()
            .filter(|e| e.field.key == "certificate-authority-data")
            .filter(|e| e.content.as_ref().is_ok_and(|c| c.certs.iter().any(|x| x.sha256 == sha)))
            .map(|e| e.field.display())
            .collect()
    }

    fn ca_ref(bytes: &[u8], kc_path: &str) -> Option<String> {
        let kc = kubeconfig::parse_kubeconfig(bytes).ok()?;
        kc.references.iter().find(|r| r.field.key == "certificate-authority").map(|r| kubeconfig::resolve_reference(kc_path, &r.path))
    }

    /// Every trust on a node (bundle or kubeconfig CA data) that holds an old CA: with `adding`
    /// (S2) its successor is added where missing; without (S5) the old CA is pruned where the
    /// successor is there. The bytes and the model change together.
    fn retrust(&mut self, node: &str, p: &mut Pending, adding: bool) {
        for (path, content) in self.model_files(node) {
            let picked: Vec<usize> = match &content {
                Content::Trust { cas } | Content::Kubeconfig { trusts: cas, .. } => {
                    (0..self.rots.len()).filter(|&i| cas.contains(&self.rots[i].old.id) && cas.contains(&self.rots[i].new_id) != adding).collect()
                }
                Content::Leaf { .. } => Vec::new(),
            };
            if picked.is_empty() {
                continue;
            }
            for &i in &picked {
                let (pem, sha) = (self.rots[i].new_pem.clone(), self.rots[i].old.cert.sha256.clone());
                let change = |b: &[u8]| if adding { edit::add_cert(b, &pem) } else { edit::remove_cert(b, &sha) };
                match &content {
                    Content::Trust { .. } => self.edit(p, node, &path, change),
                    _ => self.kubeconfig_trust(node, &path, p, &sha, change),
                }
            }
            let ids: Vec<CaId> = picked.iter().map(|&i| if adding { self.rots[i].new_id.clone() } else { self.rots[i].old.id.clone() }).collect();
            p.model.insert(path, if adding { add_trust(&content, &ids) } else { drop_trust(&content, &ids) });
        }
    }

    /// S2 on one node: every trust holding an old CA also holds its successor.
    fn trust_both(&mut self, node: &str, p: &mut Pending) {
        self.retrust(node, p, true);
        // The CA files themselves on the nodes that hold the key, even where nothing reads them as trust.
        for i in 0..self.rots.len() {
            if let Some((cert, _)) = self.holder(i, node) {
                let pem = self.rots[i].new_pem.clone();
                self.edit(p, node, &cert, |b| edit::add_cert(b, &pem));
            }
        }
        self.split_signing_pairs(node, p);
    }

    fn kubeconfig_trust(&mut self, node: &str, path: &str, p: &mut Pending, old_sha: &str, f: impl Fn(&[u8]) -> Result<Vec<u8>, String>) {
        let Some(bytes) = self.vfs.get(node, path) else {
            return;
        };
        let fields = Self::ca_fields(&bytes, old_sha);
        if fields.is_empty() {
            if let Some(r) = Self::ca_ref(&bytes, path) {
                self.edit(p, node, &r, &f);
            }
            return;
        }
        for field in fields {
            self.edit(p, node, path, |b| edit::edit_kubeconfig(b, &field, &f));
        }
    }

    /// The controller-manager signs with --cluster-signing-cert-file/-key-file, which kubeadm
    /// points at ca.crt/ca.key: while ca.crt is a bundle, point the cert flag at a copy of
    /// the old CA (the key stays the old one), so the pair stays one matching cert and key.
    fn split_signing_pairs(&mut self, node: &str, p: &mut Pending) {
        let pb = self.input.playbook;
        for pair in &pb.pairs {
            let n = self.node(node);
            let (Some(cert), Some(key)) = (n.pki.refs.get(&(pair.component.clone(), pair.cert.clone())).cloned(), n.pki.refs.get(&(pair.component.clone(), pair.key.clone())).cloned()) else {
                continue;
            };
            let Some(manifest) = pb.component(&pair.component).and_then(|c| c.manifest.clone()) else {
                continue;
            };
            let Some(ri) = self.rots.iter().position(|r| n.pki.named.get(&r.old.name) == Some(&cert)) else {
                continue;
            };
            let copy = self.staged_path(&cert, "old");
            let old_pem = self.rots[ri].old_pem.clone();
            self.touch(p, node, &copy, Some(old_pem.into_bytes()));
            self.staged.entry(node.to_string()).or_default().push(copy.clone());
            let flag = pair.cert.clone();
            self.edit(p, node, &manifest, |b| edit::set_flag(b, &flag, &copy));
            self.splits.insert((node.to_string(), pair.component.clone()), (ri, cert, key, manifest));
        }
    }

    /// S4 on one node: every leaf and kubeconfig client cert signed by an old CA is re-signed
    /// by its successor (keeping subject, SANs, usages and key); self-signed leaves the
    /// playbook re-homes move onto the new CA; the signing pair switches to the new CA.
    fn resign_all(&mut self, node: &str, p: &mut Pending) {
        let pb = self.input.playbook;
        let rehome_paths: BTreeMap<String, usize> = pb
            .rotation
            .as_ref()
            .map(|r| r.rehome.clone())
            .unwrap_or_default()
            .iter()
            .filter_map(|f| {
                let path = self.node(node).pki.named.get(f)?.clone();
                let signer = pb.file(f)?.signer.clone()?;
                let ri = self.rots.iter().position(|r| r.old.name == signer)?;
                Some((path, ri))
            })
            .collect();
        let sans = self.node(node).node_sans.clone();
        for (path, content) in self.model_files(node) {
            match &content {
                Content::Leaf { signer } => {
                    let (ri, rehome) = match (self.rot_of_old(signer), rehome_paths.get(&path)) {
                        (Some(ri), _) => (ri, false),
                        (None, Some(&ri)) if *signer != self.rots[ri].new_id => (ri, true),
                        _ => continue,
                    };
                    let extra = if rehome_paths.contains_key(&path) { sans.clone() } else { Vec::new() };
                    let Some(bytes) = self.vfs.get(node, &path) else {
                        continue;
                    };
                    match self.resign_text(&bytes, ri, &extra, rehome) {
                        Ok(new) => self.touch(p, node, &path, Some(new)),
                        Err(e) => self.problems.push(format!("{node}: {path}: {e}")),
                    }
                    p.model.insert(path, Content::Leaf { signer: self.rots[ri].new_id.clone() });
                }
                Content::Kubeconfig { client_signer: Some(s), trusts } => {
                    let Some(ri) = self.rot_of_old(s) else {
                        continue;
                    };
                    let Some(bytes) = self.vfs.get(node, &path) else {
                        continue;
                    };
                    let Ok(kc) = kubeconfig::parse_kubeconfig(&bytes) else {
                        continue;
                    };
                    let signed_by_old = |c: &crate::pki::PemContent| c.certs.first().is_some_and(|l| find_issuer(l, &[&self.rots[ri].old.cert]).is_some());
                    let fields: Vec<String> =
                        kc.embedded.iter().filter(|e| e.field.key == "client-certificate-data" && e.content.as_ref().is_ok_and(signed_by_old)).map(|e| e.field.display()).collect();
                    for field in &fields {
                        let new = edit::kubeconfig_data(&bytes, field).and_then(|pem| self.resign_text(&pem, ri, &[], false));
                        match new {
                            Ok(pem) => self.edit(p, node, &path, |b| edit::edit_kubeconfig(b, field, |_| Ok(pem))),
                            Err(e) => self.problems.push(format!("{node}: {path}: {field}: {e}")),
                        }
                    }
                    if fields.is_empty()
                        && let Some(r) = kc.references.iter().find(|r| r.field.key == "client-certificate")
                    {
                        let target = kubeconfig::resolve_reference(&path, &r.path);
                        if let Some(tb) = self.vfs.get(node, &target) {
                            match self.resign_text(&tb, ri, &[], false) {
                                Ok(new) => self.touch(p, node, &target, Some(new)),
                                Err(e) => self.problems.push(format!("{node}: {target} (the client certificate of {path}): {e}")),
                            }
                        }
                    }
                    p.model.insert(path, Content::Kubeconfig { client_signer: Some(self.rots[ri].new_id.clone()), trusts: trusts.clone() });
                }
                _ => {}
            }
        }
        self.switch_signing_pairs(node, p);
    }

    fn switch_signing_pairs(&mut self, node: &str, p: &mut Pending) {
        let pb = self.input.playbook;
        for pair in &pb.pairs {
            if let Some((ri, _, _, manifest)) = self.splits.get(&(node.to_string(), pair.component.clone())).cloned() {
                let Some((cert_path, key_path)) = self.holder(ri, node) else {
                    continue;
                };
                let (sc, sk) = (self.staged_path(&cert_path, "new"), self.staged_path(&key_path, "new"));
                let (cf, kf) = (pair.cert.clone(), pair.key.clone());
                self.edit(p, node, &manifest, |b| edit::set_flag(b, &cf, &sc).and_then(|b| edit::set_flag(&b, &kf, &sk)));
                continue;
            }
            // A pair the operator already keeps apart from the CA bundle: the new CA goes in it.
            let n = self.node(node);
            let (Some(cert), Some(key)) = (n.pki.refs.get(&(pair.component.clone(), pair.cert.clone())).cloned(), n.pki.refs.get(&(pair.component.clone(), pair.key.clone())).cloned()) else {
                continue;
            };
            let Some(bytes) = self.vfs.get(node, &cert) else {
                continue;
            };
            let shas = edit::cert_shas(&bytes).unwrap_or_default();
            let Some(ri) = self.rots.iter().position(|r| shas.len() == 1 && shas[0] == r.old.cert.sha256) else {
                continue;
            };
            if n.pki.named.get(&self.rots[ri].old.name) == Some(&cert) {
                continue;
            }
            let pem = self.rots[ri].new_pem.clone();
            self.touch(p, node, &cert, Some(pem.into_bytes()));
            self.write_key(p, node, &key, ri);
        }
    }

    fn write_key(&mut self, p: &mut Pending, node: &str, path: &str, ri: usize) {
        let key = self.rots[ri].key_pem.clone();
        self.touch(p, node, path, Some(key.into_bytes()));
        p.private.insert(path.to_string(), self.rots[ri].old.name.clone());
        self.private.insert((node.to_string(), path.to_string()), self.rots[ri].old.name.clone());
    }

    /// S5 on one node: trusts drop the old CA; the CA files become the new CA and its key;
    /// the signing pair points back at them.
    fn prune(&mut self, node: &str, p: &mut Pending) {
        self.retrust(node, p, false);
        for i in 0..self.rots.len() {
            if let Some((cert, key)) = self.holder(i, node) {
                let (pem, sha) = (self.rots[i].new_pem.clone(), self.rots[i].old.cert.sha256.clone());
                self.edit(p, node, &cert, |b| edit::add_cert(b, &pem).and_then(|b| edit::remove_cert(&b, &sha)));
                self.write_key(p, node, &key, i);
            }
        }
        let pb = self.input.playbook;
        for pair in &pb.pairs {
            if let Some((_, cert, key, manifest)) = self.splits.get(&(node.to_string(), pair.component.clone())).cloned() {
                let (cf, kf) = (pair.cert.clone(), pair.key.clone());
                self.edit(p, node, &manifest, |b| edit::set_flag(b, &cf, &cert).and_then(|b| edit::set_flag(&b, &kf, &key)));
            }
        }
    }

    /// A node's changes in one step, as file ops.
    fn ops(&mut self, node: &str, p: &Pending) -> Vec<FileOp> {
        let mut out = Vec::new();
        for path in &p.touched {
            let old = p.before.get(path).cloned().flatten();
            let new = self.vfs.get(node, path);
            if old == new {
                continue;
            }
            let private = p.private.contains_key(path) || self.private.contains_key(&(node.to_string(), path.clone()));
            match self.file_op(path, old.as_deref(), new.as_deref(), p.private.get(path).cloned(), private) {
                Ok(op) => out.push(op),
                Err(e) => self.problems.push(format!("{node}: {path}: {e}")),
            }
        }
        out
    }

    fn file_op(&self, path: &str, old: Option<&[u8]>, new: Option<&[u8]>, key_of: Option<String>, private: bool) -> Result<FileOp, String> {
        let action = match (old, new) {
            (None, Some(_)) => Action::Create,
            (Some(_), None) => Action::Remove,
            _ => Action::Modify,
        };
        let is_kubeconfig = old.is_some_and(kubeconfig::looks_like_kubeconfig);
        let recipe = match (new, &key_of) {
            (None, _) => Recipe::Remove,
            (Some(_), Some(ca)) => Recipe::CaKey { ca: ca.clone() },
            (Some(n), None) if is_kubeconfig => {
                let o = old.expect("a kubeconfig being modified exists");
                let before = kubeconfig::parse_kubeconfig(o)?;
                let after = kubeconfig::parse_kubeconfig(n)?;
                let mut fields = Vec::new();
                for e in &after.embedded {
                    let was = before.embedded.iter().find(|b| b.field.display() == e.field.display()).map(|b| b.raw.split_whitespace().collect::<String>());
                    if was.as_deref() != Some(e.raw.split_whitespace().collect::<String>().as_str()) {
                        let pem = edit::kubeconfig_data(n, &e.field.display())?;
                        fields.push(KubeconfigField { field: e.field.display(), pem: String::from_utf8(pem).map_err(|_| "new data is not text")? });
                    }
                }
                Recipe::Kubeconfig { fields }
            }
            (Some(n), None) if edit::has_private_key(n) => Recipe::Certs { certs: edit::cert_pems(n)? },
            (Some(n), None) => Recipe::Text { text: String::from_utf8(n.to_vec()).map_err(|_| "not text")? },
        };
        // The recipe must rebuild exactly the planned bytes, and never carry a key.
        if edit::has_private_key(text_of_recipe(&recipe).as_bytes()) {
            return Err("would put private key material in the plan; refused".into());
        }
        let keys = |ca: &str| self.rots.iter().find(|r| r.old.name == ca).map(|r| r.key_pem.clone());
        let rebuilt = recipe.apply(old, &keys)?;
        if rebuilt.as_deref() != new {
            return Err("the recipe does not rebuild the planned bytes (kcert bug): refused".into());
        }
        let mode = if private { 0o600 } else { 0o644 };
        Ok(FileOp {
            path: path.to_string(),
            action,
            old_sha256: old.map(crate::renew::sha256),
            new_sha256: new.map(crate::renew::sha256),
            mode,
            private,
            bytes: new.map_or(0, |n| n.len() as u64),
            old_bytes: old.map_or(0, |o| o.len() as u64),
            changes: self.describe(old, new, private),
            recipe,
        })
    }

    fn ca_label(&self, c: &CertInfo) -> String {
        format!("{} [{}]", c.subject, &c.sha256[..8])
    }

    /// What changes in a file, for a reviewer: CAs added and removed, leaves re-signed,
    /// kubeconfig fields, manifest flags. Never any key bytes.
    fn describe(&self, old: Option<&[u8]>, new: Option<&[u8]>, private: bool) -> Vec<String> {
        if private {
            let ca = self.rots.iter().find(|r| new.is_some_and(|n| n == r.key_pem.as_bytes())).map(|r| format!("the private key of {}", self.ca_label(&r.new_cert)));
            return vec![match new {
                None => "removed (a private key; its backup stays 0600 on the node)".to_string(),
                Some(_) => format!("{} (not shown; 0600)", ca.unwrap_or_else(|| "a private key".into())),
            }];
        }
        let (Some(o), Some(n)) = (old, new) else {
            return match (old, new) {
                (None, Some(n)) => certs_lines("+", n, self),
                (Some(_), None) => vec!["removed".into()],
                _ => Vec::new(),
            };
        };
        if let (Ok(before), Ok(after)) = (manifest_flags(&String::from_utf8_lossy(o)), manifest_flags(&String::from_utf8_lossy(n)))
            && !before.is_empty()
            && !String::from_utf8_lossy(o).contains("-----BEGIN")
        {
            let lines: Vec<String> = after.iter().filter(|(k, v)| before.get(*k) != Some(v)).map(|(k, v)| format!("{k}: {} -> {v}", before.get(k).map(String::as_str).unwrap_or("(unset)"))).collect();
            if !lines.is_empty() {
                return lines;
            }
        }
        if kubeconfig::looks_like_kubeconfig(o) {
            let (Ok(b), Ok(a)) = (kubeconfig::parse_kubeconfig(o), kubeconfig::parse_kubeconfig(n)) else {
                return vec!["kubeconfig".into()];
            };
            let mut lines = Vec::new();
            for e in &a.embedded {
                let was = b.embedded.iter().find(|x| x.field.display() == e.field.display());
                if was.map(|w| &w.raw) == Some(&e.raw) {
                    continue;
                }
                let (Ok(newc), Some(Ok(oldc))) = (&e.content, was.map(|w| &w.content)) else {
                    continue;
                };
                for l in cert_diff(&oldc.certs, &newc.certs, self) {
                    lines.push(format!("{}: {l}", e.field.display()));
                }
            }
            return lines;
        }
        match (parse_pem(o), parse_pem(n)) {
            (Ok(a), Ok(b)) => cert_diff(&a.certs, &b.certs, self),
            _ => vec!["changed".into()],
        }
    }
}

fn text_of_recipe(r: &Recipe) -> String {
    match r {
        Recipe::Text { text } => text.clone(),
        Recipe::Certs { certs } => certs.concat(),
        _ => String::new(),
    }
}

fn certs_lines(sign: &str, bytes: &[u8], p: &Planner<'_>) -> Vec<String> {
    match parse_pem(bytes) {
        Ok(c) if !c.certs.is_empty() => c.certs.iter().map(|c| format!("{sign} {}", p.ca_label(c))).collect(),
        _ => vec![format!("{sign} {} bytes", bytes.len())],
    }
}

/// Certificates added, removed and kept; a leaf re-signed reads as one line.
fn cert_diff(old: &[CertInfo], new: &[CertInfo], p: &Planner<'_>) -> Vec<String> {
    let mut lines = Vec::new();
    if let (Some(a), Some(b)) = (old.first(), new.first())
        && !a.is_ca
        && !b.is_ca
        && a.subject == b.subject
        && a.sha256 != b.sha256
    {
        lines.push(format!(
            "re-signed {}: issuer {} -> {}, expires {} -> {}",
            a.subject,
            issuer_label(a, p),
            issuer_label(b, p),
            crate::render::rfc3339(a.not_after),
            crate::render::rfc3339(b.not_after)
        ));
        let (o, n): (Vec<&CertInfo>, Vec<&CertInfo>) = (old[1..].iter().collect(), new[1..].iter().collect());
        for c in &o {
            if !n.iter().any(|x| x.sha256 == c.sha256) {
                lines.push(format!("- {}", p.ca_label(c)));
            }
        }
        for c in &n {
            if !o.iter().any(|x| x.sha256 == c.sha256) {
                lines.push(format!("+ {}", p.ca_label(c)));
            }
        }
        return lines;
    }
    for c in old {
        if !new.iter().any(|x| x.sha256 == c.sha256) {
            lines.push(format!("- {}", p.ca_label(c)));
        }
    }
    for c in new {
        if !old.iter().any(|x| x.sha256 == c.sha256) {
            lines.push(format!("+ {}", p.ca_label(c)));
        } else {
            lines.push(format!("= {}", p.ca_label(c)));
        }
    }
    lines
}

fn issuer_label(c: &CertInfo, p: &Planner<'_>) -> String {
    let known: Vec<&CertInfo> = p.rots.iter().flat_map(|r| [&r.old.cert, &r.new_cert]).collect();
    match find_issuer(c, &known) {
        Some(ca) => p.ca_label(ca),
        None => format!("{} (self-signed or unknown)", c.issuer),
    }
}

fn add_trust(c: &Content, ids: &[CaId]) -> Content {
    match c {
        Content::Trust { cas } => Content::Trust { cas: cas.iter().cloned().chain(ids.iter().cloned()).collect() },
        Content::Kubeconfig { client_signer, trusts } => Content::Kubeconfig { client_signer: client_signer.clone(), trusts: trusts.iter().cloned().chain(ids.iter().cloned()).collect() },
        other => other.clone(),
    }
}

fn drop_trust(c: &Content, ids: &[CaId]) -> Content {
    let keep = |s: &BTreeSet<CaId>| s.iter().filter(|x| !ids.contains(x)).cloned().collect();
    match c {
        Content::Trust { cas } => Content::Trust { cas: keep(cas) },
        Content::Kubeconfig { client_signer, trusts } => Content::Kubeconfig { client_signer: client_signer.clone(), trusts: keep(trusts) },
        other => other.clone(),
    }
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

/// Control-plane nodes one at a time (etcd members among them: quorum holds), then
/// workers `batch_size` at a time.
pub fn batches(nodes: &[NodeInput<'_>], batch_size: usize) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = nodes.iter().filter(|n| n.control_plane).map(|n| vec![n.name.to_string()]).collect();
    let workers: Vec<String> = nodes.iter().filter(|n| !n.control_plane).map(|n| n.name.to_string()).collect();
    out.extend(workers.chunks(batch_size.max(1)).map(<[String]>::to_vec));
    out
}

/// Substitutes an API step's placeholders.
pub fn render_script(script: &str, kubeconfig: &str, bundle_pem: &str, new_pem: &str, old_pem: &str) -> String {
    use base64::Engine;
    let marker = |pem: &str| pem.lines().filter(|l| !l.starts_with("-----") && l.len() >= 40).nth(1).unwrap_or("").to_string();
    script
        .replace("{kubeconfig}", &crate::transport::script::quote(kubeconfig))
        .replace("{ca_b64}", &base64::engine::general_purpose::STANDARD.encode(bundle_pem))
        .replace("{new_marker}", &marker(new_pem))
        .replace("{old_marker}", &marker(old_pem))
}

/// Makes the whole plan: stages, steps, file ops with recipes, restarts and gates; then
/// proves it. Every problem found is returned (nothing is half planned).
pub fn plan(input: &Input<'_>, olds: Vec<OldCa>, new_cas: Vec<NewCaInput>) -> Result<RotationPlan, Vec<String>> {
    let pb = input.playbook;
    let facts = facts_of(&input.nodes);
    let model = build::model(pb, &facts);
    let mut problems = Vec::new();
    let mut rots = Vec::new();
    for old in olds {
        let Some(n) = new_cas.iter().find(|n| n.name == old.name) else {
            problems.push(format!("no new CA was made for {}", old.name));
            continue;
        };
        let new_cert = match parse_pem(n.cert_pem.as_bytes()).ok().and_then(|c| c.certs.into_iter().next()) {
            Some(c) => c,
            None => {
                problems.push(format!("the new {} CA does not parse", old.name));
                continue;
            }
        };
        let signer = match Signer::new(&new_cert, n.key_pem.as_bytes(), input.now) {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!("the new {} CA: {e}", old.name));
                continue;
            }
        };
        let old_pem = format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", b64_lines(&old.cert.der));
        rots.push(Rot { new_id: format!("{}@{}", old.name, &new_cert.sha256[..8]), new_pem: n.cert_pem.clone(), key_pem: n.key_pem.clone(), old_pem, new_cert, signer, old });
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut notes = Vec::new();
    for r in &rots {
        if r.old.cert.not_after <= input.now {
            notes.push(format!(
                "the old {} CA {} expired on {}: edges that rely on it are already broken until S4 re-signs them",
                r.old.alias,
                r.old.cert.subject,
                crate::render::rfc3339(r.old.cert.not_after)
            ));
        }
    }
    let mut planner = Planner {
        input,
        state: model.files.clone(),
        model,
        vfs: Vfs { base: input.nodes.iter().map(|n| (n.name, n.files)).collect(), cur: BTreeMap::new() },
        v: Validity { now: input.now, days: input.opts.leaf_days },
        rots,
        splits: BTreeMap::new(),
        staged: BTreeMap::new(),
        private: BTreeMap::new(),
        problems: Vec::new(),
        index: input.nodes.iter().enumerate().map(|(i, n)| (n.name.to_string(), i)).collect(),
        holders: Vec::new(),
    };
    planner.holders = planner.rots.iter().map(|r| Planner::find_key_holders(input, r)).collect();
    // (node, component) -> the model's component: restarts are decided per node.
    let model_components: BTreeMap<(String, String), usize> = planner.model.components.iter().enumerate().map(|(i, c)| ((c.node.clone(), c.name.clone()), i)).collect();
    let node_batches = batches(&input.nodes, input.opts.batch_size);
    let quorum = quorum_edges(pb);
    let gates_for = |nodes: &[String]| -> Vec<Check> { input.checks.iter().filter(|c| nodes.contains(&c.from) || nodes.contains(&c.to) || quorum.contains(&c.edge)).cloned().collect() };
    let mut stages: Vec<StagePlan> = Vec::new();
    let offline = input.opts.offline;

    stages.push(StagePlan {
        id: "S0".into(),
        name: STAGES[0].1.into(),
        checks: {
            let mut v = vec![
                "every node answers: SSH, host key, sudo (discovery read every node)".to_string(),
                "every file the plan was made from is unchanged (sha256)".to_string(),
                "free space for the backups and new files, in every directory written, on every node".to_string(),
                "the trust graph verifies as the files stand (kcert verify)".to_string(),
            ];
            if !offline {
                v.push("clock skew under 30s on every node".into());
                v.push("etcd has quorum: every member answers /health through its client TLS".into());
            }
            v
        },
        steps: Vec::new(),
    });

    // S1: the new CAs onto the nodes that hold the old ones' keys.
    let mut s1 = Batch { nodes: Vec::new(), ops: Vec::new(), gates: Vec::new() };
    let mut s1_nodes: Vec<String> = Vec::new();
    for hs in &planner.holders {
        for (n, _, _) in hs {
            if !s1_nodes.contains(n) {
                s1_nodes.push(n.clone());
            }
        }
    }
    s1_nodes.sort_by_key(|n| planner.index[n]);
    for node in &s1_nodes {
        let mut p = Pending::default();
        for i in 0..planner.rots.len() {
            let Some((cert, key)) = planner.holder(i, node) else {
                continue;
            };
            let (sc, sk) = (planner.staged_path(&cert, "new"), planner.staged_path(&key, "new"));
            if planner.vfs.get(node, &sc).is_some() || planner.vfs.get(node, &sk).is_some() {
                planner.problems.push(format!("{node}: {sc} already exists: a rotation left unfinished? (kcert runs)"));
            }
            let pem = planner.rots[i].new_pem.clone();
            planner.touch(&mut p, node, &sc, Some(pem.into_bytes()));
            planner.write_key(&mut p, node, &sk, i);
            planner.staged.entry(node.clone()).or_default().extend([sc, sk]);
        }
        let files = planner.ops(node, &p);
        s1.ops.push(NodeOps { node: node.clone(), files, restarts: Vec::new(), model: Vec::new() });
    }
    s1.nodes = s1_nodes.clone();
    stages.push(StagePlan { id: "S1".into(), name: STAGES[1].1.into(), checks: Vec::new(), steps: vec![StepPlan::Batch(s1)] });

    let restarts = |planner: &Planner<'_>, node: &str, changed: &[String], model_changed: &BTreeSet<String>| -> Vec<String> {
        let n = planner.node(node);
        let mut out = Vec::new();
        for c in &pb.components {
            if !n.pki.components.contains_key(&c.name) {
                continue;
            }
            let mut reads: BTreeSet<&str> = n.pki.refs.iter().filter(|((comp, _), _)| comp == &c.name).map(|(_, p)| p.as_str()).collect();
            reads.extend(pb.files.iter().filter(|f| f.read_by.as_deref() == Some(c.name.as_str())).filter_map(|f| n.pki.named.get(&f.name).map(String::as_str)));
            reads.extend(c.source());
            let reads_changed = model_components.get(&(node.to_string(), c.name.clone())).is_some_and(|&i| planner.model.components[i].reads.iter().any(|r| model_changed.contains(r)));
            if reads_changed
                || changed.iter().any(|p| reads.contains(p.as_str()))
            {
                out.push(c.name.clone());
            }
        }
        out
    };

    type StageFn<'x> = fn(&mut Planner<'x>, &str, &mut Pending);
    let trust: StageFn = Planner::trust_both;
    let sign: StageFn = Planner::resign_all;
    let prune: StageFn = Planner::prune;
    let api_node = input.nodes.iter().find(|n| n.control_plane).map(|n| n.name.to_string()).unwrap_or_default();
    let api_calls = |when: ApiWhen, planner: &Planner<'_>| -> Vec<StepPlan> {
        let Some(rot) = &pb.rotation else {
            return Vec::new();
        };
        let api_ca = rot.cas.get(&rot.api_ca);
        let Some(cluster) = planner.rots.iter().find(|r| api_ca == Some(&r.old.name)).or(planner.rots.first()) else {
            return Vec::new();
        };
        let kc = rot.kubeconfig.as_ref().and_then(|k| pb.file(k)).map(|f| f.path.clone()).unwrap_or_default();
        let bundle = match when {
            ApiWhen::Trust => format!("{}{}", cluster.old_pem, cluster.new_pem),
            ApiWhen::Prune => cluster.new_pem.clone(),
        };
        let skipped = if offline {
            Some("offline (--root): nothing is run".to_string())
        } else if !input.opts.kubernetes_api {
            Some("kubernetes_api: false in the inventory (no API server reachable)".to_string())
        } else if !api_ca.is_some_and(|c| planner.rots.iter().any(|r| &r.old.name == c)) {
            Some(format!("the {} CA is not rotated (--ca): API objects carry only it", rot.api_ca))
        } else {
            None
        };
        rot.api
            .iter()
            .filter(|a| a.when == when)
            .map(|a| {
                StepPlan::Api(ApiCall { name: a.name.clone(), node: api_node.clone(), script: render_script(&a.script, &kc, &bundle, &cluster.new_pem, &cluster.old_pem), skipped: skipped.clone() })
            })
            .collect()
    };

    for (id, f) in [("S2", trust), ("S4", sign), ("S5", prune)] {
        let mut steps = Vec::new();
        for nodes in &node_batches {
            let mut batch = Batch { nodes: nodes.clone(), ops: Vec::new(), gates: Vec::new() };
            for node in nodes {
                let mut p = Pending::default();
                f(&mut planner, node, &mut p);
                let files = planner.ops(node, &p);
                let changed: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
                let model_changed: BTreeSet<String> = p.model.keys().cloned().collect();
                for (path, content) in &p.model {
                    planner.state.insert(FileId::new(node, path), content.clone());
                }
                let model = p.model.into_iter().map(|(path, content)| ModelWrite { path, content }).collect();
                let restarts = if files.is_empty() { Vec::new() } else { restarts(&planner, node, &changed, &model_changed) };
                batch.ops.push(NodeOps { node: node.clone(), files, restarts, model });
            }
            if batch.ops.iter().any(|o| !o.files.is_empty()) {
                if batch.ops.iter().any(|o| !o.restarts.is_empty()) {
                    batch.gates = gates_for(nodes);
                }
                steps.push(StepPlan::Batch(batch));
            }
        }
        if id == "S5" {
            steps.extend(api_calls(ApiWhen::Prune, &planner));
            // Clean-up: the staged copies go; the last gate is every edge, as `verify --live`.
            let mut clean = Batch { nodes: Vec::new(), ops: Vec::new(), gates: input.checks.clone() };
            for (node, paths) in planner.staged.clone() {
                let mut p = Pending::default();
                for path in paths {
                    planner.touch(&mut p, &node, &path, None);
                }
                let files = planner.ops(&node, &p);
                clean.nodes.push(node.clone());
                clean.ops.push(NodeOps { node, files, restarts: Vec::new(), model: Vec::new() });
            }
            clean.nodes.sort_by_key(|n| planner.index[n]);
            clean.ops.sort_by_key(|o| planner.index[&o.node]);
            if !clean.ops.is_empty() {
                steps.push(StepPlan::Batch(clean));
            }
        }
        let idx = STAGES.iter().position(|(s, _)| *s == id).expect("known stage");
        stages.push(StagePlan { id: id.into(), name: STAGES[idx].1.into(), checks: Vec::new(), steps });
        if id == "S2" {
            stages.push(StagePlan { id: "S3".into(), name: STAGES[3].1.into(), checks: Vec::new(), steps: api_calls(ApiWhen::Trust, &planner) });
        }
        // The signing pair is one matching cert and key at every boundary.
        let pair_problems = planner.check_pairs(id);
        planner.problems.extend(pair_problems);
    }
    if !planner.problems.is_empty() {
        let mut p = planner.problems;
        p.dedup();
        return Err(p);
    }

    let mut fact_list: Vec<Fact> = input.nodes.iter().flat_map(|n| n.files.iter().map(|(p, b)| Fact { node: n.name.to_string(), path: p.clone(), sha256: crate::renew::sha256(b) })).collect();
    fact_list.sort();
    let cas: Vec<NewCa> = planner
        .rots
        .iter()
        .enumerate()
        .map(|(ri, r)| {
            let (cert_path, key_path) = planner.holders[ri].first().map(|(_, c, k)| (c.clone(), k.clone())).unwrap_or_default();
            NewCa {
                alias: r.old.alias.clone(),
                name: r.old.name.clone(),
                staged_cert: planner.staged_path(&cert_path, "new"),
                staged_key: planner.staged_path(&key_path, "new"),
                path: cert_path,
                key_path,
                old_id: r.old.id.clone(),
                old_subject: r.old.cert.subject.clone(),
                old_sha256: r.old.cert.sha256.clone(),
                old_not_after: r.old.cert.not_after,
                new_id: r.new_id.clone(),
                new_subject: r.new_cert.subject.clone(),
                new_sha256: r.new_cert.sha256.clone(),
                new_not_after: r.new_cert.not_after,
                key_type: KeyType::of(&r.new_cert).map(|k| k.label().to_string()).unwrap_or_default(),
                cert_pem: r.new_pem.clone(),
            }
        })
        .collect();
    notes.extend(default_notes(pb, &planner));
    let mut plan = RotationPlan {
        version: PLAN_VERSION,
        kind: KIND.into(),
        id: input.id.clone(),
        created_at: crate::render::rfc3339(input.now),
        cluster: input.cluster.clone(),
        distribution: pb.name.clone(),
        target: input.target.clone(),
        options: input.opts.clone(),
        facts: fact_list,
        cas,
        stages,
        proof: Proof::default(),
        notes,
    };
    let mp = plan.model_plan();
    match prove::prove(&planner.model, &mp) {
        Ok(()) => {}
        // S0 has no steps: a violation there is how the cluster stands before anything changes.
        Err(v) if v.stage.starts_with("S0") => {
            return Err(vec![format!("the cluster's trust is already broken before the rotation: edge {} breaks: {}; fix it first (kcert verify)", v.edge, v.why)]);
        }
        Err(v) => return Err(vec![format!("the plan was refused by its proof: {v}")]),
    }
    plan.proof = Proof { edges: planner.model.edges.len(), steps: mp.stages.iter().map(|s| s.steps.len()).sum() };
    Ok(plan)
}

fn b64_lines(der: &[u8]) -> String {
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD.encode(der);
    b.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("base64 is ASCII")).collect::<Vec<_>>().join("\n")
}

fn default_notes(pb: &Playbook, p: &Planner<'_>) -> Vec<String> {
    let mut notes = Vec::new();
    if pb.files.iter().any(|f| f.kind == FileKind::Pubkey) {
        notes.push("the service-account signing key pair (sa.key/sa.pub) is not a CA: it is not rotated, and tokens stay valid".into());
    }
    for ((node, comp), (ri, cert, key, _)) in &p.splits {
        notes.push(format!(
            "{node}: {comp} signs with {cert} and {key}; while {cert} holds both CAs, it signs with a copy of the old CA (S2), then with the new one (S4), then with {cert} again (S5): one matching cert and key throughout ({})",
            p.rots[*ri].old.alias
        ));
    }
    let rehomed: Vec<String> = p
        .input
        .nodes
        .iter()
        .filter(|n| {
            pb.rotation.as_ref().is_some_and(|r| {
                r.rehome
                    .iter()
                    .any(|f| n.pki.named.get(f).and_then(|path| n.files.get(path)).and_then(|b| first_cert(b)).is_some_and(|c| p.rots.iter().all(|x| find_issuer(&c, &[&x.old.cert]).is_none())))
            })
        })
        .map(|n| n.name.to_string())
        .collect();
    if !rehomed.is_empty() {
        notes.push(format!(
            "self-signed kubelet serving certificates on {} move onto the new cluster CA in S4 (as `kcert renew --certs kubelet-serving` would), with the node's name and address in their SANs",
            rehomed.join(", ")
        ));
    }
    notes
}

impl Planner<'_> {
    /// Every signing pair of every node: the cert file's first certificate and the key file
    /// as the plan leaves them after stage `stage` must be one matching pair.
    fn check_pairs(&self, stage: &str) -> Vec<String> {
        let pb = self.input.playbook;
        let mut out = Vec::new();
        for n in &self.input.nodes {
            for pair in &pb.pairs {
                let Some(comp) = pb.component(&pair.component) else {
                    continue;
                };
                if !n.pki.components.contains_key(&pair.component) {
                    continue;
                }
                let Some(manifest) = comp.manifest.as_ref().and_then(|m| self.vfs.get(n.name, m)) else {
                    continue;
                };
                let Ok(flags) = manifest_flags(&String::from_utf8_lossy(&manifest)) else {
                    continue;
                };
                let (Some(cp), Some(kp)) = (flags.get(&pair.cert), flags.get(&pair.key)) else {
                    continue;
                };
                let (Some(c), Some(k)) = (self.vfs.get(n.name, cp).and_then(|b| first_cert(&b)), self.vfs.get(n.name, kp)) else {
                    continue;
                };
                if !key_matches(&c, &k).unwrap_or(false) {
                    out.push(format!("after {stage}, {}: {} {cp} and {} {kp} would not be one matching cert and key (kcert bug): refused", n.name, pair.cert, pair.key));
                }
            }
        }
        out
    }
}
