//! Owns: kcert's one error type and the single place where results become exit codes.
//! Must not: print, or decide what a command reports; commands return an `Outcome`.

use std::path::PathBuf;

/// How a command ended when it did not fail outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Everything checked out (exit 0).
    Clean,
    /// `expiry`/`verify` found something inside `--warn`, expired, unreadable or broken (exit 3).
    Findings,
    /// A node could not be reached or a step failed; the rest was still reported (exit 1).
    NodeFailures,
}

impl Outcome {
    /// The worse of two outcomes: a failed node outranks findings, since the report is incomplete.
    pub fn worst(self, other: Outcome) -> Outcome {
        self.max(other)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad flags or arguments (exit 2).
    #[error("{0}")]
    Usage(String),
    /// A problem in an input file at a known place (exit 2).
    #[error("{}:{line}:{column}: {message}", file.display())]
    InputAt { file: PathBuf, line: u64, column: u64, message: String },
    /// A problem with an input file or value, without a line (exit 2).
    #[error("{what}: {message}")]
    Input { what: String, message: String },
    /// Something failed on a node while running (exit 1).
    #[error("{node}: {message}")]
    Node { node: String, message: String },
    /// Anything else that failed while running (exit 1).
    #[error("{0}")]
    Runtime(String),
}

impl Error {
    pub fn input(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Input { what: what.into(), message: message.into() }
    }
    pub fn node(node: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Node { node: node.into(), message: message.into() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILURE: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_FINDINGS: i32 = 3;

/// The one function that decides kcert's exit code.
pub fn exit_code(result: &Result<Outcome>) -> i32 {
    match result {
        Ok(Outcome::Clean) => EXIT_OK,
        Ok(Outcome::Findings) => EXIT_FINDINGS,
        Ok(Outcome::NodeFailures) => EXIT_FAILURE,
        Err(Error::Usage(_) | Error::InputAt { .. } | Error::Input { .. }) => EXIT_USAGE,
        Err(Error::Node { .. } | Error::Runtime(_)) => EXIT_FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_contract() {
        assert_eq!(exit_code(&Ok(Outcome::Clean)), 0);
        assert_eq!(exit_code(&Ok(Outcome::NodeFailures)), 1);
        assert_eq!(exit_code(&Err(Error::Usage("x".into()))), 2);
        assert_eq!(exit_code(&Err(Error::input("a", "b"))), 2);
        assert_eq!(exit_code(&Ok(Outcome::Findings)), 3);
        assert_eq!(exit_code(&Err(Error::node("cp1", "down"))), 1);
    }

    #[test]
    fn failed_nodes_outrank_findings() {
        assert_eq!(Outcome::Findings.worst(Outcome::NodeFailures), Outcome::NodeFailures);
        assert_eq!(Outcome::Clean.worst(Outcome::Findings), Outcome::Findings);
    }
}
