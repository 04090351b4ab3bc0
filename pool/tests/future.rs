//! Python's `concurrent.futures.Future` semantics, through the producer side
//! (`producer`) that executors use.
#![cfg(not(loom))]

use pool::core_sync::Mutex;
use pool::core_sync::backend::{AtomicU32, Backend, Futex};
use pool::{ReturnWhen, TaskError, TimeoutError, as_completed, promise, wait};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

type Log = Arc<Mutex<Vec<usize>>>;

fn log() -> Log {
    Arc::new(Mutex::new(Vec::new()))
}

#[test]
fn result_waits_for_the_producer() {
    let (future, producer) = promise::<u64>();
    assert!(!future.done());
    let t = thread::spawn(move || {
        assert!(producer.set_running_or_notify_cancel());
        producer.set_result(7);
    });
    assert_eq!(future.result(), Ok(&7));
    assert!(future.done() && !future.running() && !future.cancelled());
    t.join().unwrap();
    assert_eq!(future.into_result().ok(), Some(7));
}

#[test]
fn states_pending_running_finished() {
    let (future, producer) = promise::<u8>();
    assert!(!future.running() && !future.done() && !future.cancelled());
    assert!(producer.set_running_or_notify_cancel());
    assert!(future.running() && !future.done());
    producer.set_result(1);
    assert!(!future.running() && future.done());
}

#[test]
fn cancel_succeeds_only_while_pending() {
    let (pending, producer) = promise::<u8>();
    assert!(pending.cancel());
    assert!(pending.cancelled() && pending.done());
    assert!(pending.cancel(), "cancelling a cancelled future reports true, as Python");
    assert!(producer.is_cancelled());
    assert!(!producer.set_running_or_notify_cancel(), "a cancelled call must not run");
    assert!(matches!(pending.result(), Err(TaskError::Cancelled)));

    let (running, producer) = promise::<u8>();
    assert!(producer.set_running_or_notify_cancel());
    assert!(!running.cancel(), "a running future cannot be cancelled");
    assert!(!running.cancelled() && running.running());
    producer.set_result(3);
    assert!(!running.cancel(), "a finished future cannot be cancelled");
    assert_eq!(running.result(), Ok(&3));
}

#[test]
fn setting_a_cancelled_future_is_ignored() {
    let (future, producer) = promise::<u8>();
    assert!(future.cancel());
    producer.set_result(5);
    assert!(future.cancelled());
    assert!(matches!(future.into_result(), Err(TaskError::Cancelled)));
}

#[test]
fn exception_carries_the_panic_payload() {
    let (future, producer) = promise::<u8>();
    let payload = std::panic::catch_unwind(|| panic!("boom {}", 42)).unwrap_err();
    producer.set_exception(TaskError::from_panic(payload));
    let err = future.exception().expect("failed");
    assert_eq!(err.panic_message(), Some("boom 42"));
    assert!(matches!(future.result(), Err(TaskError::Panicked(_))));
    assert!(err.to_string().contains("boom 42"));

    // A payload that is not a string is kept, wrapped.
    let (future, producer) = promise::<u8>();
    let payload = std::panic::catch_unwind(|| std::panic::panic_any(17_i32)).unwrap_err();
    producer.set_exception(TaskError::from_panic(payload));
    let Err(TaskError::Panicked(p)) = future.into_result() else { panic!("not a panic") };
    let inner = p.downcast::<pool::UnsharedPayload>().unwrap().into_inner();
    assert_eq!(inner.downcast_ref::<i32>(), Some(&17));
}

#[test]
fn a_dropped_promise_breaks_the_future() {
    let (future, producer) = promise::<u8>();
    drop(producer);
    assert!(matches!(future.result(), Err(TaskError::BrokenPool(_))));
}

#[test]
fn result_timeout_leaves_the_future_usable() {
    let (future, producer) = promise::<u8>();
    let start = Instant::now();
    assert_eq!(future.result_timeout(Duration::from_millis(50)), Err(TimeoutError));
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert_eq!(future.result_timeout(Duration::ZERO), Err(TimeoutError));
    assert!(!future.done());
    producer.set_result(9);
    assert_eq!(future.result_timeout(Duration::from_secs(10)), Ok(Ok(&9)));
    assert_eq!(future.result_timeout(Duration::MAX), Ok(Ok(&9)));
    assert_eq!(future.exception_timeout(Duration::ZERO).map(|e| e.is_none()), Ok(true));
}

#[test]
fn callbacks_on_a_done_future_run_at_once_in_the_caller() {
    let (future, producer) = promise::<u8>();
    producer.set_result(1);
    let ran_in = Arc::new(Mutex::new(None));
    let r = Arc::clone(&ran_in);
    future.add_done_callback(move |f| {
        assert_eq!(f.result(), Ok(&1));
        *r.lock() = Some(thread::current().id());
    });
    assert_eq!(*ran_in.lock(), Some(thread::current().id()));
}

#[test]
fn callbacks_run_in_registration_order_in_the_completing_thread() {
    let (future, producer) = promise::<u8>();
    let order = log();
    let completer = Arc::new(Mutex::new(Vec::new()));
    for i in 0..10 {
        let (order, completer) = (Arc::clone(&order), Arc::clone(&completer));
        future.add_done_callback(move |f| {
            assert!(f.done());
            order.lock().push(i);
            completer.lock().push(thread::current().id());
        });
    }
    assert!(order.lock().is_empty(), "nothing runs before completion");
    let t = thread::spawn(move || {
        producer.set_result(0);
        thread::current().id()
    });
    let id = t.join().unwrap();
    assert_eq!(*order.lock(), (0..10).collect::<Vec<_>>());
    assert!(completer.lock().iter().all(|&c| c == id));
}

#[test]
fn a_panicking_callback_does_not_stop_the_others() {
    let (future, producer) = promise::<u8>();
    let order = log();
    for i in 0..3 {
        let order = Arc::clone(&order);
        future.add_done_callback(move |_| {
            order.lock().push(i);
            assert!(i != 1, "callback {i} fails");
        });
    }
    producer.set_result(0);
    assert_eq!(*order.lock(), [0, 1, 2]);
    // Also when run at once.
    let o = Arc::clone(&order);
    future.add_done_callback(|_| panic!("late callback fails"));
    future.add_done_callback(move |_| o.lock().push(3));
    assert_eq!(*order.lock(), [0, 1, 2, 3]);
}

#[test]
fn cancel_runs_the_callbacks() {
    let (future, _promise) = promise::<u8>();
    let seen = Arc::new(AtomicUsize::new(0));
    let s = Arc::clone(&seen);
    future.add_done_callback(move |f| {
        assert!(f.cancelled());
        s.fetch_add(1, Ordering::SeqCst);
    });
    assert!(future.cancel());
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}

#[test]
fn into_result_moves_only_from_the_last_handle() {
    let (future, producer) = promise::<String>();
    producer.set_result("x".to_string());
    let other = future.clone();
    assert!(future.ptr_eq(&other));
    assert!(matches!(future.into_result(), Err(TaskError::Other(_))));
    assert_eq!(other.result().map(String::as_str), Ok("x"));
    assert_eq!(other.into_result().ok().as_deref(), Some("x"));
}

#[test]
fn many_threads_wait_for_one_future() {
    let (future, producer) = promise::<u64>();
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let f = future.clone();
            thread::spawn(move || *f.result().unwrap())
        })
        .collect();
    producer.set_result(11);
    for w in waiters {
        assert_eq!(w.join().unwrap(), 11);
    }
}

// --- std::future::Future, with a hand-written executor ----------------------

struct Signal(AtomicU32);

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.0.store(1, Ordering::SeqCst);
        Futex::wake_all(&self.0);
    }
}

/// The smallest executor: poll, sleep on a futex word until woken, repeat.
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

#[test]
fn await_works_from_a_hand_written_executor() {
    let (future, producer) = promise::<u32>();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        producer.set_result(5);
    });
    let got = block_on(async move { future.await.map(|v| v + 1) });
    assert_eq!(got.ok(), Some(6));
    t.join().unwrap();

    let (future, producer) = promise::<u32>();
    drop(producer);
    assert!(matches!(block_on(future), Err(TaskError::BrokenPool(_))));
}

#[test]
fn await_sees_a_future_completed_before_the_first_poll() {
    let (future, producer) = promise::<u32>();
    producer.set_result(3);
    assert_eq!(block_on(future).ok(), Some(3));
}

#[test]
fn await_many_futures_in_one_task() {
    let pairs: Vec<_> = (0..8).map(|_| promise::<usize>()).collect();
    let (futures, promises): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
    let t = thread::spawn(move || {
        for (i, p) in promises.into_iter().enumerate().rev() {
            p.set_result(i);
        }
    });
    let sum = block_on(async move {
        let mut sum = 0;
        for f in futures {
            sum += f.await.unwrap();
        }
        sum
    });
    assert_eq!(sum, 28);
    t.join().unwrap();
}

// --- as_completed and wait ---------------------------------------------------

#[test]
fn as_completed_yields_in_completion_order_and_duplicates_once() {
    let pairs: Vec<_> = (0..3).map(|_| promise::<usize>()).collect();
    let (mut futures, mut promises): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
    futures.push(futures[1].clone()); // a duplicate
    promises.pop().unwrap().set_result(2); // done before the call
    let p0 = promises.remove(0);
    let p1 = promises.remove(0);
    let value = |f: Option<Result<&pool::Future<usize>, TimeoutError>>| {
        *f.unwrap().unwrap().result().unwrap()
    };
    let mut it = as_completed(&futures, Some(Duration::from_secs(30)));
    assert_eq!(value(it.next()), 2, "already-done futures come first");
    p1.set_result(1);
    assert_eq!(value(it.next()), 1);
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        p0.set_result(0);
    });
    assert_eq!(value(it.next()), 0, "waits for the last one");
    assert!(it.next().is_none(), "the duplicate is yielded once");
    t.join().unwrap();
}

#[test]
fn as_completed_times_out() {
    let (done, p) = promise::<u8>();
    p.set_result(1);
    let (pending, _keep) = promise::<u8>();
    let futures = [pending, done];
    let start = Instant::now();
    let mut it = as_completed(&futures, Some(Duration::from_millis(50)));
    assert!(it.next().unwrap().is_ok());
    assert_eq!(it.next().unwrap().err(), Some(TimeoutError));
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert!(it.next().is_none());
}

#[test]
fn wait_first_completed() {
    let (a, pa) = promise::<u8>();
    let (b, _pb) = promise::<u8>();
    let futures = [a, b];
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        pa.set_result(1);
    });
    let (done, not_done) =
        wait(&futures, Some(Duration::from_secs(30)), ReturnWhen::FirstCompleted);
    assert_eq!(done.len(), 1);
    assert!(done[0].ptr_eq(&futures[0]));
    assert_eq!(not_done.len(), 1);
    t.join().unwrap();
}

#[test]
fn wait_first_exception() {
    let (ok, p_ok) = promise::<u8>();
    let (cancelled, _p_c) = promise::<u8>();
    let (bad, p_bad) = promise::<u8>();
    let (never, _p_n) = promise::<u8>();
    p_ok.set_result(1);
    assert!(cancelled.cancel());
    let futures = [ok, cancelled, bad, never];
    // No failure yet: waits for the timeout (a cancellation is not an exception).
    let (done, not_done) =
        wait(&futures, Some(Duration::from_millis(30)), ReturnWhen::FirstException);
    assert_eq!((done.len(), not_done.len()), (2, 2));
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        p_bad.set_exception(TaskError::Other("bad".into()));
    });
    let (done, not_done) =
        wait(&futures, Some(Duration::from_secs(30)), ReturnWhen::FirstException);
    assert_eq!((done.len(), not_done.len()), (3, 1));
    assert!(not_done[0].ptr_eq(&futures[3]));
    t.join().unwrap();
}

#[test]
fn wait_all_completed_and_timeout() {
    let pairs: Vec<_> = (0..4).map(|_| promise::<usize>()).collect();
    let (futures, promises): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
    let (done, not_done) =
        wait(&futures, Some(Duration::from_millis(20)), ReturnWhen::AllCompleted);
    assert_eq!((done.len(), not_done.len()), (0, 4), "a timeout is not an error");
    let t = thread::spawn(move || {
        for (i, p) in promises.into_iter().enumerate() {
            thread::sleep(Duration::from_millis(5));
            p.set_result(i);
        }
    });
    let (done, not_done) = wait(&futures, None, ReturnWhen::AllCompleted);
    assert_eq!((done.len(), not_done.len()), (4, 0));
    t.join().unwrap();
}

#[test]
fn handle_is_two_words() {
    assert_eq!(size_of::<pool::Future<u64>>(), 2 * size_of::<usize>());
}
