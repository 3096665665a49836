//! Owns: what the runner checks before a stage changes anything: for S0, room for every
//! backup and new file, every node's clock, etcd's quorum; for later stages, that what
//! earlier stages wrote is still there.
//! Must not: change a node.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::future::join_all;

use super::{BACKUP_ROOT, Runner, gate};
use crate::pki::sha256;
use crate::plan::gates::Check;
use crate::reach::clock::{IDENTITY_SCRIPT, MAX_SKEW, clock_skew};
use crate::reach::transport::{FileData, Prefetched, Survey, Transport, script};
use crate::text::short_sha;

/// Every directory has room for the bytes to be written there, plus a margin (the
/// directories measured in one round trip; the first short one is said).
pub async fn enough_space(t: &dyn Transport, need: &BTreeMap<String, u64>) -> std::result::Result<(), String> {
    let dirs: Vec<String> = need.keys().cloned().collect();
    let measured = t.free_bytes_all(&dirs).await.map_err(|e| format!("{}: cannot measure free space in {}: {e}", t.node(), dirs.join(", ")))?;
    for ((dir, bytes), free) in need.iter().zip(measured) {
        // Room for the new copy plus a margin: a filesystem filled to the last page is no place to write.
        let want = bytes + 64 * 1024;
        if free < want {
            return Err(format!("{}: {dir}: {free} bytes free, {want} needed; free some space, nothing was changed", t.node()));
        }
    }
    Ok(())
}

impl Runner<'_> {
    /// S0: room for every backup and new file, each of them writable, clocks, etcd quorum.
    /// Nothing is changed.
    pub(super) async fn preflight(&self, resumed: bool) -> std::result::Result<(), String> {
        // Each file takes whole blocks (tmpfs and most filesystems give 4 KiB) and an entry.
        let blocks = |bytes: u64| bytes.div_ceil(4096) * 4096 + 4096;
        let mut need: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
        let mut written: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for (_, _, node, f) in self.plan.file_ops() {
            let dir = f.path.rsplit_once('/').map(|(d, _)| if d.is_empty() { "/" } else { d }).unwrap_or("/").to_string();
            let n = need.entry(node).or_default();
            *n.entry(dir).or_default() += blocks(f.bytes);
            *n.entry(BACKUP_ROOT.to_string()).or_default() += blocks(f.old_bytes);
            let w = written.entry(node).or_default();
            w.insert(f.path.clone());
            w.insert(BACKUP_ROOT.to_string());
        }
        // Files a node's own tool makes again: backed up, written back, then made anew in place.
        for b in self.plan.batches() {
            for o in &b.ops {
                for f in o.reissue.iter().flat_map(|r| &r.files) {
                    let dir = f.path.rsplit_once('/').map(|(d, _)| if d.is_empty() { "/" } else { d }).unwrap_or("/").to_string();
                    let n = need.entry(o.node.as_str()).or_default();
                    *n.entry(dir).or_default() += blocks(f.bytes);
                    *n.entry(BACKUP_ROOT.to_string()).or_default() += blocks(f.bytes);
                    let w = written.entry(o.node.as_str()).or_default();
                    w.insert(f.path.clone());
                    w.insert(BACKUP_ROOT.to_string());
                }
            }
        }
        let (written, need) = (&written, &need);
        let online = !self.offline();
        // Every node is asked its clock (online); a node with files to write, its free space
        // and whether each can be written: all in one round trip per node (a survey running
        // the three scripts), none of which changes anything.
        let mut nodes: BTreeSet<&str> = need.keys().copied().collect();
        if online {
            nodes.extend(self.nodes.names());
        }
        let asked = join_all(nodes.into_iter().map(|node| async move {
            let t = match self.t(node) {
                Ok(t) => t,
                Err(e) => return (node, Err(e), None),
            };
            let paths: Vec<String> = written.get(node).map(|w| w.iter().cloned().collect()).unwrap_or_default();
            let dirs: Vec<String> = need.get(node).map(|n| n.keys().cloned().collect()).unwrap_or_default();
            let mut req = Survey::default();
            if !dirs.is_empty() {
                self.note(node, "preflight: free space, and every file and directory written can be");
                req.run.extend([script::free_space_all(&dirs), script::unwritable(&paths)]);
            }
            if online {
                req.run.push(IDENTITY_SCRIPT.to_string());
            }
            // A survey the node cannot answer (no GNU find) leaves each question to be asked on
            // its own; a node that cannot be reached is not asked again (a cut link would cost
            // its timeout twice), and is said once.
            let snap = match t.survey(&req).await {
                Ok(snap) => snap,
                Err(e) => return (node, Err(format!("{node}: cannot ask the preflight's questions: {e}")), None),
            };
            let t = Prefetched::new(t.as_ref(), snap);
            let files = async {
                let Some(need) = need.get(node) else { return Ok(()) };
                let (space, answers) = futures::join!(enough_space(&t, need), t.unwritable(&paths));
                space?;
                let answers = answers.map_err(|e| format!("{node}: {e}"))?;
                let bad: Vec<String> = paths.iter().zip(answers).filter_map(|(p, a)| a.map(|why| format!("{node}: {p}: {why}"))).collect();
                if bad.is_empty() { Ok(()) } else { Err(format!("{}; nothing was changed", bad.join("; "))) }
            };
            // The clock, read last in the survey, is taken against the survey's end.
            let skew = async { if online { Some(clock_skew(&t).await) } else { None } };
            let (files, skew) = futures::join!(files, skew);
            (node, files, skew)
        }));
        let quorum = crate::playbook::quorum_edges(self.playbook);
        let mut seen = BTreeSet::new();
        let checks: Vec<Check> = if online { self.plan.batches().flat_map(|b| &b.gates).filter(|c| quorum.contains(&c.edge) && seen.insert(c.label())).cloned().collect() } else { Vec::new() };
        let (asked, quorum) = futures::join!(asked, gate::run(&self.nodes, &checks, Duration::from_secs(10)));
        let mut problems = Vec::new();
        let mut skews = Vec::new();
        for (node, files, skew) in asked {
            problems.extend(files.err());
            skews.extend(skew.map(|s| (node, s)));
        }
        for (node, s) in skews {
            match s {
                Ok(s) if s.abs() > MAX_SKEW.as_secs_f64() => {
                    problems.push(format!("{node}: its clock is {s:+.0}s off the operator's (more than {}s): new certificates would look not yet valid there", MAX_SKEW.as_secs()))
                }
                Ok(_) => {}
                Err(e) => problems.push(format!("{node}: cannot read its clock: {e}")),
            }
        }
        for r in quorum {
            if !r.ok {
                problems.push(format!("etcd quorum: {} ({} -> {} at {}): {}", r.edge, r.from, r.to, r.endpoint, r.detail));
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
    pub(super) async fn still_as_planned(&self, si: usize) -> std::result::Result<(), String> {
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
                    bad.push(format!("{node}: {path} is not what this run wrote there (sha256 {} where it wrote {})", short_sha(got.as_deref()), short_sha(*sha)));
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
}
