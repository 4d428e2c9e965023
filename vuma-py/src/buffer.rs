//! `vuma.Buffer`: a unified buffer seen from Python.

use std::sync::Arc;

use pyo3::exceptions::{PyBufferError, PyRuntimeWarning};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict};
use vuma::{UnifiedBuffer, UnifiedMemoryManager};

use crate::device::pick_device;
use crate::dlpack::{self, DlDataType};
use crate::errors::IntoPy;
use crate::hostdata;

/// One logical allocation, valid on the host and on any device; VUMA moves it where
/// workloads need it. Create it with `UnifiedMemoryManager.create_buffer` or
/// `create_buffer_from`.
#[pyclass(name = "Buffer", module = "vuma", frozen)]
#[derive(Debug)]
pub struct PyBuffer {
    pub(crate) buf: Arc<UnifiedBuffer>,
    pub(crate) mgr: Arc<UnifiedMemoryManager>,
    dtype: Option<String>,
    shape: Option<Vec<usize>>,
}

impl PyBuffer {
    pub(crate) fn new(
        buf: Arc<UnifiedBuffer>,
        mgr: Arc<UnifiedMemoryManager>,
        dtype: Option<String>,
        shape: Option<Vec<usize>>,
    ) -> Self {
        PyBuffer {
            buf,
            mgr,
            dtype,
            shape,
        }
    }

    /// The element type string and size numpy and DLPack use (`"|u1"`, 1 when unknown;
    /// bfloat16 as its raw 16-bit pattern).
    fn elem(&self, want: Option<&str>) -> PyResult<(String, usize)> {
        let t = match want.or(self.dtype.as_deref()) {
            None => "|u1".to_string(),
            Some("bfloat16") => "<u2".to_string(),
            Some(t) => t.to_string(),
        };
        let size = dlpack::from_typestr(&t).map_or(1, |d| usize::from(d.bits / 8));
        Ok((t, size))
    }

    /// The shape to present for elements of `item` bytes: the recorded one when it covers
    /// the buffer exactly, else one flat dimension.
    fn shape_for(&self, item: usize) -> PyResult<Vec<usize>> {
        let n = self.buf.len() as usize;
        if !n.is_multiple_of(item) {
            return Err(crate::errors::to_py(vuma::Error::ElementSize {
                bytes: n as u64,
                elem: "requested dtype",
                elem_size: item,
            }));
        }
        match &self.shape {
            Some(s)
                if s.iter()
                    .try_fold(item, |a, &d| a.checked_mul(d))
                    .is_some_and(|b| b == n) =>
            {
                Ok(s.clone())
            }
            _ => Ok(vec![n / item]),
        }
    }

    fn read_all(&self, py: Python<'_>) -> PyResult<Vec<u8>> {
        let (mgr, buf) = (&self.mgr, &self.buf);
        py.detach(|| mgr.to_vec(buf)).py_err()
    }
}

#[pymethods]
impl PyBuffer {
    /// Size in bytes.
    #[getter]
    fn nbytes(&self) -> u64 {
        self.buf.len()
    }

    /// The buffer's id (as reports show it: `#id`).
    #[getter]
    fn id(&self) -> u64 {
        self.buf.id().0
    }

    /// Element type (numpy type string such as `"<f4"`, or `"bfloat16"`), when known.
    #[getter]
    fn dtype(&self) -> Option<String> {
        self.dtype.clone()
    }

    /// Shape, when known.
    #[getter]
    fn shape(&self) -> Option<Vec<usize>> {
        self.shape.clone()
    }

    fn __len__(&self) -> usize {
        self.buf.len() as usize
    }

    fn __repr__(&self) -> String {
        format!(
            "Buffer(#{}, {} bytes{}{})",
            self.buf.id().0,
            self.buf.len(),
            self.dtype
                .as_ref()
                .map_or_else(String::new, |d| format!(", dtype={d}")),
            self.shape
                .as_ref()
                .map_or_else(String::new, |s| format!(", shape={s:?}")),
        )
    }

    /// The whole content as `bytes` (brought back from a device if the host copy is stale).
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let (mgr, buf) = (&self.mgr, &self.buf);
        PyBytes::new_with(py, buf.len() as usize, |out| {
            py.detach(|| mgr.read(buf, 0, out)).py_err()
        })
    }

    /// The content as a new (writable) numpy array of `dtype` (default: the type it was
    /// created from, else `uint8`; bfloat16 comes back as its raw `uint16` bits), shaped as
    /// the source was when that shape covers the buffer. Needs numpy.
    #[pyo3(signature = (dtype = None))]
    fn to_numpy<'py>(
        &self,
        py: Python<'py>,
        dtype: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let np = py.import("numpy")?;
        let want: Option<String> = match dtype {
            None => None,
            Some(d) => Some(
                np.getattr("dtype")?
                    .call1((d,))?
                    .getattr("str")?
                    .extract()?,
            ),
        };
        let (t, item) = self.elem(want.as_deref())?;
        let shape = self.shape_for(item)?;
        let (mgr, buf) = (&self.mgr, &self.buf);
        let ba = PyByteArray::new_with(py, buf.len() as usize, |out| {
            py.detach(|| mgr.read(buf, 0, out)).py_err()
        })?;
        let kw = PyDict::new(py);
        kw.set_item("dtype", t)?;
        let flat = np.getattr("frombuffer")?.call((ba,), Some(&kw))?;
        flat.call_method1("reshape", (shape,))
    }

    /// Writes `data` (bytes, a numpy array, a CPU tensor…) at byte `offset`; copies on
    /// devices become invalid.
    #[pyo3(signature = (data, offset = 0))]
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>, offset: u64) -> PyResult<()> {
        let v = hostdata::view(data)?;
        let (mgr, buf) = (&self.mgr, &self.buf);
        v.with_bytes(py, |b| mgr.write(buf, offset, b)).py_err()
    }

    /// Where the buffer has copies: a list of `(location, placement, valid)`; the location
    /// is `"host memory"` or a device's name.
    fn residency(&self) -> Vec<(String, Option<String>, bool)> {
        self.mgr
            .memory()
            .residency(&self.buf)
            .into_iter()
            .map(|(l, p, v)| {
                let loc = match l {
                    vuma::core::Location::Host => "host memory".to_string(),
                    vuma::core::Location::Device(i) => self
                        .mgr
                        .devices()
                        .get(i)
                        .map_or_else(|| format!("device {i}"), |d| d.info().name.clone()),
                };
                (loc, p.map(|p| p.as_str().to_string()), v)
            })
            .collect()
    }

    /// Makes the buffer resident on `device` now (index, backend name such as `"cuda"`, or
    /// part of a device name; default: the first discrete GPU, else the first device that
    /// is not the host). Returns what it did: placement, whether the device uses the host
    /// copy in place (`in_place`: nothing allocated or copied there), bytes moved, and each
    /// transfer with the path's decision. The GIL is released meanwhile.
    #[pyo3(signature = (device = None))]
    fn prefetch<'py>(
        &self,
        py: Python<'py>,
        device: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let index = pick_device(&self.mgr, device)?;
        let (mgr, buf) = (&self.mgr, &self.buf);
        let r = py.detach(|| mgr.memory().prefetch(buf, index)).py_err()?;
        let d = PyDict::new(py);
        d.set_item("device", mgr.devices()[index].info().name.clone())?;
        d.set_item("placement", r.placement.as_str())?;
        d.set_item("in_place", r.in_place)?;
        d.set_item("reason", r.reason)?;
        d.set_item("allocated", r.allocated)?;
        d.set_item("hit", r.hit)?;
        d.set_item("bytes_moved", r.bytes_moved)?;
        let t: Vec<Bound<'py, PyDict>> = r
            .transfers
            .iter()
            .map(|t| {
                let x = PyDict::new(py);
                x.set_item("kind", t.kind.as_str())?;
                x.set_item("path", t.path)?;
                x.set_item("decision", t.decision.clone())?;
                x.set_item("logical_bytes", t.logical_bytes)?;
                x.set_item("link_bytes", t.link_bytes)?;
                x.set_item("time_s", t.time_s)?;
                Ok(x)
            })
            .collect::<PyResult<_>>()?;
        d.set_item("transfers", t)?;
        Ok(d)
    }

    /// DLPack export of a host snapshot (a copy of the content: VUMA's own host copy is not
    /// handed out). `copy=False` is refused.
    #[pyo3(signature = (*, stream = None, max_version = None, dl_device = None, copy = None))]
    fn __dlpack__<'py>(
        &self,
        py: Python<'py>,
        stream: Option<&Bound<'py, PyAny>>,
        max_version: Option<&Bound<'py, PyAny>>,
        dl_device: Option<(i32, i32)>,
        copy: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = (stream, max_version);
        if copy == Some(false) {
            return Err(PyBufferError::new_err(
                "a VUMA buffer is exported as a host snapshot, which is a copy",
            ));
        }
        if let Some((t, _)) = dl_device {
            if t != dlpack::CPU {
                return Err(PyBufferError::new_err(
                    "a VUMA buffer is exported to the host (kDLCPU) only",
                ));
            }
        }
        let dtype = match self.dtype.as_deref() {
            Some("bfloat16") => DlDataType {
                code: 4,
                bits: 16,
                lanes: 1,
            },
            Some(t) => dlpack::from_typestr(t).unwrap_or(DlDataType {
                code: 1,
                bits: 8,
                lanes: 1,
            }),
            None => DlDataType {
                code: 1,
                bits: 8,
                lanes: 1,
            },
        };
        let item = usize::from(dtype.bits / 8);
        let shape: Vec<i64> = self
            .shape_for(item)?
            .into_iter()
            .map(|d| d as i64)
            .collect();
        let data = self.read_all(py)?;
        dlpack::export(py, data, shape, dtype)
    }

    /// `(kDLCPU, 0)`: exports are host snapshots.
    fn __dlpack_device__(&self) -> (i32, i32) {
        (dlpack::CPU, 0)
    }
}

/// A buffer from a Python object's bytes made resident on device `index`, the upload
/// overlapping the host copy's fill; when it cannot be resident there, the buffer holds the
/// bytes on the host and a `RuntimeWarning` says why.
pub(crate) fn from_object_on(
    py: Python<'_>,
    mgr: &Arc<UnifiedMemoryManager>,
    obj: &Bound<'_, PyAny>,
    index: usize,
) -> PyResult<PyBuffer> {
    let v = hostdata::view(obj)?;
    if v.len() == 0 {
        return Err(crate::errors::to_py(vuma::Error::ZeroSize {
            what: "unified buffer",
        }));
    }
    let memory = mgr.memory();
    let (buf, upload) = v
        .with_bytes(py, |b| memory.create_from_on(b, index))
        .py_err()?;
    if let Err(e) = upload {
        let name = &mgr.devices()[index].info().name;
        let msg = format!(
            "the new buffer is not resident on {name} (it holds the bytes on the host): {e}"
        )
        .replace('\0', " ");
        let msg = std::ffi::CString::new(msg).unwrap_or_default();
        let category = py.get_type::<PyRuntimeWarning>();
        PyErr::warn(py, category.as_any(), &msg, 1)?;
    }
    Ok(PyBuffer::new(
        Arc::new(buf),
        mgr.clone(),
        v.dtype.clone(),
        v.shape.clone(),
    ))
}

/// A buffer from a Python object's bytes (see `hostdata::view`).
pub(crate) fn from_object(
    py: Python<'_>,
    mgr: &Arc<UnifiedMemoryManager>,
    obj: &Bound<'_, PyAny>,
) -> PyResult<PyBuffer> {
    let v = hostdata::view(obj)?;
    if v.len() == 0 {
        return Err(crate::errors::to_py(vuma::Error::ZeroSize {
            what: "unified buffer",
        }));
    }
    let buf = v.with_bytes(py, |b| mgr.create_buffer_from(b)).py_err()?;
    Ok(PyBuffer::new(
        buf,
        mgr.clone(),
        v.dtype.clone(),
        v.shape.clone(),
    ))
}
