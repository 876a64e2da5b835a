//! Shared by the integration tests: run the real binary, read what it wrote.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub fn dac() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dac"))
}

/// A fresh, empty folder for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dac-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// `dac collect --replay FIX --out OUT --quiet EXTRA...`
pub fn replay(fix: &Path, out: &Path, extra: &[&str]) -> Output {
    run(dac()
        .args(["collect", "--replay"])
        .arg(fix)
        .arg("--out")
        .arg(out)
        .arg("--quiet")
        .args(extra))
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run command");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked"),
        "the binary panicked:\n{stderr}"
    );
    out
}

pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every record of a bundle's acquisition log.
pub fn log_records(bag: &Path) -> Vec<Value> {
    std::fs::read_to_string(bag.join("logs/acquisition.jsonl"))
        .expect("acquisition log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("log line is JSON"))
        .collect()
}

pub fn artifacts<'a>(records: &'a [Value], endpoint: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| {
            r["event"] == "artifact" && r["endpoint"] == endpoint && r.get("derived_from").is_none()
        })
        .collect()
}

pub fn errors(records: &[Value]) -> Vec<&Value> {
    records.iter().filter(|r| r["event"] == "error").collect()
}

/// manifest-sha256.txt as (path, sha256).
pub fn manifest(bag: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(bag.join("manifest-sha256.txt"))
        .expect("manifest")
        .lines()
        .filter_map(|l| {
            l.split_once("  ")
                .map(|(h, p)| (p.to_string(), h.to_string()))
        })
        .collect()
}

pub fn sha256_file(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = std::fs::File::open(path).expect("open for hashing");
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_bytes(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `dac verify` must pass on the bundle.
pub fn assert_verifies(bag: &Path) {
    let out = run(dac().arg("verify").arg(bag));
    assert_eq!(
        code(&out),
        0,
        "dac verify failed on {}:\n{}",
        bag.display(),
        text(&out)
    );
}

/// `bagit.py --validate` (PyPI bagit, full mode) must accept the bundle, when it is installed.
pub fn assert_bagit_valid(bag: &Path) {
    match Command::new("bagit.py").arg("--validate").arg(bag).output() {
        Ok(out) => assert!(
            out.status.success(),
            "bagit.py rejects {}:\n{}",
            bag.display(),
            text(&out)
        ),
        Err(_) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("bagit.py is not installed; scripts/test.sh installs it");
            }
            eprintln!("SKIPPED: bagit.py not installed; run scripts/test.sh to install it");
        }
    }
}

/// An environment variable the live tests need: under CI=true its absence is a failure,
/// elsewhere the test is skipped with a loud message.
pub fn live_env(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{name} is not set under CI=true: scripts/test.sh must start the engines");
            }
            eprintln!("SKIPPED: {name} not set; run scripts/test.sh (it starts the engines) for live tests");
            None
        }
    }
}

/// Run an engine CLI command string such as "docker -H unix:///x" plus arguments.
pub fn engine_cli(cli: &str, args: &[&str]) -> Output {
    let mut parts = cli.split_whitespace();
    let program = parts.next().expect("engine CLI");
    Command::new(program)
        .args(parts)
        .args(args)
        .output()
        .expect("run engine CLI")
}

/// Files under a folder, relative, sorted.
pub fn files_under(root: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(base, &p, out);
                } else if let Ok(rel) = p.strip_prefix(base) {
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// The command's output plus the bundle's error records: what a failed assertion should show.
pub fn outcome(out: &Output, bag: &Path) -> String {
    let mut s = text(out);
    if let Ok(log) = std::fs::read_to_string(bag.join("logs/acquisition.jsonl")) {
        s.push_str("\nerror records:\n");
        for line in log.lines().filter(|l| l.contains("\"event\":\"error\"")) {
            s.push_str(line);
            s.push('\n');
        }
    }
    s
}

/// Copy a folder tree (fixtures, bundles) for a test to alter.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        let t = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_tree(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).expect("copy file");
        }
    }
}

/// A run refused before collecting: exit 2, stderr names the reason, no bundle was made.
pub fn assert_refused(out: &Output, bag: &Path, any_of: &[&str]) {
    assert_eq!(code(out), 2, "{}", text(out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(any_of.iter().any(|n| stderr.contains(n)), "{}", text(out));
    assert!(!bag.join("bagit.txt").exists());
}
