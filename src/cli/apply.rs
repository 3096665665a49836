//! Owns: `kcert apply FILE`: its flags, the question, and the run's summary.
//! Must not: check the plan or its facts itself (`ops::apply` does).

use std::path::PathBuf;

use clap::Args;

use super::args::{FailureArgs, RunArgs, TABLE_JSON_YAML, formats};
use super::progress::Steps;
use super::{ask_about, print, ran};
use crate::error::{Outcome, Result};
use crate::ops::RunOptions;
use crate::render::{self, Format};

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan saved with `kcert renew --plan-out FILE` or `kcert rotate-ca --plan-out FILE` (as saved, or its JSON decompressed).
    pub plan: PathBuf,
    /// Reach the nodes through this inventory instead of the one the plan was made with.
    #[arg(short = 'i', long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Read that inventory through `ansible-inventory -i FILE --list` (dynamic inventories).
    #[arg(long, requires = "inventory")]
    pub inventory_from_ansible: bool,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub failure: FailureArgs,
    /// Output format: table, json or yaml.
    #[arg(short, long, default_value = "table", value_parser = formats(TABLE_JSON_YAML))]
    pub output: Format,
}

pub async fn run(args: ApplyArgs) -> Result<Outcome> {
    let progress = Steps::new("applying");
    let confirm = ask_about(args.run.yes, |p| {
        let (files, restarts, nodes) = p.counts();
        format!("Apply plan {} ({}): {files} file changes and {restarts} restarts on {nodes} nodes?", p.id, p.kind)
    });
    let run = RunOptions { state_dir: args.run.state.dir()?, patience: args.run.gate_timeout, break_lease: args.run.break_lease, on_failure: args.failure.on_failure.into(), confirm: &confirm, observer: &|e| progress.observe(e) };
    let report = crate::ops::apply(&args.plan, args.inventory.as_deref(), args.inventory_from_ansible, &run).await;
    drop(progress);
    let report = report?;
    print(|out| render::run_report(&report, args.output, out))?;
    Ok(ran(&report))
}
