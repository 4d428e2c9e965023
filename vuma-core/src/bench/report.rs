//! Reading benchmark records back: [`Entry`] (a record whose figures may be `null`), a
//! parser for JSON arrays and JSON lines, `results.json` output and the results table.
//!
//! Shared by `vuma bench` and `cargo xtask bench`; std only (a small JSON reader for the one
//! flat record format), so `vuma-core` stays free of dependencies.
//!
//! ```
//! use vuma_core::bench::report;
//!
//! let text = r#"{"bench":"host/write/4MiB","device":"cpu","value":9.5,"unit":"GB/s","baseline":"memcpy","baseline_value":10.0,"higher_is_better":true}"#;
//! let recs = report::parse(text)?;
//! assert_eq!(recs[0].ratio, Some(0.95));
//! assert!(report::render_table(&recs).contains("memcpy"));
//! # Ok::<(), report::ParseError>(())
//! ```

use std::fmt;

use super::{json_num, json_str, Record};

/// A benchmark record as read back from JSON (see [`Record`] for the fields); figures a
/// benchmark wrote as `null` (not finite) are `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Benchmark id, e.g. `cuda/h2d_pinned/64MiB`.
    pub bench: String,
    /// Device name.
    pub device: String,
    /// VUMA's figure.
    pub value: Option<f64>,
    /// Unit of both figures.
    pub unit: String,
    /// What the baseline is.
    pub baseline: String,
    /// The baseline's figure.
    pub baseline_value: Option<f64>,
    /// Whether a larger value is better.
    pub higher_is_better: bool,
    /// How many times better VUMA did than the baseline (above 1 is a win).
    pub ratio: Option<f64>,
}

impl From<&Record> for Entry {
    fn from(r: &Record) -> Entry {
        let fin = |v: f64| v.is_finite().then_some(v);
        Entry {
            bench: r.bench.clone(),
            device: r.device.clone(),
            value: fin(r.value),
            unit: r.unit.clone(),
            baseline: r.baseline.clone(),
            baseline_value: fin(r.baseline_value),
            higher_is_better: r.higher_is_better,
            ratio: fin(r.ratio()),
        }
    }
}

impl Entry {
    /// The group of a record: its bench id up to the first `/` (`cuda`, `hyperloop`, …).
    pub fn group(&self) -> &str {
        self.bench.split('/').next().unwrap_or(&self.bench)
    }

    /// The ratio as the record format defines it (`docs/testing.md`), from the two figures.
    pub fn computed_ratio(&self) -> Option<f64> {
        let (v, b) = (self.value?, self.baseline_value?);
        let r = if self.higher_is_better { v / b } else { b / v };
        r.is_finite().then_some(r)
    }

    /// The transfer size named by the last segment of the bench id (`…/64MiB`,
    /// `…/4 KiB`, `…/1 GiB`), in bytes.
    pub fn size_bytes(&self) -> Option<u64> {
        parse_size(self.bench.rsplit('/').next()?)
    }

    /// The bench id without its size segment (`cuda/h2d_pinned/64MiB` → `cuda/h2d_pinned`).
    pub fn series(&self) -> &str {
        match (self.size_bytes(), self.bench.rfind('/')) {
            (Some(_), Some(i)) => &self.bench[..i],
            _ => &self.bench,
        }
    }

    /// The record as one JSON object (the record format of `docs/testing.md`).
    pub fn to_json(&self) -> String {
        let n = |v: Option<f64>| v.map_or_else(|| "null".to_string(), json_num);
        format!(
            "{{\"bench\":{},\"device\":{},\"value\":{},\"unit\":{},\"baseline\":{},\"baseline_value\":{},\"higher_is_better\":{},\"ratio\":{}}}",
            json_str(&self.bench),
            json_str(&self.device),
            n(self.value),
            json_str(&self.unit),
            json_str(&self.baseline),
            n(self.baseline_value),
            self.higher_is_better,
            n(self.ratio)
        )
    }

    fn from_json(v: &Json) -> Result<Entry, ParseError> {
        let Json::Obj(fields) = v else {
            return Err(ParseError(format!(
                "a record must be a JSON object, got {}",
                v.kind()
            )));
        };
        let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v);
        let s = |k: &str| match get(k) {
            Some(Json::Str(s)) => Ok(s.clone()),
            _ => Err(ParseError(format!("record lacks string field `{k}`"))),
        };
        let n = |k: &str| match get(k) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Num(x)) => Ok(Some(*x)),
            Some(_) => Err(ParseError(format!("record field `{k}` is not a number"))),
        };
        let mut r = Entry {
            bench: s("bench")?,
            device: s("device")?,
            value: n("value")?,
            unit: s("unit")?,
            baseline: s("baseline")?,
            baseline_value: n("baseline_value")?,
            higher_is_better: match get("higher_is_better") {
                Some(Json::Bool(b)) => *b,
                _ => return Err(ParseError("record lacks boolean `higher_is_better`".into())),
            },
            ratio: n("ratio")?,
        };
        if r.ratio.is_none() {
            r.ratio = r.computed_ratio();
        }
        Ok(r)
    }
}

/// Parses a size such as `64MiB`, `4 KiB`, `1 GiB`, `512B`, `2MB`.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let i = s.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (num, unit) = s.split_at(i);
    let num: f64 = num.parse().ok()?;
    let mul = match unit.trim() {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1048576.0,
        "GiB" => 1073741824.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        _ => return None,
    };
    let b = num * mul;
    (b.is_finite() && b >= 1.0).then_some(b as u64)
}

/// Why records could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

/// Parses records from a JSON array or from JSON lines.
///
/// In JSON-lines input, lines that do not start with `{` are skipped (so a bench log with
/// records in it can be read too); a line that starts with `{` but is not a valid record is
/// an error naming its line number.
pub fn parse(text: &str) -> Result<Vec<Entry>, ParseError> {
    let t = text.trim_start();
    if t.starts_with('[') {
        let v =
            Json::parse(t).map_err(|e| ParseError(format!("not a JSON array of records: {e}")))?;
        let Json::Arr(items) = v else {
            return Err(ParseError("expected a JSON array".into()));
        };
        return items
            .iter()
            .enumerate()
            .map(|(i, r)| {
                Entry::from_json(r).map_err(|e| ParseError(format!("record {}: {e}", i + 1)))
            })
            .collect();
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if !line.starts_with('{') {
            continue;
        }
        let v = Json::parse(line)
            .map_err(|e| ParseError(format!("line {}: invalid JSON: {e}", i + 1)))?;
        out.push(Entry::from_json(&v).map_err(|e| ParseError(format!("line {}: {e}", i + 1)))?);
    }
    Ok(out)
}

/// The records as a JSON array, one record per line (`results.json`).
pub fn to_json_array(records: &[Entry]) -> String {
    if records.is_empty() {
        return "[]\n".into();
    }
    let body: Vec<String> = records
        .iter()
        .map(|r| format!("  {}", r.to_json()))
        .collect();
    format!("[\n{}\n]\n", body.join(",\n"))
}

/// A number with about 4 significant digits.
pub fn fmt_num(v: Option<f64>) -> String {
    match v {
        None => "n/a".into(),
        Some(0.0) => "0".into(),
        Some(v) if v.abs() >= 1000.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 100.0 => format!("{v:.1}"),
        Some(v) if v.abs() >= 1.0 => format!("{v:.2}"),
        Some(v) => format!("{v:.4}"),
    }
}

/// A plain-text table: header, a rule, rows; columns in `right` are right-aligned.
pub fn text_table(header: &[&str], rows: &[Vec<String>], right: &[usize]) -> String {
    let n = header.len();
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate().take(n) {
            if i > 0 {
                s.push_str(" | ");
            }
            let pad = " ".repeat(w[i].saturating_sub(c.chars().count()));
            if right.contains(&i) {
                s.push_str(&pad);
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&pad);
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header);
    out.push_str(
        &w.iter()
            .map(|&x| "-".repeat(x))
            .collect::<Vec<_>>()
            .join("-|-"),
    );
    out.push('\n');
    for r in rows {
        out.push_str(&line(&r.iter().map(String::as_str).collect::<Vec<_>>()));
    }
    out
}

/// The results table: bench | device | value | unit | baseline | baseline value | ratio.
pub fn render_table(records: &[Entry]) -> String {
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            let ratio = match r.ratio {
                Some(x) => format!("{x:.2}x {}", if x >= 1.0 { "win" } else { "loss" }),
                None => "n/a".into(),
            };
            vec![
                r.bench.clone(),
                r.device.clone(),
                fmt_num(r.value),
                r.unit.clone(),
                r.baseline.clone(),
                fmt_num(r.baseline_value),
                ratio,
            ]
        })
        .collect();
    text_table(
        &[
            "bench",
            "device",
            "value",
            "unit",
            "baseline",
            "baseline value",
            "ratio",
        ],
        &rows,
        &[2, 5, 6],
    )
}

/// A JSON value (only what the record format needs, but any valid JSON is read).
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

const MAX_DEPTH: usize = 64;

impl Json {
    fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Num(_) => "a number",
            Json::Str(_) => "a string",
            Json::Arr(_) => "an array",
            Json::Obj(_) => "an object",
        }
    }

    fn parse(text: &str) -> Result<Json, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value(0)?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing characters at byte {}", p.i));
        }
        Ok(v)
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        if self.i >= self.s.len() {
            Err(format!("{what} at end of input"))
        } else {
            Err(format!("{what} at byte {}", self.i))
        }
    }

    fn eat(&mut self, lit: &str) -> Result<(), String> {
        if self.s[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            Ok(())
        } else {
            self.err(&format!("expected `{lit}`"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, String> {
        if depth > MAX_DEPTH {
            return self.err("nesting too deep");
        }
        self.ws();
        match self.s.get(self.i) {
            None => self.err("expected a value"),
            Some(b'n') => self.eat("null").map(|_| Json::Null),
            Some(b't') => self.eat("true").map(|_| Json::Bool(true)),
            Some(b'f') => self.eat("false").map(|_| Json::Bool(false)),
            Some(b'"') => self.string().map(Json::Str),
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(items));
                        }
                        _ => return self.err("expected `,` or `]`"),
                    }
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut fields = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(fields));
                }
                loop {
                    self.ws();
                    if self.s.get(self.i) != Some(&b'"') {
                        return self.err("expected a field name");
                    }
                    let k = self.string()?;
                    self.ws();
                    self.eat(":")?;
                    let v = self.value(depth + 1)?;
                    fields.push((k, v));
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(fields));
                        }
                        _ => return self.err("expected `,` or `}`"),
                    }
                }
            }
            Some(c) if *c == b'-' || c.is_ascii_digit() => self.number(),
            Some(_) => self.err("unexpected character"),
        }
    }

    fn number(&mut self) -> Result<Json, String> {
        let start = self.i;
        while self.i < self.s.len()
            && matches!(
                self.s[self.i],
                b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
            )
        {
            self.i += 1;
        }
        let t = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
        match t.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Json::Num(v)),
            _ => {
                self.i = start;
                self.err("invalid number")
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = self
            .s
            .get(self.i..self.i + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok());
        match h {
            Some(v) => {
                self.i += 4;
                Ok(v)
            }
            None => self.err("invalid \\u escape"),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.i += 1; // opening quote
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.i) else {
                return self.err("unterminated string");
            };
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        return self.err("unterminated string");
                    };
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi)
                                && self.s[self.i..].starts_with(b"\\u")
                            {
                                self.i += 2;
                                let lo = self.hex4()?;
                                if (0xDC00..0xE000).contains(&lo) {
                                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                                } else {
                                    0xFFFD
                                }
                            } else {
                                hi
                            };
                            char::from_u32(cp).unwrap_or('\u{FFFD}')
                        }
                        _ => return self.err("invalid escape"),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                c if c < 0x20 => return self.err("control character in string"),
                c => out.push(c),
            }
        }
        String::from_utf8(out).or_else(|_| self.err("invalid UTF-8 in string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"bench":"cuda/h2d_pinned/64MiB","device":"NVIDIA H100 80GB HBM3","value":54.1,"unit":"GB/s","baseline":"cuMemcpyAsync","baseline_value":55.2,"higher_is_better":true,"ratio":0.98}"#;

    #[test]
    fn reads_jsonl_and_json_arrays_alike() {
        let text = format!(
            "{LINE}\nSKIP: something printed\n\n{}\n",
            LINE.replace("64MiB", "1 GiB")
        );
        let a = parse(&text).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].group(), "cuda");
        assert_eq!(a[1].bench, "cuda/h2d_pinned/1 GiB");
        assert_eq!(a[0].size_bytes(), Some(64 << 20));
        assert_eq!(a[1].size_bytes(), Some(1 << 30));
        assert_eq!(a[1].series(), "cuda/h2d_pinned");
        let b = parse(&to_json_array(&a)).unwrap();
        assert_eq!(a, b);
        assert!(parse(&to_json_array(&[])).unwrap().is_empty());
    }

    #[test]
    fn record_round_trips_through_entry() {
        let r = Record {
            bench: "host/write/4MiB".into(),
            device: "cpu \"x\"\n".into(),
            value: 2.0,
            unit: "GB/s".into(),
            baseline: "memcpy".into(),
            baseline_value: f64::NAN,
            higher_is_better: true,
        };
        let e = Entry::from(&r);
        assert_eq!(e.baseline_value, None);
        assert_eq!(e.ratio, None);
        let back = parse(&r.to_json()).unwrap();
        assert_eq!(back, vec![e]);
    }

    #[test]
    fn ratio_is_computed_when_missing_in_both_directions() {
        let t = r#"{"bench":"alloc/pool","device":"d","value":2.0,"unit":"us","baseline":"cuMemAlloc","baseline_value":80.0,"higher_is_better":false}"#;
        let r = &parse(t).unwrap()[0];
        assert_eq!(r.ratio, Some(40.0));
        let t = t.replace("false", "true");
        assert_eq!(parse(&t).unwrap()[0].ratio, Some(2.0 / 80.0));
        let t = r#"{"bench":"x","device":"d","value":null,"unit":"us","baseline":"b","baseline_value":1,"higher_is_better":true,"ratio":null}"#;
        assert_eq!(parse(t).unwrap()[0].ratio, None);
    }

    #[test]
    fn bad_records_are_errors_with_line_numbers() {
        let e = parse(&format!("{LINE}\n{{\"bench\": 3}}\n")).unwrap_err();
        assert!(e.0.contains("line 2"), "{e}");
        assert!(parse("{ not json").unwrap_err().0.contains("line 1"));
        assert!(parse("[1, 2]").unwrap_err().0.contains("record 1"));
        assert!(parse("[").is_err());
        assert!(parse("[{}] x").is_err());
        assert!(
            parse(&"[".repeat(10_000)).is_err(),
            "deep nesting is an error"
        );
        assert!(parse("{\"bench\":\"\\ud800\"}").is_err());
        assert!(parse("{\"a\":\"\\u12\"}").is_err());
        assert!(parse("{\"a\":-}").is_err());
        assert!(parse("{\"a\":1e999}").is_err());
    }

    #[test]
    fn json_strings_and_escapes() {
        let v = Json::parse(r#"{"a":"x\"\\\/\n\u00e9\ud83d\ude00","b":[true,false,null,-1.5e2]}"#)
            .unwrap();
        let Json::Obj(f) = v else { panic!() };
        assert_eq!(f[0].1, Json::Str("x\"\\/\né😀".into()));
        assert_eq!(
            f[1].1,
            Json::Arr(vec![
                Json::Bool(true),
                Json::Bool(false),
                Json::Null,
                Json::Num(-150.0)
            ])
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4 KiB"), Some(4096));
        assert_eq!(parse_size("256MiB"), Some(256 << 20));
        assert_eq!(parse_size("random"), None);
        assert_eq!(parse_size("MiB"), None);
        assert_eq!(parse_size("12"), None);
    }

    #[test]
    fn table_shows_value_baseline_and_ratio() {
        let t = render_table(&parse(LINE).unwrap());
        assert!(t.starts_with("bench"), "{t}");
        assert!(t.contains("baseline value"), "{t}");
        assert!(t.contains("54.10 | GB/s | cuMemcpyAsync"), "{t}");
        assert!(t.contains("55.20"), "{t}");
        assert!(t.contains("0.98x loss"), "{t}");
    }
}
