//! `hl_float` on CUDA (hardware tier): the device decoder of the float codec against its
//! host reference, bit for bit, on every data set (real weights when cached) and on corrupt
//! chunks (the device must flag exactly what the host flags, and never write outside the
//! destination); float pages through the full `Uploader` (every home of the chunk images,
//! planned for the device and forced, chunks mixing every page kind).
//!
//! Without a CUDA device these tests print a SKIP line and pass; with `VUMA_REQUIRE_CUDA=1`
//! (or `VUMA_REQUIRE_HW=1`) they fail instead.

mod floatchunk;
mod floatupload;

use std::time::Instant;

use vuma_core::conformance::skip_or_fail;
use vuma_core::{DynDevice, HostDevice};
use vuma_hyperloop::floatcodec;
use vuma_hyperloop::kernels::Entry;
use vuma_hyperloop::page::ElemWidth;
use vuma_hyperloop::realdata;

fn cuda() -> Option<vuma_cuda::CudaDevice> {
    match vuma_cuda::devices() {
        Ok(mut v) if !v.is_empty() => Some(v.remove(0)),
        Ok(_) => {
            skip_or_fail("cuda", "no CUDA device");
            None
        }
        Err(e) => {
            skip_or_fail("cuda", &e.to_string());
            None
        }
    }
}

#[test]
fn cuda_float_decoder_matches_the_host() {
    let Some(dev) = cuda() else { return };
    eprintln!("device: {}", DynDevice::info(&dev).name);
    let real = match realdata::trained_f32(8 << 20) {
        Ok(f) => Some((f.clone(), realdata::f32_bytes_to_bf16(&f))),
        Err(e) => {
            eprintln!("SKIP real-weight sets of cuda_float_decoder_matches_the_host: {e}");
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
}

#[test]
fn cuda_float_decoder_flags_what_the_host_flags() {
    let Some(dev) = cuda() else { return };
    let host = HostDevice::new();
    for (data, width) in [
        (
            vuma_hyperloop::datasets::relu_f32(600_000, 8),
            ElemWidth::F32,
        ),
        (
            vuma_hyperloop::datasets::bf16_weights(600_002, 9),
            ElemWidth::Bf16,
        ),
    ] {
        let (chunk, np) = floatchunk::chunk_of(&data, 16 << 10, width);
        for (what, c) in floatchunk::corruptions(&chunk, np, 2) {
            let (st, out) = floatchunk::run(&dev, &c, np, floatchunk::kinds(), data.len());
            let (hst, hout) = floatchunk::run(&host, &c, np, floatchunk::kinds(), data.len());
            assert_eq!(st, hst, "{what}: device and host flag different pages");
            // Pages the host decodes must be identical (corrupt pages' bytes are undefined).
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
}

#[test]
fn cuda_float_decode_rate() {
    let Some(dev) = cuda() else { return };
    let data = match realdata::trained_bf16(32 << 20) {
        Ok(b) => realdata::tile(&b, 256 << 20),
        Err(e) => {
            eprintln!("real weights unavailable ({e}); rate on synthetic bf16 weights");
            vuma_hyperloop::datasets::bf16_weights(256 << 20, 1)
        }
    };
    let (chunk, np) = floatchunk::chunk_of(&data, 64 << 10, ElemWidth::Bf16);
    // One warm-up, then timed launches (a launch, a status read; rate of output bytes).
    let _ = floatchunk::run(&dev, &chunk, np, floatchunk::kinds(), data.len());
    let t = Instant::now();
    let (st, out) = floatchunk::run(&dev, &chunk, np, floatchunk::kinds(), data.len());
    let s = t.elapsed().as_secs_f64();
    assert_eq!(st, [0, u32::MAX]);
    assert!(out == data);
    eprintln!(
        "hl_float bf16: {} MiB -> ratio {:.3}; launch + transfers {:.2} ms (a lower bound of the kernel's rate: {:.1} GB/s, allocation and copies included)",
        data.len() >> 20,
        data.len() as f64 / chunk.len() as f64,
        s * 1e3,
        data.len() as f64 / s / 1e9
    );
}

/// Float pages through the `Uploader` on CUDA, bit-exact and flagged as on the host
/// (see `floatupload::check_uploads`): real bf16 and fp32 weights when cached, every
/// synthetic set, chunks mixing every page kind.
#[test]
fn cuda_uploads_float_pages_bit_exactly() {
    let Some(dev) = cuda() else { return };
    let sanitizer = std::env::var("VUMA_UNDER_SANITIZER").is_ok_and(|v| !v.is_empty() && v != "0");
    let len = if sanitizer { 1 << 20 } else { 16 << 20 };
    floatupload::check_uploads(&dev, len, "cuda_uploads_float_pages_bit_exactly");
}

/// The CUDA decoders other than `hl_float`, launched on a chunk of every kind with the
/// float bit set: they leave the float pages alone, flag nothing, and match the host.
#[test]
fn cuda_decoders_leave_float_pages_to_hl_float() {
    let Some(dev) = cuda() else { return };
    let host = HostDevice::new();
    for direct in [false, true] {
        let (data, cb) = floatupload::mixed(direct);
        let (st, out) = floatupload::launch_others(&dev, &cb);
        floatupload::assert_others_leave_float_pages(&cb, &data, st, &out);
        let (hst, hout) = floatupload::launch_others(&host, &cb);
        assert_eq!(st, hst);
        assert!(out == hout, "device and host differ");
    }
}
