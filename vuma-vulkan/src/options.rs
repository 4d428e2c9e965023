//! [`VulkanOptions`]: everything that tunes how devices open and move bytes, with every
//! `VUMA_VK_*` environment knob read in one place ([`VulkanOptions::from_env`]); and
//! [`H2dStrategy`], how host bytes reach device-local memory.

use vuma_core::{Error, Result};

/// Options for opening Vulkan devices.
///
/// [`VulkanDevice::open_with`](crate::VulkanDevice::open_with) uses these options over
/// [`VulkanOptions::from_env`]: a field set here wins, a field left `None` (or `false`) takes
/// the environment's value, and where neither says anything the device's default applies.
/// So `VulkanOptions::default()` means "the environment, else the defaults".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VulkanOptions {
    /// Enable `VK_LAYER_KHRONOS_validation` (with synchronization validation) and count its
    /// errors and warnings through a `VK_EXT_debug_utils` messenger. Also enabled by the
    /// environment variable `VUMA_VK_VALIDATION=1`. When the layer is not installed the
    /// device opens without it and [`VulkanDevice::validation_active`] says so, unless
    /// validation is required ([`VulkanOptions::require_validation`]).
    ///
    /// [`VulkanDevice::validation_active`]: crate::VulkanDevice::validation_active
    pub validation: bool,
    /// With [`VulkanOptions::validation`], fail to open (`Error::Unavailable`) rather than
    /// run unvalidated when the layer is not installed (`VUMA_REQUIRE_VALIDATION=1`; CI and
    /// the hardware runs set it, so validation checks cannot pass having checked nothing).
    pub require_validation: bool,
    /// How [`Device::write`](vuma_core::Device::write) moves host bytes into device-local
    /// buffers (`VUMA_VK_H2D=staging|bar|auto`; an unknown name is warned about and means
    /// staging). `None`: [`H2dStrategy::Staging`].
    pub h2d: Option<H2dStrategy>,
    /// Threads of the persistent copy pool that fills and drains the rings
    /// (`VUMA_VK_COPY_THREADS`, clamped to 1..=64). `None` or 0: the available
    /// parallelism, at most 16.
    pub copy_threads: Option<usize>,
    /// Size of one ring slot in MiB (`VUMA_VK_STAGING_SLOT_MIB`, at most 1024). `None` or 0:
    /// 16 MiB on discrete GPUs, 8 MiB elsewhere.
    pub staging_slot_mib: Option<u64>,
    /// Slots of each ring (`VUMA_VK_STAGING_SLOTS`, 2..=64). `None` or 0: 6 on discrete
    /// GPUs, 3 elsewhere.
    pub staging_slots: Option<usize>,
    /// Import the page-aligned middle of host slices of at least this many MiB with
    /// `VK_EXT_external_memory_host` instead of staging them (`VUMA_VK_IMPORT_MIN_MIB`).
    /// `None` or 0: never (on the H100 the per-call import made 256 MiB transfers 3x slower
    /// than staging).
    pub import_min_mib: Option<u64>,
    /// Whether staged copies write with non-temporal stores (`VUMA_VK_STREAM_COPY=0` turns
    /// them off). `None`: on. BAR writes always stream.
    pub stream_copies: Option<bool>,
}

impl VulkanOptions {
    /// Options with validation enabled.
    pub fn validated() -> Self {
        VulkanOptions {
            validation: true,
            ..VulkanOptions::default()
        }
    }

    /// The options the environment sets: the one place VUMA's Vulkan knobs are read
    /// (`VUMA_VK_VALIDATION`, `VUMA_REQUIRE_VALIDATION`, `VUMA_VK_H2D`,
    /// `VUMA_VK_COPY_THREADS`, `VUMA_VK_STAGING_SLOT_MIB`, `VUMA_VK_STAGING_SLOTS`,
    /// `VUMA_VK_IMPORT_MIN_MIB`, `VUMA_VK_STREAM_COPY`). Numbers that do not parse, and 0,
    /// are ignored.
    pub fn from_env() -> Self {
        VulkanOptions {
            validation: env_flag("VUMA_VK_VALIDATION"),
            require_validation: env_flag("VUMA_REQUIRE_VALIDATION"),
            h2d: std::env::var("VUMA_VK_H2D").ok().map(|v| {
                v.parse::<H2dStrategy>().unwrap_or_else(|e| {
                    tracing::warn!("{e}; using staging");
                    H2dStrategy::Staging
                })
            }),
            copy_threads: env_u64("VUMA_VK_COPY_THREADS").map(|n| n.min(64) as usize),
            staging_slot_mib: env_u64("VUMA_VK_STAGING_SLOT_MIB"),
            staging_slots: env_u64("VUMA_VK_STAGING_SLOTS").map(|n| n.min(64) as usize),
            import_min_mib: env_u64("VUMA_VK_IMPORT_MIN_MIB"),
            stream_copies: std::env::var("VUMA_VK_STREAM_COPY").ok().map(|v| v != "0"),
        }
    }

    /// These options over `env`: fields set here win, the others come from `env`.
    pub fn over(&self, env: &VulkanOptions) -> VulkanOptions {
        VulkanOptions {
            validation: self.validation || env.validation,
            require_validation: self.require_validation || env.require_validation,
            h2d: self.h2d.or(env.h2d),
            copy_threads: self.copy_threads.or(env.copy_threads),
            staging_slot_mib: self.staging_slot_mib.or(env.staging_slot_mib),
            staging_slots: self.staging_slots.or(env.staging_slots),
            import_min_mib: self.import_min_mib.or(env.import_min_mib),
            stream_copies: self.stream_copies.or(env.stream_copies),
        }
    }

    /// The host-to-device strategy chosen (default: staging).
    pub(crate) fn h2d_strategy(&self) -> H2dStrategy {
        self.h2d.unwrap_or_default()
    }

    /// Threads of the copy pool.
    pub(crate) fn copy_thread_count(&self) -> usize {
        match self.copy_threads.filter(|&n| n > 0) {
            Some(n) => n.clamp(1, 64),
            None => std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(16),
        }
    }

    /// Bytes of one ring slot.
    pub(crate) fn slot_bytes(&self, discrete: bool) -> u64 {
        self.staging_slot_mib
            .filter(|&m| m > 0)
            .map(|m| m.min(1024) << 20)
            .unwrap_or(if discrete { 16 << 20 } else { 8 << 20 })
    }

    /// Slots of each ring.
    pub(crate) fn slot_count(&self, discrete: bool) -> usize {
        self.staging_slots
            .filter(|&n| n > 0)
            .map(|n| n.min(64))
            .unwrap_or(if discrete { 6 } else { 3 })
            .max(2)
    }

    /// The smallest host slice imported rather than staged (`u64::MAX`: never).
    pub(crate) fn import_min_bytes(&self) -> u64 {
        self.import_min_mib
            .filter(|&m| m > 0)
            .map_or(u64::MAX, |m| m << 20)
    }

    /// Whether staged copies stream (non-temporal stores).
    pub(crate) fn streams(&self) -> bool {
        self.stream_copies.unwrap_or(true)
    }
}

/// Whether environment variable `name` is `1`.
fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}

/// A positive integer from environment variable `name`.
fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&v| v > 0)
}

/// How [`Device::write`](vuma_core::Device::write) moves host bytes into *device-local*
/// buffers (`VUMA_VK_H2D`).
///
/// Writes into host-mapped and staging buffers always go straight through their mapping;
/// reads never use the BAR (the CPU reads BAR memory at 0.007 GB/s on the H100).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum H2dStrategy {
    /// The copy threads fill slots of cached *system* memory (the staging ring) and the
    /// transfer queue DMAs each slot across the link into the destination. The CPU reads
    /// the source and writes the slot in DRAM, and the DMA reads the slot from DRAM again.
    /// The default.
    #[default]
    Staging,
    /// The copy threads write the bytes straight into slots of `DEVICE_LOCAL|HOST_VISIBLE`
    /// memory (the BAR ring: VRAM mapped through the PCIe BAR), with 64-byte aligned
    /// non-temporal stores and never a read of the slot; a `vkCmdCopyBuffer` then moves each
    /// slot into the destination inside VRAM. The DRAM sees only the source read. Needs a
    /// BAR memory type (see [`VulkanDevice::bar_upload_type`]); without one, or when the
    /// BAR ring cannot be allocated, writes fall back to [`H2dStrategy::Staging`].
    ///
    /// [`VulkanDevice::bar_upload_type`]: crate::VulkanDevice::bar_upload_type
    Bar,
    /// [`H2dStrategy::Bar`] for writes of at least [`H2dStrategy::AUTO_BAR_MIN`] bytes on a
    /// discrete GPU with a *large* BAR ([`MemoryTable::has_large_bar`]); staging otherwise.
    ///
    /// [`MemoryTable::has_large_bar`]: crate::MemoryTable::has_large_bar
    Auto,
}

impl H2dStrategy {
    /// The smallest write [`H2dStrategy::Auto`] sends through the BAR (1 MiB).
    pub const AUTO_BAR_MIN: u64 = 1 << 20;

    /// Its name, as `VUMA_VK_H2D` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            H2dStrategy::Staging => "staging",
            H2dStrategy::Bar => "bar",
            H2dStrategy::Auto => "auto",
        }
    }

    pub(crate) fn to_u8(self) -> u8 {
        match self {
            H2dStrategy::Staging => 0,
            H2dStrategy::Bar => 1,
            H2dStrategy::Auto => 2,
        }
    }

    pub(crate) fn from_u8(v: u8) -> Self {
        match v {
            1 => H2dStrategy::Bar,
            2 => H2dStrategy::Auto,
            _ => H2dStrategy::Staging,
        }
    }

    /// Whether a device-local write of `len` bytes goes through the BAR ring, given whether
    /// the device has a BAR upload type at all (`bar_type`), is a discrete GPU, and has a
    /// large BAR. A pure function (tested against memory tables).
    pub fn uses_bar(self, len: u64, bar_type: bool, discrete: bool, large_bar: bool) -> bool {
        match self {
            H2dStrategy::Staging => false,
            H2dStrategy::Bar => bar_type,
            H2dStrategy::Auto => bar_type && discrete && large_bar && len >= Self::AUTO_BAR_MIN,
        }
    }
}

impl std::fmt::Display for H2dStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for H2dStrategy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "staging" | "staged" => Ok(H2dStrategy::Staging),
            "bar" => Ok(H2dStrategy::Bar),
            "auto" => Ok(H2dStrategy::Auto),
            other => Err(Error::invalid(format!(
                "VUMA_VK_H2D: unknown host-to-device strategy `{other}` (staging, bar or auto)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{H2dStrategy, VulkanOptions};

    #[test]
    fn h2d_strategy_choice() {
        use H2dStrategy::*;
        let min = H2dStrategy::AUTO_BAR_MIN;
        for len in [1, min - 1, min, 1 << 30] {
            assert!(!Staging.uses_bar(len, true, true, true));
            assert!(Bar.uses_bar(len, true, false, false));
            assert!(!Bar.uses_bar(len, false, true, true), "no BAR type");
            assert_eq!(Auto.uses_bar(len, true, true, true), len >= min);
            assert!(!Auto.uses_bar(len, true, false, true), "not discrete");
            assert!(!Auto.uses_bar(len, true, true, false), "small BAR");
            assert!(!Auto.uses_bar(len, false, true, true), "no BAR type");
        }
        for s in [Staging, Bar, Auto] {
            assert_eq!(s.as_str().parse::<H2dStrategy>().ok(), Some(s));
            assert_eq!(H2dStrategy::from_u8(s.to_u8()), s);
        }
        assert_eq!(" BAR ".parse::<H2dStrategy>().ok(), Some(Bar));
        assert!(matches!(
            "fast".parse::<H2dStrategy>(),
            Err(vuma_core::Error::InvalidArgument(_))
        ));
        assert_eq!(H2dStrategy::default(), Staging);
    }

    /// Defaults per device class, explicit fields over the environment's, clamping.
    #[test]
    fn knobs_resolve() {
        let none = VulkanOptions::default();
        assert_eq!(none.slot_bytes(true), 16 << 20);
        assert_eq!(none.slot_bytes(false), 8 << 20);
        assert_eq!((none.slot_count(true), none.slot_count(false)), (6, 3));
        assert_eq!(none.import_min_bytes(), u64::MAX);
        assert!(none.streams());
        assert_eq!(none.h2d_strategy(), H2dStrategy::Staging);
        assert!((1..=16).contains(&none.copy_thread_count()));
        let env = VulkanOptions {
            validation: true,
            h2d: Some(H2dStrategy::Bar),
            staging_slot_mib: Some(4),
            staging_slots: Some(1),
            stream_copies: Some(false),
            ..VulkanOptions::default()
        };
        let mine = VulkanOptions {
            h2d: Some(H2dStrategy::Auto),
            copy_threads: Some(500),
            import_min_mib: Some(2),
            ..VulkanOptions::default()
        };
        let o = mine.over(&env);
        assert!(o.validation && !o.require_validation);
        assert_eq!(o.h2d_strategy(), H2dStrategy::Auto);
        assert_eq!(o.copy_thread_count(), 64);
        assert_eq!(o.slot_bytes(true), 4 << 20);
        assert_eq!(o.slot_count(true), 2, "at least two slots");
        assert_eq!(o.import_min_bytes(), 2 << 20);
        assert!(!o.streams());
        let big = VulkanOptions {
            staging_slot_mib: Some(1 << 20),
            staging_slots: Some(1000),
            ..VulkanOptions::default()
        };
        assert_eq!(big.slot_bytes(false), 1 << 30);
        assert_eq!(big.slot_count(false), 64);
    }
}
