//! Owns: every byte kcert prints as a result: tables, JSON, YAML and Prometheus text.
//! The JSON field names and metric names here are a contract (DESIGN.md section 2).
//! Must not: compute anything a report does not already hold.

use std::io::{self, Write};

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::check::{CheckReport, human_bytes};
use crate::discover::Source;
use crate::expiry::{CertRow, ExpiryReport};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
    Prom,
    /// Graphviz DOT (verify only).
    Dot,
}

pub fn rfc3339(ts: i64) -> String {
    OffsetDateTime::from_unix_timestamp(ts).ok().and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_else(|| ts.to_string())
}

fn kubeadm_date(ts: i64) -> String {
    let fmt = time::macros::format_description!("[month repr:short] [day], [year] [hour]:[minute] UTC");
    OffsetDateTime::from_unix_timestamp(ts).ok().and_then(|t| t.format(&fmt).ok()).unwrap_or_else(|| ts.to_string())
}

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
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &json_expiry(r))?;
            writeln!(out)
        }
        Format::Yaml => write!(out, "{}", serde_saphyr::to_string(&json_expiry(r)).map_err(io::Error::other)?),
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

fn table(rows: &[Vec<String>], out: &mut dyn Write) -> io::Result<()> {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == cols {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}   ", w = widths[i]));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

fn label(v: &str) -> String {
    v.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

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
    let metrics: [(&str, &str, &dyn Fn(&CertRow) -> i64); 3] = [
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
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &json)?;
            writeln!(out)
        }
        Format::Yaml => write!(out, "{}", serde_saphyr::to_string(&json).map_err(io::Error::other)?),
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
    fn dates_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(kubeadm_date(1_700_000_000), "Nov 14, 2023 22:13 UTC");
    }

    #[test]
    fn prometheus_labels_are_escaped() {
        assert_eq!(label("a\"b\\c"), "a\\\"b\\\\c");
    }
}

#[derive(Serialize)]
struct JsonPlanNode {
    node: String,
    files: Vec<JsonPlanFile>,
    restarts: Vec<String>,
    gates: Vec<String>,
    notes: Vec<String>,
}

#[derive(Serialize)]
struct JsonPlanFile {
    path: String,
    old_sha256: String,
    new_sha256: String,
    certificates: Vec<JsonPlanItem>,
}

#[derive(Serialize)]
struct JsonPlanItem {
    name: String,
    field: Option<String>,
    subject: String,
    signer: String,
    old_not_after: String,
    new_not_after: String,
    capped_at_ca_expiry: bool,
}

/// The renewal plan: per node each file, its certificates' old and new expiry, restarts, gates.
pub fn renew_plan(p: &crate::renew::Prepared, format: Format, out: &mut dyn Write) -> io::Result<()> {
    let offline = p.offline();
    let skipped = |v: Vec<String>| -> Vec<String> { if offline { v.into_iter().map(|s| format!("{s} (skipped: offline)")).collect() } else { v } };
    let nodes: Vec<JsonPlanNode> = p
        .plans
        .iter()
        .map(|n| JsonPlanNode {
            node: n.node.clone(),
            files: n
                .changes
                .iter()
                .map(|c| JsonPlanFile {
                    path: c.path.clone(),
                    old_sha256: c.old_sha256(),
                    new_sha256: c.new_sha256(),
                    certificates: c
                        .items
                        .iter()
                        .map(|i| JsonPlanItem {
                            name: i.name.clone(),
                            field: i.field.clone(),
                            subject: i.subject.clone(),
                            signer: i.signer.clone(),
                            old_not_after: rfc3339(i.old_not_after),
                            new_not_after: rfc3339(i.new_not_after),
                            capped_at_ca_expiry: i.capped,
                        })
                        .collect(),
                })
                .collect(),
            restarts: skipped(n.restarts.clone()),
            gates: if n.changes.is_empty() { Vec::new() } else { skipped(p.gates_of(&n.node).iter().map(|c| c.label()).collect()) },
            notes: n.notes.clone(),
        })
        .collect();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &serde_json::json!({ "nodes": nodes }))?;
            writeln!(out)
        }
        Format::Yaml => {
            let text = serde_saphyr::to_string(&serde_json::json!({ "nodes": nodes })).map_err(io::Error::other)?;
            out.write_all(text.as_bytes())
        }
        _ => {
            for n in &nodes {
                writeln!(out, "node {}", n.node)?;
                if n.files.is_empty() {
                    writeln!(out, "  nothing to renew")?;
                }
                for f in &n.files {
                    writeln!(out, "  ~ {}", f.path)?;
                    for c in &f.certificates {
                        let what = c.field.as_deref().map(|fl| format!("{} {fl}", c.name)).unwrap_or_else(|| c.name.clone());
                        let cap = if c.capped_at_ca_expiry { "  (capped at the CA's expiry)" } else { "" };
                        writeln!(out, "      {what}: expires {} -> {}{cap}", c.old_not_after, c.new_not_after)?;
                        writeln!(out, "        {}, signed by {}", c.subject, c.signer)?;
                    }
                }
                for r in &n.restarts {
                    writeln!(out, "  restart {r}")?;
                }
                for g in &n.gates {
                    writeln!(out, "  gate    {g}")?;
                }
                for note in &n.notes {
                    writeln!(out, "  note    {note}")?;
                }
            }
            let files: usize = nodes.iter().map(|n| n.files.len()).sum();
            let changed = nodes.iter().filter(|n| !n.files.is_empty()).count();
            writeln!(out, "\n{files} files on {changed} nodes to change.")
        }
    }
}

/// A JSON value as `-o json` (pretty) or `-o yaml`.
fn structured(v: &serde_json::Value, format: Format, out: &mut dyn Write) -> io::Result<()> {
    if format == Format::Json {
        serde_json::to_writer_pretty(&mut *out, v)?;
        writeln!(out)
    } else {
        out.write_all(serde_saphyr::to_string(v).map_err(io::Error::other)?.as_bytes())
    }
}

/// The summary at the end of a changing run (renew, rollback).
/// `timing`: wall seconds and seconds spent waiting on restarts and gates.
pub fn run_summary(run_id: &str, journal: &str, nodes: &[crate::execute::NodeOutcome], failure: Option<&str>, timing: Option<(f64, f64)>, format: Format, out: &mut dyn Write) -> io::Result<()> {
    match format {
        Format::Json | Format::Yaml => {
            let mut v = serde_json::json!({ "run_id": run_id, "journal": journal, "nodes": nodes, "failure": failure });
            if let Some((wall, wait)) = timing {
                v["wall_seconds"] = serde_json::json!(wall);
                v["wait_seconds"] = serde_json::json!(wait);
                v["own_seconds"] = serde_json::json!(wall - wait);
            }
            structured(&v, format, out)
        }
        _ => {
            let mut rows = vec![vec!["NODE".to_string(), "FILES".into(), "RESTARTED".into(), "GATE".into(), "STATUS".into(), "WAITED".into(), "TOTAL".into()]];
            for n in nodes {
                let restarted = if n.restarted.is_empty() { "-".to_string() } else { n.restarted.join(", ") };
                rows.push(vec![n.node.clone(), n.files.to_string(), restarted, n.gate.clone(), n.status.clone(), format!("{:.1}s", n.wait_seconds), format!("{:.1}s", n.total_seconds)]);
            }
            table(&rows, out)?;
            writeln!(out, "\nrun {run_id} (journal: {journal})")?;
            if let Some((wall, wait)) = timing {
                writeln!(out, "took {wall:.1}s: {wait:.1}s waiting for restarts and health gates, {:.1}s kcert's own work", wall - wait)?;
            }
            if let Some(f) = failure {
                writeln!(out, "STOPPED: {f}")?;
            }
            Ok(())
        }
    }
}

/// The trust graph: a table of edges (broken ones with why), JSON, or Graphviz DOT.
pub fn verify(r: &crate::verify::VerifyReport, format: Format, out: &mut dyn Write) -> io::Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, r)?;
            writeln!(out)
        }
        Format::Yaml => out.write_all(serde_saphyr::to_string(r).map_err(io::Error::other)?.as_bytes()),
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
fn verify_dot(r: &crate::verify::VerifyReport, out: &mut dyn Write) -> io::Result<()> {
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
        let (color, why) = if e.ok { ("darkgreen", String::new()) } else { ("red", format!("\n{}", e.problems.join("\n"))) };
        writeln!(out, "  {} -> {} [color={color}, label={}];", dot_id(&e.client), dot_id(&e.server), dot_id(&format!("{}{why}", e.edge)))?;
    }
    for l in &r.live {
        let color = if l.ok { "darkgreen" } else { "red" };
        writeln!(out, "  {} -> {} [style=bold, color={color}, label={}];", dot_id(&format!("node:{}", l.from)), dot_id(&format!("node:{}", l.to)), dot_id(&format!("live {} {}", l.edge, if l.ok { "ok" } else { &l.detail })))?;
    }
    writeln!(out, "}}")
}

fn short_sha(s: Option<&str>) -> String {
    s.map(|s| s[..12.min(s.len())].to_string()).unwrap_or_else(|| "(absent)".into())
}

/// A rotation plan, Terraform-style: per stage and step, per node each file with what changes
/// in it (trust by CA subject and fingerprint, leaves re-signed, flags), restarts and gates.
pub fn rotation_plan(p: &crate::plan::rotation::RotationPlan, warnings: &[String], format: Format, out: &mut dyn Write) -> io::Result<()> {
    use crate::plan::rotation::{Action, StepPlan};
    match format {
        Format::Json | Format::Yaml => {
            let mut v = serde_json::to_value(p).map_err(io::Error::other)?;
            v["warnings"] = serde_json::json!(warnings);
            structured(&v, format, out)
        }
        _ => {
            let (files, restarts, nodes) = p.counts();
            writeln!(out, "kcert rotate-ca: plan {} for {} ({}), made {}", p.id, p.cluster, p.distribution, p.created_at)?;
            let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
            writeln!(out, "Rotates {} on {}: {} and {}, in {} stages.", plural(p.cas.len(), "CA"), plural(nodes, "node"), plural(files, "file change"), plural(restarts, "restart"), p.stages.len())?;
            writeln!(out, "\nCAs")?;
            for c in &p.cas {
                writeln!(out, "  {} ({})", c.alias, c.path)?;
                writeln!(out, "      old  {} [{}], expires {}", c.old_subject, &c.old_sha256[..8], rfc3339(c.old_not_after))?;
                writeln!(out, "      new  {} [{}], {}, expires {}", c.new_subject, &c.new_sha256[..8], c.key_type, rfc3339(c.new_not_after))?;
            }
            for s in &p.stages {
                writeln!(out, "\n{} {}", s.id, s.name)?;
                for c in &s.checks {
                    writeln!(out, "  check    {c}")?;
                }
                if s.steps.is_empty() && s.checks.is_empty() {
                    writeln!(out, "  nothing to do")?;
                }
                for (i, step) in s.steps.iter().enumerate() {
                    match step {
                        StepPlan::Api(a) => {
                            writeln!(out, "  step {}/{}: on {}: {}", i + 1, s.steps.len(), a.node, a.name)?;
                            if let Some(why) = &a.skipped {
                                writeln!(out, "      skipped: {why}")?;
                            }
                        }
                        StepPlan::Batch(b) => {
                            writeln!(out, "  step {}/{}: {}", i + 1, s.steps.len(), b.nodes.join(", "))?;
                            for n in b.ops.iter().filter(|n| !n.files.is_empty() || !n.restarts.is_empty()) {
                                writeln!(out, "    {}", n.node)?;
                                for f in &n.files {
                                    let (sign, shas) = match f.action {
                                        Action::Create => ("+", format!("new, mode {:04o}", f.mode)),
                                        Action::Remove => ("-", format!("sha256 {} -> removed", short_sha(f.old_sha256.as_deref()))),
                                        Action::Modify => ("~", format!("sha256 {} -> {}", short_sha(f.old_sha256.as_deref()), short_sha(f.new_sha256.as_deref()))),
                                    };
                                    let private = if f.private && f.action == Action::Modify { ", a private key: written 0600" } else { "" };
                                    writeln!(out, "      {sign} {}  ({shas}{private})", f.path)?;
                                    for c in &f.changes {
                                        writeln!(out, "          {c}")?;
                                    }
                                }
                                if !n.restarts.is_empty() {
                                    let how = if p.options.offline { " (skipped: offline)" } else { "" };
                                    writeln!(out, "      restart {}{how}", n.restarts.join(", "))?;
                                }
                            }
                            if !b.gates.is_empty() {
                                let mut by_edge: Vec<(String, usize)> = Vec::new();
                                for g in &b.gates {
                                    match by_edge.iter_mut().find(|(e, _)| e == &g.edge) {
                                        Some(x) => x.1 += 1,
                                        None => by_edge.push((g.edge.clone(), 1)),
                                    }
                                }
                                let parts: Vec<String> = by_edge.iter().map(|(e, n)| if *n == 1 { e.clone() } else { format!("{e} x{n}") }).collect();
                                writeln!(out, "    gate  {} live handshakes: {}", b.gates.len(), parts.join(", "))?;
                            } else if p.options.offline && b.ops.iter().any(|o| !o.restarts.is_empty()) {
                                writeln!(out, "    gate  skipped: offline")?;
                            }
                        }
                    }
                }
            }
            writeln!(out, "\nProof: each of the {} trust edges holds after every one of the {} writes and restarts (inside batches too), and the signing pair matches at every stage boundary.", p.proof.edges, p.proof.steps)?;
            if !p.notes.is_empty() {
                writeln!(out, "\nNotes")?;
                for n in &p.notes {
                    writeln!(out, "  - {n}")?;
                }
            }
            if !warnings.is_empty() {
                writeln!(out, "\nAs the files stand now (kcert verify), fixed by S4's re-signing or worth a look:")?;
                for w in warnings {
                    writeln!(out, "  - {w}")?;
                }
            }
            Ok(())
        }
    }
}

/// The summary of a staged run (rotate-ca, apply, resume, rollback).
pub fn stage_report(r: &crate::runner::RunReport, format: Format, out: &mut dyn Write) -> io::Result<()> {
    match format {
        Format::Json | Format::Yaml => {
            let mut v = serde_json::to_value(r).map_err(io::Error::other)?;
            v["own_seconds"] = serde_json::json!(r.wall_seconds - r.wait_seconds);
            structured(&v, format, out)
        }
        _ => {
            let mut rows = vec![["STAGE", "", "STEPS", "FILES", "RESTARTS", "CHECKS", "STATUS", "WAITED", "TOTAL"].map(String::from).to_vec()];
            for s in &r.stages {
                rows.push(vec![s.stage.clone(), s.name.clone(), s.steps.to_string(), s.files.to_string(), s.restarts.to_string(), s.checks.to_string(), s.status.clone(), format!("{:.1}s", s.wait_seconds), format!("{:.1}s", s.total_seconds)]);
            }
            table(&rows, out)?;
            writeln!(out, "\nrun {} (journal: {})", r.run_id, r.journal)?;
            writeln!(out, "took {:.1}s: {:.1}s waiting for restarts, health gates and API steps, {:.1}s kcert's own work", r.wall_seconds, r.wait_seconds, r.wall_seconds - r.wait_seconds)?;
            if let Some(f) = &r.failure {
                writeln!(out, "STOPPED: {f}")?;
            }
            Ok(())
        }
    }
}

/// `kcert runs`.
pub fn runs(list: &[crate::rotate::RunSummary], format: Format, out: &mut dyn Write) -> io::Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &serde_json::json!({ "runs": list }))?;
            writeln!(out)
        }
        Format::Yaml => out.write_all(serde_saphyr::to_string(&serde_json::json!({ "runs": list })).map_err(io::Error::other)?.as_bytes()),
        _ => {
            if list.is_empty() {
                return writeln!(out, "no runs recorded");
            }
            let mut rows = vec![["RUN", "COMMAND", "STARTED", "STATE", "DETAIL"].map(String::from).to_vec()];
            for r in list {
                rows.push(vec![r.run_id.clone(), r.command.clone(), r.started.clone(), r.state.clone(), r.detail.clone()]);
            }
            table(&rows, out)
        }
    }
}
