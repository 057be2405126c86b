//! Any query string: decoding and value lookup never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(q) = std::str::from_utf8(data) {
        let _ = levee::routing::matchers::decode(q);
        for v in levee::routing::query_values(q, "q") {
            let _ = v.len();
        }
    }
});
