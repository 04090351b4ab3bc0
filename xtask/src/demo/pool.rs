//! The memo's `concurrent.futures.ThreadPoolExecutor` lines.

use super::{result, snippet};
use ::pool::{ShutdownError, ThreadPoolExecutor};
use std::collections::BTreeSet;
use std::thread;
use std::time::Duration;

pub(crate) fn run() -> Result<(), String> {
    snippet("pool = ThreadPoolExecutor(max_workers=5)", "let pool = ThreadPoolExecutor::new(5);");
    let pool = ThreadPoolExecutor::new(5);
    result(format!(
        "max_workers = {}; threads so far: {} (workers start lazily, as in Python)",
        pool.max_workers(),
        pool.worker_count()
    ));

    snippet("pool.submit(f)   (20 calls)", "pool.submit(f).map_err(..)?");
    let futures = (0..20)
        .map(|_| {
            pool.submit(|| {
                thread::sleep(Duration::from_millis(5));
                thread::current().name().unwrap_or("?").to_string()
            })
        })
        .collect::<Result<Vec<_>, ShutdownError>>()
        .map_err(|e| e.to_string())?;
    let mut names = BTreeSet::new();
    for future in futures {
        names.insert(future.into_result().map_err(|e| e.to_string())?);
    }
    let names: Vec<_> = names.into_iter().collect();
    result(format!("20 calls ran on {} reusable threads: {}", names.len(), names.join(", ")));

    snippet("future = pool.submit(f)", "let future = pool.submit(|| 6 * 7).map_err(..)?;");
    let future = pool
        .submit(|| {
            thread::sleep(Duration::from_millis(20));
            6 * 7
        })
        .map_err(|e| e.to_string())?;
    result(format!("submitted at once; done() = {}", future.done()));

    snippet("future.result()", "future.result()");
    let value = *future.result().map_err(ToString::to_string)?;
    result(format!("waited for it: {value}; done() = {}", future.done()));

    snippet("pool.shutdown()", "pool.shutdown(true, false);");
    pool.shutdown(true, false);
    result(format!("every worker has exited: threads = {}", pool.worker_count()));
    match pool.submit(|| ()) {
        Err(e) => result(format!("submitting now is refused, as in Python: \"{e}\"")),
        Ok(_) => return Err("a submission after shutdown was accepted".into()),
    }
    Ok(())
}
