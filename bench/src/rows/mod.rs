//! The rows of the table: for each operation, our implementation and its
//! peers, each a small `fn(iters) -> Duration`.
//!
//! Rows for primitives that are still being written live behind the cargo
//! features `primitive-rows` and `pool-rows`.

use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::BenchFn;

// Unix only, as procpool is.
#[cfg(unix)]
mod procpool;

mod locks;
#[cfg(feature = "pool-rows")]
mod pool;
#[cfg(feature = "primitive-rows")]
mod primitives;
mod threads;

/// One implementation measured in a row.
#[derive(Clone, Copy)]
pub(crate) struct Imp {
    /// What is measured, as the table shows it (`std::sync::Mutex<()>`).
    pub(crate) name: &'static str,
    /// Runs the operations.
    pub(crate) run: BenchFn,
}

/// One operation: ours and the peers it is compared with.
pub(crate) struct Row {
    /// Stable identifier (`lock/uncontended`): `--filter`, the JSON, and
    /// the `CPython` script's keys use it.
    pub(crate) id: &'static str,
    /// The operation, as the table shows it.
    pub(crate) name: &'static str,
    /// What one operation is (`op`, `round trip`, `task`).
    pub(crate) unit: &'static str,
    /// The project's implementation.
    pub(crate) ours: Imp,
    /// What it is compared with, in the same run.
    pub(crate) peers: Vec<Imp>,
    /// Operations per run for rows defined by a batch (200 000 tasks), as
    /// (full, `--quick`); `None`: calibrated.
    pub(crate) fixed_iters: Option<(u64, u64)>,
    /// Operations per counted run under `--syscalls`.
    pub(crate) syscall_iters: u64,
}

impl Row {
    /// The implementation with index `i`: 0 is ours, then the peers.
    pub(crate) fn imp(&self, i: usize) -> Option<Imp> {
        if i == 0 { Some(self.ours) } else { self.peers.get(i - 1).copied() }
    }

    /// Ours, then every peer.
    pub(crate) fn imps(&self) -> impl Iterator<Item = Imp> + '_ {
        std::iter::once(self.ours).chain(self.peers.iter().copied())
    }
}

/// Shorthand for an [`Imp`].
pub(crate) const fn imp(name: &'static str, run: BenchFn) -> Imp {
    Imp { name, run }
}

/// Every row this build knows, in table order.
pub(crate) fn all() -> Vec<Row> {
    let rows = locks::rows().into_iter();
    let rows = rows.chain(threads::rows());
    #[cfg(feature = "primitive-rows")]
    let rows = rows.chain(primitives::rows());
    #[cfg(feature = "pool-rows")]
    let rows = rows.chain(pool::rows());
    #[cfg(unix)]
    let rows = rows.chain(procpool::rows());
    rows.collect()
}

/// Rows that exist only with a feature, named so the table can say how to
/// get them.
pub(crate) fn pending_note() -> Option<&'static str> {
    match (cfg!(feature = "primitive-rows"), cfg!(feature = "pool-rows")) {
        (true, true) => None,
        (false, true) => Some(
            "rows for RLock, Semaphore, ReadWriteLock, Condition and Event need --features primitive-rows",
        ),
        (true, false) => Some("the thread-pool rows need --features pool-rows"),
        (false, false) => Some(
            "rows for RLock, Semaphore, ReadWriteLock, Condition, Event and the thread pool need --features primitive-rows,pool-rows",
        ),
    }
}

/// Runs `work(thread_index, ops)` on `threads` threads sharing `iters`
/// operations, and returns the wall time from a common start until the last
/// one finished. Spawning is not timed.
pub(crate) fn on_threads(threads: usize, iters: u64, work: impl Fn(usize, u64) + Sync) -> Duration {
    let barrier = Barrier::new(threads + 1);
    let per_thread = iters / threads as u64;
    let extra = iters % threads as u64;
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, work) = (&barrier, &work);
                let ops = per_thread + u64::from((t as u64) < extra);
                s.spawn(move || {
                    barrier.wait();
                    work(t, ops);
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for h in handles {
            h.join().expect("a benchmark thread panicked");
        }
        start.elapsed()
    })
}

/// Unwraps a `Result` that cannot be `Err` in a correct benchmark (a release
/// of a held lock), with a message that says so.
#[track_caller]
pub(crate) fn ok<T, E: std::fmt::Debug>(r: Result<T, E>) -> T {
    r.expect("the benchmark holds what it releases")
}
