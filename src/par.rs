//! Owns: running independent CPU-bound work on every core (signing leaves, making file ops),
//! results in the order of the inputs; and work run beside the caller's on a thread of its own.
//! Must not: do I/O or hold state; the work itself is the caller's.

use rayon::prelude::*;

/// `f` over `items` on rayon's pool (one thread per core, made once per process and shared by
/// every caller, so work handed in by two threads at once interleaves on the same cores); the
/// results come back in `items`' order. One core: no thread but the caller's.
pub fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync + Send) -> Vec<R> {
    items.par_iter().map(f).collect()
}

/// `main` on the caller's thread while `side` runs on a thread of its own (work that would
/// otherwise wait for a core `main` leaves idle); `main` takes `side`'s result when it needs
/// it, waiting for it then. `side` has finished when this returns, whatever `main` did.
pub fn beside<S: Send, R>(side: impl FnOnce() -> S + Send, main: impl FnOnce(Beside<'_, S>) -> R) -> R {
    std::thread::scope(|scope| main(Beside(scope.spawn(side))))
}

/// The result of `beside`'s side work, once it is asked for.
pub struct Beside<'scope, S>(std::thread::ScopedJoinHandle<'scope, S>);

impl<S> Beside<'_, S> {
    /// Waits for the side work and takes its result (a panic there goes on here; side work
    /// never taken that panicked makes `beside` panic as it returns).
    pub fn take(self) -> S {
        self.0.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn side_work_runs_beside_and_is_taken_when_asked() {
        let items: Vec<u64> = (0..10_000).collect();
        let (sum, doubled) = super::beside(|| items.iter().sum::<u64>(), |side| (side.take(), super::map(&items, |x| x * 2)));
        assert_eq!(sum, 49_995_000);
        assert_eq!(doubled[9_999], 19_998);
        // Not asked for: it still finishes before `beside` returns.
        let done = std::sync::atomic::AtomicBool::new(false);
        super::beside(|| done.store(true, std::sync::atomic::Ordering::SeqCst), |_| ());
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[test]
    fn results_keep_the_order_of_the_inputs() {
        let items: Vec<u32> = (0..1001).collect();
        assert_eq!(super::map(&items, |x| x * 2), items.iter().map(|x| x * 2).collect::<Vec<_>>());
        assert!(super::map(&[] as &[u32], |x| *x).is_empty());
    }
}
