//! A program that forgot `procpool::init()` (this test has its own `main`,
//! without the hook and without the test harness).
//!
//! Its children run this `main` again. The first thing they do here is what
//! the parent did, starting a pool or a process: that must not start
//! grandchildren (a fork bomb); the child refuses in one line, exits, and the
//! parent's call fails with that line.

use procpool::{Error, Process, ProcessPoolExecutor};
use std::time::{Duration, Instant};

fn noop(_: ()) {}

fn expect_missing_hook(what: &str, result: Result<(), Error>) -> Result<(), String> {
    match result {
        Err(Error::Start(message))
            if message.contains("procpool::init()") && message.contains("main") =>
        {
            println!("test {what} ... ok ({message})");
            Ok(())
        }
        other => {
            Err(format!("test {what} ... FAILED: expected the missing-hook message, got {other:?}"))
        }
    }
}

fn main() {
    // Deliberately no `procpool::init()` here.
    let started = Instant::now();
    let outcomes = [
        expect_missing_hook(
            "a_pool_without_the_hook_fails_with_the_message",
            ProcessPoolExecutor::builder()
                .max_workers(2)
                .start_timeout(Duration::from_secs(20))
                .build()
                .map(drop),
        ),
        expect_missing_hook(
            "a_process_without_the_hook_fails_with_the_message",
            Process::new(noop, ()).start_timeout(Duration::from_secs(20)).start(),
        ),
    ];
    let mut failed = 0;
    for outcome in &outcomes {
        if let Err(message) = outcome {
            println!("{message}");
            failed += 1;
        }
    }
    if started.elapsed() > Duration::from_secs(30) {
        println!("test the_refusal_is_prompt ... FAILED: took {:?}", started.elapsed());
        failed += 1;
    }
    println!(
        "\ntest result: {}. {} passed; {failed} failed",
        if failed == 0 { "ok" } else { "FAILED" },
        outcomes.len() - failed.min(outcomes.len())
    );
    std::process::exit(i32::from(failed > 0));
}
