//! Owns: the trust graph of a cluster as its files stand: for every edge the playbook knows,
//! does the client's cert chain to the server's client-CA file and the server's cert to the
//! client's trust, in date, with matching keys and SANs covering the address used; the
//! playbook's cert/key pairs and settings to point out; and, with `--live`, real handshakes.
//! Must not: change anything or print (render does).

use std::time::Duration;

use serde::Serialize;

use crate::error::{Outcome, Result};
use crate::gather::facts::FoundErrorKind;
use crate::gather::{NodeFacts, gather};
use crate::pki::cert::{CertInfo, parse_pem};
use crate::pki::find_issuer;
use crate::pki::kubeconfig::{self, Material, Part};
use crate::pki::sign::key_matches;
use crate::plan::gates;
use crate::playbook::{Playbook, Side};
use crate::reach::fleet::Fleet;
use crate::run::gate::{self, CheckResult};
use crate::text::{rfc3339, url_host};

#[derive(Debug, Clone, Serialize)]
pub struct EdgeReport {
    pub edge: String,
    /// `node:path` of the client's certificate (a kubeconfig for kubeconfig clients).
    pub client: String,
    pub server: String,
    pub client_cert: Option<CertRef>,
    pub server_cert: Option<CertRef>,
    /// CAs (subjects) the server trusts clients with, and the client trusts the server with.
    pub server_trusts: Vec<String>,
    pub client_trusts: Vec<String>,
    /// The files those trusts come from (`certificate-authority-data` for a kubeconfig's).
    pub server_trust_file: Option<String>,
    pub client_trust_file: Option<String>,
    pub ok: bool,
    pub problems: Vec<Problem>,
}

/// What is wrong with an edge or a node's files. The kind decides what refuses a rotation;
/// the message is for people (and is what JSON carries, as before).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// A file the edge needs is not there or may not be read.
    Unreadable,
    /// A file a kubeconfig names is not there.
    Missing,
    /// A file is read and is not what it should be (corrupt PEM, bad YAML).
    Invalid,
    KeyMismatch,
    /// A signing pair that is not one matching cert and key.
    PairMismatch,
    /// A certificate no CA of the other side's trust signed.
    Untrusted,
    /// Out of date (expired, not yet valid, or its CA expired).
    OutOfDate,
    /// A client that does not verify the server at all.
    NoTrust,
    SanMissing,
    /// A setting worth pointing out.
    Setting,
}

impl ProblemKind {
    /// What a rotation cannot fix and must not start over: its re-signing fixes the rest.
    pub fn refuses_rotation(self) -> bool {
        matches!(self, ProblemKind::Unreadable | ProblemKind::KeyMismatch | ProblemKind::PairMismatch)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    pub message: String,
}

impl Problem {
    fn new(kind: ProblemKind, message: impl Into<String>) -> Problem {
        Problem { kind, message: message.into() }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Serialize for Problem {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.message)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CertRef {
    pub subject: String,
    pub issuer: String,
    pub not_after: i64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub node: String,
    pub component: String,
    pub kind: ProblemKind,
    pub message: String,
    /// Broken (exit 3) or a warning worth reading.
    pub broken: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub edges: Vec<EdgeReport>,
    pub findings: Vec<Finding>,
    pub live: Vec<CheckResult>,
    pub checked_live: bool,
}

impl VerifyReport {
    pub fn outcome(&self) -> Outcome {
        let broken = self.edges.iter().any(|e| !e.ok) || self.findings.iter().any(|f| f.broken) || self.live.iter().any(|l| !l.ok);
        if broken { Outcome::Findings } else { Outcome::Clean }
    }
}

fn cref(c: &CertInfo) -> CertRef {
    CertRef { subject: c.subject.clone(), issuer: c.issuer.clone(), not_after: c.not_after, sha256: c.sha256.clone() }
}

/// The TLS material of one side of an edge on one node.
struct Material3 {
    label: String,
    cert: Option<CertInfo>,
    key: Option<Vec<u8>>,
    trust: Option<Vec<CertInfo>>,
    trust_file: Option<String>,
    /// The address this client dials (kubeconfig server host), for SAN checks.
    dials: Option<String>,
    problems: Vec<Problem>,
}

fn certs_of(n: &NodeFacts, path: &str) -> std::result::Result<Vec<CertInfo>, Problem> {
    let bytes = n.files.get(path).ok_or_else(|| Problem::new(ProblemKind::Unreadable, format!("{}: {path}: missing or unreadable", n.name)))?;
    parse_pem(bytes).map(|c| c.certs).map_err(|e| Problem::new(ProblemKind::Invalid, format!("{}: {path}: {e}", n.name)))
}

fn side_material(n: &NodeFacts, side: &Side, kubeconfig_path: Option<&str>) -> Material3 {
    let node = &n.name;
    let mut m = Material3 { label: String::new(), cert: None, key: None, trust: None, trust_file: None, dials: None, problems: Vec::new() };
    if let Some(kc) = kubeconfig_path {
        m.label = format!("{node}:{kc}");
        let Some(bytes) = n.files.get(kc) else {
            m.problems.push(Problem::new(ProblemKind::Unreadable, format!("{node}: {kc}: unreadable")));
            return m;
        };
        match kubeconfig::identity(bytes) {
            Ok(id) => {
                m.dials = Some(url_host(&id.server)).filter(|h| !h.is_empty());
                let load = |which: Part| -> Option<std::result::Result<Vec<u8>, Problem>> { id.load(which, kc, &n.files).map_err(|e| Problem::new(ProblemKind::Missing, format!("{node}: {e}"))).transpose() };
                match load(Part::Cert) {
                    Some(Ok(b)) => m.cert = parse_pem(&b).ok().and_then(|c| c.certs.into_iter().next()),
                    Some(Err(e)) => m.problems.push(e),
                    None => {}
                }
                match load(Part::Key) {
                    Some(Ok(b)) => m.key = Some(b),
                    Some(Err(e)) => m.problems.push(e),
                    None => {}
                }
                m.trust_file = Some(match &id.ca {
                    Some(Material::Path(p)) => kubeconfig::resolve_reference(kc, p),
                    _ => "certificate-authority-data".to_string(),
                });
                match load(Part::Ca) {
                    Some(Ok(b)) => m.trust = parse_pem(&b).ok().map(|c| c.certs),
                    Some(Err(e)) => m.problems.push(e),
                    None => {}
                }
            }
            Err(e) => m.problems.push(Problem::new(ProblemKind::Invalid, format!("{node}: {kc}: {e}"))),
        }
        return m;
    }
    let comp = side.component.as_deref();
    let path = |key: &Option<String>| key.as_ref().and_then(|k| n.pki.path_of(comp, k)).map(str::to_string);
    if let Some(p) = path(&side.cert) {
        m.label = format!("{node}:{p}");
        match certs_of(n, &p) {
            Ok(c) => m.cert = c.into_iter().next(),
            Err(e) => m.problems.push(e),
        }
    }
    if let Some(p) = path(&side.key) {
        m.key = n.files.get(&p).map(|b| b.to_vec());
    }
    if let Some(p) = path(&side.trusts) {
        m.trust_file = Some(p.clone());
        match certs_of(n, &p) {
            Ok(c) => m.trust = Some(c),
            Err(e) => m.problems.push(e),
        }
    }
    if m.label.is_empty() {
        m.label = format!("{node}:{}", comp.unwrap_or("-"));
    }
    m
}

/// Is `cert` issued by a CA in `trust`, and are both in date at `now`?
fn chain_problem(cert: &CertInfo, trust: &[CertInfo], now: i64, what: &str) -> Option<Problem> {
    let cas: Vec<&CertInfo> = trust.iter().collect();
    let Some(ca) = find_issuer(cert, &cas) else {
        let names: Vec<&str> = trust.iter().map(|c| c.subject.as_str()).collect();
        return Some(Problem::new(ProblemKind::Untrusted, format!("{what} ({}) is not signed by any CA it is checked against ({})", cert.subject, names.join("; "))));
    };
    let late = |m: String| Some(Problem::new(ProblemKind::OutOfDate, m));
    if cert.not_after <= now {
        return late(format!("{what} ({}) expired on {}", cert.subject, rfc3339(cert.not_after)));
    }
    if cert.not_before > now {
        return late(format!("{what} ({}) is not valid before {}", cert.subject, rfc3339(cert.not_before)));
    }
    if ca.not_after <= now {
        return late(format!("the CA {} of {what} expired on {}", ca.subject, rfc3339(ca.not_after)));
    }
    None
}

fn san_covers(cert: &CertInfo, name: &str) -> bool {
    let Ok((_, x)) = <x509_parser::certificate::X509Certificate as x509_parser::prelude::FromDer<_>>::from_der(&cert.der) else { return false };
    let ip: Option<std::net::IpAddr> = name.parse().ok();
    let Ok(Some(san)) = x.subject_alternative_name() else { return false };
    san.value.general_names.iter().any(|g| match g {
        x509_parser::extensions::GeneralName::DNSName(d) => d.eq_ignore_ascii_case(name) || d.strip_prefix("*.").is_some_and(|rest| name.split_once('.').is_some_and(|(_, r)| r.eq_ignore_ascii_case(rest))),
        x509_parser::extensions::GeneralName::IPAddress(b) => match (ip, b.len()) {
            (Some(std::net::IpAddr::V4(v4)), 4) => v4.octets() == **b,
            (Some(std::net::IpAddr::V6(v6)), 16) => v6.octets() == **b,
            _ => false,
        },
        _ => false,
    })
}

/// The file-level trust graph, pure over what `gather` read.
pub fn graph(pb: &Playbook, nodes: &[NodeFacts], now: i64) -> (Vec<EdgeReport>, Vec<Finding>) {
    let mut edges = Vec::new();
    let mut findings = Vec::new();
    for e in &pb.edges {
        let server_comp = e.server.component.as_deref();
        let servers: Vec<&NodeFacts> = nodes.iter().filter(|n| server_comp.is_none_or(|c| n.pki.components.contains_key(c))).collect();
        let peer = e.client.component.is_some() && e.client.component == e.server.component;
        for client in nodes {
            let mut clients: Vec<Material3> = Vec::new();
            if e.client.kubeconfigs.is_empty() {
                if e.client.component.as_ref().is_some_and(|c| !client.pki.components.contains_key(c)) {
                    continue;
                }
                let m = side_material(client, &e.client, None);
                if m.cert.is_none() && m.problems.is_empty() {
                    continue;
                }
                clients.push(m);
            } else {
                for kc in &e.client.kubeconfigs {
                    if let Some(p) = client.pki.named.get(kc) {
                        let m = side_material(client, &e.client, Some(p));
                        if m.cert.is_some() || !m.problems.is_empty() {
                            clients.push(m);
                        }
                    }
                }
            }
            // The server on the client's own node when it runs there (apiserver -> local etcd).
            let local_only = !peer && server_comp != Some("kubelet") && servers.iter().any(|s| s.name == client.name);
            for cm in &clients {
                // A kubeconfig names its server: that node when it is one of ours (its
                // loopback is the client's own node), else every server (a load balancer).
                let dialed: Option<&str> = cm.dials.as_deref().and_then(|d| {
                    if d == "127.0.0.1" || d == "localhost" || d == "::1" {
                        Some(client.name.as_str())
                    } else {
                        servers.iter().find(|s| s.address == d).map(|s| s.name.as_str())
                    }
                });
                for server in servers.iter().filter(|s| dialed.is_none_or(|d| s.name == d) && (!local_only || s.name == client.name || dialed.is_some())) {
                    let sm = side_material(server, &e.server, None);
                    let mut problems: Vec<Problem> = cm.problems.iter().chain(&sm.problems).cloned().collect();
                    if let Some(cert) = &cm.cert {
                        if let Some(t) = &sm.trust {
                            problems.extend(chain_problem(cert, t, now, "client certificate"));
                        }
                        if let Some(k) = &cm.key
                            && !key_matches(cert, k).unwrap_or(false)
                        {
                            problems.push(Problem::new(ProblemKind::KeyMismatch, format!("the client key does not match the client certificate ({})", cm.label)));
                        }
                    }
                    if let Some(cert) = &sm.cert {
                        match &cm.trust {
                            Some(t) => problems.extend(chain_problem(cert, t, now, "server certificate")),
                            None if e.client.trusts.is_some() || !e.client.kubeconfigs.is_empty() => {
                                problems.push(Problem::new(ProblemKind::NoTrust, "the client does not verify the server's certificate (no trust file configured)"))
                            }
                            None => {}
                        }
                        if let Some(k) = &sm.key
                            && !key_matches(cert, k).unwrap_or(false)
                        {
                            problems.push(Problem::new(ProblemKind::KeyMismatch, format!("the server key does not match the server certificate ({})", sm.label)));
                        }
                        // The name the client dials must be in the server cert's SANs.
                        let name = if let Some(d) = &cm.dials {
                            Some(d.clone())
                        } else {
                            e.server.endpoint.and_then(|port| {
                                server.pki.endpoints.iter().find(|x| Some(x.component.as_str()) == server_comp && x.port == port).map(|x| if peer || server_comp == Some("kubelet") { server.address.clone() } else { x.host.clone() })
                            })
                        };
                        // Only a client that verifies the server cares what names it covers.
                        if let Some(n) = name.filter(|n| cm.trust.is_some() && !(n == "127.0.0.1" && server.offline) && !(server.offline && server_comp == Some("kubelet")))
                            && !san_covers(cert, &n)
                        {
                            problems.push(Problem::new(ProblemKind::SanMissing, format!("the server certificate ({}) does not cover {n} in its SANs", cert.subject)));
                        }
                    }
                    // The apiserver without --kubelet-certificate-authority checks nothing: a finding, not an edge failure.
                    problems.dedup();
                    if server_comp == Some("kubelet") {
                        problems.retain(|p| p.kind != ProblemKind::NoTrust);
                    }
                    edges.push(EdgeReport {
                        edge: e.name.clone(),
                        client: cm.label.clone(),
                        server: if sm.label.is_empty() { server.name.clone() } else { sm.label.clone() },
                        client_cert: cm.cert.as_ref().map(cref),
                        server_cert: sm.cert.as_ref().map(cref),
                        server_trusts: sm.trust.as_ref().map(|t| t.iter().map(|c| c.subject.clone()).collect()).unwrap_or_default(),
                        client_trusts: cm.trust.as_ref().map(|t| t.iter().map(|c| c.subject.clone()).collect()).unwrap_or_default(),
                        server_trust_file: sm.trust_file.clone(),
                        client_trust_file: cm.trust_file.clone(),
                        ok: problems.is_empty(),
                        problems,
                    });
                }
            }
        }
    }
    for n in nodes {
        // Serving certs must cover the address the node is reached on (offline, that is unknown).
        let mut seen = std::collections::BTreeSet::new();
        for e in pb.edges.iter().filter(|e| e.server.endpoint.is_some()) {
            let (Some(comp), Some(key)) = (e.server.component.as_deref(), e.server.cert.as_deref()) else { continue };
            let Some(path) = n.pki.path_of(Some(comp), key) else { continue };
            if n.offline || !n.pki.components.contains_key(comp) || !seen.insert(path.to_string()) {
                continue;
            }
            let addr = n.address.clone();
            if let Some(cert) = certs_of(n, path).ok().and_then(|c| c.into_iter().next())
                && !san_covers(&cert, &addr)
            {
                // The apiserver checks kubelets only when told to: then it is a warning.
                let broken = comp != "kubelet";
                findings.push(Finding { node: n.name.clone(), component: comp.to_string(), kind: ProblemKind::SanMissing, message: format!(
                    "{path} ({}) does not cover the node's address {addr} in its SANs{}",
                    cert.subject,
                    if comp == "kubelet" { " (kcert renew --certs kubelet-serving adds it)" } else { "" }
                ), broken });
            }
        }
        // Each CA file where its key is: the key must be its first certificate's.
        for f in pb.files.iter().filter(|f| f.key.is_some() && f.signer.is_none()) {
            let (Some(cert_path), Some((key_path, key))) = (n.pki.named.get(&f.name), n.ca_key(pb, &f.name)) else { continue };
            let Some(cert) = certs_of(n, cert_path).ok().and_then(|c| c.into_iter().next()) else { continue };
            if !key_matches(&cert, key).unwrap_or(false) {
                findings.push(Finding {
                    node: n.name.clone(),
                    component: f.name.clone(),
                    kind: ProblemKind::PairMismatch,
                    message: format!("{cert_path} ({}) and {key_path} are not one matching cert and key: what signs with this CA makes certificates nothing trusts", cert.subject),
                    broken: true,
                });
            }
        }
        for p in &pb.pairs {
            let (Some(cp), Some(kp)) = (n.pki.path_of(Some(&p.component), &p.cert), n.pki.path_of(Some(&p.component), &p.key)) else { continue };
            let (kind, message) = match (certs_of(n, cp).ok().and_then(|c| c.into_iter().next()), n.files.get(kp)) {
                (Some(c), Some(k)) if key_matches(&c, k).unwrap_or(false) => continue,
                (Some(_), Some(_)) => (ProblemKind::PairMismatch, format!("{} {cp} and {} {kp} are not one matching cert and key", p.cert, p.key)),
                (None, _) => (ProblemKind::Invalid, format!("{} {cp}: no certificate", p.cert)),
                (_, None) => (ProblemKind::Missing, format!("{} {kp}: missing", p.key)),
            };
            findings.push(Finding { node: n.name.clone(), component: p.component.clone(), kind, message, broken: true });
        }
        for c in &pb.components {
            let Some(facts) = n.pki.components.get(&c.name) else { continue };
            for w in &c.warn {
                let v = facts.get(&w.key);
                let warn = if w.unless == "set" { v.is_none() } else { v.map(String::as_str) != Some(w.unless.as_str()) };
                if warn {
                    findings.push(Finding { node: n.name.clone(), component: c.name.clone(), kind: ProblemKind::Setting, message: w.message.clone(), broken: false });
                }
            }
        }
        for err in &n.pki.errors {
            let kind = match err.kind {
                FoundErrorKind::Missing => ProblemKind::Missing,
                FoundErrorKind::Unreadable => ProblemKind::Unreadable,
                FoundErrorKind::Invalid => ProblemKind::Invalid,
            };
            findings.push(Finding { node: n.name.clone(), component: "-".into(), kind, message: format!("{}: {}", err.path.as_deref().unwrap_or("-"), err.error), broken: true });
        }
    }
    (edges, findings)
}

pub async fn run(fleet: &Fleet, extra_paths: &[String], live: bool, now: i64) -> Result<VerifyReport> {
    let g = gather(fleet, extra_paths).await?;
    let (edges, findings) = graph(&g.playbook, &g.nodes, now);
    let mut report = VerifyReport { edges, findings, live: Vec::new(), checked_live: false };
    if live && !g.offline() {
        let checks = gates::checks(&g.playbook, &g.nodes);
        // A failing edge is tried again for a few seconds, so a component that is reloading
        // is not reported broken; a broken trust fails every try.
        report.live = gate::run(&g.connected, &checks, Duration::from_secs(10)).await;
        report.checked_live = true;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(dir: &std::path::Path, san: &str, days: &str) -> CertInfo {
        let out = std::process::Command::new("openssl")
            .args(["req", "-x509", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-keyout", "k.pem", "-out", "c.pem", "-subj", "/CN=x", "-days", days, "-addext", san])
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        parse_pem(&std::fs::read(dir.join("c.pem")).unwrap()).unwrap().certs.remove(0)
    }

    #[test]
    fn sans_cover_exact_names_addresses_and_one_wildcard_label() {
        let dir = tempfile::tempdir().unwrap();
        let c = cert(dir.path(), "subjectAltName=DNS:api.example,DNS:*.svc.example,IP:10.0.0.1,IP:::1", "1");
        for yes in ["api.example", "API.example", "a.svc.example", "10.0.0.1", "::1"] {
            assert!(san_covers(&c, yes), "{yes}");
        }
        for no in ["example", "a.b.svc.example", "10.0.0.2", "127.0.0.1"] {
            assert!(!san_covers(&c, no), "{no}");
        }
    }

    #[test]
    fn chains_are_judged_by_signature_and_dates() {
        let dir = tempfile::tempdir().unwrap();
        let c = cert(dir.path(), "basicConstraints=critical,CA:TRUE", "2");
        let now = c.not_before + 10;
        assert_eq!(chain_problem(&c, std::slice::from_ref(&c), now, "it"), None);
        let late = chain_problem(&c, std::slice::from_ref(&c), c.not_after + 1, "it").unwrap();
        assert!(late.kind == ProblemKind::OutOfDate && late.message.contains("expired"), "{late}");
        let other = cert(tempfile::tempdir().unwrap().path(), "basicConstraints=critical,CA:TRUE", "2");
        let stranger = chain_problem(&c, &[other], now, "it").unwrap();
        assert!(stranger.kind == ProblemKind::Untrusted && stranger.message.contains("not signed by any CA"), "{stranger}");
    }
}
