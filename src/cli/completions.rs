//! Owns: `kcert completions SHELL`: shell completion scripts and the man page, from clap.
//! Must not: touch anything but stdout.

use clap::{Args, CommandFactory};

use super::Cli;
use crate::error::{Error, Outcome, Result};

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish, powershell, or `man` for the man page (roff).
    pub shell: String,
}

pub fn run(args: CompletionsArgs) -> Result<Outcome> {
    let mut cmd = Cli::command();
    let mut out = std::io::stdout();
    if args.shell == "man" {
        clap_mangen::Man::new(cmd).render(&mut out).map_err(|e| Error::Runtime(e.to_string()))?;
        return Ok(Outcome::Clean);
    }
    let shell: clap_complete::Shell = args.shell.parse().map_err(|_| Error::Usage(format!("unknown shell {:?}: bash, zsh, fish, elvish, powershell or man", args.shell)))?;
    clap_complete::generate(shell, &mut cmd, "kcert", &mut out);
    Ok(Outcome::Clean)
}
