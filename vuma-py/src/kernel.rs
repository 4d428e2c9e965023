//! `vuma.Kernel`: VUMA's built-in kernels and user kernels from CUDA C, PTX, WGSL or SPIR-V.

use pyo3::prelude::*;
use vuma::core::{AccessMode, Kernel, Param, ScalarKind, Signature};
use vuma::kernels;

use crate::errors::{invalid, to_py};

/// A kernel: one variant per backend and the parameters every launch is checked against.
///
/// User kernels: `Kernel(name, params, cuda=..., wgsl=...)`. `params` lists the parameters
/// in order as `"<kind> <name>"`: buffer kinds `in` (read), `out` (written entirely),
/// `inout` (read and written); scalar kinds `u32`, `i32`, `u64`, `f32`. `bounds` are
/// `(count, buffer, elem_bytes)`: the scalar `count` times `elem_bytes` must fit in
/// `buffer`, checked before every launch. CUDA C source is compiled by NVRTC for the
/// device; WGSL is compiled to SPIR-V here (Vulkan binds buffers to set 0 in order, and
/// scalars fill one push-constant block; out-of-range accesses read zero and drop writes).
/// Kernels should use a grid-stride loop. VUMA checks every launch's arguments against the
/// parameters; the code itself (CUDA C, PTX, SPIR-V) is trusted as written.
#[pyclass(name = "Kernel", module = "vuma", frozen)]
#[derive(Debug)]
pub struct PyKernel {
    pub(crate) k: Kernel,
}

fn param_kind(kind: &str) -> Option<Result<AccessMode, ScalarKind>> {
    Some(match kind.to_ascii_lowercase().as_str() {
        "in" | "read" | "r" => Ok(AccessMode::Read),
        "out" | "write" | "w" => Ok(AccessMode::Write),
        "inout" | "read_write" | "rw" => Ok(AccessMode::ReadWrite),
        "u32" => Err(ScalarKind::U32),
        "i32" => Err(ScalarKind::I32),
        "u64" => Err(ScalarKind::U64),
        "f32" => Err(ScalarKind::F32),
        _ => return None,
    })
}

/// Compiles WGSL to SPIR-V words the way VUMA compiles its own shaders (bounds-checked:
/// out-of-range reads give zero and writes are dropped).
fn wgsl_to_spirv(name: &str, src: &str) -> vuma::Result<Vec<u32>> {
    let compile = |log: String| vuma::Error::Compile {
        kernel: name.to_string(),
        log,
    };
    let module = naga::front::wgsl::parse_str(src).map_err(|e| compile(e.emit_to_string(src)))?;
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::IMMEDIATES,
    )
    .validate(&module)
    .map_err(|e| compile(format!("{:?}", e.into_inner())))?;
    let opts = naga::back::spv::Options {
        lang_version: (1, 0),
        flags: naga::back::spv::WriterFlags::empty(),
        bounds_check_policies: naga::proc::BoundsCheckPolicies {
            index: naga::proc::BoundsCheckPolicy::ReadZeroSkipWrite,
            buffer: naga::proc::BoundsCheckPolicy::ReadZeroSkipWrite,
            ..Default::default()
        },
        ..Default::default()
    };
    naga::back::spv::write_vec(&module, &info, &opts, None).map_err(|e| compile(e.to_string()))
}

impl PyKernel {
    /// The declared parameters (every kernel made here has a signature).
    pub(crate) fn signature_params(&self) -> &[Param] {
        self.k.signature().map_or(&[], Signature::params)
    }
}

#[pymethods]
impl PyKernel {
    #[new]
    #[pyo3(signature = (name, params, *, cuda = None, ptx = None, wgsl = None, spirv = None, entry = None, bounds = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        name: String,
        params: Vec<String>,
        cuda: Option<String>,
        ptx: Option<String>,
        wgsl: Option<String>,
        spirv: Option<Vec<u8>>,
        entry: Option<String>,
        bounds: Option<Vec<(String, String, u64)>>,
    ) -> PyResult<Self> {
        if name.is_empty() {
            return Err(invalid("a kernel needs a name"));
        }
        let mut sig = Signature::new();
        let mut names: Vec<(String, bool)> = Vec::new();
        for p in &params {
            let mut it = p.split_whitespace();
            let (Some(kind), Some(pname), None) = (it.next(), it.next(), it.next()) else {
                return Err(invalid(format!(
                    "parameter `{p}`: write it as \"<kind> <name>\" (kinds: in, out, inout, u32, i32, u64, f32)"
                )));
            };
            if names.iter().any(|(n, _)| n == pname) {
                return Err(invalid(format!("parameter `{pname}` is declared twice")));
            }
            match param_kind(kind) {
                Some(Ok(access)) => {
                    sig = sig.buffer(pname.to_string(), access);
                    names.push((pname.to_string(), true));
                }
                Some(Err(sk)) => {
                    sig = sig.scalar(pname.to_string(), sk);
                    names.push((pname.to_string(), false));
                }
                None => {
                    return Err(invalid(format!(
                    "parameter `{p}`: unknown kind `{kind}` (in, out, inout, u32, i32, u64, f32)"
                )))
                }
            }
        }
        for (count, buf, elem) in bounds.unwrap_or_default() {
            // `Signature::bound` insists on declared names of the right kind: check here so
            // that a mistake is an exception, not a panic.
            if !names.iter().any(|(n, b)| *n == count && !b) {
                return Err(invalid(format!(
                    "bound: `{count}` is not a scalar parameter"
                )));
            }
            if !names.iter().any(|(n, b)| *n == buf && *b) {
                return Err(invalid(format!("bound: `{buf}` is not a buffer parameter")));
            }
            sig = sig.bound(&count, &buf, elem);
        }
        let entry = entry.unwrap_or_else(|| name.clone());
        let mut k = Kernel::new(name.clone()).with_signature(sig);
        if let Some(src) = cuda {
            k = k.with_cuda_source(src, entry.clone());
        }
        if let Some(p) = ptx {
            k = k.with_ptx(p, entry.clone());
        }
        if let Some(src) = wgsl {
            k = k.with_spirv(wgsl_to_spirv(&name, &src).map_err(to_py)?, entry.clone());
        }
        if let Some(bytes) = spirv {
            if bytes.len() % 4 != 0 || bytes.is_empty() {
                return Err(invalid(
                    "SPIR-V must be a non-empty whole number of 32-bit words",
                ));
            }
            let words: Vec<u32> = bytes
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            k = k.with_spirv(words, entry.clone());
        }
        if k.variants().is_empty() {
            return Err(invalid(format!(
                "kernel `{name}` has no code: give cuda=, ptx=, wgsl= or spirv="
            )));
        }
        Ok(PyKernel { k })
    }

    /// The kernel's name.
    #[getter]
    fn name(&self) -> String {
        self.k.name().to_string()
    }

    /// The backends it has variants for (`"cuda"`, `"vulkan"`, `"host"`).
    #[getter]
    fn backends(&self) -> Vec<String> {
        self.k
            .variants()
            .iter()
            .map(|v| v.backend().to_string())
            .collect()
    }

    /// Its parameters, as `"<kind> <name>"`.
    #[getter]
    fn params(&self) -> Vec<String> {
        self.signature_params()
            .iter()
            .map(|p| match p {
                Param::Buffer { name, access } => format!(
                    "{} {name}",
                    match access {
                        AccessMode::Read => "in",
                        AccessMode::Write => "out",
                        AccessMode::ReadWrite => "inout",
                    }
                ),
                Param::Scalar { name, kind } => {
                    format!("{} {name}", format!("{kind:?}").to_lowercase())
                }
            })
            .collect()
    }

    fn __repr__(&self) -> String {
        format!(
            "Kernel({:?}, params={:?}, backends={:?})",
            self.k.name(),
            self.params(),
            self.backends()
        )
    }
}

/// Names of VUMA's built-in kernels.
pub const BUILTIN: &[&str] = &["relu_scale", "blend", "scale_u32"];

/// One of VUMA's built-in kernels by name (CUDA, SPIR-V and host variants).
#[pyfunction]
pub fn builtin_kernel(name: &str) -> PyResult<PyKernel> {
    let k = match name {
        "relu_scale" => kernels::relu_scale(),
        "blend" => kernels::blend(),
        "scale_u32" => kernels::scale_u32(),
        _ => {
            return Err(invalid(format!(
                "no built-in kernel `{name}`; there are {BUILTIN:?}"
            )))
        }
    };
    Ok(PyKernel { k })
}

/// The launch geometry VUMA's built-in kernels use for `n` elements: `(grid, block)`.
#[pyfunction]
pub fn launch_for(n: u64) -> ((u32, u32, u32), (u32, u32, u32)) {
    let c = kernels::launch_for(n);
    (
        (c.grid[0], c.grid[1], c.grid[2]),
        (c.block[0], c.block[1], c.block[2]),
    )
}
