//! Kernel code: NVRTC compilation of CUDA C source to a CUBIN for the device's exact
//! `sm_XY`, the process-wide and on-disk CUBIN caches, and launch-parameter marshalling.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, CStr, CString};
use std::sync::{Mutex, OnceLock};

use cudarc::nvrtc::sys as nvrtc;
use sha2::{Digest, Sha256};
use vuma_core::{Error, Result, Scalar};

use crate::error::{guard, unavailable};
use crate::options::disk_cache_dir;

/// NVRTC options besides `--gpu-architecture` (part of every cache key).
const NVRTC_OPTIONS: &[&str] = &["--std=c++17"];

/// The SHA-256 digest of `parts`, each prefixed by its length (so `["ab", "c"]` and
/// `["a", "bc"]` differ): the key of everything that determines a compiled module.
pub(crate) fn code_digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// The first 128 bits of [`code_digest`]: the per-device module cache's key (a
/// cryptographic hash, so distinct code never shares a module in practice).
pub(crate) fn code_key(parts: &[&[u8]]) -> u128 {
    let d = code_digest(parts);
    let mut head = [0u8; 16];
    head.copy_from_slice(&d[..16]);
    u128::from_be_bytes(head)
}

/// The key of the CUBIN compiled from `source` for `arch` by NVRTC `nvrtc` (`"13.0"`):
/// SHA-256 over the full source, the architecture, NVRTC's version and its options.
fn cubin_digest(source: &str, arch: &str, nvrtc: &str) -> [u8; 32] {
    let mut parts: Vec<&[u8]> = vec![
        b"cubin",
        source.as_bytes(),
        arch.as_bytes(),
        nvrtc.as_bytes(),
    ];
    parts.extend(NVRTC_OPTIONS.iter().map(|o| o.as_bytes()));
    code_digest(&parts)
}

/// The on-disk cache's file name for a CUBIN digest: its 64 hex digits.
fn cache_file_name(digest: &[u8; 32]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(70);
    for b in digest {
        let _ = write!(s, "{b:02x}");
    }
    s.push_str(".cubin");
    s
}

/// NVRTC's version, or `Unavailable` when libnvrtc cannot be loaded.
pub(crate) fn nvrtc_version() -> Result<(i32, i32)> {
    static VERSION: OnceLock<std::result::Result<(i32, i32), String>> = OnceLock::new();
    VERSION
        .get_or_init(|| {
            // SAFETY: only tries to dlopen the candidate library names.
            if !unsafe { nvrtc::is_culib_present() } {
                return Err("libnvrtc not found (install the CUDA toolkit's NVRTC, e.g. libnvrtc.so.13, on the loader path)".into());
            }
            guard("loading libnvrtc", || {
                let (mut maj, mut min): (c_int, c_int) = (0, 0);
                // SAFETY: valid out-pointers.
                let r = unsafe { nvrtc::nvrtcVersion(&mut maj, &mut min) };
                if r == nvrtc::nvrtcResult::NVRTC_SUCCESS {
                    Ok((maj, min))
                } else {
                    Err(unavailable(format!("nvrtcVersion failed: {r:?}")))
                }
            })
            .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(unavailable)
}

/// CUBINs by the SHA-256 digest of what produced them.
type CubinCache = HashMap<[u8; 32], std::sync::Arc<Vec<u8>>>;

/// Process-wide CUBIN cache (shared by every device of the same architecture).
fn memory_cache() -> &'static Mutex<CubinCache> {
    static CACHE: OnceLock<Mutex<CubinCache>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The CUBIN for `source` on `sm_{major}{minor}`: from the process cache, the disk cache,
/// or NVRTC. `fresh` skips both caches for lookup (used after a cached CUBIN failed to load).
pub(crate) fn cubin_for(
    kernel: &str,
    source: &str,
    cc: (u32, u32),
    fresh: bool,
) -> Result<(u128, std::sync::Arc<Vec<u8>>)> {
    let (vmaj, vmin) = nvrtc_version()?;
    let arch = format!("sm_{}{}", cc.0, cc.1);
    let digest = cubin_digest(source, &arch, &format!("{vmaj}.{vmin}"));
    let key = code_key(&[&digest]);
    if !fresh {
        if let Some(c) = memory_cache()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&digest)
        {
            return Ok((key, c.clone()));
        }
    }
    let file = disk_cache_dir().map(|d| d.join(cache_file_name(&digest)));
    let from_disk = if fresh {
        None
    } else {
        file.as_ref()
            .and_then(|f| std::fs::read(f).ok())
            .filter(|b| b.len() > 16 && b.starts_with(b"\x7fELF"))
    };
    let cubin = match from_disk {
        Some(b) => {
            tracing::debug!(kernel, %arch, "CUBIN from disk cache");
            b
        }
        None => {
            let b = compile_cubin(kernel, source, &arch)?;
            if let Some(f) = &file {
                store(f, &b);
            }
            b
        }
    };
    let cubin = std::sync::Arc::new(cubin);
    memory_cache()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(digest, cubin.clone());
    Ok((key, cubin))
}

/// Best-effort write of a cache file (temporary name, then rename).
fn store(file: &std::path::Path, bytes: &[u8]) {
    let Some(dir) = file.parent() else { return };
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    let r = std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::write(&tmp, bytes))
        .and_then(|_| std::fs::rename(&tmp, file));
    if let Err(e) = r {
        let _ = std::fs::remove_file(&tmp);
        tracing::debug!(path = %file.display(), "CUBIN disk cache not written: {e}");
    }
}

/// Compiles CUDA C `source` to a CUBIN for `arch` (`sm_90`) with raw NVRTC calls.
pub(crate) fn compile_cubin(kernel: &str, source: &str, arch: &str) -> Result<Vec<u8>> {
    nvrtc_version()?;
    let src = CString::new(source).map_err(|_| Error::Compile {
        kernel: kernel.into(),
        log: "source contains a NUL byte".into(),
    })?;
    let opts: Vec<CString> = std::iter::once(format!("--gpu-architecture={arch}"))
        .chain(NVRTC_OPTIONS.iter().map(|o| o.to_string()))
        .map(|o| CString::new(o).expect("options have no NUL"))
        .collect();
    let opt_ptrs: Vec<*const c_char> = opts.iter().map(|o| o.as_ptr()).collect();
    guard("calling NVRTC", || {
        let mut prog: nvrtc::nvrtcProgram = std::ptr::null_mut();
        let name = c"vuma_kernel.cu";
        // SAFETY: `src` and `name` are NUL-terminated and outlive the call; no headers.
        let r = unsafe {
            nvrtc::nvrtcCreateProgram(
                &mut prog,
                src.as_ptr(),
                name.as_ptr(),
                0,
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        nvrtc_check(kernel, "nvrtcCreateProgram", r)?;
        struct Prog(nvrtc::nvrtcProgram);
        impl Drop for Prog {
            fn drop(&mut self) {
                // SAFETY: the program was created above and is destroyed exactly once.
                unsafe { nvrtc::nvrtcDestroyProgram(&mut self.0) };
            }
        }
        let prog = Prog(prog);
        // SAFETY: `opt_ptrs` holds `opts.len()` valid NUL-terminated strings that outlive
        // the call.
        let r = unsafe {
            nvrtc::nvrtcCompileProgram(prog.0, opt_ptrs.len() as c_int, opt_ptrs.as_ptr())
        };
        if r != nvrtc::nvrtcResult::NVRTC_SUCCESS {
            let log = program_log(prog.0);
            return Err(Error::Compile {
                kernel: kernel.into(),
                log: format!("{} ({arch}): {log}", nvrtc_msg(r)),
            });
        }
        let mut size = 0usize;
        // SAFETY: valid program and out-pointer.
        nvrtc_check(kernel, "nvrtcGetCUBINSize", unsafe {
            nvrtc::nvrtcGetCUBINSize(prog.0, &mut size)
        })?;
        let mut cubin = vec![0u8; size];
        // SAFETY: `cubin` has exactly the size NVRTC reported.
        nvrtc_check(kernel, "nvrtcGetCUBIN", unsafe {
            nvrtc::nvrtcGetCUBIN(prog.0, cubin.as_mut_ptr() as *mut c_char)
        })?;
        Ok(cubin)
    })
}

fn program_log(prog: nvrtc::nvrtcProgram) -> String {
    let mut size = 0usize;
    // SAFETY: valid program and out-pointer.
    if unsafe { nvrtc::nvrtcGetProgramLogSize(prog, &mut size) }
        != nvrtc::nvrtcResult::NVRTC_SUCCESS
        || size == 0
    {
        return String::new();
    }
    let mut buf = vec![0u8; size];
    // SAFETY: `buf` has the size NVRTC reported (NUL included).
    unsafe { nvrtc::nvrtcGetProgramLog(prog, buf.as_mut_ptr() as *mut c_char) };
    CStr::from_bytes_until_nul(&buf)
        .map(|c| c.to_string_lossy().trim_end().to_string())
        .unwrap_or_default()
}

fn nvrtc_msg(r: nvrtc::nvrtcResult) -> String {
    // SAFETY: returns a pointer to a static NUL-terminated string (or null).
    let p = unsafe { nvrtc::nvrtcGetErrorString(r) };
    if p.is_null() {
        format!("{r:?}")
    } else {
        // SAFETY: non-null static string from NVRTC.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

fn nvrtc_check(kernel: &str, op: &str, r: nvrtc::nvrtcResult) -> Result<()> {
    if r == nvrtc::nvrtcResult::NVRTC_SUCCESS {
        Ok(())
    } else {
        Err(Error::Compile {
            kernel: kernel.into(),
            log: format!("{op}: {}", nvrtc_msg(r)),
        })
    }
}

/// Kernel parameters in the layout `cuLaunchKernel` wants: one 8-byte slot per argument
/// (small values sit in the low bytes, little-endian) and an array of pointers to them.
#[derive(Debug, Default)]
pub(crate) struct Params {
    values: Vec<u64>,
}

impl Params {
    pub fn push_ptr(&mut self, p: u64) {
        self.values.push(p);
    }
    pub fn push_scalar(&mut self, s: Scalar) {
        self.values.push(match s {
            Scalar::U32(v) => u64::from(v),
            Scalar::I32(v) => u64::from(v as u32),
            Scalar::U64(v) => v,
            Scalar::F32(v) => u64::from(v.to_bits()),
        });
    }
    /// Pointers to each slot; valid while `self` is neither moved nor modified.
    pub fn pointers(&mut self) -> Vec<*mut std::ffi::c_void> {
        self.values
            .iter_mut()
            .map(|v| v as *mut u64 as *mut std::ffi::c_void)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_distinct() {
        let a = code_key(&[b"src", b"sm_90"]);
        assert_eq!(a, code_key(&[b"src", b"sm_90"]));
        assert_ne!(a, code_key(&[b"src", b"sm_89"]));
        assert_ne!(code_key(&[b"ab", b"c"]), code_key(&[b"a", b"bc"]));
        // Separator bytes inside a part cannot fake a part boundary.
        assert_ne!(code_key(&[b"a\xffb"]), code_key(&[b"a", b"b"]));
        assert_ne!(code_key(&[b""]), code_key(&[]));
        // SHA-256 of the length-prefixed parts (a known vector: SHA-256 of 8 zero bytes).
        assert_eq!(
            cache_file_name(&code_digest(&[b""])),
            "af5570f5a1810b7af78caf4bc70a660f0df51e42baf91d4de5b2328de0e83dfc.cubin"
        );
    }

    #[test]
    fn different_sources_never_share_a_cache_entry() {
        // Many near-identical sources (the former 64-bit FNV-1a key could map two sources
        // to one file and run the wrong kernel): each gets its own digest and file.
        let base = "extern \"C\" __global__ void k(float* x) { x[0] = 1.0f; }";
        let mut names = std::collections::HashSet::new();
        for i in 0..2000 {
            let src = format!("{base} // {i}");
            let d = cubin_digest(&src, "sm_90", "13.0");
            assert_eq!(d, cubin_digest(&src, "sm_90", "13.0"));
            assert!(
                names.insert(cache_file_name(&d)),
                "source {i} shares a cache entry"
            );
        }
        // The same source for another architecture or NVRTC is another entry.
        for (arch, nvrtc) in [("sm_89", "13.0"), ("sm_90", "13.1"), ("sm_90a", "13.0")] {
            let d = cubin_digest(&format!("{base} // 0"), arch, nvrtc);
            assert!(names.insert(cache_file_name(&d)), "{arch} {nvrtc}");
        }
        // Sources that differ in one byte anywhere, or in length only, differ.
        let long = "x".repeat(1 << 16);
        let mut flipped = long.clone().into_bytes();
        flipped[1 << 15] = b'y';
        let flipped = String::from_utf8(flipped).unwrap();
        assert_ne!(
            cubin_digest(&long, "sm_90", "13.0"),
            cubin_digest(&flipped, "sm_90", "13.0")
        );
        assert_ne!(
            cubin_digest(&long, "sm_90", "13.0"),
            cubin_digest(&long[1..], "sm_90", "13.0")
        );
    }

    #[test]
    fn params_layout() {
        let mut p = Params::default();
        p.push_ptr(0x1000);
        p.push_scalar(Scalar::U32(7));
        p.push_scalar(Scalar::I32(-1));
        p.push_scalar(Scalar::F32(1.5));
        let ptrs = p.pointers();
        assert_eq!(ptrs.len(), 4);
        // SAFETY: each pointer addresses a live u64 slot of `p`.
        unsafe {
            assert_eq!(*(ptrs[0] as *const u64), 0x1000);
            assert_eq!(*(ptrs[1] as *const u32), 7);
            assert_eq!(*(ptrs[2] as *const i32), -1);
            assert_eq!(*(ptrs[3] as *const f32), 1.5);
        }
    }

    #[test]
    fn without_nvrtc_compile_is_unavailable() {
        // SAFETY: only probes for the library.
        if unsafe { nvrtc::is_culib_present() } {
            return;
        }
        match compile_cubin("k", "extern \"C\" __global__ void k() {}", "sm_90") {
            Err(Error::Unavailable { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
}
