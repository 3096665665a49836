//! kcert: renew and rotate the certificates of self-managed Kubernetes clusters over SSH.
//! Data flows one way, and so do the imports, each layer using only those below it:
//!
//!   cli -> render, ops -> report -> run -> plan -> gather -> reach -> playbook -> pki -> text, error
//!
//! `pki`, `playbook`, `plan` and `gather::facts` do no I/O; `build.rs` refuses a change that
//! imports upward or brings I/O into them.

pub mod cli;
pub mod error;
pub mod fault;
pub mod gather;
pub mod ops;
pub mod pki;
pub mod par;
pub mod plan;
pub mod playbook;
pub mod reach;
pub mod render;
pub mod report;
pub mod run;
pub mod text;
