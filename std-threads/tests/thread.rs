//! `Thread` and `JoinHandle`: Python's `start`, `join`, `join(timeout)`,
//! `is_alive`, `name`, `ident`, `native_id`, `daemon`, with results and
//! panics.
//!
//! Tests run on test-harness threads, which this crate did not start, so
//! every thread here sets its daemon flag explicitly unless the default is
//! what is tested.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use core_sync::{Lock, Mutex};
use std_threads::{
    JoinError, JoinHandle, Thread, ThreadRef, TimerHandle, current_thread, enumerate, get_ident,
    get_native_id, main_thread, set_excepthook,
};

/// Generous upper bound for "returns promptly" on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(10);

/// A held lock that a thread blocks on until the test opens it.
fn gate() -> Arc<Lock> {
    let gate = Arc::new(Lock::new());
    gate.acquire();
    gate
}

fn pass(gate: &Lock) {
    gate.acquire();
    let _ = gate.release();
}

/// The panicking tests need no report on stderr (the hook is tested in
/// tests/excepthook.rs).
fn quiet_hook() {
    set_excepthook(|_| {});
}

#[test]
fn join_returns_the_functions_result() {
    let h = Thread::new(|| String::from("done")).daemon(true).start().unwrap();
    assert_eq!(h.join().unwrap(), "done");
}

#[test]
fn join_returns_the_panic_payload() {
    quiet_hook();
    let h = Thread::new(|| -> u8 { panic!("boom") }).daemon(true).start().unwrap();
    let panic = h.join().unwrap_err();
    assert_eq!(panic.message(), Some("boom"));
    assert_eq!(panic.to_string(), "thread panicked: boom");

    let h = Thread::new(|| panic!("formatted {}", 42)).daemon(true).start().unwrap();
    assert_eq!(h.join().unwrap_err().message(), Some("formatted 42"));

    let h = Thread::new(|| std::panic::panic_any(7_i32)).daemon(true).start().unwrap();
    let panic = h.join().unwrap_err();
    assert_eq!(panic.message(), None);
    let payload: Box<dyn Any + Send> = panic.into_payload();
    assert_eq!(payload.downcast_ref::<i32>(), Some(&7));
}

#[test]
fn a_panic_can_be_resumed_on_the_joining_thread() {
    quiet_hook();
    let h = Thread::new(|| panic!("again")).daemon(true).start().unwrap();
    let panic = h.join().unwrap_err();
    let resumed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| panic.resume()));
    let payload = resumed.unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"again"));
}

#[test]
fn join_timeout_leaves_the_handle_usable() {
    let gate = gate();
    let g = Arc::clone(&gate);
    let h = Thread::new(move || {
        pass(&g);
        7
    })
    .daemon(true)
    .start()
    .unwrap();
    assert!(!h.join_timeout(Duration::ZERO));
    assert!(!h.join_timeout(Duration::from_millis(20)));
    assert!(h.is_alive());
    gate.release().unwrap();
    assert!(h.join_timeout(SLACK), "the thread did not finish");
    assert!(!h.is_alive());
    assert!(h.join_timeout(Duration::ZERO));
    assert!(h.join_timeout(Duration::MAX), "a finished thread joins at once, even with MAX");
    assert_eq!(h.join().unwrap(), 7);
}

#[test]
fn is_alive_from_start_until_the_function_returns() {
    let gate = gate();
    let g = Arc::clone(&gate);
    let h = Thread::new(move || pass(&g)).daemon(true).start().unwrap();
    let shared = h.thread().clone();
    assert!(h.is_alive() && shared.is_alive());
    gate.release().unwrap();
    h.join().unwrap();
    assert!(!shared.is_alive());
}

#[test]
fn names_default_to_thread_n_and_reach_the_thread() {
    let h = Thread::new(|| current_thread().name().to_owned()).daemon(true).start().unwrap();
    let name = h.name().to_owned();
    let n = name.strip_prefix("Thread-").expect("default name is Thread-N");
    assert!(n.parse::<u64>().is_ok(), "{name}");
    assert_eq!(h.join().unwrap(), name);

    let h = Thread::new(|| std::thread::current().name().map(str::to_owned))
        .name("io-loop")
        .daemon(true)
        .start()
        .unwrap();
    assert_eq!(h.name(), "io-loop");
    assert_eq!(h.join().unwrap().as_deref(), Some("io-loop"), "the OS thread is named too");

    // A name the OS cannot take (a NUL byte) is kept as given, never a panic.
    let h = Thread::new(|| current_thread().name().to_owned())
        .name("odd\0name")
        .daemon(true)
        .start()
        .unwrap();
    assert_eq!(h.join().unwrap(), "odd\0name");
}

#[test]
fn daemon_is_as_set_or_inherited_from_the_creator() {
    for daemon in [false, true] {
        let h = Thread::new(|| {
            let me = current_thread().is_daemon();
            let child = Thread::new(|| ()).start().unwrap();
            let inherited = child.is_daemon();
            child.join().unwrap();
            (me, inherited)
        })
        .daemon(daemon)
        .start()
        .unwrap();
        assert_eq!(h.is_daemon(), daemon);
        assert_eq!(h.join().unwrap(), (daemon, daemon));
    }
    // A thread the crate did not start is a (daemon) dummy thread.
    let from_foreign = std::thread::spawn(|| {
        let h = Thread::new(|| ()).start().unwrap();
        let daemon = h.is_daemon();
        h.join().unwrap();
        daemon
    });
    assert!(from_foreign.join().unwrap());
}

#[test]
fn ident_and_native_id_match_what_the_thread_sees() {
    let h = Thread::new(|| (get_ident(), current_thread().ident(), get_native_id()))
        .daemon(true)
        .start()
        .unwrap();
    let (ident, ident2, native) = (h.ident(), h.native_id(), h.thread().native_id());
    let (inside, inside2, native_inside) = h.join().unwrap();
    assert_ne!(ident, 0);
    assert_eq!((inside, inside2), (ident, ident));
    assert_eq!(ident2, native_inside);
    assert_eq!(native, Some(native_inside));
    assert_ne!(native_inside, get_native_id());
    #[cfg(target_os = "linux")]
    {
        assert_ne!(native_inside, u64::from(std::process::id()));
        assert_eq!(main_thread().native_id(), Some(u64::from(std::process::id())));
    }
}

#[test]
fn idents_are_unique() {
    let handles: Vec<_> =
        (0..8).map(|_| Thread::new(get_ident).daemon(true).start().unwrap()).collect();
    let mut idents: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    idents.push(get_ident());
    idents.sort_unstable();
    idents.dedup();
    assert_eq!(idents.len(), 9);
    assert!(!idents.contains(&main_thread().ident()));
}

#[test]
fn a_refused_thread_is_an_error_not_a_panic() {
    let err = Thread::new(|| ()).stack_size(usize::MAX).name("huge").start().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    // A stack the OS cannot map: pthread_create fails, start() returns it.
    #[cfg(target_pointer_width = "64")]
    {
        let result = Thread::new(|| ()).stack_size(1 << 50).name("refused-by-os").start();
        assert!(result.is_err(), "a 1 PiB stack was accepted");
    }
    assert!(
        enumerate().iter().all(|t| t.name() != "huge" && t.name() != "refused-by-os"),
        "a thread that was never started is listed"
    );
}

#[test]
fn a_small_stack_size_is_accepted() {
    let h = Thread::new(|| 1).stack_size(64 * 1024).daemon(true).start().unwrap();
    assert_eq!(h.join().unwrap(), 1);
}

#[test]
fn joining_yourself_is_an_error_not_a_deadlock() {
    // Through the thread's shared handle.
    let h = Thread::new(|| {
        let me = current_thread();
        (me.join(), me.join_timeout(Duration::MAX))
    })
    .daemon(true)
    .start()
    .unwrap();
    assert_eq!(h.join().unwrap(), (Err(JoinError::CurrentThread), false));

    // Through its own JoinHandle, handed to it after the start.
    let slot: Arc<Mutex<Option<JoinHandle<String>>>> = Arc::new(Mutex::new(None));
    let gate = gate();
    let (s, g) = (Arc::clone(&slot), Arc::clone(&gate));
    let h = Thread::new(move || {
        pass(&g);
        let own = s.lock().take().expect("the handle was handed over");
        assert!(!own.join_timeout(Duration::MAX));
        let err = own.join().unwrap_err();
        assert_eq!(err.payload().downcast_ref::<JoinError>(), Some(&JoinError::CurrentThread));
        String::from("not deadlocked")
    })
    .daemon(true)
    .start()
    .unwrap();
    let shared = h.thread().clone();
    *slot.lock() = Some(h);
    gate.release().unwrap();
    assert!(shared.join_timeout(SLACK), "self-join deadlocked");
}

#[test]
fn many_threads_may_join_one_thread() {
    let gate = gate();
    let g = Arc::clone(&gate);
    let h = Thread::new(move || pass(&g)).daemon(true).start().unwrap();
    let joiners: Vec<_> = (0..4)
        .map(|_| {
            let t: ThreadRef = h.thread().clone();
            std::thread::spawn(move || t.join_timeout(SLACK))
        })
        .collect();
    gate.release().unwrap();
    for j in joiners {
        assert!(j.join().unwrap());
    }
    h.join().unwrap();
}

#[test]
fn a_dropped_handle_leaves_the_thread_running() {
    let gate = gate();
    let g = Arc::clone(&gate);
    let h = Thread::new(move || pass(&g)).daemon(true).start().unwrap();
    let shared = h.thread().clone();
    drop(h);
    assert!(shared.is_alive());
    gate.release().unwrap();
    assert_eq!(shared.join(), Ok(()));
    assert!(!shared.is_alive());
}

#[test]
fn handles_cross_threads() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}
    send::<JoinHandle<u32>>();
    send_sync::<ThreadRef>();
    send_sync::<TimerHandle>();
    send::<std_threads::Panic>();
}
