//! Owns: the copy of a run the control-plane nodes keep, so that the run outlives the
//! operator's machine: `/var/lib/kcert/runs/<run-id>/` (0700) holding the plan and the
//! journal (0600), kept up to date at every step boundary (written whole and atomically at a
//! process's first copy, then only the records a node lacks appended), and the run's state
//! (whether it ended); and reading the copies back: which runs a cluster knows, which of them
//! may be unfinished, and the longest consistent journal of one.
//! Must not: hold key material (plans and journals carry none) or decide what a run does.

use std::collections::BTreeMap;

use futures::future::join_all;

use super::Runner;
use super::journal::{self, Record};
use crate::reach::transport::{FileData, Survey, Transport, WriteFile};

/// Where each control-plane node keeps its copy of every run: `<dir>/<run-id>/`.
pub const NODE_RUNS: &str = "/var/lib/kcert/runs";

/// The largest journal or plan of a run kcert reads back from a node.
pub const MAX_RUN_FILE: u64 = 512 * 1024 * 1024;

/// A run's files on a node.
pub fn run_paths(run_id: &str) -> (String, String) {
    (format!("{NODE_RUNS}/{run_id}/{}", journal::PLAN_FILE), format!("{NODE_RUNS}/{run_id}/{JOURNAL_FILE}"))
}

const JOURNAL_FILE: &str = "journal.jsonl";

/// Beside a node's copy of a run: whether its journal leaves anything for a later run to
/// finish (`open`) or not (`ended N`: it finished, or nothing it changed is left on the nodes;
/// N: the journal's records, to weigh it against other copies), so that the check for an
/// unfinished run need not read every journal a cluster ever kept. A copy without it (made by
/// an older kcert) is judged from its journal.
const STATE_FILE: &str = "state";

fn state_path(run_id: &str) -> String {
    format!("{NODE_RUNS}/{run_id}/{STATE_FILE}")
}

fn state_text(ended: Option<usize>) -> Vec<u8> {
    match ended {
        Some(n) => format!("ended {n}\n").into_bytes(),
        None => b"open\n".to_vec(),
    }
}

/// A state file's `ended N`, else None (open, missing, or not a state).
fn state_ended(bytes: &[u8]) -> Option<usize> {
    std::str::from_utf8(bytes).ok()?.trim_end().strip_prefix("ended ")?.parse().ok()
}

/// Whether a journal leaves nothing for a later run to finish (`Done::unfinished`, read the
/// other way), with its number of records. Only a journal whose last
/// record ends a process (`RunFinished`, `RolledBack`) is read whole; any other is open.
pub fn ended(journal_bytes: &[u8]) -> Option<usize> {
    let last = journal_bytes.split(|b| *b == b'\n').rev().find(|l| !l.is_empty()).unwrap_or_default();
    if !matches!(serde_json::from_slice(last), Ok(Record::RunFinished { .. } | Record::RolledBack { .. })) {
        return None;
    }
    let records = journal::parse(journal_bytes).ok()?;
    (!journal::done(&records).unfinished()).then_some(records.len())
}

impl Runner<'_> {
    /// Brings every node that keeps a copy up to the run's plan, state and journal as they
    /// stand: written whole and atomically, or the journal's new records appended (a node's
    /// copy is always a start of the operator's journal, at most with a torn tail). Every node
    /// that could not be written is said.
    pub(super) async fn share(&self) -> std::result::Result<(), String> {
        if self.copies.is_empty() {
            return Ok(());
        }
        let (dir, run_id) = {
            let j = self.journal.lock().expect("journal lock");
            (j.dir.clone(), j.run_id.clone())
        };
        let journal = std::fs::read(dir.join("journal.jsonl")).map_err(|e| format!("cannot read the journal back to copy it to the nodes: {e}"))?;
        let (plan_path, journal_path) = run_paths(&run_id);
        // The run's state goes before its journal (files are renamed into place in order): a
        // copy is never called ended while the journal beside it may still say otherwise.
        let ended = ended(&journal);
        let state_due = *self.state_shared.lock().expect("state lock") != Some(ended);
        let mut files = Vec::new();
        if state_due {
            files.push(WriteFile { path: state_path(&run_id), bytes: state_text(ended), mode: 0o600, private: false });
        }
        let size = journal.len() as u64;
        files.push(WriteFile { path: journal_path.clone(), bytes: journal, mode: 0o600, private: true });
        // The plan does not change: copied once per process (a resume copies it again).
        let plan_copied = self.plan_copied.load(std::sync::atomic::Ordering::SeqCst);
        if !plan_copied {
            let plan = std::fs::read(dir.join(journal::PLAN_FILE)).map_err(|e| format!("cannot read the plan back to copy it to the nodes: {e}"))?;
            files.insert(0, WriteFile { path: plan_path, bytes: plan, mode: 0o600, private: true });
        }
        // The journal only grows: a node this process copied it to before, with nothing else
        // due, is sent only the records it lacks, appended while its copy is the size this
        // process left it (a torn append is ignored as a torn tail is). Otherwise, or when that
        // fails, the whole copy is written atomically.
        let journal = &files.last().expect("the journal").bytes;
        let appendable = plan_copied && !state_due;
        let results = join_all(self.copies.iter().map(|node| {
            let (files, journal_path) = (&files, &journal_path);
            async move {
                let t = self.t(node)?;
                let had = appendable.then(|| self.copied.lock().expect("copied lock").get(node).copied()).flatten().filter(|h| *h <= size);
                if let Some(had) = had {
                    if had == size {
                        return Ok(node);
                    }
                    if let Ok(Some(now)) = t.append_file(journal_path, had, &journal[had as usize..]).await
                        && now == size
                    {
                        return Ok(node);
                    }
                }
                t.write_files(files).await.map(|_| node).map_err(|e| format!("{node}: {e}"))
            }
        }))
        .await;
        let mut failed = Vec::new();
        for r in results {
            match r {
                Ok(node) => {
                    self.copied.lock().expect("copied lock").insert(node.clone(), size);
                }
                Err(e) => failed.push(e),
            }
        }
        if failed.is_empty() {
            self.plan_copied.store(true, std::sync::atomic::Ordering::SeqCst);
            *self.state_shared.lock().expect("state lock") = Some(ended);
            Ok(())
        } else { Err(format!("the run's copy could not be kept on every control-plane node: {}", failed.join("; "))) }
    }

    /// Records a step boundary and copies the journal to the nodes: the record is on the
    /// operator's disk first, the nodes' copies follow before the run goes on.
    pub(super) async fn boundary(&self, r: &Record) -> std::result::Result<(), String> {
        self.rec(r)?;
        self.share().await
    }

    /// As `boundary`, when the run is ending anyway: a node that cannot be written is said in
    /// the run log, not made the run's failure.
    pub(super) async fn boundary_best_effort(&self, r: &Record) {
        let _ = self.rec(r);
        if let Err(e) = self.share().await {
            self.emit(&super::Event::Note { message: e });
        }
    }
}

/// One node's copy of one run: its journal's records and the plan's bytes.
#[derive(Debug, Clone)]
pub struct NodeCopy {
    pub node: String,
    pub records: Vec<Record>,
    pub journal: Vec<u8>,
    pub plan: Option<Vec<u8>>,
}

/// The question that lists every run a node keeps and reads their journals (not their plans),
/// in one round trip: a survey on its own, or asked with another.
pub fn journals_survey() -> Survey {
    Survey { list_read: vec![NODE_RUNS.into()], skip: vec![journal::PLAN_FILE.into()], ..Survey::default() }
}

/// The question that lists every run a node keeps and reads their states, not their journals
/// (nor plans): a cluster's history costs the check for an unfinished run a listing, and only
/// a run not known to have ended has its journal read (`not_ended`).
pub fn states_survey() -> Survey {
    Survey { list_read: vec![NODE_RUNS.into()], skip: vec![journal::PLAN_FILE.into(), JOURNAL_FILE.into()], ..Survey::default() }
}

/// What a node's copies of these runs say of their state: Some(records) where the copy ended
/// (`ended`), None where it did not or does not say.
pub async fn states(t: &dyn Transport, run_ids: &[String]) -> Result<Vec<Option<usize>>, String> {
    let states = t.read_files(&run_ids.iter().map(|id| state_path(id)).collect::<Vec<_>>()).await.map_err(|e| e.message)?;
    Ok(states.iter().map(|s| if let FileData::Found(b) = s { state_ended(b) } else { None }).collect())
}

/// The runs a node keeps a copy of (their ids, oldest first).
pub async fn node_runs(t: &dyn Transport) -> Result<Vec<String>, String> {
    let listed = t.list_files(&[NODE_RUNS.to_string()]).await.map_err(|e| e.message)?;
    let mut ids: Vec<String> = listed
        .iter()
        .filter_map(|p| p.strip_prefix(&format!("{NODE_RUNS}/"))?.strip_suffix("/journal.jsonl").filter(|id| !id.contains('/')).map(str::to_string))
        .collect();
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// Why a node's copies of runs were not had.
#[derive(Debug)]
pub enum CopyError {
    /// The node could not be asked (it is down, or a read failed on it).
    Reach(String),
    /// A copy it keeps cannot be read (torn, garbage, too large): bad input on that node,
    /// which kcert does not repair; the message says what to do.
    Unreadable(String),
}

/// A node's copies of these runs, those it has (`with_plan`: their plans too, else the
/// journals alone), read in one round trip.
pub async fn read_copies(node: &str, t: &dyn Transport, run_ids: &[String], with_plan: bool) -> Result<Vec<(String, NodeCopy)>, CopyError> {
    if run_ids.is_empty() {
        return Ok(Vec::new());
    }
    let per = if with_plan { 2 } else { 1 };
    let wanted: Vec<String> = run_ids
        .iter()
        .flat_map(|id| {
            let (plan, journal) = run_paths(id);
            if with_plan { vec![journal, plan] } else { vec![journal] }
        })
        .collect();
    let mut data = t.read_files(&wanted).await.map_err(|e| CopyError::Reach(e.message))?;
    // A large run's journal (about 1 KB per file it changed) is past what a read takes at once.
    for (d, path) in data.iter_mut().zip(&wanted) {
        if let FileData::TooLarge(_) = d {
            *d = t.read_large(path, MAX_RUN_FILE).await.map_err(|e| CopyError::Reach(e.message))?;
        }
    }
    let mut out = Vec::new();
    for (id, chunk) in run_ids.iter().zip(data.chunks(per)) {
        let journal = match &chunk[0] {
            FileData::Found(b) => b.clone(),
            FileData::Missing => continue,
            FileData::TooLarge(n) => return Err(CopyError::Unreadable(format!("{}: {n} bytes, more than kcert reads of a run ({MAX_RUN_FILE})", run_paths(id).1))),
            other => return Err(CopyError::Unreadable(format!("{}: {other:?}", run_paths(id).1))),
        };
        let plan = match chunk.get(1) {
            Some(FileData::Found(b)) => Some(b.clone()),
            _ => None,
        };
        let records = journal::parse(&journal).map_err(|e| {
            CopyError::Unreadable(format!("{}: {e}; this copy of run {id} cannot be read, so kcert cannot tell whether the run left changes on the nodes; the other control-plane nodes keep copies of it too: once it is known to be over, move {NODE_RUNS}/{id} aside on this node", run_paths(id).1))
        })?;
        out.push((id.clone(), NodeCopy { node: node.to_string(), records, journal, plan }));
    }
    Ok(out)
}

/// Which copy of a journal to carry a run on from: the longest, when every other copy is a
/// start of it (a node's copy lags the operator's by at most a step, one node's another's
/// when it was unreachable for a while). Copies that fork (neither a start of the other) are
/// refused, naming them. `copies`: (where it is, its records).
pub fn longest_consistent<'a>(copies: &[(&'a str, &'a [Record])]) -> Result<(&'a str, &'a [Record]), String> {
    let Some(&(best_at, best)) = copies.iter().max_by_key(|(_, r)| r.len()) else {
        return Err("no copy of the run's journal anywhere".into());
    };
    let forks: Vec<&str> = copies.iter().filter(|(_, r)| r[..] != best[..r.len()]).map(|(at, _)| *at).collect();
    if !forks.is_empty() {
        return Err(format!("the copies of its journal disagree: {} and {} hold different records, neither a start of the other; kcert will not guess which is right", best_at, forks.join(", ")));
    }
    Ok((best_at, best))
}

/// How long each copy is, for saying which one was taken: `cp1: 42 records, ...`.
pub fn lengths(copies: &[(&str, &[Record])]) -> String {
    let by: BTreeMap<&str, usize> = copies.iter().map(|(at, r)| (*at, r.len())).collect();
    by.iter().map(|(at, n)| format!("{at}: {n} records")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::StageId;

    #[test]
    fn a_large_run_is_read_back_whole_from_its_node() {
        // Some 1 KB of journal per file a run changed: a rotation of a few hundred nodes writes
        // more than a read takes at once (MAX_FILE_BYTES), and must still be read back.
        use crate::reach::transport::{LocalTransport, MAX_FILE_BYTES};
        let root = tempfile::tempdir().unwrap();
        let (plan_path, journal_path) = run_paths("big");
        let host = |p: &str| root.path().join(p.trim_start_matches('/'));
        std::fs::create_dir_all(host(&journal_path).parent().unwrap()).unwrap();
        let line = format!("{}\n", serde_json::to_string(&Record::StageStarted { stage: StageId::Resign }).unwrap());
        let count = MAX_FILE_BYTES as usize / line.len() + 100;
        std::fs::write(host(&journal_path), line.repeat(count)).unwrap();
        let plan: Vec<u8> = (0..MAX_FILE_BYTES as usize + 5).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(host(&plan_path), &plan).unwrap();
        let t = LocalTransport::new("cp1", Some(root.path().to_path_buf()));
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let got = rt.block_on(read_copies("cp1", &t, &["big".to_string()], true)).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1.records.len(), count);
        assert_eq!(got[0].1.plan.as_deref(), Some(&plan[..]));
    }

    #[test]
    fn the_longest_copy_wins_when_the_others_are_its_start_and_a_fork_is_refused() {
        let rec = |s| Record::StageStarted { stage: s };
        let long = [rec(StageId::Preflight), rec(StageId::NewCa), rec(StageId::Trust)];
        let short = long[..2].to_vec();
        let fork = [rec(StageId::Preflight), rec(StageId::Resign)];
        let (at, got) = longest_consistent(&[("cp2", &short[..]), ("this machine", &long[..]), ("cp1", &short[..])]).unwrap();
        assert_eq!((at, got.len()), ("this machine", 3));
        let err = longest_consistent(&[("cp1", &long[..]), ("cp2", &fork[..])]).unwrap_err();
        assert!(err.contains("cp1") && err.contains("cp2") && err.contains("disagree"), "{err}");
        assert!(longest_consistent(&[]).is_err());
        assert_eq!(lengths(&[("cp1", &long[..]), ("cp2", &short[..])]), "cp1: 3 records, cp2: 2 records");
    }
}
