use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{TargetArgs, confirm, print, step_progress};
use crate::error::{Error, Outcome, Result};
use crate::render::{self, Format};
use crate::renew::{ApplyOptions, RenewOptions};

#[derive(Debug, Args)]
pub struct RenewArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Certificates to renew, as kubeadm names them (apiserver, etcd-server, admin.conf, ...),
    /// plus kubelet-serving, kubeconfigs and all (kubeadm's set; kubelet-serving is separate).
    #[arg(long, value_delimiter = ',', default_value = "all", value_name = "NAMES")]
    pub certs: Vec<String>,
    /// Validity of the renewed certificates, in days (never past the CA's own expiry).
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub days: u32,
    /// Show per node each file, its old and new expiry, each restart and gate; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation (needed when there is no terminal to ask on).
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Where run journals go (default: $XDG_STATE_HOME/kcert, else ~/.local/state/kcert).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// How long a restarted component may take to pass its health gate.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub gate_timeout: Duration,
    /// Output format: table or json (yaml too).
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Format,
}

pub async fn run(args: RenewArgs) -> Result<Outcome> {
    if matches!(args.output, Format::Prom | Format::Dot) {
        return Err(Error::Usage("renew has no prom or dot output; use table, json or yaml".into()));
    }
    let fleet = args.target.fleet()?;
    let state_dir = crate::journal::state_dir(args.state_dir.as_deref())?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let opts = RenewOptions { certs: args.certs.clone(), days: args.days, now };
    let prepared = crate::renew::prepare(&fleet, &args.target.extra_paths()?, &opts).await?;
    if args.dry_run {
        print(|out| render::renew_plan(&prepared, args.output, out))?;
        return Ok(Outcome::Clean);
    }
    if prepared.file_count() == 0 {
        print(|out| render::renew_plan(&prepared, args.output, out))?;
        return Ok(Outcome::Clean);
    }
    confirm(args.yes, &format!("Renew {} files on {} nodes?", prepared.file_count(), prepared.plans.iter().filter(|p| !p.changes.is_empty()).count()), |out| {
        render::renew_plan(&prepared, Format::Table, out)
    })?;
    let progress = step_progress(prepared.plans.iter().filter(|p| !p.changes.is_empty()).count(), "renewing");
    let report = crate::renew::apply(&prepared, &fleet, &ApplyOptions { state_dir, patience: args.gate_timeout, now }, &|s| progress.observe(s)).await;
    drop(progress);
    let report = report?;
    print(|out| render::run_summary(&report.run_id, &report.journal, &report.nodes, report.failure.as_deref(), Some((report.wall_seconds, report.wait_seconds)), args.output, out))?;
    Ok(if report.failure.is_some() { Outcome::NodeFailures } else { Outcome::Clean })
}
