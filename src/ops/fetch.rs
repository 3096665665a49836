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
use crate::run::copies::{self, CopyError, NodeCopy};
use crate::run::journal::{self, Record};
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

/// Which copies `all_copies` reads.
#[derive(Clone, Copy)]
enum Which<'a> {
    /// Of this run, with its plan.
    Run(&'a str),
    /// Of every run, their journals alone.
    Every,
    /// Of every run whose copy does not say it ended (`copies::states`), their journals alone.
    NotEnded,
}

/// What `all_copies` found on the nodes.
#[derive(Default)]
struct Copies {
    /// The copies read, by run id.
    read: BTreeMap<String, Vec<NodeCopy>>,
    /// (`Which::NotEnded`) the copies not read because they say they ended: by run id,
    /// (node, the journal's records).
    ended: BTreeMap<String, Vec<(String, usize)>>,
}

/// Every node's copies of the runs it keeps, the nodes read at once; `seen`: what a node
/// already answered to `copies::states_survey` (asked with its discovery), so it is not asked
/// again.
async fn all_copies(nodes: &[(String, Arc<dyn Transport>)], which: Which<'_>, seen: &BTreeMap<String, Snapshot>) -> Result<Copies> {
    let per_node = futures::future::join_all(nodes.iter().map(|(name, t)| async move {
        let survey = match which {
            Which::Run(id) => return Ok((copies::read_copies(name, t.as_ref(), &[id.to_string()], true).await?, Vec::new())),
            // Every journal listed and read in one round trip (the plans are not needed).
            Which::Every => copies::journals_survey(),
            // The runs listed and their states read in one round trip; the journals of those not
            // known to have ended (seldom any) in a second.
            Which::NotEnded => copies::states_survey(),
        };
        let seen = match seen.get(name) {
            Some(snap) => Prefetched::new(t.as_ref(), snap.clone()),
            None => Prefetched::survey(t.as_ref(), &survey).await.map_err(|e| CopyError::Reach(e.message))?,
        };
        // Listing a node's runs and reading their states are reads: a failure is the node's.
        let mut ids = copies::node_runs(&seen).await.map_err(CopyError::Reach)?;
        let mut ended = Vec::new();
        if let Which::NotEnded = which {
            let states = copies::states(&seen, &ids).await.map_err(CopyError::Reach)?;
            let (done, open): (Vec<_>, Vec<_>) = ids.into_iter().zip(states).partition(|(_, s)| s.is_some());
            ended = done.into_iter().filter_map(|(id, s)| Some((id, s?))).collect();
            ids = open.into_iter().map(|(id, _)| id).collect();
        }
        Ok::<_, CopyError>((copies::read_copies(name, &seen, &ids, false).await?, ended))
    }))
    .await;
    let mut found = Copies::default();
    for ((name, _), got) in nodes.iter().zip(per_node) {
        // A copy that cannot be read is bad input on that node (nothing was changed); a node
        // that cannot be asked is a failure.
        let (copies, done) = got.map_err(|e| match e {
            CopyError::Reach(m) => Error::node(name.clone(), m),
            CopyError::Unreadable(m) => Error::input(name.clone(), m),
        })?;
        for (id, c) in copies {
            found.read.entry(id).or_default().push(c);
        }
        for (id, n) in done {
            found.ended.entry(id).or_default().push((name.clone(), n));
        }
    }
    Ok(found)
}

/// `kcert runs -i INVENTORY`: the runs the cluster's control plane keeps, each as its longest
/// consistent copy says, with where it is kept (and whether this machine has it too).
pub async fn cluster_runs(reach: Reach<'_>, state_dir: &Path) -> Result<Vec<RunSummary>> {
    let nodes = control_plane(reach).await?;
    let mut out = Vec::new();
    for (id, copies) in all_copies(&nodes, Which::Every, &BTreeMap::new()).await?.read {
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
/// `seen`: what nodes already answered to `copies::states_survey`. A copy that says it ended
/// is not read: it stands for its run unless a longer copy (a node's or this machine's) says
/// more.
pub async fn cluster_unfinished(nodes: &[(String, Arc<dyn Transport>)], seen: &BTreeMap<String, Snapshot>, state_dir: &Path, inventory_path: Option<&Path>) -> Result<Option<String>> {
    let Copies { read, ended } = all_copies(nodes, Which::NotEnded, seen).await?;
    let ids: std::collections::BTreeSet<&String> = read.keys().chain(ended.keys()).collect();
    for id in ids.into_iter().rev() {
        let copies = read.get(id).map(Vec::as_slice).unwrap_or_default();
        let done = ended.get(id).map(Vec::as_slice).unwrap_or_default();
        let open_len = copies.iter().map(|c| c.records.len()).max().unwrap_or(0);
        let ended_len = done.iter().map(|(_, n)| *n).max();
        // An ended copy at least as long as every open one stands for its run unless this
        // machine's journal is longer: first its lines (they bound its records, counted
        // without parsing), then, only when they could be more, its records.
        let ended_stands = |this_machine: usize| ended_len.is_some_and(|n| n >= open_len && n >= this_machine);
        if ended_stands(journal::records_at_most(state_dir, id).unwrap_or(0)) {
            continue;
        }
        let local = journal::read(state_dir, id).ok();
        if ended_stands(local.as_ref().map_or(0, Vec::len)) {
            continue;
        }
        let best = copies.iter().max_by_key(|c| c.records.len()).map(|c| &c.records);
        let records = match (&local, best) {
            (Some(l), Some(b)) if l.len() > b.len() => l,
            (_, Some(b)) => b,
            (Some(l), None) => l,
            (None, None) => continue,
        };
        let d = journal::done(records);
        if d.unfinished() {
            let s = summary(id, records);
            let held: std::collections::BTreeSet<&str> = copies.iter().map(|c| c.node.as_str()).chain(done.iter().map(|(n, _)| n.as_str())).collect();
            let inv = inventory_path.map(|p| format!(" -i {}", p.display())).unwrap_or_default();
            return Ok(Some(format!(
                "the {} run {id} on this cluster is unfinished ({}; its journal is kept on {}): carry it on with `kcert resume{inv} {id}`, or undo it with `kcert rollback{inv} {id}`",
                s.command,
                s.state.as_str(),
                held.into_iter().collect::<Vec<_>>().join(", ")
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
    let copies = all_copies(&nodes, Which::Run(&id), &BTreeMap::new()).await?.read.remove(&id).unwrap_or_default();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Kind, StageId};
    use crate::reach::transport::LocalTransport;
    use crate::run::journal::{At, Finish, TargetRecord};

    /// A renew run's journal: started, one file changed on cp1 (live), and `end` after it.
    fn journal(id: &str, end: &[Record]) -> Vec<u8> {
        let target = TargetRecord { inventory: None, root: None, from_ansible: false, nodes: vec!["cp1".into()] };
        let at = At::step(StageId::Resign, 0);
        let mut records = vec![
            Record::RunStarted { run_id: id.into(), command: Kind::Renew, at: "2026-12-05T00:00:00Z".into(), target },
            Record::StageStarted { stage: StageId::Resign },
            Record::Backup { node: "cp1".into(), path: "/etc/a.crt".into(), backup: "/b/a.crt".into(), sha256: "aa".into(), at, absent: false },
            Record::Written { node: "cp1".into(), path: "/etc/a.crt".into(), old_sha256: "aa".into(), new_sha256: "bb".into(), at },
        ];
        records.extend(end.iter().cloned());
        records.iter().map(|r| serde_json::to_string(r).unwrap() + "\n").collect::<String>().into_bytes()
    }

    /// A control-plane node (a directory tree) keeping run `id`: its journal, and its state file
    /// when given.
    fn node(name: &str, id: &str, journal: &[u8], state: Option<&str>) -> (tempfile::TempDir, (String, Arc<dyn Transport>)) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(copies::NODE_RUNS.trim_start_matches('/')).join(id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("journal.jsonl"), journal).unwrap();
        if let Some(s) = state {
            std::fs::write(dir.join("state"), s).unwrap();
        }
        let t: Arc<dyn Transport> = Arc::new(LocalTransport::new(name, Some(root.path().to_path_buf())));
        (root, (name.to_string(), t))
    }

    #[test]
    fn an_ended_copy_is_not_read_and_stands_for_its_run_unless_a_longer_copy_says_more() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let state_dir = tempfile::tempdir().unwrap();
        let unfinished = |nodes: &[(String, Arc<dyn Transport>)]| rt.block_on(cluster_unfinished(nodes, &BTreeMap::new(), state_dir.path(), None)).unwrap();
        let id = "20261205T000000Z-renew-abcdef";
        let finished = journal(id, &[Record::RunFinished { status: Finish::Ok, message: "done".into() }]);
        let paused = journal(id, &[Record::Paused { stage: StageId::Resign, step: 0, message: "stopped".into() }]);
        // What a run writes beside its journal: ended (with its records) or open.
        assert_eq!(copies::ended(&finished), Some(5));
        assert_eq!(copies::ended(&paused), None, "a paused run with a changed file is open");
        let rolled_back = journal(id, &[Record::StageRolledBack { stage: StageId::Resign, status: Finish::Ok, message: "restored".into() }, Record::RolledBack { at: "t".into(), status: Finish::Ok, message: "".into() }]);
        assert_eq!(copies::ended(&rolled_back), Some(6), "nothing it changed is left");
        // A copy that says it ended is not read: garbage in its journal stops nothing.
        let (_a, cp1) = node("cp1", id, b"garbage\nmore garbage\n", Some("ended 5\n"));
        assert_eq!(unfinished(std::slice::from_ref(&cp1)), None);
        // The same copy without a state (an older kcert's) is read, and its garbage said.
        let (_b, old) = node("cp1", id, b"garbage\nmore garbage\n", None);
        let err = rt.block_on(cluster_unfinished(&[old], &BTreeMap::new(), state_dir.path(), None)).unwrap_err();
        assert!(matches!(err, Error::Input { .. }), "bad input on the node, not a failure to reach it: {err:?}");
        let err = err.to_string();
        assert!(err.starts_with("cp1: ") && err.contains("journal.jsonl") && err.contains("line 1") && err.contains("aside"), "{err}");
        // An open copy is read and judged: a paused run with a changed file is unfinished...
        let (_c, cp2) = node("cp2", id, &paused, Some("open\n"));
        let said = unfinished(std::slice::from_ref(&cp2)).expect("unfinished");
        assert!(said.contains(id) && said.contains("kept on cp2") && said.contains("kcert resume"), "{said}");
        // ...unless another node's ended copy is at least as long (cp2 missed the last copy).
        assert_eq!(unfinished(&[cp1.clone(), cp2.clone()]), None);
        // An ended copy shorter than an open one (a later resume reached cp2 only) is stale.
        let (_d, short) = node("cp1", id, b"garbage\n", Some("ended 4\n"));
        let said = unfinished(&[short, cp2.clone()]).expect("the longer open copy wins");
        assert!(said.contains("kept on cp1, cp2"), "{said}");
        // This machine's own longer journal of the run says more than an ended copy too.
        let local = state_dir.path().join("runs").join(id);
        std::fs::create_dir_all(&local).unwrap();
        std::fs::write(local.join("journal.jsonl"), journal(id, &[Record::StepDone { stage: StageId::Resign, step: 0 }, Record::Paused { stage: StageId::Resign, step: 1, message: "stopped".into() }])).unwrap();
        assert!(unfinished(std::slice::from_ref(&cp1)).is_some_and(|s| s.contains(id)));
    }
}
