//! Owns: how the reports print: expiry (table, JSON, YAML, Prometheus text), check, and
//! verify (table, JSON, YAML, Graphviz DOT).
//! Must not: compute anything the report does not already hold.

use std::io::{self, Write};

use serde::Serialize;

use super::{Format, structured, table};
use crate::gather::facts::Source;
use crate::report::check::CheckReport;
use crate::report::expiry::{CertRow, ExpiryReport};
use crate::report::verify::VerifyReport;
use crate::text::{human_bytes, kubeadm_date, rfc3339};

/// kubeadm's ShortHumanDuration, so the column reads as `kubeadm certs check-expiration`'s.
fn residual(seconds: i64) -> String {
    match seconds {
        s if s < -1 => "<invalid>".into(),
        s if s < 60 => format!("{}s", s.max(0)),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s if s < 365 * 86_400 => format!("{}d", s / 86_400),
        s => format!("{}y", s / (365 * 86_400)),
    }
}

#[derive(Serialize)]
struct JsonCert<'a> {
    node: &'a str,
    path: &'a str,
    source: Source,
    embedded_key: Option<&'a str>,
    name: &'a str,
    subject: &'a str,
    issuer: &'a str,
    serial: &'a str,
    is_ca: bool,
    not_before: String,
    not_after: String,
    residual_seconds: i64,
    status: &'a str,
}

#[derive(Serialize)]
struct JsonError<'a> {
    node: &'a str,
    path: Option<&'a str>,
    error: &'a str,
}

#[derive(Serialize)]
struct JsonExpiry<'a> {
    certificates: Vec<JsonCert<'a>>,
    errors: Vec<JsonError<'a>>,
}

fn json_expiry(r: &ExpiryReport) -> JsonExpiry<'_> {
    JsonExpiry {
        certificates: r
            .certificates
            .iter()
            .map(|c| JsonCert {
                node: &c.node,
                path: &c.path,
                source: c.source,
                embedded_key: c.embedded_key.as_deref(),
                name: &c.name,
                subject: &c.cert.subject,
                issuer: &c.cert.issuer,
                serial: &c.cert.serial,
                is_ca: c.cert.is_ca,
                not_before: rfc3339(c.cert.not_before),
                not_after: rfc3339(c.cert.not_after),
                residual_seconds: c.residual_seconds,
                status: c.status.as_str(),
            })
            .collect(),
        errors: r.errors.iter().map(|e| JsonError { node: &e.node, path: e.path.as_deref(), error: &e.error }).collect(),
    }
}

pub fn expiry(r: &ExpiryReport, format: Format, out: &mut dyn Write) -> io::Result<()> {
    match format {
        Format::Json | Format::Yaml => structured(&json_expiry(r), format, out),
        Format::Prom => prom(r, out),
        Format::Dot => Err(io::Error::other("expiry has no DOT output")),
        Format::Table => expiry_table(r, out),
    }
}

fn display_path(c: &CertRow) -> String {
    match &c.embedded_key {
        Some(k) => format!("{} ({k})", c.path),
        None if c.source == Source::Endpoint => format!("{} (served)", c.path),
        None => c.path.clone(),
    }
}

fn expiry_table(r: &ExpiryReport, out: &mut dyn Write) -> io::Result<()> {
    let mut rows = vec![vec!["NODE", "CERTIFICATE", "EXPIRES", "RESIDUAL TIME", "CERTIFICATE AUTHORITY", "STATUS", "PATH"].into_iter().map(String::from).collect()];
    for c in &r.certificates {
        rows.push(vec![
            c.node.clone(),
            c.name.clone(),
            kubeadm_date(c.cert.not_after),
            residual(c.residual_seconds),
            c.authority.clone().unwrap_or_default(),
            c.status.as_str().to_string(),
            display_path(c),
        ]);
    }
    table(&rows, out)?;
    let notes: Vec<&CertRow> = r.certificates.iter().filter(|c| c.note.is_some()).collect();
    if !notes.is_empty() {
        writeln!(out)?;
        for c in notes {
            writeln!(out, "{}: {}", c.node, c.note.as_deref().unwrap_or_default())?;
        }
    }
    if !r.errors.is_empty() {
        writeln!(out, "\nERRORS")?;
        for e in &r.errors {
            match &e.path {
                Some(p) => writeln!(out, "{}: {p}: {}", e.node, e.error)?,
                None => writeln!(out, "{}: {}", e.node, e.error)?,
            }
        }
    }
    Ok(())
}

fn label(v: &str) -> String {
    v.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

/// A metric of the Prometheus text: its name, its help, and its value for a certificate.
type Metric<'a> = (&'a str, &'a str, &'a dyn Fn(&CertRow) -> i64);

/// x509-certificate-exporter's metric and label names, plus `node`.
fn prom(r: &ExpiryReport, out: &mut dyn Write) -> io::Result<()> {
    let labels = |c: &CertRow| {
        let kind = c.embedded_kind.map(|k| k.as_str()).unwrap_or("");
        let key = c.embedded_key.as_deref().and_then(|k| k.rsplit('.').next()).unwrap_or("");
        format!(
            "filepath=\"{}\",embedded_kind=\"{}\",embedded_key=\"{}\",serial_number=\"{}\",subject_CN=\"{}\",issuer_CN=\"{}\",node=\"{}\"",
            label(&c.path),
            kind,
            label(key),
            c.cert.serial,
            label(c.cert.subject_cn.as_deref().unwrap_or("")),
            label(c.cert.issuer_cn.as_deref().unwrap_or("")),
            label(&c.node)
        )
    };
    let metrics: [Metric; 3] = [
        ("x509_cert_not_after", "The date after which the certificate expires. Expressed as a Unix Epoch Time.", &|c| c.cert.not_after),
        ("x509_cert_not_before", "The date before which the certificate is not yet valid. Expressed as a Unix Epoch Time.", &|c| c.cert.not_before),
        ("x509_cert_expired", "Indicates if the certificate is currently expired.", &|c| i64::from(c.cert.not_after <= r.now)),
    ];
    for (name, help, value) in metrics {
        writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge")?;
        for c in &r.certificates {
            writeln!(out, "{name}{{{}}} {}", labels(c), value(c))?;
        }
    }
    writeln!(out, "# HELP x509_read_errors Indicates the number of read failure(s).\n# TYPE x509_read_errors gauge")?;
    let mut nodes: Vec<&str> = r.certificates.iter().map(|c| c.node.as_str()).chain(r.errors.iter().map(|e| e.node.as_str())).collect();
    nodes.dedup();
    let mut seen = std::collections::BTreeSet::new();
    for n in nodes {
        if seen.insert(n) {
            writeln!(out, "x509_read_errors{{node=\"{}\"}} {}", label(n), r.errors.iter().filter(|e| e.node == n).count())?;
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct JsonCheck<'a> {
    node: &'a str,
    user: &'a str,
    ok: bool,
    reachable: bool,
    host_key_ok: bool,
    authenticated: bool,
    sudo: Option<bool>,
    clock_skew_seconds: Option<f64>,
    pki_dir: Option<&'a str>,
    free_bytes: Option<u64>,
    distribution: Option<&'a str>,
    pki_files: Option<usize>,
    problems: &'a [String],
}

#[derive(Serialize)]
struct JsonCheckReport<'a> {
    nodes: Vec<JsonCheck<'a>>,
}

pub fn check(r: &CheckReport, format: Format, out: &mut dyn Write) -> io::Result<()> {
    let json = JsonCheckReport {
        nodes: r
            .nodes
            .iter()
            .map(|n| JsonCheck {
                node: &n.node,
                user: &n.user,
                ok: n.ok(),
                reachable: n.reachable,
                host_key_ok: n.host_key_ok,
                authenticated: n.authenticated,
                sudo: n.sudo,
                clock_skew_seconds: n.clock_skew_seconds.map(|s| (s * 1000.0).round() / 1000.0),
                pki_dir: n.pki_dir.as_deref(),
                free_bytes: n.free_bytes,
                distribution: n.distribution.as_deref(),
                pki_files: n.pki_files,
                problems: &n.problems,
            })
            .collect(),
    };
    match format {
        Format::Json | Format::Yaml => structured(&json, format, out),
        Format::Prom | Format::Dot => Err(io::Error::other("check has no Prometheus or DOT output")),
        Format::Table => {
            let yes = |b: bool| if b { "yes" } else { "NO" }.to_string();
            let mut rows = vec![["NODE", "USER", "REACHABLE", "HOST KEY", "AUTH", "SUDO", "CLOCK SKEW", "FREE (PKI DIR)", "DISTRIBUTION", "PKI FILES", "STATUS"].map(String::from).to_vec()];
            for n in &r.nodes {
                rows.push(vec![
                    n.node.clone(),
                    n.user.clone(),
                    yes(n.reachable),
                    if n.reachable { yes(n.host_key_ok) } else { "-".into() },
                    if n.host_key_ok { yes(n.authenticated) } else { "-".into() },
                    match n.sudo {
                        None if n.authenticated => "not needed".into(),
                        None => "-".into(),
                        Some(b) => yes(b),
                    },
                    n.clock_skew_seconds.map(|s| format!("{s:+.1}s")).unwrap_or_else(|| "-".into()),
                    match (&n.free_bytes, &n.pki_dir) {
                        (Some(b), Some(d)) => format!("{} ({d})", human_bytes(*b)),
                        _ => "-".into(),
                    },
                    n.distribution.clone().unwrap_or_else(|| if n.pki_files.is_some() { "none".into() } else { "-".into() }),
                    n.pki_files.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                    if n.ok() { "ok".into() } else { "FAILED".into() },
                ]);
            }
            table(&rows, out)?;
            let failing: Vec<_> = r.nodes.iter().filter(|n| !n.ok()).collect();
            if !failing.is_empty() {
                writeln!(out, "\nPROBLEMS")?;
                for n in failing {
                    for p in &n.problems {
                        writeln!(out, "{}: {p}", n.node)?;
                    }
                }
            }
            Ok(())
        }
    }
}

/// The trust graph: a table of edges (broken ones with why), JSON, or Graphviz DOT.
pub fn verify(r: &VerifyReport, format: Format, out: &mut dyn Write) -> io::Result<()> {
    match format {
        Format::Json | Format::Yaml => structured(r, format, out),
        Format::Dot => verify_dot(r, out),
        _ => {
            let mut rows = vec![vec!["EDGE".to_string(), "CLIENT".into(), "SERVER".into(), "STATUS".into()]];
            for e in &r.edges {
                rows.push(vec![e.edge.clone(), e.client.clone(), e.server.clone(), if e.ok { "ok".into() } else { "BROKEN".into() }]);
            }
            table(&rows, out)?;
            for e in r.edges.iter().filter(|e| !e.ok) {
                for p in &e.problems {
                    writeln!(out, "BROKEN  {} {} -> {}: {p}", e.edge, e.client, e.server)?;
                }
            }
            for f in &r.findings {
                writeln!(out, "{}  {} {}: {}", if f.broken { "BROKEN" } else { "WARNING" }, f.node, f.component, f.message)?;
            }
            if r.checked_live {
                writeln!(out)?;
                let mut rows = vec![vec!["LIVE EDGE".to_string(), "FROM".into(), "TO".into(), "ENDPOINT".into(), "STATUS".into()]];
                for l in &r.live {
                    rows.push(vec![l.edge.clone(), l.from.clone(), l.to.clone(), l.endpoint.clone(), if l.ok { "ok".into() } else { format!("FAILED: {}", l.detail) }]);
                }
                table(&rows, out)?;
            }
            let broken = r.edges.iter().filter(|e| !e.ok).count() + r.live.iter().filter(|l| !l.ok).count() + r.findings.iter().filter(|f| f.broken).count();
            writeln!(out, "\n{} edges checked{}, {broken} broken.", r.edges.len(), if r.checked_live { format!(", {} live", r.live.len()) } else { String::new() })
        }
    }
}

fn dot_id(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// CAs, certificates and the edges between them; broken edges red and labelled.
fn verify_dot(r: &VerifyReport, out: &mut dyn Write) -> io::Result<()> {
    use std::collections::BTreeSet;
    writeln!(out, "digraph kcert {{")?;
    writeln!(out, "  rankdir=LR;\n  node [fontsize=10];\n  edge [fontsize=9];")?;
    let mut cas = BTreeSet::new();
    let mut certs = BTreeSet::new();
    for e in &r.edges {
        for t in e.server_trusts.iter().chain(&e.client_trusts) {
            cas.insert(t.clone());
        }
        for (label, c) in [(&e.client, &e.client_cert), (&e.server, &e.server_cert)] {
            if let Some(c) = c {
                certs.insert((label.clone(), c.subject.clone(), c.issuer.clone()));
            }
        }
    }
    for ca in &cas {
        writeln!(out, "  {} [shape=box, style=filled, fillcolor=lightyellow, label={}];", dot_id(&format!("ca:{ca}")), dot_id(&format!("CA\n{ca}")))?;
    }
    for (label, subject, issuer) in &certs {
        writeln!(out, "  {} [shape=ellipse, label={}];", dot_id(label), dot_id(&format!("{label}\n{subject}")))?;
        if cas.contains(issuer) {
            writeln!(out, "  {} -> {} [style=dashed, label=\"signs\"];", dot_id(&format!("ca:{issuer}")), dot_id(label))?;
        }
    }
    for e in &r.edges {
        let (color, why) = if e.ok { ("darkgreen", String::new()) } else { ("red", format!("\n{}", e.problems.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("\n"))) };
        writeln!(out, "  {} -> {} [color={color}, label={}];", dot_id(&e.client), dot_id(&e.server), dot_id(&format!("{}{why}", e.edge)))?;
    }
    for l in &r.live {
        let color = if l.ok { "darkgreen" } else { "red" };
        writeln!(out, "  {} -> {} [style=bold, color={color}, label={}];", dot_id(&format!("node:{}", l.from)), dot_id(&format!("node:{}", l.to)), dot_id(&format!("live {} {}", l.edge, if l.ok { "ok" } else { &l.detail })))?;
    }
    writeln!(out, "}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn residual_reads_like_kubeadm() {
        assert_eq!(residual(-5), "<invalid>");
        assert_eq!(residual(59), "59s");
        assert_eq!(residual(364 * 86_400 + 5), "364d");
        assert_eq!(residual(9 * 365 * 86_400 + 100), "9y");
    }

    #[test]
    fn prometheus_labels_are_escaped() {
        assert_eq!(label("a\"b\\c"), "a\\\"b\\\\c");
    }
}
