//! Workers die when their parent dies: an intermediate process starts a
//! pool, is killed with SIGKILL, and its workers must disappear.
//!
//! Alone in its test binary: it makes this process a child subreaper, so
//! the orphaned workers become its children and it can reap them.
#![cfg(target_os = "linux")]
// /proc and PR_SET_CHILD_SUBREAPER
// Task functions take their arguments by value: the worker decodes them.
#![allow(clippy::needless_pass_by_value)]

use procpool::{Process, ProcessPoolExecutor};
use std::time::{Duration, Instant};

procpool::test_entry!();

const LIMIT: Duration = Duration::from_secs(20);

/// A task that says it runs (by creating a file named after its worker's
/// pid), then runs for long.
fn busy(dir: String) -> u32 {
    std::fs::write(format!("{dir}/running-{}", std::process::id()), b"").unwrap();
    std::thread::sleep(Duration::from_mins(2));
    std::process::id()
}

/// The intermediate parent: starts a pool whose two workers are both busy
/// (an idle worker would also leave when its task pipe closes; a busy one
/// only through the parent-death watch), says their pids, waits.
fn start_pool_and_wait(path: String) {
    let pool = ProcessPoolExecutor::builder().max_workers(2).build().unwrap();
    let dir = std::path::Path::new(&path).parent().unwrap().display().to_string();
    let _tasks = [pool.submit(busy, dir.clone()).unwrap(), pool.submit(busy, dir.clone()).unwrap()];
    let pids: Vec<String> = pool.worker_pids().iter().map(u32::to_string).collect();
    for pid in &pids {
        while !std::path::Path::new(&format!("{dir}/running-{pid}")).exists() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let tmp = format!("{path}.tmp");
    std::fs::write(&tmp, pids.join(" ")).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    std::thread::sleep(Duration::from_mins(2));
}

/// "gone", or the state letter from /proc/PID/stat.
fn state(pid: u32) -> String {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => "gone".to_owned(),
        Ok(stat) => stat.rsplit_once(") ").map_or("?", |(_, rest)| &rest[..1]).to_owned(),
    }
}

#[test]
fn workers_die_when_their_parent_is_killed() {
    // SAFETY: prctl with an integer argument; makes orphaned descendants
    // our children.
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong) }, 0);
    let dir = std::env::temp_dir().join(format!("procpool-parent-death-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("pids");
    let _ = std::fs::remove_file(&path);

    let parent = Process::new(start_pool_and_wait, path.display().to_string()).daemon(true);
    parent.start().unwrap();
    let start = Instant::now();
    let pids: Vec<u32> = loop {
        if let Ok(text) = std::fs::read_to_string(&path) {
            break text.split_whitespace().map(|p| p.parse().unwrap()).collect();
        }
        if start.elapsed() > LIMIT {
            parent.kill();
            panic!("the intermediate parent never reported its workers");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(pids.len(), 2);
    for &pid in &pids {
        let s = state(pid);
        assert!(s != "gone" && s != "Z", "worker {pid} is not running before the test: {s}");
    }

    parent.kill();
    assert!(parent.join_timeout(LIMIT));
    assert_eq!(parent.exitcode(), Some(-9));

    let start = Instant::now();
    for &pid in &pids {
        loop {
            let s = state(pid);
            if s == "gone" {
                break;
            }
            if s == "Z" {
                // Dead; reparented to us, so ours to reap.
                // SAFETY: waits for a specific pid with a valid status pointer.
                unsafe { libc::waitpid(pid.cast_signed(), std::ptr::null_mut(), 0) };
                break;
            }
            if start.elapsed() > LIMIT {
                // SAFETY: kill has no memory effects; clean up before failing.
                unsafe { libc::kill(pid.cast_signed(), libc::SIGKILL) };
                panic!("worker {pid} outlived its parent (state {s})");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
