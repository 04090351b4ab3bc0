//! How a contended lock waits before it sleeps: exponential backoff between
//! rare re-reads of its word, then a few yields.
//!
//! A thread that holds a lock with a short critical section releases it and,
//! in a loop, takes it again within a few nanoseconds; every re-read by a
//! waiter on another processor pulls the cache line away from that holder,
//! which then waits for the line to come back before it can release. So a
//! waiter re-reads rarely: first after [`FIRST_BACKOFF`] spin hints, then
//! after twice as many each time, up to [`MAX_BACKOFF`], within
//! [`SPIN_BUDGET`] times the backend's `SPIN_LIMIT` hints. Polling often
//! makes the processors fight over the line and pass the lock back and
//! forth at cache-miss speed; polling rarely lets the running holder go on
//! at uncontended speed. Measured with `cargo xtask bench`, rows
//! `lock/contended-2` and `-8`, on 2 processors: `parking_lot`'s schedule
//! (re-reads after 2, 4 and 8 hints, then yields) matched `parking_lot`'s
//! time; this one, first re-read after 32 hints, gave 0.56x and 0.84x of it.
//!
//! The price is hand-over latency: a waiter may notice a freed lock up to
//! one step late (at most `MAX_BACKOFF` hints, about 2 µs where a hint takes
//! 9 ns), and a holder that takes the lock again in the meantime keeps it.
//! The lock favours throughput over turn-taking, as Python's `threading.Lock` does
//! (it promises no order among waiters either).
//!
//! A lock still held after the spinning may belong to a preempted thread
//! (more threads than processors): the waiter then yields a few times, as
//! `parking_lot`'s `SpinWait` does, and lets that holder run before paying
//! for a sleep and a wake.

use crate::backend::Backend;
use crate::sync::spin_hint;

/// Spin hints before the first re-read.
pub(crate) const FIRST_BACKOFF: u32 = 32;
/// Spin hints before the first re-read of a `ReadWriteLock`'s word. Its
/// waiters wait for a set of holders to leave (every reader out, for a
/// writer), and while they wait, readers keep changing the word with a
/// read-modify-write on every acquire and release, each of which a re-read
/// delays: polling less often pays off more than for a `Lock` (bench row
/// `rwlock/read-mostly-2` on 2 processors: 1.24x std's time with the
/// first re-read after 32 hints, 0.86x after 128).
pub(crate) const RW_FIRST_BACKOFF: u32 = 128;
/// The most spin hints between two re-reads.
pub(crate) const MAX_BACKOFF: u32 = 256;
/// Spin hints spent in all, per unit of the backend's `SPIN_LIMIT` (1 200
/// for the futex backend's 100: about ten re-reads). Under Miri, where
/// every spin hint is a thread switch of the interpreter, one unit: the
/// path is still taken, without spending the tests' time on it.
pub(crate) const SPIN_BUDGET: u32 = if cfg!(miri) { 1 } else { 12 };
/// Yields after the spinning, before the caller sleeps.
pub(crate) const SPIN_YIELDS: u32 = 6;

/// One waiter's progress through the spinning and the yields.
pub(crate) struct Backoff {
    spent: u32,
    step: u32,
    yields: u32,
}

impl Backoff {
    /// A waiter that has not waited yet.
    #[inline]
    pub(crate) const fn new() -> Self {
        Backoff { spent: 0, step: FIRST_BACKOFF, yields: 0 }
    }

    /// A waiter whose first re-read comes after `first` spin hints.
    #[inline]
    pub(crate) const fn starting_at(first: u32) -> Self {
        Backoff { spent: 0, step: first, yields: 0 }
    }

    /// Waits one step (a run of spin hints, or a yield) and returns `true`,
    /// after which the caller re-reads its word; or returns `false` at once
    /// when the budget is spent and the caller should sleep. A backend with
    /// `SPIN_LIMIT == 0` never spins.
    #[inline]
    pub(crate) fn wait<B: Backend>(&mut self) -> bool {
        let budget = B::SPIN_LIMIT.saturating_mul(SPIN_BUDGET);
        if budget == 0 {
            return false;
        }
        if self.spent < budget {
            for _ in 0..self.step {
                spin_hint();
            }
            self.spent = self.spent.saturating_add(self.step);
            self.step = (self.step * 2).min(MAX_BACKOFF);
            true
        } else if self.yields < SPIN_YIELDS {
            B::yield_now();
            self.yields += 1;
            true
        } else {
            false
        }
    }
}
