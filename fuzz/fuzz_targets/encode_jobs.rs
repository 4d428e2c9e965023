//! `cargo fuzz run encode_jobs`: see `vuma_fuzz::encode_jobs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vuma_fuzz::encode_jobs(data));
