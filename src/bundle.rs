//! The one place that writes evidence: a BagIt 1.0 bag (RFC 8493) with a hash-chained
//! acquisition log. Payload files are hashed while they are written, then read back and hashed
//! again; the log is flushed per record; sealing writes the manifests and bag-info last.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::clock;
use crate::error::{Error, Kind, Result};
use crate::transport::hex;

/// Volatility tiers, in collection order.
pub const TIER_HOST: &str = "00-host";
pub const TIER_VOLATILE: &str = "10-volatile";
pub const TIER_EVENTS: &str = "20-events";
pub const TIER_METADATA: &str = "30-metadata";
pub const TIER_LOGS: &str = "40-logs";
pub const TIER_FILESYSTEM: &str = "50-filesystem";
pub const TIER_IMAGES: &str = "60-images";
/// Every tier, in collection order.
pub const TIERS: [&str; 7] = [
    TIER_HOST,
    TIER_VOLATILE,
    TIER_EVENTS,
    TIER_METADATA,
    TIER_LOGS,
    TIER_FILESYSTEM,
    TIER_IMAGES,
];
/// Tiers whose first requests must start in this order (most volatile first). Host facts are
/// cheap and events stream for the whole session, so those two are exempt.
pub const ORDERED_TIERS: [&str; 5] = [
    TIER_VOLATILE,
    TIER_METADATA,
    TIER_LOGS,
    TIER_FILESYSTEM,
    TIER_IMAGES,
];

pub const LOG_PATH: &str = "logs/acquisition.jsonl";
pub const SIG_NAME: &str = "tagmanifest-sha256.txt.sig";
const RESERVE: &str = ".dac-reserve";
/// Kept free so that a full disk still leaves room to log the failure and seal the bag.
const RESERVE_BYTES: usize = 1 << 20;
const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A safe file name for an object: a full lowercase hex ID as is, anything else (names, tags,
/// hostile strings) as `x-` and the SHA-256 of its bytes. Tenants never choose our file names.
pub fn name_for(raw: &str) -> String {
    let id = raw.strip_prefix("sha256:").unwrap_or(raw);
    if id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        id.to_string()
    } else {
        format!("x-{}", hex(&Sha256::digest(raw.as_bytes())))
    }
}

/// SHA-256 and length of a file, read in bounded chunks.
pub fn hash_path(path: &Path) -> io::Result<(String, u64)> {
    let file = File::open(path)?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    hash_file(&file, size)
}

/// SHA-256 and length of an open file from its start, with a buffer sized to `size` (a hint).
fn hash_file(file: &File, size: u64) -> io::Result<(String, u64)> {
    let mut buf = vec![
        0u8;
        usize::try_from(size.saturating_add(1))
            .unwrap_or(CHUNK)
            .clamp(4096, CHUNK)
    ];
    let mut hasher = Sha256::new();
    let total = hash_span(file, 0, u64::MAX, &mut hasher, &mut buf)?;
    Ok((hex(&hasher.finalize()), total))
}

/// Read-back chunk.
const CHUNK: usize = 1 << 20;

/// Feed `file[from..upto]` (or to its end, whichever comes first) into `hasher` with positioned
/// reads, which leave the file's own offset alone so a writer may share it. Returns where the
/// reading stopped.
fn hash_span(
    file: &File,
    from: u64,
    upto: u64,
    hasher: &mut Sha256,
    buf: &mut [u8],
) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut at = from;
    while at < upto {
        let len = usize::try_from(upto - at)
            .unwrap_or(buf.len())
            .min(buf.len());
        let n = match file.read_at(&mut buf[..len], at) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    Ok(at)
}

/// Hashes a large payload's bytes back from the file while the transfer is still arriving, on
/// its own thread, so that the read-back costs the transfer almost nothing at its end.
struct Trailer {
    flushed: std::sync::mpsc::Sender<u64>,
    done: std::thread::JoinHandle<io::Result<(String, u64)>>,
}

/// A payload gets a trailing reader once this much of it has reached the file, and tells it
/// of every further step.
const TRAIL_AFTER: u64 = 8 << 20;
const TRAIL_STEP: u64 = 1 << 20;

impl Trailer {
    fn start(file: File) -> io::Result<Trailer> {
        let (tx, rx) = std::sync::mpsc::channel::<u64>();
        let done = std::thread::Builder::new()
            .name("dac-readback".into())
            .spawn(move || {
                let mut hasher = Sha256::new();
                let mut buf = vec![0u8; CHUNK];
                let mut at = 0u64;
                // Read up to what the writer has flushed; when it is done (the sender is
                // dropped after the last flush), read to the end of the file.
                while let Ok(upto) = rx.recv() {
                    let upto = rx.try_iter().last().unwrap_or(upto);
                    at = hash_span(&file, at, upto, &mut hasher, &mut buf)?;
                }
                at = hash_span(&file, at, u64::MAX, &mut hasher, &mut buf)?;
                Ok((hex(&hasher.finalize()), at))
            })?;
        Ok(Trailer { flushed: tx, done })
    }

    /// Wait for the reader to reach the end of the (closed for writing) file.
    fn finish(self) -> io::Result<(String, u64)> {
        drop(self.flushed);
        self.done
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the read-back thread stopped")))
    }
}

struct LogState {
    file: Option<File>,
    seq: u64,
    prev: String,
}

/// An open evidence bag.
pub struct Bundle {
    root: PathBuf,
    started: Instant,
    log: Mutex<LogState>,
    files: Mutex<BTreeMap<String, (String, u64)>>,
    /// Folders under data/ already made, so each is made once.
    dirs: Mutex<BTreeSet<PathBuf>>,
}

/// What a finished payload file holds.
#[derive(Debug, Clone)]
pub struct Written {
    /// Bag-relative path, `data/...`.
    pub path: String,
    /// Bytes received and hashed on the way in.
    pub bytes: u64,
    pub sha256: String,
    /// The file as it is on disk, read back after closing.
    pub readback_sha256: String,
    pub disk_bytes: u64,
}

/// Bag-level facts for bag-info.txt and the CASE graph.
#[derive(Debug, Clone, Default)]
pub struct BagInfo {
    pub organization: String,
    pub examiner: String,
    pub case_id: String,
    pub endpoint: String,
    pub start_utc: String,
    pub session_id: String,
    pub sign_key: Option<PathBuf>,
}

/// The result of sealing.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub tagmanifest_sha256: String,
    pub head: String,
    pub payload_files: u64,
    pub payload_bytes: u64,
}

impl Bundle {
    /// Open a new bag at `out`, which must not exist or be an empty folder.
    pub fn create(out: &Path) -> Result<Arc<Bundle>> {
        match fs::symlink_metadata(out) {
            Ok(meta) => {
                if !meta.is_dir() {
                    return Err(Error::usage(format!(
                        "--out {} exists and is not a folder",
                        out.display()
                    )));
                }
                let mut entries = fs::read_dir(out).map_err(|e| Error::io(out.display(), e))?;
                if entries.next().is_some() {
                    return Err(Error::usage(format!(
                        "--out {} is not empty; give a new or empty folder so no evidence is mixed",
                        out.display()
                    )));
                }
            }
            Err(_) => fs::create_dir_all(out)
                .map_err(|e| Error::io(format!("cannot create {}", out.display()), e))?,
        }
        for dir in ["data", "logs", "metadata"] {
            fs::create_dir(out.join(dir))
                .map_err(|e| Error::io(format!("cannot create {}", out.join(dir).display()), e))?;
        }
        fs::write(
            out.join("bagit.txt"),
            "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n",
        )
        .map_err(|e| Error::io("cannot write bagit.txt", e))?;
        // The reserve is written first and freed when the disk fills, so the log and the seal
        // still fit.
        let _ = fs::write(out.join(RESERVE), vec![0u8; RESERVE_BYTES]);
        let log = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(out.join(LOG_PATH))
            .map_err(|e| Error::io(format!("cannot create {LOG_PATH}"), e))?;
        Ok(Arc::new(Bundle {
            root: out.to_path_buf(),
            started: Instant::now(),
            log: Mutex::new(LogState {
                file: Some(log),
                seq: 0,
                prev: ZERO_HASH.to_string(),
            }),
            files: Mutex::new(BTreeMap::new()),
            dirs: Mutex::new(BTreeSet::new()),
        }))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Nanoseconds since the bag was opened, on the monotonic clock.
    pub fn mono_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    /// Free the disk reserve (on a full disk) so the log and the seal can still be written.
    pub fn release_reserve(&self) {
        let _ = fs::remove_file(self.root.join(RESERVE));
    }

    /// Append one record to the hash-chained log and flush it.
    pub fn log(&self, event: &str, fields: Map<String, Value>) -> Result<()> {
        let mut state = self
            .log
            .lock()
            .map_err(|_| Error::new(Kind::Io, "acquisition log lock poisoned"))?;
        let mut record = fields;
        record.insert("seq".into(), json!(state.seq));
        record.insert("ts_utc".into(), json!(clock::utc_now()));
        record.insert("mono_ns".into(), json!(self.mono_ns()));
        record.insert("event".into(), json!(event));
        record.insert("prev_sha256".into(), json!(state.prev));
        let line = serde_json::to_string(&Value::Object(record))
            .map_err(|e| Error::new(Kind::Io, format!("cannot encode log record: {e}")))?;
        let file = state
            .file
            .as_mut()
            .ok_or_else(|| Error::new(Kind::Io, "the acquisition log is already closed"))?;
        let mut bytes = line.clone().into_bytes();
        bytes.push(b'\n');
        if let Err(e) = file.write_all(&bytes) {
            if e.kind() == io::ErrorKind::StorageFull {
                self.release_reserve();
                file.write_all(&bytes)
                    .map_err(|e| Error::io("cannot append to the acquisition log", e))?;
            } else {
                return Err(Error::io("cannot append to the acquisition log", e));
            }
        }
        state.prev = hex(&Sha256::digest(line.as_bytes()));
        state.seq += 1;
        Ok(())
    }

    /// Start a payload file at `data/<rel>`. `rel` is built from tiers, IDs via [`name_for`],
    /// and fixed words only; it is still checked so nothing lands outside the bag.
    pub fn payload(self: &Arc<Self>, rel: &str) -> Result<Payload> {
        if rel.is_empty()
            || rel.starts_with('/')
            || rel
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
            || rel.bytes().any(|b| b < 0x20 || b == b'\\' || b >= 0x7f)
        {
            return Err(Error::new(
                Kind::Io,
                format!("refusing unsafe bundle path {rel:?}"),
            ));
        }
        let full = self.root.join("data").join(rel);
        if let Some(parent) = full.parent() {
            let made = self
                .dirs
                .lock()
                .map(|d| d.contains(parent))
                .unwrap_or(false);
            if !made {
                fs::create_dir_all(parent).map_err(|e| {
                    self.disk_error(format!("cannot create {}", parent.display()), e)
                })?;
                if let Ok(mut d) = self.dirs.lock() {
                    d.insert(parent.to_path_buf());
                }
            }
        }
        // Readable too: the read-back uses the same open file.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&full)
            .map_err(|e| self.disk_error(format!("cannot create data/{rel}"), e))?;
        Ok(Payload {
            bundle: self.clone(),
            path: format!("data/{rel}"),
            full,
            file: io::BufWriter::with_capacity(256 * 1024, file),
            hasher: Sha256::new(),
            bytes: 0,
            failed: None,
            finished: false,
            trailer: None,
            announced: 0,
        })
    }

    fn disk_error(&self, context: String, e: io::Error) -> Error {
        if e.kind() == io::ErrorKind::StorageFull {
            self.release_reserve();
        }
        Error::io(context, e)
    }

    fn register(&self, path: &str, sha: &str, size: u64) {
        if let Ok(mut files) = self.files.lock() {
            files.insert(path.to_string(), (sha.to_string(), size));
        }
    }

    /// Write the manifests, bag-info, metadata and CASE graph, optionally sign, and close.
    pub fn seal(&self, info: &BagInfo, state: &str, metadata: &[(&str, Value)]) -> Result<Sealed> {
        self.release_reserve();
        let head = {
            let mut log = self
                .log
                .lock()
                .map_err(|_| Error::new(Kind::Io, "acquisition log lock poisoned"))?;
            if let Some(f) = log.file.take() {
                f.sync_all()
                    .map_err(|e| Error::io("cannot sync the acquisition log", e))?;
            }
            log.prev.clone()
        };
        let files = self
            .files
            .lock()
            .map_err(|_| Error::new(Kind::Io, "file list lock poisoned"))?
            .clone();
        let end_utc = clock::utc_now();
        for (name, value) in metadata {
            let text = serde_json::to_string_pretty(value).unwrap_or_default();
            self.write_tag(&format!("metadata/{name}"), text.as_bytes())?;
        }
        let listed: Vec<(String, String, u64)> = files
            .iter()
            .map(|(p, (h, n))| (p.clone(), h.clone(), *n))
            .collect();
        let case_info = crate::case::CaseInfo {
            case_id: &info.case_id,
            examiner: &info.examiner,
            organization: &info.organization,
            tool_version: env!("CARGO_PKG_VERSION"),
            start_utc: &info.start_utc,
            end_utc: &end_utc,
            endpoint: &info.endpoint,
            session_id: &info.session_id,
        };
        self.write_tag_with("metadata/case.jsonld", |w| {
            crate::case::write_graph(w, &case_info, &listed)
        })?;
        let mut manifest = String::new();
        let mut total = 0u64;
        for (path, (sha, size)) in &files {
            manifest.push_str(&format!("{sha}  {path}\n"));
            total += size;
        }
        self.write_tag("manifest-sha256.txt", manifest.as_bytes())?;
        let bag_info = format!(
            "Source-Organization: {}\nContact-Name: {}\nExternal-Identifier: {}\nBagging-Date: {}\n\
             Bag-Software-Agent: dac {} (Docker API Collector)\nPayload-Oxum: {}.{}\n\
             Acquisition-Start: {}\nAcquisition-End: {}\nAcquisition-State: {}\nLog-Chain-Head-SHA256: {}\n",
            one_line(&info.organization),
            one_line(&info.examiner),
            one_line(&info.case_id),
            end_utc.get(..10).unwrap_or(""),
            env!("CARGO_PKG_VERSION"),
            total,
            files.len(),
            info.start_utc,
            end_utc,
            state,
            head
        );
        self.write_tag("bag-info.txt", bag_info.as_bytes())?;
        let mut tags = vec![
            "bagit.txt".to_string(),
            "bag-info.txt".to_string(),
            "manifest-sha256.txt".to_string(),
            LOG_PATH.to_string(),
        ];
        let meta: Vec<String> = fs::read_dir(self.root.join("metadata"))
            .map_err(|e| Error::io("cannot list metadata/", e))?
            .filter_map(|e| e.ok())
            .map(|e| format!("metadata/{}", e.file_name().to_string_lossy()))
            .collect();
        tags.extend(meta);
        tags.sort();
        let mut tagmanifest = String::new();
        for tag in &tags {
            let (sha, _) = hash_path(&self.root.join(tag))
                .map_err(|e| Error::io(format!("cannot hash {tag}"), e))?;
            tagmanifest.push_str(&format!("{sha}  {tag}\n"));
        }
        self.write_tag("tagmanifest-sha256.txt", tagmanifest.as_bytes())?;
        if let Some(key) = &info.sign_key {
            let sig = crate::sign::sign_file(key, tagmanifest.as_bytes())?;
            self.write_tag(SIG_NAME, sig.as_bytes())?;
        }
        Ok(Sealed {
            tagmanifest_sha256: hex(&Sha256::digest(tagmanifest.as_bytes())),
            head,
            payload_files: files.len() as u64,
            payload_bytes: total,
        })
    }

    fn write_tag(&self, rel: &str, bytes: &[u8]) -> Result<()> {
        self.write_tag_with(rel, |w| w.write_all(bytes))
    }

    /// Write a tag file through a buffered writer, flush and sync it.
    fn write_tag_with(
        &self,
        rel: &str,
        fill: impl FnOnce(&mut io::BufWriter<File>) -> io::Result<()>,
    ) -> Result<()> {
        let path = self.root.join(rel);
        let f =
            File::create(&path).map_err(|e| self.disk_error(format!("cannot write {rel}"), e))?;
        let mut w = io::BufWriter::new(f);
        fill(&mut w)
            .and_then(|_| w.flush())
            .map_err(|e| self.disk_error(format!("cannot write {rel}"), e))?;
        w.get_ref()
            .sync_all()
            .map_err(|e| self.disk_error(format!("cannot sync {rel}"), e))
    }
}

/// Tag-file values stay on one line whatever the examiner typed.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A payload file being written: bytes are hashed as they arrive.
pub struct Payload {
    bundle: Arc<Bundle>,
    path: String,
    full: PathBuf,
    file: io::BufWriter<File>,
    hasher: Sha256,
    bytes: u64,
    failed: Option<String>,
    finished: bool,
    /// The read-back of a large payload, running behind the writer.
    trailer: Option<Trailer>,
    /// How far the trailer has been told the file is flushed.
    announced: u64,
}

impl Drop for Payload {
    /// A payload abandoned mid-transfer (a task stopped by force) is still listed with what
    /// reached the disk, so no file in the bag is ever left unlisted.
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.file.flush();
            match hash_path(&self.full) {
                Ok((sha, size)) => self.bundle.register(&self.path, &sha, size),
                Err(_) => {
                    let _ = fs::remove_file(&self.full);
                }
            }
        }
    }
}

impl Payload {
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Hash and write. The hash covers every byte received, even after a write failure, so the
    /// log can still say what the engine sent.
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        self.hasher.update(data);
        self.bytes += data.len() as u64;
        if self.failed.is_some() {
            return Err(Error::new(
                Kind::Io,
                self.failed.clone().unwrap_or_default(),
            ));
        }
        if let Err(e) = self.file.write_all(data) {
            let err = self
                .bundle
                .disk_error(format!("cannot write {}", self.path), e);
            self.failed = Some(err.message.clone());
            return Err(err);
        }
        self.trail();
        Ok(())
    }

    /// Tell the trailing reader how far the file is flushed (starting it for a large file).
    /// Without one, the whole file is read back at the end instead.
    fn trail(&mut self) {
        let flushed = self.bytes - self.file.buffer().len() as u64;
        if flushed < TRAIL_AFTER || flushed < self.announced + TRAIL_STEP {
            return;
        }
        if self.trailer.is_none() {
            self.trailer = self
                .file
                .get_ref()
                .try_clone()
                .and_then(Trailer::start)
                .ok();
        }
        if let Some(t) = &self.trailer {
            let _ = t.flushed.send(flushed);
            self.announced = flushed;
        }
    }

    /// Close, read back, and list the file in the manifest. Whatever reached the disk is
    /// listed, even after a failure, so nothing is left unlisted in the bag.
    pub fn finish(mut self) -> (Written, Option<Error>) {
        self.finished = true;
        let mut error = self.failed.clone().map(|m| Error::new(Kind::Io, m));
        if let Err(e) = self.file.flush() {
            if error.is_none() {
                error = Some(
                    self.bundle
                        .disk_error(format!("cannot write {}", self.path), e),
                );
            }
        }
        let stream_sha = hex(&self.hasher.clone().finalize());
        let readback = match self.trailer.take() {
            Some(t) => t.finish(),
            None => hash_file(self.file.get_ref(), self.bytes),
        };
        let (readback, disk) = match readback {
            Ok(v) => v,
            Err(e) => {
                if error.is_none() {
                    error = Some(Error::io(format!("cannot read back {}", self.path), e));
                }
                (String::new(), 0)
            }
        };
        if readback.is_empty() {
            // A file we cannot read back cannot be listed honestly: remove it.
            let _ = fs::remove_file(&self.full);
        } else {
            self.bundle.register(&self.path, &readback, disk);
            if error.is_none() && (readback != stream_sha || disk != self.bytes) {
                error = Some(Error::new(
                    Kind::Integrity,
                    format!(
                        "{} on disk ({disk} bytes, {readback}) differs from what was received",
                        self.path
                    ),
                ));
            }
        }
        (
            Written {
                path: self.path.clone(),
                bytes: self.bytes,
                sha256: stream_sha,
                readback_sha256: readback,
                disk_bytes: disk,
            },
            error,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("dac-bundle-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        p
    }

    #[test]
    fn names_are_ids_or_hashes() {
        let id = "a".repeat(64);
        assert_eq!(name_for(&id), id);
        assert_eq!(name_for(&format!("sha256:{id}")), id);
        let hostile = name_for("../../etc/passwd\n");
        assert!(hostile.starts_with("x-") && hostile.len() == 66);
        assert!(name_for(&"A".repeat(64)).starts_with("x-"));
    }

    #[test]
    fn log_lines_chain_and_payload_is_hashed_twice() {
        let dir = scratch("chain");
        let bag = Bundle::create(&dir).unwrap();
        bag.log("session_start", Map::new()).unwrap();
        let mut p = bag.payload("30-metadata/info.json").unwrap();
        p.write(b"{}").unwrap();
        let (w, err) = p.finish();
        assert!(err.is_none());
        assert_eq!(w.sha256, w.readback_sha256);
        assert_eq!(w.sha256, hex(&Sha256::digest(b"{}")));
        bag.log("session_end", Map::new()).unwrap();
        let text = fs::read_to_string(dir.join(LOG_PATH)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let second: Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(
            second["prev_sha256"],
            json!(hex(&Sha256::digest(lines[0].as_bytes())))
        );
        assert_eq!(second["seq"], json!(1));
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Deterministic bytes that do not repeat within a chunk.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn large_payload_is_read_back_while_it_arrives() {
        let dir = scratch("trail");
        let bag = Bundle::create(&dir).unwrap();
        let mut p = bag.payload("50-filesystem/big.tar").unwrap();
        let mut all = Sha256::new();
        for i in 0..200u64 {
            let chunk = noise(100 * 1024 + i as usize, i);
            all.update(&chunk);
            p.write(&chunk).unwrap();
        }
        assert!(
            p.trailer.is_some(),
            "no trailing reader past {TRAIL_AFTER} bytes"
        );
        assert!(p.announced >= TRAIL_AFTER);
        let (w, err) = p.finish();
        assert!(err.is_none(), "{err:?}");
        assert_eq!(w.sha256, hex(&all.finalize()));
        assert_eq!(w.readback_sha256, w.sha256);
        assert_eq!(w.disk_bytes, w.bytes);
        assert_eq!(w.bytes, fs::metadata(dir.join(&w.path)).unwrap().len());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn read_back_catches_a_file_that_differs_from_what_was_received() {
        let dir = scratch("differs");
        let bag = Bundle::create(&dir).unwrap();
        // Small (read back at the end) and large (read back while arriving).
        for (name, len) in [("small.json", 5usize), ("large.tar", 12 << 20)] {
            let mut p = bag.payload(&format!("30-metadata/{name}")).unwrap();
            p.write(&noise(len, 7)).unwrap();
            // Something else grows the file behind the writer's back.
            let other = OpenOptions::new()
                .write(true)
                .open(dir.join("data/30-metadata").join(name))
                .unwrap();
            other.set_len(len as u64 + 4096).unwrap();
            let (w, err) = p.finish();
            let err = err.expect("a grown file passed the read-back");
            assert_eq!(err.kind, Kind::Integrity, "{name}: {}", err.message);
            assert_eq!(w.disk_bytes, len as u64 + 4096, "{name}");
            assert_ne!(w.readback_sha256, w.sha256, "{name}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unsafe_paths_and_used_folders_are_refused() {
        let dir = scratch("unsafe");
        let bag = Bundle::create(&dir).unwrap();
        for bad in ["../x", "/etc/x", "a//b", "a/./b", "a\nb", "a\\b"] {
            assert!(bag.payload(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Bundle::create(&dir).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
