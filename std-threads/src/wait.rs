//! Blocking on an `AtomicU32` word through `core-sync`'s futex backend, with
//! an optional absolute deadline. Every wait in the crate goes through here.

use core::time::Duration;
use core_sync::backend::{AtomicU32, Backend, Futex, TimedBackend};

/// A point on the backend's monotonic clock, in nanoseconds; `None` is
/// "never".
pub(crate) type Deadline = Option<u64>;

/// `timeout` from now; a timeout too large to represent never passes.
pub(crate) fn deadline_after(timeout: Duration) -> Deadline {
    let nanos = u64::try_from(timeout.as_nanos()).ok()?;
    Futex::now_nanos().checked_add(nanos)
}

/// Whether `deadline` has passed.
pub(crate) fn passed(deadline: Deadline) -> bool {
    deadline.is_some_and(|d| Futex::now_nanos() >= d)
}

/// Sleeps while `word` holds `expected`, until woken, spuriously, or until
/// `deadline`. Returns `false` when the deadline had already passed (nothing
/// was waited for), `true` when the caller should re-check its state.
pub(crate) fn wait(word: &AtomicU32, expected: u32, deadline: Deadline) -> bool {
    match deadline {
        None => {
            Futex::wait(word, expected);
            true
        }
        Some(d) => {
            if Futex::now_nanos() >= d {
                return false;
            }
            Futex::wait_until(word, expected, d);
            true
        }
    }
}

/// Wakes every thread sleeping on `word`.
pub(crate) fn wake_all(word: &AtomicU32) {
    Futex::wake_all(word);
}
