//! Owns: running independent CPU-bound work on every core (signing leaves, making file ops),
//! results in the order of the inputs.
//! Must not: do I/O or hold state; the work itself is the caller's.

use rayon::prelude::*;

/// `f` over `items` on rayon's pool (one thread per core, made once per process and shared by
/// every caller, so work handed in by two threads at once interleaves on the same cores); the
/// results come back in `items`' order. One core: no thread but the caller's.
pub fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync + Send) -> Vec<R> {
    items.par_iter().map(f).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_keep_the_order_of_the_inputs() {
        let items: Vec<u32> = (0..1001).collect();
        assert_eq!(super::map(&items, |x| x * 2), items.iter().map(|x| x * 2).collect::<Vec<_>>());
        assert!(super::map(&[] as &[u32], |x| *x).is_empty());
    }
}
