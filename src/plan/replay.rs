//! Owns: replaying a plan on the files as they stand now, before it runs (`apply`, `resume`):
//! every op must find its old bytes (or, resumed, its new ones), every recipe must rebuild its
//! planned bytes, the signing pair must match at every stage boundary, and a rotation's end
//! must be a finished rotation. A plan edited by hand, or whose files moved, is caught here.
//! Must not: do I/O, or change anything (it works on copies).

use std::collections::{BTreeMap, BTreeSet};

use super::outcome;
use super::parts;
use super::schema::{Kind, Plan, StageId, StepPlan};
use crate::gather::facts::NodeFacts;
use crate::pki::sha256;
use crate::playbook::Playbook;
use crate::text::short_sha;

/// Replays the steps not in `done` on copies of `nodes`' files (which already hold what the done
/// steps wrote); every problem found.
pub fn replay(pb: &Playbook, nodes: &[NodeFacts], plan: &Plan, keys: &BTreeMap<String, String>, done: &BTreeSet<(StageId, usize)>) -> Vec<String> {
    let mut files: BTreeMap<(String, String), Option<Vec<u8>>> = BTreeMap::new();
    let get = |files: &BTreeMap<(String, String), Option<Vec<u8>>>, node: &str, path: &str| -> Option<Vec<u8>> {
        match files.get(&(node.to_string(), path.to_string())) {
            Some(v) => v.clone(),
            None => nodes.iter().find(|n| n.name == node).and_then(|n| n.files.get(path).map(|b| b.to_vec())),
        }
    };
    let mut out = Vec::new();
    let tokens = crate::plan::tokens::TokenBaseline::new(pb, nodes);
    for s in &plan.stages {
        // A stage done already is behind the files as they stand: only what is left is replayed.
        if (0..s.steps.len()).all(|bi| done.contains(&(s.id, bi))) && !s.steps.is_empty() {
            continue;
        }
        for (bi, step) in s.steps.iter().enumerate() {
            let StepPlan::Batch(b) = step else { continue };
            if done.contains(&(s.id, bi)) {
                continue;
            }
            for o in &b.ops {
                for f in &o.files {
                    let cur = get(&files, &o.node, &f.path);
                    let cur_sha = cur.as_deref().map(sha256);
                    let at = format!("{} step {}: {}: {}", s.id, bi + 1, o.node, f.path);
                    if cur_sha == f.new_sha256 {
                        // Written by a step that was cut short: left as it is.
                        continue;
                    }
                    if cur_sha != f.old_sha256 {
                        out.push(format!("{at}: holds sha256 {} where the plan expects {}", short_sha(cur_sha.as_deref()), short_sha(f.old_sha256.as_deref())));
                        continue;
                    }
                    match f.recipe.apply(cur.as_deref(), &|ca| keys.get(ca).cloned()) {
                        Ok(new) if new.as_deref().map(sha256) == f.new_sha256 => {
                            files.insert((o.node.clone(), f.path.clone()), new);
                        }
                        Ok(new) => out.push(format!("{at}: its recipe makes sha256 {} where the plan says {}", short_sha(new.as_deref().map(sha256).as_deref()), short_sha(f.new_sha256.as_deref()))),
                        Err(e) => out.push(format!("{at}: its recipe cannot be carried out: {e}")),
                    }
                }
            }
        }
        out.extend(parts::pair_problems(pb, nodes, s.id, &|node, path| get(&files, node, path)));
        out.extend(crate::plan::tokens::token_problems(pb, nodes, &tokens, &|node, path| get(&files, node, path), &format!("after {}", s.id)));
    }
    // Where the nodes make the new files themselves (a datastore's rotation, k3s), the end
    // is theirs to reach: it is checked on the nodes after each start, not replayed here.
    let by_nodes = plan.made_by_nodes();
    if out.is_empty() && plan.kind == Kind::RotateCa && !by_nodes {
        let after: Vec<NodeFacts> = nodes
            .iter()
            .map(|n| {
                let mut n = n.clone();
                for ((node, path), bytes) in &files {
                    if node == &n.name {
                        match bytes {
                            Some(b) => n.files.insert(path.clone(), b.as_slice().into()),
                            None => n.files.remove(path),
                        };
                    }
                }
                n
            })
            .collect();
        out.extend(outcome::rotation_problems(pb, &after, plan).into_iter().map(|p| format!("when the plan is done, {p}")));
    }
    out
}
