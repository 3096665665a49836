//! Owns: reading a node's identity and clock over its transport (a command plus a pure
//! parse): who commands run as, and how far the node's clock is off the operator's.
//! Must not: decide what a skew means beyond the one limit kcert holds clocks to.

use std::time::{SystemTime, UNIX_EPOCH};

use super::transport::{NodeResult, Transport};

pub use crate::pki::sign::MAX_CLOCK_SKEW as MAX_SKEW;

/// The fact that proves root and reads the clock: a command plus a pure parse.
pub const IDENTITY_SCRIPT: &str = "id -u; date -u +%s.%N\n";

fn parse_identity(stdout: &str) -> Result<(u32, f64), String> {
    let mut lines = stdout.lines();
    let uid = lines.next().and_then(|l| l.trim().parse().ok()).ok_or_else(|| format!("unexpected `id -u` output: {stdout:?}"))?;
    let clock = lines
        .next()
        .map(|l| l.trim().replace("%N", "0"))
        .and_then(|l| l.parse().ok())
        .ok_or_else(|| format!("unexpected `date` output: {stdout:?}"))?;
    Ok((uid, clock))
}

/// Who commands run as on the node and how far its clock is off the operator's, in seconds
/// (positive: ahead); the outer error is the node's, the inner one an answer kcert cannot read.
pub async fn identity(t: &dyn Transport) -> NodeResult<Result<(u32, f64), String>> {
    let before = unix_now();
    let out = t.run(IDENTITY_SCRIPT).await?;
    let after = unix_now();
    Ok(parse_identity(&out.stdout_text()).map(|(uid, remote)| (uid, remote - (before + after) / 2.0)))
}

/// How far the node's clock is off the operator's, in seconds (positive: ahead).
pub async fn clock_skew(t: &dyn Transport) -> Result<f64, String> {
    identity(t).await.map_err(|e| e.message)?.map(|(_, skew)| skew)
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_fact_parses() {
        assert_eq!(parse_identity("0\n1700000000.250000000\n").unwrap(), (0, 1_700_000_000.25));
        assert!(parse_identity("root\n").is_err());
    }
}
