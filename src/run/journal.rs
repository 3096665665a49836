//! Owns: the run journal on the operator's machine: one folder per run under the state dir,
//! an append-only JSON-lines file, each record fsynced before the step it records goes on,
//! and what the records say is done.
//! Must not: hold key material (records carry paths, digests and modes, never bytes).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::plan::{Kind, StageId};

/// How to reach the nodes of a run again (for resume and rollback).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TargetRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// The inventory is read through `ansible-inventory --list`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_ansible: bool,
    pub nodes: Vec<String>,
}

/// Where in a run a record belongs: stage and step.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct At {
    pub stage: StageId,
    pub step: usize,
}

impl At {
    pub fn step(stage: StageId, step: usize) -> At {
        At { stage, step }
    }
}

/// How something the journal records ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Finish {
    Ok,
    Failed,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Record {
    RunStarted { run_id: String, command: Kind, at: String, target: TargetRecord },
    /// The plan the run carries out: `PLAN_FILE` in the run folder, with its sha256.
    Plan { plan_id: String, sha256: String },
    StageStarted { stage: StageId },
    /// A file's old content was copied to `backup` on its node before anything changed there
    /// (`absent`: the file did not exist; undoing the change removes it).
    Backup {
        node: String,
        path: String,
        backup: String,
        sha256: String,
        #[serde(flatten)]
        at: At,
        #[serde(default, skip_serializing_if = "is_false")]
        absent: bool,
    },
    /// An empty sha256 is an absent file (created or removed).
    Written {
        node: String,
        path: String,
        old_sha256: String,
        new_sha256: String,
        #[serde(flatten)]
        at: At,
    },
    /// A component restarted; `undo`: by a rollback, on the restored files.
    Restarted {
        node: String,
        component: String,
        #[serde(flatten)]
        at: At,
        #[serde(default, skip_serializing_if = "is_false")]
        undo: bool,
    },
    Gate { from: String, check: String, ok: bool, detail: String },
    /// A file put back as it was before a stage (a rollback); an empty sha256: removed again.
    Restored {
        node: String,
        path: String,
        sha256: String,
        #[serde(flatten)]
        at: At,
    },
    /// A step is complete (its writes, restarts and gate).
    StepDone { stage: StageId, step: usize },
    StageDone { stage: StageId },
    /// An API step that did not run, and why.
    Skipped { stage: StageId, step: usize, reason: String },
    Api { stage: StageId, step: usize, node: String, name: String, ok: bool, detail: String },
    /// A stage's files were restored and its components restarted: its steps are undone.
    StageRolledBack { stage: StageId, status: Finish, message: String },
    /// The run stopped on a failure and left the stage as it was (`--on-failure pause`).
    Paused { stage: StageId, step: usize, message: String },
    RunFinished { status: Finish, message: String },
    RolledBack { at: String, status: Finish, message: String },
}

impl Record {
    /// The stage a record belongs to, when it belongs to one.
    pub fn stage(&self) -> Option<StageId> {
        match self {
            Record::StageStarted { stage } | Record::StepDone { stage, .. } | Record::StageDone { stage } | Record::Skipped { stage, .. } | Record::Api { stage, .. } | Record::StageRolledBack { stage, .. } | Record::Paused { stage, .. } => Some(*stage),
            Record::Backup { at, .. } | Record::Written { at, .. } | Record::Restarted { at, .. } | Record::Restored { at, .. } => Some(at.stage),
            _ => None,
        }
    }
}

/// An id that sorts by time and does not collide: `<UTC stamp>-<what>-<6 hex>` (runs, plans).
pub fn stamped_id(what: &str, now: i64) -> Result<String> {
    let stamp = time::OffsetDateTime::from_unix_timestamp(now)
        .ok()
        .and_then(|t| t.format(time::macros::format_description!("[year][month][day]T[hour][minute][second]Z")).ok())
        .unwrap_or_else(|| now.to_string());
    let mut rnd = [0u8; 3];
    rustls::crypto::aws_lc_rs::default_provider().secure_random.fill(&mut rnd).map_err(|_| Error::Runtime("no randomness".into()))?;
    Ok(format!("{stamp}-{what}-{}", crate::pki::cert::hex(&rnd)))
}

/// The state dir: `--state-dir`, else `$XDG_STATE_HOME/kcert`, else `~/.local/state/kcert`.
pub fn state_dir(flag: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p.to_path_buf());
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(x).join("kcert"));
    }
    let home = std::env::var_os("HOME").filter(|v| !v.is_empty()).ok_or_else(|| Error::Usage("neither HOME nor XDG_STATE_HOME is set: pass --state-dir".into()))?;
    Ok(PathBuf::from(home).join(".local/state/kcert"))
}

/// The run's plan in its run folder (and in each node's copy), as `stored::to_bytes` saves it.
pub const PLAN_FILE: &str = "plan.json.gz";

pub struct Journal {
    pub run_id: String,
    pub dir: PathBuf,
    file: std::fs::File,
    /// `run.log` beside it: what happened, for a person; opened on the first line.
    log: Option<std::fs::File>,
    /// Held while the journal is open: one kcert at a time drives a run.
    _lock: std::fs::File,
}

impl Drop for Journal {
    /// Unlocks outright: a child forked meanwhile shares the lock's open file until it execs,
    /// and closing this process's copy alone would leave the run locked that long.
    fn drop(&mut self) {
        let _ = self._lock.unlock();
    }
}

/// Locks the run folder for this process; another kcert holding it is refused, not waited for.
fn lock(dir: &Path, run_id: &str) -> Result<std::fs::File> {
    let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(dir.join("lock")).map_err(|e| Error::Runtime(format!("cannot open the lock of run {run_id}: {e}")))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::input(format!("run {run_id}"), "another kcert is working on this run right now (its lock is held); wait for it, or stop it first")),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::Runtime(format!("cannot lock run {run_id}: {e}"))),
    }
}

impl Journal {
    /// A new run folder `runs/<run-id>` (0700) with an empty journal (0600).
    pub fn create(state_dir: &Path, command: &str, now: i64) -> Result<Journal> {
        let run_id = stamped_id(command, now)?;
        let dir = state_dir.join("runs").join(&run_id);
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(|e| Error::input(format!("state dir {}", state_dir.display()), format!("cannot create the run folder: {e}")))?;
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .mode(0o600)
            .open(dir.join("journal.jsonl"))
            .map_err(|e| Error::Runtime(format!("cannot create the journal in {}: {e}", dir.display())))?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        let _lock = lock(&dir, &run_id)?;
        Ok(Journal { run_id, dir, file, log: None, _lock })
    }

    /// Appends a record and waits until it is on disk.
    pub fn record(&mut self, rec: &Record) -> Result<()> {
        self.record_all(std::slice::from_ref(rec))
    }

    /// Appends records, in order, and waits once until they are all on disk: for records of
    /// things already done (a node's backups, its writes), so one sync covers them.
    pub fn record_all(&mut self, recs: &[Record]) -> Result<()> {
        if recs.is_empty() {
            return Ok(());
        }
        let mut lines = Vec::new();
        for rec in recs {
            lines.extend(serde_json::to_vec(rec).expect("records serialize"));
            lines.push(b'\n');
        }
        self.file.write_all(&lines).and_then(|_| self.file.sync_data()).map_err(|e| Error::Runtime(format!("cannot write the journal {}: {e}", self.dir.display())))?;
        for rec in recs {
            crate::fault::reached(crate::fault::Point::Record, rec.stage().map(|s| s.as_str()));
        }
        Ok(())
    }

    /// Appends a timestamped line to the run log (best effort: the journal is the record).
    pub fn log(&mut self, line: &str) {
        if self.log.is_none() {
            self.log = super::keys::open_private_log(&self.dir.join("run.log")).ok();
        }
        if let Some(f) = &mut self.log {
            let _ = writeln!(f, "{} {line}", crate::text::rfc3339(time::OffsetDateTime::now_utc().unix_timestamp()));
        }
    }

    /// Every record written so far.
    pub fn records(&self) -> Result<Vec<Record>> {
        read_path(&self.dir.join("journal.jsonl"))
    }

    /// Reopens an existing run's journal for appending (rollback records its outcome there).
    pub fn reopen(state_dir: &Path, run_id: &str) -> Result<Journal> {
        let dir = run_dir(state_dir, run_id)?;
        let _lock = lock(&dir, run_id)?;
        let file = std::fs::OpenOptions::new().append(true).open(dir.join("journal.jsonl")).map_err(|e| Error::input(format!("run {run_id}"), format!("cannot open its journal: {e}")))?;
        Ok(Journal { run_id: run_id.to_string(), dir, file, log: None, _lock })
    }
}

pub fn run_dir(state_dir: &Path, run_id: &str) -> Result<PathBuf> {
    if run_id.contains('/') || run_id.starts_with('.') {
        return Err(Error::Usage(format!("{run_id:?} is not a run id")));
    }
    let dir = state_dir.join("runs").join(run_id);
    if !dir.join("journal.jsonl").is_file() {
        return Err(Error::input(format!("run {run_id}"), format!("no journal in {}", dir.display())));
    }
    Ok(dir)
}

/// Every record of a run, in order. A torn last line (a crash mid-write) is ignored.
pub fn read(state_dir: &Path, run_id: &str) -> Result<Vec<Record>> {
    read_path(&run_dir(state_dir, run_id)?.join("journal.jsonl"))
}

fn read_path(path: &Path) -> Result<Vec<Record>> {
    let bytes = std::fs::read(path).map_err(|e| Error::input(path.display().to_string(), e.to_string()))?;
    parse_lines(&bytes).map_err(|(line, message)| Error::InputAt { file: path.to_path_buf(), line, column: 1, message })
}

/// At most how many records this machine's journal of a run holds (its lines, counted
/// without parsing them); `None` when it has none that can be read.
pub fn records_at_most(state_dir: &Path, run_id: &str) -> Option<usize> {
    use std::io::Read;
    // Read a block at a time: a long run's journal (about 1 KB per file it changed) is never held whole.
    let mut f = std::fs::File::open(run_dir(state_dir, run_id).ok()?.join("journal.jsonl")).ok()?;
    let mut block = vec![0u8; 64 * 1024];
    let (mut newlines, mut last) = (0, None);
    loop {
        match f.read(&mut block) {
            Ok(0) => break,
            Ok(n) => {
                newlines += block[..n].iter().filter(|b| **b == b'\n').count();
                last = Some(block[n - 1]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(newlines + usize::from(last.is_some_and(|b| b != b'\n')))
}

/// A journal's records from its bytes (a node's copy, or the operator's file). A torn last
/// line (a crash mid-write) is ignored; any other line that is not a record is an error.
pub fn parse(bytes: &[u8]) -> std::result::Result<Vec<Record>, String> {
    parse_lines(bytes).map_err(|(line, m)| format!("line {line}: {m}"))
}

fn parse_lines(bytes: &[u8]) -> std::result::Result<Vec<Record>, (u64, String)> {
    let text = std::str::from_utf8(bytes).map_err(|_| (1, "not UTF-8 text".to_string()))?;
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str(line) {
            Ok(r) => out.push(r),
            Err(_) if i + 1 == lines.len() => {}
            Err(e) => return Err((i as u64 + 1, format!("not a journal record: {e}"))),
        }
    }
    Ok(out)
}

/// Run ids, oldest first (ids start with their UTC start time).
pub fn runs(state_dir: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(state_dir.join("runs"))
        .map(|rd| rd.flatten().filter(|e| e.path().join("journal.jsonl").is_file()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    ids.sort();
    ids
}

/// What the journal says is done: steps and stages complete, components restarted per step.
#[derive(Debug, Default)]
pub struct Done {
    pub steps: BTreeSet<(StageId, usize)>,
    pub stages: BTreeSet<StageId>,
    /// (stage, step, node, component) of each restart that is still the component's latest.
    pub restarted: BTreeSet<(StageId, usize, String, String)>,
    pub finished: Option<Finish>,
    pub started: bool,
    /// Backups of files this run changed whose stage was not rolled back: something of it is
    /// still on the nodes.
    pub live_files: usize,
    pub rolled_back: Option<Finish>,
}

impl Done {
    /// Whether the run leaves work for a later one to finish (resume or roll back): something
    /// it changed is still on the nodes, and it did not finish. A new run is refused beside it.
    pub fn unfinished(&self) -> bool {
        self.live_files > 0 && self.finished != Some(Finish::Ok)
    }
}

/// Reads the journal. A step is done once recorded so, and undone again when any of its files
/// is restored (a stage rolled back, even partly). A restart counts only while it is the
/// component's latest: a later one (a rollback's) loaded other files, so it must be redone.
pub fn done(records: &[Record]) -> Done {
    let mut d = Done::default();
    let mut last: BTreeMap<(String, String), Option<(StageId, usize)>> = BTreeMap::new();
    for r in records {
        match r {
            Record::StageStarted { .. } => d.started = true,
            Record::StepDone { stage, step } => {
                d.steps.insert((*stage, *step));
            }
            Record::StageDone { stage } => {
                d.stages.insert(*stage);
            }
            Record::Restarted { node, component, at, undo } => {
                last.insert((node.clone(), component.clone()), (!undo).then_some((at.stage, at.step)));
            }
            Record::Restored { at, .. } => {
                d.steps.remove(&(at.stage, at.step));
                d.stages.remove(&at.stage);
                d.finished = None;
            }
            Record::StageRolledBack { stage, status: Finish::Ok, .. } => {
                d.steps.retain(|(s, _)| s != stage);
                d.stages.remove(stage);
                d.finished = None;
            }
            Record::RunFinished { status, .. } => d.finished = Some(*status),
            Record::RolledBack { status, .. } => d.rolled_back = Some(*status),
            _ => {}
        }
    }
    d.restarted = last.into_iter().filter_map(|((node, comp), at)| at.map(|(stage, step)| (stage, step, node, comp))).collect();
    d.live_files = StageId::ALL.into_iter().map(|s| live_backups(records, s).len()).sum();
    d
}

/// A backup this run took and has not undone yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    pub step: usize,
    pub node: String,
    pub path: String,
    pub backup: String,
    pub sha256: String,
    /// The file did not exist: undoing the change removes it.
    pub absent: bool,
}

/// The backups a stage took that a rollback of it has not undone yet.
pub fn live_backups(records: &[Record], stage: StageId) -> Vec<Live> {
    let mut out: Vec<Live> = Vec::new();
    for r in records {
        match r {
            Record::Backup { node, path, backup, sha256, at, absent } if at.stage == stage && !out.iter().any(|b| b.step == at.step && &b.node == node && &b.path == path) => {
                out.push(Live { step: at.step, node: node.clone(), path: path.clone(), backup: backup.clone(), sha256: sha256.clone(), absent: *absent });
            }
            Record::StageRolledBack { stage: s, status: Finish::Ok, .. } if *s == stage => out.clear(),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_s_lines_are_counted_across_blocks_a_torn_last_line_included() {
        let state = tempfile::tempdir().unwrap();
        let dir = state.path().join("runs/r1");
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(records_at_most(state.path(), "r1"), None, "no journal");
        // 3,000 lines of 100 bytes: several blocks of 64 KiB.
        let line = format!("{}\n", "x".repeat(99));
        std::fs::write(dir.join("journal.jsonl"), line.repeat(3000)).unwrap();
        assert_eq!(records_at_most(state.path(), "r1"), Some(3000));
        std::fs::write(dir.join("journal.jsonl"), line.repeat(3000) + "{\"torn").unwrap();
        assert_eq!(records_at_most(state.path(), "r1"), Some(3001), "a torn last line may be a record");
        std::fs::write(dir.join("journal.jsonl"), "").unwrap();
        assert_eq!(records_at_most(state.path(), "r1"), Some(0));
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::create(dir.path(), "renew", 1_700_000_000).unwrap();
        assert!(j.run_id.starts_with("20231114T221320Z-renew-"), "{}", j.run_id);
        let rec = Record::Written { node: "cp1".into(), path: "/a".into(), old_sha256: "0".into(), new_sha256: "1".into(), at: At::step(StageId::Trust, 3) };
        j.record(&rec).unwrap();
        std::fs::OpenOptions::new().append(true).open(j.dir.join("journal.jsonl")).unwrap().write_all(b"{\"event\":\"writ").unwrap();
        assert_eq!(read(dir.path(), &j.run_id).unwrap(), vec![rec]);
        assert_eq!(runs(dir.path()), vec![j.run_id.clone()]);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(j.dir.join("journal.jsonl")).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(read(dir.path(), "../x").is_err());
        // While this journal is open, nobody else drives the run; once it is closed, they may.
        let err = Journal::reopen(dir.path(), &j.run_id).err().expect("a second journal on the same run is refused").to_string();
        assert!(err.contains("another kcert"), "{err}");
        drop(j);
        let id = runs(dir.path()).remove(0);
        assert!(Journal::reopen(dir.path(), &id).is_ok());
    }

    #[test]
    fn records_keep_the_journal_format() {
        let r = Record::Backup { node: "cp1".into(), path: "/a".into(), backup: "/b".into(), sha256: "x".into(), at: At::step(StageId::Resign, 2), absent: false };
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(line, r#"{"event":"backup","node":"cp1","path":"/a","backup":"/b","sha256":"x","stage":"S4","step":2}"#);
        assert_eq!(serde_json::from_str::<Record>(&line).unwrap(), r);
        let done: Record = serde_json::from_str(r#"{"event":"run-finished","status":"ok","message":"m"}"#).unwrap();
        assert_eq!(done, Record::RunFinished { status: Finish::Ok, message: "m".into() });
    }

    fn restarted(stage: StageId, step: usize, undo: bool) -> Record {
        Record::Restarted { node: "cp1".into(), component: "kube-apiserver".into(), at: At::step(stage, step), undo }
    }

    #[test]
    fn a_restart_undone_by_a_rollback_is_done_again_on_resume() {
        let restored = Record::Restored { node: "cp1".into(), path: "/etc/kubernetes/pki/ca.crt".into(), sha256: "x".into(), at: At::step(StageId::Trust, 0) };
        // S2 step 1 restarted the apiserver, then its gate failed; the rollback restored its
        // files and restarted the apiserver on them; the rollback's own gate failed too.
        let records = vec![
            restarted(StageId::Trust, 0, false),
            restored,
            restarted(StageId::Trust, 0, true),
            Record::StageRolledBack { stage: StageId::Trust, status: Finish::Failed, message: "gate".into() },
        ];
        let d = done(&records);
        assert!(!d.restarted.contains(&(StageId::Trust, 0, "cp1".into(), "kube-apiserver".into())), "the apiserver must restart again on the S2 files");
        // A restart that is still the latest is not repeated; a step done and not restored stays done.
        let d = done(&[restarted(StageId::Resign, 2, false), Record::StepDone { stage: StageId::Resign, step: 1 }]);
        assert!(d.restarted.contains(&(StageId::Resign, 2, "cp1".into(), "kube-apiserver".into())));
        assert!(d.steps.contains(&(StageId::Resign, 1)));
        let d = done(&[Record::StepDone { stage: StageId::Resign, step: 1 }, Record::Restored { node: "w1".into(), path: "/x".into(), sha256: String::new(), at: At::step(StageId::Resign, 1) }]);
        assert!(!d.steps.contains(&(StageId::Resign, 1)), "a step whose files were restored is not done");
    }

    #[test]
    fn changes_of_stages_not_rolled_back_are_live() {
        let b = |stage, p: &str| Record::Backup { node: "cp1".into(), path: p.into(), backup: "/b".into(), sha256: "a".into(), at: At::step(stage, 0), absent: false };
        let undone = |stage| Record::StageRolledBack { stage, status: Finish::Ok, message: String::new() };
        assert_eq!(done(&[b(StageId::Trust, "/ca"), b(StageId::Resign, "/ca"), b(StageId::Resign, "/leaf")]).live_files, 3);
        // S4 rolled back, S2 not: ca.crt is still S2's.
        assert_eq!(done(&[b(StageId::Trust, "/ca"), b(StageId::Resign, "/ca"), b(StageId::Resign, "/leaf"), undone(StageId::Resign)]).live_files, 1);
        assert_eq!(done(&[b(StageId::Renew, "/a"), undone(StageId::Renew)]).live_files, 0);
    }
}
