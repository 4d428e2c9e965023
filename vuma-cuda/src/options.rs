//! The CUDA backend's knobs, every environment variable the crate reads in one place: the
//! pinned staging ring's layout (`VUMA_CUDA_RING`), the host threads of CPU copies, and the
//! CUBIN disk cache's directory (`XDG_CACHE_HOME`, `HOME`, `VUMA_CUDA_NO_DISK_CACHE`).

use std::path::PathBuf;

/// Bytes per pinned staging chunk.
pub const RING_SLOT_BYTES: usize = 4 << 20;

/// The staging ring's (slots, bytes per slot): one slot (and worker thread) per CPU, clamped
/// to 2..=16, of [`RING_SLOT_BYTES`]; `VUMA_CUDA_RING=<slots>x<MiB>` (e.g. `12x4`) overrides
/// it (slots 1..=64, 1..=256 MiB).
///
/// Why 4 MiB slots, one per core: on a 16-core H100 host, 16 × 4 MiB moves a pageable 1 GiB
/// at 42 GB/s written and 41 GB/s read, and no other layout measured (8–16 slots of 2–16
/// MiB) was clearly faster both ways.
pub(crate) fn ring_layout(threads: usize) -> (usize, usize) {
    let default = (threads.clamp(2, 16), RING_SLOT_BYTES);
    let Ok(v) = std::env::var("VUMA_CUDA_RING") else {
        return default;
    };
    parse_ring(&v).unwrap_or_else(|| {
        tracing::warn!("ignoring malformed VUMA_CUDA_RING={v:?} (want e.g. 8x8)");
        default
    })
}

/// Parses `<slots>x<MiB>` into (slots, bytes).
fn parse_ring(v: &str) -> Option<(usize, usize)> {
    let (a, b) = v.split_once('x')?;
    let slots: usize = a.trim().parse().ok()?;
    let mib: usize = b.trim().parse().ok()?;
    ((1..=64).contains(&slots) && (1..=256).contains(&mib)).then_some((slots, mib << 20))
}

/// The host's CPU count (2 when unknown).
pub(crate) fn host_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

/// The on-disk cache directory: `$XDG_CACHE_HOME/vuma/cuda` or `~/.cache/vuma/cuda`;
/// `None` when neither is set or `VUMA_CUDA_NO_DISK_CACHE=1`.
pub(crate) fn disk_cache_dir() -> Option<PathBuf> {
    if std::env::var("VUMA_CUDA_NO_DISK_CACHE").is_ok_and(|v| v == "1") {
        return None;
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("vuma").join("cuda"))
}

#[cfg(test)]
mod tests {
    use super::parse_ring;

    #[test]
    fn ring_layout_override_parses() {
        assert_eq!(parse_ring("12x4"), Some((12, 4 << 20)));
        assert_eq!(parse_ring(" 8 x 8 "), Some((8, 8 << 20)));
        for bad in ["", "8", "0x8", "8x0", "65x1", "1x257", "ax8", "8x8x8"] {
            assert_eq!(parse_ring(bad), None, "{bad:?}");
        }
    }
}
