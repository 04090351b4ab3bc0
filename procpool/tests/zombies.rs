//! Every child is reaped: after processes and pools of every kind (ended,
//! killed, broken, replaced, timed out) are done with, this process has no
//! child left, zombie or not.
//!
//! Alone in its test binary, so no other test's children are counted.
#![cfg(target_os = "linux")]
// /proc and PR_SET_CHILD_SUBREAPER
// Task functions take their arguments by value: the worker decodes them.
#![allow(clippy::needless_pass_by_value)]

use procpool::{Process, ProcessPoolExecutor};
use std::time::Duration;

procpool::test_entry!();

const LIMIT: Duration = Duration::from_secs(20);

fn sleeps(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn exits(_: ()) {}

fn aborts(_: ()) -> u64 {
    std::process::abort();
}

/// The pids and states of this process's children, from /proc.
fn children() -> Vec<(u32, String)> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let Some((_, rest)) = stat.rsplit_once(") ") else { continue };
        let fields: Vec<&str> = rest.split(' ').collect();
        if fields.get(1) == Some(&me.as_str()) {
            found.push((pid, fields[0].to_owned()));
        }
    }
    found
}

#[test]
fn no_child_is_left_behind() {
    {
        let ok = Process::new(exits, ());
        ok.start().unwrap();
        let killed = Process::new(|ms: u64| std::thread::sleep(Duration::from_millis(ms)), 60_000);
        killed.start().unwrap();
        killed.kill();
        assert!(ok.join_timeout(LIMIT) && killed.join_timeout(LIMIT));

        let pool =
            ProcessPoolExecutor::builder().max_workers(2).max_tasks_per_child(1).build().unwrap();
        let results: Vec<u64> =
            pool.map(sleeps, [1, 2, 3, 4], 1).unwrap().map(Result::unwrap).collect();
        assert_eq!(results, [1, 2, 3, 4]);
        drop(pool);

        let broken = ProcessPoolExecutor::builder().max_workers(2).build().unwrap();
        assert!(broken.submit(aborts, ()).unwrap().wait_timeout(LIMIT));
        drop(broken);

        let timed = ProcessPoolExecutor::builder()
            .max_workers(1)
            .replace_dead_workers(true)
            .task_timeout(Duration::from_millis(100))
            .build()
            .unwrap();
        assert!(timed.submit(sleeps, 60_000).unwrap().wait_timeout(LIMIT));
        assert!(timed.submit(aborts, ()).unwrap().wait_timeout(LIMIT));
        drop(timed);
    }
    let left = children();
    assert!(left.is_empty(), "children left behind (pid, state): {left:?}");
}
