//! Owns: the rotation planner's working state: the CAs being rotated, a virtual copy of every
//! node's files as the plan so far leaves them, the trust model alongside, and turning one
//! node's changes in one step into file ops.
//! Must not: do I/O; what each stage changes is in `stages`, how it reads in `describe`.

use std::collections::BTreeMap;

use super::Input;
use super::cas::OldCa;
use crate::gather::facts::{Contents, NodeFacts, Shared};
use crate::pki::cert::{CertInfo, parse_pem};
use crate::pki::sign::{Signer, Validity};
use crate::pki::{edit, find_issuer};
use crate::plan::model::{CaId, Content, FileId};
use crate::plan::parts;
use crate::plan::schema::{FileOp, StageId, old_key_id};

/// What the planner keeps per rotated CA.
pub(super) struct Rot {
    pub(super) old: OldCa,
    pub(super) new_id: CaId,
    pub(super) new_cert: CertInfo,
    pub(super) new_pem: String,
    pub(super) old_pem: String,
    pub(super) key_pem: String,
    /// Shared with the thread that signs S4's leaves ahead.
    pub(super) signer: std::sync::Arc<Signer>,
}

/// A node's changed files: path -> bytes (None: removed).
type Changed = BTreeMap<String, Option<Shared>>;

/// Current bytes of every file, as the plan so far leaves them. Equal contents are held once
/// (most workers' bundles and kubeconfigs are the same bytes).
pub(super) struct Vfs<'a> {
    pub(super) base: BTreeMap<&'a str, &'a BTreeMap<String, Shared>>,
    /// Every file the plan so far changes, by node.
    pub(super) cur: BTreeMap<String, Changed>,
    pub(super) shared: Contents,
}

impl<'a> Vfs<'a> {
    pub(super) fn new(base: BTreeMap<&'a str, &'a BTreeMap<String, Shared>>) -> Vfs<'a> {
        Vfs { base, cur: BTreeMap::new(), shared: Default::default() }
    }
    /// A file's bytes, borrowed.
    pub(super) fn peek(&self, node: &str, path: &str) -> Option<&[u8]> {
        match self.cur.get(node).and_then(|files| files.get(path)) {
            Some(v) => v.as_deref(),
            None => self.base.get(node).and_then(|f| f.get(path)).map(|b| &**b),
        }
    }
    pub(super) fn get(&self, node: &str, path: &str) -> Option<Vec<u8>> {
        self.peek(node, path).map(<[u8]>::to_vec)
    }
    pub(super) fn set(&mut self, node: &str, path: &str, bytes: Option<Vec<u8>>) {
        let held = bytes.map(|b| self.shared.hold(b));
        match self.cur.get_mut(node) {
            Some(files) => drop(files.insert(path.to_string(), held)),
            None => drop(self.cur.insert(node.to_string(), BTreeMap::from([(path.to_string(), held)]))),
        }
    }
    /// Lets go of contents no file holds any more.
    pub(super) fn forget_unused(&mut self) {
        self.shared.forget_unused();
    }
}

/// One stage's changes to one node, being collected: everything the stage would change in
/// the planner's state, kept here until `Planner::absorb` takes it in, so the nodes of a
/// batch are worked out at once, each reading only its own node and the state before the step.
#[derive(Default)]
pub(super) struct Pending {
    /// (path) -> the ca name whose key it holds: written from the key store.
    pub(super) private: BTreeMap<String, parts::KeyRef>,
    /// Paths touched, in order, with their bytes before the stage touched them and now.
    pub(super) touched: Vec<String>,
    pub(super) before: BTreeMap<String, Option<Vec<u8>>>,
    pub(super) after: BTreeMap<String, Option<Vec<u8>>>,
    pub(super) model: BTreeMap<String, Content>,
    pub(super) problems: Vec<String>,
    /// Staged copies made, for the clean-up.
    pub(super) staged: Vec<String>,
    /// Signing pairs split off, by component: (rotation, cert flag value, key flag value).
    pub(super) splits: Vec<(String, (usize, String, String))>,
    pub(super) sa_splits: Vec<SaSplit>,
}

/// A CA key that is also the service-account key, split off in S2 on one node.
pub(super) struct SaSplit {
    pub node: String,
    /// The rotation whose CA key it is.
    pub ri: usize,
    pub key: String,
    /// The old key's copy the other use reads from S2 on.
    pub copy: String,
    /// (component, flag) pairs repointed at the copy.
    pub uses: Vec<(String, String)>,
}

/// A leaf this plan signed: the rotation whose new CA signed it, its subject (the leaf's it
/// re-signs) and its expiry.
#[derive(Clone)]
pub(super) struct Signed {
    pub ri: usize,
    pub subject: String,
    pub not_after: i64,
}

/// A file's bytes before and after a change (None: there is no file).
pub(super) type Change = (Option<Vec<u8>>, Option<Vec<u8>>);

/// What one step made, by what it was made of (shared by the nodes worked out on every core).
pub(super) type StepMemo<K, V> = std::sync::Mutex<foldhash::HashMap<K, Result<V, String>>>;

/// A node's files in `files` (keyed by node, then path), by path.
fn of_node<'m>(files: &'m BTreeMap<FileId, Content>, node: &'m str) -> impl Iterator<Item = (&'m str, &'m Content)> {
    files.range(FileId::new(node, "")..).take_while(move |(k, _)| k.node == node).map(|(k, c)| (k.path.as_str(), c))
}

/// What `memo` holds for `key`, made (and kept) when it holds nothing yet.
fn remember<K: std::hash::Hash + Eq + Clone, V: Clone>(memo: &StepMemo<K, V>, key: &K, make: impl FnOnce() -> Result<V, String>) -> Result<V, String> {
    let lock = || memo.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let seen = lock().get(key).cloned();
    seen.unwrap_or_else(|| {
        let made = make();
        lock().insert(key.clone(), made.clone());
        made
    })
}

pub(super) struct Planner<'a> {
    pub(super) input: &'a Input<'a>,
    /// The trust model's files the plan so far changed, as it leaves them.
    pub(super) state: BTreeMap<FileId, Content>,
    /// The trust model's files as discovery found them (those not in `state` stay so).
    pub(super) model: &'a BTreeMap<FileId, Content>,
    pub(super) rots: Vec<Rot>,
    pub(super) vfs: Vfs<'a>,
    pub(super) v: Validity,
    /// (node, component) of a signing pair split off the CA bundle in S2: (rotation index,
    /// original cert flag value, original key flag value).
    pub(super) splits: BTreeMap<(String, String), (usize, String, String)>,
    /// Each CA key that is also the service-account key, split off in S2.
    pub(super) sa_splits: Vec<SaSplit>,
    /// Staged files created in S1/S2, per node, for the clean-up.
    pub(super) staged: BTreeMap<String, Vec<String>>,
    /// Private keys written, (node, path) -> ca name: rebuilt from the key store.
    pub(super) private: BTreeMap<(String, String), String>,
    pub(super) problems: Vec<String>,
    /// Leaves re-signed to expire with their new CA, sooner than `--days` asked.
    pub(super) capped: std::sync::atomic::AtomicUsize,
    /// Signatures being made ahead by `presign_start`, by (leaf sha256, rotation, extra SANs):
    /// each taken once, so two files holding one leaf still get a certificate each.
    pub(super) presigned: super::presign::Presign,
    /// Node name -> its index in the input; per rotation, the nodes holding its key
    /// (node, cert path, key path): looked up for every node, so made once.
    pub(super) index: BTreeMap<String, usize>,
    pub(super) holders: Vec<Vec<(String, String, String)>>,
    /// Service-account tokens before the run: checked after every step.
    pub(super) tokens: crate::plan::tokens::TokenBaseline,
    /// One copy of each distinct recipe text (most workers' bundles are one text).
    pub(super) texts: crate::plan::schema::Texts,
    /// Leaves this plan signed, by sha256: what a reviewer is told of them, known without
    /// parsing or checking a signature (kcert made them).
    pub(super) ours: std::sync::Mutex<foldhash::HashMap<String, Signed>>,
    /// The public edits of the current step (`edit_as`), by the bytes edited and the change.
    /// Emptied after each batch (S1's and the clean-up's stay until the next: an entry is
    /// right wherever its key matches, so keeping one longer costs only memory).
    pub(super) edits: StepMemo<(Vec<u8>, String), Vec<u8>>,
    /// The public file ops of the current step, by what they are made of (old and new bytes):
    /// a change that is the same on many nodes of a batch (a bundle, a kubeconfig, one text
    /// across a kubeadm fleet's workers) is described and checked once. Emptied as `edits` is.
    pub(super) made: StepMemo<Change, FileOp>,
}

impl<'a> Planner<'a> {
    pub(super) fn node(&self, name: &str) -> &'a NodeFacts {
        &self.input.nodes[self.index[name]]
    }

    pub(super) fn staged_path(&self, path: &str, which: &str) -> String {
        let pb = self.input.playbook;
        let dir = pb.pki_dir.trim_end_matches('/');
        let staging = pb.rotation.as_ref().map(|r| r.staging.as_str()).unwrap_or("kcert-rotation");
        match path.strip_prefix(&format!("{dir}/")) {
            Some(rel) => format!("{dir}/{staging}/{which}/{rel}"),
            // A CA kept outside pki_dir (a binary cluster's /opt/kubernetes/ssl) stages beside itself.
            None => {
                let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
                format!("{parent}/{staging}/{which}/{name}")
            }
        }
    }

    /// Where S1 stages a CA's new certificate and key (two files, also when the CA keeps
    /// both in one).
    pub(super) fn staged_pair(&self, cert: &str, key: &str) -> (String, String) {
        let sc = self.staged_path(cert, "new");
        let sk = if key == cert {
            let stem = sc.strip_suffix(".pem").or_else(|| sc.strip_suffix(".crt")).unwrap_or(&sc);
            format!("{stem}-key.pem")
        } else {
            self.staged_path(key, "new")
        };
        (sc, sk)
    }

    pub(super) fn rot_of_old(&self, id: &str) -> Option<usize> {
        self.rots.iter().position(|r| r.old.id == id)
    }

    /// Rotation `ri`'s CA files on `node` (cert path, key path), when the node holds its key.
    pub(super) fn holder(&self, ri: usize, node: &str) -> Option<(String, String)> {
        self.holders[ri].iter().find(|(n, _, _)| n == node).map(|(_, c, k)| (c.clone(), k.clone()))
    }

    /// Nodes that hold rotation `r`'s CA key: they get the new CA in S1 and its key in S5.
    pub(super) fn find_key_holders(input: &Input<'_>, r: &Rot) -> Vec<(String, String, String)> {
        let pb = input.playbook;
        input
            .nodes
            .iter()
            .filter_map(|n| {
                let cert = n.pki.named.get(&r.old.name)?;
                let (key, _) = n.ca_key(pb, &r.old.name)?;
                Some((n.name.clone(), cert.clone(), key))
            })
            .collect()
    }

    /// A file's bytes as this stage has left them so far on `node` (its own changes first).
    pub(super) fn get(&self, p: &Pending, node: &str, path: &str) -> Option<Vec<u8>> {
        self.peek(p, node, path).map(<[u8]>::to_vec)
    }

    /// `get`, borrowed.
    pub(super) fn peek<'s>(&'s self, p: &'s Pending, node: &str, path: &str) -> Option<&'s [u8]> {
        match p.after.get(path) {
            Some(b) => b.as_deref(),
            None => self.vfs.peek(node, path),
        }
    }

    pub(super) fn touch(&self, p: &mut Pending, node: &str, path: &str, bytes: Option<Vec<u8>>) {
        if !p.before.contains_key(path) {
            let before = self.get(p, node, path);
            p.touched.push(path.to_string());
            p.before.insert(path.to_string(), before);
        }
        p.after.insert(path.to_string(), bytes);
    }

    /// Applies `f` to a file's current bytes (a problem is recorded when it fails).
    pub(super) fn edit(&self, p: &mut Pending, node: &str, path: &str, f: impl FnOnce(&[u8]) -> Result<Vec<u8>, String>) {
        let Some(old) = self.to_edit(p, node, path) else { return };
        let made = f(&old);
        self.settle(p, node, path, &old, made);
    }

    /// `edit` by a change that `what` names whole (it is all `f` depends on besides the
    /// bytes): remembered for the step, so the same change of the same text on many nodes
    /// (a bundle, a kubeconfig: one text across a kubeadm fleet's workers) is made once.
    pub(super) fn edit_as(&self, p: &mut Pending, node: &str, path: &str, what: String, f: impl FnOnce(&[u8]) -> Result<Vec<u8>, String>) {
        let Some(old) = self.to_edit(p, node, path) else { return };
        let key = (old, what);
        let made = remember(&self.edits, &key, || f(&key.0));
        self.settle(p, node, path, &key.0, made);
    }

    /// A file's bytes as the step finds them, for an edit; a file never read is a problem.
    fn to_edit(&self, p: &mut Pending, node: &str, path: &str) -> Option<Vec<u8>> {
        let old = self.get(p, node, path);
        if old.is_none() {
            p.problems.push(format!("{node}: {path}: was not read; kcert will not change a file it has not seen"));
        }
        old
    }

    /// Whether `node`'s changes touch only its own files and no check between stages reads
    /// them: it holds no CA key (`s1`), runs no signing pair and uses no service-account key.
    pub(super) fn on_its_own(&self, node: &str, s1: &[String]) -> bool {
        let n = self.node(node);
        !n.control_plane && !s1.iter().any(|h| h == node) && !self.tokens.involves(self.index[node]) && !self.input.playbook.pairs.iter().any(|p| n.pki.components.contains_key(&p.component))
    }

    /// Lets go of `nodes`' changed files and model, all stages planned: nothing reads them again.
    pub(super) fn release(&mut self, nodes: &[String]) {
        for node in nodes {
            self.vfs.cur.remove(node);
            let ids: Vec<FileId> = self.state.range(FileId::new(node, "")..).take_while(|(k, _)| k.node == *node).map(|(k, _)| k.clone()).collect();
            ids.iter().for_each(|k| drop(self.state.remove(k)));
        }
        self.vfs.forget_unused();
    }

    /// Ends a step: contents no file holds any more, and the step's memos, are let go.
    pub(super) fn end_step(&mut self) {
        self.vfs.forget_unused();
        self.edits.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        self.made.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }

    fn settle(&self, p: &mut Pending, node: &str, path: &str, old: &[u8], made: Result<Vec<u8>, String>) {
        match made {
            Ok(new) if new != old => self.touch(p, node, path, Some(new)),
            Ok(_) => {}
            Err(e) => p.problems.push(format!("{node}: {path}: {e}")),
        }
    }

    /// Takes in one node's changes of a step, as `Pending` collected them: its files, its
    /// model, its problems, staged copies, split pairs and private keys.
    pub(super) fn absorb(&mut self, node: &str, p: &mut Pending) {
        for (path, bytes) in std::mem::take(&mut p.after) {
            self.vfs.set(node, &path, bytes);
        }
        for (path, content) in &p.model {
            self.state.insert(FileId::new(node, path), content.clone());
        }
        self.problems.append(&mut p.problems);
        if !p.staged.is_empty() {
            self.staged.entry(node.to_string()).or_default().append(&mut p.staged);
        }
        for (component, split) in p.splits.drain(..) {
            self.splits.insert((node.to_string(), component), split);
        }
        self.sa_splits.append(&mut p.sa_splits);
        for (path, key) in &p.private {
            let id = match key {
                parts::KeyRef::New(name) => name.clone(),
                parts::KeyRef::Old(name) => old_key_id(name),
            };
            self.private.insert((node.to_string(), path.clone()), id);
        }
    }

    /// Sets a component's flags on a node, each in the file that sets it (a manifest, a
    /// unit, a drop-in or an environment file).
    pub(super) fn set_flags(&self, p: &mut Pending, node: &str, component: &str, flags: &[(&str, &str)]) {
        let sets: Vec<(&str, &str, &str)> = flags.iter().map(|(f, v)| (component, *f, *v)).collect();
        self.set_flags_of(p, node, &sets);
    }

    /// Sets (component, flag, value) on a node; refused when the rewrite would change any
    /// other flag too (two flags sharing one variable: `--root-ca-file=${CA}` beside
    /// `--cluster-signing-cert-file=${CA}`).
    pub(super) fn set_flags_of(&self, p: &mut Pending, node: &str, sets: &[(&str, &str, &str)]) {
        let pb = self.input.playbook;
        let n = self.node(node);
        let flags_of = |p: &Pending| -> BTreeMap<String, BTreeMap<String, String>> {
            pb.components
                .iter()
                .filter(|c| n.pki.components.contains_key(&c.name))
                .filter_map(|c| crate::gather::facts::flags_now(c, &n.pki, &|path| self.get(p, node, path)).map(|f| (c.name.clone(), f)))
                .collect()
        };
        let before = flags_of(p);
        for (component, flag, value) in sets {
            match super::parts::flag_file(pb, n, component, flag) {
                Ok((path, how)) => self.edit(p, node, &path, |b| how.apply(b, flag, value)),
                Err(e) => p.problems.push(e),
            }
        }
        let after = flags_of(p);
        let meant = |c: &str, k: &str| {
            sets.iter().any(|(sc, sf, _)| *sc == c && (*sf == k || pb.component(c).and_then(|x| x.flag_fields.get(*sf)).is_some_and(|field| field == k)))
        };
        for (c, flags) in &after {
            for (k, v) in flags {
                let was = before.get(c).and_then(|f| f.get(k));
                if was != Some(v) && !meant(c, k) {
                    p.problems.push(format!("{node}: setting {} would also change {c}'s {k} (from {} to {v}): they share a variable; write each as --flag=value", sets.iter().map(|(c, f, _)| format!("{c}'s {f}")).collect::<Vec<_>>().join(", "), was.map(String::as_str).unwrap_or("unset")));
                }
            }
        }
    }

    /// Re-signs a PEM text's first certificate with rotation `ri`'s new CA; later
    /// certificates that are the old CA become the new one, and with `rehome` a
    /// self-signed leaf's own throwaway CA is dropped.
    pub(super) fn resign_text(&self, bytes: &[u8], ri: usize, extra_sans: &[String], rehome: bool) -> Result<Vec<u8>, String> {
        let r = &self.rots[ri];
        let pems = edit::cert_pems(bytes)?;
        let parsed = parse_pem(bytes).map_err(|e| e.to_string())?.certs;
        let leaf = parsed.first().ok_or("no certificate in it")?;
        let ahead = self.presigned.take(&(leaf.sha256.clone(), ri, extra_sans.to_vec()));
        let renewed = match ahead {
            Some(r) => r,
            None => r.signer.resign(leaf, self.v, extra_sans).map_err(|e| e.to_string())?,
        };
        if renewed.capped {
            self.capped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let signed = Signed { ri, subject: leaf.subject.clone(), not_after: renewed.not_after };
        self.ours.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(crate::pki::sha256(&renewed.der), signed);
        let mut out = vec![renewed.pem];
        for (pem, c) in pems.iter().zip(&parsed).skip(1) {
            if let Some(x) = self.rots.iter().find(|x| x.old.cert.sha256 == c.sha256) {
                out.push(x.new_pem.clone());
            } else if rehome && c.is_ca && find_issuer(leaf, &[c]).is_some() {
                continue;
            } else {
                out.push(pem.clone());
            }
        }
        edit::set_certs(bytes, &out)
    }

    /// A node's files as the plan has them now, by path: the model's, and over them what the
    /// plan changed (both are sorted by path: merged as they are read, nothing copied).
    pub(super) fn model_files<'s>(&'s self, node: &'s str) -> impl Iterator<Item = (&'s str, &'s Content)> + 's {
        let (mut model, mut changed) = (of_node(self.model, node).peekable(), of_node(&self.state, node).peekable());
        std::iter::from_fn(move || match (model.peek(), changed.peek()) {
            (Some((m, _)), Some((c, _))) => match m.cmp(c) {
                std::cmp::Ordering::Less => model.next(),
                std::cmp::Ordering::Greater => changed.next(),
                std::cmp::Ordering::Equal => {
                    model.next();
                    changed.next()
                }
            },
            (Some(_), None) => model.next(),
            (None, _) => changed.next(),
        })
    }

    /// A node's changes in one step, taken in, as file ops.
    pub(super) fn ops(&mut self, node: &str, p: &mut Pending) -> Vec<FileOp> {
        self.absorb(node, p);
        let (ops, problems) = self.ops_of(node, p);
        self.problems.extend(problems);
        ops
    }

    /// A node's changes in one step, as file ops, and what stops one being made; reads only
    /// that node's files, so the nodes of a batch are made on every core.
    pub(super) fn ops_of(&self, node: &str, p: &Pending) -> (Vec<FileOp>, Vec<String>) {
        let mut out = Vec::with_capacity(p.touched.len());
        let mut problems = Vec::new();
        for path in &p.touched {
            let (old, new) = (p.before.get(path).and_then(Option::as_deref), self.vfs.peek(node, path));
            if old == new {
                continue;
            }
            let private = p.private.contains_key(path) || self.private.contains_key(&(node.to_string(), path.clone()));
            let make = || {
                let keys = |id: &str| self.key_of(id);
                let changes = self.describe(old, new, private);
                let mut op = parts::file_op(path, old, new, p.private.get(path).cloned(), private, &keys, changes, Vec::new())?;
                self.texts.intern_ops(std::slice::from_mut(&mut op));
                Ok(op)
            };
            // A public file op is what its old and new bytes make of it, at its path; a key's
            // op is made each time (no key is kept).
            let made = if private { make() } else { remember(&self.made, &(old.map(<[u8]>::to_vec), new.map(<[u8]>::to_vec)), make) };
            match made {
                Ok(mut op) => {
                    op.path.clone_from(path);
                    out.push(op)
                }
                Err(e) => problems.push(format!("{node}: {path}: {e}")),
            }
        }
        // Kept in the plan: no room to spare (a 5,000-node plan holds 30,000 file ops).
        out.shrink_to_fit();
        (out, problems)
    }

    /// Writes rotation `ri`'s new CA key at `path`; in a file that holds the CA's certificate
    /// too, its certificates become the new CA and its key block the new key.
    pub(super) fn write_key(&self, p: &mut Pending, node: &str, path: &str, ri: usize) {
        let key = self.rots[ri].key_pem.clone();
        let bytes = match self.get(p, node, path) {
            Some(cur) if !edit::cert_shas(&cur).unwrap_or_default().is_empty() => {
                match edit::set_certs(&cur, std::slice::from_ref(&self.rots[ri].new_pem)).and_then(|b| edit::set_key(&b, &key)) {
                    Ok(b) => b,
                    Err(e) => {
                        p.problems.push(format!("{node}: {path}: {e}"));
                        return;
                    }
                }
            }
            _ => key.into_bytes(),
        };
        self.touch(p, node, path, Some(bytes));
        p.private.insert(path.to_string(), parts::KeyRef::New(self.rots[ri].old.name.clone()));
    }

    /// A key of the run's key store by its id: a new CA key by the CA's name, an old one by
    /// `old_key_id` (read from the node that holds it; it never enters the plan).
    pub(super) fn key_of(&self, id: &str) -> Option<String> {
        if let Some(r) = self.rots.iter().find(|r| r.old.name == id) {
            return Some(r.key_pem.clone());
        }
        let ri = self.rots.iter().position(|r| old_key_id(&r.old.name) == id)?;
        let (node, _, key) = self.holders.get(ri)?.first()?;
        self.node(node).files.get(key).and_then(|b| edit::key_pem(b))
    }

    /// Writes a copy of rotation `ri`'s old CA key (its other use keeps it).
    pub(super) fn write_old_key(&self, p: &mut Pending, node: &str, path: &str, ri: usize) {
        let Some(key) = self.key_of(&old_key_id(&self.rots[ri].old.name)) else {
            p.problems.push(format!("{node}: the old {} CA key was not read", self.rots[ri].old.alias));
            return;
        };
        self.touch(p, node, path, Some(key.into_bytes()));
        p.private.insert(path.to_string(), parts::KeyRef::Old(self.rots[ri].old.name.clone()));
    }

    /// Every signing pair of every node, as the plan leaves the files after stage `stage`.
    pub(super) fn check_pairs(&self, stage: StageId) -> Vec<String> {
        let get = |node: &str, path: &str| self.vfs.get(node, path);
        parts::pair_problems(self.input.playbook, self.input.nodes, stage, &get)
    }

    /// Service-account tokens, as the plan leaves the files after a step (`when`).
    pub(super) fn check_tokens(&self, when: &str) -> Vec<String> {
        let get = |node: &str, path: &str| self.vfs.get(node, path);
        crate::plan::tokens::token_problems(self.input.playbook, self.input.nodes, &self.tokens, &get, when)
    }
}
