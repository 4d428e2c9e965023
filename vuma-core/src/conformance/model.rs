//! A model test of the [`MemoryManager`], written once for every
//! [`TransferPath`]: seeded random operations (buffers created empty or from bytes straight
//! onto a device, host and device reads and writes, evictions, prefetches, drops) by several threads on one manager over three
//! host devices, two with copies of their own and small budgets (so evictions cross
//! threads) and one that uses host copies in place, with injected faults and
//! the loss of a device midway, each thread checking its buffers against a plain model (one
//! `Vec<u8>` per buffer). It checks the promise "nothing lost": every read returns the last
//! write, except for buffers whose data the manager *says* is gone (`DataLost`) — and it
//! may say so only for buffers a failed kernel was writing, or whose only valid copy was on
//! the device that was lost (`MemoryManager::device_lost` names them).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::device::DynDevice;
use crate::error::Error;
use crate::fault::FaultPlan;
use crate::host::HostDevice;
use crate::memory::{BufferId, MemoryConfig, MemoryManager, Outcome, UnifiedBuffer};
use crate::placement::AccessMode;
use crate::transfer::TransferPath;

/// What [`run`] does.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// The seed (operations, sizes, faults).
    pub seed: u64,
    /// Operations per thread.
    pub ops: usize,
    /// Threads sharing the manager (each with its own buffers).
    pub threads: usize,
    /// Probability that a device operation fails (an injected, retryable fault).
    pub fault_rate: f64,
    /// Loses device 2 (of 0..3) after this many operations of thread 0; `None`: never.
    pub lose_after: Option<usize>,
    /// Largest buffer, bytes.
    pub max_size: usize,
    /// Device budgets, bytes.
    pub budgets: [u64; 3],
    /// Which devices use host copies in place (the others get copies of their own:
    /// [`HostDevice::without_in_place`]).
    pub in_place: [bool; 3],
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            seed: 1,
            ops: 150,
            threads: 2,
            fault_rate: 0.05,
            lose_after: Some(75),
            max_size: 300 << 10,
            budgets: [512 << 10, 1 << 20, 4 << 20],
            in_place: [false, true, false],
        }
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Data with zero runs and structure (so packing paths find something to pack).
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    (0..len)
        .map(|i| {
            if (i / 4096 + seed as usize).is_multiple_of(3) {
                0
            } else {
                (i as u64).wrapping_mul(seed | 1).wrapping_add(seed >> 3) as u8
            }
        })
        .collect()
}

struct Shared {
    mm: MemoryManager,
    devs: Vec<Arc<dyn DynDevice>>,
    plans: Vec<Arc<FaultPlan>>,
    /// Set just before device 2 is lost.
    losing: AtomicBool,
    /// What `device_lost` reported.
    lost_ids: Mutex<HashSet<BufferId>>,
}

struct Buf {
    buf: UnifiedBuffer,
    model: Vec<u8>,
    /// A kernel writing it failed (or a read said `DataLost` after the device loss): the
    /// manager may report it lost until it is overwritten whole.
    may_be_lost: bool,
}

/// What one thread saw.
#[derive(Default)]
struct Seen {
    /// Buffers reported `DataLost` while no failed kernel explained it (must be in the
    /// device loss's list).
    lost_by_loss: Vec<BufferId>,
    ops: usize,
}

/// Runs the model (see the module docs) with `path` as the manager's transfer path.
/// Returns a line of what ran, or what diverged from the model.
pub fn run(path: Option<Arc<dyn TransferPath>>, cfg: &ModelConfig) -> Result<String, String> {
    let plans: Vec<Arc<FaultPlan>> = (0..3)
        .map(|i| {
            Arc::new(FaultPlan::new(
                cfg.seed.wrapping_mul(31) + i,
                cfg.fault_rate,
            ))
        })
        .collect();
    let devs: Vec<Arc<dyn DynDevice>> = cfg
        .budgets
        .iter()
        .zip(&plans)
        .enumerate()
        .map(|(i, (&b, p))| {
            let d = HostDevice::with_budget(format!("dev{i}"), b).with_faults(p.clone());
            let d = if cfg.in_place[i] {
                d
            } else {
                d.without_in_place()
            };
            Arc::new(d) as Arc<dyn DynDevice>
        })
        .collect();
    let config = MemoryConfig {
        transfer: path,
        ..MemoryConfig::default()
    };
    let shared = Shared {
        mm: MemoryManager::new(devs.clone(), config),
        devs,
        plans,
        losing: AtomicBool::new(false),
        lost_ids: Mutex::new(HashSet::new()),
    };
    let results: Vec<Result<(Vec<Buf>, Seen), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..cfg.threads)
            .map(|t| {
                let shared = &shared;
                s.spawn(move || thread(shared, cfg, t))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a model thread panicked".into()))
            })
            .collect()
    });
    for p in &shared.plans {
        p.set_enabled(false);
    }
    // Every buffer lost with device 2, however the loss was noticed (by the thread that
    // lost it, or by the manager's own transfers first) and whenever (a write lease on it
    // ending after the loss counts too).
    let mut lost_ids = shared
        .lost_ids
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if shared.losing.load(Ordering::SeqCst) {
        lost_ids.extend(shared.mm.device_lost(2, "lost by the model test"));
    }
    let (mut checked, mut lost, mut ops) = (0, 0, 0);
    for r in results {
        let (bufs, seen) = r?;
        ops += seen.ops;
        if let Some(id) = seen.lost_by_loss.iter().find(|id| !lost_ids.contains(id)) {
            return Err(format!(
                "buffer {id:?} reported lost, but neither a failed kernel nor the device loss \
                 took its only copy"
            ));
        }
        for b in &bufs {
            match shared.mm.to_vec(&b.buf) {
                Err(Error::DataLost { .. }) if b.may_be_lost || lost_ids.contains(&b.buf.id()) => {
                    lost += 1
                }
                Ok(v) if v == b.model => checked += 1,
                Ok(_) => {
                    return Err(format!(
                        "final read of {:?} differs from the model",
                        b.buf.id()
                    ))
                }
                Err(e) => return Err(format!("final read of {:?}: {e}", b.buf.id())),
            }
        }
    }
    let st = shared.mm.stats();
    let packed: u64 = st.devices.iter().map(|d| d.packed_writebacks).sum();
    let evictions: u64 = st.devices.iter().map(|d| d.evictions).sum();
    let in_place: u64 = st.devices.iter().map(|d| d.in_place_uses).sum();
    Ok(format!(
        "seed {}: {ops} operations on {} threads, {evictions} evictions ({packed} packed \
         write-backs), {in_place} leases in place, {} device loss, {checked} buffers checked, \
         {lost} reported lost ({} by the loss)",
        cfg.seed,
        cfg.threads,
        if shared.losing.load(Ordering::SeqCst) {
            "one"
        } else {
            "no"
        },
        lost_ids.len()
    ))
}

/// Whether `e` is an acceptable outcome of an operation (it left the model unchanged).
fn acceptable(sh: &Shared, e: &Error, may_be_lost: bool) -> bool {
    match e {
        Error::Injected(_) | Error::BudgetExceeded { .. } | Error::TooLarge { .. } => true,
        Error::DataLost { .. } => may_be_lost || sh.losing.load(Ordering::SeqCst),
        Error::DeviceLost { .. } => sh.losing.load(Ordering::SeqCst),
        _ => false,
    }
}

fn thread(sh: &Shared, cfg: &ModelConfig, t: usize) -> Result<(Vec<Buf>, Seen), String> {
    let mut rng = Rng(cfg.seed.wrapping_mul(0x9E37_79B9) ^ (t as u64 + 1) << 32 | 1);
    let mut bufs: Vec<Buf> = Vec::new();
    let mut seen = Seen::default();
    for step in 0..cfg.ops {
        seen.ops += 1;
        if t == 0 && cfg.lose_after == Some(step) {
            sh.losing.store(true, Ordering::SeqCst);
            sh.plans[2].lose_device();
            let ids = sh.mm.device_lost(2, "lost by the model test");
            sh.lost_ids
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(ids);
        }
        let op = rng.below(9);
        if bufs.is_empty() || op == 0 {
            let size = 1 + rng.below(cfg.max_size);
            let (buf, model) = if rng.below(2) == 0 {
                let buf = sh.mm.create(size as u64).map_err(|e| e.to_string())?;
                (buf, vec![0; size])
            } else {
                // Made from bytes straight onto a device (the upload overlaps the fill):
                // whether or not the device copy could be had, the buffer holds the bytes.
                let (d, data) = (rng.below(3), bytes(size, rng.next()));
                let (buf, upload) = sh
                    .mm
                    .create_from_on(&data, d)
                    .map_err(|e| format!("thread {t}, step {step}: create_from_on: {e}"))?;
                if let Err(e) = upload {
                    if !acceptable(sh, &e, false) {
                        return Err(format!("thread {t}, step {step}: first upload: {e}"));
                    }
                }
                (buf, data)
            };
            bufs.push(Buf {
                buf,
                model,
                may_be_lost: false,
            });
            continue;
        }
        let i = rng.below(bufs.len());
        let d = rng.below(3);
        let seed = rng.next();
        step_one(sh, &mut bufs[i], op, d, seed, &mut rng, &mut seen)
            .map_err(|e| format!("thread {t}, step {step}, op {op} on device {d}: {e}"))?;
        if op == 8 {
            bufs.swap_remove(i);
        }
    }
    Ok((bufs, seen))
}

/// One operation on `b`; an error result means the model diverged.
fn step_one(
    sh: &Shared,
    b: &mut Buf,
    op: usize,
    d: usize,
    seed: u64,
    rng: &mut Rng,
    seen: &mut Seen,
) -> Result<(), String> {
    let len = b.model.len();
    let check = |r: crate::Result<()>, b: &mut Buf, seen: &mut Seen| -> Result<bool, String> {
        match r {
            Ok(()) => Ok(true),
            Err(e) if acceptable(sh, &e, b.may_be_lost) => {
                if matches!(e, Error::DataLost { .. }) && !b.may_be_lost {
                    seen.lost_by_loss.push(b.buf.id());
                    b.may_be_lost = true;
                }
                Ok(false)
            }
            Err(e) => Err(e.to_string()),
        }
    };
    match op {
        1 => {
            // Host write, partial or whole.
            let off = rng.below(len);
            let n = if rng.below(4) == 0 {
                len - off
            } else {
                (len - off).min(1 + rng.below(5000))
            };
            let (off, n) = if rng.below(3) == 0 {
                (0, len)
            } else {
                (off, n)
            };
            let data = bytes(n, seed);
            if check(sh.mm.write(&b.buf, off as u64, &data), b, seen)? {
                b.model[off..off + n].copy_from_slice(&data);
                if n == len {
                    b.may_be_lost = false;
                }
            }
        }
        2 | 3 => {
            // Device read (checked against the model) / host read.
            let mut got = vec![0u8; len];
            let r = if op == 2 {
                match sh.mm.acquire(&b.buf, d, AccessMode::Read, 1) {
                    Ok(l) => {
                        let r = sh.devs[d].read(l.block(), l.offset(), &mut got);
                        sh.mm.release(l, Outcome::Completed);
                        r
                    }
                    Err(e) => Err(e),
                }
            } else {
                sh.mm.read(&b.buf, 0, &mut got)
            };
            if check(r, b, seen)? && got != b.model {
                return Err(format!("read of {:?} differs from the model", b.buf.id()));
            }
        }
        4 | 5 => {
            // Device write: whole (4) or partial, read-modify-write (5).
            let access = if op == 4 {
                AccessMode::Write
            } else {
                AccessMode::ReadWrite
            };
            let l = match sh.mm.acquire(&b.buf, d, access, 2) {
                Ok(l) => l,
                Err(e) => return check(Err(e), b, seen).map(drop),
            };
            let off = if op == 4 { 0 } else { rng.below(len) };
            let data = bytes(if op == 4 { len } else { (len - off).min(777) }, seed);
            let r = sh.devs[d].write(l.block(), l.offset() + off as u64, &data);
            sh.mm.release(
                l,
                if r.is_ok() {
                    Outcome::Completed
                } else {
                    Outcome::Failed
                },
            );
            match check(r, b, seen)? {
                true => {
                    b.model[off..off + data.len()].copy_from_slice(&data);
                    if op == 4 {
                        b.may_be_lost = false;
                    }
                }
                // A failed kernel may have written part of the only valid copy.
                false => b.may_be_lost = true,
            }
        }
        6 | 7 => {
            // Eviction of a whole device; prefetch.
            let r = if op == 6 {
                sh.mm.evict_all(d).map(drop)
            } else {
                sh.mm.prefetch(&b.buf, d).map(drop)
            };
            check(r, b, seen)?;
        }
        _ => {} // 8: dropped by the caller
    }
    Ok(())
}
