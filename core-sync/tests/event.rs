//! Python's `threading.Event` semantics, on the futex and the spin backends.
//!
//! With `--no-default-features` the default backend is the spin backend and
//! has no clock, so the timed tests are compiled only with `std`.

#![cfg_attr(not(feature = "std"), allow(unused_imports, dead_code))]

mod common;

use core_sync::Event;
use core_sync::backend::{AtomicU32, Backend, DefaultBackend, Spin, TimedBackend};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

/// The default backend, counting the threads that have gone into its wait
/// (each thread once): a test sees that its waiters are blocked, rather than
/// sleeping and hoping. `ID` gives each test its own counter.
struct Counting<const ID: usize>;

static IN_WAIT: [AtomicUsize; 4] = [const { AtomicUsize::new(0) }; 4];

thread_local! {
    static COUNTED: std::cell::Cell<[bool; 4]> = const { std::cell::Cell::new([false; 4]) };
}

fn count_waiter(id: usize) {
    let mut counted = COUNTED.get();
    if !counted[id] {
        counted[id] = true;
        COUNTED.set(counted);
        IN_WAIT[id].fetch_add(1, Ordering::SeqCst);
    }
}

/// How many distinct threads have entered test `ID`'s backend wait.
fn waits<const ID: usize>() -> usize {
    IN_WAIT[ID].load(Ordering::SeqCst)
}

impl<const ID: usize> Backend for Counting<ID> {
    const SPIN_LIMIT: u32 = <DefaultBackend as Backend>::SPIN_LIMIT;

    fn wait(word: &AtomicU32, expected: u32) {
        count_waiter(ID);
        DefaultBackend::wait(word, expected);
    }

    fn wake_one(word: *const AtomicU32) {
        DefaultBackend::wake_one(word);
    }

    fn wake_all(word: *const AtomicU32) {
        DefaultBackend::wake_all(word);
    }
}

#[cfg(feature = "std")]
impl<const ID: usize> TimedBackend for Counting<ID> {
    fn now_nanos() -> u64 {
        DefaultBackend::now_nanos()
    }

    fn wait_until(word: &AtomicU32, expected: u32, deadline: u64) {
        count_waiter(ID);
        DefaultBackend::wait_until(word, expected, deadline);
    }
}

#[test]
fn size_is_four_bytes() {
    assert_eq!(size_of::<Event>(), 4);
    assert_eq!(size_of::<Event<Spin>>(), 4);
}

#[test]
fn set_clear_and_is_set() {
    static EV: Event = Event::new();
    assert!(!EV.is_set());
    EV.set();
    assert!(EV.is_set());
    EV.set(); // setting a set event changes nothing
    assert!(EV.is_set());
    EV.wait(); // returns at once
    EV.clear();
    assert!(!EV.is_set());
    EV.clear();
    assert!(!EV.is_set());
    assert!(!Event::default().is_set());
}

/// `set` wakes every blocked waiter, not just one.
#[test]
fn set_wakes_every_waiter() {
    static EV: Event<Counting<0>> = Event::with_backend();
    const WAITERS: usize = 5;
    // With a clock, wait with a timeout so that a waiter left asleep shows
    // up as a failure instead of a hang.
    let handles: Vec<_> = (0..WAITERS)
        .map(|_| {
            thread::spawn(|| {
                #[cfg(feature = "std")]
                {
                    let start = Instant::now();
                    // On timeout it would still say true (the flag is on).
                    EV.wait_timeout(SLACK) && start.elapsed() < SLACK
                }
                #[cfg(not(feature = "std"))]
                {
                    EV.wait();
                    true
                }
            })
        })
        .collect();
    wait_until("every waiter blocks", || waits::<0>() >= WAITERS);
    EV.set();
    for h in handles {
        assert!(h.join().unwrap(), "a waiter was not woken by set()");
    }
    assert!(EV.is_set());
}

#[test]
fn set_wakes_every_waiter_spin_backend() {
    static EV: Event<Spin<spin::relax::Spin>> = Event::with_backend();
    let handles: Vec<_> = (0..3).map(|_| thread::spawn(|| EV.wait())).collect();
    EV.set();
    for h in handles {
        h.join().unwrap();
    }
}

/// Python's own `test_set_and_clear`: waiters that were blocked when `set` ran
/// return `true` even though `clear` follows at once, before they run.
#[test]
#[cfg(feature = "std")]
fn set_then_clear_still_releases_the_waiters() {
    static EV: Event<Counting<1>> = Event::with_backend();
    const WAITERS: usize = 5;
    let handles: Vec<_> = (0..WAITERS).map(|_| thread::spawn(|| EV.wait_timeout(SLACK))).collect();
    wait_until("every waiter blocks", || waits::<1>() >= WAITERS);
    EV.set();
    EV.clear();
    for h in handles {
        assert!(h.join().unwrap(), "a waiter woken by set() reported a timeout");
    }
    assert!(!EV.is_set());
}

/// The same without timeouts (and so also on the clockless spin backend):
/// the untimed waiters must return rather than go back to sleep.
#[test]
fn set_then_clear_releases_untimed_waiters() {
    static EV: Event<Counting<2>> = Event::with_backend();
    let handles: Vec<_> = (0..3).map(|_| thread::spawn(|| EV.wait())).collect();
    wait_until("every waiter blocks", || waits::<2>() >= 3);
    EV.set();
    EV.clear();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
#[cfg(feature = "std")]
fn clear_resets_so_that_wait_blocks_again() {
    let ev = Event::new();
    ev.set();
    assert!(ev.wait_timeout(Duration::from_millis(1)));
    ev.clear();
    let timeout = Duration::from_millis(100);
    let start = Instant::now();
    assert!(!ev.wait_timeout(timeout), "wait on a cleared event returned true");
    let took = start.elapsed();
    assert!(took >= timeout, "returned after {took:?}");
    assert!(took < timeout + SLACK, "returned after {took:?}");
}

#[test]
#[cfg(feature = "std")]
fn zero_timeout_is_is_set_and_huge_timeouts_wait() {
    let ev = Arc::new(Event::new());
    let start = Instant::now();
    assert!(!ev.wait_timeout(Duration::ZERO));
    assert!(start.elapsed() < SLACK);
    ev.set();
    assert!(ev.wait_timeout(Duration::ZERO));
    ev.clear();
    let setter_ran = Arc::new(AtomicBool::new(false));
    let (e2, s2) = (Arc::clone(&ev), Arc::clone(&setter_ran));
    let setter = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        s2.store(true, Ordering::SeqCst);
        e2.set();
    });
    assert!(ev.wait_timeout(Duration::MAX));
    assert!(setter_ran.load(Ordering::SeqCst), "returned before the set");
    setter.join().unwrap();
}

#[test]
#[cfg(feature = "std")]
fn a_timed_out_waiter_does_not_see_a_later_set() {
    static EV: Event = Event::new();
    assert!(!EV.wait_timeout(Duration::from_millis(10)));
    EV.set();
    EV.clear();
    // A fresh wait starts after that set: it must time out.
    assert!(!EV.wait_timeout(Duration::from_millis(10)));
}

/// What the setter wrote before `set` is visible to a waiter after `wait`.
#[test]
fn set_publishes_earlier_writes() {
    static EV: Event = Event::new();
    static DATA: AtomicUsize = AtomicUsize::new(0);
    let waiter = thread::spawn(|| {
        EV.wait();
        DATA.load(Ordering::Relaxed)
    });
    DATA.store(42, Ordering::Relaxed);
    EV.set();
    assert_eq!(waiter.join().unwrap(), 42);
}

const ROUNDS: usize = if cfg!(miri) { 50 } else { 2_000 };

/// Two threads hand a turn back and forth through two events: every hand-off
/// is seen once, in order, and no wake-up is lost (a lost one hangs).
fn ping_pong<B: Backend + 'static>(ping: &'static Event<B>, pong: &'static Event<B>) {
    // Each call has its own counter (a `static` here would be shared by
    // every instantiation, and so by tests running in parallel).
    let turn: &'static AtomicUsize = common::leak(<AtomicUsize>::default());
    let other = thread::spawn(move || {
        for i in 0..ROUNDS {
            ping.wait();
            ping.clear();
            assert_eq!(turn.fetch_add(1, Ordering::SeqCst), 2 * i + 1);
            pong.set();
        }
    });
    for i in 0..ROUNDS {
        assert_eq!(turn.fetch_add(1, Ordering::SeqCst), 2 * i);
        ping.set();
        pong.wait();
        pong.clear();
    }
    other.join().unwrap();
    assert_eq!(turn.load(Ordering::SeqCst), 2 * ROUNDS);
}

#[test]
fn stress_ping_pong() {
    static PING: Event = Event::new();
    static PONG: Event = Event::new();
    ping_pong(&PING, &PONG);
}

#[test]
fn stress_ping_pong_spin_backend() {
    static PING: Event<Spin<spin::relax::Spin>> = Event::with_backend();
    static PONG: Event<Spin<spin::relax::Spin>> = Event::with_backend();
    ping_pong(&PING, &PONG);
}

/// Many waiters and a setter that sets and clears in a loop: every waiter
/// that saw the event unset when it began returns once a later `set` runs,
/// and no waiter stays blocked at the end.
#[test]
#[cfg(feature = "std")]
fn stress_many_waiters_set_and_clear() {
    static EV: Event = Event::new();
    static DONE: AtomicBool = AtomicBool::new(false);
    static RETURNS: AtomicUsize = AtomicUsize::new(0);
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(|| {
                while !DONE.load(Ordering::SeqCst) {
                    assert!(EV.wait_timeout(SLACK), "a wait outlived every set");
                    RETURNS.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for _ in 0..ROUNDS / 2 {
        EV.set();
        EV.clear();
        thread::yield_now();
    }
    DONE.store(true, Ordering::SeqCst);
    EV.set();
    for w in waiters {
        w.join().unwrap();
    }
    assert!(RETURNS.load(Ordering::SeqCst) >= 4);
}
