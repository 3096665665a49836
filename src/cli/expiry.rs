//! Owns: `kcert expiry`: its flags (warning window, probe timeout) and the report's output.
//! Must not: read certificates itself (`report::expiry` does).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;

use super::args::{TargetArgs, formats};
use super::print;
use super::progress::Nodes;
use crate::error::{Outcome, Result};
use crate::render::{self, Format};
use crate::report::expiry::ExpiryOptions;

#[derive(Debug, Args)]
pub struct ExpiryArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Output format: table, json, yaml, or prom (x509-certificate-exporter's metrics).
    #[arg(short, long, default_value = "table", value_parser = formats(&[Format::Table, Format::Json, Format::Yaml, Format::Prom]))]
    pub output: Format,
    /// Flag certificates that expire within this window (e.g. 30d, 12w).
    #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = humantime::parse_duration)]
    pub warn: Duration,
    /// Give up on a TLS port after this long.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub probe_timeout: Duration,
}

pub async fn run(args: ExpiryArgs) -> Result<Outcome> {
    let fleet = args.target.fleet()?;
    let opts = ExpiryOptions {
        extra_paths: args.target.extra_paths()?,
        warn: args.warn,
        probe_timeout: args.probe_timeout,
        now: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0),
    };
    let progress = Nodes::new(&fleet, "reading certificates");
    let report = crate::report::expiry::run(&fleet, &opts, &|e| progress.observe(e)).await;
    drop(progress);
    print(|out| render::expiry(&report, args.output, out))?;
    Ok(report.outcome())
}
