//! Owns: one node's renewal by its own tool (k3s): the unit stopped, every file the tool will
//! make again backed up on the node (sha256 read back, journaled; what an earlier stage made,
//! as that stage journaled it), the tool run, the unit started, each file checked to be new
//! and journaled as written; after any failure past the stop, the unit started again so the
//! node is not left down.
//! Must not: make a certificate or key itself (the node's tool does), or gate (the step does).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::Runner;
use super::journal::{At, Done, Record};
use super::node::backup_path;
use crate::pki::{first_cert, k3s, sha256};
use crate::plan::StageId;
use crate::plan::schema::{Reissue, ReissuedFile, Served};
use crate::reach::probe::served_chain;
use crate::reach::transport::{FileData, Replace, Transport, WriteFile};
use crate::text::short_sha;

/// The plan's entry for `path` among the files `node`'s own tool makes again, in stage `stage`
/// (any stage: None).
pub(super) fn reissued<'p>(plan: &'p crate::plan::Plan, stage: Option<StageId>, node: &str, path: &str) -> Option<&'p ReissuedFile> {
    plan.stages
        .iter()
        .filter(|s| stage.is_none_or(|id| s.id == id))
        .flat_map(crate::plan::schema::StagePlan::batches)
        .flat_map(|b| &b.ops)
        .filter(|o| o.node == node)
        .flat_map(|o| o.reissue.iter().flat_map(|r| &r.files))
        .find(|f| f.path == path)
}

impl Runner<'_> {
    /// Renews `node` by its tool; returns how many files were made again (0: done before).
    pub(super) async fn reissue_node(&self, stage: StageId, bi: usize, node: &str, r: &Reissue, done: &Done) -> std::result::Result<usize, String> {
        if done.restarted.contains(&(stage, bi, node.to_string(), r.unit.clone())) {
            return Ok(0);
        }
        if self.offline() {
            return Err(format!("{node}: {} re-issues its certificates when it starts: files alone (--root) cannot be changed this way; nothing was changed", r.unit));
        }
        let t = self.t(node)?.clone();
        let r = &self.made_earlier(node, r)?;
        let paths: Vec<String> = r.files.iter().map(|f| f.path.clone()).collect();
        self.forget(node, &paths);
        self.note(node, format!("stopping {}", r.unit));
        shell(t.as_ref(), &r.stop).await.map_err(|e| format!("{node}: stopping {} (`{}`) failed: {e}; nothing was changed", r.unit, r.stop))?;
        match self.reissue_stopped(stage, bi, node, t.as_ref(), r).await {
            Ok(n) => Ok(n),
            Err(e) => {
                // Whatever failed, the node comes back: a server down is a quorum member down.
                self.note(node, format!("starting {} again after a failure", r.unit));
                match shell(t.as_ref(), &r.start).await {
                    Ok(()) => {
                        // What the unit made at that start is journaled, so a rollback can put the files back.
                        if let Err(more) = self.journal_made(stage, bi, node, t.as_ref(), r).await {
                            return Err(format!("{e} ({} was started again; {more})", r.unit));
                        }
                        Err(format!("{e} ({} was started again)", r.unit))
                    }
                    Err(again) => Err(format!("{e}; starting {} again failed too (`{}`): {again}", r.unit, r.start)),
                }
            }
        }
    }

    /// `r` with the bytes an earlier stage made filled in: each such file's sha256 as that
    /// stage's read-back journaled it (the last one, where a rollback and a resume redid it).
    fn made_earlier(&self, node: &str, r: &Reissue) -> std::result::Result<Reissue, String> {
        let mut r = r.clone();
        if r.files.iter().all(|f| f.made_in.is_none()) {
            return Ok(r);
        }
        let records = self.journal.lock().expect("journal lock").records().map_err(|e| format!("the journal cannot be read back: {e}"))?;
        for f in r.files.iter_mut() {
            let Some(stage) = f.made_in else { continue };
            let made = records.iter().rev().find_map(|rec| match rec {
                Record::Written { node: n, path, new_sha256, at, .. } if n == node && path == &f.path && at.stage == stage => Some(new_sha256.clone()),
                _ => None,
            });
            // A file that stage's start left as it was (one that may stay) is as planned there.
            let kept = || reissued(self.plan, Some(stage), node, &f.path).map(|g| g.old_sha256.clone());
            f.old_sha256 = made.or_else(kept).ok_or_else(|| format!("{node}: {}: {stage} journaled no bytes of it; nothing was changed", f.path))?;
        }
        Ok(r)
    }

    async fn reissue_stopped(&self, stage: StageId, bi: usize, node: &str, t: &dyn Transport, r: &Reissue) -> std::result::Result<usize, String> {
        let paths: Vec<String> = r.files.iter().map(|f| f.path.clone()).collect();
        // A run that stopped before this node was through has journaled the backups it made.
        let backed = self.backed_up(stage, bi, node)?;
        let now = t.read_files(&paths).await.map_err(|e| format!("{node}: {e}; nothing was changed"))?;
        let run_id = self.run_id();
        let mut todo = Vec::new();
        for (f, d) in r.files.iter().zip(now) {
            match d {
                FileData::Found(b) if sha256(&b) == f.old_sha256 => todo.push((f, b)),
                _ if backed.contains(f.path.as_str()) => {}
                FileData::Found(b) => {
                    return Err(format!(
                        "{node}: {} changed outside this run (sha256 {} where the plan expects {}); nothing was changed",
                        f.path,
                        short_sha(Some(&sha256(&b))),
                        short_sha(Some(&f.old_sha256))
                    ));
                }
                other => return Err(format!("{node}: {}: cannot read it ({other:?}) to back it up; nothing was changed", f.path)),
            }
        }
        if !todo.is_empty() {
            self.note(node, format!("backing up {} files", todo.len()));
            // Each file written back as it is, its old bytes copied to its backup first.
            let reps: Vec<Replace> = todo
                .iter()
                .map(|(f, b)| Replace {
                    file: WriteFile { path: f.path.clone(), bytes: b.clone(), mode: if f.private { 0o600 } else { 0o644 }, private: f.private },
                    remove: false,
                    expect: Some(f.old_sha256.clone()),
                    backup: Some(backup_path(&run_id, stage, &f.path)),
                })
                .collect();
            let got = t.replace_files(&reps, &[]).await.map_err(|e| format!("{node}: backing up failed: {e}"))?;
            if let Some((i, now)) = got.changed.first() {
                return Err(format!("{node}: {} changed outside this run (sha256 {}); nothing was changed", todo[*i].0.path, short_sha(now.as_deref())));
            }
            let mut backups = Vec::new();
            for ((f, _), sum) in todo.iter().zip(&got.backups) {
                if *sum != f.old_sha256 {
                    break;
                }
                backups.push(Record::Backup {
                    node: node.into(),
                    path: f.path.clone(),
                    backup: backup_path(&run_id, stage, &f.path),
                    sha256: sum.clone(),
                    at: At::step(stage, bi),
                    absent: false,
                });
            }
            self.rec_all(&backups)?;
            if let Some(why) = got.failure.or_else(|| (backups.len() < todo.len()).then(|| "a backup reads back with another sha256".to_string())) {
                return Err(format!("{node}: backing up failed: {why}"));
            }
        }
        // What the tool may create and is not there yet is journaled as created: a rollback removes it.
        let mut absent = Vec::new();
        for (p, d) in r.creates.iter().zip(t.read_files(&r.creates).await.map_err(|e| format!("{node}: {e}"))?) {
            if backed.contains(p.as_str()) {
                absent.push(p.clone());
            } else if matches!(d, FileData::Missing) {
                self.rec(&Record::Backup { node: node.into(), path: p.clone(), backup: String::new(), sha256: String::new(), at: At::step(stage, bi), absent: true })?;
                absent.push(p.clone());
            }
        }
        for c in &r.run {
            self.note(node, format!("running {c}"));
            shell(t, c).await.map_err(|e| format!("{node}: `{c}` failed: {e}"))?;
        }
        self.note(node, format!("starting {}", r.unit));
        shell(t, &r.start).await.map_err(|e| format!("{node}: starting {} (`{}`) failed: {e}", r.unit, r.start))?;
        // Each file must have been made again: missing, or the old bytes, is a renewal that did
        // not happen. A unit may report ready before its last file is written: asked again
        // until the patience runs out.
        let deadline = Instant::now() + self.patience;
        let (written, now) = loop {
            let after = t.read_files(&paths).await.map_err(|e| format!("{node}: reading back what {} made: {e}", r.unit))?;
            let mut written = Vec::new();
            let mut missed = Vec::new();
            let mut now = BTreeMap::new();
            for (f, d) in r.files.iter().zip(after) {
                match d {
                    FileData::Found(b) if sha256(&b) != f.old_sha256 => {
                        written.push(Record::Written {
                            node: node.into(),
                            path: f.path.clone(),
                            old_sha256: f.old_sha256.clone(),
                            new_sha256: sha256(&b),
                            at: At::step(stage, bi),
                        });
                        now.insert(f.path.as_str(), b);
                    }
                    FileData::Found(_) => missed.push(format!("{} still holds its old bytes", f.path)),
                    _ => missed.push(format!("{} is missing", f.path)),
                }
            }
            if missed.is_empty() {
                break (written, now);
            }
            if Instant::now() >= deadline {
                self.rec_all(&written)?;
                return Err(format!("{node}: {:?} after {} started: {}; its backups are under {}", self.patience, r.unit, missed.join(", "), backup_path(&run_id, stage, "")));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        self.rec_all(&written)?;
        let left: Vec<Record> = absent
            .iter()
            .zip(t.read_files(&absent).await.map_err(|e| format!("{node}: {e}"))?)
            .filter_map(|(p, d)| match d {
                FileData::Found(b) => Some(Record::Written { node: node.into(), path: p.clone(), old_sha256: String::new(), new_sha256: sha256(&b), at: At::step(stage, bi) }),
                _ => None,
            })
            .collect();
        self.rec_all(&left)?;
        for s in &r.serves {
            self.serves_its_file(node, t, s, &now, deadline).await?;
        }
        self.rec(&Record::Restarted { node: node.into(), component: r.unit.clone(), at: At::step(stage, bi), undo: false })?;
        self.count(node, |n| {
            n.files += written.len();
            n.restarted.push(r.unit.clone());
        });
        Ok(written.len())
    }
}

impl Runner<'_> {
    /// The paths of `node` the journal has a backup of in this step (a file's copy, or a path
    /// recorded as absent): what a run that stopped half way already did there.
    fn backed_up(&self, stage: StageId, bi: usize, node: &str) -> std::result::Result<BTreeSet<String>, String> {
        let records = self.journal.lock().expect("journal lock").records().map_err(|e| e.to_string())?;
        Ok(records
            .into_iter()
            .filter_map(|rec| match rec {
                Record::Backup { node: n, path, at, .. } if n == node && at.stage == stage && at.step == bi => Some(path),
                _ => None,
            })
            .collect())
    }

    /// Journals as written each backed-up file of the node that no longer holds its old bytes.
    async fn journal_made(&self, stage: StageId, bi: usize, node: &str, t: &dyn Transport, r: &Reissue) -> std::result::Result<(), String> {
        let backed = self.backed_up(stage, bi, node)?;
        let files: Vec<_> = r.files.iter().filter(|f| backed.contains(f.path.as_str())).collect();
        let paths: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
        let now = t.read_files(&paths).await.map_err(|e| format!("{node}: reading back what {} made: {e}", r.unit))?;
        let made: Vec<Record> = files
            .iter()
            .zip(now)
            .filter_map(|(f, d)| match d {
                FileData::Found(b) if sha256(&b) != f.old_sha256 => {
                    Some(Record::Written { node: node.into(), path: f.path.clone(), old_sha256: f.old_sha256.clone(), new_sha256: sha256(&b), at: At::step(stage, bi) })
                }
                _ => None,
            })
            .collect();
        self.rec_all(&made)
    }

    /// Waits (until `deadline`) for a port to serve the certificate its file holds now.
    async fn serves_its_file(&self, node: &str, t: &dyn Transport, s: &Served, files: &BTreeMap<&str, Vec<u8>>, deadline: Instant) -> std::result::Result<(), String> {
        let Some(bytes) = files.get(s.path.as_str()) else { return Ok(()) };
        let pem = match k3s::tls_secret(bytes) {
            Some(p) => p.map_err(|e| format!("{node}: {}: {e}", s.path))?,
            None => bytes.clone(),
        };
        let want = first_cert(&pem).map_err(|e| format!("{node}: {}: {e}", s.path))?;
        self.note(node, format!("waiting for {}:{} to serve {}", s.host, s.port, s.path));
        loop {
            let served = served_chain(t, &s.host, s.port, Duration::from_secs(5)).await;
            let why = match served {
                Ok(chain) if chain.first().is_some_and(|c| c.der == want.der) => return Ok(()),
                Ok(chain) => format!("it serves serial {} where {} holds serial {}", chain.first().map_or("none", |c| c.serial.as_str()), s.path, want.serial),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "{node}: {}:{} does not serve the certificate {} holds after the start ({why}): a stale listener (k3s issues 3144, 8762)",
                    s.host, s.port, s.path
                ));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Runs a command on the node; its stderr (or stdout) when it fails.
pub(super) async fn shell(t: &dyn Transport, cmd: &str) -> std::result::Result<(), String> {
    let out = t.run(cmd).await.map_err(|e| e.message)?;
    if out.success() {
        return Ok(());
    }
    let said = [out.stderr_text(), out.stdout_text().trim().to_string()].into_iter().find(|s| !s.is_empty()).unwrap_or_default();
    let code = out.status.map_or_else(|| "killed by a signal".to_string(), |c| format!("exit {c}"));
    Err(format!("{code}{}", if said.is_empty() { String::new() } else { format!(": {said}") }))
}
