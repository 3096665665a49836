//! Owns: every change kcert makes, as data: the schema of a plan (stages of steps: file writes
//! with keyless recipes, restarts, gates), the trust model it is proven on, the proof that a
//! plan keeps every TLS edge working after every write and restart, and the two planners
//! (renew, rotation) that make plans from gathered facts.
//! Must not: do I/O; callers gather the facts and the runner carries the steps out.

pub mod build;
pub mod gates;
pub mod model;
pub mod outcome;
pub mod parts;
pub mod prove;
pub mod read;
pub mod recipe;
pub mod reissue;
pub mod reissue_ca;
pub mod replay;
pub mod renew;
pub mod rotation;
pub mod schema;
pub mod stored;
pub mod tokens;

pub use schema::{Kind, Plan, StageId};
