//! Owns: `kcert resume [RUN]`: its flags, the question, and the run's summary.
//! Must not: decide whether a run can go on (`ops::runs::resume` does).

use std::path::PathBuf;

use clap::Args;

use super::args::{FailureArgs, RunArgs, TABLE_JSON_YAML, formats};
use super::progress::Steps;
use super::{confirm, print, ran};
use crate::error::{Outcome, Result};
use crate::ops::RunOptions;
use crate::render::{self, Format};

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The run to carry on (see `kcert runs`); default: the most recent one.
    pub run_id: Option<String>,
    /// Reach the nodes through this inventory instead of the one the run used; the run's journal,
    /// plan and keys are then read from its control-plane nodes too (the longest consistent
    /// copy wins), so any machine can carry it on.
    #[arg(short = 'i', long, value_name = "FILE", conflicts_with = "root")]
    pub inventory: Option<PathBuf>,
    /// Read that inventory through `ansible-inventory -i FILE --list` (dynamic inventories).
    #[arg(long, requires = "inventory")]
    pub inventory_from_ansible: bool,
    /// Work on this directory tree laid out like a node (offline), instead of the one the run
    /// used; the run's journal and plan are then read from its copy there too.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub failure: FailureArgs,
    /// Output format: table, json or yaml.
    #[arg(short, long, default_value = "table", value_parser = formats(TABLE_JSON_YAML))]
    pub output: Format,
}

pub async fn run(args: ResumeArgs) -> Result<Outcome> {
    let state_dir = args.run.state.dir()?;
    let reach = crate::ops::runs::Reach { inventory: args.inventory.as_deref(), root: args.root.as_deref(), from_ansible: args.inventory_from_ansible };
    let run_id = super::from_cluster(reach, &state_dir, args.run_id.as_deref()).await?;
    let run_id = run_id.as_deref();
    let (which, kind, at, _) = crate::ops::runs::describe(&state_dir, run_id)?;
    let progress = Steps::new("resuming");
    let ask = |p: &crate::plan::Plan, _: &[String]| confirm(args.run.yes, &format!("Resume {which} ({kind}, plan {}, started {at})?", p.id), |_| Ok(()));
    let run = RunOptions { state_dir, patience: args.run.gate_timeout, break_lease: args.run.break_lease, on_failure: args.failure.on_failure.into(), confirm: &ask, observer: &|e| progress.observe(e) };
    let report = crate::ops::runs::resume(run_id, reach, &run).await;
    drop(progress);
    let report = report?;
    print(|out| render::run_report(&report, args.output, out))?;
    Ok(ran(&report))
}
