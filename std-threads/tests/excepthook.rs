//! `set_excepthook`: Python's `threading.excepthook`. The hook is global, so
//! the tests here take turns (`SERIAL`). The default hook's output is
//! checked on a child process in tests/exit.rs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use core_sync::{Lock, Mutex};
use std_threads::{Thread, Timer, reset_excepthook, set_excepthook};

static SERIAL: Lock = Lock::new();

type Seen = Arc<Mutex<Vec<(String, Option<String>, u64)>>>;

/// Installs a hook that records (thread name, message, ident).
fn recording_hook() -> Seen {
    let seen: Seen = Arc::default();
    let s = Arc::clone(&seen);
    set_excepthook(move |args| {
        s.lock().push((
            args.name().to_owned(),
            args.panic().message().map(str::to_owned),
            args.thread().ident(),
        ));
    });
    seen
}

#[test]
fn the_hook_sees_the_name_and_payload_before_join_returns() {
    let _serial = SERIAL.lock();
    let seen = recording_hook();
    let h = Thread::new(|| -> u32 { panic!("boom") }).name("doomed").daemon(true).start().unwrap();
    let ident = h.ident();
    let panic = h.join().unwrap_err();
    assert_eq!(panic.message(), Some("boom"), "join still returns the payload");
    assert_eq!(*seen.lock(), vec![("doomed".to_owned(), Some("boom".to_owned()), ident)]);
    reset_excepthook();
}

#[test]
fn the_hook_is_not_called_without_a_panic() {
    let _serial = SERIAL.lock();
    let seen = recording_hook();
    Thread::new(|| 1).daemon(true).start().unwrap().join().unwrap();
    assert!(seen.lock().is_empty());
    reset_excepthook();
}

#[test]
fn a_panicking_hook_is_contained() {
    let _serial = SERIAL.lock();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    set_excepthook(move |_| {
        c.fetch_add(1, Ordering::SeqCst);
        panic!("the hook itself fails");
    });
    let h = Thread::new(|| panic!("first")).daemon(true).start().unwrap();
    assert_eq!(h.join().unwrap_err().message(), Some("first"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Threads keep working afterwards.
    assert_eq!(Thread::new(|| 5).daemon(true).start().unwrap().join().unwrap(), 5);
    reset_excepthook();
}

#[test]
fn a_timers_panic_goes_to_the_hook() {
    let _serial = SERIAL.lock();
    let seen = recording_hook();
    let t = Timer::new(Duration::ZERO, || panic!("timer failed"))
        .name("alarm")
        .daemon(true)
        .start()
        .unwrap();
    assert!(t.join_timeout(Duration::from_secs(10)));
    let seen = seen.lock().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!((seen[0].0.as_str(), seen[0].1.as_deref()), ("alarm", Some("timer failed")));
    reset_excepthook();
}

#[test]
fn the_last_hook_set_wins_and_reset_restores_the_default() {
    let _serial = SERIAL.lock();
    let first = recording_hook();
    let second = recording_hook();
    Thread::new(|| panic!("x")).daemon(true).start().unwrap().join().unwrap_err();
    assert!(first.lock().is_empty());
    assert_eq!(second.lock().len(), 1);
    reset_excepthook();
    // The default prints to stderr (checked in tests/exit.rs); the recording
    // hook no longer sees anything.
    Thread::new(|| panic!("y")).daemon(true).start().unwrap().join().unwrap_err();
    assert_eq!(second.lock().len(), 1);
}
