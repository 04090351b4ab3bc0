//! `scope` (tasks borrowing from the caller) and `join` (fork-join).
#![cfg(not(loom))]

use pool::{ThreadPoolExecutor, join};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

#[test]
fn scope_tasks_borrow_from_the_caller() {
    let pool = ThreadPoolExecutor::new(4);
    let input: Vec<u64> = (1..=100).collect();
    let mut partial = [0_u64; 4];
    pool.scope(|s| {
        for (slot, chunk) in partial.iter_mut().zip(input.chunks(25)) {
            s.spawn(move || *slot = chunk.iter().sum());
        }
    });
    assert_eq!(partial.iter().sum::<u64>(), 5050);
    assert!(partial.iter().all(|&p| p > 0), "every task ran before scope returned");
}

#[test]
fn scope_returns_its_value_and_tasks_can_spawn_more() {
    let pool = ThreadPoolExecutor::new(3);
    let count = AtomicUsize::new(0);
    let value = pool.scope(|s| {
        for _ in 0..10 {
            s.spawn(|| {
                s.spawn(|| {
                    count.fetch_add(1, Ordering::SeqCst);
                });
                count.fetch_add(1, Ordering::SeqCst);
            });
        }
        "body"
    });
    assert_eq!(value, "body");
    assert_eq!(count.load(Ordering::SeqCst), 20);
}

#[test]
fn scope_waits_for_every_task_even_when_one_panics() {
    let pool = ThreadPoolExecutor::new(4);
    let finished = AtomicUsize::new(0);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        pool.scope(|s| {
            for i in 0..8 {
                let finished = &finished;
                s.spawn(move || {
                    thread::sleep(Duration::from_millis(5));
                    assert!(i != 3, "task three fails");
                    finished.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
    }));
    let payload = outcome.expect_err("the task's panic is re-raised");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"task three fails"));
    assert_eq!(finished.load(Ordering::SeqCst), 7, "the others all finished first");

    // A panic in the body itself also waits for the tasks.
    let finished = AtomicUsize::new(0);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        pool.scope(|s| {
            s.spawn(|| {
                thread::sleep(Duration::from_millis(20));
                finished.fetch_add(1, Ordering::SeqCst);
            });
            panic!("body fails");
        })
    }));
    assert!(outcome.is_err());
    assert_eq!(finished.load(Ordering::SeqCst), 1);
}

#[test]
fn scopes_nest_inside_pool_tasks() {
    let pool = Arc::new(ThreadPoolExecutor::new(2));
    let p = Arc::clone(&pool);
    let total = pool
        .submit(move || {
            let mut sums = [0_u32; 8];
            p.scope(|s| {
                for (i, sum) in sums.iter_mut().enumerate() {
                    let p = &p;
                    s.spawn(move || {
                        let mut inner = [0_u32; 4];
                        p.scope(|s2| {
                            for (j, x) in inner.iter_mut().enumerate() {
                                s2.spawn(move || *x = (i * 4 + j) as u32);
                            }
                        });
                        *sum = inner.iter().sum();
                    });
                }
            });
            sums.iter().sum::<u32>()
        })
        .unwrap();
    assert_eq!(total.into_result().unwrap(), (0..32).sum::<u32>());
}

#[test]
fn scope_on_a_shut_down_pool_runs_tasks_inline() {
    let pool = ThreadPoolExecutor::new(2);
    pool.shutdown(true, false);
    let mut hit = false;
    pool.scope(|s| s.spawn(|| hit = true));
    assert!(hit);
}

fn fib(n: u32) -> u64 {
    if n < 2 {
        return u64::from(n);
    }
    let (a, b) = join(|| fib(n - 1), || fib(n - 2));
    a + b
}

#[test]
fn join_computes_fib() {
    let pool = ThreadPoolExecutor::new(4);
    assert_eq!(pool.join(|| fib(20), || fib(19)), (6765, 4181));
    // Outside a pool, `join` runs both closures in turn.
    assert_eq!(fib(15), 610);
}

#[test]
fn join_recursion_on_a_small_pool_does_not_deadlock() {
    let pool = ThreadPoolExecutor::new(2);
    let futures: Vec<_> = (0..4).map(|_| pool.submit(|| fib(18)).unwrap()).collect();
    for f in futures {
        assert_eq!(f.result_timeout(Duration::from_mins(1)), Ok(Ok(&2584)));
    }
}

#[test]
fn join_closures_borrow_mutably() {
    let pool = ThreadPoolExecutor::new(2);
    let mut left = vec![0_u32; 1000];
    let mut right = vec![0_u32; 1000];
    pool.join(|| left.fill(1), || right.fill(2));
    assert_eq!(left.iter().sum::<u32>() + right.iter().sum::<u32>(), 3000);
}

#[test]
fn a_panic_in_join_is_raised_after_both_halves_finish() {
    let pool = ThreadPoolExecutor::new(2);
    let other_done = AtomicUsize::new(0);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        pool.join(
            || panic!("left fails"),
            || {
                thread::sleep(Duration::from_millis(10));
                other_done.fetch_add(1, Ordering::SeqCst);
            },
        )
    }));
    assert!(outcome.is_err());
    assert_eq!(other_done.load(Ordering::SeqCst), 1);
    // The pool still works.
    assert_eq!(pool.join(|| 1, || 2), (1, 2));
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload.downcast_ref::<&str>().copied().unwrap_or("?")
}

/// On one worker nobody steals `b`: the worker pops it back and runs it
/// after `a` panicked, then re-raises `a`'s panic.
#[test]
fn a_panic_in_join_on_one_worker_runs_b_then_raises() {
    let pool = ThreadPoolExecutor::new(1);
    let b_ran = AtomicUsize::new(0);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        pool.join(|| panic!("left fails"), || b_ran.fetch_add(1, Ordering::SeqCst))
    }));
    assert_eq!(panic_message(&*outcome.unwrap_err()), "left fails");
    assert_eq!(b_ran.load(Ordering::SeqCst), 1);
    assert_eq!(pool.join(|| 1, || 2), (1, 2));
}

/// `b` run inline by its joiner (one worker) panics after `a` finished:
/// the panic is `b`'s, and the worker lives on.
#[test]
fn a_panic_in_b_run_by_the_joiner_is_raised() {
    let pool = ThreadPoolExecutor::new(1);
    let a_ran = AtomicUsize::new(0);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        pool.join(|| a_ran.fetch_add(1, Ordering::SeqCst), || panic!("right fails"))
    }));
    assert_eq!(panic_message(&*outcome.unwrap_err()), "right fails");
    assert_eq!(a_ran.load(Ordering::SeqCst), 1);
    assert_eq!(pool.join(|| 1, || 2), (1, 2));
}

/// Both halves panic: `a`'s panic is the one raised, after `b` finished.
#[test]
fn when_both_halves_panic_a_wins() {
    let pool = ThreadPoolExecutor::new(1);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        pool.join(|| panic!("left fails"), || panic!("right fails"))
    }));
    assert_eq!(panic_message(&*outcome.unwrap_err()), "left fails");
    assert_eq!(pool.join(|| 1, || 2), (1, 2));
}
