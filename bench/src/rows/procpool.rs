//! Process-pool rows: `procpool::ProcessPoolExecutor` beside a raw pipe
//! round trip to a child (`cat`) and `CPython`'s `ProcessPoolExecutor`
//! (whose figures come from the Python script, under the same row ids).
//!
//! The workers are re-executions of this binary: `main` calls
//! `procpool::init()` first.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use procpool::ProcessPoolExecutor;

use super::{Row, imp};

pub(super) fn rows() -> Vec<Row> {
    vec![
        Row {
            id: "procpool/round-trip",
            name: "procpool: one small task, submit + result, warm pool",
            unit: "round trip",
            ours: imp("procpool::ProcessPoolExecutor", round_trip_ours),
            peers: vec![imp("raw pipe round trip to `cat`", round_trip_cat)],
            fixed_iters: None,
            syscall_iters: 2_000,
        },
        Row {
            id: "procpool/submit-20k",
            name: "procpool: 20 000 small tasks submitted at once, results collected",
            unit: "task",
            ours: imp("procpool::ProcessPoolExecutor", submit_ours),
            peers: Vec::new(),
            fixed_iters: Some((20_000, 2_000)),
            syscall_iters: 2_000,
        },
        Row {
            id: "procpool/startup",
            name: "procpool: start 2 workers, first result",
            unit: "start-up",
            ours: imp("procpool::ProcessPoolExecutor", startup_ours),
            peers: Vec::new(),
            fixed_iters: None,
            syscall_iters: 5,
        },
    ]
}

/// As many workers as `CPython`'s default: one per CPU.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

fn double(x: u64) -> u64 {
    x.wrapping_mul(2)
}

fn pool(workers: usize) -> ProcessPoolExecutor {
    ProcessPoolExecutor::builder()
        .max_workers(workers)
        .build()
        .expect("the bench's worker processes start")
}

fn result(f: procpool::Future<u64>) -> u64 {
    f.into_result().expect("a small task succeeds")
}

fn round_trip_ours(iters: u64) -> Duration {
    let executor = pool(1);
    // Warm up: the worker's first call faults its pages in.
    for i in 0..100 {
        assert_eq!(result(executor.submit(double, i).expect("submit")), 2 * i);
    }
    let start = Instant::now();
    for i in 0..iters {
        let f = executor.submit(double, i).expect("submit");
        assert_eq!(result(f), 2 * i);
    }
    start.elapsed()
}

fn round_trip_cat(iters: u64) -> Duration {
    let mut child = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("`cat` starts");
    let mut to = child.stdin.take().expect("stdin is piped");
    let mut from = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let mut line = String::with_capacity(64);
    let mut trip = |line: &mut String| {
        to.write_all(b"0123456789abcdef\n").expect("write to cat");
        line.clear();
        from.read_line(line).expect("read from cat");
        assert_eq!(line.len(), 17);
    };
    for _ in 0..100 {
        trip(&mut line);
    }
    let start = Instant::now();
    for _ in 0..iters {
        trip(&mut line);
    }
    let elapsed = start.elapsed();
    drop(to);
    let _ = child.wait();
    elapsed
}

fn submit_ours(iters: u64) -> Duration {
    let executor = pool(workers());
    for f in (0..workers() as u64).map(|i| executor.submit(double, i).expect("submit")) {
        result(f);
    }
    let start = Instant::now();
    let futures: Vec<_> = (0..iters).map(|i| executor.submit(double, i).expect("submit")).collect();
    let sum: u64 = futures.into_iter().map(result).sum();
    let elapsed = start.elapsed();
    assert_eq!(sum, iters * iters.saturating_sub(1), "a task result was lost");
    elapsed
}

fn startup_ours(iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for i in 0..iters {
        let start = Instant::now();
        let executor = pool(2);
        assert_eq!(result(executor.submit(double, i).expect("submit")), 2 * i);
        total += start.elapsed();
        // Shutting down (and reaping the workers) is not timed.
        drop(executor);
    }
    total
}
