//! Owns: reading a saved plan back from its JSON text, and checking every field the runner
//! and the renderer index or slice, so a hand-edited or damaged plan is a clear input error
//! naming the field, never a panic halfway through a run.
//! Must not: read files (the caller hands it the bytes), or judge whether the facts still hold.

use std::collections::BTreeSet;
use std::path::Path;

use super::schema::{Action, Kind, PLAN_VERSION, Plan, Recipe, StageId, StepPlan};
use crate::error::{Error, Result};
use crate::pki::edit;

/// Parses and checks a plan, as saved (gzip) or as its JSON; `path` names it in errors.
pub fn read(bytes: &[u8], path: &Path) -> Result<Plan> {
    let what = format!("plan {}", path.display());
    let bytes = super::stored::json_of(bytes, MAX_JSON_BYTES).map_err(|e| Error::input(what.clone(), format!("not a kcert plan: {e}")))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| Error::InputAt { file: path.to_path_buf(), line: e.line() as u64, column: e.column() as u64, message: format!("not a kcert plan: {e}") })?;
    if let Some(n) = oversized_string(&v) {
        return Err(Error::input(what, format!("a string of {n} bytes, longer than any file kcert writes (at most {MAX_STRING_BYTES}): not a plan kcert made")));
    }
    let field = |k: &str| v.get(k).map(|x| x.to_string()).unwrap_or_else(|| "missing".into());
    let kind = v.get("kind").and_then(|k| k.as_str());
    if !Kind::ALL.iter().any(|k| Some(k.as_str()) == kind) {
        let known: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        return Err(Error::input(what, format!("not a kcert plan of a known kind ({}): its kind is {}", known.join(" or "), field("kind"))));
    }
    let version = v.get("version").and_then(|k| k.as_u64());
    if version != Some(u64::from(PLAN_VERSION)) {
        let whose = match version {
            Some(n) if n < u64::from(PLAN_VERSION) => " (an older kcert's format)",
            Some(_) => " (a newer kcert's format)",
            None => "",
        };
        return Err(Error::input(what, format!("plan format version {}{whose}; this kcert reads version {PLAN_VERSION}: nothing was changed; make the plan again with this kcert", field("version"))));
    }
    let mut v = v;
    let stored = |m: String| Error::input(what.clone(), format!("{m}; nothing was changed (was it edited by hand? make the plan again)"));
    let texts = super::stored::take_texts(&mut v).map_err(stored)?;
    let mut plan: Plan = serde_json::from_value(v).map_err(|e| Error::input(what.clone(), format!("not a readable plan: {e}")))?;
    super::stored::expand(&mut plan, &texts).map_err(stored)?;
    check(&plan).map_err(stored)?;
    Ok(plan)
}

/// The most JSON a plan may hold (a 5,000-node rotation's is about 60 MB).
pub const MAX_JSON_BYTES: u64 = 512 * 1024 * 1024;

/// The longest string a plan kcert made holds: a file's new text or a kubeconfig's base64 of
/// one, and a node's file is at most 1 MiB. serde_json already refuses nesting past 128 levels.
const MAX_STRING_BYTES: usize = 8 * 1024 * 1024;

/// The length of the first string (key or value) longer than `MAX_STRING_BYTES`, if any.
fn oversized_string(v: &serde_json::Value) -> Option<usize> {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::String(s) if s.len() > MAX_STRING_BYTES => return Some(s.len()),
            serde_json::Value::Array(a) => stack.extend(a),
            serde_json::Value::Object(o) => {
                if let Some(k) = o.keys().find(|k| k.len() > MAX_STRING_BYTES) {
                    return Some(k.len());
                }
                stack.extend(o.values());
            }
            _ => {}
        }
    }
    None
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn sha(field: &str, s: &str) -> std::result::Result<(), String> {
    if is_sha256(s) { Ok(()) } else { Err(format!("{field}: {s:?} is not a sha256 (64 lowercase hex digits)")) }
}

/// Every field the runner relies on, checked.
pub fn check(p: &Plan) -> std::result::Result<(), String> {
    if p.id.is_empty() || p.id.contains('/') || p.id.starts_with('.') {
        return Err(format!("id: {:?} is not a plan id", p.id));
    }
    sha("made_with.playbook.sha256", &p.made_with.playbook.sha256)?;
    let nodes: BTreeSet<&str> = p.facts.iter().map(|f| f.node.as_str()).collect();
    for (i, f) in p.facts.iter().enumerate() {
        sha(&format!("facts[{i}].sha256"), &f.sha256)?;
        if !f.path.starts_with('/') {
            return Err(format!("facts[{i}].path: {:?} is not absolute", f.path));
        }
    }
    let mut cas = BTreeSet::new();
    for (i, c) in p.cas.iter().enumerate() {
        sha(&format!("cas[{i}].old_sha256"), &c.old_sha256)?;
        sha(&format!("cas[{i}].new_sha256"), &c.new_sha256)?;
        cas.insert(c.name.as_str());
    }
    // A rotation a datastore carries (k3s) has no trust stage of its own: the nodes take old
    // and new together at their restart, and the API objects are k3s's to update.
    let by_datastore = p.by_datastore();
    let wanted: &[StageId] = match p.kind {
        Kind::RotateCa if by_datastore => &[StageId::Preflight, StageId::NewCa, StageId::Resign, StageId::Prune],
        Kind::RotateCa => &[StageId::Preflight, StageId::NewCa, StageId::Trust, StageId::ApiObjects, StageId::Resign, StageId::Prune],
        Kind::Renew => &[StageId::Preflight, StageId::Renew],
    };
    let ids: Vec<StageId> = p.stages.iter().map(|s| s.id).collect();
    if ids != wanted {
        let show = |v: &[StageId]| v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
        return Err(format!("stages: a {} plan has stages {}, this one {}", p.kind, show(wanted), show(&ids)));
    }
    let known = |field: &str, node: &str| if nodes.contains(node) { Ok(()) } else { Err(format!("{field}: node {node:?} is not among the plan's facts")) };
    for (si, s) in p.stages.iter().enumerate() {
        for (bi, step) in s.steps.iter().enumerate() {
            let at = format!("stages[{si}].steps[{bi}]");
            match step {
                StepPlan::Api(a) => known(&format!("{at}.node"), &a.node)?,
                StepPlan::Batch(b) => {
                    for (gi, g) in b.gates.iter().enumerate() {
                        known(&format!("{at}.gates[{gi}].from"), &g.from)?;
                    }
                    for (oi, o) in b.ops.iter().enumerate() {
                        let at = format!("{at}.ops[{oi}]");
                        known(&format!("{at}.node"), &o.node)?;
                        if !b.nodes.contains(&o.node) {
                            return Err(format!("{at}.node: {:?} is not one of the batch's nodes", o.node));
                        }
                        for (fi, f) in o.files.iter().enumerate() {
                            let at = format!("{at}.files[{fi}]");
                            if !f.path.starts_with('/') || f.path.contains("/../") {
                                return Err(format!("{at}.path: {:?} is not a plain absolute path", f.path));
                            }
                            for (name, v) in [("old_sha256", &f.old_sha256), ("new_sha256", &f.new_sha256)] {
                                if let Some(v) = v {
                                    sha(&format!("{at}.{name}"), v)?;
                                }
                            }
                            let consistent = match f.action {
                                Action::Create => f.old_sha256.is_none() && f.new_sha256.is_some(),
                                Action::Modify => f.old_sha256.is_some() && f.new_sha256.is_some(),
                                Action::Remove => f.old_sha256.is_some() && f.new_sha256.is_none(),
                            };
                            if !consistent || (f.new_sha256.is_none()) != (f.recipe == Recipe::Remove) {
                                return Err(format!("{at}: its action, sha256s and recipe do not agree"));
                            }
                            if f.mode > 0o7777 || (f.private && f.mode & 0o077 != 0) {
                                return Err(format!("{at}.mode: {:o} is not a mode kcert writes", f.mode));
                            }
                            // A datastore rotation (k3s) also stages the service-account keys it makes
                            // (a key file of server/tls itself, as `service.key`).
                            let service_key = |ca: &str| by_datastore && ca.ends_with(".key") && !ca.contains('/');
                            if let Recipe::CaKey { ca, .. } | Recipe::OldCaKey { ca } = &f.recipe
                                && (!(cas.contains(ca.as_str()) || service_key(ca)) || !f.private)
                            {
                                return Err(format!("{at}.recipe: the key of CA {ca:?}, which the plan does not rotate (or not written 0600)"));
                            }
                            if edit::has_private_key(f.recipe.carried_text().as_bytes()) {
                                return Err(format!("{at}.recipe: holds private key material; refused"));
                            }
                        }
                        for (fi, f) in o.reissue.iter().flat_map(|r| r.files.iter()).enumerate() {
                            let at = format!("{at}.reissue.files[{fi}]");
                            if !f.path.starts_with('/') || f.path.contains("/../") {
                                return Err(format!("{at}.path: {:?} is not a plain absolute path", f.path));
                            }
                            // What an earlier stage made is not known when planned.
                            if f.made_in.is_none() || !f.old_sha256.is_empty() {
                                sha(&format!("{at}.old_sha256"), &f.old_sha256)?;
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(())
}
