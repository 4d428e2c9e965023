//! `cargo fuzz run snappy`: see `vuma_fuzz::snappy`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vuma_fuzz::snappy(data));
