//! The wire protocol between a parent and its children: length-prefixed
//! frames over pipes.
//!
//! ```text
//! frame   = len:u32-le  kind:u8  body          (len counts kind + body)
//! HELLO   = magic:u64 proto:u16 build_id:[u8;16] secret:[u8;16] max_frame:u32 role:u8 max_tasks:u64
//! READY   = pid:u32 build_id:[u8;16]
//! REFUSED = message (UTF-8)
//! CALL    = task:u64 entry:i64 func:i64 type_hash:u64 mac:u64 payload       (also INIT)
//! OK      = task:u64 payload
//! PANIC   = task:u64 message           FAILED = task:u64 message
//! INIT_FAILED = message
//! ```
//!
//! Decoding never panics, never trusts a length beyond the frame limit and
//! never allocates more than the bytes actually received: a malformed,
//! truncated or oversized frame is a [`FrameError`].

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Read};

/// Bytes of the length prefix.
pub(crate) const LEN_BYTES: usize = 4;
/// The default limit on one frame (kind + body), 256 MiB.
pub(crate) const DEFAULT_MAX_FRAME: u32 = 256 << 20;
/// First field of HELLO: "PROCPOOL".
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"PROCPOOL");
/// Protocol version; bumped on any change to this file's formats.
pub(crate) const PROTOCOL: u16 = 1;

const HELLO: u8 = 1;
const READY: u8 = 2;
const REFUSED: u8 = 3;
const CALL: u8 = 4;
const INIT: u8 = 5;
const OK: u8 = 6;
const PANIC: u8 = 7;
const FAILED: u8 = 8;
const INIT_FAILED: u8 = 9;

const CALL_HEADER: usize = 8 * 5;

/// What a child is started as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A `Process`: one CALL, then exit.
    Process,
    /// A pool worker: an optional INIT, then CALLs until end of input.
    Worker,
}

/// The first frame a parent sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hello {
    pub(crate) build_id: [u8; 16],
    pub(crate) secret: [u8; 16],
    pub(crate) max_frame: u32,
    pub(crate) role: Role,
    /// Tasks after which a worker exits (0: no limit).
    pub(crate) max_tasks: u64,
}

/// A call of a function in the child: which entry point and function, the
/// check that they came from the parent, and the encoded arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Call<'a> {
    pub(crate) task: u64,
    pub(crate) entry: i64,
    pub(crate) func: i64,
    pub(crate) type_hash: u64,
    pub(crate) mac: u64,
    pub(crate) payload: &'a [u8],
}

/// One decoded frame, borrowing from the input buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    Hello(Hello),
    Ready { pid: u32, build_id: [u8; 16] },
    Refused(Cow<'a, str>),
    Call(Call<'a>),
    Init(Call<'a>),
    Ok { task: u64, payload: &'a [u8] },
    Panic { task: u64, message: Cow<'a, str> },
    Failed { task: u64, message: Cow<'a, str> },
    InitFailed(Cow<'a, str>),
}

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// The length prefix announces more than the limit.
    Oversized { len: u64, max: u32 },
    /// A frame of length zero (no kind byte).
    Empty,
    /// An unknown kind byte.
    UnknownKind(u8),
    /// The body is shorter than its fixed fields (or longer, for fixed-size frames).
    BadLength { kind: u8, len: usize },
    /// A HELLO with the wrong magic or protocol version, or an unknown role.
    BadHello,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Oversized { len, max } => {
                write!(f, "frame of {len} bytes is over the limit of {max} bytes")
            }
            FrameError::Empty => f.write_str("empty frame"),
            FrameError::UnknownKind(k) => write!(f, "unknown frame kind {k}"),
            FrameError::BadLength { kind, len } => {
                write!(f, "frame of kind {kind} has a body of the wrong length ({len} bytes)")
            }
            FrameError::BadHello => {
                f.write_str("not a procpool handshake (wrong magic, protocol version or role)")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Little-endian field reader over a frame body; every read is checked.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N).and_then(|s| s.try_into().ok())
    }
    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|a| a[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.array().map(i64::from_le_bytes)
    }
}

/// Decodes the first frame of `buf`.
///
/// `Ok(None)`: `buf` holds only the beginning of a frame (read more).
/// `Ok(Some((frame, used)))`: a frame and how many bytes it took.
///
/// # Errors
///
/// A [`FrameError`] when the bytes cannot be a valid frame.
pub(crate) fn decode(buf: &[u8], max: u32) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    let Some(len) = frame_len(buf, max)? else { return Ok(None) };
    if buf.len() < LEN_BYTES + len {
        return Ok(None);
    }
    let body = &buf[LEN_BYTES..LEN_BYTES + len];
    Ok(Some((decode_body(body)?, LEN_BYTES + len)))
}

/// The length of the first frame of `buf` (kind + body), once its prefix is
/// there, checked against the limit.
///
/// # Errors
///
/// [`FrameError::Oversized`] and [`FrameError::Empty`].
pub(crate) fn frame_len(buf: &[u8], max: u32) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.get(..LEN_BYTES) else { return Ok(None) };
    let len = u32::from_le_bytes(prefix.try_into().unwrap_or_default());
    if len > max {
        return Err(FrameError::Oversized { len: u64::from(len), max });
    }
    if len == 0 {
        return Err(FrameError::Empty);
    }
    Ok(Some(len as usize))
}

fn decode_body(body: &[u8]) -> Result<Frame<'_>, FrameError> {
    let kind = body[0];
    let mut f = Fields(&body[1..]);
    let bad = || FrameError::BadLength { kind, len: body.len() - 1 };
    let text = String::from_utf8_lossy;
    let frame = match kind {
        HELLO => {
            let magic = f.u64().ok_or_else(bad)?;
            let proto = f.u16().ok_or_else(bad)?;
            if magic != MAGIC || proto != PROTOCOL {
                return Err(FrameError::BadHello);
            }
            let build_id = f.array().ok_or_else(bad)?;
            let secret = f.array().ok_or_else(bad)?;
            let max_frame = f.u32().ok_or_else(bad)?;
            let role = match f.u8().ok_or_else(bad)? {
                0 => Role::Process,
                1 => Role::Worker,
                _ => return Err(FrameError::BadHello),
            };
            let max_tasks = f.u64().ok_or_else(bad)?;
            if !f.0.is_empty() {
                return Err(bad());
            }
            Frame::Hello(Hello { build_id, secret, max_frame, role, max_tasks })
        }
        READY => {
            let pid = f.u32().ok_or_else(bad)?;
            let build_id = f.array().ok_or_else(bad)?;
            if !f.0.is_empty() {
                return Err(bad());
            }
            Frame::Ready { pid, build_id }
        }
        REFUSED => Frame::Refused(text(f.0)),
        CALL | INIT => {
            let call = Call {
                task: f.u64().ok_or_else(bad)?,
                entry: f.i64().ok_or_else(bad)?,
                func: f.i64().ok_or_else(bad)?,
                type_hash: f.u64().ok_or_else(bad)?,
                mac: f.u64().ok_or_else(bad)?,
                payload: f.0,
            };
            if kind == CALL { Frame::Call(call) } else { Frame::Init(call) }
        }
        OK => Frame::Ok { task: f.u64().ok_or_else(bad)?, payload: f.0 },
        PANIC => Frame::Panic { task: f.u64().ok_or_else(bad)?, message: text(f.0) },
        FAILED => Frame::Failed { task: f.u64().ok_or_else(bad)?, message: text(f.0) },
        INIT_FAILED => Frame::InitFailed(text(f.0)),
        other => return Err(FrameError::UnknownKind(other)),
    };
    Ok(frame)
}

/// Appends frames to a byte buffer.
///
/// Each `put_*` writes the whole frame or, when it would exceed `max`,
/// nothing (and returns the error).
pub(crate) struct Encoder<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
}

impl<'a> Encoder<'a> {
    fn begin(out: &'a mut Vec<u8>, kind: u8) -> Encoder<'a> {
        let start = out.len();
        out.extend_from_slice(&[0; LEN_BYTES]);
        out.push(kind);
        Encoder { out, start }
    }

    fn finish(self, max: u32) -> Result<(), FrameError> {
        let len = self.out.len() - self.start - LEN_BYTES;
        match u32::try_from(len) {
            Ok(l) if l <= max => {
                self.out[self.start..self.start + LEN_BYTES].copy_from_slice(&l.to_le_bytes());
                Ok(())
            }
            _ => {
                self.out.truncate(self.start);
                Err(FrameError::Oversized { len: len as u64, max })
            }
        }
    }
}

/// Appends a HELLO frame.
pub(crate) fn put_hello(out: &mut Vec<u8>, h: &Hello) {
    let e = Encoder::begin(out, HELLO);
    e.out.extend_from_slice(&MAGIC.to_le_bytes());
    e.out.extend_from_slice(&PROTOCOL.to_le_bytes());
    e.out.extend_from_slice(&h.build_id);
    e.out.extend_from_slice(&h.secret);
    e.out.extend_from_slice(&h.max_frame.to_le_bytes());
    e.out.push(match h.role {
        Role::Process => 0,
        Role::Worker => 1,
    });
    e.out.extend_from_slice(&h.max_tasks.to_le_bytes());
    // A HELLO is a few dozen bytes: always under any limit.
    let _ = e.finish(u32::MAX);
}

/// Appends a READY frame.
pub(crate) fn put_ready(out: &mut Vec<u8>, pid: u32, build_id: &[u8; 16]) {
    let e = Encoder::begin(out, READY);
    e.out.extend_from_slice(&pid.to_le_bytes());
    e.out.extend_from_slice(build_id);
    let _ = e.finish(u32::MAX);
}

/// Appends a frame carrying only a message (`REFUSED`, `INIT_FAILED`), cut to
/// fit the limit.
fn put_message(out: &mut Vec<u8>, kind: u8, task: Option<u64>, message: &str, max: u32) {
    let e = Encoder::begin(out, kind);
    if let Some(task) = task {
        e.out.extend_from_slice(&task.to_le_bytes());
    }
    let room = (max as usize).saturating_sub(1 + 8);
    let mut cut = message.len().min(room);
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    e.out.extend_from_slice(&message.as_bytes()[..cut]);
    let _ = e.finish(u32::MAX);
}

/// Appends a REFUSED frame.
pub(crate) fn put_refused(out: &mut Vec<u8>, message: &str) {
    put_message(out, REFUSED, None, message, DEFAULT_MAX_FRAME);
}

/// Appends an `INIT_FAILED` frame.
pub(crate) fn put_init_failed(out: &mut Vec<u8>, message: &str, max: u32) {
    put_message(out, INIT_FAILED, None, message, max);
}

/// Appends a PANIC frame.
pub(crate) fn put_panic(out: &mut Vec<u8>, task: u64, message: &str, max: u32) {
    put_message(out, PANIC, Some(task), message, max);
}

/// Appends a FAILED frame.
pub(crate) fn put_failed(out: &mut Vec<u8>, task: u64, message: &str, max: u32) {
    put_message(out, FAILED, Some(task), message, max);
}

/// Appends a CALL (or, with `init`, an INIT) frame whose payload `payload`
/// writes.
///
/// # Errors
///
/// The frame's size error (and nothing appended) when the frame would
/// exceed `max`; `payload`'s error, likewise.
pub(crate) fn put_call(
    out: &mut Vec<u8>,
    init: bool,
    header: &CallHeader,
    max: u32,
    payload: impl FnOnce(&mut Vec<u8>) -> Result<(), String>,
) -> Result<(), String> {
    let e = Encoder::begin(out, if init { INIT } else { CALL });
    for field in [
        header.task.to_le_bytes(),
        header.entry.to_le_bytes(),
        header.func.to_le_bytes(),
        header.type_hash.to_le_bytes(),
        header.mac.to_le_bytes(),
    ] {
        e.out.extend_from_slice(&field);
    }
    if let Err(err) = payload(e.out) {
        e.out.truncate(e.start);
        return Err(err);
    }
    e.finish(max).map_err(|e| e.to_string())
}

/// The fixed fields of a CALL frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CallHeader {
    pub(crate) task: u64,
    pub(crate) entry: i64,
    pub(crate) func: i64,
    pub(crate) type_hash: u64,
    pub(crate) mac: u64,
}

/// Where the task id sits in an encoded CALL frame (to renumber a prepared
/// frame without re-encoding it).
pub(crate) const CALL_TASK_AT: usize = LEN_BYTES + 1;

/// The bytes the MAC of a CALL covers: everything in its header but the MAC.
pub(crate) fn call_mac_input(kind_init: bool, entry: i64, func: i64, type_hash: u64) -> [u8; 25] {
    let mut m = [0u8; 25];
    m[0] = if kind_init { INIT } else { CALL };
    m[1..9].copy_from_slice(&entry.to_le_bytes());
    m[9..17].copy_from_slice(&func.to_le_bytes());
    m[17..25].copy_from_slice(&type_hash.to_le_bytes());
    m
}

/// Starts an OK frame; the caller appends the payload and then calls
/// [`end_ok`]. Returns the frame's start.
pub(crate) fn begin_ok(out: &mut Vec<u8>, task: u64) -> usize {
    let e = Encoder::begin(out, OK);
    e.out.extend_from_slice(&task.to_le_bytes());
    e.start
}

/// Finishes an OK frame begun at `start`.
///
/// # Errors
///
/// [`FrameError::Oversized`] (and the frame removed) when over `max`.
pub(crate) fn end_ok(out: &mut Vec<u8>, start: usize, max: u32) -> Result<(), FrameError> {
    Encoder { out, start }.finish(max)
}

const _: () = assert!(CALL_HEADER == 40);

/// Reads frames from a blocking pipe, buffering what arrives.
///
/// The buffer grows only with bytes actually received (plus one read's
/// room), so a length prefix that lies costs nothing until the bytes
/// arrive, and never past one frame of the limit.
pub(crate) struct FrameReader<R> {
    src: R,
    /// Initialised bytes; `start..end` is received and not yet returned.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max: u32,
}

/// What [`FrameReader::next`] found.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The writer closed the pipe at a frame boundary.
    Eof,
    /// The writer closed the pipe inside a frame.
    Truncated,
    /// The bytes are not a frame.
    Frame(FrameError),
    /// The read failed.
    Io(io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Eof => f.write_str("end of input"),
            ReadError::Truncated => f.write_str("input ended inside a frame"),
            ReadError::Frame(e) => e.fmt(f),
            ReadError::Io(e) => write!(f, "read failed: {e}"),
        }
    }
}

const READ_CHUNK: usize = 16 * 1024;

impl<R: Read> FrameReader<R> {
    /// A reader of frames of at most `max` bytes from `src`.
    pub(crate) fn new(src: R, max: u32) -> FrameReader<R> {
        FrameReader { src, buf: Vec::new(), start: 0, end: 0, max }
    }

    /// Changes the frame limit (after the handshake told it).
    pub(crate) fn set_max(&mut self, max: u32) {
        self.max = max;
    }

    /// The source, and the bytes received beyond the frames returned.
    pub(crate) fn into_parts(self) -> (R, Vec<u8>) {
        (self.src, self.buf[self.start..self.end].to_vec())
    }

    /// The next frame. Calls `before_block` once before any read that may
    /// block (so a writer can flush what it has).
    pub(crate) fn next(&mut self, mut before_block: impl FnMut()) -> Result<Frame<'_>, ReadError> {
        let mut flushed = false;
        loop {
            let rest = &self.buf[self.start..self.end];
            let need = match frame_len(rest, self.max) {
                Err(e) => return Err(ReadError::Frame(e)),
                Ok(None) => LEN_BYTES,
                Ok(Some(len)) if rest.len() >= LEN_BYTES + len => {
                    let at = self.start;
                    self.start += LEN_BYTES + len;
                    let body = &self.buf[at + LEN_BYTES..at + LEN_BYTES + len];
                    return decode_body(body).map_err(ReadError::Frame);
                }
                Ok(Some(len)) => LEN_BYTES + len,
            };
            if !flushed {
                before_block();
                flushed = true;
            }
            // Room for the rest of this frame (at least one chunk, to take
            // many small frames in one read): move the unread bytes to the
            // front, and grow only if that is not enough.
            let have = self.end - self.start;
            let want = need.saturating_sub(have).max(READ_CHUNK);
            if self.buf.len() - self.end < want {
                self.buf.copy_within(self.start..self.end, 0);
                self.start = 0;
                self.end = have;
                if self.buf.len() < have + want {
                    self.buf.resize(have + want, 0);
                }
            }
            let got = loop {
                match self.src.read(&mut self.buf[self.end..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(ReadError::Io(e)),
                }
            };
            if got == 0 {
                return Err(if have == 0 { ReadError::Eof } else { ReadError::Truncated });
            }
            self.end += got;
        }
    }
}

/// SipHash-2-4 with a 128-bit key: the keyed check (MAC) on CALL headers.
///
/// A pseudo-random function of its input for anyone who does not know the
/// key, so bytes not written by the holder of the pool's secret carry a valid
/// MAC with probability 2^-64.
pub(crate) fn siphash24(key: &[u8; 16], data: &[u8]) -> u64 {
    #[inline]
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13);
        v[1] ^= v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16);
        v[3] ^= v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21);
        v[3] ^= v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17);
        v[1] ^= v[2];
        v[2] = v[2].rotate_left(32);
    }
    let k0 = u64::from_le_bytes(key[..8].try_into().unwrap_or_default());
    let k1 = u64::from_le_bytes(key[8..].try_into().unwrap_or_default());
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let m = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        v[3] ^= m;
        round(&mut v);
        round(&mut v);
        v[0] ^= m;
    }
    let tail = chunks.remainder();
    let mut last = [0u8; 8];
    last[..tail.len()].copy_from_slice(tail);
    let m = u64::from_le_bytes(last) | ((data.len() as u64 & 0xff) << 56);
    v[3] ^= m;
    round(&mut v);
    round(&mut v);
    v[0] ^= m;
    v[2] ^= 0xff;
    for _ in 0..4 {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn siphash_matches_the_reference_vectors() {
        // The reference implementation's key 00..0f and messages 00..(n-1).
        let key: [u8; 16] = core::array::from_fn(|i| i as u8);
        let msg: Vec<u8> = (0..64).collect();
        assert_eq!(siphash24(&key, &msg[..0]), 0x726f_db47_dd0e_0e31);
        assert_eq!(siphash24(&key, &msg[..1]), 0x74f8_39c5_93dc_67fd);
        assert_eq!(siphash24(&key, &msg[..8]), 0x93f5_f579_9a93_2462);
        assert_eq!(siphash24(&key, &msg[..15]), 0xa129_ca61_49be_45e5);
    }

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        let hello = Hello {
            build_id: [7; 16],
            secret: [9; 16],
            max_frame: 1000,
            role: Role::Worker,
            max_tasks: 3,
        };
        put_hello(&mut buf, &hello);
        put_ready(&mut buf, 42, &[1; 16]);
        let header = CallHeader { task: 5, entry: -12, func: 34, type_hash: 6, mac: 7 };
        put_call(&mut buf, false, &header, 1000, |o| {
            o.extend_from_slice(b"args");
            Ok(())
        })
        .unwrap();
        put_panic(&mut buf, 5, "boom", 1000);
        let mut at = 0;
        let mut frames = Vec::new();
        while let Some((frame, used)) = decode(&buf[at..], 1000).unwrap() {
            frames.push(format!("{frame:?}"));
            at += used;
        }
        assert_eq!(at, buf.len());
        assert_eq!(frames.len(), 4);
        assert!(frames[0].contains("Worker"));
        assert!(frames[2].contains("task: 5, entry: -12, func: 34"));
        assert!(frames[3].contains("boom"));
    }

    /// A small xorshift generator: the property tests need no dependency.
    pub(crate) struct XorShift(pub(crate) u64);

    impl XorShift {
        pub(crate) fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    fn corpus() -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        let mut one = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = Vec::new();
            f(&mut b);
            frames.push(b);
        };
        one(&|b| {
            put_hello(
                b,
                &Hello {
                    build_id: [1; 16],
                    secret: [2; 16],
                    max_frame: 512,
                    role: Role::Process,
                    max_tasks: 0,
                },
            );
        });
        one(&|b| put_ready(b, 7, &[3; 16]));
        one(&|b| put_refused(b, "no"));
        one(&|b| {
            let h = CallHeader { task: 9, entry: 1, func: 2, type_hash: 3, mac: 4 };
            put_call(b, false, &h, 512, |o| {
                o.extend_from_slice(b"payload");
                Ok(())
            })
            .unwrap();
        });
        one(&|b| {
            let start = begin_ok(b, 9);
            b.extend_from_slice(&[5; 20]);
            end_ok(b, start, 512).unwrap();
        });
        one(&|b| put_panic(b, 9, "boom", 512));
        one(&|b| put_failed(b, 9, "bad", 512));
        one(&|b| put_init_failed(b, "init", 512));
        frames
    }

    const MAX: u32 = 512;

    /// Decodes everything in `buf` as the manager does, and reads it with
    /// the blocking reader as a child does; neither may panic, loop, or
    /// claim more bytes than there are.
    fn check(buf: &[u8]) {
        let mut at = 0;
        loop {
            match decode(&buf[at..], MAX) {
                Ok(Some((_, used))) => {
                    assert!(used > LEN_BYTES && at + used <= buf.len());
                    at += used;
                }
                Ok(None) => {
                    let rest = &buf[at..];
                    let complete = frame_len(rest, MAX)
                        .ok()
                        .flatten()
                        .is_some_and(|l| rest.len() >= LEN_BYTES + l);
                    assert!(!complete, "a whole frame was reported incomplete");
                    break;
                }
                Err(FrameError::Oversized { len, max }) => {
                    assert!(len > u64::from(max));
                    break;
                }
                Err(_) => break,
            }
        }
        let mut reader = FrameReader::new(std::io::Cursor::new(buf.to_vec()), MAX);
        for _ in 0..=buf.len() {
            match reader.next(|| {}) {
                Ok(_) => assert!(reader.buf.len() <= buf.len() + READ_CHUNK),
                Err(_) => return,
            }
        }
        panic!("the reader returned more frames than there are bytes");
    }

    #[test]
    fn the_decoder_survives_random_truncated_and_corrupted_input() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let corpus = corpus();
        for frame in &corpus {
            assert!(matches!(decode(frame, MAX), Ok(Some((_, n))) if n == frame.len()));
        }
        let rounds = if cfg!(miri) { 300 } else { 20_000 };
        for round in 0..rounds {
            let buf = match round % 5 {
                0 => {
                    let n = rng.below(300);
                    rng.bytes(n)
                }
                1 => {
                    let f = &corpus[rng.below(corpus.len())];
                    f[..rng.below(f.len())].to_vec()
                }
                2 => {
                    let mut f = corpus[rng.below(corpus.len())].clone();
                    for _ in 0..=rng.below(4) {
                        let bit = rng.below(f.len() * 8);
                        f[bit / 8] ^= 1 << (bit % 8);
                    }
                    f
                }
                3 => {
                    // A length prefix that lies, possibly enormous.
                    let mut f = (rng.next() as u32).to_le_bytes().to_vec();
                    let n = rng.below(64);
                    f.extend(rng.bytes(n));
                    f
                }
                _ => {
                    // Several frames back to back, the last one cut.
                    let mut f = Vec::new();
                    for _ in 0..=rng.below(4) {
                        f.extend_from_slice(&corpus[rng.below(corpus.len())]);
                    }
                    f.truncate(f.len() - rng.below(8).min(f.len()));
                    f
                }
            };
            check(&buf);
        }
    }

    #[test]
    fn the_reader_reports_truncation_eof_and_oversize() {
        let corpus = corpus();
        let frame = &corpus[3];
        let mut r = FrameReader::new(std::io::Cursor::new(frame[..frame.len() - 1].to_vec()), MAX);
        assert!(matches!(r.next(|| {}), Err(ReadError::Truncated)));
        let mut r = FrameReader::new(std::io::Cursor::new(frame.clone()), MAX);
        assert!(matches!(r.next(|| {}), Ok(Frame::Call(_))));
        assert!(matches!(r.next(|| {}), Err(ReadError::Eof)));
        // A prefix announcing 4 GiB is refused before anything is allocated.
        let mut r = FrameReader::new(std::io::Cursor::new(vec![0xff; 8]), MAX);
        assert!(matches!(r.next(|| {}), Err(ReadError::Frame(FrameError::Oversized { .. }))));
        assert!(r.buf.capacity() <= READ_CHUNK + 8);
    }

    #[test]
    fn an_oversized_call_is_refused_and_leaves_nothing() {
        let mut buf = vec![1, 2, 3];
        let header = CallHeader { task: 1, entry: 0, func: 0, type_hash: 0, mac: 0 };
        let r = put_call(&mut buf, false, &header, 50, |o| {
            o.extend_from_slice(&[0; 100]);
            Ok(())
        });
        assert!(r.unwrap_err().contains("over the limit"));
        assert_eq!(buf, [1, 2, 3]);
    }
}
