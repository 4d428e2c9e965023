//! `hl_float` on Vulkan (lavapipe in CI, real GPUs in the hardware tier): the SPIR-V decoder
//! of the float codec against its host reference, bit for bit, on every data set (real
//! weights when cached), on pages of 1, 2 and 4 groups with odd lengths, and on corrupt
//! chunks (the device must flag exactly what the host flags, and never write outside the
//! destination); float pages through the full `Uploader` (every home of the chunk images,
//! planned for the device and forced, chunks mixing every page kind). Every test ends with
//! zero validation errors when the validation layer is active (`VUMA_VK_VALIDATION=1`).
//!
//! Without a Vulkan device these tests print a SKIP line and pass; with
//! `VUMA_REQUIRE_VULKAN=1` (or `VUMA_REQUIRE_HW=1`) they fail instead.

mod floatchunk;
mod vk;
// The launch of the other decoders is checked in `vulkan.rs`.
#[allow(dead_code)]
mod floatupload;

use std::time::Instant;

use vk::{assert_clean, vulkan};
use vuma_core::{Backend, DynDevice, HostDevice};
use vuma_hyperloop::floatcodec;
use vuma_hyperloop::floatdecode::{self, float_decoder};
use vuma_hyperloop::kernels::Entry;
use vuma_hyperloop::page::ElemWidth;
use vuma_hyperloop::planner::{CostModel, DeviceCodec};
use vuma_hyperloop::realdata;
use vuma_vulkan::VulkanDevice;

/// Runs `chunk` on the device and on the host device; both must decode it to `data` with a
/// clean status.
fn check_chunk(dev: &VulkanDevice, what: &str, data: &[u8], chunk: &[u8], np: u32) {
    let host = HostDevice::new();
    let (st, out) = floatchunk::run(dev, chunk, np, floatchunk::kinds(), data.len());
    assert_eq!(st, [0, u32::MAX], "{what}: status");
    assert!(
        out == data,
        "{what}: device output differs from the data at byte {:?}",
        out.iter().zip(data).position(|(a, b)| a != b)
    );
    let (hst, hout) = floatchunk::run(&host, chunk, np, floatchunk::kinds(), data.len());
    assert_eq!((st, &out), (hst, &hout), "{what}: device and host differ");
}

/// The SPIR-V variant exists and the planner of a Vulkan device may pick the float codec;
/// the first launch (which compiles the pipeline) is timed: with
/// `MESA_SHADER_CACHE_DISABLE=true` this is lavapipe's cold compile.
#[test]
fn vulkan_float_decoder_compiles_and_is_planned() {
    assert!(float_decoder().supports(Backend::Vulkan));
    assert!(DeviceCodec::Float.decodes_on(Backend::Vulkan));
    let Some(dev) = vulkan() else { return };
    assert!(CostModel::for_device(DynDevice::info(&dev)).float_decoder);
    let data = vuma_hyperloop::datasets::bf16_weights(4096, 1);
    let (chunk, np) = floatchunk::chunk_of(&data, 4096, ElemWidth::Bf16);
    let t = Instant::now();
    let (st, out) = floatchunk::run(&dev, &chunk, np, floatchunk::kinds(), data.len());
    eprintln!(
        "hl_float: first launch (pipeline compile included) {:.2} s (MESA_SHADER_CACHE_DISABLE={:?})",
        t.elapsed().as_secs_f64(),
        std::env::var("MESA_SHADER_CACHE_DISABLE").ok()
    );
    assert_eq!(st, [0, u32::MAX]);
    assert!(out == data);
    assert_clean(&dev);
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
    for (name, data, width) in floatchunk::datasets(real) {
        for ps in [64 << 10, 4096] {
            let (chunk, np) = floatchunk::chunk_of(&data, ps, width);
            check_chunk(
                &dev,
                &format!("{name} ({ps}-byte pages)"),
                &data,
                &chunk,
                np,
            );
        }
    }
    assert_clean(&dev);
}

/// Pages of 1, 2 and 4 groups, with tails (lengths not a multiple of the width) and short
/// last groups, every width, with and without zero elision.
#[test]
fn vulkan_float_decoder_matches_the_host_on_every_group_count() {
    let Some(dev) = vulkan() else { return };
    let sets = [
        (
            "relu f32",
            vuma_hyperloop::datasets::relu_f32(100_003, 21),
            ElemWidth::F32,
        ),
        (
            "bf16 weights",
            vuma_hyperloop::datasets::bf16_weights(100_001, 22),
            ElemWidth::Bf16,
        ),
        (
            "bf16 relu",
            vuma_hyperloop::realdata::f32_bytes_to_bf16(&vuma_hyperloop::datasets::relu_f32(
                200_004, 23,
            )),
            ElemWidth::Bf16,
        ),
        (
            "skewed u8",
            (0..60_001u32).map(|i| (i % 7 == 0) as u8 * 0x3C).collect(),
            ElemWidth::U8,
        ),
    ];
    for (name, data, width) in sets {
        let w = width.bytes();
        // 1 group below 512 elements, 2 below 1,024, else 4; odd byte counts leave tails.
        for elems in [
            1usize, 31, 33, 255, 511, 512, 777, 1023, 1024, 1100, 4095, 16_383,
        ] {
            for extra in [0usize, 1, w - 1] {
                let ps = elems * w + extra;
                if ps > 64 << 10 || ps > data.len() {
                    continue;
                }
                let n = ps / w;
                let lanes = floatcodec::lanes_for(n);
                let (chunk, np) = floatchunk::chunk_of(&data, ps, width);
                check_chunk(
                    &dev,
                    &format!("{name}: {ps}-byte pages ({} groups)", lanes / 32),
                    &data,
                    &chunk,
                    np,
                );
            }
        }
    }
    assert_clean(&dev);
}

/// One field of one coded page changed at a time (pages 0, 1, the middle and the last), so
/// that the status word says whether that page was flagged: group starts, lane ends, the sm
/// count, the mode, the lane count and code lengths, each one up and one down.
fn field_corruptions(chunk: &[u8], np: u32) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let n = np as usize;
    for p in [0, 1, n / 2, n - 1] {
        let e = Entry::read(chunk, p.min(n - 1));
        let s = e.src_off as usize;
        let page = &chunk[s..s + e.src_len as usize];
        if page[2] == floatcodec::MODE_RAW {
            continue;
        }
        let lanes = usize::from(page[3]);
        let ends = floatcodec::FIXED_HEADER + floatcodec::LENGTHS_BYTES;
        let starts = ends + 2 * lanes;
        // (what, byte offset in the page, width in bytes, delta)
        let mut fields: Vec<(String, usize, usize, i64)> = vec![
            ("nsm".into(), 8, 4, 1),
            ("nsm".into(), 8, 4, -1),
            ("mode".into(), 2, 1, 2),
            ("mode".into(), 2, 1, -2),
            ("lanes".into(), 3, 1, 32),
            ("lanes".into(), 3, 1, -32),
            ("length of symbol 0x7e".into(), 12 + 0x3f, 1, 1),
            ("length of symbol 0x7e".into(), 12 + 0x3f, 1, -1),
            ("lengths 0x78..".into(), 12 + 0x3c, 1, 0x0C),
        ];
        for l in [0, 5, lanes / 2, lanes - 1] {
            fields.push((format!("end of lane {l}"), ends + 2 * l, 2, 1));
            fields.push((format!("end of lane {l}"), ends + 2 * l, 2, -1));
        }
        for g in 1..lanes / floatcodec::LANES {
            fields.push((format!("start of group {g}"), starts + 4 * (g - 1), 4, 1));
            fields.push((format!("start of group {g}"), starts + 4 * (g - 1), 4, -1));
        }
        for (what, at, width, delta) in fields {
            let mut c = chunk.to_vec();
            let mut v = [0u8; 8];
            v[..width].copy_from_slice(&c[s + at..s + at + width]);
            let x = u64::from_le_bytes(v).wrapping_add_signed(delta);
            c[s + at..s + at + width].copy_from_slice(&x.to_le_bytes()[..width]);
            out.push((format!("page {p}: {what} {delta:+}"), c));
        }
    }
    out
}

#[test]
fn vulkan_float_decoder_flags_what_the_host_flags() {
    let Some(dev) = vulkan() else { return };
    let host = HostDevice::new();
    let (mut flagged, mut clean) = (0, 0);
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
        for ps in [16 << 10, 1500] {
            let (chunk, np) = floatchunk::chunk_of(&data, ps, width);
            let mut cases = floatchunk::corruptions(&chunk, np, 2);
            cases.extend(field_corruptions(&chunk, np));
            for (what, c) in cases {
                let (st, out) = floatchunk::run(&dev, &c, np, floatchunk::kinds(), data.len());
                let (hst, hout) = floatchunk::run(&host, &c, np, floatchunk::kinds(), data.len());
                assert_eq!(
                    st, hst,
                    "{what} ({ps}-byte pages): device and host flag different pages"
                );
                if st[0] & floatdecode::FLAG_FLOAT != 0 {
                    flagged += 1;
                } else {
                    clean += 1;
                }
                // Pages the host decodes must be identical (corrupt pages' bytes are undefined).
                for p in 0..np as usize {
                    let e = Entry::read(&c, p);
                    let Ok(w) = ElemWidth::from_bytes(usize::from(e.width)) else {
                        continue;
                    };
                    if e.kind != floatdecode::KIND_FLOAT
                        || !e.in_bounds(c.len() as u64, data.len() as u64)
                    {
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
    }
    eprintln!("{flagged} corrupt chunks flagged FLAG_FLOAT, {clean} not");
    assert!(flagged > 20, "the corruptions reach the float checks");
    assert_clean(&dev);
}

/// Float pages through the `Uploader` on Vulkan, bit-exact and flagged as on the host
/// (see `floatupload::check_uploads`): every synthetic set (real weights when cached),
/// planned and forced, chunks mixing every page kind.
#[test]
fn vulkan_uploads_float_pages_bit_exactly() {
    let Some(dev) = vulkan() else { return };
    floatupload::check_uploads(&dev, 1 << 20, "vulkan_uploads_float_pages_bit_exactly");
    assert_clean(&dev);
}
