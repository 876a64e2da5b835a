//! gunzip: any bytes never panic; what it accepts, flate2 decodes the same; and whatever
//! flate2 compresses (fuzz input as data), gunzip restores.
#![no_main]
use std::io::{Read, Write};

use libfuzzer_sys::fuzz_target;

fn ours(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let n = dac::inflate::gunzip(&mut &data[..], &mut |c| out.extend_from_slice(c))?;
    assert_eq!(n, out.len() as u64);
    Ok(out)
}

fuzz_target!(|data: &[u8]| {
    if let Ok(out) = ours(data) {
        let mut reference = Vec::new();
        flate2::read::MultiGzDecoder::new(data)
            .read_to_end(&mut reference)
            .expect("flate2 rejects what dac accepted");
        assert!(out == reference, "output differs from flate2");
    }
    let level = data.first().map_or(6, |b| u32::from(b % 10));
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    enc.write_all(data).unwrap();
    let gz = enc.finish().unwrap();
    assert!(
        ours(&gz).unwrap() == data,
        "round trip through flate2 level {level}"
    );
});
