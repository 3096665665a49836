//! Owns: plans on the operator's disk: saving one (no key in it; a rotation's new CA keys
//! 0600 in the state dir), reading one back, and refusing one whose facts moved, whose
//! playbook changed, or whose keys are not its CAs'.
//! Must not: carry a plan out, or write a key anywhere but a 0600 file.

use std::collections::BTreeMap;
use std::path::Path;

use super::Saved;
use crate::error::{Error, Result};
use crate::gather::Gathered;
use crate::pki::first_cert;
use crate::pki::sign::key_matches;
use crate::plan::Plan;
use crate::playbook::{self, Playbook};
use crate::reach::inventory::load_playbook;
use crate::run::keys;
use crate::text::short_sha;

/// A saved plan is 100-200 KB per hundred nodes (1 MB of JSON); more than this is not one.
const MAX_PLAN_BYTES: u64 = crate::plan::read::MAX_JSON_BYTES;

/// Saves a plan for `kcert apply`: the plan file (no key in it) and a rotation's new CA keys
/// in the state dir (0600), where apply finds them by the plan's id.
pub fn save(plan: &Plan, keys: &BTreeMap<String, String>, path: &Path, state_dir: &Path) -> Result<Saved> {
    let keys_dir = if keys.is_empty() {
        None
    } else {
        let dir = keys::plan_keys_dir(state_dir, &plan.id);
        keys::save_keys(&dir, keys)?;
        Some(dir)
    };
    keys::save_plan(path, plan, false)?;
    Ok(Saved { path: path.to_path_buf(), keys: keys_dir })
}

/// Reads a saved plan (a regular file of reasonable size) and checks every field.
pub fn load_plan(path: &Path) -> Result<Plan> {
    let what = format!("plan {}", path.display());
    let meta = std::fs::metadata(path).map_err(|e| Error::input(what.clone(), e.to_string()))?;
    if !meta.is_file() {
        return Err(Error::input(what, "not a regular file"));
    }
    if meta.len() > MAX_PLAN_BYTES {
        return Err(Error::input(what, format!("{} bytes: too large to be a kcert plan", meta.len())));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::input(what, e.to_string()))?;
    crate::plan::read::read(&bytes, path)
}

/// The playbook a plan was made with, as it is now: refused, naming both digests, when its
/// text changed (a new kcert with another embedded playbook, or an edited file).
pub fn playbook_of(plan: &Plan) -> Result<Playbook> {
    let src = &plan.made_with.playbook;
    let pb = match &src.path {
        Some(p) => load_playbook(&p.to_string_lossy())?,
        None => playbook::builtin(&src.name).ok_or_else(|| Error::input(format!("plan {}", plan.id), format!("made with the embedded playbook {:?}, which this kcert does not have", src.name)))?,
    };
    if pb.source.sha256 != src.sha256 {
        let at = src.path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| format!("embedded in kcert {}", plan.made_with.kcert));
        return Err(Error::input(
            format!("plan {}", plan.id),
            format!(
                "its playbook {} ({at}) had sha256 {} when the plan was made, and has {} now (this is kcert {}); nothing was changed: make the plan again with this playbook",
                src.name,
                src.sha256,
                pb.source.sha256,
                env!("CARGO_PKG_VERSION")
            ),
        ));
    }
    Ok(pb)
}

/// Loads a saved plan's new CA keys and checks each is its CA's.
pub fn plan_keys(plan: &Plan, dir: &Path) -> Result<BTreeMap<String, String>> {
    let keys = keys::load_keys(dir, &plan.key_ids())?;
    for c in &plan.cas {
        if let Some(old) = keys.get(&crate::plan::schema::old_key_id(&c.name)) {
            let cert = first_cert(c.old_pem.as_bytes()).map_err(|e| Error::input(format!("plan {}", plan.id), format!("the old {} CA certificate: {e}", c.alias)))?;
            if !key_matches(&cert, old.as_bytes()).unwrap_or(false) {
                return Err(Error::input(dir.join(format!("{}.key", crate::plan::schema::old_key_id(&c.name))).display().to_string(), format!("not the key of the plan's old {} CA", c.alias)));
            }
        }
        let cert = first_cert(c.cert_pem.as_bytes()).map_err(|e| Error::input(format!("plan {}", plan.id), format!("the new {} CA certificate: {e}", c.alias)))?;
        if !key_matches(&cert, keys[&c.name].as_bytes()).unwrap_or(false) {
            return Err(Error::input(dir.join(format!("{}.key", c.name)).display().to_string(), format!("not the key of the plan's new {} CA ({})", c.alias, c.new_subject)));
        }
    }
    Ok(keys)
}

/// How the facts a plan was made from differ from the cluster now (empty: they still hold).
pub fn facts_moved(plan: &Plan, g: &Gathered) -> Vec<String> {
    let mut then: BTreeMap<(&str, &str), &str> = plan.facts.iter().map(|f| ((f.node.as_str(), f.path.as_str()), f.sha256.as_str())).collect();
    let mut out = Vec::new();
    let nodes = plan.nodes();
    for n in &g.nodes {
        if !nodes.contains(&n.name.as_str()) {
            out.push(format!("{}: a node the plan does not know", n.name));
            continue;
        }
        for (path, bytes) in &n.files {
            let now = crate::pki::sha256(bytes);
            match then.remove(&(n.name.as_str(), path.as_str())) {
                Some(sha) if sha == now => {}
                Some(sha) => out.push(format!("{}: {path} changed (sha256 {} then, {} now)", n.name, short_sha(Some(sha)), short_sha(Some(&now)))),
                None => out.push(format!("{}: {path} appeared since the plan was made", n.name)),
            }
        }
    }
    for ((node, path), _) in then {
        if g.nodes.iter().any(|n| n.name == node) {
            out.push(format!("{node}: {path} is gone"));
        } else {
            out.push(format!("{node}: the node is not reachable in this run"));
        }
    }
    out.dedup();
    out
}
