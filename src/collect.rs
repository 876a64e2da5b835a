//! The acquisition plan: connect, negotiate, then collect in order of volatility
//! (events, processes, metadata, logs, filesystems, images) into one bundle, and seal it.
//!
//! Data flows one way: target -> plan -> requests (session) -> hashed files (bundle) -> seal.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::bundle::{self, name_for, BagInfo, Bundle};
use crate::clock;
use crate::discovery::{self, EndpointKind, HostArgs};
use crate::endpoints::{self, Api, Call};
use crate::error::{Error, Kind, Result};
use crate::fixture::{Recorder, Replay};
use crate::session::{Check, Session};
use crate::transport::{Method, Transport};

/// Everything `dac collect` was asked to do, validated.
pub struct Options {
    pub out: PathBuf,
    pub host: HostArgs,
    pub targets: Vec<String>,
    pub paths: Vec<String>,
    pub no_export: bool,
    pub no_save: bool,
    pub no_stats: bool,
    pub no_changes: bool,
    pub jobs: usize,
    pub idle: Duration,
    pub deadline: Duration,
    pub connect_timeout: Duration,
    pub case_id: String,
    pub examiner: String,
    pub organization: String,
    pub sign_key: Option<PathBuf>,
    pub record: Option<PathBuf>,
    pub replay: Option<PathBuf>,
    pub argv: Vec<String>,
    pub quiet: bool,
}

/// How the run ended, for the exit code.
pub struct Outcome {
    pub artifacts: u64,
    pub errors: u64,
    pub complete: bool,
}

/// Run a collection to its sealed bundle.
pub fn run(opts: Options) -> Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::new(Kind::Io, format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(collect(opts))
}

/// Where the engine is, how it was chosen, and the transport to it.
struct Target {
    transport: Transport,
    url: String,
    source: String,
    plain_tcp: bool,
}

fn open_target(opts: &Options) -> Result<Target> {
    if let Some(dir) = &opts.replay {
        let replay = Replay::load(dir)?;
        let url = format!("replay://{}", dir.display());
        return Ok(Target {
            transport: Transport::replay(replay, url.clone()),
            url,
            source: "--replay".into(),
            plain_tcp: false,
        });
    }
    let endpoint = discovery::resolve(&opts.host, &discovery::RealEnv)?;
    let plain_tcp = matches!(endpoint.kind, EndpointKind::Tcp { .. }) && endpoint.tls.is_none();
    let mut transport = Transport::new(&endpoint, opts.connect_timeout)?;
    if let Some(dir) = &opts.record {
        transport.record_into(Recorder::create(dir, json!({"endpoint": endpoint.url}))?);
    }
    Ok(Target {
        transport,
        url: endpoint.url.clone(),
        source: endpoint.source.clone(),
        plain_tcp,
    })
}

/// `GET /_ping` (never versioned), as the docker CLI negotiates: min(engine max, ours).
async fn negotiate(transport: &Transport, idle: Duration) -> Result<(Api, Value)> {
    let resp = tokio::time::timeout(idle, transport.send(Method::Get, endpoints::PING))
        .await
        .map_err(|_| {
            Error::new(
                Kind::Connect,
                format!(
                    "{} did not answer /_ping within {idle:?}",
                    transport.describe
                ),
            )
        })??;
    let status = resp.status();
    let headers = resp.headers_json();
    let api_header = resp.header("api-version");
    if status != 200 {
        return Err(Error::new(
            Kind::Connect,
            format!(
                "{} answered /_ping with HTTP {status}; is it a Docker or Podman engine?",
                transport.describe
            ),
        ));
    }
    let engine_max = match api_header.as_deref().and_then(endpoints::parse_version) {
        Some(v) => v,
        None => endpoints::API_MIN,
    };
    let version = engine_max.min(endpoints::API_MAX);
    if version < endpoints::API_MIN {
        return Err(Error::new(
            Kind::Connect,
            format!(
                "the engine speaks API {}.{}, older than the oldest this tool supports ({}.{})",
                version.0,
                version.1,
                endpoints::API_MIN.0,
                endpoints::API_MIN.1
            ),
        ));
    }
    Ok((Api { version }, headers))
}

async fn collect(opts: Options) -> Result<Outcome> {
    let target = open_target(&opts)?;
    if target.plain_tcp {
        eprintln!(
            "dac: WARNING: {} is plain TCP: the evidence travels unencrypted and unauthenticated. \
             Prefer ssh:// or --tlsverify.",
            target.url
        );
    }
    let (api, ping_headers) = negotiate(&target.transport, opts.idle).await?;
    let bundle = Bundle::create(&opts.out)?;
    let start_utc = clock::utc_now();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ctrl_c = {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("dac: interrupted; sealing what was collected");
                let _ = stop_tx.send(true);
            }
        })
    };
    let deadline = tokio::time::Instant::now() + opts.deadline;
    let engine = if ping_headers.get("libpod-api-version").is_some() {
        "podman"
    } else {
        "docker"
    };
    let session = Arc::new(Session::new(
        target.transport,
        api.clone(),
        bundle.clone(),
        opts.idle,
        deadline,
        stop_rx,
        engine == "podman",
    ));
    let session_id = crate::transport::sha256_hex(
        format!("{start_utc}|{}|{}", target.url, std::process::id()).as_bytes(),
    );

    let mut start = Map::new();
    start.insert("tool".into(), json!("dac"));
    start.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
    start.insert("build".into(), crate::provenance::build_info());
    start.insert("argv".into(), json!(opts.argv));
    start.insert("endpoint".into(), json!(target.url));
    start.insert("endpoint_source".into(), json!(target.source));
    start.insert("api_version".into(), json!(api.version_string()));
    start.insert("engine".into(), json!(engine));
    start.insert("server".into(), ping_headers.clone());
    start.insert(
        "tls_peer_sha256".into(),
        json!(session.transport.tls_peer_sha256()),
    );
    start.insert("session_id".into(), json!(session_id));
    start.insert("clock".into(), json!({"local_utc": start_utc}));
    start.insert("targets".into(), json!(opts.targets));
    // What the examiner left out, so that an absent artifact reads as a choice, not a loss.
    start.insert(
        "scope".into(),
        json!({
            "exports": !opts.no_export,
            "saves": !opts.no_save,
            "stats": !opts.no_stats,
            "changes": !opts.no_changes,
            "paths": opts.paths,
        }),
    );
    start.insert("plain_tcp".into(), json!(target.plain_tcp));
    session.log("session_start", start);

    let progress = if opts.quiet {
        None
    } else {
        Some(tokio::spawn(progress(session.clone())))
    };

    // 1. Events: the daemon keeps only 256, and this collection adds its own.
    let (secs, nanos) = clock::now_unix();
    let now = format!("{secs}.{nanos:09}");
    session
        .fetch(
            &api.events_until(&now),
            bundle::TIER_EVENTS,
            "buffered.jsonl",
            Check::Raw,
        )
        .await;
    let (end_tx, end_rx) = tokio::sync::watch::channel(false);
    let live = {
        let s = session.clone();
        let call = api.events_live(&now);
        tokio::spawn(async move {
            let when = s.started();
            s.fetch_from(
                &call,
                bundle::TIER_EVENTS,
                "live.jsonl",
                Check::Events(s.footprint.clone()),
                when,
                Some(end_rx),
            )
            .await;
        })
    };

    // 2. Volatile: which containers exist now, and what runs in them.
    let list = session
        .fetch(
            &api.containers(),
            bundle::TIER_VOLATILE,
            "containers.json",
            Check::Json,
        )
        .await
        .and_then(|f| f.json)
        .unwrap_or(Value::Null);
    let all = entries(&session, &api.containers(), &list, "Id");
    // One copy of the list stays in memory for the whole run, not three.
    drop(list);
    let chosen = select(&session, all, &opts.targets);
    // Small answers (metadata, logs) run up to 4 x jobs at once; exports and saves run `jobs`.
    let small = Slots::new(&session, (opts.jobs * 4).clamp(1, 32));
    let big = Slots::new(&session, opts.jobs.max(1));
    // Processes and stats all start at once: the daemon answers stats on its one-second
    // sampling tick, so waiting in a queue would cost a tick per wave. Metadata starts once
    // every one of them has started (the order `verify` checks), and overlaps their wait;
    // exports wait for them to finish.
    let running: Vec<&Value> = chosen
        .iter()
        .filter(|c| {
            matches!(
                c.get("State").and_then(Value::as_str),
                Some("running" | "paused")
            )
        })
        .collect();
    let volatile = Slots::new(&session, (running.len() * 2).clamp(1, 512));
    let mut volatile_tasks = Vec::new();
    // Stats wait for the daemon's sampling tick; exports need not wait for them.
    let mut stats_tasks = Vec::new();
    for c in running {
        let id = c
            .get("Id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let dir = name_for(&id);
        let top = format!("containers/{dir}/top.json");
        volatile_tasks.push(volatile.snapshot(api.container_top(&id), top).await);
        // A paused container still holds its memory; the daemon gives its stats too.
        if !opts.no_stats {
            let stats = format!("containers/{dir}/stats.json");
            stats_tasks.push(volatile.snapshot(api.container_stats(&id), stats).await);
        }
    }

    // 3. Metadata.
    let clock_before = clock::utc_now();
    let info = session
        .fetch(&api.info(), bundle::TIER_METADATA, "info.json", Check::Json)
        .await
        .and_then(|f| f.json);
    let clock_after = clock::utc_now();
    let mut probe = Map::new();
    probe.insert(
        "clock".into(),
        json!({
            "local_before": clock_before,
            "local_after": clock_after,
            "daemon_system_time": info.as_ref().and_then(|i| i.get("SystemTime")).cloned().unwrap_or(Value::Null),
            "skew_ns": skew(&clock_before, &clock_after, info.as_ref()),
        }),
    );
    session.note(
        "clock probe: local UTC around GET /info against the daemon's SystemTime",
        probe,
    );
    let mut tasks = Vec::new();
    let mut inspects = Vec::new();
    for c in &chosen {
        let id = c
            .get("Id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let dir = name_for(&id);
        inspects.push((
            id.clone(),
            small
                .json(
                    api.container_inspect(&id),
                    format!("containers/{dir}/inspect.json"),
                    inspect_keep,
                )
                .await,
        ));
        if !opts.no_changes {
            tasks.push(
                small
                    .meta(
                        api.container_changes(&id),
                        format!("containers/{dir}/changes.json"),
                    )
                    .await,
            );
        }
    }
    let version = small
        .json(api.version(), "version.json".into(), whole)
        .await;
    tasks.push(small.meta(api.system_df(), "system-df.json".into()).await);
    let images_list = small.json(api.images(), "images.json".into(), whole).await;
    let networks_list = small
        .json(api.networks(), "networks.json".into(), whole)
        .await;
    let volumes_list = small
        .json(api.volumes(), "volumes.json".into(), whole)
        .await;
    let plugins_list = if engine == "podman" {
        session.unavailable(&api.plugins(), "Podman's compatible API has no plugins");
        None
    } else {
        Some(
            small
                .json(api.plugins(), "plugins.json".into(), whole)
                .await,
        )
    };
    let mut inspected: BTreeMap<String, Value> = BTreeMap::new();
    for (id, task) in inspects {
        // Only what the plan needs was kept: memory stays flat however many containers.
        if let Ok(Some(v)) = task.await {
            inspected.insert(id, v);
        }
    }
    let images_json = images_list.await.ok().flatten().unwrap_or(Value::Null);
    let networks_json = networks_list.await.ok().flatten().unwrap_or(Value::Null);
    let volumes_json = volumes_list.await.ok().flatten().unwrap_or(Value::Null);
    let plugins_json = match plugins_list {
        Some(t) => t.await.ok().flatten().unwrap_or(Value::Null),
        None => Value::Null,
    };
    let version_json = version.await.ok().flatten().unwrap_or(Value::Null);
    let targeted = !opts.targets.is_empty();

    // What the chosen containers depend on (all of it when nothing was targeted).
    let mut image_ids: BTreeSet<String> = BTreeSet::new();
    let mut network_ids: BTreeSet<String> = BTreeSet::new();
    let listed_networks: BTreeSet<String> = networks_json
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.get("Id").and_then(Value::as_str).map(str::to_string))
        .collect();
    let mut volume_names: BTreeSet<String> = BTreeSet::new();
    for c in &chosen {
        if let Some(img) = c.get("ImageID").and_then(Value::as_str) {
            image_ids.insert(img.to_string());
        }
        if let Some(nets) = c
            .pointer("/NetworkSettings/Networks")
            .and_then(Value::as_object)
        {
            for (key, n) in nets {
                if let Some(id) = n
                    .get("NetworkID")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                {
                    // An exited container keeps the ID of a network that may be gone (the
                    // default bridge gets a new ID at every daemon start): a fact, not a failure.
                    if listed_networks.is_empty() || listed_networks.contains(id) {
                        network_ids.insert(id.to_string());
                    } else {
                        let mut f = Map::new();
                        f.insert(
                            "object".into(),
                            json!(c.get("Id").cloned().unwrap_or(Value::Null)),
                        );
                        session.note(&format!("the container refers to network {key:?} by ID {id}, which the engine no longer lists"), f);
                    }
                }
            }
        }
        for m in c
            .get("Mounts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if m.get("Type").and_then(Value::as_str) == Some("volume") {
                if let Some(n) = m.get("Name").and_then(Value::as_str) {
                    volume_names.insert(n.to_string());
                }
            }
        }
    }
    for v in inspected.values() {
        if let Some(img) = v.get("Image").and_then(Value::as_str) {
            image_ids.insert(img.to_string());
        }
    }
    let mut image_sizes: BTreeMap<String, i64> = BTreeMap::new();
    let images_all = entries(&session, &api.images(), &images_json, "Id");
    for img in &images_all {
        if let Some(id) = img.get("Id").and_then(Value::as_str) {
            image_sizes.insert(
                id.to_string(),
                img.get("Size").and_then(Value::as_i64).unwrap_or(0),
            );
            if !targeted {
                image_ids.insert(id.to_string());
            }
        }
    }
    if !targeted {
        for n in &entries(&session, &api.networks(), &networks_json, "Id") {
            if let Some(id) = n.get("Id").and_then(Value::as_str) {
                network_ids.insert(id.to_string());
            }
        }
        let listed = volumes_json.get("Volumes").cloned().unwrap_or(Value::Null);
        for v in &entries(&session, &api.volumes(), &listed, "Name") {
            if let Some(n) = v.get("Name").and_then(Value::as_str) {
                volume_names.insert(n.to_string());
            }
        }
    }
    // IDs taken from inside container answers get the same check as list entries.
    for (set, call) in [
        (&mut image_ids, api.images()),
        (&mut network_ids, api.networks()),
        (&mut volume_names, api.volumes()),
    ] {
        set.retain(|id| {
            let ok = addressable(id);
            if !ok {
                let detail = format!("{id:?} cannot be addressed safely");
                session.error(&call, &Error::protocol(detail), 0, None);
            }
            ok
        });
    }
    for id in &image_ids {
        let dir = name_for(id);
        tasks.push(
            small
                .meta(api.image_inspect(id), format!("images/{dir}/inspect.json"))
                .await,
        );
        tasks.push(
            small
                .meta(api.image_history(id), format!("images/{dir}/history.json"))
                .await,
        );
    }
    for id in &network_ids {
        tasks.push(
            small
                .meta(
                    api.network_inspect(id),
                    format!("networks/{}.json", name_for(id)),
                )
                .await,
        );
    }
    for name in &volume_names {
        tasks.push(
            small
                .meta(
                    api.volume_inspect(name),
                    format!("volumes/{}.json", name_for(name)),
                )
                .await,
        );
    }
    if !targeted {
        for p in &entries(&session, &api.plugins(), &plugins_json, "Name") {
            if let Some(name) = p.get("Name").and_then(Value::as_str) {
                tasks.push(
                    small
                        .meta(
                            api.plugin_inspect(name),
                            format!("plugins/{}.json", name_for(name)),
                        )
                        .await,
                );
            }
        }
    }
    let manager = info
        .as_ref()
        .and_then(|i| i.pointer("/Swarm/ControlAvailable"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut services_list = None;
    if manager {
        tasks.push(small.meta(api.swarm(), "swarm/swarm.json".into()).await);
        session.note("data/30-metadata/swarm/swarm.json holds the cluster's join tokens: credentials that let their holder join as a worker or manager; handle the bundle accordingly", Map::new());
        // The service list is kept: service logs and --path pulls need it.
        let services = api.swarm_list("services");
        services_list = Some(
            small
                .json(services, "swarm/services.json".into(), whole)
                .await,
        );
        for kind in ["tasks", "nodes", "secrets", "configs"] {
            tasks.push(
                small
                    .meta(api.swarm_list(kind), format!("swarm/{kind}.json"))
                    .await,
            );
        }
    } else {
        session.note("the engine is not a swarm manager: no services, tasks, nodes, secrets or configs to collect", Map::new());
    }

    // 4. Logs, framed as the container's own Config.Tty says. They queue behind the last
    // metadata request and overlap the metadata still in flight.
    for c in &chosen {
        let id = c
            .get("Id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let check = match inspected
            .get(&id)
            .and_then(|v| v.pointer("/Config/Tty"))
            .and_then(Value::as_bool)
        {
            Some(tty) => Check::Logs { tty },
            None => Check::Raw,
        };
        tasks.push(
            small
                .get(
                    api.container_logs(&id),
                    bundle::TIER_LOGS,
                    format!("containers/{}/logs.raw", name_for(&id)),
                    check,
                )
                .await,
        );
    }
    // A manager gathers each service's logs from its tasks on every node, each line with its
    // node, service and task; framed as the service's TTY says. Other tenants' output: not in a
    // targeted collection.
    let services = match services_list {
        Some(list) => list.await.ok().flatten().unwrap_or(Value::Null),
        None => Value::Null,
    };
    let services_logged = if targeted {
        Vec::new()
    } else {
        entries(&session, &api.swarm_list("services"), &services, "ID")
    };
    for svc in services_logged {
        let id = svc.get("ID").and_then(Value::as_str).unwrap_or("");
        let tty = svc
            .pointer("/Spec/TaskTemplate/ContainerSpec/TTY")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        tasks.push(
            small
                .get(
                    api.service_logs(id),
                    bundle::TIER_LOGS,
                    format!("services/{}/logs.raw", name_for(id)),
                    Check::Logs { tty },
                )
                .await,
        );
    }
    join(tasks).await;

    join(volatile_tasks).await;

    // 5-6. Filesystems, then images, largest saves first; each tar parsed to its end.
    let mut tasks = Vec::new();
    for c in &chosen {
        let id = c
            .get("Id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let dir = name_for(&id);
        if !opts.no_export {
            tasks.push(
                big.get(
                    api.container_export(&id),
                    bundle::TIER_FILESYSTEM,
                    format!("containers/{dir}/export.tar"),
                    Check::Tar,
                )
                .await,
            );
        }
        // A swarm task's secrets and configs: empty files to the archive endpoint.
        let from_memory = inspected
            .get(&id)
            .and_then(|v| v.get("SwarmService"))
            .and_then(Value::as_str)
            .map(|s| mount_targets(&services, s))
            .unwrap_or_default();
        for p in &opts.paths {
            let call = api.container_archive(&id, p);
            let hidden = memory_mounts(p, &from_memory);
            if !hidden.is_empty() {
                let mut f = Map::new();
                f.insert("empty_mount_targets".into(), json!(hidden));
                session.note_on(&call, "a swarm task's secrets and configs are mounted from memory; the archive endpoint reads the container's filesystem, where each is an empty mount target, so the pull does not hold their data", f);
            }
            let file = format!("containers/{dir}/archive/{}.tar", name_for(p));
            tasks.push(
                big.get(call, bundle::TIER_FILESYSTEM, file, Check::Tar)
                    .await,
            );
        }
    }
    if !opts.no_save {
        let mut order: Vec<&String> = image_ids.iter().collect();
        order.sort_by_key(|id| std::cmp::Reverse(image_sizes.get(*id).copied().unwrap_or(0)));
        for id in order {
            let rel = format!("{}/save.tar", name_for(id));
            tasks.push(
                big.get(
                    api.image_save(id),
                    bundle::TIER_IMAGES,
                    rel,
                    Check::Image(id.clone()),
                )
                .await,
            );
        }
    }
    join(tasks).await;

    join(stats_tasks).await;

    // Close the live event stream once it has delivered the events our own requests left
    // (at most 200 ms for an engine that does not log them), so the bundle shows them.
    let caught_up = session
        .footprint
        .caught_up(Duration::from_millis(200))
        .await;
    let mut f = Map::new();
    f.insert(
        "footprint_events".into(),
        json!({
            "expected": session.footprint.expected.load(Ordering::Relaxed),
            "delivered": session.footprint.seen.load(Ordering::Relaxed),
        }),
    );
    let how = if caught_up {
        "after"
    } else {
        "200 ms after the last answer, without all of"
    };
    session.note(
        &format!("live event stream closed {how} the events of this collection's own requests"),
        f,
    );
    let _ = end_tx.send(true);
    let live_abort = live.abort_handle();
    if tokio::time::timeout(Duration::from_secs(10), live)
        .await
        .is_err()
    {
        // Stopped by force; the payload lists whatever reached the disk when it is dropped.
        live_abort.abort();
        let call = api.events_live(&now);
        let err = Error::new(
            Kind::Timeout,
            "the live event stream did not close within 10 s of the end",
        );
        session.error(&call, &err, 0, None);
    }
    if let Some(p) = progress {
        p.abort();
    }
    ctrl_c.abort();

    if session.interrupted() {
        session.log("interrupted", Map::new());
    }
    if session.deadline_hit() {
        session.note(
            &format!("the overall deadline of {:?} passed", opts.deadline),
            Map::new(),
        );
    }
    if let Some(dir) = &opts.record {
        if let Some(rec) = session.transport.recorder() {
            rec.set_engine(json!({"engine": engine, "api_version": api.version_string(), "version": version_json, "ping": ping_headers, "recorded_at": start_utc}));
            // hyper drops each connection in its own task; wait for them to close.
            rec.settle(Duration::from_secs(5)).await;
            if let Err(e) = rec.finish() {
                eprintln!(
                    "dac: could not finish the recording in {}: {e}",
                    dir.display()
                );
            }
        }
    }
    let artifacts = session.meter.artifacts.load(Ordering::Relaxed);
    let errors = session.meter.errors.load(Ordering::Relaxed);
    let bytes = session.meter.bytes.load(Ordering::Relaxed);
    let complete = errors == 0 && !session.interrupted();
    let state = if complete { "complete" } else { "partial" };
    let mut end = Map::new();
    end.insert("state".into(), json!(state));
    end.insert("artifacts".into(), json!(artifacts));
    end.insert("errors".into(), json!(errors));
    end.insert("bytes".into(), json!(bytes));
    session.log("session_end", end);

    let environment = json!({
        "tool": "dac",
        "version": env!("CARGO_PKG_VERSION"),
        "build": crate::provenance::build_info(),
        "argv": opts.argv,
        "endpoint": target.url,
        "endpoint_source": target.source,
        "api_version": api.version_string(),
        "engine": engine,
        "server": ping_headers,
        "tls_peer_sha256": session.transport.tls_peer_sha256(),
        "engine_version": version_json,
    });
    let clock_json = json!({
        "local_before_info": clock_before,
        "local_after_info": clock_after,
        "daemon_system_time": info.as_ref().and_then(|i| i.get("SystemTime")).cloned().unwrap_or(Value::Null),
        "skew_ns": skew(&clock_before, &clock_after, info.as_ref()),
    });
    let bag = BagInfo {
        organization: opts.organization.clone(),
        examiner: opts.examiner.clone(),
        case_id: opts.case_id.clone(),
        endpoint: target.url.clone(),
        start_utc,
        session_id,
        sign_key: opts.sign_key.clone(),
    };
    let sealed = tokio::task::block_in_place(|| {
        bundle.seal(
            &bag,
            state,
            &[
                ("environment.json", environment),
                ("clock.json", clock_json),
            ],
        )
    })?;
    if !opts.quiet {
        eprintln!(
            "dac: {state}: {artifacts} artifacts, {} in {} payload files, {errors} errors\n\
             dac: bundle {}\ndac: tag manifest SHA-256 {}",
            human(sealed.payload_bytes),
            sealed.payload_files,
            opts.out.display(),
            sealed.tagmanifest_sha256
        );
        if errors > 0 {
            eprintln!(
                "dac: every error is recorded in {}/{}",
                opts.out.display(),
                bundle::LOG_PATH
            );
        }
    }
    Ok(Outcome {
        artifacts,
        errors,
        complete,
    })
}

/// Daemon clock minus local clock in nanoseconds, from `/info` SystemTime against the local
/// midpoint. An integer: floats do not survive a JSON round trip exactly, and the log must.
fn skew(before: &str, after: &str, info: Option<&Value>) -> Value {
    let daemon = info
        .and_then(|i| i.get("SystemTime"))
        .and_then(Value::as_str)
        .and_then(clock::parse_rfc3339);
    match (
        clock::parse_rfc3339(before),
        clock::parse_rfc3339(after),
        daemon,
    ) {
        (Some(b), Some(a), Some(d)) => {
            let ns = |(s, n): (i64, u32)| s as i128 * 1_000_000_000 + n as i128;
            let mid = (ns(b) + ns(a)) / 2;
            json!((ns(d) - mid) as i64)
        }
        _ => Value::Null,
    }
}

/// Pick the containers to collect: all of them, or those the examiner named (full ID, unique ID
/// prefix, or name). A name that matches nothing is an error record, not a silent skip.
/// Can this ID or name be put in a request path? Every byte is percent-encoded into one
/// segment, but a segment that is exactly `.` or `..` is still a dot segment to the engine's
/// router, which would answer for another path; an empty one names nothing.
fn addressable(id: &str) -> bool {
    !(id.is_empty() || id == "." || id == "..")
}

/// The usable entries of a list answer: objects with an addressable, unique `key`. Every entry
/// that is dropped is an error record, so a hostile list cannot hide or duplicate silently.
fn entries(session: &Session, call: &Call, list: &Value, key: &str) -> Vec<Value> {
    let items: &[Value] = match list {
        Value::Array(a) => a,
        _ => return Vec::new(),
    };
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let id = item.get(key).and_then(Value::as_str);
        let problem = match id {
            None => Some(format!("entry {i} has no string {key}")),
            Some(id) if !addressable(id) => Some(format!(
                "entry {i}: {key} {id:?} cannot be addressed safely"
            )),
            Some(id) if !seen.insert(id.to_string()) => {
                Some(format!("entry {i}: {key} {id:?} is listed twice"))
            }
            Some(_) => None,
        };
        match problem {
            Some(detail) => {
                let mut about = call.clone();
                about.object = id.unwrap_or("").to_string();
                session.error(&about, &Error::protocol(detail), 0, None)
            }
            None => out.push(item.clone()),
        }
    }
    out
}

fn select(session: &Session, all: Vec<Value>, targets: &[String]) -> Vec<Value> {
    if targets.is_empty() {
        return all;
    }
    let mut out: Vec<Value> = Vec::new();
    let mut seen = BTreeSet::new();
    for t in targets {
        let bare = t.trim_start_matches('/');
        let by_name: Vec<&Value> = all
            .iter()
            .filter(|c| {
                c.get("Names").and_then(Value::as_array).is_some_and(|n| {
                    n.iter()
                        .any(|x| x.as_str().map(|s| s.trim_start_matches('/')) == Some(bare))
                })
            })
            .collect();
        let by_id: Vec<&Value> = all
            .iter()
            .filter(|c| {
                c.get("Id")
                    .and_then(Value::as_str)
                    .is_some_and(|id| !bare.is_empty() && id.starts_with(bare))
            })
            .collect();
        let found = if let Some(exact) = all
            .iter()
            .find(|c| c.get("Id").and_then(Value::as_str) == Some(bare))
        {
            vec![exact]
        } else if !by_name.is_empty() {
            by_name
        } else {
            by_id
        };
        let call = Call {
            template: "/containers/json",
            object: t.clone(),
            path: String::new(),
        };
        match found.len() {
            0 => session.error(
                &call,
                &Error::usage(format!("no container matches {t:?}")),
                0,
                None,
            ),
            1 => {
                let c = found[0];
                let id = c
                    .get("Id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                if seen.insert(id) {
                    out.push(c.clone());
                }
            }
            n => session.error(
                &call,
                &Error::usage(format!("{t:?} matches {n} containers; give more of the ID")),
                0,
                None,
            ),
        }
    }
    out
}

type Task = tokio::task::JoinHandle<Option<Value>>;

/// A pool of request slots. Taking the slot before spawning keeps the start order equal to
/// the plan's order, which is what the volatility order is checked on.
struct Slots {
    session: Arc<Session>,
    sem: Arc<tokio::sync::Semaphore>,
}

impl Slots {
    fn new(session: &Arc<Session>, n: usize) -> Slots {
        Slots {
            session: session.clone(),
            sem: Arc::new(tokio::sync::Semaphore::new(n)),
        }
    }

    /// A JSON answer of the volatile tier (processes, stats), checked and kept on disk only.
    async fn snapshot(&self, call: Call, rel: String) -> Task {
        self.get(call, bundle::TIER_VOLATILE, rel, Check::Json)
            .await
    }

    /// A JSON answer of the metadata tier, checked and kept on disk only.
    async fn meta(&self, call: Call, rel: String) -> Task {
        self.get(call, bundle::TIER_METADATA, rel, Check::Json)
            .await
    }

    /// A JSON answer of the metadata tier whose value the plan needs: `keep` picks what stays
    /// in memory, as soon as it arrives (a whole inspect per container would not).
    async fn json(&self, call: Call, rel: String, keep: Keep) -> Task {
        self.start(call, bundle::TIER_METADATA, rel, Check::Json, keep)
            .await
    }

    /// Start one fetch once a slot is free; nothing of the answer stays in memory.
    async fn get(&self, call: Call, tier: &'static str, rel: String, check: Check) -> Task {
        self.start(call, tier, rel, check, |_| None).await
    }

    async fn start(
        &self,
        call: Call,
        tier: &'static str,
        rel: String,
        check: Check,
        keep: Keep,
    ) -> Task {
        let permit = self.sem.clone().acquire_owned().await;
        let s = self.session.clone();
        let when = s.started();
        tokio::spawn(async move {
            let _permit = permit;
            s.fetch_from(&call, tier, &rel, check, when, None)
                .await
                .and_then(|f| f.json)
                .and_then(keep)
        })
    }
}

/// What a task keeps of a parsed JSON answer.
type Keep = fn(Value) -> Option<Value>;

fn whole(v: Value) -> Option<Value> {
    Some(v)
}

/// Of a container inspect, only what the plan needs: the image, whether it has a TTY, and
/// the swarm service it is a task of.
fn inspect_keep(v: Value) -> Option<Value> {
    let service = v
        .pointer("/Config/Labels/com.docker.swarm.service.id")
        .filter(|s| s.is_string())
        .cloned()
        .unwrap_or(Value::Null);
    Some(json!({
        "Image": v.get("Image").cloned().unwrap_or(Value::Null),
        "Config": {"Tty": v.pointer("/Config/Tty").cloned().unwrap_or(Value::Null)},
        "SwarmService": service,
    }))
}

/// Where a service's tasks get its secrets and configs (a manager's `/services` says; a relative
/// secret target is under /run/secrets, a relative config target under /). Without the
/// service's spec (a worker has no service list), /run/secrets, where secrets go by default.
fn mount_targets(services: &Value, service_id: &str) -> Vec<String> {
    let spec = services
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s.get("ID").and_then(Value::as_str) == Some(service_id))
        .and_then(|s| s.pointer("/Spec/TaskTemplate/ContainerSpec"));
    let mut out = Vec::new();
    if spec.is_none() {
        out.push("/run/secrets".to_string());
    }
    for (kind, base) in [("Secrets", "/run/secrets/"), ("Configs", "/")] {
        let refs = spec.and_then(|c| c.get(kind)).and_then(Value::as_array);
        for name in refs
            .into_iter()
            .flatten()
            .filter_map(|r| r.pointer("/File/Name"))
        {
            if let Some(name) = name.as_str().filter(|n| !n.is_empty()) {
                out.push(if name.starts_with('/') {
                    name.to_string()
                } else {
                    format!("{base}{name}")
                });
            }
        }
    }
    out
}

/// The mount targets that a pull of `path` reaches: the path itself, inside one, or a folder
/// that holds one. A swarm task's secrets and configs are mounted from memory when it starts;
/// the archive endpoint reads the container's filesystem, where each is an empty file.
fn memory_mounts(path: &str, targets: &[String]) -> Vec<String> {
    let path = path.trim_end_matches('/');
    let within = |inner: &str, outer: &str| {
        inner == outer
            || outer.is_empty()
            || inner
                .strip_prefix(outer)
                .is_some_and(|r| r.starts_with('/'))
    };
    let mut hit: Vec<String> = targets
        .iter()
        .filter(|t| within(path, t) || within(t, path))
        .cloned()
        .collect();
    hit.sort();
    hit.dedup();
    hit
}

async fn join(tasks: Vec<Task>) {
    for t in tasks {
        let _ = t.await;
    }
}

/// A line on stderr every two seconds while transfers run.
async fn progress(session: Arc<Session>) {
    let started = tokio::time::Instant::now();
    let mut last = 0u64;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let bytes = session.meter.bytes.load(Ordering::Relaxed);
        let rate = (bytes - last.min(bytes)) / 2;
        last = bytes;
        eprintln!(
            "dac: {:>5.1} s  {} artifacts  {}  ({}/s)  {} in flight  {} errors",
            started.elapsed().as_secs_f64(),
            session.meter.artifacts.load(Ordering::Relaxed),
            human(bytes),
            human(rate),
            session.meter.active.load(Ordering::Relaxed),
            session.meter.errors.load(Ordering::Relaxed),
        );
    }
}

pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_image_and_tty_of_an_inspect_stay_in_memory() {
        let inspect = json!({
            "Id": "a".repeat(64),
            "Image": "sha256:abc",
            "Config": {"Tty": true, "Env": ["SECRET=1"], "Labels": {"x": "y"}},
            "Mounts": [{"Source": "/data"}],
        });
        assert_eq!(
            inspect_keep(inspect),
            Some(json!({"Image": "sha256:abc", "Config": {"Tty": true}, "SwarmService": null}))
        );
        // A hostile inspect without them keeps nulls, and the logs fall back to raw.
        assert_eq!(
            inspect_keep(json!([1, 2])),
            Some(json!({"Image": null, "Config": {"Tty": null}, "SwarmService": null}))
        );
        let task = json!({"Config": {"Labels": {"com.docker.swarm.service.id": "s1"}}});
        assert_eq!(inspect_keep(task).unwrap()["SwarmService"], "s1");
    }

    #[test]
    fn pulls_that_reach_a_swarm_tasks_secrets_or_configs_are_flagged() {
        let services = json!([{"ID": "s1", "Spec": {"TaskTemplate": {"ContainerSpec": {
            "Secrets": [{"File": {"Name": "db"}}, {"File": {"Name": "/etc/app/key"}}],
            "Configs": [{"File": {"Name": "/etc/app.conf"}}, {"File": {"Name": "rel.conf"}}],
        }}}}]);
        let t = mount_targets(&services, "s1");
        assert_eq!(
            t,
            [
                "/run/secrets/db",
                "/etc/app/key",
                "/etc/app.conf",
                "/rel.conf"
            ]
        );
        assert_eq!(memory_mounts("/run/secrets/db", &t), ["/run/secrets/db"]);
        assert_eq!(memory_mounts("/run", &t), ["/run/secrets/db"]);
        assert_eq!(memory_mounts("/etc/app.conf", &t), ["/etc/app.conf"]);
        assert_eq!(
            memory_mounts("/etc/", &t),
            ["/etc/app.conf", "/etc/app/key"]
        );
        assert_eq!(memory_mounts("/", &t).len(), 4);
        assert!(memory_mounts("/etc/app.confx", &t).is_empty());
        assert!(memory_mounts("/var/log", &t).is_empty());
        // A worker has no service list: the default secrets folder still counts.
        let t = mount_targets(&Value::Null, "s1");
        assert_eq!(memory_mounts("/run/secrets/x", &t), ["/run/secrets"]);
    }

    #[test]
    fn skew_is_integer_nanoseconds_from_the_midpoint() {
        let info = json!({"SystemTime": "2026-12-06T10:00:01.5Z"});
        let v = skew("2026-12-06T10:00:00Z", "2026-12-06T10:00:01Z", Some(&info));
        assert_eq!(v, json!(1_000_000_000i64));
        assert_eq!(skew("x", "2026-12-06T10:00:01Z", Some(&info)), Value::Null);
    }
}
