//! Demultiplexer for the Docker log/attach stream of a container without a TTY.
//!
//! Each frame is `[type, 0, 0, 0, size u32 BE]` followed by `size` payload bytes.
//! The collector receives the body in arbitrary chunks, so the decoder is push-based:
//! a frame may be split across pushes at any byte, and memory stays constant
//! because payload bytes are handed to the sink as they arrive.

use std::fmt;

/// Which stream a payload belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Type 1, and type 0 (stdin), which the engine never sends on logs but
    /// `docker logs` prints as stdout.
    Stdout,
    /// Type 2.
    Stderr,
    /// Type 3: the daemon reports an error in band (e.g. "Error grabbing logs").
    SystemErr,
}

/// A framing violation, at the offset of the frame header that broke the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemuxError {
    pub offset: u64,
    pub detail: String,
}

impl fmt::Display for DemuxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.detail, self.offset)
    }
}

impl std::error::Error for DemuxError {}

const HEADER_LEN: usize = 8;

/// Push-based decoder of the multiplexed stream.
#[derive(Debug, Clone)]
pub struct Demux {
    /// Bytes consumed so far.
    offset: u64,
    /// Offset of the header of the frame being read.
    frame_start: u64,
    header: [u8; HEADER_LEN],
    header_len: usize,
    /// Payload bytes still expected for the current frame.
    remaining: u64,
    /// Declared payload size of the current frame (for messages).
    frame_size: u64,
    stream: Stream,
    /// Once the stream is known to be broken, every later call reports the same error,
    /// so a caller that keeps pushing cannot get misaligned frames.
    failed: Option<DemuxError>,
    /// Start of the first stream-type-3 frame: where the daemon reported an error in band.
    first_system_err: Option<u64>,
}

impl Default for Demux {
    fn default() -> Self {
        Demux::new()
    }
}

impl Demux {
    pub fn new() -> Demux {
        Demux {
            offset: 0,
            frame_start: 0,
            header: [0; HEADER_LEN],
            header_len: 0,
            remaining: 0,
            frame_size: 0,
            stream: Stream::Stdout,
            failed: None,
            first_system_err: None,
        }
    }

    /// Bytes consumed so far (the offset of the first byte the next push would read).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Where the first stream-type-3 frame (a daemon error inside the log) starts, if any.
    pub fn first_system_err(&self) -> Option<u64> {
        self.first_system_err
    }

    /// Feeds the next chunk of the body; payload pieces go to `sink` as they are found.
    /// A frame's payload may reach the sink in several pieces.
    pub fn push(
        &mut self,
        data: &[u8],
        sink: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<(), DemuxError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let mut rest = data;
        while !rest.is_empty() {
            if self.remaining > 0 {
                let take = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(rest.len());
                let (payload, tail) = rest.split_at(take);
                sink(self.stream, payload);
                self.remaining -= take as u64;
                self.offset += take as u64;
                rest = tail;
                continue;
            }
            if self.header_len == 0 {
                self.frame_start = self.offset;
            }
            let want = HEADER_LEN - self.header_len;
            let take = want.min(rest.len());
            let (part, tail) = rest.split_at(take);
            if let Some(dst) = self.header.get_mut(self.header_len..self.header_len + take) {
                dst.copy_from_slice(part);
            }
            self.header_len += take;
            self.offset += take as u64;
            rest = tail;
            if self.header_len == HEADER_LEN {
                self.header_len = 0;
                self.start_frame()?;
            }
        }
        Ok(())
    }

    fn start_frame(&mut self) -> Result<(), DemuxError> {
        let h = self.header;
        let stream = match h[0] {
            0 | 1 => Stream::Stdout,
            2 => Stream::Stderr,
            3 => Stream::SystemErr,
            other => {
                return Err(self.fail(format!(
                    "unknown stream type {other} in frame header {}",
                    hex_bytes(&h)
                )))
            }
        };
        if h[1] != 0 || h[2] != 0 || h[3] != 0 {
            return Err(self.fail(format!("nonzero padding in frame header {}", hex_bytes(&h))));
        }
        self.stream = stream;
        if stream == Stream::SystemErr && self.first_system_err.is_none() {
            self.first_system_err = Some(self.frame_start);
        }
        self.frame_size = u64::from(u32::from_be_bytes([h[4], h[5], h[6], h[7]]));
        self.remaining = self.frame_size;
        Ok(())
    }

    fn fail(&mut self, detail: String) -> DemuxError {
        let err = DemuxError {
            offset: self.frame_start,
            detail,
        };
        self.failed = Some(err.clone());
        err
    }

    /// Declares the end of the body: an error if it stopped inside a frame.
    pub fn finish(&self) -> Result<(), DemuxError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if self.header_len > 0 {
            return Err(DemuxError {
                offset: self.frame_start,
                detail: format!(
                    "stream ends inside a frame header ({} of {HEADER_LEN} bytes)",
                    self.header_len
                ),
            });
        }
        if self.remaining > 0 {
            return Err(DemuxError {
                offset: self.frame_start,
                detail: format!(
                    "stream ends inside a frame payload ({} of {} bytes)",
                    self.frame_size - self.remaining,
                    self.frame_size
                ),
            });
        }
        Ok(())
    }
}

fn hex_bytes(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![kind, 0, 0, 0];
        v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    /// Collects the output, merging consecutive pieces of the same stream.
    type Output = Vec<(Stream, Vec<u8>)>;

    fn run(chunks: &[&[u8]]) -> (Output, Result<(), DemuxError>, u64) {
        let mut d = Demux::new();
        let mut out: Vec<(Stream, Vec<u8>)> = Vec::new();
        for c in chunks {
            let r = d.push(c, &mut |s, p| match out.last_mut() {
                Some((ls, lp)) if *ls == s => lp.extend_from_slice(p),
                _ => out.push((s, p.to_vec())),
            });
            if let Err(e) = r {
                return (out, Err(e), d.offset());
            }
        }
        let r = d.finish();
        (out, r, d.offset())
    }

    #[test]
    fn observed_frame_from_engine_20_10() {
        let payload = b"2026-11-27T13:48:54.017243499Z tick 358\n";
        let mut data = vec![1, 0, 0, 0, 0, 0, 0, 0x28];
        data.extend_from_slice(payload);
        let (out, r, off) = run(&[&data]);
        r.unwrap();
        assert_eq!(out, vec![(Stream::Stdout, payload.to_vec())]);
        assert_eq!(off, 48);
    }

    #[test]
    fn all_stream_types() {
        let mut data = frame(0, b"in");
        data.extend(frame(2, b"err"));
        data.extend(frame(3, b"Error grabbing logs: x"));
        data.extend(frame(1, b"out"));
        let (out, r, _) = run(&[&data]);
        r.unwrap();
        assert_eq!(
            out,
            vec![
                (Stream::Stdout, b"in".to_vec()),
                (Stream::Stderr, b"err".to_vec()),
                (Stream::SystemErr, b"Error grabbing logs: x".to_vec()),
                (Stream::Stdout, b"out".to_vec()),
            ]
        );
    }

    #[test]
    fn split_at_every_byte_boundary() {
        let mut data = frame(1, b"hello\n");
        data.extend(frame(2, b""));
        data.extend(frame(2, b"oops\n"));
        data.extend(frame(1, &[7u8; 300]));
        let (want, r, _) = run(&[&data]);
        r.unwrap();
        for cut1 in 0..=data.len() {
            for cut2 in cut1..=data.len() {
                let (got, r, off) = run(&[&data[..cut1], &data[cut1..cut2], &data[cut2..]]);
                r.unwrap();
                assert_eq!(got, want, "cuts {cut1} {cut2}");
                assert_eq!(off, data.len() as u64);
            }
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        let mut data = frame(1, b"abc");
        data.extend(frame(2, b"defg"));
        let chunks: Vec<&[u8]> = data.chunks(1).collect();
        let (out, r, _) = run(&chunks);
        r.unwrap();
        assert_eq!(
            out,
            vec![
                (Stream::Stdout, b"abc".to_vec()),
                (Stream::Stderr, b"defg".to_vec())
            ]
        );
    }

    #[test]
    fn empty_stream_and_empty_pushes() {
        let (out, r, off) = run(&[]);
        r.unwrap();
        assert!(out.is_empty());
        assert_eq!(off, 0);
        let (out, r, _) = run(&[b"", b""]);
        r.unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn unknown_stream_type_reports_frame_offset() {
        let mut data = frame(1, b"ok\n");
        data.extend(frame(4, b"bad"));
        let (out, r, _) = run(&[&data]);
        let e = r.unwrap_err();
        assert_eq!(e.offset, 11);
        assert!(e.detail.contains("unknown stream type 4"), "{}", e.detail);
        assert_eq!(out, vec![(Stream::Stdout, b"ok\n".to_vec())]);
    }

    #[test]
    fn raw_tty_text_is_rejected() {
        let (_, r, _) = run(&[b"hello world\r\n"]);
        let e = r.unwrap_err();
        assert_eq!(e.offset, 0);
        assert!(e.detail.contains("unknown stream type 104"));
    }

    #[test]
    fn nonzero_padding_is_rejected() {
        for pos in 1..4 {
            let mut data = frame(1, b"x");
            data.extend(frame(2, b"y"));
            data[9 + pos] = 1;
            let (_, r, _) = run(&[&data]);
            let e = r.unwrap_err();
            assert_eq!(e.offset, 9);
            assert!(e.detail.contains("padding"), "{}", e.detail);
        }
    }

    #[test]
    fn error_is_sticky() {
        let mut d = Demux::new();
        let mut n = 0;
        let e1 = d.push(&[9, 0, 0, 0, 0, 0, 0, 0], &mut |_, _| n += 1);
        let e2 = d.push(&frame(1, b"x"), &mut |_, _| n += 1);
        assert_eq!(e1, e2);
        assert!(e1.is_err());
        assert_eq!(d.finish(), e1);
        assert_eq!(n, 0);
    }

    #[test]
    fn truncated_header_and_payload() {
        let data = frame(1, b"abcdef");
        let (_, r, _) = run(&[&data[..5]]);
        let e = r.unwrap_err();
        assert_eq!(e.offset, 0);
        assert!(e.detail.contains("header (5 of 8"), "{}", e.detail);

        let mut two = frame(2, b"zz");
        two.extend_from_slice(&data[..10]);
        let (out, r, off) = run(&[&two]);
        let e = r.unwrap_err();
        assert_eq!(e.offset, 10);
        assert!(e.detail.contains("payload (2 of 6"), "{}", e.detail);
        assert_eq!(off, 20);
        assert_eq!(
            out,
            vec![
                (Stream::Stderr, b"zz".to_vec()),
                (Stream::Stdout, b"ab".to_vec())
            ]
        );
    }

    #[test]
    fn large_declared_size_streams_without_buffering() {
        let mut d = Demux::new();
        let mut got = 0usize;
        d.push(&[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff], &mut |_, p| {
            got += p.len()
        })
        .unwrap();
        let chunk = vec![0u8; 65536];
        for _ in 0..4 {
            d.push(&chunk, &mut |_, p| got += p.len()).unwrap();
        }
        assert_eq!(got, 4 * 65536);
        assert!(d.finish().is_err());
        assert_eq!(d.offset(), 8 + 4 * 65536);
    }

    /// Real bodies of `GET /containers/{id}/logs`: DAC_LOG_RAW=path[:path...].
    #[test]
    fn real_logs_from_environment() {
        let Ok(list) = std::env::var("DAC_LOG_RAW") else {
            println!("DAC_LOG_RAW not set; skipping real log bodies");
            return;
        };
        for p in list.split(':').filter(|p| !p.is_empty()) {
            let data = std::fs::read(p).unwrap();
            let mut d = Demux::new();
            let (mut out, mut err) = (0usize, 0usize);
            for c in data.chunks(4093) {
                d.push(c, &mut |s, b| match s {
                    Stream::Stderr => err += b.len(),
                    _ => out += b.len(),
                })
                .unwrap();
            }
            d.finish().unwrap();
            println!("{p}: {} bytes, stdout {out}, stderr {err}", d.offset());
            assert_eq!(d.offset(), data.len() as u64);
        }
    }
}
