//! Owns: carrying out a plan on the nodes, the one executor of every change kcert makes:
//! stage by stage, step by step; per batch, backups on the node and writes checked against
//! the plan's sha256s before and after (a resumed step is never applied twice), restarts,
//! live gates; API steps; a journal record before and after each; rolling a stage back in
//! reverse (on a failed gate, or `kcert rollback`).
//! Must not: decide what changes (the plan does) or print (events go to an observer).

pub mod copies;
pub mod etcd;
pub mod gate;
pub mod journal;
pub mod keys;
pub mod lease;
mod node;
mod preflight;
mod reissue;
pub mod restart;
mod step;
mod undo;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::plan::{Plan, StageId};
use crate::plan::schema::StepPlan;
use crate::playbook::Playbook;
use crate::reach::fleet::Connected;
use crate::reach::inventory::ComponentOverride;
use crate::reach::transport::Transport;
use journal::{Done, Finish, Journal, Record};

/// Where every node keeps the backups of a run: `<root>/<run-id>/<stage>/<path>`.
pub const BACKUP_ROOT: &str = "/var/lib/kcert/backups";

/// What a failed step leaves behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Restore the stage's files, restart, and stop: the cluster is at the stage's start.
    Rollback,
    /// Stop as it is, for the operator (`kcert resume` or `kcert rollback` later).
    Pause,
}

/// What observers (progress bars, the run log) are told.
#[derive(Debug, Clone)]
pub enum Event {
    /// A run (or rollback) begins: this many steps in all.
    Begin { steps: usize },
    Stage { id: StageId, name: String, undo: bool },
    Step { stage: StageId, index: usize, of: usize, label: String },
    Node { node: String, what: String },
    StepDone { stage: StageId, index: usize, ok: bool },
    Note { message: String },
}

/// How a stage went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StageStatus {
    #[serde(rename = "done")]
    Done,
    #[serde(rename = "done earlier")]
    DoneEarlier,
    #[serde(rename = "stopped")]
    Stopped,
    #[serde(rename = "paused")]
    Paused,
    #[serde(rename = "rolled back")]
    RolledBack,
    #[serde(rename = "failed")]
    Failed,
    #[serde(rename = "not reached")]
    NotReached,
    #[serde(rename = "nothing to undo")]
    NothingToUndo,
}

impl StageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StageStatus::Done => "done",
            StageStatus::DoneEarlier => "done earlier",
            StageStatus::Stopped => "stopped",
            StageStatus::Paused => "paused",
            StageStatus::RolledBack => "rolled back",
            StageStatus::Failed => "failed",
            StageStatus::NotReached => "not reached",
            StageStatus::NothingToUndo => "nothing to undo",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StageOutcome {
    pub stage: StageId,
    pub name: String,
    pub steps: usize,
    pub files: usize,
    pub restarts: usize,
    pub checks: usize,
    pub status: StageStatus,
    pub wait_seconds: f64,
    pub total_seconds: f64,
}

impl StageOutcome {
    fn new(stage: StageId, name: &str, steps: usize, status: StageStatus) -> StageOutcome {
        StageOutcome { stage, name: name.to_string(), steps, files: 0, restarts: 0, checks: 0, status, wait_seconds: 0.0, total_seconds: 0.0 }
    }
}

/// How a node came out of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// Nothing of the plan changes it.
    Unchanged,
    /// Its files were written; restarts and gates skipped (offline).
    Written,
    /// Written, restarted, gated.
    Changed,
    /// Its files were put back as they were.
    Restored,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeOutcome {
    pub node: String,
    pub files: usize,
    pub restarted: Vec<String>,
    pub status: NodeStatus,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub kind: crate::plan::Kind,
    pub journal: String,
    pub stages: Vec<StageOutcome>,
    pub nodes: Vec<NodeOutcome>,
    /// Why the run stopped, when it did.
    pub failure: Option<String>,
    /// What the plan said a person should know (a validity capped, a CA left alone).
    pub notes: Vec<String>,
    pub wall_seconds: f64,
    /// Time spent waiting for restarts, gates and API steps; the rest is kcert's own work.
    pub wait_seconds: f64,
}

/// Per node, what the run did there so far.
#[derive(Default)]
struct Tally {
    files: usize,
    restarted: Vec<String>,
    restored: bool,
}

pub struct Runner<'a> {
    pub plan: &'a Plan,
    pub playbook: &'a Playbook,
    pub nodes: Connected,
    pub overrides: &'a BTreeMap<String, ComponentOverride>,
    /// The new CA keys of a rotation (none for a renewal): memory and 0600 files only.
    pub keys: &'a BTreeMap<String, String>,
    pub journal: Mutex<Journal>,
    pub patience: Duration,
    pub concurrency: usize,
    pub on_failure: OnFailure,
    pub observer: &'a (dyn Fn(&Event) + Sync),
    tally: Mutex<BTreeMap<String, Tally>>,
    /// The nodes that keep a copy of the run (the control plane): see `copies`.
    copies: Vec<String>,
    /// Set (with why) when the run must stop between steps: its lease was taken away.
    stop: Option<lease::StopSignal>,
    /// The plan is on every node that keeps a copy (copied once per process).
    plan_copied: std::sync::atomic::AtomicBool,
    /// What every node that keeps a copy was last told of the run's state (`copies::ended`).
    state_shared: Mutex<Option<Option<usize>>>,
    /// The size of the journal each node that keeps a copy was left holding by this process.
    copied: Mutex<BTreeMap<String, u64>>,
    /// What each file written by the plan held when this process last read or wrote it (None:
    /// absent): a step reads only what it has not seen; the node checks it is still so.
    seen: Mutex<BTreeMap<NodeFile, Option<Vec<u8>>>>,
}

/// A file on a node: (node, path).
pub type NodeFile = (String, String);

/// The sum of per-node counts, or every node's error.
fn sum_or_errors(results: Vec<std::result::Result<usize, String>>) -> std::result::Result<usize, String> {
    let errors: Vec<String> = results.iter().filter_map(|r| r.as_ref().err().cloned()).collect();
    if errors.is_empty() { Ok(results.into_iter().flatten().sum()) } else { Err(errors.join("; ")) }
}

/// What one step did, for the stage's summary.
#[derive(Default)]
struct StepStats {
    files: usize,
    restarts: usize,
    checks: usize,
    wait: f64,
}

impl<'a> Runner<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        plan: &'a Plan,
        playbook: &'a Playbook,
        nodes: Connected,
        overrides: &'a BTreeMap<String, ComponentOverride>,
        keys: &'a BTreeMap<String, String>,
        journal: Journal,
        patience: Duration,
        concurrency: usize,
        on_failure: OnFailure,
        observer: &'a (dyn Fn(&Event) + Sync),
    ) -> Runner<'a> {
        Runner { plan, playbook, nodes, overrides, keys, journal: Mutex::new(journal), patience, concurrency, on_failure, observer, tally: Mutex::new(BTreeMap::new()), copies: Vec::new(), stop: None, plan_copied: std::sync::atomic::AtomicBool::new(false), state_shared: Mutex::new(None), copied: Mutex::new(BTreeMap::new()), seen: Mutex::new(BTreeMap::new()) }
    }

    /// The nodes that keep a copy of the run's plan and journal (the control plane; every
    /// node of a `--root` tree), written at every step boundary.
    pub fn keep_copies_on(mut self, nodes: Vec<String>) -> Self {
        self.copies = nodes.into_iter().filter(|n| self.nodes.get(n).is_some()).collect();
        self
    }

    /// What the files the plan writes held when the facts the run starts from were read (the
    /// plan made, or a saved plan checked, moments ago in this process): their first step
    /// reads nothing more, and the node still checks each holds its planned old sha256.
    pub fn seen_at_start(self, files: BTreeMap<NodeFile, Option<Vec<u8>>>) -> Self {
        *self.seen.lock().expect("seen lock") = files;
        self
    }

    /// The signal that stops the run between steps, as it stands (its lease was taken away).
    pub fn stop_when(mut self, signal: lease::StopSignal) -> Self {
        self.stop = Some(signal);
        self
    }

    fn stopped(&self) -> Option<String> {
        self.stop.as_ref().and_then(|s| s.lock().expect("stop lock").clone())
    }

    fn rec(&self, r: &Record) -> std::result::Result<(), String> {
        self.journal.lock().expect("journal lock").record(r).map_err(|e| e.to_string())
    }

    /// Journals records of things already done, with one sync for them all.
    fn rec_all(&self, rs: &[Record]) -> std::result::Result<(), String> {
        self.journal.lock().expect("journal lock").record_all(rs).map_err(|e| e.to_string())
    }

    fn run_id(&self) -> String {
        self.journal.lock().expect("journal lock").run_id.clone()
    }

    fn t(&self, node: &str) -> std::result::Result<&Arc<dyn Transport>, String> {
        self.nodes.get(node).ok_or_else(|| format!("node {node} of the plan is not reachable in this run (not in the inventory?)"))
    }

    fn offline(&self) -> bool {
        self.nodes.offline()
    }

    fn count(&self, node: &str, f: impl FnOnce(&mut Tally)) {
        f(self.tally.lock().expect("tally lock").entry(node.to_string()).or_default());
    }

    /// Tells the observer, and appends the event to the run log beside the journal.
    fn emit(&self, e: &Event) {
        (self.observer)(e);
        let line = match e {
            Event::Begin { steps } => format!("{} {}: {steps} steps", self.plan.kind, self.plan.id),
            Event::Stage { id, name, undo } => format!("{id}{} {name}", if *undo { " rollback" } else { "" }),
            Event::Step { stage, index, of, label } => format!("{stage} step {}/{of}: {label}", index + 1),
            Event::Node { node, what } => format!("  {node}: {what}"),
            Event::StepDone { stage, index, ok } => format!("{stage} step {} {}", index + 1, if *ok { "done" } else { "FAILED" }),
            Event::Note { message } => message.clone(),
        };
        self.journal.lock().expect("journal lock").log(&line);
    }

    fn note(&self, node: &str, what: impl Into<String>) {
        self.emit(&Event::Node { node: node.to_string(), what: what.into() });
    }

    fn journal_path(&self) -> String {
        self.journal.lock().expect("journal lock").dir.join("journal.jsonl").to_string_lossy().into_owned()
    }

    fn report(&self) -> RunReport {
        RunReport { run_id: self.run_id(), kind: self.plan.kind, journal: self.journal_path(), stages: Vec::new(), nodes: Vec::new(), failure: None, notes: self.plan.notes.clone(), wall_seconds: 0.0, wait_seconds: 0.0 }
    }

    /// Every node of the plan, and what the run did there.
    fn node_outcomes(&self) -> Vec<NodeOutcome> {
        let tally = self.tally.lock().expect("tally lock");
        self.plan
            .nodes()
            .into_iter()
            .map(|n| {
                let t = tally.get(n);
                let (files, restarted, restored) = t.map(|t| (t.files, t.restarted.clone(), t.restored)).unwrap_or_default();
                let status = match (restored, files) {
                    (true, _) => NodeStatus::Restored,
                    (false, 0) => NodeStatus::Unchanged,
                    _ if self.offline() => NodeStatus::Written,
                    _ => NodeStatus::Changed,
                };
                NodeOutcome { node: n.to_string(), files, restarted, status }
            })
            .collect()
    }

    /// The temporary files a kcert killed mid-write left beside the files this plan writes and
    /// in the run's backups (some hold private keys): removed before a run carries on or undoes.
    pub async fn sweep_temps(&self) -> std::result::Result<(), String> {
        let mut dirs: BTreeMap<&str, std::collections::BTreeSet<String>> = BTreeMap::new();
        let run_id = self.run_id();
        for (_, _, node, f) in self.plan.file_ops() {
            let d = dirs.entry(node).or_default();
            if let Some((dir, _)) = f.path.rsplit_once('/') {
                d.insert(if dir.is_empty() { "/".into() } else { dir.to_string() });
            }
            for s in &self.plan.stages {
                if let Some((dir, _)) = node::backup_path(&run_id, s.id, &f.path).rsplit_once('/') {
                    d.insert(dir.to_string());
                }
            }
        }
        // kcert's own files on the nodes: the run's copy and the lease.
        for node in &self.copies {
            let d = dirs.entry(node.as_str()).or_default();
            d.insert(format!("{}/{run_id}", copies::NODE_RUNS));
            d.insert(lease::LEASE_PATH.rsplit_once('/').map(|(dir, _)| dir.to_string()).unwrap_or_default());
        }
        for (node, d) in dirs {
            let t = self.t(node)?;
            let dirs: Vec<String> = d.into_iter().collect();
            let n = t.remove_temps(&dirs).await.map_err(|e| format!("{node}: {e}"))?;
            if n > 0 {
                self.note(node, format!("removed {n} temporary files an interrupted write left behind"));
            }
        }
        Ok(())
    }

    /// Carries the plan out from where the journal says it got to; `finish` records the end.
    pub async fn run(&self, done: &Done) -> RunReport {
        let started = Instant::now();
        let mut report = self.report();
        self.emit(&Event::Begin { steps: self.plan.step_count() });
        if done.started
            && let Err(e) = self.sweep_temps().await
        {
            report.failure = Some(e);
            report.nodes = self.node_outcomes();
            return report;
        }
        // The control plane keeps the run from its start: a lost operator machine loses nothing.
        // A run that starts with S0 makes that copy while S0's checks (which change nothing) run.
        let copy_with_preflight = self.plan.stages.first().is_some_and(|s| s.id == StageId::Preflight && !done.stages.contains(&s.id));
        if !copy_with_preflight && let Err(e) = self.share().await {
            report.failure = Some(format!("{e}; nothing was changed"));
            report.nodes = self.node_outcomes();
            return report;
        }
        'stages: for (si, stage) in self.plan.stages.iter().enumerate() {
            let mut out = StageOutcome::new(stage.id, &stage.name, stage.steps.len(), StageStatus::Done);
            if done.stages.contains(&stage.id) {
                out.status = StageStatus::DoneEarlier;
                report.stages.push(out);
                continue;
            }
            let t0 = Instant::now();
            self.emit(&Event::Stage { id: stage.id, name: stage.name.clone(), undo: false });
            if let Err(e) = self.rec(&Record::StageStarted { stage: stage.id }) {
                report.failure = Some(e);
                break;
            }
            let pre = if stage.id == StageId::Preflight && copy_with_preflight {
                let (shared, pre) = futures::join!(self.share(), self.preflight(done.started));
                if let Err(e) = shared {
                    report.failure = Some(format!("{e}; nothing was changed"));
                    report.nodes = self.node_outcomes();
                    return report;
                }
                pre
            } else if stage.id == StageId::Preflight {
                self.preflight(done.started).await
            } else {
                self.still_as_planned(si).await
            };
            if let Err(why) = pre {
                out.status = StageStatus::Stopped;
                report.failure = Some(format!("{} {}: {why}", stage.id, stage.name));
                report.stages.push(out);
                break;
            }
            for (bi, step) in stage.steps.iter().enumerate() {
                if done.steps.contains(&(stage.id, bi)) {
                    continue;
                }
                if let Some(why) = self.stopped() {
                    self.boundary_best_effort(&Record::Paused { stage: stage.id, step: bi, message: why.clone() }).await;
                    out.status = StageStatus::Paused;
                    report.failure = Some(format!("{} {}, before step {}: {why}", stage.id, stage.name, bi + 1));
                    report.stages.push(out);
                    break 'stages;
                }
                self.emit(&Event::Step { stage: stage.id, index: bi, of: stage.steps.len(), label: step.label() });
                let (s, result) = match step {
                    StepPlan::Batch(b) => self.batch(stage.id, bi, b, done).await,
                    StepPlan::Api(a) => self.api(stage.id, bi, a).await,
                };
                // A failed step's files and waiting count too: the summary says what happened.
                out.files += s.files;
                out.restarts += s.restarts;
                out.checks += s.checks;
                out.wait_seconds += s.wait;
                self.emit(&Event::StepDone { stage: stage.id, index: bi, ok: result.is_ok() });
                let why = match result {
                    Ok(()) => {
                        // The nodes' copies are brought up to date before the next change: a
                        // stage's last step is copied with the stage's end, just below, and a
                        // skipped API step changed nothing, so it goes with the next boundary.
                        let record = Record::StepDone { stage: stage.id, step: bi };
                        let changed_nothing = matches!(step, StepPlan::Api(a) if a.skipped.is_some());
                        let kept = if bi + 1 == stage.steps.len() || changed_nothing { self.rec(&record) } else { self.boundary(&record).await };
                        if let Err(e) = kept {
                            report.failure = Some(e);
                            break 'stages;
                        }
                        continue;
                    }
                    Err(why) => why,
                };
                let at = format!("{} {}, step {} of {}", stage.id, stage.name, bi + 1, stage.steps.len());
                if self.on_failure == OnFailure::Pause || matches!(step, StepPlan::Api(_)) {
                    self.boundary_best_effort(&Record::Paused { stage: stage.id, step: bi, message: why.clone() }).await;
                    out.status = StageStatus::Paused;
                    report.failure = Some(format!("{at}: {why}; the run is paused as it stands: `kcert resume {id}` carries on, `kcert rollback {id}` undoes it", id = report.run_id));
                } else {
                    let w = Instant::now();
                    let records = self.journal.lock().expect("journal lock").records();
                    let undone = match records {
                        Ok(records) => self.rollback_stage(si, &records).await,
                        Err(e) => Err(format!("the journal cannot be read back: {e}")),
                    };
                    match undone {
                        Ok(restarts) => {
                            out.restarts += restarts;
                            out.status = StageStatus::RolledBack;
                            report.failure = Some(format!("{at}: {why}; stage {} was rolled back: its files are as they were at its start and their components restarted; the run stopped", stage.id));
                        }
                        Err(e) => {
                            out.status = StageStatus::Failed;
                            report.failure = Some(format!("{at}: {why}; rolling stage {} back: {e}; `kcert rollback {}` carries on from the journal", stage.id, report.run_id));
                        }
                    }
                    out.wait_seconds += w.elapsed().as_secs_f64();
                }
                out.total_seconds = t0.elapsed().as_secs_f64();
                report.wait_seconds += out.wait_seconds;
                report.stages.push(out);
                break 'stages;
            }
            // The last stage's end is copied to the nodes with the run's end, which follows.
            let record = Record::StageDone { stage: stage.id };
            let kept = if si + 1 == self.plan.stages.len() { self.rec(&record) } else { self.boundary(&record).await };
            if let Err(e) = kept {
                report.failure = Some(e);
                break;
            }
            out.total_seconds = t0.elapsed().as_secs_f64();
            report.wait_seconds += out.wait_seconds;
            report.stages.push(out);
        }
        for s in self.plan.stages.iter().skip(report.stages.len()) {
            report.stages.push(StageOutcome::new(s.id, &s.name, s.steps.len(), StageStatus::NotReached));
        }
        report.nodes = self.node_outcomes();
        report.wall_seconds = started.elapsed().as_secs_f64();
        report
    }

    /// Records how the run ended (after the caller's own checks of the result, if any).
    pub async fn finish(&self, report: &RunReport) {
        let (status, message) = match &report.failure {
            None => (Finish::Ok, self.finished_message()),
            Some(f) => (Finish::Failed, f.clone()),
        };
        self.boundary_best_effort(&Record::RunFinished { status, message }).await;
    }

    /// Records how a `kcert rollback` ended.
    pub async fn finish_rollback(&self, report: &RunReport, message: String) {
        let status = if report.failure.is_none() { Finish::Ok } else { Finish::Failed };
        let now = crate::text::rfc3339(time::OffsetDateTime::now_utc().unix_timestamp());
        self.boundary_best_effort(&Record::RolledBack { at: now, status, message }).await;
    }

    fn finished_message(&self) -> String {
        let (files, _, nodes) = self.plan.counts();
        match self.plan.kind {
            crate::plan::Kind::RotateCa => format!("{} rotated", self.plan.cas.iter().map(|c| c.alias.as_str()).collect::<Vec<_>>().join(", ")),
            crate::plan::Kind::Renew => format!("{files} files on {nodes} nodes renewed"),
        }
    }
}
