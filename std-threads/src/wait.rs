//! Blocking on an `AtomicU32` word through `core-sync`'s futex backend, with
//! an optional absolute deadline (`core-sync`'s `Deadline`). Every wait in
//! the crate goes through here.

use core_sync::backend::{AtomicU32, Backend, Futex};

/// A point on the futex backend's monotonic clock, or never.
pub(crate) type Deadline = core_sync::backend::Deadline<Futex>;

/// Sleeps while `word` holds `expected`, until woken, spuriously, or until
/// `deadline`. Returns `false` when the deadline had already passed (nothing
/// was waited for), `true` when the caller should re-check its state.
pub(crate) fn wait(word: &AtomicU32, expected: u32, deadline: Deadline) -> bool {
    deadline.wait(word, expected)
}

/// Wakes every thread sleeping on `word`.
pub(crate) fn wake_all(word: &AtomicU32) {
    Futex::wake_all(word);
}
