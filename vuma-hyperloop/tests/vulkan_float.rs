//! `hl_float` on Vulkan (lavapipe in CI, any Vulkan device): the SPIR-V decoder of the float
//! codec against its host reference, bit for bit, on every data set (real weights when
//! cached) and on corrupt chunks (the device must flag exactly what the host flags, and
//! never write outside the destination); no validation errors.
//!
//! Without a Vulkan device these tests print a SKIP line and pass; with
//! `VUMA_REQUIRE_VULKAN=1` (or `VUMA_REQUIRE_HW=1`) they fail instead.

mod floatchunk;

use vuma_core::conformance::skip_or_fail;
use vuma_core::{DynDevice, HostDevice};
use vuma_hyperloop::floatcodec;
use vuma_hyperloop::kernels::Entry;
use vuma_hyperloop::page::ElemWidth;
use vuma_hyperloop::realdata;
use vuma_vulkan::{VulkanDevice, VulkanOptions};

fn vulkan() -> Option<VulkanDevice> {
    match VulkanDevice::open_with(0, &VulkanOptions::default()) {
        Ok(d) => {
            eprintln!("vulkan device: {}", DynDevice::info(&d).name);
            Some(d)
        }
        Err(e) => {
            skip_or_fail("vulkan", &e.to_string());
            None
        }
    }
}

fn assert_clean(dev: &VulkanDevice) {
    DynDevice::synchronize(dev).expect("synchronize");
    if dev.validation_active() {
        assert_eq!(
            dev.validation_errors(),
            0,
            "validation errors: {:#?}",
            dev.validation_messages()
        );
    } else {
        eprintln!(
            "VALIDATION UNAVAILABLE: {}",
            dev.validation_note().unwrap_or("layer not active")
        );
    }
}

#[test]
fn vulkan_float_decoder_matches_the_host() {
    let Some(dev) = vulkan() else { return };
    let real = match realdata::trained_f32(1 << 20) {
        Ok(f) => Some((f.clone(), realdata::f32_bytes_to_bf16(&f))),
        Err(e) => {
            eprintln!("SKIP real-weight sets of vulkan_float_decoder_matches_the_host: {e}");
            None
        }
    };
    let host = HostDevice::new();
    for (name, data, width) in floatchunk::datasets(real) {
        for ps in [64 << 10, 4096] {
            let (chunk, np) = floatchunk::chunk_of(&data, ps, width);
            let (st, out) = floatchunk::run(&dev, &chunk, np, floatchunk::kinds(), data.len());
            assert_eq!(st, [0, u32::MAX], "{name} ({ps}-byte pages): status");
            assert!(
                out == data,
                "{name} ({ps}-byte pages): device output differs from the data"
            );
            let (hst, hout) = floatchunk::run(&host, &chunk, np, floatchunk::kinds(), data.len());
            assert_eq!((st, &out), (hst, &hout), "{name}: device and host differ");
        }
    }
    assert_clean(&dev);
}

#[test]
fn vulkan_float_decoder_flags_what_the_host_flags() {
    let Some(dev) = vulkan() else { return };
    let host = HostDevice::new();
    for (data, width) in [
        (
            vuma_hyperloop::datasets::relu_f32(200_000, 8),
            ElemWidth::F32,
        ),
        (
            vuma_hyperloop::datasets::bf16_weights(200_002, 9),
            ElemWidth::Bf16,
        ),
    ] {
        let (chunk, np) = floatchunk::chunk_of(&data, 16 << 10, width);
        for (what, c) in floatchunk::corruptions(&chunk, np, 2) {
            let (st, out) = floatchunk::run(&dev, &c, np, floatchunk::kinds(), data.len());
            let (hst, hout) = floatchunk::run(&host, &c, np, floatchunk::kinds(), data.len());
            assert_eq!(st, hst, "{what}: device and host flag different pages");
            for p in 0..np as usize {
                let e = Entry::read(&c, p);
                let Ok(w) = ElemWidth::from_bytes(usize::from(e.width)) else {
                    continue;
                };
                if e.kind != 5 || !e.in_bounds(c.len() as u64, data.len() as u64) {
                    continue;
                }
                let s = &c[e.src_off as usize..(e.src_off + u64::from(e.src_len)) as usize];
                let mut d = vec![0u8; e.dst_len as usize];
                if floatcodec::decode_page(s, w, &mut d).is_ok() {
                    let r = e.dst_off as usize..(e.dst_off + u64::from(e.dst_len)) as usize;
                    assert!(out[r.clone()] == hout[r], "{what}: page {p} differs");
                }
            }
        }
    }
    assert_clean(&dev);
}
