//! [`UnifiedMemoryManager`]: the devices of every compiled-in backend, one memory manager
//! over all of them, the Tidal Wave scheduler, and [`process_workload`](UnifiedMemoryManager::process_workload).

use std::sync::Arc;
use std::time::{Duration, Instant};

use vuma_core::{
    Arg, Backend, DeviceId, DeviceInfo, DynBuffer, DynDevice, Error, HostDevice, Kernel, Lease,
    MemoryConfig, MemoryManager, MemoryStats, Outcome, PlacementConfig, Residency, Result,
    UnifiedBuffer,
};
use vuma_sched::{Choice, Executor, JobHandle, SchedConfig, Scheduler, Tier, WorkloadProfile};

use crate::report::{BufferReport, StageTimes, WorkloadReport};
use crate::workload::{GpuWorkload, Tiling, WorkloadArg};

/// Whether a backend is compiled in and started, and why not.
#[derive(Debug, Clone)]
pub struct BackendStatus {
    /// The backend.
    pub backend: Backend,
    /// Whether its cargo feature is on.
    pub compiled: bool,
    /// Devices it opened.
    pub devices: Vec<DeviceInfo>,
    /// Why it is absent or failed to start, in words a user can act on.
    pub error: Option<String>,
}

impl BackendStatus {
    /// Whether the backend contributes devices.
    pub fn available(&self) -> bool {
        !self.devices.is_empty()
    }
}

/// Builds a [`UnifiedMemoryManager`].
#[derive(Debug)]
pub struct Builder {
    cuda: bool,
    vulkan: bool,
    host: bool,
    host_budget: Option<u64>,
    extra: Vec<Arc<dyn DynDevice>>,
    memory: MemoryConfig,
    sched: SchedConfig,
    budget_wait: Duration,
    hyperloop: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            cuda: true,
            vulkan: true,
            host: true,
            host_budget: None,
            extra: Vec::new(),
            memory: MemoryConfig::default(),
            sched: SchedConfig::default(),
            budget_wait: Duration::from_secs(5),
            hyperloop: true,
        }
    }
}

impl Builder {
    /// Whether to start the CUDA backend (if compiled in). Default: yes.
    pub fn cuda(mut self, on: bool) -> Self {
        self.cuda = on;
        self
    }
    /// Whether to start the Vulkan backend (if compiled in). Default: yes.
    pub fn vulkan(mut self, on: bool) -> Self {
        self.vulkan = on;
        self
    }
    /// Whether to include the host (CPU) device. Default: yes.
    pub fn host(mut self, on: bool) -> Self {
        self.host = on;
        self
    }
    /// Limits the host device's budget: the device memory it may take for copies of its
    /// own. Buffers it uses in place (its kernels run on their host copies: see
    /// `Device::can_alias_host`) take none, so the budget does not limit them.
    pub fn host_budget(mut self, bytes: u64) -> Self {
        self.host_budget = Some(bytes);
        self
    }
    /// Adds a device of any backend (for embedding and tests).
    pub fn device(mut self, dev: Arc<dyn DynDevice>) -> Self {
        self.extra.push(dev);
        self
    }
    /// Sets the placement policy's knobs.
    pub fn placement(mut self, p: PlacementConfig) -> Self {
        self.memory.placement = p;
        self
    }
    /// Sets the memory manager's configuration (budgets are by device index in the order
    /// [`UnifiedMemoryManager::devices`] lists them).
    pub fn memory(mut self, m: MemoryConfig) -> Self {
        self.memory = m;
        self
    }
    /// How long a workload waits for room when its device's budget is full of copies that
    /// other workloads hold (default 5 s; zero: fail at once with the transient
    /// [`Error::BudgetExceeded`]). Waiting holds no lease, so it cannot deadlock; a workload
    /// whose own buffers exceed the budget fails at once.
    pub fn budget_wait(mut self, d: Duration) -> Self {
        self.budget_wait = d;
        self
    }
    /// Whether the memory manager's migrations go through PCIe Hyperloop (zero pages not
    /// sent; write-backs encoded on the GPU and kept compressed on the host) when the
    /// `hyperloop` feature is compiled in and no other [`MemoryConfig::transfer`] is set.
    /// Default: yes, unless the environment sets `VUMA_HYPERLOOP=0` (or `off`).
    pub fn hyperloop(mut self, on: bool) -> Self {
        self.hyperloop = on;
        self
    }
    /// Sets the scheduler's configuration.
    pub fn scheduler(mut self, s: SchedConfig) -> Self {
        self.sched = s;
        self
    }

    /// Starts the backends. Backends that fail to start are reported in
    /// [`UnifiedMemoryManager::backends`] and skipped; with no device at all (host device
    /// disabled and no GPU) this is an [`Error::Unavailable`].
    pub fn build(self) -> Result<UnifiedMemoryManager> {
        let mut devices: Vec<Arc<dyn DynDevice>> = Vec::new();
        let mut backends = Vec::new();
        backends.push(start_cuda(self.cuda, &mut devices));
        backends.push(start_vulkan(self.vulkan, &mut devices));
        let host_status = if self.host {
            let h = match self.host_budget {
                Some(b) => HostDevice::with_budget("host", b),
                None => HostDevice::new(),
            };
            let info = vuma_core::Device::info(&h).clone();
            devices.push(Arc::new(h));
            BackendStatus {
                backend: Backend::Host,
                compiled: true,
                devices: vec![info],
                error: None,
            }
        } else {
            BackendStatus {
                backend: Backend::Host,
                compiled: true,
                devices: Vec::new(),
                error: Some("disabled by the builder".into()),
            }
        };
        backends.push(host_status);
        devices.extend(self.extra);
        if devices.is_empty() {
            return Err(Error::Unavailable {
                backend: Backend::Host,
                reason: "no device: every backend is absent and the host device is disabled".into(),
            });
        }
        let infos: Vec<DeviceInfo> = devices.iter().map(|d| d.info().clone()).collect();
        let scheduler = Arc::new(Scheduler::try_new(infos, self.sched)?);
        let mut memory_config = self.memory;
        let env_off = std::env::var("VUMA_HYPERLOOP")
            .is_ok_and(|v| matches!(v.trim(), "0" | "off" | "false" | "no"));
        if memory_config.transfer.is_none() && self.hyperloop && !env_off {
            memory_config.transfer = default_transfer();
        }
        let placement = memory_config.placement.clone();
        let transfer_path = memory_config.transfer.as_ref().map(|t| t.name());
        let memory = MemoryManager::new(devices.clone(), memory_config);
        Ok(UnifiedMemoryManager {
            placement,
            transfer_path,
            devices,
            backends,
            memory,
            scheduler,
            budget_wait: self.budget_wait,
        })
    }
}

#[cfg(feature = "hyperloop")]
fn default_transfer() -> Option<Arc<dyn vuma_core::TransferPath>> {
    Some(Arc::new(vuma_hyperloop::HyperloopPath::default()))
}

#[cfg(not(feature = "hyperloop"))]
fn default_transfer() -> Option<Arc<dyn vuma_core::TransferPath>> {
    None
}

#[cfg(feature = "cuda")]
fn start_cuda(on: bool, devices: &mut Vec<Arc<dyn DynDevice>>) -> BackendStatus {
    let mut st = BackendStatus {
        backend: Backend::Cuda,
        compiled: true,
        devices: Vec::new(),
        error: None,
    };
    if !on {
        st.error = Some("disabled by the builder".into());
        return st;
    }
    match vuma_cuda::devices() {
        Ok(list) if list.is_empty() => st.error = Some("the driver reports no CUDA device".into()),
        Ok(list) => {
            for d in list {
                st.devices.push(vuma_core::Device::info(&d).clone());
                devices.push(Arc::new(d));
            }
        }
        Err(e) => st.error = Some(e.to_string()),
    }
    st
}

#[cfg(not(feature = "cuda"))]
fn start_cuda(_on: bool, _devices: &mut Vec<Arc<dyn DynDevice>>) -> BackendStatus {
    BackendStatus {
        backend: Backend::Cuda,
        compiled: false,
        devices: Vec::new(),
        error: Some("not compiled in (enable the `cuda` feature)".into()),
    }
}

#[cfg(feature = "vulkan")]
fn start_vulkan(on: bool, devices: &mut Vec<Arc<dyn DynDevice>>) -> BackendStatus {
    let mut st = BackendStatus {
        backend: Backend::Vulkan,
        compiled: true,
        devices: Vec::new(),
        error: None,
    };
    if !on {
        st.error = Some("disabled by the builder".into());
        return st;
    }
    match vuma_vulkan::devices() {
        Ok(list) if list.is_empty() => st.error = Some("no Vulkan device".into()),
        Ok(list) => {
            for d in list {
                st.devices.push(vuma_core::Device::info(&d).clone());
                devices.push(Arc::new(d));
            }
        }
        Err(e) => st.error = Some(e.to_string()),
    }
    st
}

#[cfg(not(feature = "vulkan"))]
fn start_vulkan(_on: bool, _devices: &mut Vec<Arc<dyn DynDevice>>) -> BackendStatus {
    BackendStatus {
        backend: Backend::Vulkan,
        compiled: false,
        devices: Vec::new(),
        error: Some("not compiled in (enable the `vulkan` feature)".into()),
    }
}

/// VUMA's front door: devices of every backend, unified buffers over all of them, and the
/// Tidal Wave scheduler deciding where each [`GpuWorkload`] runs.
pub struct UnifiedMemoryManager {
    devices: Vec<Arc<dyn DynDevice>>,
    backends: Vec<BackendStatus>,
    memory: MemoryManager,
    scheduler: Arc<Scheduler>,
    budget_wait: Duration,
    /// The placement policy's knobs (what the memory manager was built with; plans use them).
    placement: PlacementConfig,
    /// The memory manager's transfer path, by name.
    transfer_path: Option<&'static str>,
}

impl std::fmt::Debug for UnifiedMemoryManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnifiedMemoryManager")
            .field("devices", &self.devices.len())
            .field("backends", &self.backends)
            .finish()
    }
}

impl UnifiedMemoryManager {
    /// Every compiled-in backend that starts, plus the host device.
    pub fn new() -> Result<Self> {
        Builder::default().build()
    }

    /// A builder to choose backends, budgets and policies.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// What each backend contributed, or why it did not.
    pub fn backends(&self) -> &[BackendStatus] {
        &self.backends
    }

    /// The devices, in the memory manager's index order.
    pub fn devices(&self) -> &[Arc<dyn DynDevice>] {
        &self.devices
    }

    /// The memory manager (unified buffers, residency, statistics).
    pub fn memory(&self) -> &MemoryManager {
        &self.memory
    }

    /// The scheduler.
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// The placement policy's knobs the memory manager uses.
    pub fn placement_config(&self) -> &PlacementConfig {
        &self.placement
    }

    /// The name of the memory manager's transfer path (`"hyperloop"`), if one is set.
    pub fn transfer_path_name(&self) -> Option<&'static str> {
        self.transfer_path
    }

    /// Memory statistics.
    pub fn stats(&self) -> MemoryStats {
        self.memory.stats()
    }

    /// A new unified buffer of `size` bytes (zeros; no memory taken until used).
    pub fn create_buffer(&self, size: u64) -> Result<Arc<UnifiedBuffer>> {
        self.memory.create(size).map(Arc::new)
    }

    /// A new unified buffer holding a copy of `data`.
    pub fn create_buffer_from(&self, data: &[u8]) -> Result<Arc<UnifiedBuffer>> {
        self.memory.create_from(data).map(Arc::new)
    }

    /// A new unified buffer holding a copy of `data`, resident on `device`: what
    /// [`create_buffer_from`](Self::create_buffer_from) then [`prefetch`](Self::prefetch)
    /// and waiting give, in about the time of the slower of the two (the host copy is
    /// filled while what is already filled is uploaded: see
    /// [`MemoryManager::create_from_on`](vuma_core::MemoryManager::create_from_on)).
    ///
    /// Returns the buffer and the upload's outcome: what it did (placement, evictions, the
    /// transfer) or why the buffer has no copy on `device` (it did not fit, the device was
    /// lost, the upload failed); the buffer holds `data` either way. On a device that uses
    /// host copies in place (the host device) nothing is sent: the outcome says the buffer
    /// is used in place ([`Residency::in_place`]). An unknown device is an error, as are
    /// an empty `data` and a host out of memory.
    pub fn create_buffer_from_on(
        &self,
        data: &[u8],
        device: DeviceId,
    ) -> Result<(Arc<UnifiedBuffer>, Result<Residency>)> {
        let index = self.memory.device_index(device).ok_or_else(|| {
            Error::invalid(format!("create_buffer_from_on: no device {device} here"))
        })?;
        let (buf, upload) = self.memory.create_from_on(data, index)?;
        Ok((Arc::new(buf), upload))
    }

    /// Writes from the host.
    pub fn write(&self, buf: &UnifiedBuffer, offset: u64, data: &[u8]) -> Result<()> {
        self.memory.write(buf, offset, data)
    }

    /// Reads to the host (bringing data back from a device if needed).
    pub fn read(&self, buf: &UnifiedBuffer, offset: u64, out: &mut [u8]) -> Result<()> {
        self.memory.read(buf, offset, out)
    }

    /// The whole buffer on the host.
    pub fn to_vec(&self, buf: &UnifiedBuffer) -> Result<Vec<u8>> {
        self.memory.to_vec(buf)
    }

    /// The scheduler's view of a workload (a metadata-only workload may run on every
    /// backend).
    pub fn profile(&self, w: &GpuWorkload) -> WorkloadProfile {
        let p = WorkloadProfile::new(w.kernel_name().to_string(), w.kind.clone())
            .with_complexity(w.complexity_score)
            .with_memory(w.working_set())
            .with_priority(w.priority);
        match &w.kernel {
            Some(k) => p.with_backends(
                k.variants()
                    .iter()
                    .map(|v| v.backend())
                    .collect::<Vec<Backend>>(),
            ),
            None => p,
        }
    }

    /// Bytes of `w`'s read buffers that device `dev` lacks (the scheduler's residency
    /// facts).
    fn missing_bytes(&self, w: &GpuWorkload, dev: DeviceId) -> u64 {
        let Some(i) = self.memory.device_index(dev) else {
            return u64::MAX;
        };
        w.args
            .iter()
            .map(|a| match a {
                WorkloadArg::Buffer { buffer, access, .. } if access.reads() => {
                    self.memory.missing_bytes(buffer, i)
                }
                _ => 0,
            })
            .fold(0u64, u64::saturating_add)
    }

    /// Runs one workload end to end: classify, choose a device, place and make every
    /// buffer resident, run, record coherence, and report every decision.
    ///
    /// A metadata-only workload ([`GpuWorkload::metadata`]: no kernel) is planned, not
    /// run: see [`plan`](Self::plan); the report's [`plan`](WorkloadReport::plan) says what
    /// would move and how.
    ///
    /// A failure leaves every buffer's last valid copy intact.
    pub fn process_workload(&self, w: &GpuWorkload) -> Result<WorkloadReport> {
        if w.is_metadata_only() {
            return self.plan(w);
        }
        let _span =
            tracing::info_span!("process_workload", id = %w.id, kernel = w.kernel_name()).entered();
        let t0 = Instant::now();
        let profile = self.profile(w);
        let classification = self.scheduler.classify(&profile)?;
        let residency = |dev: DeviceId| self.missing_bytes(w, dev);
        let choice = self.scheduler.choose(&profile, &residency)?;
        let t_sched = t0.elapsed();
        self.scheduler
            .queue_started(choice.device, w.priority, choice.est_run_s);
        let r = self.execute(w, classification.tier, &choice, t_sched);
        self.scheduler
            .queue_finished(choice.device, w.priority, choice.est_run_s);
        let report = r?;
        self.scheduler.record_run(
            choice.device,
            w.kernel_name(),
            profile.effective_work(),
            report.times.run,
        );
        Ok(report)
    }

    /// An executor that runs workloads submitted with [`submit`](Self::submit)
    /// asynchronously, on per-device priority queues (must be called inside a tokio
    /// runtime).
    pub fn executor(&self) -> Result<Executor> {
        Executor::new(self.scheduler.clone())
    }

    /// Submits `w` to `executor`: the device is chosen now (with residency facts), the
    /// workload waits in that device's priority queue (this future waits while the queue is
    /// full), and the returned handle resolves to its report. A failing workload fails
    /// alone; [`JobHandle::cancel`] removes it before it starts.
    pub async fn submit(
        self: &Arc<Self>,
        executor: &Executor,
        w: GpuWorkload,
    ) -> Result<JobHandle<WorkloadReport>> {
        let profile = self.profile(&w);
        let classified = self.scheduler.classify(&profile)?.tier;
        let this = Arc::clone(self);
        let job_profile = profile.clone();
        let residency = {
            let this = Arc::clone(self);
            let w = w.clone();
            move |dev: DeviceId| this.missing_bytes(&w, dev)
        };
        let job = move |dev: DeviceId| -> Result<WorkloadReport> {
            if w.is_metadata_only() {
                return this.plan(&w);
            }
            let _span =
                tracing::info_span!("process_workload", id = %w.id, kernel = w.kernel_name())
                    .entered();
            let t0 = Instant::now();
            let choice = this
                .scheduler
                .choose_on(dev, &job_profile, &|d: DeviceId| this.missing_bytes(&w, d))?;
            this.execute(&w, classified, &choice, t0.elapsed())
        };
        executor
            .submit_with(profile, &residency, job)
            .await
            .map_err(|e| e.error.into())
    }

    /// Acquires every buffer argument of `w` on device `index`; on failure, releases what
    /// it took as [`Outcome::NotRun`] and returns the error.
    fn acquire_all(&self, w: &GpuWorkload, index: usize) -> Result<Vec<Lease>> {
        let mut leases: Vec<Lease> = Vec::new();
        for a in &w.args {
            if let WorkloadArg::Buffer {
                buffer,
                access,
                reuse,
            } = a
            {
                match self.memory.acquire(buffer, index, *access, *reuse) {
                    Ok(l) => leases.push(l),
                    Err(e) => {
                        // Nothing ran: the leases end as `NotRun` (no copy changes; a lease
                        // with write access must not become the valid copy).
                        for l in leases {
                            self.memory.release(l, Outcome::NotRun);
                        }
                        return Err(e);
                    }
                }
            }
        }
        Ok(leases)
    }

    /// Places, runs and records `w` on the chosen device (no scheduler bookkeeping).
    fn execute(
        &self,
        w: &GpuWorkload,
        classified: Tier,
        choice: &Choice,
        t_sched: Duration,
    ) -> Result<WorkloadReport> {
        let index = self.memory.device_index(choice.device).ok_or_else(|| {
            Error::invalid("internal: the scheduler chose a device the memory manager lacks")
        })?;
        let device = self.devices[index].clone();
        let kernel = w.kernel.as_ref().ok_or_else(|| {
            Error::invalid(format!(
                "workload `{}` has no kernel: it can be planned, not run",
                w.id
            ))
        })?;

        // Place and make resident; wait (holding nothing) while the device's budget is
        // full of copies that other workloads hold, until a lease is released, an upload
        // finishes or a buffer is dropped.
        let t1 = Instant::now();
        let deadline = t1 + self.budget_wait;
        let leases = loop {
            let seen = self.memory.room_changes();
            match self.acquire_all(w, index) {
                Ok(l) => break l,
                Err(Error::BudgetExceeded { budget, .. })
                    if w.working_set() <= budget && Instant::now() < deadline =>
                {
                    tracing::debug!(workload = %w.id, "device budget full: waiting for leases to be released");
                    self.memory.wait_for_room(seen, deadline);
                }
                Err(e) => {
                    if matches!(e, Error::DeviceLost { .. }) {
                        let _ = self.scheduler.set_offline(choice.device, true);
                    }
                    return Err(e);
                }
            }
        };
        let t_place = t1.elapsed();

        // Run (tiled when the workload allows it and its working set exceeds the L2).
        let t2 = Instant::now();
        let plan = plan_launches(w, &leases, device.info().l2_bytes);
        let tiles = plan.as_ref().map_or(0, |t| t.len() as u32);
        let mut launched = 0usize;
        let run = match plan {
            Err(e) => Err(e),
            Ok(tiles) => {
                let _run = tracing::debug_span!("launch", device = %device.info().name, tiles = tiles.len(), passes = w.passes).entered();
                run_tiles(&*device, kernel, w, &leases, &tiles, &mut launched)
                    .and_then(|()| device.synchronize())
            }
        };
        let t_run = t2.elapsed();

        // Record.
        let t3 = Instant::now();
        let outcome = match &run {
            Ok(()) => Outcome::Completed,
            // Refused before any launch (arguments, compilation): no copy was touched.
            Err(_) if launched == 0 => Outcome::NotRun,
            Err(_) => Outcome::Failed,
        };
        let buffers: Vec<BufferReport> = leases
            .iter()
            .map(|l| BufferReport {
                buffer: l.buffer(),
                access: l.access(),
                hit: l.residency.hit,
                size: l.len(),
                placement: l.residency.placement,
                in_place: l.residency.in_place,
                placement_reason: l.residency.reason.clone(),
                allocated: l.residency.allocated,
                bytes_moved: l.residency.bytes_moved,
                source: l.residency.source,
                evicted: l.residency.evicted.clone(),
                transfers: l.residency.transfers.clone(),
            })
            .collect();
        for l in leases {
            self.memory.release(l, outcome);
        }
        if let Err(Error::DeviceLost { reason, .. }) = &run {
            // Never used again: its buffers are recovered from other copies (or reported
            // lost), and the scheduler stops choosing it.
            let lost = self.memory.device_lost(index, reason);
            let _ = self.scheduler.set_offline(choice.device, true);
            tracing::error!(workload = %w.id, device = %device.info().name, buffers_lost = lost.len(), "device lost while running a workload");
        }
        run?;
        let t_record = t3.elapsed();
        let bytes_moved = buffers.iter().map(|b| b.bytes_moved).sum();
        // A device that shares host memory has no link: its transfers cross none (as the
        // memory statistics count them).
        let shared_memory = device.info().unified_memory;
        let link_bytes = if shared_memory {
            0
        } else {
            buffers
                .iter()
                .flat_map(|b| &b.transfers)
                .map(|t| t.link_bytes)
                .sum()
        };
        let bytes_saved = buffers
            .iter()
            .filter(|b| b.hit && b.access.reads())
            .map(|b| b.size)
            .sum::<u64>()
            + buffers
                .iter()
                .flat_map(|b| &b.transfers)
                .map(|t| t.bytes_saved())
                .sum::<u64>();
        Ok(WorkloadReport {
            workload: w.id.clone(),
            kind: w.kind.to_string(),
            classified,
            tier: choice.tier,
            crossed_tier: choice.crossed_tier,
            device: device.info().name.clone(),
            backend: device.info().backend,
            reason: choice.reason.clone(),
            estimates: (choice.est_queue_s, choice.est_transfer_s, choice.est_run_s),
            buffers,
            bytes_moved,
            link_bytes,
            shared_memory,
            bytes_saved,
            tiles,
            passes: w.passes,
            times: StageTimes {
                schedule: t_sched,
                place: t_place,
                run: t_run,
                record: t_record,
            },
            plan: None,
        })
    }
}

/// One launch range: `None` is the whole of every buffer, `Some(r)` the element-wise tile
/// `r` (bytes) of every buffer.
type TileRange = Option<std::ops::Range<u64>>;

/// The tiles a workload runs over on a device with `l2_bytes` of L2.
fn plan_launches(w: &GpuWorkload, leases: &[Lease], l2_bytes: u64) -> Result<Vec<TileRange>> {
    if w.passes == 0 {
        return Err(Error::invalid(format!(
            "workload `{}`: passes must be at least 1",
            w.id
        )));
    }
    let Tiling::Elementwise { elem_bytes } = w.tiling else {
        return Ok(vec![None]);
    };
    if elem_bytes == 0 {
        return Err(Error::invalid(format!(
            "workload `{}`: tiled with zero-byte elements",
            w.id
        )));
    }
    let Some(len) = leases.first().map(Lease::len) else {
        return Ok(vec![None]);
    };
    if leases.iter().any(|l| l.len() != len) {
        return Err(Error::invalid(format!(
            "workload `{}`: element-wise tiling needs buffers of one length",
            w.id
        )));
    }
    if !matches!(
        w.args.iter().find_map(|a| match a {
            WorkloadArg::Scalar(s) => Some(*s),
            WorkloadArg::Buffer { .. } => None,
        }),
        Some(vuma_core::Scalar::U32(_))
    ) {
        return Err(Error::invalid(format!(
            "workload `{}`: element-wise tiling needs the element count (u32) as first scalar",
            w.id
        )));
    }
    // Tiles only pay when passes re-read data and the working set exceeds the L2.
    let working_set = len.saturating_mul(leases.len() as u64);
    if w.passes < 2 || l2_bytes == 0 || working_set <= l2_bytes / 2 {
        return Ok(vec![None]);
    }
    // Split the L2 budget across the buffers; keep tiles aligned for every backend.
    let align = u64::from(elem_bytes).max(256).next_power_of_two();
    let per_buffer_l2 = l2_bytes / leases.len() as u64;
    Ok(vuma_sched::plan_tiles(len, per_buffer_l2, align)
        .into_iter()
        .map(Some)
        .collect())
}

/// Launches `w.passes` passes over each tile in turn, counting the launches that were
/// issued in `launched`.
fn run_tiles(
    device: &dyn DynDevice,
    kernel: &Kernel,
    w: &GpuWorkload,
    leases: &[Lease],
    tiles: &[TileRange],
    launched: &mut usize,
) -> Result<()> {
    let elem_bytes = match w.tiling {
        Tiling::Elementwise { elem_bytes } => u64::from(elem_bytes.max(1)),
        Tiling::Off => 1,
    };
    for tile in tiles {
        let mut li = leases.iter();
        let mut first_scalar = true;
        let args: Vec<Arg<'_, dyn DynBuffer>> = w
            .args
            .iter()
            .map(|a| match (a, tile) {
                (WorkloadArg::Buffer { .. }, None) => {
                    li.next().expect("one lease per buffer").arg()
                }
                (WorkloadArg::Buffer { access, .. }, Some(r)) => {
                    let l = li.next().expect("one lease per buffer");
                    Arg::Buffer {
                        buffer: l.block(),
                        offset: l.offset() + r.start,
                        len: r.end - r.start,
                        access: *access,
                    }
                }
                (WorkloadArg::Scalar(_), Some(r)) if first_scalar => {
                    first_scalar = false;
                    Arg::Scalar(vuma_core::Scalar::U32(
                        ((r.end - r.start) / elem_bytes) as u32,
                    ))
                }
                (WorkloadArg::Scalar(s), _) => Arg::Scalar(*s),
            })
            .collect();
        let mut cfg = w.launch;
        if let Some(r) = tile {
            let blocks = ((r.end - r.start) / elem_bytes).div_ceil(u64::from(cfg.block[0].max(1)));
            cfg.grid[0] = cfg.grid[0].min(blocks.max(1) as u32);
        }
        for _ in 0..w.passes {
            device.launch(kernel, &cfg, &args)?;
            *launched += 1;
        }
    }
    Ok(())
}
