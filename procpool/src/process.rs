//! `Process`: Python's `multiprocessing.Process`.

use crate::child::{self, ChildHandle, SpawnRequest};
use crate::error::Error;
use crate::identity::{self, Target};
use crate::sync::Deadline;
use crate::wire::{self, Hello, Role};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// How long `start` waits for the child to reach `procpool::init()` and
/// answer the handshake before it kills it.
pub(crate) const DEFAULT_START_TIMEOUT: Duration = Duration::from_mins(1);

/// A function running in a child process: Python's
/// `multiprocessing.Process` with the spawn start method.
///
/// The child is a fresh process of this same program, entered through
/// [`init`](crate::init); the function must be a plain `fn(A)` (a function
/// item or a non-capturing closure) with `serde` arguments.
///
/// | Python | Rust |
/// | --- | --- |
/// | `p = Process(target=f, args=(x,), name="n", daemon=True)` | `let p = Process::new(f, x).name("n").daemon(true);` |
/// | `p.start()` | `p.start()?` |
/// | `p.join()` / `p.join(timeout=t)` | `p.join()?` / `p.join_timeout(t)` (whether it ended) |
/// | `p.exitcode` | `p.exitcode()`: `None` while running, 0 on success, 1 after a panic, `-N` when killed by signal N |
/// | `p.is_alive()`, `p.pid`, `p.name`, `p.daemon` | `p.is_alive()`, `p.pid()`, `p.get_name()`, `p.is_daemon()` |
/// | `p.terminate()` / `p.kill()` | `p.terminate()` (SIGTERM) / `p.kill()` (SIGKILL) |
///
/// Dropping a `Process` does not stop its child (as in Python).
/// When the parent exits normally, it waits for its non-daemon children and
/// terminates (then waits for) the daemon ones, as Python does. When the
/// parent dies, its children are killed too (Linux: `PR_SET_PDEATHSIG`;
/// everywhere: a pipe whose closing the child watches). Every child is
/// reaped.
///
/// ```no_run
/// use procpool::Process;
///
/// fn greet(name: String) {
///     println!("hello, {name}");
/// }
///
/// fn main() -> Result<(), procpool::Error> {
///     procpool::init();
///     let p = Process::new(greet, "world".to_string()).name("greeter");
///     p.start()?;
///     p.join()?;
///     assert_eq!(p.exitcode(), Some(0));
///     Ok(())
/// }
/// ```
pub struct Process {
    name: String,
    daemon: bool,
    call: Result<(Target, Vec<u8>), Error>,
    start_timeout: Duration,
    wrong_build_id: bool,
    child: core_sync::Mutex<Option<Arc<ChildHandle>>>,
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .field("pid", &self.pid())
            .field("exitcode", &self.exitcode())
            .finish_non_exhaustive()
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Encodes `args` for a call: the payload of a CALL frame.
pub(crate) fn encode_args<A: Serialize + ?Sized>(args: &A) -> Result<Vec<u8>, Error> {
    postcard::to_stdvec(args).map_err(|e| {
        Error::Encode(format!(
            "the arguments ({}) could not be encoded: {e}",
            std::any::type_name::<A>()
        ))
    })
}

impl Process {
    /// A process that will run `target(args)` once started (Python's
    /// `Process(target=f, args=(...))`). Named `Process-N` unless
    /// [`name`](Process::name) says otherwise; not a daemon.
    #[allow(clippy::needless_pass_by_value)] // by value, as Python's `args=`
    pub fn new<A>(target: fn(A), args: A) -> Process
    where
        A: Serialize + DeserializeOwned + 'static,
    {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
        let call = Target::call(target)
            .map_err(Error::Function)
            .and_then(|t| Ok((t, encode_args(&args)?)));
        Process {
            name: format!("Process-{n}"),
            daemon: false,
            call,
            start_timeout: DEFAULT_START_TIMEOUT,
            wrong_build_id: false,
            child: core_sync::Mutex::new(None),
        }
    }

    /// Sets the name (Python's `name=`); only a label.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Process {
        self.name = name.into();
        self
    }

    /// Sets whether the process is a daemon (Python's `daemon=`): a daemon
    /// child is terminated when the parent exits; the parent waits for the
    /// others.
    #[must_use]
    pub fn daemon(mut self, daemon: bool) -> Process {
        self.daemon = daemon;
        self
    }

    /// How long [`start`](Process::start) waits for the child to answer the
    /// handshake (default 60 s) before it kills it and fails.
    #[must_use]
    pub fn start_timeout(mut self, timeout: Duration) -> Process {
        self.start_timeout = timeout;
        self
    }

    /// Test support: send the child a build id that is not this program's,
    /// so the child must refuse the handshake.
    #[doc(hidden)]
    #[must_use]
    pub fn __with_wrong_build_id(mut self) -> Process {
        self.wrong_build_id = true;
        self
    }

    /// The process's name.
    pub fn get_name(&self) -> &str {
        &self.name
    }

    /// Whether the process is a daemon.
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// Starts the child and sends it the call (Python's `start()`).
    ///
    /// Returns once the child has answered the handshake: it runs this
    /// program, reached `procpool::init()`, and has the call.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyStarted`] on a second call; [`Error::Function`] or
    /// [`Error::Encode`] when the target or its arguments cannot be sent;
    /// [`Error::Start`] when the child cannot be started or refuses (it runs
    /// another build, or `procpool::init()` is missing: the message says).
    pub fn start(&self) -> Result<(), Error> {
        let mut slot = self.child.lock();
        if slot.is_some() {
            return Err(Error::AlreadyStarted);
        }
        let (target, payload) = self.call.clone()?;
        crate::worker::refuse_if_hook_missing();
        let secret = identity::random_secret()
            .map_err(|e| Error::Start(format!("no random secret: {e}")))?;
        let mut build_id = identity::build_id()
            .map_err(|e| Error::Start(format!("cannot identify the executable: {e}")))?;
        if self.wrong_build_id {
            build_id[0] ^= 0xff;
        }
        let mut after_ready = Vec::with_capacity(payload.len() + 64);
        wire::put_call(
            &mut after_ready,
            false,
            &target.header(&secret, false, 0),
            wire::DEFAULT_MAX_FRAME,
            |out| {
                out.extend_from_slice(&payload);
                Ok(())
            },
        )
        .map_err(|e| Error::Encode(format!("the arguments cannot be sent: {e}")))?;
        let hello = Hello {
            build_id,
            secret,
            max_frame: wire::DEFAULT_MAX_FRAME,
            role: Role::Process,
            max_tasks: 0,
        };
        let (handle, outcome) = child::spawn(SpawnRequest { hello, after_ready, notify: None })
            .map_err(|e| Error::Start(format!("no thread to keep the child: {e}")))?;
        match outcome.take_deadline(Deadline::after(self.start_timeout)) {
            Some(Ok(_connected)) => {}
            Some(Err(message)) => return Err(Error::Start(message)),
            None => {
                handle.signal(libc::SIGKILL);
                return Err(Error::Start(format!(
                    "the child did not answer the handshake within {:?} (is `procpool::init()` the \
                     first statement of `main`?); it was killed",
                    self.start_timeout
                )));
            }
        }
        exit_registry::register(&handle, self.daemon);
        *slot = Some(handle);
        Ok(())
    }

    fn handle(&self) -> Option<Arc<ChildHandle>> {
        self.child.lock().clone()
    }

    /// Waits until the child has ended (Python's `join()`).
    ///
    /// # Errors
    ///
    /// [`Error::NotStarted`] when the process was never started.
    pub fn join(&self) -> Result<(), Error> {
        let handle = self.handle().ok_or(Error::NotStarted)?;
        handle.wait_deadline(Deadline::NEVER);
        Ok(())
    }

    /// Waits at most `timeout` for the child to end (Python's
    /// `join(timeout)`); returns whether it has ended. `false` for a process
    /// never started.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.handle().is_some_and(|h| h.wait_deadline(Deadline::after(timeout)))
    }

    /// The exit code (Python's `exitcode`): `None` while running (or not
    /// started), 0 when the function returned, 1 when it panicked (its
    /// message went to the child's stderr), `-N` when signal N ended it.
    pub fn exitcode(&self) -> Option<i32> {
        self.handle().and_then(|h| h.exitcode())
    }

    /// Whether the child is running (started and not yet ended).
    pub fn is_alive(&self) -> bool {
        self.handle().is_some_and(|h| !h.is_done())
    }

    /// The child's process id, once started.
    pub fn pid(&self) -> Option<u32> {
        self.handle().and_then(|h| h.pid())
    }

    /// Sends SIGTERM to the child (Python's `terminate()`); nothing if it is
    /// not running.
    pub fn terminate(&self) {
        if let Some(h) = self.handle() {
            h.signal(libc::SIGTERM);
        }
    }

    /// Sends SIGKILL to the child (Python's `kill()`); nothing if it is not
    /// running.
    pub fn kill(&self) {
        if let Some(h) = self.handle() {
            h.signal(libc::SIGKILL);
        }
    }
}

/// Python's exit handler for `multiprocessing`: when the program exits, the
/// daemon children are terminated and every child is waited for.
mod exit_registry {
    use super::ChildHandle;
    use crate::sync::Deadline;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    static CHILDREN: core_sync::Mutex<Vec<(Arc<ChildHandle>, bool)>> =
        core_sync::Mutex::new(Vec::new());
    static REGISTERED: AtomicBool = AtomicBool::new(false);

    pub(super) fn register(handle: &Arc<ChildHandle>, daemon: bool) {
        if !REGISTERED.swap(true, Ordering::AcqRel) {
            // SAFETY: `at_exit` is an `extern "C" fn()` that never unwinds.
            unsafe { libc::atexit(at_exit) };
        }
        let mut children = CHILDREN.lock();
        children.retain(|(h, _)| !h.is_done());
        children.push((Arc::clone(handle), daemon));
    }

    extern "C" fn at_exit() {
        let children = std::mem::take(&mut *CHILDREN.lock());
        for (handle, daemon) in &children {
            if *daemon {
                handle.signal(libc::SIGTERM);
            }
        }
        for (handle, daemon) in &children {
            if *daemon && !handle.wait_deadline(Deadline::after(Duration::from_secs(5))) {
                handle.signal(libc::SIGKILL);
            }
            handle.wait_deadline(Deadline::NEVER);
        }
    }
}
