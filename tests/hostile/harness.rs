//! Running the real `dac` binary against the fake engine, reading the bundle it sealed, and
//! the checks every hostile case shares. Failed checks are collected and reported together.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::engine::{Engine, Request};
use crate::make::sha256_hex;

pub const DAC: &str = env!("CARGO_BIN_EXE_dac");
/// A run that takes longer than this is killed: a hang must fail the test, not block it.
const HARD_LIMIT: Duration = Duration::from_secs(90);

/// One test's private folder: `engine.sock`, `cwd/` (the collector's working directory,
/// which must stay empty) and the bundle.
pub struct Case {
    pub name: String,
    pub root: PathBuf,
    pub sock: PathBuf,
    pub cwd: PathBuf,
    pub bag: PathBuf,
    mount: Option<PathBuf>,
}

impl Case {
    pub fn new(name: &str) -> Case {
        let root = std::env::temp_dir().join(format!("dach-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("cwd")).unwrap();
        Case {
            name: name.to_string(),
            sock: root.join("engine.sock"),
            cwd: root.join("cwd"),
            bag: root.join("bag"),
            root,
            mount: None,
        }
    }

    /// Mount a tmpfs of `size` at `<root>/mnt` and put the bundle in it. None (after a loud
    /// message) when this is not possible here.
    pub fn with_small_disk(mut self, size: &str) -> Option<Case> {
        let uid = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
            });
        if uid.as_deref() != Some("0") {
            println!(
                "\n*** SKIPPED {}: not running as root, cannot mount a small tmpfs ***\n",
                self.name
            );
            return None;
        }
        let mnt = self.root.join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mnt)
            .status();
        if !st.as_ref().is_ok_and(|s| s.success()) {
            println!(
                "\n*** SKIPPED {}: `mount -t tmpfs` failed ({st:?}) ***\n",
                self.name
            );
            return None;
        }
        self.bag = mnt.join("bag");
        self.mount = Some(mnt);
        Some(self)
    }

    /// Top-level names `root` may hold after the run, besides the bundle's own folder.
    fn expected_root(&self, bag_made: bool) -> BTreeSet<String> {
        let mut s: BTreeSet<String> = ["engine.sock", "cwd"]
            .iter()
            .map(|x| x.to_string())
            .collect();
        if self.mount.is_some() {
            s.insert("mnt".into());
        } else if bag_made {
            s.insert("bag".into());
        }
        s
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        if let Some(m) = &self.mount {
            let _ = Command::new("umount").arg(m).status();
        }
        if std::thread::panicking() || std::env::var_os("DAC_HOSTILE_KEEP").is_some() {
            eprintln!("kept for inspection: {}", self.root.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// How a run ended.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    pub killed: bool,
    /// Peak resident memory of the collector in KiB, sampled from /proc while it ran.
    pub peak_rss_kb: Option<u64>,
}

pub struct Running {
    child: Child,
    started: Instant,
    out: std::thread::JoinHandle<String>,
    err: std::thread::JoinHandle<String>,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn wait(mut self) -> Run {
        let mut peak = None;
        let mut killed = false;
        let status = loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                break st;
            }
            if let Ok(s) = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())) {
                if let Some(kb) = s
                    .lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                {
                    peak = Some(peak.unwrap_or(0).max(kb));
                }
            }
            if self.started.elapsed() > HARD_LIMIT {
                let _ = self.child.kill();
                killed = true;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let elapsed = self.started.elapsed();
        Run {
            code: status.code(),
            stdout: self.out.join().unwrap_or_default(),
            stderr: self.err.join().unwrap_or_default(),
            elapsed,
            killed,
            peak_rss_kb: peak,
        }
    }
}

fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = r.read_to_end(&mut b);
        String::from_utf8_lossy(&b).into_owned()
    })
}

/// `dac collect -H unix://<sock> --out <bag> --quiet` plus `args`; idle timeout 2 s and
/// deadline 20 s unless `args` set them.
pub fn spawn_collect(case: &Case, args: &[&str]) -> Running {
    let mut cmd = Command::new(DAC);
    cmd.arg("collect")
        .arg("-H")
        .arg(format!("unix://{}", case.sock.display()))
        .arg("--out")
        .arg(&case.bag)
        .arg("--quiet");
    if !args.contains(&"--idle-timeout") {
        cmd.args(["--idle-timeout", "2"]);
    }
    if !args.contains(&"--deadline") {
        cmd.args(["--deadline", "20"]);
    }
    cmd.args(args)
        .current_dir(&case.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for v in [
        "DOCKER_HOST",
        "DOCKER_CONTEXT",
        "DOCKER_TLS_VERIFY",
        "DOCKER_CERT_PATH",
    ] {
        cmd.env_remove(v);
    }
    let started = Instant::now();
    let mut child = cmd.spawn().expect("start dac");
    let out = drain(child.stdout.take().unwrap());
    let err = drain(child.stderr.take().unwrap());
    Running {
        child,
        started,
        out,
        err,
    }
}

pub fn collect(case: &Case, args: &[&str]) -> Run {
    spawn_collect(case, args).wait()
}

/// A sealed bundle, read back.
pub struct Bag {
    pub root: PathBuf,
    pub log: Vec<Value>,
    pub manifest: BTreeMap<String, String>,
    pub info: BTreeMap<String, String>,
}

impl Bag {
    pub fn load(root: &Path) -> Bag {
        let log = std::fs::read_to_string(root.join("logs/acquisition.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or(Value::Null))
            .collect();
        let manifest = std::fs::read_to_string(root.join("manifest-sha256.txt"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                l.split_once("  ")
                    .map(|(h, p)| (p.to_string(), h.to_string()))
            })
            .collect();
        let info = std::fs::read_to_string(root.join("bag-info.txt"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                l.split_once(": ")
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        Bag {
            root: root.to_path_buf(),
            log,
            manifest,
            info,
        }
    }

    pub fn events(&self, event: &str) -> Vec<&Value> {
        self.log.iter().filter(|r| r["event"] == event).collect()
    }

    pub fn errors(&self) -> Vec<&Value> {
        self.events("error")
    }

    pub fn artifact(&self, path: &str) -> Option<&Value> {
        self.log
            .iter()
            .find(|r| r["event"] == "artifact" && r["path"] == path)
    }

    pub fn read(&self, rel: &str) -> Option<Vec<u8>> {
        std::fs::read(self.root.join(rel)).ok()
    }

    /// Every error, one line each, for failure messages.
    pub fn error_summary(&self) -> String {
        self.errors()
            .iter()
            .map(|e| {
                let detail: String = e["detail"].as_str().unwrap_or("").chars().take(300).collect();
                format!(
                    "    kind={} endpoint={} object={:.60} offset={} path={} status={} detail={detail}",
                    e["kind"], e["endpoint"], e["object"].to_string(), e["offset"], e["path"], e["status"]
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Failed checks, collected so one run reports all of them.
pub struct Checks {
    name: String,
    fails: Vec<String>,
    context: Vec<String>,
}

impl Checks {
    pub fn new(name: &str) -> Checks {
        Checks {
            name: name.into(),
            fails: Vec::new(),
            context: Vec::new(),
        }
    }

    pub fn check(&mut self, ok: bool, msg: impl FnOnce() -> String) -> bool {
        if !ok {
            self.fails.push(msg());
        }
        ok
    }

    pub fn context(&mut self, text: String) {
        self.context.push(text);
    }

    pub fn finish(self) {
        if !self.fails.is_empty() {
            panic!(
                "\n{}: {} failed check(s):\n  - {}\n{}\n",
                self.name,
                self.fails.len(),
                self.fails.join("\n  - "),
                self.context.join("\n")
            );
        }
    }

    /// The error record for `endpoint` of `kind` (and `object` if given); a failed check
    /// when there is none.
    pub fn error<'a>(
        &mut self,
        bag: &'a Bag,
        endpoint: &str,
        kind: &str,
        object: Option<&str>,
    ) -> Option<&'a Value> {
        self.error_any(bag, endpoint, &[kind], object)
    }

    /// Like `error`, accepting any of `kinds`.
    pub fn error_any<'a>(
        &mut self,
        bag: &'a Bag,
        endpoint: &str,
        kinds: &[&str],
        object: Option<&str>,
    ) -> Option<&'a Value> {
        let found = bag.errors().into_iter().find(|e| {
            e["endpoint"] == endpoint
                && kinds.iter().any(|k| e["kind"] == *k)
                && object.is_none_or(|o| e["object"] == o)
        });
        let others: Vec<String> = bag
            .errors()
            .iter()
            .filter(|e| e["endpoint"] == endpoint && object.is_none_or(|o| e["object"] == o))
            .map(|e| format!("{}", e["kind"]))
            .collect();
        self.check(found.is_some(), || {
            format!(
                "no error record of kind {kinds:?} for {endpoint}{} (errors recorded for it: {others:?})",
                object.map(|o| format!(" object {o:.70}")).unwrap_or_default()
            )
        });
        if let Some(e) = found {
            let detail = e["detail"].as_str().unwrap_or("");
            self.check(!detail.trim().is_empty(), || {
                format!("error for {endpoint} has an empty detail")
            });
        }
        found
    }

    pub fn offset(&mut self, err: Option<&Value>, want: u64, what: &str) {
        if let Some(e) = err {
            let got = e["offset"].as_u64();
            self.check(got == Some(want), || {
                format!(
                    "{what}: error offset is {got:?}, expected {want} ({:.200})",
                    e["detail"].as_str().unwrap_or("")
                )
            });
        }
    }

    /// The partial file an error points to: listed in the manifest, its artifact record
    /// `complete: false`, holding exactly `received` (the bytes sent before the failure).
    pub fn partial_file(
        &mut self,
        bag: &Bag,
        err: Option<&Value>,
        want_path: &str,
        received: Option<&[u8]>,
    ) {
        let Some(e) = err else { return };
        let path = e["path"].as_str();
        if !self.check(path == Some(want_path), || {
            format!("error record path is {:?}, expected {want_path}", e["path"])
        }) {
            return;
        }
        self.kept_file(bag, want_path, Some(false), received);
    }

    /// A payload file and its artifact record.
    pub fn kept_file(
        &mut self,
        bag: &Bag,
        path: &str,
        complete: Option<bool>,
        content: Option<&[u8]>,
    ) {
        self.check(bag.manifest.contains_key(path), || {
            format!("{path} is not listed in manifest-sha256.txt")
        });
        let art = bag.artifact(path);
        if self.check(art.is_some(), || format!("no artifact record for {path}")) {
            let a = art.unwrap();
            if let Some(complete) = complete {
                self.check(a["complete"] == complete, || {
                    format!(
                        "artifact {path} has complete={}, expected {complete}",
                        a["complete"]
                    )
                });
            }
            if let Some(want) = content {
                self.check(a["bytes"].as_u64() == Some(want.len() as u64), || {
                    format!(
                        "artifact {path} records {} bytes received, the engine sent {}",
                        a["bytes"],
                        want.len()
                    )
                });
            }
        }
        match (bag.read(path), content) {
            (None, _) => {
                self.check(false, || format!("{path} is not in the bag"));
            }
            (Some(got), Some(want)) => {
                self.check(got == want, || {
                    format!(
                        "{path} holds {} bytes (sha256 {}), expected the {} bytes the engine sent (sha256 {})",
                        got.len(),
                        sha256_hex(&got),
                        want.len(),
                        sha256_hex(want)
                    )
                });
            }
            _ => {}
        }
    }
}

/// What a case expects of the run as a whole.
/// Exit codes allowed (0 = complete, 1 = sealed partial) and the time bound.
pub struct Expect {
    pub codes: &'static [i32],
    pub within: Duration,
}

pub const PARTIAL: Expect = Expect {
    codes: &[1],
    within: Duration::from_secs(15),
};
pub const COMPLETE: Expect = Expect {
    codes: &[0],
    within: Duration::from_secs(15),
};

fn fixed_word(name: &str) -> bool {
    const WORDS: &[&str] = &[
        "data",
        "logs",
        "metadata",
        "00-host",
        "10-volatile",
        "20-events",
        "30-metadata",
        "40-logs",
        "50-filesystem",
        "60-images",
        "containers",
        "images",
        "networks",
        "volumes",
        "plugins",
        "swarm",
        "archive",
        "buffered.jsonl",
        "live.jsonl",
        "containers.json",
        "top.json",
        "stats.json",
        "info.json",
        "inspect.json",
        "changes.json",
        "version.json",
        "system-df.json",
        "images.json",
        "networks.json",
        "volumes.json",
        "plugins.json",
        "history.json",
        "logs.raw",
        "stdout.log",
        "stderr.log",
        "export.tar",
        "save.tar",
        "bagit.txt",
        "bag-info.txt",
        "manifest-sha256.txt",
        "tagmanifest-sha256.txt",
        "tagmanifest-sha256.txt.sig",
        "acquisition.jsonl",
        "environment.json",
        "clock.json",
        "case.jsonld",
        "swarm.json",
        "services.json",
        "tasks.json",
        "nodes.json",
        "secrets.json",
        "configs.json",
    ];
    WORDS.contains(&name)
}

fn hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A bundle file name is a full hex ID, `x-` and a hash, one of those plus a fixed suffix,
/// or a fixed word: nothing the engine chose.
pub fn safe_name(name: &str) -> bool {
    let stem = name
        .strip_suffix(".json")
        .or_else(|| name.strip_suffix(".tar"))
        .unwrap_or(name);
    fixed_word(name) || hex64(stem) || stem.strip_prefix("x-").is_some_and(hex64)
}

fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, bool)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let r = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        out.push((r.clone(), is_dir));
        if is_dir {
            walk(&e.path(), &r, out);
        }
    }
}

fn names_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn bagit_py() -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join("bagit.py"))
        .find(|p| p.is_file())
}

/// The checks every case shares; returns the bag (also when some checks failed).
pub fn common(c: &mut Checks, case: &Case, run: &Run, engine: &Engine, expect: &Expect) -> Bag {
    c.context(format!(
        "  dac exit {:?} after {:.2?}; stderr:\n{}",
        run.code,
        run.elapsed,
        indent(&run.stderr, 4000)
    ));
    if !run.stdout.is_empty() {
        c.context(format!("  stdout:\n{}", indent(&run.stdout, 2000)));
    }
    c.check(!run.killed, || {
        format!("dac hung and was killed after {HARD_LIMIT:?}")
    });
    c.check(
        !run.stderr.contains("panicked") && run.code != Some(101),
        || "dac panicked".into(),
    );
    c.check(run.code.is_some_and(|x| expect.codes.contains(&x)), || {
        format!(
            "exit code {:?}, expected one of {:?}",
            run.code, expect.codes
        )
    });
    c.check(run.elapsed < expect.within, || {
        format!(
            "the run took {:.2?}, more than {:?}",
            run.elapsed, expect.within
        )
    });
    methods_only_get_head(c, &engine.requests());

    // Nothing outside the bundle: the case folder holds what the test made, the working
    // directory stays empty.
    let root_names = names_in(&case.root);
    let want = case.expected_root(true);
    c.check(root_names == want, || {
        format!("the test folder holds {root_names:?}, expected only {want:?}")
    });
    let cwd_names = names_in(&case.cwd);
    c.check(cwd_names.is_empty(), || {
        format!("the collector wrote into its working directory: {cwd_names:?}")
    });
    if let Some(m) = &case.mount {
        let names = names_in(m);
        c.check(names.len() == 1 && names.contains("bag"), || {
            format!("the small disk holds {names:?}, expected only bag")
        });
    }

    let bag = Bag::load(&case.bag);
    c.context(format!("  errors in the log:\n{}", bag.error_summary()));
    let top = names_in(&case.bag);
    let allowed: BTreeSet<String> = [
        "bagit.txt",
        "bag-info.txt",
        "manifest-sha256.txt",
        "tagmanifest-sha256.txt",
        "tagmanifest-sha256.txt.sig",
        "data",
        "logs",
        "metadata",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    c.check(top.is_subset(&allowed), || {
        format!(
            "unexpected top-level entries in the bag: {:?}",
            top.difference(&allowed).collect::<Vec<_>>()
        )
    });
    let state = bag.info.get("Acquisition-State").map(String::as_str);
    let want_state = match run.code {
        Some(0) => "complete",
        _ => "partial",
    };
    c.check(state == Some(want_state), || {
        format!(
            "bag-info.txt Acquisition-State is {state:?}, expected {want_state} (exit {:?})",
            run.code
        )
    });
    let last = bag.log.last().map(|r| r["event"].clone());
    c.check(last == Some(Value::from("session_end")), || {
        format!("the log does not end with session_end but {last:?}")
    });

    // Every file has a safe name; every payload file is listed, every listed file exists.
    let mut files = Vec::new();
    walk(&case.bag, "", &mut files);
    for (rel, _) in &files {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        c.check(safe_name(name), || {
            format!("unsafe or unexpected file name in the bag: {rel:?}")
        });
    }
    for (rel, is_dir) in &files {
        if !is_dir && rel.starts_with("data/") {
            c.check(bag.manifest.contains_key(rel), || {
                format!("{rel} is in the bag but not in manifest-sha256.txt")
            });
        }
    }
    for (p, h) in &bag.manifest {
        match bag.read(p) {
            Some(b) => {
                c.check(sha256_hex(&b) == *h, || {
                    format!("{p} does not hash to its manifest entry")
                });
            }
            None => {
                c.check(false, || format!("{p} is listed but missing"));
            }
        }
    }
    for e in bag.errors() {
        let ok = e["kind"].as_str().is_some_and(|k| !k.is_empty())
            && e["endpoint"].is_string()
            && e["object"].is_string()
            && e["offset"].is_u64()
            && e["detail"].as_str().is_some_and(|d| !d.trim().is_empty());
        c.check(ok, || format!("incomplete error record: {e}"));
    }

    // The tool's own verifier, then the reference BagIt validator.
    let v = Command::new(DAC)
        .arg("verify")
        .arg(&case.bag)
        .output()
        .expect("run dac verify");
    let vout = String::from_utf8_lossy(&v.stdout);
    c.check(v.status.code() == Some(0), || {
        format!(
            "`dac verify` exits {:?}:\n{}{}",
            v.status.code(),
            indent(&vout, 3000),
            indent(&String::from_utf8_lossy(&v.stderr), 1000)
        )
    });
    match bagit_py() {
        Some(py) => {
            let b = Command::new(&py)
                .arg("--validate")
                .arg(&case.bag)
                .output()
                .expect("run bagit.py");
            c.check(b.status.success(), || {
                format!(
                    "`bagit.py --validate` fails:\n{}",
                    indent(&String::from_utf8_lossy(&b.stderr), 2000)
                )
            });
        }
        None => println!(
            "{}: bagit.py is not on PATH; BagIt reference validation skipped",
            case.name
        ),
    }
    bag
}

/// For runs that must not produce a bundle at all.
pub fn nothing_written(c: &mut Checks, case: &Case, run: &Run, engine: &Engine, code: i32) {
    c.context(format!(
        "  dac exit {:?} after {:.2?}; stderr:\n{}",
        run.code,
        run.elapsed,
        indent(&run.stderr, 4000)
    ));
    c.check(!run.killed, || "dac hung and was killed".into());
    c.check(
        !run.stderr.contains("panicked") && run.code != Some(101),
        || "dac panicked".into(),
    );
    c.check(run.code == Some(code), || {
        format!("exit code {:?}, expected {code}", run.code)
    });
    methods_only_get_head(c, &engine.requests());
    let root_names = names_in(&case.root);
    let want = case.expected_root(false);
    c.check(root_names == want, || {
        format!("the test folder holds {root_names:?}, expected only {want:?}")
    });
    c.check(names_in(&case.cwd).is_empty(), || {
        "the collector wrote into its working directory".into()
    });
}

pub fn methods_only_get_head(c: &mut Checks, reqs: &[Request]) {
    c.check(!reqs.is_empty(), || "the engine received no request".into());
    for r in reqs {
        c.check(r.method == "GET" || r.method == "HEAD", || {
            format!("the collector sent {:?}", r.line)
        });
    }
}

pub fn indent(s: &str, max: usize) -> String {
    let s: String = if s.len() > max {
        format!(
            "{}...[{} more bytes]",
            &s[..s.floor_char_boundary(max)],
            s.len() - max
        )
    } else {
        s.to_string()
    };
    s.lines().map(|l| format!("    {l}\n")).collect()
}
