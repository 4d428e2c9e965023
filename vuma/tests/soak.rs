//! Soak and fault-injection tests of the memory manager and the scheduler's executor on the
//! host: 8 threads doing random create / write / acquire / launch / read / drop with random
//! sizes and priorities through one [`UnifiedMemoryManager`] over three host devices, two
//! with copies of their own and small budgets (so eviction and write-back happen all the
//! time) and one that uses host copies in place, plus jobs through a
//! [`vuma_sched::Executor`]. Every read is checked against a model (one `Vec<u8>` per
//! buffer); at the end every byte is read back and compared, the statistics must show zero
//! bytes in use and no live pool allocation, and RSS must stay within a bound.
//!
//! `soak_with_faults` runs the same load with a [`FaultPlan`] failing allocations, copies
//! (both ways) and launches, counted per site and for eviction write-backs in particular:
//! an injected failure must leave the model unchanged (zero bytes lost).
//!
//! Duration: `VUMA_SOAK_SECS` per test (default 5). Long run:
//! `VUMA_SOAK_SECS=120 cargo test -p vuma --test soak --release -- --nocapture`.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vuma::{kernels, GpuWorkload, Priority, UnifiedMemoryManager, WorkloadKind};
use vuma_core::fault::FaultPlan;
use vuma_core::{
    AccessMode, Arg, Device, DeviceInfo, Error, HostBuffer, HostDevice, Kernel, LaunchConfig,
    Outcome, Placement, Scalar, UnifiedBuffer,
};
use vuma_sched::{Executor, SchedConfig, Scheduler, WorkloadProfile};

const THREADS: usize = 8;
const MAX_BUFS: usize = 24;
/// Budgets of the three devices: small, so that eviction and write-back never stop.
const BUDGETS: [u64; 3] = [256 << 10, 512 << 10, 2 << 20];

thread_local! {
    /// The device index a direct `acquire` of this thread is running on (for attributing
    /// reads on that device to eviction write-back).
    static ACQUIRING_ON: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Faults injected, by site.
#[derive(Debug, Default)]
struct FaultCounts {
    alloc: AtomicU64,
    write: AtomicU64,
    read: AtomicU64,
    copy: AtomicU64,
    launch: AtomicU64,
    /// Device-to-host reads issued by an acquire on the same device: eviction write-backs.
    writeback_reads: AtomicU64,
    /// Of those, the ones that failed by injection.
    writeback_faults: AtomicU64,
}

/// A host device (with an optional fault plan) that counts the faults it injects.
struct Counted {
    inner: HostDevice,
    index: usize,
    counts: Arc<FaultCounts>,
}

fn count<T>(r: vuma_core::Result<T>, c: &AtomicU64) -> vuma_core::Result<T> {
    if let Err(Error::Injected(_)) = &r {
        c.fetch_add(1, Ordering::Relaxed);
    }
    r
}

impl Device for Counted {
    type Buffer = HostBuffer;
    fn info(&self) -> &DeviceInfo {
        Device::info(&self.inner)
    }
    fn supports(&self, p: Placement) -> bool {
        Device::supports(&self.inner, p)
    }
    fn alloc(&self, size: u64, p: Placement) -> vuma_core::Result<HostBuffer> {
        count(Device::alloc(&self.inner, size, p), &self.counts.alloc)
    }
    fn write(&self, dst: &HostBuffer, off: u64, src: &[u8]) -> vuma_core::Result<()> {
        count(
            Device::write(&self.inner, dst, off, src),
            &self.counts.write,
        )
    }
    fn read(&self, src: &HostBuffer, off: u64, dst: &mut [u8]) -> vuma_core::Result<()> {
        let r = count(Device::read(&self.inner, src, off, dst), &self.counts.read);
        if ACQUIRING_ON.with(Cell::get) == Some(self.index) {
            self.counts.writeback_reads.fetch_add(1, Ordering::Relaxed);
            if matches!(r, Err(Error::Injected(_))) {
                self.counts.writeback_faults.fetch_add(1, Ordering::Relaxed);
            }
        }
        r
    }
    fn copy(
        &self,
        src: &HostBuffer,
        so: u64,
        dst: &HostBuffer,
        d_o: u64,
        len: u64,
    ) -> vuma_core::Result<()> {
        count(
            Device::copy(&self.inner, src, so, dst, d_o, len),
            &self.counts.copy,
        )
    }
    fn fill(&self, dst: &HostBuffer, off: u64, len: u64, v: u8) -> vuma_core::Result<()> {
        Device::fill(&self.inner, dst, off, len, v)
    }
    fn launch(
        &self,
        k: &Kernel,
        c: &LaunchConfig,
        args: &[Arg<'_, HostBuffer>],
    ) -> vuma_core::Result<()> {
        count(Device::launch(&self.inner, k, c, args), &self.counts.launch)
    }
    fn synchronize(&self) -> vuma_core::Result<()> {
        Device::synchronize(&self.inner)
    }
    /// Device 2 uses host copies in place; 0 and 1 get copies of their own.
    fn can_alias_host(&self) -> bool {
        self.index == 2
    }
    fn alias_host(&self, region: Arc<vuma_core::HostRegion>) -> vuma_core::Result<HostBuffer> {
        Device::alias_host(&self.inner, region)
    }
}

/// `buf[i] += k` (read-write).
fn add_k() -> Kernel {
    Kernel::new("soak_add_k").with_host(|l| {
        let Some(Scalar::U32(k)) = l.scalars.first().copied() else {
            return Err(Error::invalid("soak_add_k takes (buf, k: u32)"));
        };
        for b in l.buffers[0].iter_mut() {
            *b = b.wrapping_add(k as u8);
        }
        Ok(())
    })
}

/// `dst[i] = src[i % src.len()] ^ k` (src read, dst written entirely).
fn copy_xor() -> Kernel {
    Kernel::new("soak_copy_xor").with_host(|l| {
        let Some(Scalar::U32(k)) = l.scalars.first().copied() else {
            return Err(Error::invalid("soak_copy_xor takes (a, b, k: u32)"));
        };
        // Argument order varies (write first or read first): the flag says which is dst.
        let dst_first = matches!(l.scalars.get(1), Some(Scalar::U32(1)));
        let (a, b) = l.buffers.split_at_mut(1);
        let (src, dst): (&[u8], &mut [u8]) = if dst_first {
            (&*b[0], &mut *a[0])
        } else {
            (&*a[0], &mut *b[0])
        };
        for (i, d) in dst.iter_mut().enumerate() {
            *d = src[i % src.len()] ^ k as u8;
        }
        Ok(())
    })
}

/// xorshift64*.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Operation counters.
#[derive(Debug, Default)]
struct Ops {
    total: AtomicU64,
    creates: AtomicU64,
    drops: AtomicU64,
    writes: AtomicU64,
    reads: AtomicU64,
    bytes_checked: AtomicU64,
    workloads: AtomicU64,
    direct_launches: AtomicU64,
    executor_jobs: AtomicU64,
    evict_alls: AtomicU64,
    /// Operations refused with a transient error (budget exhausted by other threads' leases).
    transient: AtomicU64,
    /// Operations failed by an injected fault.
    injected: AtomicU64,
}

fn rss_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn soak_secs() -> f64 {
    std::env::var("VUMA_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0)
}

struct Rig {
    umm: Arc<UnifiedMemoryManager>,
    counts: Arc<FaultCounts>,
    plan: Option<Arc<FaultPlan>>,
    executor: Executor,
    rt: tokio::runtime::Runtime,
}

fn rig(fault_rate: Option<f64>) -> Rig {
    let counts = Arc::new(FaultCounts::default());
    let plan = fault_rate.map(|r| Arc::new(FaultPlan::new(0x50A4, r)));
    let mut b = UnifiedMemoryManager::builder()
        .cuda(false)
        .vulkan(false)
        .host(false);
    for (i, budget) in BUDGETS.iter().enumerate() {
        let mut h = HostDevice::with_budget(format!("soak{i}"), *budget);
        if let Some(p) = &plan {
            h = h.with_faults(p.clone());
        }
        b = b.device(Arc::new(Counted {
            inner: h,
            index: i,
            counts: counts.clone(),
        }));
    }
    let umm = Arc::new(b.build().expect("manager"));
    let infos: Vec<DeviceInfo> = umm.devices().iter().map(|d| d.info().clone()).collect();
    let sched = Arc::new(
        Scheduler::try_new(infos, SchedConfig::default().with_queue_capacity(16)).expect("sched"),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    let executor = {
        let _g = rt.enter();
        Executor::new(sched).expect("executor")
    };
    Rig {
        umm,
        counts,
        plan,
        executor,
        rt,
    }
}

/// Runs `add_k` on `buf` on device `index` through acquire / launch / release.
fn direct_add(
    umm: &UnifiedMemoryManager,
    buf: &UnifiedBuffer,
    index: usize,
    k: u32,
    reuse: u32,
) -> vuma_core::Result<()> {
    ACQUIRING_ON.with(|c| c.set(Some(index)));
    let lease = umm
        .memory()
        .acquire(buf, index, AccessMode::ReadWrite, reuse);
    ACQUIRING_ON.with(|c| c.set(None));
    let lease = lease?;
    let dev = umm.devices()[index].clone();
    // A launch that returns an error was refused before it ran (nothing touched the
    // copy: `NotRun`); an error after it (at the synchronisation) means the kernel ran
    // and failed (`Failed`: its copy's contents are unknown).
    let launched = dev.launch(
        &add_k(),
        &kernels::launch_for(buf.len()),
        &[lease.arg(), Arg::Scalar(Scalar::U32(k))],
    );
    let ran = launched.is_ok();
    let r = launched.and_then(|()| dev.synchronize());
    let outcome = match (&r, ran) {
        (Ok(()), _) => Outcome::Completed,
        (Err(_), false) => Outcome::NotRun,
        (Err(_), true) => Outcome::Failed,
    };
    umm.memory().release(lease, outcome);
    r
}

const PRIORITIES: [Priority; 4] = [
    Priority::Low,
    Priority::Normal,
    Priority::High,
    Priority::Realtime,
];

fn kind(rng: &mut Rng) -> WorkloadKind {
    match rng.below(4) {
        0 => WorkloadKind::LightCompute,
        1 => WorkloadKind::HeavyCompute,
        2 => WorkloadKind::AiInference,
        _ => WorkloadKind::Ui,
    }
}

/// One worker: random operations on its own buffers (so that its model is exact), reads of
/// the shared read-only buffers, until `deadline`.
fn worker(
    rig: &Rig,
    shared: &[(Arc<UnifiedBuffer>, Vec<u8>)],
    seed: u64,
    deadline: Instant,
    ops: &Ops,
    faulty: bool,
) -> Vec<(Arc<UnifiedBuffer>, Vec<u8>)> {
    let umm = &*rig.umm;
    let mut rng = Rng(seed | 1);
    let mut bufs: Vec<(Arc<UnifiedBuffer>, Vec<u8>)> = Vec::new();
    let ndev = umm.devices().len();
    // Ok(true): done; Ok(false): refused (transient or injected), model unchanged.
    let judge = |what: &str, r: vuma_core::Result<()>| -> bool {
        match r {
            Ok(()) => true,
            Err(Error::BudgetExceeded { .. }) => {
                ops.transient.fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(Error::Injected(_)) if faulty => {
                ops.injected.fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(e) => panic!("{what}: unexpected error {e}"),
        }
    };
    while Instant::now() < deadline {
        ops.total.fetch_add(1, Ordering::Relaxed);
        let n = bufs.len();
        match rng.below(100) {
            0..=9 if n < MAX_BUFS => {
                let size = if rng.below(8) == 0 {
                    1 + rng.below(128 << 10)
                } else {
                    1 + rng.below(16 << 10)
                };
                let b = umm.create_buffer(size as u64).expect("create");
                let mut model = vec![0u8; size];
                if rng.below(2) == 0 {
                    for (i, x) in model.iter_mut().enumerate() {
                        *x = (i as u64 ^ seed) as u8;
                    }
                    if !judge("initial write", umm.write(&b, 0, &model)) {
                        model.fill(0);
                    }
                }
                bufs.push((b, model));
                ops.creates.fetch_add(1, Ordering::Relaxed);
            }
            0..=14 if n > 0 => {
                bufs.swap_remove(rng.below(n));
                ops.drops.fetch_add(1, Ordering::Relaxed);
            }
            15..=29 if n > 0 => {
                let (b, model) = &mut bufs[rng.below(n)];
                let off = rng.below(model.len());
                let len = 1 + rng.below(model.len() - off);
                let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                if judge("write", umm.write(b, off as u64, &data)) {
                    model[off..off + len].copy_from_slice(&data);
                }
                ops.writes.fetch_add(1, Ordering::Relaxed);
            }
            30..=49 if n > 0 => {
                let (b, model) = &mut bufs[rng.below(n)];
                let k = rng.next() as u32;
                let w = GpuWorkload::new("soak-add", kind(&mut rng), add_k())
                    .complexity(rng.below(100) as f32 / 100.0)
                    .priority(PRIORITIES[rng.below(4)])
                    .read_write(b, rng.below(4) as u32)
                    .scalar(Scalar::U32(k))
                    .launch(kernels::launch_for(b.len()));
                if judge("add workload", umm.process_workload(&w).map(|_| ())) {
                    model.iter_mut().for_each(|x| *x = x.wrapping_add(k as u8));
                }
                ops.workloads.fetch_add(1, Ordering::Relaxed);
            }
            50..=61 if n > 1 => {
                let i = rng.below(n);
                let j = (i + 1 + rng.below(n - 1)) % n;
                let k = rng.next() as u32;
                let dst_first = rng.below(2) == 0;
                let (src, dst) = (&bufs[i].0, &bufs[j].0);
                let mut w = GpuWorkload::new("soak-copy", kind(&mut rng), copy_xor())
                    .priority(PRIORITIES[rng.below(4)]);
                w = if dst_first {
                    w.write(dst).read(src, 1)
                } else {
                    w.read(src, 1).write(dst)
                };
                let w = w
                    .scalar(Scalar::U32(k))
                    .scalar(Scalar::U32(u32::from(dst_first)))
                    .launch(kernels::launch_for(dst.len()));
                if judge("copy workload", umm.process_workload(&w).map(|_| ())) {
                    let s = bufs[i].1.clone();
                    for (x, d) in bufs[j].1.iter_mut().enumerate() {
                        *d = s[x % s.len()] ^ k as u8;
                    }
                }
                ops.workloads.fetch_add(1, Ordering::Relaxed);
            }
            62..=71 if n > 0 => {
                let (b, model) = &mut bufs[rng.below(n)];
                let k = rng.next() as u32;
                if judge(
                    "direct launch",
                    direct_add(umm, b, rng.below(ndev), k, rng.below(4) as u32),
                ) {
                    model.iter_mut().for_each(|x| *x = x.wrapping_add(k as u8));
                }
                ops.direct_launches.fetch_add(1, Ordering::Relaxed);
            }
            72..=76 if n > 0 => {
                let (b, model) = &mut bufs[rng.below(n)];
                let k = rng.next() as u32;
                let profile = WorkloadProfile::new("soak-job", kind(&mut rng))
                    .with_priority(PRIORITIES[rng.below(4)])
                    .with_memory(b.len());
                let (umm2, b2) = (rig.umm.clone(), b.clone());
                let job = move |dev| {
                    let index = umm2
                        .memory()
                        .device_index(dev)
                        .ok_or_else(|| Error::invalid("unknown device"))?;
                    direct_add(&umm2, &b2, index, k, 1)
                };
                let r = rig.rt.block_on(async {
                    match rig.executor.submit(profile, job).await {
                        Ok(h) => h.await.map_err(Error::from),
                        Err(e) => Err(Error::from(e)),
                    }
                });
                if judge("executor job", r) {
                    model.iter_mut().for_each(|x| *x = x.wrapping_add(k as u8));
                }
                ops.executor_jobs.fetch_add(1, Ordering::Relaxed);
            }
            77..=78 => {
                let r = umm.memory().evict_all(rng.below(ndev)).map(|_| ());
                judge("evict_all", r);
                ops.evict_alls.fetch_add(1, Ordering::Relaxed);
            }
            79..=84 if !shared.is_empty() => {
                // Concurrent readers of one buffer, on devices and on the host.
                let (b, model) = &shared[rng.below(shared.len())];
                let dev = rng.below(ndev);
                let r = umm.memory().acquire(b, dev, AccessMode::Read, 2);
                match r {
                    Ok(l) => umm.memory().release(l, Outcome::Completed),
                    Err(e) => {
                        judge("shared acquire", Err(e));
                    }
                }
                let mut out = vec![0u8; model.len()];
                if judge("shared read", umm.read(b, 0, &mut out)) {
                    assert!(out == *model, "shared buffer changed");
                    ops.bytes_checked
                        .fetch_add(out.len() as u64, Ordering::Relaxed);
                }
                ops.reads.fetch_add(1, Ordering::Relaxed);
            }
            _ if n > 0 => {
                let (b, model) = &bufs[rng.below(n)];
                let off = rng.below(model.len());
                let len = 1 + rng.below(model.len() - off);
                let mut out = vec![0u8; len];
                if judge("read", umm.read(b, off as u64, &mut out)) {
                    assert!(
                        out[..] == model[off..off + len],
                        "buffer {:?} read {off}+{len} differs from the model",
                        b.id()
                    );
                    ops.bytes_checked.fetch_add(len as u64, Ordering::Relaxed);
                }
                ops.reads.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
    bufs
}

fn soak(fault_rate: Option<f64>) {
    let rig = rig(fault_rate);
    let faulty = fault_rate.is_some();
    let secs = soak_secs();
    // Three shared read-only buffers (16, 48 and 96 KiB).
    let shared: Vec<(Arc<UnifiedBuffer>, Vec<u8>)> = [16usize << 10, 48 << 10, 96 << 10]
        .iter()
        .enumerate()
        .map(|(s, &n)| {
            let data: Vec<u8> = (0..n).map(|i| (i * 7 + s) as u8).collect();
            let p = rig.plan.clone();
            if let Some(p) = &p {
                p.set_enabled(false);
            }
            let b = rig.umm.create_buffer_from(&data).expect("shared");
            if let Some(p) = &p {
                p.set_enabled(true);
            }
            (b, data)
        })
        .collect();
    let rss_start = rss_kib("VmRSS:");
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(secs);
    let ops = Ops::default();
    let leftovers = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (rig, shared, ops, leftovers) = (&rig, &shared, &ops, &leftovers);
            s.spawn(move || {
                let seed = 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(t as u64 + 1);
                let bufs = worker(rig, shared, seed, deadline, ops, faulty);
                leftovers.lock().unwrap().extend(bufs);
            });
        }
    });
    let elapsed = t0.elapsed().as_secs_f64();
    let rss_mid = rss_kib("VmRSS:");
    // Verify every byte of every surviving buffer with faults off: nothing was lost.
    if let Some(p) = &rig.plan {
        p.set_enabled(false);
    }
    let leftovers = leftovers.into_inner().unwrap();
    let mut verified = 0u64;
    for (b, model) in leftovers.iter().chain(shared.iter()) {
        let got = rig.umm.to_vec(b).expect("final read");
        let lost = got.iter().zip(model).filter(|(a, b)| a != b).count();
        assert_eq!(
            lost,
            0,
            "buffer {:?}: {lost} bytes differ from the model",
            b.id()
        );
        verified += model.len() as u64;
    }
    let buffers_alive = leftovers.len() + shared.len();
    drop(leftovers);
    drop(shared);
    let st = rig.umm.stats();
    assert_eq!(st.buffers, 0, "buffers leaked: {st:?}");
    assert_eq!(st.host.bytes_in_use, 0, "host bytes leaked: {st:?}");
    for (i, d) in st.devices.iter().enumerate() {
        assert_eq!(d.bytes_in_use, 0, "device {i} bytes leaked: {st:?}");
        for p in Placement::ALL {
            if let Some(ps) = rig.umm.memory().pool_stats(i, p) {
                assert_eq!(ps.live_allocations, 0, "device {i} {p:?} pool: {ps:?}");
                assert_eq!(ps.bytes_in_use, 0, "device {i} {p:?} pool: {ps:?}");
            }
        }
    }
    let rss_end = rss_kib("VmRSS:");
    let hwm = rss_kib("VmHWM:");
    let c = &rig.counts;
    let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let evictions: u64 = st.devices.iter().map(|d| d.evictions).sum();
    let writeback: u64 = st.devices.iter().map(|d| d.writeback_bytes).sum();
    let in_place = st.devices[2].in_place_uses;
    println!(
        "soak{}: {elapsed:.1}s, {THREADS} threads, {} ops ({:.0}/s): {} creates, {} drops, {} writes, \
         {} reads ({} bytes checked), {} workloads, {} direct launches, {} executor jobs, \
         {} evict_all; {} transient refusals, {} ops failed by injection; evictions {evictions}, \
         write-back {writeback} B; {in_place} leases in place; {buffers_alive} buffers / {verified} bytes verified at the end, \
         0 lost; RSS start {rss_start} KiB, after load {rss_mid} KiB, end {rss_end} KiB, peak {hwm} KiB",
        if faulty { " (faults)" } else { "" },
        ld(&ops.total),
        ld(&ops.total) as f64 / elapsed,
        ld(&ops.creates),
        ld(&ops.drops),
        ld(&ops.writes),
        ld(&ops.reads),
        ld(&ops.bytes_checked),
        ld(&ops.workloads),
        ld(&ops.direct_launches),
        ld(&ops.executor_jobs),
        ld(&ops.evict_alls),
        ld(&ops.transient),
        ld(&ops.injected),
    );
    if let Some(p) = &rig.plan {
        println!(
            "faults injected: {} in all (alloc {}, host-to-device {}, device-to-host {}, \
             device copy {}, launch {}); eviction write-backs {} of which {} failed by \
             injection; bytes lost: 0",
            p.injected(),
            ld(&c.alloc),
            ld(&c.write),
            ld(&c.read),
            ld(&c.copy),
            ld(&c.launch),
            ld(&c.writeback_reads),
            ld(&c.writeback_faults),
        );
        if secs >= 2.0 {
            assert!(
                ld(&c.writeback_faults) > 0,
                "no fault hit an eviction write-back"
            );
            // Allocation faults are rare: pools cache their blocks (memory_model.rs covers them).
            assert!(ld(&c.launch) > 0 && ld(&c.write) > 0 && ld(&c.read) > 0);
        }
    }
    assert!(ld(&ops.total) > 0);
    assert!(in_place > 0, "device 2 used host copies in place");
    assert_eq!(st.devices[2].bytes_in, 0, "nothing copied into device 2");
    // Memory stays bounded: budgets total < 3 MiB, live host copies a few MiB.
    assert!(
        rss_end <= rss_start + 96 * 1024,
        "RSS grew from {rss_start} KiB to {rss_end} KiB"
    );
    drop(rig);
}

#[test]
fn manager_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<UnifiedMemoryManager>();
    check::<UnifiedBuffer>();
    check::<Executor>();
}

#[test]
fn soak_host() {
    soak(None);
}

#[test]
fn soak_with_faults() {
    soak(Some(0.02));
}

/// A workload whose written buffer is listed before a read buffer whose acquire fails must
/// not lose the written buffer's data (the facade releases the leases it already took).
#[test]
fn failed_acquire_after_write_lease_keeps_data() {
    let plan = Arc::new(FaultPlan::new(7, 0.0));
    let small = HostDevice::with_budget("small", 64 << 10)
        .without_in_place()
        .with_faults(plan.clone());
    let umm = UnifiedMemoryManager::builder()
        .cuda(false)
        .vulkan(false)
        .host(false)
        .device(Arc::new(small))
        .build()
        .unwrap();
    let dst_data = vec![0xABu8; 4096];
    let dst = umm.create_buffer_from(&dst_data).unwrap();
    // Too large for the device: its acquire fails after dst's write lease was taken.
    let src = umm.create_buffer_from(&vec![1u8; 128 << 10]).unwrap();
    let w = GpuWorkload::new("w", WorkloadKind::LightCompute, copy_xor())
        .write(&dst)
        .read(&src, 1)
        .scalar(Scalar::U32(0))
        .scalar(Scalar::U32(1))
        .launch(kernels::launch_for(4096));
    assert!(umm.process_workload(&w).is_err());
    assert_eq!(umm.to_vec(&dst).unwrap(), dst_data, "dst lost its data");
}
