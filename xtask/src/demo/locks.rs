//! The memo's `threading.Lock` lines.

use super::{result, snippet};
use core_sync::Lock;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

pub(crate) fn run() -> Result<(), String> {
    snippet("lock = threading.Lock()", "let lock = core_sync::Lock::new();");
    let lock = Arc::new(Lock::new());
    result(format!("a {}-byte lock; locked() = {}", size_of::<Lock>(), lock.locked()));

    snippet("lock.acquire()", "lock.acquire();");
    lock.acquire();
    result(format!("taken; locked() = {}", lock.locked()));

    snippet("lock.acquire(blocking=False)", "lock.try_acquire()");
    let other = Arc::clone(&lock);
    let got = thread::spawn(move || other.try_acquire()).join().map_err(|_| "thread panicked")?;
    result(format!("another thread tried while it was held: {got} (gave up at once)"));

    snippet("lock.release()", "lock.release()?;");
    lock.release().map_err(|e| e.to_string())?;
    result(format!("released; locked() = {}", lock.locked()));
    match lock.release() {
        Err(e) => result(format!("releasing it again is an error, as in Python: \"{e}\"")),
        Ok(()) => return Err("a second release succeeded".into()),
    }

    snippet("lock.acquire(timeout=0.05) while held elsewhere", "lock.acquire_timeout(50 ms)");
    lock.acquire();
    let other = Arc::clone(&lock);
    let got = thread::spawn(move || other.acquire_timeout(Duration::from_millis(50)))
        .join()
        .map_err(|_| "thread panicked")?;
    result(format!("timed out after 50 ms: acquired = {got}"));
    lock.release().map_err(|e| e.to_string())?;

    snippet("with lock: counter += 1   (4 threads x 10 000)", "*mutex.lock() += 1");
    let counter = Arc::new(core_sync::Mutex::new(0u64));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let counter = Arc::clone(&counter);
            thread::spawn(move || {
                for _ in 0..10_000 {
                    *counter.lock() += 1;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "thread panicked")?;
    }
    result(format!("counter = {} (no update lost)", *counter.lock()));
    Ok(())
}
