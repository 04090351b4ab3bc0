//! The memo's `threading.Semaphore(1)` line, and `BoundedSemaphore`,
//! `Event` and `Barrier`.

use super::{result, snippet};
use core_sync::{Barrier, BoundedSemaphore, Event, Semaphore};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

fn joined<T>(handle: thread::JoinHandle<T>) -> Result<T, String> {
    handle.join().map_err(|_| "thread panicked".to_string())
}

pub(crate) fn run() -> Result<(), String> {
    semaphore()?;
    bounded_semaphore()?;
    event()?;
    barrier()
}

fn semaphore() -> Result<(), String> {
    snippet("sem = threading.Semaphore(1)", "let sem = core_sync::Semaphore::new(1);");
    let sem = Arc::new(Semaphore::new(1));
    result(format!("{} bytes; value() = {}", size_of::<Semaphore>(), sem.value()));

    snippet(
        "with sem: ...   (4 threads x 1 000, counting who is inside)",
        "let _permit = sem.lock();",
    );
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (sem, inside, most) = (Arc::clone(&sem), Arc::clone(&inside), Arc::clone(&most));
            thread::spawn(move || {
                for _ in 0..1_000 {
                    let _permit = sem.lock();
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    inside.fetch_sub(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for h in handles {
        joined(h)?;
    }
    let most = most.load(Ordering::SeqCst);
    if most != 1 {
        return Err(format!("{most} threads were inside a Semaphore(1) at once"));
    }
    result(format!("at most {most} thread inside at a time; value() = {} again", sem.value()));

    snippet("sem.acquire(blocking=False) while it is taken", "sem.try_acquire()");
    sem.acquire();
    let other = Arc::clone(&sem);
    let got = joined(thread::spawn(move || other.try_acquire()))?;
    result(format!("another thread tried: {got} (gave up at once)"));

    snippet("sem.release(3)   with three threads blocked in acquire()", "sem.release_n(3)?;");
    sem.release().map_err(|e| e.to_string())?;
    sem.acquire(); // value 0 again: the next acquirers block
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let sem = Arc::clone(&sem);
            thread::spawn(move || sem.acquire())
        })
        .collect();
    while sem.n_waiting() < 3 {
        thread::yield_now();
    }
    sem.release_n(3).map_err(|e| e.to_string())?;
    for h in handles {
        joined(h)?;
    }
    result(format!("all three got through; value() = {}", sem.value()));
    Ok(())
}

fn bounded_semaphore() -> Result<(), String> {
    snippet("pool = threading.BoundedSemaphore(2); pool.release()", "pool.release()");
    let pool = BoundedSemaphore::new(2);
    let Err(e) = pool.release() else {
        return Err("a BoundedSemaphore rose above its initial value".into());
    };
    result(format!("refused, as Python's ValueError: \"{e}\"; value() = {}", pool.value()));
    Ok(())
}

fn event() -> Result<(), String> {
    snippet("ready = threading.Event(); 3 threads: ready.wait(); ready.set()", "ready.set()");
    let ready = Arc::new(Event::new());
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let ready = Arc::clone(&ready);
            thread::spawn(move || ready.wait_timeout(Duration::from_secs(10)))
        })
        .collect();
    thread::sleep(Duration::from_millis(10));
    ready.set();
    let woke = handles.into_iter().map(joined).collect::<Result<Vec<bool>, _>>()?;
    if !woke.iter().all(|w| *w) {
        return Err("a waiter was not woken by set()".into());
    }
    result(format!("all {} waiters woke; is_set() = {}", woke.len(), ready.is_set()));

    snippet("ready.clear(); ready.wait(timeout=0.05)", "ready.wait_timeout(50 ms)");
    ready.clear();
    result(format!("returned {} after the timeout", ready.wait_timeout(Duration::from_millis(50))));
    Ok(())
}

static CYCLES: AtomicUsize = AtomicUsize::new(0);

fn end_of_cycle() {
    CYCLES.fetch_add(1, Ordering::SeqCst);
}

fn barrier() -> Result<(), String> {
    snippet(
        "b = threading.Barrier(3, action=end_of_cycle); 3 threads x 2 cycles: b.wait()",
        "static BARRIER: Barrier = Barrier::with_action(3, &end_of_cycle); BARRIER.wait()?",
    );
    static BARRIER: Barrier = Barrier::with_action(3, &end_of_cycle);
    let handles: Vec<_> = (0..3)
        .map(|_| {
            thread::spawn(|| -> Result<Vec<usize>, String> {
                (0..2).map(|_| BARRIER.wait().map_err(|e| e.to_string())).collect()
            })
        })
        .collect();
    let mut first_cycle = Vec::new();
    for h in handles {
        first_cycle.push(joined(h)??[0]);
    }
    first_cycle.sort_unstable();
    result(format!(
        "indices of the first cycle: {first_cycle:?}; the action ran {} times",
        CYCLES.load(Ordering::SeqCst)
    ));

    snippet("b.abort(); b.wait()", "BARRIER.abort(); BARRIER.wait()");
    BARRIER.abort();
    match BARRIER.wait() {
        Err(e) => result(format!("BrokenBarrierError: \"{e}\"; broken = {}", BARRIER.broken())),
        Ok(_) => return Err("a broken barrier let a thread through".into()),
    }
    BARRIER.reset();
    result(format!("after b.reset(): broken = {}", BARRIER.broken()));
    Ok(())
}
