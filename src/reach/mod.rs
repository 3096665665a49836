//! Owns: reaching nodes: the user's inventory, the fleet of targets and the one job per node
//! it runs under a concurrency limit, the transports (SSH, local), TLS handshakes from a
//! node, and its clock.
//! Must not: know what a playbook's files mean or what a plan changes; it moves bytes.

pub mod clock;
pub mod fleet;
pub mod inventory;
pub mod probe;
pub mod transport;
