//! NVML facts (PCIe link, power, temperature) through `libnvidia-ml.so.1`, loaded at run time
//! with `libloading` (cudarc has no NVML). Every failure just means "unknown".

use std::ffi::{c_char, c_uint, CString};

/// What NVML told us about one GPU.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct NvmlFacts {
    pub curr_gen: Option<u32>,
    pub curr_width: Option<u32>,
    pub max_gen: Option<u32>,
    pub max_width: Option<u32>,
    pub power_mw: Option<u32>,
    pub power_limit_mw: Option<u32>,
    pub temperature_c: Option<u32>,
    pub driver_version: Option<String>,
}

impl NvmlFacts {
    /// The link's generation and width to derive bandwidth from: the maximum the device and
    /// system support (an idle link trains down to save power), else the current one.
    pub fn link(&self) -> Option<(u32, u32)> {
        let g = self.max_gen.or(self.curr_gen)?;
        let w = self.max_width.or(self.curr_width)?;
        (g > 0 && w > 0).then_some((g, w))
    }

    /// Key/value pairs for `DeviceInfo::extra`.
    pub fn extra(&self) -> Vec<(String, String)> {
        let mut v = Vec::new();
        if let (Some(g), Some(w)) = (self.curr_gen, self.curr_width) {
            v.push(("pcie_current".into(), format!("gen{g} x{w}")));
        }
        if let (Some(g), Some(w)) = (self.max_gen, self.max_width) {
            v.push(("pcie_max".into(), format!("gen{g} x{w}")));
        }
        if let Some(p) = self.power_mw {
            v.push(("power_w".into(), format!("{:.1}", f64::from(p) / 1000.0)));
        }
        if let Some(p) = self.power_limit_mw {
            v.push((
                "power_limit_w".into(),
                format!("{:.1}", f64::from(p) / 1000.0),
            ));
        }
        if let Some(t) = self.temperature_c {
            v.push(("temperature_c".into(), t.to_string()));
        }
        if let Some(d) = &self.driver_version {
            v.push(("nvml_driver".into(), d.clone()));
        }
        v
    }
}

type Handle = *mut std::ffi::c_void;
type InitFn = unsafe extern "C" fn() -> i32;
type ByBusFn = unsafe extern "C" fn(*const c_char, *mut Handle) -> i32;
type U32Fn = unsafe extern "C" fn(Handle, *mut c_uint) -> i32;
type TempFn = unsafe extern "C" fn(Handle, c_uint, *mut c_uint) -> i32;
type VersionFn = unsafe extern "C" fn(*mut c_char, c_uint) -> i32;

/// Queries NVML for the GPU at `pci_bus_id` (`0000:xx:00.0`, as `cuDeviceGetPCIBusId`
/// writes it). `None` when NVML is absent or does not know the device.
pub(crate) fn query(pci_bus_id: &str) -> Option<NvmlFacts> {
    let bus = CString::new(pci_bus_id).ok()?;
    // SAFETY: loading NVML runs its (well-behaved) library constructors only.
    let lib = unsafe { libloading::Library::new("libnvidia-ml.so.1") }.ok()?;
    let sym = |name: &[u8]| -> Option<*mut std::ffi::c_void> {
        // SAFETY: the symbol is read as an untyped pointer; callers transmute it to the C
        // signature nvml.h documents for that name.
        unsafe { lib.get::<*mut std::ffi::c_void>(name) }
            .ok()
            .map(|s| *s)
    };
    let init = sym(b"nvmlInit_v2\0")?;
    let shutdown = sym(b"nvmlShutdown\0")?;
    let by_bus = sym(b"nvmlDeviceGetHandleByPciBusId_v2\0")?;
    // SAFETY: the pointers come from NVML's exported symbols of exactly these C types
    // (nvml.h): `nvmlReturn_t nvmlInit_v2(void)`, `nvmlShutdown(void)`,
    // `nvmlDeviceGetHandleByPciBusId_v2(const char*, nvmlDevice_t*)`.
    let (init, shutdown, by_bus): (InitFn, InitFn, ByBusFn) = unsafe {
        (
            std::mem::transmute::<*mut std::ffi::c_void, InitFn>(init),
            std::mem::transmute::<*mut std::ffi::c_void, InitFn>(shutdown),
            std::mem::transmute::<*mut std::ffi::c_void, ByBusFn>(by_bus),
        )
    };
    // SAFETY: nvmlInit_v2 takes no arguments; a non-zero return means NVML is unusable.
    if unsafe { init() } != 0 {
        return None;
    }
    let mut facts = NvmlFacts::default();
    let mut dev: Handle = std::ptr::null_mut();
    // SAFETY: `bus` is NUL-terminated and outlives the call; `dev` is a valid out-pointer.
    if unsafe { by_bus(bus.as_ptr(), &mut dev) } == 0 {
        let get_u32 = |name: &[u8]| -> Option<u32> {
            let f = sym(name)?;
            // SAFETY: every getter named below has the signature
            // `nvmlReturn_t f(nvmlDevice_t, unsigned int*)` in nvml.h.
            let f = unsafe { std::mem::transmute::<*mut std::ffi::c_void, U32Fn>(f) };
            let mut v: c_uint = 0;
            // SAFETY: `dev` is a handle NVML returned; `v` is a valid out-pointer.
            (unsafe { f(dev, &mut v) } == 0).then_some(v)
        };
        facts.curr_gen = get_u32(b"nvmlDeviceGetCurrPcieLinkGeneration\0");
        facts.curr_width = get_u32(b"nvmlDeviceGetCurrPcieLinkWidth\0");
        facts.max_gen = get_u32(b"nvmlDeviceGetMaxPcieLinkGeneration\0");
        facts.max_width = get_u32(b"nvmlDeviceGetMaxPcieLinkWidth\0");
        facts.power_mw = get_u32(b"nvmlDeviceGetPowerUsage\0");
        facts.power_limit_mw = get_u32(b"nvmlDeviceGetPowerManagementLimit\0");
        if let Some(f) = sym(b"nvmlDeviceGetTemperature\0") {
            // SAFETY: `nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t,
            // nvmlTemperatureSensors_t, unsigned int*)`; sensor 0 is NVML_TEMPERATURE_GPU.
            let f = unsafe { std::mem::transmute::<*mut std::ffi::c_void, TempFn>(f) };
            let mut t: c_uint = 0;
            // SAFETY: valid handle and out-pointer.
            if unsafe { f(dev, 0, &mut t) } == 0 {
                facts.temperature_c = Some(t);
            }
        }
    }
    if let Some(f) = sym(b"nvmlSystemGetDriverVersion\0") {
        // SAFETY: `nvmlReturn_t nvmlSystemGetDriverVersion(char*, unsigned int)`.
        let f = unsafe { std::mem::transmute::<*mut std::ffi::c_void, VersionFn>(f) };
        let mut buf = [0 as c_char; 96];
        // SAFETY: `buf` is writable for its full length, which is what we pass.
        if unsafe { f(buf.as_mut_ptr(), buf.len() as c_uint) } == 0 {
            // SAFETY: NVML NUL-terminates on success within the given length.
            let s = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
            facts.driver_version = Some(s.to_string_lossy().into_owned());
        }
    }
    // SAFETY: balanced with the successful nvmlInit_v2 above.
    unsafe { shutdown() };
    Some(facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_prefers_maximum() {
        let f = NvmlFacts {
            curr_gen: Some(1),
            curr_width: Some(16),
            max_gen: Some(5),
            max_width: Some(16),
            ..Default::default()
        };
        assert_eq!(f.link(), Some((5, 16)));
        assert!(f
            .extra()
            .iter()
            .any(|(k, v)| k == "pcie_current" && v == "gen1 x16"));
        assert_eq!(NvmlFacts::default().link(), None);
    }

    #[test]
    fn absent_or_unknown_device_is_none_or_facts() {
        // On machines without NVML this is None; with it, an impossible bus id gives facts
        // with no per-device figures. Either way: no panic.
        if let Some(f) = query("ffff:ff:ff.f") {
            assert_eq!(f.curr_gen, None);
        }
    }
}
