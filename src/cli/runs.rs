//! Owns: `kcert runs`: the runs in the state dir, as a table, JSON or YAML.
//! Must not: read journals itself (`ops::runs::list` does).

use clap::Args;

use super::args::{StateArgs, TABLE_JSON_YAML, formats};
use super::print;
use crate::error::{Outcome, Result};
use crate::render::{self, Format};

#[derive(Debug, Args)]
pub struct RunsArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// Output format: table, json or yaml.
    #[arg(short, long, default_value = "table", value_parser = formats(TABLE_JSON_YAML))]
    pub output: Format,
}

pub fn run(args: RunsArgs) -> Result<Outcome> {
    let list = crate::ops::runs::list(&args.state.dir()?);
    print(|out| render::runs(&list, args.output, out))?;
    Ok(Outcome::Clean)
}
