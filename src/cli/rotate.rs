//! Owns: `kcert rotate-ca`: its flags, the question, and the plan or run it ends with.
//! Must not: plan or run anything itself (`ops::rotate_ca` does).

use clap::Args;

use super::args::{FailureArgs, PlanArgs, RunArgs, TABLE_JSON_YAML, TargetArgs, formats};
use super::progress::Steps;
use super::{ask_about, ended};
use crate::error::{Error, Outcome, Result};
use crate::ops::{RotateOptions, RunOptions};
use crate::pki::sign::KeyType;
use crate::render::Format;

#[derive(Debug, Args)]
pub struct RotateArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// CAs to rotate: cluster, etcd, front-proxy (default: every one the cluster has).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub ca: Vec<String>,
    /// Key type of the new CAs (default: the old ones'): rsa2048, rsa3072, rsa4096, ecdsa-p256, ecdsa-p384, ed25519.
    #[arg(long, value_name = "TYPE")]
    pub key_type: Option<String>,
    /// Validity of the new CAs, in days.
    #[arg(long, default_value_t = 3650, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub ca_days: u32,
    /// Validity of the re-signed leaves, in days (never past the new CA's expiry).
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub days: u32,
    #[command(flatten)]
    pub plan: PlanArgs,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub failure: FailureArgs,
    /// Output format: table, json or yaml.
    #[arg(short, long, default_value = "table", value_parser = formats(TABLE_JSON_YAML))]
    pub output: Format,
}

pub async fn run(args: RotateArgs) -> Result<Outcome> {
    let key_type = match &args.key_type {
        None => None,
        Some(k) => Some(KeyType::parse(k).ok_or_else(|| Error::Usage(format!("--key-type {k}: known: {}", KeyType::NAMES.join(", "))))?),
    };
    if !args.target.nodes.is_empty() {
        return Err(Error::Usage("--nodes: rotate-ca changes the whole cluster (a node left out would trust only the old CA once it is pruned); list the nodes in the inventory instead".into()));
    }
    let fleet = args.target.fleet()?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let opts = RotateOptions { cas: args.ca.clone(), ca_days: args.ca_days, leaf_days: args.days, key_type, batch_size: args.plan.batch_size(), now };
    let mode = args.plan.mode();
    let progress = Steps::new("rotating");
    let confirm = ask_about(args.run.yes, |p| {
        let (files, restarts, nodes) = p.counts();
        format!("Rotate {} CAs on {nodes} nodes ({files} file changes, {restarts} restarts)?", p.cas.len())
    });
    let run = RunOptions { state_dir: args.run.state.dir()?, patience: args.run.gate_timeout, break_lease: args.run.break_lease, on_failure: args.failure.on_failure.into(), confirm: &confirm, observer: &|e| progress.observe(e) };
    let done = crate::ops::rotate_ca(&fleet, &args.target.extra_paths()?, &opts, mode, &run).await;
    drop(progress);
    ended(done?, args.output)
}
