//! `Semaphore` and `BoundedSemaphore`: Python's `threading.Semaphore` and
//! `threading.BoundedSemaphore`.
//!
//! # State machine
//!
//! Two `AtomicU32` words:
//!
//! | word | meaning |
//! | --- | --- |
//! | `value` | `0..=MAX_VALUE` (2^31 - 1): the permits left (Python's `_value`); above `MAX_VALUE`: an *overflow in progress* (below); acquirers sleep on this word while it holds no usable permit |
//! | `sleepers` | how many acquirers have announced that they may sleep on `value` |
//!
//! - acquire: compare-exchange `value` from v to v - 1 (Acquire) when v is
//!   in `1..=MAX_VALUE` (one comparison: `v - 1 < MAX_VALUE`, wrapping).
//!   Otherwise spin a little, then increment `sleepers`, re-read `value`, and
//!   sleep while it is still unusable; on waking, decrement `sleepers` and
//!   retry.
//! - release of one permit up to `MAX_VALUE` (`release()`, and the guard of
//!   a semaphore whose maximum is `MAX_VALUE`): `fetch_add(1)` on `value`,
//!   no compare-exchange loop. An old value below `MAX_VALUE` is a success.
//!   Otherwise the count was already at its maximum: the release *undoes*
//!   its `+1` (`fetch_sub(1)`) and returns `Err`. Between the two, `value`
//!   is above `MAX_VALUE`; while it is, the count is exactly `MAX_VALUE` and
//!   every thread treats the word that way: acquirers do not take from it
//!   (they wait for the undo), releases fail (rightly: the count is at its
//!   maximum) and, if they add, undo too. So `value` always returns to
//!   `MAX_VALUE`, and a refused release has changed nothing that any other
//!   operation could count on. The one trace it can leave: a `try_acquire`
//!   that meets the overflow waits a few spins for the undo and, if the
//!   refused releaser was preempted in between, reports no permit. The undo that brings `value` back to
//!   `MAX_VALUE` wakes the acquirers that may sleep on the episode.
//! - release(n) otherwise (`release_n`, a bounded semaphore's bound):
//!   compare-exchange `value` from v to v + n, refused (an `Err`, nothing
//!   changed) when v + n would pass the maximum (`MAX_VALUE`, or a bounded
//!   semaphore's initial value); an overflow in progress always refuses.
//! - every successful release then reads `sleepers`: 0 means nobody can be
//!   asleep, so no wake call; otherwise wake `min(n, sleepers)` threads
//!   (one `wake_all` when that is everyone).
//!
//! The fetch-and-add needs the headroom above `MAX_VALUE`: with the whole
//! `u32` range as permits, a second release that lands on a wrapped-around
//! value could not tell it from a real one and would succeed wrongly. So the
//! count stops at 2^31 - 1 (Python's is unbounded; no program holds that
//! many permits).
//!
//! The increment of `sleepers` followed by a read-modify-write re-read of
//! `value` on one side, and the update of `value` followed by the read of
//! `sleepers` on the other, guarantee that either the releaser sees the
//! sleeper, or the sleeper sees the new permits and does not sleep (the
//! loom models check it). So an uncontended acquire is a load and a
//! compare-exchange, an uncontended release one fetch-and-add and a load,
//! and neither makes a system call.
//!
//! Woken threads compete with newcomers for the permits (as in Python, where
//! a new caller can take the condition's lock before a notified waiter): the
//! count guarantees that `release_n(k)` lets exactly `k` acquirers through.

use core::fmt;
use core::marker::PhantomData;
use core::time::Duration;

use crate::backend::{self, Backend, Deadline, DefaultBackend, TimedBackend};
use crate::error::ReleaseError;
use crate::sync::{AtomicU32, Ordering, spin_hint};

/// The most permits a semaphore holds (2^31 - 1); see the module docs.
const MAX_VALUE: u32 = i32::MAX as u32;

/// Whether an acquirer may take a permit from a `value` word holding `v`:
/// `1..=MAX_VALUE` (not empty, no overflow in progress), in one comparison.
#[inline]
const fn has_permit(v: u32) -> bool {
    v.wrapping_sub(1) < MAX_VALUE
}

/// `value` clamped to [`MAX_VALUE`], for the constructors.
const fn clamp(value: u32) -> u32 {
    if value > MAX_VALUE { MAX_VALUE } else { value }
}

/// A counting semaphore: Python's `threading.Semaphore(value)`.
///
/// Eight bytes, `const`-constructible, no allocation. The count goes up to
/// [`Semaphore::MAX_VALUE`] (2^31 - 1); a release past that is an `Err` that
/// changes nothing. Any thread may release, as in Python.
///
/// | Python | Rust |
/// | --- | --- |
/// | `sem = threading.Semaphore(3)` | `let sem = Semaphore::new(3);` |
/// | `sem.acquire()` | `sem.acquire()` |
/// | `sem.acquire(blocking=False)` | `sem.try_acquire()` |
/// | `sem.acquire(timeout=0.5)` | `sem.acquire_timeout(Duration::from_millis(500))` |
/// | `sem.release()` | `sem.release()?` |
/// | `sem.release(n)` | `sem.release_n(n)?` |
/// | `sem._value` | `sem.value()` |
/// | `with sem:` | `let _guard = sem.lock();` |
///
/// ```
/// use core_sync::Semaphore;
/// use std::time::Duration;
///
/// static SEM: Semaphore = Semaphore::new(2);   // threading.Semaphore(2)
///
/// SEM.acquire();
/// assert!(SEM.try_acquire());
/// assert!(!SEM.try_acquire());                 // none left
/// assert!(!SEM.acquire_timeout(Duration::from_millis(1)));
/// SEM.release_n(2).unwrap();                   // sem.release(2)
/// assert_eq!(SEM.value(), 2);
/// {
///     let _guard = SEM.lock();                 // with sem:
///     assert_eq!(SEM.value(), 1);
/// }
/// assert_eq!(SEM.value(), 2);
/// ```
pub struct Semaphore<B = DefaultBackend> {
    value: AtomicU32,
    sleepers: AtomicU32,
    backend: PhantomData<fn() -> B>,
}

impl Semaphore {
    /// The most permits a semaphore (and a bounded one) can hold:
    /// 2^31 - 1. A constructor given more starts with this many; a release
    /// past it is an `Err` that changes nothing.
    pub const MAX_VALUE: u32 = MAX_VALUE;

    /// A semaphore with `value` permits on the [default backend](DefaultBackend)
    /// (`threading.Semaphore(value)`); at most [`Semaphore::MAX_VALUE`].
    #[cfg(not(loom))]
    #[inline]
    pub const fn new(value: u32) -> Self {
        Self::with_backend(value)
    }

    /// A semaphore with `value` permits on the [default backend](DefaultBackend)
    /// (`threading.Semaphore(value)`).
    #[cfg(loom)]
    pub fn new(value: u32) -> Self {
        Self::with_backend(value)
    }
}

impl<B: Backend> Semaphore<B> {
    /// A semaphore with `value` permits (at most
    /// [`Semaphore::MAX_VALUE`]), waiting through the backend `B`.
    #[cfg(not(loom))]
    #[inline]
    pub const fn with_backend(value: u32) -> Self {
        Semaphore {
            value: AtomicU32::new(clamp(value)),
            sleepers: AtomicU32::new(0),
            backend: PhantomData,
        }
    }

    /// A semaphore with `value` permits (at most
    /// [`Semaphore::MAX_VALUE`]), waiting through the backend `B`.
    #[cfg(loom)]
    pub fn with_backend(value: u32) -> Self {
        Semaphore {
            value: AtomicU32::new(clamp(value)),
            sleepers: AtomicU32::new(0),
            backend: PhantomData,
        }
    }

    /// Takes a permit, waiting while there is none (`sem.acquire()`).
    #[inline]
    pub fn acquire(&self) {
        if !self.take() {
            self.acquire_slow(backend::wait_forever::<B>);
        }
    }

    /// Takes a permit only if one is free; returns at once either way
    /// (`sem.acquire(blocking=False)`).
    #[inline]
    pub fn try_acquire(&self) -> bool {
        self.take() || self.take_after_overflow()
    }

    /// Takes a permit while the count shows one: the uncontended path.
    #[inline]
    fn take(&self) -> bool {
        let mut value = self.value.load(Ordering::Relaxed);
        while has_permit(value) {
            match self.value.compare_exchange_weak(
                value,
                value - 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => value = now,
            }
        }
        false
    }

    /// `try_acquire` once [`take`](Self::take) found no permit: an overflow
    /// in progress (a refused release about to take back its `+1`, see the
    /// module docs) stands for a count of `MAX_VALUE`, not an empty one, so
    /// give it a few spins to end before reporting failure.
    #[cold]
    fn take_after_overflow(&self) -> bool {
        let mut spins = 0;
        while self.value.load(Ordering::Relaxed) > MAX_VALUE {
            if spins == B::SPIN_LIMIT {
                return false;
            }
            spin_hint();
            spins += 1;
        }
        self.take()
    }

    /// Gives one permit back (`sem.release()`), waking a waiter if one
    /// sleeps.
    ///
    /// # Errors
    ///
    /// [`ReleaseError::Overflow`] when the count would pass
    /// [`Semaphore::MAX_VALUE`]; nothing changes then.
    #[inline]
    pub fn release(&self) -> Result<(), ReleaseError> {
        self.release_up_to(1, MAX_VALUE)
    }

    /// Gives `n` permits back at once (`sem.release(n)`), waking up to `n`
    /// waiters: exactly `n` blocked acquirers can get through. `n = 0`
    /// changes nothing (Python raises `ValueError` there).
    ///
    /// # Errors
    ///
    /// [`ReleaseError::Overflow`] when the count would pass
    /// [`Semaphore::MAX_VALUE`]; nothing changes then.
    #[inline]
    pub fn release_n(&self, n: u32) -> Result<(), ReleaseError> {
        self.release_up_to(n, MAX_VALUE)
    }

    /// The permits left now (Python's `sem._value`); a snapshot.
    #[inline]
    pub fn value(&self) -> u32 {
        // Above `MAX_VALUE`: a refused release is taking back its `+1`.
        self.value.load(Ordering::Relaxed).min(MAX_VALUE)
    }

    /// How many threads are blocked in an acquire (past their brief spin);
    /// a snapshot, for monitoring and tests.
    #[inline]
    pub fn n_waiting(&self) -> u32 {
        self.sleepers.load(Ordering::Relaxed)
    }

    /// Takes a permit and returns a guard that gives it back when dropped,
    /// also during a panic (`with sem:`).
    #[inline]
    pub fn lock(&self) -> SemaphoreGuard<'_, B> {
        self.acquire();
        SemaphoreGuard { sem: self, max: MAX_VALUE }
    }

    /// Takes a permit if one is free and returns its guard.
    #[inline]
    pub fn try_lock(&self) -> Option<SemaphoreGuard<'_, B>> {
        self.try_acquire().then(|| SemaphoreGuard { sem: self, max: MAX_VALUE })
    }

    /// Adds `n` permits unless the count would pass `max` (at most
    /// `MAX_VALUE`), then wakes as many sleepers as can use them.
    #[inline]
    fn release_up_to(&self, n: u32, max: u32) -> Result<(), ReleaseError> {
        if n == 1 && max == MAX_VALUE {
            return self.release_one();
        }
        if n == 0 {
            return Ok(());
        }
        let mut value = self.value.load(Ordering::Relaxed);
        loop {
            // An overflow in progress (`value > MAX_VALUE`) fails here too.
            let new = match value.checked_add(n) {
                Some(new) if new <= max => new,
                _ => return Err(ReleaseError::Overflow),
            };
            // SeqCst: ordered before the read of `sleepers` below (see the
            // module docs).
            match self.value.compare_exchange_weak(value, new, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => value = now,
            }
        }
        let sleepers = self.sleepers.load(Ordering::SeqCst);
        if sleepers != 0 {
            self.wake(n, sleepers);
        }
        Ok(())
    }

    /// Adds one permit unless the count is at `MAX_VALUE`: a fetch-and-add,
    /// undone when it overflowed (see the module docs).
    #[inline]
    fn release_one(&self) -> Result<(), ReleaseError> {
        // SeqCst: ordered before the read of `sleepers` below (see the
        // module docs).
        let old = self.value.fetch_add(1, Ordering::SeqCst);
        if old >= MAX_VALUE {
            // `old` cannot be `u32::MAX`: above `MAX_VALUE` the word counts
            // the releases that are undoing their `+1`, one per thread.
            self.undo_overflow();
            return Err(ReleaseError::Overflow);
        }
        let sleepers = self.sleepers.load(Ordering::SeqCst);
        if sleepers != 0 {
            self.wake(1, sleepers);
        }
        Ok(())
    }

    /// Takes back the `+1` of a release that found the count at its maximum;
    /// the last one out of an overflow wakes the acquirers that may sleep on
    /// it.
    #[cold]
    fn undo_overflow(&self) {
        // SeqCst: ordered before the read of `sleepers`, as in a release.
        if self.value.fetch_sub(1, Ordering::SeqCst) == MAX_VALUE + 1
            && self.sleepers.load(Ordering::SeqCst) != 0
        {
            B::wake_all(&self.value);
        }
    }

    #[cold]
    fn wake(&self, n: u32, sleepers: u32) {
        if n >= sleepers {
            B::wake_all(&self.value);
        } else {
            for _ in 0..n {
                B::wake_one(&self.value);
            }
        }
    }

    /// The contended path. `wait` sleeps while the word holds the value and
    /// returns `false` once the caller's deadline has passed.
    #[cold]
    fn acquire_slow(&self, mut wait: impl FnMut(&AtomicU32, u32) -> bool) -> bool {
        // A permit is often given back within a few hundred cycles: spin
        // before paying for a sleep and a wake.
        let mut spins = 0;
        while spins < B::SPIN_LIMIT {
            if self.take() {
                return true;
            }
            spin_hint();
            spins += 1;
        }
        loop {
            if self.take() {
                return true;
            }
            // Announce the sleep, then re-read the count: a releaser either
            // sees us or we see its permits. The re-read is a read-modify-
            // write (adding 0), which reads the latest count: if it comes
            // before the releaser's update in the count's modification
            // order, that update (an RMW with Acquire) reads from it and so
            // sees our announcement. This holds under acquire/release alone,
            // so loom (which models SeqCst as AcqRel) can prove it, and it
            // costs nothing on the uncontended path.
            // An overflow in progress is waited out like an empty count: its
            // last undo wakes the sleepers.
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            let value = self.value.fetch_add(0, Ordering::SeqCst);
            let go_on = if has_permit(value) { true } else { wait(&self.value, value) };
            self.sleepers.fetch_sub(1, Ordering::Relaxed);
            if !go_on {
                // The deadline passed; a permit that arrived meanwhile is
                // still ours to take.
                return self.take();
            }
        }
    }
}

impl<B: TimedBackend> Semaphore<B> {
    /// Takes a permit, waiting at most `timeout` (`sem.acquire(timeout=t)`).
    /// Returns whether one was taken.
    ///
    /// `Duration::ZERO` is [`try_acquire`](Semaphore::try_acquire);
    /// `Duration::MAX` waits forever.
    #[inline]
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        if self.take() {
            return true;
        }
        if timeout.is_zero() {
            return self.take_after_overflow();
        }
        let deadline = Deadline::<B>::after(timeout);
        self.acquire_slow(|word, value| deadline.wait(word, value))
    }

    /// Takes a permit, waiting at most `timeout`, and returns its guard.
    #[inline]
    pub fn lock_timeout(&self, timeout: Duration) -> Option<SemaphoreGuard<'_, B>> {
        self.acquire_timeout(timeout).then(|| SemaphoreGuard { sem: self, max: MAX_VALUE })
    }
}

impl Default for Semaphore {
    /// `threading.Semaphore()`: one permit.
    fn default() -> Self {
        Self::new(1)
    }
}

impl<B> fmt::Debug for Semaphore<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("value", &self.value.load(Ordering::Relaxed))
            .field("n_waiting", &self.sleepers.load(Ordering::Relaxed))
            .finish()
    }
}

/// A semaphore that refuses to rise above its initial value:
/// Python's `threading.BoundedSemaphore(value)`.
///
/// Twelve bytes (a [`Semaphore`] and its bound), `const`-constructible, no
/// allocation. The bound is at most [`Semaphore::MAX_VALUE`] (2^31 - 1); a
/// larger initial value is taken as that. A release that would take the count past the initial value is
/// an `Err` (Python's `ValueError: Semaphore released too many times`) and
/// changes nothing.
///
/// | Python | Rust |
/// | --- | --- |
/// | `sem = threading.BoundedSemaphore(2)` | `let sem = BoundedSemaphore::new(2);` |
/// | `sem.acquire()` / `acquire(blocking=False)` / `acquire(timeout=t)` | `acquire()` / `try_acquire()` / `acquire_timeout(t)` |
/// | `sem.release()` (`ValueError` past the bound) | `sem.release()` (`Err(ReleaseError::Overflow)` past the bound) |
/// | `sem.release(n)` | `sem.release_n(n)` |
/// | `with sem:` | `let _guard = sem.lock();` |
///
/// ```
/// use core_sync::{BoundedSemaphore, ReleaseError};
///
/// let sem = BoundedSemaphore::new(1);
/// assert_eq!(sem.release(), Err(ReleaseError::Overflow)); // ValueError
/// assert_eq!(sem.value(), 1);                              // unchanged
/// sem.acquire();
/// assert_eq!(sem.release(), Ok(()));
/// assert_eq!(sem.release_n(2), Err(ReleaseError::Overflow));
/// ```
pub struct BoundedSemaphore<B = DefaultBackend> {
    sem: Semaphore<B>,
    bound: u32,
}

impl BoundedSemaphore {
    /// A bounded semaphore with `value` permits, which is also its maximum,
    /// on the [default backend](DefaultBackend)
    /// (`threading.BoundedSemaphore(value)`).
    #[cfg(not(loom))]
    #[inline]
    pub const fn new(value: u32) -> Self {
        Self::with_backend(value)
    }

    /// A bounded semaphore with `value` permits, which is also its maximum,
    /// on the [default backend](DefaultBackend)
    /// (`threading.BoundedSemaphore(value)`).
    #[cfg(loom)]
    pub fn new(value: u32) -> Self {
        Self::with_backend(value)
    }
}

impl<B: Backend> BoundedSemaphore<B> {
    /// A bounded semaphore with `value` permits, which is also its maximum,
    /// waiting through the backend `B`.
    #[cfg(not(loom))]
    #[inline]
    pub const fn with_backend(value: u32) -> Self {
        BoundedSemaphore { sem: Semaphore::with_backend(value), bound: clamp(value) }
    }

    /// A bounded semaphore with `value` permits, which is also its maximum,
    /// waiting through the backend `B`.
    #[cfg(loom)]
    pub fn with_backend(value: u32) -> Self {
        BoundedSemaphore { sem: Semaphore::with_backend(value), bound: clamp(value) }
    }

    /// Takes a permit, waiting while there is none (`sem.acquire()`).
    #[inline]
    pub fn acquire(&self) {
        self.sem.acquire();
    }

    /// Takes a permit only if one is free; returns at once either way
    /// (`sem.acquire(blocking=False)`).
    #[inline]
    pub fn try_acquire(&self) -> bool {
        self.sem.try_acquire()
    }

    /// Gives one permit back (`sem.release()`), waking a waiter if one
    /// sleeps.
    ///
    /// # Errors
    ///
    /// [`ReleaseError::Overflow`] when the count would pass the initial
    /// value (Python's `ValueError`); nothing changes then.
    #[inline]
    pub fn release(&self) -> Result<(), ReleaseError> {
        self.sem.release_up_to(1, self.bound)
    }

    /// Gives `n` permits back at once (`sem.release(n)`), waking up to `n`
    /// waiters. `n = 0` changes nothing.
    ///
    /// # Errors
    ///
    /// [`ReleaseError::Overflow`] when the count would pass the initial
    /// value; nothing changes then (not even part of the `n`).
    #[inline]
    pub fn release_n(&self, n: u32) -> Result<(), ReleaseError> {
        self.sem.release_up_to(n, self.bound)
    }

    /// The permits left now; a snapshot.
    #[inline]
    pub fn value(&self) -> u32 {
        self.sem.value()
    }

    /// The initial value, which the count may never pass.
    #[inline]
    pub fn bound(&self) -> u32 {
        self.bound
    }

    /// How many threads are blocked in an acquire (past their brief spin);
    /// a snapshot.
    #[inline]
    pub fn n_waiting(&self) -> u32 {
        self.sem.n_waiting()
    }

    /// Takes a permit and returns a guard that gives it back when dropped
    /// (`with sem:`).
    #[inline]
    pub fn lock(&self) -> SemaphoreGuard<'_, B> {
        self.sem.acquire();
        SemaphoreGuard { sem: &self.sem, max: self.bound }
    }

    /// Takes a permit if one is free and returns its guard.
    #[inline]
    pub fn try_lock(&self) -> Option<SemaphoreGuard<'_, B>> {
        self.sem.try_acquire().then(|| SemaphoreGuard { sem: &self.sem, max: self.bound })
    }
}

impl<B: TimedBackend> BoundedSemaphore<B> {
    /// Takes a permit, waiting at most `timeout` (`sem.acquire(timeout=t)`).
    /// Returns whether one was taken.
    #[inline]
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.sem.acquire_timeout(timeout)
    }

    /// Takes a permit, waiting at most `timeout`, and returns its guard.
    #[inline]
    pub fn lock_timeout(&self, timeout: Duration) -> Option<SemaphoreGuard<'_, B>> {
        self.sem
            .acquire_timeout(timeout)
            .then(|| SemaphoreGuard { sem: &self.sem, max: self.bound })
    }
}

impl Default for BoundedSemaphore {
    /// `threading.BoundedSemaphore()`: one permit, at most one.
    fn default() -> Self {
        Self::new(1)
    }
}

impl<B> fmt::Debug for BoundedSemaphore<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedSemaphore")
            .field("value", &self.sem.value.load(Ordering::Relaxed))
            .field("bound", &self.bound)
            .field("n_waiting", &self.sem.sleepers.load(Ordering::Relaxed))
            .finish()
    }
}

/// Holds one permit of a [`Semaphore`] or [`BoundedSemaphore`] and gives it
/// back when dropped (Python's `with sem:`).
#[must_use = "the permit is given back as soon as the guard is dropped"]
pub struct SemaphoreGuard<'a, B: Backend = DefaultBackend> {
    sem: &'a Semaphore<B>,
    max: u32,
}

impl<B: Backend> Drop for SemaphoreGuard<'_, B> {
    #[inline]
    fn drop(&mut self) {
        // Only a stray extra release by someone else can make this fail
        // (the count is already at its maximum); there is nothing to undo.
        let _ = self.sem.release_up_to(1, self.max);
    }
}

impl<B: Backend> fmt::Debug for SemaphoreGuard<'_, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreGuard").finish_non_exhaustive()
    }
}
