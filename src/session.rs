//! One acquisition session: every request goes through [`Session::fetch`], which streams the body
//! into a payload file while hashing it, runs the checks that belong to its kind (tar to its end
//! marker, log demultiplexing, JSON parsing), and writes the `artifact` or `error` record.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use serde_json::{json, Map, Value};

use crate::bundle::{Bundle, Payload, Written};
use crate::clock;
use crate::endpoints::{Api, Call};
use crate::error::{Error, Kind, Result};
use crate::logs::{Demux, Stream};
use crate::tar::TarWalker;
use crate::transport::{Method, Transport};

/// JSON answers are parsed in memory; anything larger is kept on disk but not parsed.
const JSON_PARSE_LIMIT: usize = 128 << 20;

/// What to do with a body besides keeping its raw bytes.
pub enum Check {
    /// Keep only.
    Raw,
    /// Parse as JSON and hand the value back.
    Json,
    /// Validate as a tar to its end-of-archive marker.
    Tar,
    /// Demultiplex a non-TTY log into derived stdout/stderr files.
    Logs { tty: bool },
    /// A stream of JSON event lines: keep, and count the events this collection's own
    /// requests leave (see [`Footprint`]).
    Events(Arc<Footprint>),
    /// A saved image: validate the tar, then verify it against its own digests (the ID asked
    /// for must be in it).
    Image(String),
}

/// The outcome of a fetch that produced a file.
pub struct Fetched {
    pub written: Written,
    pub json: Option<Value>,
    pub complete: bool,
}

/// Counters shown in the summary and written into `session_end`.
#[derive(Default)]
pub struct Meter {
    pub artifacts: AtomicU64,
    pub errors: AtomicU64,
    pub bytes: AtomicU64,
    pub active: AtomicU64,
}

/// The events an engine logs for this collection's own requests (processes, exports, saves,
/// archive pulls): how many answers the engine gave that leave one, and how many such events
/// the live stream has delivered. The live stream is closed once it has caught up.
#[derive(Default)]
pub struct Footprint {
    pub expected: AtomicU64,
    pub seen: AtomicU64,
    /// Podman logs no event for processes, and a container `mount` for an export.
    pub podman: bool,
}

impl Footprint {
    /// Wait until every expected event has been delivered, or `limit` has passed (an engine
    /// that logs none of them, or someone else's events that did not come). Returns whether
    /// it caught up.
    pub async fn caught_up(&self, limit: Duration) -> bool {
        let until = tokio::time::Instant::now() + limit;
        loop {
            if self.seen.load(Ordering::Relaxed) >= self.expected.load(Ordering::Relaxed) {
                return true;
            }
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// Docker computes disk usage for one client at a time and answers any other with HTTP 500
/// "a disk usage operation is already running" (seen when two collections, or `docker system
/// df`, overlap). That answer is asked again every BUSY_WAIT for as long as the idle timeout.
fn engine_busy(template: &str, status: u16, detail: &str) -> bool {
    template == "/system/df" && status == 500 && detail.contains("already running")
}
const BUSY_WAIT: Duration = Duration::from_millis(250);

/// Does a request of this template make the engine log an event (seen on the wire: Docker
/// logs container top, export and archive-path and image save; Podman a container mount for
/// an export and an image save, nothing for top)?
fn leaves_event(template: &str, podman: bool) -> bool {
    match template {
        "/containers/{id}/top" => !podman,
        "/containers/{id}/export" | "/containers/{id}/archive" | "/images/{name}/get" => true,
        _ => false,
    }
}

/// Is this event line one that [`leaves_event`] requests leave? (Docker's own mount events
/// are of volumes, so a container mount is Podman's export.)
fn is_footprint(line: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<Value>(line) else {
        return false;
    };
    let action = v.get("Action").and_then(Value::as_str);
    match v.get("Type").and_then(Value::as_str) {
        Some("container") => matches!(action, Some("top" | "export" | "archive-path" | "mount")),
        Some("image") => action == Some("save"),
        _ => false,
    }
}

pub struct Session {
    pub transport: Transport,
    pub api: Api,
    pub bundle: Arc<Bundle>,
    pub meter: Meter,
    pub footprint: Arc<Footprint>,
    pub idle: Duration,
    deadline: tokio::time::Instant,
    stop: tokio::sync::watch::Receiver<bool>,
    interrupted: AtomicBool,
    deadline_hit: AtomicBool,
}

/// Which of the things a transfer waits on came first.
enum Race<T> {
    Value(T),
    /// The idle timer fired (it may have been armed before the last data: check).
    Idle,
    Deadline,
    Stop,
    End,
}

/// Wait for `fut`, the overall deadline, Ctrl-C, or (for the live stream) the end of the
/// session, whichever comes first. A dropped sender means the signal can no longer come.
async fn race<F: std::future::Future>(
    fut: F,
    deadline: std::pin::Pin<&mut tokio::time::Sleep>,
    idle: Option<std::pin::Pin<&mut tokio::time::Sleep>>,
    stop: &mut tokio::sync::watch::Receiver<bool>,
    end: Option<&mut tokio::sync::watch::Receiver<bool>>,
) -> Race<F::Output> {
    use std::future::Future;
    use std::task::Poll;
    let mut fut = std::pin::pin!(fut);
    let mut deadline = deadline;
    let mut idle = idle;
    let mut stop_wait = std::pin::pin!(stop.wait_for(|s| *s));
    let has_end = end.is_some();
    let mut end_wait = std::pin::pin!(async move {
        match end {
            Some(e) => e.wait_for(|s| *s).await.is_ok(),
            None => false,
        }
    });
    let (mut stop_done, mut end_done) = (false, !has_end);
    std::future::poll_fn(move |cx| {
        if !end_done {
            if let Poll::Ready(fired) = end_wait.as_mut().poll(cx) {
                end_done = true;
                if fired {
                    return Poll::Ready(Race::End);
                }
            }
        }
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Race::Value(v));
        }
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Race::Deadline);
        }
        if let Some(idle) = idle.as_mut() {
            if idle.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Race::Idle);
            }
        }
        if !stop_done {
            if let Poll::Ready(r) = stop_wait.as_mut().poll(cx) {
                stop_done = true;
                if r.is_ok() {
                    return Poll::Ready(Race::Stop);
                }
            }
        }
        Poll::Pending
    })
    .await
}

/// Why a body stopped early.
enum Cut {
    Stop,
    Deadline,
}

impl Session {
    pub fn new(
        transport: Transport,
        api: Api,
        bundle: Arc<Bundle>,
        idle: Duration,
        deadline: tokio::time::Instant,
        stop: tokio::sync::watch::Receiver<bool>,
        podman: bool,
    ) -> Session {
        Session {
            transport,
            api,
            bundle,
            meter: Meter::default(),
            footprint: Arc::new(Footprint {
                podman,
                ..Footprint::default()
            }),
            idle,
            deadline,
            stop,
            interrupted: AtomicBool::new(false),
            deadline_hit: AtomicBool::new(false),
        }
    }

    /// True once Ctrl-C or the deadline ended the session: nothing new should start.
    pub fn stopping(&self) -> bool {
        *self.stop.borrow() || tokio::time::Instant::now() >= self.deadline
    }

    pub fn interrupted(&self) -> bool {
        self.interrupted.load(Ordering::Relaxed)
    }

    pub fn deadline_hit(&self) -> bool {
        self.deadline_hit.load(Ordering::Relaxed)
    }

    /// Append a record; a log that cannot be written is reported once on stderr.
    pub fn log(&self, event: &str, fields: Map<String, Value>) {
        if let Err(e) = self.bundle.log(event, fields) {
            eprintln!("dac: {e}");
        }
    }

    /// Record an error for `call`.
    pub fn error(&self, call: &Call, err: &Error, offset: u64, path: Option<&str>) {
        self.meter.errors.fetch_add(1, Ordering::Relaxed);
        let mut f = Map::new();
        f.insert("kind".into(), json!(err.kind.as_str()));
        f.insert("endpoint".into(), json!(call.template));
        f.insert("object".into(), json!(call.object));
        f.insert("offset".into(), json!(offset));
        f.insert("detail".into(), json!(err.message));
        if let Some(s) = err.status {
            f.insert("status".into(), json!(s));
        }
        if let Some(p) = path {
            f.insert("path".into(), json!(p));
        }
        self.log("error", f);
    }

    /// Record a fact about the collection: `detail`, with any other fields.
    pub fn note(&self, detail: &str, mut fields: Map<String, Value>) {
        fields.insert("detail".into(), json!(detail));
        self.log("note", fields);
    }

    /// A note about one request.
    pub fn note_on(&self, call: &Call, detail: &str, mut fields: Map<String, Value>) {
        fields.insert("endpoint".into(), json!(call.template));
        fields.insert("object".into(), json!(call.object));
        self.note(detail, fields);
    }

    /// Record something the engine does not offer (not a failure of the collection).
    pub fn unavailable(&self, call: &Call, detail: &str) {
        let mut f = Map::new();
        f.insert("kind".into(), json!("unavailable"));
        self.note_on(call, detail, f);
    }

    /// Wait for a response head, bounded by the idle timeout, the deadline and Ctrl-C.
    async fn head(&self, method: Method, path: &str) -> Result<crate::transport::Response> {
        let mut stop = self.stop.clone();
        let deadline = std::pin::pin!(tokio::time::sleep_until(self.deadline));
        let idle = std::pin::pin!(tokio::time::sleep(self.idle));
        let send = self.transport.send(method, path);
        match race(send, deadline, Some(idle), &mut stop, None).await {
            Race::Value(r) => r,
            Race::Idle => Err(Error::new(
                Kind::Timeout,
                format!("no response within {:?} (idle timeout)", self.idle),
            )),
            Race::Deadline => {
                self.deadline_hit.store(true, Ordering::Relaxed);
                Err(Error::new(
                    Kind::Deadline,
                    "the overall deadline passed before the engine answered",
                ))
            }
            Race::Stop | Race::End => {
                self.interrupted.store(true, Ordering::Relaxed);
                Err(Error::new(
                    Kind::Interrupted,
                    "interrupted before the engine answered",
                ))
            }
        }
    }

    /// GET `call`, keep its body at `data/<tier>/<rel>`, check it, record it.
    /// Returns None when nothing was written (the error is already recorded).
    pub async fn fetch(&self, call: &Call, tier: &str, rel: &str, check: Check) -> Option<Fetched> {
        let when = self.started();
        self.fetch_from(call, tier, rel, check, when, None).await
    }

    /// The request's start, taken by the scheduler when it hands out a slot, so that the
    /// recorded start order is the plan's order (which `verify` checks tier by tier).
    pub fn started(&self) -> Started {
        Started {
            utc: clock::utc_now(),
            mono_ns: self.bundle.mono_ns(),
        }
    }

    /// [`Session::fetch`] with a start time taken earlier, and for a stream that never ends by
    /// itself (the live event stream) an `end` signal: no idle timeout, and `end` closes it as
    /// complete.
    pub async fn fetch_from(
        &self,
        call: &Call,
        tier: &str,
        rel: &str,
        check: Check,
        when: Started,
        end: Option<tokio::sync::watch::Receiver<bool>>,
    ) -> Option<Fetched> {
        if self.stopping() {
            return None;
        }
        self.meter.active.fetch_add(1, Ordering::Relaxed);
        let out = self.fetch_inner(call, tier, rel, check, when, end).await;
        self.meter.active.fetch_sub(1, Ordering::Relaxed);
        out
    }

    async fn fetch_inner(
        &self,
        call: &Call,
        tier: &str,
        rel: &str,
        check: Check,
        when: Started,
        end: Option<tokio::sync::watch::Receiver<bool>>,
    ) -> Option<Fetched> {
        let live = end.is_some();
        let mut end = end.unwrap_or_else(|| tokio::sync::watch::channel(false).1);
        let mut busy_waits = 0u32;
        let busy_until = tokio::time::Instant::now() + self.idle;
        let (status, path_stat, mut body) = loop {
            let resp = match self.head(Method::Get, &call.path).await {
                Ok(r) => r,
                Err(e) => {
                    self.error(call, &e, 0, None);
                    return None;
                }
            };
            let status = resp.status();
            let path_stat = resp.header("x-docker-container-path-stat");
            let mut body = resp.into_body();
            if (200..300).contains(&status) {
                break (status, path_stat, body);
            }
            let detail = self.error_body(&mut body).await;
            if engine_busy(call.template, status, &detail)
                && tokio::time::Instant::now() + BUSY_WAIT < busy_until
                && !self.stopping()
            {
                busy_waits += 1;
                tokio::time::sleep(BUSY_WAIT).await;
                continue;
            }
            let err =
                Error::new(Kind::Http, format!("HTTP {status}: {detail}")).with_status(status);
            self.error(call, &err, 0, None);
            return None;
        };
        if leaves_event(call.template, self.footprint.podman) {
            self.footprint.expected.fetch_add(1, Ordering::Relaxed);
        }
        let mut payload = match self.bundle.payload(&format!("{tier}/{rel}")) {
            Ok(p) => p,
            Err(e) => {
                self.error(call, &e, 0, None);
                return None;
            }
        };
        let mut state = Processor::new(&check, &self.bundle, tier, rel);
        // The first failure and the byte offset where the good evidence stops.
        let mut failure: Option<(Error, u64)> = None;
        let mut stop = self.stop.clone();
        let mut deadline = std::pin::pin!(tokio::time::sleep_until(self.deadline));
        let mut idle_timer = std::pin::pin!(tokio::time::sleep(self.idle));
        let mut last_data = tokio::time::Instant::now();
        loop {
            let next = match race(
                body.frame(),
                deadline.as_mut(),
                if live {
                    None
                } else {
                    Some(idle_timer.as_mut())
                },
                &mut stop,
                if live { Some(&mut end) } else { None },
            )
            .await
            {
                Race::End => break,
                Race::Value(f) => {
                    last_data = tokio::time::Instant::now();
                    Ok(f)
                }
                // The timer is armed once and moved on only when it fires, not per chunk:
                // a hot path of 32 KiB frames should not touch the timer wheel each time.
                Race::Idle if last_data + self.idle > tokio::time::Instant::now() => {
                    idle_timer.as_mut().reset(last_data + self.idle);
                    continue;
                }
                Race::Idle => Err(Error::new(
                    Kind::Timeout,
                    format!(
                        "no data for {:?} (idle timeout) after {} bytes",
                        self.idle,
                        payload.bytes()
                    ),
                )),
                Race::Deadline => {
                    self.deadline_hit.store(true, Ordering::Relaxed);
                    Err(self.cut(Cut::Deadline))
                }
                Race::Stop => {
                    self.interrupted.store(true, Ordering::Relaxed);
                    Err(self.cut(Cut::Stop))
                }
            };
            match next {
                Ok(None) => break,
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        let offset = payload.bytes();
                        if let Err(e) = payload.write(&data) {
                            failure = Some((e, offset));
                            break;
                        }
                        self.meter
                            .bytes
                            .fetch_add(data.len() as u64, Ordering::Relaxed);
                        if let Err(e) = state.push(&data, offset) {
                            if failure.is_none() {
                                failure = Some(e);
                            }
                        }
                    }
                }
                Ok(Some(Err(e))) => {
                    failure = Some((body_error(&e, payload.bytes()), payload.bytes()));
                    break;
                }
                Err(e) => {
                    failure = Some((e, payload.bytes()));
                    break;
                }
            }
        }
        if failure.is_none() {
            if let Err(e) = state.finish_check() {
                failure = Some(e);
            }
        }
        let (extra, json_bytes, derived) = state.finish();
        let (written, disk_err) = payload.finish();
        if failure.is_none() {
            failure = disk_err.map(|e| (e, written.disk_bytes));
        }
        // JSON is parsed before the record is written, so a broken answer is recorded as
        // incomplete with the offset where it breaks.
        let mut json = None;
        if let (true, Some(bytes)) = (failure.is_none(), json_bytes) {
            if bytes.is_empty() {
                if podman_answers_empty(call.template) {
                    // Podman answers these with an empty 200 when it cannot serve them (top of
                    // a paused container): a fact about the engine, not a broken answer.
                    self.unavailable(call, "the engine answered 200 with an empty body");
                } else {
                    failure = Some((Error::protocol("an empty body where JSON was expected"), 0));
                }
            } else {
                match serde_json::from_slice::<Value>(&bytes) {
                    Ok(v) => json = Some(v),
                    Err(e) => {
                        let at = json_offset(&bytes, e.line(), e.column());
                        failure = Some((
                            Error::protocol(format!("the answer is not valid JSON: {e}")),
                            at,
                        ));
                    }
                }
            }
        }
        if let Some(v) = &json {
            if let Some(shape) = expected_shape(call.template) {
                if !shape_fits(shape, v) {
                    let err =
                        Error::protocol(format!("expected a JSON {shape}, got {}", kind_of(v)));
                    failure = Some((err, 0));
                    json = None;
                }
            }
        }
        let complete = failure.is_none();
        let mut f = Map::new();
        if busy_waits > 0 {
            // Asked again after the engine said another client's operation was running.
            f.insert("busy_waits".into(), json!(busy_waits));
        }
        if let Some(stat) = path_stat {
            f.insert("path_stat".into(), decode_path_stat(&stat));
        }
        for (k, v) in extra {
            f.insert(k, v);
        }
        self.artifact(call, tier, status, &when, &written, complete, f);
        for (w, complete_derived) in derived {
            let mut d = Map::new();
            d.insert("derived_from".into(), json!(written.path));
            self.artifact(
                call,
                tier,
                status,
                &when,
                &w,
                complete && complete_derived,
                d,
            );
        }
        if let Some((e, offset)) = &failure {
            self.error(call, e, *offset, Some(&written.path));
        }
        if let (Check::Image(id), true) = (&check, complete) {
            self.image_check(call, &written.path, id).await;
        }
        Some(Fetched {
            written,
            json,
            complete,
        })
    }

    /// Verify a saved image against its own digests and record the result.
    async fn image_check(&self, call: &Call, path: &str, id: &str) {
        let full = self.bundle.root().join(path);
        let expected = id.to_string();
        let result = tokio::task::spawn_blocking(move || {
            crate::image_check::check_file(&full, Some(&expected))
        })
        .await;
        let mut f = Map::new();
        f.insert("endpoint".into(), json!(call.template));
        f.insert("object".into(), json!(call.object));
        f.insert("path".into(), json!(path));
        match result {
            Ok(Ok(report)) => {
                let ok = report.ok;
                f.insert("image_check".into(), report.to_json());
                self.log("image_check", f);
                if !ok {
                    let detail = format!(
                        "saved image fails its own digests: {}",
                        report.failures.join("; ")
                    );
                    self.error(call, &Error::new(Kind::Integrity, detail), 0, Some(path));
                }
            }
            Ok(Err(e)) => self.error(call, &e, 0, Some(path)),
            Err(e) => self.error(
                call,
                &Error::new(Kind::Integrity, format!("image check stopped: {e}")),
                0,
                Some(path),
            ),
        }
    }

    /// Write one `artifact` record. A file that could not be read back was removed and is
    /// not listed; the error record says so.
    #[allow(clippy::too_many_arguments)]
    fn artifact(
        &self,
        call: &Call,
        tier: &str,
        status: u16,
        when: &Started,
        w: &Written,
        complete: bool,
        mut f: Map<String, Value>,
    ) {
        if w.readback_sha256.is_empty() {
            return;
        }
        f.insert("endpoint".into(), json!(call.template));
        f.insert("object".into(), json!(call.object));
        f.insert("path".into(), json!(w.path));
        f.insert("tier".into(), json!(tier));
        f.insert("bytes".into(), json!(w.bytes));
        f.insert("sha256".into(), json!(w.sha256));
        f.insert("readback_sha256".into(), json!(w.readback_sha256));
        f.insert("disk_bytes".into(), json!(w.disk_bytes));
        f.insert("status".into(), json!(status));
        f.insert("start".into(), json!(when.utc));
        f.insert("end".into(), json!(clock::utc_now()));
        f.insert("start_mono_ns".into(), json!(when.mono_ns));
        f.insert("complete".into(), json!(complete));
        self.meter.artifacts.fetch_add(1, Ordering::Relaxed);
        self.log("artifact", f);
    }

    fn cut(&self, why: Cut) -> Error {
        match why {
            Cut::Stop => Error::new(Kind::Interrupted, "interrupted by the examiner (Ctrl-C)"),
            Cut::Deadline => Error::new(Kind::Deadline, "the overall deadline passed mid-transfer"),
        }
    }

    /// The first kilobytes of an error answer, as text for the log.
    async fn error_body(&self, body: &mut crate::transport::Body) -> String {
        let mut buf = Vec::new();
        while buf.len() < 4096 {
            match tokio::time::timeout(self.idle, body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(d) = frame.into_data() {
                        buf.extend_from_slice(&d);
                    }
                }
                _ => break,
            }
        }
        buf.truncate(4096);
        let text = String::from_utf8_lossy(&buf);
        match serde_json::from_slice::<Value>(&buf) {
            Ok(v) => match v.get("message").and_then(Value::as_str) {
                Some(m) => m.to_string(),
                None => text.trim().to_string(),
            },
            Err(_) => text.trim().to_string(),
        }
    }
}

/// Describe a body that broke off: hyper's message is terse, the cause is in its sources.
fn body_error(e: &hyper::Error, received: u64) -> Error {
    let mut kind = if e.is_parse() {
        Kind::Protocol
    } else {
        Kind::Truncated
    };
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData
            ) {
                kind = Kind::Protocol;
            }
        }
        source = s.source();
    }
    Error::new(
        kind,
        format!("the body broke off after {received} bytes: {detail}"),
    )
}

/// Byte offset of a JSON error from serde_json's 1-based line and column.
fn json_offset(bytes: &[u8], line: usize, column: usize) -> u64 {
    let mut start = 0usize;
    for _ in 1..line {
        match bytes
            .get(start..)
            .and_then(|rest| rest.iter().position(|b| *b == b'\n'))
        {
            Some(p) => start += p + 1,
            None => break,
        }
    }
    (start + column.saturating_sub(1)) as u64
}

/// The endpoints where Podman gives an empty 200 instead of an answer.
fn podman_answers_empty(template: &str) -> bool {
    matches!(
        template,
        "/containers/{id}/top" | "/containers/{id}/stats" | "/images/json"
    )
}

/// The JSON shape the collector relies on for an endpoint; anything else is a protocol error.
fn expected_shape(template: &str) -> Option<&'static str> {
    match template {
        "/containers/json"
        | "/images/json"
        | "/networks"
        | "/plugins"
        | "/images/{name}/history" => Some("array"),
        "/containers/{id}/json"
        | "/images/{name}/json"
        | "/info"
        | "/version"
        | "/volumes"
        | "/containers/{id}/top" => Some("object"),
        "/containers/{id}/changes" => Some("array or null"),
        _ => None,
    }
}

fn shape_fits(shape: &str, v: &Value) -> bool {
    match shape {
        "array" => v.is_array(),
        "object" => v.is_object(),
        "array or null" => v.is_array() || v.is_null(),
        _ => true,
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The engine's `X-Docker-Container-Path-Stat` header is base64 JSON; keep both forms.
fn decode_path_stat(raw: &str) -> Value {
    let decoded = crate::sign::base64_decode(raw.trim())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .unwrap_or(Value::Null);
    json!({ "raw": raw, "decoded": decoded })
}

/// When a request started, on both clocks.
pub struct Started {
    utc: String,
    mono_ns: u64,
}

/// Extra artifact fields, the JSON bytes to parse, and the derived files written.
type Finished = (Vec<(String, Value)>, Option<Vec<u8>>, Vec<(Written, bool)>);

/// Per-kind work done on the bytes while they stream.
#[allow(clippy::large_enum_variant)] // one per request, never in a collection
enum Processor {
    Raw,
    /// The unfinished last line (bounded) and where to count footprint events.
    Events(Vec<u8>, Arc<Footprint>),
    Json(Vec<u8>, bool),
    Tar(TarWalker),
    Logs {
        demux: Option<Demux>,
        out: Option<Payload>,
        err: Option<Payload>,
        daemon_errors: Vec<String>,
    },
}

impl Processor {
    fn new(check: &Check, bundle: &Arc<Bundle>, tier: &str, rel: &str) -> Processor {
        match check {
            Check::Raw => Processor::Raw,
            Check::Events(f) => Processor::Events(Vec::new(), f.clone()),
            Check::Json => Processor::Json(Vec::new(), false),
            Check::Tar | Check::Image(_) => Processor::Tar(TarWalker::new()),
            Check::Logs { tty } => {
                if *tty {
                    Processor::Logs {
                        demux: None,
                        out: None,
                        err: None,
                        daemon_errors: Vec::new(),
                    }
                } else {
                    let dir = rel.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                    let sibling = |name: &str| {
                        let p = if dir.is_empty() {
                            format!("{tier}/{name}")
                        } else {
                            format!("{tier}/{dir}/{name}")
                        };
                        bundle.payload(&p).ok()
                    };
                    Processor::Logs {
                        demux: Some(Demux::new()),
                        out: sibling("stdout.log"),
                        err: sibling("stderr.log"),
                        daemon_errors: Vec::new(),
                    }
                }
            }
        }
    }

    /// Check the bytes that start at `offset`; on failure, say where the good data stops.
    fn push(&mut self, data: &[u8], offset: u64) -> std::result::Result<(), (Error, u64)> {
        match self {
            Processor::Raw => Ok(()),
            Processor::Events(partial, footprint) => {
                partial.extend_from_slice(data);
                let mut start = 0;
                while let Some(n) = partial[start..].iter().position(|&b| b == b'\n') {
                    if is_footprint(&partial[start..start + n]) {
                        footprint.seen.fetch_add(1, Ordering::Relaxed);
                    }
                    start += n + 1;
                }
                partial.drain(..start);
                // An event line is a few hundred bytes; a longer one is not counted.
                if partial.len() > JSON_PARSE_LIMIT {
                    partial.clear();
                }
                Ok(())
            }
            Processor::Json(buf, over) => {
                if buf.len() + data.len() > JSON_PARSE_LIMIT {
                    *over = true;
                    buf.clear();
                    buf.shrink_to_fit();
                } else if !*over {
                    buf.extend_from_slice(data);
                }
                Ok(())
            }
            Processor::Tar(walker) => walker.push(data).map_err(|e| {
                (
                    Error::protocol(format!(
                        "not a valid tar at byte {}: {}",
                        e.offset, e.detail
                    )),
                    e.offset,
                )
            }),
            Processor::Logs {
                demux: Some(demux),
                out,
                err,
                daemon_errors,
            } => {
                let mut write_err: Option<String> = None;
                let r = demux.push(data, &mut |stream, bytes| {
                    let target = match stream {
                        Stream::Stdout => out.as_mut(),
                        Stream::Stderr => err.as_mut(),
                        Stream::SystemErr => {
                            if daemon_errors.len() < 16 {
                                daemon_errors
                                    .push(String::from_utf8_lossy(bytes).trim().to_string());
                            }
                            None
                        }
                    };
                    if let Some(p) = target {
                        if let Err(e) = p.write(bytes) {
                            write_err = Some(e.message);
                        }
                    }
                });
                if let Err(e) = r {
                    let at = e.offset;
                    return Err((
                        Error::protocol(format!("bad log frame at byte {at}: {}", e.detail)),
                        at,
                    ));
                }
                match write_err {
                    Some(m) => Err((Error::new(Kind::Io, m), offset)),
                    None => Ok(()),
                }
            }
            Processor::Logs { demux: None, .. } => Ok(()),
        }
    }

    fn finish_check(&self) -> std::result::Result<(), (Error, u64)> {
        match self {
            Processor::Tar(walker) => walker.finish().map(|_| ()).map_err(|e| {
                (
                    Error::protocol(format!(
                        "not a complete tar at byte {}: {}",
                        e.offset, e.detail
                    )),
                    e.offset,
                )
            }),
            Processor::Logs {
                demux: Some(demux),
                daemon_errors,
                ..
            } => {
                demux.finish().map_err(|e| {
                    let msg = format!(
                        "log stream ends inside a frame at byte {}: {}",
                        e.offset, e.detail
                    );
                    (Error::new(Kind::Truncated, msg), e.offset)
                })?;
                match demux.first_system_err() {
                    None => Ok(()),
                    Some(at) => Err((
                        Error::protocol(format!(
                            "the daemon reported an error inside the log stream (stream type 3 at byte {at}): {}",
                            daemon_errors.join(" | ")
                        )),
                        at,
                    )),
                }
            }
            _ => Ok(()),
        }
    }

    /// Extra artifact fields, the JSON bytes to parse, and the derived files written.
    fn finish(self) -> Finished {
        match self {
            Processor::Raw | Processor::Events(..) => (vec![], None, vec![]),
            Processor::Json(buf, over) => {
                if over {
                    (
                        vec![("json".into(), json!("too large to parse; kept unparsed"))],
                        None,
                        vec![],
                    )
                } else {
                    (vec![], Some(buf), vec![])
                }
            }
            Processor::Tar(walker) => match walker.finish() {
                Ok(s) => (
                    vec![(
                        "tar".into(),
                        json!({"entries": s.entries, "end_offset": s.end_offset, "trailing_zero_bytes": s.trailing_zero_bytes}),
                    )],
                    None,
                    vec![],
                ),
                Err(e) => (
                    vec![("tar".into(), json!({"error": e.detail, "offset": e.offset}))],
                    None,
                    vec![],
                ),
            },
            Processor::Logs {
                demux, out, err, ..
            } => {
                let mut derived = Vec::new();
                for p in [out, err].into_iter().flatten() {
                    let (w, e) = p.finish();
                    derived.push((w, e.is_none()));
                }
                let framing = if demux.is_some() {
                    "multiplexed"
                } else {
                    "tty"
                };
                (vec![("log_framing".into(), json!(framing))], None, derived)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footprint_events_are_counted_across_chunk_boundaries() {
        let dir = std::env::temp_dir().join(format!("dac-session-fp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let bag = Bundle::create(&dir).unwrap();
        let fp = Arc::new(Footprint::default());
        let mut p = Processor::new(&Check::Events(fp.clone()), &bag, "20-events", "live.jsonl");
        let stream = concat!(
            r#"{"Type":"container","Action":"top","id":"a"}"#,
            "\n",
            r#"{"Type":"container","Action":"start","id":"b"}"#,
            "\n",
            r#"{"Type":"container","Action":"export","id":"a"}"#,
            "\n",
            "not json\n",
            r#"{"Type":"image","Action":"save","id":"sha256:c"}"#,
            "\n",
            r#"{"Type":"volume","Action":"mount","id":"v"}"#,
            "\n",
            r#"{"Type":"container","Action":"archive-path","id":"a"}"#,
        )
        .as_bytes();
        // Every split point, including inside a line and between lines.
        for cut in 0..stream.len() {
            fp.seen.store(0, Ordering::Relaxed);
            if let Processor::Events(partial, _) = &mut p {
                partial.clear();
            }
            p.push(&stream[..cut], 0).unwrap();
            p.push(&stream[cut..], cut as u64).unwrap();
            // The last line has no newline yet: it is not counted until it is complete.
            assert_eq!(fp.seen.load(Ordering::Relaxed), 3, "cut at {cut}");
            p.push(b"\n", stream.len() as u64).unwrap();
            assert_eq!(fp.seen.load(Ordering::Relaxed), 4, "cut at {cut}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_a_busy_disk_usage_is_asked_again() {
        let busy = "a disk usage operation is already running";
        assert!(engine_busy("/system/df", 500, busy));
        assert!(!engine_busy("/system/df", 500, "no space left"));
        assert!(!engine_busy("/system/df", 404, busy));
        assert!(!engine_busy("/info", 500, busy));
    }

    #[test]
    fn only_requests_that_leave_events_are_expected() {
        let api = Api { version: (1, 41) };
        for podman in [false, true] {
            assert_eq!(
                leaves_event(api.container_top("a").template, podman),
                !podman
            );
            assert!(leaves_event(api.container_export("a").template, podman));
            assert!(leaves_event(
                api.container_archive("a", "/x").template,
                podman
            ));
            assert!(leaves_event(api.image_save("a").template, podman));
            assert!(!leaves_event(api.container_logs("a").template, podman));
            assert!(!leaves_event(api.container_inspect("a").template, podman));
            assert!(!leaves_event(api.container_stats("a").template, podman));
        }
    }

    #[test]
    fn the_live_stream_waits_for_its_footprint_but_not_forever() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let fp = Footprint::default();
        fp.expected.store(2, Ordering::Relaxed);
        fp.seen.store(2, Ordering::Relaxed);
        assert!(rt.block_on(fp.caught_up(Duration::from_secs(5))));
        fp.expected.store(3, Ordering::Relaxed);
        let t = std::time::Instant::now();
        assert!(!rt.block_on(fp.caught_up(Duration::from_millis(30))));
        assert!(t.elapsed() >= Duration::from_millis(30));
    }
}
