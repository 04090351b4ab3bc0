//! Exit semantics with real child processes: a pool that is never dropped is
//! shut down at exit as in Python (`concurrent.futures.thread._python_exit`):
//! its queued work still runs and the process does not hang; daemon
//! workers end with the process.
#![cfg(not(loom))]

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Waits for the child at most `limit`, killing it past that.
fn wait_bounded(mut child: Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn marker(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("pool-exit-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

fn run(scenario: &str, marker: &PathBuf) -> Option<std::process::ExitStatus> {
    let child = Command::new(env!("CARGO_BIN_EXE_pool-exit-scenarios"))
        .arg(scenario)
        .arg(marker)
        .spawn()
        .unwrap();
    wait_bounded(child, Duration::from_secs(20))
}

#[test]
fn a_leaked_pool_finishes_its_queue_and_lets_the_process_exit() {
    let marker = marker("leaked");
    let status = run("leaked", &marker).expect("the exit hung on a leaked pool's sleeping workers");
    assert!(status.success(), "{status}");
    assert!(marker.exists(), "the task still queued at exit was lost");
    let _ = std::fs::remove_file(&marker);
}

#[test]
fn a_leaked_daemon_pool_ends_with_the_process() {
    let marker = marker("leaked-daemon");
    let start = Instant::now();
    let status = run("leaked-daemon", &marker).expect("a daemon pool held the exit");
    assert!(status.success(), "{status}");
    // The first task sleeps 200 ms; the process must not have waited for it
    // (generous margin for a loaded machine), and the queued task never ran.
    assert!(start.elapsed() < Duration::from_secs(10));
    // The process is gone, so nothing can write the marker any more.
    assert!(!marker.exists(), "a daemon pool's queued task ran before the exit");
}
