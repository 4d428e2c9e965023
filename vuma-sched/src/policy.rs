//! Classification: which tier a workload belongs to, as one replaceable policy
//! ([`ClassifyPolicy`]) with a documented default ([`DefaultClassifyPolicy`]).

use std::fmt;

use crate::workload::{Priority, Tier, WorkloadKind, WorkloadProfile};

/// The tier a workload belongs to by default, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// The tier the workload goes to unless another tier clearly wins.
    pub tier: Tier,
    /// The policy's score (for the default policy: 0..≈1.1, high tide at or above its
    /// threshold; rules that decide outright report 0 or 1).
    pub score: f32,
    /// Why, in words a person can read.
    pub reason: String,
}

/// A classification policy: kind, complexity, memory and priority in, tier out.
///
/// The scheduler calls it with a profile that has already been validated (complexity in
/// 0..=1, finite work), so implementations need not check again. Replace the default with
/// [`SchedConfig::policy`](crate::SchedConfig::policy).
pub trait ClassifyPolicy: Send + Sync + fmt::Debug {
    /// The tier of `w`.
    fn classify(&self, w: &WorkloadProfile) -> Classification;
}

/// The default policy. Rules, first match wins:
///
/// 1. [`WorkloadKind::Ui`] → low tide (latency-bound; the discrete GPU stays idle);
/// 2. [`WorkloadKind::AiTraining`] and [`WorkloadKind::RayTracing`] → high tide;
/// 3. a working set of at least `large_memory_bytes` (default 1 GiB) → high tide;
/// 4. otherwise a score `kind_weight · (1 − complexity_weight) + complexity ·
///    complexity_weight + priority bias`, high tide at or above `high_threshold`.
///    Kind weights: 2D 0.1, light compute 0.2, custom 0.5, AI inference 0.8, heavy
///    compute 0.8, FP32-heavy 0.9; priority bias: low −0.1, normal 0, high +0.05,
///    realtime +0.1 (urgent work leans to the faster tier, background work to the quiet one).
#[derive(Debug, Clone, PartialEq)]
pub struct DefaultClassifyPolicy {
    /// Score at or above which a workload is high tide (default 0.5).
    pub high_threshold: f32,
    /// Weight of complexity against the kind's weight, 0..=1 (default 0.5).
    pub complexity_weight: f32,
    /// Working sets at least this large are high tide (default 1 GiB).
    pub large_memory_bytes: u64,
}

impl Default for DefaultClassifyPolicy {
    fn default() -> Self {
        DefaultClassifyPolicy {
            high_threshold: 0.5,
            complexity_weight: 0.5,
            large_memory_bytes: 1 << 30,
        }
    }
}

impl DefaultClassifyPolicy {
    /// The weight of a kind in the score (see the type's documentation).
    pub fn kind_weight(kind: &WorkloadKind) -> f32 {
        match kind {
            WorkloadKind::Ui => 0.0,
            WorkloadKind::Graphics2D => 0.1,
            WorkloadKind::LightCompute => 0.2,
            WorkloadKind::AiInference | WorkloadKind::HeavyCompute => 0.8,
            WorkloadKind::Fp32Heavy => 0.9,
            WorkloadKind::AiTraining | WorkloadKind::RayTracing => 1.0,
            WorkloadKind::Custom(_) => 0.5,
        }
    }

    /// The priority bias in the score.
    pub fn priority_bias(p: Priority) -> f32 {
        match p {
            Priority::Low => -0.1,
            Priority::Normal => 0.0,
            Priority::High => 0.05,
            Priority::Realtime => 0.1,
        }
    }
}

impl ClassifyPolicy for DefaultClassifyPolicy {
    fn classify(&self, w: &WorkloadProfile) -> Classification {
        match w.kind {
            WorkloadKind::Ui => {
                return Classification {
                    tier: Tier::Low,
                    score: 0.0,
                    reason: "ui work stays on the low tide (latency; the discrete gpu may idle)"
                        .into(),
                }
            }
            WorkloadKind::AiTraining | WorkloadKind::RayTracing => {
                return Classification {
                    tier: Tier::High,
                    score: 1.0,
                    reason: format!("{} needs the discrete gpu's throughput", w.kind),
                }
            }
            _ => {}
        }
        if w.memory_requirement >= self.large_memory_bytes {
            return Classification {
                tier: Tier::High,
                score: 1.0,
                reason: format!(
                    "working set of {} is at least {}",
                    vuma_core::human_bytes(w.memory_requirement),
                    vuma_core::human_bytes(self.large_memory_bytes)
                ),
            };
        }
        let cw = self.complexity_weight.clamp(0.0, 1.0);
        let score = Self::kind_weight(&w.kind) * (1.0 - cw)
            + w.complexity * cw
            + Self::priority_bias(w.priority);
        let tier = if score >= self.high_threshold {
            Tier::High
        } else {
            Tier::Low
        };
        Classification {
            tier,
            score,
            reason: format!(
                "score {score:.2} ({} kind, complexity {:.2}, {} priority) {} threshold {:.2}",
                w.kind,
                w.complexity,
                w.priority,
                if tier == Tier::High { ">=" } else { "<" },
                self.high_threshold
            ),
        }
    }
}
