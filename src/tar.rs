//! Tar validation for the archives the engine streams (export, image save, archive).
//!
//! `TarWalker` checks a tar as it arrives, in constant memory, so the collector can say
//! whether what it wrote to disk is a complete archive: a daemon that fails half-way
//! through still answered 200, and may have appended a JSON error to the body.
//! `index_file` lists the entries of a tar already on disk, seeking over the data, so
//! image verification can hash entries in place.
//!
//! Accepted formats are those Go's archive/tar and GNU tar write: V7, ustar (with the
//! name prefix), GNU (long names 'L'/'K', base-256 numbers, sparse extension blocks)
//! and PAX ('x' records `path`, `linkpath`, `size`; 'g' records are checked for form).

use std::fmt;
use std::io::{BufReader, Read};
use std::path::Path;

/// A tar that is not well formed. `offset` is where the valid archive stops: the
/// header that failed, the start of the entry that was cut short, or the end of the
/// archive when something other than zero bytes follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarError {
    pub offset: u64,
    pub detail: String,
}

impl fmt::Display for TarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (tar offset {})", self.detail, self.offset)
    }
}

impl std::error::Error for TarError {}

/// What a complete tar contained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarSummary {
    /// Entries, not counting PAX and GNU extension headers.
    pub entries: u64,
    /// Offset just after the two zero blocks that end the archive.
    pub end_offset: u64,
    /// Zero bytes after the end marker (block padding by some writers).
    pub trailing_zero_bytes: u64,
}

/// One entry of a tar on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarEntry {
    /// Lossy UTF-8; PAX `path` or GNU long name applied, ustar prefix joined.
    pub name: String,
    /// Typeflag; the old V7 regular-file flag NUL is reported as b'0'.
    pub kind: u8,
    /// Bytes of data in the archive (0 for links, directories, devices, fifos).
    pub size: u64,
    /// Offset of the first data byte in the file.
    pub data_offset: u64,
    /// Link target for hard links ('1') and symlinks ('2'); empty otherwise.
    pub link: String,
}

const BLOCK: usize = 512;
const BLOCK64: u64 = 512;
/// Largest extension header data accepted (Go's archive/tar uses the same bound).
const MAX_EXT: u64 = 1 << 20;
/// Bytes of the stream quoted in an error.
const QUOTE: usize = 200;

struct Header {
    name: Vec<u8>,
    link: Vec<u8>,
    kind: u8,
    size: u64,
    /// GNU sparse header followed by extension blocks.
    sparse_ext: bool,
}

/// Extension headers seen before the entry they apply to.
#[derive(Default)]
struct Pending {
    start: Option<u64>,
    size: Option<u64>,
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.start.is_none()
    }
}

fn err(offset: u64, detail: impl Into<String>) -> TarError {
    TarError {
        offset,
        detail: detail.into(),
    }
}

fn field(block: &[u8; BLOCK], from: usize, to: usize) -> &[u8] {
    block.get(from..to).unwrap_or(&[])
}

/// Bytes up to the first NUL.
fn cstr(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(n) => b.get(..n).unwrap_or(b),
        None => b,
    }
}

fn is_zero(b: &[u8]) -> bool {
    b.iter().all(|&c| c == 0)
}

/// Octal field, NUL/space padded on either side; empty means 0 (as Go reads it).
fn parse_octal(b: &[u8]) -> Option<u64> {
    let start = b.iter().position(|&c| c != b' ' && c != 0)?;
    let end = b.iter().rposition(|&c| c != b' ' && c != 0)?;
    let digits = b.get(start..=end)?;
    let mut v: u64 = 0;
    for &c in digits {
        if !(b'0'..=b'7').contains(&c) {
            return None;
        }
        v = v.checked_mul(8)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(v)
}

/// Octal or GNU base-256 (high bit of the first byte set) numeric field.
fn parse_numeric(b: &[u8]) -> Option<i64> {
    match b.first() {
        Some(&first) if first & 0x80 != 0 => {
            let inv: u8 = if first & 0x40 != 0 { 0xff } else { 0 };
            let mut x: u64 = 0;
            for (i, &c) in b.iter().enumerate() {
                let mut c = c ^ inv;
                if i == 0 {
                    c &= 0x7f;
                }
                if x >> 56 != 0 {
                    return None;
                }
                x = (x << 8) | u64::from(c);
            }
            if x >> 63 != 0 {
                return None;
            }
            let v = i64::try_from(x).ok()?;
            Some(if inv == 0xff { !v } else { v })
        }
        _ => {
            if b.iter().all(|&c| c == b' ' || c == 0) {
                return Some(0);
            }
            i64::try_from(parse_octal(b)?).ok()
        }
    }
}

/// Printable rendering of stream bytes for error messages.
fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() + 2);
    for &b in bytes {
        match b {
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            b'\\' => s.push_str("\\\\"),
            b'"' => s.push_str("\\\""),
            0x20..=0x7e => s.push(char::from(b)),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}

fn quote(bytes: &[u8]) -> String {
    let b = bytes.get(..QUOTE.min(bytes.len())).unwrap_or(bytes);
    // Zero padding after a JSON error says nothing; keep the message readable.
    let end = b.iter().rposition(|&c| c != 0).map_or(0, |n| n + 1);
    let shown = b.get(..end).unwrap_or(b);
    let more = if shown.len() < b.len() {
        format!(" + {} zero bytes", b.len() - shown.len())
    } else {
        String::new()
    };
    format!("\"{}\"{more}", escape(shown))
}

fn parse_header(block: &[u8; BLOCK], offset: u64) -> Result<Header, TarError> {
    let bad = |what: &str| {
        err(
            offset,
            format!("invalid tar header: {what}; header bytes: {}", quote(block)),
        )
    };
    let stored = parse_octal(field(block, 148, 156)).ok_or_else(|| bad("checksum field"))?;
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, &c) in block.iter().enumerate() {
        let c = if (148..156).contains(&i) { b' ' } else { c };
        unsigned += u64::from(c);
        signed += i64::from(c as i8);
    }
    if stored != unsigned && i64::try_from(stored).ok() != Some(signed) {
        return Err(bad(&format!(
            "checksum mismatch (stored {stored}, computed {unsigned})"
        )));
    }
    for (name, from, to) in [("mode", 100, 108), ("uid", 108, 116), ("gid", 116, 124)] {
        parse_numeric(field(block, from, to)).ok_or_else(|| bad(name))?;
    }
    parse_numeric(field(block, 136, 148)).ok_or_else(|| bad("mtime"))?;
    let size = parse_numeric(field(block, 124, 136)).ok_or_else(|| bad("size field"))?;
    let size = u64::try_from(size).map_err(|_| bad("negative size"))?;
    let kind = match block.get(156).copied().unwrap_or(0) {
        0 => b'0',
        k => k,
    };
    let magic = field(block, 257, 265);
    let ustar = magic.starts_with(b"ustar\0");
    let gnu = magic == b"ustar  \0";
    let mut name = cstr(field(block, 0, 100)).to_vec();
    if ustar {
        let prefix = cstr(field(block, 345, 500));
        if !prefix.is_empty() {
            let mut joined = prefix.to_vec();
            joined.push(b'/');
            joined.extend_from_slice(&name);
            name = joined;
        }
    }
    Ok(Header {
        name,
        link: cstr(field(block, 157, 257)).to_vec(),
        kind,
        size,
        sparse_ext: gnu && kind == b'S' && block.get(482).copied().unwrap_or(0) != 0,
    })
}

fn is_extension(kind: u8) -> bool {
    matches!(kind, b'x' | b'g' | b'L' | b'K')
}

/// Types whose size field is ignored: they carry no data (as Go's archive/tar reads them).
fn header_only(kind: u8) -> bool {
    matches!(kind, b'1' | b'2' | b'3' | b'4' | b'5' | b'6')
}

fn padded(n: u64, offset: u64) -> Result<u64, TarError> {
    n.checked_add(BLOCK64 - 1)
        .map(|v| v / BLOCK64 * BLOCK64)
        .ok_or_else(|| err(offset, format!("entry size {n} too large")))
}

/// Applies the data of an extension header to the pending state.
fn apply_extension(
    kind: u8,
    data: &[u8],
    pending: &mut Pending,
    offset: u64,
) -> Result<(), TarError> {
    match kind {
        b'L' => pending.long_name = Some(cstr(data).to_vec()),
        b'K' => pending.long_link = Some(cstr(data).to_vec()),
        _ => parse_pax(data, kind == b'x', pending, offset)?,
    }
    Ok(())
}

/// PAX records: "<len> <key>=<value>\n", where len counts the whole record.
fn parse_pax(data: &[u8], apply: bool, pending: &mut Pending, offset: u64) -> Result<(), TarError> {
    let bad = |what: String| err(offset, format!("invalid PAX header: {what}"));
    let mut rest = data;
    while !rest.is_empty() && !is_zero(rest) {
        let sp = rest
            .iter()
            .position(|&c| c == b' ')
            .ok_or_else(|| bad("record without length".to_string()))?;
        let digits = rest.get(..sp).unwrap_or(&[]);
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) || digits.len() > 10 {
            return Err(bad(format!("record length {}", quote(digits))));
        }
        let len: usize = std::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("record length".to_string()))?;
        if len <= sp + 1 || len > rest.len() {
            return Err(bad(format!("record length {len} out of range")));
        }
        let record = rest.get(sp + 1..len).unwrap_or(&[]);
        rest = rest.get(len..).unwrap_or(&[]);
        let body = match record.split_last() {
            Some((b'\n', body)) => body,
            _ => return Err(bad("record not terminated by newline".to_string())),
        };
        let eq = body
            .iter()
            .position(|&c| c == b'=')
            .ok_or_else(|| bad("record without '='".to_string()))?;
        let key = body.get(..eq).unwrap_or(&[]);
        let value = body.get(eq + 1..).unwrap_or(&[]);
        if key.is_empty() {
            return Err(bad("empty key".to_string()));
        }
        if !apply {
            continue;
        }
        match key {
            b"size" => {
                let v = std::str::from_utf8(value)
                    .ok()
                    .filter(|s| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
                    .and_then(|s| s.parse::<u64>().ok())
                    .filter(|&v| i64::try_from(v).is_ok())
                    .ok_or_else(|| bad(format!("size {}", quote(value))))?;
                pending.size = Some(v);
            }
            b"path" => pending.path = Some(value.to_vec()),
            b"linkpath" => pending.linkpath = Some(value.to_vec()),
            _ => {}
        }
    }
    Ok(())
}

/// Name, link, kind and data length of a real entry, with pending extensions applied.
fn resolve_entry(h: Header, pending: &mut Pending) -> (Vec<u8>, Vec<u8>, u8, u64) {
    let p = std::mem::take(pending);
    let name = p.path.or(p.long_name).unwrap_or(h.name);
    let link = p.linkpath.or(p.long_link).unwrap_or(h.link);
    let size = p.size.unwrap_or(h.size);
    let data = if header_only(h.kind) { 0 } else { size };
    (name, link, h.kind, data)
}

// ---------------------------------------------------------------------------
// Streaming walker.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a header block (or the first zero block).
    Header,
    /// Saw one zero block at `zero_start`; the next block must be zero too.
    SecondZero,
    /// Expecting a GNU sparse extension block; then `data` bytes of entry data.
    SparseExt { data: u64 },
    /// Skipping entry data and padding.
    Data { remaining: u64 },
    /// Collecting extension header data, then skipping its padding.
    Ext { kind: u8, data: u64, pad: u64 },
    /// After the end-of-archive marker: only zero bytes may follow.
    End,
}

struct Failure {
    offset: u64,
    detail: String,
    /// Bytes quoted after `detail`, still growing while `collecting`.
    quote: Vec<u8>,
    collecting: bool,
    /// The error as last rendered, so pushes after a failure do not re-render it.
    rendered: TarError,
}

impl Failure {
    fn new(e: TarError, quote: Vec<u8>, collecting: bool) -> Failure {
        let mut f = Failure {
            offset: e.offset,
            detail: e.detail,
            quote,
            collecting,
            rendered: err(0, String::new()),
        };
        f.render();
        f
    }

    fn render(&mut self) {
        let detail = if self.quote.is_empty() && !self.collecting {
            self.detail.clone()
        } else {
            format!("{}: {}", self.detail, quote(&self.quote))
        };
        self.rendered = err(self.offset, detail);
    }

    fn error(&self) -> TarError {
        self.rendered.clone()
    }
}

/// Push-based tar validator.
pub struct TarWalker {
    pos: u64,
    block: [u8; BLOCK],
    fill: usize,
    block_start: u64,
    state: State,
    pending: Pending,
    ext: Vec<u8>,
    entries: u64,
    /// Offset of the header of the entry being read (its first extension header).
    entry_start: u64,
    zero_start: u64,
    end_offset: u64,
    trailing_zero: u64,
    /// The last bytes received, quoted when the stream is cut short.
    recent: [u8; QUOTE],
    /// Next write position in `recent`.
    recent_at: usize,
    /// `recent` has wrapped at least once.
    recent_full: bool,
    failed: Option<Failure>,
}

impl Default for TarWalker {
    fn default() -> Self {
        TarWalker::new()
    }
}

impl TarWalker {
    pub fn new() -> TarWalker {
        TarWalker {
            pos: 0,
            block: [0; BLOCK],
            fill: 0,
            block_start: 0,
            state: State::Header,
            pending: Pending::default(),
            ext: Vec::new(),
            entries: 0,
            entry_start: 0,
            zero_start: 0,
            end_offset: 0,
            trailing_zero: 0,
            recent: [0; QUOTE],
            recent_at: 0,
            recent_full: false,
            failed: None,
        }
    }

    fn remember(&mut self, data: &[u8]) {
        let tail = data.get(data.len().saturating_sub(QUOTE)..).unwrap_or(data);
        // A ring, so that tiny pushes cost no memmove of the whole quote.
        for &b in tail {
            if let Some(slot) = self.recent.get_mut(self.recent_at) {
                *slot = b;
            }
            self.recent_at += 1;
            if self.recent_at >= QUOTE {
                self.recent_at = 0;
                self.recent_full = true;
            }
        }
    }

    fn fail(&mut self, e: TarError, quote: Vec<u8>, collecting: bool) -> TarError {
        let f = Failure::new(e, quote, collecting);
        let out = f.error();
        self.failed = Some(f);
        out
    }

    /// The last bytes received (up to 200), oldest first.
    fn recent_bytes(&self) -> Vec<u8> {
        if !self.recent_full {
            return self.recent.get(..self.recent_at).unwrap_or(&[]).to_vec();
        }
        // The oldest byte is the one about to be overwritten.
        let (newer, older) = self.recent.split_at(self.recent_at);
        [older, newer].concat()
    }

    /// Feeds the next bytes of the stream. After an error every call returns it again
    /// (a non-zero tail keeps growing its quote up to 200 bytes).
    pub fn push(&mut self, data: &[u8]) -> Result<(), TarError> {
        self.remember(data);
        if let Some(f) = &mut self.failed {
            if f.collecting {
                let room = QUOTE.saturating_sub(f.quote.len());
                f.quote
                    .extend_from_slice(data.get(..room.min(data.len())).unwrap_or(&[]));
                f.collecting = f.quote.len() < QUOTE;
                if !data.is_empty() && room > 0 {
                    f.render();
                }
            }
            return Err(f.error());
        }
        let mut rest = data;
        while !rest.is_empty() {
            match self.state {
                State::Data { remaining } => {
                    let n = remaining.min(rest.len() as u64);
                    rest = rest.get(n as usize..).unwrap_or(&[]);
                    self.pos += n;
                    self.state = if remaining == n {
                        State::Header
                    } else {
                        State::Data {
                            remaining: remaining - n,
                        }
                    };
                }
                State::Ext { kind, data, pad } => {
                    if data > 0 {
                        let n = data.min(rest.len() as u64) as usize;
                        self.ext.extend_from_slice(rest.get(..n).unwrap_or(&[]));
                        rest = rest.get(n..).unwrap_or(&[]);
                        self.pos += n as u64;
                        self.state = State::Ext {
                            kind,
                            data: data - n as u64,
                            pad,
                        };
                        continue;
                    }
                    let n = pad.min(rest.len() as u64);
                    rest = rest.get(n as usize..).unwrap_or(&[]);
                    self.pos += n;
                    if pad > n {
                        self.state = State::Ext {
                            kind,
                            data: 0,
                            pad: pad - n,
                        };
                        continue;
                    }
                    let ext = std::mem::take(&mut self.ext);
                    let r = apply_extension(kind, &ext, &mut self.pending, self.entry_start);
                    if let Err(e) = r {
                        return Err(self.fail(e, Vec::new(), false));
                    }
                    self.state = State::Header;
                }
                State::End => match rest.iter().position(|&c| c != 0) {
                    None => {
                        self.trailing_zero += rest.len() as u64;
                        self.pos += rest.len() as u64;
                        rest = &[];
                    }
                    Some(i) => {
                        self.trailing_zero += i as u64;
                        self.pos += i as u64;
                        let tail = rest.get(i..).unwrap_or(&[]);
                        let q = tail.get(..QUOTE.min(tail.len())).unwrap_or(tail).to_vec();
                        let collecting = q.len() < QUOTE;
                        let e = err(
                            self.end_offset,
                            format!(
                                "non-zero data after the end of the archive (at offset {})",
                                self.pos
                            ),
                        );
                        return Err(self.fail(e, q, collecting));
                    }
                },
                State::Header | State::SecondZero | State::SparseExt { .. } => {
                    if self.fill == 0 {
                        self.block_start = self.pos;
                    }
                    let n = (BLOCK - self.fill).min(rest.len());
                    if let (Some(dst), Some(src)) =
                        (self.block.get_mut(self.fill..self.fill + n), rest.get(..n))
                    {
                        dst.copy_from_slice(src);
                    }
                    self.fill += n;
                    self.pos += n as u64;
                    rest = rest.get(n..).unwrap_or(&[]);
                    if self.fill == BLOCK {
                        self.fill = 0;
                        if let Err(e) = self.on_block() {
                            return Err(self.fail(e, Vec::new(), false));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn on_block(&mut self) -> Result<(), TarError> {
        let at = self.block_start;
        match self.state {
            State::SecondZero => {
                if !is_zero(&self.block) {
                    return Err(err(
                        self.zero_start,
                        format!(
                            "a single zero block followed by data; block bytes: {}",
                            quote(&self.block)
                        ),
                    ));
                }
                self.end_offset = self.pos;
                self.state = State::End;
            }
            State::SparseExt { data } => {
                if self.block.get(504).copied().unwrap_or(0) == 0 {
                    self.state = if data == 0 {
                        State::Header
                    } else {
                        State::Data {
                            remaining: padded(data, self.entry_start)?,
                        }
                    };
                }
            }
            _ => {
                if is_zero(&self.block) {
                    if let Some(start) = self.pending.start {
                        return Err(err(start, "extension header not followed by an entry"));
                    }
                    self.zero_start = at;
                    self.state = State::SecondZero;
                    return Ok(());
                }
                let h = parse_header(&self.block, at)?;
                if self.pending.is_empty() {
                    self.entry_start = at;
                }
                if is_extension(h.kind) {
                    if h.size > MAX_EXT {
                        return Err(err(
                            at,
                            format!("extension header of {} bytes is too large", h.size),
                        ));
                    }
                    self.pending.start.get_or_insert(at);
                    self.ext.clear();
                    self.state = State::Ext {
                        kind: h.kind,
                        data: h.size,
                        pad: padded(h.size, at)? - h.size,
                    };
                    return Ok(());
                }
                let sparse_ext = h.sparse_ext;
                let (_, _, _, data) = resolve_entry(h, &mut self.pending);
                let total = padded(data, self.entry_start)?;
                self.entries += 1;
                self.state = if sparse_ext {
                    State::SparseExt { data }
                } else if total == 0 {
                    State::Header
                } else {
                    State::Data { remaining: total }
                };
            }
        }
        Ok(())
    }

    /// Declares the end of the stream: the summary if the archive was complete.
    pub fn finish(&self) -> Result<TarSummary, TarError> {
        if let Some(f) = &self.failed {
            return Err(f.error());
        }
        let recent = || quote(&self.recent_bytes());
        let partial = self.block.get(..self.fill).unwrap_or(&[]);
        match self.state {
            State::End => Ok(TarSummary {
                entries: self.entries,
                end_offset: self.end_offset,
                trailing_zero_bytes: self.trailing_zero,
            }),
            State::Header if self.fill == 0 && self.pending.is_empty() => Err(err(
                self.pos,
                format!(
                    "stream ends without the end-of-archive marker after {} entries; last bytes: {}",
                    self.entries,
                    recent()
                ),
            )),
            // An entry cut short starts at its first extension header, if it has one.
            State::Header if self.fill > 0 => Err(err(
                self.pending.start.unwrap_or(self.block_start),
                format!(
                    "stream ends inside a header block ({} of 512 bytes): {}",
                    self.fill,
                    quote(partial)
                ),
            )),
            State::SecondZero => Err(err(
                self.zero_start,
                if self.fill == 0 {
                    "stream ends after a single zero block (the end marker is two)".to_string()
                } else {
                    format!(
                        "stream ends inside the second zero block ({} of 512 bytes): {}",
                        self.fill,
                        quote(partial)
                    )
                },
            )),
            _ => {
                // In the data the entry is already counted; in its extension headers not yet.
                let index = match self.state {
                    State::Data { .. } | State::SparseExt { .. } => self.entries.saturating_sub(1),
                    _ => self.entries,
                };
                Err(err(
                    self.entry_start,
                    format!(
                        "stream ends inside entry {index} (0-based) at offset {}; last bytes: {}",
                        self.pos,
                        recent()
                    ),
                ))
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Seek-based index of a tar file.

fn io_err(offset: u64, what: &str, e: std::io::Error) -> TarError {
    err(offset, format!("{what}: {e}"))
}

/// Lists the entries of the tar at `path`, checking it as `TarWalker` does but
/// seeking over entry data instead of reading it.
pub fn index_file(path: &Path) -> Result<Vec<TarEntry>, TarError> {
    let file = std::fs::File::open(path)
        .map_err(|e| io_err(0, &format!("cannot open {}", path.display()), e))?;
    let len = file
        .metadata()
        .map_err(|e| io_err(0, &format!("cannot stat {}", path.display()), e))?
        .len();
    let mut r = BufReader::with_capacity(64 * 1024, file);
    let mut pos: u64 = 0;
    let mut pending = Pending::default();
    let mut entries = Vec::new();
    let mut entry_start: u64 = 0;
    let mut block = [0u8; BLOCK];

    let read_block = |r: &mut BufReader<std::fs::File>,
                      block: &mut [u8; BLOCK],
                      pos: u64|
     -> Result<(), TarError> {
        r.read_exact(block)
            .map_err(|e| io_err(pos, "read error", e))
    };

    loop {
        if pos + BLOCK64 > len {
            let what = if pending.is_empty() {
                format!(
                    "file ends without the end-of-archive marker after {} entries",
                    entries.len()
                )
            } else {
                "file ends after an extension header".to_string()
            };
            let mut tail = Vec::new();
            r.by_ref()
                .take(QUOTE as u64)
                .read_to_end(&mut tail)
                .map_err(|e| io_err(pos, "read error", e))?;
            return Err(err(
                pending.start.unwrap_or(pos),
                format!("{what}; trailing bytes: {}", quote(&tail)),
            ));
        }
        read_block(&mut r, &mut block, pos)?;
        let at = pos;
        pos += BLOCK64;
        if is_zero(&block) {
            if let Some(start) = pending.start {
                return Err(err(start, "extension header not followed by an entry"));
            }
            if pos + BLOCK64 > len {
                return Err(err(
                    at,
                    "file ends after a single zero block (the end marker is two)",
                ));
            }
            read_block(&mut r, &mut block, pos)?;
            if !is_zero(&block) {
                return Err(err(
                    at,
                    format!(
                        "a single zero block followed by data; block bytes: {}",
                        quote(&block)
                    ),
                ));
            }
            pos += BLOCK64;
            check_zero_tail(&mut r, pos)?;
            return Ok(entries);
        }
        let h = parse_header(&block, at)?;
        if pending.is_empty() {
            entry_start = at;
        }
        if is_extension(h.kind) {
            if h.size > MAX_EXT {
                return Err(err(
                    at,
                    format!("extension header of {} bytes is too large", h.size),
                ));
            }
            let total = padded(h.size, at)?;
            if pos + total > len {
                return Err(err(
                    entry_start,
                    "file ends inside an extension header".to_string(),
                ));
            }
            let mut data = vec![0u8; total as usize];
            r.read_exact(&mut data)
                .map_err(|e| io_err(pos, "read error", e))?;
            data.truncate(h.size as usize);
            pending.start.get_or_insert(at);
            apply_extension(h.kind, &data, &mut pending, entry_start)?;
            pos += total;
            continue;
        }
        let sparse_ext = h.sparse_ext;
        let (name, link, kind, size) = resolve_entry(h, &mut pending);
        if sparse_ext {
            loop {
                if pos + BLOCK64 > len {
                    return Err(err(entry_start, "file ends inside sparse headers"));
                }
                read_block(&mut r, &mut block, pos)?;
                pos += BLOCK64;
                if block.get(504).copied().unwrap_or(0) == 0 {
                    break;
                }
            }
        }
        let total = padded(size, entry_start)?;
        if pos.checked_add(total).is_none_or(|end| end > len) {
            return Err(err(
                entry_start,
                format!(
                    "entry {} ({}) needs {size} data bytes at offset {pos}, but the file has {len} bytes",
                    entries.len(),
                    escape(&name)
                ),
            ));
        }
        entries.push(TarEntry {
            name: String::from_utf8_lossy(&name).into_owned(),
            kind,
            size,
            data_offset: pos,
            link: String::from_utf8_lossy(&link).into_owned(),
        });
        if total > 0 {
            let skip = i64::try_from(total).map_err(|_| err(entry_start, "entry too large"))?;
            r.seek_relative(skip)
                .map_err(|e| io_err(pos, "seek error", e))?;
            pos += total;
        }
    }
}

/// After the end marker only zero bytes may follow.
fn check_zero_tail(r: &mut BufReader<std::fs::File>, end: u64) -> Result<(), TarError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = end;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(at, "read error", e)),
        };
        let chunk = buf.get(..n).unwrap_or(&[]);
        if let Some(i) = chunk.iter().position(|&c| c != 0) {
            let mut tail = chunk.get(i..).unwrap_or(&[]).to_vec();
            if tail.len() < QUOTE {
                r.by_ref()
                    .take((QUOTE - tail.len()) as u64)
                    .read_to_end(&mut tail)
                    .map_err(|e| io_err(at, "read error", e))?;
            }
            return Err(err(
                end,
                format!(
                    "non-zero data after the end of the archive (at offset {}): {}",
                    at + i as u64,
                    quote(&tail)
                ),
            ));
        }
        at += n as u64;
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    //! A small tar writer for tests (ustar headers, PAX and GNU extensions).

    pub(crate) fn header(name: &str, kind: u8, size: u64, link: &str) -> [u8; 512] {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0000000");
        h[116..123].copy_from_slice(b"0000000");
        h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        h[136..147].copy_from_slice(b"00000000000");
        h[156] = kind;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        set_checksum(&mut h);
        h
    }

    pub(crate) fn set_checksum(h: &mut [u8; 512]) {
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    }

    fn pad(out: &mut Vec<u8>) {
        while !out.len().is_multiple_of(512) {
            out.push(0);
        }
    }

    #[derive(Default)]
    pub(crate) struct TarBuilder {
        pub(crate) out: Vec<u8>,
    }

    impl TarBuilder {
        pub(crate) fn new() -> TarBuilder {
            TarBuilder::default()
        }
        pub(crate) fn entry(&mut self, name: &str, kind: u8, data: &[u8], link: &str) -> &mut Self {
            self.out
                .extend_from_slice(&header(name, kind, data.len() as u64, link));
            self.out.extend_from_slice(data);
            pad(&mut self.out);
            self
        }
        pub(crate) fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
            self.entry(name, b'0', data, "")
        }
        pub(crate) fn dir(&mut self, name: &str) -> &mut Self {
            self.entry(name, b'5', b"", "")
        }
        pub(crate) fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
            self.entry(name, b'2', b"", target)
        }
        pub(crate) fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
            self.entry(name, b'1', b"", target)
        }
        pub(crate) fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
            let mut data = Vec::new();
            for (k, v) in records {
                let body_len = k.len() + v.len() + 3;
                let mut len = body_len + 1;
                while format!("{len}").len() + body_len != len {
                    len += 1;
                }
                data.extend_from_slice(format!("{len} {k}=").as_bytes());
                data.extend_from_slice(v);
                data.push(b'\n');
            }
            self.entry("PaxHeaders/x", b'x', &data, "")
        }
        pub(crate) fn gnu_long(&mut self, kind: u8, value: &str) -> &mut Self {
            let mut data = value.as_bytes().to_vec();
            data.push(0);
            self.entry("././@LongLink", kind, &data, "")
        }
        pub(crate) fn raw(&mut self, bytes: &[u8]) -> &mut Self {
            self.out.extend_from_slice(bytes);
            self
        }
        pub(crate) fn finish(&mut self) -> Vec<u8> {
            let mut v = std::mem::take(&mut self.out);
            v.extend_from_slice(&[0u8; 1024]);
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    fn walk(data: &[u8], chunk: usize) -> Result<TarSummary, TarError> {
        // Keep pushing after an error, as a collector that saves the body anyway does.
        let mut w = TarWalker::new();
        let mut first = None;
        for c in data.chunks(chunk.max(1)) {
            if let (Err(e), None) = (w.push(c), &first) {
                first = Some(e);
            }
        }
        let r = w.finish();
        if let Some(e) = first {
            assert_eq!(r.as_ref().unwrap_err().offset, e.offset);
        }
        r
    }

    fn walk_all_ways(data: &[u8]) -> Result<TarSummary, TarError> {
        let whole = walk(data, data.len().max(1));
        for chunk in [1, 7, 511, 512, 513, 4096] {
            assert_eq!(walk(data, chunk), whole, "chunk {chunk}");
        }
        whole
    }

    fn tmpfile(tag: &str, data: &[u8]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("dac-tar-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(tag);
        std::fs::write(&p, data).unwrap();
        p
    }

    fn index(tag: &str, data: &[u8]) -> Result<Vec<TarEntry>, TarError> {
        let p = tmpfile(tag, data);
        let r = index_file(&p);
        std::fs::remove_file(&p).unwrap();
        r
    }

    fn sample() -> Vec<u8> {
        TarBuilder::new()
            .dir("etc/")
            .file("etc/hostname", b"box\n")
            .symlink("etc/link", "hostname")
            .hardlink("etc/hard", "etc/hostname")
            .file("big", &vec![b'x'; 1500])
            .file("empty", b"")
            .finish()
    }

    #[test]
    fn walker_accepts_simple_archive() {
        let t = sample();
        let s = walk_all_ways(&t).unwrap();
        assert_eq!(s.entries, 6);
        assert_eq!(s.end_offset, t.len() as u64);
        assert_eq!(s.trailing_zero_bytes, 0);
    }

    #[test]
    fn empty_archive() {
        let s = walk_all_ways(&[0u8; 1024]).unwrap();
        assert_eq!(s.entries, 0);
        assert_eq!(s.end_offset, 1024);
        assert_eq!(index("empty", &[0u8; 1024]).unwrap(), vec![]);
    }

    #[test]
    fn trailing_zeros_are_counted() {
        let mut t = sample();
        let end = t.len() as u64;
        t.extend_from_slice(&vec![0u8; 10240 - (t.len() % 10240)]);
        t.extend_from_slice(&[0u8; 3]);
        let s = walk_all_ways(&t).unwrap();
        assert_eq!(s.end_offset, end);
        assert_eq!(s.trailing_zero_bytes, t.len() as u64 - end);
        assert_eq!(index("padded", &t).unwrap().len(), 6);
    }

    #[test]
    fn daemon_error_after_the_archive_is_reported_with_quote() {
        let mut t = sample();
        let end = t.len() as u64;
        t.extend_from_slice(b"{\"errorDetail\":{\"message\":\"write /x: no space left\"}}\n");
        let e = walk_all_ways(&t).unwrap_err();
        assert_eq!(e.offset, end);
        assert!(e.detail.contains("errorDetail"), "{}", e.detail);
        assert!(e.detail.contains("no space left\\\"}}\\n"), "{}", e.detail);
        let e2 = index("tail", &t).unwrap_err();
        assert_eq!(e2.offset, end);
        assert!(e2.detail.contains("no space left"), "{}", e2.detail);
    }

    #[test]
    fn quote_is_limited_to_200_bytes() {
        let mut t = sample();
        t.extend_from_slice(&[b'A'; 1000]);
        let e = walk(&t, 1).unwrap_err();
        assert!(e.detail.contains(&"A".repeat(200)));
        assert!(!e.detail.contains(&"A".repeat(201)));
    }

    #[test]
    fn daemon_error_instead_of_next_header() {
        // Entries complete, then the JSON error where a header should be.
        let mut t = TarBuilder::new().file("a", b"1").finish();
        t.truncate(t.len() - 1024);
        let end = t.len() as u64;
        t.extend_from_slice(b"{\"errorDetail\":{\"message\":\"boom\"},\"error\":\"boom\"}\n");
        let e = walk_all_ways(&t).unwrap_err();
        assert_eq!(e.offset, end);
        assert!(e.detail.contains("inside a header block"), "{}", e.detail);
        assert!(e.detail.contains("errorDetail"), "{}", e.detail);
        let e = index("jsonhdr", &t).unwrap_err();
        assert_eq!(e.offset, end);
        assert!(e.detail.contains("errorDetail"), "{}", e.detail);
        // The same with enough text to fill a block: a checksum error quoting it.
        let mut t2 = t.clone();
        t2.extend_from_slice(&[b' '; 600]);
        let e = walk_all_ways(&t2).unwrap_err();
        assert_eq!(e.offset, end);
        assert!(e.detail.contains("errorDetail"), "{}", e.detail);
    }

    #[test]
    fn truncation_points() {
        let t = sample();
        // Every cut must be an error, except cuts that leave a complete archive.
        for cut in 0..t.len() {
            let r = walk(&t[..cut], 100);
            assert!(r.is_err(), "cut at {cut} accepted");
            let e = r.unwrap_err();
            assert!(e.offset <= cut as u64, "cut {cut}: offset {}", e.offset);
            if cut % 97 == 0 {
                assert!(index("cut", &t[..cut]).is_err(), "index cut {cut}");
            }
        }
    }

    #[test]
    fn truncated_inside_data_points_at_entry_start() {
        let t = sample();
        // "big" header is at 5*512; its data starts at 6*512.
        let e = walk(&t[..6 * 512 + 100], 4096).unwrap_err();
        assert_eq!(e.offset, 5 * 512);
        assert!(e.detail.contains("inside entry 4"), "{}", e.detail);
        let e = index("cutdata", &t[..6 * 512 + 100]).unwrap_err();
        assert_eq!(e.offset, 5 * 512);
    }

    #[test]
    fn single_zero_block() {
        let mut t = sample();
        t.truncate(t.len() - 512);
        let e = walk_all_ways(&t).unwrap_err();
        assert!(e.detail.contains("single zero block"), "{}", e.detail);
        assert!(index("one-zero", &t)
            .unwrap_err()
            .detail
            .contains("single zero"));
        // A lone zero block between entries.
        let mut u = TarBuilder::new().file("a", b"1").out.clone();
        u.extend_from_slice(&[0u8; 512]);
        u.extend(TarBuilder::new().file("b", b"2").finish());
        let e = walk_all_ways(&u).unwrap_err();
        assert_eq!(e.offset, 1024);
        assert!(index("lone-zero", &u).is_err());
    }

    #[test]
    fn checksum_errors() {
        let mut t = sample();
        t[512 + 10] ^= 1;
        let e = walk_all_ways(&t).unwrap_err();
        assert_eq!(e.offset, 512);
        assert!(e.detail.contains("checksum mismatch"), "{}", e.detail);
        assert_eq!(index("cksum", &t).unwrap_err().offset, 512);
        let mut t = sample();
        t[148] = b'9';
        assert!(walk_all_ways(&t)
            .unwrap_err()
            .detail
            .contains("checksum field"));
    }

    #[test]
    fn signed_checksum_is_accepted() {
        // Some old tars computed the checksum with signed chars.
        let mut h = header("\u{e9}", b'0', 0, "");
        h[148..156].copy_from_slice(b"        ");
        let signed: i64 = h.iter().map(|&b| i64::from(b as i8)).sum();
        h[148..155].copy_from_slice(format!("{signed:06o}\0").as_bytes());
        let mut t = h.to_vec();
        t.extend_from_slice(&[0u8; 1024]);
        assert_eq!(walk_all_ways(&t).unwrap().entries, 1);
    }

    #[test]
    fn bad_size_fields() {
        let mut h = header("a", b'0', 0, "");
        h[124..136].copy_from_slice(b"00000000008\0");
        set_checksum(&mut h);
        let mut t = h.to_vec();
        t.extend_from_slice(&[0u8; 1024]);
        assert!(walk(&t, 512).unwrap_err().detail.contains("size"));
        // Negative base-256.
        h[124..136].copy_from_slice(&[0xff; 12]);
        set_checksum(&mut h);
        t[..512].copy_from_slice(&h);
        assert!(walk(&t, 512).unwrap_err().detail.contains("size"));
        assert!(index("negsize", &t).is_err());
        // Base-256 size larger than the file: walker waits for data, index reports.
        h[124..136].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0]);
        set_checksum(&mut h);
        t[..512].copy_from_slice(&h);
        assert!(walk(&t, 512).is_err());
        let e = index("bigsize", &t).unwrap_err();
        assert!(e.detail.contains("needs 4096 data bytes"), "{}", e.detail);
        // Maximum base-256 value: no overflow anywhere.
        h[124..136].copy_from_slice(&[
            0x80, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ]);
        set_checksum(&mut h);
        t[..512].copy_from_slice(&h);
        assert!(walk(&t, 512).is_err());
        assert!(index("maxsize", &t).is_err());
    }

    #[test]
    fn base256_size_is_read() {
        let mut h = header("b256", b'0', 0, "");
        h[124..136].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x00]);
        set_checksum(&mut h);
        let mut t = h.to_vec();
        t.extend_from_slice(&[7u8; 512]);
        t.extend_from_slice(&[0u8; 1024]);
        assert_eq!(walk_all_ways(&t).unwrap().entries, 1);
        let idx = index("b256", &t).unwrap();
        assert_eq!(idx[0].size, 512);
        assert_eq!(idx[0].data_offset, 512);
    }

    #[test]
    fn index_lists_entries() {
        let t = sample();
        let idx = index("sample", &t).unwrap();
        let names: Vec<_> = idx.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "etc/",
                "etc/hostname",
                "etc/link",
                "etc/hard",
                "big",
                "empty"
            ]
        );
        assert_eq!(idx[1].size, 4);
        assert_eq!(idx[1].data_offset, 1024);
        assert_eq!(&t[1024..1028], b"box\n");
        assert_eq!(idx[2].kind, b'2');
        assert_eq!(idx[2].link, "hostname");
        assert_eq!(idx[3].kind, b'1');
        assert_eq!(idx[3].link, "etc/hostname");
        assert_eq!(idx[4].size, 1500);
        assert_eq!(idx[4].data_offset, 6 * 512);
    }

    #[test]
    fn pax_path_linkpath_size() {
        let long = "d/".repeat(80) + "file";
        let data = vec![b'p'; 700];
        let mut b = TarBuilder::new();
        b.pax(&[("path", long.as_bytes()), ("mtime", b"1.5")]);
        b.file("short", &data);
        b.pax(&[("linkpath", b"/very/long/target"), ("path", b"sym")]);
        b.symlink("s", "t");
        // PAX size overrides the header size (header says 0).
        b.pax(&[("size", b"10")]);
        b.raw(&header("sized", b'0', 0, ""));
        b.raw(&[b'z'; 512]);
        let t = b.finish();
        assert_eq!(walk_all_ways(&t).unwrap().entries, 3);
        let idx = index("pax", &t).unwrap();
        assert_eq!(idx.len(), 3);
        assert_eq!(idx[0].name, long);
        assert_eq!(idx[0].size, 700);
        assert_eq!(idx[1].name, "sym");
        assert_eq!(idx[1].link, "/very/long/target");
        assert_eq!(idx[2].name, "sized");
        assert_eq!(idx[2].size, 10);
    }

    #[test]
    fn gnu_long_name_and_link() {
        let long = "x".repeat(300);
        let mut b = TarBuilder::new();
        b.gnu_long(b'L', &long);
        b.gnu_long(b'K', &("y".repeat(150)));
        b.hardlink("short", "t");
        b.file("after", b"1");
        let t = b.finish();
        assert_eq!(walk_all_ways(&t).unwrap().entries, 2);
        let idx = index("gnu", &t).unwrap();
        assert_eq!(idx[0].name, long);
        assert_eq!(idx[0].link, "y".repeat(150));
        assert_eq!(idx[1].name, "after");
    }

    #[test]
    fn ustar_prefix_is_joined() {
        let mut h = header("name", b'0', 0, "");
        h[345..351].copy_from_slice(b"prefix");
        set_checksum(&mut h);
        let mut t = h.to_vec();
        t.extend_from_slice(&[0u8; 1024]);
        assert_eq!(index("prefix", &t).unwrap()[0].name, "prefix/name");
    }

    #[test]
    fn bad_pax_records() {
        for bad in [
            &b"5 a=b\n"[..],
            b"x a=b\n",
            b"7 ab\n\n",
            b"99 a=b\n",
            b"6 =bb\n",
            b"7 a=bb ",
            b"12 size=-1\n",
            b"12 size=1x\n",
            b"29 size=99999999999999999999\n",
            b"1 ",
        ] {
            let mut t = TarBuilder::new();
            t.entry("PaxHeaders/x", b'x', bad, "");
            t.file("f", b"");
            let t = t.finish();
            let e = walk_all_ways(&t).unwrap_err();
            assert!(e.detail.contains("PAX"), "{:?}: {}", bad, e.detail);
            assert_eq!(e.offset, 0);
            assert!(index("badpax", &t).is_err());
        }
        // Global records are checked for form but not applied.
        let mut t = TarBuilder::new();
        t.entry("g", b'g', b"13 size=9999\n", "");
        t.file("f", b"abc");
        let t = t.finish();
        assert_eq!(index("gpax", &t).unwrap()[0].size, 3);
    }

    #[test]
    fn dangling_extension_header() {
        let t = TarBuilder::new().pax(&[("path", b"x")]).finish();
        assert!(walk_all_ways(&t)
            .unwrap_err()
            .detail
            .contains("not followed"));
        assert!(index("dangling", &t)
            .unwrap_err()
            .detail
            .contains("not followed"));
        let mut t = TarBuilder::new();
        t.entry("L", b'L', &vec![b'a'; 2 << 20], "");
        let t = t.finish();
        assert!(walk(&t, 65536).unwrap_err().detail.contains("too large"));
        assert!(index("hugeext", &t)
            .unwrap_err()
            .detail
            .contains("too large"));
    }

    #[test]
    fn header_only_types_skip_size() {
        // A directory with a nonzero size field carries no data (as Go reads it).
        let mut t = header("d/", b'5', 4096, "").to_vec();
        t.extend(TarBuilder::new().file("f", b"x").finish());
        assert_eq!(walk_all_ways(&t).unwrap().entries, 2);
        let idx = index("dirsize", &t).unwrap();
        assert_eq!(idx[0].size, 0);
        assert_eq!(idx[1].data_offset, 1024);
    }

    #[test]
    fn gnu_sparse_extension_blocks() {
        let mut h = header("sparse", b'S', 512, "");
        h[257..265].copy_from_slice(b"ustar  \0");
        h[482] = 1;
        set_checksum(&mut h);
        let mut ext1 = [0u8; 512];
        ext1[504] = 1;
        let ext2 = [0u8; 512];
        let mut t = h.to_vec();
        t.extend_from_slice(&ext1);
        t.extend_from_slice(&ext2);
        t.extend_from_slice(&[9u8; 512]);
        t.extend(TarBuilder::new().file("next", b"n").finish());
        assert_eq!(walk_all_ways(&t).unwrap().entries, 2);
        let idx = index("sparse", &t).unwrap();
        assert_eq!(idx[0].data_offset, 1536);
        assert_eq!(idx[1].name, "next");
    }

    #[test]
    fn v7_regular_flag_and_missing_file() {
        let t = TarBuilder::new().entry("v7", 0, b"abc", "").finish();
        assert_eq!(index("v7", &t).unwrap()[0].kind, b'0');
        let e = index_file(Path::new("/nonexistent/dac/x.tar")).unwrap_err();
        assert!(e.detail.contains("cannot open"));
    }

    #[test]
    fn error_is_sticky_and_tail_quote_grows() {
        let mut t = sample();
        t.extend_from_slice(b"{\"err");
        let mut w = TarWalker::new();
        assert!(w.push(&t).is_err());
        let e = w.push(b"orDetail\"}").unwrap_err();
        assert!(e.detail.contains("{\\\"errorDetail\\\"}"), "{}", e.detail);
        assert_eq!(w.finish().unwrap_err(), e);
    }

    fn system_tar(args: &[&str], dir: &std::path::Path) -> Option<Vec<u8>> {
        let out = std::process::Command::new("tar")
            .args(args)
            .current_dir(dir)
            .output()
            .ok()?;
        out.status.success().then_some(out.stdout)
    }

    #[test]
    fn archives_written_by_system_tar() {
        let dir = std::env::temp_dir().join(format!("dac-systar-{}", std::process::id()));
        let src = dir.join("src");
        let deep = src
            .join("a".repeat(60))
            .join("b".repeat(60))
            .join("c".repeat(60));
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("long-file-name-".repeat(8)), vec![1u8; 3000]).unwrap();
        std::fs::write(src.join("small"), b"hi").unwrap();
        std::os::unix::fs::symlink("small", src.join("sym")).unwrap();
        std::fs::hard_link(src.join("small"), src.join("hard")).unwrap();
        let mut ran = 0;
        for format in ["gnu", "pax", "ustar", "v7"] {
            // ustar and v7 cannot store the long name: leave it out for them.
            let exclude = match format {
                "gnu" | "pax" => "--exclude=nothing",
                _ => "--exclude=aaaa*",
            };
            let args = [
                "-c",
                "-f",
                "-",
                &format!("--format={format}"),
                exclude,
                "src",
            ];
            let Some(t) = system_tar(&args, &dir) else {
                println!("system tar could not write format {format}; skipping it");
                continue;
            };
            ran += 1;
            let s = walk_all_ways(&t).unwrap();
            assert!(s.trailing_zero_bytes > 0, "GNU tar pads to 10240 bytes");
            let p = tmpfile(&format!("sys-{format}"), &t);
            let idx = index_file(&p).unwrap();
            std::fs::remove_file(&p).unwrap();
            assert_eq!(idx.len() as u64, s.entries);
            let long = idx.iter().find(|e| e.name.ends_with("long-file-name-"));
            match format {
                "gnu" | "pax" => {
                    let e = long.unwrap();
                    assert_eq!(e.size, 3000);
                    let off = e.data_offset as usize;
                    assert_eq!(&t[off..off + 3000], &[1u8; 3000][..]);
                }
                _ => assert!(long.is_none()),
            }
            let hard = idx
                .iter()
                .find(|e| e.name == "src/hard" || e.name == "src/small");
            assert!(hard.is_some());
            let sym = idx.iter().find(|e| e.name == "src/sym").unwrap();
            assert_eq!((sym.kind, sym.link.as_str()), (b'2', "small"));
        }
        if ran == 0 {
            println!("system tar not available; skipped");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Real tars (export, save): DAC_TAR_FILES=path[:path...]; walker and index agree.
    #[test]
    fn real_tars_from_environment() {
        let Ok(list) = std::env::var("DAC_TAR_FILES") else {
            println!("DAC_TAR_FILES not set; skipping real tars");
            return;
        };
        for p in list.split(':').filter(|p| !p.is_empty()) {
            let data = std::fs::read(p).unwrap();
            let s = walk(&data, 65536).unwrap();
            let idx = index_file(Path::new(p)).unwrap();
            println!("{p}: {s:?}");
            assert_eq!(s.entries, idx.len() as u64);
        }
    }

    /// Fuzz regression (tar_index, crash-11bdb7e3): a PAX header followed by a partial
    /// header block; the walker blamed the partial block, index_file the PAX header.
    #[test]
    fn fuzz_regression_pax_then_partial_header_offsets_agree() {
        let mut b = TarBuilder::new();
        b.pax(&[("mtime", b"1796225722.636830728")]);
        b.raw(&header("src/", b'5', 0, "")[..420]);
        let t = b.out.clone();
        let w = walk_all_ways(&t).unwrap_err();
        let i = index("fuzz-pax-partial", &t).unwrap_err();
        assert_eq!(w.offset, 0);
        assert_eq!(i.offset, 0);
    }

    #[test]
    fn last_bytes_quote_keeps_order_across_pushes() {
        let mut w = TarWalker::new();
        let data: Vec<u8> = (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect();
        for c in data.chunks(37) {
            // Not a tar (the first block fails); the quote is kept all the same.
            let _ = w.push(c);
        }
        assert_eq!(w.recent_bytes(), &data[800..]);
        let mut w = TarWalker::new();
        w.push(b"abc").unwrap();
        assert_eq!(w.recent_bytes(), b"abc");
    }
}
