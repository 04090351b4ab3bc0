//! `RLock`: Python's `threading.RLock`, a lock its owner may take again.
//!
//! # State machine
//!
//! Three words, 16 bytes on a 64-bit target:
//!
//! | field | meaning |
//! | --- | --- |
//! | `lock` | a [`Lock`]: held exactly while some thread owns the `RLock` |
//! | `owner` | 0, or the [`CurrentThread`] id of the owning thread |
//! | `count` | the recursion depth; meaningful only to the owner (0 when free) |
//!
//! - acquire: if `owner` is the caller's id, the caller owns the lock (only
//!   the owner ever writes its own id there, and it clears it before it lets
//!   go), so it bumps `count`; a bump past `u32::MAX` is an error and changes
//!   nothing. Otherwise it takes `lock` (the inner lock's spin-then-sleep
//!   path), then writes `owner` and `count = 1`.
//! - release: only the owner may release; it drops `count`, and at zero it
//!   clears `owner` before releasing `lock` (whose Release ordering publishes
//!   both to the next owner).
//!
//! `owner` and `count` need no ordering of their own: a thread compares
//! `owner` only with its own id, which no other thread ever stores, and
//! `count` is read and written only by the owner, ordered by `lock`.

use core::fmt;
use core::marker::PhantomData;
use core::num::{NonZeroU32, NonZeroUsize};
use core::time::Duration;

use crate::backend::{Backend, CurrentThread, DefaultBackend, TimedBackend};
use crate::error::{RecursionOverflow, ReleaseError};
use crate::lock::Lock;
use crate::sync::{AtomicU32, AtomicUsize, Ordering};

/// No thread owns the lock.
const NO_OWNER: usize = 0;

/// A reentrant lock: Python's `threading.RLock()`.
///
/// The thread that holds it may acquire it again; each `acquire` needs its
/// own `release`, and only the owner may release. 16 bytes on 64-bit targets,
/// `const`-constructible, no allocation. The owner's identity comes from the
/// backend's [`CurrentThread`]: the default (futex) backend has it; a
/// bare-metal user brings a backend that implements it.
///
/// | Python | Rust |
/// | --- | --- |
/// | `rlock = threading.RLock()` | `let rlock = RLock::new();` |
/// | `rlock.acquire()` | `rlock.acquire()?` ([`RecursionOverflow`] past `u32::MAX` levels) |
/// | `rlock.acquire(blocking=False)` | `rlock.try_acquire()` |
/// | `rlock.acquire(timeout=0.5)` | `rlock.acquire_timeout(Duration::from_millis(500))` |
/// | `rlock.release()` (`RuntimeError` if not the owner) | `rlock.release()?` |
/// | `rlock.locked()` | `rlock.locked()` |
/// | `rlock._is_owned()` | `rlock.is_owned()` |
/// | `rlock._recursion_count()` | `rlock.recursion_count()` |
/// | `with rlock:` | `let _guard = rlock.lock()?;` |
///
/// # Recursion depth
///
/// The depth is a `u32`: about four billion levels. Going past it is an
/// error, never a wrap-around (Python raises `OverflowError`):
/// [`acquire`](RLock::acquire) and [`lock`](RLock::lock) return
/// `Err(RecursionOverflow)`, [`try_acquire`](RLock::try_acquire) and
/// [`acquire_timeout`](RLock::acquire_timeout) return `false`, and the lock
/// stays held at the same depth.
///
/// ```
/// use core_sync::{ReleaseError, RLock};
///
/// static RLOCK: RLock = RLock::new();
///
/// fn depth(n: u32) -> u32 {
///     let _guard = RLOCK.lock().unwrap(); // with rlock:  (re-entered by the recursion)
///     if n == 0 { RLOCK.recursion_count() } else { depth(n - 1) }
/// }
///
/// assert_eq!(depth(4), 5);
/// assert!(!RLOCK.locked());
///
/// RLOCK.acquire().unwrap();
/// RLOCK.acquire().unwrap();
/// let other = std::thread::spawn(|| (RLOCK.try_acquire(), RLOCK.release())).join().unwrap();
/// assert_eq!(other, (false, Err(ReleaseError::NotOwner)));
/// assert!(RLOCK.release().is_ok());
/// assert!(RLOCK.release().is_ok());
/// assert_eq!(RLOCK.release(), Err(ReleaseError::NotLocked));
/// ```
pub struct RLock<B = DefaultBackend> {
    owner: AtomicUsize,
    lock: Lock<B>,
    count: AtomicU32,
}

#[cfg(any(feature = "std", loom))]
impl RLock {
    /// A new, unlocked reentrant lock on the [default backend](DefaultBackend).
    #[cfg(not(loom))]
    #[inline]
    pub const fn new() -> Self {
        Self::with_backend()
    }

    /// A new, unlocked reentrant lock on the [default backend](DefaultBackend).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self::with_backend()
    }
}

#[cfg(any(feature = "std", loom))]
impl Default for RLock {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: Backend + CurrentThread> RLock<B> {
    /// A new, unlocked reentrant lock waiting through the backend `B`, whose
    /// [`CurrentThread`] names the owner.
    #[cfg(not(loom))]
    #[inline]
    pub const fn with_backend() -> Self {
        RLock {
            owner: AtomicUsize::new(NO_OWNER),
            lock: Lock::with_backend(),
            count: AtomicU32::new(0),
        }
    }

    /// A new, unlocked reentrant lock waiting through the backend `B`, whose
    /// [`CurrentThread`] names the owner.
    #[cfg(loom)]
    pub fn with_backend() -> Self {
        RLock {
            owner: AtomicUsize::new(NO_OWNER),
            lock: Lock::with_backend(),
            count: AtomicU32::new(0),
        }
    }

    #[inline]
    fn me() -> usize {
        B::current_thread_id().get()
    }

    /// Whether the calling thread owns the lock (`rlock._is_owned()`).
    #[inline]
    pub fn is_owned(&self) -> bool {
        self.owner.load(Ordering::Relaxed) == Self::me()
    }

    /// One more level for the owner, unless that would overflow.
    #[inline]
    fn reenter(&self, levels: u32) -> Result<(), RecursionOverflow> {
        let count = self.count.load(Ordering::Relaxed);
        let count = count.checked_add(levels).ok_or(RecursionOverflow)?;
        self.count.store(count, Ordering::Relaxed);
        Ok(())
    }

    /// Records the caller as the owner, `levels` deep, after taking `lock`.
    #[inline]
    fn take_ownership(&self, me: usize, levels: u32) {
        self.owner.store(me, Ordering::Relaxed);
        self.count.store(levels, Ordering::Relaxed);
    }

    /// Takes the lock, waiting while another thread owns it; the owner takes
    /// it again at once (`rlock.acquire()`).
    ///
    /// # Errors
    ///
    /// [`RecursionOverflow`] when the owner already holds it `u32::MAX`
    /// times; nothing changes then.
    #[inline]
    pub fn acquire(&self) -> Result<(), RecursionOverflow> {
        let me = Self::me();
        if self.owner.load(Ordering::Relaxed) == me {
            return self.reenter(1);
        }
        self.lock.acquire();
        self.take_ownership(me, 1);
        Ok(())
    }

    /// Takes the lock only if it is free or already the caller's; returns at
    /// once either way (`rlock.acquire(blocking=False)`). `false` also when
    /// the depth would overflow.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        let me = Self::me();
        if self.owner.load(Ordering::Relaxed) == me {
            return self.reenter(1).is_ok();
        }
        if self.lock.try_acquire() {
            self.take_ownership(me, 1);
            return true;
        }
        false
    }

    /// Gives back one level (`rlock.release()`); the last one frees the lock
    /// for other threads.
    ///
    /// # Errors
    ///
    /// [`ReleaseError::NotLocked`] when nobody holds the lock,
    /// [`ReleaseError::NotOwner`] when another thread does. Nothing changes
    /// then.
    #[inline]
    pub fn release(&self) -> Result<(), ReleaseError> {
        self.release_as(Self::me())
    }

    /// Whether some thread holds the lock (`rlock.locked()`); a snapshot.
    #[inline]
    pub fn locked(&self) -> bool {
        self.lock.locked()
    }

    /// How many times the calling thread holds the lock: 0 when it does not
    /// own it (`rlock._recursion_count()`).
    #[inline]
    pub fn recursion_count(&self) -> u32 {
        if self.is_owned() { self.count.load(Ordering::Relaxed) } else { 0 }
    }

    /// Takes the lock (one more level for the owner) and returns a guard that
    /// releases that level when dropped, also during a panic (`with rlock:`).
    ///
    /// # Errors
    ///
    /// [`RecursionOverflow`], as [`acquire`](RLock::acquire).
    #[inline]
    pub fn lock(&self) -> Result<RLockGuard<'_, B>, RecursionOverflow> {
        self.acquire()?;
        Ok(self.guard())
    }

    /// The guard of a level the caller has just taken.
    #[inline]
    fn guard(&self) -> RLockGuard<'_, B> {
        RLockGuard { lock: self, owner: Self::me(), not_send: PhantomData }
    }

    /// Takes the lock if it is free or already the caller's, and returns its
    /// guard.
    #[inline]
    pub fn try_lock(&self) -> Option<RLockGuard<'_, B>> {
        self.try_acquire().then(|| self.guard())
    }

    /// Releases every level the caller holds and returns how many there were
    /// (Python's `rlock._release_save()`, what `Condition.wait` does first).
    ///
    /// # Errors
    ///
    /// As [`release`](RLock::release); nothing changes then.
    pub fn release_save(&self) -> Result<NonZeroU32, ReleaseError> {
        self.check_owner(Self::me())?;
        let levels = NonZeroU32::new(self.count.load(Ordering::Relaxed)).unwrap_or(NonZeroU32::MIN);
        self.let_go()?;
        Ok(levels)
    }

    /// Takes the lock `levels` deep (Python's `rlock._acquire_restore()`,
    /// what `Condition.wait` does last), waiting while another thread owns
    /// it. If the caller already owns it, the levels are added.
    ///
    /// # Errors
    ///
    /// [`RecursionOverflow`] when the caller owns the lock and the sum would
    /// pass `u32::MAX`; nothing changes then.
    pub fn acquire_restore(&self, levels: NonZeroU32) -> Result<(), RecursionOverflow> {
        let me = Self::me();
        if self.owner.load(Ordering::Relaxed) == me {
            return self.reenter(levels.get());
        }
        self.lock.acquire();
        self.take_ownership(me, levels.get());
        Ok(())
    }
}

impl<B: Backend> RLock<B> {
    /// [`RLock::release`] for the thread whose id is `me`.
    #[inline]
    fn release_as(&self, me: usize) -> Result<(), ReleaseError> {
        self.check_owner(me)?;
        let count = self.count.load(Ordering::Relaxed);
        if count > 1 {
            self.count.store(count - 1, Ordering::Relaxed);
            return Ok(());
        }
        self.let_go()
    }

    /// `Ok` if the thread `me` owns the lock, else why not.
    #[inline]
    fn check_owner(&self, me: usize) -> Result<(), ReleaseError> {
        if self.owner.load(Ordering::Relaxed) == me {
            Ok(())
        } else if self.lock.locked() {
            Err(ReleaseError::NotOwner)
        } else {
            Err(ReleaseError::NotLocked)
        }
    }

    /// Drops ownership at every level; the caller owns the lock.
    #[inline]
    fn let_go(&self) -> Result<(), ReleaseError> {
        self.count.store(0, Ordering::Relaxed);
        self.owner.store(NO_OWNER, Ordering::Relaxed);
        // Publishes the two stores above to the next owner.
        self.lock.release()
    }
}

impl<B: TimedBackend + CurrentThread> RLock<B> {
    /// Takes the lock, waiting at most `timeout` while another thread owns
    /// it (`rlock.acquire(timeout=t)`). Returns whether it was taken; `false`
    /// also when the depth would overflow.
    ///
    /// `Duration::ZERO` is [`try_acquire`](RLock::try_acquire);
    /// `Duration::MAX` waits forever.
    #[inline]
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        let me = Self::me();
        if self.owner.load(Ordering::Relaxed) == me {
            return self.reenter(1).is_ok();
        }
        if self.lock.acquire_timeout(timeout) {
            self.take_ownership(me, 1);
            return true;
        }
        false
    }

    /// Takes the lock, waiting at most `timeout`, and returns its guard.
    #[inline]
    pub fn lock_timeout(&self, timeout: Duration) -> Option<RLockGuard<'_, B>> {
        self.acquire_timeout(timeout).then(|| self.guard())
    }
}

impl<B> fmt::Debug for RLock<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLock")
            .field("locked", &(self.owner.load(Ordering::Relaxed) != NO_OWNER))
            .finish_non_exhaustive()
    }
}

/// Holds one level of an [`RLock`] and releases it when dropped (Python's
/// `with rlock:`).
///
/// Not `Send`: only the owning thread may release the level it holds.
#[must_use = "the level is released as soon as the guard is dropped"]
pub struct RLockGuard<'a, B: Backend = DefaultBackend> {
    lock: &'a RLock<B>,
    /// The owning thread's id, kept so that dropping needs no look-up.
    owner: usize,
    not_send: PhantomData<*const ()>,
}

impl<B: Backend> RLockGuard<'_, B> {
    /// The lock this guard holds a level of.
    pub fn rlock(&self) -> &RLock<B> {
        self.lock
    }
}

impl<B: Backend> Drop for RLockGuard<'_, B> {
    #[inline]
    fn drop(&mut self) {
        // The guard is not `Send`: this is the owning thread. It owns the
        // level unless it released the lock by hand in the meantime; the
        // owner check then makes this a no-op.
        let _ = self.lock.release_as(self.owner);
    }
}

impl<B: Backend> fmt::Debug for RLockGuard<'_, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard").finish_non_exhaustive()
    }
}

/// The calling thread's id from the backend `B`'s [`CurrentThread`], as
/// `lock_api`'s [`GetThreadId`](lock_api::GetThreadId): the piece
/// `lock_api::ReentrantMutex` needs besides a raw mutex.
///
/// ```
/// use core_sync::{Lock, ThreadIdOf, backend::Futex};
///
/// type MyReentrantMutex<T> = lock_api::ReentrantMutex<Lock<Futex>, ThreadIdOf<Futex>, T>;
/// let m = MyReentrantMutex::new(5);
/// let a = m.lock();
/// let b = m.lock(); // the same thread may lock it again
/// assert_eq!(*a + *b, 10);
/// ```
pub struct ThreadIdOf<B = DefaultBackend>(PhantomData<fn() -> B>);

impl<B> fmt::Debug for ThreadIdOf<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ThreadIdOf")
    }
}

// SAFETY: `CurrentThread::current_thread_id` is non-zero and tells apart all
// threads alive at the same time, which is exactly `GetThreadId`'s contract.
unsafe impl<B: CurrentThread> lock_api::GetThreadId for ThreadIdOf<B> {
    const INIT: Self = ThreadIdOf(PhantomData);

    #[inline]
    fn nonzero_thread_id(&self) -> NonZeroUsize {
        B::current_thread_id()
    }
}

/// A reentrant mutex protecting data of type `T`, on [`Lock`] and the
/// default backend's thread ids: the `parking_lot`-style data lock
/// (`lock_api::ReentrantMutex`). It hands out shared references only, as a
/// thread may hold several guards at once.
///
/// ```
/// use std::cell::Cell;
///
/// let m = core_sync::ReentrantMutex::new(Cell::new(0));
/// let outer = m.lock();
/// let inner = m.lock(); // re-entered by the same thread
/// inner.set(inner.get() + 1);
/// assert_eq!(outer.get(), 1);
/// ```
///
/// On another backend, name the parts:
/// `lock_api::ReentrantMutex<Lock<B>, ThreadIdOf<B>, T>`.
#[cfg(all(feature = "std", not(loom)))]
pub type ReentrantMutex<T> = lock_api::ReentrantMutex<Lock, ThreadIdOf, T>;

/// The guard of a [`ReentrantMutex`].
#[cfg(all(feature = "std", not(loom)))]
pub type ReentrantMutexGuard<'a, T> = lock_api::ReentrantMutexGuard<'a, Lock, ThreadIdOf, T>;
