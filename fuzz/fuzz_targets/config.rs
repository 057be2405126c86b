//! Any bytes as a config file: the loader and validator answer with a config or diagnostics,
//! never a panic; an accepted config always builds a router.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(src) = std::str::from_utf8(data) {
        if let Ok(loaded) = levee::config::load_str(src, std::path::Path::new(".")) {
            let specs = loaded
                .config
                .routes
                .iter()
                .map(|r| r.matcher.clone())
                .collect();
            assert!(levee::routing::Router::new(specs).is_ok());
        }
    }
});
