//! One error type for the whole tool: a kind that maps to the `kind` field of an
//! `error` record in the acquisition log, and a message that says what happened.

use std::fmt;

/// What went wrong, as recorded in the acquisition log (`error.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// Bad command line or configuration; the user can fix it.
    Usage,
    /// Could not reach the engine (socket, TCP, TLS handshake, ssh).
    Connect,
    /// The engine answered with an HTTP error status.
    Http,
    /// The answer broke the protocol: bad JSON, bad framing, bad tar.
    Protocol,
    /// The body ended before it was complete (reset, short chunk, short length).
    Truncated,
    /// No byte arrived within the idle timeout.
    Timeout,
    /// The overall deadline passed.
    Deadline,
    /// The examiner pressed Ctrl-C.
    Interrupted,
    /// Writing evidence failed (disk full, permissions).
    Io,
    /// The engine does not offer this endpoint (Podman, old API).
    Unavailable,
    /// A check on collected evidence failed.
    Integrity,
    /// A replay could not serve a request.
    Replay,
}

impl Kind {
    /// Every kind, as the acquisition log may name it.
    pub const ALL: [Kind; 12] = [
        Kind::Usage,
        Kind::Connect,
        Kind::Http,
        Kind::Protocol,
        Kind::Truncated,
        Kind::Timeout,
        Kind::Deadline,
        Kind::Interrupted,
        Kind::Io,
        Kind::Unavailable,
        Kind::Integrity,
        Kind::Replay,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Usage => "usage",
            Kind::Connect => "connect",
            Kind::Http => "http",
            Kind::Protocol => "protocol",
            Kind::Truncated => "truncated",
            Kind::Timeout => "timeout",
            Kind::Deadline => "deadline",
            Kind::Interrupted => "interrupted",
            Kind::Io => "io",
            Kind::Unavailable => "unavailable",
            Kind::Integrity => "integrity",
            Kind::Replay => "replay",
        }
    }
}

/// An error with its kind and a human message.
#[derive(Debug, Clone)]
pub struct Error {
    pub kind: Kind,
    pub message: String,
    /// HTTP status when `kind` is `Http`.
    pub status: Option<u16>,
}

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            status: None,
        }
    }
    pub fn usage(message: impl Into<String>) -> Error {
        Error::new(Kind::Usage, message)
    }
    pub fn protocol(message: impl Into<String>) -> Error {
        Error::new(Kind::Protocol, message)
    }
    pub fn io(context: impl fmt::Display, err: std::io::Error) -> Error {
        Error::new(Kind::Io, format!("{context}: {err}"))
    }
    pub fn with_status(mut self, status: u16) -> Error {
        self.status = Some(status);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;
