//! Owns: undoing stages: each step's files back from the node's backups (each checked to be
//! still what the run wrote, each backup against the journal's sha256), created files
//! removed, components restarted, gates passed again, an API step set back where its plan
//! says how (a datastore), a datastore's stage first step first; a stage after a failure, or
//! `kcert rollback` down to a stage.
//! Must not: restore a file that changed since the run wrote it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use futures::future::join_all;

use super::journal::{At, Live, Record, Finish, live_backups};
use super::{Event, RunReport, Runner, StageOutcome, StageStatus};
use crate::pki::sha256;
use crate::plan::StageId;
use crate::plan::schema::{Batch, StepPlan};
use crate::reach::transport::{FileData, WriteFile};
use crate::text::short_sha;

/// Whether `node`'s unit makes `path` anew at every start (the plan's reissued files say so):
/// what the run wrote there is gone by the next start, whoever started it.
fn remade(plan: &crate::plan::Plan, node: &str, path: &str) -> bool {
    super::reissue::reissued(plan, None, node, path).is_some_and(|f| f.remade)
}

impl Runner<'_> {
    /// Undoes stage `si` in reverse step order: each step's files back from the node's
    /// backups (sha256 checked), created files removed, its components restarted, its gate.
    /// `records` is the journal so far (undoing one stage does not change another's backups).
    /// Returns how many components it restarted.
    pub(super) async fn rollback_stage(&self, si: usize, records: &[Record]) -> std::result::Result<usize, String> {
        let mut restarts = 0;
        let stage = &self.plan.stages[si];
        let live = live_backups(records, stage.id);
        let written: BTreeMap<(String, String), String> = records
            .iter()
            .filter_map(|r| match r {
                Record::Written { node, path, new_sha256, at, .. } if at.stage == stage.id => Some(((node.clone(), path.clone()), new_sha256.clone())),
                _ => None,
            })
            .collect();
        // An API step that succeeded is set back where its plan says how (a datastore).
        let api_done = |bi: usize| records.iter().any(|r| matches!(r, Record::Api { stage: s, step, ok: true, .. } if *s == stage.id && *step == bi));
        let order: Vec<usize> = match &stage.undo {
            Some(u) if u.in_order => (0..stage.steps.len()).collect(),
            _ => (0..stage.steps.len()).rev().collect(),
        };
        for bi in order {
            if let StepPlan::Api(a) = &stage.steps[bi]
                && let Some(script) = &a.undo
                && api_done(bi)
                && !self.offline()
            {
                let back = crate::plan::schema::ApiCall { name: format!("set back: {script}"), node: a.node.clone(), script: script.clone(), skipped: None, undo: None };
                self.set_back(stage.id, &back).await?;
            }
            let StepPlan::Batch(b) = &stage.steps[bi] else { continue };
            let mine: Vec<&Live> = live.iter().filter(|l| l.step == bi).collect();
            if mine.is_empty() {
                continue;
            }
            self.emit(&Event::Step { stage: stage.id, index: bi, of: stage.steps.len(), label: b.nodes.join(", ") });
            let nodes: BTreeSet<&str> = mine.iter().map(|l| l.node.as_str()).collect();
            // A unit whose tool made the files is stopped while they are put back, as it was
            // while the tool ran: nothing reads half a pair, and it cannot make them again meanwhile.
            let units: Vec<(&str, &crate::plan::schema::Reissue)> = b.ops.iter().filter(|o| nodes.contains(o.node.as_str())).filter_map(|o| o.reissue.as_ref().map(|r| (o.node.as_str(), r))).collect();
            if !self.offline() {
                for (node, r) in &units {
                    self.note(node, format!("stopping {} (rollback)", r.unit));
                    self.unit_command(node, &r.stop).await?;
                }
            }
            let restored = join_all(nodes.iter().map(|node| {
                let files: Vec<&Live> = mine.iter().filter(|l| l.node == *node).copied().collect();
                let written = &written;
                async move { self.restore_node(stage.id, bi, node, &files, written, b).await }
            }))
            .await;
            let mut errors: Vec<String> = restored.into_iter().filter_map(|r| r.err()).collect();
            if !self.offline() {
                // Started again whatever the restore did: no node is left down.
                for (node, r) in &units {
                    self.note(node, format!("starting {} (rollback)", r.unit));
                    if let Err(e) = self.unit_command(node, &r.start).await {
                        errors.push(e);
                        continue;
                    }
                    self.rec(&Record::Restarted { node: node.to_string(), component: r.unit.clone(), at: At::step(stage.id, bi), undo: true })?;
                    self.count(node, |n| n.restarted.push(r.unit.clone()));
                    restarts += 1;
                }
            }
            if !errors.is_empty() {
                let msg = errors.join("; ");
                let _ = self.rec(&Record::StageRolledBack { stage: stage.id, status: Finish::Failed, message: msg.clone() });
                return Err(msg);
            }
            if !self.offline() {
                for o in b.ops.iter().filter(|o| nodes.contains(o.node.as_str())) {
                    let t = self.t(&o.node)?;
                    for c in &o.restarts {
                        self.restart(&o.node, t.as_ref(), c, b, " (rollback)").await.map_err(|e| format!("files restored, but {e}"))?;
                        self.rec(&Record::Restarted { node: o.node.clone(), component: c.clone(), at: At::step(stage.id, bi), undo: true })?;
                        self.count(&o.node, |n| n.restarted.push(c.clone()));
                        restarts += 1;
                    }
                }
                if let Err(e) = self.gate(b).await {
                    let _ = self.rec(&Record::StageRolledBack { stage: stage.id, status: Finish::Failed, message: e.clone() });
                    return Err(format!("step {}'s files were restored and its components restarted, but its gate failed: {e}", bi + 1));
                }
            }
        }
        self.rec(&Record::StageRolledBack { stage: stage.id, status: Finish::Ok, message: format!("{} files restored", live.len()) })?;
        self.share().await.map(|_| restarts).or_else(|e| {
            self.emit(&Event::Note { message: e });
            Ok(restarts)
        })
    }

    /// Runs what sets a stage's datastore back; its outcome journaled, its failure stops the rollback.
    async fn set_back(&self, stage: StageId, a: &crate::plan::schema::ApiCall) -> std::result::Result<(), String> {
        self.note(&a.node, a.name.clone());
        let out = self.t(&a.node)?.run(&a.script).await.map_err(|e| format!("{}: {e}", a.node))?;
        let detail = if out.success() { out.stdout_text().trim().to_string() } else { out.stderr_text() };
        if !out.success() {
            let msg = format!("{} failed on {} (exit {:?}): {detail}", a.name, a.node, out.status);
            let _ = self.rec(&Record::StageRolledBack { stage, status: Finish::Failed, message: msg.clone() });
            return Err(msg);
        }
        Ok(())
    }

    /// A unit's stop or start command on a node, its failure said with the command.
    async fn unit_command(&self, node: &str, cmd: &str) -> std::result::Result<(), String> {
        super::reissue::shell(self.t(node)?.as_ref(), cmd).await.map_err(|e| format!("{node}: `{cmd}` failed: {e}"))
    }

    async fn restore_node(&self, stage: StageId, bi: usize, node: &str, files: &[&Live], written: &BTreeMap<(String, String), String>, b: &Batch) -> std::result::Result<(), String> {
        let t = self.t(node)?;
        self.note(node, format!("restoring {} files", files.len()));
        let paths: Vec<String> = files.iter().map(|l| l.path.clone()).collect();
        // Whatever comes of it, these files are no longer what this process wrote there.
        self.forget(node, &paths);
        let now = t.read_files(&paths).await.map_err(|e| format!("{node}: {e}"))?;
        let planned = |path: &str| b.ops.iter().find(|o| o.node == node).and_then(|o| o.files.iter().find(|f| f.path == path));
        let mut todo: Vec<&Live> = Vec::new();
        for (l, d) in files.iter().zip(now) {
            let cur = match d {
                FileData::Found(b) => sha256(&b),
                _ => String::new(),
            };
            let before = if l.absent { String::new() } else { l.sha256.clone() };
            if cur == before {
                continue;
            }
            let wrote = written.get(&(node.to_string(), l.path.clone())).cloned().or_else(|| planned(&l.path).map(|f| f.new_sha256.clone().unwrap_or_default()));
            if wrote.as_deref() != Some(cur.as_str()) && !remade(self.plan, node, &l.path) {
                return Err(format!("{node}: {} changed since this run wrote it (sha256 {}); not restored: look at it, then run `kcert rollback` again", l.path, short_sha(Some(&cur))));
            }
            todo.push(l);
        }
        let backups: Vec<String> = todo.iter().filter(|l| !l.absent).map(|l| l.backup.clone()).collect();
        let data = t.read_files(&backups).await.map_err(|e| format!("{node}: {e}"))?;
        let mut data = data.into_iter();
        let mut writes = Vec::new();
        let mut removes = Vec::new();
        for l in &todo {
            if l.absent {
                removes.push(l.path.clone());
                continue;
            }
            let Some(FileData::Found(bytes)) = data.next() else {
                return Err(format!("{node}: the backup {} of {} is gone; nothing was restored on {node}", l.backup, l.path));
            };
            if sha256(&bytes) != l.sha256 {
                return Err(format!("{node}: the backup {} of {} does not match the journal's sha256; nothing was restored on {node}", l.backup, l.path));
            }
            let reissued = b.ops.iter().filter(|o| o.node == node).flat_map(|o| o.reissue.iter().flat_map(|r| &r.files)).find(|f| f.path == l.path);
            let (mode, private) = match (planned(&l.path), reissued) {
                (Some(f), _) => (f.mode, f.private),
                (None, Some(f)) => (if f.private { 0o600 } else { 0o644 }, f.private),
                (None, None) => (0o644, false),
            };
            writes.push(WriteFile { path: l.path.clone(), bytes, mode, private });
        }
        let sums = t.write_files(&writes).await.map_err(|e| format!("{node}: restoring failed: {e}"))?;
        for (w, s) in writes.iter().zip(&sums) {
            if todo.iter().any(|l| l.path == w.path && &l.sha256 != s) {
                return Err(format!("{node}: {} does not read back as its backup after restoring", w.path));
            }
        }
        t.remove_files(&removes).await.map_err(|e| format!("{node}: {e}"))?;
        t.remove_empty_dirs(&self.staging_dirs(&removes)).await.map_err(|e| format!("{node}: {e}"))?;
        for l in &todo {
            self.rec(&Record::Restored { node: node.into(), path: l.path.clone(), sha256: if l.absent { String::new() } else { l.sha256.clone() }, at: At::step(stage, bi) })?;
        }
        self.count(node, |n| n.restored = true);
        Ok(())
    }

    /// Journals what a killed kcert changed but this copy of its journal does not know (a
    /// node's copy lags the operator's by the step it was cut off in): every backup the run's
    /// deterministic backup paths hold with the old bytes of a change of the plan, and every
    /// file the plan creates that is there (or that a later stage backed up). A backup is
    /// written before its change, so each is journaled as taken, and a rollback restores it.
    /// Returns how many it journaled.
    pub async fn recover_unrecorded(&self) -> std::result::Result<usize, String> {
        let records = self.journal.lock().expect("journal lock").records().map_err(|e| e.to_string())?;
        let known: BTreeSet<(StageId, &str, &str)> = records
            .iter()
            .filter_map(|r| match r {
                Record::Backup { node, path, at, .. } => Some((at.stage, node.as_str(), path.as_str())),
                _ => None,
            })
            .collect();
        let run_id = self.run_id();
        let mut per_node: BTreeMap<&str, Vec<(StageId, usize, &crate::plan::schema::FileOp)>> = BTreeMap::new();
        for (si, bi, node, f) in self.plan.file_ops() {
            let stage = self.plan.stages[si].id;
            if !known.contains(&(stage, node, f.path.as_str())) {
                per_node.entry(node).or_default().push((stage, bi, f));
            }
        }
        let mut found = 0;
        for (node, ops) in per_node {
            let t = self.t(node)?;
            let backups: Vec<String> = ops.iter().map(|(stage, _, f)| super::node::backup_path(&run_id, *stage, &f.path)).collect();
            let now: Vec<String> = ops.iter().map(|(_, _, f)| f.path.clone()).collect();
            let held = t.read_files(&backups).await.map_err(|e| format!("{node}: {e}"))?;
            let exists = t.exists(&now).await.map_err(|e| format!("{node}: {e}"))?;
            let backed: Vec<bool> = ops.iter().zip(&held).map(|((_, _, f), d)| matches!(d, FileData::Found(b) if Some(sha256(b)) == f.old_sha256)).collect();
            for (i, (stage, bi, f)) in ops.iter().enumerate() {
                let rec = if f.old_sha256.is_some() {
                    backed[i].then(|| Record::Backup { node: node.into(), path: f.path.clone(), backup: backups[i].clone(), sha256: f.old_sha256.clone().unwrap_or_default(), at: At::step(*stage, *bi), absent: false })
                } else {
                    // Created by the plan: it is there, or a later stage backed it up.
                    let later = ops.iter().enumerate().any(|(j, (s, _, g))| j != i && s > stage && g.path == f.path && backed[j]) || known.iter().any(|(s, n, p)| s > stage && *n == node && *p == f.path);
                    (exists[i] || later).then(|| Record::Backup { node: node.into(), path: f.path.clone(), backup: String::new(), sha256: String::new(), at: At::step(*stage, *bi), absent: true })
                };
                if let Some(r) = rec {
                    self.note(node, format!("{}: changed in {stage} by a kcert whose journal was cut off; its backup is journaled again", f.path));
                    self.rec(&r)?;
                    found += 1;
                }
            }
        }
        Ok(found)
    }

    /// Before `kcert rollback` changes anything: every file the stages from `to` on wrote
    /// must still hold what the run wrote there (or be back as it was). A file changed since
    /// (a newer run renewed it again, a person edited it) refuses the whole rollback, naming it.
    pub async fn undoable(&self, to: usize) -> std::result::Result<(), Vec<String>> {
        let records = self.journal.lock().expect("journal lock").records().map_err(|e| vec![e.to_string()])?;
        // What each file should hold now, as the journal tells it: the last write or restore.
        let mut now: BTreeMap<(String, String), String> = BTreeMap::new();
        for r in &records {
            match r {
                Record::Written { node, path, new_sha256, .. } => {
                    now.insert((node.clone(), path.clone()), new_sha256.clone());
                }
                Record::Restored { node, path, sha256, .. } => {
                    now.insert((node.clone(), path.clone()), sha256.clone());
                }
                _ => {}
            }
        }
        // Per file: what it held before the first stage undone (the earliest backup), and now.
        let mut per_node: BTreeMap<String, BTreeMap<String, (String, String)>> = BTreeMap::new();
        for s in &self.plan.stages[to..] {
            for l in live_backups(&records, s.id) {
                let before = if l.absent { String::new() } else { l.sha256.clone() };
                let key = (l.node.clone(), l.path.clone());
                let expected = now.get(&key).cloned().unwrap_or_else(|| before.clone());
                per_node.entry(l.node).or_default().entry(l.path).or_insert((before, expected));
            }
        }
        // What a unit makes anew at every start is not the run's to vouch for any more.
        for (node, files) in per_node.iter_mut() {
            files.retain(|path, _| !remade(self.plan, node, path));
        }
        let mut bad = Vec::new();
        for (node, files) in &per_node {
            let t = match self.t(node) {
                Ok(t) => t,
                Err(e) => {
                    bad.push(e);
                    continue;
                }
            };
            let paths: Vec<String> = files.keys().cloned().collect();
            let data = match t.read_files(&paths).await {
                Ok(d) => d,
                Err(e) => {
                    bad.push(format!("{node}: {e}"));
                    continue;
                }
            };
            for ((path, (before, after)), d) in files.iter().zip(data) {
                let cur = match d {
                    FileData::Found(b) => sha256(&b),
                    _ => String::new(),
                };
                // A write the kill cut off before the journal heard of it holds the plan's bytes.
                let planned = self.plan.file_ops().any(|(si, _, n, f)| si >= to && n == node.as_str() && &f.path == path && f.new_sha256.as_deref().unwrap_or("") == cur);
                if cur != *before && cur != *after && !planned {
                    bad.push(format!("{node}: {path} changed since this run wrote it (sha256 {}, where the run wrote {}): a newer run or a person changed it", short_sha(Some(&cur)), short_sha(Some(after))));
                }
            }
        }
        if bad.is_empty() { Ok(()) } else { Err(bad) }
    }

    /// `kcert rollback`: every stage from the last down to `to` (an index into the plan's
    /// stages), undone in reverse order.
    pub async fn rollback(&self, to: usize) -> RunReport {
        let started = Instant::now();
        let mut report = self.report();
        self.emit(&Event::Begin { steps: self.plan.stages[to..].iter().map(|s| s.steps.len()).sum() });
        let records = match self.journal.lock().expect("journal lock").records() {
            Ok(r) => r,
            Err(e) => {
                report.failure = Some(e.to_string());
                return report;
            }
        };
        if let Err(e) = self.sweep_temps().await {
            report.failure = Some(e);
            return report;
        }
        for si in (to..self.plan.stages.len()).rev() {
            let s = &self.plan.stages[si];
            let live = live_backups(&records, s.id);
            let mut out = StageOutcome::new(s.id, &s.name, s.steps.len(), StageStatus::NothingToUndo);
            out.files = live.len();
            if live.is_empty() {
                report.stages.push(out);
                continue;
            }
            let t0 = Instant::now();
            self.emit(&Event::Stage { id: s.id, name: s.name.clone(), undo: true });
            match self.rollback_stage(si, &records).await {
                Ok(restarts) => {
                    out.status = StageStatus::RolledBack;
                    out.restarts = restarts;
                }
                Err(e) => {
                    out.status = StageStatus::Failed;
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
        report.nodes = self.node_outcomes();
        report.wall_seconds = started.elapsed().as_secs_f64();
        report
    }
}
