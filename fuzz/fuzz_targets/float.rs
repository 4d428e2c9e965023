//! `cargo fuzz run float`: see `vuma_fuzz::float`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vuma_fuzz::float(data));
