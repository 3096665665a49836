//! Owns: carrying out file changes safely on nodes: free-disk preflight, a backup with a
//! sha256 manifest on the node, atomic writes, restarts of the components that read the
//! files, health gates, restoring a node whose gate failed, and rollback of a whole run.
//! Must not: decide what changes (plans do) or print (events go to an observer).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::gate::{self, Check, CheckResult, NodeView};
use crate::inventory::ComponentOverride;
use crate::journal::{Journal, Record};
use crate::playbook::Playbook;
use crate::renew::{NodePlan, sha256};
use crate::transport::{FileData, Transport, WriteFile};

pub const BACKUP_ROOT: &str = "/var/lib/kcert/backups";

/// What observers (progress bars, logs) are told while a run goes on.
#[derive(Debug, Clone)]
pub enum Step {
    Node { node: String, what: String },
    NodeDone { node: String, ok: bool },
}

/// How one node's change went, for the summary table.
#[derive(Debug, Clone, Serialize)]
pub struct NodeOutcome {
    pub node: String,
    pub files: usize,
    pub restarted: Vec<String>,
    pub gate: String,
    pub status: String,
    /// Seconds spent in restarts and gates (waiting on the cluster), and in total.
    pub wait_seconds: f64,
    pub total_seconds: f64,
}

pub struct Context<'a> {
    pub playbook: &'a Playbook,
    pub overrides: &'a BTreeMap<String, ComponentOverride>,
    pub views: &'a [NodeView],
    pub checks: &'a [Check],
    pub patience: Duration,
    pub observer: &'a (dyn Fn(&Step) + Sync),
}

fn rec(journal: &Mutex<Journal>, r: &Record) -> Result<()> {
    journal.lock().expect("journal lock").record(r)
}

fn backup_path(run_id: &str, path: &str) -> String {
    format!("{BACKUP_ROOT}/{run_id}{path}")
}

/// Bytes needed free in every directory a node's change writes to (temp copies + backups).
pub async fn preflight(t: &dyn Transport, plan: &NodePlan) -> std::result::Result<(), String> {
    let mut need: BTreeMap<String, u64> = BTreeMap::new();
    for c in &plan.changes {
        let dir = c.path.rsplit_once('/').map(|(d, _)| if d.is_empty() { "/" } else { d }).unwrap_or("/").to_string();
        *need.entry(dir).or_default() += c.new.len() as u64;
        *need.entry(BACKUP_ROOT.to_string()).or_default() += c.old.len() as u64 + 200;
    }
    enough_space(t, &need).await
}

/// Every directory has room for the bytes to be written there, plus a margin.
pub async fn enough_space(t: &dyn Transport, need: &BTreeMap<String, u64>) -> std::result::Result<(), String> {
    for (dir, bytes) in need {
        // Room for the new copy plus a margin: a filesystem filled to the last page is no place to write.
        let want = bytes + 64 * 1024;
        let free = t.free_bytes(dir).await.map_err(|e| format!("{}: cannot measure free space in {dir}: {e}", t.node()))?;
        if free < want {
            return Err(format!("{}: {dir}: {free} bytes free, {want} needed; free some space, nothing was changed", t.node()));
        }
    }
    Ok(())
}

fn restart_script(pb: &Playbook, overrides: &BTreeMap<String, ComponentOverride>, component: &str) -> Option<String> {
    let cmd = overrides.get(component).and_then(|o| o.restart.clone()).or_else(|| pb.component(component).and_then(|c| c.restart.clone()))?;
    if cmd != "static-pod" {
        return Some(cmd);
    }
    let manifest = pb.component(component)?.manifest.clone()?;
    // kubelet stops a static pod when its manifest leaves the directory and starts it again
    // when it returns; crictl tells when each happened.
    Some(format!(
        r#"set -u
m={m}; park=/etc/kubernetes/kcert-parked-$(basename "$m"); name={n}
mv "$m" "$park" || exit 1
i=0; while [ $i -lt 120 ] && [ -n "$(crictl ps -q --name "^$name\$" 2>/dev/null)" ]; do sleep 0.5; i=$((i+1)); done
mv "$park" "$m" || exit 1
i=0; while [ $i -lt 240 ] && [ -z "$(crictl ps -q --name "^$name\$" 2>/dev/null)" ]; do sleep 0.5; i=$((i+1)); done
[ -n "$(crictl ps -q --name "^$name\$" 2>/dev/null)" ] || {{ echo "$name did not come back after its manifest returned" >&2; exit 1; }}
"#,
        m = crate::transport::script::quote(&manifest),
        n = crate::transport::script::quote(component)
    ))
}

async fn restart(t: &dyn Transport, ctx: &Context<'_>, component: &str) -> std::result::Result<(), String> {
    restart_component(t, ctx.playbook, ctx.overrides, component).await
}

/// Restarts one component the playbook's way, or the inventory's override.
pub async fn restart_component(t: &dyn Transport, pb: &Playbook, overrides: &BTreeMap<String, ComponentOverride>, component: &str) -> std::result::Result<(), String> {
    let Some(script) = restart_script(pb, overrides, component) else {
        return Err(format!("no way to restart {component} is known (set components.{component}.restart in the inventory)"));
    };
    let out = t.run(&script).await.map_err(|e| e.message)?;
    if !out.success() {
        return Err(format!("restarting {component} failed (exit {:?}): {}", out.status, out.stderr_text()));
    }
    Ok(())
}

/// The inventory's `health` command of a component, retried until it passes or time runs out.
pub async fn health_command(t: &dyn Transport, cmd: &str, patience: Duration) -> std::result::Result<(), String> {
    let deadline = Instant::now() + patience;
    loop {
        let out = t.run(cmd).await.map_err(|e| e.message)?;
        if out.success() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let said = [out.stderr_text(), out.stdout_text().trim().to_string()].into_iter().find(|t| !t.is_empty()).unwrap_or_default();
            return Err(format!("`{cmd}` kept failing for {patience:?} (exit {:?}){}", out.status, if said.is_empty() { String::new() } else { format!(": {said}") }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Restarts `components` then runs the gate: the health commands, and every live check that
/// starts or ends on this node. Returns the failed gate's description.
async fn restart_and_gate(t: &dyn Transport, ctx: &Context<'_>, node: &str, components: &[String], journal: &Mutex<Journal>) -> Result<std::result::Result<Vec<CheckResult>, String>> {
    for c in components {
        // An etcd member that leads hands its leadership off first (see etcd::hand_off).
        if ctx.playbook.component(c).and_then(|x| x.health.as_deref()) == Some("etcd-quorum") {
            let quorum = crate::plan::rotation::quorum_edges(ctx.playbook);
            if let Some(check) = ctx.checks.iter().find(|k| k.from == node && k.to == node && quorum.contains(&k.edge))
                && let Ok(Some(to)) = crate::etcd::hand_off(t, check, Duration::from_secs(15)).await
            {
                (ctx.observer)(&Step::Node { node: node.into(), what: format!("etcd leadership handed to {to}") });
            }
        }
        (ctx.observer)(&Step::Node { node: node.into(), what: format!("restarting {c}") });
        if let Err(e) = restart(t, ctx, c).await {
            return Ok(Err(format!("component {c}: {e}")));
        }
        rec(journal, &Record::Restarted { node: node.into(), component: c.clone(), at: crate::journal::At::none() })?;
    }
    (ctx.observer)(&Step::Node { node: node.into(), what: "health gate".into() });
    // Edges first: a failure then names the edge, not only the component.
    let mine: Vec<Check> = ctx.checks.iter().filter(|c| c.from == node || c.to == node).cloned().collect();
    let results = gate::run(ctx.views, &mine, ctx.patience).await;
    for r in &results {
        rec(journal, &Record::Gate { node: node.into(), check: format!("{} {} -> {}", r.edge, r.from, r.to), ok: r.ok, detail: r.detail.clone() })?;
    }
    if let Some(bad) = results.iter().find(|r| !r.ok) {
        let comps = if components.is_empty() { "without a restart".to_string() } else { format!("after restarting {}", components.join(", ")) };
        return Ok(Err(format!("{comps}: edge {} ({} -> {} at {}) failed: {}", bad.edge, bad.from, bad.to, bad.endpoint, bad.detail)));
    }
    for c in components {
        if let Some(cmd) = ctx.overrides.get(c).and_then(|o| o.health.clone())
            && let Err(e) = health_command(t, &cmd, ctx.patience).await
        {
            rec(journal, &Record::Gate { node: node.into(), check: format!("{c} health"), ok: false, detail: e.clone() })?;
            return Ok(Err(format!("after restarting {c}: its health command {e}")));
        }
    }
    Ok(Ok(results))
}

/// Backs up, writes, restarts and gates one node. A failed gate restores the node's files
/// from the backup, restarts again, and returns the failure.
pub async fn apply_node(t: &dyn Transport, plan: &NodePlan, ctx: &Context<'_>, journal: &Mutex<Journal>) -> Result<NodeOutcome> {
    let started = Instant::now();
    let node = plan.node.clone();
    let mut outcome = NodeOutcome { node: node.clone(), files: plan.changes.len(), restarted: Vec::new(), gate: "-".into(), status: "unchanged".into(), wait_seconds: 0.0, total_seconds: 0.0 };
    if plan.changes.is_empty() {
        return Ok(outcome);
    }
    let run_id = journal.lock().expect("journal lock").run_id.clone();
    let fail = |m: String| Error::node(node.clone(), m);

    (ctx.observer)(&Step::Node { node: node.clone(), what: "backing up".into() });
    let mut backups: Vec<WriteFile> = plan.changes.iter().map(|c| WriteFile { path: backup_path(&run_id, &c.path), bytes: c.old.clone(), mode: 0o600, private: true }).collect();
    let manifest: String = plan.changes.iter().map(|c| format!("{}  {}\n", c.old_sha256(), c.path)).collect();
    backups.push(WriteFile { path: format!("{BACKUP_ROOT}/{run_id}/manifest.sha256"), bytes: manifest.into_bytes(), mode: 0o600, private: true });
    let sums = t.write_files(&backups).await.map_err(|e| fail(format!("backup failed, nothing was changed: {e}")))?;
    for (c, sum) in plan.changes.iter().zip(&sums) {
        if *sum != c.old_sha256() {
            return Err(fail(format!("the backup of {} reads back with another sha256; nothing was changed", c.path)));
        }
        rec(journal, &Record::Backup { node: node.clone(), path: c.path.clone(), backup: backup_path(&run_id, &c.path), sha256: sum.clone(), at: crate::journal::At::none(), absent: false })?;
    }

    (ctx.observer)(&Step::Node { node: node.clone(), what: format!("writing {} files", plan.changes.len()) });
    let writes: Vec<WriteFile> = plan.changes.iter().map(|c| WriteFile { path: c.path.clone(), bytes: c.new.clone(), mode: 0o644, private: false }).collect();
    let sums = t.write_files(&writes).await.map_err(|e| fail(format!("writing failed, nothing was changed: {e}")))?;
    for (c, sum) in plan.changes.iter().zip(&sums) {
        rec(journal, &Record::Written { node: node.clone(), path: c.path.clone(), old_sha256: c.old_sha256(), new_sha256: sum.clone(), at: crate::journal::At::none() })?;
        if *sum != c.new_sha256() {
            let _ = restore(t, plan).await;
            return Err(fail(format!("{} reads back with another sha256 than written; the node's files were restored", c.path)));
        }
    }
    outcome.status = "written".into();
    if t.offline() {
        outcome.restarted = plan.restarts.iter().map(|r| format!("{r} (skipped: offline)")).collect();
        outcome.gate = "skipped (offline)".into();
        outcome.total_seconds = started.elapsed().as_secs_f64();
        return Ok(outcome);
    }

    let wait = Instant::now();
    let gate = restart_and_gate(t, ctx, &node, &plan.restarts, journal).await?;
    outcome.wait_seconds = wait.elapsed().as_secs_f64();
    match gate {
        Ok(results) => {
            outcome.restarted = plan.restarts.clone();
            outcome.gate = format!("{} checks ok", results.len());
            outcome.status = "renewed".into();
            outcome.total_seconds = started.elapsed().as_secs_f64();
            Ok(outcome)
        }
        Err(why) => {
            (ctx.observer)(&Step::Node { node: node.clone(), what: "gate failed: restoring".into() });
            let restored = restore(t, plan).await;
            let mut again = String::new();
            for c in &plan.restarts {
                if let Err(e) = restart(t, ctx, c).await {
                    again.push_str(&format!("; restarting {c} after the restore failed too: {e}"));
                }
            }
            match restored {
                Ok(()) => rec(journal, &Record::NodeRestored { node: node.clone() })?,
                Err(e) => again.push_str(&format!("; RESTORE FAILED: {e} (backup in {BACKUP_ROOT}/{run_id})")),
            }
            Err(fail(format!("health gate failed {why}; the node's files were restored from {BACKUP_ROOT}/{run_id} and its components restarted{again}; the run stopped")))
        }
    }
}

/// Puts the plan's old bytes back (they are also in the node's backup).
async fn restore(t: &dyn Transport, plan: &NodePlan) -> std::result::Result<(), String> {
    let writes: Vec<WriteFile> = plan.changes.iter().map(|c| WriteFile { path: c.path.clone(), bytes: c.old.clone(), mode: 0o644, private: false }).collect();
    let sums = t.write_files(&writes).await.map_err(|e| e.message)?;
    for (c, s) in plan.changes.iter().zip(sums) {
        if s != c.old_sha256() {
            return Err(format!("{} does not read back as its backup", c.path));
        }
    }
    Ok(())
}

/// Control-plane and etcd nodes one at a time, then workers in batches of `batch`.
pub fn batches(fleet: &Fleet, plans: &[NodePlan], batch: usize) -> Vec<Vec<usize>> {
    let mut cp = Vec::new();
    let mut workers = Vec::new();
    for (i, p) in plans.iter().enumerate() {
        let is_cp = fleet.targets.iter().find(|t| t.name == p.node).is_some_and(|t| t.is_control_plane());
        if is_cp { cp.push(vec![i]) } else { workers.push(i) }
    }
    cp.extend(workers.chunks(batch.max(1)).map(<[usize]>::to_vec));
    cp
}

/// Restores every file a run backed up, on every node, byte-identically (sha256 checked
/// against the journal), then restarts what the run restarted there.
pub async fn rollback(records: &[Record], fleet: &Fleet, observer: &(dyn Fn(&Step) + Sync)) -> Result<Vec<NodeOutcome>> {
    let mut per_node: BTreeMap<String, Vec<(String, String, String)>> = BTreeMap::new();
    let mut restarted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for r in records {
        match r {
            Record::Backup { node, path, backup, sha256, .. } => {
                if !order.contains(node) {
                    order.push(node.clone());
                }
                per_node.entry(node.clone()).or_default().push((path.clone(), backup.clone(), sha256.clone()));
            }
            Record::Restarted { node, component, .. } => {
                let v = restarted.entry(node.clone()).or_default();
                if !v.contains(component) {
                    v.push(component.clone());
                }
            }
            _ => {}
        }
    }
    let pb = fleet.playbook.clone().unwrap_or_else(|| crate::playbook::load("kubeadm").expect("embedded"));
    let mut outcomes = Vec::new();
    // Reverse order: the last node changed is the first restored.
    for node in order.iter().rev() {
        let started = Instant::now();
        let target = fleet.targets.iter().find(|t| &t.name == node).ok_or_else(|| Error::input(format!("node {node}"), "the run changed it but the inventory no longer lists it"))?;
        observer(&Step::Node { node: node.clone(), what: "restoring".into() });
        let t: Arc<dyn Transport> = crate::fleet::connect(target).await.map_err(|e| Error::node(node.clone(), e.message))?;
        let files = &per_node[node];
        let backups: Vec<String> = files.iter().map(|(_, b, _)| b.clone()).collect();
        let data = t.read_files(&backups).await.map_err(|e| Error::node(node.clone(), e.message))?;
        let mut writes = Vec::new();
        for ((path, backup, sum), d) in files.iter().zip(data) {
            let FileData::Found(bytes) = d else {
                return Err(Error::node(node.clone(), format!("the backup {backup} of {path} is gone; nothing was restored on this node")));
            };
            if sha256(&bytes) != *sum {
                return Err(Error::node(node.clone(), format!("the backup {backup} of {path} does not match the journal's sha256; nothing was restored on this node")));
            }
            writes.push(WriteFile { path: path.clone(), bytes, mode: 0o644, private: false });
        }
        let sums = t.write_files(&writes).await.map_err(|e| Error::node(node.clone(), format!("restoring failed: {e}")))?;
        for ((path, _, sum), got) in files.iter().zip(&sums) {
            if got != sum {
                return Err(Error::node(node.clone(), format!("{path} does not read back as its backup after restoring")));
            }
        }
        let mut done = Vec::new();
        let ctx = Context { playbook: &pb, overrides: &fleet.overrides, views: &[], checks: &[], patience: Duration::from_secs(60), observer };
        if !t.offline() {
            for c in restarted.get(node).cloned().unwrap_or_default() {
                restart(t.as_ref(), &ctx, &c).await.map_err(|e| Error::node(node.clone(), format!("files restored, but {e}")))?;
                done.push(c);
            }
        }
        outcomes.push(NodeOutcome {
            node: node.clone(),
            files: files.len(),
            restarted: done,
            gate: "-".into(),
            status: "restored".into(),
            wait_seconds: 0.0,
            total_seconds: started.elapsed().as_secs_f64(),
        });
        observer(&Step::NodeDone { node: node.clone(), ok: true });
    }
    Ok(outcomes)
}
