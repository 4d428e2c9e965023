//! Deterministic policy tests on described machines.

use std::time::Duration;

use vuma_core::{Backend, DeviceId, DeviceInfo, DeviceKind, Error};
use vuma_sched::{
    described, eligible_views, same_physical_device, Classification, ClassifyPolicy, DeviceHealth,
    NoResidency, Priority, ResidencyMap, SchedConfig, Scheduler, Tier, WorkloadKind,
    WorkloadProfile,
};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn by_kind(devs: &[DeviceInfo], kind: DeviceKind) -> DeviceId {
    devs.iter()
        .find(|d| d.kind == kind)
        .expect("device kind")
        .id
}

fn laptop() -> (Scheduler, DeviceId, DeviceId, DeviceId) {
    let devs = described::laptop();
    let (cpu, igpu, dgpu) = (
        by_kind(&devs, DeviceKind::Cpu),
        by_kind(&devs, DeviceKind::Integrated),
        by_kind(&devs, DeviceKind::Discrete),
    );
    (
        Scheduler::new(devs, SchedConfig::default()),
        cpu,
        igpu,
        dgpu,
    )
}

fn desktop() -> (Scheduler, DeviceId, DeviceId) {
    let devs = described::two_gpu_desktop();
    let gpus: Vec<DeviceId> = devs
        .iter()
        .filter(|d| d.kind == DeviceKind::Discrete)
        .map(|d| d.id)
        .collect();
    (
        Scheduler::new(devs, SchedConfig::default()),
        gpus[0],
        gpus[1],
    )
}

fn light(name: &str) -> WorkloadProfile {
    WorkloadProfile::new(name, WorkloadKind::LightCompute)
        .with_complexity(0.3)
        .with_memory(MIB)
        .with_work(1e8)
}

#[test]
fn tiers_follow_device_kinds_and_overrides() {
    let (s, cpu, igpu, dgpu) = laptop();
    assert_eq!(s.tier_of(cpu), Some(Tier::Low));
    assert_eq!(s.tier_of(igpu), Some(Tier::Low));
    assert_eq!(s.tier_of(dgpu), Some(Tier::High));
    assert_eq!(s.tier_of(DeviceId(u64::MAX)), None);

    let devs = described::laptop();
    let igpu = by_kind(&devs, DeviceKind::Integrated);
    let s = Scheduler::new(devs, SchedConfig::default().with_tier(igpu, Tier::High));
    assert_eq!(s.tier_of(igpu), Some(Tier::High));
}

#[test]
fn default_policy_classifies_by_kind_complexity_memory_priority() {
    let (s, ..) = laptop();
    let tier = |w: &WorkloadProfile| s.classify(w).unwrap().tier;
    assert_eq!(
        tier(&WorkloadProfile::new("ui", WorkloadKind::Ui).with_complexity(1.0)),
        Tier::Low
    );
    assert_eq!(
        tier(&WorkloadProfile::new("rt", WorkloadKind::RayTracing).with_complexity(0.0)),
        Tier::High
    );
    assert_eq!(
        tier(&WorkloadProfile::new("train", WorkloadKind::AiTraining)),
        Tier::High
    );
    assert_eq!(tier(&light("l")), Tier::Low);
    assert_eq!(tier(&light("l").with_complexity(1.0)), Tier::High);
    // A large working set is high tide whatever the kind.
    assert_eq!(tier(&light("l").with_memory(2 * GIB)), Tier::High);
    // Priority tips a borderline workload: custom kind, complexity 0.45 → score 0.475.
    let border =
        WorkloadProfile::new("b", WorkloadKind::Custom("fft".into())).with_complexity(0.45);
    assert_eq!(tier(&border), Tier::Low);
    assert_eq!(
        tier(&border.clone().with_priority(Priority::Realtime)),
        Tier::High
    );
    assert_eq!(
        tier(&WorkloadProfile::new("f", WorkloadKind::Fp32Heavy).with_complexity(0.2)),
        Tier::High
    );
    let c = s.classify(&light("l")).unwrap();
    assert!(c.reason.contains("light-compute"), "{}", c.reason);
}

#[test]
fn malformed_profiles_are_typed_errors() {
    let (s, ..) = laptop();
    for w in [
        light("x").with_complexity(f32::NAN),
        light("x").with_complexity(1.5),
        light("x").with_complexity(-0.1),
        light("x").with_work(-1.0),
        light("x").with_work(f64::INFINITY),
        light("x").with_work(f64::NAN),
        light(""),
    ] {
        assert!(
            matches!(s.classify(&w), Err(Error::InvalidArgument(_))),
            "{w:?}"
        );
        assert!(
            matches!(s.choose(&w, &NoResidency), Err(Error::InvalidArgument(_))),
            "{w:?}"
        );
    }
}

#[test]
fn no_eligible_device_is_a_typed_error() {
    let (s, ..) = laptop();
    let w = light("nothing").with_backends(vec![]);
    assert!(
        matches!(s.choose(&w, &NoResidency), Err(Error::NoEligibleDevice(n)) if n == "nothing")
    );
    let cpu = Scheduler::new(described::cpu_only(), SchedConfig::default());
    let w = light("cuda-only").with_backends(vec![Backend::Cuda, Backend::Vulkan]);
    assert!(matches!(
        cpu.choose(&w, &NoResidency),
        Err(Error::NoEligibleDevice(_))
    ));
    let empty = Scheduler::new(Vec::new(), SchedConfig::default());
    assert!(matches!(
        empty.choose(&light("x"), &NoResidency),
        Err(Error::NoEligibleDevice(_))
    ));
}

#[test]
fn only_devices_with_a_variant_are_considered() {
    let (s, cpu, igpu, dgpu) = laptop();
    let heavy = WorkloadProfile::new("gemm", WorkloadKind::HeavyCompute)
        .with_complexity(0.9)
        .with_memory(256 * MIB)
        .with_work(1e12);
    assert_eq!(s.choose(&heavy, &NoResidency).unwrap().device, dgpu);
    let host_only = heavy.clone().with_backends(vec![Backend::Host]);
    let c = s.choose(&host_only, &NoResidency).unwrap();
    assert_eq!(c.device, cpu);
    assert!(c.crossed_tier);
    assert_eq!(c.candidates.len(), 1);
    let vk = heavy.with_backends(vec![Backend::Vulkan]);
    assert_eq!(s.choose(&vk, &NoResidency).unwrap().device, igpu);
}

#[test]
fn laptop_ui_stays_on_the_low_tide() {
    let (s, cpu, _igpu, dgpu) = laptop();
    let ui = WorkloadProfile::new("draw", WorkloadKind::Ui)
        .with_memory(64 << 10)
        .with_priority(Priority::Realtime);
    let c = s.choose(&ui, &NoResidency).unwrap();
    assert_eq!(c.classified, Tier::Low);
    assert_eq!(c.tier, Tier::Low);
    assert!(!c.crossed_tier);
    assert_eq!(c.device, cpu, "{}", c.reason);
    assert_ne!(c.device, dgpu);
    assert_eq!(c.candidates.len(), 3);
    assert_eq!(
        c.candidates[0].0, c.device,
        "candidates are sorted best first"
    );
}

#[test]
fn laptop_heavy_ai_goes_to_the_discrete_gpu() {
    let (s, _cpu, _igpu, dgpu) = laptop();
    let train = WorkloadProfile::new("train-step", WorkloadKind::AiTraining)
        .with_memory(2 * GIB)
        .with_work(5e12);
    let c = s.choose(&train, &NoResidency).unwrap();
    assert_eq!(c.device, dgpu, "{}", c.reason);
    assert_eq!(
        (c.tier, c.classified, c.crossed_tier),
        (Tier::High, Tier::High, false)
    );
    // 2 GiB over the described Gen4 x8 link (13.4 GB/s): ~160 ms of transfer.
    assert!(
        c.est_transfer_s > 0.1 && c.est_transfer_s < 0.2,
        "{}",
        c.est_transfer_s
    );
    assert_eq!(c.est_wake_s, 0.0, "high-tide work pays no wake-up");
}

#[test]
fn the_dgpu_is_not_woken_for_light_work_it_wins_only_narrowly() {
    let (s, _cpu, igpu, dgpu) = laptop();
    // On the prior, the dGPU computes this faster than the iGPU but not by the margin once
    // its wake-up and the transfer are counted.
    let w = light("filter").with_memory(16 * MIB).with_work(4e9);
    let c = s.choose(&w, &NoResidency).unwrap();
    assert_eq!(c.device, igpu, "{}", c.reason);
    assert!(!c.crossed_tier);
    let d = c.candidates.iter().find(|(d, _)| *d == dgpu).unwrap().1;
    assert!(
        d * 1.5 >= c.finish_s(),
        "dgpu {d} vs chosen {}",
        c.finish_s()
    );
}

#[test]
fn crossing_tiers_is_reported() {
    let (s, _cpu, _igpu, dgpu) = laptop();
    // Light by classification, but a lot of arithmetic on little data: the dGPU wins clearly.
    let w = light("big-sum").with_work(1e11);
    let c = s.choose(&w, &NoResidency).unwrap();
    assert_eq!(c.classified, Tier::Low);
    assert_eq!(c.device, dgpu, "{}", c.reason);
    assert_eq!(c.tier, Tier::High);
    assert!(c.crossed_tier);
    assert!(c.reason.contains("beating"), "{}", c.reason);
    assert!(c.est_wake_s > 0.0, "waking the idle dGPU is charged");

    // A CPU-only machine: heavy work has nowhere to go but the CPU, and says so.
    let cpu = Scheduler::new(described::cpu_only(), SchedConfig::default());
    let heavy = WorkloadProfile::new("gemm", WorkloadKind::HeavyCompute)
        .with_complexity(0.9)
        .with_work(1e10);
    let c = cpu.choose(&heavy, &NoResidency).unwrap();
    assert_eq!(
        (c.classified, c.tier, c.crossed_tier),
        (Tier::High, Tier::Low, true)
    );
    assert!(
        c.reason.contains("no eligible high tide device"),
        "{}",
        c.reason
    );
}

#[test]
fn cross_tier_margin_is_respected() {
    let devs = described::laptop();
    let dgpu = by_kind(&devs, DeviceKind::Discrete);
    let w = light("big-sum").with_work(1e11);
    let cfg = SchedConfig {
        cross_tier_margin: 1000.0,
        ..Default::default()
    };
    let s = Scheduler::new(devs, cfg);
    let c = s.choose(&w, &NoResidency).unwrap();
    assert_ne!(c.device, dgpu, "{}", c.reason);
    assert!(!c.crossed_tier);
}

#[test]
fn history_learning_moves_work() {
    let (s, _cpu, igpu, _dgpu) = laptop();
    let blur = light("blur");
    let before = s.choose(&blur, &NoResidency).unwrap();
    assert_eq!(before.device, igpu, "{}", before.reason);
    assert!(before.reason.contains("prior"));
    // The first run is a warm-up (compilation, loading): counted, not learned from.
    s.record_run(igpu, "blur", 1e8, Duration::from_secs(5));
    assert!(s.history(igpu, "blur").is_none());
    // The iGPU turns out to be slow for this kernel (e.g. a driver fallback path).
    for _ in 0..5 {
        s.record_run(igpu, "blur", 1e8, Duration::from_millis(50));
    }
    let (rate, n) = s.history(igpu, "blur").unwrap();
    assert_eq!(n, 5);
    assert!((rate - 2e9).abs() / 2e9 < 1e-9, "rate {rate}");
    let after = s.choose(&blur, &NoResidency).unwrap();
    assert_ne!(after.device, igpu, "{}", after.reason);
    // Only this kernel's history moved: another kernel still goes to the iGPU.
    assert_eq!(
        s.choose(&light("sharpen"), &NoResidency).unwrap().device,
        igpu
    );
    // And fast runs bring it back (the average forgets old runs).
    for _ in 0..40 {
        s.record_run(igpu, "blur", 1e8, Duration::from_micros(20));
    }
    let back = s.choose(&blur, &NoResidency).unwrap();
    assert_eq!(back.device, igpu, "{}", back.reason);
    assert!(back.reason.contains("learned"), "{}", back.reason);
    s.clear_history();
    assert!(s.history(igpu, "blur").is_none());
}

#[test]
fn bad_history_and_health_input_is_rejected() {
    let (s, cpu, ..) = laptop();
    assert!(s
        .try_record_run(DeviceId(u64::MAX), "k", 1.0, Duration::from_millis(1))
        .is_err());
    assert!(s
        .try_record_run(cpu, "", 1.0, Duration::from_millis(1))
        .is_err());
    assert!(s
        .try_record_run(cpu, "k", f64::NAN, Duration::from_millis(1))
        .is_err());
    assert!(s
        .try_record_run(cpu, "k", 0.0, Duration::from_millis(1))
        .is_err());
    // A zero duration is clamped, not a division by zero (twice: the first is a warm-up).
    s.try_record_run(cpu, "k", 1.0, Duration::ZERO).unwrap();
    s.try_record_run(cpu, "k", 1.0, Duration::ZERO).unwrap();
    assert!(s.history(cpu, "k").unwrap().0.is_finite());
    s.record_run(cpu, "k2", f64::NAN, Duration::from_millis(1)); // ignored, no panic
    assert!(s.history(cpu, "k2").is_none());

    let hot = DeviceHealth {
        temperature_c: Some(f32::NAN),
        ..Default::default()
    };
    assert!(s.try_set_health(cpu, hot).is_err());
    let util = DeviceHealth {
        utilization: Some(1.5),
        ..Default::default()
    };
    assert!(s.try_set_health(cpu, util).is_err());
    assert!(s
        .try_set_health(DeviceId(u64::MAX), DeviceHealth::default())
        .is_err());
    s.set_health(cpu, util); // ignored, no panic
    assert_eq!(s.health(cpu), None);
}

#[test]
fn invalid_configuration_is_rejected_or_replaced() {
    let cfg = SchedConfig {
        cross_tier_margin: f64::NAN,
        ..Default::default()
    };
    assert!(Scheduler::try_new(described::laptop(), cfg.clone()).is_err());
    let s = Scheduler::new(described::laptop(), cfg);
    assert_eq!(s.config().cross_tier_margin, 1.5);
    for bad in [
        SchedConfig {
            history_alpha: 0.0,
            ..Default::default()
        },
        SchedConfig {
            queue_capacity: 0,
            ..Default::default()
        },
        SchedConfig {
            workers_per_device: 0,
            ..Default::default()
        },
        SchedConfig {
            thermal_weight: -1.0,
            ..Default::default()
        },
        SchedConfig {
            default_link_bytes_per_s: 0.0,
            ..Default::default()
        },
    ] {
        assert!(matches!(bad.validate(), Err(Error::InvalidArgument(_))));
    }
}

#[test]
fn residency_keeps_work_where_its_data_is() {
    let (s, g0, g1) = desktop();
    let w = WorkloadProfile::new("infer", WorkloadKind::AiInference)
        .with_complexity(0.8)
        .with_memory(512 * MIB)
        .with_work(2e11);
    // Nothing resident: the two identical GPUs tie and the first wins.
    assert_eq!(s.choose(&w, &NoResidency).unwrap().device, g0);
    let c = s.choose(&w, &ResidencyMap::resident_on(g1)).unwrap();
    assert_eq!(c.device, g1, "{}", c.reason);
    assert_eq!(c.est_transfer_s, 0.0);
    // Half the data on g0 is not enough to beat all of it on g1.
    let half = |d: DeviceId| {
        if d == g0 {
            256 * MIB
        } else if d == g1 {
            0
        } else {
            u64::MAX
        }
    };
    assert_eq!(s.choose(&w, &half).unwrap().device, g1);
}

#[test]
fn queue_backlog_spreads_work_and_respects_priority() {
    let (s, g0, g1) = desktop();
    let w = WorkloadProfile::new("infer", WorkloadKind::AiInference)
        .with_complexity(0.8)
        .with_memory(64 * MIB)
        .with_work(2e11);
    s.queue_started(g0, Priority::Normal, 0.5);
    assert!((s.backlog_s(g0).unwrap() - 0.5).abs() < 1e-9);
    let c = s.choose(&w, &NoResidency).unwrap();
    assert_eq!(c.device, g1, "{}", c.reason);
    // Realtime work jumps the normal-priority queue: g0's backlog does not count for it.
    let rt = w.clone().with_priority(Priority::Realtime);
    let c = s.choose(&rt, &NoResidency).unwrap();
    assert_eq!(c.device, g0, "{}", c.reason);
    assert_eq!(c.est_queue_s, 0.0);
    s.queue_finished(g0, Priority::Normal, 0.5);
    assert_eq!(s.backlog_s(g0), Some(0.0));
    // An unmatched `finished` saturates at zero.
    s.queue_finished(g0, Priority::Normal, 10.0);
    assert_eq!(s.backlog_s(g0), Some(0.0));
    assert_eq!(s.choose(&w, &NoResidency).unwrap().device, g0);
}

#[test]
fn a_hot_or_busy_gpu_is_avoided() {
    let (s, g0, g1) = desktop();
    let w = WorkloadProfile::new("infer", WorkloadKind::AiInference)
        .with_complexity(0.8)
        .with_memory(512 * MIB)
        .with_work(1e12);
    let data_on_g0 = ResidencyMap::resident_on(g0);
    assert_eq!(s.choose(&w, &data_on_g0).unwrap().device, g0);
    s.set_health(
        g0,
        DeviceHealth {
            temperature_c: Some(90.0),
            ..Default::default()
        },
    );
    let c = s.choose(&w, &data_on_g0).unwrap();
    assert_eq!(c.device, g1, "{}", c.reason);
    assert_eq!(c.penalty, 1.0);
    assert!(c.candidates.iter().find(|(d, _)| *d == g0).unwrap().1 > c.finish_s());
    // Cool again, but fully used by another process.
    s.set_health(
        g0,
        DeviceHealth {
            temperature_c: Some(60.0),
            utilization: Some(1.0),
            ..Default::default()
        },
    );
    assert_eq!(s.choose(&w, &NoResidency).unwrap().device, g1);
    // Healthy again: back to g0.
    s.set_health(
        g0,
        DeviceHealth {
            temperature_c: Some(60.0),
            utilization: Some(0.0),
            ..Default::default()
        },
    );
    assert_eq!(s.choose(&w, &NoResidency).unwrap().device, g0);
    // Near its power cap: penalised.
    s.set_health(
        g0,
        DeviceHealth {
            power_w: Some(440.0),
            power_limit_w: Some(450.0),
            ..Default::default()
        },
    );
    assert_eq!(s.choose(&w, &NoResidency).unwrap().device, g1);
}

#[test]
fn a_hot_laptop_dgpu_loses_medium_work_to_the_igpu() {
    let (s, _cpu, igpu, dgpu) = laptop();
    let w = WorkloadProfile::new("infer", WorkloadKind::AiInference)
        .with_complexity(0.6)
        .with_memory(32 * MIB)
        .with_work(2e10);
    assert_eq!(s.choose(&w, &NoResidency).unwrap().device, dgpu);
    s.set_health(
        dgpu,
        DeviceHealth {
            temperature_c: Some(95.0),
            utilization: Some(0.9),
            ..Default::default()
        },
    );
    let c = s.choose(&w, &NoResidency).unwrap();
    assert_eq!(c.device, igpu, "{}", c.reason);
    assert!(c.crossed_tier);
}

#[test]
fn cuda_and_vulkan_views_of_one_h100_are_one_device() {
    let devs = described::h100_server();
    let cuda = devs
        .iter()
        .find(|d| d.backend == Backend::Cuda)
        .unwrap()
        .clone();
    let vk = devs
        .iter()
        .find(|d| d.backend == Backend::Vulkan)
        .unwrap()
        .clone();
    assert!(same_physical_device(&cuda, &vk));
    assert!(!same_physical_device(&cuda, &devs[0]));
    let views = eligible_views(&devs, &[Backend::Vulkan, Backend::Cuda, Backend::Host]);
    assert_eq!(views.len(), 2);
    assert!(views.iter().all(|d| d.backend != Backend::Vulkan));

    let s = Scheduler::new(devs, SchedConfig::default());
    assert_eq!(s.tier_of(cuda.id), Some(Tier::High));
    assert_eq!(s.tier_of(vk.id), Some(Tier::High));
    let mut views = s.physical_views(vk.id);
    views.sort();
    let mut want = vec![cuda.id, vk.id];
    want.sort();
    assert_eq!(views, want);

    let w = WorkloadProfile::new("gemm", WorkloadKind::HeavyCompute)
        .with_complexity(0.9)
        .with_memory(GIB / 2)
        .with_work(1e12);
    let c = s.choose(&w, &NoResidency).unwrap();
    assert_eq!(c.device, cuda.id, "{}", c.reason);
    assert!(
        c.candidates.iter().all(|(d, _)| *d != vk.id),
        "the vulkan view is not a second GPU"
    );
    assert_eq!(c.candidates.len(), 2);

    // No CUDA variant: the Vulkan view of the same GPU is used.
    let spv = w
        .clone()
        .with_backends(vec![Backend::Vulkan, Backend::Host]);
    assert_eq!(s.choose(&spv, &NoResidency).unwrap().device, vk.id);

    // One queue and one health per physical GPU.
    s.queue_started(cuda.id, Priority::Normal, 0.25);
    assert!((s.backlog_s(vk.id).unwrap() - 0.25).abs() < 1e-9);
    assert!(s.choose(&spv, &NoResidency).unwrap().est_queue_s > 0.2);
    s.queue_finished(cuda.id, Priority::Normal, 0.25);
    s.set_health(
        cuda.id,
        DeviceHealth {
            temperature_c: Some(88.0),
            ..Default::default()
        },
    );
    assert_eq!(s.health(vk.id).and_then(|h| h.temperature_c), Some(88.0));
}

#[derive(Debug)]
struct AlwaysHigh;
impl ClassifyPolicy for AlwaysHigh {
    fn classify(&self, _w: &WorkloadProfile) -> Classification {
        Classification {
            tier: Tier::High,
            score: 1.0,
            reason: "always high".into(),
        }
    }
}

#[test]
fn the_policy_is_replaceable() {
    let devs = described::laptop();
    let dgpu = by_kind(&devs, DeviceKind::Discrete);
    let s = Scheduler::new(devs, SchedConfig::default().with_policy(AlwaysHigh));
    let w = light("l").with_work(1e10);
    let c = s.choose(&w, &NoResidency).unwrap();
    assert_eq!(c.classified, Tier::High);
    assert_eq!(c.device, dgpu, "{}", c.reason);
    assert!(c.reason.starts_with("always high"));
}

#[test]
fn choose_on_reports_the_pinned_device() {
    let (s, cpu, igpu, dgpu) = laptop();
    let w = light("l").with_backends(vec![Backend::Host, Backend::Cuda]);
    let c = s.choose_on(dgpu, &w, &NoResidency).unwrap();
    assert_eq!((c.device, c.tier, c.crossed_tier), (dgpu, Tier::High, true));
    assert!(matches!(
        s.choose_on(igpu, &w, &NoResidency),
        Err(Error::NoKernelVariant { .. })
    ));
    assert!(matches!(
        s.choose_on(DeviceId(u64::MAX), &w, &NoResidency),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(s.choose_on(cpu, &w, &NoResidency).unwrap().device, cpu);
}

#[test]
fn duplicate_device_ids_are_kept_once() {
    let d = described::cpu(4);
    let s = Scheduler::new(vec![d.clone(), d], SchedConfig::default());
    assert_eq!(s.devices().len(), 1);
}

#[test]
fn a_residency_may_call_back_into_the_scheduler() {
    let (s, cpu, ..) = laptop();
    let r = |d: DeviceId| {
        // Recording while a choice is being made must not deadlock.
        s.record_run(cpu, "reentrant", 1.0, Duration::from_micros(1));
        s.record_run(cpu, "reentrant", 1.0, Duration::from_micros(1));
        s.set_health(d, DeviceHealth::default());
        0
    };
    s.choose(&light("l"), &r).unwrap();
    assert!(s.history(cpu, "reentrant").is_some());
}
