//! The core conformance suite on the host device.
use std::sync::Arc;
use vuma_core::{conformance::increment_kernel, DynDevice, HostDevice};

fn open() -> Option<Arc<dyn DynDevice>> {
    Some(Arc::new(HostDevice::new()))
}

vuma_core::conformance_suite!(open, increment_kernel);
