//! `cargo xtask test-hw`: release test and bench binaries, run in place with
//! `VUMA_REQUIRE_HW=1`, or packed into a bundle that runs on a GPU machine without Rust.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::artifacts::{self, Artifact, Kind, Selection};
use crate::err;
use crate::util::{fmt_duration, fmt_size, run_stdout, table, workspace_root, Context, Result};

/// The runner script copied into every bundle as `run.sh`.
pub const RUN_SH: &str = include_str!("run.sh");

/// The largest bundle allowed: what travels to the GPU machine is capped at 64 MiB in all,
/// and the working tree (~3.6 MiB), `.gl` (~0.4 MiB) and the validation-layer package
/// (`vvl/`, ~4.3 MiB) travel with it.
pub const MAX_BUNDLE_BYTES: u64 = 54 * 1024 * 1024;

/// What `cargo xtask test-hw` does, from its command line.
#[derive(Debug, Clone, Default)]
pub struct HwOptions {
    /// Packages and features to build.
    pub selection: Selection,
    /// Write a bundle into this folder instead of running the tests here.
    pub bundle: Option<PathBuf>,
    /// Run in place without `VUMA_REQUIRE_HW=1` (hardware tests may skip).
    pub allow_skip: bool,
    /// Leave the bench binaries out of the bundle.
    pub no_benches: bool,
}

/// Runs the command; returns whether it succeeded (every test passed, or the bundle was written).
pub fn run(opts: &HwOptions) -> Result<bool> {
    let tests: Vec<Artifact> = artifacts::build(&["test", "--release"], &opts.selection)?
        .into_iter()
        .filter(|a| a.kind != Kind::Bench)
        .collect();
    match &opts.bundle {
        None => run_in_place(&tests, !opts.allow_skip),
        Some(dir) => {
            let benches: Vec<Artifact> = if opts.no_benches {
                Vec::new()
            } else {
                artifacts::build(&["bench"], &opts.selection)?
                    .into_iter()
                    .filter(|a| a.kind == Kind::Bench)
                    .collect()
            };
            let dir = if dir.is_absolute() {
                dir.clone()
            } else {
                workspace_root().join(dir)
            };
            let info = BuildInfo::here(&opts.selection);
            let b = make_bundle(&dir, &tests, &benches, &info, MAX_BUNDLE_BYTES)?;
            println!("{}", b.manifest);
            println!(
                "bundle: {} ({} tests, {} benches, {}). On the GPU machine: `bash {}/run.sh` \
                 (OUT=dir for logs; --sanitize, --bench, --all)",
                dir.display(),
                b.tests,
                b.benches,
                fmt_size(b.total_bytes),
                dir.strip_prefix(workspace_root()).unwrap_or(&dir).display()
            );
            Ok(true)
        }
    }
}

/// Runs each test binary where it was built, with `VUMA_REQUIRE_HW=1` when `require` is set,
/// in its package directory (as cargo does), and prints a summary.
fn run_in_place(tests: &[Artifact], require: bool) -> Result<bool> {
    let mut rows = Vec::new();
    let mut ok = true;
    for t in tests {
        eprintln!("\n==> {} ({})", t.bundle_name(), t.executable.display());
        let mut c = Command::new(&t.executable);
        if !t.package_dir.as_os_str().is_empty() {
            c.current_dir(&t.package_dir);
        }
        if require {
            c.env("VUMA_REQUIRE_HW", "1");
        }
        let start = Instant::now();
        let (pass, notes) = match run_teed(&mut c) {
            Ok((status, lines)) => (status, lines),
            Err(e) => (false, vec![e.to_string()]),
        };
        ok &= pass;
        rows.push(vec![
            t.bundle_name(),
            if pass { "PASS".into() } else { "FAIL".into() },
            fmt_duration(start.elapsed()),
            notes.join(" "),
        ]);
    }
    println!(
        "\n{}",
        table(
            &["test binary", "result", "time", "test result / SKIPs"],
            &rows
        )
    );
    println!(
        "test-hw: {} ({} binaries{})",
        if ok { "PASS" } else { "FAIL" },
        tests.len(),
        if require {
            ", VUMA_REQUIRE_HW=1"
        } else {
            ", skips allowed"
        }
    );
    Ok(ok)
}

/// Runs `c`, echoing its output, and returns whether it succeeded plus its `test result:`
/// lines and a count of `SKIP` lines.
fn run_teed(c: &mut Command) -> Result<(bool, Vec<String>)> {
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context(format!("cannot start {:?}", c.get_program()))?;
    let notes = Arc::new(Mutex::new((Vec::<String>::new(), 0usize)));
    let pump = |r: Box<dyn Read + Send>, to_err: bool| {
        let notes = Arc::clone(&notes);
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(|l| l.ok()) {
                if to_err {
                    eprintln!("{line}");
                } else {
                    println!("{line}");
                }
                if let Ok(mut n) = notes.lock() {
                    if line.starts_with("test result:") {
                        n.0.push(line.trim_start_matches("test result: ").to_string());
                    }
                    if line.contains("SKIP") {
                        n.1 += 1;
                    }
                }
            }
        })
    };
    let mut threads = Vec::new();
    if let Some(o) = child.stdout.take() {
        threads.push(pump(Box::new(o), false));
    }
    if let Some(e) = child.stderr.take() {
        threads.push(pump(Box::new(e), true));
    }
    let status = child.wait().context("waiting for a test binary")?;
    for t in threads {
        let _ = t.join();
    }
    let (mut lines, skips) = notes.lock().map(|n| n.clone()).unwrap_or_default();
    if skips > 0 {
        lines.push(format!("[{skips} SKIP lines]"));
    }
    Ok((status.success(), lines))
}

/// Facts about the build written into the MANIFEST.
#[derive(Debug, Clone, Default)]
pub struct BuildInfo {
    /// `git rev-parse HEAD`, with `+dirty` when the tree has changes.
    pub commit: String,
    /// `rustc -V`.
    pub rustc: String,
    /// UTC time of the build.
    pub built: String,
    /// The cargo selection arguments.
    pub selection: String,
}

impl BuildInfo {
    /// Gathers the facts on this machine (unknown ones read `unknown`).
    pub fn here(sel: &Selection) -> BuildInfo {
        let out = |prog: &str, args: &[&str]| {
            let mut c = Command::new(prog);
            c.args(args).current_dir(workspace_root());
            run_stdout(&mut c).map(|s| s.trim().to_string()).ok()
        };
        let mut commit = out("git", &["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
        if out("git", &["status", "--porcelain"]).is_some_and(|s| !s.is_empty()) {
            commit.push_str("+dirty");
        }
        let rustc = out("rustc", &["-V"]).unwrap_or_else(|| "unknown".into());
        BuildInfo {
            commit,
            rustc,
            built: utc_now(),
            selection: sel.cargo_args().join(" "),
        }
    }
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ` (no date crate needed).
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    civil(secs)
}

fn civil(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// What [`make_bundle`] wrote.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Number of test binaries.
    pub tests: usize,
    /// Number of bench binaries.
    pub benches: usize,
    /// Size of everything in the bundle.
    pub total_bytes: u64,
    /// The MANIFEST text.
    pub manifest: String,
}

/// Writes a bundle: `dir/tests/*`, `dir/benches/*`, `dir/run.sh`, `dir/MANIFEST`.
///
/// Refuses a non-empty `dir` that is not an earlier bundle (it would be cleared). Fails,
/// naming the largest files, when the bundle comes out larger than `limit` bytes.
pub fn make_bundle(
    dir: &Path,
    tests: &[Artifact],
    benches: &[Artifact],
    info: &BuildInfo,
    limit: u64,
) -> Result<Bundle> {
    if dir.exists() {
        let mut entries =
            std::fs::read_dir(dir).context(format!("cannot read {}", dir.display()))?;
        if entries.next().is_some() && !dir.join("MANIFEST").exists() {
            return Err(err!(
                "{} exists, is not empty and holds no MANIFEST: not a bundle folder, refusing to clear it",
                dir.display()
            ));
        }
        for sub in ["tests", "benches", "out"] {
            let p = dir.join(sub);
            if p.exists() {
                std::fs::remove_dir_all(&p).context(format!("cannot clear {}", p.display()))?;
            }
        }
    }
    let strip = which("strip");
    let mut listing: Vec<(u64, String, String)> = Vec::new();
    for (sub, list) in [("tests", tests), ("benches", benches)] {
        let folder = dir.join(sub);
        std::fs::create_dir_all(&folder).context(format!("cannot create {}", folder.display()))?;
        let mut used: Vec<String> = Vec::new();
        for a in list {
            let mut name = a.bundle_name();
            let mut n = 2;
            while used.contains(&name) {
                name = format!("{}-{n}", a.bundle_name());
                n += 1;
            }
            used.push(name.clone());
            let dest = folder.join(&name);
            std::fs::copy(&a.executable, &dest).context(format!(
                "cannot copy {} to {}",
                a.executable.display(),
                dest.display()
            ))?;
            set_executable(&dest)?;
            if let Some(strip) = &strip {
                let st = Command::new(strip)
                    .arg(&dest)
                    .stderr(Stdio::null())
                    .status();
                if !st.is_ok_and(|s| s.success()) {
                    eprintln!(
                        "warning: `strip {}` failed; keeping it as built",
                        dest.display()
                    );
                }
            }
            let size = std::fs::metadata(&dest)?.len();
            let what = match a.kind {
                Kind::Unit => "unit tests",
                Kind::Test => "integration test",
                Kind::Bench => "bench",
            };
            listing.push((
                size,
                format!("{sub}/{name}"),
                format!("{} {what} `{}`", a.package, a.target),
            ));
        }
    }
    let run_sh = dir.join("run.sh");
    std::fs::write(&run_sh, RUN_SH).context(format!("cannot write {}", run_sh.display()))?;
    set_executable(&run_sh)?;
    listing.push((RUN_SH.len() as u64, "run.sh".into(), "runner".into()));

    let total: u64 = listing.iter().map(|l| l.0).sum();
    let mut m = String::new();
    m.push_str("# VUMA hardware bundle, written by `cargo xtask test-hw --bundle`; run: bash run.sh [--sanitize] [--bench] [--all]\n");
    m.push_str(&format!(
        "built: {}\ncommit: {}\nrustc: {}\n",
        info.built, info.commit, info.rustc
    ));
    m.push_str(&format!("selection: {}\n", info.selection));
    m.push_str(&format!(
        "total: {total} bytes ({}), limit {}\n",
        fmt_size(total),
        fmt_size(limit)
    ));
    m.push_str(&format!("{:>10}  {:<48}  what\n", "bytes", "file"));
    for (size, path, what) in &listing {
        m.push_str(&format!("{size:>10}  {path:<48}  {what}\n"));
    }
    let manifest = dir.join("MANIFEST");
    std::fs::write(&manifest, &m).context(format!("cannot write {}", manifest.display()))?;
    if total > limit {
        let mut big = listing.clone();
        big.sort_by_key(|b| std::cmp::Reverse(b.0));
        let top: Vec<String> = big
            .iter()
            .take(3)
            .map(|(s, p, _)| format!("{p} ({})", fmt_size(*s)))
            .collect();
        return Err(err!(
            "bundle {} is {}, over the {} limit (largest: {}); bundle fewer packages (-p), \
             leave benches out (--no-benches), or check that the release profile strips",
            dir.display(),
            fmt_size(total),
            fmt_size(limit),
            top.join(", ")
        ));
    }
    Ok(Bundle {
        tests: tests.len(),
        benches: benches.len(),
        total_bytes: total,
        manifest: m,
    })
}

fn set_executable(p: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
        .context(format!("cannot make {} executable", p.display()))
}

/// The full path of `prog` on `PATH`, if any.
fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::temp_dir;

    fn script(dir: &Path, name: &str, body: &str) -> Artifact {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        set_executable(&p).unwrap();
        Artifact {
            package: "pkg".into(),
            target: name.into(),
            kind: if name.starts_with("bench") {
                Kind::Bench
            } else {
                Kind::Test
            },
            executable: p,
            package_dir: dir.into(),
        }
    }

    /// A bundle of shell scripts that behave like test and bench binaries.
    fn fake_bundle(root: &Path, failing: bool) -> PathBuf {
        let src = root.join("src");
        std::fs::create_dir_all(&src).unwrap();
        let mut tests = vec![
            script(
                &src,
                "t_env",
                "echo \"require=$VUMA_REQUIRE_HW\"; [ \"$VUMA_REQUIRE_HW\" = 1 ] || { echo 'SKIP: cuda unavailable: no GPU'; }\n\
                 echo 'test result: ok. 3 passed; 0 failed; 0 ignored'",
            ),
            script(&src, "t_ok", "echo 'test result: ok. 1 passed; 0 failed'"),
        ];
        if failing {
            tests.push(script(
                &src,
                "t_bad",
                "echo 'thread panicked at boom'; echo 'test result: FAILED. 0 passed; 1 failed'; exit 101",
            ));
        }
        let benches = vec![script(
            &src,
            "bench_a",
            "printf '%s\\n' '{\"bench\":\"x/a\",\"device\":\"d\",\"value\":2,\"unit\":\"GB/s\",\"baseline\":\"raw\",\"baseline_value\":1,\"higher_is_better\":true,\"ratio\":2}' >> \"$VUMA_BENCH_OUT\"\n\
             echo \"quick=${VUMA_BENCH_QUICK:-0}\"",
        )];
        let dir = root.join("bundle");
        make_bundle(
            &dir,
            &tests,
            &benches,
            &BuildInfo::default(),
            MAX_BUNDLE_BYTES,
        )
        .unwrap();
        dir
    }

    fn run_sh(dir: &Path, out: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
        let mut c = Command::new("bash");
        c.arg(dir.join("run.sh")).args(args).env("OUT", out);
        // The runner reads these; the caller's environment must not leak into the tests.
        for k in [
            "VUMA_REQUIRE_HW",
            "VUMA_TEST_ARGS",
            "VUMA_BENCH_QUICK",
            "VUMA_GL_DIR",
            "VUMA_NO_PYTHON",
            "VUMA_MAX_OUT_FILES",
            "VUMA_LOG_CAP_BYTES",
        ] {
            c.env_remove(k);
        }
        for (k, v) in env {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        let summary = std::fs::read_to_string(out.join("summary.txt")).unwrap_or_default();
        (o.status.code().unwrap_or(-1), summary)
    }

    #[test]
    fn bundle_has_binaries_runner_and_manifest() {
        let root = temp_dir("bundle");
        let dir = fake_bundle(&root, true);
        for f in [
            "tests/pkg-t_env",
            "tests/pkg-t_ok",
            "tests/pkg-t_bad",
            "benches/pkg-bench_a",
            "run.sh",
            "MANIFEST",
        ] {
            assert!(dir.join(f).is_file(), "{f} missing");
        }
        let m = std::fs::read_to_string(dir.join("MANIFEST")).unwrap();
        assert!(m.contains("tests/pkg-t_ok") && m.contains("total: "), "{m}");
        // Rebuilding over an old bundle clears it; a foreign folder is refused.
        let b = make_bundle(&dir, &[], &[], &BuildInfo::default(), MAX_BUNDLE_BYTES).unwrap();
        assert_eq!(b.tests, 0);
        assert!(!dir.join("tests/pkg-t_ok").exists());
        let foreign = root.join("foreign");
        std::fs::create_dir_all(&foreign).unwrap();
        std::fs::write(foreign.join("precious.txt"), "keep").unwrap();
        assert!(make_bundle(&foreign, &[], &[], &BuildInfo::default(), MAX_BUNDLE_BYTES).is_err());
        assert!(foreign.join("precious.txt").exists());
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn oversized_bundle_is_refused_with_a_clear_message() {
        let root = temp_dir("bundle-big");
        let src = root.join("src");
        std::fs::create_dir_all(&src).unwrap();
        let a = script(&src, "t_big", &format!("# {}", "x".repeat(5000)));
        let e = make_bundle(&root.join("b"), &[a], &[], &BuildInfo::default(), 4096).unwrap_err();
        assert!(
            e.0.contains("over the 4.0 KiB limit") && e.0.contains("tests/pkg-t_big"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn runner_reports_pass_and_fail_and_exits_non_zero() {
        let root = temp_dir("runsh");
        let dir = fake_bundle(&root, true);
        let out = root.join("out");
        let (code, s) = run_sh(&dir, &out, &["--no-gl"], &[]);
        assert_eq!(code, 1, "{s}");
        assert!(s.contains("PASS  test  pkg-t_ok"), "{s}");
        assert!(s.contains("FAIL  test  pkg-t_bad"), "{s}");
        assert!(s.contains("test result: FAILED. 0 passed; 1 failed"), "{s}");
        assert!(
            s.contains("| thread panicked at boom"),
            "failing log tail in summary: {s}"
        );
        assert!(s.contains("RESULT: FAIL (1 binary runs failed)"), "{s}");
        let log = std::fs::read_to_string(out.join("tests-pkg-t_env.log")).unwrap();
        assert!(
            log.contains("require=1"),
            "VUMA_REQUIRE_HW defaults to 1: {log}"
        );
        assert!(
            !out.join("bench.jsonl").exists(),
            "benches only with --bench"
        );
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn runner_allows_skips_and_runs_benches() {
        let root = temp_dir("runsh-bench");
        let dir = fake_bundle(&root, false);
        for no_python in ["", "1"] {
            let out = root.join(format!("out{no_python}"));
            let (code, s) = run_sh(
                &dir,
                &out,
                &["--bench", "--no-gl"],
                &[
                    ("VUMA_REQUIRE_HW", "0"),
                    ("VUMA_NO_PYTHON", no_python),
                    ("VUMA_BENCH_QUICK", "1"),
                ],
            );
            assert_eq!(code, 0, "{s}");
            assert!(
                s.contains("PASS  test  pkg-t_env") && s.contains("[1 SKIP lines]"),
                "{s}"
            );
            assert!(s.contains("SKIP: cuda unavailable"), "{s}");
            assert!(s.contains("PASS  bench  pkg-bench_a"), "{s}");
            assert!(s.contains("RESULT: PASS"), "{s}");
            let json = std::fs::read_to_string(out.join("results.json")).unwrap();
            let recs = crate::records::parse(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
            assert_eq!(recs.len(), 1);
            assert_eq!(recs[0].ratio, Some(2.0));
            let blog = std::fs::read_to_string(out.join("bench-pkg-bench_a.log")).unwrap();
            assert!(blog.contains("quick=1"));
        }
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn runner_packs_logs_when_out_would_hold_too_many_files() {
        let root = temp_dir("runsh-pack");
        let dir = fake_bundle(&root, true);
        let out = root.join("out");
        let (code, s) = run_sh(
            &dir,
            &out,
            &["--bench", "--no-gl"],
            &[("VUMA_MAX_OUT_FILES", "3"), ("VUMA_LOG_CAP_BYTES", "40")],
        );
        assert_eq!(code, 1);
        assert!(s.contains("packed into logs.tar.gz"), "{s}");
        assert!(out.join("logs.tar.gz").is_file());
        assert!(!out.join("tests-pkg-t_ok.log").exists());
        let files = std::fs::read_dir(&out).unwrap().count();
        assert!(
            files <= 4,
            "summary, bench.jsonl, results.json, logs.tar.gz: {files}"
        );
        // Logs over the cap keep head and tail.
        let list = Command::new("tar")
            .arg("-xzOf")
            .arg(out.join("logs.tar.gz"))
            .arg("tests-pkg-t_env.log")
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&list.stdout).contains("run.sh: "),
            "capped log marks the cut"
        );
        let (code, _) = run_sh(&dir, &root.join("o2"), &["--bogus"], &[]);
        assert_eq!(code, 2);
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn sanitize_pass_without_sanitizer_is_a_loud_skip() {
        let root = temp_dir("runsh-san");
        let dir = fake_bundle(&root, false);
        let out = root.join("out");
        let (code, s) = run_sh(
            &dir,
            &out,
            &["--sanitize", "--no-tests", "--no-gl"],
            &[("PATH", "/usr/bin:/bin")],
        );
        if Path::new("/usr/local/cuda/bin/compute-sanitizer").exists() {
            return;
        }
        assert_eq!(code, 0, "{s}");
        assert!(
            s.contains("SKIP  sanitize: compute-sanitizer not found"),
            "{s}"
        );
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn sanitize_pass_reports_errors_and_tolerates_cuda_free_binaries() {
        let root = temp_dir("runsh-fake-san");
        let dir = fake_bundle(&root, false);
        // A stand-in with compute-sanitizer's behaviour: programs that never touch CUDA end
        // with exit 255 and "terminated before first instrumented API call"; a program
        // named *t_ok* gets a memcheck error and the --error-exitcode.
        let bin = root.join("fakebin");
        std::fs::create_dir_all(&bin).unwrap();
        let san = bin.join("compute-sanitizer");
        std::fs::write(
            &san,
            "#!/bin/sh\nwhile [ $# -gt 0 ] && [ ! -f \"$1\" ]; do shift; done\nprog=\"$1\"\n\
             echo '========= COMPUTE-SANITIZER'\n\"$@\"\n\
             case \"$prog\" in *t_ok) echo '========= Invalid __global__ read of size 4'; \
             echo '========= ERROR SUMMARY: 1 error'; exit 86;; esac\n\
             echo '========= Error: Target application terminated before first instrumented API call'; exit 255\n",
        )
        .unwrap();
        set_executable(&san).unwrap();
        let path = format!("{}:/usr/bin:/bin", bin.display());
        let out = root.join("out");
        let (code, s) = run_sh(
            &dir,
            &out,
            &["--sanitize", "--no-tests", "--no-gl"],
            &[("PATH", &path)],
        );
        assert_eq!(code, 1, "{s}");
        assert!(
            s.contains("PASS (no CUDA calls: nothing to sanitize)  sanitize  pkg-t_env"),
            "{s}"
        );
        assert!(s.contains("FAIL  sanitize  pkg-t_ok"), "{s}");
        assert!(s.contains("1 ========= ERROR SUMMARY: 1 error"), "{s}");
        assert!(s.contains("RESULT: FAIL (1 binary runs failed)"), "{s}");
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), "1970-01-01T00:00:00Z");
        assert_eq!(civil(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(civil(951_782_400), "2000-02-29T00:00:00Z");
    }
}
