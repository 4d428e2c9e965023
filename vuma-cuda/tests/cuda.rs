//! CUDA-specific tests: discovery, every placement under a kernel, the staging ring with odd
//! sizes, batched writes, typed compile errors, errors deferred from `Drop`, and the
//! unavailable path (which runs everywhere).

mod common;

use vuma_core::{
    AccessMode, Arg, Backend, Buffer, Device, DeviceKind, Error, Kernel, LaunchConfig, Placement,
    Scalar,
};

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

const ADD: &str = r#"
extern "C" __global__ void add_u32(const unsigned int* a, unsigned int* out, unsigned int n, unsigned int k) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) { out[i] = a[i] + k; }
}
"#;

#[test]
fn unavailable_path_never_panics() {
    // Runs on every machine. Without libcuda the answer must be a typed Unavailable.
    let r = std::panic::catch_unwind(vuma_cuda::devices);
    let r = r.expect("devices() must not panic");
    if !vuma_cuda::driver_present() {
        match r {
            Err(Error::Unavailable { backend, reason }) => {
                assert_eq!(backend, Backend::Cuda);
                assert!(reason.contains("libcuda"), "{reason}");
                eprintln!("CUDA unavailable as expected: {reason}");
            }
            other => panic!("expected Unavailable without libcuda, got {other:?}"),
        }
        assert!(matches!(
            vuma_cuda::CudaDevice::open(0),
            Err(Error::Unavailable { .. })
        ));
    } else {
        match r {
            Ok(devs) => assert!(!devs.is_empty()),
            Err(Error::Unavailable { reason, .. }) => eprintln!("libcuda present but: {reason}"),
            Err(e) => panic!("unexpected error kind: {e:?}"),
        }
    }
}

#[test]
fn discovery_prints_device_info() {
    let Some(dev) = common::device() else { return };
    let i = dev.info();
    println!("{i:#?}");
    println!("uuid {:?}", i.uuid_string());
    assert_eq!(i.backend, Backend::Cuda);
    assert!(matches!(
        i.kind,
        DeviceKind::Discrete | DeviceKind::Integrated
    ));
    assert!(!i.name.is_empty());
    assert!(i.uuid.is_some(), "cuDeviceGetUuid_v2");
    assert!(i.compute_capability.is_some_and(|(m, _)| m >= 3));
    assert!(i.compute_units > 0 && i.l2_bytes > 0);
    assert!(i.memory_total > 0 && i.memory_budget > 0 && i.memory_budget <= i.memory_total);
    assert!(i.host_link.is_some());
    assert!(i.driver.starts_with("CUDA driver"));
    let n = vuma_cuda::device_count().expect("count");
    assert!(n >= 1);
    let all = vuma_cuda::devices().expect("devices");
    assert_eq!(all.len() as u32, n);
    assert_eq!(all[0].info().uuid, i.uuid, "same GPU, same UUID");
    assert_ne!(all[0].info().id, i.id, "each open is a distinct device id");
    assert!(matches!(
        vuma_cuda::CudaDevice::open(n + 7),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn measure_link_reports_measured_bandwidth() {
    if common::device().is_none() {
        return;
    }
    let mut dev = vuma_cuda::CudaDevice::open(0).expect("open");
    let l = dev.measure_link().expect("measure");
    println!(
        "measured link: H2D {:.1} GB/s, D2H {:.1} GB/s",
        l.h2d_bytes_per_s / 1e9,
        l.d2h_bytes_per_s / 1e9
    );
    assert!(l.measured && l.h2d_bytes_per_s > 1e8 && l.d2h_bytes_per_s > 1e8);
    assert_eq!(dev.info().host_link.as_ref(), Some(&l));
}

#[test]
fn launch_with_every_placement() {
    let Some(dev) = common::device() else { return };
    let k = Kernel::new("add_u32").with_cuda_source(ADD, "add_u32");
    let n = 10_001u32;
    let bytes = u64::from(n) * 4;
    let input: Vec<u8> = (0..n).flat_map(|i| (i * 3).to_le_bytes()).collect();
    for pin in [Placement::DeviceLocal, Placement::HostMapped] {
        for pout in [Placement::DeviceLocal, Placement::HostMapped] {
            let a = dev.alloc(bytes, pin).expect("alloc a");
            let out = dev.alloc(bytes + 512, pout).expect("alloc out");
            dev.write(&a, 0, &input).expect("write");
            dev.fill(&out, 0, bytes + 512, 0xcd).expect("fill");
            dev.launch(
                &k,
                &LaunchConfig::for_elements(u64::from(n), 128),
                &[
                    Arg::whole(&a, AccessMode::Read),
                    Arg::Buffer {
                        buffer: &out,
                        offset: 512,
                        len: bytes,
                        access: AccessMode::Write,
                    },
                    Arg::Scalar(Scalar::U32(n)),
                    Arg::Scalar(Scalar::U32(7)),
                ],
            )
            .expect("launch");
            dev.synchronize().expect("sync");
            let mut back = vec![0u8; (bytes + 512) as usize];
            dev.read(&out, 0, &mut back).expect("read");
            assert!(
                back[..512].iter().all(|&b| b == 0xcd),
                "{pin:?}->{pout:?}: prefix untouched"
            );
            for (i, c) in back[512..].chunks_exact(4).enumerate() {
                let v = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                assert_eq!(v, i as u32 * 3 + 7, "{pin:?}->{pout:?} element {i}");
            }
        }
    }
    // Staging buffers cannot be kernel arguments: typed error, no launch.
    let s = dev.alloc(bytes, Placement::Staging).expect("staging");
    let r = dev.launch(
        &k,
        &LaunchConfig::for_elements(u64::from(n), 128),
        &[
            Arg::whole(&s, AccessMode::Read),
            Arg::whole(&s, AccessMode::Read),
            Arg::Scalar(Scalar::U32(n)),
            Arg::Scalar(Scalar::U32(7)),
        ],
    );
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    // Zero launch dimensions are a typed error.
    let a = dev.alloc(bytes, Placement::DeviceLocal).expect("alloc");
    let mut cfg = LaunchConfig::for_elements(u64::from(n), 128);
    cfg.block = [0, 1, 1];
    let r = dev.launch(
        &k,
        &cfg,
        &[
            Arg::whole(&a, AccessMode::Read),
            Arg::whole(&a, AccessMode::Read),
            Arg::Scalar(Scalar::U32(0)),
            Arg::Scalar(Scalar::U32(0)),
        ],
    );
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    // PTX goes through the driver JIT.
    let ptx = r#"
.version 8.0
.target sm_80
.address_size 64
.visible .entry set42(.param .u64 p) {
    .reg .b64 %rd<3>;
    .reg .b32 %r<2>;
    ld.param.u64 %rd1, [p];
    cvta.to.global.u64 %rd2, %rd1;
    mov.u32 %r1, 42;
    st.global.u32 [%rd2], %r1;
    ret;
}
"#;
    let kp = Kernel::new("set42").with_ptx(ptx, "set42");
    let b = dev.alloc(4, Placement::DeviceLocal).expect("alloc");
    dev.launch(
        &kp,
        &LaunchConfig::for_elements(1, 1),
        &[Arg::whole(&b, AccessMode::Write)],
    )
    .expect("ptx launch");
    let mut v = [0u8; 4];
    dev.read(&b, 0, &mut v).expect("read");
    assert_eq!(u32::from_le_bytes(v), 42);
    dev.synchronize().expect("sync");
}

#[test]
fn ring_write_read_odd_sizes() {
    let Some(dev) = common::device() else { return };
    let (_, ring) = dev.ring_layout();
    assert_eq!(
        ring,
        vuma_cuda::RING_SLOT_BYTES,
        "default layout (VUMA_CUDA_RING unset)"
    );
    for (i, size) in [
        1usize,
        3,
        4095,
        65_537,
        ring - 1,
        ring,
        ring + 1,
        3 * ring + 5,
        (100 << 20) + 3,
    ]
    .into_iter()
    .enumerate()
    {
        let b = dev
            .alloc(size as u64 + 8, Placement::DeviceLocal)
            .expect("alloc");
        dev.fill(&b, 0, size as u64 + 8, 0x5a).expect("fill");
        let data = pattern(size, i as u64 + 1);
        dev.write(&b, 3, &data).expect("write");
        let mut back = vec![0u8; size + 8];
        dev.read(&b, 0, &mut back).expect("read");
        assert!(back[..3].iter().all(|&x| x == 0x5a), "{size}: head");
        assert!(back[3..3 + size] == data[..], "{size}: data");
        assert!(back[3 + size..].iter().all(|&x| x == 0x5a), "{size}: tail");
        // Host-resident placements take the direct CPU path with the same semantics.
        for p in [Placement::HostMapped, Placement::Staging] {
            if size > (16 << 20) {
                continue;
            }
            let h = dev.alloc(size as u64, p).expect("alloc host");
            dev.write(&h, 0, &data).expect("write host");
            let mut back = vec![0u8; size];
            dev.read(&h, 0, &mut back).expect("read host");
            assert!(back == data, "{size} {p:?}");
        }
    }
    dev.synchronize().expect("sync");
}

#[test]
fn write_batch_many_pieces() {
    let Some(dev) = common::device() else { return };
    let size = 24usize << 20;
    for p in [Placement::DeviceLocal, Placement::HostMapped] {
        let b = dev.alloc(size as u64, p).expect("alloc");
        dev.fill(&b, 0, size as u64, 0).expect("fill");
        let mut model = vec![0u8; size];
        let data = pattern(size, 99);
        // 3000 pages of 4 KiB scattered over the buffer, plus one piece bigger than a ring slot
        // and some odd pieces: more than one ring slot's worth in total.
        let mut pieces: Vec<(u64, &[u8])> = (0..3000u64)
            .map(|i| {
                let off = (i * 7919 % 6000) * 4096;
                (off, &data[off as usize..off as usize + 4096])
            })
            .filter(|(off, _)| *off + 4096 <= (size as u64) / 2)
            .collect();
        pieces.sort_by_key(|p| p.0);
        pieces.dedup_by_key(|p| p.0);
        let big = size / 2 + 100;
        pieces.push((big as u64, &data[big..big + (9 << 20)]));
        pieces.push((size as u64 - 1, &data[size - 1..]));
        pieces.push((size as u64 / 2 + 1, &data[size / 2 + 1..size / 2 + 4]));
        for (off, bytes) in &pieces {
            model[*off as usize..*off as usize + bytes.len()].copy_from_slice(bytes);
        }
        dev.write_batch(&b, &pieces).expect("write_batch");
        let mut back = vec![0u8; size];
        dev.read(&b, 0, &mut back).expect("read");
        assert!(back == model, "write_batch into {p:?}");
        // One bad range fails the whole batch before anything is copied.
        let r = dev.write_batch(&b, &[(0, &[1u8; 8][..]), (size as u64 - 2, &[1u8; 4][..])]);
        assert!(matches!(r, Err(Error::OutOfRange { .. })), "{r:?}");
        dev.read(&b, 0, &mut back[..8]).expect("read");
        assert_eq!(&back[..8], &model[..8]);
        dev.write_batch(&b, &[]).expect("empty batch");
    }
    dev.synchronize().expect("sync");
}

#[test]
fn compile_error_is_typed() {
    let Some(dev) = common::device() else { return };
    let k = Kernel::new("broken").with_cuda_source(
        "extern \"C\" __global__ void broken(int* p) { p[0] = undefined_symbol; }",
        "broken",
    );
    let b = dev.alloc(64, Placement::DeviceLocal).expect("alloc");
    let r = dev.launch(
        &k,
        &LaunchConfig::for_elements(1, 1),
        &[Arg::whole(&b, AccessMode::Write)],
    );
    match r {
        Err(Error::Compile { kernel, log }) => {
            assert_eq!(kernel, "broken");
            assert!(
                log.contains("undefined_symbol"),
                "NVRTC log should name the symbol: {log}"
            );
            println!("compile error (as expected): {log}");
        }
        other => panic!("expected Error::Compile, got {other:?}"),
    }
    let bad_ptx =
        Kernel::new("badptx").with_ptx(".version 8.0\n.target sm_80\nthis is not ptx", "x");
    let r = dev.launch(
        &bad_ptx,
        &LaunchConfig::for_elements(1, 1),
        &[Arg::whole(&b, AccessMode::Write)],
    );
    assert!(matches!(r, Err(Error::Compile { .. })), "{r:?}");
    let missing = Kernel::new("missing").with_cuda_source(ADD, "no_such_entry");
    let r = dev.launch(
        &missing,
        &LaunchConfig::for_elements(1, 1),
        &[Arg::whole(&b, AccessMode::Write)],
    );
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    dev.synchronize().expect("the device stays usable");
}

#[test]
fn allocations_and_buffers_of_another_device() {
    let Some(dev) = common::device() else { return };
    let total = dev.info().memory_total;
    assert!(matches!(
        dev.alloc(total + 1, Placement::DeviceLocal),
        Err(Error::TooLarge { .. })
    ));
    assert!(matches!(
        dev.alloc(u64::MAX, Placement::Staging),
        Err(Error::TooLarge { .. })
    ));
    assert!(matches!(
        dev.alloc(0, Placement::HostMapped),
        Err(Error::ZeroSize { .. })
    ));
    let other = vuma_cuda::CudaDevice::open(0).expect("second open");
    let b = other.alloc(16, Placement::DeviceLocal).expect("alloc");
    assert!(matches!(
        dev.write(&b, 0, &[0u8; 4]),
        Err(Error::WrongDevice { .. })
    ));
    assert_eq!(b.len(), 16);
    // Many allocation pairs come from the pool without growing memory use.
    for _ in 0..1000 {
        let b = dev
            .alloc(1 << 20, Placement::DeviceLocal)
            .expect("pool alloc");
        drop(b);
    }
    dev.synchronize().expect("sync");
}

/// Proof that the sanitizer pass can see an out-of-bounds write: a kernel *without* a
/// signature (its accesses are its author's contract) writes one element past a buffer.
/// Runs only when `VUMA_PLANT_OOB=1` (the hardware run sets it under compute-sanitizer
/// memcheck and expects one error); otherwise it says so and does nothing.
#[test]
fn planted_out_of_bounds_write_for_the_sanitizer() {
    if std::env::var("VUMA_PLANT_OOB").as_deref() != Ok("1") {
        eprintln!("SKIP: planted out-of-bounds write runs only with VUMA_PLANT_OOB=1 under compute-sanitizer");
        return;
    }
    let Some(dev) = common::device() else { return };
    let k = Kernel::new("add_u32").with_cuda_source(ADD, "add_u32");
    let a = dev.alloc(1024, Placement::DeviceLocal).expect("alloc a");
    let out = dev.alloc(1024, Placement::DeviceLocal).expect("alloc out");
    // n = 257 elements of 4 bytes against 1024-byte buffers: one element past the end.
    let _ = dev.launch(
        &k,
        &LaunchConfig::for_elements(257, 257),
        &[
            Arg::Buffer {
                buffer: &a,
                offset: 0,
                len: 1024,
                access: AccessMode::Read,
            },
            Arg::Buffer {
                buffer: &out,
                offset: 0,
                len: 1024,
                access: AccessMode::Write,
            },
            Arg::Scalar(Scalar::U32(257)),
            Arg::Scalar(Scalar::U32(1)),
        ],
    );
    let _ = dev.synchronize();
}
