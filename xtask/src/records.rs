//! Benchmark records in the record format of `docs/testing.md`: reading JSONL or JSON arrays, writing
//! `results.json`, printing the table. The format, the table and the plot live in
//! `vuma_core::bench::{report, svg}` (shared with `vuma bench`); this module adapts errors.

use crate::err;
use crate::util::Result;

pub use vuma_core::bench::report::{render_table, to_json_array, Entry as Record};

/// Parses records from a JSON array or from JSON lines (see
/// [`vuma_core::bench::report::parse`]); errors name the line or record.
pub fn parse(text: &str) -> Result<Vec<Record>> {
    vuma_core::bench::report::parse(text).map_err(|e| err!("{e}"))
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
        assert!(t.contains("54.10 | GB/s"), "{t}");
        assert!(t.contains("cuMemcpyAsync"), "{t}");
        assert!(t.contains("0.98x loss"), "{t}");
    }
}
