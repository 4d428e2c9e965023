//! `manager/stream_oversubscribed` (harness = false): a working set four times the device
//! budget streamed through the memory manager (`process_workload`), on real trained weights,
//! against the best alternatives a CUDA user has, measured in the same run.
//!
//! N layers of trained weights (all-MiniLM-L6-v2's fp32 tensors from the data cache, and
//! the same rounded to bf16, tiled to the layer size), a device budget of a quarter of the
//! total, one read-only workload per layer (a light kernel that reads every byte), passes
//! over all layers; GB/s of weights delivered per steady pass (median of the passes after
//! the first). Baselines:
//! - a hand-written loop of the same work: pinned host copies (`cuMemHostAlloc`), as many
//!   device slots as the budget holds, a copy stream and a compute stream, the copy of
//!   layer i+1 overlapping the kernel of layer i (events order slot reuse);
//! - CUDA Unified Memory: the layers in `cuMemAllocManaged` memory, each prefetched to the
//!   device ahead of its kernel and back to the host once its kernel is done, so that no
//!   more than the budget is resident (the GPU holds more than the host's RAM, so the
//!   budget is emulated this way rather than by oversubscription).
//!
//! VUMA runs four ways: with Hyperloop off and on (`Builder::hyperloop`), each as a plain
//! loop of `process_workload` calls and with a look-ahead of one layer
//! (`UnifiedMemoryManager::prefetch` of layer i+1 before the workload of layer i).
//!
//! Sizes: 16 layers of 256 MiB and of 64 MiB; `VUMA_BENCH_QUICK=1`: 8 layers of 16 MiB.
//! Without a CUDA device, or without cached weights (`cargo xtask fetch-data`), it prints a
//! SKIP line and records nothing.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Arc;
use std::time::Instant;

use vuma::{GpuWorkload, UnifiedBuffer, UnifiedMemoryManager, WorkloadKind};
use vuma_core::bench::{median, Record};
use vuma_core::{Device, Kernel, LaunchConfig, MemoryConfig, Scalar, Signature};
use vuma_cuda::cudarc::driver::sys;
use vuma_cuda::CudaDevice;
use vuma_hyperloop::realdata;

type R<T = ()> = Result<T, String>;

const MIB: u64 = 1 << 20;
const THREADS: u32 = 256;

/// Reads `n16` 16-byte words with a grid-stride loop; one xor per thread into `out`.
const READ_XOR: &str = r#"
extern "C" __global__ void read_xor(const uint4* __restrict__ p, unsigned long long n16,
                                    unsigned int* out, unsigned int n_out) {
    unsigned int acc = 0;
    unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n16; i += stride) {
        uint4 v = p[i];
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    unsigned int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t < n_out) out[t] = acc;
}
"#;

fn read_xor() -> Kernel {
    Kernel::new("read_xor")
        .with_signature(
            Signature::new()
                .read("p")
                .u64("n16")
                .write("out")
                .u32("n_out")
                .bound("n16", "p", 16)
                .bound("n_out", "out", 4),
        )
        .with_cuda_source(READ_XOR, "read_xor")
}

fn ck(op: &str, r: sys::CUresult) -> R {
    if r == sys::CUresult::CUDA_SUCCESS {
        Ok(())
    } else {
        Err(format!("{op}: {r:?}"))
    }
}

fn e(err: vuma_core::Error) -> String {
    err.to_string()
}

struct Case {
    dtype: &'static str,
    layer: u64,
    layers: usize,
    data: Vec<u8>,
}

impl Case {
    fn total(&self) -> u64 {
        self.layer * self.layers as u64
    }
    fn budget(&self) -> u64 {
        self.total() / 4
    }
    fn id(&self) -> String {
        format!("{}/{}MiB", self.dtype, self.layer / MIB)
    }
}

const PASSES: usize = 4;

/// GB/s per steady pass through `process_workload`, and the last pass's link bytes and
/// the decisions of its uploads.
fn vuma_stream(c: &Case, grid: u32, hyperloop: bool, prefetch: bool) -> R<(f64, String)> {
    let budgets: HashMap<usize, u64> = [(0, c.budget())].into();
    let vuma = UnifiedMemoryManager::builder()
        .vulkan(false)
        .host(false)
        .hyperloop(hyperloop)
        .memory(MemoryConfig {
            budgets,
            ..MemoryConfig::default()
        })
        .build()
        .map_err(e)?;
    let t = Instant::now();
    let layers: Vec<Arc<UnifiedBuffer>> = (0..c.layers)
        .map(|_| vuma.create_buffer_from(&c.data))
        .collect::<Result<_, _>>()
        .map_err(e)?;
    let created = t.elapsed().as_secs_f64();
    let n_out = grid * THREADS;
    let out = vuma.create_buffer(u64::from(n_out) * 4).map_err(e)?;
    let k = read_xor();
    let work: Vec<GpuWorkload> = layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            GpuWorkload::new(format!("layer-{i}"), WorkloadKind::AiInference, k.clone())
                .complexity(0.9)
                .read(l, 1)
                .scalar(Scalar::U64(c.layer / 16))
                .write(&out)
                .scalar(Scalar::U32(n_out))
                .launch(LaunchConfig {
                    grid: [grid, 1, 1],
                    block: [THREADS, 1, 1],
                    shared_mem_bytes: 0,
                })
        })
        .collect();
    let mut times = Vec::new();
    let mut notes = String::new();
    // Per pass: GB/s, and the bytes of packed host copies made during it (clean copies
    // packed on their first eviction), to show where time goes.
    let mut per_pass = Vec::new();
    for pass in 0..PASSES {
        let packed_before = vuma.stats().host.packed_bytes;
        let t = Instant::now();
        let mut link = 0u64;
        let mut first = String::new();
        let dev = vuma.devices()[0].info().id;
        let mut ahead = if prefetch {
            Some(vuma.prefetch(&layers[0], dev).map_err(e)?)
        } else {
            None
        };
        for (i, w) in work.iter().enumerate() {
            // Look-ahead: the next layer's upload runs while this layer's workload does.
            let this = ahead.take();
            if prefetch && i + 1 < layers.len() {
                ahead = Some(vuma.prefetch(&layers[i + 1], dev).map_err(e)?);
            }
            let r = vuma.process_workload(w).map_err(e)?;
            if let Some(p) = this {
                p.wait().map_err(e)?;
            }
            link += r.link_bytes;
            if first.is_empty() {
                if let Some(tr) = r.buffers.iter().flat_map(|b| &b.transfers).next() {
                    first = format!("{}: {}", tr.kind.as_str(), tr.decision);
                }
            }
        }
        let s = t.elapsed().as_secs_f64();
        if pass > 0 {
            times.push(s);
        }
        let packed = vuma.stats().host.packed_bytes.saturating_sub(packed_before);
        per_pass.push(format!(
            "{:.1} GB/s (+{} MiB packed)",
            c.total() as f64 / s / 1e9,
            packed / MIB
        ));
        let moved = if vuma.devices()[0].info().unified_memory {
            "in shared memory, no link".to_string()
        } else {
            format!("{:.0} MiB over the link", link as f64 / MIB as f64)
        };
        notes = format!(
            "pass {pass}: {:.1} GB/s, {moved}, first upload \"{first}\"",
            c.total() as f64 / s / 1e9
        );
    }
    let st = vuma.stats();
    notes.push_str(&format!("; passes: {}", per_pass.join(", ")));
    notes.push_str(&format!(
        "; created {} layers in {:.2} s, {:.0} MiB of host copies pinned, {} evictions",
        c.layers,
        created,
        vuma.memory().pinned_bytes() as f64 / MIB as f64,
        st.devices.first().map_or(0, |d| d.evictions)
    ));
    Ok((c.total() as f64 / median(&mut times) / 1e9, notes))
}

/// Raw CUDA state for the baselines.
struct Raw {
    f: sys::CUfunction,
    out: sys::CUdeviceptr,
    grid: u32,
    ordinal: i32,
}

impl Raw {
    fn launch(&self, ptr: u64, bytes: u64, stream: sys::CUstream) -> R {
        let (mut p, mut n, mut o, mut no) = (ptr, bytes / 16, self.out, self.grid * THREADS);
        let mut params = [
            &mut p as *mut u64 as *mut c_void,
            &mut n as *mut u64 as *mut c_void,
            &mut o as *mut u64 as *mut c_void,
            &mut no as *mut u32 as *mut c_void,
        ];
        // SAFETY: `read_xor(const uint4*, u64, unsigned*, unsigned)`: `ptr` addresses
        // `bytes` readable bytes, `out` holds `grid * 256` u32, each param a valid slot.
        ck("cuLaunchKernel", unsafe {
            sys::cuLaunchKernel(
                self.f,
                self.grid,
                1,
                1,
                THREADS,
                1,
                1,
                0,
                stream,
                params.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        })
    }
}

fn stream() -> R<sys::CUstream> {
    let mut s: sys::CUstream = std::ptr::null_mut();
    // SAFETY: valid out-pointer.
    ck("cuStreamCreate", unsafe {
        sys::cuStreamCreate(&mut s, sys::CUstream_flags::CU_STREAM_NON_BLOCKING as u32)
    })?;
    Ok(s)
}

fn event() -> R<sys::CUevent> {
    let mut ev: sys::CUevent = std::ptr::null_mut();
    // SAFETY: valid out-pointer.
    ck("cuEventCreate", unsafe {
        sys::cuEventCreate(&mut ev, sys::CUevent_flags::CU_EVENT_DISABLE_TIMING as u32)
    })?;
    Ok(ev)
}

/// The hand-written loop: pinned layers, budget/layer device slots, copy of layer i+1 on
/// the copy stream overlapping the kernel of layer i on the compute stream.
fn hand_loop(c: &Case, raw: &Raw) -> R<f64> {
    let slots = (c.budget() / c.layer).max(2) as usize;
    let (cs, ks) = (stream()?, stream()?);
    let mut hosts = Vec::new();
    let mut devs = Vec::new();
    let mut copied = Vec::new();
    let mut done = Vec::new();
    let result = (|| -> R<f64> {
        for _ in 0..c.layers {
            let mut p: *mut c_void = std::ptr::null_mut();
            // SAFETY: valid out-pointer; freed below.
            ck("cuMemHostAlloc", unsafe {
                sys::cuMemHostAlloc(&mut p, c.layer as usize, 0)
            })?;
            hosts.push(p);
            // SAFETY: `p` holds `layer` bytes just allocated.
            unsafe { std::slice::from_raw_parts_mut(p as *mut u8, c.layer as usize) }
                .copy_from_slice(&c.data);
        }
        for _ in 0..slots {
            let mut d: sys::CUdeviceptr = 0;
            // SAFETY: valid out-pointer; freed below.
            ck("cuMemAlloc", unsafe {
                sys::cuMemAlloc_v2(&mut d, c.layer as usize)
            })?;
            devs.push(d);
            copied.push(event()?);
            done.push(event()?);
        }
        let mut times = Vec::new();
        for pass in 0..PASSES {
            let t = Instant::now();
            for (i, &host) in hosts.iter().enumerate() {
                let s = i % slots;
                // SAFETY: valid events and streams; the copy waits until the kernel that
                // last read slot `s` is done; both ranges hold `layer` bytes.
                unsafe {
                    ck("cuStreamWaitEvent", sys::cuStreamWaitEvent(cs, done[s], 0))?;
                    ck(
                        "cuMemcpyHtoDAsync",
                        sys::cuMemcpyHtoDAsync_v2(devs[s], host, c.layer as usize, cs),
                    )?;
                    ck("cuEventRecord", sys::cuEventRecord(copied[s], cs))?;
                    ck(
                        "cuStreamWaitEvent",
                        sys::cuStreamWaitEvent(ks, copied[s], 0),
                    )?;
                }
                raw.launch(devs[s], c.layer, ks)?;
                // SAFETY: valid event and stream.
                ck("cuEventRecord", unsafe { sys::cuEventRecord(done[s], ks) })?;
            }
            // SAFETY: valid stream.
            ck("cuStreamSynchronize", unsafe {
                sys::cuStreamSynchronize(ks)
            })?;
            if pass > 0 {
                times.push(t.elapsed().as_secs_f64());
            }
        }
        Ok(c.total() as f64 / median(&mut times) / 1e9)
    })();
    // SAFETY: everything below was created above; streams are synchronised first.
    unsafe {
        sys::cuStreamSynchronize(cs);
        sys::cuStreamSynchronize(ks);
        for p in hosts {
            sys::cuMemFreeHost(p);
        }
        for d in devs {
            sys::cuMemFree_v2(d);
        }
        for ev in copied.into_iter().chain(done) {
            sys::cuEventDestroy_v2(ev);
        }
        sys::cuStreamDestroy_v2(cs);
        sys::cuStreamDestroy_v2(ks);
    }
    result
}

/// CUDA Unified Memory: each layer prefetched to the device before its kernel and back to
/// the host after it.
fn uvm(c: &Case, raw: &Raw) -> R<f64> {
    let s = stream()?;
    let mut layers = Vec::new();
    let result = (|| -> R<f64> {
        for _ in 0..c.layers {
            let mut m: sys::CUdeviceptr = 0;
            // SAFETY: valid out-pointer; `total` is a few GiB, far below the card's free
            // memory (never oversubscribe managed memory); freed below.
            ck("cuMemAllocManaged", unsafe {
                sys::cuMemAllocManaged(
                    &mut m,
                    c.layer as usize,
                    sys::CUmemAttach_flags::CU_MEM_ATTACH_GLOBAL as u32,
                )
            })?;
            layers.push(m);
            // SAFETY: managed memory is host-accessible while no kernel runs.
            unsafe { std::slice::from_raw_parts_mut(m as *mut u8, c.layer as usize) }
                .copy_from_slice(&c.data);
        }
        let to_dev = sys::CUmemLocation {
            type_: sys::CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
            id: raw.ordinal,
        };
        let to_host = sys::CUmemLocation {
            type_: sys::CUmemLocationType::CU_MEM_LOCATION_TYPE_HOST,
            id: 0,
        };
        let mut times = Vec::new();
        for pass in 0..PASSES {
            let t = Instant::now();
            for &m in &layers {
                // SAFETY: prefetches of whole managed ranges on a valid stream.
                ck("cuMemPrefetchAsync_v2", unsafe {
                    sys::cuMemPrefetchAsync_v2(m, c.layer as usize, to_dev, 0, s)
                })?;
                raw.launch(m, c.layer, s)?;
                // SAFETY: as above.
                ck("cuMemPrefetchAsync_v2", unsafe {
                    sys::cuMemPrefetchAsync_v2(m, c.layer as usize, to_host, 0, s)
                })?;
            }
            // SAFETY: valid stream.
            ck("cuStreamSynchronize", unsafe {
                sys::cuStreamSynchronize(s)
            })?;
            if pass > 0 {
                times.push(t.elapsed().as_secs_f64());
            }
        }
        Ok(c.total() as f64 / median(&mut times) / 1e9)
    })();
    // SAFETY: allocated above; the stream is synchronised first.
    unsafe {
        sys::cuStreamSynchronize(s);
        for m in layers {
            sys::cuMemFree_v2(m);
        }
        sys::cuStreamDestroy_v2(s);
    }
    result
}

fn main() {
    let quick = std::env::var("VUMA_BENCH_QUICK").is_ok_and(|v| v == "1");
    let dev = match CudaDevice::open(0) {
        Ok(d) => d,
        Err(err) => {
            println!("SKIP: manager/stream_oversubscribed: no CUDA device: {err}");
            return;
        }
    };
    let f32w = match realdata::trained_f32(64 << 20) {
        Ok(v) => v,
        Err(err) => {
            println!("SKIP: manager/stream_oversubscribed: {err}");
            return;
        }
    };
    let bf16w = realdata::f32_bytes_to_bf16(&f32w);
    println!(
        "stream_oversubscribed on {}: real weights {} MiB fp32 / {} MiB bf16 (all-MiniLM-L6-v2), tiled",
        dev.info().name,
        f32w.len() as u64 / MIB,
        bf16w.len() as u64 / MIB
    );
    let name = dev.info().name.clone();
    let grid = dev.info().compute_units * 4;
    let setup = || -> R<Raw> {
        dev.bind_to_thread().map_err(e)?;
        let f = dev.load_function(&read_xor()).map_err(e)?;
        let mut out: sys::CUdeviceptr = 0;
        // SAFETY: valid out-pointer; lives for the whole process.
        ck("cuMemAlloc", unsafe {
            sys::cuMemAlloc_v2(&mut out, (grid * THREADS * 4) as usize)
        })?;
        Ok(Raw {
            f,
            out,
            grid,
            ordinal: dev.info().ordinal as i32,
        })
    };
    let raw = match setup() {
        Ok(r) => r,
        Err(err) => {
            eprintln!("ERROR: stream bench setup: {err}");
            std::process::exit(1);
        }
    };
    let shapes: &[(u64, usize)] = if quick {
        &[(16 * MIB, 8)]
    } else {
        &[(256 * MIB, 16), (64 * MIB, 16)]
    };
    let mut failed = false;
    for &(layer, layers) in shapes {
        for (dtype, w) in [("bf16", &bf16w), ("fp32", &f32w)] {
            let c = Case {
                dtype,
                layer,
                layers,
                data: realdata::tile(w, layer as usize),
            };
            let run = || -> R {
                let hand = hand_loop(&c, &raw)?;
                let um = uvm(&c, &raw)?;
                println!(
                    "  {}: {} layers, budget {} MiB: hand-written pinned loop {hand:.1} GB/s, UVM prefetch {um:.1} GB/s",
                    c.id(),
                    c.layers,
                    c.budget() / MIB
                );
                for (hl, pf, tag) in [
                    (false, false, "hyperloop_off"),
                    (false, true, "hyperloop_off_prefetch"),
                    (true, false, "hyperloop_on"),
                    (true, true, "hyperloop_on_prefetch"),
                ] {
                    dev.bind_to_thread().map_err(e)?;
                    let (v, notes) = vuma_stream(&c, grid, hl, pf)?;
                    println!("    vuma {tag}: {v:.1} GB/s ({notes})");
                    for (base, b) in [
                        (
                            "hand-written pinned loop, copy of i+1 overlapping kernel i",
                            hand,
                        ),
                        ("CUDA Unified Memory, prefetched to and from the device", um),
                    ] {
                        Record {
                            bench: format!("manager/stream_oversubscribed/{}/{tag}", c.id()),
                            device: name.clone(),
                            value: v,
                            unit: "GB/s".into(),
                            baseline: base.into(),
                            baseline_value: b,
                            higher_is_better: true,
                        }
                        .emit();
                    }
                }
                Ok(())
            };
            if let Err(err) = run() {
                eprintln!("ERROR: stream {}: {err}", c.id());
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
