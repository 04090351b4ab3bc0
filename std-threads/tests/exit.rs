//! Exit semantics, checked on child processes (the `std-threads-scenarios`
//! binary): the process waits for non-daemon threads when `main` returns or
//! `process::exit` runs, and not for daemon threads.
//!
//! Every child is waited for at most `CHILD_LIMIT` and killed after that, so
//! a failure (a hang) cannot hang the suite.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The longest a scenario may take before it counts as hung.
const CHILD_LIMIT: Duration = Duration::from_secs(20);

/// How long the scenarios' threads work before writing their marker.
const WORK: Duration = Duration::from_millis(300);

struct Outcome {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// A fresh marker path (not created) for one scenario run.
fn marker(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("std-threads-exit-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// Runs a scenario to its end, killing it after `CHILD_LIMIT`.
fn run(scenario: &str, marker: &Path) -> Outcome {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_std-threads-scenarios"))
        .arg(scenario)
        .arg(marker)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the scenario binary");
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll the child") {
            break status;
        }
        if start.elapsed() > CHILD_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("scenario {scenario:?} hung: killed after {CHILD_LIMIT:?}");
        }
        sleep(Duration::from_millis(5));
    };
    let elapsed = start.elapsed();
    let mut stdout = String::new();
    let mut stderr = String::new();
    child.stdout.take().expect("piped").read_to_string(&mut stdout).expect("read stdout");
    child.stderr.take().expect("piped").read_to_string(&mut stderr).expect("read stderr");
    Outcome { status, stdout, stderr, elapsed }
}

/// Asserts that the marker was written, and cleans it up.
fn assert_written(marker: &Path, outcome: &Outcome) {
    assert!(
        marker.exists(),
        "the process exited without waiting for the thread (stdout {:?}, stderr {:?})",
        outcome.stdout,
        outcome.stderr
    );
    let _ = std::fs::remove_file(marker);
}

/// Asserts that the marker never appears: the process is gone, and with it
/// the thread that would have written it (checked again after a margin
/// longer than the thread's work).
fn assert_never_written(marker: &Path) {
    assert!(!marker.exists(), "the process waited for a daemon thread");
    sleep(WORK * 2);
    assert!(!marker.exists(), "a daemon thread outlived its process");
}

#[test]
fn main_returning_waits_for_a_non_daemon_thread() {
    let m = marker("non-daemon");
    let out = run("non-daemon", &m);
    assert!(out.status.success(), "{out:?}", out = out.stderr);
    assert_eq!(out.stdout.trim(), "daemon=false", "threads started by main are not daemons");
    assert!(out.elapsed >= WORK, "exited after {:?}, before the thread's work", out.elapsed);
    assert_written(&m, &out);
}

#[test]
fn main_returning_does_not_wait_for_a_daemon_thread() {
    let m = marker("daemon");
    let out = run("daemon", &m);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "daemon=true");
    assert_never_written(&m);
}

#[test]
fn process_exit_from_main_waits_and_keeps_its_code() {
    let m = marker("exit-main");
    let out = run("exit-from-main", &m);
    assert_eq!(out.status.code(), Some(7), "{}", out.stderr);
    assert_written(&m, &out);
}

#[test]
fn a_non_daemon_thread_calling_exit_does_not_wait_for_itself() {
    let m = marker("exit-thread");
    let out = run("exit-from-thread", &m);
    assert_eq!(out.status.code(), Some(5), "{}", out.stderr);
    // It did wait for the other non-daemon thread.
    assert_written(&m, &out);
}

#[test]
fn an_unjoined_result_is_dropped_before_the_exit_stops_waiting() {
    let m = marker("result-drop");
    let out = run("result-drop", &m);
    assert!(out.status.success(), "{}", out.stderr);
    assert_written(&m, &out);
}

#[test]
fn a_non_daemon_threads_child_inherits_non_daemon_and_is_waited_for() {
    let m = marker("nested");
    let out = run("nested", &m);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "inner-daemon=false");
    assert_written(&m, &out);
}

#[test]
fn a_daemon_threads_child_inherits_daemon_and_is_not_waited_for() {
    let m = marker("daemon-inherit");
    let out = run("daemon-inherit", &m);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "inner-daemon=true");
    assert_never_written(&m);
}

#[test]
fn a_thread_started_from_a_foreign_thread_is_a_daemon() {
    let m = marker("foreign");
    let out = run("foreign-default", &m);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "inner-daemon=true");
    assert_never_written(&m);
}

#[test]
fn a_panicking_thread_is_reported_by_the_default_hook_and_exit_is_normal() {
    let m = marker("panic");
    let out = run("panic", &m);
    assert!(out.status.success(), "a thread's panic is not the process's: {}", out.stderr);
    assert!(
        out.stderr.contains("Exception in thread worker:\nboom"),
        "the default excepthook did not print: {:?}",
        out.stderr
    );
}

#[test]
fn main_counts_as_finished_once_exit_begins() {
    let m = marker("join-main");
    let out = run("join-main", &m);
    assert!(out.status.success(), "{}", out.stderr);
    assert_written(&m, &out);
}

#[test]
fn a_non_daemon_timer_is_waited_for() {
    let m = marker("timer");
    let out = run("timer", &m);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "daemon=false");
    assert_written(&m, &out);
}

#[test]
fn a_cancelled_non_daemon_timer_does_not_hold_the_exit() {
    let m = marker("timer-cancelled");
    let out = run("timer-cancelled", &m);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "cancelled=true");
    // The interval is an hour; the run-time limit is 20 s.
    assert!(!m.exists());
}

#[cfg(unix)]
#[test]
fn a_forked_child_does_not_wait_for_its_parents_threads() {
    let m = marker("fork");
    let out = run("fork", &m);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "child=Some(0)", "the child's registry was not reset");
}

#[cfg(unix)]
#[test]
fn a_child_forked_by_a_non_daemon_thread_exits_when_that_thread_ends() {
    let m = marker("fork-in-thread");
    let out = run("fork-in-thread", &m);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "child=Some(0)", "the child's exit waited for a ghost");
}

#[test]
fn register_atexit_functions_run_last_first_before_the_wait() {
    let m = marker("register-atexit");
    let out = run("register-atexit", &m);
    assert!(out.status.success(), "{}", out.stderr);
    let log = std::fs::read_to_string(&m).expect("the worker was stopped and wrote its log");
    assert_eq!(log, "second,first,late-refused");
    let _ = std::fs::remove_file(&m);
}
