//! The conformance suite every [`Device`](crate::Device) implementation must pass, written
//! once. Backends instantiate it with [`conformance_suite!`](crate::conformance_suite) in
//! their test suites; each test then takes a device from the backend's opener (or skips,
//! loudly, when the opener finds none).
//!
//! Every check panics with a message on failure: it is test code.

pub mod model;

use crate::buffer::DynBuffer;
use crate::device::{DynDevice, Fence};
use crate::error::Error;
use crate::kernel::{Arg, Kernel, LaunchConfig, Scalar};
use crate::placement::{AccessMode, Placement};

/// CUDA C source of the suite's `increment` kernel: `buf[i] += add` for `i < n` (u32).
pub const INCREMENT_CUDA: &str = r#"
extern "C" __global__ void increment(unsigned int* buf, unsigned int n, unsigned int add) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) { buf[i] += add; }
}
"#;

/// WGSL source of the same kernel (workgroup size 64, scalars in a push-constant block).
pub const INCREMENT_WGSL: &str = r#"
struct Params { n: u32, add: u32 }
var<immediate> params: Params;
@group(0) @binding(0) var<storage, read_write> buf: array<u32>;
@compute @workgroup_size(64)
fn increment(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x < params.n) { buf[gid.x] = buf[gid.x] + params.add; }
}
"#;

/// Workgroup size of [`INCREMENT_WGSL`].
pub const INCREMENT_WGSL_WORKGROUP: u32 = 64;

/// The `increment` kernel with its CUDA and host variants; backends that need another
/// variant (SPIR-V) add it with [`Kernel::with_spirv`].
pub fn increment_kernel() -> Kernel {
    Kernel::new("increment")
        .with_cuda_source(INCREMENT_CUDA, "increment")
        .with_host(|l| {
            let (n, add) = match l.scalars[..] {
                [Scalar::U32(n), Scalar::U32(add)] => (n as usize, add),
                _ => return Err(Error::invalid("increment takes (buf, n: u32, add: u32)")),
            };
            let buf = &mut l.buffers[0];
            if n * 4 > buf.len() {
                return Err(Error::invalid("increment: n exceeds the buffer"));
            }
            for c in buf[..n * 4].chunks_exact_mut(4) {
                let v = u32::from_le_bytes([c[0], c[1], c[2], c[3]]).wrapping_add(add);
                c.copy_from_slice(&v.to_le_bytes());
            }
            Ok(())
        })
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 8) as u8))
        .collect()
}

fn placements(dev: &dyn DynDevice) -> Vec<Placement> {
    Placement::ALL
        .into_iter()
        .filter(|p| dev.supports(*p))
        .collect()
}

/// Every supported placement allocates, reports its size and placement, and round-trips.
pub fn alloc_every_placement(dev: &dyn DynDevice) {
    assert!(
        dev.supports(Placement::DeviceLocal),
        "every device must support device-local memory"
    );
    for p in placements(dev) {
        for size in [1u64, 4096, 1 << 20] {
            let b = dev
                .alloc(size, p)
                .unwrap_or_else(|e| panic!("alloc {size} {p:?}: {e}"));
            assert_eq!(b.len(), size);
            assert_eq!(b.placement(), p);
            assert_eq!(b.device(), dev.info().id);
            let data = pattern(size as usize, 7);
            dev.write(&*b, 0, &data).expect("write");
            let mut back = vec![0u8; size as usize];
            dev.read(&*b, 0, &mut back).expect("read");
            assert!(back == data, "round trip through {p:?} of {size} bytes");
        }
    }
}

/// Host→device and device→host copies of 1 B .. 8 MiB.
pub fn copies_both_ways(dev: &dyn DynDevice) {
    for size in [1usize, 3, 255, 4096, 65537, 8 << 20] {
        let b = dev
            .alloc(size as u64, Placement::DeviceLocal)
            .expect("alloc");
        let data = pattern(size, size as u8);
        dev.write(&*b, 0, &data).expect("write");
        let mut back = vec![0u8; size];
        dev.read(&*b, 0, &mut back).expect("read");
        assert!(back == data, "round trip of {size} bytes");
    }
}

/// Device-to-device copies between every pair of supported placements.
pub fn device_to_device(dev: &dyn DynDevice) {
    let size = 1 << 16;
    for ps in placements(dev) {
        for pd in placements(dev) {
            let a = dev.alloc(size, ps).expect("alloc src");
            let b = dev.alloc(size, pd).expect("alloc dst");
            let data = pattern(size as usize, 3);
            dev.write(&*a, 0, &data).expect("write");
            dev.copy(&*a, 0, &*b, 0, size).expect("copy");
            let mut back = vec![0u8; size as usize];
            dev.read(&*b, 0, &mut back).expect("read");
            assert!(back == data, "copy {ps:?} -> {pd:?}");
        }
    }
}

/// Partial copies at odd offsets and sizes leave the bytes around them untouched.
pub fn partial_copies_odd_offsets(dev: &dyn DynDevice) {
    let size = 10_007usize;
    let b = dev
        .alloc(size as u64, Placement::DeviceLocal)
        .expect("alloc");
    let base = pattern(size, 1);
    dev.write(&*b, 0, &base).expect("write base");
    let mut model = base.clone();
    for (off, len) in [
        (1usize, 1usize),
        (3, 17),
        (4093, 5),
        (9_999, 8),
        (0, 1),
        (511, 2049),
    ] {
        let patch = pattern(len, off as u8 ^ 0x5a);
        dev.write(&*b, off as u64, &patch).expect("partial write");
        model[off..off + len].copy_from_slice(&patch);
        let mut part = vec![0u8; len + 2];
        let ro = off.saturating_sub(1).min(size - len - 2);
        dev.read(&*b, ro as u64, &mut part).expect("partial read");
        assert!(part[..] == model[ro..ro + len + 2], "partial read at {ro}");
    }
    let c = dev
        .alloc(size as u64, Placement::DeviceLocal)
        .expect("alloc 2");
    dev.fill(&*c, 0, size as u64, 0xee).expect("fill");
    dev.copy(&*b, 13, &*c, 4097, 999).expect("partial d2d");
    let mut want = vec![0xeeu8; size];
    want[4097..4097 + 999].copy_from_slice(&model[13..13 + 999]);
    let mut all = vec![0u8; size];
    dev.read(&*c, 0, &mut all).expect("read all");
    assert!(all == want, "partial device-to-device copy");
    dev.read(&*b, 0, &mut all).expect("read all");
    assert!(all == model, "whole buffer after partial writes");
}

/// Launches `kernel` (the [`increment_kernel`], with the backend's variant) on every
/// placement kernels can access, with an offset range, and checks every element.
pub fn launch_increment(dev: &dyn DynDevice, kernel: &Kernel) {
    let n: u32 = 100_003;
    for p in [Placement::DeviceLocal, Placement::HostMapped] {
        if !dev.supports(p) {
            continue;
        }
        let bytes = u64::from(n) * 4 + 256;
        let b = dev.alloc(bytes, p).expect("alloc");
        let init: Vec<u8> = (0..bytes / 4)
            .flat_map(|i| (i as u32).to_le_bytes())
            .collect();
        dev.write(&*b, 0, &init).expect("write");
        let args = [
            Arg::Buffer {
                buffer: &*b as &dyn DynBuffer,
                offset: 256,
                len: u64::from(n) * 4,
                access: AccessMode::ReadWrite,
            },
            Arg::Scalar(Scalar::U32(n)),
            Arg::Scalar(Scalar::U32(5)),
        ];
        let cfg = LaunchConfig::for_elements(u64::from(n), 64);
        dev.launch(kernel, &cfg, &args)
            .unwrap_or_else(|e| panic!("launch on {p:?}: {e}"));
        dev.synchronize().expect("sync");
        let mut back = vec![0u8; bytes as usize];
        dev.read(&*b, 0, &mut back).expect("read");
        for (i, c) in back.chunks_exact(4).enumerate() {
            let v = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            let want = if i >= 64 { i as u32 + 5 } else { i as u32 };
            assert_eq!(v, want, "element {i} after increment on {p:?}");
        }
    }
}

/// Host memory used in place ([`Device::alias_host`](crate::Device::alias_host)), for
/// devices that say they can ([`DynDevice::can_alias_host`]; nothing to check otherwise)
/// and share host memory: through a [`MemoryManager`](crate::MemoryManager), a kernel
/// acquired on a buffer's host copy writes it directly — nothing allocated on the device,
/// nothing copied either way, and the statistics count the use in place.
pub fn in_place(dev: std::sync::Arc<dyn DynDevice>, kernel: &Kernel) {
    use crate::memory::{MemoryConfig, MemoryManager, Outcome};
    let info = dev.info();
    if !(dev.can_alias_host() && info.unified_memory && info.can_map_host_memory) {
        return;
    }
    let mm = MemoryManager::new(vec![dev.clone()], MemoryConfig::default());
    assert!(mm.uses_in_place(0));
    let n: u32 = 100_003;
    let init: Vec<u8> = (0..n).flat_map(|i| i.to_le_bytes()).collect();
    let b = mm.create_from(&init).expect("create");
    let lease = mm
        .acquire(&b, 0, AccessMode::ReadWrite, 1)
        .expect("acquire in place");
    assert!(lease.is_in_place() && lease.residency.in_place);
    assert_eq!(lease.residency.placement, Placement::HostMapped);
    assert_eq!(lease.residency.bytes_moved, 0, "nothing copied");
    assert_eq!(lease.block().placement(), Placement::HostMapped);
    let cfg = LaunchConfig::for_elements(u64::from(n), 64);
    dev.launch(
        kernel,
        &cfg,
        &[
            lease.arg(),
            Arg::Scalar(Scalar::U32(n)),
            Arg::Scalar(Scalar::U32(7)),
        ],
    )
    .expect("launch in place");
    dev.synchronize().expect("sync");
    mm.release(lease, Outcome::Completed);
    let s = mm.stats();
    let d = s.devices[0];
    assert_eq!(
        (
            d.bytes_in_use,
            d.peak_bytes,
            d.allocations,
            d.bytes_in,
            d.link_bytes_in
        ),
        (0, 0, 0, 0, 0),
        "nothing allocated on the device, nothing copied into it: {d:?}"
    );
    assert_eq!((d.in_place_uses, d.in_place_bytes), (1, init.len() as u64));
    let back = mm.to_vec(&b).expect("host read");
    assert_eq!(mm.stats().host.bytes_in, 0, "nothing copied back either");
    for (i, c) in back.chunks_exact(4).enumerate() {
        let v = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        assert_eq!(
            v,
            i as u32 + 7,
            "element {i}: the kernel wrote the host copy"
        );
    }
}

/// [`Device::copy_concurrent`](crate::Device::copy_concurrent) and
/// [`Device::wait_for`](crate::Device::wait_for): a pipelined loop (copy chunk i+1 into one
/// of two bounce buffers while chunk i is incremented in the other, then copied out) gives
/// exact results; copies see the writes issued before them; `synchronize` covers a copy
/// nobody waited for; buffers dropped while their copy is in flight are safe; bad ranges
/// and foreign fences are typed errors.
pub fn concurrent_copies(dev: &dyn DynDevice, kernel: &Kernel) {
    let chunk: u64 = 1 << 20;
    let chunks = 7u64;
    let total = chunk * chunks;
    let src_place = if dev.supports(Placement::Staging) {
        Placement::Staging
    } else {
        Placement::DeviceLocal
    };
    let src = dev.alloc(total, src_place).expect("alloc src");
    let words: Vec<u8> = (0..total / 4)
        .flat_map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes())
        .collect();
    dev.write(&*src, 0, &words).expect("write src");
    let bounce = [
        dev.alloc(chunk, Placement::DeviceLocal)
            .expect("alloc bounce"),
        dev.alloc(chunk, Placement::DeviceLocal)
            .expect("alloc bounce"),
    ];
    let dst = dev.alloc(total, Placement::DeviceLocal).expect("alloc dst");
    let n = (chunk / 4) as u32;
    let cfg = LaunchConfig::for_elements(u64::from(n), 64);
    let copy_in = |i: u64| {
        dev.copy_concurrent(&*src, i * chunk, &*bounce[(i % 2) as usize], 0, chunk)
            .expect("copy_concurrent")
    };
    let mut ready = vec![copy_in(0)];
    for i in 0..chunks {
        if i + 1 < chunks {
            ready.push(copy_in(i + 1));
        }
        let b = &*bounce[(i % 2) as usize];
        dev.wait_for(&ready[i as usize]).expect("wait_for");
        let args = [
            Arg::whole(b, AccessMode::ReadWrite),
            Arg::Scalar(Scalar::U32(n)),
            Arg::Scalar(Scalar::U32(i as u32 + 1)),
        ];
        dev.launch(kernel, &cfg, &args).expect("launch");
        dev.copy(b, 0, &*dst, i * chunk, chunk).expect("copy out");
    }
    let mut back = vec![0u8; total as usize];
    dev.read(&*dst, 0, &mut back).expect("read");
    for (w, c) in back.chunks_exact(4).enumerate() {
        let v = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        let i = w as u64 * 4 / chunk;
        let want = (w as u32)
            .wrapping_mul(2_654_435_761)
            .wrapping_add(i as u32 + 1);
        assert_eq!(
            v, want,
            "word {w} (chunk {i}) of the pipelined copy + increment"
        );
    }

    // A copy sees the writes issued before it; `synchronize` completes it.
    let again = pattern(total as usize, 77);
    dev.write(&*src, 0, &again).expect("write src");
    let f = dev
        .copy_concurrent(&*src, 0, &*dst, 0, total)
        .expect("copy_concurrent");
    dev.synchronize().expect("synchronize");
    dev.read(&*dst, 0, &mut back).expect("read");
    assert!(back == again, "copy_concurrent then synchronize");
    dev.wait_for(&f).expect("waiting for a completed fence");

    // Buffers dropped while their copy is in flight.
    for _ in 0..3 {
        let a = dev.alloc(total, Placement::DeviceLocal).expect("alloc");
        let b = dev.alloc(total, Placement::DeviceLocal).expect("alloc");
        let _f = dev.copy_concurrent(&*a, 0, &*b, 0, total).expect("copy");
        drop(a);
        drop(b);
    }
    dev.synchronize().expect("synchronize after drops");

    // Bad input.
    assert!(
        matches!(
            dev.copy_concurrent(&*src, total - 1, &*dst, 0, 2),
            Err(Error::OutOfRange { .. })
        ),
        "source range past the end"
    );
    assert!(
        matches!(
            dev.copy_concurrent(&*src, 0, &*dst, 1, total),
            Err(Error::OutOfRange { .. })
        ),
        "destination range past the end"
    );
    assert!(
        matches!(
            dev.wait_for(&Fence::new(0u32)),
            Err(Error::WrongDevice { .. })
        ),
        "a fence that is not this device's"
    );
    dev.wait_for(&Fence::done()).expect("a done fence");
    dev.synchronize().expect("synchronize");
}

/// A kernel without a variant for the device's backend is a typed error.
pub fn launch_without_variant(dev: &dyn DynDevice) {
    let k = Kernel::new("nothing-here");
    let b = dev.alloc(64, Placement::DeviceLocal).expect("alloc");
    let r = dev.launch(
        &k,
        &LaunchConfig::for_elements(16, 16),
        &[Arg::Buffer {
            buffer: &*b,
            offset: 0,
            len: 64,
            access: AccessMode::Read,
        }],
    );
    assert!(
        matches!(r, Err(Error::NoKernelVariant { .. })),
        "missing variant: {r:?}"
    );
}

/// Out-of-range copies, zero sizes and absurd sizes are typed errors, and leave the buffer
/// intact.
pub fn errors_for_bad_input(dev: &dyn DynDevice) {
    assert!(matches!(
        dev.alloc(0, Placement::DeviceLocal),
        Err(Error::ZeroSize { .. })
    ));
    for absurd in [u64::MAX, u64::MAX / 2, 1 << 62] {
        match dev.alloc(absurd, Placement::DeviceLocal) {
            Err(Error::TooLarge { .. } | Error::OutOfMemory { .. }) => {}
            other => panic!("absurd alloc of {absurd}: {other:?}"),
        }
    }
    let b = dev.alloc(100, Placement::DeviceLocal).expect("alloc");
    let data = pattern(100, 9);
    dev.write(&*b, 0, &data).expect("write");
    let oob = |r: crate::Result<()>, what: &str| {
        assert!(
            matches!(r, Err(Error::OutOfRange { .. })),
            "{what}: expected OutOfRange, got {r:?}"
        )
    };
    oob(dev.write(&*b, 99, &[1, 2]), "write past end");
    oob(dev.write(&*b, u64::MAX, &[1]), "write at u64::MAX");
    let mut two = [0u8; 2];
    oob(dev.read(&*b, 99, &mut two), "read past end");
    let c = dev.alloc(100, Placement::DeviceLocal).expect("alloc");
    oob(dev.copy(&*b, 50, &*c, 0, 51), "copy src past end");
    oob(dev.copy(&*b, 0, &*c, 60, 41), "copy dst past end");
    oob(
        dev.copy(&*b, u64::MAX - 1, &*c, 0, 2),
        "copy offset overflow",
    );
    oob(dev.fill(&*b, 90, 11, 0), "fill past end");
    let mut back = vec![0u8; 100];
    dev.read(&*b, 0, &mut back).expect("read");
    assert!(back == data, "failed operations must not modify the buffer");
}

/// Generates one `#[test]` per conformance check.
///
/// `$open` is an expression of type `fn() -> Option<Arc<dyn DynDevice>>` (returning `None`
/// skips, after the opener printed why); `$kernel` is `fn() -> Kernel` giving the increment
/// kernel with the backend's variant.
#[macro_export]
macro_rules! conformance_suite {
    ($open:expr, $kernel:expr) => {
        mod conformance {
            #[allow(unused_imports)]
            use super::*;
            fn dev() -> Option<std::sync::Arc<dyn $crate::DynDevice>> {
                ($open)()
            }
            #[test]
            fn alloc_every_placement() {
                if let Some(d) = dev() {
                    $crate::conformance::alloc_every_placement(&*d)
                }
            }
            #[test]
            fn copies_both_ways() {
                if let Some(d) = dev() {
                    $crate::conformance::copies_both_ways(&*d)
                }
            }
            #[test]
            fn device_to_device() {
                if let Some(d) = dev() {
                    $crate::conformance::device_to_device(&*d)
                }
            }
            #[test]
            fn partial_copies_odd_offsets() {
                if let Some(d) = dev() {
                    $crate::conformance::partial_copies_odd_offsets(&*d)
                }
            }
            #[test]
            fn launch_increment() {
                if let Some(d) = dev() {
                    $crate::conformance::launch_increment(&*d, &($kernel)())
                }
            }
            #[test]
            fn concurrent_copies() {
                if let Some(d) = dev() {
                    $crate::conformance::concurrent_copies(&*d, &($kernel)())
                }
            }
            #[test]
            fn in_place() {
                if let Some(d) = dev() {
                    $crate::conformance::in_place(d, &($kernel)())
                }
            }
            #[test]
            fn launch_without_variant() {
                if let Some(d) = dev() {
                    $crate::conformance::launch_without_variant(&*d)
                }
            }
            #[test]
            fn memory_model_with_host() {
                if let Some(d) = dev() {
                    let host: std::sync::Arc<dyn $crate::DynDevice> =
                        std::sync::Arc::new($crate::HostDevice::new());
                    $crate::conformance::memory_model(vec![d.clone(), host, d], 0x5eed, 600)
                }
            }
            #[test]
            fn errors_for_bad_input() {
                if let Some(d) = dev() {
                    $crate::conformance::errors_for_bad_input(&*d)
                }
            }
        }
    };
}

/// Reads the hardware-test gate: `VUMA_REQUIRE_<NAME>=1` (or `VUMA_REQUIRE_HW=1`) means a
/// missing device is a failure, not a skip.
pub fn hardware_required(name: &str) -> bool {
    let one = |k: &str| std::env::var(k).is_ok_and(|v| v == "1");
    one(&format!("VUMA_REQUIRE_{}", name.to_ascii_uppercase())) || one("VUMA_REQUIRE_HW")
}

/// What a hardware test does when its device is absent: skip loudly, or fail when required.
pub fn skip_or_fail(name: &str, why: &str) {
    if hardware_required(name) {
        panic!(
            "{name} required (VUMA_REQUIRE_{} or VUMA_REQUIRE_HW = 1) but unavailable: {why}",
            name.to_ascii_uppercase()
        );
    }
    eprintln!(
        "SKIP: {name} unavailable: {why} (set VUMA_REQUIRE_{}=1 to make this a failure)",
        name.to_ascii_uppercase()
    );
}

/// The memory manager's model test on real devices: `steps` random operations (create,
/// create from bytes onto a device, host write, device read, device write, partial device write, host read, evict, drop)
/// over `devices` with small budgets, checked against a reference model (one `Vec<u8>` per
/// buffer). Deterministic for a given `seed`. Used by every backend's suite.
pub fn memory_model(devices: Vec<std::sync::Arc<dyn DynDevice>>, seed: u64, steps: usize) {
    use crate::memory::{MemoryConfig, MemoryManager, Outcome};
    let mut rng = seed | 1;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n.max(1)
    };
    let mut config = MemoryConfig::default();
    for (i, _) in devices.iter().enumerate() {
        // Budgets of 256 KiB, 512 KiB, ... so eviction happens.
        config.budgets.insert(i, 256 << (10 + i.min(4)));
    }
    let mm = MemoryManager::new(devices.clone(), config);
    let nd = devices.len() as u64;
    let mut bufs: Vec<(crate::memory::UnifiedBuffer, Vec<u8>)> = Vec::new();
    for step in 0..steps {
        let op = next(8);
        let n = bufs.len() as u64;
        if n == 0 || op == 0 {
            let size = 1 + next(100_000);
            if next(2) == 0 {
                let b = mm.create(size).expect("create");
                bufs.push((b, vec![0u8; size as usize]));
            } else {
                // Made straight on a device: the upload overlaps the host copy's fill.
                let d = next(nd) as usize;
                let data = pattern(size as usize, step as u8 ^ 0x5a);
                let (b, upload) = mm.create_from_on(&data, d).expect("create_from_on");
                upload.expect("first upload");
                bufs.push((b, data));
            }
            continue;
        }
        let bi = next(n) as usize;
        let d = next(nd) as usize;
        let (b, model) = &mut bufs[bi];
        let len = model.len();
        let ctx = |what: &str| format!("step {step} ({what}, buffer {bi}, device {d})");
        match op {
            1 => {
                let off = next(len as u64) as usize;
                let l = (1 + next(5000) as usize).min(len - off);
                let data = pattern(l, step as u8);
                mm.write(b, off as u64, &data).expect("host write");
                model[off..off + l].copy_from_slice(&data);
            }
            2 => {
                let lease = mm.acquire(b, d, AccessMode::Read, 1).expect("acquire read");
                let mut got = vec![0u8; len];
                devices[d]
                    .read(lease.block(), lease.offset(), &mut got)
                    .expect("read copy");
                mm.release(lease, Outcome::Completed);
                assert!(got == *model, "{}", ctx("device copy differs"));
            }
            3 => {
                let lease = mm
                    .acquire(b, d, AccessMode::Write, 1)
                    .expect("acquire write");
                let data = pattern(len, step as u8 ^ 0x33);
                devices[d]
                    .write(lease.block(), lease.offset(), &data)
                    .expect("device write");
                mm.release(lease, Outcome::Completed);
                *model = data;
            }
            4 => {
                let lease = mm
                    .acquire(b, d, AccessMode::ReadWrite, 2)
                    .expect("acquire rw");
                let off = next(len as u64) as usize;
                let data = pattern((len - off).min(777), step as u8 ^ 0x77);
                devices[d]
                    .write(lease.block(), lease.offset() + off as u64, &data)
                    .expect("partial device write");
                mm.release(lease, Outcome::Completed);
                model[off..off + data.len()].copy_from_slice(&data);
            }
            5 => {
                let got = mm.to_vec(b).expect("host read");
                assert!(got == *model, "{}", ctx("host read differs"));
            }
            6 => {
                mm.evict_all(d).expect("evict");
            }
            _ => {
                bufs.swap_remove(bi);
            }
        }
        let s = mm.stats();
        for (i, ds) in s.devices.iter().enumerate() {
            assert!(
                ds.bytes_in_use <= mm.budget(i).unwrap_or(0) || !devices[i].info().unified_memory,
                "step {step}: device {i} over budget"
            );
        }
    }
    for (b, model) in &bufs {
        assert!(
            mm.to_vec(b).expect("final read") == *model,
            "final read of {:?}",
            b.id()
        );
    }
    drop(bufs);
    let s = mm.stats();
    assert_eq!(s.buffers, 0);
    assert!(
        s.devices.iter().all(|d| d.bytes_in_use == 0),
        "copies freed"
    );
}
