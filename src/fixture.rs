//! Recorded fixtures: `dac collect --record FIXDIR` tees every Engine API connection to
//! disk, `dac collect --replay FIXDIR` serves the recorded bytes back through the same
//! hyper client path, so a whole collection can be re-run without an engine.
//!
//! # Layout of FIXDIR ("dac-fixture/1")
//!
//! One connection is one exchange, numbered from 1 in the order connections first moved
//! a byte:
//!
//! - `NNNN.req`: the exact request bytes the client wrote.
//! - `NNNN.res`: the exact response bytes read from the wire, including chunked framing.
//! - For a response whose `Content-Type` is `application/x-tar` the body is kept apart so
//!   that `tar tvf NNNN.tar` works on exports and image saves of any size:
//!   `NNNN.res` then holds the wire bytes *minus* the body payload (status line, headers,
//!   chunk-size lines, chunk CRLFs, trailers) and `NNNN.tar` holds the payload bytes.
//!   The split is lossless: replay runs the same framing parser over `NNNN.res` to know
//!   when to take how many bytes from `NNNN.tar`, and rebuilds the identical wire stream
//!   (same chunk sizes, same extensions, a truncated last chunk stays truncated).
//!   `manifest.json` records the SHA-256 and length of that rebuilt stream too, and
//!   [`Replay::load`] rebuilds it once to check it.
//! - `manifest.json`: format, engine description and one entry per exchange (see
//!   [`Recorder::finish`]).
//!
//! The recorder writes the response to disk from inside `poll_read` with plain
//! buffered file writes: the bytes reach the caller unchanged, memory stays bounded
//! whatever the response size, and a failing disk never changes what the collector sees
//! (the failure is reported by [`Recorder::finish`]).

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::error::{Error, Kind, Result};
use crate::transport::{hex, BoxIo};

/// Value of the manifest's `format` field.
pub const FORMAT: &str = "dac-fixture/1";
/// Name of the manifest inside FIXDIR.
pub const MANIFEST: &str = "manifest.json";
/// Header carried by every answer the replay gives when it has nothing recorded.
pub const MISS_HEADER: &str = "X-Dac-Replay";
/// Status of that answer.
pub const MISS_STATUS: u16 = 599;

/// Query keys that are timestamps chosen at collection time for `/events`.
const EVENTS_IGNORED: [&str; 2] = ["since", "until"];
/// Requests are a single head without body; anything bigger is not ours.
const MAX_REQUEST: usize = 1 << 20;
/// Bound on a response or request head (the daemon's own are a few hundred bytes).
const MAX_HEAD: usize = 64 << 10;
/// Bound on one chunk-size or trailer line.
const MAX_LINE: usize = 4096;
const MAX_MANIFEST: u64 = 64 << 20;
const MAX_EXCHANGES: usize = 1_000_000;
/// 1 TiB: larger than any realistic export, small enough to refuse nonsense.
const MAX_FILE: u64 = 1 << 40;
const MAX_IGNORED_KEYS: usize = 64;
const MAX_TEXT: usize = 16 << 10;
const IO_CHUNK: usize = 64 << 10;
/// How long a replay connection waits for the client to send its request head.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

fn replay_err(msg: impl Into<String>) -> Error {
    Error::new(Kind::Replay, msg)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data half-updated in a
    // way that matters more than losing the recording, so poisoning is ignored.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------
// Response framing: which wire bytes are HTTP framing and which are body payload.
// Recording and replay run this same parser over the same bytes, which is what makes
// the head/body split reversible whatever the input (even malformed: once the parser
// gives up, every further byte counts as framing on both sides).
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Frame,
    Data(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Head,
    ChunkSize,
    ChunkEnd,
    Trailer,
    Data { left: u64, then_chunk: bool },
    Raw,
}

#[derive(Debug)]
struct Framing {
    st: St,
    head_request: bool,
    line: Vec<u8>,
    status: Option<u16>,
    tar: bool,
    complete: bool,
    until_eof: bool,
}

impl Framing {
    fn new(head_request: bool) -> Framing {
        Framing {
            st: St::Head,
            head_request,
            line: Vec::new(),
            status: None,
            tar: false,
            complete: false,
            until_eof: false,
        }
    }

    fn want(&self) -> Want {
        match self.st {
            St::Data { left, .. } => Want::Data(left),
            _ => Want::Frame,
        }
    }

    /// Consumes framing bytes from the front of `buf` and stops where payload starts.
    /// Returns how many were consumed: at least one if `buf` is not empty and the parser
    /// is not in a payload state.
    fn feed_frame(&mut self, buf: &[u8]) -> usize {
        let mut i = 0;
        while i < buf.len() {
            let b = buf[i];
            match self.st {
                St::Data { .. } => break,
                St::Raw => {
                    i = buf.len();
                    break;
                }
                St::Head => {
                    self.line.push(b);
                    i += 1;
                    if self.line.ends_with(b"\r\n\r\n") || self.line.ends_with(b"\n\n") {
                        self.end_head();
                    } else if self.line.len() >= MAX_HEAD {
                        self.give_up();
                    }
                }
                St::ChunkSize | St::ChunkEnd | St::Trailer => {
                    self.line.push(b);
                    i += 1;
                    if b == b'\n' {
                        self.end_line();
                    } else if self.line.len() >= MAX_LINE {
                        self.give_up();
                    }
                }
            }
        }
        i
    }

    fn feed_data(&mut self, n: u64) {
        if let St::Data { left, then_chunk } = self.st {
            let left = left.saturating_sub(n);
            self.st = if left > 0 {
                St::Data { left, then_chunk }
            } else if then_chunk {
                St::ChunkEnd
            } else {
                self.complete = true;
                St::Raw
            };
        }
    }

    fn give_up(&mut self) {
        self.line = Vec::new();
        self.st = St::Raw;
    }

    fn end_head(&mut self) {
        let head = std::mem::take(&mut self.line);
        let mut lines = head
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        self.status = lines.next().and_then(parse_status_line);
        let mut te: Option<Vec<u8>> = None;
        let mut cl: Vec<&[u8]> = Vec::new();
        for line in lines {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let name = &line[..colon];
            let value = trim(&line[colon + 1..]);
            if name.eq_ignore_ascii_case(b"transfer-encoding") {
                let t = te.get_or_insert_with(Vec::new);
                if !t.is_empty() {
                    t.push(b',');
                }
                t.extend_from_slice(value);
            } else if name.eq_ignore_ascii_case(b"content-length") {
                cl.push(value);
            } else if name.eq_ignore_ascii_case(b"content-type") {
                let v = value.to_ascii_lowercase();
                self.tar = v == b"application/x-tar" || v.starts_with(b"application/x-tar;");
            }
        }
        let no_body = match self.status {
            None => true,
            Some(s) => self.head_request || (100..200).contains(&s) || s == 204 || s == 304,
        };
        self.st = if no_body {
            self.complete = self.status.is_some();
            St::Raw
        } else if let Some(te) = te {
            let last = te.rsplit(|&b| b == b',').next().map(trim).unwrap_or(b"");
            if last.eq_ignore_ascii_case(b"chunked") {
                St::ChunkSize
            } else {
                self.until_eof = true;
                St::Data {
                    left: u64::MAX,
                    then_chunk: false,
                }
            }
        } else if let Some(first) = cl.first() {
            match parse_dec(first) {
                Some(n) if cl.iter().all(|v| parse_dec(v) == Some(n)) => {
                    if n == 0 {
                        self.complete = true;
                        St::Raw
                    } else {
                        St::Data {
                            left: n,
                            then_chunk: false,
                        }
                    }
                }
                _ => St::Raw,
            }
        } else {
            self.until_eof = true;
            St::Data {
                left: u64::MAX,
                then_chunk: false,
            }
        };
    }

    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        let bare = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(&line);
        self.st = match self.st {
            St::ChunkSize => {
                let size = bare.split(|&b| b == b';').next().map(trim).unwrap_or(b"");
                match parse_hex(size) {
                    Some(0) => St::Trailer,
                    Some(n) => St::Data {
                        left: n,
                        then_chunk: true,
                    },
                    None => St::Raw,
                }
            }
            St::ChunkEnd if bare.is_empty() => St::ChunkSize,
            St::Trailer if bare.is_empty() => {
                self.complete = true;
                St::Raw
            }
            St::Trailer => St::Trailer,
            _ => St::Raw,
        };
    }

    /// Whether the body ended where the head said it would (an EOF-delimited body
    /// always does).
    fn body_complete(&self) -> bool {
        self.complete || self.until_eof
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn parse_dec(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

fn parse_hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 || !s.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(s).ok()?, 16).ok()
}

fn parse_status_line(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let [_minor, b' ', a, b, c, tail @ ..] = rest else {
        return None;
    };
    if !(a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit()) {
        return None;
    }
    if !(tail.is_empty() || tail[0] == b' ') {
        return None;
    }
    Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
}

/// Method and request target from the first line of a request head.
fn parse_request_line(head: &[u8]) -> Option<(String, String)> {
    let end = head.iter().position(|&b| b == b'\n')?;
    let line = head[..end].strip_suffix(b"\r").unwrap_or(&head[..end]);
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let method = parts.next()?;
    let target = parts.next()?;
    let version = parts.next()?;
    if parts.next().is_some()
        || !version.starts_with("HTTP/1.")
        || !valid_method(method)
        || method.is_empty()
        || !valid_target_part(target)
    {
        return None;
    }
    Some((method.to_string(), target.to_string()))
}

fn valid_method(m: &str) -> bool {
    m.len() <= 32 && m.bytes().all(|b| b.is_ascii_uppercase())
}

fn valid_target_part(s: &str) -> bool {
    s.len() <= MAX_TEXT && s.bytes().all(|b| b.is_ascii_graphic())
}

fn split_target(target: &str) -> (&str, &str) {
    match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, ""),
    }
}

/// The query keys a recording is matched without.
fn ignored_keys(path: &str) -> Vec<String> {
    if path.ends_with("/events") {
        EVENTS_IGNORED.iter().map(|s| s.to_string()).collect()
    } else {
        Vec::new()
    }
}

/// A query as a sorted multiset of `key=value` items, without the ignored keys.
fn normalize_query(query: &str, ignore: &[String]) -> Vec<String> {
    let mut items: Vec<String> = query
        .split('&')
        .filter(|item| !item.is_empty())
        .filter(|item| {
            let key = item.split_once('=').map_or(*item, |(k, _)| k);
            !ignore.iter().any(|i| i == key)
        })
        .map(str::to_string)
        .collect();
    items.sort();
    items
}

/// The ignored keys a query carries, sorted and deduplicated.
fn present_keys(query: &str, ignore: &[String]) -> Vec<String> {
    let mut keys: Vec<String> = query
        .split('&')
        .map(|item| item.split_once('=').map_or(item, |(k, _)| k))
        .filter(|key| ignore.iter().any(|i| i == key))
        .map(str::to_string)
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

// ---------------------------------------------------------------------------------
// Recording
// ---------------------------------------------------------------------------------

/// Writes a fixture directory from the connections it is asked to wrap.
pub struct Recorder {
    dir: PathBuf,
    engine: Mutex<Value>,
    next_id: AtomicU32,
    live: AtomicUsize,
    exchanges: Mutex<Vec<(u32, Value)>>,
    problems: Mutex<Vec<String>>,
}

impl Recorder {
    /// FIXDIR must not exist or be an empty directory; it is created if missing.
    /// `engine` describes where the recording comes from (engine name, version, API
    /// version, recorded_at) and is stored in the manifest.
    pub fn create(dir: &Path, engine: Value) -> Result<Arc<Recorder>> {
        match fs::symlink_metadata(dir) {
            Ok(meta) => {
                if !meta.is_dir() {
                    return Err(Error::usage(format!(
                        "fixture directory {} exists and is not a directory",
                        dir.display()
                    )));
                }
                let mut entries = fs::read_dir(dir).map_err(|e| Error::io(dir.display(), e))?;
                if entries.next().is_some() {
                    return Err(Error::usage(format!(
                        "fixture directory {} is not empty",
                        dir.display()
                    )));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
            }
            Err(e) => return Err(Error::io(dir.display(), e)),
        }
        Ok(Arc::new(Recorder {
            dir: dir.to_path_buf(),
            engine: Mutex::new(engine),
            next_id: AtomicU32::new(0),
            live: AtomicUsize::new(0),
            exchanges: Mutex::new(Vec::new()),
            problems: Mutex::new(Vec::new()),
        }))
    }

    /// Tees a fresh connection. One connection is one exchange; it is stored when the
    /// returned wrapper is dropped.
    pub fn wrap(self: &Arc<Self>, io: BoxIo) -> BoxIo {
        self.live.fetch_add(1, Ordering::SeqCst);
        Box::new(Tee {
            inner: io,
            rec: Arc::clone(self),
            id: None,
            req: Vec::new(),
            req_total: 0,
            res: None,
            body: None,
            framing: None,
            head_known: false,
            split: None,
            wire: Sha256::new(),
            wire_len: 0,
            failed: None,
        })
    }

    /// Replaces the engine description (it is often only known after the first
    /// exchanges, `/_ping` and `/version`).
    pub fn set_engine(&self, engine: Value) {
        *lock(&self.engine) = engine;
    }

    /// Number of wrapped connections not dropped yet.
    pub fn in_flight(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// Waits until every wrapped connection has been dropped (hyper drops a
    /// connection's I/O in its own task, shortly after the body was read) or `timeout`
    /// passed. Returns how many are still open.
    pub async fn settle(&self, timeout: Duration) -> usize {
        let start = tokio::time::Instant::now();
        loop {
            let live = self.in_flight();
            if live == 0 || start.elapsed() >= timeout {
                return live;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Writes `manifest.json` (through a temporary file and a rename), for example:
    ///
    /// ```json
    /// {
    ///   "format": "dac-fixture/1",
    ///   "engine": {"name": "docker", "version": "28.5.1", "api_version": "1.51",
    ///              "recorded_at": "2026-12-02T15:16:38Z"},
    ///   "recorder": {"tool": "dac", "version": "0.2.0"},
    ///   "exchanges": [
    ///     {"id": 1, "method": "GET", "path": "/v1.51/events", "query": "since=1&until=2",
    ///      "match": {"ignore_query": ["since", "until"]},
    ///      "request": {"file": "0001.req", "sha256": "…", "length": 121},
    ///      "response": {"status": 200, "layout": "wire", "complete": true,
    ///                   "res": {"file": "0001.res", "sha256": "…", "length": 513},
    ///                   "wire_sha256": "…", "wire_length": 513}},
    ///     {"id": 2, "method": "GET", "path": "/v1.51/containers/<id>/export", "query": "",
    ///      "match": {"ignore_query": []},
    ///      "request": {"file": "0002.req", "sha256": "…", "length": 140},
    ///      "response": {"status": 200, "layout": "split", "complete": true,
    ///                   "res": {"file": "0002.res", "sha256": "…", "length": 2210},
    ///                   "body": {"file": "0002.tar", "sha256": "…", "length": 10240000},
    ///                   "wire_sha256": "…", "wire_length": 10242210}}
    ///   ]
    /// }
    /// ```
    ///
    /// `status` is null when no complete response head arrived; `complete` says whether
    /// the body ended where its framing said (false for a cut-off transfer). Fails if a
    /// file could not be written or connections are still open (the manifest is then
    /// still written, without them, so what was recorded can be examined).
    pub fn finish(&self) -> Result<()> {
        let live = self.in_flight();
        let mut exchanges = lock(&self.exchanges).clone();
        exchanges.sort_by_key(|(id, _)| *id);
        let manifest = json!({
            "format": FORMAT,
            "engine": lock(&self.engine).clone(),
            "recorder": {"tool": "dac", "version": env!("CARGO_PKG_VERSION")},
            "exchanges": exchanges.into_iter().map(|(_, v)| v).collect::<Vec<Value>>(),
        });
        let mut text = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| Error::new(Kind::Io, format!("fixture manifest: {e}")))?;
        text.push(b'\n');
        let tmp = self.dir.join(format!("{MANIFEST}.tmp"));
        let path = self.dir.join(MANIFEST);
        let write = || -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| Error::io(path.display(), e))?;
        let problems = lock(&self.problems).clone();
        if !problems.is_empty() {
            return Err(Error::new(
                Kind::Io,
                format!(
                    "fixture {} is incomplete: {}",
                    self.dir.display(),
                    problems.join("; ")
                ),
            ));
        }
        if live > 0 {
            return Err(replay_err(format!(
                "fixture {} is incomplete: {live} connection(s) still open when it was finished",
                self.dir.display()
            )));
        }
        Ok(())
    }
}

/// One file being written, hashed as it goes.
struct Sink {
    name: String,
    w: BufWriter<File>,
    hash: Sha256,
    len: u64,
}

impl Sink {
    fn create(dir: &Path, name: String) -> io::Result<Sink> {
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dir.join(&name))?;
        Ok(Sink {
            name,
            w: BufWriter::with_capacity(256 << 10, f),
            hash: Sha256::new(),
            len: 0,
        })
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.hash.update(data);
        self.len += data.len() as u64;
        self.w.write_all(data)
    }

    fn finish(self) -> io::Result<Value> {
        // No fsync here: this runs in Drop on a runtime thread, and a file torn by a
        // crash is caught by its hash when the fixture is loaded.
        self.w.into_inner().map_err(|e| e.into_error())?;
        Ok(json!({"file": self.name, "sha256": hex(&self.hash.finalize()), "length": self.len}))
    }
}

struct Tee {
    inner: BoxIo,
    rec: Arc<Recorder>,
    id: Option<u32>,
    req: Vec<u8>,
    req_total: u64,
    res: Option<Sink>,
    body: Option<Sink>,
    framing: Option<Framing>,
    /// The request line was complete when the response began, so the framing parser
    /// knew whether it answers a HEAD.
    head_known: bool,
    split: Option<bool>,
    wire: Sha256,
    wire_len: u64,
    failed: Option<String>,
}

impl Tee {
    fn id(&mut self) -> u32 {
        *self
            .id
            .get_or_insert_with(|| self.rec.next_id.fetch_add(1, Ordering::SeqCst) + 1)
    }

    fn name(&mut self, ext: &str) -> String {
        format!("{:04}.{ext}", self.id())
    }

    fn on_write(&mut self, data: &[u8]) {
        self.id();
        self.req_total += data.len() as u64;
        let room = MAX_REQUEST.saturating_sub(self.req.len());
        self.req.extend_from_slice(&data[..data.len().min(room)]);
    }

    fn on_read(&mut self, data: &[u8]) {
        self.wire.update(data);
        self.wire_len += data.len() as u64;
        if self.failed.is_some() {
            return;
        }
        if let Err(e) = self.store_read(data) {
            self.failed = Some(e.to_string());
        }
    }

    fn store_read(&mut self, data: &[u8]) -> io::Result<()> {
        if self.framing.is_none() {
            let method = parse_request_line(&self.req).map(|(m, _)| m);
            self.head_known = method.is_some();
            self.framing = Some(Framing::new(method.as_deref() == Some("HEAD")));
        }
        if self.res.is_none() {
            let name = self.name("res");
            self.res = Some(Sink::create(&self.rec.dir, name)?);
        }
        let mut rest = data;
        while !rest.is_empty() {
            let (Some(framing), Some(res)) = (self.framing.as_mut(), self.res.as_mut()) else {
                return Err(io::Error::other("recorder state lost"));
            };
            match framing.want() {
                Want::Frame => {
                    let k = framing.feed_frame(rest);
                    res.write(&rest[..k])?;
                    rest = &rest[k..];
                }
                Want::Data(left) => {
                    let k = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    framing.feed_data(k as u64);
                    let tar = framing.tar;
                    let split = *self.split.get_or_insert(self.head_known && tar);
                    if split {
                        if self.body.is_none() {
                            let name = self.name("tar");
                            self.body = Some(Sink::create(&self.rec.dir, name)?);
                        }
                        if let Some(body) = self.body.as_mut() {
                            body.write(&rest[..k])?;
                        }
                    } else {
                        res.write(&rest[..k])?;
                    }
                    rest = &rest[k..];
                }
            }
        }
        Ok(())
    }

    /// The manifest entry for this exchange, or None if nothing was exchanged.
    fn finalize(&mut self) -> std::result::Result<Option<(u32, Value)>, String> {
        let Some(id) = self.id else {
            return Ok(None);
        };
        if let Some(e) = &self.failed {
            return Err(format!("exchange {id}: {e}"));
        }
        if self.req_total > MAX_REQUEST as u64 {
            return Err(format!(
                "exchange {id}: request of {} bytes exceeds the {MAX_REQUEST} byte limit",
                self.req_total
            ));
        }
        let fail = |e: io::Error| format!("exchange {id}: {e}");
        let mut req = Sink::create(&self.rec.dir, format!("{id:04}.req")).map_err(fail)?;
        req.write(&self.req).map_err(fail)?;
        let request = req.finish().map_err(fail)?;
        let res = match self.res.take() {
            Some(s) => s,
            None => Sink::create(&self.rec.dir, format!("{id:04}.res")).map_err(fail)?,
        };
        let res = res.finish().map_err(fail)?;
        let body = self
            .body
            .take()
            .map(Sink::finish)
            .transpose()
            .map_err(fail)?;
        let (method, target) = parse_request_line(&self.req).unwrap_or_default();
        let (path, query) = split_target(&target);
        let framing = self.framing.take();
        let status = framing.as_ref().and_then(|f| f.status);
        let complete = framing.as_ref().is_some_and(Framing::body_complete);
        let mut response = json!({
            "status": status,
            "layout": if body.is_some() { "split" } else { "wire" },
            "complete": complete,
            "res": res,
            "wire_sha256": hex(&std::mem::take(&mut self.wire).finalize()),
            "wire_length": self.wire_len,
        });
        if let (Some(body), Some(obj)) = (body, response.as_object_mut()) {
            obj.insert("body".to_string(), body);
        }
        Ok(Some((
            id,
            json!({
                "id": id,
                "method": method,
                "path": path,
                "query": query,
                "match": {"ignore_query": ignored_keys(path)},
                "request": request,
                "response": response,
            }),
        )))
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        match self.finalize() {
            Ok(Some(entry)) => lock(&self.rec.exchanges).push(entry),
            Ok(None) => {}
            Err(problem) => lock(&self.rec.problems).push(problem),
        }
        self.rec.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl AsyncRead for Tee {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            let new = buf.filled().get(before..).unwrap_or_default();
            if !new.is_empty() {
                this.id();
                this.on_read(new);
            }
        }
        r
    }
}

impl AsyncWrite for Tee {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            if *n > 0 {
                this.on_write(&buf[..(*n).min(buf.len())]);
            }
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &r {
            let mut left = *n;
            for b in bufs {
                if left == 0 {
                    break;
                }
                let k = left.min(b.len());
                this.on_write(&b[..k]);
                left -= k;
            }
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

// ---------------------------------------------------------------------------------
// Replay
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct FileRef {
    name: String,
    sha256: String,
    length: u64,
}

#[derive(Debug)]
enum Layout {
    Wire { res: FileRef },
    Split { res: FileRef, body: FileRef },
}

#[derive(Debug)]
struct Entry {
    method: String,
    ignore: Vec<String>,
    query: Vec<String>,
    /// Which ignored keys the recorded request carried.
    present: Vec<String>,
    layout: Layout,
    /// The live event stream never ends by itself: the collector closed it while recording.
    /// Replay then holds the connection open after the recorded bytes, as the engine did.
    held_open: bool,
}

/// A loaded and checked fixture directory that serves in-memory connections.
pub struct Replay {
    dir: PathBuf,
    engine: Value,
    entries: Vec<Entry>,
    /// "METHOD path" -> indexes into `entries`, in recording order.
    index: HashMap<String, Vec<usize>>,
    /// How often each group of matching recordings was served, keyed by the group.
    served: Mutex<HashMap<Vec<usize>, usize>>,
}

impl std::fmt::Debug for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replay")
            .field("dir", &self.dir)
            .field("exchanges", &self.entries.len())
            .finish()
    }
}

/// One file of a fixture, read up to its manifest length and optionally hashed.
struct Src {
    r: io::Take<File>,
    hash: Option<Sha256>,
    count: u64,
}

impl Src {
    fn open(dir: &Path, f: &FileRef, hashed: bool) -> io::Result<Src> {
        let file = File::open(dir.join(&f.name))?;
        Ok(Src {
            r: file.take(f.length),
            hash: hashed.then(Sha256::new),
            count: 0,
        })
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = loop {
            match self.r.read(buf) {
                Ok(k) => break k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        if let Some(h) = self.hash.as_mut() {
            h.update(&buf[..k]);
        }
        self.count += k as u64;
        Ok(k)
    }

    fn sha256(&mut self) -> String {
        self.hash
            .take()
            .map(|h| hex(&h.finalize()))
            .unwrap_or_default()
    }
}

/// Rebuilds the wire bytes of a split response from its framing file and its body.
struct Rebuild {
    framing: Framing,
    res: Src,
    body: Src,
    buf: Vec<u8>,
    pos: usize,
    fill: usize,
}

impl Rebuild {
    fn new(res: Src, body: Src) -> Rebuild {
        Rebuild {
            // A response with a split body never answered a HEAD: the recorder only
            // splits once the parser found payload, which a HEAD answer has none of.
            framing: Framing::new(false),
            res,
            body,
            buf: vec![0; IO_CHUNK],
            pos: 0,
            fill: 0,
        }
    }

    /// Puts the next piece of the response into `out`; false at the end.
    fn next(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        out.clear();
        match self.framing.want() {
            Want::Frame => {
                if self.pos == self.fill {
                    let k = self.res.read(&mut self.buf)?;
                    if k == 0 {
                        return Ok(false);
                    }
                    self.pos = 0;
                    self.fill = k;
                }
                let k = self.framing.feed_frame(&self.buf[self.pos..self.fill]);
                out.extend_from_slice(&self.buf[self.pos..self.pos + k]);
                self.pos += k;
                Ok(true)
            }
            Want::Data(left) => {
                let cap = usize::try_from(left).unwrap_or(usize::MAX).min(IO_CHUNK);
                out.resize(cap, 0);
                let k = self.body.read(out)?;
                out.truncate(k);
                if k == 0 {
                    // The wire ended inside the payload; the framing file ends here too.
                    return Ok(false);
                }
                self.framing.feed_data(k as u64);
                Ok(true)
            }
        }
    }

    fn framing_left(&self) -> bool {
        self.pos < self.fill
    }
}

fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Replay {
    /// Loads FIXDIR and checks every file against its manifest length and SHA-256 (and
    /// each split response against the hash of its rebuilt wire bytes) before anything
    /// is served. Any mismatch, missing or extra-linked file, unknown format, or file
    /// name that could leave FIXDIR is an error of kind `Replay`.
    pub fn load(dir: &Path) -> Result<Arc<Replay>> {
        let bad = |msg: String| replay_err(format!("fixture {}: {msg}", dir.display()));
        let meta = fs::metadata(dir).map_err(|e| bad(e.to_string()))?;
        if !meta.is_dir() {
            return Err(bad("not a directory".to_string()));
        }
        let manifest_path = dir.join(MANIFEST);
        let meta =
            fs::symlink_metadata(&manifest_path).map_err(|e| bad(format!("{MANIFEST}: {e}")))?;
        if !meta.is_file() {
            return Err(bad(format!("{MANIFEST} is not a regular file")));
        }
        if meta.len() > MAX_MANIFEST {
            return Err(bad(format!(
                "{MANIFEST} is {} bytes, more than the {MAX_MANIFEST} byte limit",
                meta.len()
            )));
        }
        let mut text = Vec::new();
        File::open(&manifest_path)
            .and_then(|f| f.take(MAX_MANIFEST + 1).read_to_end(&mut text))
            .map_err(|e| bad(format!("{MANIFEST}: {e}")))?;
        if text.len() as u64 > MAX_MANIFEST {
            return Err(bad(format!("{MANIFEST} grew while being read")));
        }
        let manifest: Value = serde_json::from_slice(&text)
            .map_err(|e| bad(format!("{MANIFEST} is not JSON: {e}")))?;
        drop(text);
        match manifest.get("format").and_then(Value::as_str) {
            Some(FORMAT) => {}
            Some(other) => {
                return Err(bad(format!(
                    "unknown format {:?} (expected {FORMAT:?})",
                    truncate(other)
                )))
            }
            None => return Err(bad("manifest has no format".to_string())),
        }
        let engine = manifest.get("engine").cloned().unwrap_or(Value::Null);
        let list = manifest
            .get("exchanges")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("manifest has no exchanges array".to_string()))?;
        if list.len() > MAX_EXCHANGES {
            return Err(bad(format!("{} exchanges is too many", list.len())));
        }
        let mut used: HashSet<String> = HashSet::from([MANIFEST.to_string()]);
        let mut ids = HashSet::new();
        let mut entries = Vec::with_capacity(list.len());
        let mut index: HashMap<String, Vec<usize>> = HashMap::new();
        for (n, ex) in list.iter().enumerate() {
            let (key, entry) = load_exchange(dir, ex, &mut used, &mut ids)
                .map_err(|m| bad(format!("exchange #{n}: {m}")))?;
            index.entry(key).or_default().push(entries.len());
            entries.push(entry);
        }
        Ok(Arc::new(Replay {
            dir: dir.to_path_buf(),
            engine,
            entries,
            index,
            served: Mutex::new(HashMap::new()),
        }))
    }

    /// The engine description the fixture was recorded from.
    pub fn engine(&self) -> &Value {
        &self.engine
    }

    /// Number of recorded exchanges.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the fixture holds no exchange.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// An in-memory connection served by a task on the current tokio runtime: it
    /// reads one request head, and answers with the recorded response bytes of the
    /// matching exchange, then closes. Matching is on method, path, and query as a
    /// multiset of `key=value` items without the exchange's ignored keys; among several
    /// matches, those whose request carried the same ignored keys are preferred (a
    /// bounded `since&until` events query versus a live `since` one). Identical
    /// requests may come any number of times: the k-th gets the k-th recording of that
    /// request, the last one once they are used up. Anything but GET or HEAD, a
    /// malformed request and a request without recording get `599 Replay Miss` with
    /// `X-Dac-Replay: miss`. Outside a tokio runtime the connection is closed at once.
    pub fn connect(self: &Arc<Self>) -> BoxIo {
        let (client, server) = tokio::io::duplex(IO_CHUNK);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let me = Arc::clone(self);
            rt.spawn(async move { me.serve(server).await });
        }
        Box::new(client)
    }

    async fn serve(&self, mut io: tokio::io::DuplexStream) {
        let Ok(Some(head)) = tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut io)).await else {
            return;
        };
        let request = parse_request_line(&head);
        let found = match &request {
            Some((method, target)) if method == "GET" || method == "HEAD" => {
                self.find(method, target)
            }
            _ => None,
        };
        let what = match &request {
            Some((m, t)) => format!("{m} {t}"),
            None => "malformed request".to_string(),
        };
        let sent = match found {
            Some(i) => self.send(i, &mut io, &what).await,
            None => send_miss(&mut io, &format!("no recorded exchange for {what}")).await,
        };
        if sent.is_ok() && found.is_some_and(|i| self.entries.get(i).is_some_and(|e| e.held_open)) {
            let mut sink = [0u8; 256];
            while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {}
        }
        let _ = io.shutdown().await;
    }

    fn find(&self, method: &str, target: &str) -> Option<usize> {
        let (path, query) = split_target(target);
        let candidates = self.index.get(&format!("{method} {path}"))?;
        let matches: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&i| {
                let e = &self.entries[i];
                e.method == method && normalize_query(query, &e.ignore) == e.query
            })
            .collect();
        // A historical `/events?since=..&until=..` and a live `/events?since=..` match
        // each other once the timestamps are dropped; the one whose ignored keys are
        // the same is the better answer.
        let present = |i: &usize| {
            let e = &self.entries[*i];
            e.present == present_keys(query, &e.ignore)
        };
        let same: Vec<usize> = matches.iter().copied().filter(present).collect();
        let matches = if same.is_empty() { matches } else { same };
        let last = matches.len().checked_sub(1)?;
        let mut served = lock(&self.served);
        let k = served.entry(matches.clone()).or_insert(0);
        let pick = matches[(*k).min(last)];
        *k += 1;
        Some(pick)
    }

    async fn send(&self, i: usize, io: &mut tokio::io::DuplexStream, what: &str) -> io::Result<()> {
        let Some(entry) = self.entries.get(i) else {
            return send_miss(io, &format!("no recorded exchange for {what}")).await;
        };
        let mut out = Vec::with_capacity(IO_CHUNK);
        match &entry.layout {
            Layout::Wire { res } => {
                let mut src = match Src::open(&self.dir, res, false) {
                    Ok(s) => s,
                    Err(e) => {
                        return send_miss(io, &format!("fixture file {}: {e}", res.name)).await
                    }
                };
                out.resize(IO_CHUNK, 0);
                loop {
                    let k = src.read(&mut out)?;
                    if k == 0 {
                        return Ok(());
                    }
                    io.write_all(&out[..k]).await?;
                }
            }
            Layout::Split { res, body } => {
                let opened = Src::open(&self.dir, res, false)
                    .and_then(|r| Ok((r, Src::open(&self.dir, body, false)?)));
                let (r, b) = match opened {
                    Ok(pair) => pair,
                    Err(e) => return send_miss(io, &format!("fixture file of {what}: {e}")).await,
                };
                let mut rebuild = Rebuild::new(r, b);
                while rebuild.next(&mut out)? {
                    io.write_all(&out).await?;
                }
                Ok(())
            }
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(100).collect()
}

/// Reads a request head (bounded); None if the client went away first.
async fn read_head(io: &mut tokio::io::DuplexStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if head_end(&head).is_some() || head.len() >= MAX_HEAD {
            return Some(head);
        }
        let k = io.read(&mut buf).await.ok()?;
        if k == 0 {
            return (!head.is_empty()).then_some(head);
        }
        head.extend_from_slice(&buf[..k]);
    }
}

async fn send_miss(io: &mut tokio::io::DuplexStream, detail: &str) -> io::Result<()> {
    let mut body: String = detail
        .chars()
        .take(400)
        .flat_map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                vec![c]
            } else {
                c.escape_default().collect()
            }
        })
        .collect();
    body.insert_str(0, "dac replay: ");
    body.push('\n');
    let head = format!(
        "HTTP/1.1 {MISS_STATUS} Replay Miss\r\n{MISS_HEADER}: miss\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    io.write_all(head.as_bytes()).await?;
    io.write_all(body.as_bytes()).await?;
    io.flush().await
}

fn file_ref(v: Option<&Value>, what: &str) -> std::result::Result<FileRef, String> {
    let v = v.ok_or_else(|| format!("{what}: missing"))?;
    let name = v
        .get("file")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{what}: no file name"))?;
    if name.contains("..") || name.starts_with('/') || name.starts_with('\\') || name.contains('/')
    {
        return Err(format!(
            "{what}: file {:?} escapes the fixture directory",
            truncate(name)
        ));
    }
    if !safe_name(name) {
        return Err(format!(
            "{what}: file name {:?} is not allowed",
            truncate(name)
        ));
    }
    let sha256 = v
        .get("sha256")
        .and_then(Value::as_str)
        .filter(|s| is_sha256_hex(s))
        .ok_or_else(|| format!("{what}: sha256 missing or not 64 lowercase hex"))?;
    let length = v
        .get("length")
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("{what}: length missing"))?;
    if length > MAX_FILE {
        return Err(format!("{what}: length {length} is absurd"));
    }
    Ok(FileRef {
        name: name.to_string(),
        sha256: sha256.to_string(),
        length,
    })
}

/// Checks that a referenced file is a regular file of the manifest's length.
fn check_present(
    dir: &Path,
    f: &FileRef,
    used: &mut HashSet<String>,
) -> std::result::Result<(), String> {
    if !used.insert(f.name.clone()) {
        return Err(format!("file {} is referenced twice", f.name));
    }
    let meta = fs::symlink_metadata(dir.join(&f.name)).map_err(|e| format!("{}: {e}", f.name))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", f.name));
    }
    if meta.len() != f.length {
        return Err(format!(
            "{} is {} bytes, the manifest says {}",
            f.name,
            meta.len(),
            f.length
        ));
    }
    Ok(())
}

fn check_hash(f: &FileRef, src: &mut Src) -> std::result::Result<(), String> {
    if src.count != f.length {
        return Err(format!(
            "{}: read {} bytes, the manifest says {}",
            f.name, src.count, f.length
        ));
    }
    let got = src.sha256();
    if got != f.sha256 {
        return Err(format!(
            "{}: sha256 {got} does not match the manifest ({})",
            f.name, f.sha256
        ));
    }
    Ok(())
}

fn text_field<'a>(ex: &'a Value, key: &str) -> std::result::Result<&'a str, String> {
    let s = ex
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{key} missing"))?;
    if s.len() > MAX_TEXT || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{key} {:?} is not a valid request part",
            truncate(s)
        ));
    }
    Ok(s)
}

fn load_exchange(
    dir: &Path,
    ex: &Value,
    used: &mut HashSet<String>,
    ids: &mut HashSet<u64>,
) -> std::result::Result<(String, Entry), String> {
    let id = ex.get("id").and_then(Value::as_u64).ok_or("id missing")?;
    if !ids.insert(id) {
        return Err(format!("id {id} appears twice"));
    }
    let method = text_field(ex, "method")?;
    if !valid_method(method) {
        return Err(format!("method {:?} is not valid", truncate(method)));
    }
    let path = text_field(ex, "path")?;
    let query = text_field(ex, "query")?;
    let ignore_list = ex
        .get("match")
        .and_then(|m| m.get("ignore_query"))
        .and_then(Value::as_array)
        .ok_or("match.ignore_query missing")?;
    if ignore_list.len() > MAX_IGNORED_KEYS {
        return Err("match.ignore_query is too long".to_string());
    }
    let ignore = ignore_list
        .iter()
        .map(|k| k.as_str().map(str::to_string))
        .collect::<Option<Vec<String>>>()
        .ok_or("match.ignore_query holds a non-string")?;

    let request = file_ref(ex.get("request"), "request")?;
    if request.length > MAX_REQUEST as u64 {
        return Err(format!("request of {} bytes is too big", request.length));
    }
    check_present(dir, &request, used)?;
    let mut src = Src::open(dir, &request, true).map_err(|e| format!("{}: {e}", request.name))?;
    let mut req = vec![0; request.length as usize];
    let mut filled = 0;
    while filled < req.len() {
        let k = src
            .read(&mut req[filled..])
            .map_err(|e| format!("{}: {e}", request.name))?;
        if k == 0 {
            break;
        }
        filled += k;
    }
    check_hash(&request, &mut src)?;
    let (req_method, req_target) = parse_request_line(&req).unwrap_or_default();
    let (req_path, req_query) = split_target(&req_target);
    if (req_method.as_str(), req_path, req_query) != (method, path, query) {
        return Err(format!(
            "{} holds {:?} but the manifest says {method} {path}?{query}",
            request.name,
            truncate(&format!("{req_method} {req_target}"))
        ));
    }

    let response = ex.get("response").ok_or("response missing")?;
    let status = match response.get("status") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|s| u16::try_from(s).ok())
                .ok_or("response.status is not a status code")?,
        ),
    };
    let wire_sha256 = response
        .get("wire_sha256")
        .and_then(Value::as_str)
        .filter(|s| is_sha256_hex(s))
        .ok_or("response.wire_sha256 missing or not 64 lowercase hex")?;
    let wire_length = response
        .get("wire_length")
        .and_then(Value::as_u64)
        .ok_or("response.wire_length missing")?;
    let res = file_ref(response.get("res"), "response.res")?;
    check_present(dir, &res, used)?;
    let layout = match response.get("layout").and_then(Value::as_str) {
        Some("wire") => {
            let mut src = Src::open(dir, &res, true).map_err(|e| format!("{}: {e}", res.name))?;
            let mut buf = vec![0; IO_CHUNK];
            loop {
                let k = src
                    .read(&mut buf)
                    .map_err(|e| format!("{}: {e}", res.name))?;
                if k == 0 {
                    break;
                }
            }
            check_hash(&res, &mut src)?;
            if res.sha256 != wire_sha256 || res.length != wire_length {
                return Err(format!(
                    "{}: wire_sha256/wire_length differ from the file",
                    res.name
                ));
            }
            Layout::Wire { res }
        }
        Some("split") => {
            if method == "HEAD" {
                return Err("a HEAD response cannot have a body file".to_string());
            }
            let body = file_ref(response.get("body"), "response.body")?;
            check_present(dir, &body, used)?;
            let r = Src::open(dir, &res, true).map_err(|e| format!("{}: {e}", res.name))?;
            let b = Src::open(dir, &body, true).map_err(|e| format!("{}: {e}", body.name))?;
            let mut rebuild = Rebuild::new(r, b);
            let mut wire = Sha256::new();
            let mut wire_len = 0u64;
            let mut out = Vec::with_capacity(IO_CHUNK);
            while rebuild
                .next(&mut out)
                .map_err(|e| format!("{}/{}: {e}", res.name, body.name))?
            {
                wire.update(&out);
                wire_len += out.len() as u64;
            }
            if rebuild.framing_left()
                || rebuild.res.count != res.length
                || rebuild.body.count != body.length
            {
                return Err(format!(
                    "{} and {} do not fit together: the rebuilt wire ends before both files do",
                    res.name, body.name
                ));
            }
            check_hash(&res, &mut rebuild.res)?;
            check_hash(&body, &mut rebuild.body)?;
            if hex(&wire.finalize()) != wire_sha256 || wire_len != wire_length {
                return Err(format!(
                    "{} and {} do not rebuild the recorded wire bytes",
                    res.name, body.name
                ));
            }
            Layout::Split { res, body }
        }
        Some(other) => return Err(format!("unknown response layout {:?}", truncate(other))),
        None => return Err("response.layout missing".to_string()),
    };
    let first = match &layout {
        Layout::Wire { res } | Layout::Split { res, .. } => res,
    };
    let recorded_status = read_status(dir, first, method == "HEAD")?;
    if recorded_status != status {
        return Err(format!(
            "{} starts with status {recorded_status:?}, the manifest says {status:?}",
            first.name
        ));
    }
    Ok((
        format!("{method} {path}"),
        Entry {
            method: method.to_string(),
            query: normalize_query(query, &ignore),
            present: present_keys(query, &ignore),
            held_open: path.ends_with("/events")
                && !query.split('&').any(|kv| kv.starts_with("until="))
                && response.get("complete").and_then(Value::as_bool) == Some(false),
            ignore,
            layout,
        },
    ))
}

/// The status of the response head at the start of a file, as the recorder saw it.
fn read_status(
    dir: &Path,
    f: &FileRef,
    head_request: bool,
) -> std::result::Result<Option<u16>, String> {
    let mut src = Src::open(dir, f, false).map_err(|e| format!("{}: {e}", f.name))?;
    let mut framing = Framing::new(head_request);
    let mut buf = vec![0; 4096];
    let mut seen = 0;
    while framing.st == St::Head && seen <= MAX_HEAD {
        let k = src.read(&mut buf).map_err(|e| format!("{}: {e}", f.name))?;
        if k == 0 {
            break;
        }
        seen += k;
        let mut rest = &buf[..k];
        while !rest.is_empty() && framing.st == St::Head {
            let used = framing.feed_frame(rest);
            rest = &rest[used..];
        }
    }
    Ok(framing.status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use hyper_util::rt::TokioIo;
    use tokio::io::DuplexStream;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dac-fixture-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    /// A tar with one regular file, as the daemon's export would stream it.
    fn small_tar(content: &[u8]) -> Vec<u8> {
        let mut h = [0u8; 512];
        h[..9].copy_from_slice(b"hello.txt");
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        h[124..136].copy_from_slice(format!("{:011o}\0", content.len()).as_bytes());
        h[136..148].copy_from_slice(b"00000000000\0");
        h[148..156].copy_from_slice(b"        ");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let mut t = h.to_vec();
        t.extend_from_slice(content);
        t.resize(t.len().div_ceil(512) * 512, 0);
        t.extend_from_slice(&[0u8; 1024]);
        t
    }

    fn chunked(head: &str, body: &[u8], sizes: &[usize], ext: bool, end: bool) -> Vec<u8> {
        let mut w = head.as_bytes().to_vec();
        let mut rest = body;
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes[i % sizes.len()].min(rest.len());
            i += 1;
            if ext && i == 2 {
                w.extend_from_slice(format!("{n:X};name=val\r\n").as_bytes());
            } else {
                w.extend_from_slice(format!("{n:x}\r\n").as_bytes());
            }
            w.extend_from_slice(&rest[..n]);
            w.extend_from_slice(b"\r\n");
            rest = &rest[n..];
        }
        if end {
            w.extend_from_slice(b"0\r\n\r\n");
        }
        w
    }

    struct Scenario {
        tar: Vec<u8>,
        routes: Vec<(&'static str, Vec<u8>)>,
    }

    fn scenario() -> Scenario {
        let id = "a".repeat(64);
        let tar = small_tar(&b"forensic content\n".repeat(300));
        let tar_wire = chunked(
            "HTTP/1.1 200 OK\r\nContent-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n\r\n",
            &tar,
            &[1000, 7, 4096],
            true,
            true,
        );
        let list = br#"[{"Id":"aaaa","Names":["/web"]}]"#;
        let list_wire = chunked(
            "HTTP/1.1 200 OK\r\nApi-Version: 1.47\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            list,
            &[5, 1, 300],
            true,
            true,
        );
        let version = br#"{"Version":"27.3.1","ApiVersion":"1.47"}"#;
        let mut version_wire = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            version.len()
        )
        .into_bytes();
        version_wire.extend_from_slice(version);
        let events_wire = chunked(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"{\"Type\":\"container\",\"Action\":\"start\"}\n{\"Type\":\"container\",\"Action\":\"die\"}\n",
            &[38],
            false,
            true,
        );
        // A log stream cut in the middle of a chunk: recorded and replayed as cut.
        let logs_wire = {
            let mut w = chunked(
                "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
                &[1u8; 100],
                &[60],
                false,
                false,
            );
            w.extend_from_slice(b"200\r\npartial");
            w
        };
        let ping_wire =
            b"HTTP/1.1 200 OK\r\nApi-Version: 1.47\r\nContent-Length: 2\r\n\r\n".to_vec();
        let routes: Vec<(&'static str, Vec<u8>)> = vec![
            ("GET /v1.47/version", version_wire),
            ("GET /v1.47/containers/json?all=1", list_wire),
            (
                Box::leak(format!("GET /v1.47/containers/{id}/export").into_boxed_str()),
                tar_wire,
            ),
            (
                "GET /v1.47/events?since=100&until=200&filters=%7B%7D",
                events_wire,
            ),
            (
                Box::leak(format!("GET /v1.47/containers/{id}/logs?stdout=1").into_boxed_str()),
                logs_wire,
            ),
            ("HEAD /_ping", ping_wire),
        ];
        Scenario { tar, routes }
    }

    /// Minimal engine: one request head, the canned wire bytes, close.
    async fn fake_engine(mut io: DuplexStream, routes: Vec<(&'static str, Vec<u8>)>) {
        let Some(head) = read_head(&mut io).await else {
            return;
        };
        let (m, t) = parse_request_line(&head).unwrap();
        let key = format!("{m} {t}");
        let wire = routes
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, w)| w.clone())
            .unwrap_or_else(|| b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec());
        // Odd write sizes so the client's reads cut framing anywhere.
        for piece in wire.chunks(777) {
            io.write_all(piece).await.unwrap();
        }
        io.shutdown().await.unwrap();
    }

    struct Answer {
        status: u16,
        miss: bool,
        body: std::result::Result<Vec<u8>, String>,
    }

    async fn hyper_get(io: BoxIo, method: &str, uri: &str) -> Answer {
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .header("Host", "api.moby.localhost")
            .header("User-Agent", "dac/test")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let res = send.send_request(req).await.unwrap();
        let status = res.status().as_u16();
        let miss = res
            .headers()
            .get(MISS_HEADER)
            .is_some_and(|v| v.as_bytes() == b"miss");
        let body = res
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes().to_vec())
            .map_err(|e| e.to_string());
        Answer { status, miss, body }
    }

    /// Raw request on a connection, everything read back until close.
    async fn raw(mut io: BoxIo, method: &str, target: &str) -> Vec<u8> {
        let req = format!("{method} {target} HTTP/1.1\r\nhost: api.moby.localhost\r\n\r\n");
        io.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        io.read_to_end(&mut out).await.unwrap();
        out
    }

    fn record(dir: &Path) -> Scenario {
        let sc = scenario();
        let rec = Recorder::create(dir, json!({"name": "fake"})).unwrap();
        rt().block_on(async {
            for (key, _) in &sc.routes {
                let (m, target) = key.split_once(' ').unwrap();
                let (client, server) = tokio::io::duplex(1 << 12);
                tokio::spawn(fake_engine(server, sc.routes.clone()));
                let a = hyper_get(rec.wrap(Box::new(client)), m, target).await;
                assert_eq!(a.status, 200, "{key}");
            }
            assert_eq!(rec.settle(Duration::from_secs(5)).await, 0);
        });
        rec.set_engine(json!({"name": "fake", "version": "27.3.1", "api_version": "1.47"}));
        rec.finish().unwrap();
        sc
    }

    fn manifest(dir: &Path) -> Value {
        serde_json::from_slice(&fs::read(dir.join(MANIFEST)).unwrap()).unwrap()
    }

    fn write_manifest(dir: &Path, m: &Value) {
        fs::write(dir.join(MANIFEST), serde_json::to_vec_pretty(m).unwrap()).unwrap();
    }

    fn exchange_for<'a>(m: &'a Value, path_end: &str) -> &'a Value {
        m["exchanges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["path"].as_str().unwrap().ends_with(path_end))
            .unwrap()
    }

    #[test]
    fn record_then_replay_gives_identical_bytes() {
        let dir = tmp("roundtrip");
        let sc = record(&dir);
        let m = manifest(&dir);
        assert_eq!(m["format"], FORMAT);
        assert_eq!(m["engine"]["version"], "27.3.1");
        assert_eq!(m["exchanges"].as_array().unwrap().len(), sc.routes.len());

        // The export body is a plain tar file next to its framing.
        let export = exchange_for(&m, "/export");
        assert_eq!(export["response"]["layout"], "split");
        let tar_file = export["response"]["body"]["file"].as_str().unwrap();
        assert_eq!(fs::read(dir.join(tar_file)).unwrap(), sc.tar);
        if let Ok(out) = std::process::Command::new("tar")
            .arg("tvf")
            .arg(dir.join(tar_file))
            .output()
        {
            assert!(out.status.success());
            assert!(String::from_utf8_lossy(&out.stdout).contains("hello.txt"));
        }
        let logs = exchange_for(&m, "/logs");
        assert_eq!(logs["response"]["complete"], false);
        assert_eq!(logs["response"]["layout"], "wire");
        assert_eq!(exchange_for(&m, "/json")["response"]["complete"], true);
        assert_eq!(
            exchange_for(&m, "/events")["match"]["ignore_query"],
            json!(["since", "until"])
        );

        let replay = Replay::load(&dir).unwrap();
        assert_eq!(replay.engine()["name"], "fake");
        rt().block_on(async {
            for (key, wire) in &sc.routes {
                let (m, target) = key.split_once(' ').unwrap();
                // Byte for byte, chunk framing included, twice in a row.
                for _ in 0..2 {
                    assert_eq!(&raw(replay.connect(), m, target).await, wire, "{key}");
                }
                let a = hyper_get(replay.connect(), m, target).await;
                assert_eq!(a.status, 200);
                assert!(!a.miss);
                if key.contains("/logs") {
                    assert!(a.body.is_err(), "a cut stream must stay cut");
                } else if key.contains("/export") {
                    assert_eq!(a.body.unwrap(), sc.tar);
                } else if m == "HEAD" {
                    assert_eq!(a.body.unwrap(), b"");
                }
            }
        });
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn large_tar_streams_through() {
        let dir = tmp("large");
        let payload: Vec<u8> = (0..(6u32 << 20)).map(|i| (i % 253) as u8).collect();
        let wire = chunked(
            "HTTP/1.1 200 OK\r\nContent-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n\r\n",
            &payload,
            &[32768, 32763, 1],
            false,
            true,
        );
        let rec = Recorder::create(&dir, json!({})).unwrap();
        let target = "/v1.47/images/sha256:abc/get";
        let routes: Vec<(&'static str, Vec<u8>)> =
            vec![("GET /v1.47/images/sha256:abc/get", wire.clone())];
        rt().block_on(async {
            let (client, server) = tokio::io::duplex(1 << 16);
            tokio::spawn(fake_engine(server, routes));
            let a = hyper_get(rec.wrap(Box::new(client)), "GET", target).await;
            assert_eq!(a.body.unwrap().len(), payload.len());
            rec.settle(Duration::from_secs(5)).await;
        });
        rec.finish().unwrap();
        assert_eq!(fs::read(dir.join("0001.tar")).unwrap(), payload);
        assert!(fs::metadata(dir.join("0001.res")).unwrap().len() < 4096);
        let replay = Replay::load(&dir).unwrap();
        rt().block_on(async {
            assert!(raw(replay.connect(), "GET", target).await == wire);
        });
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_request_and_post_get_599() {
        let dir = tmp("miss");
        record(&dir);
        let replay = Replay::load(&dir).unwrap();
        rt().block_on(async {
            for (m, t) in [
                ("GET", "/v1.47/containers/json?all=0"),
                ("GET", "/v1.47/info"),
                ("POST", "/v1.47/version"),
                ("DELETE", "/v1.47/containers/json?all=1"),
                ("HEAD", "/v1.47/version"),
            ] {
                let a = hyper_get(replay.connect(), m, t).await;
                assert_eq!(a.status, MISS_STATUS, "{m} {t}");
                assert!(a.miss, "{m} {t}");
                if m != "HEAD" {
                    let body = String::from_utf8(a.body.unwrap()).unwrap();
                    assert!(body.contains(&format!("{m} {t}")), "{body}");
                }
            }
            let junk = raw(replay.connect(), "GET", "no-space\u{1}").await;
            assert!(junk.starts_with(b"HTTP/1.1 599 Replay Miss\r\n"));
        });
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn events_match_whatever_since_and_until() {
        let dir = tmp("events");
        let sc = record(&dir);
        let replay = Replay::load(&dir).unwrap();
        let wire = &sc
            .routes
            .iter()
            .find(|(k, _)| k.contains("/events"))
            .unwrap()
            .1;
        rt().block_on(async {
            for t in [
                "/v1.47/events?since=999&until=1000&filters=%7B%7D",
                "/v1.47/events?filters=%7B%7D&until=5",
                "/v1.47/events?filters=%7B%7D",
            ] {
                assert_eq!(&raw(replay.connect(), "GET", t).await, wire, "{t}");
            }
            for t in [
                "/v1.47/events?since=1&until=2",
                "/v1.47/events?since=1&until=2&filters=%7B%22type%22%3A1%7D",
                "/v1.47/events?since=1&filters=%7B%7D&filters=%7B%7D",
            ] {
                let a = hyper_get(replay.connect(), "GET", t).await;
                assert_eq!(a.status, MISS_STATUS, "{t}");
            }
            // Elsewhere since is an ordinary key (e.g. logs).
            let a = hyper_get(
                replay.connect(),
                "GET",
                &format!("/v1.47/containers/{}/logs?stdout=1&since=3", "a".repeat(64)),
            )
            .await;
            assert_eq!(a.status, MISS_STATUS);
        });
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn historical_and_live_events_are_told_apart() {
        let dir = tmp("events-kinds");
        let rec = Recorder::create(&dir, json!({})).unwrap();
        let hist = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nhist".to_vec();
        let live = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlive".to_vec();
        rt().block_on(async {
            for (t, a) in [
                ("/v1.47/events?since=1&until=2", &hist),
                ("/v1.47/events?since=2", &live),
            ] {
                let (client, server) = tokio::io::duplex(1024);
                let key: &'static str = Box::leak(format!("GET {t}").into_boxed_str());
                tokio::spawn(fake_engine(server, vec![(key, a.clone())]));
                hyper_get(rec.wrap(Box::new(client)), "GET", t).await;
            }
            rec.settle(Duration::from_secs(5)).await;
        });
        rec.finish().unwrap();
        let replay = Replay::load(&dir).unwrap();
        rt().block_on(async {
            let t = "/v1.47/events?since=50";
            assert_eq!(raw(replay.connect(), "GET", t).await, live);
            let t = "/v1.47/events?since=40&until=50";
            assert_eq!(raw(replay.connect(), "GET", t).await, hist);
            // Neither shape recorded: still served (by the match rule), first recording.
            let t = "/v1.47/events?until=50";
            assert_eq!(raw(replay.connect(), "GET", t).await, hist);
        });
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn query_order_does_not_matter() {
        assert_eq!(
            normalize_query("b=2&a=1&a=1", &[]),
            normalize_query("a=1&b=2&a=1", &[])
        );
        assert_ne!(normalize_query("a=1&a=1", &[]), normalize_query("a=1", &[]));
        assert_eq!(
            normalize_query("since=1&x&until=2", &ignored_keys("/events")),
            vec!["x".to_string()]
        );
    }

    #[test]
    fn tampered_fixtures_are_refused() {
        let dir = tmp("tamper");
        record(&dir);
        let m = manifest(&dir);
        let tar_name = exchange_for(&m, "/export")["response"]["body"]["file"]
            .as_str()
            .unwrap()
            .to_string();
        let res_name = exchange_for(&m, "/json")["response"]["res"]["file"]
            .as_str()
            .unwrap()
            .to_string();
        let req_name = exchange_for(&m, "/version")["request"]["file"]
            .as_str()
            .unwrap()
            .to_string();
        for name in [&tar_name, &res_name, &req_name] {
            let path = dir.join(name);
            let orig = fs::read(&path).unwrap();
            let mut bad = orig.clone();
            bad[orig.len() / 2] ^= 1;
            fs::write(&path, &bad).unwrap();
            let e = Replay::load(&dir).unwrap_err();
            assert_eq!(e.kind, Kind::Replay);
            assert!(e.message.contains(name.as_str()), "{}", e.message);
            // Same length check fails before hashing.
            fs::write(&path, &orig[..orig.len() - 1]).unwrap();
            let e = Replay::load(&dir).unwrap_err();
            assert!(e.message.contains("bytes"), "{}", e.message);
            fs::remove_file(&path).unwrap();
            assert_eq!(Replay::load(&dir).unwrap_err().kind, Kind::Replay);
            fs::write(&path, &orig).unwrap();
            Replay::load(&dir).unwrap();
        }
        // A manifest edit that keeps files intact but changes what is matched.
        let mut m2 = m.clone();
        m2["exchanges"][0]["path"] = json!("/v1.47/other");
        write_manifest(&dir, &m2);
        assert_eq!(Replay::load(&dir).unwrap_err().kind, Kind::Replay);
        let mut m2 = m.clone();
        m2["exchanges"][0]["response"]["status"] = json!(404);
        write_manifest(&dir, &m2);
        assert_eq!(Replay::load(&dir).unwrap_err().kind, Kind::Replay);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn split_framing_and_body_must_fit() {
        // Moving bytes between framing and body keeps both hashes consistent with an
        // edited manifest, but the rebuilt wire no longer matches.
        let dir = tmp("refit");
        record(&dir);
        let mut m = manifest(&dir);
        let idx = m["exchanges"]
            .as_array()
            .unwrap()
            .iter()
            .position(|e| e["path"].as_str().unwrap().ends_with("/export"))
            .unwrap();
        let resp = m["exchanges"][idx]["response"].clone();
        let body_name = resp["body"]["file"].as_str().unwrap();
        let mut body = fs::read(dir.join(body_name)).unwrap();
        body.push(0);
        fs::write(dir.join(body_name), &body).unwrap();
        m["exchanges"][idx]["response"]["body"]["length"] = json!(body.len());
        m["exchanges"][idx]["response"]["body"]["sha256"] = json!(hex(&Sha256::digest(&body)));
        write_manifest(&dir, &m);
        let e = Replay::load(&dir).unwrap_err();
        assert_eq!(e.kind, Kind::Replay);
        assert!(e.message.contains("fit together"), "{}", e.message);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_manifests_are_refused() {
        let dir = tmp("manifests");
        record(&dir);
        let m = manifest(&dir);
        type Edit = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Edit)> = vec![
            (
                "escapes",
                Box::new(|m| m["exchanges"][0]["request"]["file"] = json!("../0001.req")),
            ),
            (
                "escapes",
                Box::new(|m| m["exchanges"][0]["response"]["res"]["file"] = json!("/etc/passwd")),
            ),
            (
                "escapes",
                Box::new(|m| m["exchanges"][0]["response"]["res"]["file"] = json!("sub/0001.res")),
            ),
            (
                "not allowed",
                Box::new(|m| m["exchanges"][0]["request"]["file"] = json!(".hidden")),
            ),
            (
                "unknown format",
                Box::new(|m| m["format"] = json!("dac-fixture/2")),
            ),
            (
                "no format",
                Box::new(|m| {
                    m.as_object_mut().unwrap().remove("format");
                }),
            ),
            (
                "absurd",
                Box::new(|m| m["exchanges"][0]["response"]["res"]["length"] = json!(u64::MAX)),
            ),
            (
                "too big",
                Box::new(|m| m["exchanges"][0]["request"]["length"] = json!(1u64 << 30)),
            ),
            (
                "referenced twice",
                Box::new(|m| {
                    let f = m["exchanges"][0]["request"]["file"].clone();
                    m["exchanges"][1]["request"]["file"] = f;
                }),
            ),
            (
                "layout",
                Box::new(|m| m["exchanges"][0]["response"]["layout"] = json!("zip")),
            ),
            (
                "sha256",
                Box::new(|m| m["exchanges"][0]["request"]["sha256"] = json!("ABC")),
            ),
            (
                "appears twice",
                Box::new(|m| m["exchanges"][1]["id"] = m["exchanges"][0]["id"].clone()),
            ),
        ];
        for (want, edit) in cases {
            let mut bad = m.clone();
            edit(&mut bad);
            write_manifest(&dir, &bad);
            let e = Replay::load(&dir).unwrap_err();
            assert_eq!(e.kind, Kind::Replay);
            assert!(e.message.contains(want), "{want}: {}", e.message);
        }
        fs::write(dir.join(MANIFEST), b"{not json").unwrap();
        assert_eq!(Replay::load(&dir).unwrap_err().kind, Kind::Replay);
        fs::remove_file(dir.join(MANIFEST)).unwrap();
        assert_eq!(Replay::load(&dir).unwrap_err().kind, Kind::Replay);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn symlinked_files_are_refused() {
        let dir = tmp("symlink");
        record(&dir);
        let m = manifest(&dir);
        let name = m["exchanges"][0]["request"]["file"].as_str().unwrap();
        let outside = tmp("symlink-target");
        fs::copy(dir.join(name), &outside).unwrap();
        fs::remove_file(dir.join(name)).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join(name)).unwrap();
        let e = Replay::load(&dir).unwrap_err();
        assert!(e.message.contains("regular file"), "{}", e.message);
        fs::remove_dir_all(&dir).unwrap();
        fs::remove_file(&outside).unwrap();
    }

    #[test]
    fn create_wants_a_new_or_empty_directory() {
        let dir = tmp("create");
        fs::create_dir_all(&dir).unwrap();
        Recorder::create(&dir, json!({})).unwrap();
        fs::write(dir.join("x"), b"x").unwrap();
        assert_eq!(
            Recorder::create(&dir, json!({})).err().unwrap().kind,
            Kind::Usage
        );
        assert!(Recorder::create(&dir.join("x"), json!({})).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn identical_requests_are_served_in_recorded_order() {
        let dir = tmp("repeat");
        let rec = Recorder::create(&dir, json!({})).unwrap();
        let answers = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst".to_vec(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond".to_vec(),
        ];
        rt().block_on(async {
            for a in &answers {
                let (client, server) = tokio::io::duplex(1024);
                tokio::spawn(fake_engine(server, vec![("GET /v1.47/info", a.clone())]));
                hyper_get(rec.wrap(Box::new(client)), "GET", "/v1.47/info").await;
            }
            rec.settle(Duration::from_secs(5)).await;
        });
        rec.finish().unwrap();
        let replay = Replay::load(&dir).unwrap();
        rt().block_on(async {
            assert_eq!(
                raw(replay.connect(), "GET", "/v1.47/info").await,
                answers[0]
            );
            for _ in 0..3 {
                assert_eq!(
                    raw(replay.connect(), "GET", "/v1.47/info").await,
                    answers[1]
                );
            }
        });
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn finish_reports_open_connections() {
        let dir = tmp("open");
        let rec = Recorder::create(&dir, json!({})).unwrap();
        let (client, _server) = tokio::io::duplex(64);
        let io = rec.wrap(Box::new(client));
        assert_eq!(rec.in_flight(), 1);
        assert_eq!(rec.finish().unwrap_err().kind, Kind::Replay);
        drop(io);
        // Nothing was exchanged on it, so nothing is stored.
        rec.finish().unwrap();
        assert_eq!(manifest(&dir)["exchanges"], json!([]));
        assert!(Replay::load(&dir).unwrap().is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn connection_reset_before_an_answer_is_replayed_as_such() {
        let dir = tmp("reset");
        let rec = Recorder::create(&dir, json!({})).unwrap();
        rt().block_on(async {
            let (client, mut server) = tokio::io::duplex(1024);
            tokio::spawn(async move {
                let _ = read_head(&mut server).await;
                drop(server);
            });
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(rec.wrap(Box::new(client))))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let req = hyper::Request::get("/v1.47/info")
                .header("Host", "x")
                .body(Empty::<Bytes>::new())
                .unwrap();
            assert!(send.send_request(req).await.is_err());
            drop(send);
            rec.settle(Duration::from_secs(5)).await;
        });
        rec.finish().unwrap();
        let m = manifest(&dir);
        assert_eq!(m["exchanges"][0]["response"]["status"], Value::Null);
        assert_eq!(m["exchanges"][0]["response"]["res"]["length"], 0);
        let replay = Replay::load(&dir).unwrap();
        rt().block_on(async {
            assert!(raw(replay.connect(), "GET", "/v1.47/info").await.is_empty());
        });
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Splits `wire` into framing and body with arbitrary read boundaries, then
    /// rebuilds it through files.
    fn split_and_rebuild(wire: &[u8], cuts: &mut impl FnMut() -> usize, name: &str) -> Vec<u8> {
        let mut f = Framing::new(false);
        let (mut frames, mut body) = (Vec::new(), Vec::new());
        let mut rest = wire;
        while !rest.is_empty() {
            let mut piece = &rest[..cuts().min(rest.len())];
            rest = &rest[piece.len()..];
            while !piece.is_empty() {
                match f.want() {
                    Want::Frame => {
                        let k = f.feed_frame(piece);
                        assert!(k > 0);
                        frames.extend_from_slice(&piece[..k]);
                        piece = &piece[k..];
                    }
                    Want::Data(n) => {
                        let k = piece.len().min(n as usize);
                        f.feed_data(k as u64);
                        body.extend_from_slice(&piece[..k]);
                        piece = &piece[k..];
                    }
                }
            }
        }
        let dir = tmp(name);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("r"), &frames).unwrap();
        fs::write(dir.join("b"), &body).unwrap();
        let fr = |n: &str, len: usize| FileRef {
            name: n.to_string(),
            sha256: String::new(),
            length: len as u64,
        };
        let mut rb = Rebuild::new(
            Src::open(&dir, &fr("r", frames.len()), false).unwrap(),
            Src::open(&dir, &fr("b", body.len()), false).unwrap(),
        );
        let mut out = Vec::new();
        let mut piece = Vec::new();
        while rb.next(&mut piece).unwrap() {
            out.extend_from_slice(&piece);
        }
        assert!(!rb.framing_left());
        fs::remove_dir_all(&dir).unwrap();
        out
    }

    #[test]
    fn framing_split_is_lossless_for_odd_inputs() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let payload: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut wires = vec![
            chunked("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", &payload, &[1, 2, 333, 4096], true, true),
            chunked("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", &payload, &[100], false, false),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\nX-T: 1\r\n\r\nextra".to_vec(),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnot hex at all".to_vec(),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcdeXY3\r\nabc".to_vec(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef".to_vec(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\nabcdef".to_vec(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcdef".to_vec(),
            b"HTTP/1.1 200 OK\n\nuntil eof".to_vec(),
            b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
            b"garbage that is no HTTP at all\r\n\r\nmore".to_vec(),
            b"HTTP/1.1 200 OK\r\nContent-Le".to_vec(),
        ];
        let mut long_line = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        long_line.extend(std::iter::repeat_n(b'1', MAX_LINE + 10));
        wires.push(long_line);
        for (i, wire) in wires.iter().enumerate() {
            for round in 0..20 {
                let mut cuts = || (next() % 900) as usize + 1;
                let out = split_and_rebuild(wire, &mut cuts, &format!("split-{i}-{round}"));
                assert_eq!(&out, wire, "wire #{i}");
            }
        }
    }

    #[test]
    fn framing_finds_status_and_payload() {
        let mut f = Framing::new(false);
        let head = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-tar\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        assert_eq!(f.feed_frame(head), head.len());
        assert_eq!(f.status, Some(200));
        assert!(f.tar);
        assert_eq!(f.feed_frame(b"a;x=y\r\nrest"), 7);
        assert_eq!(f.want(), Want::Data(10));
        let mut h = Framing::new(true);
        h.feed_frame(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n");
        assert_eq!(h.want(), Want::Frame);
        assert!(h.body_complete());
        assert_eq!(parse_status_line(b"HTTP/1.0 599 Replay Miss"), Some(599));
        assert_eq!(parse_status_line(b"HTTP/1.1 20"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 2000 x"), None);
    }
}
