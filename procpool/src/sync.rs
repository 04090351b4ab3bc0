//! The few waiting primitives this crate needs, on `core-sync`'s futex
//! backend: every blocking wait in the crate goes through here (or through a
//! blocking pipe read in a thread dedicated to it).
//!
//! # State machines
//!
//! [`Flag`] is one `AtomicU32`: 0 = not set, 1 = set (never cleared). A
//! waiter sleeps while the word is 0; `set` swaps in 1 and wakes everyone
//! only if the word was 0 (a waiter can only sleep on 0).
//!
//! [`OneShot`] is a [`Flag`] plus a `core_sync::Mutex<Option<T>>`: the
//! producer stores the value under the lock, then sets the flag; a consumer
//! waits for the flag, then takes the value.

use core_sync::backend::{AtomicU32, Backend, DefaultBackend, TimedBackend};
use std::sync::atomic::Ordering;
use std::time::Duration;

type B = DefaultBackend;

/// A deadline on the backend's monotonic clock, in nanoseconds;
/// `u64::MAX` never passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deadline(u64);

impl Deadline {
    /// A deadline that never passes.
    pub(crate) const NEVER: Deadline = Deadline(u64::MAX);

    /// `timeout` from now; a timeout too large to represent never passes.
    pub(crate) fn after(timeout: Duration) -> Deadline {
        match u64::try_from(timeout.as_nanos()) {
            Ok(n) if n != u64::MAX => Deadline(B::now_nanos().saturating_add(n)),
            _ => Deadline::NEVER,
        }
    }

    /// Whether the deadline has passed.
    pub(crate) fn passed(self) -> bool {
        self != Deadline::NEVER && B::now_nanos() >= self.0
    }

    /// Time left before the deadline (`None` for never).
    pub(crate) fn remaining(self) -> Option<Duration> {
        if self == Deadline::NEVER {
            return None;
        }
        Some(Duration::from_nanos(self.0.saturating_sub(B::now_nanos())))
    }

    /// Sleeps while `word` holds `expected`, until this deadline. Returns
    /// `false` once the deadline has passed.
    fn wait(self, word: &AtomicU32, expected: u32) -> bool {
        if self == Deadline::NEVER {
            B::wait(word, expected);
            return true;
        }
        if B::now_nanos() >= self.0 {
            return false;
        }
        B::wait_until(word, expected, self.0);
        true
    }
}

/// A one-way event: `set` once, wait for it with or without a deadline.
#[derive(Debug, Default)]
pub(crate) struct Flag {
    word: AtomicU32,
}

impl Flag {
    /// A flag that is not set.
    pub(crate) const fn new() -> Flag {
        Flag { word: AtomicU32::new(0) }
    }

    /// Sets the flag and wakes every waiter.
    pub(crate) fn set(&self) {
        if self.word.swap(1, Ordering::Release) == 0 {
            B::wake_all(&self.word);
        }
    }

    /// Whether the flag is set.
    pub(crate) fn is_set(&self) -> bool {
        self.word.load(Ordering::Acquire) == 1
    }

    /// Waits until the flag is set or the deadline passes; returns whether it
    /// is set.
    pub(crate) fn wait_deadline(&self, deadline: Deadline) -> bool {
        while !self.is_set() {
            if !deadline.wait(&self.word, 0) {
                return self.is_set();
            }
        }
        true
    }

    /// Waits until the flag is set.
    pub(crate) fn wait(&self) {
        self.wait_deadline(Deadline::NEVER);
    }
}

/// A slot written once by one thread and taken by another.
#[derive(Debug)]
pub(crate) struct OneShot<T> {
    value: core_sync::Mutex<Option<T>>,
    ready: Flag,
}

impl<T> OneShot<T> {
    /// An empty slot.
    pub(crate) fn new() -> OneShot<T> {
        OneShot { value: core_sync::Mutex::new(None), ready: Flag::new() }
    }

    /// Stores the value (a second `put` replaces a value not yet taken) and
    /// wakes the waiter.
    pub(crate) fn put(&self, value: T) {
        *self.value.lock() = Some(value);
        self.ready.set();
    }

    /// Waits for the value until the deadline; `None` if it did not come in
    /// time (or was already taken).
    pub(crate) fn take_deadline(&self, deadline: Deadline) -> Option<T> {
        if self.ready.wait_deadline(deadline) { self.value.lock().take() } else { None }
    }
}
