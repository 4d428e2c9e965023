//! The float codec on a device (harness = false). Every figure is a
//! `vuma_core::bench::Record` (appended to `$VUMA_BENCH_OUT` as JSON lines) against a
//! baseline measured in the same run.
//!
//! Device: the first CUDA device (the first Vulkan device with `VUMA_BENCH_DEVICE=vulkan`);
//! without one, or with `VUMA_BENCH_DEVICE=host`, the host device, whose decoders are the kernels' host-function variants (figures that show the
//! bench runs, not how fast a GPU is). `VUMA_BENCH_QUICK=1`: 8 MiB per data set and three
//! iterations (default 256 MiB, five). `VUMA_HL_CHUNK_MIB=N` sets the chunk size of the
//! compressed images (default: the library's, 32 MiB) and `VUMA_HL_PAGE_KIB=N` the page size
//! (default: the library's for float-coded data, `page::FLOAT_PAGE_SIZE`, 64 KiB).
//! `hl_float` runs one warp per group of a page (four per page) and one launch per chunk,
//! so small chunks or large pages leave a big GPU idle: both are worth sweeping.
//!
//! Data sets: real trained weights (all-MiniLM-L6-v2's fp32 encoder tensors from the data
//! cache, `cargo xtask fetch-data`, and the same rounded to bf16, tiled to the data set
//! size; without the cache a SKIP line and synthetic bf16 weights instead), real
//! activations (`activations`: the model's first feed-forward layer run on embedded
//! tokens, ReLU and GELU; a SKIP line without the cache) and ReLU activations (the seeded
//! synthetic set).
//!
//! - `hyperloop/{backend}/float/decode/{set}`: the device decode rate of `hl_float` in GB/s
//!   of output, every non-zero page forced to the float codec, from chunk images resident in
//!   device memory (`Uploader::decode_resident`: one launch per chunk, the status read
//!   included; output verified), median of the
//!   iterations, vs the raw pinned copy of the same bytes (issue 16's target: 300 GB/s);
//! - `hyperloop/{backend}/float/ratio/{set}`: what the float codec stores (vs raw = 1);
//! - `hyperloop/{backend}/float/h2d_pinned/{set}`: effective host-to-device GB/s
//!   (uncompressed bytes delivered / wall time, decode included) of
//!   `Uploader::upload_pinned` from pinned staging memory, the pages planned for the device
//!   with its measured cost model (the float codec where it wins), vs a raw pinned copy of
//!   the same bytes; `h2d_pinned_forced/{set}`: the same with every page forced to the float
//!   codec.

use std::time::Instant;

use vuma_core::bench::{median, Record};
use vuma_core::{DynDevice, HostDevice, Placement};
use vuma_hyperloop::datasets;
use vuma_hyperloop::page::ElemWidth;
use vuma_hyperloop::planner::{CostModel, DeviceCodec, PageDecision};
use vuma_hyperloop::realdata::{self, RealDataError};
use vuma_hyperloop::residency::{
    measure_device_decode, CompressOptions, CompressedBuffer, DeviceCompressed, PinnedCompressed,
    Uploader,
};

/// Issue 16's target for the device decode rate, GB/s of output.
const DECODE_TARGET_GBPS: f64 = 300.0;

/// The data sets: (name, bytes, element width).
fn data_sets(len: usize) -> Vec<(&'static str, Vec<u8>, ElemWidth)> {
    let mut v = Vec::new();
    // A 32 MiB slice of the trained tensors, tiled: the cache holds ~87 MiB of fp32.
    match (
        realdata::trained_f32(32 << 20),
        realdata::trained_bf16(16 << 20),
    ) {
        (Ok(f), Ok(b)) => {
            v.push(("real_bf16", realdata::tile(&b, len), ElemWidth::Bf16));
            v.push(("real_fp32", realdata::tile(&f, len), ElemWidth::F32));
        }
        (Err(RealDataError::Missing), _) | (_, Err(RealDataError::Missing)) => {
            println!(
                "SKIP: real weights: {} (synthetic bf16 weights instead)",
                realdata::MISSING
            );
            v.push((
                "synth_bf16",
                datasets::bf16_weights(len, 1),
                ElemWidth::Bf16,
            ));
        }
        (Err(e), _) | (_, Err(e)) => {
            println!("ERROR: real weights: {e}");
            std::process::exit(1);
        }
    }
    // Real activations: the model's first feed-forward layer on embedded tokens.
    use vuma_hyperloop::activations::{activations_f32, Activation};
    for (name, act) in [
        ("real_relu_f32", Activation::Relu),
        ("real_gelu_f32", Activation::Gelu),
    ] {
        match activations_f32(act, len) {
            Ok(a) if !a.is_empty() => v.push((name, realdata::tile(&a, len), ElemWidth::F32)),
            Ok(_) => println!("SKIP: {name}: no activations"),
            Err(e) => println!("SKIP: {name}: {e}"),
        }
    }
    v.push(("relu_f32", datasets::relu_f32(len, 1), ElemWidth::F32));
    v
}

/// Median GB/s of `bytes` over `iters` runs of `f` (which returns seconds), after two
/// warm-up runs.
fn time_gbps(
    bytes: u64,
    iters: usize,
    mut f: impl FnMut() -> vuma_core::Result<f64>,
) -> vuma_core::Result<f64> {
    f()?;
    f()?;
    let mut t = (0..iters)
        .map(|_| f())
        .collect::<vuma_core::Result<Vec<f64>>>()?;
    Ok(bytes as f64 / median(&mut t) / 1e9)
}

/// A positive integer from the environment variable `key`.
fn env_usize(key: &str) -> Option<usize> {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&m| m > 0)
}

fn options(width: ElemWidth, model: &CostModel) -> CompressOptions {
    let mut o = CompressOptions::with_width(width);
    o.model = model.clone();
    // The library's page size for float-coded data (`CompressOptions::for_device`).
    o.plan.page_size = vuma_hyperloop::page::FLOAT_PAGE_SIZE;
    if let Some(kib) = env_usize("VUMA_HL_PAGE_KIB") {
        o.plan.page_size = kib << 10;
    }
    if let Some(mib) = env_usize("VUMA_HL_CHUNK_MIB") {
        o.chunk_bytes = mib << 20;
    }
    o
}

/// Every figure of one data set on `dev` (see the module docs).
fn bench_set(
    dev: &dyn DynDevice,
    backend: &str,
    model: &CostModel,
    (set, data, width): (&str, &[u8], ElemWidth),
    iters: usize,
) -> vuma_core::Result<()> {
    let name = dev.info().name.clone();
    let n = data.len() as u64;
    let rec = |what: &str, value: f64, unit: &str, baseline: &str, b: f64| {
        Record {
            bench: format!("hyperloop/{backend}/float/{what}/{set}"),
            device: name.clone(),
            value,
            unit: unit.into(),
            baseline: baseline.into(),
            baseline_value: b,
            higher_is_better: true,
        }
        .emit()
    };
    let dst = dev.alloc(n, Placement::DeviceLocal)?;
    let staging = dev.alloc(n, Placement::Staging)?;
    dev.write(staging.as_ref(), 0, data)?;
    let raw_pinned = time_gbps(n, iters, || {
        let t = Instant::now();
        dev.copy(staging.as_ref(), 0, dst.as_ref(), 0, n)?;
        dev.synchronize()?;
        Ok(t.elapsed().as_secs_f64())
    })?;
    drop(staging);
    // (a) Device decode of float pages from device memory.
    let mut up = Uploader::new(dev);
    let mut back = vec![0u8; data.len()];
    let mut forced = options(width, model);
    forced.force = Some(PageDecision::Codec(DeviceCodec::Float));
    let resident = DeviceCompressed::new(dev, &CompressedBuffer::compress(data, &forced)?)?;
    let decode = time_gbps(n, iters, || {
        up.decode_resident(&resident, dst.as_ref())
            .map(|r| r.time_s)
    })?;
    drop(resident);
    dev.read(dst.as_ref(), 0, &mut back)?;
    if back != data {
        return Err(vuma_core::Error::Kernel {
            kernel: "hl_float".into(),
            reason: format!("device-resident decode of {set} delivered wrong bytes"),
        });
    }
    rec("decode", decode, "GB/s", "raw pinned copy", raw_pinned);
    println!(
        "  {set}: hl_float decodes at {decode:.1} GB/s ({:.2}x issue 16's {DECODE_TARGET_GBPS} GB/s target)",
        decode / DECODE_TARGET_GBPS
    );
    // (b) Effective H2D from pinned staging memory: planned, and every page float.
    for (what, force) in [
        ("h2d_pinned", None),
        (
            "h2d_pinned_forced",
            Some(PageDecision::Codec(DeviceCodec::Float)),
        ),
    ] {
        let mut opts = options(width, model);
        opts.force = force;
        let cb = CompressedBuffer::compress(data, &opts)?;
        println!("  {set} {what}: {}", cb.summary());
        if force.is_some() {
            rec("ratio", cb.summary().ratio(), "x", "raw", 1.0);
        }
        let pinned = PinnedCompressed::pin(dev, &cb)?;
        let eff = time_gbps(n, iters, || {
            up.upload_pinned(&pinned, dst.as_ref()).map(|r| r.time_s)
        })?;
        dev.read(dst.as_ref(), 0, &mut back)?;
        if back != data {
            return Err(vuma_core::Error::Kernel {
                kernel: "hl_float".into(),
                reason: format!("{what} of {set} delivered wrong bytes"),
            });
        }
        rec(what, eff, "GB/s", "raw pinned copy", raw_pinned);
    }
    Ok(())
}

fn run(dev: &dyn DynDevice, backend: &str, len: usize, iters: usize) -> vuma_core::Result<()> {
    // Warm the link and the clocks up before the first baseline is timed.
    let n = len as u64;
    let staging = dev.alloc(n, Placement::Staging)?;
    let dst = dev.alloc(n, Placement::DeviceLocal)?;
    dev.fill(staging.as_ref(), 0, n, 1)?;
    for _ in 0..3 {
        dev.copy(staging.as_ref(), 0, dst.as_ref(), 0, n)?;
    }
    dev.synchronize()?;
    drop((staging, dst));
    let mut model = CostModel::for_device(dev.info());
    let sample = len.min(64 << 20);
    measure_device_decode(dev, &mut model, sample, iters)?;
    println!(
        "measured cost model on {}:\n{}",
        dev.info().name,
        model.to_text()
    );
    for set in data_sets(len) {
        bench_set(dev, backend, &model, (set.0, &set.1, set.2), iters)?;
    }
    Ok(())
}

fn main() {
    let quick = std::env::var("VUMA_BENCH_QUICK").is_ok_and(|v| v == "1");
    let (len, iters) = if quick { (8 << 20, 3) } else { (256 << 20, 5) };
    let which = std::env::var("VUMA_BENCH_DEVICE").unwrap_or_default();
    let force_host = which == "host";
    if which == "vulkan" {
        let r = match vuma_vulkan::VulkanDevice::open(0) {
            Ok(dev) => run(&dev, "vulkan", len, iters),
            Err(e) => {
                println!("SKIP: vulkan unavailable: {e}");
                return;
            }
        };
        if let Err(e) = r {
            println!("ERROR: float bench failed: {e}");
            std::process::exit(1);
        }
        return;
    }
    println!(
        "float codec bench: {} MiB per data set, {iters} iterations{}",
        len >> 20,
        if quick { " (quick)" } else { "" }
    );
    let cuda = if force_host {
        None
    } else {
        match vuma_cuda::devices() {
            Ok(mut v) if !v.is_empty() => Some(v.remove(0)),
            Ok(_) => {
                println!("SKIP: cuda unavailable: no CUDA device (the host device instead)");
                None
            }
            Err(e) => {
                println!("SKIP: cuda unavailable: {e} (the host device instead)");
                None
            }
        }
    };
    let r = match cuda.as_ref() {
        Some(dev) => run(dev, "cuda", len, iters),
        None => run(&HostDevice::new(), "host", len, iters),
    };
    if let Err(e) = r {
        println!("ERROR: float bench failed: {e}");
        std::process::exit(1);
    }
}
