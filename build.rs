//! Embed what a court may ask about this build: commit, compiler, target, and the lock file.
use sha2::{Digest, Sha256};
use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs");
    println!("cargo:rerun-if-env-changed=DAC_GIT_COMMIT");
    let commit = std::env::var("DAC_GIT_COMMIT")
        .ok()
        .or_else(|| run("git", &["rev-parse", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    let dirty = match run("git", &["status", "--porcelain", "--untracked-files=no"]) {
        Some(s) if !s.is_empty() => "-dirty",
        _ => "",
    };
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = run(&rustc, &["--version"]).unwrap_or_else(|| "unknown".into());
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    let lock = std::fs::read("Cargo.lock").unwrap_or_default();
    let lock_sha = Sha256::digest(&lock)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    // The locked packages, name@version, from Cargo.lock itself.
    let text = String::from_utf8_lossy(&lock);
    let mut deps = Vec::new();
    let mut name = None;
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"').to_string());
        } else if let Some(v) = line.strip_prefix("version = ") {
            if let Some(n) = name.take() {
                if n != "dac" {
                    deps.push(format!("{n}@{}", v.trim_matches('"')));
                }
            }
        }
    }
    println!("cargo:rustc-env=DAC_GIT_COMMIT={commit}{dirty}");
    println!("cargo:rustc-env=DAC_RUSTC={rustc_version}");
    println!("cargo:rustc-env=DAC_TARGET={target}");
    println!("cargo:rustc-env=DAC_LOCK_SHA256={lock_sha}");
    println!("cargo:rustc-env=DAC_LOCKED_PACKAGES={}", deps.join(","));
}
