//! A program that restored SIGPIPE's default action (so that a write to a
//! closed pipe kills it) is not killed by a pool whose worker closed its
//! call pipe: the submitting thread then leaves the write to the pool's own
//! threads, which block SIGPIPE. The call, which that worker never got, runs
//! on its replacement.
//!
//! Alone in its test binary: it changes the process's SIGPIPE action.
#![cfg(target_os = "linux")]
// /proc/self/environ
// Task functions take their arguments by value: the worker decodes them.
#![allow(clippy::needless_pass_by_value)]

use procpool::ProcessPoolExecutor;
use std::time::Duration;

procpool::test_entry!();

const LIMIT: Duration = Duration::from_secs(30);

fn square(x: u64) -> u64 {
    x * x
}

/// The fd this worker reads its calls from (see tests/executor.rs).
fn call_fd() -> Option<i32> {
    let env = std::fs::read("/proc/self/environ").ok()?;
    let value = env.split(|&b| b == 0).find_map(|v| v.strip_prefix(b"PROCPOOL_WORKER="))?;
    std::str::from_utf8(value).ok()?.split(':').nth(2)?.parse().ok()
}

/// Replaces this worker's end of its call pipe with a silent pipe: the
/// worker lives on, and the parent's writes to it fail.
fn deafen(_: ()) -> i32 {
    let Some(fd) = call_fd() else { return -1 };
    let mut silent = [0; 2];
    // SAFETY: `silent` is a valid array for `pipe` to fill; both ends stay
    // open for the life of the worker, and `dup2` closes the call pipe.
    unsafe {
        assert_eq!(libc::pipe(silent.as_mut_ptr()), 0);
        assert_eq!(libc::dup2(silent[0], fd), fd);
    }
    fd
}

#[test]
fn a_closed_call_pipe_does_not_kill_a_program_that_does_not_ignore_sigpipe() {
    // SAFETY: sets the action of SIGPIPE to its default (terminate), as
    // command-line programs often do; nothing else in this binary relies on
    // SIGPIPE being ignored.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let pool =
        ProcessPoolExecutor::builder().max_workers(1).replace_dead_workers(true).build().unwrap();
    let deafened = pool.submit(deafen, ()).unwrap();
    assert!(*deafened.result_timeout(LIMIT).unwrap().unwrap() > 2);
    // Were this thread to write the call itself, SIGPIPE would end the test
    // binary here.
    let f = pool.submit(square, 5).unwrap();
    assert_eq!(f.result_timeout(LIMIT).unwrap(), Ok(&25));
}
