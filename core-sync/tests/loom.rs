//! Loom models of the lock algorithms, run on the real code through the loom
//! wait backend (`backend::Loom`, a model futex).
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p core-sync --release --test loom`
//! (`cargo xtask ci` does). Bounds: at most 3 threads per model and
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
