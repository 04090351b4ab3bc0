//! Child-process scenarios for pool's exit tests (`tests/exit.rs`): a pool
//! that is never dropped must neither hang the exit nor lose queued work.
//!
//! Usage: `pool-exit-scenarios <scenario> <marker-file>`.

#[cfg(not(loom))]
use std::time::Duration;

/// Nothing to run in a `--cfg loom` build (the pool itself is not built).
#[cfg(loom)]
fn main() {}

#[cfg(not(loom))]
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(scenario), Some(marker)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: pool-exit-scenarios <leaked|leaked-daemon> <marker-file>");
        std::process::exit(2);
    };
    let daemon = match scenario.as_str() {
        "leaked" => false,
        "leaked-daemon" => true,
        other => {
            eprintln!("unknown scenario {other}");
            std::process::exit(2);
        }
    };
    let executor = pool::ThreadPoolExecutor::builder().max_workers(1).daemon(daemon).build();
    let marker = marker.clone();
    // The first task holds the only worker; the second is still queued when
    // main returns.
    let first = executor.submit(|| std::thread::sleep(Duration::from_millis(200)));
    let second = executor.submit(move || std::fs::write(&marker, b"ran").unwrap());
    assert!(first.is_ok() && second.is_ok());
    std::mem::forget(executor);
}
