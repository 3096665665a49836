//! Owns: the points kcert's crash tests kill it at, exactly where they name: with
//! `KCERT_FAULT=record:N`, right after the N-th journal record this process wrote is on disk
//! (records journaled together are on disk together: the kill comes after all of them)
//! (`record:S4:N`: the N-th of stage S4); with `KCERT_FAULT=rename:N`, in the N-th batch of
//! atomic writes once every temp file is written and before the first rename. The process is
//! killed (SIGKILL): nothing after runs.
//! Must not: do anything unless KCERT_FAULT is set (it never is outside the tests).

use std::sync::atomic::{AtomicUsize, Ordering};

/// Where a fault can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    Record,
    Rename,
}

static RECORDS: AtomicUsize = AtomicUsize::new(0);
static STAGE_RECORDS: AtomicUsize = AtomicUsize::new(0);
static RENAMES: AtomicUsize = AtomicUsize::new(0);

/// What KCERT_FAULT names: the point, the stage it counts in (records only), and N.
fn wanted() -> Option<(Point, Option<String>, usize)> {
    let v = std::env::var("KCERT_FAULT").ok()?;
    let mut parts = v.split(':');
    let point = match parts.next()? {
        "record" => Point::Record,
        "rename" => Point::Rename,
        _ => return None,
    };
    let rest: Vec<&str> = parts.collect();
    match rest.as_slice() {
        [n] => Some((point, None, n.parse().ok()?)),
        [stage, n] if point == Point::Record => Some((point, Some(stage.to_string()), n.parse().ok()?)),
        _ => None,
    }
}

fn die() {
    // SAFETY: kill(2) on our own pid with a valid signal number.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
}

/// Counts a pass through `point` (a record of `stage`, when it has one); kills this process
/// when it is the one KCERT_FAULT names.
pub fn reached(point: Point, stage: Option<&str>) {
    let Some((want, in_stage, n)) = wanted() else { return };
    let counter = match (point, &in_stage) {
        (Point::Record, Some(s)) if stage == Some(s.as_str()) => &STAGE_RECORDS,
        (Point::Record, Some(_)) => return,
        (Point::Record, None) => &RECORDS,
        (Point::Rename, _) => &RENAMES,
    };
    let seen = counter.fetch_add(1, Ordering::SeqCst) + 1;
    if want == point && seen == n {
        die();
    }
}
