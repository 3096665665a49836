//! Owns: the runs a cluster remembers (each control-plane node's copy under
//! /var/lib/kcert/runs): listing them (`kcert runs -i`), refusing a new run beside an
//! unfinished one the cluster knows, and bringing a run to this machine for `resume -i` or
//! `rollback -i` (the longest consistent journal, its plan, and the CA keys the nodes hold).
//! Must not: change a node, or keep a key anywhere but memory and the run's 0600 key store.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::runs::{Reach, RunSummary, summary};
use crate::error::{Error, Result};
use crate::pki::first_cert;
use crate::pki::sign::key_matches;
use crate::plan::Plan;
use crate::plan::schema::{Recipe, old_key_id};
use crate::reach::fleet::Fleet;
use crate::reach::inventory::{self, LoadOptions};
use crate::reach::transport::{FileData, Prefetched, Snapshot, Transport};
use crate::run::Event;
use crate::run::copies::{self, NodeCopy};
use crate::run::journal::{self, Finish, Record};
use crate::run::keys;

/// The control-plane nodes of an inventory (or the one node a `--root` tree is), connected:
/// (name, transport).
async fn control_plane(reach: Reach<'_>) -> Result<Vec<(String, Arc<dyn Transport>)>> {
    let fleet = match (reach.inventory, reach.root) {
        (Some(path), _) => {
            let inv = inventory::load(path, &LoadOptions { from_ansible: reach.from_ansible, ..LoadOptions::default() })?;
            let all = Fleet::from_inventory(&inv, &[], None)?;
            Fleet::from_inventory(&inv, &all.control_plane(), None)?
        }
        (None, root) => Fleet::local(root.map(Path::to_path_buf), None)?,
    };
    let results = fleet.run(&|_| {}, |t, target| async move { Ok((target.name.clone(), t)) }).await;
    let mut out = Vec::new();
    let mut failed = Vec::new();
    for (target, r) in results {
        match r {
            Ok(x) => out.push(x),
            Err(e) => failed.push(format!("{}: {}", target.name, e.message)),
        }
    }
    if out.is_empty() {
        return Err(Error::Runtime(format!("no control-plane node answers, so none can say which runs the cluster keeps:\n  {}", failed.join("\n  "))));
    }
    Ok(out)
}

/// Every node's copy of every run it keeps (`only`: of that run, with its plan; else the
/// journals alone), the nodes read at once; `seen`: what a node already answered to
/// `copies::journals_survey` (asked with its discovery), so it is not asked again.
async fn all_copies(nodes: &[(String, Arc<dyn Transport>)], only: Option<&str>, seen: &BTreeMap<String, Snapshot>) -> Result<BTreeMap<String, Vec<NodeCopy>>> {
    let per_node = futures::future::join_all(nodes.iter().map(|(name, t)| async move {
        match only {
            Some(id) => copies::read_copies(name, t.as_ref(), &[id.to_string()], true).await,
            None => {
                // Every journal listed and read in one round trip (the plans are not needed).
                let seen = match seen.get(name) {
                    Some(snap) => Prefetched::new(t.as_ref(), snap.clone()),
                    None => Prefetched::survey(t.as_ref(), &copies::journals_survey()).await.map_err(|e| e.message)?,
                };
                let ids = copies::node_runs(&seen).await?;
                copies::read_copies(name, &seen, &ids, false).await
            }
        }
    }))
    .await;
    let mut out: BTreeMap<String, Vec<NodeCopy>> = BTreeMap::new();
    for ((name, _), got) in nodes.iter().zip(per_node) {
        for (id, c) in got.map_err(|e| Error::node(name.clone(), e))? {
            out.entry(id).or_default().push(c);
        }
    }
    Ok(out)
}

/// `kcert runs -i INVENTORY`: the runs the cluster's control plane keeps, each as its longest
/// consistent copy says, with where it is kept (and whether this machine has it too).
pub async fn cluster_runs(reach: Reach<'_>, state_dir: &Path) -> Result<Vec<RunSummary>> {
    let nodes = control_plane(reach).await?;
    let mut out = Vec::new();
    for (id, copies) in all_copies(&nodes, None, &BTreeMap::new()).await? {
        let local = journal::read(state_dir, &id).ok();
        let mut all: Vec<(&str, &[Record])> = copies.iter().map(|c| (c.node.as_str(), c.records.as_slice())).collect();
        if let Some(l) = &local {
            all.push(("this machine", l.as_slice()));
        }
        let mut s = match copies::longest_consistent(&all) {
            Ok((_, records)) => summary(&id, records),
            Err(e) => RunSummary { run_id: id.clone(), command: "?".into(), started: "?".into(), state: super::runs::RunState::Unreadable, detail: e, kept_on: Vec::new() },
        };
        s.kept_on = all.iter().map(|(at, _)| at.to_string()).collect();
        out.push(s);
    }
    Ok(out)
}

/// The unfinished run (changes still on the nodes, not finished) the cluster's copies show,
/// said with what to do, unless this machine's own journal of it says it finished since.
/// `seen`: what nodes already answered to `copies::journals_survey`.
pub async fn cluster_unfinished(nodes: &[(String, Arc<dyn Transport>)], seen: &BTreeMap<String, Snapshot>, state_dir: &Path, inventory_path: Option<&Path>) -> Result<Option<String>> {
    for (id, copies) in all_copies(nodes, None, seen).await?.into_iter().rev() {
        let Some(best) = copies.iter().max_by_key(|c| c.records.len()) else { continue };
        let local = journal::read(state_dir, &id).ok();
        let records = match &local {
            Some(l) if l.len() > best.records.len() => l,
            _ => &best.records,
        };
        let d = journal::done(records);
        if d.live_files > 0 && d.finished != Some(Finish::Ok) {
            let s = summary(&id, records);
            let held: Vec<&str> = copies.iter().map(|c| c.node.as_str()).collect();
            let inv = inventory_path.map(|p| format!(" -i {}", p.display())).unwrap_or_default();
            return Ok(Some(format!(
                "the {} run {id} on this cluster is unfinished ({}; its journal is kept on {}): carry it on with `kcert resume{inv} {id}`, or undo it with `kcert rollback{inv} {id}`",
                s.command,
                s.state.as_str(),
                held.join(", ")
            )));
        }
    }
    Ok(None)
}

/// Brings run `run_id` (default: the newest the cluster or this machine knows) to this
/// machine's state dir from the control-plane nodes: the longest consistent journal (this
/// machine's own, when it is that), the plan, and the run's CA keys where the nodes hold them.
/// Says which copy it took. Returns the run's id.
pub async fn fetch(reach: Reach<'_>, state_dir: &Path, run_id: Option<&str>, observer: &(dyn Fn(&Event) + Sync)) -> Result<String> {
    let nodes = control_plane(reach).await?;
    let cluster = reach.inventory.or(reach.root).map(|p| p.display().to_string()).unwrap_or_else(|| "this machine".into());
    let id = match run_id {
        Some(id) => id.to_string(),
        None => {
            let mut ids: Vec<String> = journal::runs(state_dir);
            for (_, t) in &nodes {
                ids.extend(copies::node_runs(t.as_ref()).await.unwrap_or_default());
            }
            ids.sort();
            ids.pop().ok_or_else(|| Error::input(format!("cluster of {cluster}"), "no run is kept on its control-plane nodes, nor in this machine's state dir"))?
        }
    };
    let copies = all_copies(&nodes, Some(&id), &BTreeMap::new()).await?.remove(&id).unwrap_or_default();
    let local = journal::read(state_dir, &id).ok();
    let mut all: Vec<(&str, &[Record])> = copies.iter().map(|c| (c.node.as_str(), c.records.as_slice())).collect();
    if let Some(l) = &local {
        all.push(("this machine", l.as_slice()));
    }
    if all.is_empty() {
        return Err(Error::input(format!("run {id}"), format!("no control-plane node of {cluster} keeps it, nor does this machine")));
    }
    let (from, records) = copies::longest_consistent(&all).map_err(|e| Error::input(format!("run {id}"), format!("{e}; nothing was changed")))?;
    let lengths = copies::lengths(&all);
    let dir = state_dir.join("runs").join(&id);
    if from != "this machine" {
        let chosen = copies.iter().find(|c| c.node == from).expect("the longest copy is a node's");
        let plan_bytes = match (chosen.plan.as_ref(), std::fs::read(dir.join(journal::PLAN_FILE)).ok()) {
            (Some(p), _) => p.clone(),
            (None, Some(p)) => p,
            (None, None) => return Err(Error::input(format!("run {id}"), format!("{from} keeps its journal but not its plan; nothing was changed"))),
        };
        check_plan(&id, &plan_bytes, records)?;
        keys::write_private(&dir.join(journal::PLAN_FILE), &plan_bytes)?;
        keys::write_private(&dir.join("journal.jsonl"), &chosen.journal)?;
    }
    let said = match local {
        None => format!("run {id}: this machine has no journal of it; took {from}'s ({lengths})"),
        Some(_) if from == "this machine" => format!("run {id}: this machine's journal is the longest ({lengths})"),
        Some(_) => format!("run {id}: the copies disagree in length ({lengths}); took {from}'s, the longest, of which the others are a start"),
    };
    observer(&Event::Note { message: said });
    let plan = super::load_plan(&dir.join(journal::PLAN_FILE))?;
    if let Some(m) = fetch_keys(&plan, &nodes, &dir.join("keys")).await? {
        observer(&Event::Note { message: m });
    }
    Ok(id)
}

/// The plan a journal names (its `plan` record's sha256), or why not.
fn check_plan(id: &str, plan: &[u8], records: &[Record]) -> Result<()> {
    let want = records.iter().find_map(|r| match r {
        Record::Plan { sha256, .. } => Some(sha256.clone()),
        _ => None,
    });
    match want {
        Some(w) if w != crate::pki::sha256(plan) => Err(Error::input(format!("run {id}"), "the plan kept beside its journal is not the one the journal names (sha256 differs); nothing was changed")),
        _ => Ok(()),
    }
}

/// The run's CA keys this machine lacks, read from the control-plane nodes: a new CA's key
/// where S1 staged it or S5 put it, an old one's where it was or where S2 copied it; each
/// checked to be its CA's before it is kept (0600). Says what it could not find (resume needs
/// it; rollback does not).
async fn fetch_keys(plan: &Plan, nodes: &[(String, Arc<dyn Transport>)], dir: &Path) -> Result<Option<String>> {
    let need: Vec<String> = plan.key_ids().into_iter().filter(|id| !dir.join(format!("{id}.key")).is_file()).collect();
    if need.is_empty() {
        return Ok(None);
    }
    // Where each CA's keys (new and old) may be on each node: every path the plan writes one to.
    let mut paths: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (_, _, node, f) in plan.file_ops() {
        if matches!(f.recipe, Recipe::CaKey { .. } | Recipe::OldCaKey { .. }) {
            paths.entry(node).or_default().push(f.path.clone());
        }
    }
    let mut found: BTreeMap<String, String> = BTreeMap::new();
    for (node, t) in nodes {
        let Some(p) = paths.get(node.as_str()) else { continue };
        let data = t.read_files(p).await.map_err(|e| Error::node(node.clone(), e.message))?;
        for bytes in data.into_iter().filter_map(|d| if let FileData::Found(b) = d { Some(b) } else { None }) {
            let Some(key) = crate::pki::edit::key_pem(&bytes) else { continue };
            for c in &plan.cas {
                for (id, pem) in [(c.name.clone(), &c.cert_pem), (old_key_id(&c.name), &c.old_pem)] {
                    if need.contains(&id) && !found.contains_key(&id) && first_cert(pem.as_bytes()).ok().is_some_and(|cert| key_matches(&cert, key.as_bytes()).unwrap_or(false)) {
                        found.insert(id, key.clone());
                    }
                }
            }
        }
    }
    keys::save_keys(dir, &found)?;
    let missing: Vec<&String> = need.iter().filter(|id| !found.contains_key(*id)).collect();
    Ok((!missing.is_empty()).then(|| {
        format!(
            "the keys {} are on no control-plane node (the run was cut off before S1 put them there, or after they were removed): `kcert resume` cannot carry it on from this machine; `kcert rollback` can undo it",
            missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        )
    }))
}
