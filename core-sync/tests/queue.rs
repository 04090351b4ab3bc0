//! Python's `queue.Queue(maxsize=N)` semantics: FIFO, blocking and
//! non-blocking put/get, timeouts, `task_done`/`join`, and a 4 x 4 stress
//! test. With `--no-default-features` the spin-backend tests remain.

#![cfg_attr(not(feature = "std"), allow(unused_imports, dead_code))]

use core_sync::backend::Spin;
use core_sync::{Full, Queue, TaskDoneError};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Generous upper bound for "returns promptly" on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(5);

#[test]
fn size_is_the_items_plus_a_lock_and_three_wait_queues() {
    // Lock (4) + 3 wait queues (16 each) + the deque and the task count.
    let overhead = size_of::<Queue<u64, 8, Spin>>() - size_of::<heapless::Deque<u64, 8>>();
    assert!(overhead <= 4 + 3 * 16 + 8 + 4, "overhead {overhead}");
}

fn fifo_and_non_blocking_forms<B: core_sync::Backend>(q: &Queue<u32, 3, B>) {
    assert!(q.is_empty());
    assert_eq!(q.capacity(), 3);
    assert_eq!(q.try_get(), None);
    for i in 1..=3 {
        q.try_put(i).unwrap();
    }
    assert!(q.is_full());
    assert_eq!(q.len(), 3);
    // queue.Full, and the item comes back.
    assert_eq!(q.try_put(4), Err(Full(4)));
    assert_eq!(q.try_put(5).unwrap_err().into_inner(), 5);
    assert_eq!(q.len(), 3);
    assert_eq!(q.get(), 1);
    q.put(4);
    assert_eq!([q.get(), q.get(), q.try_get().unwrap()], [2, 3, 4]);
    assert_eq!(q.try_get(), None);
    assert!(q.is_empty());
}

#[test]
#[cfg(feature = "std")]
fn fifo_and_non_blocking_forms_futex() {
    fifo_and_non_blocking_forms(&Queue::new());
}

#[test]
fn fifo_and_non_blocking_forms_spin_backend() {
    fifo_and_non_blocking_forms(&Queue::<u32, 3, Spin>::with_backend());
}

#[test]
fn try_put_gives_back_an_item_that_owns_memory() {
    let q: Queue<String, 1, Spin> = Queue::with_backend();
    q.try_put("kept".to_string()).unwrap();
    let Err(Full(back)) = q.try_put("returned".to_string()) else { panic!("queue not full") };
    assert_eq!(back, "returned");
    assert_eq!(q.try_get().as_deref(), Some("kept"));
}

fn blocking_put_waits_for_room<B: core_sync::Backend>(q: &Queue<u32, 2, B>) {
    q.put(1);
    q.put(2);
    let put_done = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| {
            q.put(3); // blocks while full
            put_done.store(true, Ordering::SeqCst);
        });
        // Holds in every interleaving; the pause lets a broken put show.
        thread::sleep(Duration::from_millis(20));
        assert!(!put_done.load(Ordering::SeqCst), "put into a full queue did not wait");
        assert_eq!(q.get(), 1);
    });
    assert!(put_done.load(Ordering::SeqCst));
    assert_eq!([q.get(), q.get()], [2, 3]);
}

#[test]
#[cfg(feature = "std")]
fn blocking_put_waits_for_room_futex() {
    blocking_put_waits_for_room(&Queue::new());
}

#[test]
fn blocking_put_waits_for_room_spin_backend() {
    blocking_put_waits_for_room(&Queue::<u32, 2, Spin>::with_backend());
}

fn blocking_get_waits_for_an_item<B: core_sync::Backend>(q: &Queue<u32, 2, B>) {
    let got = AtomicBool::new(false);
    thread::scope(|s| {
        let getter = s.spawn(|| {
            let item = q.get(); // blocks while empty
            got.store(true, Ordering::SeqCst);
            item
        });
        thread::sleep(Duration::from_millis(20));
        assert!(!got.load(Ordering::SeqCst), "get from an empty queue did not wait");
        q.put(7);
        assert_eq!(getter.join().unwrap(), 7);
    });
    assert!(q.is_empty());
}

#[test]
#[cfg(feature = "std")]
fn blocking_get_waits_for_an_item_futex() {
    blocking_get_waits_for_an_item(&Queue::new());
}

#[test]
fn blocking_get_waits_for_an_item_spin_backend() {
    blocking_get_waits_for_an_item(&Queue::<u32, 2, Spin>::with_backend());
}

#[test]
#[cfg(feature = "std")]
fn timeouts_give_up_after_at_least_the_timeout() {
    let q: Queue<u32, 1> = Queue::new();
    let timeout = Duration::from_millis(50);

    let start = Instant::now();
    assert_eq!(q.get_timeout(timeout), None);
    let took = start.elapsed();
    assert!(took >= timeout && took < timeout + SLACK, "get took {took:?}");

    q.put(1);
    let start = Instant::now();
    assert_eq!(q.put_timeout(2, timeout), Err(Full(2)));
    let took = start.elapsed();
    assert!(took >= timeout && took < timeout + SLACK, "put took {took:?}");

    // Zero is the non-blocking form.
    assert_eq!(q.put_timeout(3, Duration::ZERO), Err(Full(3)));
    assert_eq!(q.get_timeout(Duration::ZERO), Some(1));
    assert_eq!(q.get_timeout(Duration::ZERO), None);
    assert_eq!(q.put_timeout(4, Duration::ZERO), Ok(()));

    // A timed wait that is served in time succeeds.
    thread::scope(|s| {
        s.spawn(|| assert_eq!(q.put_timeout(5, Duration::from_secs(30)), Ok(())));
        thread::sleep(Duration::from_millis(10));
        assert_eq!(q.get_timeout(Duration::MAX), Some(4));
    });
    assert_eq!(q.get_timeout(Duration::from_secs(30)), Some(5));
}

#[test]
fn task_done_called_too_often_is_an_error() {
    let q: Queue<u32, 2, Spin> = Queue::with_backend();
    assert_eq!(q.task_done(), Err(TaskDoneError));
    q.put(1);
    assert_eq!(q.unfinished_tasks(), 1);
    assert_eq!(q.get(), 1);
    assert_eq!(q.unfinished_tasks(), 1, "get does not finish the task");
    assert_eq!(q.task_done(), Ok(()));
    assert_eq!(q.task_done(), Err(TaskDoneError));
    assert_eq!(q.unfinished_tasks(), 0);
    q.join(); // nothing unfinished: returns at once
}

fn join_waits_for_every_task<B: core_sync::Backend>(q: &Queue<u32, 4, B>) {
    const JOBS: usize = 20;
    let processed = AtomicUsize::new(0);
    thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..JOBS {
                let _job = q.get();
                processed.fetch_add(1, Ordering::SeqCst);
                q.task_done().unwrap();
            }
        });
        for job in 0..JOBS as u32 {
            q.put(job);
        }
        q.join();
        // Every item put was marked done before join returned.
        assert_eq!(processed.load(Ordering::SeqCst), JOBS);
    });
    assert_eq!(q.task_done(), Err(TaskDoneError));
}

#[test]
#[cfg(feature = "std")]
fn join_waits_for_every_task_futex() {
    join_waits_for_every_task(&Queue::new());
}

#[test]
fn join_waits_for_every_task_spin_backend() {
    join_waits_for_every_task(&Queue::<u32, 4, Spin>::with_backend());
}

type Q<B> = Queue<Option<u32>, 8, B>;
type PutResult = Result<(), Full<Option<u32>>>;

/// The timed forms a stress run mixes in, when the backend has a clock.
struct Timed<B> {
    get: fn(&Q<B>) -> Option<Option<u32>>,
    put: fn(&Q<B>, Option<u32>) -> PutResult,
}

/// 4 producers and 4 consumers through a small queue, blocking and (when
/// given) timed forms mixed: every item arrives exactly once, and the items
/// of one producer reach any one consumer in the order they were put.
fn stress_four_by_four<B: core_sync::Backend>(
    q: &Q<B>,
    per_producer: u32,
    timed: Option<&Timed<B>>,
) {
    const PRODUCERS: u32 = 4;
    const CONSUMERS: u32 = 4;
    let received: Vec<Vec<u32>> = thread::scope(|s| {
        let consumers: Vec<_> = (0..CONSUMERS)
            .map(|c| {
                s.spawn(move || {
                    let mut got = Vec::new();
                    loop {
                        let item = match timed {
                            Some(timed) if c % 2 == 1 => (timed.get)(q),
                            _ => Some(q.get()),
                        };
                        match item {
                            Some(Some(item)) => got.push(item),
                            Some(None) => return got, // this consumer's stop sign
                            None => {}                // timed out; try again
                        }
                    }
                })
            })
            .collect();
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                s.spawn(move || {
                    for k in 0..per_producer {
                        let mut item = Some(p * per_producer + k);
                        match timed {
                            Some(timed) if p % 2 == 1 => {
                                while let Err(Full(back)) = (timed.put)(q, item) {
                                    item = back;
                                }
                            }
                            _ => q.put(item),
                        }
                    }
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        for _ in 0..CONSUMERS {
            q.put(None);
        }
        consumers.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let total = PRODUCERS * per_producer;
    let mut all: Vec<u32> = received.iter().flatten().copied().collect();
    assert_eq!(all.len(), total as usize, "items lost or duplicated");
    all.sort_unstable();
    assert!(all.iter().copied().eq(0..total), "items lost or duplicated");
    for got in &received {
        for p in 0..PRODUCERS {
            let mine: Vec<u32> = got.iter().copied().filter(|i| i / per_producer == p).collect();
            assert!(mine.windows(2).all(|w| w[0] < w[1]), "FIFO order broken");
        }
    }
    assert!(q.is_empty());
    assert_eq!(q.unfinished_tasks(), (total + CONSUMERS) as usize);
}

const PER_PRODUCER: u32 = if cfg!(miri) { 50 } else { 20_000 };

#[test]
#[cfg(feature = "std")]
fn stress_four_by_four_futex() {
    stress_four_by_four(&Queue::new(), PER_PRODUCER, None);
}

#[test]
#[cfg(feature = "std")]
fn stress_four_by_four_futex_with_timeouts() {
    let timed = Timed {
        get: |q| q.get_timeout(Duration::from_micros(100)),
        put: |q, item| q.put_timeout(item, Duration::from_micros(100)),
    };
    stress_four_by_four(&Queue::new(), PER_PRODUCER, Some(&timed));
}

#[test]
fn stress_four_by_four_spin_backend() {
    stress_four_by_four(&Queue::<Option<u32>, 8, Spin>::with_backend(), PER_PRODUCER / 20, None);
}
