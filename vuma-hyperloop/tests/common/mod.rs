//! Helpers shared by the device test files.

use vuma_hyperloop::CostModel;

/// Whether the tests run under compute-sanitizer: `VUMA_UNDER_SANITIZER` set, non-empty and
/// not "0" (the hardware bundle's `run.sh` sets it in its sanitizer passes only). The
/// sanitizer tools instrument every device memory access (racecheck every shared-memory
/// access): at full size the CUDA test binary did not finish in 420 s on an H200.
pub fn under_sanitizer() -> bool {
    std::env::var("VUMA_UNDER_SANITIZER").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// How much the sanitizer scale divides data and chunk sizes by.
const SANITIZER_DIVISOR: usize = 16;

/// A data set length at the sanitizer scale: unchanged by default; under the sanitizer the
/// whole 64 KiB pages are divided by 16 (at least 256 KiB: four pages) and the odd tail
/// (`len % 64 KiB`, the partial last page) is kept, so odd sizes and partial pages are
/// still exercised.
pub fn scaled(len: usize) -> usize {
    if !under_sanitizer() {
        return len;
    }
    let tail = len % (64 << 10);
    ((len - tail) / SANITIZER_DIVISOR).max(256 << 10) + tail
}

/// A chunk size (or direct-run threshold) at the sanitizer scale: unchanged by default;
/// under the sanitizer divided by 16, at least 128 KiB (two pages), so that a data set
/// scaled by [`scaled`] still spans several chunks per upload and raw runs both shorter and
/// longer than the threshold still occur.
pub fn scaled_chunk(bytes: usize) -> usize {
    if !under_sanitizer() {
        return bytes;
    }
    (bytes / SANITIZER_DIVISOR).max(128 << 10)
}

/// The decode-rate measurement's (sample bytes, iterations): `full` by default, a 1 MiB
/// sample and one iteration under the sanitizer (the rates are then meaningless, but every
/// measuring path still runs).
pub fn rate_sample(full: (usize, usize)) -> (usize, usize) {
    if under_sanitizer() {
        (full.0.min(1 << 20), 1)
    } else {
        full
    }
}

/// Asserts that `measure_device_decode` replaced every rate it measures: finite, positive
/// and not the prior. No speed threshold (a timed test claims no performance; the benchmark
/// does, and under compute-sanitizer kernels run orders of magnitude slower).
pub fn assert_rates_measured(prior: &CostModel, m: &CostModel) {
    assert!(m.decode_measured);
    for (what, v, before) in [
        (
            "bitplane decode",
            m.bitplane.device_decode,
            prior.bitplane.device_decode,
        ),
        ("lz4 decode", m.lz4.device_decode, prior.lz4.device_decode),
        ("mapped h2d", m.mapped_h2d, prior.mapped_h2d),
    ] {
        assert!(v.is_finite() && v > 0.0, "{what} rate not measured: {v}");
        assert_ne!(v, before, "{what} still holds its prior value");
    }
}

/// Runs `f` (an upload or decode into a destination buffer) on a destination of `len +
/// guard` bytes filled with 0xCD; asserts that the guard bytes past `len` are untouched and
/// returns the first `len` bytes, or the error's message.
pub fn decode_into(
    dev: &dyn vuma_core::DynDevice,
    len: u64,
    guard: u64,
    what: &str,
    f: &mut dyn FnMut(
        &mut vuma_hyperloop::Uploader<'_>,
        &dyn vuma_core::DynBuffer,
    ) -> vuma_core::Result<()>,
) -> Result<Vec<u8>, String> {
    const PATTERN: u8 = 0xCD;
    let dst = dev
        .alloc(len + guard, vuma_core::Placement::DeviceLocal)
        .unwrap();
    dev.fill(dst.as_ref(), 0, len + guard, PATTERN).unwrap();
    let mut up = vuma_hyperloop::Uploader::new(dev);
    let r = f(&mut up, dst.as_ref());
    let mut back = vec![0u8; (len + guard) as usize];
    dev.read(dst.as_ref(), 0, &mut back).unwrap();
    assert!(
        back[len as usize..].iter().all(|&b| b == PATTERN),
        "{what}: write past the data"
    );
    back.truncate(len as usize);
    r.map(|()| back).map_err(|e| e.to_string())
}
