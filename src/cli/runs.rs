use std::path::PathBuf;

use clap::Args;

use super::print;
use crate::error::{Outcome, Result};
use crate::render::{self, Format};

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Where run journals are (default: $XDG_STATE_HOME/kcert, else ~/.local/state/kcert).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Output format: table, json or yaml.
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Format,
}

pub async fn run(args: RunsArgs) -> Result<Outcome> {
    let state_dir = crate::journal::state_dir(args.state_dir.as_deref())?;
    let list = crate::rotate::runs(&state_dir);
    print(|out| render::runs(&list, args.output, out))?;
    Ok(Outcome::Clean)
}
