use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{confirm, print, stage_progress, step_progress};
use crate::error::{Error, Outcome, Result};
use crate::journal::{self, Record};
use crate::render::{self, Format};

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The run to undo (see `kcert runs`); default: the most recent run.
    pub run_id: Option<String>,
    /// For a rotate-ca run: undo the stages from the last one down to this one (S0, the
    /// default, undoes everything; S4 leaves S1-S3 in place: old and new CA trusted).
    #[arg(long, value_name = "STAGE", default_value = "S0")]
    pub to_stage: String,
    /// Where run journals are (default: $XDG_STATE_HOME/kcert, else ~/.local/state/kcert).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Reach the nodes through this inventory instead of the one the run used.
    #[arg(short = 'i', long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// How long a restarted component may take to pass its health gate.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub gate_timeout: Duration,
    /// Do not ask for confirmation.
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Output format: table or json (yaml too).
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Format,
}

pub async fn run(args: RollbackArgs) -> Result<Outcome> {
    let state_dir = journal::state_dir(args.state_dir.as_deref())?;
    let (run_id, latest) = match &args.run_id {
        Some(r) => (r.clone(), false),
        None => (journal::runs(&state_dir).pop().ok_or_else(|| Error::input(format!("state dir {}", state_dir.display()), "no runs recorded there"))?, true),
    };
    let records = journal::read(&state_dir, &run_id)?;
    let Some(Record::RunStarted { command, at, target, .. }) = records.first().cloned() else {
        return Err(Error::input(format!("run {run_id}"), "its journal does not start with the run"));
    };
    let which = if latest { format!("the most recent run, {run_id}") } else { format!("run {run_id}") };
    if command == "rotate-ca" {
        let e = crate::rotate::existing(&state_dir, &run_id)?;
        let fleet = super::fleet_of(args.inventory.as_ref().or(target.inventory.as_ref()), target.root.as_ref(), &e.plan.distribution)?;
        confirm(args.yes, &format!("Roll back {which} ({command}, started {at}) to the start of {}: restore its files on {}?", args.to_stage.to_uppercase(), target.nodes.join(", ")), |_| Ok(()))?;
        let progress = stage_progress(&e.plan, "rolling back");
        let opts = crate::rotate::RunOptions { state_dir: state_dir.clone(), patience: args.gate_timeout, on_failure: crate::runner::OnFailure::Pause, observer: &|ev| progress.observe(ev) };
        let report = crate::rotate::rollback(&e, &fleet, &args.to_stage, &opts).await;
        drop(progress);
        let report = report?;
        print(|out| render::stage_report(&report, args.output, out))?;
        return Ok(if report.failure.is_some() { Outcome::NodeFailures } else { Outcome::Clean });
    }
    let fleet = super::fleet_of(args.inventory.as_ref().or(target.inventory.as_ref()), target.root.as_ref(), "kubeadm")?;
    let files = records.iter().filter(|r| matches!(r, Record::Backup { .. })).count();
    confirm(args.yes, &format!("Roll back {which} ({command}, started {at}): restore {files} files on {}?", target.nodes.join(", ")), |_| Ok(()))?;
    let progress = step_progress(target.nodes.len(), "restoring");
    let result = crate::execute::rollback(&records, &fleet, &|s| progress.observe(s)).await;
    drop(progress);
    let mut j = journal::Journal::reopen(&state_dir, &run_id)?;
    let now = crate::render::rfc3339(time::OffsetDateTime::now_utc().unix_timestamp());
    match result {
        Ok(nodes) => {
            j.record(&Record::RolledBack { at: now, status: "ok".into(), message: format!("{files} files restored") })?;
            let path = j.dir.join("journal.jsonl").to_string_lossy().into_owned();
            print(|out| render::run_summary(&run_id, &path, &nodes, None, None, args.output, out))?;
            Ok(Outcome::Clean)
        }
        Err(e) => {
            j.record(&Record::RolledBack { at: now, status: "failed".into(), message: e.to_string() })?;
            Err(e)
        }
    }
}
