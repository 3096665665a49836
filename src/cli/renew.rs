//! Owns: `kcert renew`: its flags, the question, and the plan or run it ends with.
//! Must not: plan or run anything itself (`ops::renew` does).

use clap::Args;

use super::args::{FailureArgs, PlanArgs, RunArgs, TABLE_JSON_YAML, TargetArgs, formats};
use super::progress::Steps;
use super::{ask_about, ended};
use crate::error::{Outcome, Result};
use crate::ops::{RenewOptions, RunOptions};
use crate::render::Format;

#[derive(Debug, Args)]
pub struct RenewArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Certificates to renew, as kubeadm names them (apiserver, etcd-server, admin.conf, ...),
    /// plus kubelet-serving, kubeconfigs and all (kubeadm's set; kubelet-serving is separate).
    #[arg(long, value_delimiter = ',', default_value = "all", value_name = "NAMES")]
    pub certs: Vec<String>,
    /// Validity of the renewed certificates, in days (never past the CA's own expiry).
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub days: u32,
    #[command(flatten)]
    pub plan: PlanArgs,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub failure: FailureArgs,
    /// Output format: table, json or yaml (the plan itself, with --dry-run).
    #[arg(short, long, default_value = "table", value_parser = formats(TABLE_JSON_YAML))]
    pub output: Format,
}

pub async fn run(args: RenewArgs) -> Result<Outcome> {
    let fleet = args.target.fleet()?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let opts = RenewOptions { certs: args.certs.clone(), days: args.days, batch_size: args.plan.batch_size(), now };
    let mode = args.plan.mode();
    let progress = Steps::new("renewing");
    let confirm = ask_about(args.run.yes, |p| {
        let (files, restarts, nodes) = p.counts();
        format!("Renew {files} files on {nodes} nodes ({restarts} restarts)?")
    });
    let run = RunOptions { state_dir: args.run.state.dir()?, patience: args.run.gate_timeout, break_lease: args.run.break_lease, on_failure: args.failure.on_failure.into(), confirm: &confirm, observer: &|e| progress.observe(e) };
    let done = crate::ops::renew(&fleet, &args.target.extra_paths()?, &opts, mode, &run).await;
    drop(progress);
    ended(done?, args.output)
}
