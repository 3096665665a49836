//! Owns: what `renew` changes: which files on which node get which re-signed certificate,
//! planned from the discovered PKI (pure `plan_node`) after gathering files and CA keys.
//! Must not: write anything; `execute` applies a plan, the CLI shows it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;
use sha2::Digest;

use crate::discover::{self, NodePki, Source};
use crate::error::{Error, Result};
use crate::fleet::{Fleet, Target};
use crate::gate::NodeView;
use crate::pki::cert::{CertInfo, hex, parse_pem};
use crate::pki::edit;
use crate::pki::kubeconfig::{self, Material};
use crate::pki::sign::{Renewed, Signer, Validity, key_matches};
use crate::pki::find_issuer;
use crate::playbook::{FileKind, Playbook};
use crate::transport::{FileData, Transport};

pub const KUBELET_SERVING: &str = "kubelet-serving";
const SIGNER_PROBLEM: &str = "\u{0}signer:";

#[derive(Debug, Clone)]
pub struct RenewOptions {
    pub certs: Vec<String>,
    pub days: u32,
    pub now: i64,
}

/// One certificate re-issued inside a file.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub name: String,
    /// The kubeconfig field, for embedded certificates.
    pub field: Option<String>,
    pub subject: String,
    pub signer: String,
    pub old_not_after: i64,
    pub new_not_after: i64,
    pub capped: bool,
}

/// One file's new content. Holds file bytes (never key files: only certs and kubeconfigs,
/// whose embedded keys are copied through untouched); Debug shows no bytes.
#[derive(Clone)]
pub struct FileChange {
    pub path: String,
    pub old: Vec<u8>,
    pub new: Vec<u8>,
    pub items: Vec<Item>,
    /// Components that read the file and must restart to use it.
    pub readers: Vec<String>,
}

impl std::fmt::Debug for FileChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileChange({}, {:?})", self.path, self.items)
    }
}

impl FileChange {
    pub fn old_sha256(&self) -> String {
        sha256(&self.old)
    }
    pub fn new_sha256(&self) -> String {
        sha256(&self.new)
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    hex(&sha2::Sha256::digest(bytes))
}

#[derive(Debug, Clone, Default)]
pub struct NodePlan {
    pub node: String,
    pub changes: Vec<FileChange>,
    /// Components to restart, in the playbook's order.
    pub restarts: Vec<String>,
    pub notes: Vec<String>,
}

/// Names `--certs` accepts: every leaf with a signer, plus the groups.
pub fn cert_names(pb: &Playbook) -> Vec<String> {
    let mut v: Vec<String> = pb.files.iter().filter(|f| f.signer.is_some()).map(|f| f.name.clone()).collect();
    v.extend(["kubeconfigs".to_string(), "all".to_string()]);
    v
}

pub fn selection(pb: &Playbook, certs: &[String]) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let wanted: Vec<&str> = if certs.is_empty() { vec!["all"] } else { certs.iter().map(String::as_str).collect() };
    for c in wanted {
        match c {
            "all" => out.extend(pb.files.iter().filter(|f| f.signer.is_some() && f.in_all).map(|f| f.name.clone())),
            "kubeconfigs" => out.extend(pb.files.iter().filter(|f| f.signer.is_some() && f.kind == FileKind::Kubeconfig).map(|f| f.name.clone())),
            name if pb.file(name).is_some_and(|f| f.signer.is_some()) => {
                out.insert(name.to_string());
            }
            name => return Err(Error::Usage(format!("--certs: unknown certificate {name:?}; known: {}", cert_names(pb).join(", ")))),
        }
    }
    Ok(out)
}

fn first_cert(bytes: &[u8], what: &str) -> Result<CertInfo, String> {
    let content = parse_pem(bytes).map_err(|e| format!("{what}: {e}"))?;
    content.certs.into_iter().next().ok_or_else(|| format!("{what}: no certificate in it"))
}

/// What a node's plan is made from: its discovered PKI and the bytes of the files involved.
pub struct NodeInput<'a> {
    pub node: &'a str,
    pub pki: &'a NodePki,
    pub files: &'a BTreeMap<String, Vec<u8>>,
    /// Names and addresses to add to the SANs of `node_sans` certs (kubelet serving).
    pub node_sans: Vec<String>,
}

/// Plans one node's renewal. Pure: every problem found is returned, naming node and file.
pub fn plan_node(pb: &Playbook, input: &NodeInput<'_>, signers: &BTreeMap<String, std::result::Result<Signer, String>>, selected: &BTreeSet<String>, v: Validity) -> std::result::Result<NodePlan, Vec<String>> {
    let node = input.node;
    let mut plan = NodePlan { node: node.to_string(), ..Default::default() };
    let mut problems = Vec::new();
    for f in pb.files.iter().filter(|f| selected.contains(&f.name)) {
        let Some(path) = input.pki.named.get(&f.name) else { continue };
        let signer_name = f.signer.as_deref().expect("selected files have signers");
        let signer = match signers.get(signer_name) {
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                // Said once per CA by `plan`, with every file that needed it.
                problems.push(format!("{SIGNER_PROBLEM}{signer_name}\t{node}: {path}\t{e}"));
                continue;
            }
            None => {
                problems.push(format!("{node}: {path}: no CA {signer_name} found on any node"));
                continue;
            }
        };
        let result = match f.kind {
            FileKind::Kubeconfig => plan_kubeconfig(pb, input, f.name.as_str(), path, signer, v),
            _ => {
                let key = f.key.as_ref().and_then(|k| input.pki.named.get(k).cloned().or_else(|| pb.file(k).map(|kf| kf.path.clone())));
                let extra = if f.node_sans { input.node_sans.clone() } else { Vec::new() };
                plan_cert(input, &f.name, path, key.as_deref(), signer, v, f.node_sans, &extra).map(|c| (c, None))
            }
        };
        match result {
            Ok((Some(mut change), note)) => {
                change.readers = readers(pb, input.pki, &f.name, &change.path);
                plan.notes.extend(note);
                plan.changes.push(change);
            }
            Ok((None, note)) => plan.notes.extend(note),
            Err(e) => problems.push(e),
        }
    }
    for c in &pb.components {
        if plan.changes.iter().any(|ch| ch.readers.contains(&c.name)) {
            plan.restarts.push(c.name.clone());
        }
    }
    if problems.is_empty() { Ok(plan) } else { Err(problems) }
}

/// Which components read a file: refs naming its path, and `read_by` of the file entry.
fn readers(pb: &Playbook, pki: &NodePki, name: &str, path: &str) -> Vec<String> {
    let mut out: Vec<String> = pki.refs.iter().filter(|((_, _), p)| p.as_str() == path).map(|((c, _), _)| c.clone()).collect();
    if let Some(r) = pb.file(name).and_then(|f| f.read_by.clone()) {
        out.push(r);
    }
    out.sort();
    out.dedup();
    out
}

#[allow(clippy::too_many_arguments)]
fn plan_cert(input: &NodeInput<'_>, name: &str, path: &str, key_path: Option<&str>, signer: &Signer, v: Validity, rehome: bool, extra_sans: &[String]) -> std::result::Result<Option<FileChange>, String> {
    let node = input.node;
    let bytes = input.files.get(path).ok_or_else(|| format!("{node}: {path}: could not be read"))?;
    let leaf = first_cert(bytes, &format!("{node}: {path}"))?;
    if !rehome && find_issuer(&leaf, &[&signer.ca]).is_none() {
        return Err(format!("{node}: {path}: signed by {:?}, not by the CA {:?}; kcert renews a certificate only with the CA that signed it", leaf.issuer, signer.ca.subject));
    }
    // The key may share the file (kubelet-client-current.pem) or sit beside it.
    let key_bytes = if parse_pem(bytes).map(|c| c.has_private_key()).unwrap_or(false) {
        bytes.clone()
    } else {
        let kp = key_path.ok_or_else(|| format!("{node}: {path}: no private key is known for it"))?;
        input.files.get(kp).cloned().ok_or_else(|| format!("{node}: {kp}: the private key of {path} is missing"))?
    };
    match key_matches(&leaf, &key_bytes) {
        Ok(true) => {}
        Ok(false) => return Err(format!("{node}: {path}: its private key {} does not match it", key_path.unwrap_or(path))),
        Err(e) => return Err(format!("{node}: {}: {e}", key_path.unwrap_or(path))),
    }
    let renewed = signer.resign(&leaf, v, extra_sans).map_err(|e| format!("{node}: {path}: {e}"))?;
    let mut certs = edit::cert_pems(bytes).map_err(|e| format!("{node}: {path}: {e}"))?;
    certs[0] = renewed.pem.clone();
    // A self-signed kubelet cert comes with its own throwaway CA in the same file; once the
    // cluster CA signs the leaf, that CA is no part of the chain and is dropped.
    if rehome && find_issuer(&leaf, &[&signer.ca]).is_none() {
        certs.truncate(1);
    }
    let new = edit::set_certs(bytes, &certs).map_err(|e| format!("{node}: {path}: {e}"))?;
    Ok(Some(FileChange { path: path.to_string(), old: bytes.clone(), new, items: vec![item(name, None, &leaf, signer, &renewed)], readers: Vec::new() }))
}

fn item(name: &str, field: Option<String>, leaf: &CertInfo, signer: &Signer, r: &Renewed) -> Item {
    Item { name: name.to_string(), field, subject: leaf.subject.clone(), signer: signer.ca.subject.clone(), old_not_after: leaf.not_after, new_not_after: r.not_after, capped: r.capped }
}

type Planned = (Option<FileChange>, Option<String>);

fn plan_kubeconfig(pb: &Playbook, input: &NodeInput<'_>, name: &str, path: &str, signer: &Signer, v: Validity) -> std::result::Result<Planned, String> {
    let node = input.node;
    let bytes = input.files.get(path).ok_or_else(|| format!("{node}: {path}: could not be read"))?;
    let kc = kubeconfig::parse_kubeconfig(bytes).map_err(|e| format!("{node}: {path}: {e}"))?;
    let id = kubeconfig::identity(bytes).map_err(|e| format!("{node}: {path}: {e}"))?;
    let embedded: Vec<_> = kc.embedded.iter().filter(|e| e.field.key == "client-certificate-data").collect();
    if embedded.is_empty() {
        let Some(r) = kc.references.iter().find(|r| r.field.key == "client-certificate") else {
            return Ok((None, Some(format!("{path}: no client certificate in it; nothing to renew"))));
        };
        let target = kubeconfig::resolve_reference(path, &r.path);
        let reader = pb.file(name).and_then(|f| f.read_by.as_deref());
        // Renewed only when the component's config says it does not rotate it (kubeadm
        // turns rotation on; a config kcert cannot see is assumed to keep that default).
        let rotates = reader.and_then(|c| pb.component(c).map(|comp| (c, comp))).and_then(|(c, comp)| {
            let key = comp.self_rotates.as_ref()?;
            match input.pki.components.get(c).map(|facts| facts.get(key).map(String::as_str)) {
                Some(Some("false")) => None,
                Some(Some(v)) => Some(format!("{path}: its client certificate {target} is renewed by the {c} itself ({key}: {v}); kcert leaves it alone")),
                Some(None) => Some(format!("{path}: its client certificate {target} is renewed by the {c} itself ({key} unset); kcert leaves it alone")),
                None => Some(format!("{path}: points at {target}, which the {c} rotates unless its config says otherwise; its config was not found, so kcert leaves it alone")),
            }
        });
        if let Some(note) = rotates {
            return Ok((None, Some(note)));
        }
        if !input.files.contains_key(&target) {
            return Ok((None, Some(format!("{path}: its client certificate {target} is missing; nothing to renew"))));
        }
        let key_path = kc.references.iter().find(|r| r.field.key == "client-key").map(|r| kubeconfig::resolve_reference(path, &r.path));
        let change = plan_cert(input, name, &target, key_path.as_deref(), signer, v, false, &[])?;
        let note = format!("{path}: renewing the client certificate it points at, {target} (the kubelet does not rotate it)");
        return Ok((change, Some(note)));
    }
    let mut new = bytes.clone();
    let mut items = Vec::new();
    for e in embedded {
        let what = format!("{node}: {path}: {}", e.field.display());
        let content = e.content.as_ref().map_err(|err| format!("{what}: {err}"))?;
        let leaf = content.certs.first().ok_or_else(|| format!("{what}: no certificate"))?;
        if find_issuer(leaf, &[&signer.ca]).is_none() {
            return Err(format!("{what}: signed by {:?}, not by the CA {:?}; kcert renews a certificate only with the CA that signed it", leaf.issuer, signer.ca.subject));
        }
        let key = match &id.key {
            Some(Material::Data(d)) => d.clone(),
            Some(Material::Path(p)) => {
                let abs = kubeconfig::resolve_reference(path, p);
                input.files.get(&abs).cloned().ok_or_else(|| format!("{node}: {abs}: the client key of {path} is missing"))?
            }
            None => return Err(format!("{what}: the kubeconfig has no client key")),
        };
        match key_matches(leaf, &key) {
            Ok(true) => {}
            Ok(false) => return Err(format!("{what}: the client key does not match the certificate")),
            Err(err) => return Err(format!("{what}: client key: {err}")),
        }
        let renewed = signer.resign(leaf, v, &[]).map_err(|err| format!("{what}: {err}"))?;
        new = kubeconfig::replace_data(&new, &e.raw, renewed.pem.as_bytes()).map_err(|err| format!("{what}: {err}"))?;
        items.push(item(name, Some(e.field.display()), leaf, signer, &renewed));
    }
    Ok((Some(FileChange { path: path.to_string(), old: bytes.clone(), new, items, readers: Vec::new() }), None))
}

/// Everything gathered from the fleet: live connections, discovered PKI, file bytes.
pub struct Gathered {
    pub playbook: Playbook,
    pub nodes: Vec<GatheredNode>,
}

pub struct GatheredNode {
    pub target: Target,
    pub t: Arc<dyn Transport>,
    pub pki: NodePki,
    pub files: BTreeMap<String, Vec<u8>>,
    pub hostname: Option<String>,
}

impl Gathered {
    pub fn views(&self) -> Vec<NodeView> {
        self.nodes.iter().map(|n| NodeView { name: n.target.name.clone(), address: n.target.address(), t: n.t.clone(), pki: n.pki.clone() }).collect()
    }

    /// (node, kubeconfig path) -> its server URL.
    pub fn kubeconfig_servers(&self) -> BTreeMap<(String, String), String> {
        let mut out = BTreeMap::new();
        for n in &self.nodes {
            for (path, bytes) in &n.files {
                if kubeconfig::looks_like_kubeconfig(bytes)
                    && let Ok(id) = kubeconfig::identity(bytes)
                {
                    out.insert((n.target.name.clone(), path.clone()), id.server);
                }
            }
        }
        out
    }
}

/// Connects to every node (at most `concurrency` at once), discovers its PKI and reads the
/// certificate, kubeconfig and key files the playbook names (keys stay in memory only).
pub async fn gather(fleet: &Fleet, extra_paths: &[String]) -> Result<Gathered> {
    let embedded = crate::playbook::embedded();
    let results = fleet
        .run(&|_| {}, |t, _target| {
            let embedded = &embedded;
            async move {
                let pb = match &fleet.playbook {
                    Some(p) => p.clone(),
                    None => {
                        let name = discover::detect(t.as_ref(), embedded).await?;
                        embedded.iter().find(|p| Some(&p.name) == name.as_ref()).cloned().ok_or_else(|| crate::transport::NodeFailure::command("no known distribution found (pass --distribution)"))?
                    }
                };
                let pki = discover::discover(t.as_ref(), Some(&pb), extra_paths).await?;
                let mut paths: BTreeSet<String> = pki.named.values().cloned().collect();
                // The components' own manifests and configs: a rotation edits some, and a saved
                // plan is refused when one moved.
                paths.extend(pb.components.iter().filter(|c| pki.components.contains_key(&c.name)).filter_map(|c| c.source().map(str::to_string)));
                for c in &pki.certs {
                    if c.source != Source::Endpoint {
                        paths.insert(c.path.clone());
                    }
                }
                let mut wanted: Vec<String> = paths.into_iter().collect();
                let data = t.read_files(&wanted).await?;
                let mut files = BTreeMap::new();
                for (p, d) in wanted.drain(..).zip(data) {
                    if let FileData::Found(b) = d {
                        files.insert(p, b);
                    }
                }
                // Keys a kubeconfig points at (the kubelet's rotating pem holds both).
                let mut refs = Vec::new();
                for (p, b) in &files {
                    if kubeconfig::looks_like_kubeconfig(b)
                        && let Ok(id) = kubeconfig::identity(b)
                        && let Some(Material::Path(k)) = id.key
                    {
                        let abs = kubeconfig::resolve_reference(p, &k);
                        if !files.contains_key(&abs) {
                            refs.push(abs);
                        }
                    }
                }
                for (p, d) in refs.iter().zip(t.read_files(&refs).await?) {
                    if let FileData::Found(b) = d {
                        files.insert(p.clone(), b);
                    }
                }
                let hostname = if t.offline() { None } else { t.run("hostname").await.ok().filter(|o| o.success()).map(|o| o.stdout_text().trim().to_string()) };
                Ok((pb, t, pki, files, hostname))
            }
        })
        .await;
    let mut nodes = Vec::new();
    let mut failures = Vec::new();
    let mut playbook = None;
    for (target, r) in results {
        match r {
            Ok((pb, t, pki, files, hostname)) => {
                playbook.get_or_insert(pb);
                nodes.push(GatheredNode { target, t, pki, files, hostname });
            }
            Err(e) => failures.push(format!("{}: {}", target.name, e.message)),
        }
    }
    if !failures.is_empty() {
        return Err(Error::Runtime(format!("cannot read every node, nothing was changed:\n  {}", failures.join("\n  "))));
    }
    Ok(Gathered { playbook: playbook.ok_or_else(|| Error::Usage("no nodes".into()))?, nodes })
}

/// One signer per CA the selection needs, from the first node (control plane first) that
/// holds the CA's key. Every node must hold the same CA certificate.
pub fn signers(g: &Gathered, selected: &BTreeSet<String>, now: i64) -> BTreeMap<String, std::result::Result<Signer, String>> {
    let pb = &g.playbook;
    let mut out = BTreeMap::new();
    let needed: BTreeSet<&str> = pb.files.iter().filter(|f| selected.contains(&f.name)).filter_map(|f| f.signer.as_deref()).collect();
    let mut order: Vec<&GatheredNode> = g.nodes.iter().collect();
    order.sort_by_key(|n| !n.target.is_control_plane());
    for ca_name in needed {
        let Some(ca_file) = pb.file(ca_name) else { continue };
        let key_name = ca_file.key.as_deref().unwrap_or("");
        let mut found: Option<std::result::Result<Signer, String>> = None;
        let mut first_seen: Option<(String, String, String)> = None;
        let mut mismatch = None;
        let mut cert_path_seen = None;
        for n in &order {
            let Some(cert_path) = n.pki.named.get(ca_name) else { continue };
            cert_path_seen.get_or_insert(format!("{}: {cert_path}", n.target.name));
            let Some(bytes) = n.files.get(cert_path) else { continue };
            let ca = match first_cert(bytes, &format!("{}: {cert_path}", n.target.name)) {
                Ok(c) => c,
                Err(e) => {
                    found.get_or_insert(Err(e));
                    continue;
                }
            };
            match &first_seen {
                None => first_seen = Some((n.target.name.clone(), cert_path.clone(), ca.sha256.clone())),
                Some((node0, path0, sha0)) if *sha0 != ca.sha256 => {
                    mismatch.get_or_insert(format!("{}: {cert_path} is not the same CA as {node0}: {path0}; the nodes disagree on the CA", n.target.name));
                }
                _ => {}
            }
            // Every copy of the CA key is checked: a bad one anywhere is refused, not skipped.
            if found.as_ref().is_some_and(|f| f.is_err()) {
                continue;
            }
            let key_path = n.pki.named.get(key_name).cloned().unwrap_or_else(|| pb.file(key_name).map(|k| k.path.clone()).unwrap_or_default());
            if let Some(key) = n.files.get(&key_path) {
                let signer = Signer::new(&ca, key, now).map_err(|e| format!("{key_path} on {}: {e}", n.target.name));
                if signer.is_err() || found.is_none() {
                    found = Some(signer);
                }
            }
        }
        let result = match (mismatch, found) {
            (Some(m), _) => Err(m),
            (None, Some(r)) => r,
            (None, None) => Err(match cert_path_seen {
                Some(seen) => format!(
                    "the CA key is on no node ({seen} has no key beside it) (kubeadm external-CA mode?): kcert cannot sign without it; put {} on a control-plane node for the renewal, or renew with your CA (kubeadm certs generate-csr)",
                    pb.file(key_name).map(|k| k.path.as_str()).unwrap_or(key_name)
                ),
                None => format!("the CA {ca_name} is on no node"),
            }),
        };
        out.insert(ca_name.to_string(), result);
    }
    out
}

/// Host name and address to add to kubelet serving certs.
pub fn node_sans(n: &GatheredNode) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(h) = &n.hostname
        && !h.is_empty()
    {
        v.push(h.clone());
    }
    let addr = n.target.address();
    if addr.parse::<std::net::IpAddr>().is_ok() && !(n.t.offline() && addr == "127.0.0.1") && !v.contains(&addr) {
        v.push(addr);
    }
    v
}

/// Plans every node; any problem anywhere refuses the whole renewal (exit 2, nothing changed).
pub fn plan(g: &Gathered, opts: &RenewOptions) -> Result<Vec<NodePlan>> {
    let selected = selection(&g.playbook, &opts.certs)?;
    let signers = signers(g, &selected, opts.now);
    let v = Validity { now: opts.now, days: opts.days };
    let mut plans = Vec::new();
    let mut problems = Vec::new();
    for n in &g.nodes {
        let input = NodeInput { node: &n.target.name, pki: &n.pki, files: &n.files, node_sans: node_sans(n) };
        match plan_node(&g.playbook, &input, &signers, &selected, v) {
            Ok(p) => plans.push(p),
            Err(e) => problems.extend(e),
        }
    }
    // A CA problem is said once, with the files it stops.
    let mut by_ca: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    let mut lines = Vec::new();
    for p in problems {
        match p.strip_prefix(SIGNER_PROBLEM).map(|rest| rest.splitn(3, '\t').map(str::to_string).collect::<Vec<_>>()) {
            Some(parts) if parts.len() == 3 => by_ca.entry(parts[0].clone()).or_insert_with(|| (parts[2].clone(), Vec::new())).1.push(parts[1].clone()),
            _ => lines.push(p),
        }
    }
    for (ca, (err, files)) in by_ca {
        lines.insert(0, format!("CA {ca}: {err}\n    needed to renew: {}", files.join(", ")));
    }
    if !lines.is_empty() {
        return Err(Error::input("renew", format!("nothing was changed:\n  {}", lines.join("\n  "))));
    }
    Ok(plans)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_knows_kubeadm_names_and_groups() {
        let pb = crate::playbook::load("kubeadm").unwrap();
        let all = selection(&pb, &["all".into()]).unwrap();
        assert!(all.contains("apiserver") && all.contains("admin.conf") && all.contains("etcd-peer"));
        assert!(!all.contains(KUBELET_SERVING), "kubeadm's `all` leaves the kubelet serving cert out");
        assert_eq!(selection(&pb, &["kubeconfigs".into()]).unwrap().len(), 5);
        let err = selection(&pb, &["apiserverr".into()]).unwrap_err().to_string();
        assert!(err.contains("apiserverr") && err.contains("kubelet-serving"), "{err}");
    }
}

/// A renewal ready to show or apply.
pub struct Prepared {
    pub gathered: Gathered,
    pub plans: Vec<NodePlan>,
    pub checks: Vec<crate::gate::Check>,
    pub views: Vec<NodeView>,
}

impl Prepared {
    pub fn offline(&self) -> bool {
        self.gathered.nodes.iter().all(|n| n.t.offline())
    }
    pub fn file_count(&self) -> usize {
        self.plans.iter().map(|p| p.changes.len()).sum()
    }
    /// The live checks gating a node: those that start or end on it.
    pub fn gates_of(&self, node: &str) -> Vec<&crate::gate::Check> {
        self.checks.iter().filter(|c| c.from == node || c.to == node).collect()
    }
}

pub async fn prepare(fleet: &Fleet, extra_paths: &[String], opts: &RenewOptions) -> Result<Prepared> {
    let gathered = gather(fleet, extra_paths).await?;
    let plans = plan(&gathered, opts)?;
    let views = gathered.views();
    let checks = crate::gate::checks(&gathered.playbook, &views, &gathered.kubeconfig_servers());
    Ok(Prepared { gathered, plans, checks, views })
}

pub struct ApplyOptions {
    pub state_dir: std::path::PathBuf,
    pub patience: std::time::Duration,
    pub now: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RenewReport {
    pub run_id: String,
    pub journal: String,
    pub nodes: Vec<crate::execute::NodeOutcome>,
    /// Why the run stopped, when it did.
    pub failure: Option<String>,
    /// Wall time of the run, and the part of it spent waiting on restarts and health gates
    /// (per batch, the longest wait of its nodes); the rest is kcert's own work.
    pub wall_seconds: f64,
    pub wait_seconds: f64,
}

/// Applies a prepared renewal: free-disk preflight on every node first, then node by node
/// (control plane one at a time, workers in batches), journaled. Stops at the first failure.
pub async fn apply(p: &Prepared, fleet: &Fleet, opts: &ApplyOptions, observer: &(dyn Fn(&crate::execute::Step) + Sync)) -> Result<RenewReport> {
    use crate::execute::{self, Context, Step};
    use crate::journal::{Journal, Record, TargetRecord};
    let transports: BTreeMap<&str, &Arc<dyn Transport>> = p.gathered.nodes.iter().map(|n| (n.target.name.as_str(), &n.t)).collect();
    let mut problems = Vec::new();
    for plan in &p.plans {
        if let Err(e) = execute::preflight(transports[plan.node.as_str()].as_ref(), plan).await {
            problems.push(e);
        }
    }
    if !problems.is_empty() {
        return Err(Error::Runtime(format!("preflight failed, nothing was changed:\n  {}", problems.join("\n  "))));
    }
    let mut journal = Journal::create(&opts.state_dir, "renew", opts.now)?;
    let target = TargetRecord {
        inventory: fleet.inventory.clone(),
        root: fleet.root(),
        nodes: p.plans.iter().filter(|n| !n.changes.is_empty()).map(|n| n.node.clone()).collect(),
    };
    journal.record(&Record::RunStarted { run_id: journal.run_id.clone(), command: "renew".into(), at: crate::render::rfc3339(opts.now), target })?;
    let run_id = journal.run_id.clone();
    let journal_path = journal.dir.join("journal.jsonl").to_string_lossy().into_owned();
    let journal = std::sync::Mutex::new(journal);
    let ctx = Context { playbook: &p.gathered.playbook, overrides: &fleet.overrides, views: &p.views, checks: &p.checks, patience: opts.patience, observer };
    let started = std::time::Instant::now();
    let mut report = RenewReport { run_id, journal: journal_path, nodes: Vec::new(), failure: None, wall_seconds: 0.0, wait_seconds: 0.0 };
    for batch in execute::batches(fleet, &p.plans, fleet.concurrency) {
        let results = futures::future::join_all(batch.iter().map(|&i| {
            let plan = &p.plans[i];
            let t = transports[plan.node.as_str()].clone();
            let (ctx, journal) = (&ctx, &journal);
            async move {
                let r = execute::apply_node(t.as_ref(), plan, ctx, journal).await;
                observer(&Step::NodeDone { node: plan.node.clone(), ok: r.is_ok() });
                r
            }
        }))
        .await;
        report.wait_seconds += results.iter().filter_map(|r| r.as_ref().ok()).map(|o| o.wait_seconds).fold(0.0, f64::max);
        for r in results {
            match r {
                Ok(o) => report.nodes.push(o),
                Err(e) => {
                    report.failure.get_or_insert(e.to_string());
                }
            }
        }
        if report.failure.is_some() {
            break;
        }
    }
    report.wall_seconds = started.elapsed().as_secs_f64();
    let (status, message) = match &report.failure {
        None => ("ok".to_string(), format!("{} files on {} nodes", p.file_count(), report.nodes.len())),
        Some(f) => ("failed".to_string(), f.clone()),
    };
    journal.lock().expect("journal lock").record(&Record::RunFinished { status, message })?;
    Ok(report)
}
