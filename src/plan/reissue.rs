//! Owns: a renewal by the distribution's own tool (k3s) as a plan: per node, the unit stopped
//! and started around the tool, the services it is told, every file it makes again (backed up
//! first), the stale stores removed; servers one at a time, then agents in batches, gated.
//! Must not: do I/O, or sign anything (the node's tool re-issues; kcert only orders and checks).

use std::collections::BTreeSet;

use super::build;
use super::parts;
use super::renew::Input;
use super::schema::{ApiCall, Batch, NodeNote, NodeOps, Plan, Reissue, ReissuedFile, Served, StepPlan};
use crate::error::{Error, Result};
use crate::gather::facts::NodeFacts;
use crate::pki::cert::CertInfo;
use crate::pki::{first_cert, k3s, kubeconfig, sha256};
use crate::playbook::reissue::{self, Unit};
use crate::playbook::{FileKind, Playbook};
use crate::text::{rfc3339, shell_quote};

/// The services `--certs` names (none, or `all`: every one).
pub fn chosen<'r>(r: &'r reissue::Reissue, certs: &[String]) -> Result<Vec<&'r reissue::Service>> {
    if certs.is_empty() || certs.iter().any(|c| c == "all") {
        return Ok(r.services.iter().collect());
    }
    let known = || r.services.iter().map(|s| s.name.as_str()).chain(["all"]).collect::<Vec<_>>().join(", ");
    for c in certs {
        if r.service(c).is_none() {
            return Err(Error::Usage(format!("--certs: {c:?} is not one of the services this distribution's tool re-issues; known: {}", known())));
        }
    }
    Ok(r.services.iter().filter(|s| certs.contains(&s.name)).collect())
}

/// The unit a node stops and starts: the first it has a file for, or one for any node.
pub(super) fn unit_of<'r>(r: &'r reissue::Reissue, n: &NodeFacts) -> Option<&'r Unit> {
    r.units.iter().find(|u| u.when_under.is_empty() || n.pki.named.values().any(|p| u.when_under.iter().any(|w| p.starts_with(w.as_str()))))
}

/// The certificate a file holds for a reviewer to know it by: a kubeconfig's embedded client
/// certificate, a TLS Secret's `tls.crt`, a PEM file's first; none for a key.
pub(super) fn cert_in(pb: &Playbook, name: &str, bytes: &[u8]) -> Option<CertInfo> {
    match pb.file(name).map(|f| f.kind) {
        Some(FileKind::Key) => None,
        Some(FileKind::Kubeconfig) => kubeconfig::parse_kubeconfig(bytes)
            .ok()
            .and_then(|kc| kc.embedded.iter().filter(|e| e.field.key == "client-certificate-data").find_map(|e| e.content.as_ref().ok().and_then(|c| c.certs.first().cloned()))),
        _ => match k3s::tls_secret(bytes) {
            Some(Ok(pem)) => first_cert(&pem).ok(),
            Some(Err(_)) => None,
            None => first_cert(bytes).ok(),
        },
    }
}

/// A file of a chosen service that is not on the node although its pair is (a cert without
/// its key, or a key without its cert): the tool makes it at the unit's start, with nothing
/// of it to back up; a reviewer is told. (A file whose pair is absent too belongs to the
/// other kind of node: an agent has no server files.)
fn missing_half(pb: &Playbook, n: &NodeFacts, name: &str) -> Option<String> {
    let f = pb.file(name)?;
    let partner = match &f.key {
        Some(key) => key.as_str(),
        None => pb.files.iter().find(|c| c.key.as_deref() == Some(name))?.name.as_str(),
    };
    let there = n.pki.named.get(partner).filter(|p| n.files.contains_key(*p))?;
    Some(format!("{} is not there, though {there} is: there is nothing of it to back up, and {} makes it again when its unit starts", f.path, pb.name))
}

/// A chosen service's certificate whose key file (both on the node) is not its key, or is no
/// key kcert can read: the tool makes both again, which mends it, but a reviewer is told why
/// the pair was wrong (`verify` reports the same edges failing).
fn mismatched_pair(pb: &Playbook, n: &NodeFacts, name: &str) -> Option<String> {
    let key_name = pb.file(name)?.key.as_deref()?;
    let cert_path = n.pki.named.get(name)?;
    let key_path = n.pki.named.get(key_name)?;
    let cert = cert_in(pb, name, n.files.get(cert_path)?)?;
    let why = match crate::pki::sign::key_matches(&cert, n.files.get(key_path)?) {
        Ok(true) => return None,
        Ok(false) => format!("is not the key of {cert_path} ({})", cert.subject),
        Err(e) => format!("cannot be checked against {cert_path}: {e}"),
    };
    Some(format!("{key_path} {why}: {} makes both again, which mends the pair", pb.name))
}

/// One node's part, or why it has none (a note) or cannot be planned (an error); and what a
/// reviewer should know of it.
fn plan_node(pb: &Playbook, r: &reissue::Reissue, chosen: &[&reissue::Service], n: &NodeFacts) -> std::result::Result<(Option<Reissue>, Vec<String>), String> {
    let node = &n.name;
    let Some(unit) = unit_of(r, n) else { return Ok((None, Vec::new())) };
    let mut notes = Vec::new();
    let mut services = Vec::new();
    let mut files: Vec<ReissuedFile> = Vec::new();
    let mut removed = Vec::new();
    let mut creates = Vec::new();
    let mut seen = BTreeSet::new();
    for s in chosen {
        let mut any = false;
        for name in &s.files {
            let Some(path) = n.pki.named.get(name) else {
                notes.extend(missing_half(pb, n, name));
                continue;
            };
            if let Some(note) = mismatched_pair(pb, n, name).filter(|m| !notes.contains(m)) {
                notes.push(note);
            }
            let Some(bytes) = n.files.get(path) else {
                return Err(format!("{node}: {path}: could not be read; it must be backed up before {} makes it again", r.command));
            };
            let kind = pb.file(name).map(|f| f.kind);
            let cert = cert_in(pb, name, bytes);
            // A kubeconfig is made again only for the client certificate it embeds (an old
            // k3s.yaml with a password comes back the same).
            if kind == Some(FileKind::Kubeconfig) && cert.is_none() {
                continue;
            }
            let what = match (kind, cert) {
                (Some(FileKind::Key), _) => None,
                (_, Some(c)) => Some(format!("{}, expires {}", c.subject, rfc3339(c.not_after))),
                (_, None) => Some("no certificate kcert can read".to_string()),
            };
            any = true;
            if !seen.insert(path.clone()) {
                continue;
            }
            let private = pb.file(name).is_some_and(|f| f.kind == FileKind::Key) || crate::pki::edit::has_private_key(bytes) || k3s::tls_secret(bytes).is_some();
            files.push(ReissuedFile { path: path.clone(), old_sha256: sha256(bytes), private, bytes: bytes.len() as u64, what, remade: unit.remade.contains(name), made_in: None });
            if s.remove.contains(name) {
                removed.push(path.clone());
            }
        }
        if any {
            services.push(s.name.as_str());
            creates.extend(s.creates.iter().cloned());
        }
    }
    if files.is_empty() {
        return Ok((None, notes));
    }
    // Told every service by name: the tool deletes only files kcert has backed up (without
    // one it would rotate every service it knows, files kcert never read among them).
    let mut tool = r.command.clone();
    for s in &services {
        tool.push_str(&format!(" {} {s}", r.service_flag));
    }
    let mut run = vec![tool];
    run.extend(removed.iter().map(|p| format!("rm -f {}", shell_quote(p))));
    let components = unit.components.iter().filter(|c| n.pki.components.contains_key(*c)).cloned().collect();
    let serves =
        n.pki.endpoints.iter().filter_map(|e| e.file.as_ref().filter(|p| seen.contains(*p)).map(|p| Served { host: e.host.clone(), port: e.port, path: p.clone() })).collect();
    Ok((Some(Reissue { unit: unit.name.clone(), stop: unit.stop.clone(), run, start: unit.start.clone(), components, files, creates, serves }), notes))
}

/// Plans the renewal of every node by the distribution's own tool, and proves it: the same
/// CAs sign what the tool makes, so every edge must hold through every stop and start.
pub fn plan(input: &Input<'_>, r: &reissue::Reissue) -> Result<Plan> {
    let pb = input.playbook;
    let chosen = chosen(r, &input.certs)?;
    let mut problems = parts::unreadable_kubeconfigs(pb, input.nodes);
    let mut per_node = Vec::new();
    let mut node_notes = Vec::new();
    for n in input.nodes {
        match plan_node(pb, r, &chosen, n) {
            Ok((p, notes)) => {
                if p.is_none() {
                    node_notes.push(NodeNote { node: n.name.clone(), note: format!("nothing {} re-issues for the chosen services is on it", r.command) });
                }
                node_notes.extend(notes.into_iter().map(|note| NodeNote { node: n.name.clone(), note }));
                per_node.push(p);
            }
            Err(e) => {
                problems.push(e);
                per_node.push(None);
            }
        }
    }
    if !problems.is_empty() {
        return Err(Error::input("renew", format!("nothing was changed:\n  {}", problems.join("\n  "))));
    }
    let offline = input.nodes.iter().all(|n| n.offline);
    let mut steps = Vec::new();
    // The datastore's copies go first: a server starting without its file reads them back.
    if let Some(n) = r.kubeconfig.as_ref().and_then(|k| input.nodes.iter().find_map(|n| n.pki.named.get(k).map(|p| (n, p)))) {
        let (node, kc) = n;
        for a in &r.api {
            let skipped = if offline {
                Some("offline (--root)".to_string())
            } else if !input.kubernetes_api {
                Some("kubernetes_api: false in the inventory".to_string())
            } else {
                None
            };
            steps.push(StepPlan::Api(ApiCall { name: a.name.clone(), node: node.name.clone(), script: a.script.replace("{kubeconfig}", &shell_quote(kc)), skipped, undo: None }));
        }
    }
    let mut notes = Vec::new();
    for names in parts::batches(input.nodes, input.batch_size) {
        let mut batch = Batch { nodes: Vec::new(), ops: Vec::new(), gates: Vec::new() };
        for name in &names {
            let i = input.nodes.iter().position(|n| &n.name == name).expect("batches are made of the input's nodes");
            let Some(re) = per_node[i].clone() else { continue };
            batch.nodes.push(name.clone());
            batch.ops.push(NodeOps { node: name.clone(), files: Vec::new(), restarts: Vec::new(), model: Vec::new(), reissue: Some(re) });
        }
        if !batch.ops.is_empty() {
            batch.gates = parts::gates_for(pb, &input.checks, &batch.nodes);
            steps.push(StepPlan::Batch(batch));
        }
    }
    if steps.iter().all(|s| matches!(s, StepPlan::Api(_))) {
        steps.clear();
    }
    if !steps.is_empty() {
        notes.push(format!("{} gives what it re-issues its own validity; --days does not apply", pb.name));
    }
    if offline && !steps.is_empty() {
        notes.push(format!("{} re-issues these certificates when its unit starts: this plan can be reviewed from files (--root), but only run against the nodes", pb.name));
    }
    let name = format!("{} re-issues its certificates (`{}`), one server at a time, then the agents", pb.name, r.command);
    let mut plan = super::renew::skeleton(input, offline, name, steps);
    plan.notes = notes;
    plan.node_notes = node_notes;
    let (model, broken) = parts::without_broken_edges(build::model(pb, input.nodes));
    plan.notes.extend(broken.iter().map(|b| format!("already broken before the renewal, and not mended by it: {b} (kcert verify)")));
    parts::prove(&model, &mut plan).map_err(|p| Error::input("renew", format!("nothing was changed:\n  {}", p.join("\n  "))))?;
    Ok(plan)
}
