//! [`GpuWorkload`]: what the caller asks VUMA to run.

use std::sync::Arc;

use vuma_core::{AccessMode, Kernel, LaunchConfig, Scalar, UnifiedBuffer};
use vuma_sched::{Priority, WorkloadKind};

/// One argument of a workload's kernel.
#[derive(Debug, Clone)]
pub enum WorkloadArg {
    /// A unified buffer, how the kernel accesses it, and how many times the kernel reads it
    /// (a placement hint: data read many times is worth copying to VRAM).
    Buffer {
        /// The buffer.
        buffer: Arc<UnifiedBuffer>,
        /// Read, write (entirely) or both.
        access: AccessMode,
        /// Expected reads per run (1 for read-once streams).
        reuse: u32,
    },
    /// A value.
    Scalar(Scalar),
}

/// How a workload may be cut into tiles that fit the device's L2 cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tiling {
    /// Run over the whole working set.
    #[default]
    Off,
    /// The kernel is element-wise: every buffer argument has the same length, element `i`
    /// of each depends only on element `i` of the others, and the first scalar argument is
    /// the element count (`u32`). VUMA then runs all `passes` over one L2-sized tile before
    /// moving to the next, so passes after the first hit the cache.
    Elementwise {
        /// Bytes per element.
        elem_bytes: u32,
    },
}

/// A unit of work: a kernel (with variants per backend), its arguments, and what the
/// Tidal Wave scheduler needs to know to place it.
///
/// A workload without a kernel ([`GpuWorkload::metadata`]) is *metadata-only*: it says what
/// the work is and how much memory it needs, and
/// [`process_workload`](crate::UnifiedMemoryManager::process_workload) plans it instead of
/// running it (see [`UnifiedMemoryManager::plan`](crate::UnifiedMemoryManager::plan)).
#[derive(Debug, Clone)]
pub struct GpuWorkload {
    /// Caller's identifier (shown in reports).
    pub id: String,
    /// What it does (UI, 2D, AI inference, …).
    pub kind: WorkloadKind,
    /// How demanding it is, 0..=1.
    pub complexity_score: f32,
    /// Bytes of working set; 0 means "the sum of the buffer arguments". For a
    /// metadata-only workload without buffers, the size of the managed buffer the plan
    /// reserves.
    pub memory_requirement: u64,
    /// How urgent it is.
    pub priority: Priority,
    /// The kernel to run; `None` for a metadata-only workload (planned, not run).
    pub kernel: Option<Kernel>,
    /// Its arguments, in order.
    pub args: Vec<WorkloadArg>,
    /// Launch geometry.
    pub launch: LaunchConfig,
    /// How many times the kernel runs back to back (multi-pass work; default 1).
    pub passes: u32,
    /// Whether VUMA may tile the work to fit the device's L2.
    pub tiling: Tiling,
}

impl GpuWorkload {
    /// A workload running `kernel`, with complexity 0.5, normal priority and no arguments.
    pub fn new(id: impl Into<String>, kind: WorkloadKind, kernel: Kernel) -> Self {
        GpuWorkload {
            id: id.into(),
            kind,
            complexity_score: 0.5,
            memory_requirement: 0,
            priority: Priority::Normal,
            kernel: Some(kernel),
            args: Vec::new(),
            launch: LaunchConfig::for_elements(1, 1),
            passes: 1,
            tiling: Tiling::Off,
        }
    }
    /// A metadata-only workload: no kernel, complexity 0.5, normal priority. Give it a
    /// [`memory_requirement`](Self::memory_requirement) (or buffers) and
    /// [`process_workload`](crate::UnifiedMemoryManager::process_workload) plans it: the
    /// managed memory is reserved lazily, the device chosen by the same Tidal Wave policy,
    /// and the report says what would move and how.
    ///
    /// ```
    /// use vuma::{GpuWorkload, Priority, UnifiedMemoryManager};
    ///
    /// let vuma = UnifiedMemoryManager::builder().cuda(false).vulkan(false).build()?;
    /// let w = GpuWorkload::metadata("AI_Training_Job", "INFERENCE".parse()?)
    ///     .complexity(0.95)
    ///     .memory_requirement(4096 << 20)
    ///     .priority(Priority::from_level(10)?);
    /// let report = vuma.process_workload(&w)?;
    /// let plan = report.plan.as_ref().expect("metadata-only workloads are planned");
    /// assert_eq!(plan.buffers[0].size, 4096 << 20);
    /// assert_eq!(vuma.stats().host.bytes_in_use, 0); // reserved lazily: nothing taken
    /// println!("{report}");
    /// # Ok::<(), vuma::Error>(())
    /// ```
    pub fn metadata(id: impl Into<String>, kind: WorkloadKind) -> Self {
        GpuWorkload {
            kernel: None,
            ..GpuWorkload::new(id, kind, Kernel::new("metadata-only"))
        }
    }
    /// Whether the workload has no kernel (it is planned, not run).
    pub fn is_metadata_only(&self) -> bool {
        self.kernel.is_none()
    }
    /// Sets the working set in bytes (for a metadata-only workload without buffers, the
    /// managed buffer its plan reserves).
    pub fn memory_requirement(mut self, bytes: u64) -> Self {
        self.memory_requirement = bytes;
        self
    }
    /// The name the scheduler's history knows the work by: the kernel's name, or the
    /// workload's id when there is no kernel.
    pub fn kernel_name(&self) -> &str {
        self.kernel.as_ref().map_or(&self.id, |k| k.name())
    }
    /// Sets the complexity score.
    pub fn complexity(mut self, c: f32) -> Self {
        self.complexity_score = c;
        self
    }
    /// Sets the priority.
    pub fn priority(mut self, p: Priority) -> Self {
        self.priority = p;
        self
    }
    /// Adds a buffer the kernel reads `reuse` times.
    pub fn read(mut self, buffer: &Arc<UnifiedBuffer>, reuse: u32) -> Self {
        self.args.push(WorkloadArg::Buffer {
            buffer: buffer.clone(),
            access: AccessMode::Read,
            reuse,
        });
        self
    }
    /// Adds a buffer the kernel overwrites entirely.
    pub fn write(mut self, buffer: &Arc<UnifiedBuffer>) -> Self {
        self.args.push(WorkloadArg::Buffer {
            buffer: buffer.clone(),
            access: AccessMode::Write,
            reuse: 1,
        });
        self
    }
    /// Adds a buffer the kernel reads and modifies.
    pub fn read_write(mut self, buffer: &Arc<UnifiedBuffer>, reuse: u32) -> Self {
        self.args.push(WorkloadArg::Buffer {
            buffer: buffer.clone(),
            access: AccessMode::ReadWrite,
            reuse,
        });
        self
    }
    /// Adds a scalar argument.
    pub fn scalar(mut self, s: Scalar) -> Self {
        self.args.push(WorkloadArg::Scalar(s));
        self
    }
    /// Runs the kernel `n` times back to back.
    pub fn passes(mut self, n: u32) -> Self {
        self.passes = n;
        self
    }
    /// Allows L2-sized tiling of an element-wise kernel (see [`Tiling::Elementwise`]).
    pub fn tiled(mut self, elem_bytes: u32) -> Self {
        self.tiling = Tiling::Elementwise { elem_bytes };
        self
    }
    /// Sets the launch geometry.
    pub fn launch(mut self, l: LaunchConfig) -> Self {
        self.launch = l;
        self
    }
    /// The working set: `memory_requirement`, or the sum of the buffer arguments.
    pub fn working_set(&self) -> u64 {
        if self.memory_requirement > 0 {
            return self.memory_requirement;
        }
        self.args
            .iter()
            .map(|a| match a {
                WorkloadArg::Buffer { buffer, .. } => buffer.len(),
                WorkloadArg::Scalar(_) => 0,
            })
            .sum()
    }
}
