//! VUMA's error enum as Python exceptions: one class per kind, all subclasses of
//! `vuma.VumaError`.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use vuma::Error;

create_exception!(
    vuma,
    VumaError,
    PyException,
    "Base class of every error VUMA raises."
);
create_exception!(
    vuma,
    UnavailableError,
    VumaError,
    "A backend cannot be used on this machine (no driver, no loader, no device)."
);
create_exception!(
    vuma,
    OutOfMemoryError,
    VumaError,
    "A device has no free memory right now (transient: free or evict, then retry)."
);
create_exception!(
    vuma,
    TooLargeError,
    VumaError,
    "The request can never fit on the device."
);
create_exception!(
    vuma,
    BudgetExceededError,
    VumaError,
    "The device budget is full of copies in use (transient: retry when work completes)."
);
create_exception!(
    vuma,
    ZeroSizeError,
    VumaError,
    "A zero-byte buffer or transfer was requested."
);
create_exception!(
    vuma,
    OutOfRangeError,
    VumaError,
    "A range reaches past the end of a buffer."
);
create_exception!(
    vuma,
    ElementSizeError,
    VumaError,
    "A buffer is not a whole number of elements of the type asked for."
);
create_exception!(
    vuma,
    InvalidArgumentError,
    VumaError,
    "An argument is malformed (wrong count, type, access, or a bound a kernel would break)."
);
create_exception!(
    vuma,
    WrongDeviceError,
    VumaError,
    "A buffer was handed to a device that does not own it."
);
create_exception!(
    vuma,
    UnsupportedPlacementError,
    VumaError,
    "The device cannot provide this placement."
);
create_exception!(
    vuma,
    NoKernelVariantError,
    VumaError,
    "A kernel has no variant for the device's backend."
);
create_exception!(
    vuma,
    NoEligibleDeviceError,
    VumaError,
    "No available device can run the workload (no kernel variant for any of them)."
);
create_exception!(
    vuma,
    CompileError,
    VumaError,
    "Compiling a kernel failed (the message has the compiler's log)."
);
create_exception!(vuma, KernelError, VumaError, "A kernel reported a failure.");
create_exception!(
    vuma,
    CorruptError,
    VumaError,
    "Compressed data is corrupt or truncated."
);
create_exception!(
    vuma,
    DeviceLostError,
    VumaError,
    "The device was lost; copies elsewhere are intact."
);
create_exception!(vuma, BackendError, VumaError, "A driver call failed.");
create_exception!(
    vuma,
    QueueFullError,
    VumaError,
    "A device's work queue is full (transient)."
);
create_exception!(
    vuma,
    CancelledError,
    VumaError,
    "A job was cancelled before it ran."
);
create_exception!(
    vuma,
    InUseError,
    VumaError,
    "A kernel holds the buffer for writing (transient: retry when it completes)."
);
create_exception!(
    vuma,
    DataLostError,
    VumaError,
    "A buffer's only valid copy was being written by a kernel that failed."
);

/// The Python exception for a VUMA error (its message is the error's text).
pub fn to_py(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::Unavailable { .. } => UnavailableError::new_err(msg),
        Error::OutOfMemory { .. } => OutOfMemoryError::new_err(msg),
        Error::TooLarge { .. } => TooLargeError::new_err(msg),
        Error::BudgetExceeded { .. } => BudgetExceededError::new_err(msg),
        Error::ZeroSize { .. } => ZeroSizeError::new_err(msg),
        Error::OutOfRange { .. } => OutOfRangeError::new_err(msg),
        Error::ElementSize { .. } => ElementSizeError::new_err(msg),
        Error::InvalidArgument(_) => InvalidArgumentError::new_err(msg),
        Error::WrongDevice { .. } => WrongDeviceError::new_err(msg),
        Error::UnsupportedPlacement { .. } => UnsupportedPlacementError::new_err(msg),
        Error::NoKernelVariant { .. } => NoKernelVariantError::new_err(msg),
        Error::NoEligibleDevice(_) => NoEligibleDeviceError::new_err(msg),
        Error::Compile { .. } => CompileError::new_err(msg),
        Error::Kernel { .. } => KernelError::new_err(msg),
        Error::Corrupt { .. } => CorruptError::new_err(msg),
        Error::DeviceLost { .. } => DeviceLostError::new_err(msg),
        Error::Backend { .. } => BackendError::new_err(msg),
        Error::QueueFull { .. } => QueueFullError::new_err(msg),
        Error::Cancelled(_) => CancelledError::new_err(msg),
        Error::InUse { .. } => InUseError::new_err(msg),
        Error::DataLost { .. } => DataLostError::new_err(msg),
        _ => VumaError::new_err(msg),
    }
}

/// `Result<T, vuma::Error>` into `PyResult<T>`.
pub trait IntoPy<T> {
    /// The value, or the matching Python exception.
    fn py_err(self) -> PyResult<T>;
}

impl<T> IntoPy<T> for vuma::Result<T> {
    fn py_err(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}

/// An [`InvalidArgumentError`] with `msg`.
pub fn invalid(msg: impl Into<String>) -> PyErr {
    to_py(Error::InvalidArgument(msg.into()))
}

/// Registers every exception class in the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("VumaError", py.get_type::<VumaError>())?;
    m.add("UnavailableError", py.get_type::<UnavailableError>())?;
    m.add("OutOfMemoryError", py.get_type::<OutOfMemoryError>())?;
    m.add("TooLargeError", py.get_type::<TooLargeError>())?;
    m.add("BudgetExceededError", py.get_type::<BudgetExceededError>())?;
    m.add("ZeroSizeError", py.get_type::<ZeroSizeError>())?;
    m.add("OutOfRangeError", py.get_type::<OutOfRangeError>())?;
    m.add("ElementSizeError", py.get_type::<ElementSizeError>())?;
    m.add(
        "InvalidArgumentError",
        py.get_type::<InvalidArgumentError>(),
    )?;
    m.add("WrongDeviceError", py.get_type::<WrongDeviceError>())?;
    m.add(
        "UnsupportedPlacementError",
        py.get_type::<UnsupportedPlacementError>(),
    )?;
    m.add(
        "NoKernelVariantError",
        py.get_type::<NoKernelVariantError>(),
    )?;
    m.add(
        "NoEligibleDeviceError",
        py.get_type::<NoEligibleDeviceError>(),
    )?;
    m.add("CompileError", py.get_type::<CompileError>())?;
    m.add("KernelError", py.get_type::<KernelError>())?;
    m.add("CorruptError", py.get_type::<CorruptError>())?;
    m.add("DeviceLostError", py.get_type::<DeviceLostError>())?;
    m.add("BackendError", py.get_type::<BackendError>())?;
    m.add("QueueFullError", py.get_type::<QueueFullError>())?;
    m.add("CancelledError", py.get_type::<CancelledError>())?;
    m.add("InUseError", py.get_type::<InUseError>())?;
    m.add("DataLostError", py.get_type::<DataLostError>())?;
    Ok(())
}
