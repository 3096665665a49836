//! Owns: how a plan reads: Terraform-style for a rotation (per stage and step, per node each
//! file with what changes in it, restarts and gates), per node for a renewal (each file, its
//! certificates' old and new expiry); JSON and YAML are the plan itself.
//! Must not: compute anything the plan does not hold.

use std::io::{self, Write};

use super::{Format, structured};
use crate::plan::schema::{Action, Batch, Kind, Plan, Recipe, StepPlan};
use crate::text::{plural, prefix, rfc3339, short_sha};

/// A plan, with what `verify` found that does not stop it.
pub fn plan(p: &Plan, warnings: &[String], format: Format, out: &mut dyn Write) -> io::Result<()> {
    match format {
        Format::Json | Format::Yaml => {
            let mut v = serde_json::to_value(p).map_err(io::Error::other)?;
            v["warnings"] = serde_json::json!(warnings);
            structured(&v, format, out)
        }
        _ => {
            match p.kind {
                Kind::RotateCa => rotation(p, out)?,
                Kind::Renew => renewal(p, out)?,
            }
            if !warnings.is_empty() {
                writeln!(out, "\nAs the files stand now (kcert verify), fixed by the plan or worth a look:")?;
                for w in warnings {
                    writeln!(out, "  - {w}")?;
                }
            }
            Ok(())
        }
    }
}

fn header(p: &Plan, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "kcert {}: plan {} for {} ({}), made {}", p.kind, p.id, p.cluster, p.made_with.playbook.name, p.created_at)
}

fn proof(p: &Plan, out: &mut dyn Write) -> io::Result<()> {
    let pair = if p.kind == Kind::RotateCa { "; the signing pair matches at every stage boundary" } else { "" };
    let tokens = if p.proof.tokens > 0 {
        format!("; each of the {} service-account token edges (signer key -> verifying keys, and tokens already issued -> verifying keys) holds after every step", p.proof.tokens)
    } else {
        String::new()
    };
    writeln!(out, "\nProof: each of the {} trust edges holds after every one of the {} writes and restarts (inside batches too){pair}{tokens}.", p.proof.edges, p.proof.steps)?;
    if !p.notes.is_empty() {
        writeln!(out, "\nNotes")?;
        for n in &p.notes {
            writeln!(out, "  - {n}")?;
        }
    }
    Ok(())
}

fn gate_line(b: &Batch, offline: bool, out: &mut dyn Write) -> io::Result<()> {
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
    } else if offline && b.ops.iter().any(|o| !o.restarts.is_empty()) {
        writeln!(out, "    gate  skipped: offline")?;
    }
    Ok(())
}

fn rotation(p: &Plan, out: &mut dyn Write) -> io::Result<()> {
    let (files, restarts, nodes) = p.counts();
    header(p, out)?;
    writeln!(out, "Rotates {} on {}: {} and {}, in {} stages.", plural(p.cas.len(), "CA"), plural(nodes, "node"), plural(files, "file change"), plural(restarts, "restart"), p.stages.len())?;
    writeln!(out, "\nCAs")?;
    for c in &p.cas {
        writeln!(out, "  {} ({})", c.alias, c.path)?;
        writeln!(out, "      old  {} [{}], expires {}", c.old_subject, prefix(&c.old_sha256, 8), rfc3339(c.old_not_after))?;
        writeln!(out, "      new  {} [{}], {}, expires {}", c.new_subject, prefix(&c.new_sha256, 8), c.key_type, rfc3339(c.new_not_after))?;
    }
    for s in &p.stages {
        writeln!(out, "\n{} {}", s.id, s.name)?;
        for c in &s.checks {
            writeln!(out, "  check    {c}")?;
        }
        if s.undo.as_ref().is_some_and(|u| u.in_order) {
            writeln!(out, "  rollback: its steps are undone first to last (the datastore set back first, then the nodes as they went)")?;
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
                    if let Some(undo) = &a.undo {
                        writeln!(out, "      rollback: {undo}")?;
                    }
                }
                StepPlan::Batch(b) => {
                    writeln!(out, "  step {}/{}: {}", i + 1, s.steps.len(), b.nodes.join(", "))?;
                    for n in b.ops.iter().filter(|n| !n.files.is_empty() || !n.restarts.is_empty() || n.reissue.is_some()) {
                        writeln!(out, "    {}", n.node)?;
                        for f in &n.files {
                            let (sign, shas) = match f.action {
                                Action::Create => ("+", format!("new, mode {:04o}", f.mode)),
                                Action::Remove => ("-", format!("sha256 {} -> removed", short_sha(f.old_sha256.as_deref()))),
                                Action::Modify => ("~", format!("sha256 {} -> {}", short_sha(f.old_sha256.as_deref()), short_sha(f.new_sha256.as_deref()))),
                            };
                            let private = match (&f.recipe, f.private && f.action == Action::Modify) {
                                (Recipe::JoinToken { .. }, _) => ", holds a join token's secret: never shown",
                                (_, true) => ", a private key: written 0600",
                                _ => "",
                            };
                            writeln!(out, "      {sign} {}  ({shas}{private})", f.path)?;
                            for c in f.changes.iter() {
                                writeln!(out, "          {c}")?;
                            }
                        }
                        if !n.restarts.is_empty() {
                            let how = if p.options.offline { " (skipped: offline)" } else { "" };
                            writeln!(out, "      restart {}{how}", n.restarts.join(", "))?;
                        }
                        if let Some(r) = &n.reissue {
                            reissue(r, p.options.offline, "    ", out)?;
                        }
                    }
                    gate_line(b, p.options.offline, out)?;
                }
            }
        }
    }
    proof(p, out)
}

/// A node whose own tool re-issues its certificates: the unit's stop, each file backed up,
/// the tool, the start that makes the files again.
fn reissue(r: &crate::plan::schema::Reissue, offline: bool, pad: &str, out: &mut dyn Write) -> io::Result<()> {
    let skipped = if offline { " (skipped: offline)" } else { "" };
    writeln!(out, "{pad}  stop    {}{skipped}", r.stop)?;
    for f in &r.files {
        let private = if f.private { ", a private key: backed up 0600" } else { "" };
        let what = f.what.as_ref().map(|w| format!("\n{pad}          {w}")).unwrap_or_default();
        let sha = match f.made_in {
            Some(stage) => format!("as {stage} leaves it"),
            None => format!("sha256 {}", short_sha(Some(&f.old_sha256))),
        };
        writeln!(out, "{pad}  backup  {}  ({sha}{private}){what}", f.path)?;
    }
    for c in &r.run {
        writeln!(out, "{pad}  run     {c}{skipped}")?;
    }
    writeln!(out, "{pad}  start   {}{skipped}: {} makes the {} above again (each checked to differ from its backup)", r.start, r.unit, plural(r.files.len(), "file"))?;
    let with = if r.components.is_empty() { "none of its components was found here".to_string() } else { r.components.join(", ") };
    writeln!(out, "{pad}          restarts with it: {with}")?;
    for s in &r.serves {
        writeln!(out, "{pad}  check   {}:{} serves what {} then holds{skipped}", s.host, s.port, s.path)?;
    }
    Ok(())
}

/// A renewal, node by node: each file and its certificates' old and new expiry, what
/// restarts, the gate's checks that touch the node, and what was left alone and why.
fn renewal(p: &Plan, out: &mut dyn Write) -> io::Result<()> {
    header(p, out)?;
    let offline = p.options.offline;
    let skipped = |s: String| if offline { format!("{s} (skipped: offline)") } else { s };
    let mut files = 0;
    let mut changed = 0;
    for s in &p.stages {
        for step in &s.steps {
            if let StepPlan::Api(a) = step {
                let why = a.skipped.as_ref().map(|w| format!(" (skipped: {w})")).unwrap_or_default();
                writeln!(out, "first, on {}: {}{why}\n  {}", a.node, a.name, a.script)?;
            }
        }
    }
    for node in p.nodes() {
        writeln!(out, "node {node}")?;
        let mine: Vec<(&Batch, &crate::plan::schema::NodeOps)> = p.batches().flat_map(|b| b.ops.iter().filter(|o| o.node == node).map(move |o| (b, o))).collect();
        if mine.iter().all(|(_, o)| o.files.is_empty() && o.reissue.is_none()) {
            writeln!(out, "  nothing to renew")?;
        } else {
            changed += 1;
        }
        for (b, o) in &mine {
            if let Some(r) = &o.reissue {
                files += r.files.len();
                reissue(r, offline, "", out)?;
            }
            for f in &o.files {
                files += 1;
                writeln!(out, "  ~ {}", f.path)?;
                for c in &f.certificates {
                    let what = c.field.as_deref().map(|fl| format!("{} {fl}", c.name)).unwrap_or_else(|| c.name.clone());
                    let cap = if c.capped_at_ca_expiry { "  (capped at the CA's expiry)" } else { "" };
                    writeln!(out, "      {what}: expires {} -> {}{cap}", c.old_not_after, c.new_not_after)?;
                    writeln!(out, "        {}, signed by {}", c.subject, c.signer)?;
                }
            }
            for r in &o.restarts {
                writeln!(out, "  restart {}", skipped(r.clone()))?;
            }
            for g in b.gates.iter().filter(|g| g.from == node || g.to == node) {
                writeln!(out, "  gate    {}", skipped(g.label()))?;
            }
        }
        for n in p.node_notes.iter().filter(|n| n.node == node) {
            writeln!(out, "  note    {}", n.note)?;
        }
    }
    writeln!(out, "\n{files} files on {changed} nodes to change, in {}.", plural(p.stage(crate::plan::StageId::Renew).map_or(0, |s| s.steps.len()), "step"))?;
    proof(p, out)
}
