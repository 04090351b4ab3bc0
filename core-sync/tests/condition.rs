//! Python's `threading.Condition` semantics: ownership checks, `RLock`
//! depth kept across a wait, exact `notify(n)` in FIFO order, timed-out
//! waiters that leave no trace, `wait_for`'s return value, and a
//! producer/consumer stress test.
//!
//! Tests that need to know a thread is blocked poll `n_waiting()`, which
//! counts the linked waiter nodes; nothing sleeps to make a race unlikely.
//! With `--no-default-features` the spin-backend tests (untimed) remain.

#![cfg_attr(not(feature = "std"), allow(unused_imports, dead_code))]

use core_sync::backend::{AtomicU32, Backend, CurrentThread, Spin};
use core_sync::{Condition, ConditionLock, Lock, NotHeldError, RLock, ReleaseError};
use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Generous upper bound for "returns promptly" on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(5);
/// A wait that must end by a notify, long before this.
const LONG: Duration = Duration::from_secs(30);

/// Spins until `n` threads wait on `cond`.
fn until_waiting<L: ConditionLock>(cond: &Condition<L>, n: usize) {
    while cond.n_waiting() != n {
        thread::yield_now();
    }
}

/// A spinning bare-metal-style backend that names threads itself.
struct SpinIds;

impl Backend for SpinIds {
    const SPIN_LIMIT: u32 = 0;
    fn wait(word: &AtomicU32, expected: u32) {
        Spin::<spin::relax::Spin>::wait(word, expected);
    }
    fn wake_one(_word: *const AtomicU32) {}
    fn wake_all(_word: *const AtomicU32) {}
}

impl CurrentThread for SpinIds {
    fn current_thread_id() -> NonZeroUsize {
        thread_local!(static ID: u8 = const { 0 });
        ID.with(|id| NonZeroUsize::new(std::ptr::from_ref(id).addr())).unwrap()
    }
}

#[test]
fn size_is_at_most_24_bytes_beyond_the_lock() {
    assert!(size_of::<Condition<Lock<Spin>>>() - size_of::<Lock<Spin>>() <= 24);
    assert!(size_of::<Condition<RLock<SpinIds>>>() - size_of::<RLock<SpinIds>>() <= 24);
    assert!(size_of::<Condition<&RLock<SpinIds>>>() - size_of::<&RLock<SpinIds>>() <= 24);
    #[cfg(target_pointer_width = "64")]
    {
        assert_eq!(size_of::<Condition<Lock<Spin>>>(), 24);
        assert_eq!(size_of::<Condition<RLock<SpinIds>>>(), 32);
        assert_eq!(size_of::<Condition<&Lock<Spin>>>(), 24);
    }
    #[cfg(feature = "std")]
    assert!(size_of::<Condition>() - size_of::<RLock>() <= 24);
}

/// Every wait and notify checks the lock first and changes nothing.
#[cfg(feature = "std")]
fn every_call_refuses<L: ConditionLock>(cond: &Condition<L>)
where
    L::Backend: core_sync::TimedBackend,
{
    let called = AtomicBool::new(false);
    let pred = || {
        called.store(true, Ordering::SeqCst);
        true
    };
    assert_eq!(cond.wait(), Err(NotHeldError));
    assert_eq!(cond.wait_timeout(Duration::from_millis(1)), Err(NotHeldError));
    assert_eq!(cond.wait_timeout(Duration::ZERO), Err(NotHeldError));
    assert_eq!(cond.wait_for(pred), Err(NotHeldError));
    assert_eq!(cond.wait_for_timeout(pred, Duration::from_millis(1)), Err(NotHeldError));
    assert_eq!(cond.notify(1), Err(NotHeldError));
    assert_eq!(cond.notify_all(), Err(NotHeldError));
    assert!(!called.load(Ordering::SeqCst), "the predicate ran without the lock");
    assert_eq!(cond.n_waiting(), 0);
}

#[test]
#[cfg(feature = "std")]
fn wait_and_notify_without_the_lock_are_errors() {
    // Unlocked RLock.
    let cond = Condition::new();
    every_call_refuses(&cond);
    assert!(!cond.get_lock().locked());
    // RLock held by another thread: still not ours.
    let held = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| {
            cond.acquire().unwrap();
            held.store(true, Ordering::SeqCst);
            while !done.load(Ordering::SeqCst) {
                thread::yield_now();
            }
            cond.release().unwrap();
        });
        while !held.load(Ordering::SeqCst) {
            thread::yield_now();
        }
        every_call_refuses(&cond);
        assert_eq!(cond.release(), Err(ReleaseError::NotOwner));
        done.store(true, Ordering::SeqCst);
    });
    // A plain Lock: an error when it is not locked.
    let cond = Condition::with_lock(Lock::new());
    every_call_refuses(&cond);
    assert!(!cond.get_lock().locked());
    let _guard = cond.lock();
    assert_eq!(cond.notify(1), Ok(0));
    assert_eq!(cond.wait_timeout(Duration::from_millis(1)), Ok(false));
}

#[test]
#[cfg(feature = "std")]
fn wait_on_an_rlock_held_three_times_restores_exactly_three() {
    let cond = Condition::new();
    for _ in 0..3 {
        cond.acquire().unwrap();
    }
    thread::scope(|s| {
        s.spawn(|| {
            until_waiting(&cond, 1);
            // Succeeds only if the waiter released every level.
            assert!(cond.acquire_timeout(SLACK), "the waiter kept a level");
            assert_eq!(cond.get_lock().recursion_count(), 1);
            assert_eq!(cond.notify(1), Ok(1));
            cond.release().unwrap();
        });
        assert_eq!(cond.wait_timeout(LONG), Ok(true));
    });
    assert_eq!(cond.get_lock().recursion_count(), 3);
    for _ in 0..3 {
        cond.release().unwrap();
    }
    assert_eq!(cond.release(), Err(ReleaseError::NotLocked));
}

#[test]
#[cfg(feature = "std")]
fn timed_out_wait_on_an_rlock_held_three_times_restores_exactly_three() {
    let cond = Condition::new();
    for _ in 0..3 {
        cond.acquire().unwrap();
    }
    let other_got_it = AtomicBool::new(false);
    let timeout = Duration::from_millis(100);
    let start = Instant::now();
    let notified = thread::scope(|s| {
        s.spawn(|| {
            until_waiting(&cond, 1);
            // Free while the owner waits, although it held three levels.
            assert!(cond.acquire_timeout(SLACK), "the waiter kept a level");
            other_got_it.store(true, Ordering::SeqCst);
            cond.release().unwrap();
        });
        cond.wait_timeout(timeout).unwrap()
    });
    let took = start.elapsed();
    assert!(!notified);
    assert!(took >= timeout && took < timeout + SLACK, "took {took:?}");
    assert!(other_got_it.load(Ordering::SeqCst));
    assert_eq!(cond.get_lock().recursion_count(), 3);
    assert_eq!(cond.n_waiting(), 0);
    for _ in 0..3 {
        cond.release().unwrap();
    }
    assert_eq!(cond.release(), Err(ReleaseError::NotLocked));
}

#[test]
#[cfg(feature = "std")]
fn notify_two_of_five_wakes_exactly_the_two_longest_waiting() {
    let cond = Condition::new();
    let woken = Mutex::new(Vec::new());
    thread::scope(|s| {
        let (cond, woken) = (&cond, &woken);
        for id in 0..5 {
            s.spawn(move || {
                let _guard = cond.lock().unwrap();
                // Returns "notified" only when a notify chose this waiter.
                assert_eq!(cond.wait_timeout(LONG), Ok(true), "waiter {id}");
                woken.lock().unwrap().push(id);
            });
            // The next waiter queues behind this one.
            until_waiting(cond, id + 1);
        }
        let wait_for_woken = |n: usize| {
            while woken.lock().unwrap().len() != n {
                thread::yield_now();
            }
        };
        {
            let _guard = cond.lock().unwrap();
            assert_eq!(cond.notify(2), Ok(2));
            assert_eq!(cond.n_waiting(), 3, "notify(2) must take exactly two waiters");
        }
        wait_for_woken(2);
        let mut first_two = woken.lock().unwrap().clone();
        first_two.sort_unstable();
        assert_eq!(first_two, [0, 1], "notify(2) must choose the two longest-waiting");
        assert_eq!(cond.n_waiting(), 3);
        for next in [2, 3] {
            let guard = cond.lock().unwrap();
            assert_eq!(cond.notify(1), Ok(1));
            drop(guard);
            wait_for_woken(next + 1);
            assert_eq!(woken.lock().unwrap()[next], next, "FIFO order");
        }
        let _guard = cond.lock().unwrap();
        assert_eq!(cond.notify_all(), Ok(1));
    });
    assert_eq!(woken.lock().unwrap()[4], 4);
    assert_eq!(cond.n_waiting(), 0);
}

#[test]
#[cfg(feature = "std")]
fn a_timed_out_waiter_leaves_no_trace() {
    let cond = Condition::new();
    let _guard = cond.lock().unwrap();
    thread::scope(|s| {
        let live = s.spawn(|| {
            // Queues behind the main thread's timed wait.
            let _guard = cond.lock().unwrap();
            cond.wait_timeout(LONG).unwrap()
        });
        let timeout = Duration::from_millis(50);
        let start = Instant::now();
        assert_eq!(cond.wait_timeout(timeout), Ok(false));
        assert!(start.elapsed() >= timeout);
        // Let the live waiter queue (if it has not yet), then notify one: it
        // must reach the live waiter, not the main thread's stale node.
        cond.release().unwrap();
        until_waiting(&cond, 1);
        cond.acquire().unwrap();
        assert_eq!(cond.notify(1), Ok(1));
        assert_eq!(cond.n_waiting(), 0);
        cond.release().unwrap();
        assert!(live.join().unwrap(), "notify(1) after a timeout must reach the live waiter");
        cond.acquire().unwrap();
    });
}

#[test]
#[cfg(feature = "std")]
fn wait_for_timeout_returns_the_predicates_last_value() {
    let cond = Condition::new();
    let _guard = cond.lock().unwrap();
    let timeout = Duration::from_millis(50);

    // Never true: false after the timeout, evaluated once more at the end.
    let mut calls = 0;
    let start = Instant::now();
    assert_eq!(
        cond.wait_for_timeout(
            || {
                calls += 1;
                false
            },
            timeout
        ),
        Ok(false)
    );
    assert!(start.elapsed() >= timeout);
    assert!(calls >= 2, "the predicate is evaluated after the timeout, called {calls} times");

    // True only at that last evaluation: the result is true although the
    // wait timed out, as in Python.
    let mut calls = 0;
    let start = Instant::now();
    let last = cond.wait_for_timeout(
        || {
            calls += 1;
            calls >= 2
        },
        timeout,
    );
    assert_eq!(last, Ok(true));
    assert!(start.elapsed() >= timeout);
    assert_eq!(calls, 2);

    // Already true: returns at once, without waiting.
    assert_eq!(cond.wait_for_timeout(|| true, LONG), Ok(true));
    assert_eq!(cond.wait_for_timeout(|| false, Duration::ZERO), Ok(false));

    // Made true by another thread: true long before the timeout.
    let flag = AtomicBool::new(false);
    cond.release().unwrap();
    thread::scope(|s| {
        s.spawn(|| {
            let _guard = cond.lock().unwrap();
            let start = Instant::now();
            assert_eq!(cond.wait_for_timeout(|| flag.load(Ordering::SeqCst), LONG), Ok(true));
            assert!(start.elapsed() < LONG);
        });
        until_waiting(&cond, 1);
        let _guard = cond.lock().unwrap();
        flag.store(true, Ordering::SeqCst);
        cond.notify_all().unwrap();
    });
    cond.acquire().unwrap();
}

#[test]
#[cfg(feature = "std")]
fn notify_all_wakes_every_waiter_and_notify_with_none_waiting_is_a_no_op() {
    let cond = Condition::new();
    {
        let _guard = cond.lock().unwrap();
        assert_eq!(cond.notify(1), Ok(0));
        assert_eq!(cond.notify_all(), Ok(0));
    }
    let woken = AtomicUsize::new(0);
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let _guard = cond.lock().unwrap();
                assert_eq!(cond.wait_timeout(LONG), Ok(true));
                woken.fetch_add(1, Ordering::SeqCst);
            });
        }
        until_waiting(&cond, 4);
        let _guard = cond.lock().unwrap();
        assert_eq!(cond.notify(0), Ok(0));
        assert_eq!(cond.n_waiting(), 4);
        assert_eq!(cond.notify_all(), Ok(4));
        assert_eq!(cond.n_waiting(), 0);
    });
    assert_eq!(woken.load(Ordering::SeqCst), 4);
}

#[test]
#[cfg(feature = "std")]
fn conditions_sharing_a_lock_keep_their_own_waiters() {
    static LOCK: RLock = RLock::new();
    static A: Condition<&RLock> = Condition::with_lock(&LOCK);
    static B: Condition<&RLock> = Condition::with_lock(&LOCK);
    thread::scope(|s| {
        let on_a = s.spawn(|| {
            let _guard = A.lock().unwrap();
            A.wait_timeout(LONG).unwrap()
        });
        until_waiting(&A, 1);
        let on_b = s.spawn(|| {
            let _guard = B.lock().unwrap();
            B.wait_timeout(LONG).unwrap()
        });
        until_waiting(&B, 1);
        {
            let _guard = LOCK.lock().unwrap();
            assert_eq!(A.notify_all(), Ok(1));
            assert_eq!(B.n_waiting(), 1);
        }
        assert!(on_a.join().unwrap());
        let guard = B.lock().unwrap();
        assert!(A.notify(1).is_ok(), "holding the shared lock counts for both");
        assert_eq!(B.notify(1), Ok(1));
        drop(guard);
        assert!(on_b.join().unwrap());
    });
}

#[test]
#[cfg(feature = "std")]
fn huge_timeouts_wait_forever_without_overflow() {
    let cond = Condition::with_lock(Lock::new());
    thread::scope(|s| {
        s.spawn(|| {
            let _guard = cond.lock();
            assert_eq!(cond.wait_timeout(Duration::MAX), Ok(true));
        });
        until_waiting(&cond, 1);
        let _guard = cond.lock();
        cond.notify(1).unwrap();
    });
}

/// Untimed wait and notify on the bare-metal spin backend, with a plain
/// `Lock` and with an `RLock` held twice.
#[test]
fn spin_backend_wait_and_notify() {
    let cond = Condition::with_lock(Lock::<Spin>::with_backend());
    let ready = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| {
            let _guard = cond.lock();
            cond.wait_for(|| ready.load(Ordering::SeqCst)).unwrap();
        });
        until_waiting(&cond, 1);
        let _guard = cond.lock();
        ready.store(true, Ordering::SeqCst);
        assert_eq!(cond.notify(1), Ok(1));
    });

    let cond = Condition::with_lock(RLock::<SpinIds>::with_backend());
    cond.acquire().unwrap();
    cond.acquire().unwrap();
    thread::scope(|s| {
        s.spawn(|| {
            until_waiting(&cond, 1);
            cond.acquire().unwrap();
            assert_eq!(cond.notify_all(), Ok(1));
            cond.release().unwrap();
        });
        cond.wait().unwrap();
    });
    assert_eq!(cond.get_lock().recursion_count(), 2);
    cond.release().unwrap();
    cond.release().unwrap();
    assert_eq!(cond.wait(), Err(NotHeldError));
}

/// Producer/consumer over a bounded buffer with two conditions sharing one
/// `RLock`, untimed and timed waiters mixed. Checks: the buffer never
/// exceeds its capacity, only one thread touches it at a time, every item
/// arrives exactly once, each producer's items arrive in order, and the
/// depth is restored after every wait. A lost wake-up hangs the untimed
/// waiters.
#[test]
#[cfg(feature = "std")]
fn stress_producers_and_consumers() {
    const CAP: usize = 4;
    const PRODUCERS: u64 = 2;
    const CONSUMERS: usize = 3;
    const ITEMS: u64 = if cfg!(miri) { 40 } else { 20_000 };
    const TOTAL: u64 = PRODUCERS * ITEMS;

    struct Shared {
        buffer: VecDeque<u64>,
        taken: u64,
    }
    let lock = RLock::new();
    let not_empty = Condition::with_lock(&lock);
    let not_full = Condition::with_lock(&lock);
    // `try_lock().unwrap()` panics if two threads are ever inside at once.
    let shared = Mutex::new(Shared { buffer: VecDeque::new(), taken: 0 });
    let with = |f: &mut dyn FnMut(&mut Shared)| f(&mut shared.try_lock().unwrap());

    let received: Vec<Vec<u64>> = thread::scope(|s| {
        for p in 0..PRODUCERS {
            let (lock, not_empty, not_full, with) = (&lock, &not_empty, &not_full, &with);
            s.spawn(move || {
                for k in 0..ITEMS {
                    let _outer = lock.lock().unwrap();
                    let _inner = lock.lock().unwrap();
                    not_full
                        .wait_for(|| {
                            let mut room = false;
                            with(&mut |sh| room = sh.buffer.len() < CAP);
                            room
                        })
                        .unwrap();
                    assert_eq!(lock.recursion_count(), 2);
                    with(&mut |sh| {
                        sh.buffer.push_back(p * ITEMS + k);
                        assert!(sh.buffer.len() <= CAP);
                    });
                    not_empty.notify(1).unwrap();
                }
            });
        }
        let consumers: Vec<_> = (0..CONSUMERS)
            .map(|c| {
                let (lock, not_empty, not_full, with) = (&lock, &not_empty, &not_full, &with);
                s.spawn(move || {
                    let mut got = Vec::new();
                    loop {
                        let _guard = lock.lock().unwrap();
                        let ready = || {
                            let mut ready = false;
                            with(&mut |sh| ready = !sh.buffer.is_empty() || sh.taken == TOTAL);
                            ready
                        };
                        let ok = if c == 0 {
                            not_empty.wait_for(ready).map(|()| true).unwrap()
                        } else {
                            not_empty.wait_for_timeout(ready, Duration::from_micros(200)).unwrap()
                        };
                        if !ok {
                            continue;
                        }
                        let mut item = None;
                        let mut finished = false;
                        with(&mut |sh| {
                            item = sh.buffer.pop_front();
                            if item.is_some() {
                                sh.taken += 1;
                            }
                            finished = sh.taken == TOTAL;
                        });
                        if let Some(item) = item {
                            got.push(item);
                            not_full.notify(1).unwrap();
                        }
                        if finished {
                            not_empty.notify_all().unwrap();
                            return got;
                        }
                    }
                })
            })
            .collect();
        consumers.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let mut all: Vec<u64> = received.iter().flatten().copied().collect();
    assert_eq!(all.len() as u64, TOTAL, "items lost or duplicated");
    all.sort_unstable();
    assert!(all.iter().copied().eq(0..TOTAL), "items lost or duplicated");
    for got in &received {
        for p in 0..PRODUCERS {
            let mine: Vec<u64> = got.iter().copied().filter(|i| i / ITEMS == p).collect();
            assert!(mine.windows(2).all(|w| w[0] < w[1]), "a producer's items out of order");
        }
    }
    assert_eq!(not_empty.n_waiting() + not_full.n_waiting(), 0);
    assert!(!lock.locked());
}
