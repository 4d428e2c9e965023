//! Hyperloop on real data: on trained weights (all-MiniLM-L6-v2, fp32 and rounded to bf16,
//! from the data cache: `cargo xtask fetch-data`) and on the synthetic ReLU activations,
//! measures the entropy limit of the exponent field, what each codec stores, and what the
//! planner plans, and prints a table. Checks that the planner's planned ratio matches what
//! is stored, that real weights are not planned raw where a codec compresses them, and the
//! float codec's ratios against the targets of issue 16.
//!
//! Without cached weights the real-data rows print a SKIP line (the ReLU row still runs).

use vuma_core::Codec;
use vuma_hyperloop::codecs;
use vuma_hyperloop::datasets;
use vuma_hyperloop::floatcodec;
use vuma_hyperloop::page::{self, ElemWidth, SampleConfig};
use vuma_hyperloop::planner::{self, CostModel, DeviceCodec, PageDecision};
use vuma_hyperloop::realdata::{self, RealDataError};
use vuma_hyperloop::residency::{CompressOptions, CompressedBuffer};

/// Bytes of each data set.
const LEN: usize = 8 << 20;

fn entropy(hist: &[u32; 256]) -> f64 {
    let t: f64 = hist.iter().map(|&c| f64::from(c)).sum();
    hist.iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / t;
            -p * p.log2()
        })
        .sum()
}

/// The entropy limit of "exponent coded, sign and mantissa raw" (exact zeros elided when
/// every zero exponent is an exact +0): order-0 exponent entropy per 64 KiB page (the
/// codec's tables are per page), over the whole buffer.
fn exponent_limit(data: &[u8], w: usize) -> f64 {
    let mut bits = 0.0;
    for r in page::pages(data.len(), page::DEFAULT_PAGE_SIZE) {
        let p = &data[r];
        let (hist, elide) = floatcodec::histogram(p, w);
        let n: f64 = hist.iter().map(|&c| f64::from(c)).sum();
        let nsm = if elide { n - f64::from(hist[0]) } else { n };
        bits += entropy(&hist) * n + nsm * 8.0 * (w - 1) as f64 + (p.len() % w) as f64 * 8.0;
    }
    data.len() as f64 * 8.0 / bits
}

/// Stored ratio of `c` over 64 KiB pages (a page that does not shrink counts raw, as the
/// planner would send it); every page round-trips.
fn stored_ratio(c: &dyn Codec, data: &[u8]) -> f64 {
    let mut total = 0usize;
    let mut enc = Vec::new();
    let mut out = vec![0u8; page::DEFAULT_PAGE_SIZE];
    for r in page::pages(data.len(), page::DEFAULT_PAGE_SIZE) {
        enc.clear();
        let n = c.compress(&data[r.clone()], &mut enc).unwrap();
        c.decompress(&enc, &mut out[..r.len()]).unwrap();
        assert_eq!(&out[..r.len()], &data[r.clone()], "{} round trip", c.name());
        total += n.min(r.len());
    }
    data.len() as f64 / total as f64
}

struct Row {
    name: &'static str,
    limit: f64,
    codecs: Vec<(&'static str, f64)>,
    planned: f64,
    serial: f64,
    float_est: f64,
    stored: f64,
    raw_pages: usize,
    pages: usize,
}

fn measure(name: &'static str, data: &[u8], width: ElemWidth) -> Row {
    let w = width.bytes();
    let limit = exponent_limit(data, w);
    let codecs = codecs::all_codecs(width)
        .iter()
        .map(|c| (c.name(), stored_ratio(c.as_ref(), data)))
        .collect();
    let opts = CompressOptions::with_width(width);
    let plan = planner::plan(data, &opts.model, &opts.plan).unwrap();
    let cb = CompressedBuffer::compress(data, &opts).unwrap();
    // The model before 2026-12-03: copy and decode serialised on one stream.
    let serial_model = CostModel {
        concurrent_copies: false,
        ..CostModel::default()
    };
    let serial = planner::plan(data, &serial_model, &opts.plan).unwrap();
    // The float codec's sampled estimate, summed over the pages.
    let sent: f64 = page::pages(data.len(), page::DEFAULT_PAGE_SIZE)
        .map(|r| {
            let n = r.len() as f64;
            let e = page::estimate(&data[r], width, &SampleConfig::default());
            n / e.float.max(1.0)
        })
        .sum();
    Row {
        name,
        limit,
        codecs,
        planned: plan.summary.ratio(),
        serial: serial.summary.ratio(),
        float_est: data.len() as f64 / sent,
        stored: cb.summary().ratio(),
        raw_pages: cb.summary().raw_pages,
        pages: cb.summary().pages,
    }
}

fn print(rows: &[Row]) {
    let Some(first) = rows.first() else { return };
    let mut head = format!("{:<14} {:>7}", "data", "limit");
    for (c, _) in &first.codecs {
        head += &format!(" {c:>9}");
    }
    head += &format!(
        " {:>9} {:>8} {:>8} {:>9} {:>8}",
        "float est", "planned", "stored", "raw pages", "serial"
    );
    eprintln!("{head}");
    for r in rows {
        let mut line = format!("{:<14} {:>7.3}", r.name, r.limit);
        for (_, v) in &r.codecs {
            line += &format!(" {v:>9.3}");
        }
        line += &format!(
            " {:>9.3} {:>8.3} {:>8.3} {:>4}/{:<4} {:>8.3}",
            r.float_est, r.planned, r.stored, r.raw_pages, r.pages, r.serial
        );
        eprintln!("{line}");
    }
}

fn ratio_of(r: &Row, codec: &str) -> f64 {
    r.codecs
        .iter()
        .find(|(c, _)| *c == codec)
        .map_or(f64::NAN, |&(_, v)| v)
}

/// The plan is what gets stored (within 3%), the float codec's sampled estimate is close
/// to what it stores (within 3%), and it stores at least `min_of_limit` of the entropy
/// limit, never above it.
fn check_plan_and_float(r: &Row, min_of_limit: f64) {
    let float = ratio_of(r, "float");
    assert!(
        (r.planned / r.stored - 1.0).abs() < 0.03,
        "{}: planned {:.3}, stored {:.3}",
        r.name,
        r.planned,
        r.stored
    );
    assert!(
        (r.float_est / float - 1.0).abs() < 0.03,
        "{}: float estimate {:.3}, stored {:.3}",
        r.name,
        r.float_est,
        float
    );
    assert!(
        float <= r.limit * 1.0001 && float >= r.limit * min_of_limit,
        "{}: float {float:.3}, limit {:.3}",
        r.name,
        r.limit
    );
}

#[test]
fn real_weights_and_activations() {
    let mut rows = Vec::new();
    match (realdata::trained_f32(LEN), realdata::trained_bf16(LEN)) {
        (Ok(f), Ok(b)) => {
            rows.push(measure("real fp32", &f, ElemWidth::F32));
            rows.push(measure("real bf16", &b, ElemWidth::Bf16));
        }
        (Err(RealDataError::Missing), _) | (_, Err(RealDataError::Missing)) => {
            eprintln!(
                "SKIP real-weight rows of real_weights_and_activations: {}",
                realdata::MISSING
            );
        }
        (Err(e), _) | (_, Err(e)) => panic!("{e}"),
    }
    rows.push(measure(
        "relu f32",
        &datasets::relu_f32(LEN, 7),
        ElemWidth::F32,
    ));
    rows.push(measure(
        "synth bf16",
        &datasets::bf16_weights(LEN, 7),
        ElemWidth::Bf16,
    ));
    print(&rows);
    eprintln!(
        "limit: exponent entropy per 64 KiB page, sign and mantissa raw, exact zeros elided; \
         codec columns: stored ratio over 64 KiB pages; planned/stored: CompressedBuffer with \
         the default options; serial: planned with copy and decode serialised"
    );
    for r in &rows {
        let bitplane = ratio_of(r, "bitplane");
        // Pages a device codec compresses by 10% or more are not sent raw.
        if bitplane > 1.1 {
            assert_eq!(
                r.raw_pages, 0,
                "{}: {} of {} pages raw",
                r.name, r.raw_pages, r.pages
            );
            assert!(
                r.stored > bitplane * 0.97,
                "{}: stored {:.3}",
                r.name,
                r.stored
            );
        }
        // Within 2% of the entropy limit.
        check_plan_and_float(r, 0.98);
    }
    // Issue 16's targets for the float codec.
    let target = |name: &str, min: f64| {
        if let Some(r) = rows.iter().find(|r| r.name == name) {
            let f = ratio_of(r, "float");
            assert!(f >= min, "{name}: float codec {f:.3} < {min}");
        }
    };
    target("real fp32", 1.12);
    target("real bf16", 1.40);
    target("relu f32", 2.0);
}

/// The planner of a device with a float decoder (the default model, the H100/H200 figures,
/// with [`CostModel::float_decoder`] on, as [`CostModel::for_device`] sets it for CUDA and
/// the host device, and a float decode rate above the link): on real fp32 and bf16 weights and on ReLU activations the planned ratio
/// is what gets stored (within 3%), the float codec carries pages, the plan stores at least
/// what the float codec alone stores (per page the better codec), and the stored ratios meet
/// issue 16's targets (bf16 ≥ 1.40, fp32 ≥ 1.12, ReLU ≥ 2.0).
#[test]
fn planner_with_the_float_decoder_on_real_weights() {
    // A float decoder faster than the link (the measured prior is below a Gen5 link, so
    // the default never plans float pages there): what this test checks is the planner's
    // arithmetic given decoders that pay.
    let mut model = CostModel {
        float_decoder: true,
        ..CostModel::default()
    };
    model.float.device_decode = 300e9;
    let mut sets = vec![("relu f32", datasets::relu_f32(LEN, 7), ElemWidth::F32, 2.0)];
    match (realdata::trained_f32(LEN), realdata::trained_bf16(LEN)) {
        (Ok(f), Ok(b)) => {
            sets.push(("real fp32", f, ElemWidth::F32, 1.12));
            sets.push(("real bf16", b, ElemWidth::Bf16, 1.40));
        }
        (Err(RealDataError::Missing), _) | (_, Err(RealDataError::Missing)) => eprintln!(
            "SKIP real-weight sets of planner_with_the_float_decoder_on_real_weights: {}",
            realdata::MISSING
        ),
        (Err(e), _) | (_, Err(e)) => panic!("{e}"),
    }
    use vuma_hyperloop::activations::{activations_f32, Activation};
    match activations_f32(Activation::Relu, LEN) {
        Ok(r) => sets.push(("real relu f32", r, ElemWidth::F32, 2.0)),
        Err(RealDataError::Missing) => eprintln!(
            "SKIP real activations of planner_with_the_float_decoder_on_real_weights: {}",
            realdata::MISSING
        ),
        Err(e) => panic!("{e}"),
    }
    for (name, data, width, target) in sets {
        let mut opts = CompressOptions::with_width(width);
        opts.model = model.clone();
        let plan = planner::plan(&data, &opts.model, &opts.plan).unwrap();
        let cb = CompressedBuffer::compress(&data, &opts).unwrap();
        let mut forced = opts.clone();
        forced.force = Some(PageDecision::Codec(DeviceCodec::Float));
        let float_only = CompressedBuffer::compress(&data, &forced).unwrap();
        let (planned, stored) = (plan.summary.ratio(), cb.summary().ratio());
        let float = float_only.summary().ratio();
        eprintln!(
            "{name}: planned {planned:.3}, stored {stored:.3}, float codec alone {float:.3}; {}",
            cb.summary()
        );
        assert!(
            (planned / stored - 1.0).abs() < 0.03,
            "{name}: planned {planned:.3}, stored {stored:.3}"
        );
        assert!(cb.summary().float_pages > 0, "{name}: {}", cb.summary());
        assert_eq!(cb.summary().raw_pages, 0, "{name}: {}", cb.summary());
        assert!(
            stored >= float * 0.99,
            "{name}: stored {stored:.3}, float alone {float:.3}"
        );
        assert!(stored >= target, "{name}: stored {stored:.3} < {target}");
        let mut out = vec![0u8; data.len()];
        cb.decompress_host(&mut out).unwrap();
        assert!(out == data, "{name}: round trip");
    }
}

/// Real activations (the first feed-forward layer of the cached model run on embedded
/// tokens, GELU as the model has it and ReLU): the same checks as for weights, and the
/// figures printed next to the synthetic set's.
#[test]
fn real_activations() {
    use vuma_hyperloop::activations::{self, Activation};
    let t0 = std::time::Instant::now();
    let (gelu, relu) = match (
        activations::activations_f32(Activation::Gelu, LEN),
        activations::activations_f32(Activation::Relu, LEN),
    ) {
        (Ok(g), Ok(r)) => (g, r),
        (Err(RealDataError::Missing), _) | (_, Err(RealDataError::Missing)) => {
            eprintln!("SKIP real_activations: {}", realdata::MISSING);
            return;
        }
        (Err(e), _) | (_, Err(e)) => panic!("{e}"),
    };
    eprintln!("activations ready in {:.1} s", t0.elapsed().as_secs_f64());
    assert_eq!(gelu.len(), activations::TOKENS * activations::FFN * 4);
    let vals = |b: &[u8]| -> Vec<f32> {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    let (g, r) = (vals(&gelu), vals(&relu));
    let zeros = r.iter().filter(|&&v| v == 0.0).count() as f64 / r.len() as f64;
    eprintln!("ReLU zeros: {:.1}%", zeros * 100.0);
    // Activations of a trained layer: finite, both signs before ReLU, a real share of zeros.
    assert!(g.iter().all(|v| v.is_finite() && v.abs() < 100.0));
    assert!(g.iter().any(|&v| v < 0.0) && g.iter().any(|&v| v > 1.0));
    assert!((0.2..0.95).contains(&zeros), "ReLU zeros {zeros:.3}");
    let gelu_bf16 = realdata::f32_bytes_to_bf16(&gelu);
    let rows = vec![
        measure("real gelu f32", &gelu, ElemWidth::F32),
        measure("real relu f32", &relu, ElemWidth::F32),
        measure("real gelu bf16", &gelu_bf16, ElemWidth::Bf16),
    ];
    print(&rows);
    for r in &rows {
        // Within 3% of the limit: at 2.7× the per-page header and lane ends weigh more.
        check_plan_and_float(r, 0.97);
    }
}
