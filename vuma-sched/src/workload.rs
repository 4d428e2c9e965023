//! What the scheduler is told about a workload: [`WorkloadProfile`] and its parts, the
//! residency facts it asks for ([`Residency`]) and the health figures it is fed
//! ([`DeviceHealth`]).

use std::collections::HashMap;
use std::fmt;

use vuma_core::{Backend, DeviceId, Error, Result};

/// What a workload does; the default classification policy starts from it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WorkloadKind {
    /// User-interface work: latency-bound, tiny, must never wait for a discrete GPU to wake.
    Ui,
    /// 2D graphics: compositing, blits, vector paths.
    Graphics2D,
    /// Light compute: small reductions, filters, image processing on modest inputs.
    LightCompute,
    /// Heavy compute: large dense kernels.
    HeavyCompute,
    /// Neural-network inference.
    AiInference,
    /// Neural-network training.
    AiTraining,
    /// Ray tracing.
    RayTracing,
    /// Heavy single-precision floating-point work.
    Fp32Heavy,
    /// Anything else, named by the caller.
    Custom(String),
}

impl WorkloadKind {
    /// How much arithmetic a kind does per byte of working set (work units per byte), used
    /// when a profile gives no `work_units` of its own.
    pub fn intensity_per_byte(&self) -> f64 {
        match self {
            WorkloadKind::Ui => 1.0,
            WorkloadKind::Graphics2D => 2.0,
            WorkloadKind::LightCompute => 4.0,
            WorkloadKind::HeavyCompute => 64.0,
            WorkloadKind::AiInference => 64.0,
            WorkloadKind::AiTraining => 192.0,
            WorkloadKind::RayTracing => 128.0,
            WorkloadKind::Fp32Heavy => 96.0,
            WorkloadKind::Custom(_) => 8.0,
        }
    }

    /// Whether the kind is throughput-bound arithmetic that GPUs do far better than CPUs.
    pub fn gpu_friendly(&self) -> bool {
        matches!(
            self,
            WorkloadKind::HeavyCompute
                | WorkloadKind::AiInference
                | WorkloadKind::AiTraining
                | WorkloadKind::RayTracing
                | WorkloadKind::Fp32Heavy
        )
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WorkloadKind::Ui => "ui",
            WorkloadKind::Graphics2D => "graphics-2d",
            WorkloadKind::LightCompute => "light-compute",
            WorkloadKind::HeavyCompute => "heavy-compute",
            WorkloadKind::AiInference => "ai-inference",
            WorkloadKind::AiTraining => "ai-training",
            WorkloadKind::RayTracing => "ray-tracing",
            WorkloadKind::Fp32Heavy => "fp32-heavy",
            WorkloadKind::Custom(name) => return write!(f, "custom:{name}"),
        })
    }
}

/// The names [`WorkloadKind::from_str`](std::str::FromStr) accepts (case-insensitive; `-`,
/// `_` and spaces are the same), with the kind each means. The seed's type strings are here
/// (`"INFERENCE"`, `"TRAINING"`, `"UI"`, `"2D"`, `"3D"`, `"RAY_TRACING"`, `"FP32"`,
/// `"VIDEO"`, `"COMPUTE"`), and so is every kind's [`Display`](fmt::Display) form;
/// `custom:NAME` is [`WorkloadKind::Custom`].
pub const KIND_NAMES: &[(&str, &str)] = &[
    ("UI", "ui"),
    ("2D", "graphics-2d"),
    ("GRAPHICS_2D", "graphics-2d"),
    ("VIDEO", "light-compute (media work stays on the low tide)"),
    ("COMPUTE", "light-compute"),
    ("LIGHT_COMPUTE", "light-compute"),
    ("HEAVY_COMPUTE", "heavy-compute"),
    ("AI", "ai-inference"),
    ("INFERENCE", "ai-inference"),
    ("AI_INFERENCE", "ai-inference"),
    ("TRAINING", "ai-training"),
    ("AI_TRAINING", "ai-training"),
    ("RAY_TRACING", "ray-tracing"),
    ("RAYTRACING", "ray-tracing"),
    (
        "3D",
        "fp32-heavy (3D shading is single-precision throughput)",
    ),
    ("FP32", "fp32-heavy"),
    ("FP32_HEAVY", "fp32-heavy"),
    ("CUSTOM:<name>", "custom:<name>"),
];

/// A workload kind name that [`WorkloadKind::from_str`](std::str::FromStr) does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKind {
    /// The name given.
    pub name: String,
}

impl fmt::Display for UnknownKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown workload type `{}`; accepted (any case): ",
            self.name
        )?;
        for (i, (n, _)) in KIND_NAMES.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(n)?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownKind {}

impl From<UnknownKind> for Error {
    fn from(e: UnknownKind) -> Self {
        Error::InvalidArgument(e.to_string())
    }
}

impl std::str::FromStr for WorkloadKind {
    type Err = UnknownKind;

    /// Parses a seed type string or a [`Display`](fmt::Display) form (see [`KIND_NAMES`]).
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let t = s.trim();
        if let Some((head, name)) = t.split_once(':') {
            if head.trim().eq_ignore_ascii_case("custom") && !name.trim().is_empty() {
                return Ok(WorkloadKind::Custom(name.trim().to_string()));
            }
        }
        let norm: String = t
            .chars()
            .map(|c| match c {
                '-' | ' ' => '_',
                c => c.to_ascii_uppercase(),
            })
            .collect();
        Ok(match norm.as_str() {
            "UI" => WorkloadKind::Ui,
            "2D" | "GRAPHICS_2D" | "GRAPHICS2D" => WorkloadKind::Graphics2D,
            "VIDEO" | "COMPUTE" | "LIGHT_COMPUTE" => WorkloadKind::LightCompute,
            "HEAVY_COMPUTE" => WorkloadKind::HeavyCompute,
            "AI" | "INFERENCE" | "AI_INFERENCE" => WorkloadKind::AiInference,
            "TRAINING" | "AI_TRAINING" => WorkloadKind::AiTraining,
            "RAY_TRACING" | "RAYTRACING" => WorkloadKind::RayTracing,
            "3D" | "FP32" | "FP32_HEAVY" => WorkloadKind::Fp32Heavy,
            _ => {
                return Err(UnknownKind {
                    name: s.to_string(),
                })
            }
        })
    }
}

/// How urgent a workload is. Higher runs first in a device queue (FIFO within one priority).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Priority {
    /// Background work.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Ahead of normal work.
    High,
    /// Ahead of everything.
    Realtime,
}

impl Priority {
    /// All priorities, lowest first.
    pub const ALL: [Priority; 4] = [
        Priority::Low,
        Priority::Normal,
        Priority::High,
        Priority::Realtime,
    ];

    /// Index 0..4, lowest first.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl Priority {
    /// The priority of a seed-style integer level, 0 (background) to 10 (most urgent):
    /// 0–2 [`Low`](Priority::Low), 3–6 [`Normal`](Priority::Normal), 7–9
    /// [`High`](Priority::High), 10 [`Realtime`](Priority::Realtime). Anything else is an
    /// [`Error::InvalidArgument`].
    pub fn from_level(level: i64) -> Result<Priority> {
        Ok(match level {
            0..=2 => Priority::Low,
            3..=6 => Priority::Normal,
            7..=9 => Priority::High,
            10 => Priority::Realtime,
            _ => {
                return Err(Error::invalid(format!(
                    "priority {level} is not in 0..=10 (0–2 low, 3–6 normal, 7–9 high, 10 realtime)"
                )))
            }
        })
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Realtime => "realtime",
        })
    }
}

/// A Tidal Wave tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tier {
    /// Low tide: the integrated GPU, or the CPU where there is none.
    Low,
    /// High tide: the discrete GPU.
    High,
}

impl Tier {
    /// The other tier.
    pub fn other(self) -> Tier {
        match self {
            Tier::Low => Tier::High,
            Tier::High => Tier::Low,
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tier::Low => "low tide",
            Tier::High => "high tide",
        })
    }
}

/// Everything the scheduler needs to know about one workload.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadProfile {
    /// Kernel or workload name: the key of the run-time history.
    pub name: String,
    /// What it does.
    pub kind: WorkloadKind,
    /// How demanding it is, 0..=1 (NaN or out of range is an [`Error::InvalidArgument`]).
    pub complexity: f32,
    /// Bytes of working set.
    pub memory_requirement: u64,
    /// How urgent it is.
    pub priority: Priority,
    /// Backends the workload has kernel variants for; only their devices are eligible.
    pub backends: Vec<Backend>,
    /// Abstract work (flops, elements, …); 0 derives it from `memory_requirement` and the
    /// kind's [`intensity_per_byte`](WorkloadKind::intensity_per_byte). Must be finite and
    /// not negative.
    pub work_units: f64,
}

impl WorkloadProfile {
    /// A profile with complexity 0.5, no working set, normal priority, variants for every
    /// backend and derived work.
    pub fn new(name: impl Into<String>, kind: WorkloadKind) -> Self {
        WorkloadProfile {
            name: name.into(),
            kind,
            complexity: 0.5,
            memory_requirement: 0,
            priority: Priority::Normal,
            backends: vec![Backend::Cuda, Backend::Vulkan, Backend::Host],
            work_units: 0.0,
        }
    }

    /// Sets the complexity.
    pub fn with_complexity(mut self, c: f32) -> Self {
        self.complexity = c;
        self
    }

    /// Sets the working set in bytes.
    pub fn with_memory(mut self, bytes: u64) -> Self {
        self.memory_requirement = bytes;
        self
    }

    /// Sets the priority.
    pub fn with_priority(mut self, p: Priority) -> Self {
        self.priority = p;
        self
    }

    /// Sets the backends the workload has variants for.
    pub fn with_backends(mut self, b: impl Into<Vec<Backend>>) -> Self {
        self.backends = b.into();
        self
    }

    /// Sets the work units.
    pub fn with_work(mut self, units: f64) -> Self {
        self.work_units = units;
        self
    }

    /// Checks the profile: a non-empty name, complexity in 0..=1, finite non-negative work.
    /// (An empty `backends` list is not malformed; `choose` answers it with
    /// [`Error::NoEligibleDevice`].)
    pub fn validate(&self) -> Result<()> {
        if self.name.is_empty() {
            return Err(Error::invalid("workload name is empty"));
        }
        if !(0.0..=1.0).contains(&self.complexity) {
            return Err(Error::invalid(format!(
                "workload `{}`: complexity {} is not in 0..=1",
                self.name, self.complexity
            )));
        }
        if !self.work_units.is_finite() || self.work_units < 0.0 {
            return Err(Error::invalid(format!(
                "workload `{}`: work_units {} is not a finite, non-negative number",
                self.name, self.work_units
            )));
        }
        Ok(())
    }

    /// The work the cost model uses: `work_units`, or, when 0, the working set times the
    /// kind's intensity (at least 1).
    pub fn effective_work(&self) -> f64 {
        if self.work_units > 0.0 {
            self.work_units
        } else {
            (self.memory_requirement as f64 * self.kind.intensity_per_byte()).max(1.0)
        }
    }
}

/// Residency facts: how many bytes of a workload's data a device lacks (would have to
/// receive before the workload can run there). The memory manager implements it.
pub trait Residency {
    /// Bytes that would have to be transferred to `device`; `u64::MAX` means "all of the
    /// working set" (the scheduler substitutes `memory_requirement`).
    fn missing_bytes(&self, device: DeviceId) -> u64;
}

/// No residency facts: every device lacks everything (`missing_bytes` is `u64::MAX`, read
/// as the whole working set).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoResidency;

impl Residency for NoResidency {
    fn missing_bytes(&self, _device: DeviceId) -> u64 {
        u64::MAX
    }
}

impl<F: Fn(DeviceId) -> u64> Residency for F {
    fn missing_bytes(&self, device: DeviceId) -> u64 {
        self(device)
    }
}

/// Residency as a table: the bytes missing per device, and a default for devices not in it.
#[derive(Debug, Clone, Default)]
pub struct ResidencyMap {
    /// Missing bytes per device.
    pub missing: HashMap<DeviceId, u64>,
    /// Missing bytes for devices not in the table (`u64::MAX`: everything).
    pub default: u64,
}

impl ResidencyMap {
    /// Data that lives on `device` (nothing missing there) and must be sent everywhere else.
    pub fn resident_on(device: DeviceId) -> Self {
        ResidencyMap {
            missing: HashMap::from([(device, 0)]),
            default: u64::MAX,
        }
    }
}

impl Residency for ResidencyMap {
    fn missing_bytes(&self, device: DeviceId) -> u64 {
        self.missing.get(&device).copied().unwrap_or(self.default)
    }
}

/// Health figures of a device (from NVML, fed by the facade). Unknown figures are `None`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DeviceHealth {
    /// Core temperature, degrees Celsius.
    pub temperature_c: Option<f32>,
    /// Power draw, watts.
    pub power_w: Option<f32>,
    /// Power limit, watts (with `power_w`, tells how close to its cap the device runs).
    pub power_limit_w: Option<f32>,
    /// Utilisation by everything on the device (other processes included), 0..=1.
    pub utilization: Option<f32>,
}

impl DeviceHealth {
    /// Checks the figures: finite, utilisation in 0..=1, power not negative.
    pub fn validate(&self) -> Result<()> {
        let finite = |v: Option<f32>, what: &str| match v {
            Some(x) if !x.is_finite() => Err(Error::invalid(format!("{what} {x} is not finite"))),
            _ => Ok(()),
        };
        finite(self.temperature_c, "temperature")?;
        finite(self.power_w, "power")?;
        finite(self.power_limit_w, "power limit")?;
        finite(self.utilization, "utilization")?;
        if let Some(u) = self.utilization {
            if !(0.0..=1.0).contains(&u) {
                return Err(Error::invalid(format!("utilization {u} is not in 0..=1")));
            }
        }
        for (v, what) in [(self.power_w, "power"), (self.power_limit_w, "power limit")] {
            if v.is_some_and(|p| p < 0.0) {
                return Err(Error::invalid(format!("{what} is negative")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_type_strings_parse_in_any_case() {
        let k = |s: &str| s.parse::<WorkloadKind>().unwrap();
        assert_eq!(k("INFERENCE"), WorkloadKind::AiInference);
        assert_eq!(k("inference"), WorkloadKind::AiInference);
        assert_eq!(k("Training"), WorkloadKind::AiTraining);
        assert_eq!(k("UI"), WorkloadKind::Ui);
        assert_eq!(k("2d"), WorkloadKind::Graphics2D);
        assert_eq!(k("3D"), WorkloadKind::Fp32Heavy);
        assert_eq!(k("ray tracing"), WorkloadKind::RayTracing);
        assert_eq!(k("RAY_TRACING"), WorkloadKind::RayTracing);
        assert_eq!(k("FP32"), WorkloadKind::Fp32Heavy);
        assert_eq!(k("VIDEO"), WorkloadKind::LightCompute);
        assert_eq!(k("COMPUTE"), WorkloadKind::LightCompute);
        assert_eq!(k(" heavy-compute "), WorkloadKind::HeavyCompute);
        assert_eq!(k("custom:fft"), WorkloadKind::Custom("fft".into()));
        assert_eq!(k("CUSTOM: fft"), WorkloadKind::Custom("fft".into()));
    }

    #[test]
    fn display_forms_round_trip() {
        for kind in [
            WorkloadKind::Ui,
            WorkloadKind::Graphics2D,
            WorkloadKind::LightCompute,
            WorkloadKind::HeavyCompute,
            WorkloadKind::AiInference,
            WorkloadKind::AiTraining,
            WorkloadKind::RayTracing,
            WorkloadKind::Fp32Heavy,
            WorkloadKind::Custom("x".into()),
        ] {
            assert_eq!(kind.to_string().parse::<WorkloadKind>().unwrap(), kind);
        }
    }

    #[test]
    fn unknown_kinds_list_the_accepted_names() {
        let e = "QUANTUM".parse::<WorkloadKind>().unwrap_err();
        assert_eq!(e.name, "QUANTUM");
        let msg = e.to_string();
        for name in ["INFERENCE", "TRAINING", "UI", "2D", "RAY_TRACING", "FP32"] {
            assert!(msg.contains(name), "{msg}");
        }
        assert!(matches!(Error::from(e), Error::InvalidArgument(_)));
        assert!("".parse::<WorkloadKind>().is_err());
        assert!("custom:".parse::<WorkloadKind>().is_err());
    }

    #[test]
    fn integer_priorities_map_onto_the_enum() {
        let p = |l| Priority::from_level(l).unwrap();
        assert_eq!(p(0), Priority::Low);
        assert_eq!(p(2), Priority::Low);
        assert_eq!(p(3), Priority::Normal);
        assert_eq!(p(5), Priority::Normal);
        assert_eq!(p(7), Priority::High);
        assert_eq!(p(10), Priority::Realtime);
        for bad in [-1, 11, i64::MAX] {
            let e = Priority::from_level(bad).unwrap_err();
            assert!(e.to_string().contains("not in 0..=10"), "{e}");
        }
        // Monotone: a higher level is never a lower priority.
        for l in 0..10 {
            assert!(p(l) <= p(l + 1));
        }
    }
}
