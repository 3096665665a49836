//! Owns: live checks of trust edges: for every edge the playbook knows, a real TLS handshake
//! plus one HTTP request from the client's node, with the client's own cert, key and trust
//! file, read fresh from that node. Used as health gates after changes and by `verify --live`.
//! Must not: print, or keep key material beyond one check.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::discover::NodePki;
use crate::pki::kubeconfig::{self, Material};
use crate::playbook::Playbook;
use crate::probe::{Handshake, request};
use crate::transport::{FileData, Transport};

/// What a node is to the checks: how to reach it, its address, what it holds.
pub struct NodeView {
    pub name: String,
    pub address: String,
    pub t: Arc<dyn Transport>,
    pub pki: NodePki,
}

/// Where a check's TLS material comes from on the client's node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Src {
    File(String),
    /// A kubeconfig's current user/cluster: (kubeconfig path, which part).
    Kubeconfig(String, Part),
}

/// Which of a kubeconfig's credentials a check uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Part {
    Ca,
    Cert,
    Key,
}

/// One live check: from node `from`, dial `host:port`, handshake, GET `path`. Plain data
/// (paths and addresses, never key bytes), so a saved plan carries its gates.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    pub edge: String,
    pub from: String,
    pub to: String,
    pub host: String,
    pub port: u16,
    pub server_name: String,
    pub trust: Option<Src>,
    pub cert: Option<Src>,
    pub key: Option<Src>,
    /// None: any HTTP answer proves the handshake (etcd's peer port).
    pub path: Option<String>,
}

impl Check {
    pub fn label(&self) -> String {
        format!("{} ({} -> {}:{})", self.edge, self.from, self.to, self.port)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub edge: String,
    pub from: String,
    pub to: String,
    pub endpoint: String,
    pub ok: bool,
    pub detail: String,
}

fn url_host_port(url: &str, default_port: u16) -> Option<(String, u16)> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let hostport = rest.split('/').next()?;
    if let Some(v6) = hostport.strip_prefix('[') {
        let (h, p) = v6.split_once(']')?;
        return Some((h.to_string(), p.trim_start_matches(':').parse().unwrap_or(default_port)));
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((hostport.to_string(), default_port)),
    }
}

/// Every live check the playbook's edges give for these nodes.
pub fn checks(pb: &Playbook, nodes: &[NodeView], kubeconfig_servers: &BTreeMap<(String, String), String>) -> Vec<Check> {
    let mut out = Vec::new();
    for e in &pb.edges {
        let Some(port) = e.server.endpoint else { continue };
        let server_comp = e.server.component.as_deref();
        for client in nodes {
            let side = |key: &Option<String>| key.as_ref().and_then(|k| client.pki.path_of(e.client.component.as_deref(), k)).map(|p| Src::File(p.to_string()));
            // Kubeconfig clients dial the server their kubeconfig names.
            for kc in &e.client.kubeconfigs {
                let Some(path) = client.pki.named.get(kc) else { continue };
                let Some(server) = kubeconfig_servers.get(&(client.name.clone(), path.clone())) else { continue };
                let Some((host, p)) = url_host_port(server, port) else { continue };
                let to = nodes.iter().find(|n| n.address == host).map(|n| n.name.clone()).unwrap_or_else(|| host.clone());
                out.push(Check {
                    edge: format!("{kc} -> {}", server_comp.unwrap_or("server")),
                    from: client.name.clone(),
                    to,
                    host: host.clone(),
                    port: p,
                    server_name: host,
                    trust: Some(Src::Kubeconfig(path.clone(), Part::Ca)),
                    cert: Some(Src::Kubeconfig(path.clone(), Part::Cert)),
                    key: Some(Src::Kubeconfig(path.clone(), Part::Key)),
                    path: e.server.path.clone(),
                });
            }
            if !e.client.kubeconfigs.is_empty() {
                continue;
            }
            let (Some(cert), Some(key)) = (side(&e.client.cert), side(&e.client.key)) else { continue };
            if let Some(c) = &e.client.component
                && !client.pki.components.contains_key(c)
            {
                continue;
            }
            let peer_edge = e.client.component.is_some() && e.client.component == e.server.component;
            for server in nodes {
                let Some(sc) = server_comp else { continue };
                if !server.pki.components.contains_key(sc) {
                    continue;
                }
                let local = server.name == client.name;
                // Peers check each other member; other edges stay on the node unless the
                // server is reached over the network anyway (kubelets).
                if peer_edge && local {
                    continue;
                }
                if !peer_edge && !local && sc != "kubelet" {
                    continue;
                }
                let ep = server.pki.endpoints.iter().find(|x| x.component == sc && x.port == port);
                let host = match ep {
                    Some(x) if local || (x.host != "127.0.0.1" && x.host != "localhost") => x.host.clone(),
                    _ if local => "127.0.0.1".to_string(),
                    _ => server.address.clone(),
                };
                let port = ep.map(|x| x.port).unwrap_or(port);
                out.push(Check {
                    edge: e.name.clone(),
                    from: client.name.clone(),
                    to: server.name.clone(),
                    host: host.clone(),
                    port,
                    server_name: host,
                    trust: side(&e.client.trusts),
                    cert: Some(cert.clone()),
                    key: Some(key.clone()),
                    path: e.server.path.clone(),
                });
            }
        }
    }
    out
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
    let mut refs = Vec::new();
    for s in [&c.cert, &c.key, &c.trust].into_iter().flatten() {
        if let Src::Kubeconfig(p, _) = s
            && let Some(b) = files.get(p)
            && let Ok(id) = kubeconfig::identity(b)
        {
            for m in [id.ca, id.cert, id.key].into_iter().flatten() {
                if let Material::Path(rel) = m {
                    refs.push(kubeconfig::resolve_reference(p, &rel));
                }
            }
        }
    }
    refs.retain(|p| !files.contains_key(p));
    refs.dedup();
    if !refs.is_empty() {
        for (p, d) in refs.iter().zip(t.read_files(&refs).await.map_err(|e| e.message)?) {
            if let FileData::Found(b) = d {
                files.insert(p.clone(), b);
            }
        }
    }
    let material = |s: &Option<Src>| -> Result<Option<Vec<u8>>, String> {
        let Some(s) = s else { return Ok(None) };
        match s {
            Src::File(p) => files.get(p).cloned().map(Some).ok_or_else(|| format!("{p}: missing")),
            Src::Kubeconfig(p, which) => {
                let bytes = files.get(p).ok_or_else(|| format!("{p}: missing"))?;
                let id = kubeconfig::identity(bytes).map_err(|e| format!("{p}: {e}"))?;
                let m = match which {
                    Part::Ca => id.ca,
                    Part::Cert => id.cert,
                    Part::Key => id.key,
                };
                match m {
                    None => Ok(None),
                    Some(Material::Data(d)) => Ok(Some(d)),
                    Some(Material::Path(rel)) => {
                        let abs = kubeconfig::resolve_reference(p, &rel);
                        Ok(Some(files.get(&abs).cloned().ok_or_else(|| format!("{abs}: referenced by {p}; read it first"))?))
                    }
                }
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
pub async fn run(nodes: &[NodeView], checks: &[Check], patience: Duration) -> Vec<CheckResult> {
    let by_name: BTreeMap<&str, &NodeView> = nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    // A few exchanges at a time per node: dozens of channels opened at once on one SSH
    // connection make some wait past their timeout.
    let permits: BTreeMap<&str, tokio::sync::Semaphore> = nodes.iter().map(|n| (n.name.as_str(), tokio::sync::Semaphore::new(PER_NODE))).collect();
    let tasks = checks.iter().map(|c| {
        let node = by_name.get(c.from.as_str()).copied();
        let permits = &permits;
        async move {
            let _permit = match permits.get(c.from.as_str()) {
                Some(p) => Some(p.acquire().await.expect("never closed")),
                None => None,
            };
            let deadline = Instant::now() + patience;
            let result = match node {
                None => Err(format!("node {} is not part of this run", c.from)),
                Some(n) => loop {
                    let r = run_once(n.t.as_ref(), c, Duration::from_secs(5)).await;
                    if r.is_ok() || Instant::now() >= deadline {
                        break r;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_and_port() {
        assert_eq!(url_host_port("https://10.0.0.1:6443", 1), Some(("10.0.0.1".into(), 6443)));
        assert_eq!(url_host_port("https://[::1]:2379", 1), Some(("::1".into(), 2379)));
        assert_eq!(url_host_port("https://api.example", 443), Some(("api.example".into(), 443)));
    }
}
