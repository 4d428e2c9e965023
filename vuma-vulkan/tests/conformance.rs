//! VUMA's conformance suite on the first Vulkan device, with validation enabled (when the
//! layer is installed), plus a run of the whole suite that must raise zero validation errors.

use std::sync::{Arc, OnceLock};

use vuma_core::DynDevice;
use vuma_vulkan::{VulkanDevice, VulkanOptions};

fn open_vk() -> Option<VulkanDevice> {
    match VulkanDevice::open_with(0, &VulkanOptions::validated()) {
        Ok(d) => Some(d),
        Err(e) => {
            vuma_core::conformance::skip_or_fail("vulkan", &e.to_string());
            None
        }
    }
}

/// One validated device for the whole binary, shared by the tests (which run on parallel
/// threads): how VUMA uses a GPU — one device per process, many threads. (Opening a device
/// per test, i.e. several VkInstance/VkDevice pairs created and used at once in one process,
/// hung in about one run in four on the H200's driver; see docs/testing.md.)
fn shared() -> Option<Arc<VulkanDevice>> {
    static DEV: OnceLock<Option<Arc<VulkanDevice>>> = OnceLock::new();
    DEV.get_or_init(|| open_vk().map(Arc::new)).clone()
}

fn open() -> Option<Arc<dyn DynDevice>> {
    shared().map(|d| d as Arc<dyn DynDevice>)
}

vuma_core::conformance_suite!(open, vuma_vulkan::increment_kernel);

#[test]
fn whole_suite_raises_zero_validation_errors() {
    let Some(dev) = shared() else { return };
    let k = vuma_vulkan::increment_kernel();
    {
        let d: &dyn DynDevice = &*dev;
        vuma_core::conformance::alloc_every_placement(d);
        vuma_core::conformance::copies_both_ways(d);
        vuma_core::conformance::device_to_device(d);
        vuma_core::conformance::partial_copies_odd_offsets(d);
        vuma_core::conformance::launch_increment(d, &k);
        vuma_core::conformance::concurrent_copies(d, &k);
        vuma_core::conformance::launch_without_variant(d);
        vuma_core::conformance::errors_for_bad_input(d);
        d.synchronize().expect("synchronize");
    }
    if dev.validation_active() {
        eprintln!(
            "validation: {} errors, {} warnings",
            dev.validation_errors(),
            dev.validation_warnings()
        );
        assert_eq!(
            dev.validation_errors(),
            0,
            "validation errors: {:#?}",
            dev.validation_messages()
        );
    } else {
        eprintln!(
            "VALIDATION UNAVAILABLE: {} (suite passed unvalidated)",
            dev.validation_note().unwrap_or("layer not active")
        );
    }
}
