//! Model-based tests of the memory manager: random sequences of operations across several
//! host devices (two with copies of their own and small budgets, one using host copies in
//! place), checked against a plain reference model (one `Vec<u8>` per buffer). Every read must return exactly the last write; statistics stay consistent;
//! with injected faults, no byte is lost. Each property also runs with a packing
//! [`TransferPath`] (write-backs kept packed on the host, clean evictions packed next to
//! the plain host copy, zero runs filled on the device).

use std::sync::Arc;

use proptest::prelude::*;
use vuma_core::fault::FaultPlan;
use vuma_core::{
    AccessMode, DeviceId, DynBuffer, DynDevice, Error, HostDevice, MemoryConfig, MemoryManager,
    Outcome, PackedHost, Placement, TransferKind, TransferPath, TransferReport, UnifiedBuffer,
};

/// A transfer path that packs write-backs as zero-run-length-encoded bytes and uploads
/// runs of zeros as device fills: it exercises every packed-copy transition of the manager.
#[derive(Debug)]
struct PackingPath;

/// `(zero run, literal bytes)` pairs.
#[derive(Debug)]
struct Zrle {
    device: DeviceId,
    len: u64,
    runs: Vec<(usize, Vec<u8>)>,
}

fn zrle(data: &[u8]) -> Vec<(usize, Vec<u8>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        let z = data[i..].iter().take_while(|&&b| b == 0).count();
        let l = data[i + z..].iter().take_while(|&&b| b != 0).count();
        out.push((z, data[i + z..i + z + l].to_vec()));
        i += z + l;
    }
    out
}

impl PackedHost for Zrle {
    fn logical_bytes(&self) -> u64 {
        self.len
    }
    fn stored_bytes(&self) -> u64 {
        self.runs
            .iter()
            .map(|(_, l)| 8 + l.len() as u64)
            .sum::<u64>()
            .max(1)
    }
    fn can_upload_to(&self, dev: &dyn DynDevice) -> bool {
        dev.info().id == self.device
    }
    fn unpack(&self, _dev: &dyn DynDevice, out: &mut [u8]) -> vuma_core::Result<()> {
        let mut i = 0;
        for (z, l) in &self.runs {
            out[i..i + z].fill(0);
            out[i + z..i + z + l.len()].copy_from_slice(l);
            i += z + l.len();
        }
        assert_eq!(i as u64, self.len);
        Ok(())
    }
    fn upload(
        &self,
        dev: &dyn DynDevice,
        dst: &dyn DynBuffer,
        off: u64,
    ) -> vuma_core::Result<TransferReport> {
        let mut at = off;
        let mut link = 0;
        for (z, l) in &self.runs {
            if *z > 0 {
                dev.fill(dst, at, *z as u64, 0)?;
            }
            at += *z as u64;
            if !l.is_empty() {
                dev.write(dst, at, l)?;
                link += l.len() as u64;
            }
            at += l.len() as u64;
        }
        let mut r = TransferReport::direct(TransferKind::Upload, self.len, 0.0);
        r.path = "zrle";
        r.link_bytes = link;
        Ok(r)
    }
}

impl TransferPath for PackingPath {
    fn name(&self) -> &'static str {
        "zrle"
    }
    fn upload(
        &self,
        dev: &dyn DynDevice,
        src: &[u8],
        dst: &dyn DynBuffer,
        off: u64,
    ) -> vuma_core::Result<TransferReport> {
        Zrle {
            device: dev.info().id,
            len: src.len() as u64,
            runs: zrle(src),
        }
        .upload(dev, dst, off)
    }
    fn evict(
        &self,
        dev: &dyn DynDevice,
        src: &dyn DynBuffer,
        off: u64,
        len: u64,
    ) -> vuma_core::Result<Option<(Box<dyn PackedHost>, TransferReport)>> {
        if len.is_multiple_of(3) {
            return Ok(None); // declines some buffers: plain write-back
        }
        let mut data = vec![0u8; len as usize];
        dev.read(src, off, &mut data)?;
        let p = Zrle {
            device: dev.info().id,
            len,
            runs: zrle(&data),
        };
        let mut r = TransferReport::direct(TransferKind::Download, len, 0.0);
        r.link_bytes = p.stored_bytes();
        Ok(Some((Box::new(p), r)))
    }
    /// Clean copies are packed too (declining the same buffers), so the model exercises a
    /// packed copy next to a valid plain one: later uploads use the packed one, host
    /// writes drop it.
    fn pack_clean(
        &self,
        dev: &dyn DynDevice,
        src: &dyn DynBuffer,
        off: u64,
        len: u64,
    ) -> vuma_core::Result<Option<(Box<dyn PackedHost>, TransferReport)>> {
        self.evict(dev, src, off, len)
    }
}

#[derive(Debug, Clone)]
enum Op {
    Create(u16),
    CreateOn {
        size: u16,
        dev: u8,
        seed: u8,
    },
    HostWrite {
        buf: u8,
        off: u16,
        len: u16,
        seed: u8,
    },
    DeviceRead {
        buf: u8,
        dev: u8,
    },
    DeviceWrite {
        buf: u8,
        dev: u8,
        seed: u8,
    },
    DevicePartialWrite {
        buf: u8,
        dev: u8,
        off: u16,
        seed: u8,
    },
    HostRead {
        buf: u8,
    },
    Evict {
        dev: u8,
    },
    Drop {
        buf: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1u16..20_000).prop_map(Op::Create),
        (1u16..20_000, 0u8..3, any::<u8>()).prop_map(|(size, dev, seed)| Op::CreateOn {
            size,
            dev,
            seed
        }),
        (any::<u8>(), any::<u16>(), 1u16..5000, any::<u8>()).prop_map(|(buf, off, len, seed)| {
            Op::HostWrite {
                buf,
                off,
                len,
                seed,
            }
        }),
        (any::<u8>(), 0u8..3).prop_map(|(buf, dev)| Op::DeviceRead { buf, dev }),
        (any::<u8>(), 0u8..3, any::<u8>()).prop_map(|(buf, dev, seed)| Op::DeviceWrite {
            buf,
            dev,
            seed
        }),
        (any::<u8>(), 0u8..3, any::<u16>(), any::<u8>()).prop_map(|(buf, dev, off, seed)| {
            Op::DevicePartialWrite {
                buf,
                dev,
                off,
                seed,
            }
        }),
        any::<u8>().prop_map(|buf| Op::HostRead { buf }),
        (0u8..3).prop_map(|dev| Op::Evict { dev }),
        any::<u8>().prop_map(|buf| Op::Drop { buf }),
    ]
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(seed | 1).wrapping_add(seed))
        .collect()
}

struct World {
    mm: MemoryManager,
    devs: Vec<Arc<dyn DynDevice>>,
    bufs: Vec<(UnifiedBuffer, Vec<u8>)>,
    /// Per buffer: a write lease on it ended `Failed` since its last whole overwrite, so
    /// the manager may report its contents lost ([`Error::DataLost`]) instead of serving
    /// them (it cannot know the failed kernel wrote nothing).
    may_be_lost: Vec<bool>,
}

fn world(faults: Option<Arc<FaultPlan>>, packing: bool) -> World {
    // Budgets: 32 KiB, 64 KiB for devices 0 and 1, with copies of their own, so eviction
    // happens often; device 2 uses host copies in place (its budget does not apply).
    let budgets = [32u64 << 10, 64 << 10, 1 << 20];
    let devs: Vec<Arc<dyn DynDevice>> = budgets
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let d = HostDevice::with_budget(format!("host{i}"), *b);
            let d = if i == 2 { d } else { d.without_in_place() };
            let d = match &faults {
                Some(f) => d.with_faults(f.clone()),
                None => d,
            };
            Arc::new(d) as Arc<dyn DynDevice>
        })
        .collect();
    let config = MemoryConfig {
        transfer: packing.then(|| Arc::new(PackingPath) as Arc<dyn TransferPath>),
        ..MemoryConfig::default()
    };
    let mm = MemoryManager::new(devs.clone(), config);
    World {
        mm,
        devs,
        bufs: Vec::new(),
        may_be_lost: Vec::new(),
    }
}

/// Applies `op`; in fault mode, an injected failure must leave the model unchanged.
fn apply(w: &mut World, op: &Op, faulty: bool) -> Result<(), TestCaseError> {
    let ok_or_lost = |r: Result<(), Error>, lost_ok: bool| -> Result<bool, TestCaseError> {
        match r {
            Ok(()) => Ok(true),
            Err(e) if faulty && matches!(e, Error::Injected(_)) => Ok(false),
            Err(Error::DataLost { .. }) if lost_ok => Ok(false),
            Err(Error::BudgetExceeded { .. } | Error::TooLarge { .. }) => Ok(false),
            Err(e) => Err(TestCaseError::fail(format!("{op:?}: {e}"))),
        }
    };
    let ok_or_injected = |r: Result<(), Error>| ok_or_lost(r, false);
    let n = w.bufs.len();
    match *op {
        Op::Create(size) => {
            let b =
                w.mm.create(u64::from(size))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
            w.bufs.push((b, vec![0u8; size as usize]));
            w.may_be_lost.push(false);
        }
        Op::CreateOn { size, dev, seed } => {
            let data = bytes(size as usize, seed);
            let (b, upload) =
                w.mm.create_from_on(&data, dev as usize)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
            // Whether or not the device copy could be had, the buffer holds the bytes.
            ok_or_injected(upload.map(|_| ()))?;
            w.bufs.push((b, data));
            w.may_be_lost.push(false);
        }
        Op::HostWrite {
            buf,
            off,
            len,
            seed,
        } if n > 0 => {
            let i = buf as usize % n;
            let (b, model) = &mut w.bufs[i];
            let off = off as usize % model.len();
            let len = (len as usize).min(model.len() - off);
            let data = bytes(len, seed);
            if ok_or_lost(w.mm.write(b, off as u64, &data), w.may_be_lost[i])? {
                model[off..off + len].copy_from_slice(&data);
                if len == model.len() {
                    w.may_be_lost[i] = false;
                }
            }
        }
        Op::DeviceRead { buf, dev } if n > 0 => {
            let i = buf as usize % n;
            let (b, model) = &w.bufs[i];
            let d = dev as usize;
            match w.mm.acquire(b, d, AccessMode::Read, 1) {
                Ok(lease) => {
                    let mut got = vec![0u8; model.len()];
                    let r = w.devs[d].read(lease.block(), lease.offset(), &mut got);
                    w.mm.release(lease, Outcome::Completed);
                    if ok_or_injected(r)? {
                        prop_assert!(&got == model, "device {d} copy differs from the model");
                    }
                }
                Err(e) => {
                    ok_or_lost(Err(e), w.may_be_lost[i])?;
                }
            }
        }
        Op::DeviceWrite { buf, dev, seed } if n > 0 => {
            let i = buf as usize % n;
            let (b, model) = &mut w.bufs[i];
            let d = dev as usize;
            match w.mm.acquire(b, d, AccessMode::Write, 1) {
                Ok(lease) => {
                    let data = bytes(model.len(), seed);
                    let r = w.devs[d].write(lease.block(), lease.offset(), &data);
                    let outcome = if r.is_ok() {
                        Outcome::Completed
                    } else {
                        Outcome::Failed
                    };
                    w.mm.release(lease, outcome);
                    if ok_or_injected(r)? {
                        *model = data;
                        w.may_be_lost[i] = false;
                    } else {
                        w.may_be_lost[i] = true;
                    }
                }
                Err(e) => {
                    ok_or_injected(Err(e))?;
                }
            }
        }
        Op::DevicePartialWrite {
            buf,
            dev,
            off,
            seed,
        } if n > 0 => {
            let i = buf as usize % n;
            let (b, model) = &mut w.bufs[i];
            let d = dev as usize;
            match w.mm.acquire(b, d, AccessMode::ReadWrite, 2) {
                Ok(lease) => {
                    let off = off as usize % model.len();
                    let data = bytes((model.len() - off).min(777), seed);
                    let r = w.devs[d].write(lease.block(), lease.offset() + off as u64, &data);
                    let outcome = if r.is_ok() {
                        Outcome::Completed
                    } else {
                        Outcome::Failed
                    };
                    w.mm.release(lease, outcome);
                    if ok_or_injected(r)? {
                        model[off..off + data.len()].copy_from_slice(&data);
                    } else {
                        w.may_be_lost[i] = true;
                    }
                }
                Err(e) => {
                    ok_or_lost(Err(e), w.may_be_lost[i])?;
                }
            }
        }
        Op::HostRead { buf } if n > 0 => {
            let i = buf as usize % n;
            let (b, model) = &w.bufs[i];
            let mut got = vec![0u8; model.len()];
            if ok_or_lost(w.mm.read(b, 0, &mut got), w.may_be_lost[i])? {
                prop_assert!(&got == model, "host read differs from the model");
            }
        }
        Op::Evict { dev } => {
            let r = w.mm.evict_all(dev as usize).map(|_| ());
            ok_or_injected(r)?;
        }
        Op::Drop { buf } if n > 0 => {
            w.bufs.swap_remove(buf as usize % n);
            w.may_be_lost.swap_remove(buf as usize % n);
        }
        _ => {}
    }
    Ok(())
}

fn check_stats(w: &World) -> Result<(), TestCaseError> {
    let s = w.mm.stats();
    prop_assert_eq!(s.buffers, w.bufs.len() as u64);
    for (i, d) in s.devices.iter().enumerate() {
        let budget = w.mm.budget(i).unwrap();
        prop_assert!(
            d.bytes_in_use <= budget,
            "device {i}: {} > budget {budget}",
            d.bytes_in_use
        );
        prop_assert!(d.peak_bytes >= d.bytes_in_use);
    }
    Ok(())
}

fn verify_all(w: &World) -> Result<(), TestCaseError> {
    for ((b, model), &may_be_lost) in w.bufs.iter().zip(&w.may_be_lost) {
        let got = match w.mm.to_vec(b) {
            Err(Error::DataLost { .. }) if may_be_lost => continue,
            r => r.map_err(|e| TestCaseError::fail(e.to_string()))?,
        };
        prop_assert!(&got == model, "final read of {:?} differs", b.id());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_read_returns_the_last_write(packing in any::<bool>(), ops in proptest::collection::vec(op(), 1..120)) {
        let mut w = world(None, packing);
        for op in &ops {
            apply(&mut w, op, false)?;
            check_stats(&w)?;
        }
        verify_all(&w)?;
        drop(w.bufs);
        prop_assert_eq!(w.mm.stats().buffers, 0);
        for d in w.mm.stats().devices { prop_assert_eq!(d.bytes_in_use, 0); }
        prop_assert_eq!(w.mm.stats().host.bytes_in_use, 0);
    }

    #[test]
    fn injected_faults_lose_no_byte(seed in any::<u64>(), packing in any::<bool>(), ops in proptest::collection::vec(op(), 1..120)) {
        let plan = Arc::new(FaultPlan::new(seed, 0.15));
        let mut w = world(Some(plan.clone()), packing);
        for op in &ops {
            apply(&mut w, op, true)?;
            check_stats(&w)?;
        }
        plan.set_enabled(false);
        verify_all(&w)?;
    }
}

#[test]
fn creation_is_lazy_and_placement_is_reported() {
    for in_place in [false, true] {
        let dev = HostDevice::with_budget("h", 1 << 20);
        let dev: Arc<dyn DynDevice> = Arc::new(if in_place {
            dev
        } else {
            dev.without_in_place()
        });
        let mm = MemoryManager::new(vec![dev], MemoryConfig::default());
        let b = mm.create(4096).unwrap();
        assert_eq!(
            mm.stats().devices[0].bytes_in_use,
            0,
            "no device memory before first use"
        );
        assert_eq!(
            mm.stats().host.bytes_in_use,
            0,
            "no host memory before first write"
        );
        let lease = mm.acquire(&b, 0, AccessMode::Read, 1).unwrap();
        assert_eq!(
            lease.residency.placement,
            Placement::HostMapped,
            "CPU shares host memory"
        );
        assert!(!lease.residency.reason.is_empty());
        assert_eq!(lease.residency.in_place, in_place);
        assert_eq!(lease.is_in_place(), in_place);
        // A copy of its own is allocated now; in place, the host copy is (zeros).
        assert_eq!(lease.residency.allocated, !in_place);
        mm.release(lease, Outcome::Completed);
        let s = mm.stats();
        assert_eq!(s.devices[0].bytes_in_use, if in_place { 0 } else { 4096 });
        assert_eq!(s.host.bytes_in_use, if in_place { 4096 } else { 0 });
    }
}

#[test]
fn too_large_for_budget_is_a_clear_error() {
    let dev: Arc<dyn DynDevice> =
        Arc::new(HostDevice::with_budget("small", 64 << 10).without_in_place());
    let mm = MemoryManager::new(vec![dev], MemoryConfig::default());
    let b = mm.create(1 << 20).unwrap();
    mm.write(&b, 0, &[7u8; 1 << 20]).unwrap();
    let e = mm.acquire(&b, 0, AccessMode::Read, 1).unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    assert_eq!(mm.to_vec(&b).unwrap(), vec![7u8; 1 << 20], "data intact");
    assert!(matches!(mm.create(0), Err(Error::ZeroSize { .. })));
    assert!(matches!(mm.create(u64::MAX), Err(Error::TooLarge { .. })));
}

#[test]
fn eviction_writes_back_dirty_copies_lru_first() {
    let dev: Arc<dyn DynDevice> =
        Arc::new(HostDevice::with_budget("small", 3 * 4096).without_in_place());
    let mm = MemoryManager::new(vec![dev.clone()], MemoryConfig::default());
    let bufs: Vec<_> = (0..4).map(|_| mm.create(4096).unwrap()).collect();
    for (i, b) in bufs.iter().enumerate() {
        let l = mm.acquire(b, 0, AccessMode::Write, 1).unwrap();
        dev.write(l.block(), l.offset(), &[i as u8 + 1; 4096])
            .unwrap();
        mm.release(l, Outcome::Completed);
    }
    let s = mm.stats().devices[0];
    assert_eq!(s.evictions, 1);
    assert_eq!(s.writeback_bytes, 4096);
    // The first buffer was least recently used: it lives on the host only now.
    let r = mm.residency(&bufs[0]);
    assert_eq!(r.len(), 1, "{r:?}");
    for (i, b) in bufs.iter().enumerate() {
        assert_eq!(mm.to_vec(b).unwrap(), vec![i as u8 + 1; 4096]);
    }
}

#[test]
fn packed_write_backs_are_reported_uploaded_and_unpacked() {
    // Behind a modelled PCIe link, so that transfers count as link traffic.
    let dev: Arc<dyn DynDevice> = Arc::new(
        HostDevice::with_budget("h", 64 << 10).behind_link(vuma_core::LinkInfo::from_pcie(4, 16)),
    );
    let config = MemoryConfig {
        transfer: Some(Arc::new(PackingPath)),
        ..MemoryConfig::default()
    };
    let mm = MemoryManager::new(vec![dev.clone()], config);
    let a = mm.create(40_001).unwrap(); // not a multiple of 3: packed on write-back
    let b = mm.create(40_000 - 1).unwrap(); // 39_999 = 3 * 13_333: declined, plain
    let mut want = vec![0u8; 40_001];
    want[100..200].fill(7);
    // Written on the device: the device copy becomes the only valid one.
    let l = mm.acquire(&a, 0, AccessMode::Write, 1).unwrap();
    dev.write(l.block(), l.offset(), &want).unwrap();
    mm.release(l, Outcome::Completed);
    // b needs room: a is evicted and packed.
    let l = mm.acquire(&b, 0, AccessMode::Write, 1).unwrap();
    assert_eq!(l.residency.evicted, vec![(a.id(), 40_001)]);
    let t = &l.residency.transfers;
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].kind, TransferKind::Download);
    assert_eq!(t[0].link_bytes, 8 + 100 + 8, "two runs: 100 literal bytes");
    assert_eq!(l.residency.bytes_saved(), 40_001 - 116);
    mm.release(l, Outcome::Completed);
    let s = mm.stats();
    assert_eq!(s.host.packed_bytes, 116);
    assert_eq!(s.host.bytes_in_use, 116);
    assert_eq!(s.devices[0].packed_writebacks, 1);
    assert_eq!(s.host.link_bytes_in, 116);
    // Back onto the device from the packed copy (b is evicted plainly: declined).
    let l = mm.acquire(&a, 0, AccessMode::Read, 1).unwrap();
    let kinds: Vec<_> = l
        .residency
        .transfers
        .iter()
        .map(|t| (t.kind, t.path))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (TransferKind::Download, "direct"),
            (TransferKind::Upload, "zrle")
        ]
    );
    let mut got = vec![0u8; 40_001];
    dev.read(l.block(), l.offset(), &mut got).unwrap();
    assert_eq!(got, want);
    mm.release(l, Outcome::Completed);
    assert_eq!(mm.stats().devices[0].link_bytes_in, 100);
    assert_eq!(mm.stats().devices[0].bytes_saved, 40_001 - 100);
    // A host read unpacks: the packed copy is gone, plain bytes remain.
    assert_eq!(mm.to_vec(&a).unwrap(), want);
    let s = mm.stats();
    assert_eq!(s.host.packed_bytes, 0);
    assert_eq!(s.host.bytes_in_use, 40_001 + 39_999);
    drop((a, b));
    assert_eq!(mm.stats().host.bytes_in_use, 0);
}

/// The shared model ([`vuma_core::conformance::model`]): two threads on one manager,
/// injected faults and the loss of a device midway, plain transfers and the packing path.
#[test]
fn two_threads_faults_and_a_device_loss_lose_nothing_else() {
    use vuma_core::conformance::model::{run, ModelConfig};
    for seed in 1..=24u64 {
        for packing in [false, true] {
            let path = packing.then(|| Arc::new(PackingPath) as Arc<dyn TransferPath>);
            let cfg = ModelConfig {
                seed,
                ..ModelConfig::default()
            };
            match run(path, &cfg) {
                Ok(line) => {
                    if seed == 1 {
                        eprintln!("packing {packing}: {line}");
                    }
                }
                Err(e) => panic!("seed {seed}, packing {packing}: {e}"),
            }
        }
    }
}

/// A device that shares host memory has no link: nothing is counted as crossing one. With
/// copies of its own, they are copies within host memory; in place, nothing is copied.
#[test]
fn shared_memory_devices_move_nothing_over_a_link() {
    for in_place in [false, true] {
        let dev = HostDevice::with_budget("h", 64 << 10);
        let dev: Arc<dyn DynDevice> = Arc::new(if in_place {
            dev
        } else {
            dev.without_in_place()
        });
        let mm = MemoryManager::new(vec![dev.clone()], MemoryConfig::default());
        let a = mm.create_from(&[5u8; 40_000]).unwrap();
        let l = mm.acquire(&a, 0, AccessMode::ReadWrite, 1).unwrap();
        mm.release(l, Outcome::Completed);
        assert_eq!(mm.to_vec(&a).unwrap(), vec![5u8; 40_000]);
        let s = mm.stats();
        assert_eq!(s.devices[0].bytes_in, if in_place { 0 } else { 40_000 });
        assert_eq!(s.host.bytes_in, if in_place { 0 } else { 40_000 });
        assert_eq!(
            s.devices[0].in_place_bytes,
            if in_place { 40_000 } else { 0 }
        );
        assert_eq!(s.devices[0].link_bytes_in, 0);
        assert_eq!(s.host.link_bytes_in, 0);
    }
}
