//! Owns: `kcert verify`: its flags and the trust graph's output.
//! Must not: judge an edge itself (`report::verify` does).

use clap::Args;

use super::args::{TargetArgs, formats};
use super::print;
use super::progress::Nodes;
use crate::error::{Outcome, Result};
use crate::render::{self, Format};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Also make a real mTLS handshake along every edge, from the client's node.
    #[arg(long)]
    pub live: bool,
    /// Output format: table, json, yaml or dot (Graphviz).
    #[arg(short, long, default_value = "table", value_parser = formats(&[Format::Table, Format::Json, Format::Yaml, Format::Dot]))]
    pub output: Format,
}

pub async fn run(args: VerifyArgs) -> Result<Outcome> {
    let fleet = args.target.fleet()?;
    let progress = Nodes::new(&fleet, "verifying");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let report = crate::report::verify::run(&fleet, &args.target.extra_paths()?, args.live, now).await;
    drop(progress);
    let report = report?;
    print(|out| render::verify(&report, args.output, out))?;
    Ok(report.outcome())
}
