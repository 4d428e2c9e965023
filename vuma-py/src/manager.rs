//! `vuma.UnifiedMemoryManager`: VUMA's front door from Python.

use std::collections::HashMap;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use vuma::core::MemoryConfig;
use vuma::{stats, UnifiedMemoryManager};

use crate::buffer::{self, PyBuffer};
use crate::device::pick_device;
use crate::errors::IntoPy;
use crate::report::PyReport;
use crate::workload::PyWorkload;

/// VUMA's front door: the devices of every backend that starts here (CUDA, Vulkan, and the
/// host CPU), unified buffers over all of them, and the Tidal Wave scheduler deciding where
/// each `GPUWorkload` runs.
///
/// `verbose`: print each report to stdout. The default (`None`) prints plans (workloads
/// without a kernel, like the seed's) and not runs.
#[pyclass(name = "UnifiedMemoryManager", module = "vuma", frozen)]
#[derive(Debug)]
pub struct PyManager {
    pub(crate) mgr: Arc<UnifiedMemoryManager>,
    verbose: Option<bool>,
}

#[pymethods]
impl PyManager {
    #[new]
    #[pyo3(signature = (*, cuda = true, vulkan = true, host = true, hyperloop = true, host_budget = None, budgets = None, verbose = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        cuda: bool,
        vulkan: bool,
        host: bool,
        hyperloop: bool,
        host_budget: Option<u64>,
        budgets: Option<HashMap<usize, u64>>,
        verbose: Option<bool>,
    ) -> PyResult<Self> {
        let mut b = UnifiedMemoryManager::builder()
            .cuda(cuda)
            .vulkan(vulkan)
            .host(host)
            .hyperloop(hyperloop);
        if let Some(h) = host_budget {
            b = b.host_budget(h);
        }
        if let Some(budgets) = budgets {
            b = b.memory(MemoryConfig {
                budgets,
                ..MemoryConfig::default()
            });
        }
        let mgr = py.detach(|| b.build()).py_err()?;
        Ok(PyManager {
            mgr: Arc::new(mgr),
            verbose,
        })
    }

    fn __repr__(&self) -> String {
        let names: Vec<String> = self
            .mgr
            .devices()
            .iter()
            .map(|d| format!("{} [{}]", d.info().name, d.info().backend))
            .collect();
        format!("UnifiedMemoryManager(devices={names:?})")
    }

    /// The devices, in index order: name, backend, kind, tier, memory budget, L2, link.
    fn devices<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        self.mgr
            .devices()
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let info = d.info();
                let x = PyDict::new(py);
                x.set_item("index", i)?;
                x.set_item("name", info.name.clone())?;
                x.set_item("backend", info.backend.to_string())?;
                x.set_item("kind", info.kind.to_string())?;
                x.set_item(
                    "tier",
                    self.mgr.scheduler().tier_of(info.id).map(|t| t.to_string()),
                )?;
                x.set_item("memory_total", info.memory_total)?;
                x.set_item("memory_budget", self.mgr.memory().budget(i))?;
                x.set_item("l2_bytes", info.l2_bytes)?;
                x.set_item("unified_memory", info.unified_memory)?;
                x.set_item(
                    "h2d_bytes_per_s",
                    info.host_link.as_ref().map(|l| l.h2d_bytes_per_s),
                )?;
                Ok(x)
            })
            .collect()
    }

    /// What each backend contributed, or why it did not: `{backend: reason or None}`.
    fn backends(&self) -> HashMap<String, Option<String>> {
        self.mgr
            .backends()
            .iter()
            .map(|b| (b.backend.to_string(), b.error.clone()))
            .collect()
    }

    /// A new buffer of `nbytes` zero bytes; no memory is taken until it is used.
    /// `dtype`/`shape` only label it (for `to_numpy`).
    #[pyo3(signature = (nbytes, dtype = None, shape = None))]
    fn create_buffer(
        &self,
        py: Python<'_>,
        nbytes: u64,
        dtype: Option<&Bound<'_, PyAny>>,
        shape: Option<Vec<usize>>,
    ) -> PyResult<PyBuffer> {
        let dtype: Option<String> = match dtype {
            None => None,
            Some(d) if d.is_instance_of::<PyString>() && d.extract::<String>()? == "bfloat16" => {
                Some("bfloat16".into())
            }
            Some(d) => Some(
                py.import("numpy")?
                    .getattr("dtype")?
                    .call1((d,))?
                    .getattr("str")?
                    .extract()?,
            ),
        };
        let buf = self.mgr.create_buffer(nbytes).py_err()?;
        Ok(PyBuffer::new(buf, self.mgr.clone(), dtype, shape))
    }

    /// A new buffer holding a copy of `obj`'s bytes: `bytes`, `bytearray`, a numpy array, a
    /// CPU torch tensor (through `__dlpack__`), or anything with the buffer protocol. A CUDA
    /// tensor is copied through the host (`.cpu()`). Its dtype and shape are kept.
    ///
    /// With `device` (as for `Buffer.prefetch`), the buffer is made resident there too, the
    /// upload overlapping the copy into VUMA's host copy (about the time of the slower of
    /// the two, where `create_buffer_from(obj).prefetch(device)` takes their sum). When it
    /// cannot be made resident (it does not fit, the device was lost) the buffer is returned
    /// all the same, holding the bytes on the host, and a `RuntimeWarning` says why.
    #[pyo3(signature = (obj, device = None))]
    fn create_buffer_from(
        &self,
        py: Python<'_>,
        obj: &Bound<'_, PyAny>,
        device: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyBuffer> {
        match device.filter(|d| !d.is_none()) {
            None => buffer::from_object(py, &self.mgr, obj),
            Some(d) => buffer::from_object_on(py, &self.mgr, obj, pick_device(&self.mgr, Some(d))?),
        }
    }

    /// Processes a workload. With a kernel: classify, choose a device, make every buffer
    /// resident, run, and report every decision. Without one (the seed's form): plan it —
    /// managed memory reserved lazily, the device chosen and why, the transfer plan per
    /// buffer. The GIL is released while VUMA works.
    #[pyo3(signature = (workload, *, verbose = None))]
    fn process_workload(
        &self,
        py: Python<'_>,
        workload: &PyWorkload,
        verbose: Option<bool>,
    ) -> PyResult<PyReport> {
        let w = workload.build()?;
        let mgr = &self.mgr;
        let r = py.detach(|| mgr.process_workload(&w)).py_err()?;
        let print = verbose.or(self.verbose).unwrap_or(r.is_planned());
        let report = PyReport::new(r, self.mgr.clone());
        if print {
            py.import("builtins")?
                .getattr("print")?
                .call1((report.text(),))?;
        }
        Ok(report)
    }

    /// Plans a workload without running it (a dry run for a workload with a kernel).
    fn plan(&self, py: Python<'_>, workload: &PyWorkload) -> PyResult<PyReport> {
        let w = workload.build()?;
        let mgr = &self.mgr;
        let r = py.detach(|| mgr.plan(&w)).py_err()?;
        Ok(PyReport::new(r, self.mgr.clone()))
    }

    /// Makes `buffer` resident on `device` now; see `Buffer.prefetch`.
    #[pyo3(signature = (buffer, device = None))]
    fn prefetch<'py>(
        &self,
        buffer: &Bound<'py, PyBuffer>,
        device: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        buffer.call_method1("prefetch", (device,))
    }

    /// Memory statistics per location (host memory, then each device): bytes in use,
    /// peak, allocations, evictions, write-backs, bytes copied in, over the link and saved,
    /// hits and misses.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        crate::report::json_to_py(py, &stats::to_json(&self.mgr))
    }

    /// The statistics as a text table.
    fn stats_table(&self) -> String {
        stats::to_table(&self.mgr)
    }
}
