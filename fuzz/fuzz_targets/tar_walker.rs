//! TarWalker: any bytes, any chunking, never panic, and the same verdict whatever the chunks.
#![no_main]
use dac::tar::TarWalker;
use libfuzzer_sys::fuzz_target;

fn walk(data: &[u8], chunk: usize) -> Result<(u64, u64, u64), (u64, String)> {
    let mut w = TarWalker::new();
    for c in data.chunks(chunk.max(1)) {
        let _ = w.push(c);
    }
    w.finish()
        .map(|s| (s.entries, s.end_offset, s.trailing_zero_bytes))
        .map_err(|e| (e.offset, e.detail))
}

fuzz_target!(|data: &[u8]| {
    let chunk = match data.first() {
        Some(&b) => usize::from(b) * 3 + 1,
        None => 1,
    };
    let whole = walk(data, data.len());
    let pieces = walk(data, chunk);
    assert_eq!(whole, pieces);
    match whole {
        Ok((_, end, trailing)) => {
            assert!(end % 512 == 0 && end >= 1024);
            assert_eq!(end + trailing, data.len() as u64);
        }
        Err((offset, _)) => assert!(offset <= data.len() as u64),
    }
});
