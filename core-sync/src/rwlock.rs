//! `ReadWriteLock`: the `readerwriterlock` package's `RWLockRead`,
//! `RWLockWrite`, `RWLockFair` and `RWLockFairD`.
//!
//! # State machine
//!
//! Two `AtomicU32` words. `state` holds everything a decision depends on, so
//! every transition is one compare-exchange on it. `writer_wake` is a
//! sequence number that only queued writers sleep on; it is bumped after the
//! state change that a writer must see and before the wake, so a writer that
//! read the old number cannot sleep through its wake. Readers sleep on
//! `state` itself.
//!
//! | bits | name | meaning |
//! | --- | --- | --- |
//! | 0..=14 | `COUNT` | without `WRITE_LOCKED`: the readers holding the lock; with it: the readers *queued* for the next read phase |
//! | 15 | `WRITE_LOCKED` | a writer holds the lock |
//! | 16 | `HANDOFF` | (with `WRITE_LOCKED`) the lock was handed to one of the queued writers, which has not claimed it yet |
//! | 17 | `READERS_PARKED` | readers may sleep on `state` without being counted (they wait for a queued writer to get in, or for room in `COUNT`); whoever changes what they wait for clears it and wakes them all |
//! | 18 | `PHASE` | flipped by every *grant*, cleared whenever the lock goes free; a queued reader owns a read lock as soon as `PHASE` differs from the value it queued under (or `WRITE_LOCKED` is clear) |
//! | 19..=31 | `WRITERS` | writers queued (sleeping on `writer_wake`), not counting the one a `HANDOFF` is meant for |
//!
//! The policy ([`ReadWritePolicy`]) steers two decisions and nothing else:
//!
//! | | [`ReadPreferring`] | [`WritePreferring`] | [`Fair`] |
//! | --- | --- | --- | --- |
//! | a new reader while `WRITERS > 0` and readers hold the lock | enters | parks | parks |
//! | a writer releases with readers and writers queued | grant to the readers | hand off to a writer | grant to the readers |
//!
//! Transitions:
//!
//! - **read acquire**: `COUNT += 1` when `WRITE_LOCKED` is clear and the
//!   policy admits new readers (`WRITERS == 0`, or `ReadPreferring`): one
//!   mask test on `state + 1` (a full `COUNT` carries into `WRITE_LOCKED`).
//!   Otherwise, while a writer holds the lock, the reader *queues*
//!   (`COUNT += 1` under `WRITE_LOCKED`, remembering `PHASE`) and sleeps until
//!   `PHASE` flips: then the releasing writer has already counted it as a
//!   holder. In a read phase that a queued writer is waiting to end, a new
//!   reader sets `READERS_PARKED` and sleeps until that writer gets in (then
//!   it queues behind it) or gives up.
//! - **read release**: `COUNT -= 1`, refused (nothing changed) when no
//!   reader holds the lock. The uncontended case (the only reader, nobody
//!   queued: the word is exactly `ONE_READER`, since `PHASE` is cleared when
//!   the lock goes free) is one compare-exchange from `ONE_READER` to 0
//!   with no load before it. The last reader out with `WRITERS > 0`
//!   hands the lock to a writer: `WRITERS -= 1`, `WRITE_LOCKED | HANDOFF`,
//!   bump `writer_wake`, wake one writer. No reader or new writer can get in
//!   between.
//! - **write acquire**: `WRITE_LOCKED` when `COUNT == 0` and no writer holds
//!   it (the lock is never free while writers are queued: every release that
//!   frees it with `WRITERS > 0` hands it off instead). Otherwise
//!   `WRITERS += 1` and sleep on `writer_wake` until a `HANDOFF` appears; the
//!   first queued writer to see it clears it and owns the lock.
//! - **write release**, with `q` queued readers: a *grant*
//!   (`COUNT = q`, `WRITE_LOCKED` cleared, `PHASE` flipped, wake all readers)
//!   or a *handoff* to the next writer (`COUNT` keeps the queued readers), as
//!   the policy table says; with nobody queued, the lock is free.
//! - **downgrade**: `WRITE_LOCKED` cleared and `COUNT = 1 + q` in one step
//!   (the queued readers join; `PHASE` flips when `q > 0`): no writer can get
//!   in between.
//! - **timeouts** undo exactly their own mark: a writer `WRITERS -= 1` (and
//!   wakes parked readers when it was the last), unless a `HANDOFF` is
//!   pending, which it then takes; a queued reader `COUNT -= 1`, unless
//!   `PHASE` already flipped or `WRITE_LOCKED` is clear, which means it
//!   holds the lock.
//!
//! `Fair` is therefore phase-fair: read and write phases alternate while
//! both kinds wait, so a writer waits for at most one read phase and a reader
//! for at most one write phase. `WritePreferring` lets writers hand the lock
//! to each other while any is queued; `ReadPreferring` lets readers in
//! whenever no writer holds it.
//!
//! Why counts rather than flags: std's futex `RwLock` keeps only "readers
//! waiting" and "writers waiting" bits, which a waker clears and a woken
//! thread sets again; that cannot tell a timed-out waiter whether it was the
//! last one, and lets a reader slip in between a writer's wake and its
//! acquire. `parking_lot` keeps its queue in a global hash table. Exact
//! counts in the word let a timeout undo exactly its own mark and let every
//! release hand the lock over without a gap, with no table and no
//! allocation.
//!
//! An uncontended read acquire is a load and a compare-exchange, its release
//! one compare-exchange; a write acquire and release a load and a
//! compare-exchange each. A wake call happens only when `WRITERS`,
//! `READERS_PARKED` or queued readers say that someone sleeps.
//!
//! Why the read release guesses rather than subtracting blindly like std's
//! (`fetch_sub`): a release of a lock that no reader holds must be an `Err`
//! that changes nothing (Python raises), and a blind subtraction would
//! borrow through `COUNT` into the other fields for everyone to see before
//! it could be undone. A load before the compare-exchange would cost, on
//! x86, the wait for the acquire's locked instruction to complete.
//! When the guess is wrong (other readers hold the lock too), the failed
//! compare-exchange returns the word and the release retries from it: one
//! extra locked instruction on a cache line it already owns, where a load
//! first would have fetched the line shared and then upgraded it.
//!
//! Limits: 32 767 readers hold the lock at once, 32 766 queue behind a writer
//! (more park and queue as room frees up), and 8 191 writers queue; beyond
//! that, a writer polls instead of sleeping. A thread that takes more read
//! locks than that without releasing waits for its own releases.

use core::fmt;
use core::marker::PhantomData;
use core::time::Duration;

use crate::backend::{self, Backend, Deadline, DefaultBackend, TimedBackend};
use crate::error::ReleaseError;
use crate::spin::{Backoff, RW_FIRST_BACKOFF};
use crate::sync::{AtomicU32, Ordering, spin_hint};

const COUNT_MASK: u32 = (1 << 15) - 1;
const ONE_READER: u32 = 1;
/// One less than the most readers `COUNT` holds, so that a downgrade (the
/// writer plus every queued reader) still fits.
const MAX_QUEUED_READERS: u32 = COUNT_MASK - 1;
const WRITE_LOCKED: u32 = 1 << 15;
const HANDOFF: u32 = 1 << 16;
const READERS_PARKED: u32 = 1 << 17;
const PHASE: u32 = 1 << 18;
const WRITER_SHIFT: u32 = 19;
const ONE_WRITER: u32 = 1 << WRITER_SHIFT;
const WRITERS_MASK: u32 = !0 << WRITER_SHIFT;
const MAX_QUEUED_WRITERS: u32 = WRITERS_MASK >> WRITER_SHIFT;
/// A value `state` never holds: `HANDOFF` always comes with `WRITE_LOCKED`.
const NEVER: u32 = HANDOFF;

#[inline]
const fn count(state: u32) -> u32 {
    state & COUNT_MASK
}

#[inline]
const fn queued_writers(state: u32) -> u32 {
    state >> WRITER_SHIFT
}

/// The bits of `state + ONE_READER` that keep a new reader out: a writer
/// holds the lock, or (with the policy) one is queued.
#[inline]
const fn reader_block_mask<P: ReadWritePolicy>() -> u32 {
    if P::READERS_WAIT_FOR_QUEUED_WRITERS { WRITE_LOCKED | WRITERS_MASK } else { WRITE_LOCKED }
}

/// Whether a reader that is not queued may enter now: no writer holds the
/// lock, `COUNT` has room, and (with the policy) no writer is queued.
///
/// One mask test on `state + ONE_READER`: a full `COUNT` carries into
/// `WRITE_LOCKED`, and under `WRITE_LOCKED` `COUNT` (the queued readers) is
/// never full, so the carry never hides a set `WRITE_LOCKED`.
#[inline]
fn admits_reader<P: ReadWritePolicy>(state: u32) -> bool {
    state.wrapping_add(ONE_READER) & reader_block_mask::<P>() == 0
}

mod sealed {
    #[allow(unreachable_pub)]
    pub trait Sealed {}
}

/// Who goes first when readers and writers both wait for a
/// [`ReadWriteLock`]: [`ReadPreferring`], [`WritePreferring`] or [`Fair`].
///
/// The trait is sealed; its constants steer the lock's state machine.
pub trait ReadWritePolicy: sealed::Sealed {
    /// Whether a new reader waits while a writer is queued, rather than join
    /// the readers that hold the lock.
    const READERS_WAIT_FOR_QUEUED_WRITERS: bool;
    /// Whether a releasing writer admits the queued readers before handing
    /// the lock to the next queued writer.
    const WRITER_RELEASE_ADMITS_READERS_FIRST: bool;
    /// The `readerwriterlock` class the policy reproduces.
    const PYTHON_NAME: &'static str;
}

/// Readers first (`readerwriterlock.rwlock.RWLockRead`): a reader enters
/// whenever no writer holds the lock, even while writers wait, and a
/// releasing writer admits the waiting readers first. A steady stream of
/// overlapping readers starves writers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ReadPreferring;

/// Writers first (`readerwriterlock.rwlock.RWLockWrite`): once a writer
/// waits, new readers wait behind it, and a releasing writer hands the lock
/// to the next waiting writer before any reader. A steady stream of writers
/// starves readers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct WritePreferring;

/// Neither starves (`readerwriterlock.rwlock.RWLockFair`): new readers wait
/// behind a waiting writer, and a releasing writer admits the readers that
/// waited for it before the next writer, so read and write phases alternate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Fair;

impl sealed::Sealed for ReadPreferring {}
impl sealed::Sealed for WritePreferring {}
impl sealed::Sealed for Fair {}

impl ReadWritePolicy for ReadPreferring {
    const READERS_WAIT_FOR_QUEUED_WRITERS: bool = false;
    const WRITER_RELEASE_ADMITS_READERS_FIRST: bool = true;
    const PYTHON_NAME: &'static str = "RWLockRead";
}

impl ReadWritePolicy for WritePreferring {
    const READERS_WAIT_FOR_QUEUED_WRITERS: bool = true;
    const WRITER_RELEASE_ADMITS_READERS_FIRST: bool = false;
    const PYTHON_NAME: &'static str = "RWLockWrite";
}

impl ReadWritePolicy for Fair {
    const READERS_WAIT_FOR_QUEUED_WRITERS: bool = true;
    const WRITER_RELEASE_ADMITS_READERS_FIRST: bool = true;
    const PYTHON_NAME: &'static str = "RWLockFair";
}

/// A reader-writer lock: the `readerwriterlock` package's `RWLockFair`
/// (the default policy), `RWLockRead` ([`ReadPreferring`]), `RWLockWrite`
/// ([`WritePreferring`]) and, with [`downgrade`](ReadWriteLock::downgrade),
/// `RWLockFairD`.
///
/// Any number of readers hold it together; a writer holds it alone. Eight
/// bytes, `const`-constructible, no allocation. Like Python's lock objects
/// it has no owner: a release from any thread is accepted while the lock is
/// held that way, and an error when it is not. For data protected by the
/// lock, use [`RwLock<T>`](crate::RwLock), built on this type.
///
/// | Python | Rust |
/// | --- | --- |
/// | `rw = rwlock.RWLockFair()` | `let rw = ReadWriteLock::new();` |
/// | `rw = rwlock.RWLockRead()` | `let rw = ReadWriteLock::<ReadPreferring>::with_policy();` |
/// | `rw = rwlock.RWLockWrite()` | `let rw = ReadWriteLock::<WritePreferring>::with_policy();` |
/// | `r = rw.gen_rlock(); r.acquire()` | `rw.acquire_read()` |
/// | `r.acquire(blocking=False)` | `rw.try_acquire_read()` |
/// | `r.acquire(timeout=0.5)` | `rw.acquire_read_timeout(Duration::from_millis(500))` |
/// | `r.release()` | `rw.release_read()?` |
/// | `with rw.gen_rlock():` | `let _guard = rw.read();` |
/// | `w = rw.gen_wlock(); w.acquire()` ... | `rw.acquire_write()`, `try_acquire_write`, `acquire_write_timeout`, `release_write()?`, `write()` |
/// | `w.downgrade()` (`RWLockFairD`) | `rw.downgrade()?`, or [`WriteGuard::downgrade`] |
///
/// ```
/// use core_sync::{ReadWriteLock, ReleaseError};
/// use std::time::Duration;
///
/// static RW: ReadWriteLock = ReadWriteLock::new();     // RWLockFair()
///
/// RW.acquire_read();                                   // gen_rlock().acquire()
/// assert!(RW.try_acquire_read());                      // readers share it
/// assert!(!RW.try_acquire_write());                    // ... and keep writers out
/// assert!(!RW.acquire_write_timeout(Duration::from_millis(1)));
/// RW.release_read().unwrap();
/// RW.release_read().unwrap();
/// assert_eq!(RW.release_read(), Err(ReleaseError::NotLocked));
///
/// let writing = RW.write();                            // with rw.gen_wlock():
/// assert!(!RW.try_acquire_read());
/// let reading = writing.downgrade();                   // RWLockFairD: downgrade()
/// assert_eq!(RW.readers(), 1);
/// drop(reading);
/// assert!(!RW.is_locked());
/// ```
pub struct ReadWriteLock<P = Fair, B = DefaultBackend> {
    state: AtomicU32,
    writer_wake: AtomicU32,
    marker: PhantomData<fn() -> (P, B)>,
}

impl ReadWriteLock {
    /// A new, unlocked [`Fair`] lock on the [default backend](DefaultBackend)
    /// (`rwlock.RWLockFair()`).
    #[cfg(not(loom))]
    #[inline]
    pub const fn new() -> Self {
        Self::with_backend()
    }

    /// A new, unlocked [`Fair`] lock on the [default backend](DefaultBackend)
    /// (`rwlock.RWLockFair()`).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self::with_backend()
    }
}

impl<P: ReadWritePolicy> ReadWriteLock<P> {
    /// A new, unlocked lock with the policy `P` on the
    /// [default backend](DefaultBackend):
    /// `ReadWriteLock::<ReadPreferring>::with_policy()` is `rwlock.RWLockRead()`.
    #[cfg(not(loom))]
    #[inline]
    pub const fn with_policy() -> Self {
        Self::with_backend()
    }

    /// A new, unlocked lock with the policy `P` on the
    /// [default backend](DefaultBackend).
    #[cfg(loom)]
    pub fn with_policy() -> Self {
        Self::with_backend()
    }
}

impl<P: ReadWritePolicy, B: Backend> ReadWriteLock<P, B> {
    /// A new, unlocked lock with the policy `P`, waiting through the backend
    /// `B`.
    #[cfg(not(loom))]
    #[inline]
    pub const fn with_backend() -> Self {
        ReadWriteLock {
            state: AtomicU32::new(0),
            writer_wake: AtomicU32::new(0),
            marker: PhantomData,
        }
    }

    /// A new, unlocked lock with the policy `P`, waiting through the backend
    /// `B`.
    #[cfg(loom)]
    pub fn with_backend() -> Self {
        ReadWriteLock {
            state: AtomicU32::new(0),
            writer_wake: AtomicU32::new(0),
            marker: PhantomData,
        }
    }

    // ----- readers -----

    /// Takes a shared (read) lock, waiting as the policy says
    /// (`rw.gen_rlock().acquire()`).
    #[inline]
    pub fn acquire_read(&self) {
        if !self.try_acquire_read() {
            self.read_slow(backend::wait_forever::<B>);
        }
    }

    /// Takes a shared lock only if the policy lets a reader in now; returns
    /// at once either way (`acquire(blocking=False)`).
    ///
    /// Under [`WritePreferring`] and [`Fair`] this fails while a writer
    /// waits, even if only readers hold the lock.
    #[inline]
    pub fn try_acquire_read(&self) -> bool {
        let mut state = self.state.load(Ordering::Relaxed);
        while admits_reader::<P>(state) {
            match self.state.compare_exchange_weak(
                state,
                state + ONE_READER,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => state = now,
            }
        }
        false
    }

    /// Gives a shared lock back (`rw.gen_rlock().release()`).
    ///
    /// A read lock records no owner, so any thread may release one of the
    /// read locks that are held.
    ///
    /// # Errors
    ///
    /// [`ReleaseError::NotLocked`] when no reader holds the lock (it is free
    /// or write-locked); nothing changes then.
    #[inline]
    pub fn release_read(&self) -> Result<(), ReleaseError> {
        // The uncontended case: this is the only reader and nobody waits, so
        // the word is exactly `ONE_READER` (`PHASE` is cleared whenever the
        // lock goes free). A guessed compare-exchange needs no load first;
        // any other state comes back from it and goes the general way.
        match self.state.compare_exchange(ONE_READER, 0, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => Ok(()),
            Err(state) => self.release_read_slow(state),
        }
    }

    /// [`release_read`](Self::release_read) from `state`, whatever it is.
    #[cold]
    fn release_read_slow(&self, mut state: u32) -> Result<(), ReleaseError> {
        loop {
            if state & WRITE_LOCKED != 0 || count(state) == 0 {
                return Err(ReleaseError::NotLocked);
            }
            // The last reader out hands the lock to a queued writer, so that
            // neither a new reader nor a new writer can get in first.
            let hand_off = count(state) == 1 && state & WRITERS_MASK != 0;
            let mut new = if hand_off {
                (state - ONE_READER - ONE_WRITER) | WRITE_LOCKED | HANDOFF
            } else {
                state - ONE_READER
            };
            if new & (WRITE_LOCKED | COUNT_MASK) == 0 {
                // Free: nobody is queued, so nobody compares `PHASE`; clear
                // it, so the next uncontended release finds `ONE_READER`.
                new &= !PHASE;
            }
            // Parked readers wait for a writer to get in (then they queue
            // behind it) or for room among the readers.
            let wake_readers = state & READERS_PARKED != 0 && (hand_off || admits_reader::<P>(new));
            if wake_readers {
                new &= !READERS_PARKED;
            }
            match self.state.compare_exchange_weak(state, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => {
                    if hand_off {
                        self.wake_writer();
                    }
                    if wake_readers {
                        B::wake_all(&self.state);
                    }
                    return Ok(());
                }
                Err(now) => state = now,
            }
        }
    }

    /// Takes a shared lock and returns a guard that releases it when
    /// dropped, also during a panic (`with rw.gen_rlock():`).
    #[inline]
    pub fn read(&self) -> ReadGuard<'_, P, B> {
        self.acquire_read();
        ReadGuard { lock: self }
    }

    /// Takes a shared lock if the policy lets a reader in now, and returns
    /// its guard.
    #[inline]
    pub fn try_read(&self) -> Option<ReadGuard<'_, P, B>> {
        self.try_acquire_read().then_some(ReadGuard { lock: self })
    }

    /// The contended read path. `wait` sleeps while the word holds the value
    /// and returns `false` once the caller's deadline has passed.
    #[cold]
    fn read_slow(&self, mut wait: impl FnMut(&AtomicU32, u32) -> bool) -> bool {
        let mut backoff = Backoff::starting_at(RW_FIRST_BACKOFF);
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if admits_reader::<P>(state) {
                match self.state.compare_exchange_weak(
                    state,
                    state + ONE_READER,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return true,
                    Err(now) => {
                        state = now;
                        continue;
                    }
                }
            }
            // A writer holds the lock and nobody waits behind it: a short
            // critical section may end before a sleep would even start.
            if state & !PHASE == WRITE_LOCKED && backoff.wait::<B>() {
                state = self.state.load(Ordering::Relaxed);
                continue;
            }
            if state & WRITE_LOCKED != 0 && count(state) < MAX_QUEUED_READERS {
                // Queue for the read phase that follows this writer.
                match self.state.compare_exchange_weak(
                    state,
                    state + ONE_READER,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return self.read_queued(state & PHASE, wait),
                    Err(now) => {
                        state = now;
                        continue;
                    }
                }
            }
            // A read phase that a queued writer waits to end, or no room in
            // the count: park, uncounted, until that changes.
            let parked = state | READERS_PARKED;
            if state != parked
                && let Err(now) = self.state.compare_exchange_weak(
                    state,
                    parked,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
            {
                state = now;
                continue;
            }
            if !wait(&self.state, parked) {
                return false;
            }
            state = self.state.load(Ordering::Relaxed);
        }
    }

    /// Waits, queued under `phase`, for a releasing writer to grant this
    /// reader its lock.
    ///
    /// Granted means `PHASE` differs from `phase`, or `WRITE_LOCKED` is clear:
    /// readers queue only under `WRITE_LOCKED`, which is cleared only by a
    /// grant that counts them all, and this reader's read lock keeps writers
    /// out until it has seen the grant. (The second test matters because a
    /// release that frees the lock clears `PHASE`.)
    fn read_queued(&self, phase: u32, mut wait: impl FnMut(&AtomicU32, u32) -> bool) -> bool {
        let granted = |state: u32| state & PHASE != phase || state & WRITE_LOCKED == 0;
        loop {
            // Acquire: a grant is the writer's Release compare-exchange.
            let state = self.state.load(Ordering::Acquire);
            if granted(state) {
                return true;
            }
            if !wait(&self.state, state) {
                break;
            }
        }
        // Timed out: leave the queue, unless a grant counted us meanwhile.
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            if granted(state) {
                return true;
            }
            // `PHASE` unchanged: a writer still holds the lock and `COUNT`
            // still counts this reader among the queued ones.
            match self.state.compare_exchange_weak(
                state,
                state - ONE_READER,
                Ordering::Relaxed,
                Ordering::Acquire,
            ) {
                Ok(_) => return false,
                Err(now) => state = now,
            }
        }
    }

    // ----- writers -----

    /// Takes the exclusive (write) lock, waiting as the policy says
    /// (`rw.gen_wlock().acquire()`).
    #[inline]
    pub fn acquire_write(&self) {
        if !self.try_acquire_write() {
            self.write_slow(backend::wait_forever::<B>);
        }
    }

    /// Takes the write lock only if nobody holds the lock; returns at once
    /// either way (`acquire(blocking=False)`).
    #[inline]
    pub fn try_acquire_write(&self) -> bool {
        let mut state = self.state.load(Ordering::Relaxed);
        while state & (WRITE_LOCKED | COUNT_MASK) == 0 {
            match self.state.compare_exchange_weak(
                state,
                state | WRITE_LOCKED,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => state = now,
            }
        }
        false
    }

    /// Gives the write lock back (`rw.gen_wlock().release()`), to the
    /// waiting readers or the next waiting writer as the policy says.
    ///
    /// # Errors
    ///
    /// [`ReleaseError::NotLocked`] when no writer holds the lock; nothing
    /// changes then.
    #[inline]
    pub fn release_write(&self) -> Result<(), ReleaseError> {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            // Under `HANDOFF` the lock is on its way to a queued writer that
            // has not returned from its acquire yet: nobody may release it.
            if state & (WRITE_LOCKED | HANDOFF) != WRITE_LOCKED {
                return Err(ReleaseError::NotLocked);
            }
            let queued_readers = count(state);
            let writers_queued = state & WRITERS_MASK != 0;
            let grant =
                queued_readers > 0 && (P::WRITER_RELEASE_ADMITS_READERS_FIRST || !writers_queued);
            let hand_off = !grant && writers_queued;
            let new = if grant {
                ((state & !(WRITE_LOCKED | COUNT_MASK)) ^ PHASE) | queued_readers
            } else if hand_off {
                // The queued readers (if any) stay queued in `COUNT`.
                (state - ONE_WRITER) | HANDOFF
            } else {
                // Free, with nobody queued: clear `PHASE` too (see
                // `release_read`).
                state & !(WRITE_LOCKED | PHASE)
            };
            let wake_readers = grant || state & READERS_PARKED != 0;
            match self.state.compare_exchange_weak(
                state,
                new & !READERS_PARKED,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if hand_off {
                        self.wake_writer();
                    }
                    if wake_readers {
                        B::wake_all(&self.state);
                    }
                    return Ok(());
                }
                Err(now) => state = now,
            }
        }
    }

    /// Turns the write lock into a read lock (`RWLockFairD`'s
    /// `downgrade()`), in one step: no writer can get in between. Readers
    /// that were waiting for this writer join at the same moment; under
    /// [`WritePreferring`] and [`Fair`], readers that arrive while a writer
    /// waits still wait.
    ///
    /// # Errors
    ///
    /// [`ReleaseError::NotLocked`] when no writer holds the lock; nothing
    /// changes then.
    pub fn downgrade(&self) -> Result<(), ReleaseError> {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if state & (WRITE_LOCKED | HANDOFF) != WRITE_LOCKED {
                return Err(ReleaseError::NotLocked);
            }
            let queued_readers = count(state);
            let mut new =
                (state & !(WRITE_LOCKED | COUNT_MASK | READERS_PARKED)) | (queued_readers + 1);
            if queued_readers > 0 {
                new ^= PHASE;
            }
            let wake_readers = queued_readers > 0 || state & READERS_PARKED != 0;
            match self.state.compare_exchange_weak(state, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => {
                    if wake_readers {
                        B::wake_all(&self.state);
                    }
                    return Ok(());
                }
                Err(now) => state = now,
            }
        }
    }

    /// Takes the write lock and returns a guard that releases it when
    /// dropped, also during a panic (`with rw.gen_wlock():`).
    #[inline]
    pub fn write(&self) -> WriteGuard<'_, P, B> {
        self.acquire_write();
        WriteGuard { lock: self }
    }

    /// Takes the write lock if nobody holds the lock, and returns its guard.
    #[inline]
    pub fn try_write(&self) -> Option<WriteGuard<'_, P, B>> {
        self.try_acquire_write().then_some(WriteGuard { lock: self })
    }

    /// Bumps the writers' sequence and wakes one queued writer: called after
    /// the state change (a `HANDOFF`) it must see.
    #[inline]
    fn wake_writer(&self) {
        self.writer_wake.fetch_add(1, Ordering::Release);
        B::wake_one(&self.writer_wake);
    }

    /// The contended write path; `wait` as in [`read_slow`](Self::read_slow).
    #[cold]
    fn write_slow(&self, mut wait: impl FnMut(&AtomicU32, u32) -> bool) -> bool {
        let mut backoff = Backoff::starting_at(RW_FIRST_BACKOFF);
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if state & (WRITE_LOCKED | COUNT_MASK) == 0 {
                match self.state.compare_exchange_weak(
                    state,
                    state | WRITE_LOCKED,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return true,
                    Err(now) => {
                        state = now;
                        continue;
                    }
                }
            }
            // Held, and nobody waits yet: the holders may be done soon.
            let nobody_waits = state & (WRITERS_MASK | READERS_PARKED | HANDOFF) == 0
                && (state & WRITE_LOCKED == 0 || count(state) == 0);
            if nobody_waits && backoff.wait::<B>() {
                state = self.state.load(Ordering::Relaxed);
                continue;
            }
            if queued_writers(state) == MAX_QUEUED_WRITERS {
                // No room to queue: poll. Waiting for a value that `state`
                // never holds returns at once, reporting only whether time
                // is left (and never sleeps, so it cannot swallow a wake).
                spin_hint();
                if !wait(&self.state, NEVER) {
                    return false;
                }
                state = self.state.load(Ordering::Relaxed);
                continue;
            }
            // Queue. The lock is held (checked by this compare-exchange), so
            // whoever frees it will see this writer.
            match self.state.compare_exchange_weak(
                state,
                state + ONE_WRITER,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return self.write_queued(wait),
                Err(now) => state = now,
            }
        }
    }

    /// Waits, queued, for a `HANDOFF`, and claims it.
    fn write_queued(&self, mut wait: impl FnMut(&AtomicU32, u32) -> bool) -> bool {
        loop {
            // The sequence first: a handoff changes the state and then bumps
            // the sequence, so either the state read below shows it or the
            // wait returns at once.
            let seq = self.writer_wake.load(Ordering::Acquire);
            if self.claim_handoff() {
                return true;
            }
            if !wait(&self.writer_wake, seq) {
                break;
            }
        }
        // Timed out: leave the queue, or take a handoff that came meanwhile
        // (this writer was counted for it, so nobody else may).
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            if state & HANDOFF != 0 {
                match self.state.compare_exchange_weak(
                    state,
                    state & !HANDOFF,
                    Ordering::Acquire,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return true,
                    Err(now) => {
                        state = now;
                        continue;
                    }
                }
            }
            let mut new = state - ONE_WRITER;
            // The last queued writer gone: readers parked behind it may enter.
            let wake_readers = state & READERS_PARKED != 0 && new & WRITERS_MASK == 0;
            if wake_readers {
                new &= !READERS_PARKED;
            }
            match self.state.compare_exchange_weak(state, new, Ordering::Relaxed, Ordering::Acquire)
            {
                Ok(_) => {
                    if wake_readers {
                        B::wake_all(&self.state);
                    }
                    return false;
                }
                Err(now) => state = now,
            }
        }
    }

    /// Claims a pending `HANDOFF`, if there is one.
    #[inline]
    fn claim_handoff(&self) -> bool {
        let mut state = self.state.load(Ordering::Acquire);
        while state & HANDOFF != 0 {
            match self.state.compare_exchange_weak(
                state,
                state & !HANDOFF,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => state = now,
            }
        }
        false
    }

    // ----- snapshots -----

    /// How many readers hold the lock (0 while a writer holds it); a
    /// snapshot.
    #[inline]
    pub fn readers(&self) -> u32 {
        let state = self.state.load(Ordering::Relaxed);
        if state & WRITE_LOCKED == 0 { count(state) } else { 0 }
    }

    /// Whether a writer holds the lock; a snapshot.
    #[inline]
    pub fn is_write_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) & WRITE_LOCKED != 0
    }

    /// Whether anyone, reader or writer, holds the lock; a snapshot.
    #[inline]
    pub fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) & (WRITE_LOCKED | COUNT_MASK) != 0
    }

    /// How many writers are blocked in `acquire_write*` (beyond 8 191, the
    /// extra ones poll and are not counted); a snapshot.
    #[inline]
    pub fn waiting_writers(&self) -> u32 {
        let state = self.state.load(Ordering::Relaxed);
        queued_writers(state) + u32::from(state & HANDOFF != 0)
    }

    /// How many readers are queued behind the writer that holds the lock, to
    /// be let in together when it releases; a snapshot. Readers that wait
    /// for a waiting writer during a read phase are not counted until that
    /// writer holds the lock.
    #[inline]
    pub fn queued_readers(&self) -> u32 {
        let state = self.state.load(Ordering::Relaxed);
        if state & WRITE_LOCKED == 0 { 0 } else { count(state) }
    }
}

impl<P: ReadWritePolicy, B: TimedBackend> ReadWriteLock<P, B> {
    /// Takes a shared lock, waiting at most `timeout`
    /// (`gen_rlock().acquire(timeout=t)`). Returns whether it was taken; on
    /// a timeout the reader leaves no trace in the lock.
    ///
    /// `Duration::ZERO` is [`try_acquire_read`](Self::try_acquire_read);
    /// `Duration::MAX` waits forever.
    #[inline]
    pub fn acquire_read_timeout(&self, timeout: Duration) -> bool {
        if self.try_acquire_read() {
            return true;
        }
        if timeout.is_zero() {
            return false;
        }
        let deadline = Deadline::<B>::after(timeout);
        self.read_slow(|word, value| deadline.wait(word, value))
    }

    /// Takes the write lock, waiting at most `timeout`
    /// (`gen_wlock().acquire(timeout=t)`). Returns whether it was taken; on a
    /// timeout the writer takes back its "writer waiting" mark, so readers it
    /// held back go ahead.
    ///
    /// `Duration::ZERO` is [`try_acquire_write`](Self::try_acquire_write);
    /// `Duration::MAX` waits forever.
    #[inline]
    pub fn acquire_write_timeout(&self, timeout: Duration) -> bool {
        if self.try_acquire_write() {
            return true;
        }
        if timeout.is_zero() {
            return false;
        }
        let deadline = Deadline::<B>::after(timeout);
        self.write_slow(|word, value| deadline.wait(word, value))
    }

    /// Takes a shared lock, waiting at most `timeout`, and returns its guard.
    #[inline]
    pub fn read_timeout(&self, timeout: Duration) -> Option<ReadGuard<'_, P, B>> {
        self.acquire_read_timeout(timeout).then_some(ReadGuard { lock: self })
    }

    /// Takes the write lock, waiting at most `timeout`, and returns its
    /// guard.
    #[inline]
    pub fn write_timeout(&self, timeout: Duration) -> Option<WriteGuard<'_, P, B>> {
        self.acquire_write_timeout(timeout).then_some(WriteGuard { lock: self })
    }
}

impl<P: ReadWritePolicy> Default for ReadWriteLock<P> {
    fn default() -> Self {
        Self::with_backend()
    }
}

impl<P: ReadWritePolicy, B> fmt::Debug for ReadWriteLock<P, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.load(Ordering::Relaxed);
        let write_locked = state & WRITE_LOCKED != 0;
        f.debug_struct("ReadWriteLock")
            .field("policy", &P::PYTHON_NAME)
            .field("write_locked", &write_locked)
            .field("readers", &if write_locked { 0 } else { count(state) })
            .field("waiting_writers", &(queued_writers(state) + u32::from(state & HANDOFF != 0)))
            .field("queued_readers", &if write_locked { count(state) } else { 0 })
            .finish_non_exhaustive()
    }
}

/// Holds a shared lock of a [`ReadWriteLock`] and releases it when dropped
/// (`with rw.gen_rlock():`).
#[must_use = "the read lock is released as soon as the guard is dropped"]
pub struct ReadGuard<'a, P: ReadWritePolicy = Fair, B: Backend = DefaultBackend> {
    lock: &'a ReadWriteLock<P, B>,
}

impl<P: ReadWritePolicy, B: Backend> ReadGuard<'_, P, B> {
    /// The lock this guard holds.
    pub fn lock(&self) -> &ReadWriteLock<P, B> {
        self.lock
    }
}

impl<P: ReadWritePolicy, B: Backend> Drop for ReadGuard<'_, P, B> {
    #[inline]
    fn drop(&mut self) {
        // Another thread may have released a read lock in our name (the lock
        // has no owner); there is nothing to undo then.
        let _ = self.lock.release_read();
    }
}

impl<P: ReadWritePolicy, B: Backend> fmt::Debug for ReadGuard<'_, P, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadGuard").finish_non_exhaustive()
    }
}

/// Holds the write lock of a [`ReadWriteLock`] and releases it when dropped
/// (`with rw.gen_wlock():`).
#[must_use = "the write lock is released as soon as the guard is dropped"]
pub struct WriteGuard<'a, P: ReadWritePolicy = Fair, B: Backend = DefaultBackend> {
    lock: &'a ReadWriteLock<P, B>,
}

impl<'a, P: ReadWritePolicy, B: Backend> WriteGuard<'a, P, B> {
    /// The lock this guard holds.
    pub fn lock(&self) -> &ReadWriteLock<P, B> {
        self.lock
    }

    /// Turns the write lock into a read lock with no writer able to get in
    /// between (`RWLockFairD`'s `downgrade()`); see
    /// [`ReadWriteLock::downgrade`].
    pub fn downgrade(self) -> ReadGuard<'a, P, B> {
        let lock = self.lock;
        core::mem::forget(self);
        if lock.downgrade().is_err() {
            // Another thread released the write lock in our name; take a
            // read lock the ordinary way so the guard holds what it says.
            lock.acquire_read();
        }
        ReadGuard { lock }
    }
}

impl<P: ReadWritePolicy, B: Backend> Drop for WriteGuard<'_, P, B> {
    #[inline]
    fn drop(&mut self) {
        let _ = self.lock.release_write();
    }
}

impl<P: ReadWritePolicy, B: Backend> fmt::Debug for WriteGuard<'_, P, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteGuard").finish_non_exhaustive()
    }
}

#[cfg(not(loom))]
// SAFETY: a shared lock is granted only while `WRITE_LOCKED` is clear and
// keeps it clear (`COUNT > 0` blocks every writer); the exclusive lock is
// granted only by moving `COUNT == 0, WRITE_LOCKED clear` to `WRITE_LOCKED`,
// or by a `HANDOFF` that keeps `WRITE_LOCKED` set from one holder to the
// next. Acquisitions use Acquire and releases Release ordering on `state`.
// Guards are stateless (`GuardSend`): any thread may release, as in Python.
unsafe impl<P: ReadWritePolicy, B: Backend> lock_api::RawRwLock for ReadWriteLock<P, B> {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = ReadWriteLock {
        state: AtomicU32::new(0),
        writer_wake: AtomicU32::new(0),
        marker: PhantomData,
    };

    type SharedGuard = lock_api::GuardSend;
    type ExclusiveGuard = lock_api::GuardSend;

    #[inline]
    fn lock_shared(&self) -> Self::SharedGuard {
        self.acquire_read();
        lock_api::GuardSend::default()
    }

    #[inline]
    fn try_lock_shared(&self) -> Option<Self::SharedGuard> {
        self.try_acquire_read().then(lock_api::GuardSend::default)
    }

    #[inline]
    unsafe fn unlock_shared(&self, _guard: Self::SharedGuard) {
        // The caller holds a shared lock, so this cannot fail.
        let _ = self.release_read();
    }

    #[inline]
    fn lock_exclusive(&self) -> Self::ExclusiveGuard {
        self.acquire_write();
        lock_api::GuardSend::default()
    }

    #[inline]
    fn try_lock_exclusive(&self) -> Option<Self::ExclusiveGuard> {
        self.try_acquire_write().then(lock_api::GuardSend::default)
    }

    #[inline]
    unsafe fn unlock_exclusive(&self, _guard: Self::ExclusiveGuard) {
        // The caller holds the exclusive lock, so this cannot fail.
        let _ = self.release_write();
    }

    #[inline]
    fn is_locked(&self) -> bool {
        ReadWriteLock::is_locked(self)
    }

    #[inline]
    fn is_locked_exclusive(&self) -> bool {
        self.is_write_locked()
    }
}

#[cfg(not(loom))]
// SAFETY: `downgrade` replaces `WRITE_LOCKED` by one reader in a single
// compare-exchange, so no writer can take the lock in between.
unsafe impl<P: ReadWritePolicy, B: Backend> lock_api::RawRwLockDowngrade for ReadWriteLock<P, B> {
    #[inline]
    unsafe fn downgrade(&self, _guard: Self::ExclusiveGuard) -> Self::SharedGuard {
        // The caller holds the exclusive lock, so this cannot fail.
        let _ = ReadWriteLock::downgrade(self);
        lock_api::GuardSend::default()
    }
}

#[cfg(not(loom))]
// SAFETY: the timed forms acquire exactly as the untimed ones do, or not at
// all (a timed-out waiter removes its own mark and holds nothing).
unsafe impl<P: ReadWritePolicy, B: TimedBackend> lock_api::RawRwLockTimed for ReadWriteLock<P, B> {
    type Duration = Duration;
    type Instant = u64;

    #[inline]
    fn try_lock_shared_for(&self, timeout: Duration) -> Option<Self::SharedGuard> {
        self.acquire_read_timeout(timeout).then(lock_api::GuardSend::default)
    }

    /// `deadline` is in nanoseconds on the backend's clock
    /// ([`TimedBackend::now_nanos`]).
    #[inline]
    fn try_lock_shared_until(&self, deadline: u64) -> Option<Self::SharedGuard> {
        let left = deadline.saturating_sub(B::now_nanos());
        self.try_lock_shared_for(Duration::from_nanos(left))
    }

    #[inline]
    fn try_lock_exclusive_for(&self, timeout: Duration) -> Option<Self::ExclusiveGuard> {
        self.acquire_write_timeout(timeout).then(lock_api::GuardSend::default)
    }

    /// `deadline` is in nanoseconds on the backend's clock
    /// ([`TimedBackend::now_nanos`]).
    #[inline]
    fn try_lock_exclusive_until(&self, deadline: u64) -> Option<Self::ExclusiveGuard> {
        let left = deadline.saturating_sub(B::now_nanos());
        self.try_lock_exclusive_for(Duration::from_nanos(left))
    }
}

#[cfg(not(loom))]
/// A reader-writer lock protecting data of type `T`, on a [`Fair`]
/// [`ReadWriteLock`]: the `parking_lot`-style data lock (`lock_api::RwLock`).
///
/// ```
/// let config = core_sync::RwLock::new(vec![1, 2]);
/// {
///     let a = config.read();
///     let b = config.read();                 // readers share it
///     assert_eq!(a.len() + b.len(), 4);
/// }
/// config.write().push(3);
/// let w = config.write();
/// let r = core_sync::RwLockWriteGuard::downgrade(w);
/// assert_eq!(*r, [1, 2, 3]);
/// ```
///
/// With another policy or backend, name the raw lock:
/// `lock_api::RwLock<ReadWriteLock<WritePreferring, B>, T>`.
pub type RwLock<T> = lock_api::RwLock<ReadWriteLock, T>;

#[cfg(not(loom))]
/// The read guard of an [`RwLock`].
pub type RwLockReadGuard<'a, T> = lock_api::RwLockReadGuard<'a, ReadWriteLock, T>;

#[cfg(not(loom))]
/// The write guard of an [`RwLock`].
pub type RwLockWriteGuard<'a, T> = lock_api::RwLockWriteGuard<'a, ReadWriteLock, T>;
