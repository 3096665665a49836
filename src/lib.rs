//! kcert: renew and rotate the certificates of self-managed Kubernetes clusters over SSH.
//! Data flows one way: inventory -> discover (over a transport) -> pki model -> report/plan.

pub mod check;
pub mod cli;
pub mod discover;
pub mod etcd;
pub mod error;
pub mod execute;
pub mod expiry;
pub mod fleet;
pub mod gate;
pub mod inventory;
pub mod journal;
pub mod pki;
pub mod plan;
pub mod playbook;
pub mod probe;
pub mod renew;
pub mod render;
pub mod rotate;
pub mod runner;
pub mod store;
pub mod transport;
pub mod verify;
