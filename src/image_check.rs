//! Intrinsic verification of a saved image tar (`GET /images/get`).
//!
//! The bytes of a save differ between engines, versions and even runs, so the tar's own
//! hash proves little. What can be proved is that its content is what it claims to be:
//! every content-addressed name hashes to its digest, every descriptor matches its blob,
//! and each layer decompresses to the diffID its config lists. The four layouts engines
//! write are handled (see the engine notes, section 6):
//! - "docker-legacy": manifest.json, `<imageID>.json`, `<v1id>/layer.tar` (engine <= 24)
//! - "oci+docker": OCI layout with uncompressed diffID blobs plus manifest.json (engine >= 25)
//! - "oci-containerd": OCI layout with the registry's compressed blobs (containerd store)
//! - "docker-archive": Podman's `<diffID>.tar` and `<configID>.json` plus manifest.json
//!
//! Entries are hashed in place, streaming from their offset in the file, so memory does
//! not grow with layer size.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use serde_json::{json, Value};
use sha2::{Digest, Sha256, Sha512};

use crate::error::{Error, Kind};
use crate::inflate;
use crate::tar::{self, TarEntry};
use crate::transport::hex;

/// Outcome of the verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReport {
    /// No failure.
    pub ok: bool,
    /// "docker-legacy", "oci+docker", "oci-containerd", "docker-archive" or "unknown".
    pub layout: String,
    /// Individual checks made (passed or failed).
    pub checks: u64,
    /// One line per failed check, naming the entry and the check.
    pub failures: Vec<String>,
    /// Configs whose bytes hash to their name ("sha256:<hex>"), i.e. the image IDs the
    /// archive provably contains.
    pub config_ids: Vec<String>,
}

impl ImageReport {
    pub fn to_json(&self) -> Value {
        json!({
            "ok": self.ok,
            "layout": self.layout,
            "checks": self.checks,
            "failures": self.failures,
            "config_ids": self.config_ids,
        })
    }
}

/// Largest JSON document (config, manifest, index) read into memory.
const MAX_JSON: u64 = 16 << 20;
const MAX_LINK_HOPS: usize = 40;
/// Nesting of indexes inside indexes.
const MAX_DEPTH: usize = 8;
/// Failures kept; more are counted in a last line, so a hostile tar cannot grow the report.
const MAX_FAILURES: usize = 500;
const BUF: usize = 64 * 1024;

const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Verifies the image tar at `path`. `expected_id` ("sha256:<hex>") is the image the
/// collector asked for: it must be a verified config digest or, for OCI layouts, a
/// verified index or manifest digest (the containerd store's image ID).
pub fn check_file(path: &Path, expected_id: Option<&str>) -> Result<ImageReport, Error> {
    let file =
        File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let entries = tar::index_file(path).map_err(|e| {
        Error::new(
            Kind::Protocol,
            format!(
                "{} is not a readable tar: {} (offset {})",
                path.display(),
                e.detail,
                e.offset
            ),
        )
    })?;
    let mut c = Checker::new(file, entries);
    c.check_names();
    c.check_links();
    let has_index = c.by_name.contains_key("index.json");
    let has_manifest = c.by_name.contains_key("manifest.json");
    if has_index {
        c.check_oci();
    }
    let mut layer_paths = Vec::new();
    if has_manifest {
        layer_paths = c.check_docker_manifest();
    }
    if !has_index && !has_manifest {
        c.check(false, || {
            "archive: neither manifest.json nor index.json is present".to_string()
        });
    }
    if c.by_name.contains_key("repositories") {
        c.check_repositories();
    }
    if let Some(id) = expected_id {
        c.check_expected(id, has_index);
    }
    let layout = if has_index {
        if c.compressed_layers > 0 || c.nested_index {
            "oci-containerd"
        } else {
            "oci+docker"
        }
    } else if has_manifest {
        let podman = !layer_paths.is_empty()
            && layer_paths
                .iter()
                .all(|p| p.strip_suffix(".tar").is_some_and(is_sha256_hex));
        let podman_files = layer_paths.is_empty()
            && c.entries.iter().any(|e| {
                normalize(&e.name)
                    .and_then(|n| n.strip_suffix(".tar").map(is_sha256_hex))
                    .unwrap_or(false)
            });
        if podman || podman_files {
            "docker-archive"
        } else {
            "docker-legacy"
        }
    } else {
        "unknown"
    };
    Ok(c.into_report(layout))
}

fn is_hex_of_len(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_sha256_hex(s: &str) -> bool {
    is_hex_of_len(s, 64)
}

/// Archive-relative path without "./", empty or "." components; None if ".." escapes.
fn normalize(name: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for p in name.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            _ => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

fn parent(name: &str) -> &str {
    name.rfind('/').and_then(|i| name.get(..i)).unwrap_or("")
}

/// A digest "alg:hex" split, for the algorithms the sha2 crate gives.
fn split_digest(d: &str) -> Option<(&'static str, &str)> {
    let (alg, hexpart) = d.split_once(':')?;
    match alg {
        "sha256" if is_hex_of_len(hexpart, 64) => Some(("sha256", hexpart)),
        "sha512" if is_hex_of_len(hexpart, 128) => Some(("sha512", hexpart)),
        _ => None,
    }
}

/// What the checks need from an image config.
#[derive(Clone)]
struct ConfigDoc {
    rootfs: bool,
    diff_ids: Option<Vec<Option<String>>>,
}

/// A verified digest of a layer's uncompressed content, or why there is none.
#[derive(Clone)]
enum Uncompressed {
    Digest(String),
    Zstd,
    Failed(String),
}

struct Checker {
    file: File,
    entries: Vec<TarEntry>,
    by_name: HashMap<String, usize>,
    /// Directories implied by entry names (save tars need not list them).
    dirs: HashSet<String>,
    checks: u64,
    failures: Vec<String>,
    dropped_failures: u64,
    /// sha256 of entry data, by data offset.
    raw: HashMap<u64, Result<String, String>>,
    /// Decompressed sha256, by data offset (compressed entries only).
    gunzipped: HashMap<u64, Uncompressed>,
    /// Parsed configs, by data offset.
    configs: HashMap<u64, Result<ConfigDoc, String>>,
    config_ids: Vec<String>,
    /// Index and manifest digests whose blobs were verified ("sha256:<hex>").
    targets: Vec<String>,
    /// Manifests and indexes already walked (descriptors may repeat).
    walked: HashSet<String>,
    compressed_layers: u64,
    nested_index: bool,
}

impl Checker {
    fn new(file: File, entries: Vec<TarEntry>) -> Checker {
        Checker {
            file,
            entries,
            by_name: HashMap::new(),
            dirs: HashSet::new(),
            checks: 0,
            failures: Vec::new(),
            dropped_failures: 0,
            raw: HashMap::new(),
            gunzipped: HashMap::new(),
            configs: HashMap::new(),
            config_ids: Vec::new(),
            targets: Vec::new(),
            walked: HashSet::new(),
            compressed_layers: 0,
            nested_index: false,
        }
    }

    fn into_report(mut self, layout: &str) -> ImageReport {
        if self.dropped_failures > 0 {
            self.failures
                .push(format!("... and {} more failures", self.dropped_failures));
        }
        ImageReport {
            ok: self.failures.is_empty(),
            layout: layout.to_string(),
            checks: self.checks,
            failures: self.failures,
            config_ids: self.config_ids,
        }
    }

    fn fail(&mut self, msg: String) {
        if self.failures.len() < MAX_FAILURES {
            self.failures.push(msg);
        } else {
            self.dropped_failures += 1;
        }
    }

    /// Counts a check; records `msg()` if it failed. Returns `ok`.
    fn check(&mut self, ok: bool, msg: impl FnOnce() -> String) -> bool {
        self.checks += 1;
        if !ok {
            let m = msg();
            self.fail(m);
        }
        ok
    }

    fn entry(&self, idx: usize) -> Option<&TarEntry> {
        self.entries.get(idx)
    }

    /// Every name is safe and appears once (a tar with two versions of one name shows
    /// different content to different readers).
    fn check_names(&mut self) {
        let mut seen: HashSet<String> = HashSet::new();
        let mut problems = Vec::new();
        let mut map = HashMap::new();
        let mut dirs = HashSet::new();
        for (i, e) in self.entries.iter().enumerate() {
            let Some(n) = normalize(&e.name) else {
                problems.push(format!("{}: entry name escapes the archive root", e.name));
                continue;
            };
            if e.name.starts_with('/') {
                problems.push(format!("{}: absolute entry name", e.name));
            }
            if !seen.insert(n.clone()) && e.kind != b'5' {
                problems.push(format!("{n}: duplicate entry in the archive"));
            }
            let mut p = parent(&n);
            while !p.is_empty() {
                if !dirs.insert(p.to_string()) {
                    break;
                }
                p = parent(p);
            }
            if e.kind == b'5' {
                dirs.insert(n.clone());
            }
            map.insert(n, i);
        }
        self.checks += 1;
        for p in problems {
            self.fail(p);
        }
        self.by_name = map;
        self.dirs = dirs;
    }

    /// Follows symlinks and hard links from `name` to the final entry.
    fn follow(&self, name: &str) -> Result<usize, String> {
        let mut cur = normalize(name).ok_or_else(|| format!("{name}: path escapes the archive"))?;
        for _ in 0..MAX_LINK_HOPS {
            let idx = *self
                .by_name
                .get(&cur)
                .ok_or_else(|| format!("{cur}: not in the archive"))?;
            let e = self.entry(idx).ok_or("internal: entry index")?;
            let target = match e.kind {
                b'1' => e.link.clone(),
                b'2' if e.link.starts_with('/') => e.link.clone(),
                b'2' => format!("{}/{}", parent(&cur), e.link),
                _ => return Ok(idx),
            };
            cur = normalize(&target)
                .ok_or_else(|| format!("{}: link target {} escapes the archive", e.name, e.link))?;
        }
        Err(format!("{name}: too many levels of links"))
    }

    /// Resolves `name` to a regular file.
    fn resolve(&self, name: &str) -> Result<usize, String> {
        let idx = self.follow(name)?;
        match self.entry(idx) {
            Some(e) if e.kind == b'0' || e.kind == b'7' => Ok(idx),
            Some(e) => Err(format!(
                "{name}: resolves to {} which is not a regular file (type {:?})",
                e.name,
                char::from(e.kind)
            )),
            None => Err("internal: entry index".to_string()),
        }
    }

    /// Every link inside the archive leads somewhere inside it.
    fn check_links(&mut self) {
        let links: Vec<(String, u8, String)> = self
            .entries
            .iter()
            .filter(|e| e.kind == b'1' || e.kind == b'2')
            .map(|e| (e.name.clone(), e.kind, e.link.clone()))
            .collect();
        for (name, kind, link) in links {
            let r = match self.follow(&name) {
                Ok(_) => Ok(()),
                // A symlink to a directory that only exists implicitly is fine.
                Err(e) => {
                    let target = normalize(&if link.starts_with('/') || kind == b'1' {
                        link.clone()
                    } else {
                        format!("{}/{}", parent(&normalize(&name).unwrap_or_default()), link)
                    });
                    match target {
                        Some(t) if kind == b'2' && self.dirs.contains(&t) => Ok(()),
                        _ => Err(e),
                    }
                }
            };
            self.check(r.is_ok(), || {
                format!(
                    "{name}: link to {link} does not resolve: {}",
                    r.err().unwrap_or_default()
                )
            });
        }
    }

    fn reader(&self, idx: usize) -> Result<BufReader<std::io::Take<&File>>, String> {
        let e = self.entry(idx).ok_or("internal: entry index")?;
        let mut f = &self.file;
        f.seek(SeekFrom::Start(e.data_offset))
            .map_err(|err| format!("{}: seek failed: {err}", e.name))?;
        Ok(BufReader::with_capacity(BUF, f.take(e.size)))
    }

    fn read_small(&self, idx: usize) -> Result<Vec<u8>, String> {
        let e = self.entry(idx).ok_or("internal: entry index")?;
        if e.size > MAX_JSON {
            return Err(format!(
                "{}: {} bytes is too large for a JSON document",
                e.name, e.size
            ));
        }
        let mut out = Vec::with_capacity(e.size as usize);
        self.reader(idx)?
            .read_to_end(&mut out)
            .map_err(|err| format!("{}: read failed: {err}", e.name))?;
        if out.len() as u64 != e.size {
            return Err(format!("{}: short read", e.name));
        }
        Ok(out)
    }

    fn read_json_entry(&self, idx: usize) -> Result<Value, String> {
        let bytes = self.read_small(idx)?;
        serde_json::from_slice(&bytes).map_err(|err| {
            let name = self.entry(idx).map(|e| e.name.as_str()).unwrap_or("?");
            format!("{name}: not valid JSON: {err}")
        })
    }

    fn stream(&self, idx: usize, mut f: impl FnMut(&[u8])) -> Result<(), String> {
        let name = self.entry(idx).map(|e| e.name.clone()).unwrap_or_default();
        let size = self.entry(idx).map_or(0, |e| e.size);
        let mut r = self.reader(idx)?;
        let mut buf = vec![0u8; BUF];
        let mut total: u64 = 0;
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    f(buf.get(..n).unwrap_or(&[]));
                    total += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("{name}: read failed: {e}")),
            }
        }
        if total != size {
            return Err(format!("{name}: short read ({total} of {size} bytes)"));
        }
        Ok(())
    }

    /// sha256 (lowercase hex) of an entry's data, computed once.
    fn sha256_of(&mut self, idx: usize) -> Result<String, String> {
        let off = self.entry(idx).ok_or("internal: entry index")?.data_offset;
        if let Some(r) = self.raw.get(&off) {
            return r.clone();
        }
        let mut h = Sha256::new();
        let r = self
            .stream(idx, |c| h.update(c))
            .map(|()| hex(&h.finalize()));
        self.raw.insert(off, r.clone());
        r
    }

    fn digest_of(&mut self, idx: usize, alg: &str) -> Result<String, String> {
        if alg == "sha256" {
            return self.sha256_of(idx);
        }
        let mut h = Sha512::new();
        self.stream(idx, |c| h.update(c))?;
        Ok(hex(&h.finalize()))
    }

    fn first_bytes(&self, idx: usize) -> Vec<u8> {
        let mut b = Vec::with_capacity(4);
        if let Ok(r) = self.reader(idx) {
            let _ = r.take(4).read_to_end(&mut b);
        }
        b
    }

    fn gunzip_sha256(&mut self, idx: usize) -> Uncompressed {
        let Some(off) = self.entry(idx).map(|e| e.data_offset) else {
            return Uncompressed::Failed("internal: entry index".to_string());
        };
        if let Some(u) = self.gunzipped.get(&off) {
            return u.clone();
        }
        let mut h = Sha256::new();
        let u = match self.reader(idx) {
            Ok(mut r) => match inflate::gunzip(&mut r, &mut |c| h.update(c)) {
                Ok(_) => Uncompressed::Digest(hex(&h.finalize())),
                Err(e) => Uncompressed::Failed(e),
            },
            Err(e) => Uncompressed::Failed(e),
        };
        self.gunzipped.insert(off, u.clone());
        u
    }

    /// Checks that the layer at `idx` is, or decompresses to, content with `diff_id`.
    fn check_layer(&mut self, idx: usize, name: &str, diff_id: Option<&str>) {
        let Some(want) = diff_id.and_then(|d| d.strip_prefix("sha256:")) else {
            let shown = diff_id.unwrap_or("(none)").to_string();
            self.check(false, || {
                format!("{name}: diff_id {shown} is not a sha256 digest")
            });
            return;
        };
        let raw = self.sha256_of(idx);
        if raw.as_deref() == Ok(want) {
            self.check(true, String::new);
            return;
        }
        if let Err(e) = raw {
            self.check(false, || format!("{name}: layer unreadable: {e}"));
            return;
        }
        let head = self.first_bytes(idx);
        let got = if inflate::is_gzip(&head) {
            self.compressed_layers += 1;
            self.gunzip_sha256(idx)
        } else if inflate::is_zstd(&head) {
            self.compressed_layers += 1;
            Uncompressed::Zstd
        } else {
            Uncompressed::Digest(raw.unwrap_or_default())
        };
        match got {
            Uncompressed::Digest(d) => {
                self.check(d == want, || {
                    format!("{name}: diff_id mismatch: config says sha256:{want}, uncompressed layer is sha256:{d}")
                });
            }
            Uncompressed::Zstd => {
                self.check(false, || {
                    format!("{name}: zstd layer not verifiable (diff_id sha256:{want} not checked; blob digest checked)")
                });
            }
            Uncompressed::Failed(e) => {
                self.check(false, || format!("{name}: layer does not decompress: {e}"));
            }
        }
    }

    /// Parses a config once per entry: a manifest.json with many entries naming the
    /// same config must not make the check re-read it each time.
    fn config_doc(&mut self, idx: usize) -> Result<ConfigDoc, String> {
        let off = self.entry(idx).ok_or("internal: entry index")?.data_offset;
        if let Some(c) = self.configs.get(&off) {
            return c.clone();
        }
        let r = self.read_json_entry(idx).map(|v| ConfigDoc {
            rootfs: v.get("rootfs").is_some(),
            diff_ids: v
                .get("rootfs")
                .and_then(|r| r.get("diff_ids"))
                .and_then(Value::as_array)
                .map(|a| a.iter().map(|v| v.as_str().map(str::to_string)).collect()),
        });
        self.configs.insert(off, r.clone());
        r
    }

    /// `rootfs.diff_ids` of an image config, or a failure.
    fn diff_ids(&mut self, config: &ConfigDoc, name: &str) -> Option<Vec<Option<String>>> {
        self.check(config.diff_ids.is_some(), || {
            format!("{name}: config has no rootfs.diff_ids array")
        });
        config.diff_ids.clone()
    }

    fn add_config_id(&mut self, hexd: &str) {
        let id = format!("sha256:{hexd}");
        if !self.config_ids.contains(&id) {
            self.config_ids.push(id);
        }
    }

    // -----------------------------------------------------------------------
    // manifest.json (every layout has it except a bare OCI layout)

    /// Returns the normalized layer paths of all entries (to tell the layouts apart).
    fn check_docker_manifest(&mut self) -> Vec<String> {
        let mut layer_paths = Vec::new();
        let doc = self
            .resolve("manifest.json")
            .and_then(|i| self.read_json_entry(i));
        let items = match doc {
            Ok(Value::Array(items)) => items,
            Ok(_) => {
                self.check(false, || "manifest.json: not a JSON array".to_string());
                return layer_paths;
            }
            Err(e) => {
                self.check(false, || format!("manifest.json: {e}"));
                return layer_paths;
            }
        };
        self.check(true, String::new);
        for (n, item) in items.iter().enumerate() {
            let ctx = format!("manifest.json[{n}]");
            let Some(config_name) = item.get("Config").and_then(Value::as_str) else {
                self.check(false, || format!("{ctx}: no Config string"));
                continue;
            };
            let layers: Vec<Option<String>> = match item.get("Layers") {
                Some(Value::Array(a)) => a.iter().map(|v| v.as_str().map(str::to_string)).collect(),
                _ => {
                    self.check(false, || format!("{ctx}: no Layers array"));
                    continue;
                }
            };
            if let Some(tags) = item.get("RepoTags") {
                let ok = tags.is_null()
                    || tags
                        .as_array()
                        .is_some_and(|a| a.iter().all(Value::is_string));
                self.check(ok, || format!("{ctx}: RepoTags is not a list of strings"));
            }
            let diff_ids = self.check_config_file(config_name, &ctx);
            if let Some(ids) = &diff_ids {
                let (nl, nd) = (layers.len(), ids.len());
                self.check(nl == nd, || {
                    format!("{ctx}: {nl} layers but the config lists {nd} diff_ids")
                });
            }
            for (i, layer) in layers.iter().enumerate() {
                let Some(layer) = layer else {
                    self.check(false, || format!("{ctx}: Layers[{i}] is not a string"));
                    continue;
                };
                let norm = normalize(layer).unwrap_or_default();
                layer_paths.push(norm.clone());
                let idx = match self.resolve(layer) {
                    Ok(i) => i,
                    Err(e) => {
                        self.check(false, || format!("{ctx}: layer {i}: {e}"));
                        continue;
                    }
                };
                self.check(true, String::new);
                // Podman names layers by their diffID; blob names are checked with the blobs.
                if let Some(h) = norm.strip_suffix(".tar").filter(|h| is_sha256_hex(h)) {
                    let h = h.to_string();
                    let got = self.sha256_of(idx);
                    self.check(got.as_deref() == Ok(h.as_str()), || {
                        format!(
                            "{layer}: content does not hash to its name ({})",
                            show(&got)
                        )
                    });
                }
                if let Some(ids) = &diff_ids {
                    let want = ids.get(i).cloned().flatten();
                    if i < ids.len() {
                        self.check_layer(idx, layer, want.as_deref());
                    }
                }
            }
        }
        layer_paths
    }

    /// Checks a config named by its digest; returns its diff_ids.
    fn check_config_file(&mut self, config_name: &str, ctx: &str) -> Option<Vec<Option<String>>> {
        let idx = match self.resolve(config_name) {
            Ok(i) => i,
            Err(e) => {
                self.check(false, || format!("{ctx}: config: {e}"));
                return None;
            }
        };
        let norm = normalize(config_name).unwrap_or_default();
        let base = norm.rsplit('/').next().unwrap_or("");
        let named = if let Some(h) = norm.strip_prefix("blobs/sha256/") {
            Some(h.to_string())
        } else {
            base.strip_suffix(".json").map(str::to_string)
        }
        .filter(|h| is_sha256_hex(h));
        let got = self.sha256_of(idx);
        match (&named, &got) {
            (Some(want), Ok(g)) => {
                if self.check(want == g, || {
                    format!(
                        "{config_name}: config digest mismatch: named {want}, content sha256:{g}"
                    )
                }) {
                    self.add_config_id(g);
                }
            }
            (None, _) => {
                self.check(false, || {
                    format!("{config_name}: config file name carries no sha256 digest")
                });
            }
            (_, Err(e)) => {
                self.check(false, || format!("{config_name}: {e}"));
            }
        }
        match self.config_doc(idx) {
            Ok(v) => self.diff_ids(&v, config_name),
            Err(e) => {
                self.check(false, || e);
                None
            }
        }
    }

    fn check_repositories(&mut self) {
        let r = self
            .resolve("repositories")
            .and_then(|i| self.read_json_entry(i));
        let ok = match &r {
            Ok(Value::Object(m)) => m.values().all(|v| {
                v.as_object()
                    .is_some_and(|tags| tags.values().all(Value::is_string))
            }),
            _ => false,
        };
        self.check(ok, || match r {
            Err(e) => format!("repositories: {e}"),
            Ok(_) => "repositories: not an object of {repo: {tag: id}}".to_string(),
        });
    }

    // -----------------------------------------------------------------------
    // OCI layout

    fn check_oci(&mut self) {
        let layout = self
            .resolve("oci-layout")
            .and_then(|i| self.read_json_entry(i));
        let ok =
            matches!(&layout, Ok(v) if v.get("imageLayoutVersion").is_some_and(Value::is_string));
        self.check(ok, || match layout {
            Err(e) => format!("oci-layout: {e}"),
            Ok(_) => "oci-layout: no imageLayoutVersion".to_string(),
        });
        self.check_blobs();
        let index = self
            .resolve("index.json")
            .and_then(|i| self.read_json_entry(i));
        let index = match index {
            Ok(v) => v,
            Err(e) => {
                self.check(false, || format!("index.json: {e}"));
                return;
            }
        };
        self.check(
            index.get("schemaVersion").and_then(Value::as_u64) == Some(2),
            || "index.json: schemaVersion is not 2".to_string(),
        );
        let Some(manifests) = index.get("manifests").and_then(Value::as_array) else {
            self.check(false, || "index.json: no manifests array".to_string());
            return;
        };
        for (i, d) in manifests.iter().enumerate() {
            self.walk(d, &format!("index.json manifests[{i}]"), 0, false);
        }
    }

    /// Every file under blobs/ hashes to its name.
    fn check_blobs(&mut self) {
        let blobs: Vec<String> = self
            .entries
            .iter()
            .filter_map(|e| {
                let n = normalize(&e.name)?;
                (n.starts_with("blobs/") && e.kind != b'5').then_some(n)
            })
            .collect();
        for name in blobs {
            let mut parts = name.splitn(3, '/').skip(1);
            let joined = format!(
                "{}:{}",
                parts.next().unwrap_or(""),
                parts.next().unwrap_or("")
            );
            let Some((alg, h)) = split_digest(&joined) else {
                self.check(false, || {
                    format!("{name}: not a blobs/<sha256|sha512>/<hex> name")
                });
                continue;
            };
            let h = h.to_string();
            let target = match self.resolve(&name) {
                Ok(t) => t,
                Err(e) => {
                    self.check(false, || format!("{name}: {e}"));
                    continue;
                }
            };
            let got = self.digest_of(target, alg);
            self.check(got.as_deref() == Ok(h.as_str()), || {
                format!("{name}: blob digest mismatch: content {alg}:{}", show(&got))
            });
        }
    }

    /// Checks a descriptor against its blob; returns the blob entry if present.
    /// `optional`: a missing blob is not a failure (the containerd exporter skips
    /// platforms and attestations it does not have).
    fn descriptor_blob(&mut self, d: &Value, ctx: &str, optional: bool) -> Option<(usize, String)> {
        let digest = d.get("digest").and_then(Value::as_str).unwrap_or("");
        let Some((alg, h)) = split_digest(digest) else {
            self.check(false, || format!("{ctx}: invalid digest {digest:?}"));
            return None;
        };
        let path = format!("blobs/{alg}/{h}");
        let idx = match self.resolve(&path) {
            Ok(i) => i,
            Err(_) if optional && self.follow(&path).is_err() => return None,
            Err(e) => {
                self.check(false, || format!("{ctx}: blob {digest} missing: {e}"));
                return None;
            }
        };
        let size = d.get("size").and_then(Value::as_u64);
        let actual = self.entry(idx).map_or(0, |e| e.size);
        self.check(size == Some(actual), || {
            format!(
                "{ctx}: descriptor size {} but blob {digest} has {actual} bytes",
                size.map_or("(missing)".to_string(), |s| s.to_string())
            )
        });
        let got = self.digest_of(idx, alg);
        let ok = self.check(got.as_deref() == Ok(h), || {
            format!(
                "{ctx}: blob {path} does not match descriptor digest {digest} ({})",
                show(&got)
            )
        });
        ok.then(|| (idx, digest.to_string()))
    }

    fn walk(&mut self, d: &Value, ctx: &str, depth: usize, optional: bool) {
        if depth > MAX_DEPTH {
            self.check(false, || format!("{ctx}: indexes nested too deeply"));
            return;
        }
        let Some((idx, digest)) = self.descriptor_blob(d, ctx, optional) else {
            return;
        };
        if !self.walked.insert(digest.clone()) {
            return;
        }
        let media = d.get("mediaType").and_then(Value::as_str).unwrap_or("");
        let is_json_type = matches!(
            media,
            MT_OCI_INDEX | MT_DOCKER_LIST | MT_OCI_MANIFEST | MT_DOCKER_MANIFEST | ""
        );
        if !is_json_type {
            // Something else referenced from an index (e.g. an artifact): blob checked above.
            return;
        }
        let doc = match self.read_json_entry(idx) {
            Ok(v) => v,
            Err(e) => {
                self.check(false, || format!("{ctx}: {e}"));
                return;
            }
        };
        let is_index = matches!(media, MT_OCI_INDEX | MT_DOCKER_LIST)
            || (media.is_empty() && doc.get("manifests").is_some());
        let ctx = format!("{ctx} ({digest})");
        if is_index {
            self.nested_index = true;
            self.targets.push(digest.clone());
            let Some(children) = doc.get("manifests").and_then(Value::as_array) else {
                self.check(false, || format!("{ctx}: index has no manifests array"));
                return;
            };
            let before = self.walked.len();
            for (i, child) in children.iter().enumerate() {
                self.walk(child, &format!("{ctx} manifests[{i}]"), depth + 1, true);
            }
            let present = self.walked.len() > before
                || children.iter().any(|c| {
                    c.get("digest")
                        .and_then(Value::as_str)
                        .is_some_and(|dg| self.walked.contains(dg))
                });
            self.check(present || children.is_empty(), || {
                format!(
                    "{ctx}: none of the index's {} manifests is in the archive",
                    children.len()
                )
            });
        } else {
            self.targets.push(digest.clone());
            self.check_manifest(&doc, &ctx);
        }
    }

    fn check_manifest(&mut self, doc: &Value, ctx: &str) {
        let Some(config) = doc.get("config") else {
            self.check(false, || format!("{ctx}: manifest has no config"));
            return;
        };
        let cfg_ctx = format!("{ctx} config");
        let mut diff_ids = None;
        if let Some((cidx, cdigest)) = self.descriptor_blob(config, &cfg_ctx, false) {
            match self.config_doc(cidx) {
                Ok(cv) => {
                    if let Some(h) = cdigest.strip_prefix("sha256:") {
                        self.add_config_id(h);
                    }
                    // Artifacts (attestations) have configs without a rootfs; only
                    // image configs have diff_ids to check.
                    if cv.rootfs {
                        diff_ids = self.diff_ids(&cv, &cfg_ctx);
                    }
                }
                Err(e) => {
                    self.check(false, || format!("{cfg_ctx}: {e}"));
                }
            }
        }
        let Some(layers) = doc.get("layers").and_then(Value::as_array) else {
            self.check(false, || format!("{ctx}: manifest has no layers array"));
            return;
        };
        if let Some(ids) = &diff_ids {
            let (nl, nd) = (layers.len(), ids.len());
            self.check(nl == nd, || {
                format!("{ctx}: {nl} layers but the config lists {nd} diff_ids")
            });
        }
        for (i, layer) in layers.iter().enumerate() {
            let lctx = format!("{ctx} layers[{i}]");
            let media = layer.get("mediaType").and_then(Value::as_str).unwrap_or("");
            // Non-distributable layers are left out of saves on purpose.
            let optional = media.contains("foreign") || media.contains("nondistributable");
            let Some((lidx, ldigest)) = self.descriptor_blob(layer, &lctx, optional) else {
                continue;
            };
            if let Some(ids) = &diff_ids {
                if let Some(want) = ids.get(i) {
                    let name = format!("{lctx} ({ldigest})");
                    self.check_layer(lidx, &name, want.as_deref());
                }
            }
        }
    }

    fn check_expected(&mut self, id: &str, oci: bool) {
        let id = id.trim().to_ascii_lowercase();
        let id = if is_sha256_hex(&id) {
            format!("sha256:{id}")
        } else {
            id
        };
        let found = self.config_ids.contains(&id) || (oci && self.targets.contains(&id));
        let configs = self.config_ids.join(", ");
        let targets = self.targets.join(", ");
        self.check(found, || {
            format!("expected image {id} not found among verified configs [{configs}] or manifests/indexes [{targets}]")
        });
    }
}

fn show(r: &Result<String, String>) -> String {
    match r {
        Ok(d) => d.clone(),
        Err(e) => format!("unreadable: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tar::testutil::TarBuilder;

    fn sha(data: &[u8]) -> String {
        hex(&Sha256::digest(data))
    }

    /// gzip with stored blocks only: enough to test decompression without a compressor.
    fn gzip_stored(data: &[u8]) -> Vec<u8> {
        let mut v = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
        let mut chunks = data.chunks(65535).peekable();
        if chunks.peek().is_none() {
            v.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
        }
        while let Some(c) = chunks.next() {
            v.push(u8::from(chunks.peek().is_none()));
            let len = c.len() as u16;
            v.extend_from_slice(&len.to_le_bytes());
            v.extend_from_slice(&(!len).to_le_bytes());
            v.extend_from_slice(c);
        }
        v.extend_from_slice(&crate::inflate::crc32_update(0, data).to_le_bytes());
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v
    }

    fn layer(n: u8) -> Vec<u8> {
        TarBuilder::new()
            .dir("etc/")
            .file(&format!("etc/file{n}"), &vec![n; 1000 + usize::from(n)])
            .finish()
    }

    fn config(diff_ids: &[String]) -> Vec<u8> {
        let ids: Vec<String> = diff_ids.iter().map(|d| format!("sha256:{d}")).collect();
        serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": ids},
        }))
        .unwrap()
    }

    fn write(tag: &str, data: &[u8]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("dac-imgcheck-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(tag);
        std::fs::write(&p, data).unwrap();
        p
    }

    fn check(tag: &str, data: &[u8], expected: Option<&str>) -> ImageReport {
        let p = write(tag, data);
        let r = check_file(&p, expected).unwrap();
        std::fs::remove_file(&p).unwrap();
        r
    }

    fn assert_ok(r: &ImageReport, layout: &str) {
        assert!(r.ok, "failures: {:#?}", r.failures);
        assert_eq!(r.layout, layout);
        assert!(r.checks > 0);
    }

    fn has_failure(r: &ImageReport, needle: &str) -> bool {
        r.failures.iter().any(|f| f.contains(needle))
    }

    /// Engine <= 24 layout, two images sharing a layer through a symlink.
    struct Legacy {
        l1: Vec<u8>,
        l2: Vec<u8>,
        cfg_a: Vec<u8>,
        cfg_b: Vec<u8>,
    }

    impl Legacy {
        fn new() -> Legacy {
            let (l1, l2) = (layer(1), layer(2));
            let cfg_a = config(&[sha(&l1), sha(&l2)]);
            let cfg_b = config(&[sha(&l1)]);
            Legacy {
                l1,
                l2,
                cfg_a,
                cfg_b,
            }
        }
        fn build(&self, tweak: impl FnOnce(&mut Vec<(String, Vec<u8>)>)) -> Vec<u8> {
            let (ca, cb) = (sha(&self.cfg_a), sha(&self.cfg_b));
            let v1a = "a".repeat(64);
            let v1b = "b".repeat(64);
            let v1c = "c".repeat(64);
            let manifest = json!([
                {"Config": format!("{ca}.json"), "RepoTags": ["forensic/app:1.0"],
                 "Layers": [format!("{v1a}/layer.tar"), format!("{v1b}/layer.tar")]},
                {"Config": format!("{cb}.json"), "RepoTags": null,
                 "Layers": [format!("{v1c}/layer.tar")]},
            ]);
            let mut files: Vec<(String, Vec<u8>)> = vec![
                (format!("{v1a}/VERSION"), b"1.0".to_vec()),
                (format!("{v1a}/json"), b"{}".to_vec()),
                (format!("{v1a}/layer.tar"), self.l1.clone()),
                (format!("{v1b}/layer.tar"), self.l2.clone()),
                (format!("{ca}.json"), self.cfg_a.clone()),
                (format!("{cb}.json"), self.cfg_b.clone()),
                (
                    "manifest.json".into(),
                    serde_json::to_vec(&manifest).unwrap(),
                ),
                (
                    "repositories".into(),
                    serde_json::to_vec(&json!({"forensic/app": {"1.0": v1b}})).unwrap(),
                ),
            ];
            tweak(&mut files);
            let mut b = TarBuilder::new();
            b.dir(&format!("{v1a}/"))
                .dir(&format!("{v1b}/"))
                .dir(&format!("{v1c}/"));
            b.symlink(&format!("{v1c}/layer.tar"), &format!("../{v1a}/layer.tar"));
            for (n, d) in &files {
                b.file(n, d);
            }
            b.finish()
        }
    }

    #[test]
    fn legacy_layout_ok() {
        let l = Legacy::new();
        let id = format!("sha256:{}", sha(&l.cfg_a));
        let r = check("legacy", &l.build(|_| {}), Some(&id));
        assert_ok(&r, "docker-legacy");
        assert_eq!(
            r.config_ids,
            vec![id.clone(), format!("sha256:{}", sha(&l.cfg_b))]
        );
        // Bare hex is accepted as an ID too.
        let r = check("legacy2", &l.build(|_| {}), Some(&sha(&l.cfg_b)));
        assert_ok(&r, "docker-legacy");
        let j = r.to_json();
        assert_eq!(j["ok"], true);
        assert_eq!(j["layout"], "docker-legacy");
        assert!(j["checks"].as_u64().unwrap() >= 10);
    }

    #[test]
    fn legacy_layer_corruption_names_the_entry() {
        let l = Legacy::new();
        let t = l.build(|files| {
            let f = files
                .iter_mut()
                .find(|(n, _)| n.ends_with("layer.tar"))
                .unwrap();
            let last = f.1.len() - 1100;
            f.1[last] ^= 1;
        });
        let r = check("legacy-bad-layer", &t, None);
        assert!(!r.ok);
        assert_eq!(r.layout, "docker-legacy");
        // Layer a is used by both images (directly and through the symlink).
        let msgs: Vec<_> = r
            .failures
            .iter()
            .filter(|f| f.contains("diff_id mismatch"))
            .collect();
        assert_eq!(msgs.len(), 2, "{:#?}", r.failures);
        assert!(msgs[0].starts_with(&format!("{}/layer.tar", "a".repeat(64))));
        assert!(msgs[1].starts_with(&format!("{}/layer.tar", "c".repeat(64))));
    }

    #[test]
    fn legacy_config_and_count_failures() {
        let l = Legacy::new();
        let t = l.build(|files| {
            let f = files
                .iter_mut()
                .find(|(n, _)| *n == format!("{}.json", sha(&l.cfg_a)))
                .unwrap();
            f.1 = config(&[sha(&l.l1)]);
        });
        let r = check(
            "legacy-bad-config",
            &t,
            Some(&format!("sha256:{}", sha(&l.cfg_a))),
        );
        assert!(
            has_failure(&r, "config digest mismatch"),
            "{:#?}",
            r.failures
        );
        assert!(has_failure(&r, "2 layers but the config lists 1 diff_ids"));
        assert!(has_failure(&r, "expected image"));
        assert_eq!(r.config_ids, vec![format!("sha256:{}", sha(&l.cfg_b))]);
    }

    #[test]
    fn legacy_missing_and_dangling() {
        let l = Legacy::new();
        let t = l.build(|files| files.retain(|(n, _)| !n.starts_with(&"a".repeat(64))));
        let r = check("legacy-missing", &t, None);
        assert!(has_failure(&r, "not in the archive"), "{:#?}", r.failures);
        assert!(has_failure(&r, "does not resolve"), "{:#?}", r.failures);
    }

    #[test]
    fn expected_id_not_present() {
        let l = Legacy::new();
        let r = check(
            "legacy-expect",
            &l.build(|_| {}),
            Some(&format!("sha256:{}", "0".repeat(64))),
        );
        assert!(!r.ok);
        assert_eq!(r.failures.len(), 1);
        assert!(r.failures[0].contains("expected image sha256:000"));
    }

    /// Engine >= 25 graphdriver: OCI layout with uncompressed blobs and manifest.json.
    fn oci_docker(corrupt: impl FnOnce(&mut Vec<(String, Vec<u8>)>)) -> (Vec<u8>, String, String) {
        let (l1, l2) = (layer(3), layer(4));
        let (d1, d2) = (sha(&l1), sha(&l2));
        let cfg = config(&[d1.clone(), d2.clone()]);
        let c = sha(&cfg);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{c}"), "size": cfg.len()},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{d1}"), "size": l1.len()},
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{d2}"), "size": l2.len()},
            ],
        }))
        .unwrap();
        let m = sha(&manifest);
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MT_OCI_INDEX,
            "manifests": [{"mediaType": MT_OCI_MANIFEST, "digest": format!("sha256:{m}"), "size": manifest.len(),
                "annotations": {"io.containerd.image.name": "docker.io/forensic/app:1.0", "org.opencontainers.image.ref.name": "1.0"}}],
        }))
        .unwrap();
        let dm = serde_json::to_vec(&json!([{
            "Config": format!("blobs/sha256/{c}"),
            "RepoTags": ["forensic/app:1.0"],
            "Layers": [format!("blobs/sha256/{d1}"), format!("blobs/sha256/{d2}")],
        }]))
        .unwrap();
        let mut files = vec![
            (format!("blobs/sha256/{d1}"), l1),
            (format!("blobs/sha256/{d2}"), l2),
            (format!("blobs/sha256/{c}"), cfg),
            (format!("blobs/sha256/{m}"), manifest),
            ("index.json".to_string(), index),
            ("manifest.json".to_string(), dm),
            (
                "oci-layout".to_string(),
                br#"{"imageLayoutVersion": "1.0.0"}"#.to_vec(),
            ),
            (
                "repositories".to_string(),
                br#"{"forensic/app":{"1.0":"x"}}"#.to_vec(),
            ),
        ];
        corrupt(&mut files);
        let mut b = TarBuilder::new();
        b.dir("blobs/").dir("blobs/sha256/");
        for (n, d) in &files {
            b.file(n, d);
        }
        (b.finish(), format!("sha256:{c}"), format!("sha256:{m}"))
    }

    #[test]
    fn oci_docker_layout_ok() {
        let (t, cfg, manifest) = oci_docker(|_| {});
        let r = check("ocid", &t, Some(&cfg));
        assert_ok(&r, "oci+docker");
        assert_eq!(r.config_ids, vec![cfg]);
        // The manifest digest is a verified target too.
        assert_ok(&check("ocid2", &t, Some(&manifest)), "oci+docker");
    }

    #[test]
    fn oci_docker_blob_corruption() {
        let (t, _, _) = oci_docker(|files| {
            let f = &mut files[1].1;
            let i = f.len() - 1500;
            f[i] ^= 0x40;
        });
        let r = check("ocid-bad", &t, None);
        assert!(!r.ok);
        assert!(has_failure(&r, "blob digest mismatch"), "{:#?}", r.failures);
        assert!(has_failure(&r, "diff_id mismatch"), "{:#?}", r.failures);
        assert!(
            has_failure(&r, "does not match descriptor digest"),
            "{:#?}",
            r.failures
        );
    }

    #[test]
    fn oci_descriptor_size_mismatch_and_missing_blob() {
        let (t, _, _) = oci_docker(|files| {
            // Rewrite the manifest with a wrong layer size and re-point index.json at it.
            let mut m: Value = serde_json::from_slice(&files[3].1).unwrap();
            m["layers"][0]["size"] = json!(5);
            m["layers"][1]["digest"] = json!(format!("sha256:{}", "e".repeat(64)));
            let mb = serde_json::to_vec(&m).unwrap();
            let mh = sha(&mb);
            files[3] = (format!("blobs/sha256/{mh}"), mb.clone());
            files[4].1 = serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [
                {"mediaType": MT_OCI_MANIFEST, "digest": format!("sha256:{mh}"), "size": mb.len()}]}))
            .unwrap();
        });
        let r = check("ocid-size", &t, None);
        assert!(
            has_failure(&r, "descriptor size 5 but blob"),
            "{:#?}",
            r.failures
        );
        assert!(has_failure(
            &r,
            &format!("blob sha256:{} missing", "e".repeat(64))
        ));
    }

    #[test]
    fn oci_bad_blob_names_and_index() {
        let (t, _, _) = oci_docker(|files| {
            files.push(("blobs/md5/abc".into(), b"x".to_vec()));
            files.push((format!("blobs/sha256/{}", "A".repeat(64)), b"x".to_vec()));
            files[4].1 =
                br#"{"schemaVersion": 2, "manifests": [{"digest": "sha256:xyz", "size": 1}]}"#
                    .to_vec();
        });
        let r = check("oci-names", &t, None);
        assert!(
            has_failure(&r, "blobs/md5/abc: not a blobs/"),
            "{:#?}",
            r.failures
        );
        assert!(
            has_failure(&r, "invalid digest \"sha256:xyz\""),
            "{:#?}",
            r.failures
        );
        assert_eq!(
            r.failures
                .iter()
                .filter(|f| f.contains("not a blobs/"))
                .count(),
            2
        );
    }

    /// containerd store: nested index, gzip layers, a platform left out, an attestation.
    fn containerd(layer_blob: impl Fn(&[u8]) -> Vec<u8>, media: &str) -> (Vec<u8>, String, String) {
        let (l1, l2) = (layer(5), layer(6));
        let (c1, c2) = (layer_blob(&l1), layer_blob(&l2));
        let cfg = config(&[sha(&l1), sha(&l2)]);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MT_DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": format!("sha256:{}", sha(&cfg)), "size": cfg.len()},
            "layers": [
                {"mediaType": media, "digest": format!("sha256:{}", sha(&c1)), "size": c1.len()},
                {"mediaType": media, "digest": format!("sha256:{}", sha(&c2)), "size": c2.len()},
            ],
        }))
        .unwrap();
        let att_body = br#"{"_type":"https://in-toto.io/Statement/v0.1"}"#.to_vec();
        let att_cfg = br#"{"architecture":"unknown","os":"unknown","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
        let att_cfg = {
            let mut v: Value = serde_json::from_slice(&att_cfg).unwrap();
            v["rootfs"]["diff_ids"] = json!([format!("sha256:{}", sha(&att_body))]);
            serde_json::to_vec(&v).unwrap()
        };
        let att = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", sha(&att_cfg)), "size": att_cfg.len()},
            "layers": [{"mediaType": "application/vnd.in-toto+json", "digest": format!("sha256:{}", sha(&att_body)), "size": att_body.len()}],
        }))
        .unwrap();
        let list = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": MT_OCI_INDEX,
            "manifests": [
                {"mediaType": MT_DOCKER_MANIFEST, "digest": format!("sha256:{}", sha(&manifest)), "size": manifest.len(), "platform": {"architecture": "amd64", "os": "linux"}},
                {"mediaType": MT_DOCKER_MANIFEST, "digest": format!("sha256:{}", "9".repeat(64)), "size": 1234, "platform": {"architecture": "arm64", "os": "linux"}},
                {"mediaType": MT_OCI_MANIFEST, "digest": format!("sha256:{}", sha(&att)), "size": att.len(), "annotations": {"vnd.docker.reference.type": "attestation-manifest"}},
            ],
        }))
        .unwrap();
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": MT_OCI_INDEX,
            "manifests": [{"mediaType": MT_OCI_INDEX, "digest": format!("sha256:{}", sha(&list)), "size": list.len(),
                "annotations": {"io.containerd.image.name": "docker.io/library/app:1"}}],
        }))
        .unwrap();
        let dm = serde_json::to_vec(&json!([{
            "Config": format!("blobs/sha256/{}", sha(&cfg)),
            "RepoTags": ["app:1"],
            "Layers": [format!("blobs/sha256/{}", sha(&c1)), format!("blobs/sha256/{}", sha(&c2))],
        }]))
        .unwrap();
        let mut blobs = vec![
            c1,
            c2,
            cfg.clone(),
            manifest,
            list.clone(),
            att,
            att_cfg,
            att_body,
        ];
        blobs.sort();
        let mut b = TarBuilder::new();
        b.dir("blobs/").dir("blobs/sha256/");
        for blob in &blobs {
            b.file(&format!("blobs/sha256/{}", sha(blob)), blob);
        }
        b.file("index.json", &index);
        b.file("manifest.json", &dm);
        b.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        (
            b.finish(),
            format!("sha256:{}", sha(&list)),
            format!("sha256:{}", sha(&cfg)),
        )
    }

    #[test]
    fn containerd_gzip_layout_ok() {
        let (t, list, cfg) = containerd(
            gzip_stored,
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        );
        let r = check("ctrd", &t, Some(&list));
        assert_ok(&r, "oci-containerd");
        assert!(r.config_ids.contains(&cfg));
        // The config digest is accepted too.
        assert_ok(&check("ctrd2", &t, Some(&cfg)), "oci-containerd");
    }

    #[test]
    fn containerd_layout_with_system_gzip() {
        let gz = |data: &[u8]| -> Option<Vec<u8>> {
            use std::io::Write;
            let mut child = std::process::Command::new("gzip")
                .arg("-c")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .ok()?;
            child.stdin.take()?.write_all(data).ok()?;
            let out = child.wait_with_output().ok()?;
            out.status.success().then_some(out.stdout)
        };
        if gz(b"x").is_none() {
            println!("system gzip not available; skipping");
            return;
        }
        let (t, list, _) = containerd(
            |d| gz(d).unwrap(),
            "application/vnd.oci.image.layer.v1.tar+gzip",
        );
        assert_ok(&check("ctrd-sysgz", &t, Some(&list)), "oci-containerd");
    }

    #[test]
    fn containerd_gzip_layer_with_wrong_content() {
        // The blob is a valid gzip and matches its own digest, but holds other content.
        let (t, _, _) = containerd(
            |d| gzip_stored(&[d, b"x"].concat()),
            "application/vnd.oci.image.layer.v1.tar+gzip",
        );
        let r = check("ctrd-wrong", &t, None);
        assert!(!r.ok);
        assert!(!has_failure(&r, "blob digest mismatch"));
        // Each layer is referenced from the OCI manifest and from manifest.json.
        assert_eq!(
            r.failures
                .iter()
                .filter(|f| f.contains("diff_id mismatch"))
                .count(),
            4,
            "{:#?}",
            r.failures
        );
    }

    #[test]
    fn containerd_corrupt_gzip() {
        let (t, _, _) = containerd(
            |d| {
                let mut g = gzip_stored(d);
                let n = g.len();
                g[n - 8] ^= 1; // CRC
                g
            },
            "application/vnd.oci.image.layer.v1.tar+gzip",
        );
        let r = check("ctrd-crc", &t, None);
        assert!(has_failure(&r, "does not decompress"), "{:#?}", r.failures);
        assert!(has_failure(&r, "CRC-32"), "{:#?}", r.failures);
    }

    #[test]
    fn containerd_zstd_layers_are_flagged_but_blobs_checked() {
        let fake_zstd = |d: &[u8]| [&[0x28, 0xb5, 0x2f, 0xfd][..], &sha(d).into_bytes()].concat();
        let (t, list, _) = containerd(fake_zstd, "application/vnd.oci.image.layer.v1.tar+zstd");
        let r = check("ctrd-zstd", &t, Some(&list));
        assert!(!r.ok);
        assert_eq!(r.layout, "oci-containerd");
        assert!(
            r.failures
                .iter()
                .all(|f| f.contains("zstd layer not verifiable")),
            "{:#?}",
            r.failures
        );
        assert_eq!(r.failures.len(), 4);
    }

    /// Podman's docker-archive.
    fn podman(tweak: impl FnOnce(&mut TarBuilder, &str)) -> (Vec<u8>, String) {
        let l = layer(7);
        let d = sha(&l);
        let cfg = config(std::slice::from_ref(&d));
        let c = sha(&cfg);
        let v1 = "7".repeat(64);
        let mut b = TarBuilder::new();
        b.file(&format!("{d}.tar"), &l);
        b.file(&format!("{c}.json"), &cfg);
        b.dir(&format!("{v1}/"));
        b.file(&format!("{v1}/VERSION"), b"1.0");
        b.file(&format!("{v1}/json"), b"{}");
        b.symlink(&format!("{v1}/layer.tar"), &format!("../{d}.tar"));
        tweak(&mut b, &d);
        b.file(
            "manifest.json",
            &serde_json::to_vec(&json!([{"Config": format!("{c}.json"), "RepoTags": ["localhost/forensic/busybox:1.35"], "Layers": [format!("{d}.tar")]}])).unwrap(),
        );
        b.file(
            "repositories",
            format!("{{\"localhost/forensic/busybox\":{{\"1.35\":\"{v1}\"}}}}").as_bytes(),
        );
        (b.finish(), format!("sha256:{c}"))
    }

    #[test]
    fn podman_docker_archive_ok() {
        let (t, id) = podman(|_, _| {});
        let r = check("podman", &t, Some(&id));
        assert_ok(&r, "docker-archive");
        assert_eq!(r.config_ids, vec![id]);
    }

    #[test]
    fn podman_duplicate_layer_entry_is_flagged() {
        // A second entry with the same name: readers disagree on which one counts.
        let (t, _) = podman(|b, d| {
            b.file(&format!("{d}.tar"), b"other");
        });
        let r = check("podman-dup", &t, None);
        assert!(has_failure(&r, "duplicate entry"), "{:#?}", r.failures);
        assert!(
            has_failure(&r, "does not hash to its name"),
            "{:#?}",
            r.failures
        );
    }

    #[test]
    fn hardlinked_layer_resolves() {
        let l = layer(8);
        let d = sha(&l);
        let cfg = config(std::slice::from_ref(&d));
        let c = sha(&cfg);
        let mut b = TarBuilder::new();
        b.file("x/layer.tar", &l);
        b.hardlink("y/layer.tar", "x/layer.tar");
        b.file(&format!("{c}.json"), &cfg);
        b.file(
            "manifest.json",
            &serde_json::to_vec(
                &json!([{"Config": format!("./{c}.json"), "Layers": ["y/layer.tar"]}]),
            )
            .unwrap(),
        );
        let r = check("hardlink", &b.finish(), Some(&c));
        assert_ok(&r, "docker-legacy");
    }

    #[test]
    fn hostile_links_and_names() {
        let mut b = TarBuilder::new();
        b.symlink("loop1", "loop2");
        b.symlink("loop2", "loop1");
        b.symlink("escape", "../../etc/passwd");
        b.file("../evil", b"x");
        b.symlink("dirlink", "somedir");
        b.file("somedir/file", b"x");
        b.file(
            "manifest.json",
            br#"[{"Config": "loop1", "Layers": ["escape", "somedir"]}]"#,
        );
        let r = check("hostile", &b.finish(), None);
        assert!(!r.ok);
        assert!(
            has_failure(&r, "too many levels of links"),
            "{:#?}",
            r.failures
        );
        assert!(has_failure(&r, "escapes the archive"), "{:#?}", r.failures);
        assert!(!has_failure(&r, "dirlink"), "{:#?}", r.failures);
        assert!(
            has_failure(&r, "somedir: not in the archive"),
            "{:#?}",
            r.failures
        );
    }

    #[test]
    fn hostile_json_shapes() {
        for doc in [
            &br#"{"not": "an array"}"#[..],
            br#"[1, {"Config": 5}, {"Config": "x.json", "Layers": "no"}]"#,
            br#"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["#,
            b"\xff\xfe",
            b"",
        ] {
            let mut b = TarBuilder::new();
            b.file("manifest.json", doc);
            b.file("index.json", br#"{"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": 7}]}"#);
            let r = check("json", &b.finish(), Some("nonsense"));
            assert!(!r.ok);
            assert!(has_failure(&r, "expected image nonsense"));
        }
    }

    #[test]
    fn not_a_tar_or_unreadable_is_err() {
        let p = write("notatar", b"{\"message\":\"No such image: x\"}");
        let e = check_file(&p, None).unwrap_err();
        assert_eq!(e.kind, Kind::Protocol);
        let e = check_file(Path::new("/nonexistent/dac/save.tar"), None).unwrap_err();
        assert_eq!(e.kind, Kind::Io);
        // A truncated save is not a readable tar either.
        let (t, _) = podman(|_, _| {});
        let p = write("truncated", &t[..t.len() - 1500]);
        assert_eq!(check_file(&p, None).unwrap_err().kind, Kind::Protocol);
    }

    #[test]
    fn empty_archive_is_unknown_layout() {
        let r = check("empty", &[0u8; 1024], None);
        assert!(!r.ok);
        assert_eq!(r.layout, "unknown");
        assert!(has_failure(&r, "neither manifest.json nor index.json"));
    }

    #[test]
    fn failures_are_capped() {
        let mut b = TarBuilder::new();
        b.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        b.file("index.json", br#"{"schemaVersion":2,"manifests":[]}"#);
        for i in 0..(MAX_FAILURES + 20) {
            b.file(&format!("blobs/sha256/{i:064x}"), b"");
        }
        let r = check("capped", &b.finish(), None);
        assert_eq!(r.failures.len(), MAX_FAILURES + 1);
        assert_eq!(r.failures.last().unwrap(), "... and 20 more failures");
    }

    #[test]
    fn normalize_paths() {
        assert_eq!(normalize("./a//b/./c").as_deref(), Some("a/b/c"));
        assert_eq!(normalize("a/b/../c").as_deref(), Some("a/c"));
        assert_eq!(normalize("../a"), None);
        assert_eq!(normalize("/abs/x").as_deref(), Some("abs/x"));
        assert_eq!(parent("a/b/c"), "a/b");
        assert_eq!(parent("c"), "");
    }

    /// Real saves: DAC_IMAGE_TARS=path[:path...] (each must verify cleanly).
    #[test]
    fn real_saves_from_environment() {
        let Ok(list) = std::env::var("DAC_IMAGE_TARS") else {
            println!("DAC_IMAGE_TARS not set; skipping real image saves");
            return;
        };
        for p in list.split(':').filter(|p| !p.is_empty()) {
            let r = check_file(Path::new(p), None).unwrap();
            println!("{p}: {}", r.to_json());
            assert!(r.ok, "{p}: {:#?}", r.failures);
            // The streaming walker agrees with the index.
            let data = std::fs::read(p).unwrap();
            let mut w = crate::tar::TarWalker::new();
            for c in data.chunks(8191) {
                w.push(c).unwrap();
            }
            let s = w.finish().unwrap();
            let n = crate::tar::index_file(Path::new(p)).unwrap().len() as u64;
            assert_eq!(s.entries, n);
        }
    }
}
