//! `vuma.WorkloadReport`: every decision of one `process_workload` (or its plan).

use std::sync::Arc;

use pyo3::prelude::*;
use vuma::{UnifiedMemoryManager, WorkloadReport};

use crate::buffer::PyBuffer;

/// A JSON value as Python objects (through the `json` module).
pub(crate) fn json_to_py<'py>(
    py: Python<'py>,
    v: &serde_json::Value,
) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (v.to_string(),))
}

/// What VUMA did (or, for a plan, would do) with a workload: tier, device and why,
/// placement and bytes moved per buffer, time per stage. `repr()` prints it as text;
/// `to_dict()` gives every field.
#[pyclass(name = "WorkloadReport", module = "vuma", frozen)]
#[derive(Debug)]
pub struct PyReport {
    r: WorkloadReport,
    mgr: Arc<UnifiedMemoryManager>,
}

impl PyReport {
    pub(crate) fn new(r: WorkloadReport, mgr: Arc<UnifiedMemoryManager>) -> Self {
        PyReport { r, mgr }
    }

    /// The report as text.
    pub(crate) fn text(&self) -> String {
        self.r.to_string()
    }
}

#[pymethods]
impl PyReport {
    fn __repr__(&self) -> String {
        self.text()
    }

    fn __str__(&self) -> String {
        self.text()
    }

    /// Every field, as nested dicts and lists.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &self.r.to_json())
    }

    /// The report as a JSON string.
    fn to_json(&self) -> String {
        self.r.to_json().to_string()
    }

    /// The workload's id.
    #[getter]
    fn workload(&self) -> String {
        self.r.workload.clone()
    }

    /// Its kind.
    #[getter]
    fn kind(&self) -> String {
        self.r.kind.clone()
    }

    /// Whether it was planned, not run.
    #[getter]
    fn planned(&self) -> bool {
        self.r.is_planned()
    }

    /// The device chosen.
    #[getter]
    fn device(&self) -> String {
        self.r.device.clone()
    }

    /// Its backend (`"cuda"`, `"vulkan"`, `"host"`).
    #[getter]
    fn backend(&self) -> String {
        self.r.backend.to_string()
    }

    /// The device's tier (`"high tide"`, `"low tide"`).
    #[getter]
    fn tier(&self) -> String {
        self.r.tier.to_string()
    }

    /// The tier the classification chose.
    #[getter]
    fn classified_tier(&self) -> String {
        self.r.classified.to_string()
    }

    /// Why this device, in the scheduler's words.
    #[getter]
    fn reason(&self) -> String {
        self.r.reason.clone()
    }

    /// Bytes moved in all.
    #[getter]
    fn bytes_moved(&self) -> u64 {
        self.r.bytes_moved
    }

    /// Bytes that crossed the link.
    #[getter]
    fn link_bytes(&self) -> u64 {
        self.r.link_bytes
    }

    /// Bytes that did not have to cross.
    #[getter]
    fn bytes_saved(&self) -> u64 {
        self.r.bytes_saved
    }

    /// Total time, seconds.
    #[getter]
    fn total_s(&self) -> f64 {
        self.r.times.total().as_secs_f64()
    }

    /// The managed buffer a plan reserved (lazily: no memory until used), or `None`.
    #[getter]
    fn reserved_buffer(&self) -> Option<PyBuffer> {
        self.r
            .plan
            .as_ref()
            .and_then(|p| p.reserved.clone())
            .map(|b| PyBuffer::new(b, self.mgr.clone(), None, None))
    }
}
