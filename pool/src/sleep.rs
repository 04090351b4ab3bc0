//! How idle workers sleep and are woken: the protocol that loses no wake-up.
//!
//! This module holds only the sleep/wake state machine, generic over
//! `core-sync`'s wait backend and built on the atomics of `sync`, so that
//! the very same code runs in the pool (futexes) and in the loom models of
//! `tests/loom.rs` (`--cfg loom`: loom's atomics and model futex). What
//! "work" is stays outside: a producer calls [`Sleep::notify_work`] after it
//! has published a job, and a worker hands [`Sleep::sleep`] the re-check
//! that looks at every queue.
//!
//! # State machine
//!
//! Each worker has a futex word in `words`, and the set of sleeping workers
//! (`sleepers`, a stack under a lock) has its size mirrored in the atomic
//! `sleeping`, so that producers can test it without the lock. A worker is
//! in one of these states:
//!
//! ```text
//!            found work                     no work found, rounds left
//!   ACTIVE <------------- SEARCHING ------------------------------+
//!     |                    ^   |   ^                              |
//!     | job done           |   |   +------------------------------+
//!     +--------------------+   | rounds used up
//!                              v
//!                          REGISTERED  (on the stack, word = ASLEEP, sleeping += 1)
//!                              |    \  re-check finds work / shutdown / its latch set:
//!                              |     +--> takes itself off the stack -> SEARCHING
//!                              v
//!                          ASLEEP  (futex wait while word == ASLEEP)
//!                              |  a waker pops it off the stack and stores AWAKE
//!                              v
//!                          SEARCHING
//! ```
//!
//! - A producer publishes a job, issues a `SeqCst` fence, and reads
//!   `sleeping`; only if it is non-zero does it take the lock, pop **one**
//!   sleeper, store `AWAKE` in its word (under the lock) and futex-wake it.
//!   So a submission to a sleeping pool wakes exactly one worker, and a busy
//!   pool pays one fence and one load per submission.
//! - A worker registers (under the lock: push, word = `ASLEEP`,
//!   `sleeping += 1` with `SeqCst`), issues a `SeqCst` fence, and re-checks
//!   every queue (and its wake condition) before it sleeps.
//! - No wake-up is lost: the producer's publish-fence-load and the worker's
//!   increment-fence-check form a Dekker pair. Either the producer sees
//!   `sleeping > 0` (and wakes some sleeper, which then searches every queue
//!   and finds the job unless another worker already took it), or the
//!   worker's re-check sees the job and it does not sleep.
//! - A worker's word changes only under the lock, so a late waker can never
//!   "wake" a worker that has re-registered since; at worst a futex wake is
//!   spurious, and the sleeper re-reads its word and sleeps again.
//! - A worker waiting for a `join` or a `scope` sleeps the same way, with
//!   its latch as an extra wake condition; whoever sets the latch then wakes
//!   that particular worker ([`Sleep::wake_specific`]) through this state,
//!   rather than through the latch's memory, which may be gone by then. A
//!   worker's word is `ASLEEP` exactly while it is on the stack, so the
//!   waker sets the latch, issues a `SeqCst` fence and reads the word,
//!   taking the lock only when it reads `ASLEEP`: with the sleeper's
//!   register-fence-recheck this is again a Dekker pair, so either the
//!   waker sees the worker registered, or its re-check sees the latch.
//! - `hint_work` is `notify_work` without the fence, for a job its producer
//!   runs itself if nobody takes it (`join`'s second half): a racing
//!   sleeper may miss it, which costs parallelism and never the job.

use core::marker::PhantomData;

use core_sync::backend::{AtomicU32, Backend, DefaultBackend};
use core_sync::{Lock, LockGuard};

use self::sync::{AtomicUsize, Ordering, UnsafeCell, fence};

/// The atomics and cells the protocol is built on: loom's under `cfg(loom)`,
/// `std`'s otherwise.
mod sync {
    #[cfg(loom)]
    pub(crate) use loom::cell::UnsafeCell;
    #[cfg(loom)]
    pub(crate) use loom::sync::atomic::{AtomicUsize, fence};
    pub(crate) use std::sync::atomic::Ordering;
    #[cfg(not(loom))]
    pub(crate) use std::sync::atomic::{AtomicUsize, fence};

    /// `std`'s `UnsafeCell` with loom's access API.
    #[cfg(not(loom))]
    #[derive(Debug)]
    pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    #[cfg(not(loom))]
    impl<T> UnsafeCell<T> {
        pub(crate) fn new(value: T) -> Self {
            UnsafeCell(std::cell::UnsafeCell::new(value))
        }

        #[inline]
        pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }
}

const AWAKE: u32 = 0;
const ASLEEP: u32 = 1;

/// The sleep/wake state of a pool's workers (see the module docs).
pub struct Sleep<B = DefaultBackend> {
    /// One futex word per worker: `ASLEEP` while it is on the stack.
    words: Box<[AtomicU32]>,
    /// Guards `sleepers` and every change of a word.
    lock: Lock<B>,
    /// The sleeping workers' indices, newest last.
    sleepers: UnsafeCell<Vec<usize>>,
    /// `sleepers.len()`, readable without the lock.
    sleeping: AtomicUsize,
    /// How many times a sleeping worker was woken (statistics).
    wakeups: AtomicUsize,
    backend: PhantomData<fn() -> B>,
}

// SAFETY: `sleepers` is only accessed with `lock` held (`with_sleepers`);
// every other field is `Sync`.
unsafe impl<B> Sync for Sleep<B> {}
// SAFETY: every field is `Send`; `B` is only a marker.
unsafe impl<B> Send for Sleep<B> {}

impl Sleep {
    /// The state of `workers` workers, all awake, on the default backend.
    pub fn new(workers: usize) -> Self {
        Self::with_backend(workers)
    }
}

impl<B: Backend> Sleep<B> {
    /// The state of `workers` workers, all awake, waiting through `B`.
    pub fn with_backend(workers: usize) -> Self {
        Sleep {
            words: (0..workers).map(|_| AtomicU32::new(AWAKE)).collect(),
            lock: Lock::with_backend(),
            sleepers: UnsafeCell::new(Vec::with_capacity(workers)),
            sleeping: AtomicUsize::new(0),
            wakeups: AtomicUsize::new(0),
            backend: PhantomData,
        }
    }

    /// Runs `f` on the sleeper stack, under the lock. `f` may change words.
    fn with_sleepers<R>(&self, f: impl FnOnce(&mut Vec<usize>) -> R) -> R {
        let _guard: LockGuard<'_, B> = self.lock.lock();
        // SAFETY: the lock is held for the whole access, and `f` cannot
        // re-enter (it gets no `&self`).
        self.sleepers.with_mut(|sleepers| f(unsafe { &mut *sleepers }))
    }

    /// Tells sleepers that a job was published (the producer's half of the
    /// Dekker pair): wakes one sleeping worker, if any. Costs a fence and a
    /// load when none sleeps.
    #[inline]
    pub fn notify_work(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) > 0 {
            self.wake_one();
        }
    }

    /// Tells sleepers about a job that the caller will run itself if no
    /// other worker takes it (the second half of a `join`, which its joiner
    /// pops back): wakes one sleeping worker, if any, without the fence.
    ///
    /// Without the fence this is no half of a Dekker pair: a worker that is
    /// registering at this very moment may miss the job and sleep. That
    /// costs parallelism, never the job, which its owner runs. It saves a
    /// full fence per `join` (rayon's `join` has none either).
    #[inline]
    pub fn hint_work(&self) {
        if self.sleeping.load(Ordering::Relaxed) > 0 {
            self.wake_one();
        }
    }

    /// How many workers are registered to sleep now (a snapshot).
    #[inline]
    pub fn sleeping(&self) -> usize {
        self.sleeping.load(Ordering::SeqCst)
    }

    /// How many times a sleeping worker was woken so far.
    pub fn wakeups(&self) -> usize {
        self.wakeups.load(Ordering::SeqCst)
    }

    /// Wakes one sleeping worker; whether there was one.
    #[cold]
    pub fn wake_one(&self) -> bool {
        let woken = self.with_sleepers(|sleepers| {
            let index = sleepers.pop()?;
            self.sleeping.fetch_sub(1, Ordering::SeqCst);
            self.words[index].store(AWAKE, Ordering::Release);
            Some(index)
        });
        match woken {
            Some(index) => {
                B::wake_one(&self.words[index]);
                true
            }
            None => false,
        }
    }

    /// Wakes worker `index` if it sleeps (its latch was set, which must
    /// happen before this call).
    ///
    /// Takes the lock only when the worker's word says it is registered:
    /// the fence here and the sleeper's fence after registering form a
    /// Dekker pair, so either this load sees `ASLEEP` or the sleeper's
    /// re-check sees the latch.
    pub fn wake_specific(&self, index: usize) {
        fence(Ordering::SeqCst);
        if self.words[index].load(Ordering::Relaxed) != ASLEEP {
            return;
        }
        let woken = self.with_sleepers(|sleepers| {
            let pos = sleepers.iter().rposition(|&i| i == index)?;
            sleepers.remove(pos);
            self.sleeping.fetch_sub(1, Ordering::SeqCst);
            self.words[index].store(AWAKE, Ordering::Release);
            Some(())
        });
        if woken.is_some() {
            B::wake_one(&self.words[index]);
        }
    }

    /// Wakes every sleeping worker (shutdown: their re-check, which looks
    /// at the pool's flags, must run).
    pub fn wake_all(&self) {
        let woken = self.with_sleepers(|sleepers| {
            let woken = std::mem::take(sleepers);
            self.sleeping.fetch_sub(woken.len(), Ordering::SeqCst);
            for &i in &woken {
                self.words[i].store(AWAKE, Ordering::Release);
            }
            woken
        });
        for i in woken {
            B::wake_one(&self.words[i]);
        }
    }

    /// Worker `index`'s half of the protocol: registers, re-checks with
    /// `recheck` (which must look at every queue and every wake condition;
    /// true means "do not sleep"), and sleeps until a waker takes it off the
    /// stack. Returns whether it slept.
    pub fn sleep(&self, index: usize, recheck: impl FnOnce() -> bool) -> bool {
        let word = &self.words[index];
        self.with_sleepers(|sleepers| {
            sleepers.push(index);
            word.store(ASLEEP, Ordering::Relaxed);
            self.sleeping.fetch_add(1, Ordering::SeqCst);
        });
        fence(Ordering::SeqCst);
        if recheck() {
            self.with_sleepers(|sleepers| {
                // A waker may have taken us off the stack meanwhile; then
                // its wake (already counted) is spurious.
                if let Some(pos) = sleepers.iter().rposition(|&i| i == index) {
                    sleepers.remove(pos);
                    self.sleeping.fetch_sub(1, Ordering::SeqCst);
                }
                word.store(AWAKE, Ordering::Relaxed);
            });
            return false;
        }
        while word.load(Ordering::Acquire) == ASLEEP {
            B::wait(word, ASLEEP);
        }
        self.wakeups.fetch_add(1, Ordering::Relaxed);
        true
    }
}
