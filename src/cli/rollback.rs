use std::path::PathBuf;

use clap::Args;

use super::{confirm, print, step_progress};
use crate::error::{Error, Outcome, Result};
use crate::fleet::Fleet;
use crate::inventory::{self, LoadOptions};
use crate::journal::{self, Record};
use crate::render::{self, Format};

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The run to undo (see the state dir's runs/); default: the most recent run.
    pub run_id: Option<String>,
    /// Where run journals are (default: $XDG_STATE_HOME/kcert, else ~/.local/state/kcert).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Reach the nodes through this inventory instead of the one the run used.
    #[arg(short = 'i', long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
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
    let fleet = match (&args.inventory, &target.inventory, &target.root) {
        (Some(inv), _, _) | (None, Some(inv), _) => {
            let inv = inventory::load(inv, &LoadOptions::default())?;
            Fleet::from_inventory(&inv, &[], None)?
        }
        (None, None, root) => Fleet::local(root.clone(), Some(crate::playbook::load("kubeadm")?))?,
    };
    let files = records.iter().filter(|r| matches!(r, Record::Backup { .. })).count();
    let which = if latest { format!("the most recent run, {run_id}") } else { format!("run {run_id}") };
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
