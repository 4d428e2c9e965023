//! The structure check of `cargo xtask ci`'s architecture step: no source file over
//! [`MAX_FILE_LINES`], no function over [`MAX_FN_LINES`], no import circle between the
//! modules of a crate — except the entries of the allow-lists below, each with the reason
//! it is there. The lists only shrink: an entry that no longer applies is an error too, so
//! a split is recorded when it lands.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::util::{workspace_root, Context, Result};

/// Most lines in one source file.
pub const MAX_FILE_LINES: usize = 1000;
/// Most lines in one function (signature to closing brace).
pub const MAX_FN_LINES: usize = 150;

/// Crates checked (their `src/`).
const CRATES: [&str; 8] = [
    "vuma-core",
    "vuma-cuda",
    "vuma-vulkan",
    "vuma-hyperloop",
    "vuma-sched",
    "vuma",
    "vuma-py",
    "xtask",
];

/// Files allowed over the limit, with why.
const LONG_FILES: &[(&str, &str)] = &[
    ("vuma-core/src/memory.rs", "the manager's state, acquire and release; migrations, host copies and loss are split out already"),
];

/// Functions allowed over the limit (`file::name`), with why.
const LONG_FNS: &[(&str, &str)] = &[
    (
        "vuma-hyperloop/src/residency.rs::run",
        "chunk checks, staging and decoder launches of one upload",
    ),
    (
        "vuma-hyperloop/src/encode/host.rs::host_enc_write",
        "the host mirror of the encoder's write pass, kept line by line with the CUDA C",
    ),
    (
        "vuma-core/src/bench/svg.rs::render",
        "benchmark plotting, to move out of vuma-core into a bench crate",
    ),
];

/// Module circles allowed (sorted module names joined by ` <-> `), with why.
const CIRCLES: &[(&str, &str)] = &[
    ("vuma-core: device <-> host <-> kernel <-> signature", "vocabulary types naming each other (the host device implements Device; kernels carry host functions that take HostLaunch; signatures check device arguments)"),
    ("vuma-hyperloop: bitplane <-> codecs <-> floatcodec <-> page", "the codecs share the Corrupt error helper and page estimates call the codecs' samplers"),
];

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir).context(format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.is_dir() {
            rs_files(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    Ok(())
}

/// Functions of `text` longer than `max` lines: `(name, lines)`. A function starts at a
/// line whose first token sequence is `[pub[(…)]] [const] [async] [unsafe] fn name` and ends
/// at the first later line that is `}` at the same indentation.
pub fn long_functions(text: &str, max: usize) -> Vec<(String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        let indent = l.len() - t.len();
        let mut rest = t;
        for kw in [
            "pub(crate) ",
            "pub(super) ",
            "pub ",
            "const ",
            "async ",
            "unsafe ",
        ] {
            rest = rest.strip_prefix(kw).unwrap_or(rest);
        }
        let Some(sig) = rest.strip_prefix("fn ") else {
            continue;
        };
        let name: String = sig
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() || t.ends_with(';') {
            continue;
        }
        let close = format!("{}}}", " ".repeat(indent));
        if let Some(end) = lines[i + 1..].iter().position(|x| *x == close) {
            let n = end + 2;
            if n > max {
                out.push((name, n));
            }
        }
    }
    out
}

/// The crate-local modules a file refers to (`crate::m`, and `super::m` from a submodule),
/// by their first path segment.
pub fn module_refs(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for l in text.lines() {
        let t = l.trim_start();
        if t.starts_with("//") {
            continue;
        }
        let mut rest = l;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + 7..];
            let m: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !m.is_empty() && m.chars().next().is_some_and(|c| c.is_lowercase()) {
                out.insert(m);
            }
            rest = after;
        }
        if let Some(i) = t.find("use crate::{") {
            let inner = &t[i + 12..];
            for part in inner.split([',', '}']) {
                let m: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !m.is_empty() && m.chars().next().is_some_and(|c| c.is_lowercase()) {
                    out.insert(m);
                }
            }
        }
    }
    out
}

/// Circles of the module graph `deps` (strongly connected components of two or more
/// modules), each as sorted names.
pub fn circles(deps: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Reachability by repeated search: the graphs are small (tens of modules).
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_string()];
        while let Some(m) = stack.pop() {
            for d in deps.get(&m).into_iter().flatten() {
                if seen.insert(d.clone()) {
                    stack.push(d.clone());
                }
            }
        }
        seen
    };
    let all: BTreeMap<&String, BTreeSet<String>> = deps.keys().map(|k| (k, reach(k))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for (m, r) in &all {
        if done.contains(*m) || !r.contains(*m) {
            continue;
        }
        let scc: Vec<String> = r
            .iter()
            .filter(|o| all.get(o).is_some_and(|ro| ro.contains(*m)))
            .cloned()
            .collect();
        if scc.len() >= 2 {
            done.extend(scc.iter().cloned());
            out.push(scc);
        }
    }
    out
}

/// Runs the check; returns the report lines, or the violations.
pub fn check() -> Result<std::result::Result<Vec<String>, Vec<String>>> {
    let root = workspace_root();
    let mut report = Vec::new();
    let mut bad = Vec::new();
    let (mut used_files, mut used_fns, mut used_circles) =
        (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for krate in CRATES {
        let src = root.join(krate).join("src");
        let mut files = Vec::new();
        rs_files(&src, &mut files)?;
        files.sort();
        let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for f in &files {
            let text = std::fs::read_to_string(f).context(format!("reading {}", f.display()))?;
            let rel = f
                .strip_prefix(&root)
                .unwrap_or(f)
                .to_string_lossy()
                .replace('\\', "/");
            let n = text.lines().count();
            if n > MAX_FILE_LINES {
                if LONG_FILES.iter().any(|(p, _)| *p == rel) {
                    used_files.insert(rel.clone());
                    report.push(format!("{rel}: {n} lines (allowed, listed)"));
                } else {
                    bad.push(format!("{rel}: {n} lines, over {MAX_FILE_LINES}"));
                }
            }
            for (name, lines) in long_functions(&text, MAX_FN_LINES) {
                let key = format!("{rel}::{name}");
                if LONG_FNS.iter().any(|(p, _)| *p == key) {
                    used_fns.insert(key.clone());
                    report.push(format!("{key}: {lines} lines (allowed, listed)"));
                } else {
                    bad.push(format!("{key}: {lines} lines, over {MAX_FN_LINES}"));
                }
            }
            // Module name: the first path segment under src/ (lib.rs/main.rs: the root).
            let under = f.strip_prefix(&src).unwrap_or(f);
            let first = under
                .components()
                .next()
                .map(|c| {
                    c.as_os_str()
                        .to_string_lossy()
                        .trim_end_matches(".rs")
                        .to_string()
                })
                .unwrap_or_default();
            if first == "lib" || first == "main" {
                continue;
            }
            let refs = module_refs(&text);
            deps.entry(first.clone())
                .or_default()
                .extend(refs.into_iter().filter(|r| *r != first));
        }
        for c in circles(&deps) {
            let key = format!("{krate}: {}", c.join(" <-> "));
            if CIRCLES.iter().any(|(p, _)| *p == key) {
                used_circles.insert(key.clone());
                report.push(format!("{key} (allowed, listed)"));
            } else {
                bad.push(format!("import circle in {key}"));
            }
        }
    }
    for (p, _) in LONG_FILES {
        if !used_files.contains(*p) {
            bad.push(format!(
                "{p}: listed as long but no longer is: remove it from LONG_FILES"
            ));
        }
    }
    for (p, _) in LONG_FNS {
        if !used_fns.contains(*p) {
            bad.push(format!(
                "{p}: listed as long but no longer is: remove it from LONG_FNS"
            ));
        }
    }
    for (p, _) in CIRCLES {
        if !used_circles.contains(*p) {
            bad.push(format!(
                "{p}: listed circle is gone: remove it from CIRCLES"
            ));
        }
    }
    report.push(format!(
        "structure: files ≤ {MAX_FILE_LINES} lines, functions ≤ {MAX_FN_LINES}, no import circles ({} files, {} functions, {} circles allowed)",
        LONG_FILES.len(),
        LONG_FNS.len(),
        CIRCLES.len()
    ));
    Ok(if bad.is_empty() { Ok(report) } else { Err(bad) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workspace_keeps_its_structure() {
        match check().unwrap() {
            Ok(report) => eprintln!("{}", report.join("\n")),
            Err(bad) => panic!("structure:\n{}", bad.join("\n")),
        }
    }

    #[test]
    fn finds_long_functions_and_circles() {
        let body = "    x();\n".repeat(5);
        let text = format!("pub fn short() {{\n}}\nfn long() {{\n{body}}}\n    pub(crate) fn m(&self) {{\n{body}    }}\n");
        let f = long_functions(&text, 4);
        assert_eq!(f, vec![("long".to_string(), 7), ("m".to_string(), 7)]);
        let refs = module_refs("use crate::{a, b::C};\nlet x = crate::c::f();\n// crate::d\n");
        assert_eq!(refs.into_iter().collect::<Vec<_>>(), vec!["a", "b", "c"]);
        let mut deps = BTreeMap::new();
        deps.insert("a".to_string(), ["b".to_string()].into());
        deps.insert("b".to_string(), ["c".to_string()].into());
        deps.insert("c".to_string(), ["a".to_string()].into());
        deps.insert("d".to_string(), ["a".to_string()].into());
        assert_eq!(circles(&deps), vec![vec!["a", "b", "c"]]);
    }
}
