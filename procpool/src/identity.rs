//! Function identity: how a parent names, in a frame, a function that the
//! child then calls — and what the child checks before it jumps.
//!
//! See the crate documentation ("How a function is named in the child") for
//! the design and its limits. In short:
//!
//! - The user passes a plain function pointer `fn(A) -> R` (a function item
//!   or a non-capturing closure coerces to one; a capturing closure does not
//!   compile). The parent never invents a value: it sends the address of
//!   that real function and the address of `entry::<A, R>`, the monomorphic
//!   entry point that decodes `A`, calls, and encodes `R`; both as offsets
//!   from [`anchor`], a function of this crate, so address-space
//!   randomisation does not matter.
//! - The parent refuses a function that does not lie in the same loaded
//!   object as the anchor (a shared library is mapped elsewhere in the
//!   child).
//! - The handshake proves that the child runs the same executable file
//!   ([`build_id`]); a child of another build refuses to start.
//! - Every CALL header carries a MAC (SipHash-2-4) of its offsets and type
//!   hash, keyed by a random secret the parent sent to that child alone at
//!   the handshake; the child checks it before it turns an offset into an
//!   address. Bytes that the parent did not write (a corrupted, truncated or
//!   foreign frame) do not name any address.
//! - At the destination, the entry point compares the type hash it was sent
//!   with its own (`type_name` of `A` and `R`): a last check that the jump
//!   landed where the parent meant.

use crate::wire;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::any::type_name;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The fixed point that function offsets are measured from.
#[inline(never)]
fn anchor_fn() -> u32 {
    // A body that no other function shares, so code folding cannot merge it.
    u32::from_le_bytes(*b"anch")
}

/// The address of the anchor in this process.
pub(crate) fn anchor() -> usize {
    anchor_fn as fn() -> u32 as usize
}

/// An address as an offset from the anchor.
pub(crate) fn offset_of(addr: usize) -> i64 {
    addr.wrapping_sub(anchor()).cast_signed() as i64
}

/// The address an offset from the anchor names in this process.
fn address_of(offset: i64) -> usize {
    anchor().wrapping_add((offset as isize).cast_unsigned())
}

/// What running an entry point produced.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The function returned; its encoded result was appended to the output.
    Returned,
    /// The function panicked, with this message.
    Panicked(String),
    /// The call could not be made or its result not sent (undecodable
    /// arguments, wrong types, unencodable result).
    Failed(String),
}

/// The entry-point type: `entry::<A, R>` and `chunk_entry::<A, R>`.
///
/// # Safety
///
/// `func` must be the address of a function of type `fn(A) -> R` for the
/// `A` and `R` this entry point was instantiated with.
pub(crate) type Entry =
    unsafe fn(func: usize, type_hash: u64, payload: &[u8], out: &mut Vec<u8>) -> Outcome;

/// 64-bit FNV-1a, for type hashes and the build id.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// The type hash of an entry point: which entry (single call or chunk) and
/// the names of its argument and result types.
pub(crate) fn type_hash<A, R>(chunk: bool) -> u64 {
    let h = fnv(FNV_START, if chunk { b"chunk:" } else { b"call:" });
    let h = fnv(h, type_name::<A>().as_bytes());
    let h = fnv(h, b"->");
    fnv(h, type_name::<R>().as_bytes())
}

/// The message of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

std::thread_local! {
    /// Set while a pool worker runs a task: its panics are reported to the
    /// parent, not printed.
    pub(crate) static QUIET_PANICS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Calls `f`, catching a panic as its message.
fn call_catching<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| panic_message(&*p))
}

fn encode_result<R: Serialize>(value: &R, out: &mut Vec<u8>) -> Outcome {
    let before = out.len();
    match postcard::to_io(value, &mut *out) {
        Ok(_) => Outcome::Returned,
        Err(e) => {
            out.truncate(before);
            Outcome::Failed(format!(
                "the result of type {} could not be encoded: {e}",
                type_name::<R>()
            ))
        }
    }
}

/// The entry point of a single call of an `fn(A) -> R`.
///
/// # Safety
///
/// `func` is the address of a function of type `fn(A) -> R`.
pub(crate) unsafe fn entry<A: DeserializeOwned, R: Serialize>(
    func: usize,
    type_hash: u64,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Outcome {
    if type_hash != self::type_hash::<A, R>(false) {
        return Outcome::Failed(
            "the call names a function of other argument or result types".into(),
        );
    }
    let args: A = match postcard::from_bytes(payload) {
        Ok(a) => a,
        Err(e) => {
            return Outcome::Failed(format!(
                "the arguments could not be decoded as {}: {e}",
                type_name::<A>()
            ));
        }
    };
    // SAFETY: the caller guarantees that `func` is the address of an
    // `fn(A) -> R`; a function pointer and a `usize` have the same size on
    // every supported target.
    let f = unsafe { std::mem::transmute::<*const (), fn(A) -> R>(func as *const ()) };
    match call_catching(|| f(args)) {
        Ok(value) => encode_result(&value, out),
        Err(message) => Outcome::Panicked(message),
    }
}

/// The entry point of a chunk of calls (`map` with a chunk size): decodes a
/// `Vec<A>`, calls `fn(A) -> R` on each in order, encodes the `Vec<R>`.
///
/// # Safety
///
/// `func` is the address of a function of type `fn(A) -> R`.
pub(crate) unsafe fn chunk_entry<A: DeserializeOwned, R: Serialize>(
    func: usize,
    type_hash: u64,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Outcome {
    if type_hash != self::type_hash::<A, R>(true) {
        return Outcome::Failed(
            "the call names a function of other argument or result types".into(),
        );
    }
    let args: Vec<A> = match postcard::from_bytes(payload) {
        Ok(a) => a,
        Err(e) => {
            return Outcome::Failed(format!(
                "the arguments could not be decoded as Vec<{}>: {e}",
                type_name::<A>()
            ));
        }
    };
    // SAFETY: as in `entry`.
    let f = unsafe { std::mem::transmute::<*const (), fn(A) -> R>(func as *const ()) };
    match call_catching(|| args.into_iter().map(f).collect::<Vec<R>>()) {
        Ok(values) => encode_result(&values, out),
        Err(message) => Outcome::Panicked(message),
    }
}

/// A function prepared for sending: its entry point and address as
/// offsets, its type hash, and the MAC that proves them, for one secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) entry: i64,
    pub(crate) func: i64,
    pub(crate) type_hash: u64,
}

impl Target {
    /// Names `f` with its single-call entry point.
    ///
    /// # Errors
    ///
    /// When `f` does not lie in the executable (see [`check_in_executable`]).
    pub(crate) fn call<A: DeserializeOwned, R: Serialize>(f: fn(A) -> R) -> Result<Target, String> {
        let func = f as *const () as usize;
        check_in_executable(func)?;
        let entry: Entry = entry::<A, R>;
        Ok(Target {
            entry: offset_of(entry as usize),
            func: offset_of(func),
            type_hash: type_hash::<A, R>(false),
        })
    }

    /// Names `f` with its chunk entry point.
    ///
    /// # Errors
    ///
    /// As [`Target::call`].
    pub(crate) fn chunk<A: DeserializeOwned, R: Serialize>(
        f: fn(A) -> R,
    ) -> Result<Target, String> {
        let func = f as *const () as usize;
        check_in_executable(func)?;
        let entry: Entry = chunk_entry::<A, R>;
        Ok(Target {
            entry: offset_of(entry as usize),
            func: offset_of(func),
            type_hash: type_hash::<A, R>(true),
        })
    }

    /// The header of a CALL (or INIT) of this target, with its MAC.
    pub(crate) fn header(&self, secret: &[u8; 16], init: bool, task: u64) -> wire::CallHeader {
        let mac = wire::siphash24(
            secret,
            &wire::call_mac_input(init, self.entry, self.func, self.type_hash),
        );
        wire::CallHeader {
            task,
            entry: self.entry,
            func: self.func,
            type_hash: self.type_hash,
            mac,
        }
    }
}

/// Checks a received CALL and runs it: the MAC first (with the secret this
/// child got at the handshake), and only then turns the offsets into
/// addresses.
pub(crate) fn run_call(
    secret: &[u8; 16],
    init: bool,
    call: &wire::Call<'_>,
    out: &mut Vec<u8>,
) -> Outcome {
    let expected =
        wire::siphash24(secret, &wire::call_mac_input(init, call.entry, call.func, call.type_hash));
    if expected != call.mac {
        return Outcome::Failed(
            "the call failed verification (its MAC does not match): refusing to run it".into(),
        );
    }
    let entry_addr = address_of(call.entry);
    let func = address_of(call.func);
    // SAFETY: the MAC proves (up to a 2^-64 forgery chance) that the parent
    // holding this child's secret wrote these offsets, and the parent only
    // writes offsets computed in `Target::call`/`Target::chunk` from a real
    // `Entry` of `entry::<A, R>`/`chunk_entry::<A, R>` and a real `fn(A) -> R`
    // in the same loaded object as the anchor. The handshake proved that
    // this child runs the same executable file, so the same offsets from the
    // anchor name the same functions here.
    let entry = unsafe { std::mem::transmute::<*const (), Entry>(entry_addr as *const ()) };
    // SAFETY: `func` is an `fn(A) -> R` for the `A`, `R` of this `entry`
    // (they came from one `Target`, bound together by the MAC).
    unsafe { entry(func, call.type_hash, call.payload, out) }
}

/// Checks that `addr` (a function) lies in the same loaded object as the
/// anchor: a function of a shared library would sit at another offset in the
/// child.
///
/// Where the dynamic loader cannot tell (a fully static executable has no
/// shared libraries), the check passes.
///
/// # Errors
///
/// A message naming the object the function lies in.
pub(crate) fn check_in_executable(addr: usize) -> Result<(), String> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // The last function found good: a program usually submits the same few.
    static LAST_OK: AtomicUsize = AtomicUsize::new(0);
    if LAST_OK.load(Ordering::Relaxed) == addr {
        return Ok(());
    }
    let Some(anchor_base) = object_base(anchor()) else { return Ok(()) };
    match object_base(addr) {
        Some(base) if base == anchor_base => {
            LAST_OK.store(addr, Ordering::Relaxed);
            Ok(())
        }
        _ => Err(format!(
            "the function at {addr:#x} is not part of the executable (it lies in {}); a worker \
             can only call functions compiled into the program itself",
            object_name(addr).unwrap_or_else(|| "an unknown mapping".into())
        )),
    }
}

fn dladdr(addr: usize) -> Option<libc::Dl_info> {
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    // SAFETY: `dladdr` only reads the address value and fills `info`.
    let found = unsafe { libc::dladdr(addr as *const libc::c_void, info.as_mut_ptr()) };
    // SAFETY: zero-initialised, and filled by `dladdr` when it succeeds.
    (found != 0).then(|| unsafe { info.assume_init() })
}

fn object_base(addr: usize) -> Option<usize> {
    dladdr(addr).map(|i| i.dli_fbase as usize).filter(|&b| b != 0)
}

fn object_name(addr: usize) -> Option<String> {
    let info = dladdr(addr)?;
    if info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: `dli_fname` is a NUL-terminated string owned by the loader,
    // valid while the object stays loaded.
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    Some(name.to_string_lossy().into_owned())
}

/// The path this process re-executes to start a child: the very file it
/// runs from (on Linux `/proc/self/exe`, which names the running file even
/// if the path was since replaced or deleted).
#[cfg_attr(any(target_os = "linux", target_os = "android"), allow(clippy::unnecessary_wraps))]
pub(crate) fn executable() -> io::Result<std::path::PathBuf> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        Ok("/proc/self/exe".into())
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        std::env::current_exe()
    }
}

/// The build id: identifies the executable file this process runs (device,
/// inode, size and modification time of the file the kernel mapped) and the
/// layout of this crate's code in it (the entry points' offsets from the
/// anchor), plus the crate and protocol versions.
///
/// Two processes with the same build id run the same bytes at the same
/// offsets; a rebuilt, replaced or different executable gets another one.
///
/// # Errors
///
/// When the executable file cannot be found.
pub(crate) fn build_id() -> io::Result<[u8; 16]> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(executable()?)?;
    let probe: Entry = entry::<u64, u64>;
    let chunk_probe: Entry = chunk_entry::<u64, u64>;
    let mut input = Vec::with_capacity(96);
    for v in [
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime().cast_unsigned(),
        meta.mtime_nsec().cast_unsigned(),
        offset_of(probe as usize).cast_unsigned(),
        offset_of(chunk_probe as usize).cast_unsigned(),
        offset_of(run_call as *const () as usize).cast_unsigned(),
        u64::from(wire::PROTOCOL),
    ] {
        input.extend_from_slice(&v.to_le_bytes());
    }
    input.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
    let lo = wire::siphash24(b"procpool-buildid", &input);
    let hi = fnv(FNV_START, &input);
    let mut id = [0; 16];
    id[..8].copy_from_slice(&lo.to_le_bytes());
    id[8..].copy_from_slice(&hi.to_le_bytes());
    Ok(id)
}

/// A fresh random secret (for the MAC of one child's calls).
///
/// # Errors
///
/// When the system's random source cannot be read.
pub(crate) fn random_secret() -> io::Result<[u8; 16]> {
    use std::io::Read;
    let mut secret = [0; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut secret)?;
    Ok(secret)
}

/// The build id as hex, for messages.
pub(crate) fn hex(id: &[u8; 16]) -> String {
    use std::fmt::Write;
    id.iter().fold(String::with_capacity(32), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tests::XorShift;

    fn triple(x: u64) -> u64 {
        x * 3
    }

    fn call_of(header: &wire::CallHeader, payload: &[u8]) -> Vec<u8> {
        let mut frame = Vec::new();
        wire::put_call(&mut frame, false, header, wire::DEFAULT_MAX_FRAME, |o| {
            o.extend_from_slice(payload);
            Ok(())
        })
        .unwrap();
        frame
    }

    fn run(secret: &[u8; 16], frame: &[u8]) -> (Outcome, Vec<u8>) {
        let Ok(Some((wire::Frame::Call(call), _))) = wire::decode(frame, wire::DEFAULT_MAX_FRAME)
        else {
            panic!("not a call")
        };
        let mut out = Vec::new();
        (run_call(secret, false, &call, &mut out), out)
    }

    #[test]
    fn a_verified_call_runs_and_returns_its_encoded_result() {
        let secret = [5; 16];
        let target = Target::call(triple).unwrap();
        let frame =
            call_of(&target.header(&secret, false, 1), &postcard::to_stdvec(&14u64).unwrap());
        let (outcome, out) = run(&secret, &frame);
        assert!(matches!(outcome, Outcome::Returned));
        assert_eq!(postcard::from_bytes::<u64>(&out).unwrap(), 42);
    }

    #[test]
    fn a_call_with_another_secret_or_any_changed_field_is_refused() {
        let secret = [5; 16];
        let target = Target::call(triple).unwrap();
        let good = target.header(&secret, false, 1);
        let args = postcard::to_stdvec(&1u64).unwrap();
        // Another secret.
        let (outcome, _) = run(&[6; 16], &call_of(&good, &args));
        assert!(matches!(outcome, Outcome::Failed(m) if m.contains("verification")));
        // Any single changed field (the MAC covers all but the task id).
        for change in 0..4 {
            let mut h = good;
            match change {
                0 => h.entry += 16,
                1 => h.func -= 16,
                2 => h.type_hash ^= 1,
                _ => h.mac ^= 1 << 40,
            }
            let (outcome, _) = run(&secret, &call_of(&h, &args));
            assert!(
                matches!(outcome, Outcome::Failed(m) if m.contains("verification")),
                "change {change}"
            );
        }
    }

    #[test]
    fn random_call_headers_never_name_an_address() {
        let secret = [9; 16];
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        for _ in 0..if cfg!(miri) { 100 } else { 20_000 } {
            let h = wire::CallHeader {
                task: rng.next(),
                entry: rng.next().cast_signed(),
                func: rng.next().cast_signed(),
                type_hash: rng.next(),
                mac: rng.next(),
            };
            let n = rng.below(32);
            let (outcome, _) = run(&secret, &call_of(&h, &rng.bytes(n)));
            assert!(matches!(outcome, Outcome::Failed(_)));
        }
    }

    #[test]
    fn wrong_types_and_bad_arguments_fail_the_call() {
        let secret = [5; 16];
        // A MAC-valid header whose type hash is not the entry's.
        let mut target = Target::call(triple).unwrap();
        target.type_hash ^= 1;
        let (outcome, _) = run(&secret, &call_of(&target.header(&secret, false, 1), &[1]));
        assert!(matches!(outcome, Outcome::Failed(m) if m.contains("types")));
        // Arguments that do not decode.
        let target = Target::call(triple).unwrap();
        let (outcome, _) = run(&secret, &call_of(&target.header(&secret, false, 1), &[0xff; 11]));
        assert!(matches!(outcome, Outcome::Failed(m) if m.contains("decoded")));
    }

    #[test]
    fn the_build_id_is_stable_within_a_process() {
        assert_eq!(build_id().unwrap(), build_id().unwrap());
    }
}
