//! `cargo xtask ci`: formatting, lints, tests, docs, the architecture check and Miri over
//! the pure modules (when nightly Miri is installed), with a summary table at the end.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::err;
use crate::util::{
    cargo, display_cmd, fmt_duration, fmt_status, run_status, run_stdout, table, Context, Result,
};

/// What `cargo xtask ci` does, from its command line.
#[derive(Debug, Clone, Default)]
pub struct CiOptions {
    /// Skip the clippy runs over feature combinations (`--all-features`, `vuma` without defaults).
    pub quick: bool,
    /// Check only these packages (empty: the whole workspace).
    pub packages: Vec<String>,
    /// Stop at the first failing step.
    pub fail_fast: bool,
    /// Leave out the Miri steps (also left out by `quick`).
    pub no_miri: bool,
}

/// One step of the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A cargo invocation.
    Cargo {
        /// Name in the summary.
        name: &'static str,
        /// Arguments after `cargo`.
        args: Vec<String>,
        /// Extra environment.
        env: Vec<(String, String)>,
    },
    /// The dependency-graph check ([`ARCH_RULES`]).
    Architecture,
    /// `cargo +<MSRV> check …` ([`MSRV`]); skipped, with a SKIP line, when no toolchain of
    /// that version is installed (`rustup toolchain list`). CI never downloads it.
    Msrv {
        /// Arguments after `cargo +<toolchain>`.
        args: Vec<String>,
    },
    /// The Python package: wheel built by maturin, pytest suite ([`crate::pytest`]);
    /// skipped, with a SKIP line, when no Python environment with maturin, pytest and numpy
    /// is set up.
    Pytest,
    /// `cargo +nightly miri …` ([`MIRI_TOOLCHAIN`]); skipped, with a SKIP line, when
    /// `cargo +nightly miri --version` fails.
    Miri {
        /// Name in the summary.
        name: &'static str,
        /// Arguments after `cargo +nightly`.
        args: Vec<String>,
        /// Extra environment.
        env: Vec<(String, String)>,
    },
}

impl Step {
    fn name(&self) -> &'static str {
        match self {
            Step::Cargo { name, .. } | Step::Miri { name, .. } => name,
            Step::Architecture => "architecture",
            Step::Pytest => "pytest",
            Step::Msrv { .. } => "msrv",
        }
    }
}

/// The minimum supported Rust version: the workspace's `rust-version` (a test keeps the two
/// equal). The `msrv` step checks the workspace with it where it is installed.
pub const MSRV: &str = "1.88";

/// How to install the MSRV toolchain (printed with the `msrv` step's SKIP line).
pub const MSRV_INSTALL: &str = "rustup toolchain install 1.88 --profile minimal";

/// The installed toolchain (a name from `rustup toolchain list`) of version `version`
/// (`1.88` matches `1.88-x86_64-…` and `1.88.0-x86_64-…`), if any.
pub fn installed_toolchain(list: &str, version: &str) -> Option<String> {
    list.lines()
        .filter_map(|l| l.split_whitespace().next())
        .find(|name| {
            // `<version>-<host>` or `<version>.<patch>-<host>`.
            let rest = name.strip_prefix(version).unwrap_or("");
            let rest = rest
                .strip_prefix('.')
                .map_or(rest, |r| r.trim_start_matches(|c: char| c.is_ascii_digit()));
            rest.starts_with('-') && rest.len() > 1
        })
        .map(String::from)
}

/// The MSRV toolchain if `rustup toolchain list` shows it installed.
fn msrv_toolchain() -> Option<String> {
    let out = Command::new("rustup")
        .args(["toolchain", "list"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    installed_toolchain(&String::from_utf8_lossy(&out.stdout), MSRV)
}

/// The toolchain the Miri steps run under (`cargo +nightly-2026-05-20 miri`): a dated
/// nightly, so that a new nightly's Miri cannot turn CI red overnight (`.ci/run` installs
/// the same one; bump both together).
pub const MIRI_TOOLCHAIN: &str = "nightly-2026-05-20";

/// How to install what the Miri steps need (printed with their SKIP line).
pub const MIRI_INSTALL: &str =
    "rustup toolchain install nightly-2026-05-20 --profile minimal --component miri,rust-src";

/// Miri's flags for the Miri steps: isolation stays on (deterministic: Miri's own clock and
/// RNG, so the same proptest cases every run), host access the tests make (`/proc/meminfo`,
/// proptest's regression files) fails with a one-line warning instead of aborting, and
/// `PROPTEST_CASES` reaches the tests.
pub const MIRI_FLAGS: &str =
    "-Zmiri-isolation-error=warn-nobacktrace -Zmiri-env-forward=PROPTEST_CASES";

/// Proptest cases per property under Miri (about 1 s each for the pool's property).
pub const MIRI_PROPTEST_CASES: &str = "8";

/// What the Miri steps run: per package, its test targets and the exact names of the tests
/// (pure logic, and the host device's `unsafe` memory through the memory manager), chosen
/// to finish in about 3 minutes on a 2-core machine. Left out: FFI (zstd), the memory
/// model's proptests (64 cases each, fixed in the source: far too slow) and tests on
/// megabytes of data (minutes each under Miri). `docs/testing.md` ("Miri") has the timings.
pub const MIRI_SELECTION: &[(&str, &[&str], &[&str])] = &[
    (
        "vuma-core",
        &[
            "--lib",
            "--test",
            "memory_model",
            "--test",
            "host_conformance",
            "--test",
            "in_place",
        ],
        &[
            "placement::tests::policy_follows_size_reuse_and_capabilities",
            "pool::tests::classes_round_up_by_at_most_a_quarter",
            "pool::tests::dedicated_blocks_are_cached_and_trimmed",
            "pool::tests::live_allocations_never_overlap",
            "pool::tests::reuses_freed_ranges_and_keeps_stats",
            "pool::tests::trim_releases_empty_blocks",
            "pool::tests::zero_and_absurd_sizes_are_errors",
            "hostcopy::tests::streamed_copies_share_the_buffer_soundly",
            "hostcopy::tests::lent_bytes_are_shared_under_the_lock_and_taken_back",
            "region::tests::a_closed_region_refuses_access",
            "creation_is_lazy_and_placement_is_reported",
            "too_large_for_budget_is_a_clear_error",
            "eviction_writes_back_dirty_copies_lru_first",
            "conformance::partial_copies_odd_offsets",
            "conformance::launch_without_variant",
            "conformance::errors_for_bad_input",
            "a_handle_kept_after_its_lease_refuses_access",
            "readers_in_place_keep_their_snapshot_when_the_host_writes",
            "two_leases_of_one_buffer_cannot_alias_in_one_launch",
            "each_lease_in_place_has_a_region_of_its_own",
        ],
    ),
    (
        "vuma-hyperloop",
        &["--test", "host", "--test", "codecs"],
        &[
            "pages_cover_the_buffer",
            "zero_detection_is_exact",
            "estimates_rank_the_datasets",
            "planner_uses_the_cost_model",
            "bitplane_block_modes_round_trip",
        ],
    ),
];

/// Crates that must not appear in a package's normal dependency tree.
///
/// Architecture invariant: `vuma-core` knows no backend and no async runtime; a backend
/// crate knows no other backend; the layers below the facade know no backend.
pub const ARCH_RULES: &[(&str, &[&str])] = &[
    (
        "vuma-core",
        &[
            "cudarc",
            "ash",
            "gpu-allocator",
            "tokio",
            "vuma-cuda",
            "vuma-vulkan",
            "vuma-hyperloop",
            "vuma-sched",
            "vuma",
        ],
    ),
    (
        "vuma-cuda",
        &["ash", "gpu-allocator", "vuma-vulkan", "vuma"],
    ),
    ("vuma-vulkan", &["cudarc", "vuma-cuda", "vuma"]),
    (
        "vuma-hyperloop",
        &[
            "cudarc",
            "ash",
            "gpu-allocator",
            "vuma-cuda",
            "vuma-vulkan",
            "vuma",
        ],
    ),
    (
        "vuma-sched",
        &[
            "cudarc",
            "ash",
            "gpu-allocator",
            "vuma-cuda",
            "vuma-vulkan",
            "vuma",
        ],
    ),
];

/// What a library user of the facade gets: `vuma` with its backends and without the `cli`
/// feature must not pull in the CLI's crates (package, features, forbidden crates).
pub const LIBRARY_RULE: (&str, &str, &[&str]) = (
    "vuma",
    "cuda,vulkan,hyperloop",
    &["clap", "indicatif", "tracing-subscriber"],
);

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// The steps `cargo xtask ci` runs, in order.
pub fn plan(opts: &CiOptions) -> Vec<Step> {
    let select: Vec<String> = if opts.packages.is_empty() {
        strings(&["--workspace"])
    } else {
        opts.packages
            .iter()
            .flat_map(|p| ["-p".to_string(), p.clone()])
            .collect()
    };
    let fmt_select = if opts.packages.is_empty() {
        strings(&["--all"])
    } else {
        select.clone()
    };
    let deny = strings(&["--", "-D", "warnings"]);
    let cat = |parts: &[&[String]]| parts.concat();
    let mut steps = vec![
        Step::Cargo {
            name: "fmt",
            args: cat(&[
                &strings(&["fmt"]),
                &fmt_select,
                &strings(&["--", "--check"]),
            ]),
            env: vec![],
        },
        Step::Cargo {
            name: "clippy",
            args: cat(&[
                &strings(&["clippy"]),
                &select,
                &strings(&["--all-targets"]),
                &deny,
            ]),
            env: vec![],
        },
    ];
    if !opts.quick {
        steps.push(Step::Cargo {
            name: "clippy-all-features",
            args: cat(&[
                &strings(&["clippy"]),
                &select,
                &strings(&["--all-targets", "--all-features"]),
                &deny,
            ]),
            env: vec![],
        });
        if opts.packages.is_empty() || opts.packages.iter().any(|p| p == "vuma") {
            steps.push(Step::Cargo {
                name: "clippy-vuma-no-default",
                args: cat(&[
                    &strings(&[
                        "clippy",
                        "-p",
                        "vuma",
                        "--all-targets",
                        "--no-default-features",
                    ]),
                    &deny,
                ]),
                env: vec![],
            });
        }
    }
    // Vulkan tests turn the validation layer on where it is installed (lavapipe in CI).
    let mut test_env = vec![];
    if std::env::var_os("VUMA_VK_VALIDATION").is_none() {
        test_env.push(("VUMA_VK_VALIDATION".to_string(), "1".to_string()));
    }
    steps.push(Step::Cargo {
        name: "test",
        args: cat(&[&strings(&["test"]), &select, &strings(&["--all-features"])]),
        env: test_env,
    });
    if opts.packages.is_empty() || opts.packages.iter().any(|p| p == "vuma-py") {
        steps.push(Step::Pytest);
    }
    steps.push(Step::Cargo {
        name: "doc",
        args: cat(&[
            &strings(&["doc"]),
            &select,
            &strings(&["--no-deps", "--all-features"]),
        ]),
        env: vec![("RUSTDOCFLAGS".into(), "-D warnings".into())],
    });
    steps.push(Step::Architecture);
    if !opts.quick {
        steps.push(Step::Msrv {
            args: cat(&[
                &strings(&["check"]),
                &select,
                &strings(&["--all-targets", "--all-features", "--locked"]),
            ]),
        });
    }
    if !opts.quick && !opts.no_miri {
        for (pkg, targets, tests) in MIRI_SELECTION {
            if !opts.packages.is_empty() && !opts.packages.iter().any(|p| p == pkg) {
                continue;
            }
            steps.push(Step::Miri {
                name: match *pkg {
                    "vuma-core" => "miri-vuma-core",
                    "vuma-hyperloop" => "miri-vuma-hyperloop",
                    _ => "miri",
                },
                args: cat(&[
                    &strings(&["miri", "test", "-p", pkg]),
                    &strings(targets),
                    &strings(&["--", "--exact"]),
                    &strings(tests),
                ]),
                env: vec![
                    ("MIRIFLAGS".into(), MIRI_FLAGS.into()),
                    ("PROPTEST_CASES".into(), MIRI_PROPTEST_CASES.into()),
                ],
            });
        }
    }
    steps
}

/// `cargo +nightly` (through rustup's `cargo` proxy on `PATH`, not `$CARGO`, which is the
/// current toolchain's own cargo and knows no `+toolchain`).
fn cargo_nightly() -> Command {
    let mut c = Command::new("cargo");
    c.arg(format!("+{MIRI_TOOLCHAIN}"));
    c.current_dir(crate::util::workspace_root());
    c
}

/// A Miri step's command for the summary table: the test names after `--exact` are
/// counted, not listed (the step's `==>` line has them all).
fn miri_summary_cmd(args: &[String]) -> String {
    let cut = args
        .iter()
        .position(|a| a == "--exact")
        .map_or(args.len(), |i| i + 1);
    let mut s = format!("cargo +{MIRI_TOOLCHAIN} {}", args[..cut].join(" "));
    if cut < args.len() {
        s.push_str(&format!(" <{} tests>", args.len() - cut));
    }
    s
}

/// Whether `cargo +nightly miri --version` works (its output is not shown).
fn miri_available() -> bool {
    let mut c = cargo_nightly();
    c.args(["miri", "--version"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c.status().is_ok_and(|s| s.success())
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It passed.
    Pass,
    /// It failed, with a reason.
    Fail(String),
    /// It did not run (an earlier step failed under `--fail-fast`).
    NotRun,
    /// It was skipped (its tool is not installed), with a reason; not a failure.
    Skip(String),
}

/// The `pytest` step ([`crate::pytest`]): verdict, time, command for the summary.
fn pytest_step(i: usize, n: usize) -> (Verdict, Duration, String) {
    eprintln!(
        "\n==> [{}/{n}] pytest: maturin build (dev) + pytest vuma-py/tests",
        i + 1
    );
    let (r, took) = crate::pytest::run();
    let v = match r {
        Ok(None) => Verdict::Pass,
        Ok(Some(why)) => Verdict::Skip(why),
        Err(e) => {
            eprintln!("    {e}");
            Verdict::Fail(e.to_string())
        }
    };
    (
        v,
        took,
        "python -m maturin build --profile dev; pytest vuma-py/tests".into(),
    )
}

/// Runs the pipeline; returns whether every step passed.
pub fn run(opts: &CiOptions) -> Result<bool> {
    let steps = plan(opts);
    let mut results: Vec<(String, Verdict, Duration, String)> = Vec::new();
    let total = Instant::now();
    let mut failed = false;
    let mut miri: Option<bool> = None;
    for (i, step) in steps.iter().enumerate() {
        if failed && opts.fail_fast {
            results.push((
                step.name().into(),
                Verdict::NotRun,
                Duration::ZERO,
                String::new(),
            ));
            continue;
        }
        let (verdict, took, shown) = match step {
            Step::Cargo { args, env, .. } => {
                let mut c = cargo();
                c.args(args);
                for (k, v) in env {
                    c.env(k, v);
                }
                let shown = display_cmd(&c);
                eprintln!("\n==> [{}/{}] {}: {shown}", i + 1, steps.len(), step.name());
                match run_status(&mut c) {
                    Ok((st, took)) if st.success() => (Verdict::Pass, took, shown),
                    Ok((st, took)) => (Verdict::Fail(fmt_status(st)), took, shown),
                    Err(e) => (Verdict::Fail(e.to_string()), Duration::ZERO, shown),
                }
            }
            Step::Miri { args, env, .. } => {
                let mut c = cargo_nightly();
                c.args(args);
                for (k, v) in env {
                    c.env(k, v);
                }
                eprintln!(
                    "\n==> [{}/{}] {}: {}",
                    i + 1,
                    steps.len(),
                    step.name(),
                    display_cmd(&c)
                );
                let shown = miri_summary_cmd(args);
                if *miri.get_or_insert_with(miri_available) {
                    match run_status(&mut c) {
                        Ok((st, took)) if st.success() => (Verdict::Pass, took, shown),
                        Ok((st, took)) => (Verdict::Fail(fmt_status(st)), took, shown),
                        Err(e) => (Verdict::Fail(e.to_string()), Duration::ZERO, shown),
                    }
                } else {
                    eprintln!(
                        "SKIP {}: `cargo +{MIRI_TOOLCHAIN} miri --version` failed; \
                         install with: {MIRI_INSTALL}",
                        step.name()
                    );
                    (
                        Verdict::Skip("nightly miri not installed".into()),
                        Duration::ZERO,
                        shown,
                    )
                }
            }
            Step::Msrv { args } => {
                eprintln!(
                    "\n==> [{}/{}] msrv: cargo +{MSRV} {}",
                    i + 1,
                    steps.len(),
                    args.join(" ")
                );
                match msrv_toolchain() {
                    Some(tc) => {
                        let mut c = Command::new("cargo");
                        c.arg(format!("+{tc}"))
                            .args(args)
                            .current_dir(crate::util::workspace_root());
                        let shown = display_cmd(&c);
                        match run_status(&mut c) {
                            Ok((st, took)) if st.success() => (Verdict::Pass, took, shown),
                            Ok((st, took)) => (Verdict::Fail(fmt_status(st)), took, shown),
                            Err(e) => (Verdict::Fail(e.to_string()), Duration::ZERO, shown),
                        }
                    }
                    None => {
                        eprintln!(
                            "SKIP msrv: no Rust {MSRV} toolchain in `rustup toolchain list`; \
                             install with: {MSRV_INSTALL}"
                        );
                        (
                            Verdict::Skip(format!("Rust {MSRV} not installed")),
                            Duration::ZERO,
                            format!("cargo +{MSRV} {}", args.join(" ")),
                        )
                    }
                }
            }
            Step::Pytest => pytest_step(i, steps.len()),
            Step::Architecture => {
                eprintln!(
                    "\n==> [{}/{}] architecture: cargo tree checks",
                    i + 1,
                    steps.len()
                );
                let start = Instant::now();
                let v = match architecture_check() {
                    Ok(lines) => {
                        for l in &lines {
                            eprintln!("    {l}");
                        }
                        Verdict::Pass
                    }
                    Err(e) => {
                        eprintln!("    {e}");
                        Verdict::Fail(e.to_string())
                    }
                };
                (
                    v,
                    start.elapsed(),
                    "cargo tree -p <crate> -e normal --prefix none".into(),
                )
            }
        };
        failed |= matches!(verdict, Verdict::Fail(_));
        results.push((step.name().into(), verdict, took, shown));
    }
    println!("\n{}", summary(&results));
    println!(
        "ci: {} in {}",
        if failed { "FAILED" } else { "passed" },
        fmt_duration(total.elapsed())
    );
    Ok(!failed)
}

fn summary(results: &[(String, Verdict, Duration, String)]) -> String {
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|(name, v, d, cmd)| {
            let (res, time) = match v {
                Verdict::Pass => ("pass".to_string(), fmt_duration(*d)),
                Verdict::Fail(why) => (format!("FAIL ({why})"), fmt_duration(*d)),
                Verdict::NotRun => ("not run".to_string(), "-".to_string()),
                Verdict::Skip(why) => (format!("skip ({why})"), "-".to_string()),
            };
            vec![name.clone(), res, time, cmd.clone()]
        })
        .collect();
    table(&["step", "result", "time", "command"], &rows)
}

/// Names of the workspace's member packages (`cargo metadata --no-deps`).
pub fn workspace_members() -> Result<BTreeSet<String>> {
    let mut c = cargo();
    c.args(["metadata", "--no-deps", "--format-version", "1"]);
    let text = run_stdout(&mut c)?;
    let v: Value = serde_json::from_str(&text).context("cannot parse `cargo metadata` output")?;
    Ok(v["packages"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default())
}

/// Crate names in the output of `cargo tree --prefix none`.
pub fn tree_crates(tree: &str) -> BTreeSet<String> {
    tree.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| !w.is_empty() && !w.starts_with('['))
        .map(String::from)
        .collect()
}

/// The crates of `forbidden` that appear in `tree` output.
pub fn violations(tree: &str, forbidden: &[&str]) -> Vec<String> {
    let crates = tree_crates(tree);
    forbidden
        .iter()
        .filter(|f| crates.contains(**f))
        .map(|f| f.to_string())
        .collect()
}

/// Checks [`ARCH_RULES`] with `cargo tree` (default features and all features); returns a
/// line per rule checked, or an error naming every violation.
pub fn architecture_check() -> Result<Vec<String>> {
    let members = workspace_members()?;
    let mut report = Vec::new();
    let mut bad = Vec::new();
    for (krate, forbidden) in ARCH_RULES {
        if !members.contains(*krate) {
            report.push(format!("{krate}: not a workspace member, not checked"));
            continue;
        }
        for features in [None, Some("--all-features")] {
            let mut c: Command = cargo();
            c.args([
                "tree", "-p", krate, "-e", "normal", "--prefix", "none", "--target", "all",
            ]);
            if let Some(f) = features {
                c.arg(f);
            }
            let tree = run_stdout(&mut c)?;
            let v = violations(&tree, forbidden);
            let label = features.unwrap_or("default features");
            if v.is_empty() {
                report.push(format!(
                    "{krate} ({label}): ok, {} crates, none of {}",
                    tree_crates(&tree).len(),
                    forbidden.join(", ")
                ));
            } else {
                bad.push(format!("{krate} ({label}) depends on {}", v.join(", ")));
            }
        }
    }
    let (krate, features, forbidden) = LIBRARY_RULE;
    if members.contains(krate) {
        let mut c: Command = cargo();
        c.args([
            "tree",
            "-p",
            krate,
            "-e",
            "normal",
            "--prefix",
            "none",
            "--target",
            "all",
            "--no-default-features",
            "--features",
            features,
        ]);
        let tree = run_stdout(&mut c)?;
        let v = violations(&tree, forbidden);
        if v.is_empty() {
            report.push(format!(
                "{krate} (--no-default-features --features {features}): ok, {} crates, none of {}",
                tree_crates(&tree).len(),
                forbidden.join(", ")
            ));
        } else {
            bad.push(format!(
                "{krate} as a library (--features {features}) depends on {}",
                v.join(", ")
            ));
        }
    }
    match crate::structure::check()? {
        Ok(lines) => report.extend(lines),
        Err(v) => bad.extend(v),
    }
    if bad.is_empty() {
        Ok(report)
    } else {
        Err(err!("architecture invariant broken: {}", bad.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(steps: &[Step]) -> Vec<&'static str> {
        steps.iter().map(Step::name).collect()
    }

    #[test]
    fn full_plan_has_every_step_in_order() {
        let p = plan(&CiOptions::default());
        assert_eq!(
            names(&p),
            [
                "fmt",
                "clippy",
                "clippy-all-features",
                "clippy-vuma-no-default",
                "test",
                "pytest",
                "doc",
                "architecture",
                "msrv",
                "miri-vuma-core",
                "miri-vuma-hyperloop"
            ]
        );
        let Step::Cargo { args, .. } = &p[0] else {
            panic!()
        };
        assert_eq!(args.join(" "), "fmt --all -- --check");
        let Step::Cargo { args, .. } = &p[2] else {
            panic!()
        };
        assert_eq!(
            args.join(" "),
            "clippy --workspace --all-targets --all-features -- -D warnings"
        );
        let Step::Cargo { args, .. } = &p[3] else {
            panic!()
        };
        assert_eq!(
            args.join(" "),
            "clippy -p vuma --all-targets --no-default-features -- -D warnings"
        );
        assert_eq!(p[5], Step::Pytest);
        let Step::Cargo { args, env, .. } = &p[6] else {
            panic!()
        };
        assert_eq!(args.join(" "), "doc --workspace --no-deps --all-features");
        assert_eq!(
            env,
            &[("RUSTDOCFLAGS".to_string(), "-D warnings".to_string())]
        );
        let Step::Msrv { args } = &p[8] else { panic!() };
        assert_eq!(
            args.join(" "),
            "check --workspace --all-targets --all-features --locked"
        );
        let Step::Miri { args, env, .. } = &p[10] else {
            panic!()
        };
        assert_eq!(
            args.join(" "),
            "miri test -p vuma-hyperloop --test host --test codecs -- --exact \
             pages_cover_the_buffer zero_detection_is_exact estimates_rank_the_datasets \
             planner_uses_the_cost_model bitplane_block_modes_round_trip"
        );
        assert_eq!(
            miri_summary_cmd(args),
            "cargo +nightly-2026-05-20 miri test -p vuma-hyperloop --test host --test codecs -- --exact \
             <5 tests>"
        );
        assert!(env.contains(&("MIRIFLAGS".to_string(), MIRI_FLAGS.to_string())));
        assert!(env.contains(&("PROPTEST_CASES".to_string(), "8".to_string())));
        // `--no-miri` leaves out only the Miri steps.
        let p = plan(&CiOptions {
            no_miri: true,
            ..Default::default()
        });
        assert_eq!(p.len(), 9);
        assert!(!p.iter().any(|s| matches!(s, Step::Miri { .. })));
    }

    #[test]
    fn msrv_matches_the_manifest_and_toolchains_are_found() {
        let manifest =
            std::fs::read_to_string(crate::util::workspace_root().join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains(&format!("rust-version = \"{MSRV}\"")),
            "MSRV {MSRV} is not the workspace's rust-version"
        );
        assert!(MSRV_INSTALL.contains(MSRV));
        let list = "stable-x86_64-unknown-linux-gnu (active, default)\n\
                    1.880-x86_64-unknown-linux-gnu\n\
                    1.88.0-x86_64-unknown-linux-gnu\n";
        assert_eq!(
            installed_toolchain(list, "1.88").as_deref(),
            Some("1.88.0-x86_64-unknown-linux-gnu")
        );
        assert_eq!(
            installed_toolchain("1.88-x86_64-unknown-linux-gnu\n", "1.88").as_deref(),
            Some("1.88-x86_64-unknown-linux-gnu")
        );
        assert_eq!(
            installed_toolchain("1.95.0-x86_64-unknown-linux-gnu\n", "1.88"),
            None
        );
        assert_eq!(installed_toolchain("", "1.88"), None);
    }

    #[test]
    fn miri_selection_names_tests_that_exist() {
        // Names are passed with `--exact`: a renamed test would silently drop out.
        let root = crate::util::workspace_root();
        for (pkg, targets, tests) in MIRI_SELECTION {
            let mut text = String::new();
            for dir in ["src", "tests"] {
                let mut stack = vec![root.join(pkg).join(dir)];
                while let Some(d) = stack.pop() {
                    for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                        let path = e.path();
                        if path.is_dir() {
                            stack.push(path);
                        } else if path.extension().is_some_and(|x| x == "rs") {
                            text.push_str(&std::fs::read_to_string(&path).unwrap());
                        }
                    }
                }
            }
            for t in *tests {
                let f = t.rsplit("::").next().unwrap();
                assert!(text.contains(&format!("fn {f}(")), "{pkg}: no test `{t}`");
            }
            for w in targets.windows(2).filter(|w| w[0] == "--test") {
                let file = root.join(pkg).join("tests").join(format!("{}.rs", w[1]));
                assert!(file.is_file(), "{pkg}: no test target {}", w[1]);
            }
        }
    }

    #[test]
    fn quick_skips_feature_combinations_and_packages_narrow() {
        let p = plan(&CiOptions {
            quick: true,
            packages: vec!["vuma-core".into(), "xtask".into()],
            fail_fast: false,
            no_miri: false,
        });
        assert_eq!(names(&p), ["fmt", "clippy", "test", "doc", "architecture"]);
        let Step::Cargo { args, .. } = &p[0] else {
            panic!()
        };
        assert_eq!(args.join(" "), "fmt -p vuma-core -p xtask -- --check");
        let Step::Cargo { args, .. } = &p[2] else {
            panic!()
        };
        assert_eq!(args.join(" "), "test -p vuma-core -p xtask --all-features");
        // Without `vuma` selected there is no `-p vuma` step even in a full run.
        let p = plan(&CiOptions {
            packages: vec!["vuma-core".into()],
            ..Default::default()
        });
        assert!(!names(&p).contains(&"clippy-vuma-no-default"));
        assert!(names(&p).contains(&"clippy-all-features"));
        // ... and only the Miri step of a selected package.
        assert!(names(&p).contains(&"miri-vuma-core"));
        assert!(!names(&p).contains(&"miri-vuma-hyperloop"));
        // The pytest step runs for the whole workspace or when `vuma-py` is selected.
        assert!(!names(&p).contains(&"pytest"));
        let p = plan(&CiOptions {
            quick: true,
            packages: vec!["vuma-py".into()],
            ..Default::default()
        });
        assert!(names(&p).contains(&"pytest"));
    }

    #[test]
    fn tree_output_is_parsed_and_violations_found() {
        let tree = "vuma-core v0.1.0 (/w/vuma-core)\nasync-trait v0.1.89 (proc-macro)\n\
                    proc-macro2 v1.0.103\nthiserror v2.0.17\ntracing v0.1.41\n\
                    tokio v1.48.0\ntracing-core v0.1.34 (*)\n";
        let crates = tree_crates(tree);
        assert!(crates.contains("vuma-core") && crates.contains("tracing-core"));
        assert_eq!(violations(tree, ARCH_RULES[0].1), ["tokio"]);
        // A crate whose name merely starts like a forbidden one is not a violation.
        assert!(violations(
            "ash-window v0.13.0\nvuma-cuda-sys v1\n",
            &["ash", "vuma-cuda"]
        )
        .is_empty());
        assert_eq!(
            violations(
                "vuma-cuda v0.1.0 (/w)\nash v0.38.0+1.3.281\n",
                ARCH_RULES[1].1
            ),
            ["ash"]
        );
    }

    #[test]
    fn summary_lists_failures_with_reason() {
        let s = summary(&[
            (
                "fmt".into(),
                Verdict::Pass,
                Duration::from_millis(1500),
                "cargo fmt".into(),
            ),
            (
                "clippy".into(),
                Verdict::Fail("exit 101".into()),
                Duration::from_secs(61),
                "cargo clippy".into(),
            ),
            (
                "test".into(),
                Verdict::NotRun,
                Duration::ZERO,
                String::new(),
            ),
            (
                "miri".into(),
                Verdict::Skip("nightly miri not installed".into()),
                Duration::ZERO,
                "cargo +nightly miri test".into(),
            ),
        ]);
        assert!(s.contains("fmt    | pass"), "{s}");
        assert!(
            s.lines()
                .any(|l| l.starts_with("clippy | FAIL (exit 101) ") && l.contains("| 1m01s |")),
            "{s}"
        );
        assert!(s.contains("test   | not run"), "{s}");
        assert!(
            s.contains("miri   | skip (nightly miri not installed) | -"),
            "{s}"
        );
    }
}
