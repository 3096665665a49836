use std::path::PathBuf;

use clap::Args;

use super::{RunArgs, TargetArgs, confirm, print, stage_progress};
use crate::error::{Error, Outcome, Result};
use crate::pki::sign::KeyType;
use crate::render::{self, Format};
use crate::rotate::{RotateOptions, RunOptions};

#[derive(Debug, Args)]
pub struct RotateArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// CAs to rotate: cluster, etcd, front-proxy (default: every one the cluster has).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub ca: Vec<String>,
    /// Key type of the new CAs (default: the old ones'): rsa2048, rsa3072, rsa4096, ecdsa-p256, ecdsa-p384.
    #[arg(long, value_name = "TYPE")]
    pub key_type: Option<String>,
    /// Validity of the new CAs, in days.
    #[arg(long, default_value_t = 3650, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub ca_days: u32,
    /// Validity of the re-signed leaves, in days (never past the new CA's expiry).
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub days: u32,
    /// Workers changed together (default: the inventory's batch_size); control-plane nodes go one at a time.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: Option<u32>,
    /// Show the plan, stage by stage and node by node, with its proof; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Save the plan to FILE (the new CA keys go to the state dir, 0600) for `kcert apply FILE`; change nothing.
    #[arg(long, value_name = "FILE")]
    pub plan_out: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
    /// Output format: table, json or yaml.
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Format,
}

pub async fn run(args: RotateArgs) -> Result<Outcome> {
    if matches!(args.output, Format::Prom | Format::Dot) {
        return Err(Error::Usage("rotate-ca has no prom or dot output; use table, json or yaml".into()));
    }
    let key_type = match &args.key_type {
        None => None,
        Some(k) => Some(KeyType::parse(k).ok_or_else(|| Error::Usage(format!("--key-type {k}: known: {}", KeyType::NAMES.join(", "))))?),
    };
    if !args.target.nodes.is_empty() {
        return Err(Error::Usage("--nodes: rotate-ca changes the whole cluster (a node left out would trust only the old CA once it is pruned); list the nodes in the inventory instead".into()));
    }
    let fleet = args.target.fleet()?;
    let state_dir = crate::journal::state_dir(args.run.state_dir.as_deref())?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let opts = RotateOptions { cas: args.ca.clone(), ca_days: args.ca_days, leaf_days: args.days, key_type, batch_size: args.batch_size.map(|b| b as usize), now };
    let prepared = crate::rotate::prepare(&fleet, &args.target.extra_paths()?, &opts).await?;
    if let Some(path) = &args.plan_out {
        let keys = crate::rotate::save(&prepared, path, &state_dir)?;
        print(|out| render::rotation_plan(&prepared.plan, &prepared.warnings, args.output, out))?;
        eprintln!("kcert: plan {} saved to {}; its new CA keys are in {} (0600). Run it with: kcert apply {}", prepared.plan.id, path.display(), keys.display(), path.display());
        return Ok(Outcome::Clean);
    }
    if args.dry_run {
        print(|out| render::rotation_plan(&prepared.plan, &prepared.warnings, args.output, out))?;
        return Ok(Outcome::Clean);
    }
    let (files, restarts, nodes) = prepared.plan.counts();
    confirm(args.run.yes, &format!("Rotate {} CAs on {nodes} nodes ({files} file changes, {restarts} restarts)?", prepared.plan.cas.len()), |out| render::rotation_plan(&prepared.plan, &prepared.warnings, Format::Table, out))?;
    let progress = stage_progress(&prepared.plan, "rotating");
    let report = crate::rotate::run(&prepared, &fleet, &RunOptions { state_dir, patience: args.run.gate_timeout, on_failure: args.run.on_failure.into(), observer: &|e| progress.observe(e) }, now).await;
    drop(progress);
    let report = report?;
    print(|out| render::stage_report(&report, args.output, out))?;
    Ok(if report.failure.is_some() { Outcome::NodeFailures } else { Outcome::Clean })
}
