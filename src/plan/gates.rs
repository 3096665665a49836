//! Owns: the live checks of trust edges as data: for every edge the playbook knows, from
//! which node to dial which address, with which of the client's own files, and what to ask.
//! A plan carries its gates as these; `run::gate` makes the handshakes.
//! Must not: do I/O, or carry key material (paths and addresses only).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::gather::facts::NodeFacts;
pub use crate::pki::kubeconfig::Part;
use crate::playbook::Playbook;

/// Where a check's TLS material comes from on the client's node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Src {
    File(String),
    /// A kubeconfig's current user/cluster: (kubeconfig path, which part).
    Kubeconfig(String, Part),
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

/// Every live check the playbook's edges give for these nodes.
pub fn checks(pb: &Playbook, nodes: &[NodeFacts]) -> Vec<Check> {
    let mut out = Vec::new();
    let servers: Vec<BTreeMap<&str, String>> = nodes.iter().map(NodeFacts::kubeconfig_servers).collect();
    for e in &pb.edges {
        let Some(port) = e.server.endpoint else { continue };
        let server_comp = e.server.component.as_deref();
        for (ci, client) in nodes.iter().enumerate() {
            let side = |key: &Option<String>| key.as_ref().and_then(|k| client.pki.path_of(e.client.component.as_deref(), k)).map(|p| Src::File(p.to_string()));
            // Kubeconfig clients dial the server their kubeconfig names.
            for kc in &e.client.kubeconfigs {
                let Some(path) = client.pki.named.get(kc) else { continue };
                let Some(server) = servers[ci].get(path.as_str()) else { continue };
                let Some((host, p)) = crate::text::url_host_port(server, port) else { continue };
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
                    // The apiserver reaches a kubelet at its node's address, its own node's too
                    // (kubelet serving certs name the node, not loopback).
                    _ if sc == "kubelet" => server.address.clone(),
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
