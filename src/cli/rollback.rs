//! Owns: `kcert rollback [RUN]`: its flags, the question, and the rollback's summary.
//! Must not: decide what can be undone (`ops::runs::rollback` does).

use std::path::PathBuf;

use clap::Args;

use super::args::{RunArgs, TABLE_JSON_YAML, formats};
use super::progress::Steps;
use super::{confirm, print, ran};
use crate::error::{Outcome, Result};
use crate::ops::RunOptions;
use crate::render::{self, Format};

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The run to undo (see `kcert runs`); default: the most recent run.
    pub run_id: Option<String>,
    /// Undo the stages from the last one down to this one (S0, the default, undoes everything;
    /// for a rotation, S4 leaves S1-S3 in place: old and new CA trusted).
    #[arg(long, value_name = "STAGE", default_value = "S0")]
    pub to_stage: String,
    /// Reach the nodes through this inventory instead of the one the run used; the run's journal
    /// and plan are then read from its control-plane nodes too (the longest consistent copy
    /// wins), so any machine can undo it.
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
    /// Output format: table, json or yaml.
    #[arg(short, long, default_value = "table", value_parser = formats(TABLE_JSON_YAML))]
    pub output: Format,
}

pub async fn run(args: RollbackArgs) -> Result<Outcome> {
    let state_dir = args.run.state.dir()?;
    let reach = crate::ops::runs::Reach { inventory: args.inventory.as_deref(), root: args.root.as_deref(), from_ansible: args.inventory_from_ansible };
    let run_id = super::from_cluster(reach, &state_dir, args.run_id.as_deref()).await?;
    let run_id = run_id.as_deref();
    let (which, kind, at, nodes) = crate::ops::runs::describe(&state_dir, run_id)?;
    let to = args.to_stage.to_uppercase();
    let progress = Steps::new("rolling back");
    let ask = |_: &crate::plan::Plan, _: &[String]| confirm(args.run.yes, &format!("Roll back {which} ({kind}, started {at}) to the start of {to}: restore its files on {}?", nodes.join(", ")), |_| Ok(()));
    let run = RunOptions { state_dir, patience: args.run.gate_timeout, break_lease: args.run.break_lease, on_failure: crate::run::OnFailure::Pause, confirm: &ask, observer: &|e| progress.observe(e) };
    let result = crate::ops::runs::rollback(run_id, &args.to_stage, reach, &run).await;
    drop(progress);
    let report = result?;
    print(|out| render::run_report(&report, args.output, out))?;
    Ok(ran(&report))
}
