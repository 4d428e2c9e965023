//! `cargo xtask fuzz [--seconds N] [--target T]… [--sanitizer S] [--plain]`: runs the fuzz
//! targets of the `fuzz/` crate (its own workspace) for N seconds each and prints
//! executions and crashes per target.
//!
//! With `cargo-fuzz` installed it runs libFuzzer (`cargo fuzz run`, nightly features through
//! `RUSTC_BOOTSTRAP=1` on a stable toolchain): the seed corpus `fuzz/corpus/<t>/` is read,
//! new inputs go to `fuzz/corpus-work/<t>/` (git-ignored), crashes to `fuzz/artifacts/<t>/`.
//! Without it (or with `--plain`) it runs the same target bodies as plain tests
//! (`fuzz/tests/targets.rs`, stable Rust) for N seconds each with pseudo-random and mutated
//! inputs.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::err;
use crate::util::{cargo, display_cmd, fmt_duration, table, workspace_root, Context, Result};

/// The fuzz targets (`fuzz/Cargo.toml`'s `[[bin]]`s and `vuma_fuzz::TARGETS`).
pub const TARGETS: [&str; 11] = [
    "lz4",
    "zstd",
    "snappy",
    "bitplane",
    "lz4block",
    "chunk",
    "cost_model",
    "float",
    "upload_into",
    "records",
    "encode_jobs",
];

/// What `cargo xtask fuzz` does, from its command line.
#[derive(Debug, Clone)]
pub struct FuzzOptions {
    /// Seconds per target.
    pub seconds: u64,
    /// Targets to run (empty: all).
    pub targets: Vec<String>,
    /// libFuzzer sanitizer (`none`, `address`, …), passed to `cargo fuzz -s`.
    pub sanitizer: String,
    /// Run the plain-test harness even when cargo-fuzz is installed.
    pub plain: bool,
    /// Executions per target (libFuzzer `-runs`).
    pub runs: Option<u64>,
    /// Fuzzing processes per target (libFuzzer `-fork`).
    pub jobs: u32,
    /// Whether `seconds` limits each target (with `runs` alone it does not).
    pub time_limit: bool,
}

impl Default for FuzzOptions {
    fn default() -> Self {
        FuzzOptions {
            seconds: 10,
            targets: Vec::new(),
            sanitizer: "none".into(),
            plain: false,
            runs: None,
            jobs: 1,
            time_limit: true,
        }
    }
}

/// One target's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Inputs executed.
    pub execs: u64,
    /// Crash (and leak, timeout, oom) files written by this run.
    pub crashes: usize,
    /// Whether the run exited successfully.
    pub ok: bool,
}

fn fuzz_dir() -> PathBuf {
    workspace_root().join("fuzz")
}

fn have_cargo_fuzz() -> bool {
    cargo()
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn artifact_files(target: &str) -> Vec<PathBuf> {
    std::fs::read_dir(fuzz_dir().join("artifacts").join(target))
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default()
}

/// Parses libFuzzer's `-print_final_stats=1` output (or its last `#N` status line) and the
/// plain harness's `fuzz-as-test T: … N inputs` line into an execution count.
pub fn parse_execs(log: &str) -> Option<u64> {
    let mut best = None;
    for l in log.lines() {
        if let Some(v) = l.strip_prefix("stat::number_of_executed_units:") {
            return v.trim().parse().ok();
        }
        if let Some(rest) = l.strip_prefix('#') {
            let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(n) = n.parse::<u64>() {
                best = Some(n);
            }
        }
        if let Some(i) = l.find(" inputs in ") {
            if l.starts_with("fuzz-as-test") {
                let head = &l[..i];
                let n = head.rsplit([' ', ',']).next().unwrap_or("");
                if let Ok(n) = n.parse() {
                    best = Some(n);
                }
            }
        }
    }
    best
}

/// Runs `c`, echoing stderr lines that are not libFuzzer's per-input progress; returns
/// (success, everything it printed on stderr).
fn run_logged(c: &mut Command) -> Result<(bool, String)> {
    eprintln!("==> {}", display_cmd(c));
    let mut child = c
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context(format!("cannot start `{}`", display_cmd(c)))?;
    let mut log = String::new();
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).lines() {
            let line = line?;
            let progress = line.starts_with('#')
                && ["NEW", "REDUCE", "pulse", "RELOAD"]
                    .iter()
                    .any(|k| line.contains(k));
            if !progress {
                eprintln!("    {line}");
            }
            log.push_str(&line);
            log.push('\n');
        }
    }
    let st = child.wait()?;
    Ok((st.success(), log))
}

fn libfuzzer_build(opts: &FuzzOptions) -> Result<()> {
    let mut c = cargo();
    c.env("RUSTC_BOOTSTRAP", "1").args([
        "fuzz",
        "build",
        "--fuzz-dir",
        "fuzz",
        "--features",
        "libfuzzer",
        "-s",
        &opts.sanitizer,
    ]);
    let (ok, _) = run_logged(&mut c)?;
    if ok {
        Ok(())
    } else {
        Err(err!("`{}` failed", display_cmd(&c)))
    }
}

fn libfuzzer_run(target: &str, opts: &FuzzOptions) -> Result<Outcome> {
    let work = fuzz_dir().join("corpus-work").join(target);
    std::fs::create_dir_all(&work).context(format!("creating {}", work.display()))?;
    let seeds = Path::new("fuzz").join("corpus").join(target);
    let before = artifact_files(target);
    let mut c = cargo();
    c.env("RUSTC_BOOTSTRAP", "1")
        .args([
            "fuzz",
            "run",
            "--fuzz-dir",
            "fuzz",
            "--features",
            "libfuzzer",
            "-s",
            &opts.sanitizer,
            target,
        ])
        .arg(&work)
        .arg(&seeds)
        .arg("--")
        .args(libfuzzer_flags(opts));
    let (ok, log) = run_logged(&mut c)?;
    let crashes = artifact_files(target)
        .into_iter()
        .filter(|p| !before.contains(p))
        .count();
    Ok(Outcome {
        execs: parse_execs(&log).unwrap_or(0),
        crashes: if ok { crashes } else { crashes.max(1) },
        ok,
    })
}

/// The libFuzzer flags of a run with `opts`.
fn libfuzzer_flags(opts: &FuzzOptions) -> Vec<String> {
    let mut f = vec![
        "-print_final_stats=1".to_string(),
        "-rss_limit_mb=2048".into(),
        "-timeout=10".into(),
    ];
    if opts.time_limit {
        f.push(format!("-max_total_time={}", opts.seconds));
    }
    if let Some(n) = opts.runs {
        f.push(format!("-runs={n}"));
    }
    if opts.jobs > 1 {
        f.push(format!("-fork={}", opts.jobs));
    }
    f
}

/// Writes the libFuzzer binaries (stripped), the seed corpora and a `run.sh` into `dir`:
/// `run.sh [OUT]` runs every target with the flags of `opts` (`RUNS`, `JOBS` and `SECONDS_CAP`
/// in the environment override them) and prints a table of executions and crashes.
pub fn bundle(opts: &FuzzOptions, dir: &Path) -> Result<()> {
    if !have_cargo_fuzz() {
        return Err(err!(
            "--bundle needs cargo-fuzz (`cargo install cargo-fuzz`)"
        ));
    }
    libfuzzer_build(opts)?;
    let bin = fuzz_dir()
        .join("target")
        .join("x86_64-unknown-linux-gnu")
        .join("release");
    for sub in ["bin", "corpus"] {
        std::fs::create_dir_all(dir.join(sub)).context(format!("creating {}", dir.display()))?;
    }
    for t in TARGETS {
        let st = Command::new("strip")
            .arg("-o")
            .arg(dir.join("bin").join(t))
            .arg(bin.join(t))
            .status()
            .context("running strip")?;
        if !st.success() {
            return Err(err!("strip {} failed", bin.join(t).display()));
        }
        let seeds = dir.join("corpus").join(t);
        std::fs::create_dir_all(&seeds)?;
        for e in std::fs::read_dir(fuzz_dir().join("corpus").join(t))? {
            let p = e?.path();
            if p.is_file() {
                std::fs::copy(&p, seeds.join(p.file_name().unwrap_or_default()))?;
            }
        }
    }
    let flags: Vec<String> = libfuzzer_flags(opts)
        .into_iter()
        .filter(|f| {
            !f.starts_with("-runs") && !f.starts_with("-fork") && !f.starts_with("-max_total")
        })
        .collect();
    let script = format!(
        r#"#!/usr/bin/env bash
# Runs VUMA's fuzz targets (libFuzzer binaries built by `cargo xtask fuzz --bundle`):
# RUNS executions per target (default {runs}), JOBS processes each (default {jobs}),
# SECONDS_CAP as a time cap per target in seconds (default none). Logs and new inputs under OUT ($1).
set -u
cd "$(dirname "$0")"
OUT="${{1:-out}}"; RUNS="${{RUNS:-{runs}}}"; JOBS="${{JOBS:-{jobs}}}"
mkdir -p "$OUT"
printf '%-12s %12s %9s %8s %s
' target execs seconds crashes result | tee "$OUT/summary.txt"
rc=0
for t in {targets}; do
  mkdir -p "$OUT/work/$t" "$OUT/artifacts/$t"
  cap=(); [ -n "${{SECONDS_CAP:-}}" ] && cap=("-max_total_time=$SECONDS_CAP")
  start=$(date +%s)
  ./bin/$t "$OUT/work/$t" corpus/$t {flags} -runs="$RUNS" -fork="$JOBS" "${{cap[@]}}"     -artifact_prefix="$OUT/artifacts/$t/" > "$OUT/$t.log" 2>&1
  st=$?
  secs=$(( $(date +%s) - start ))
  n=$(grep -oE 'fuzzed for [0-9]+ iterations|stat::number_of_executed_units: *[0-9]+' "$OUT/$t.log" | grep -oE '[0-9]+' | tail -1)
  c=$(find "$OUT/artifacts/$t" -type f | wc -l)
  res=pass; {{ [ "$st" -ne 0 ] || [ "$c" -ne 0 ]; }} && res=FAIL && rc=1
  printf '%-12s %12s %9s %8s %s
' "$t" "${{n:-0}}" "$secs" "$c" "$res" | tee -a "$OUT/summary.txt"
done
exit $rc
"#,
        runs = opts.runs.unwrap_or(10_000_000),
        jobs = opts.jobs.max(1),
        targets = TARGETS.join(" "),
        flags = flags.join(" "),
    );
    let run = dir.join("run.sh");
    std::fs::write(&run, script)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755))?;
    }
    eprintln!("fuzz bundle: {} (run.sh)", dir.display());
    Ok(())
}

fn plain_run(target: &str, opts: &FuzzOptions) -> Result<Outcome> {
    let mut c = cargo();
    c.env("VUMA_FUZZ_SECS", opts.seconds.to_string()).args([
        "test",
        "--release",
        "--manifest-path",
        "fuzz/Cargo.toml",
        "--test",
        "targets",
        "--",
        "--exact",
        target,
        "--nocapture",
    ]);
    let (ok, log) = run_logged(&mut c)?;
    Ok(Outcome {
        execs: parse_execs(&log).unwrap_or(0),
        crashes: usize::from(!ok),
        ok,
    })
}

/// Runs the targets; prints a table; returns whether no target crashed.
pub fn run(opts: &FuzzOptions) -> Result<bool> {
    for t in &opts.targets {
        if !TARGETS.contains(&t.as_str()) {
            return Err(err!(
                "unknown fuzz target `{t}` (one of {})",
                TARGETS.join(", ")
            ));
        }
    }
    let targets: Vec<&str> = if opts.targets.is_empty() {
        TARGETS.to_vec()
    } else {
        opts.targets.iter().map(String::as_str).collect()
    };
    let libfuzzer = !opts.plain && have_cargo_fuzz();
    let mode = if libfuzzer {
        format!("libFuzzer (cargo fuzz, sanitizer {})", opts.sanitizer)
    } else {
        "plain tests (cargo-fuzz not installed or --plain)".to_string()
    };
    eprintln!(
        "fuzz: {} target(s), {} s each, {mode}",
        targets.len(),
        opts.seconds
    );
    let total = Instant::now();
    if libfuzzer {
        libfuzzer_build(opts)?;
    }
    let mut rows = Vec::new();
    let mut all_ok = true;
    for t in &targets {
        let start = Instant::now();
        let o = if libfuzzer {
            libfuzzer_run(t, opts)?
        } else {
            plain_run(t, opts)?
        };
        all_ok &= o.ok && o.crashes == 0;
        let secs = start.elapsed().as_secs_f64().max(1e-9);
        rows.push(vec![
            t.to_string(),
            o.execs.to_string(),
            format!("{:.0}", o.execs as f64 / secs),
            o.crashes.to_string(),
            if o.ok { "pass".into() } else { "FAIL".into() },
        ]);
    }
    println!(
        "\n{}",
        table(&["target", "execs", "execs/s", "crashes", "result"], &rows)
    );
    println!(
        "fuzz: {} in {} ({mode}); crashers in fuzz/artifacts/<target>/",
        if all_ok { "passed" } else { "FAILED" },
        fmt_duration(total.elapsed())
    );
    Ok(all_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_libfuzzer_and_plain_execs() {
        let lf = "#2\tINITED cov: 10\n#4096\tpulse  cov: 12\nDone 51234 runs in 10 second(s)\nstat::number_of_executed_units: 51234\n";
        assert_eq!(parse_execs(lf), Some(51234));
        assert_eq!(parse_execs("#77\tNEW cov: 3\n#80\tREDUCE\n"), Some(80));
        let plain = "fuzz-as-test lz4: 14 seeds+regressions, 123456 inputs in 10.0s, 0 crashes\n";
        assert_eq!(parse_execs(plain), Some(123456));
        assert_eq!(parse_execs("nothing"), None);
    }

    #[test]
    fn targets_match_the_fuzz_crate() {
        let toml = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
        for t in TARGETS {
            assert!(
                toml.contains(&format!("name = \"{t}\"")),
                "fuzz/Cargo.toml lacks target {t}"
            );
        }
    }
}
