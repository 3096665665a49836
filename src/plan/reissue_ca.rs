//! Owns: a CA rotation carried by the distribution's own datastore (k3s `certificate
//! rotate-ca`) as a plan: the cross-signed set made, staged on one server and handed to the
//! tool; every node restarted onto it (servers one at a time, then the agents, each node's
//! join token following the CA hash first); the old roots let go the same way; proven on the
//! model, where a cross-signed CA is accepted wherever the root that vouches for it is trusted.
//! Must not: do I/O (ops gathers the facts and keeps the keys 0600) or carry a private key.

use std::collections::{BTreeMap, BTreeSet};

use super::build;
use super::model::{CaId, Content, Model};
use super::parts::{self, KeyRef};
use super::reissue::{cert_in, unit_of};
use super::rotation::Input;
use super::schema::{
    Action, ApiCall, Batch, FileOp, ModelWrite, NewCa, NodeOps, Plan, Recipe, Reissue, ReissuedFile, Served, StageId, StagePlan, StageUndo, StepPlan, old_key_id,
};
use crate::error::{Error, Result};
use crate::gather::facts::NodeFacts;
use crate::pki::k3s::{self, CrossSigned};
use crate::pki::{first_cert, kubeconfig, sha256};
use crate::playbook::reissue::{self, RotateCa};
use crate::playbook::{FileKind, Playbook};
use crate::text::{prefix, rfc3339, shell_quote};

/// One CA type being rotated: its files, the set made for it, and its ids on the model.
struct Rotated {
    ty: String,
    /// The `files` names of its certificate and key.
    cert: String,
    key: String,
    set: CrossSigned,
    /// Every id the model gives a certificate of the type's file now (the old root, and an
    /// earlier rotation's intermediate and roots).
    olds: BTreeSet<CaId>,
    /// The root the cross-signed copy chains to: what every old bundle holds.
    old_root: CaId,
    new: CaId,
    /// The certificates of `olds`.
    old_certs: Vec<crate::pki::CertInfo>,
}

/// Plans the rotation of `types` (all of `rotate_ca.cas` when empty) and proves it; returns
/// the plan and the private keys its recipes name (for the run's 0600 key store, never the plan).
pub fn plan(input: &Input<'_>, r: &reissue::Reissue, rc: &RotateCa, types: &[String]) -> Result<(Plan, BTreeMap<String, String>)> {
    let pb = input.playbook;
    let refuse = |p: Vec<String>| Error::input("rotate-ca", format!("nothing was changed:\n  {}", p.join("\n  ")));
    let is_server = |n: &&NodeFacts| unit_of(r, n).is_some_and(|u| !u.when_under.is_empty());
    let Some(first) = input.nodes.iter().find(is_server) else {
        return Err(refuse(vec![format!("no {} server among the nodes: {} runs on a server", pb.name, rc.command)]));
    };
    let chosen: Vec<&reissue::CaType> = if types.is_empty() { rc.cas.iter().collect() } else { rc.cas.iter().filter(|c| types.contains(&c.ty)).collect() };
    let mut problems: Vec<String> = types
        .iter()
        .filter(|t| !rc.cas.iter().any(|c| &c.ty == *t))
        .map(|t| format!("--ca {t}: not one of {}'s CA types ({})", pb.name, rc.cas.iter().map(|c| c.ty.as_str()).collect::<Vec<_>>().join(", ")))
        .collect();
    problems.extend(parts::unreadable_kubeconfigs(pb, input.nodes));
    let found = build::cas(pb, input.nodes);
    let days = input.opts.ca_days.unwrap_or(3650);
    let mut rotated = Vec::new();
    let mut keys = BTreeMap::new();
    for c in chosen {
        let key = pb.file(&c.cert).and_then(|f| f.key.clone()).unwrap_or_default();
        fn read<'n>(n: &'n NodeFacts, name: &str) -> Option<(String, &'n crate::gather::facts::Shared)> {
            n.pki.named.get(name).and_then(|p| n.files.get(p).map(|b| (p.clone(), b)))
        }
        let (cert_path, cert_pem, key_path, key_pem) = match (read(first, &c.cert), read(first, &key)) {
            (Some((cp, c)), Some((kp, k))) => (cp, c, kp, k),
            (cert, _) => {
                let missing = if cert.is_none() { pb.file(&c.cert).map(|f| f.path.clone()) } else { pb.file(&key).map(|f| f.path.clone()) };
                problems.push(format!(
                    "{}: the {} CA cannot be cross-signed: {} is not there (the new CAs are signed with the old root's key, as `{}` requires)",
                    first.name,
                    c.ty,
                    missing.unwrap_or_default(),
                    rc.command
                ));
                continue;
            }
        };
        // Every server holds the datastore's copy: one that differs would be a cluster kcert misread.
        for n in input.nodes.iter().filter(is_server) {
            if let Some((p, _)) = read(n, &c.cert).filter(|(_, b)| *b != cert_pem) {
                problems.push(format!("{}: {p} differs from {}'s: every server holds the datastore's copy of the {} CA; refused until they agree", n.name, first.name, c.ty));
            }
        }
        let set = match k3s::cross_signed(&rc.product, &c.ty, cert_pem, key_pem, days, input.now, input.opts.key_type) {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!("{}: {cert_path} (with {key_path}): {e}", first.name));
                continue;
            }
        };
        let Ok(old_root) = first_cert(set.old_root.as_bytes()) else { continue };
        let Ok(inter) = first_cert(set.intermediate.as_bytes()) else { continue };
        let olds: BTreeSet<CaId> = found.keys().filter(|id| id.split('@').next() == Some(c.cert.as_str())).cloned().collect();
        let Some(old_root) = found.iter().find(|(_, k)| k.sha256 == old_root.sha256).map(|(id, _)| id.clone()) else { continue };
        keys.insert(c.cert.clone(), set.key.clone());
        if let Some(k) = std::str::from_utf8(key_pem).ok().filter(|k| k.contains("PRIVATE KEY")) {
            keys.insert(old_key_id(&c.cert), k.to_string());
        }
        let old_certs = olds.iter().filter_map(|id| found.get(id).cloned()).collect();
        rotated.push(Rotated { ty: c.ty.clone(), cert: c.cert.clone(), key, set, olds, old_root, new: format!("{}@{}", c.cert, prefix(&inter.sha256, 8)), old_certs });
    }
    let service = rc.service_key.as_ref().and_then(|k| first.pki.named.get(k).and_then(|p| first.files.get(p).map(|b| (p, b))));
    if let Some((path, old)) = service {
        match k3s::service_keys(old) {
            Ok(k) => {
                let name = rc.service_key.clone().unwrap_or_default();
                keys.insert(old_key_id(&name), String::from_utf8_lossy(old).into_owned());
                keys.insert(name, k);
            }
            Err(e) => problems.push(format!("{}: {path}: {e}", first.name)),
        }
    }
    if !problems.is_empty() {
        return Err(refuse(problems));
    }
    if rotated.is_empty() {
        return Err(refuse(vec!["no CA to rotate".into()]));
    }
    let staging = |suffix: &str| format!("{}/{}{suffix}", rc.staging.trim_end_matches('/'), input.id);
    let dir = staging("");
    let old_dir = staging("-old");

    // Join tokens pin the server CA bundle's hash: where it changes, every secure token follows.
    let token_hashes = match rotated.iter().find(|x| x.ty == rc.token_ca) {
        Some(x) => {
            let old = first.pki.named.get(&x.cert).and_then(|p| first.files.get(p)).expect("read above");
            let (from, to) = (k3s::ca_hash(old, input.now), k3s::ca_hash(x.set.cert.as_bytes(), input.now));
            match (from, to) {
                (Ok(f), Ok(t)) if f != t => Some((f, t)),
                _ => None,
            }
        }
        None => None,
    };

    let mut model = build::model(pb, input.nodes);
    for x in &rotated {
        model.vouched.insert(x.new.clone(), [x.old_root.clone()].into());
    }
    let servers: Vec<&NodeFacts> = input.nodes.iter().filter(is_server).collect();
    let agents: Vec<&NodeFacts> = input.nodes.iter().filter(|n| !is_server(n) && unit_of(r, n).is_some()).collect();
    let offline = input.opts.offline;
    let skipped = |why_online: Option<&str>| -> Option<String> { if offline { Some("offline (--root)".into()) } else { why_online.map(str::to_string) } };
    // The tool run on the first server with a staged set; `--force` where the set does not
    // verify against the datastore's (going back to a single old root).
    let tool = |dir: &str, force: bool| format!("{} {}={}{}", rc.command, rc.path_flag, shell_quote(dir), if force { " --force" } else { "" });
    let hand_over = |dir: &str, what: &str, undo: Option<String>| ApiCall {
        name: format!("{} {} {dir}: {what}", rc.command, rc.path_flag),
        node: first.name.clone(),
        script: tool(dir, false),
        skipped: skipped(None),
        undo,
    };

    // S1: the set staged where the tool reads it, then handed to the running server.
    let mut staged = Vec::new();
    let mut stage_problems = Vec::new();
    let mut push = |op: std::result::Result<FileOp, String>, path: &str| match op {
        Ok(o) => staged.push(o),
        Err(e) => stage_problems.push(format!("{}: {path}: {e}", first.name)),
    };
    let key_of = |id: &str| keys.get(id).cloned();
    for x in &rotated {
        // The old set, for a rollback to hand back: the files as they are, keys from the key store.
        let (crt, key) = (format!("{old_dir}/tls/{}-ca.crt", x.ty), format!("{old_dir}/tls/{}-ca.key", x.ty));
        let old_cert = first.pki.named.get(&x.cert).and_then(|p| first.files.get(p)).expect("read above");
        push(parts::file_op(&crt, None, Some(old_cert), None, false, &key_of, vec![format!("the old {} CA as it is, for a rollback", x.ty)], Vec::new()), &crt);
        let old_key = keys.get(&old_key_id(&x.cert)).cloned().unwrap_or_default();
        push(parts::file_op(&key, None, Some(old_key.as_bytes()), Some(KeyRef::Old(x.cert.clone())), true, &key_of, vec!["its key, for a rollback".into()], Vec::new()), &key);
        let (crt, key) = (format!("{dir}/tls/{}-ca.crt", x.ty), format!("{dir}/tls/{}-ca.key", x.ty));
        let said = vec![format!("new {} CA: intermediate, new root, the new root cross-signed by the old, the old root", x.ty)];
        push(parts::file_op(&crt, None, Some(x.set.cert.as_bytes()), None, false, &key_of, said, Vec::new()), &crt);
        push(
            parts::file_op(
                &key,
                None,
                Some(x.set.key.as_bytes()),
                Some(KeyRef::New(x.cert.clone())),
                true,
                &key_of,
                vec!["the intermediate's key, then the new root's".into()],
                Vec::new(),
            ),
            &key,
        );
    }
    if let (Some(name), Some(old)) = (&rc.service_key, service.map(|(_, b)| b)) {
        let path = format!("{old_dir}/tls/service.key");
        push(parts::file_op(&path, None, Some(old), Some(KeyRef::Old(name.clone())), true, &key_of, vec!["the service-account keys as they are, for a rollback".into()], Vec::new()), &path);
        let path = format!("{dir}/tls/service.key");
        let k = keys.get(name).cloned().unwrap_or_default();
        push(
            parts::file_op(
                &path,
                None,
                Some(k.as_bytes()),
                Some(KeyRef::New(name.clone())),
                true,
                &key_of,
                vec!["a new service-account key, then the old ones".into()],
                Vec::new(),
            ),
            &path,
        );
    }
    let s1 = vec![StepPlan::Batch(Batch { nodes: vec![first.name.clone()], ops: vec![ops_of(first, staged, Vec::new(), None)], gates: Vec::new() })];

    // S4: the set handed to the running server, then every node restarts onto it. The
    // hand-over opens the stage so that undoing the stage sets the datastore back first, and
    // a resume after that hands it over again.
    let mut s4 = vec![StepPlan::Api(hand_over(
        &dir,
        "the running server checks the new CAs against the old chain and saves them to its datastore; nothing on disk changes until a server starts",
        // Undone by setting the datastore back to the old set staged beside the new (a single
        // old root, which k3s takes only with --force).
        Some(tool(&old_dir, true)),
    ))];
    if rotated.iter().any(|x| x.ty == rc.token_ca)
        && let Some((node, kc)) = r.kubeconfig.as_ref().and_then(|k| first.pki.named.get(k)).map(|kc| (first, kc))
    {
        for a in &r.api {
            let why = if input.opts.kubernetes_api { None } else { Some("kubernetes_api: false in the inventory") };
            s4.push(StepPlan::Api(ApiCall { name: a.name.clone(), node: node.name.clone(), script: a.script.replace("{kubeconfig}", &shell_quote(kc)), skipped: skipped(why), undo: None }));
        }
    }
    let before = model.clone();
    let mut after = model.clone();
    for n in servers.iter().chain(&agents) {
        for (_, c) in after.files.iter_mut().filter(|(id, _)| id.node == n.name) {
            *c = resigned(c, &rotated);
        }
    }
    for group in node_groups(&servers, &agents, input.opts.batch_size) {
        let mut batch = Batch { nodes: Vec::new(), ops: Vec::new(), gates: Vec::new() };
        for n in group {
            let unit = unit_of(r, n).expect("grouped nodes have a unit");
            let files = reissued_files(pb, r, n, &before, &after, &rotated, rc, None);
            let tokens = match &token_hashes {
                Some((from, to)) => token_ops(n, rc, from, to).map_err(|e| refuse(vec![e]))?,
                None => Vec::new(),
            };
            let run = if is_server(&n) && rotated.iter().any(|x| x.ty == rc.token_ca) { removed_stores(r, n) } else { Vec::new() };
            let re = reissue_of(n, unit, run, files);
            batch.nodes.push(n.name.clone());
            batch.ops.push(ops_of(n, tokens, model_writes(&before, &after, &n.name), Some(re)));
        }
        batch.gates = parts::gates_for(pb, &input.checks, &batch.nodes);
        s4.push(StepPlan::Batch(batch));
    }

    // S5: the old roots let go: the bundles as intermediate and new root, handed over again.
    let pruned_dir = staging("-prune");
    let mut pruned_ops = Vec::new();
    let mut pruned_after = after.clone();
    for x in &rotated {
        let crt = format!("{pruned_dir}/tls/{}-ca.crt", x.ty);
        let key = format!("{pruned_dir}/tls/{}-ca.key", x.ty);
        let text = k3s::without_old_root(x.set.cert.as_bytes()).map_err(|e| refuse(vec![format!("{}: {e}", x.ty)]))?;
        let ops = [
            parts::file_op(&crt, None, Some(text.as_bytes()), None, false, &key_of, vec![format!("the {} CA without its old root: intermediate, new root", x.ty)], Vec::new()),
            parts::file_op(&key, None, Some(x.set.key.as_bytes()), Some(KeyRef::New(x.cert.clone())), true, &key_of, vec!["the same keys as staged before".into()], Vec::new()),
        ];
        for op in ops {
            pruned_ops.push(op.map_err(|e| refuse(vec![format!("{}: {e}", first.name)]))?);
        }
    }
    for c in pruned_after.files.values_mut() {
        *c = pruned(c, &rotated);
    }
    let mut s5 = vec![
        StepPlan::Batch(Batch { nodes: vec![first.name.clone()], ops: vec![ops_of(first, pruned_ops, Vec::new(), None)], gates: Vec::new() }),
        StepPlan::Api(hand_over(&pruned_dir, "the same CAs without the old roots (the service-account keys are kept, old ones included)", Some(tool(&dir, false)))),
    ];
    for group in node_groups(&servers, &agents, input.opts.batch_size) {
        let mut batch = Batch { nodes: Vec::new(), ops: Vec::new(), gates: Vec::new() };
        for n in group {
            let unit = unit_of(r, n).expect("grouped nodes have a unit");
            let files = reissued_files(pb, r, n, &after, &pruned_after, &rotated, rc, Some(StageId::Resign));
            batch.nodes.push(n.name.clone());
            batch.ops.push(ops_of(n, Vec::new(), model_writes(&after, &pruned_after, &n.name), Some(reissue_of(n, unit, Vec::new(), files))));
        }
        batch.gates = parts::gates_for(pb, &input.checks, &batch.nodes);
        s5.push(StepPlan::Batch(batch));
    }
    if !stage_problems.is_empty() {
        return Err(refuse(stage_problems));
    }

    let mut notes = vec![
        format!(
            "{} keeps its CAs in its datastore and writes them to every server's disk at start: kcert hands the new set to `{}` on {} and lets each node's own start re-issue its certificates; it signs no leaf itself",
            pb.name, rc.command, first.name
        ),
        format!("--days does not apply: {} gives the leaves it re-issues its own validity", pb.name),
    ];
    match &token_hashes {
        Some((from, to)) => notes.push(format!(
            "the server CA's hash changes ({}... -> {}...): every node's secure join token is rewritten before that node restarts, and so must any token kept elsewhere (automation that joins new nodes)",
            prefix(from, 12),
            prefix(to, 12)
        )),
        None => notes.push("the server CA's hash does not change: no join token is rewritten".into()),
    }
    notes.push(format!("between {} and the last agent's restart, a node restarted with its old token cannot join: restart nothing by hand until the run ends", StageId::NewCa));
    if offline {
        notes.push(format!("{} takes the new CAs at its servers' start: this plan can be reviewed from files (--root), but only run against the nodes", pb.name));
    }
    let cas = rotated.iter().map(|x| new_ca(first, x, &dir)).collect();
    let stages = vec![
        parts::preflight(offline, &["every server holds the same CA files (the datastore's copies)", "the trust graph verifies as the files stand (kcert verify)"]),
        StagePlan { id: StageId::NewCa, name: format!("the cross-signed CAs (and the old, for a rollback) staged on {}", first.name), checks: Vec::new(), steps: s1, undo: None },
        StagePlan {
            id: StageId::Resign,
            name: format!("{0}'s datastore takes the new CAs and every node restarts onto them ({0} re-issues every leaf): servers one at a time, then the agents", pb.name),
            checks: Vec::new(),
            steps: s4,
            undo: Some(StageUndo { in_order: true }),
        },
        StagePlan {
            id: StageId::Prune,
            name: "the old roots let go: handed over again without them, every node restarted".into(),
            checks: Vec::new(),
            steps: s5,
            undo: Some(StageUndo { in_order: true }),
        },
    ];
    let mut plan = input.rotation(cas, stages, notes);
    parts::prove(&model, &mut plan).map_err(refuse)?;
    Ok((plan, keys))
}

fn ops_of(n: &NodeFacts, files: Vec<FileOp>, model: Vec<ModelWrite>, reissue: Option<Reissue>) -> NodeOps {
    NodeOps { node: n.name.clone(), files, restarts: Vec::new(), model, reissue }
}

/// Servers one at a time (the one holding the staged set first), then agents in batches.
fn node_groups<'n>(servers: &[&'n NodeFacts], agents: &[&'n NodeFacts], batch_size: usize) -> Vec<Vec<&'n NodeFacts>> {
    let mut out: Vec<Vec<&NodeFacts>> = servers.iter().map(|s| vec![*s]).collect();
    out.extend(agents.chunks(batch_size.max(1)).map(<[&NodeFacts]>::to_vec));
    out
}

/// What a file holds once its node restarted onto the new CAs: a leaf of a rotated CA is
/// re-issued by the new one; a bundle or kubeconfig that trusts it trusts the new one too.
fn resigned(c: &Content, rotated: &[Rotated]) -> Content {
    let of = |id: &CaId| rotated.iter().find(|x| x.olds.contains(id));
    let widen = |cas: &BTreeSet<CaId>| {
        let mut out = cas.clone();
        out.extend(rotated.iter().filter(|x| cas.iter().any(|c| x.olds.contains(c))).map(|x| x.new.clone()));
        out
    };
    match c {
        Content::Leaf { signer } => Content::Leaf { signer: of(signer).map_or_else(|| signer.clone(), |x| x.new.clone()) },
        Content::Trust { cas } => Content::Trust { cas: widen(cas) },
        Content::Kubeconfig { client_signer, trusts } => {
            Content::Kubeconfig { client_signer: client_signer.as_ref().map(|s| of(s).map_or_else(|| s.clone(), |x| x.new.clone())), trusts: widen(trusts) }
        }
    }
}

/// What a file holds once the old roots are let go: no bundle trusts an old CA of a rotated type.
fn pruned(c: &Content, rotated: &[Rotated]) -> Content {
    let keep = |cas: &BTreeSet<CaId>| cas.iter().filter(|c| !rotated.iter().any(|x| x.olds.contains(*c))).cloned().collect();
    match c {
        Content::Trust { cas } => Content::Trust { cas: keep(cas) },
        Content::Kubeconfig { client_signer, trusts } => Content::Kubeconfig { client_signer: client_signer.clone(), trusts: keep(trusts) },
        leaf => leaf.clone(),
    }
}

/// The files of `node` whose trust content differs between two models.
fn model_writes(before: &Model, after: &Model, node: &str) -> Vec<ModelWrite> {
    after.files.iter().filter(|(k, c)| k.node == node && before.files.get(*k) != Some(*c)).map(|(k, c)| ModelWrite { path: k.path.clone(), content: c.clone() }).collect()
}

/// The stores a server would start from again (k3s's dynamic-cert.json: its :6443 certificate
/// is of the old CA), removed with the unit stopped.
fn removed_stores(r: &reissue::Reissue, n: &NodeFacts) -> Vec<String> {
    r.services.iter().flat_map(|s| &s.remove).filter_map(|f| n.pki.named.get(f)).map(|p| format!("rm -f {}", shell_quote(p))).collect()
}

/// Every file of `n` its restart makes again: the files whose content changes on the model
/// (CA files, leaves, bundles, a kubeconfig that embeds them, the stores removed), the keys of
/// the rotated CAs and the service-account keys; a chain-less CA copy may stay as it is.
fn reissued_files(
    pb: &Playbook,
    r: &reissue::Reissue,
    n: &NodeFacts,
    before: &Model,
    after: &Model,
    rotated: &[Rotated],
    rc: &RotateCa,
    made_in: Option<StageId>,
) -> Vec<ReissuedFile> {
    let writes: BTreeSet<String> = model_writes(before, after, &n.name).into_iter().map(|w| w.path).collect();
    let leaves_change = after.files.iter().any(|(k, c)| k.node == n.name && matches!(c, Content::Leaf { .. }) && before.files.get(k) != Some(c));
    let stores: BTreeSet<&String> = r.services.iter().flat_map(|s| &s.remove).collect();
    let mut out = Vec::new();
    for f in &pb.files {
        let Some(path) = n.pki.named.get(&f.name) else { continue };
        let Some(bytes) = n.files.get(path) else { continue };
        let ca_key = leaves_change && rotated.iter().any(|x| x.key == f.name);
        let service_key = leaves_change && rc.service_key.as_ref() == Some(&f.name);
        let store = leaves_change && stores.contains(&f.name) && rotated.iter().any(|x| x.ty == rc.token_ca);
        // A kubeconfig naming files (server/cred) keeps its bytes; one embedding them is written again.
        let embeds = f.kind != FileKind::Kubeconfig || kubeconfig::parse_kubeconfig(bytes).is_ok_and(|kc| !kc.embedded.is_empty());
        // A CA's chain-less copy (`*.nochain.crt`) is its file's first certificate, written at
        // start: the new intermediate from S4 on, unchanged when the old roots go.
        let chainless = f.kind == FileKind::Cert && f.key.is_none() && f.signer.is_none() && !stores.contains(&f.name);
        if chainless && made_in.is_some() {
            continue;
        }
        // A bundle or leaf no component's ref names (the agent's server-ca.crt, which its
        // kubeconfigs name) is not on the model: its bytes say whether a rotated CA is in it.
        // Leaves are re-issued when the CAs change (S4), not when the old roots go (S5).
        let holds_old = f.kind != FileKind::Kubeconfig && f.kind != FileKind::Key && holds_rotated(bytes, rotated, made_in.is_none());
        let remade = unit_of(r, n).is_some_and(|u| u.remade.contains(&f.name));
        if !(writes.contains(path) && embeds || ca_key || service_key || store || holds_old || remade) {
            continue;
        }
        let private = f.kind == FileKind::Key || crate::pki::edit::has_private_key(bytes) || k3s::tls_secret(bytes).is_some();
        let what = cert_in(pb, &f.name, bytes).map(|c| format!("{}, expires {}", c.subject, rfc3339(c.not_after)));
        let (old_sha256, what) = if made_in.is_some() { (String::new(), None) } else { (sha256(bytes), what) };
        out.push(ReissuedFile { path: path.clone(), old_sha256, private, bytes: bytes.len() as u64, what, remade, made_in });
    }
    out
}

/// Whether a PEM file holds a certificate of a rotated type's old CAs, or (`leaves`) a leaf
/// one of them signed.
fn holds_rotated(bytes: &[u8], rotated: &[Rotated], leaves: bool) -> bool {
    let Ok(p) = crate::pki::parse_pem(bytes) else { return false };
    // A leaf's file carries its CA bundle after it; without `leaves` only a bundle counts.
    if !leaves && !p.certs.first().is_some_and(|c| c.is_ca) {
        return false;
    }
    let signed = |c: &crate::pki::CertInfo, x: &Rotated| leaves && !c.is_ca && crate::pki::find_issuer(c, &x.old_certs.iter().collect::<Vec<_>>()).is_some();
    p.certs.iter().any(|c| rotated.iter().any(|x| x.old_certs.iter().any(|o| o.sha256 == c.sha256) || signed(c, x)))
}

fn reissue_of(n: &NodeFacts, unit: &reissue::Unit, run: Vec<String>, files: Vec<ReissuedFile>) -> Reissue {
    let paths: BTreeSet<&String> = files.iter().map(|f| &f.path).collect();
    let serves =
        n.pki.endpoints.iter().filter_map(|e| e.file.as_ref().filter(|p| paths.contains(p)).map(|p| Served { host: e.host.clone(), port: e.port, path: p.clone() })).collect();
    let components = unit.components.iter().filter(|c| n.pki.components.contains_key(*c)).cloned().collect();
    Reissue { unit: unit.name.clone(), stop: unit.stop.clone(), run, start: unit.start.clone(), components, files, creates: Vec::new(), serves }
}

/// The node's files holding a join token that pins `from`: each made to pin `to`, its secret
/// kept where it is (the recipe carries the two hashes only).
fn token_ops(n: &NodeFacts, rc: &RotateCa, from: &str, to: &str) -> std::result::Result<Vec<FileOp>, String> {
    let mut out = Vec::new();
    for path in &rc.tokens {
        let Some(old) = n.files.get(path) else { continue };
        let Ok(new) = k3s::rehash_tokens(old, from, to) else { continue };
        let recipe = Recipe::JoinToken { from: from.to_string(), to: to.to_string() };
        if recipe.apply(Some(old), &|_| None).map_err(|e| format!("{}: {path}: {e}", n.name))?.as_deref() != Some(new.as_slice()) {
            return Err(format!("{}: {path}: the token recipe does not rebuild the planned bytes (kcert bug): refused", n.name));
        }
        out.push(FileOp {
            path: path.clone(),
            action: Action::Modify,
            old_sha256: Some(sha256(old)),
            new_sha256: Some(sha256(&new)),
            mode: 0o600,
            private: true,
            bytes: new.len() as u64,
            old_bytes: old.len() as u64,
            recipe,
            changes: [format!("its join token pins the new server CA hash {}... (was {}...)", prefix(to, 12), prefix(from, 12))].into(),
            certificates: Vec::new(),
        });
    }
    Ok(out)
}

fn new_ca(first: &NodeFacts, x: &Rotated, dir: &str) -> NewCa {
    let old = first_cert(x.set.old_root.as_bytes()).expect("parsed when planned");
    let new = first_cert(x.set.intermediate.as_bytes()).expect("parsed when planned");
    NewCa {
        alias: x.ty.clone(),
        name: x.cert.clone(),
        path: first.pki.named.get(&x.cert).cloned().unwrap_or_default(),
        key_path: first.pki.named.get(&x.key).cloned().unwrap_or_default(),
        old_id: x.old_root.clone(),
        old_subject: old.subject.clone(),
        old_sha256: old.sha256.clone(),
        old_not_after: old.not_after,
        new_id: x.new.clone(),
        new_subject: new.subject.clone(),
        new_sha256: new.sha256.clone(),
        new_not_after: new.not_after,
        key_type: crate::pki::sign::KeyType::of(&new).map(|k| k.label().to_string()).unwrap_or_default(),
        cert_pem: x.set.cert.clone(),
        old_pem: x.set.old_root.clone(),
        staged_cert: format!("{dir}/tls/{}-ca.crt", x.ty),
        staged_key: format!("{dir}/tls/{}-ca.key", x.ty),
    }
}
