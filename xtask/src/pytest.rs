//! The `pytest` step of `cargo xtask ci`: builds the `vuma` wheel (`vuma-py`) with maturin,
//! installs it into a virtual environment and runs the pytest suite (`vuma-py/tests`) on
//! the host device and whatever Vulkan (lavapipe in CI) or CUDA device is present.
//!
//! The Python used is `$VUMA_PYTHON`, else `target/py-venv/bin/python` (where `.ci/run`
//! makes a virtual environment with maturin, pytest and numpy). Without one that can import
//! all three the step is skipped with a line saying how to set it up; with `$VUMA_PYTHON`
//! set and a module missing, it fails.
//!
//! The wheel is built with the dev profile: it reuses most of what the `test` step compiled
//! (a release build of the whole tree would double the step's time on a 2-core machine),
//! and the suite's data are small.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::err;
use crate::util::{display_cmd, fmt_status, run_status, workspace_root, Result};

/// Where `.ci/run` makes the virtual environment, relative to the workspace root.
pub const VENV: &str = "target/py-venv";

/// Where the step's wheel is written, relative to the workspace root.
pub const WHEEL_DIR: &str = "target/py-wheel";

/// How to set up what the step needs (printed with its SKIP line).
pub const PY_SETUP: &str = "python3 -m venv target/py-venv && \
     target/py-venv/bin/pip install maturin pytest numpy (or run .ci/run)";

/// The Python the step uses, and whether the user chose it (`$VUMA_PYTHON`).
pub fn interpreter() -> Option<(PathBuf, bool)> {
    if let Some(p) = std::env::var_os("VUMA_PYTHON").filter(|p| !p.is_empty()) {
        return Some((PathBuf::from(p), true));
    }
    let venv = workspace_root().join(VENV).join("bin").join("python");
    venv.exists().then_some((venv, false))
}

/// Whether `python` can import maturin, pytest and numpy.
pub fn has_tools(python: &PathBuf) -> bool {
    Command::new(python)
        .args(["-c", "import maturin, pytest, numpy"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `c`, echoing it; an error unless it exits 0.
fn step(c: &mut Command) -> Result<()> {
    eprintln!("    $ {}", display_cmd(c));
    let (st, _) = run_status(c)?;
    if st.success() {
        Ok(())
    } else {
        Err(err!("`{}` failed ({})", display_cmd(c), fmt_status(st)))
    }
}

/// How the step ended: `Ok(None)` passed, `Ok(Some(reason))` skipped, `Err` failed.
pub fn run() -> (Result<Option<String>>, Duration) {
    let start = Instant::now();
    let r = run_inner();
    (r, start.elapsed())
}

fn run_inner() -> Result<Option<String>> {
    let Some((python, chosen)) = interpreter() else {
        eprintln!("SKIP pytest: no Python environment for vuma-py; set one up with: {PY_SETUP}");
        return Ok(Some("no Python environment".into()));
    };
    if !has_tools(&python) {
        let msg = format!(
            "{} cannot import maturin, pytest and numpy; set one up with: {PY_SETUP}",
            python.display()
        );
        if chosen {
            return Err(err!("VUMA_PYTHON={msg}"));
        }
        eprintln!("SKIP pytest: {msg}");
        return Ok(Some("maturin, pytest or numpy missing".into()));
    }
    let root = workspace_root();
    let wheels = root.join(WHEEL_DIR);
    let _ = std::fs::remove_dir_all(&wheels);
    step(
        Command::new(&python)
            .args(["-m", "maturin", "build", "--profile", "dev", "--out"])
            .arg(&wheels)
            .arg("--interpreter")
            .arg(&python)
            .current_dir(root.join("vuma-py")),
    )?;
    let wheel = std::fs::read_dir(&wheels)
        .map_err(|e| err!("reading {}: {e}", wheels.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| err!("maturin wrote no wheel to {}", wheels.display()))?;
    step(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--force-reinstall",
                "--no-deps",
            ])
            .arg(&wheel)
            .current_dir(&root),
    )?;
    let mut test = Command::new(&python);
    test.args(["-m", "pytest", "-q", "-rs", "vuma-py/tests"])
        .current_dir(&root);
    // The Vulkan tests run under the validation layer where it is installed, as the Rust
    // tests do.
    if std::env::var_os("VUMA_VK_VALIDATION").is_none() {
        test.env("VUMA_VK_VALIDATION", "1");
    }
    step(&mut test)?;
    Ok(None)
}
