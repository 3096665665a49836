//! Owns: how a run's end reads (its stages, its nodes, its timing, why it stopped) and the
//! list of runs in the state dir.
//! Must not: compute anything the report does not hold.

use std::io::{self, Write};

use super::{Format, structured, table};
use crate::ops::runs::RunSummary;
use crate::run::{NodeStatus, RunReport};

/// The summary of a run (renew, rotate-ca, apply, resume, rollback).
pub fn run_report(r: &RunReport, format: Format, out: &mut dyn Write) -> io::Result<()> {
    match format {
        Format::Json | Format::Yaml => {
            let mut v = serde_json::to_value(r).map_err(io::Error::other)?;
            v["own_seconds"] = serde_json::json!(r.wall_seconds - r.wait_seconds);
            structured(&v, format, out)
        }
        _ => {
            let mut rows = vec![["STAGE", "", "STEPS", "FILES", "RESTARTS", "CHECKS", "STATUS", "WAITED", "TOTAL"].map(String::from).to_vec()];
            for s in &r.stages {
                rows.push(vec![
                    s.stage.to_string(),
                    s.name.clone(),
                    s.steps.to_string(),
                    s.files.to_string(),
                    s.restarts.to_string(),
                    s.checks.to_string(),
                    s.status.as_str().to_string(),
                    format!("{:.1}s", s.wait_seconds),
                    format!("{:.1}s", s.total_seconds),
                ]);
            }
            table(&rows, out)?;
            writeln!(out)?;
            let mut rows = vec![["NODE", "FILES", "RESTARTED", "STATUS"].map(String::from).to_vec()];
            for n in &r.nodes {
                let restarted = if n.restarted.is_empty() { "-".to_string() } else { n.restarted.join(", ") };
                let status = match n.status {
                    NodeStatus::Unchanged => "unchanged",
                    NodeStatus::Written => "written (restarts and gates skipped: offline)",
                    NodeStatus::Changed => "changed",
                    NodeStatus::Restored => "restored",
                };
                rows.push(vec![n.node.clone(), n.files.to_string(), restarted, status.to_string()]);
            }
            table(&rows, out)?;
            if !r.notes.is_empty() {
                writeln!(out, "\nNotes")?;
                for n in &r.notes {
                    writeln!(out, "  - {n}")?;
                }
            }
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
pub fn runs(list: &[RunSummary], format: Format, out: &mut dyn Write) -> io::Result<()> {
    match format {
        Format::Json | Format::Yaml => structured(&serde_json::json!({ "runs": list }), format, out),
        _ => {
            if list.is_empty() {
                return writeln!(out, "no runs recorded");
            }
            let kept = list.iter().any(|r| !r.kept_on.is_empty());
            let mut head = vec!["RUN", "COMMAND", "STARTED", "STATE"];
            if kept {
                head.push("KEPT ON");
            }
            head.push("DETAIL");
            let mut rows = vec![head.into_iter().map(String::from).collect::<Vec<_>>()];
            for r in list {
                let mut row = vec![r.run_id.clone(), r.command.clone(), r.started.clone(), r.state.as_str().to_string()];
                if kept {
                    row.push(r.kept_on.join(","));
                }
                row.push(r.detail.clone());
                rows.push(row);
            }
            table(&rows, out)
        }
    }
}
