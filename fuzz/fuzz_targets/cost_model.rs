//! `cargo fuzz run cost_model`: see `vuma_fuzz::cost_model`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vuma_fuzz::cost_model(data));
