//! Owns: carrying out a staged plan (rotate-ca) on the nodes: per step, backups on the node,
//! writes checked against the plan's sha256s before and after (so a resumed step is never
//! applied twice), restarts, live gates, API steps; a journal record before and after each;
//! rolling a stage back in reverse (on a failed gate, or `kcert rollback`).
//! Must not: decide what changes (the plan does) or print (events go to an observer).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::execute::{BACKUP_ROOT, enough_space, health_command, restart_component};
use crate::gate::{self, Check, NodeView};
use crate::inventory::ComponentOverride;
use crate::journal::{At, Journal, Record};
use crate::plan::rotation::{Batch, FileOp, NodeOps, RotationPlan, StepPlan, quorum_edges};
use crate::playbook::Playbook;
use crate::renew::sha256;
use crate::transport::{FileData, Transport, WriteFile};

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
    Stage { id: String, name: String },
    Step { stage: String, index: usize, of: usize, label: String },
    Node { node: String, what: String },
    StepDone { stage: String, index: usize, ok: bool },
    Note { message: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct StageOutcome {
    pub stage: String,
    pub name: String,
    pub steps: usize,
    pub files: usize,
    pub restarts: usize,
    pub checks: usize,
    pub status: String,
    pub wait_seconds: f64,
    pub total_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub journal: String,
    pub stages: Vec<StageOutcome>,
    /// Why the run stopped, when it did.
    pub failure: Option<String>,
    pub wall_seconds: f64,
    /// Time spent waiting for restarts, gates and API steps; the rest is kcert's own work.
    pub wait_seconds: f64,
}

/// What the journal says is done: steps and stages complete, components restarted per step.
#[derive(Debug, Default)]
pub struct Done {
    pub steps: BTreeSet<(String, usize)>,
    pub stages: BTreeSet<String>,
    pub restarted: BTreeSet<(String, usize, String, String)>,
    pub finished: Option<String>,
    pub started: bool,
}

/// Reads the journal. A step is done once recorded so, and undone again when any of its files
/// is restored (a stage rolled back, even partly). A restart counts only while it is the
/// component's latest: a later one (a rollback's) loaded other files, so it must be redone.
pub fn done(records: &[Record]) -> Done {
    let mut d = Done::default();
    let mut last: BTreeMap<(String, String), (Option<String>, Option<usize>)> = BTreeMap::new();
    for r in records {
        match r {
            Record::StageStarted { .. } => d.started = true,
            Record::StepDone { stage, step } => {
                d.steps.insert((stage.clone(), *step));
            }
            Record::StageDone { stage } => {
                d.stages.insert(stage.clone());
            }
            Record::Restarted { node, component, at } => {
                last.insert((node.clone(), component.clone()), (at.stage.clone(), at.step));
            }
            Record::Restored { at: At { stage: Some(s), step: Some(i) }, .. } => {
                d.steps.remove(&(s.clone(), *i));
                d.stages.remove(s);
                d.finished = None;
            }
            Record::StageRolledBack { stage, status, .. } if status == "ok" => {
                d.steps.retain(|(s, _)| s != stage);
                d.stages.remove(stage);
                d.finished = None;
            }
            Record::RunFinished { status, .. } => d.finished = Some(status.clone()),
            _ => {}
        }
    }
    d.restarted = last.into_iter().filter_map(|((node, comp), (stage, step))| Some((stage?, step?, node, comp))).collect();
    d
}

/// A backup this run took and has not undone yet: (step, node, path, backup, sha256, absent).
type Live = (usize, String, String, String, String, bool);

fn live_backups(records: &[Record], stage: &str) -> Vec<Live> {
    let mut out: Vec<Live> = Vec::new();
    for r in records {
        match r {
            Record::Backup { node, path, backup, sha256, at: At { stage: Some(s), step: Some(i) }, absent } if s == stage => {
                if !out.iter().any(|b| b.0 == *i && &b.1 == node && &b.2 == path) {
                    out.push((*i, node.clone(), path.clone(), backup.clone(), sha256.clone(), *absent));
                }
            }
            Record::StageRolledBack { stage: s, status, .. } if s == stage && status == "ok" => out.clear(),
            _ => {}
        }
    }
    out
}

/// The sum of per-node counts, or every node's error.
fn sum_or_errors(results: Vec<std::result::Result<usize, String>>) -> std::result::Result<usize, String> {
    let errors: Vec<String> = results.iter().filter_map(|r| r.as_ref().err().cloned()).collect();
    if errors.is_empty() { Ok(results.into_iter().flatten().sum()) } else { Err(errors.join("; ")) }
}

pub fn backup_path(run_id: &str, stage: &str, path: &str) -> String {
    format!("{BACKUP_ROOT}/{run_id}/{stage}{path}")
}

fn short(sha: Option<&str>) -> String {
    match sha {
        Some(s) if !s.is_empty() => s[..12.min(s.len())].to_string(),
        _ => "(absent)".into(),
    }
}

pub struct Runner<'a> {
    pub plan: &'a RotationPlan,
    pub playbook: &'a Playbook,
    pub nodes: Vec<NodeView>,
    pub overrides: &'a BTreeMap<String, ComponentOverride>,
    pub keys: &'a BTreeMap<String, String>,
    pub journal: Mutex<Journal>,
    pub patience: Duration,
    pub concurrency: usize,
    pub on_failure: OnFailure,
    pub observer: &'a (dyn Fn(&Event) + Sync),
}

#[derive(Default)]
struct StepStats {
    files: usize,
    restarts: usize,
    checks: usize,
    wait: f64,
}

impl Runner<'_> {
    fn rec(&self, r: &Record) -> std::result::Result<(), String> {
        self.journal.lock().expect("journal lock").record(r).map_err(|e| e.to_string())
    }

    fn run_id(&self) -> String {
        self.journal.lock().expect("journal lock").run_id.clone()
    }

    fn t(&self, node: &str) -> std::result::Result<&Arc<dyn Transport>, String> {
        self.nodes.iter().find(|n| n.name == node).map(|n| &n.t).ok_or_else(|| format!("node {node} of the plan is not reachable in this run (not in the inventory?)"))
    }

    fn offline(&self) -> bool {
        self.nodes.iter().all(|n| n.t.offline())
    }

    /// Tells the observer, and appends the event to the run log beside the journal.
    fn emit(&self, e: &Event) {
        (self.observer)(e);
        let line = match e {
            Event::Stage { id, name } => format!("{id} {name}"),
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

    /// Carries the plan out from where the journal says it got to.
    pub async fn run(&self, done: &Done) -> RunReport {
        let started = Instant::now();
        let mut report = RunReport { run_id: self.run_id(), journal: self.journal_path(), stages: Vec::new(), failure: None, wall_seconds: 0.0, wait_seconds: 0.0 };
        'stages: for (si, stage) in self.plan.stages.iter().enumerate() {
            let mut out = StageOutcome { stage: stage.id.clone(), name: stage.name.clone(), steps: stage.steps.len(), files: 0, restarts: 0, checks: 0, status: "done".into(), wait_seconds: 0.0, total_seconds: 0.0 };
            if done.stages.contains(&stage.id) {
                out.status = "done earlier".into();
                report.stages.push(out);
                continue;
            }
            let t0 = Instant::now();
            self.emit(&Event::Stage { id: stage.id.clone(), name: stage.name.clone() });
            if let Err(e) = self.rec(&Record::StageStarted { stage: stage.id.clone() }) {
                report.failure = Some(e);
                break;
            }
            let pre = if stage.id == "S0" { self.preflight(done.started).await } else { self.still_as_planned(si).await };
            if let Err(why) = pre {
                out.status = "stopped".into();
                report.failure = Some(format!("{} {}: {why}", stage.id, stage.name));
                report.stages.push(out);
                break;
            }
            for (bi, step) in stage.steps.iter().enumerate() {
                if done.steps.contains(&(stage.id.clone(), bi)) {
                    continue;
                }
                let label = match step {
                    StepPlan::Batch(b) => b.nodes.join(", "),
                    StepPlan::Api(a) => a.name.clone(),
                };
                self.emit(&Event::Step { stage: stage.id.clone(), index: bi, of: stage.steps.len(), label });
                let (s, result) = match step {
                    StepPlan::Batch(b) => self.batch(&stage.id, bi, b, done).await,
                    StepPlan::Api(a) => self.api(&stage.id, bi, a).await,
                };
                // A failed step's files and waiting count too: the summary says what happened.
                out.files += s.files;
                out.restarts += s.restarts;
                out.checks += s.checks;
                out.wait_seconds += s.wait;
                self.emit(&Event::StepDone { stage: stage.id.clone(), index: bi, ok: result.is_ok() });
                match result {
                    Ok(()) => {
                        if let Err(e) = self.rec(&Record::StepDone { stage: stage.id.clone(), step: bi }) {
                            report.failure = Some(e);
                            break 'stages;
                        }
                    }
                    Err(why) => {
                        let at = format!("{} {}, step {} of {}", stage.id, stage.name, bi + 1, stage.steps.len());
                        let is_api = matches!(step, StepPlan::Api(_));
                        if self.on_failure == OnFailure::Pause || is_api {
                            let _ = self.rec(&Record::Paused { stage: stage.id.clone(), step: bi, message: why.clone() });
                            out.status = "paused".into();
                            report.failure = Some(format!(
                                "{at}: {why}; the run is paused as it stands: `kcert resume {id}` carries on, `kcert rollback {id}` undoes it",
                                id = report.run_id
                            ));
                        } else {
                            let w = Instant::now();
                            let records = self.journal.lock().expect("journal lock").records();
                            let undone = match records {
                                Ok(records) => self.rollback_stage(si, &records).await,
                                Err(e) => Err(format!("the journal cannot be read back: {e}")),
                            };
                            match undone {
                                Ok(()) => {
                                    out.status = "rolled back".into();
                                    report.failure = Some(format!("{at}: {why}; stage {} was rolled back: its files are as they were at its start and their components restarted; the run stopped", stage.id));
                                }
                                Err(e) => {
                                    out.status = "failed".into();
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
                }
            }
            if let Err(e) = self.rec(&Record::StageDone { stage: stage.id.clone() }) {
                report.failure = Some(e);
                break;
            }
            out.total_seconds = t0.elapsed().as_secs_f64();
            report.wait_seconds += out.wait_seconds;
            report.stages.push(out);
        }
        for s in self.plan.stages.iter().skip(report.stages.len()) {
            report.stages.push(StageOutcome { stage: s.id.clone(), name: s.name.clone(), steps: s.steps.len(), files: 0, restarts: 0, checks: 0, status: "not reached".into(), wait_seconds: 0.0, total_seconds: 0.0 });
        }
        let (status, message) = match &report.failure {
            None => ("ok".to_string(), format!("{} rotated", self.plan.cas.iter().map(|c| c.alias.as_str()).collect::<Vec<_>>().join(", "))),
            Some(f) => ("failed".to_string(), f.clone()),
        };
        let _ = self.rec(&Record::RunFinished { status, message });
        report.wall_seconds = started.elapsed().as_secs_f64();
        report
    }

    /// S0: room for every backup and new file, clocks, etcd quorum. Nothing is changed.
    async fn preflight(&self, resumed: bool) -> std::result::Result<(), String> {
        let mut need: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
        for (_, _, node, f) in self.plan.file_ops() {
            let dir = f.path.rsplit_once('/').map(|(d, _)| if d.is_empty() { "/" } else { d }).unwrap_or("/").to_string();
            let n = need.entry(node).or_default();
            *n.entry(dir).or_default() += f.bytes;
            *n.entry(BACKUP_ROOT.to_string()).or_default() += f.old_bytes + 256;
        }
        let checks = join_all(need.iter().map(|(node, need)| async move {
            let t = self.t(node)?;
            self.note(node, "preflight: free space");
            enough_space(t.as_ref(), need).await
        }))
        .await;
        let mut problems: Vec<String> = checks.into_iter().filter_map(|r| r.err()).collect();
        if !self.offline() {
            let skews = join_all(self.nodes.iter().map(|n| async move { (n.name.clone(), crate::check::clock_skew(n.t.as_ref()).await) })).await;
            for (node, s) in skews {
                match s {
                    Ok(s) if s.abs() > crate::check::MAX_SKEW.as_secs_f64() => {
                        problems.push(format!("{node}: its clock is {s:+.0}s off the operator's (more than {}s): new certificates would look not yet valid there", crate::check::MAX_SKEW.as_secs()))
                    }
                    Ok(_) => {}
                    Err(e) => problems.push(format!("{node}: cannot read its clock: {e}")),
                }
            }
            let quorum = quorum_edges(self.playbook);
            let mut seen = BTreeSet::new();
            let checks: Vec<Check> = self.plan.stages.iter().flat_map(|s| &s.steps).filter_map(|s| if let StepPlan::Batch(b) = s { Some(&b.gates) } else { None }).flatten().filter(|c| quorum.contains(&c.edge) && seen.insert(c.label())).cloned().collect();
            for r in gate::run(&self.nodes, &checks, Duration::from_secs(10)).await {
                if !r.ok {
                    problems.push(format!("etcd quorum: {} ({} -> {} at {}): {}", r.edge, r.from, r.to, r.endpoint, r.detail));
                }
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        let what = if resumed { "nothing more was changed" } else { "nothing was changed" };
        Err(format!("preflight failed, {what}:\n  {}", problems.join("\n  ")))
    }

    /// Before a stage: every file earlier stages wrote and this one does not still holds what
    /// they wrote (a kubelet that rotated its own client certificate meanwhile is caught here,
    /// not after pruning). Files this stage writes are checked as it writes them (old or
    /// already new: a resumed stage may have written some).
    async fn still_as_planned(&self, si: usize) -> std::result::Result<(), String> {
        let mine: BTreeSet<(&str, &str)> = self.plan.file_ops().filter(|(s, ..)| *s == si).map(|(_, _, n, f)| (n, f.path.as_str())).collect();
        let mut want: BTreeMap<&str, BTreeMap<&str, Option<&str>>> = BTreeMap::new();
        for (s, _, node, f) in self.plan.file_ops() {
            if s < si && !mine.contains(&(node, f.path.as_str())) {
                want.entry(node).or_default().insert(f.path.as_str(), f.new_sha256.as_deref());
            }
        }
        let results = join_all(want.iter().map(|(node, files)| async move {
            let t = self.t(node)?;
            let paths: Vec<String> = files.keys().map(|p| p.to_string()).collect();
            let data = t.read_files(&paths).await.map_err(|e| format!("{node}: {e}"))?;
            let mut bad = Vec::new();
            for ((path, sha), d) in files.iter().zip(data) {
                let got = match d {
                    FileData::Found(b) => Some(sha256(&b)),
                    _ => None,
                };
                if got.as_deref() != *sha {
                    bad.push(format!("{node}: {path} is not what this run wrote there (sha256 {} where it wrote {})", short(got.as_deref()), short(*sha)));
                }
            }
            if bad.is_empty() { Ok(()) } else { Err(bad.join("\n  ")) }
        }))
        .await;
        let bad: Vec<String> = results.into_iter().filter_map(|r| r.err()).collect();
        if bad.is_empty() {
            return Ok(());
        }
        Err(format!("files changed outside this run since earlier stages wrote them; nothing more was changed:\n  {}\n  (a kubelet rotating its own client certificate does this: check, then `kcert resume` once the files are as planned, or `kcert rollback`)", bad.join("\n  ")))
    }

    async fn api(&self, stage: &str, bi: usize, a: &crate::plan::rotation::ApiCall) -> (StepStats, std::result::Result<(), String>) {
        let w = Instant::now();
        let result = self.api_call(stage, bi, a).await;
        let wait = if a.skipped.is_some() { 0.0 } else { w.elapsed().as_secs_f64() };
        (StepStats { wait, ..Default::default() }, result)
    }

    async fn api_call(&self, stage: &str, bi: usize, a: &crate::plan::rotation::ApiCall) -> std::result::Result<(), String> {
        if let Some(reason) = &a.skipped {
            self.rec(&Record::Skipped { stage: stage.into(), step: bi, reason: reason.clone() })?;
            self.emit(&Event::Note { message: format!("{stage}: skipped: {} ({reason})", a.name) });
            return Ok(());
        }
        let t = self.t(&a.node)?;
        self.note(&a.node, a.name.clone());
        let out = t.run(&a.script).await.map_err(|e| format!("{}: {e}", a.node))?;
        let ok = out.success();
        let detail = if ok { out.stdout_text().trim().to_string() } else { out.stderr_text() };
        self.rec(&Record::Api { stage: stage.into(), step: bi, node: a.node.clone(), name: a.name.clone(), ok, detail: detail.clone() })?;
        if !ok {
            return Err(format!("{} failed on {} (exit {:?}): {detail}", a.name, a.node, out.status));
        }
        Ok(())
    }

    /// One batch: every node's writes, then its restarts, then the gate.
    async fn batch(&self, stage: &str, bi: usize, b: &Batch, done: &Done) -> (StepStats, std::result::Result<(), String>) {
        let mut stats = StepStats::default();
        let result = self.batch_steps(stage, bi, b, done, &mut stats).await;
        (stats, result)
    }

    async fn batch_steps(&self, stage: &str, bi: usize, b: &Batch, done: &Done, stats: &mut StepStats) -> std::result::Result<(), String> {
        let permits = Semaphore::new(self.concurrency.max(1));
        let writes = join_all(b.ops.iter().filter(|o| !o.files.is_empty()).map(|o| {
            let permits = &permits;
            async move {
                let _p = permits.acquire().await.expect("never closed");
                self.write_node(stage, bi, o).await
            }
        }))
        .await;
        stats.files = sum_or_errors(writes)?;
        if self.offline() {
            return Ok(());
        }
        let w = Instant::now();
        let restarts = join_all(b.ops.iter().filter(|o| !o.restarts.is_empty()).map(|o| {
            let permits = &permits;
            async move {
                let _p = permits.acquire().await.expect("never closed");
                let t = self.t(&o.node)?;
                let mut n = 0;
                for c in &o.restarts {
                    if done.restarted.contains(&(stage.to_string(), bi, o.node.clone(), c.clone())) {
                        continue;
                    }
                    self.restart(&o.node, t.as_ref(), c, b, "").await?;
                    self.rec(&Record::Restarted { node: o.node.clone(), component: c.clone(), at: At::step(stage, bi) })?;
                    n += 1;
                }
                Ok::<usize, String>(n)
            }
        }))
        .await;
        let restarted = sum_or_errors(restarts);
        let gated = match restarted {
            Ok(n) => {
                stats.restarts = n;
                self.gate(b).await.map(|c| stats.checks = c)
            }
            Err(e) => Err(e),
        };
        stats.wait = w.elapsed().as_secs_f64();
        gated
    }

    /// Restarts a component; an etcd member (health `etcd-quorum`) that leads hands its
    /// leadership to another member first, so the writes in flight are not dropped with it.
    async fn restart(&self, node: &str, t: &dyn Transport, component: &str, b: &Batch, why: &str) -> std::result::Result<(), String> {
        let quorum = self.playbook.component(component).and_then(|c| c.health.as_deref()) == Some("etcd-quorum");
        if quorum && let Some(c) = b.gates.iter().find(|c| c.from == node && c.to == node && quorum_edges(self.playbook).contains(&c.edge)) {
            match crate::etcd::hand_off(t, c, self.patience.min(Duration::from_secs(15))).await {
                Ok(Some(to)) => self.note(node, format!("etcd leadership handed to {to}")),
                Ok(None) => {}
                Err(e) => self.note(node, format!("could not hand etcd's leadership off ({e}); restarting it anyway")),
            }
        }
        self.note(node, format!("restarting {component}{why}"));
        restart_component(t, self.playbook, self.overrides, component).await.map_err(|e| format!("{node}: component {component}: {e}"))
    }

    /// The live checks of a batch (edges touching its nodes, etcd quorum from every member),
    /// then the inventory's health commands of what restarted.
    async fn gate(&self, b: &Batch) -> std::result::Result<usize, String> {
        if b.gates.is_empty() {
            return Ok(0);
        }
        self.note(&b.nodes.join(","), format!("health gate: {} checks", b.gates.len()));
        let results = gate::run(&self.nodes, &b.gates, self.patience).await;
        for r in &results {
            self.rec(&Record::Gate { node: r.from.clone(), check: format!("{} {} -> {}", r.edge, r.from, r.to), ok: r.ok, detail: r.detail.clone() })?;
        }
        if let Some(bad) = results.iter().find(|r| !r.ok) {
            let restarted: Vec<String> = b.ops.iter().flat_map(|o| o.restarts.iter().map(move |c| format!("{c} on {}", o.node))).collect();
            let after = if restarted.is_empty() { String::new() } else { format!(" after restarting {}", restarted.join(", ")) };
            return Err(format!("health gate failed{after}: edge {} ({} -> {} at {}) failed: {}", bad.edge, bad.from, bad.to, bad.endpoint, bad.detail));
        }
        for o in &b.ops {
            for c in &o.restarts {
                if let Some(cmd) = self.overrides.get(c).and_then(|x| x.health.clone()) {
                    let t = self.t(&o.node)?;
                    if let Err(e) = health_command(t.as_ref(), &cmd, self.patience).await {
                        self.rec(&Record::Gate { node: o.node.clone(), check: format!("{c} health"), ok: false, detail: e.clone() })?;
                        return Err(format!("health gate failed on {} after restarting {c}: its health command {e}", o.node));
                    }
                }
            }
        }
        Ok(results.len())
    }

    /// One node's writes in a step: each file must hold the plan's old bytes (then it is
    /// backed up and written) or already its new ones (a resumed step: left alone).
    async fn write_node(&self, stage: &str, bi: usize, o: &NodeOps) -> std::result::Result<usize, String> {
        let node = o.node.as_str();
        let t = self.t(node)?;
        let run_id = self.run_id();
        let paths: Vec<String> = o.files.iter().map(|f| f.path.clone()).collect();
        let data = t.read_files(&paths).await.map_err(|e| format!("{node}: {e}"))?;
        let mut todo: Vec<(&FileOp, Option<Vec<u8>>, Option<Vec<u8>>)> = Vec::new();
        for (f, d) in o.files.iter().zip(data) {
            let cur = match d {
                FileData::Found(b) => Some(b),
                FileData::Missing => None,
                other => return Err(format!("{node}: {}: cannot read it ({other:?}); nothing was changed on {node} in this step", f.path)),
            };
            let cur_sha = cur.as_deref().map(sha256);
            if cur_sha == f.new_sha256 {
                continue;
            }
            if cur_sha != f.old_sha256 {
                return Err(format!(
                    "{node}: {} changed outside this run (sha256 {} where the plan expects {} before and {} after); nothing was changed on {node} in this step",
                    f.path,
                    short(cur_sha.as_deref()),
                    short(f.old_sha256.as_deref()),
                    short(f.new_sha256.as_deref())
                ));
            }
            let new = f.recipe.apply(cur.as_deref(), &|ca| self.keys.get(ca).cloned()).map_err(|e| format!("{node}: {}: {e}", f.path))?;
            if new.as_deref().map(sha256) != f.new_sha256 {
                return Err(format!("{node}: {}: the new content does not come out as the plan says (sha256 {}); nothing was changed on {node} in this step", f.path, short(new.as_deref().map(sha256).as_deref())));
            }
            todo.push((f, cur, new));
        }
        if todo.is_empty() {
            return Ok(0);
        }
        self.note(node, format!("backing up {} files", todo.len()));
        let backups: Vec<WriteFile> = todo.iter().filter_map(|(f, cur, _)| cur.as_ref().map(|c| WriteFile { path: backup_path(&run_id, stage, &f.path), bytes: c.clone(), mode: 0o600, private: true })).collect();
        let sums = t.write_files(&backups).await.map_err(|e| format!("{node}: backing up failed, nothing was changed on {node} in this step: {e}"))?;
        let mut sums = sums.into_iter();
        for (f, cur, _) in &todo {
            let (backup, sha) = match cur {
                Some(_) => {
                    let got = sums.next().unwrap_or_default();
                    if Some(got.as_str()) != f.old_sha256.as_deref() {
                        return Err(format!("{node}: the backup of {} reads back with another sha256; nothing was changed on {node} in this step", f.path));
                    }
                    (backup_path(&run_id, stage, &f.path), got)
                }
                None => (String::new(), String::new()),
            };
            self.rec(&Record::Backup { node: node.into(), path: f.path.clone(), backup, sha256: sha, at: At::step(stage, bi), absent: cur.is_none() })?;
        }
        let writes: Vec<WriteFile> = todo.iter().filter_map(|(f, _, new)| new.as_ref().map(|n| WriteFile { path: f.path.clone(), bytes: n.clone(), mode: f.mode, private: f.private })).collect();
        let removes: Vec<String> = todo.iter().filter(|(_, _, new)| new.is_none()).map(|(f, _, _)| f.path.clone()).collect();
        self.note(node, format!("writing {} files", todo.len()));
        let sums = t.write_files(&writes).await.map_err(|e| format!("{node}: writing failed, nothing was changed on {node} in this step: {e}"))?;
        for ((f, _, _), sum) in todo.iter().filter(|(_, _, n)| n.is_some()).zip(&sums) {
            if Some(sum.as_str()) != f.new_sha256.as_deref() {
                return Err(format!("{node}: {} reads back with another sha256 than written", f.path));
            }
        }
        t.remove_files(&removes).await.map_err(|e| format!("{node}: {e}"))?;
        t.remove_empty_dirs(&self.staging_dirs(&removes)).await.map_err(|e| format!("{node}: {e}"))?;
        for (f, cur, _) in &todo {
            let old = cur.as_deref().map(sha256).unwrap_or_default();
            self.rec(&Record::Written { node: node.into(), path: f.path.clone(), old_sha256: old, new_sha256: f.new_sha256.clone().unwrap_or_default(), at: At::step(stage, bi) })?;
        }
        Ok(todo.len())
    }

    /// The staging directories that removing these files may leave empty, deepest first.
    fn staging_dirs(&self, removed: &[String]) -> Vec<String> {
        let Some(rot) = &self.playbook.rotation else { return Vec::new() };
        let root = format!("{}/{}", self.playbook.pki_dir.trim_end_matches('/'), rot.staging);
        let mut dirs = BTreeSet::new();
        for p in removed {
            let mut d = p.as_str();
            while let Some((parent, _)) = d.rsplit_once('/') {
                if !parent.starts_with(&root) {
                    break;
                }
                dirs.insert(parent.to_string());
                d = parent;
            }
        }
        let mut v: Vec<String> = dirs.into_iter().collect();
        v.sort_by_key(|d| std::cmp::Reverse(d.matches('/').count()));
        v
    }

    /// Undoes stage `si` in reverse step order: each step's files back from the node's
    /// backups (sha256 checked), created files removed, its components restarted, its gate.
    /// `records` is the journal so far (undoing one stage does not change another's backups).
    async fn rollback_stage(&self, si: usize, records: &[Record]) -> std::result::Result<(), String> {
        let stage = &self.plan.stages[si];
        let live = live_backups(records, &stage.id);
        let written: BTreeMap<(String, String), String> = records
            .iter()
            .filter_map(|r| match r {
                Record::Written { node, path, new_sha256, at: At { stage: Some(s), .. }, .. } if s == &stage.id => Some(((node.clone(), path.clone()), new_sha256.clone())),
                _ => None,
            })
            .collect();
        for bi in (0..stage.steps.len()).rev() {
            let StepPlan::Batch(b) = &stage.steps[bi] else { continue };
            let mine: Vec<&Live> = live.iter().filter(|l| l.0 == bi).collect();
            if mine.is_empty() {
                continue;
            }
            self.emit(&Event::Step { stage: format!("{} rollback", stage.id), index: bi, of: stage.steps.len(), label: b.nodes.join(", ") });
            let nodes: BTreeSet<&str> = mine.iter().map(|l| l.1.as_str()).collect();
            let restored = join_all(nodes.iter().map(|node| {
                let files: Vec<&Live> = mine.iter().filter(|l| l.1 == *node).copied().collect();
                let written = &written;
                async move { self.restore_node(&stage.id, bi, node, &files, written, b).await }
            }))
            .await;
            let errors: Vec<String> = restored.into_iter().filter_map(|r| r.err()).collect();
            if !errors.is_empty() {
                let msg = errors.join("; ");
                let _ = self.rec(&Record::StageRolledBack { stage: stage.id.clone(), status: "failed".into(), message: msg.clone() });
                return Err(msg);
            }
            if !self.offline() {
                for o in b.ops.iter().filter(|o| nodes.contains(o.node.as_str())) {
                    let t = self.t(&o.node)?;
                    for c in &o.restarts {
                        self.restart(&o.node, t.as_ref(), c, b, " (rollback)").await.map_err(|e| format!("files restored, but {e}"))?;
                        self.rec(&Record::Restarted { node: o.node.clone(), component: c.clone(), at: At { stage: Some(format!("{}-rollback", stage.id)), step: Some(bi) } })?;
                    }
                }
                if let Err(e) = self.gate(b).await {
                    let _ = self.rec(&Record::StageRolledBack { stage: stage.id.clone(), status: "failed".into(), message: e.clone() });
                    return Err(format!("step {}'s files were restored and its components restarted, but its gate failed: {e}", bi + 1));
                }
            }
        }
        self.rec(&Record::StageRolledBack { stage: stage.id.clone(), status: "ok".into(), message: format!("{} files restored", live.len()) })?;
        Ok(())
    }

    async fn restore_node(&self, stage: &str, bi: usize, node: &str, files: &[&Live], written: &BTreeMap<(String, String), String>, b: &Batch) -> std::result::Result<(), String> {
        let t = self.t(node)?;
        self.note(node, format!("restoring {} files", files.len()));
        let paths: Vec<String> = files.iter().map(|l| l.2.clone()).collect();
        let now = t.read_files(&paths).await.map_err(|e| format!("{node}: {e}"))?;
        let planned = |path: &str| b.ops.iter().find(|o| o.node == node).and_then(|o| o.files.iter().find(|f| f.path == path));
        let mut todo: Vec<&Live> = Vec::new();
        for (l, d) in files.iter().zip(now) {
            let cur = match d {
                FileData::Found(b) => sha256(&b),
                _ => String::new(),
            };
            let before = if l.5 { String::new() } else { l.4.clone() };
            if cur == before {
                continue;
            }
            let wrote = written.get(&(node.to_string(), l.2.clone())).cloned().or_else(|| planned(&l.2).map(|f| f.new_sha256.clone().unwrap_or_default()));
            if wrote.as_deref() != Some(cur.as_str()) {
                return Err(format!("{node}: {} changed since this run wrote it (sha256 {}); not restored: look at it, then run `kcert rollback` again", l.2, short(Some(&cur))));
            }
            todo.push(l);
        }
        let backups: Vec<String> = todo.iter().filter(|l| !l.5).map(|l| l.3.clone()).collect();
        let data = t.read_files(&backups).await.map_err(|e| format!("{node}: {e}"))?;
        let mut data = data.into_iter();
        let mut writes = Vec::new();
        let mut removes = Vec::new();
        for l in &todo {
            if l.5 {
                removes.push(l.2.clone());
                continue;
            }
            let Some(FileData::Found(bytes)) = data.next() else {
                return Err(format!("{node}: the backup {} of {} is gone; nothing was restored on {node}", l.3, l.2));
            };
            if sha256(&bytes) != l.4 {
                return Err(format!("{node}: the backup {} of {} does not match the journal's sha256; nothing was restored on {node}", l.3, l.2));
            }
            let (mode, private) = planned(&l.2).map(|f| (f.mode, f.private)).unwrap_or((0o644, false));
            writes.push(WriteFile { path: l.2.clone(), bytes, mode, private });
        }
        let sums = t.write_files(&writes).await.map_err(|e| format!("{node}: restoring failed: {e}"))?;
        for (w, s) in writes.iter().zip(&sums) {
            if todo.iter().any(|l| l.2 == w.path && &l.4 != s) {
                return Err(format!("{node}: {} does not read back as its backup after restoring", w.path));
            }
        }
        t.remove_files(&removes).await.map_err(|e| format!("{node}: {e}"))?;
        t.remove_empty_dirs(&self.staging_dirs(&removes)).await.map_err(|e| format!("{node}: {e}"))?;
        for l in &todo {
            self.rec(&Record::Restored { node: node.into(), path: l.2.clone(), sha256: if l.5 { String::new() } else { l.4.clone() }, at: At::step(stage, bi) })?;
        }
        Ok(())
    }

    /// `kcert rollback`: every stage from the last down to `to` (an index into the plan's
    /// stages), undone in reverse order.
    pub async fn rollback(&self, to: usize) -> RunReport {
        let started = Instant::now();
        let mut report = RunReport { run_id: self.run_id(), journal: self.journal_path(), stages: Vec::new(), failure: None, wall_seconds: 0.0, wait_seconds: 0.0 };
        let records = match self.journal.lock().expect("journal lock").records() {
            Ok(r) => r,
            Err(e) => {
                report.failure = Some(e.to_string());
                return report;
            }
        };
        for si in (to..self.plan.stages.len()).rev() {
            let s = &self.plan.stages[si];
            let live = live_backups(&records, &s.id);
            let mut out = StageOutcome { stage: s.id.clone(), name: s.name.clone(), steps: s.steps.len(), files: live.len(), restarts: 0, checks: 0, status: "nothing to undo".into(), wait_seconds: 0.0, total_seconds: 0.0 };
            if live.is_empty() {
                report.stages.push(out);
                continue;
            }
            let t0 = Instant::now();
            self.emit(&Event::Stage { id: format!("{} rollback", s.id), name: s.name.clone() });
            match self.rollback_stage(si, &records).await {
                Ok(()) => out.status = "rolled back".into(),
                Err(e) => {
                    out.status = "failed".into();
                    report.failure = Some(format!("rolling back {} {}: {e}", s.id, s.name));
                }
            }
            out.total_seconds = t0.elapsed().as_secs_f64();
            out.wait_seconds = out.total_seconds;
            report.wait_seconds += out.total_seconds;
            report.stages.push(out);
            if report.failure.is_some() {
                break;
            }
        }
        report.wall_seconds = started.elapsed().as_secs_f64();
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restarted(stage: &str, step: usize) -> Record {
        Record::Restarted { node: "cp1".into(), component: "kube-apiserver".into(), at: At::step(stage, step) }
    }

    #[test]
    fn a_restart_undone_by_a_rollback_is_done_again_on_resume() {
        let restored = Record::Restored { node: "cp1".into(), path: "/etc/kubernetes/pki/ca.crt".into(), sha256: "x".into(), at: At::step("S2", 0) };
        // S2 step 1 restarted the apiserver, then its gate failed; the rollback restored its
        // files and restarted the apiserver on them; the rollback's own gate failed too.
        let records = vec![
            restarted("S2", 0),
            restored,
            restarted("S2-rollback", 0),
            Record::StageRolledBack { stage: "S2".into(), status: "failed".into(), message: "gate".into() },
        ];
        let d = done(&records);
        assert!(!d.restarted.contains(&("S2".into(), 0, "cp1".into(), "kube-apiserver".into())), "the apiserver must restart again on the S2 files");
        // A restart that is still the latest is not repeated; a step done and not restored stays done.
        let d = done(&[restarted("S4", 2), Record::StepDone { stage: "S4".into(), step: 1 }]);
        assert!(d.restarted.contains(&("S4".into(), 2, "cp1".into(), "kube-apiserver".into())));
        assert!(d.steps.contains(&("S4".into(), 1)));
        let d = done(&[Record::StepDone { stage: "S4".into(), step: 1 }, Record::Restored { node: "w1".into(), path: "/x".into(), sha256: String::new(), at: At::step("S4", 1) }]);
        assert!(!d.steps.contains(&("S4".into(), 1)), "a step whose files were restored is not done");
    }
}
