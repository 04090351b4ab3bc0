//! Python's `ThreadPoolExecutor` semantics.
#![cfg(not(loom))]

use pool::core_sync::Mutex;
use pool::{ReturnWhen, ShutdownError, TaskError, ThreadPoolExecutor, promise};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(30);

/// Polls `cond` until it holds (panics after a generous limit).
fn until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < LONG, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn submit_returns_the_result() {
    let pool = ThreadPoolExecutor::new(5);
    let future = pool.submit(|| 6 * 7).unwrap();
    assert_eq!(future.result(), Ok(&42));
    assert!(future.done());
    let owned = pool.submit(|| String::from("owned")).unwrap();
    assert_eq!(owned.into_result().unwrap(), "owned");
}

#[test]
fn workers_start_lazily_up_to_max_workers() {
    let pool = ThreadPoolExecutor::new(3);
    assert_eq!(pool.max_workers(), 3);
    assert_eq!(pool.worker_count(), 0, "no thread before the first submission");
    let gate = Arc::new(AtomicBool::new(false));
    let futures: Vec<_> = (0..10)
        .map(|_| {
            let gate = Arc::clone(&gate);
            pool.submit(move || {
                while !gate.load(Ordering::SeqCst) {
                    std::hint::spin_loop();
                }
            })
            .unwrap()
        })
        .collect();
    until("three workers", || pool.worker_count() == 3);
    gate.store(true, Ordering::SeqCst);
    for f in &futures {
        f.result().unwrap();
    }
    assert_eq!(pool.worker_count(), 3, "never more than max_workers");
    assert!(ThreadPoolExecutor::default().max_workers() <= 32);
}

#[test]
fn cancel_of_a_running_future_fails() {
    let pool = ThreadPoolExecutor::new(1);
    let (release, producer) = promise::<()>();
    let running = pool.submit(move || release.result().is_ok()).unwrap();
    until("the task to run", || running.running());
    assert!(!running.cancel(), "a running call cannot be cancelled");
    assert!(!running.cancelled());
    producer.set_result(());
    assert_eq!(running.result(), Ok(&true));
}

#[test]
fn cancel_of_a_pending_future_succeeds_and_it_never_runs() {
    let pool = ThreadPoolExecutor::new(1);
    let (release, producer) = promise::<()>();
    let blocker = pool.submit(move || release.wait()).unwrap();
    until("the blocker to run", || blocker.running());
    let ran = Arc::new(AtomicBool::new(false));
    let r = Arc::clone(&ran);
    let pending = pool.submit(move || r.store(true, Ordering::SeqCst)).unwrap();
    assert!(pending.cancel());
    assert!(pending.cancelled());
    producer.set_result(());
    blocker.result().unwrap();
    pool.shutdown(true, false);
    assert!(!ran.load(Ordering::SeqCst), "a cancelled call must not run");
    assert_eq!(pending.result(), Err(&TaskError::Cancelled));
}

#[test]
fn callbacks_of_pool_futures() {
    let pool = ThreadPoolExecutor::builder().max_workers(1).thread_name_prefix("cb").build();
    let (release, producer) = promise::<()>();
    let future = pool.submit(move || release.wait()).unwrap();
    let ran_in = Arc::new(Mutex::new(Vec::new()));
    for i in 0..3 {
        let ran_in = Arc::clone(&ran_in);
        future.add_done_callback(move |_| {
            ran_in.lock().push((i, thread::current().name().map(String::from)));
        });
    }
    producer.set_result(());
    future.result().unwrap();
    pool.shutdown(true, false);
    let ran = ran_in.lock().clone();
    let expected: Vec<_> = (0..3).map(|i| (i, Some("cb_0".to_string()))).collect();
    assert_eq!(ran, expected, "in order, in the worker that completed the future");
    // Already done: at once, in the caller.
    let here = Arc::new(AtomicBool::new(false));
    let h = Arc::clone(&here);
    let me = thread::current().id();
    future.add_done_callback(move |_| h.store(thread::current().id() == me, Ordering::SeqCst));
    assert!(here.load(Ordering::SeqCst));
}

#[test]
fn shutdown_cancel_futures_cancels_exactly_the_pending_ones() {
    let pool = ThreadPoolExecutor::new(1);
    let (release, producer) = promise::<()>();
    let running = pool.submit(move || release.wait()).unwrap();
    until("the first task to run", || running.running());
    let pending: Vec<_> = (0..5).map(|i| pool.submit(move || i).unwrap()).collect();
    let finished = pool.submit(|| 0).unwrap();
    assert!(finished.cancel());
    pool.shutdown(false, true);
    for f in &pending {
        assert!(f.cancelled(), "a pending future is cancelled");
    }
    assert!(!running.cancelled(), "the running one is not");
    producer.set_result(());
    assert_eq!(running.result(), Ok(&()));
    pool.shutdown(true, false);
}

#[test]
fn shutdown_wait_runs_every_queued_task() {
    let pool = ThreadPoolExecutor::new(2);
    let count = Arc::new(AtomicUsize::new(0));
    for _ in 0..50 {
        let count = Arc::clone(&count);
        pool.submit(move || {
            thread::sleep(Duration::from_micros(200));
            count.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    }
    pool.shutdown(true, false);
    assert_eq!(count.load(Ordering::SeqCst), 50);
    assert_eq!(pool.worker_count(), 0, "every worker has exited");
}

#[test]
fn shutdown_without_wait_still_runs_queued_tasks() {
    let pool = ThreadPoolExecutor::new(2);
    let futures: Vec<_> = (0..20).map(|i| pool.submit(move || i).unwrap()).collect();
    pool.shutdown(false, false);
    for (i, f) in futures.iter().enumerate() {
        assert_eq!(f.result_timeout(LONG), Ok(Ok(&i)));
    }
}

#[test]
fn submit_after_shutdown_is_refused() {
    let pool = ThreadPoolExecutor::new(2);
    pool.submit(|| ()).unwrap().result().unwrap();
    pool.shutdown(true, false);
    assert_eq!(pool.submit(|| ()).err(), Some(ShutdownError::Shutdown));
    assert!(pool.map(|x: u8| x, [1]).is_err());
    pool.shutdown(true, true); // again: harmless
}

#[test]
fn drop_shuts_down_and_waits() {
    let done = Arc::new(AtomicUsize::new(0));
    {
        let pool = ThreadPoolExecutor::new(3);
        for _ in 0..6 {
            let done = Arc::clone(&done);
            pool.submit(move || {
                thread::sleep(Duration::from_millis(10));
                done.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        }
    }
    assert_eq!(done.load(Ordering::SeqCst), 6);
}

#[test]
fn map_yields_in_input_order_with_uneven_task_times() {
    let pool = ThreadPoolExecutor::new(4);
    let out: Vec<u64> = pool
        .map(
            |i: u64| {
                thread::sleep(Duration::from_millis((8 - i) * 3));
                i * 10
            },
            0..8,
        )
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(out, [0, 10, 20, 30, 40, 50, 60, 70]);
}

#[test]
fn map_reports_a_failed_call_in_place() {
    let pool = ThreadPoolExecutor::new(2);
    let out: Vec<_> = pool
        .map(
            |i: u32| {
                assert!(i != 2, "two fails");
                i
            },
            0..4,
        )
        .unwrap()
        .collect();
    assert_eq!(out[..2], [Ok(0), Ok(1)]);
    assert_eq!(out[2].as_ref().err().and_then(TaskError::panic_message), Some("two fails"));
    assert_eq!(out[3], Ok(3));
}

#[test]
fn map_bounded_respects_its_run_ahead_bound() {
    let pool = ThreadPoolExecutor::new(4);
    let started = Arc::new(AtomicUsize::new(0));
    let s = Arc::clone(&started);
    let bound = 3;
    let mut it = pool
        .map_bounded(
            move |i: usize| {
                s.fetch_add(1, Ordering::SeqCst);
                i
            },
            0..40,
            bound,
        )
        .unwrap();
    thread::sleep(Duration::from_millis(20));
    assert!(started.load(Ordering::SeqCst) <= bound, "nothing beyond the bound before consuming");
    for i in 0..40 {
        assert_eq!(it.next(), Some(Ok(i)));
        let s = started.load(Ordering::SeqCst);
        assert!(s <= i + 1 + bound, "{s} calls started after consuming {} results", i + 1);
    }
    assert_eq!(it.next(), None);
}

#[test]
fn map_is_lazy_in_its_consumption_and_cancels_on_drop() {
    let pool = ThreadPoolExecutor::new(1);
    let (release, producer) = promise::<()>();
    let blocker = pool.submit(move || release.wait()).unwrap();
    until("the blocker to run", || blocker.running());
    let ran = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&ran);
    let it = pool.map(move |_: u8| r.fetch_add(1, Ordering::SeqCst), [1, 2, 3]).unwrap();
    drop(it); // cancels the three queued calls
    producer.set_result(());
    pool.shutdown(true, false);
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[test]
fn a_panicking_task_fails_its_future_and_the_worker_survives() {
    let pool = ThreadPoolExecutor::builder().max_workers(1).thread_name_prefix("survivor").build();
    let failed = pool.submit(|| -> u8 { panic!("boom") }).unwrap();
    let err = failed.exception().expect("the task failed");
    assert_eq!(err.panic_message(), Some("boom"));
    assert!(matches!(failed.result(), Err(TaskError::Panicked(_))));
    let next = pool.submit(|| thread::current().name().map(String::from)).unwrap();
    assert_eq!(next.into_result().unwrap().as_deref(), Some("survivor_0"));
    assert_eq!(pool.worker_count(), 1, "the same worker lives on");
}

#[test]
fn an_initializer_panic_breaks_the_pool() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .initializer(|| panic!("initializer fails"))
        .build();
    let mut futures = Vec::new();
    for i in 0..20 {
        match pool.submit(move || i) {
            Ok(f) => futures.push(f),
            Err(e) => assert!(matches!(e, ShutdownError::Broken(_)), "{e:?}"),
        }
    }
    assert!(!futures.is_empty(), "the first submission is accepted");
    for f in &futures {
        match f.result_timeout(LONG) {
            Ok(Err(TaskError::BrokenPool(why))) => assert!(why.contains("initializer"), "{why}"),
            other => panic!("a queued future must fail as broken, got {other:?}"),
        }
    }
    until("the pool to refuse work", || pool.submit(|| 0).is_err());
    match pool.submit(|| 0) {
        Err(ShutdownError::Broken(why)) => assert!(why.contains("initializer failed")),
        other => panic!("expected a broken-pool error, got {other:?}"),
    }
    drop(pool); // and dropping does not hang
}

#[test]
fn the_initializer_runs_once_per_worker() {
    let count = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&count);
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .initializer(move || {
            c.fetch_add(1, Ordering::SeqCst);
        })
        .build();
    let gate = Arc::new(AtomicBool::new(false));
    let futures: Vec<_> = (0..2)
        .map(|_| {
            let gate = Arc::clone(&gate);
            pool.submit(move || {
                while !gate.load(Ordering::SeqCst) {
                    std::hint::spin_loop();
                }
            })
            .unwrap()
        })
        .collect();
    until("two workers", || pool.worker_count() == 2);
    gate.store(true, Ordering::SeqCst);
    for f in futures {
        f.result().unwrap();
    }
    drop(pool);
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

#[test]
fn workers_are_named_prefix_n() {
    let pool = ThreadPoolExecutor::builder().max_workers(2).thread_name_prefix("named").build();
    let (gate, running) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let futures: Vec<_> = (0..2)
        .map(|_| {
            let (gate, running) = (Arc::clone(&gate), Arc::clone(&running));
            pool.submit(move || {
                running.fetch_add(1, Ordering::SeqCst);
                while !gate.load(Ordering::SeqCst) {
                    std::hint::spin_loop();
                }
                thread::current().name().map(String::from)
            })
            .unwrap()
        })
        .collect();
    until("both tasks to run at once", || running.load(Ordering::SeqCst) == 2);
    gate.store(true, Ordering::SeqCst);
    let mut names: Vec<_> =
        futures.into_iter().map(|f| f.into_result().unwrap().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["named_0", "named_1"]);

    let default = ThreadPoolExecutor::new(1);
    let name = default.submit(|| thread::current().name().map(String::from)).unwrap();
    let name = name.into_result().unwrap().unwrap();
    assert!(name.starts_with("ThreadPoolExecutor-") && name.ends_with("_0"), "{name}");
}

#[test]
fn result_timeout_of_a_pool_future_leaves_it_usable() {
    let pool = ThreadPoolExecutor::new(1);
    let (release, producer) = promise::<()>();
    let future = pool.submit(move || release.wait()).unwrap();
    assert!(future.result_timeout(Duration::from_millis(20)).is_err());
    assert!(!future.done());
    producer.set_result(());
    assert_eq!(future.result_timeout(LONG), Ok(Ok(&())));
}

#[test]
fn as_completed_and_wait_with_pool_futures() {
    let pool = ThreadPoolExecutor::new(4);
    let futures: Vec<_> = (0..8_u64)
        .map(|i| {
            pool.submit(move || {
                thread::sleep(Duration::from_millis((8 - i) * 2));
                i
            })
            .unwrap()
        })
        .collect();
    let mut seen: Vec<u64> =
        pool::as_completed(&futures, Some(LONG)).map(|f| *f.unwrap().result().unwrap()).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..8).collect::<Vec<_>>());
    let (done, not_done) = pool::wait(&futures, None, ReturnWhen::AllCompleted);
    assert_eq!((done.len(), not_done.len()), (8, 0));
}

#[test]
fn a_pool_future_can_be_awaited() {
    use pool::core_sync::backend::{AtomicU32, Backend, Futex};
    use std::pin::pin;
    use std::task::{Context, Poll, Wake, Waker};

    struct Signal(AtomicU32);
    impl Wake for Signal {
        fn wake(self: Arc<Self>) {
            self.0.store(1, Ordering::SeqCst);
            Futex::wake_all(&self.0);
        }
    }
    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        let signal = Arc::new(Signal(AtomicU32::new(0)));
        let waker = Waker::from(Arc::clone(&signal));
        let mut cx = Context::from_waker(&waker);
        let mut f = pin!(f);
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
            while signal.0.swap(0, Ordering::SeqCst) == 0 {
                Futex::wait(&signal.0, 0);
            }
        }
    }

    let pool = ThreadPoolExecutor::new(2);
    let a = pool.submit(|| {
        thread::sleep(Duration::from_millis(10));
        20
    });
    let b = pool.submit(|| 22);
    let sum = block_on(async move { a.unwrap().await.unwrap() + b.unwrap().await.unwrap() });
    assert_eq!(sum, 42);
    let failed = pool.submit(|| -> u8 { panic!("async boom") }).unwrap();
    assert_eq!(
        block_on(failed).err().as_ref().and_then(TaskError::panic_message),
        Some("async boom")
    );
}
