//! `Event`: Python's `threading.Event`.
//!
//! # State machine
//!
//! One `AtomicU32`:
//!
//! | bits | meaning |
//! | --- | --- |
//! | 0 (`SET`) | the flag (`is_set()`) |
//! | 1 (`SLEEPERS`) | some thread may be sleeping on the word |
//! | 2..32 | the generation: how many times `set` turned the flag on (wrapping) |
//!
//! - set: if the flag is off, turn it on, add one to the generation and
//!   clear `SLEEPERS`, in one compare-exchange (Release); wake every
//!   sleeper only if `SLEEPERS` was set. Setting a set event changes nothing.
//! - clear: turn the flag off (one `fetch_and`); the generation stays.
//! - wait: return at once if the flag is on. Otherwise remember the
//!   generation, set `SLEEPERS`, and sleep while the word is unchanged. A
//!   waiter returns `true` when the flag is on *or the generation moved*:
//!   a `set` happened since it began to wait, even if a `clear` followed
//!   before it ran again (Python's own `test_set_and_clear`).
//!
//! The generation has 30 bits: a waiter could miss a `set` only if more than
//! a thousand million `set`/`clear` pairs ran between two of its reads.

use core::fmt;
use core::marker::PhantomData;
use core::time::Duration;

use crate::backend::{self, Backend, Deadline, DefaultBackend, TimedBackend};
use crate::sync::{AtomicU32, Ordering, spin_hint};

const SET: u32 = 1;
const SLEEPERS: u32 = 2;
const GENERATION: u32 = 4;

/// A flag that threads can wait for: Python's `threading.Event()`.
///
/// Four bytes, `const`-constructible (usable in a `static`), no allocation.
/// [`set`](Event::set) wakes every waiter, with a system call only when
/// someone sleeps; a waiter woken by `set` returns `true` even if
/// [`clear`](Event::clear) follows at once.
///
/// | Python | Rust |
/// | --- | --- |
/// | `ev = threading.Event()` | `let ev = Event::new();` |
/// | `ev.set()` | `ev.set()` |
/// | `ev.clear()` | `ev.clear()` |
/// | `ev.is_set()` | `ev.is_set()` |
/// | `ev.wait()` | `ev.wait()` |
/// | `ev.wait(timeout=0.5)` | `ev.wait_timeout(Duration::from_millis(500))` |
///
/// ```
/// use core_sync::Event;
/// use std::time::Duration;
///
/// static READY: Event = Event::new();
///
/// let waiter = std::thread::spawn(|| READY.wait());  // ev.wait()
/// READY.set();                                       // ev.set()
/// waiter.join().unwrap();
/// assert!(READY.is_set());
/// READY.clear();                                     // ev.clear()
/// assert!(!READY.wait_timeout(Duration::from_millis(1)));
/// ```
pub struct Event<B = DefaultBackend> {
    state: AtomicU32,
    backend: PhantomData<fn() -> B>,
}

impl Event {
    /// A new event, not set, on the [default backend](DefaultBackend).
    #[cfg(not(loom))]
    #[inline]
    pub const fn new() -> Self {
        Self::with_backend()
    }

    /// A new event, not set, on the [default backend](DefaultBackend).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self::with_backend()
    }
}

impl<B: Backend> Event<B> {
    /// A new event, not set, waiting through the backend `B`.
    #[cfg(not(loom))]
    #[inline]
    pub const fn with_backend() -> Self {
        Event { state: AtomicU32::new(0), backend: PhantomData }
    }

    /// A new event, not set, waiting through the backend `B`.
    #[cfg(loom)]
    pub fn with_backend() -> Self {
        Event { state: AtomicU32::new(0), backend: PhantomData }
    }

    /// Whether the flag is on (`ev.is_set()`); a snapshot.
    ///
    /// `true` synchronizes with the `set` that turned it on: what that
    /// thread wrote before `set` is visible after.
    #[inline]
    pub fn is_set(&self) -> bool {
        self.state.load(Ordering::Acquire) & SET != 0
    }

    /// Turns the flag on and wakes every waiter (`ev.set()`).
    #[inline]
    pub fn set(&self) {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            // Already set: still one read-modify-write, so that this thread's
            // earlier writes are published to whoever sees the flag.
            let new = if state & SET != 0 {
                state
            } else {
                (state & !SLEEPERS).wrapping_add(GENERATION) | SET
            };
            match self.state.compare_exchange_weak(state, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => state = now,
            }
        }
        if state & SET == 0 && state & SLEEPERS != 0 {
            B::wake_all(&self.state);
        }
    }

    /// Turns the flag off (`ev.clear()`). Threads that were woken by an
    /// earlier `set` still return `true`.
    #[inline]
    pub fn clear(&self) {
        self.state.fetch_and(!SET, Ordering::Relaxed);
    }

    /// Waits until the flag is on (`ev.wait()`).
    #[inline]
    pub fn wait(&self) {
        if !self.is_set() {
            self.wait_slow(backend::wait_forever::<B>);
        }
    }

    /// Whether a `set` happened since the waiter read `seen`.
    #[inline]
    fn signalled(seen: u32, state: u32) -> bool {
        state & SET != 0 || (state ^ seen) & !(SET | SLEEPERS) != 0
    }

    /// The blocking path: `wait` sleeps while the word holds the value and
    /// returns `false` once the caller's deadline has passed. Returns whether
    /// the event was set.
    #[cold]
    fn wait_slow(&self, mut wait: impl FnMut(&AtomicU32, u32) -> bool) -> bool {
        let seen = self.state.load(Ordering::Acquire);
        if seen & SET != 0 {
            return true;
        }
        let mut state = seen;
        let mut spins = 0;
        while spins < B::SPIN_LIMIT {
            spin_hint();
            spins += 1;
            state = self.state.load(Ordering::Acquire);
            if Self::signalled(seen, state) {
                return true;
            }
        }
        loop {
            if Self::signalled(seen, state) {
                return true;
            }
            if state & SLEEPERS == 0 {
                if let Err(now) = self.state.compare_exchange_weak(
                    state,
                    state | SLEEPERS,
                    Ordering::Acquire,
                    Ordering::Acquire,
                ) {
                    state = now;
                    continue;
                }
                state |= SLEEPERS;
            }
            if !wait(&self.state, state) {
                return Self::signalled(seen, self.state.load(Ordering::Acquire));
            }
            state = self.state.load(Ordering::Acquire);
        }
    }
}

impl<B: TimedBackend> Event<B> {
    /// Waits until the flag is on, at most `timeout` (`ev.wait(timeout=t)`).
    /// Returns `true` when the event was set (also if it was cleared again
    /// before this thread ran), `false` on timeout.
    ///
    /// `Duration::ZERO` is [`is_set`](Event::is_set); `Duration::MAX` waits
    /// forever.
    #[inline]
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        if self.is_set() {
            return true;
        }
        if timeout.is_zero() {
            return false;
        }
        let deadline = Deadline::<B>::after(timeout);
        self.wait_slow(|word, value| deadline.wait(word, value))
    }
}

impl Default for Event {
    fn default() -> Self {
        Self::new()
    }
}

impl<B> fmt::Debug for Event<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("set", &(self.state.load(Ordering::Relaxed) & SET != 0))
            .finish()
    }
}
