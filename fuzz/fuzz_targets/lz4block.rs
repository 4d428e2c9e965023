//! `cargo fuzz run lz4block`: see `vuma_fuzz::lz4block`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vuma_fuzz::lz4block(data));
