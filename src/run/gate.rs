//! Owns: making live checks of trust edges: a real TLS handshake plus one HTTP request from
//! the client's node, with the client's own cert, key and trust file read fresh from that
//! node; retried until they pass or patience runs out. Health gates and `verify --live`.
//! Must not: print, or keep key material beyond one check.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::pki::kubeconfig;
use crate::plan::gates::{Check, Src};
use crate::reach::fleet::Connected;
use crate::reach::probe::{Handshake, request};
use crate::reach::transport::{FileData, Transport};

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub edge: String,
    pub from: String,
    pub to: String,
    pub endpoint: String,
    pub ok: bool,
    pub detail: String,
}

/// Reads a check's material on the client's node and makes the exchange once.
async fn run_once(t: &dyn Transport, c: &Check, timeout: Duration) -> Result<(), String> {
    let path = c.path.as_deref().unwrap_or("/version");
    let (status, _) = call(t, c, path, None, timeout).await?;
    match (&c.path, status) {
        (None, _) | (_, 200) => Ok(()),
        (Some(p), s) => Err(format!("GET {p} answered HTTP {s}{}", if s == 400 { " (client certificate rejected)" } else { "" })),
    }
}

/// One request along a check's edge with the client's own material, read fresh from its
/// node: a GET of `path`, or a POST of the JSON `post`. Returns the status and the body.
pub async fn call(t: &dyn Transport, c: &Check, path: &str, post: Option<&str>, timeout: Duration) -> Result<(u16, Vec<u8>), String> {
    let mut wanted: Vec<String> = Vec::new();
    for s in [&c.trust, &c.cert, &c.key].into_iter().flatten() {
        let p = match s {
            Src::File(p) | Src::Kubeconfig(p, _) => p,
        };
        if !wanted.contains(p) {
            wanted.push(p.clone());
        }
    }
    let data = t.read_files(&wanted).await.map_err(|e| e.message)?;
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (p, d) in wanted.iter().zip(data) {
        if let FileData::Found(b) = d {
            files.insert(p.clone(), b);
        }
    }
    // Kubeconfig references to other files: read those too.
    let mut refs: Vec<String> = Vec::new();
    for s in [&c.cert, &c.key, &c.trust].into_iter().flatten() {
        if let Src::Kubeconfig(p, _) = s
            && let Some(id) = files.get(p).and_then(|b| kubeconfig::identity(b).ok())
        {
            for r in id.referenced(p) {
                if !files.contains_key(&r) && !refs.contains(&r) {
                    refs.push(r);
                }
            }
        }
    }
    if !refs.is_empty() {
        for (p, d) in refs.iter().zip(t.read_files(&refs).await.map_err(|e| e.message)?) {
            if let FileData::Found(b) = d {
                files.insert(p.clone(), b);
            }
        }
    }
    let material = |s: &Option<Src>| -> Result<Option<Vec<u8>>, String> {
        match s {
            None => Ok(None),
            Some(Src::File(p)) => files.get(p).cloned().map(Some).ok_or_else(|| format!("{p}: missing")),
            Some(Src::Kubeconfig(p, which)) => {
                let bytes = files.get(p).ok_or_else(|| format!("{p}: missing"))?;
                kubeconfig::identity(bytes).map_err(|e| format!("{p}: {e}"))?.load(*which, p, &files)
            }
        }
    };
    let trust = material(&c.trust)?;
    let cert = material(&c.cert)?;
    let key = material(&c.key)?;
    let h = Handshake { server_name: &c.server_name, trust_pem: trust.as_deref(), client_cert_pem: cert.as_deref(), client_key_pem: key.as_deref(), path };
    request(t, &c.host, c.port, &h, post, timeout).await
}

const PER_NODE: usize = 4;

/// Runs checks (each from its client's node), retrying each until it passes or `patience`
/// runs out: a component that was just restarted needs a moment to come back.
pub async fn run(nodes: &Connected, checks: &[Check], patience: Duration) -> Vec<CheckResult> {
    run_watched(nodes, checks, patience, &|_, _| {}).await
}

/// How long a check may keep failing before `waiting` is told what it waits for (and again
/// after each such interval).
const SAY_WAITING_EVERY: Duration = Duration::from_secs(5);

/// `run`, telling `waiting` (with the client node's name) which edge a long wait is for.
pub async fn run_watched(nodes: &Connected, checks: &[Check], patience: Duration, waiting: &(dyn Fn(&str, String) + Sync)) -> Vec<CheckResult> {
    // A few exchanges at a time per node: dozens of channels opened at once on one SSH
    // connection make some wait past their timeout.
    let permits: BTreeMap<&str, tokio::sync::Semaphore> = nodes.names().map(|n| (n, tokio::sync::Semaphore::new(PER_NODE))).collect();
    let tasks = checks.iter().map(|c| {
        let node = nodes.get(&c.from);
        let permits = &permits;
        async move {
            let _permit = match permits.get(c.from.as_str()) {
                Some(p) => Some(p.acquire().await.expect("never closed")),
                None => None,
            };
            let start = Instant::now();
            let deadline = start + patience;
            let mut said = start;
            let result = match node {
                None => Err(format!("node {} is not part of this run", c.from)),
                Some(n) => loop {
                    let r = run_once(n.as_ref(), c, Duration::from_secs(5)).await;
                    if r.is_ok() || Instant::now() >= deadline {
                        break r;
                    }
                    if said.elapsed() >= SAY_WAITING_EVERY {
                        said = Instant::now();
                        let last = r.as_ref().err().map(String::as_str).unwrap_or_default();
                        waiting(&c.from, format!("waiting for edge {} ({} -> {} at {}:{}), {}s of {}s: {last}", c.edge, c.from, c.to, c.host, c.port, start.elapsed().as_secs(), patience.as_secs()));
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                },
            };
            CheckResult {
                edge: c.edge.clone(),
                from: c.from.clone(),
                to: c.to.clone(),
                endpoint: format!("{}:{}", c.host, c.port),
                ok: result.is_ok(),
                detail: result.err().unwrap_or_default(),
            }
        }
    });
    futures::future::join_all(tasks).await
}

