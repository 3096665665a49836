use clap::Args;

use super::{Progress, TargetArgs, print};
use crate::error::{Error, Result, Outcome};
use crate::render::{self, Format};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Also make a real mTLS handshake along every edge, from the client's node.
    #[arg(long)]
    pub live: bool,
    /// Output format: table, json or dot (Graphviz; yaml too).
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Format,
}

pub async fn run(args: VerifyArgs) -> Result<Outcome> {
    if args.output == Format::Prom {
        return Err(Error::Usage("verify has no prom output; use table, json, yaml or dot".into()));
    }
    let fleet = args.target.fleet()?;
    let progress = Progress::new(&fleet, "verifying");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let report = crate::verify::run(&fleet, &args.target.extra_paths()?, args.live, now).await;
    drop(progress);
    let report = report?;
    print(|out| render::verify(&report, args.output, out))?;
    Ok(report.outcome())
}
