//! Demux: any bytes, split anywhere, never panic; the result must not depend on the split.
#![no_main]
use dac::logs::{Demux, Stream};
use libfuzzer_sys::fuzz_target;

fn run(chunks: &[&[u8]]) -> (Vec<(u8, Vec<u8>)>, Result<(), (u64, String)>, u64) {
    let mut d = Demux::new();
    let mut out: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut first_err = None;
    for c in chunks {
        let r = d.push(c, &mut |s, p| {
            let k = match s {
                Stream::Stdout => 1,
                Stream::Stderr => 2,
                Stream::SystemErr => 3,
            };
            match out.last_mut() {
                Some((lk, lp)) if *lk == k => lp.extend_from_slice(p),
                _ => out.push((k, p.to_vec())),
            }
        });
        if let (Err(e), None) = (r, &first_err) {
            first_err = Some((e.offset, e.detail));
        }
    }
    let fin = d.finish().map_err(|e| (e.offset, e.detail));
    if let Some(e) = first_err {
        assert_eq!(
            fin.as_ref().err(),
            Some(&e),
            "finish must repeat the push error"
        );
    }
    (out, fin, d.offset())
}

fuzz_target!(|data: &[u8]| {
    let cut = match data.first() {
        Some(&b) => usize::from(b) % (data.len() + 1),
        None => 0,
    };
    let whole = run(&[data]);
    let split = run(&[&data[..cut], &data[cut..]]);
    assert_eq!(whole, split);
    let (out, fin, off) = whole;
    let payload: usize = out.iter().map(|(_, p)| p.len()).sum();
    assert!(payload as u64 <= off);
    if fin.is_ok() {
        assert_eq!(off, data.len() as u64);
    }
});
