//! The memory manager's own migrations through PCIe Hyperloop (harness = false): the same
//! `MemoryManager` with [`HyperloopPath`] as its transfer path and without one (plain
//! device copies), measured in the same run. Every figure is a `vuma_core::bench::Record`.
//!
//! Per device (CUDA and Vulkan, each when present; otherwise a SKIP line) and per data set
//! (256 MiB each; 16 MiB with `VUMA_BENCH_QUICK=1`):
//! - `manager/<backend>/evict_roundtrip/<ds>`: a buffer whose only valid copy is on the
//!   device is written back (`evict_all`) and made resident again for read-write
//!   (`acquire`), synchronised: buffer GB/s per round trip, vs the manager without a path;
//! - `manager/<backend>/upload/<ds>`: a buffer written on the host is made resident
//!   (`acquire` for reading), synchronised: GB/s vs the manager without a path.
//!
//! Each row prints the path's decisions (from the `TransferReport`s).

use std::sync::Arc;
use std::time::Instant;

use vuma_core::bench::{median, Record};
use vuma_core::{
    AccessMode, DynDevice, MemoryConfig, MemoryManager, Outcome, TransferPath, TransferReport,
};
use vuma_hyperloop::datasets::Dataset;
use vuma_hyperloop::HyperloopPath;

fn manager(dev: &Arc<dyn DynDevice>, hyperloop: bool) -> MemoryManager {
    let config = MemoryConfig {
        transfer: hyperloop.then(|| Arc::new(HyperloopPath::default()) as Arc<dyn TransferPath>),
        ..MemoryConfig::default()
    };
    MemoryManager::new(vec![dev.clone()], config)
}

fn decisions(ts: &[TransferReport]) -> String {
    ts.iter()
        .map(|t| {
            format!(
                "{} {:.1}/{:.1} MiB: {}",
                t.kind.as_str(),
                t.link_bytes as f64 / 1048576.0,
                t.logical_bytes as f64 / 1048576.0,
                t.decision
            )
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Median seconds of a write-back + read-write acquire round trip, and the last decisions.
fn roundtrip(
    dev: &Arc<dyn DynDevice>,
    hyperloop: bool,
    data: &[u8],
    iters: usize,
) -> vuma_core::Result<(f64, String)> {
    let mm = manager(dev, hyperloop);
    let b = mm.create(data.len() as u64)?;
    let l = mm.acquire(&b, 0, AccessMode::Write, 1)?;
    dev.write(l.block(), l.offset(), data)?;
    mm.release(l, Outcome::Completed);
    let mut t = Vec::new();
    let mut last = String::new();
    for i in 0..=iters {
        dev.synchronize()?;
        let t0 = Instant::now();
        mm.evict_all(0)?;
        let l = mm.acquire(&b, 0, AccessMode::ReadWrite, 1)?;
        dev.synchronize()?;
        let s = t0.elapsed().as_secs_f64();
        last = decisions(&l.residency.transfers);
        mm.release(l, Outcome::Completed);
        if i > 0 {
            t.push(s);
        }
    }
    // Exactness: the last round trip delivered the bytes.
    if mm.to_vec(&b)? != data {
        return Err(vuma_core::Error::invalid("round trip changed the bytes"));
    }
    Ok((median(&mut t), last))
}

/// Median seconds of making a host-written buffer resident for reading.
fn upload(
    dev: &Arc<dyn DynDevice>,
    hyperloop: bool,
    data: &[u8],
    iters: usize,
) -> vuma_core::Result<(f64, String)> {
    let mm = manager(dev, hyperloop);
    let b = mm.create_from(data)?;
    let mut t = Vec::new();
    let mut last = String::new();
    for i in 0..=iters {
        mm.write(&b, 0, data)?;
        dev.synchronize()?;
        let t0 = Instant::now();
        let l = mm.acquire(&b, 0, AccessMode::Read, 1)?;
        dev.synchronize()?;
        let s = t0.elapsed().as_secs_f64();
        if i == iters {
            let mut back = vec![0u8; data.len()];
            dev.read(l.block(), l.offset(), &mut back)?;
            if back != data {
                return Err(vuma_core::Error::invalid("upload changed the bytes"));
            }
        }
        last = decisions(&l.residency.transfers);
        mm.release(l, Outcome::Completed);
        if i > 0 {
            t.push(s);
        }
    }
    Ok((median(&mut t), last))
}

fn bench_device(dev: Arc<dyn DynDevice>, backend: &str, len: usize, iters: usize) {
    let name = dev.info().name.clone();
    for ds in Dataset::ALL {
        let data = ds.generate(len, 1);
        let gb = len as f64 / 1e9;
        for (what, f) in [
            ("evict_roundtrip", roundtrip as fn(_, _, _, _) -> _),
            ("upload", upload),
        ] {
            let run = |hl| f(&dev, hl, &data[..], iters);
            match (run(false), run(true)) {
                (Ok((plain, _)), Ok((hl, why))) => {
                    println!("  {what}/{}: {why}", ds.name());
                    Record {
                        bench: format!("manager/{backend}/{what}/{}", ds.name()),
                        device: name.clone(),
                        value: gb / hl,
                        unit: "GB/s".into(),
                        baseline: "same manager, plain copies".into(),
                        baseline_value: gb / plain,
                        higher_is_better: true,
                    }
                    .emit();
                }
                (Err(e), _) | (_, Err(e)) => {
                    println!("ERROR: manager/{backend}/{what}/{}: {e}", ds.name());
                    std::process::exit(1);
                }
            }
        }
    }
}

fn main() {
    let quick = std::env::var("VUMA_BENCH_QUICK").is_ok_and(|v| v == "1");
    let len = if quick { 16 << 20 } else { 256 << 20 };
    let iters = if quick { 3 } else { 5 };
    println!(
        "manager bench: {} MiB per data set{}",
        len >> 20,
        if quick { " (quick)" } else { "" }
    );
    match vuma_cuda::devices() {
        Ok(mut v) if !v.is_empty() => bench_device(Arc::new(v.remove(0)), "cuda", len, iters),
        Ok(_) => println!("SKIP: cuda unavailable: no CUDA device"),
        Err(e) => println!("SKIP: cuda unavailable: {e}"),
    }
    match vuma_vulkan::VulkanDevice::open(0) {
        Ok(d) => bench_device(Arc::new(d), "vulkan", len, iters),
        Err(e) => println!("SKIP: vulkan unavailable: {e}"),
    }
}
