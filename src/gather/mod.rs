//! Owns: gathering the facts of a fleet: per node, the distribution, the PKI discovery finds,
//! and the bytes of every file a plan or a report needs (keys kept in memory only).
//! Must not: decide anything from the facts (plans and reports do) or change a node.

pub mod discover;
pub mod facts;
pub mod units;

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Error, Result};
use crate::pki::kubeconfig;
use crate::playbook::Playbook;
use crate::reach::fleet::{Connected, Fleet};
use crate::reach::transport::{FileData, NodeFailure, Snapshot, Survey, Transport};
pub use facts::NodeFacts;
use facts::Source;

/// Everything gathered from a fleet: the playbook the nodes share, each node's facts, and
/// the live connections to them.
pub struct Gathered {
    pub playbook: Playbook,
    pub nodes: Vec<NodeFacts>,
    pub connected: Connected,
    /// What each control-plane node answered to the caller's own question (`gather_asking`).
    pub asked: BTreeMap<String, Snapshot>,
}

impl Gathered {
    pub fn offline(&self) -> bool {
        self.nodes.iter().all(|n| n.offline)
    }

    /// What a plan is made from: the files' bytes and what discovery mapped. The certificates
    /// discovery listed (each parsed whole, its DER kept) are for the reports that show them
    /// (`expiry`); a planner parses what it needs from the bytes, so they are let go (about a
    /// third of the gathered facts' memory: 42 MB of 131 at 5,000 nodes).
    pub fn for_planning(mut self) -> Gathered {
        for n in &mut self.nodes {
            n.pki.certs = Vec::new();
        }
        self
    }
}

/// Connects to every node (at most `concurrency` at once), detects its distribution unless the
/// fleet names one, discovers its PKI and reads the certificate, kubeconfig, manifest and key
/// files involved (the keys at the playbook's paths asked in discovery's first round trip,
/// with the rest). A node that cannot be read, or where kcert finds no distribution or no PKI,
/// stops it: nothing was changed.
pub async fn gather(fleet: &Fleet, extra_paths: &[String]) -> Result<Gathered> {
    gathering(fleet, None, extra_paths, None).await
}

/// `gather`, asking each control-plane node `also` in the same round trip as its discovery
/// (the answers in `Gathered::asked`).
pub async fn gather_asking(fleet: &Fleet, extra_paths: &[String], also: &Survey) -> Result<Gathered> {
    gathering(fleet, None, extra_paths, Some(also)).await
}

/// `gather`, over the connections of `reuse` where it has one (a run reading its nodes back).
pub async fn gather_reusing(fleet: &Fleet, reuse: Option<&Connected>, extra_paths: &[String]) -> Result<Gathered> {
    gathering(fleet, reuse, extra_paths, None).await
}

async fn gathering(fleet: &Fleet, reuse: Option<&Connected>, extra_paths: &[String], also: Option<&Survey>) -> Result<Gathered> {
    let embedded = crate::playbook::embedded();
    let held = facts::Held::default();
    let results = fleet
        .run_reusing(reuse, &|_| {}, |t, target| {
            let (embedded, held) = (&embedded, &held);
            async move {
                let (pb, facts, asked) = {
                    let also = also.filter(|_| target.goes_alone());
                    let t = discover::surveyed_with(t.as_ref(), &discover::candidates(fleet.playbook.as_ref(), embedded), extra_paths, also, discover::Keys::Read).await?;
                    let asked = also.map(|a| t.snapshot().answers_to(a));
                    let t = &t;
                    let pb = match &fleet.playbook {
                        Some(p) => p.clone(),
                        None => {
                            let name = discover::detect(t, embedded).await?;
                            embedded.iter().find(|p| Some(&p.name) == name.as_ref()).cloned().ok_or_else(|| NodeFailure::command("no known distribution found (pass --distribution)"))?
                        }
                    };
                    let mut pki = discover::discover(t, Some(&pb), extra_paths).await?;
                    if pki.certs.is_empty() && pki.errors.is_empty() {
                        return Err(NodeFailure::command(format!("no PKI files found (looked where the {} playbook says, and in {})", pb.name, pb.scan.join(", "))));
                    }
                    let mut paths: BTreeSet<String> = pki.named.values().cloned().collect();
                    // The components' own manifests and configs: a rotation edits some, and a saved
                    // plan is refused when one moved.
                    paths.extend(pki.sources.values().flatten().cloned());
                    for c in &pki.certs {
                        if c.source != Source::Endpoint {
                            paths.insert(c.path.clone());
                        }
                    }
                    // Kubeconfigs of servers outside the cluster (webhooks) the components name.
                    for c in &pb.components {
                        if let Some(flags) = pki.components.get(&c.name) {
                            paths.extend(c.external.iter().filter_map(|x| flags.get(&x.key)).filter(|p| p.starts_with('/')).cloned());
                        }
                    }
                    // Each CA's key, wherever it is (a flag, the playbook's path, beside the cert).
                    for c in pb.files.iter().filter(|f| f.key.is_some() && f.signer.is_none()) {
                        if let Some(cert) = pki.named.get(&c.name) {
                            paths.extend(facts::key_beside(cert));
                        }
                    }
                    // Where a node's join token may be: a CA rotation rewrites the hash it pins.
                    paths.extend(pb.reissue.iter().flat_map(|r| r.rotate_ca.iter()).flat_map(|r| r.tokens.iter().cloned()));
                    let wanted: Vec<String> = paths.into_iter().collect();
                    let mut files = found(&wanted, t.read_files(&wanted).await?, held, &mut pki.errors);
                    // The files a kubeconfig points at, every user's key among them (the kubelet's
                    // rotating pem holds both cert and key).
                    let mut refs: Vec<String> = Vec::new();
                    for (p, b) in files.iter().filter(|(_, b)| kubeconfig::looks_like_kubeconfig(b)) {
                        for r in kubeconfig::parse_kubeconfig(b).map(|kc| kc.references).unwrap_or_default() {
                            let abs = kubeconfig::resolve_reference(p, &r.path);
                            if !files.contains_key(&abs) && !refs.contains(&abs) {
                                refs.push(abs);
                            }
                        }
                    }
                    files.extend(found(&refs, t.read_files(&refs).await?, held, &mut pki.errors));
                    let hostname = if t.offline() { None } else { t.run(discover::HOSTNAME_SCRIPT).await.ok().filter(|o| o.success()).map(|o| o.stdout_text().trim().to_string()) };
                    (pb, NodeFacts { name: target.name.clone(), address: target.address(), control_plane: target.goes_alone(), offline: t.offline(), pki, files, hostname }, asked)
                };
                Ok((pb, t, facts, asked))
            }
        })
        .await;
    let mut nodes = Vec::new();
    let mut connections = Vec::new();
    let mut failures = Vec::new();
    let mut playbook: Option<Playbook> = None;
    let mut asked = BTreeMap::new();
    for (target, r) in results {
        match r {
            Ok((pb, t, facts, answer)) => {
                if let Some(a) = answer {
                    asked.insert(target.name.clone(), a);
                }
                match &playbook {
                    Some(first) if first.source != pb.source => failures.push(format!("{}: looks like {}, while other nodes look like {}", target.name, pb.name, first.name)),
                    Some(_) => {}
                    None => playbook = Some(pb),
                }
                connections.push((target.name.clone(), t));
                nodes.push(facts);
            }
            Err(e) => failures.push(format!("{}: {}", target.name, e.message)),
        }
    }
    if !failures.is_empty() {
        return Err(Error::Runtime(format!("cannot read every node, nothing was changed:\n  {}", failures.join("\n  "))));
    }
    Ok(Gathered { playbook: playbook.ok_or_else(|| Error::Usage("no nodes".into()))?, nodes, connected: Connected::new(connections), asked })
}

/// The files that were found, by path, each content held once fleet-wide. One that is there
/// and cannot be read (refused, or larger than kcert reads) is an error of the node's, unless
/// discovery said so already: a planner would otherwise take it for absent (a join token it
/// must rewrite, a CA's key). One missing or not a file is left out: some paths are only
/// where a file may be (a key beside its certificate).
fn found(paths: &[String], data: Vec<FileData>, held: &facts::Held, errors: &mut Vec<facts::FoundError>) -> BTreeMap<String, facts::Shared> {
    let mut files = BTreeMap::new();
    for (p, d) in paths.iter().zip(data) {
        let error = match d {
            FileData::Found(b) => {
                files.insert(p.clone(), held.hold(b));
                continue;
            }
            FileData::Missing | FileData::NotAFile => continue,
            FileData::Unreadable(e) => facts::unreadable(p, e),
            FileData::TooLarge(n) => facts::unreadable(p, format!("{n} bytes, more than kcert reads ({} bytes)", crate::reach::transport::MAX_FILE_BYTES)),
        };
        if !errors.iter().any(|e| e.path == error.path) {
            errors.push(error);
        }
    }
    files
}
