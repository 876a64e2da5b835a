//! check_file: any file never panics; a report is consistent with its failures.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("dac-fuzz-image-{}.tar", std::process::id()));
    std::fs::write(&path, data).expect("write temp file");
    let expected = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    for id in [None, Some(expected)] {
        if let Ok(r) = dac::image_check::check_file(&path, id) {
            assert_eq!(r.ok, r.failures.is_empty());
            assert!(r.failures.len() <= 501);
            let _ = r.to_json();
        }
    }
});
