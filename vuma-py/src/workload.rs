//! `vuma.GPUWorkload`: the seed's workload description, with an optional kernel.

use pyo3::prelude::*;
use pyo3::types::{PyFloat, PyInt, PyTuple};
use vuma::core::{AccessMode, LaunchConfig, Param, ScalarKind};
use vuma::{GpuWorkload, Priority, Scalar, WorkloadArg, WorkloadKind};

use crate::buffer::PyBuffer;
use crate::errors::{invalid, to_py};
use crate::kernel::PyKernel;

/// A unit of work, as the seed describes it: an id, a type (`"INFERENCE"`, `"TRAINING"`,
/// `"UI"`, `"2D"`, `"3D"`, `"RAY_TRACING"`, `"FP32"`, `"VIDEO"`, `"COMPUTE"`…, any case), a
/// complexity score in 0..1, a memory requirement in MiB and a priority 0–10 (0–2 low, 3–6
/// normal, 7–9 high, 10 realtime).
///
/// Without a kernel the workload is *metadata only*: `process_workload` plans it (memory
/// reserved lazily, the device chosen, the transfer plan). With `kernel` and `args` (buffers
/// and numbers in the kernel's parameter order; a buffer's access comes from the kernel's
/// parameters) it runs. `grid`/`block` default to 64-thread blocks over the first integer
/// argument (at most 65,535 blocks: kernels should use a grid-stride loop).
#[pyclass(name = "GPUWorkload", module = "vuma", frozen)]
#[derive(Debug)]
pub struct PyWorkload {
    w: GpuWorkload,
    type_name: String,
    priority_level: i64,
}

/// A launch dimension: an int or a tuple of up to three.
fn dims(v: &Bound<'_, PyAny>, what: &str) -> PyResult<[u32; 3]> {
    let mut d = [1u32; 3];
    if let Ok(n) = v.extract::<u32>() {
        d[0] = n;
    } else {
        let t: Vec<u32> = v
            .extract()
            .map_err(|_| invalid(format!("{what} must be an int or a tuple of up to 3 ints")))?;
        if t.is_empty() || t.len() > 3 {
            return Err(invalid(format!("{what} must have 1 to 3 dimensions")));
        }
        d[..t.len()].copy_from_slice(&t);
    }
    if d.contains(&0) {
        return Err(invalid(format!("{what} dimensions must be at least 1")));
    }
    Ok(d)
}

/// The scalar of kind `kind` from a Python number (argument `i`, parameter `name`).
fn scalar(v: &Bound<'_, PyAny>, kind: ScalarKind, i: usize, name: &str) -> PyResult<Scalar> {
    let bad = |want: &str| {
        invalid(format!(
            "argument {i} (`{name}`) must be {want}, got {}",
            v.repr().map_or_else(|_| "?".into(), |r| r.to_string())
        ))
    };
    if v.cast::<PyBuffer>().is_ok() {
        return Err(bad("a number, not a buffer"));
    }
    Ok(match kind {
        ScalarKind::U32 => Scalar::U32(
            v.cast::<PyInt>()
                .ok()
                .and_then(|x| x.extract().ok())
                .ok_or_else(|| bad("an int in 0..2**32"))?,
        ),
        ScalarKind::I32 => Scalar::I32(
            v.cast::<PyInt>()
                .ok()
                .and_then(|x| x.extract().ok())
                .ok_or_else(|| bad("an int in -2**31..2**31"))?,
        ),
        ScalarKind::U64 => Scalar::U64(
            v.cast::<PyInt>()
                .ok()
                .and_then(|x| x.extract().ok())
                .ok_or_else(|| bad("an int in 0..2**64"))?,
        ),
        ScalarKind::F32 => {
            if !(v.is_instance_of::<PyFloat>() || v.is_instance_of::<PyInt>()) {
                return Err(bad("a float"));
            }
            Scalar::F32(v.extract::<f64>()? as f32)
        }
    })
}

impl PyWorkload {
    /// The Rust workload (a cheap clone: kernels and buffers are shared).
    pub(crate) fn build(&self) -> PyResult<GpuWorkload> {
        Ok(self.w.clone())
    }
}

#[pymethods]
impl PyWorkload {
    #[new]
    #[pyo3(signature = (id, r#type = "COMPUTE", complexity_score = 0.5, memory_requirement_mb = 0.0, priority = 5, *, kernel = None, args = None, grid = None, block = None, passes = 1, memory_requirement = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        id: String,
        r#type: &str,
        complexity_score: f64,
        memory_requirement_mb: f64,
        priority: i64,
        kernel: Option<&Bound<'_, PyKernel>>,
        args: Option<Vec<Bound<'_, PyAny>>>,
        grid: Option<&Bound<'_, PyAny>>,
        block: Option<&Bound<'_, PyAny>>,
        passes: u32,
        memory_requirement: Option<u64>,
    ) -> PyResult<Self> {
        if id.is_empty() {
            return Err(invalid("a workload needs a non-empty id"));
        }
        let kind: WorkloadKind = r#type
            .parse()
            .map_err(|e: vuma::UnknownKind| to_py(e.into()))?;
        if !(0.0..=1.0).contains(&complexity_score) {
            return Err(invalid(format!(
                "complexity_score {complexity_score} is not in 0..1"
            )));
        }
        let bytes = match memory_requirement {
            Some(b) => b,
            None => {
                if !memory_requirement_mb.is_finite() || memory_requirement_mb < 0.0 {
                    return Err(invalid(format!(
                        "memory_requirement_mb {memory_requirement_mb} is not a size"
                    )));
                }
                (memory_requirement_mb * (1u64 << 20) as f64).round() as u64
            }
        };
        let prio = Priority::from_level(priority).map_err(to_py)?;
        let mut w = match kernel {
            Some(k) => GpuWorkload::new(id, kind, k.get().k.clone()),
            None => GpuWorkload::metadata(id, kind),
        }
        .complexity(complexity_score as f32)
        .memory_requirement(bytes)
        .priority(prio)
        .passes(passes);
        let args = args.unwrap_or_default();
        match kernel {
            Some(k) => {
                let params: Vec<Param> = k.get().signature_params().to_vec();
                if params.len() != args.len() {
                    return Err(invalid(format!(
                        "kernel `{}` takes {} arguments {}, {} given",
                        k.get().k.name(),
                        params.len(),
                        k.get()
                            .k
                            .signature()
                            .map_or_else(String::new, |s| s.to_string()),
                        args.len()
                    )));
                }
                for (i, (p, a)) in params.iter().zip(&args).enumerate() {
                    w.args.push(match p {
                        Param::Buffer { name, access } => {
                            let b = a.cast::<PyBuffer>().map_err(|_| {
                                invalid(format!("argument {i} (`{name}`) must be a vuma.Buffer"))
                            })?;
                            WorkloadArg::Buffer {
                                buffer: b.get().buf.clone(),
                                access: *access,
                                reuse: 1,
                            }
                        }
                        Param::Scalar { name, kind } => {
                            WorkloadArg::Scalar(scalar(a, *kind, i, name)?)
                        }
                    });
                }
            }
            None => {
                for (i, a) in args.iter().enumerate() {
                    let b = a.cast::<PyBuffer>().map_err(|_| {
                        invalid(format!(
                            "argument {i}: a workload without a kernel takes buffers only"
                        ))
                    })?;
                    w.args.push(WorkloadArg::Buffer {
                        buffer: b.get().buf.clone(),
                        access: AccessMode::Read,
                        reuse: 1,
                    });
                }
            }
        }
        let block = match block {
            Some(b) => dims(b, "block")?,
            None => [vuma::kernels::BLOCK, 1, 1],
        };
        let grid = match grid {
            Some(g) => dims(g, "grid")?,
            None => {
                let n = w
                    .args
                    .iter()
                    .find_map(|a| match a {
                        WorkloadArg::Scalar(s) => s.as_u64(),
                        WorkloadArg::Buffer { .. } => None,
                    })
                    .unwrap_or(1);
                let g = n.div_ceil(u64::from(block[0])).clamp(1, 65_535) as u32;
                [g, 1, 1]
            }
        };
        w = w.launch(LaunchConfig {
            grid,
            block,
            shared_mem_bytes: 0,
        });
        Ok(PyWorkload {
            w,
            type_name: r#type.to_string(),
            priority_level: priority,
        })
    }

    /// The workload's id.
    #[getter]
    fn id(&self) -> String {
        self.w.id.clone()
    }

    /// The type string it was given.
    #[getter]
    fn r#type(&self) -> String {
        self.type_name.clone()
    }

    /// The `WorkloadKind` it maps onto (`"ai-inference"`, …).
    #[getter]
    fn kind(&self) -> String {
        self.w.kind.to_string()
    }

    /// Complexity score, 0..1.
    #[getter]
    fn complexity_score(&self) -> f32 {
        self.w.complexity_score
    }

    /// Memory requirement in MiB.
    #[getter]
    fn memory_requirement_mb(&self) -> f64 {
        self.w.memory_requirement as f64 / (1u64 << 20) as f64
    }

    /// Memory requirement in bytes.
    #[getter]
    fn memory_requirement(&self) -> u64 {
        self.w.memory_requirement
    }

    /// The integer priority it was given.
    #[getter]
    fn priority(&self) -> i64 {
        self.priority_level
    }

    /// Whether it has no kernel (it is planned, not run).
    #[getter]
    fn metadata_only(&self) -> bool {
        self.w.is_metadata_only()
    }

    /// Launch geometry: `(grid, block)`.
    #[getter]
    fn launch<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let l = self.w.launch;
        PyTuple::new(
            py,
            [
                (l.grid[0], l.grid[1], l.grid[2]),
                (l.block[0], l.block[1], l.block[2]),
            ],
        )
    }

    fn __repr__(&self) -> String {
        format!(
            "GPUWorkload(id={:?}, type={:?}, complexity_score={}, memory_requirement_mb={}, priority={}{})",
            self.w.id,
            self.type_name,
            self.w.complexity_score,
            self.memory_requirement_mb(),
            self.priority_level,
            self.w
                .kernel
                .as_ref()
                .map_or_else(String::new, |k| format!(", kernel={:?}", k.name()))
        )
    }
}
