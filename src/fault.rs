//! Owns: the points kcert's crash tests kill it at, exactly where they name: with
//! `KCERT_FAULT=record:N`, right after the N-th journal record this process wrote is on disk;
//! with `KCERT_FAULT=rename:N`, in the N-th batch of atomic writes once every temp file is
//! written and before the first rename. The process is killed (SIGKILL): nothing after runs.
//! Must not: do anything unless KCERT_FAULT is set (it never is outside the tests).

use std::sync::atomic::{AtomicUsize, Ordering};

/// Where a fault can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    Record,
    Rename,
}

static RECORDS: AtomicUsize = AtomicUsize::new(0);
static RENAMES: AtomicUsize = AtomicUsize::new(0);

fn wanted() -> Option<(Point, usize)> {
    let v = std::env::var("KCERT_FAULT").ok()?;
    let (what, n) = v.split_once(':')?;
    let point = match what {
        "record" => Point::Record,
        "rename" => Point::Rename,
        _ => return None,
    };
    Some((point, n.parse().ok()?))
}

/// Counts a pass through `point`; kills this process when it is the one KCERT_FAULT names.
pub fn reached(point: Point) {
    let Some((want, n)) = wanted() else { return };
    let counter = match point {
        Point::Record => &RECORDS,
        Point::Rename => &RENAMES,
    };
    let seen = counter.fetch_add(1, Ordering::SeqCst) + 1;
    if want == point && seen == n {
        // SAFETY: kill(2) on our own pid with a valid signal number.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
