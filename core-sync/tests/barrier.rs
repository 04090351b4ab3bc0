//! Python's `threading.Barrier` semantics, on the futex and the spin backends.
//!
//! With `--no-default-features` the default backend is the spin backend and
//! has no clock, so the timed tests are compiled only with `std`.

#![cfg_attr(not(feature = "std"), allow(unused_imports, dead_code))]

mod common;

use core_sync::backend::{Backend, Spin};
use core_sync::{Barrier, BrokenBarrierError};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
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

/// Starts `n` threads that each call `wait` once.
fn waiters<B: Backend + 'static>(
    barrier: &'static Barrier<B>,
    n: usize,
) -> Vec<thread::JoinHandle<Result<usize, BrokenBarrierError>>> {
    (0..n).map(|_| thread::spawn(move || barrier.wait())).collect()
}

fn join_all<T>(handles: Vec<thread::JoinHandle<T>>) -> Vec<T> {
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn size() {
    // The state word, the party count and the optional action.
    assert!(size_of::<Barrier>() <= 8 + size_of::<Option<&'static (dyn Fn() + Sync)>>());
    assert_eq!(size_of::<Barrier<Spin>>(), size_of::<Barrier>());
}

#[test]
fn parties_and_a_fresh_barrier() {
    let barrier = Barrier::new(3);
    assert_eq!(barrier.parties(), 3);
    assert_eq!(barrier.n_waiting(), 0);
    assert!(!barrier.broken());
    // As std's Barrier: zero parties act as one; too many are capped.
    assert_eq!(Barrier::new(0).parties(), 1);
    assert_eq!(Barrier::new(usize::MAX).parties(), Barrier::MAX_PARTIES);
}

#[test]
fn a_barrier_of_one_never_blocks() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    fn action() {
        RUNS.fetch_add(1, Ordering::SeqCst);
    }
    let barrier = Barrier::with_action(1, &action);
    for _ in 0..3 {
        assert_eq!(barrier.wait(), Ok(0));
    }
    assert_eq!(RUNS.load(Ordering::SeqCst), 3);
    assert_eq!(Barrier::new(0).wait(), Ok(0));
}

#[test]
fn n_waiting_counts_the_threads_at_the_barrier() {
    static BARRIER: Barrier = Barrier::new(3);
    let first = waiters(&BARRIER, 2);
    wait_until("two threads wait", || BARRIER.n_waiting() == 2);
    assert!(!BARRIER.broken());
    let mine = BARRIER.wait().unwrap();
    let mut indices: Vec<usize> = join_all(first).into_iter().map(Result::unwrap).collect();
    indices.push(mine);
    indices.sort_unstable();
    assert_eq!(indices, [0, 1, 2]);
    wait_until("everyone has left", || BARRIER.n_waiting() == 0);
}

/// Cycles for the default backend. Without `std` that is the spin backend,
/// and spinning threads that outnumber the cores advance only as fast as
/// the scheduler rotates them (milliseconds a cycle), so it gets far fewer.
const CYCLES: usize = if cfg!(miri) || !cfg!(feature = "std") { 20 } else { 500 };

/// Cycles for the tests that name the spin backend.
const SPIN_CYCLES: usize = 20;

/// Four threads through many cycles: each cycle's indices are 0..4, once
/// each; the action runs exactly once per cycle, and before any waiter of
/// that cycle returns.
fn cycles_with_action<B: Backend + 'static>(
    barrier: &'static Barrier<B>,
    actions: &'static AtomicUsize,
    cycles: usize,
) {
    let seen: &'static [AtomicU32] =
        common::leak((0..cycles).map(|_| AtomicU32::new(0)).collect::<Vec<_>>());
    let handles: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(move || {
                for (cycle, seen) in seen.iter().enumerate() {
                    let index = barrier.wait().unwrap();
                    assert!(index < 4, "index {index} out of 0..4");
                    // The action of this cycle ran before the release, and the
                    // next one cannot run before this thread arrives again.
                    assert_eq!(actions.load(Ordering::SeqCst), cycle + 1);
                    let before = seen.fetch_or(1 << index, Ordering::SeqCst);
                    assert_eq!(before & (1 << index), 0, "index {index} twice in cycle {cycle}");
                }
            })
        })
        .collect();
    join_all(handles);
    assert_eq!(actions.load(Ordering::SeqCst), cycles);
    for (cycle, seen) in seen.iter().enumerate() {
        assert_eq!(seen.load(Ordering::SeqCst), 0b1111, "cycle {cycle}");
    }
    assert!(!barrier.broken());
}

#[test]
fn distinct_indices_and_one_action_per_cycle() {
    static ACTIONS: AtomicUsize = AtomicUsize::new(0);
    fn action() {
        ACTIONS.fetch_add(1, Ordering::SeqCst);
    }
    static BARRIER: Barrier = Barrier::with_action(4, &action);
    cycles_with_action(&BARRIER, &ACTIONS, CYCLES);
}

#[test]
fn distinct_indices_and_one_action_per_cycle_spin_backend() {
    static ACTIONS: AtomicUsize = AtomicUsize::new(0);
    fn action() {
        ACTIONS.fetch_add(1, Ordering::SeqCst);
    }
    static BARRIER: Barrier<Spin<spin::relax::Spin>> = Barrier::with_backend(4, Some(&action));
    cycles_with_action(&BARRIER, &ACTIONS, SPIN_CYCLES);
}

/// The action runs in one of the waiting threads (the last to arrive), and
/// while it runs nobody has been released.
#[test]
fn the_action_runs_in_the_last_arrival_before_anyone_leaves() {
    static RETURNED: AtomicUsize = AtomicUsize::new(0);
    static ACTION_SAW: AtomicUsize = AtomicUsize::new(usize::MAX);
    static ACTION_THREAD: std::sync::Mutex<Option<thread::ThreadId>> = std::sync::Mutex::new(None);
    fn action() {
        ACTION_SAW.store(RETURNED.load(Ordering::SeqCst), Ordering::SeqCst);
        *ACTION_THREAD.lock().unwrap() = Some(thread::current().id());
    }
    static BARRIER: Barrier = Barrier::with_action(3, &action);
    let handles: Vec<_> = (0..3)
        .map(|_| {
            thread::spawn(|| {
                let index = BARRIER.wait().unwrap();
                RETURNED.fetch_add(1, Ordering::SeqCst);
                (index, thread::current().id())
            })
        })
        .collect();
    let results = join_all(handles);
    assert_eq!(ACTION_SAW.load(Ordering::SeqCst), 0, "a waiter returned before the action ran");
    let runner = ACTION_THREAD.lock().unwrap().expect("the action ran");
    let last = results.iter().find(|(index, _)| *index == 2).unwrap().1;
    assert_eq!(runner, last, "the action ran outside the last arrival");
}

#[test]
#[cfg(feature = "std")]
fn a_timeout_breaks_the_barrier() {
    static BARRIER: Barrier = Barrier::new(3);
    let untimed = waiters(&BARRIER, 1);
    wait_until("one thread waits", || BARRIER.n_waiting() == 1);
    let timeout = Duration::from_millis(100);
    let start = Instant::now();
    assert_eq!(BARRIER.wait_timeout(timeout), Err(BrokenBarrierError));
    let took = start.elapsed();
    assert!(took >= timeout, "returned after {took:?}");
    assert!(took < timeout + SLACK, "returned after {took:?}");
    // The other waiter gets the error too, and so does every newcomer.
    assert_eq!(join_all(untimed), [Err(BrokenBarrierError)]);
    assert!(BARRIER.broken());
    assert_eq!(BARRIER.n_waiting(), 0);
    assert_eq!(BARRIER.wait(), Err(BrokenBarrierError));
    assert_eq!(BARRIER.wait_timeout(Duration::MAX), Err(BrokenBarrierError));
    // reset repairs it.
    BARRIER.reset();
    assert!(!BARRIER.broken());
    let two = waiters(&BARRIER, 2);
    assert!(BARRIER.wait_timeout(Duration::MAX).is_ok());
    assert!(join_all(two).iter().all(Result::is_ok));
}

#[test]
#[cfg(feature = "std")]
fn a_timeout_that_is_met_does_not_break() {
    static BARRIER: Barrier = Barrier::new(2);
    for _ in 0..10 {
        let other = thread::spawn(|| BARRIER.wait_timeout(SLACK));
        assert!(BARRIER.wait_timeout(SLACK).is_ok());
        assert!(other.join().unwrap().is_ok());
    }
    assert!(!BARRIER.broken());
}

fn abort_wakes_waiters_with_the_error<B: Backend + 'static>(barrier: &'static Barrier<B>) {
    let blocked = waiters(barrier, 2);
    wait_until("two threads wait", || barrier.n_waiting() == 2);
    barrier.abort();
    assert_eq!(join_all(blocked), [Err(BrokenBarrierError); 2]);
    assert!(barrier.broken());
    assert_eq!(barrier.n_waiting(), 0);
    assert_eq!(barrier.wait(), Err(BrokenBarrierError));
    // Usable again after reset.
    barrier.reset();
    assert!(!barrier.broken());
    let two = waiters(barrier, 2);
    let mine = barrier.wait().unwrap();
    let mut indices: Vec<usize> = join_all(two).into_iter().map(Result::unwrap).collect();
    indices.push(mine);
    indices.sort_unstable();
    assert_eq!(indices, [0, 1, 2]);
}

#[test]
fn abort_wakes_waiters_with_the_error_and_reset_repairs() {
    static BARRIER: Barrier = Barrier::new(3);
    abort_wakes_waiters_with_the_error(&BARRIER);
}

#[test]
fn abort_wakes_waiters_spin_backend() {
    static BARRIER: Barrier<Spin<spin::relax::Spin>> = Barrier::with_backend(3, None);
    abort_wakes_waiters_with_the_error(&BARRIER);
}

/// `reset` with threads waiting: they get the error, the barrier is not
/// broken, and the next cycle works.
#[test]
fn reset_wakes_waiters_with_the_error_then_the_barrier_is_usable() {
    static BARRIER: Barrier = Barrier::new(3);
    let blocked = waiters(&BARRIER, 2);
    wait_until("two threads wait", || BARRIER.n_waiting() == 2);
    BARRIER.reset();
    assert!(!BARRIER.broken(), "reset is not abort");
    assert_eq!(join_all(blocked), [Err(BrokenBarrierError); 2]);
    // Newcomers start a fresh cycle (those that arrive while the reset
    // waiters are still leaving wait for them, as in Python).
    for _ in 0..3 {
        let two = waiters(&BARRIER, 2);
        assert!(BARRIER.wait().is_ok());
        assert!(join_all(two).iter().all(Result::is_ok));
    }
}

#[test]
fn reset_of_an_idle_or_broken_barrier() {
    let barrier = Barrier::new(2);
    barrier.reset();
    assert!(!barrier.broken());
    barrier.abort();
    barrier.abort();
    assert!(barrier.broken());
    barrier.reset();
    assert!(!barrier.broken());
    assert_eq!(barrier.n_waiting(), 0);
}

/// A panicking action breaks the barrier: its panic goes on in the thread
/// that ran it (Python re-raises the action's exception there), and the
/// other waiters get the error.
#[test]
#[cfg(panic = "unwind")]
fn a_panicking_action_breaks_the_barrier() {
    static PANIC_NEXT: AtomicBool = AtomicBool::new(true);
    fn action() {
        assert!(!PANIC_NEXT.swap(false, Ordering::SeqCst), "the action fails");
    }
    static BARRIER: Barrier = Barrier::with_action(3, &action);
    // With a clock, wait with a timeout so that a barrier that fails to
    // break shows up as a slow return instead of a hang.
    let wait = || {
        #[cfg(feature = "std")]
        {
            let start = Instant::now();
            let result = BARRIER.wait_timeout(SLACK);
            assert!(start.elapsed() < SLACK, "the waiters were not woken by the break");
            result
        }
        #[cfg(not(feature = "std"))]
        BARRIER.wait()
    };
    let handles: Vec<_> = (0..3)
        .map(|_| thread::spawn(move || std::panic::catch_unwind(wait).map_err(|_| "panicked")))
        .collect();
    let results = join_all(handles);
    let panicked = results.iter().filter(|r| r.is_err()).count();
    let broken = results.iter().filter(|r| **r == Ok(Err(BrokenBarrierError))).count();
    assert_eq!(
        (panicked, broken),
        (1, 2),
        "one thread carries the panic, the others get the error: {results:?}"
    );
    assert!(BARRIER.broken());
    assert_eq!(BARRIER.n_waiting(), 0);
    assert_eq!(BARRIER.wait(), Err(BrokenBarrierError));
    // After a reset the (now succeeding) action runs and the cycle passes.
    BARRIER.reset();
    let two = waiters(&BARRIER, 2);
    assert!(BARRIER.wait().is_ok());
    assert!(join_all(two).iter().all(Result::is_ok));
}

/// More threads than parties: cycles form from whoever arrives, and
/// newcomers wait while a cycle drains. Runs until `cycles` actions have
/// run, then breaks the barrier to release the stragglers (with more threads
/// than parties, the last ones cannot always make up a full cycle). Every
/// released cycle has all its indices, once each.
fn more_threads_than_parties<B: Backend + 'static>(
    barrier: &'static Barrier<B>,
    actions: &'static AtomicUsize,
    cycles: usize,
) {
    // Each call has its own counters (a `static` here would be shared by
    // every instantiation, and so by tests running in parallel).
    let counters: &'static [AtomicUsize; 3] = common::leak(<[AtomicUsize; 3]>::default());
    let stop: &'static AtomicBool = common::leak(<AtomicBool>::default());
    let [oks, index_sum, _] = counters;
    let parties = barrier.parties();
    let handles: Vec<_> = (0..2 * parties)
        .map(|_| {
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Ok(index) = barrier.wait() else {
                        assert!(stop.load(Ordering::SeqCst), "broken before the end");
                        return;
                    };
                    assert!(index < parties);
                    index_sum.fetch_add(index, Ordering::SeqCst);
                    oks.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    wait_until("enough cycles ran", || actions.load(Ordering::SeqCst) >= cycles);
    stop.store(true, Ordering::SeqCst);
    while !handles.iter().all(thread::JoinHandle::is_finished) {
        barrier.abort();
        thread::yield_now();
    }
    join_all(handles);
    let oks = oks.load(Ordering::SeqCst);
    assert_eq!(oks % parties, 0, "a cycle released only part of its waiters");
    let released = oks / parties;
    assert_eq!(index_sum.load(Ordering::SeqCst), released * parties * (parties - 1) / 2);
    // The abort may have caught the last action before its release.
    let ran = actions.load(Ordering::SeqCst);
    assert!(ran == released || ran == released + 1, "{ran} actions for {released} cycles");
    assert!(released >= cycles - 1);
    barrier.reset();
    assert_eq!(barrier.n_waiting(), 0);
    assert!(!barrier.broken());
}

#[test]
fn stress_more_threads_than_parties() {
    static ACTIONS: AtomicUsize = AtomicUsize::new(0);
    fn action() {
        ACTIONS.fetch_add(1, Ordering::SeqCst);
    }
    static BARRIER: Barrier = Barrier::with_action(3, &action);
    more_threads_than_parties(&BARRIER, &ACTIONS, CYCLES);
}

#[test]
fn stress_more_threads_than_parties_spin_backend() {
    static ACTIONS: AtomicUsize = AtomicUsize::new(0);
    fn action() {
        ACTIONS.fetch_add(1, Ordering::SeqCst);
    }
    static BARRIER: Barrier<Spin<spin::relax::Spin>> = Barrier::with_backend(2, Some(&action));
    more_threads_than_parties(&BARRIER, &ACTIONS, SPIN_CYCLES);
}

/// Timed and untimed waiters mixed over many cycles, with timeouts long
/// enough never to expire: nothing breaks, every cycle completes.
#[test]
#[cfg(feature = "std")]
fn stress_timed_and_untimed_waiters() {
    static ACTIONS: AtomicUsize = AtomicUsize::new(0);
    fn action() {
        ACTIONS.fetch_add(1, Ordering::SeqCst);
    }
    static BARRIER: Barrier = Barrier::with_action(4, &action);
    let handles: Vec<_> = (0..4)
        .map(|t| {
            thread::spawn(move || {
                for cycle in 0..CYCLES {
                    let index = if (t + cycle) % 2 == 0 {
                        BARRIER.wait_timeout(SLACK).unwrap()
                    } else {
                        BARRIER.wait().unwrap()
                    };
                    assert!(index < 4);
                    assert_eq!(ACTIONS.load(Ordering::SeqCst), cycle + 1);
                }
            })
        })
        .collect();
    join_all(handles);
    assert_eq!(ACTIONS.load(Ordering::SeqCst), CYCLES);
    assert!(!BARRIER.broken());
}

/// Aborts and resets racing with waiting threads: every `wait` returns
/// (`Ok` or the error) and nothing hangs; afterwards the barrier works.
#[test]
fn stress_abort_and_reset_never_strand_a_waiter() {
    static BARRIER: Barrier = Barrier::new(3);
    static STOP: AtomicBool = AtomicBool::new(false);
    static OKS: AtomicUsize = AtomicUsize::new(0);
    let handles: Vec<_> = (0..3)
        .map(|_| {
            thread::spawn(|| {
                while !STOP.load(Ordering::SeqCst) {
                    if BARRIER.wait().is_ok() {
                        OKS.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    for i in 0..CYCLES {
        if i % 2 == 0 {
            BARRIER.abort();
        }
        thread::yield_now();
        BARRIER.reset();
        thread::yield_now();
    }
    STOP.store(true, Ordering::SeqCst);
    // Threads blocked at the barrier now are released by breaking it.
    while !handles.iter().all(thread::JoinHandle::is_finished) {
        BARRIER.abort();
        thread::yield_now();
    }
    join_all(handles);
    assert_eq!(OKS.load(Ordering::SeqCst) % 3, 0, "a cycle released only part of its waiters");
    BARRIER.reset();
    assert_eq!(BARRIER.n_waiting(), 0);
    let two = waiters(&BARRIER, 2);
    assert!(BARRIER.wait().is_ok());
    assert!(join_all(two).iter().all(Result::is_ok));
}
