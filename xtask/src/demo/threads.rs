//! The memo's `threading.Thread` lines: start, join, and daemon threads, with
//! what happens when the process exits (shown live: the last lines of the
//! demo are printed by a non-daemon thread after `main` has returned).

use super::{result, snippet};
use core_sync::Lock;
use std::time::Duration;
use std_threads::{Thread, main_thread};

/// Never released: the daemon thread blocks on it until the process ends.
static NEVER_OPENED: Lock = Lock::new();

pub(crate) fn run() -> Result<(), String> {
    snippet(
        "t = threading.Thread(target=f); t.start()",
        "let t = std_threads::Thread::new(f).start()?;",
    );
    let t = Thread::new(|| (1..=100).sum::<u32>()).start().map_err(|e| e.to_string())?;
    result(format!(
        "started {} (ident {}, native id {}), daemon = {} (inherited from the main thread)",
        t.name(),
        t.ident(),
        t.native_id(),
        t.is_daemon()
    ));

    snippet("t.join()", "t.join()");
    let name = t.name().to_owned();
    let sum = t.join().map_err(|p| p.to_string())?;
    result(format!("{name} finished and returned {sum} (Python's join returns None)"));

    snippet(
        "d = threading.Thread(target=g); d.daemon = True; d.start()",
        "Thread::new(g).daemon(true).start()?",
    );
    NEVER_OPENED.acquire();
    let daemon = Thread::new(|| NEVER_OPENED.acquire())
        .name("logger")
        .daemon(true)
        .start()
        .map_err(|e| e.to_string())?;
    result(format!(
        "{} started, daemon = {}; it blocks forever, and the process will not wait for it",
        daemon.name(),
        daemon.is_daemon()
    ));

    snippet(
        "w = threading.Thread(target=h); w.start()   # still running when main returns",
        "Thread::new(h).start()?",
    );
    let logger = daemon.thread().clone();
    let worker = Thread::new(move || {
        // Python's main thread counts as finished once the interpreter
        // begins to exit; so does ours, once `main` has returned.
        let exited = main_thread().join_timeout(Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(200));
        if exited {
            println!(
                "  -> [at exit] main has returned; the process waited 200 ms more for this \
                 non-daemon thread; the daemon {} is still blocked (alive = {}) and ends with \
                 the process",
                logger.name(),
                logger.is_alive()
            );
        }
    })
    .name("worker")
    .start()
    .map_err(|e| e.to_string())?;
    result(format!(
        "{} started, daemon = {}; its line comes after \"demo: done\": the exit waits for it",
        worker.name(),
        worker.is_daemon()
    ));
    Ok(())
}
