//! Owns: the command line: flags, their mapping to library options, progress display,
//! and printing results through `render`. One file per subcommand.
//! Must not: hold logic a library user would need; that lives in the library modules.

mod apply;
mod check;
mod completions;
mod expiry;
mod renew;
mod resume;
mod rollback;
mod rotate;
mod runs;
mod verify;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{Error, Outcome, Result};
use crate::fleet::{Event, Fleet};
use crate::inventory::{self, LoadOptions};
use crate::playbook;

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
    /// back up, write atomically, restart what reads them, and gate on live handshakes.
    #[command(after_help = EXIT_CODES)]
    Renew(renew::RenewArgs),
    /// Rotate the cluster's CAs by the official runbook, staged and proven: --dry-run shows
    /// the plan, --plan-out saves it for `kcert apply`.
    #[command(name = "rotate-ca", after_help = EXIT_CODES)]
    RotateCa(rotate::RotateArgs),
    /// Run a plan saved with `rotate-ca --plan-out`, only while every fact it was made from holds.
    #[command(after_help = EXIT_CODES)]
    Apply(apply::ApplyArgs),
    /// Carry an interrupted or stopped rotate-ca run on from its journal.
    #[command(after_help = EXIT_CODES)]
    Resume(resume::ResumeArgs),
    /// Restore every file a run changed, byte for byte, and restart what it restarted
    /// (a rotate-ca run stage by stage, in reverse, down to --to-stage).
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

/// Which nodes to work on: an inventory over SSH, or this machine / a directory tree.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Inventory of nodes to reach over SSH.
    #[arg(short = 'i', long, value_name = "FILE", conflicts_with = "local", required_unless_present = "local")]
    pub inventory: Option<PathBuf>,
    /// Work on this machine instead of an inventory.
    #[arg(long)]
    pub local: bool,
    /// With --local: read a directory laid out like a node's filesystem (offline: files only).
    #[arg(long, value_name = "DIR", requires = "local")]
    pub root: Option<PathBuf>,
    /// Also scan this file or directory on every node (repeatable; inside --root when given).
    #[arg(long = "path", value_name = "FILE|DIR")]
    pub paths: Vec<String>,
    /// With --local: the playbook to use (kubeadm, k3s, rke2, or a path); default: detected.
    #[arg(long, value_name = "NAME", requires = "local")]
    pub distribution: Option<String>,
    /// Only these nodes (comma-separated names from the inventory).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub nodes: Vec<String>,
    /// Nodes worked on at once (default: the inventory's `concurrency`, else 10).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: Option<u32>,
    /// Record host keys not yet in known_hosts (like OpenSSH's accept-new); changed keys are always refused.
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// Give up connecting to a node after this long.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub connect_timeout: Option<Duration>,
    /// Give up on one command on a node after this long.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub command_timeout: Option<Duration>,
}

impl TargetArgs {
    pub fn fleet(&self) -> Result<Fleet> {
        if let Some(path) = &self.inventory {
            let inv = inventory::load(
                path,
                &LoadOptions { accept_new_host_keys: self.accept_new_host_keys, connect_timeout: self.connect_timeout, command_timeout: self.command_timeout },
            )?;
            return Fleet::from_inventory(&inv, &self.nodes, self.concurrency.map(|c| c as usize));
        }
        if !self.nodes.is_empty() {
            return Err(Error::Usage("--nodes needs --inventory".into()));
        }
        let playbook = self.distribution.as_deref().map(playbook::load).transpose()?;
        Fleet::local(self.root.clone(), playbook)
    }

    /// `--path` values are node paths: absolute, or made so against the root.
    pub fn extra_paths(&self) -> Result<Vec<String>> {
        self.paths
            .iter()
            .map(|p| {
                if p.starts_with('/') {
                    Ok(p.clone())
                } else if self.local && self.root.is_none() {
                    std::path::absolute(p).map(|a| a.to_string_lossy().into_owned()).map_err(|e| Error::Usage(format!("--path {p}: {e}")))
                } else {
                    Err(Error::Usage(format!("--path {p:?}: must be absolute (a path on the node, or inside --root)")))
                }
            })
            .collect()
    }
}

/// A progress bar on stderr while nodes are worked on, only when stderr is a terminal.
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(fleet: &Fleet, what: &str) -> Progress {
        let show = std::io::stderr().is_terminal() && fleet.targets.len() > 1;
        let bar = show.then(|| {
            let bar = ProgressBar::new(fleet.targets.len() as u64);
            bar.set_style(ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} nodes").expect("valid template").progress_chars("=> "));
            bar.set_message(what.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress { bar }
    }

    pub fn observe(&self, event: &Event) {
        match event {
            Event::NodeStarted { node } => tracing::debug!(node, "started"),
            Event::NodeFinished { node, ok } => {
                tracing::debug!(node, ok, "finished");
                if let Some(b) = &self.bar {
                    b.inc(1);
                }
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
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

pub fn print(write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>) -> Result<()> {
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
pub fn confirm(yes: bool, question: &str, show: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>) -> Result<()> {
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

/// A changing run's bar on stderr: only on a terminal, never with NO_COLOR set.
fn changing_bar(len: usize, unit: &str, what: &str) -> Option<ProgressBar> {
    let show = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && len > 0;
    show.then(|| {
        let bar = ProgressBar::new(len as u64);
        bar.set_style(ProgressStyle::with_template(&format!("{{spinner}} {{prefix}} [{{bar:30}}] {{pos}}/{{len}} {unit}  {{msg}}")).expect("valid template").progress_chars("=> "));
        bar.set_prefix(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    })
}

/// Progress of a changing run: a bar of nodes done, and what each node is doing, on a terminal.
pub struct StepProgress {
    bar: Option<ProgressBar>,
}

pub fn step_progress(nodes: usize, what: &str) -> StepProgress {
    StepProgress { bar: changing_bar(nodes, "nodes", what) }
}

impl StepProgress {
    pub fn observe(&self, step: &crate::execute::Step) {
        use crate::execute::Step;
        match step {
            Step::Node { node, what } => {
                tracing::info!(node, "{what}");
                if let Some(b) = &self.bar {
                    b.set_message(format!("{node}: {what}"));
                }
            }
            Step::NodeDone { node, ok } => {
                tracing::info!(node, ok, "node done");
                if let Some(b) = &self.bar {
                    b.inc(1);
                }
            }
        }
    }
}

impl Drop for StepProgress {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// What changing runs share: confirmation, the state dir, gate patience, what a failure leaves.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Do not ask for confirmation (needed when there is no terminal to ask on).
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Where run journals go (default: $XDG_STATE_HOME/kcert, else ~/.local/state/kcert).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// How long a restarted component may take to pass its health gate.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub gate_timeout: Duration,
    /// On a failed step: roll the current stage back and stop, or stop and leave it for you.
    #[arg(long, value_enum, default_value = "rollback")]
    pub on_failure: OnFailureArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnFailureArg {
    Rollback,
    Pause,
}

impl From<OnFailureArg> for crate::runner::OnFailure {
    fn from(a: OnFailureArg) -> Self {
        match a {
            OnFailureArg::Rollback => crate::runner::OnFailure::Rollback,
            OnFailureArg::Pause => crate::runner::OnFailure::Pause,
        }
    }
}

/// The fleet a saved plan or a run reaches: an inventory, else the root directory it was made on.
pub fn fleet_of(inventory: Option<&PathBuf>, root: Option<&PathBuf>, distribution: &str) -> Result<Fleet> {
    match (inventory, root) {
        (Some(inv), _) => {
            let inv = inventory::load(inv, &LoadOptions::default())?;
            Fleet::from_inventory(&inv, &[], None)
        }
        (None, Some(root)) => Fleet::local(Some(root.clone()), Some(playbook::load(distribution)?)),
        (None, None) => Fleet::local(None, Some(playbook::load(distribution)?)),
    }
}

/// Progress of a staged run: one bar over every step of every stage, and what is going on.
pub struct StageProgress {
    bar: Option<ProgressBar>,
}

pub fn stage_progress(plan: &crate::plan::rotation::RotationPlan, what: &str) -> StageProgress {
    let steps: usize = plan.stages.iter().map(|s| s.steps.len()).sum();
    StageProgress { bar: changing_bar(steps, "steps", what) }
}

impl StageProgress {
    pub fn observe(&self, e: &crate::runner::Event) {
        use crate::runner::Event;
        match e {
            Event::Stage { id, name } => {
                tracing::info!(stage = id.as_str(), "{name}");
                if let Some(b) = &self.bar {
                    b.set_message(format!("{id} {name}"));
                }
            }
            Event::Step { stage, index, of, label } => {
                tracing::info!(stage = stage.as_str(), step = index + 1, of, "{label}");
                if let Some(b) = &self.bar {
                    b.set_message(format!("{stage} step {}/{of}: {label}", index + 1));
                }
            }
            Event::Node { node, what } => {
                tracing::info!(node = node.as_str(), "{what}");
                if let Some(b) = &self.bar {
                    b.set_message(format!("{node}: {what}"));
                }
            }
            Event::StepDone { stage, index, ok } => {
                tracing::info!(stage = stage.as_str(), step = index + 1, ok, "step done");
                if let Some(b) = &self.bar {
                    b.inc(1);
                }
            }
            Event::Note { message } => {
                tracing::info!("{message}");
                if let Some(b) = &self.bar {
                    b.println(message);
                }
            }
        }
    }
}

impl Drop for StageProgress {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
