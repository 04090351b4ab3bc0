//! Child processes for `tests/exit.rs`: each scenario sets up threads, then
//! lets the process exit in some way; the test checks what happened after
//! the process has ended (exit code, marker file, output).
//!
//! Usage: `std-threads-scenarios SCENARIO [MARKER_PATH]`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::thread::sleep;
use std::time::Duration;

use std_threads::{Thread, Timer, current_thread, main_thread};

/// How long the marker-writing threads work before writing.
const WORK: Duration = Duration::from_millis(300);

fn write_marker(path: &PathBuf) {
    std::fs::write(path, b"done").expect("write the marker file");
}

/// A function that works for `WORK`, then writes the marker.
fn slow_marker(path: PathBuf) -> impl FnOnce() + Send + 'static {
    move || {
        sleep(WORK);
        write_marker(&path);
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let scenario = args.next().unwrap_or_default();
    let marker = PathBuf::from(args.next().unwrap_or_default());
    match scenario.as_str() {
        // (1) main returns at once; the default (non-daemon) thread finishes first.
        "non-daemon" => {
            let h = Thread::new(slow_marker(marker)).start().expect("start");
            println!("daemon={}", h.is_daemon());
        }
        // (2) the same thread as a daemon: the process does not wait.
        "daemon" => {
            let h = Thread::new(slow_marker(marker)).daemon(true).start().expect("start");
            println!("daemon={}", h.is_daemon());
        }
        // (3) process::exit from main waits too, and keeps its exit code.
        "exit-from-main" => {
            Thread::new(slow_marker(marker)).start().expect("start");
            std::process::exit(7);
        }
        // (4) a non-daemon thread calls exit while main still runs: the
        // process waits for the *other* non-daemon thread, not for the
        // exiting one, and ends with its code.
        "exit-from-thread" => {
            Thread::new(slow_marker(marker)).name("other").start().expect("start");
            let exiting = Thread::new(|| std::process::exit(5)).name("exiting").start();
            // Main blocks here; the exiting thread ends the process.
            let _ = exiting.expect("start").join();
            unreachable!("the exiting thread ended the process");
        }
        // The daemon flag is inherited: a non-daemon thread's child is waited for.
        "nested" => {
            Thread::new(move || {
                let inner = Thread::new(slow_marker(marker)).start().expect("start");
                println!("inner-daemon={}", inner.is_daemon());
            })
            .start()
            .expect("start")
            .join()
            .expect("join");
        }
        // ... and a daemon thread's child is a daemon, not waited for.
        "daemon-inherit" => {
            let inner_daemon = Thread::new(move || {
                Thread::new(slow_marker(marker)).start().expect("start").is_daemon()
            })
            .daemon(true)
            .start()
            .expect("start")
            .join()
            .expect("join");
            println!("inner-daemon={inner_daemon}");
        }
        // A thread started from a thread the crate did not start (a dummy
        // thread, daemon) is a daemon by default.
        "foreign-default" => {
            let daemon = std::thread::spawn(move || {
                let me = current_thread();
                assert!(me.is_dummy() && me.is_daemon());
                Thread::new(slow_marker(marker)).start().expect("start").is_daemon()
            })
            .join()
            .expect("join");
            println!("inner-daemon={daemon}");
        }
        // A result nobody joins for is dropped before the process stops
        // waiting for its thread.
        "result-drop" => result_drop(marker),
        "register-atexit" => register_atexit_scenario(marker),
        // A panicking non-daemon thread: the default excepthook prints, the
        // process still exits normally after it.
        "panic" => {
            Thread::new(|| {
                sleep(Duration::from_millis(100));
                panic!("boom")
            })
            .name("worker")
            .start()
            .expect("start");
        }
        // Once main has returned, main_thread() counts as finished: a
        // non-daemon thread joining it goes on, and the process exits.
        "join-main" => {
            Thread::new(move || {
                main_thread().join().expect("join main");
                assert!(!main_thread().is_alive());
                write_marker(&marker);
            })
            .start()
            .expect("start");
        }
        // A non-daemon timer is waited for...
        "timer" => {
            let t = Timer::new(WORK, move || write_marker(&marker)).start().expect("start");
            println!("daemon={}", t.thread().is_daemon());
        }
        // ... but a cancelled one ends at once and does not hold the exit.
        "timer-cancelled" => {
            let t = Timer::new(Duration::from_hours(1), move || write_marker(&marker))
                .start()
                .expect("start");
            println!("cancelled={}", t.cancel());
        }
        #[cfg(unix)]
        "fork" => return fork_scenario(),
        #[cfg(unix)]
        "fork-in-thread" => return fork_in_thread_scenario(),
        other => {
            eprintln!("unknown scenario {other:?}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

/// A fork while a non-daemon thread runs: the child has only the forking
/// thread, which is its main thread, and exits without waiting for the
/// thread that exists only in the parent.
#[cfg(unix)]
fn fork_scenario() -> ExitCode {
    use core_sync::Lock;
    use std::sync::Arc;
    use std_threads::{active_count, enumerate};

    let gate = Arc::new(Lock::new());
    gate.acquire();
    let held = Arc::clone(&gate);
    let worker = Thread::new(move || {
        held.acquire();
        let _ = held.release();
    })
    .daemon(false)
    .start()
    .expect("start");
    let worker_ident = worker.ident();

    // SAFETY: the child only reads the crate's registry and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let all = enumerate();
        let ok = active_count() == 1
            && all.len() == 1
            && all[0] == current_thread()
            && all[0] == main_thread()
            && all.iter().all(|t| t.ident() != worker_ident);
        std::process::exit(i32::from(!ok));
    }
    assert!(pid > 0, "fork failed");
    let code = wait_child(pid);
    println!("child={code:?}");
    gate.release().expect("release");
    worker.join().expect("join");
    ExitCode::SUCCESS
}

/// A non-daemon thread forks; in the child it is the only thread, and once
/// its function returns the child exits (the last thread ending is an
/// `exit(0)`), waiting for nothing.
#[cfg(unix)]
fn fork_in_thread_scenario() -> ExitCode {
    let forker = Thread::new(|| {
        // SAFETY: the child only returns from this function.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            return None;
        }
        assert!(pid > 0, "fork failed");
        Some(wait_child(pid))
    })
    .daemon(false)
    .start()
    .expect("start");
    let code = forker.join().expect("join").expect("the parent's thread reports");
    println!("child={code:?}");
    ExitCode::SUCCESS
}

/// Waits at most 10 s for the child `pid` and returns its exit code; kills it
/// (and returns `None`) if it hangs.
#[cfg(unix)]
fn wait_child(pid: libc::pid_t) -> Option<i32> {
    let mut status = 0;
    for _ in 0..1000 {
        // SAFETY: `pid` is our child; `status` is a valid, writable int.
        let r = unsafe { libc::waitpid(pid, &raw mut status, libc::WNOHANG) };
        if r == pid {
            return Some(if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 });
        }
        sleep(Duration::from_millis(10));
    }
    // SAFETY: killing and reaping our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, &raw mut status, 0);
    }
    None
}

/// A result nobody joins for, whose `Drop` works for `WORK` then writes
/// the marker.
fn result_drop(marker: PathBuf) {
    struct WritesOnDrop(PathBuf);
    impl Drop for WritesOnDrop {
        fn drop(&mut self) {
            sleep(WORK);
            write_marker(&self.0);
        }
    }
    drop(Thread::new(move || WritesOnDrop(marker)).start().expect("start"));
}

/// A non-daemon worker that would block forever, stopped by a
/// `register_atexit` function (what a thread pool does). The worker writes
/// the order the functions ran in.
fn register_atexit_scenario(marker: PathBuf) {
    use core_sync::{Lock, Mutex};
    use std::sync::Arc;

    let stop = Arc::new(Lock::new());
    stop.acquire();
    let log = Arc::new(Mutex::new(String::new()));
    let (s, l) = (Arc::clone(&stop), Arc::clone(&log));
    Thread::new(move || {
        s.acquire();
        std::fs::write(&marker, l.lock().as_bytes()).expect("write the marker file");
    })
    .start()
    .expect("start");
    let l = Arc::clone(&log);
    std_threads::register_atexit(move || {
        // Registered first, runs last: the worker may go now.
        let late = std_threads::register_atexit(|| ());
        l.lock().push_str(if late.is_err() { "first,late-refused" } else { "first,late-accepted" });
        stop.release().expect("release");
    })
    .expect("register");
    std_threads::register_atexit(|| panic!("a failing exit function")).expect("register");
    std_threads::register_atexit(move || log.lock().push_str("second,")).expect("register");
}
