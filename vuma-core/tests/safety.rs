//! Probe tests of the memory manager's safety promises: nothing a caller does through the
//! safe API loses data silently or corrupts another manager's state.

use std::sync::Arc;

use vuma_core::{AccessMode, DynDevice, Error, HostDevice, MemoryConfig, MemoryManager, Outcome};

fn manager() -> (MemoryManager, Arc<dyn DynDevice>) {
    let d: Arc<dyn DynDevice> = Arc::new(HostDevice::with_budget("host0", 1 << 20));
    (
        MemoryManager::new(vec![d.clone()], MemoryConfig::default()),
        d,
    )
}

/// A host write while a kernel holds the buffer for writing would be lost when the lease
/// ends (the device copy becomes the only valid one): it is refused with the transient
/// `InUse`, and goes through once the lease is released.
#[test]
fn host_access_waits_for_a_write_lease() {
    let (mm, d) = manager();
    let b = mm.create_from(&[1u8; 4096]).unwrap();
    let lease = mm.acquire(&b, 0, AccessMode::ReadWrite, 1).unwrap();
    let e = mm.write(&b, 0, &[9u8; 16]).unwrap_err();
    assert!(matches!(e, Error::InUse { .. }) && e.is_transient(), "{e}");
    let e = mm.with_host_mut(&b, |h| h[0] = 7).unwrap_err();
    assert!(matches!(e, Error::InUse { .. }), "{e}");
    // The kernel writes its copy, then completes.
    d.write(lease.block(), lease.offset(), &[2u8; 4096])
        .unwrap();
    mm.release(lease, Outcome::Completed);
    mm.write(&b, 0, &[9u8; 16]).unwrap();
    let v = mm.to_vec(&b).unwrap();
    assert_eq!(&v[..16], &[9u8; 16]);
    assert!(
        v[16..].iter().all(|&x| x == 2),
        "the kernel's bytes and the host write, in order"
    );
}

/// A read-only lease does not block host access.
#[test]
fn read_leases_do_not_block_host_writes() {
    let (mm, _d) = manager();
    let b = mm.create_from(&[1u8; 4096]).unwrap();
    let lease = mm.acquire(&b, 0, AccessMode::Read, 1).unwrap();
    mm.write(&b, 0, &[3u8; 8]).unwrap();
    mm.release(lease, Outcome::Completed);
    assert_eq!(&mm.to_vec(&b).unwrap()[..8], &[3u8; 8]);
}

/// A kernel that fails while writing the only valid copy leaves bytes that match no serial
/// order: the buffer says so (`DataLost`) until it is overwritten entirely.
#[test]
fn a_failed_kernel_on_the_only_copy_is_reported_lost() {
    let (mm, d) = manager();
    let b = mm.create_from(&[1u8; 4096]).unwrap();
    let l = mm.acquire(&b, 0, AccessMode::ReadWrite, 1).unwrap();
    d.write(l.block(), l.offset(), &[5u8; 100]).unwrap();
    mm.release(l, Outcome::Completed); // the device copy is now the only valid one
    let l = mm.acquire(&b, 0, AccessMode::ReadWrite, 1).unwrap();
    d.write(l.block(), l.offset(), &[6u8; 10]).unwrap(); // partial, then the kernel fails
    mm.release(l, Outcome::Failed);
    assert!(matches!(mm.to_vec(&b), Err(Error::DataLost { .. })));
    assert!(matches!(
        mm.acquire(&b, 0, AccessMode::Read, 1),
        Err(Error::DataLost { .. })
    ));
    assert!(matches!(
        mm.write(&b, 0, &[0u8; 8]),
        Err(Error::DataLost { .. })
    ));
    // A kernel that overwrites it entirely makes it usable again.
    let l = mm.acquire(&b, 0, AccessMode::Write, 1).unwrap();
    d.write(l.block(), l.offset(), &[8u8; 4096]).unwrap();
    mm.release(l, Outcome::Completed);
    assert!(mm.to_vec(&b).unwrap().iter().all(|&x| x == 8));
    // And so does a whole host write after another loss.
    let l = mm.acquire(&b, 0, AccessMode::Write, 1).unwrap();
    mm.release(l, Outcome::Completed);
    let l = mm.acquire(&b, 0, AccessMode::ReadWrite, 1).unwrap();
    mm.release(l, Outcome::Failed);
    assert!(matches!(mm.to_vec(&b), Err(Error::DataLost { .. })));
    mm.write(&b, 0, &[4u8; 4096]).unwrap();
    assert!(mm.to_vec(&b).unwrap().iter().all(|&x| x == 4));
}

/// A failed kernel with another valid copy elsewhere loses nothing: its copy is dropped.
#[test]
fn a_failed_kernel_with_a_host_copy_loses_nothing() {
    let (mm, _d) = manager();
    let b = mm.create_from(&[1u8; 4096]).unwrap();
    let l = mm.acquire(&b, 0, AccessMode::ReadWrite, 1).unwrap();
    mm.release(l, Outcome::Failed);
    assert!(mm.to_vec(&b).unwrap().iter().all(|&x| x == 1));
}

/// Buffer ids restart at 1 in every manager: a lease released through the wrong manager
/// must not touch that manager's buffer with the same id. It is released into its own.
#[test]
fn a_lease_released_through_another_manager_goes_to_its_own() {
    let (a, _da) = manager();
    let (b, _db) = manager();
    let ba = a.create_from(&[1u8; 4096]).unwrap();
    let bb = b.create_from(&[2u8; 4096]).unwrap();
    assert_eq!(ba.id(), bb.id());
    let l = a.acquire(&ba, 0, AccessMode::Write, 1).unwrap();
    b.release(l, Outcome::Completed);
    // `b`'s buffer is untouched (its host copy still the valid one, writable).
    assert!(b.to_vec(&bb).unwrap().iter().all(|&x| x == 2));
    b.write(&bb, 0, &[3u8; 4]).unwrap();
    // `a`'s lease ended: host access is allowed again.
    a.write(&ba, 0, &[7u8; 4096]).unwrap();
    assert!(a.to_vec(&ba).unwrap().iter().all(|&x| x == 7));
}

/// Two kernels on different devices writing one buffer at once would lose one's work: the
/// second acquire is refused (transient) until the first is released.
#[test]
fn concurrent_writers_on_two_devices_are_refused() {
    let d0: Arc<dyn DynDevice> = Arc::new(HostDevice::with_budget("h0", 1 << 20));
    let d1: Arc<dyn DynDevice> = Arc::new(HostDevice::with_budget("h1", 1 << 20));
    let mm = MemoryManager::new(vec![d0, d1], MemoryConfig::default());
    let b = mm.create_from(&[1u8; 4096]).unwrap();
    let l = mm.acquire(&b, 0, AccessMode::ReadWrite, 1).unwrap();
    let e = mm.acquire(&b, 1, AccessMode::ReadWrite, 1).unwrap_err();
    assert!(matches!(e, Error::InUse { .. }), "{e}");
    mm.release(l, Outcome::Completed);
    let l = mm.acquire(&b, 1, AccessMode::ReadWrite, 1).unwrap();
    mm.release(l, Outcome::Completed);
}
