//! Does SHA-256 keep up with the wire? (issue 5). `cargo bench --bench hash` hashes 1 GiB in
//! memory with the sha2 crate as dac uses it, says whether the CPU's SHA extensions are there
//! (sha2 picks them at run time), and hashes the same bytes from the page cache with coreutils'
//! `sha256sum` as the peer, in the same run. Prints throughputs and checks both digests agree.

use std::io::Write;
use std::process::Command;
use std::time::Instant;

use sha2::{Digest, Sha256};

const MIB: usize = 1 << 20;

fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether the CPU has SHA-256 instructions (None: not checked on this architecture).
fn sha_extensions() -> Option<&'static str> {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("sha").then_some("x86 SHA-NI");
    #[cfg(target_arch = "aarch64")]
    return std::arch::is_aarch64_feature_detected!("sha2").then_some("ARMv8 SHA2");
    #[allow(unreachable_code)]
    None
}

fn main() {
    let data = noise(256 * MIB);
    let rounds = 4;
    let total = (data.len() * rounds) as f64;

    // dac's way: 32 KiB updates, as frames arrive.
    let mut best = f64::MAX;
    let mut digest = String::new();
    for _ in 0..3 {
        let t = Instant::now();
        let mut h = Sha256::new();
        for _ in 0..rounds {
            for chunk in data.chunks(32 * 1024) {
                h.update(chunk);
            }
        }
        digest = hex(&h.finalize());
        best = best.min(t.elapsed().as_secs_f64());
    }

    // The peer: the same 1 GiB as a file in the page cache, through sha256sum.
    let path = std::env::temp_dir().join(format!("dac-hash-bench-{}", std::process::id()));
    let mut peer = None;
    if let Ok(mut f) = std::fs::File::create(&path) {
        let ok = (0..rounds).all(|_| f.write_all(&data).is_ok());
        drop(f);
        if ok {
            let mut best_peer = f64::MAX;
            let mut out = String::new();
            for _ in 0..3 {
                let t = Instant::now();
                match Command::new("sha256sum").arg(&path).output() {
                    Ok(o) if o.status.success() => {
                        best_peer = best_peer.min(t.elapsed().as_secs_f64());
                        out = String::from_utf8_lossy(&o.stdout).into_owned();
                    }
                    _ => break,
                }
            }
            if best_peer < f64::MAX {
                peer = Some((
                    best_peer,
                    out.split_whitespace().next().unwrap_or("").to_string(),
                ));
            }
        }
    }
    let _ = std::fs::remove_file(&path);

    println!("SHA-256 over 1 GiB, best of 3");
    match sha_extensions() {
        Some(name) => println!(
            "  CPU SHA extensions: present ({name}; sha2 detects and uses them at run time)"
        ),
        None => {
            println!("  CPU SHA extensions: absent or not checked: sha2 uses its portable code")
        }
    }
    println!(
        "  dac (sha2, 32 KiB updates, in memory): {:.2} s = {:.0} MiB/s",
        best,
        total / best / MIB as f64
    );
    match peer {
        Some((t, d)) => {
            println!(
                "  sha256sum (coreutils, page cache):    {:.2} s = {:.0} MiB/s",
                t,
                total / t / MIB as f64
            );
            println!("  dac / sha256sum time: {:.2}x", best / t);
            if d != digest {
                eprintln!("digests differ: dac {digest}, sha256sum {d}");
                std::process::exit(1);
            }
            println!("  digests agree: {digest}");
        }
        None => println!("  sha256sum: not run (no temp space or no sha256sum)"),
    }
}
