//! Owns: a renewal as a plan: which files on which node get which re-signed certificate (the
//! CA that signed each leaf signs it again, keeping subject, SANs, usages and key), in
//! batches with restarts and gates, proven on the trust model like a rotation.
//! Must not: do I/O; the caller gathers the facts (CA keys included, in memory only).

use std::collections::{BTreeMap, BTreeSet};

use super::gates::Check;
use super::model::{FileId, Model};
use super::parts;
use super::schema::{Batch, Kind, MadeWith, NodeNote, NodeOps, ModelWrite, Options, Plan, PlanTarget, Proof, Reissued, StageId, StagePlan, StepPlan, PLAN_VERSION};
use super::build;
use crate::error::{Error, Result};
use crate::gather::facts::NodeFacts;
use crate::pki::cert::{CertInfo, first_cert, parse_pem};
use crate::pki::kubeconfig::{self, Material};
use crate::pki::sign::{Renewed, Signer, Validity, key_matches};
use crate::pki::{edit, find_issuer};
use crate::playbook::{FileKind, Playbook};
use crate::text::rfc3339;

pub const KUBELET_SERVING: &str = "kubelet-serving";

pub struct Input<'a> {
    pub playbook: &'a Playbook,
    pub nodes: &'a [NodeFacts],
    /// Every live check of the cluster (none offline): each batch's gate is drawn from them.
    pub checks: Vec<Check>,
    pub target: PlanTarget,
    pub certs: Vec<String>,
    pub days: u32,
    pub batch_size: usize,
    pub kubernetes_api: bool,
    pub id: String,
    pub cluster: String,
    pub now: i64,
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

/// Why a renewal cannot be planned: a CA problem is said once, with every file it stops.
enum Problem {
    Signer { ca: String, file: String, why: String },
    File(String),
}

/// One file's new content, with what was re-issued in it.
struct Change {
    path: String,
    old: Vec<u8>,
    new: Vec<u8>,
    items: Vec<Reissued>,
}

/// A node's renewal, planned.
#[derive(Default)]
struct NodeChanges {
    changes: Vec<Change>,
    notes: Vec<String>,
    /// What is wrong on the node that the renewal leaves alone: said in the plan's notes, so
    /// in the run's summary too.
    warnings: Vec<String>,
}

fn item(name: &str, field: Option<String>, leaf: &CertInfo, signer: &Signer, r: &Renewed) -> Reissued {
    Reissued {
        name: name.to_string(),
        field,
        subject: leaf.subject.clone(),
        signer: signer.ca.subject.clone(),
        old_not_after: rfc3339(leaf.not_after),
        new_not_after: rfc3339(r.not_after),
        capped_at_ca_expiry: r.capped,
    }
}

/// Plans one node's renewal; every problem found is returned, naming node and file.
fn plan_node(pb: &Playbook, n: &NodeFacts, signers: &BTreeMap<String, std::result::Result<Signer, String>>, selected: &BTreeSet<String>, v: Validity, problems: &mut Vec<Problem>) -> NodeChanges {
    let node = n.name.as_str();
    let mut out = NodeChanges::default();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for f in pb.files.iter().filter(|f| selected.contains(&f.name)) {
        let Some(path) = n.pki.named.get(&f.name) else { continue };
        // One file in several roles (a binary cluster's kubernetes.pem) is renewed once.
        if !seen.insert(path.as_str()) {
            continue;
        }
        let signer_name = f.signer.as_deref().expect("selected files have signers");
        let signer = match signers.get(signer_name) {
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                problems.push(Problem::Signer { ca: signer_name.to_string(), file: format!("{node}: {path}"), why: e.clone() });
                continue;
            }
            None => {
                problems.push(Problem::File(format!("{node}: {path}: no CA {signer_name} found on any node")));
                continue;
            }
        };
        let result = match f.kind {
            FileKind::Kubeconfig => plan_kubeconfig(pb, n, &f.name, path, signer, v),
            _ => {
                let key = key_file(pb, n, f);
                let extra = if f.node_sans { n.node_sans() } else { Vec::new() };
                plan_cert(n, &f.name, path, key.as_deref(), signer, v, f.node_sans, &extra).map(|c| (Some(c), None))
            }
        };
        match result {
            Ok((change, note)) => {
                out.changes.extend(change);
                out.notes.extend(note);
            }
            Err(e) => problems.push(Problem::File(e)),
        }
    }
    out.warnings = mismatched_pairs(pb, n, selected, &seen);
    out
}

/// Where a certificate file's private key is on this node: the path discovery found for it,
/// else the playbook's.
fn key_file(pb: &Playbook, n: &NodeFacts, f: &crate::playbook::KnownFile) -> Option<String> {
    f.key.as_ref().and_then(|k| n.pki.named.get(k).cloned().or_else(|| pb.file(k).map(|kf| kf.path.clone())))
}

/// The certificates this renewal leaves alone whose private key no longer matches them:
/// said on the node, not mended (the component that loads the pair cannot serve with it).
fn mismatched_pairs(pb: &Playbook, n: &NodeFacts, selected: &BTreeSet<String>, renewed: &BTreeSet<&str>) -> Vec<String> {
    let mut out = Vec::new();
    for f in pb.files.iter().filter(|f| f.kind == FileKind::Cert && !selected.contains(&f.name)) {
        let Some(path) = n.pki.named.get(&f.name).filter(|p| !renewed.contains(p.as_str())) else { continue };
        let Some(key_path) = key_file(pb, n, f) else { continue };
        let (Some(cert), Some(key)) = (n.files.get(path), n.files.get(&key_path)) else { continue };
        let Ok(leaf) = first_cert(cert) else { continue };
        if let Ok(false) = key_matches(&leaf, key) {
            out.push(format!("{path}: its private key {key_path} does not match it; this renewal leaves {} alone, and what loads the pair cannot use it (kcert verify)", f.name));
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn plan_cert(n: &NodeFacts, name: &str, path: &str, key_path: Option<&str>, signer: &Signer, v: Validity, rehome: bool, extra_sans: &[String]) -> std::result::Result<Change, String> {
    let node = &n.name;
    let bytes = n.files.get(path).ok_or_else(|| format!("{node}: {path}: could not be read"))?;
    let leaf = first_cert(bytes).map_err(|e| format!("{node}: {path}: {e}"))?;
    if !rehome && find_issuer(&leaf, &[&signer.ca]).is_none() {
        return Err(format!("{node}: {path}: signed by {:?}, not by the CA {:?}; kcert renews a certificate only with the CA that signed it", leaf.issuer, signer.ca.subject));
    }
    // The key may share the file (kubelet-client-current.pem) or sit beside it.
    let key_bytes: &[u8] = if parse_pem(bytes).map(|c| c.has_private_key()).unwrap_or(false) {
        bytes
    } else {
        let kp = key_path.ok_or_else(|| format!("{node}: {path}: no private key is known for it"))?;
        n.files.get(kp).ok_or_else(|| format!("{node}: {kp}: the private key of {path} is missing"))?
    };
    match key_matches(&leaf, key_bytes) {
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
    Ok(Change { path: path.to_string(), old: bytes.to_vec(), new, items: vec![item(name, None, &leaf, signer, &renewed)] })
}

type Planned = (Option<Change>, Option<String>);

fn plan_kubeconfig(pb: &Playbook, n: &NodeFacts, name: &str, path: &str, signer: &Signer, v: Validity) -> std::result::Result<Planned, String> {
    let node = &n.name;
    let bytes = n.files.get(path).ok_or_else(|| format!("{node}: {path}: could not be read"))?;
    let kc = kubeconfig::parse_kubeconfig(bytes).map_err(|e| format!("{node}: {path}: {e}"))?;
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
            match n.pki.components.get(c).map(|facts| facts.get(key).map(String::as_str)) {
                Some(Some("false")) => None,
                Some(Some(v)) => Some(format!("{path}: its client certificate {target} is renewed by the {c} itself ({key}: {v}); kcert leaves it alone")),
                Some(None) => Some(format!("{path}: its client certificate {target} is renewed by the {c} itself ({key} unset); kcert leaves it alone")),
                None => Some(format!("{path}: points at {target}, which the {c} rotates unless its config says otherwise; its config was not found, so kcert leaves it alone")),
            }
        });
        if let Some(note) = rotates {
            return Ok((None, Some(note)));
        }
        if !n.files.contains_key(&target) {
            return Ok((None, Some(format!("{path}: its client certificate {target} is missing; nothing to renew"))));
        }
        let key_path = kc.references.iter().find(|r| r.field.key == "client-key").map(|r| kubeconfig::resolve_reference(path, &r.path));
        let change = plan_cert(n, name, &target, key_path.as_deref(), signer, v, false, &[])?;
        let note = format!("{path}: renewing the client certificate it points at, {target} (the kubelet does not rotate it)");
        return Ok((Some(change), Some(note)));
    }
    let mut new = bytes.to_vec();
    let mut items = Vec::new();
    // Users that share one client certificate share its renewal: the value changes everywhere at once.
    let mut renewed_raw: BTreeMap<String, Renewed> = BTreeMap::new();
    for e in embedded {
        let what = format!("{node}: {path}: {}", e.field.display());
        let content = e.content.as_ref().map_err(|err| format!("{what}: {err}"))?;
        let leaf = content.certs.first().ok_or_else(|| format!("{what}: no certificate"))?;
        if find_issuer(leaf, &[&signer.ca]).is_none() {
            return Err(format!("{what}: signed by {:?}, not by the CA {:?}; kcert renews a certificate only with the CA that signed it", leaf.issuer, signer.ca.subject));
        }
        // The user's own key, whatever the current context says.
        let key = match kubeconfig::user_key(bytes, &e.field.owner).map_err(|err| format!("{node}: {path}: {err}"))? {
            Some(Material::Data(d)) => d,
            Some(Material::Path(p)) => {
                let abs = kubeconfig::resolve_reference(path, &p);
                n.files.get(&abs).map(|b| b.to_vec()).ok_or_else(|| format!("{node}: {abs}: the client key of {} in {path} is missing", e.field.owner))?
            }
            None => return Err(format!("{what}: user {} has no client key", e.field.owner)),
        };
        match key_matches(leaf, &key) {
            Ok(true) => {}
            Ok(false) => return Err(format!("{what}: the client key does not match the certificate")),
            Err(err) => return Err(format!("{what}: client key: {err}")),
        }
        let compact: String = e.raw.split_whitespace().collect();
        if let Some(renewed) = renewed_raw.get(&compact) {
            items.push(item(name, Some(e.field.display()), leaf, signer, renewed));
            continue;
        }
        let renewed = signer.resign(leaf, v, &[]).map_err(|err| format!("{what}: {err}"))?;
        new = kubeconfig::replace_data(&new, &e.raw, renewed.pem.as_bytes()).map_err(|err| format!("{what}: {err}"))?;
        items.push(item(name, Some(e.field.display()), leaf, signer, &renewed));
        renewed_raw.insert(compact, renewed);
    }
    Ok((Some(Change { path: path.to_string(), old: bytes.to_vec(), new, items }), None))
}

/// One signer per CA the selection needs, from the first node (control plane first) that
/// holds the CA's key. Every node must hold the same CA certificate, and every copy of the CA
/// key must match it.
fn signers(pb: &Playbook, nodes: &[NodeFacts], selected: &BTreeSet<String>, now: i64) -> BTreeMap<String, std::result::Result<Signer, String>> {
    let mut out = BTreeMap::new();
    let needed: BTreeSet<&str> = pb.files.iter().filter(|f| selected.contains(&f.name)).filter_map(|f| f.signer.as_deref()).collect();
    let mut order: Vec<&NodeFacts> = nodes.iter().collect();
    order.sort_by_key(|n| !n.control_plane);
    for wanted in needed {
        // One CA in several roles signs as the first CA file that holds it (its key is there).
        let canon = build::same_ca_as(pb, nodes, wanted);
        let ca_name = canon.as_str();
        if pb.file(ca_name).is_none() {
            continue;
        }
        let mut found: Option<std::result::Result<Signer, String>> = None;
        let mut first_seen: Option<(String, String, String)> = None;
        let mut mismatch = None;
        let mut cert_path_seen = None;
        for n in &order {
            let Some(cert_path) = n.pki.named.get(ca_name) else { continue };
            cert_path_seen.get_or_insert(format!("{}: {cert_path}", n.name));
            let Some(bytes) = n.files.get(cert_path) else { continue };
            let ca = match first_cert(bytes) {
                Ok(c) => c,
                Err(e) => {
                    found.get_or_insert(Err(format!("{}: {cert_path}: {e}", n.name)));
                    continue;
                }
            };
            match &first_seen {
                None => first_seen = Some((n.name.clone(), cert_path.clone(), ca.sha256.clone())),
                Some((node0, path0, sha0)) if *sha0 != ca.sha256 => {
                    mismatch.get_or_insert(format!("{}: {cert_path} is not the same CA as {node0}: {path0}; the nodes disagree on the CA", n.name));
                }
                _ => {}
            }
            // Every copy of the CA key is checked: a bad one anywhere is refused, not skipped.
            if found.as_ref().is_some_and(|f| f.is_err()) {
                continue;
            }
            if let Some((key_path, key)) = n.ca_key(pb, ca_name) {
                let signer = Signer::new(&ca, key, now).map_err(|e| format!("{key_path} on {}: {e}", n.name));
                if signer.is_err() || found.is_none() {
                    found = Some(signer);
                }
            }
        }
        let result = match (mismatch, found) {
            (Some(m), _) => Err(m),
            (None, Some(r)) => r,
            (None, None) => Err(match cert_path_seen {
                Some(seen) => {
                    format!(
                        "the CA key is on no node ({seen} has no key beside it; looked for {}): kcert cannot sign without it (a CA kept off the nodes, as kubeadm's external-CA mode does?); put its key beside the certificate on a control-plane node for the renewal, or renew with your CA (kubeadm certs generate-csr)",
                        NodeFacts::ca_key_tried(pb, order.iter().copied(), ca_name),
                    )
                }
                None => format!("the CA {ca_name} is on no node"),
            }),
        };
        out.insert(wanted.to_string(), result);
    }
    out
}

/// Plans the renewal of every node, and proves it. Any problem anywhere refuses the whole
/// renewal (exit 2, nothing changed), with every problem listed.
pub fn plan(input: &Input<'_>) -> Result<Plan> {
    let pb = input.playbook;
    let selected = selection(pb, &input.certs)?;
    let signers = signers(pb, input.nodes, &selected, input.now);
    let v = Validity { now: input.now, days: input.days };
    let mut problems = Vec::new();
    problems.extend(parts::unreadable_kubeconfigs(pb, input.nodes).into_iter().map(Problem::File));
    // Each node's renewal on its own (signing is most of it), on every core; problems in node order.
    let made = crate::par::map(input.nodes, |n| {
        let mut found = Vec::new();
        let changes = plan_node(pb, n, &signers, &selected, v, &mut found);
        (changes, found)
    });
    let mut planned: Vec<NodeChanges> = Vec::with_capacity(made.len());
    for (changes, found) in made {
        planned.push(changes);
        problems.extend(found);
    }
    refuse_if(problems)?;

    // The model before, and after every node's new files: their difference is what the proof simulates.
    let before = build::model(pb, input.nodes);
    let after_nodes: Vec<NodeFacts> = input
        .nodes
        .iter()
        .zip(&planned)
        .map(|(n, p)| {
            let mut n = n.clone();
            for c in &p.changes {
                n.files.insert(c.path.clone(), c.new.as_slice().into());
            }
            n
        })
        .collect();
    let after = build::model(pb, &after_nodes);
    let readers = parts::ReaderIndex::new(&before);
    let mut bad = Vec::new();
    let mut steps = Vec::new();
    let texts = crate::plan::schema::Texts::default();
    for nodes in parts::batches(input.nodes, input.batch_size) {
        let mut batch = Batch { nodes: Vec::new(), ops: Vec::new(), gates: Vec::new() };
        for name in &nodes {
            let i = input.nodes.iter().position(|n| &n.name == name).expect("batches are made of the input's nodes");
            let (n, p) = (&input.nodes[i], &planned[i]);
            if p.changes.is_empty() {
                continue;
            }
            let mut files = Vec::new();
            for c in &p.changes {
                let changes: Vec<String> = c.items.iter().map(|it| {
                    let what = it.field.as_deref().map(|f| format!("{} {f}", it.name)).unwrap_or_else(|| it.name.clone());
                    let cap = if it.capped_at_ca_expiry { " (capped at the CA's expiry)" } else { "" };
                    format!("{what}: expires {} -> {}{cap}", it.old_not_after, it.new_not_after)
                }).collect();
                match parts::file_op(&c.path, Some(&c.old), Some(&c.new), None, false, &|_| None, changes, c.items.clone()) {
                    Ok(op) => files.push(op),
                    Err(e) => bad.push(format!("{}: {}: {e}", n.name, c.path)),
                }
            }
            texts.intern_ops(&mut files);
            let model = model_writes(&before, &after, &n.name);
            let changed: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
            let model_changed: BTreeSet<String> = model.iter().map(|w| w.path.clone()).collect();
            let restarts = parts::restarts(pb, n, &readers, &changed, &model_changed);
            batch.nodes.push(n.name.clone());
            batch.ops.push(NodeOps { node: n.name.clone(), files, restarts, model, reissue: None });
        }
        if !batch.ops.is_empty() {
            batch.gates = parts::gates_for(pb, &input.checks, &batch.nodes);
            steps.push(StepPlan::Batch(batch));
        }
    }
    if !bad.is_empty() {
        return Err(Error::input("renew", format!("nothing was changed:\n  {}", bad.join("\n  "))));
    }
    let offline = input.nodes.iter().all(|n| n.offline);
    let mut plan = skeleton(input, offline, StageId::Renew.name().into(), steps);
    plan.notes = capped_note(&planned, input.days).into_iter().collect();
    plan.notes.extend(input.nodes.iter().zip(&planned).flat_map(|(n, p)| p.warnings.iter().map(move |w| format!("{}: {w}", n.name))));
    plan.node_notes = input.nodes.iter().zip(&planned).flat_map(|(n, p)| p.notes.iter().map(|note| NodeNote { node: n.name.clone(), note: note.clone() })).collect();
    // Re-signing with the same CA must keep every edge that holds now; one already broken
    // (a leaf its peer does not trust) is the operator's to mend, and is said.
    let (model, broken) = parts::without_broken_edges(before);
    plan.notes.extend(broken.iter().map(|b| format!("already broken before the renewal, and not mended by it: {b} (kcert verify)")));
    parts::prove(&model, &mut plan).map_err(|p| Error::input("renew", format!("nothing was changed:\n  {}", p.join("\n  "))))?;
    Ok(plan)
}

/// A renewal's plan around its R1 steps: what it was made from and with, and S0; no notes
/// and no proof yet.
pub(super) fn skeleton(input: &Input<'_>, offline: bool, name: String, steps: Vec<StepPlan>) -> Plan {
    Plan {
        version: PLAN_VERSION,
        kind: Kind::Renew,
        id: input.id.clone(),
        created_at: rfc3339(input.now),
        cluster: input.cluster.clone(),
        made_with: MadeWith::now(input.playbook),
        target: input.target.clone(),
        options: Options { batch_size: input.batch_size, kubernetes_api: input.kubernetes_api, offline, leaf_days: input.days, cas: Vec::new(), ca_days: None, key_type: None, certs: input.certs.clone() },
        facts: parts::facts(input.nodes),
        cas: Vec::new(),
        stages: vec![parts::preflight(offline, &[]), StagePlan { id: StageId::Renew, name, checks: Vec::new(), steps, undo: None }],
        proof: Proof::default(),
        notes: Vec::new(),
        node_notes: Vec::new(),
    }
}

/// The files of `node` whose trust content differs between two models.
fn model_writes(before: &Model, after: &Model, node: &str) -> Vec<ModelWrite> {
    let from = FileId::new(node, "");
    after
        .files
        .range(from..)
        .take_while(|(k, _)| k.node == node)
        .filter(|(k, c)| before.files.get(*k) != Some(*c))
        .map(|(k, c)| ModelWrite { path: k.path.clone(), content: c.clone() })
        .collect()
}

/// Certificates whose CA expires before `--days` would take them: they end with it, and say so.
fn capped_note(planned: &[NodeChanges], days: u32) -> Option<String> {
    let capped: Vec<&Reissued> = planned.iter().flat_map(|p| &p.changes).flat_map(|c| &c.items).filter(|i| i.capped_at_ca_expiry).collect();
    let first = capped.first()?;
    Some(format!("{} renewed certificates expire with their CA ({}, {}), sooner than --days {days} asked: rotate the CA (kcert rotate-ca) for longer", capped.len(), first.signer, first.new_not_after))
}

fn refuse_if(problems: Vec<Problem>) -> Result<()> {
    // One CA in several roles (a binary cluster's one ca.pem) fails once, for the same reason:
    // said once, under every name it plays.
    let mut by_why: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    let mut lines = Vec::new();
    for p in problems {
        match p {
            Problem::Signer { ca, file, why } => {
                let (cas, files) = by_why.entry(why).or_default();
                if !cas.contains(&ca) {
                    cas.push(ca);
                }
                if !files.contains(&file) {
                    files.push(file);
                }
            }
            Problem::File(line) => lines.push(line),
        }
    }
    let mut out: Vec<String> = by_why
        .into_iter()
        .map(|(why, (cas, files))| {
            let name = match cas.split_first() {
                Some((first, rest)) if !rest.is_empty() => format!("{first} (also the {} CA)", rest.join(", ")),
                _ => cas.concat(),
            };
            format!("CA {name}: {why}\n    needed to renew: {}", files.join(", "))
        })
        .collect();
    for l in lines {
        if !out.contains(&l) {
            out.push(l);
        }
    }
    if out.is_empty() {
        return Ok(());
    }
    Err(Error::input("renew", format!("nothing was changed:\n  {}", out.join("\n  "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_knows_kubeadm_names_and_groups() {
        let pb = crate::playbook::builtin("kubeadm").unwrap();
        let all = selection(&pb, &["all".into()]).unwrap();
        assert!(all.contains("apiserver") && all.contains("admin.conf") && all.contains("etcd-peer"));
        assert!(!all.contains(KUBELET_SERVING), "kubeadm's `all` leaves the kubelet serving cert out");
        assert_eq!(selection(&pb, &["kubeconfigs".into()]).unwrap().len(), 7, "kubeadm's five and the copies of admin.conf in root's and the login user's ~/.kube");
        let err = selection(&pb, &["apiserverr".into()]).unwrap_err().to_string();
        assert!(err.contains("apiserverr") && err.contains("kubelet-serving"), "{err}");
    }
}
