//! VUMA's conformance suite on the first Vulkan device, with validation enabled (when the
//! layer is installed), plus a run of the whole suite that must raise zero validation errors.

use std::sync::Arc;

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

fn open() -> Option<Arc<dyn DynDevice>> {
    open_vk().map(|d| Arc::new(d) as Arc<dyn DynDevice>)
}

vuma_core::conformance_suite!(open, vuma_vulkan::increment_kernel);

#[test]
fn whole_suite_raises_zero_validation_errors() {
    let Some(dev) = open_vk() else { return };
    let k = vuma_vulkan::increment_kernel();
    {
        let d: &dyn DynDevice = &dev;
        vuma_core::conformance::alloc_every_placement(d);
        vuma_core::conformance::copies_both_ways(d);
        vuma_core::conformance::device_to_device(d);
        vuma_core::conformance::partial_copies_odd_offsets(d);
        vuma_core::conformance::launch_increment(d, &k);
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
