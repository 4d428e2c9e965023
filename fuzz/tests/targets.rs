//! The fuzz targets as plain tests (stable Rust, no libFuzzer): every file of the seed corpus
//! (`corpus/<target>/`) and of the kept regressions (`artifacts/regressions/<target>/`), then
//! `VUMA_FUZZ_ITERS` (default 100 000) pseudo-random inputs per target (or as many as fit
//! in `VUMA_FUZZ_SECS` seconds, which `cargo xtask fuzz --plain` sets): random bytes, and
//! seeds mutated the way libFuzzer does (bit flips, byte sets, inserts, deletes, truncation,
//! splices). Run with `--release`:
//!
//! ```sh
//! cargo test --release --manifest-path fuzz/Cargo.toml
//! VUMA_FUZZ_ITERS=1000000 cargo test --release --manifest-path fuzz/Cargo.toml -- --nocapture
//! ```
//! `cargo test --manifest-path fuzz/Cargo.toml -- --ignored write_seed_corpus` rewrites the
//! seed corpus from the Hyperloop data sets.

use std::path::{Path, PathBuf};

use vuma_core::Codec;
use vuma_fuzz::{codec_input, TARGETS};
use vuma_hyperloop::bitplane::Bitplane;
use vuma_hyperloop::codecs::{Lz4, Snappy, Zstd};
use vuma_hyperloop::datasets;
use vuma_hyperloop::floatcodec::FloatCodec;
use vuma_hyperloop::page::ElemWidth;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    paths
        .iter()
        .filter(|p| p.is_file())
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], mut v: Vec<u8>) -> Vec<u8> {
    for _ in 0..1 + rng.below(4) {
        match rng.below(7) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = [0, 0xFF, 0x7F, 0x80, 1, rng.next() as u8][rng.below(6)];
            }
            2 => {
                let i = rng.below(v.len() + 1);
                let n = 1 + rng.below(8);
                for _ in 0..n {
                    v.insert(i, rng.next() as u8);
                }
            }
            3 if !v.is_empty() => {
                let i = rng.below(v.len());
                let n = (1 + rng.below(8)).min(v.len() - i);
                v.drain(i..i + n);
            }
            4 => v.truncate(rng.below(v.len() + 1)),
            5 if !seeds.is_empty() => {
                let o = &seeds[rng.below(seeds.len())];
                let at = rng.below(v.len() + 1);
                let from = rng.below(o.len() + 1);
                v.truncate(at);
                v.extend_from_slice(&o[from..]);
            }
            _ if v.len() >= 4 => {
                // Keep the header, scramble a window of the payload.
                let i = rng.below(v.len());
                let n = (1 + rng.below(16)).min(v.len() - i);
                for b in &mut v[i..i + n] {
                    *b = rng.next() as u8;
                }
            }
            _ => {}
        }
    }
    v
}

fn fuzz_one(target: &str) {
    let iters: usize = std::env::var("VUMA_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let mut seeds = files(&root().join("corpus").join(target));
    let regressions = files(&root().join("artifacts/regressions").join(target));
    for s in seeds.iter().chain(&regressions) {
        assert!(vuma_fuzz::run(target, s));
    }
    if target == "chunk" {
        // Regressions of the chunk target were found with unclamped images: replay them so.
        for s in &regressions {
            vuma_fuzz::chunk_unclamped(s);
        }
    }
    seeds.extend(regressions);
    let mut rng =
        Rng(0x9E37_79B9_7F4A_7C15 ^ target.len() as u64 ^ (target.as_bytes()[0] as u64) << 32);
    let secs: Option<f64> = std::env::var("VUMA_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok());
    let t0 = std::time::Instant::now();
    let mut done = 0usize;
    loop {
        match secs {
            Some(s) if done.is_multiple_of(64) && t0.elapsed().as_secs_f64() >= s => break,
            None if done >= iters => break,
            _ => {}
        }
        done += 1;
        let input = if seeds.is_empty() || rng.below(8) == 0 {
            let n = rng.below(1200);
            (0..n).map(|_| rng.next() as u8).collect()
        } else {
            let s = seeds[rng.below(seeds.len())].clone();
            mutate(&mut rng, &seeds, s)
        };
        vuma_fuzz::run(target, &input);
    }
    eprintln!(
        "fuzz-as-test {target}: {} seeds+regressions, {done} inputs in {:.1}s, 0 crashes",
        seeds.len(),
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn lz4() {
    fuzz_one("lz4");
}
#[test]
fn zstd() {
    fuzz_one("zstd");
}
#[test]
fn snappy() {
    fuzz_one("snappy");
}
#[test]
fn bitplane() {
    fuzz_one("bitplane");
}
#[test]
fn float() {
    fuzz_one("float");
}
#[test]
fn lz4block() {
    fuzz_one("lz4block");
}
#[test]
fn chunk() {
    fuzz_one("chunk");
}
#[test]
fn cost_model() {
    fuzz_one("cost_model");
}
#[test]
fn upload_into() {
    fuzz_one("upload_into");
}
#[test]
fn records() {
    fuzz_one("records");
}
#[test]
fn encode_jobs() {
    fuzz_one("encode_jobs");
}

#[test]
fn every_target_has_a_seed_corpus() {
    for t in TARGETS {
        assert!(
            !files(&root().join("corpus").join(t)).is_empty(),
            "corpus/{t} is empty: run the ignored test write_seed_corpus"
        );
    }
}

/// Regenerates `corpus/` from the Hyperloop data sets (a few KB in all).
#[test]
#[ignore]
fn write_seed_corpus() {
    let dir = root().join("corpus");
    let put = |t: &str, name: &str, bytes: &[u8]| {
        let d = dir.join(t);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), bytes).unwrap();
    };
    let samples = [
        ("relu", datasets::relu_f32(256, 1), ElemWidth::F32, 2u8),
        ("bf16", datasets::bf16_weights(256, 2), ElemWidth::Bf16, 1),
        (
            "zeroish",
            datasets::zero_heavy(256, 128, 3),
            ElemWidth::U8,
            0,
        ),
        ("random", datasets::random_bytes(96, 4), ElemWidth::U8, 0),
    ];
    let codecs: [(&str, Box<dyn Codec>); 3] = [
        ("lz4", Box::new(Lz4)),
        ("zstd", Box::new(Zstd::default())),
        ("snappy", Box::new(Snappy)),
    ];
    for (t, c) in &codecs {
        for (name, data, _, _) in &samples {
            let mut enc = Vec::new();
            c.compress(data, &mut enc).unwrap();
            put(t, &format!("dec-{name}"), &codec_input(0, data.len(), &enc));
        }
        put(t, "rt-relu", &codec_input(3, 7, &samples[0].1[..128]));
    }
    for (name, data, w, wsel) in &samples {
        let mut enc = Vec::new();
        Bitplane::new(*w).compress(data, &mut enc).unwrap();
        put(
            "bitplane",
            &format!("dec-{name}"),
            &codec_input(wsel << 2, data.len(), &enc),
        );
        put(
            "bitplane",
            &format!("rt-{name}"),
            &codec_input((wsel << 2) | 3, 11, &data[..data.len().min(128)]),
        );
        let mut enc = Vec::new();
        FloatCodec::new(*w).compress(data, &mut enc).unwrap();
        put(
            "float",
            &format!("dec-{name}"),
            &codec_input(wsel << 2, data.len(), &enc),
        );
        put(
            "float",
            &format!("rt-{name}"),
            &codec_input((wsel << 2) | 3, 11, &data[..data.len().min(128)]),
        );
        let enc = lz4_flex::block::compress(data);
        put(
            "lz4block",
            &format!("dec-{name}"),
            &codec_input(0, data.len(), &enc),
        );
    }
    put(
        "lz4block",
        "rt-relu",
        &codec_input(3, 5, &samples[0].1[..128]),
    );
    for base in 0..5u8 {
        put("chunk", &format!("intact-{base}"), &[base, 0]);
        put(
            "chunk",
            &format!("xor-{base}"),
            &[base, 0, 0, 40, 0, 0x10, 1, 70, 0, 1],
        );
        put("chunk", &format!("trunc-{base}"), &[base, 2, 0, 64, 0]);
    }
    // A replaced image: the first 100 bytes of chunk 0 of the planned form, as it is.
    let img = &vuma_fuzz::chunk_bases()[0].chunks()[0];
    let mut rep = vec![0u8, 1, 0, img.npages as u8, 7];
    rep.extend_from_slice(&img.image[..img.image.len().min(160)]);
    put("chunk", "replace-0", &rep);
    for base in 0..5u8 {
        put("upload_into", &format!("intact-{base}"), &[base, 0, 17, 0]);
        put(
            "upload_into",
            &format!("xor-sealed-{base}"),
            &[base, 1, 200, 3, 0, 40, 0, 0x10],
        );
    }
    // encode_jobs: [mode][page][width][chunk][direct][offset][nx][xor records][data].
    let relu = datasets::relu_f32(6 << 10, 6);
    let mixed: Vec<u8> = [
        vec![0u8; 2048],
        datasets::random_bytes(1500, 7),
        relu[..3000].to_vec(),
    ]
    .concat();
    let enc_jobs = |mode: u8, page: u8, width: u8, chunk: u8, direct: u8, xors: &[u8], d: &[u8]| {
        let mut v = vec![mode, page, width, chunk, direct, 3, (xors.len() / 3) as u8];
        v.extend_from_slice(xors);
        v.extend_from_slice(d);
        v
    };
    put(
        "encode_jobs",
        "relu-f32",
        &enc_jobs(0, 0, 2, 1, 2, &[], &relu),
    );
    put(
        "encode_jobs",
        "mixed-bf16-mapped",
        &enc_jobs(1, 1, 1, 2, 1, &[], &mixed),
    );
    put(
        "encode_jobs",
        "mixed-u8-reuse",
        &enc_jobs(0x12, 3, 0, 0, 0, &[], &mixed),
    );
    put(
        "encode_jobs",
        "tail-f32",
        &enc_jobs(0, 0, 2, 0, 4, &[], &relu[..1027]),
    );
    put(
        "encode_jobs",
        "refused-page",
        &enc_jobs(0, 6, 2, 0, 0, &[], &relu[..2048]),
    );
    put(
        "encode_jobs",
        "tables-clean",
        &enc_jobs(8, 0, 2, 1, 2, &[], &mixed),
    );
    put(
        "encode_jobs",
        "tables-xor",
        &enc_jobs(8, 0, 2, 1, 2, &[20, 0, 1, 90, 0, 0x10, 0, 1, 4], &mixed),
    );
    put(
        "records",
        "lines",
        br#"{"bench":"cuda/h2d_pinned/64MiB","device":"gpu","value":50.0,"unit":"GB/s","baseline":"raw","baseline_value":48.0,"higher_is_better":true,"ratio":1.04}
{"bench":"hyperloop/ratio/bf16","device":"gpu","value":1.3,"unit":"x","baseline":"raw","baseline_value":1.0,"higher_is_better":true,"ratio":1.3}
"#,
    );
    put("records", "array", br#"[{"bench":"a/b/1KiB","device":"d","value":1,"unit":"GB/s","baseline":"x","baseline_value":2,"higher_is_better":true,"ratio":0.5}]"#);
    let m = vuma_hyperloop::planner::CostModel::default();
    put("cost_model", "default", m.to_text().as_bytes());
    put(
        "cost_model",
        "partial",
        b"link_h2d 2.5e10\nlz4.device_decode 1e9\n",
    );
    put(
        "cost_model",
        "flags",
        b"link_measured true\ndecode_measured false\n",
    );
}

/// Reproducers of known bugs outside this crate (`artifacts/known-bugs/<target>/`), run
/// strictly. Fails until they are fixed; then move the files to `artifacts/regressions/`.
#[test]
#[ignore]
fn known_bugs() {
    let mut failed = Vec::new();
    for t in TARGETS {
        let dir = root().join("artifacts/known-bugs").join(t);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let bytes = std::fs::read(e.path()).unwrap();
            let r = std::panic::catch_unwind(|| match t {
                "chunk" => vuma_fuzz::chunk_unclamped(&bytes),
                _ => {
                    vuma_fuzz::run(t, &bytes);
                }
            });
            if r.is_err() {
                failed.push(e.path().display().to_string());
            }
        }
    }
    assert!(failed.is_empty(), "known bugs still reproduce: {failed:#?}");
}
