//! The scheduler: worker threads, their deques, and how idle workers sleep.
//!
//! # Queues
//!
//! Submissions from outside the pool go to one global `Injector`; a task
//! submitted from inside a task (and the second half of a `join`) goes to
//! the submitting worker's own LIFO deque. A worker looks for work in its
//! own deque, then takes a batch from the injector, then steals from the
//! other workers, starting at a random one (a xorshift per worker).
//!
//! # Sleeping and waking
//!
//! Idle workers sleep on futex words, through the protocol of `sleep.rs`
//! (its state machine, and why no wake-up is lost, are described there; a
//! loom model checks it): a producer pushes a job and calls
//! `notify_work`, which wakes one sleeping worker if any sleeps; a worker
//! about to sleep re-checks every queue (and its latch, or the pool's flags)
//! after it registered. A worker waiting for a `join` or a `scope` is woken
//! by whoever sets its latch (`wake_specific`).
//!
//! Before registering, a worker searches a few rounds (spinning, then
//! yielding), so a steady trickle of work does not make it sleep and wake
//! for every job; an idle pool is asleep within microseconds and uses no CPU.
//!
//! # Shutdown, breaking, and submissions in flight
//!
//! `gate` counts submissions in flight from outside the pool, with two flag
//! bits: `SHUTDOWN` and `BROKEN`. A submission increments it, checks the
//! flags, pushes, and decrements it; `shutdown` and `break_pool` set their
//! flag and wait for the count to drain. So a submission either is refused
//! or is in the injector before the pool acts on its flag, and a worker
//! exits only when a flag is set, nothing is in flight and it finds no work.
//!
//! # Bounded by `max_workers`
//!
//! The pool never runs more than `max_workers` threads (Python's contract,
//! which users rely on to bound concurrency). A worker that waits for a
//! future of its own pool runs that very task inline if it is still queued
//! (see `future.rs`), so waits between tasks of one pool cannot exhaust it.

use std::cell::{Cell, UnsafeCell};
use std::io;
use std::mem::MaybeUninit;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering, fence};
use std::sync::{Arc, Weak};
use std_threads::JoinHandle;

use crossbeam_deque::{Injector, Steal, Stealer, Worker};

use crate::job::JobRef;
use crate::sleep::Sleep;

const SHUTDOWN: usize = 1 << (usize::BITS - 1);
const BROKEN: usize = 1 << (usize::BITS - 2);
const IN_FLIGHT: usize = BROKEN - 1;

/// Searching rounds that spin before a worker starts yielding.
const SPIN_ROUNDS: u32 = 16;
/// Searching rounds in all before a worker registers to sleep.
const SEARCH_ROUNDS: u32 = 32;

/// Python's message for a pool whose initializer failed.
pub(crate) const INITIALIZER_FAILED: &str =
    "A thread initializer failed, the thread pool is not usable anymore";

/// An initializer shared by every worker.
pub(crate) type Initializer = Arc<dyn Fn() + Send + Sync + 'static>;

/// What the builder chose.
pub(crate) struct Config {
    pub(crate) max_workers: usize,
    pub(crate) prefix: String,
    pub(crate) initializer: Option<Initializer>,
    pub(crate) daemon: bool,
}

/// Why a pool refuses work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    Shutdown,
    Broken,
}

/// One pool's scheduler state, shared by the executor handle and its workers.
pub(crate) struct Registry {
    /// Non-zero, unique among pools: tells a future which pool's workers may
    /// run it inline.
    pub(crate) id: usize,
    pub(crate) config: Config,
    capacity: usize,
    gate: AtomicUsize,
    injector: Injector<JobRef>,
    /// Written once each, under `spawn`, before `started` publishes them.
    stealers: Box<[UnsafeCell<MaybeUninit<Stealer<JobRef>>>]>,
    started: AtomicUsize,
    live: AtomicUsize,
    spawn: core_sync::Mutex<Vec<JoinHandle<()>>>,
    sleep: Sleep,
    broken_reason: core_sync::Mutex<Option<String>>,
}

// SAFETY: the only non-`Sync` field is `stealers`, whose slots are written
// once under the `spawn` lock before `started` (Release) publishes them, and
// only read (Acquire on `started`) afterwards.
unsafe impl Sync for Registry {}
// SAFETY: every field is `Send` (`JobRef` is).
unsafe impl Send for Registry {}

static NEXT_POOL_ID: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    /// The worker running on this thread, if any.
    static CURRENT: Cell<*const WorkerThread> = const { Cell::new(ptr::null()) };
}

/// A worker's own state, on its thread's stack.
pub(crate) struct WorkerThread {
    pub(crate) registry: Arc<Registry>,
    pub(crate) index: usize,
    local: Worker<JobRef>,
    rng: Cell<u64>,
}

impl WorkerThread {
    /// The worker running on the calling thread.
    #[inline]
    pub(crate) fn current<R>(f: impl FnOnce(Option<&WorkerThread>) -> R) -> R {
        let p = CURRENT.with(Cell::get);
        // SAFETY: CURRENT points at the `WorkerThread` on this thread's stack
        // for exactly as long as `worker_main` runs (it is reset on exit,
        // also by unwinding).
        f(unsafe { p.as_ref() })
    }

    /// The worker of `registry` running on the calling thread, if any.
    pub(crate) fn current_of<R>(
        registry: &Registry,
        f: impl FnOnce(Option<&WorkerThread>) -> R,
    ) -> R {
        Self::current(|wt| f(wt.filter(|wt| ptr::eq(Arc::as_ptr(&wt.registry), registry))))
    }

    /// Pushes a job on this worker's deque and tells the pool: wakes a
    /// sleeping worker, or starts one if none sleeps and the pool may grow.
    pub(crate) fn push(&self, job: JobRef) {
        self.local.push(job);
        self.registry.notify_work();
        self.registry.adjust_workers();
    }

    /// [`push`](Self::push) for a job this worker pops back and runs itself
    /// if nobody steals it (`join`'s second half): wakes a sleeper without
    /// the protocol's fence (see `Sleep::hint_work`), the cost that `join`
    /// pays most often.
    #[inline(always)]
    pub(crate) fn push_own(&self, job: JobRef) {
        self.local.push(job);
        self.registry.sleep.hint_work();
        if self.registry.wants_worker() {
            self.registry.adjust_workers();
        }
    }

    /// Pops this worker's newest job.
    #[inline]
    pub(crate) fn pop(&self) -> Option<JobRef> {
        self.local.pop()
    }

    pub(crate) fn execute(&self, job: JobRef) {
        job.run(&self.registry);
    }

    fn next_random(&self) -> u64 {
        // xorshift64
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        x
    }

    /// A job from this worker's deque, the injector, or another worker.
    pub(crate) fn find_work(&self) -> Option<JobRef> {
        if let Some(job) = self.local.pop() {
            return Some(job);
        }
        let registry = &*self.registry;
        loop {
            let mut retry = false;
            match registry.injector.steal_batch_and_pop(&self.local) {
                Steal::Success(job) => {
                    // The rest of the batch is in our deque now: a push like
                    // any other, which a sleeping worker may have to steal.
                    if !self.local.is_empty() {
                        registry.notify_work();
                    }
                    return Some(job);
                }
                Steal::Retry => retry = true,
                Steal::Empty => {}
            }
            let n = registry.started.load(Ordering::Acquire);
            if n > 1 {
                let start = (self.next_random() % n as u64) as usize;
                for k in 0..n {
                    let i = (start + k) % n;
                    if i == self.index {
                        continue;
                    }
                    match registry.stealer(i).steal() {
                        Steal::Success(job) => return Some(job),
                        Steal::Retry => retry = true,
                        Steal::Empty => {}
                    }
                }
            }
            if !retry {
                return None;
            }
        }
    }

    /// Runs other work until `done` holds, sleeping when there is none (for
    /// `join` and `scope`, whose completer wakes this worker specifically).
    pub(crate) fn wait_until(&self, done: &dyn Fn() -> bool) {
        let mut rounds = 0;
        while !done() {
            if let Some(job) = self.find_work() {
                self.execute(job);
                rounds = 0;
                continue;
            }
            if rounds < SEARCH_ROUNDS {
                pause(rounds);
                rounds += 1;
                continue;
            }
            self.registry.sleep(self.index, done);
            rounds = 0;
        }
    }
}

fn pause(round: u32) {
    if round < SPIN_ROUNDS {
        for _ in 0..(1 << round.min(6)) {
            std::hint::spin_loop();
        }
    } else {
        std::thread::yield_now();
    }
}

/// Creates a worker thread. The pool creates threads here and nowhere else.
///
/// Workers are `std-threads` threads, so a non-daemon worker keeps the
/// process alive at exit until it has finished, as in Python.
fn spawn_worker(
    name: String,
    daemon: bool,
    f: impl FnOnce() + Send + 'static,
) -> io::Result<JoinHandle<()>> {
    std_threads::Thread::new(f).name(name).daemon(daemon).start()
}

/// Pools whose workers keep the process alive, shut down at exit.
static EXIT_POOLS: core_sync::Mutex<Vec<Weak<Registry>>> = core_sync::Mutex::new(Vec::new());

/// Python's `concurrent.futures.thread._python_exit`: when the process
/// exits, every live pool stops taking work, its workers finish what is
/// queued and leave, and the exit waits for them (they are non-daemon
/// threads). Without this, a pool that was never dropped (leaked, or in a
/// `static`) would keep its sleeping workers, and the process, alive
/// forever.
fn shut_down_at_exit(registry: &Arc<Registry>) {
    let mut pools = EXIT_POOLS.lock();
    let first = pools.is_empty();
    pools.retain(|p| p.strong_count() > 0);
    pools.push(Arc::downgrade(registry));
    drop(pools);
    if first {
        // Fails only when the process is already exiting; then there is
        // no later exit to prepare for.
        let _ = std_threads::register_atexit(|| {
            let pools = std::mem::take(&mut *EXIT_POOLS.lock());
            for pool in pools.iter().filter_map(Weak::upgrade) {
                pool.shutdown(false, false);
            }
        });
    }
}

impl Registry {
    pub(crate) fn new(config: Config) -> Arc<Registry> {
        let capacity = config.max_workers;
        let registry = Arc::new(Registry {
            id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
            config,
            capacity,
            gate: AtomicUsize::new(0),
            injector: Injector::new(),
            stealers: (0..capacity).map(|_| UnsafeCell::new(MaybeUninit::uninit())).collect(),
            started: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            spawn: core_sync::Mutex::new(Vec::new()),
            sleep: Sleep::new(capacity),
            broken_reason: core_sync::Mutex::new(None),
        });
        if !registry.config.daemon {
            shut_down_at_exit(&registry);
        }
        registry
    }

    fn stealer(&self, i: usize) -> &Stealer<JobRef> {
        debug_assert!(i < self.started.load(Ordering::Relaxed));
        // SAFETY: slots below `started` (read with Acquire by the callers)
        // were initialised before `started` was raised past them, and are
        // never written again.
        unsafe { (*self.stealers[i].get()).assume_init_ref() }
    }

    /// Whether any queue holds a job (a snapshot).
    fn has_work(&self) -> bool {
        if !self.injector.is_empty() {
            return true;
        }
        let n = self.started.load(Ordering::Acquire);
        (0..n).any(|i| !self.stealer(i).is_empty())
    }

    fn refusing(&self) -> Option<Refused> {
        let g = self.gate.load(Ordering::SeqCst);
        if g & BROKEN != 0 {
            Some(Refused::Broken)
        } else if g & SHUTDOWN != 0 {
            Some(Refused::Shutdown)
        } else {
            None
        }
    }

    pub(crate) fn broken_reason(&self) -> Option<String> {
        if self.gate.load(Ordering::SeqCst) & BROKEN == 0 {
            return None;
        }
        Some(self.broken_reason.lock().clone().unwrap_or_else(|| INITIALIZER_FAILED.to_string()))
    }

    /// Queues a job: on the calling worker's own deque when it is a worker
    /// of this pool, else on the injector. Hands the job back, unqueued,
    /// when the pool refuses work.
    pub(crate) fn push_job(self: &Arc<Self>, job: JobRef) -> Result<(), (JobRef, Refused)> {
        let job = WorkerThread::current_of(self, |wt| {
            let Some(wt) = wt else { return Ok(Some(job)) };
            if let Some(why) = self.refusing() {
                return Err((job, why));
            }
            wt.push(job);
            Ok(None)
        })?;
        let Some(job) = job else { return Ok(()) };
        let g = self.gate.fetch_add(1, Ordering::SeqCst);
        if g & (SHUTDOWN | BROKEN) != 0 {
            self.gate.fetch_sub(1, Ordering::SeqCst);
            let why = if g & BROKEN != 0 { Refused::Broken } else { Refused::Shutdown };
            return Err((job, why));
        }
        self.injector.push(job);
        self.notify_work();
        let spawn_error = self.adjust_workers();
        self.gate.fetch_sub(1, Ordering::SeqCst);
        if let Some(e) = spawn_error
            && self.live.load(Ordering::SeqCst) == 0
        {
            self.break_pool(&format!("could not start a worker thread: {e}"));
        }
        Ok(())
    }

    /// Tells the pool a job was pushed: wakes one sleeping worker, if any.
    #[inline]
    pub(crate) fn notify_work(&self) {
        self.sleep.notify_work();
    }

    /// Starts a worker when none sleeps and fewer than `max_workers` run
    /// (Python's `_adjust_thread_count`). Returns the error of a thread that
    /// could not be started.
    fn adjust_workers(self: &Arc<Self>) -> Option<io::Error> {
        if self.sleep.sleeping() > 0 || !self.wants_worker() {
            return None;
        }
        self.spawn_one().err()
    }

    #[inline]
    fn wants_worker(&self) -> bool {
        self.started.load(Ordering::SeqCst) < self.capacity
    }

    fn spawn_one(self: &Arc<Self>) -> io::Result<()> {
        let mut handles = self.spawn.lock();
        if !self.wants_worker() || self.sleep.sleeping() > 0 {
            return Ok(());
        }
        // After shutdown, start a worker only if none is left to drain the
        // queue (a submission that raced with the shutdown).
        if self.refusing().is_some() && self.live.load(Ordering::SeqCst) > 0 {
            return Ok(());
        }
        let index = self.started.load(Ordering::Relaxed);
        let local = Worker::new_lifo();
        let stealer = local.stealer();
        let name = format!("{}_{}", self.config.prefix, index);
        self.live.fetch_add(1, Ordering::SeqCst);
        let registry = Arc::clone(self);
        match spawn_worker(name, self.config.daemon, move || worker_main(registry, index, local)) {
            Ok(handle) => {
                // SAFETY: slot `index` is at `started`, so no reader looks at
                // it yet, and the `spawn` lock makes this the only writer.
                unsafe { (*self.stealers[index].get()).write(stealer) };
                self.started.store(index + 1, Ordering::Release);
                handles.push(handle);
                Ok(())
            }
            Err(e) => {
                self.live.fetch_sub(1, Ordering::SeqCst);
                Err(e)
            }
        }
    }

    /// Wakes worker `index` if it sleeps (its latch was set).
    pub(crate) fn wake_specific(&self, index: usize) {
        self.sleep.wake_specific(index);
    }

    /// Registers worker `index` to sleep, re-checks every queue and
    /// `wake_when`, and sleeps until woken (the protocol of `sleep.rs`).
    fn sleep(&self, index: usize, wake_when: &dyn Fn() -> bool) {
        self.sleep.sleep(index, || wake_when() || self.has_work());
    }

    /// How many workers sleep now, and how many times a sleeping worker was
    /// woken so far.
    pub(crate) fn sleep_stats(&self) -> (usize, usize) {
        (self.sleep.sleeping(), self.sleep.wakeups())
    }

    pub(crate) fn live_workers(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    fn wait_for_submissions(&self) {
        while self.gate.load(Ordering::SeqCst) & IN_FLIGHT != 0 {
            std::thread::yield_now();
        }
    }

    /// The pool is unusable (an initializer failed): refuse new work, fail
    /// every queued future with `reason`, and let the workers go.
    pub(crate) fn break_pool(&self, reason: &str) {
        if self.gate.fetch_or(BROKEN, Ordering::SeqCst) & BROKEN != 0 {
            return;
        }
        *self.broken_reason.lock() = Some(reason.to_string());
        self.wait_for_submissions();
        self.drain_injector(reason);
        self.sleep.wake_all();
    }

    fn drain_injector(&self, why: &str) {
        loop {
            match self.injector.steal() {
                Steal::Success(job) => job.abandon(self, why),
                Steal::Retry => {}
                Steal::Empty => break,
            }
        }
    }

    /// Python's `shutdown(wait, cancel_futures)`.
    pub(crate) fn shutdown(&self, wait: bool, cancel_futures: bool) {
        self.gate.fetch_or(SHUTDOWN, Ordering::SeqCst);
        self.wait_for_submissions();
        if cancel_futures {
            // Counted as a submission in flight, so that no worker leaves
            // while the jobs that cannot be cancelled are out of the queues.
            self.gate.fetch_add(1, Ordering::SeqCst);
            self.cancel_queued();
            self.gate.fetch_sub(1, Ordering::SeqCst);
        }
        self.sleep.wake_all();
        if wait {
            let me = std_threads::get_ident();
            loop {
                let handles = std::mem::take(&mut *self.spawn.lock());
                if handles.is_empty() {
                    break;
                }
                for h in handles {
                    // A worker shutting down its own pool cannot join itself.
                    if h.ident() != me {
                        let _ = h.join();
                    }
                }
            }
        }
    }

    /// Cancels every queued future task; other jobs are queued again.
    fn cancel_queued(&self) {
        let mut keep = Vec::new();
        let mut take = |job: JobRef| {
            if let Err(job) = job.cancel() {
                keep.push(job);
            }
        };
        loop {
            match self.injector.steal() {
                Steal::Success(job) => take(job),
                Steal::Retry => {}
                Steal::Empty => break,
            }
        }
        let n = self.started.load(Ordering::Acquire);
        for i in 0..n {
            loop {
                match self.stealer(i).steal() {
                    Steal::Success(job) => take(job),
                    Steal::Retry => {}
                    Steal::Empty => break,
                }
            }
        }
        for job in keep {
            self.injector.push(job);
        }
    }

    /// A worker's main loop: run jobs; search, then sleep, when there are
    /// none; leave once the pool is shut down or broken and no work is left.
    fn main_loop(&self, wt: &WorkerThread) {
        let stopping = || self.gate.load(Ordering::SeqCst) & (SHUTDOWN | BROKEN) != 0;
        let mut rounds = 0;
        loop {
            if let Some(job) = wt.find_work() {
                wt.execute(job);
                rounds = 0;
                continue;
            }
            if stopping() {
                // Submissions in flight finish pushing before we look again.
                if self.gate.load(Ordering::SeqCst) & IN_FLIGHT == 0 {
                    fence(Ordering::SeqCst);
                    if !self.has_work() {
                        return;
                    }
                } else {
                    std::thread::yield_now();
                }
                continue;
            }
            if rounds < SEARCH_ROUNDS {
                pause(rounds);
                rounds += 1;
                continue;
            }
            self.sleep(wt.index, &stopping);
            rounds = 0;
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Every worker has left (each held an `Arc`); anything still queued
        // was never run.
        self.drain_injector("the executor was dropped");
        let n = *self.started.get_mut();
        for slot in &mut self.stealers[..n] {
            // SAFETY: slots below `started` were initialised, and are
            // dropped once, here.
            unsafe { slot.get_mut().assume_init_drop() };
        }
    }
}

/// Resets the thread's worker pointer when the worker ends, also by unwinding.
struct ResetCurrent;

impl Drop for ResetCurrent {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(ptr::null()));
    }
}

fn worker_main(registry: Arc<Registry>, index: usize, local: Worker<JobRef>) {
    let seed = (registry.id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (index as u64 + 1);
    let wt = WorkerThread { registry, index, local, rng: Cell::new(seed | 1) };
    CURRENT.with(|c| c.set(&raw const wt));
    let _reset = ResetCurrent;
    let initialized = match &wt.registry.config.initializer {
        Some(init) => panic::catch_unwind(AssertUnwindSafe(|| init())).is_ok(),
        None => true,
    };
    if initialized {
        wt.registry.main_loop(&wt);
    } else {
        wt.registry.break_pool(INITIALIZER_FAILED);
        // Jobs this worker stole before the break: fail them too.
        while let Some(job) = wt.local.pop() {
            job.abandon(&wt.registry, INITIALIZER_FAILED);
        }
    }
    wt.registry.live.fetch_sub(1, Ordering::SeqCst);
}
