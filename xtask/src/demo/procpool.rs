//! The memo's `multiprocessing.Process` and `ProcessPoolExecutor` lines.

use super::{result, section, snippet};
use procpool::{Process, ProcessPoolExecutor, TaskError};

fn square(x: u64) -> u64 {
    x * x
}

fn worker_pid(_: ()) -> u32 {
    std::process::id()
}

fn crash(_: ()) -> u64 {
    std::process::abort()
}

#[allow(clippy::needless_pass_by_value)] // the child decodes its argument by value
fn greet(name: String) {
    println!("  (child {}) hello, {name}", std::process::id());
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

pub(crate) fn run() -> Result<(), String> {
    section("concurrent.futures.ProcessPoolExecutor and multiprocessing");

    snippet(
        "pool = ProcessPoolExecutor(max_workers=5)",
        "let pool = ProcessPoolExecutor::builder().max_workers(5).build()?;",
    );
    let pool = ProcessPoolExecutor::builder().max_workers(5).build().map_err(err)?;
    result(format!(
        "5 worker processes of this program: pids {:?} (this one is {})",
        pool.worker_pids(),
        std::process::id()
    ));

    snippet("future = pool.submit(f, 7); future.result()", "pool.submit(square, 7)?.into_result()");
    let value = pool.submit(square, 7).map_err(err)?.into_result().map_err(err)?;
    let pid = pool.submit(worker_pid, ()).map_err(err)?.into_result().map_err(err)?;
    result(format!(
        "square(7) = {value}, computed in another process (a task there ran in pid {pid})"
    ));

    snippet("list(pool.map(f, range(10), chunksize=4))", "pool.map(square, 0..10, 4)?.collect()");
    let squares: Result<Vec<u64>, TaskError> = pool.map(square, 0..10, 4).map_err(err)?.collect();
    result(format!("{:?} (in order; 3 chunks, one frame each)", squares.map_err(err)?));

    snippet("pool.shutdown()", "pool.shutdown(true, false);");
    pool.shutdown(true, false);
    let refused = pool.submit(square, 1).err().map(err).unwrap_or_default();
    result(format!(
        "every worker finished and was reaped ({} left); submit now fails: \"{refused}\"",
        pool.worker_pids().len()
    ));

    snippet(
        "a worker dies (os.abort()) -> BrokenProcessPool",
        "pool.submit(crash, ())?  // then .into_result() is Err(BrokenPool)",
    );
    let pool = ProcessPoolExecutor::builder().max_workers(2).build().map_err(err)?;
    match pool.submit(crash, ()).map_err(err)?.into_result() {
        Err(TaskError::BrokenPool(why)) => result(format!("BrokenPool: {why}")),
        other => return Err(format!("a crashed worker did not break the pool: {other:?}")),
    }
    drop(pool);

    snippet(
        "p = multiprocessing.Process(target=f, args=('world',))",
        "let p = Process::new(greet, \"world\".to_string());",
    );
    let p = Process::new(greet, "world".to_string());
    result(format!("{} created; exitcode = {:?} (not started)", p.get_name(), p.exitcode()));

    snippet("p.start(); p.join()", "p.start()?; p.join()?;");
    p.start().map_err(err)?;
    let child = p.pid().unwrap_or_default();
    p.join().map_err(err)?;
    result(format!("child {child} ran greet and exited with code {:?}", p.exitcode()));
    Ok(())
}
