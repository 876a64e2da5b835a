//! The tamper matrix (FORENSICS §8) on a real bundle: one collected from the recorded Docker
//! engine, and, when the engines run, one collected live. Every mutation makes `dac verify`
//! exit 1 while the untouched bundle exits 0, including the rows that `bagit.py` accepts.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

fn verify_code(bag: &Path, extra: &[&str]) -> (i32, String) {
    let out = run(dac().arg("verify").arg(bag).args(extra));
    (code(&out), text(&out))
}

/// Recompute what a careful forger would: the payload manifest, and the tag manifest.
fn rehash_manifests(bag: &Path) {
    let mut lines = Vec::new();
    for f in files_under(&bag.join("data")) {
        lines.push(format!(
            "{}  data/{f}",
            sha256_file(&bag.join("data").join(&f))
        ));
    }
    lines.sort_by(|a, b| a[66..].cmp(&b[66..]));
    std::fs::write(bag.join("manifest-sha256.txt"), lines.join("\n") + "\n").unwrap();
    rehash_tags(bag);
}

fn rehash_tags(bag: &Path) {
    let mut tags: Vec<String> = vec![
        "bagit.txt".into(),
        "bag-info.txt".into(),
        "manifest-sha256.txt".into(),
        "logs/acquisition.jsonl".into(),
    ];
    for f in files_under(&bag.join("metadata")) {
        tags.push(format!("metadata/{f}"));
    }
    tags.sort();
    let body: String = tags
        .iter()
        .map(|t| format!("{}  {t}\n", sha256_file(&bag.join(t))))
        .collect();
    std::fs::write(bag.join("tagmanifest-sha256.txt"), body).unwrap();
}

/// Rewrite the log with a consistent chain and put its head in bag-info, as a forger would.
fn rechain_log(bag: &Path, records: Vec<Value>) {
    let mut prev = "0".repeat(64);
    let mut out = String::new();
    for (i, mut r) in records.into_iter().enumerate() {
        r["seq"] = Value::from(i as u64);
        r["prev_sha256"] = Value::from(prev.clone());
        let line = serde_json::to_string(&r).unwrap();
        prev = sha256_bytes(line.as_bytes());
        out.push_str(&line);
        out.push('\n');
    }
    std::fs::write(bag.join("logs/acquisition.jsonl"), out).unwrap();
    let info = std::fs::read_to_string(bag.join("bag-info.txt")).unwrap();
    let info: String = info
        .lines()
        .map(|l| {
            if l.starts_with("Log-Chain-Head-SHA256:") {
                format!("Log-Chain-Head-SHA256: {prev}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    std::fs::write(bag.join("bag-info.txt"), info).unwrap();
}

fn first_payload(bag: &Path, suffix: &str) -> PathBuf {
    let f = files_under(&bag.join("data"))
        .into_iter()
        .find(|f| f.ends_with(suffix))
        .unwrap_or_else(|| panic!("no {suffix}"));
    bag.join("data").join(f)
}

/// Offset of the data of the first tar member whose name ends with `suffix` (a layer).
fn member_data_offset(tar: &[u8], suffix: &str) -> Option<usize> {
    let mut at = 0;
    while at + 512 <= tar.len() {
        let h = &tar[at..at + 512];
        if h.iter().all(|b| *b == 0) {
            return None;
        }
        let name = String::from_utf8_lossy(&h[..100])
            .trim_end_matches('\0')
            .to_string();
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&h[124..136]).trim_matches(|c| c == '\0' || c == ' '),
            8,
        )
        .unwrap_or(0);
        if name.ends_with(suffix) && size > 1024 && h[156] == b'0' {
            return Some(at + 512);
        }
        at += 512 + size.div_ceil(512) * 512;
    }
    None
}

fn tamper_matrix(bag: &Path, work: &Path) {
    assert_eq!(
        verify_code(bag, &[]).0,
        0,
        "the untouched bundle must verify: {}",
        verify_code(bag, &[]).1
    );
    let mut n = 0;
    let mut case = |name: &str, mutate: &dyn Fn(&Path)| {
        n += 1;
        let copy = work.join(format!("case-{n}"));
        copy_tree(bag, &copy);
        mutate(&copy);
        let (c, out) = verify_code(&copy, &[]);
        assert_eq!(c, 1, "{name}: verify did not fail:\n{out}");
        std::fs::remove_dir_all(&copy).unwrap();
    };
    case("flipped payload byte", &|b| {
        let p = first_payload(b, "export.tar");
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[700] ^= 0x20;
        std::fs::write(&p, bytes).unwrap();
    });
    case("added payload file", &|b| {
        std::fs::write(b.join("data/30-metadata/planted.json"), "{}").unwrap()
    });
    case("edited log line", &|b| {
        let p = b.join("logs/acquisition.jsonl");
        let t = std::fs::read_to_string(&p).unwrap().replacen(
            "\"tier\":\"50-filesystem\"",
            "\"tier\":\"50-filesystem\" ",
            1,
        );
        std::fs::write(&p, t).unwrap();
    });
    case("deleted log line, manifests recomputed", &|b| {
        let p = b.join("logs/acquisition.jsonl");
        let t = std::fs::read_to_string(&p).unwrap();
        let kept: Vec<&str> = t
            .lines()
            .enumerate()
            .filter(|(i, _)| *i != 3)
            .map(|(_, l)| l)
            .collect();
        std::fs::write(&p, kept.join("\n") + "\n").unwrap();
        rehash_tags(b);
    });
    case("extra tag file", &|b| {
        std::fs::write(b.join("notes.txt"), "added later\n").unwrap()
    });
    case("../ path in the manifest", &|b| {
        let p = b.join("manifest-sha256.txt");
        let t = std::fs::read_to_string(&p).unwrap();
        let first = t.lines().next().unwrap().to_string();
        let (hash, path) = first.split_once("  ").unwrap();
        let t = t.replacen(&first, &format!("{hash}  data/../{}", &path[5..]), 1);
        std::fs::write(&p, t).unwrap();
        rehash_tags(b);
    });
    case(
        "layer in a saved image altered, everything recomputed",
        &|b| {
            let p = first_payload(b, "save.tar");
            let mut bytes = std::fs::read(&p).unwrap();
            let at = member_data_offset(&bytes, ".tar").expect("a layer member");
            bytes[at + 600] ^= 0x01;
            std::fs::write(&p, &bytes).unwrap();
            let new = sha256_bytes(&bytes);
            let rel = format!("data/{}", p.strip_prefix(b.join("data")).unwrap().display());
            let mut recs = log_records(b);
            for r in recs.iter_mut() {
                if r["path"] == rel.as_str() && r["event"] == "artifact" {
                    r["sha256"] = Value::from(new.clone());
                    r["readback_sha256"] = Value::from(new.clone());
                }
            }
            rechain_log(b, recs);
            rehash_manifests(b);
        },
    );
}

fn build_from_replay(dir: &Path) -> PathBuf {
    let fix = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/docker-20.10");
    let bag = dir.join("bag");
    let out = replay(&fix, &bag, &[]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    bag
}

#[test]
fn tamper_matrix_on_a_bundle_from_recorded_docker() {
    let dir = scratch("tamper-replay");
    let bag = build_from_replay(&dir);
    tamper_matrix(&bag, &dir);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tamper_matrix_on_a_live_docker_bundle() {
    let Some(sock) = live_env("DAC_DOCKER_SOCK") else {
        return;
    };
    let dir = scratch("tamper-live");
    let bag = dir.join("bag");
    let out = run(dac()
        .args([
            "collect",
            "--quiet",
            "-H",
            &format!("unix://{sock}"),
            "--container",
            "exited1",
            "--out",
        ])
        .arg(&bag));
    assert_eq!(code(&out), 0, "{}", text(&out));
    tamper_matrix(&bag, &dir);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A bundle rebuilt and re-signed by someone else passes every hash check; only the key
/// pinned outside the bundle tells.
#[test]
fn resigned_bundle_fails_against_the_pinned_key() {
    let dir = scratch("tamper-sign");
    let keygen = |name: &str| {
        let (k, p) = (
            dir.join(format!("{name}.key")),
            dir.join(format!("{name}.pub")),
        );
        let out = run(dac()
            .args(["keygen", "--private"])
            .arg(&k)
            .arg("--public")
            .arg(&p));
        assert_eq!(code(&out), 0, "{}", text(&out));
        (k, p)
    };
    let (ours, ours_pub) = keygen("examiner");
    let (theirs, _) = keygen("forger");
    let fix = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/docker-20.10");
    let bag = dir.join("bag");
    let out = run(dac()
        .args(["collect", "--quiet", "--no-save", "--sign-key"])
        .arg(&ours)
        .arg("--replay")
        .arg(&fix)
        .arg("--out")
        .arg(&bag));
    assert_eq!(code(&out), 0, "{}", text(&out));
    let pin = ours_pub.to_str().unwrap();
    assert_eq!(verify_code(&bag, &["--pubkey", pin]).0, 0);
    // Re-sign with the forger's key: a new .sig over the same tag manifest.
    let forged = dir.join("forged");
    let out = run(dac()
        .args(["collect", "--quiet", "--no-save", "--sign-key"])
        .arg(&theirs)
        .arg("--replay")
        .arg(&fix)
        .arg("--out")
        .arg(&forged));
    assert_eq!(code(&out), 0, "{}", text(&out));
    std::fs::copy(
        forged.join("tagmanifest-sha256.txt.sig"),
        bag.join("tagmanifest-sha256.txt.sig"),
    )
    .unwrap();
    let (c, out) = verify_code(&bag, &["--pubkey", pin]);
    assert_eq!(c, 1, "{out}");
    assert_eq!(
        verify_code(&forged, &["--pubkey", pin]).0,
        1,
        "a whole bundle signed by another key"
    );
    assert_eq!(
        verify_code(&forged, &[]).0,
        0,
        "without a pinned key the forged bundle is self-consistent"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The verifier gives identical results when run twice (CFTT).
#[test]
fn verify_is_repeatable() {
    let dir = scratch("tamper-repeat");
    let bag = build_from_replay(&dir);
    let a = run(dac().arg("verify").arg("--json").arg(&bag));
    let b = run(dac().arg("verify").arg("--json").arg(&bag));
    assert_eq!(code(&a), 0);
    assert_eq!(a.stdout, b.stdout);
    std::fs::remove_dir_all(&dir).unwrap();
}
