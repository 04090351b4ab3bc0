//! `Condition`: Python's `threading.Condition`.
//!
//! # State machine
//!
//! A condition is its lock plus a [`WaitQueue`]: an intrusive, circular,
//! doubly linked FIFO of waiter nodes and a small internal lock (a 4-byte
//! [`Lock`], the *list lock*) that protects it. Nothing is allocated: each
//! node lives on the stack of the thread that waits, pinned there for the
//! whole wait, and the queue only links them.
//!
//! Each node has its own futex word, which is what its thread sleeps on:
//!
//! | node state | meaning |
//! | --- | --- |
//! | `WAITING` (0) | linked in the queue; its thread waits (and may sleep) |
//! | `CHOSEN` (1) | unlinked by a notifier, which chose it and has not finished with the node yet |
//! | `NOTIFIED` (2) | the notifier is done with the node: storing this was its last access |
//!
//! Invariant: a node is linked exactly while its state is `WAITING`; both
//! change together (`WAITING` -> `CHOSEN`), only under the list lock.
//! `CHOSEN` -> `NOTIFIED` happens outside it.
//!
//! - wait: with the condition's lock held, link a fresh `WAITING` node at the
//!   tail (under the list lock), then release the condition's lock (every
//!   level of an `RLock`), then spin a little and sleep on the node's word
//!   until it holds `NOTIFIED`. Linking before releasing is what makes a notify that follows
//!   the release find the node: no lost wake-ups.
//! - notify(n): if the head is null, return: one atomic load. Otherwise,
//!   under the list lock, unlink up to `n` nodes from the head (the
//!   longest-waiting first), mark each `CHOSEN` and chain them through their
//!   own `next` links; release the list lock; then, for each chosen node,
//!   read its `next`, store `NOTIFIED` (Release) and wake its word through a
//!   raw pointer. The wake happens outside the list lock, so the woken
//!   thread never finds the notifier holding it.
//! - leaving: a waiter that sees `NOTIFIED` returns "notified" at once,
//!   without the list lock. One whose wait ended otherwise (timed out, or
//!   unwinding) takes the list lock: a node still `WAITING` was not chosen,
//!   so the waiter unlinks it itself and reports "timed out"; a `CHOSEN` node
//!   was chosen, so the waiter releases the list lock, waits (spinning, then
//!   sleeping on its word) until `NOTIFIED`, and reports "notified", even if
//!   its deadline has passed too. Then the waiter re-takes the condition's
//!   lock at the depth it had.
//!
//! # Why a node never dangles
//!
//! A notifier reaches a node only through the queue, under the list lock,
//! while it is `WAITING`; its thread cannot leave then (leaving a `WAITING`
//! node takes the list lock). From `CHOSEN` on, the node is the notifier's
//! alone until `NOTIFIED`: no thread returns from a wait, or unwinds past its
//! node, before it has seen `NOTIFIED` (with Acquire, which orders every
//! earlier access of the notifier, its read of `next` included, before the
//! node goes away). The notifier's only use of the node after that store is
//! the wake, which takes the word's address as a raw pointer and uses it as
//! a key ([`Backend::wake_one`]'s contract lets it dangle).

use core::fmt;
use core::marker::PhantomPinned;
use core::pin::pin;
use core::ptr;
use core::time::Duration;

use crate::backend::{self, Backend, Deadline, TimedBackend};
use crate::error::{NotHeldError, RecursionOverflow, ReleaseError};
use crate::lock::{Lock, LockGuard};
use crate::sync::{AtomicPtr, AtomicU32, Ordering, spin_hint};

#[cfg(any(feature = "std", loom))]
use crate::rlock::RLock;

/// A lock a [`Condition`] can wait with: [`Lock`], [`RLock`](crate::RLock),
/// or a reference to either (several conditions may share one lock).
///
/// Besides the lock's own methods, which a condition forwards, it has the
/// three that Python's `Condition` takes from its lock: `_is_owned`,
/// `_release_save` and `_acquire_restore`. A condition's memory safety does
/// not depend on this trait's implementation; its semantics do.
pub trait ConditionLock {
    /// The wait backend the lock sleeps through; the condition's waiters
    /// sleep through it too.
    type Backend: Backend;

    /// What [`acquire`](ConditionLock::acquire) returns: `()` for a
    /// [`Lock`], `Result<(), RecursionOverflow>` for an `RLock`.
    type Acquired;

    /// What [`lock`](ConditionLock::lock) returns: the lock's guard (in a
    /// `Result` for an `RLock`).
    type Guard<'a>
    where
        Self: 'a;

    /// What [`release_save`](ConditionLock::release_save) hands to
    /// [`acquire_restore`](ConditionLock::acquire_restore): nothing for a
    /// [`Lock`], the recursion depth for an `RLock`.
    type Saved;

    /// Takes the lock, waiting as long as it takes.
    fn acquire(&self) -> Self::Acquired;

    /// Takes the lock only if that needs no wait.
    fn try_acquire(&self) -> bool;

    /// Takes the lock, waiting at most `timeout`; whether it was taken.
    fn acquire_timeout(&self, timeout: Duration) -> bool
    where
        Self::Backend: TimedBackend;

    /// Gives one level of the lock back.
    ///
    /// # Errors
    ///
    /// When the lock is not held (by the caller, for an owned lock).
    fn release(&self) -> Result<(), ReleaseError>;

    /// Takes the lock and returns a guard.
    fn lock(&self) -> Self::Guard<'_>;

    /// Whether the caller holds the lock (for a [`Lock`], which has no owner:
    /// whether it is locked at all).
    fn is_owned(&self) -> bool;

    /// Releases the lock completely and returns what it takes to restore it.
    ///
    /// # Errors
    ///
    /// When the lock is not held (by the caller, for an owned lock); nothing
    /// changes then.
    fn release_save(&self) -> Result<Self::Saved, ReleaseError>;

    /// Takes the lock back as [`release_save`](ConditionLock::release_save)
    /// left it, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`RecursionOverflow`] when an `RLock` the caller already owns would
    /// pass its depth limit; nothing changes then. A condition never meets
    /// it: it restores only what it released.
    fn acquire_restore(&self, saved: Self::Saved) -> Result<(), RecursionOverflow>;
}

impl<B: Backend> ConditionLock for Lock<B> {
    type Backend = B;
    type Acquired = ();
    type Guard<'a>
        = LockGuard<'a, B>
    where
        Self: 'a;
    type Saved = ();

    #[inline]
    fn acquire(&self) {
        Lock::acquire(self);
    }

    #[inline]
    fn try_acquire(&self) -> bool {
        Lock::try_acquire(self)
    }

    #[inline]
    fn acquire_timeout(&self, timeout: Duration) -> bool
    where
        B: TimedBackend,
    {
        Lock::acquire_timeout(self, timeout)
    }

    #[inline]
    fn release(&self) -> Result<(), ReleaseError> {
        Lock::release(self)
    }

    #[inline]
    fn lock(&self) -> LockGuard<'_, B> {
        Lock::lock(self)
    }

    #[inline]
    fn is_owned(&self) -> bool {
        self.locked()
    }

    #[inline]
    fn release_save(&self) -> Result<(), ReleaseError> {
        Lock::release(self)
    }

    #[inline]
    fn acquire_restore(&self, (): ()) -> Result<(), RecursionOverflow> {
        Lock::acquire(self);
        Ok(())
    }
}

impl<B: Backend + backend::CurrentThread> ConditionLock for crate::rlock::RLock<B> {
    type Backend = B;
    type Acquired = Result<(), RecursionOverflow>;
    type Guard<'a>
        = Result<crate::rlock::RLockGuard<'a, B>, RecursionOverflow>
    where
        Self: 'a;
    type Saved = core::num::NonZeroU32;

    #[inline]
    fn acquire(&self) -> Result<(), RecursionOverflow> {
        Self::acquire(self)
    }

    #[inline]
    fn try_acquire(&self) -> bool {
        Self::try_acquire(self)
    }

    #[inline]
    fn acquire_timeout(&self, timeout: Duration) -> bool
    where
        B: TimedBackend,
    {
        Self::acquire_timeout(self, timeout)
    }

    #[inline]
    fn release(&self) -> Result<(), ReleaseError> {
        Self::release(self)
    }

    #[inline]
    fn lock(&self) -> Self::Guard<'_> {
        Self::lock(self)
    }

    #[inline]
    fn is_owned(&self) -> bool {
        Self::is_owned(self)
    }

    #[inline]
    fn release_save(&self) -> Result<core::num::NonZeroU32, ReleaseError> {
        Self::release_save(self)
    }

    #[inline]
    fn acquire_restore(&self, levels: core::num::NonZeroU32) -> Result<(), RecursionOverflow> {
        Self::acquire_restore(self, levels)
    }
}

impl<T: ConditionLock + ?Sized> ConditionLock for &T {
    type Backend = T::Backend;
    type Acquired = T::Acquired;
    type Guard<'a>
        = T::Guard<'a>
    where
        Self: 'a;
    type Saved = T::Saved;

    #[inline]
    fn acquire(&self) -> T::Acquired {
        T::acquire(self)
    }

    #[inline]
    fn try_acquire(&self) -> bool {
        T::try_acquire(self)
    }

    #[inline]
    fn acquire_timeout(&self, timeout: Duration) -> bool
    where
        T::Backend: TimedBackend,
    {
        T::acquire_timeout(self, timeout)
    }

    #[inline]
    fn release(&self) -> Result<(), ReleaseError> {
        T::release(self)
    }

    #[inline]
    fn lock(&self) -> T::Guard<'_> {
        T::lock(self)
    }

    #[inline]
    fn is_owned(&self) -> bool {
        T::is_owned(self)
    }

    #[inline]
    fn release_save(&self) -> Result<T::Saved, ReleaseError> {
        T::release_save(self)
    }

    #[inline]
    fn acquire_restore(&self, saved: T::Saved) -> Result<(), RecursionOverflow> {
        T::acquire_restore(self, saved)
    }
}

/// A condition variable: Python's `threading.Condition`.
///
/// A condition pairs a lock `L` (see [`ConditionLock`]) with a queue of
/// waiting threads. `Condition::new()` owns an [`RLock`](crate::RLock), as in
/// Python; [`Condition::with_lock`] takes a [`Lock`], an `RLock`, or a
/// reference to one, so several conditions can share a lock
/// (`Condition(lock=l)`). The waiters sleep through the lock's backend.
///
/// A list lock and a head pointer beyond its lock (16 bytes on 64-bit
/// targets, 20 with the padding after a 4-byte [`Lock`]: a `Condition<Lock>`
/// is 24 bytes, a `Condition<RLock>` 32), whatever the number of waiters:
/// each waiter's queue node lives on its own stack. Nothing is allocated.
///
/// | Python | Rust |
/// | --- | --- |
/// | `cond = threading.Condition()` | `let cond = Condition::new();` |
/// | `cond = threading.Condition(lock=l)` | `let cond = Condition::with_lock(&l);` |
/// | `with cond:` | `let _guard = cond.lock();` (a `Result` for an `RLock`) |
/// | `cond.acquire()` / `cond.release()` | `cond.acquire()` / `cond.release()?` |
/// | `cond.wait()` | `cond.wait()?` |
/// | `cond.wait(timeout=t)` | `cond.wait_timeout(t)?` (true when notified) |
/// | `cond.wait_for(pred)` | `cond.wait_for(pred)?` |
/// | `cond.wait_for(pred, timeout=t)` | `cond.wait_for_timeout(pred, t)?` (the predicate's last value) |
/// | `cond.notify(n)` | `cond.notify(n)?` (how many were woken) |
/// | `cond.notify_all()` | `cond.notify_all()?` |
///
/// Every wait and notify returns [`NotHeldError`] when the caller does not
/// hold the lock (for a plain [`Lock`], which has no owner: when it is not
/// locked), and then changes nothing. Waiting on an `RLock` held `k` times
/// releases all `k` levels and restores exactly `k`, also on a timeout.
///
/// # Notify semantics
///
/// `notify(n)` wakes at most `n` waiters, the longest-waiting first. A
/// waiter reports "notified" only when a notify chose it: an untimed
/// [`wait`](Condition::wait) never returns spuriously. A waiter that timed
/// out has left the queue, so a later `notify(1)` reaches a live waiter.
/// `notify` with nobody waiting costs one atomic load (after the check that
/// the caller holds the lock).
///
/// ```
/// use core_sync::{Condition, Lock};
/// use std::cell::Cell;
/// use std::thread;
///
/// static LOCK: Lock = Lock::new();
/// static READY: Condition<&Lock> = Condition::with_lock(&LOCK); // Condition(lock=LOCK)
/// struct Flag(Cell<bool>);
/// unsafe impl Sync for Flag {} // SAFETY: only touched while LOCK is held
/// static FLAG: Flag = Flag(Cell::new(false));
///
/// let waiter = thread::spawn(|| {
///     let _guard = READY.lock();                    // with cond:
///     READY.wait_for(|| FLAG.0.get()).unwrap();     //     cond.wait_for(lambda: flag)
/// });
/// {
///     let _guard = READY.lock();                    // with cond:
///     FLAG.0.set(true);
///     READY.notify_all().unwrap();                  //     cond.notify_all()
/// }
/// waiter.join().unwrap();
/// assert!(READY.notify(1).is_err());                // RuntimeError: un-acquired lock
/// ```
pub struct Condition<L: ConditionLock = DefaultConditionLock> {
    lock: L,
    waiters: WaitQueue<L::Backend>,
}

/// The lock a bare `Condition` names and [`Condition::new`] makes: an
/// [`RLock`](crate::RLock) on the default backend, as in Python. Without the
/// `std` feature the default (spin) backend names no threads, so there it is
/// a plain [`Lock`] (and `Condition::new` does not exist).
#[cfg(any(feature = "std", loom))]
pub type DefaultConditionLock = RLock;

/// The lock a bare `Condition` names: with the `std` feature an
/// [`RLock`](crate::RLock) on the default backend, as in Python. Without it
/// the default (spin) backend names no threads, so here it is a plain
/// [`Lock`] (and `Condition::new` does not exist).
#[cfg(not(any(feature = "std", loom)))]
pub type DefaultConditionLock = Lock;

#[cfg(any(feature = "std", loom))]
impl Condition {
    /// A condition with a new [`RLock`](crate::RLock) of its own
    /// (`threading.Condition()`).
    #[cfg(not(loom))]
    #[inline]
    pub const fn new() -> Self {
        Self::with_lock(RLock::new())
    }

    /// A condition with a new [`RLock`](crate::RLock) of its own
    /// (`threading.Condition()`).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self::with_lock(RLock::new())
    }
}

#[cfg(any(feature = "std", loom))]
impl Default for Condition {
    fn default() -> Self {
        Self::new()
    }
}

impl<L: ConditionLock> Condition<L> {
    /// A condition waiting with `lock` (`threading.Condition(lock=l)`): a
    /// [`Lock`], an [`RLock`](crate::RLock), or a reference to one, to share
    /// it with other conditions.
    #[cfg(not(loom))]
    #[inline]
    pub const fn with_lock(lock: L) -> Self {
        Condition { lock, waiters: WaitQueue::new() }
    }

    /// A condition waiting with `lock` (`threading.Condition(lock=l)`).
    #[cfg(loom)]
    pub fn with_lock(lock: L) -> Self {
        Condition { lock, waiters: WaitQueue::new() }
    }

    /// The condition's lock.
    #[inline]
    pub fn get_lock(&self) -> &L {
        &self.lock
    }

    /// Takes the lock (`cond.acquire()`).
    #[inline]
    pub fn acquire(&self) -> L::Acquired {
        self.lock.acquire()
    }

    /// Takes the lock only if that needs no wait
    /// (`cond.acquire(blocking=False)`).
    #[inline]
    pub fn try_acquire(&self) -> bool {
        self.lock.try_acquire()
    }

    /// Gives the lock back, one level (`cond.release()`).
    ///
    /// # Errors
    ///
    /// As the lock's `release`.
    #[inline]
    pub fn release(&self) -> Result<(), ReleaseError> {
        self.lock.release()
    }

    /// Takes the lock and returns its guard (`with cond:`).
    #[inline]
    pub fn lock(&self) -> L::Guard<'_> {
        self.lock.lock()
    }

    /// Releases the lock, waits until a notify chooses this thread, and takes
    /// the lock back at the depth it had (`cond.wait()`).
    ///
    /// # Errors
    ///
    /// [`NotHeldError`] when the caller does not hold the lock; nothing
    /// changes then.
    #[inline]
    pub fn wait(&self) -> Result<(), NotHeldError> {
        self.waiters.wait(&self.lock, backend::wait_forever::<L::Backend>).map(drop)
    }

    /// Waits (as [`wait`](Condition::wait)) until `predicate` returns true;
    /// returns at once if it already does (`cond.wait_for(predicate)`). The
    /// predicate runs with the lock held.
    ///
    /// # Errors
    ///
    /// [`NotHeldError`] when the caller does not hold the lock; nothing
    /// changes then (the predicate is not called).
    pub fn wait_for(&self, mut predicate: impl FnMut() -> bool) -> Result<(), NotHeldError> {
        if !self.lock.is_owned() {
            return Err(NotHeldError);
        }
        while !predicate() {
            self.waiters.wait(&self.lock, backend::wait_forever::<L::Backend>)?;
        }
        Ok(())
    }

    /// Wakes at most `n` waiters, the longest-waiting first
    /// (`cond.notify(n)`), and returns how many it woke. Each of them
    /// returns from its wait once it has the lock again.
    ///
    /// # Errors
    ///
    /// [`NotHeldError`] when the caller does not hold the lock; nothing
    /// changes then.
    #[inline]
    pub fn notify(&self, n: usize) -> Result<usize, NotHeldError> {
        if !self.lock.is_owned() {
            return Err(NotHeldError);
        }
        Ok(self.waiters.notify(n))
    }

    /// Wakes every waiter (`cond.notify_all()`) and returns how many.
    ///
    /// # Errors
    ///
    /// [`NotHeldError`] when the caller does not hold the lock; nothing
    /// changes then.
    #[inline]
    pub fn notify_all(&self) -> Result<usize, NotHeldError> {
        self.notify(usize::MAX)
    }

    /// How many threads wait on this condition now; a snapshot (it walks
    /// the queue under the list lock).
    pub fn n_waiting(&self) -> usize {
        self.waiters.len()
    }
}

impl<L: ConditionLock> Condition<L>
where
    L::Backend: TimedBackend,
{
    /// Takes the lock, waiting at most `timeout`
    /// (`cond.acquire(timeout=t)`). Returns whether it was taken.
    #[inline]
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.lock.acquire_timeout(timeout)
    }

    /// Waits as [`wait`](Condition::wait), at most `timeout`
    /// (`cond.wait(timeout=t)`). Returns `true` when a notify chose this
    /// thread, `false` when the timeout passed first; the lock is held again
    /// at its depth either way.
    ///
    /// `Duration::ZERO` returns `false` at once without releasing the lock;
    /// `Duration::MAX` waits forever.
    ///
    /// # Errors
    ///
    /// [`NotHeldError`] when the caller does not hold the lock; nothing
    /// changes then.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, NotHeldError> {
        if !self.lock.is_owned() {
            return Err(NotHeldError);
        }
        if timeout.is_zero() {
            return Ok(false);
        }
        let deadline = Deadline::<L::Backend>::after(timeout);
        self.waiters.wait(&self.lock, |word, value| deadline.wait(word, value))
    }

    /// Waits until `predicate` returns true or `timeout` has passed
    /// (`cond.wait_for(predicate, timeout=t)`), and returns the predicate's
    /// last value: it is called once more after the timeout, as in Python.
    /// The predicate runs with the lock held.
    ///
    /// # Errors
    ///
    /// [`NotHeldError`] when the caller does not hold the lock; nothing
    /// changes then (the predicate is not called).
    pub fn wait_for_timeout(
        &self,
        mut predicate: impl FnMut() -> bool,
        timeout: Duration,
    ) -> Result<bool, NotHeldError> {
        if !self.lock.is_owned() {
            return Err(NotHeldError);
        }
        let mut result = predicate();
        if result || timeout.is_zero() {
            return Ok(result);
        }
        let deadline = Deadline::<L::Backend>::after(timeout);
        loop {
            let notified =
                self.waiters.wait(&self.lock, |word, value| deadline.wait(word, value))?;
            result = predicate();
            // Once a wait has timed out the deadline has passed: that was the
            // predicate's last chance.
            if result || !notified {
                return Ok(result);
            }
        }
    }
}

impl<L: ConditionLock + fmt::Debug> fmt::Debug for Condition<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("lock", &self.lock)
            .field("has_waiters", &self.waiters.has_waiters())
            .finish()
    }
}

/// A node's thread waits and is linked in the queue.
const WAITING: u32 = 0;
/// A notifier unlinked the node and chose its thread; it still uses the node.
const CHOSEN: u32 = 1;
/// The notifier is done with the node: storing this was its last access.
const NOTIFIED: u32 = 2;

/// One waiting thread's queue node, on that thread's stack.
///
/// Only ever used through shared references and raw pointers made from
/// them: every field is atomic, so the notifier and the waiter may both
/// touch it. `next` and `prev` are read and written only under the list lock
/// while the node is linked (so `Relaxed` suffices), and by the notifier
/// alone while it is `CHOSEN`; `state` is also read by the waiter without
/// the lock.
struct Waiter {
    next: AtomicPtr<Waiter>,
    prev: AtomicPtr<Waiter>,
    state: AtomicU32,
    /// Linked nodes are addressed by pointer: a node must not move.
    _pinned: PhantomPinned,
}

impl Waiter {
    fn new() -> Self {
        Waiter {
            next: AtomicPtr::new(ptr::null_mut()),
            prev: AtomicPtr::new(ptr::null_mut()),
            state: AtomicU32::new(WAITING),
            _pinned: PhantomPinned,
        }
    }
}

/// The waiters of one condition: a circular doubly linked FIFO of [`Waiter`]
/// nodes living on the waiters' stacks, and the list lock that protects it
/// (see the module docs). 16 bytes on 64-bit targets.
///
/// List invariant: every node reachable from `head` is live (its thread is
/// inside [`WaitQueue::wait`], before [`WaitQueue::leave`]) and `WAITING`.
pub(crate) struct WaitQueue<B> {
    /// The list lock: held for every access to the links and to a node's
    /// state change.
    list: Lock<B>,
    /// The longest-waiting node, or null; the tail is `head.prev`. Written
    /// only under the list lock, read without it by the empty check.
    head: AtomicPtr<Waiter>,
}

impl<B: Backend> WaitQueue<B> {
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        WaitQueue { list: Lock::with_backend(), head: AtomicPtr::new(ptr::null_mut()) }
    }

    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        WaitQueue { list: Lock::with_backend(), head: AtomicPtr::new(ptr::null_mut()) }
    }

    /// Whether some thread may wait: one atomic load.
    ///
    /// Exact when the caller holds the condition's lock: a waiter links its
    /// node before it releases that lock, so the caller's acquisition of the
    /// lock orders the link before this load.
    #[inline]
    pub(crate) fn has_waiters(&self) -> bool {
        !self.head.load(Ordering::Relaxed).is_null()
    }

    /// How many nodes are linked.
    pub(crate) fn len(&self) -> usize {
        let _list = self.list.lock();
        let head = self.head.load(Ordering::Relaxed);
        if head.is_null() {
            return 0;
        }
        let mut n = 1;
        // SAFETY: the list lock is held, so every linked node is live (list
        // invariant) and its links are stable.
        let mut node = unsafe { &*head }.next.load(Ordering::Relaxed);
        while node != head {
            n += 1;
            // SAFETY: as above; `node` was reached from `head`.
            node = unsafe { &*node }.next.load(Ordering::Relaxed);
        }
        n
    }

    /// Links `node` at the tail.
    ///
    /// # Safety
    ///
    /// The caller holds the list lock; `node` is not linked, and stays live
    /// and in place until it is unlinked.
    unsafe fn push_back(&self, node: &Waiter) {
        let this = ptr::from_ref(node).cast_mut();
        let head = self.head.load(Ordering::Relaxed);
        if head.is_null() {
            node.next.store(this, Ordering::Relaxed);
            node.prev.store(this, Ordering::Relaxed);
            self.head.store(this, Ordering::Relaxed);
            return;
        }
        // SAFETY: the list lock is held and `head` is linked, so it is live.
        let head_node = unsafe { &*head };
        let tail = head_node.prev.load(Ordering::Relaxed);
        node.prev.store(tail, Ordering::Relaxed);
        node.next.store(head, Ordering::Relaxed);
        // SAFETY: `tail` is linked (it is `head.prev`), so it is live.
        unsafe { &*tail }.next.store(this, Ordering::Relaxed);
        head_node.prev.store(this, Ordering::Relaxed);
    }

    /// Unlinks `node`.
    ///
    /// # Safety
    ///
    /// The caller holds the list lock and `node` is linked in this queue.
    unsafe fn unlink(&self, node: &Waiter) {
        let this = ptr::from_ref(node).cast_mut();
        let next = node.next.load(Ordering::Relaxed);
        if next == this {
            // The only node.
            self.head.store(ptr::null_mut(), Ordering::Relaxed);
            return;
        }
        let prev = node.prev.load(Ordering::Relaxed);
        // SAFETY: `prev` and `next` are `node`'s neighbours in the list, so
        // they are linked and live; the list lock is held.
        unsafe {
            (*prev).next.store(next, Ordering::Relaxed);
            (*next).prev.store(prev, Ordering::Relaxed);
        }
        if self.head.load(Ordering::Relaxed) == this {
            self.head.store(next, Ordering::Relaxed);
        }
    }

    /// Takes `node` out of the queue if no notifier did, and says whether
    /// one did (whether the waiter was chosen). After this returns no
    /// notifier touches `node` again, so its thread may pop it off its stack.
    ///
    /// # Safety
    ///
    /// `node` was linked in this queue by [`push_back`](Self::push_back) and
    /// has not been through `leave` since, nor seen `NOTIFIED`.
    unsafe fn leave(&self, node: &Waiter) -> bool {
        {
            let _list = self.list.lock();
            if node.state.load(Ordering::Relaxed) == WAITING {
                // SAFETY: `WAITING` under the list lock means linked (the
                // state invariant), and we hold the list lock.
                unsafe { self.unlink(node) };
                return false;
            }
        }
        // Chosen: the notifier has let go of the list lock, but may still
        // read the node and store `NOTIFIED`; the node must outlive that.
        await_notified::<B>(&node.state);
        true
    }

    /// Wakes at most `n` waiters, longest-waiting first; returns how many.
    pub(crate) fn notify(&self, n: usize) -> usize {
        if n == 0 || !self.has_waiters() {
            return 0;
        }
        // Choose under the list lock: unlink from the head, mark `CHOSEN`,
        // and chain the chosen nodes through their own `next` links.
        let mut first: *mut Waiter = ptr::null_mut();
        let mut last: *mut Waiter = ptr::null_mut();
        let mut chosen = 0;
        {
            let _list = self.list.lock();
            while chosen < n {
                let head = self.head.load(Ordering::Relaxed);
                if head.is_null() {
                    break;
                }
                // SAFETY: `head` is linked, hence `WAITING` and live, and it
                // stays live while we hold the list lock: its thread must
                // take the list lock to leave a `WAITING` node. Once we mark
                // it `CHOSEN` below, its thread waits for `NOTIFIED` before
                // the node goes away (see the module docs).
                let node = unsafe { &*head };
                // SAFETY: the list lock is held and `node` is linked.
                unsafe { self.unlink(node) };
                node.state.store(CHOSEN, Ordering::Relaxed);
                node.next.store(ptr::null_mut(), Ordering::Relaxed);
                if last.is_null() {
                    first = head;
                } else {
                    // SAFETY: `last` was chosen above: `CHOSEN` and live.
                    unsafe { &*last }.next.store(head, Ordering::Relaxed);
                }
                last = head;
                chosen += 1;
            }
        }
        // Tell each chosen thread, outside the list lock, longest-waiting
        // first.
        let mut node = first;
        while !node.is_null() {
            // SAFETY: `node` is `CHOSEN`: its thread does not leave before
            // it sees `NOTIFIED`, which only the store below gives it, so
            // the node is live until then. Its `next` is ours alone (set
            // above, not touched by its thread).
            let next = unsafe { &*node }.next.load(Ordering::Relaxed);
            // SAFETY: as above; the raw pointer is made without a reference
            // that could outlive the node.
            let word = unsafe { &raw const (*node).state };
            // SAFETY: the node is live until this store completes (its thread
            // needs it to see `NOTIFIED`); it is our last access to the node.
            unsafe { (*word).store(NOTIFIED, Ordering::Release) };
            // From here the node may be gone: the wake takes the address as
            // a key only (the `Backend` contract lets it dangle).
            B::wake_one(word);
            node = next;
        }
        chosen
    }

    /// Links a node for the calling thread, releases `lock` completely,
    /// sleeps through `wait` until notified or until `wait` reports the
    /// deadline passed, leaves the queue, and takes `lock` back as it was.
    /// Returns whether a notify chose this thread.
    ///
    /// With [`backend::wait_forever`] it returns only when notified.
    ///
    /// # Errors
    ///
    /// [`NotHeldError`] when the caller does not hold `lock`; nothing changes
    /// then.
    pub(crate) fn wait<L>(
        &self,
        lock: &L,
        mut wait: impl FnMut(&AtomicU32, u32) -> bool,
    ) -> Result<bool, NotHeldError>
    where
        L: ConditionLock<Backend = B> + ?Sized,
    {
        if !lock.is_owned() {
            return Err(NotHeldError);
        }
        // The node stays pinned in this frame until the function returns;
        // from here on it is only used through shared references.
        let node = pin!(Waiter::new());
        let node: &Waiter = &node;
        {
            let _list = self.list.lock();
            // SAFETY: the list lock is held; `node` is fresh (not linked)
            // and pinned, and before this frame ends, on every path
            // (unwinding included), either `Waiting` below takes it out of
            // the queue or its notifier has stored `NOTIFIED`, its last
            // access.
            unsafe { self.push_back(node) };
        }
        let mut waiting = Waiting { queue: self, node, lock, saved: None, linked: true };
        let Ok(saved) = lock.release_save() else {
            // Another thread released a plain `Lock` between the check and
            // here. Leave; if a notify chose us meanwhile, pass it on so that
            // no notification is lost.
            if waiting.leave() {
                self.notify(1);
            }
            return Err(NotHeldError);
        };
        waiting.saved = Some(saved);
        // Spin a little before the first sleep (`Backend::SPIN_LIMIT`, as
        // every primitive does): a hand-off between threads that take turns
        // often comes within microseconds, and a waiter that is still awake
        // skips the sleep and the scheduler's wake-up latency (ping-pong on
        // a 16-core machine: ~10 us per round trip without, ~4.5 with).
        let mut spins = 0;
        let notified = loop {
            let state = node.state.load(Ordering::Acquire);
            if state == NOTIFIED {
                // The notifier unlinked the node and is done with it: no
                // list lock on the way out.
                waiting.linked = false;
                break true;
            }
            if spins < B::SPIN_LIMIT {
                spins += 1;
                spin_hint();
                continue;
            }
            // `WAITING`, or `CHOSEN` (the notifier is about to store
            // `NOTIFIED` and wake us).
            if !wait(&node.state, state) {
                // The deadline passed: leave, unless a notifier chose us.
                break waiting.leave();
            }
        };
        waiting.restore();
        Ok(notified)
    }
}

/// Waits until a `CHOSEN` node's state is `NOTIFIED`: spins first (the
/// notifier is a few instructions away from the store, unless it was
/// preempted), then sleeps on the word. It never returns early, since the
/// notifier still writes to the node, not even when a backend call panics:
/// the guard then spins until the store.
fn await_notified<B: Backend>(state: &AtomicU32) {
    /// Spins until `NOTIFIED` if dropped during unwinding.
    struct SpinUntilNotified<'a>(&'a AtomicU32);
    impl Drop for SpinUntilNotified<'_> {
        fn drop(&mut self) {
            while self.0.load(Ordering::Acquire) != NOTIFIED {
                spin_hint();
            }
        }
    }
    let guard = SpinUntilNotified(state);
    let mut spins = 0;
    loop {
        let now = state.load(Ordering::Acquire);
        if now == NOTIFIED {
            break;
        }
        if spins < B::SPIN_LIMIT {
            spins += 1;
            spin_hint();
        } else {
            B::wait(state, now);
        }
    }
    core::mem::forget(guard);
}

/// A thread inside [`WaitQueue::wait`]: on every way out, unwinding
/// included, its node leaves the queue and its lock is taken back.
struct Waiting<'a, B: Backend, L: ConditionLock<Backend = B> + ?Sized> {
    queue: &'a WaitQueue<B>,
    node: &'a Waiter,
    lock: &'a L,
    saved: Option<L::Saved>,
    linked: bool,
}

impl<B: Backend, L: ConditionLock<Backend = B> + ?Sized> Waiting<'_, B, L> {
    /// Leaves the queue (once); whether a notify chose this thread.
    fn leave(&mut self) -> bool {
        if !self.linked {
            return false;
        }
        self.linked = false;
        // SAFETY: `node` was linked by `WaitQueue::wait`, and `linked` says
        // it has not left since nor seen `NOTIFIED`.
        unsafe { self.queue.leave(self.node) }
    }

    /// Takes the lock back as it was released.
    fn restore(&mut self) {
        if let Some(saved) = self.saved.take() {
            // This thread released every level it had and holds none now, so
            // restoring them cannot overflow.
            let _ = self.lock.acquire_restore(saved);
        }
    }
}

impl<B: Backend, L: ConditionLock<Backend = B> + ?Sized> Drop for Waiting<'_, B, L> {
    fn drop(&mut self) {
        // Only reached with work left when a backend or clock panicked inside
        // the wait: the node must still leave before its frame goes away.
        self.leave();
        self.restore();
    }
}
