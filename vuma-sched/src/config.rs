//! The scheduler's knobs: [`SchedConfig`] and the run-time prior [`PriorModel`].

use std::collections::HashMap;
use std::sync::Arc;

use vuma_core::{DeviceId, DeviceKind, Error, Result};

use crate::policy::{ClassifyPolicy, DefaultClassifyPolicy};
use crate::workload::Tier;

/// How fast a device is assumed to be before any run of a kernel on it was recorded.
///
/// Rate = `compute_units × per-unit rate of the device kind` work units per second, halved
/// for GPU-friendly kinds on a CPU; every run also pays the kind's fixed launch overhead.
#[derive(Debug, Clone, PartialEq)]
pub struct PriorModel {
    /// Work units per second per SM of a discrete GPU (default 4e11).
    pub discrete_per_unit: f64,
    /// Work units per second per compute unit of an integrated GPU (default 2e10).
    pub integrated_per_unit: f64,
    /// Work units per second per CPU core (default 1.5e10).
    pub cpu_per_unit: f64,
    /// Work units per second per unit of a virtual device (default 5e9).
    pub virtual_per_unit: f64,
    /// Factor on a CPU's rate for GPU-friendly kinds (default 0.5).
    pub cpu_gpu_kind_factor: f64,
    /// Fixed cost of one launch on a discrete GPU, seconds (default 15 µs: launch + sync
    /// over PCIe).
    pub discrete_launch_s: f64,
    /// Fixed cost of one launch on an integrated GPU, seconds (default 20 µs).
    pub integrated_launch_s: f64,
    /// Fixed cost of one run on the CPU, seconds (default 2 µs).
    pub cpu_launch_s: f64,
}

impl Default for PriorModel {
    fn default() -> Self {
        PriorModel {
            discrete_per_unit: 4e11,
            integrated_per_unit: 2e10,
            cpu_per_unit: 1.5e10,
            virtual_per_unit: 5e9,
            cpu_gpu_kind_factor: 0.5,
            discrete_launch_s: 15e-6,
            integrated_launch_s: 20e-6,
            cpu_launch_s: 2e-6,
        }
    }
}

impl PriorModel {
    /// Per-unit rate of a device kind.
    pub fn per_unit(&self, kind: DeviceKind) -> f64 {
        match kind {
            DeviceKind::Discrete => self.discrete_per_unit,
            DeviceKind::Integrated => self.integrated_per_unit,
            DeviceKind::Cpu => self.cpu_per_unit,
            _ => self.virtual_per_unit,
        }
    }

    /// Fixed launch cost of a device kind.
    pub fn launch_s(&self, kind: DeviceKind) -> f64 {
        match kind {
            DeviceKind::Discrete => self.discrete_launch_s,
            DeviceKind::Integrated => self.integrated_launch_s,
            _ => self.cpu_launch_s,
        }
    }

    fn validate(&self) -> Result<()> {
        let rates = [
            ("discrete_per_unit", self.discrete_per_unit),
            ("integrated_per_unit", self.integrated_per_unit),
            ("cpu_per_unit", self.cpu_per_unit),
            ("virtual_per_unit", self.virtual_per_unit),
            ("cpu_gpu_kind_factor", self.cpu_gpu_kind_factor),
        ];
        for (name, v) in rates {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::invalid(format!(
                    "prior {name} = {v} must be finite and positive"
                )));
            }
        }
        let costs = [
            ("discrete_launch_s", self.discrete_launch_s),
            ("integrated_launch_s", self.integrated_launch_s),
            ("cpu_launch_s", self.cpu_launch_s),
        ];
        for (name, v) in costs {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::invalid(format!(
                    "prior {name} = {v} must be finite and not negative"
                )));
            }
        }
        Ok(())
    }
}

/// Everything that tunes the scheduler. `Default` gives the documented values.
#[derive(Debug, Clone)]
pub struct SchedConfig {
    /// The classification policy (default: [`DefaultClassifyPolicy`]).
    pub policy: Arc<dyn ClassifyPolicy>,
    /// Tiers forced per device (otherwise discrete → high, everything else → low).
    pub tier_overrides: HashMap<DeviceId, Tier>,
    /// A device of the other tier is chosen only when its estimated finish time times this
    /// margin is still below the classified tier's best (default 1.5).
    pub cross_tier_margin: f64,
    /// Above this temperature (°C) a device counts as hot (default 83, NVIDIA's slowdown
    /// region begins a little above).
    pub hot_threshold_c: f32,
    /// Penalty of a hot device: its finish time is multiplied by `1 + thermal_weight × (1 +
    /// degrees above threshold / 10)` (default 4).
    pub thermal_weight: f64,
    /// Penalty of a busy device (utilisation by others): × `1 + busy_weight × utilization`
    /// (default 1: a fully used device is assumed to give us half its speed).
    pub busy_weight: f64,
    /// Penalty of a device within 10% of its power limit: × `1 + power_weight` (default 0.5).
    pub power_weight: f64,
    /// Cost of waking an idle high-tier device for low-tier work, seconds (default 1 ms: the
    /// clock ramp from its idle state). Charged when the device has no backlog and its
    /// utilisation is unknown or below `idle_utilization`.
    pub wake_penalty_s: f64,
    /// Utilisation below which a device counts as idle (default 0.05).
    pub idle_utilization: f32,
    /// Weight of a new run in the per-(kernel, device) history average (default 0.3).
    pub history_alpha: f64,
    /// Runs of each kernel on each device that are counted but not learned from (default
    /// 1): the first run pays one-time costs (kernel compilation, module load, pipeline
    /// creation) that say nothing about the next run.
    pub warmup_runs: u32,
    /// Host→device bandwidth for devices that report no link, bytes/s (default 12 GB/s).
    pub default_link_bytes_per_s: f64,
    /// Fixed cost of a transfer that moves any bytes, seconds (default 10 µs).
    pub transfer_latency_s: f64,
    /// Jobs that may wait in one device's queue of the [`Executor`](crate::Executor)
    /// before `submit` waits (default 1024).
    pub queue_capacity: usize,
    /// Jobs the [`Executor`](crate::Executor) runs at once per device (default 1).
    pub workers_per_device: usize,
    /// Run-time prior for kernels without history.
    pub prior: PriorModel,
}

impl Default for SchedConfig {
    fn default() -> Self {
        SchedConfig {
            policy: Arc::new(DefaultClassifyPolicy::default()),
            tier_overrides: HashMap::new(),
            cross_tier_margin: 1.5,
            hot_threshold_c: 83.0,
            thermal_weight: 4.0,
            busy_weight: 1.0,
            power_weight: 0.5,
            wake_penalty_s: 1e-3,
            idle_utilization: 0.05,
            history_alpha: 0.3,
            warmup_runs: 1,
            default_link_bytes_per_s: 12e9,
            transfer_latency_s: 10e-6,
            queue_capacity: 1024,
            workers_per_device: 1,
            prior: PriorModel::default(),
        }
    }
}

impl SchedConfig {
    /// Sets the classification policy.
    pub fn with_policy(mut self, p: impl ClassifyPolicy + 'static) -> Self {
        self.policy = Arc::new(p);
        self
    }

    /// Forces the tier of one device.
    pub fn with_tier(mut self, device: DeviceId, tier: Tier) -> Self {
        self.tier_overrides.insert(device, tier);
        self
    }

    /// Sets the queue capacity per device.
    pub fn with_queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n;
        self
    }

    /// Checks every figure: margins at least 1, weights finite and not negative, alpha in
    /// (0, 1], bandwidth positive, capacity and workers at least 1.
    pub fn validate(&self) -> Result<()> {
        if !(self.cross_tier_margin.is_finite() && self.cross_tier_margin >= 1.0) {
            return Err(Error::invalid(format!(
                "cross_tier_margin {} must be finite and at least 1",
                self.cross_tier_margin
            )));
        }
        if !self.hot_threshold_c.is_finite() {
            return Err(Error::invalid("hot_threshold_c must be finite"));
        }
        if !(0.0..=1.0).contains(&self.idle_utilization) {
            return Err(Error::invalid("idle_utilization must be in 0..=1"));
        }
        for (name, v) in [
            ("thermal_weight", self.thermal_weight),
            ("busy_weight", self.busy_weight),
            ("power_weight", self.power_weight),
            ("wake_penalty_s", self.wake_penalty_s),
            ("transfer_latency_s", self.transfer_latency_s),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::invalid(format!(
                    "{name} = {v} must be finite and not negative"
                )));
            }
        }
        if !(self.history_alpha > 0.0 && self.history_alpha <= 1.0) {
            return Err(Error::invalid(format!(
                "history_alpha {} must be in (0, 1]",
                self.history_alpha
            )));
        }
        if !(self.default_link_bytes_per_s.is_finite() && self.default_link_bytes_per_s > 0.0) {
            return Err(Error::invalid(
                "default_link_bytes_per_s must be finite and positive",
            ));
        }
        if self.queue_capacity == 0 {
            return Err(Error::invalid("queue_capacity must be at least 1"));
        }
        if self.queue_capacity > tokio::sync::Semaphore::MAX_PERMITS {
            return Err(Error::invalid("queue_capacity is too large"));
        }
        if self.workers_per_device == 0 {
            return Err(Error::invalid("workers_per_device must be at least 1"));
        }
        self.prior.validate()
    }
}
