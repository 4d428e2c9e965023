//! VUMA's conformance suite on CUDA device 0 (skips loudly without CUDA).

mod common;

use std::sync::Arc;

use vuma_core::DynDevice;

fn open() -> Option<Arc<dyn DynDevice>> {
    common::device().map(|d| d as Arc<dyn DynDevice>)
}

vuma_core::conformance_suite!(open, vuma_core::conformance::increment_kernel);
