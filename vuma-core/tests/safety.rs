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
/// (On a device that uses the host copy in place the kernel's copy *is* the host copy: see
/// `in_place.rs`.)
#[test]
fn a_failed_kernel_with_a_host_copy_loses_nothing() {
    let d: Arc<dyn DynDevice> =
        Arc::new(HostDevice::with_budget("host0", 1 << 20).without_in_place());
    let mm = MemoryManager::new(vec![d], MemoryConfig::default());
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

/// Concurrent callers: uploads from the host copy run outside the manager's lock, so
/// threads prefetch, read on devices, write on devices and write from the host at once.
/// Every read matches a serial order of each owner's operations, and no byte is lost.
/// Device 0 has copies of its own (a small budget: evictions), device 1 uses host copies
/// in place.
#[test]
fn concurrent_callers_lose_nothing() {
    let devs: Vec<Arc<dyn DynDevice>> = vec![
        Arc::new(HostDevice::with_budget("h0", 96 << 10).without_in_place()),
        Arc::new(HostDevice::with_budget("h1", 96 << 10)),
    ];
    let mm = MemoryManager::new(devs.clone(), MemoryConfig::default());
    let owned: Vec<Vec<(vuma_core::UnifiedBuffer, std::sync::Mutex<Vec<u8>>)>> = (0..4u8)
        .map(|t| {
            (0..4u8)
                .map(|k| {
                    let data = vec![t * 16 + k; 16 << 10];
                    (mm.create_from(&data).unwrap(), std::sync::Mutex::new(data))
                })
                .collect()
        })
        .collect();
    std::thread::scope(|s| {
        for (t, mine) in owned.iter().enumerate() {
            let (mm, devs, owned) = (&mm, &devs, &owned);
            s.spawn(move || {
                let mut rng = 0x9E37_79B9u64 + t as u64;
                let mut next = |n: u64| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng % n
                };
                for step in 0..400u32 {
                    let (b, model) = &mine[next(4) as usize];
                    let d = next(2) as usize;
                    let retry =
                        |e: &Error| matches!(e, Error::BudgetExceeded { .. } | Error::InUse { .. });
                    match next(5) {
                        0 => {
                            let v = (step % 251) as u8;
                            let off = next(8 << 10) as usize;
                            let mut m = model.lock().unwrap();
                            mm.write(b, off as u64, &[v; 64]).unwrap();
                            m[off..off + 64].fill(v);
                        }
                        1 => {
                            let m = model.lock().unwrap();
                            match mm.acquire(b, d, AccessMode::Read, 1) {
                                Ok(l) => {
                                    let mut got = vec![0u8; m.len()];
                                    devs[d].read(l.block(), l.offset(), &mut got).unwrap();
                                    mm.release(l, Outcome::Completed);
                                    assert!(got == *m, "thread {t}: device {d} copy differs");
                                }
                                Err(e) if retry(&e) => {}
                                Err(e) => panic!("{e}"),
                            }
                        }
                        2 => {
                            let mut m = model.lock().unwrap();
                            match mm.acquire(b, d, AccessMode::ReadWrite, 1) {
                                Ok(l) => {
                                    let v = (step % 13) as u8 + 200;
                                    devs[d].write(l.block(), l.offset(), &[v; 100]).unwrap();
                                    mm.release(l, Outcome::Completed);
                                    m[..100].fill(v);
                                }
                                Err(e) if retry(&e) => {}
                                Err(e) => panic!("{e}"),
                            }
                        }
                        3 => {
                            // Prefetch another thread's buffer (a reader racing its owner).
                            let other = &owned[next(4) as usize][next(4) as usize].0;
                            match mm.prefetch(other, d) {
                                Ok(_) => {}
                                Err(e) if retry(&e) => {}
                                Err(e) => panic!("{e}"),
                            }
                        }
                        _ => {
                            let m = model.lock().unwrap();
                            assert!(mm.to_vec(b).unwrap() == *m, "thread {t}: host read differs");
                        }
                    }
                }
            });
        }
    });
    for mine in &owned {
        for (b, model) in mine {
            assert!(mm.to_vec(b).unwrap() == *model.lock().unwrap());
        }
    }
}
