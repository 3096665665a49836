//! Owns: every byte kcert prints as a result: tables, JSON, YAML, Prometheus text and DOT,
//! for reports (`reports`), plans (`plan`) and runs (`run`). The JSON field names and metric
//! names here are a contract (DESIGN.md section 2).
//! Must not: compute anything a report or plan does not already hold.

mod plan;
mod reports;
mod run;

use std::io::{self, Write};

use serde::Serialize;

pub use plan::plan;
pub use reports::{check, expiry, verify};
pub use run::{run_report, runs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
    /// x509-certificate-exporter's metrics (expiry only).
    Prom,
    /// Graphviz DOT (verify only).
    Dot,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Table => "table",
            Format::Json => "json",
            Format::Yaml => "yaml",
            Format::Prom => "prom",
            Format::Dot => "dot",
        }
    }
}

/// `-o json` (pretty) or `-o yaml` of anything serializable; the one place both are written.
fn structured<T: Serialize>(v: &T, format: Format, out: &mut dyn Write) -> io::Result<()> {
    match format {
        Format::Yaml => out.write_all(serde_saphyr::to_string(v).map_err(io::Error::other)?.as_bytes()),
        _ => {
            serde_json::to_writer_pretty(&mut *out, v)?;
            writeln!(out)
        }
    }
}

/// A table: columns padded to their widest cell, the last one left as it is.
pub(crate) fn table(rows: &[Vec<String>], out: &mut dyn Write) -> io::Result<()> {
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
