//! Owns: `renew` up to a plan, from the gathered facts (CA keys in memory only): choosing the
//! certificates, planning and proving the renewal.
//! Must not: print, or change a node (the runner carries the plan out).

use std::collections::BTreeMap;

use super::Prepared;
use crate::error::Result;
use crate::gather::Gathered;
use crate::plan::gates;
use crate::plan::renew::{self, Input};
use crate::plan::schema::PlanTarget;
use crate::reach::fleet::Fleet;

#[derive(Debug, Clone)]
pub struct RenewOptions {
    /// `--certs` names (kubeadm's, `kubeconfigs`, `all`, `kubelet-serving`).
    pub certs: Vec<String>,
    pub days: u32,
    pub batch_size: Option<usize>,
    pub now: i64,
}

/// From the gathered facts, plans the renewal of every node, proven. Nothing is changed.
pub fn prepare(fleet: &Fleet, gathered: Gathered, opts: &RenewOptions) -> Result<Prepared> {
    let input = Input {
        playbook: &gathered.playbook,
        nodes: &gathered.nodes,
        checks: if gathered.offline() { Vec::new() } else { gates::checks(&gathered.playbook, &gathered.nodes) },
        target: PlanTarget { inventory: fleet.inventory.clone(), root: fleet.root(), from_ansible: fleet.from_ansible },
        certs: opts.certs.clone(),
        days: opts.days,
        batch_size: opts.batch_size.unwrap_or(fleet.batch_size).max(1),
        kubernetes_api: fleet.kubernetes_api,
        id: crate::run::journal::stamped_id("plan", opts.now)?,
        cluster: fleet.cluster.clone(),
        now: opts.now,
    };
    let plan = match &gathered.playbook.reissue {
        Some(r) => crate::plan::reissue::plan(&input, r)?,
        None => renew::plan(&input)?,
    };
    drop(input);
    Ok(Prepared { gathered, plan, keys: BTreeMap::new(), warnings: Vec::new() })
}
