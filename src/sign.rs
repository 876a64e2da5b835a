//! Ed25519 signatures over the tag manifest.
//!
//! A signature inside the bag proves nothing on its own: whoever rebuilds a bag can sign it
//! again with a fresh key. It only helps when the verifier pins the examiner's public key,
//! kept outside the bag, so `verify_sig` refuses a signature made by any other key.
//!
//! Files:
//! - private key: PKCS#8 in PEM ("PRIVATE KEY"), mode 0600, never overwritten;
//! - public key: one line `dac-ed25519-pub <base64 of the 32 raw bytes>`;
//! - signature (`tagmanifest-sha256.txt.sig`):
//!   `dac-ed25519-sig/1`, `public-key <base64>`, `fingerprint <hex>`, `signature <base64>`.
//!
//! The fingerprint is the SHA-256 (hex) of the 32 raw public key bytes.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use sha2::{Digest, Sha256};

use crate::error::{Error, Kind, Result};
use crate::transport::hex;

const PUB_PREFIX: &str = "dac-ed25519-pub ";
const SIG_MAGIC: &str = "dac-ed25519-sig/1";
const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";
/// Key and signature files are a few hundred bytes; a bigger file is not ours.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// SHA-256 (lowercase hex) of a raw 32-byte public key.
pub fn fingerprint(raw_public_key: &[u8]) -> String {
    hex(&Sha256::digest(raw_public_key))
}

/// Create a new key pair. Refuses to overwrite either file, so an examiner's key cannot be
/// lost by re-running the command. Returns the public key fingerprint.
pub fn keygen(private_out: &Path, public_out: &Path) -> Result<String> {
    for p in [private_out, public_out] {
        if std::fs::symlink_metadata(p).is_ok() {
            return Err(Error::usage(format!(
                "{} already exists; refusing to overwrite a key file",
                p.display()
            )));
        }
    }
    let rng = SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| Error::new(Kind::Io, "could not generate an Ed25519 key"))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|e| Error::new(Kind::Io, format!("generated key rejected: {e}")))?;
    let raw_pub = pair.public_key().as_ref().to_vec();

    let mut pem = String::new();
    pem.push_str(PEM_BEGIN);
    pem.push('\n');
    let b64 = base64_encode(pkcs8.as_ref());
    // Base64 output is ASCII, so slicing at any byte index is safe.
    let mut rest = b64.as_str();
    while !rest.is_empty() {
        let n = rest.len().min(64);
        pem.push_str(&rest[..n]);
        pem.push('\n');
        rest = &rest[n..];
    }
    pem.push_str(PEM_END);
    pem.push('\n');

    write_new(private_out, pem.as_bytes(), 0o600)?;
    let public_line = format!("{PUB_PREFIX}{}\n", base64_encode(&raw_pub));
    if let Err(e) = write_new(public_out, public_line.as_bytes(), 0o644) {
        // Without its public half a fresh private key is useless; do not leave it behind.
        let _ = std::fs::remove_file(private_out);
        return Err(e);
    }
    Ok(fingerprint(&raw_pub))
}

fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

fn read_small(path: &Path) -> std::result::Result<String, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut buf = Vec::new();
    f.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if buf.len() as u64 > MAX_KEY_FILE {
        return Err(format!("{}: file too large for a key", path.display()));
    }
    String::from_utf8(buf).map_err(|_| format!("{}: not UTF-8 text", path.display()))
}

fn load_key_pair(private_key: &Path) -> std::result::Result<Ed25519KeyPair, String> {
    let text = read_small(private_key)?;
    let mut in_body = false;
    let mut body = String::new();
    let mut found_end = false;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if !in_body {
            if line == PEM_BEGIN {
                in_body = true;
            }
            continue;
        }
        if line == PEM_END {
            found_end = true;
            break;
        }
        body.push_str(line.trim());
    }
    if !found_end {
        return Err(format!(
            "{}: no PEM \"PRIVATE KEY\" block (PKCS#8) found",
            private_key.display()
        ));
    }
    let der = base64_decode(&body)
        .ok_or_else(|| format!("{}: bad base64 in PEM body", private_key.display()))?;
    // Keys made by `dac keygen` are PKCS#8 v2 (public key included and cross-checked); keys
    // made by `openssl genpkey -algorithm ed25519` are v1, which only the unchecked parser takes.
    Ed25519KeyPair::from_pkcs8(&der)
        .or_else(|_| Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der))
        .map_err(|e| {
            format!(
                "{}: not an Ed25519 PKCS#8 private key: {e}",
                private_key.display()
            )
        })
}

/// Sign `message` and return the text of the `.sig` file.
pub fn sign_file(private_key: &Path, message: &[u8]) -> Result<String> {
    let pair = load_key_pair(private_key).map_err(Error::usage)?;
    let raw_pub = pair.public_key().as_ref();
    let sig = pair.sign(message);
    // A signature that does not verify must never reach the bag.
    UnparsedPublicKey::new(&ED25519, raw_pub)
        .verify(message, sig.as_ref())
        .map_err(|_| Error::new(Kind::Integrity, "fresh signature does not verify"))?;
    Ok(format!(
        "{SIG_MAGIC}\npublic-key {}\nfingerprint {}\nsignature {}\n",
        base64_encode(raw_pub),
        fingerprint(raw_pub),
        base64_encode(sig.as_ref())
    ))
}

/// Read a public key file (`dac-ed25519-pub <base64>`) and return the 32 raw bytes.
pub fn read_public_key(public_key: &Path) -> std::result::Result<Vec<u8>, String> {
    let text = read_small(public_key)?;
    let line = text.strip_suffix('\n').unwrap_or(&text);
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.contains('\n') {
        return Err(format!(
            "{}: a public key file holds exactly one line",
            public_key.display()
        ));
    }
    let b64 = line.strip_prefix(PUB_PREFIX).ok_or_else(|| {
        format!(
            "{}: not a dac public key (expected \"{}<base64>\")",
            public_key.display(),
            PUB_PREFIX
        )
    })?;
    let raw = base64_decode(b64)
        .ok_or_else(|| format!("{}: bad base64 in public key", public_key.display()))?;
    if raw.len() != 32 {
        return Err(format!(
            "{}: public key is {} bytes, Ed25519 needs 32",
            public_key.display(),
            raw.len()
        ));
    }
    Ok(raw)
}

struct SigFile {
    public_key: Vec<u8>,
    fingerprint: String,
    signature: Vec<u8>,
}

fn parse_sig(text: &str) -> std::result::Result<SigFile, String> {
    let body = text
        .strip_suffix('\n')
        .ok_or("signature file does not end with a newline")?;
    let lines: Vec<&str> = body.split('\n').collect();
    if lines.len() != 4 {
        return Err(format!(
            "signature file has {} lines, expected 4",
            lines.len()
        ));
    }
    if lines[0] != SIG_MAGIC {
        return Err(format!(
            "signature file does not start with \"{SIG_MAGIC}\""
        ));
    }
    let field = |i: usize, name: &str| -> std::result::Result<String, String> {
        lines[i]
            .strip_prefix(name)
            .and_then(|r| r.strip_prefix(' '))
            .map(str::to_string)
            .ok_or_else(|| format!("signature file line {} is not \"{name} ...\"", i + 1))
    };
    let public_key =
        base64_decode(&field(1, "public-key")?).ok_or("bad base64 in the public-key line")?;
    if public_key.len() != 32 {
        return Err(format!(
            "public-key is {} bytes, Ed25519 needs 32",
            public_key.len()
        ));
    }
    let fingerprint = field(2, "fingerprint")?;
    let signature =
        base64_decode(&field(3, "signature")?).ok_or("bad base64 in the signature line")?;
    if signature.len() != 64 {
        return Err(format!(
            "signature is {} bytes, Ed25519 needs 64",
            signature.len()
        ));
    }
    Ok(SigFile {
        public_key,
        fingerprint,
        signature,
    })
}

/// Check a `.sig` text against `message` AND against the pinned public key file: a valid
/// signature by any other key is refused.
pub fn verify_sig(
    public_key: &Path,
    message: &[u8],
    sig_file_text: &str,
) -> std::result::Result<(), String> {
    let pinned = read_public_key(public_key)?;
    let sig = parse_sig(sig_file_text)?;
    let embedded_fp = fingerprint(&sig.public_key);
    if sig.fingerprint != embedded_fp {
        return Err(format!(
            "signature file fingerprint {} does not match its own public key ({embedded_fp})",
            sig.fingerprint
        ));
    }
    let pinned_fp = fingerprint(&pinned);
    if sig.public_key != pinned {
        return Err(format!(
            "signed by a different key: signing key fingerprint {embedded_fp}, pinned key \
             {} has fingerprint {pinned_fp}",
            public_key.display()
        ));
    }
    UnparsedPublicKey::new(&ED25519, &pinned)
        .verify(message, &sig.signature)
        .map_err(|_| format!("signature does not match the signed file (pinned key {pinned_fp})"))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 (RFC 4648 §4) with padding.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b0 = chunk[0] as u32;
        let b1 = chunk.get(1).copied().unwrap_or(0) as u32;
        let b2 = chunk.get(2).copied().unwrap_or(0) as u32;
        let n = (b0 << 16) | (b1 << 8) | b2;
        out.push(B64[(n >> 18) as usize & 63] as char);
        out.push(B64[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            B64[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            B64[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

fn b64_value(c: u8) -> Option<u32> {
    match c {
        b'A'..=b'Z' => Some((c - b'A') as u32),
        b'a'..=b'z' => Some((c - b'a') as u32 + 26),
        b'0'..=b'9' => Some((c - b'0') as u32 + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Strict standard base64: padded, no whitespace, canonical (unused bits zero), so each byte
/// string has exactly one accepted encoding.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let s = text.as_bytes();
    if !s.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let groups = s.len() / 4;
    for (gi, g) in s.chunks(4).enumerate() {
        let last = gi + 1 == groups;
        let pad = g.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n: u32 = 0;
        for &c in &g[..4 - pad] {
            n = (n << 6) | b64_value(c)?;
        }
        n <<= 6 * pad as u32;
        match pad {
            0 => out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]),
            1 => {
                if n & 0xff != 0 {
                    return None;
                }
                out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8]);
            }
            _ => {
                if n & 0xffff != 0 {
                    return None;
                }
                out.push((n >> 16) as u8);
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dac-sign-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn base64_rfc4648_vectors() {
        let v: [(&str, &str); 7] = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, enc) in v {
            assert_eq!(base64_encode(plain.as_bytes()), enc);
            assert_eq!(base64_decode(enc).unwrap(), plain.as_bytes());
        }
        let all: Vec<u8> = (0..=255u8).collect();
        assert_eq!(base64_decode(&base64_encode(&all)).unwrap(), all);
    }

    #[test]
    fn base64_decode_is_strict() {
        for bad in [
            "Zg", "Zg=", "Zh==", "Zm9=", "Z===", "Zg==Zg==", "Zm9v\n", " Zm9v", "Zm-v", "Zm_v",
            "====", "Zg=a", "é===",
        ] {
            assert!(base64_decode(bad).is_none(), "{bad:?} accepted");
        }
    }

    #[test]
    fn keygen_sign_verify_and_pinning() {
        let d = tmpdir("roundtrip");
        let (k1, p1) = (d.join("a.key"), d.join("a.pub"));
        let fp = keygen(&k1, &p1).unwrap();
        assert_eq!(fp.len(), 64);
        let mode = std::fs::metadata(&k1).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let pem = std::fs::read_to_string(&k1).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(pem.ends_with("-----END PRIVATE KEY-----\n"));
        let pubtext = std::fs::read_to_string(&p1).unwrap();
        assert!(pubtext.starts_with("dac-ed25519-pub ") && pubtext.ends_with('\n'));
        assert_eq!(fingerprint(&read_public_key(&p1).unwrap()), fp);

        // Refuses to overwrite either file.
        assert!(keygen(&k1, &d.join("other.pub")).is_err());
        assert!(keygen(&d.join("other.key"), &p1).is_err());
        assert!(!d.join("other.key").exists());
        assert_eq!(std::fs::read_to_string(&k1).unwrap(), pem);

        let msg = b"abc  bagit.txt\n";
        let sig = sign_file(&k1, msg).unwrap();
        let lines: Vec<&str> = sig.lines().collect();
        assert_eq!(lines[0], "dac-ed25519-sig/1");
        assert!(lines[1].starts_with("public-key "));
        assert_eq!(lines[2], format!("fingerprint {fp}"));
        assert!(lines[3].starts_with("signature "));
        verify_sig(&p1, msg, &sig).unwrap();

        // Wrong message.
        assert!(verify_sig(&p1, b"abc  bagit.txt\r\n", &sig).is_err());
        // Flipped signature bit.
        let mut raw = base64_decode(lines[3].strip_prefix("signature ").unwrap()).unwrap();
        raw[5] ^= 1;
        let forged = format!(
            "{}\n{}\n{}\nsignature {}\n",
            lines[0],
            lines[1],
            lines[2],
            base64_encode(&raw)
        );
        assert!(verify_sig(&p1, msg, &forged).is_err());

        // Re-signed with another key: valid in itself, refused against the pinned key.
        let (k2, p2) = (d.join("b.key"), d.join("b.pub"));
        keygen(&k2, &p2).unwrap();
        let sig2 = sign_file(&k2, msg).unwrap();
        verify_sig(&p2, msg, &sig2).unwrap();
        let err = verify_sig(&p1, msg, &sig2).unwrap_err();
        assert!(err.contains("different key"), "{err}");

        // Lying fingerprint line.
        let fp2 = sig2
            .lines()
            .nth(2)
            .unwrap()
            .strip_prefix("fingerprint ")
            .unwrap();
        let lie = sig2.replace(fp2, &"0".repeat(64));
        assert_ne!(lie, sig2);
        assert!(verify_sig(&p2, msg, &lie).is_err());
        // Garbage signature files.
        for bad in [
            "",
            "dac-ed25519-sig/1\n",
            "x\ny\nz\nw\n",
            &sig[..sig.len() - 1],
        ] {
            assert!(verify_sig(&p1, msg, bad).is_err());
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn accepts_pkcs8_v1_private_key() {
        // RFC 8410 §10.3 example: PKCS#8 v1 Ed25519 key, the form openssl writes.
        let d = tmpdir("v1");
        let k = d.join("v1.key");
        std::fs::write(
            &k,
            "-----BEGIN PRIVATE KEY-----\n\
             MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
             -----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let sig = sign_file(&k, b"m").unwrap();
        let pubkey = parse_sig(&sig).unwrap().public_key;
        // RFC 8410 gives the matching public key: 19bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1
        assert_eq!(
            hex(&pubkey),
            "19bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1"
        );
        let p = d.join("v1.pub");
        std::fs::write(&p, format!("dac-ed25519-pub {}\n", base64_encode(&pubkey))).unwrap();
        verify_sig(&p, b"m", &sig).unwrap();
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn rejects_bad_key_files() {
        let d = tmpdir("bad");
        let k = d.join("bad.key");
        std::fs::write(&k, "not a key\n").unwrap();
        assert!(sign_file(&k, b"m").is_err());
        let p = d.join("bad.pub");
        std::fs::write(&p, "dac-ed25519-pub AAAA\n").unwrap();
        assert!(read_public_key(&p).is_err());
        std::fs::write(&p, "ssh-ed25519 AAAA\n").unwrap();
        assert!(read_public_key(&p).is_err());
        assert!(read_public_key(&d.join("missing.pub")).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }
}
