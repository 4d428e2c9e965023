//! `MemoryManager::create_from_on`: a new buffer from the user's bytes, uploaded to a device
//! while its host copy is filled. The bytes land identically on the host and the device for
//! sizes around the fill unit, the device's budget holds (others are evicted as a prefetch
//! would evict them), and a failure anywhere leaves the host copy valid and complete with no
//! half-valid device copy. The devices are host devices behind a modelled link (device-local
//! copies, link traffic counted), pinning as a GPU would (`HostDevice::with_pin_log`).

use std::sync::Arc;

use vuma_core::fault::FaultPlan;
use vuma_core::{
    AccessMode, DynDevice, Error, HostDevice, LinkInfo, Location, MemoryConfig, MemoryManager,
    Outcome, PinConfig, PinLog, UnifiedBuffer,
};

const MIB: u64 = 1 << 20;
const UNIT: u64 = MemoryManager::FIRST_UPLOAD_UNIT;

fn linked(budget: u64) -> HostDevice {
    HostDevice::with_budget("linked", budget).behind_link(LinkInfo::from_pcie(5, 16))
}

fn manager(dev: HostDevice, log: &Arc<PinLog>) -> (MemoryManager, Arc<dyn DynDevice>) {
    let dev: Arc<dyn DynDevice> = Arc::new(dev.with_pin_log(log.clone()));
    let config = MemoryConfig {
        pin: PinConfig {
            // Pin small copies too, so every size here takes the pinned path.
            min_bytes: 1,
            budget: Some(256 * MIB),
            ..PinConfig::default()
        },
        ..MemoryConfig::default()
    };
    (MemoryManager::new(vec![dev.clone()], config), dev)
}

fn pattern(n: u64, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

/// The device copy's bytes, read straight from the device.
fn device_bytes(mm: &MemoryManager, dev: &Arc<dyn DynDevice>, b: &UnifiedBuffer) -> Vec<u8> {
    let lease = mm.acquire(b, 0, AccessMode::Read, 1).expect("acquire");
    assert!(lease.residency.hit, "already resident: nothing moves");
    let mut out = vec![0u8; b.len() as usize];
    dev.read(lease.block(), lease.offset(), &mut out)
        .expect("read");
    mm.release(lease, Outcome::NotRun);
    out
}

#[test]
fn bytes_land_on_host_and_device_around_unit_boundaries() {
    let log = Arc::new(PinLog::default());
    let (mm, dev) = manager(linked(512 * MIB), &log);
    let sizes = [1, 4095, UNIT - 1, UNIT, UNIT + 1, 2 * UNIT, 9 * UNIT + 777];
    for (i, &n) in sizes.iter().enumerate() {
        let data = pattern(n, i as u8);
        let before = mm.stats().devices[0];
        let (b, upload) = mm.create_from_on(&data, 0).expect("created");
        let r = upload.expect("uploaded");
        assert!(r.allocated && !r.hit, "{n}: {r:?}");
        assert_eq!((r.bytes_moved, r.source), (n, Some(Location::Host)));
        assert_eq!(r.transfers.len(), 1);
        let t = &r.transfers[0];
        assert!(t.decision.starts_with("pipelined"), "{}", t.decision);
        assert!(t.decision.contains("pinned host copy"), "{}", t.decision);
        assert_eq!((t.logical_bytes, t.link_bytes), (n, n));
        let res = mm.residency(&b);
        assert_eq!(res.len(), 2);
        assert!(res.iter().all(|&(_, _, valid)| valid), "{n}: {res:?}");
        assert_eq!(mm.missing_bytes(&b, 0), 0);
        assert_eq!(mm.to_vec(&b).unwrap(), data, "{n}: host copy");
        assert_eq!(device_bytes(&mm, &dev, &b), data, "{n}: device copy");
        let after = mm.stats().devices[0];
        assert_eq!(after.bytes_in - before.bytes_in, n);
        assert_eq!(after.link_bytes_in - before.link_bytes_in, n);
        assert_eq!(after.misses - before.misses, 1);
        drop(b);
    }
    let s = mm.stats();
    assert_eq!((s.buffers, s.host.bytes_in_use), (0, 0));
    assert_eq!(s.devices[0].bytes_in_use, 0);
    // Another buffer of a size class seen before takes its pooled pinned block.
    let (pins, hits) = (log.pins(), s.host.pool_hits);
    let data = pattern(2 * UNIT, 99);
    let (b, upload) = mm.create_from_on(&data, 0).unwrap();
    upload.unwrap();
    assert_eq!(log.pins(), pins, "nothing pinned again");
    assert_eq!(mm.stats().host.pool_hits, hits + 1);
    assert_eq!(mm.to_vec(&b).unwrap(), data);
    assert_eq!(device_bytes(&mm, &dev, &b), data);
}

#[test]
fn bad_input_is_a_typed_error_and_creates_nothing() {
    let log = Arc::new(PinLog::default());
    let (mm, _) = manager(linked(64 * MIB), &log);
    assert!(matches!(
        mm.create_from_on(&[], 0),
        Err(Error::ZeroSize { .. })
    ));
    assert!(matches!(
        mm.create_from_on(&[1, 2, 3], 1),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(mm.stats().buffers, 0);
    assert_eq!(mm.stats().host.bytes_in_use, 0);
}

#[test]
fn the_budget_holds_and_others_are_evicted_as_a_prefetch_would() {
    let log = Arc::new(PinLog::default());
    let (mm, dev) = manager(linked(4 * MIB), &log);
    let datas: Vec<Vec<u8>> = (0..3).map(|i| pattern(3 * MIB / 2, i)).collect();
    let a = mm.create_from(&datas[0]).unwrap();
    mm.prefetch(&a, 0).unwrap();
    let (b, up) = mm.create_from_on(&datas[1], 0).unwrap();
    assert!(up.unwrap().evicted.is_empty());
    // The third does not fit with both: the least recently used (`a`) goes.
    let (c, up) = mm.create_from_on(&datas[2], 0).unwrap();
    let r = up.unwrap();
    assert_eq!(r.evicted, vec![(a.id(), 0)], "a clean copy: no write-back");
    let s = mm.stats().devices[0];
    assert!(s.bytes_in_use <= 4 * MIB, "{s:?}");
    assert_eq!(s.evictions, 1);
    assert_eq!(mm.missing_bytes(&a, 0), 3 * MIB / 2);
    for (buf, data) in [(&a, &datas[0]), (&b, &datas[1]), (&c, &datas[2])] {
        assert_eq!(&mm.to_vec(buf).unwrap(), data);
    }
    assert_eq!(device_bytes(&mm, &dev, &c), datas[2]);

    // Too large for the device: the buffer is made on the host all the same.
    let big = pattern(5 * MIB, 7);
    let (d, up) = mm.create_from_on(&big, 0).unwrap();
    assert!(matches!(up, Err(Error::TooLarge { .. })), "{up:?}");
    assert_eq!(mm.residency(&d), vec![(Location::Host, None, true)]);
    assert_eq!(mm.to_vec(&d).unwrap(), big);
    assert!(mm.stats().devices[0].bytes_in_use <= 4 * MIB);

    // No room at all: every copy on the device is held by a kernel.
    let leases: Vec<_> = [&b, &c]
        .iter()
        .map(|x| mm.acquire(x, 0, AccessMode::Read, 1).unwrap())
        .collect();
    let e = pattern(2 * MIB, 8);
    let (e_buf, up) = mm.create_from_on(&e, 0).unwrap();
    assert!(matches!(up, Err(Error::BudgetExceeded { .. })), "{up:?}");
    assert_eq!(mm.to_vec(&e_buf).unwrap(), e);
    for l in leases {
        mm.release(l, Outcome::NotRun);
    }
}

#[test]
fn injected_failures_leave_the_host_copy_valid_and_complete() {
    let (mut ok, mut failed, mut in_upload) = (0, 0, 0);
    for seed in 0..40u64 {
        let plan = Arc::new(FaultPlan::new(seed.wrapping_mul(0x9e37_79b9), 0.2));
        let log = Arc::new(PinLog::default());
        let (mm, dev) = manager(linked(64 * MIB).with_faults(plan.clone()), &log);
        let data = pattern(6 * UNIT + 5, seed as u8);
        let (b, up) = mm.create_from_on(&data, 0).expect("created");
        plan.set_enabled(false);
        match up {
            Ok(r) => {
                ok += 1;
                assert_eq!(r.bytes_moved, data.len() as u64);
                assert_eq!(device_bytes(&mm, &dev, &b), data, "seed {seed}");
            }
            Err(Error::Injected(_)) => {
                failed += 1;
                if mm.stats().devices[0].allocations == 1 {
                    in_upload += 1; // placed, then a write failed
                }
                assert_eq!(
                    mm.residency(&b),
                    vec![(Location::Host, None, true)],
                    "seed {seed}: no device copy left behind"
                );
                let s = mm.stats().devices[0];
                assert_eq!(s.bytes_in_use, 0, "seed {seed}: {s:?}");
                assert_eq!(s.bytes_in, 0, "seed {seed}: a failed upload counts nothing");
            }
            Err(e) => panic!("seed {seed}: {e}"),
        }
        assert_eq!(mm.to_vec(&b).unwrap(), data, "seed {seed}: host copy");
        // The buffer is usable: a later acquire uploads it.
        assert_eq!(device_bytes_after_upload(&mm, &dev, &b), data);
    }
    assert!(
        ok > 0 && in_upload > 0,
        "{ok} uploads, {failed} failures, {in_upload} of them in the upload"
    );
}

fn device_bytes_after_upload(
    mm: &MemoryManager,
    dev: &Arc<dyn DynDevice>,
    b: &UnifiedBuffer,
) -> Vec<u8> {
    mm.prefetch(b, 0).expect("prefetch");
    device_bytes(mm, dev, b)
}

#[test]
fn a_lost_device_leaves_the_buffer_on_the_host() {
    let plan = Arc::new(FaultPlan::new(1, 0.0));
    let log = Arc::new(PinLog::default());
    let (mm, _) = manager(linked(64 * MIB).with_faults(plan.clone()), &log);
    plan.lose_device();
    let data = pattern(3 * UNIT, 3);
    let (b, up) = mm.create_from_on(&data, 0).unwrap();
    assert!(matches!(up, Err(Error::DeviceLost { .. })), "{up:?}");
    assert!(mm.is_lost(0), "the manager noticed");
    assert_eq!(mm.to_vec(&b).unwrap(), data);
    let (b2, up) = mm.create_from_on(&data, 0).unwrap();
    assert!(matches!(up, Err(Error::DeviceLost { .. })), "{up:?}");
    assert_eq!(mm.to_vec(&b2).unwrap(), data);
    assert_eq!(mm.stats().devices[0].bytes_in_use, 0);
}

#[test]
fn devices_sharing_host_memory_take_it_too() {
    // A shared-memory device whose backend keeps copies of its own: the pipelined upload
    // is a copy within host memory.
    let dev: Arc<dyn DynDevice> =
        Arc::new(HostDevice::with_budget("host", 64 * MIB).without_in_place());
    let mm = MemoryManager::new(vec![dev.clone()], MemoryConfig::default());
    let data = pattern(3 * UNIT + 1, 4);
    let (b, up) = mm.create_from_on(&data, 0).unwrap();
    let r = up.unwrap();
    assert!(!r.in_place);
    assert!(
        !r.transfers[0].decision.contains("pinned")
            && !r.transfers[0].decision.contains("pageable"),
        "no link, no note on pinning: {}",
        r.transfers[0].decision
    );
    assert_eq!(mm.stats().devices[0].link_bytes_in, 0, "no link crossed");
    assert_eq!(device_bytes(&mm, &dev, &b), data);
    assert_eq!(mm.to_vec(&b).unwrap(), data);
}

#[test]
fn devices_using_host_memory_in_place_get_nothing_sent() {
    let dev: Arc<dyn DynDevice> = Arc::new(HostDevice::with_budget("host", 64 * MIB));
    let mm = MemoryManager::new(vec![dev.clone()], MemoryConfig::default());
    let data = pattern(3 * UNIT + 1, 4);
    let (b, up) = mm.create_from_on(&data, 0).unwrap();
    let r = up.unwrap();
    assert!(r.in_place, "{r:?}");
    assert!(r.transfers.is_empty() && r.bytes_moved == 0, "{r:?}");
    let s = mm.stats().devices[0];
    assert_eq!(
        (s.bytes_in_use, s.allocations, s.bytes_in, s.link_bytes_in),
        (0, 0, 0, 0)
    );
    assert_eq!(mm.stats().host.bytes_in_use, data.len() as u64, "one copy");
    assert_eq!(device_bytes(&mm, &dev, &b), data);
    assert_eq!(mm.to_vec(&b).unwrap(), data);
}

#[test]
fn concurrent_work_on_other_buffers_sees_consistent_state() {
    let log = Arc::new(PinLog::default());
    let (mm, dev) = manager(linked(6 * MIB), &log);
    std::thread::scope(|s| {
        let mm2 = mm.clone();
        s.spawn(move || {
            for i in 0..20u8 {
                let data = pattern(MIB + 3, i);
                let b = mm2.create_from(&data).unwrap();
                mm2.prefetch(&b, 0).unwrap();
                mm2.evict_all(0).unwrap();
                assert_eq!(mm2.to_vec(&b).unwrap(), data);
            }
        });
        for i in 0..20u8 {
            let data = pattern(2 * MIB + UNIT / 2, i ^ 0x55);
            let (b, up) = mm.create_from_on(&data, 0).unwrap();
            match up {
                Ok(_) => {
                    // Read through a lease (the other thread may have evicted it again).
                    let lease = mm.acquire(&b, 0, AccessMode::Read, 1).unwrap();
                    let mut out = vec![0u8; data.len()];
                    dev.read(lease.block(), lease.offset(), &mut out).unwrap();
                    mm.release(lease, Outcome::NotRun);
                    assert_eq!(out, data);
                }
                // The other thread's copy may be held by its prefetch just then.
                Err(Error::BudgetExceeded { .. }) => {}
                Err(e) => panic!("{e}"),
            }
            assert_eq!(mm.to_vec(&b).unwrap(), data);
            assert!(mm.stats().devices[0].bytes_in_use <= 6 * MIB);
        }
    });
    let s = mm.stats();
    assert_eq!((s.buffers, s.devices[0].bytes_in_use), (0, 0));
}
