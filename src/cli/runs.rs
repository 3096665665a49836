//! Owns: `kcert runs`: the runs in the state dir, or (`-i`) those the cluster's control-plane
//! nodes keep, as a table, JSON or YAML.
//! Must not: read journals itself (`ops::runs::list` and `ops::fetch::cluster_runs` do).

use clap::Args;

use super::args::{StateArgs, TABLE_JSON_YAML, formats};
use super::print;
use crate::error::{Outcome, Result};
use crate::render::{self, Format};

#[derive(Debug, Args)]
pub struct RunsArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// The runs this inventory's control-plane nodes keep a copy of (any machine's), instead
    /// of those in this machine's state dir.
    #[arg(short = 'i', long, value_name = "FILE", conflicts_with = "root")]
    pub inventory: Option<std::path::PathBuf>,
    /// Read that inventory through `ansible-inventory -i FILE --list` (dynamic inventories).
    #[arg(long, requires = "inventory")]
    pub inventory_from_ansible: bool,
    /// The runs this directory tree (laid out like a node) keeps a copy of.
    #[arg(long, value_name = "DIR")]
    pub root: Option<std::path::PathBuf>,
    /// Output format: table, json or yaml.
    #[arg(short, long, default_value = "table", value_parser = formats(TABLE_JSON_YAML))]
    pub output: Format,
}

pub async fn run(args: RunsArgs) -> Result<Outcome> {
    let list = match (&args.inventory, &args.root) {
        (None, None) => crate::ops::runs::list(&args.state.dir()?),
        (inventory, root) => crate::ops::fetch::cluster_runs(crate::ops::runs::Reach { inventory: inventory.as_deref(), root: root.as_deref(), from_ansible: args.inventory_from_ansible }, &args.state.dir()?).await?,
    };
    print(|out| render::runs(&list, args.output, out))?;
    Ok(Outcome::Clean)
}
