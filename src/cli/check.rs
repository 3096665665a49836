//! Owns: `kcert check`: its flags and the per-node table.
//! Must not: check anything itself (`report::check` does).

use clap::Args;

use super::args::{TABLE_JSON_YAML, TargetArgs, formats};
use super::print;
use super::progress::Nodes;
use crate::error::{Outcome, Result};
use crate::render::{self, Format};

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Output format: table, json or yaml.
    #[arg(short, long, default_value = "table", value_parser = formats(TABLE_JSON_YAML))]
    pub output: Format,
}

pub async fn run(args: CheckArgs) -> Result<Outcome> {
    let fleet = args.target.fleet()?;
    let paths = args.target.extra_paths()?;
    let progress = Nodes::new(&fleet, "checking");
    let report = crate::report::check::run(&fleet, &paths, &|e| progress.observe(e)).await;
    drop(progress);
    print(|out| render::check(&report, args.output, out))?;
    Ok(report.outcome())
}
