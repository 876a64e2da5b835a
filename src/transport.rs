//! The only place that sends requests to an engine.
//!
//! Read-only by construction: [`Method`] has two variants, GET and HEAD, and nothing else in the
//! crate can build a request. Every request opens its own connection (Unix socket, TCP, TLS, an
//! ssh `dial-stdio` child, or an in-memory replay), so one slow stream never blocks another.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::discovery::{Endpoint, EndpointKind, TlsFiles};
use crate::error::{Error, Kind, Result};
use crate::fixture::{Recorder, Replay};

/// Anything a request can travel over.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}
pub type BoxIo = Box<dyn Io>;

/// The two methods the collector may send. There is deliberately no way to express another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
}

impl Method {
    fn as_hyper(self) -> hyper::Method {
        match self {
            Method::Get => hyper::Method::GET,
            Method::Head => hyper::Method::HEAD,
        }
    }
}

/// Where requests go.
enum Route {
    Unix(PathBuf),
    Tcp {
        addr: String,
    },
    Tls {
        addr: String,
        name: rustls::pki_types::ServerName<'static>,
        config: Arc<rustls::ClientConfig>,
    },
    Ssh {
        user: Option<String>,
        host: String,
        port: Option<u16>,
        socket: Option<String>,
        gate: Arc<tokio::sync::Semaphore>,
    },
    Replay(Arc<Replay>),
}

/// A connected target: the route, the Host header it needs, and what it learned (TLS peer).
pub struct Transport {
    route: Route,
    host_header: String,
    user_agent: String,
    recorder: Option<Arc<Recorder>>,
    tls_peer_sha256: Arc<Mutex<Option<String>>>,
    connect_timeout: Duration,
    /// A human description of the target for logs and errors.
    pub describe: String,
}

/// sshd refuses bursts of new sessions beyond its MaxStartups (10 by default).
const SSH_SESSIONS: usize = 8;

impl Transport {
    pub fn new(endpoint: &Endpoint, connect_timeout: Duration) -> Result<Transport> {
        let (route, host_header) = match &endpoint.kind {
            EndpointKind::Unix(path) => {
                (Route::Unix(path.clone()), "api.moby.localhost".to_string())
            }
            EndpointKind::Tcp { host, port } => {
                let addr = format!("{}:{}", bracket(host), port);
                match &endpoint.tls {
                    Some(tls) => {
                        let config = tls_config(tls)?;
                        let name = server_name(host)?;
                        (
                            Route::Tls {
                                addr: addr.clone(),
                                name,
                                config,
                            },
                            addr,
                        )
                    }
                    None => (Route::Tcp { addr: addr.clone() }, addr),
                }
            }
            EndpointKind::Ssh {
                user,
                host,
                port,
                socket,
            } => (
                Route::Ssh {
                    user: user.clone(),
                    host: host.clone(),
                    port: *port,
                    socket: socket.clone(),
                    gate: Arc::new(tokio::sync::Semaphore::new(SSH_SESSIONS)),
                },
                "api.moby.localhost".to_string(),
            ),
        };
        Ok(Transport {
            route,
            host_header,
            user_agent: format!("dac/{}", env!("CARGO_PKG_VERSION")),
            recorder: None,
            tls_peer_sha256: Arc::new(Mutex::new(None)),
            connect_timeout,
            describe: endpoint.url.clone(),
        })
    }

    /// A transport that answers from a recording instead of an engine.
    pub fn replay(replay: Arc<Replay>, describe: String) -> Transport {
        Transport {
            route: Route::Replay(replay),
            host_header: "api.moby.localhost".to_string(),
            user_agent: format!("dac/{}", env!("CARGO_PKG_VERSION")),
            recorder: None,
            tls_peer_sha256: Arc::new(Mutex::new(None)),
            connect_timeout: Duration::from_secs(5),
            describe,
        }
    }

    /// Keep a copy of every exchange in a fixture recording.
    pub fn record_into(&mut self, recorder: Arc<Recorder>) {
        self.recorder = Some(recorder);
    }

    pub fn recorder(&self) -> Option<Arc<Recorder>> {
        self.recorder.clone()
    }

    /// SHA-256 of the TLS server's end-entity certificate, once a TLS connection was made.
    pub fn tls_peer_sha256(&self) -> Option<String> {
        self.tls_peer_sha256.lock().ok().and_then(|g| g.clone())
    }

    async fn connect(&self) -> Result<(BoxIo, Option<tokio::sync::OwnedSemaphorePermit>)> {
        let dial = async {
            match &self.route {
                Route::Unix(path) => {
                    let s = tokio::net::UnixStream::connect(path).await.map_err(|e| {
                        Error::new(
                            Kind::Connect,
                            format!("cannot connect to unix://{}: {e}", path.display()),
                        )
                    })?;
                    Ok::<_, Error>((Box::new(s) as BoxIo, None))
                }
                Route::Tcp { addr } => {
                    let s = tokio::net::TcpStream::connect(addr).await.map_err(|e| {
                        Error::new(
                            Kind::Connect,
                            format!("cannot connect to tcp://{addr}: {e}"),
                        )
                    })?;
                    let _ = s.set_nodelay(true);
                    Ok((Box::new(s) as BoxIo, None))
                }
                Route::Tls { addr, name, config } => {
                    let s = tokio::net::TcpStream::connect(addr).await.map_err(|e| {
                        Error::new(
                            Kind::Connect,
                            format!("cannot connect to tcp://{addr}: {e}"),
                        )
                    })?;
                    let _ = s.set_nodelay(true);
                    let tls = tokio_rustls::TlsConnector::from(config.clone())
                        .connect(name.clone(), s)
                        .await
                        .map_err(|e| {
                            Error::new(
                                Kind::Connect,
                                format!("TLS handshake with {addr} failed: {e}"),
                            )
                        })?;
                    if let Some(cert) = tls.get_ref().1.peer_certificates().and_then(|c| c.first())
                    {
                        let digest = sha256_hex(cert.as_ref());
                        if let Ok(mut slot) = self.tls_peer_sha256.lock() {
                            *slot = Some(digest);
                        }
                    }
                    Ok((Box::new(tls) as BoxIo, None))
                }
                Route::Ssh {
                    user,
                    host,
                    port,
                    socket,
                    gate,
                } => {
                    let permit = gate
                        .clone()
                        .acquire_owned()
                        .await
                        .map_err(|_| Error::new(Kind::Connect, "ssh session gate closed"))?;
                    let io = crate::ssh::dial(
                        user.as_deref(),
                        host,
                        *port,
                        socket.as_deref(),
                        &crate::ssh::opts_from_env(),
                    )
                    .await?;
                    Ok((io, Some(permit)))
                }
                Route::Replay(replay) => Ok((replay.connect(), None)),
            }
        };
        let (io, permit) = match tokio::time::timeout(self.connect_timeout, dial).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(Error::new(
                    Kind::Connect,
                    format!(
                        "no connection to {} within {:?}",
                        self.describe, self.connect_timeout
                    ),
                ))
            }
        };
        let io = match &self.recorder {
            Some(rec) => rec.wrap(io),
            None => io,
        };
        Ok((io, permit))
    }

    /// Send one request and return the response head with its streaming body.
    /// `path_and_query` is already versioned and percent-encoded (see `endpoints`).
    /// The caller bounds the wait for the head with its own idle timeout.
    pub async fn send(&self, method: Method, path_and_query: &str) -> Result<Response> {
        let (io, permit) = self.connect().await?;
        let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(1 << 20)
            .handshake::<_, Empty<Bytes>>(TokioIo::new(io))
            .await
            .map_err(|e| {
                Error::new(
                    Kind::Connect,
                    format!("HTTP handshake with {} failed: {e}", self.describe),
                )
            })?;
        // The connection is driven by whoever waits on this request, first for the head, then
        // inside the body: a separate task would hand every chunk across threads, with a wake-up
        // each way per chunk (measured at more than twice curl's time for a 1 GiB export).
        let mut conn: Option<Pin<Box<Conn>>> = Some(Box::pin(conn));
        let request = hyper::Request::builder()
            .method(method.as_hyper())
            .uri(path_and_query)
            .header(hyper::header::HOST, &self.host_header)
            .header(hyper::header::USER_AGENT, &self.user_agent)
            .body(Empty::<Bytes>::new())
            .map_err(|e| {
                Error::new(
                    Kind::Usage,
                    format!("cannot build request for {path_and_query}: {e}"),
                )
            })?;
        let mut send = std::pin::pin!(sender.send_request(request));
        let response = std::future::poll_fn(|cx| {
            drive(&mut conn, cx);
            send.as_mut().poll(cx)
        })
        .await
        .map_err(|e| {
            // hyper's own message is terse ("connection error"); the cause is in its sources,
            // e.g. why an ssh tunnel closed.
            let mut detail = e.to_string();
            let mut kind = if e.is_parse() {
                Kind::Protocol
            } else {
                Kind::Truncated
            };
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                detail.push_str(": ");
                detail.push_str(&s.to_string());
                if let Some(io) = s.downcast_ref::<std::io::Error>() {
                    if io.kind() == std::io::ErrorKind::ConnectionRefused {
                        kind = Kind::Connect;
                    }
                }
                source = s.source();
            }
            Error::new(
                kind,
                format!(
                    "no response from {} to {path_and_query}: {detail}",
                    self.describe
                ),
            )
        })?;
        if response.headers().get("x-dac-replay").is_some() {
            return Err(Error::new(
                Kind::Replay,
                format!(
                    "the recording has no answer for {} {path_and_query}",
                    method.as_hyper()
                ),
            ));
        }
        Ok(Response {
            head: response,
            conn,
            permit,
        })
    }
}

type Conn = hyper::client::conn::http1::Connection<TokioIo<BoxIo>, Empty<Bytes>>;

/// Poll the connection once; forget it when it is done (its errors reach the body).
fn drive(conn: &mut Option<Pin<Box<Conn>>>, cx: &mut Context<'_>) {
    if let Some(c) = conn.as_mut() {
        if c.as_mut().poll(cx).is_ready() {
            *conn = None;
        }
    }
}

/// A response head and its streaming body, with the connection that carries them.
pub struct Response {
    head: hyper::Response<Incoming>,
    conn: Option<Pin<Box<Conn>>>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// A streaming body that drives its own connection as it is read. Dropping it closes the
/// connection.
pub struct Body {
    incoming: Incoming,
    conn: Option<Pin<Box<Conn>>>,
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        drive(&mut this.conn, cx);
        Pin::new(&mut this.incoming).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.incoming.size_hint()
    }
}

impl Response {
    pub fn status(&self) -> u16 {
        self.head.status().as_u16()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.head
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
    /// Every header, for provenance (names lowercased by hyper; values lossily decoded).
    pub fn headers_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for (k, v) in self.head.headers() {
            map.insert(
                k.as_str().to_string(),
                serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            );
        }
        serde_json::Value::Object(map)
    }
    pub fn into_body(self) -> Body {
        Body {
            incoming: self.head.into_body(),
            conn: self.conn,
            _permit: self.permit,
        }
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

fn server_name(host: &str) -> Result<rustls::pki_types::ServerName<'static>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    rustls::pki_types::ServerName::try_from(bare.to_string())
        .map_err(|e| Error::usage(format!("{host} cannot be used as a TLS server name: {e}")))
}

/// Build the rustls client: the engine's CA, and our client certificate when one is given
/// (the docker `--tlsverify` setup). ring is the only crypto provider linked in.
fn tls_config(files: &TlsFiles) -> Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::usage(format!("TLS setup failed: {e}")))?;
    let builder = if files.verify {
        let ca = files
            .ca
            .as_ref()
            .ok_or_else(|| Error::usage("--tlsverify needs a CA certificate: give --tlscacert or put ca.pem in DOCKER_CERT_PATH"))?;
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(ca)
            .map_err(|e| Error::usage(format!("cannot read CA file {}: {e}", ca.display())))?;
        for cert in certs {
            let cert = cert
                .map_err(|e| Error::usage(format!("bad certificate in {}: {e}", ca.display())))?;
            roots.add(cert).map_err(|e| {
                Error::usage(format!("unusable CA certificate in {}: {e}", ca.display()))
            })?;
        }
        if roots.is_empty() {
            return Err(Error::usage(format!(
                "no certificate found in CA file {}",
                ca.display()
            )));
        }
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(
                rustls::crypto::ring::default_provider(),
            )))
    };
    let config = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| {
                    Error::usage(format!(
                        "cannot read client certificate {}: {e}",
                        cert.display()
                    ))
                })?
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| {
                    Error::usage(format!("bad client certificate {}: {e}", cert.display()))
                })?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                Error::usage(format!("cannot read client key {}: {e}", key.display()))
            })?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| Error::usage(format!("client certificate and key do not fit: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// `DOCKER_TLS` without verification: the channel is encrypted but the server is not
/// authenticated. The collector warns loudly; the peer certificate hash is still recorded.
#[derive(Debug)]
struct NoVerify(rustls::crypto::CryptoProvider);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Lowercase hex, the one encoder of the crate.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_and_complete() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(bracket("::1"), "[::1]");
        assert_eq!(bracket("10.0.0.1"), "10.0.0.1");
    }
}
