//! gzip (RFC 1952) and DEFLATE (RFC 1951) decoder, written here so that verifying the
//! compressed layers of a containerd image save needs no extra crate.
//!
//! Memory is bounded whatever the input: a 64 KiB input buffer and a 64 KiB output
//! buffer that keeps the 32 KiB history DEFLATE back-references may reach.
//! Output is handed to the sink in pieces as it is produced, so a layer of any size
//! can be hashed without holding it.

use std::io::Read;

/// True if the bytes start with the gzip magic.
pub fn is_gzip(first_bytes: &[u8]) -> bool {
    first_bytes.starts_with(&[0x1f, 0x8b])
}

/// True if the bytes start with the zstd frame magic (0xFD2FB528, little-endian).
pub fn is_zstd(first_bytes: &[u8]) -> bool {
    first_bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
}

/// Decompresses a gzip stream of one or more members, passing the output to `sink`.
/// Returns the number of decompressed bytes. Every member's CRC-32 and length are
/// checked; anything after the last member other than another member is an error.
pub fn gunzip(input: &mut dyn Read, sink: &mut dyn FnMut(&[u8])) -> Result<u64, String> {
    let mut inp = Input::new(input);
    let mut out = Window::new();
    let mut fixed: Option<(Huffman, Huffman)> = None;
    let mut total: u64 = 0;
    let mut members: u64 = 0;
    loop {
        let member_start = inp.position();
        let first = match inp.byte()? {
            Some(b) => b,
            None if members > 0 => return Ok(total),
            None => return Err("gzip: empty input".to_string()),
        };
        if first != 0x1f {
            return Err(if members == 0 {
                "gzip: not a gzip stream (bad magic)".to_string()
            } else {
                format!("gzip: trailing data that is not a gzip member at compressed byte {member_start}")
            });
        }
        read_header(&mut inp, first)
            .map_err(|e| format!("gzip: {e} (member at byte {member_start})"))?;
        out.reset();
        inflate(&mut inp, &mut out, &mut fixed, sink).map_err(|e| {
            format!(
                "gzip: {e} at compressed byte {} (member at byte {member_start})",
                inp.position()
            )
        })?;
        out.flush(sink);
        inp.align();
        let mut trailer = [0u8; 8];
        for b in trailer.iter_mut() {
            *b = inp.byte()?.ok_or_else(|| {
                format!("gzip: stream ends inside the trailer of the member at byte {member_start}")
            })?;
        }
        let crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        let isize = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
        if crc != out.crc {
            return Err(format!(
                "gzip: CRC-32 mismatch in member at byte {member_start}: trailer {crc:08x}, data {:08x}",
                out.crc
            ));
        }
        if u64::from(isize) != out.total & 0xffff_ffff {
            return Err(format!(
                "gzip: length mismatch in member at byte {member_start}: trailer {isize}, data {}",
                out.total
            ));
        }
        total = total.saturating_add(out.total);
        members += 1;
    }
}

fn read_header(inp: &mut Input, first: u8) -> Result<(), String> {
    let mut crc = Crc::new();
    crc.update(&[first]);
    let mut fixed = [0u8; 9];
    for b in fixed.iter_mut() {
        *b = inp.byte()?.ok_or("stream ends inside the header")?;
    }
    crc.update(&fixed);
    let [id2, cm, flg, ..] = fixed;
    if id2 != 0x8b {
        return Err("bad magic".to_string());
    }
    if cm != 8 {
        return Err(format!("unsupported compression method {cm}"));
    }
    if flg & 0xe0 != 0 {
        return Err(format!("reserved header flags set ({flg:#04x})"));
    }
    let mut next = |inp: &mut Input| -> Result<u8, String> {
        let b = inp.byte()?.ok_or("stream ends inside the header")?;
        crc.update(&[b]);
        Ok(b)
    };
    if flg & 0x04 != 0 {
        let lo = next(inp)?;
        let hi = next(inp)?;
        let xlen = u16::from_le_bytes([lo, hi]);
        for _ in 0..xlen {
            next(inp)?;
        }
    }
    // FNAME then FCOMMENT, both zero-terminated.
    for flag in [0x08, 0x10] {
        if flg & flag != 0 {
            while next(inp)? != 0 {}
        }
    }
    if flg & 0x02 != 0 {
        let want = (crc.value() & 0xffff) as u16;
        let lo = inp.byte()?.ok_or("stream ends inside the header")?;
        let hi = inp.byte()?.ok_or("stream ends inside the header")?;
        let got = u16::from_le_bytes([lo, hi]);
        if got != want {
            return Err(format!(
                "header CRC mismatch: stored {got:04x}, computed {want:04x}"
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Input with a bit buffer.

const IN_BUF: usize = 64 * 1024;

struct Input<'a> {
    r: &'a mut dyn Read,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    /// Bytes moved out of `buf` so far.
    taken: u64,
    bitbuf: u64,
    bitcnt: u32,
}

impl<'a> Input<'a> {
    fn new(r: &'a mut dyn Read) -> Input<'a> {
        Input {
            r,
            buf: vec![0; IN_BUF],
            pos: 0,
            len: 0,
            taken: 0,
            bitbuf: 0,
            bitcnt: 0,
        }
    }

    /// Offset in the compressed stream of the next unread whole byte.
    fn position(&self) -> u64 {
        self.taken - u64::from(self.bitcnt / 8)
    }

    fn raw_byte(&mut self) -> Result<Option<u8>, String> {
        if self.pos >= self.len {
            loop {
                match self.r.read(&mut self.buf) {
                    Ok(0) => return Ok(None),
                    Ok(n) => {
                        self.pos = 0;
                        self.len = n.min(self.buf.len());
                        break;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(format!("gzip: read error: {e}")),
                }
            }
        }
        let b = self.buf.get(self.pos).copied();
        self.pos += 1;
        self.taken += 1;
        Ok(b)
    }

    /// Fills the bit buffer to at least 57 bits, or as far as the input goes.
    fn refill(&mut self) -> Result<(), String> {
        while self.bitcnt <= 56 {
            // Fast path inside the buffer, without the per-byte call.
            if self.pos < self.len {
                if let Some(&b) = self.buf.get(self.pos) {
                    self.pos += 1;
                    self.taken += 1;
                    self.bitbuf |= u64::from(b) << self.bitcnt;
                    self.bitcnt += 8;
                    continue;
                }
            }
            match self.raw_byte()? {
                Some(b) => {
                    self.bitbuf |= u64::from(b) << self.bitcnt;
                    self.bitcnt += 8;
                }
                None => break,
            }
        }
        Ok(())
    }

    fn bits(&mut self, n: u32) -> Result<u32, String> {
        if n == 0 {
            return Ok(0);
        }
        if self.bitcnt < n {
            self.refill()?;
            if self.bitcnt < n {
                return Err("unexpected end of compressed data".to_string());
            }
        }
        let v = (self.bitbuf & ((1u64 << n) - 1)) as u32;
        self.consume(n);
        Ok(v)
    }

    fn consume(&mut self, n: u32) {
        self.bitbuf >>= n;
        self.bitcnt -= n;
    }

    /// Drops the bits up to the next byte boundary.
    fn align(&mut self) {
        let drop = self.bitcnt % 8;
        self.consume(drop);
    }

    /// Next whole byte; only valid at a byte boundary (bits already buffered come first).
    fn byte(&mut self) -> Result<Option<u8>, String> {
        if self.bitcnt >= 8 {
            let b = (self.bitbuf & 0xff) as u8;
            self.consume(8);
            return Ok(Some(b));
        }
        self.raw_byte()
    }
}

// ---------------------------------------------------------------------------
// Output window.

const WSIZE: usize = 32 * 1024;
const OUT_LIMIT: usize = 2 * WSIZE;
const OUT_BUF: usize = OUT_LIMIT + 258;

struct Window {
    buf: Vec<u8>,
    pos: usize,
    flushed: usize,
    /// Bytes produced by the current member.
    total: u64,
    crc: u32,
}

impl Window {
    fn new() -> Window {
        Window {
            buf: vec![0; OUT_BUF],
            pos: 0,
            flushed: 0,
            total: 0,
            crc: 0,
        }
    }

    fn reset(&mut self) {
        self.pos = 0;
        self.flushed = 0;
        self.total = 0;
        self.crc = 0;
    }

    fn flush(&mut self, sink: &mut dyn FnMut(&[u8])) {
        if let Some(chunk) = self.buf.get(self.flushed..self.pos) {
            if !chunk.is_empty() {
                self.crc = crc32_update(self.crc, chunk);
                sink(chunk);
            }
        }
        self.flushed = self.pos;
    }

    /// Makes room for at least 258 more bytes while keeping 32 KiB of history.
    fn ensure_room(&mut self, sink: &mut dyn FnMut(&[u8])) {
        if self.pos >= OUT_LIMIT {
            self.flush(sink);
            let keep = self.pos - WSIZE;
            self.buf.copy_within(keep..self.pos, 0);
            self.pos = WSIZE;
            self.flushed = WSIZE;
        }
    }

    fn literal(&mut self, b: u8) -> Result<(), String> {
        let slot = self
            .buf
            .get_mut(self.pos)
            .ok_or("internal: output buffer overflow")?;
        *slot = b;
        self.pos += 1;
        self.total += 1;
        Ok(())
    }

    fn copy_match(&mut self, dist: usize, len: usize) -> Result<(), String> {
        if dist == 0 || dist as u64 > self.total {
            return Err(format!(
                "invalid distance {dist} (only {} bytes of output so far)",
                self.total
            ));
        }
        let from = self
            .pos
            .checked_sub(dist)
            .ok_or("internal: distance outside the window")?;
        if self.pos + len > self.buf.len() {
            return Err("internal: output buffer overflow".to_string());
        }
        if dist >= len {
            self.buf.copy_within(from..from + len, self.pos);
        } else {
            // Overlapping copy: each byte may be one just written.
            for i in 0..len {
                let b = self.buf.get(from + i).copied().unwrap_or(0);
                if let Some(slot) = self.buf.get_mut(self.pos + i) {
                    *slot = b;
                }
            }
        }
        self.pos += len;
        self.total += len as u64;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Huffman decoding (canonical codes, RFC 1951 3.2.2).

const MAXBITS: usize = 15;
const FAST_BITS: u32 = 10;
const FAST_SIZE: usize = 1 << FAST_BITS;

struct Huffman {
    count: [u16; MAXBITS + 1],
    symbol: [u16; 288],
    /// Indexed by the next FAST_BITS input bits: `symbol << 4 | length`, 0 = use slow path.
    fast: Vec<u16>,
}

impl Huffman {
    /// Builds the decoder. Returns it and the number of unused codes (0 = complete).
    fn new(lengths: &[u8]) -> Result<(Huffman, i32), String> {
        let mut h = Huffman {
            count: [0; MAXBITS + 1],
            symbol: [0; 288],
            fast: vec![0; FAST_SIZE],
        };
        if lengths.len() > h.symbol.len() {
            return Err("internal: too many code lengths".to_string());
        }
        for &l in lengths {
            let slot = h
                .count
                .get_mut(usize::from(l))
                .ok_or("code length over 15")?;
            *slot += 1;
        }
        if usize::from(h.count[0]) == lengths.len() {
            return Ok((h, 0));
        }
        let mut left: i32 = 1;
        for len in 1..=MAXBITS {
            left <<= 1;
            left -= i32::from(h.count[len]);
            if left < 0 {
                return Err("over-subscribed Huffman code".to_string());
            }
        }
        let mut offs = [0u16; MAXBITS + 1];
        for len in 1..MAXBITS {
            offs[len + 1] = offs[len] + h.count[len];
        }
        let mut next_code = [0u32; MAXBITS + 1];
        let mut code = 0u32;
        for (slot, &n) in next_code.iter_mut().zip(h.count.iter()).skip(1) {
            *slot = code;
            code = (code + u32::from(n)) << 1;
        }
        for (sym, &l) in lengths.iter().enumerate() {
            if l == 0 {
                continue;
            }
            let len = usize::from(l);
            let o = offs.get_mut(len).ok_or("code length over 15")?;
            if let Some(slot) = h.symbol.get_mut(usize::from(*o)) {
                *slot = sym as u16;
            }
            *o += 1;
            let c = next_code.get_mut(len).ok_or("code length over 15")?;
            let this = *c;
            *c += 1;
            if u32::from(l) <= FAST_BITS {
                let rev = reverse(this, u32::from(l));
                let step = 1usize << l;
                let mut idx = rev as usize;
                let entry = ((sym as u16) << 4) | u16::from(l);
                while idx < FAST_SIZE {
                    if let Some(slot) = h.fast.get_mut(idx) {
                        *slot = entry;
                    }
                    idx += step;
                }
            }
        }
        Ok((h, left))
    }

    fn decode(&self, inp: &mut Input) -> Result<u16, String> {
        if inp.bitcnt < MAXBITS as u32 {
            inp.refill()?;
        }
        let avail = inp.bitcnt;
        let idx = (inp.bitbuf as usize) & (FAST_SIZE - 1);
        let e = self.fast.get(idx).copied().unwrap_or(0);
        if e != 0 {
            let len = u32::from(e & 15);
            if len > avail {
                return Err("unexpected end of compressed data".to_string());
            }
            inp.consume(len);
            return Ok(e >> 4);
        }
        // Codes longer than FAST_BITS, or bit patterns an incomplete code does not use.
        let mut code: i32 = 0;
        let mut first: i32 = 0;
        let mut index: i32 = 0;
        for len in 1..=MAXBITS {
            if len as u32 > avail {
                return Err("unexpected end of compressed data".to_string());
            }
            code |= ((inp.bitbuf >> (len - 1)) & 1) as i32;
            let count = i32::from(self.count[len]);
            if code - first < count {
                inp.consume(len as u32);
                let at = usize::try_from(index + code - first).unwrap_or(usize::MAX);
                return self
                    .symbol
                    .get(at)
                    .copied()
                    .ok_or_else(|| "internal: bad symbol index".to_string());
            }
            index += count;
            first += count;
            first <<= 1;
            code <<= 1;
        }
        Err("invalid Huffman code".to_string())
    }
}

fn reverse(code: u32, len: u32) -> u32 {
    let mut r = 0;
    let mut c = code;
    for _ in 0..len {
        r = (r << 1) | (c & 1);
        c >>= 1;
    }
    r
}

const LEN_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEN_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];
const CLEN_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

fn fixed_tables() -> Result<(Huffman, Huffman), String> {
    let mut lengths = [0u8; 288];
    for (i, l) in lengths.iter_mut().enumerate() {
        *l = match i {
            0..=143 => 8,
            144..=255 => 9,
            256..=279 => 7,
            _ => 8,
        };
    }
    let (lit, _) = Huffman::new(&lengths)?;
    let (dist, _) = Huffman::new(&[5u8; 30])?;
    Ok((lit, dist))
}

fn dynamic_tables(inp: &mut Input) -> Result<(Huffman, Huffman), String> {
    let nlen = inp.bits(5)? as usize + 257;
    let ndist = inp.bits(5)? as usize + 1;
    let ncode = inp.bits(4)? as usize + 4;
    if nlen > 286 || ndist > 30 {
        return Err(format!(
            "bad dynamic block counts ({nlen} lengths, {ndist} distances)"
        ));
    }
    let mut clen = [0u8; 19];
    for &i in CLEN_ORDER.iter().take(ncode) {
        if let Some(slot) = clen.get_mut(i) {
            *slot = inp.bits(3)? as u8;
        }
    }
    let (lencode, left) = Huffman::new(&clen)?;
    if left != 0 {
        return Err("incomplete code-length code".to_string());
    }
    let mut lengths = [0u8; 286 + 30];
    let total = nlen + ndist;
    let mut i = 0;
    while i < total {
        let sym = lencode.decode(inp)?;
        let (value, repeat) = match sym {
            0..=15 => (sym as u8, 1),
            16 => {
                let prev = i
                    .checked_sub(1)
                    .and_then(|p| lengths.get(p).copied())
                    .ok_or("repeat of a code length with no previous length")?;
                (prev, 3 + inp.bits(2)? as usize)
            }
            17 => (0, 3 + inp.bits(3)? as usize),
            18 => (0, 11 + inp.bits(7)? as usize),
            _ => return Err("invalid code-length symbol".to_string()),
        };
        if i + repeat > total {
            return Err("code lengths overflow the declared counts".to_string());
        }
        for slot in lengths.iter_mut().skip(i).take(repeat) {
            *slot = value;
        }
        i += repeat;
    }
    let lit_lengths = lengths.get(..nlen).ok_or("internal: lengths")?;
    if lit_lengths.get(256).copied().unwrap_or(0) == 0 {
        return Err("dynamic block has no end-of-block code".to_string());
    }
    let (lit, left) = Huffman::new(lit_lengths)?;
    // As zlib and puff: an incomplete code is allowed only as a single 1-bit code.
    if left > 0 && nlen != usize::from(lit.count[0]) + usize::from(lit.count[1]) {
        return Err("incomplete literal/length code".to_string());
    }
    let dist_lengths = lengths.get(nlen..total).ok_or("internal: lengths")?;
    let (dist, left) = Huffman::new(dist_lengths)?;
    if left > 0 && ndist != usize::from(dist.count[0]) + usize::from(dist.count[1]) {
        return Err("incomplete distance code".to_string());
    }
    Ok((lit, dist))
}

fn inflate(
    inp: &mut Input,
    out: &mut Window,
    fixed: &mut Option<(Huffman, Huffman)>,
    sink: &mut dyn FnMut(&[u8]),
) -> Result<(), String> {
    loop {
        let last = inp.bits(1)?;
        match inp.bits(2)? {
            0 => stored(inp, out, sink)?,
            1 => {
                if fixed.is_none() {
                    *fixed = Some(fixed_tables()?);
                }
                let (lit, dist) = fixed.as_ref().ok_or("internal: fixed tables")?;
                codes(inp, out, lit, dist, sink)?;
            }
            2 => {
                let (lit, dist) = dynamic_tables(inp)?;
                codes(inp, out, &lit, &dist, sink)?;
            }
            _ => return Err("invalid block type 3".to_string()),
        }
        if last == 1 {
            return Ok(());
        }
    }
}

fn stored(inp: &mut Input, out: &mut Window, sink: &mut dyn FnMut(&[u8])) -> Result<(), String> {
    inp.align();
    let mut hdr = [0u8; 4];
    for b in hdr.iter_mut() {
        *b = inp.byte()?.ok_or("unexpected end of compressed data")?;
    }
    let len = u16::from_le_bytes([hdr[0], hdr[1]]);
    let nlen = u16::from_le_bytes([hdr[2], hdr[3]]);
    if len != !nlen {
        return Err(format!(
            "stored block length {len} does not match its complement"
        ));
    }
    for _ in 0..len {
        out.ensure_room(sink);
        let b = inp.byte()?.ok_or("unexpected end of compressed data")?;
        out.literal(b)?;
    }
    Ok(())
}

fn codes(
    inp: &mut Input,
    out: &mut Window,
    lit: &Huffman,
    dist: &Huffman,
    sink: &mut dyn FnMut(&[u8]),
) -> Result<(), String> {
    loop {
        out.ensure_room(sink);
        let sym = lit.decode(inp)?;
        if sym < 256 {
            out.literal(sym as u8)?;
            continue;
        }
        if sym == 256 {
            return Ok(());
        }
        let li = usize::from(sym - 257);
        let (base, extra) = match (LEN_BASE.get(li), LEN_EXTRA.get(li)) {
            (Some(&b), Some(&e)) => (b, e),
            _ => return Err(format!("invalid length symbol {sym}")),
        };
        let len = usize::from(base) + inp.bits(u32::from(extra))? as usize;
        let dsym = usize::from(dist.decode(inp)?);
        let (dbase, dextra) = match (DIST_BASE.get(dsym), DIST_EXTRA.get(dsym)) {
            (Some(&b), Some(&e)) => (b, e),
            _ => return Err(format!("invalid distance symbol {dsym}")),
        };
        let d = usize::from(dbase) + inp.bits(u32::from(dextra))? as usize;
        out.copy_match(d, len)?;
    }
}

// ---------------------------------------------------------------------------
// CRC-32 (IEEE, reflected), as in the gzip trailer.

const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[n] = c;
        n += 1;
    }
    t
};

pub(crate) fn crc32_update(crc: u32, data: &[u8]) -> u32 {
    let mut c = !crc;
    for &b in data {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

struct Crc(u32);

impl Crc {
    fn new() -> Crc {
        Crc(0)
    }
    fn update(&mut self, data: &[u8]) {
        self.0 = crc32_update(self.0, data);
    }
    fn value(&self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn gunzip_vec(data: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let n = gunzip(&mut Cursor::new(data), &mut |c| out.extend_from_slice(c))?;
        assert_eq!(n, out.len() as u64);
        Ok(out)
    }

    /// A reader that returns at most `step` bytes per read, to exercise refills.
    struct Dribble<'a> {
        data: &'a [u8],
        step: usize,
    }
    impl Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    // `printf 'hello world\n' | gzip -n`: fixed Huffman block.
    const HELLO_GZ: [u8; 32] = [
        0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xcb, 0x48, 0xcd, 0xc9, 0xc9,
        0x57, 0x28, 0xcf, 0x2f, 0xca, 0x49, 0xe1, 0x02, 0x00, 0x2d, 0x3b, 0x08, 0xaf, 0x0c, 0x00,
        0x00, 0x00,
    ];

    // `printf '' | gzip -n`: empty member.
    const EMPTY_GZ: [u8; 20] = [
        0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x03, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    // Hand-made: one stored block with "abc", FNAME "a", FHCRC set.
    fn stored_with_name_and_hcrc() -> Vec<u8> {
        let mut v = vec![0x1f, 0x8b, 8, 0x08 | 0x02, 0, 0, 0, 0, 0, 255, b'a', 0];
        let hcrc = (crc32_update(0, &v) & 0xffff) as u16;
        v.extend_from_slice(&hcrc.to_le_bytes());
        v.extend_from_slice(&[0x01, 3, 0, 0xfc, 0xff, b'a', b'b', b'c']);
        v.extend_from_slice(&crc32_update(0, b"abc").to_le_bytes());
        v.extend_from_slice(&3u32.to_le_bytes());
        v
    }

    #[test]
    fn crc32_known_value() {
        assert_eq!(crc32_update(0, b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32_update(0, b""), 0);
    }

    #[test]
    fn known_vectors() {
        assert_eq!(gunzip_vec(&HELLO_GZ).unwrap(), b"hello world\n");
        assert_eq!(gunzip_vec(&EMPTY_GZ).unwrap(), b"");
        assert_eq!(gunzip_vec(&stored_with_name_and_hcrc()).unwrap(), b"abc");
    }

    #[test]
    fn multi_member() {
        let mut v = HELLO_GZ.to_vec();
        v.extend_from_slice(&EMPTY_GZ);
        v.extend_from_slice(&stored_with_name_and_hcrc());
        assert_eq!(gunzip_vec(&v).unwrap(), b"hello world\nabc");
    }

    #[test]
    fn magic_detection() {
        assert!(is_gzip(&HELLO_GZ));
        assert!(!is_gzip(&[0x1f]));
        assert!(is_zstd(&[0x28, 0xb5, 0x2f, 0xfd, 0x04]));
        assert!(!is_zstd(b"ustar"));
    }

    #[test]
    fn corrupted_inputs_are_errors() {
        assert!(gunzip_vec(b"").unwrap_err().contains("empty"));
        assert!(gunzip_vec(b"PK\x03\x04").unwrap_err().contains("magic"));
        for cut in 1..HELLO_GZ.len() {
            assert!(gunzip_vec(&HELLO_GZ[..cut]).is_err(), "cut {cut}");
        }
        let mut bad_crc = HELLO_GZ.to_vec();
        bad_crc[24] ^= 1;
        assert!(gunzip_vec(&bad_crc).unwrap_err().contains("CRC-32"));
        let mut bad_len = HELLO_GZ.to_vec();
        bad_len[28] = 13;
        assert!(gunzip_vec(&bad_len)
            .unwrap_err()
            .contains("length mismatch"));
        let mut bad_method = HELLO_GZ.to_vec();
        bad_method[2] = 7;
        assert!(gunzip_vec(&bad_method).unwrap_err().contains("method"));
        let mut reserved = HELLO_GZ.to_vec();
        reserved[3] = 0x20;
        assert!(gunzip_vec(&reserved).unwrap_err().contains("reserved"));
        let mut hcrc = stored_with_name_and_hcrc();
        hcrc[12] ^= 0xff;
        assert!(gunzip_vec(&hcrc).unwrap_err().contains("header CRC"));
        let mut nlen = stored_with_name_and_hcrc();
        nlen[17] = 0;
        assert!(gunzip_vec(&nlen).unwrap_err().contains("complement"));
        let mut btype3 = HELLO_GZ.to_vec();
        btype3[10] = 0x07;
        assert!(gunzip_vec(&btype3).unwrap_err().contains("block type 3"));
    }

    #[test]
    fn trailing_garbage_is_an_error() {
        let mut v = HELLO_GZ.to_vec();
        v.extend_from_slice(b"{\"errorDetail\":{}}");
        assert!(gunzip_vec(&v).unwrap_err().contains("trailing data"));
        let mut z = HELLO_GZ.to_vec();
        z.extend_from_slice(&[0; 10]);
        assert!(gunzip_vec(&z).is_err());
    }

    #[test]
    fn distance_too_far_back() {
        // Fixed block: length code 257 (len 3), distance code 0 (dist 1) with no output yet.
        // Bits (LSB first): BFINAL=1, BTYPE=01, then 257 = 7-bit 0000001, then dist 00000.
        let mut w = BitWriter::default();
        w.put(1, 1);
        w.put(1, 2);
        w.put_rev(0b0000001, 7);
        w.put_rev(0, 5);
        w.put_rev(0, 7);
        let mut v = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
        v.extend(w.finish());
        v.extend_from_slice(&[0; 8]);
        assert!(gunzip_vec(&v).unwrap_err().contains("invalid distance"));
    }

    #[derive(Default)]
    struct BitWriter {
        out: Vec<u8>,
        acc: u64,
        n: u32,
    }
    impl BitWriter {
        fn put(&mut self, v: u64, bits: u32) {
            self.acc |= v << self.n;
            self.n += bits;
            while self.n >= 8 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.n -= 8;
            }
        }
        fn put_rev(&mut self, code: u32, len: u32) {
            self.put(u64::from(reverse(code, len)), len);
        }
        fn finish(mut self) -> Vec<u8> {
            if self.n > 0 {
                self.out.push(self.acc as u8);
            }
            self.out
        }
    }

    /// A dynamic block written by hand: a one-symbol distance code (allowed incomplete),
    /// and an overlapping match (distance 1, length 10).
    #[test]
    fn dynamic_block_with_single_distance_code() {
        let mut w = BitWriter::default();
        w.put(1, 1); // BFINAL
        w.put(2, 2); // dynamic
        w.put(1, 5); // HLIT = 258
        w.put(0, 5); // HDIST = 1
        w.put(15, 4); // HCLEN = 19
                      // Code-length code: symbols 0 and 1 and 2 and 18 with lengths 2,2,2,2 (complete).
        let mut cl = [0u8; 19];
        cl[0] = 2;
        cl[1] = 2;
        cl[2] = 2;
        cl[18] = 2;
        for &i in CLEN_ORDER.iter() {
            w.put(u64::from(cl[i]), 3);
        }
        // Canonical codes for lengths [0:2,1:2,2:2,18:2] => 0:00 1:01 2:10 18:11
        let clcode = |w: &mut BitWriter, sym: u32| {
            let code = match sym {
                0 => 0,
                1 => 1,
                2 => 2,
                18 => 3,
                _ => unreachable!(),
            };
            w.put_rev(code, 2);
        };
        // Literal/length lengths: 'a'(97)=1, 256=2, 257=2; others 0. Complete: 1/2+1/4+1/4.
        // 0..96 zeros: 18 with 11+86 = 97 zeros.
        clcode(&mut w, 18);
        w.put(86, 7);
        clcode(&mut w, 1); // 97 'a'
                           // 98..255 = 158 zeros: 18 (138) + 18 (20)
        clcode(&mut w, 18);
        w.put(127, 7);
        clcode(&mut w, 18);
        w.put(9, 7);
        clcode(&mut w, 2); // 256
        clcode(&mut w, 2); // 257
                           // distance code: single symbol 0 with length 1
        clcode(&mut w, 1);
        // lit codes: 'a' len1 -> 0 ; 256 len2 -> 10 ; 257 len2 -> 11
        w.put_rev(0, 1); // 'a'
        w.put_rev(3, 2); // 257: length 3
        w.put_rev(0, 1); // distance symbol 0 -> 1
        w.put_rev(3, 2); // 257 again
        w.put_rev(0, 1);
        w.put_rev(2, 2); // end of block
        let mut v = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
        v.extend(w.finish());
        let want = b"aaaaaaa";
        v.extend_from_slice(&crc32_update(0, want).to_le_bytes());
        v.extend_from_slice(&(want.len() as u32).to_le_bytes());
        assert_eq!(gunzip_vec(&v).unwrap(), want);
    }

    fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        let mut v = Vec::with_capacity(n);
        for i in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mix of text-like runs and noise so gzip uses all block types.
            let b = if (i / 4096) % 3 == 0 {
                (x % 256) as u8
            } else {
                b"the quick brown fox jumps over the lazy dog\n"[(x % 44) as usize]
            };
            v.push(b);
        }
        v
    }

    fn system_gzip(data: &[u8], level: &str) -> Option<Vec<u8>> {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new("gzip")
            .arg("-c")
            .arg(level)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .ok()?;
        let mut stdin = child.stdin.take()?;
        let input = data.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let out = child.wait_with_output().ok()?;
        writer.join().ok()?.ok()?;
        out.status.success().then_some(out.stdout)
    }

    #[test]
    fn matches_system_gzip() {
        let inputs: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"a".to_vec(),
            vec![0u8; 300_000],
            pseudo_random(200_000, 1),
            pseudo_random(1_000_003, 7),
            (0..=255u8).cycle().take(100_000).collect(),
        ];
        let mut ran = 0;
        for data in &inputs {
            for level in ["-1", "-6", "-9"] {
                let Some(gz) = system_gzip(data, level) else {
                    println!("system gzip not available; skipping comparison");
                    return;
                };
                let got = gunzip_vec(&gz).unwrap();
                assert!(got == *data, "level {level}, {} bytes", data.len());
                // Same through a reader that hands out odd-sized pieces.
                let mut out = Vec::new();
                let n = gunzip(&mut Dribble { data: &gz, step: 7 }, &mut |c| {
                    out.extend_from_slice(c)
                })
                .unwrap();
                assert_eq!(n, data.len() as u64);
                assert!(out == *data);
                ran += 1;
            }
        }
        assert_eq!(ran, inputs.len() * 3);
    }

    /// Flipping any byte either fails or yields the original data: some flips are
    /// harmless to any decoder (MTIME/OS header bytes, code lengths of unused symbols;
    /// zlib accepts the same ones), but none may produce different output.
    #[test]
    fn single_byte_corruption_never_yields_wrong_data() {
        let want = pseudo_random(6_000, 3);
        let Some(gz) = system_gzip(&want, "-6") else {
            println!("system gzip not available; skipping");
            return;
        };
        let mut rejected = 0;
        for i in 0..gz.len() {
            let mut bad = gz.clone();
            bad[i] ^= 0x55;
            match gunzip_vec(&bad) {
                Ok(out) => assert!(out == want, "byte {i}: wrong output accepted"),
                Err(_) => rejected += 1,
            }
        }
        assert!(rejected > gz.len() * 9 / 10, "{rejected} of {}", gz.len());
    }
}
