//! `cargo fuzz run zstd`: see `vuma_fuzz::zstd`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vuma_fuzz::zstd(data));
