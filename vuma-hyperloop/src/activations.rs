//! Real activations for tests and benchmarks: the outputs of a trained layer run on real
//! inputs, next to the trained weights of [`crate::realdata`] and the synthetic
//! [`crate::datasets`].
//!
//! The layer is the first feed-forward layer of all-MiniLM-L6-v2 (the model
//! [`crate::realdata`] reads): its input is the model's own embedding of a token sequence
//! (word, position and token-type embeddings, then the embedding LayerNorm, all with the
//! trained tensors), its output the 1,536 values per token of `x·Wᵀ + b` with the layer's
//! trained `W` and `b`, then the model's activation (GELU, erf form) or ReLU. The tokens
//! are [`TOKENS`] ids drawn from the vocabulary with a fixed seed (no tokenizer: real
//! embeddings of real tokens, not a sentence), in sequences of [`SEQ`] positions. The
//! attention block that precedes the layer in the model is left out, so these are the
//! activations of the layer on embedded tokens, not the exact ones of a forward pass.
//!
//! Computing them takes the safetensors file (`cargo xtask fetch-data`) and about 0.6 G
//! multiply-adds; the pre-activations are then written into the data cache as
//! [`PRE_F32`] (little-endian f32, no header), which is what a hardware bundle carries and
//! what later calls read.

use crate::realdata::{cache_dir, split_safetensors, RealDataError, SAFETENSORS};

/// Tokens run through the layer.
pub const TOKENS: usize = 1024;
/// Positions per sequence (the tokens are [`TOKENS`] / [`SEQ`] sequences).
pub const SEQ: usize = 128;
/// Width of the model.
const HIDDEN: usize = 384;
/// Width of the feed-forward layer (values per token).
pub const FFN: usize = 1536;
/// The cached pre-activations (`TOKENS × FFN` little-endian f32, no header).
pub const PRE_F32: &str = "minilm-ffn0-pre-f32.bin";

/// The activation applied to the layer's pre-activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// GELU, `x·Φ(x)` (the model's own).
    Gelu,
    /// ReLU, `max(x, 0)` (exact zeros for every negative input).
    Relu,
}

/// The layer's activations as little-endian f32 bytes, at most `max_bytes` (whole values;
/// all [`TOKENS`] × [`FFN`] values, 6 MiB, when `max_bytes` is larger). Tile them with
/// [`crate::realdata::tile`] for larger sets.
pub fn activations_f32(act: Activation, max_bytes: usize) -> Result<Vec<u8>, RealDataError> {
    let pre = pre_activations()?;
    let n = (max_bytes / 4).min(pre.len());
    Ok(pre[..n]
        .iter()
        .flat_map(|&x| {
            let y = match act {
                Activation::Gelu => gelu(x),
                Activation::Relu => x.max(0.0),
            };
            y.to_le_bytes()
        })
        .collect())
}

/// GELU in its erf form, `x/2 · (1 + erf(x/√2))`.
pub fn gelu(x: f32) -> f32 {
    let x = f64::from(x);
    (0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))) as f32
}

/// The error function (Abramowitz and Stegun 7.1.26, absolute error below 1.5e-7: below
/// an f32's resolution of GELU's outputs).
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let y = 1.0 - poly * (-x * x).exp();
    if x < 0.0 {
        -y
    } else {
        y
    }
}

/// The pre-activations, from the cache file or computed (and then cached).
fn pre_activations() -> Result<Vec<f32>, RealDataError> {
    let dir = cache_dir();
    let cached = dir.join(PRE_F32);
    if cached.is_file() {
        let b = std::fs::read(&cached).map_err(|source| RealDataError::Io {
            path: cached.clone(),
            source,
        })?;
        if b.len() == TOKENS * FFN * 4 {
            return Ok(b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect());
        }
        return Err(RealDataError::Corrupt {
            path: cached,
            why: format!("{} bytes, expected {}", b.len(), TOKENS * FFN * 4),
        });
    }
    let st = dir.join(SAFETENSORS);
    if !st.is_file() {
        return Err(RealDataError::Missing);
    }
    let file = std::fs::read(&st).map_err(|source| RealDataError::Io {
        path: st.clone(),
        source,
    })?;
    let pre = compute(&file).map_err(|why| RealDataError::Corrupt {
        path: st.clone(),
        why,
    })?;
    // Best effort: a read-only cache only means computing again next time.
    let bytes: Vec<u8> = pre.iter().flat_map(|v| v.to_le_bytes()).collect();
    let tmp = dir.join(format!("{PRE_F32}.{}", std::process::id()));
    if std::fs::write(&tmp, &bytes).is_ok() && std::fs::rename(&tmp, &cached).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(pre)
}

/// Runs the layer over the token sequence (see the module docs).
fn compute(file: &[u8]) -> Result<Vec<f32>, String> {
    let word = tensor(file, "embeddings.word_embeddings.weight", &[30522, HIDDEN])?;
    let pos = tensor(
        file,
        "embeddings.position_embeddings.weight",
        &[512, HIDDEN],
    )?;
    let ttype = tensor(
        file,
        "embeddings.token_type_embeddings.weight",
        &[2, HIDDEN],
    )?;
    let ln_w = tensor(file, "embeddings.LayerNorm.weight", &[HIDDEN])?;
    let ln_b = tensor(file, "embeddings.LayerNorm.bias", &[HIDDEN])?;
    let w = tensor(
        file,
        "encoder.layer.0.intermediate.dense.weight",
        &[FFN, HIDDEN],
    )?;
    let b = tensor(file, "encoder.layer.0.intermediate.dense.bias", &[FFN])?;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut out = Vec::with_capacity(TOKENS * FFN);
    let mut x = [0f32; HIDDEN];
    for t in 0..TOKENS {
        // xorshift64*: token ids past the special and unused ones at the vocabulary's start.
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        let id = 1000 + (seed.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % (30522 - 1000);
        let p = t % SEQ;
        for (i, xi) in x.iter_mut().enumerate() {
            *xi = word[id * HIDDEN + i] + pos[p * HIDDEN + i] + ttype[i];
        }
        let mean = x.iter().sum::<f32>() / HIDDEN as f32;
        let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / HIDDEN as f32;
        let inv = 1.0 / (var + 1e-12).sqrt();
        for (i, xi) in x.iter_mut().enumerate() {
            *xi = (*xi - mean) * inv * ln_w[i] + ln_b[i];
        }
        for (row, bias) in w.chunks_exact(HIDDEN).zip(&b) {
            let dot: f32 = row.iter().zip(&x).map(|(a, c)| a * c).sum();
            out.push(dot + bias);
        }
    }
    Ok(out)
}

/// The F32 tensor `name` of a safetensors file, checked to have `shape`.
fn tensor(file: &[u8], name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
    let (header, data) = split_safetensors(file)?;
    let key = format!("\"{name}\"");
    let at = header
        .find(&key)
        .ok_or_else(|| format!("no tensor {name}"))?;
    let obj_start = header[at..]
        .find('{')
        .map(|i| at + i)
        .ok_or("no tensor object")?;
    let obj_end = header[obj_start..]
        .find('}')
        .map(|i| obj_start + i)
        .ok_or("unbalanced braces")?;
    let obj = &header[obj_start..obj_end];
    if !obj.contains("\"F32\"") {
        return Err(format!("{name} is not F32"));
    }
    let list = |field: &str| -> Result<Vec<usize>, String> {
        let f = obj
            .find(field)
            .ok_or_else(|| format!("{name}: no {field}"))?;
        let s = &obj[f..];
        let (lo, hi) = (
            s.find('[').ok_or("not a list")?,
            s.find(']').ok_or("not a list")?,
        );
        s[lo + 1..hi.max(lo + 1)]
            .split(',')
            .filter(|v| !v.trim().is_empty())
            .map(|v| {
                v.trim()
                    .parse::<usize>()
                    .map_err(|e| format!("{name}: {e}"))
            })
            .collect()
    };
    if list("\"shape\"")? != shape {
        return Err(format!("{name}: shape is not {shape:?}"));
    }
    let offs = list("\"data_offsets\"")?;
    let [a, b] = offs[..] else {
        return Err(format!("{name}: data_offsets must hold two numbers"));
    };
    let want = shape.iter().product::<usize>() * 4;
    if a > b || b > data.len() || b - a != want {
        return Err(format!(
            "{name}: data [{a}, {b}) does not hold {want} bytes"
        ));
    }
    Ok(data[a..b]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_matches_known_values() {
        for (x, y) in [
            (0.0f32, 0.0f32),
            (1.0, 0.841_344_7),
            (-1.0, -0.158_655_3),
            (3.0, 2.995_950_5),
        ] {
            assert!((gelu(x) - y).abs() < 1e-6, "gelu({x}) = {}", gelu(x));
        }
    }

    #[test]
    fn missing_tensors_and_bad_shapes_are_errors() {
        let h = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        let mut f = (h.len() as u64).to_le_bytes().to_vec();
        f.extend_from_slice(h.as_bytes());
        f.extend_from_slice(&[0u8; 8]);
        assert_eq!(tensor(&f, "a", &[2]).unwrap(), vec![0.0, 0.0]);
        assert!(tensor(&f, "a", &[3]).is_err());
        assert!(tensor(&f, "b", &[2]).is_err());
        assert!(tensor(&f[..10], "a", &[2]).is_err());
    }
}
