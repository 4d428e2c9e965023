//! DLPack (the legacy, unversioned `"dltensor"` capsule, which every producer and consumer
//! speaks): reading a host tensor's bytes in, and exporting a host snapshot out.
//!
//! Only the ABI structs are declared here (DLPack's `dlpack.h`, stable since 0.6); device
//! tensors are not read: the caller copies them to the host first.

use std::ffi::{c_void, CStr};

use pyo3::ffi;
use pyo3::prelude::*;

use crate::errors::invalid;

/// `DLDevice`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DlDevice {
    /// 1 CPU, 2 CUDA, 3 CUDA host (pinned), 7 Vulkan, …
    pub device_type: i32,
    /// Device ordinal.
    pub device_id: i32,
}

/// `DLDataType`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DlDataType {
    /// 0 int, 1 uint, 2 float, 4 bfloat, 6 bool.
    pub code: u8,
    /// Bits per lane.
    pub bits: u8,
    /// Lanes (1 for scalars).
    pub lanes: u16,
}

/// `DLTensor`.
#[repr(C)]
#[derive(Debug)]
struct DlTensor {
    data: *mut c_void,
    device: DlDevice,
    ndim: i32,
    dtype: DlDataType,
    shape: *mut i64,
    strides: *mut i64,
    byte_offset: u64,
}

/// `DLManagedTensor`.
#[repr(C)]
#[derive(Debug)]
struct DlManagedTensor {
    dl_tensor: DlTensor,
    manager_ctx: *mut c_void,
    deleter: Option<unsafe extern "C" fn(*mut DlManagedTensor)>,
}

/// The capsule name of an unconsumed legacy DLPack tensor.
const DLTENSOR: &CStr = c"dltensor";

/// DLPack device types VUMA reads in place.
pub const CPU: i32 = 1;
/// CUDA host (pinned) memory: readable by the CPU.
pub const CUDA_HOST: i32 = 3;

/// The numpy type string of a DLPack type (`None` where numpy has none, e.g. bfloat16).
pub fn typestr(t: DlDataType) -> Option<String> {
    if t.lanes != 1 || !t.bits.is_multiple_of(8) || t.bits == 0 {
        return None;
    }
    let n = t.bits / 8;
    let order = if n == 1 { '|' } else { '<' };
    match t.code {
        0 => Some(format!("{order}i{n}")),
        1 => Some(format!("{order}u{n}")),
        2 => Some(format!("{order}f{n}")),
        6 if n == 1 => Some("|b1".into()),
        _ => None,
    }
}

/// The DLPack type of a numpy type string (`<f4`, `|u1`, …), if it has one.
pub fn from_typestr(s: &str) -> Option<DlDataType> {
    let b = s.as_bytes();
    if b.len() < 3 || !matches!(b[0], b'<' | b'|' | b'=') {
        return None;
    }
    let n: u8 = s[2..].parse().ok()?;
    let code = match b[1] {
        b'i' => 0,
        b'u' => 1,
        b'f' => 2,
        b'b' if n == 1 => 6,
        _ => return None,
    };
    Some(DlDataType {
        code,
        bits: n.checked_mul(8)?,
        lanes: 1,
    })
}

/// A host tensor read from a DLPack capsule.
#[derive(Debug)]
pub struct Imported {
    /// First byte.
    pub ptr: *const u8,
    /// Bytes (elements × element size).
    pub len: usize,
    /// Where the data lives.
    pub device: DlDevice,
    /// numpy type string, or `"bfloat16"`, or `None` when unknown.
    pub dtype: Option<String>,
    /// Shape.
    pub shape: Vec<usize>,
}

/// Reads the tensor in `capsule` (the result of `obj.__dlpack__()`), which must stay alive
/// (the caller holds it) while `ptr` is used. Errors for non-contiguous tensors, vector
/// lanes and sizes that overflow.
pub fn import(capsule: &Bound<'_, PyAny>) -> PyResult<Imported> {
    // SAFETY: `capsule` is a live Python object and the GIL is held; `PyCapsule_GetPointer`
    // checks the type and the name and returns NULL with an exception set when either is
    // wrong.
    let p = unsafe { ffi::PyCapsule_GetPointer(capsule.as_ptr(), DLTENSOR.as_ptr()) }
        as *const DlManagedTensor;
    if p.is_null() {
        return Err(PyErr::take(capsule.py())
            .unwrap_or_else(|| invalid("__dlpack__ did not return a \"dltensor\" capsule")));
    }
    // SAFETY: a valid "dltensor" capsule points to a `DLManagedTensor` that its producer
    // keeps alive until its deleter runs, which happens only when the capsule (held by the
    // caller) is destroyed unconsumed.
    let t = unsafe { &(*p).dl_tensor };
    if t.ndim < 0 || (t.ndim > 0 && t.shape.is_null()) {
        return Err(invalid("DLPack tensor with a malformed shape"));
    }
    let nd = t.ndim as usize;
    let shape: &[i64] = if nd == 0 {
        &[]
    } else {
        // SAFETY: DLPack guarantees `shape` (and `strides` when not NULL) point to `ndim`
        // int64 values that live as long as the tensor.
        unsafe { std::slice::from_raw_parts(t.shape, nd) }
    };
    let strides: Option<&[i64]> = if t.strides.is_null() || nd == 0 {
        None
    } else {
        // SAFETY: as for `shape` above.
        Some(unsafe { std::slice::from_raw_parts(t.strides, nd) })
    };
    if t.dtype.lanes != 1 || !t.dtype.bits.is_multiple_of(8) || t.dtype.bits == 0 {
        return Err(invalid(format!(
            "DLPack type code {} with {} bits x {} lanes is not a whole-byte scalar type",
            t.dtype.code, t.dtype.bits, t.dtype.lanes
        )));
    }
    let item = usize::from(t.dtype.bits / 8);
    let mut dims = Vec::with_capacity(nd);
    for &d in shape {
        dims.push(
            usize::try_from(d).map_err(|_| invalid("DLPack tensor with a negative dimension"))?,
        );
    }
    let elems = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| invalid("DLPack tensor size overflows"))?;
    if let Some(st) = strides {
        // C order: the last dimension has stride 1, each one before the product after it.
        let mut want = 1i64;
        for i in (0..nd).rev() {
            if dims[i] > 1 && st[i] != want {
                return Err(invalid(
                    "the tensor is not contiguous: pass a contiguous copy (`x.contiguous()`, `np.ascontiguousarray(x)`)",
                ));
            }
            want = want.saturating_mul(shape[i]);
        }
    }
    let len = elems
        .checked_mul(item)
        .ok_or_else(|| invalid("DLPack tensor size overflows"))?;
    let dtype = if t.dtype.code == 4 && t.dtype.bits == 16 {
        Some("bfloat16".to_string())
    } else {
        typestr(t.dtype)
    };
    Ok(Imported {
        ptr: (t.data as *const u8).wrapping_add(t.byte_offset as usize),
        len,
        device: t.device,
        dtype,
        shape: dims,
    })
}

/// What an exported capsule owns: the tensor header (first, so that a pointer to it is a
/// pointer to the whole), its shape and a host copy of the data.
#[repr(C)]
struct Export {
    managed: DlManagedTensor,
    shape: Vec<i64>,
    data: Vec<u8>,
}

/// The exported tensor's deleter: frees what [`export`] allocated.
///
/// # Safety
/// `m` is NULL or the `managed` field of an `Export` leaked by [`export`], not freed yet.
unsafe extern "C" fn free_export(m: *mut DlManagedTensor) {
    if !m.is_null() {
        // SAFETY: per the contract, `m` is the first field of a `#[repr(C)] Export` that
        // `export` leaked with `Box::into_raw`; it is freed exactly once (the consumer calls
        // the deleter, or the capsule destructor does when nobody consumed it).
        drop(unsafe { Box::from_raw(m.cast::<Export>()) });
    }
}

/// Capsule destructor: frees the tensor unless a consumer took it (and renamed the capsule
/// `"used_dltensor"`, taking over the deleter).
///
/// # Safety
/// Called by Python with the GIL held, on a capsule made by [`export`].
unsafe extern "C" fn capsule_destructor(cap: *mut ffi::PyObject) {
    // SAFETY: `cap` is the capsule being destroyed (GIL held). `PyCapsule_IsValid` only
    // compares names; when it is still "dltensor" nobody consumed it and the pointer is the
    // `DlManagedTensor` of an `Export` that this destructor frees once.
    unsafe {
        if ffi::PyCapsule_IsValid(cap, DLTENSOR.as_ptr()) == 1 {
            let m = ffi::PyCapsule_GetPointer(cap, DLTENSOR.as_ptr()).cast::<DlManagedTensor>();
            if let Some(d) = m.as_ref().and_then(|m| m.deleter) {
                d(m);
            }
        } else {
            // A consumed capsule has no exception to report; clear what IsValid may set.
            ffi::PyErr_Clear();
        }
    }
}

/// A `"dltensor"` capsule owning `data` (host memory, C-contiguous `shape` of `dtype`).
pub fn export<'py>(
    py: Python<'py>,
    data: Vec<u8>,
    shape: Vec<i64>,
    dtype: DlDataType,
) -> PyResult<Bound<'py, PyAny>> {
    let e = Box::into_raw(Box::new(Export {
        managed: DlManagedTensor {
            dl_tensor: DlTensor {
                data: std::ptr::null_mut(),
                device: DlDevice {
                    device_type: CPU,
                    device_id: 0,
                },
                ndim: shape.len() as i32,
                dtype,
                shape: std::ptr::null_mut(),
                strides: std::ptr::null_mut(),
                byte_offset: 0,
            },
            manager_ctx: std::ptr::null_mut(),
            deleter: Some(free_export),
        },
        shape,
        data,
    }));
    // SAFETY: `e` was just leaked from a Box and is exclusively ours until the capsule
    // owns it; the vectors' heap buffers do not move with the box, so the pointers into
    // them stay valid for the capsule's life. On failure the box is reclaimed once.
    unsafe {
        (*e).managed.dl_tensor.data = (*e).data.as_mut_ptr().cast();
        (*e).managed.dl_tensor.shape = (*e).shape.as_mut_ptr();
        (*e).managed.manager_ctx = e.cast();
        let cap = ffi::PyCapsule_New(e.cast(), DLTENSOR.as_ptr(), Some(capsule_destructor));
        if cap.is_null() {
            drop(Box::from_raw(e));
            return Err(PyErr::take(py).unwrap_or_else(|| invalid("PyCapsule_New failed")));
        }
        Ok(Bound::from_owned_ptr(py, cap))
    }
}
