//! `model.toml` parsing and validation.
#![no_main]

use std::path::Path;

use bindery::model::manifest::ModelDir;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/imagebind-fixture");
        let _ = ModelDir::parse(&dir, &dir.join("model.toml"), text);
    }
});
