//! `Lock`: Python's `threading.Lock`.
//!
//! # State machine
//!
//! One `AtomicU32`:
//!
//! | value | meaning |
//! | --- | --- |
//! | 0 | unlocked |
//! | 1 | locked, nobody sleeping |
//! | 2 | locked, and some thread may be sleeping in the backend |
//!
//! - acquire: compare-exchange 0 -> 1 (Acquire). On failure, spin a little
//!   while the value is 1 (a short critical section may end; re-reading
//!   rarely, with exponential backoff, and taking it 0 -> 1 when it comes
//!   free), then swap in 2 and sleep while it stays 2; a swap that returns 0
//!   took the lock. A thread woken from that sleep spins again, but takes the
//!   lock 0 -> 2, conservatively, since others may still sleep.
//! - release: swap in 0 (Release). The old value says what to do: 0 means
//!   the lock was not held (an error, and the swap changed nothing); 2 means a
//!   sleeper may exist, so wake one. An uncontended acquire and release is
//!   one compare-exchange and one swap, no system call.
//!
//! A lock has no owner: any thread may release it, as in Python.

use core::fmt;
use core::marker::PhantomData;
use core::time::Duration;

use crate::backend::{self, Backend, Deadline, DefaultBackend, TimedBackend};
use crate::error::ReleaseError;
use crate::spin::Backoff;
use crate::sync::{AtomicU32, Ordering};

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
const CONTENDED: u32 = 2;

/// A mutual-exclusion lock: Python's `threading.Lock()`.
///
/// Four bytes, `const`-constructible (usable in a `static`), no allocation.
/// The lock has no owner: it may be released by any thread, which is what
/// Python allows and what makes it usable as a binary signal. For data
/// protected by a lock, use [`Mutex<T>`](crate::Mutex), built on this type.
///
/// | Python | Rust |
/// | --- | --- |
/// | `lock = threading.Lock()` | `let lock = Lock::new();` |
/// | `lock.acquire()` | `lock.acquire()` |
/// | `lock.acquire(blocking=False)` | `lock.try_acquire()` |
/// | `lock.acquire(timeout=0.5)` | `lock.acquire_timeout(Duration::from_millis(500))` |
/// | `lock.release()` | `lock.release()?` |
/// | `lock.locked()` | `lock.locked()` |
/// | `with lock:` | `let _guard = lock.lock();` |
///
/// ```
/// use core_sync::Lock;
/// use std::time::Duration;
///
/// static LOCK: Lock = Lock::new();
///
/// LOCK.acquire();                          // lock.acquire()
/// assert!(!LOCK.try_acquire());            // lock.acquire(blocking=False)
/// assert!(!LOCK.acquire_timeout(Duration::from_millis(1)));
/// assert!(LOCK.release().is_ok());         // lock.release()
/// assert!(LOCK.release().is_err());        // RuntimeError: release unlocked lock
/// {
///     let _guard = LOCK.lock();            // with lock:
///     assert!(LOCK.locked());
/// }
/// assert!(!LOCK.locked());
/// ```
pub struct Lock<B = DefaultBackend> {
    state: AtomicU32,
    backend: PhantomData<fn() -> B>,
}

impl Lock {
    /// A new, unlocked lock on the [default backend](DefaultBackend).
    #[cfg(not(loom))]
    #[inline]
    pub const fn new() -> Self {
        Self::with_backend()
    }

    /// A new, unlocked lock on the [default backend](DefaultBackend).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self::with_backend()
    }
}

impl<B: Backend> Lock<B> {
    /// A new, unlocked lock waiting through the backend `B`.
    #[cfg(not(loom))]
    #[inline]
    pub const fn with_backend() -> Self {
        Lock { state: AtomicU32::new(UNLOCKED), backend: PhantomData }
    }

    /// A new, unlocked lock waiting through the backend `B`.
    #[cfg(loom)]
    pub fn with_backend() -> Self {
        Lock { state: AtomicU32::new(UNLOCKED), backend: PhantomData }
    }

    /// Takes the lock, waiting while another thread holds it
    /// (`lock.acquire()`).
    #[inline]
    pub fn acquire(&self) {
        if !self.try_acquire() {
            self.acquire_slow(backend::wait_forever::<B>);
        }
    }

    /// Takes the lock only if it is free; returns at once either way
    /// (`lock.acquire(blocking=False)`).
    #[inline]
    pub fn try_acquire(&self) -> bool {
        self.state.compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    /// Gives the lock back (`lock.release()`).
    ///
    /// Any thread may release a lock, not only the one that took it.
    ///
    /// # Errors
    ///
    /// [`ReleaseError::NotLocked`] when the lock is not held; nothing
    /// changes then.
    #[inline]
    pub fn release(&self) -> Result<(), ReleaseError> {
        match self.state.swap(UNLOCKED, Ordering::Release) {
            UNLOCKED => Err(ReleaseError::NotLocked),
            LOCKED => Ok(()),
            _ => {
                B::wake_one(&self.state);
                Ok(())
            }
        }
    }

    /// Whether some thread holds the lock (`lock.locked()`); a snapshot.
    #[inline]
    pub fn locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) != UNLOCKED
    }

    /// Takes the lock and returns a guard that releases it when dropped, also
    /// during a panic (`with lock:`).
    #[inline]
    pub fn lock(&self) -> LockGuard<'_, B> {
        self.acquire();
        LockGuard { lock: self }
    }

    /// Takes the lock if it is free and returns its guard.
    #[inline]
    pub fn try_lock(&self) -> Option<LockGuard<'_, B>> {
        self.try_acquire().then(|| LockGuard { lock: self })
    }

    /// The contended path. `wait` sleeps while the word holds the value and
    /// returns `false` once the caller's deadline has passed.
    #[cold]
    fn acquire_slow(&self, mut wait: impl FnMut(&AtomicU32, u32) -> bool) -> bool {
        // The value a successful compare-exchange stores. A thread that has
        // slept takes the lock as CONTENDED: other sleepers may remain, and
        // only a release from CONTENDED wakes one of them.
        let mut take_as = LOCKED;
        loop {
            if self.spin(take_as) {
                return true;
            }
            // Mark the lock contended; if it was free, we now hold it.
            if self.state.swap(CONTENDED, Ordering::Acquire) == UNLOCKED {
                return true;
            }
            if !wait(&self.state, CONTENDED) {
                return false;
            }
            take_as = CONTENDED;
        }
    }

    /// Waits a while for the lock without sleeping (see [`crate::spin`]),
    /// and takes it, storing `take_as`, if it comes free. Returns whether it
    /// was taken; `false` once the spinning is spent or the word says that a
    /// thread sleeps.
    fn spin(&self, take_as: u32) -> bool {
        let mut backoff = Backoff::new();
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if state == UNLOCKED {
                match self.state.compare_exchange(
                    UNLOCKED,
                    take_as,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return true,
                    // Another thread took it first: keep waiting.
                    Err(now) => {
                        state = now;
                        continue;
                    }
                }
            }
            // Spin only while nobody sleeps: once a thread does, the
            // holder's release wakes it, and a spinner would only compete.
            if state != LOCKED || !backoff.wait::<B>() {
                return false;
            }
            state = self.state.load(Ordering::Relaxed);
        }
    }
}

impl<B: TimedBackend> Lock<B> {
    /// Takes the lock, waiting at most `timeout` (`lock.acquire(timeout=t)`).
    /// Returns whether it was taken.
    ///
    /// `Duration::ZERO` is [`try_acquire`](Lock::try_acquire); `Duration::MAX`
    /// waits forever.
    #[inline]
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        if self.try_acquire() {
            return true;
        }
        if timeout.is_zero() {
            return false;
        }
        let deadline = Deadline::<B>::after(timeout);
        self.acquire_slow(|word, value| deadline.wait(word, value))
    }

    /// Takes the lock, waiting at most `timeout`, and returns its guard.
    #[inline]
    pub fn lock_timeout(&self, timeout: Duration) -> Option<LockGuard<'_, B>> {
        self.acquire_timeout(timeout).then(|| LockGuard { lock: self })
    }
}

impl Default for Lock {
    fn default() -> Self {
        Self::new()
    }
}

impl<B> fmt::Debug for Lock<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("locked", &(self.state.load(Ordering::Relaxed) != UNLOCKED))
            .finish()
    }
}

/// Holds a [`Lock`] and releases it when dropped (Python's `with lock:`).
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a, B: Backend = DefaultBackend> {
    lock: &'a Lock<B>,
}

impl<B: Backend> LockGuard<'_, B> {
    /// The lock this guard holds.
    pub fn lock(&self) -> &Lock<B> {
        self.lock
    }
}

impl<B: Backend> Drop for LockGuard<'_, B> {
    #[inline]
    fn drop(&mut self) {
        // Another thread may have released the lock under our feet (Python
        // allows any thread to release a Lock); there is nothing to undo then.
        let _ = self.lock.release();
    }
}

impl<B: Backend> fmt::Debug for LockGuard<'_, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard").finish_non_exhaustive()
    }
}

// Not under loom: `lock_api` needs a `const` INIT, and loom's atomics are
// not const-constructible.
#[cfg(not(loom))]
// SAFETY: `lock` succeeds only after a compare-exchange or swap with Acquire
// ordering moved the word from 0 (unlocked) to non-zero, so at most one
// acquisition is outstanding; `unlock` stores 0 with Release ordering. The
// guard state is stateless (`GuardSend`): any thread may unlock, as Python
// allows. A lock dropped while locked just vanishes.
unsafe impl<B: Backend> lock_api::RawMutex for Lock<B> {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = Lock { state: AtomicU32::new(UNLOCKED), backend: PhantomData };

    type Guard = lock_api::GuardSend;

    #[inline]
    fn lock(&self) -> Self::Guard {
        self.acquire();
        lock_api::GuardSend::default()
    }

    #[inline]
    fn try_lock(&self) -> Option<Self::Guard> {
        self.try_acquire().then(lock_api::GuardSend::default)
    }

    #[inline]
    unsafe fn unlock(&self, _guard: Self::Guard) {
        // The caller guarantees that it holds the lock, so this cannot fail.
        let _ = self.release();
    }

    #[inline]
    fn is_locked(&self) -> bool {
        self.locked()
    }
}

#[cfg(not(loom))]
// SAFETY: the timed forms acquire exactly as `lock` does, or not at all.
unsafe impl<B: TimedBackend> lock_api::RawMutexTimed for Lock<B> {
    type Duration = Duration;
    type Instant = u64;

    #[inline]
    fn try_lock_for(&self, timeout: Duration) -> Option<Self::Guard> {
        self.acquire_timeout(timeout).then(lock_api::GuardSend::default)
    }

    /// `deadline` is in nanoseconds on the backend's clock
    /// ([`TimedBackend::now_nanos`]).
    #[inline]
    fn try_lock_until(&self, deadline: u64) -> Option<Self::Guard> {
        let left = deadline.saturating_sub(B::now_nanos());
        self.try_lock_for(Duration::from_nanos(left))
    }
}

/// A mutex protecting data of type `T`, on [`Lock`]: the `parking_lot`-style
/// data lock (`lock_api::Mutex`).
///
/// ```
/// let counter = core_sync::Mutex::new(0);
/// *counter.lock() += 1;
/// assert_eq!(*counter.lock(), 1);
/// ```
///
/// On another backend, name the raw lock: `lock_api::Mutex<Lock<B>, T>`.
#[cfg(not(loom))]
pub type Mutex<T> = lock_api::Mutex<Lock, T>;

/// The guard of a [`Mutex`].
#[cfg(not(loom))]
pub type MutexGuard<'a, T> = lock_api::MutexGuard<'a, Lock, T>;
