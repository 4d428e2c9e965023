//! The pool of pinned host blocks: a dropped pinned host copy's block is reused by the next
//! host copy of its size class (nothing pinned again), reused blocks hold exactly what
//! they should (zeros for `create`, the user's bytes for `create_from`), the pinned budget
//! and the pool's cap hold, lost devices leave no registration behind, and dropping the
//! manager unpins everything. The devices are host devices behind a modelled link that
//! record what they are asked to pin (`HostDevice::with_pin_log`): no GPU needed.

use std::sync::Arc;

use vuma_core::{
    AccessMode, DynDevice, HostDevice, LinkInfo, MemoryConfig, MemoryManager, Outcome, PinConfig,
    PinLog,
};

const MIB: u64 = 1 << 20;

fn linked(log: &Arc<PinLog>) -> Arc<dyn DynDevice> {
    Arc::new(
        HostDevice::with_budget("linked", 512 * MIB)
            .behind_link(LinkInfo::from_pcie(5, 16))
            .with_pin_log(log.clone()),
    )
}

fn manager(devices: Vec<Arc<dyn DynDevice>>, pin: PinConfig) -> MemoryManager {
    MemoryManager::new(
        devices,
        MemoryConfig {
            pin,
            ..MemoryConfig::default()
        },
    )
}

fn pin(budget: u64, pool: u64) -> PinConfig {
    PinConfig {
        budget: Some(budget),
        pool_bytes: Some(pool),
        ..PinConfig::default()
    }
}

fn pattern(n: u64, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
        .collect()
}

#[test]
fn a_dropped_pinned_copy_is_reused_without_pinning_again() {
    let log = Arc::new(PinLog::default());
    let mm = manager(vec![linked(&log)], pin(256 * MIB, 64 * MIB));
    let a = pattern(4 * MIB, 1);
    let b = mm.create_from(&a).unwrap();
    assert_eq!((log.pins(), log.unpins()), (1, 0));
    assert_eq!(mm.pinned_bytes(), 4 * MIB);
    assert_eq!(mm.to_vec(&b).unwrap(), a);
    let s = mm.stats().host;
    assert_eq!((s.pool_hits, s.pool_misses, s.pooled_bytes), (0, 1, 0));
    drop(b);
    assert_eq!(log.unpins(), 0, "the block goes to the pool, still pinned");
    assert_eq!(mm.stats().host.pooled_bytes, 4 * MIB);
    assert_eq!(mm.pinned_bytes(), 4 * MIB, "pooled bytes stay counted");

    let c = pattern(4 * MIB, 2);
    let b = mm.create_from(&c).unwrap();
    assert_eq!(
        (log.pins(), log.unpins()),
        (1, 0),
        "nothing registered again"
    );
    assert_eq!(mm.to_vec(&b).unwrap(), c, "exactly the user's bytes");
    let s = mm.stats().host;
    assert_eq!((s.pool_hits, s.pool_misses, s.pooled_bytes), (1, 1, 0));
    // The upload says where it came from.
    let lease = mm.acquire(&b, 0, AccessMode::Read, 1).unwrap();
    let decision = &lease.residency.transfers.last().unwrap().decision;
    assert!(decision.contains("from a pinned host copy"), "{decision}");
    mm.release(lease, Outcome::NotRun);
    // A whole-buffer write over the pinned copy lands exactly.
    let d = pattern(4 * MIB, 3);
    mm.write(&b, 0, &d).unwrap();
    assert_eq!(mm.to_vec(&b).unwrap(), d);
    drop(b);
    drop(mm);
    assert_eq!(log.live(), 0, "the manager's drop unpins the pool");
    assert_eq!(log.unpins(), 1);
}

#[test]
fn reused_blocks_read_as_zeros_for_created_buffers() {
    let log = Arc::new(PinLog::default());
    let mm = manager(vec![linked(&log)], pin(256 * MIB, 64 * MIB));
    let size = 2 * MIB + 4096;
    drop(mm.create_from(&pattern(size, 9)).unwrap());
    let b = mm.create(size).unwrap();
    // A partial write materialises the host copy: zeros around the written bytes.
    mm.write(&b, 1000, &[7; 10]).unwrap();
    assert_eq!(log.pins(), 1, "the pooled block was reused");
    assert_eq!(mm.stats().host.pool_hits, 1);
    let v = mm.to_vec(&b).unwrap();
    assert!(v[..1000].iter().all(|&x| x == 0));
    assert_eq!(&v[1000..1010], &[7; 10]);
    assert!(v[1010..].iter().all(|&x| x == 0));
    drop(b);
    // The same through mapping for writing.
    let b = mm.create(size).unwrap();
    let zeros = mm.with_host_mut(&b, |h| h.iter().all(|&x| x == 0)).unwrap();
    assert!(zeros);
    assert_eq!(log.pins(), 1);
}

#[test]
fn budget_and_pool_cap_hold() {
    let log = Arc::new(PinLog::default());
    let mm = manager(vec![linked(&log)], pin(8 * MIB, 4 * MIB));
    let bufs: Vec<_> = (0..3)
        .map(|i| mm.create_from(&pattern(4 * MIB, i)).unwrap())
        .collect();
    assert_eq!(
        log.pins(),
        2,
        "the third copy is beyond the budget: pageable"
    );
    assert_eq!(mm.pinned_bytes(), 8 * MIB);
    for (i, b) in bufs.iter().enumerate() {
        assert_eq!(mm.to_vec(b).unwrap(), pattern(4 * MIB, i as u8));
    }
    drop(bufs);
    assert_eq!(
        mm.stats().host.pooled_bytes,
        4 * MIB,
        "the pool keeps its cap"
    );
    assert_eq!((log.live(), log.unpins()), (1, 1));
    assert_eq!(mm.pinned_bytes(), 4 * MIB);
    // Another size class: the pooled block is given up to make room in the budget.
    let b = mm.create_from(&pattern(8 * MIB, 5)).unwrap();
    assert_eq!((log.pins(), log.live(), log.live_bytes()), (3, 1, 8 * MIB));
    assert_eq!(mm.pinned_bytes(), 8 * MIB);
    assert_eq!(mm.stats().host.pooled_bytes, 0);
    drop(b);
    assert_eq!(mm.pinned_bytes(), 0, "over the pool's cap: freed");
    assert_eq!(log.live(), 0);

    // No pool at all.
    let log = Arc::new(PinLog::default());
    let mm = manager(vec![linked(&log)], pin(64 * MIB, 0));
    drop(mm.create_from(&pattern(2 * MIB, 1)).unwrap());
    drop(mm.create_from(&pattern(2 * MIB, 2)).unwrap());
    assert_eq!((log.pins(), log.unpins(), log.live()), (2, 2, 0));
    assert_eq!(mm.pinned_bytes(), 0);
    // Small copies stay pageable and never touch the pool.
    let small = mm.create_from(&pattern(64 << 10, 1)).unwrap();
    assert_eq!(log.pins(), 2);
    assert_eq!(mm.to_vec(&small).unwrap(), pattern(64 << 10, 1));
}

#[test]
fn released_and_lost_devices_leave_no_registrations() {
    let (la, lb) = (Arc::new(PinLog::default()), Arc::new(PinLog::default()));
    let mm = manager(vec![linked(&la), linked(&lb)], pin(256 * MIB, 64 * MIB));
    drop(mm.create_from(&pattern(2 * MIB, 1)).unwrap());
    drop(mm.create_from(&pattern(4 * MIB, 1)).unwrap());
    assert_eq!((la.live(), lb.live()), (2, 2), "pinned for both, pooled");
    assert_eq!(mm.release_pooled_host(), 6 * MIB);
    assert_eq!((la.live(), lb.live(), mm.pinned_bytes()), (0, 0, 0));

    let kept = mm.create_from(&pattern(2 * MIB, 2)).unwrap();
    drop(mm.create_from(&pattern(4 * MIB, 2)).unwrap());
    assert!(mm.device_lost(1, "test").is_empty());
    assert_eq!(
        lb.live(),
        1,
        "the pooled block is gone; the live copy keeps its pins"
    );
    assert_eq!(mm.stats().host.pooled_bytes, 0);
    // Later copies are pinned for the device left only, and a block pinned for the lost
    // one is not pooled.
    let b = mm.create_from(&pattern(4 * MIB, 3)).unwrap();
    assert_eq!((la.pins(), lb.pins()), (5, 4));
    drop(kept);
    assert_eq!(lb.live(), 0);
    assert_eq!(mm.stats().host.pooled_bytes, 0);
    assert_eq!(mm.to_vec(&b).unwrap(), pattern(4 * MIB, 3));
    drop(b);
    assert_eq!(mm.stats().host.pooled_bytes, 4 * MIB);
    drop(mm);
    assert_eq!((la.live(), lb.live()), (0, 0));
}

#[test]
fn devices_that_share_host_memory_pin_nothing_and_absurd_sizes_are_refused() {
    let mm = manager(
        vec![Arc::new(HostDevice::new())],
        PinConfig {
            budget: Some(u64::MAX),
            pool_bytes: Some(u64::MAX),
            ..PinConfig::default()
        },
    );
    let b = mm.create_from(&pattern(3 * MIB, 4)).unwrap();
    assert_eq!(mm.to_vec(&b).unwrap(), pattern(3 * MIB, 4));
    assert_eq!(mm.pinned_bytes(), 0);
    let s = mm.stats().host;
    assert_eq!((s.pool_hits, s.pool_misses, s.pooled_bytes), (0, 0, 0));
    assert!(mm.create(u64::MAX).is_err());
    assert!(mm.create(u64::MAX / 2).is_err());
    assert!(mm.create_from(&[]).is_err());
}

#[test]
fn blocks_are_reused_when_one_of_the_devices_cannot_pin() {
    // A GPU that pins next to one that cannot (as a CUDA and a Vulkan device without host
    // import): every block is pinned by the first only, and must still be reused.
    let log = Arc::new(PinLog::default());
    let no_pin: Arc<dyn DynDevice> = Arc::new(
        HostDevice::with_budget("linked, no pinning", 512 * MIB)
            .behind_link(LinkInfo::from_pcie(4, 16)),
    );
    let mm = manager(vec![linked(&log), no_pin], pin(256 * MIB, 64 * MIB));
    let a = pattern(4 * MIB, 3);
    for i in 0..5 {
        let b = mm.create_from(&a).unwrap();
        assert_eq!(mm.to_vec(&b).unwrap(), a, "iteration {i}");
        drop(b);
    }
    let s = mm.stats().host;
    assert_eq!((s.pool_hits, s.pool_misses), (4, 1));
    assert_eq!(log.pins(), 1, "pinned once, then reused");
}
