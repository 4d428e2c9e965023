//! Soak of the whole stack on the real devices of this machine: the CUDA and Vulkan GPUs
//! (lavapipe in CI) and the host, through one [`UnifiedMemoryManager`] whose device budgets
//! are capped at 64 MiB (device-local copies count; zero-copy copies live in host memory)
//! so that migration, eviction and write-back happen all the time.
//! Several threads create buffers of random size (4 KiB – 16 MiB), run workloads of random
//! kind, complexity and priority on them (the scheduler places each), write host ranges in
//! between and read everything back; every byte is checked against a host model. At the end
//! no buffer and no byte is in use anywhere.
//!
//! Memory over time: the main thread samples, at every tenth of the run while the workers
//! run, the process's RSS (after `malloc_trim`, so that freed heap glibc keeps in its
//! arenas does not count) and what the manager says it holds in host memory: the host
//! copies (plain and packed), the pinned host blocks kept for reuse, and the blocks of every
//! pool that lives in host memory (the host device's, an integrated or CPU device's such as
//! lavapipe's, and every device's pinned or mapped pools), and the test's own models of the live buffers. The difference
//! is memory nobody accounts for (driver allocations, caches, leaks). The test fails when that difference keeps growing
//! in the second half of the run: the last sample above the largest first-half sample by
//! more than 25% + 64 MiB. Growth that the manager accounts for (pools filling up to the
//! largest live set, more host copies live at the end) is not a leak and does not count;
//! a 5-second debug run on lavapipe grows its pools for most of the run.
//!
//! After the run it prints the RSS with the manager live, after the manager is dropped
//! (which drops the devices: the test holds none, and checks through weak references that
//! none outlives the manager), and after `malloc_trim` hands freed heap back to the OS. What
//! remains after the drop is not held by VUMA: freed heap that glibc's per-thread arenas
//! keep (buffers up to 16 MiB are below glibc's dynamic mmap threshold once one such block
//! was freed, so they come from the arenas; `malloc_trim` returns most of it), and what the
//! drivers keep once loaded: the CUDA driver library and its internal allocations (a
//! released primary context does not give everything back), the Vulkan loader, ICD and its
//! compiler (lavapipe: LLVM), the compiled-kernel caches. The pinned staging rings
//! (CUDA: one 4 MiB slot per core, 2..=16) and the pools' pinned and mapped blocks are freed
//! with their devices. `RssAnon`/`RssFile` split each figure: file-backed pages are driver
//! and library code. Here (lavapipe + host, 10 s): 1188 MiB at the end, 536 MiB after the
//! drop, 99 MiB after `malloc_trim` (88 MiB with the manager built): the drop's remainder
//! was freed heap glibc kept, not live memory.
//!
//! Duration: `VUMA_SOAK_SECS` (default 5). With `VUMA_REQUIRE_HW=1` the run must have placed
//! work on a GPU. Long run on a GPU machine:
//! `VUMA_SOAK_SECS=120 cargo test -p vuma --test soak_devices --release -- --nocapture`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use vuma::{kernels, GpuWorkload, Priority, UnifiedBuffer, UnifiedMemoryManager, WorkloadKind};
use vuma_core::{Backend, DeviceKind, DynDevice, MemoryConfig, Placement, Scalar};

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

/// A field of `/proc/self/status` in MiB (0 where there is none: not Linux).
fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn rss_mib() -> f64 {
    status_mib("VmRSS")
}

/// RSS with its split: "N MiB (anon A, file F, shmem S)".
fn rss_split() -> String {
    format!(
        "{:.0} MiB (anon {:.0}, file {:.0}, shmem {:.0})",
        rss_mib(),
        status_mib("RssAnon"),
        status_mib("RssFile"),
        status_mib("RssShmem")
    )
}

/// Hands freed heap back to the OS (glibc keeps freed arena memory); whether it did.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_heap() -> bool {
    extern "C" {
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    // SAFETY: glibc's `malloc_trim` takes a plain integer, touches only the allocator's own
    // state (under its locks) and may be called at any time.
    unsafe { malloc_trim(0) };
    true
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap() -> bool {
    false
}

const MIB: f64 = (1u64 << 20) as f64;

/// One point of the memory timeline.
struct Sample {
    /// Seconds since the workers started.
    t: f64,
    rss: f64,
    /// Bytes of copies the manager holds (host + every device).
    in_use: u64,
    /// Bytes each device's pools hold from the device (all placements).
    pooled: Vec<u64>,
    /// Bytes the manager holds in host memory (host copies, host-memory pools).
    host_held: u64,
    /// Bytes of the test's own host models.
    model: u64,
}

impl Sample {
    /// RSS that neither the manager nor the test's models account for, MiB.
    fn unaccounted(&self) -> f64 {
        self.rss - (self.host_held + self.model) as f64 / MIB
    }
}

fn sample(vuma: &UnifiedMemoryManager, started: Instant) -> Sample {
    trim_heap();
    let st = vuma.stats();
    // Host copies, and the pinned blocks kept for reuse after their copies were dropped.
    let mut host_held = st.host.bytes_in_use + st.host.pooled_bytes;
    let pooled = vuma
        .devices()
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let info = d.info();
            let shares_host = info.unified_memory || info.kind == DeviceKind::Cpu;
            let mut all = 0;
            for p in Placement::ALL {
                let Some(ps) = vuma.memory().pool_stats(i, p) else {
                    continue;
                };
                all += ps.bytes_reserved;
                if shares_host || p != Placement::DeviceLocal {
                    host_held += ps.bytes_reserved;
                }
            }
            all
        })
        .collect();
    Sample {
        t: started.elapsed().as_secs_f64(),
        rss: rss_mib(),
        in_use: st.host.bytes_in_use + st.devices.iter().map(|d| d.bytes_in_use).sum::<u64>(),
        pooled,
        host_held,
        model: MODEL_BYTES.load(Ordering::SeqCst),
    }
}

/// Fails when the RSS the manager does not account for grew in the second half of the run
/// by more than 25% + 64 MiB over the largest first-half sample; the message says what grew
/// alongside.
fn check_rss_stable(samples: &[Sample], names: &[String]) {
    let n = samples.len();
    if n < 4 {
        println!("rss check skipped: only {n} samples");
        return;
    }
    // The samples up to the middle of the run (at start, then every tenth up to a half).
    let first = &samples[..n.div_ceil(2)];
    let last = &samples[n - 1];
    let (peak_i, peak) = first
        .iter()
        .enumerate()
        .map(|(i, s)| (i, s.unaccounted()))
        .fold((0, f64::MIN), |a, b| if b.1 > a.1 { b } else { a });
    let bound = peak.max(0.0) * 1.25 + 64.0;
    let p = &first[peak_i];
    let pooled = |s: &Sample| s.pooled.iter().sum::<u64>() as f64 / MIB;
    println!(
        "rss check: {:.0} MiB not accounted for by the manager at {:.1} s (RSS {:.0}, manager \
         holds {:.0} in host memory) vs largest first-half {peak:.0} MiB at {:.1} s (bound \
         {bound:.0} MiB)",
        last.unaccounted(),
        last.t,
        last.rss,
        last.host_held as f64 / MIB,
        p.t
    );
    if last.unaccounted() > bound {
        let per_dev: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                format!(
                    "{name} {:.0} -> {:.0}",
                    p.pooled.get(i).copied().unwrap_or(0) as f64 / MIB,
                    last.pooled.get(i).copied().unwrap_or(0) as f64 / MIB
                )
            })
            .collect();
        panic!(
            "memory the manager does not account for grew in the second half of the run: \
             {:.0} MiB at {:.1} s > {bound:.0} MiB (largest first-half sample {peak:.0} MiB at \
             {:.1} s, x 1.25 + 64 MiB). RSS went {:.0} -> {:.0} MiB; the manager's host-memory \
             holdings {:.0} -> {:.0} MiB, its bytes in use {:.0} -> {:.0} MiB and its device \
             pools {:.0} -> {:.0} MiB ({}): the rest is host heap or driver allocations",
            last.unaccounted(),
            last.t,
            p.t,
            p.rss,
            last.rss,
            p.host_held as f64 / MIB,
            last.host_held as f64 / MIB,
            p.in_use as f64 / MIB,
            last.in_use as f64 / MIB,
            pooled(p),
            pooled(last),
            per_dev.join(", "),
        );
    }
}

/// Bytes of the workers' host models live now (the test's own memory, not the manager's).
static MODEL_BYTES: AtomicU64 = AtomicU64::new(0);

/// One live buffer of a thread and its model (u32 words).
struct Live {
    buf: Arc<UnifiedBuffer>,
    model: Vec<u32>,
}

impl Live {
    fn new(buf: Arc<UnifiedBuffer>, model: Vec<u32>) -> Self {
        MODEL_BYTES.fetch_add(model.len() as u64 * 4, Ordering::SeqCst);
        Live { buf, model }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        MODEL_BYTES.fetch_sub(self.model.len() as u64 * 4, Ordering::SeqCst);
    }
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
                live.push(Live::new(buf, model));
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
    let rss_built = rss_mib();
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let totals = Mutex::new(Totals::default());
    let started = Instant::now();
    let running = AtomicUsize::new(THREADS);
    let mut timeline = vec![sample(&vuma, started)];
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (vuma, totals, running) = (&vuma, &totals, &running);
            s.spawn(move || {
                // Counts down even when the worker panics (the scope re-raises the panic).
                struct Done<'a>(&'a AtomicUsize);
                impl Drop for Done<'_> {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                let _done = Done(running);
                worker(vuma, 0x5eed_0000 + t as u64 * 7919, deadline, totals)
            });
        }
        // Every tenth of the run while the workers run (the last just before the deadline).
        for k in 1..=10u32 {
            let frac = if k == 10 { 0.99 } else { f64::from(k) / 10.0 };
            let at = started + Duration::from_secs_f64(secs * frac);
            while Instant::now() < at && running.load(Ordering::SeqCst) == THREADS {
                std::thread::sleep(
                    Duration::from_millis(10).min(at.saturating_duration_since(Instant::now())),
                );
            }
            if running.load(Ordering::SeqCst) < THREADS {
                break; // a worker ended early (it panicked: the scope re-raises it)
            }
            timeline.push(sample(&vuma, started));
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
    let rss_live = rss_split();
    let fmt_line = |f: &dyn Fn(&Sample) -> String| {
        timeline
            .iter()
            .map(|s| format!("{:.1}s {}", s.t, f(s)))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    println!(
        "rss timeline (MiB): {}",
        fmt_line(&|s| format!("{:.0}", s.rss))
    );
    println!(
        "not accounted for by the manager timeline (MiB): {}",
        fmt_line(&|s| format!("{:.0}", s.unaccounted()))
    );
    println!(
        "manager in use timeline (MiB, host + devices): {}",
        fmt_line(&|s| format!("{:.0}", s.in_use as f64 / MIB))
    );
    println!(
        "device pools timeline (MiB held per device: {}): {}",
        names.join(" / "),
        fmt_line(&|s| s
            .pooled
            .iter()
            .map(|b| format!("{:.0}", *b as f64 / MIB))
            .collect::<Vec<_>>()
            .join("/"))
    );
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
    // The test holds no device: dropping the manager must drop them all, with their
    // pinned staging rings and the pools' blocks.
    let devices: Vec<Weak<dyn DynDevice>> = vuma.devices().iter().map(Arc::downgrade).collect();
    drop(vuma);
    let alive: Vec<&String> = devices
        .iter()
        .zip(&names)
        .filter(|(w, _)| w.strong_count() > 0)
        .map(|(_, n)| n)
        .collect();
    let rss_dropped = rss_split();
    let trimmed = trim_heap();
    println!(
        "rss: start {rss_start:.0} MiB, {rss_built:.0} MiB with the manager built, end {rss_live} \
         (manager live, pools kept), {rss_dropped} after the manager and its devices are \
         dropped{}",
        if trimmed {
            format!(", {} after malloc_trim", rss_split())
        } else {
            String::new()
        }
    );
    assert!(
        alive.is_empty(),
        "devices still alive after the manager was dropped (their staging rings and contexts \
         with them): {alive:?}"
    );
    check_rss_stable(&timeline, &names);
    if require_hw {
        assert!(
            gpu_used,
            "VUMA_REQUIRE_HW=1 but no workload ran on a GPU: {:?}",
            t.by_device
        );
    }
}
