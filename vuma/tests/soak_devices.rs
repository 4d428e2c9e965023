//! Soak of the whole stack on the real devices of this machine: the CUDA and Vulkan GPUs
//! (lavapipe in CI) and the host, through one [`UnifiedMemoryManager`] whose device budgets
//! are capped at 64 MiB (device-local copies count; zero-copy copies live in host memory)
//! so that migration, eviction and write-back happen all the time.
//! Several threads create buffers of random size (4 KiB – 16 MiB), run workloads of random
//! kind, complexity and priority on them (the scheduler places each), write host ranges in
//! between and read everything back; every byte is checked against a host model. At the end
//! no buffer and no byte is in use anywhere, and the process's RSS at start and end is
//! printed.
//!
//! Duration: `VUMA_SOAK_SECS` (default 5). With `VUMA_REQUIRE_HW=1` the run must have placed
//! work on a GPU. Long run on a GPU machine:
//! `VUMA_SOAK_SECS=120 cargo test -p vuma --test soak_devices --release -- --nocapture`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vuma::{kernels, GpuWorkload, Priority, UnifiedBuffer, UnifiedMemoryManager, WorkloadKind};
use vuma_core::{Backend, MemoryConfig, Scalar};

const THREADS: usize = 6;
const BUDGET: u64 = 64 << 20;
const KINDS: [WorkloadKind; 5] = [
    WorkloadKind::Ui,
    WorkloadKind::LightCompute,
    WorkloadKind::HeavyCompute,
    WorkloadKind::AiInference,
    WorkloadKind::Fp32Heavy,
];
const PRIORITIES: [Priority; 4] = [
    Priority::Low,
    Priority::Normal,
    Priority::High,
    Priority::Realtime,
];

/// xorshift64*: deterministic per thread, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn soak_secs() -> f64 {
    std::env::var("VUMA_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s: &f64| s.is_finite() && *s > 0.0)
        .unwrap_or(5.0)
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// One live buffer of a thread and its model (u32 words).
struct Live {
    buf: Arc<UnifiedBuffer>,
    model: Vec<u32>,
}

fn bytes_of(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn check(vuma: &UnifiedMemoryManager, l: &Live, what: &str) {
    let got = vuma.to_vec(&l.buf).expect("read back");
    let want = bytes_of(&l.model);
    if got != want {
        let first = got.iter().zip(&want).position(|(a, b)| a != b);
        panic!(
            "{what}: {} bytes differ from the model (first at byte {first:?})",
            got.iter().zip(&want).filter(|(a, b)| a != b).count()
        );
    }
}

#[derive(Default)]
struct Totals {
    workloads: u64,
    retries: u64,
    host_writes: u64,
    checks: u64,
    bytes_created: u64,
    by_device: BTreeMap<String, u64>,
}

fn worker(vuma: &UnifiedMemoryManager, seed: u64, deadline: Instant, totals: &Mutex<Totals>) {
    let mut rng = Rng(seed | 1);
    let mut live: Vec<Live> = Vec::new();
    let mut t = Totals::default();
    while Instant::now() < deadline {
        match rng.below(10) {
            // Create (at most 4 live buffers per thread).
            0..=2 if live.len() < 4 => {
                let words = (1024 + rng.below((4 << 20) - 1024)) as usize;
                let model: Vec<u32> = (0..words).map(|_| rng.next() as u32).collect();
                let buf = vuma
                    .create_buffer_from(&bytes_of(&model))
                    .expect("create buffer");
                t.bytes_created += words as u64 * 4;
                live.push(Live { buf, model });
            }
            // Drop one.
            3 if !live.is_empty() => {
                let i = rng.below(live.len() as u64) as usize;
                let l = live.swap_remove(i);
                if rng.below(2) == 0 {
                    check(vuma, &l, "before drop");
                    t.checks += 1;
                }
            }
            // Host write of a random word range.
            4 if !live.is_empty() => {
                let i = rng.below(live.len() as u64) as usize;
                let l = &mut live[i];
                let start = rng.below(l.model.len() as u64) as usize;
                let len = 1 + rng.below((l.model.len() - start) as u64) as usize;
                let new: Vec<u32> = (0..len).map(|_| rng.next() as u32).collect();
                vuma.write(&l.buf, start as u64 * 4, &bytes_of(&new))
                    .expect("host write");
                l.model[start..start + len].copy_from_slice(&new);
                t.host_writes += 1;
            }
            // Read back and compare.
            5 if !live.is_empty() => {
                let i = rng.below(live.len() as u64) as usize;
                check(vuma, &live[i], "read back");
                t.checks += 1;
            }
            // A workload: buf = buf * mul + add, placed by the scheduler.
            _ if !live.is_empty() => {
                let i = rng.below(live.len() as u64) as usize;
                let l = &mut live[i];
                let n = l.model.len() as u32;
                let (mul, add) = (rng.next() as u32 | 1, rng.next() as u32);
                let kind = KINDS[rng.below(KINDS.len() as u64) as usize].clone();
                let w = GpuWorkload::new(format!("soak-{seed}"), kind, kernels::scale_u32())
                    .complexity(rng.below(101) as f32 / 100.0)
                    .priority(PRIORITIES[rng.below(4) as usize])
                    .read_write(&l.buf, 1 + rng.below(3) as u32)
                    .scalar(Scalar::U32(n))
                    .scalar(Scalar::U32(mul))
                    .scalar(Scalar::U32(add))
                    .launch(kernels::launch_for(u64::from(n)));
                // The manager waits (up to its `budget_wait`) while the device's budget is
                // full of copies other threads hold; past that a full device is a transient
                // error (the workload did not run, its data is intact): retry as a caller would.
                let mut tries = 0u32;
                let r = loop {
                    match vuma.process_workload(&w) {
                        Ok(r) => break r,
                        Err(e) if e.is_transient() && tries < 10_000 => {
                            tries += 1;
                            t.retries += 1;
                            std::thread::sleep(Duration::from_micros(200));
                        }
                        Err(e) => panic!("workload failed after {tries} retries: {e}"),
                    }
                };
                for v in &mut l.model {
                    *v = v.wrapping_mul(mul).wrapping_add(add);
                }
                t.workloads += 1;
                *t.by_device
                    .entry(format!("{} [{}]", r.device, r.backend))
                    .or_default() += 1;
            }
            _ => {}
        }
    }
    for l in &live {
        check(vuma, l, "at the end");
        t.checks += 1;
    }
    let mut all = totals.lock().unwrap();
    all.workloads += t.workloads;
    all.retries += t.retries;
    all.host_writes += t.host_writes;
    all.checks += t.checks;
    all.bytes_created += t.bytes_created;
    for (k, v) in t.by_device {
        *all.by_device.entry(k).or_default() += v;
    }
}

#[test]
fn soak_on_every_device() {
    let rss_start = rss_mib();
    let budgets = (0..16).map(|i| (i, BUDGET)).collect();
    let vuma = UnifiedMemoryManager::builder()
        .memory(MemoryConfig {
            budgets,
            ..MemoryConfig::default()
        })
        .build()
        .expect("manager");
    let names: Vec<String> = vuma
        .devices()
        .iter()
        .map(|d| format!("{} [{}]", d.info().name, d.info().backend))
        .collect();
    println!("devices: {}", names.join(", "));
    for b in vuma.backends() {
        if let Some(e) = &b.error {
            println!("backend {} absent: {e}", b.backend);
        }
    }
    let secs = soak_secs();
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let totals = Mutex::new(Totals::default());
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (vuma, totals) = (&vuma, &totals);
            s.spawn(move || worker(vuma, 0x5eed_0000 + t as u64 * 7919, deadline, totals));
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let st = vuma.stats();
    let t = totals.into_inner().unwrap();
    println!(
        "soak: {elapsed:.1} s, {THREADS} threads, {} workloads ({} transient budget retries), {} host writes, {} checks, {:.1} GiB created",
        t.workloads,
        t.retries,
        t.host_writes,
        t.checks,
        t.bytes_created as f64 / (1u64 << 30) as f64
    );
    for (dev, n) in &t.by_device {
        println!("  {n:>7} workloads on {dev}");
    }
    for (i, d) in st.devices.iter().enumerate() {
        println!(
            "  {}: peak {:.1} MiB, {} allocations, {} evictions, {:.1} MiB written back, in use {} B",
            names[i],
            d.peak_bytes as f64 / (1 << 20) as f64,
            d.allocations,
            d.evictions,
            d.writeback_bytes as f64 / (1 << 20) as f64,
            d.bytes_in_use
        );
    }
    let rss_live = rss_mib();
    assert!(t.workloads > 0, "no workload ran");
    assert_eq!(
        st.buffers, 0,
        "buffers still live after every thread dropped its own"
    );
    assert_eq!(st.host.bytes_in_use, 0, "host bytes still in use");
    for (i, d) in st.devices.iter().enumerate() {
        assert_eq!(d.bytes_in_use, 0, "{}: bytes still in use", names[i]);
    }
    let require_hw = std::env::var("VUMA_REQUIRE_HW").is_ok_and(|v| v == "1");
    let gpu_used = vuma.devices().iter().any(|d| {
        d.info().backend != Backend::Host
            && t.by_device.keys().any(|k| k.starts_with(&d.info().name))
    });
    drop(vuma);
    println!(
        "rss: start {rss_start:.0} MiB, end {rss_live:.0} MiB (manager live, pools kept), {:.0} MiB after the manager is dropped",
        rss_mib()
    );
    if require_hw {
        assert!(
            gpu_used,
            "VUMA_REQUIRE_HW=1 but no workload ran on a GPU: {:?}",
            t.by_device
        );
    }
}
