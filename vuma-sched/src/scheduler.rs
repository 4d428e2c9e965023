//! The [`Scheduler`]: tiers, the cost model, run-time history, health and queue accounting.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use vuma_core::{DeviceId, DeviceInfo, DeviceKind, Error, Result};

use crate::config::SchedConfig;
use crate::dedup::{backend_rank, same_physical_device};
use crate::policy::Classification;
use crate::workload::{DeviceHealth, Priority, Residency, Tier, WorkloadProfile};

/// The device chosen for one workload, with the estimates that chose it.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// The device.
    pub device: DeviceId,
    /// The chosen device's tier.
    pub tier: Tier,
    /// The tier the workload was classified into.
    pub classified: Tier,
    /// Whether the chosen device is of another tier than the classified one.
    pub crossed_tier: bool,
    /// Why this device, in words (classification, then the decision).
    pub reason: String,
    /// Estimated wait behind the device's queued work of equal or higher priority, seconds.
    pub est_queue_s: f64,
    /// Estimated time to transfer the missing bytes to the device, seconds.
    pub est_transfer_s: f64,
    /// Estimated run time (history if known, else the prior), seconds.
    pub est_run_s: f64,
    /// Estimated cost of waking an idle high-tier device for low-tier work, seconds.
    pub est_wake_s: f64,
    /// Health penalty factor (1: healthy; hot, busy or power-capped devices above 1).
    pub penalty: f64,
    /// Every considered device with its effective finish time in seconds (`(queue + wake +
    /// transfer + run) × penalty`, what the decision compares), best first.
    pub candidates: Vec<(DeviceId, f64)>,
}

impl Choice {
    /// The chosen device's estimated finish time (penalty included).
    pub fn finish_s(&self) -> f64 {
        self.candidates
            .iter()
            .find(|(d, _)| *d == self.device)
            .map_or(f64::NAN, |(_, f)| *f)
    }
}

/// Running average of one kernel's cost on one device.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ewma {
    secs_per_unit: f64,
    /// Runs averaged into `secs_per_unit` (0 while only warm-up runs were seen).
    samples: u64,
    /// Runs recorded, warm-up runs included.
    seen: u64,
}

impl Ewma {
    /// The learned average, once a run past the warm-up was recorded.
    fn learned(self) -> Option<Ewma> {
        (self.samples > 0).then_some(self)
    }
}

#[derive(Debug)]
struct Slot {
    info: DeviceInfo,
    tier: Tier,
    group: usize,
    rank: u8,
    link_bps: f64,
    /// Taken out of service (lost): never chosen again.
    offline: std::sync::atomic::AtomicBool,
}

impl Slot {
    fn is_offline(&self) -> bool {
        self.offline.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[derive(Debug)]
struct Group {
    /// Nanoseconds of estimated work queued or running, per priority.
    backlog_ns: [AtomicU64; 4],
    health: RwLock<Option<DeviceHealth>>,
}

/// One device's estimate for one workload.
#[derive(Debug, Clone, Copy)]
struct Est {
    slot: usize,
    queue: f64,
    wake: f64,
    transfer: f64,
    run: f64,
    penalty: f64,
    finish: f64,
    from_history: bool,
}

/// The Tidal Wave scheduler: classifies workloads into tiers and picks, among eligible
/// devices, the one with the minimal estimated finish time (queue wait + transfer + run),
/// staying in the classified tier unless a device of the other tier beats it by the
/// configured margin. Thread-safe: share it in an `Arc`.
#[derive(Debug)]
pub struct Scheduler {
    config: SchedConfig,
    slots: Vec<Slot>,
    groups: Vec<Group>,
    /// Per kernel name, per slot.
    history: RwLock<HashMap<String, Vec<Option<Ewma>>>>,
}

fn ns(s: f64) -> u64 {
    if s.is_finite() && s > 0.0 {
        (s * 1e9).min(u64::MAX as f64) as u64
    } else {
        0
    }
}

impl Scheduler {
    /// A scheduler over `devices`. An invalid `config` is replaced by the defaults (with a
    /// warning); use [`Scheduler::try_new`] to get the error instead. A device listed twice
    /// (same [`DeviceId`]) is kept once.
    pub fn new(devices: Vec<DeviceInfo>, config: SchedConfig) -> Self {
        match config.validate() {
            Ok(()) => Self::build(devices, config),
            Err(e) => {
                tracing::warn!("invalid scheduler configuration ({e}); using the defaults");
                Self::build(devices, SchedConfig::default())
            }
        }
    }

    /// A scheduler over `devices`, or [`Error::InvalidArgument`] for an invalid `config`.
    pub fn try_new(devices: Vec<DeviceInfo>, config: SchedConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self::build(devices, config))
    }

    fn build(devices: Vec<DeviceInfo>, config: SchedConfig) -> Self {
        let mut slots: Vec<Slot> = Vec::with_capacity(devices.len());
        let mut groups: Vec<Group> = Vec::new();
        for info in devices {
            if slots.iter().any(|s| s.info.id == info.id) {
                tracing::warn!("device {} listed twice; keeping the first", info.id);
                continue;
            }
            let group = match slots.iter().find(|s| same_physical_device(&s.info, &info)) {
                Some(s) => s.group,
                None => {
                    groups.push(Group {
                        backlog_ns: Default::default(),
                        health: RwLock::new(None),
                    });
                    groups.len() - 1
                }
            };
            let tier = config
                .tier_overrides
                .get(&info.id)
                .copied()
                .unwrap_or(match info.kind {
                    DeviceKind::Discrete => Tier::High,
                    _ => Tier::Low,
                });
            let link_bps = info
                .host_link
                .as_ref()
                .map(|l| l.h2d_bytes_per_s)
                .filter(|b| b.is_finite() && *b > 0.0)
                .unwrap_or(config.default_link_bytes_per_s);
            slots.push(Slot {
                rank: backend_rank(info.backend),
                tier,
                group,
                link_bps,
                info,
                offline: std::sync::atomic::AtomicBool::new(false),
            });
        }
        Scheduler {
            config,
            slots,
            groups,
            history: RwLock::new(HashMap::new()),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &SchedConfig {
        &self.config
    }

    /// The devices, in the order given.
    pub fn devices(&self) -> impl ExactSizeIterator<Item = &DeviceInfo> + '_ {
        self.slots.iter().map(|s| &s.info)
    }

    /// One device's description.
    pub fn device(&self, id: DeviceId) -> Option<&DeviceInfo> {
        self.slot(id).map(|i| &self.slots[i].info)
    }

    fn slot(&self, id: DeviceId) -> Option<usize> {
        self.slots.iter().position(|s| s.info.id == id)
    }

    /// The tier of a device (an override from the configuration, else discrete → high and
    /// everything else → low); `None` for an unknown device.
    pub fn tier_of(&self, dev: DeviceId) -> Option<Tier> {
        self.slot(dev).map(|i| self.slots[i].tier)
    }

    /// The devices that are the same physical device as `dev` (itself included).
    pub fn physical_views(&self, dev: DeviceId) -> Vec<DeviceId> {
        match self.slot(dev) {
            Some(i) => self
                .slots
                .iter()
                .filter(|s| s.group == self.slots[i].group)
                .map(|s| s.info.id)
                .collect(),
            None => Vec::new(),
        }
    }

    /// The tier of a workload, by the configured policy. Malformed profiles (NaN or out of
    /// range complexity, bad work units, empty name) are an [`Error::InvalidArgument`].
    pub fn classify(&self, w: &WorkloadProfile) -> Result<Classification> {
        w.validate()?;
        Ok(self.config.policy.classify(w))
    }

    /// Records one finished run of kernel `name` on `device`: `work_units` of work in
    /// `elapsed`. It updates the per-(kernel, device) average (an exponentially weighted
    /// moving average of seconds per work unit, as StarPU's dmda history); the first
    /// [`SchedConfig::warmup_runs`](crate::SchedConfig) runs of each pair are counted but not
    /// learned from (they pay for compilation and loading). Bad input is logged and ignored; [`Scheduler::try_record_run`] returns it as an error.
    pub fn record_run(&self, device: DeviceId, name: &str, work_units: f64, elapsed: Duration) {
        if let Err(e) = self.try_record_run(device, name, work_units, elapsed) {
            tracing::warn!("record_run ignored: {e}");
        }
    }

    /// [`Scheduler::record_run`], with [`Error::InvalidArgument`] for an unknown device, an
    /// empty name or work units that are not finite and positive.
    pub fn try_record_run(
        &self,
        device: DeviceId,
        name: &str,
        work_units: f64,
        elapsed: Duration,
    ) -> Result<()> {
        let slot = self
            .slot(device)
            .ok_or_else(|| Error::invalid(format!("unknown device {device}")))?;
        if name.is_empty() {
            return Err(Error::invalid("kernel name is empty"));
        }
        if !(work_units.is_finite() && work_units > 0.0) {
            return Err(Error::invalid(format!(
                "work_units {work_units} must be finite and positive"
            )));
        }
        let secs = elapsed.as_secs_f64().max(1e-9);
        let x = secs / work_units;
        let alpha = self.config.history_alpha;
        let mut h = self.history.write().unwrap_or_else(|p| p.into_inner());
        let row = match h.get_mut(name) {
            Some(r) => r,
            None => h
                .entry(name.to_owned())
                .or_insert_with(|| vec![None; self.slots.len()]),
        };
        let warmup = u64::from(self.config.warmup_runs);
        let e = row[slot].unwrap_or(Ewma {
            secs_per_unit: x,
            samples: 0,
            seen: 0,
        });
        row[slot] = Some(if e.seen < warmup {
            // A warm-up run: counted, not learned from.
            Ewma {
                seen: e.seen + 1,
                ..e
            }
        } else if e.samples == 0 {
            Ewma {
                secs_per_unit: x,
                samples: 1,
                seen: e.seen + 1,
            }
        } else {
            Ewma {
                secs_per_unit: alpha * x + (1.0 - alpha) * e.secs_per_unit,
                samples: e.samples + 1,
                seen: e.seen + 1,
            }
        });
        Ok(())
    }

    /// The learned rate of kernel `name` on `device` in work units per second, and how many
    /// runs it rests on; `None` before the first recorded run.
    pub fn history(&self, device: DeviceId, name: &str) -> Option<(f64, u64)> {
        let slot = self.slot(device)?;
        let h = self.history.read().unwrap_or_else(|p| p.into_inner());
        h.get(name)?[slot]
            .and_then(Ewma::learned)
            .map(|e| (1.0 / e.secs_per_unit, e.samples))
    }

    /// A copy of one kernel's history row, so that no lock is held while the caller's
    /// [`Residency`] runs (it may call back into the scheduler).
    fn history_row(&self, name: &str) -> Option<Vec<Option<Ewma>>> {
        let h = self.history.read().unwrap_or_else(|p| p.into_inner());
        h.get(name).cloned()
    }

    /// Forgets all recorded runs.
    pub fn clear_history(&self) {
        self.history
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Sets the health figures of a device (and of every other view of the same physical
    /// device). Bad input is logged and ignored; [`Scheduler::try_set_health`] returns it.
    pub fn set_health(&self, device: DeviceId, health: DeviceHealth) {
        if let Err(e) = self.try_set_health(device, health) {
            tracing::warn!("set_health ignored: {e}");
        }
    }

    /// [`Scheduler::set_health`], with [`Error::InvalidArgument`] for an unknown device or
    /// malformed figures.
    pub fn try_set_health(&self, device: DeviceId, health: DeviceHealth) -> Result<()> {
        let slot = self
            .slot(device)
            .ok_or_else(|| Error::invalid(format!("unknown device {device}")))?;
        health.validate()?;
        *self.groups[self.slots[slot].group]
            .health
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(health);
        Ok(())
    }

    /// The last health figures of a device.
    pub fn health(&self, device: DeviceId) -> Option<DeviceHealth> {
        let slot = self.slot(device)?;
        *self.groups[self.slots[slot].group]
            .health
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Queue accounting: a job of `priority`, estimated to run `est_s` seconds, was queued
    /// on `device` (it joins the device's backlog until [`Scheduler::queue_finished`]). The
    /// [`Executor`](crate::Executor) calls both; callers running work themselves should too.
    /// Unknown devices and non-finite estimates are ignored.
    pub fn queue_started(&self, device: DeviceId, priority: Priority, est_s: f64) {
        if let Some(slot) = self.slot(device) {
            self.groups[self.slots[slot].group].backlog_ns[priority.index()]
                .fetch_add(ns(est_s), Ordering::Relaxed);
        }
    }

    /// Queue accounting: the job announced with [`Scheduler::queue_started`] (same
    /// arguments) finished, failed or was cancelled.
    pub fn queue_finished(&self, device: DeviceId, priority: Priority, est_s: f64) {
        if let Some(slot) = self.slot(device) {
            let d = ns(est_s);
            let cell = &self.groups[self.slots[slot].group].backlog_ns[priority.index()];
            // Saturating: a caller's unmatched `finished` must not wrap the backlog around.
            let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(d))
            });
        }
    }

    /// Estimated seconds of work queued or running on `device` (all priorities).
    pub fn backlog_s(&self, device: DeviceId) -> Option<f64> {
        let slot = self.slot(device)?;
        Some(self.queue_wait(self.slots[slot].group, Priority::Low))
    }

    fn queue_wait(&self, group: usize, p: Priority) -> f64 {
        let b = &self.groups[group].backlog_ns;
        let total: u64 = (p.index()..4)
            .map(|i| b[i].load(Ordering::Relaxed))
            .fold(0u64, u64::saturating_add);
        total as f64 * 1e-9
    }

    /// The prior run time of `w` on slot `i`: launch overhead + work / rate.
    fn prior_run_s(&self, i: usize, w: &WorkloadProfile, work: f64) -> f64 {
        let s = &self.slots[i];
        let p = &self.config.prior;
        let mut rate = f64::from(s.info.compute_units.max(1)) * p.per_unit(s.info.kind);
        if s.info.kind == DeviceKind::Cpu && w.kind.gpu_friendly() {
            rate *= p.cpu_gpu_kind_factor;
        }
        p.launch_s(s.info.kind) + work / rate
    }

    fn health_penalty(&self, h: Option<&DeviceHealth>) -> f64 {
        let Some(h) = h else { return 1.0 };
        let c = &self.config;
        let mut f = 1.0;
        if let Some(t) = h.temperature_c {
            if t > c.hot_threshold_c {
                f *= 1.0 + c.thermal_weight * (1.0 + f64::from(t - c.hot_threshold_c) / 10.0);
            }
        }
        if let Some(u) = h.utilization {
            f *= 1.0 + c.busy_weight * f64::from(u);
        }
        if let (Some(p), Some(l)) = (h.power_w, h.power_limit_w) {
            if l > 0.0 && p >= 0.9 * l {
                f *= 1.0 + c.power_weight;
            }
        }
        f
    }

    fn estimate(
        &self,
        i: usize,
        w: &WorkloadProfile,
        work: f64,
        classified: Tier,
        residency: &dyn Residency,
        hist: Option<&[Option<Ewma>]>,
    ) -> Est {
        let s = &self.slots[i];
        let c = &self.config;
        let queue = self.queue_wait(s.group, w.priority);
        let transfer = if s.info.unified_memory {
            0.0
        } else {
            let missing = match residency.missing_bytes(s.info.id) {
                u64::MAX => w.memory_requirement,
                m => m,
            };
            if missing == 0 {
                0.0
            } else {
                c.transfer_latency_s + missing as f64 / s.link_bps
            }
        };
        let learned = hist.and_then(|r| r[i]).and_then(Ewma::learned);
        let run = match learned {
            Some(e) => work * e.secs_per_unit,
            None => self.prior_run_s(i, w, work),
        };
        let health = *self.groups[s.group]
            .health
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let penalty = self.health_penalty(health.as_ref());
        let idle = health
            .and_then(|h| h.utilization)
            .is_none_or(|u| u < c.idle_utilization);
        let wake = if s.tier == Tier::High && classified == Tier::Low && queue == 0.0 && idle {
            c.wake_penalty_s
        } else {
            0.0
        };
        Est {
            slot: i,
            queue,
            wake,
            transfer,
            run,
            penalty,
            finish: (queue + wake + transfer + run) * penalty,
            from_history: learned.is_some(),
        }
    }

    /// Whether slot `i` is a view the workload should consider: in service, its backend is
    /// eligible and no preferred eligible view of the same physical device is in service.
    fn visible(&self, i: usize, w: &WorkloadProfile) -> bool {
        let s = &self.slots[i];
        if !w.backends.contains(&s.info.backend) || s.is_offline() {
            return false;
        }
        !self.slots.iter().enumerate().any(|(j, o)| {
            j != i
                && o.group == s.group
                && w.backends.contains(&o.info.backend)
                && !o.is_offline()
                && (o.rank, j) < (s.rank, i)
        })
    }

    /// Takes `device` out of service (`true`: it was lost, e.g. a fatal driver error) or
    /// back in: [`Scheduler::choose`] never picks an offline device, and
    /// [`Scheduler::choose_on`] refuses it with [`Error::DeviceLost`].
    /// [`Error::InvalidArgument`] for an unknown device.
    pub fn set_offline(&self, device: DeviceId, offline: bool) -> Result<()> {
        let i = self
            .slot(device)
            .ok_or_else(|| Error::invalid(format!("unknown device {device}")))?;
        self.slots[i]
            .offline
            .store(offline, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Whether `device` was taken out of service ([`Scheduler::set_offline`]).
    pub fn is_offline(&self, device: DeviceId) -> bool {
        self.slot(device)
            .is_some_and(|i| self.slots[i].is_offline())
    }

    /// The estimates for running `w` on a device the caller picked. Errors:
    /// [`Error::InvalidArgument`] for an unknown device or a malformed profile,
    /// [`Error::NoKernelVariant`] when `w` has no variant for the device's backend.
    pub fn choose_on(
        &self,
        device: DeviceId,
        w: &WorkloadProfile,
        residency: &dyn Residency,
    ) -> Result<Choice> {
        let class = self.classify(w)?;
        let i = self
            .slot(device)
            .ok_or_else(|| Error::invalid(format!("unknown device {device}")))?;
        let s = &self.slots[i];
        if s.is_offline() {
            return Err(Error::DeviceLost {
                device: s.info.name.clone(),
                reason: "taken out of service after a fatal error".into(),
            });
        }
        if !w.backends.contains(&s.info.backend) {
            return Err(Error::NoKernelVariant {
                kernel: w.name.clone(),
                backend: s.info.backend,
            });
        }
        let hist = self.history_row(&w.name);
        let e = self.estimate(
            i,
            w,
            w.effective_work(),
            class.tier,
            residency,
            hist.as_deref(),
        );
        Ok(Choice {
            device,
            tier: s.tier,
            classified: class.tier,
            crossed_tier: s.tier != class.tier,
            reason: format!("{}; {} pinned by the caller", class.reason, s.info.name),
            est_queue_s: e.queue,
            est_transfer_s: e.transfer,
            est_run_s: e.run,
            est_wake_s: e.wake,
            penalty: e.penalty,
            candidates: vec![(device, e.finish)],
        })
    }

    /// The device for `w`: among devices with a kernel variant for one of `w.backends` (one
    /// view per physical device, CUDA preferred), the minimal estimated finish time = queue
    /// wait + transfer of the bytes `residency` says are missing (free on unified-memory
    /// devices) + run time (history, else prior), times the health penalty. The classified
    /// tier wins unless a device of the other tier finishes faster by the cross-tier margin
    /// (or the tier has no eligible device); [`Choice::crossed_tier`] says so.
    ///
    /// Errors: [`Error::InvalidArgument`] for a malformed profile,
    /// [`Error::NoEligibleDevice`] when no device has a backend the workload has a variant for.
    pub fn choose(&self, w: &WorkloadProfile, residency: &dyn Residency) -> Result<Choice> {
        let class = self.classify(w)?;
        let work = w.effective_work();
        let hist = self.history_row(&w.name);
        let mut ests: Vec<Est> = Vec::with_capacity(self.slots.len());
        for i in 0..self.slots.len() {
            if self.visible(i, w) {
                ests.push(self.estimate(i, w, work, class.tier, residency, hist.as_deref()));
            }
        }
        let better = |a: &Est, b: &Est| a.finish.total_cmp(&b.finish).then(a.slot.cmp(&b.slot));
        let best_of = |t: Tier| {
            ests.iter()
                .filter(|e| self.slots[e.slot].tier == t)
                .min_by(|a, b| better(a, b))
        };
        let in_tier = best_of(class.tier);
        let other = best_of(class.tier.other());
        let margin = self.config.cross_tier_margin;
        let mut reason = class.reason;
        let (pick, crossed) = match (in_tier, other) {
            (None, None) => return Err(Error::NoEligibleDevice(w.name.clone())),
            (Some(t), None) => (*t, false),
            (None, Some(o)) => {
                let _ = write!(
                    reason,
                    "; no eligible {} device, so {}",
                    class.tier, self.slots[o.slot].info.name
                );
                (*o, true)
            }
            (Some(t), Some(o)) => {
                if o.finish * margin < t.finish {
                    let _ = write!(
                        reason,
                        "; {} ({}) finishes in {:.3} ms, beating the {}'s best {} ({:.3} ms) by more than {margin}x",
                        self.slots[o.slot].info.name,
                        class.tier.other(),
                        o.finish * 1e3,
                        class.tier,
                        self.slots[t.slot].info.name,
                        t.finish * 1e3,
                    );
                    (*o, true)
                } else {
                    (*t, false)
                }
            }
        };
        if !crossed {
            let s = &self.slots[pick.slot];
            let _ = write!(
                reason,
                "; {} finishes first in its tier ({:.3} ms: queue {:.3}, transfer {:.3}, run {:.3} ms {})",
                s.info.name,
                pick.finish * 1e3,
                pick.queue * 1e3,
                pick.transfer * 1e3,
                pick.run * 1e3,
                if pick.from_history { "learned" } else { "prior" },
            );
        }
        if pick.penalty > 1.0 {
            let _ = write!(reason, "; health penalty x{:.2}", pick.penalty);
        }
        ests.sort_by(|a, b| better(a, b));
        let candidates = ests
            .iter()
            .map(|e| (self.slots[e.slot].info.id, e.finish))
            .collect();
        let s = &self.slots[pick.slot];
        tracing::trace!(workload = %w.name, device = %s.info.name, crossed, "tidal wave choice");
        Ok(Choice {
            device: s.info.id,
            tier: s.tier,
            classified: class.tier,
            crossed_tier: crossed,
            reason,
            est_queue_s: pick.queue,
            est_transfer_s: pick.transfer,
            est_run_s: pick.run,
            est_wake_s: pick.wake,
            penalty: pick.penalty,
            candidates,
        })
    }
}
