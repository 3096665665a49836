//! Owns: the `check` report: per node, can kcert reach it, log in, become root, trust its
//! clock, write where the PKI lives, recognise the distribution and find its PKI.
//! Must not: change anything on a node, or format output.

use crate::error::Outcome;
use crate::gather::discover;
use crate::playbook::{self, Playbook};
use crate::reach::clock::{MAX_SKEW, identity};
use crate::reach::fleet::{Connect, Fleet, NodeEvent, Target};
use crate::reach::transport::{NodeFailure, NodeResult, Phase, Transport};
use crate::text::human_bytes;

/// Less free space than this where the PKI lives is too little to write backups and new files.
pub const MIN_FREE_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, Default)]
pub struct CheckRow {
    pub node: String,
    pub user: String,
    pub reachable: bool,
    pub host_key_ok: bool,
    pub authenticated: bool,
    /// None: not needed (root login, or a local run).
    pub sudo: Option<bool>,
    pub clock_skew_seconds: Option<f64>,
    pub pki_dir: Option<String>,
    pub free_bytes: Option<u64>,
    pub distribution: Option<String>,
    pub pki_files: Option<usize>,
    pub problems: Vec<String>,
}

impl CheckRow {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub nodes: Vec<CheckRow>,
}

impl CheckReport {
    pub fn outcome(&self) -> Outcome {
        if self.nodes.iter().all(CheckRow::ok) { Outcome::Clean } else { Outcome::NodeFailures }
    }
}

pub async fn run(fleet: &Fleet, extra_paths: &[String], observer: &(dyn Fn(&NodeEvent) + Sync)) -> CheckReport {
    let embedded = playbook::embedded();
    let results = fleet
        .run(observer, |t, target| {
            let embedded = &embedded;
            async move { Ok(check_node(t.as_ref(), &target, fleet.playbook.as_ref(), embedded, extra_paths).await) }
        })
        .await;
    let nodes = results
        .into_iter()
        .map(|(target, result)| match result {
            Ok(row) => row,
            Err(failure) => failed_row(&target, failure),
        })
        .collect();
    CheckReport { nodes }
}

fn login_user(target: &Target) -> String {
    match &target.connect {
        Connect::Ssh(o) => o.user.clone(),
        Connect::Local { .. } => std::env::var("USER").unwrap_or_else(|_| "local".into()),
    }
}

fn failed_row(target: &Target, f: NodeFailure) -> CheckRow {
    CheckRow {
        node: target.name.clone(),
        user: login_user(target),
        reachable: f.phase > Phase::Connect,
        host_key_ok: f.phase > Phase::HostKey,
        authenticated: f.phase > Phase::Auth,
        sudo: (f.phase == Phase::Sudo).then_some(false),
        problems: vec![f.message],
        ..Default::default()
    }
}

async fn check_node(t: &dyn Transport, target: &Target, playbook: Option<&Playbook>, embedded: &[Playbook], extra_paths: &[String]) -> CheckRow {
    let mut row = CheckRow { node: target.name.clone(), user: t.user(), reachable: true, host_key_ok: true, authenticated: true, ..Default::default() };
    if !t.offline() {
        match identity(t).await {
            Err(f) => {
                let mut failed = failed_row(target, f);
                failed.user = row.user;
                return failed;
            }
            Ok(answer) => match answer {
                Err(e) => row.problems.push(e),
                Ok((uid, skew)) => {
                    row.clock_skew_seconds = Some(skew);
                    if skew.abs() > MAX_SKEW.as_secs_f64() {
                        row.problems.push(format!("clock is {skew:+.0}s off the operator's clock (more than {}s)", MAX_SKEW.as_secs()));
                    }
                    let via_sudo = matches!(&target.connect, Connect::Ssh(o) if o.user != "root" && o.become_sudo);
                    row.sudo = via_sudo.then_some(uid == 0);
                    if uid != 0 {
                        row.problems.push(format!("commands run as uid {uid}, not root: PKI files may be unreadable (set become: sudo, or log in as root)"));
                    }
                }
            },
        }
    }
    let result: NodeResult<()> = async {
        let surveyed = discover::surveyed(t, &discover::candidates(None, embedded), extra_paths).await?;
        let t = &surveyed;
        let detected = discover::detect(t, embedded).await?;
        row.distribution = detected.clone();
        let pb = playbook.or_else(|| detected.as_ref().and_then(|n| embedded.iter().find(|p| &p.name == n)));
        match (playbook, &detected) {
            (Some(p), Some(d)) if &p.name != d => row.problems.push(format!("the inventory says {}, but the node looks like {d}", p.name)),
            (None, None) => row.problems.push(format!("no known distribution detected ({} looked for; pass --distribution)", embedded.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", "))),
            _ => {}
        }
        let pki_dir = pb.map(|p| p.pki_dir.clone()).unwrap_or_else(|| "/".into());
        let (free, found) = tokio::join!(t.free_bytes(&pki_dir), discover::discover(t, pb, extra_paths));
        match free {
            Ok(b) => {
                row.free_bytes = Some(b);
                if b < MIN_FREE_BYTES {
                    row.problems.push(format!("only {} free on {pki_dir} (want at least {})", human_bytes(b), human_bytes(MIN_FREE_BYTES)));
                }
            }
            Err(e) => row.problems.push(format!("free space of {pki_dir}: {e}")),
        }
        row.pki_dir = Some(pki_dir);
        let found = found?;
        row.pki_files = Some(found.files.len());
        if found.files.is_empty() {
            row.problems.push("no PKI files found".into());
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        row.problems.push(e.message);
    }
    row
}

