//! Owns: the command line: flags, their mapping to library options, the question before a
//! change, progress display, and printing results through `render`. One file per subcommand,
//! each calling one library function.
//! Must not: hold logic a library user would need; that lives in `ops` and the reports.

mod apply;
mod args;
mod check;
mod completions;
mod expiry;
mod progress;
mod renew;
mod resume;
mod rollback;
mod rotate;
mod runs;
mod verify;

use std::io::IsTerminal;

use clap::{Parser, Subcommand};

use crate::error::{Error, Outcome, Result};

const EXIT_CODES: &str = "\
Exit codes:
  0  everything checked out
  1  a node failed (unreachable, refused, a step failed); the rest is still reported
  2  bad usage or input (nothing was changed)
  3  expiry/verify found something inside --warn, expired, unreadable or broken";

#[derive(Debug, Parser)]
#[command(name = "kcert", version, about = "Renew and rotate the certificates of self-managed Kubernetes clusters over SSH", after_help = EXIT_CODES)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Connect to every node: SSH, sudo, clock skew, free disk, distribution, PKI files found.
    #[command(after_help = EXIT_CODES)]
    Check(check::CheckArgs),
    /// Every certificate on every node (files, bundles, kubeconfigs, served ports) and when it expires.
    #[command(after_help = EXIT_CODES)]
    Expiry(expiry::ExpiryArgs),
    /// Re-sign leaf certificates with their current CA, keeping subject, SANs, usages and key;
    /// as a plan (--dry-run shows it, --plan-out saves it), backed up, written atomically,
    /// restarted and gated on live handshakes.
    #[command(after_help = EXIT_CODES)]
    Renew(renew::RenewArgs),
    /// Rotate the cluster's CAs by the official runbook, staged and proven: --dry-run shows
    /// the plan, --plan-out saves it for `kcert apply`.
    #[command(name = "rotate-ca", after_help = EXIT_CODES)]
    RotateCa(rotate::RotateArgs),
    /// Run a plan saved with `--plan-out` (renew or rotate-ca), only while every fact it was made from holds.
    #[command(after_help = EXIT_CODES)]
    Apply(apply::ApplyArgs),
    /// Carry an interrupted, paused or stopped run on from its journal.
    #[command(after_help = EXIT_CODES)]
    Resume(resume::ResumeArgs),
    /// Restore every file a run changed, byte for byte, and restart what it restarted,
    /// stage by stage in reverse, down to --to-stage.
    #[command(after_help = EXIT_CODES)]
    Rollback(rollback::RollbackArgs),
    /// The runs recorded in the state dir and how each stands.
    Runs(runs::RunsArgs),
    /// Every TLS trust edge of the cluster as the files stand (and, with --live, by handshakes).
    #[command(after_help = EXIT_CODES)]
    Verify(verify::VerifyArgs),
    /// Print a shell completion script, or the man page (`kcert completions man`).
    Completions(completions::CompletionsArgs),
}

pub fn run(cli: Cli) -> Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Runtime(format!("cannot start the async runtime: {e}")))?;
    match cli.command {
        Command::Check(args) => runtime.block_on(check::run(args)),
        Command::Expiry(args) => runtime.block_on(expiry::run(args)),
        Command::Renew(args) => runtime.block_on(renew::run(args)),
        Command::Rollback(args) => runtime.block_on(rollback::run(args)),
        Command::RotateCa(args) => runtime.block_on(rotate::run(args)),
        Command::Apply(args) => runtime.block_on(apply::run(args)),
        Command::Resume(args) => runtime.block_on(resume::run(args)),
        Command::Runs(args) => runtime.block_on(runs::run(args)),
        Command::Verify(args) => runtime.block_on(verify::run(args)),
        Command::Completions(args) => completions::run(args),
    }
}

/// With `-i` (or `--root`), brings a run the cluster's control plane (the tree) keeps to this machine first (saying
/// which copy it took): the run id to carry on or undo.
async fn from_cluster(reach: crate::ops::runs::Reach<'_>, state_dir: &std::path::Path, run_id: Option<&str>) -> Result<Option<String>> {
    if reach.inventory.is_none() && reach.root.is_none() {
        return Ok(run_id.map(str::to_string));
    }
    let say = |e: &crate::run::Event| {
        if let crate::run::Event::Note { message } = e {
            eprintln!("kcert: {message}");
        }
    };
    Ok(Some(crate::ops::fetch::fetch(reach, state_dir, run_id, &say).await?))
}

fn print(write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>) -> Result<()> {
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    match write(&mut lock) {
        Ok(()) => Ok(()),
        // A closed pipe (`| head`) is not kcert's failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::Runtime(format!("cannot write output: {e}"))),
    }
}

/// Asks on the terminal before a change; refuses without a terminal unless `--yes`.
fn confirm(yes: bool, question: &str, show: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::Usage(format!("{question} refusing to change anything without --yes: there is no terminal to ask on")));
    }
    let mut err = std::io::stderr();
    show(&mut err).map_err(|e| Error::Runtime(e.to_string()))?;
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).map_err(|e| Error::Runtime(e.to_string()))?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(Error::Usage("not confirmed; nothing was changed".into()))
    }
}

/// The outcome of a run's report: a failure is exit 1, and said on stderr too.
fn ran(report: &crate::run::RunReport) -> Outcome {
    match &report.failure {
        Some(f) => {
            eprintln!("kcert: run {} stopped: {f}", report.run_id);
            Outcome::NodeFailures
        }
        None => Outcome::Clean,
    }
}

/// Prints how a changing command ended: the plan it made (shown or saved), or its run.
fn ended(e: crate::ops::Ended, output: crate::render::Format) -> Result<Outcome> {
    use crate::ops::Ended;
    match e {
        Ended::Planned { plan, warnings, saved } => {
            print(|out| crate::render::plan(&plan, &warnings, output, out))?;
            if let Some(s) = saved {
                let keys = s.keys.map(|k| format!("; its new CA keys are in {} (0600)", k.display())).unwrap_or_default();
                eprintln!("kcert: plan {} saved to {}{keys}. Run it with: kcert apply {}", plan.id, s.path.display(), s.path.display());
            }
            Ok(Outcome::Clean)
        }
        Ended::Ran(report) => {
            print(|out| crate::render::run_report(&report, output, out))?;
            Ok(ran(&report))
        }
    }
}

/// The question before a plan runs, with the plan shown first on the terminal.
fn ask_about(yes: bool, question: impl Fn(&crate::plan::Plan) -> String) -> impl Fn(&crate::plan::Plan, &[String]) -> Result<()> {
    move |plan, warnings| confirm(yes, &question(plan), |out| crate::render::plan(plan, warnings, crate::render::Format::Table, out))
}
