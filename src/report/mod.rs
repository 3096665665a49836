//! Owns: the reports that read a cluster and change nothing: `check` (can kcert work on each
//! node), `expiry` (every certificate and when it expires), `verify` (every trust edge).
//! Must not: change a node, or format output (render does).

pub mod check;
pub mod expiry;
pub mod verify;
