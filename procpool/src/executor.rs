//! `ProcessPoolExecutor`: Python's `concurrent.futures.ProcessPoolExecutor`.
//!
//! # Threads and state
//!
//! - Callers (`submit`, `map`, `shutdown`) encode the call into a finished
//!   CALL frame, then push a [`Job`] on the shared queue under a
//!   `core_sync::Mutex` and wake the manager.
//! - One *manager* thread owns the workers. It sleeps in `poll(2)` on the
//!   workers' result pipes, on the pipes it has frames to write to, and on a
//!   wake-up pipe (written at most once per manager round: `wake_pending`
//!   says a byte is already on its way). It hands queued jobs to workers,
//!   reads results and completes futures, enforces per-task deadlines, and
//!   handles worker deaths.
//! - Each worker has a keeper thread (see `child`) that forked it, does the
//!   handshake, and reaps it; the keeper wakes the manager when the worker
//!   is ready and when it has exited.
//!
//! A worker is handed up to a batch of jobs at once: two (the running call
//! and the next, as Python's call queue) while the queue is short, up to
//! [`MAX_BATCH`] while it is long; one when tasks have a timeout or can be
//! cancelled while running, so that "the running task" is always the oldest
//! one sent. It runs them in order and writes results in
//! order, so when it dies, the oldest job not answered is the one it was
//! running, and the later ones never started and go back to the queue.

use crate::child::{self, ChildHandle, Connected, SpawnRequest, SpawnResult, describe_exit};
use crate::error::Error;
use crate::identity::{self, Target};
use crate::process::encode_args;
use crate::sync::{Deadline, Flag, OneShot};
use crate::wire::{self, Frame, Hello, Role};
use pool::{Future, Promise, TaskError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Jobs handed to one worker at once, at most.
const MAX_BATCH: usize = 64;

/// Free room below which the result buffer grows before a read.
const READ_ROOM: usize = 16 * 1024;

/// How long a worker that closed its pipe may take to exit before it is
/// killed.
const EXIT_GRACE: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------
// Jobs: a CALL frame and the promise its result completes.

/// The type-erased producer side of one job.
trait Completion: Send {
    /// Claims the job before it is sent: `false` if it was cancelled.
    fn start(&self, cancellable_while_running: bool) -> bool;
    /// Whether the consumer cancelled it.
    fn is_cancelled(&self) -> bool;
    /// Cancels a job that never started (shutdown with `cancel_futures`).
    fn cancel(self: Box<Self>);
    /// Completes the future with a worker's encoded result or an error.
    fn finish(self: Box<Self>, outcome: Result<&[u8], TaskError>);
}

struct Typed<R> {
    promise: Promise<R>,
}

impl<R: DeserializeOwned + Send + 'static> Completion for Typed<R> {
    fn start(&self, cancellable_while_running: bool) -> bool {
        if cancellable_while_running {
            // The future stays pending while it runs, so that `cancel()`
            // still succeeds and the manager can kill the worker.
            !self.promise.is_cancelled()
        } else {
            self.promise.set_running_or_notify_cancel()
        }
    }

    fn is_cancelled(&self) -> bool {
        self.promise.is_cancelled()
    }

    fn cancel(self: Box<Self>) {
        self.promise.future().cancel();
    }

    fn finish(self: Box<Self>, outcome: Result<&[u8], TaskError>) {
        match outcome {
            Ok(bytes) => match postcard::from_bytes::<R>(bytes) {
                Ok(value) => self.promise.set_result(value),
                Err(e) => self.promise.set_exception(TaskError::Other(format!(
                    "the result could not be decoded as {}: {e}",
                    std::any::type_name::<R>()
                ))),
            },
            Err(error) => self.promise.set_exception(error),
        }
    }
}

/// A call waiting for, or sent to, a worker.
struct Job {
    frame: Vec<u8>,
    done: Box<dyn Completion>,
}

// ---------------------------------------------------------------------------
// Configuration

/// The settings of a [`ProcessPoolExecutor`]; see
/// [`ProcessPoolExecutor::builder`].
#[derive(Debug, Clone)]
pub struct Builder {
    max_workers: Option<usize>,
    initializer: Option<Result<(Target, Vec<u8>), Error>>,
    max_tasks_per_child: u64,
    replace_dead_workers: bool,
    task_timeout: Option<Duration>,
    cancel_running: bool,
    max_frame: u32,
    start_timeout: Duration,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder {
            max_workers: None,
            initializer: None,
            max_tasks_per_child: 0,
            replace_dead_workers: false,
            task_timeout: None,
            cancel_running: false,
            max_frame: wire::DEFAULT_MAX_FRAME,
            start_timeout: crate::process::DEFAULT_START_TIMEOUT,
        }
    }
}

impl Builder {
    /// How many worker processes (Python's `max_workers`); default: the
    /// CPUs this process may use (`std::thread::available_parallelism`,
    /// which honours CPU affinity and cgroup quotas). Zero counts as one.
    #[must_use]
    pub fn max_workers(mut self, n: usize) -> Builder {
        self.max_workers = Some(n.max(1));
        self
    }

    /// A function every worker runs once before its first task (Python's
    /// `initializer=f, initargs=(args,)`). If it panics, the pool is broken:
    /// pending futures fail and new submissions are refused.
    #[must_use]
    #[allow(clippy::needless_pass_by_value)] // by value, as Python's `initargs`
    pub fn initializer<A>(mut self, f: fn(A), args: A) -> Builder
    where
        A: Serialize + DeserializeOwned + 'static,
    {
        let init =
            Target::call(f).map_err(Error::Function).and_then(|t| Ok((t, encode_args(&args)?)));
        self.initializer = Some(init);
        self
    }

    /// Replaces each worker after it has run this many tasks (Python's
    /// `max_tasks_per_child`; a `map` chunk counts as one task). Zero: no
    /// limit (the default).
    #[must_use]
    pub fn max_tasks_per_child(mut self, n: u64) -> Builder {
        self.max_tasks_per_child = n;
        self
    }

    /// Beyond Python (as `pebble` offers): when a worker dies, fail only the
    /// task it was running (with [`TaskError::BrokenPool`] saying how it
    /// died) and start a new worker, instead of breaking the whole pool.
    #[must_use]
    pub fn replace_dead_workers(mut self, on: bool) -> Builder {
        self.replace_dead_workers = on;
        self
    }

    /// Beyond Python: a task that runs longer than `timeout` is stopped (its
    /// worker is killed and replaced) and its future fails with
    /// [`TaskError::TaskTimeout`]. Each worker then runs one task at a time.
    #[must_use]
    pub fn task_timeout(mut self, timeout: Duration) -> Builder {
        self.task_timeout = Some(timeout);
        self
    }

    /// Beyond Python: `cancel()` also stops a *running* task, by killing its
    /// worker and starting a new one. To make that possible, a running
    /// task's future stays pending (`running()` is `false`) until it
    /// finishes. Each worker then runs one task at a time.
    #[must_use]
    pub fn cancel_running(mut self, on: bool) -> Builder {
        self.cancel_running = on;
        self
    }

    /// The limit on one frame (a task's encoded arguments or result), 256
    /// MiB by default. A task over it fails, the pool goes on.
    #[must_use]
    pub fn max_frame_size(mut self, bytes: u32) -> Builder {
        self.max_frame = bytes.max(64);
        self
    }

    /// How long a new worker may take to answer the handshake (default
    /// 60 s) before it is killed and the start fails.
    #[must_use]
    pub fn start_timeout(mut self, timeout: Duration) -> Builder {
        self.start_timeout = timeout;
        self
    }

    /// Starts the workers and returns the pool once all of them answered
    /// the handshake.
    ///
    /// # Errors
    ///
    /// [`Error::Start`] when a worker cannot be started or refuses (the
    /// message says why: a missing `procpool::init()`, another build of the
    /// executable, the operating system's error); [`Error::Function`] or
    /// [`Error::Encode`] for an initializer that cannot be sent.
    pub fn build(self) -> Result<ProcessPoolExecutor, Error> {
        ProcessPoolExecutor::start(self)
    }
}

// ---------------------------------------------------------------------------
// Shared state

/// What the manager hears from keepers and callers.
struct Queue {
    pending: VecDeque<Job>,
    shutdown: bool,
    broken: Option<String>,
    pids: Vec<u32>,
}

struct Shared {
    queue: core_sync::Mutex<Queue>,
    wake_pending: AtomicU32,
    wake_fd: OwnedFd,
    /// Set when the manager has finished: every worker reaped.
    finished: Flag,
    secret: [u8; 16],
    build_id: [u8; 16],
    next_task: AtomicU64,
    config: Builder,
    workers: usize,
    init_frame: Vec<u8>,
}

impl Shared {
    /// Wakes the manager (one byte per manager round at most).
    fn wake(&self) {
        if self.wake_pending.swap(1, Ordering::AcqRel) == 0 {
            // SAFETY: writes one byte from a valid buffer to our pipe; a
            // full pipe (EAGAIN) already holds a wake-up.
            unsafe { libc::write(self.wake_fd.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
        }
    }

    fn one_task_at_a_time(&self) -> bool {
        self.config.task_timeout.is_some() || self.config.cancel_running
    }
}

// ---------------------------------------------------------------------------
// The executor

/// A pool of worker processes: Python's
/// `concurrent.futures.ProcessPoolExecutor`.
///
/// Tasks are plain functions `fn(A) -> R` (function items or non-capturing
/// closures) with `serde` arguments and results; they run in fresh
/// processes of this program, entered through [`init`](crate::init).
/// `submit` returns the same [`pool::Future`] as the thread pool, so
/// [`pool::as_completed`] and [`pool::wait`] work across both.
///
/// | Python | Rust |
/// | --- | --- |
/// | `ProcessPoolExecutor(max_workers=5)` | `ProcessPoolExecutor::builder().max_workers(5).build()?` |
/// | `..., initializer=f, initargs=(x,)` | `.initializer(f, x)` |
/// | `..., max_tasks_per_child=n` | `.max_tasks_per_child(n)` |
/// | `pool.submit(f, x)` | `pool.submit(f, x)?` (a `Future<R>`) |
/// | `pool.map(f, items, chunksize=k)` | `pool.map(f, items, k)?` (results in order) |
/// | `pool.shutdown(wait=True, cancel_futures=False)` | `pool.shutdown(true, false)` |
/// | `with ProcessPoolExecutor() as pool:` | the pool shuts down and waits when dropped |
/// | `BrokenProcessPool` | [`TaskError::BrokenPool`] / [`Error::BrokenPool`] |
///
/// As in Python, a worker that dies (a panic under `panic = "abort"`,
/// `abort()`, SIGKILL, the out-of-memory killer) breaks the pool: every
/// pending future fails with [`TaskError::BrokenPool`] naming the worker's
/// exit code or signal, later submissions are refused, and no call hangs.
/// A task that panics only fails its own future; the worker goes on.
/// Beyond Python: [`replace_dead_workers`](Builder::replace_dead_workers),
/// [`task_timeout`](Builder::task_timeout) and
/// [`cancel_running`](Builder::cancel_running). There is one start method,
/// spawn (a fresh process of this program), so there is no `mp_context`.
///
/// ```no_run
/// use procpool::ProcessPoolExecutor;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     procpool::init();
///     let pool = ProcessPoolExecutor::builder().max_workers(2).build()?;
///     let future = pool.submit(square, 7)?;
///     assert_eq!(future.into_result()?, 49);
///     let squares: Result<Vec<u64>, _> = pool.map(square, 0..10, 4)?.collect();
///     assert_eq!(squares?, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
///     pool.shutdown(true, false);
///     Ok(())
/// }
/// ```
pub struct ProcessPoolExecutor {
    shared: Arc<Shared>,
}

impl fmt::Debug for ProcessPoolExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let q = self.shared.queue.lock();
        f.debug_struct("ProcessPoolExecutor")
            .field("max_workers", &self.shared.workers)
            .field("pending", &q.pending.len())
            .field("shutdown", &q.shutdown)
            .field("broken", &q.broken)
            .finish_non_exhaustive()
    }
}

fn nonblocking(fd: &impl AsRawFd) {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl on an fd we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

fn wake_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = child::pipe()?;
    nonblocking(&r);
    nonblocking(&w);
    Ok((r, w))
}

std::thread_local! {
    /// The pool whose manager this thread is (0: none), so that a done
    /// callback that shuts its own pool down does not wait for itself.
    static MANAGER_OF: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl ProcessPoolExecutor {
    /// The settings, to change before [`Builder::build`].
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A pool with the default settings (Python's `ProcessPoolExecutor()`).
    ///
    /// # Errors
    ///
    /// As [`Builder::build`].
    pub fn new() -> Result<ProcessPoolExecutor, Error> {
        Builder::default().build()
    }

    fn start(config: Builder) -> Result<ProcessPoolExecutor, Error> {
        crate::worker::refuse_if_hook_missing();
        let workers = config.max_workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        });
        let secret = identity::random_secret()
            .map_err(|e| Error::Start(format!("no random secret: {e}")))?;
        let build_id = identity::build_id()
            .map_err(|e| Error::Start(format!("cannot identify the executable: {e}")))?;
        let mut init_frame = Vec::new();
        if let Some(init) = &config.initializer {
            let (target, args) = init.clone()?;
            wire::put_call(
                &mut init_frame,
                true,
                &target.header(&secret, true, 0),
                config.max_frame,
                |o| {
                    o.extend_from_slice(&args);
                    Ok(())
                },
            )
            .map_err(|e| {
                Error::Encode(format!("the initializer's arguments cannot be sent: {e}"))
            })?;
        }
        let (wake_r, wake_w) = wake_pipe().map_err(|e| Error::Start(format!("no pipe: {e}")))?;
        let shared = Arc::new(Shared {
            queue: core_sync::Mutex::new(Queue {
                pending: VecDeque::new(),
                shutdown: false,
                broken: None,
                pids: Vec::new(),
            }),
            wake_pending: AtomicU32::new(0),
            wake_fd: wake_w,
            finished: Flag::new(),
            secret,
            build_id,
            next_task: AtomicU64::new(1),
            config,
            workers,
            init_frame,
        });
        let mut manager =
            Manager { shared: Arc::clone(&shared), workers: Vec::new(), wake_r, closing: false };
        // Start every worker at once; then wait for all the handshakes.
        for _ in 0..workers {
            match manager.spawn_worker() {
                Ok(w) => manager.workers.push(w),
                Err(e) => {
                    manager.abandon();
                    return Err(e);
                }
            }
        }
        let deadline = Deadline::after(shared.config.start_timeout);
        for i in 0..manager.workers.len() {
            let outcome =
                manager.workers[i].starting.as_ref().and_then(|slot| slot.take_deadline(deadline));
            match outcome {
                Some(Ok(connected)) => manager.workers[i].connect(connected),
                Some(Err(message)) => {
                    manager.abandon();
                    return Err(Error::Start(message));
                }
                None => {
                    manager.abandon();
                    return Err(Error::Start(format!(
                        "a worker did not answer the handshake within {:?} (is `procpool::init()` \
                         the first statement of `main`?); the workers were killed",
                        shared.config.start_timeout
                    )));
                }
            }
        }
        manager.publish_pids();
        let spawned = std::thread::Builder::new()
            .name("procpool-manager".into())
            .spawn(move || manager.run());
        if let Err(e) = spawned {
            // The manager (moved into the failed closure) was dropped,
            // killing its workers.
            return Err(Error::Start(format!("no manager thread: {e}")));
        }
        Ok(ProcessPoolExecutor { shared })
    }

    /// The number of worker processes.
    pub fn max_workers(&self) -> usize {
        self.shared.workers
    }

    /// The pids of the live workers (diagnostics: they change as workers
    /// are replaced).
    pub fn worker_pids(&self) -> Vec<u32> {
        self.shared.queue.lock().pids.clone()
    }

    fn enqueue<R: DeserializeOwned + Send + 'static>(
        &self,
        frame: Vec<u8>,
    ) -> Result<Future<R>, Error> {
        let (future, promise) = pool::promise::<R>();
        let job = Job { frame, done: Box::new(Typed { promise }) };
        {
            let mut q = self.shared.queue.lock();
            if let Some(why) = &q.broken {
                return Err(Error::BrokenPool(why.clone()));
            }
            if q.shutdown {
                return Err(Error::Shutdown);
            }
            q.pending.push_back(job);
        }
        self.shared.wake();
        if self.shared.config.cancel_running {
            let shared = Arc::downgrade(&self.shared);
            future.add_done_callback(move |_| {
                if let Some(s) = shared.upgrade() {
                    s.wake();
                }
            });
        }
        Ok(future)
    }

    fn frame(&self, target: &Target, args: &impl Serialize) -> Result<Vec<u8>, Error> {
        let task = self.shared.next_task.fetch_add(1, Ordering::Relaxed);
        let header = target.header(&self.shared.secret, false, task);
        let mut frame = Vec::with_capacity(64);
        wire::put_call(&mut frame, false, &header, self.shared.config.max_frame, |out| {
            postcard::to_io(args, out).map(drop).map_err(|e| {
                format!(
                    "the arguments ({}) could not be encoded: {e}",
                    std::any::type_name_of_val(args)
                )
            })
        })
        .map_err(Error::Encode)?;
        Ok(frame)
    }

    /// Schedules `f(args)` on a worker and returns its future (Python's
    /// `submit(fn, *args)`).
    ///
    /// # Errors
    ///
    /// [`Error::Shutdown`] after [`shutdown`](Self::shutdown);
    /// [`Error::BrokenPool`] once the pool is broken; [`Error::Function`]
    /// when `f` cannot be called in a worker; [`Error::Encode`] when the
    /// arguments cannot be encoded or are over the frame limit.
    #[allow(clippy::needless_pass_by_value)] // by value, as Python's `*args`
    pub fn submit<A, R>(&self, f: fn(A) -> R, args: A) -> Result<Future<R>, Error>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let target = Target::call(f).map_err(Error::Function)?;
        let frame = self.frame(&target, &args)?;
        self.enqueue(frame)
    }

    /// Calls `f` on every item, in chunks of `chunksize` items that travel
    /// as one frame each, and returns the results in the order of the items
    /// (Python's `map(fn, iterable, chunksize=k)`). Zero counts as one.
    ///
    /// Every chunk is submitted before this returns; the iterator waits for
    /// each result in turn. When a call panics, every item of its chunk
    /// yields the error (Python raises it when iteration reaches the chunk).
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit). Chunks submitted before an error still
    /// run.
    pub fn map<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> Result<MapResults<R>, Error>
    where
        I: IntoIterator<Item = A>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let target = Target::chunk(f).map_err(Error::Function)?;
        let chunksize = chunksize.max(1);
        let mut chunks = VecDeque::new();
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            let chunk: Vec<A> = items.by_ref().take(chunksize).collect();
            let frame = self.frame(&target, &chunk)?;
            chunks.push_back((self.enqueue::<Vec<R>>(frame)?, chunk.len()));
        }
        Ok(MapResults { chunks, current: Vec::new().into_iter(), failed: None })
    }

    /// Stops accepting tasks (Python's `shutdown(wait, cancel_futures)`).
    ///
    /// With `cancel_futures`, tasks not yet started are cancelled; the
    /// others run to completion. With `wait`, returns once every task has
    /// finished and every worker has exited and been reaped (except when
    /// called from a done callback of this pool, which runs on the pool's
    /// own manager thread: then it cannot wait). Calling it again is
    /// harmless.
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) {
        let cancelled = {
            let mut q = self.shared.queue.lock();
            q.shutdown = true;
            if cancel_futures { std::mem::take(&mut q.pending) } else { VecDeque::new() }
        };
        for job in cancelled {
            job.done.cancel();
        }
        self.shared.wake();
        let on_manager =
            MANAGER_OF.with(std::cell::Cell::get) == Arc::as_ptr(&self.shared) as usize;
        if wait && !on_manager {
            self.shared.finished.wait();
        }
    }
}

impl Drop for ProcessPoolExecutor {
    /// Shuts the pool down and waits (Python's `with` block exit).
    fn drop(&mut self) {
        self.shutdown(true, false);
    }
}

/// The results of [`ProcessPoolExecutor::map`], in the order of the items.
pub struct MapResults<R> {
    chunks: VecDeque<(Future<Vec<R>>, usize)>,
    current: std::vec::IntoIter<R>,
    failed: Option<(TaskError, usize)>,
}

impl<R> fmt::Debug for MapResults<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapResults")
            .field("chunks_left", &self.chunks.len())
            .finish_non_exhaustive()
    }
}

/// A copy of a task error for the other items of a failed chunk.
fn copy_error(e: &TaskError) -> TaskError {
    match e {
        TaskError::Panicked(_) => {
            TaskError::Panicked(Box::new(e.panic_message().unwrap_or("Box<dyn Any>").to_owned()))
        }
        TaskError::Cancelled => TaskError::Cancelled,
        TaskError::BrokenPool(m) => TaskError::BrokenPool(m.clone()),
        TaskError::TaskTimeout => TaskError::TaskTimeout,
        other => TaskError::Other(other.to_string()),
    }
}

impl<R> Iterator for MapResults<R> {
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(v) = self.current.next() {
                return Some(Ok(v));
            }
            if let Some((error, left)) = &mut self.failed {
                if *left > 0 {
                    *left -= 1;
                    return Some(Err(copy_error(error)));
                }
                self.failed = None;
            }
            let (future, len) = self.chunks.pop_front()?;
            match future.into_result() {
                Ok(values) if values.len() == len => self.current = values.into_iter(),
                Ok(values) => {
                    return Some(Err(TaskError::Other(format!(
                        "a chunk of {len} calls returned {} results",
                        values.len()
                    ))));
                }
                Err(error) => {
                    let first = copy_error(&error);
                    self.failed = Some((error, len - 1));
                    return Some(Err(first));
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.current.len()
            + self.failed.as_ref().map_or(0, |f| f.1)
            + self.chunks.iter().map(|c| c.1).sum::<usize>();
        (n, Some(n))
    }
}

// ---------------------------------------------------------------------------
// The manager

/// Why the manager killed a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kill {
    /// Its running task passed its deadline.
    Timeout,
    /// Its running task was cancelled.
    Cancelled,
    /// It broke the protocol.
    Protocol(String),
    /// The pool is broken or shutting down.
    Stop,
}

struct Worker {
    handle: Arc<ChildHandle>,
    /// The handshake's outcome, while starting.
    starting: Option<Arc<OneShot<SpawnResult>>>,
    start_deadline: Deadline,
    to_child: Option<File>,
    from_child: Option<File>,
    inbuf: Vec<u8>,
    filled: usize,
    /// Jobs sent (or being sent), oldest first; `sent` of them fully
    /// written, `written` bytes of the next.
    in_flight: VecDeque<(Job, Deadline)>,
    sent: usize,
    written: usize,
    assigned: u64,
    eof: bool,
    eof_deadline: Deadline,
    kill: Option<Kill>,
    init_failed: Option<String>,
}

impl Worker {
    fn connect(&mut self, c: Connected) {
        nonblocking(&c.to_child);
        nonblocking(&c.from_child);
        self.filled = c.leftover.len();
        self.inbuf = c.leftover;
        self.to_child = Some(c.to_child);
        self.from_child = Some(c.from_child);
        self.starting = None;
    }

    fn pid_text(&self) -> String {
        self.handle.pid().map_or_else(|| "?".to_owned(), |p| p.to_string())
    }

    fn kill(&mut self, why: Kill) {
        if self.kill.is_none() {
            self.kill = Some(why);
        }
        self.handle.signal(libc::SIGKILL);
    }
}

struct Manager {
    shared: Arc<Shared>,
    workers: Vec<Worker>,
    wake_r: OwnedFd,
    /// Shutting down: workers' pipes closed once idle.
    closing: bool,
}

impl Drop for Manager {
    fn drop(&mut self) {
        // Whatever happened (a normal end, a failed start, a bug), no worker
        // outlives the manager unreaped, and no future is left hanging.
        self.abandon();
    }
}

impl Manager {
    fn spawn_worker(&self) -> Result<Worker, Error> {
        let hello = Hello {
            build_id: self.shared.build_id,
            secret: self.shared.secret,
            max_frame: self.shared.config.max_frame,
            role: Role::Worker,
            max_tasks: self.shared.config.max_tasks_per_child,
        };
        let weak = Arc::downgrade(&self.shared);
        let notify: Box<dyn Fn() + Send + Sync> = Box::new(move || {
            if let Some(s) = weak.upgrade() {
                s.wake();
            }
        });
        let (handle, slot) = child::spawn(SpawnRequest {
            hello,
            after_ready: self.shared.init_frame.clone(),
            notify: Some(notify),
        })
        .map_err(|e| Error::Start(format!("no thread to keep a worker: {e}")))?;
        let weak = Arc::downgrade(&self.shared);
        handle.on_exit(Box::new(move || {
            if let Some(s) = weak.upgrade() {
                s.wake();
            }
        }));
        Ok(Worker {
            handle,
            starting: Some(slot),
            start_deadline: Deadline::after(self.shared.config.start_timeout),
            to_child: None,
            from_child: None,
            inbuf: Vec::new(),
            filled: 0,
            in_flight: VecDeque::new(),
            sent: 0,
            written: 0,
            assigned: 0,
            eof: false,
            eof_deadline: Deadline::NEVER,
            kill: None,
            init_failed: None,
        })
    }

    fn publish_pids(&self) {
        let pids = self
            .workers
            .iter()
            .filter(|w| w.starting.is_none())
            .filter_map(|w| w.handle.pid())
            .collect();
        self.shared.queue.lock().pids = pids;
    }

    /// Kills every worker, waits for each to be reaped, and fails every job.
    fn abandon(&mut self) {
        for w in &mut self.workers {
            w.kill(Kill::Stop);
        }
        let error = self
            .shared
            .queue
            .lock()
            .broken
            .clone()
            .unwrap_or_else(|| "the pool stopped".to_owned());
        for mut w in std::mem::take(&mut self.workers) {
            w.handle.wait_deadline(Deadline::NEVER);
            for (job, _) in w.in_flight.drain(..) {
                job.done.finish(Err(TaskError::BrokenPool(error.clone())));
            }
        }
        let pending = std::mem::take(&mut self.shared.queue.lock().pending);
        for job in pending {
            job.done.finish(Err(TaskError::BrokenPool(error.clone())));
        }
        self.shared.queue.lock().pids.clear();
    }

    fn run(mut self) {
        child::block_sigpipe();
        MANAGER_OF.with(|m| m.set(Arc::as_ptr(&self.shared) as usize));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_loop()));
        if let Err(payload) = outcome {
            let why = format!(
                "the pool's manager thread panicked: {}",
                identity::panic_message(&*payload)
            );
            self.break_pool(&why);
        }
        self.abandon();
        self.shared.finished.set();
    }

    /// Marks the pool broken: refuses new work, fails what is pending and
    /// running, and stops every worker.
    fn break_pool(&mut self, why: &str) {
        let pending = {
            let mut q = self.shared.queue.lock();
            if q.broken.is_none() {
                q.broken = Some(why.to_owned());
            }
            std::mem::take(&mut q.pending)
        };
        let why = self.shared.queue.lock().broken.clone().unwrap_or_default();
        for job in pending {
            job.done.finish(Err(TaskError::BrokenPool(why.clone())));
        }
        for w in &mut self.workers {
            for (job, _) in w.in_flight.drain(..) {
                job.done.finish(Err(TaskError::BrokenPool(why.clone())));
            }
            w.sent = 0;
            w.written = 0;
            w.kill(Kill::Stop);
        }
    }

    fn is_broken(&self) -> bool {
        self.shared.queue.lock().broken.is_some()
    }

    fn run_loop(&mut self) {
        let mut pollfds: Vec<libc::pollfd> = Vec::new();
        // Which worker and which pipe each poll entry is.
        let mut owners: Vec<(usize, bool)> = Vec::new();
        loop {
            self.shared.wake_pending.store(0, Ordering::Release);
            self.check_starting();
            self.check_deadlines();
            self.reap_dead();
            if self.is_broken() {
                if self.workers.is_empty() {
                    return;
                }
            } else {
                self.dispatch();
                if self.maybe_close() {
                    return;
                }
            }
            self.flush_all();

            pollfds.clear();
            owners.clear();
            pollfds.push(libc::pollfd {
                fd: self.wake_r.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
            owners.push((usize::MAX, false));
            for (i, w) in self.workers.iter().enumerate() {
                if let (Some(r), false) = (&w.from_child, w.eof) {
                    pollfds.push(libc::pollfd {
                        fd: r.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    });
                    owners.push((i, false));
                }
                if let (Some(t), true) = (&w.to_child, w.sent < w.in_flight.len()) {
                    pollfds.push(libc::pollfd {
                        fd: t.as_raw_fd(),
                        events: libc::POLLOUT,
                        revents: 0,
                    });
                    owners.push((i, true));
                }
            }
            let timeout = self.poll_timeout();
            // SAFETY: `pollfds` is a valid array of `len` entries.
            let n =
                unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, timeout) };
            if n <= 0 {
                continue;
            }
            for (p, &(i, write)) in pollfds.iter().zip(&owners) {
                if p.revents == 0 {
                    continue;
                }
                if i == usize::MAX {
                    // At most a byte per round is written (`wake_pending`).
                    let mut sink = [0u8; 64];
                    // SAFETY: reads into a valid buffer from our pipe.
                    unsafe {
                        libc::read(self.wake_r.as_raw_fd(), sink.as_mut_ptr().cast(), sink.len())
                    };
                } else if write {
                    self.flush(i);
                } else {
                    self.read(i);
                }
            }
        }
    }

    /// Milliseconds until the next deadline, for `poll` (-1: none).
    fn poll_timeout(&self) -> i32 {
        let mut next: Option<Duration> = None;
        let mut consider = |d: Deadline| {
            if let Some(left) = d.remaining() {
                next = Some(next.map_or(left, |n| n.min(left)));
            }
        };
        for w in &self.workers {
            if w.starting.is_some() {
                consider(w.start_deadline);
            }
            if let Some((_, d)) = w.in_flight.front() {
                consider(*d);
            }
            if w.eof {
                consider(w.eof_deadline);
            }
            if w.kill.is_some() {
                // A killed worker is reaped promptly; look again soon in
                // case its exit callback raced with this round.
                consider(Deadline::after(Duration::from_millis(50)));
            }
        }
        match next {
            None => -1,
            Some(d) => i32::try_from(d.as_millis().saturating_add(1)).unwrap_or(i32::MAX),
        }
    }

    /// Connects workers whose handshake finished; a failed replacement
    /// breaks the pool.
    fn check_starting(&mut self) {
        let mut failed = None;
        let mut changed = false;
        for w in &mut self.workers {
            let Some(slot) = &w.starting else { continue };
            match slot.take_deadline(Deadline::after(Duration::ZERO)) {
                Some(Ok(c)) => {
                    w.connect(c);
                    changed = true;
                }
                Some(Err(message)) => {
                    w.starting = None;
                    w.eof = true;
                    failed = Some(format!("a replacement worker could not start: {message}"));
                }
                None if w.start_deadline.passed() => {
                    w.kill(Kill::Stop);
                    failed = Some(
                        "a replacement worker did not answer the handshake in time".to_owned(),
                    );
                }
                None => {}
            }
        }
        if changed {
            self.publish_pids();
        }
        if let Some(why) = failed {
            self.break_pool(&why);
        }
    }

    /// Kills workers whose running task is overdue or was cancelled, and
    /// workers that closed their pipe but do not exit.
    fn check_deadlines(&mut self) {
        let cancel_running = self.shared.config.cancel_running;
        for w in &mut self.workers {
            if w.kill.is_some() {
                continue;
            }
            if let Some((job, deadline)) = w.in_flight.front() {
                if deadline.passed() {
                    w.kill(Kill::Timeout);
                } else if cancel_running && job.done.is_cancelled() {
                    w.kill(Kill::Cancelled);
                }
            }
            if w.eof && w.eof_deadline.passed() {
                w.kill(Kill::Protocol("it closed its pipe but did not exit".to_owned()));
            }
        }
    }

    /// Hands queued jobs to workers with room for them.
    fn dispatch(&mut self) {
        let max_tasks = self.shared.config.max_tasks_per_child;
        let single = self.shared.one_task_at_a_time();
        let timeout = self.shared.config.task_timeout;
        let live = self
            .workers
            .iter()
            .filter(|w| w.to_child.is_some() && w.kill.is_none() && !w.eof)
            .count();
        if live == 0 {
            return;
        }
        let mut q = self.shared.queue.lock();
        if q.pending.is_empty() {
            return;
        }
        // A job handed to a worker is marked running and can no longer be
        // cancelled, so a short queue is handed out as Python does (the
        // running call and one more per worker); a long one in batches,
        // which the worker reads in one go.
        let batch = if single { 1 } else { (q.pending.len() / (4 * live)).clamp(2, MAX_BATCH) };
        // Level by level: every idle worker gets a job before any worker
        // gets a second one.
        for depth in 0..batch {
            for w in &mut self.workers {
                if w.to_child.is_none() || w.kill.is_some() || w.eof || w.init_failed.is_some() {
                    continue;
                }
                if w.in_flight.len() > depth || (max_tasks != 0 && w.assigned >= max_tasks) {
                    continue;
                }
                // Skip jobs cancelled while they were queued.
                let job = loop {
                    let Some(job) = q.pending.pop_front() else { return };
                    if job.done.start(self.shared.config.cancel_running) {
                        break job;
                    }
                };
                let deadline = timeout.map_or(Deadline::NEVER, Deadline::after);
                w.in_flight.push_back((job, deadline));
                w.assigned += 1;
            }
        }
    }

    /// When shutting down and idle, closes the workers' pipes; returns
    /// whether the manager is done (every worker gone).
    fn maybe_close(&mut self) -> bool {
        let (shutdown, pending) = {
            let q = self.shared.queue.lock();
            (q.shutdown, q.pending.len())
        };
        if !shutdown || pending > 0 {
            return false;
        }
        if self.workers.iter().any(|w| !w.in_flight.is_empty()) {
            return false;
        }
        if !self.closing {
            self.closing = true;
        }
        for w in &mut self.workers {
            if w.starting.is_some() {
                w.kill(Kill::Stop);
            }
            // End of input: the worker finishes and exits 0.
            w.to_child = None;
        }
        self.workers.is_empty()
    }

    fn flush_all(&mut self) {
        for i in 0..self.workers.len() {
            if self.workers[i].sent < self.workers[i].in_flight.len() {
                self.flush(i);
            }
        }
    }

    /// Writes the frames not yet sent to worker `i`, as far as its pipe
    /// takes them.
    fn flush(&mut self, i: usize) {
        let w = &mut self.workers[i];
        let Some(to_child) = &w.to_child else { return };
        while w.sent < w.in_flight.len() {
            let mut iov: Vec<libc::iovec> = Vec::with_capacity(16);
            for (k, (job, _)) in w.in_flight.iter().enumerate().skip(w.sent).take(64) {
                let skip = if k == w.sent { w.written } else { 0 };
                iov.push(libc::iovec {
                    iov_base: job.frame[skip..].as_ptr() as *mut libc::c_void,
                    iov_len: job.frame.len() - skip,
                });
            }
            // SAFETY: every iovec points into a frame owned by `in_flight`,
            // which is not changed during the call.
            let n = unsafe {
                libc::writev(
                    to_child.as_raw_fd(),
                    iov.as_ptr(),
                    libc::c_int::try_from(iov.len()).unwrap_or(64),
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if e.kind() != io::ErrorKind::WouldBlock {
                    // The worker is gone (EPIPE); its death is handled
                    // when it is reaped.
                    w.to_child = None;
                }
                return;
            }
            let mut n = n.cast_unsigned();
            while n > 0 {
                let left = w.in_flight[w.sent].0.frame.len() - w.written;
                if n >= left {
                    n -= left;
                    w.sent += 1;
                    w.written = 0;
                } else {
                    w.written += n;
                    n = 0;
                }
            }
        }
    }

    /// Reads what worker `i` sent and handles every whole frame.
    fn read(&mut self, i: usize) {
        let max = self.shared.config.max_frame;
        let w = &mut self.workers[i];
        let Some(mut from_child) = w.from_child.take() else { return };
        let mut closed = false;
        loop {
            // `inbuf` stays initialised; `filled` bytes of it are received.
            if w.inbuf.len() - w.filled < READ_ROOM {
                let grown = (w.filled + 4 * READ_ROOM).max(2 * w.inbuf.len());
                w.inbuf.resize(grown, 0);
            }
            let room = w.inbuf.len() - w.filled;
            match from_child.read(&mut w.inbuf[w.filled..]) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => {
                    w.filled += n;
                    // Hand whole frames over as they arrive, so the buffer
                    // holds at most one partial frame plus one read.
                    if w.filled >= 1 << 20 {
                        Self::handle_frames(w, max);
                    }
                    if n < room {
                        break; // the pipe is empty for now
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        Self::handle_frames(w, max);
        w.from_child = Some(from_child);
        if closed && !w.eof {
            w.eof = true;
            w.eof_deadline = Deadline::after(EXIT_GRACE);
            if w.filled > 0 && w.kill.is_none() {
                w.kill(Kill::Protocol(format!(
                    "its output ended inside a frame ({} bytes)",
                    w.filled
                )));
            }
        }
    }

    /// Completes the futures of the whole frames in worker `w`'s buffer.
    fn handle_frames(w: &mut Worker, max: u32) {
        let mut at = 0;
        loop {
            let (frame, used) = match wire::decode(&w.inbuf[at..w.filled], max) {
                Ok(Some(x)) => x,
                Ok(None) => break,
                Err(e) => {
                    w.kill(Kill::Protocol(format!("it sent a bad frame: {e}")));
                    w.filled = 0;
                    return;
                }
            };
            at += used;
            let task = match &frame {
                Frame::Ok { task, .. } | Frame::Panic { task, .. } | Frame::Failed { task, .. } => {
                    Some(*task)
                }
                _ => None,
            };
            if let Frame::InitFailed(message) = &frame {
                w.init_failed = Some(message.to_string());
                continue;
            }
            let Some(task) = task else {
                w.kill(Kill::Protocol(format!("it sent an unexpected frame: {frame:?}")));
                w.filled = 0;
                return;
            };
            let expected = w.in_flight.front().map(|(job, _)| frame_task(&job.frame));
            if expected != Some(task) || w.sent == 0 {
                w.kill(Kill::Protocol(format!(
                    "it answered task {task}, which it was not running"
                )));
                w.filled = 0;
                return;
            }
            let Some((job, _)) = w.in_flight.pop_front() else { break };
            w.sent -= 1;
            match frame {
                Frame::Ok { payload, .. } => job.done.finish(Ok(payload)),
                Frame::Panic { message, .. } => {
                    job.done.finish(Err(TaskError::Panicked(Box::new(message.into_owned()))));
                }
                Frame::Failed { message, .. } => {
                    job.done.finish(Err(TaskError::Other(message.into_owned())));
                }
                _ => {}
            }
        }
        w.inbuf.copy_within(at..w.filled, 0);
        w.filled -= at;
    }

    /// Handles workers that have exited: reads what they left, then
    /// retires, replaces, or breaks the pool.
    fn reap_dead(&mut self) {
        let mut i = 0;
        while i < self.workers.len() {
            if !self.workers[i].handle.is_done() || self.workers[i].starting.is_some() {
                i += 1;
                continue;
            }
            // The child is gone: its pipe holds everything it wrote.
            if !self.workers[i].eof {
                self.read(i);
            }
            let w = self.workers.swap_remove(i);
            self.publish_pids();
            self.on_exit(w);
        }
    }

    fn on_exit(&mut self, mut w: Worker) {
        let code = w.handle.exitcode().unwrap_or(child::STATUS_LOST);
        let how = describe_exit(code);
        let pid = w.pid_text();
        // Jobs sent but never started go back to the front of the queue.
        let running = w.in_flight.pop_front();
        let unstarted: Vec<Job> = w.in_flight.drain(..).map(|(job, _)| job).collect();
        if !unstarted.is_empty() {
            let mut q = self.shared.queue.lock();
            for job in unstarted.into_iter().rev() {
                q.pending.push_front(job);
            }
        }
        let broken = self.is_broken();
        let replace = |m: &mut Manager| {
            if !broken && !m.closing {
                match m.spawn_worker() {
                    Ok(new) => m.workers.push(new),
                    Err(e) => m.break_pool(&e.to_string()),
                }
            }
        };
        match (w.kill.take(), running) {
            (Some(Kill::Stop), running) => {
                if let Some((job, _)) = running {
                    let why = self
                        .shared
                        .queue
                        .lock()
                        .broken
                        .clone()
                        .unwrap_or_else(|| "the pool stopped".into());
                    job.done.finish(Err(TaskError::BrokenPool(why)));
                }
            }
            (Some(Kill::Timeout), running) => {
                if let Some((job, _)) = running {
                    job.done.finish(Err(TaskError::TaskTimeout));
                }
                replace(self);
            }
            (Some(Kill::Cancelled), running) => {
                // The future is already cancelled; completing it does nothing.
                drop(running);
                replace(self);
            }
            (kill, running) => {
                if let Some(message) = w.init_failed.take() {
                    if let Some((job, _)) = running {
                        self.shared.queue.lock().pending.push_front(job);
                    }
                    self.break_pool(&format!("a worker's initializer failed: {message}"));
                    return;
                }
                let protocol = match kill {
                    Some(Kill::Protocol(m)) => Some(m),
                    _ => None,
                };
                let expected = protocol.is_none() && code == 0 && running.is_none();
                let retiring = expected
                    && self.shared.config.max_tasks_per_child != 0
                    && w.assigned >= self.shared.config.max_tasks_per_child;
                if expected && (retiring || self.closing || broken) {
                    if retiring {
                        replace(self);
                    }
                    return;
                }
                let why = match protocol {
                    Some(m) => format!("a worker process (pid {pid}) failed: {m}; it {how}"),
                    None if running.is_some() => {
                        format!("a worker process (pid {pid}) {how} while running a task")
                    }
                    None => format!("a worker process (pid {pid}) {how}"),
                };
                if self.shared.config.replace_dead_workers && !broken {
                    if let Some((job, _)) = running {
                        job.done.finish(Err(TaskError::BrokenPool(format!(
                            "{why}; a new worker replaced it"
                        ))));
                    }
                    replace(self);
                } else {
                    // Broken first, so that whoever sees this future fail
                    // also sees the pool refuse new work.
                    let why = format!("{why}; the pool is not usable anymore");
                    self.break_pool(&why);
                    if let Some((job, _)) = running {
                        job.done.finish(Err(TaskError::BrokenPool(why)));
                    }
                }
            }
        }
    }
}

/// The task id of an encoded CALL frame.
fn frame_task(frame: &[u8]) -> u64 {
    frame
        .get(wire::CALL_TASK_AT..wire::CALL_TASK_AT + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}
