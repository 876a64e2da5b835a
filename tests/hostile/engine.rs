//! A misbehaving Docker engine: a std-thread HTTP/1.1 server on a Unix socket, written by hand
//! so every byte on the wire is the test's choice. A routing table maps path patterns to
//! scripted behaviours; the defaults give the minimum happy answer for every endpoint the
//! collector calls. Every request line is recorded.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::make;

/// One request as received.
#[derive(Clone, Debug)]
pub struct Request {
    /// The request line, lossily decoded.
    pub line: String,
    pub method: String,
    /// Path and query as sent.
    pub target: String,
    /// The API version prefix, e.g. "1.41", if the path had one.
    pub version: Option<String>,
    /// Path without the version prefix and the query, still percent-encoded.
    pub path: String,
    pub query: String,
    /// Percent-decoded segments of `path` (the first is empty).
    pub segments: Vec<String>,
    /// Empty when the route asked to leave the headers unread.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The decoded object segment: `/containers/<this>/json`.
    pub fn object(&self) -> &str {
        self.segments.get(2).map(String::as_str).unwrap_or("")
    }
}

pub type Behaviour = Arc<dyn Fn(&Request, &mut Conn) + Send + Sync>;

/// A default answer, given the engine's world.
type Answer = Box<dyn Fn(&World, &Request, &mut Conn) + Send + Sync>;

struct Route {
    pattern: Vec<String>,
    query_has: Option<String>,
    object: Option<String>,
    leave_headers_unread: bool,
    behaviour: Behaviour,
}

impl Route {
    fn matches(&self, raw_segments: &[&str], decoded: &[String], query: &str) -> bool {
        if let Some(q) = &self.query_has {
            if !query.contains(q.as_str()) {
                return false;
            }
        }
        if let Some(o) = &self.object {
            if decoded.get(2) != Some(o) {
                return false;
            }
        }
        self.pattern.len() == raw_segments.len()
            && self
                .pattern
                .iter()
                .zip(raw_segments)
                .all(|(p, s)| p == "*" || p == s)
    }
}

/// The server side of one connection.
pub struct Conn {
    stream: UnixStream,
    stop: Arc<AtomicBool>,
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        304 => "Not Modified",
        404 => "Not Found",
        409 => "Conflict",
        500 => "Internal Server Error",
        _ => "Whatever",
    }
}

impl Conn {
    /// Write bytes as they are; false once the client is gone.
    pub fn raw(&mut self, bytes: &[u8]) -> bool {
        self.stream
            .write_all(bytes)
            .and_then(|_| self.stream.flush())
            .is_ok()
    }

    /// Status line and headers, the blank line included.
    pub fn head(&mut self, status: u16, headers: &[(&str, String)]) -> bool {
        let mut h = format!(
            "HTTP/1.1 {status} {}\r\nApi-Version: 1.41\r\nServer: Docker/24.0.7 (linux)\r\n",
            reason(status)
        );
        for (k, v) in headers {
            h.push_str(&format!("{k}: {v}\r\n"));
        }
        h.push_str("\r\n");
        self.raw(h.as_bytes())
    }

    /// A complete answer with Content-Length.
    pub fn respond(&mut self, status: u16, content_type: &str, body: &[u8]) -> bool {
        self.head(
            status,
            &[
                ("Content-Type", content_type.into()),
                ("Content-Length", body.len().to_string()),
            ],
        ) && self.raw(body)
    }

    pub fn json(&mut self, status: u16, v: &Value) -> bool {
        self.respond(status, "application/json", &serde_json::to_vec(v).unwrap())
    }

    pub fn not_found(&mut self, what: &str) -> bool {
        self.json(404, &json!({"message": format!("No such object: {what}")}))
    }

    pub fn chunked_head(&mut self, status: u16, content_type: &str) -> bool {
        self.head(
            status,
            &[
                ("Content-Type", content_type.into()),
                ("Transfer-Encoding", "chunked".into()),
            ],
        )
    }

    pub fn chunk(&mut self, data: &[u8]) -> bool {
        if data.is_empty() {
            return true;
        }
        let mut c = format!("{:x}\r\n", data.len()).into_bytes();
        c.extend_from_slice(data);
        c.extend_from_slice(b"\r\n");
        self.raw(&c)
    }

    pub fn chunked_end(&mut self) -> bool {
        self.raw(b"0\r\n\r\n")
    }

    /// Sleep, unless the test is over; false when it is.
    pub fn pause(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10).min(until - Instant::now()));
        }
        !self.stop.load(Ordering::Relaxed)
    }

    /// Keep the connection open, saying nothing, until the client hangs up or the test ends.
    pub fn hold(&mut self) {
        let _ = self
            .stream
            .set_read_timeout(Some(Duration::from_millis(50)));
        let mut buf = [0u8; 4096];
        while !self.stop.load(Ordering::Relaxed) {
            match self.stream.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(_) => return,
            }
        }
    }

    /// Close the connection now (both directions).
    pub fn close(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// What the fake engine holds: containers, one image, one network, one volume.
#[derive(Clone)]
pub struct Container {
    pub id: String,
    pub names: Vec<String>,
    pub state: String,
    pub tty: bool,
    pub image_id: String,
    /// Extra fields merged into the list entry (hostile names, padding).
    pub extra: Value,
    pub logs: Vec<u8>,
    pub export: Vec<u8>,
}

#[derive(Clone)]
pub struct World {
    pub containers: Vec<Container>,
    pub image_id: String,
    pub image_tags: Vec<String>,
    pub image_save: Vec<u8>,
    pub network_id: String,
    pub network_name: String,
    pub volume: String,
    /// `Api-Version` of `/_ping`.
    pub api_version: String,
}

impl World {
    /// Two containers (one running without a TTY, one exited with a TTY), their image, a
    /// bridge network and a named volume.
    pub fn standard() -> World {
        let (image_save, image_id) = make::image_save();
        let web = Container {
            id: make::sha256_hex(b"container web"),
            names: vec!["/web".into()],
            state: "running".into(),
            tty: false,
            image_id: image_id.clone(),
            extra: json!({}),
            logs: [
                make::frame(1, b"2026-12-02T15:16:38.000000001Z listening on :80\n"),
                make::frame(2, b"2026-12-02T15:16:39.000000001Z warning: weak key\n"),
            ]
            .concat(),
            export: make::export_tar("web"),
        };
        let db = Container {
            id: make::sha256_hex(b"container db"),
            names: vec!["/db".into()],
            state: "exited".into(),
            tty: true,
            image_id: image_id.clone(),
            extra: json!({}),
            logs: b"2026-12-02T15:16:40.000000001Z shutting down\r\n".to_vec(),
            export: make::export_tar("db"),
        };
        World {
            containers: vec![web, db],
            image_id,
            image_tags: vec!["forensic/app:1.0".into()],
            image_save,
            network_id: make::sha256_hex(b"network bridge"),
            network_name: "bridge".into(),
            volume: "data".into(),
            api_version: "1.41".into(),
        }
    }

    pub fn container(&self, id: &str) -> Option<&Container> {
        self.containers.iter().find(|c| c.id == id)
    }

    pub fn list_entry(&self, c: &Container) -> Value {
        let mut v = json!({
            "Id": c.id,
            "Names": c.names,
            "Image": self.image_tags.first().cloned().unwrap_or_default(),
            "ImageID": c.image_id,
            "Command": "sh",
            "Created": 1_700_000_000,
            "State": c.state,
            "Status": if c.state == "running" { "Up 2 hours" } else { "Exited (0) 1 hour ago" },
            "Mounts": [{"Type": "volume", "Name": self.volume, "Destination": "/data"}],
            "NetworkSettings": {"Networks": {self.network_name.clone(): {"NetworkID": self.network_id}}},
        });
        if let (Some(m), Some(extra)) = (v.as_object_mut(), c.extra.as_object()) {
            for (k, x) in extra {
                m.insert(k.clone(), x.clone());
            }
        }
        v
    }

    pub fn containers_json(&self) -> Value {
        Value::Array(self.containers.iter().map(|c| self.list_entry(c)).collect())
    }

    pub fn inspect(&self, c: &Container) -> Value {
        json!({
            "Id": c.id,
            "Name": c.names.first().cloned().unwrap_or_default(),
            "Image": c.image_id,
            "Config": {"Tty": c.tty, "Image": self.image_tags.first().cloned().unwrap_or_default(), "Cmd": ["sh"]},
            "State": {"Status": c.state, "Running": c.state == "running", "Pid": 4242},
            "HostConfig": {"Privileged": false},
        })
    }
}

/// Builds the routing table: the test's own routes first, then the defaults.
pub struct Builder {
    world: Arc<World>,
    routes: Vec<Route>,
}

fn pattern(p: &str) -> Vec<String> {
    p.split('/').map(str::to_string).collect()
}

impl Builder {
    pub fn new(world: World) -> Builder {
        Builder {
            world: Arc::new(world),
            routes: Vec::new(),
        }
    }

    fn add(
        mut self,
        pat: &str,
        object: Option<&str>,
        unread: bool,
        f: impl Fn(&Request, &mut Conn) + Send + Sync + 'static,
    ) -> Builder {
        self.routes.push(Route {
            pattern: pattern(pat),
            query_has: None,
            object: object.map(str::to_string),
            leave_headers_unread: unread,
            behaviour: Arc::new(f),
        });
        self
    }

    /// `pat` is an unversioned path; `*` matches one (still encoded) segment.
    pub fn route(
        self,
        pat: &str,
        f: impl Fn(&Request, &mut Conn) + Send + Sync + 'static,
    ) -> Builder {
        self.add(pat, None, false, f)
    }

    /// Like `route`, only for one object (the decoded segment after the collection name):
    /// other objects still get the default answer.
    pub fn route_for(
        self,
        pat: &str,
        object: &str,
        f: impl Fn(&Request, &mut Conn) + Send + Sync + 'static,
    ) -> Builder {
        self.add(pat, Some(object), false, f)
    }

    /// Like `route_for`, but the request headers stay unread in the socket, so closing the
    /// connection makes the kernel reset it (ECONNRESET on the client).
    pub fn route_unread_for(
        self,
        pat: &str,
        object: &str,
        f: impl Fn(&Request, &mut Conn) + Send + Sync + 'static,
    ) -> Builder {
        self.add(pat, Some(object), true, f)
    }

    fn defaults(mut self) -> Builder {
        let w = self.world.clone();
        let d = |b: Builder, pat: &str, f: Answer| {
            let w = w.clone();
            b.route(pat, move |r, c| f(&w, r, c))
        };
        self = d(
            self,
            "/_ping",
            Box::new(|w, _, c| {
                let _ = c.raw(
                format!(
                    "HTTP/1.1 200 OK\r\nApi-Version: {}\r\nDocker-Experimental: false\r\nOstype: linux\r\n\
                     Server: Docker/24.0.7 (linux)\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\n\r\nOK",
                    w.api_version
                )
                .as_bytes(),
            );
            }),
        );
        self = d(
            self,
            "/events",
            Box::new(|_, r, c| {
                if r.query.contains("until=") {
                    let _ = c.respond(200, "application/json", b"");
                } else if c.chunked_head(200, "application/json") {
                    c.hold();
                }
            }),
        );
        self = d(
            self,
            "/containers/json",
            Box::new(|w, _, c| {
                let _ = c.json(200, &w.containers_json());
            }),
        );
        let per_container = |tail: &'static str| -> Answer {
            Box::new(move |w, r, c| {
                let Some(ct) = w.container(r.object()) else {
                    let _ = c.json(
                        404,
                        &json!({"message": format!("No such container: {}", r.object())}),
                    );
                    return;
                };
                let _ = match tail {
                    "json" => c.json(200, &w.inspect(ct)),
                    "top" => c.json(200, &json!({"Titles": ["PID", "CMD"], "Processes": [["4242", "sh -c sleep 1d"]]})),
                    "stats" => c.json(200, &json!({"read": make::rfc3339_now(), "pids_stats": {"current": 1}, "memory_stats": {"usage": 1024}})),
                    "changes" => c.json(200, &json!([{"Path": "/tmp/dropper.sh", "Kind": 1}])),
                    "logs" => {
                        let ctype = if ct.tty { "application/vnd.docker.raw-stream" } else { "application/vnd.docker.multiplexed-stream" };
                        c.respond(200, ctype, &ct.logs)
                    }
                    "export" => c.respond(200, "application/x-tar", &ct.export),
                    "archive" => c.respond(200, "application/x-tar", &make::export_tar("archive")),
                    _ => c.not_found(tail),
                };
            })
        };
        for tail in [
            "json", "top", "stats", "changes", "logs", "export", "archive",
        ] {
            self = d(self, &format!("/containers/*/{tail}"), per_container(tail));
        }
        self = d(
            self,
            "/images/json",
            Box::new(|w, _, c| {
                let _ = c.json(
                200,
                &json!([{"Id": w.image_id, "RepoTags": w.image_tags, "RepoDigests": [], "Size": w.image_save.len(), "Containers": 2, "Created": 1_700_000_000}]),
            );
            }),
        );
        self = d(
            self,
            "/images/*/json",
            Box::new(|w, r, c| {
                let _ = if r.object() == w.image_id {
                    c.json(200, &json!({"Id": w.image_id, "RepoTags": w.image_tags, "Os": "linux", "Architecture": "amd64"}))
                } else {
                    c.not_found(r.object())
                };
            }),
        );
        self = d(
            self,
            "/images/*/history",
            Box::new(|w, r, c| {
                let _ = if r.object() == w.image_id {
                    c.json(200, &json!([{"Id": w.image_id, "CreatedBy": "/bin/sh -c #(nop) ADD file", "Size": 8}]))
                } else {
                    c.not_found(r.object())
                };
            }),
        );
        self = d(
            self,
            "/images/*/get",
            Box::new(|w, r, c| {
                let _ = if r.object() == w.image_id {
                    c.respond(200, "application/x-tar", &w.image_save)
                } else {
                    c.not_found(r.object())
                };
            }),
        );
        self = d(
            self,
            "/networks",
            Box::new(|w, _, c| {
                let _ = c.json(200, &json!([{"Name": w.network_name, "Id": w.network_id, "Driver": "bridge", "Scope": "local"}]));
            }),
        );
        self = d(
            self,
            "/networks/*",
            Box::new(|w, r, c| {
                let _ = if r.object() == w.network_id {
                    c.json(200, &json!({"Name": w.network_name, "Id": w.network_id, "Driver": "bridge", "Containers": {}}))
                } else {
                    c.not_found(r.object())
                };
            }),
        );
        self = d(
            self,
            "/volumes",
            Box::new(|w, _, c| {
                let _ = c.json(200, &json!({"Volumes": [{"Name": w.volume, "Driver": "local", "Mountpoint": "/var/lib/docker/volumes/data/_data"}], "Warnings": null}));
            }),
        );
        self = d(
            self,
            "/volumes/*",
            Box::new(|w, r, c| {
                let _ = if r.object() == w.volume {
                    c.json(200, &json!({"Name": w.volume, "Driver": "local", "Mountpoint": "/var/lib/docker/volumes/data/_data"}))
                } else {
                    c.not_found(r.object())
                };
            }),
        );
        self = d(
            self,
            "/plugins",
            Box::new(|_, _, c| {
                let _ = c.json(200, &json!([]));
            }),
        );
        self = d(
            self,
            "/info",
            Box::new(|w, _, c| {
                let _ = c.json(
                200,
                &json!({"ID": "HOST:ID", "Containers": w.containers.len(), "Images": 1, "Name": "victim",
                        "ServerVersion": "24.0.7", "SystemTime": make::rfc3339_now(), "Swarm": {"ControlAvailable": false}}),
            );
            }),
        );
        self = d(
            self,
            "/version",
            Box::new(|_, _, c| {
                let _ = c.json(200, &json!({"Version": "24.0.7", "ApiVersion": "1.43", "MinAPIVersion": "1.12", "Os": "linux", "Arch": "amd64"}));
            }),
        );
        self = d(
            self,
            "/system/df",
            Box::new(|_, _, c| {
                let _ = c.json(200, &json!({"LayersSize": 8, "Images": [], "Containers": [], "Volumes": [], "BuildCache": []}));
            }),
        );
        self
    }

    pub fn start(self, sock: &Path) -> Engine {
        let world = self.world.clone();
        let routes = Arc::new(self.defaults().routes);
        let listener = UnixListener::bind(sock).expect("bind the fake engine socket");
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (s, rq) = (stop.clone(), requests.clone());
        let accept = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (routes, s, rq) = (routes.clone(), s.clone(), rq.clone());
                        std::thread::spawn(move || serve(stream, &routes, s, &rq));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Engine {
            requests,
            stop,
            accept: Some(accept),
            world,
        }
    }
}

/// A running fake engine; stops when dropped.
pub struct Engine {
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
    pub world: Arc<World>,
}

impl Engine {
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Wait until a request whose target contains `needle` arrived.
    pub fn wait_for(&self, needle: &str, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if self.requests().iter().any(|r| r.target.contains(needle)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

pub fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn split_version(path: &str) -> (Option<String>, &str) {
    if let Some(rest) = path.strip_prefix("/v") {
        let end = rest.find('/').unwrap_or(rest.len());
        let v = &rest[..end];
        if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return (Some(v.to_string()), &rest[end..]);
        }
    }
    (None, path)
}

fn serve(
    mut stream: UnixStream,
    routes: &[Route],
    stop: Arc<AtomicBool>,
    log: &Mutex<Vec<Request>>,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    // The request line, a byte at a time, so the headers can be left in the socket.
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        match stream.read(&mut byte) {
            Ok(1) if line.len() < (1 << 20) => line.push(byte[0]),
            _ => return,
        }
    }
    line.truncate(line.len() - 2);
    let line = String::from_utf8_lossy(&line).into_owned();
    let mut parts = line.splitn(3, ' ');
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let (raw_path, query) = target.split_once('?').unwrap_or((&target, ""));
    let (version, path) = split_version(raw_path);
    let raw_segments: Vec<&str> = path.split('/').collect();
    let segments: Vec<String> = raw_segments
        .iter()
        .map(|s| String::from_utf8_lossy(&percent_decode(s)).into_owned())
        .collect();
    let route = routes
        .iter()
        .find(|r| r.matches(&raw_segments, &segments, query));
    let mut req = Request {
        line: line.clone(),
        method,
        target: target.clone(),
        version,
        path: path.to_string(),
        query: query.to_string(),
        segments,
        headers: Vec::new(),
    };
    if !route.is_some_and(|r| r.leave_headers_unread) {
        let mut head = b"\r\n".to_vec();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
            if head.len() > (1 << 20) {
                break;
            }
        }
        for l in String::from_utf8_lossy(&head)
            .split("\r\n")
            .filter(|l| !l.is_empty())
        {
            if let Some((k, v)) = l.split_once(':') {
                req.headers
                    .push((k.trim().to_string(), v.trim().to_string()));
            }
        }
    }
    log.lock().unwrap().push(req.clone());
    let mut conn = Conn { stream, stop };
    match route {
        Some(r) => (r.behaviour)(&req, &mut conn),
        None => {
            let _ = conn.json(404, &json!({"message": "page not found"}));
        }
    }
}
