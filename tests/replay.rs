//! Every collector tested by replaying exchanges recorded from real engines (fixtures/),
//! with no daemon: Docker 20.10 and Podman 4.3, plus a run where the target vanished mid-run.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let found = std::fs::read_dir(&root)
        .expect("fixtures/ exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with(name) && (name.ends_with("-vanish") || !n.ends_with("-vanish"))
        })
        .min();
    found.unwrap_or_else(|| panic!("no fixture starting with {name} in {}", root.display()))
}

fn manifest_json(fix: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(fix.join("manifest.json")).unwrap()).unwrap()
}

/// The recorded body of the exchange whose path ends with `suffix` (dechunked when needed).
fn recorded_body(fix: &Path, suffix: &str) -> Vec<u8> {
    let m = manifest_json(fix);
    let ex = m["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"].as_str().unwrap().ends_with(suffix) && e["response"]["status"] == 200)
        .unwrap_or_else(|| panic!("no exchange for {suffix}"));
    if let Some(body) = ex["response"]["body"]["file"].as_str() {
        return std::fs::read(fix.join(body)).unwrap();
    }
    let wire = std::fs::read(fix.join(ex["response"]["res"]["file"].as_str().unwrap())).unwrap();
    http_body(&wire)
}

/// The body of a raw HTTP/1.1 response, undoing chunked framing: an independent reading of the
/// wire bytes, not the tool's.
fn http_body(wire: &[u8]) -> Vec<u8> {
    let split = wire
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of head")
        + 4;
    let head = String::from_utf8_lossy(&wire[..split]).to_ascii_lowercase();
    let mut rest = &wire[split..];
    if !head.contains("transfer-encoding: chunked") {
        return rest.to_vec();
    }
    let mut body = Vec::new();
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let line = String::from_utf8_lossy(&rest[..eol]).into_owned();
        let size =
            usize::from_str_radix(line.split(';').next().unwrap().trim(), 16).expect("chunk size");
        rest = &rest[eol + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Split a multiplexed log the simple way, for comparison with the tool's demultiplexer.
fn demux_reference(raw: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i + 8 <= raw.len() {
        let len = u32::from_be_bytes([raw[i + 4], raw[i + 5], raw[i + 6], raw[i + 7]]) as usize;
        let payload = &raw[i + 8..i + 8 + len];
        match raw[i] {
            0 | 1 => out.extend_from_slice(payload),
            2 => err.extend_from_slice(payload),
            t => panic!("stream type {t} in a recorded log"),
        }
        i += 8 + len;
    }
    assert_eq!(i, raw.len());
    (out, err)
}

fn full_replay_checks(engine: &str) {
    let fix = fixture(engine);
    let dir = scratch(&format!("replay-{engine}"));
    let bag = dir.join("bag");
    let out = replay(&fix, &bag, &[]);
    assert_eq!(code(&out), 0, "{}", outcome(&out, &bag));
    assert_bagit_valid(&bag);
    assert_verifies(&bag);
    let recs = log_records(&bag);
    let listed = manifest(&bag);

    // Exports and saves are byte-identical to what the engine sent.
    let exports = artifacts(&recs, "/containers/{id}/export");
    let saves = artifacts(&recs, "/images/{name}/get");
    assert!(exports.len() >= 6, "{} exports", exports.len());
    assert!(saves.len() >= 2, "{} saves", saves.len());
    for a in exports.iter().chain(saves.iter()) {
        let obj = a["object"].as_str().unwrap();
        let suffix = if a["endpoint"] == "/containers/{id}/export" {
            format!("/containers/{obj}/export")
        } else {
            format!("/images/{}/get", obj.replace(':', "%3A"))
        };
        let body = recorded_body(&fix, &suffix);
        assert_eq!(a["sha256"], sha256_bytes(&body), "{suffix}");
        assert_eq!(a["bytes"], body.len() as u64);
        assert!(a["tar"]["entries"].as_u64().unwrap() >= 1);
    }
    // Every saved image verified against its own digests.
    for s in &saves {
        let check = recs
            .iter()
            .find(|r| r["event"] == "image_check" && r["object"] == s["object"])
            .expect("image_check");
        assert_eq!(check["image_check"]["ok"], true, "{check}");
    }

    // Logs: raw bytes kept; stdout and stderr split as an independent reading splits them.
    let mut split = 0;
    for a in artifacts(&recs, "/containers/{id}/logs") {
        let obj = a["object"].as_str().unwrap();
        let raw = recorded_body(&fix, &format!("/containers/{obj}/logs"));
        assert_eq!(a["sha256"], sha256_bytes(&raw));
        if a["log_framing"] == "multiplexed" {
            let (o, e) = demux_reference(&raw);
            let base = bag
                .join(a["path"].as_str().unwrap())
                .parent()
                .unwrap()
                .to_path_buf();
            assert_eq!(
                std::fs::read(base.join("stdout.log")).unwrap(),
                o,
                "stdout of {obj}"
            );
            assert_eq!(
                std::fs::read(base.join("stderr.log")).unwrap(),
                e,
                "stderr of {obj}"
            );
            if !o.is_empty() && !e.is_empty() {
                split += 1;
            }
        }
    }
    assert!(split >= 1, "no log with both stdout and stderr");

    // Processes of running containers were parsed. Podman runs `ps` inside the container, and
    // answers an empty 200 where there is none (the toy scene): that is recorded as unavailable.
    let tops = artifacts(&recs, "/containers/{id}/top");
    assert!(!tops.is_empty());
    for t in tops {
        if t["bytes"] == 0 {
            assert!(
                recs.iter().any(|r| r["event"] == "note"
                    && r["kind"] == "unavailable"
                    && r["object"] == t["object"]),
                "an empty top without a note: {t}"
            );
            continue;
        }
        let v: Value =
            serde_json::from_slice(&std::fs::read(bag.join(t["path"].as_str().unwrap())).unwrap())
                .unwrap();
        assert!(v["Titles"].as_array().is_some_and(|a| !a.is_empty()), "{v}");
    }

    // The live event stream was closed once it had delivered the events our own requests
    // left (processes, exports, saves), not on a timer, and every one of them is in it.
    let fp = recs
        .iter()
        .find(|r| r["event"] == "note" && r.get("footprint_events").is_some())
        .expect("a note on closing the live stream");
    let expected = fp["footprint_events"]["expected"].as_u64().unwrap();
    assert!(expected >= 8, "{fp}");
    assert_eq!(fp["footprint_events"]["delivered"], expected, "{fp}");
    assert!(
        fp["detail"].as_str().unwrap().contains("closed after"),
        "{fp}"
    );

    // The log and the manifest agree, both ways.
    let logged: Vec<(String, String)> = recs
        .iter()
        .filter(|r| r["event"] == "artifact")
        .map(|r| {
            (
                r["path"].as_str().unwrap().to_string(),
                r["readback_sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut a = logged.clone();
    let mut b = listed.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    for ep in [
        "/info",
        "/version",
        "/system/df",
        "/networks",
        "/volumes",
        "/images/json",
        "/containers/json",
        "/events",
    ] {
        assert!(!artifacts(&recs, ep).is_empty(), "{ep} missing");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn docker_replay_collects_every_table_exactly() {
    full_replay_checks("docker-20.10");
}

#[test]
fn podman_replay_collects_every_table_exactly() {
    full_replay_checks("podman-");
}

/// Leaving out stats and changes (the paper's six tables only) is recorded as the examiner's
/// choice, and nothing else goes missing.
#[test]
fn six_tables_scope_is_recorded_and_nothing_else_is_lost() {
    let fix = fixture("docker-20.10");
    let dir = scratch("replay-six");
    let full = dir.join("full");
    let six = dir.join("six");
    assert_eq!(code(&replay(&fix, &full, &[])), 0);
    let out = replay(&fix, &six, &["--no-stats", "--no-changes"]);
    assert_eq!(code(&out), 0, "{}", outcome(&out, &six));
    assert_verifies(&six);
    let (a, b) = (log_records(&full), log_records(&six));
    let start = b.iter().find(|r| r["event"] == "session_start").unwrap();
    assert_eq!(start["scope"]["stats"], false);
    assert_eq!(start["scope"]["changes"], false);
    assert_eq!(start["scope"]["exports"], true);
    let endpoints = |recs: &[Value]| -> std::collections::BTreeSet<String> {
        recs.iter()
            .filter(|r| r["event"] == "artifact")
            .map(|r| format!("{} {}", r["endpoint"], r["object"]))
            .collect()
    };
    let (ea, eb) = (endpoints(&a), endpoints(&b));
    let dropped: Vec<&String> = ea.difference(&eb).collect();
    assert!(eb.is_subset(&ea));
    assert!(!dropped.is_empty());
    for d in &dropped {
        assert!(
            d.contains("/containers/{id}/stats") || d.contains("/containers/{id}/changes"),
            "{d} went missing"
        );
    }
    assert!(dropped.iter().any(|d| d.contains("/stats")));
    assert!(dropped.iter().any(|d| d.contains("/changes")));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn targeted_replay_touches_only_the_suspect() {
    let fix = fixture("docker-20.10");
    let dir = scratch("replay-target");
    let bag = dir.join("bag");
    let out = replay(&fix, &bag, &["--container", "suspect"]);
    assert_eq!(code(&out), 0, "{}", outcome(&out, &bag));
    let recs = log_records(&bag);
    let list: Value = serde_json::from_slice(
        &std::fs::read(bag.join("data/10-volatile/containers.json")).unwrap(),
    )
    .unwrap();
    let suspect = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["Names"][0] == "/suspect")
        .unwrap()["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let per_container: Vec<&Value> = recs
        .iter()
        .filter(|r| {
            r["event"] == "artifact"
                && r["endpoint"]
                    .as_str()
                    .unwrap()
                    .starts_with("/containers/{id}")
        })
        .collect();
    assert!(per_container.len() >= 4);
    for r in per_container {
        assert_eq!(r["object"], suspect.as_str(), "{r}");
    }
    assert_verifies(&bag);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Real 404s from a container removed mid-run: recorded, partial, still verifiable.
#[test]
fn vanished_container_gives_error_records_and_a_partial_bundle() {
    for engine in ["docker-20.10-vanish", "podman-"] {
        let fix = if engine.starts_with("podman") {
            let p = fixture("podman-");
            let vanish = PathBuf::from(format!("{}-vanish", p.display()));
            assert!(vanish.is_dir(), "{} missing", vanish.display());
            vanish
        } else {
            fixture(engine)
        };
        let dir = scratch(&format!("replay-vanish-{}", engine.len()));
        let bag = dir.join("bag");
        let out = replay(&fix, &bag, &["--container", "vanish1"]);
        assert_eq!(code(&out), 1, "{}: {}", fix.display(), text(&out));
        let recs = log_records(&bag);
        let errs = errors(&recs);
        assert!(
            errs.iter()
                .any(|e| e["kind"] == "http" && (e["status"] == 404 || e["status"] == 500)),
            "{}: no 404 recorded: {errs:?}",
            fix.display()
        );
        for e in &errs {
            for k in ["kind", "endpoint", "object", "offset", "detail"] {
                assert!(e.get(k).is_some(), "{k} missing in {e}");
            }
        }
        assert!(std::fs::read_to_string(bag.join("bag-info.txt"))
            .unwrap()
            .contains("Acquisition-State: partial"));
        assert_verifies(&bag);
        assert_bagit_valid(&bag);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// A fixture altered by one byte is refused before anything is collected.
#[test]
fn tampered_fixture_is_refused() {
    let fix = fixture("docker-20.10");
    let dir = scratch("replay-tamper");
    let copy = dir.join("fix");
    copy_tree(&fix, &copy);
    let tar = std::fs::read_dir(&copy)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "tar"))
        .expect("a recorded tar");
    let mut bytes = std::fs::read(&tar).unwrap();
    bytes[600] ^= 1;
    std::fs::write(&tar, bytes).unwrap();
    let bag = dir.join("bag");
    let out = replay(&copy, &bag, &[]);
    assert_refused(&out, &bag, &["sha256", "SHA-256"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A request the recording cannot answer is an error record, never a guess.
#[test]
fn request_missing_from_the_recording_is_an_error() {
    let fix = fixture("docker-20.10");
    let dir = scratch("replay-miss");
    let copy = dir.join("fix");
    copy_tree(&fix, &copy);
    let mut m = manifest_json(&copy);
    let exchanges = m["exchanges"].as_array_mut().unwrap();
    exchanges.retain(|e| !e["path"].as_str().unwrap().ends_with("/version"));
    std::fs::write(
        copy.join("manifest.json"),
        serde_json::to_vec_pretty(&m).unwrap(),
    )
    .unwrap();
    let bag = dir.join("bag");
    let out = replay(&copy, &bag, &["--no-save", "--no-export"]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    let recs = log_records(&bag);
    assert!(
        errors(&recs)
            .iter()
            .any(|e| e["kind"] == "replay" && e["endpoint"] == "/version"),
        "{:?}",
        errors(&recs)
    );
    assert_verifies(&bag);
    std::fs::remove_dir_all(&dir).unwrap();
}
