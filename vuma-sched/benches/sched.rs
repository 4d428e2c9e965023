//! Scheduler benchmarks (no GPU needed: the devices are described, the work is simulated).
//!
//! 1. `choose` throughput and p50 overhead per workload, against a trivial round-robin
//!    choice measured in the same run (targets: ≥ 200k workloads/s, ≤ 5 µs p50).
//! 2. A simulated mixed stream of light and heavy workloads on a described laptop (CPU,
//!    iGPU, dGPU) whose "true" costs differ from the scheduler's prior: total turnaround
//!    time and energy of the cost model against "everything on the dGPU" and "tier by
//!    complexity alone".
//! 3. Executor throughput (no-op jobs) against plain `tokio::task::spawn_blocking`.
//!
//! `VUMA_BENCH_QUICK=1` shrinks every size for smoke runs.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vuma_core::bench::{median, Record};
use vuma_core::{Backend, DeviceId, DeviceInfo, DeviceKind};
use vuma_sched::{
    described, Executor, NoResidency, Priority, ResidencyMap, SchedConfig, Scheduler, WorkloadKind,
    WorkloadProfile,
};

const MIB: u64 = 1 << 20;

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn quick() -> bool {
    std::env::var("VUMA_BENCH_QUICK").is_ok_and(|v| v == "1")
}

fn workload_pool(rng: &mut Rng) -> Vec<WorkloadProfile> {
    let kinds = [
        WorkloadKind::Ui,
        WorkloadKind::Graphics2D,
        WorkloadKind::LightCompute,
        WorkloadKind::HeavyCompute,
        WorkloadKind::AiInference,
        WorkloadKind::AiTraining,
        WorkloadKind::RayTracing,
        WorkloadKind::Fp32Heavy,
    ];
    (0..64)
        .map(|i| {
            let kind = kinds[i % kinds.len()].clone();
            let backends = match i % 4 {
                0 => vec![Backend::Host],
                1 => vec![Backend::Cuda, Backend::Host],
                _ => vec![Backend::Cuda, Backend::Vulkan, Backend::Host],
            };
            WorkloadProfile::new(format!("kernel-{}", i % 16), kind)
                .with_complexity(rng.unit() as f32)
                .with_memory(rng.next() % (512 * MIB))
                .with_priority(Priority::ALL[i % 4])
                .with_backends(backends)
                .with_work(if i % 3 == 0 { 0.0 } else { rng.unit() * 1e11 })
        })
        .collect()
}

fn round_robin(devs: &[DeviceInfo], w: &WorkloadProfile, next: &mut usize) -> Option<DeviceId> {
    for k in 0..devs.len() {
        let d = &devs[(*next + k) % devs.len()];
        if w.backends.contains(&d.backend) {
            *next = (*next + k + 1) % devs.len();
            return Some(d.id);
        }
    }
    None
}

fn bench_choose() {
    let q = quick();
    let devs = described::laptop();
    let sched = Scheduler::new(devs.clone(), SchedConfig::default());
    let mut rng = Rng(0x5eed_cafe_f00d_beef);
    let pool = workload_pool(&mut rng);
    // Half the kernels have history on every device.
    for k in 0..8 {
        for d in &devs {
            sched.record_run(
                d.id,
                &format!("kernel-{k}"),
                1e9,
                Duration::from_micros(500 + 100 * k),
            );
        }
    }
    let dgpu = devs
        .iter()
        .find(|d| d.kind == DeviceKind::Discrete)
        .unwrap()
        .id;
    let residency = ResidencyMap::resident_on(dgpu);
    let n: usize = if q { 20_000 } else { 400_000 };
    let batch = 64usize;

    // Throughput, VUMA.
    let t = Instant::now();
    for i in 0..n {
        let w = &pool[i % pool.len()];
        let c = if i % 2 == 0 {
            sched.choose(w, &NoResidency)
        } else {
            sched.choose(w, &residency)
        };
        black_box(c.map(|c| c.device).ok());
    }
    let vuma_rate = n as f64 / t.elapsed().as_secs_f64();
    // Throughput, round robin.
    let mut next = 0usize;
    let t = Instant::now();
    for i in 0..n {
        black_box(round_robin(
            &devs,
            black_box(&pool[i % pool.len()]),
            &mut next,
        ));
    }
    let rr_rate = n as f64 / t.elapsed().as_secs_f64();

    // p50 per workload: batches of `batch` calls, per-call time of each batch.
    let mut vuma_us = Vec::new();
    let mut rr_us = Vec::new();
    for b in 0..(n / batch) {
        let t = Instant::now();
        for i in 0..batch {
            let w = &pool[(b * batch + i) % pool.len()];
            black_box(sched.choose(w, &residency).map(|c| c.device).ok());
        }
        vuma_us.push(t.elapsed().as_secs_f64() * 1e6 / batch as f64);
        let t = Instant::now();
        for i in 0..batch {
            black_box(round_robin(
                &devs,
                black_box(&pool[(b * batch + i) % pool.len()]),
                &mut next,
            ));
        }
        rr_us.push(t.elapsed().as_secs_f64() * 1e6 / batch as f64);
    }
    let device = "described laptop (cpu+igpu+dgpu), cost model on this host".to_string();
    Record {
        bench: "sched/choose/throughput".into(),
        device: device.clone(),
        value: vuma_rate,
        unit: "1/s".into(),
        baseline: "round-robin choice".into(),
        baseline_value: rr_rate,
        higher_is_better: true,
    }
    .emit();
    let p50 = median(&mut vuma_us);
    Record {
        bench: "sched/choose/p50_overhead".into(),
        device,
        value: p50,
        unit: "us".into(),
        baseline: "round-robin choice".into(),
        baseline_value: median(&mut rr_us),
        higher_is_better: false,
    }
    .emit();
    println!(
        "  targets: >= 200000 workloads/s: {} ({vuma_rate:.0}); p50 <= 5 us: {} ({p50:.3} us)",
        if vuma_rate >= 200_000.0 {
            "MET"
        } else {
            "MISSED"
        },
        if p50 <= 5.0 { "MET" } else { "MISSED" }
    );
}

// ---------------------------------------------------------------------------------------
// Simulated mixed stream.

#[derive(Debug, Clone)]
struct SimJob {
    arrival: f64,
    profile: WorkloadProfile,
    /// Data that stays valid where it was uploaded (model weights), if any.
    family: Option<&'static str>,
}

/// The "truth" the simulator runs on (hidden from the scheduler, which starts from its
/// prior and learns from recorded runs).
#[derive(Debug, Clone, Copy)]
struct TrueDev {
    id: DeviceId,
    kind: DeviceKind,
    heavy_rate: f64,
    light_rate: f64,
    launch_s: f64,
    link_bps: f64,
    wake_s: f64,
    watts: f64,
}

impl TrueDev {
    fn run_s(&self, w: &WorkloadProfile) -> f64 {
        let rate = if w.kind.gpu_friendly() {
            self.heavy_rate
        } else {
            self.light_rate
        };
        self.launch_s + w.effective_work() / rate
    }
}

fn stream(n: usize, rng: &mut Rng) -> Vec<SimJob> {
    let mut t = 0.0;
    (0..n)
        .map(|i| {
            t += -rng.unit().max(1e-12).ln() * 4e-3; // Poisson arrivals, 4 ms apart on average
            let r = rng.unit();
            let (profile, family) = if r < 0.60 {
                (
                    WorkloadProfile::new(format!("ui-{}", i % 4), WorkloadKind::Ui)
                        .with_memory(64 << 10)
                        .with_work(6.5e4)
                        .with_priority(Priority::Realtime)
                        .with_complexity(0.1),
                    None,
                )
            } else if r < 0.80 {
                (
                    WorkloadProfile::new("composite", WorkloadKind::Graphics2D)
                        .with_memory(4 * MIB)
                        .with_work(8e6)
                        .with_priority(Priority::High)
                        .with_complexity(0.3),
                    None,
                )
            } else if r < 0.90 {
                (
                    WorkloadProfile::new("denoise", WorkloadKind::LightCompute)
                        .with_memory(64 * MIB)
                        .with_work(1e9)
                        .with_complexity(0.55 + 0.15 * rng.unit() as f32),
                    None,
                )
            } else if r < 0.98 {
                (
                    WorkloadProfile::new("infer", WorkloadKind::AiInference)
                        .with_memory(256 * MIB)
                        .with_work(5e10)
                        .with_complexity(0.8),
                    Some("weights"),
                )
            } else {
                (
                    WorkloadProfile::new("train", WorkloadKind::AiTraining)
                        .with_memory(1 << 30)
                        .with_work(1e12)
                        .with_complexity(1.0)
                        .with_priority(Priority::Low),
                    Some("train-state"),
                )
            };
            SimJob {
                arrival: t,
                profile,
                family,
            }
        })
        .collect()
}

#[derive(Debug, Default, Clone, Copy)]
struct SimResult {
    turnaround_s: f64,
    makespan_s: f64,
    energy_j: f64,
}

struct Sim {
    free_at: Vec<f64>,
    last_end: Vec<f64>,
    /// Where each data family is valid on a discrete device.
    resident: HashMap<&'static str, DeviceId>,
}

struct Done {
    device: DeviceId,
    finish: f64,
    run_s: f64,
    est_s: f64,
    profile: WorkloadProfile,
}

/// Runs the stream (FIFO per device); `pick` chooses a device index and returns the
/// estimate it used (for queue accounting); `on_done` sees each job once simulated time has
/// passed its end.
fn simulate(
    jobs: &[SimJob],
    devs: &[TrueDev],
    mut pick: impl FnMut(&SimJob, &Sim) -> (usize, f64),
    mut on_done: impl FnMut(&Done),
) -> SimResult {
    let mut sim = Sim {
        free_at: vec![0.0; devs.len()],
        last_end: vec![f64::NEG_INFINITY; devs.len()],
        resident: HashMap::new(),
    };
    let mut pending: Vec<Done> = Vec::new();
    let mut res = SimResult::default();
    for job in jobs {
        let now = job.arrival;
        pending.sort_by(|a, b| b.finish.total_cmp(&a.finish));
        while pending.last().is_some_and(|d| d.finish <= now) {
            let d = pending.pop().expect("non-empty");
            on_done(&d);
        }
        let (i, est_s) = pick(job, &sim);
        let d = &devs[i];
        let start = now.max(sim.free_at[i]);
        let wake = if d.kind == DeviceKind::Discrete && start - sim.last_end[i] > 0.05 {
            d.wake_s
        } else {
            0.0
        };
        let unified = d.kind != DeviceKind::Discrete;
        let resident = job
            .family
            .is_some_and(|f| sim.resident.get(f) == Some(&d.id));
        let transfer = if unified || resident {
            0.0
        } else {
            10e-6 + job.profile.memory_requirement as f64 / d.link_bps
        };
        if let Some(f) = job.family {
            sim.resident.insert(f, d.id);
        }
        let run = d.run_s(&job.profile);
        let busy = wake + transfer + run;
        let finish = start + busy;
        sim.free_at[i] = finish;
        sim.last_end[i] = finish;
        res.turnaround_s += finish - now;
        res.makespan_s = res.makespan_s.max(finish);
        res.energy_j += busy * d.watts;
        pending.push(Done {
            device: d.id,
            finish,
            run_s: run,
            est_s,
            profile: job.profile.clone(),
        });
    }
    for d in pending {
        on_done(&d);
    }
    res
}

fn bench_stream() {
    let n = if quick() { 2_000 } else { 40_000 };
    let devs = described::laptop();
    let find = |k: DeviceKind| devs.iter().find(|d| d.kind == k).unwrap().id;
    let (cpu, igpu, dgpu) = (
        find(DeviceKind::Cpu),
        find(DeviceKind::Integrated),
        find(DeviceKind::Discrete),
    );
    // The truth differs from the prior on purpose (the dGPU is slower than its SM count
    // suggests, the CPU faster on light work, the link slower, waking takes longer).
    let truth = vec![
        TrueDev {
            id: cpu,
            kind: DeviceKind::Cpu,
            heavy_rate: 5e10,
            light_rate: 2e11,
            launch_s: 3e-6,
            link_bps: 1e12,
            wake_s: 0.0,
            watts: 25.0,
        },
        TrueDev {
            id: igpu,
            kind: DeviceKind::Integrated,
            heavy_rate: 1.2e12,
            light_rate: 1.5e12,
            launch_s: 25e-6,
            link_bps: 1e12,
            wake_s: 0.0,
            watts: 15.0,
        },
        TrueDev {
            id: dgpu,
            kind: DeviceKind::Discrete,
            heavy_rate: 1e13,
            light_rate: 3e12,
            launch_s: 20e-6,
            link_bps: 12e9,
            wake_s: 2e-3,
            watts: 90.0,
        },
    ];
    let idx = |id: DeviceId| truth.iter().position(|t| t.id == id).expect("known device");
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let jobs = stream(n, &mut rng);

    // VUMA: the cost model, fed by queue accounting and history as the executor feeds it.
    let sched = Scheduler::new(devs.clone(), SchedConfig::default());
    let mut choose_time = Duration::ZERO;
    let mut crossed = 0usize;
    let mut placed: HashMap<DeviceId, usize> = HashMap::new();
    let vuma = simulate(
        &jobs,
        &truth,
        |job, sim| {
            let residency = |d: DeviceId| match job.family {
                Some(f) if sim.resident.get(f) == Some(&d) => 0,
                _ => u64::MAX,
            };
            let t = Instant::now();
            let c = sched.choose(&job.profile, &residency).expect("eligible");
            choose_time += t.elapsed();
            crossed += usize::from(c.crossed_tier);
            *placed.entry(c.device).or_default() += 1;
            sched.queue_started(c.device, job.profile.priority, c.est_run_s);
            (idx(c.device), c.est_run_s)
        },
        |d| {
            sched.queue_finished(d.device, d.profile.priority, d.est_s);
            sched.record_run(
                d.device,
                &d.profile.name,
                d.profile.effective_work(),
                Duration::from_secs_f64(d.run_s),
            );
        },
    );
    let all_dgpu = simulate(&jobs, &truth, |_, _| (idx(dgpu), 0.0), |_| {});
    let by_complexity = simulate(
        &jobs,
        &truth,
        |job, _| {
            (
                if job.profile.complexity >= 0.5 {
                    idx(dgpu)
                } else {
                    idx(igpu)
                },
                0.0,
            )
        },
        |_| {},
    );
    let device = "simulated laptop (8-core cpu, iris xe, rtx 4070 laptop)".to_string();
    for (name, slug, base) in [
        ("everything on the dGPU", "all_dgpu", all_dgpu),
        ("tier by complexity alone", "by_complexity", by_complexity),
    ] {
        Record {
            bench: format!("sched/sim_stream/turnaround/vs_{slug}"),
            device: device.clone(),
            value: vuma.turnaround_s,
            unit: "s".into(),
            baseline: name.into(),
            baseline_value: base.turnaround_s,
            higher_is_better: false,
        }
        .emit();
        Record {
            bench: format!("sched/sim_stream/energy/vs_{slug}"),
            device: device.clone(),
            value: vuma.energy_j,
            unit: "J".into(),
            baseline: name.into(),
            baseline_value: base.energy_j,
            higher_is_better: false,
        }
        .emit();
    }
    let share = |d: DeviceId| placed.get(&d).copied().unwrap_or(0);
    println!(
        "  {n} jobs; makespan vuma {:.3} s, all-dgpu {:.3} s, by-complexity {:.3} s; vuma placed cpu {} / igpu {} / dgpu {}, {crossed} crossed tiers; choose {:.2} us/job",
        vuma.makespan_s,
        all_dgpu.makespan_s,
        by_complexity.makespan_s,
        share(cpu),
        share(igpu),
        share(dgpu),
        choose_time.as_secs_f64() * 1e6 / n as f64
    );
}

// ---------------------------------------------------------------------------------------
// Executor throughput.

async fn executor_round(n: usize) -> (f64, f64) {
    let cfg = SchedConfig::default().with_queue_capacity(n);
    let sched = Arc::new(Scheduler::new(described::cpu_only(), cfg));
    let ex = Executor::new(sched).expect("inside a runtime");
    let t = Instant::now();
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let w = WorkloadProfile::new("noop", WorkloadKind::LightCompute).with_work(1.0);
        handles.push(
            ex.submit(w, move |_| Ok(i))
                .await
                .map_err(|e| e.error)
                .expect("submit"),
        );
    }
    let mut sum = 0usize;
    for h in handles {
        sum += h.await.expect("job");
    }
    black_box(sum);
    let vuma = n as f64 / t.elapsed().as_secs_f64();

    let t = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|i| tokio::task::spawn_blocking(move || i))
        .collect();
    let mut sum = 0usize;
    for h in handles {
        sum += h.await.expect("job");
    }
    black_box(sum);
    (vuma, n as f64 / t.elapsed().as_secs_f64())
}

fn bench_executor() {
    let n: usize = if quick() { 2_000 } else { 50_000 };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            println!("SKIP: sched/executor: cannot start a tokio runtime: {e}");
            return;
        }
    };
    // Three alternating rounds; the medians are reported (the host may be shared).
    let mut vuma_rates = Vec::new();
    let mut base_rates = Vec::new();
    for _ in 0..3 {
        let (v, b) = rt.block_on(executor_round(n));
        vuma_rates.push(v);
        base_rates.push(b);
    }
    let (vuma, base) = (median(&mut vuma_rates), median(&mut base_rates));
    Record {
        bench: "sched/executor/throughput".into(),
        device: "host cpu (tokio blocking pool)".into(),
        value: vuma,
        unit: "jobs/s".into(),
        baseline: "tokio spawn_blocking".into(),
        baseline_value: base,
        higher_is_better: true,
    }
    .emit();
}

fn main() {
    let t = Instant::now();
    bench_choose();
    bench_stream();
    bench_executor();
    println!("sched benches done in {:.1} s", t.elapsed().as_secs_f64());
}
