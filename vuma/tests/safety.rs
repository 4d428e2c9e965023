//! Probe tests of "safe means safe" through the facade, on every backend this machine has
//! (the host device everywhere; Vulkan on lavapipe in CI; CUDA and Vulkan on a GPU machine,
//! where `VUMA_REQUIRE_HW=1` turns an absent backend into a failure): a workload whose
//! arguments do not match its kernel is a typed error, never a crash, and leaves every
//! buffer as it was.

use vuma::{kernels, GpuWorkload, Priority, UnifiedMemoryManager, WorkloadKind};
use vuma_core::{Backend, Error, Kernel, Scalar};

/// Managers with one backend each (the host device alone; Vulkan alone; CUDA alone).
fn managers() -> Vec<(&'static str, UnifiedMemoryManager)> {
    let mut out = Vec::new();
    let host = UnifiedMemoryManager::builder()
        .cuda(false)
        .vulkan(false)
        .build()
        .expect("the host device");
    out.push(("host", host));
    for (name, cuda, vulkan) in [("vulkan", false, true), ("cuda", true, false)] {
        match UnifiedMemoryManager::builder()
            .cuda(cuda)
            .vulkan(vulkan)
            .host(false)
            .build()
        {
            Ok(v) => out.push((name, v)),
            Err(e) => vuma_core::conformance::skip_or_fail(name, &e.to_string()),
        }
    }
    out
}

fn expect_invalid(name: &str, what: &str, r: vuma_core::Result<vuma::WorkloadReport>) -> String {
    match r {
        Err(e @ Error::InvalidArgument(_)) => {
            println!("{name}: {what}: {e}");
            e.to_string()
        }
        Err(e) => panic!("{name}: {what}: expected an invalid-argument error, got {e}"),
        Ok(r) => panic!("{name}: {what}: ran on {} instead of failing", r.device),
    }
}

/// The seed-shaped workload of the audit (a kernel, no buffers, no scalars) crashed the
/// process on the H200; an oversized element count wrote past its buffer into others of
/// the same pool block; a user kernel given the wrong number of arguments made the driver
/// read past the argument array.
#[test]
fn mismatched_workloads_are_typed_errors_on_every_backend() {
    for (name, vuma) in managers() {
        let backend = vuma.devices()[0].info().backend;
        // 1. No arguments at all.
        let w = GpuWorkload::new(
            "AI_Training_Job",
            WorkloadKind::AiInference,
            kernels::relu_scale(),
        )
        .complexity(0.95)
        .priority(Priority::Realtime);
        let e = expect_invalid(name, "no arguments", vuma.process_workload(&w));
        assert!(e.contains("takes 4 arguments"), "{e}");
        // 2. An element count twice the buffer, next to a neighbour in the same pool block.
        let words = 4096u32;
        let buf = vuma
            .create_buffer_from(&vec![1u8; words as usize * 4])
            .unwrap();
        let neighbour = vuma
            .create_buffer_from(&vec![2u8; words as usize * 4])
            .unwrap();
        let touch = GpuWorkload::new("touch", WorkloadKind::HeavyCompute, kernels::scale_u32())
            .read_write(&neighbour, 1)
            .scalar(Scalar::U32(words))
            .scalar(Scalar::U32(1))
            .scalar(Scalar::U32(0))
            .launch(kernels::launch_for(u64::from(words)));
        vuma.process_workload(&touch)
            .expect("a well-formed workload runs");
        let w = GpuWorkload::new(
            "oversized",
            WorkloadKind::HeavyCompute,
            kernels::scale_u32(),
        )
        .read_write(&buf, 1)
        .scalar(Scalar::U32(words * 2))
        .scalar(Scalar::U32(3))
        .scalar(Scalar::U32(7))
        .launch(kernels::launch_for(u64::from(words) * 2));
        let e = expect_invalid(name, "oversized n", vuma.process_workload(&w));
        assert!(e.contains("do not fit"), "{e}");
        // 3. Wrong scalar types.
        let w = GpuWorkload::new("types", WorkloadKind::HeavyCompute, kernels::scale_u32())
            .read_write(&buf, 1)
            .scalar(Scalar::F32(1.0))
            .scalar(Scalar::U32(3))
            .scalar(Scalar::U32(7))
            .launch(kernels::launch_for(u64::from(words)));
        expect_invalid(name, "f32 for n", vuma.process_workload(&w));
        // 4. A kernel without a signature, given too few arguments: on CUDA the driver's
        // parameter table catches it, on Vulkan the module's bindings and push constants.
        let raw = match backend {
            Backend::Cuda => Some(Kernel::new("raw_scale").with_cuda_source(
                r#"extern "C" __global__ void raw_scale(unsigned int* b, unsigned int n, unsigned int m) {
                    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; if (i < n) b[i] *= m; }"#,
                "raw_scale",
            )),
            Backend::Vulkan => {
                let mut k = Kernel::new("raw_scale");
                for v in kernels::scale_u32().variants() {
                    if v.backend() == Backend::Vulkan {
                        k = k.with_variant(v.clone());
                    }
                }
                Some(k)
            }
            _ => None,
        };
        if let Some(raw) = raw {
            let w = GpuWorkload::new("raw", WorkloadKind::HeavyCompute, raw)
                .read_write(&buf, 1)
                .scalar(Scalar::U32(words))
                .launch(kernels::launch_for(u64::from(words)));
            expect_invalid(
                name,
                "unsigned kernel, missing arguments",
                vuma.process_workload(&w),
            );
        }
        // Nothing was touched: both buffers hold what they held.
        assert!(
            vuma.to_vec(&buf).unwrap().iter().all(|&b| b == 1),
            "{name}: buf changed"
        );
        assert!(
            vuma.to_vec(&neighbour).unwrap().iter().all(|&b| b == 2),
            "{name}: the neighbour changed"
        );
    }
}

/// A workload refused before any launch (an oversized count) on a buffer whose only valid
/// copy is on the device leaves that copy valid: nothing ran, nothing is lost.
#[test]
fn a_refused_workload_keeps_the_only_copy() {
    let vuma = UnifiedMemoryManager::builder()
        .cuda(false)
        .vulkan(false)
        .build()
        .expect("the host device");
    let words = 1024u32;
    let buf = vuma
        .create_buffer_from(&vec![1u8; words as usize * 4])
        .unwrap();
    let scale = |n: u32| {
        GpuWorkload::new("scale", WorkloadKind::HeavyCompute, kernels::scale_u32())
            .read_write(&buf, 1)
            .scalar(Scalar::U32(n))
            .scalar(Scalar::U32(1))
            .scalar(Scalar::U32(1))
            .launch(kernels::launch_for(u64::from(n)))
    };
    vuma.process_workload(&scale(words)).unwrap(); // the device copy is now the only valid one
    assert!(vuma.process_workload(&scale(words * 4)).is_err());
    let v = vuma.to_vec(&buf).expect("not lost");
    let want = (0x0101_0101u32 + 1).to_le_bytes();
    assert!(v.chunks_exact(4).all(|c| c == want));
}

/// A device lost while a workload runs (a fatal driver error, injected): the workload gets
/// `DeviceLost`, the buffer whose only valid copy was there reports `DataLost` (not stale
/// bytes), a buffer with a host copy is unharmed, and the next workloads run on the device
/// that is left.
#[test]
fn a_lost_device_is_taken_out_of_service() {
    use std::sync::Arc;
    use vuma_core::fault::FaultPlan;
    use vuma_core::{DynDevice, HostDevice};
    let plans = [
        Arc::new(FaultPlan::new(1, 0.0)),
        Arc::new(FaultPlan::new(2, 0.0)),
    ];
    let mut b = UnifiedMemoryManager::builder()
        .cuda(false)
        .vulkan(false)
        .host(false);
    for (name, plan) in ["gpu-a", "gpu-b"].iter().zip(&plans) {
        // GPUs of their own memory (in place, nothing would live only on them).
        let dev = HostDevice::with_budget(*name, 1 << 30)
            .without_in_place()
            .with_faults(plan.clone());
        b = b.device(Arc::new(dev) as Arc<dyn DynDevice>);
    }
    let vuma = b.build().unwrap();
    let words = 4096u32;
    let on_device = vuma
        .create_buffer_from(&vec![1u8; words as usize * 4])
        .unwrap();
    let on_host = vuma
        .create_buffer_from(&vec![2u8; words as usize * 4])
        .unwrap();
    let scale = |buf: &std::sync::Arc<vuma_core::UnifiedBuffer>| {
        GpuWorkload::new("scale", WorkloadKind::HeavyCompute, kernels::scale_u32())
            .read_write(buf, 4)
            .scalar(Scalar::U32(words))
            .scalar(Scalar::U32(1))
            .scalar(Scalar::U32(1))
            .launch(kernels::launch_for(u64::from(words)))
    };
    let first = vuma.process_workload(&scale(&on_device)).unwrap();
    let lost = usize::from(first.device != "gpu-a");
    plans[lost].lose_device();
    let e = vuma.process_workload(&scale(&on_device)).unwrap_err();
    assert!(matches!(e, Error::DeviceLost { .. }), "{e}");
    let e = vuma.to_vec(&on_device).unwrap_err();
    assert!(matches!(e, Error::DataLost { .. }), "{e}");
    for _ in 0..3 {
        let r = vuma.process_workload(&scale(&on_host)).unwrap();
        assert_ne!(
            r.device, first.device,
            "the lost device is not chosen again"
        );
    }
    let want = (0x0202_0202u32 + 3).to_le_bytes();
    let v = vuma.to_vec(&on_host).unwrap();
    assert!(v.chunks_exact(4).all(|c| c == want));
}
