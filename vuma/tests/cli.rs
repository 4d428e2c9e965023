//! The `vuma` command as a user runs it: logging with `VUMA_LOG`, and `--trace` paths.
#![cfg(feature = "cli")]

use std::process::{Command, Output};

fn vuma(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vuma"));
    c.args(args).env_remove("VUMA_LOG");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("the vuma binary starts")
}

const SMALL_DEMO: &[&str] = &["demo", "--scale", "0.01", "--host-only"];

#[test]
fn vuma_log_debug_prints_spans_without_colour_codes_into_a_pipe() {
    let out = vuma(SMALL_DEMO, &[("VUMA_LOG", "debug")]);
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    for span in ["process_workload", "acquire", "launch"] {
        assert!(
            err.lines().any(|l| l.contains(span) && l.contains("close")),
            "no `{span}` span in:\n{err}"
        );
    }
    assert!(!err.contains('\x1b'), "colour codes in a pipe:\n{err}");
    // Without VUMA_LOG nothing is logged.
    let quiet = vuma(SMALL_DEMO, &[]);
    assert!(quiet.status.success());
    assert!(
        !String::from_utf8_lossy(&quiet.stderr).contains("DEBUG"),
        "{quiet:?}"
    );
}

#[test]
fn a_bad_trace_path_fails_before_the_work_starts() {
    let out = vuma(
        &[
            "--trace",
            "/nonexistent-vuma-dir/trace.json",
            "demo",
            "--host-only",
        ],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot create the trace file"), "{err}");
    // The demo did not run: it prints its device list first.
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[test]
fn a_good_trace_path_gets_a_chrome_trace() {
    let dir = std::env::temp_dir().join(format!("vuma-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.json");
    let mut args = vec!["--trace", path.to_str().unwrap()];
    args.extend_from_slice(SMALL_DEMO);
    let out = vuma(&args, &[]);
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let doc: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let events = doc["traceEvents"].as_array().expect("a traceEvents array");
    assert!(
        events.iter().any(|e| e["name"] == "process_workload"),
        "{text}"
    );
}

/// `bench --from FILE --only PREFIX` keeps the records of one benchmark; a prefix that
/// matches nothing is an error that says so, before anything is written.
#[test]
fn bench_from_only_keeps_the_matching_records() {
    let dir = std::env::temp_dir().join(format!("vuma-cli-only-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let recs = dir.join("recs.jsonl");
    let line = |bench: &str| {
        format!(
            "{{\"bench\":\"{bench}\",\"device\":\"d\",\"value\":2.0,\"unit\":\"GB/s\",\"baseline\":\"b\",\"baseline_value\":1.0,\"higher_is_better\":true,\"ratio\":2.0}}\n"
        )
    };
    std::fs::write(&recs, line("a/x/1") + &line("a/y/1") + &line("b/x/1")).unwrap();
    let out_dir = dir.join("out");
    let (r, o) = (recs.to_str().unwrap(), out_dir.to_str().unwrap());
    let out = vuma(
        &["bench", "--from", r, "--only", "a/", "--json", "--out", o],
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let benches: Vec<&str> = doc
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["bench"].as_str().unwrap())
        .collect();
    assert_eq!(benches, ["a/x/1", "a/y/1"]);
    let none = vuma(&["bench", "--from", r, "--only", "zzz", "--out", o], &[]);
    assert!(!none.status.success());
    let err = String::from_utf8_lossy(&none.stderr);
    assert!(err.contains("none of the 3 records"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
