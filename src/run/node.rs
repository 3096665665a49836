//! Owns: one node's part of a step on disk: each file checked against the plan's old and new
//! sha256 (its bytes read once per run, then known from what the run wrote), backed up on the
//! node (0600, sha256 read back) and written atomically or removed in one round trip,
//! journaled; and the staging directories a removal may leave empty.
//! Must not: restart or gate (the step does), or write a byte the plan's recipe did not make.

use std::collections::BTreeSet;

use super::journal::{At, Record};
use super::{BACKUP_ROOT, Runner};
use crate::pki::sha256;
use crate::plan::StageId;
use crate::plan::schema::{FileOp, NodeOps};
use crate::reach::transport::{FileData, Replace, WriteFile};
use crate::text::short_sha;

/// Where a file's backup of a stage goes on its node.
pub fn backup_path(run_id: &str, stage: StageId, path: &str) -> String {
    format!("{BACKUP_ROOT}/{run_id}/{stage}{path}")
}

impl Runner<'_> {
    /// What the files hold, from what this process last read or wrote there, the others read
    /// in one round trip.
    async fn held(&self, node: &str, paths: &[String]) -> std::result::Result<Vec<FileData>, String> {
        let unseen: Vec<String> = {
            let seen = self.seen.lock().expect("seen lock");
            paths.iter().filter(|p| !seen.contains_key(&(node.to_string(), (*p).clone()))).cloned().collect()
        };
        let read = self.t(node)?.read_files(&unseen).await.map_err(|e| format!("{node}: {e}"))?;
        let mut seen = self.seen.lock().expect("seen lock");
        for (p, d) in unseen.iter().zip(read) {
            match d {
                FileData::Found(b) => seen.insert((node.to_string(), p.clone()), Some(b)),
                FileData::Missing => seen.insert((node.to_string(), p.clone()), None),
                other => return Err(format!("{node}: {p}: cannot read it ({other:?}); nothing was changed on {node} in this step")),
            };
        }
        Ok(paths.iter().map(|p| seen[&(node.to_string(), p.clone())].clone().map_or(FileData::Missing, FileData::Found)).collect())
    }

    /// Forgets what the files held (they may have changed behind this process's back).
    pub(super) fn forget(&self, node: &str, paths: &[String]) {
        let mut seen = self.seen.lock().expect("seen lock");
        for p in paths {
            seen.remove(&(node.to_string(), p.clone()));
        }
    }

    /// One node's writes in a step: each file must hold the plan's old bytes (then it is
    /// backed up and written) or already its new ones (a resumed step: left alone). The
    /// node checks, backs up and writes in one round trip (`replace_files`); the backups it
    /// made are journaled before the writes are.
    pub(super) async fn write_node(&self, stage: StageId, bi: usize, o: &NodeOps) -> std::result::Result<usize, String> {
        let node = o.node.as_str();
        let t = self.t(node)?;
        let run_id = self.run_id();
        let paths: Vec<String> = o.files.iter().map(|f| f.path.clone()).collect();
        let data = self.held(node, &paths).await?;
        // (op, its bytes now, its bytes to be).
        type Todo<'o> = (&'o FileOp, Option<Vec<u8>>, Option<Vec<u8>>);
        let mut todo: Vec<Todo> = Vec::new();
        let mut unrecorded: Vec<&FileOp> = Vec::new();
        for (f, d) in o.files.iter().zip(data) {
            let cur = match d {
                FileData::Found(b) => Some(b),
                _ => None,
            };
            let cur_sha = cur.as_deref().map(sha256);
            if cur_sha == f.new_sha256 {
                unrecorded.push(f);
                continue;
            }
            if cur_sha != f.old_sha256 {
                self.forget(node, &paths);
                return Err(changed_outside(node, f, cur_sha.as_deref()));
            }
            let new = f.recipe.apply(cur.as_deref(), &|ca| self.keys.get(ca).cloned()).map_err(|e| format!("{node}: {}: {e}", f.path))?;
            if new.as_deref().map(sha256) != f.new_sha256 {
                return Err(format!("{node}: {}: the new content does not come out as the plan says (sha256 {}); nothing was changed on {node} in this step", f.path, short_sha(new.as_deref().map(sha256).as_deref())));
            }
            todo.push((f, cur, new));
        }
        self.recover_backups(stage, bi, node, &unrecorded).await?;
        if todo.is_empty() {
            return Ok(0);
        }
        self.note(node, format!("backing up and writing {} files", todo.len()));
        let reps: Vec<Replace> = todo
            .iter()
            .map(|(f, cur, new)| Replace {
                file: WriteFile { path: f.path.clone(), bytes: new.clone().unwrap_or_default(), mode: f.mode, private: f.private },
                remove: new.is_none(),
                expect: f.old_sha256.clone(),
                backup: cur.as_ref().map(|_| backup_path(&run_id, stage, &f.path)),
            })
            .collect();
        let removes: Vec<String> = reps.iter().filter(|r| r.remove).map(|r| r.file.path.clone()).collect();
        let done = match t.replace_files(&reps, &self.staging_dirs(&removes)).await {
            Ok(d) => d,
            Err(e) => {
                // The connection failed with the script's outcome unknown: what it backed up,
                // if it got that far, is journaled now if the node can still be read (else a
                // later resume or rollback finds it at its deterministic path).
                self.forget(node, &paths);
                let created: Vec<&FileOp> = todo.iter().filter(|(_, cur, _)| cur.is_none()).map(|(f, _, _)| *f).collect();
                let _ = self.journal_found_backups(stage, bi, node, &todo.iter().map(|(f, _, _)| *f).collect::<Vec<_>>(), &created).await;
                return Err(format!("{node}: writing failed: {e}"));
            }
        };
        if let Some((i, now)) = done.changed.first() {
            // Nothing was changed, not even a backup taken.
            self.forget(node, &paths);
            return Err(changed_outside(node, todo[*i].0, now.as_deref()));
        }
        // Every backup made is journaled before the writes are (even when a write then failed,
        // so the stage's rollback restores whatever was renamed into place).
        let mut sums = done.backups.iter();
        let mut backed: Vec<Record> = Vec::new();
        for (f, cur, _) in &todo {
            let (backup, sha) = match cur {
                Some(_) => match sums.next() {
                    Some(got) if Some(got.as_str()) == f.old_sha256.as_deref() => (backup_path(&run_id, stage, &f.path), got.clone()),
                    _ => break,
                },
                None => (String::new(), String::new()),
            };
            backed.push(Record::Backup { node: node.into(), path: f.path.clone(), backup, sha256: sha, at: At::step(stage, bi), absent: cur.is_none() });
        }
        self.rec_all(&backed)?;
        if let Some(why) = done.failure {
            self.forget(node, &paths);
            let what = if backed.len() < todo.len() { "backing up" } else { "writing" };
            return Err(format!("{node}: {what} failed, nothing was changed on {node} in this step: {why}"));
        }
        for ((f, _, _), sum) in todo.iter().filter(|(_, _, n)| n.is_some()).zip(&done.written) {
            if Some(sum.as_str()) != f.new_sha256.as_deref() {
                self.forget(node, &paths);
                return Err(format!("{node}: {} reads back with another sha256 than written", f.path));
            }
        }
        let written: Vec<Record> = todo
            .iter()
            .map(|(f, cur, _)| Record::Written { node: node.into(), path: f.path.clone(), old_sha256: cur.as_deref().map(sha256).unwrap_or_default(), new_sha256: f.new_sha256.clone().unwrap_or_default(), at: At::step(stage, bi) })
            .collect();
        self.rec_all(&written)?;
        {
            let mut seen = self.seen.lock().expect("seen lock");
            for (f, _, new) in &todo {
                seen.insert((node.to_string(), f.path.clone()), new.clone());
            }
        }
        self.count(node, |n| n.files += todo.len());
        Ok(todo.len())
    }

    /// Files that already hold the plan's new bytes (written by a kcert killed before its
    /// journal said so, or whose records only the operator's lost machine had): their backups
    /// went to the node before them, so each is journaled again from the backup found there
    /// (or as created, when the plan made it), and a rollback still restores every byte.
    async fn recover_backups(&self, stage: StageId, bi: usize, node: &str, files: &[&FileOp]) -> std::result::Result<(), String> {
        if files.is_empty() {
            return Ok(());
        }
        let records = self.journal.lock().expect("journal lock").records().map_err(|e| e.to_string())?;
        let known: BTreeSet<&str> = records
            .iter()
            .filter_map(|r| match r {
                Record::Backup { node: n, path, at, .. } if n == node && at.stage == stage => Some(path.as_str()),
                _ => None,
            })
            .collect();
        let missing: Vec<&&FileOp> = files.iter().filter(|f| !known.contains(f.path.as_str())).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let t = self.t(node)?;
        let run_id = self.run_id();
        let backups: Vec<String> = missing.iter().map(|f| backup_path(&run_id, stage, &f.path)).collect();
        let data = t.read_files(&backups).await.map_err(|e| format!("{node}: {e}"))?;
        for ((f, backup), d) in missing.iter().zip(backups).zip(data) {
            let (sha, absent) = match (&f.old_sha256, d) {
                (None, _) => (String::new(), true),
                (Some(old), FileData::Found(b)) if sha256(&b) == *old => (old.clone(), false),
                (Some(_), _) => {
                    return Err(format!("{node}: {} already holds the plan's new bytes, but no journal records its change and its backup {backup} is not there: it could not be rolled back; look at it before going on", f.path));
                }
            };
            self.note(node, format!("{}: written before the journal said so; its backup {} is journaled again", f.path, if absent { "(none: the plan created it)" } else { backup.as_str() }));
            self.rec(&Record::Backup { node: node.into(), path: f.path.clone(), backup: if absent { String::new() } else { backup }, sha256: sha, at: At::step(stage, bi), absent })?;
        }
        Ok(())
    }

    /// Journals, best effort, the backups of these files found on the node with the plan's
    /// old bytes, and the files the plan creates that are there (as created): after a round
    /// trip whose outcome is unknown.
    async fn journal_found_backups(&self, stage: StageId, bi: usize, node: &str, files: &[&FileOp], created: &[&FileOp]) -> std::result::Result<(), String> {
        let t = self.t(node)?;
        let run_id = self.run_id();
        let backups: Vec<String> = files.iter().map(|f| backup_path(&run_id, stage, &f.path)).collect();
        let made: Vec<String> = created.iter().map(|f| f.path.clone()).collect();
        let (held, there) = (t.read_files(&backups).await.map_err(|e| e.message)?, t.exists(&made).await.map_err(|e| e.message)?);
        let mut found: Vec<Record> = Vec::new();
        for ((f, b), d) in files.iter().zip(backups).zip(held) {
            if matches!(&d, FileData::Found(bytes) if f.old_sha256.is_some() && Some(sha256(bytes)) == f.old_sha256) {
                found.push(Record::Backup { node: node.into(), path: f.path.clone(), backup: b, sha256: f.old_sha256.clone().unwrap_or_default(), at: At::step(stage, bi), absent: false });
            }
        }
        for (f, yes) in created.iter().zip(there) {
            if yes {
                found.push(Record::Backup { node: node.into(), path: f.path.clone(), backup: String::new(), sha256: String::new(), at: At::step(stage, bi), absent: true });
            }
        }
        self.rec_all(&found)
    }

    /// The staging directories that removing these files may leave empty, deepest first.
    pub(super) fn staging_dirs(&self, removed: &[String]) -> Vec<String> {
        let Some(rot) = &self.playbook.rotation else { return Vec::new() };
        let mut dirs = BTreeSet::new();
        let marker = format!("/{}/", rot.staging);
        for p in removed {
            // The staging directory sits under pki_dir, or beside a CA kept elsewhere.
            let Some(at) = p.find(&marker) else { continue };
            let root = &p[..at + marker.len() - 1];
            let mut d = p.as_str();
            while let Some((parent, _)) = d.rsplit_once('/') {
                if !parent.starts_with(root) {
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
}

/// A file that holds neither what the plan expects before nor after it.
fn changed_outside(node: &str, f: &FileOp, now: Option<&str>) -> String {
    format!(
        "{node}: {} changed outside this run (sha256 {} where the plan expects {} before and {} after); nothing was changed on {node} in this step",
        f.path,
        short_sha(now),
        short_sha(f.old_sha256.as_deref()),
        short_sha(f.new_sha256.as_deref())
    )
}
