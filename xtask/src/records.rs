//! Benchmark records in the format of `DESIGN.md`: reading JSONL or JSON arrays, writing
//! `results.json`, printing the table.

use serde_json::{json, Value};

use crate::err;
use crate::util::{table, Result};

/// One benchmark result against its baseline (mirrors `vuma_core::bench::Record`; this crate
/// does not depend on `vuma-core`, so it keeps its own copy of the format).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Benchmark id, e.g. `cuda/h2d_pinned/64MiB`.
    pub bench: String,
    /// Device name.
    pub device: String,
    /// VUMA's figure (`None` when the bench wrote `null`: not finite).
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

impl Record {
    /// The group of a record: its bench id up to the first `/` (`cuda`, `hyperloop`, …).
    pub fn group(&self) -> &str {
        self.bench.split('/').next().unwrap_or(&self.bench)
    }

    /// The ratio as `DESIGN.md` defines it, from the two figures.
    pub fn computed_ratio(&self) -> Option<f64> {
        let (v, b) = (self.value?, self.baseline_value?);
        let r = if self.higher_is_better { v / b } else { b / v };
        r.is_finite().then_some(r)
    }

    /// Reads one record from a JSON object; `ratio` is computed when absent.
    pub fn from_json(v: &Value) -> Result<Record> {
        let s = |k: &str| -> Result<String> {
            v[k].as_str()
                .map(String::from)
                .ok_or_else(|| err!("record lacks string field `{k}`: {v}"))
        };
        let n = |k: &str| -> Result<Option<f64>> {
            match &v[k] {
                Value::Null => Ok(None),
                x => x
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| err!("record field `{k}` is not a number: {v}")),
            }
        };
        if !v.is_object() {
            return Err(err!("a record must be a JSON object, got {v}"));
        }
        let mut r = Record {
            bench: s("bench")?,
            device: s("device")?,
            value: n("value")?,
            unit: s("unit")?,
            baseline: s("baseline")?,
            baseline_value: n("baseline_value")?,
            higher_is_better: v["higher_is_better"]
                .as_bool()
                .ok_or_else(|| err!("record lacks boolean `higher_is_better`: {v}"))?,
            ratio: n("ratio")?,
        };
        if r.ratio.is_none() {
            r.ratio = r.computed_ratio();
        }
        Ok(r)
    }

    /// The record as a JSON object (the `results.json` format).
    pub fn to_json(&self) -> Value {
        json!({
            "bench": self.bench,
            "device": self.device,
            "value": self.value,
            "unit": self.unit,
            "baseline": self.baseline,
            "baseline_value": self.baseline_value,
            "higher_is_better": self.higher_is_better,
            "ratio": self.ratio,
        })
    }
}

/// Parses records from a JSON array or from JSON lines.
///
/// In JSON-lines input, lines that do not start with `{` are skipped (so a bench log with
/// records in it can be read too); a line that starts with `{` but is not a valid record is
/// an error naming its line number.
pub fn parse(text: &str) -> Result<Vec<Record>> {
    let t = text.trim_start();
    if t.starts_with('[') {
        let v: Value =
            serde_json::from_str(t).map_err(|e| err!("not a JSON array of records: {e}"))?;
        return v
            .as_array()
            .ok_or_else(|| err!("expected a JSON array"))?
            .iter()
            .enumerate()
            .map(|(i, r)| Record::from_json(r).map_err(|e| err!("record {}: {e}", i + 1)))
            .collect();
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if !line.starts_with('{') {
            continue;
        }
        let v: Value =
            serde_json::from_str(line).map_err(|e| err!("line {}: invalid JSON: {e}", i + 1))?;
        out.push(Record::from_json(&v).map_err(|e| err!("line {}: {e}", i + 1))?);
    }
    Ok(out)
}

/// The records as a pretty JSON array.
pub fn to_json_array(records: &[Record]) -> String {
    let arr: Vec<Value> = records.iter().map(Record::to_json).collect();
    serde_json::to_string_pretty(&Value::Array(arr)).unwrap_or_else(|_| "[]".into()) + "\n"
}

/// A number with 4 significant-ish digits.
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

/// The table `cargo xtask bench` prints: bench | device | value | baseline | ratio.
pub fn render_table(records: &[Record]) -> String {
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
                format!("{} {}", fmt_num(r.value), r.unit),
                format!("{} {} ({})", fmt_num(r.baseline_value), r.unit, r.baseline),
                ratio,
            ]
        })
        .collect();
    table(&["bench", "device", "value", "baseline", "ratio"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"bench":"cuda/h2d_pinned/64MiB","device":"NVIDIA H100 80GB HBM3","value":54.1,"unit":"GB/s","baseline":"cuMemcpyAsync","baseline_value":55.2,"higher_is_better":true,"ratio":0.98}"#;

    #[test]
    fn reads_jsonl_and_json_arrays_alike() {
        let text = format!(
            "{LINE}\nSKIP: something printed\n\n{}\n",
            LINE.replace("64MiB", "1GiB")
        );
        let a = parse(&text).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].group(), "cuda");
        assert_eq!(a[1].bench, "cuda/h2d_pinned/1GiB");
        let b = parse(&to_json_array(&a)).unwrap();
        assert_eq!(a, b);
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
    }

    #[test]
    fn table_shows_value_baseline_and_ratio() {
        let t = render_table(&parse(LINE).unwrap());
        assert!(t.starts_with("bench"), "{t}");
        assert!(t.contains("54.10 GB/s"), "{t}");
        assert!(t.contains("55.20 GB/s (cuMemcpyAsync)"), "{t}");
        assert!(t.contains("0.98x loss"), "{t}");
    }
}
