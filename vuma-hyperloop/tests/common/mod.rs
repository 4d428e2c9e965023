//! Helpers shared by the device test files.

use vuma_hyperloop::CostModel;

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
