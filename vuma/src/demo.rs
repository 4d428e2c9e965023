//! The seed scenario: a heavy AI job, light UI/2D work and a large buffer, run on whatever
//! this machine has, printing every decision.

use serde_json::{json, Value};
use vuma_core::{human_bytes, Error, Result, Scalar};

use crate::{kernels, GpuWorkload, Priority, UnifiedMemoryManager, WorkloadKind, WorkloadReport};

/// Options of the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Multiplies every buffer size (1.0: 64 MiB activations, 256 MiB large buffer).
    pub scale: f64,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions { scale: 1.0 }
    }
}

/// What the demo did.
#[derive(Debug)]
pub struct DemoOutcome {
    /// One report per workload, in order.
    pub reports: Vec<WorkloadReport>,
    /// Results checked on the host.
    pub verified: Vec<String>,
}

impl DemoOutcome {
    /// As JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "reports": self.reports.iter().map(WorkloadReport::to_json).collect::<Vec<_>>(),
            "verified": self.verified,
        })
    }
}

fn f32_at(v: &[u8], i: usize) -> f32 {
    f32::from_le_bytes([v[4 * i], v[4 * i + 1], v[4 * i + 2], v[4 * i + 3]])
}
fn u32_at(v: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([v[4 * i], v[4 * i + 1], v[4 * i + 2], v[4 * i + 3]])
}

/// The largest `--scale` (the large buffer's 256 MiB times it must count in u32 elements).
pub const MAX_SCALE: f64 = 64.0;

/// `n` 4-byte values from `f`, in host memory taken fallibly: a machine without the memory
/// gets the transient [`Error::OutOfMemory`], not an abort.
fn host_bytes(n: u64, f: impl Fn(u64) -> [u8; 4]) -> Result<Vec<u8>> {
    let oom = || Error::OutOfMemory {
        device: "host".into(),
        requested: n.saturating_mul(4),
    };
    let len = usize::try_from(n.checked_mul(4).ok_or_else(oom)?).map_err(|_| oom())?;
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| oom())?;
    for i in 0..n {
        v.extend_from_slice(&f(i));
    }
    Ok(v)
}

/// Runs the seed scenario on `vuma`.
pub fn run(vuma: &UnifiedMemoryManager, opts: &DemoOptions) -> Result<DemoOutcome> {
    // The kernels count elements in u32: 256 MiB x 64 is the most the large buffer holds.
    let scale = if opts.scale.is_finite() && opts.scale > 0.0 && opts.scale <= MAX_SCALE {
        opts.scale
    } else {
        return Err(Error::invalid(format!(
            "demo scale must be a number in (0, {MAX_SCALE}], not {}",
            opts.scale
        )));
    };
    let elems = |bytes: f64| ((bytes * scale) as u64 / 4).max(1024);
    let mut reports = Vec::new();
    let mut verified = Vec::new();

    // 1. Heavy AI inference: ReLU + scale over activations.
    let n_act = elems(64.0 * 1048576.0);
    let act = host_bytes(n_act, |i| {
        (((i * 2_654_435_761) % 2001) as f32 / 1000.0 - 1.0).to_le_bytes()
    })?;
    let x = vuma.create_buffer_from(&act)?;
    let y = vuma.create_buffer(n_act * 4)?;
    let ai = GpuWorkload::new(
        "ai-inference",
        WorkloadKind::AiInference,
        kernels::relu_scale(),
    )
    .complexity(0.9)
    .priority(Priority::High)
    .read(&x, 1)
    .write(&y)
    .scalar(Scalar::U32(n_act as u32))
    .scalar(Scalar::F32(0.5))
    .launch(kernels::launch_for(n_act));
    reports.push(vuma.process_workload(&ai)?);

    // 2. Light UI work: blend two 1080p frames.
    let px = (1920 * 1080) as u64;
    let a = host_bytes(px, |i| (i as u32).wrapping_mul(0x0101_0101).to_le_bytes())?;
    let b = host_bytes(px, |i| (!(i as u32)).to_le_bytes())?;
    let fa = vuma.create_buffer_from(&a)?;
    let fb = vuma.create_buffer_from(&b)?;
    let fd = vuma.create_buffer(px * 4)?;
    let ui = GpuWorkload::new("ui-compositor", WorkloadKind::Ui, kernels::blend())
        .complexity(0.1)
        .priority(Priority::Realtime)
        .read(&fa, 1)
        .read(&fb, 1)
        .write(&fd)
        .scalar(Scalar::U32(px as u32))
        .launch(kernels::launch_for(px));
    reports.push(vuma.process_workload(&ui)?);

    // 3. A large buffer, beyond the zero-copy threshold: migrated to a discrete GPU (on a
    //    device that shares host memory, its host copy is used in place), scaled in place.
    let n_big = elems(256.0 * 1048576.0);
    let big = vuma.create_buffer(n_big * 4)?;
    vuma.memory().with_host_mut(&big, |h| {
        for (i, c) in h.chunks_exact_mut(4).enumerate() {
            c.copy_from_slice(&(i as u32).to_le_bytes());
        }
    })?;
    let heavy = GpuWorkload::new(
        "large-buffer",
        WorkloadKind::HeavyCompute,
        kernels::scale_u32(),
    )
    .complexity(0.7)
    .read_write(&big, 1)
    .scalar(Scalar::U32(n_big as u32))
    .scalar(Scalar::U32(3))
    .scalar(Scalar::U32(1))
    .launch(kernels::launch_for(n_big));
    reports.push(vuma.process_workload(&heavy)?);

    // 4. The AI job again: its input is already resident where it ran.
    reports.push(vuma.process_workload(&ai)?);

    // Check results on the host (this brings written buffers back lazily).
    let out = vuma.to_vec(&y)?;
    for i in [0usize, 1, 1000, n_act as usize - 1] {
        let want = f32_at(&act, i).max(0.0) * 0.5;
        if f32_at(&out, i) != want {
            return Err(Error::Kernel {
                kernel: "relu_scale".into(),
                reason: format!("element {i}: got {}, want {want}", f32_at(&out, i)),
            });
        }
    }
    verified.push(format!(
        "ai-inference: {} of activations correct",
        human_bytes(n_act * 4)
    ));
    let out = vuma.to_vec(&fd)?;
    for i in [0usize, 7, 1920 * 540 + 960, px as usize - 1] {
        let (p, q) = (u32_at(&a, i), u32_at(&b, i));
        let want = (p & q) + (((p ^ q) >> 1) & 0x7f7f_7f7f);
        if u32_at(&out, i) != want {
            return Err(Error::Kernel {
                kernel: "blend".into(),
                reason: format!("pixel {i}: got {:#x}, want {want:#x}", u32_at(&out, i)),
            });
        }
    }
    verified.push("ui-compositor: blended frame correct".into());
    let out = vuma.to_vec(&big)?;
    for i in [0usize, 12345, n_big as usize - 1] {
        let want = (i as u32).wrapping_mul(3).wrapping_add(1);
        if u32_at(&out, i) != want {
            return Err(Error::Kernel {
                kernel: "scale_u32".into(),
                reason: format!("element {i}: got {}, want {want}", u32_at(&out, i)),
            });
        }
    }
    verified.push(format!(
        "large-buffer: {} scaled in place correct",
        human_bytes(n_big * 4)
    ));
    Ok(DemoOutcome { reports, verified })
}
