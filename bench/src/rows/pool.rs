//! Thread-pool rows (feature `pool-rows`), written against issue 7's API:
//! `ThreadPoolExecutor::new(max_workers)`, `submit(f) -> Result<Future<T>, _>`,
//! `Future::result() -> Result<&T, _>` and `ThreadPoolExecutor::join(a, b)`
//! (with `pool::join` inside the workers); beside rayon.

use std::hint::black_box;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{Row, imp, ok};

pub(super) fn rows() -> Vec<Row> {
    vec![
        Row {
            id: "pool/submit-200k",
            name: "pool: 200 000 no-op tasks submitted from outside, results collected",
            unit: "task",
            ours: imp("pool::ThreadPoolExecutor", submit_ours),
            peers: vec![imp("rayon::spawn + mpsc channel", submit_rayon)],
            fixed_iters: Some((200_000, 20_000)),
            syscall_iters: 20_000,
        },
        Row {
            id: "pool/fib25-join",
            name: "pool: fork-join fib(25) with join",
            unit: "fib(25)",
            ours: imp("pool::join", fib_pool_bench),
            peers: vec![imp("rayon::join", fib_rayon_bench)],
            fixed_iters: None,
            syscall_iters: 5,
        },
    ]
}

/// As many workers as rayon's global pool has: one per CPU.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

fn submit_ours(iters: u64) -> Duration {
    let executor = pool::ThreadPoolExecutor::new(workers());
    // Workers start lazily, as in Python: start them all before timing.
    let warm: Vec<_> = (0..workers()).map(|_| ok(executor.submit(|| 0u64))).collect();
    for f in warm {
        ok(f.result());
    }
    let start = Instant::now();
    let futures: Vec<_> = (0..iters).map(|i| ok(executor.submit(move || i))).collect();
    let mut sum = 0u64;
    for f in futures {
        sum += *ok(f.result());
    }
    let elapsed = start.elapsed();
    assert_eq!(sum, iters * iters.saturating_sub(1) / 2, "a task result was lost");
    elapsed
}

fn submit_rayon(iters: u64) -> Duration {
    // Start the global pool before timing.
    rayon::join(|| (), || ());
    let start = Instant::now();
    let (tx, rx) = mpsc::channel();
    for i in 0..iters {
        let tx = tx.clone();
        rayon::spawn(move || {
            // The receiver lives until every result arrived.
            let _ = tx.send(i);
        });
    }
    drop(tx);
    let sum: u64 = rx.iter().sum();
    let elapsed = start.elapsed();
    assert_eq!(sum, iters * iters.saturating_sub(1) / 2, "a task result was lost");
    elapsed
}

fn fib_pool(n: u32) -> u64 {
    if n < 2 {
        return u64::from(n);
    }
    let (a, b) = pool::join(|| fib_pool(n - 1), || fib_pool(n - 2));
    a + b
}

fn fib_rayon(n: u32) -> u64 {
    if n < 2 {
        return u64::from(n);
    }
    let (a, b) = rayon::join(|| fib_rayon(n - 1), || fib_rayon(n - 2));
    a + b
}

/// One pool for every fork-join run, as rayon has its global pool; daemon
/// workers so the bench's exit does not wait for them.
fn fib_executor() -> &'static pool::ThreadPoolExecutor {
    static EXECUTOR: std::sync::OnceLock<pool::ThreadPoolExecutor> = std::sync::OnceLock::new();
    EXECUTOR.get_or_init(|| {
        let executor =
            pool::ThreadPoolExecutor::builder().max_workers(workers()).daemon(true).build();
        // Workers start lazily: start them all before timing.
        let warm: Vec<_> = (0..workers()).map(|_| ok(executor.submit(|| 0u64))).collect();
        for f in warm {
            ok(f.result());
        }
        executor
    })
}

fn fib_pool_bench(iters: u64) -> Duration {
    let executor = fib_executor();
    let start = Instant::now();
    for _ in 0..iters {
        let n = black_box(25);
        let (a, b) = executor.join(|| fib_pool(n - 1), || fib_pool(n - 2));
        assert_eq!(a + b, 75_025);
    }
    start.elapsed()
}

fn fib_rayon_bench(iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        assert_eq!(fib_rayon(black_box(25)), 75_025);
    }
    start.elapsed()
}
