//! The crate's one error mapping: CUDA driver and NVRTC status codes into
//! [`vuma_core::Error`].

use std::ffi::CStr;

use cudarc::driver::sys;
use vuma_core::{Backend, Error, Result};

/// The name and description the driver gives a status code (`CUDA_ERROR_X: text`).
pub(crate) fn describe(code: sys::CUresult) -> String {
    let mut name: *const std::ffi::c_char = std::ptr::null();
    let mut text: *const std::ffi::c_char = std::ptr::null();
    // SAFETY: both calls only write a pointer to a static string owned by the driver into
    // the out-parameters; on failure they leave them untouched (null), which we check.
    let (rn, rt) = unsafe {
        (
            sys::cuGetErrorName(code, &mut name),
            sys::cuGetErrorString(code, &mut text),
        )
    };
    let s = |r: sys::CUresult, p: *const std::ffi::c_char| {
        if r == sys::CUresult::CUDA_SUCCESS && !p.is_null() {
            // SAFETY: the driver returned a valid, NUL-terminated static string.
            Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
        } else {
            None
        }
    };
    match (s(rn, name), s(rt, text)) {
        (Some(n), Some(t)) => format!("{n}: {t}"),
        (Some(n), None) => n,
        _ => format!("{code:?}"),
    }
}

/// Whether a retry of the failed call may succeed.
fn transient(code: sys::CUresult) -> bool {
    use sys::CUresult as R;
    matches!(
        code,
        R::CUDA_ERROR_OUT_OF_MEMORY
            | R::CUDA_ERROR_NOT_READY
            | R::CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES
    )
}

/// Maps a failed driver call to [`Error::Backend`] (or [`Error::DeviceLost`] for codes that
/// mean the device is gone).
pub(crate) fn cuda_error(op: &'static str, code: sys::CUresult) -> Error {
    use sys::CUresult as R;
    match code {
        // Sticky errors: the context is corrupted and every later call on it fails, so the
        // device's memory is gone for this process (copies elsewhere are intact).
        R::CUDA_ERROR_DEVICE_UNAVAILABLE
        | R::CUDA_ERROR_DEVICE_NOT_LICENSED
        | R::CUDA_ERROR_ECC_UNCORRECTABLE
        | R::CUDA_ERROR_ILLEGAL_ADDRESS
        | R::CUDA_ERROR_LAUNCH_FAILED
        | R::CUDA_ERROR_ILLEGAL_INSTRUCTION
        | R::CUDA_ERROR_MISALIGNED_ADDRESS
        | R::CUDA_ERROR_INVALID_ADDRESS_SPACE
        | R::CUDA_ERROR_INVALID_PC
        | R::CUDA_ERROR_HARDWARE_STACK_ERROR
        | R::CUDA_ERROR_ASSERT
        | R::CUDA_ERROR_CONTEXT_IS_DESTROYED => Error::DeviceLost {
            device: "cuda".into(),
            reason: format!("{op}: {}", describe(code)),
        },
        _ => Error::Backend {
            backend: Backend::Cuda,
            op,
            message: describe(code),
            transient: transient(code),
        },
    }
}

/// `Ok` for `CUDA_SUCCESS`, the mapped error otherwise.
pub(crate) fn check(op: &'static str, code: sys::CUresult) -> Result<()> {
    if code == sys::CUresult::CUDA_SUCCESS {
        Ok(())
    } else {
        Err(cuda_error(op, code))
    }
}

/// [`Error::Unavailable`] for the CUDA backend.
pub(crate) fn unavailable(reason: impl Into<String>) -> Error {
    Error::Unavailable {
        backend: Backend::Cuda,
        reason: reason.into(),
    }
}

/// Runs `f`, turning a panic (cudarc panics when a library or symbol is missing) into
/// [`Error::Unavailable`].
pub(crate) fn guard<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            Err(unavailable(format!("{what}: {msg}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_codes() {
        assert!(transient(sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY));
        assert!(!transient(sys::CUresult::CUDA_ERROR_ILLEGAL_ADDRESS));
    }

    #[test]
    fn guard_turns_panics_into_unavailable() {
        let r: Result<()> = guard("load", || panic!("Unable to dynamically load cuda"));
        match r {
            Err(Error::Unavailable { backend, reason }) => {
                assert_eq!(backend, Backend::Cuda);
                assert!(reason.contains("Unable to dynamically load"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(guard("ok", || Ok(3)).unwrap(), 3);
    }
}
