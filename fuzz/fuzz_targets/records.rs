//! `cargo fuzz run records`: see `vuma_fuzz::records`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vuma_fuzz::records(data));
