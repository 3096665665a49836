use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;

use super::{Progress, TargetArgs, print};
use crate::error::{Outcome, Result};
use crate::expiry::ExpiryOptions;
use crate::render::{self, Format};

#[derive(Debug, Args)]
pub struct ExpiryArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Output format: table, json, yaml, or prom (x509-certificate-exporter's metrics).
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Format,
    /// Flag certificates that expire within this window (e.g. 30d, 12w).
    #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = humantime::parse_duration)]
    pub warn: Duration,
    /// Give up on a TLS port after this long.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub probe_timeout: Duration,
}

pub async fn run(args: ExpiryArgs) -> Result<Outcome> {
    if args.output == Format::Dot {
        return Err(crate::error::Error::Usage("expiry has no dot output; use table, json, yaml or prom".into()));
    }
    let fleet = args.target.fleet()?;
    let opts = ExpiryOptions {
        extra_paths: args.target.extra_paths()?,
        warn: args.warn,
        probe_timeout: args.probe_timeout,
        now: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0),
    };
    let progress = Progress::new(&fleet, "reading certificates");
    let report = crate::expiry::run(&fleet, &opts, &|e| progress.observe(e)).await;
    drop(progress);
    print(|out| render::expiry(&report, args.output, out))?;
    Ok(report.outcome())
}
