//! `vuma bench`: an in-process benchmark suite on every device the manager found, each figure
//! against a baseline measured in the same run.
//!
//! Per device (the host device and, where present, CUDA and Vulkan devices, all through
//! [`DynDevice`]):
//! - `<backend>/write_pageable/<size>` — pageable bytes into a unified buffer and made
//!   resident on the device (`write` + `acquire`), vs the baseline: on the host a plain
//!   `memcpy` of the same bytes, on a GPU a copy from a `Staging` (pinned) buffer with
//!   `Device::copy` (the pinned path);
//! - `<backend>/read_pageable/<size>` — the device's copy back into pageable memory
//!   (`read` after a device write), vs the same baselines in the other direction;
//! - `<backend>/alloc_free_pool/<size>` — an allocate/free pair from VUMA's pool vs
//!   `Device::alloc` and drop.
//!
//! Sizes are 4 MiB … 256 MiB (up to 64 MiB with `quick`). Records are in the format of
//! [`vuma_core::bench::Record`]; [`vuma_core::bench::report`] prints them and
//! [`vuma_core::bench::svg`] plots them.
//!
//! ```
//! use vuma::{bench, UnifiedMemoryManager};
//!
//! let vuma = UnifiedMemoryManager::builder().cuda(false).vulkan(false).build()?;
//! let opts = bench::BenchOptions { sizes: vec![1 << 20], alloc_sizes: vec![64 << 10], iters: 2 };
//! let mut steps = 0;
//! let recs = bench::run(&vuma, &opts, &mut |_label: &str| steps += 1)?;
//! assert_eq!(recs.len(), 3);
//! assert_eq!(steps, bench::steps(&vuma, &opts));
//! assert!(recs.iter().all(|r| r.ratio().is_finite()));
//! # Ok::<(), vuma_core::Error>(())
//! ```

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vuma_core::bench::{gbps, Record};
use vuma_core::{
    AccessMode, Backend, DeviceStorage, DynDevice, Outcome, Placement, Pool, PoolConfig, Result,
};

use crate::UnifiedMemoryManager;

/// What to measure.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchOptions {
    /// Transfer sizes in bytes.
    pub sizes: Vec<u64>,
    /// Allocation sizes in bytes.
    pub alloc_sizes: Vec<u64>,
    /// Timed repetitions per figure (the median is reported); large transfers use fewer.
    pub iters: usize,
}

impl BenchOptions {
    /// The full suite: 4, 16, 64 and 256 MiB.
    pub fn full() -> Self {
        BenchOptions {
            sizes: vec![4 << 20, 16 << 20, 64 << 20, 256 << 20],
            alloc_sizes: vec![64 << 10, 1 << 20],
            iters: 15,
        }
    }

    /// A quick run: up to 64 MiB, fewer repetitions.
    pub fn quick() -> Self {
        BenchOptions {
            sizes: vec![4 << 20, 16 << 20, 64 << 20],
            alloc_sizes: vec![64 << 10, 1 << 20],
            iters: 5,
        }
    }
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self::full()
    }
}

/// The number of progress steps [`run`] reports for these options on `vuma`.
pub fn steps(vuma: &UnifiedMemoryManager, opts: &BenchOptions) -> u64 {
    (vuma.devices().len() * (opts.sizes.len() * 2 + opts.alloc_sizes.len())) as u64
}

/// A size as it appears in bench ids: `4MiB`, `64KiB`.
pub fn size_id(bytes: u64) -> String {
    vuma_core::human_bytes(bytes).replace(' ', "")
}

/// Median of `iters` timed runs of `f` after one warm-up.
fn time_it(iters: usize, mut f: impl FnMut() -> Result<()>) -> Result<Duration> {
    f()?;
    let mut t = Vec::with_capacity(iters.max(1));
    for _ in 0..iters.max(1) {
        let s = Instant::now();
        f()?;
        t.push(s.elapsed());
    }
    t.sort();
    Ok(t[t.len() / 2])
}

/// Fewer repetitions for larger transfers (about 1 GiB moved per figure at most).
fn iters_for(opts: &BenchOptions, size: u64) -> usize {
    let by_size = ((1u64 << 30) / size.max(1)) as usize;
    opts.iters.min(by_size).max(2)
}

/// Runs the suite; `progress` is called once per step (see [`steps`]) with its label.
pub fn run(
    vuma: &UnifiedMemoryManager,
    opts: &BenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    for (index, dev) in vuma.devices().iter().enumerate() {
        for &size in &opts.sizes {
            let (w, r) = transfer(vuma, index, dev, size, iters_for(opts, size))?;
            progress(&w.bench);
            out.push(w);
            progress(&r.bench);
            out.push(r);
        }
        for &size in &opts.alloc_sizes {
            let rec = alloc_pair(dev, size, opts.iters)?;
            progress(&rec.bench);
            out.push(rec);
        }
    }
    Ok(out)
}

fn pattern(n: u64) -> Vec<u8> {
    (0..n)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// Write and read records of one device and size.
fn transfer(
    vuma: &UnifiedMemoryManager,
    index: usize,
    dev: &Arc<dyn DynDevice>,
    size: u64,
    iters: usize,
) -> Result<(Record, Record)> {
    let info = dev.info();
    let backend = info.backend;
    let src = pattern(size);
    let mut out = vec![0u8; size as usize];
    let mem = vuma.memory();
    let ub = vuma.create_buffer(size)?;

    // VUMA: pageable bytes → unified buffer → resident on the device.
    let vuma_w = time_it(iters, || {
        vuma.write(&ub, 0, &src)?;
        let lease = mem.acquire(&ub, index, AccessMode::Read, 1)?;
        mem.release(lease, Outcome::Completed);
        dev.synchronize()
    })?;
    // VUMA: a device-written buffer back into pageable memory.
    let vuma_r = time_it(iters, || {
        let lease = mem.acquire(&ub, index, AccessMode::Write, 1)?;
        mem.release(lease, Outcome::Completed);
        vuma.read(&ub, 0, &mut out)
    })?;
    if out != src {
        return Err(vuma_core::Error::invalid(format!(
            "bench read-back on {}: the bytes read back differ from those written",
            info.name
        )));
    }
    drop(ub);

    let (base_name_w, base_name_r, base_w, base_r) = if backend == Backend::Host {
        let mut dst = vec![0u8; size as usize];
        let w = time_it(iters, || {
            dst.copy_from_slice(black_box(&src));
            black_box(&mut dst);
            Ok(())
        })?;
        let r = time_it(iters, || {
            out.copy_from_slice(black_box(&dst));
            black_box(&mut out);
            Ok(())
        })?;
        ("memcpy (pageable)", "memcpy (pageable)", w, r)
    } else {
        let local = dev.alloc(size, Placement::DeviceLocal)?;
        let (pinned, name_w, name_r): (Box<dyn vuma_core::DynBuffer>, _, _) =
            if dev.supports(Placement::Staging) {
                (
                    dev.alloc(size, Placement::Staging)?,
                    "Device::copy from Staging (pinned)",
                    "Device::copy to Staging (pinned)",
                )
            } else {
                (
                    dev.alloc(size, Placement::DeviceLocal)?,
                    "Device::copy device-local (no Staging)",
                    "Device::copy device-local (no Staging)",
                )
            };
        dev.write(pinned.as_ref(), 0, &src)?;
        let w = time_it(iters, || {
            dev.copy(pinned.as_ref(), 0, local.as_ref(), 0, size)?;
            dev.synchronize()
        })?;
        let r = time_it(iters, || {
            dev.copy(local.as_ref(), 0, pinned.as_ref(), 0, size)?;
            dev.synchronize()
        })?;
        (name_w, name_r, w, r)
    };
    let rec = |what: &str, v: Duration, base: &str, b: Duration| Record {
        bench: format!("{backend}/{what}/{}", size_id(size)),
        device: info.name.clone(),
        value: gbps(size, v),
        unit: "GB/s".into(),
        baseline: base.into(),
        baseline_value: gbps(size, b),
        higher_is_better: true,
    };
    Ok((
        rec("write_pageable", vuma_w, base_name_w, base_w),
        rec("read_pageable", vuma_r, base_name_r, base_r),
    ))
}

/// Pool alloc/free pair vs `Device::alloc` + drop, in microseconds per pair.
fn alloc_pair(dev: &Arc<dyn DynDevice>, size: u64, iters: usize) -> Result<Record> {
    let info = dev.info();
    let pool = Pool::new(
        DeviceStorage {
            device: dev.clone(),
            placement: Placement::DeviceLocal,
        },
        PoolConfig::default(),
    );
    const BATCH: u32 = 32;
    let per_pair = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(BATCH);
    let pooled = time_it(iters, || {
        for _ in 0..BATCH {
            black_box(pool.alloc(size)?);
        }
        Ok(())
    })?;
    let direct = time_it(iters.min(5), || {
        for _ in 0..BATCH {
            black_box(dev.alloc(size, Placement::DeviceLocal)?);
        }
        dev.synchronize()
    })?;
    Ok(Record {
        bench: format!("{}/alloc_free_pool/{}", info.backend, size_id(size)),
        device: info.name.clone(),
        value: per_pair(pooled),
        unit: "us".into(),
        baseline: "Device::alloc + free".into(),
        baseline_value: per_pair(direct),
        higher_is_better: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_iterations() {
        assert_eq!(size_id(4 << 20), "4MiB");
        assert_eq!(size_id(64 << 10), "64KiB");
        assert_eq!(
            vuma_core::bench::report::parse_size(&size_id(256 << 20)),
            Some(256 << 20)
        );
        let o = BenchOptions::full();
        assert_eq!(iters_for(&o, 4 << 20), 15);
        assert_eq!(iters_for(&o, 256 << 20), 4);
        assert_eq!(iters_for(&o, 1 << 34), 2);
        assert!(BenchOptions::quick().sizes.iter().all(|s| *s <= 64 << 20));
    }
}
