//! A real device loss on CUDA, in its own test binary (a sticky CUDA error ends the
//! process's context for that GPU, so no other test may share the process): a kernel that
//! traps makes the context unusable; the error is classified `DeviceLost`; the memory
//! manager drops the device's copies, decodes a write-back packed on the GPU (in pinned
//! host memory) on the host, keeps buffers with host copies and reports the one whose only
//! copy was in VRAM as `DataLost`. Skips (or fails with `VUMA_REQUIRE_HW=1`) without CUDA;
//! not run under compute-sanitizer (the trap is deliberate).

use std::sync::Arc;

use vuma_core::conformance::skip_or_fail;
use vuma_core::{
    AccessMode, Arg, DynDevice, Error, Kernel, LaunchConfig, MemoryConfig, MemoryManager, Outcome,
    TransferPath,
};
use vuma_hyperloop::datasets::Dataset;
use vuma_hyperloop::{HyperloopPath, PathConfig};

const TRAP: &str = r#"
extern "C" __global__ void vuma_trap(unsigned int* p) {
    if (threadIdx.x == 0 && blockIdx.x == 0) { p[0] = 1u; }
    __trap();
}
"#;

#[test]
fn cuda_device_loss_keeps_packed_copies_readable() {
    let dev: Arc<dyn DynDevice> = match vuma_cuda::devices() {
        Ok(mut v) if !v.is_empty() => Arc::new(v.remove(0)),
        Ok(_) => return skip_or_fail("cuda", "no CUDA device"),
        Err(e) => return skip_or_fail("cuda", &e.to_string()),
    };
    let path = HyperloopPath::new(PathConfig {
        always_encode: true,
        ..PathConfig::default()
    })
    .unwrap();
    let config = MemoryConfig {
        transfer: Some(Arc::new(path) as Arc<dyn TransferPath>),
        budgets: [(0usize, 96u64 << 20)].into_iter().collect(),
        ..MemoryConfig::default()
    };
    let mm = MemoryManager::new(vec![dev.clone()], config);
    let relu = Dataset::ReluF32.generate(64 << 20, 31);
    let weights = Dataset::Bf16Weights.generate(8 << 20, 32);
    let random = Dataset::Random.generate(32 << 20, 33);
    // `a`: written on the GPU, evicted for `b`: encoded on the GPU, packed in pinned memory.
    let a = mm.create(relu.len() as u64).unwrap();
    let l = mm.acquire(&a, 0, AccessMode::Write, 1).unwrap();
    dev.write(l.block(), l.offset(), &relu).unwrap();
    mm.release(l, Outcome::Completed);
    let c = mm.create(weights.len() as u64).unwrap();
    let l = mm.acquire(&c, 0, AccessMode::Write, 1).unwrap();
    dev.write(l.block(), l.offset(), &weights).unwrap();
    mm.release(l, Outcome::Completed);
    let b = mm.create_from(&random).unwrap();
    let l = mm.acquire(&b, 0, AccessMode::Read, 1).unwrap();
    mm.release(l, Outcome::Completed);
    let s = mm.stats();
    assert_eq!(s.devices[0].packed_writebacks, 1, "{s:#?}");
    // `c` (written on the GPU, resident) now has its only valid copy in VRAM.

    // The trap: a sticky error, the context is gone.
    let trap = Kernel::new("vuma_trap").with_cuda_source(TRAP, "vuma_trap");
    let l = mm.acquire(&c, 0, AccessMode::ReadWrite, 1).unwrap();
    let launched = dev
        .launch(
            &trap,
            &LaunchConfig::for_elements(32, 32),
            &[Arg::Buffer {
                buffer: l.block(),
                offset: l.offset(),
                len: 4,
                access: AccessMode::ReadWrite,
            }],
        )
        .and_then(|()| dev.synchronize());
    let e = launched.unwrap_err();
    eprintln!("trap: {e}");
    assert!(matches!(e, Error::DeviceLost { .. }), "classified: {e:?}");
    mm.release(l, Outcome::Failed);
    let Error::DeviceLost { reason, .. } = &e else {
        unreachable!()
    };
    let lost = mm.device_lost(0, reason);
    assert_eq!(lost, vec![c.id()], "only `c` had its only copy in VRAM");
    assert!(
        mm.to_vec(&a).unwrap() == relu,
        "packed on the GPU, decoded on the host"
    );
    assert!(mm.to_vec(&b).unwrap() == random, "the host copy");
    assert!(matches!(mm.to_vec(&c), Err(Error::DataLost { .. })));
    assert!(matches!(
        mm.acquire(&b, 0, AccessMode::Read, 1),
        Err(Error::DeviceLost { .. })
    ));
    eprintln!("device loss: packed write-back recovered on the host, 1 buffer reported lost");
}
