//! The calling thread's pool-worker context, as seen by a future's wait.

use crate::registry::WorkerThread;

/// Whether the calling thread is a worker of pool `pool_id` (never for 0),
/// and so may run a still-pending task of that pool inline while it waits
/// for it.
#[inline]
pub(crate) fn may_run_inline(pool_id: usize) -> bool {
    pool_id != 0 && WorkerThread::current(|wt| wt.is_some_and(|wt| wt.registry.id == pool_id))
}
