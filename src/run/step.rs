//! Owns: carrying out one step: a batch (every node's writes, then its restarts with etcd's
//! leadership handed off first, then the gate) or an API step.
//! Must not: decide what a step holds (the plan does), or roll anything back (`undo` does).

use std::time::{Duration, Instant};

use futures::future::join_all;
use tokio::sync::Semaphore;

use super::journal::{At, Done, Record};
use super::restart::{health_command, restart_component};
use super::{Event, Runner, StepStats, gate, sum_or_errors};
use crate::plan::StageId;
use crate::plan::schema::{ApiCall, Batch};
use crate::playbook::quorum_edges;
use crate::reach::transport::Transport;

impl Runner<'_> {
    pub(super) async fn api(&self, stage: StageId, bi: usize, a: &ApiCall) -> (StepStats, std::result::Result<(), String>) {
        let w = Instant::now();
        let result = self.api_call(stage, bi, a).await;
        let wait = if a.skipped.is_some() { 0.0 } else { w.elapsed().as_secs_f64() };
        (StepStats { wait, ..Default::default() }, result)
    }

    async fn api_call(&self, stage: StageId, bi: usize, a: &ApiCall) -> std::result::Result<(), String> {
        if let Some(reason) = &a.skipped {
            self.rec(&Record::Skipped { stage, step: bi, reason: reason.clone() })?;
            self.emit(&Event::Note { message: format!("{stage}: skipped: {} ({reason})", a.name) });
            return Ok(());
        }
        let t = self.t(&a.node)?;
        self.note(&a.node, a.name.clone());
        let out = t.run(&a.script).await.map_err(|e| format!("{}: {e}", a.node))?;
        let ok = out.success();
        let detail = if ok { out.stdout_text().trim().to_string() } else { out.stderr_text() };
        self.rec(&Record::Api { stage, step: bi, node: a.node.clone(), name: a.name.clone(), ok, detail: detail.clone() })?;
        if !ok {
            return Err(format!("{} failed on {} (exit {:?}): {detail}", a.name, a.node, out.status));
        }
        Ok(())
    }

    /// One batch: every node's writes, then its restarts, then the gate.
    pub(super) async fn batch(&self, stage: StageId, bi: usize, b: &Batch, done: &Done) -> (StepStats, std::result::Result<(), String>) {
        let mut stats = StepStats::default();
        let result = self.batch_steps(stage, bi, b, done, &mut stats).await;
        (stats, result)
    }

    async fn batch_steps(&self, stage: StageId, bi: usize, b: &Batch, done: &Done, stats: &mut StepStats) -> std::result::Result<(), String> {
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
        let w = Instant::now();
        // Nodes whose own tool re-issues their files: each stopped, renewed and started on its own.
        let reissued = join_all(b.ops.iter().filter_map(|o| o.reissue.as_ref().map(|r| (o, r))).map(|(o, r)| {
            let permits = &permits;
            async move {
                let _p = permits.acquire().await.expect("never closed");
                self.reissue_node(stage, bi, &o.node, r, done).await
            }
        }))
        .await;
        let reissued_nodes = b.ops.iter().filter(|o| o.reissue.is_some()).count();
        stats.files += sum_or_errors(reissued)?;
        if self.offline() {
            return Ok(());
        }
        let restarts = join_all(b.ops.iter().filter(|o| !o.restarts.is_empty()).map(|o| {
            let permits = &permits;
            async move {
                let _p = permits.acquire().await.expect("never closed");
                let t = self.t(&o.node)?;
                let mut n = 0;
                for c in &o.restarts {
                    if done.restarted.contains(&(stage, bi, o.node.clone(), c.clone())) {
                        continue;
                    }
                    self.restart(&o.node, t.as_ref(), c, b, "").await?;
                    self.rec(&Record::Restarted { node: o.node.clone(), component: c.clone(), at: At::step(stage, bi), undo: false })?;
                    self.count(&o.node, |n| n.restarted.push(c.clone()));
                    n += 1;
                }
                Ok::<usize, String>(n)
            }
        }))
        .await;
        let restarted = sum_or_errors(restarts);
        let gated = match restarted {
            Ok(n) => {
                stats.restarts = n + reissued_nodes;
                self.gate(b).await.map(|c| stats.checks = c)
            }
            Err(e) => Err(e),
        };
        stats.wait = w.elapsed().as_secs_f64();
        gated
    }

    /// Restarts a component; an etcd member (health `etcd-quorum`) that leads hands its
    /// leadership to another member first, so the writes in flight are not dropped with it.
    pub(super) async fn restart(&self, node: &str, t: &dyn Transport, component: &str, b: &Batch, why: &str) -> std::result::Result<(), String> {
        let quorum = self.playbook.component(component).and_then(|c| c.health.as_deref()) == Some("etcd-quorum");
        if quorum && let Some(c) = b.gates.iter().find(|c| c.from == node && c.to == node && quorum_edges(self.playbook).contains(&c.edge)) {
            match super::etcd::hand_off(t, c, self.patience.min(Duration::from_secs(15))).await {
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
    pub(super) async fn gate(&self, b: &Batch) -> std::result::Result<usize, String> {
        if b.gates.is_empty() {
            return Ok(0);
        }
        self.note(&b.nodes.join(","), format!("health gate: {} checks", b.gates.len()));
        let results = gate::run_watched(&self.nodes, &b.gates, self.patience, &|node, what| self.note(node, what)).await;
        for r in &results {
            self.rec(&Record::Gate { from: r.from.clone(), check: format!("{} {} -> {}", r.edge, r.from, r.to), ok: r.ok, detail: r.detail.clone() })?;
        }
        if let Some(bad) = results.iter().find(|r| !r.ok) {
            let restarted: Vec<String> = b.ops.iter().flat_map(|o| o.restarts.iter().map(move |c| format!("{c} on {}", o.node))).collect();
            let after = if restarted.is_empty() { String::new() } else { format!(" after restarting {}", restarted.join(", ")) };
            return Err(format!("{}: health gate failed{after}: edge {} ({} -> {} at {}) failed: {}", b.nodes.join(", "), bad.edge, bad.from, bad.to, bad.endpoint, bad.detail));
        }
        for o in &b.ops {
            for c in &o.restarts {
                if let Some(cmd) = self.overrides.get(c).and_then(|x| x.health.clone()) {
                    let t = self.t(&o.node)?;
                    if let Err(e) = health_command(t.as_ref(), &cmd, self.patience).await {
                        self.rec(&Record::Gate { from: o.node.clone(), check: format!("{c} health"), ok: false, detail: e.clone() })?;
                        return Err(format!("{}: health gate failed after restarting {c}: its health command {e}", o.node));
                    }
                }
            }
        }
        Ok(results.len())
    }
}
