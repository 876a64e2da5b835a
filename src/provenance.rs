//! What this build is, embedded at build time by build.rs, for `--version --verbose` and for
//! every bundle's `session_start` and `metadata/environment.json`.

use serde_json::{json, Value};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = env!("DAC_GIT_COMMIT");
pub const RUSTC: &str = env!("DAC_RUSTC");
pub const TARGET: &str = env!("DAC_TARGET");
pub const LOCK_SHA256: &str = env!("DAC_LOCK_SHA256");
const LOCKED: &str = env!("DAC_LOCKED_PACKAGES");

/// Every package in Cargo.lock (runtime, build-time and other platforms' alike).
pub fn locked_packages() -> Vec<&'static str> {
    LOCKED.split(',').filter(|s| !s.is_empty()).collect()
}

pub fn build_info() -> Value {
    json!({
        "version": VERSION,
        "commit": COMMIT,
        "rustc": RUSTC,
        "target": TARGET,
        "cargo_lock_sha256": LOCK_SHA256,
        "locked_packages": locked_packages(),
    })
}

pub fn version_short() -> String {
    format!("dac {VERSION} ({COMMIT})")
}

pub fn version_verbose() -> String {
    let mut s = format!(
        "dac {VERSION}\ncommit: {COMMIT}\nrustc: {RUSTC}\ntarget: {TARGET}\nCargo.lock sha256: {LOCK_SHA256}\n\
         locked packages (all of Cargo.lock: runtime, build-time and other platforms'):\n"
    );
    for p in locked_packages() {
        s.push_str("  ");
        s.push_str(p);
        s.push('\n');
    }
    s
}
