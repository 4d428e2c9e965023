//! Host copies used in place: on a device that shares host memory (the host device), a
//! lease is the buffer's host copy itself. Nothing is allocated on the device, nothing is
//! copied either way, the statistics say so; kernel writes land in the host copy; a handle
//! kept beyond its lease refuses access; readers in place keep their snapshot (host writes
//! and writers elsewhere copy on write); a failed writer in place loses only what it held;
//! devices with copies of their own stay coherent with it; pinned host memory is
//! accounted for.

use std::sync::Arc;

use vuma_core::fault::FaultPlan;
use vuma_core::{
    AccessMode, Arg, DynDevice, Error, HostBuffer, HostDevice, Kernel, LaunchConfig, LinkInfo,
    Location, MemoryConfig, MemoryManager, Outcome, PinConfig, PinLog, Placement, Scalar,
};

const N: usize = 16 << 10;

fn in_place_manager(budget: u64) -> (MemoryManager, Arc<dyn DynDevice>) {
    let d: Arc<dyn DynDevice> = Arc::new(HostDevice::with_budget("host", budget));
    (
        MemoryManager::new(vec![d.clone()], MemoryConfig::default()),
        d,
    )
}

/// `dst[i] = src[i] * 2 + add` over bytes.
fn twice_plus() -> Kernel {
    Kernel::new("twice_plus").with_host(|l| {
        let add = match l.scalars[..] {
            [Scalar::U32(a)] => a as u8,
            _ => return Err(Error::invalid("twice_plus takes (src, dst, add: u32)")),
        };
        let (src, dst) = l.buffers.split_at_mut(1);
        for (d, s) in dst[0].iter_mut().zip(src[0].iter()) {
            *d = s.wrapping_mul(2).wrapping_add(add);
        }
        Ok(())
    })
}

/// Whether every byte of the buffer equals the first (fails the launch otherwise).
fn uniform() -> Kernel {
    Kernel::new("uniform").with_host(|l| {
        let b = &l.buffers[0];
        if b.iter().all(|&x| x == b[0]) {
            Ok(())
        } else {
            Err(Error::invalid(
                "a torn read: the bytes changed during the kernel",
            ))
        }
    })
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

fn cfg() -> LaunchConfig {
    LaunchConfig::for_elements(N as u64, 64)
}

#[test]
fn in_place_buffers_allocate_nothing_on_the_device_and_move_nothing() {
    let (mm, dev) = in_place_manager(1 << 30);
    assert!(mm.uses_in_place(0));
    let data = pattern(N, 1);
    let src = mm.create_from(&data).unwrap();
    let dst = mm.create(N as u64).unwrap();
    let ls = mm.acquire(&src, 0, AccessMode::Read, 1).unwrap();
    let ld = mm.acquire(&dst, 0, AccessMode::Write, 1).unwrap();
    for l in [&ls, &ld] {
        let r = &l.residency;
        assert!(l.is_in_place() && r.in_place, "{r:?}");
        assert_eq!(r.placement, Placement::HostMapped);
        assert!(!r.allocated && r.hit, "{r:?}");
        assert_eq!((r.bytes_moved, r.source, r.link_bytes()), (0, None, 0));
        assert!(r.reason.contains("in place"), "{}", r.reason);
        assert!(r.transfers.is_empty() && r.evicted.is_empty());
        let b = l.block().as_any().downcast_ref::<HostBuffer>().unwrap();
        assert!(b.is_in_place());
    }
    dev.launch(
        &twice_plus(),
        &cfg(),
        &[ls.arg(), ld.arg(), Arg::Scalar(Scalar::U32(3))],
    )
    .unwrap();
    mm.release(ls, Outcome::Completed);
    mm.release(ld, Outcome::Completed);
    // The kernel wrote the host copy: reading it brings nothing back.
    let want: Vec<u8> = data
        .iter()
        .map(|x| x.wrapping_mul(2).wrapping_add(3))
        .collect();
    assert_eq!(mm.to_vec(&dst).unwrap(), want);
    let s = mm.stats();
    let d = s.devices[0];
    assert_eq!(
        (d.bytes_in_use, d.peak_bytes, d.allocations, d.evictions),
        (0, 0, 0, 0),
        "nothing allocated on the device: {d:?}"
    );
    assert_eq!(
        (
            d.bytes_in,
            d.link_bytes_in,
            d.writeback_bytes,
            d.bytes_saved
        ),
        (0, 0, 0, 0),
        "nothing copied into it or out of it: {d:?}"
    );
    assert_eq!((d.in_place_uses, d.in_place_bytes), (2, 2 * N as u64));
    assert_eq!((d.hits, d.misses), (2, 0));
    let h = s.host;
    assert_eq!(
        (h.bytes_in, h.link_bytes_in),
        (0, 0),
        "nothing downloaded: {h:?}"
    );
    assert_eq!(h.bytes_in_use, 2 * N as u64, "one copy of each buffer");
    for p in Placement::ALL {
        let ps = mm.pool_stats(0, p).unwrap();
        assert_eq!(ps.bytes_reserved, 0, "{p:?}: no device memory taken");
    }
    assert!(mm
        .residency(&src)
        .iter()
        .all(|(l, _, _)| *l == Location::Host));
    // Again: still nothing moves.
    let l = mm.acquire(&dst, 0, AccessMode::ReadWrite, 1).unwrap();
    assert_eq!(l.residency.bytes_moved, 0);
    mm.release(l, Outcome::Completed);
    assert_eq!(mm.stats().devices[0].bytes_in, 0);
    assert_eq!(mm.missing_bytes(&dst, 0), 0);
    drop((src, dst));
    let s = mm.stats();
    assert_eq!((s.buffers, s.host.bytes_in_use), (0, 0));
}

#[test]
fn the_budget_of_a_device_used_in_place_does_not_apply() {
    let (mm, dev) = in_place_manager(64 << 10);
    let a = mm.create_from(&pattern(4 << 20, 2)).unwrap();
    let b = mm.create_from(&pattern(4 << 20, 3)).unwrap();
    let la = mm.acquire(&a, 0, AccessMode::Read, 4).unwrap();
    let lb = mm.acquire(&b, 0, AccessMode::ReadWrite, 4).unwrap();
    assert!(la.residency.evicted.is_empty() && lb.residency.evicted.is_empty());
    dev.launch(
        &twice_plus(),
        &cfg(),
        &[la.arg(), lb.arg(), Arg::Scalar(Scalar::U32(0))],
    )
    .unwrap();
    mm.release(la, Outcome::Completed);
    mm.release(lb, Outcome::Completed);
    assert_eq!(mm.evict_all(0).unwrap(), 0, "nothing to evict");
    let s = mm.stats().devices[0];
    assert_eq!((s.bytes_in_use, s.evictions), (0, 0));
    let want: Vec<u8> = pattern(4 << 20, 2)
        .iter()
        .map(|x| x.wrapping_mul(2))
        .collect();
    assert_eq!(&mm.to_vec(&b).unwrap()[..N], &want[..N]);
}

#[test]
fn a_handle_kept_after_its_lease_refuses_access() {
    let (mm, dev) = in_place_manager(1 << 30);
    let b = mm.create_from(&pattern(N, 4)).unwrap();
    let l = mm.acquire(&b, 0, AccessMode::ReadWrite, 1).unwrap();
    let kept = l
        .block()
        .as_any()
        .downcast_ref::<HostBuffer>()
        .unwrap()
        .clone();
    let mut one = [0u8; 1];
    dev.read(&kept, 0, &mut one).unwrap();
    assert_eq!(
        one[0],
        pattern(N, 4)[0],
        "the clone is the host copy while leased"
    );
    mm.release(l, Outcome::Completed);
    assert!(dev.read(&kept, 0, &mut one).is_err());
    assert!(dev.write(&kept, 0, &[9]).is_err());
    assert!(dev.fill(&kept, 0, 1, 9).is_err());
    let args = [Arg::Buffer {
        buffer: &kept as &dyn vuma_core::DynBuffer,
        offset: 0,
        len: N as u64,
        access: AccessMode::Read,
    }];
    assert!(dev.launch(&uniform(), &cfg(), &args).is_err());
    assert_eq!(mm.to_vec(&b).unwrap(), pattern(N, 4), "untouched");
    drop(b);
    assert!(
        dev.read(&kept, 0, &mut one).is_err(),
        "and after the buffer is freed"
    );
}

#[test]
fn each_lease_in_place_has_a_region_of_its_own() {
    let (mm, dev) = in_place_manager(1 << 30);
    let b = mm.create_from(&pattern(N, 17)).unwrap();
    let l1 = mm.acquire(&b, 0, AccessMode::Read, 1).unwrap();
    let kept = l1
        .block()
        .as_any()
        .downcast_ref::<HostBuffer>()
        .unwrap()
        .clone();
    let l2 = mm.acquire(&b, 0, AccessMode::Read, 1).unwrap();
    mm.release(l1, Outcome::Completed);
    let mut one = [0u8; 1];
    assert!(dev.read(&kept, 0, &mut one).is_err(), "its lease ended");
    dev.read(l2.block(), 0, &mut one).unwrap();
    // A host write retires the copy l2 reads; a new lease uses the fresh copy; the retired
    // one is freed when l2, its last lease, ends, while l3 goes on.
    mm.write(&b, 0, &[1u8; 4]).unwrap();
    let l3 = mm.acquire(&b, 0, AccessMode::Read, 1).unwrap();
    assert_eq!(mm.stats().host.bytes_in_use, 2 * N as u64);
    mm.release(l2, Outcome::Completed);
    assert_eq!(
        mm.stats().host.bytes_in_use,
        N as u64,
        "the retired copy is freed with its last lease"
    );
    let mut got = [0u8; 4];
    dev.read(l3.block(), 0, &mut got).unwrap();
    assert_eq!(got, [1u8; 4]);
    mm.release(l3, Outcome::Completed);
}

#[test]
fn two_leases_of_one_buffer_cannot_alias_in_one_launch() {
    let (mm, dev) = in_place_manager(1 << 30);
    let b = mm.create_from(&pattern(N, 5)).unwrap();
    let l1 = mm.acquire(&b, 0, AccessMode::Read, 1).unwrap();
    let l2 = mm.acquire(&b, 0, AccessMode::ReadWrite, 1).unwrap();
    let e = dev
        .launch(
            &twice_plus(),
            &cfg(),
            &[l1.arg(), l2.arg(), Arg::Scalar(Scalar::U32(1))],
        )
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    mm.release(l1, Outcome::NotRun);
    mm.release(l2, Outcome::NotRun);
    assert_eq!(mm.to_vec(&b).unwrap(), pattern(N, 5));
}

#[test]
fn readers_in_place_keep_their_snapshot_when_the_host_writes() {
    let (mm, dev) = in_place_manager(1 << 30);
    let old = pattern(N, 6);
    let b = mm.create_from(&old).unwrap();
    let l = mm.acquire(&b, 0, AccessMode::Read, 1).unwrap();
    // A host write goes to a fresh host copy (copy on write); the lease keeps the old one.
    mm.write(&b, 100, &[0xAA; 50]).unwrap();
    let mut new = old.clone();
    new[100..150].fill(0xAA);
    assert_eq!(mm.to_vec(&b).unwrap(), new);
    assert_eq!(
        mm.stats().host.bytes_in_use,
        2 * N as u64,
        "both copies held"
    );
    let mut seen = vec![0u8; N];
    dev.read(l.block(), 0, &mut seen).unwrap();
    assert_eq!(seen, old, "the kernel's snapshot");
    mm.with_host_mut(&b, |h| h[0] = 1).unwrap();
    new[0] = 1;
    mm.release(l, Outcome::Completed);
    let s = mm.stats().host;
    assert_eq!(
        s.bytes_in_use, N as u64,
        "the retired copy is freed with the lease"
    );
    assert_eq!(mm.to_vec(&b).unwrap(), new);
    let l = mm.acquire(&b, 0, AccessMode::Read, 1).unwrap();
    dev.read(l.block(), 0, &mut seen).unwrap();
    assert_eq!(seen, new, "a new lease uses the current host copy");
    mm.release(l, Outcome::Completed);
}

#[test]
fn host_reads_wait_for_a_writer_in_place() {
    let (mm, dev) = in_place_manager(1 << 30);
    let b = mm.create_from(&pattern(N, 7)).unwrap();
    let l = mm.acquire(&b, 0, AccessMode::ReadWrite, 1).unwrap();
    dev.write(l.block(), 0, &[3u8; 10]).unwrap();
    let e = mm.to_vec(&b).unwrap_err();
    assert!(matches!(e, Error::InUse { .. }) && e.is_transient(), "{e}");
    assert!(matches!(mm.write(&b, 0, &[1]), Err(Error::InUse { .. })));
    mm.release(l, Outcome::Completed);
    let mut want = pattern(N, 7);
    want[..10].fill(3);
    assert_eq!(mm.to_vec(&b).unwrap(), want);
}

#[test]
fn a_failed_writer_in_place_loses_only_what_it_held() {
    // The host copy was its only valid copy: partly written, reported lost.
    let (mm, dev) = in_place_manager(1 << 30);
    let b = mm.create_from(&pattern(N, 8)).unwrap();
    let l = mm.acquire(&b, 0, AccessMode::ReadWrite, 1).unwrap();
    dev.write(l.block(), 0, &[1u8; 10]).unwrap();
    mm.release(l, Outcome::Failed);
    assert!(matches!(mm.to_vec(&b), Err(Error::DataLost { .. })));
    mm.write(&b, 0, &pattern(N, 9)).unwrap();
    assert_eq!(mm.to_vec(&b).unwrap(), pattern(N, 9));
    // A lease that never ran changes nothing.
    let l = mm.acquire(&b, 0, AccessMode::Write, 1).unwrap();
    mm.release(l, Outcome::NotRun);
    assert_eq!(mm.to_vec(&b).unwrap(), pattern(N, 9));

    // With a valid copy on a device with copies of its own, that copy is the data.
    let linked: Arc<dyn DynDevice> = Arc::new(
        HostDevice::with_budget("linked", 1 << 30).behind_link(LinkInfo::from_pcie(4, 16)),
    );
    let host: Arc<dyn DynDevice> = Arc::new(HostDevice::new());
    let mm = MemoryManager::new(vec![linked, host.clone()], MemoryConfig::default());
    let b = mm.create_from(&pattern(N, 10)).unwrap();
    let l = mm.acquire(&b, 0, AccessMode::Read, 1).unwrap();
    mm.release(l, Outcome::Completed);
    let l = mm.acquire(&b, 1, AccessMode::ReadWrite, 1).unwrap();
    host.write(l.block(), 0, &[1u8; 10]).unwrap();
    mm.release(l, Outcome::Failed);
    assert_eq!(
        mm.to_vec(&b).unwrap(),
        pattern(N, 10),
        "recovered from device 0"
    );
}

#[test]
fn devices_with_copies_stay_coherent_with_one_in_place() {
    let linked: Arc<dyn DynDevice> = Arc::new(
        HostDevice::with_budget("linked", 1 << 30).behind_link(LinkInfo::from_pcie(4, 16)),
    );
    let host: Arc<dyn DynDevice> = Arc::new(HostDevice::new());
    let mm = MemoryManager::new(vec![linked.clone(), host.clone()], MemoryConfig::default());
    assert!(!mm.uses_in_place(0) && mm.uses_in_place(1));
    let b = mm.create(N as u64).unwrap();
    // Written on the linked device: its copy is the only valid one.
    let l = mm.acquire(&b, 0, AccessMode::Write, 1).unwrap();
    linked
        .write(l.block(), l.offset(), &pattern(N, 11))
        .unwrap();
    mm.release(l, Outcome::Completed);
    assert_eq!(mm.missing_bytes(&b, 1), N as u64, "the host copy is stale");
    // In place: the host copy is made valid first (a download over device 0's link).
    let l = mm.acquire(&b, 1, AccessMode::ReadWrite, 1).unwrap();
    assert_eq!(l.residency.bytes_moved, N as u64);
    assert_eq!(l.residency.source, Some(Location::Device(0)));
    assert!(!l.residency.hit);
    host.launch(
        &Kernel::new("inc").with_host(|l| {
            l.buffers[0].iter_mut().for_each(|x| *x = x.wrapping_add(1));
            Ok(())
        }),
        &cfg(),
        &[l.arg()],
    )
    .unwrap();
    mm.release(l, Outcome::Completed);
    let s = mm.stats();
    assert_eq!(
        s.host.link_bytes_in, N as u64,
        "the download crossed device 0's link"
    );
    assert_eq!((s.devices[1].bytes_in, s.devices[1].bytes_in_use), (0, 0));
    // Device 0's copy is stale now: reading there uploads the host copy.
    let want: Vec<u8> = pattern(N, 11).iter().map(|x| x.wrapping_add(1)).collect();
    let l = mm.acquire(&b, 0, AccessMode::Read, 1).unwrap();
    assert_eq!(l.residency.bytes_moved, N as u64);
    let mut got = vec![0u8; N];
    linked.read(l.block(), l.offset(), &mut got).unwrap();
    mm.release(l, Outcome::Completed);
    assert_eq!(got, want);
    assert_eq!(mm.to_vec(&b).unwrap(), want);
}

#[test]
fn a_writer_in_place_elsewhere_leaves_readers_their_snapshot() {
    let d0: Arc<dyn DynDevice> = Arc::new(HostDevice::with_budget("h0", 1 << 30));
    let d1: Arc<dyn DynDevice> = Arc::new(HostDevice::with_budget("h1", 1 << 30));
    let mm = MemoryManager::new(vec![d0.clone(), d1.clone()], MemoryConfig::default());
    let b = mm.create_from(&pattern(N, 12)).unwrap();
    let r = mm.acquire(&b, 0, AccessMode::Read, 1).unwrap();
    let w = mm.acquire(&b, 1, AccessMode::ReadWrite, 1).unwrap();
    d1.write(w.block(), 0, &[7u8; 64]).unwrap();
    let mut seen = vec![0u8; N];
    d0.read(r.block(), 0, &mut seen).unwrap();
    assert_eq!(seen, pattern(N, 12), "the reader's snapshot");
    mm.release(w, Outcome::Completed);
    mm.release(r, Outcome::Completed);
    let mut want = pattern(N, 12);
    want[..64].fill(7);
    assert_eq!(mm.to_vec(&b).unwrap(), want);
    assert_eq!(mm.stats().host.bytes_in_use, N as u64);
}

#[test]
fn what_a_kernel_wrote_in_place_outlives_a_device_loss() {
    let plan = Arc::new(FaultPlan::new(1, 0.0));
    let dev: Arc<dyn DynDevice> = Arc::new(HostDevice::new().with_faults(plan.clone()));
    let mm = MemoryManager::new(vec![dev.clone()], MemoryConfig::default());
    let b = mm.create_from(&pattern(N, 13)).unwrap();
    let l = mm.acquire(&b, 0, AccessMode::Write, 1).unwrap();
    dev.write(l.block(), 0, &pattern(N, 14)).unwrap();
    plan.lose_device();
    assert!(
        mm.device_lost(0, "test").is_empty(),
        "nothing lived only on it"
    );
    mm.release(l, Outcome::Completed);
    assert_eq!(mm.to_vec(&b).unwrap(), pattern(N, 14));
    assert!(matches!(
        mm.acquire(&b, 0, AccessMode::Read, 1),
        Err(Error::DeviceLost { .. })
    ));
}

#[test]
fn a_buffer_dropped_while_leased_in_place_lives_until_the_lease_ends() {
    let (mm, dev) = in_place_manager(1 << 30);
    let b = mm.create_from(&pattern(N, 15)).unwrap();
    let l = mm.acquire(&b, 0, AccessMode::ReadWrite, 1).unwrap();
    drop(b);
    dev.write(l.block(), 0, &[1u8; 16]).unwrap();
    let mut got = [0u8; 16];
    dev.read(l.block(), 0, &mut got).unwrap();
    assert_eq!(got, [1u8; 16]);
    assert_eq!(mm.stats().buffers, 1);
    mm.release(l, Outcome::Completed);
    let s = mm.stats();
    assert_eq!((s.buffers, s.host.bytes_in_use), (0, 0));
}

/// Host copies pinned for a device behind a link are lent to the in-place device as they
/// are; a copy on write takes a pinned block of its own; every block goes back to the pool
/// (still pinned once, for the linked device) when its copy is freed.
#[test]
fn pinned_host_copies_are_lent_and_accounted() {
    let log = Arc::new(PinLog::default());
    let linked: Arc<dyn DynDevice> = Arc::new(
        HostDevice::with_budget("linked", 1 << 30)
            .behind_link(LinkInfo::from_pcie(4, 16))
            .with_pin_log(log.clone()),
    );
    let host: Arc<dyn DynDevice> = Arc::new(HostDevice::new());
    let config = MemoryConfig {
        pin: PinConfig {
            min_bytes: 1,
            budget: Some(64 << 20),
            ..PinConfig::default()
        },
        ..MemoryConfig::default()
    };
    let mm = MemoryManager::new(vec![linked.clone(), host.clone()], config);
    let size = 2usize << 20;
    let b = mm.create_from(&pattern(size, 16)).unwrap();
    assert_eq!(mm.pinned_bytes(), size as u64);
    let l = mm.acquire(&b, 1, AccessMode::Read, 1).unwrap();
    assert_eq!(mm.pinned_bytes(), size as u64, "lent as it is");
    mm.write(&b, 0, &[1u8; 8]).unwrap();
    assert_eq!(mm.pinned_bytes(), 2 * size as u64, "a fresh pinned copy");
    assert_eq!(log.live(), 2);
    mm.release(l, Outcome::Completed);
    let s = mm.stats().host;
    assert_eq!((s.bytes_in_use, s.pooled_bytes), (size as u64, size as u64));
    assert_eq!(
        mm.pinned_bytes(),
        2 * size as u64,
        "the retired block is pooled"
    );
    drop(b);
    assert_eq!(mm.stats().host.pooled_bytes, 2 * size as u64);
    assert_eq!(mm.release_pooled_host(), 2 * size as u64);
    assert_eq!((mm.pinned_bytes(), log.live()), (0, 0));
}

/// Kernels reading a buffer in place on several threads while others write it from the
/// host and read it back: every kernel sees one whole snapshot (the buffer is uniform at
/// every host write), every host read a whole value.
#[test]
fn concurrent_readers_in_place_and_host_writers_see_whole_snapshots() {
    let (mm, dev) = in_place_manager(1 << 30);
    let b = mm.create_from(&[0u8; N]).unwrap();
    std::thread::scope(|s| {
        for t in 0..3u8 {
            let (mm, dev, b) = (&mm, &dev, &b);
            s.spawn(move || {
                for i in 0..40u8 {
                    if t == 0 {
                        mm.write(b, 0, &[i; N]).unwrap();
                        continue;
                    }
                    if i % 4 == 0 {
                        let v = mm.to_vec(b).unwrap();
                        assert!(v.iter().all(|&x| x == v[0]), "a whole value");
                        continue;
                    }
                    let l = mm.acquire(b, 0, AccessMode::Read, 1).unwrap();
                    let args = [l.arg()];
                    dev.launch(&uniform(), &cfg(), &args).unwrap();
                    mm.release(l, Outcome::Completed);
                }
            });
        }
    });
    assert_eq!(mm.to_vec(&b).unwrap(), vec![39u8; N]);
    assert_eq!(
        mm.stats().host.bytes_in_use,
        N as u64,
        "every retired copy freed"
    );
}
