//! The benchmark plot, a hand-written SVG (std only) with two parts:
//!
//! 1. **Bandwidth vs transfer size** — one panel per bench group and device, for records in
//!    `GB/s` whose bench id ends in a size (`…/64MiB`): VUMA's paths as solid lines with
//!    filled dots, their baselines dashed with open dots in the same colour; log-scale size
//!    axis, linear GB/s axis.
//! 2. **Ratios** — one horizontal bar per record, starting at the 1.0 line (VUMA = baseline)
//!    and reaching right for a win, left for a loss (log scale); grouped and coloured by the
//!    bench id's prefix (`cuda/…`, `vulkan/…`, `hyperloop/…`).
//!
//! ```
//! use vuma_core::bench::{report, svg};
//! let recs = report::parse(r#"{"bench":"host/write/4MiB","device":"cpu","value":9.5,"unit":"GB/s","baseline":"memcpy","baseline_value":10.0,"higher_is_better":true}"#)?;
//! let plot = svg::render(&recs);
//! assert!(plot.starts_with("<svg") && plot.contains("Bandwidth vs transfer size"));
//! # Ok::<(), report::ParseError>(())
//! ```

use std::fmt::Write as _;

use super::report::{fmt_num, Entry};

/// Line and bar colours (colour-blind-friendly Tableau 10).
pub const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#9c755f",
    "#ff9da7", "#bab0ac",
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

/// The decades `[lo, hi]` (powers of ten) the ratio axis spans: at least 0.1..10, at most
/// 1e-4..1e4.
pub fn axis_decades(records: &[Entry]) -> (i32, i32) {
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

/// One line of a bandwidth panel.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Legend text.
    pub label: String,
    /// The VUMA path this line is (or is the baseline of), by label.
    pub path: String,
    /// Whether this is a baseline (dashed) rather than a VUMA path.
    pub baseline: bool,
    /// Index into [`PALETTE`].
    pub colour: usize,
    /// (bytes, GB/s), sorted by size.
    pub points: Vec<(u64, f64)>,
}

/// A bandwidth-vs-size panel: one bench group on one device.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// Bench group (`cuda`, `host`, …).
    pub group: String,
    /// Device name.
    pub device: String,
    /// VUMA paths first, then baselines.
    pub lines: Vec<Line>,
}

/// The bandwidth panels of `records` (records in `GB/s` whose bench id ends in a size).
///
/// A VUMA path whose points repeat an earlier path's (the same measurement compared with a
/// second baseline) is drawn once; a baseline named alike in several benches is one line.
pub fn bandwidth_panels(records: &[Entry]) -> Vec<Panel> {
    let mut panels: Vec<Panel> = Vec::new();
    // Per panel: VUMA series id → line index; baseline name → line index. Maps, so that
    // many groups and series stay linear.
    type Keys = std::collections::HashMap<String, usize>;
    let mut keys: Vec<(Keys, Keys)> = Vec::new();
    let mut panel_index: std::collections::HashMap<(String, String), usize> = Default::default();
    for r in records {
        let (Some(size), Some(v)) = (r.size_bytes(), r.value) else {
            continue;
        };
        if r.unit != "GB/s" {
            continue;
        }
        let pi = *panel_index
            .entry((r.group().to_string(), r.device.clone()))
            .or_insert_with(|| {
                panels.push(Panel {
                    group: r.group().to_string(),
                    device: r.device.clone(),
                    lines: Vec::new(),
                });
                keys.push((Keys::new(), Keys::new()));
                panels.len() - 1
            });
        let (p, (series, bases)) = (&mut panels[pi], &mut keys[pi]);
        let label = r
            .series()
            .strip_prefix(&format!("{}/", r.group()))
            .unwrap_or(r.series())
            .to_string();
        let li = match series.get(r.series()) {
            Some(i) => *i,
            None => {
                let colour = series.len() % PALETTE.len();
                p.lines.push(Line {
                    path: label.clone(),
                    label,
                    baseline: false,
                    colour,
                    points: Vec::new(),
                });
                series.insert(r.series().to_string(), p.lines.len() - 1);
                p.lines.len() - 1
            }
        };
        if !p.lines[li].points.iter().any(|(s, _)| *s == size) {
            p.lines[li].points.push((size, v));
        }
        let (colour, path) = (p.lines[li].colour, p.lines[li].path.clone());
        if let Some(b) = r.baseline_value {
            let key = format!("{}\n{}", r.series(), r.baseline);
            let bi = match bases.get(&key) {
                Some(i) => *i,
                None => {
                    p.lines.push(Line {
                        label: r.baseline.clone(),
                        path,
                        baseline: true,
                        colour,
                        points: Vec::new(),
                    });
                    bases.insert(key, p.lines.len() - 1);
                    p.lines.len() - 1
                }
            };
            if !p.lines[bi].points.iter().any(|(s, _)| *s == size) {
                p.lines[bi].points.push((size, b));
            }
        }
    }
    for p in &mut panels {
        for l in &mut p.lines {
            l.points.sort_by_key(|(s, _)| *s);
        }
        // Drop lines that repeat an earlier one point for point (a VUMA path compared with a
        // second baseline; one baseline measured for two paths); the baselines of a dropped
        // path take the kept one's colour and name.
        let mut i = 0;
        while i < p.lines.len() {
            let l = &p.lines[i];
            let dup = p.lines[..i].iter().position(|k| {
                k.baseline == l.baseline
                    && k.points == l.points
                    && (!l.baseline || k.label == l.label)
            });
            if let Some(j) = dup {
                let gone = p.lines.remove(i);
                let (colour, path) = (p.lines[j].colour, p.lines[j].path.clone());
                if !gone.baseline {
                    for l in p
                        .lines
                        .iter_mut()
                        .filter(|l| l.baseline && l.path == gone.path)
                    {
                        l.colour = colour;
                        l.path = path.clone();
                    }
                }
            } else {
                i += 1;
            }
        }
        // A baseline name used for several paths says which path it belongs to.
        let names: Vec<String> = p
            .lines
            .iter()
            .filter(|l| l.baseline)
            .map(|l| l.label.clone())
            .collect();
        for l in p.lines.iter_mut().filter(|l| l.baseline) {
            if names.iter().filter(|n| **n == l.label).count() > 1 {
                l.label = format!("{} (vs {})", l.label, l.path);
            }
        }
        // VUMA paths first, then baselines, each in order of appearance.
        p.lines.sort_by_key(|l| l.baseline);
    }
    panels
}

/// `bytes` as a short axis label (`4 KiB`, `64 MiB`, `1 GiB`).
pub fn size_label(bytes: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < U.len() {
        v /= 1024.0;
        u += 1;
    }
    if v.fract() == 0.0 {
        format!("{v:.0} {}", U[u])
    } else {
        format!("{v:.1} {}", U[u])
    }
}

/// A "nice" axis maximum and step for values up to `max` (about 6 steps).
fn nice_axis(max: f64) -> (f64, f64) {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let raw = max / 6.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    ((max / step).ceil() * step, step)
}

fn num_label(v: f64) -> String {
    if v == v.round() {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

const PANEL_PLOT_W: f64 = 640.0;
const PANEL_PLOT_H: f64 = 230.0;

/// Draws one panel at `top`; returns its height.
fn draw_panel(s: &mut String, p: &Panel, top: f64) -> f64 {
    let legend_rows = p.lines.len() as f64;
    let height = (PANEL_PLOT_H + 90.0).max(60.0 + legend_rows * 18.0);
    let (px0, px1) = (80.0, 80.0 + PANEL_PLOT_W);
    let (py0, py1) = (top + 34.0, top + 34.0 + PANEL_PLOT_H);
    let _ = writeln!(
        s,
        r##"<rect x="10" y="{top:.1}" width="{:.1}" height="{:.1}" fill="#fafafa" stroke="#ddd"/>"##,
        WIDTH - 20.0,
        height - 10.0
    );
    let _ = writeln!(
        s,
        r##"<text x="20" y="{:.1}" font-size="14" font-weight="bold">{} on {}</text>"##,
        top + 20.0,
        xml_escape(&p.group),
        xml_escape(&p.device)
    );
    let sizes = p
        .lines
        .iter()
        .flat_map(|l| l.points.iter().map(|(s, _)| *s));
    let (mut smin, mut smax) = (u64::MAX, 1u64);
    for sz in sizes {
        smin = smin.min(sz);
        smax = smax.max(sz);
    }
    let (l0, l1) = (
        (smin.max(1) as f64).log2() - 0.5,
        (smax.max(1) as f64).log2() + 0.5,
    );
    let vmax = p
        .lines
        .iter()
        .flat_map(|l| l.points.iter().map(|(_, v)| *v))
        .fold(0.0f64, f64::max);
    let (ymax, ystep) = nice_axis(vmax * 1.05);
    let x = |b: u64| px0 + ((b.max(1) as f64).log2() - l0) / (l1 - l0) * (px1 - px0);
    let y = |v: f64| py1 - (v.clamp(0.0, ymax) / ymax) * (py1 - py0);
    // Grid: y.
    let mut v = 0.0;
    while v <= ymax + ystep * 0.01 {
        let yy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{px0}" y1="{yy:.1}" x2="{px1}" y2="{yy:.1}" stroke="{}"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#444">{}</text>"##,
            if v == 0.0 { "#888" } else { "#e3e3e3" },
            px0 - 6.0,
            yy + 4.0,
            num_label(v)
        );
        v += ystep;
    }
    // Grid: x, at powers of two (every other one when crowded).
    let (e0, e1) = ((l0.ceil()) as i32, (l1.floor()) as i32);
    let every = if e1 - e0 > 10 { 2 } else { 1 };
    for e in (e0..=e1).filter(|e| e.rem_euclid(every) == 0) {
        let b = 1u64 << e.clamp(0, 62);
        let xx = x(b);
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{py0}" x2="{xx:.1}" y2="{py1}" stroke="#e3e3e3"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle" fill="#444">{}</text>"##,
            py1 + 16.0,
            size_label(b)
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#444">transfer size (log scale)</text>"##,
        (px0 + px1) / 2.0,
        py1 + 34.0
    );
    let _ = writeln!(
        s,
        r##"<text transform="translate({:.1},{:.1}) rotate(-90)" text-anchor="middle" fill="#444">GB/s</text>"##,
        px0 - 48.0,
        (py0 + py1) / 2.0
    );
    // Lines: baselines first so VUMA's paths draw on top.
    for l in p.lines.iter().rev() {
        let c = PALETTE[l.colour % PALETTE.len()];
        let class = if l.baseline { "bw-base" } else { "bw-vuma" };
        if l.points.len() > 1 {
            let pts: Vec<String> = l
                .points
                .iter()
                .map(|(b, v)| format!("{:.1},{:.1}", x(*b), y(*v)))
                .collect();
            let _ = writeln!(
                s,
                r##"<polyline class="{class}" points="{}" fill="none" stroke="{c}" stroke-width="{}"{}/>"##,
                pts.join(" "),
                if l.baseline { 1.6 } else { 2.4 },
                if l.baseline {
                    r#" stroke-dasharray="6,4""#
                } else {
                    ""
                }
            );
        }
        for (b, v) in &l.points {
            let _ = writeln!(
                s,
                r##"<circle cx="{:.1}" cy="{:.1}" r="{}" fill="{}" stroke="{c}" stroke-width="1.6"><title>{}: {} GB/s at {}</title></circle>"##,
                x(*b),
                y(*v),
                if l.baseline { 3.5 } else { 4.0 },
                if l.baseline { "white" } else { c },
                xml_escape(&l.label),
                fmt_num(Some(*v)),
                size_label(*b)
            );
        }
    }
    // Legend, right of the plot.
    let lx = px1 + 30.0;
    let _ = writeln!(
        s,
        r##"<text x="{lx}" y="{:.1}" fill="#444">solid: VUMA · dashed: baseline (same run)</text>"##,
        top + 20.0
    );
    for (i, l) in p.lines.iter().enumerate() {
        let c = PALETTE[l.colour % PALETTE.len()];
        let yy = top + 42.0 + i as f64 * 18.0;
        let _ = writeln!(
            s,
            r##"<line x1="{lx}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="{c}" stroke-width="{}"{}/><circle cx="{:.1}" cy="{yy:.1}" r="3.5" fill="{}" stroke="{c}" stroke-width="1.6"/><text x="{:.1}" y="{:.1}">{}</text>"##,
            lx + 28.0,
            if l.baseline { 1.6 } else { 2.4 },
            if l.baseline {
                r#" stroke-dasharray="6,4""#
            } else {
                ""
            },
            lx + 14.0,
            if l.baseline { "white" } else { c },
            lx + 36.0,
            yy + 4.0,
            xml_escape(&truncate(&l.label, 50))
        );
    }
    height
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}

/// Renders the whole plot.
pub fn render(records: &[Entry]) -> String {
    // Group by prefix, in the order groups first appear; keep order within a group. Linear
    // in the records (indexes by map: many groups must not make it quadratic).
    let mut group_index: std::collections::HashMap<&str, usize> = Default::default();
    let mut groups: Vec<&str> = Vec::new();
    let mut buckets: Vec<Vec<&Entry>> = Vec::new();
    for r in records {
        let g = r.group();
        let i = *group_index.entry(g).or_insert_with(|| {
            groups.push(g);
            buckets.push(Vec::new());
            groups.len() - 1
        });
        buckets[i].push(r);
    }
    let rows: Vec<&Entry> = buckets.into_iter().flatten().collect();
    let mut seen_devices: std::collections::HashSet<&str> = Default::default();
    let mut devices: Vec<&str> = Vec::new();
    for r in records {
        if seen_devices.insert(r.device.as_str()) {
            devices.push(&r.device);
        }
    }
    // A benchmark measured against several baselines gets one row per baseline: its label
    // names the baseline.
    let mut per_bench: std::collections::HashMap<&str, usize> = Default::default();
    for r in &rows {
        *per_bench.entry(r.bench.as_str()).or_default() += 1;
    }
    let label = |r: &Entry| {
        let mut l = r.bench.clone();
        if per_bench.get(r.bench.as_str()).copied().unwrap_or(0) > 1 {
            l = format!("{l} vs {}", truncate(&r.baseline, 28));
        }
        if devices.len() > 1 {
            l = format!("{l} [{}]", truncate(&r.device, 24));
        }
        l
    };
    let label_chars = rows
        .iter()
        .map(|r| label(r).chars().count())
        .max()
        .unwrap_or(10)
        .min(80);
    let x0 = 20.0 + label_chars as f64 * 6.2;
    let x1 = WIDTH - 70.0;
    let colour = |g: &str| PALETTE[group_index.get(g).copied().unwrap_or(0) % PALETTE.len()];

    // Body first (its height decides the canvas), header and canvas after.
    let mut body = String::new();
    let mut y0 = 56.0;
    let panels = bandwidth_panels(records);
    if !panels.is_empty() {
        let _ = writeln!(
            body,
            r##"<text x="20" y="{:.1}" font-size="16" font-weight="bold">Bandwidth vs transfer size</text>"##,
            y0 + 16.0
        );
        y0 += 28.0;
        for p in &panels {
            y0 += draw_panel(&mut body, p, y0);
        }
        y0 += 10.0;
    }
    let _ = writeln!(
        body,
        r##"<text x="20" y="{:.1}" font-size="16" font-weight="bold">Ratio against the baseline measured in the same run (log scale; right of 1 = VUMA wins)</text>"##,
        y0 + 16.0
    );
    // Legend of groups.
    let mut lx = 20.0;
    for g in &groups {
        let _ = writeln!(
            body,
            r##"<rect x="{lx}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{}" y="{:.1}">{}</text>"##,
            y0 + 28.0,
            colour(g),
            lx + 16.0,
            y0 + 39.0,
            xml_escape(g)
        );
        lx += 30.0 + g.chars().count() as f64 * 7.0;
    }
    let top = y0 + 52.0;
    let bottom = top + rows.len().max(1) as f64 * ROW;
    let height = bottom + 50.0;
    let (lo, hi) = axis_decades(records);
    let x = |r: f64| {
        let l = r.max(1e-12).log10().clamp(lo as f64, hi as f64);
        x0 + (l - lo as f64) / (hi - lo) as f64 * (x1 - x0)
    };
    // Zebra rows, grid and axis.
    for i in (0..rows.len()).step_by(2) {
        let _ = writeln!(
            body,
            r##"<rect x="10" y="{:.1}" width="{:.1}" height="{ROW}" fill="#f5f5f5"/>"##,
            top + i as f64 * ROW,
            WIDTH - 20.0
        );
    }
    for d in lo..=hi {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(d);
            if d == hi && m > 1.0 {
                continue;
            }
            let xx = x(v);
            let major = m == 1.0;
            let _ = writeln!(
                body,
                r##"<line x1="{xx:.1}" y1="{top}" x2="{xx:.1}" y2="{bottom}" stroke="{}" stroke-width="1"/>"##,
                if major { "#ccc" } else { "#eee" }
            );
            if major || hi - lo <= 3 {
                let _ = writeln!(
                    body,
                    r##"<text x="{xx:.1}" y="{:.1}" text-anchor="middle" fill="#444">{}</text>"##,
                    bottom + 16.0,
                    tick_label(v)
                );
            }
        }
    }
    let _ = writeln!(
        body,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#444">ratio (VUMA vs baseline, log scale)</text>"##,
        (x0 + x1) / 2.0,
        bottom + 36.0
    );
    let one = x(1.0);
    for (i, r) in rows.iter().enumerate() {
        let y = top + i as f64 * ROW;
        let _ = writeln!(
            body,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11">{}</text>"##,
            x0 - 8.0,
            y + ROW * 0.68,
            xml_escape(&truncate(&label(r), 80))
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
                    body,
                    r##"<rect class="bar" x="{bx:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}</title></rect>"##,
                    y + 3.0,
                    bw.max(1.0),
                    ROW - 6.0,
                    colour(r.group()),
                    xml_escape(&tip)
                );
                // Right of a win's bar; left of a loss's, or right of the 1.0 line when
                // the bar reaches the labels.
                let (tx, anchor) = if xr >= one {
                    (xr + 4.0, "start")
                } else if xr - 48.0 < x0 {
                    (one + 4.0, "start")
                } else {
                    (xr - 4.0, "end")
                };
                let _ = writeln!(
                    body,
                    r##"<text x="{tx:.1}" y="{:.1}" text-anchor="{anchor}" fill="#222">{}x</text>"##,
                    y + ROW * 0.68,
                    ratio_label(ratio)
                );
            }
            None => {
                let _ = writeln!(
                    body,
                    r##"<text x="{:.1}" y="{:.1}" fill="#999"><title>{}</title>n/a</text>"##,
                    one + 4.0,
                    y + ROW * 0.68,
                    xml_escape(&tip)
                );
            }
        }
    }
    let _ = writeln!(
        body,
        r##"<line class="baseline" x1="{one:.1}" y1="{:.1}" x2="{one:.1}" y2="{bottom}" stroke="black" stroke-width="1.5" stroke-dasharray="5,3"/>"##,
        top - 4.0
    );

    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">"##
    );
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let _ = writeln!(
        s,
        r##"<text x="20" y="26" font-size="18" font-weight="bold">VUMA benchmarks</text>"##
    );
    let dev = if devices.is_empty() {
        "no records".to_string()
    } else {
        devices.join(" · ")
    };
    let _ = writeln!(
        s,
        r##"<text x="20" y="46" fill="#444">{} records · devices: {}</text>"##,
        records.len(),
        xml_escape(&truncate(&dev, 150))
    );
    s.push_str(&body);
    let _ = writeln!(s, "</svg>");
    s
}

fn ratio_label(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}")
    } else if r >= 0.01 {
        format!("{r:.2}")
    } else {
        format!("{r:.1e}")
    }
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

    fn rec(bench: &str, ratio: Option<f64>) -> Entry {
        Entry {
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

    fn bw(bench: &str, v: f64, baseline: &str, b: f64) -> Entry {
        Entry {
            bench: bench.into(),
            device: "gpu".into(),
            value: Some(v),
            unit: "GB/s".into(),
            baseline: baseline.into(),
            baseline_value: Some(b),
            higher_is_better: true,
            ratio: Some(v / b),
        }
    }

    fn attr(tag: &str, name: &str) -> f64 {
        let k = format!(" {name}=\"");
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
        assert!(
            !svg.contains("Bandwidth vs transfer size"),
            "no sized records, no bandwidth panel"
        );
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

    #[test]
    fn bandwidth_panels_pair_paths_with_baselines() {
        let rs = vec![
            bw("cuda/h2d/4MiB", 10.0, "pinned", 12.0),
            bw("cuda/h2d/64MiB", 20.0, "pinned", 22.0),
            bw("cuda/h2d_vs_pageable/4MiB", 10.0, "pageable", 3.0),
            bw("cuda/h2d_vs_pageable/64MiB", 20.0, "pageable", 5.0),
            bw("cuda/d2h/64 MiB", 18.0, "pinned d2h", 21.0),
            bw("cuda/read/4MiB", 5.0, "pinned", 6.0),
            bw("cuda/other/random", 1.0, "x", 1.0),
            bw("vulkan/h2d/256MiB", 30.0, "vkCmdCopyBuffer", 40.0),
        ];
        let ps = bandwidth_panels(&rs);
        assert_eq!(ps.len(), 2);
        let cuda = &ps[0];
        let labels: Vec<(&str, bool)> = cuda
            .lines
            .iter()
            .map(|l| (l.label.as_str(), l.baseline))
            .collect();
        assert_eq!(
            labels,
            vec![
                ("h2d", false),
                ("d2h", false),
                ("read", false),
                ("pinned (vs h2d)", true),
                ("pageable", true),
                ("pinned d2h", true),
                ("pinned (vs read)", true),
            ],
            "the repeated VUMA path is drawn once"
        );
        let h2d = &cuda.lines[0];
        assert_eq!(h2d.points, vec![(4 << 20, 10.0), (64 << 20, 20.0)]);
        assert_eq!(
            cuda.lines[4].colour, h2d.colour,
            "baseline keeps its path's colour"
        );
        assert_eq!(cuda.lines[4].path, "h2d");
        let svg = render(&rs);
        assert!(svg.contains("Bandwidth vs transfer size"));
        assert!(svg.contains("cuda on gpu") && svg.contains("vulkan on gpu"));
        assert_eq!(
            svg.matches("class=\"bw-vuma\"").count(),
            1,
            "only multi-point paths are lines"
        );
        assert!(svg.contains("64 MiB") && svg.contains("4 MiB"));
        assert!(svg.contains("stroke-dasharray=\"6,4\""));
        // Points lie inside the plot: larger bandwidth is higher up (smaller y).
        let vuma = svg
            .lines()
            .find(|l| l.contains("class=\"bw-vuma\""))
            .unwrap();
        let pts: Vec<(f64, f64)> = vuma
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .split(' ')
            .map(|p| {
                let (a, b) = p.split_once(',').unwrap();
                (a.parse().unwrap(), b.parse().unwrap())
            })
            .collect();
        assert!(pts[0].0 < pts[1].0 && pts[0].1 > pts[1].1, "{pts:?}");
    }

    #[test]
    fn labels() {
        assert_eq!(size_label(4096), "4 KiB");
        assert_eq!(size_label(3 << 29), "1.5 GiB");
        assert_eq!(nice_axis(54.0), (60.0, 10.0));
        assert_eq!(nice_axis(0.0), (1.0, 0.2));
        assert_eq!(num_label(2.5), "2.5");
    }
    /// The audit's probe: `bench --from` on a file of many groups took 24 s for 4 MB
    /// (grouping, panel and series lookups quadratic in the records). They are map lookups
    /// now: 40,000 records in 8,000 groups (about that file's size) render in a few seconds
    /// even unoptimised; the bound is a guard against the quadratic form coming back (24 s
    /// for a file of this size in a release build), not a performance claim.
    #[test]
    fn many_groups_render_without_quadratic_work() {
        let records: Vec<Entry> = (0..40_000)
            .map(|i| rec(&format!("g{}/path/{}MiB", i / 5, 1 << (i % 5)), Some(1.1)))
            .collect();
        let t0 = std::time::Instant::now();
        let svg = render(&records);
        assert!(svg.starts_with("<svg"));
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(60),
            "{:?}",
            t0.elapsed()
        );
    }
}
