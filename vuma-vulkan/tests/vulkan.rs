//! Vulkan-specific tests: device info, memory-type choices, large buffers beyond
//! `maxStorageBufferRange`, typed errors, and zero validation errors throughout.

use vuma_core::{
    AccessMode, Arg, Buffer, Device, DeviceKind, Error, Kernel, LaunchConfig, Placement, Scalar,
};
use vuma_vulkan::{MemoryPurpose, VulkanDevice, VulkanOptions};

fn open() -> Option<VulkanDevice> {
    match VulkanDevice::open_with(0, &VulkanOptions::validated()) {
        Ok(d) => Some(d),
        Err(e) => {
            vuma_core::conformance::skip_or_fail("vulkan", &e.to_string());
            None
        }
    }
}

fn assert_clean(dev: &VulkanDevice) {
    dev.synchronize().expect("synchronize");
    if dev.validation_active() {
        assert_eq!(
            dev.validation_errors(),
            0,
            "validation errors: {:#?}",
            dev.validation_messages()
        );
    } else {
        eprintln!(
            "VALIDATION UNAVAILABLE: {}",
            dev.validation_note().unwrap_or("layer not active")
        );
    }
}

fn words(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn devices_lists_at_least_one_or_skips() {
    match vuma_vulkan::devices() {
        Ok(v) => {
            assert!(!v.is_empty());
            for d in &v {
                let i = d.info();
                eprintln!(
                    "vulkan device {}: {} ({}) driver {}",
                    i.ordinal, i.name, i.kind, i.driver
                );
            }
        }
        Err(Error::Unavailable { reason, .. }) => {
            vuma_core::conformance::skip_or_fail("vulkan", &reason)
        }
        Err(e) => panic!("devices(): unexpected error {e}"),
    }
}

#[test]
fn info_is_complete_and_memory_types_follow_the_bar_rule() {
    let Some(dev) = open() else { return };
    let i = dev.info();
    assert_eq!(i.backend, vuma_core::Backend::Vulkan);
    assert!(i.uuid.is_some(), "deviceUUID");
    assert!(!i.name.is_empty() && !i.driver.is_empty());
    assert!(i.memory_total > 0 && i.memory_budget > 0 && i.max_allocation > 0);
    assert!(i.can_map_host_memory);
    assert!(!i.heaps.is_empty());
    assert_eq!(
        i.unified_memory,
        matches!(i.kind, DeviceKind::Integrated | DeviceKind::Cpu)
    );
    for key in [
        "vulkan.queue_families",
        "vulkan.maxStorageBufferRange",
        "vulkan.memory_types",
    ] {
        assert!(i.extra.iter().any(|(k, _)| k == key), "extra lacks {key}");
    }
    for (k, v) in &i.extra {
        eprintln!("{k} = {v}");
    }
    eprintln!(
        "compute_units = {}, l2_bytes = {}, host_link = {:?}",
        i.compute_units, i.l2_bytes, i.host_link
    );
    if i.extra.iter().any(|(k, _)| k == "vulkan.sm_count") {
        assert!(
            i.compute_units > 0,
            "VK_NV_shader_sm_builtins reported no SMs"
        );
    }
    if let Some(l) = &i.host_link {
        assert_eq!(
            i.kind,
            DeviceKind::Discrete,
            "a host link only for discrete GPUs"
        );
        assert!(l.h2d_bytes_per_s > 0.0 && l.pcie_generation.is_some());
    }
    let table = dev.memory_table();
    for p in [MemoryPurpose::Readback, MemoryPurpose::HostMapped] {
        let t = dev.memory_type_for(p).expect("host memory type");
        let f = table.types[t as usize].flags;
        assert!(f.contains(
            ash::vk::MemoryPropertyFlags::HOST_VISIBLE
                | ash::vk::MemoryPropertyFlags::HOST_COHERENT
        ));
        if i.kind == DeviceKind::Discrete {
            assert!(
                !f.contains(ash::vk::MemoryPropertyFlags::DEVICE_LOCAL),
                "{p:?} must not use BAR memory on a discrete GPU"
            );
        }
    }
    for p in Placement::ALL {
        let b = dev.alloc(4096, p).expect("alloc");
        assert_eq!(b.placement(), p);
        assert_eq!(
            b.is_mapped(),
            p != Placement::DeviceLocal || i.unified_memory || b.is_mapped()
        );
    }
    assert_clean(&dev);
}

#[test]
fn large_buffer_beyond_max_storage_range() {
    let Some(dev) = open() else { return };
    let size: u64 = 200 << 20;
    let n = (size / 4) as u32;
    let buf = dev
        .alloc(size, Placement::DeviceLocal)
        .expect("alloc 200 MiB");
    let init: Vec<u8> = (0..n).flat_map(|i| i.to_le_bytes()).collect();
    dev.write(&buf, 0, &init).expect("write 200 MiB");

    let k2 = vuma_vulkan::increment_2d_kernel();
    let max_range = dev.max_storage_buffer_range();
    // One binding of the whole buffer: rejected with a typed error beyond
    // maxStorageBufferRange (lavapipe: 128 MiB); elsewhere it increments the first 1024.
    let whole = dev.launch(
        &k2,
        &LaunchConfig::for_elements(1024, 64),
        &[
            Arg::whole(&buf, AccessMode::ReadWrite),
            Arg::Scalar(Scalar::U32(1024)),
            Arg::Scalar(Scalar::U32(1)),
        ],
    );
    if size > max_range {
        assert!(
            matches!(whole, Err(Error::TooLarge { max, .. }) if max == max_range),
            "binding more than maxStorageBufferRange: {whole:?}"
        );
    } else {
        whole
            .as_ref()
            .expect("whole-buffer launch within maxStorageBufferRange");
    }
    let bumped = whole.is_ok();
    // Bound in ranges (at most maxStorageBufferRange, aligned), each a 2-D dispatch.
    let align = dev.storage_offset_alignment();
    let chunk = (max_range.min(64 << 20) / align * align / 4 * 4).max(4);
    let maxg = dev.max_workgroup_count();
    let add = 7;
    let mut off = 0u64;
    while off < size {
        let len = chunk.min(size - off);
        let elems = len / 4;
        let groups = elems.div_ceil(64);
        let gx = groups.min(u64::from(maxg[0]).min(65535)) as u32;
        let gy = groups.div_ceil(u64::from(gx)) as u32;
        dev.launch(
            &k2,
            &LaunchConfig {
                grid: [gx, gy, 1],
                block: [64, 1, 1],
                shared_mem_bytes: 0,
            },
            &[
                Arg::Buffer {
                    buffer: &buf,
                    offset: off,
                    len,
                    access: AccessMode::ReadWrite,
                },
                Arg::Scalar(Scalar::U32(elems as u32)),
                Arg::Scalar(Scalar::U32(add)),
            ],
        )
        .expect("ranged launch");
        off += len;
    }
    let mut back = vec![0u8; size as usize];
    dev.read(&buf, 0, &mut back).expect("read 200 MiB");
    for (i, w) in words(&back).into_iter().enumerate() {
        let want = i as u32 + 7 + u32::from(bumped && i < 1024);
        assert_eq!(w, want, "element {i}");
    }
    assert_clean(&dev);
}

#[test]
fn typed_errors_for_bad_launches_and_copies() {
    let Some(dev) = open() else { return };
    let k = vuma_vulkan::increment_kernel();
    let buf = dev.alloc(1 << 16, Placement::DeviceLocal).expect("alloc");
    let args = |offset| {
        [
            Arg::Buffer {
                buffer: &buf,
                offset,
                len: 1024,
                access: AccessMode::ReadWrite,
            },
            Arg::Scalar(Scalar::U32(256)),
            Arg::Scalar(Scalar::U32(1)),
        ]
    };
    // A misaligned binding offset.
    let align = dev.storage_offset_alignment();
    if align > 1 {
        let r = dev.launch(&k, &LaunchConfig::for_elements(256, 64), &args(align / 2));
        assert!(
            matches!(r, Err(Error::InvalidArgument(_))),
            "misaligned offset: {r:?}"
        );
    }
    // A grid beyond maxComputeWorkGroupCount, and an empty grid.
    let maxg = dev.max_workgroup_count();
    if maxg[1] < u32::MAX {
        let cfg = LaunchConfig {
            grid: [1, maxg[1] + 1, 1],
            block: [64, 1, 1],
            shared_mem_bytes: 0,
        };
        let r = dev.launch(&k, &cfg, &args(0));
        assert!(
            matches!(r, Err(Error::InvalidArgument(_))),
            "grid too large: {r:?}"
        );
    }
    let cfg = LaunchConfig {
        grid: [0, 1, 1],
        block: [64, 1, 1],
        shared_mem_bytes: 0,
    };
    assert!(matches!(
        dev.launch(&k, &cfg, &args(0)),
        Err(Error::InvalidArgument(_))
    ));
    // Not SPIR-V.
    let junk = Kernel::new("junk").with_spirv(vec![1u32, 2, 3, 4, 5, 6], "main");
    let r = dev.launch(&junk, &LaunchConfig::for_elements(1, 1), &args(0));
    assert!(
        matches!(&r, Err(Error::InvalidArgument(m)) if m.contains("malformed SPIR-V")),
        "junk SPIR-V: {r:?}"
    );
    // An entry point with a NUL byte.
    let bad_entry =
        Kernel::new("nul").with_spirv(vuma_vulkan::kernels::increment_spirv(), "inc\0rement");
    let r = dev.launch(&bad_entry, &LaunchConfig::for_elements(1, 1), &args(0));
    assert!(
        matches!(r, Err(Error::InvalidArgument(_))),
        "NUL entry: {r:?}"
    );
    // Overlapping ranges of one buffer, written.
    let r = dev.launch(
        &k,
        &LaunchConfig::for_elements(1, 1),
        &[
            Arg::Buffer {
                buffer: &buf,
                offset: 0,
                len: 512,
                access: AccessMode::ReadWrite,
            },
            Arg::Buffer {
                buffer: &buf,
                offset: 256,
                len: 512,
                access: AccessMode::Read,
            },
        ],
    );
    assert!(
        matches!(r, Err(Error::InvalidArgument(_))),
        "overlap: {r:?}"
    );
    // Overlapping copy within one buffer.
    let r = dev.copy(&buf, 0, &buf, 100, 200);
    assert!(
        matches!(r, Err(Error::InvalidArgument(_))),
        "overlapping copy: {r:?}"
    );
    // Buffers of another device.
    if let Ok(other) = VulkanDevice::open(0) {
        let ob = other
            .alloc(64, Placement::DeviceLocal)
            .expect("alloc other");
        assert!(matches!(
            dev.write(&ob, 0, &[1]),
            Err(Error::WrongDevice { .. })
        ));
        assert!(matches!(
            dev.copy(&buf, 0, &ob, 0, 4),
            Err(Error::WrongDevice { .. })
        ));
    }
    // Absurd sizes on every placement.
    for p in Placement::ALL {
        assert!(
            matches!(dev.alloc(1 << 62, p), Err(Error::TooLarge { .. })),
            "{p:?}"
        );
    }
    assert_clean(&dev);
}

#[test]
fn fill_handles_unaligned_edges_on_every_placement() {
    let Some(dev) = open() else { return };
    for p in Placement::ALL {
        let size = 1031usize;
        let b = dev.alloc(size as u64, p).expect("alloc");
        let base: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        dev.write(&b, 0, &base).expect("write");
        let mut model = base.clone();
        for (off, len, v) in [
            (1usize, 1usize, 0xa1u8),
            (2, 3, 0xa2),
            (5, 13, 0xa3),
            (3, 1000, 0xa4),
            (0, 4, 0xa5),
            (1027, 4, 0xa6),
            (0, 1031, 0x11),
            (17, 0, 0xff),
        ] {
            dev.fill(&b, off as u64, len as u64, v).expect("fill");
            model[off..off + len].fill(v);
            let mut back = vec![0u8; size];
            dev.read(&b, 0, &mut back).expect("read");
            assert!(back == model, "fill({off}, {len}) on {p:?}");
        }
    }
    assert_clean(&dev);
}

#[test]
fn zero_copy_kernel_reads_and_writes_host_memory_in_place() {
    let Some(dev) = open() else { return };
    let n = 1u32 << 16;
    let src = dev
        .alloc(u64::from(n) * 16, Placement::HostMapped)
        .expect("alloc src");
    let threads = 64u32 * 256;
    let dst = dev
        .alloc(u64::from(threads) * 4, Placement::HostMapped)
        .expect("alloc dst");
    let data: Vec<u8> = (0..n * 4).flat_map(|i| (i % 1000).to_le_bytes()).collect();
    dev.write(&src, 0, &data).expect("write");
    dev.launch(
        &vuma_vulkan::read_sum_kernel(),
        &LaunchConfig {
            grid: [64, 1, 1],
            block: [256, 1, 1],
            shared_mem_bytes: 0,
        },
        &[
            Arg::whole(&src, AccessMode::Read),
            Arg::whole(&dst, AccessMode::Write),
            Arg::Scalar(Scalar::U32(n)),
        ],
    )
    .expect("launch");
    let mut back = vec![0u8; (threads * 4) as usize];
    dev.read(&dst, 0, &mut back).expect("read");
    let got: u64 = words(&back).iter().map(|&w| u64::from(w)).sum();
    let want: u64 = (0..u64::from(n) * 4).map(|i| i % 1000).sum();
    assert_eq!(got, want);
    assert_clean(&dev);
}

#[test]
fn validation_counter_sees_a_deliberate_error() {
    let Some(dev) = open() else { return };
    if !dev.validation_active() {
        eprintln!("VALIDATION UNAVAILABLE: counter not checked");
        return;
    }
    // `increment` reads 8 bytes of push constants: one scalar is refused before it
    // reaches the driver (the module's interface is checked), so no pipeline is built.
    let buf = dev.alloc(1024, Placement::DeviceLocal).expect("alloc");
    let before = dev.validation_errors();
    let r = dev.launch(
        &vuma_vulkan::increment_kernel(),
        &LaunchConfig::for_elements(1, 64),
        &[
            Arg::whole(&buf, AccessMode::ReadWrite),
            Arg::Scalar(Scalar::U32(0)),
        ],
    );
    assert!(
        matches!(&r, Err(Error::InvalidArgument(m)) if m.contains("push constants")),
        "{r:?}"
    );
    assert_eq!(dev.validation_errors(), before, "refused before the driver");
    // A planted error (a sampler using a feature the device did not enable) is counted.
    dev.plant_validation_error().expect("sampler");
    assert!(
        dev.validation_errors() > before,
        "the layer must report the planted error"
    );
}

/// The BAR upload path (`VUMA_VK_H2D=bar`, forced through `set_h2d_strategy` rather than
/// the environment): exact bytes for odd sizes and offsets, sizes spanning several slots
/// and more writes than the ring has slots, interleaved with staged writes, a kernel and
/// reads; the BAR ring must really have been used where the device has a BAR type
/// (lavapipe: its one host-visible device-local type), and validation stays clean.
#[test]
fn bar_uploads_write_exact_bytes() {
    use vuma_vulkan::H2dStrategy;
    let Some(dev) = open() else { return };
    let bar_type = dev.bar_upload_type();
    eprintln!(
        "BAR upload type: {bar_type:?}, strategy from the environment: {}",
        dev.h2d_strategy()
    );
    dev.set_h2d_strategy(H2dStrategy::Bar);
    assert_eq!(dev.h2d_strategy(), H2dStrategy::Bar);
    assert_eq!(dev.h2d_uses_bar(1), bar_type.is_some());
    if let Some(t) = bar_type {
        let f = dev.memory_table().types[t as usize].flags;
        assert!(f.contains(
            ash::vk::MemoryPropertyFlags::DEVICE_LOCAL
                | ash::vk::MemoryPropertyFlags::HOST_VISIBLE
                | ash::vk::MemoryPropertyFlags::HOST_COHERENT
        ));
    }
    let mib = 1usize << 20;
    let size = 40 * mib + 4096;
    let buf = dev
        .alloc(size as u64, Placement::DeviceLocal)
        .expect("alloc");
    let mut expect: Vec<u8> = (0..size).map(|i| (i * 31 % 241) as u8).collect();
    dev.write(&buf, 0, &expect).expect("initial write");
    let before = dev.bar_bytes_written();
    if bar_type.is_some() {
        assert!(before >= size as u64, "the BAR ring was not used");
    }
    // (offset, len): odd sizes and offsets, one byte, less than a line, more than one slot
    // (8 MiB on lavapipe, 16 MiB on discrete GPUs), and past the end of the buffer.
    let cases = [
        (0usize, 1usize),
        (1, 3),
        (63, 65),
        (4095, 4097),
        (12_345, 1_000_003),
        (7, 17 * mib + 11),
        (3 * mib + 1, 33 * mib + 5),
        (size - 9, 9),
        (0, size),
    ];
    let mut seed = 1u32;
    let mut via_bar = 0u64;
    for (round, &(off, len)) in cases.iter().enumerate() {
        let data: Vec<u8> = (0..len)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 24) as u8
            })
            .collect();
        // Every third write goes through the staging ring, to interleave the two rings.
        let bar = round % 3 != 2;
        dev.set_h2d_strategy(if bar {
            H2dStrategy::Bar
        } else {
            H2dStrategy::Staging
        });
        if bar {
            via_bar += len as u64;
        }
        dev.write(&buf, off as u64, &data).expect("write");
        expect[off..off + len].copy_from_slice(&data);
        let mut back = vec![0u8; len];
        dev.read(&buf, off as u64, &mut back).expect("read range");
        assert!(back == data, "range {off}+{len} (round {round})");
    }
    dev.set_h2d_strategy(H2dStrategy::Bar);
    // A kernel between BAR writes: write, increment the first 1024 words, read.
    let words_in: Vec<u8> = (0..1024u32).flat_map(|i| i.to_le_bytes()).collect();
    dev.write(&buf, 0, &words_in).expect("write words");
    via_bar += words_in.len() as u64;
    dev.launch(
        &vuma_vulkan::increment_kernel(),
        &LaunchConfig::for_elements(1024, 64),
        &[
            Arg::Buffer {
                buffer: &buf,
                offset: 0,
                len: 4096,
                access: AccessMode::ReadWrite,
            },
            Arg::Scalar(Scalar::U32(1024)),
            Arg::Scalar(Scalar::U32(5)),
        ],
    )
    .expect("launch");
    expect[..4096].copy_from_slice(
        &(0..1024u32)
            .flat_map(|i| (i + 5).to_le_bytes())
            .collect::<Vec<u8>>(),
    );
    let mut all = vec![0u8; size];
    dev.read(&buf, 0, &mut all).expect("read all");
    assert!(all == expect, "whole buffer after BAR writes and a kernel");
    assert_eq!(words(&all[..16]), vec![5, 6, 7, 8]);
    if bar_type.is_some() {
        assert_eq!(dev.bar_bytes_written(), before + via_bar);
    }
    // Writes into host-visible buffers never touch the BAR ring.
    let n = dev.bar_bytes_written();
    let hm = dev.alloc(4096, Placement::HostMapped).expect("alloc");
    dev.write(&hm, 5, &[9u8; 100]).expect("host-mapped write");
    assert_eq!(dev.bar_bytes_written(), n);
    // Auto: BAR only for large writes on discrete GPUs with a large BAR.
    dev.set_h2d_strategy(H2dStrategy::Auto);
    let large_bar = dev.memory_table().has_large_bar();
    let discrete = dev.info().kind == DeviceKind::Discrete;
    assert_eq!(
        dev.h2d_uses_bar(H2dStrategy::AUTO_BAR_MIN),
        bar_type.is_some() && discrete && large_bar
    );
    assert!(!dev.h2d_uses_bar(H2dStrategy::AUTO_BAR_MIN - 1));
    dev.write(&buf, 0, &expect[..2 * mib]).expect("auto write");
    dev.set_h2d_strategy(H2dStrategy::Staging);
    assert!(!dev.h2d_uses_bar(u64::MAX));
    assert_clean(&dev);
}
