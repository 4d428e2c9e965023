//! The one error type of `vuma-core`, shared by every backend through [`Error::Backend`].

use crate::info::Backend;
use crate::placement::Placement;

/// Result alias used throughout VUMA.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in VUMA's core and in the backends that speak its vocabulary.
///
/// Variants say what the caller should do: [`Error::is_transient`] tells whether a retry
/// (after evicting, waiting or freeing) can succeed; everything else is final for the input
/// that caused it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The backend cannot be used on this machine (no driver, no loader, no device).
    /// Final for this backend: use another one.
    #[error("{backend} backend unavailable: {reason}")]
    Unavailable {
        /// Which backend.
        backend: Backend,
        /// Why, in words a user can act on.
        reason: String,
    },
    /// The device has no free memory right now. Transient: evict or free, then retry.
    #[error("out of memory on {device}: {requested} bytes requested")]
    OutOfMemory {
        /// Device name.
        device: String,
        /// Bytes asked for.
        requested: u64,
    },
    /// The request can never fit on this device. Final.
    #[error("{requested} bytes can never fit on {device} (at most {max} bytes)")]
    TooLarge {
        /// Device name.
        device: String,
        /// Bytes asked for.
        requested: u64,
        /// The largest size that could ever fit.
        max: u64,
    },
    /// The configured budget of a device is exhausted and nothing can be evicted. Transient:
    /// wait until buffers in use are released, or raise the budget.
    #[error("budget of {device} exceeded: {requested} bytes requested, {in_use} of {budget} in use and nothing evictable")]
    BudgetExceeded {
        /// Device name.
        device: String,
        /// Bytes asked for.
        requested: u64,
        /// Bytes in use.
        in_use: u64,
        /// The budget.
        budget: u64,
    },
    /// A zero-byte buffer or transfer was requested where one is meaningless.
    #[error("zero-size {what}: give a size of at least one byte")]
    ZeroSize {
        /// What was zero.
        what: &'static str,
    },
    /// A range reaches past the end of a buffer.
    #[error("range {offset}..{offset}+{len} is out of bounds for a buffer of {size} bytes")]
    OutOfRange {
        /// Start of the range.
        offset: u64,
        /// Length of the range.
        len: u64,
        /// Size of the buffer.
        size: u64,
    },
    /// A buffer's length is not a whole number of elements of the type it is read as.
    /// Final for that buffer and type: read it as bytes, or as a type whose size divides
    /// its length.
    #[error("a buffer of {bytes} bytes is not a whole number of `{elem}` ({elem_size} bytes each); read it as bytes or as a type whose size divides {bytes}")]
    ElementSize {
        /// The buffer's length in bytes.
        bytes: u64,
        /// The element type's name.
        elem: &'static str,
        /// The element type's size in bytes.
        elem_size: usize,
    },
    /// An argument is malformed; the message says which and why.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A buffer was handed to a device that does not own it.
    #[error("buffer belongs to device {found}, not to {expected}")]
    WrongDevice {
        /// The device that was asked.
        expected: String,
        /// The device that owns the buffer.
        found: String,
    },
    /// The device cannot provide this placement (e.g. no host-memory mapping).
    #[error("{device} does not support placement {placement:?}")]
    UnsupportedPlacement {
        /// Device name.
        device: String,
        /// The placement asked for.
        placement: Placement,
    },
    /// A kernel has no variant that this backend can run.
    #[error("kernel `{kernel}` has no variant for the {backend} backend; add one or pick another device")]
    NoKernelVariant {
        /// Kernel name.
        kernel: String,
        /// The backend that was asked.
        backend: Backend,
    },
    /// A workload can run on none of the available devices.
    #[error("no available device can run `{0}`: it has no kernel variant for any of them")]
    NoEligibleDevice(String),
    /// Kernel compilation failed; the log comes from the compiler.
    #[error("compiling kernel `{kernel}` failed: {log}")]
    Compile {
        /// Kernel name.
        kernel: String,
        /// Compiler log.
        log: String,
    },
    /// A kernel (host function or device kernel) reported a failure.
    #[error("kernel `{kernel}` failed: {reason}")]
    Kernel {
        /// Kernel name.
        kernel: String,
        /// What went wrong.
        reason: String,
    },
    /// Compressed data is corrupt or truncated. Final for that input; the destination is
    /// left in an unspecified but in-bounds state and no other data is touched.
    #[error("corrupt {codec} data: {reason}")]
    Corrupt {
        /// Codec name.
        codec: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The device was lost (reset, removed, driver crash). Data on it is gone; copies
    /// elsewhere are intact.
    #[error("device {device} lost: {reason}")]
    DeviceLost {
        /// Device name.
        device: String,
        /// Driver message.
        reason: String,
    },
    /// A driver call failed. `transient` tells whether retrying may help.
    #[error("{backend} call {op} failed: {message}")]
    Backend {
        /// Which backend.
        backend: Backend,
        /// The driver call.
        op: &'static str,
        /// The driver's message or code.
        message: String,
        /// Whether a retry may succeed.
        transient: bool,
    },
    /// A device's work queue is full. Transient: wait for work to finish, then resubmit.
    #[error("queue of {device} is full ({capacity} jobs waiting); retry when work completes")]
    QueueFull {
        /// Device name.
        device: String,
        /// The queue's capacity.
        capacity: usize,
    },
    /// A job was cancelled (by the caller, or because its executor shut down) before it ran.
    /// Nothing it would have written was touched.
    #[error("`{0}` was cancelled before it ran")]
    Cancelled(String),
    /// A kernel holds the buffer for writing: a host access now would be lost or would see
    /// a half-written copy. Transient: retry once the workload that holds it completes.
    #[error("buffer {buffer} is being written by a kernel on {device}; retry when its workload completes")]
    InUse {
        /// The buffer's id.
        buffer: u64,
        /// The device running the kernel.
        device: String,
    },
    /// The buffer's only valid copy was being written by a kernel that failed: its
    /// contents are unknown. Final for the contents: overwrite the whole buffer (a host
    /// write of every byte, or a kernel that writes it entirely) to use it again.
    #[error("buffer {buffer} lost its contents: {reason}; overwrite it entirely to use it again")]
    DataLost {
        /// The buffer's id.
        buffer: u64,
        /// What happened.
        reason: String,
    },
    /// A failure injected by a test's fault plan.
    #[error("injected fault at {0}")]
    Injected(&'static str),
}

impl Error {
    /// Whether retrying (after freeing or evicting memory, or waiting) may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::OutOfMemory { .. }
                | Error::BudgetExceeded { .. }
                | Error::InUse { .. }
                | Error::QueueFull { .. }
                | Error::Backend {
                    transient: true,
                    ..
                }
                | Error::Injected(_)
        )
    }

    /// Builds an [`Error::InvalidArgument`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }
}

/// Checks that `offset..offset+len` lies inside a buffer of `size` bytes, without overflow.
pub fn check_range(offset: u64, len: u64, size: u64) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(Error::OutOfRange { offset, len, size }),
    }
}
