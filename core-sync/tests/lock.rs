//! Python's `threading.Lock` semantics, on the futex and the spin backends.
//!
//! With `--no-default-features` the default backend is the spin backend and
//! has no clock, so the timed tests are compiled only with `std`.

#![cfg_attr(not(feature = "std"), allow(unused_imports, dead_code))]

use core_sync::backend::{Backend, Clock, Spin};
use core_sync::{Lock, Mutex, ReleaseError};
use std::cell::UnsafeCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Generous upper bound for "returns promptly" on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(5);

#[test]
fn size_is_four_bytes() {
    assert_eq!(size_of::<Lock>(), 4);
    assert_eq!(size_of::<Lock<Spin>>(), 4);
}

#[test]
fn release_of_unlocked_lock_is_an_error_and_changes_nothing() {
    let lock = Lock::new();
    assert_eq!(lock.release(), Err(ReleaseError::NotLocked));
    assert!(!lock.locked());
    // Still fully usable afterwards.
    assert!(lock.try_acquire());
    assert_eq!(lock.release(), Ok(()));
    assert_eq!(lock.release(), Err(ReleaseError::NotLocked));
}

#[test]
fn a_lock_taken_in_one_thread_may_be_released_in_another() {
    let lock = Arc::new(Lock::new());
    lock.acquire();
    let other = Arc::clone(&lock);
    thread::spawn(move || other.release()).join().unwrap().unwrap();
    assert!(!lock.locked());
}

#[test]
#[cfg(feature = "std")]
fn try_acquire_on_a_held_lock_returns_false_at_once() {
    let lock = Lock::new();
    lock.acquire();
    let start = Instant::now();
    assert!(!lock.try_acquire());
    assert!(!lock.acquire_timeout(Duration::ZERO));
    assert!(start.elapsed() < SLACK);
    assert!(lock.locked());
}

#[test]
#[cfg(feature = "std")]
fn acquire_timeout_on_a_held_lock_waits_at_least_the_timeout() {
    let lock = Lock::new();
    lock.acquire();
    let timeout = Duration::from_millis(100);
    let start = Instant::now();
    assert!(!lock.acquire_timeout(timeout));
    let took = start.elapsed();
    assert!(took >= timeout, "returned after {took:?}");
    assert!(took < timeout + SLACK, "returned after {took:?}");
    // The failed attempt left the lock held and releasable once.
    assert_eq!(lock.release(), Ok(()));
    assert_eq!(lock.release(), Err(ReleaseError::NotLocked));
}

#[test]
#[cfg(feature = "std")]
fn huge_timeouts_wait_forever_without_overflow() {
    for timeout in [
        Duration::MAX,
        Duration::from_secs(u64::MAX / 2),
        Duration::new(u64::MAX / 1_000_000_000, 0),
    ] {
        let lock = Arc::new(Lock::new());
        lock.acquire();
        let released = Arc::new(AtomicBool::new(false));
        let (l2, r2) = (Arc::clone(&lock), Arc::clone(&released));
        let releaser = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            r2.store(true, Ordering::SeqCst);
            l2.release().unwrap();
        });
        assert!(lock.acquire_timeout(timeout));
        assert!(released.load(Ordering::SeqCst), "acquired before the release");
        releaser.join().unwrap();
        lock.release().unwrap();
    }
}

#[test]
fn a_blocked_acquirer_is_woken_by_release() {
    let lock = Arc::new(Lock::new());
    lock.acquire();
    let l2 = Arc::clone(&lock);
    let waiter = thread::spawn(move || {
        l2.acquire();
        l2.release().unwrap();
    });
    // Whether the waiter already sleeps or not, it must get through.
    thread::sleep(Duration::from_millis(20));
    lock.release().unwrap();
    waiter.join().unwrap();
    assert!(!lock.locked());
}

#[test]
#[cfg(feature = "std")]
fn guard_releases_on_drop_and_on_panic() {
    let lock = Lock::new();
    {
        let _g = lock.lock();
        assert!(lock.locked());
        assert!(lock.try_lock().is_none());
    }
    assert!(!lock.locked());
    let caught = std::panic::catch_unwind(|| {
        let _g = lock.lock();
        panic!("inside the critical section");
    });
    assert!(caught.is_err());
    assert!(!lock.locked(), "a panic inside the guard must release the lock");
    let g = lock.lock_timeout(Duration::from_millis(1)).expect("free lock");
    drop(g);
}

#[test]
fn static_lock_is_const_constructed() {
    static LOCK: Lock = Lock::new();
    LOCK.acquire();
    assert!(LOCK.locked());
    LOCK.release().unwrap();
}

/// A plain (non-atomic) counter; the lock under test is its only protection.
struct Counter(UnsafeCell<u64>);
// SAFETY: every access in these tests happens while holding the lock under
// test; a broken lock shows up as a lost update, which is what they check.
unsafe impl Sync for Counter {}

impl Counter {
    /// Adds one.
    ///
    /// # Safety
    ///
    /// The caller holds the lock that protects this counter.
    unsafe fn bump(&self) {
        // SAFETY: the caller holds the lock, so no other thread touches it.
        unsafe { *self.0.get() += 1 };
    }
}

fn hammer<B: Backend>(lock: &Lock<B>, threads: usize, per_thread: u64) -> u64 {
    let counter = Counter(UnsafeCell::new(0));
    thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..per_thread {
                    lock.acquire();
                    // SAFETY: the lock is held.
                    unsafe { counter.bump() };
                    lock.release().unwrap();
                }
            });
        }
    });
    counter.0.into_inner()
}

const PER_THREAD: u64 = if cfg!(miri) { 200 } else { 100_000 };

#[test]
fn stress_four_threads_exact_total_futex() {
    static LOCK: Lock = Lock::new();
    assert_eq!(hammer(&LOCK, 4, PER_THREAD), 4 * PER_THREAD);
}

#[test]
fn stress_four_threads_exact_total_spin_backend() {
    static LOCK: Lock<Spin<spin::relax::Spin>> = Lock::with_backend();
    assert_eq!(hammer(&LOCK, 4, PER_THREAD / 10), 4 * (PER_THREAD / 10));
}

#[test]
#[cfg(feature = "std")]
fn stress_mixed_timed_and_untimed_acquirers() {
    static LOCK: Lock = Lock::new();
    static COUNTER: Counter = Counter(UnsafeCell::new(0));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            thread::spawn(move || {
                let mut done = 0u64;
                while done < PER_THREAD / 10 {
                    let got = if i % 2 == 0 {
                        LOCK.acquire_timeout(Duration::from_micros(50))
                    } else {
                        LOCK.acquire();
                        true
                    };
                    if got {
                        // SAFETY: the lock is held.
                        unsafe { COUNTER.bump() };
                        done += 1;
                        LOCK.release().unwrap();
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // SAFETY: every writer has been joined.
    assert_eq!(unsafe { *COUNTER.0.get() }, 4 * (PER_THREAD / 10));
    assert!(!LOCK.locked());
}

/// A user-provided clock makes the spin backend timed.
struct StdClock;
impl Clock for StdClock {
    fn now_nanos() -> u64 {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

#[test]
fn spin_backend_with_a_clock_has_timeouts() {
    let lock: Lock<Spin<spin::relax::Spin, StdClock>> = Lock::with_backend();
    lock.acquire();
    let start = Instant::now();
    assert!(!lock.acquire_timeout(Duration::from_millis(30)));
    assert!(start.elapsed() >= Duration::from_millis(30));
    lock.release().unwrap();
    assert!(lock.acquire_timeout(Duration::from_millis(30)));
}

#[test]
#[cfg(feature = "std")]
fn lock_api_mutex_protects_data() {
    let m = Arc::new(Mutex::new(0u64));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let m = Arc::clone(&m);
            thread::spawn(move || {
                for _ in 0..PER_THREAD / 10 {
                    *m.lock() += 1;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(*m.lock(), 4 * (PER_THREAD / 10));
    let guard = m.lock();
    assert!(m.try_lock().is_none());
    assert!(m.try_lock_for(Duration::from_millis(5)).is_none());
    drop(guard);
    assert!(m.try_lock_for(Duration::from_millis(5)).is_some());
}

#[test]
fn failed_try_lock_leaves_the_holder_holding() {
    let lock = Lock::new();
    lock.acquire();
    assert!(lock.try_lock().is_none());
    assert!(lock.locked(), "a failed try_lock must not release someone else's hold");
    lock.release().unwrap();
}

#[test]
#[cfg(feature = "std")]
fn failed_lock_timeout_leaves_the_holder_holding() {
    let lock = Lock::new();
    lock.acquire();
    assert!(lock.lock_timeout(Duration::from_millis(5)).is_none());
    assert!(lock.locked(), "a timed-out lock_timeout must not release someone else's hold");
    lock.release().unwrap();
}
