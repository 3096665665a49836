//! Owns: remembering what a pure parse made of a text (PEM, kubeconfig, manifest flags), by
//! the text's exact bytes, so the planner reading one file many times parses it once.
//! Must not: grow without bound, or keep a key in a result (PEM parsing only counts key
//! blocks); its keys are the texts as the caller holds them, a kubeconfig's client key among them.

use foldhash::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};

/// A parse's results by the exact bytes parsed: no digest to collide, a hit compares the
/// bytes. Cleared when the texts it holds pass `max_bytes`.
pub struct Memo<V> {
    max_bytes: usize,
    inner: LazyLock<Mutex<Held<V>>>,
}

/// The results by the bytes parsed, and how many bytes those texts are.
type Held<V> = (HashMap<Vec<u8>, V>, usize);

impl<V: Clone> Memo<V> {
    pub const fn new(max_bytes: usize) -> Memo<V> {
        Memo { max_bytes, inner: LazyLock::new(Default::default) }
    }

    /// What `parse` made of `bytes`, from memory when it was asked before.
    pub fn get_or(&self, bytes: &[u8], parse: impl FnOnce() -> V) -> V {
        if let Some(v) = self.inner.lock().unwrap_or_else(PoisonError::into_inner).0.get(bytes) {
            return v.clone();
        }
        let v = parse();
        let mut m = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if m.1 + bytes.len() > self.max_bytes {
            m.0.clear();
            m.1 = 0;
        }
        if bytes.len() <= self.max_bytes && m.0.insert(bytes.to_vec(), v.clone()).is_none() {
            m.1 += bytes.len();
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::Memo;
    use std::cell::Cell;

    #[test]
    fn a_text_is_parsed_once_and_the_memo_stays_bounded() {
        static M: Memo<usize> = Memo::new(10);
        let calls = Cell::new(0);
        let parse = |b: &[u8]| {
            calls.set(calls.get() + 1);
            b.len()
        };
        assert_eq!(M.get_or(b"abcd", || parse(b"abcd")), 4);
        assert_eq!(M.get_or(b"abcd", || parse(b"abcd")), 4);
        assert_eq!(calls.get(), 1, "the second ask is remembered");
        assert_eq!(M.get_or(b"abce", || parse(b"abce")), 4, "other bytes, their own result");
        assert_eq!(calls.get(), 2);
        // 4 + 4 + 4 passes 10: cleared, so "abcd" is parsed again later.
        M.get_or(b"wxyz", || parse(b"wxyz"));
        M.get_or(b"abcd", || parse(b"abcd"));
        assert_eq!(calls.get(), 4);
        assert!(M.inner.lock().unwrap().1 <= 10);
        // Larger than the bound: parsed each time, never kept.
        M.get_or(&[0; 11], || parse(&[0; 11]));
        M.get_or(&[0; 11], || parse(&[0; 11]));
        assert_eq!(calls.get(), 6);
    }
}
