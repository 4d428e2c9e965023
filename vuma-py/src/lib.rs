//! # vuma-py — VUMA for Python
//!
//! The `vuma` Python package's extension module, `vuma._vuma` (PyO3, stable ABI for
//! CPython ≥ 3.9: one wheel serves every later version). Built by maturin from
//! `pyproject.toml`; the pure-Python part (re-exports, `vuma.kernels`, type stubs) is in
//! `python/vuma`.
//!
//! How VUMA's concepts map here:
//!
//! | Python | Rust |
//! | --- | --- |
//! | `UnifiedMemoryManager(...)` | [`vuma::UnifiedMemoryManager`] (built with its builder) |
//! | `GPUWorkload(id, type, complexity_score, memory_requirement_mb, priority, kernel=, args=)` | [`vuma::GpuWorkload`]; `type` through `WorkloadKind::from_str`, `priority` through [`vuma::Priority::from_level`]; no kernel: metadata-only, planned |
//! | `Buffer` | `Arc<`[`vuma::UnifiedBuffer`]`>` with the dtype and shape it came from |
//! | `Kernel(name, params, cuda=, wgsl=, …)`, `vuma.kernels.*` | [`vuma::core::Kernel`] with a [`vuma::core::Signature`] |
//! | `WorkloadReport` | [`vuma::WorkloadReport`] (`repr` is its `Display`, `to_dict` its JSON) |
//! | `VumaError` and one subclass per kind | [`vuma::Error`] |
//!
//! Device work (building the manager, `process_workload`, `plan`, `prefetch`, buffer reads
//! and writes) runs with the GIL released. Bytes come in through `__array_interface__`
//! (numpy), `__dlpack__` (torch and others) or `bytes`, read in place; device tensors are
//! copied through the host (`.cpu()`). `Buffer.__dlpack__` exports a host snapshot.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

use pyo3::prelude::*;

mod buffer;
mod device;
mod dlpack;
mod errors;
mod hostdata;
mod kernel;
mod manager;
mod report;
mod workload;

/// The extension module `vuma._vuma` (re-exported by the `vuma` package).
#[pymodule]
fn _vuma(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<manager::PyManager>()?;
    m.add_class::<workload::PyWorkload>()?;
    m.add_class::<buffer::PyBuffer>()?;
    m.add_class::<kernel::PyKernel>()?;
    m.add_class::<report::PyReport>()?;
    m.add_function(wrap_pyfunction!(kernel::builtin_kernel, m)?)?;
    m.add_function(wrap_pyfunction!(kernel::launch_for, m)?)?;
    m.add("BUILTIN_KERNELS", kernel::BUILTIN.to_vec())?;
    m.add(
        "KIND_NAMES",
        vuma::sched::KIND_NAMES
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>(),
    )?;
    errors::register(m)?;
    Ok(())
}
