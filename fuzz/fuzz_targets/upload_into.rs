//! `cargo fuzz run upload_into`: see `vuma_fuzz::upload_into`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vuma_fuzz::upload_into(data));
