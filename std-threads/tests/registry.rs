//! The registry: Python's `current_thread()`, `main_thread()`,
//! `enumerate()`, `get_ident()`, `get_native_id()`, and dummy threads.
//!
//! Tests in this file run in parallel, so they look for their own threads by
//! ident rather than counting (`tests/registry_count.rs` counts).

use std::sync::Arc;
use std::time::Duration;

use core_sync::Lock;
use std_threads::{
    JoinError, Thread, current_thread, enumerate, get_ident, get_native_id, main_thread,
};

const SLACK: Duration = Duration::from_secs(10);

#[test]
fn current_thread_on_a_started_thread_is_its_record() {
    let h = Thread::new(|| {
        let me = current_thread();
        assert_eq!(me, current_thread(), "the same record every time");
        (me.name().to_owned(), me.is_daemon(), me.is_dummy(), me.is_alive(), me.ident())
    })
    .name("reporter")
    .daemon(false)
    .start()
    .unwrap();
    let ident = h.ident();
    assert_eq!(h.join().unwrap(), ("reporter".to_owned(), false, false, true, ident));
}

#[test]
fn current_thread_is_the_handles_thread() {
    let h = Thread::new(current_thread).daemon(true).start().unwrap();
    let shared = h.thread().clone();
    let seen = h.join().unwrap();
    assert_eq!(seen, shared);
    assert!(!seen.is_alive(), "the record turns finished for every holder");
}

#[test]
fn enumerate_lists_a_thread_while_it_runs_and_not_after_join() {
    let gate = Arc::new(Lock::new());
    gate.acquire();
    let g = Arc::clone(&gate);
    let h = Thread::new(move || {
        g.acquire();
        let _ = g.release();
    })
    .name("listed")
    .daemon(true)
    .start()
    .unwrap();
    let listed = enumerate();
    assert_eq!(listed[0], main_thread(), "main comes first");
    let mine: Vec<_> = listed.iter().filter(|t| t.ident() == h.ident()).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].name(), "listed");
    assert!(mine[0].is_alive());
    gate.release().unwrap();
    let ident = h.ident();
    h.join().unwrap();
    assert!(enumerate().iter().all(|t| t.ident() != ident), "a joined thread is still listed");
}

#[test]
fn enumerate_is_in_start_order() {
    let gate = Arc::new(Lock::new());
    gate.acquire();
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let g = Arc::clone(&gate);
            Thread::new(move || {
                g.acquire();
                let _ = g.release();
            })
            .daemon(true)
            .start()
            .unwrap()
        })
        .collect();
    let idents: Vec<u64> = handles.iter().map(std_threads::JoinHandle::ident).collect();
    let listed: Vec<u64> = enumerate()
        .iter()
        .map(std_threads::ThreadRef::ident)
        .filter(|i| idents.contains(i))
        .collect();
    assert_eq!(listed, idents);
    gate.release().unwrap();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn main_thread_is_main_and_alive_and_not_a_daemon() {
    let h = Thread::new(|| {
        let main = main_thread();
        (
            main.name().to_owned(),
            main.is_daemon(),
            main.is_alive(),
            main.ident(),
            main.join_timeout(Duration::ZERO),
            main == current_thread(),
        )
    })
    .daemon(true)
    .start()
    .unwrap();
    assert_eq!(h.join().unwrap(), ("MainThread".to_owned(), false, true, 1, false, false));
    assert!(!main_thread().is_dummy());
    assert!(main_thread().native_id().is_some_and(|id| id != 0) || !cfg!(target_os = "linux"));
}

#[test]
fn a_foreign_thread_is_a_daemon_dummy_thread() {
    let report = std::thread::spawn(|| {
        let me = current_thread();
        let again = current_thread();
        (
            me.name().to_owned(),
            me.is_dummy(),
            me.is_daemon(),
            me.is_alive(),
            me == again,
            me.ident() == get_ident(),
            me.native_id() == Some(get_native_id()),
            enumerate().iter().any(|t| t.ident() == me.ident()),
            me.join(),
            me.join_timeout(Duration::ZERO),
            me,
        )
    })
    .join()
    .unwrap();
    let (name, dummy, daemon, alive, same, ident, native, listed, join, timed, me) = report;
    assert!(name.starts_with("Dummy-"), "{name}");
    assert!(dummy && daemon && alive && same && ident && native);
    assert!(!listed, "dummy threads are not listed");
    assert_eq!(join, Err(JoinError::DummyThread));
    assert!(!timed);
    // Joining a dummy from another thread is an error too, never a hang.
    assert_eq!(me.join(), Err(JoinError::DummyThread));
    assert!(!me.join_timeout(SLACK));
}

#[test]
fn get_ident_is_unique_per_thread_and_stable() {
    let a = std::thread::spawn(|| (get_ident(), get_ident())).join().unwrap();
    let b = std::thread::spawn(|| (get_ident(), get_ident())).join().unwrap();
    assert_eq!(a.0, a.1);
    assert_eq!(b.0, b.1);
    assert_ne!(a.0, b.0);
    assert_ne!(a.0, get_ident());
    assert_ne!(a.0, 0);
}

#[test]
fn get_native_id_is_the_os_thread_id() {
    let (here, there) = (get_native_id(), std::thread::spawn(get_native_id).join().unwrap());
    assert_ne!(here, there);
    assert_ne!(here, 0);
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid takes no argument and cannot fail.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) };
        assert_eq!(here, u64::try_from(tid).unwrap());
    }
}
