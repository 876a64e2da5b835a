//! Finding the engine the way the docker CLI does (`docker/cli:cli/command/cli.go`,
//! `opts/hosts.go`, `cli/flags/options.go`, `cli/context/store`), written as a pure
//! function over an [`Env`] so every precedence rule can be tested without touching
//! the machine the examiner is working on.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Rootful Docker's socket; also what the CLI falls back to when nothing else is set.
const ROOTFUL_SOCKET: &str = "/var/run/docker.sock";
const PODMAN_ROOTFUL_SOCKET: &str = "/run/podman/podman.sock";
const DEFAULT_TCP_PORT: u16 = 2375;
const DEFAULT_TLS_PORT: u16 = 2376;
/// The CLI's `DefaultHTTPHost`, used for `tcp://:port` and for TLS without a host.
const DEFAULT_TCP_HOST: &str = "localhost";
/// config.json and meta.json are tiny; a cap keeps a hostile file from eating memory.
const MAX_CONFIG_BYTES: u64 = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// false = encrypt but do not check the server certificate (`DOCKER_TLS`,
    /// `SkipTLSVerify` in a context).
    pub verify: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointKind {
    Unix(PathBuf),
    Tcp {
        host: String,
        port: u16,
    },
    Ssh {
        user: Option<String>,
        host: String,
        port: Option<u16>,
        /// Remote socket path given as the URL path (`ssh://h/run/docker.sock`).
        socket: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Normalised URL, e.g. `unix:///var/run/docker.sock`, `tcp://10.0.0.5:2376`.
    pub url: String,
    pub kind: EndpointKind,
    /// Only ever set for `Tcp` endpoints.
    pub tls: Option<TlsFiles>,
    /// Why this endpoint was chosen, for the acquisition log.
    pub source: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostArgs {
    pub host: Option<String>,
    pub context: Option<String>,
    pub tlsverify: bool,
    pub tlscacert: Option<PathBuf>,
    pub tlscert: Option<PathBuf>,
    pub tlskey: Option<PathBuf>,
}

/// The parts of the process environment that discovery looks at.
pub trait Env {
    fn var(&self, k: &str) -> Option<String>;
    fn exists(&self, p: &Path) -> bool;
    fn read(&self, p: &Path) -> Option<Vec<u8>>;
    fn home(&self) -> Option<PathBuf>;
}

/// The real process environment and file system.
pub struct RealEnv;

impl Env for RealEnv {
    fn var(&self, k: &str) -> Option<String> {
        std::env::var(k).ok()
    }
    fn exists(&self, p: &Path) -> bool {
        std::fs::metadata(p).is_ok()
    }
    fn read(&self, p: &Path) -> Option<Vec<u8>> {
        use std::io::Read;
        let f = std::fs::File::open(p).ok()?;
        let mut buf = Vec::new();
        f.take(MAX_CONFIG_BYTES).read_to_end(&mut buf).ok()?;
        Some(buf)
    }
    fn home(&self) -> Option<PathBuf> {
        match std::env::var_os("HOME") {
            Some(h) if !h.is_empty() => Some(PathBuf::from(h)),
            _ => std::env::home_dir(),
        }
    }
}

/// Picks the engine endpoint. Order (as `resolveContextName` in the CLI): `--context`,
/// `-H`, `DOCKER_HOST`, `DOCKER_CONTEXT`, `currentContext` in config.json, then the
/// default context, which probes the well-known sockets.
pub fn resolve(args: &HostArgs, env: &dyn Env) -> Result<Endpoint> {
    if args.context.is_some() && args.host.is_some() {
        return Err(Error::usage(
            "conflicting options: either specify --host or --context, not both",
        ));
    }
    let cfg_dir = config_dir(env);
    if let Some(name) = &args.context {
        if name.is_empty() {
            return Err(Error::usage("--context needs a context name"));
        }
        return from_context(name, &format!("--context {name}"), args, env, &cfg_dir);
    }
    if let Some(host) = &args.host {
        if host.trim().is_empty() {
            return Err(Error::usage(
                "--host needs an address such as unix:///var/run/docker.sock",
            ));
        }
        return from_host(host, "--host", args, env, &cfg_dir);
    }
    if let Some(host) = nonempty(env.var("DOCKER_HOST")) {
        return from_host(&host, "DOCKER_HOST", args, env, &cfg_dir);
    }
    if let Some(name) = nonempty(env.var("DOCKER_CONTEXT")) {
        return from_context(
            &name,
            &format!("DOCKER_CONTEXT {name}"),
            args,
            env,
            &cfg_dir,
        );
    }
    if let Some(dir) = &cfg_dir {
        let cfg = dir.join("config.json");
        if let Some(bytes) = env.read(&cfg) {
            if let Some(name) = current_context(&bytes, &cfg)? {
                let source = format!("currentContext {name} in {}", cfg.display());
                return from_context(&name, &source, args, env, &cfg_dir);
            }
        }
    }
    default_endpoint(None, args, env, &cfg_dir)
}

/// Parses a `DOCKER_HOST`-style address. A bare `host:port` is TCP, as in the CLI.
pub fn parse_host(url: &str) -> Result<EndpointKind> {
    parse_kind(url, false)
}

fn nonempty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

fn config_dir(env: &dyn Env) -> Option<PathBuf> {
    match nonempty(env.var("DOCKER_CONFIG")) {
        Some(d) => Some(PathBuf::from(d)),
        None => env.home().map(|h| h.join(".docker")),
    }
}

/// A config.json the CLI would only warn about is an error here: guessing another
/// engine than the one the examiner's CLI talks to would be worse than stopping.
fn current_context(bytes: &[u8], path: &Path) -> Result<Option<String>> {
    // An empty file is fine for the CLI (its decoder's io.EOF is ignored).
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        Error::usage(format!(
            "cannot parse {}: {e}; fix it or choose the engine with --host or --context",
            path.display()
        ))
    })?;
    match v.get("currentContext") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(nonempty(Some(s.clone()))),
        Some(_) => Err(Error::usage(format!(
            "currentContext in {} is not a string",
            path.display()
        ))),
    }
}

fn from_host(
    host: &str,
    source: &str,
    args: &HostArgs,
    env: &dyn Env,
    cfg_dir: &Option<PathBuf>,
) -> Result<Endpoint> {
    let tls = flag_tls(args, env, cfg_dir);
    let kind = parse_kind(host, tls.is_some()).map_err(|e| prefixed(source, e))?;
    Ok(endpoint(kind, tls, source.to_string()))
}

fn prefixed(source: &str, e: Error) -> Error {
    Error::new(e.kind, format!("{source}: {}", e.message))
}

fn endpoint(kind: EndpointKind, tls: Option<TlsFiles>, source: String) -> Endpoint {
    // TLS only means something on TCP; ssh tunnels and local sockets ignore it (the
    // CLI's ssh helper does too).
    let tls = match kind {
        EndpointKind::Tcp { .. } => tls,
        _ => None,
    };
    Endpoint {
        url: url_of(&kind),
        kind,
        tls,
        source,
    }
}

/// TLS settings from flags and environment (`cli/flags/options.go`). `DOCKER_TLS_VERIFY`
/// or `--tlsverify` turns on verified TLS, `DOCKER_TLS` unverified TLS. Naming a cert
/// file on the command line also turns on verified TLS: silently ignoring it, as the
/// CLI does, would leave the examiner believing the connection was authenticated.
fn flag_tls(args: &HostArgs, env: &dyn Env, cfg_dir: &Option<PathBuf>) -> Option<TlsFiles> {
    let explicit = args.tlscacert.is_some() || args.tlscert.is_some() || args.tlskey.is_some();
    let verify = args.tlsverify || explicit || nonempty(env.var("DOCKER_TLS_VERIFY")).is_some();
    if !verify && nonempty(env.var("DOCKER_TLS")).is_none() {
        return None;
    }
    let dir = nonempty(env.var("DOCKER_CERT_PATH"))
        .map(PathBuf::from)
        .or_else(|| cfg_dir.clone());
    let pick = |flag: &Option<PathBuf>, name: &str, keep_missing: bool| -> Option<PathBuf> {
        if let Some(p) = flag {
            return Some(p.clone());
        }
        let p = dir.as_ref()?.join(name);
        // A missing default CA under verification is kept so the connect error names
        // the file the CLI would have wanted; missing client cert/key mean server-auth only.
        (keep_missing || env.exists(&p)).then_some(p)
    };
    Some(TlsFiles {
        ca: pick(&args.tlscacert, "ca.pem", verify),
        cert: pick(&args.tlscert, "cert.pem", false),
        key: pick(&args.tlskey, "key.pem", false),
        verify,
    })
}

fn context_id(name: &str) -> String {
    crate::transport::hex(&Sha256::digest(name.as_bytes()))
}

fn from_context(
    name: &str,
    source: &str,
    args: &HostArgs,
    env: &dyn Env,
    cfg_dir: &Option<PathBuf>,
) -> Result<Endpoint> {
    if name == "default" {
        return default_endpoint(Some(source), args, env, cfg_dir);
    }
    let Some(dir) = cfg_dir else {
        return Err(Error::usage(format!(
            "{source}: cannot find the contexts store: neither DOCKER_CONFIG nor HOME is set"
        )));
    };
    let id = context_id(name);
    let store = dir.join("contexts");
    let meta_path = store.join("meta").join(&id).join("meta.json");
    let Some(bytes) = env.read(&meta_path) else {
        return Err(Error::usage(format!(
            "{source}: context \"{name}\" not found in the contexts store {} (no {})",
            store.display(),
            meta_path.display()
        )));
    };
    let meta: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        Error::usage(format!(
            "{source}: cannot parse {}: {e}",
            meta_path.display()
        ))
    })?;
    let docker = meta.get("Endpoints").and_then(|e| e.get("docker"));
    let host = docker
        .and_then(|d| d.get("Host"))
        .and_then(|h| h.as_str())
        .filter(|h| !h.is_empty());
    let Some(host) = host else {
        return Err(Error::usage(format!(
            "{source}: context \"{name}\" has no docker endpoint host in {}",
            meta_path.display()
        )));
    };
    let skip_verify = docker
        .and_then(|d| d.get("SkipTLSVerify"))
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let tls_dir = store.join("tls").join(&id).join("docker");
    let present = |f: &str| Some(tls_dir.join(f)).filter(|p| env.exists(p));
    let (ca, cert, key) = (present("ca.pem"), present("cert.pem"), present("key.pem"));
    // As `cli/context/docker/load.go tlsConfig`: TLS only if the context has TLS data
    // or asks to skip verification.
    let tls =
        (skip_verify || ca.is_some() || cert.is_some() || key.is_some()).then_some(TlsFiles {
            ca,
            cert,
            key,
            verify: !skip_verify,
        });
    let kind = parse_kind(host, tls.is_some())
        .map_err(|e| prefixed(&format!("{source} ({})", meta_path.display()), e))?;
    Ok(endpoint(kind, tls, source.to_string()))
}

/// The "default" context: `DOCKER_HOST` if set, verified TLS without a host means
/// `tcp://localhost:2376` (as `opts.ParseHost`), otherwise the first local socket that exists.
fn default_endpoint(
    via: Option<&str>,
    args: &HostArgs,
    env: &dyn Env,
    cfg_dir: &Option<PathBuf>,
) -> Result<Endpoint> {
    let label = |s: String| match via {
        Some(v) => format!("{v}: {s}"),
        None => s,
    };
    if let Some(host) = nonempty(env.var("DOCKER_HOST")) {
        return from_host(&host, &label("DOCKER_HOST".into()), args, env, cfg_dir);
    }
    if let Some(tls) = flag_tls(args, env, cfg_dir) {
        let kind = EndpointKind::Tcp {
            host: DEFAULT_TCP_HOST.to_string(),
            port: DEFAULT_TLS_PORT,
        };
        let why = label("TLS requested without a host (docker CLI default)".into());
        return Ok(endpoint(kind, Some(tls), why));
    }
    let xdg = nonempty(env.var("XDG_RUNTIME_DIR")).map(PathBuf::from);
    let mut candidates = vec![("rootful socket", PathBuf::from(ROOTFUL_SOCKET))];
    if let Some(x) = &xdg {
        candidates.push(("rootless socket", x.join("docker.sock")));
    }
    candidates.push(("podman socket", PathBuf::from(PODMAN_ROOTFUL_SOCKET)));
    if let Some(x) = &xdg {
        candidates.push((
            "rootless podman socket",
            x.join("podman").join("podman.sock"),
        ));
    }
    for (what, path) in candidates {
        if env.exists(&path) {
            let why = label(format!("{what} {}", path.display()));
            return Ok(endpoint(EndpointKind::Unix(path), None, why));
        }
    }
    let why = label(format!(
        "default socket {ROOTFUL_SOCKET} (no Docker or Podman socket found)"
    ));
    Ok(endpoint(
        EndpointKind::Unix(PathBuf::from(ROOTFUL_SOCKET)),
        None,
        why,
    ))
}

fn url_of(kind: &EndpointKind) -> String {
    match kind {
        EndpointKind::Unix(p) => format!("unix://{}", p.display()),
        EndpointKind::Tcp { host, port } => format!("tcp://{}:{port}", bracket(host)),
        EndpointKind::Ssh {
            user,
            host,
            port,
            socket,
        } => {
            let mut s = String::from("ssh://");
            if let Some(u) = user {
                s.push_str(&percent_encode_user(u));
                s.push('@');
            }
            s.push_str(&bracket(host));
            if let Some(p) = port {
                s.push_str(&format!(":{p}"));
            }
            if let Some(sock) = socket {
                s.push_str(sock);
            }
            s
        }
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

fn percent_encode_user(u: &str) -> String {
    let mut out = String::new();
    for b in u.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

const SUPPORTED: &str =
    "supported: unix:///path/to/socket, tcp://host[:port], ssh://[user@]host[:port][/socket]";

fn parse_kind(url: &str, tls: bool) -> Result<EndpointKind> {
    let s = url.trim();
    if s.is_empty() {
        return Err(Error::usage(format!("empty engine address; {SUPPORTED}")));
    }
    if s.chars().any(|c| c.is_control()) {
        return Err(Error::usage(format!(
            "engine address {s:?} contains control characters"
        )));
    }
    let (scheme, rest) = match s.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None if s.starts_with('/') => {
            return Err(Error::usage(format!(
                "engine address {s:?} has no scheme; for a socket write unix://{s}"
            )))
        }
        // `opts.ParseHost` reads a bare address as TCP.
        None => ("tcp".to_string(), s),
    };
    match scheme.as_str() {
        "unix" => {
            let path = if rest.is_empty() { ROOTFUL_SOCKET } else { rest };
            Ok(EndpointKind::Unix(PathBuf::from(path)))
        }
        "tcp" => parse_tcp(s, rest, tls),
        "ssh" => parse_ssh(s, rest),
        "http" | "https" => Err(Error::usage(format!(
            "unsupported scheme \"{scheme}\" in {s:?}: write tcp://host:port (add --tlsverify for TLS); {SUPPORTED}"
        ))),
        "npipe" => Err(Error::usage(format!(
            "unsupported scheme \"npipe\" in {s:?}: Windows named pipes are not supported; {SUPPORTED}"
        ))),
        _ => Err(Error::usage(format!(
            "unsupported scheme \"{scheme}\" in {s:?}; {SUPPORTED}"
        ))),
    }
}

fn parse_tcp(full: &str, rest: &str, tls: bool) -> Result<EndpointKind> {
    if rest.contains(['?', '#', '@']) {
        return Err(Error::usage(format!(
            "invalid tcp address {full:?}: no user, query or fragment allowed; write tcp://host[:port]"
        )));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if !path.is_empty() && path != "/" {
        return Err(Error::usage(format!(
            "invalid tcp address {full:?}: a path is not supported; write tcp://host[:port]"
        )));
    }
    let (host, port) = split_host_port(full, authority)?;
    let host = if host.is_empty() {
        DEFAULT_TCP_HOST.to_string()
    } else {
        host
    };
    let port = port.unwrap_or(if tls {
        DEFAULT_TLS_PORT
    } else {
        DEFAULT_TCP_PORT
    });
    Ok(EndpointKind::Tcp { host, port })
}

fn parse_ssh(full: &str, rest: &str) -> Result<EndpointKind> {
    if rest.contains(['?', '#']) {
        return Err(Error::usage(format!(
            "invalid ssh address {full:?}: no query or fragment allowed; write ssh://[user@]host[:port][/socket]"
        )));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, hp)) => (Some(u), hp),
        None => (None, authority),
    };
    let user = match user {
        Some(u) if u.contains(':') => {
            return Err(Error::usage(format!(
                "invalid ssh address {full:?}: a password in the URL is not supported; use ssh keys or an agent"
            )))
        }
        Some(u) => Some(percent_decode(full, u)?).filter(|u| !u.is_empty()),
        None => None,
    };
    if let Some(u) = &user {
        if u.starts_with('-') || u.chars().any(|c| c.is_control()) {
            return Err(Error::usage(format!(
                "invalid ssh address {full:?}: bad user name {u:?}"
            )));
        }
    }
    let (host, port) = split_host_port(full, hostport)?;
    if host.is_empty() {
        return Err(Error::usage(format!(
            "invalid ssh address {full:?}: no host specified"
        )));
    }
    let socket = percent_decode(full, path)?;
    if socket.chars().any(|c| c.is_control()) {
        return Err(Error::usage(format!(
            "invalid ssh address {full:?}: bad socket path"
        )));
    }
    let socket = Some(socket).filter(|p| !p.is_empty() && p != "/");
    Ok(EndpointKind::Ssh {
        user,
        host,
        port,
        socket,
    })
}

/// Splits `host`, `host:port`, `[v6]` or `[v6]:port`. An empty port after the colon
/// means "default", as Go's `url.Port()`.
fn split_host_port(full: &str, authority: &str) -> Result<(String, Option<u16>)> {
    let bad = |why: &str| Error::usage(format!("invalid engine address {full:?}: {why}"));
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let (h, after) = inner
            .split_once(']')
            .ok_or_else(|| bad("unclosed '[' in IPv6 address"))?;
        if h.is_empty()
            || !h.chars().all(|c| c.is_ascii_hexdigit() || ":.".contains(c))
            || !h.contains(':')
        {
            return Err(bad("bad IPv6 address in brackets"));
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?),
        };
        (h.to_string(), port)
    } else {
        let mut parts = authority.splitn(3, ':');
        let h = parts.next().unwrap_or_default();
        let p = parts.next();
        if parts.next().is_some() {
            return Err(bad(
                "IPv6 addresses must be written in brackets, e.g. [::1]:2375",
            ));
        }
        if h.starts_with('-')
            || !h
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
        {
            return Err(bad("bad host name"));
        }
        (h.to_string(), p)
    };
    let port = match port {
        None | Some("") => None,
        Some(p) => {
            let n = p
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| p.parse::<u16>().ok())
                .flatten()
                .filter(|n| *n != 0)
                .ok_or_else(|| bad(&format!("bad port {p:?} (1-65535)")))?;
            Some(n)
        }
    };
    Ok((host, port))
}

fn percent_decode(full: &str, s: &str) -> Result<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                .and_then(|h| std::str::from_utf8(h).ok());
            let v = hex
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    Error::usage(format!("invalid engine address {full:?}: bad %-escape"))
                })?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| {
        Error::usage(format!(
            "invalid engine address {full:?}: not UTF-8 after %-decoding"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Kind;
    use std::collections::{HashMap, HashSet};

    #[derive(Default)]
    struct FakeEnv {
        vars: HashMap<String, String>,
        files: HashMap<PathBuf, Vec<u8>>,
        exists: HashSet<PathBuf>,
        home: Option<PathBuf>,
    }

    impl FakeEnv {
        fn new() -> FakeEnv {
            FakeEnv {
                home: Some(PathBuf::from("/home/u")),
                ..FakeEnv::default()
            }
        }
        fn var(mut self, k: &str, v: &str) -> Self {
            self.vars.insert(k.into(), v.into());
            self
        }
        fn file(mut self, p: &str, body: &str) -> Self {
            self.files.insert(p.into(), body.as_bytes().to_vec());
            self.exists.insert(p.into());
            self
        }
        fn touch(mut self, p: &str) -> Self {
            self.exists.insert(p.into());
            self
        }
        fn context(self, dir: &str, name: &str, host: &str, skip: bool) -> Self {
            let id = context_id(name);
            let meta = format!(
                r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":{skip}}}}}}}"#
            );
            self.file(&format!("{dir}/contexts/meta/{id}/meta.json"), &meta)
        }
    }

    impl Env for FakeEnv {
        fn var(&self, k: &str) -> Option<String> {
            self.vars.get(k).cloned()
        }
        fn exists(&self, p: &Path) -> bool {
            self.exists.contains(p)
        }
        fn read(&self, p: &Path) -> Option<Vec<u8>> {
            self.files.get(p).cloned()
        }
        fn home(&self) -> Option<PathBuf> {
            self.home.clone()
        }
    }

    fn args() -> HostArgs {
        HostArgs::default()
    }
    fn host(h: &str) -> HostArgs {
        HostArgs {
            host: Some(h.into()),
            ..HostArgs::default()
        }
    }
    fn ctx(c: &str) -> HostArgs {
        HostArgs {
            context: Some(c.into()),
            ..HostArgs::default()
        }
    }
    fn tcp(h: &str, port: u16) -> EndpointKind {
        EndpointKind::Tcp {
            host: h.into(),
            port,
        }
    }
    fn unix(p: &str) -> EndpointKind {
        EndpointKind::Unix(p.into())
    }
    fn usage_err(r: Result<impl std::fmt::Debug>) -> String {
        match r {
            Err(e) => {
                assert_eq!(e.kind, Kind::Usage, "{e}");
                e.message
            }
            Ok(v) => panic!("expected a usage error, got {v:?}"),
        }
    }

    const DOCKER_DIR: &str = "/home/u/.docker";

    fn full_env() -> FakeEnv {
        FakeEnv::new()
            .var("DOCKER_HOST", "tcp://envhost:1234")
            .var("DOCKER_CONTEXT", "envctx")
            .file(
                "/home/u/.docker/config.json",
                r#"{"auths":{},"currentContext":"cfgctx"}"#,
            )
            .context(DOCKER_DIR, "flagctx", "tcp://flag:1", false)
            .context(DOCKER_DIR, "envctx", "tcp://envctx:2", false)
            .context(DOCKER_DIR, "cfgctx", "tcp://cfgctx:3", false)
            .touch(ROOTFUL_SOCKET)
    }

    #[test]
    fn context_flag_beats_everything() {
        let ep = resolve(&ctx("flagctx"), &full_env()).unwrap();
        assert_eq!(ep.kind, tcp("flag", 1));
        assert_eq!(ep.source, "--context flagctx");
        assert_eq!(ep.url, "tcp://flag:1");
        assert_eq!(ep.tls, None);
    }

    #[test]
    fn host_flag_beats_env() {
        let ep = resolve(&host("unix:///x.sock"), &full_env()).unwrap();
        assert_eq!(ep.kind, unix("/x.sock"));
        assert_eq!(ep.source, "--host");
        assert_eq!(ep.url, "unix:///x.sock");
    }

    #[test]
    fn both_host_and_context_is_usage_error() {
        let a = HostArgs {
            host: Some("unix:///x".into()),
            context: Some("flagctx".into()),
            ..HostArgs::default()
        };
        let m = usage_err(resolve(&a, &full_env()));
        assert!(m.contains("--host") && m.contains("--context"), "{m}");
    }

    #[test]
    fn docker_host_beats_docker_context() {
        let ep = resolve(&args(), &full_env()).unwrap();
        assert_eq!(ep.kind, tcp("envhost", 1234));
        assert_eq!(ep.source, "DOCKER_HOST");
    }

    #[test]
    fn empty_docker_host_is_unset() {
        let env = full_env().var("DOCKER_HOST", "");
        let ep = resolve(&args(), &env).unwrap();
        assert_eq!(ep.source, "DOCKER_CONTEXT envctx");
        assert_eq!(ep.kind, tcp("envctx", 2));
    }

    #[test]
    fn docker_context_beats_config() {
        let mut env = full_env();
        env.vars.remove("DOCKER_HOST");
        let ep = resolve(&args(), &env).unwrap();
        assert_eq!(ep.source, "DOCKER_CONTEXT envctx");
    }

    #[test]
    fn config_current_context() {
        let mut env = full_env();
        env.vars.clear();
        let ep = resolve(&args(), &env).unwrap();
        assert_eq!(
            ep.source,
            "currentContext cfgctx in /home/u/.docker/config.json"
        );
        assert_eq!(ep.kind, tcp("cfgctx", 3));
    }

    #[test]
    fn docker_config_dir_is_honoured() {
        let env = FakeEnv::new()
            .var("DOCKER_CONFIG", "/etc/dc")
            .file("/etc/dc/config.json", r#"{"currentContext":"c"}"#)
            .context("/etc/dc", "c", "ssh://me@box", false);
        let ep = resolve(&args(), &env).unwrap();
        assert_eq!(ep.source, "currentContext c in /etc/dc/config.json");
        assert_eq!(
            ep.kind,
            EndpointKind::Ssh {
                user: Some("me".into()),
                host: "box".into(),
                port: None,
                socket: None
            }
        );
    }

    #[test]
    fn config_without_current_context_falls_to_default() {
        let env = FakeEnv::new()
            .file("/home/u/.docker/config.json", r#"{"auths":{}}"#)
            .touch(ROOTFUL_SOCKET);
        let ep = resolve(&args(), &env).unwrap();
        assert_eq!(ep.source, "rootful socket /var/run/docker.sock");
        for body in [
            r#"{"currentContext":""}"#,
            r#"{"currentContext":null}"#,
            "",
            " \n",
        ] {
            let env = FakeEnv::new()
                .file("/home/u/.docker/config.json", body)
                .touch(ROOTFUL_SOCKET);
            assert_eq!(resolve(&args(), &env).unwrap().kind, unix(ROOTFUL_SOCKET));
        }
    }

    #[test]
    fn malformed_config_is_usage_error() {
        let env = FakeEnv::new().file("/home/u/.docker/config.json", "{not json");
        let m = usage_err(resolve(&args(), &env));
        assert!(m.contains("/home/u/.docker/config.json"), "{m}");
        let env = FakeEnv::new().file("/home/u/.docker/config.json", r#"{"currentContext":7}"#);
        usage_err(resolve(&args(), &env));
    }

    #[test]
    fn default_socket_order() {
        let xdg = "/run/user/1000";
        let all = FakeEnv::new()
            .var("XDG_RUNTIME_DIR", xdg)
            .touch(ROOTFUL_SOCKET)
            .touch("/run/user/1000/docker.sock")
            .touch(PODMAN_ROOTFUL_SOCKET)
            .touch("/run/user/1000/podman/podman.sock");
        let ep = resolve(&args(), &all).unwrap();
        assert_eq!(ep.kind, unix(ROOTFUL_SOCKET));
        assert_eq!(ep.source, "rootful socket /var/run/docker.sock");

        let mut env = all;
        env.exists.remove(Path::new(ROOTFUL_SOCKET));
        let ep = resolve(&args(), &env).unwrap();
        assert_eq!(ep.kind, unix("/run/user/1000/docker.sock"));
        assert_eq!(ep.source, "rootless socket /run/user/1000/docker.sock");

        env.exists.remove(Path::new("/run/user/1000/docker.sock"));
        let ep = resolve(&args(), &env).unwrap();
        assert_eq!(ep.kind, unix(PODMAN_ROOTFUL_SOCKET));
        assert_eq!(ep.source, "podman socket /run/podman/podman.sock");

        env.exists.remove(Path::new(PODMAN_ROOTFUL_SOCKET));
        let ep = resolve(&args(), &env).unwrap();
        assert_eq!(ep.kind, unix("/run/user/1000/podman/podman.sock"));
        assert!(
            ep.source.starts_with("rootless podman socket "),
            "{}",
            ep.source
        );

        env.exists.clear();
        let ep = resolve(&args(), &env).unwrap();
        assert_eq!(ep.kind, unix(ROOTFUL_SOCKET));
        assert_eq!(ep.url, "unix:///var/run/docker.sock");
        assert!(ep.source.contains("no Docker or Podman socket found"));
    }

    #[test]
    fn rootless_skipped_without_xdg() {
        let env = FakeEnv::new()
            .var("XDG_RUNTIME_DIR", "")
            .touch("/docker.sock")
            .touch(PODMAN_ROOTFUL_SOCKET);
        assert_eq!(
            resolve(&args(), &env).unwrap().kind,
            unix(PODMAN_ROOTFUL_SOCKET)
        );
    }

    #[test]
    fn default_context_name_means_no_context() {
        let env = FakeEnv::new().touch(ROOTFUL_SOCKET);
        let ep = resolve(&ctx("default"), &env).unwrap();
        assert_eq!(ep.kind, unix(ROOTFUL_SOCKET));
        assert_eq!(
            ep.source,
            "--context default: rootful socket /var/run/docker.sock"
        );

        // `--context default` still honours DOCKER_HOST, as the CLI's default context does.
        let env = FakeEnv::new().var("DOCKER_HOST", "tcp://h:1");
        let ep = resolve(&ctx("default"), &env).unwrap();
        assert_eq!(ep.kind, tcp("h", 1));
        assert_eq!(ep.source, "--context default: DOCKER_HOST");

        let env = FakeEnv::new()
            .var("DOCKER_CONTEXT", "default")
            .file(
                "/home/u/.docker/config.json",
                r#"{"currentContext":"other"}"#,
            )
            .touch(ROOTFUL_SOCKET);
        let ep = resolve(&args(), &env).unwrap();
        assert_eq!(ep.kind, unix(ROOTFUL_SOCKET));
        assert!(ep.source.starts_with("DOCKER_CONTEXT default: "));

        let env = FakeEnv::new().file(
            "/home/u/.docker/config.json",
            r#"{"currentContext":"default"}"#,
        );
        assert_eq!(resolve(&args(), &env).unwrap().kind, unix(ROOTFUL_SOCKET));
    }

    #[test]
    fn unknown_context_names_context_and_store() {
        let m = usage_err(resolve(&ctx("prod"), &FakeEnv::new()));
        assert!(m.contains("\"prod\""), "{m}");
        assert!(m.contains("/home/u/.docker/contexts"), "{m}");
        assert!(m.contains(&context_id("prod")), "{m}");
        let env = FakeEnv::new().var("DOCKER_CONTEXT", "nope");
        let m = usage_err(resolve(&args(), &env));
        assert!(m.starts_with("DOCKER_CONTEXT nope: "), "{m}");
    }

    #[test]
    fn context_without_home_or_config() {
        let mut env = FakeEnv::new();
        env.home = None;
        let m = usage_err(resolve(&ctx("prod"), &env));
        assert!(m.contains("DOCKER_CONFIG"), "{m}");
        // Without a config dir there is no config.json either: straight to the sockets.
        assert_eq!(resolve(&args(), &env).unwrap().kind, unix(ROOTFUL_SOCKET));
    }

    #[test]
    fn bad_context_meta() {
        let id = context_id("x");
        let p = format!("/home/u/.docker/contexts/meta/{id}/meta.json");
        for body in [
            "",
            "[]",
            r#"{"Endpoints":{}}"#,
            r#"{"Endpoints":{"docker":{"Host":""}}}"#,
        ] {
            let env = FakeEnv::new().file(&p, body);
            usage_err(resolve(&ctx("x"), &env));
        }
        let env = FakeEnv::new().context(DOCKER_DIR, "x", "npipe:////./pipe/docker_engine", false);
        let m = usage_err(resolve(&ctx("x"), &env));
        assert!(m.contains("npipe") && m.contains("meta.json"), "{m}");
    }

    #[test]
    fn context_tls_files() {
        let id = context_id("secure");
        let tls = format!("/home/u/.docker/contexts/tls/{id}/docker");
        let env = FakeEnv::new()
            .context(DOCKER_DIR, "secure", "tcp://prod.example", false)
            .touch(&format!("{tls}/ca.pem"))
            .touch(&format!("{tls}/key.pem"));
        let ep = resolve(&ctx("secure"), &env).unwrap();
        assert_eq!(ep.kind, tcp("prod.example", 2376));
        assert_eq!(
            ep.tls,
            Some(TlsFiles {
                ca: Some(format!("{tls}/ca.pem").into()),
                cert: None,
                key: Some(format!("{tls}/key.pem").into()),
                verify: true,
            })
        );

        let env = FakeEnv::new().context(DOCKER_DIR, "insecure", "tcp://h:9", true);
        let ep = resolve(&ctx("insecure"), &env).unwrap();
        assert_eq!(
            ep.tls,
            Some(TlsFiles {
                ca: None,
                cert: None,
                key: None,
                verify: false
            })
        );

        // TLS data on an ssh context is irrelevant (the tunnel carries plain HTTP).
        let env = FakeEnv::new().context(DOCKER_DIR, "s", "ssh://h", true);
        assert_eq!(resolve(&ctx("s"), &env).unwrap().tls, None);

        // A context without TLS data ignores the TLS environment.
        let env = FakeEnv::new()
            .var("DOCKER_TLS_VERIFY", "1")
            .context(DOCKER_DIR, "plain", "tcp://h", false);
        let ep = resolve(&ctx("plain"), &env).unwrap();
        assert_eq!((ep.kind, ep.tls), (tcp("h", 2375), None));
    }

    #[test]
    fn tls_from_env() {
        let env = FakeEnv::new()
            .var("DOCKER_HOST", "tcp://h")
            .var("DOCKER_TLS_VERIFY", "1")
            .touch("/home/u/.docker/cert.pem");
        let ep = resolve(&args(), &env).unwrap();
        assert_eq!(ep.kind, tcp("h", 2376));
        assert_eq!(ep.url, "tcp://h:2376");
        assert_eq!(
            ep.tls,
            Some(TlsFiles {
                // Kept although missing, so the connect error names it.
                ca: Some("/home/u/.docker/ca.pem".into()),
                cert: Some("/home/u/.docker/cert.pem".into()),
                key: None,
                verify: true
            })
        );

        // DOCKER_TLS_VERIFY=0 still means "on", as in the CLI and docker-py.
        let env = FakeEnv::new()
            .var("DOCKER_HOST", "tcp://h:99")
            .var("DOCKER_TLS_VERIFY", "0")
            .var("DOCKER_CERT_PATH", "/certs")
            .touch("/certs/ca.pem")
            .touch("/certs/cert.pem")
            .touch("/certs/key.pem");
        let ep = resolve(&args(), &env).unwrap();
        assert_eq!(ep.kind, tcp("h", 99));
        assert_eq!(
            ep.tls,
            Some(TlsFiles {
                ca: Some("/certs/ca.pem".into()),
                cert: Some("/certs/cert.pem".into()),
                key: Some("/certs/key.pem".into()),
                verify: true
            })
        );

        let env = FakeEnv::new()
            .var("DOCKER_HOST", "tcp://h")
            .var("DOCKER_TLS", "1");
        let ep = resolve(&args(), &env).unwrap();
        assert_eq!(
            ep.tls,
            Some(TlsFiles {
                ca: None,
                cert: None,
                key: None,
                verify: false
            })
        );

        // DOCKER_CERT_PATH alone does not turn TLS on (CLI behaviour).
        let env = FakeEnv::new()
            .var("DOCKER_HOST", "tcp://h")
            .var("DOCKER_CERT_PATH", "/certs")
            .var("DOCKER_TLS_VERIFY", "");
        let ep = resolve(&args(), &env).unwrap();
        assert_eq!((ep.kind, ep.tls), (tcp("h", 2375), None));
    }

    #[test]
    fn tls_from_flags() {
        let a = HostArgs {
            host: Some("tcp://h".into()),
            tlscacert: Some("/my/ca".into()),
            ..HostArgs::default()
        };
        let ep = resolve(&a, &FakeEnv::new()).unwrap();
        assert_eq!(ep.kind, tcp("h", 2376));
        assert_eq!(
            ep.tls,
            Some(TlsFiles {
                ca: Some("/my/ca".into()),
                cert: None,
                key: None,
                verify: true
            })
        );
        let a = HostArgs {
            host: Some("tcp://h".into()),
            tlsverify: true,
            tlscert: Some("/c".into()),
            tlskey: Some("/k".into()),
            ..HostArgs::default()
        };
        let env = FakeEnv::new()
            .var("DOCKER_CONFIG", "/cfg")
            .touch("/cfg/ca.pem");
        let tls = resolve(&a, &env).unwrap().tls.unwrap();
        assert_eq!(tls.ca, Some("/cfg/ca.pem".into()));
        assert_eq!(tls.cert, Some("/c".into()));
        assert_eq!(tls.key, Some("/k".into()));
        assert!(tls.verify);
    }

    #[test]
    fn tls_ignored_for_unix_and_ssh() {
        let env = FakeEnv::new().var("DOCKER_TLS_VERIFY", "1");
        assert_eq!(resolve(&host("unix:///s"), &env).unwrap().tls, None);
        assert_eq!(resolve(&host("ssh://h"), &env).unwrap().tls, None);
    }

    #[test]
    fn tls_without_host_is_localhost_2376() {
        let env = FakeEnv::new()
            .var("DOCKER_TLS_VERIFY", "1")
            .touch(ROOTFUL_SOCKET);
        let ep = resolve(&args(), &env).unwrap();
        assert_eq!(ep.kind, tcp("localhost", 2376));
        assert!(ep.tls.is_some());
        assert!(ep.source.contains("TLS"), "{}", ep.source);
    }

    #[test]
    fn bad_host_flag_names_source() {
        let m = usage_err(resolve(&host("fd://"), &FakeEnv::new()));
        assert!(m.starts_with("--host: "), "{m}");
        let env = FakeEnv::new().var("DOCKER_HOST", "npipe:////./pipe/docker_engine");
        let m = usage_err(resolve(&args(), &env));
        assert!(
            m.starts_with("DOCKER_HOST: ") && m.contains("supported"),
            "{m}"
        );
        usage_err(resolve(&host(""), &FakeEnv::new()));
        usage_err(resolve(&ctx(""), &FakeEnv::new()));
    }

    #[test]
    fn parse_unix() {
        assert_eq!(
            parse_host("unix:///var/run/docker.sock").unwrap(),
            unix(ROOTFUL_SOCKET)
        );
        assert_eq!(parse_host("unix://").unwrap(), unix(ROOTFUL_SOCKET));
        assert_eq!(parse_host("  UNIX:///a b/s  ").unwrap(), unix("/a b/s"));
        assert_eq!(parse_host("unix://rel.sock").unwrap(), unix("rel.sock"));
        let m = usage_err(parse_host("/var/run/docker.sock"));
        assert!(m.contains("unix:///var/run/docker.sock"), "{m}");
    }

    #[test]
    fn parse_tcp_cases() {
        assert_eq!(
            parse_host("tcp://1.2.3.4:2375").unwrap(),
            tcp("1.2.3.4", 2375)
        );
        assert_eq!(parse_host("tcp://h").unwrap(), tcp("h", 2375));
        assert_eq!(parse_host("tcp://h:").unwrap(), tcp("h", 2375));
        assert_eq!(parse_host("tcp://h/").unwrap(), tcp("h", 2375));
        assert_eq!(parse_host("tcp://:4243").unwrap(), tcp("localhost", 4243));
        assert_eq!(parse_host("h.example:1").unwrap(), tcp("h.example", 1));
        assert_eq!(parse_host("tcp://[::1]:2376").unwrap(), tcp("::1", 2376));
        assert_eq!(parse_kind("tcp://h", true).unwrap(), tcp("h", 2376));
        assert_eq!(parse_kind("tcp://h:80", true).unwrap(), tcp("h", 80));
        for bad in [
            "tcp://h:0",
            "tcp://h:65536",
            "tcp://h:+1",
            "tcp://h:x",
            "tcp://h:1:2",
            "tcp://::1",
            "tcp://[::1",
            "tcp://[::1]x",
            "tcp://[]",
            "tcp://[zz]",
            "tcp://[fe80::1%25eth0]",
            "tcp://h/v1.41",
            "tcp://u@h",
            "tcp://h?x=1",
            "tcp://h#f",
            "tcp://-oops",
            "tcp://h\u{0}",
            "tcp://h\n:1",
            "tcp://ho st",
            "",
            "   ",
        ] {
            usage_err(parse_host(bad));
        }
    }

    #[test]
    fn parse_ssh_cases() {
        let ssh = |u: Option<&str>, h: &str, p: Option<u16>, s: Option<&str>| EndpointKind::Ssh {
            user: u.map(String::from),
            host: h.into(),
            port: p,
            socket: s.map(String::from),
        };
        assert_eq!(parse_host("ssh://h").unwrap(), ssh(None, "h", None, None));
        assert_eq!(
            parse_host("ssh://root@127.0.0.1:2222").unwrap(),
            ssh(Some("root"), "127.0.0.1", Some(2222), None)
        );
        assert_eq!(
            parse_host("ssh://me@h/run/user/1000/docker.sock").unwrap(),
            ssh(Some("me"), "h", None, Some("/run/user/1000/docker.sock"))
        );
        assert_eq!(parse_host("ssh://h/").unwrap(), ssh(None, "h", None, None));
        assert_eq!(parse_host("ssh://@h").unwrap(), ssh(None, "h", None, None));
        assert_eq!(
            parse_host("ssh://a%40b@[::1]:22/s%20x").unwrap(),
            ssh(Some("a@b"), "::1", Some(22), Some("/s x"))
        );
        for bad in [
            "ssh://",
            "ssh://u@",
            "ssh://u:pw@h",
            "ssh://-oProxyCommand=x",
            "ssh://-l@h",
            "ssh://%2Dl@h",
            "ssh://h:0",
            "ssh://h:99999",
            "ssh://h?x",
            "ssh://h#x",
            "ssh://h/%zz",
            "ssh://h/%0a",
            "ssh://h/%ff",
            "ssh://u%0a@h",
            "ssh://h:2:2",
        ] {
            usage_err(parse_host(bad));
        }
    }

    #[test]
    fn parse_unsupported_schemes() {
        for (url, word) in [
            ("npipe:////./pipe/docker_engine", "npipe"),
            ("fd://", "fd"),
            ("http://h:2375", "tcp://"),
            ("https://h:2376", "tlsverify"),
            ("vsock://3:2375", "vsock"),
            ("://h", "unsupported"),
        ] {
            let m = usage_err(parse_host(url));
            assert!(m.contains(word) && m.contains("supported"), "{url}: {m}");
        }
    }

    #[test]
    fn normalised_urls() {
        let n = |u: &str| url_of(&parse_host(u).unwrap());
        assert_eq!(n("tcp://h"), "tcp://h:2375");
        assert_eq!(n("h:5"), "tcp://h:5");
        assert_eq!(n("tcp://[::1]"), "tcp://[::1]:2375");
        assert_eq!(n("ssh://root@h:2222"), "ssh://root@h:2222");
        assert_eq!(n("ssh://a%40b@[::1]/s"), "ssh://a%40b@[::1]/s");
        assert_eq!(n("unix://"), "unix:///var/run/docker.sock");
    }

    #[test]
    fn hostile_inputs_never_panic() {
        let samples = [
            "tcp://[",
            "ssh://[",
            "ssh://%",
            "ssh://h/%",
            "ssh://h/%4",
            "tcp://[:",
            "tcp://]:",
            "ssh://@",
            "ssh://@@",
            "::",
            ":///",
            "tcp://:",
            "ssh://:22",
            "tcp://é:1",
            "ssh://h/é%",
        ];
        for s in samples {
            let _ = parse_host(s);
        }
        for meta in [
            "\u{0}",
            "{\"Endpoints\":{\"docker\":{\"Host\":7}}}",
            "null",
            "\"x\"",
        ] {
            let id = context_id("c");
            let env = FakeEnv::new().file(
                &format!("/home/u/.docker/contexts/meta/{id}/meta.json"),
                meta,
            );
            usage_err(resolve(&ctx("c"), &env));
        }
    }

    #[test]
    fn context_id_is_sha256_of_name() {
        assert_eq!(
            context_id("default"),
            "37a8eec1ce19687d132fe29051dca629d164e2c4958ba141d5f4133a33f0688f"
        );
    }

    #[test]
    fn real_env_reads_what_is_there() {
        let env = RealEnv;
        assert!(env.exists(Path::new("/")));
        assert!(env.read(Path::new("/nonexistent/x")).is_none());
    }
}
