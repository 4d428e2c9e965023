//! Metadata-only workloads: planned, not run (host device; every machine). The host device
//! uses host copies in place; a host device with copies of its own stands for a device
//! that gets copies (what would cross to it, whether its budget fits).

use std::sync::Arc;

use vuma::{
    kernels, BudgetFit, Error, GpuWorkload, Priority, Scalar, UnifiedMemoryManager, WorkloadKind,
};
use vuma_core::HostDevice;

fn host_only() -> UnifiedMemoryManager {
    UnifiedMemoryManager::builder()
        .cuda(false)
        .vulkan(false)
        .build()
        .unwrap()
}

/// A host device with copies of its own (`budget` bytes).
fn with_copies(budget: u64) -> UnifiedMemoryManager {
    UnifiedMemoryManager::builder()
        .cuda(false)
        .vulkan(false)
        .host(false)
        .device(Arc::new(
            HostDevice::with_budget("host", budget).without_in_place(),
        ))
        .build()
        .unwrap()
}

fn seed_task() -> GpuWorkload {
    GpuWorkload::metadata("AI_Training_Job", "INFERENCE".parse().unwrap())
        .complexity(0.95)
        .memory_requirement(4096 << 20)
        .priority(Priority::from_level(10).unwrap())
}

#[test]
fn the_seed_block_is_planned_with_memory_reserved_lazily() {
    let vuma = host_only();
    let w = seed_task();
    assert!(w.is_metadata_only());
    assert_eq!(w.kind, WorkloadKind::AiInference);
    assert_eq!(w.priority, Priority::Realtime);
    let r = vuma.process_workload(&w).unwrap();
    assert!(r.is_planned());
    let plan = r.plan.as_ref().unwrap();
    let reserved = plan
        .reserved
        .as_ref()
        .expect("a managed buffer is reserved");
    assert_eq!(reserved.len(), 4096 << 20);
    // Lazily: no host or device memory, no allocation, nothing moved.
    let s = vuma.stats();
    assert_eq!(s.buffers, 1);
    assert_eq!(s.host.bytes_in_use, 0);
    assert!(s
        .devices
        .iter()
        .all(|d| d.bytes_in_use == 0 && d.allocations == 0));
    assert_eq!(r.bytes_moved, 0);
    assert!(r.buffers.is_empty());
    assert_eq!(plan.buffers.len(), 1);
    let b = &plan.buffers[0];
    assert!(b.reserved && !b.resident);
    assert_eq!(b.bytes_to_move, 0, "never written: nothing crosses");
    assert!(b.transfer.contains("never written"), "{}", b.transfer);
    // The three steps, as text and as JSON.
    let text = r.to_string();
    for step in [
        "1. managed memory",
        "2. device",
        "3. transfer plan",
        "reserved lazily",
    ] {
        assert!(text.contains(step), "{text}");
    }
    assert!(text.contains(&r.device));
    let j = r.to_json();
    assert_eq!(j["planned"], true);
    assert_eq!(j["plan"]["buffers"][0]["size"], 4096u64 << 20);
    assert_eq!(j["plan"]["bytes_to_move"], 0);
    // Dropping the report frees the reservation.
    drop(r);
    assert_eq!(vuma.stats().buffers, 0);
}

#[test]
fn planning_uses_the_same_device_choice_as_a_run() {
    let vuma = host_only();
    let r = vuma.plan(&seed_task()).unwrap();
    let profile = vuma.profile(&seed_task());
    let c = vuma
        .scheduler()
        .choose(&profile, &vuma::sched::NoResidency)
        .unwrap();
    assert_eq!(vuma.scheduler().device(c.device).unwrap().name, r.device);
    assert_eq!(r.tier, c.tier);
    assert!(!r.reason.is_empty());
}

#[test]
fn buffers_with_host_data_would_move_and_resident_ones_would_not() {
    let vuma = with_copies(8 << 30);
    let n = 1u32 << 16;
    let x = vuma
        .create_buffer_from_slice(&vec![1.5f32; n as usize])
        .unwrap();
    let y = vuma.create_buffer(u64::from(n) * 4).unwrap();
    let w = GpuWorkload::metadata("plan-with-buffers", WorkloadKind::LightCompute)
        .read(&x, 1)
        .write(&y);
    let r = vuma.process_workload(&w).unwrap();
    let plan = r.plan.as_ref().unwrap();
    assert!(
        plan.reserved.is_none(),
        "the workload brings its own buffers"
    );
    assert_eq!(plan.buffers.len(), 2);
    assert_eq!(plan.buffers[0].bytes_to_move, u64::from(n) * 4);
    assert_eq!(
        plan.buffers[1].bytes_to_move, 0,
        "write-only: nothing uploaded"
    );
    assert!(plan.buffers[1].transfer.contains("overwritten"));

    // Run a kernel over x on that device: x is then resident there, and the plan says so.
    let run = GpuWorkload::new("relu", WorkloadKind::LightCompute, kernels::relu_scale())
        .read(&x, 1)
        .write(&y)
        .scalar(Scalar::U32(n))
        .scalar(Scalar::F32(1.0))
        .launch(kernels::launch_for(u64::from(n)));
    let ran = vuma.process_workload(&run).unwrap();
    assert!(!ran.is_planned());
    let again = vuma.process_workload(&w).unwrap();
    let p = &again.plan.as_ref().unwrap().buffers[0];
    if again.device == ran.device {
        assert!(p.resident, "{p:?}");
        assert_eq!(p.bytes_to_move, 0);
    }
}

#[test]
fn a_budget_too_small_is_reported_not_hit() {
    let vuma = with_copies(1 << 20);
    let w = GpuWorkload::metadata("big", WorkloadKind::HeavyCompute).memory_requirement(8 << 20);
    let r = vuma.plan(&w).unwrap();
    let b = &r.plan.as_ref().unwrap().buffers[0];
    assert!(
        matches!(b.fit, BudgetFit::TooLarge { budget } if budget == 1 << 20),
        "{:?}",
        b.fit
    );
    assert!(r.to_string().contains("can never fit"));
    // In place, the device's budget does not apply: nothing is allocated on it.
    let vuma = UnifiedMemoryManager::builder()
        .cuda(false)
        .vulkan(false)
        .host_budget(1 << 20)
        .build()
        .unwrap();
    let r = vuma.plan(&w).unwrap();
    let b = &r.plan.as_ref().unwrap().buffers[0];
    assert_eq!(b.fit, BudgetFit::InPlace);
    assert!(r.to_string().contains("outside its budget"), "{r}");
}

#[test]
fn buffers_on_a_device_that_uses_host_memory_in_place_would_not_move() {
    let vuma = host_only();
    let n = 1u32 << 16;
    let x = vuma
        .create_buffer_from_slice(&vec![1.5f32; n as usize])
        .unwrap();
    let y = vuma.create_buffer(u64::from(n) * 4).unwrap();
    let w = GpuWorkload::metadata("plan-in-place", WorkloadKind::LightCompute)
        .read(&x, 1)
        .write(&y);
    let r = vuma.process_workload(&w).unwrap();
    let plan = r.plan.as_ref().unwrap();
    assert_eq!(plan.bytes_to_move(), 0);
    for b in &plan.buffers {
        assert_eq!(b.fit, BudgetFit::InPlace);
        assert!(
            b.placement_reason.contains("in place"),
            "{}",
            b.placement_reason
        );
    }
    assert!(plan.buffers[0].resident && plan.buffers[0].transfer.contains("used in place"));
    assert!(!plan.buffers[1].resident && plan.buffers[1].transfer.contains("never written"));
    let j = r.to_json();
    assert_eq!(j["plan"]["buffers"][0]["budget"]["fit"], "in-place");
}

#[test]
fn malformed_metadata_workloads_are_typed_errors() {
    let vuma = host_only();
    let empty = GpuWorkload::metadata("empty", WorkloadKind::Ui);
    assert!(matches!(
        vuma.process_workload(&empty),
        Err(Error::InvalidArgument(m)) if m.contains("neither a memory requirement nor buffers")
    ));
    let bad = seed_task().complexity(1.5);
    assert!(matches!(
        vuma.process_workload(&bad),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(vuma.stats().buffers, 0, "a refused plan reserves nothing");
    assert!("QUANTUM".parse::<WorkloadKind>().is_err());
    assert!(Priority::from_level(11).is_err());
}

#[test]
fn a_dry_run_of_a_kernel_workload_touches_nothing() {
    let vuma = host_only();
    let n = 4096u32;
    let x = vuma
        .create_buffer_from_slice(&vec![2.0f32; n as usize])
        .unwrap();
    let y = vuma.create_buffer(u64::from(n) * 4).unwrap();
    let w = GpuWorkload::new("relu", WorkloadKind::AiInference, kernels::relu_scale())
        .read(&x, 1)
        .write(&y)
        .scalar(Scalar::U32(n))
        .scalar(Scalar::F32(1.0))
        .launch(kernels::launch_for(u64::from(n)));
    let before = vuma.stats();
    let r = vuma.plan(&w).unwrap();
    assert!(r.is_planned());
    let plan = r.plan.as_ref().unwrap();
    assert!(plan.reserved.is_none());
    assert_eq!(plan.bytes_to_move(), 0, "the host device uses x in place");
    assert_eq!(
        vuma.stats(),
        before,
        "planning allocates, moves and records nothing"
    );
    assert_eq!(
        vuma.to_vec_of::<f32>(&y).unwrap()[0],
        0.0,
        "and runs nothing"
    );
}
