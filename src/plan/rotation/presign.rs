//! Owns: S4's signatures made ahead, on threads of their own, in the order S4 takes them, so
//! every core signs while the rest of the plan (S2, the API stage, S4's file ops) is worked
//! out beside it; S4 waits only for the signatures of the batch it is at.
//! Must not: decide what is signed (S4's jobs do) or be the only way to a signature: what
//! it does not hold, `resign_text` signs itself.

use std::collections::VecDeque;

use foldhash::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crate::pki::CertInfo;
use crate::pki::sign::{Renewed, Signer, Validity};

/// What one signature is asked by: the leaf's sha256, the rotation whose new CA signs, the SANs added.
pub(super) type Want = (String, usize, Vec<String>);

/// A leaf to sign: the leaf, the rotation whose new CA signs it, the SANs added.
pub(super) type Leaf = (CertInfo, usize, Vec<String>);

/// The shared store: the leaves in S4's order, a slot for each one's signature, and which
/// slots each leaf's next signature is in (a leaf held by two files is signed twice: each file
/// gets a certificate of its own).
struct Store {
    /// Each leaf is let go once signed; each signature once taken.
    leaves: Vec<Mutex<Option<Leaf>>>,
    slots: Vec<OnceLock<Mutex<Option<Renewed>>>>,
    next: AtomicUsize,
    stop: AtomicBool,
}

/// The signatures being made ahead; dropping it stops the threads at their next leaf.
pub(super) struct Presign {
    store: Arc<Store>,
    by_leaf: Mutex<HashMap<Want, VecDeque<usize>>>,
}

impl Presign {
    /// Nothing made ahead: S4 signs every leaf itself.
    pub(super) fn none() -> Presign {
        Presign::start(Vec::new(), Vec::new(), Validity { now: 0, days: 0 })
    }

    /// Starts signing `leaves` (leaf, rotation index, SANs added) in their order, on one
    /// thread per core, each with `signers[rotation index]`.
    pub(super) fn start(leaves: Vec<Leaf>, signers: Vec<Arc<Signer>>, v: Validity) -> Presign {
        let mut by_leaf: HashMap<Want, VecDeque<usize>> = HashMap::default();
        for (i, (leaf, ri, extra)) in leaves.iter().enumerate() {
            by_leaf.entry((leaf.sha256.clone(), *ri, extra.clone())).or_default().push_back(i);
        }
        let store = Arc::new(Store { slots: leaves.iter().map(|_| OnceLock::new()).collect(), leaves: leaves.into_iter().map(|l| Mutex::new(Some(l))).collect(), next: AtomicUsize::new(0), stop: AtomicBool::new(false) });
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get).min(store.leaves.len());
        for _ in 0..threads {
            let (store, signers) = (store.clone(), signers.clone());
            std::thread::spawn(move || {
                while !store.stop.load(Ordering::Relaxed) {
                    let i = store.next.fetch_add(1, Ordering::Relaxed);
                    let Some(leaf) = store.leaves.get(i) else { break };
                    let leaf = leaf.lock().unwrap_or_else(PoisonError::into_inner).take();
                    // A signature that fails or panics here is left to S4, which signs it itself
                    // and reports what went wrong: the slot is filled whatever happens, so S4
                    // never waits for a signature that is not coming.
                    let sign = || leaf.and_then(|(leaf, ri, extra)| signers[ri].resign(&leaf, v, &extra).ok());
                    let made = std::panic::catch_unwind(std::panic::AssertUnwindSafe(sign)).ok().flatten();
                    let _ = store.slots[i].set(Mutex::new(made));
                }
            });
        }
        Presign { store, by_leaf: Mutex::new(by_leaf) }
    }

    /// The next signature made ahead for `want`, waiting for it while it is being made;
    /// `None` when none was asked for (or it failed): the caller signs.
    pub(super) fn take(&self, want: &Want) -> Option<Renewed> {
        let i = self.by_leaf.lock().unwrap_or_else(PoisonError::into_inner).get_mut(want)?.pop_front()?;
        self.store.slots[i].wait().lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

impl Drop for Presign {
    fn drop(&mut self) {
        self.store.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::cert::parse_pem;

    fn openssl(dir: &std::path::Path, args: &[&str]) {
        let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    #[test]
    fn every_file_holding_a_leaf_gets_a_signature_of_its_own_and_nothing_else_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
        openssl(d, &[&["req", "-x509", "-nodes"][..], &ec, &["-keyout", "ca.key", "-out", "ca.crt", "-days", "30", "-subj", "/CN=test-ca"]].concat());
        openssl(d, &[&["req", "-nodes"][..], &ec, &["-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=kubelet"]].concat());
        openssl(d, &["x509", "-req", "-in", "leaf.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "5", "-out", "leaf.crt"]);
        let ca = parse_pem(&std::fs::read(d.join("ca.crt")).unwrap()).unwrap().certs.remove(0);
        let leaf = parse_pem(&std::fs::read(d.join("leaf.crt")).unwrap()).unwrap().certs.remove(0);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let signer = Arc::new(Signer::new(&ca, &std::fs::read(d.join("ca.key")).unwrap(), now).unwrap());
        let want = (leaf.sha256.clone(), 0, Vec::new());
        let ahead = Presign::start(vec![(leaf.clone(), 0, Vec::new()), (leaf.clone(), 0, Vec::new())], vec![signer], Validity { now, days: 3 });
        let (a, b) = (ahead.take(&want).expect("the first file's signature"), ahead.take(&want).expect("the second file's"));
        assert_ne!(a.der, b.der, "two files holding one leaf get two certificates");
        for r in [&a, &b] {
            let made = parse_pem(r.pem.as_bytes()).unwrap().certs.remove(0);
            assert_eq!((made.subject.as_str(), made.issuer.as_str()), (leaf.subject.as_str(), ca.subject.as_str()));
        }
        assert!(ahead.take(&want).is_none(), "a third file was not asked for: its caller signs");
        assert!(ahead.take(&(leaf.sha256.clone(), 0, vec!["node1".into()])).is_none(), "other SANs are another signature");
        assert!(Presign::none().take(&want).is_none());
    }
}
