//! The calling thread's pool-worker context, as seen by a blocking wait.
//!
//! The executor fills this in on its worker threads; a future's wait asks it
//! whether the caller may run a pending task inline and tells it when the
//! caller is about to block.

use std::cell::Cell;

thread_local! {
    /// The id of the pool this thread works for (0: not a worker).
    static POOL_ID: Cell<usize> = const { Cell::new(0) };
}

/// Whether the calling thread is a worker of pool `pool_id` (never for 0).
#[inline]
pub(crate) fn may_run_inline(pool_id: usize) -> bool {
    pool_id != 0 && POOL_ID.with(Cell::get) == pool_id
}

/// Marks the calling thread as blocked until the guard is dropped.
#[inline]
pub(crate) fn blocking() -> Blocking {
    Blocking(())
}

/// The guard [`blocking`] returns.
pub(crate) struct Blocking(());
