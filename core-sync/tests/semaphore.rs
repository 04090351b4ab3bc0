//! Python's `threading.Semaphore` and `threading.BoundedSemaphore` semantics,
//! on the futex and the spin backends.
//!
//! With `--no-default-features` the default backend is the spin backend and
//! has no clock, so the timed tests are compiled only with `std`.

#![cfg_attr(not(feature = "std"), allow(unused_imports, dead_code))]

mod common;

use core_sync::backend::{Backend, Spin};
use core_sync::{BoundedSemaphore, ReleaseError, Semaphore};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Generous upper bound for "happens promptly" on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(10);

/// Polls `cond` until it holds; fails the test after [`SLACK`].
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < SLACK, "timed out waiting until {what}");
        thread::yield_now();
    }
}

#[test]
fn sizes() {
    assert_eq!(size_of::<Semaphore>(), 8);
    assert_eq!(size_of::<Semaphore<Spin>>(), 8);
    // A bounded semaphore also remembers its bound.
    assert_eq!(size_of::<BoundedSemaphore>(), 12);
}

#[test]
fn static_semaphores_are_const_constructed() {
    static SEM: Semaphore = Semaphore::new(1);
    static BOUNDED: BoundedSemaphore = BoundedSemaphore::new(1);
    SEM.acquire();
    assert!(!SEM.try_acquire());
    SEM.release().unwrap();
    BOUNDED.acquire();
    BOUNDED.release().unwrap();
    assert_eq!(Semaphore::default().value(), 1);
    assert_eq!(BoundedSemaphore::default().bound(), 1);
}

#[test]
fn counts_down_and_up() {
    let sem = Semaphore::new(2);
    assert!(sem.try_acquire());
    assert!(sem.try_acquire());
    assert!(!sem.try_acquire(), "a third permit out of two");
    assert_eq!(sem.value(), 0);
    sem.release().unwrap();
    assert_eq!(sem.value(), 1);
    // An unbounded semaphore may rise above its initial value, as in Python.
    sem.release_n(5).unwrap();
    assert_eq!(sem.value(), 6);
    sem.release_n(0).unwrap();
    assert_eq!(sem.value(), 6);
}

/// Many threads through a semaphore of `value`: never more than `value`
/// inside at once, and every permit comes back.
fn never_more_than_value_inside<B: Backend + 'static>(
    sem: &'static Semaphore<B>,
    value: u32,
    threads: usize,
    rounds: u32,
) {
    // Each call has its own counters (a `static` here would be shared by
    // every instantiation, and so by tests running in parallel).
    let inside: &'static AtomicU32 = common::leak(<AtomicU32>::default());
    let max: &'static AtomicU32 = common::leak(<AtomicU32>::default());
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            thread::spawn(move || {
                for i in 0..rounds {
                    if (t + i as usize).is_multiple_of(3) {
                        while !sem.try_acquire() {
                            std::hint::spin_loop();
                        }
                    } else {
                        sem.acquire();
                    }
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(now, Ordering::SeqCst);
                    assert!(now <= value, "{now} threads inside a semaphore of {value}");
                    for _ in 0..20 {
                        std::hint::spin_loop();
                    }
                    inside.fetch_sub(1, Ordering::SeqCst);
                    sem.release().unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let max = max.load(Ordering::SeqCst);
    assert!(max <= value, "max inside {max} > {value}");
    assert!(max >= 1);
    assert_eq!(sem.value(), value, "permits lost or made up");
    assert_eq!(sem.n_waiting(), 0);
}

const ROUNDS: u32 = if cfg!(miri) { 50 } else { 5_000 };

#[test]
fn many_threads_never_exceed_the_count() {
    static SEM: Semaphore = Semaphore::new(3);
    never_more_than_value_inside(&SEM, 3, 8, ROUNDS);
}

#[test]
fn many_threads_never_exceed_the_count_spin_backend() {
    static SEM: Semaphore<Spin<spin::relax::Spin>> = Semaphore::with_backend(2);
    never_more_than_value_inside(&SEM, 2, 4, ROUNDS / 5);
}

#[test]
fn semaphore_of_one_is_a_lock() {
    static SEM: Semaphore = Semaphore::new(1);
    never_more_than_value_inside(&SEM, 1, 4, ROUNDS);
}

/// Five threads block on an empty semaphore; `release_n(3)` must let exactly
/// three of them through and leave the other two blocked.
fn release_n_lets_exactly_n_through<B: Backend + 'static>(sem: &'static Semaphore<B>) {
    let passed: &'static AtomicU32 = common::leak(<AtomicU32>::default());
    let handles: Vec<_> = (0..5)
        .map(|_| {
            thread::spawn(move || {
                sem.acquire();
                passed.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    // All five are blocked (announced as sleepers, with no permit to take).
    wait_until("five acquirers block", || sem.n_waiting() == 5);
    assert_eq!(passed.load(Ordering::SeqCst), 0);

    sem.release_n(3).unwrap();
    wait_until("three get through and two block again", || {
        passed.load(Ordering::SeqCst) == 3 && sem.n_waiting() == 2
    });
    // Two are blocked and no permit is left: nobody else can pass.
    assert_eq!(sem.value(), 0);
    assert_eq!(passed.load(Ordering::SeqCst), 3);

    sem.release_n(2).unwrap();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(passed.load(Ordering::SeqCst), 5);
    assert_eq!(sem.value(), 0);
    assert_eq!(sem.n_waiting(), 0);
}

#[test]
fn release_n_lets_exactly_three_of_five_blocked_acquirers_through() {
    static SEM: Semaphore = Semaphore::new(0);
    release_n_lets_exactly_n_through(&SEM);
}

#[test]
fn release_n_lets_exactly_three_through_spin_backend() {
    static SEM: Semaphore<Spin<spin::relax::Spin>> = Semaphore::with_backend(0);
    release_n_lets_exactly_n_through(&SEM);
}

#[test]
fn release_n_of_all_wakes_every_blocked_acquirer() {
    let sem = Arc::new(Semaphore::new(0));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let sem = Arc::clone(&sem);
            thread::spawn(move || sem.acquire())
        })
        .collect();
    wait_until("four acquirers block", || sem.n_waiting() == 4);
    sem.release_n(10).unwrap();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(sem.value(), 6);
}

#[test]
fn a_release_from_another_thread_wakes_a_blocked_acquirer() {
    let sem = Arc::new(Semaphore::new(0));
    let s2 = Arc::clone(&sem);
    let waiter = thread::spawn(move || s2.acquire());
    wait_until("the acquirer blocks", || sem.n_waiting() == 1);
    let s3 = Arc::clone(&sem);
    thread::spawn(move || s3.release().unwrap()).join().unwrap();
    waiter.join().unwrap();
    assert_eq!(sem.value(), 0);
}

#[test]
fn bounded_over_release_is_an_error_and_changes_nothing() {
    let sem = BoundedSemaphore::new(2);
    assert_eq!(sem.release(), Err(ReleaseError::Overflow));
    assert_eq!(sem.value(), 2);
    sem.acquire();
    // Two more would reach 3 > 2: refused as a whole, not in part.
    assert_eq!(sem.release_n(2), Err(ReleaseError::Overflow));
    assert_eq!(sem.value(), 1);
    assert_eq!(sem.release(), Ok(()));
    assert_eq!(sem.value(), 2);
    assert_eq!(sem.release(), Err(ReleaseError::Overflow));
    assert_eq!(sem.value(), 2);
    // Still fully usable.
    assert!(sem.try_acquire());
    assert!(sem.try_acquire());
    assert!(!sem.try_acquire());
    assert_eq!(sem.release_n(2), Ok(()));
    assert_eq!(sem.bound(), 2);
}

/// Holders and a stray releaser race on a bounded semaphore: the count
/// never passes the bound, a refused release changes nothing, and every
/// accepted one counts.
#[test]
fn bounded_over_release_under_contention_never_passes_the_bound() {
    static SEM: BoundedSemaphore = BoundedSemaphore::new(3);
    static ACQUIRED: AtomicU32 = AtomicU32::new(0);
    static RELEASED: AtomicU32 = AtomicU32::new(0);
    static REFUSED: AtomicU32 = AtomicU32::new(0);
    let rounds = ROUNDS / 5;
    let release = || match SEM.release() {
        Ok(()) => {
            RELEASED.fetch_add(1, Ordering::SeqCst);
        }
        Err(e) => {
            assert_eq!(e, ReleaseError::Overflow);
            REFUSED.fetch_add(1, Ordering::SeqCst);
        }
    };
    let handles: Vec<_> = (0..4)
        .map(|t| {
            thread::spawn(move || {
                for _ in 0..rounds {
                    if t == 0 {
                        // Releases without holding: accepted only below the bound.
                        release();
                        if SEM.try_acquire() {
                            ACQUIRED.fetch_add(1, Ordering::SeqCst);
                        }
                    } else {
                        SEM.acquire();
                        ACQUIRED.fetch_add(1, Ordering::SeqCst);
                        release();
                    }
                    assert!(SEM.value() <= 3, "value {} above the bound", SEM.value());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let (acq, rel) = (ACQUIRED.load(Ordering::SeqCst), RELEASED.load(Ordering::SeqCst));
    assert_eq!(SEM.value() + acq, 3 + rel, "a permit was lost or made up");
    // Every release call was either accepted or refused.
    assert_eq!(rel + REFUSED.load(Ordering::SeqCst), 4 * rounds);
}

#[test]
fn counter_overflow_is_an_error_and_changes_nothing() {
    const MAX: u32 = Semaphore::MAX_VALUE;
    assert_eq!(MAX, (1 << 31) - 1);
    let sem = Semaphore::new(MAX - 1);
    assert_eq!(sem.release_n(2), Err(ReleaseError::Overflow));
    assert_eq!(sem.value(), MAX - 1);
    assert_eq!(sem.release(), Ok(()));
    assert_eq!(sem.value(), MAX);
    assert_eq!(sem.release(), Err(ReleaseError::Overflow));
    assert_eq!(sem.value(), MAX);
    assert_eq!(sem.release_n(1), Err(ReleaseError::Overflow));
    assert_eq!(sem.release_n(u32::MAX), Err(ReleaseError::Overflow));
    assert_eq!(sem.value(), MAX);
    {
        let _guard = sem.lock();
        assert_eq!(sem.value(), MAX - 1);
        assert_eq!(sem.release(), Ok(()));
        // The guard's release now overflows; it changes nothing either.
    }
    assert_eq!(sem.value(), MAX);
    assert!(sem.try_acquire());
    assert_eq!(sem.value(), MAX - 1);

    let bounded = BoundedSemaphore::new(MAX);
    assert_eq!(bounded.release(), Err(ReleaseError::Overflow));
    assert_eq!(bounded.value(), MAX);
    bounded.acquire();
    assert_eq!(bounded.release(), Ok(()));
    assert_eq!(bounded.release_n(1), Err(ReleaseError::Overflow));
    assert_eq!(bounded.value(), MAX);
}

/// A count past `MAX_VALUE` cannot be represented next to the overflow
/// check's headroom, so the constructors start at `MAX_VALUE`.
#[test]
fn constructors_clamp_to_max_value() {
    assert_eq!(Semaphore::new(u32::MAX).value(), Semaphore::MAX_VALUE);
    assert_eq!(Semaphore::<Spin>::with_backend(u32::MAX).value(), Semaphore::MAX_VALUE);
    let bounded = BoundedSemaphore::new(u32::MAX);
    assert_eq!(bounded.bound(), Semaphore::MAX_VALUE);
    assert_eq!(bounded.value(), Semaphore::MAX_VALUE);
    assert_eq!(bounded.release(), Err(ReleaseError::Overflow));
}

/// Releases that overflow race with holders at the maximum count: every
/// refused release changes nothing (the holders always find their permit,
/// and the count ends exactly where the accepted calls put it), and
/// `value()` never shows more than the maximum.
#[test]
fn overflowing_releases_under_contention_change_nothing() {
    const MAX: u32 = Semaphore::MAX_VALUE;
    static SEM: Semaphore = Semaphore::new(MAX);
    static ACQUIRED: AtomicU32 = AtomicU32::new(0);
    static RELEASED: AtomicU32 = AtomicU32::new(0);
    static REFUSED: AtomicU32 = AtomicU32::new(0);
    let rounds = ROUNDS / 5;
    let release = || match SEM.release() {
        Ok(()) => {
            RELEASED.fetch_add(1, Ordering::SeqCst);
        }
        Err(e) => {
            assert_eq!(e, ReleaseError::Overflow);
            REFUSED.fetch_add(1, Ordering::SeqCst);
        }
    };
    let handles: Vec<_> = (0..4)
        .map(|t| {
            thread::spawn(move || {
                for _ in 0..rounds {
                    if t < 2 {
                        // Stray releases at (or next to) the maximum.
                        release();
                    } else {
                        // A holder: the count is never empty, so its acquire
                        // never waits for long (an overflow in progress ends
                        // within a few instructions of the refused release).
                        SEM.acquire();
                        ACQUIRED.fetch_add(1, Ordering::SeqCst);
                        release();
                    }
                    assert!(SEM.value() <= MAX, "value {} above the maximum", SEM.value());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let (acq, rel) = (ACQUIRED.load(Ordering::SeqCst), RELEASED.load(Ordering::SeqCst));
    assert_eq!(SEM.value() + acq, MAX + rel, "a permit was lost or made up");
    assert_eq!(rel + REFUSED.load(Ordering::SeqCst), 4 * rounds);
    assert!(SEM.try_acquire());
}

#[test]
fn guard_gives_the_permit_back() {
    let sem = Semaphore::new(1);
    {
        let _g = sem.lock();
        assert_eq!(sem.value(), 0);
        assert!(sem.try_lock().is_none());
    }
    assert_eq!(sem.value(), 1);
    let bounded = BoundedSemaphore::new(1);
    {
        let _g = bounded.lock();
        assert!(bounded.try_lock().is_none());
    }
    // The guard respects the bound: a stray release while it is held makes
    // the guard's own release fail quietly instead of passing the bound.
    let g = bounded.try_lock().unwrap();
    bounded.release().unwrap();
    drop(g);
    assert_eq!(bounded.value(), 1);
}

#[test]
#[cfg(feature = "std")]
fn guard_gives_the_permit_back_on_panic() {
    let sem = Semaphore::new(1);
    let caught = std::panic::catch_unwind(|| {
        let _g = sem.lock();
        panic!("inside `with sem:`");
    });
    assert!(caught.is_err());
    assert_eq!(sem.value(), 1);
}

#[test]
#[cfg(feature = "std")]
fn try_acquire_and_zero_timeout_return_at_once() {
    let sem = Semaphore::new(0);
    let start = Instant::now();
    assert!(!sem.try_acquire());
    assert!(!sem.acquire_timeout(Duration::ZERO));
    assert!(start.elapsed() < SLACK);
    assert_eq!(sem.value(), 0);
    sem.release().unwrap();
    assert!(sem.acquire_timeout(Duration::ZERO));
}

#[test]
#[cfg(feature = "std")]
fn acquire_timeout_on_an_empty_semaphore_waits_at_least_the_timeout() {
    let sem = Semaphore::new(0);
    let timeout = Duration::from_millis(100);
    let start = Instant::now();
    assert!(!sem.acquire_timeout(timeout));
    let took = start.elapsed();
    assert!(took >= timeout, "returned after {took:?}");
    assert!(took < timeout + SLACK, "returned after {took:?}");
    // The timed-out waiter left no trace.
    assert_eq!(sem.n_waiting(), 0);
    assert_eq!(sem.value(), 0);
    let bounded = BoundedSemaphore::new(1);
    bounded.acquire();
    assert!(!bounded.acquire_timeout(Duration::from_millis(10)));
    assert!(bounded.lock_timeout(Duration::from_millis(10)).is_none());
    bounded.release().unwrap();
    assert!(bounded.lock_timeout(Duration::from_millis(10)).is_some());
}

#[test]
#[cfg(feature = "std")]
fn acquire_timeout_is_woken_by_a_release() {
    let sem = Arc::new(Semaphore::new(0));
    let released = Arc::new(AtomicBool::new(false));
    let (s2, r2) = (Arc::clone(&sem), Arc::clone(&released));
    let waiter = thread::spawn(move || {
        let got = s2.acquire_timeout(Duration::MAX);
        (got, r2.load(Ordering::SeqCst))
    });
    wait_until("the timed acquirer blocks", || sem.n_waiting() == 1);
    released.store(true, Ordering::SeqCst);
    sem.release().unwrap();
    let (got, after_release) = waiter.join().unwrap();
    assert!(got && after_release);
    let g = sem.lock_timeout(Duration::from_millis(1));
    assert!(g.is_none());
}

/// Acquirers with short timeouts, blocking acquirers and `release_n` in
/// batches: no permit is lost or made up.
#[test]
#[cfg(feature = "std")]
fn stress_timed_untimed_and_batched() {
    static SEM: Semaphore = Semaphore::new(0);
    static TAKEN: AtomicU32 = AtomicU32::new(0);
    static STOP: AtomicBool = AtomicBool::new(false);
    // Consumers keep their permits; the producer hands them out in batches.
    let consumers: Vec<_> = (0..4)
        .map(|i| {
            thread::spawn(move || {
                loop {
                    let got = if i % 2 == 0 {
                        SEM.acquire_timeout(Duration::from_micros(200))
                    } else {
                        SEM.acquire();
                        true
                    };
                    if got {
                        TAKEN.fetch_add(1, Ordering::SeqCst);
                    }
                    if STOP.load(Ordering::SeqCst) {
                        return;
                    }
                }
            })
        })
        .collect();
    let mut given = 0;
    for batch in 0..ROUNDS / 2 {
        let n = batch % 4 + 1;
        SEM.release_n(n).unwrap();
        given += n;
        let taken = TAKEN.load(Ordering::SeqCst);
        assert!(taken <= given, "{taken} acquisitions of {given} permits");
    }
    STOP.store(true, Ordering::SeqCst);
    // A blocked consumer needs one more permit to see the stop.
    while !consumers.iter().all(thread::JoinHandle::is_finished) {
        SEM.release().unwrap();
        given += 1;
        thread::yield_now();
    }
    for c in consumers {
        c.join().unwrap();
    }
    assert_eq!(TAKEN.load(Ordering::SeqCst) + SEM.value(), given);
    assert_eq!(SEM.n_waiting(), 0);
}
