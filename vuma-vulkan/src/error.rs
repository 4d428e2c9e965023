//! Vulkan results as VUMA errors: [`vk_err`] maps a failed call, [`backend_err`] words a
//! failure that has no `VkResult`.

use ash::vk;
use vuma_core::{Backend, Error};

/// How long one submission may take before VUMA calls the device hung.
pub(crate) const WAIT_TIMEOUT_NS: u64 = 120_000_000_000;

/// The error of Vulkan call `op` that returned `e`: device loss and timeouts are
/// [`Error::DeviceLost`], out-of-memory results transient [`Error::Backend`]s.
pub(crate) fn vk_err(op: &'static str, e: vk::Result) -> Error {
    match e {
        vk::Result::ERROR_DEVICE_LOST => Error::DeviceLost {
            device: "vulkan device".into(),
            reason: format!("{op}: {e:?}"),
        },
        // A wait that outlives WAIT_TIMEOUT_NS: the submission may still be running, so
        // nothing it uses may be reused or freed, and a retry would re-record command
        // buffers still in flight. The device is treated as hung: final, not transient.
        vk::Result::TIMEOUT => Error::DeviceLost {
            device: "vulkan device".into(),
            reason: format!(
                "{op}: a submission did not finish within {} s; the device is treated as hung",
                WAIT_TIMEOUT_NS / 1_000_000_000
            ),
        },
        _ => Error::Backend {
            backend: Backend::Vulkan,
            op,
            message: format!("{e:?}"),
            transient: matches!(
                e,
                vk::Result::ERROR_OUT_OF_DEVICE_MEMORY | vk::Result::ERROR_OUT_OF_HOST_MEMORY
            ),
        },
    }
}

/// A final (not transient) [`Error::Backend`] of operation `op`.
pub(crate) fn backend_err(op: &'static str, message: impl Into<String>) -> Error {
    Error::Backend {
        backend: Backend::Vulkan,
        op,
        message: message.into(),
        transient: false,
    }
}

/// The error of a failed wait reported again: the device is hung or lost (see
/// [`WAIT_TIMEOUT_NS`]) and nothing may be submitted any more.
pub(crate) fn hung_err(device: &str, why: &str) -> Error {
    Error::DeviceLost {
        device: device.into(),
        reason: why.into(),
    }
}
