//! Benchmark records in VUMA's one format, and small timing helpers.
//!
//! Every benchmark (in any crate) reports [`Record`]s: a value for VUMA and a baseline
//! measured in the same run. [`Record::emit`] appends one JSON object per line to the file
//! named by `VUMA_BENCH_OUT` (what `cargo xtask bench` sets and later collects into
//! `target/bench/results.json`), and prints a readable line to stdout.
//!
//! [`report`] reads records back (JSON array or JSON lines) and prints the results table;
//! [`svg`] draws the plot. Both are shared by `vuma bench` and `cargo xtask bench`.

use std::io::Write;
use std::time::{Duration, Instant};

pub mod report;
pub mod svg;

/// One benchmark result against its baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Benchmark id, e.g. `cuda/h2d_pinned/64MiB`.
    pub bench: String,
    /// Device name.
    pub device: String,
    /// VUMA's figure.
    pub value: f64,
    /// Unit of both figures (`GB/s`, `us`, …).
    pub unit: String,
    /// What the baseline is, e.g. `cuMemcpyAsync`.
    pub baseline: String,
    /// The baseline's figure, measured in the same run.
    pub baseline_value: f64,
    /// Whether a larger value is better.
    pub higher_is_better: bool,
}

impl Record {
    /// How many times better VUMA did than the baseline (above 1 is a win).
    pub fn ratio(&self) -> f64 {
        if self.higher_is_better {
            self.value / self.baseline_value
        } else {
            self.baseline_value / self.value
        }
    }

    /// The record as one JSON object (the record format of `docs/testing.md`).
    pub fn to_json(&self) -> String {
        format!(
            "{{\"bench\":{},\"device\":{},\"value\":{},\"unit\":{},\"baseline\":{},\"baseline_value\":{},\"higher_is_better\":{},\"ratio\":{}}}",
            json_str(&self.bench),
            json_str(&self.device),
            json_num(self.value),
            json_str(&self.unit),
            json_str(&self.baseline),
            json_num(self.baseline_value),
            self.higher_is_better,
            json_num(self.ratio())
        )
    }

    /// Appends the record to `$VUMA_BENCH_OUT` (if set) and prints it.
    pub fn emit(&self) {
        println!(
            "{:<44} {:>12.3} {:<6} vs {:<28} {:>12.3}  ratio {:>7.3}",
            self.bench,
            self.value,
            self.unit,
            self.baseline,
            self.baseline_value,
            self.ratio()
        );
        if let Ok(path) = std::env::var("VUMA_BENCH_OUT") {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path);
            match f {
                Ok(mut f) => {
                    if let Err(e) = writeln!(f, "{}", self.to_json()) {
                        eprintln!("warning: cannot append to {path}: {e}");
                    }
                }
                Err(e) => eprintln!("warning: cannot open {path}: {e}"),
            }
        }
    }
}

pub(crate) fn json_num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".into()
    }
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// Runs `f` `warmup` times, then `iters` times, and returns the median duration.
pub fn median_time(warmup: usize, iters: usize, mut f: impl FnMut()) -> Duration {
    for _ in 0..warmup {
        f();
    }
    let mut t: Vec<Duration> = (0..iters.max(1))
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    t[t.len() / 2]
}

/// Median of a list of samples (sorted in place).
pub fn median(samples: &mut [f64]) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

/// Bytes per second → GB/s (10^9).
pub fn gbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}
