//! The errors Python reports with exceptions, as values.

use core::fmt;

/// `release()` was called on a lock that is not held (Python's
/// `RuntimeError: release unlocked lock`), or, for an owned lock, by a thread
/// that does not own it. Nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReleaseError {
    /// The lock was not held.
    NotLocked,
    /// The lock is held, but by another thread (`RLock`, `Condition`).
    NotOwner,
    /// A bounded semaphore would rise above its initial value, or a counter
    /// would overflow.
    Overflow,
}

impl fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReleaseError::NotLocked => "release unlocked lock",
            ReleaseError::NotOwner => "cannot release un-acquired lock",
            ReleaseError::Overflow => "semaphore released too many times",
        })
    }
}

impl core::error::Error for ReleaseError {}

/// A [`Barrier`](crate::Barrier) was broken (by [`abort`](crate::Barrier::abort),
/// a timed-out waiter or a panicking action) or [`reset`](crate::Barrier::reset)
/// while this thread was waiting: Python's `threading.BrokenBarrierError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BrokenBarrierError;

impl fmt::Display for BrokenBarrierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("barrier is broken")
    }
}

impl core::error::Error for BrokenBarrierError {}
