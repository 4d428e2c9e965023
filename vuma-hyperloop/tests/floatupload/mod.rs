//! Helpers of the tests of float pages through compressed residency (host device in
//! `float_residency.rs`, CUDA in `cuda_float.rs`): the data sets, a chunk mixing every page
//! kind, and an upload through every home of the chunk images with guard bytes.

use vuma_core::{DynBuffer, DynDevice, HostDevice, Placement};
use vuma_hyperloop::datasets::{self, Dataset};
use vuma_hyperloop::kernels::{Entry, PageKind};
use vuma_hyperloop::page::ElemWidth;
use vuma_hyperloop::planner::{DeviceCodec, PageDecision};
use vuma_hyperloop::realdata::{self, RealDataError};
use vuma_hyperloop::residency::{
    CompressOptions, CompressedBuffer, DeviceCompressed, PinnedCompressed, Uploader,
};

/// Guard bytes after every destination (must stay untouched).
pub const GUARD: u64 = 64 << 10;

/// The data sets of the float tests, `len` bytes each (plus an odd tail): every synthetic
/// set, and the real fp32 and bf16 weights when cached (else a SKIP line naming `test`).
pub fn datasets(len: usize, test: &str) -> Vec<(String, Vec<u8>, ElemWidth)> {
    let mut v: Vec<(String, Vec<u8>, ElemWidth)> = Dataset::ALL
        .iter()
        .map(|ds| {
            let odd = if ds.width() == ElemWidth::U8 {
                4099
            } else {
                4100
            };
            (
                ds.name().to_string(),
                ds.generate(len + odd, 11),
                ds.width(),
            )
        })
        .collect();
    match (realdata::trained_f32(len), realdata::trained_bf16(len)) {
        (Ok(f), Ok(b)) => {
            v.push(("real fp32".into(), f, ElemWidth::F32));
            v.push(("real bf16".into(), b, ElemWidth::Bf16));
        }
        (Err(RealDataError::Missing), _) | (_, Err(RealDataError::Missing)) => {
            eprintln!("SKIP real-weight sets of {test}: {}", realdata::MISSING);
        }
        (Err(e), _) | (_, Err(e)) => panic!("{e}"),
    }
    v
}

/// Uploads `cb` to `dev` through every home (pageable, pinned, mapped in place, mapped by
/// DMA, device-resident) into a destination with [`GUARD`] bytes after it; returns each
/// home's output, or the upload's error text. Panics when a guard byte changed.
pub fn all_homes(
    dev: &dyn DynDevice,
    cb: &CompressedBuffer,
) -> Vec<(&'static str, Result<Vec<u8>, String>)> {
    const PATTERN: u8 = 0xCD;
    let len = cb.len();
    let dst = dev
        .alloc(len + GUARD, Placement::DeviceLocal)
        .expect("destination");
    let mut up = Uploader::new(dev);
    let mut run =
        |what: &'static str,
         f: &mut dyn FnMut(&mut Uploader<'_>, &dyn DynBuffer) -> vuma_core::Result<()>| {
            dev.fill(dst.as_ref(), 0, len + GUARD, PATTERN)
                .expect("fill");
            let r = f(&mut up, dst.as_ref());
            let mut back = vec![0u8; (len + GUARD) as usize];
            dev.read(dst.as_ref(), 0, &mut back).expect("read");
            assert!(
                back[len as usize..].iter().all(|&b| b == PATTERN),
                "{what}: write past the data"
            );
            back.truncate(len as usize);
            (what, r.map(|()| back).map_err(|e| e.to_string()))
        };
    // The decoders' own checks are what these tests compare: the pageable home skips the
    // host's integrity checks, and the other homes place a re-sealed copy (the checksum does
    // not change what decodes). A page table that fails the coverage check cannot be
    // placed at all: then only the pageable home runs.
    let mut out = vec![run("pageable", &mut |u, d| {
        u.upload_unverified(cb, d).map(drop)
    })];
    let mut sealed = cb.clone();
    for c in sealed.chunks_mut() {
        c.seal();
    }
    if let Err(e) = sealed.verify() {
        assert!(matches!(e, vuma_core::Error::Corrupt { .. }), "{e}");
        return out;
    }
    let cb = &sealed;
    let pinned = PinnedCompressed::pin(dev, cb).expect("pin");
    out.push(run("pinned", &mut |u, d| {
        u.upload_pinned(&pinned, d).map(drop)
    }));
    drop(pinned);
    let mapped = PinnedCompressed::map(dev, cb).expect("map");
    out.push(run("mapped", &mut |u, d| {
        u.upload_pinned(&mapped, d).map(drop)
    }));
    out.push(run("mapped by DMA", &mut |u, d| {
        u.set_mapped_in_place(false);
        let r = u.upload_pinned(&mapped, d).map(drop);
        u.set_mapped_in_place(true);
        r
    }));
    drop(mapped);
    let resident = DeviceCompressed::new(dev, cb).expect("resident");
    out.push(run("resident", &mut |u, d| {
        u.decode_resident(&resident, d).map(drop)
    }));
    out
}

/// Asserts that `cb` uploads to `dev` bit-exactly (every home) as `data`.
pub fn assert_round_trips(dev: &dyn DynDevice, what: &str, data: &[u8], cb: &CompressedBuffer) {
    for (home, r) in all_homes(dev, cb) {
        match r {
            Ok(out) => assert!(
                out == data,
                "{what} via {home}: output differs at byte {:?}",
                out.iter().zip(data).position(|(a, b)| a != b)
            ),
            Err(e) => panic!("{what} via {home}: {e}"),
        }
    }
}

/// A chunk mixing every page kind, 17 pages of 16 KiB (f32 elements, the last page partial):
/// zero pages, float pages (ReLU activations and f32 weights), bitplane pages, raw pages
/// (random bytes) and, with the `lz4` feature, LZ4 pages, interleaved; one chunk. Raw pages
/// travel in the chunk (`direct`: false) or as direct runs (`direct`: true). Returns the data
/// and the compressed buffer.
pub fn mixed(direct: bool) -> (Vec<u8>, CompressedBuffer) {
    const PS: usize = 16 << 10;
    let lz4 = if cfg!(feature = "lz4") {
        PageDecision::Codec(DeviceCodec::Lz4)
    } else {
        PageDecision::Codec(DeviceCodec::Float)
    };
    let float = PageDecision::Codec(DeviceCodec::Float);
    let plan: Vec<(PageDecision, Vec<u8>)> = vec![
        (PageDecision::Zero, vec![0u8; PS]),
        (float, datasets::relu_f32(PS, 1)),
        (
            PageDecision::Codec(DeviceCodec::Bitplane),
            datasets::relu_f32(PS, 2),
        ),
        (PageDecision::Raw, datasets::random_bytes(PS, 3)),
        (float, realish_f32(PS, 4)),
        (lz4, datasets::relu_f32(PS, 5)),
        (PageDecision::Raw, datasets::random_bytes(PS, 6)),
        (PageDecision::Raw, datasets::random_bytes(PS, 7)),
        (float, datasets::relu_f32(PS, 8)),
        (PageDecision::Zero, vec![0u8; PS]),
        (
            PageDecision::Codec(DeviceCodec::Bitplane),
            realish_f32(PS, 9),
        ),
        (float, realish_f32(PS, 10)),
        (PageDecision::Raw, datasets::random_bytes(PS, 11)),
        (PageDecision::Raw, datasets::random_bytes(PS, 12)),
        (PageDecision::Raw, datasets::random_bytes(PS, 13)),
        (float, datasets::relu_f32(PS, 14)),
        (float, datasets::relu_f32(PS - 4 * 37 - 2, 15)),
    ];
    let data: Vec<u8> = plan.iter().flat_map(|p| p.1.iter().copied()).collect();
    let decisions: Vec<PageDecision> = plan.iter().map(|p| p.0).collect();
    let mut opts = CompressOptions::with_width(ElemWidth::F32);
    opts.plan.page_size = PS;
    opts.chunk_bytes = PS * plan.len();
    // Three consecutive raw pages go direct at 48 KiB; 1 GiB keeps every raw page in the chunk.
    opts.direct_min_bytes = if direct { 3 * PS } else { 1 << 30 };
    let cb = CompressedBuffer::from_decisions(&data, &decisions, &opts).expect("mixed chunk");
    (data, cb)
}

/// Weight-like f32 values: normal, scale 0.02 (the exponent is what the float codec codes).
fn realish_f32(len: usize, seed: u64) -> Vec<u8> {
    let mut r = datasets::SplitMix64::new(seed);
    let mut v = Vec::with_capacity(len);
    while v.len() + 8 <= len {
        let (a, b) = r.normal_pair();
        v.extend_from_slice(&((a * 0.02) as f32).to_le_bytes());
        v.extend_from_slice(&((b * 0.02) as f32).to_le_bytes());
    }
    v.resize(len, 0x3C);
    v
}

/// The kinds of the page-table entries of chunk `c` of `cb`.
pub fn kinds_of(cb: &CompressedBuffer, c: usize) -> Vec<u8> {
    let ck = &cb.chunks()[c];
    (0..ck.npages as usize)
        .map(|i| Entry::read(&ck.image, i).kind)
        .collect()
}

/// Asserts that the mixed chunk holds every kind it should, and that its flags say so.
pub fn assert_mixed(cb: &CompressedBuffer, direct: bool) {
    assert_eq!(cb.chunks().len(), 1);
    let k = kinds_of(cb, 0);
    let has = |kind: PageKind| k.contains(&(kind as u8));
    let c = &cb.chunks()[0];
    assert!(has(PageKind::Zero) && has(PageKind::Raw) && has(PageKind::Bitplane));
    assert!(has(PageKind::Float) && c.has_float && c.has_bitplane && c.has_fill);
    assert_eq!(has(PageKind::Lz4), cfg!(feature = "lz4"));
    assert_eq!(c.has_lz4, cfg!(feature = "lz4"));
    assert_eq!(has(PageKind::Direct), direct, "{k:?}");
    assert_eq!(c.runs.len(), usize::from(direct));
    assert_eq!(cb.summary().float_pages, 6, "{}", cb.summary());
}

/// Uploads every data set of [`datasets`] (`len` bytes each) to `dev` through every home:
/// planned for the device (the float codec where it wins; the device must have a float
/// decoder) and with every non-zero page forced to the float codec, several chunks per
/// upload; the output must be the data and `decompress_host` must agree. Then the chunks
/// mixing every page kind, intact (bit-exact) and with every float page's code lengths
/// damaged (the device reports the host device's error, every home).
pub fn check_uploads(dev: &dyn DynDevice, len: usize, test: &str) {
    let host = HostDevice::new();
    let mut planned_float = 0;
    for (name, data, width) in datasets(len, test) {
        let mut planned = CompressOptions::for_device(dev.info(), width);
        // A float decoder faster than the link (the prior is below it: see `CostModel`), so
        // that the planner's float choices are exercised.
        planned.model.float.device_decode = 300e9;
        assert!(
            planned.model.float_decoder,
            "the device has a float decoder"
        );
        let mut forced = planned.clone();
        forced.force = Some(PageDecision::Codec(DeviceCodec::Float));
        for (what, mut opts) in [("planned", planned), ("forced", forced)] {
            // Four chunks or more, whatever slice of real weights the cache holds.
            opts.chunk_bytes = (data.len() / 4).max(64 << 10);
            let cb = CompressedBuffer::compress(&data, &opts).expect("compress");
            assert!(cb.chunks().len() >= 4, "{name}: several chunks");
            if what == "forced" && !["random", "zero_heavy"].contains(&name.as_str()) {
                assert!(cb.summary().float_pages > 0, "{name}: {}", cb.summary());
            }
            if what == "planned" {
                planned_float += cb.summary().float_pages;
            }
            assert_round_trips(dev, &format!("{name} {what}"), &data, &cb);
            let mut reference = vec![0u8; data.len()];
            cb.decompress_host(&mut reference).expect("decompress_host");
            assert!(reference == data, "{name} {what}: host decode differs");
            eprintln!("ok {name} {what}: {}", cb.summary());
        }
    }
    assert!(planned_float > 0, "the planner never chose the float codec");
    for direct in [false, true] {
        let (data, cb) = mixed(direct);
        assert_mixed(&cb, direct);
        assert_round_trips(dev, "mixed chunk", &data, &cb);
        let mut damaged = cb.clone();
        let c = &mut damaged.chunks_mut()[0];
        for i in 0..c.npages as usize {
            let e = Entry::read(&c.image, i);
            if e.kind == PageKind::Float as u8 {
                c.image[e.src_off as usize + 13] ^= 0x5A;
            }
        }
        let d = all_homes(dev, &damaged);
        let h = all_homes(&host, &damaged);
        for ((home, a), (_, b)) in d.iter().zip(&h) {
            let err = a.as_ref().err();
            assert!(
                err.is_some_and(|e| e.contains("corrupt float")),
                "{home}: {err:?}"
            );
            assert_eq!(err, b.as_ref().err(), "{home}: device and host differ");
        }
    }
}

/// Launches the decoders other than `hl_float` (`hl_fill_copy`, `hl_bitplane`, `hl_lz4`, as
/// the chunk's flags call for) on chunk 0 of `cb` on `dev`, with the kinds mask the
/// `Uploader` gives them, float bit included, but without `hl_float`: they must leave the
/// float pages to it (no flag) and decode their own. Returns the status words and the
/// destination (pre-filled with 0xCD; guard bytes checked); direct runs are not copied.
pub fn launch_others(dev: &dyn DynDevice, cb: &CompressedBuffer) -> ([u32; 2], Vec<u8>) {
    use vuma_core::{AccessMode, Arg, Scalar};
    use vuma_hyperloop::kernels::{self, decoders};
    let c = &cb.chunks()[0];
    let head = &c.image[..c.head_len];
    let len = cb.len();
    let chunk = dev
        .alloc(head.len() as u64, Placement::DeviceLocal)
        .expect("chunk");
    dev.write(chunk.as_ref(), 0, head).expect("write");
    let dst = dev
        .alloc(len + GUARD, Placement::DeviceLocal)
        .expect("destination");
    dev.fill(dst.as_ref(), 0, len + GUARD, 0xCD).expect("fill");
    let st = dev.alloc(8, Placement::DeviceLocal).expect("status");
    let mut init = [0u8; 8];
    init[4..].copy_from_slice(&u32::MAX.to_le_bytes());
    dev.write(st.as_ref(), 0, &init).expect("status");
    let bit = kernels::kind_bit;
    let mut kinds = bit(PageKind::Zero) | bit(PageKind::Raw) | bit(PageKind::Bitplane);
    if c.has_lz4 {
        kinds |= bit(PageKind::Lz4);
    }
    if c.has_float {
        kinds |= bit(PageKind::Float);
    }
    let args = [
        Arg::Buffer {
            buffer: chunk.as_ref(),
            offset: 0,
            len: head.len() as u64,
            access: AccessMode::Read,
        },
        Arg::Scalar(Scalar::U64(head.len() as u64)),
        Arg::Buffer {
            buffer: dst.as_ref(),
            offset: 0,
            len: len.next_multiple_of(4),
            access: AccessMode::ReadWrite,
        },
        Arg::Scalar(Scalar::U64(len)),
        Arg::whole(st.as_ref(), AccessMode::ReadWrite),
        Arg::Scalar(Scalar::U32(c.npages)),
        Arg::Scalar(Scalar::U32(kinds)),
    ];
    let d = decoders();
    dev.launch(&d.fill_copy, &kernels::fill_grid(c.npages), &args)
        .expect("hl_fill_copy");
    dev.launch(
        &d.bitplane,
        &kernels::bitplane_grid(c.npages, cb.width()),
        &args,
    )
    .expect("hl_bitplane");
    if c.has_lz4 {
        dev.launch(&d.lz4, &kernels::lz4_grid(c.npages), &args)
            .expect("hl_lz4");
    }
    let mut s = [0u8; 8];
    dev.read(st.as_ref(), 0, &mut s).expect("status");
    let mut out = vec![0u8; (len + GUARD) as usize];
    dev.read(dst.as_ref(), 0, &mut out).expect("read");
    assert!(
        out[len as usize..].iter().all(|&b| b == 0xCD),
        "a decoder wrote past the destination"
    );
    out.truncate(len as usize);
    let w = |i: usize| u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
    ([w(0), w(4)], out)
}

/// Checks [`launch_others`]' result on the mixed chunk: no flag, every page of the other
/// kernels decoded, float and direct pages untouched (0xCD).
pub fn assert_others_leave_float_pages(
    cb: &CompressedBuffer,
    data: &[u8],
    st: [u32; 2],
    out: &[u8],
) {
    assert_eq!(st, [0, u32::MAX], "the other decoders flagged pages");
    let c = &cb.chunks()[0];
    for i in 0..c.npages as usize {
        let e = Entry::read(&c.image, i);
        let r = e.dst_off as usize..e.dst_off as usize + e.dst_len as usize;
        if e.kind == PageKind::Float as u8 || e.kind == PageKind::Direct as u8 {
            assert!(
                out[r].iter().all(|&b| b == 0xCD),
                "page {i} (kind {}) written",
                e.kind
            );
        } else {
            assert!(
                out[r.clone()] == data[r],
                "page {i} (kind {}) differs",
                e.kind
            );
        }
    }
}
