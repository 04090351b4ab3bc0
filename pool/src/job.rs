//! Jobs: what the scheduler's deques hold.
//!
//! A [`JobRef`] is two words: a pointer to the job and a table of what can
//! be done with it. The deques never know what a job is; there are four
//! kinds:
//!
//! - a submitted task: the future's own cell (`Arc`, one allocation per
//!   task), see `executor.rs`;
//! - a scope task: a boxed closure and the scope's counter, see `scope.rs`;
//! - the second half of an in-pool `join`: a [`StackJob`] on the joiner's
//!   stack (no allocation);
//! - a closure an outside thread runs on a worker and waits for
//!   ([`ThreadJob`], for `join` called from outside the pool).
//!
//! Every `JobRef` is consumed exactly once, by `run`, `abandon` or a
//! successful `cancel`; until then the job it points to stays alive.

use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use core_sync::backend::{AtomicU32, Backend, Futex};

use crate::registry::Registry;

/// What can be done with a job.
pub(crate) struct JobVTable {
    /// Runs the job; never unwinds.
    pub(crate) run: unsafe fn(*const (), &Registry),
    /// Gives the job up without running user code (the pool broke, or is
    /// being torn down): its future fails, its waiter is released.
    pub(crate) abandon: unsafe fn(*const (), &Registry, &str),
    /// `shutdown(cancel_futures=True)`: cancels the job if it is a future's
    /// task and returns `true` (the reference is consumed); returns `false`
    /// for a job that is not cancellable (it must be queued again).
    pub(crate) cancel: unsafe fn(*const ()) -> bool,
}

/// A type-erased reference to a queued job.
pub(crate) struct JobRef {
    ptr: *const (),
    vtable: &'static JobVTable,
}

// SAFETY: every job kind is safe to run, abandon or cancel from any thread
// (their closures and results are `Send`), and a `JobRef` is a unique token
// (not `Clone`), so moving it moves the right to consume the job.
unsafe impl Send for JobRef {}

impl JobRef {
    /// # Safety
    ///
    /// `ptr` must stay valid, and be usable by `vtable`'s functions, until
    /// the reference is consumed; only one `JobRef` may exist for it.
    pub(crate) unsafe fn new(ptr: *const (), vtable: &'static JobVTable) -> JobRef {
        JobRef { ptr, vtable }
    }

    /// The job's address, to recognise a job popped back off a deque.
    pub(crate) fn id(&self) -> *const () {
        self.ptr
    }

    pub(crate) fn run(self, registry: &Registry) {
        // SAFETY: the constructor's contract; `self` is consumed.
        unsafe { (self.vtable.run)(self.ptr, registry) }
    }

    pub(crate) fn abandon(self, registry: &Registry, why: &str) {
        // SAFETY: the constructor's contract; `self` is consumed.
        unsafe { (self.vtable.abandon)(self.ptr, registry, why) }
    }

    /// Cancels a future's task; hands back a job that is not cancellable.
    pub(crate) fn cancel(self) -> Result<(), JobRef> {
        // SAFETY: the constructor's contract; on `true` the job is consumed.
        if unsafe { (self.vtable.cancel)(self.ptr) } { Ok(()) } else { Err(self) }
    }
}

/// How a job that someone waits for ended.
pub(crate) enum JobResult<R> {
    None,
    Ok(R),
    Panic(Box<dyn Any + Send>),
    /// Not run: the waiter runs the closure itself.
    Abandoned,
}

/// The second closure of an in-pool `join`, on the joiner's stack.
///
/// The latch word is 0 until the job has run (or been abandoned), then 1;
/// setting it is the job's last access to its own memory, after which the
/// setter wakes the joiner through the registry (which outlives the job).
pub(crate) struct StackJob<F, R> {
    func: UnsafeCell<Option<F>>,
    result: UnsafeCell<JobResult<R>>,
    latch: AtomicU32,
    /// The worker index of the joiner, to wake it.
    owner: usize,
}

impl<F, R> StackJob<F, R>
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    const VTABLE: JobVTable =
        JobVTable { run: Self::run_job, abandon: Self::abandon_job, cancel: |_| false };

    pub(crate) fn new(func: F, owner: usize) -> Self {
        StackJob {
            func: UnsafeCell::new(Some(func)),
            result: UnsafeCell::new(JobResult::None),
            latch: AtomicU32::new(0),
            owner,
        }
    }

    /// # Safety
    ///
    /// The job must not move or be dropped until the reference was consumed
    /// and [`probe`](Self::probe) returns true, or the reference was popped
    /// back by the owner.
    pub(crate) unsafe fn as_job_ref(&self) -> JobRef {
        // SAFETY: forwarded to the caller.
        unsafe { JobRef::new(std::ptr::from_ref(self).cast(), &Self::VTABLE) }
    }

    /// Whether the job has run or was abandoned (Acquire: its result is visible).
    pub(crate) fn probe(&self) -> bool {
        self.latch.load(Ordering::Acquire) == 1
    }

    /// Runs the closure on the owner's thread, in place.
    ///
    /// # Safety
    ///
    /// The owner popped the job's reference back (so no other thread can
    /// reach the job) and has not run it yet.
    #[inline]
    pub(crate) unsafe fn run_inline(&self) -> R {
        // SAFETY: the caller's contract gives this thread sole access.
        let f = unsafe { (*self.func.get()).take() };
        f.expect("a job's closure runs once")()
    }

    /// The outcome once [`probe`](Self::probe) returned true.
    pub(crate) fn into_result(self) -> JobResult<R> {
        match self.result.into_inner() {
            JobResult::Abandoned => match self.func.into_inner() {
                Some(f) => JobResult::Ok(f()),
                None => JobResult::Abandoned,
            },
            other => other,
        }
    }

    unsafe fn run_job(ptr: *const (), registry: &Registry) {
        // SAFETY: `as_job_ref`'s contract keeps the job alive until the latch
        // is set, and the queue entry gives this thread sole access.
        let this = unsafe { &*ptr.cast::<Self>() };
        // SAFETY: as above; the owner does not touch `func` while queued.
        let f = unsafe { (*this.func.get()).take() }.expect("a job's closure runs once");
        let result = match panic::catch_unwind(AssertUnwindSafe(f)) {
            Ok(r) => JobResult::Ok(r),
            Err(p) => JobResult::Panic(p),
        };
        // SAFETY: as above.
        unsafe { *this.result.get() = result };
        Self::set(this, registry);
    }

    unsafe fn abandon_job(ptr: *const (), registry: &Registry, _why: &str) {
        // SAFETY: as in `run_job`.
        let this = unsafe { &*ptr.cast::<Self>() };
        // SAFETY: as in `run_job`.
        unsafe { *this.result.get() = JobResult::Abandoned };
        Self::set(this, registry);
    }

    fn set(this: &Self, registry: &Registry) {
        let owner = this.owner;
        // The last access to the job: the joiner may return at once.
        this.latch.store(1, Ordering::Release);
        registry.wake_specific(owner);
    }
}

/// A closure an outside thread hands to a worker and waits for; the waiter
/// sleeps on a shared word, so the job's stack memory is never touched after
/// the result is published.
pub(crate) struct ThreadJob<F, R> {
    func: UnsafeCell<Option<F>>,
    result: UnsafeCell<JobResult<R>>,
    signal: Arc<AtomicU32>,
}

impl<F, R> ThreadJob<F, R>
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    const VTABLE: JobVTable =
        JobVTable { run: Self::run_job, abandon: Self::abandon_job, cancel: |_| false };

    pub(crate) fn new(func: F) -> Self {
        ThreadJob {
            func: UnsafeCell::new(Some(func)),
            result: UnsafeCell::new(JobResult::None),
            signal: Arc::new(AtomicU32::new(0)),
        }
    }

    /// # Safety
    ///
    /// The job must not move or be dropped until [`wait`](Self::wait)
    /// returned (or the reference was handed back unconsumed).
    pub(crate) unsafe fn as_job_ref(&self) -> JobRef {
        // SAFETY: forwarded to the caller.
        unsafe { JobRef::new(std::ptr::from_ref(self).cast(), &Self::VTABLE) }
    }

    /// Sleeps until the job ran or was abandoned; then the closure's outcome
    /// (an abandoned closure runs here). Takes `&self`: the job must not
    /// move while a worker may still hold a pointer to it.
    pub(crate) fn wait(&self) -> R {
        while self.signal.load(Ordering::Acquire) == 0 {
            Futex::wait(&self.signal, 0);
        }
        // SAFETY: the signal (Acquire) says the worker has published the
        // result and will not touch the job again.
        let result = unsafe { std::mem::replace(&mut *self.result.get(), JobResult::None) };
        match result {
            JobResult::Ok(r) => r,
            JobResult::Panic(p) => panic::resume_unwind(p),
            JobResult::None | JobResult::Abandoned => {
                // SAFETY: as above; an abandoned job's closure is still here.
                let f = unsafe { (*self.func.get()).take() };
                f.expect("an abandoned closure is still there")()
            }
        }
    }

    /// Runs the closure here (the pool refused the job).
    pub(crate) fn run_inline(self) -> R {
        self.func.into_inner().expect("a job's closure runs once")()
    }

    fn publish(this: &Self, result: JobResult<R>) {
        // SAFETY: the queue entry gives this thread sole access until the
        // signal below.
        unsafe { *this.result.get() = result };
        let signal = Arc::clone(&this.signal);
        // The last access to the job's memory; `signal` is our own handle.
        signal.store(1, Ordering::Release);
        Futex::wake_all(Arc::as_ptr(&signal));
    }

    unsafe fn run_job(ptr: *const (), _registry: &Registry) {
        // SAFETY: `as_job_ref`'s contract keeps the job alive until signalled.
        let this = unsafe { &*ptr.cast::<Self>() };
        // SAFETY: the queue entry gives this thread sole access to `func`.
        let f = unsafe { (*this.func.get()).take() }.expect("a job's closure runs once");
        let result = match panic::catch_unwind(AssertUnwindSafe(f)) {
            Ok(r) => JobResult::Ok(r),
            Err(p) => JobResult::Panic(p),
        };
        Self::publish(this, result);
    }

    unsafe fn abandon_job(ptr: *const (), _registry: &Registry, _why: &str) {
        // SAFETY: as in `run_job`.
        let this = unsafe { &*ptr.cast::<Self>() };
        Self::publish(this, JobResult::Abandoned);
    }
}
