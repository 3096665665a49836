//! Owns: remembering what a pure parse made of a text (PEM, kubeconfig, manifest flags), by
//! the text's exact bytes, so the planner reading one file many times parses it once.
//! Must not: grow without bound, or keep a key in a result (PEM parsing only counts key
//! blocks); its keys are the texts as the caller holds them, a kubeconfig's client key among them.

use foldhash::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

/// Shards, each its own lock: the planner's threads parse at once, and a thread that holds
/// a lock when its core is taken away stalls only the texts of its shard.
const SHARDS: usize = 16;

/// A parse's results by the exact bytes parsed: no digest to collide, a hit compares the
/// bytes. A shard is cleared when the texts it holds pass its part of `max_bytes`.
pub struct Memo<V> {
    max_bytes: usize,
    shards: LazyLock<[Mutex<Held<V>>; SHARDS]>,
}

/// The results by the bytes parsed (shared: a hit copies a pointer under the lock, not the
/// result), and how many bytes those texts are.
type Held<V> = (HashMap<Vec<u8>, Arc<V>>, usize);

impl<V> Memo<V> {
    pub const fn new(max_bytes: usize) -> Memo<V> {
        Memo { max_bytes, shards: LazyLock::new(|| std::array::from_fn(|_| Mutex::default())) }
    }

    fn shard(&self, bytes: &[u8]) -> std::sync::MutexGuard<'_, Held<V>> {
        let at = foldhash::fast::FixedState::default().hash_one(bytes) as usize % SHARDS;
        self.shards[at].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What `parse` made of `bytes`, shared, from memory when it was asked before.
    pub fn shared(&self, bytes: &[u8], parse: impl FnOnce() -> V) -> Arc<V> {
        if let Some(v) = self.shard(bytes).0.get(bytes) {
            return v.clone();
        }
        let v = Arc::new(parse());
        let limit = self.max_bytes / SHARDS;
        let mut m = self.shard(bytes);
        if m.1 + bytes.len() > limit {
            m.0.clear();
            m.1 = 0;
        }
        if bytes.len() <= limit && m.0.insert(bytes.to_vec(), v.clone()).is_none() {
            m.1 += bytes.len();
        }
        v
    }
}

impl<V: Clone> Memo<V> {
    /// What `parse` made of `bytes`, a copy of its own (made outside the lock).
    pub fn get_or(&self, bytes: &[u8], parse: impl FnOnce() -> V) -> V {
        V::clone(&self.shared(bytes, parse))
    }
}

#[cfg(test)]
mod tests {
    use super::{Memo, SHARDS};
    use std::cell::Cell;
    use std::hash::BuildHasher;

    #[test]
    fn a_text_is_parsed_once_and_the_memo_stays_bounded() {
        // 10 bytes a shard.
        static M: Memo<usize> = Memo::new(10 * SHARDS);
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
        assert!(std::sync::Arc::ptr_eq(&M.shared(b"abcd", || unreachable!()), &M.shared(b"abcd", || unreachable!())), "a hit shares one result");
        // Two more texts of abcd's shard: 4 + 4 + 4 passes 10, so the shard is cleared and
        // "abcd" is parsed again later.
        let shard = |b: &[u8]| foldhash::fast::FixedState::default().hash_one(b) as usize % SHARDS;
        let same: Vec<[u8; 4]> = (0u32..).map(u32::to_le_bytes).filter(|b| b != b"abcd" && shard(b) == shard(b"abcd")).take(2).collect();
        let before = calls.get();
        for b in &same {
            M.get_or(b, || parse(b));
        }
        M.get_or(b"abcd", || parse(b"abcd"));
        assert_eq!(calls.get(), before + 3);
        assert!(M.shards.iter().all(|s| s.lock().unwrap().1 <= 10));
        // Larger than a shard's bound: parsed each time, never kept.
        let before = calls.get();
        M.get_or(&[0; 11], || parse(&[0; 11]));
        M.get_or(&[0; 11], || parse(&[0; 11]));
        assert_eq!(calls.get(), before + 2);
    }
}
