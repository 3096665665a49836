//! Owns: choosing what a rotation replaces: the old CAs `--ca` names, as the nodes hold them
//! (one CA per file, the same on every node, its key present and matching), and a successor
//! made for each.
//! Must not: do I/O, or keep a new CA's key anywhere but the value it returns.

use super::Input;
use crate::pki::cert::CertInfo;
use crate::pki::sign::{KeyType, key_matches};
use crate::plan::build;
use crate::plan::model::CaId;

/// An old CA to replace, as found on the nodes.
#[derive(Debug, Clone)]
pub struct OldCa {
    pub alias: String,
    pub name: String,
    pub id: CaId,
    pub cert: CertInfo,
    pub key_name: String,
}

/// A new CA made for an old one. The key stays in memory and the run's key store.
pub struct NewCaInput {
    pub name: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// The CAs `aliases` name, as the nodes hold them; every problem found is returned. Refuses a
/// CA file holding more than one CA (a rotation left half done), nodes that disagree, and a
/// CA whose key is absent (external-CA mode) or does not match.
pub fn old_cas(input: &Input<'_>, aliases: &[String]) -> Result<Vec<OldCa>, Vec<String>> {
    let pb = input.playbook;
    let Some(rot) = &pb.rotation else {
        return Err(vec![format!("the {} playbook does not say how to rotate its CAs (no `rotation` section)", pb.name)]);
    };
    let found = build::cas(pb, input.nodes);
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for alias in aliases {
        let Some(name) = rot.cas.get(alias) else {
            problems.push(format!("--ca {alias}: no such CA in the {} playbook (known: {})", pb.name, rot.cas.keys().cloned().collect::<Vec<_>>().join(", ")));
            continue;
        };
        let ids: Vec<(&CaId, &CertInfo)> = found.iter().filter(|(id, _)| id.split('@').next() == Some(name.as_str())).collect();
        let holders: Vec<String> = input.nodes.iter().filter_map(|n| n.pki.named.get(name).map(|p| format!("{}: {p}", n.name))).collect();
        match ids.len() {
            0 => {
                problems.push(format!("the {alias} CA ({name}) is on no node"));
                continue;
            }
            1 => {}
            n => {
                let subjects: Vec<String> = ids.iter().map(|(id, c)| format!("{} [{}]", c.subject, crate::text::prefix(id.rsplit('@').next().unwrap_or(id), 8))).collect();
                problems.push(format!(
                    "the {alias} CA files ({}) hold {n} different CAs ({}): a rotation left unfinished? Finish or roll it back (kcert runs, kcert resume, kcert rollback) before starting another",
                    holders.join(", "),
                    subjects.join("; ")
                ));
                continue;
            }
        }
        let (id, cert) = ids[0];
        let Some(key_name) = pb.file(name).and_then(|f| f.key.clone()) else {
            continue;
        };
        let mut keys = 0;
        for n in input.nodes {
            let key_path = n.pki.named.get(&key_name).cloned().or_else(|| pb.file(&key_name).map(|k| k.path.clone())).unwrap_or_default();
            if !n.pki.named.contains_key(name) {
                continue;
            }
            if let Some(k) = n.files.get(&key_path) {
                keys += 1;
                match key_matches(cert, k) {
                    Ok(true) => {}
                    Ok(false) => problems.push(format!("{key_path} on {}: the {alias} CA key does not match the CA certificate {}", n.name, cert.subject)),
                    Err(e) => problems.push(format!("{key_path} on {}: {e}", n.name)),
                }
            }
        }
        if keys == 0 {
            problems.push(format!(
                "the {alias} CA key ({}) is on no node (kubeadm external-CA mode?): kcert would put a new CA key on the nodes; rotate with your external CA instead",
                pb.file(&key_name).map(|k| k.path.as_str()).unwrap_or(&key_name)
            ));
        }
        out.push(OldCa { alias: alias.clone(), name: name.clone(), id: id.clone(), cert: cert.clone(), key_name });
    }
    if problems.is_empty() { Ok(out) } else { Err(problems) }
}

/// A successor for each old CA (same key type and size unless `key_type`), valid `days`.
pub fn successors(olds: &[OldCa], days: u32, now: i64, key_type: Option<KeyType>) -> Result<Vec<NewCaInput>, String> {
    olds.iter()
        .map(|o| {
            let (cert_pem, key_pem) = crate::pki::sign::successor_ca(&o.cert, days, now, key_type).map_err(|e| format!("making the new {} CA: {e}", o.alias))?;
            Ok(NewCaInput { name: o.name.clone(), cert_pem, key_pem })
        })
        .collect()
}
