//! `cargo fuzz run bitplane`: see `vuma_fuzz::bitplane`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vuma_fuzz::bitplane(data));
