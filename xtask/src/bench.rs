//! `cargo xtask bench`: build and run the bench binaries, collect their records into
//! `target/bench/results.json`, print the table and draw `target/bench/results.svg`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::artifacts::{self, Kind, Selection};
use crate::err;
use crate::records::{self, Record};
use crate::util::{fmt_duration, fmt_status, run_status, workspace_root, Context, Result};
use vuma_core::bench::svg;

/// What `cargo xtask bench` does, from its command line.
#[derive(Debug, Clone, Default)]
pub struct BenchOptions {
    /// Smaller sizes and fewer iterations (`VUMA_BENCH_QUICK=1`).
    pub quick: bool,
    /// Run only bench binaries whose `package/target` name contains this (also passed to the
    /// benches as `VUMA_BENCH_FILTER`).
    pub filter: Option<String>,
    /// Render table and plot from this JSONL/JSON file instead of running anything.
    pub from: Option<PathBuf>,
    /// Packages and features to build.
    pub selection: Selection,
    /// Where results go (default `target/bench`).
    pub out_dir: Option<PathBuf>,
}

/// Runs the command; returns whether every bench binary exited successfully.
pub fn run(opts: &BenchOptions) -> Result<bool> {
    let out_dir = opts
        .out_dir
        .clone()
        .unwrap_or_else(|| workspace_root().join("target").join("bench"));
    std::fs::create_dir_all(&out_dir).context(format!("cannot create {}", out_dir.display()))?;
    if let Some(from) = &opts.from {
        let text =
            std::fs::read_to_string(from).context(format!("cannot read {}", from.display()))?;
        let recs = records::parse(&text).map_err(|e| err!("{}: {e}", from.display()))?;
        publish(&recs, &out_dir)?;
        return Ok(true);
    }

    let benches: Vec<_> = artifacts::build(&["bench"], &opts.selection)?
        .into_iter()
        .filter(|a| a.kind == Kind::Bench)
        .filter(|a| match &opts.filter {
            Some(f) => format!("{}/{}", a.package, a.target).contains(f.as_str()),
            None => true,
        })
        .collect();
    if benches.is_empty() {
        eprintln!(
            "bench: no bench binaries matched (filter {:?})",
            opts.filter
        );
    }
    let jsonl = out_dir.join("records.jsonl");
    std::fs::write(&jsonl, "").context(format!("cannot truncate {}", jsonl.display()))?;
    let start = Instant::now();
    let mut ok = true;
    for (i, b) in benches.iter().enumerate() {
        eprintln!(
            "\n==> [{}/{}] bench {}/{} (elapsed {})",
            i + 1,
            benches.len(),
            b.package,
            b.target,
            fmt_duration(start.elapsed())
        );
        let mut c = Command::new(&b.executable);
        c.env("VUMA_BENCH_OUT", &jsonl);
        if !b.package_dir.as_os_str().is_empty() {
            c.current_dir(&b.package_dir);
        }
        if opts.quick {
            c.env("VUMA_BENCH_QUICK", "1");
        }
        if let Some(f) = &opts.filter {
            c.env("VUMA_BENCH_FILTER", f);
        }
        match run_status(&mut c) {
            Ok((st, took)) => {
                eprintln!(
                    "    {}/{}: {} in {}",
                    b.package,
                    b.target,
                    fmt_status(st),
                    fmt_duration(took)
                );
                ok &= st.success();
            }
            Err(e) => {
                eprintln!("    {}/{}: {e}", b.package, b.target);
                ok = false;
            }
        }
    }
    eprintln!(
        "\nbench: {} binaries in {}",
        benches.len(),
        fmt_duration(start.elapsed())
    );
    let text =
        std::fs::read_to_string(&jsonl).context(format!("cannot read {}", jsonl.display()))?;
    let recs = records::parse(&text).map_err(|e| err!("{}: {e}", jsonl.display()))?;
    publish(&recs, &out_dir)?;
    if !ok {
        eprintln!("bench: at least one bench binary FAILED (see above)");
    }
    Ok(ok)
}

/// Writes `results.json` and `results.svg` into `dir` and prints the table.
pub fn publish(recs: &[Record], dir: &Path) -> Result<()> {
    let json = dir.join("results.json");
    let plot = dir.join("results.svg");
    std::fs::write(&json, records::to_json_array(recs))
        .context(format!("cannot write {}", json.display()))?;
    std::fs::write(&plot, svg::render(recs)).context(format!("cannot write {}", plot.display()))?;
    println!("\n{}", records::render_table(recs));
    let wins = recs
        .iter()
        .filter(|r| r.ratio.is_some_and(|x| x >= 1.0))
        .count();
    println!(
        "{} records ({wins} at or above the baseline); wrote {} and {}",
        recs.len(),
        json.display(),
        plot.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::temp_dir;

    #[test]
    fn from_file_writes_json_and_svg() {
        let dir = temp_dir("bench-from");
        let src = dir.join("h100.jsonl");
        std::fs::write(
            &src,
            "{\"bench\":\"cuda/alloc\",\"device\":\"H100\",\"value\":1.2,\"unit\":\"us\",\"baseline\":\"cuMemAlloc\",\"baseline_value\":80.7,\"higher_is_better\":false,\"ratio\":67.25}\n",
        )
        .unwrap();
        let opts = BenchOptions {
            from: Some(src),
            out_dir: Some(dir.join("out")),
            ..Default::default()
        };
        assert!(run(&opts).unwrap());
        let back = records::parse(&std::fs::read_to_string(dir.join("out/results.json")).unwrap())
            .unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].ratio, Some(67.25));
        assert!(std::fs::read_to_string(dir.join("out/results.svg"))
            .unwrap()
            .contains("cuda/alloc"));
        // A missing or malformed input is an error, not a panic.
        let bad = BenchOptions {
            from: Some(dir.join("nope.jsonl")),
            out_dir: Some(dir.join("out")),
            ..Default::default()
        };
        assert!(run(&bad).is_err());
        std::fs::write(dir.join("bad.jsonl"), "{\"bench\":1}\n").unwrap();
        let bad = BenchOptions {
            from: Some(dir.join("bad.jsonl")),
            out_dir: Some(dir.join("out")),
            ..Default::default()
        };
        assert!(run(&bad).unwrap_err().0.contains("line 1"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
