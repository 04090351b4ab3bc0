//! Loom models of the lock algorithms, run on the real code through the loom
//! wait backend (`backend::Loom`, a model futex).
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p core-sync --release --test loom`
//! (`cargo xtask ci` does). Models: `Lock`, `RLock`, `Semaphore` (overflow
//! included), `BoundedSemaphore`, `Event`, `Condition` (notify/timeout
//! races), `ReadWriteLock` (each policy, downgrade, writer timeout) and
//! `Barrier`. Bounds: at most 3 threads per model and
//! `LOOM_MAX_PREEMPTIONS` = 3 (set by xtask), which explores each model
//! exhaustively within that bound in seconds.
#![cfg(loom)]

use core_sync::Lock;
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use std::time::Duration;

/// Two threads increment a plain cell under the lock: every interleaving
/// must see both increments (mutual exclusion, and acquire/release ordering
/// that makes the first write visible to the second holder).
#[test]
fn lock_mutual_exclusion() {
    loom::model(|| {
        let lock = Arc::new(Lock::new());
        let cell = Arc::new(UnsafeCell::new(0u32));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (lock, cell) = (Arc::clone(&lock), Arc::clone(&cell));
                thread::spawn(move || {
                    lock.acquire();
                    // SAFETY: the lock is held; loom checks that no other
                    // access overlaps.
                    cell.with_mut(|p| unsafe { *p += 1 });
                    lock.release().unwrap();
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        lock.acquire();
        // SAFETY: the lock is held and every writer has been joined.
        assert_eq!(cell.with(|p| unsafe { *p }), 2);
        lock.release().unwrap();
    });
}

/// Three threads contend, so some sleep in the model futex: a release that
/// forgets to wake leaves a sleeper forever, which loom reports.
#[test]
fn lock_no_lost_wakeup_three_threads() {
    loom::model(|| {
        let lock = Arc::new(Lock::new());
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let lock = Arc::clone(&lock);
                thread::spawn(move || {
                    lock.acquire();
                    lock.release().unwrap();
                })
            })
            .collect();
        lock.acquire();
        lock.release().unwrap();
        for h in handles {
            h.join().unwrap();
        }
        assert!(!lock.locked());
    });
}

/// A timed acquirer racing a holder either gets the lock or times out, and
/// in neither case leaves the lock in a state that blocks the next acquirer.
#[test]
fn lock_timeout_leaves_no_trace() {
    loom::model(|| {
        let lock = Arc::new(Lock::new());
        let l2 = Arc::clone(&lock);
        let holder = thread::spawn(move || {
            l2.acquire();
            l2.release().unwrap();
        });
        if lock.acquire_timeout(Duration::from_nanos(2)) {
            lock.release().unwrap();
        }
        holder.join().unwrap();
        lock.acquire();
        lock.release().unwrap();
    });
}

/// A lock released by another thread than the one that took it (Python
/// allows it) hands over to a waiter.
#[test]
fn lock_release_from_another_thread_wakes_waiter() {
    loom::model(|| {
        let lock = Arc::new(Lock::new());
        lock.acquire();
        let l2 = Arc::clone(&lock);
        let waiter = thread::spawn(move || {
            l2.acquire();
            l2.release().unwrap();
        });
        let l3 = Arc::clone(&lock);
        let releaser = thread::spawn(move || l3.release().unwrap());
        releaser.join().unwrap();
        waiter.join().unwrap();
        assert!(!lock.locked());
    });
}

use core_sync::backend::DefaultBackend;
use core_sync::{
    Barrier, BoundedSemaphore, Event, Fair, ReadPreferring, ReadWriteLock, Semaphore,
    WritePreferring,
};
use loom::sync::atomic::{AtomicUsize, Ordering};

/// A semaphore of 1 admits one thread at a time, and a blocked acquirer is
/// woken by the release (three threads, so one of them sleeps).
#[test]
fn semaphore_counts_and_wakes() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(1));
        let inside = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (sem, inside) = (Arc::clone(&sem), Arc::clone(&inside));
                thread::spawn(move || {
                    sem.acquire();
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two threads inside");
                    inside.fetch_sub(1, Ordering::SeqCst);
                    sem.release().unwrap();
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(sem.value(), 1);
    });
}

/// `release_n(2)` releases two sleeping acquirers.
#[test]
fn semaphore_release_n_wakes_n() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(0));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let sem = Arc::clone(&sem);
                thread::spawn(move || sem.acquire())
            })
            .collect();
        sem.release_n(2).unwrap();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(sem.value(), 0);
    });
}

/// Releases that overflow the count race with an acquirer at the maximum:
/// a refused release (its `+1` taken back) changes nothing, the acquirer
/// never takes a permit the overflow made up and is never stranded asleep
/// during one, and exactly one release fits after it took its permit.
#[test]
fn semaphore_overflow_changes_nothing() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(Semaphore::MAX_VALUE));
        let releasers: Vec<_> = (0..2)
            .map(|_| {
                let sem = Arc::clone(&sem);
                thread::spawn(move || sem.release().is_ok())
            })
            .collect();
        sem.acquire();
        let accepted: u32 = releasers.into_iter().map(|h| u32::from(h.join().unwrap())).sum();
        assert!(accepted <= 1, "two releases past the maximum");
        assert_eq!(sem.value(), Semaphore::MAX_VALUE - 1 + accepted);
    });
}

/// Racing releases of a bounded semaphore never pass its bound: exactly the
/// missing permits are accepted.
#[test]
fn bounded_semaphore_never_passes_its_bound() {
    loom::model(|| {
        let sem = Arc::new(BoundedSemaphore::new(1));
        assert!(sem.try_acquire());
        let s2 = Arc::clone(&sem);
        let other = thread::spawn(move || s2.release().is_ok());
        let mine = sem.release().is_ok();
        let theirs = other.join().unwrap();
        assert!(mine ^ theirs, "exactly one release fits under the bound");
        assert_eq!(sem.value(), 1);
    });
}

/// `set` wakes every waiter, and a `clear` racing the wake-ups strands no
/// one: a waiter that began before the first `set` returns from it, and
/// one that began after the `clear` returns from the second `set`. (Which
/// of the two a waiter is depends on the interleaving, so the model ends
/// with a second `set`; the std test `set_then_clear_still_releases_the_waiters`
/// pins the first case with waiters known to be asleep.)
#[test]
fn event_set_wakes_all_across_a_clear() {
    loom::model(|| {
        let event = Arc::new(Event::new());
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let event = Arc::clone(&event);
                thread::spawn(move || event.wait())
            })
            .collect();
        event.set();
        event.clear();
        event.set();
        for h in handles {
            h.join().unwrap();
        }
    });
}

/// A timed waiter racing `set` either sees it or times out; never both
/// missing the set and blocking forever.
#[test]
fn event_timeout_races_set() {
    loom::model(|| {
        let event = Arc::new(Event::new());
        let e2 = Arc::clone(&event);
        let waiter = thread::spawn(move || e2.wait_timeout(Duration::from_nanos(3)));
        event.set();
        let _ = waiter.join().unwrap();
        assert!(event.is_set());
    });
}

fn rwlock_exclusion<P: core_sync::ReadWritePolicy + 'static>()
where
    ReadWriteLock<P, DefaultBackend>: Send + Sync,
{
    loom::model(|| {
        let rw: Arc<ReadWriteLock<P, DefaultBackend>> = Arc::new(ReadWriteLock::with_backend());
        let cell = Arc::new(UnsafeCell::new(0u32));
        let (rw2, cell2) = (Arc::clone(&rw), Arc::clone(&cell));
        let writer = thread::spawn(move || {
            rw2.acquire_write();
            // SAFETY: the write lock is held; loom checks no access overlaps.
            cell2.with_mut(|p| unsafe { *p += 1 });
            rw2.release_write().unwrap();
        });
        let (rw3, cell3) = (Arc::clone(&rw), Arc::clone(&cell));
        let reader = thread::spawn(move || {
            rw3.acquire_read();
            // SAFETY: the read lock is held; only writers mutate.
            let seen = cell3.with(|p| unsafe { *p });
            assert!(seen <= 1);
            rw3.release_read().unwrap();
        });
        rw.acquire_read();
        // SAFETY: the read lock is held.
        let _ = cell.with(|p| unsafe { *p });
        rw.release_read().unwrap();
        writer.join().unwrap();
        reader.join().unwrap();
        assert!(!rw.is_locked());
    });
}

/// Readers share, the writer excludes everyone, nobody sleeps forever.
#[test]
fn rwlock_fair_exclusion() {
    rwlock_exclusion::<Fair>();
}

/// As above, under `ReadPreferring`.
#[test]
fn rwlock_read_preferring_exclusion() {
    rwlock_exclusion::<ReadPreferring>();
}

/// As above, under `WritePreferring`.
#[test]
fn rwlock_write_preferring_exclusion() {
    rwlock_exclusion::<WritePreferring>();
}

/// A downgrade keeps the value the writer wrote visible to the downgraded
/// holder, and no other writer gets in between.
#[test]
fn rwlock_downgrade_admits_no_writer_in_between() {
    loom::model(|| {
        let rw = Arc::new(ReadWriteLock::new());
        let cell = Arc::new(UnsafeCell::new(0u32));
        rw.acquire_write();
        let (rw2, cell2) = (Arc::clone(&rw), Arc::clone(&cell));
        let writer = thread::spawn(move || {
            rw2.acquire_write();
            // SAFETY: the write lock is held.
            cell2.with_mut(|p| unsafe { *p = 2 });
            rw2.release_write().unwrap();
        });
        // SAFETY: the write lock is held.
        cell.with_mut(|p| unsafe { *p = 1 });
        rw.downgrade().unwrap();
        // SAFETY: the read lock (from the downgrade) is held.
        assert_eq!(cell.with(|p| unsafe { *p }), 1, "a writer slipped in during the downgrade");
        rw.release_read().unwrap();
        writer.join().unwrap();
    });
}

/// A timed-out writer withdraws its claim: a reader queued behind it is not
/// stranded.
#[test]
fn rwlock_writer_timeout_leaves_no_trace() {
    loom::model(|| {
        let rw: Arc<ReadWriteLock<WritePreferring>> = Arc::new(ReadWriteLock::with_policy());
        rw.acquire_read();
        let rw2 = Arc::clone(&rw);
        let writer = thread::spawn(move || {
            if rw2.acquire_write_timeout(Duration::from_nanos(3)) {
                rw2.release_write().unwrap();
            }
        });
        let rw3 = Arc::clone(&rw);
        let reader = thread::spawn(move || {
            rw3.acquire_read();
            rw3.release_read().unwrap();
        });
        writer.join().unwrap();
        rw.release_read().unwrap();
        reader.join().unwrap();
        assert!(!rw.is_locked());
    });
}

/// Two write phases, each with a (timed) reader queueing behind it: the
/// grant that flips `PHASE`, the release that clears it when the lock goes
/// free, and a queued reader's timeout racing either, in every order. The
/// reader sees only whole writes, nobody is stranded, and the lock ends
/// free and clean (its next uncontended read takes the fast path).
#[test]
fn rwlock_grants_and_phase_resets_across_rounds() {
    loom::model(|| {
        let rw = Arc::new(ReadWriteLock::new());
        let cell = Arc::new(UnsafeCell::new(0u32));
        rw.acquire_write();
        let (rw2, cell2) = (Arc::clone(&rw), Arc::clone(&cell));
        let reader = thread::spawn(move || {
            for _ in 0..2 {
                if rw2.acquire_read_timeout(Duration::from_nanos(4)) {
                    // SAFETY: the read lock is held; only writers mutate.
                    let seen = cell2.with(|p| unsafe { *p });
                    assert!(seen == 1 || seen == 2, "a read saw {seen}");
                    rw2.release_read().unwrap();
                }
            }
        });
        // SAFETY: the write lock is held.
        cell.with_mut(|p| unsafe { *p = 1 });
        rw.release_write().unwrap();
        rw.acquire_write();
        // SAFETY: the write lock is held.
        cell.with_mut(|p| unsafe { *p = 2 });
        rw.release_write().unwrap();
        reader.join().unwrap();
        assert!(!rw.is_locked());
        assert_eq!((rw.waiting_writers(), rw.queued_readers()), (0, 0));
        rw.acquire_read();
        rw.release_read().unwrap();
        assert_eq!(rw.release_read(), Err(core_sync::ReleaseError::NotLocked));
    });
}

/// A barrier of two parties is reusable across cycles, with distinct
/// indices in each.
#[test]
fn barrier_two_cycles() {
    loom::model(|| {
        let barrier = Arc::new(Barrier::new(2));
        let b2 = Arc::clone(&barrier);
        let other = thread::spawn(move || (b2.wait().unwrap(), b2.wait().unwrap()));
        let mine = (barrier.wait().unwrap(), barrier.wait().unwrap());
        let theirs = other.join().unwrap();
        assert_eq!(mine.0 + theirs.0, 1, "indices of a cycle are 0 and 1");
        assert_eq!(mine.1 + theirs.1, 1);
    });
}

/// `abort` releases a waiter with the broken-barrier error.
#[test]
fn barrier_abort_releases_waiter() {
    loom::model(|| {
        let barrier = Arc::new(Barrier::new(2));
        let b2 = Arc::clone(&barrier);
        let waiter = thread::spawn(move || b2.wait());
        barrier.abort();
        assert!(waiter.join().unwrap().is_err());
        assert!(barrier.broken());
    });
}

use core_sync::{Condition, RLock};
use loom::sync::atomic::AtomicBool;

/// Two threads each take an `RLock` twice (re-entering) and release it
/// twice: the cell they write is never shared, a non-owner's release is an
/// error, and the lock ends free.
#[test]
fn rlock_ownership_and_reentry() {
    loom::model(|| {
        let lock = Arc::new(RLock::new());
        let cell = Arc::new(UnsafeCell::new(0u32));
        let (l2, c2) = (Arc::clone(&lock), Arc::clone(&cell));
        let other = thread::spawn(move || {
            l2.acquire().unwrap();
            l2.acquire().unwrap();
            // SAFETY: the RLock is held; loom checks no access overlaps.
            c2.with_mut(|p| unsafe { *p += 1 });
            l2.release().unwrap();
            l2.release().unwrap();
        });
        lock.acquire().unwrap();
        lock.acquire().unwrap();
        // SAFETY: the RLock is held.
        cell.with_mut(|p| unsafe { *p += 1 });
        lock.release().unwrap();
        lock.release().unwrap();
        other.join().unwrap();
        assert!(lock.release().is_err(), "released more often than acquired");
        assert!(!lock.locked());
    });
}

/// The classic predicate pattern: a waiter that checks the flag under the
/// lock and waits is always woken by a setter that sets it under the lock
/// and notifies.
#[test]
fn condition_no_lost_notify() {
    loom::model(|| {
        let cond = Arc::new(Condition::with_lock(Lock::new()));
        let ready = Arc::new(AtomicBool::new(false));
        let (c2, r2) = (Arc::clone(&cond), Arc::clone(&ready));
        let waiter = thread::spawn(move || {
            c2.acquire();
            c2.wait_for(|| r2.load(Ordering::Relaxed)).unwrap();
            c2.release().unwrap();
        });
        cond.acquire();
        ready.store(true, Ordering::Relaxed);
        cond.notify(1).unwrap();
        cond.release().unwrap();
        waiter.join().unwrap();
    });
}

/// A notify racing a waiter's timeout: the waiter reports "notified"
/// exactly when the notify says it chose a waiter.
#[test]
fn condition_notify_racing_timeout_reports_correctly() {
    loom::model(|| {
        let cond = Arc::new(Condition::with_lock(Lock::new()));
        let c2 = Arc::clone(&cond);
        let waiter = thread::spawn(move || {
            c2.acquire();
            let notified = c2.wait_timeout(Duration::from_nanos(3)).unwrap();
            c2.release().unwrap();
            notified
        });
        cond.acquire();
        let woken = cond.notify(1).unwrap();
        cond.release().unwrap();
        let notified = waiter.join().unwrap();
        assert_eq!(woken == 1, notified, "notify chose {woken} but the waiter said {notified}");
    });
}

/// Two waiters, one of which times out: a later `notify(1)` reaches the
/// live one (a timed-out waiter leaves no trace in the queue).
#[test]
fn condition_timed_out_waiter_leaves_no_trace() {
    loom::model(|| {
        let cond = Arc::new(Condition::with_lock(Lock::new()));
        let done = Arc::new(AtomicBool::new(false));
        let (c2, d2) = (Arc::clone(&cond), Arc::clone(&done));
        let live = thread::spawn(move || {
            c2.acquire();
            c2.wait_for(|| d2.load(Ordering::Relaxed)).unwrap();
            c2.release().unwrap();
        });
        let c3 = Arc::clone(&cond);
        let timed = thread::spawn(move || {
            c3.acquire();
            let _ = c3.wait_timeout(Duration::from_nanos(2)).unwrap();
            c3.release().unwrap();
        });
        timed.join().unwrap();
        cond.acquire();
        done.store(true, Ordering::Relaxed);
        cond.notify(1).unwrap();
        cond.release().unwrap();
        live.join().unwrap();
    });
}

/// `notify_all` chooses two waiters at once (chained outside the list
/// lock), one of which races its timeout: each waiter reports "notified"
/// exactly when the notify counted it, a waiter that timed out while chosen
/// waits for its notifier to be done with its node, and nobody is stranded.
#[test]
fn condition_notify_all_racing_a_timeout_counts_exactly() {
    loom::model(|| {
        let cond = Arc::new(Condition::with_lock(Lock::new()));
        let flag = Arc::new(AtomicBool::new(false));
        let (c2, f2) = (Arc::clone(&cond), Arc::clone(&flag));
        let timed = thread::spawn(move || {
            c2.acquire();
            let notified =
                !f2.load(Ordering::Relaxed) && c2.wait_timeout(Duration::from_nanos(3)).unwrap();
            c2.release().unwrap();
            usize::from(notified)
        });
        let (c3, f3) = (Arc::clone(&cond), Arc::clone(&flag));
        let untimed = thread::spawn(move || {
            c3.acquire();
            let mut notified = 0;
            while !f3.load(Ordering::Relaxed) {
                c3.wait().unwrap();
                notified += 1;
            }
            c3.release().unwrap();
            notified
        });
        cond.acquire();
        flag.store(true, Ordering::Relaxed);
        let woken = cond.notify_all().unwrap();
        cond.release().unwrap();
        let reported = timed.join().unwrap() + untimed.join().unwrap();
        assert_eq!(woken, reported, "notify_all woke {woken}, {reported} reported it");
    });
}
