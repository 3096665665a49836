//! Owns: one node's part of a step on disk: each file read and checked against the plan's
//! old and new sha256, backed up on the node (0600, sha256 read back), written atomically or
//! removed, journaled; and the staging directories a removal may leave empty.
//! Must not: restart or gate (the step does), or write a byte the plan's recipe did not make.

use std::collections::BTreeSet;

use super::journal::{At, Record};
use super::{BACKUP_ROOT, Runner};
use crate::pki::sha256;
use crate::plan::StageId;
use crate::plan::schema::{FileOp, NodeOps};
use crate::reach::transport::{FileData, WriteFile};
use crate::text::short_sha;

/// Where a file's backup of a stage goes on its node.
pub fn backup_path(run_id: &str, stage: StageId, path: &str) -> String {
    format!("{BACKUP_ROOT}/{run_id}/{stage}{path}")
}

impl Runner<'_> {
    /// One node's writes in a step: each file must hold the plan's old bytes (then it is
    /// backed up and written) or already its new ones (a resumed step: left alone).
    pub(super) async fn write_node(&self, stage: StageId, bi: usize, o: &NodeOps) -> std::result::Result<usize, String> {
        let node = o.node.as_str();
        let t = self.t(node)?;
        let run_id = self.run_id();
        let paths: Vec<String> = o.files.iter().map(|f| f.path.clone()).collect();
        let data = t.read_files(&paths).await.map_err(|e| format!("{node}: {e}"))?;
        // (op, its bytes now, its bytes to be).
        type Todo<'o> = (&'o FileOp, Option<Vec<u8>>, Option<Vec<u8>>);
        let mut todo: Vec<Todo> = Vec::new();
        let mut unrecorded: Vec<&FileOp> = Vec::new();
        for (f, d) in o.files.iter().zip(data) {
            let cur = match d {
                FileData::Found(b) => Some(b),
                FileData::Missing => None,
                other => return Err(format!("{node}: {}: cannot read it ({other:?}); nothing was changed on {node} in this step", f.path)),
            };
            let cur_sha = cur.as_deref().map(sha256);
            if cur_sha == f.new_sha256 {
                unrecorded.push(f);
                continue;
            }
            if cur_sha != f.old_sha256 {
                return Err(format!(
                    "{node}: {} changed outside this run (sha256 {} where the plan expects {} before and {} after); nothing was changed on {node} in this step",
                    f.path,
                    short_sha(cur_sha.as_deref()),
                    short_sha(f.old_sha256.as_deref()),
                    short_sha(f.new_sha256.as_deref())
                ));
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
        self.note(node, format!("backing up {} files", todo.len()));
        let backups: Vec<WriteFile> = todo.iter().filter_map(|(f, cur, _)| cur.as_ref().map(|c| WriteFile { path: backup_path(&run_id, stage, &f.path), bytes: c.clone(), mode: 0o600, private: true })).collect();
        let sums = t.write_files(&backups).await.map_err(|e| format!("{node}: backing up failed, nothing was changed on {node} in this step: {e}"))?;
        let mut sums = sums.into_iter();
        let mut backed: Vec<Record> = Vec::new();
        for (f, cur, _) in &todo {
            let (backup, sha) = match cur {
                Some(_) => {
                    let got = sums.next().unwrap_or_default();
                    if Some(got.as_str()) != f.old_sha256.as_deref() {
                        self.rec_all(&backed)?;
                        return Err(format!("{node}: the backup of {} reads back with another sha256; nothing was changed on {node} in this step", f.path));
                    }
                    (backup_path(&run_id, stage, &f.path), got)
                }
                None => (String::new(), String::new()),
            };
            backed.push(Record::Backup { node: node.into(), path: f.path.clone(), backup, sha256: sha, at: At::step(stage, bi), absent: cur.is_none() });
        }
        // Every backup is on the journal's disk before the first file changes.
        self.rec_all(&backed)?;
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
        let written: Vec<Record> = todo
            .iter()
            .map(|(f, cur, _)| Record::Written { node: node.into(), path: f.path.clone(), old_sha256: cur.as_deref().map(sha256).unwrap_or_default(), new_sha256: f.new_sha256.clone().unwrap_or_default(), at: At::step(stage, bi) })
            .collect();
        self.rec_all(&written)?;
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
