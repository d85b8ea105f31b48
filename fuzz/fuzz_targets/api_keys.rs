//! The API-key list (`--api-keys` file, `BINDERY_API_KEYS`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bindery::fuzzing::api_keys(data));
