//! The memory manager's migrations through PCIe Hyperloop ([`HyperloopPath`]), on every
//! device there is: a host device always (the encoder's host variant; one with copies of
//! its own, since the host device otherwise uses host copies in place and nothing
//! migrates), CUDA and Vulkan when present (`VUMA_REQUIRE_HW=1` turns a missing one into a
//! failure).
//!
//! A device written buffer of ReLU activations is evicted under budget pressure: it is
//! encoded on the device (CUDA, Vulkan, or the host variant) and kept packed on the host,
//! and uploaded back from the packed bytes (decoded on the device). A zero-heavy buffer is uploaded without its zero pages; random
//! bytes go plainly. Every byte is checked, and so are the reports and the statistics.

use std::sync::Arc;

use vuma_core::conformance::skip_or_fail;
use vuma_core::{
    AccessMode, DynDevice, HostDevice, MemoryConfig, MemoryManager, Outcome, TransferKind,
    TransferPath,
};
use vuma_hyperloop::datasets::Dataset;
use vuma_hyperloop::residency::{CompressOptions, CompressedBuffer, Uploader};
use vuma_hyperloop::{HyperloopPath, PageDecision, PathConfig};

fn device_bytes(mm: &MemoryManager, buf: &vuma_core::UnifiedBuffer, dev: usize) -> Vec<u8> {
    let l = mm.acquire(buf, dev, AccessMode::Read, 1).unwrap();
    let mut out = vec![0u8; buf.len() as usize];
    mm.devices()[dev]
        .read(l.block(), l.offset(), &mut out)
        .unwrap();
    mm.release(l, Outcome::Completed);
    out
}

fn scenario(dev: Arc<dyn DynDevice>) {
    // Every backend encodes write-backs on the device (CUDA, Vulkan, the host variant).
    let encodes = true;
    let len = 8usize << 20;
    // Assume a fast zero scan and cheap device calls, so that the zero-page path runs on
    // any machine (the defaults weigh both against the link).
    let path = HyperloopPath::new(PathConfig {
        scan_bytes_per_s: 1e12,
        call_overhead_s: Some(1e-9),
        on_shared_memory: true,
        always_encode: true,
        ..PathConfig::default()
    })
    .unwrap();
    let config = MemoryConfig {
        transfer: Some(Arc::new(path) as Arc<dyn TransferPath>),
        budgets: [(0usize, 12u64 << 20)].into_iter().collect(),
        ..MemoryConfig::default()
    };
    let mm = MemoryManager::new(vec![dev.clone()], config);
    let relu = Dataset::ReluF32.generate(len, 11);
    let zeros = Dataset::ZeroHeavy.generate(len, 12);
    let random = Dataset::Random.generate(len, 13);

    // `a` is written on the device: its device copy is the only valid one.
    let a = mm.create(len as u64).unwrap();
    let l = mm.acquire(&a, 0, AccessMode::Write, 1).unwrap();
    dev.write(l.block(), l.offset(), &relu).unwrap();
    mm.release(l, Outcome::Completed);

    // `b` (zero-heavy, from the host) needs room: `a` is written back.
    let b = mm.create_from(&zeros).unwrap();
    let l = mm.acquire(&b, 0, AccessMode::Read, 1).unwrap();
    let t = &l.residency.transfers;
    assert_eq!(t.len(), 2, "{t:#?}");
    assert_eq!(t[0].kind, TransferKind::Download);
    assert_eq!(t[0].logical_bytes, len as u64);
    if encodes {
        assert_eq!(t[0].path, "hyperloop", "{t:#?}");
        assert!(
            t[0].link_bytes * 10 < len as u64 * 7,
            "ReLU activations shrink on write-back: {:#?}",
            t[0]
        );
        assert!(t[0].compressed_pages > 0);
    } else {
        assert_eq!(t[0].path, "direct", "{t:#?}");
    }
    assert_eq!(t[1].kind, TransferKind::Upload);
    assert!(t[1].zero_pages > 0, "zero pages are not sent: {:#?}", t[1]);
    assert!(t[1].link_bytes * 4 < len as u64, "{:#?}", t[1]);
    mm.release(l, Outcome::Completed);
    assert_eq!(device_bytes(&mm, &b, 0), zeros, "zero-heavy upload");

    let s = mm.stats();
    if encodes {
        assert_eq!(s.devices[0].packed_writebacks, 1);
        assert!(s.host.packed_bytes > 0 && s.host.packed_bytes < len as u64);
    }

    // `a` comes back (from the packed copy where there is one); `b` is dropped for room
    // (its host copy is valid: nothing to write back).
    let l = mm.acquire(&a, 0, AccessMode::Read, 1).unwrap();
    let up = l.residency.transfers.last().unwrap().clone();
    assert_eq!(up.kind, TransferKind::Upload);
    if encodes {
        assert!(up.decision.contains("decoded on the device"), "{up:#?}");
        assert!(up.link_bytes * 10 < len as u64 * 7, "{up:#?}");
    } else {
        assert!(up.decision.starts_with("plain"), "{up:#?}");
    }
    mm.release(l, Outcome::Completed);
    assert_eq!(
        device_bytes(&mm, &a, 0),
        relu,
        "round trip through the packed copy"
    );
    let packed_before = mm.stats().host.packed_bytes;
    assert_eq!(
        mm.to_vec(&a).unwrap(),
        relu,
        "host read after the round trip"
    );
    if encodes {
        // `a`'s packed write-back is unpacked (a clean copy of `b`, packed when `b` was
        // evicted for room, may stay: its plain host copy is valid as well).
        assert!(
            mm.stats().host.packed_bytes < packed_before,
            "a host read unpacks"
        );
    } else {
        assert_eq!(mm.stats().host.packed_bytes, 0);
    }

    // Random bytes: no zero page, a plain upload.
    let c = mm.create_from(&random).unwrap();
    let l = mm.acquire(&c, 0, AccessMode::Read, 1).unwrap();
    let up = l.residency.transfers.last().unwrap().clone();
    assert!(up.decision.starts_with("plain"), "{up:#?}");
    assert_eq!(up.link_bytes, len as u64);
    mm.release(l, Outcome::Completed);
    assert_eq!(device_bytes(&mm, &c, 0), random);

    // A device write makes the packed copy stale; the next eviction writes back anew.
    let l = mm.acquire(&a, 0, AccessMode::ReadWrite, 1).unwrap();
    dev.fill(l.block(), l.offset(), 4096, 0).unwrap();
    mm.release(l, Outcome::Completed);
    let mut want = relu.clone();
    want[..4096].fill(0);
    mm.evict_all(0).unwrap();
    assert_eq!(mm.to_vec(&a).unwrap(), want);
    let s = mm.stats();
    if dev.info().unified_memory {
        // No link to cross (the host device): nothing counted as link traffic.
        assert!(s.host.link_bytes_in == 0 && s.devices[0].link_bytes_in == 0);
    } else {
        assert!(s.host.link_bytes_in > 0 && s.devices[0].link_bytes_in > 0);
    }
    assert!(s.devices[0].bytes_saved > 0, "{s:#?}");
    drop((a, b, c));
    let s = mm.stats();
    assert_eq!(s.host.bytes_in_use, 0, "{s:#?}");
    assert_eq!(s.devices[0].bytes_in_use, 0);
}

#[test]
fn manager_through_hyperloop_on_the_host_device() {
    scenario(Arc::new(HostDevice::new().without_in_place()));
}

#[test]
fn manager_through_hyperloop_on_cuda() {
    match vuma_cuda::devices() {
        Ok(mut v) if !v.is_empty() => scenario(Arc::new(v.remove(0))),
        Ok(_) => skip_or_fail("cuda", "no CUDA device"),
        Err(e) => skip_or_fail("cuda", &e.to_string()),
    }
}

#[test]
fn manager_through_hyperloop_on_vulkan() {
    match vuma_vulkan::VulkanDevice::open(0) {
        Ok(d) => scenario(Arc::new(d)),
        Err(e) => skip_or_fail("vulkan", &e.to_string()),
    }
}

#[test]
fn uploads_into_a_sub_range_leave_the_rest_alone() {
    let host = HostDevice::new();
    let len = 3 * 65536 + 1000;
    let data = Dataset::ZeroHeavy.generate(len, 5);
    let decisions: Vec<PageDecision> = (0..len.div_ceil(65536))
        .map(|p| {
            if data[p * 65536..((p + 1) * 65536).min(len)]
                .iter()
                .all(|&b| b == 0)
            {
                PageDecision::Zero
            } else {
                PageDecision::Raw
            }
        })
        .collect();
    let cb =
        CompressedBuffer::from_decisions(&data, &decisions, &CompressOptions::default()).unwrap();
    let off = 4096u64;
    let dst = DynDevice::alloc(
        &host,
        len as u64 + 2 * off,
        vuma_core::Placement::DeviceLocal,
    )
    .unwrap();
    DynDevice::fill(&host, dst.as_ref(), 0, len as u64 + 2 * off, 0xAB).unwrap();
    Uploader::new(&host)
        .upload_into(&cb, dst.as_ref(), off)
        .unwrap();
    let mut back = vec![0u8; len + 2 * off as usize];
    DynDevice::read(&host, dst.as_ref(), 0, &mut back).unwrap();
    assert!(
        back[..off as usize].iter().all(|&b| b == 0xAB),
        "guard before"
    );
    assert_eq!(&back[off as usize..off as usize + len], &data[..]);
    assert!(
        back[off as usize + len..].iter().all(|&b| b == 0xAB),
        "guard after"
    );
    assert!(Uploader::new(&host)
        .upload_into(&cb, dst.as_ref(), 2 * off + 1)
        .is_err());
    let short =
        &CompressedBuffer::from_decisions(&data, &decisions[1..], &CompressOptions::default());
    assert!(short.is_err(), "a decision per page is required");
}

#[test]
fn eviction_of_a_sub_range_reuses_its_scratch() {
    use vuma_hyperloop::{DeviceEncoder, EncoderScratch};
    let host = HostDevice::new();
    let len = 5 * 65536 + 12;
    let data = Dataset::ReluF32.generate(len, 3);
    let off = 8192u64;
    let src = DynDevice::alloc(&host, len as u64 + off, vuma_core::Placement::DeviceLocal).unwrap();
    DynDevice::fill(&host, src.as_ref(), 0, off, 0x5A).unwrap();
    DynDevice::write(&host, src.as_ref(), off, &data).unwrap();
    let opts = CompressOptions::default();
    let mut scratch = EncoderScratch::default();
    for round in 0..3 {
        let mut enc = DeviceEncoder::with_scratch(&host, scratch);
        let ev = enc
            .evict_range(
                src.as_ref(),
                off,
                len as u64,
                &opts,
                vuma_core::Placement::Staging,
            )
            .unwrap();
        let mut back = vec![0u8; len];
        ev.to_compressed(&host)
            .unwrap()
            .decompress_host(&mut back)
            .unwrap();
        assert_eq!(back, data, "round {round}");
        enc.recycle(ev);
        scratch = enc.into_scratch();
    }
    let mut enc = DeviceEncoder::with_scratch(&host, scratch);
    assert!(enc
        .evict_range(
            src.as_ref(),
            off + 1,
            len as u64,
            &opts,
            vuma_core::Placement::Staging
        )
        .is_err());
}

#[test]
fn dense_uploads_decide_from_a_sample() {
    let host = HostDevice::new();
    let path = HyperloopPath::new(PathConfig {
        on_shared_memory: true,
        ..PathConfig::default()
    })
    .unwrap();
    let len = 32usize << 20; // 512 pages: a sample of 256
    let dst = DynDevice::alloc(&host, len as u64, vuma_core::Placement::DeviceLocal).unwrap();
    let dense = Dataset::Random.generate(len, 9);
    let r = path.upload(&host, &dense, dst.as_ref(), 0).unwrap();
    assert!(r.decision.contains("sampled pages"), "{}", r.decision);
    assert_eq!((r.link_bytes, r.zero_pages), (len as u64, 0));
    let mut back = vec![0u8; len];
    DynDevice::read(&host, dst.as_ref(), 0, &mut back).unwrap();
    assert_eq!(back, dense);
    // Mostly zero: the sample passes, the full probe and the model decide.
    let zeros = Dataset::ZeroHeavy.generate(len, 9);
    let r = path.upload(&host, &zeros, dst.as_ref(), 0).unwrap();
    assert!(!r.decision.contains("sampled pages"), "{}", r.decision);
    DynDevice::read(&host, dst.as_ref(), 0, &mut back).unwrap();
    assert_eq!(back, zeros);
}

/// A device lost (a fatal driver error) takes its memory with it, not the packed host
/// copies it made: a write-back packed on the device is decoded on the host, a buffer with
/// a valid host copy keeps it, and a buffer whose only valid copy was in the lost device's
/// memory reports `DataLost` (never stale bytes) until it is overwritten whole. The device
/// is never used again.
#[test]
fn a_lost_device_leaves_packed_copies_readable_on_the_host() {
    use vuma_core::fault::FaultPlan;
    use vuma_core::Error;
    let plan = Arc::new(FaultPlan::new(1, 0.0));
    let dev: Arc<dyn DynDevice> = Arc::new(
        HostDevice::with_budget("gpu", 1 << 30)
            .without_in_place()
            .with_faults(plan.clone()),
    );
    let path = HyperloopPath::new(PathConfig {
        on_shared_memory: true,
        always_encode: true,
        ..PathConfig::default()
    })
    .unwrap();
    let config = MemoryConfig {
        transfer: Some(Arc::new(path) as Arc<dyn TransferPath>),
        budgets: [(0usize, 10u64 << 20)].into_iter().collect(),
        ..MemoryConfig::default()
    };
    let mm = MemoryManager::new(vec![dev.clone()], config);
    let len = 8usize << 20;
    let relu = Dataset::ReluF32.generate(len, 21);
    let weights = Dataset::Bf16Weights.generate(2 << 20, 22);
    let random = Dataset::Random.generate(1 << 20, 23);
    // `a`: written on the device, then evicted for room (LRU, when `d` arrives): packed
    // on the device.
    let a = mm.create(len as u64).unwrap();
    let l = mm.acquire(&a, 0, AccessMode::Write, 1).unwrap();
    dev.write(l.block(), l.offset(), &relu).unwrap();
    mm.release(l, Outcome::Completed);
    // `c`: written on the device, resident: its only valid copy is device memory.
    let c = mm.create(weights.len() as u64).unwrap();
    // `d`: from the host, resident too (its host copy stays valid).
    let d = mm.create_from(&random).unwrap();
    for (buf, access) in [(&c, AccessMode::Write), (&d, AccessMode::Read)] {
        let l = mm.acquire(buf, 0, access, 1).unwrap();
        if access == AccessMode::Write {
            dev.write(l.block(), l.offset(), &weights).unwrap();
        }
        mm.release(l, Outcome::Completed);
    }
    assert_eq!(mm.stats().devices[0].packed_writebacks, 1, "a was packed");

    plan.lose_device();
    assert_eq!(
        mm.to_vec(&a).unwrap(),
        relu,
        "the packed copy, decoded on the host"
    );
    assert_eq!(mm.to_vec(&d).unwrap(), random, "the host copy");
    let e = mm.to_vec(&c).unwrap_err();
    assert!(matches!(e, Error::DataLost { .. }), "{e}");
    assert!(mm.is_lost(0));
    let e = mm.acquire(&d, 0, AccessMode::Read, 1).unwrap_err();
    assert!(matches!(e, Error::DeviceLost { .. }), "{e}");
    // Overwritten whole, `c` is usable again (on the host).
    mm.write(&c, 0, &weights).unwrap();
    assert_eq!(mm.to_vec(&c).unwrap(), weights);
    drop((a, c, d));
    assert_eq!(mm.stats().devices[0].bytes_in_use, 0);
}
