//! The facade on the host device: the seed scenario end to end, and typed errors for bad
//! workloads.

use vuma::{demo, kernels, GpuWorkload, Priority, UnifiedMemoryManager, WorkloadKind};
use vuma_core::{Error, Kernel, Placement, Scalar};

fn host_only() -> UnifiedMemoryManager {
    UnifiedMemoryManager::builder()
        .cuda(false)
        .vulkan(false)
        .build()
        .expect("host device always starts")
}

#[test]
fn seed_scenario_runs_end_to_end_on_the_host() {
    let vuma = host_only();
    let out = demo::run(&vuma, &demo::DemoOptions { scale: 0.05 }).expect("demo");
    assert_eq!(out.reports.len(), 4);
    assert_eq!(out.verified.len(), 3);
    // The second run of the AI job finds its input resident.
    let again = &out.reports[3];
    assert_eq!(again.bytes_moved, 0);
    assert!(again.bytes_saved > 0);
    assert!(again.buffers.iter().all(|b| !b.allocated));
    for r in &out.reports {
        assert_eq!(r.device, "host");
        assert!(!r.reason.is_empty());
        assert!(r
            .buffers
            .iter()
            .all(|b| b.placement == Placement::HostMapped));
        // The host device uses every host copy in place: nothing allocated, nothing moved.
        assert!(
            r.buffers
                .iter()
                .all(|b| b.in_place && b.bytes_moved == 0 && b.transfers.is_empty()),
            "{r}"
        );
        assert_eq!(r.bytes_moved, 0);
        let text = r.to_string();
        assert!(text.contains(&r.workload));
        assert!(text.contains("in place"), "{text}");
        assert!(r.to_json()["buffers"].is_array());
        assert!(r.to_json()["buffers"][0]["in_place"] == true);
    }
    let s = vuma.stats();
    let d = s.devices[0];
    assert_eq!(
        (d.bytes_in_use, d.peak_bytes, d.allocations, d.bytes_in),
        (0, 0, 0, 0)
    );
    assert!(d.in_place_uses >= 7 && d.in_place_bytes > 0, "{d:?}");
    assert_eq!(
        s.host.bytes_in, 0,
        "nothing brought back to the host either"
    );
}

/// The host device shares host memory: its reports count no bytes over a link and say so,
/// as the memory statistics do (issue 19: the report said "64 MiB over the link").
#[test]
fn reports_on_shared_memory_claim_no_link_bytes() {
    let vuma = host_only();
    let out = demo::run(&vuma, &demo::DemoOptions { scale: 0.05 }).expect("demo");
    let mut uploads = 0;
    for r in &out.reports {
        assert!(r.shared_memory, "the host device shares host memory");
        assert_eq!(r.link_bytes, 0);
        let text = r.to_string();
        assert!(!text.contains("over the link"), "{text}");
        assert!(text.contains("nothing crossed a link"), "{text}");
        let j = r.to_json();
        assert_eq!(j["link_bytes"], 0);
        assert_eq!(j["shared_memory"], true);
        for b in j["buffers"].as_array().unwrap() {
            for t in b["transfers"].as_array().unwrap() {
                assert_eq!(t["link_bytes"], 0, "{t}");
                uploads += usize::from(t["logical_bytes"].as_u64().unwrap() > 0);
            }
        }
    }
    assert_eq!(uploads, 0, "in place: the demo moved no data to the device");
    let host = vuma.stats().host;
    assert_eq!(host.link_bytes_in, 0);
    assert_eq!(vuma.stats().devices[0].link_bytes_in, 0);
}

#[test]
fn workload_without_a_usable_kernel_is_a_typed_error() {
    let vuma = host_only();
    let b = vuma.create_buffer(64).unwrap();
    let k = Kernel::new("cuda-only").with_cuda_source("extern \"C\" __global__ void f() {}", "f");
    let w = GpuWorkload::new("w", WorkloadKind::LightCompute, k).read(&b, 1);
    match vuma.process_workload(&w) {
        Err(Error::NoEligibleDevice(name)) => assert_eq!(name, "cuda-only"),
        other => panic!("expected NoEligibleDevice, got {other:?}"),
    }
}

#[test]
fn bad_complexity_and_sizes_are_typed_errors() {
    let vuma = host_only();
    assert!(matches!(vuma.create_buffer(0), Err(Error::ZeroSize { .. })));
    assert!(matches!(
        vuma.create_buffer(u64::MAX),
        Err(Error::TooLarge { .. })
    ));
    let b = vuma.create_buffer(64).unwrap();
    let w = GpuWorkload::new("w", WorkloadKind::Ui, kernels::blend())
        .complexity(f32::NAN)
        .read(&b, 1);
    assert!(matches!(
        vuma.process_workload(&w),
        Err(Error::InvalidArgument(_))
    ));
    // A kernel that fails leaves the data intact.
    vuma.write(&b, 0, &[9u8; 64]).unwrap();
    let w = GpuWorkload::new("short", WorkloadKind::Ui, kernels::scale_u32())
        .read_write(&b, 1)
        .scalar(Scalar::U32(1000)) // more elements than the buffer holds
        .scalar(Scalar::U32(2))
        .scalar(Scalar::U32(0))
        .priority(Priority::Low);
    assert!(vuma.process_workload(&w).is_err());
    assert_eq!(vuma.to_vec(&b).unwrap(), vec![9u8; 64]);
}

/// The seed scenario on Vulkan alone (lavapipe in CI): the SPIR-V variants of the demo
/// kernels, the staging paths and coherence through a real driver.
#[cfg(feature = "vulkan")]
#[test]
fn seed_scenario_on_vulkan_alone() {
    let vuma = match UnifiedMemoryManager::builder()
        .cuda(false)
        .host(false)
        .build()
    {
        Ok(v) => v,
        Err(e) => {
            vuma_core::conformance::skip_or_fail("vulkan", &e.to_string());
            return;
        }
    };
    let out = demo::run(&vuma, &demo::DemoOptions { scale: 0.05 }).expect("demo on Vulkan");
    for r in &out.reports {
        assert_eq!(r.backend, vuma_core::Backend::Vulkan);
    }
    assert_eq!(out.verified.len(), 3);
}

/// Asynchronous submission through the executor: priorities, a failing workload that fails
/// alone, and reports for the others.
#[test]
fn submitted_workloads_run_and_fail_alone() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let vuma = std::sync::Arc::new(host_only());
        let exec = vuma.executor().expect("executor inside a runtime");
        let mut handles = Vec::new();
        let mut bufs = Vec::new();
        for i in 0..8u32 {
            let b = vuma.create_buffer_from(&vec![i as u8; 4096]).unwrap();
            // Workload 3 asks for more elements than its buffer holds: it must fail alone.
            let n = if i == 3 { 1 << 20 } else { 1024 };
            let w = GpuWorkload::new(
                format!("w{i}"),
                WorkloadKind::LightCompute,
                kernels::scale_u32(),
            )
            .read_write(&b, 1)
            .scalar(Scalar::U32(n))
            .scalar(Scalar::U32(1))
            .scalar(Scalar::U32(1))
            .priority(if i % 2 == 0 {
                Priority::High
            } else {
                Priority::Low
            })
            .launch(kernels::launch_for(1024));
            handles.push(vuma.submit(&exec, w).await.expect("queued"));
            bufs.push(b);
        }
        for (i, h) in handles.into_iter().enumerate() {
            let r = h.await;
            if i == 3 {
                assert!(r.is_err(), "w3 must fail");
                assert_eq!(
                    vuma.to_vec(&bufs[3]).unwrap(),
                    vec![3u8; 4096],
                    "w3's data intact"
                );
            } else {
                let report = r.expect("report");
                assert_eq!(report.workload, format!("w{i}"));
                let v = vuma.to_vec(&bufs[i]).unwrap();
                let want = u32::from_le_bytes([i as u8; 4]).wrapping_add(1);
                assert_eq!(u32::from_le_bytes([v[0], v[1], v[2], v[3]]), want);
            }
        }
    });
}

/// Element-wise multi-pass work is cut into L2-sized tiles (on the host device, its last
/// level cache) and gives the same result as the untiled run.
#[test]
fn tiled_multipass_matches_untiled() {
    let vuma = host_only();
    let l2 = vuma.devices()[0].info().l2_bytes.max(1 << 20);
    let n = (l2 as usize / 4) * 2 + 1000; // twice the cache, plus a ragged tail
    let init: Vec<u8> = (0..n as u32).flat_map(|i| i.to_le_bytes()).collect();
    let a = vuma.create_buffer_from(&init).unwrap();
    let b = vuma.create_buffer_from(&init).unwrap();
    let job = |buf: &std::sync::Arc<vuma::UnifiedBuffer>, tiled: bool| {
        let w = GpuWorkload::new(
            "multipass",
            WorkloadKind::LightCompute,
            kernels::scale_u32(),
        )
        .read_write(buf, 4)
        .scalar(Scalar::U32(n as u32))
        .scalar(Scalar::U32(3))
        .scalar(Scalar::U32(7))
        .passes(4)
        .launch(kernels::launch_for(n as u64));
        if tiled {
            w.tiled(4)
        } else {
            w
        }
    };
    let r_tiled = vuma.process_workload(&job(&a, true)).unwrap();
    let r_plain = vuma.process_workload(&job(&b, false)).unwrap();
    assert!(r_tiled.tiles > 1, "tiled into {} tiles", r_tiled.tiles);
    assert_eq!(r_plain.tiles, 1);
    assert_eq!(r_tiled.passes, 4);
    let (va, vb) = (vuma.to_vec(&a).unwrap(), vuma.to_vec(&b).unwrap());
    assert!(va == vb, "tiled and untiled results differ");
    let x = u32::from_le_bytes([
        va[4 * 12345],
        va[4 * 12345 + 1],
        va[4 * 12345 + 2],
        va[4 * 12345 + 3],
    ]);
    let mut want = 12345u32;
    for _ in 0..4 {
        want = want.wrapping_mul(3).wrapping_add(7);
    }
    assert_eq!(x, want);
    // Bad tiling input is a typed error, data untouched.
    let w = job(&a, true).passes(0);
    assert!(matches!(
        vuma.process_workload(&w),
        Err(Error::InvalidArgument(_))
    ));
    assert!(vuma.to_vec(&a).unwrap() == va);
}

/// A workload that finds its device's budget full of copies another caller holds waits for
/// them to be released (holding nothing itself), instead of failing; with no wait allowed
/// it fails at once with the transient `BudgetExceeded`, its data intact.
#[test]
fn a_full_budget_waits_for_leases_held_elsewhere() {
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    use vuma_core::{AccessMode, HostDevice, Outcome};
    let build = |wait: Duration| {
        UnifiedMemoryManager::builder()
            .cuda(false)
            .vulkan(false)
            .host(false)
            .device(Arc::new(
                HostDevice::with_budget("small", 1 << 20).without_in_place(),
            ))
            .budget_wait(wait)
            .build()
            .unwrap()
    };
    let job = |b: &Arc<vuma::UnifiedBuffer>| {
        let n = (b.len() / 4) as u32;
        GpuWorkload::new("waits", WorkloadKind::LightCompute, kernels::scale_u32())
            .read_write(b, 1)
            .scalar(Scalar::U32(n))
            .scalar(Scalar::U32(2))
            .scalar(Scalar::U32(1))
            .launch(kernels::launch_for(u64::from(n)))
    };
    let size = 640 << 10; // two of these do not fit the 1 MiB budget

    // No wait: a transient error, data untouched.
    let vuma = build(Duration::ZERO);
    let held = vuma.create_buffer_from(&vec![1u8; size]).unwrap();
    let b = vuma.create_buffer_from(&vec![3u8; size]).unwrap();
    let lease = vuma
        .memory()
        .acquire(&held, 0, AccessMode::Read, 1)
        .unwrap();
    let e = vuma.process_workload(&job(&b)).unwrap_err();
    assert!(matches!(e, Error::BudgetExceeded { .. }), "{e}");
    assert!(e.is_transient());
    assert_eq!(vuma.to_vec(&b).unwrap(), vec![3u8; size]);
    vuma.memory().release(lease, Outcome::Completed);

    // With a wait: the workload runs once the other lease is released.
    let vuma = build(Duration::from_secs(10));
    let held = vuma.create_buffer_from(&vec![1u8; size]).unwrap();
    let b = vuma.create_buffer_from(&vec![3u8; size]).unwrap();
    let lease = vuma
        .memory()
        .acquire(&held, 0, AccessMode::Read, 1)
        .unwrap();
    let t = Instant::now();
    let r = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            vuma.memory().release(lease, Outcome::Completed);
        });
        vuma.process_workload(&job(&b))
    })
    .expect("the workload waits for room and runs");
    assert!(t.elapsed() >= Duration::from_millis(100));
    assert!(
        r.times.place >= Duration::from_millis(90),
        "{:?}",
        r.times.place
    );
    let want = u32::from_le_bytes([3; 4]).wrapping_mul(2).wrapping_add(1);
    let v = vuma.to_vec(&b).unwrap();
    assert!(v
        .chunks_exact(4)
        .all(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) == want));
    assert_eq!(vuma.to_vec(&held).unwrap(), vec![1u8; size]);
}
