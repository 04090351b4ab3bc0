//! `Process`: Python's `multiprocessing.Process`, with real child processes.
// Task functions take their arguments by value: the worker decodes them.
#![allow(clippy::needless_pass_by_value)]

use procpool::{Error, Process};
use std::path::PathBuf;
use std::time::{Duration, Instant};

procpool::test_entry!();

const LIMIT: Duration = Duration::from_secs(20);

/// Kills and waits for the process when a test ends, passing or not.
struct Reap<'a>(&'a Process);

impl Drop for Reap<'_> {
    fn drop(&mut self) {
        self.0.kill();
        self.0.join_timeout(LIMIT);
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("procpool-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

fn write_file((path, text): (String, String)) {
    std::fs::write(path, format!("{text} from pid {}", std::process::id())).unwrap();
}

fn panics(message: String) {
    panic!("{message}");
}

fn sleeps(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn exits_with(code: i32) {
    std::process::exit(code);
}

fn aborts(_: ()) {
    std::process::abort();
}

#[test]
fn runs_the_function_in_another_process() {
    let path = scratch("hello");
    let p =
        Process::new(write_file, (path.display().to_string(), "hello".to_string())).name("writer");
    let _reap = Reap(&p);
    assert_eq!(p.exitcode(), None);
    assert_eq!(p.pid(), None);
    p.start().unwrap();
    let pid = p.pid().unwrap();
    assert_ne!(pid, std::process::id());
    assert!(p.join_timeout(LIMIT));
    assert_eq!(p.exitcode(), Some(0));
    assert!(!p.is_alive());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("hello from pid {pid}"));
    assert_eq!(p.get_name(), "writer");
}

#[test]
fn default_names_count_up_and_daemon_is_off() {
    let p = Process::new(sleeps, 1);
    assert!(p.get_name().starts_with("Process-"));
    assert!(!p.is_daemon());
    assert!(Process::new(sleeps, 1).daemon(true).is_daemon());
}

#[test]
fn a_panic_is_exit_code_1() {
    let p = Process::new(panics, "expected panic in a child".to_string());
    let _reap = Reap(&p);
    p.start().unwrap();
    assert!(p.join_timeout(LIMIT));
    assert_eq!(p.exitcode(), Some(1));
}

#[test]
fn the_exit_status_is_passed_through() {
    let p = Process::new(exits_with, 7);
    let _reap = Reap(&p);
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(7));
}

#[test]
fn an_abort_is_minus_sigabrt() {
    let p = Process::new(aborts, ());
    let _reap = Reap(&p);
    p.start().unwrap();
    assert!(p.join_timeout(LIMIT));
    assert_eq!(p.exitcode(), Some(-libc::SIGABRT));
}

#[test]
fn kill_and_terminate_give_negative_signals() {
    let p = Process::new(sleeps, 60_000);
    let _reap = Reap(&p);
    p.start().unwrap();
    assert!(p.is_alive());
    assert!(!p.join_timeout(Duration::from_millis(50)));
    assert_eq!(p.exitcode(), None);
    p.kill();
    assert!(p.join_timeout(LIMIT));
    assert_eq!(p.exitcode(), Some(-9));

    let q = Process::new(sleeps, 60_000);
    let _reap = Reap(&q);
    q.start().unwrap();
    q.terminate();
    assert!(q.join_timeout(LIMIT));
    assert_eq!(q.exitcode(), Some(-15));
    // Signalling an ended process does nothing.
    q.kill();
    assert_eq!(q.exitcode(), Some(-15));
}

#[test]
fn misuse_is_an_error() {
    let p = Process::new(sleeps, 1);
    assert_eq!(p.join(), Err(Error::NotStarted));
    assert!(!p.join_timeout(Duration::from_millis(1)));
    assert!(!p.is_alive());
    p.kill();
    let _reap = Reap(&p);
    p.start().unwrap();
    assert_eq!(p.start(), Err(Error::AlreadyStarted));
    assert!(p.join_timeout(LIMIT));
    assert_eq!(p.exitcode(), Some(0));
}

#[test]
fn a_child_of_another_build_refuses_the_handshake() {
    let started = Instant::now();
    let p = Process::new(sleeps, 1).__with_wrong_build_id();
    let _reap = Reap(&p);
    match p.start() {
        Err(Error::Start(message)) => assert!(message.contains("another build"), "{message}"),
        other => panic!("expected a refused handshake, got {other:?}"),
    }
    assert!(started.elapsed() < LIMIT);
    assert_eq!(p.pid(), None);
}

/// Writes `path` after `ms` milliseconds.
fn write_later((path, ms): (String, u64)) {
    std::thread::sleep(Duration::from_millis(ms));
    std::fs::write(path, b"done").unwrap();
}

/// Starts a grandchild that writes `path` after a while, records its pid
/// in `path.pid`, and returns without joining it.
fn start_grandchild((path, daemon, ms): (String, bool, u64)) {
    let g = Process::new(write_later, (path.clone(), ms)).daemon(daemon);
    g.start().unwrap();
    std::fs::write(format!("{path}.pid"), g.pid().unwrap().to_string()).unwrap();
}

#[test]
fn a_parent_waits_for_its_non_daemon_children_when_it_exits() {
    let path = scratch("non-daemon");
    let p = Process::new(start_grandchild, (path.display().to_string(), false, 300));
    let _reap = Reap(&p);
    p.start().unwrap();
    assert!(p.join_timeout(LIMIT));
    assert_eq!(p.exitcode(), Some(0));
    // The child's exit waited for the grandchild, which wrote its file.
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "done");
}

#[test]
fn a_parent_terminates_its_daemon_children_when_it_exits() {
    let path = scratch("daemon");
    let started = Instant::now();
    let p = Process::new(start_grandchild, (path.display().to_string(), true, 60_000));
    let _reap = Reap(&p);
    p.start().unwrap();
    assert!(p.join_timeout(LIMIT));
    assert_eq!(p.exitcode(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(!path.exists());
    let pid = std::fs::read_to_string(format!("{}.pid", path.display())).unwrap();
    // The child terminated and reaped it before exiting.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(stat.is_empty() || !stat.contains(&format!(" {} ", p.pid().unwrap())), "{stat}");
}

#[test]
fn handles_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Process>();
    check::<procpool::ProcessPoolExecutor>();
    check::<procpool::Error>();
}
