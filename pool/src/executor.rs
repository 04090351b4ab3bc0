//! `ThreadPoolExecutor`: Python's `concurrent.futures.ThreadPoolExecutor`.

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::future::{self, Cell, DynCell, Future, TaskError, TaskSlot};
use crate::job::{JobRef, JobVTable};
use crate::registry::{Config, Initializer, Refused, Registry};

/// `submit` was refused: the pool is shut down, or broken.
///
/// | Python | Rust |
/// | --- | --- |
/// | `RuntimeError: cannot schedule new futures after shutdown` | [`ShutdownError::Shutdown`] |
/// | `BrokenThreadPool: A thread initializer failed, ...` | [`ShutdownError::Broken`] |
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ShutdownError {
    /// `shutdown` was called: the pool takes no new work.
    Shutdown,
    /// The pool is broken (an initializer failed); says why.
    Broken(String),
}

impl fmt::Display for ShutdownError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShutdownError::Shutdown => f.write_str("cannot schedule new futures after shutdown"),
            ShutdownError::Broken(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ShutdownError {}

impl From<ShutdownError> for TaskError {
    fn from(e: ShutdownError) -> TaskError {
        match e {
            ShutdownError::Shutdown => TaskError::Other(e.to_string()),
            ShutdownError::Broken(why) => TaskError::BrokenPool(why),
        }
    }
}

/// Python's `ThreadPoolExecutor`, on a work-stealing scheduler.
///
/// | Python | Rust |
/// | --- | --- |
/// | `pool = ThreadPoolExecutor(max_workers=5)` | `let pool = ThreadPoolExecutor::new(5);` |
/// | `ThreadPoolExecutor(thread_name_prefix="io", initializer=f)` | `ThreadPoolExecutor::builder().thread_name_prefix("io").initializer(f).build()` |
/// | `future = pool.submit(f)` | `let future = pool.submit(f)?;` |
/// | `future.result()` | `future.result()` / `future.into_result()` |
/// | `pool.map(f, items)` | [`pool.map(f, items)?`](ThreadPoolExecutor::map) |
/// | `pool.map(f, items, buffersize=n)` | [`pool.map_bounded(f, items, n)?`](ThreadPoolExecutor::map_bounded) |
/// | `pool.shutdown(wait=True, cancel_futures=False)` | `pool.shutdown(true, false)` |
/// | `with ThreadPoolExecutor() as pool:` | the pool shuts down and waits when dropped |
///
/// Workers start lazily, one per submission while no worker is idle, up to
/// `max_workers` (as Python). Tasks submitted from outside the pool go to a
/// global queue; tasks submitted from inside a task go to the worker's own
/// deque; idle workers steal, and sleep (using no CPU) when there is
/// nothing to steal.
///
/// A task that waits for another task's future from inside the pool does
/// not deadlock it: if that task is still queued, the waiting worker runs it
/// itself; otherwise the worker counts as blocked and the pool may start a
/// stand-in worker beyond `max_workers` while queued work is waiting.
///
/// ```
/// use pool::ThreadPoolExecutor;
///
/// let pool = ThreadPoolExecutor::new(5);                 // ThreadPoolExecutor(max_workers=5)
/// let future = pool.submit(|| 6 * 7).unwrap();           // future = pool.submit(f)
/// assert_eq!(future.result(), Ok(&42));                  // future.result()
/// let squares: Vec<u64> = pool.map(|x: u64| x * x, 1..=4).unwrap().map(Result::unwrap).collect();
/// assert_eq!(squares, [1, 4, 9, 16]);
/// pool.shutdown(true, false);                            // pool.shutdown()
/// assert!(pool.submit(|| 1).is_err());
/// ```
pub struct ThreadPoolExecutor {
    pub(crate) registry: Arc<Registry>,
}

/// Configures a [`ThreadPoolExecutor`] (Python's constructor arguments).
#[must_use = "a builder does nothing until `build` is called"]
pub struct Builder {
    max_workers: Option<usize>,
    thread_name_prefix: Option<String>,
    initializer: Option<Initializer>,
    daemon: bool,
}

static POOL_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Python's default: `min(32, os.cpu_count() + 4)`.
fn default_max_workers() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    32.min(cpus + 4)
}

impl Builder {
    /// The most worker threads the pool keeps (Python's `max_workers`);
    /// default `min(32, available_parallelism + 4)`. Zero is taken as one.
    pub fn max_workers(mut self, n: usize) -> Builder {
        self.max_workers = Some(n);
        self
    }

    /// Names the workers `{prefix}_{n}` (Python's `thread_name_prefix`);
    /// default `ThreadPoolExecutor-{k}_{n}`, `k` counting pools.
    pub fn thread_name_prefix(mut self, prefix: impl Into<String>) -> Builder {
        self.thread_name_prefix = Some(prefix.into());
        self
    }

    /// Runs `f` at the start of each worker thread (Python's
    /// `initializer`). If it panics, the pool is broken: queued futures fail
    /// with [`TaskError::BrokenPool`] and new submissions are refused with
    /// [`ShutdownError::Broken`].
    pub fn initializer(mut self, f: impl Fn() + Send + Sync + 'static) -> Builder {
        self.initializer = Some(Arc::new(f));
        self
    }

    /// Whether the workers are daemon threads (the process does not wait
    /// for them at exit). Default `false`, as Python's workers, which the
    /// interpreter joins at exit.
    pub fn daemon(mut self, daemon: bool) -> Builder {
        self.daemon = daemon;
        self
    }

    /// The pool. No thread starts until the first submission.
    pub fn build(self) -> ThreadPoolExecutor {
        let max_workers = self.max_workers.unwrap_or_else(default_max_workers).max(1);
        let prefix = self.thread_name_prefix.unwrap_or_else(|| {
            format!("ThreadPoolExecutor-{}", POOL_COUNTER.fetch_add(1, Ordering::Relaxed))
        });
        let config =
            Config { max_workers, prefix, initializer: self.initializer, daemon: self.daemon };
        ThreadPoolExecutor { registry: Registry::new(config) }
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("max_workers", &self.max_workers)
            .field("thread_name_prefix", &self.thread_name_prefix)
            .field("initializer", &self.initializer.is_some())
            .field("daemon", &self.daemon)
            .finish()
    }
}

impl Default for ThreadPoolExecutor {
    /// `ThreadPoolExecutor()`: the default `max_workers`.
    fn default() -> Self {
        ThreadPoolExecutor::builder().build()
    }
}

impl fmt::Debug for ThreadPoolExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPoolExecutor")
            .field("max_workers", &self.max_workers())
            .field("workers", &self.worker_count())
            .finish_non_exhaustive()
    }
}

impl ThreadPoolExecutor {
    /// `ThreadPoolExecutor(max_workers=n)`. Zero is taken as one.
    pub fn new(max_workers: usize) -> ThreadPoolExecutor {
        ThreadPoolExecutor::builder().max_workers(max_workers).build()
    }

    /// A builder for the other settings (name prefix, initializer, daemon).
    pub fn builder() -> Builder {
        Builder { max_workers: None, thread_name_prefix: None, initializer: None, daemon: false }
    }

    /// The pool's `max_workers`.
    pub fn max_workers(&self) -> usize {
        self.registry.config.max_workers
    }

    /// How many worker threads are alive now (started lazily).
    pub fn worker_count(&self) -> usize {
        self.registry.live_workers()
    }

    /// How many workers sleep now, and how many times a sleeping worker has
    /// been woken so far (for tests of the sleep protocol).
    #[doc(hidden)]
    pub fn sleep_stats(&self) -> (usize, usize) {
        self.registry.sleep_stats()
    }

    fn refusal(&self, why: Refused) -> ShutdownError {
        match why {
            Refused::Shutdown => ShutdownError::Shutdown,
            Refused::Broken => ShutdownError::Broken(
                self.registry
                    .broken_reason()
                    .unwrap_or_else(|| crate::registry::INITIALIZER_FAILED.to_string()),
            ),
        }
    }

    /// Schedules `f` and returns its future (`pool.submit(f)`).
    ///
    /// The task and its future share one allocation. A panic in `f` is the
    /// future's [`TaskError::Panicked`]; the worker lives on.
    ///
    /// # Errors
    ///
    /// [`ShutdownError::Shutdown`] after [`shutdown`](Self::shutdown),
    /// [`ShutdownError::Broken`] once an initializer failed; `f` is dropped
    /// unrun.
    pub fn submit<T, F>(&self, f: F) -> Result<Future<T>, ShutdownError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (future, cell) = future::task_cell(self.registry.id, f);
        match self.registry.push_job(TaskJob::job_ref(cell)) {
            Ok(()) => Ok(future),
            Err((job, why)) => {
                // Nobody else has the job: cancel it, which drops `f`.
                let _ = job.cancel();
                Err(self.refusal(why))
            }
        }
    }

    /// `pool.map(f, items)`: submits `f(item)` for every item now, and
    /// yields the outcomes in input order as the iterator is consumed.
    ///
    /// Dropping the iterator early cancels the calls that have not started
    /// (as Python's iterator does when closed).
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit); calls already submitted are cancelled.
    pub fn map<I, F, T>(&self, f: F, items: I) -> Result<Map<'_, I::IntoIter, F, T>, ShutdownError>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        self.map_inner(f, items.into_iter(), None)
    }

    /// `pool.map(f, items, buffersize=n)` (Python 3.14): like
    /// [`map`](Self::map), but submits at most `buffersize` calls ahead of
    /// the one the consumer waits for, pulling items lazily. Zero is taken
    /// as one.
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit), for the first `buffersize` calls; a
    /// later refusal ends the iterator with one error item.
    pub fn map_bounded<I, F, T>(
        &self,
        f: F,
        items: I,
        buffersize: usize,
    ) -> Result<Map<'_, I::IntoIter, F, T>, ShutdownError>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        self.map_inner(f, items.into_iter(), Some(buffersize.max(1)))
    }

    fn map_inner<I, F, T>(
        &self,
        f: F,
        items: I,
        ahead: Option<usize>,
    ) -> Result<Map<'_, I, F, T>, ShutdownError>
    where
        I: Iterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        let mut map = Map {
            pool: self,
            items,
            f: Arc::new(f),
            futures: VecDeque::new(),
            ahead,
            refused: None,
        };
        let first = ahead.unwrap_or(usize::MAX);
        while map.futures.len() < first && map.submit_next() {}
        match map.refused.take() {
            Some(e) => Err(e), // dropping `map` cancels what was submitted
            None => Ok(map),
        }
    }

    /// `pool.shutdown(wait, cancel_futures)`: refuses new submissions;
    /// with `cancel_futures`, cancels every future that has not started;
    /// with `wait`, returns only when every queued task has run and every
    /// worker has exited.
    ///
    /// Called from one of the pool's own workers, `wait` does not wait for
    /// that worker itself. Calling it again is harmless.
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) {
        self.registry.shutdown(wait, cancel_futures);
    }
}

impl Drop for ThreadPoolExecutor {
    /// Shuts the pool down and waits for its work (Python's `with` block).
    fn drop(&mut self) {
        self.registry.shutdown(true, false);
    }
}

/// The iterator of [`ThreadPoolExecutor::map`]: each call's outcome, in
/// input order.
pub struct Map<'a, I, F, T> {
    pool: &'a ThreadPoolExecutor,
    items: I,
    f: Arc<F>,
    futures: VecDeque<Future<T>>,
    ahead: Option<usize>,
    refused: Option<ShutdownError>,
}

impl<I, F, T> Map<'_, I, F, T>
where
    I: Iterator,
    I::Item: Send + 'static,
    F: Fn(I::Item) -> T + Send + Sync + 'static,
    T: Send + 'static,
{
    /// Submits the next item; `false` when there is none or it was refused.
    fn submit_next(&mut self) -> bool {
        if self.refused.is_some() {
            return false;
        }
        let Some(item) = self.items.next() else { return false };
        let f = Arc::clone(&self.f);
        match self.pool.submit(move || f(item)) {
            Ok(future) => {
                self.futures.push_back(future);
                true
            }
            Err(e) => {
                self.refused = Some(e);
                false
            }
        }
    }
}

impl<I, F, T> Iterator for Map<'_, I, F, T>
where
    I: Iterator,
    I::Item: Send + 'static,
    F: Fn(I::Item) -> T + Send + Sync + 'static,
    T: Send + 'static,
{
    type Item = Result<T, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ahead.is_some() {
            self.submit_next();
        }
        match self.futures.pop_front() {
            Some(future) => Some(future.into_result()),
            None => self.refused.take().map(|e| Err(e.into())),
        }
    }
}

impl<I, F, T> Drop for Map<'_, I, F, T> {
    fn drop(&mut self) {
        for future in &self.futures {
            future.cancel();
        }
    }
}

impl<I, F, T> fmt::Debug for Map<'_, I, F, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map").field("in_flight", &self.futures.len()).finish_non_exhaustive()
    }
}

/// The queue entry of a submitted task: the future's own cell.
struct TaskJob<T, F>(PhantomData<fn() -> (T, F)>);

impl<T, F> TaskJob<T, F>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    const VTABLE: JobVTable =
        JobVTable { run: Self::run, abandon: Self::abandon, cancel: Self::cancel };

    fn job_ref(cell: Arc<Cell<T, TaskSlot<F>>>) -> JobRef {
        // SAFETY: the `Arc` this reference owns keeps the cell alive until
        // one of the vtable functions takes it back, exactly once.
        unsafe { JobRef::new(Arc::into_raw(cell).cast(), &Self::VTABLE) }
    }

    /// # Safety
    ///
    /// `ptr` came from `job_ref`, and is taken back once.
    unsafe fn cell(ptr: *const ()) -> Arc<DynCell<T>> {
        // SAFETY: the caller's contract.
        let cell: Arc<Cell<T, TaskSlot<F>>> = unsafe { Arc::from_raw(ptr.cast()) };
        cell
    }

    /// Drops the closure of a task that is done without having run here.
    fn discard_if_done(cell: &Arc<DynCell<T>>) {
        if cell.core.is_done() {
            // SAFETY: this thread owns the single queue entry, and a done
            // state means any claimer has finished with the closure (or the
            // task was never claimed).
            unsafe { cell.slot.discard() };
        }
    }

    unsafe fn run(ptr: *const (), _registry: &Registry) {
        // SAFETY: `run` consumes the reference.
        let cell = unsafe { Self::cell(ptr) };
        if cell.core.claim() {
            // SAFETY: the claim made this thread the task's owner.
            unsafe { cell.slot.run(&cell) };
        } else {
            // Cancelled, or claimed by a worker that waits for it.
            Self::discard_if_done(&cell);
        }
    }

    unsafe fn abandon(ptr: *const (), _registry: &Registry, why: &str) {
        // SAFETY: `abandon` consumes the reference.
        let cell = unsafe { Self::cell(ptr) };
        future::fail_pending(&cell, TaskError::BrokenPool(why.to_string()));
        Self::discard_if_done(&cell);
    }

    unsafe fn cancel(ptr: *const ()) -> bool {
        // SAFETY: a task is always consumed by `cancel`.
        let cell = unsafe { Self::cell(ptr) };
        future::cancel(&cell);
        Self::discard_if_done(&cell);
        true
    }
}
