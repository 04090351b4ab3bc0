//! `Timer`: Python's `threading.Timer`: fires after its interval, `cancel`
//! prevents the call (race-free), a cancelled timer's thread ends at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use std_threads::{JoinError, Timer, current_thread};

/// Generous upper bound for "returns promptly" on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(10);
/// An interval no test run reaches.
const NEVER: Duration = Duration::from_hours(1);

fn flag() -> (Arc<AtomicBool>, impl FnOnce() + Send + 'static) {
    let called = Arc::new(AtomicBool::new(false));
    let c = Arc::clone(&called);
    (called, move || c.store(true, Ordering::SeqCst))
}

#[test]
fn fires_after_the_interval() {
    let (called, f) = flag();
    let interval = Duration::from_millis(50);
    let start = Instant::now();
    let t = Timer::new(interval, f).daemon(true).start().unwrap();
    assert!(t.join_timeout(SLACK));
    assert!(start.elapsed() >= interval, "fired after {:?}", start.elapsed());
    assert!(called.load(Ordering::SeqCst));
    assert!(t.fired());
    assert!(!t.is_alive());
    assert!(!t.cancel(), "a cancel after the call cannot prevent it");
}

#[test]
fn cancel_prevents_the_call_and_ends_the_thread_promptly() {
    let (called, f) = flag();
    let t = Timer::new(NEVER, f).daemon(true).start().unwrap();
    assert!(t.is_alive());
    let start = Instant::now();
    assert!(t.cancel());
    assert!(t.cancel(), "cancelling twice still reports the call prevented");
    assert!(t.join_timeout(SLACK), "the cancelled timer's thread waited for its interval");
    assert!(start.elapsed() < SLACK);
    assert!(!called.load(Ordering::SeqCst));
    assert!(!t.fired());
    assert_eq!(t.join(), Ok(()));
}

#[test]
fn cancel_from_another_thread() {
    let (called, f) = flag();
    let t = Timer::new(NEVER, f).daemon(true).start().unwrap();
    let other = t.clone();
    assert!(std::thread::spawn(move || other.cancel()).join().unwrap());
    assert!(t.join_timeout(SLACK));
    assert!(!called.load(Ordering::SeqCst));
}

/// Stress: timers whose interval ends about when `cancel` runs. Whatever the
/// interleaving, the function runs exactly when `cancel` says it was not
/// prevented.
#[test]
fn cancel_and_fire_race_to_exactly_one_winner() {
    let rounds = if cfg!(miri) { 5 } else { 200 };
    let calls = Arc::new(AtomicUsize::new(0));
    let mut prevented = 0;
    for i in 0..rounds {
        let before = calls.load(Ordering::SeqCst);
        let c = Arc::clone(&calls);
        let interval = Duration::from_micros((i % 5) * 100);
        let t = Timer::new(interval, move || {
            c.fetch_add(1, Ordering::SeqCst);
        })
        .daemon(true)
        .start()
        .unwrap();
        if i % 3 == 0 {
            std::thread::yield_now();
        }
        let cancelled = t.cancel();
        assert!(t.join_timeout(SLACK));
        let after = calls.load(Ordering::SeqCst);
        assert_eq!(after - before, usize::from(!cancelled), "round {i}");
        assert_eq!(t.fired(), !cancelled);
        prevented += usize::from(cancelled);
    }
    assert_eq!(calls.load(Ordering::SeqCst) + prevented, rounds as usize);
}

#[test]
fn a_zero_interval_fires_at_once() {
    let (called, f) = flag();
    let t = Timer::new(Duration::ZERO, f).daemon(true).start().unwrap();
    assert!(t.join_timeout(SLACK));
    assert!(called.load(Ordering::SeqCst));
}

#[test]
fn name_and_daemon_reach_the_timers_thread() {
    let t = Timer::new(NEVER, || ()).name("alarm").daemon(true).start().unwrap();
    assert_eq!(t.thread().name(), "alarm");
    assert!(t.thread().is_daemon());
    assert!(t.cancel());
    assert!(t.join_timeout(SLACK));
}

#[test]
fn a_timer_joining_itself_is_an_error() {
    let result = Arc::new(core_sync::Mutex::new(None));
    let r = Arc::clone(&result);
    let t = Timer::new(Duration::ZERO, move || {
        *r.lock() = Some(current_thread().join());
    })
    .daemon(true)
    .start()
    .unwrap();
    assert!(t.join_timeout(SLACK));
    assert_eq!(*result.lock(), Some(Err(JoinError::CurrentThread)));
}
