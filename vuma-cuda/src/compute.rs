//! Kernels on the device: the per-device cache of loaded modules and functions (CUDA C
//! through `kernel`'s NVRTC and CUBIN caches, PTX through the driver JIT), the check of a
//! launch's arguments against the function's own parameter table, and the launch.

use std::collections::HashMap;
use std::ffi::{c_void, CStr};
use std::sync::Arc;

use cudarc::driver::sys;
use vuma_core::{
    check_launch_args, Arg, Backend, CudaCode, Error, Kernel, KernelVariant, LaunchConfig,
    Placement, Result,
};

use crate::buffer::CudaBuffer;
use crate::error::{check, cuda_error, describe};
use crate::kernel::{code_key, cubin_for, Params};
use crate::shared::{lock, Inner, Module};

impl Inner {
    /// The parameter sizes of function `f`, from the driver's table, cached per function.
    /// `cuFuncGetParamCount` is CUDA 13.2; under 13.0 the count is the first index that
    /// `cuFuncGetParamInfo` refuses (one `CUDA_ERROR_INVALID_VALUE` per function, which
    /// compute-sanitizer lists as an API error; the memory checks are unaffected).
    fn param_table(&self, f: sys::CUfunction) -> Arc<[usize]> {
        if let Some(t) = lock(&self.param_sizes).get(&(f as usize)) {
            return t.clone();
        }
        let mut sizes = Vec::new();
        while sizes.len() < 4096 {
            let (mut offset, mut size) = (0usize, 0usize);
            // SAFETY: `f` is a loaded function of this context (bound by the caller); both
            // out-pointers are valid; an index past the last parameter is an error return.
            let r = unsafe { sys::cuFuncGetParamInfo(f, sizes.len(), &mut offset, &mut size) };
            if r != sys::CUresult::CUDA_SUCCESS {
                break;
            }
            sizes.push(size);
        }
        let t: Arc<[usize]> = sizes.into();
        lock(&self.param_sizes).insert(f as usize, t.clone());
        t
    }

    /// The driver function of `kernel`'s CUDA variant, compiled and loaded (and cached) as
    /// a launch would.
    pub(crate) fn load_function(&self, kernel: &Kernel) -> Result<sys::CUfunction> {
        let Some(KernelVariant::Cuda { code, entry }) = kernel.variant_for(Backend::Cuda) else {
            return Err(Error::NoKernelVariant {
                kernel: kernel.name().to_string(),
                backend: Backend::Cuda,
            });
        };
        self.bind()?;
        self.function(kernel.name(), code, entry)
    }

    /// The function `entry` of `code`, compiling and loading the module on first use.
    fn function(&self, kernel: &str, code: &CudaCode, entry: &str) -> Result<sys::CUfunction> {
        let key = match code {
            CudaCode::Source(s) => code_key(&[b"source", s.as_bytes()]),
            CudaCode::Ptx(p) => code_key(&[b"ptx", p.as_bytes()]),
        };
        let mut modules = lock(&self.modules);
        if let Some(f) = modules.get(&key).and_then(|m| m.functions.get(entry)) {
            return Ok(*f);
        }
        let m = match modules.entry(key) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => v.insert(Module {
                module: self.load_module(kernel, code)?,
                functions: HashMap::new(),
            }),
        };
        let cname = std::ffi::CString::new(entry).map_err(|_| {
            Error::invalid(format!(
                "kernel `{kernel}`: entry point contains a NUL byte"
            ))
        })?;
        let mut f: sys::CUfunction = std::ptr::null_mut();
        // SAFETY: valid module, NUL-terminated name, valid out-pointer.
        let r = unsafe { sys::cuModuleGetFunction(&mut f, m.module, cname.as_ptr()) };
        match r {
            sys::CUresult::CUDA_SUCCESS => {
                m.functions.insert(entry.to_string(), f);
                Ok(f)
            }
            sys::CUresult::CUDA_ERROR_NOT_FOUND => Err(Error::invalid(format!(
                "kernel `{kernel}`: entry point `{entry}` not found in its module (declare it extern \"C\" __global__)"
            ))),
            r => Err(cuda_error("cuModuleGetFunction", r)),
        }
    }

    /// Compiles (or takes from the caches) and loads the module of `code`; a cached CUBIN
    /// that fails to load is compiled afresh.
    fn load_module(&self, kernel: &str, code: &CudaCode) -> Result<sys::CUmodule> {
        match code {
            CudaCode::Source(src) => {
                let (_, cubin) = cubin_for(kernel, src, self.cc, false)?;
                match load_image(kernel, &cubin) {
                    Ok(m) => Ok(m),
                    Err(e) => {
                        tracing::debug!(kernel, "cached CUBIN failed to load ({e}); recompiling");
                        let (_, cubin) = cubin_for(kernel, src, self.cc, true)?;
                        load_image(kernel, &cubin)
                    }
                }
            }
            CudaCode::Ptx(ptx) => {
                let mut text = ptx.as_bytes().to_vec();
                text.push(0);
                load_image(kernel, &text)
            }
        }
    }

    /// Launches `kernel` on the compute stream with `args` (buffers of this device, not
    /// staging), after checking the arguments against its signature and the function's
    /// parameter table.
    pub(crate) fn launch(
        &self,
        kernel: &Kernel,
        config: &LaunchConfig,
        args: &[Arg<'_, CudaBuffer>],
    ) -> Result<()> {
        let Some(KernelVariant::Cuda { code, entry }) = kernel.variant_for(Backend::Cuda) else {
            return Err(Error::NoKernelVariant {
                kernel: kernel.name().to_string(),
                backend: Backend::Cuda,
            });
        };
        let mut params = Params::default();
        for a in args {
            match *a {
                Arg::Buffer { buffer, offset, .. } => {
                    let b = self.own(buffer)?;
                    if b.placement == Placement::Staging {
                        return Err(Error::invalid(format!(
                            "kernel `{}`: staging buffers cannot be kernel arguments (use device-local or zero-copy)",
                            kernel.name()
                        )));
                    }
                    params.push_ptr(b.dptr + offset);
                }
                Arg::Scalar(s) => params.push_scalar(s),
            }
        }
        check_launch_args(kernel, args)?;
        if config.grid.contains(&0) || config.block.contains(&0) {
            return Err(Error::invalid(format!(
                "kernel `{}`: launch dimensions must be at least 1 (grid {:?}, block {:?})",
                kernel.name(),
                config.grid,
                config.block
            )));
        }
        self.bind()?;
        let f = self.function(kernel.name(), code, entry)?;
        check_param_layout(&self.param_table(f), kernel.name(), args)?;
        if config.shared_mem_bytes > 48 * 1024 {
            // SAFETY: valid function; opting in to more than 48 KiB of dynamic shared memory.
            check("cuFuncSetAttribute", unsafe {
                sys::cuFuncSetAttribute(
                    f,
                    sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    config.shared_mem_bytes as i32,
                )
            })?;
        }
        let mut ptrs = params.pointers();
        // SAFETY: `ptrs` holds one pointer per kernel parameter (the count and each size
        // were checked against the function's own parameter table by `check_param_layout`),
        // each to an 8-byte slot holding the value (device pointers as u64, scalars in the
        // low bytes); `params` outlives the call (the driver copies the values at launch).
        // Buffer ranges were checked, and the bounds of a declared signature; the kernel's
        // own accesses beyond that are the kernel author's contract.
        check("cuLaunchKernel", unsafe {
            sys::cuLaunchKernel(
                f,
                config.grid[0],
                config.grid[1],
                config.grid[2],
                config.block[0],
                config.block[1],
                config.block[2],
                config.shared_mem_bytes,
                self.compute,
                ptrs.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        })
    }
}

/// Loads a CUBIN or NUL-terminated PTX image; JIT errors become [`Error::Compile`] with the
/// JIT's log.
fn load_image(kernel: &str, image: &[u8]) -> Result<sys::CUmodule> {
    let mut log = vec![0u8; 16 * 1024];
    let mut opts = [
        sys::CUjit_option::CU_JIT_ERROR_LOG_BUFFER,
        sys::CUjit_option::CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
    ];
    let mut vals = [log.as_mut_ptr() as *mut c_void, log.len() as *mut c_void];
    let mut m: sys::CUmodule = std::ptr::null_mut();
    // SAFETY: `image` is a complete CUBIN or NUL-terminated PTX that outlives the call; the
    // options say the log buffer and its size (passed by value in the pointer, as the JIT
    // option convention requires); the context is current.
    let r = unsafe {
        sys::cuModuleLoadDataEx(
            &mut m,
            image.as_ptr() as *const c_void,
            opts.len() as u32,
            opts.as_mut_ptr(),
            vals.as_mut_ptr(),
        )
    };
    if r == sys::CUresult::CUDA_SUCCESS {
        return Ok(m);
    }
    let text = CStr::from_bytes_until_nul(&log)
        .map(|c| c.to_string_lossy().trim().to_string())
        .unwrap_or_default();
    Err(Error::Compile {
        kernel: kernel.into(),
        log: format!(
            "cuModuleLoadDataEx: {}{}{}",
            describe(r),
            if text.is_empty() { "" } else { ": " },
            text
        ),
    })
}

/// Checks a launch's arguments against the function's own parameter table (from the
/// driver): the count, and each size (8 bytes for a buffer's device pointer, 4 or 8 for a
/// scalar). A mismatch would make the driver read past the argument array or pass garbage:
/// it is a typed error here, never a launch.
fn check_param_layout(sizes: &[usize], kernel: &str, args: &[Arg<'_, CudaBuffer>]) -> Result<()> {
    if sizes.len() != args.len() {
        return Err(Error::invalid(format!(
            "kernel `{kernel}` takes {} parameters, {} arguments given",
            sizes.len(),
            args.len()
        )));
    }
    for (i, a) in args.iter().enumerate() {
        let size = sizes[i];
        let given = match a {
            Arg::Buffer { .. } => 8,
            Arg::Scalar(s) => s.to_le_bytes().len(),
        };
        if size != given {
            return Err(Error::invalid(format!(
                "kernel `{kernel}` parameter {i} is {size} bytes, the argument given is {given} \
                 ({}): pass a {}",
                match a {
                    Arg::Buffer { .. } => "a buffer pointer".to_string(),
                    Arg::Scalar(s) => format!("{s:?}"),
                },
                match size {
                    4 => "32-bit scalar (U32, I32 or F32)",
                    8 => "buffer or a 64-bit scalar (U64)",
                    _ => "value of that size",
                }
            )));
        }
    }
    Ok(())
}
