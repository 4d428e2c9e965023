//! Small helpers shared by the commands: the error type, running processes, paths, formatting.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What went wrong in an xtask command; its text is meant for a person at a terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error(format!("i/o error: {e}"))
    }
}

/// Result of an xtask operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Builds an [`Error`] from `format!` arguments.
#[macro_export]
macro_rules! err {
    ($($t:tt)*) => { $crate::util::Error(format!($($t)*)) };
}

/// Adds a context line to an i/o error.
pub trait Context<T> {
    /// Prefixes the error with `what`.
    fn context(self, what: impl fmt::Display) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error(format!("{what}: {e}")))
    }
}

/// The workspace root (the parent of this crate's manifest directory).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// The cargo executable: `$CARGO` when run through cargo, else `cargo`.
pub fn cargo() -> Command {
    let exe = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut c = Command::new(exe);
    c.current_dir(workspace_root());
    c
}

/// A command line as a person would type it (for logs and the summary).
pub fn display_cmd(c: &Command) -> String {
    let mut s = String::new();
    for (k, v) in c.get_envs() {
        if let Some(v) = v {
            s.push_str(&format!("{}={} ", k.to_string_lossy(), shell_word(v)));
        }
    }
    // `$CARGO` is a full toolchain path; show it as a person would type it.
    let prog = c.get_program();
    let is_cargo = std::env::var_os("CARGO").is_some_and(|x| x == prog);
    s.push_str(&if is_cargo {
        "cargo".into()
    } else {
        shell_word(prog)
    });
    for a in c.get_args() {
        s.push(' ');
        s.push_str(&shell_word(a));
    }
    s
}

fn shell_word(w: &OsStr) -> String {
    let w = w.to_string_lossy();
    if !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        w.into_owned()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

/// Runs `c` with inherited stdio; returns its status and wall time.
pub fn run_status(c: &mut Command) -> Result<(ExitStatus, Duration)> {
    let start = Instant::now();
    let status = c
        .stdin(Stdio::null())
        .status()
        .context(format!("cannot start `{}`", display_cmd(c)))?;
    Ok((status, start.elapsed()))
}

/// Runs `c`, capturing stdout (stderr goes to the terminal); fails when it exits non-zero.
pub fn run_stdout(c: &mut Command) -> Result<String> {
    let out = c
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context(format!("cannot start `{}`", display_cmd(c)))?;
    if !out.status.success() {
        return Err(err!("`{}` failed ({})", display_cmd(c), out.status));
    }
    String::from_utf8(out.stdout).context(format!("`{}` printed non-UTF-8", display_cmd(c)))
}

/// `exit 101`, or `killed by signal 9`.
pub fn fmt_status(st: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => st.to_string(),
    }
}

/// `12.3s`, `2m05s`.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        let m = (s / 60.0).floor();
        format!("{}m{:02}s", m as u64, (s - m * 60.0).round() as u64)
    }
}

/// `1.5 MiB`.
pub fn fmt_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Formats rows as an aligned text table with a header and a rule under it.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let n = header.len();
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                s.push_str(" | ");
            }
            s.push_str(c);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(w[i].saturating_sub(c.chars().count())));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    out.push_str(
        &w.iter()
            .map(|&x| "-".repeat(x))
            .collect::<Vec<_>>()
            .join("-|-"),
    );
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// A fresh, empty directory under the system temp dir (for tests).
#[cfg(test)]
pub fn temp_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let d = std::env::temp_dir().join(format!(
        "xtask-{tag}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(fmt_size(512), "512 B");
        assert_eq!(fmt_size(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(fmt_duration(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(fmt_duration(Duration::from_secs(125)), "2m05s");
    }

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["step", "status"],
            &[
                vec!["fmt".into(), "ok".into()],
                vec!["clippy-all".into(), "FAIL".into()],
            ],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "step       | status");
        assert_eq!(lines[1], "-----------|-------");
        assert_eq!(lines[3], "clippy-all | FAIL");
    }

    #[test]
    fn commands_are_quoted_for_display() {
        let mut c = Command::new("cargo");
        c.args(["doc", "--no-deps"])
            .env("RUSTDOCFLAGS", "-D warnings");
        assert_eq!(
            display_cmd(&c),
            "RUSTDOCFLAGS='-D warnings' cargo doc --no-deps"
        );
    }
}
