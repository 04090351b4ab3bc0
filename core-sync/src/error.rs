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
/// An `RLock`'s recursion depth would pass `u32::MAX` (Python's
/// `OverflowError: Internal lock count overflowed`). The lock is unchanged:
/// still held, at the same depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecursionOverflow;

impl fmt::Display for RecursionOverflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("internal lock count overflowed")
    }
}

impl core::error::Error for RecursionOverflow {}

/// A `Condition` was waited on or notified by a thread that does not hold
/// its lock (Python's `RuntimeError: cannot wait on un-acquired lock` and
/// `cannot notify on un-acquired lock`). Nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NotHeldError;

impl fmt::Display for NotHeldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cannot wait on or notify an un-acquired lock")
    }
}

impl core::error::Error for NotHeldError {}

/// `Queue::try_put` or `put_timeout` found the queue full (Python's
/// `queue.Full`); the item comes back in the error.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Full<T>(pub T);

impl<T> Full<T> {
    /// The item that was not put.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Full<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Full").finish_non_exhaustive()
    }
}

impl<T> fmt::Display for Full<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("queue full")
    }
}

impl<T> core::error::Error for Full<T> {}

/// `Queue::task_done` was called more times than items were put (Python's
/// `ValueError: task_done() called too many times`). Nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskDoneError;

impl fmt::Display for TaskDoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("task_done() called too many times")
    }
}

impl core::error::Error for TaskDoneError {}
