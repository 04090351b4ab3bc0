//! `ProcessPoolExecutor`: Python's `concurrent.futures.ProcessPoolExecutor`,
//! with real worker processes.
// Task functions take their arguments by value: the worker decodes them.
#![allow(clippy::needless_pass_by_value)]

use procpool::{Error, Future, ProcessPoolExecutor, TaskError};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

procpool::test_entry!();

/// Every wait on a child is bounded by this.
const LIMIT: Duration = Duration::from_secs(30);

fn get<T: Sync + Clone>(f: &Future<T>) -> Result<T, String> {
    match f.result_timeout(LIMIT) {
        Ok(Ok(v)) => Ok(v.clone()),
        Ok(Err(e)) => Err(format!("{e:?}")),
        Err(pool::TimeoutError) => panic!("a future was not done within {LIMIT:?}"),
    }
}

fn broken_message(f: &Future<impl Sync>) -> String {
    match f.result_timeout(LIMIT) {
        Ok(Err(TaskError::BrokenPool(message))) => message.clone(),
        Ok(Err(e)) => panic!("expected a broken pool, got {e:?}"),
        Ok(Ok(_)) => panic!("expected a broken pool, got a result"),
        Err(pool::TimeoutError) => panic!("a future was not done within {LIMIT:?}"),
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("procpool-executor-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

fn wait_for_file(path: &std::path::Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < LIMIT, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn square(x: u64) -> u64 {
    x * x
}

fn pid(_: ()) -> u32 {
    std::process::id()
}

fn panics(message: String) -> u64 {
    panic!("{message}");
}

fn sleeps(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn touch_then_sleep((path, ms): (String, u64)) -> u64 {
    std::fs::write(path, b"running").unwrap();
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn aborts(_: ()) -> u64 {
    std::process::abort();
}

static SEEN: AtomicU64 = AtomicU64::new(0);

fn remember(v: u64) {
    SEEN.store(v, Ordering::SeqCst);
}

fn remembered(_: ()) -> u64 {
    SEEN.load(Ordering::SeqCst)
}

fn failing_initializer(_: ()) {
    panic!("this initializer fails on purpose");
}

/// The fd this worker reads its calls from, as its parent handed it over
/// (the first fd of the marker variable, which stays in the initial
/// environment after `init` removed it from the live one).
#[cfg(target_os = "linux")]
fn call_fd() -> Option<i32> {
    let env = std::fs::read("/proc/self/environ").ok()?;
    let value = env.split(|&b| b == 0).find_map(|v| v.strip_prefix(b"PROCPOOL_WORKER="))?;
    std::str::from_utf8(value).ok()?.split(':').nth(2)?.parse().ok()
}

/// Replaces this worker's end of its call pipe with a pipe that never
/// delivers anything: the worker lives on, idle, and the parent's writes to
/// it fail with `EPIPE`. Returns the fd it replaced.
#[cfg(target_os = "linux")]
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

/// Forks a process that keeps this worker's pipes open for `ms`
/// milliseconds, after the worker itself is gone.
fn fork_holder(ms: u64) -> u32 {
    // SAFETY: the forked process only sleeps and exits (async-signal-safe
    // calls), never returning into the copy of this program.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            libc::usleep(u32::try_from(ms * 1000).unwrap_or(u32::MAX));
            libc::_exit(0);
        }
        u32::try_from(pid).unwrap_or(0)
    }
}

fn pool(workers: usize) -> ProcessPoolExecutor {
    ProcessPoolExecutor::builder().max_workers(workers).build().unwrap()
}

#[test]
fn submit_runs_in_worker_processes() {
    let pool = pool(2);
    assert_eq!(pool.max_workers(), 2);
    let pids = pool.worker_pids();
    assert_eq!(pids.len(), 2);
    let futures: Vec<_> = (0..50).map(|x| pool.submit(square, x).unwrap()).collect();
    for (x, f) in futures.iter().enumerate() {
        assert_eq!(get(f), Ok((x * x) as u64));
    }
    let worker = get(&pool.submit(pid, ()).unwrap()).unwrap();
    assert_ne!(worker, std::process::id());
    assert!(pids.contains(&worker));
}

#[test]
fn the_default_size_is_the_cpus_this_process_may_use() {
    let pool = ProcessPoolExecutor::new().unwrap();
    assert_eq!(pool.max_workers(), std::thread::available_parallelism().unwrap().get());
}

#[test]
fn futures_work_with_as_completed_and_await() {
    let pool = pool(2);
    let futures: Vec<_> = (1..=4).map(|x| pool.submit(square, x).unwrap()).collect();
    let mut got: Vec<u64> =
        pool::as_completed(&futures, Some(LIMIT)).map(|f| *f.unwrap().result().unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, [1, 4, 9, 16]);
}

#[test]
fn map_returns_results_in_order() {
    let pool = pool(2);
    for chunksize in [1, 7, 1000] {
        let got: Vec<u64> =
            pool.map(square, 0..300, chunksize).unwrap().map(Result::unwrap).collect();
        assert_eq!(got, (0..300).map(|x| x * x).collect::<Vec<_>>());
    }
    // Later items finish first; the order is still the items' order.
    let got: Vec<u64> = pool.map(sleeps, [60, 40, 20, 0], 1).unwrap().map(Result::unwrap).collect();
    assert_eq!(got, [60, 40, 20, 0]);
    assert_eq!(pool.map(square, Vec::new(), 3).unwrap().count(), 0);
}

#[test]
fn a_panicking_chunk_fails_each_of_its_items() {
    let pool = pool(1);
    let items = vec!["ok".to_string(); 3];
    let results: Vec<_> = pool.map(panics, items, 2).unwrap().collect();
    assert_eq!(results.len(), 3);
    for r in results {
        assert_eq!(r.unwrap_err().panic_message(), Some("ok"));
    }
}

#[test]
fn a_panicking_task_fails_its_future_and_the_worker_survives() {
    let pool = pool(1);
    let before = get(&pool.submit(pid, ()).unwrap()).unwrap();
    let f = pool.submit(panics, "expected failure".to_string()).unwrap();
    match f.result_timeout(LIMIT) {
        Ok(Err(e)) => assert_eq!(e.panic_message(), Some("expected failure")),
        other => panic!("expected a panic, got {other:?}"),
    }
    assert_eq!(get(&pool.submit(square, 3).unwrap()), Ok(9));
    assert_eq!(get(&pool.submit(pid, ()).unwrap()), Ok(before));
}

#[test]
fn kill_9_of_a_worker_breaks_the_pool() {
    let pool = pool(1);
    let worker = pool.worker_pids()[0];
    let path = scratch("kill9");
    let running = pool.submit(touch_then_sleep, (path.display().to_string(), 60_000)).unwrap();
    let queued = pool.submit(square, 2).unwrap();
    wait_for_file(&path);
    // SAFETY: sends SIGKILL to our own worker.
    assert_eq!(unsafe { libc::kill(worker.cast_signed(), libc::SIGKILL) }, 0);
    let message = broken_message(&running);
    assert!(message.contains("signal 9"), "{message}");
    assert!(message.contains(&worker.to_string()), "{message}");
    assert!(broken_message(&queued).contains("signal 9"));
    match pool.submit(square, 3) {
        Err(Error::BrokenPool(m)) => assert!(m.contains("signal 9"), "{m}"),
        other => panic!("expected a broken pool, got {other:?}"),
    }
    assert!(pool.worker_pids().is_empty() || pool.worker_pids() != [worker]);
}

#[test]
fn a_worker_that_aborts_breaks_the_pool() {
    let pool = pool(2);
    let f = pool.submit(aborts, ()).unwrap();
    let message = broken_message(&f);
    assert!(message.contains("signal 6"), "{message}");
    assert!(matches!(pool.submit(square, 1), Err(Error::BrokenPool(_))));
}

#[test]
fn max_tasks_per_child_replaces_workers() {
    let pool =
        ProcessPoolExecutor::builder().max_workers(1).max_tasks_per_child(2).build().unwrap();
    let mut pids = Vec::new();
    for _ in 0..6 {
        pids.push(get(&pool.submit(pid, ()).unwrap()).unwrap());
    }
    assert_eq!(pids[0], pids[1]);
    assert_eq!(pids[2], pids[3]);
    assert_eq!(pids[4], pids[5]);
    assert_eq!(pids.iter().collect::<HashSet<_>>().len(), 3, "{pids:?}");
    // Submitted all at once, the limit holds too.
    let futures: Vec<_> = (0..6).map(|_| pool.submit(pid, ()).unwrap()).collect();
    let pids: Vec<u32> = futures.iter().map(|f| get(f).unwrap()).collect();
    assert_eq!(pids.iter().collect::<HashSet<_>>().len(), 3, "{pids:?}");
}

#[test]
fn the_initializer_runs_in_every_worker() {
    let pool =
        ProcessPoolExecutor::builder().max_workers(2).initializer(remember, 41).build().unwrap();
    let futures: Vec<_> = (0..8).map(|_| pool.submit(remembered, ()).unwrap()).collect();
    for f in &futures {
        assert_eq!(get(f), Ok(41));
    }
    // The parent's own static is untouched.
    assert_eq!(SEEN.load(Ordering::SeqCst), 0);
}

#[test]
fn a_failing_initializer_breaks_the_pool() {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .initializer(failing_initializer, ())
        .build()
        .unwrap();
    let message = match pool.submit(square, 2) {
        Ok(f) => broken_message(&f),
        Err(Error::BrokenPool(m)) => m,
        Err(e) => panic!("unexpected error {e:?}"),
    };
    assert!(message.contains("initializer"), "{message}");
    assert!(message.contains("fails on purpose"), "{message}");
    let start = Instant::now();
    loop {
        match pool.submit(square, 2) {
            Err(Error::BrokenPool(_)) => break,
            Ok(f) => {
                broken_message(&f);
            }
            Err(e) => panic!("unexpected error {e:?}"),
        }
        assert!(start.elapsed() < LIMIT);
    }
}

#[test]
fn shutdown_waits_for_tasks_then_refuses_new_ones() {
    let pool = pool(2);
    let futures: Vec<_> = (0..6).map(|_| pool.submit(sleeps, 30).unwrap()).collect();
    let pids = pool.worker_pids();
    pool.shutdown(true, false);
    for f in &futures {
        assert!(f.done());
        assert_eq!(get(f), Ok(30));
    }
    assert_eq!(pool.submit(square, 1).unwrap_err(), Error::Shutdown);
    assert!(pool.worker_pids().is_empty());
    for pid in pids {
        // Reaped: no such process any more (or a recycled pid that is not ours).
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            !stat.contains(&format!(" {} ", std::process::id())) || !stat.contains(") Z "),
            "{stat}"
        );
    }
    pool.shutdown(true, false);
}

#[test]
fn shutdown_with_cancel_futures_cancels_what_has_not_started() {
    let pool = pool(1);
    let path = scratch("cancel-futures");
    let running = pool.submit(touch_then_sleep, (path.display().to_string(), 200)).unwrap();
    let queued: Vec<_> = (0..5).map(|x| pool.submit(square, x).unwrap()).collect();
    wait_for_file(&path);
    pool.shutdown(true, true);
    assert_eq!(get(&running), Ok(200));
    // The worker may have been handed a few queued calls already; those ran.
    let cancelled = queued.iter().filter(|f| f.cancelled()).count();
    assert!(cancelled >= 1, "nothing was cancelled");
    for f in &queued {
        assert!(f.done());
        assert!(f.cancelled() || get(f).is_ok());
    }
}

/// Returns once `path` exists (at most after the test limit).
fn wait_for((path, limit_ms): (String, u64)) -> bool {
    let start = Instant::now();
    while !std::path::Path::new(&path).exists() {
        if start.elapsed() > Duration::from_millis(limit_ms) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

#[test]
fn shutdown_without_wait_returns_at_once_and_the_work_still_finishes() {
    let pool = pool(1);
    let path = scratch("go");
    // The task finishes only once the test creates the file, which it does
    // after `shutdown(false, ...)` returned: a shutdown that waited would
    // hold the test until the task gave up.
    let f = pool.submit(wait_for, (path.display().to_string(), 20_000)).unwrap();
    pool.shutdown(false, false);
    assert!(!f.done());
    assert_eq!(pool.submit(square, 1).unwrap_err(), Error::Shutdown);
    std::fs::write(&path, b"go").unwrap();
    assert_eq!(get(&f), Ok(true));
    drop(pool);
}

#[test]
fn a_task_over_its_timeout_fails_and_its_worker_is_replaced() {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .task_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let before = pool.worker_pids();
    let start = Instant::now();
    let slow = pool.submit(sleeps, 60_000).unwrap();
    match slow.result_timeout(LIMIT) {
        Ok(Err(TaskError::TaskTimeout)) => {}
        other => panic!("expected a task timeout, got {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(get(&pool.submit(square, 5).unwrap()), Ok(25));
    assert_eq!(get(&pool.submit(sleeps, 10).unwrap()), Ok(10));
    assert_ne!(pool.worker_pids(), before);
}

#[test]
fn a_dead_worker_is_noticed_while_a_process_it_forked_holds_its_pipes() {
    let pool =
        ProcessPoolExecutor::builder().max_workers(1).replace_dead_workers(true).build().unwrap();
    assert!(get(&pool.submit(fork_holder, 4_000).unwrap()).unwrap() > 0);
    let start = Instant::now();
    let dead = pool.submit(aborts, ()).unwrap();
    // The worker's output does not end while the forked process lives, but
    // its death is handled all the same, well before that process exits.
    let message = broken_message(&dead);
    assert!(message.contains("signal 6"), "{message}");
    assert_eq!(get(&pool.submit(square, 7).unwrap()), Ok(49));
    assert!(start.elapsed() < Duration::from_millis(3_500), "took {:?}", start.elapsed());
}

#[test]
fn replace_dead_workers_fails_only_the_task_of_the_dead_worker() {
    let pool =
        ProcessPoolExecutor::builder().max_workers(1).replace_dead_workers(true).build().unwrap();
    let before = get(&pool.submit(pid, ()).unwrap()).unwrap();
    let dead = pool.submit(aborts, ()).unwrap();
    let after: Vec<_> = (0..3).map(|x| pool.submit(square, x).unwrap()).collect();
    let message = broken_message(&dead);
    assert!(message.contains("signal 6"), "{message}");
    for (x, f) in after.iter().enumerate() {
        assert_eq!(get(f), Ok((x * x) as u64));
    }
    assert_ne!(get(&pool.submit(pid, ()).unwrap()).unwrap(), before);
}

#[test]
#[cfg(target_os = "linux")]
fn a_worker_that_stops_reading_its_calls_is_replaced_and_the_call_runs_elsewhere() {
    let pool =
        ProcessPoolExecutor::builder().max_workers(1).replace_dead_workers(true).build().unwrap();
    let before = pool.worker_pids();
    assert!(get(&pool.submit(deafen, ()).unwrap()).unwrap() > 2);
    // The worker is alive but its call pipe has no reader: the write fails
    // (EPIPE), the worker is killed, and the call, which it never got, runs
    // on its replacement instead of failing or waiting forever.
    assert_eq!(get(&pool.submit(square, 3).unwrap()), Ok(9));
    assert_ne!(pool.worker_pids(), before);
    assert_eq!(get(&pool.submit(square, 4).unwrap()), Ok(16));
}

#[test]
fn cancel_running_kills_the_worker_of_a_running_task() {
    let pool = ProcessPoolExecutor::builder().max_workers(1).cancel_running(true).build().unwrap();
    let path = scratch("cancel-running");
    let before = pool.worker_pids();
    let f = pool.submit(touch_then_sleep, (path.display().to_string(), 60_000)).unwrap();
    wait_for_file(&path);
    assert!(f.cancel());
    assert!(f.cancelled());
    // Only a killed worker lets this run within the limit (the cancelled
    // task would sleep for a minute).
    assert_eq!(get(&pool.submit(square, 6).unwrap()), Ok(36));
    assert_ne!(pool.worker_pids(), before);
}

#[test]
fn a_closure_without_captures_is_a_task() {
    let pool = pool(1);
    let f = pool.submit(|s: String| s.len(), "four".to_string()).unwrap();
    assert_eq!(get(&f), Ok(4));
}

#[test]
fn arguments_over_the_frame_limit_are_an_error_not_a_crash() {
    let pool = ProcessPoolExecutor::builder().max_workers(1).max_frame_size(1024).build().unwrap();
    match pool.submit(|v: Vec<u8>| v.len(), vec![0u8; 4096]) {
        Err(Error::Encode(m)) => assert!(m.contains("limit"), "{m}"),
        other => panic!("expected an encoding error, got {other:?}"),
    }
    // A result over the limit fails its task only.
    let f = pool.submit(|n: usize| vec![1u8; n], 4096).unwrap();
    match f.result_timeout(LIMIT) {
        Ok(Err(TaskError::Other(m))) => assert!(m.contains("limit"), "{m}"),
        other => panic!("expected a task error, got {other:?}"),
    }
    assert_eq!(get(&pool.submit(square, 4).unwrap()), Ok(16));
}

#[test]
fn dropping_the_pool_waits_for_its_tasks() {
    let pool = pool(2);
    let futures: Vec<_> = (0..4).map(|_| pool.submit(sleeps, 20).unwrap()).collect();
    drop(pool);
    for f in &futures {
        assert!(f.done());
        assert_eq!(get(f), Ok(20));
    }
}

#[test]
fn shutdown_waits_for_the_done_callbacks_of_its_tasks() {
    let pool = pool(2);
    let called = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f = pool.submit(sleeps, 100).unwrap();
    let flag = std::sync::Arc::clone(&called);
    // Runs in the pool's thread that completes the future (the task is
    // still running); a slow callback is still part of the task.
    f.add_done_callback(move |_| {
        std::thread::sleep(Duration::from_millis(1500));
        flag.store(true, Ordering::SeqCst);
    });
    // Another worker finishes while the callback runs, so the pool has
    // every other reason to finish early.
    let other = pool.submit(sleeps, 300).unwrap();
    pool.shutdown(true, false);
    assert_eq!(get(&other), Ok(300));
    assert!(called.load(Ordering::SeqCst), "shutdown returned before the callback had run");
}

#[test]
fn shutdown_from_a_done_callback_does_not_deadlock() {
    let pool = std::sync::Arc::new(pool(1));
    let inner = std::sync::Arc::clone(&pool);
    let f = pool.submit(sleeps, 50).unwrap();
    // Runs on the pool's manager thread, which cannot wait for itself.
    f.add_done_callback(move |_| inner.shutdown(true, false));
    assert_eq!(get(&f), Ok(50));
    pool.shutdown(true, false);
    assert_eq!(pool.submit(square, 1).unwrap_err(), Error::Shutdown);
}
