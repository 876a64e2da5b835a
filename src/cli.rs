//! The command line: what the user typed, validated into a plan, run, mapped to an exit code.
//! Each subcommand's help text is its specification.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::collect::{self, Options};
use crate::discovery::HostArgs;
use crate::error::{Error, Kind, Result};

const HELP: &str = "\
dac - Docker API Collector: read-only forensic acquisition of a Docker or Podman engine

USAGE:
    dac collect --out DIR [OPTIONS]     collect from an engine into a sealed evidence bundle
    dac verify BUNDLE [--pubkey F] [--json]
                                        check a bundle on its own, without the network
    dac keygen --private F --public F   make an Ed25519 key pair to sign bundles
    dac --version [--verbose]           version, commit and build provenance
    dac help [collect|verify|keygen]

Exit codes: 0 everything collected / verified; 1 sealed but partial / verification failed;
2 nothing done (bad usage, no connection, unusable output folder).
";

const COLLECT_HELP: &str = "\
dac collect: collect every artifact the Engine API gives, in order of volatility, into a
BagIt bundle with a hash-chained acquisition log. Only GET and HEAD requests are ever sent.

USAGE:
    dac collect --out DIR [-H URL | --context NAME] [--container ID_OR_NAME]... [OPTIONS]

TARGET (as the docker CLI chooses it: --context, -H, DOCKER_HOST, DOCKER_CONTEXT, the
current context, then the rootful, rootless and Podman sockets):
    -H, --host URL          unix:///path, tcp://host:port, ssh://user@host[:port][/socket]
        --context NAME      a docker CLI context (with its TLS material)
        --tlsverify         TLS with server verification and client certificates
        --tlscacert F       CA certificate      (default: DOCKER_CERT_PATH/ca.pem)
        --tlscert F         client certificate  (default: DOCKER_CERT_PATH/cert.pem)
        --tlskey F          client key          (default: DOCKER_CERT_PATH/key.pem)
    DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH, DOCKER_CONTEXT, DOCKER_CONFIG are honoured.
    Plain tcp:// works but warns: the evidence would cross the network unprotected.

SCOPE:
        --container X       only this container (ID, unique ID prefix or name); repeatable.
                            Its image, networks and volumes and the host's info, version,
                            disk usage and events are collected too; no other tenant's logs,
                            processes or filesystem are touched.
        --path P            also pull P from each target container through the archive endpoint
                            (unlike export, it includes volumes); repeatable
        --no-export         skip container filesystem exports
        --no-save           skip image saves
        --no-stats          skip resource stats of running containers (the engine answers them
                            on its one-second sampling tick, so they hold a run for up to ~1 s)
        --no-changes        skip each container's filesystem change list (/changes; the engine
                            walks the container's filesystem for it, as costly as an export on
                            some storage drivers; it is the only artifact that lists deletions)

BUNDLE:
        --out DIR           new or empty folder for the bundle (required)
        --case ID           case identifier (External-Identifier)
        --examiner NAME     examiner (Contact-Name)
        --org NAME          organization (Source-Organization)
        --sign-key F        sign the tag manifest with this Ed25519 key (see dac keygen)

SPEED AND LIMITS:
        --jobs N            exports and saves at once (default 4; metadata uses 4 x N, max 32)
        --idle-timeout S    give up on a request that sends nothing for S seconds (default 60)
        --deadline S        stop the whole collection after S seconds and seal (default 86400)
        --connect-timeout S (default 10)
        --quiet             no progress lines

FIXTURES:
        --record FIXDIR     also keep every HTTP exchange, exact bytes, as a replayable fixture
        --replay FIXDIR     collect from a recording instead of an engine (no daemon needed)

Ctrl-C stops the collection, records it, and seals what was collected as partial.
";

const VERIFY_HELP: &str = "\
dac verify: prove a bundle intact, on its own, without the network.

USAGE:
    dac verify BUNDLE [--pubkey F] [--json]

Checks BagIt (bagit.txt, manifests, Payload-Oxum, no stray, linked or escaping files), the
hash-chained acquisition log (sequence, links, head, start and end, agreement with the
manifest both ways, volatility order, complete error records), every tar to its end marker,
and every saved image against its own content digests. With --pubkey, the signature must
come from that key. Exit 0 when everything holds, 1 when anything fails, 2 when it cannot run.
";

const KEYGEN_HELP: &str = "\
dac keygen: make an Ed25519 key pair for signing bundles.

USAGE:
    dac keygen --private FILE --public FILE

Keep the private key with the collection kit; give the public key to whoever verifies,
outside the bundle: a bundle rebuilt and re-signed by someone else fails against it.
";

/// Parse, run, and turn the outcome into an exit code.
pub fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    match run(argv) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("dac: error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(argv: Vec<OsString>) -> Result<u8> {
    let printable: Vec<String> = argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut args = pico_args::Arguments::from_vec(argv.into_iter().skip(1).collect());
    let sub = args.subcommand().map_err(|e| Error::usage(e.to_string()))?;
    match sub.as_deref() {
        Some("collect") => {
            if args.contains(["-h", "--help"]) {
                print!("{COLLECT_HELP}");
                return Ok(0);
            }
            let opts = collect_options(&mut args, printable)?;
            let outcome = collect::run(opts)?;
            Ok(if outcome.artifacts == 0 {
                2
            } else if outcome.complete {
                0
            } else {
                1
            })
        }
        Some("verify") => {
            if args.contains(["-h", "--help"]) {
                print!("{VERIFY_HELP}");
                return Ok(0);
            }
            let as_json = args.contains("--json");
            let pubkey: Option<PathBuf> = opt(&mut args, "--pubkey")?;
            let bundle: PathBuf = args
                .free_from_os_str(|s| Ok::<_, String>(PathBuf::from(s)))
                .map_err(|_| {
                    Error::usage("dac verify needs the bundle folder: dac verify BUNDLE")
                })?;
            finish(args)?;
            let report = crate::verify::verify_bundle(&bundle, pubkey.as_deref())?;
            if as_json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report.to_json()).unwrap_or_default()
                );
            } else {
                for f in &report.failures {
                    println!("FAIL {}: {}: {}", f.file, f.check, f.detail);
                }
                for n in &report.notes {
                    println!("note: {n}");
                }
                if let Some(sig) = &report.signature {
                    println!("signature: {sig}");
                }
                println!(
                    "{}: {} checks, {} failures",
                    if report.ok() { "OK" } else { "FAILED" },
                    report.checks,
                    report.failures.len()
                );
            }
            Ok(if report.ok() { 0 } else { 1 })
        }
        Some("keygen") => {
            if args.contains(["-h", "--help"]) {
                print!("{KEYGEN_HELP}");
                return Ok(0);
            }
            let private: PathBuf = opt(&mut args, "--private")?
                .ok_or_else(|| Error::usage("dac keygen needs --private FILE"))?;
            let public: PathBuf = opt(&mut args, "--public")?
                .ok_or_else(|| Error::usage("dac keygen needs --public FILE"))?;
            finish(args)?;
            let fingerprint = crate::sign::keygen(&private, &public)?;
            println!("public key fingerprint (SHA-256): {fingerprint}");
            Ok(0)
        }
        Some("help") => {
            let topic: Option<String> = args
                .opt_free_from_str()
                .map_err(|e| Error::usage(e.to_string()))?;
            print!(
                "{}",
                match topic.as_deref() {
                    Some("collect") => COLLECT_HELP,
                    Some("verify") => VERIFY_HELP,
                    Some("keygen") => KEYGEN_HELP,
                    _ => HELP,
                }
            );
            Ok(0)
        }
        Some(other) if !other.starts_with('-') => Err(Error::usage(format!(
            "unknown command {other:?}; try `dac --help`"
        ))),
        _ => {
            if args.contains(["-V", "--version"]) {
                if args.contains(["-v", "--verbose"]) {
                    print!("{}", crate::provenance::version_verbose());
                } else {
                    println!("{}", crate::provenance::version_short());
                }
                return Ok(0);
            }
            if args.contains(["-h", "--help"]) || sub.is_none() {
                print!("{HELP}");
                return Ok(if sub.is_none() && args.finish().is_empty() {
                    0
                } else {
                    2
                });
            }
            Err(Error::usage("unknown option; try `dac --help`"))
        }
    }
}

fn opt<T: std::str::FromStr>(
    args: &mut pico_args::Arguments,
    name: &'static str,
) -> Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    args.opt_value_from_str(name)
        .map_err(|e| Error::usage(format!("{name}: {e}")))
}

fn finish(args: pico_args::Arguments) -> Result<()> {
    let rest = args.finish();
    if rest.is_empty() {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "unexpected argument(s): {}; see --help",
            rest.iter()
                .map(|s| s.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        )))
    }
}

/// Seconds, or a number with an s, m or h suffix.
fn seconds(flag: &str, raw: Option<String>, default: u64) -> Result<Duration> {
    let Some(raw) = raw else {
        return Ok(Duration::from_secs(default));
    };
    let (num, unit) = match raw.chars().last() {
        Some('s') => (&raw[..raw.len() - 1], 1),
        Some('m') => (&raw[..raw.len() - 1], 60),
        Some('h') => (&raw[..raw.len() - 1], 3600),
        _ => (raw.as_str(), 1),
    };
    let n: f64 = num.parse().map_err(|_| {
        Error::usage(format!(
            "{flag} takes seconds (e.g. 30, 90s, 5m), not {raw:?}"
        ))
    })?;
    if !(n > 0.0 && n.is_finite()) {
        return Err(Error::usage(format!("{flag} must be more than zero")));
    }
    Ok(Duration::from_secs_f64(n * unit as f64))
}

fn collect_options(args: &mut pico_args::Arguments, argv: Vec<String>) -> Result<Options> {
    let out: Option<PathBuf> = opt(args, "--out")?;
    let host: Option<String> = args
        .opt_value_from_str(["-H", "--host"])
        .map_err(|e| Error::usage(format!("--host: {e}")))?;
    let context: Option<String> = opt(args, "--context")?;
    let tlsverify = args.contains("--tlsverify");
    let tlscacert: Option<PathBuf> = opt(args, "--tlscacert")?;
    let tlscert: Option<PathBuf> = opt(args, "--tlscert")?;
    let tlskey: Option<PathBuf> = opt(args, "--tlskey")?;
    let targets: Vec<String> = args
        .values_from_str("--container")
        .map_err(|e| Error::usage(format!("--container: {e}")))?;
    let paths: Vec<String> = args
        .values_from_str("--path")
        .map_err(|e| Error::usage(format!("--path: {e}")))?;
    let no_export = args.contains("--no-export");
    let no_save = args.contains("--no-save");
    let no_stats = args.contains("--no-stats");
    let no_changes = args.contains("--no-changes");
    let quiet = args.contains(["-q", "--quiet"]);
    let jobs: usize = opt(args, "--jobs")?.unwrap_or(4);
    let idle = seconds("--idle-timeout", opt(args, "--idle-timeout")?, 60)?;
    let deadline = seconds("--deadline", opt(args, "--deadline")?, 86_400)?;
    let connect_timeout = seconds("--connect-timeout", opt(args, "--connect-timeout")?, 10)?;
    let case_id: Option<String> = opt(args, "--case")?;
    let examiner: Option<String> = opt(args, "--examiner")?;
    let organization: Option<String> = opt(args, "--org")?;
    let sign_key: Option<PathBuf> = opt(args, "--sign-key")?;
    let record: Option<PathBuf> = opt(args, "--record")?;
    let replay: Option<PathBuf> = opt(args, "--replay")?;
    finish(std::mem::replace(
        args,
        pico_args::Arguments::from_vec(vec![]),
    ))?;
    let out = out.ok_or_else(|| {
        Error::usage("dac collect needs --out DIR (a new or empty folder for the bundle)")
    })?;
    if !(1..=64).contains(&jobs) {
        return Err(Error::usage("--jobs must be between 1 and 64"));
    }
    if record.is_some() && replay.is_some() {
        return Err(Error::usage(
            "--record and --replay cannot be used together",
        ));
    }
    if replay.is_some() && (host.is_some() || context.is_some()) {
        return Err(Error::usage(
            "--replay reads a recording; drop -H/--context",
        ));
    }
    for p in &paths {
        if !p.starts_with('/') {
            return Err(Error::usage(format!(
                "--path takes an absolute path inside the container, not {p:?}"
            )));
        }
    }
    if let Some(k) = &sign_key {
        if !k.is_file() {
            return Err(Error::usage(format!(
                "--sign-key {} is not a readable file",
                k.display()
            )));
        }
    }
    for p in [&record, &replay].into_iter().flatten() {
        if p.starts_with(&out) || out.starts_with(p) {
            return Err(Error::new(
                Kind::Usage,
                "the fixture folder and --out must not contain each other",
            ));
        }
    }
    Ok(Options {
        out,
        host: HostArgs {
            host,
            context,
            tlsverify,
            tlscacert,
            tlscert,
            tlskey,
        },
        targets,
        paths,
        no_export,
        no_save,
        no_stats,
        no_changes,
        jobs,
        idle,
        deadline,
        connect_timeout,
        case_id: case_id.unwrap_or_else(|| "unspecified".into()),
        examiner: examiner.unwrap_or_else(|| "unspecified".into()),
        organization: organization.unwrap_or_else(|| "unspecified".into()),
        sign_key,
        record,
        replay,
        argv,
        quiet,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn durations_accept_units_and_refuse_nonsense() {
        assert_eq!(
            seconds("x", Some("90".into()), 1).unwrap(),
            Duration::from_secs(90)
        );
        assert_eq!(
            seconds("x", Some("2m".into()), 1).unwrap(),
            Duration::from_secs(120)
        );
        assert_eq!(seconds("x", None, 7).unwrap(), Duration::from_secs(7));
        assert!(seconds("x", Some("-1".into()), 1).is_err());
        assert!(seconds("x", Some("soon".into()), 1).is_err());
    }

    #[test]
    fn collect_refuses_missing_out_and_unknown_flags() {
        let mut a = pico_args::Arguments::from_vec(args(&["--container", "x"]));
        assert!(collect_options(&mut a, vec![]).is_err());
        let mut a = pico_args::Arguments::from_vec(args(&["--out", "/tmp/x", "--bogus"]));
        let e = collect_options(&mut a, vec![]).err().unwrap();
        assert!(e.message.contains("--bogus"), "{}", e.message);
        let mut a = pico_args::Arguments::from_vec(args(&["--out", "/tmp/x", "--path", "etc"]));
        assert!(collect_options(&mut a, vec![]).is_err());
    }

    #[test]
    fn repeatable_targets_are_all_kept() {
        let mut a = pico_args::Arguments::from_vec(args(&[
            "--out",
            "/tmp/x",
            "--container",
            "a",
            "--container",
            "b",
        ]));
        let o = collect_options(&mut a, vec![]).unwrap();
        assert_eq!(o.targets, vec!["a", "b"]);
        assert_eq!(o.jobs, 4);
    }
}
