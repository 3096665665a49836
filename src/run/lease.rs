//! Owns: the lease that keeps a cluster one changing run's at a time, from any machine: a
//! small record on every control-plane node (`/var/lib/kcert/lease.json`: run, command,
//! operator user and host, pid, start, heartbeat, paused), taken only where no live lease is
//! (compare-and-swap on the node), renewed while the run lives, released when it ends or
//! marked paused when it pauses; and the signal a run is given when its lease is taken away.
//! Must not: decide what a run does, or be touched by a command that changes nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::reach::transport::Transport;

/// Where each control-plane node keeps the lease.
pub const LEASE_PATH: &str = "/var/lib/kcert/lease.json";
/// How often a running kcert renews its lease.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// A lease not renewed for this long is stale: its kcert is gone (or cut off), and only
/// `--break-lease` takes it.
pub const STALE_AFTER: Duration = Duration::from_secs(120);

/// What a lease says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub run_id: String,
    pub command: String,
    pub user: String,
    pub host: String,
    pub pid: u32,
    /// When the holder took it (RFC 3339) and its last renewal (unix seconds, the holder's clock).
    pub since: String,
    pub heartbeat: i64,
    #[serde(default)]
    pub paused: bool,
}

impl Lease {
    fn age(&self, now: i64) -> i64 {
        now - self.heartbeat
    }

    pub fn stale(&self, now: i64) -> bool {
        self.age(now) > STALE_AFTER.as_secs() as i64
    }

    /// Its holder was a process of this machine that is not running any more: gone, or a
    /// zombie (killed, not yet reaped by its parent: a script that killed kcert and did not
    /// wait), whose /proc entry stays until it is reaped.
    fn holder_dead_here(&self) -> bool {
        self.host == this_host() && !running(self.pid)
    }

    /// `run X (rotate-ca) by ops@laptop, pid 42, since T, renewed 5 s ago`.
    pub fn describe(&self, now: i64) -> String {
        let state = if self.paused { ", paused" } else { "" };
        format!("run {} ({}) by {}@{}, pid {}, since {}, renewed {} s ago{state}", self.run_id, self.command, self.user, self.host, self.pid, self.since, self.age(now))
    }
}

/// Whether process `pid` of this machine is running: its /proc/PID/stat is there and its
/// state (the field after the command's closing parenthesis, proc(5)) is neither Z (zombie)
/// nor X (dead).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()).is_some_and(|state| state != "Z" && state != "X"))
}

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "unknown-host".into())
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Why a run should stop between steps (its lease was taken by another kcert), once it should.
pub type StopSignal = Arc<Mutex<Option<String>>>;

/// A lease this kcert holds on every control-plane node.
pub struct Held {
    nodes: Vec<(String, Arc<dyn Transport>)>,
    /// The bytes last written on every node: what each renewal and the release expect.
    current: Arc<Mutex<Vec<u8>>>,
    renew: Option<tokio::task::JoinHandle<()>>,
    pub stop: StopSignal,
}

/// How taking the lease should treat one a run left behind.
#[derive(Debug, Clone, Copy, Default)]
pub struct Taking<'a> {
    /// Take a stale lease (`--break-lease`).
    pub break_stale: bool,
    /// The run being carried on or undone: its own paused lease is its to take.
    pub run_id: Option<&'a str>,
}

fn encode(l: &Lease) -> Vec<u8> {
    let mut b = serde_json::to_vec_pretty(l).expect("leases serialize");
    b.push(b'\n');
    b
}

/// Takes the lease on every node (all or none; the first node before the others): where a node has none; where the
/// holder was a process of this machine that is gone; a paused lease of the run being
/// carried on or undone; a stale one with `--break-lease`. A live lease, or a stale one
/// without `--break-lease`, refuses (exit 2), naming its holder; what was taken is given back.
/// Returns the lease and what was said about leases it took over.
pub async fn take(nodes: Vec<(String, Arc<dyn Transport>)>, run_id: &str, command: &str, how: Taking<'_>) -> Result<(Held, Vec<String>)> {
    let t0 = now();
    let mine = Lease {
        run_id: run_id.to_string(),
        command: command.to_string(),
        user: std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "unknown".into()),
        host: this_host(),
        pid: std::process::id(),
        since: crate::text::rfc3339(t0),
        heartbeat: t0,
        paused: false,
    };
    let bytes = encode(&mine);
    // The first node alone, so that two kcerts starting at once meet there and one of them
    // refuses cleanly; then the others at once.
    let (first, rest) = nodes.split_at(nodes.len().min(1));
    let mut outcomes = Vec::new();
    for group in [first, rest] {
        outcomes.extend(join_all(group.iter().map(|(name, t)| take_one(name, t.as_ref(), &bytes, how, t0))).await);
        if outcomes.iter().any(|o| o.is_err()) {
            break;
        }
    }
    let taken: Vec<(String, Arc<dyn Transport>)> = nodes.iter().zip(&outcomes).filter(|(_, o)| o.is_ok()).map(|(n, _)| n.clone()).collect();
    if let Some(Err(why)) = outcomes.iter().find(|o| o.is_err()) {
        for (_, t) in &taken {
            let _ = t.compare_and_swap(LEASE_PATH, Some(&bytes), None).await;
        }
        return Err(Error::input("the cluster's lease", format!("{why}; nothing was changed")));
    }
    let said: Vec<String> = outcomes.into_iter().filter_map(|o| o.ok().flatten()).collect();
    let current = Arc::new(Mutex::new(bytes));
    let stop: StopSignal = Arc::new(Mutex::new(None));
    let renew = tokio::spawn(renew_loop(taken.clone(), mine, current.clone(), stop.clone()));
    Ok((Held { nodes: taken, current, renew: Some(renew), stop }, said))
}

/// Takes the lease on one node (see `take`): Ok(what was said about a lease taken over), or
/// why not.
async fn take_one(name: &str, t: &dyn Transport, bytes: &[u8], how: Taking<'_>, t0: i64) -> std::result::Result<Option<String>, String> {
    let first = t.compare_and_swap(LEASE_PATH, None, Some(bytes)).await;
    match first {
        Ok(s) if s.swapped => Ok(None),
        Ok(s) => {
            let before = s.before.unwrap_or_default();
            match serde_json::from_slice::<Lease>(&before) {
                Err(e) => Err(format!("{name}: {LEASE_PATH} is not a lease kcert can read ({e}); look at it, and remove it if no kcert runs")),
                Ok(held) => {
                    let why = if held.holder_dead_here() {
                        Some(format!("{name}: took over the lease of {} (that kcert is not running any more)", held.describe(t0)))
                    } else if held.paused && how.run_id == Some(held.run_id.as_str()) {
                        Some(format!("{name}: took over its own paused lease"))
                    } else if held.stale(t0) && how.break_stale {
                        Some(format!("{name}: broke the stale lease of {}", held.describe(t0)))
                    } else {
                        None
                    };
                    match why {
                        Some(w) => match t.compare_and_swap(LEASE_PATH, Some(&before), Some(bytes)).await {
                            Ok(s) if s.swapped => Ok(Some(w)),
                            Ok(_) => Err(format!("{name}: another kcert took the lease at the same moment; nothing was changed")),
                            Err(e) => Err(format!("{name}: {e}")),
                        },
                        None if held.stale(t0) => Err(format!(
                            "{name}: the cluster's lease is stale ({}: not renewed for over {} s): its kcert may be gone; make sure it is, then pass --break-lease",
                            held.describe(t0),
                            STALE_AFTER.as_secs()
                        )),
                        None => Err(format!("{name}: the cluster is leased to {}; wait for it to end (kcert runs -i), or stop it first", held.describe(t0))),
                    }
                }
            }
        }
        Err(e) => Err(format!("{name}: cannot take the lease: {e}")),
    }
}

/// Is `bytes` a lease this very holder wrote (any of its heartbeats)?
fn ours(mine: &Lease, bytes: &[u8]) -> bool {
    serde_json::from_slice::<Lease>(bytes).is_ok_and(|l| l.run_id == mine.run_id && l.pid == mine.pid && l.host == mine.host && l.since == mine.since)
}

/// Replaces this holder's lease on one node, whichever of its heartbeats the node holds (a
/// renewal that reached some nodes and not others leaves them apart). Err(who holds it) when
/// it is not this holder's any more.
async fn swap_ours(t: &dyn Transport, mine: &Lease, expect: &[u8], new: Option<&[u8]>) -> std::result::Result<Result<(), String>, String> {
    let s = t.compare_and_swap(LEASE_PATH, Some(expect), new).await.map_err(|e| e.message)?;
    if s.swapped || s.before.as_deref() == new {
        return Ok(Ok(()));
    }
    match s.before {
        Some(b) if ours(mine, &b) => {
            let again = t.compare_and_swap(LEASE_PATH, Some(&b), new).await.map_err(|e| e.message)?;
            Ok(if again.swapped { Ok(()) } else { Err("another kcert".into()) })
        }
        other => Ok(Err(other.and_then(|b| serde_json::from_slice::<Lease>(&b).ok()).map(|l| l.describe(now())).unwrap_or_else(|| "nobody".into()))),
    }
}

/// Renews the lease every `HEARTBEAT` on every node; a node where it is no longer this
/// holder's (another kcert broke it) sets the stop signal and ends the renewals. A node that
/// cannot be reached this time is tried again next time.
async fn renew_loop(nodes: Vec<(String, Arc<dyn Transport>)>, mut lease: Lease, current: Arc<Mutex<Vec<u8>>>, stop: StopSignal) {
    let mine = lease.clone();
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        lease.heartbeat = now();
        let next = encode(&lease);
        let prev = current.lock().expect("lease lock").clone();
        for (name, t) in &nodes {
            if let Ok(Err(who)) = swap_ours(t.as_ref(), &mine, &prev, Some(&next)).await {
                *stop.lock().expect("stop lock") = Some(format!("{name}: this run's lease was taken away (it is now {who}): the run stopped as it stands"));
                return;
            }
        }
        *current.lock().expect("lease lock") = next;
    }
}

impl Held {
    async fn swap_to(&mut self, new: Option<Vec<u8>>) -> Vec<String> {
        if let Some(h) = self.renew.take() {
            h.abort();
        }
        let prev = self.current.lock().expect("lease lock").clone();
        let Ok(mine) = serde_json::from_slice::<Lease>(&prev) else { return vec!["the lease cannot be read back".into()] };
        // Each node's lease is swapped on its own, so all at once (taking it goes in order).
        let swaps = futures::future::join_all(self.nodes.iter().map(|(_, t)| swap_ours(t.as_ref(), &mine, &prev, new.as_deref()))).await;
        let mut failed = Vec::new();
        for ((name, _), swapped) in self.nodes.iter().zip(swaps) {
            match swapped {
                Ok(Ok(())) => {}
                Ok(Err(who)) => failed.push(format!("{name}: the lease there is no longer this run's (it is {who}); left as it is")),
                Err(e) => failed.push(format!("{name}: the lease could not be given back: {e}")),
            }
        }
        failed
    }

    /// Gives the lease back on every node (the run finished, stopped or was undone); what
    /// could not be given back is said.
    pub async fn release(mut self) -> Vec<String> {
        self.swap_to(None).await
    }

    /// Keeps the lease, marked paused: the run may be carried on or undone later (by this run
    /// only), and no other run starts meanwhile.
    pub async fn pause(mut self) -> Vec<String> {
        let prev = self.current.lock().expect("lease lock").clone();
        let Ok(mut l) = serde_json::from_slice::<Lease>(&prev) else { return vec!["the lease cannot be read back".into()] };
        l.paused = true;
        l.heartbeat = now();
        self.swap_to(Some(encode(&l))).await
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(h) = self.renew.take() {
            h.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reach::transport::LocalTransport;

    fn node(root: &std::path::Path) -> Vec<(String, Arc<dyn Transport>)> {
        vec![("cp1".to_string(), Arc::new(LocalTransport::new("cp1", Some(root.to_path_buf()))) as Arc<dyn Transport>)]
    }

    fn lease(root: &std::path::Path) -> Lease {
        serde_json::from_slice(&std::fs::read(root.join("var/lib/kcert/lease.json")).unwrap()).unwrap()
    }

    fn put(root: &std::path::Path, l: &Lease) {
        std::fs::write(root.join("var/lib/kcert/lease.json"), encode(l)).unwrap();
    }

    #[tokio::test]
    async fn one_run_holds_the_lease_and_a_stale_one_is_taken_only_when_broken() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let (held, said) = take(node(root), "run-a", "rotate-ca", Taking::default()).await.unwrap();
        assert!(said.is_empty());
        let l = lease(root);
        assert_eq!((l.run_id.as_str(), l.pid, l.paused), ("run-a", std::process::id(), false));
        // Another live holder (this process is alive): refused, naming the holder.
        let err = take(node(root), "run-b", "renew", Taking { break_stale: true, run_id: None }).await.err().unwrap().to_string();
        assert!(err.contains("leased to run run-a (rotate-ca)") && err.contains("nothing was changed"), "{err}");
        // Paused: only that run takes it back.
        assert!(held.pause().await.is_empty());
        assert!(lease(root).paused);
        assert!(take(node(root), "run-b", "renew", Taking::default()).await.is_err());
        let (held, said) = take(node(root), "run-a", "resume", Taking { break_stale: false, run_id: Some("run-a") }).await.unwrap();
        assert!(said[0].contains("its own paused lease"), "{said:?}");
        // A renewal that reached this node and not the others leaves another heartbeat of the
        // same holder here: still its own, given back all the same.
        let mut l = lease(root);
        l.heartbeat += 10;
        put(root, &l);
        assert!(held.release().await.is_empty());
        assert!(!root.join("var/lib/kcert/lease.json").exists(), "released: gone");
        // Another machine's lease whose heartbeat is old: stale; refused, then broken.
        let old = Lease { run_id: "run-c".into(), command: "renew".into(), user: "ann".into(), host: "elsewhere".into(), pid: 1, since: "2026-01-01T00:00:00Z".into(), heartbeat: now() - 600, paused: false };
        put(root, &old);
        let err = take(node(root), "run-d", "renew", Taking::default()).await.err().unwrap().to_string();
        assert!(err.contains("stale") && err.contains("--break-lease") && err.contains("ann@elsewhere"), "{err}");
        assert_eq!(lease(root), old, "a refusal changes nothing");
        let (held, said) = take(node(root), "run-d", "renew", Taking { break_stale: true, run_id: None }).await.unwrap();
        assert!(said[0].contains("broke the stale lease of run run-c"), "{said:?}");
        drop(held);
        // A lease whose kcert was a process of this machine that is gone is taken without asking.
        let gone = Lease { host: this_host(), pid: u32::MAX - 1, heartbeat: now(), ..old };
        put(root, &gone);
        let (held, said) = take(node(root), "run-e", "renew", Taking::default()).await.unwrap();
        assert!(said[0].contains("not running any more"), "{said:?}");
        drop(held);
        // So is one whose kcert was killed and not reaped: a zombie keeps its /proc entry.
        let mut child = std::process::Command::new("sh").arg("-c").arg("exit 0").spawn().unwrap();
        let pid = child.id();
        let stat = format!("/proc/{pid}/stat");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !std::fs::read_to_string(&stat).unwrap().contains(") Z ") {
            assert!(std::time::Instant::now() < deadline, "the child never became a zombie");
            std::thread::yield_now();
        }
        put(root, &Lease { host: this_host(), pid, heartbeat: now(), ..lease(root) });
        let (_, said) = take(node(root), "run-f", "renew", Taking::default()).await.unwrap();
        assert!(said[0].contains("not running any more"), "a zombie holder: {said:?}");
        child.wait().unwrap();
        assert!(running(std::process::id()), "this process runs");
    }
}
