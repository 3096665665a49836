use clap::Args;

use super::{Progress, TargetArgs, print};
use crate::error::{Outcome, Result};
use crate::render::{self, Format};

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Output format: table or json (yaml too).
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Format,
}

pub async fn run(args: CheckArgs) -> Result<Outcome> {
    if matches!(args.output, Format::Prom | Format::Dot) {
        return Err(crate::error::Error::Usage("check has no prom or dot output; use table, json or yaml".into()));
    }
    let fleet = args.target.fleet()?;
    let paths = args.target.extra_paths()?;
    let progress = Progress::new(&fleet, "checking");
    let report = crate::check::run(&fleet, &paths, &|e| progress.observe(e)).await;
    drop(progress);
    print(|out| render::check(&report, args.output, out))?;
    Ok(report.outcome())
}
