//! Owns: choosing what a rotation replaces: the old CAs `--ca` names, as the nodes hold them
//! (one CA per file, the same on every node, its key present and matching), and a successor
//! made for each.
//! Must not: do I/O, or keep a new CA's key anywhere but the value it returns.

use super::Input;
use crate::gather::facts::NodeFacts;
use crate::pki::cert::{CertInfo, first_cert, parse_pem};
use crate::pki::kubeconfig;
use crate::playbook::Playbook;
use crate::pki::find_issuer;
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
        // A CA file that a flag names but that does not read as a certificate is said as such.
        let corrupt: Vec<String> = input
            .nodes
            .iter()
            .filter_map(|n| {
                let path = n.pki.named.get(name)?;
                let err = match n.files.get(path) {
                    None => "named, but missing or unreadable".to_string(),
                    Some(b) => match parse_pem(b) {
                        Err(e) => e.to_string(),
                        Ok(p) if !p.certs.iter().any(|c| c.is_ca) => "no CA certificate in it".to_string(),
                        Ok(_) => return None,
                    },
                };
                Some(format!("{}: {path}: {err}", n.name))
            })
            .collect();
        if !corrupt.is_empty() {
            problems.push(format!("the {alias} CA file cannot be read: {}", corrupt.join("; ")));
            continue;
        }
        // A CA file that holds a chain (an intermediate and the root that issued it) is not two
        // generations of one CA: it is an intermediate, said below.
        let chain = ids.len() == 2 && ids.iter().any(|(_, a)| ids.iter().any(|(_, b)| a.sha256 != b.sha256 && find_issuer(a, &[b]).is_some()));
        match ids.len() {
            0 => {
                problems.push(format!("the {alias} CA ({name}) is on no node"));
                continue;
            }
            1 => {}
            _ if chain => {}
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
        // The CA the leaves are signed by: the first certificate of the file.
        let (id, cert) = if chain { *ids.iter().find(|(_, c)| !is_root(c)).unwrap_or(&ids[0]) } else { ids[0] };
        if !is_root(cert) {
            let root = if chain { " (the file also holds the root that issued it)" } else { "" };
            problems.push(format!(
                "the {alias} CA {} ({}) is an intermediate, issued by {}{root}: kcert makes self-signed successors, which would cut every leaf off from {}; sign a successor with your root (openssl x509 -req -CA ROOT.crt -CAkey ROOT.key ...) and rotate onto it by hand, or leave this CA out (--ca)",
                cert.subject,
                holders.join(", "),
                cert.issuer,
                cert.issuer
            ));
            continue;
        }
        let Some(key_name) = pb.file(name).and_then(|f| f.key.clone()) else {
            continue;
        };
        let mut keys = 0;
        for n in input.nodes {
            if !n.pki.named.contains_key(name) {
                continue;
            }
            if let Some((key_path, k)) = n.ca_key(pb, name) {
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
                "the {alias} CA key is on no node (looked for {}): kcert would put a new CA key on the nodes where none was (a CA kept off the nodes, as kubeadm's external-CA mode does?); rotate with your own CA instead, or put the key beside the certificate on the control-plane nodes",
                NodeFacts::ca_key_tried(pb, input.nodes, name)
            ));
        }
        out.push(OldCa { alias: alias.clone(), name: name.clone(), id: id.clone(), cert: cert.clone(), key_name });
    }
    if problems.is_empty() { Ok(out) } else { Err(problems) }
}

/// A successor for each old CA (same key type and size unless `key_type`), valid `days`.
pub fn successors(olds: &[OldCa], days: u32, now: i64, key_type: Option<KeyType>) -> Result<Vec<NewCaInput>, String> {
    // Each new key is made on its own core: an RSA key takes tens to hundreds of milliseconds.
    crate::par::map(olds, |o| {
        let (cert_pem, key_pem) = crate::pki::sign::successor_ca(&o.cert, days, now, key_type).map_err(|e| format!("making the new {} CA: {e}", o.alias))?;
        Ok(NewCaInput { name: o.name.clone(), cert_pem, key_pem })
    })
    .into_iter()
    .collect()
}

/// A self-signed root: issued by itself, by its own key.
fn is_root(c: &CertInfo) -> bool {
    c.self_issued && find_issuer(c, &[c]).is_some()
}

/// The CAs (playbook file names) a party outside the inventory trusts or is signed by, and why:
/// an edge whose client runs on these nodes but whose server runs on none of them (external
/// etcd), and the webhook kubeconfigs whose client certificate one of the cluster's CAs signed.
/// Rotating such a CA would cut that party off, so kcert leaves it alone.
pub fn external_cas(pb: &Playbook, nodes: &[NodeFacts]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut add = |ca: String, why: String| {
        if !out.iter().any(|(c, _)| *c == ca) {
            out.push((ca, why));
        }
    };
    for e in &pb.edges {
        // Only an edge whose client names its servers (`urls`: etcd's) can be told to end
        // outside; a kubelet missing from a copy of one node is not a party elsewhere.
        let (Some(cc), Some(sc), Some(_)) = (e.client.component.as_deref(), e.server.component.as_deref(), e.client.urls.as_ref()) else { continue };
        if cc == sc || nodes.iter().any(|n| n.pki.components.contains_key(sc)) {
            continue;
        }
        let Some(comp) = pb.component(cc) else { continue };
        for n in nodes.iter().filter(|n| n.pki.components.contains_key(cc)) {
            let urls = e.client.urls.as_ref().and_then(|k| n.pki.components[cc].get(k).map(|v| format!(" ({k}={v})"))).unwrap_or_default();
            let why = format!("{} on {} talks to {sc}, which runs on none of the inventory's nodes{urls}", e.name, n.name);
            let file_of = |key: &Option<String>| key.as_ref().and_then(|k| comp.refs.iter().find(|r| &r.key == k)).and_then(|r| pb.file(&r.file));
            if let Some(signer) = file_of(&e.client.cert).and_then(|f| f.signer.clone()) {
                add(signer, why.clone());
            }
            if let Some(trust) = file_of(&e.client.trusts).filter(|f| f.key.is_some() && f.signer.is_none()) {
                add(trust.name.clone(), why.clone());
            }
        }
    }
    let found = build::cas(pb, nodes);
    let ours: Vec<(&CaId, &CertInfo)> = found.iter().collect();
    for n in nodes {
        for c in &pb.components {
            let Some(flags) = n.pki.components.get(&c.name) else { continue };
            for x in &c.external {
                let Some(path) = flags.get(&x.key) else { continue };
                let Some(cert) = n.files.get(path).and_then(|b| kubeconfig::public_identity(b).ok()).and_then(|id| match id.cert {
                    Some(kubeconfig::Material::Data(d)) => first_cert(&d).ok(),
                    _ => None,
                }) else {
                    continue;
                };
                let cas: Vec<&CertInfo> = ours.iter().map(|(_, c)| *c).collect();
                if let Some(ca) = find_issuer(&cert, &cas)
                    && let Some((id, _)) = ours.iter().find(|(_, c)| c.sha256 == ca.sha256)
                {
                    let name = id.split('@').next().unwrap_or(id).to_string();
                    add(name, format!("{} ({} of {} on {}) presents a client certificate the {} CA signed", x.what, path, x.key, n.name, ca.subject));
                }
            }
        }
    }
    out
}
