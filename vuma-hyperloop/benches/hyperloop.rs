//! Hyperloop benchmarks (harness = false). Every figure is a `vuma_core::bench::Record`
//! against a baseline measured in the same run.
//!
//! `VUMA_HL_CHUNK_MIB=N` sets the chunk size of the compressed images (default: the library's).
//!
//! Host (always): per data set (256 MiB each; 16 MiB with `VUMA_BENCH_QUICK=1`) and per
//! codec, the ratio (vs raw = 1.0) and the encode / decode rates on all cores (vs a
//! one-thread host memcpy); the planner's throughput (vs the link it plans for).
//!
//! CUDA and Vulkan (each when a device is present; otherwise a SKIP line; Vulkan rows use at
//! most half of `maxStorageBufferRange` per data set): effective host→device GB/s of
//! compressed host residency (uncompressed bytes delivered / wall time, decode included)
//! from pinned staging memory, from mapped pinned memory (decoders read in place) and from
//! pageable memory, each vs a raw copy of the same bytes from the same kind of memory; the
//! device decode rate of each device codec (from device memory) vs the raw pinned link rate;
//! the eviction round trip of ReLU activations resident on the device (device encode +
//! download + upload + decode, through staging copies and through mapped memory; CUDA and
//! Vulkan) vs a raw pinned download + upload, and the rate of the eviction to staging alone
//! (device encode and download, overlapped per chunk: `evict_to_staging`) vs the raw pinned
//! download.

use std::time::Instant;

use vuma_core::bench::{gbps, median, median_time, Record};
use vuma_core::{Codec, DynDevice, Placement};
use vuma_hyperloop::codecs::all_codecs;
use vuma_hyperloop::datasets::Dataset;
use vuma_hyperloop::page::DEFAULT_PAGE_SIZE;
use vuma_hyperloop::planner::{self, CostModel, DeviceCodec, PlanConfig};
use vuma_hyperloop::residency::{
    decode_rate, measure_device_decode, CompressOptions, CompressedBuffer, PinnedCompressed,
    Uploader,
};

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs `f(page_index, range)` over all pages on all cores.
fn par_pages<R: Send>(len: usize, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    let n = len.div_ceil(DEFAULT_PAGE_SIZE);
    let t = threads().min(n.max(1));
    let per = n.div_ceil(t);
    let f = &f;
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..t)
            .map(|i| {
                s.spawn(move || {
                    ((i * per).min(n)..((i + 1) * per).min(n))
                        .map(f)
                        .collect::<Vec<R>>()
                })
            })
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().expect("bench thread"))
            .collect()
    })
}

fn page_range(data_len: usize, p: usize) -> std::ops::Range<usize> {
    p * DEFAULT_PAGE_SIZE..((p + 1) * DEFAULT_PAGE_SIZE).min(data_len)
}

fn host_bench(ds: Dataset, data: &[u8], iters: usize) {
    let host = format!("host ({} threads)", threads());
    let mut copy = vec![0u8; data.len()];
    let memcpy = gbps(
        data.len() as u64,
        median_time(1, iters, || copy.copy_from_slice(data)),
    );
    for codec in all_codecs(ds.width()) {
        let c: &dyn Codec = codec.as_ref();
        let mut enc: Vec<Vec<u8>> = Vec::new();
        let mut enc_t = Vec::new();
        for _ in 0..iters.min(3) {
            let t = Instant::now();
            enc = par_pages(data.len(), |p| {
                let mut v = Vec::new();
                c.compress(&data[page_range(data.len(), p)], &mut v)
                    .expect("compress");
                v
            });
            enc_t.push(t.elapsed().as_secs_f64());
        }
        let stored: usize = enc.iter().map(Vec::len).sum();
        let ratio = data.len() as f64 / stored as f64;
        let mut dec_t = Vec::new();
        for _ in 0..iters {
            let t = Instant::now();
            let ok = par_pages(data.len(), |p| {
                let r = page_range(data.len(), p);
                let mut out = vec![0u8; r.len()];
                c.decompress(&enc[p], &mut out).is_ok() && out == data[r]
            });
            dec_t.push(t.elapsed().as_secs_f64());
            assert!(
                ok.iter().all(|&x| x),
                "{} failed to round-trip {}",
                c.name(),
                ds.name()
            );
        }
        let id = format!("{}/{}", c.name(), ds.name());
        Record {
            bench: format!("hyperloop/host/ratio/{id}"),
            device: host.clone(),
            value: ratio,
            unit: "x".into(),
            baseline: "raw".into(),
            baseline_value: 1.0,
            higher_is_better: true,
        }
        .emit();
        for (what, t) in [
            ("encode", median(&mut enc_t)),
            ("decode", median(&mut dec_t)),
        ] {
            Record {
                bench: format!("hyperloop/host/{what}/{id}"),
                device: host.clone(),
                value: data.len() as f64 / t / 1e9,
                unit: "GB/s".into(),
                baseline: "host memcpy (1 thread)".into(),
                baseline_value: memcpy,
                higher_is_better: true,
            }
            .emit();
        }
    }
    // The planner: how fast it plans vs the link it plans for.
    let model = CostModel::default();
    let cfg = PlanConfig {
        width: ds.width(),
        ..PlanConfig::default()
    };
    let mut t = Vec::new();
    let mut last = None;
    for _ in 0..iters {
        let p = planner::plan(data, &model, &cfg).expect("plan");
        t.push(p.summary.plan_time_s);
        last = Some(p);
    }
    let plan_s = median(&mut t);
    let plan_rate = data.len() as f64 / plan_s / 1e9;
    if let Some(p) = last {
        println!("  plan {}: {}", ds.name(), p.summary);
        // Does planning cost less than the transfer time it saves (modelled)?
        let saved = p.summary.raw_time_s - p.summary.est_time_s;
        Record {
            bench: format!("hyperloop/host/plan_cost/{}", ds.name()),
            device: host.clone(),
            value: plan_s * 1e3,
            unit: "ms".into(),
            baseline: "modelled transfer time saved".into(),
            baseline_value: saved * 1e3,
            higher_is_better: false,
        }
        .emit();
    }
    Record {
        bench: format!("hyperloop/host/plan/{}", ds.name()),
        device: host,
        value: plan_rate,
        unit: "GB/s".into(),
        baseline: "link h2d (model)".into(),
        baseline_value: model.link_h2d / 1e9,
        higher_is_better: true,
    }
    .emit();
}

/// Compression options for `width`, with `VUMA_HL_CHUNK_MIB` (chunk size in MiB) applied
/// when set: the pipelined uploads and evictions drain one chunk at the end, so the chunk
/// size is worth sweeping.
fn options(width: vuma_hyperloop::page::ElemWidth) -> CompressOptions {
    let mut o = CompressOptions::with_width(width);
    if let Some(mib) = std::env::var("VUMA_HL_CHUNK_MIB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&m| m > 0)
    {
        o.chunk_bytes = mib << 20;
    }
    o
}

fn time_gbps(bytes: u64, iters: usize, mut f: impl FnMut() -> f64) -> f64 {
    f();
    f();
    let mut t: Vec<f64> = (0..iters).map(|_| f()).collect();
    bytes as f64 / median(&mut t) / 1e9
}

/// Effective H2D of compressed residency and device decode rates on `dev`; records are
/// named `hyperloop/{backend}/...` (`cuda` or `vulkan`).
fn device_bench(
    dev: &dyn DynDevice,
    backend: &str,
    model: &CostModel,
    ds: Dataset,
    data: &[u8],
    iters: usize,
) -> vuma_core::Result<()> {
    let name = dev.info().name.clone();
    let n = data.len() as u64;
    let rec = |bench: String, value: f64, baseline: &str, b: f64| {
        Record {
            bench,
            device: name.clone(),
            value,
            unit: "GB/s".into(),
            baseline: baseline.into(),
            baseline_value: b,
            higher_is_better: true,
        }
        .emit()
    };
    let dst = dev.alloc(n, Placement::DeviceLocal)?;
    // Raw baselines: pinned staging → device, pageable write.
    let staging = dev.alloc(n, Placement::Staging)?;
    dev.write(staging.as_ref(), 0, data)?;
    let raw_pinned = time_gbps(n, iters, || {
        let t = Instant::now();
        dev.copy(staging.as_ref(), 0, dst.as_ref(), 0, n)
            .expect("copy");
        dev.synchronize().expect("sync");
        t.elapsed().as_secs_f64()
    });
    let raw_pageable = time_gbps(n, iters, || {
        let t = Instant::now();
        dev.write(dst.as_ref(), 0, data).expect("write");
        dev.synchronize().expect("sync");
        t.elapsed().as_secs_f64()
    });
    drop(staging);
    // Each home gets the plan its cost model calls for: pinned uploads copy, then decode
    // (overlapped on backends with concurrent copies, `model.concurrent_copies`, else
    // serialised); mapped uploads decode while the bytes cross the link (overlapped).
    let compress = |overlap: bool| {
        let mut opts = options(ds.width());
        opts.model = CostModel {
            overlap,
            ..model.clone()
        };
        CompressedBuffer::compress(data, &opts)
    };
    let cb = compress(false)?;
    println!(
        "  {} on {} (serialised model): {}",
        ds.name(),
        name,
        cb.summary()
    );
    let cb_overlap = compress(true)?;
    println!(
        "  {} on {} (overlap model): {}",
        ds.name(),
        name,
        cb_overlap.summary()
    );
    let mut up = Uploader::new(dev);
    let mut back = vec![0u8; data.len()];
    let mut verify = |what: &str| -> vuma_core::Result<()> {
        dev.read(dst.as_ref(), 0, &mut back)?;
        if back != data {
            return Err(vuma_core::Error::Kernel {
                kernel: "hyperloop upload".into(),
                reason: format!("{what} of {} delivered wrong bytes", ds.name()),
            });
        }
        Ok(())
    };
    let pinned = PinnedCompressed::pin(dev, &cb)?;
    let eff_pinned = time_gbps(n, iters, || {
        up.upload_pinned(&pinned, dst.as_ref())
            .expect("upload")
            .time_s
    });
    verify("pinned upload")?;
    drop(pinned);
    let mapped = PinnedCompressed::map(dev, &cb_overlap)?;
    let eff_mapped = time_gbps(n, iters, || {
        up.upload_pinned(&mapped, dst.as_ref())
            .expect("upload")
            .time_s
    });
    verify("mapped upload")?;
    drop(mapped);
    // Mapped pinned memory, copied by DMA chunk by chunk (like staging) instead of read in
    // place: the same plan as the pinned upload.
    let mapped = PinnedCompressed::map(dev, &cb)?;
    up.set_mapped_in_place(false);
    let eff_mapped_dma = time_gbps(n, iters, || {
        up.upload_pinned(&mapped, dst.as_ref())
            .expect("upload")
            .time_s
    });
    up.set_mapped_in_place(true);
    verify("mapped upload by DMA")?;
    drop(mapped);
    let eff_pageable = time_gbps(n, iters, || {
        up.upload(&cb, dst.as_ref()).expect("upload").time_s
    });
    verify("pageable upload")?;
    let d = ds.name();
    rec(
        format!("hyperloop/{backend}/h2d_compressed_pinned/{d}"),
        eff_pinned,
        "raw pinned copy",
        raw_pinned,
    );
    rec(
        format!("hyperloop/{backend}/h2d_compressed_mapped/{d}"),
        eff_mapped,
        "raw pinned copy",
        raw_pinned,
    );
    rec(
        format!("hyperloop/{backend}/h2d_compressed_mapped_dma/{d}"),
        eff_mapped_dma,
        "raw pinned copy",
        raw_pinned,
    );
    rec(
        format!("hyperloop/{backend}/h2d_compressed_pageable/{d}"),
        eff_pageable,
        "raw pageable write",
        raw_pageable,
    );
    for codec in DeviceCodec::ALL {
        if !codec.decodes_on(dev.info().backend) {
            println!(
                "  decode/{}/{d}: no decoder on {name}, skipped",
                codec.name()
            );
            continue;
        }
        // Pages a codec does not shrink stay raw: skip codecs that code no page here (the
        // figure would be a device-to-device copy, not a decode).
        let mut opts = CompressOptions::with_width(ds.width());
        opts.force = Some(vuma_hyperloop::PageDecision::Codec(codec));
        let s = CompressedBuffer::compress(data, &opts)?.summary().clone();
        if s.codec_pages() == 0 {
            println!("  decode/{}/{d}: no page shrinks, skipped", codec.name());
            continue;
        }
        let r = decode_rate(dev, data, ds.width(), codec, iters)?;
        rec(
            format!("hyperloop/{backend}/decode/{}/{d}", codec.name()),
            r,
            "raw pinned copy",
            raw_pinned,
        );
    }
    Ok(())
}

/// Eviction round trip of `data` (ReLU f32) resident on the device: device encode + download
/// of the compressed bytes into pinned memory + upload + device decode, vs a raw download
/// into pinned memory + raw upload; through staging copies and through mapped memory (the
/// encoder writes across the link, the decoders read across it). Also the device encode
/// rate (GB/s of input) vs the raw pinned download it replaces.
fn eviction_bench(
    dev: &dyn DynDevice,
    backend: &str,
    data: &[u8],
    iters: usize,
) -> vuma_core::Result<()> {
    use vuma_hyperloop::encode::DeviceEncoder;
    use vuma_hyperloop::page::ElemWidth;
    let name = dev.info().name.clone();
    let n = data.len() as u64;
    let rec = |bench: &str, value: f64, baseline: &str, b: f64| {
        Record {
            bench: format!("hyperloop/{backend}/{bench}/relu_f32"),
            device: name.clone(),
            value,
            unit: "GB/s".into(),
            baseline: baseline.into(),
            baseline_value: b,
            higher_is_better: true,
        }
        .emit()
    };
    let src = dev.alloc(n, Placement::DeviceLocal)?;
    dev.write(src.as_ref(), 0, data)?;
    let dst = dev.alloc(n, Placement::DeviceLocal)?;
    let staging = dev.alloc(n, Placement::Staging)?;
    let sync = || dev.synchronize().expect("sync");
    let raw_d2h = time_gbps(n, iters, || {
        let t = Instant::now();
        dev.copy(src.as_ref(), 0, staging.as_ref(), 0, n)
            .expect("copy");
        sync();
        t.elapsed().as_secs_f64()
    });
    let raw_rt = time_gbps(n, iters, || {
        let t = Instant::now();
        dev.copy(src.as_ref(), 0, staging.as_ref(), 0, n)
            .expect("copy");
        dev.copy(staging.as_ref(), 0, dst.as_ref(), 0, n)
            .expect("copy");
        sync();
        t.elapsed().as_secs_f64()
    });
    drop(staging);
    let opts = options(ElemWidth::F32);
    let mut enc = DeviceEncoder::new(dev);
    let mut up = Uploader::new(dev);
    let mut back = vec![0u8; data.len()];
    for (home, what, in_place) in [
        (Placement::Staging, "evict_roundtrip_staged", true),
        (Placement::HostMapped, "evict_roundtrip_mapped", true),
        (Placement::HostMapped, "evict_roundtrip_mapped_dma", false),
    ] {
        up.set_mapped_in_place(in_place);
        if !dev.supports(home) {
            println!("SKIP: {what}: {name} has no {} memory", home.as_str());
            continue;
        }
        let mut enc_t = Vec::new();
        let mut phases = Vec::new();
        let mut summary = None;
        let eff = time_gbps(n, iters, || {
            let t = Instant::now();
            let ev = enc.evict(src.as_ref(), n, &opts, home).expect("evict");
            up.upload_pinned(ev.pinned(), dst.as_ref()).expect("upload");
            let el = t.elapsed().as_secs_f64();
            enc_t.push(ev.device_encode_time_s());
            phases.push((ev.phase_times_s(), ev.encode_time_s(), el));
            summary.get_or_insert_with(|| ev.summary().clone());
            enc.recycle(ev);
            el
        });
        enc_t.drain(..enc_t.len().min(2)); // the two warm-up runs
        dev.read(dst.as_ref(), 0, &mut back)?;
        if back != data {
            return Err(vuma_core::Error::Kernel {
                kernel: "hl_enc_write".into(),
                reason: format!("{what}: eviction round trip delivered wrong bytes"),
            });
        }
        if let Some(s) = summary {
            println!("  {what} on {name}: {s}");
        }
        if let Some(([a, b, c], e, el)) = phases.last() {
            println!(
                "  {what}: size pass {:.2} ms, layout {:.2} ms, write pass {:.2} ms, eviction {:.2} ms, round trip {:.2} ms (last run)",
                a * 1e3,
                (b - a) * 1e3,
                (c - b) * 1e3,
                e * 1e3,
                el * 1e3
            );
        }
        rec(what, eff, "raw pinned d2h + h2d", raw_rt);
        if home == Placement::Staging {
            let enc_gbps = n as f64 / median(&mut enc_t) / 1e9;
            rec("evict_to_staging", enc_gbps, "raw pinned d2h", raw_d2h);
        }
    }
    Ok(())
}

fn warm_up(dev: &dyn DynDevice, n: u64) -> vuma_core::Result<()> {
    let staging = dev.alloc(n, Placement::Staging)?;
    let dst = dev.alloc(n, Placement::DeviceLocal)?;
    dev.fill(staging.as_ref(), 0, n, 1)?;
    for _ in 0..5 {
        dev.copy(staging.as_ref(), 0, dst.as_ref(), 0, n)?;
    }
    dev.synchronize()
}

fn main() {
    let quick = std::env::var("VUMA_BENCH_QUICK").is_ok_and(|v| v == "1");
    let len = if quick { 16 << 20 } else { 256 << 20 };
    let iters = if quick { 3 } else { 5 };
    println!(
        "hyperloop bench: {} MiB per data set, {} threads{}",
        len >> 20,
        threads(),
        if quick { " (quick)" } else { "" }
    );
    let cuda = match vuma_cuda::devices() {
        Ok(mut v) if !v.is_empty() => Some(v.remove(0)),
        Ok(_) => {
            println!("SKIP: cuda unavailable: no CUDA device (host benchmarks only)");
            None
        }
        Err(e) => {
            println!("SKIP: cuda unavailable: {e} (host benchmarks only)");
            None
        }
    };
    let vulkan = match vuma_vulkan::VulkanDevice::open(0) {
        Ok(d) => Some(d),
        Err(e) => {
            println!("SKIP: vulkan unavailable: {e} (no Vulkan rows)");
            None
        }
    };
    // One storage-buffer binding covers the whole destination: Vulkan rows use at most
    // maxStorageBufferRange bytes per data set.
    let vk_len = vulkan.as_ref().map_or(0, |d| {
        let range = d.max_storage_buffer_range();
        if (range as usize) < len {
            println!(
                "vulkan: {} MiB per data set (maxStorageBufferRange {range})",
                (range as usize / 2) >> 20
            );
            (range as usize / 2).min(len)
        } else {
            len
        }
    });
    let mut vk_model = CostModel::default();
    if let Some(dev) = vulkan.as_ref() {
        if let Err(e) = warm_up(dev, vk_len as u64) {
            println!("vulkan warm-up failed: {e}");
        }
        vk_model = CostModel::for_device(DynDevice::info(dev));
        match measure_device_decode(dev, &mut vk_model, vk_len.min(64 << 20), iters) {
            Ok(()) => println!("measured Vulkan cost model:\n{}", vk_model.to_text()),
            Err(e) => println!("Vulkan device decode measurement failed: {e}"),
        }
    }
    let mut model = CostModel::default();
    if let Some(dev) = cuda.as_ref() {
        // Warm the link and the clocks up before the first baseline is timed (a cold first
        // copy measured 29 GB/s instead of 54 on the H100).
        if let Err(e) = warm_up(dev, len as u64) {
            println!("warm-up failed: {e}");
        }
        model = CostModel::for_device(DynDevice::info(dev));
        match measure_device_decode(dev, &mut model, 64 << 20, iters) {
            Ok(()) => println!("measured cost model:\n{}", model.to_text()),
            Err(e) => println!("device decode measurement failed: {e}"),
        }
    }
    for ds in Dataset::ALL {
        let t = Instant::now();
        let data = ds.generate(len, 1);
        println!(
            "{}: generated in {:.2} s",
            ds.name(),
            t.elapsed().as_secs_f64()
        );
        host_bench(ds, &data, iters);
        if let Some(dev) = vulkan.as_ref() {
            let d = &data[..vk_len];
            if let Err(e) = device_bench(dev, "vulkan", &vk_model, ds, d, iters) {
                println!("ERROR: vulkan bench on {} failed: {e}", ds.name());
                std::process::exit(1);
            }
            if ds == Dataset::ReluF32 {
                if let Err(e) = eviction_bench(dev, "vulkan", d, iters) {
                    println!("ERROR: vulkan eviction bench failed: {e}");
                    std::process::exit(1);
                }
            }
        }
        if let Some(dev) = cuda.as_ref() {
            if let Err(e) = device_bench(dev, "cuda", &model, ds, &data, iters) {
                println!("ERROR: cuda bench on {} failed: {e}", ds.name());
                std::process::exit(1);
            }
            if ds == Dataset::ReluF32 {
                if let Err(e) = eviction_bench(dev, "cuda", &data, iters) {
                    println!("ERROR: eviction bench failed: {e}");
                    std::process::exit(1);
                }
            }
        }
    }
}
