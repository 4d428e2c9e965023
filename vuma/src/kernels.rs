//! The kernels of the seed scenario, each with a CUDA, a SPIR-V (with the `vulkan` feature)
//! and a host variant of identical semantics. All are grid-stride loops with 64-thread
//! blocks, so one [`LaunchConfig`] (from [`launch_for`]) serves every backend. Each declares
//! its [`Signature`]: an element count `n` larger than a buffer is a typed error on every
//! backend before anything is launched.

use vuma_core::{Error, HostLaunch, Kernel, LaunchConfig, Result, Scalar, Signature};

/// Threads per block (CUDA) and workgroup size (WGSL) of every kernel here.
pub const BLOCK: u32 = 64;

/// A launch configuration for `n` elements: at most 4096 blocks (the kernels stride).
pub fn launch_for(n: u64) -> LaunchConfig {
    let mut c = LaunchConfig::for_elements(n, BLOCK);
    c.grid[0] = c.grid[0].min(4096);
    c
}

#[cfg(feature = "vulkan")]
fn spirv(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

const RELU_SCALE_CUDA: &str = r#"
extern "C" __global__ void relu_scale(const float* x, float* y, unsigned int n, float scale) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        y[i] = fmaxf(x[i], 0.0f) * scale;
    }
}
"#;

const BLEND_CUDA: &str = r#"
extern "C" __global__ void blend(const unsigned int* a, const unsigned int* b, unsigned int* dst, unsigned int n) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        unsigned int p = a[i], q = b[i];
        dst[i] = (p & q) + (((p ^ q) >> 1) & 0x7f7f7f7fu);
    }
}
"#;

const SCALE_U32_CUDA: &str = r#"
extern "C" __global__ void scale_u32(unsigned int* buf, unsigned int n, unsigned int mul, unsigned int add) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        buf[i] = buf[i] * mul + add;
    }
}
"#;

fn scalars_u32(l: &HostLaunch<'_>, k: &str, want: usize) -> Result<Vec<u32>> {
    let v: Vec<u32> = l
        .scalars
        .iter()
        .filter_map(|s| match s {
            Scalar::U32(v) => Some(*v),
            _ => None,
        })
        .collect();
    if v.len() < want {
        return Err(Error::invalid(format!("{k}: expected {want} u32 scalars")));
    }
    Ok(v)
}

fn check_len(k: &str, buf: &[u8], n: usize) -> Result<()> {
    if buf.len() < n * 4 {
        return Err(Error::invalid(format!(
            "{k}: buffer of {} bytes holds fewer than n = {n} elements",
            buf.len()
        )));
    }
    Ok(())
}

fn threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .min(16)
}

/// Runs `f` over `threads()` contiguous parts of `y` (4-byte aligned), each with the
/// matching part of `x`.
fn par_zip(x: &[u8], y: &mut [u8], f: impl Fn(&[u8], &mut [u8]) + Sync) {
    let part = (y.len() / 4).div_ceil(threads()).max(1 << 14) * 4;
    std::thread::scope(|s| {
        for (xs, ys) in x.chunks(part).zip(y.chunks_mut(part)) {
            let f = &f;
            s.spawn(move || f(xs, ys));
        }
    });
}

/// Runs `f` over `threads()` contiguous parts of `y` (4-byte aligned).
fn par_mut(y: &mut [u8], f: impl Fn(&mut [u8]) + Sync) {
    let part = (y.len() / 4).div_ceil(threads()).max(1 << 14) * 4;
    std::thread::scope(|s| {
        for ys in y.chunks_mut(part) {
            let f = &f;
            s.spawn(move || f(ys));
        }
    });
}

/// `y[i] = max(x[i], 0) * scale` over `n` f32 elements. Args: `x` (read), `y` (write),
/// `n: u32`, `scale: f32`.
pub fn relu_scale() -> Kernel {
    let k = Kernel::new("relu_scale")
        .with_signature(
            Signature::new()
                .read("x")
                .write("y")
                .u32("n")
                .f32("scale")
                .bound("n", "x", 4)
                .bound("n", "y", 4),
        )
        .with_cuda_source(RELU_SCALE_CUDA, "relu_scale")
        .with_host(|l| {
            let n = scalars_u32(l, "relu_scale", 1)?[0] as usize;
            let scale = l
                .scalars
                .iter()
                .find_map(|s| match s {
                    Scalar::F32(v) => Some(*v),
                    _ => None,
                })
                .ok_or_else(|| Error::invalid("relu_scale: missing f32 scale"))?;
            let [x, y] = &mut l.buffers[..] else {
                return Err(Error::invalid("relu_scale takes two buffers"));
            };
            check_len("relu_scale", x, n)?;
            check_len("relu_scale", y, n)?;
            par_zip(&x[..n * 4], &mut y[..n * 4], |xs, ys| {
                for (a, b) in xs.chunks_exact(4).zip(ys.chunks_exact_mut(4)) {
                    let v = f32::from_le_bytes([a[0], a[1], a[2], a[3]]);
                    b.copy_from_slice(&(v.max(0.0) * scale).to_le_bytes());
                }
            });
            Ok(())
        });
    #[cfg(feature = "vulkan")]
    let k = k.with_spirv(
        spirv(include_bytes!(concat!(env!("OUT_DIR"), "/relu_scale.spv"))),
        "relu_scale",
    );
    k
}

/// Per-byte average of two RGBA8 images. Args: `a` (read), `b` (read), `dst` (write),
/// `n: u32` pixels.
pub fn blend() -> Kernel {
    let k = Kernel::new("blend")
        .with_signature(
            Signature::new()
                .read("a")
                .read("b")
                .write("dst")
                .u32("n")
                .bound("n", "a", 4)
                .bound("n", "b", 4)
                .bound("n", "dst", 4),
        )
        .with_cuda_source(BLEND_CUDA, "blend")
        .with_host(|l| {
            let n = scalars_u32(l, "blend", 1)?[0] as usize;
            let [a, b, d] = &mut l.buffers[..] else {
                return Err(Error::invalid("blend takes three buffers"));
            };
            for buf in [&**a, &**b, &**d] {
                check_len("blend", buf, n)?;
            }
            for i in 0..n {
                let r = |s: &[u8]| {
                    u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]])
                };
                let (p, q) = (r(a), r(b));
                let v = (p & q) + (((p ^ q) >> 1) & 0x7f7f_7f7f);
                d[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
            }
            Ok(())
        });
    #[cfg(feature = "vulkan")]
    let k = k.with_spirv(
        spirv(include_bytes!(concat!(env!("OUT_DIR"), "/blend.spv"))),
        "blend",
    );
    k
}

/// `buf[i] = buf[i] * mul + add` (u32, wrapping). Args: `buf` (read-write), `n`, `mul`,
/// `add` (u32).
pub fn scale_u32() -> Kernel {
    let k = Kernel::new("scale_u32")
        .with_signature(
            Signature::new()
                .read_write("buf")
                .u32("n")
                .u32("mul")
                .u32("add")
                .bound("n", "buf", 4),
        )
        .with_cuda_source(SCALE_U32_CUDA, "scale_u32")
        .with_host(|l| {
            let s = scalars_u32(l, "scale_u32", 3)?;
            let (n, mul, add) = (s[0] as usize, s[1], s[2]);
            let buf = &mut l.buffers[0];
            check_len("scale_u32", buf, n)?;
            par_mut(&mut buf[..n * 4], |part| {
                for c in part.chunks_exact_mut(4) {
                    let v = u32::from_le_bytes([c[0], c[1], c[2], c[3]])
                        .wrapping_mul(mul)
                        .wrapping_add(add);
                    c.copy_from_slice(&v.to_le_bytes());
                }
            });
            Ok(())
        });
    #[cfg(feature = "vulkan")]
    let k = k.with_spirv(
        spirv(include_bytes!(concat!(env!("OUT_DIR"), "/scale_u32.spv"))),
        "scale_u32",
    );
    k
}
