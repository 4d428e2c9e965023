//! Building test and bench executables and finding them in cargo's JSON messages.

use std::path::PathBuf;
use std::process::Stdio;

use serde_json::Value;

use crate::err;
use crate::util::{cargo, display_cmd, Context, Result};

/// What kind of executable a compiler artifact is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Unit tests of a library or binary target (`#[test]`s inside `src/`).
    Unit,
    /// An integration test (`tests/*.rs`).
    Test,
    /// A benchmark (`benches/*.rs`).
    Bench,
}

/// One executable cargo built for testing or benchmarking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// Package name, e.g. `vuma-core`.
    pub package: String,
    /// Target name, e.g. `host_conformance` (the crate name for unit tests).
    pub target: String,
    /// What it is.
    pub kind: Kind,
    /// The built executable.
    pub executable: PathBuf,
    /// The package's directory (cargo runs tests with this as working directory).
    pub package_dir: PathBuf,
}

impl Artifact {
    /// A short unique-ish name: `vuma-core-lib`, `vuma-core-host_conformance`.
    pub fn bundle_name(&self) -> String {
        match self.kind {
            Kind::Unit => format!("{}-unit-{}", self.package, self.target),
            Kind::Test | Kind::Bench => format!("{}-{}", self.package, self.target),
        }
    }
}

/// The package name out of a cargo package id, in either of cargo's formats:
/// `path+file:///w/vuma-core#0.1.0`, `path+file:///w/dir#name@0.1.0`,
/// `registry+https://…#serde@1.0.0`, or the old `vuma-core 0.1.0 (path+file:///…)`.
pub fn package_name(id: &str) -> Option<String> {
    if let Some((url, frag)) = id.split_once('#') {
        if let Some((name, _ver)) = frag.split_once('@') {
            return Some(name.to_string());
        }
        let last = url.trim_end_matches('/').rsplit('/').next()?;
        return (!last.is_empty()).then(|| last.to_string());
    }
    let first = id.split_whitespace().next()?;
    (!first.is_empty()).then(|| first.to_string())
}

/// Extracts the test and bench executables from cargo's `--message-format=json` output.
///
/// Keeps `compiler-artifact` messages whose profile is a test profile and that have an
/// executable; examples and plain binaries are left out. Lines that are not JSON are ignored
/// (cargo interleaves build-script output when asked to).
pub fn parse_artifacts(json_lines: &str) -> Vec<Artifact> {
    let mut out: Vec<Artifact> = Vec::new();
    for line in json_lines.lines() {
        let line = line.trim();
        if !line.starts_with('{') {
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if v["reason"] != "compiler-artifact" || v["profile"]["test"] != true {
            continue;
        }
        let Some(exe) = v["executable"].as_str() else {
            continue;
        };
        let kinds: Vec<&str> = v["target"]["kind"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let kind = if kinds.contains(&"bench") {
            Kind::Bench
        } else if kinds.contains(&"test") {
            Kind::Test
        } else if kinds.contains(&"example") {
            continue;
        } else {
            Kind::Unit
        };
        let target = v["target"]["name"]
            .as_str()
            .unwrap_or("unknown")
            .to_string();
        let package = v["package_id"]
            .as_str()
            .and_then(package_name)
            .unwrap_or_else(|| target.clone());
        let package_dir = v["manifest_path"]
            .as_str()
            .map(PathBuf::from)
            .and_then(|p| p.parent().map(PathBuf::from))
            .unwrap_or_default();
        let a = Artifact {
            package,
            target,
            kind,
            executable: PathBuf::from(exe),
            package_dir,
        };
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

/// Which packages and features a build covers.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Packages (`-p`); empty means the whole workspace.
    pub packages: Vec<String>,
    /// Features (`--features`); `None` means `--all-features`.
    pub features: Option<String>,
}

impl Selection {
    /// The cargo arguments that select packages and features.
    pub fn cargo_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if self.packages.is_empty() {
            a.push("--workspace".to_string());
        } else {
            for p in &self.packages {
                a.push("-p".into());
                a.push(p.clone());
            }
        }
        match &self.features {
            None => a.push("--all-features".into()),
            Some(f) => {
                a.push("--features".into());
                a.push(f.clone());
            }
        }
        a
    }
}

/// Builds with `cargo <subcommand> --no-run --message-format=json-render-diagnostics`
/// (diagnostics go to the terminal as usual) and returns the executables it produced.
pub fn build(subcommand: &[&str], sel: &Selection) -> Result<Vec<Artifact>> {
    let mut c = cargo();
    c.args(subcommand)
        .args(sel.cargo_args())
        .args(["--no-run", "--message-format=json-render-diagnostics"]);
    eprintln!("==> {}", display_cmd(&c));
    let out = c
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context(format!("cannot start `{}`", display_cmd(&c)))?;
    if !out.status.success() {
        return Err(err!(
            "`{}` failed ({}); see the diagnostics above (use -p to pick packages that build)",
            display_cmd(&c),
            out.status
        ));
    }
    Ok(parse_artifacts(&String::from_utf8_lossy(&out.stdout)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"reason":"compiler-artifact","package_id":"registry+https://github.com/rust-lang/crates.io-index#serde@1.0.229","manifest_path":"/r/serde/Cargo.toml","target":{"kind":["lib"],"crate_types":["lib"],"name":"serde","src_path":"/r/serde/src/lib.rs"},"profile":{"opt_level":"3","test":false},"executable":null,"fresh":true}
{"reason":"compiler-artifact","package_id":"path+file:///w/vuma-core#0.1.0","manifest_path":"/w/vuma-core/Cargo.toml","target":{"kind":["lib"],"crate_types":["lib"],"name":"vuma_core","src_path":"/w/vuma-core/src/lib.rs"},"profile":{"opt_level":"3","test":true},"executable":"/w/target/release/deps/vuma_core-1a2b","fresh":false}
{"reason":"compiler-artifact","package_id":"path+file:///w/vuma-core#0.1.0","manifest_path":"/w/vuma-core/Cargo.toml","target":{"kind":["test"],"crate_types":["bin"],"name":"host_conformance","src_path":"/w/vuma-core/tests/host_conformance.rs"},"profile":{"opt_level":"3","test":true},"executable":"/w/target/release/deps/host_conformance-3c4d","fresh":false}
not json: build script said hello
{"reason":"compiler-artifact","package_id":"path+file:///w/cuda#vuma-cuda@0.1.0","manifest_path":"/w/cuda/Cargo.toml","target":{"kind":["bench"],"crate_types":["bin"],"name":"cuda","src_path":"/w/cuda/benches/cuda.rs"},"profile":{"opt_level":"3","test":true},"executable":"/w/target/release/deps/cuda-5e6f","fresh":false}
{"reason":"compiler-artifact","package_id":"vuma 0.1.0 (path+file:///w/vuma)","manifest_path":"/w/vuma/Cargo.toml","target":{"kind":["example"],"crate_types":["bin"],"name":"demo","src_path":"/w/vuma/examples/demo.rs"},"profile":{"opt_level":"3","test":true},"executable":"/w/target/release/examples/demo-77","fresh":false}
{"reason":"compiler-artifact","package_id":"vuma 0.1.0 (path+file:///w/vuma)","manifest_path":"/w/vuma/Cargo.toml","target":{"kind":["bin"],"crate_types":["bin"],"name":"vuma","src_path":"/w/vuma/src/main.rs"},"profile":{"opt_level":"3","test":false},"executable":"/w/target/release/vuma","fresh":false}
{"reason":"build-finished","success":true}"#;

    #[test]
    fn finds_test_and_bench_executables_only() {
        let a = parse_artifacts(SAMPLE);
        assert_eq!(a.len(), 3, "{a:#?}");
        assert_eq!(a[0].package, "vuma-core");
        assert_eq!(a[0].kind, Kind::Unit);
        assert_eq!(a[0].bundle_name(), "vuma-core-unit-vuma_core");
        assert_eq!(a[0].package_dir, PathBuf::from("/w/vuma-core"));
        assert_eq!(a[1].kind, Kind::Test);
        assert_eq!(a[1].bundle_name(), "vuma-core-host_conformance");
        assert_eq!(
            a[1].executable,
            PathBuf::from("/w/target/release/deps/host_conformance-3c4d")
        );
        assert_eq!(a[2].package, "vuma-cuda");
        assert_eq!(a[2].kind, Kind::Bench);
    }

    #[test]
    fn duplicate_messages_are_merged_and_garbage_ignored() {
        let twice = format!("{SAMPLE}\n{SAMPLE}\n{{broken json\n");
        assert_eq!(parse_artifacts(&twice).len(), 3);
        assert!(parse_artifacts("").is_empty());
    }

    #[test]
    fn package_ids_in_every_format() {
        assert_eq!(
            package_name("path+file:///w/vuma-core#0.1.0").as_deref(),
            Some("vuma-core")
        );
        assert_eq!(
            package_name("path+file:///w/x#vuma-cuda@0.1.0").as_deref(),
            Some("vuma-cuda")
        );
        assert_eq!(
            package_name("vuma 0.1.0 (path+file:///w/vuma)").as_deref(),
            Some("vuma")
        );
        assert_eq!(package_name(""), None);
    }

    #[test]
    fn selection_defaults_to_whole_workspace_all_features() {
        assert_eq!(
            Selection::default().cargo_args(),
            ["--workspace", "--all-features"]
        );
        let s = Selection {
            packages: vec!["vuma-core".into()],
            features: Some("cuda".into()),
        };
        assert_eq!(s.cargo_args(), ["-p", "vuma-core", "--features", "cuda"]);
    }
}
