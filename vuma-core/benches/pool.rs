//! Allocation benchmark on the host: a pool alloc+free pair vs the system allocator and vs a
//! device allocation without a pool. Records p50 per pair (µs).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use vuma_core::bench::{median, Record};
use vuma_core::{Device, DeviceStorage, DynDevice, HostDevice, Placement, Pool, PoolConfig};

fn p50_pair(iters: usize, mut f: impl FnMut()) -> f64 {
    // Time batches of 64 pairs so the clock's resolution does not dominate.
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        for _ in 0..64 {
            f();
        }
        samples.push(t.elapsed().as_secs_f64() * 1e6 / 64.0);
    }
    median(&mut samples)
}

fn main() {
    let quick = std::env::var("VUMA_BENCH_QUICK").is_ok_and(|v| v == "1");
    let iters = if quick { 200 } else { 2000 };
    let host: Arc<dyn DynDevice> = Arc::new(HostDevice::new());
    let name = host.info().name.clone();
    let pool = Pool::new(
        DeviceStorage {
            device: host.clone(),
            placement: Placement::DeviceLocal,
        },
        PoolConfig::default(),
    );
    let direct = HostDevice::new();
    for size in [256u64, 4096, 1 << 20] {
        // Warm the pool's free list for this class.
        drop(pool.alloc(size).expect("warm"));
        let vuma = p50_pair(iters, || {
            black_box(pool.alloc(black_box(size)).expect("pool alloc"));
        });
        let sys = p50_pair(iters, || {
            black_box(vec![0u8; black_box(size as usize)]);
        });
        let dev = p50_pair(iters / 4, || {
            black_box(
                Device::alloc(&direct, black_box(size), Placement::DeviceLocal).expect("alloc"),
            );
        });
        let label = vuma_core::human_bytes(size).replace(' ', "");
        Record {
            bench: format!("core/pool_pair/{label}"),
            device: name.clone(),
            value: vuma,
            unit: "us".into(),
            baseline: "system allocator (zeroed Vec)".into(),
            baseline_value: sys,
            higher_is_better: false,
        }
        .emit();
        Record {
            bench: format!("core/pool_pair_vs_device_alloc/{label}"),
            device: name.clone(),
            value: vuma,
            unit: "us".into(),
            baseline: "HostDevice::alloc+drop".into(),
            baseline_value: dev,
            higher_is_better: false,
        }
        .emit();
    }
}
