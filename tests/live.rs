//! Live tests against the engines that scripts/engines.sh starts and scripts/scene.sh fills
//! (Docker 20.10 and Podman from Debian). Under CI=true they must run; elsewhere they skip
//! loudly when the engines are not there.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;
use serde_json::Value;

fn docker_sock() -> Option<String> {
    live_env("DAC_DOCKER_SOCK")
}

fn collect(host: &str, out: &Path, extra: &[&str]) -> std::process::Output {
    run(dac()
        .args(["collect", "-H", host, "--out"])
        .arg(out)
        .args(["--quiet", "--case", "LIVE-1", "--examiner", "CI"])
        .args(extra))
}

fn container_id(cli: &str, name: &str) -> String {
    let out = engine_cli(cli, &["inspect", "--format", "{{.Id}}", name]);
    assert!(out.status.success(), "{cli} inspect {name}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The main check: every artifact of tables 1-6 for every container and image, exit 0,
/// and validators that no one here wrote accept the bundle.
#[test]
fn docker_full_collection_is_complete_and_valid() {
    let Some(sock) = docker_sock() else { return };
    let dir = scratch("live-full");
    let bag = dir.join("bag");
    let out = collect(&format!("unix://{sock}"), &bag, &[]);
    assert_eq!(code(&out), 0, "{}", outcome(&out, &bag));
    assert_bagit_valid(&bag);
    assert_verifies(&bag);
    let recs = log_records(&bag);
    let list: Value = serde_json::from_slice(
        &std::fs::read(bag.join("data/10-volatile/containers.json")).unwrap(),
    )
    .unwrap();
    let list = list.as_array().unwrap();
    assert!(list.len() >= 6, "the scene has at least six containers");
    for c in list {
        let id = c["Id"].as_str().unwrap();
        for ep in [
            "/containers/{id}/json",
            "/containers/{id}/changes",
            "/containers/{id}/logs",
            "/containers/{id}/export",
        ] {
            assert!(
                artifacts(&recs, ep).iter().any(|a| a["object"] == id),
                "{ep} missing for {id}"
            );
        }
        if c["State"] == "running" {
            assert!(
                artifacts(&recs, "/containers/{id}/top")
                    .iter()
                    .any(|a| a["object"] == id),
                "top missing for {id}"
            );
            assert!(
                artifacts(&recs, "/containers/{id}/stats")
                    .iter()
                    .any(|a| a["object"] == id),
                "stats missing for {id}"
            );
        }
    }
    let images: Value =
        serde_json::from_slice(&std::fs::read(bag.join("data/30-metadata/images.json")).unwrap())
            .unwrap();
    for img in images.as_array().unwrap() {
        let id = img["Id"].as_str().unwrap();
        for ep in [
            "/images/{name}/json",
            "/images/{name}/history",
            "/images/{name}/get",
        ] {
            assert!(
                artifacts(&recs, ep).iter().any(|a| a["object"] == id),
                "{ep} missing for {id}"
            );
        }
        let check = recs
            .iter()
            .find(|r| r["event"] == "image_check" && r["object"] == id)
            .unwrap_or_else(|| panic!("no image_check for {id}"));
        assert_eq!(check["image_check"]["ok"], true, "{check}");
    }
    for ep in [
        "/info",
        "/version",
        "/system/df",
        "/networks",
        "/volumes",
        "/plugins",
        "/images/json",
        "/events",
    ] {
        assert!(!artifacts(&recs, ep).is_empty(), "{ep} missing");
    }
    // Multiplexed logs were split into stdout and stderr.
    let derived = recs
        .iter()
        .filter(|r| r["event"] == "artifact" && r.get("derived_from").is_some())
        .count();
    assert!(derived >= 2, "no demultiplexed log files");
    if let Ok(out) = std::process::Command::new("case_validate")
        .arg(bag.join("metadata/case.jsonld"))
        .output()
    {
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Conforms: True"),
            "case_validate: {}",
            text(&out)
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The paper's Figure 5: the export of a stopped container equals `docker export` on the host.
#[test]
fn docker_export_of_stopped_container_matches_the_cli() {
    let (Some(sock), Some(cli)) = (docker_sock(), live_env("DAC_DOCKER")) else {
        return;
    };
    let dir = scratch("live-export");
    let bag = dir.join("bag");
    let out = collect(
        &format!("unix://{sock}"),
        &bag,
        &["--container", "exited1", "--no-save"],
    );
    assert_eq!(code(&out), 0, "{}", outcome(&out, &bag));
    let id = container_id(&cli, "exited1");
    let reference = dir.join("cli-export.tar");
    let exp = engine_cli(
        &cli,
        &["export", "-o", reference.to_str().unwrap(), "exited1"],
    );
    assert!(exp.status.success(), "{}", text(&exp));
    let ours = bag.join(format!("data/50-filesystem/containers/{id}/export.tar"));
    assert_eq!(sha256_file(&ours), sha256_file(&reference));
    let recs = log_records(&bag);
    let a = artifacts(&recs, "/containers/{id}/export")[0];
    assert_eq!(a["sha256"], sha256_file(&reference));
    assert!(a["tar"]["entries"].as_u64().unwrap() > 10);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// No change to the source: the daemon's own events during the session are read footprints only.
#[test]
fn docker_collection_leaves_only_read_footprints() {
    let Some(sock) = docker_sock() else { return };
    let dir = scratch("live-footprint");
    let bag = dir.join("bag");
    let out = collect(
        &format!("unix://{sock}"),
        &bag,
        &["--path", "/etc/hostname"],
    );
    assert!(code(&out) <= 1, "{}", text(&out));
    let live = std::fs::read_to_string(bag.join("data/20-events/live.jsonl")).unwrap();
    let mut actions = BTreeSet::new();
    for line in live.lines() {
        let ev: Value = serde_json::from_str(line).unwrap();
        let action = ev["Action"]
            .as_str()
            .unwrap_or("")
            .split(':')
            .next()
            .unwrap_or("")
            .to_string();
        actions.insert((ev["Type"].as_str().unwrap_or("").to_string(), action));
    }
    let has = |t: &str, a: &str| actions.contains(&(t.to_string(), a.to_string()));
    assert!(
        has("container", "export") && has("container", "top"),
        "own footprint not seen: {actions:?}"
    );
    // The live stream was closed once it held every event our own requests left: one per
    // process listing, export, archive pull and image save that the engine answered.
    let recs = log_records(&bag);
    let ours: usize = [
        "/containers/{id}/top",
        "/containers/{id}/export",
        "/containers/{id}/archive",
        "/images/{name}/get",
    ]
    .iter()
    .map(|ep| artifacts(&recs, ep).len())
    .sum();
    let fp = recs
        .iter()
        .find(|r| r.get("footprint_events").is_some())
        .expect("a note on closing the live stream");
    assert_eq!(fp["footprint_events"]["expected"], ours as u64, "{fp}");
    // Other tests collect from the same engine at the same time: their events come too.
    let delivered = fp["footprint_events"]["delivered"].as_u64().unwrap();
    assert!(delivered >= ours as u64, "{fp}");
    assert!(
        fp["detail"].as_str().unwrap().contains("closed after"),
        "{fp}"
    );
    let footprints = live
        .lines()
        .filter(|l| {
            let ev: Value = serde_json::from_str(l).unwrap();
            matches!(
                (ev["Type"].as_str(), ev["Action"].as_str()),
                (Some("container"), Some("top" | "export" | "archive-path"))
                    | (Some("image"), Some("save"))
            )
        })
        .count();
    // (More may arrive between the note and the close.)
    assert!(
        footprints as u64 >= delivered,
        "counted events missing from live.jsonl"
    );
    // Reads only: the archive pull mounts the container's volumes to read them.
    let reads = [
        ("container", "top"),
        ("container", "export"),
        ("container", "archive-path"),
        ("image", "save"),
        ("volume", "mount"),
        ("volume", "unmount"),
    ];
    for (t, a) in &actions {
        assert!(
            reads.contains(&(t.as_str(), a.as_str())),
            "a changing event {t} {a} during collection"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Targeted collection: no other tenant's logs, processes or filesystem.
#[test]
fn docker_targeted_collection_touches_only_the_suspect() {
    let (Some(sock), Some(cli)) = (docker_sock(), live_env("DAC_DOCKER")) else {
        return;
    };
    let dir = scratch("live-suspect");
    let bag = dir.join("bag");
    let out = collect(
        &format!("unix://{sock}"),
        &bag,
        &["--container", "suspect", "--path", "/data"],
    );
    assert_eq!(code(&out), 0, "{}", outcome(&out, &bag));
    let suspect = container_id(&cli, "suspect");
    let recs = log_records(&bag);
    for r in recs.iter().filter(|r| r["event"] == "artifact") {
        let ep = r["endpoint"].as_str().unwrap();
        if ep.starts_with("/containers/{id}") {
            assert!(
                r["object"].as_str().unwrap().starts_with(&suspect),
                "{ep} of another container: {r}"
            );
        }
    }
    for f in files_under(&bag.join("data")) {
        if f.contains("containers/") {
            assert!(f.contains(&suspect), "another container's file: {f}");
        }
    }
    // The archive pull includes the volume, unlike the export.
    let pulls = artifacts(&recs, "/containers/{id}/archive");
    assert_eq!(pulls.len(), 1);
    assert_eq!(pulls[0]["path_stat"]["decoded"]["name"], "data");
    let tar = std::fs::read(bag.join(pulls[0]["path"].as_str().unwrap())).unwrap();
    assert!(
        tar.windows(13).any(|w| w == b"data/exfil.tx"),
        "the volume's file is not in the pull"
    );
    // Its image, networks and volumes came along.
    assert!(!artifacts(&recs, "/images/{name}/get").is_empty());
    assert!(!artifacts(&recs, "/networks/{id}").is_empty());
    assert!(!artifacts(&recs, "/volumes/{name}").is_empty());
    assert_verifies(&bag);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Mutual TLS works and records the server certificate; a wrong CA is refused before any bundle.
#[test]
fn docker_tls_with_client_certificates_and_wrong_ca() {
    let (Some(host), Some(tls), Some(wrong)) = (
        live_env("DAC_TLS_HOST"),
        live_env("DAC_TLS_DIR"),
        live_env("DAC_TLS_WRONG_DIR"),
    ) else {
        return;
    };
    let dir = scratch("live-tls");
    let bag = dir.join("bag");
    let out = run(dac()
        .args([
            "collect",
            "-H",
            &host,
            "--tlsverify",
            "--no-save",
            "--no-export",
            "--quiet",
            "--out",
        ])
        .arg(&bag)
        .args([
            "--tlscacert",
            &format!("{tls}/ca.pem"),
            "--tlscert",
            &format!("{tls}/cert.pem"),
            "--tlskey",
            &format!("{tls}/key.pem"),
        ]));
    assert_eq!(code(&out), 0, "{}", outcome(&out, &bag));
    let recs = log_records(&bag);
    assert_eq!(recs[0]["tls_peer_sha256"].as_str().map(str::len), Some(64));
    assert_verifies(&bag);
    let bad = dir.join("bad");
    let out = run(dac()
        .args(["collect", "-H", &host, "--tlsverify", "--quiet", "--out"])
        .arg(&bad)
        .args([
            "--tlscacert",
            &format!("{wrong}/ca.pem"),
            "--tlscert",
            &format!("{tls}/cert.pem"),
            "--tlskey",
            &format!("{tls}/key.pem"),
        ]));
    assert_refused(&out, &bad, &["TLS"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A docker CLI context with TLS material in the contexts store.
#[test]
fn docker_context_with_tls_material() {
    let (Some(host), Some(tls)) = (live_env("DAC_TLS_HOST"), live_env("DAC_TLS_DIR")) else {
        return;
    };
    let dir = scratch("live-context");
    let config = dir.join("docker-config");
    let id = sha256_bytes(b"evidence");
    let meta = config.join("contexts/meta").join(&id);
    let tlsdir = config.join("contexts/tls").join(&id).join("docker");
    std::fs::create_dir_all(&meta).unwrap();
    std::fs::create_dir_all(&tlsdir).unwrap();
    std::fs::write(
        meta.join("meta.json"),
        serde_json::json!({"Name": "evidence", "Metadata": {}, "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": false}}}).to_string(),
    )
    .unwrap();
    for f in ["ca.pem", "cert.pem", "key.pem"] {
        std::fs::copy(Path::new(&tls).join(f), tlsdir.join(f)).unwrap();
    }
    let bag = dir.join("bag");
    let out = run(dac()
        .env("DOCKER_CONFIG", &config)
        .env_remove("DOCKER_HOST")
        .args([
            "collect",
            "--context",
            "evidence",
            "--no-save",
            "--no-export",
            "--quiet",
            "--out",
        ])
        .arg(&bag));
    assert_eq!(code(&out), 0, "{}", outcome(&out, &bag));
    let recs = log_records(&bag);
    assert!(
        recs[0]["endpoint_source"]
            .as_str()
            .unwrap()
            .contains("evidence"),
        "{}",
        recs[0]
    );
    assert!(recs[0]["tls_peer_sha256"].is_string());
    assert_verifies(&bag);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// ssh:// through `docker system dial-stdio` on a loopback OpenSSH server.
#[test]
fn docker_over_ssh() {
    let (Some(ssh), Some(sock), Some(_opts)) = (
        live_env("DAC_SSH_HOST"),
        docker_sock(),
        live_env("DAC_SSH_OPTS"),
    ) else {
        return;
    };
    let dir = scratch("live-ssh");
    let bag = dir.join("bag");
    let out = collect(&format!("{ssh}{sock}"), &bag, &["--container", "exited1"]);
    assert_eq!(code(&out), 0, "{}", outcome(&out, &bag));
    assert_verifies(&bag);
    assert_bagit_valid(&bag);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Podman's compatible API: a full collection seals a bundle that verifies.
#[test]
fn podman_full_collection_verifies() {
    let Some(sock) = live_env("DAC_PODMAN_SOCK") else {
        return;
    };
    let dir = scratch("live-podman");
    let bag = dir.join("bag");
    let out = collect(&format!("unix://{sock}"), &bag, &[]);
    assert_eq!(code(&out), 0, "{}", outcome(&out, &bag));
    assert_verifies(&bag);
    assert_bagit_valid(&bag);
    let recs = log_records(&bag);
    assert_eq!(recs[0]["engine"], "podman");
    for check in recs.iter().filter(|r| r["event"] == "image_check") {
        assert_eq!(check["image_check"]["ok"], true, "{check}");
        assert_eq!(check["image_check"]["layout"], "docker-archive");
    }
    assert!(!artifacts(&recs, "/containers/{id}/export").is_empty());
    // Podman logs a container mount per export and a save per image, nothing for top: the
    // live stream still closes on them rather than on the 200 ms limit.
    let fp = recs
        .iter()
        .find(|r| r.get("footprint_events").is_some())
        .expect("a note on closing the live stream");
    let expected = fp["footprint_events"]["expected"].as_u64().unwrap();
    assert!(expected >= artifacts(&recs, "/containers/{id}/export").len() as u64);
    assert!(
        fp["footprint_events"]["delivered"].as_u64().unwrap() >= expected,
        "{fp}"
    );
    assert!(
        fp["detail"].as_str().unwrap().contains("closed after"),
        "{fp}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
