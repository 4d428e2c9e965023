//! Property tests: on any machine and any workload the choice is eligible and consistent
//! with the rule it claims; tiles always cover the working set exactly.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use vuma_core::{Backend, DeviceId, DeviceInfo, DeviceKind, Error, LinkInfo};
use vuma_sched::{
    backend_rank, described, eligible_views, plan_tiles, tile_size, DeviceHealth, Priority,
    ResidencyMap, SchedConfig, Scheduler, Tier, WorkloadKind, WorkloadProfile, MIN_TILE_BYTES,
};

#[derive(Debug, Clone)]
struct Dev {
    backend: Backend,
    kind: DeviceKind,
    uuid: Option<u8>,
    units: u32,
    link_gbps: Option<f64>,
    unified: bool,
}

fn dev_strategy() -> impl Strategy<Value = Dev> {
    (
        prop_oneof![
            Just(Backend::Cuda),
            Just(Backend::Vulkan),
            Just(Backend::Host)
        ],
        prop_oneof![
            Just(DeviceKind::Discrete),
            Just(DeviceKind::Integrated),
            Just(DeviceKind::Cpu),
            Just(DeviceKind::Virtual)
        ],
        proptest::option::of(0u8..3),
        1u32..200,
        proptest::option::of(0.5f64..100.0),
        any::<bool>(),
    )
        .prop_map(|(backend, kind, uuid, units, link_gbps, unified)| Dev {
            backend,
            kind,
            uuid,
            units,
            link_gbps,
            unified,
        })
}

fn build(d: &Dev) -> DeviceInfo {
    let mut i = described::cpu(4);
    i.backend = d.backend;
    i.kind = d.kind;
    i.uuid = d.uuid.map(|u| [u; 16]);
    i.compute_units = d.units;
    i.host_link = d.link_gbps.map(|g| LinkInfo::shared_memory(g * 1e9));
    i.unified_memory = d.unified;
    i.name = format!("{:?}/{:?}", d.backend, d.kind);
    i
}

fn kind_strategy() -> impl Strategy<Value = WorkloadKind> {
    prop_oneof![
        Just(WorkloadKind::Ui),
        Just(WorkloadKind::Graphics2D),
        Just(WorkloadKind::LightCompute),
        Just(WorkloadKind::HeavyCompute),
        Just(WorkloadKind::AiInference),
        Just(WorkloadKind::AiTraining),
        Just(WorkloadKind::RayTracing),
        Just(WorkloadKind::Fp32Heavy),
        "[a-z]{1,6}".prop_map(WorkloadKind::Custom),
    ]
}

fn priority_strategy() -> impl Strategy<Value = Priority> {
    prop_oneof![
        Just(Priority::Low),
        Just(Priority::Normal),
        Just(Priority::High),
        Just(Priority::Realtime)
    ]
}

#[derive(Debug, Clone)]
struct Case {
    devs: Vec<Dev>,
    kind: WorkloadKind,
    complexity: f32,
    memory: u64,
    priority: Priority,
    backends: Vec<Backend>,
    work: f64,
    name: u8,
    missing: Vec<Option<u64>>,
    health: Vec<Option<(f32, f32)>>,
    history: Vec<(usize, u8, f64, u64)>,
    backlog: Vec<(usize, Priority, f64)>,
}

fn case_strategy() -> impl Strategy<Value = Case> {
    proptest::collection::vec(dev_strategy(), 0..6).prop_flat_map(|devs| {
        let n = devs.len();
        (
            Just(devs),
            kind_strategy(),
            0.0f32..=1.0,
            prop_oneof![Just(0u64), 1u64..(4u64 << 30), Just(u64::MAX / 2)],
            priority_strategy(),
            proptest::sample::subsequence(
                vec![Backend::Cuda, Backend::Vulkan, Backend::Host],
                0..=3,
            ),
            prop_oneof![Just(0.0f64), 1.0f64..1e14],
            0u8..3,
            proptest::collection::vec(
                proptest::option::of(prop_oneof![Just(0u64), 1u64..(8u64 << 30), Just(u64::MAX)]),
                n,
            ),
            proptest::collection::vec(proptest::option::of((20.0f32..110.0, 0.0f32..=1.0)), n),
            proptest::collection::vec(
                (0..n.max(1), 0u8..3, 1.0f64..1e12, 0u64..10_000_000_000),
                0..8,
            ),
            proptest::collection::vec((0..n.max(1), priority_strategy(), 0.0f64..10.0), 0..4),
        )
            .prop_map(
                |(
                    devs,
                    kind,
                    complexity,
                    memory,
                    priority,
                    backends,
                    work,
                    name,
                    missing,
                    health,
                    history,
                    backlog,
                )| Case {
                    devs,
                    kind,
                    complexity,
                    memory,
                    priority,
                    backends,
                    work,
                    name,
                    missing,
                    health,
                    history,
                    backlog,
                },
            )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn choice_is_always_eligible_and_consistent(case in case_strategy()) {
        let infos: Vec<DeviceInfo> = case.devs.iter().map(build).collect();
        let ids: Vec<DeviceId> = infos.iter().map(|d| d.id).collect();
        let s = Scheduler::new(infos.clone(), SchedConfig::default());
        for (i, h) in case.health.iter().enumerate() {
            if let Some((t, u)) = h {
                s.try_set_health(ids[i], DeviceHealth { temperature_c: Some(*t), utilization: Some(*u), ..Default::default() }).unwrap();
            }
        }
        for &(i, name, work, ns) in &case.history {
            if i < ids.len() {
                s.try_record_run(ids[i], &format!("k{name}"), work, Duration::from_nanos(ns)).unwrap();
            }
        }
        for &(i, p, secs) in &case.backlog {
            if i < ids.len() {
                s.queue_started(ids[i], p, secs);
            }
        }
        let mut residency = ResidencyMap { missing: HashMap::new(), default: u64::MAX };
        for (i, m) in case.missing.iter().enumerate() {
            if let Some(m) = m {
                residency.missing.insert(ids[i], *m);
            }
        }
        let w = WorkloadProfile {
            name: format!("k{}", case.name),
            kind: case.kind.clone(),
            complexity: case.complexity,
            memory_requirement: case.memory,
            priority: case.priority,
            backends: case.backends.clone(),
            work_units: case.work,
        };
        let views = eligible_views(&infos, &case.backends);
        match s.choose(&w, &residency) {
            Err(Error::NoEligibleDevice(n)) => {
                prop_assert_eq!(n, w.name.clone());
                prop_assert!(views.is_empty());
                prop_assert!(infos.iter().all(|d| !case.backends.contains(&d.backend)));
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
            Ok(c) => {
                let chosen = infos.iter().find(|d| d.id == c.device).expect("chosen is a known device");
                prop_assert!(case.backends.contains(&chosen.backend), "chosen backend not eligible");
                // No preferred view of the same physical GPU was eligible.
                prop_assert!(!infos.iter().any(|o| o.id != chosen.id
                    && case.backends.contains(&o.backend)
                    && vuma_sched::same_physical_device(o, chosen)
                    && backend_rank(o.backend) < backend_rank(chosen.backend)));
                // Candidates are exactly the eligible views.
                let mut cand: Vec<DeviceId> = c.candidates.iter().map(|(d, _)| *d).collect();
                let mut want: Vec<DeviceId> = views.iter().map(|d| d.id).collect();
                cand.sort();
                want.sort();
                prop_assert_eq!(cand, want);
                prop_assert!(c.candidates.iter().all(|(_, f)| !f.is_nan() && *f >= 0.0));
                prop_assert!(c.candidates.windows(2).all(|p| p[0].1 <= p[1].1), "sorted best first");
                prop_assert_eq!(Some(c.tier), s.tier_of(c.device));
                prop_assert_eq!(c.crossed_tier, c.tier != c.classified);
                prop_assert!(c.est_queue_s >= 0.0 && c.est_transfer_s >= 0.0 && c.est_run_s > 0.0 && c.penalty >= 1.0);
                let best_in = |t: Tier| c.candidates.iter()
                    .filter(|(d, _)| s.tier_of(*d) == Some(t))
                    .map(|(_, f)| *f)
                    .fold(f64::INFINITY, f64::min);
                let mine = c.finish_s();
                let tier_best = best_in(c.classified);
                if c.crossed_tier {
                    // Crossed only if the classified tier had nothing, or was beaten by the margin.
                    prop_assert!(tier_best.is_infinite() && !c.candidates.iter().any(|(d, _)| s.tier_of(*d) == Some(c.classified))
                        || mine * s.config().cross_tier_margin < tier_best);
                } else {
                    prop_assert_eq!(mine, tier_best);
                }
            }
        }
    }

    #[test]
    fn tiles_cover_the_working_set_exactly(ws in prop_oneof![0u64..(1u64 << 24), 0u64..(8u64 << 30)], l2 in prop_oneof![Just(0u64), 1u64..(256u64 << 20)], align in prop_oneof![Just(0u64), Just(1u64), Just(256u64), Just(4096u64), 1u64..(1u64 << 20)]) {
        let t = plan_tiles(ws, l2, align);
        let a = align.max(1);
        if ws == 0 {
            prop_assert!(t.is_empty());
        } else {
            prop_assert_eq!(t[0].start, 0);
            prop_assert_eq!(t.last().unwrap().end, ws);
            for w in t.windows(2) {
                prop_assert_eq!(w[0].end, w[1].start);
            }
            let max = tile_size(l2, align).unwrap_or(ws);
            for r in &t {
                prop_assert!(r.start < r.end);
                prop_assert!(r.end - r.start <= max);
                prop_assert_eq!(r.start % a, 0);
            }
            if let Some(ts) = tile_size(l2, align) {
                prop_assert!(ts >= MIN_TILE_BYTES.min(ts));
                prop_assert_eq!(ts % a, 0);
                // Tiles fit in about half the L2, unless the floor forced them larger.
                prop_assert!(ts <= (l2 / 2).max(MIN_TILE_BYTES.div_ceil(a) * a));
            }
        }
    }
}

#[test]
fn tiles_for_the_h100() {
    // 50 MiB of L2: tiles of 25 MiB.
    let l2 = 50 << 20;
    assert_eq!(plan_tiles(10 << 20, l2, 256), vec![0..(10 << 20)]);
    let t = plan_tiles(60 << 20, l2, 256);
    assert_eq!(
        t,
        vec![
            0..(25 << 20),
            (25 << 20)..(50 << 20),
            (50 << 20)..(60 << 20)
        ]
    );
    assert!(plan_tiles(0, l2, 256).is_empty());
    // Unknown L2: one tile.
    assert_eq!(plan_tiles(1 << 30, 0, 256), vec![0..(1 << 30)]);
    // Odd alignment rounds the tile down to a multiple.
    assert_eq!(tile_size(l2, 3 << 20), Some(24 << 20));
    assert_eq!(vuma_sched::tiles(60 << 20, l2, 256).len(), 3);
    // A tiny cache does not explode the plan.
    assert_eq!(tile_size(1, 1), Some(MIN_TILE_BYTES));
    // Huge inputs do not overflow.
    let t: Vec<_> = vuma_sched::tiles(u64::MAX, u64::MAX, u64::MAX).collect();
    assert_eq!(t, vec![0..u64::MAX]);
}
