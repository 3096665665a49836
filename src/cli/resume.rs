use std::path::PathBuf;

use clap::Args;

use super::{RunArgs, confirm, print, stage_progress};
use crate::error::{Error, Outcome, Result};
use crate::render::{self, Format};
use crate::rotate::RunOptions;

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The rotate-ca run to carry on (see `kcert runs`); default: the most recent one.
    pub run_id: Option<String>,
    /// Reach the nodes through this inventory instead of the one the run used.
    #[arg(short = 'i', long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
    /// Output format: table, json or yaml.
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Format,
}

pub async fn run(args: ResumeArgs) -> Result<Outcome> {
    let state_dir = crate::journal::state_dir(args.run.state_dir.as_deref())?;
    let run_id = match &args.run_id {
        Some(r) => r.clone(),
        None => crate::rotate::runs(&state_dir).into_iter().rev().find(|r| r.command == "rotate-ca").map(|r| r.run_id).ok_or_else(|| Error::input(format!("state dir {}", state_dir.display()), "no rotate-ca run recorded there"))?,
    };
    let e = crate::rotate::existing(&state_dir, &run_id)?;
    let done = crate::runner::done(&e.records);
    if done.finished.as_deref() == Some("ok") {
        return Err(Error::input(format!("run {run_id}"), "it finished; there is nothing to resume"));
    }
    let fleet = super::fleet_of(args.inventory.as_ref().or(e.target.inventory.as_ref()), e.target.root.as_ref(), &e.plan.distribution)?;
    let left: usize = e.plan.stages.iter().flat_map(|s| s.steps.iter().enumerate().map(move |(i, _)| (s.id.clone(), i))).filter(|k| !done.steps.contains(k)).count();
    confirm(args.run.yes, &format!("Resume run {run_id} (plan {}): {left} steps left?", e.plan.id), |_| Ok(()))?;
    let progress = stage_progress(&e.plan, "resuming");
    let report = crate::rotate::resume(&e, &fleet, &RunOptions { state_dir, patience: args.run.gate_timeout, on_failure: args.run.on_failure.into(), observer: &|ev| progress.observe(ev) }).await;
    drop(progress);
    let report = report?;
    print(|out| render::stage_report(&report, args.output, out))?;
    Ok(if report.failure.is_some() { Outcome::NodeFailures } else { Outcome::Clean })
}
