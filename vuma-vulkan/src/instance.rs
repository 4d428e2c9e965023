//! The Vulkan loader (opened at run time), the instance, and the validation messenger.

use std::ffi::{c_void, CStr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ash::{ext, vk};
use vuma_core::{Backend, Error, Result};

use crate::options::VulkanOptions;

const VALIDATION_LAYER: &CStr = c"VK_LAYER_KHRONOS_validation";

/// Counts of validation messages, shared with the debug callback.
#[derive(Debug, Default)]
pub(crate) struct ValidationCounts {
    pub errors: AtomicU64,
    pub warnings: AtomicU64,
    /// The first few error messages, for test failures.
    pub first_errors: Mutex<Vec<String>>,
}

unsafe extern "system" fn debug_callback(
    severity: vk::DebugUtilsMessageSeverityFlagsEXT,
    _types: vk::DebugUtilsMessageTypeFlagsEXT,
    data: *const vk::DebugUtilsMessengerCallbackDataEXT<'_>,
    user: *mut c_void,
) -> vk::Bool32 {
    if user.is_null() {
        return vk::FALSE;
    }
    // SAFETY: `user` is the `ValidationCounts` owned by the `Instance` (an `Arc` kept alive
    // until after the messenger is destroyed), set as `p_user_data` at creation.
    let counts = unsafe { &*(user as *const ValidationCounts) };
    let msg = if data.is_null() {
        String::from("(no message)")
    } else {
        // SAFETY: the layer passes a valid callback-data structure for the duration of the
        // call; its message, when non-null, is a NUL-terminated string.
        unsafe {
            let d = &*data;
            if d.p_message.is_null() {
                String::from("(no message)")
            } else {
                CStr::from_ptr(d.p_message).to_string_lossy().into_owned()
            }
        }
    };
    if severity.contains(vk::DebugUtilsMessageSeverityFlagsEXT::ERROR) {
        counts.errors.fetch_add(1, Ordering::Relaxed);
        eprintln!("VULKAN VALIDATION ERROR: {msg}");
        if let Ok(mut v) = counts.first_errors.lock() {
            if v.len() < 16 {
                v.push(msg);
            }
        }
    } else if severity.contains(vk::DebugUtilsMessageSeverityFlagsEXT::WARNING) {
        counts.warnings.fetch_add(1, Ordering::Relaxed);
        eprintln!("vulkan validation warning: {msg}");
    }
    vk::FALSE
}

/// The loader and one instance, shared by every device opened from it.
pub(crate) struct Instance {
    /// Keeps the loader loaded while the instance lives.
    _entry: ash::Entry,
    pub instance: ash::Instance,
    messenger: Option<(ext::debug_utils::Instance, vk::DebugUtilsMessengerEXT)>,
    pub counts: Arc<ValidationCounts>,
    /// Whether the validation layer is active.
    pub validation: bool,
    /// Why validation is off although it was asked for.
    pub validation_note: Option<String>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("validation", &self.validation)
            .finish_non_exhaustive()
    }
}

fn unavailable(reason: impl Into<String>) -> Error {
    Error::Unavailable {
        backend: Backend::Vulkan,
        reason: reason.into(),
    }
}

fn layer_present(entry: &ash::Entry, name: &CStr) -> bool {
    // SAFETY: `entry` holds a loaded loader; the call has no other preconditions.
    match unsafe { entry.enumerate_instance_layer_properties() } {
        Ok(layers) => layers
            .iter()
            .any(|l| l.layer_name_as_c_str().is_ok_and(|n| n == name)),
        Err(_) => false,
    }
}

fn instance_extension_present(entry: &ash::Entry, layer: Option<&CStr>, name: &CStr) -> bool {
    // SAFETY: `entry` holds a loaded loader; `layer` is a valid NUL-terminated name or None.
    match unsafe { entry.enumerate_instance_extension_properties(layer) } {
        Ok(exts) => exts
            .iter()
            .any(|e| e.extension_name_as_c_str().is_ok_and(|n| n == name)),
        Err(_) => false,
    }
}

/// The Vulkan loader, opened once per process and never closed: instances come and go (one
/// per device, tests open many at once) but the loader — and the driver libraries it loads —
/// are not unloaded and reloaded under other threads' feet. A failure is remembered too.
fn loader() -> Result<ash::Entry> {
    static LOADER: std::sync::OnceLock<std::result::Result<ash::Entry, String>> =
        std::sync::OnceLock::new();
    LOADER
        .get_or_init(|| {
            // SAFETY: loading the system's Vulkan loader runs its initialisers; this is the
            // documented way to use ash's `loaded` feature and has no other preconditions.
            unsafe { ash::Entry::load() }.map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| unavailable(format!("no Vulkan loader: {e}")))
}

impl Instance {
    /// Opens the loader and creates an instance (Vulkan 1.2). No loader or no driver is an
    /// [`Error::Unavailable`]. `options` are the resolved ones (the environment's included):
    /// they decide whether validation is wanted and required.
    pub fn new(options: &VulkanOptions) -> Result<Arc<Self>> {
        let entry = loader()?;

        let mut validation = false;
        let mut validation_note = None;
        if options.validation {
            if layer_present(&entry, VALIDATION_LAYER)
                && instance_extension_present(&entry, None, ext::debug_utils::NAME)
            {
                validation = true;
            } else if options.require_validation {
                // Tests that count validation errors would pass having checked nothing.
                return Err(Error::Unavailable {
                    backend: Backend::Vulkan,
                    reason: "validation required (VUMA_REQUIRE_VALIDATION=1) but \
                             VK_LAYER_KHRONOS_validation (or VK_EXT_debug_utils) is not \
                             installed: install vulkan-validationlayers, or point \
                             VK_ADD_LAYER_PATH at its explicit_layer.d"
                        .into(),
                });
            } else {
                let note = "validation requested but VK_LAYER_KHRONOS_validation (or \
                            VK_EXT_debug_utils) is not installed: running unvalidated";
                eprintln!("vuma-vulkan: {note}");
                validation_note = Some(note.to_string());
            }
        }

        let app = vk::ApplicationInfo::default()
            .application_name(c"vuma")
            .engine_name(c"vuma")
            .api_version(vk::API_VERSION_1_2);
        let layers = [VALIDATION_LAYER.as_ptr()];
        let exts = [ext::debug_utils::NAME.as_ptr()];
        let enables = [vk::ValidationFeatureEnableEXT::SYNCHRONIZATION_VALIDATION];
        let mut features =
            vk::ValidationFeaturesEXT::default().enabled_validation_features(&enables);
        let counts = Arc::new(ValidationCounts::default());
        let mut messenger_ci = vk::DebugUtilsMessengerCreateInfoEXT::default()
            .message_severity(
                vk::DebugUtilsMessageSeverityFlagsEXT::ERROR
                    | vk::DebugUtilsMessageSeverityFlagsEXT::WARNING,
            )
            .message_type(
                vk::DebugUtilsMessageTypeFlagsEXT::GENERAL
                    | vk::DebugUtilsMessageTypeFlagsEXT::VALIDATION
                    | vk::DebugUtilsMessageTypeFlagsEXT::PERFORMANCE,
            )
            .pfn_user_callback(Some(debug_callback))
            .user_data(Arc::as_ptr(&counts) as *mut c_void);
        let mut ci = vk::InstanceCreateInfo::default().application_info(&app);
        if validation {
            ci = ci
                .enabled_layer_names(&layers)
                .enabled_extension_names(&exts)
                .push_next(&mut messenger_ci);
            if instance_extension_present(
                &entry,
                Some(VALIDATION_LAYER),
                ext::validation_features::NAME,
            ) && std::env::var_os("VK_LAYER_ENABLES").is_none()
            {
                ci = ci.push_next(&mut features);
            }
        }
        // SAFETY: every pointer in `ci` refers to locals that outlive the call.
        let instance = unsafe { entry.create_instance(&ci, None) }.map_err(|e| {
            unavailable(format!(
                "vkCreateInstance failed ({e:?}): no working Vulkan driver (ICD) found"
            ))
        })?;
        let messenger = if validation {
            let du = ext::debug_utils::Instance::new(&entry, &instance);
            // SAFETY: `instance` was created with VK_EXT_debug_utils enabled; the callback's
            // user data (`counts`) lives as long as `Self`, which destroys the messenger
            // before dropping it.
            match unsafe { du.create_debug_utils_messenger(&messenger_ci, None) } {
                Ok(m) => Some((du, m)),
                Err(e) => {
                    // SAFETY: nothing was created from `instance` yet.
                    unsafe { instance.destroy_instance(None) };
                    return Err(Error::Backend {
                        backend: Backend::Vulkan,
                        op: "vkCreateDebugUtilsMessengerEXT",
                        message: format!("{e:?}"),
                        transient: false,
                    });
                }
            }
        } else {
            None
        };
        Ok(Arc::new(Instance {
            _entry: entry,
            instance,
            messenger,
            counts,
            validation,
            validation_note,
        }))
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some((du, m)) = self.messenger.take() {
            // SAFETY: the messenger was created from this instance and is destroyed once.
            unsafe { du.destroy_debug_utils_messenger(m, None) };
        }
        // SAFETY: every device created from this instance holds an `Arc<Instance>`, so all
        // of them (and their children) are gone when the last reference drops.
        unsafe { self.instance.destroy_instance(None) };
    }
}
