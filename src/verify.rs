//! `dac verify`: check an evidence bundle offline, trusting nothing the bundle says about itself.
//!
//! Three layers, each catching what the one before cannot:
//! 1. BagIt (RFC 8493): every payload and tag file listed and hashed, nothing extra, nothing
//!    missing, no path that could point outside the bag, no symlinks or special files.
//! 2. The acquisition log: a hash chain whose head is pinned in bag-info.txt, so deleting a
//!    line and recomputing the tag manifest (which plain BagIt validation accepts) still fails;
//!    and the log and the manifest must describe the same files, sizes and hashes.
//! 3. Content: tars parse to their end marker, saved images pass their own digest checks, and
//!    the tag manifest signature matches a public key pinned outside the bag.
//!
//! Files are only opened if the directory walk saw them as regular files, and are streamed
//! through a bounded buffer, so a hostile bundle can neither redirect reads nor exhaust memory.
//! Everything is visited in sorted order so two runs give identical reports.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::tar::{TarError, TarSummary, TarWalker};
use crate::transport::hex;

pub struct Failure {
    /// Bundle-relative path of the file the check is about.
    pub file: String,
    /// Short stable name of the check, e.g. "payload-sha256", "log-chain".
    pub check: String,
    pub detail: String,
}

pub struct Report {
    /// Number of individual checks performed (passed or failed).
    pub checks: u64,
    pub failures: Vec<Failure>,
    /// What became of the signature: verified (with fingerprint), present but unchecked, or
    /// `None` when the bag has no signature and no key was given.
    pub signature: Option<String>,
    /// Facts that are not failures, e.g. artifacts the collector itself recorded as partial.
    pub notes: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }

    pub fn to_json(&self) -> Value {
        json!({
            "ok": self.ok(),
            "checks": self.checks,
            "failures": self.failures.iter().map(|f| json!({
                "file": f.file,
                "check": f.check,
                "detail": f.detail,
            })).collect::<Vec<_>>(),
            "signature": self.signature,
            "notes": self.notes,
        })
    }
}

const BAGIT_TXT: &[u8] = b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n";
const BAGIT: &str = "bagit.txt";
const BAG_INFO: &str = "bag-info.txt";
const MANIFEST: &str = "manifest-sha256.txt";
const TAGMANIFEST: &str = "tagmanifest-sha256.txt";
use crate::bundle::{LOG_PATH as LOG, SIG_NAME as SIG};
const IMAGE_GET: &str = "/images/{name}/get";

use crate::bundle::{ORDERED_TIERS, TIERS as ALL_TIERS};

const BAG_INFO_FIELDS: [&str; 10] = [
    "Source-Organization",
    "Contact-Name",
    "External-Identifier",
    "Bagging-Date",
    "Bag-Software-Agent",
    "Payload-Oxum",
    "Acquisition-Start",
    "Acquisition-End",
    "Acquisition-State",
    "Log-Chain-Head-SHA256",
];

const READ_BUF: usize = 64 * 1024;
/// Tag files other than the log and the manifests are a few KiB; anything bigger is refused
/// rather than read into memory.
const MAX_SMALL_FILE: u64 = 16 * 1024 * 1024;
const MAX_MANIFEST_LINE: usize = 64 * 1024;
const MAX_LOG_LINE: usize = 16 * 1024 * 1024;
/// A hostile bundle (a manifest of a million bad lines) must not turn the report itself into
/// a memory problem; past this many, failures are only counted.
const MAX_FAILURES: usize = 10_000;

/// Verify the bundle at `bundle`. Returns `Err` only when verification cannot run at all
/// (the path is not a directory); everything wrong inside the bundle is a `Failure`.
pub fn verify_bundle(bundle: &Path, pubkey: Option<&Path>) -> Result<Report> {
    let meta =
        std::fs::metadata(bundle).map_err(|e| Error::io(format!("{}", bundle.display()), e))?;
    if !meta.is_dir() {
        return Err(Error::usage(format!(
            "{} is not a directory; give the bundle directory",
            bundle.display()
        )));
    }
    let mut v = Verifier {
        root: bundle,
        report: Report {
            checks: 0,
            failures: Vec::new(),
            signature: None,
            notes: Vec::new(),
        },
        files: BTreeMap::new(),
        unreported: 0,
    };
    v.walk();
    v.check_bagit_txt();
    let info = v.check_bag_info();
    let manifest = v.read_manifest(MANIFEST, true);
    let hashed = v.check_payload(&manifest);
    v.check_oxum(&info);
    v.check_tag_manifest();
    let log = v.check_log(&info);
    v.cross_check(&log, &manifest, &hashed);
    v.check_tars(&log, &hashed);
    v.check_images(&log);
    v.check_signature(pubkey);
    if v.unreported > 0 {
        v.report.failures.push(Failure {
            file: ".".into(),
            check: "too-many-failures".into(),
            detail: format!(
                "{} more failures not listed (only the first {MAX_FAILURES} are)",
                v.unreported
            ),
        });
    }
    Ok(v.report)
}

/// What the hashing pass learnt about one payload file.
struct Hashed {
    sha256: String,
    tar: Option<std::result::Result<TarSummary, TarError>>,
}

#[derive(Default)]
struct BagInfo {
    head: Option<String>,
    state: Option<String>,
    oxum: Option<(u64, u64)>,
}

struct Artifact {
    line: u64,
    path: String,
    endpoint: String,
    object: String,
    sha256: String,
    readback_sha256: String,
    disk_bytes: u64,
    start_mono_ns: u64,
    complete: bool,
    tar: Option<LoggedTar>,
    derived_from: Option<String>,
}

/// What the collector's own tar walk recorded for an artifact.
enum LoggedTar {
    Summary {
        entries: u64,
        end_offset: u64,
        trailing_zero_bytes: Option<u64>,
    },
    Failed,
}

#[derive(Default)]
struct Log {
    artifacts: Vec<Artifact>,
    error_paths: Vec<(u64, String)>,
    /// Image check outcomes the collector recorded, by payload path (from an `image_check`
    /// field on the artifact or a separate `image_check` record).
    image_checks: BTreeMap<String, bool>,
}

struct Verifier<'a> {
    root: &'a Path,
    report: Report,
    /// Every regular file in the bag (bundle-relative, '/'-separated) and its size.
    files: BTreeMap<String, u64>,
    /// Failures beyond MAX_FAILURES, counted but not listed.
    unreported: u64,
}

impl Verifier<'_> {
    /// Count one check; record a failure when `ok` is false. Returns `ok`.
    fn check(
        &mut self,
        ok: bool,
        file: &str,
        check: &str,
        detail: impl FnOnce() -> String,
    ) -> bool {
        self.report.checks += 1;
        if !ok && self.report.failures.len() >= MAX_FAILURES {
            self.unreported += 1;
        } else if !ok {
            self.report.failures.push(Failure {
                file: file.to_string(),
                check: check.to_string(),
                detail: detail(),
            });
        }
        ok
    }

    fn fail(&mut self, file: &str, check: &str, detail: impl Into<String>) {
        let detail = detail.into();
        self.check(false, file, check, || detail);
    }

    fn walk(&mut self) {
        let mut stack = vec![String::new()];
        while let Some(dir) = stack.pop() {
            let abs = if dir.is_empty() {
                self.root.to_path_buf()
            } else {
                self.root.join(&dir)
            };
            let shown = if dir.is_empty() { "." } else { dir.as_str() };
            let entries = match std::fs::read_dir(&abs) {
                Ok(rd) => rd.collect::<std::io::Result<Vec<_>>>(),
                Err(e) => Err(e),
            };
            let mut entries = match entries {
                Ok(e) => e,
                Err(e) => {
                    self.fail(shown, "walk", format!("cannot list directory: {e}"));
                    continue;
                }
            };
            entries.sort_by_key(|e| e.file_name());
            let mut subdirs = Vec::new();
            for entry in entries {
                let raw_name = entry.file_name();
                let Some(name) = raw_name.to_str() else {
                    self.fail(
                        &format!("{shown}/{}", raw_name.to_string_lossy()),
                        "path-encoding",
                        "file name is not UTF-8",
                    );
                    continue;
                };
                let rel = if dir.is_empty() {
                    name.to_string()
                } else {
                    format!("{dir}/{name}")
                };
                let safe = !name.contains('\\') && !name.chars().any(char::is_control);
                if !self.check(safe, &rel, "path-safe-name", || {
                    "file name holds a backslash or control character".into()
                }) {
                    continue;
                }
                let meta = match entry.path().symlink_metadata() {
                    Ok(m) => m,
                    Err(e) => {
                        self.fail(&rel, "walk", format!("cannot stat: {e}"));
                        continue;
                    }
                };
                let ft = meta.file_type();
                if ft.is_symlink() {
                    self.fail(&rel, "no-symlink", "symbolic link inside the bag");
                } else if ft.is_dir() {
                    self.report.checks += 1;
                    subdirs.push(rel);
                } else if ft.is_file() {
                    self.report.checks += 1;
                    self.files.insert(rel, meta.len());
                } else {
                    self.fail(
                        &rel,
                        "no-special-file",
                        "not a regular file or directory (device, fifo or socket)",
                    );
                }
            }
            // Reverse so the stack pops directories in sorted order.
            stack.extend(subdirs.into_iter().rev());
        }
    }

    /// Open a file only if the walk saw it as a regular file.
    fn open(&mut self, rel: &str, check: &str) -> Option<File> {
        if !self.files.contains_key(rel) {
            self.fail(rel, check, "file is missing");
            return None;
        }
        match File::open(self.root.join(rel)) {
            Ok(f) => Some(f),
            Err(e) => {
                self.fail(rel, check, format!("cannot open: {e}"));
                None
            }
        }
    }

    fn read_small(&mut self, rel: &str, check: &str) -> Option<Vec<u8>> {
        let f = self.open(rel, check)?;
        let mut buf = Vec::new();
        match f.take(MAX_SMALL_FILE + 1).read_to_end(&mut buf) {
            Ok(_) if buf.len() as u64 > MAX_SMALL_FILE => {
                self.fail(rel, check, format!("larger than {MAX_SMALL_FILE} bytes"));
                None
            }
            Ok(_) => Some(buf),
            Err(e) => {
                self.fail(rel, check, format!("read error: {e}"));
                None
            }
        }
    }

    fn check_bagit_txt(&mut self) {
        if let Some(b) = self.read_small(BAGIT, "bagit-txt") {
            self.check(b == BAGIT_TXT, BAGIT, "bagit-txt", || {
                format!(
                    "content is {:?}, expected {:?}",
                    String::from_utf8_lossy(&b),
                    String::from_utf8_lossy(BAGIT_TXT)
                )
            });
        }
    }

    fn check_bag_info(&mut self) -> BagInfo {
        let mut info = BagInfo::default();
        let Some(bytes) = self.read_small(BAG_INFO, "bag-info") else {
            return info;
        };
        let Ok(text) = String::from_utf8(bytes) else {
            self.fail(BAG_INFO, "bag-info", "not UTF-8");
            return info;
        };
        if !self.check(text.ends_with('\n'), BAG_INFO, "bag-info", || {
            "does not end with a newline".into()
        }) {
            return info;
        }
        let mut fields: Vec<(String, String)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.starts_with(' ') || line.starts_with('\t') {
                // RFC 8493 §2.2.2: a line starting with whitespace continues the previous value.
                match fields.last_mut() {
                    Some(last) => {
                        last.1.push(' ');
                        last.1.push_str(line.trim());
                    }
                    None => self.fail(
                        BAG_INFO,
                        "bag-info",
                        format!("line {}: continuation line with no label before it", i + 1),
                    ),
                }
                continue;
            }
            match line.split_once(':') {
                Some((label, value)) if !label.is_empty() && label.trim() == label => {
                    fields.push((label.to_string(), value.trim().to_string()))
                }
                _ => self.fail(
                    BAG_INFO,
                    "bag-info",
                    format!("line {}: not \"Label: value\": {line:?}", i + 1),
                ),
            }
        }
        for name in BAG_INFO_FIELDS {
            let values: Vec<&String> = fields
                .iter()
                .filter(|(l, _)| l == name)
                .map(|(_, v)| v)
                .collect();
            let n = values.len();
            if !self.check(n == 1, BAG_INFO, "bag-info-field", || {
                format!("{name}: present {n} times, expected once")
            }) {
                continue;
            }
            let value = values[0].clone();
            match name {
                "Payload-Oxum" => {
                    let parsed = value
                        .split_once('.')
                        .and_then(|(b, c)| Some((parse_decimal(b)?, parse_decimal(c)?)));
                    if self.check(parsed.is_some(), BAG_INFO, "bag-info-field", || {
                        format!("Payload-Oxum {value:?} is not <bytes>.<count>")
                    }) {
                        info.oxum = parsed;
                    }
                }
                "Acquisition-State" => {
                    let ok = value == "complete" || value == "partial";
                    if self.check(ok, BAG_INFO, "bag-info-field", || {
                        format!("Acquisition-State {value:?} is not complete or partial")
                    }) {
                        info.state = Some(value);
                    }
                }
                "Log-Chain-Head-SHA256" => {
                    let ok = is_hex64(&value);
                    if self.check(ok, BAG_INFO, "bag-info-field", || {
                        format!("Log-Chain-Head-SHA256 {value:?} is not 64 lowercase hex")
                    }) {
                        info.head = Some(value);
                    }
                }
                "Acquisition-Start" | "Acquisition-End" => {
                    self.check(is_utc_timestamp(&value), BAG_INFO, "bag-info-field", || {
                        format!("{name} {value:?} is not a UTC timestamp ending in Z")
                    });
                }
                _ => {}
            }
        }
        info
    }

    /// Parse a manifest. Returns path -> lowercase sha256 for every well-formed entry.
    fn read_manifest(&mut self, name: &str, payload: bool) -> BTreeMap<String, String> {
        let mut entries = BTreeMap::new();
        let Some(f) = self.open(name, "manifest") else {
            return entries;
        };
        let mut r = BufReader::new(f);
        let mut line = Vec::new();
        let mut lineno = 0u64;
        loop {
            lineno += 1;
            let end = match read_line_bounded(&mut r, MAX_MANIFEST_LINE, &mut line) {
                Ok(e) => e,
                Err(e) => {
                    self.fail(name, "manifest", format!("read error: {e}"));
                    break;
                }
            };
            match end {
                LineEnd::Eof => break,
                LineEnd::TooLong => {
                    self.fail(
                        name,
                        "manifest-format",
                        format!("line {lineno}: longer than {MAX_MANIFEST_LINE} bytes"),
                    );
                    break;
                }
                LineEnd::Unterminated => self.fail(
                    name,
                    "manifest-format",
                    format!("line {lineno}: no trailing newline (truncated?)"),
                ),
                LineEnd::Newline => {}
            }
            let Some((hash, path)) = parse_manifest_line(&line) else {
                self.fail(
                    name,
                    "manifest-format",
                    format!(
                        "line {lineno}: not \"<sha256>  <path>\": {:?}",
                        String::from_utf8_lossy(&line)
                    ),
                );
                if end == LineEnd::Unterminated {
                    break;
                }
                continue;
            };
            let path_problem = match decode_manifest_path(&path) {
                Err(why) => Some(why),
                Ok(p) => unsafe_path(&p).map(str::to_string).or_else(|| {
                    if payload && !p.starts_with("data/") {
                        Some("payload path does not start with data/".into())
                    } else if !payload && p.starts_with("data/") {
                        Some("tag manifest lists a payload file".into())
                    } else if !payload && (p == TAGMANIFEST || p == SIG) {
                        Some("tag manifest lists itself or its signature".into())
                    } else {
                        None
                    }
                }),
            };
            let ok = self.check(path_problem.is_none(), name, "manifest-path", || {
                format!(
                    "line {lineno}: {path:?}: {}",
                    path_problem.unwrap_or_default()
                )
            });
            if ok {
                // decode succeeded above, so this cannot fail; fall back to the raw text anyway.
                let p = decode_manifest_path(&path).unwrap_or(path);
                let dup = entries.contains_key(&p);
                if self.check(!dup, name, "manifest-duplicate", || {
                    format!("line {lineno}: {p} is listed more than once")
                }) {
                    entries.insert(p, hash);
                }
            }
            if end == LineEnd::Unterminated {
                break;
            }
        }
        entries
    }

    /// Every payload file listed, every listed file present, and the hashes right. Tars are
    /// walked in the same pass so large exports are read once.
    fn check_payload(&mut self, manifest: &BTreeMap<String, String>) -> BTreeMap<String, Hashed> {
        let on_disk: Vec<String> = self
            .files
            .keys()
            .filter(|p| p.starts_with("data/"))
            .cloned()
            .collect();
        for p in &on_disk {
            self.check(manifest.contains_key(p), p, "payload-listed", || {
                format!("payload file not listed in {MANIFEST}")
            });
        }
        let mut hashed = BTreeMap::new();
        for (path, want) in manifest {
            if !self.check(
                self.files.contains_key(path),
                path,
                "payload-present",
                || format!("listed in {MANIFEST} but missing (or not a regular file)"),
            ) {
                continue;
            }
            let Some(h) = self.hash_file(path, path.ends_with(".tar")) else {
                continue;
            };
            self.check(h.sha256 == *want, path, "payload-sha256", || {
                format!("sha256 is {}, {MANIFEST} says {want}", h.sha256)
            });
            hashed.insert(path.clone(), h);
        }
        hashed
    }

    fn hash_file(&mut self, rel: &str, walk_tar: bool) -> Option<Hashed> {
        let mut f = self.open(rel, "read")?;
        let mut hasher = Sha256::new();
        let mut walker = if walk_tar {
            Some(TarWalker::new())
        } else {
            None
        };
        let mut tar_err: Option<TarError> = None;
        let mut buf = vec![0u8; READ_BUF];
        loop {
            let n = match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.fail(rel, "read", format!("read error: {e}"));
                    return None;
                }
            };
            let chunk = &buf[..n];
            hasher.update(chunk);
            if tar_err.is_none() {
                if let Some(w) = walker.as_mut() {
                    if let Err(e) = w.push(chunk) {
                        tar_err = Some(e);
                    }
                }
            }
        }
        let tar = walker.map(|w| match tar_err {
            Some(e) => Err(e),
            None => w.finish(),
        });
        Some(Hashed {
            sha256: hex(&hasher.finalize()),
            tar,
        })
    }

    fn check_oxum(&mut self, info: &BagInfo) {
        let Some((want_bytes, want_count)) = info.oxum else {
            return;
        };
        let (bytes, count) = self
            .files
            .iter()
            .filter(|(p, _)| p.starts_with("data/"))
            .fold((0u64, 0u64), |(b, c), (_, len)| {
                (b.saturating_add(*len), c + 1)
            });
        self.check(
            bytes == want_bytes && count == want_count,
            BAG_INFO,
            "payload-oxum",
            || {
                format!(
                    "Payload-Oxum says {want_bytes}.{want_count}, the payload is {bytes}.{count}"
                )
            },
        );
    }

    fn check_tag_manifest(&mut self) {
        let tags = self.read_manifest(TAGMANIFEST, false);
        let on_disk: Vec<String> = self
            .files
            .keys()
            .filter(|p| !p.starts_with("data/") && *p != TAGMANIFEST && *p != SIG)
            .cloned()
            .collect();
        for p in &on_disk {
            self.check(tags.contains_key(p), p, "tag-listed", || {
                format!("tag file not listed in {TAGMANIFEST}")
            });
        }
        for (path, want) in &tags {
            if !self.check(self.files.contains_key(path), path, "tag-present", || {
                format!("listed in {TAGMANIFEST} but missing (or not a regular file)")
            }) {
                continue;
            }
            if let Some(h) = self.hash_file(path, false) {
                self.check(h.sha256 == *want, path, "tag-sha256", || {
                    format!("sha256 is {}, {TAGMANIFEST} says {want}", h.sha256)
                });
            }
        }
        for required in [BAGIT, BAG_INFO, MANIFEST, LOG] {
            self.check(
                tags.contains_key(required),
                TAGMANIFEST,
                "tag-required",
                || format!("{required} is not listed"),
            );
        }
    }

    fn check_log(&mut self, info: &BagInfo) -> Log {
        let mut log = Log::default();
        let Some(f) = self.open(LOG, "log") else {
            return log;
        };
        let mut r = BufReader::new(f);
        let mut line = Vec::new();
        let mut prev_hash = "0".repeat(64);
        let mut prev_seq: Option<u64> = None;
        let mut prev_mono: Option<u64> = None;
        let mut n = 0u64;
        let mut first_event: Option<String> = None;
        let mut last_event: Option<(u64, String, Map<String, Value>)> = None;
        let mut counts = (0u64, 0u64); // artifacts, errors
        let mut interrupted = false;
        let mut artifact_paths = BTreeSet::new();
        let mut image_checks: Vec<(String, bool)> = Vec::new();
        loop {
            let end = match read_line_bounded(&mut r, MAX_LOG_LINE, &mut line) {
                Ok(e) => e,
                Err(e) => {
                    self.fail(LOG, "log-read", format!("read error: {e}"));
                    break;
                }
            };
            match end {
                LineEnd::Eof => break,
                LineEnd::TooLong => {
                    self.fail(
                        LOG,
                        "log-line",
                        format!("line {}: longer than {MAX_LOG_LINE} bytes", n + 1),
                    );
                    break;
                }
                LineEnd::Unterminated => self.fail(
                    LOG,
                    "log-line",
                    format!("line {}: no trailing newline (truncated log)", n + 1),
                ),
                LineEnd::Newline => {}
            }
            n += 1;
            let at = format!("line {n}");
            if let Some((l, ev, _)) = &last_event {
                let l = *l;
                let after_end = ev == "session_end";
                self.check(!after_end, LOG, "log-end", || {
                    format!("line {l}: session_end is not the last record")
                });
            }
            let this_hash = hex(&Sha256::digest(&line));
            let parsed: Option<Map<String, Value>> = match serde_json::from_slice(&line) {
                Ok(Value::Object(m)) => Some(m),
                _ => None,
            };
            let this_prev = std::mem::replace(&mut prev_hash, this_hash);
            let Some(rec) = parsed else {
                self.fail(LOG, "log-json", format!("{at}: not a JSON object"));
                first_event.get_or_insert_with(String::new);
                last_event = Some((n, String::new(), Map::new()));
                continue;
            };
            let canonical = serde_json::to_vec(&Value::Object(rec.clone()))
                .map(|c| c == line)
                .unwrap_or(false);
            self.check(canonical, LOG, "log-canonical", || {
                format!("{at}: not compact JSON with sorted keys as the collector writes it")
            });

            let seq = rec.get("seq").and_then(Value::as_u64);
            let want_seq = prev_seq.map_or(0, |s| s + 1);
            self.check(seq == Some(want_seq), LOG, "log-seq", || {
                format!(
                    "{at}: seq is {}, expected {want_seq}",
                    shown(rec.get("seq"))
                )
            });
            if let Some(s) = seq {
                prev_seq = Some(s);
            }
            let at = format!("{at} (seq {})", seq.map_or("?".into(), |s| s.to_string()));

            let prev_field = rec.get("prev_sha256").and_then(Value::as_str);
            self.check(
                prev_field == Some(this_prev.as_str()),
                LOG,
                "log-chain",
                || {
                    format!(
                        "{at}: prev_sha256 is {:?}, the previous line hashes to {this_prev}",
                        prev_field.unwrap_or("(missing)")
                    )
                },
            );

            let ts = rec.get("ts_utc").and_then(Value::as_str);
            self.check(ts.is_some_and(is_utc_timestamp), LOG, "log-fields", || {
                format!("{at}: ts_utc missing or not a UTC timestamp ending in Z")
            });
            let mono = rec.get("mono_ns").and_then(Value::as_u64);
            let mono_ok = match (mono, prev_mono) {
                (Some(m), Some(p)) => m >= p,
                (Some(_), None) => true,
                (None, _) => false,
            };
            self.check(mono_ok, LOG, "log-mono", || {
                format!(
                    "{at}: mono_ns {} missing or earlier than the previous record's {}",
                    shown(rec.get("mono_ns")),
                    prev_mono.map_or("-".into(), |m| m.to_string())
                )
            });
            if mono.is_some() {
                prev_mono = mono;
            }

            let event = rec
                .get("event")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if first_event.is_none() {
                first_event = Some(event.clone());
            } else {
                self.check(event != "session_start", LOG, "log-start", || {
                    format!("{at}: session_start after the first record")
                });
            }
            match event.as_str() {
                "session_start" => {
                    let ok = ["tool", "version", "endpoint"]
                        .iter()
                        .all(|k| rec.get(*k).is_some_and(Value::is_string))
                        && rec.get("argv").is_some_and(Value::is_array);
                    self.check(ok, LOG, "log-fields", || {
                        format!("{at}: session_start lacks tool, version, argv or endpoint")
                    });
                }
                "artifact" => {
                    counts.0 += 1;
                    if let Some(a) = self.artifact_record(&rec, n, &at, &mut image_checks) {
                        let fresh = artifact_paths.insert(a.path.clone());
                        let p = a.path.clone();
                        self.check(fresh, LOG, "log-artifact-duplicate", || {
                            format!("{at}: {p} is recorded more than once")
                        });
                        log.artifacts.push(a);
                    }
                }
                "error" => {
                    counts.1 += 1;
                    let s = |k: &str| rec.get(k).is_some_and(Value::is_string);
                    let kind_ok = rec
                        .get("kind")
                        .and_then(Value::as_str)
                        .is_some_and(|k| crate::error::Kind::ALL.iter().any(|x| x.as_str() == k));
                    let status_ok = rec
                        .get("status")
                        .is_none_or(|v| v.as_u64().is_some_and(|s| s <= 999));
                    let ok = kind_ok
                        && s("endpoint")
                        && s("object")
                        && s("detail")
                        && rec.get("offset").and_then(Value::as_u64).is_some()
                        && status_ok
                        && rec.get("path").is_none_or(Value::is_string);
                    self.check(ok, LOG, "log-error-fields", || {
                        format!(
                            "{at}: error record needs kind (a known kind), endpoint, object, \
                             offset (u64) and detail"
                        )
                    });
                    if let Some(p) = rec.get("path").and_then(Value::as_str) {
                        log.error_paths.push((n, p.to_string()));
                    }
                }
                "image_check" => {
                    let s = |k: &str| rec.get(k).is_some_and(Value::is_string);
                    let path = rec.get("path").and_then(Value::as_str);
                    let ok = rec
                        .get("image_check")
                        .and_then(|ic| ic.get("ok"))
                        .and_then(Value::as_bool);
                    let fields_ok = s("endpoint") && s("object");
                    if self.check(
                        fields_ok && path.is_some() && ok.is_some(),
                        LOG,
                        "log-fields",
                        || {
                            format!(
                                "{at}: image_check record needs endpoint, object, path and \
                                 image_check.ok"
                            )
                        },
                    ) {
                        if let (Some(p), Some(ok)) = (path, ok) {
                            image_checks.push((p.to_string(), ok));
                        }
                    }
                }
                "note" | "interrupted" => interrupted |= event == "interrupted",
                "session_end" => {}
                other => self.fail(LOG, "log-event", format!("{at}: unknown event {other:?}")),
            }
            last_event = Some((n, event, rec));
            if end == LineEnd::Unterminated {
                break;
            }
        }

        for (path, ok) in image_checks {
            let again = log.image_checks.insert(path.clone(), ok).is_some();
            self.check(!again, &path, "log-image-check", || {
                format!("{LOG} records more than one image check for this file")
            });
        }
        if !self.check(n > 0, LOG, "log-start", || "the log is empty".into()) {
            return log;
        }
        let first = first_event.unwrap_or_default();
        self.check(first == "session_start", LOG, "log-start", || {
            format!("first record is {first:?}, not session_start")
        });
        let head = prev_hash;
        match info.head.as_deref() {
            Some(want) => {
                self.check(head == want, LOG, "log-head", || {
                    format!("chain head is {head}, {BAG_INFO} Log-Chain-Head-SHA256 says {want}")
                });
            }
            None => self.fail(BAG_INFO, "log-head", "no usable Log-Chain-Head-SHA256"),
        }
        let Some((last_line, last_ev, end_rec)) = last_event else {
            return log;
        };
        if !self.check(last_ev == "session_end", LOG, "log-end", || {
            format!("last record (line {last_line}) is {last_ev:?}, not session_end: the acquisition crashed or the log was cut")
        }) {
            return log;
        }
        let state = end_rec.get("state").and_then(Value::as_str);
        let bag_state = info.state.as_deref();
        self.check(
            state.is_some() && state == bag_state,
            LOG,
            "acquisition-state",
            || {
                format!(
                    "session_end state {} differs from {BAG_INFO} Acquisition-State {}",
                    shown(end_rec.get("state")),
                    bag_state.unwrap_or("(unusable)")
                )
            },
        );
        for (key, counted) in [("artifacts", counts.0), ("errors", counts.1)] {
            let said = end_rec.get(key).and_then(Value::as_u64);
            self.check(said == Some(counted), LOG, "log-end-counts", || {
                format!(
                    "session_end {key} is {}, the log has {counted}",
                    shown(end_rec.get(key))
                )
            });
        }
        if state == Some("complete") {
            let partial: Vec<&str> = log
                .artifacts
                .iter()
                .filter(|a| !a.complete)
                .map(|a| a.path.as_str())
                .collect();
            self.check(
                partial.is_empty() && !interrupted,
                LOG,
                "acquisition-state",
                || {
                    format!(
                        "state is complete but the log holds {} partial artifact(s){}",
                        partial.len(),
                        if interrupted {
                            " and an interruption"
                        } else {
                            ""
                        }
                    )
                },
            );
        }
        self.check_tier_order(&log);
        log
    }

    fn artifact_record(
        &mut self,
        rec: &Map<String, Value>,
        line: u64,
        at: &str,
        image_checks: &mut Vec<(String, bool)>,
    ) -> Option<Artifact> {
        let s = |k: &str| rec.get(k).and_then(Value::as_str).map(str::to_string);
        let u = |k: &str| rec.get(k).and_then(Value::as_u64);
        let mut missing: Vec<&str> = Vec::new();
        for k in ["endpoint", "object", "path", "tier"] {
            if s(k).is_none() {
                missing.push(k);
            }
        }
        for k in ["start", "end"] {
            if !s(k).is_some_and(|t| is_utc_timestamp(&t)) {
                missing.push(k);
            }
        }
        for k in ["sha256", "readback_sha256"] {
            if !s(k).is_some_and(|h| is_hex64(&h)) {
                missing.push(k);
            }
        }
        for k in ["bytes", "disk_bytes", "start_mono_ns"] {
            if u(k).is_none() {
                missing.push(k);
            }
        }
        if u("status").is_none_or(|s| s > 999) {
            missing.push("status");
        }
        let complete = rec.get("complete").and_then(Value::as_bool);
        if complete.is_none() {
            missing.push("complete");
        }
        let tar = match rec.get("tar") {
            None => None,
            Some(t) if t.get("error").is_some_and(Value::is_string) => Some(LoggedTar::Failed),
            Some(t) => match (
                t.get("entries").and_then(Value::as_u64),
                t.get("end_offset").and_then(Value::as_u64),
                t.get("trailing_zero_bytes"),
            ) {
                (Some(entries), Some(end_offset), tz) if tz.is_none_or(Value::is_u64) => {
                    Some(LoggedTar::Summary {
                        entries,
                        end_offset,
                        trailing_zero_bytes: tz.and_then(Value::as_u64),
                    })
                }
                _ => {
                    missing.push("tar (entries and end_offset, or error)");
                    None
                }
            },
        };
        let image_ok = match rec.get("image_check") {
            None => None,
            Some(ic) => match ic.get("ok").and_then(Value::as_bool) {
                Some(b) => Some(b),
                None => {
                    missing.push("image_check.ok");
                    None
                }
            },
        };
        if rec.get("derived_from").is_some_and(|d| !d.is_string()) {
            missing.push("derived_from");
        }
        if !self.check(missing.is_empty(), LOG, "log-artifact-fields", || {
            format!(
                "{at}: artifact record lacks or has malformed: {}",
                missing.join(", ")
            )
        }) {
            return None;
        }
        let a = Artifact {
            line,
            path: s("path").unwrap_or_default(),
            endpoint: s("endpoint").unwrap_or_default(),
            object: s("object").unwrap_or_default(),
            sha256: s("sha256").unwrap_or_default(),
            readback_sha256: s("readback_sha256").unwrap_or_default(),
            disk_bytes: u("disk_bytes").unwrap_or_default(),
            start_mono_ns: u("start_mono_ns").unwrap_or_default(),
            complete: complete.unwrap_or(false),
            tar,
            derived_from: s("derived_from"),
        };
        if let Some(ok) = image_ok {
            image_checks.push((a.path.clone(), ok));
        }
        let tier = s("tier").unwrap_or_default();
        let tier_ok = ALL_TIERS.contains(&tier.as_str())
            && a.path
                .strip_prefix("data/")
                .and_then(|p| p.strip_prefix(tier.as_str()))
                .is_some_and(|r| r.starts_with('/'));
        self.check(tier_ok, LOG, "log-artifact-tier", || {
            format!(
                "{at}: tier {tier:?} is unknown or does not match path {}",
                a.path
            )
        });
        if a.complete {
            self.check(a.readback_sha256 == a.sha256, &a.path, "log-readback", || {
                format!(
                    "{at}: complete artifact whose read-back hash {} differs from the stream hash {}",
                    a.readback_sha256, a.sha256
                )
            });
        }
        Some(a)
    }

    fn check_tier_order(&mut self, log: &Log) {
        let mut firsts: Vec<(&str, u64)> = Vec::new();
        for tier in ORDERED_TIERS {
            let prefix = format!("data/{tier}/");
            // The record's tier was checked against its path, so the path decides.
            let first = log
                .artifacts
                .iter()
                .filter(|a| a.path.starts_with(&prefix))
                .map(|a| a.start_mono_ns)
                .min();
            if let Some(f) = first {
                firsts.push((tier, f));
            }
        }
        for w in firsts.windows(2) {
            let ((t0, m0), (t1, m1)) = (w[0], w[1]);
            self.check(m0 <= m1, LOG, "tier-order", || {
                format!(
                    "tier {t1} started (start_mono_ns {m1}) before tier {t0} (start_mono_ns {m0}): \
                     not collected in order of volatility"
                )
            });
        }
    }

    fn cross_check(
        &mut self,
        log: &Log,
        manifest: &BTreeMap<String, String>,
        hashed: &BTreeMap<String, Hashed>,
    ) {
        let logged: BTreeSet<&str> = log.artifacts.iter().map(|a| a.path.as_str()).collect();
        for path in manifest.keys() {
            self.check(
                logged.contains(path.as_str()),
                path,
                "manifest-in-log",
                || format!("listed in {MANIFEST} but no artifact record in {LOG}"),
            );
        }
        for a in &log.artifacts {
            let at = format!("{LOG} line {}", a.line);
            let Some(want) = manifest.get(&a.path) else {
                self.fail(
                    &a.path,
                    "log-in-manifest",
                    format!("{at} records this artifact but {MANIFEST} does not list it"),
                );
                continue;
            };
            self.check(
                *want == a.readback_sha256,
                &a.path,
                "log-manifest-sha256",
                || {
                    format!(
                        "{at} records sha256 {} (read-back), {MANIFEST} says {want}",
                        a.readback_sha256
                    )
                },
            );
            if let Some(size) = self.files.get(&a.path).copied() {
                self.check(size == a.disk_bytes, &a.path, "log-manifest-size", || {
                    format!(
                        "{at} records disk_bytes {}, the file has {size}",
                        a.disk_bytes
                    )
                });
            }
            if a.complete {
                self.check(*want == a.sha256, &a.path, "log-manifest-sha256", || {
                    format!(
                        "{at} records stream sha256 {}, {MANIFEST} says {want}",
                        a.sha256
                    )
                });
            }
            // Partial tars get their note from check_tars, with where the tar stops.
            let is_tar = hashed.get(&a.path).is_some_and(|h| h.tar.is_some());
            if !a.complete && !is_tar {
                self.report.notes.push(format!(
                    "known-partial: {}: recorded incomplete by the collector, kept as received",
                    a.path
                ));
            }
        }
        for a in &log.artifacts {
            if let Some(src) = &a.derived_from {
                let ok = src != &a.path && logged.contains(src.as_str());
                self.check(ok, &a.path, "log-derived-from", || {
                    format!(
                        "{LOG} line {}: derived_from {src} is not another artifact in the log",
                        a.line
                    )
                });
            }
        }
        for (line, p) in &log.error_paths {
            self.check(manifest.contains_key(p), LOG, "log-error-path", || {
                format!("line {line}: error record points at {p}, which {MANIFEST} does not list")
            });
        }
    }

    fn check_tars(&mut self, log: &Log, hashed: &BTreeMap<String, Hashed>) {
        let by_path: BTreeMap<&str, &Artifact> =
            log.artifacts.iter().map(|a| (a.path.as_str(), a)).collect();
        for (path, h) in hashed {
            let Some(result) = &h.tar else {
                continue;
            };
            let artifact = by_path.get(path.as_str());
            let partial = artifact.is_some_and(|a| !a.complete);
            match result {
                Ok(_) if partial => {
                    self.report.checks += 1;
                    self.report.notes.push(format!(
                        "known-partial: {path}: recorded incomplete by the collector, yet the \
                         tar parses to its end-of-archive marker"
                    ));
                }
                Ok(summary) => {
                    self.report.checks += 1;
                    match artifact.and_then(|a| a.tar.as_ref()) {
                        Some(LoggedTar::Summary {
                            entries,
                            end_offset,
                            trailing_zero_bytes,
                        }) => {
                            let same = *entries == summary.entries
                                && *end_offset == summary.end_offset
                                && trailing_zero_bytes
                                    .is_none_or(|t| t == summary.trailing_zero_bytes);
                            self.check(same, path, "tar-summary", || {
                                format!(
                                    "log records {entries} entries ending at {end_offset} \
                                     (trailing zeros {}), the tar has {} entries ending at {} \
                                     (trailing zeros {})",
                                    trailing_zero_bytes.map_or("-".into(), |t| t.to_string()),
                                    summary.entries,
                                    summary.end_offset,
                                    summary.trailing_zero_bytes
                                )
                            });
                        }
                        Some(LoggedTar::Failed) => self.fail(
                            path,
                            "tar-summary",
                            "the log records a tar error for a complete artifact, yet the tar \
                             parses",
                        ),
                        None => {}
                    }
                }
                Err(e) if partial => {
                    self.report.checks += 1;
                    self.report.notes.push(format!(
                        "known-partial: {path}: tar stops at offset {}: {}",
                        e.offset, e.detail
                    ));
                }
                Err(e) => self.fail(
                    path,
                    "tar",
                    format!(
                        "does not parse to the end-of-archive marker: offset {}: {}",
                        e.offset, e.detail
                    ),
                ),
            }
        }
    }

    fn check_images(&mut self, log: &Log) {
        for a in &log.artifacts {
            if !a.path.starts_with("data/60-images/") || a.endpoint != IMAGE_GET {
                continue;
            }
            if !a.complete {
                self.report.notes.push(format!(
                    "known-partial: {}: image save incomplete, image digests not checked",
                    a.path
                ));
                continue;
            }
            // Only what the walk saw as a regular file: the log's path is not trusted.
            if !self.files.contains_key(&a.path) {
                continue;
            }
            let expected = expected_image_id(&a.object);
            match crate::image_check::check_file(&self.root.join(&a.path), expected.as_deref()) {
                Ok(rep) => {
                    if rep.ok {
                        self.report.checks += 1;
                    } else if rep.failures.is_empty() {
                        self.fail(
                            &a.path,
                            "image-check",
                            format!("{} layout: image check failed", rep.layout),
                        );
                    }
                    for f in &rep.failures {
                        self.fail(
                            &a.path,
                            "image-check",
                            format!("{} layout: {f}", rep.layout),
                        );
                    }
                    if let Some(&logged) = log.image_checks.get(&a.path) {
                        self.check(logged == rep.ok, &a.path, "image-check-log", || {
                            format!(
                                "the log records image_check ok={logged}, verification gives ok={}",
                                rep.ok
                            )
                        });
                    }
                }
                Err(e) => self.fail(
                    &a.path,
                    "image-check",
                    format!("cannot read the image tar: {e}"),
                ),
            }
        }
    }

    fn check_signature(&mut self, pubkey: Option<&Path>) {
        let present = self.files.contains_key(SIG);
        let Some(key) = pubkey else {
            if present {
                self.report.signature = Some("signature present, not checked: no --pubkey".into());
            }
            return;
        };
        if !self.check(present, SIG, "signature", || {
            "--pubkey given but the bag has no signature".into()
        }) {
            self.report.signature = Some("missing".into());
            return;
        }
        let (Some(sig), Some(msg)) = (
            self.read_small(SIG, "signature"),
            self.read_small(TAGMANIFEST, "signature"),
        ) else {
            return;
        };
        let Ok(sig) = String::from_utf8(sig) else {
            self.fail(SIG, "signature", "not UTF-8");
            return;
        };
        match crate::sign::verify_sig(key, &msg, &sig) {
            Ok(()) => {
                self.report.checks += 1;
                let fp = crate::sign::read_public_key(key)
                    .map(|k| crate::sign::fingerprint(&k))
                    .unwrap_or_default();
                self.report.signature = Some(format!("valid, signed by pinned key {fp}"));
            }
            Err(e) => {
                self.report.signature = Some(format!("INVALID: {e}"));
                self.fail(SIG, "signature", e);
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum LineEnd {
    Eof,
    Newline,
    Unterminated,
    TooLong,
}

/// A JSON value as it appears in the log, for failure messages.
fn shown(v: Option<&Value>) -> String {
    v.map_or_else(|| "(missing)".to_string(), Value::to_string)
}

/// Read one line (without its "\n") into `out`, never holding more than `max` bytes.
fn read_line_bounded(
    r: &mut dyn BufRead,
    max: usize,
    out: &mut Vec<u8>,
) -> std::io::Result<LineEnd> {
    out.clear();
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(if out.is_empty() {
                LineEnd::Eof
            } else {
                LineEnd::Unterminated
            });
        }
        let (take, found) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (buf.len(), false),
        };
        if out.len() + take > max {
            return Ok(LineEnd::TooLong);
        }
        out.extend_from_slice(&buf[..take]);
        r.consume(if found { take + 1 } else { take });
        if found {
            return Ok(LineEnd::Newline);
        }
    }
}

/// "<64 lowercase hex>  <path>", exactly as DAC writes it. RFC 8493 would also accept other
/// whitespace and uppercase hex; refusing them means no byte of a manifest can change
/// without the verifier noticing, even where the change would mean the same thing.
fn parse_manifest_line(line: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(line).ok()?;
    let hash = text.get(..64)?;
    let path = text.get(64..)?.strip_prefix("  ")?;
    if !is_hex64(hash) || path.is_empty() {
        return None;
    }
    Some((hash.to_string(), path.to_string()))
}

/// Undo the only escapes RFC 8493 defines for manifest paths: %0A, %0D and %25.
fn decode_manifest_path(p: &str) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(p.len());
    let mut rest = p;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3).unwrap_or("");
        match esc.to_ascii_uppercase().as_str() {
            "%0A" => out.push('\n'),
            "%0D" => out.push('\r'),
            "%25" => out.push('%'),
            _ => return Err(format!("bad percent escape {esc:?}")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Why a bundle-relative path is unsafe, if it is.
fn unsafe_path(p: &str) -> Option<&'static str> {
    if p.is_empty() {
        Some("empty path")
    } else if p.starts_with('/') {
        Some("absolute path")
    } else if p.contains('\\') {
        Some("backslash in path")
    } else if p.chars().any(char::is_control) {
        Some("control character in path")
    } else if p.split('/').any(|c| c == "..") {
        Some("\"..\" component in path")
    } else if p.split('/').any(|c| c.is_empty() || c == ".") {
        Some("empty or \".\" component in path")
    } else {
        None
    }
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// "YYYY-MM-DDTHH:MM:SS[.fraction]Z".
fn is_utc_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 || b[b.len() - 1] != b'Z' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let t = s.get(r)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let seps = b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':' && b[16] == b':';
    let fields = (
        num(0..4),
        num(5..7),
        num(8..10),
        num(11..13),
        num(14..16),
        num(17..19),
    );
    let (Some(_), Some(mo), Some(d), Some(h), Some(mi), Some(se)) = fields else {
        return false;
    };
    let ranges = (1..=12).contains(&mo) && (1..=31).contains(&d) && h <= 23 && mi <= 59 && se <= 60;
    let tail = &s[19..s.len() - 1];
    let frac_ok = tail.is_empty()
        || (tail.len() >= 2
            && tail.len() <= 10
            && tail.starts_with('.')
            && tail[1..].bytes().all(|c| c.is_ascii_digit()));
    seps && ranges && frac_ok
}

/// The image ID to hold a saved image to, when the collector asked by ID.
fn expected_image_id(object: &str) -> Option<String> {
    if let Some(h) = object.strip_prefix("sha256:") {
        if is_hex64(h) {
            return Some(object.to_string());
        }
    }
    if is_hex64(object) {
        return Some(format!("sha256:{object}"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const CID: &str = "3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a";
    const IID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const SESSION: &str = "aa55aa55aa55aa55aa55aa55aa55aa55aa55aa55aa55aa55aa55aa55aa55aa55";

    fn sha(b: &[u8]) -> String {
        hex(&Sha256::digest(b))
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dac-verify-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A ustar archive with regular files, ending in the two zero blocks.
    fn make_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, data) in files {
            let mut h = [0u8; 512];
            h[..name.len()].copy_from_slice(name.as_bytes());
            h[100..108].copy_from_slice(b"0000644\0");
            h[108..116].copy_from_slice(b"0000000\0");
            h[116..124].copy_from_slice(b"0000000\0");
            h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
            h[136..148].copy_from_slice(b"14712345670\0");
            h[148..156].copy_from_slice(b"        ");
            h[156] = b'0';
            h[257..263].copy_from_slice(b"ustar\0");
            h[263..265].copy_from_slice(b"00");
            let sum: u32 = h.iter().map(|&b| b as u32).sum();
            h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
            out.extend_from_slice(&h);
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.resize(out.len() + 1024, 0);
        out
    }

    struct Item {
        path: String,
        tier: &'static str,
        endpoint: &'static str,
        object: String,
        data: Vec<u8>,
        start_mono_ns: u64,
        complete: bool,
        derived_from: Option<String>,
    }

    fn item(path: String, tier: &'static str, endpoint: &'static str, data: &[u8], t: u64) -> Item {
        Item {
            path,
            tier,
            endpoint,
            object: CID.to_string(),
            data: data.to_vec(),
            start_mono_ns: t,
            complete: true,
            derived_from: None,
        }
    }

    struct Spec {
        items: Vec<Item>,
        image_checks: Vec<(String, bool)>,
        errors: Vec<Value>,
        state: &'static str,
    }

    fn default_spec() -> Spec {
        let raw_log = b"\x01\x00\x00\x00\x00\x00\x00\x06hello\n".to_vec();
        let mut stdout_log = item(
            format!("data/40-logs/{CID}/stdout.log"),
            "40-logs",
            "/containers/{id}/logs",
            b"hello\n",
            410,
        );
        stdout_log.derived_from = Some(format!("data/40-logs/{CID}/logs.raw"));
        Spec {
            items: vec![
                item(
                    "data/00-host/info.json".into(),
                    "00-host",
                    "/info",
                    b"{\"ID\":\"host\"}",
                    100,
                ),
                item(
                    format!("data/10-volatile/{CID}/top.json"),
                    "10-volatile",
                    "/containers/{id}/top",
                    b"{\"Processes\":[]}",
                    200,
                ),
                item(
                    format!("data/30-metadata/containers/{CID}/inspect.json"),
                    "30-metadata",
                    "/containers/{id}/json",
                    b"{\"Id\":\"x\"}",
                    300,
                ),
                item(
                    format!("data/40-logs/{CID}/logs.raw"),
                    "40-logs",
                    "/containers/{id}/logs",
                    &raw_log,
                    400,
                ),
                stdout_log,
                item(
                    format!("data/50-filesystem/containers/{CID}/export.tar"),
                    "50-filesystem",
                    "/containers/{id}/export",
                    &make_tar(&[("etc/hostname", b"web-1\n"), ("empty", b"")]),
                    500,
                ),
            ],
            image_checks: Vec::new(),
            errors: Vec::new(),
            state: "complete",
        }
    }

    fn write(root: &Path, rel: &str, data: &[u8]) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    fn log_line(prev: &str, seq: u64, event: &str, mut fields: Value) -> String {
        let m = fields.as_object_mut().unwrap();
        m.insert("seq".into(), json!(seq));
        m.insert(
            "ts_utc".into(),
            json!(format!("2026-12-02T15:16:{:02}.000000001Z", seq % 60)),
        );
        m.insert("mono_ns".into(), json!(seq * 1000));
        m.insert("event".into(), json!(event));
        m.insert("prev_sha256".into(), json!(prev));
        serde_json::to_string(&fields).unwrap()
    }

    /// The bundle writer of the contract, cut down to what verification reads.
    fn write_bag(root: &Path, spec: &Spec) {
        write(root, BAGIT, BAGIT_TXT);
        let mut lines: Vec<String> = Vec::new();
        let mut prev = "0".repeat(64);
        let mut push = |event: &str, fields: Value, lines: &mut Vec<String>| {
            let l = log_line(&prev, lines.len() as u64, event, fields);
            prev = sha(l.as_bytes());
            lines.push(l);
        };
        push(
            "session_start",
            json!({"tool": "dac", "version": "0.2.0", "argv": ["dac", "collect"],
                   "endpoint": "unix:///var/run/docker.sock", "endpoint_source": "default",
                   "api_version": "1.47", "server": {"Api-Version": "1.47"},
                   "tls_peer_sha256": null, "clock": {"daemon": "2026-12-02T15:16:00Z"}}),
            &mut lines,
        );
        let mut total = 0u64;
        for it in &spec.items {
            write(root, &it.path, &it.data);
            total += it.data.len() as u64;
            let h = sha(&it.data);
            let mut rec = json!({
                "endpoint": it.endpoint, "object": it.object, "path": it.path, "tier": it.tier,
                "bytes": it.data.len(), "sha256": h, "readback_sha256": h,
                "disk_bytes": it.data.len(), "status": 200,
                "start": "2026-12-02T15:16:38Z", "end": "2026-12-02T15:16:39Z",
                "start_mono_ns": it.start_mono_ns, "complete": it.complete,
            });
            if let Some(d) = &it.derived_from {
                rec["derived_from"] = json!(d);
            }
            if it.path.ends_with(".tar") {
                // As the collector records it: a summary, or the error and where it stopped.
                let mut w = TarWalker::new();
                rec["tar"] = match w.push(&it.data).and_then(|_| w.finish()) {
                    Ok(s) => json!({"entries": s.entries, "end_offset": s.end_offset,
                                    "trailing_zero_bytes": s.trailing_zero_bytes}),
                    Err(e) => json!({"error": e.detail, "offset": e.offset}),
                };
            }
            push("artifact", rec, &mut lines);
        }
        for (path, ok) in &spec.image_checks {
            push(
                "image_check",
                json!({"endpoint": "/images/{name}/get", "object": format!("sha256:{IID}"),
                       "path": path, "image_check": {"ok": ok, "layout": "oci+docker",
                       "checks": 3, "failures": []}}),
                &mut lines,
            );
        }
        for e in &spec.errors {
            push("error", e.clone(), &mut lines);
        }
        push(
            "session_end",
            json!({"state": spec.state, "artifacts": spec.items.len(),
                   "errors": spec.errors.len(), "bytes": total}),
            &mut lines,
        );
        let log: String = lines.iter().map(|l| format!("{l}\n")).collect();
        write(root, LOG, log.as_bytes());

        let mut files: Vec<(String, String, u64)> = spec
            .items
            .iter()
            .map(|i| (i.path.clone(), sha(&i.data), i.data.len() as u64))
            .collect();
        files.sort();
        let manifest: String = files
            .iter()
            .map(|(p, h, _)| format!("{h}  {p}\n"))
            .collect();
        write(root, MANIFEST, manifest.as_bytes());

        let info = crate::case::CaseInfo {
            case_id: "CASE-1",
            examiner: "Examiner",
            organization: "Lab",
            tool_version: "0.2.0",
            start_utc: "2026-12-02T15:16:00Z",
            end_utc: "2026-12-02T15:17:00Z",
            endpoint: "unix:///var/run/docker.sock",
            session_id: SESSION,
        };
        let graph = crate::case::graph(&info, &files);
        write(
            root,
            "metadata/case.jsonld",
            &serde_json::to_vec_pretty(&graph).unwrap(),
        );
        write(root, "metadata/environment.json", b"{\"tool\":\"dac\"}\n");
        write(root, "metadata/clock.json", b"{\"probes\":[]}\n");

        let head = sha(lines.last().unwrap().as_bytes());
        let bag_info = format!(
            "Source-Organization: Lab\nContact-Name: Examiner\nExternal-Identifier: CASE-1\n\
             Bagging-Date: 2026-12-02\nBag-Software-Agent: dac 0.2.0\nPayload-Oxum: {total}.{}\n\
             Acquisition-Start: 2026-12-02T15:16:00Z\nAcquisition-End: 2026-12-02T15:17:00Z\n\
             Acquisition-State: {}\nLog-Chain-Head-SHA256: {head}\n",
            spec.items.len(),
            spec.state
        );
        write(root, BAG_INFO, bag_info.as_bytes());
        rewrite_tagmanifest(root);
    }

    /// What someone covering their tracks does after editing a tag file.
    fn rewrite_tagmanifest(root: &Path) {
        let mut tags: Vec<String> = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let rel = p.strip_prefix(root).unwrap().to_str().unwrap().to_string();
                if rel == "data" || rel == TAGMANIFEST || rel == SIG {
                    continue;
                }
                if p.is_dir() {
                    stack.push(p);
                } else {
                    tags.push(rel);
                }
            }
        }
        tags.sort();
        let text: String = tags
            .iter()
            .map(|t| format!("{}  {t}\n", sha(&std::fs::read(root.join(t)).unwrap())))
            .collect();
        write(root, TAGMANIFEST, text.as_bytes());
    }

    fn fresh(name: &str) -> PathBuf {
        let d = tmpdir(name);
        let bag = d.join("bag");
        write_bag(&bag, &default_spec());
        bag
    }

    fn run(bag: &Path) -> Report {
        verify_bundle(bag, None).unwrap()
    }

    fn show(r: &Report) -> String {
        serde_json::to_string_pretty(&r.to_json()).unwrap()
    }

    fn assert_fails(r: &Report, check: &str) {
        assert!(!r.ok(), "expected failure {check}, got pass: {}", show(r));
        assert!(
            r.failures.iter().any(|f| f.check == check),
            "expected a {check} failure: {}",
            show(r)
        );
    }

    fn cleanup(bag: &Path) {
        let _ = std::fs::remove_dir_all(bag.parent().unwrap());
    }

    fn edit(bag: &Path, rel: &str, f: impl FnOnce(String) -> String) {
        let p = bag.join(rel);
        let s = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, f(s)).unwrap();
    }

    #[test]
    fn valid_bundle_passes_and_runs_are_identical() {
        let bag = fresh("valid");
        let r = run(&bag);
        assert!(r.ok(), "{}", show(&r));
        assert!(r.checks > 50, "{}", r.checks);
        assert!(r.notes.is_empty());
        assert!(r.signature.is_none());
        let again = run(&bag);
        assert_eq!(show(&r), show(&again));
        cleanup(&bag);
    }

    #[test]
    fn tamper_flipped_payload_byte() {
        let bag = fresh("flip");
        let p = bag.join(format!("data/30-metadata/containers/{CID}/inspect.json"));
        let mut b = std::fs::read(&p).unwrap();
        b[2] ^= 0x20;
        std::fs::write(&p, b).unwrap();
        let r = run(&bag);
        assert_fails(&r, "payload-sha256");
        assert_eq!(r.failures.len(), 1, "{}", show(&r));
        cleanup(&bag);
    }

    #[test]
    fn tamper_added_payload_file() {
        let bag = fresh("added");
        write(&bag, "data/00-host/planted.json", b"{}");
        let r = run(&bag);
        assert_fails(&r, "payload-listed");
        assert_fails(&r, "payload-oxum");
        cleanup(&bag);
    }

    #[test]
    fn tamper_edited_log_line() {
        let bag = fresh("editlog");
        edit(&bag, LOG, |s| {
            s.replacen("\"status\":200", "\"status\":201", 1)
        });
        let r = run(&bag);
        assert_fails(&r, "tag-sha256");
        assert_fails(&r, "log-chain");
        // Even with the tag manifest recomputed, the chain still breaks.
        rewrite_tagmanifest(&bag);
        let r = run(&bag);
        assert_fails(&r, "log-chain");
        cleanup(&bag);
    }

    #[test]
    fn tamper_deleted_log_line_with_tagmanifest_recomputed() {
        let bag = fresh("dellog");
        edit(&bag, LOG, |s| {
            let mut lines: Vec<&str> = s.lines().collect();
            lines.remove(2);
            lines.iter().map(|l| format!("{l}\n")).collect()
        });
        rewrite_tagmanifest(&bag);
        let r = run(&bag);
        assert_fails(&r, "log-chain");
        assert_fails(&r, "log-seq");
        assert_fails(&r, "manifest-in-log");
        assert!(
            r.failures.iter().all(|f| !f.check.starts_with("tag-")),
            "{}",
            show(&r)
        );
        cleanup(&bag);
    }

    #[test]
    fn tamper_extra_tag_file() {
        let bag = fresh("extratag");
        write(&bag, "metadata/notes.txt", b"nothing to see\n");
        let r = run(&bag);
        assert_fails(&r, "tag-listed");
        assert_eq!(r.failures.len(), 1, "{}", show(&r));
        cleanup(&bag);
    }

    #[test]
    fn tamper_dotdot_absolute_and_backslash_paths_in_manifest() {
        for (name, bad) in [
            ("dotdot", "data/../bagit.txt"),
            ("abs", "/etc/passwd"),
            ("bslash", "data\\00-host\\info.json"),
            ("dotdot2", "data/00-host/../../../../etc/passwd"),
        ] {
            let bag = fresh(name);
            edit(&bag, MANIFEST, |s| {
                s.replacen("data/00-host/info.json", bad, 1)
            });
            rewrite_tagmanifest(&bag);
            let r = run(&bag);
            assert_fails(&r, "manifest-path");
            assert_fails(&r, "payload-listed");
            cleanup(&bag);
        }
    }

    #[test]
    fn tamper_symlink_in_data() {
        let bag = fresh("symlink");
        std::os::unix::fs::symlink("/etc/passwd", bag.join("data/00-host/passwd")).unwrap();
        let r = run(&bag);
        assert_fails(&r, "no-symlink");
        assert_eq!(r.failures.len(), 1, "{}", show(&r));
        cleanup(&bag);

        // A symlinked directory must not be followed either, even when listed.
        let bag = fresh("symlinkdir");
        let outside = bag.parent().unwrap().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::rename(bag.join("data/00-host"), outside.join("00-host")).unwrap();
        std::os::unix::fs::symlink(outside.join("00-host"), bag.join("data/00-host")).unwrap();
        let r = run(&bag);
        assert_fails(&r, "no-symlink");
        assert_fails(&r, "payload-present");
        cleanup(&bag);
    }

    #[test]
    fn special_file_in_bag_fails() {
        let bag = fresh("socket");
        let _l = std::os::unix::net::UnixListener::bind(bag.join("data/00-host/sock")).unwrap();
        let r = run(&bag);
        assert_fails(&r, "no-special-file");
        cleanup(&bag);
    }

    #[test]
    fn tamper_tier_order_violation() {
        let d = tmpdir("tier");
        let bag = d.join("bag");
        let mut spec = default_spec();
        // The export started before the volatile tier was touched.
        spec.items[5].start_mono_ns = 150;
        write_bag(&bag, &spec);
        let r = run(&bag);
        assert_fails(&r, "tier-order");
        assert!(
            r.failures.iter().all(|f| f.check == "tier-order"),
            "{}",
            show(&r)
        );
        cleanup(&bag);
    }

    #[test]
    fn tamper_wrong_head() {
        let bag = fresh("head");
        edit(&bag, BAG_INFO, |s| {
            let i = s.find("Log-Chain-Head-SHA256: ").unwrap() + 23;
            format!("{}{}\n", &s[..i], "ab".repeat(32))
        });
        rewrite_tagmanifest(&bag);
        let r = run(&bag);
        assert_fails(&r, "log-head");
        assert_eq!(r.failures.len(), 1, "{}", show(&r));
        cleanup(&bag);
    }

    #[test]
    fn truncated_log_without_session_end_fails() {
        let bag = fresh("noend");
        edit(&bag, LOG, |s| {
            let mut lines: Vec<&str> = s.lines().collect();
            lines.pop();
            lines.iter().map(|l| format!("{l}\n")).collect()
        });
        // Even a consistent head does not excuse the missing session_end.
        let last = std::fs::read_to_string(bag.join(LOG)).unwrap();
        let head = sha(last.lines().last().unwrap().as_bytes());
        edit(&bag, BAG_INFO, |s| {
            let i = s.find("Log-Chain-Head-SHA256: ").unwrap() + 23;
            format!("{}{head}\n", &s[..i])
        });
        rewrite_tagmanifest(&bag);
        let r = run(&bag);
        assert_fails(&r, "log-end");
        cleanup(&bag);
    }

    #[test]
    fn record_appended_after_session_end_fails() {
        let bag = fresh("afterend");
        edit(&bag, LOG, |s| format!("{s}{{\"event\":\"note\"}}\n"));
        rewrite_tagmanifest(&bag);
        let r = run(&bag);
        assert_fails(&r, "log-end");
        assert_fails(&r, "log-head");
        cleanup(&bag);

        let bag = fresh("garbage");
        edit(&bag, LOG, |s| format!("{s}not json\n"));
        rewrite_tagmanifest(&bag);
        let r = run(&bag);
        assert_fails(&r, "log-json");
        assert_fails(&r, "log-end");
        cleanup(&bag);
    }

    #[test]
    fn payload_removed_from_manifest_is_still_in_the_log() {
        // Delete a file, its manifest line, fix Payload-Oxum and the tag manifest: BagIt is
        // satisfied, the log is not.
        let bag = fresh("logonly");
        let rel = format!("data/10-volatile/{CID}/top.json");
        let len = std::fs::metadata(bag.join(&rel)).unwrap().len();
        std::fs::remove_file(bag.join(&rel)).unwrap();
        edit(&bag, MANIFEST, |s| {
            s.lines()
                .filter(|l| !l.ends_with(&rel))
                .map(|l| format!("{l}\n"))
                .collect()
        });
        edit(&bag, BAG_INFO, |s| {
            let i = s.find("Payload-Oxum: ").unwrap() + 14;
            let j = i + s[i..].find('\n').unwrap();
            let (b, c) = s[i..j].split_once('.').unwrap();
            let b: u64 = b.parse::<u64>().unwrap() - len;
            let c: u64 = c.parse::<u64>().unwrap() - 1;
            format!("{}{b}.{c}{}", &s[..i], &s[j..])
        });
        rewrite_tagmanifest(&bag);
        let r = run(&bag);
        assert_fails(&r, "log-in-manifest");
        assert_eq!(r.failures.len(), 1, "{}", show(&r));
        cleanup(&bag);
    }

    #[test]
    fn state_mismatch_fails() {
        let bag = fresh("state");
        edit(&bag, BAG_INFO, |s| {
            s.replace("Acquisition-State: complete", "Acquisition-State: partial")
        });
        rewrite_tagmanifest(&bag);
        let r = run(&bag);
        assert_fails(&r, "acquisition-state");
        cleanup(&bag);
    }

    #[test]
    fn duplicate_manifest_entry_and_missing_payload_fail() {
        let bag = fresh("dup");
        edit(&bag, MANIFEST, |s| {
            let first = s.lines().next().unwrap().to_string();
            format!("{first}\n{s}")
        });
        rewrite_tagmanifest(&bag);
        let r = run(&bag);
        assert_fails(&r, "manifest-duplicate");
        cleanup(&bag);

        let bag = fresh("missing");
        std::fs::remove_file(bag.join(format!("data/10-volatile/{CID}/top.json"))).unwrap();
        let r = run(&bag);
        assert_fails(&r, "payload-present");
        assert_fails(&r, "payload-oxum");
        cleanup(&bag);
    }

    #[test]
    fn bagit_txt_must_be_exact() {
        let bag = fresh("bagittxt");
        write(
            &bag,
            BAGIT,
            b"BagIt-Version: 0.97\nTag-File-Character-Encoding: UTF-8\n",
        );
        rewrite_tagmanifest(&bag);
        let r = run(&bag);
        assert_fails(&r, "bagit-txt");
        cleanup(&bag);
    }

    #[test]
    fn incomplete_error_record_fails() {
        let d = tmpdir("errrec");
        let bag = d.join("bag");
        let mut spec = default_spec();
        spec.state = "partial";
        spec.errors
            .push(json!({"kind": "http", "endpoint": "/containers/{id}/top",
                                "object": CID, "detail": "500"}));
        write_bag(&bag, &spec);
        let r = run(&bag);
        assert_fails(&r, "log-error-fields");
        assert_eq!(r.failures.len(), 1, "{}", show(&r));
        cleanup(&bag);
    }

    #[test]
    fn partial_tar_is_a_note_not_a_failure() {
        let d = tmpdir("partial");
        let bag = d.join("bag");
        let mut spec = default_spec();
        let full = make_tar(&[("etc/hostname", b"web-1\n"), ("big", &[7u8; 3000])]);
        let path = spec.items[5].path.clone();
        spec.items[5].data = full[..1700].to_vec();
        spec.items[5].complete = false;
        spec.state = "partial";
        spec.errors.push(
            json!({"kind": "truncated", "endpoint": "/containers/{id}/export",
                                "object": CID, "offset": 1700, "detail": "connection reset",
                                "path": path}),
        );
        write_bag(&bag, &spec);
        let r = run(&bag);
        assert!(r.ok(), "{}", show(&r));
        assert!(
            r.notes
                .iter()
                .any(|n| n.starts_with("known-partial") && n.contains("tar stops")),
            "{:?}",
            r.notes
        );

        // The same broken tar claimed complete is a failure.
        let bag2 = d.join("bag2");
        spec.items[5].complete = true;
        spec.state = "complete";
        spec.errors.clear();
        write_bag(&bag2, &spec);
        let r = run(&bag2);
        assert_fails(&r, "tar");
        cleanup(&bag);
    }

    #[test]
    fn saved_image_failing_its_digest_checks_fails() {
        let d = tmpdir("image");
        let bag = d.join("bag");
        let mut spec = default_spec();
        let mut img = item(
            format!("data/60-images/{IID}/save.tar"),
            "60-images",
            "/images/{name}/get",
            &make_tar(&[("hello.txt", b"not an image\n")]),
            600,
        );
        img.object = format!("sha256:{IID}");
        spec.image_checks.push((img.path.clone(), false));
        spec.items.push(img);
        write_bag(&bag, &spec);
        let r = run(&bag);
        assert_fails(&r, "image-check");
        // The separate image_check record the collector writes is understood.
        assert!(
            r.failures
                .iter()
                .all(|f| f.check.starts_with("image-check")),
            "{}",
            show(&r)
        );
        cleanup(&bag);
    }

    #[test]
    fn signature_pinned_key() {
        let d = tmpdir("sig");
        let bag = d.join("bag");
        write_bag(&bag, &default_spec());
        let (k1, p1) = (d.join("examiner.key"), d.join("examiner.pub"));
        crate::sign::keygen(&k1, &p1).unwrap();

        // --pubkey but no signature.
        let r = verify_bundle(&bag, Some(&p1)).unwrap();
        assert_fails(&r, "signature");

        let tm = std::fs::read(bag.join(TAGMANIFEST)).unwrap();
        write(
            &bag,
            SIG,
            crate::sign::sign_file(&k1, &tm).unwrap().as_bytes(),
        );
        let r = verify_bundle(&bag, Some(&p1)).unwrap();
        assert!(r.ok(), "{}", show(&r));
        assert!(r.signature.as_deref().unwrap().starts_with("valid"));
        let r = run(&bag);
        assert!(r.ok(), "{}", show(&r));
        assert_eq!(
            r.signature.as_deref(),
            Some("signature present, not checked: no --pubkey")
        );

        // Whole bag rebuilt and re-signed with another key: fine on its own terms, refused
        // against the pinned key.
        edit(&bag, LOG, |s| {
            s.replacen("\"status\":200", "\"status\":201", 1)
        });
        rewrite_tagmanifest(&bag);
        let (k2, p2) = (d.join("forger.key"), d.join("forger.pub"));
        crate::sign::keygen(&k2, &p2).unwrap();
        let tm = std::fs::read(bag.join(TAGMANIFEST)).unwrap();
        write(
            &bag,
            SIG,
            crate::sign::sign_file(&k2, &tm).unwrap().as_bytes(),
        );
        let r = verify_bundle(&bag, Some(&p1)).unwrap();
        assert_fails(&r, "signature");
        let f = r.failures.iter().find(|f| f.check == "signature").unwrap();
        assert!(f.detail.contains("different key"), "{}", f.detail);

        // A tag manifest changed after signing.
        write(
            &bag,
            SIG,
            crate::sign::sign_file(&k1, &tm).unwrap().as_bytes(),
        );
        edit(&bag, TAGMANIFEST, |s| s.replacen('a', "b", 1));
        let r = verify_bundle(&bag, Some(&p1)).unwrap();
        assert_fails(&r, "signature");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn not_a_directory_is_an_error() {
        let d = tmpdir("notdir");
        write(&d, "file", b"x");
        assert!(verify_bundle(&d.join("file"), None).is_err());
        assert!(verify_bundle(&d.join("absent"), None).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn empty_directory_fails_without_panicking() {
        let d = tmpdir("empty");
        let r = verify_bundle(&d, None).unwrap();
        assert!(!r.ok());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn flood_of_bad_manifest_lines_is_capped() {
        let bag = fresh("flood");
        let junk = "x\n".repeat(MAX_FAILURES + 50);
        edit(&bag, MANIFEST, |s| format!("{s}{junk}"));
        let r = run(&bag);
        assert_eq!(r.failures.len(), MAX_FAILURES + 1);
        let last = r.failures.last().unwrap();
        assert_eq!(last.check, "too-many-failures");
        assert!(last.detail.starts_with("5"), "{}", last.detail);
        cleanup(&bag);
    }

    /// Corrupt the tag files byte by byte: every mutation is caught and none panics.
    #[test]
    fn mutated_tag_files_never_pass_or_panic() {
        let bag = fresh("mutate");
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for rel in [BAGIT, BAG_INFO, MANIFEST, TAGMANIFEST, LOG] {
            let orig = std::fs::read(bag.join(rel)).unwrap();
            for _ in 0..40 {
                let mut b = orig.clone();
                let i = (next() % b.len() as u64) as usize;
                match next() % 4 {
                    0 => b[i] ^= 1 << (next() % 8),
                    1 => b.truncate(i),
                    2 => b.insert(i, (next() % 256) as u8),
                    _ => {
                        b.remove(i);
                    }
                }
                std::fs::write(bag.join(rel), &b).unwrap();
                let r = run(&bag);
                assert!(!r.ok(), "mutation of {rel} at {i} passed");
            }
            std::fs::write(bag.join(rel), &orig).unwrap();
        }
        assert!(run(&bag).ok());
        cleanup(&bag);
    }

    #[test]
    fn helpers() {
        assert!(is_utc_timestamp("2026-12-02T15:16:38.123456789Z"));
        assert!(is_utc_timestamp("2026-12-02T15:16:38Z"));
        for bad in [
            "2026-12-02T15:16:38",
            "2026-12-02 15:16:38Z",
            "2026-13-02T15:16:38Z",
            "2026-12-02T15:16:38.Z",
            "2026-12-02T15:16:38+00:00",
            "2026-12-02T15:16:38.1234567890Z",
            "é026-12-02T15:16:38Z",
        ] {
            assert!(!is_utc_timestamp(bad), "{bad}");
        }
        assert!(unsafe_path("data/a/b").is_none());
        for bad in ["", "/a", "a/../b", "..", "a//b", "a/./b", "a\\b", "a/\u{1}"] {
            assert!(unsafe_path(bad).is_some(), "{bad:?}");
        }
        assert_eq!(decode_manifest_path("a%0Ab%25%0d").unwrap(), "a\nb%\r");
        assert!(decode_manifest_path("a%2e%2e").is_err());
        assert!(decode_manifest_path("a%").is_err());
        assert!(parse_manifest_line(b"zz  data/x").is_none());
        let h = "a".repeat(64);
        assert_eq!(
            parse_manifest_line(format!("{h}  data/x y").as_bytes()),
            Some((h.clone(), "data/x y".into()))
        );
        for bad in [
            format!("{h}data/x"),
            format!("{h} data/x"),
            format!("{h}\tdata/x"),
            format!("{h}  "),
            format!("{}  data/x", "A".repeat(64)),
        ] {
            assert!(parse_manifest_line(bad.as_bytes()).is_none(), "{bad}");
        }
        assert_eq!(expected_image_id(IID), Some(format!("sha256:{IID}")));
        assert_eq!(expected_image_id("nginx:latest"), None);

        let mut out = Vec::new();
        let mut r = BufReader::new(&b"abc\ndefgh"[..]);
        assert_eq!(
            read_line_bounded(&mut r, 4, &mut out).unwrap(),
            LineEnd::Newline
        );
        assert_eq!(out, b"abc");
        assert_eq!(
            read_line_bounded(&mut r, 4, &mut out).unwrap(),
            LineEnd::TooLong
        );
        let mut r = BufReader::new(&b"ab"[..]);
        assert_eq!(
            read_line_bounded(&mut r, 4, &mut out).unwrap(),
            LineEnd::Unterminated
        );
        assert_eq!(
            read_line_bounded(&mut r, 4, &mut out).unwrap(),
            LineEnd::Eof
        );
    }
}
