//! Owns: turning discovered facts (each node's PKI and file bytes) into the planner's trust
//! model: which CA signed each leaf, which CAs each trust file and kubeconfig holds, which
//! component loads which file, and every edge instance the playbook knows.
//! Must not: do I/O; the caller hands it what discovery read.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::model::{CaId, Content, Edge, End, FileId, Model, Reader};
use crate::gather::facts::NodeFacts;
use crate::pki::cert::{CertInfo, first_cert, parse_pem, parsed_pem};
use crate::pki::find_issuer;
use crate::pki::kubeconfig::{self, Part};
use crate::playbook::{FileKind, Playbook};

/// The CAs of the playbook (files with a key and no signer) found on any node:
/// `name@first-8-hex-of-sha256` -> certificate. One CA playing several roles (a binary
/// cluster's one `ca.pem` as cluster, etcd and front-proxy CA) is one CA, named by the
/// first of the playbook's files that holds it.
pub fn cas(pb: &Playbook, nodes: &[NodeFacts]) -> BTreeMap<CaId, CertInfo> {
    let mut out: BTreeMap<CaId, CertInfo> = BTreeMap::new();
    for f in pb.files.iter().filter(|f| f.kind == FileKind::Cert && f.key.is_some() && f.signer.is_none()) {
        for n in nodes {
            let Some(path) = n.pki.named.get(&f.name) else { continue };
            let Some(bytes) = n.files.get(path) else { continue };
            for c in parse_pem(bytes).map(|p| p.certs).unwrap_or_default().into_iter().filter(|c| c.is_ca) {
                if !out.values().any(|k| k.sha256 == c.sha256) {
                    out.insert(format!("{}@{}", f.name, &c.sha256[..8]), c);
                }
            }
        }
    }
    out
}

/// The playbook file of the CA that `ca` (a CA file's name) is on these nodes: itself, or an
/// earlier CA file holding the very same certificate (one CA in several roles).
pub fn same_ca_as(pb: &Playbook, nodes: &[NodeFacts], ca: &str) -> String {
    let first = |name: &str| {
        nodes.iter().find_map(|n| n.pki.named.get(name).and_then(|p| n.files.get(p)).and_then(|b| first_cert(b).ok()).map(|c| c.sha256))
    };
    let Some(mine) = first(ca) else { return ca.to_string() };
    pb.files
        .iter()
        .filter(|f| f.kind == FileKind::Cert && f.key.is_some() && f.signer.is_none())
        .map(|f| f.name.as_str())
        .take_while(|n| *n != ca)
        .find(|n| first(n).as_deref() == Some(mine.as_str()))
        .unwrap_or(ca)
        .to_string()
}

fn ca_id_of(cert: &CertInfo, cas: &BTreeMap<CaId, CertInfo>) -> CaId {
    if let Some((id, _)) = cas.iter().find(|(_, c)| c.sha256 == cert.sha256) {
        return id.clone();
    }
    let all: Vec<&CertInfo> = cas.values().collect();
    match find_issuer(cert, &all) {
        Some(ca) => cas.iter().find(|(_, c)| c.sha256 == ca.sha256).map(|(id, _)| id.clone()).expect("found among them"),
        None => format!("unknown:{}", cert.issuer),
    }
}

fn trust_of(certs: &[CertInfo], cas: &BTreeMap<CaId, CertInfo>) -> BTreeSet<CaId> {
    certs.iter().map(|c| cas.iter().find(|(_, k)| k.sha256 == c.sha256).map(|(id, _)| id.clone()).unwrap_or_else(|| format!("other:{}", &c.sha256[..8]))).collect()
}

fn content(path: &str, bytes: &[u8], kind: FileKind, files: &BTreeMap<String, crate::gather::facts::Shared>, cas: &BTreeMap<CaId, CertInfo>) -> Option<Content> {
    if kind == FileKind::Kubeconfig {
        let id = kubeconfig::public_identity(bytes).ok()?;
        let load = |which: Part| id.load(which, path, files).ok().flatten();
        let client_signer = load(Part::Cert).and_then(|b| first_cert(&b).ok()).map(|c| ca_id_of(&c, cas));
        let trusts = load(Part::Ca).and_then(|b| parsed_pem(&b).as_ref().as_ref().ok().map(|p| trust_of(&p.certs, cas))).unwrap_or_default();
        return Some(Content::Kubeconfig { client_signer, trusts });
    }
    let parsed = parsed_pem(bytes);
    let certs = &parsed.as_ref().as_ref().ok()?.certs;
    match kind {
        FileKind::Trust => Some(Content::Trust { cas: trust_of(certs, cas) }),
        // A CA certificate is never a leaf, whichever file holds it.
        FileKind::Cert if certs.first().is_some_and(|c| c.is_ca && c.self_issued) => Some(Content::Trust { cas: trust_of(certs, cas) }),
        FileKind::Cert => certs.first().map(|c| Content::Leaf { signer: ca_id_of(c, cas) }),
        _ => None,
    }
}

/// A CA's own file (a cert with a key and no signer): whatever reads it, it is trust, never a
/// leaf to re-sign.
fn is_ca_file(f: &crate::playbook::KnownFile) -> bool {
    f.kind == FileKind::Cert && f.key.is_some() && f.signer.is_none()
}

/// The model of the whole fleet (each node's files and readers on every core: they read only
/// that node's facts).
pub fn model(pb: &Playbook, nodes: &[NodeFacts]) -> Model {
    let cas = cas(pb, nodes);
    let mut m = Model::default();
    for (files, readers) in crate::par::map(nodes, |n| node_model(pb, n, &cas)) {
        m.files.extend(files);
        m.readers.extend(readers);
    }
    let (edges, readers) = edges(pb, nodes, &m);
    m.edges = edges;
    let mut have: BTreeSet<(String, String)> = m.readers.iter().map(|r| (r.node.clone(), r.name.clone())).collect();
    for r in readers {
        if have.insert((r.node.clone(), r.name.clone())) {
            m.readers.push(r);
        }
    }
    // Held for the whole plan and its proof: no room to spare.
    m.readers.shrink_to_fit();
    m.edges.shrink_to_fit();
    m
}

/// One node's part of the model: its files' contents and its components as readers.
fn node_model(pb: &Playbook, n: &NodeFacts, cas: &BTreeMap<CaId, CertInfo>) -> (Vec<(FileId, Content)>, Vec<Reader>) {
    // Every file a component ref names, with the kind the ref gives it.
    let mut kinds: BTreeMap<String, FileKind> = BTreeMap::new();
    for c in &pb.components {
        for r in &c.refs {
            if let (Some(path), Some(file)) = (n.pki.path_of(Some(&c.name), &r.key), pb.file(&r.file)) {
                let kind = if is_ca_file(file) { FileKind::Trust } else { r.kind.unwrap_or(file.kind) };
                // A CA read as a trust bundle and as a signing cert is modelled as trust.
                if kind != FileKind::Key && kind != FileKind::Pubkey {
                    kinds.entry(path.to_string()).and_modify(|k| if kind == FileKind::Trust { *k = kind }).or_insert(kind);
                }
            }
        }
    }
    for f in pb.files.iter().filter(|f| matches!(f.kind, FileKind::Cert | FileKind::Kubeconfig)) {
        if let Some(path) = n.pki.named.get(&f.name) {
            kinds.entry(path.clone()).or_insert(if is_ca_file(f) { FileKind::Trust } else { f.kind });
        }
    }
    let files = kinds.iter().filter_map(|(path, kind)| Some((FileId::new(&n.name, path), content(path, n.files.get(path)?, *kind, &n.files, cas)?))).collect();
    let mut readers = Vec::new();
    for c in &pb.components {
        if !n.pki.components.contains_key(&c.name) {
            continue;
        }
        let mut reads: Vec<String> = n.pki.refs.iter().filter(|((comp, _), _)| comp == &c.name).map(|(_, p)| p.clone()).collect();
        for f in pb.files.iter().filter(|f| f.read_by.as_deref() == Some(c.name.as_str())) {
            reads.extend(n.pki.named.get(&f.name).cloned());
        }
        reads.sort();
        reads.dedup();
        readers.push(Reader { node: n.name.clone(), name: c.name.clone(), reads, fresh: false });
    }
    (files, readers)
}

/// Who reads a kubeconfig: the component whose ref or `read_by` names it, else kubectl
/// (a fresh reader, added to the model).
fn kubeconfig_reader(pb: &Playbook, n: &NodeFacts, name: &str, path: &str) -> (String, bool) {
    if let Some(((c, _), _)) = n.pki.refs.iter().find(|(_, p)| p.as_str() == path) {
        return (c.clone(), false);
    }
    if let Some(r) = pb.file(name).and_then(|f| f.read_by.clone())
        && n.pki.components.contains_key(&r)
    {
        return (r, false);
    }
    (format!("kubectl {name}"), true)
}

/// Each distinct name once: the edges' node names, components and paths repeat across
/// tens of thousands of edges.
#[derive(Default)]
struct Names(std::collections::HashSet<Arc<str>>);

impl Names {
    fn of(&mut self, s: &str) -> Arc<str> {
        if let Some(have) = self.0.get(s) {
            return have.clone();
        }
        let made: Arc<str> = s.into();
        self.0.insert(made.clone());
        made
    }
}

/// Every edge instance, and the fresh readers (kubectl, the etcd health check) they need.
fn edges(pb: &Playbook, nodes: &[NodeFacts], m: &Model) -> (Vec<Edge>, Vec<Reader>) {
    let mut out = Vec::new();
    let mut fresh: Vec<Reader> = Vec::new();
    let mut names = Names::default();
    for e in &pb.edges {
        let Some(sc) = e.server.component.as_deref() else { continue };
        let servers: Vec<&NodeFacts> = nodes.iter().filter(|n| n.pki.components.contains_key(sc)).collect();
        let peer = e.client.component.as_deref() == Some(sc);
        let name = names.of(&e.name);
        // Each server's end, made once for every client.
        let server_ends: Vec<End> = servers
            .iter()
            .map(|server| {
                let path = |k: &Option<String>| k.as_ref().and_then(|k| server.pki.path_of(Some(sc), k));
                let (cert, trust) = (path(&e.server.cert), path(&e.server.trusts));
                End { node: names.of(&server.name), component: names.of(sc), cert: cert.map(|p| names.of(p)), trust: trust.map(|p| names.of(p)) }
            })
            .collect();
        for client in nodes {
            let mut sides: Vec<End> = Vec::new();
            if e.client.kubeconfigs.is_empty() {
                let comp = e.client.component.clone().unwrap_or_else(|| format!("client {}", e.name));
                if e.client.component.as_ref().is_some_and(|c| !client.pki.components.contains_key(c)) {
                    continue;
                }
                let path = |k: &Option<String>| k.as_ref().and_then(|k| client.pki.path_of(e.client.component.as_deref(), k)).map(str::to_string);
                let Some(cert) = path(&e.client.cert) else { continue };
                let trust = path(&e.client.trusts);
                if e.client.component.is_none() {
                    fresh.push(Reader { node: client.name.clone(), name: comp.clone(), reads: [Some(cert.clone()), trust.clone()].into_iter().flatten().collect(), fresh: true });
                }
                sides.push(End { node: names.of(&client.name), component: names.of(&comp), cert: Some(names.of(&cert)), trust: trust.map(|t| names.of(&t)) });
            } else {
                for kc in &e.client.kubeconfigs {
                    let Some(path) = client.pki.named.get(kc) else { continue };
                    if !m.files.contains_key(&FileId::new(&client.name, path)) {
                        continue;
                    }
                    let (comp, is_fresh) = kubeconfig_reader(pb, client, kc, path);
                    if is_fresh {
                        fresh.push(Reader { node: client.name.clone(), name: comp.clone(), reads: vec![path.clone()], fresh: true });
                    }
                    let path = names.of(path);
                    sides.push(End { node: names.of(&client.name), component: names.of(&comp), cert: Some(path.clone()), trust: Some(path) });
                }
            }
            let local_only = !peer && sc != "kubelet" && servers.iter().any(|s| s.name == client.name);
            for side in sides {
                for (_, server) in servers.iter().zip(&server_ends).filter(|(s, _)| !local_only || s.name == client.name).filter(|(s, _)| !(peer && s.name == client.name)) {
                    out.push(Edge { name: name.clone(), client: side.clone(), server: server.clone() });
                }
            }
        }
    }
    (out, fresh)
}
