//! Owns: runs already started, from their folders in the state dir: how each stands (`kcert
//! runs`), carrying one on (`resume`) or undoing it (`rollback`), and which run on a cluster
//! is unfinished, so that no second one starts beside it.
//! Must not: change a node except through the runner, or read a run's keys beyond memory.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::{RunOptions, connect, fleet_of, load_plan, saved};
use crate::error::{Error, Result};
use crate::plan::schema::PlanTarget;
use crate::plan::{Kind, Plan, StageId};
use crate::run::journal::{self, Journal, Record, Finish, TargetRecord};
use crate::run::{RunReport, Runner};

/// How a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RunState {
    #[serde(rename = "finished")]
    Finished,
    #[serde(rename = "stopped")]
    Stopped,
    #[serde(rename = "paused")]
    Paused,
    #[serde(rename = "interrupted")]
    Interrupted,
    #[serde(rename = "rolled back")]
    RolledBack,
    #[serde(rename = "rollback failed")]
    RollbackFailed,
    #[serde(rename = "unreadable")]
    Unreadable,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Finished => "finished",
            RunState::Stopped => "stopped",
            RunState::Paused => "paused",
            RunState::Interrupted => "interrupted",
            RunState::RolledBack => "rolled back",
            RunState::RollbackFailed => "rollback failed",
            RunState::Unreadable => "unreadable",
        }
    }
}

/// One line per run in the state dir: id, command, start, how it stands.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub command: String,
    pub started: String,
    pub state: RunState,
    pub detail: String,
    /// Where its journal is kept (`kcert runs -i`: the control-plane nodes, this machine).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept_on: Vec<String>,
}

pub(super) fn summary(id: &str, records: &[Record]) -> RunSummary {
    let (command, started) = match records.first() {
        Some(Record::RunStarted { command, at, .. }) => (command.to_string(), at.clone()),
        _ => ("?".into(), "?".into()),
    };
    let mut state = RunState::Interrupted;
    let mut detail = String::new();
    let mut stage = None;
    for r in records {
        match r {
            Record::StageStarted { stage: s } => stage = Some(*s),
            Record::RunFinished { status, message } => {
                state = if *status == Finish::Ok { RunState::Finished } else { RunState::Stopped };
                detail = message.clone();
            }
            Record::Paused { stage: s, step, .. } => {
                state = RunState::Paused;
                detail = format!("{s} step {}", step + 1);
            }
            Record::RolledBack { status, message, .. } => {
                state = if *status == Finish::Ok { RunState::RolledBack } else { RunState::RollbackFailed };
                detail = message.clone();
            }
            _ => {}
        }
    }
    if state == RunState::Interrupted {
        let changed = records.iter().any(|r| matches!(r, Record::Backup { .. } | Record::Written { .. }));
        detail = match stage {
            Some(s) if changed => format!("in {s}: `kcert resume {id}` or `kcert rollback {id}`"),
            Some(s) => format!("in {s}, before it changed anything: `kcert resume {id}` starts it over"),
            None => "before it changed anything: nothing to resume or roll back".into(),
        };
    }
    RunSummary { run_id: id.to_string(), command, started, state, detail, kept_on: Vec::new() }
}

/// `kcert runs`: every run in the state dir, oldest first.
pub fn list(state_dir: &Path) -> Vec<RunSummary> {
    journal::runs(state_dir)
        .into_iter()
        .map(|id| match journal::read(state_dir, &id) {
            Ok(records) => summary(&id, &records),
            Err(_) => RunSummary { run_id: id, command: "?".into(), started: "?".into(), state: RunState::Unreadable, detail: "its journal cannot be read (made by an older kcert?)".into(), kept_on: Vec::new() },
        })
        .collect()
}

/// The run on the same cluster (reached the same way) that is not finished and still has
/// changes on the nodes, said with what to do about it.
pub fn unfinished(state_dir: &Path, cluster: &PlanTarget) -> Option<String> {
    for id in journal::runs(state_dir).into_iter().rev() {
        let Ok(records) = journal::read(state_dir, &id) else { continue };
        let Some(Record::RunStarted { command, target, .. }) = records.first() else { continue };
        if target.inventory != cluster.inventory || target.root != cluster.root {
            continue;
        }
        let d = journal::done(&records);
        if d.unfinished() {
            let s = summary(&id, &records);
            let head = format!("the {command} run {id} on this cluster is unfinished ({}", s.state.as_str());
            // An interrupted run's detail already says what to do with it.
            return Some(match (s.state, s.detail.as_str()) {
                (RunState::Interrupted, d) => format!("{head}, {d})"),
                (_, "") => format!("{head}): carry it on with `kcert resume {id}`, or undo it with `kcert rollback {id}`"),
                (_, d) => format!("{head}, {d}): carry it on with `kcert resume {id}`, or undo it with `kcert rollback {id}`"),
            });
        }
    }
    None
}

/// A run's plan, keys and journal, for resume and rollback.
pub struct Existing {
    pub run_id: String,
    pub plan: Plan,
    pub keys: BTreeMap<String, String>,
    pub records: Vec<Record>,
    pub target: TargetRecord,
}

/// `need_keys`: a rotation carried on needs its CA keys; undone, it does not (its files come
/// back from the nodes' backups).
pub fn existing(state_dir: &Path, run_id: &str, need_keys: bool) -> Result<Existing> {
    let records = journal::read(state_dir, run_id)?;
    let Some(Record::RunStarted { target, .. }) = records.first().cloned() else {
        return Err(Error::input(format!("run {run_id}"), "its journal does not start with the run"));
    };
    let dir = journal::run_dir(state_dir, run_id)?;
    let plan = load_plan(&dir.join(journal::PLAN_FILE))?;
    let keys = if plan.cas.is_empty() || !need_keys { BTreeMap::new() } else { saved::plan_keys(&plan, &dir.join("keys"))? };
    Ok(Existing { run_id: run_id.to_string(), plan, keys, records, target })
}

/// The run a command names, or the most recent one: (id, said as "the most recent run").
pub fn pick(state_dir: &Path, run_id: Option<&str>) -> Result<(String, bool)> {
    match run_id {
        Some(r) => Ok((r.to_string(), false)),
        None => journal::runs(state_dir).pop().map(|r| (r, true)).ok_or_else(|| Error::input(format!("state dir {}", state_dir.display()), "no runs recorded there")),
    }
}

/// What resume and rollback share: the run, its playbook as it was, the fleet, the nodes.
struct Reopened {
    e: Existing,
    pb: crate::playbook::Playbook,
    fleet: crate::reach::fleet::Fleet,
}

/// How a command reaches a run's nodes when told (`-i`, `--root`): else as the run did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reach<'a> {
    pub inventory: Option<&'a Path>,
    pub root: Option<&'a Path>,
    /// Read `inventory` through `ansible-inventory --list`.
    pub from_ansible: bool,
}

fn reopen(state_dir: &Path, run_id: &str, reach: Reach<'_>, need_keys: bool) -> Result<Reopened> {
    let e = existing(state_dir, run_id, need_keys)?;
    let pb = saved::playbook_of(&e.plan)?;
    let fleet = match (reach.inventory, reach.root) {
        (None, None) => fleet_of(Reach { inventory: e.target.inventory.as_deref(), root: e.target.root.as_deref(), from_ansible: e.target.from_ansible }, &pb)?,
        _ => fleet_of(reach, &pb)?,
    };
    Ok(Reopened { e, pb, fleet })
}

/// `kcert resume [RUN]`: carries an interrupted, paused or stopped run on from its journal;
/// no step is done twice.
pub async fn resume(run_id: Option<&str>, reach: Reach<'_>, run: &RunOptions<'_>) -> Result<RunReport> {
    let (id, _) = pick(&run.state_dir, run_id)?;
    let done = journal::done(&journal::read(&run.state_dir, &id)?);
    let refused = if done.finished == Some(Finish::Ok) {
        Some("it finished; there is nothing to resume")
    } else if !done.started {
        Some("it stopped before its first stage: nothing was changed, and there is nothing to resume; start a new run")
    } else {
        None
    };
    if let Some(why) = refused {
        tidy(&run.state_dir, &id, reach, run).await;
        return Err(Error::input(format!("run {id}"), why));
    }
    let r = match reopen(&run.state_dir, &id, reach, true) {
        Ok(r) => r,
        Err(e) => {
            tidy(&run.state_dir, &id, reach, run).await;
            return Err(e);
        }
    };
    let mut g = crate::gather::gather(&r.fleet, &[]).await?;
    super::holds_up(&mut g, &r.e.plan, &r.e.keys, &done).await?;
    (run.confirm)(&r.e.plan, &[])?;
    let nodes = connect(&r.fleet, &r.e.plan).await?;
    let held = super::take_lease(&nodes, &r.fleet, &id, &format!("resume {}", r.e.plan.kind), Some(&id), run).await?;
    let stop = held.stop.clone();
    let runner = Journal::reopen(&run.state_dir, &id).map(|j| {
        Runner::new(&r.e.plan, &r.pb, nodes, &r.fleet.overrides, &r.e.keys, j, run.patience, r.fleet.concurrency, run.on_failure, run.observer).keep_copies_on(r.fleet.control_plane()).stop_when(stop)
    });
    super::under_lease(held, runner, &done, &r.fleet).await
}

/// A run that will not be carried on here still leaves no temp file of a killed write behind
/// (some hold private keys), on its nodes or in its copies: swept, best effort.
async fn tidy(state_dir: &Path, id: &str, reach: Reach<'_>, run: &RunOptions<'_>) {
    let Ok(r) = reopen(state_dir, id, reach, false) else { return };
    let Ok(nodes) = connect(&r.fleet, &r.e.plan).await else { return };
    let Ok(j) = Journal::reopen(state_dir, id) else { return };
    let runner = Runner::new(&r.e.plan, &r.pb, nodes, &r.fleet.overrides, &r.e.keys, j, run.patience, r.fleet.concurrency, run.on_failure, run.observer).keep_copies_on(r.fleet.control_plane());
    let _ = runner.sweep_temps().await;
}

/// `kcert rollback [RUN] --to-stage SN`: undoes a run's stages from the last down to `to`
/// (the first stage: everything), restoring each file byte for byte.
pub async fn rollback(run_id: Option<&str>, to_stage: &str, reach: Reach<'_>, run: &RunOptions<'_>) -> Result<RunReport> {
    let (id, _) = pick(&run.state_dir, run_id)?;
    let r = reopen(&run.state_dir, &id, reach, false)?;
    let stages: Vec<StageId> = r.e.plan.stages.iter().map(|s| s.id).collect();
    let wanted = StageId::parse(to_stage);
    let Some(to) = wanted.and_then(|w| stages.iter().position(|s| *s == w)) else {
        return Err(Error::Usage(format!("--to-stage {to_stage}: the plan's stages are {}", stages.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "))));
    };
    let nodes = connect(&r.fleet, &r.e.plan).await?;
    let held = super::take_lease(&nodes, &r.fleet, &id, &format!("rollback {}", r.e.plan.kind), Some(&id), run).await?;
    let result = async {
        let j = Journal::reopen(&run.state_dir, &id)?;
        let runner = Runner::new(&r.e.plan, &r.pb, nodes, &r.fleet.overrides, &r.e.keys, j, run.patience, r.fleet.concurrency, crate::run::OnFailure::Pause, run.observer).keep_copies_on(r.fleet.control_plane());
        // What a killed kcert changed after the last record this journal has, found on the nodes.
        runner.recover_unrecorded().await.map_err(Error::Runtime)?;
        if journal::done(&journal::read(&run.state_dir, &id)?).live_files == 0 {
            let _ = runner.sweep_temps().await;
            return Err(Error::input(format!("run {id}"), "nothing it wrote is left on the nodes (it changed nothing, or was rolled back already): there is nothing to undo"));
        }
        if let Err(bad) = runner.undoable(to).await {
            return Err(Error::input(format!("run {id}"), format!("cannot be rolled back as it stands; nothing was changed:\n  {}", bad.join("\n  "))));
        }
        (run.confirm)(&r.e.plan, &[])?;
        let report = runner.rollback(to).await;
        let message = match &report.failure {
            None => format!("stages {} and later undone", stages[to]),
            Some(f) => f.clone(),
        };
        runner.finish_rollback(&report, message).await;
        Ok(report)
    }
    .await;
    match result {
        Ok(mut report) => {
            report.notes.extend(held.release().await);
            Ok(report)
        }
        Err(e) => {
            held.release().await;
            Err(e)
        }
    }
}

/// The kind of a run, for the CLI's question before it is resumed or rolled back.
pub fn describe(state_dir: &Path, run_id: Option<&str>) -> Result<(String, Kind, String, Vec<String>)> {
    let (id, latest) = pick(state_dir, run_id)?;
    let records = journal::read(state_dir, &id)?;
    let Some(Record::RunStarted { command, at, target, .. }) = records.first().cloned() else {
        return Err(Error::input(format!("run {id}"), "its journal does not start with the run"));
    };
    let which = if latest { format!("the most recent run, {id}") } else { format!("run {id}") };
    Ok((which, command, at, target.nodes))
}
