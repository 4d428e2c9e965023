//! VUMA's own SPIR-V kernels, compiled from WGSL by naga in `build.rs`.
//!
//! - [`increment_kernel`]: the conformance suite's `increment` (`buf[i] += add` for
//!   `i < n`; args `(buf, n: u32, add: u32)`, workgroup size 64, 1-D grid);
//! - [`increment_2d_kernel`]: the same over a 2-D grid (row stride from `num_workgroups`),
//!   for ranges of more than 65535 × 64 elements on devices limited to 65535 groups in x;
//! - [`read_sum_kernel`]: reads `n` 16-byte words of its first buffer with a grid-stride
//!   loop and writes one sum per invocation into its second buffer (args `(src, dst, n: u32)`,
//!   workgroup size 256, `dst` holds `grid.x * 256` u32): a kernel whose cost is reading its
//!   input, used by the zero-copy benchmark.

use std::sync::Arc;

use vuma_core::Kernel;

fn words(bytes: &[u8]) -> Arc<[u32]> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// SPIR-V words of `vuma_core::conformance::INCREMENT_WGSL`.
pub fn increment_spirv() -> Arc<[u32]> {
    words(include_bytes!(concat!(env!("OUT_DIR"), "/increment.spv")))
}

/// The conformance suite's `increment` kernel with its SPIR-V variant added (entry
/// `increment`).
pub fn increment_kernel() -> Kernel {
    vuma_core::conformance::increment_kernel().with_spirv(increment_spirv(), "increment")
}

/// `increment` over a 2-D grid: element `i = gid.y * (num_workgroups.x * 64) + gid.x`.
pub fn increment_2d_kernel() -> Kernel {
    Kernel::new("increment_2d").with_spirv(
        words(include_bytes!(concat!(
            env!("OUT_DIR"),
            "/increment_2d.spv"
        ))),
        "increment_2d",
    )
}

/// The read-only streaming kernel of the zero-copy benchmark.
pub fn read_sum_kernel() -> Kernel {
    Kernel::new("read_sum").with_spirv(
        words(include_bytes!(concat!(env!("OUT_DIR"), "/read_sum.spv"))),
        "read_sum",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spirv_is_embedded() {
        for k in [increment_kernel(), increment_2d_kernel(), read_sum_kernel()] {
            let Some(vuma_core::KernelVariant::SpirV { words, .. }) =
                k.variant_for(vuma_core::Backend::Vulkan)
            else {
                panic!("{} has no SPIR-V variant", k.name());
            };
            // SPIR-V's magic number.
            assert_eq!(words[0], 0x0723_0203, "{}", k.name());
            assert!(words.len() > 20);
        }
    }
}
