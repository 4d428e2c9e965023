//! The benchmark plot: a hand-written SVG bar chart of ratios on a log scale.
//!
//! One horizontal bar per record, starting at the 1.0 line (VUMA = baseline) and reaching
//! right for a win, left for a loss; bars are grouped and coloured by the bench id's prefix
//! (`cuda/…`, `vulkan/…`, `hyperloop/…`).

use std::fmt::Write as _;

use crate::records::{fmt_num, Record};

const PALETTE: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];
const ROW: f64 = 22.0;
const WIDTH: f64 = 1100.0;

/// Escapes text for SVG content and attribute values.
pub fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// The decades `[lo, hi]` (powers of ten) the axis spans: at least 0.1..10, at most 1e-4..1e4.
pub fn axis_decades(records: &[Record]) -> (i32, i32) {
    let rs = records
        .iter()
        .filter_map(|r| r.ratio)
        .filter(|r| *r > 0.0 && r.is_finite());
    let (mut lo, mut hi) = (0.1f64, 10.0f64);
    for r in rs {
        lo = lo.min(r);
        hi = hi.max(r);
    }
    let lo = (lo.log10().floor() as i32).max(-4);
    let hi = (hi.log10().ceil() as i32).min(4);
    (lo, hi.max(lo + 1))
}

/// Renders the chart.
pub fn render(records: &[Record]) -> String {
    // Group by prefix, in the order groups first appear; keep order within a group.
    let mut groups: Vec<&str> = Vec::new();
    for r in records {
        if !groups.contains(&r.group()) {
            groups.push(r.group());
        }
    }
    let mut rows: Vec<&Record> = Vec::with_capacity(records.len());
    for g in &groups {
        rows.extend(records.iter().filter(|r| r.group() == *g));
    }
    let mut devices: Vec<&str> = Vec::new();
    for r in records {
        if !devices.contains(&r.device.as_str()) {
            devices.push(&r.device);
        }
    }
    let label = |r: &Record| {
        if devices.len() > 1 {
            format!("{} [{}]", r.bench, r.device)
        } else {
            r.bench.clone()
        }
    };
    let label_chars = rows
        .iter()
        .map(|r| label(r).chars().count())
        .max()
        .unwrap_or(10)
        .min(70);
    let x0 = 20.0 + label_chars as f64 * 6.6;
    let x1 = WIDTH - 90.0;
    let top = 78.0;
    let height = top + rows.len().max(1) as f64 * ROW + 60.0;
    let (lo, hi) = axis_decades(records);
    let x = |r: f64| {
        let l = r.max(1e-12).log10().clamp(lo as f64, hi as f64);
        x0 + (l - lo as f64) / (hi - lo) as f64 * (x1 - x0)
    };
    let colour =
        |g: &str| PALETTE[groups.iter().position(|x| *x == g).unwrap_or(0) % PALETTE.len()];

    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"##
    );
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let _ = writeln!(
        s,
        r##"<text x="20" y="24" font-size="16" font-weight="bold">VUMA benchmarks: ratio against the baseline (log scale; above 1 = VUMA wins)</text>"##
    );
    let dev = if devices.is_empty() {
        "no records".to_string()
    } else {
        devices.join(", ")
    };
    let _ = writeln!(
        s,
        r##"<text x="20" y="44" fill="#444">device: {}</text>"##,
        xml_escape(&dev)
    );
    // Legend.
    let mut lx = 20.0;
    for g in &groups {
        let _ = writeln!(
            s,
            r##"<rect x="{lx}" y="54" width="12" height="12" fill="{}"/><text x="{}" y="65">{}</text>"##,
            colour(g),
            lx + 16.0,
            xml_escape(g)
        );
        lx += 30.0 + g.chars().count() as f64 * 7.0;
    }
    // Grid and axis.
    let bottom = top + rows.len().max(1) as f64 * ROW;
    for d in lo..=hi {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(d);
            if d == hi && m > 1.0 {
                continue;
            }
            let xx = x(v);
            let major = m == 1.0;
            let _ = writeln!(
                s,
                r##"<line x1="{xx:.1}" y1="{top}" x2="{xx:.1}" y2="{bottom}" stroke="{}" stroke-width="1"/>"##,
                if major { "#ccc" } else { "#eee" }
            );
            if major || hi - lo <= 3 {
                let _ = writeln!(
                    s,
                    r##"<text x="{xx:.1}" y="{:.1}" text-anchor="middle" fill="#444">{}</text>"##,
                    bottom + 16.0,
                    tick_label(v)
                );
            }
        }
    }
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#444">ratio (VUMA vs baseline, log scale)</text>"##,
        (x0 + x1) / 2.0,
        bottom + 36.0
    );
    // Bars.
    let one = x(1.0);
    for (i, r) in rows.iter().enumerate() {
        let y = top + i as f64 * ROW;
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            x0 - 8.0,
            y + ROW * 0.68,
            xml_escape(&label(r))
        );
        let tip = format!(
            "{}: {} {} vs {} {} ({}) on {}",
            r.bench,
            fmt_num(r.value),
            r.unit,
            fmt_num(r.baseline_value),
            r.unit,
            r.baseline,
            r.device
        );
        match r.ratio.filter(|v| *v > 0.0 && v.is_finite()) {
            Some(ratio) => {
                let xr = x(ratio);
                let (bx, bw) = if xr >= one {
                    (one, xr - one)
                } else {
                    (xr, one - xr)
                };
                let _ = writeln!(
                    s,
                    r##"<rect class="bar" x="{bx:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}</title></rect>"##,
                    y + 3.0,
                    bw.max(1.0),
                    ROW - 6.0,
                    colour(r.group()),
                    xml_escape(&tip)
                );
                let (tx, anchor) = if xr >= one {
                    (xr + 4.0, "start")
                } else {
                    (xr - 4.0, "end")
                };
                let _ = writeln!(
                    s,
                    r##"<text x="{tx:.1}" y="{:.1}" text-anchor="{anchor}" fill="#222">{:.2}x</text>"##,
                    y + ROW * 0.68,
                    ratio
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    r##"<text x="{:.1}" y="{:.1}" fill="#999"><title>{}</title>n/a</text>"##,
                    one + 4.0,
                    y + ROW * 0.68,
                    xml_escape(&tip)
                );
            }
        }
    }
    let _ = writeln!(
        s,
        r##"<line class="baseline" x1="{one:.1}" y1="{:.1}" x2="{one:.1}" y2="{bottom}" stroke="black" stroke-width="1.5" stroke-dasharray="5,3"/>"##,
        top - 4.0
    );
    let _ = writeln!(s, "</svg>");
    s
}

fn tick_label(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(bench: &str, ratio: Option<f64>) -> Record {
        Record {
            bench: bench.into(),
            device: "H100 <SXM> & co".into(),
            value: Some(1.0),
            unit: "GB/s".into(),
            baseline: "raw".into(),
            baseline_value: Some(1.0),
            higher_is_better: true,
            ratio,
        }
    }

    fn attr(tag: &str, name: &str) -> f64 {
        let k = format!("{name}=\"");
        let i = tag.find(&k).unwrap() + k.len();
        tag[i..].split('"').next().unwrap().parse().unwrap()
    }

    #[test]
    fn bars_start_at_one_and_grow_with_log_ratio() {
        let rs = vec![
            rec("cuda/a", Some(10.0)),
            rec("vulkan/b", Some(0.1)),
            rec("cuda/c", Some(100.0)),
            rec("cuda/d", None),
        ];
        let svg = render(&rs);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(axis_decades(&rs), (-1, 2));
        let bars: Vec<&str> = svg
            .lines()
            .filter(|l| l.contains("class=\"bar\""))
            .collect();
        assert_eq!(bars.len(), 3, "n/a ratios draw no bar");
        // Grouped: cuda/a, cuda/c, then vulkan/b.
        assert!(
            bars[0].contains("cuda/a")
                && bars[1].contains("cuda/c")
                && bars[2].contains("vulkan/b")
        );
        let base = svg
            .lines()
            .find(|l| l.contains("class=\"baseline\""))
            .unwrap();
        let one = attr(base, "x1");
        assert!(
            (attr(bars[0], "x") - one).abs() < 0.2,
            "win bars start at the 1.0 line"
        );
        let (w10, w100, w01) = (
            attr(bars[0], "width"),
            attr(bars[1], "width"),
            attr(bars[2], "width"),
        );
        assert!(
            (w100 - 2.0 * w10).abs() < 0.5,
            "log scale: 100x is twice as long as 10x"
        );
        assert!(
            (w01 - w10).abs() < 0.5,
            "0.1x reaches as far left as 10x right"
        );
        assert!(
            (attr(bars[2], "x") + w01 - one).abs() < 0.2,
            "loss bars end at the 1.0 line"
        );
        // Coloured by group.
        assert!(bars[0].contains(PALETTE[0]) && bars[2].contains(PALETTE[1]));
        assert!(svg.contains("n/a"));
    }

    #[test]
    fn text_is_escaped_and_axis_bounded() {
        let svg = render(&[rec("x/<b>&", Some(1e9))]);
        assert!(svg.contains("x/&lt;b&gt;&amp;"));
        assert!(svg.contains("H100 &lt;SXM&gt; &amp; co"));
        assert!(!svg.contains("<b>"));
        assert_eq!(
            axis_decades(&[rec("a", Some(1e9)), rec("b", Some(1e-9))]),
            (-4, 4)
        );
        assert_eq!(axis_decades(&[]), (-1, 1));
        assert!(render(&[]).contains("no records"));
    }
}
