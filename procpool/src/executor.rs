//! `ProcessPoolExecutor`: Python's `concurrent.futures.ProcessPoolExecutor`.
//!
//! # Threads and state
//!
//! - Callers (`submit`, `map`, `shutdown`) encode the call into a finished
//!   CALL frame. Under the queue's `core_sync::Mutex`, when nothing is
//!   queued and a worker is idle, the caller writes the frame straight into
//!   that worker's pipe (its [`Lane`], under the lane's lock): the manager
//!   is not on the way. Otherwise it pushes a [`Job`] on the queue and
//!   wakes the manager.
//! - Each connected worker has a *reader* thread ([`Reader`]) blocked in
//!   `read(2)` on the worker's result pipe: it completes each future as its
//!   result arrives. So a round trip on an idle pool is three hops: caller
//!   -> worker (pipe), worker -> reader (pipe), reader -> caller (the
//!   future's futex), with no manager round in between.
//! - One *manager* thread owns the workers. It sleeps in `poll(2)` on a
//!   wake-up pipe (written at most once per manager round: `wake_pending`
//!   says a byte is already on its way) and on the pipes it has frames to
//!   write to. It hands queued jobs to workers, enforces per-task
//!   deadlines, and handles worker deaths. Readers wake it when a finished
//!   job frees room while jobs are queued (`queued`) or the pool shuts down
//!   (`closing`), and when their worker's output ends.
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
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
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
// Lanes: what a worker shares with the submitting threads

/// A worker's pipe to its child and the jobs sent on it, shared by the
/// manager and the threads that submit.
///
/// Lock order: the queue's lock, then a lane's. Nobody takes the queue's
/// lock while holding a lane's, and no job is completed or cancelled under a
/// lane's lock (a done callback may submit).
struct Lane {
    state: core_sync::Mutex<LaneState>,
    /// The worker's child, to kill when it closes its end of the pipe.
    handle: Arc<ChildHandle>,
    /// The reader is completing futures it took from `in_flight` (set
    /// under the lock as it takes them): their done callbacks may run long,
    /// and the pool is not finished before they have run.
    completing: AtomicBool,
}

struct LaneState {
    /// Takes new jobs: connected, and neither killed, closed nor ended.
    open: bool,
    to_child: Option<File>,
    /// Jobs sent (or being sent), oldest first; `sent` of them fully
    /// written, `written` bytes of the next.
    in_flight: VecDeque<(Job, Deadline)>,
    sent: usize,
    written: usize,
    /// Jobs handed to this worker in all.
    assigned: u64,
    /// Why the child was killed (the first reason given).
    kill: Option<Kill>,
    /// The message of an `INIT_FAILED` frame.
    init_failed: Option<String>,
    /// The reader saw the end of the child's output.
    eof: bool,
    /// A reader thread runs (it may still complete jobs).
    reading: bool,
}

impl Lane {
    fn new(handle: Arc<ChildHandle>) -> Lane {
        Lane {
            handle,
            completing: AtomicBool::new(false),
            state: core_sync::Mutex::new(LaneState {
                open: false,
                to_child: None,
                in_flight: VecDeque::new(),
                sent: 0,
                written: 0,
                assigned: 0,
                kill: None,
                init_failed: None,
                eof: false,
                reading: false,
            }),
        }
    }
}

impl LaneState {
    /// Whether a job may be sent: open, room below `depth` jobs in flight,
    /// and under the per-child task limit (0: none).
    fn has_room(&self, depth: usize, max_tasks: u64) -> bool {
        self.open
            && self.to_child.is_some()
            && self.in_flight.len() <= depth
            && (max_tasks == 0 || self.assigned < max_tasks)
    }

    /// Whether frames wait to be written.
    fn unsent(&self) -> bool {
        self.to_child.is_some() && self.sent < self.in_flight.len()
    }

    /// Writes the frames not yet sent, as far as the (non-blocking) pipe
    /// takes them. Returns `false` when the child has closed its end
    /// (`EPIPE`): the pipe is dropped and the lane closed.
    fn write_out(&mut self) -> bool {
        let Some(to_child) = &self.to_child else { return true };
        while self.sent < self.in_flight.len() {
            let n = if self.sent + 1 == self.in_flight.len() {
                // One frame (the common case of a single call): no iovec.
                let frame = &self.in_flight[self.sent].0.frame[self.written..];
                // SAFETY: writes from a valid buffer owned by `in_flight`.
                unsafe { libc::write(to_child.as_raw_fd(), frame.as_ptr().cast(), frame.len()) }
            } else {
                let mut iov: Vec<libc::iovec> = Vec::with_capacity(16);
                for (k, (job, _)) in self.in_flight.iter().enumerate().skip(self.sent).take(64) {
                    let skip = if k == self.sent { self.written } else { 0 };
                    iov.push(libc::iovec {
                        iov_base: job.frame[skip..].as_ptr() as *mut libc::c_void,
                        iov_len: job.frame.len() - skip,
                    });
                }
                // SAFETY: every iovec points into a frame owned by
                // `in_flight`, which is not changed during the call.
                unsafe {
                    libc::writev(
                        to_child.as_raw_fd(),
                        iov.as_ptr(),
                        libc::c_int::try_from(iov.len()).unwrap_or(64),
                    )
                }
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if e.kind() != io::ErrorKind::WouldBlock {
                    self.to_child = None;
                    self.open = false;
                    return false;
                }
                return true;
            }
            let mut n = n.cast_unsigned();
            while n > 0 {
                let left = self.in_flight[self.sent].0.frame.len() - self.written;
                if n >= left {
                    n -= left;
                    self.sent += 1;
                    self.written = 0;
                } else {
                    self.written += n;
                    n = 0;
                }
            }
        }
        true
    }
}

impl Lane {
    /// Writes what `l` (this lane's locked state) has not sent yet. A child
    /// that closed its end of the pipe is killed: dying or not, it takes no
    /// more calls, and its jobs not delivered go to other workers when it is
    /// reaped.
    fn flush(&self, l: &mut LaneState) {
        if !l.write_out() {
            if l.kill.is_none() {
                l.kill = Some(Kill::Protocol("it closed its end of the call pipe".to_owned()));
            }
            self.handle.signal(libc::SIGKILL);
        }
    }
}

/// Whether this process ignores SIGPIPE (Rust's runtime and Python both
/// set that up before `main`), so that a thread that is not one of this
/// crate's may write to a child's pipe: a dead child is then an `EPIPE`
/// error, not a signal that ends the program.
fn sigpipe_ignored() -> bool {
    // SAFETY: an all-zero `sigaction` is a valid value to be filled in.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only reads the current one into `old`.
    let r = unsafe { libc::sigaction(libc::SIGPIPE, std::ptr::null(), &raw mut old) };
    r == 0 && old.sa_sigaction == libc::SIG_IGN
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
    /// The lanes of the connected workers, for direct sends.
    lanes: Vec<Arc<Lane>>,
}

struct Shared {
    queue: core_sync::Mutex<Queue>,
    wake_pending: AtomicU32,
    wake_fd: OwnedFd,
    /// `queue.pending.len()`, stored under the queue's lock: readers wake
    /// the manager when a finished job frees room while jobs are queued.
    queued: AtomicUsize,
    /// Set by `shutdown`: readers wake the manager as jobs finish.
    closing: AtomicBool,
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

    /// Hands `job` straight to an idle worker by writing its frame into the
    /// worker's pipe, with the queue locked (and empty, so no queued job is
    /// overtaken). Returns whether the manager must be woken (a deadline to
    /// watch, or a frame the pipe did not take whole), or gives the job back
    /// when no worker is idle.
    fn send_direct(&self, q: &Queue, job: Job) -> Result<bool, Job> {
        if q.lanes.is_empty() || !sigpipe_ignored() {
            return Err(job);
        }
        let max_tasks = self.config.max_tasks_per_child;
        let mut job = job;
        for lane in &q.lanes {
            let mut l = lane.state.lock();
            if !l.has_room(0, max_tasks) {
                continue;
            }
            if !job.done.start(self.config.cancel_running) {
                // Cancelled already (it cannot be: its future was not handed
                // out yet); nothing to run.
                return Ok(false);
            }
            let deadline = self.config.task_timeout.map_or(Deadline::NEVER, Deadline::after);
            l.in_flight.push_back((job, deadline));
            l.assigned += 1;
            lane.flush(&mut l);
            if l.to_child.is_none() && l.sent == 0 && l.written == 0 {
                // The child is gone and got none of it: try another.
                let Some((back, _)) = l.in_flight.pop_back() else { return Ok(true) };
                l.assigned -= 1;
                job = back;
                continue;
            }
            return Ok(deadline != Deadline::NEVER || l.sent < l.in_flight.len());
        }
        Err(job)
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
                lanes: Vec::new(),
            }),
            wake_pending: AtomicU32::new(0),
            wake_fd: wake_w,
            queued: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
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
                Some(Ok(connected)) => {
                    if let Err(message) = manager.workers[i].connect(connected, &shared) {
                        manager.abandon();
                        return Err(Error::Start(message));
                    }
                }
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
        let wake = {
            let mut q = self.shared.queue.lock();
            if let Some(why) = &q.broken {
                return Err(Error::BrokenPool(why.clone()));
            }
            if q.shutdown {
                return Err(Error::Shutdown);
            }
            let direct =
                if q.pending.is_empty() { self.shared.send_direct(&q, job) } else { Err(job) };
            match direct {
                Ok(wake) => wake,
                Err(job) => {
                    q.pending.push_back(job);
                    self.shared.queued.store(q.pending.len(), Ordering::Relaxed);
                    true
                }
            }
        };
        if wake {
            self.shared.wake();
        }
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
            self.shared.closing.store(true, Ordering::Relaxed);
            if cancel_futures {
                self.shared.queued.store(0, Ordering::Relaxed);
                std::mem::take(&mut q.pending)
            } else {
                VecDeque::new()
            }
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

/// Why a worker was killed.
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

/// Kills a worker's child for `why` (the first reason given is kept), and
/// closes its lane. Called without the lane's lock.
fn kill(lane: &Lane, handle: &ChildHandle, why: Kill) {
    {
        let mut l = lane.state.lock();
        if l.kill.is_none() {
            l.kill = Some(why);
        }
        l.open = false;
    }
    handle.signal(libc::SIGKILL);
}

struct Worker {
    handle: Arc<ChildHandle>,
    /// The handshake's outcome, while starting.
    starting: Option<Arc<OneShot<SpawnResult>>>,
    start_deadline: Deadline,
    /// The pipes to and from the child, the jobs sent, and what the
    /// worker's reader saw.
    lane: Arc<Lane>,
    /// The reader saw the end of the child's output (at this deadline the
    /// child, if still alive, is killed).
    eof: bool,
    eof_deadline: Deadline,
    /// Reaped but its reader not finished: how long to wait for it.
    reader_deadline: Deadline,
}

impl Worker {
    /// Connects a worker whose handshake passed: opens its lane and starts
    /// the thread that reads its results.
    fn connect(&mut self, c: Connected, shared: &Arc<Shared>) -> Result<(), String> {
        nonblocking(&c.to_child);
        {
            let mut l = self.lane.state.lock();
            l.to_child = Some(c.to_child);
            l.open = true;
            l.reading = true;
        }
        self.starting = None;
        let reader = Reader {
            from_child: c.from_child,
            buf: c.leftover,
            lane: Arc::clone(&self.lane),
            handle: Arc::clone(&self.handle),
            shared: Arc::downgrade(shared),
            pool: Arc::as_ptr(shared) as usize,
            max: shared.config.max_frame,
        };
        let spawned =
            std::thread::Builder::new().name("procpool-reader".into()).spawn(move || reader.run());
        if let Err(e) = spawned {
            self.lane.state.lock().reading = false;
            self.kill(Kill::Stop);
            return Err(format!("no thread to read a worker's results: {e}"));
        }
        Ok(())
    }

    /// Takes every job sent to this worker and closes its lane.
    fn take_in_flight(&self) -> VecDeque<(Job, Deadline)> {
        let mut l = self.lane.state.lock();
        l.open = false;
        l.sent = 0;
        l.written = 0;
        std::mem::take(&mut l.in_flight)
    }

    fn killed(&self) -> bool {
        self.lane.state.lock().kill.is_some()
    }

    fn pid_text(&self) -> String {
        self.handle.pid().map_or_else(|| "?".to_owned(), |p| p.to_string())
    }

    fn kill(&mut self, why: Kill) {
        kill(&self.lane, &self.handle, why);
    }
}

/// The thread that reads one worker's results: it blocks in `read(2)` on
/// the worker's pipe and completes each future as its result arrives, so a
/// result reaches its caller in one hop. It ends at the end of the child's
/// output.
struct Reader {
    from_child: File,
    /// Received bytes (the handshake's leftover first); `buf.len()` of them.
    buf: Vec<u8>,
    lane: Arc<Lane>,
    handle: Arc<ChildHandle>,
    shared: std::sync::Weak<Shared>,
    /// The pool, for `MANAGER_OF` (callbacks run here).
    pool: usize,
    max: u32,
}

impl Reader {
    fn run(mut self) {
        // Done callbacks run on this thread: a shutdown from one must not
        // wait for the pool (which waits for this thread's worker).
        MANAGER_OF.with(|m| m.set(self.pool));
        let mut filled = self.buf.len();
        let mut discard = false;
        loop {
            if !discard && filled > 0 {
                let (used, finished, error) = self.handle_frames(filled);
                self.lane.completing.store(false, Ordering::Release);
                self.buf.copy_within(used..filled, 0);
                filled -= used;
                if let Some(why) = error {
                    kill(&self.lane, &self.handle, Kill::Protocol(why));
                    discard = true;
                    filled = 0;
                }
                if finished {
                    self.wake_if_needed();
                }
            }
            // `buf` stays initialised; `filled` bytes of it are received.
            if self.buf.len() - filled < READ_ROOM {
                let grown = (filled + 4 * READ_ROOM).max(2 * self.buf.len());
                self.buf.resize(grown, 0);
            }
            let at = if discard { 0 } else { filled };
            match self.from_child.read(&mut self.buf[at..]) {
                Ok(0) => break,
                Ok(n) => filled = at + n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let mut l = self.lane.state.lock();
        l.eof = true;
        l.open = false;
        if filled > 0 && !discard && l.kill.is_none() {
            l.kill =
                Some(Kill::Protocol(format!("its output ended inside a frame ({filled} bytes)")));
        }
        l.reading = false;
        drop(l);
        if let Some(s) = self.shared.upgrade() {
            s.wake();
        }
    }

    /// Wakes the manager when a worker's freed room matters to it: jobs
    /// wait in the queue, or the pool is shutting down.
    fn wake_if_needed(&self) {
        if let Some(s) = self.shared.upgrade()
            && (s.queued.load(Ordering::Relaxed) > 0 || s.closing.load(Ordering::Relaxed))
        {
            s.wake();
        }
    }

    /// Completes the futures of the whole frames among the first `filled`
    /// bytes. Returns the bytes used, whether a job finished, and a protocol
    /// error.
    fn handle_frames(&self, filled: usize) -> (usize, bool, Option<String>) {
        let mut at = 0;
        let mut finished = false;
        loop {
            let (frame, used) = match wire::decode(&self.buf[at..filled], self.max) {
                Ok(Some(x)) => x,
                Ok(None) => return (at, finished, None),
                Err(e) => return (at, finished, Some(format!("it sent a bad frame: {e}"))),
            };
            at += used;
            let task = match &frame {
                Frame::Ok { task, .. } | Frame::Panic { task, .. } | Frame::Failed { task, .. } => {
                    *task
                }
                Frame::InitFailed(message) => {
                    let mut l = self.lane.state.lock();
                    l.init_failed = Some(message.to_string());
                    l.open = false;
                    continue;
                }
                other => {
                    return (at, finished, Some(format!("it sent an unexpected frame: {other:?}")));
                }
            };
            let answered = {
                let mut l = self.lane.state.lock();
                let expected = l.in_flight.front().map(|(job, _)| frame_task(&job.frame));
                if expected == Some(task) && l.sent > 0 {
                    l.sent -= 1;
                    self.lane.completing.store(true, Ordering::Relaxed);
                    l.in_flight.pop_front()
                } else {
                    None
                }
            };
            // Completed without the lane's lock: a done callback may submit.
            let Some((job, _)) = answered else {
                return (
                    at,
                    finished,
                    Some(format!("it answered task {task}, which it was not running")),
                );
            };
            finished = true;
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
    }
}

/// How long the manager waits, after a worker was reaped, for its reader to
/// see the end of its output (it comes at once unless a process the task
/// forked still holds the pipe).
const READER_GRACE: Duration = Duration::from_secs(1);

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
        let lane = Arc::new(Lane::new(Arc::clone(&handle)));
        Ok(Worker {
            handle,
            starting: Some(slot),
            start_deadline: Deadline::after(self.shared.config.start_timeout),
            lane,
            eof: false,
            eof_deadline: Deadline::NEVER,
            reader_deadline: Deadline::NEVER,
        })
    }

    /// Publishes the connected workers: their pids, and their lanes for
    /// direct sends.
    fn publish_pids(&self) {
        let connected = || self.workers.iter().filter(|w| w.starting.is_none());
        let pids = connected().filter_map(|w| w.handle.pid()).collect();
        let lanes = connected().map(|w| Arc::clone(&w.lane)).collect();
        let mut q = self.shared.queue.lock();
        q.pids = pids;
        q.lanes = lanes;
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
        for w in std::mem::take(&mut self.workers) {
            w.handle.wait_deadline(Deadline::NEVER);
            for (job, _) in w.take_in_flight() {
                job.done.finish(Err(TaskError::BrokenPool(error.clone())));
            }
        }
        let pending = {
            let mut q = self.shared.queue.lock();
            q.pids.clear();
            q.lanes.clear();
            self.shared.queued.store(0, Ordering::Relaxed);
            std::mem::take(&mut q.pending)
        };
        for job in pending {
            job.done.finish(Err(TaskError::BrokenPool(error.clone())));
        }
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
        let (pending, why) = {
            let mut q = self.shared.queue.lock();
            if q.broken.is_none() {
                q.broken = Some(why.to_owned());
            }
            self.shared.queued.store(0, Ordering::Relaxed);
            (std::mem::take(&mut q.pending), q.broken.clone().unwrap_or_default())
        };
        for job in pending {
            job.done.finish(Err(TaskError::BrokenPool(why.clone())));
        }
        for w in &mut self.workers {
            let in_flight = w.take_in_flight();
            w.kill(Kill::Stop);
            for (job, _) in in_flight {
                job.done.finish(Err(TaskError::BrokenPool(why.clone())));
            }
        }
    }

    fn is_broken(&self) -> bool {
        self.shared.queue.lock().broken.is_some()
    }

    fn run_loop(&mut self) {
        let mut pollfds: Vec<libc::pollfd> = Vec::new();
        // Which worker each poll entry (after the wake-up pipe) is.
        let mut owners: Vec<usize> = Vec::new();
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
            for (i, w) in self.workers.iter().enumerate() {
                let l = w.lane.state.lock();
                if let (Some(t), true) = (&l.to_child, l.unsent()) {
                    pollfds.push(libc::pollfd {
                        fd: t.as_raw_fd(),
                        events: libc::POLLOUT,
                        revents: 0,
                    });
                    owners.push(i);
                }
            }
            let timeout = self.poll_timeout();
            // SAFETY: `pollfds` is a valid array of `len` entries.
            let n =
                unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, timeout) };
            if n <= 0 {
                continue;
            }
            if pollfds[0].revents != 0 {
                // At most a byte per round is written (`wake_pending`).
                let mut sink = [0u8; 64];
                // SAFETY: reads into a valid buffer from our pipe.
                unsafe {
                    libc::read(self.wake_r.as_raw_fd(), sink.as_mut_ptr().cast(), sink.len())
                };
            }
            for (p, &i) in pollfds[1..].iter().zip(&owners) {
                if p.revents != 0 {
                    let lane = &self.workers[i].lane;
                    lane.flush(&mut lane.state.lock());
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
            let (running, killed) = {
                let l = w.lane.state.lock();
                (l.in_flight.front().map(|(_, d)| *d), l.kill.is_some())
            };
            if let Some(d) = running {
                consider(d);
            }
            if w.eof {
                consider(w.eof_deadline);
            }
            consider(w.reader_deadline);
            if killed || w.handle.is_done() {
                // A killed worker is reaped promptly, and a reaped one's
                // reader ends soon: look again soon in case their wake-ups
                // raced with this round.
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
                    if let Err(why) = w.connect(c, &self.shared) {
                        failed = Some(why);
                    }
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
            let (verdict, eof) = {
                let l = w.lane.state.lock();
                let verdict = match l.in_flight.front() {
                    _ if l.kill.is_some() => None,
                    Some((_, deadline)) if deadline.passed() => Some(Kill::Timeout),
                    Some((job, _)) if cancel_running && job.done.is_cancelled() => {
                        Some(Kill::Cancelled)
                    }
                    _ => None,
                };
                (verdict, l.eof)
            };
            if let Some(why) = verdict {
                w.kill(why);
            }
            if eof && !w.eof {
                w.eof = true;
                w.eof_deadline = Deadline::after(EXIT_GRACE);
            }
            if w.eof && w.eof_deadline.passed() && !w.killed() {
                w.kill(Kill::Protocol("it closed its pipe but did not exit".to_owned()));
            }
        }
    }

    /// Hands queued jobs to workers with room for them.
    fn dispatch(&mut self) {
        let max_tasks = self.shared.config.max_tasks_per_child;
        let single = self.shared.one_task_at_a_time();
        let timeout = self.shared.config.task_timeout;
        let live =
            self.workers.iter().filter(|w| w.lane.state.lock().has_room(usize::MAX, 0)).count();
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
        'levels: for depth in 0..batch {
            for w in &self.workers {
                if w.starting.is_some() {
                    continue;
                }
                let mut l = w.lane.state.lock();
                if !l.has_room(depth, max_tasks) {
                    continue;
                }
                // Skip jobs cancelled while they were queued (dropping one
                // under the locks runs nothing: its future is done).
                let job = loop {
                    let Some(job) = q.pending.pop_front() else { break 'levels };
                    if job.done.start(self.shared.config.cancel_running) {
                        break job;
                    }
                };
                let deadline = timeout.map_or(Deadline::NEVER, Deadline::after);
                l.in_flight.push_back((job, deadline));
                l.assigned += 1;
            }
        }
        self.shared.queued.store(q.pending.len(), Ordering::Relaxed);
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
        if self.workers.iter().any(|w| !w.lane.state.lock().in_flight.is_empty()) {
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
            let mut l = w.lane.state.lock();
            l.open = false;
            l.to_child = None;
        }
        self.workers.is_empty()
    }

    fn flush_all(&mut self) {
        for w in &self.workers {
            let mut l = w.lane.state.lock();
            if l.unsent() {
                w.lane.flush(&mut l);
            }
        }
    }

    /// Handles workers that have exited and whose reader has read all they
    /// wrote: retires, replaces, or breaks the pool.
    fn reap_dead(&mut self) {
        let mut i = 0;
        while i < self.workers.len() {
            let w = &mut self.workers[i];
            if !w.handle.is_done() || w.starting.is_some() {
                i += 1;
                continue;
            }
            if w.lane.state.lock().reading {
                // The child is gone, so its output ends now; a process it
                // forked may hold the pipe open, so wait only a while (but
                // as long as done callbacks run).
                if w.lane.completing.load(Ordering::Acquire) {
                    w.reader_deadline = Deadline::NEVER;
                    i += 1;
                    continue;
                }
                if w.reader_deadline == Deadline::NEVER {
                    w.reader_deadline = Deadline::after(READER_GRACE);
                }
                if !w.reader_deadline.passed() {
                    i += 1;
                    continue;
                }
            }
            let w = self.workers.swap_remove(i);
            self.publish_pids();
            self.on_exit(&w);
        }
    }

    fn on_exit(&mut self, w: &Worker) {
        let code = w.handle.exitcode().unwrap_or(child::STATUS_LOST);
        let how = describe_exit(code);
        let pid = w.pid_text();
        // Jobs sent but never started go back to the front of the queue;
        // so does the oldest when the child never got all of it.
        let (delivered, assigned, kill, init_failed) = {
            let mut l = w.lane.state.lock();
            l.to_child = None;
            (l.sent > 0, l.assigned, l.kill.take(), l.init_failed.take())
        };
        let mut in_flight = w.take_in_flight();
        // A task that timed out or was cancelled is the oldest, whatever
        // part of it the child got.
        let charged = delivered || matches!(kill, Some(Kill::Timeout | Kill::Cancelled));
        let running = if charged { in_flight.pop_front() } else { None };
        let unstarted: Vec<Job> = in_flight.into_iter().map(|(job, _)| job).collect();
        if !unstarted.is_empty() {
            let mut q = self.shared.queue.lock();
            for job in unstarted.into_iter().rev() {
                q.pending.push_front(job);
            }
            self.shared.queued.store(q.pending.len(), Ordering::Relaxed);
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
        match (kill, running) {
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
                if let Some(message) = init_failed {
                    if let Some((job, _)) = running {
                        let mut q = self.shared.queue.lock();
                        q.pending.push_front(job);
                        self.shared.queued.store(q.pending.len(), Ordering::Relaxed);
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
                    && assigned >= self.shared.config.max_tasks_per_child;
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
