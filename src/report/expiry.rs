//! Owns: the `expiry` report: every certificate found on every node (files, bundle members,
//! kubeconfig data, served ports), each with its status against a warning window.
//! Must not: format output (render does) or decide exit codes beyond returning an Outcome.

use std::time::Duration;

use crate::error::Outcome;
use crate::gather::discover;
use crate::gather::facts::{EndpointTarget, FoundCert, FoundError, FoundErrorKind, Source};
use crate::pki::kubeconfig::EmbeddedKind;
use crate::pki::{CertInfo, find_issuer};
use crate::playbook::{self, Playbook};
use crate::reach::fleet::{Fleet, Observer};
use crate::reach::probe;
use crate::reach::transport::{NodeFailure, NodeResult, Transport};
use crate::text::rfc3339;

#[derive(Debug, Clone)]
pub struct ExpiryOptions {
    /// Extra files or directories to scan on every node (inside the root with `--root`).
    pub extra_paths: Vec<String>,
    pub warn: Duration,
    pub probe_timeout: Duration,
    /// Unix seconds the statuses are computed against.
    pub now: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Ok,
    Warning,
    Expired,
    NotYetValid,
    ServedDiffers,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Expired => "expired",
            Status::NotYetValid => "not-yet-valid",
            Status::ServedDiffers => "served-differs",
        }
    }
}

#[derive(Debug, Clone)]
pub struct CertRow {
    pub node: String,
    pub path: String,
    pub source: Source,
    pub embedded_kind: Option<EmbeddedKind>,
    pub embedded_key: Option<String>,
    pub name: String,
    pub cert: CertInfo,
    /// The name of the CA (as found on the node) that signed it.
    pub authority: Option<String>,
    pub residual_seconds: i64,
    pub status: Status,
    /// For served certs whose file differs: what the file holds.
    pub note: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ErrorRow {
    pub node: String,
    pub path: Option<String>,
    pub error: String,
    /// The node itself could not be worked on (unreachable, refused, ...).
    pub node_failed: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ExpiryReport {
    pub certificates: Vec<CertRow>,
    pub errors: Vec<ErrorRow>,
    pub now: i64,
    pub warn_seconds: i64,
}

impl ExpiryReport {
    pub fn outcome(&self) -> Outcome {
        if self.errors.iter().any(|e| e.node_failed) {
            return Outcome::NodeFailures;
        }
        if !self.errors.is_empty() || self.certificates.iter().any(|c| c.status != Status::Ok) {
            return Outcome::Findings;
        }
        Outcome::Clean
    }
}

/// Status of a certificate at `now` with a warning window of `warn` seconds.
pub fn status_of(cert: &CertInfo, now: i64, warn: i64) -> Status {
    if cert.not_after <= now {
        Status::Expired
    } else if cert.not_before > now {
        Status::NotYetValid
    } else if cert.not_after - now <= warn {
        Status::Warning
    } else {
        Status::Ok
    }
}

struct NodeFindings {
    certs: Vec<FoundCert>,
    errors: Vec<FoundError>,
    served_differs: Vec<(usize, String)>,
}

pub async fn run(fleet: &Fleet, opts: &ExpiryOptions, observer: Observer<'_>) -> ExpiryReport {
    let embedded = playbook::embedded();
    let results = fleet
        .run(observer, |t, _target| {
            let embedded = &embedded;
            async move { scan_node(t.as_ref(), fleet.playbook.as_ref(), embedded, opts).await }
        })
        .await;
    let mut report = ExpiryReport { now: opts.now, warn_seconds: opts.warn.as_secs() as i64, ..Default::default() };
    for (target, result) in results {
        match result {
            Err(NodeFailure { message, .. }) => report.errors.push(ErrorRow { node: target.name, path: None, error: message, node_failed: true }),
            Ok(found) => add_node(&mut report, &target.name, found),
        }
    }
    report
}

async fn scan_node(t: &dyn Transport, playbook: Option<&Playbook>, embedded: &[Playbook], opts: &ExpiryOptions) -> NodeResult<NodeFindings> {
    let surveyed = discover::surveyed(t, &discover::candidates(playbook, embedded), &opts.extra_paths).await?;
    let t = &surveyed;
    let detected;
    let playbook = match playbook {
        Some(p) => Some(p),
        None => {
            detected = discover::detect(t, embedded).await?;
            detected.as_ref().and_then(|name| embedded.iter().find(|p| &p.name == name))
        }
    };
    let pki = discover::discover(t, playbook, &opts.extra_paths).await?;
    // Unit and config files alone are no PKI: a node with no certificate is said, never an
    // empty table.
    if pki.certs.is_empty() && pki.errors.is_empty() {
        let why = match playbook {
            Some(pb) => {
                let read: Vec<String> = pki.sources.values().flatten().cloned().collect();
                let flags = if read.is_empty() { "no component's flags were found".to_string() } else { format!("no file named by the flags in {}", read.join(", ")) };
                format!("none where the {} playbook looks: {flags}, nothing in {}", pb.name, pb.scan.join(", "))
            }
            None => "no known distribution detected here (pass --distribution, or --path to the certificates)".to_string(),
        };
        return Err(NodeFailure::command(format!("no PKI found: {why}")));
    }
    let mut certs = pki.certs;
    let mut errors = pki.errors;
    let mut served_differs = Vec::new();
    if !t.offline() {
        let probes = pki.endpoints.iter().map(|ep| async move { (ep, probe::served_chain(t, &ep.host, ep.port, opts.probe_timeout).await) });
        for (ep, result) in futures::future::join_all(probes).await {
            match result {
                Err(e) => errors.push(FoundError { kind: FoundErrorKind::Invalid, path: Some(format!("{}:{}", ep.host, ep.port)), error: format!("{}: {e}", ep.component) }),
                Ok(chain) => {
                    let leaf = chain.into_iter().next().expect("served_chain never returns an empty chain");
                    if let Some(why) = differs(&leaf, ep, &certs) {
                        served_differs.push((certs.len(), why));
                    }
                    certs.push(FoundCert {
                        path: format!("{}:{}", ep.host, ep.port),
                        source: Source::Endpoint,
                        embedded_kind: None,
                        embedded_key: None,
                        name: ep.name.clone(),
                        cert: leaf,
                    });
                }
            }
        }
    }
    Ok(NodeFindings { certs, errors, served_differs })
}

/// Why the served leaf is not the first certificate of the file behind the port, if it is not.
fn differs(leaf: &CertInfo, ep: &EndpointTarget, certs: &[FoundCert]) -> Option<String> {
    let file = ep.file.as_ref()?;
    let on_disk = certs.iter().find(|c| matches!(c.source, Source::File | Source::Secret) && &c.path == file)?;
    (on_disk.cert.der != leaf.der).then(|| {
        format!(
            "{}:{} serves serial {} (expires {}), but {file} holds serial {} (expires {}): the {} was not restarted since the file changed",
            ep.host,
            ep.port,
            leaf.serial,
            rfc3339(leaf.not_after),
            on_disk.cert.serial,
            rfc3339(on_disk.cert.not_after),
            ep.component
        )
    })
}

fn add_node(report: &mut ExpiryReport, node: &str, found: NodeFindings) {
    // CA names come from files first: a kubeconfig's copy of the CA is not its name.
    let mut ca_order: Vec<&FoundCert> = found.certs.iter().filter(|c| c.cert.is_ca && c.source != Source::Endpoint).collect();
    // One CA under several names (a binary cluster's ca.pem copied to /etc/etcd) is named
    // by the shortest name, alphabetically: `ca` before `etcd-ca`; and by its own file before
    // a copy riding in another file's chain (k3s's etcd/client.crt carries the etcd server CA
    // after its leaf: `etcd-server-ca`, not `etcd-client[1]`).
    let own_file = |c: &FoundCert| found.certs.iter().find(|x| x.path == c.path && x.embedded_key == c.embedded_key).is_some_and(|x| std::ptr::eq(x, c));
    ca_order.sort_by_key(|c| (c.source != Source::File, !own_file(c), c.name.len(), c.name.clone()));
    let cas: Vec<&CertInfo> = ca_order.iter().map(|c| &c.cert).collect();
    for (i, c) in found.certs.iter().enumerate() {
        let authority = if c.cert.self_issued && find_issuer(&c.cert, &[&c.cert]).is_some() {
            (!c.cert.is_ca).then(|| "self-signed".to_string())
        } else {
            find_issuer(&c.cert, &cas).and_then(|ca| ca_order.iter().find(|x| std::ptr::eq(&x.cert, ca)).map(|x| x.name.clone()))
        };
        let differs = found.served_differs.iter().find(|(j, _)| *j == i).map(|(_, why)| why.clone());
        let status = if differs.is_some() { Status::ServedDiffers } else { status_of(&c.cert, report.now, report.warn_seconds) };
        report.certificates.push(CertRow {
            node: node.to_string(),
            path: c.path.clone(),
            source: c.source,
            embedded_kind: c.embedded_kind,
            embedded_key: c.embedded_key.clone(),
            name: c.name.clone(),
            cert: c.cert.clone(),
            authority,
            residual_seconds: c.cert.not_after - report.now,
            status,
            note: differs,
        });
    }
    for e in found.errors {
        report.errors.push(ErrorRow { node: node.to_string(), path: e.path, error: e.error, node_failed: false });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(nb: i64, na: i64) -> CertInfo {
        CertInfo {
            der: vec![],
            subject: String::new(),
            issuer: String::new(),
            subject_cn: None,
            issuer_cn: None,
            serial: "01".into(),
            not_before: nb,
            not_after: na,
            is_ca: false,
            self_issued: false,
            ski: None,
            aki: None,
            sha256: String::new(),
        }
    }

    #[test]
    fn statuses_follow_the_warning_window() {
        let day = 86_400;
        assert_eq!(status_of(&cert(0, 100 * day), 10 * day, 30 * day), Status::Ok);
        assert_eq!(status_of(&cert(0, 30 * day), 10 * day, 30 * day), Status::Warning);
        assert_eq!(status_of(&cert(0, 10 * day), 10 * day, 30 * day), Status::Expired);
        assert_eq!(status_of(&cert(20 * day, 100 * day), 10 * day, 30 * day), Status::NotYetValid);
    }

    #[test]
    fn a_port_is_compared_with_its_file_or_the_secret_it_serves_from() {
        let with = |der: u8, serial: &str| CertInfo { der: vec![der], serial: serial.into(), ..cert(0, 1) };
        let found = |path: &str, source: Source, c: CertInfo| FoundCert { path: path.into(), source, embedded_kind: None, embedded_key: None, name: "x".into(), cert: c };
        let ep = |file: &str| EndpointTarget { component: "supervisor".into(), name: "x".into(), host: "127.0.0.1".into(), port: 6443, file: Some(file.into()) };
        let certs = [found("/tls/serving.crt", Source::File, with(1, "0a")), found("/tls/dynamic-cert.json", Source::Secret, with(2, "0b")), found("/k.conf", Source::Kubeconfig, with(3, "0c"))];
        assert_eq!(differs(&with(1, "0a"), &ep("/tls/serving.crt"), &certs), None);
        assert!(differs(&with(9, "09"), &ep("/tls/serving.crt"), &certs).unwrap().contains("holds serial 0a"));
        // k3s's supervisor serves what dynamic-cert.json keeps: a stale one is said as such.
        assert_eq!(differs(&with(2, "0b"), &ep("/tls/dynamic-cert.json"), &certs), None);
        let why = differs(&with(9, "09"), &ep("/tls/dynamic-cert.json"), &certs).unwrap();
        assert!(why.contains("serves serial 09") && why.contains("/tls/dynamic-cert.json holds serial 0b") && why.contains("supervisor"), "{why}");
        // A kubeconfig's copy is never the file a port serves.
        assert_eq!(differs(&with(9, "09"), &ep("/k.conf"), &certs), None);
    }

    #[test]
    fn unreachable_nodes_outrank_findings() {
        let mut r = ExpiryReport::default();
        assert_eq!(r.outcome(), Outcome::Clean);
        r.errors.push(ErrorRow { node: "a".into(), path: Some("/x".into()), error: "corrupt".into(), node_failed: false });
        assert_eq!(r.outcome(), Outcome::Findings);
        r.errors.push(ErrorRow { node: "b".into(), path: None, error: "down".into(), node_failed: true });
        assert_eq!(r.outcome(), Outcome::NodeFailures);
    }
}
