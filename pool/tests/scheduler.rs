//! The scheduler: waking, nested waits, and a stress test.
#![cfg(not(loom))]

use pool::{Future, ThreadPoolExecutor, promise};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(30);

fn until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < LONG, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// Starts exactly `n` workers (tasks that wait for each other) and waits
/// until all of them sleep.
fn start_workers(pool: &ThreadPoolExecutor, n: usize) {
    let arrived = Arc::new(AtomicUsize::new(0));
    let futures: Vec<_> = (0..n)
        .map(|_| {
            let arrived = Arc::clone(&arrived);
            pool.submit(move || {
                arrived.fetch_add(1, Ordering::SeqCst);
                while arrived.load(Ordering::SeqCst) < n {
                    std::hint::spin_loop();
                }
            })
            .unwrap()
        })
        .collect();
    for f in &futures {
        f.result().unwrap();
    }
    assert_eq!(pool.worker_count(), n);
    until("every worker to sleep", || pool.sleep_stats().0 == n);
}

#[test]
fn a_submission_to_a_sleeping_pool_wakes_exactly_one_worker() {
    let pool = ThreadPoolExecutor::new(4);
    start_workers(&pool, 4);
    for round in 0..5 {
        let (_, woken_before) = pool.sleep_stats();
        assert_eq!(pool.submit(move || round).unwrap().result(), Ok(&round));
        until("every worker to sleep again", || pool.sleep_stats().0 == 4);
        let (_, woken_after) = pool.sleep_stats();
        assert_eq!(woken_after - woken_before, 1, "round {round}: one submission, one wake-up");
    }
    assert_eq!(pool.worker_count(), 4, "no new thread while workers sleep");
}

#[test]
fn no_wake_up_is_lost_under_trickling_submissions() {
    // Submissions that arrive while workers are going to sleep must all run.
    let pool = ThreadPoolExecutor::new(3);
    for i in 0..300_u32 {
        if i % 50 == 0 {
            thread::sleep(Duration::from_millis(2)); // let the workers fall asleep
        }
        let f = pool.submit(move || i).unwrap();
        assert_eq!(f.result_timeout(LONG), Ok(Ok(&i)));
    }
}

#[test]
fn a_task_waiting_for_a_task_it_submitted_does_not_deadlock_a_one_worker_pool() {
    // Python's documented deadlock: `wait_on_future` with max_workers=1.
    let pool = Arc::new(ThreadPoolExecutor::new(1));
    let p = Arc::clone(&pool);
    let outer = pool
        .submit(move || {
            let inner = p.submit(|| (5_u32.pow(2), thread::current().id())).unwrap();
            let (value, ran_on) = inner.into_result().unwrap();
            (value, ran_on == thread::current().id())
        })
        .unwrap();
    assert_eq!(outer.result_timeout(LONG), Ok(Ok(&(25, true))), "the waiter ran it inline");
    assert_eq!(pool.worker_count(), 1);
}

#[test]
fn all_workers_waiting_on_futures_of_tasks_submitted_later_finish() {
    let workers = 3;
    let pool = ThreadPoolExecutor::new(workers);
    // Each outer task waits for the future of a task that does not exist
    // yet; all workers end up waiting.
    let (slots, producers): (Vec<_>, Vec<_>) =
        (0..workers).map(|_| promise::<Future<usize>>()).unzip();
    let entered = Arc::new(AtomicUsize::new(0));
    let outers: Vec<_> = slots
        .into_iter()
        .enumerate()
        .map(|(i, slot)| {
            let entered = Arc::clone(&entered);
            pool.submit(move || {
                entered.fetch_add(1, Ordering::SeqCst);
                let inner = slot.into_result().unwrap();
                inner.into_result().unwrap() + i
            })
            .unwrap()
        })
        .collect();
    until("every worker to wait", || entered.load(Ordering::SeqCst) == workers);
    // Now submit the inner tasks: every worker is busy waiting, so they stay
    // queued until their waiters run them.
    for (i, producer) in producers.into_iter().enumerate() {
        producer.set_result(pool.submit(move || i * 10).unwrap());
    }
    for (i, outer) in outers.iter().enumerate() {
        assert_eq!(outer.result_timeout(LONG), Ok(Ok(&(i * 11))));
    }
    assert_eq!(pool.worker_count(), workers, "no extra thread was needed");
}

#[test]
fn nested_waits_several_levels_deep() {
    fn chain(pool: &Arc<ThreadPoolExecutor>, depth: u32) -> u32 {
        if depth == 0 {
            return 0;
        }
        let p = Arc::clone(pool);
        let f = pool.submit(move || chain(&p, depth - 1) + 1).unwrap();
        f.into_result().unwrap()
    }
    let pool = Arc::new(ThreadPoolExecutor::new(2));
    let p = Arc::clone(&pool);
    let f = pool.submit(move || chain(&p, 50)).unwrap();
    assert_eq!(f.result_timeout(LONG), Ok(Ok(&50)));
}

#[test]
fn wait_inside_a_task_runs_the_queued_tasks_it_waits_for() {
    let pool = Arc::new(ThreadPoolExecutor::new(1));
    let p = Arc::clone(&pool);
    let outer = pool
        .submit(move || {
            let inner: Vec<_> = (0..4_u32).map(|i| p.submit(move || i).unwrap()).collect();
            let (done, not_done) = pool::wait(&inner, None, pool::ReturnWhen::AllCompleted);
            assert!(not_done.is_empty());
            done.iter().map(|f| *f.result().unwrap()).sum::<u32>()
        })
        .unwrap();
    assert_eq!(outer.result_timeout(LONG), Ok(Ok(&6)));
}

/// 1 000 000 tiny tasks from 4 submitting threads; every task runs once and
/// every result is seen exactly once (well under a second in release, about
/// one in a debug build).
#[test]
fn stress_many_tiny_tasks_from_four_threads() {
    const SUBMITTERS: usize = 4;
    let total: usize = 1_000_000;
    let per = total / SUBMITTERS;
    let pool = Arc::new(ThreadPoolExecutor::new(4));
    let ran: Arc<Vec<AtomicU8>> = Arc::new((0..total).map(|_| AtomicU8::new(0)).collect());
    let seen: Arc<Vec<AtomicU8>> = Arc::new((0..total).map(|_| AtomicU8::new(0)).collect());
    let start = Instant::now();
    let submitters: Vec<_> = (0..SUBMITTERS)
        .map(|t| {
            let (pool, ran, seen) = (Arc::clone(&pool), Arc::clone(&ran), Arc::clone(&seen));
            thread::spawn(move || {
                let ids: Vec<usize> = (t * per..(t + 1) * per).collect();
                for chunk in ids.chunks(10_000) {
                    let futures: Vec<_> = chunk
                        .iter()
                        .map(|&id| {
                            let ran = Arc::clone(&ran);
                            pool.submit(move || {
                                ran[id].fetch_add(1, Ordering::Relaxed);
                                id
                            })
                            .unwrap()
                        })
                        .collect();
                    for (f, &id) in futures.into_iter().zip(chunk) {
                        let got = f.into_result().unwrap();
                        assert_eq!(got, id);
                        seen[got].fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for s in submitters {
        s.join().unwrap();
    }
    let elapsed = start.elapsed();
    assert!(ran.iter().all(|c| c.load(Ordering::Relaxed) == 1), "every task ran once");
    assert!(seen.iter().all(|c| c.load(Ordering::Relaxed) == 1), "every result seen once");
    eprintln!("{total} tasks from {SUBMITTERS} threads in {elapsed:?}");
}
