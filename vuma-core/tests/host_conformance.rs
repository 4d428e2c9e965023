//! The core conformance suite on the host device (which uses host memory in place), and on
//! one with copies of its own.
use std::sync::Arc;
use vuma_core::{conformance::increment_kernel, DynDevice, HostDevice};

fn open() -> Option<Arc<dyn DynDevice>> {
    Some(Arc::new(HostDevice::new()))
}

vuma_core::conformance_suite!(open, increment_kernel);

/// The same suite on a host device with copies of its own (a backend that cannot use host
/// memory in place).
mod with_copies {
    use super::*;

    fn open() -> Option<Arc<dyn DynDevice>> {
        Some(Arc::new(HostDevice::new().without_in_place()))
    }

    vuma_core::conformance_suite!(open, increment_kernel);
}
