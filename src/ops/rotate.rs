//! Owns: `rotate-ca` up to a plan, from the gathered facts: choosing the CAs, the file checks of
//! S0 (what a rotation cannot fix refuses it), making the new CAs and the plan, proving it.
//! Must not: print, or keep key material anywhere but memory (the caller saves it 0600).

use std::collections::BTreeMap;

use super::Prepared;
use crate::error::{Error, Result};
use crate::gather::Gathered;
use crate::pki::sign::KeyType;
use crate::plan::gates;
use crate::plan::rotation::{self, Input};
use crate::plan::schema::{Options, PlanTarget};
use crate::reach::fleet::Fleet;
use crate::report::verify;

#[derive(Debug, Clone)]
pub struct RotateOptions {
    /// `--ca` names; empty: every CA the playbook knows that the cluster has.
    pub cas: Vec<String>,
    pub ca_days: u32,
    pub leaf_days: u32,
    pub key_type: Option<KeyType>,
    pub batch_size: Option<usize>,
    pub now: i64,
}

/// From the gathered facts, makes the new CAs and the whole plan, proves it. Nothing is changed.
pub fn prepare(fleet: &Fleet, gathered: Gathered, opts: &RotateOptions) -> Result<Prepared> {
    let pb = &gathered.playbook;
    if pb.reissue.as_ref().is_some_and(|r| r.rotate_ca.is_some()) {
        return by_its_tool(fleet, opts, gathered);
    }
    let Some(rot) = &pb.rotation else {
        return Err(Error::input(format!("distribution {}", pb.name), "its playbook has no `rotation` section: kcert does not know how to rotate its CAs yet"));
    };
    // Without --ca, a CA the cluster does not have (kubeadm 1.8 had no etcd CA) is skipped, and
    // so is one a party outside the inventory trusts (external etcd, a webhook): both said.
    // Asked for by name, the latter is refused.
    let external = rotation::external_cas(pb, &gathered.nodes);
    let outside = |f: &str| external.iter().find(|(c, _)| c == f).map(|(_, why)| why.clone());
    let mut notes = Vec::new();
    let aliases: Vec<String> = if opts.cas.is_empty() {
        rot.cas
            .iter()
            .filter(|(a, f)| {
                if !gathered.nodes.iter().any(|n| n.pki.named.contains_key(*f)) {
                    notes.push(format!("no {a} CA ({f}) on any node: nothing of it to rotate"));
                    return false;
                }
                if let Some(why) = outside(f) {
                    notes.push(format!("the {a} CA is left alone: {why}; rotating it would cut that off (add those hosts to the inventory to rotate it with them)"));
                    return false;
                }
                true
            })
            .map(|(a, _)| a.clone())
            .collect()
    } else {
        let refused: Vec<String> = opts.cas.iter().filter_map(|a| rot.cas.get(a).and_then(|f| outside(f)).map(|why| format!("--ca {a}: {why}; rotating it would cut that off: add those hosts to the inventory, or leave it out"))).collect();
        if !refused.is_empty() {
            return Err(Error::input("rotate-ca", format!("nothing was changed:\n  {}", refused.join("\n  "))));
        }
        opts.cas.clone()
    };
    // One CA in several roles (a binary cluster's one ca.pem) is rotated once, under the
    // first name that holds it, and the plan says so. Each name's owner, worked out once.
    let owner_of: BTreeMap<&String, String> = rot
        .cas
        .iter()
        .filter(|(_, f)| gathered.nodes.iter().any(|n| n.pki.named.contains_key(*f)))
        .map(|(a, f)| {
            let same = crate::plan::build::same_ca_as(pb, &gathered.nodes, f);
            (a, rot.cas.iter().find(|(_, g)| **g == same).map(|(x, _)| x.clone()).unwrap_or_else(|| a.clone()))
        })
        .collect();
    let mut aliases_once: Vec<String> = Vec::new();
    let mut roles: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for a in &aliases {
        // An unknown name (or one on no node) is kept: the CA checks say what it is.
        let owner = owner_of.get(a).cloned().unwrap_or_else(|| a.clone());
        roles.entry(owner.clone()).or_default().push(a.clone());
        if !aliases_once.contains(&owner) {
            aliases_once.push(owner);
        }
    }
    for (owner, played) in &roles {
        let all: Vec<&str> = owner_of.iter().filter(|(_, o)| *o == owner).map(|(a, _)| a.as_str()).collect();
        if let Some((last, rest)) = all.split_last().filter(|_| all.len() > 1) {
            let asked = if played.iter().any(|p| p != owner) { format!(" (asked for as {})", played.join(", ")) } else { String::new() };
            notes.push(format!("one CA plays the {} and {last} roles here (the same certificate in each of their files): it is rotated once, as the {owner} CA{asked}", rest.join(", ")));
        }
    }
    let aliases = aliases_once;
    if aliases.is_empty() {
        return Err(Error::input("rotate-ca", format!("nothing to rotate; nothing was changed:\n  {}", notes.join("\n  "))));
    }
    let input = input(fleet, &gathered, opts, aliases.clone())?;
    let refused = |p: Vec<String>| Error::input("rotate-ca", format!("nothing was changed:\n  {}", p.join("\n  ")));
    let olds = rotation::old_cas(&input, &aliases).map_err(refused)?;
    // Checked before any key is made: what a rotation cannot fix refuses it.
    let (mut refuse, warnings) = file_checks(&gathered, opts.now);
    refuse.extend(crate::plan::parts::unreadable_kubeconfigs(pb, &gathered.nodes));
    if !refuse.is_empty() {
        return Err(Error::input("rotate-ca", format!("the cluster's files do not verify; nothing was changed:\n  {}", refuse.join("\n  "))));
    }
    let news = rotation::successors(&olds, opts.ca_days, opts.now, opts.key_type).map_err(|e| Error::input("rotate-ca", format!("{e}; nothing was changed")))?;
    let mut keys: BTreeMap<String, String> = news.iter().map(|n| (n.name.clone(), n.key_pem.clone())).collect();
    // The old CA keys a split-off use keeps (the service-account key), as the nodes hold them.
    let old_keys: Vec<(String, String)> = olds.iter().filter_map(|o| gathered.nodes.iter().find_map(|n| n.ca_key(pb, &o.name)).and_then(|(_, k)| crate::pki::edit::key_pem(k)).map(|k| (crate::plan::schema::old_key_id(&o.name), k))).collect();
    let mut plan = rotation::plan(&input, olds, news).map_err(refused)?;
    for (id, pem) in old_keys {
        if plan.key_ids().contains(&id) {
            keys.insert(id, pem);
        }
    }
    drop(input);
    plan.notes.splice(0..0, notes);
    Ok(Prepared { gathered, plan, keys, warnings })
}

/// A rotation through the distribution's own tool (k3s): kcert makes the cross-signed set
/// and the plan; the tool and the nodes' starts do the rest.
fn by_its_tool(fleet: &Fleet, opts: &RotateOptions, gathered: Gathered) -> Result<Prepared> {
    let pb = &gathered.playbook;
    let r = pb.reissue.as_ref().expect("checked by the caller");
    let rc = r.rotate_ca.as_ref().expect("checked by the caller");
    let (refuse, warnings) = file_checks(&gathered, opts.now);
    if !refuse.is_empty() {
        return Err(Error::input("rotate-ca", format!("the cluster's files do not verify; nothing was changed:\n  {}", refuse.join("\n  "))));
    }
    let input = input(fleet, &gathered, opts, opts.cas.clone())?;
    let (plan, keys) = crate::plan::reissue_ca::plan(&input, r, rc, &opts.cas)?;
    drop(input);
    Ok(Prepared { gathered, plan, keys, warnings })
}

/// What the planners are given: the gathered nodes, the live checks (none offline), the options.
fn input<'g>(fleet: &Fleet, gathered: &'g Gathered, opts: &RotateOptions, cas: Vec<String>) -> Result<Input<'g>> {
    let pb = &gathered.playbook;
    let offline = gathered.offline();
    Ok(Input {
        playbook: pb,
        target: PlanTarget { inventory: fleet.inventory.clone(), root: fleet.root(), from_ansible: fleet.from_ansible },
        nodes: &gathered.nodes,
        checks: if offline { Vec::new() } else { gates::checks(pb, &gathered.nodes) },
        opts: Options {
            batch_size: opts.batch_size.unwrap_or(fleet.batch_size).max(1),
            kubernetes_api: fleet.kubernetes_api,
            offline,
            leaf_days: opts.leaf_days,
            cas,
            ca_days: Some(opts.ca_days),
            key_type: opts.key_type,
            certs: Vec::new(),
        },
        id: crate::run::journal::stamped_id("plan", opts.now)?,
        cluster: fleet.cluster.clone(),
        now: opts.now,
    })
}

/// S0's file checks (`kcert verify`): keys that do not match their certificates, signing
/// pairs that are not one, unreadable files refuse the rotation; expiry and SAN findings are
/// warnings (S4 re-signs), and so is a missing file (there is nothing to re-sign in it).
fn file_checks(g: &Gathered, now: i64) -> (Vec<String>, Vec<String>) {
    let (edges, findings) = verify::graph(&g.playbook, &g.nodes, now);
    let mut refuse = Vec::new();
    let mut warn = Vec::new();
    for e in &edges {
        for p in &e.problems {
            let line = format!("{} {} -> {}: {p}", e.edge, e.client, e.server);
            if p.kind.refuses_rotation() { refuse.push(line) } else { warn.push(line) }
        }
    }
    for f in &findings {
        let line = format!("{} {}: {}", f.node, f.component, f.message);
        if f.broken && f.kind.refuses_rotation() { refuse.push(line) } else { warn.push(line) }
    }
    refuse.dedup();
    warn.dedup();
    (refuse, warn)
}
