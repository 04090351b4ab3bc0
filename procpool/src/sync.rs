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

use core_sync::backend::{AtomicU32, Backend, DefaultBackend};
use std::sync::atomic::Ordering;

type B = DefaultBackend;

/// A deadline on the futex backend's monotonic clock (`core-sync`'s).
pub(crate) type Deadline = core_sync::backend::Deadline<B>;

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
