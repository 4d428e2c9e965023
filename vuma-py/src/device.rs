//! Naming a device from Python: an index, a backend name, or part of a device name.

use pyo3::prelude::*;
use pyo3::types::{PyInt, PyString};
use vuma::core::DeviceKind;
use vuma::UnifiedMemoryManager;

use crate::errors::invalid;

/// The index of the device `spec` names: an index, a backend name (`"cuda"`, `"vulkan"`,
/// `"host"`: its first device), or part of a device's name (case-insensitive). `None`: the
/// first discrete GPU, else the first device that is not the host, else the host.
pub(crate) fn pick_device(
    mgr: &UnifiedMemoryManager,
    spec: Option<&Bound<'_, PyAny>>,
) -> PyResult<usize> {
    let devs = mgr.devices();
    let Some(spec) = spec.filter(|s| !s.is_none()) else {
        let first =
            |f: &dyn Fn(&vuma::core::DeviceInfo) -> bool| devs.iter().position(|d| f(d.info()));
        return Ok(first(&|i| i.kind == DeviceKind::Discrete)
            .or_else(|| first(&|i| i.backend != vuma::core::Backend::Host))
            .unwrap_or(0));
    };
    if spec.is_instance_of::<PyInt>() {
        let i: usize = spec.extract()?;
        return if i < devs.len() {
            Ok(i)
        } else {
            Err(invalid(format!("no device {i}: there are {}", devs.len())))
        };
    }
    if spec.is_instance_of::<PyString>() {
        let s: String = spec.extract::<String>()?.to_lowercase();
        if let Some(i) = devs.iter().position(|d| d.info().backend.to_string() == s) {
            return Ok(i);
        }
        if let Some(i) = devs
            .iter()
            .position(|d| d.info().name.to_lowercase().contains(&s))
        {
            return Ok(i);
        }
        let names: Vec<String> = devs.iter().map(|d| d.info().name.clone()).collect();
        return Err(invalid(format!(
            "no device matches `{s}`; devices: {names:?}"
        )));
    }
    Err(invalid(
        "a device is an index, a backend name or part of a device name",
    ))
}
