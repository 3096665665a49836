//! Owns: the flag groups several subcommands share, defined once and flattened: which nodes
//! (`TargetArgs`), how a changing run behaves (`RunArgs`), where runs are kept (`StateArgs`),
//! and each command's own list of output formats.
//! Must not: do more than turn flags into library values.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use clap::builder::{PossibleValuesParser, TypedValueParser};

use crate::error::{Error, Result};
use crate::render::Format;
use crate::reach::fleet::Fleet;
use crate::reach::inventory::{self, LoadOptions};

/// The output formats a command can print; anything else is a usage error (exit 2).
pub fn formats(allowed: &'static [Format]) -> impl TypedValueParser<Value = Format> {
    PossibleValuesParser::new(allowed.iter().map(|f| f.as_str())).map(|s| match s.as_str() {
        "json" => Format::Json,
        "yaml" => Format::Yaml,
        "prom" => Format::Prom,
        "dot" => Format::Dot,
        _ => Format::Table,
    })
}

pub const TABLE_JSON_YAML: &[Format] = &[Format::Table, Format::Json, Format::Yaml];

/// Which nodes to work on: an inventory over SSH, or this machine / a directory tree.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Inventory of nodes to reach over SSH: kcert's YAML, or an Ansible/kubespray inventory
    /// (INI or YAML, settings Ansible has no word for in a `kcert.yaml` beside it).
    #[arg(short = 'i', long, value_name = "FILE", conflicts_with = "local", required_unless_present = "local")]
    pub inventory: Option<PathBuf>,
    /// Read the inventory through `ansible-inventory -i FILE --list` (dynamic inventories,
    /// inventory plugins): Ansible resolves it, kcert reads what it prints.
    #[arg(long, requires = "inventory")]
    pub inventory_from_ansible: bool,
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
                &LoadOptions {
                    accept_new_host_keys: self.accept_new_host_keys,
                    connect_timeout: self.connect_timeout,
                    command_timeout: self.command_timeout,
                    from_ansible: self.inventory_from_ansible,
                },
            )?;
            return Fleet::from_inventory(&inv, &self.nodes, self.concurrency.map(|c| c as usize));
        }
        if !self.nodes.is_empty() {
            return Err(Error::Usage("--nodes needs --inventory".into()));
        }
        let playbook = self.distribution.as_deref().map(inventory::load_playbook).transpose()?;
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

/// Where run journals and saved plans' keys are kept.
#[derive(Debug, Args)]
pub struct StateArgs {
    /// Where run journals go (default: $XDG_STATE_HOME/kcert, else ~/.local/state/kcert).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

impl StateArgs {
    pub fn dir(&self) -> Result<PathBuf> {
        crate::run::journal::state_dir(self.state_dir.as_deref())
    }
}

/// What every changing run shares: the question, the state dir, gate patience.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Do not ask for confirmation (needed when there is no terminal to ask on).
    #[arg(short = 'y', long)]
    pub yes: bool,
    #[command(flatten)]
    pub state: StateArgs,
    /// How long a restarted component may take to pass its health gate.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub gate_timeout: Duration,
    /// Take the cluster's lease even when a stale one is there (not renewed for 2 minutes:
    /// its kcert is gone, or cut off). A live lease is never taken.
    #[arg(long)]
    pub break_lease: bool,
}

/// What a failed step leaves behind (runs that go forward: not rollback).
#[derive(Debug, Args)]
pub struct FailureArgs {
    /// On a failed step: roll the current stage back and stop, or stop and leave it for you.
    #[arg(long, value_enum, default_value = "rollback")]
    pub on_failure: OnFailureArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnFailureArg {
    Rollback,
    Pause,
}

impl From<OnFailureArg> for crate::run::OnFailure {
    fn from(a: OnFailureArg) -> Self {
        match a {
            OnFailureArg::Rollback => crate::run::OnFailure::Rollback,
            OnFailureArg::Pause => crate::run::OnFailure::Pause,
        }
    }
}

/// What to do with a plan: `--plan-out FILE` saves it, `--dry-run` shows it, else run it.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Show the plan (each file that changes, old and new, each restart and gate, its proof); change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Save the plan to FILE (gzip-compressed JSON: `gzip -dc FILE | jq` reads it) for `kcert apply FILE` (a rotation's new CA keys go to the state dir, 0600); change nothing.
    #[arg(long, value_name = "FILE", conflicts_with = "dry_run")]
    pub plan_out: Option<PathBuf>,
    /// Workers changed together (default: the inventory's batch_size); control-plane nodes go one at a time.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: Option<u32>,
}

impl PlanArgs {
    pub fn mode(&self) -> crate::ops::Mode {
        match (&self.plan_out, self.dry_run) {
            (Some(p), _) => crate::ops::Mode::PlanOut(p.clone()),
            (None, true) => crate::ops::Mode::DryRun,
            (None, false) => crate::ops::Mode::Run,
        }
    }
    pub fn batch_size(&self) -> Option<usize> {
        self.batch_size.map(|b| b as usize)
    }
}
