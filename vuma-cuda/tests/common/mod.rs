//! Shared opener for the hardware tests: one device per test binary, or a loud SKIP
//! (a failure under `VUMA_REQUIRE_CUDA=1` / `VUMA_REQUIRE_HW=1`).

use std::sync::{Arc, OnceLock};

use vuma_cuda::CudaDevice;

#[allow(dead_code)]
pub fn device() -> Option<Arc<CudaDevice>> {
    static DEV: OnceLock<Result<Arc<CudaDevice>, String>> = OnceLock::new();
    match DEV.get_or_init(|| CudaDevice::open(0).map(Arc::new).map_err(|e| e.to_string())) {
        Ok(d) => Some(d.clone()),
        Err(why) => {
            vuma_core::conformance::skip_or_fail("cuda", why);
            None
        }
    }
}
