//! CUDA benchmarks: each figure is VUMA's against a raw-driver baseline measured in the same
//! run, emitted as `vuma_core::bench::Record`s (`VUMA_BENCH_OUT` collects the JSON lines).
//!
//! 1. pinned H2D/D2H: `Device::copy` Staging↔DeviceLocal vs raw `cuMemcpy{HtoD,DtoH}Async`;
//! 2. pageable `Vec<u8>`↔device: VUMA's ring `write`/`read` vs plain pageable
//!    `cuMemcpyHtoD`/`DtoH`, and vs the pinned raw copy;
//! 3. small buffers read once / 8 times by a kernel: VUMA's placement choice vs the better
//!    of always-zero-copy and always-copy;
//! 4. allocation pairs: VUMA (`vuma_core::Pool` over the device, and `Device::alloc`) vs
//!    `cuMemAlloc`/`cuMemFree` and `cuMemAllocAsync`/`cuMemFreeAsync`;
//! 5. first-use migration of a 4 GiB buffer vs CUDA Unified Memory (on demand, prefetched),
//!    and eviction back to host vs UVM prefetch to host.
//!
//! Without CUDA it prints a SKIP line and exits 0. `VUMA_BENCH_QUICK=1` shrinks everything;
//! `VUMA_CUDA_BENCH_ONLY=<word>` runs only the groups whose name contains the word.

use std::ffi::c_void;
use std::sync::Arc;
use std::time::Instant;

use vuma_core::bench::{median, Record};
use vuma_core::{
    choose_placement, human_bytes, AccessMode, Arg, Device, DeviceStorage, Kernel, LaunchConfig,
    Placement, PlacementConfig, Pool, PoolConfig, Scalar,
};
use vuma_cuda::cudarc::driver::sys;
use vuma_cuda::{CudaBuffer, CudaDevice};

type R<T = ()> = Result<T, String>;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

const READ_SUM: &str = r#"
extern "C" __global__ void read_sum(const uint4* __restrict__ p, unsigned long long n16, unsigned int* out) {
    unsigned int acc = 0;
    unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n16; i += stride) {
        uint4 v = p[i];
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    out[blockIdx.x * blockDim.x + threadIdx.x] = acc;
}
"#;

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

struct Ctx {
    dev: Arc<CudaDevice>,
    name: String,
    quick: bool,
    stream: sys::CUstream,
    read_sum: Kernel,
    read_fn: sys::CUfunction,
    out: CudaBuffer,
    blocks: u32,
}

impl Ctx {
    fn sync_raw(&self) -> R {
        // SAFETY: our own stream, created in main.
        ck("cuStreamSynchronize", unsafe {
            sys::cuStreamSynchronize(self.stream)
        })
    }
    fn record(
        &self,
        bench: String,
        unit: &str,
        value: f64,
        baseline: &str,
        base: f64,
        higher: bool,
    ) {
        Record {
            bench,
            device: self.name.clone(),
            value,
            unit: unit.into(),
            baseline: baseline.into(),
            baseline_value: base,
            higher_is_better: higher,
        }
        .emit();
    }
    /// Grid for reading `bytes` with `read_sum` (256 threads per block).
    fn grid(&self, bytes: u64) -> u32 {
        ((bytes / 16).div_ceil(256)).clamp(1, u64::from(self.blocks)) as u32
    }
    /// VUMA launch of `read_sum` over `buf`.
    fn launch_read(&self, buf: &CudaBuffer, bytes: u64) -> R {
        let g = self.grid(bytes);
        let cfg = LaunchConfig {
            grid: [g, 1, 1],
            block: [256, 1, 1],
            shared_mem_bytes: 0,
        };
        self.dev
            .launch(
                &self.read_sum,
                &cfg,
                &[
                    Arg::Buffer {
                        buffer: buf,
                        offset: 0,
                        len: bytes,
                        access: AccessMode::Read,
                    },
                    Arg::Scalar(Scalar::U64(bytes / 16)),
                    Arg::Buffer {
                        buffer: &self.out,
                        offset: 0,
                        len: u64::from(g) * 256 * 4,
                        access: AccessMode::Write,
                    },
                ],
            )
            .map_err(e)
    }
    /// Raw launch of `read_sum` over a device address (managed memory).
    fn launch_read_raw(&self, ptr: u64, bytes: u64) -> R {
        let g = self.grid(bytes);
        let mut p = ptr;
        let mut n = bytes / 16;
        let mut o = self.out.device_ptr();
        let mut params = [
            &mut p as *mut u64 as *mut c_void,
            &mut n as *mut u64 as *mut c_void,
            &mut o as *mut u64 as *mut c_void,
        ];
        // SAFETY: `read_sum(const uint4*, u64, unsigned*)` with three 8-byte parameters;
        // `ptr` addresses `bytes` readable bytes and `out` holds `g * 256` u32.
        ck("cuLaunchKernel", unsafe {
            sys::cuLaunchKernel(
                self.read_fn,
                g,
                1,
                1,
                256,
                1,
                1,
                0,
                self.stream,
                params.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        })
    }
}

fn gbps(bytes: u64, s: f64) -> f64 {
    bytes as f64 / s / 1e9
}

fn touched(n: usize, seed: u8) -> Vec<u8> {
    let mut v = vec![0u8; n];
    for (i, c) in v.chunks_mut(4096).enumerate() {
        c.fill((i as u8).wrapping_mul(13).wrapping_add(seed));
    }
    v
}

/// Runs `a` and `b` alternately `iters` times (after one warm-up each) and returns their
/// median times in seconds.
fn ab(iters: usize, mut a: impl FnMut() -> R, mut b: impl FnMut() -> R) -> R<(f64, f64)> {
    a()?;
    b()?;
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..iters.max(1) {
        let t = Instant::now();
        a()?;
        ta.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        b()?;
        tb.push(t.elapsed().as_secs_f64());
    }
    Ok((median(&mut ta), median(&mut tb)))
}

fn iters_for(bytes: u64, quick: bool) -> usize {
    let budget = if quick { 512 * MIB } else { 4 * GIB };
    (budget / bytes).clamp(if quick { 3 } else { 5 }, 50) as usize
}

fn bench_pinned(c: &Ctx) -> R {
    let sizes: &[u64] = if c.quick {
        &[4 * MIB, 64 * MIB]
    } else {
        &[4 * MIB, 64 * MIB, 256 * MIB, GIB]
    };
    for &n in sizes {
        let st = c.dev.alloc(n, Placement::Staging).map_err(e)?;
        let dl = c.dev.alloc(n, Placement::DeviceLocal).map_err(e)?;
        c.dev.fill(&st, 0, n, 0x3c).map_err(e)?;
        let host = st.host_ptr().ok_or("staging has a host pointer")?;
        let it = iters_for(n, c.quick);
        let (v, b) = ab(
            it,
            || {
                c.dev.copy(&st, 0, &dl, 0, n).map_err(e)?;
                c.dev.synchronize().map_err(e)
            },
            || {
                // SAFETY: both ranges are `n` bytes of live allocations.
                ck("cuMemcpyHtoDAsync", unsafe {
                    sys::cuMemcpyHtoDAsync_v2(
                        dl.device_ptr(),
                        host as *const c_void,
                        n as usize,
                        c.stream,
                    )
                })?;
                c.sync_raw()
            },
        )?;
        c.record(
            format!("cuda/h2d_pinned/{}", human_bytes(n)),
            "GB/s",
            gbps(n, v),
            "cuMemcpyHtoDAsync",
            gbps(n, b),
            true,
        );
        let (v, b) = ab(
            it,
            || {
                c.dev.copy(&dl, 0, &st, 0, n).map_err(e)?;
                c.dev.synchronize().map_err(e)
            },
            || {
                // SAFETY: both ranges are `n` bytes of live allocations.
                ck("cuMemcpyDtoHAsync", unsafe {
                    sys::cuMemcpyDtoHAsync_v2(
                        host as *mut c_void,
                        dl.device_ptr(),
                        n as usize,
                        c.stream,
                    )
                })?;
                c.sync_raw()
            },
        )?;
        c.record(
            format!("cuda/d2h_pinned/{}", human_bytes(n)),
            "GB/s",
            gbps(n, v),
            "cuMemcpyDtoHAsync",
            gbps(n, b),
            true,
        );
    }
    Ok(())
}

fn bench_pageable(c: &Ctx) -> R {
    let sizes: &[u64] = if c.quick {
        &[64 * MIB]
    } else {
        &[64 * MIB, GIB]
    };
    for &n in sizes {
        let mut v = touched(n as usize, 1);
        let dl = c.dev.alloc(n, Placement::DeviceLocal).map_err(e)?;
        let st = c.dev.alloc(n, Placement::Staging).map_err(e)?;
        let host = st.host_ptr().ok_or("staging has a host pointer")?;
        let it = iters_for(n, c.quick).min(10);
        let (vu, base) = ab(
            it,
            || {
                c.dev.write(&dl, 0, &v).map_err(e)?;
                c.dev.synchronize().map_err(e)
            },
            || {
                // SAFETY: `v` and `dl` both hold `n` bytes.
                ck("cuMemcpyHtoD", unsafe {
                    sys::cuMemcpyHtoD_v2(dl.device_ptr(), v.as_ptr() as *const c_void, n as usize)
                })
            },
        )?;
        let (_, pinned) = ab(
            it,
            || Ok(()),
            || {
                // SAFETY: both ranges are `n` bytes of live allocations.
                ck("cuMemcpyHtoDAsync", unsafe {
                    sys::cuMemcpyHtoDAsync_v2(
                        dl.device_ptr(),
                        host as *const c_void,
                        n as usize,
                        c.stream,
                    )
                })?;
                c.sync_raw()
            },
        )?;
        let s = human_bytes(n);
        c.record(
            format!("cuda/h2d_pageable/{s}"),
            "GB/s",
            gbps(n, vu),
            "pageable cuMemcpyHtoD",
            gbps(n, base),
            true,
        );
        c.record(
            format!("cuda/h2d_pageable_vs_pinned/{s}"),
            "GB/s",
            gbps(n, vu),
            "pinned cuMemcpyHtoDAsync",
            gbps(n, pinned),
            true,
        );
        // Check the bytes VUMA delivers both ways (a benchmark of wrong bytes is worthless).
        c.dev.fill(&dl, 0, n, 0).map_err(e)?;
        c.dev.write(&dl, 0, &v).map_err(e)?;
        let mut w = vec![1u8; n as usize];
        c.dev.read(&dl, 0, &mut w).map_err(e)?;
        if w != v {
            return Err("pageable write/read round trip delivered wrong bytes".into());
        }
        drop(w);
        let vp = v.as_mut_ptr();
        let (vu, base) = ab(
            it,
            || c.dev.read(&dl, 0, &mut v).map_err(e),
            || {
                // SAFETY: `v` (through `vp`, not used concurrently) and `dl` hold `n` bytes.
                ck("cuMemcpyDtoH", unsafe {
                    sys::cuMemcpyDtoH_v2(vp as *mut c_void, dl.device_ptr(), n as usize)
                })
            },
        )?;
        let (_, pinned) = ab(
            it,
            || Ok(()),
            || {
                // SAFETY: both ranges are `n` bytes of live allocations.
                ck("cuMemcpyDtoHAsync", unsafe {
                    sys::cuMemcpyDtoHAsync_v2(
                        host as *mut c_void,
                        dl.device_ptr(),
                        n as usize,
                        c.stream,
                    )
                })?;
                c.sync_raw()
            },
        )?;
        c.record(
            format!("cuda/d2h_pageable/{s}"),
            "GB/s",
            gbps(n, vu),
            "pageable cuMemcpyDtoH",
            gbps(n, base),
            true,
        );
        c.record(
            format!("cuda/d2h_pageable_vs_pinned/{s}"),
            "GB/s",
            gbps(n, vu),
            "pinned cuMemcpyDtoHAsync",
            gbps(n, pinned),
            true,
        );
    }
    Ok(())
}

fn bench_small(c: &Ctx) -> R {
    let sizes: &[u64] = if c.quick {
        &[4 * KIB, 64 * KIB, MIB]
    } else {
        &[4 * KIB, 64 * KIB, MIB, 16 * MIB, 64 * MIB]
    };
    let cfg = PlacementConfig::default();
    for &n in sizes {
        let data = touched(n as usize, 7);
        let zc = c.dev.alloc(n, Placement::HostMapped).map_err(e)?;
        let dl = c.dev.alloc(n, Placement::DeviceLocal).map_err(e)?;
        for reuse in [1u32, 8] {
            let run = |b: &CudaBuffer| -> R {
                c.dev.write(b, 0, &data).map_err(e)?;
                for _ in 0..reuse {
                    c.launch_read(b, n)?;
                }
                c.dev.synchronize().map_err(e)
            };
            let decision = choose_placement(n, reuse, c.dev.info(), &cfg);
            let chosen = match decision.placement {
                Placement::HostMapped => &zc,
                _ => &dl,
            };
            let it = if n >= 16 * MIB {
                20
            } else if c.quick {
                30
            } else {
                200
            };
            let mut t = [Vec::new(), Vec::new(), Vec::new()];
            for b in [&zc, &dl, chosen] {
                run(b)?;
            }
            for _ in 0..it {
                for (k, b) in [&zc, &dl, chosen].into_iter().enumerate() {
                    let s = Instant::now();
                    run(b)?;
                    t[k].push(s.elapsed().as_secs_f64() * 1e6);
                }
            }
            let [mut tz, mut tc, mut tv] = t;
            let (tz, tc, tv) = (median(&mut tz), median(&mut tc), median(&mut tv));
            let best = tz.min(tc);
            println!(
                "  small {} read {reuse}x: zero-copy {tz:.1} us, copy {tc:.1} us, VUMA chose {} ({})",
                human_bytes(n),
                decision.placement.as_str(),
                decision.reason
            );
            c.record(
                format!("cuda/small_read{reuse}x/{}", human_bytes(n)),
                "us",
                tv,
                if tz <= tc {
                    "best of: always-zero-copy"
                } else {
                    "best of: always-copy"
                },
                best,
                false,
            );
        }
    }
    Ok(())
}

fn bench_alloc(c: &Ctx) -> R {
    let pool = Pool::new(
        DeviceStorage {
            device: c.dev.clone() as Arc<dyn vuma_core::DynDevice>,
            placement: Placement::DeviceLocal,
        },
        PoolConfig::default(),
    );
    for n in [64 * KIB, MIB] {
        let iters = if c.quick { 200 } else { 2000 };
        let sample = |iters: usize, f: &mut dyn FnMut() -> R| -> R<f64> {
            for _ in 0..10 {
                f()?;
            }
            let mut t = Vec::with_capacity(iters);
            for _ in 0..iters {
                let s = Instant::now();
                f()?;
                t.push(s.elapsed().as_secs_f64() * 1e6);
            }
            Ok(median(&mut t))
        };
        let t_pool = sample(iters, &mut || {
            let a = pool.alloc(n).map_err(e)?;
            drop(a);
            Ok(())
        })?;
        let t_dev = sample(iters, &mut || {
            let b = c.dev.alloc(n, Placement::DeviceLocal).map_err(e)?;
            drop(b);
            Ok(())
        })?;
        let t_sync = sample(iters / 10, &mut || {
            let mut p = 0;
            // SAFETY: valid out-pointer; freed right after.
            ck("cuMemAlloc", unsafe {
                sys::cuMemAlloc_v2(&mut p, n as usize)
            })?;
            // SAFETY: allocated above.
            ck("cuMemFree", unsafe { sys::cuMemFree_v2(p) })
        })?;
        let t_async = sample(iters, &mut || {
            let mut p = 0;
            // SAFETY: valid out-pointer and stream; freed right after on the same stream.
            ck("cuMemAllocAsync", unsafe {
                sys::cuMemAllocAsync(&mut p, n as usize, c.stream)
            })?;
            // SAFETY: allocated above on this stream.
            ck("cuMemFreeAsync", unsafe {
                sys::cuMemFreeAsync(p, c.stream)
            })
        })?;
        c.sync_raw()?;
        let s = human_bytes(n);
        c.record(
            format!("cuda/alloc_pair_pool/{s}"),
            "us",
            t_pool,
            "cuMemAlloc+cuMemFree",
            t_sync,
            false,
        );
        c.record(
            format!("cuda/alloc_pair_pool_vs_async/{s}"),
            "us",
            t_pool,
            "cuMemAllocAsync+cuMemFreeAsync",
            t_async,
            false,
        );
        c.record(
            format!("cuda/alloc_pair_device/{s}"),
            "us",
            t_dev,
            "cuMemAllocAsync+cuMemFreeAsync",
            t_async,
            false,
        );
    }
    c.dev.synchronize().map_err(e)
}

fn bench_migration(c: &Ctx) -> R {
    let n = if c.quick { 256 * MIB } else { 4 * GIB };
    let s = human_bytes(n);
    let mut host = touched(n as usize, 3);
    // VUMA: explicit lazy migration through the staging ring, then a kernel reads it.
    let dl = c.dev.alloc(n, Placement::DeviceLocal).map_err(e)?;
    c.dev.synchronize().map_err(e)?;
    let t = Instant::now();
    c.dev.write(&dl, 0, &host).map_err(e)?;
    c.launch_read(&dl, n)?;
    c.dev.synchronize().map_err(e)?;
    let vuma_first = gbps(n, t.elapsed().as_secs_f64());
    let t = Instant::now();
    c.dev.read(&dl, 0, &mut host).map_err(e)?;
    let vuma_evict = gbps(n, t.elapsed().as_secs_f64());
    drop(dl);
    c.dev.synchronize().map_err(e)?;

    // CUDA Unified Memory (kept at 4 GiB, far below free VRAM).
    let mut m: sys::CUdeviceptr = 0;
    // SAFETY: valid out-pointer; freed at the end of this function.
    ck("cuMemAllocManaged", unsafe {
        sys::cuMemAllocManaged(
            &mut m,
            n as usize,
            sys::CUmemAttach_flags::CU_MEM_ATTACH_GLOBAL as u32,
        )
    })?;
    let result = (|| -> R<(f64, f64, f64)> {
        // SAFETY: managed memory is host-accessible while no kernel runs; `n` bytes.
        let mh = unsafe { std::slice::from_raw_parts_mut(m as *mut u8, n as usize) };
        mh.copy_from_slice(&host);
        let t = Instant::now();
        c.launch_read_raw(m, n)?;
        c.sync_raw()?;
        let on_demand = gbps(n, t.elapsed().as_secs_f64());
        let to_host = sys::CUmemLocation {
            type_: sys::CUmemLocationType::CU_MEM_LOCATION_TYPE_HOST,
            id: 0,
        };
        let t = Instant::now();
        // SAFETY: prefetch of the whole managed range to host memory.
        ck("cuMemPrefetchAsync_v2", unsafe {
            sys::cuMemPrefetchAsync_v2(m, n as usize, to_host, 0, c.stream)
        })?;
        c.sync_raw()?;
        let evict = gbps(n, t.elapsed().as_secs_f64());
        mh.copy_from_slice(&host);
        let to_dev = sys::CUmemLocation {
            type_: sys::CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
            id: c.dev.info().ordinal as i32,
        };
        let t = Instant::now();
        // SAFETY: prefetch of the whole managed range to the device.
        ck("cuMemPrefetchAsync_v2", unsafe {
            sys::cuMemPrefetchAsync_v2(m, n as usize, to_dev, 0, c.stream)
        })?;
        c.launch_read_raw(m, n)?;
        c.sync_raw()?;
        let prefetched = gbps(n, t.elapsed().as_secs_f64());
        Ok((on_demand, evict, prefetched))
    })();
    // SAFETY: allocated above; no work uses it after the syncs (or after an error, below).
    let _ = c.sync_raw();
    // SAFETY: allocated above by cuMemAllocManaged.
    ck("cuMemFree", unsafe { sys::cuMemFree_v2(m) })?;
    let (on_demand, evict, prefetched) = result?;
    c.record(
        format!("cuda/first_use_migration/{s}"),
        "GB/s",
        vuma_first,
        "UVM on-demand page faults",
        on_demand,
        true,
    );
    c.record(
        format!("cuda/first_use_migration_vs_prefetch/{s}"),
        "GB/s",
        vuma_first,
        "UVM cuMemPrefetchAsync_v2 + kernel",
        prefetched,
        true,
    );
    c.record(
        format!("cuda/evict_to_host/{s}"),
        "GB/s",
        vuma_evict,
        "UVM cuMemPrefetchAsync_v2 to host",
        evict,
        true,
    );
    Ok(())
}

fn main() {
    let quick = std::env::var("VUMA_BENCH_QUICK").is_ok_and(|v| v == "1");
    let dev = match CudaDevice::open(0) {
        Ok(d) => Arc::new(d),
        Err(err) => {
            println!("SKIP: cuda benchmarks: no CUDA device: {err}");
            return;
        }
    };
    let info = dev.info();
    println!(
        "cuda benchmarks on {} (sm_{}{}, {} SMs, L2 {}, link {:?}){}",
        info.name,
        info.compute_capability.map_or(0, |c| c.0),
        info.compute_capability.map_or(0, |c| c.1),
        info.compute_units,
        human_bytes(info.l2_bytes),
        info.host_link,
        if quick { " [quick]" } else { "" }
    );
    let setup = || -> R<Ctx> {
        dev.bind_to_thread().map_err(e)?;
        let mut stream: sys::CUstream = std::ptr::null_mut();
        // SAFETY: valid out-pointer; lives for the whole process.
        ck("cuStreamCreate", unsafe {
            sys::cuStreamCreate(
                &mut stream,
                sys::CUstream_flags::CU_STREAM_NON_BLOCKING as u32,
            )
        })?;
        let read_sum = Kernel::new("read_sum").with_cuda_source(READ_SUM, "read_sum");
        let read_fn = dev.load_function(&read_sum).map_err(e)?;
        let blocks = dev.info().compute_units * 8;
        let out = dev
            .alloc(u64::from(blocks) * 256 * 4, Placement::DeviceLocal)
            .map_err(e)?;
        Ok(Ctx {
            dev: dev.clone(),
            name: dev.info().name.clone(),
            quick,
            stream,
            read_sum,
            read_fn,
            out,
            blocks,
        })
    };
    let c = match setup() {
        Ok(c) => c,
        Err(err) => {
            eprintln!("ERROR: cuda bench setup: {err}");
            std::process::exit(1);
        }
    };
    let only = std::env::var("VUMA_CUDA_BENCH_ONLY").unwrap_or_default();
    println!("staging ring: {:?} (slots, bytes)", dev.ring_layout());
    let mut failed = false;
    for (name, f) in [
        ("pinned transfers", bench_pinned as fn(&Ctx) -> R),
        ("pageable transfers", bench_pageable),
        ("small buffers", bench_small),
        ("allocation", bench_alloc),
        ("first-use migration", bench_migration),
    ] {
        if !only.is_empty() && !name.contains(only.as_str()) {
            continue;
        }
        println!("== {name}");
        let t = Instant::now();
        if let Err(err) = f(&c) {
            eprintln!("ERROR: {name}: {err}");
            failed = true;
        }
        println!("   ({:.1} s)", t.elapsed().as_secs_f64());
    }
    if failed {
        std::process::exit(1);
    }
}
