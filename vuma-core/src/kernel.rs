//! Kernels: one variant per backend (as StarPU codelets have), launch geometry, arguments.
//!
//! VUMA does not invent a shading language. A [`Kernel`] carries CUDA C source or PTX (for
//! the CUDA backend, compiled by NVRTC and cached), SPIR-V (for Vulkan), and/or a host
//! function (for the host device). A device runs a kernel only if it has a variant for the
//! device's backend; the scheduler only considers such devices.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

pub use crate::arg::{Arg, Scalar};
use crate::error::Result;
use crate::info::Backend;
use crate::signature::Signature;

/// Launch geometry: CUDA grid and block; for Vulkan `grid` is the workgroup count (the
/// workgroup size is fixed in the shader); host functions receive it as information.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchConfig {
    /// Blocks (workgroups) per dimension.
    pub grid: [u32; 3],
    /// Threads per block per dimension.
    pub block: [u32; 3],
    /// Dynamic shared memory per block, bytes.
    pub shared_mem_bytes: u32,
}

impl LaunchConfig {
    /// One thread per element with `block` threads per block (1-D).
    pub fn for_elements(n: u64, block: u32) -> Self {
        let block = block.max(1);
        let grid = n.div_ceil(u64::from(block)).clamp(1, u64::from(u32::MAX)) as u32;
        LaunchConfig {
            grid: [grid, 1, 1],
            block: [block, 1, 1],
            shared_mem_bytes: 0,
        }
    }
}

/// A host-function kernel: receives the buffers (in argument order, as byte slices) and the
/// scalars.
pub type HostFn = Arc<dyn Fn(&mut HostLaunch<'_>) -> Result<()> + Send + Sync>;

/// What a host-function kernel sees when it runs.
#[derive(Debug)]
pub struct HostLaunch<'a> {
    /// Buffer arguments, in order (each the requested range).
    pub buffers: Vec<&'a mut [u8]>,
    /// Scalar arguments, in order.
    pub scalars: Vec<Scalar>,
    /// The launch geometry the caller gave.
    pub config: LaunchConfig,
}

/// CUDA code for a kernel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CudaCode {
    /// CUDA C++ source, compiled by NVRTC for the device's exact architecture.
    Source(Cow<'static, str>),
    /// PTX text, JIT-compiled by the driver.
    Ptx(Cow<'static, str>),
}

/// One way to run a kernel on one backend.
#[derive(Clone)]
#[non_exhaustive]
pub enum KernelVariant {
    /// CUDA: source or PTX, and the entry point's (`extern "C"`) name.
    Cuda {
        /// The code.
        code: CudaCode,
        /// Entry point.
        entry: Cow<'static, str>,
    },
    /// Vulkan: a SPIR-V compute module and its entry point. Buffers bind to set 0 in
    /// argument order (binding 0, 1, …); scalars fill one push-constant block in order.
    SpirV {
        /// SPIR-V words.
        words: Arc<[u32]>,
        /// Entry point.
        entry: Cow<'static, str>,
    },
    /// The host device: a Rust function.
    Host(HostFn),
}

impl KernelVariant {
    /// The backend this variant runs on.
    pub fn backend(&self) -> Backend {
        match self {
            KernelVariant::Cuda { .. } => Backend::Cuda,
            KernelVariant::SpirV { .. } => Backend::Vulkan,
            KernelVariant::Host(_) => Backend::Host,
        }
    }
}

impl fmt::Debug for KernelVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelVariant::Cuda { code, entry } => f
                .debug_struct("Cuda")
                .field(
                    "code",
                    &match code {
                        CudaCode::Source(s) => format!("source ({} bytes)", s.len()),
                        CudaCode::Ptx(s) => format!("ptx ({} bytes)", s.len()),
                    },
                )
                .field("entry", entry)
                .finish(),
            KernelVariant::SpirV { words, entry } => f
                .debug_struct("SpirV")
                .field("words", &words.len())
                .field("entry", entry)
                .finish(),
            KernelVariant::Host(_) => f.write_str("Host(fn)"),
        }
    }
}

/// A named kernel with variants for one or more backends, and the [`Signature`] its
/// launches are checked against.
#[derive(Debug, Clone)]
pub struct Kernel {
    name: Cow<'static, str>,
    variants: Vec<KernelVariant>,
    signature: Option<Arc<Signature>>,
}

impl Kernel {
    /// A kernel with no variants yet.
    pub fn new(name: impl Into<Cow<'static, str>>) -> Self {
        Kernel {
            name: name.into(),
            variants: Vec::new(),
            signature: None,
        }
    }
    /// Declares the kernel's parameters: every launch is checked against them before it
    /// reaches a driver (count, kinds, access, and the bounds that keep the kernel inside
    /// its buffers). Without one, only what the driver tells is checked (CUDA: the
    /// parameter count and sizes; Vulkan: the bindings and push constants) and the kernel's
    /// accesses are its author's contract.
    pub fn with_signature(mut self, signature: Signature) -> Self {
        self.signature = Some(Arc::new(signature));
        self
    }
    /// The declared signature, if any.
    pub fn signature(&self) -> Option<&Signature> {
        self.signature.as_deref()
    }
    /// Adds CUDA C source with its entry point.
    pub fn with_cuda_source(
        mut self,
        source: impl Into<Cow<'static, str>>,
        entry: impl Into<Cow<'static, str>>,
    ) -> Self {
        self.variants.push(KernelVariant::Cuda {
            code: CudaCode::Source(source.into()),
            entry: entry.into(),
        });
        self
    }
    /// Adds PTX with its entry point.
    pub fn with_ptx(
        mut self,
        ptx: impl Into<Cow<'static, str>>,
        entry: impl Into<Cow<'static, str>>,
    ) -> Self {
        self.variants.push(KernelVariant::Cuda {
            code: CudaCode::Ptx(ptx.into()),
            entry: entry.into(),
        });
        self
    }
    /// Adds a SPIR-V module with its entry point.
    pub fn with_spirv(
        mut self,
        words: impl Into<Arc<[u32]>>,
        entry: impl Into<Cow<'static, str>>,
    ) -> Self {
        self.variants.push(KernelVariant::SpirV {
            words: words.into(),
            entry: entry.into(),
        });
        self
    }
    /// Adds a host function.
    pub fn with_host(
        mut self,
        f: impl Fn(&mut HostLaunch<'_>) -> Result<()> + Send + Sync + 'static,
    ) -> Self {
        self.variants.push(KernelVariant::Host(Arc::new(f)));
        self
    }
    /// Adds a prepared variant.
    pub fn with_variant(mut self, v: KernelVariant) -> Self {
        self.variants.push(v);
        self
    }
    /// The kernel's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// All variants.
    pub fn variants(&self) -> &[KernelVariant] {
        &self.variants
    }
    /// The variant for `backend`, if any.
    pub fn variant_for(&self, backend: Backend) -> Option<&KernelVariant> {
        self.variants.iter().find(|v| v.backend() == backend)
    }
    /// Whether the kernel can run on `backend`.
    pub fn supports(&self, backend: Backend) -> bool {
        self.variant_for(backend).is_some()
    }
}
