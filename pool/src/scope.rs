//! `scope` (tasks that borrow from the caller) and `join` (fork-join).

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use core_sync::backend::{AtomicU32, Backend, Futex};

use crate::executor::ThreadPoolExecutor;
use crate::job::{JobRef, JobResult, JobVTable, StackJob, ThreadJob};
use crate::registry::{Registry, WorkerThread};

/// A scope's shared state: lives in an `Arc` that every task of the scope
/// holds, so the last task can signal the owner without touching memory
/// the owner may already have freed.
struct ScopeState {
    /// Tasks not yet finished, plus one for the scope's body.
    pending: AtomicUsize,
    /// Set to 1 when `pending` reaches zero (an outside owner sleeps on it).
    word: AtomicU32,
    /// The owner's worker index, when the owner is a worker of this pool.
    owner: Option<usize>,
    registry: Arc<Registry>,
    panic: core_sync::Mutex<Option<Box<dyn Any + Send>>>,
}

impl ScopeState {
    fn record_panic(&self, payload: Box<dyn Any + Send>) {
        let mut slot = self.panic.lock();
        if slot.is_none() {
            *slot = Some(payload);
        }
    }

    fn complete_one(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.word.store(1, Ordering::Release);
            match self.owner {
                Some(index) => self.registry.wake_specific(index),
                None => Futex::wake_all(&self.word),
            }
        }
    }

    fn finished(&self) -> bool {
        self.pending.load(Ordering::Acquire) == 0
    }
}

/// A scope in which tasks may borrow from the caller's stack; see
/// [`ThreadPoolExecutor::scope`].
pub struct Scope<'scope, 'env: 'scope> {
    state: Arc<ScopeState>,
    lifetimes: PhantomData<(&'scope mut &'scope (), &'env mut &'env ())>,
}

impl fmt::Debug for Scope<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("pending", &self.state.pending.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A scope task, boxed.
struct ScopeJob<F> {
    f: F,
    state: Arc<ScopeState>,
}

impl<F: FnOnce() + Send> ScopeJob<F> {
    const VTABLE: JobVTable =
        JobVTable { run: Self::run, abandon: Self::abandon, cancel: |_| false };

    unsafe fn take(ptr: *const ()) -> ScopeJob<F> {
        // SAFETY: `ptr` came from `Box::into_raw` in `Scope::spawn`, and the
        // job reference is consumed once.
        *unsafe { Box::from_raw(ptr.cast::<ScopeJob<F>>().cast_mut()) }
    }

    unsafe fn run(ptr: *const (), _registry: &Registry) {
        // SAFETY: `run` consumes the reference.
        let ScopeJob { f, state } = unsafe { Self::take(ptr) };
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(f)) {
            state.record_panic(payload);
        }
        state.complete_one();
    }

    unsafe fn abandon(ptr: *const (), _registry: &Registry, why: &str) {
        // SAFETY: `abandon` consumes the reference.
        let ScopeJob { f, state } = unsafe { Self::take(ptr) };
        drop(f);
        state.record_panic(Box::new(format!("a scope task could not run: {why}")));
        state.complete_one();
    }
}

impl<'scope> Scope<'scope, '_> {
    /// Runs `f` on the pool; it may borrow anything that outlives the
    /// scope. The scope returns only after `f` has finished.
    ///
    /// On a pool that is shut down or broken, `f` runs at once on the
    /// calling thread. A panic in `f` is re-raised by the scope (the first
    /// one, once every task finished).
    pub fn spawn<F>(&'scope self, f: F)
    where
        F: FnOnce() + Send + 'scope,
    {
        self.state.pending.fetch_add(1, Ordering::Relaxed);
        let job = Box::new(ScopeJob { f, state: Arc::clone(&self.state) });
        // SAFETY: the box stays alive until the reference is consumed, which
        // happens exactly once (run, abandon, or run here when refused); the
        // scope does not end before then, so what `f` borrows outlives it.
        let job =
            unsafe { JobRef::new(Box::into_raw(job).cast_const().cast(), &ScopeJob::<F>::VTABLE) };
        if let Err((job, _)) = self.state.registry.push_job(job) {
            job.run(&self.state.registry);
        }
    }
}

impl ThreadPoolExecutor {
    /// Runs `f` with a [`Scope`] whose tasks may borrow from the caller's
    /// stack, and returns when `f` and every task it spawned have finished,
    /// also when one of them panicked (the panic is then re-raised).
    ///
    /// Called from one of this pool's workers, the waiting worker runs
    /// queued work meanwhile, so nested scopes never starve the pool.
    ///
    /// ```
    /// let pool = pool::ThreadPoolExecutor::new(4);
    /// let mut counts = [0u32; 4];
    /// let words = ["a", "bb", "ccc", "dddd"];
    /// pool.scope(|s| {
    ///     for (count, word) in counts.iter_mut().zip(&words) {
    ///         s.spawn(move || *count = word.len() as u32);
    ///     }
    /// });
    /// assert_eq!(counts, [1, 2, 3, 4]);
    /// ```
    pub fn scope<'env, F, R>(&self, f: F) -> R
    where
        F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> R,
    {
        let registry = &self.registry;
        let owner = WorkerThread::current_of(registry, |wt| wt.map(|wt| wt.index));
        let scope = Scope {
            state: Arc::new(ScopeState {
                pending: AtomicUsize::new(1),
                word: AtomicU32::new(0),
                owner,
                registry: Arc::clone(registry),
                panic: core_sync::Mutex::new(None),
            }),
            lifetimes: PhantomData,
        };
        let result = panic::catch_unwind(AssertUnwindSafe(|| f(&scope)));
        let state = &scope.state;
        state.complete_one();
        if owner.is_some() {
            WorkerThread::current_of(registry, |wt| {
                wt.expect("the owner is this pool's worker").wait_until(&|| state.finished());
            });
        } else {
            while !state.finished() {
                Futex::wait(&state.word, 0);
            }
        }
        let payload = state.panic.lock().take();
        match result {
            Err(p) => panic::resume_unwind(p),
            Ok(_) if payload.is_some() => panic::resume_unwind(payload.expect("checked")),
            Ok(r) => r,
        }
    }

    /// Runs `a` and `b` in parallel and returns both results: fork-join
    /// (`rayon::join`). Called from outside the pool, the whole join runs
    /// on a worker while the caller waits.
    ///
    /// Inside the pool, `b` is queued on the worker's own deque while the
    /// worker runs `a`; if no other worker stole `b`, the worker runs it
    /// next, else it runs other queued work until `b` is done. So recursion
    /// never blocks a worker idly and never deadlocks the pool. A panic in
    /// either closure is re-raised after both have finished.
    ///
    /// ```
    /// fn fib(n: u32) -> u64 {
    ///     if n < 2 { return n.into() }
    ///     let (a, b) = pool::join(|| fib(n - 1), || fib(n - 2));
    ///     a + b
    /// }
    /// let pool = pool::ThreadPoolExecutor::new(4);
    /// assert_eq!(pool.join(|| fib(20), || fib(10)), (6765, 55));
    /// ```
    pub fn join<A, B, RA, RB>(&self, a: A, b: B) -> (RA, RB)
    where
        A: FnOnce() -> RA + Send,
        B: FnOnce() -> RB + Send,
        RA: Send,
        RB: Send,
    {
        let inside = WorkerThread::current_of(&self.registry, |wt| wt.is_some());
        if inside { join(a, b) } else { self.install(|| join(a, b)) }
    }

    /// Runs `f` on one of the pool's workers and waits for it (on a pool
    /// that refuses work, on the calling thread).
    fn install<R, F>(&self, f: F) -> R
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let job = ThreadJob::new(f);
        // SAFETY: `job` stays in place until `wait` returns, or is handed
        // back unconsumed.
        let job_ref = unsafe { job.as_job_ref() };
        match self.registry.push_job(job_ref) {
            Ok(()) => job.wait(),
            Err(_) => job.run_inline(),
        }
    }
}

/// Runs `a` and `b`, in parallel when called from a pool worker (see
/// [`ThreadPoolExecutor::join`]), one after the other elsewhere.
pub fn join<A, B, RA, RB>(a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    WorkerThread::current(|wt| match wt {
        Some(wt) => join_in_worker(wt, a, b),
        None => (a(), b()),
    })
}

fn join_in_worker<A, B, RA, RB>(wt: &WorkerThread, a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    let job_b = StackJob::new(b, wt.index);
    // SAFETY: `job_b` stays in place until its reference is popped back
    // below or its latch is set (`probe`); this frame does not return, nor
    // unwind (`a` runs under `catch_unwind`, and `b` runs here only once
    // its reference is popped back), before one of those.
    let b_ref = unsafe { job_b.as_job_ref() };
    let b_id = b_ref.id();
    wt.push_own(b_ref);
    let ra = match panic::catch_unwind(AssertUnwindSafe(a)) {
        Ok(ra) => ra,
        Err(p) => {
            finish_b(wt, &job_b, b_id);
            panic::resume_unwind(p)
        }
    };
    while !job_b.probe() {
        match wt.pop() {
            Some(job) if job.id() == b_id => {
                // Nobody stole it: run it here, as a plain call (a panic in
                // `b` unwinds from here; `a` has finished).
                // SAFETY: popped back, so this thread alone can reach it.
                return (ra, unsafe { job_b.run_inline() });
            }
            Some(job) => wt.execute(job),
            None => {
                wt.wait_until(&|| job_b.probe());
                break;
            }
        }
    }
    match job_b.into_result() {
        JobResult::Ok(rb) => (ra, rb),
        JobResult::Panic(p) => panic::resume_unwind(p),
        JobResult::None | JobResult::Abandoned => {
            unreachable!("a finished join job holds its result")
        }
    }
}

/// `a` panicked: `b` still has to finish (it may borrow from the joiner's
/// frame) before the panic goes on; a panic of `b` is dropped then.
#[cold]
fn finish_b<F, R>(wt: &WorkerThread, job_b: &StackJob<F, R>, b_id: *const ())
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    while !job_b.probe() {
        match wt.pop() {
            Some(job) if job.id() == b_id => {
                // SAFETY: popped back, so this thread alone can reach it.
                let _ = panic::catch_unwind(AssertUnwindSafe(|| unsafe { job_b.run_inline() }));
                return;
            }
            Some(job) => wt.execute(job),
            None => {
                wt.wait_until(&|| job_b.probe());
                break;
            }
        }
    }
}
