//! Owns: what each changing stage of a rotation does to one node's files and its trust
//! model: S2 trust old and new (and split the signing pair off the CA bundle), S4 re-sign
//! every leaf and kubeconfig client cert with the new CA, S5 prune the old CA.
//! Must not: do I/O, or decide batches, restarts or gates (`rotation::plan` does).

use std::collections::{BTreeMap, BTreeSet};

use super::planner::{Pending, Planner};
use super::presign::Presign;
use crate::pki::{edit, find_issuer, kubeconfig};
use crate::plan::model::{CaId, Content};

/// One model file S4 re-signs on a node.
pub(super) struct S4Job {
    pub path: String,
    pub ri: usize,
    pub what: Resign,
    pub model: Content,
}

/// Which certificates of the file S4 re-signs.
pub(super) enum Resign {
    /// The file's first certificate (with the node's SANs added, for a re-homed leaf).
    File { extra: Vec<String>, rehome: bool },
    /// These embedded client-certificate-data fields of a kubeconfig.
    Fields(Vec<String>),
    /// The client certificate file a kubeconfig references.
    Reference(String),
}

impl Planner<'_> {
    /// Every embedded `certificate-authority-data` field of a kubeconfig that holds `sha`.
    fn ca_fields(bytes: &[u8], sha: &str) -> Vec<String> {
        let Ok(kc) = &*kubeconfig::parsed_kubeconfig(bytes) else {
            return Vec::new();
        };
        kc.embedded
            .iter()
            .filter(|e| e.field.key == "certificate-authority-data")
            .filter(|e| e.content.as_ref().is_ok_and(|c| c.certs.iter().any(|x| x.sha256 == sha)))
            .map(|e| e.field.display())
            .collect()
    }

    fn ca_ref(bytes: &[u8], kc_path: &str) -> Option<String> {
        let parsed = kubeconfig::parsed_kubeconfig(bytes);
        let kc = parsed.as_ref().as_ref().ok()?;
        kc.references.iter().find(|r| r.field.key == "certificate-authority").map(|r| kubeconfig::resolve_reference(kc_path, &r.path))
    }

    /// Every trust on a node (bundle or kubeconfig CA data) that holds an old CA: with `adding`
    /// (S2) its successor is added where missing; without (S5) the old CA is pruned where the
    /// successor is there. The bytes and the model change together.
    fn retrust(&self, node: &str, p: &mut Pending, adding: bool) {
        for (path, content) in self.model_files(node) {
            let picked: Vec<usize> = match content {
                Content::Trust { cas } | Content::Kubeconfig { trusts: cas, .. } => {
                    (0..self.rots.len()).filter(|&i| cas.contains(&self.rots[i].old.id) && cas.contains(&self.rots[i].new_id) != adding).collect()
                }
                Content::Leaf { .. } => Vec::new(),
            };
            if picked.is_empty() {
                continue;
            }
            for &i in &picked {
                let (pem, sha) = (self.rots[i].new_pem.clone(), self.rots[i].old.cert.sha256.clone());
                let change = |b: &[u8]| if adding { edit::add_cert(b, &pem) } else { edit::remove_cert(b, &sha) };
                // Named whole: the new CA added, or the old one removed, of rotation i.
                let what = format!("{} {i}", if adding { "add" } else { "remove" });
                match content {
                    Content::Trust { .. } => self.edit_as(p, node, path, what, change),
                    _ => self.kubeconfig_trust(node, path, p, &sha, &what, change),
                }
            }
            let ids: Vec<CaId> = picked.iter().map(|&i| if adding { self.rots[i].new_id.clone() } else { self.rots[i].old.id.clone() }).collect();
            p.model.insert(path.to_string(), if adding { add_trust(content, &ids) } else { drop_trust(content, &ids) });
        }
    }

    /// S2 on one node: every trust holding an old CA also holds its successor.
    pub(super) fn trust_both(&self, node: &str, p: &mut Pending) {
        self.retrust(node, p, true);
        // The CA files themselves on the nodes that hold the key, even where nothing reads them as trust.
        for i in 0..self.rots.len() {
            if let Some((cert, _)) = self.holder(i, node) {
                let pem = self.rots[i].new_pem.clone();
                self.edit(p, node, &cert, |b| edit::add_cert(b, &pem));
            }
        }
        self.split_signing_pairs(node, p);
        self.split_service_account_keys(node, p);
    }

    /// A CA key read for something else as well (binary guides point the service-account
    /// flags at ca-key.pem, or the verifying one at ca.pem): before the CA changes, those uses
    /// (the playbook's `tokens`) get a copy of the old key of their own (0600, beside it; the
    /// apiserver verifies with a private key as well as a public one), their flags repointed,
    /// their readers restarted; so every service-account token stays valid through the
    /// rotation and after it.
    fn split_service_account_keys(&self, node: &str, p: &mut Pending) {
        let pb = self.input.playbook;
        let Some(tokens) = &pb.tokens else { return };
        for ri in 0..self.rots.len() {
            let Some((cert_path, key_path)) = self.holder(ri, node) else { continue };
            let n = self.node(node);
            let uses: Vec<(String, String)> = tokens
                .signers
                .iter()
                .chain(&tokens.verifiers)
                .filter(|u| n.pki.refs.get(&(u.component.clone(), u.key.clone())).is_some_and(|p| *p == key_path || *p == cert_path))
                .map(|u| (u.component.clone(), u.key.clone()))
                .collect();
            if uses.is_empty() {
                continue;
            }
            let dir = key_path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            let taken = |p: &str| n.pki.files.contains(p) || n.files.contains_key(p);
            let Some(copy) = ["service-account-key.pem", "sa-from-ca-key.pem"].iter().map(|f| format!("{dir}/{f}")).find(|p| !taken(p)) else {
                p.problems.push(format!("{node}: the {} CA is also the service-account key, and {dir}/service-account-key.pem and {dir}/sa-from-ca-key.pem both exist: kcert will not overwrite either to split it off", self.rots[ri].old.alias));
                continue;
            };
            self.write_old_key(p, node, &copy, ri);
            let sets: Vec<(&str, &str, &str)> = uses.iter().map(|(c, f)| (c.as_str(), f.as_str(), copy.as_str())).collect();
            self.set_flags_of(p, node, &sets);
            p.sa_splits.push(super::planner::SaSplit { node: node.to_string(), ri, key: key_path, copy, uses });
        }
    }

    fn kubeconfig_trust(&self, node: &str, path: &str, p: &mut Pending, old_sha: &str, what: &str, f: impl Fn(&[u8]) -> Result<Vec<u8>, String>) {
        let Some(bytes) = self.get(p, node, path) else {
            return;
        };
        let fields = Self::ca_fields(&bytes, old_sha);
        if fields.is_empty() {
            if let Some(r) = Self::ca_ref(&bytes, path) {
                self.edit_as(p, node, &r, what.to_string(), &f);
            }
            return;
        }
        for field in fields {
            self.edit_as(p, node, path, format!("{what} in {field}"), |b| edit::edit_kubeconfig(b, &field, &f));
        }
    }

    /// The controller-manager signs with --cluster-signing-cert-file/-key-file, which kubeadm
    /// points at ca.crt/ca.key: while ca.crt is a bundle, point the cert flag at a copy of
    /// the old CA (the key stays the old one), so the pair stays one matching cert and key.
    fn split_signing_pairs(&self, node: &str, p: &mut Pending) {
        let pb = self.input.playbook;
        for pair in &pb.pairs {
            let n = self.node(node);
            let (Some(cert), Some(key)) = (n.pki.refs.get(&(pair.component.clone(), pair.cert.clone())).cloned(), n.pki.refs.get(&(pair.component.clone(), pair.key.clone())).cloned()) else {
                continue;
            };
            let Some(ri) = self.rots.iter().position(|r| n.pki.named.get(&r.old.name) == Some(&cert)) else {
                continue;
            };
            let copy = self.staged_path(&cert, "old");
            let old_pem = self.rots[ri].old_pem.clone();
            self.touch(p, node, &copy, Some(old_pem.into_bytes()));
            p.staged.push(copy.clone());
            self.set_flags(p, node, &pair.component, &[(&pair.cert, &copy)]);
            p.splits.push((pair.component.clone(), (ri, cert, key)));
        }
    }

    /// S4 on one node: every leaf and kubeconfig client cert signed by an old CA is re-signed
    /// by its successor (keeping subject, SANs, usages and key); self-signed leaves the
    /// playbook re-homes move onto the new CA; the signing pair switches to the new CA.
    pub(super) fn resign_all(&self, node: &str, p: &mut Pending) {
        for job in self.s4_jobs(node) {
            let ri = job.ri;
            match &job.what {
                Resign::File { extra, rehome } => match self.peek(p, node, &job.path).map(|bytes| self.resign_text(bytes, ri, extra, *rehome)) {
                    Some(Ok(new)) => self.touch(p, node, &job.path, Some(new)),
                    Some(Err(e)) => p.problems.push(format!("{node}: {}: {e}", job.path)),
                    None => {}
                },
                Resign::Fields(fields) => {
                    let bytes = self.get(p, node, &job.path).unwrap_or_default();
                    for field in fields {
                        let new = edit::kubeconfig_data(&bytes, field).and_then(|pem| self.resign_text(&pem, ri, &[], false));
                        match new {
                            Ok(pem) => self.edit(p, node, &job.path, |b| edit::edit_kubeconfig(b, field, |_| Ok(pem))),
                            Err(e) => p.problems.push(format!("{node}: {}: {field}: {e}", job.path)),
                        }
                    }
                }
                Resign::Reference(target) => match self.peek(p, node, target).map(|tb| self.resign_text(tb, ri, &[], false)) {
                    Some(Ok(new)) => self.touch(p, node, target, Some(new)),
                    Some(Err(e)) => p.problems.push(format!("{node}: {target} (the client certificate of {}): {e}", job.path)),
                    None => {}
                },
            }
            p.model.insert(job.path, job.model);
        }
        self.switch_signing_pairs(node, p);
    }

    /// What S4 re-signs on one node, as the files stand before it: per model file, which
    /// rotation signs it, the PEM texts whose first certificate it re-signs, and the file's
    /// model afterwards. `resign_all` carries it out; `presign_start` signs it all ahead, on every core.
    pub(super) fn s4_jobs(&self, node: &str) -> Vec<S4Job> {
        let pb = self.input.playbook;
        let rehome_paths: BTreeMap<String, usize> = pb
            .rotation
            .as_ref()
            .map(|r| r.rehome.clone())
            .unwrap_or_default()
            .iter()
            .filter_map(|f| {
                let path = self.node(node).pki.named.get(f)?.clone();
                let signer = pb.file(f)?.signer.clone()?;
                let ri = self.rots.iter().position(|r| r.old.name == signer)?;
                Some((path, ri))
            })
            .collect();
        let sans = self.node(node).node_sans();
        let mut jobs = Vec::new();
        for (path, content) in self.model_files(node) {
            match content {
                Content::Leaf { signer } => {
                    let (ri, rehome) = match (self.rot_of_old(signer), rehome_paths.get(path)) {
                        (Some(ri), _) => (ri, false),
                        (None, Some(&ri)) if *signer != self.rots[ri].new_id => (ri, true),
                        _ => continue,
                    };
                    if self.vfs.peek(node, path).is_none() {
                        continue;
                    }
                    let extra = if rehome_paths.contains_key(path) { sans.clone() } else { Vec::new() };
                    let model = Content::Leaf { signer: self.rots[ri].new_id.clone() };
                    jobs.push(S4Job { path: path.to_string(), ri, what: Resign::File { extra, rehome }, model });
                }
                Content::Kubeconfig { client_signer: Some(s), trusts } => {
                    let Some(ri) = self.rot_of_old(s) else {
                        continue;
                    };
                    let model = Content::Kubeconfig { client_signer: Some(self.rots[ri].new_id.clone()), trusts: trusts.clone() };
                    let Some(parsed) = self.vfs.peek(node, path).map(kubeconfig::parsed_kubeconfig) else {
                        continue;
                    };
                    let Ok(kc) = &*parsed else {
                        continue;
                    };
                    let signed_by_old = |c: &crate::pki::PemContent| c.certs.first().is_some_and(|l| find_issuer(l, &[&self.rots[ri].old.cert]).is_some());
                    let fields: Vec<String> =
                        kc.embedded.iter().filter(|e| e.field.key == "client-certificate-data" && e.content.as_ref().is_ok_and(signed_by_old)).map(|e| e.field.display()).collect();
                    let what = match kc.references.iter().find(|r| r.field.key == "client-certificate") {
                        Some(r) if fields.is_empty() => Resign::Reference(kubeconfig::resolve_reference(path, &r.path)),
                        _ => Resign::Fields(fields),
                    };
                    jobs.push(S4Job { path: path.to_string(), ri, what, model });
                }
                _ => {}
            }
        }
        jobs
    }

    /// Starts signing every leaf S4 will re-sign on `nodes`, in S4's order, on threads of
    /// their own: S2 changes trusts and signing pairs, never a leaf, so the leaves are known
    /// before it and are signed while S2, the API stage and S4 itself are planned. `resign_text`
    /// takes each signature from the store; what is not there, S4 signs itself (a cache, never the only way).
    pub(super) fn presign_start(&self, nodes: &[String]) -> Presign {
        // Each node's leaves on every core (nothing signs yet), kept in the nodes' order.
        let wanted: Vec<(crate::pki::CertInfo, usize, Vec<String>)> = crate::par::map(nodes, |node| self.leaves_of(node)).into_iter().flatten().collect();
        Presign::start(wanted, self.rots.iter().map(|r| r.signer.clone()).collect(), self.v)
    }

    /// The leaves S4 will re-sign on `node`, in its order: (leaf, rotation, SANs added).
    fn leaves_of(&self, node: &str) -> Vec<(crate::pki::CertInfo, usize, Vec<String>)> {
        let mut wanted = Vec::new();
        for job in self.s4_jobs(node) {
            let texts: Vec<(Vec<u8>, Vec<String>)> = match &job.what {
                Resign::File { extra, .. } => self.vfs.get(node, &job.path).map(|b| (b, extra.clone())).into_iter().collect(),
                Resign::Fields(fields) => self.vfs.get(node, &job.path).map(|b| fields.iter().filter_map(|f| edit::kubeconfig_data(&b, f).ok()).map(|pem| (pem, Vec::new())).collect()).unwrap_or_default(),
                Resign::Reference(target) => self.vfs.get(node, target).map(|b| (b, Vec::new())).into_iter().collect(),
            };
            for (text, extra) in texts {
                if let Ok(leaf) = crate::pki::first_cert(&text) {
                    wanted.push((leaf, job.ri, extra));
                }
            }
        }
        wanted
    }

    fn switch_signing_pairs(&self, node: &str, p: &mut Pending) {
        let pb = self.input.playbook;
        for pair in &pb.pairs {
            if let Some((ri, _, _)) = self.splits.get(&(node.to_string(), pair.component.clone())).cloned() {
                let Some((cert_path, key_path)) = self.holder(ri, node) else {
                    continue;
                };
                let (sc, sk) = self.staged_pair(&cert_path, &key_path);
                self.set_flags(p, node, &pair.component, &[(&pair.cert, &sc), (&pair.key, &sk)]);
                continue;
            }
            // A pair the operator already keeps apart from the CA bundle: the new CA goes in it.
            let n = self.node(node);
            let (Some(cert), Some(key)) = (n.pki.refs.get(&(pair.component.clone(), pair.cert.clone())).cloned(), n.pki.refs.get(&(pair.component.clone(), pair.key.clone())).cloned()) else {
                continue;
            };
            let Some(bytes) = self.get(p, node, &cert) else {
                continue;
            };
            let shas = edit::cert_shas(&bytes).unwrap_or_default();
            let Some(ri) = self.rots.iter().position(|r| shas.len() == 1 && shas[0] == r.old.cert.sha256) else {
                continue;
            };
            if n.pki.named.get(&self.rots[ri].old.name) == Some(&cert) {
                continue;
            }
            let pem = self.rots[ri].new_pem.clone();
            self.touch(p, node, &cert, Some(pem.into_bytes()));
            self.write_key(p, node, &key, ri);
        }
    }

    /// S5 on one node: trusts drop the old CA; the CA files become the new CA and its key;
    /// the signing pair points back at them.
    pub(super) fn prune(&self, node: &str, p: &mut Pending) {
        self.retrust(node, p, false);
        for i in 0..self.rots.len() {
            if let Some((cert, key)) = self.holder(i, node) {
                let (pem, sha) = (self.rots[i].new_pem.clone(), self.rots[i].old.cert.sha256.clone());
                self.edit(p, node, &cert, |b| edit::add_cert(b, &pem).and_then(|b| edit::remove_cert(&b, &sha)));
                self.write_key(p, node, &key, i);
            }
        }
        let pb = self.input.playbook;
        for pair in &pb.pairs {
            if let Some((_, cert, key)) = self.splits.get(&(node.to_string(), pair.component.clone())).cloned() {
                self.set_flags(p, node, &pair.component, &[(&pair.cert, &cert), (&pair.key, &key)]);
            }
        }
    }
}

fn add_trust(c: &Content, ids: &[CaId]) -> Content {
    match c {
        Content::Trust { cas } => Content::Trust { cas: cas.iter().cloned().chain(ids.iter().cloned()).collect() },
        Content::Kubeconfig { client_signer, trusts } => Content::Kubeconfig { client_signer: client_signer.clone(), trusts: trusts.iter().cloned().chain(ids.iter().cloned()).collect() },
        other => other.clone(),
    }
}

fn drop_trust(c: &Content, ids: &[CaId]) -> Content {
    let keep = |s: &BTreeSet<CaId>| s.iter().filter(|x| !ids.contains(x)).cloned().collect();
    match c {
        Content::Trust { cas } => Content::Trust { cas: keep(cas) },
        Content::Kubeconfig { client_signer, trusts } => Content::Kubeconfig { client_signer: client_signer.clone(), trusts: keep(trusts) },
        other => other.clone(),
    }
}
