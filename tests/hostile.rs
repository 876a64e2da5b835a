//! Hostile and failing engines (issue 6): the real `dac` binary against a fake engine that
//! misbehaves on purpose. In every case the tool must record the error (kind, endpoint,
//! object, offset, detail), keep and hash what it received, seal a bundle that verifies,
//! exit with the right code, finish in bounded time, never panic and never write outside
//! its output folder.
//!
//! The fake engine is a std-thread HTTP/1.1 server on a Unix socket (tests/hostile/engine.rs);
//! each test has its own folder and socket, so the tests run in parallel.

#[path = "hostile/engine.rs"]
mod engine;
#[path = "hostile/harness.rs"]
mod harness;
#[path = "hostile/make.rs"]
mod make;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use engine::{Builder, Engine, World};
use harness::{
    collect, common, nothing_written, spawn_collect, Bag, Case, Checks, Expect, COMPLETE, PARTIAL,
};
use make::{frame, sha256_hex, tar, Entry};

fn export_path(id: &str) -> String {
    format!("data/50-filesystem/containers/{id}/export.tar")
}

fn logs_path(id: &str) -> String {
    format!("data/40-logs/containers/{id}/logs.raw")
}

fn inspect_path(id: &str) -> String {
    format!("data/30-metadata/containers/{id}/inspect.json")
}

fn save_path(image_id: &str) -> String {
    format!(
        "data/60-images/{}/save.tar",
        image_id.trim_start_matches("sha256:")
    )
}

/// The bundle file name the tool must use for an unsafe object name.
fn hashed_name(raw: &str) -> String {
    format!("x-{}", sha256_hex(raw.as_bytes()))
}

/// Start the engine, run the collector with `args`, and apply the shared checks.
fn run_case(name: &str, b: Builder, args: &[&str], expect: &Expect) -> (Checks, Bag, Engine, Case) {
    let case = Case::new(name);
    let engine = b.start(&case.sock);
    let run = collect(&case, args);
    let mut c = Checks::new(name);
    let bag = common(&mut c, &case, &run, &engine, expect);
    (c, bag, engine, case)
}

fn web(w: &World) -> engine::Container {
    w.containers[0].clone()
}

// ---------------------------------------------------------------------------------------
// Bodies cut short

#[test]
fn chunked_body_ends_early() {
    let w = World::standard();
    let web = web(&w);
    let f1 = frame(1, b"2026-12-02T15:16:38Z first line\n");
    let f2 = frame(2, b"2026-12-02T15:16:39Z second line\n");
    let sent = [f1.clone(), f2.clone()].concat();
    let b = Builder::new(w).route_for("/containers/*/logs", &web.id, move |_, c| {
        let _ = c.chunked_head(200, "application/vnd.docker.multiplexed-stream")
            && c.chunk(&f1)
            && c.chunk(&f2);
        // No terminating zero-length chunk: the stream just ends.
        c.close();
    });
    let (mut c, bag, _e, _case) = run_case("chunked_ends_early", b, &[], &PARTIAL);
    let err = c.error(&bag, "/containers/{id}/logs", "truncated", Some(&web.id));
    c.offset(err, sent.len() as u64, "chunked body cut after two chunks");
    c.partial_file(&bag, err, &logs_path(&web.id), Some(&sent));
    c.finish();
}

#[test]
fn connection_reset_mid_export() {
    let w = World::standard();
    let web = web(&w);
    let export = web.export.clone();
    let cut = 1536;
    let sent = export[..cut].to_vec();
    // The request headers stay unread, so the close is a reset (ECONNRESET), not an EOF.
    let b = Builder::new(w).route_unread_for("/containers/*/export", &web.id, move |_, c| {
        let _ = c.head(
            200,
            &[
                ("Content-Type", "application/x-tar".into()),
                ("Content-Length", export.len().to_string()),
            ],
        ) && c.raw(&export[..cut]);
        c.pause(Duration::from_millis(100));
    });
    let (mut c, bag, _e, _case) = run_case("reset_mid_export", b, &[], &PARTIAL);
    let err = c.error(&bag, "/containers/{id}/export", "truncated", Some(&web.id));
    c.offset(err, cut as u64, "reset after 1536 bytes");
    if let Some(e) = err {
        // The examiner must learn why the body stopped, not just that it did.
        c.check(
            e["detail"]
                .as_str()
                .unwrap_or("")
                .to_lowercase()
                .contains("reset"),
            || format!("the detail does not name the reset: {}", e["detail"]),
        );
    }
    c.partial_file(&bag, err, &export_path(&web.id), Some(&sent));
    c.finish();
}

#[test]
fn content_length_larger_than_body() {
    let w = World::standard();
    let save = w.image_save.clone();
    let sent = save.clone();
    let image = w.image_id.clone();
    let len = save.len();
    let b = Builder::new(w).route_for("/images/*/get", &image, move |_, c| {
        let _ = c.head(
            200,
            &[
                ("Content-Type", "application/x-tar".into()),
                ("Content-Length", (len + 4096).to_string()),
            ],
        ) && c.raw(&save);
        c.close();
    });
    let (mut c, bag, _e, _case) = run_case("content_length_larger", b, &[], &PARTIAL);
    let err = c.error(&bag, "/images/{name}/get", "truncated", Some(&image));
    c.offset(err, len as u64, "Content-Length 4096 bytes more than sent");
    c.partial_file(&bag, err, &save_path(&image), Some(&sent));
    c.check(bag.events("image_check").is_empty(), || {
        "an incomplete save was image-checked as if complete".into()
    });
    c.finish();
}

// ---------------------------------------------------------------------------------------
// JSON that is not what was asked for

#[test]
fn malformed_json() {
    let w = World::standard();
    let (a, b_) = (w.containers[0].id.clone(), w.containers[1].id.clone());
    let body = format!("[\n  {{\"Id\": \"{a}\", \"Names\": [\"/web\"], \"State\": \"running\"}},\n  {{\"Id\": \"{b_}\", \"State\": tru }}\n]\n");
    let bad = body.find("tru ").unwrap() + 3;
    let sent = body.clone().into_bytes();
    let b = Builder::new(w).route("/containers/json", move |_, c| {
        let _ = c.respond(200, "application/json", body.as_bytes());
    });
    let (mut c, bag, _e, _case) = run_case("malformed_json", b, &[], &PARTIAL);
    let err = c.error(&bag, "/containers/json", "protocol", None);
    if let Some(e) = err {
        // The offset must say where in the body the JSON breaks (line 3 here), not the
        // column within its line.
        let got = e["offset"].as_u64().unwrap_or(u64::MAX);
        c.check(got.abs_diff(bad as u64) <= 1, || {
            format!("malformed JSON: error offset {got}, the document breaks at byte {bad} (line 3, column {})", bad - body_line_start(&sent, bad))
        });
    }
    c.partial_file(&bag, err, "data/10-volatile/containers.json", Some(&sent));
    c.finish();
}

fn body_line_start(b: &[u8], at: usize) -> usize {
    b[..at]
        .iter()
        .rposition(|&x| x == b'\n')
        .map_or(0, |p| p + 1)
}

#[test]
fn json_of_the_wrong_shape() {
    let body =
        json!({"Containers": [{"Id": "hidden"}], "message": "an object where a list belongs"});
    let sent = serde_json::to_vec(&body).unwrap();
    let b = Builder::new(World::standard()).route("/containers/json", move |_, c| {
        let _ = c.json(200, &body);
    });
    let (mut c, bag, _e, _case) = run_case("json_wrong_shape", b, &[], &PARTIAL);
    let err = c.error(&bag, "/containers/json", "protocol", None);
    c.partial_file(&bag, err, "data/10-volatile/containers.json", Some(&sent));
    c.finish();
}

#[test]
fn empty_200_for_the_container_list() {
    // An empty answer is not an empty list: a daemon that hides every container this way
    // must not yield a bundle that says "complete".
    let b = Builder::new(World::standard()).route("/containers/json", |_, c| {
        let _ = c.respond(200, "application/json", b"");
    });
    let (mut c, bag, _e, _case) = run_case("empty_200_list", b, &[], &PARTIAL);
    c.error(&bag, "/containers/json", "protocol", None);
    c.finish();
}

#[test]
fn null_where_a_list_is_expected() {
    let b = Builder::new(World::standard())
        .route("/containers/json", |_, c| {
            let _ = c.respond(200, "application/json", b"null");
        })
        .route("/images/json", |_, c| {
            let _ = c.respond(200, "application/json", b"null\n");
        });
    let (mut c, bag, _e, _case) = run_case("null_for_list", b, &[], &PARTIAL);
    let err = c.error(&bag, "/containers/json", "protocol", None);
    c.partial_file(&bag, err, "data/10-volatile/containers.json", Some(b"null"));
    let err = c.error(&bag, "/images/json", "protocol", None);
    c.partial_file(&bag, err, "data/30-metadata/images.json", Some(b"null\n"));
    c.finish();
}

#[test]
fn json_document_of_50_mb() {
    let mut w = World::standard();
    w.containers[0].extra = json!({"Labels": {"padding": "A".repeat(50 << 20)}});
    let body = serde_json::to_vec(&w.containers_json()).unwrap();
    let len = body.len();
    let b = Builder::new(w).route("/containers/json", move |_, c| {
        let _ = c.head(
            200,
            &[
                ("Content-Type", "application/json".into()),
                ("Content-Length", body.len().to_string()),
            ],
        );
        for piece in body.chunks(1 << 20) {
            if !c.raw(piece) {
                return;
            }
        }
    });
    let case = Case::new("json_50mb");
    let engine = b.start(&case.sock);
    let run = collect(&case, &["--deadline", "60"]);
    let mut c = Checks::new("json_document_of_50_mb");
    let bag = common(
        &mut c,
        &case,
        &run,
        &engine,
        &Expect {
            codes: &[0],
            within: Duration::from_secs(40),
        },
    );
    let a = bag.artifact("data/10-volatile/containers.json");
    c.check(
        a.is_some_and(|a| a["bytes"] == len && a["complete"] == true),
        || format!("containers.json not kept complete: {a:?}"),
    );
    let web_id = engine.world.containers[0].id.clone();
    c.check(bag.artifact(&export_path(&web_id)).is_some(), || {
        "the container listed in the 50 MB document was not collected".into()
    });
    match run.peak_rss_kb {
        Some(kb) => {
            println!("json_document_of_50_mb: peak RSS of dac {} MiB", kb / 1024);
            c.check(kb < 512 * 1024, || {
                format!("dac used {} MiB for a 50 MB document", kb / 1024)
            });
        }
        None => println!("json_document_of_50_mb: peak RSS not measurable here"),
    }
    c.finish();
}

// ---------------------------------------------------------------------------------------
// Log streams

#[test]
fn log_frame_claims_more_than_follows() {
    let w = World::standard();
    let web = web(&w);
    let good = frame(1, b"2026-12-02T15:16:38Z fine\n");
    let mut body = good.clone();
    body.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 100]);
    body.extend_from_slice(b"only ten b");
    let sent = body.clone();
    let b = Builder::new(w).route_for("/containers/*/logs", &web.id, move |_, c| {
        let _ = c.respond(200, "application/vnd.docker.multiplexed-stream", &body);
    });
    let (mut c, bag, _e, _case) = run_case("log_frame_short", b, &[], &PARTIAL);
    let err = c.error(&bag, "/containers/{id}/logs", "truncated", Some(&web.id));
    // The valid stream stops where the cut frame starts.
    c.offset(
        err,
        good.len() as u64,
        "frame header claims 100 bytes, 10 follow",
    );
    c.partial_file(&bag, err, &logs_path(&web.id), Some(&sent));
    c.finish();
}

#[test]
fn log_unknown_stream_type() {
    let w = World::standard();
    let web = web(&w);
    let good = frame(1, b"2026-12-02T15:16:38Z fine\n");
    let body = [
        good.clone(),
        frame(7, b"what is stream 7"),
        frame(1, b"more\n"),
    ]
    .concat();
    let sent = body.clone();
    let b = Builder::new(w).route_for("/containers/*/logs", &web.id, move |_, c| {
        let _ = c.respond(200, "application/vnd.docker.multiplexed-stream", &body);
    });
    let (mut c, bag, _e, _case) = run_case("log_unknown_stream", b, &[], &PARTIAL);
    let err = c.error(&bag, "/containers/{id}/logs", "protocol", Some(&web.id));
    c.offset(
        err,
        good.len() as u64,
        "the bad frame starts after the first frame",
    );
    c.partial_file(&bag, err, &logs_path(&web.id), Some(&sent));
    c.finish();
}

#[test]
fn log_stream_type_3_error_frame() {
    let w = World::standard();
    let web = web(&w);
    let good = frame(1, b"2026-12-02T15:16:38Z fine\n");
    let body = [
        good.clone(),
        frame(3, b"Error grabbing logs: log file is corrupted\n"),
    ]
    .concat();
    let sent = body.clone();
    let b = Builder::new(w).route_for("/containers/*/logs", &web.id, move |_, c| {
        let _ = c.respond(200, "application/vnd.docker.multiplexed-stream", &body);
    });
    let (mut c, bag, _e, _case) = run_case("log_type3", b, &[], &PARTIAL);
    let err = c.error(&bag, "/containers/{id}/logs", "protocol", Some(&web.id));
    if let Some(e) = err {
        c.check(
            e["detail"]
                .as_str()
                .unwrap_or("")
                .contains("Error grabbing logs: log file is corrupted"),
            || {
                format!(
                    "the daemon's in-band message is not in the detail: {}",
                    e["detail"]
                )
            },
        );
    }
    c.offset(
        err,
        good.len() as u64,
        "the error frame starts after the first frame",
    );
    c.partial_file(&bag, err, &logs_path(&web.id), Some(&sent));
    c.finish();
}

// ---------------------------------------------------------------------------------------
// Tars

#[test]
fn export_tar_ends_in_json_error() {
    let w = World::standard();
    let web = web(&w);
    let tar_part = tar(
        &[Entry::Dir("etc/"), Entry::File("etc/hostname", b"web\n")],
        false,
    );
    let message = "write /var/lib/docker/tmp/export: no space left on device";
    let tail = serde_json::to_vec(&json!({"errorDetail": {"message": message}, "error": message}))
        .unwrap();
    let body = [tar_part.clone(), tail, b"\n".to_vec()].concat();
    let sent = body.clone();
    let b = Builder::new(w).route_for("/containers/*/export", &web.id, move |_, c| {
        let _ = c.chunked_head(200, "application/x-tar") && c.chunk(&body) && c.chunked_end();
    });
    let (mut c, bag, _e, _case) = run_case("tar_json_error", b, &[], &PARTIAL);
    let err = c.error(&bag, "/containers/{id}/export", "protocol", Some(&web.id));
    if let Some(e) = err {
        c.check(
            e["detail"]
                .as_str()
                .unwrap_or("")
                .contains("no space left on device"),
            || {
                format!(
                    "the daemon's JSON error is not quoted in the detail: {}",
                    e["detail"]
                )
            },
        );
    }
    c.offset(
        err,
        tar_part.len() as u64,
        "the tar stops where the JSON error begins",
    );
    c.partial_file(&bag, err, &export_path(&web.id), Some(&sent));
    c.finish();
}

#[test]
fn export_tar_with_traversal_entries() {
    // The collector keeps archives as bytes; hostile member names must not matter.
    let w = World::standard();
    let web = web(&w);
    let body = tar(
        &[
            Entry::File("../../../../tmp/dach-escaped", b"owned\n"),
            Entry::File("/etc/shadow", b"root:*:1:0:99999:7:::\n"),
            Entry::Symlink("escape", "/"),
            Entry::Hardlink("hard", "../../outside"),
            Entry::File("escape/etc/cron.d/x", b"* * * * * root sh\n"),
        ],
        true,
    );
    let sent = body.clone();
    let b = Builder::new(w).route_for("/containers/*/export", &web.id, move |_, c| {
        let _ = c.respond(200, "application/x-tar", &body);
    });
    let (mut c, bag, _e, _case) = run_case("tar_traversal", b, &[], &COMPLETE);
    c.kept_file(&bag, &export_path(&web.id), Some(true), Some(&sent));
    c.check(!std::path::Path::new("/tmp/dach-escaped").exists(), || {
        "a tar member escaped to /tmp".into()
    });
    c.finish();
}

// ---------------------------------------------------------------------------------------
// HTTP errors

#[test]
fn http_500_on_one_endpoint() {
    let b = Builder::new(World::standard()).route("/system/df", |_, c| {
        let _ = c.json(500, &json!({"message": "layer store is corrupted"}));
    });
    let (mut c, bag, _e, _case) = run_case("http_500", b, &[], &PARTIAL);
    let err = c.error(&bag, "/system/df", "http", None);
    if let Some(e) = err {
        c.check(e["status"] == 500, || {
            format!("status is {}, expected 500", e["status"])
        });
        c.check(
            e["detail"]
                .as_str()
                .unwrap_or("")
                .contains("layer store is corrupted"),
            || format!("detail lacks the engine's message: {}", e["detail"]),
        );
        c.check(e["offset"] == 0, || {
            format!("offset {} for an error answer", e["offset"])
        });
    }
    c.check(
        bag.read("data/30-metadata/system-df.json").is_none(),
        || "an error answer was kept as if it were the artifact".into(),
    );
    c.check(bag.errors().len() == 1, || {
        format!("{} errors for one failing endpoint", bag.errors().len())
    });
    c.finish();
}

#[test]
fn container_vanished_between_list_and_inspect() {
    let w = World::standard();
    let db = w.containers[1].clone();
    let gone = |c: &mut engine::Conn, id: &str| {
        let _ = c.json(404, &json!({"message": format!("No such container: {id}")}));
    };
    let mut b = Builder::new(w);
    for tail in ["json", "changes", "logs", "export", "top", "stats"] {
        let id = db.id.clone();
        b = b.route_for(&format!("/containers/*/{tail}"), &db.id, move |_, c| {
            gone(c, &id)
        });
    }
    let (mut c, bag, _e, _case) = run_case("vanished_404", b, &[], &PARTIAL);
    let err = c.error(&bag, "/containers/{id}/json", "http", Some(&db.id));
    if let Some(e) = err {
        c.check(e["status"] == 404, || {
            format!("status is {}, expected 404", e["status"])
        });
        c.check(
            e["detail"]
                .as_str()
                .unwrap_or("")
                .contains("No such container"),
            || format!("detail: {}", e["detail"]),
        );
    }
    c.check(bag.read(&inspect_path(&db.id)).is_none(), || {
        "a 404 answer was kept as the inspect".into()
    });
    let web_id = &_e.world.containers[0].id;
    c.check(bag.artifact(&inspect_path(web_id)).is_some(), || {
        "the container that still exists was not collected".into()
    });
    c.finish();
}

#[test]
fn redirect_is_not_followed() {
    let b = Builder::new(World::standard()).route("/info", |_, c| {
        let _ = c.head(
            301,
            &[
                ("Location", "http://198.51.100.7:2375/v1.41/info".into()),
                ("Content-Length", "0".into()),
            ],
        );
    });
    let (mut c, bag, e, _case) = run_case("redirect_301", b, &[], &PARTIAL);
    let err = c.error(&bag, "/info", "http", None);
    if let Some(x) = err {
        c.check(x["status"] == 301, || {
            format!("status is {}, expected 301", x["status"])
        });
    }
    let reqs = e.requests();
    let info = reqs.iter().filter(|r| r.path == "/info").count();
    c.check(info == 1, || format!("/info was requested {info} times"));
    c.check(reqs.iter().all(|r| r.target.starts_with('/')), || {
        "a request in absolute form (a followed redirect)".into()
    });
    c.check(bag.read("data/30-metadata/info.json").is_none(), || {
        "the redirect answer was kept as info.json".into()
    });
    c.finish();
}

// ---------------------------------------------------------------------------------------
// Time: idle timeout and overall deadline

#[test]
fn endpoint_never_answers() {
    let w = World::standard();
    let web = web(&w);
    let export = web.export.clone();
    let sent = export[..1000].to_vec();
    let b = Builder::new(w).route("/info", |_, c| c.hold()).route_for(
        "/containers/*/export",
        &web.id,
        move |_, c| {
            if c.head(
                200,
                &[
                    ("Content-Type", "application/x-tar".into()),
                    ("Content-Length", export.len().to_string()),
                ],
            ) && c.raw(&export[..1000])
            {
                c.hold();
            }
        },
    );
    let (mut c, bag, _e, _case) = run_case("never_answers", b, &["--idle-timeout", "2"], &PARTIAL);
    let err = c.error(&bag, "/info", "timeout", None);
    c.offset(err, 0, "no answer at all");
    let err = c.error(&bag, "/containers/{id}/export", "timeout", Some(&web.id));
    c.offset(err, 1000, "the body stalls after 1000 bytes");
    c.partial_file(&bag, err, &export_path(&web.id), Some(&sent));
    c.finish();
}

#[test]
fn trickle_hits_the_deadline() {
    let w = World::standard();
    let web = web(&w);
    let export = web.export.clone();
    let b = Builder::new(w).route_for("/containers/*/export", &web.id, move |_, c| {
        if !c.chunked_head(200, "application/x-tar") {
            return;
        }
        for byte in &export {
            if !c.chunk(std::slice::from_ref(byte)) || !c.pause(Duration::from_secs(1)) {
                return;
            }
        }
    });
    let (mut c, bag, _e, _case) = run_case(
        "trickle_deadline",
        b,
        &["--deadline", "5", "--idle-timeout", "3"],
        &PARTIAL,
    );
    let err = c.error(&bag, "/containers/{id}/export", "deadline", Some(&web.id));
    if let Some(e) = err {
        let off = e["offset"].as_u64().unwrap_or(0);
        c.check(off > 0 && off < 10, || {
            format!("offset {off} for a byte-a-second trickle cut after about 5 s")
        });
        let prefix = web.export[..off.min(web.export.len() as u64) as usize].to_vec();
        c.partial_file(&bag, err, &export_path(&web.id), Some(&prefix));
    }
    c.check(
        bag.events("note")
            .iter()
            .any(|n| n["detail"].as_str().unwrap_or("").contains("deadline")),
        || "no note that the deadline passed".into(),
    );
    c.finish();
}

// ---------------------------------------------------------------------------------------
// Hostile names

#[test]
fn hostile_ids_names_and_tags() {
    let hostile: Vec<String> = vec![
        "../../../../tmp/dach-escape".into(),
        "a/b/c".into(),
        "nul\u{0}byte".into(),
        "new\nline\r\n".into(),
        "\u{ff}\u{fe}\u{80}not-utf8-on-the-wire".into(),
        "x".repeat(10_000),
        "..".into(),
        ".".into(),
    ];
    let mut w = World::standard();
    let template = w.containers[1].clone();
    for (i, id) in hostile.iter().enumerate() {
        let mut c = template.clone();
        c.id = id.clone();
        c.names = vec![format!("/{id}"), format!("/../name{i}")];
        c.export = make::export_tar("hostile");
        w.containers.push(c);
    }
    w.network_id = "../../networks/\u{0}evil".into();
    w.network_name = "bridge/../../x".into();
    w.volume = "../../../../etc\nvol".into();
    w.image_tags = vec![
        "../../evil:latest".into(),
        "a/b:\u{0}\n".into(),
        format!("{}:t", "r".repeat(10_000)),
    ];
    let (net, vol) = (w.network_id.clone(), w.volume.clone());
    // Complete, or partial only because "." and ".." cannot be addressed on the wire.
    let either = Expect {
        codes: &[0, 1],
        within: Duration::from_secs(15),
    };
    let (mut c, bag, e, _case) = run_case("hostile_names", Builder::new(w), &[], &either);
    for err in bag.errors() {
        c.check(err["object"] == "." || err["object"] == "..", || {
            format!("error for a hostile name: {err}")
        });
    }
    for id in &hostile {
        let shown: String = id.chars().take(40).collect();
        c.check(bag.log.iter().any(|r| r["object"] == id.as_str()), || {
            format!("the log does not record the raw ID {shown:?}")
        });
        if bag.errors().iter().any(|e| e["object"] == id.as_str()) {
            // Refused as unaddressable ("." or ".."): recorded, nothing to keep.
            continue;
        }
        let p = inspect_path(&hashed_name(id));
        c.check(bag.manifest.contains_key(&p), || {
            format!("the inspect of {shown:?} is not at {p}")
        });
        let p = export_path(&hashed_name(id));
        c.check(bag.manifest.contains_key(&p), || {
            format!("the export of {shown:?} is not at {p}")
        });
        c.check(
            e.requests()
                .iter()
                .any(|r| r.object() == id && r.path.ends_with("/json")),
            || format!("the engine never saw the ID {shown:?} intact"),
        );
    }
    for (raw, p) in [
        (
            &net,
            format!("data/30-metadata/networks/{}.json", hashed_name(&net)),
        ),
        (
            &vol,
            format!("data/30-metadata/volumes/{}.json", hashed_name(&vol)),
        ),
    ] {
        c.check(bag.log.iter().any(|r| r["object"] == **raw), || {
            format!("the log does not record the raw name {raw:?}")
        });
        c.check(bag.manifest.contains_key(&p), || {
            format!("{raw:?} is not kept at {p}")
        });
    }
    c.check(!std::path::Path::new("/tmp/dach-escape").exists(), || {
        "something was written to /tmp/dach-escape".into()
    });
    // A "." or ".." segment on the wire is resolved by any normalizing router (Go's
    // ServeMux, proxies): `/containers/./json` is the container list, not an inspect.
    for r in e.requests() {
        let raw_path = r.target.split('?').next().unwrap_or("");
        c.check(!raw_path.split('/').any(|s| s == "." || s == ".."), || {
            format!(
                "a request with a dot segment, which a daemon resolves to another endpoint: {}",
                r.line
            )
        });
    }
    c.finish();
}

// ---------------------------------------------------------------------------------------
// The output disk fills up

#[test]
fn output_disk_fills_up() {
    let Some(case) = Case::new("disk_full").with_small_disk("2m") else {
        return;
    };
    let w = World::standard();
    let web = web(&w);
    let big: Vec<u8> = (0..5 << 20).map(|i: u32| (i % 251) as u8).collect();
    let export = tar(
        &[Entry::Dir("var/"), Entry::File("var/big.bin", &big)],
        true,
    );
    let b = Builder::new(w).route_for("/containers/*/export", &web.id, move |_, c| {
        let _ = c.respond(200, "application/x-tar", &export);
    });
    let engine = b.start(&case.sock);
    let run = collect(&case, &[]);
    let mut c = Checks::new("output_disk_fills_up");
    let bag = common(&mut c, &case, &run, &engine, &PARTIAL);
    let err = c.error(&bag, "/containers/{id}/export", "io", Some(&web.id));
    if let Some(e) = err {
        let p = export_path(&web.id);
        c.check(e["path"] == p.as_str(), || {
            format!(
                "the io error does not point at the partial export: {}",
                e["path"]
            )
        });
        let a = bag.artifact(&p);
        c.check(a.is_some_and(|a| a["complete"] == false), || {
            format!("partial export not recorded as incomplete: {a:?}")
        });
        c.check(
            e["offset"].as_u64().is_some_and(|o| o > 0 && o < 5 << 20),
            || format!("offset {} for a disk that filled mid-export", e["offset"]),
        );
    }
    println!(
        "output_disk_fills_up: errors recorded:\n{}",
        bag.error_summary()
    );
    c.finish();
}

// ---------------------------------------------------------------------------------------
// Ctrl-C

#[test]
fn ctrl_c_mid_export() {
    let w = World::standard();
    let web = web(&w);
    let export = web.export.clone();
    let b = Builder::new(w).route_for("/containers/*/export", &web.id, move |_, c| {
        if !c.chunked_head(200, "application/x-tar") {
            return;
        }
        for piece in export.chunks(64) {
            if !c.chunk(piece) || !c.pause(Duration::from_millis(200)) {
                return;
            }
        }
    });
    let case = Case::new("ctrl_c");
    let engine = b.start(&case.sock);
    let running = spawn_collect(&case, &["--idle-timeout", "5"]);
    let mut c = Checks::new("ctrl_c_mid_export");
    let seen = engine.wait_for("/export", Duration::from_secs(10));
    c.check(seen, || "the export was never requested".into());
    std::thread::sleep(Duration::from_millis(700));
    let st = std::process::Command::new("kill")
        .arg("-INT")
        .arg(running.pid().to_string())
        .status();
    c.check(st.is_ok_and(|s| s.success()), || {
        "could not send SIGINT".into()
    });
    let run = running.wait();
    let bag = common(&mut c, &case, &run, &engine, &PARTIAL);
    c.check(!bag.events("interrupted").is_empty(), || {
        "no interrupted record in the log".into()
    });
    let err = c.error(
        &bag,
        "/containers/{id}/export",
        "interrupted",
        Some(&web.id),
    );
    if let Some(e) = err {
        let off = e["offset"].as_u64().unwrap_or(0);
        c.check(off > 0, || {
            "nothing received before the interruption?".into()
        });
        let prefix = web.export[..(off as usize).min(web.export.len())].to_vec();
        c.partial_file(&bag, err, &export_path(&web.id), Some(&prefix));
    }
    c.finish();
}

// ---------------------------------------------------------------------------------------
// Beyond the list: broken HTTP

#[test]
fn invalid_status_line() {
    let b = Builder::new(World::standard()).route("/info", |_, c| {
        let _ = c.raw(b"HTTP/1.1 2x0 Fine\r\nContent-Length: 2\r\n\r\n{}");
    });
    let (mut c, bag, _e, _case) = run_case("bad_status_line", b, &[], &PARTIAL);
    c.error(&bag, "/info", "protocol", None);
    c.check(bag.read("data/30-metadata/info.json").is_none(), || {
        "an unparseable answer was kept as info.json".into()
    });
    c.finish();
}

#[test]
fn headers_that_never_end() {
    let b = Builder::new(World::standard()).route("/version", |_, c| {
        if !c.raw(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n") {
            return;
        }
        for n in 0.. {
            if !c.raw(format!("X-Slow-{n}: a\r\n").as_bytes())
                || !c.pause(Duration::from_millis(200))
            {
                return;
            }
        }
    });
    let (mut c, bag, _e, _case) =
        run_case("endless_headers", b, &["--idle-timeout", "2"], &PARTIAL);
    let err = c.error(&bag, "/version", "timeout", None);
    c.offset(err, 0, "no body byte arrived");
    c.finish();
}

#[test]
fn huge_header_and_too_many_headers() {
    let b = Builder::new(World::standard())
        .route("/info", |_, c| {
            let mut h = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
            h.extend(std::iter::repeat_n(b'a', 3 << 20));
            h.extend_from_slice(b"\r\nContent-Length: 2\r\n\r\n{}");
            let _ = c.raw(&h);
        })
        .route("/version", |_, c| {
            let mut h = String::from("HTTP/1.1 200 OK\r\n");
            for n in 0..2000 {
                h.push_str(&format!("X-H{n}: v\r\n"));
            }
            h.push_str("Content-Length: 2\r\n\r\n{}");
            let _ = c.raw(h.as_bytes());
        });
    let (mut c, bag, _e, _case) = run_case("huge_header", b, &[], &PARTIAL);
    c.error(&bag, "/info", "protocol", None);
    c.error(&bag, "/version", "protocol", None);
    c.finish();
}

#[test]
fn invalid_chunk_size() {
    let w = World::standard();
    let web = web(&w);
    let f1 = frame(1, b"2026-12-02T15:16:38Z fine\n");
    let sent = f1.clone();
    let b = Builder::new(w).route_for("/containers/*/logs", &web.id, move |_, c| {
        let _ = c.chunked_head(200, "application/vnd.docker.multiplexed-stream")
            && c.chunk(&f1)
            && c.raw(b"zz\r\nnot a chunk\r\n0\r\n\r\n");
    });
    let (mut c, bag, _e, _case) = run_case("bad_chunk_size", b, &[], &PARTIAL);
    let err = c.error(&bag, "/containers/{id}/logs", "protocol", Some(&web.id));
    c.offset(
        err,
        sent.len() as u64,
        "the bad chunk follows one good chunk",
    );
    c.partial_file(&bag, err, &logs_path(&web.id), Some(&sent));
    c.finish();
}

#[test]
fn gzip_content_encoding_not_asked_for() {
    let body =
        serde_json::to_vec(&json!({"Version": "24.0.7", "ApiVersion": "1.43", "Os": "linux"}))
            .unwrap();
    let gz = make::gzip(&body);
    let sent = gz.clone();
    let b = Builder::new(World::standard()).route("/version", move |_, c| {
        let _ = c.head(
            200,
            &[
                ("Content-Type", "application/json".into()),
                ("Content-Encoding", "gzip".into()),
                ("Content-Length", gz.len().to_string()),
            ],
        ) && c.raw(&gz);
    });
    let (mut c, bag, e, _case) = run_case("gzip_unasked", b, &[], &PARTIAL);
    for r in e.requests() {
        c.check(
            !r.headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("accept-encoding")),
            || format!("{} asked for an encoding", r.line),
        );
    }
    // The evidence is what the engine sent, byte for byte; that it is not the JSON asked
    // for is an error.
    let err = c.error(&bag, "/version", "protocol", None);
    c.partial_file(&bag, err, "data/30-metadata/version.json", Some(&sent));
    c.finish();
}

#[test]
fn http_1_0_answers_without_length() {
    let w = World::standard();
    let web = web(&w);
    let export = web.export.clone();
    let cut = 512 + 100;
    let sent = export[..cut].to_vec();
    let b = Builder::new(w)
        .route("/info", |_, c| {
            let _ = c.raw(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"ID\":\"old\",\"SystemTime\":\"2026-12-02T15:16:38Z\"}");
            c.close();
        })
        .route_for("/containers/*/export", &web.id, move |_, c| {
            let _ = c.raw(b"HTTP/1.0 200 OK\r\nContent-Type: application/x-tar\r\n\r\n") && c.raw(&export[..cut]);
            c.close();
        });
    let (mut c, bag, _e, _case) = run_case("http10_no_length", b, &[], &PARTIAL);
    c.kept_file(&bag, "data/30-metadata/info.json", Some(true), None);
    // HTTP cannot see this cut (the close ends the body); the tar check must.
    let err = c.error_any(
        &bag,
        "/containers/{id}/export",
        &["truncated", "protocol"],
        Some(&web.id),
    );
    c.offset(
        err,
        512,
        "the valid tar stops where the cut header block starts",
    );
    c.partial_file(&bag, err, &export_path(&web.id), Some(&sent));
    c.finish();
}

// ---------------------------------------------------------------------------------------
// Beyond the list: the handshake and the container list

/// Docker computes disk usage for one client at a time: while another client's runs, it
/// answers 500 "a disk usage operation is already running". That is asked again, not lost.
#[test]
fn disk_usage_busy_then_answered() {
    let asked = Arc::new(AtomicUsize::new(0));
    let n = asked.clone();
    let b = Builder::new(World::standard()).route("/system/df", move |_, c| {
        if n.fetch_add(1, Ordering::SeqCst) < 3 {
            let _ = c.json(
                500,
                &json!({"message": "a disk usage operation is already running"}),
            );
        } else {
            let _ = c.json(
                200,
                &json!({"LayersSize": 0, "Images": [], "Containers": [], "Volumes": []}),
            );
        }
    });
    let (mut c, bag, _e, _case) = run_case("df_busy", b, &[], &COMPLETE);
    let n = asked.load(Ordering::SeqCst);
    c.check(n == 4, || format!("/system/df asked {n} times, expected 4"));
    let a = bag.artifact("data/30-metadata/system-df.json");
    c.check(a.is_some_and(|a| a["busy_waits"] == 3), || {
        format!("system-df.json artifact: {a:?}")
    });
    c.finish();
}

/// A disk usage that stays busy is given up after the idle timeout, with the engine's reason.
#[test]
fn disk_usage_busy_for_ever_is_an_error_record() {
    let b = Builder::new(World::standard()).route("/system/df", |_, c| {
        let _ = c.json(
            500,
            &json!({"message": "a disk usage operation is already running"}),
        );
    });
    let (mut c, bag, e, _case) = run_case("df_busy_ever", b, &["--idle-timeout", "2"], &PARTIAL);
    let asked = e
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/system/df"))
        .count();
    c.check((5..=9).contains(&asked), || {
        format!("/system/df asked {asked} times in a 2 s idle timeout, every 250 ms")
    });
    let err = c.error(&bag, "/system/df", "http", None);
    c.check(
        err.is_some_and(|e| {
            e["detail"]
                .as_str()
                .unwrap_or("")
                .contains("already running")
        }),
        || format!("error record: {err:?}"),
    );
    c.finish();
}

#[test]
fn ping_claims_api_1_99() {
    let mut w = World::standard();
    w.api_version = "1.99".into();
    let (mut c, bag, e, _case) = run_case("ping_1_99", Builder::new(w), &[], &COMPLETE);
    let start = bag.events("session_start");
    let api = start
        .first()
        .map(|s| s["api_version"].clone())
        .unwrap_or(Value::Null);
    c.check(api == "1.56", || {
        format!("negotiated API {api}, expected the newest the tool knows (1.56)")
    });
    for r in e.requests().iter().filter(|r| r.path != "/_ping") {
        c.check(r.version.as_deref() == Some("1.56"), || {
            format!("{} is not versioned 1.56", r.line)
        });
    }
    c.finish();
}

#[test]
fn ping_with_garbage_api_version() {
    let mut w = World::standard();
    w.api_version = "banana; DROP TABLE".into();
    let (mut c, bag, e, _case) = run_case("ping_garbage", Builder::new(w), &[], &COMPLETE);
    let api = bag
        .events("session_start")
        .first()
        .map(|s| s["api_version"].clone())
        .unwrap_or(Value::Null);
    c.check(api == "1.24", || {
        format!("negotiated API {api}, expected the oldest supported (1.24)")
    });
    let server = bag
        .events("session_start")
        .first()
        .map(|s| s["server"]["api-version"].clone())
        .unwrap_or(Value::Null);
    c.check(server == "banana; DROP TABLE", || {
        format!("the raw Api-Version header is not recorded: {server}")
    });
    for r in e.requests().iter().filter(|r| r.path != "/_ping") {
        c.check(r.version.as_deref() == Some("1.24"), || {
            format!("{} is not versioned 1.24", r.line)
        });
    }
    c.finish();
}

#[test]
fn ping_fails_nothing_is_written() {
    let b = Builder::new(World::standard()).route("/_ping", |_, c| {
        let _ = c.respond(500, "text/plain", b"not an engine");
    });
    let case = Case::new("ping_fails");
    let engine = b.start(&case.sock);
    let run = collect(&case, &[]);
    let mut c = Checks::new("ping_fails_nothing_is_written");
    nothing_written(&mut c, &case, &run, &engine, 2);
    let reqs = engine.requests();
    c.check(reqs.len() == 1 && reqs[0].path == "/_ping", || {
        format!(
            "requests after a failed ping: {:?}",
            reqs.iter().map(|r| &r.line).collect::<Vec<_>>()
        )
    });
    c.check(run.stderr.contains("500"), || {
        "the failed ping's status is not reported".into()
    });
    c.finish();
}

#[test]
fn duplicate_container_ids_in_the_list() {
    let mut w = World::standard();
    let dup = w.containers[0].clone();
    w.containers.push(dup.clone());
    let (mut c, bag, e, _case) = run_case(
        "duplicate_ids",
        Builder::new(w),
        &[],
        &Expect {
            codes: &[0, 1],
            within: Duration::from_secs(15),
        },
    );
    let io: Vec<_> = bag
        .errors()
        .into_iter()
        .filter(|x| x["kind"] == "io")
        .collect();
    c.check(io.is_empty(), || {
        format!("a duplicate ID from the engine is reported as a disk error: {io:?}")
    });
    let exports = e
        .requests()
        .iter()
        .filter(|r| r.object() == dup.id && r.path.ends_with("/export"))
        .count();
    c.check(exports == 1, || {
        format!("the same container was exported {exports} times")
    });
    c.kept_file(&bag, &export_path(&dup.id), Some(true), Some(&dup.export));
    c.finish();
}

#[test]
fn list_items_of_the_wrong_shape() {
    let w = World::standard();
    let good = w.list_entry(&w.containers[0]);
    let web_id = w.containers[0].id.clone();
    let list = json!(["a string", 42, null, {"Id": 7, "State": "running"}, {"Names": ["/no-id"], "State": "running"}, good]);
    let b = Builder::new(w).route("/containers/json", move |_, c| {
        let _ = c.json(200, &list);
    });
    let (mut c, bag, e, _case) = run_case("list_items_shape", b, &[], &PARTIAL);
    c.error(&bag, "/containers/json", "protocol", None);
    for r in e.requests() {
        c.check(!r.path.contains("//"), || {
            format!("a request for an empty ID: {}", r.line)
        });
    }
    let io: Vec<_> = bag
        .errors()
        .into_iter()
        .filter(|x| x["kind"] == "io")
        .collect();
    c.check(io.is_empty(), || {
        format!("malformed list entries end up as disk errors: {io:?}")
    });
    c.check(bag.artifact(&export_path(&web_id)).is_some(), || {
        "the well-formed entry was not collected".into()
    });
    c.finish();
}

// ---------------------------------------------------------------------------------------
// Not run by default: many happy collections in a row, to catch scheduling races in the
// volatility order (`cargo test --test hostile -- --ignored`).

#[test]
#[ignore]
fn volatility_order_holds_under_parallel_transfers() {
    let mut w = World::standard();
    let template = w.containers[0].clone();
    for i in 0..6 {
        let mut c = template.clone();
        c.id = sha256_hex(format!("extra container {i}").as_bytes());
        w.containers.push(c);
    }
    let mut failures = Vec::new();
    let runs = 40;
    for i in 0..runs {
        let case = Case::new(&format!("order-{i}"));
        let engine = Builder::new(w.clone()).start(&case.sock);
        let run = collect(&case, &[]);
        let v = std::process::Command::new(harness::DAC)
            .arg("verify")
            .arg(&case.bag)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&v.stdout).into_owned();
        if run.code != Some(0) || v.status.code() != Some(0) {
            failures.push(format!(
                "run {i}: exit {:?}, verify {:?}: {}",
                run.code,
                v.status.code(),
                out.lines().next().unwrap_or("")
            ));
        }
        drop(engine);
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} happy collections failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
