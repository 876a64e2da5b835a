//! Swarm (issue 8): against the single-node swarm manager that scripts/engines.sh starts beside
//! the main engine (DAC_SWARM_SOCK), the collector takes `/swarm`, `/services`, `/tasks`,
//! `/nodes`, `/secrets` and `/configs`, and a secret's data is nowhere in the bundle; against the
//! main engine (DAC_DOCKER_SOCK, not a manager) it says so in a `note` and takes none of them.
//! Under CI=true a missing engine is a failure; elsewhere these tests skip loudly.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

/// The data of the secret `dac-secret`, as scripts/engines.sh (SWARM_SECRET_MARKER) creates it.
/// The secret's label `dac.marker.sha256` holds its SHA-256, so a copy that no longer matches the
/// script is caught instead of making the "nowhere in the bundle" check pass for nothing.
const MARKER: &str = "TOP-SECRET-DAC-MARKER-5c81e0f4a7";

const SWARM_ENDPOINTS: [&str; 6] = [
    "/swarm",
    "/services",
    "/tasks",
    "/nodes",
    "/secrets",
    "/configs",
];

const NOT_A_MANAGER: &str = "not a swarm manager";

fn collect(sock: &str, bag: &Path, extra: &[&str]) -> std::process::Output {
    run(dac()
        .args(["collect", "-H", &format!("unix://{sock}"), "--out"])
        .arg(bag)
        .args(["--no-save", "--no-export", "--quiet"])
        .args(["--case", "SWARM-1", "--examiner", "CI"])
        .args(extra))
}

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Standard base64 with padding: how the Engine API would carry a secret's `Spec.Data`.
fn base64(bytes: &[u8]) -> String {
    dac::sign::base64_encode(bytes)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn notes(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .filter(|r| r["event"] == "note")
        .filter_map(|r| r["detail"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn swarm_manager_objects_are_collected_and_secret_data_is_not() {
    let Some(sock) = live_env("DAC_SWARM_SOCK") else {
        return;
    };
    let dir = scratch("swarm-manager");
    let bag = dir.join("bag");
    let out = collect(&sock, &bag, &[]);
    assert_eq!(code(&out), 0, "{}", outcome(&out, &bag));
    assert_verifies(&bag);
    assert_bagit_valid(&bag);

    manager_bundle_checks(&bag);
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a bundle from a swarm manager must hold: every swarm object, a leader, the service
/// and its task, the secret's metadata but never its data, the config with its data.
fn manager_bundle_checks(bag: &Path) {
    let recs = log_records(bag);
    assert!(errors(&recs).is_empty(), "errors: {:?}", errors(&recs));
    let info = read_json(&bag.join("data/30-metadata/info.json"));
    assert_eq!(
        info.pointer("/Swarm/ControlAvailable"),
        Some(&Value::Bool(true)),
        "DAC_SWARM_SOCK is not a swarm manager: {:?}",
        info.get("Swarm")
    );
    assert!(
        !notes(&recs).iter().any(|n| n.contains(NOT_A_MANAGER)),
        "a manager was reported as not one: {:?}",
        notes(&recs)
    );
    for ep in SWARM_ENDPOINTS {
        let a = artifacts(&recs, ep);
        assert_eq!(a.len(), 1, "one artifact for {ep}: {a:?}");
        assert_eq!(a[0]["complete"], true, "{ep}: {}", a[0]);
        let path = a[0]["path"].as_str().expect("artifact path");
        assert!(
            path.starts_with("data/30-metadata/swarm/"),
            "{ep} at {path}"
        );
        let v = read_json(&bag.join(path));
        if ep == "/swarm" {
            assert!(v["ID"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
        } else {
            assert!(v.is_array(), "{ep} is not a list: {v}");
        }
    }

    let dir30 = bag.join("data/30-metadata/swarm");
    let nodes = read_json(&dir30.join("nodes.json"));
    assert!(
        nodes
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.pointer("/ManagerStatus/Leader") == Some(&Value::Bool(true))),
        "no leader among the nodes: {nodes}"
    );
    let services = read_json(&dir30.join("services.json"));
    let svc = services
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s.pointer("/Spec/Name").and_then(Value::as_str) == Some("dac-svc"))
        .unwrap_or_else(|| panic!("dac-svc missing from /services: {services}"));
    let svc_id = svc["ID"].as_str().unwrap();
    let tasks = read_json(&dir30.join("tasks.json"));
    assert!(
        tasks
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["ServiceID"].as_str() == Some(svc_id)),
        "no task of dac-svc in /tasks: {tasks}"
    );

    // Service logs: one per service, framed and split, each line naming its node and task.
    let listed: Vec<&str> = services
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["ID"].as_str())
        .collect();
    let logs = artifacts(&recs, "/services/{id}/logs");
    let raws: Vec<&Value> = logs
        .into_iter()
        .filter(|a| a.get("derived_from").is_none())
        .collect();
    let mut objects: Vec<&str> = raws.iter().filter_map(|a| a["object"].as_str()).collect();
    objects.sort();
    let mut want = listed.clone();
    want.sort();
    assert_eq!(objects, want, "service logs");
    let logsvc = services
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s.pointer("/Spec/Name").and_then(Value::as_str) == Some("dac-logsvc"))
        .unwrap_or_else(|| panic!("dac-logsvc missing from /services: {services}"))["ID"]
        .as_str()
        .unwrap();
    let raw = raws.iter().find(|a| a["object"] == logsvc).unwrap();
    assert_eq!(raw["log_framing"], "multiplexed", "{raw}");
    assert_eq!(raw["complete"], true, "{raw}");
    let dir40 = bag
        .join(raw["path"].as_str().unwrap())
        .parent()
        .unwrap()
        .to_path_buf();
    for (file, line) in [
        ("stdout.log", "dac-logsvc out 1"),
        ("stderr.log", "dac-logsvc err 1"),
    ] {
        let text = std::fs::read_to_string(dir40.join(file)).unwrap();
        let hit = text
            .lines()
            .find(|l| l.ends_with(line))
            .unwrap_or_else(|| panic!("{line:?} not in {file}: {text:?}"));
        assert!(
            hit.contains(&format!("com.docker.swarm.service.id={logsvc}"))
                && hit.contains("com.docker.swarm.task.id="),
            "no node/task details: {hit}"
        );
    }

    // The secret: its metadata, never its data.
    let secrets = read_json(&dir30.join("secrets.json"));
    let secret = secrets
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s.pointer("/Spec/Name").and_then(Value::as_str) == Some("dac-secret"))
        .unwrap_or_else(|| panic!("dac-secret missing from /secrets: {secrets}"));
    assert!(
        secret["ID"].as_str().is_some_and(|s| !s.is_empty()),
        "{secret}"
    );
    assert!(secret["CreatedAt"].is_string(), "{secret}");
    assert_eq!(
        secret
            .pointer("/Spec/Labels/dac.marker.sha256")
            .and_then(Value::as_str),
        Some(sha256_bytes(MARKER.as_bytes()).as_str()),
        "MARKER here is not the data of dac-secret (scripts/engines.sh SWARM_SECRET_MARKER)"
    );
    assert!(
        secret.pointer("/Spec/Data").is_none(),
        "secret data in /secrets: {secret}"
    );
    // A config, unlike a secret, carries its data.
    let configs = read_json(&dir30.join("configs.json"));
    let config = configs
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c.pointer("/Spec/Name").and_then(Value::as_str) == Some("dac-config"))
        .unwrap_or_else(|| panic!("dac-config missing from /configs: {configs}"));
    assert_eq!(
        config.pointer("/Spec/Data").and_then(Value::as_str),
        Some(base64(b"dac swarm config v1\n").as_str()),
        "{config}"
    );

    // Nowhere in the bundle: not as bytes, not as the base64 the API would carry it in.
    let needles = [
        MARKER.as_bytes().to_vec(),
        base64(MARKER.as_bytes()).into_bytes(),
    ];
    let files = files_under(bag);
    assert!(files.len() > 10, "too few files: {files:?}");
    for f in &files {
        let bytes = std::fs::read(bag.join(f)).unwrap();
        for n in &needles {
            assert!(
                !contains(&bytes, n),
                "the secret's data ({}) is in {f}",
                String::from_utf8_lossy(n)
            );
        }
    }
}

/// The same checks on a collection replayed from the swarm manager's recording: the swarm
/// collector is tested with no daemon too.
#[test]
fn swarm_manager_replay_collects_every_swarm_object() {
    let fix = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/docker-20.10-swarm");
    for f in files_under(&fix) {
        let bytes = std::fs::read(fix.join(&f)).unwrap();
        assert!(
            !contains(&bytes, MARKER.as_bytes()),
            "the secret's data is in the fixture {f}"
        );
    }
    let dir = scratch("swarm-replay");
    let bag = dir.join("bag");
    let out = replay(&fix, &bag, &["--no-save", "--no-export"]);
    assert_eq!(code(&out), 0, "{}", outcome(&out, &bag));
    assert_verifies(&bag);
    manager_bundle_checks(&bag);
    assert!(
        notes(&log_records(&bag))
            .iter()
            .any(|n| n.contains("join tokens")),
        "no note that the bundle holds the join tokens"
    );

    // Targeted at one task's container: no service's logs (other tenants' output).
    let list = read_json(&bag.join("data/10-volatile/containers.json"));
    let one = list[0]["Id"].as_str().unwrap();
    let targeted = dir.join("targeted");
    let out = replay(
        &fix,
        &targeted,
        &["--no-save", "--no-export", "--container", one],
    );
    assert_eq!(code(&out), 0, "{}", outcome(&out, &targeted));
    let recs = log_records(&targeted);
    assert!(!artifacts(&recs, "/containers/{id}/logs").is_empty());
    assert!(artifacts(&recs, "/services/{id}/logs").is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--path` on a task's secret and config: the engine hands back the empty mount targets, never
/// the data, and the log says so instead of leaving empty files to be read as their contents.
#[test]
fn secret_path_pull_is_flagged_and_holds_no_secret() {
    let Some(sock) = live_env("DAC_SWARM_SOCK") else {
        return;
    };
    let Some(cli) = live_env("DAC_SWARM_DOCKER") else {
        return;
    };
    let ps = engine_cli(
        &cli,
        &[
            "ps",
            "-q",
            "--filter",
            "label=com.docker.swarm.service.name=dac-svc",
        ],
    );
    let ids = String::from_utf8_lossy(&ps.stdout).to_string();
    let Some(id) = ids.split_whitespace().next() else {
        panic!(
            "no running task of dac-svc: {ids:?} {}",
            String::from_utf8_lossy(&ps.stderr)
        );
    };
    let dir = scratch("swarm-secret-path");
    let bag = dir.join("bag");
    let paths = [
        "--path",
        "/run/secrets/dac-secret",
        "--path",
        "/etc/dac-config",
    ];
    let out = collect(&sock, &bag, &[&["--container", id][..], &paths].concat());
    assert_eq!(code(&out), 0, "{}", outcome(&out, &bag));
    assert_verifies(&bag);
    let recs = log_records(&bag);
    let pulls = artifacts(&recs, "/containers/{id}/archive");
    assert_eq!(pulls.len(), 2, "{pulls:?}");
    let mut flagged: Vec<String> = recs
        .iter()
        .filter(|r| r["event"] == "note" && r["endpoint"] == "/containers/{id}/archive")
        .filter_map(|r| r["empty_mount_targets"].as_array())
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_string))
        .collect();
    flagged.sort();
    assert_eq!(
        flagged,
        ["/etc/dac-config", "/run/secrets/dac-secret"],
        "notes: {:?}",
        notes(&recs)
    );
    for f in files_under(&bag) {
        let bytes = std::fs::read(bag.join(&f)).unwrap();
        assert!(
            !contains(&bytes, MARKER.as_bytes()),
            "the secret's data is in {f}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn non_manager_gets_a_note_and_no_swarm_artifacts() {
    let Some(sock) = live_env("DAC_DOCKER_SOCK") else {
        return;
    };
    let dir = scratch("swarm-non-manager");
    let bag = dir.join("bag");
    let out = collect(&sock, &bag, &[]);
    assert_eq!(code(&out), 0, "{}", outcome(&out, &bag));
    assert_verifies(&bag);

    let info = read_json(&bag.join("data/30-metadata/info.json"));
    assert_ne!(
        info.pointer("/Swarm/ControlAvailable"),
        Some(&Value::Bool(true)),
        "DAC_DOCKER_SOCK is a swarm manager; it must not be"
    );
    let recs = log_records(&bag);
    let notes = notes(&recs);
    assert!(
        notes.iter().any(|n| n.contains(NOT_A_MANAGER)),
        "no note that the engine is not a swarm manager: {notes:?}"
    );
    for ep in SWARM_ENDPOINTS.iter().chain(&["/services/{id}/logs"]) {
        assert!(
            artifacts(&recs, ep).is_empty(),
            "{ep} collected from a non-manager"
        );
    }
    let swarm_files: Vec<_> = files_under(&bag)
        .into_iter()
        .filter(|f| f.contains("/swarm/"))
        .collect();
    assert!(swarm_files.is_empty(), "swarm files: {swarm_files:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
