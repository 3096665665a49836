//! Owns: what a finished rotation must leave on the nodes, judged from the files as they
//! stand (read after the run, or simulated before it): no trust anywhere holds a certificate
//! of an old CA's key, no leaf or kubeconfig client cert is signed by an old CA's key, and
//! every CA file on a node that holds its key starts with the new CA and matches that key.
//! Must not: do I/O, or trust the plan's own account of what it did.

use super::build;
use super::model::Content;
use super::schema::Plan;
use crate::gather::facts::NodeFacts;
use crate::pki::cert::{CertInfo, first_cert, parse_pem};
use crate::pki::sign::{cert_public_key, key_matches};
use crate::pki::{find_issuer, kubeconfig};
use crate::playbook::Playbook;

/// Every way the files fall short of a finished rotation, named by node and file.
pub fn rotation_problems(pb: &Playbook, nodes: &[NodeFacts], plan: &Plan) -> Vec<String> {
    let mut out = Vec::new();
    let olds: Vec<(String, CertInfo)> = plan.cas.iter().filter_map(|c| first_cert(c.old_pem.as_bytes()).ok().map(|o| (c.alias.clone(), o))).collect();
    if olds.len() != plan.cas.len() {
        return vec!["the plan's old CA certificates do not parse".into()];
    }
    let old_keys: Vec<(String, Vec<u8>)> = olds.iter().filter_map(|(a, c)| cert_public_key(&c.der).map(|k| (a.clone(), k))).collect();
    let old_certs: Vec<&CertInfo> = olds.iter().map(|(_, c)| c).collect();
    // A trust that holds any certificate of an old CA's key (the old CA, or it cross-signed).
    let trusts_old = |certs: &[CertInfo]| -> Option<String> {
        certs.iter().find_map(|c| {
            let k = cert_public_key(&c.der)?;
            old_keys.iter().find(|(_, o)| *o == k).map(|(alias, _)| format!("the old {alias} CA's key ({})", c.subject))
        })
    };
    let signed_by_old = |leaf: &CertInfo| find_issuer(leaf, &old_certs).map(|ca| ca.subject.clone());
    let model = build::model(pb, nodes);
    for (id, content) in &model.files {
        let Some(n) = nodes.iter().find(|n| n.name == id.node) else { continue };
        let Some(bytes) = n.files.get(&id.path) else { continue };
        let at = format!("{}: {}", id.node, id.path);
        match content {
            Content::Trust { .. } => {
                if let Some(what) = parse_pem(bytes).ok().and_then(|p| trusts_old(&p.certs)) {
                    out.push(format!("{at} still trusts {what}"));
                }
            }
            Content::Leaf { .. } => {
                if let Some(ca) = first_cert(bytes).ok().as_ref().and_then(signed_by_old) {
                    out.push(format!("{at} is still signed by the old CA {ca}"));
                }
            }
            Content::Kubeconfig { .. } => {
                let Ok(kc) = kubeconfig::parse_kubeconfig(bytes) else {
                    out.push(format!("{at}: no longer a readable kubeconfig"));
                    continue;
                };
                for e in &kc.embedded {
                    let Ok(c) = &e.content else { continue };
                    let field = e.field.display();
                    if e.field.key == "certificate-authority-data" {
                        if let Some(what) = trusts_old(&c.certs) {
                            out.push(format!("{at}: {field} still trusts {what}"));
                        }
                    } else if let Some(ca) = c.certs.first().and_then(signed_by_old) {
                        out.push(format!("{at}: {field} is still signed by the old CA {ca}"));
                    }
                }
                for r in &kc.references {
                    let target = kubeconfig::resolve_reference(&id.path, &r.path);
                    let Some(tb) = n.files.get(&target) else { continue };
                    let certs = parse_pem(tb).map(|p| p.certs).unwrap_or_default();
                    match r.field.key {
                        "certificate-authority" => {
                            if let Some(what) = trusts_old(&certs) {
                                out.push(format!("{}: {target} (the CA of {}) still trusts {what}", id.node, id.path));
                            }
                        }
                        "client-certificate" => {
                            if let Some(ca) = certs.first().and_then(signed_by_old) {
                                out.push(format!("{}: {target} (the client certificate of {}) is still signed by the old CA {ca}", id.node, id.path));
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    // Each CA file where its key is: the new CA first, and the key its own.
    for c in &plan.cas {
        let Some(new) = first_cert(c.cert_pem.as_bytes()).ok() else { continue };
        for n in nodes {
            let Some(cert_path) = n.pki.named.get(&c.name) else { continue };
            let Some((key_path, key)) = n.ca_key(pb, &c.name) else { continue };
            let Some(first) = n.files.get(cert_path).and_then(|b| first_cert(b).ok()) else {
                out.push(format!("{}: {cert_path}: no certificate", n.name));
                continue;
            };
            if first.sha256 != new.sha256 {
                out.push(format!("{}: {cert_path} starts with {}, not the new {} CA {}", n.name, first.subject, c.alias, new.subject));
            }
            if !key_matches(&first, key).unwrap_or(false) {
                out.push(format!("{}: {key_path} is not the key of {cert_path}'s certificate", n.name));
            }
        }
    }
    out.dedup();
    out
}
