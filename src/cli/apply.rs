use std::path::PathBuf;

use clap::Args;

use super::{RunArgs, confirm, print, stage_progress};
use crate::error::{Error, Outcome, Result};
use crate::render::{self, Format};
use crate::rotate::RunOptions;

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan saved with `kcert rotate-ca --plan-out FILE`.
    pub plan: PathBuf,
    /// Reach the nodes through this inventory instead of the one the plan was made with.
    #[arg(short = 'i', long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
    /// Output format: table, json or yaml.
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Format,
}

pub async fn run(args: ApplyArgs) -> Result<Outcome> {
    let plan = crate::rotate::load_plan(&args.plan)?;
    let state_dir = crate::journal::state_dir(args.run.state_dir.as_deref())?;
    let fleet = super::fleet_of(args.inventory.as_ref().or(plan.target.inventory.as_ref()), plan.target.root.as_ref(), &plan.distribution)?;
    let g = crate::renew::gather(&fleet, &[]).await?;
    let moved = crate::rotate::facts_moved(&plan, &g);
    if !moved.is_empty() {
        return Err(Error::input(
            format!("plan {}", args.plan.display()),
            format!("the cluster moved since the plan was made ({}); nothing was changed:\n  {}\n  make a new plan: kcert rotate-ca --plan-out FILE", plan.created_at, moved.join("\n  ")),
        ));
    }
    let keys_dir = crate::store::plan_keys_dir(&state_dir, &plan.id);
    let keys = crate::rotate::plan_keys(&plan, &keys_dir)?;
    let (files, restarts, nodes) = plan.counts();
    confirm(args.run.yes, &format!("Apply plan {}: rotate {} CAs on {nodes} nodes ({files} file changes, {restarts} restarts)?", plan.id, plan.cas.len()), |out| render::rotation_plan(&plan, &[], Format::Table, out))?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let progress = stage_progress(&plan, "rotating");
    let report = crate::rotate::start(&plan, &keys, &g, &fleet, &RunOptions { state_dir, patience: args.run.gate_timeout, on_failure: args.run.on_failure.into(), observer: &|e| progress.observe(e) }, now).await;
    drop(progress);
    let report = report?;
    // The run folder holds the keys now; no second copy is left behind.
    let _ = std::fs::remove_dir_all(&keys_dir);
    print(|out| render::stage_report(&report, args.output, out))?;
    Ok(if report.failure.is_some() { Outcome::NodeFailures } else { Outcome::Clean })
}
