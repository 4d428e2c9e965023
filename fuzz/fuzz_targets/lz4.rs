//! `cargo fuzz run lz4`: see `vuma_fuzz::lz4`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vuma_fuzz::lz4(data));
