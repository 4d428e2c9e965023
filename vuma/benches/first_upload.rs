//! `manager/first_upload` (harness = false): a new buffer made from the user's pageable
//! bytes and uploaded to the device, as a user does with each tensor it hands over, against
//! the best a CUDA user has, measured in the same run. Two variants, each with its records:
//! - `create_buffer_from`, then `prefetch` and wait until it is resident, then drop the
//!   buffer (the host copy is filled, then sent);
//! - `pipelined` (`manager/first_upload/<size>/pipelined`): `create_buffer_from_on`, which
//!   sends what is filled of the host copy while the rest is being filled, then drop it.
//!
//! Per iteration a fresh pageable `Vec<u8>` of real weights (all-MiniLM-L6-v2's fp32
//! tensors from the data cache, tiled to the size; synthetic bytes with a SKIP line when
//! the cache is empty) is made outside the timing; the time runs from `create_buffer_from`
//! to the end of the upload. GB/s: the median of the iterations after the first, and the
//! first separately (it makes the pinned host block that later iterations reuse).
//! Baselines:
//! - a raw pinned copy: `cuMemcpyHtoD` from `cuMemHostAlloc` memory into a device buffer
//!   allocated once (the link's rate);
//! - the user's best alternative: `memcpy` of the fresh bytes into a pinned buffer allocated
//!   once, then that copy (what torch's `pin_memory().to("cuda")` does with its caching
//!   host allocator).
//!
//! Sizes: 64 MiB and 1 GiB; `VUMA_BENCH_QUICK=1`: 16 MiB. Without a CUDA device (or with
//! `VUMA_BENCH_DEVICE=host`) it runs on the host device modelled behind a link, which
//! "pins" as a GPU would (`HostDevice::with_pin_log`), so the path through the pool of
//! pinned blocks runs anywhere; its baselines are a `memcpy` between buffers allocated once
//! and the same after a `memcpy` into a reused buffer, and its figures only show that the
//! path works.

use std::ffi::c_void;
use std::sync::Arc;
use std::time::Instant;

use vuma::UnifiedMemoryManager;
use vuma_core::bench::{median, Record};
use vuma_core::{HostDevice, LinkInfo, PinLog};
use vuma_cuda::cudarc::driver::sys;
use vuma_cuda::CudaDevice;
use vuma_hyperloop::realdata;

type R<T = ()> = Result<T, String>;

const MIB: u64 = 1 << 20;

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

fn gbps(bytes: usize, s: f64) -> f64 {
    bytes as f64 / s / 1e9
}

/// The first and the median of the later samples, in GB/s.
fn first_and_median(bytes: usize, times: &[f64]) -> (f64, f64) {
    let mut rest: Vec<f64> = times[1..].to_vec();
    (gbps(bytes, times[0]), gbps(bytes, median(&mut rest)))
}

/// VUMA's first upload, per iteration: seconds in all, in `create_buffer_from` (the same
/// as in all for the pipelined variant), and the last iteration's upload decision; with
/// the pool's hits and misses at the end.
struct VumaRun {
    total: Vec<f64>,
    create: Vec<f64>,
    decision: String,
    hits: u64,
    misses: u64,
    pinned_mib: u64,
}

fn vuma_first_upload(
    cuda: bool,
    data: &[u8],
    iters: usize,
    pipelined: bool,
) -> R<(VumaRun, String)> {
    let mut builder = UnifiedMemoryManager::builder()
        .vulkan(false)
        .cuda(cuda)
        .host(false);
    if !cuda {
        // The host device modelled behind a link, pinning as a discrete GPU would: the
        // path through the pinned-block pool runs as it does on a GPU.
        builder = builder.device(Arc::new(
            HostDevice::new()
                .behind_link(LinkInfo::from_pcie(5, 16))
                .with_pin_log(Arc::new(PinLog::default())),
        ));
    }
    let vuma = builder.build().map_err(e)?;
    let dev = vuma
        .devices()
        .first()
        .cloned()
        .ok_or("no device in the manager")?;
    let id = dev.info().id;
    let mut run = VumaRun {
        total: Vec::new(),
        create: Vec::new(),
        decision: String::new(),
        hits: 0,
        misses: 0,
        pinned_mib: 0,
    };
    for _ in 0..iters {
        // A fresh pageable source, as a framework's tensor would be.
        let src = data.to_vec();
        let t = Instant::now();
        let (b, res, created) = if pipelined {
            let (b, upload) = vuma.create_buffer_from_on(&src, id).map_err(e)?;
            let created = t.elapsed().as_secs_f64();
            (b, upload.map_err(e)?, created)
        } else {
            let b = vuma.create_buffer_from(&src).map_err(e)?;
            let created = t.elapsed().as_secs_f64();
            let res = vuma.prefetch(&b, id).map_err(e)?.wait().map_err(e)?;
            (b, res, created)
        };
        dev.synchronize().map_err(e)?;
        run.total.push(t.elapsed().as_secs_f64());
        run.create.push(created);
        // The last iteration's (a pooled block, as in steady use).
        run.decision = res
            .transfers
            .last()
            .map_or_else(|| res.reason.clone(), |t| t.decision.clone());
        drop(b);
    }
    let s = vuma.stats().host;
    run.hits = s.pool_hits;
    run.misses = s.pool_misses;
    run.pinned_mib = vuma.memory().pinned_bytes() / MIB;
    Ok((run, dev.info().name.clone()))
}

/// CUDA memory for the baselines, freed on drop.
struct CudaBufs {
    pinned: *mut c_void,
    dev: sys::CUdeviceptr,
    len: usize,
}

impl CudaBufs {
    fn new(len: usize) -> R<Self> {
        let mut b = CudaBufs {
            pinned: std::ptr::null_mut(),
            dev: 0,
            len,
        };
        // SAFETY: valid out-pointers; freed in `drop` (null/0 are skipped there).
        unsafe {
            ck("cuMemHostAlloc", sys::cuMemHostAlloc(&mut b.pinned, len, 0))?;
            ck("cuMemAlloc", sys::cuMemAlloc_v2(&mut b.dev, len))?;
        }
        Ok(b)
    }

    fn pinned(&mut self) -> &mut [u8] {
        // SAFETY: `pinned` holds `len` bytes allocated in `new`, owned by `self`.
        unsafe { std::slice::from_raw_parts_mut(self.pinned as *mut u8, self.len) }
    }

    /// Copies the pinned buffer to the device buffer and waits.
    fn upload(&self) -> R {
        // SAFETY: both ranges hold `len` bytes; the synchronous copy is done on return.
        ck("cuMemcpyHtoD", unsafe {
            sys::cuMemcpyHtoD_v2(self.dev, self.pinned, self.len)
        })?;
        // SAFETY: a context is current (the caller bound one).
        ck("cuCtxSynchronize", unsafe { sys::cuCtxSynchronize() })
    }
}

impl Drop for CudaBufs {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` (or null/0 when that failed); nothing uses them now.
        unsafe {
            if !self.pinned.is_null() {
                sys::cuMemFreeHost(self.pinned);
            }
            if self.dev != 0 {
                sys::cuMemFree_v2(self.dev);
            }
        }
    }
}

/// Baselines on CUDA: (raw pinned copy, memcpy into a reused pinned buffer then copy), in
/// seconds per iteration.
fn cuda_baselines(dev: &CudaDevice, data: &[u8], iters: usize) -> R<(Vec<f64>, Vec<f64>)> {
    dev.bind_to_thread().map_err(e)?;
    let mut bufs = CudaBufs::new(data.len())?;
    bufs.pinned().copy_from_slice(data);
    bufs.upload()?;
    let mut raw = Vec::new();
    for _ in 0..iters {
        let t = Instant::now();
        bufs.upload()?;
        raw.push(t.elapsed().as_secs_f64());
    }
    let mut staged = Vec::new();
    for _ in 0..iters {
        let src = data.to_vec();
        let t = Instant::now();
        bufs.pinned().copy_from_slice(&src);
        bufs.upload()?;
        staged.push(t.elapsed().as_secs_f64());
    }
    Ok((raw, staged))
}

/// The same baselines on the host device: its "link" is a `memcpy` between buffers
/// allocated once.
fn host_baselines(data: &[u8], iters: usize) -> (Vec<f64>, Vec<f64>) {
    let mut staging = data.to_vec();
    let mut dst = vec![0u8; data.len()];
    let mut raw = Vec::new();
    for _ in 0..iters {
        let t = Instant::now();
        dst.copy_from_slice(&staging);
        raw.push(t.elapsed().as_secs_f64());
    }
    let mut staged = Vec::new();
    for _ in 0..iters {
        let src = data.to_vec();
        let t = Instant::now();
        staging.copy_from_slice(&src);
        dst.copy_from_slice(&staging);
        staged.push(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(&dst);
    (raw, staged)
}

fn weights(len: usize) -> Vec<u8> {
    let real = realdata::trained_f32(64 << 20).map_err(|e| e.to_string());
    match real {
        Ok(w) if !w.is_empty() => realdata::tile(&w, len),
        other => {
            let why = other.err().unwrap_or_else(|| "no values".into());
            println!(
                "SKIP: manager/first_upload real weights ({why}; `cargo xtask fetch-data`): synthetic bytes instead"
            );
            (0..len)
                .map(|i| ((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8)
                .collect()
        }
    }
}

fn main() {
    let quick = std::env::var("VUMA_BENCH_QUICK").is_ok_and(|v| v == "1");
    let host_only = std::env::var("VUMA_BENCH_DEVICE").is_ok_and(|v| v == "host");
    let opened = if host_only {
        Err("VUMA_BENCH_DEVICE=host".to_string())
    } else {
        CudaDevice::open(0).map_err(e)
    };
    let cuda = match opened {
        Ok(d) => Some(d),
        Err(err) => {
            println!("manager/first_upload: no CUDA device ({err}); running on the host device");
            None
        }
    };
    let sizes: &[(u64, usize)] = if quick {
        &[(16 * MIB, 5)]
    } else {
        &[(64 * MIB, 12), (1024 * MIB, 6)]
    };
    let mut failed = false;
    for &(size, iters) in sizes {
        let data = weights(size as usize);
        let run = || -> R {
            let (raw, staged) = match &cuda {
                Some(d) => cuda_baselines(d, &data, iters)?,
                None => host_baselines(&data, iters),
            };
            let (v, device) = vuma_first_upload(cuda.is_some(), &data, iters, false)?;
            let (p, _) = vuma_first_upload(cuda.is_some(), &data, iters, true)?;
            let n = data.len();
            let (first, med) = first_and_median(n, &v.total);
            let (create_first, create_med) = first_and_median(n, &v.create);
            let (p_first, p_med) = first_and_median(n, &p.total);
            let (_, raw_med) = first_and_median(n, &raw);
            let (_, staged_med) = first_and_median(n, &staged);
            let (raw_name, staged_name) = if cuda.is_some() {
                (
                    "raw pinned copy (cuMemHostAlloc -> cuMemcpyHtoD)",
                    "memcpy into a reused pinned buffer, then copy (torch pin_memory().to())",
                )
            } else {
                (
                    "memcpy between buffers allocated once",
                    "memcpy into a reused buffer, then memcpy",
                )
            };
            println!(
                "  {} MiB on {device}: vuma create_buffer_from + prefetch {med:.1} GB/s (first {first:.1}; \
                 create_buffer_from alone {create_med:.1}, first {create_first:.1}) = {:.2}x {raw_name} \
                 {raw_med:.1} GB/s, {:.2}x {staged_name} {staged_med:.1} GB/s; pinned-block pool \
                 {} hits / {} misses, {} MiB pinned at the end; upload \"{}\"",
                size / MIB,
                med / raw_med,
                med / staged_med,
                v.hits,
                v.misses,
                v.pinned_mib,
                v.decision
            );
            println!(
                "  {} MiB on {device}: vuma pipelined (create_buffer_from_on) {p_med:.1} GB/s (first \
                 {p_first:.1}) = {:.2}x {raw_name}, {:.2}x {staged_name}; pinned-block pool {} hits / \
                 {} misses; upload \"{}\"",
                size / MIB,
                p_med / raw_med,
                p_med / staged_med,
                p.hits,
                p.misses,
                p.decision
            );
            for (variant, value, first) in [("", med, first), ("/pipelined", p_med, p_first)] {
                for (suffix, value) in [("", value), ("/first", first)] {
                    for (base, b) in [(raw_name, raw_med), (staged_name, staged_med)] {
                        Record {
                            bench: format!(
                                "manager/first_upload/{}MiB{variant}{suffix}",
                                size / MIB
                            ),
                            device: device.clone(),
                            value,
                            unit: "GB/s".into(),
                            baseline: base.into(),
                            baseline_value: b,
                            higher_is_better: true,
                        }
                        .emit();
                    }
                }
            }
            Ok(())
        };
        if let Err(err) = run() {
            eprintln!("ERROR: first_upload {} MiB: {err}", size / MIB);
            failed = true;
        }
    }
    if failed {
        std::process::exit(1);
    }
}
