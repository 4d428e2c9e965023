//! The Vulkan device of the Hyperloop test files and their end-of-test check.

use vuma_core::conformance::skip_or_fail;
use vuma_core::DynDevice;
use vuma_vulkan::{VulkanDevice, VulkanOptions};

/// The first Vulkan device, or `None` after a SKIP line (a failure with
/// `VUMA_REQUIRE_VULKAN=1` or `VUMA_REQUIRE_HW=1`).
pub fn vulkan() -> Option<VulkanDevice> {
    match VulkanDevice::open_with(0, &VulkanOptions::default()) {
        Ok(d) => {
            eprintln!("vulkan device: {}", DynDevice::info(&d).name);
            Some(d)
        }
        Err(e) => {
            skip_or_fail("vulkan", &e.to_string());
            None
        }
    }
}

/// Waits for the device, then asserts the validation layer reported nothing (or says it
/// was not active).
pub fn assert_clean(dev: &VulkanDevice) {
    DynDevice::synchronize(dev).expect("synchronize");
    if dev.validation_active() {
        assert_eq!(
            dev.validation_errors(),
            0,
            "validation errors: {:#?}",
            dev.validation_messages()
        );
    } else {
        eprintln!(
            "VALIDATION UNAVAILABLE: {}",
            dev.validation_note().unwrap_or("layer not active")
        );
    }
}
