//! `Barrier`: Python's `threading.Barrier`.
//!
//! # State machine
//!
//! One `AtomicU32`, the same states as Python's own implementation (which keeps
//! them under a condition variable's lock):
//!
//! | bits | meaning |
//! | --- | --- |
//! | 0..28 (`COUNT`) | the threads inside `wait` for the current cycle |
//! | 28..30 (`PHASE`) | `FILLING` (threads arrive), `DRAINING` (the cycle was released; its waiters are leaving), `RESETTING` (`reset` ran; its waiters are leaving with an error) |
//! | 30 (`BROKEN`) | broken: waiters of a filling cycle and every newcomer get [`BrokenBarrierError`] |
//! | 31 (`SLEEPERS`) | some thread may be sleeping on the word |
//!
//! - arrive: while the phase is `DRAINING` or `RESETTING`, or the cycle is
//!   full (its action is running), sleep: the next cycle opens when the last
//!   thread of this one has left. If `BROKEN`, fail at once. Otherwise add
//!   one to `COUNT`; the old count is the caller's index.
//! - the last arrival (`COUNT` reaches `parties`) runs the action, then
//!   moves to `DRAINING` with `COUNT = parties - 1` (itself already gone)
//!   and wakes the sleepers.
//! - a waiter leaves `Ok` on `DRAINING`, with the error on `RESETTING` or
//!   `BROKEN`, and subtracts one from `COUNT`; the last one to leave a
//!   `DRAINING` or `RESETTING` cycle moves back to `FILLING` (keeping
//!   `BROKEN`) and wakes the newcomers waiting for it.
//! - a timeout, `abort`, or a panicking action set `BROKEN`; `reset` turns a
//!   cycle with waiters into `RESETTING` and an empty one into a fresh
//!   `FILLING`, clearing `BROKEN` either way.
//!
//! Because a cycle cannot give way to the next until every waiter of it has
//! left, a waiter's phase is always its own cycle's: there is no generation
//! number that could wrap, however many threads share the barrier.

use core::fmt;
use core::marker::PhantomData;
use core::time::Duration;

use crate::backend::{self, Backend, Deadline, DefaultBackend, TimedBackend};
use crate::error::BrokenBarrierError;
use crate::sync::{AtomicU32, Ordering, spin_hint};

const COUNT: u32 = (1 << 28) - 1;
const PHASE: u32 = 3 << 28;
const FILLING: u32 = 0;
const DRAINING: u32 = 1 << 28;
const RESETTING: u32 = 2 << 28;
const BROKEN: u32 = 1 << 30;
const SLEEPERS: u32 = 1 << 31;

/// The most parties a barrier can have.
const MAX_PARTIES: usize = COUNT as usize;

/// The action a [`Barrier`] runs once per cycle: a function or a `'static`
/// closure, so that no allocation is needed.
type Action = &'static (dyn Fn() + Sync);

/// A rendezvous for a fixed number of threads: Python's
/// `threading.Barrier(parties, action)`.
///
/// Each of `parties` threads calls [`wait`](Barrier::wait); all of them block
/// until the last one arrives, then all are released and the barrier is
/// ready for the next cycle. Each waiter of a cycle gets a distinct index in
/// `0..parties` (the order of arrival). An optional action runs once per
/// cycle, in the last thread to arrive, before any waiter is released.
///
/// A barrier breaks when a [`wait_timeout`](Barrier::wait_timeout) times out,
/// when [`abort`](Barrier::abort) is called, or when the action panics: every
/// waiter and every later `wait` then gets [`BrokenBarrierError`] until
/// [`reset`](Barrier::reset). No allocation; 24 bytes on 64-bit targets (the
/// state word, the party count and the action).
///
/// | Python | Rust |
/// | --- | --- |
/// | `b = threading.Barrier(3)` | `let b = Barrier::new(3);` |
/// | `threading.Barrier(3, action=f)` | `Barrier::with_action(3, &f)` |
/// | `i = b.wait()` | `let i = b.wait()?;` |
/// | `b.wait(timeout=0.5)` | `b.wait_timeout(Duration::from_millis(500))?` |
/// | `threading.BrokenBarrierError` | [`BrokenBarrierError`] |
/// | `b.reset()` / `b.abort()` | `b.reset()` / `b.abort()` |
/// | `b.parties` / `b.n_waiting` / `b.broken` | `b.parties()` / `b.n_waiting()` / `b.broken()` |
///
/// ```
/// use core_sync::Barrier;
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// static CYCLES: AtomicUsize = AtomicUsize::new(0);
/// fn tick() {
///     CYCLES.fetch_add(1, Ordering::Relaxed);
/// }
/// static BARRIER: Barrier = Barrier::with_action(3, &tick);
///
/// let workers: Vec<_> = (0..3)
///     .map(|_| std::thread::spawn(|| BARRIER.wait().unwrap()))
///     .collect();
/// let mut indices: Vec<usize> = workers.into_iter().map(|w| w.join().unwrap()).collect();
/// indices.sort();
/// assert_eq!(indices, [0, 1, 2]);
/// assert_eq!(CYCLES.load(Ordering::Relaxed), 1);
///
/// BARRIER.abort();
/// assert!(BARRIER.wait().is_err());   // BrokenBarrierError
/// BARRIER.reset();
/// assert!(!BARRIER.broken());
/// ```
///
/// # Differences from Python
///
/// - Python raises `ValueError` for fewer than one party; here, as in
///   `std::sync::Barrier`, `new(0)` makes a barrier of one party. More than
///   [`Barrier::MAX_PARTIES`] are capped to it.
/// - A panicking action breaks the barrier and the panic goes on in the
///   thread that ran it (Python re-raises the action's exception there);
///   the other waiters get [`BrokenBarrierError`]. This needs no `std`: a
///   guard breaks the barrier while the panic unwinds. Under `panic = "abort"`
///   there is nothing left to wake.
/// - An `abort` that lands after a cycle was released but before all its
///   waiters ran again does not take that release back: they return `Ok`,
///   and only later calls see the barrier broken (in Python the slow ones may
///   raise).
pub struct Barrier<B = DefaultBackend> {
    state: AtomicU32,
    parties: u32,
    action: Option<Action>,
    backend: PhantomData<fn() -> B>,
}

/// `parties` as stored: at least 1, at most `MAX_PARTIES`.
const fn clamp_parties(parties: usize) -> u32 {
    if parties == 0 {
        1
    } else if parties > MAX_PARTIES {
        COUNT
    } else {
        parties as u32
    }
}

impl Barrier {
    /// The most parties a barrier can have: 268 435 455 (2^28 - 1); more are
    /// capped to it.
    pub const MAX_PARTIES: usize = MAX_PARTIES;

    /// A barrier for `parties` threads on the [default backend](DefaultBackend)
    /// (`threading.Barrier(parties)`).
    #[cfg(not(loom))]
    #[inline]
    pub const fn new(parties: usize) -> Self {
        Self::with_backend(parties, None)
    }

    /// A barrier for `parties` threads on the [default backend](DefaultBackend)
    /// (`threading.Barrier(parties)`).
    #[cfg(loom)]
    pub fn new(parties: usize) -> Self {
        Self::with_backend(parties, None)
    }

    /// A barrier for `parties` threads whose last arrival of each cycle runs
    /// `action` before anyone is released (`threading.Barrier(parties,
    /// action)`).
    ///
    /// No allocation is needed: a function item works as `&f`, a closure
    /// that captures nothing as `&|| ...`, a function pointer kept in a
    /// `static F: fn()` as `&F`. A capturing closure needs a `'static` home
    /// (a `static`, or `Box::leak` where there is a heap).
    #[cfg(not(loom))]
    #[inline]
    pub const fn with_action(parties: usize, action: &'static (dyn Fn() + Sync)) -> Self {
        Self::with_backend(parties, Some(action))
    }

    /// A barrier for `parties` threads whose last arrival of each cycle runs
    /// `action` before anyone is released (`threading.Barrier(parties,
    /// action)`).
    #[cfg(loom)]
    pub fn with_action(parties: usize, action: &'static (dyn Fn() + Sync)) -> Self {
        Self::with_backend(parties, Some(action))
    }
}

impl<B: Backend> Barrier<B> {
    /// A barrier for `parties` threads, with an optional action, waiting
    /// through the backend `B`.
    #[cfg(not(loom))]
    #[inline]
    pub const fn with_backend(parties: usize, action: Option<&'static (dyn Fn() + Sync)>) -> Self {
        Barrier {
            state: AtomicU32::new(FILLING),
            parties: clamp_parties(parties),
            action,
            backend: PhantomData,
        }
    }

    /// A barrier for `parties` threads, with an optional action, waiting
    /// through the backend `B`.
    #[cfg(loom)]
    pub fn with_backend(parties: usize, action: Option<&'static (dyn Fn() + Sync)>) -> Self {
        Barrier {
            state: AtomicU32::new(FILLING),
            parties: clamp_parties(parties),
            action,
            backend: PhantomData,
        }
    }

    /// Waits until `parties` threads have called `wait` (`barrier.wait()`).
    /// Returns this thread's index in the cycle, `0..parties`, in order of
    /// arrival.
    ///
    /// # Errors
    ///
    /// [`BrokenBarrierError`] when the barrier is broken, or breaks or is
    /// reset while this thread waits.
    ///
    /// # Panics
    ///
    /// Only by passing on a panic of the action, in the thread that ran it
    /// (the barrier is broken then).
    #[inline]
    pub fn wait(&self) -> Result<usize, BrokenBarrierError> {
        self.wait_inner(backend::wait_forever::<B>)
    }

    /// The number of threads needed to trip the barrier (`barrier.parties`).
    #[inline]
    pub fn parties(&self) -> usize {
        self.parties as usize
    }

    /// How many threads wait for the current cycle (`barrier.n_waiting`); a
    /// snapshot. 0 while the barrier is broken, draining or resetting.
    #[inline]
    pub fn n_waiting(&self) -> usize {
        let state = self.state.load(Ordering::Relaxed);
        if state & (PHASE | BROKEN) == FILLING { (state & COUNT) as usize } else { 0 }
    }

    /// Whether the barrier is broken (`barrier.broken`).
    #[inline]
    pub fn broken(&self) -> bool {
        self.state.load(Ordering::Relaxed) & BROKEN != 0
    }

    /// Breaks the barrier (`barrier.abort()`): every waiter and every later
    /// `wait` gets [`BrokenBarrierError`] until [`reset`](Barrier::reset).
    pub fn abort(&self) {
        self.update(|state| Some((state | BROKEN) & !SLEEPERS));
    }

    /// Returns the barrier to its initial state (`barrier.reset()`). Threads
    /// waiting now get [`BrokenBarrierError`]; newcomers wait until they have
    /// left, then start a fresh cycle. Also repairs a broken barrier.
    pub fn reset(&self) {
        self.update(|state| {
            let count = state & COUNT;
            Some(if count == 0 {
                FILLING
            } else if state & PHASE == FILLING {
                // Wake the waiters of this cycle (broken or not) with the
                // error; the last to leave opens the next cycle.
                RESETTING | count
            } else {
                // Draining (its waiters were released and keep that) or
                // already resetting: only repair a pending break.
                state & !BROKEN
            })
        });
    }

    /// Applies `f` to the state in one compare-exchange loop (`None`: leave
    /// it as it is), and wakes every sleeper when the new state clears a
    /// `SLEEPERS` bit that the old one had. Returns the old state.
    #[inline]
    fn update(&self, mut f: impl FnMut(u32) -> Option<u32>) -> u32 {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            let Some(new) = f(state) else { return state };
            match self.state.compare_exchange_weak(state, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    if state & SLEEPERS != 0 && new & SLEEPERS == 0 {
                        B::wake_all(&self.state);
                    }
                    return state;
                }
                Err(now) => state = now,
            }
        }
    }

    /// Sets `SLEEPERS` (if not yet) and sleeps while the word still holds
    /// `state`. Returns `wait`'s verdict (`false`: the deadline passed); the
    /// caller re-reads the state either way.
    #[inline]
    fn sleep(&self, state: u32, wait: &mut impl FnMut(&AtomicU32, u32) -> bool) -> bool {
        let marked = state | SLEEPERS;
        if state & SLEEPERS == 0
            && self
                .state
                .compare_exchange(state, marked, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return true;
        }
        wait(&self.state, marked)
    }

    /// Leaves the current cycle: one thread fewer inside; the last one out of
    /// a draining or resetting cycle opens the next and wakes the newcomers.
    /// `broken` also breaks the barrier and wakes everyone to see it.
    fn leave(&self, broken: bool) {
        self.update(|state| {
            let mut new = state - 1;
            if broken {
                new = (new | BROKEN) & !SLEEPERS;
            }
            if new & COUNT == 0 && new & PHASE != FILLING {
                new &= !(PHASE | SLEEPERS);
            }
            Some(new)
        });
    }

    fn wait_inner(
        &self,
        mut wait: impl FnMut(&AtomicU32, u32) -> bool,
    ) -> Result<usize, BrokenBarrierError> {
        // Arrive.
        let mut state = self.state.load(Ordering::Acquire);
        let index = loop {
            if state & BROKEN != 0 {
                return Err(BrokenBarrierError);
            }
            let count = state & COUNT;
            if state & PHASE != FILLING || count >= self.parties {
                // The previous cycle is still leaving, or its action runs:
                // wait for the next cycle to open (without a deadline, as
                // Python's `_enter`).
                self.sleep(state, &mut backend::wait_forever::<B>);
                state = self.state.load(Ordering::Acquire);
                continue;
            }
            match self.state.compare_exchange_weak(
                state,
                state + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break count,
                Err(now) => state = now,
            }
        };
        if index + 1 == self.parties {
            return self.trip(index);
        }
        // Wait for the cycle to end.
        let mut spins = 0;
        let mut expired = false;
        loop {
            state = self.state.load(Ordering::Acquire);
            match state & PHASE {
                DRAINING => {
                    self.leave(false);
                    return Ok(index as usize);
                }
                RESETTING => {
                    self.leave(false);
                    return Err(BrokenBarrierError);
                }
                _ if state & BROKEN != 0 => {
                    self.leave(false);
                    return Err(BrokenBarrierError);
                }
                _ => {}
            }
            if spins < B::SPIN_LIMIT {
                spins += 1;
                spin_hint();
                continue;
            }
            let in_time = if expired {
                self.sleep(state, &mut backend::wait_forever::<B>)
            } else {
                self.sleep(state, &mut wait)
            };
            if !in_time {
                if self.time_out() {
                    return Err(BrokenBarrierError);
                }
                // The cycle is full (its action runs) or has moved on: what
                // is left is not bounded by the timeout, as in Python.
                expired = true;
            }
        }
    }

    /// The deadline passed: break the barrier and leave, if the cycle is
    /// still filling. Returns whether it did. A full cycle, whose action
    /// runs, is not broken by a timeout, as in Python (where a waiter cannot
    /// see its timeout before the action has finished).
    #[cold]
    fn time_out(&self) -> bool {
        let parties = self.parties;
        let filling = |state: u32| state & (PHASE | BROKEN) == FILLING && state & COUNT < parties;
        let old = self.update(|state| filling(state).then(|| ((state - 1) | BROKEN) & !SLEEPERS));
        filling(old)
    }

    /// The last arrival: run the action, then release the cycle.
    fn trip(&self, index: u32) -> Result<usize, BrokenBarrierError> {
        if let Some(action) = self.action {
            // Breaks the barrier if the action unwinds.
            let guard = BreakOnUnwind { barrier: self };
            action();
            core::mem::forget(guard);
        }
        let parties = self.parties;
        let released = if parties == 1 { FILLING } else { DRAINING | (parties - 1) };
        // Aborted or reset while the action ran: the cycle is not released.
        let old = self.update(|state| (state & (PHASE | BROKEN) == FILLING).then_some(released));
        if old & (PHASE | BROKEN) != FILLING {
            self.leave(false);
            return Err(BrokenBarrierError);
        }
        Ok(index as usize)
    }
}

/// Breaks the barrier (and leaves it) if the action panics.
struct BreakOnUnwind<'a, B: Backend> {
    barrier: &'a Barrier<B>,
}

impl<B: Backend> Drop for BreakOnUnwind<'_, B> {
    fn drop(&mut self) {
        self.barrier.leave(true);
    }
}

impl<B: TimedBackend> Barrier<B> {
    /// Waits as [`wait`](Barrier::wait), at most `timeout` once this thread
    /// has joined the cycle (`barrier.wait(timeout=t)`). A timeout breaks
    /// the barrier, as in Python: the others get [`BrokenBarrierError`]
    /// too.
    ///
    /// `Duration::MAX` waits forever.
    ///
    /// # Errors
    ///
    /// [`BrokenBarrierError`] on timeout, or when the barrier is broken, or
    /// breaks or is reset while this thread waits.
    #[inline]
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize, BrokenBarrierError> {
        let deadline = Deadline::<B>::after(timeout);
        self.wait_inner(|word, value| deadline.wait(word, value))
    }
}

impl<B> fmt::Debug for Barrier<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.load(Ordering::Relaxed);
        f.debug_struct("Barrier")
            .field("parties", &self.parties)
            .field("count", &(state & COUNT))
            .field("broken", &(state & BROKEN != 0))
            .finish_non_exhaustive()
    }
}
