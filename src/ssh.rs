//! `ssh://` endpoints, reached the way the docker CLI does (`cli/connhelper`): run the
//! system `ssh` client with `docker system dial-stdio` on the remote side and speak
//! HTTP over the child's stdin/stdout. Using the system client keeps the examiner's
//! own ssh configuration, agent and known_hosts in charge of authentication.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;

use crate::error::{Error, Kind, Result};
use crate::transport::BoxIo;

/// How much of ssh's stderr is kept (the tail) for error messages.
const STDERR_KEEP: usize = 8 * 1024;
/// How much of it goes into one message.
const STDERR_SHOW: usize = 600;
/// After stdout closes, how long to wait for ssh's last words on stderr. Bounded
/// because a ControlMaster started by this ssh may keep stderr open for minutes.
const STDERR_GRACE: Duration = Duration::from_secs(2);
const STATUS_TICK: Duration = Duration::from_millis(10);

/// Extra ssh options from `DAC_SSH_OPTS`, split on whitespace (no shell quoting).
pub fn opts_from_env() -> Vec<String> {
    std::env::var("DAC_SSH_OPTS")
        .map(|s| s.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

/// The command line the remote shell runs. The socket path is the only variable
/// part and is single-quoted, since ssh hands the command to the remote user's shell.
pub fn remote_command(socket: Option<&str>) -> String {
    match socket {
        None => "docker system dial-stdio".to_string(),
        Some(s) => format!(
            "docker {} system dial-stdio",
            shell_quote(&format!("--host=unix://{s}"))
        ),
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Arguments for `ssh`, as `cli/connhelper/ssh` builds them plus `BatchMode=yes`: an
/// unattended collector must fail rather than wait for a password prompt.
pub fn ssh_args(
    user: Option<&str>,
    host: &str,
    port: Option<u16>,
    socket: Option<&str>,
    extra_opts: &[String],
) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    if let Some(u) = user {
        a.extend(["-l".to_string(), u.to_string()]);
    }
    if let Some(p) = port {
        a.extend(["-p".to_string(), p.to_string()]);
    }
    for o in ["-o", "ConnectTimeout=30", "-o", "BatchMode=yes", "-T"] {
        a.push(o.to_string());
    }
    a.extend(extra_opts.iter().cloned());
    a.extend(["--".to_string(), host.to_string(), remote_command(socket)]);
    a
}

/// Starts `ssh ... docker system dial-stdio` and returns its stdio as one stream.
/// Authentication problems surface on the first read or write, as an I/O error
/// (kind `ConnectionRefused`) carrying ssh's exit status and stderr.
pub async fn dial(
    user: Option<&str>,
    host: &str,
    port: Option<u16>,
    socket: Option<&str>,
    extra_opts: &[String],
) -> Result<BoxIo> {
    if host.is_empty() || host.starts_with('-') {
        return Err(Error::usage(format!("bad ssh host {host:?}")));
    }
    if user.is_some_and(|u| u.is_empty() || u.starts_with('-')) {
        return Err(Error::usage(format!("bad ssh user {user:?}")));
    }
    let mut label = String::from("ssh ");
    if let Some(u) = user {
        label.push_str(u);
        label.push('@');
    }
    label.push_str(host);
    if let Some(p) = port {
        label.push_str(&format!(" port {p}"));
    }
    let args = ssh_args(user, host, port, socket, extra_opts);
    let stream = spawn_joined("ssh", &args, label)?;
    Ok(Box::new(stream))
}

fn spawn_joined(program: &str, args: &[String], label: String) -> Result<ChildStream> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Own process group: a Ctrl-C at the terminal goes to the collector, which
        // records the interruption and then drops (kills) the tunnel itself.
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::new(Kind::Connect, format!("{label}: cannot run {program}: {e}")))?;
    let missing = || Error::new(Kind::Connect, format!("{label}: child stdio not available"));
    let stdin = child.stdin.take().ok_or_else(missing)?;
    let stdout = child.stdout.take().ok_or_else(missing)?;
    let stderr = child.stderr.take().ok_or_else(missing)?;
    let tail = Arc::new(Mutex::new(Vec::new()));
    // Drained all the time, not only on failure, so a chatty ssh (-v) cannot fill the
    // pipe and stall.
    let task = tokio::spawn(drain(stderr, Arc::clone(&tail)));
    Ok(ChildStream {
        child,
        stdout,
        stdin: Some(stdin),
        stderr_tail: tail,
        stderr_task: Some(task),
        deadline: None,
        tick: None,
        got_bytes: false,
        failed: None,
        label,
    })
}

async fn drain(mut err: ChildStderr, tail: Arc<Mutex<Vec<u8>>>) {
    let mut chunk = [0u8; 4096];
    loop {
        match err.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Ok(mut b) = tail.lock() {
                    b.extend_from_slice(&chunk[..n]);
                    if b.len() > STDERR_KEEP {
                        let cut = b.len() - STDERR_KEEP;
                        b.drain(..cut);
                    }
                }
            }
        }
    }
}

/// A child process's stdout and stdin as one bidirectional stream. It owns the
/// child, which is killed when the stream is dropped.
pub struct ChildStream {
    child: Child,
    stdout: ChildStdout,
    stdin: Option<ChildStdin>,
    stderr_tail: Arc<Mutex<Vec<u8>>>,
    stderr_task: Option<JoinHandle<()>>,
    deadline: Option<Instant>,
    tick: Option<Pin<Box<tokio::time::Sleep>>>,
    got_bytes: bool,
    failed: Option<(io::ErrorKind, String)>,
    label: String,
}

impl ChildStream {
    /// Waits (bounded) for stderr to close, then builds one error from the cause,
    /// the exit status and what ssh printed. Later calls return the same error.
    fn poll_failure(&mut self, cx: &mut Context<'_>, cause: Option<&io::Error>) -> Poll<io::Error> {
        if let Some((kind, msg)) = &self.failed {
            return Poll::Ready(io::Error::new(*kind, msg.clone()));
        }
        let deadline = *self
            .deadline
            .get_or_insert_with(|| Instant::now() + STDERR_GRACE);
        if let Some(task) = self.stderr_task.as_mut() {
            if Pin::new(task).poll(cx).is_ready() {
                self.stderr_task = None;
            }
        }
        let status = self.child.try_wait().ok().flatten();
        if (self.stderr_task.is_some() || status.is_none()) && Instant::now() < deadline {
            // The stderr task wakes us when it ends; the exit status has no waker
            // short of an async wait, so look again shortly.
            let tick = self.tick.insert(Box::pin(tokio::time::sleep(STATUS_TICK)));
            if tick.as_mut().poll(cx).is_ready() {
                cx.waker().wake_by_ref();
            }
            return Poll::Pending;
        }
        let mut msg = self.label.clone();
        match cause {
            Some(e) => msg.push_str(&format!(": {e}")),
            None => msg.push_str(": closed before the engine answered"),
        }
        match status {
            Some(st) => msg.push_str(&format!("; ssh {st}")),
            None => msg.push_str("; ssh still running"),
        }
        let said = self
            .stderr_tail
            .lock()
            .map(|b| printable_tail(&b))
            .unwrap_or_default();
        if !said.is_empty() {
            msg.push_str(&format!("; stderr: {said}"));
        }
        let kind = io::ErrorKind::ConnectionRefused;
        self.failed = Some((kind, msg.clone()));
        Poll::Ready(io::Error::new(kind, msg))
    }
}

/// The last `STDERR_SHOW` characters, one line, control characters escaped.
fn printable_tail(b: &[u8]) -> String {
    let text = String::from_utf8_lossy(b);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let joined = lines.join(" | ");
    let chars: Vec<char> = joined.chars().collect();
    let start = chars.len().saturating_sub(STDERR_SHOW);
    let mut out = String::new();
    if start > 0 {
        out.push_str("...");
    }
    for c in &chars[start..] {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(*c);
        }
    }
    out
}

impl AsyncRead for ChildStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.failed.is_some() {
            return this.poll_failure(cx, None).map(Err);
        }
        let before = buf.filled().len();
        let wanted = buf.remaining() > 0;
        match Pin::new(&mut this.stdout).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.got_bytes = true;
                    Poll::Ready(Ok(()))
                } else if wanted && !this.got_bytes {
                    // EOF before a single byte: ssh or the remote docker failed.
                    this.poll_failure(cx, None).map(Err)
                } else {
                    Poll::Ready(Ok(()))
                }
            }
            other => other,
        }
    }
}

impl AsyncWrite for ChildStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.failed.is_some() {
            return this.poll_failure(cx, None).map(Err);
        }
        let Some(stdin) = this.stdin.as_mut() else {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::NotConnected,
                format!("{}: write after shutdown", this.label),
            )));
        };
        match Pin::new(stdin).poll_write(cx, data) {
            Poll::Ready(Err(e)) => this.poll_failure(cx, Some(&e)).map(Err),
            other => other,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.stdin.as_mut() {
            Some(stdin) => match Pin::new(stdin).poll_flush(cx) {
                Poll::Ready(Err(e)) => this.poll_failure(cx, Some(&e)).map(Err),
                other => other,
            },
            None => Poll::Ready(Ok(())),
        }
    }

    /// Closing stdin is the half-close: dial-stdio then closes the write side of its
    /// engine connection and keeps relaying the answer.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        drop(self.get_mut().stdin.take());
        Poll::Ready(Ok(()))
    }
}

impl Drop for ChildStream {
    fn drop(&mut self) {
        if let Some(task) = &self.stderr_task {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn sh(script: &str) -> ChildStream {
        spawn_joined("sh", &["-c".to_string(), script.to_string()], "test".into()).unwrap()
    }

    #[test]
    fn args_match_the_cli() {
        let extra = vec!["-i".to_string(), "/k".to_string()];
        assert_eq!(
            ssh_args(Some("root"), "127.0.0.1", Some(2222), None, &extra),
            [
                "-l",
                "root",
                "-p",
                "2222",
                "-o",
                "ConnectTimeout=30",
                "-o",
                "BatchMode=yes",
                "-T",
                "-i",
                "/k",
                "--",
                "127.0.0.1",
                "docker system dial-stdio"
            ]
        );
        assert_eq!(
            ssh_args(None, "h", None, Some("/run/d.sock"), &[]),
            [
                "-o",
                "ConnectTimeout=30",
                "-o",
                "BatchMode=yes",
                "-T",
                "--",
                "h",
                "docker '--host=unix:///run/d.sock' system dial-stdio"
            ]
        );
    }

    #[test]
    fn socket_is_quoted_for_the_remote_shell() {
        assert_eq!(
            remote_command(Some("/x';rm -rf /;'")),
            r"docker '--host=unix:///x'\'';rm -rf /;'\''' system dial-stdio"
        );
        // The quoted word survives a real POSIX shell as one argument.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", shell_quote("a'b $(x) \"c\"")))
            .output()
            .unwrap();
        assert_eq!(out.stdout, b"a'b $(x) \"c\"");
    }

    #[test]
    fn rejects_option_like_host_and_user() {
        rt().block_on(async {
            let e = dial(None, "-oProxyCommand=x", None, None, &[])
                .await
                .err()
                .unwrap();
            assert_eq!(e.kind, Kind::Usage);
            let e = dial(Some("-x"), "h", None, None, &[]).await.err().unwrap();
            assert_eq!(e.kind, Kind::Usage);
        });
    }

    #[test]
    fn joined_stream_round_trip_and_half_close() {
        rt().block_on(async {
            // `cat` answers only after stdin closes, which proves shutdown closes stdin.
            let mut s = sh("cat; echo done");
            s.write_all(b"hello\n").await.unwrap();
            s.shutdown().await.unwrap();
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.unwrap();
            assert_eq!(out, b"hello\ndone\n");
            assert!(s.write_all(b"x").await.is_err());
        });
    }

    #[test]
    fn failure_carries_status_and_stderr() {
        rt().block_on(async {
            let mut s = sh("echo 'Permission denied (publickey).' >&2; exit 255");
            let mut out = Vec::new();
            let e = s.read_to_end(&mut out).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
            let m = e.to_string();
            assert!(m.contains("Permission denied (publickey)."), "{m}");
            assert!(m.contains("255"), "{m}");
            assert!(m.starts_with("test: "), "{m}");
            // Sticky: the next read gives the same story.
            let e2 = s.read(&mut [0u8; 8]).await.unwrap_err();
            assert_eq!(e2.to_string(), m);
        });
    }

    #[test]
    fn write_to_dead_child_explains() {
        rt().block_on(async {
            let mut s = sh("echo 'docker: command not found' >&2; exit 127");
            tokio::time::sleep(Duration::from_millis(200)).await;
            let big = vec![b'x'; 1 << 20];
            let e = s.write_all(&big).await.unwrap_err();
            let m = e.to_string();
            assert!(m.contains("command not found") && m.contains("127"), "{m}");
        });
    }

    #[test]
    fn stderr_is_bounded_and_drained() {
        rt().block_on(async {
            // 1 MiB on stderr would block a child whose stderr nobody reads.
            let mut s = sh("head -c 1048576 /dev/zero | tr '\\0' e >&2; echo ok");
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.unwrap();
            assert_eq!(out, b"ok\n");
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(s.stderr_tail.lock().unwrap().len() <= STDERR_KEEP);
        });
    }

    #[test]
    fn tail_is_printable() {
        assert_eq!(printable_tail(b"a\n\nb\x1b[0m\n"), "a | b\\u{1b}[0m");
        let long = vec![b'z'; 5000];
        let t = printable_tail(&long);
        assert!(t.starts_with("...") && t.len() == STDERR_SHOW + 3);
    }

    #[test]
    fn missing_program_is_connect_error() {
        rt().block_on(async {
            let e = spawn_joined("/nonexistent/ssh", &[], "x".into())
                .err()
                .unwrap();
            assert_eq!(e.kind, Kind::Connect);
        });
    }

    /// Live check against `scripts/sshd.sh` and an engine; skipped unless
    /// `DAC_SSH_HOST` is set (`eval "$(scripts/sshd.sh env)"`).
    #[test]
    fn live_ping_over_ssh() {
        let Ok(url) = std::env::var("DAC_SSH_HOST") else {
            return;
        };
        let sock = std::env::var("DAC_SSH_SOCKET")
            .unwrap_or_else(|_| "/tmp/dac-engines/docker.sock".to_string());
        let Ok(crate::discovery::EndpointKind::Ssh {
            user, host, port, ..
        }) = crate::discovery::parse_host(&url)
        else {
            panic!("DAC_SSH_HOST is not an ssh URL: {url}");
        };
        rt().block_on(async {
            let mut s = dial(user.as_deref(), &host, port, Some(&sock), &opts_from_env())
                .await
                .unwrap();
            s.write_all(b"GET /_ping HTTP/1.1\r\nHost: api.moby.localhost\r\n\r\n")
                .await
                .unwrap();
            let mut buf = vec![0u8; 4096];
            let mut got = Vec::new();
            while !got.ends_with(b"OK") {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "EOF after {:?}", String::from_utf8_lossy(&got));
                got.extend_from_slice(&buf[..n]);
            }
            assert!(got.starts_with(b"HTTP/1.1 200 OK"));
        });
    }
}
