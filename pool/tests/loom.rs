//! Loom models of the idle workers' sleep/wake protocol (`src/sleep.rs`),
//! run on the pool's real protocol code through `core-sync`'s model futex
//! (`backend::Loom`).
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p pool --release --test loom`
//! (`cargo xtask ci` does, with `LOOM_MAX_PREEMPTIONS` = 3; the whole file
//! runs in seconds). A lost wake-up
//! leaves a worker, or the thread waiting for the work to be done, asleep
//! forever: loom reports that as a deadlock.
//!
//! "Work" is a counter of published jobs, published with `Release` and
//! looked at with `Acquire`, as a deque does: the models rely on the
//! protocol's own fences for the Dekker pair, not on stronger orderings in
//! the queue. A worker's first look is a plain load that may miss a job
//! published a moment ago (as a search of the deques may), so only the
//! re-check after registering can catch it.
//!
//! Each model fails when the protocol is broken: without the wake in
//! `notify_work`, or without either `SeqCst` fence (or with the producer's
//! fence weakened to `AcqRel`), or with the re-check done before
//! registering, the worker models deadlock; without `wake_specific`, or
//! without its fence, the latch and join models do; without `wake_all` the
//! two-worker models do.
#![cfg(loom)]

use core_sync::backend::{AtomicU32, Loom};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::thread;
use pool::sleep::Sleep;

/// A model pool: queued jobs, how many jobs remain to be run, and a stop
/// flag.
struct Model {
    sleep: Sleep<Loom>,
    jobs: AtomicUsize,
    remaining: AtomicUsize,
    stop: AtomicBool,
}

impl Model {
    /// `workers` workers that together must run `jobs` jobs.
    fn new(workers: usize, jobs: usize) -> Arc<Model> {
        Arc::new(Model {
            sleep: Sleep::with_backend(workers),
            jobs: AtomicUsize::new(0),
            remaining: AtomicUsize::new(jobs),
            stop: AtomicBool::new(false),
        })
    }

    /// A producer publishes a job and tells the sleepers.
    fn publish(&self) {
        self.jobs.fetch_add(1, Ordering::Release);
        self.sleep.notify_work();
    }

    /// A worker's search: takes a job if it sees one (the first load may
    /// be stale, as a deque search may miss a fresh push).
    fn try_take(&self) -> bool {
        let mut n = self.jobs.load(Ordering::Relaxed);
        while n > 0 {
            match self.jobs.compare_exchange(n, n - 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => n = now,
            }
        }
        false
    }

    /// A worker's main loop: run jobs, sleep when there are none. The
    /// worker that runs the last job stops the pool as shutdown does (flag,
    /// then wake every sleeper), so a worker left asleep with a job still
    /// queued never wakes: loom reports the deadlock.
    fn worker(&self, index: usize) {
        loop {
            if self.try_take() {
                if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                    self.stop.store(true, Ordering::Release);
                    self.sleep.wake_all();
                }
                continue;
            }
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            self.sleep.sleep(index, || {
                self.stop.load(Ordering::Acquire) || self.jobs.load(Ordering::Acquire) > 0
            });
        }
    }
}

fn spawn_workers(model: &Arc<Model>, n: usize) -> Vec<thread::JoinHandle<()>> {
    (0..n)
        .map(|i| {
            let model = Arc::clone(model);
            thread::spawn(move || model.worker(i))
        })
        .collect()
}

/// One worker checks for work and goes to sleep while the producer
/// publishes a job and notifies: in every interleaving the worker either
/// sees the job in its re-check or is woken, and runs it.
#[test]
fn one_worker_sees_the_job_or_is_woken() {
    loom::model(|| {
        let model = Model::new(1, 1);
        let workers = spawn_workers(&model, 1);
        model.publish();
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(model.sleep.sleeping(), 0);
    });
}

/// Two workers may both be asleep, registering or searching when one job
/// is published: the one notification reaches a worker that runs it.
#[test]
fn two_workers_one_job() {
    loom::model(|| {
        let model = Model::new(2, 1);
        let workers = spawn_workers(&model, 2);
        model.publish();
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(model.sleep.sleeping(), 0);
    });
}

/// Two jobs published one after the other to two workers: each
/// notification wakes at most one sleeper, and both jobs still run.
///
/// Explored with at most 2 preemptions: 3 take a minute, which `ci` cannot
/// afford for a case the one-job models already cover at 3.
#[test]
fn two_workers_two_jobs() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(builder.preemption_bound.map_or(2, |b| b.min(2)));
    builder.check(|| {
        let model = Model::new(2, 2);
        let workers = spawn_workers(&model, 2);
        model.publish();
        model.publish();
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(model.sleep.sleeping(), 0);
    });
}

/// A joiner sleeps until its latch is set (its wake condition), and the
/// thread that sets the latch wakes that worker specifically, as a `join`
/// or `scope` completer does: the joiner always sees the latch or is woken.
#[test]
fn latch_setter_wakes_the_joiner() {
    loom::model(|| {
        let sleep = Arc::new(Sleep::<Loom>::with_backend(2));
        let latch = Arc::new(AtomicU32::new(0));
        let (s, l) = (Arc::clone(&sleep), Arc::clone(&latch));
        let setter = thread::spawn(move || {
            l.store(1, Ordering::SeqCst);
            s.wake_specific(0);
        });
        while latch.load(Ordering::Acquire) == 0 {
            sleep.sleep(0, || latch.load(Ordering::Acquire) == 1);
        }
        setter.join().unwrap();
        assert_eq!(sleep.sleeping(), 0);
    });
}

/// `wake_specific` wakes only the worker it names: with worker 1 also
/// asleep, waking worker 0 leaves worker 1 on the stack until `wake_all`.
#[test]
fn wake_specific_leaves_other_sleepers() {
    loom::model(|| {
        let sleep = Arc::new(Sleep::<Loom>::with_backend(2));
        let latch = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, l) = (Arc::clone(&sleep), Arc::clone(&latch));
        let joiner = thread::spawn(move || {
            while l.load(Ordering::Acquire) == 0 {
                s.sleep(0, || l.load(Ordering::Acquire) == 1);
            }
        });
        let (s, st) = (Arc::clone(&sleep), Arc::clone(&stop));
        let idle = thread::spawn(move || {
            while !st.load(Ordering::Acquire) {
                s.sleep(1, || st.load(Ordering::Acquire));
            }
        });
        latch.store(1, Ordering::SeqCst);
        sleep.wake_specific(0);
        joiner.join().unwrap();
        assert!(sleep.sleeping() <= 1, "only worker 1 may still sleep");
        stop.store(true, Ordering::Release);
        sleep.wake_all();
        idle.join().unwrap();
        assert_eq!(sleep.sleeping(), 0);
    });
}

/// `join`: the owner pushes its second half with `hint_work` (no fence),
/// while a thief may be searching, registering or asleep. Either the thief
/// takes the job, sets the latch and wakes the owner with `wake_specific`,
/// or the owner pops the job back and runs it itself: a notification the
/// fence-free hint misses costs parallelism, never the job.
#[test]
fn join_owner_runs_or_is_woken() {
    loom::model(|| {
        let sleep = Arc::new(Sleep::<Loom>::with_backend(2));
        let job = Arc::new(AtomicUsize::new(0));
        let latch = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thief = {
            let (sleep, job, latch, stop) =
                (Arc::clone(&sleep), Arc::clone(&job), Arc::clone(&latch), Arc::clone(&stop));
            thread::spawn(move || {
                loop {
                    if job.compare_exchange(1, 0, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                        latch.store(1, Ordering::Release);
                        sleep.wake_specific(0);
                        continue;
                    }
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    sleep.sleep(1, || {
                        stop.load(Ordering::Acquire) || job.load(Ordering::Acquire) > 0
                    });
                }
            })
        };
        job.store(1, Ordering::Release);
        sleep.hint_work();
        // `a` runs here; then the owner pops `b` back or waits for it.
        if job.compare_exchange(1, 0, Ordering::Acquire, Ordering::Relaxed).is_err() {
            while latch.load(Ordering::Acquire) == 0 {
                sleep.sleep(0, || latch.load(Ordering::Acquire) == 1);
            }
        }
        stop.store(true, Ordering::Release);
        sleep.wake_all();
        thief.join().unwrap();
        assert_eq!(sleep.sleeping(), 0);
    });
}
