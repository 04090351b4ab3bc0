//! The memo's `threading.RLock` and `threading.Condition` lines.

use super::{result, snippet};
use core_sync::{Condition, RLock};
use std::sync::Mutex;
use std::thread;

/// Sums `1..=n` recursively, re-entering the lock at every level.
fn sum_to(lock: &RLock, n: u64) -> Result<u64, String> {
    lock.acquire().map_err(|e| e.to_string())?;
    let sum = if n == 0 { 0 } else { n + sum_to(lock, n - 1)? };
    lock.release().map_err(|e| e.to_string())?;
    Ok(sum)
}

pub(crate) fn run() -> Result<(), String> {
    snippet("rlock = threading.RLock()", "let rlock = core_sync::RLock::new();");
    let rlock = RLock::new();
    result(format!("a {}-byte reentrant lock; locked() = {}", size_of::<RLock>(), rlock.locked()));

    snippet(
        "def sum_to(n): rlock.acquire(); ...sum_to(n - 1)...; rlock.release()",
        "rlock.acquire()?; ... sum_to(n - 1) ...; rlock.release()?;",
    );
    rlock.acquire().map_err(|e| e.to_string())?;
    let sum = sum_to(&rlock, 10)?;
    result(format!(
        "sum_to(10) = {sum}, re-entering the lock at each of 11 levels; the caller still holds {}",
        rlock.recursion_count()
    ));
    let stolen = thread::scope(|s| s.spawn(|| (rlock.try_acquire(), rlock.release())).join())
        .map_err(|_| "thread panicked")?;
    result(format!(
        "another thread: acquire(blocking=False) = {}, release() = {:?} (not the owner)",
        stolen.0, stolen.1
    ));
    rlock.release().map_err(|e| e.to_string())?;
    result(format!("released by its owner; locked() = {}", rlock.locked()));

    snippet(
        "cond = threading.Condition(lock=rlock)  (two conditions, one lock)",
        "let not_empty = Condition::with_lock(&rlock); let not_full = ...;",
    );
    let not_empty = Condition::with_lock(&rlock);
    let not_full = Condition::with_lock(&rlock);
    result(format!(
        "{} bytes each beside the shared lock; nothing allocated per waiter",
        size_of::<Condition<&RLock>>() - size_of::<&RLock>()
    ));

    snippet(
        "with cond: while not items: cond.wait()  /  items.append(x); cond.notify()",
        "let _g = cond.lock()?; while items.is_empty() { cond.wait()?; }  /  cond.notify(1)?",
    );
    // Bookkeeping for the demo only; the condition's lock is what orders it.
    let items = Mutex::new(Vec::new());
    let consumed = thread::scope(|s| {
        let consumer = s.spawn(|| -> Result<Vec<u32>, String> {
            let mut got = Vec::new();
            while got.len() < 5 {
                let _guard = not_empty.lock().map_err(|e| e.to_string())?;
                while items.lock().unwrap().is_empty() {
                    not_empty.wait().map_err(|e| e.to_string())?;
                }
                got.append(&mut items.lock().unwrap());
                not_full.notify(1).map_err(|e| e.to_string())?;
            }
            Ok(got)
        });
        for x in 1..=5 {
            let _guard = not_full.lock().map_err(|e| e.to_string())?;
            not_full.wait_for(|| items.lock().unwrap().len() < 2).map_err(|e| e.to_string())?;
            items.lock().unwrap().push(x);
            not_empty.notify(1).map_err(|e| e.to_string())?;
        }
        consumer.join().map_err(|_| "consumer panicked".to_string())?
    })?;
    result(format!("the consumer woke for each batch and got {consumed:?}"));

    snippet("cond.notify_all()  (3 waiters)", "cond.notify_all()?");
    let woken = thread::scope(|s| {
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| -> Result<bool, String> {
                    let _guard = not_empty.lock().map_err(|e| e.to_string())?;
                    not_empty
                        .wait_timeout(std::time::Duration::from_secs(30))
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        while not_empty.n_waiting() < 3 {
            thread::yield_now();
        }
        let guard = not_empty.lock().map_err(|e| e.to_string())?;
        let n = not_empty.notify_all().map_err(|e| e.to_string())?;
        drop(guard);
        let all_notified = waiters.into_iter().all(|w| matches!(w.join(), Ok(Ok(true))));
        Ok::<_, String>((n, all_notified))
    })?;
    result(format!("notify_all() woke {} waiters; each saw \"notified\": {}", woken.0, woken.1));

    snippet("cond.notify() without holding the lock", "cond.notify(1)");
    match not_empty.notify(1) {
        Err(e) => result(format!("an error, as in Python: \"{e}\"")),
        Ok(_) => return Err("notify without the lock succeeded".into()),
    }
    Ok(())
}
