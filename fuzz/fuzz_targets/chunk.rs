//! `cargo fuzz run chunk`: see `vuma_fuzz::chunk`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vuma_fuzz::chunk(data));
