//! Reading the bytes of Python objects: `bytes`, `bytearray`, numpy arrays (the array
//! interface), anything with `__dlpack__` (CPU torch tensors, numpy, CuPy, JAX), and the
//! buffer protocol as a fallback.
//!
//! The stable ABI of CPython 3.9 has no buffer protocol (`PyObject_GetBuffer` joined it in
//! 3.11), so objects that offer only that are read through `memoryview(obj).tobytes()`: one
//! extra copy. numpy arrays and tensors are read in place.

use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyTuple};

use crate::dlpack;
use crate::errors::invalid;

/// A read-only view of a Python object's bytes, kept valid by a strong reference to the
/// object that owns them.
pub struct HostView<'py> {
    ptr: *const u8,
    len: usize,
    /// Whether the bytes may be read with the GIL released: their owner cannot free, move
    /// or resize them meanwhile (immutable `bytes`; numpy arrays and DLPack tensors, whose
    /// memory stays put while referenced).
    detachable: bool,
    _owner: Bound<'py, PyAny>,
    /// numpy type string of the elements, when known.
    pub dtype: Option<String>,
    /// Shape, when known.
    pub shape: Option<Vec<usize>>,
}

/// A raw pointer that may cross into a closure run without the GIL.
struct SendPtr(*const u8);
// SAFETY: the pointer is only read, within `HostView::with_bytes`, while the `HostView` that
// owns a strong reference to the memory's owner is alive on the calling thread.
unsafe impl Send for SendPtr {}

impl<'py> HostView<'py> {
    /// Bytes in the view.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Runs `f` over the bytes, without the GIL when that is safe (see `detachable`).
    pub fn with_bytes<R: Send>(&self, py: Python<'py>, f: impl FnOnce(&[u8]) -> R + Send) -> R {
        if self.len == 0 {
            return f(&[]);
        }
        let p = SendPtr(self.ptr);
        let len = self.len;
        let run = move || {
            let p = p;
            // SAFETY: `ptr..ptr+len` is the owner's memory (checked when the view was made:
            // contiguous, size computed without overflow), kept alive by `_owner`, which
            // outlives this call; for non-detachable owners the GIL is held throughout, so
            // no Python code can resize them.
            let bytes = unsafe { std::slice::from_raw_parts(p.0, len) };
            f(bytes)
        };
        if self.detachable {
            py.detach(run)
        } else {
            run()
        }
    }
}

fn bytes_view<'py>(
    b: Bound<'py, PyBytes>,
    dtype: Option<String>,
    shape: Option<Vec<usize>>,
) -> HostView<'py> {
    let s = b.as_bytes();
    let (ptr, len) = (s.as_ptr(), s.len());
    HostView {
        ptr,
        len,
        detachable: true,
        _owner: b.into_any(),
        dtype: dtype.or_else(|| Some("|u1".into())),
        shape: shape.or(Some(vec![len])),
    }
}

/// The item size of a numpy type string (`<f4` → 4).
fn item_size(typestr: &str) -> Option<usize> {
    let digits: String = typestr
        .chars()
        .skip(2)
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok().filter(|n| *n > 0)
}

/// The view of an object with `__array_interface__` (numpy arrays), or `None` when its
/// data is not given as a pointer.
fn array_interface<'py>(
    obj: &Bound<'py, PyAny>,
    ai: &Bound<'py, PyDict>,
) -> PyResult<Option<HostView<'py>>> {
    let Some(data) = ai.get_item("data")? else {
        return Ok(None);
    };
    let Ok(data) = data.cast_into::<PyTuple>() else {
        return Ok(None);
    };
    let addr: usize = data.get_item(0)?.extract()?;
    let typestr: String = ai
        .get_item("typestr")?
        .ok_or_else(|| invalid("__array_interface__ without typestr"))?
        .extract()?;
    let shape: Vec<usize> = ai
        .get_item("shape")?
        .ok_or_else(|| invalid("__array_interface__ without shape"))?
        .extract()?;
    let item = item_size(&typestr)
        .ok_or_else(|| invalid(format!("array type `{typestr}` has no fixed item size")))?;
    if let Some(strides) = ai.get_item("strides")? {
        if !strides.is_none() {
            let strides: Vec<isize> = strides.extract()?;
            if strides.len() != shape.len() {
                return Err(invalid(
                    "__array_interface__ with strides and shape of different lengths",
                ));
            }
            let mut want = item as isize;
            for i in (0..shape.len()).rev() {
                if shape[i] > 1 && strides[i] != want {
                    return Err(invalid(
                        "the array is not C-contiguous: pass np.ascontiguousarray(x)",
                    ));
                }
                want = want.saturating_mul(shape[i] as isize);
            }
        }
    }
    let len = shape
        .iter()
        .try_fold(item, |a, &d| a.checked_mul(d))
        .ok_or_else(|| invalid("array size overflows"))?;
    Ok(Some(HostView {
        ptr: addr as *const u8,
        len,
        detachable: true,
        _owner: obj.clone(),
        dtype: Some(typestr),
        shape: Some(shape),
    }))
}

/// The bytes of `obj`: see the module documentation for what is accepted. Tensors on a
/// device (CUDA torch tensors) are copied to the host first with their `.cpu()` method.
pub fn view<'py>(obj: &Bound<'py, PyAny>) -> PyResult<HostView<'py>> {
    let py = obj.py();
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(bytes_view(b.clone(), None, None));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        // SAFETY: the GIL is held while the view is used (`detachable: false`), so no
        // Python code can resize the bytearray while its bytes are read.
        let s = unsafe { b.as_bytes() };
        let (ptr, len) = (s.as_ptr(), s.len());
        return Ok(HostView {
            ptr,
            len,
            detachable: false,
            _owner: obj.clone(),
            dtype: Some("|u1".into()),
            shape: Some(vec![len]),
        });
    }
    if let Ok(ai) = obj.getattr("__array_interface__") {
        if let Ok(ai) = ai.cast_into::<PyDict>() {
            if let Some(v) = array_interface(obj, &ai)? {
                return Ok(v);
            }
        }
    }
    if obj.hasattr("__dlpack__")? {
        let on_host = match obj.call_method0("__dlpack_device__") {
            Ok(d) => {
                let (t, _): (i32, i32) = d.extract()?;
                t == dlpack::CPU || t == dlpack::CUDA_HOST
            }
            Err(_) => true,
        };
        if !on_host {
            if obj.hasattr("cpu")? {
                // A device tensor: copied through the host (VUMA has no external device
                // copies), then read like any host tensor.
                let host = obj.call_method0("cpu")?;
                return view(&host);
            }
            return Err(invalid(
                "the tensor lives on a device and has no .cpu() method: copy it to the host first",
            ));
        }
        let cap = obj.call_method0("__dlpack__")?;
        let t = dlpack::import(&cap)?;
        if t.device.device_type != dlpack::CPU && t.device.device_type != dlpack::CUDA_HOST {
            return Err(invalid(format!(
                "DLPack device type {} is not host memory",
                t.device.device_type
            )));
        }
        return Ok(HostView {
            ptr: t.ptr,
            len: t.len,
            detachable: true,
            _owner: cap,
            dtype: t.dtype,
            shape: Some(t.shape),
        });
    }
    let mv = py
        .import("builtins")?
        .getattr("memoryview")?
        .call1((obj,))
        .map_err(|_| {
            invalid(format!(
                "cannot read the bytes of a `{}`: it has neither the buffer protocol, \
                 __array_interface__ nor __dlpack__",
                obj.get_type()
                    .name()
                    .map_or_else(|_| "?".to_string(), |n| n.to_string())
            ))
        })?;
    let format: String = mv.getattr("format")?.extract()?;
    let shape: Vec<usize> = mv.getattr("shape")?.extract()?;
    let bytes = mv.call_method0("tobytes")?.cast_into::<PyBytes>()?;
    Ok(bytes_view(
        bytes,
        struct_format_typestr(&format),
        Some(shape),
    ))
}

/// The numpy type string of a `struct` format character (native order is little-endian on
/// every machine VUMA runs on).
fn struct_format_typestr(f: &str) -> Option<String> {
    let f = f.trim_start_matches(['@', '=', '<']);
    Some(
        match f {
            "B" | "c" => "|u1",
            "b" => "|i1",
            "?" => "|b1",
            "h" => "<i2",
            "H" => "<u2",
            "i" => "<i4",
            "I" => "<u4",
            "l" | "q" | "n" => "<i8",
            "L" | "Q" | "N" => "<u8",
            "e" => "<f2",
            "f" => "<f4",
            "d" => "<f8",
            _ => return None,
        }
        .to_string(),
    )
}
