//! index_file: any file, never panic; it must agree with the streaming walker.
#![no_main]
use dac::tar::{index_file, TarWalker};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("dac-fuzz-index-{}.tar", std::process::id()));
    std::fs::write(&path, data).expect("write temp file");
    let idx = index_file(&path);
    let mut w = TarWalker::new();
    let _ = w.push(data);
    let walk = w.finish();
    match (&idx, &walk) {
        (Ok(entries), Ok(summary)) => {
            assert_eq!(entries.len() as u64, summary.entries);
            for e in entries {
                assert!(e.data_offset.checked_add(e.size).unwrap() <= data.len() as u64);
                assert!(e.data_offset % 512 == 0);
            }
        }
        (Err(a), Err(b)) => assert_eq!(a.offset, b.offset, "{a:?} vs {b:?}"),
        _ => panic!("index and walker disagree: {idx:?} vs {walk:?}"),
    }
});
