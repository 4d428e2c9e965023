//! # vuma-fuzz
//!
//! The bodies of VUMA's fuzz targets, one function per target, shared by the libFuzzer
//! binaries (`fuzz_targets/*.rs`, `cargo fuzz run <target>`, feature `libfuzzer`) and by the
//! plain tests in `tests/targets.rs` (stable Rust: the seed corpus, the kept regressions and
//! ~100k pseudo-random and mutated inputs per target).
//!
//! Every target asserts, for arbitrary input:
//! - no panic, no read or write out of bounds (safe Rust; libFuzzer adds ASan for `zstd`'s C);
//! - the output is exactly the requested length (decoders write into a fixed `dst` of at
//!   most [`MAX_OUT`] bytes, so output is bounded);
//! - a decoder's error is [`Error::Corrupt`] naming its codec, never another variant;
//! - round trip: a valid encoding of arbitrary data decodes to that data; and whatever
//!   arbitrary input decodes to re-encodes and decodes to the same bytes.
//!
//! ## Input layout of the codec targets
//! `[mode u8][len u24 LE][payload…]`: `mode & 1 == 0` decodes `payload` into `len % (MAX_OUT+1)`
//! bytes; `mode & 1 == 1` encodes `payload`, decodes, compares, and when `mode & 2` also
//! flips one byte of the encoding (at `len`) and decodes that (must be `Ok` or `Corrupt`).
//! `mode >> 2` picks the element width of the bitplane and float codecs (`U8`, `Bf16`,
//! `F32`).

use std::sync::OnceLock;

use vuma_core::{Codec, DynDevice, Error, HostDevice, Placement};
use vuma_hyperloop::bitplane::Bitplane;
use vuma_hyperloop::codecs::{Lz4, Snappy, Zstd};
use vuma_hyperloop::encode::{DeviceEncoder, EncoderScratch, Evicted};
use vuma_hyperloop::floatcodec::FloatCodec;
use vuma_hyperloop::page::ElemWidth;
use vuma_hyperloop::planner::{CostModel, DeviceCodec, PageDecision};
use vuma_hyperloop::residency::{CompressOptions, CompressedBuffer, Uploader};

/// Largest output a codec target decodes to (256 KiB).
pub const MAX_OUT: usize = 1 << 18;

/// The targets, by name (what `cargo fuzz run` and `cargo xtask fuzz --target` take).
pub const TARGETS: [&str; 11] = [
    "lz4",
    "zstd",
    "snappy",
    "bitplane",
    "float",
    "lz4block",
    "chunk",
    "cost_model",
    "upload_into",
    "records",
    "encode_jobs",
];

/// Runs target `name` on `data`; `false` when there is no such target.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "lz4" => lz4(data),
        "zstd" => zstd(data),
        "snappy" => snappy(data),
        "bitplane" => bitplane(data),
        "float" => float(data),
        "lz4block" => lz4block(data),
        "chunk" => chunk(data),
        "cost_model" => cost_model(data),
        "upload_into" => upload_into(data),
        "records" => records(data),
        "encode_jobs" => encode_jobs(data),
        _ => return false,
    }
    true
}

/// Splits `[mode][len u24][payload]`.
fn split(data: &[u8]) -> Option<(u8, usize, &[u8])> {
    if data.len() < 4 {
        return None;
    }
    let len = u32::from_le_bytes([data[1], data[2], data[3], 0]) as usize % (MAX_OUT + 1);
    Some((data[0], len, &data[4..]))
}

/// Builds a codec-target input (the seed corpus and the tests use it).
pub fn codec_input(mode: u8, len: usize, payload: &[u8]) -> Vec<u8> {
    let l = (len as u32).to_le_bytes();
    let mut v = vec![mode, l[0], l[1], l[2]];
    v.extend_from_slice(payload);
    v
}

/// The element width selected by `mode`.
pub fn width_of(mode: u8) -> ElemWidth {
    [ElemWidth::U8, ElemWidth::Bf16, ElemWidth::F32][usize::from(mode >> 2) % 3]
}

/// `Ok`, or `Corrupt` naming `name`; anything else fails the target.
fn expect_ok_or_corrupt(name: &str, r: &vuma_core::Result<()>) -> bool {
    match r {
        Ok(()) => true,
        Err(Error::Corrupt { codec, .. }) if *codec == name => false,
        Err(e) => panic!("{name}: decoder returned a non-Corrupt error: {e:?}"),
    }
}

/// Encodes `data`, checks the bound, decodes, compares; returns the encoding.
fn roundtrip(c: &dyn Codec, data: &[u8]) -> Vec<u8> {
    let mut enc = vec![0xA5u8; 3]; // compress appends: a prefix must be left alone
    let n = c
        .compress(data, &mut enc)
        .unwrap_or_else(|e| panic!("{}: compress of {} bytes failed: {e}", c.name(), data.len()));
    assert_eq!(
        enc.len(),
        3 + n,
        "{}: compress returned a wrong length",
        c.name()
    );
    assert_eq!(
        &enc[..3],
        &[0xA5; 3],
        "{}: compress touched the prefix",
        c.name()
    );
    let enc = enc.split_off(3);
    assert!(
        enc.len() <= c.max_compressed_len(data.len()),
        "{}: {} bytes encode to {} > max_compressed_len {}",
        c.name(),
        data.len(),
        enc.len(),
        c.max_compressed_len(data.len())
    );
    let mut out = vec![0x5Au8; data.len()];
    let r = c.decompress(&enc, &mut out);
    assert!(
        r.is_ok(),
        "{}: a valid encoding failed to decode: {r:?}",
        c.name()
    );
    assert!(out == data, "{}: round trip changed the data", c.name());
    enc
}

/// The shared body of the codec targets.
fn codec_target(c: &dyn Codec, data: &[u8]) {
    let Some((mode, len, payload)) = split(data) else {
        return;
    };
    if mode & 1 == 0 {
        let mut out = vec![0u8; len];
        let r = c.decompress(payload, &mut out);
        assert_eq!(out.len(), len);
        if expect_ok_or_corrupt(c.name(), &r) {
            // Whatever decodes must survive a round trip of its own.
            roundtrip(c, &out);
        }
    } else {
        let mut enc = roundtrip(c, payload);
        if mode & 2 != 0 && !enc.is_empty() {
            let at = len % enc.len();
            enc[at] ^= mode | 1;
            let mut out = vec![0u8; payload.len()];
            let r = c.decompress(&enc, &mut out);
            expect_ok_or_corrupt(c.name(), &r);
        }
    }
}

/// LZ4 block codec (`lz4_flex`).
pub fn lz4(data: &[u8]) {
    codec_target(&Lz4, data);
}

/// Zstandard.
pub fn zstd(data: &[u8]) {
    codec_target(&Zstd::default(), data);
}

/// Snappy raw format.
pub fn snappy(data: &[u8]) {
    codec_target(&Snappy, data);
}

/// The bitplane codec's host reference encoder and decoder.
pub fn bitplane(data: &[u8]) {
    let Some((mode, _, _)) = split(data) else {
        return;
    };
    codec_target(&Bitplane::new(width_of(mode)), data);
}

/// The float codec's host reference encoder and decoder (`floatcodec`).
pub fn float(data: &[u8]) {
    let Some((mode, _, _)) = split(data) else {
        return;
    };
    codec_target(&FloatCodec::new(width_of(mode)), data);
}

/// The host reference of the device LZ4 block decoder (`lz4block::decode`), checked against
/// `lz4_flex` on the same input: both must accept the same streams and agree on the output.
pub fn lz4block(data: &[u8]) {
    use vuma_hyperloop::lz4block::decode;
    let Some((mode, len, payload)) = split(data) else {
        return;
    };
    if mode & 1 == 0 {
        let mut out = vec![0u8; len];
        let r = decode(payload, &mut out);
        let ok = expect_ok_or_corrupt("lz4", &r);
        let mut reference = vec![0u8; len];
        let rr = lz4_flex::block::decompress_into(payload, &mut reference);
        let ref_ok = matches!(rr, Ok(n) if n == len);
        if ok && ref_ok {
            assert!(out == reference, "lz4block and lz4_flex decode differently");
        }
        assert!(
            !ref_ok || ok,
            "lz4_flex decodes {len} bytes, lz4block says {r:?}"
        );
    } else {
        let enc = lz4_flex::block::compress(payload);
        let mut out = vec![0x5Au8; payload.len()];
        let r = decode(&enc, &mut out);
        assert!(r.is_ok(), "lz4block rejects lz4_flex's encoding: {r:?}");
        assert!(out == payload, "lz4block round trip changed the data");
        if mode & 2 != 0 && !enc.is_empty() {
            let mut bad = enc;
            let at = len % bad.len();
            bad[at] ^= mode | 1;
            let r = decode(&bad, &mut out);
            expect_ok_or_corrupt("lz4", &r);
        }
    }
}

/// The reference data of the chunk target: 6000 bytes (a zero page, ReLU activations,
/// bf16-like words, an odd tail), 1 KiB pages, two pages per chunk.
pub fn chunk_data() -> &'static [u8] {
    static D: OnceLock<Vec<u8>> = OnceLock::new();
    D.get_or_init(|| {
        let mut d = vec![0u8; 1024];
        d.extend(vuma_hyperloop::datasets::relu_f32(2048, 3));
        d.extend(vuma_hyperloop::datasets::bf16_weights(2048, 4));
        d.extend(vuma_hyperloop::datasets::random_bytes(880, 5));
        d
    })
}

/// The five compressed forms of [`chunk_data`]: planned, all bitplane, all LZ4, all raw,
/// all float-codec pages.
pub fn chunk_bases() -> &'static [CompressedBuffer] {
    static B: OnceLock<Vec<CompressedBuffer>> = OnceLock::new();
    B.get_or_init(|| {
        [
            None,
            Some(PageDecision::Codec(DeviceCodec::Bitplane)),
            Some(PageDecision::Codec(DeviceCodec::Lz4)),
            Some(PageDecision::Raw),
            Some(PageDecision::Codec(DeviceCodec::Float)),
        ]
        .into_iter()
        .map(|force| {
            let mut o = CompressOptions::with_width(ElemWidth::F32);
            o.plan.page_size = 1024;
            o.plan.threads = 1;
            o.chunk_bytes = 2048;
            o.force = force;
            CompressedBuffer::compress(chunk_data(), &o).expect("reference compression")
        })
        .collect()
    })
}

thread_local! {
    /// The host device the chunk targets upload to (one per thread: making one per input
    /// would dominate the run).
    static HOST: HostDevice = HostDevice::new();
}

/// An upload's outcome is `Ok` or `Corrupt` naming a Hyperloop decoder or the chunk checks.
fn assert_ok_or_corrupt<T>(target: &str, r: &vuma_core::Result<T>) {
    match r {
        Ok(_) => {}
        Err(Error::Corrupt { codec, .. })
            if ["bitplane", "lz4", "float", "hyperloop chunk"].contains(codec) => {}
        Err(e) => panic!("{target}: the upload returned a non-Corrupt error: {e:?}"),
    }
}

/// The chunk (page table + pages) parser and decoders, through
/// `CompressedBuffer::decompress_host` (the host variants of the device kernels).
///
/// Input: `[base u8][op u8][…]`; `base % 5` picks a form of [`chunk_data`]; `op & 0x80`
/// re-seals the changed chunks (their checksums recomputed, so the page-table checks and
/// the decoders are reached; without it every changed image must fail its checksum);
/// `op % 3`:
/// 0 — XOR `(chunk u8, pos u16 LE, value u8)` records into the images (the bytes that
/// cross the link); 1 — replace chunk `rest[0]`'s image by `rest[3..]` with
/// `npages = rest[1]` and kind flags `rest[2]`; 2 — truncate or zero-extend chunk `rest[0]`
/// to `rest[1..3]` bytes. After 1 and 2 the host-side metadata (`head_len`, direct runs) is
/// kept within the new image: see [`chunk_unclamped`] for why.
pub fn chunk(data: &[u8]) {
    chunk_impl(data, true);
}

/// [`chunk`] without keeping `head_len` and direct runs inside a shortened image. Known
/// bug (hyperloop, reported): `Uploader::run` slices `image[..head_len]` unchecked and
/// panics; `fuzz/artifacts/known-bugs/chunk/` holds reproducers, replayed by the ignored
/// test `known_bugs` of `tests/targets.rs`.
pub fn chunk_unclamped(data: &[u8]) {
    chunk_impl(data, false);
}

fn chunk_impl(data: &[u8], clamp: bool) {
    if data.len() < 2 {
        return;
    }
    let bases = chunk_bases();
    let mut cb = bases[usize::from(data[0]) % bases.len()].clone();
    let rest = &data[2..];
    let nchunks = cb.chunks().len();
    let mut changed = false;
    let mut resized = None;
    match data[1] % 3 {
        0 => {
            for r in rest.chunks_exact(4) {
                let c = &mut cb.chunks_mut()[usize::from(r[0]) % nchunks];
                let at = usize::from(u16::from_le_bytes([r[1], r[2]])) % c.image.len();
                c.image[at] ^= r[3];
                changed |= r[3] != 0;
            }
        }
        1 if rest.len() >= 3 => {
            let k = usize::from(rest[0]) % nchunks;
            let c = &mut cb.chunks_mut()[k];
            c.image = rest[3..].to_vec();
            c.npages = u32::from(rest[1]);
            c.has_fill = rest[2] & 1 != 0;
            c.has_bitplane = rest[2] & 2 != 0;
            c.has_lz4 = rest[2] & 4 != 0;
            c.has_float = rest[2] & 8 != 0;
            changed = true;
            resized = Some(k);
        }
        2 if rest.len() >= 3 => {
            let k = usize::from(rest[0]) % nchunks;
            let c = &mut cb.chunks_mut()[k];
            let n = usize::from(u16::from_le_bytes([rest[1], rest[2]]));
            changed = n != c.image.len();
            c.image.resize(n, 0);
            resized = Some(k);
        }
        _ => return,
    }
    if let (true, Some(k)) = (clamp, resized) {
        let c = &mut cb.chunks_mut()[k];
        let n = c.image.len();
        c.head_len = c.head_len.min(n);
        c.runs
            .retain(|r| r.src.checked_add(r.len).is_some_and(|e| e <= n as u64));
    }
    let images_before: Vec<u64> = bases[usize::from(data[0]) % bases.len()]
        .chunks()
        .iter()
        .map(|c| c.checksum)
        .collect();
    let image_changed = cb
        .chunks()
        .iter()
        .zip(&images_before)
        .any(|(c, &sum)| vuma_hyperloop::integrity::checksum(&c.image) != sum);
    let sealed = data[1] & 0x80 != 0;
    if sealed {
        for c in cb.chunks_mut() {
            c.seal();
        }
    }
    // Decoded twice, into destinations pre-filled with different patterns: an `Ok` upload
    // must have written every byte (the coverage check's promise), so both agree.
    let len = chunk_data().len();
    let mut outs = Vec::new();
    for pattern in [0x00u8, 0xA5] {
        let (r, out) = HOST.with(|host| {
            let dst = DynDevice::alloc(host, len as u64, Placement::DeviceLocal).expect("alloc");
            host.fill(dst.as_ref(), 0, len as u64, pattern)
                .expect("fill");
            let r = Uploader::new(host).upload(&cb, dst.as_ref());
            let mut out = vec![0u8; len];
            host.read(dst.as_ref(), 0, &mut out).expect("read");
            (r, out)
        });
        assert_ok_or_corrupt("chunk", &r);
        outs.push(r.map(|_| out));
    }
    if let (Ok(a), Ok(b)) = (&outs[0], &outs[1]) {
        assert!(
            a == b,
            "chunk: an accepted upload left destination bytes unwritten"
        );
    }
    assert_eq!(
        outs[0].is_ok(),
        outs[1].is_ok(),
        "chunk: same input, different outcome"
    );
    if image_changed && !sealed {
        assert!(
            outs[0].is_err(),
            "chunk: a changed image passed its checksum"
        );
    }
    if !changed {
        assert!(
            outs[0].is_ok(),
            "chunk: an intact buffer failed to decode: {:?}",
            outs[0]
        );
        assert!(
            outs[0].as_ref().is_ok_and(|o| o == chunk_data()),
            "chunk: an intact buffer decoded wrongly"
        );
    }
    // The host decode verifies too.
    let mut out = vec![0u8; len];
    assert_eq!(cb.decompress_host(&mut out).is_ok(), outs[0].is_ok());
}

/// The cost model's text form (`CostModel::from_text`): `Ok` or `InvalidArgument`, and what
/// parses prints and parses back to the same model.
pub fn cost_model(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match CostModel::from_text(text) {
        Ok(m) => {
            m.validate().expect("a parsed model is valid");
            let back = CostModel::from_text(&m.to_text()).expect("to_text parses back");
            assert_eq!(back, m, "cost model text round trip");
        }
        Err(Error::InvalidArgument(_)) => {}
        Err(e) => panic!("cost_model: unexpected error variant {e:?}"),
    }
}

/// `Uploader::upload_into` at arbitrary destination offsets: `[base u8][flags u8][off u16 LE]
/// [(chunk u8, pos u16 LE, value u8)…]`. A form of [`chunk_data`] (`base % 5`), its images
/// changed by the XOR records and re-sealed when `flags & 1`, uploaded into a destination
/// with guard bytes on both sides at offset `off % 4096`: `Ok` or `Corrupt`; no byte outside
/// `[off, off + len)` ever changes; an unchanged image decodes to its data.
pub fn upload_into(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let bases = chunk_bases();
    let mut cb = bases[usize::from(data[0]) % bases.len()].clone();
    let nchunks = cb.chunks().len();
    let mut changed = false;
    for r in data[4..].chunks_exact(4) {
        let c = &mut cb.chunks_mut()[usize::from(r[0]) % nchunks];
        let at = usize::from(u16::from_le_bytes([r[1], r[2]])) % c.image.len();
        c.image[at] ^= r[3];
        changed |= r[3] != 0;
    }
    if data[1] & 1 != 0 {
        for c in cb.chunks_mut() {
            c.seal();
        }
    }
    const GUARD: u64 = 4096;
    let off = u64::from(u16::from_le_bytes([data[2], data[3]])) % GUARD;
    let len = chunk_data().len() as u64;
    let (r, out) = HOST.with(|host| {
        let total = GUARD + len + GUARD;
        let dst = DynDevice::alloc(host, total, Placement::DeviceLocal).expect("alloc");
        host.fill(dst.as_ref(), 0, total, 0x5A).expect("fill");
        let r = Uploader::new(host).upload_into(&cb, dst.as_ref(), off);
        let mut out = vec![0u8; total as usize];
        host.read(dst.as_ref(), 0, &mut out).expect("read");
        (r, out)
    });
    let (lo, hi) = (off as usize, (off + len) as usize);
    assert!(
        out[..lo].iter().chain(&out[hi..]).all(|&b| b == 0x5A),
        "upload_into: bytes outside the destination range changed"
    );
    assert_ok_or_corrupt("upload_into", &r);
    if !changed {
        assert!(r.is_ok(), "upload_into: an intact buffer failed: {r:?}");
        assert!(
            &out[lo..hi] == chunk_data(),
            "upload_into: an intact buffer decoded wrongly"
        );
    }
}

/// The benchmark-record reader behind `vuma bench --from` (`bench::report::parse`), then
/// the table and the plot of what parses: `Ok` or a `ParseError`, never a panic, and a
/// time limit (libFuzzer's `-timeout`) against quadratic work.
pub fn records(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(entries) = vuma_core::bench::report::parse(text) {
        let table = vuma_core::bench::report::render_table(&entries);
        let svg = vuma_core::bench::svg::render(&entries);
        assert!(entries.is_empty() || !table.is_empty());
        assert!(svg.starts_with("<svg"), "records: the plot is not an SVG");
    }
}

thread_local! {
    /// Scratch and spare outputs of the device encoder, kept between inputs (as the memory
    /// manager keeps them): a later eviction reuses buffers an earlier one left dirty.
    static ENC_SCRATCH: std::cell::RefCell<Option<EncoderScratch>> =
        const { std::cell::RefCell::new(None) };
}

/// Page sizes `encode_jobs` picks from (some refused on purpose).
const ENC_PAGE_SIZES: [usize; 10] = [1024, 2048, 3072, 4096, 8192, 65536, 1000, 0, 131072, 1536];

/// Most data bytes `encode_jobs` evicts.
const ENC_MAX_DATA: usize = 1 << 17;

/// The parameters `encode_jobs` decodes from its header.
struct EncParams {
    opts: CompressOptions,
    home: Placement,
    offset: u64,
    tables: bool,
    reuse: bool,
    /// Whether the eviction must succeed (geometry, codec and length accepted).
    valid: bool,
}

/// Decodes the header of `encode_jobs` (`data` holds at least 7 bytes).
fn enc_params(data: &[u8], len: usize) -> EncParams {
    let [mode, ps, width, chunk, direct, off, ..] = *data else {
        unreachable!("caller checks the header length");
    };
    let ps = ENC_PAGE_SIZES[usize::from(ps) % ENC_PAGE_SIZES.len()];
    let mut o = CompressOptions::with_width(width_of(width << 2));
    o.plan.page_size = ps;
    o.plan.threads = 1;
    o.chunk_bytes = if chunk & 0x80 != 0 {
        usize::from(chunk & 0x7F) * 97
    } else {
        ps * (1 + usize::from(chunk) % 8)
    };
    o.direct_min_bytes = [0, 1, ps, 2 * ps, 1 << 20][usize::from(direct) % 5];
    o.force = match (mode >> 1) & 3 {
        1 => Some(PageDecision::Codec(DeviceCodec::Bitplane)),
        3 => Some(PageDecision::Raw),
        _ => None,
    };
    let w = o.plan.width.bytes();
    let valid = len > 0
        && ps > 0
        && ps.is_multiple_of(1024)
        && ps <= 65536
        && ps.is_multiple_of(w)
        && o.chunk_bytes >= ps
        && o.force != Some(PageDecision::Raw);
    EncParams {
        opts: o,
        home: if mode & 1 == 0 {
            Placement::Staging
        } else {
            Placement::HostMapped
        },
        offset: u64::from(off),
        tables: mode & 8 != 0,
        reuse: mode & 16 != 0,
        valid,
    }
}

/// The device encoder's host side (`DeviceEncoder::evict_range` on the host device: the
/// size pass, the job table built on the host from its output, the write pass), with
/// arbitrary data and parameters.
///
/// Input: `[mode u8][page u8][width u8][chunk u8][direct u8][offset u8][nx u8]
/// [(pos u16 LE, value u8) × nx][data…]`. `page` picks a page size (some refused), `width`
/// an element width, `chunk` the chunk size (`& 0x80`: an arbitrary one, maybe below the
/// page size), `direct` the direct-run threshold, `offset` where the data starts in the
/// source buffer; `mode & 1` the home (staging or mapped), `(mode >> 1) & 3` the forced
/// codec (none, bitplane, none, raw: refused), `mode & 16` reuses the scratch and spare
/// outputs of earlier inputs.
///
/// - `mode & 8 == 0`: the eviction fails with `InvalidArgument` or `ZeroSize` exactly when
///   a parameter is refused; otherwise its images equal the host encoder's (bitplane
///   forced), upload back to the data (nothing past it written) and decode on the host to
///   it.
/// - `mode & 8`: the passes one by one, the XOR records applied to the page sums (before
///   the job table is built from them), then the jobs, records and statistics (before the
///   write pass): the job table is `Ok` or a `Kernel` error, the write pass flags bad jobs
///   in its status and never writes outside its output; untouched tables pass cleanly.
pub fn encode_jobs(data: &[u8]) {
    if data.len() < 7 {
        return;
    }
    let nx = usize::from(data[6]);
    let xors: Vec<(usize, u8)> = data[7..]
        .chunks_exact(3)
        .take(nx)
        .map(|r| (usize::from(u16::from_le_bytes([r[0], r[1]])), r[2]))
        .collect();
    let body = &data[(7 + 3 * xors.len()).min(data.len())..];
    let body = &body[..body.len().min(ENC_MAX_DATA)];
    let p = enc_params(data, body.len());
    if p.tables {
        if p.valid {
            encode_tables(body, &p, &xors);
        }
        return;
    }
    HOST.with(|host| {
        let scratch = if p.reuse {
            ENC_SCRATCH
                .with(|s| s.borrow_mut().take())
                .unwrap_or_default()
        } else {
            EncoderScratch::default()
        };
        let mut enc = DeviceEncoder::with_scratch(host, scratch);
        let len = body.len() as u64;
        let total = p.offset + len.max(1) + 64;
        let src = DynDevice::alloc(host, total, Placement::DeviceLocal).expect("alloc");
        host.fill(src.as_ref(), 0, total, 0xEE).expect("fill");
        host.write(src.as_ref(), p.offset, body).expect("write");
        let r = enc.evict_range(src.as_ref(), p.offset, len, &p.opts, p.home);
        let ev = match r {
            Ok(ev) => {
                assert!(p.valid, "encode_jobs: a refused parameter was accepted");
                ev
            }
            Err(e) => {
                assert!(!p.valid, "encode_jobs: a valid eviction failed: {e:?}");
                assert!(
                    matches!(e, Error::InvalidArgument(_) | Error::ZeroSize { .. }),
                    "encode_jobs: unexpected error variant {e:?}"
                );
                return;
            }
        };
        check_evicted(host, body, &p, &ev);
        let mut scratch = enc.into_scratch();
        if p.reuse {
            scratch.keep_spare(p.home, ev.into_buffer(), 2);
            ENC_SCRATCH.with(|s| *s.borrow_mut() = Some(scratch));
        }
    });
}

/// Checks an eviction of `data` against the host encoder and the decoders.
fn check_evicted(host: &HostDevice, data: &[u8], p: &EncParams, ev: &Evicted) {
    let mut forced = p.opts.clone();
    forced.force = Some(PageDecision::Codec(DeviceCodec::Bitplane));
    let want = CompressedBuffer::compress(data, &forced).expect("host encoder");
    let got = ev.to_compressed(host).expect("evicted images read back");
    assert!(
        got.chunks() == want.chunks(),
        "encode_jobs: the evicted images differ from the host encoder's"
    );
    assert_eq!(ev.stored_bytes(), want.stored_bytes());
    assert_eq!(got.summary().bytes_sent, want.summary().bytes_sent);
    let len = data.len() as u64;
    let dst = DynDevice::alloc(host, len + 64, Placement::DeviceLocal).expect("alloc");
    host.fill(dst.as_ref(), 0, len + 64, 0xCD).expect("fill");
    Uploader::new(host)
        .upload_pinned(ev.pinned(), dst.as_ref())
        .expect("an evicted buffer uploads");
    let mut back = vec![0u8; data.len() + 64];
    host.read(dst.as_ref(), 0, &mut back).expect("read");
    assert!(
        back[data.len()..].iter().all(|&b| b == 0xCD),
        "encode_jobs: the upload wrote past the data"
    );
    assert!(
        &back[..data.len()] == data,
        "encode_jobs: the evicted buffer uploads to other bytes"
    );
    let mut out = vec![0u8; data.len()];
    got.decompress_host(&mut out).expect("host decode");
    assert!(out == data, "encode_jobs: the host decode differs");
}

/// XORs the records whose position falls in `at..at + b.len()` (of the concatenated
/// tables) into `b`; returns whether a byte changed.
fn xor_into(b: &mut [u8], at: usize, total: usize, xors: &[(usize, u8)]) -> bool {
    let mut changed = false;
    for &(pos, v) in xors {
        let pos = pos % total.max(1);
        if (at..at + b.len()).contains(&pos) && v != 0 {
            b[pos - at] ^= v;
            changed = true;
        }
    }
    changed
}

/// `b[0..n]` as a kernel argument.
fn buf(
    b: &dyn vuma_core::DynBuffer,
    n: u64,
    access: vuma_core::AccessMode,
) -> vuma_core::Arg<'_, dyn vuma_core::DynBuffer> {
    vuma_core::Arg::Buffer {
        buffer: b,
        offset: 0,
        len: n,
        access,
    }
}

/// The `mode & 8` half of [`encode_jobs`]: the encoder's passes one by one on the host
/// device, with changed tables.
fn encode_tables(data: &[u8], p: &EncParams, xors: &[(usize, u8)]) {
    use vuma_core::{AccessMode, Arg, Scalar};
    use vuma_hyperloop::encode::{self, JOB_BYTES, REC};
    let o = &p.opts;
    let (ps, width) = (o.plan.page_size, o.plan.width);
    let len = data.len() as u64;
    let np = data.len().div_ceil(ps);
    let sc = |v: u32| Arg::Scalar(Scalar::U32(v));
    HOST.with(|host| {
        let alloc =
            |n: u64| DynDevice::alloc(host, n.max(1), Placement::DeviceLocal).expect("alloc");
        let src = alloc(len);
        host.write(src.as_ref(), 0, data).expect("write");
        let rec = alloc((np * REC * 4) as u64);
        let stats = alloc(encode::stats_bytes(np, ps, width));
        let sums = alloc(8 * np as u64);
        host.fill(sums.as_ref(), 0, 8 * np as u64, 0).expect("fill");
        let grid = encode::encode_grid(np as u32, ps, width);
        let w = width.bytes() as u32;
        host.launch(
            &encode::encoders().size,
            &grid,
            &[
                buf(src.as_ref(), len, AccessMode::Read),
                Arg::Scalar(Scalar::U64(len)),
                Arg::whole(rec.as_ref(), AccessMode::ReadWrite),
                Arg::whole(stats.as_ref(), AccessMode::ReadWrite),
                buf(sums.as_ref(), 8 * np as u64, AccessMode::ReadWrite),
                sc(np as u32),
                sc(ps as u32),
                sc(w),
            ],
        )
        .expect("size pass");
        let mut sum = vec![0u8; 8 * np];
        host.read(sums.as_ref(), 0, &mut sum).expect("read");
        let mut r = vec![0u8; rec.len() as usize];
        host.read(rec.as_ref(), 0, &mut r).expect("read");
        let mut st = vec![0u8; stats.len() as usize];
        host.read(stats.as_ref(), 0, &mut st).expect("read");
        // The tables in one row: sums, jobs, records, statistics.
        let total = sum.len() + np * JOB_BYTES + r.len() + st.len();
        let mut changed = xor_into(&mut sum, 0, total, xors);
        let table = match vuma_hyperloop::encode::job_table(&sum, len, o) {
            Ok(t) => t,
            Err(Error::Kernel { .. }) if changed => return,
            Err(e) => panic!("encode_jobs: job_table failed: {e:?}"),
        };
        let mut jobs = table.jobs.clone();
        changed |= xor_into(&mut jobs, sum.len(), total, xors);
        let at = sum.len() + jobs.len();
        changed |= xor_into(&mut r, at, total, xors);
        changed |= xor_into(&mut st, at + r.len(), total, xors);
        host.write(rec.as_ref(), 0, &r).expect("write");
        host.write(stats.as_ref(), 0, &st).expect("write");
        let jb = alloc(jobs.len() as u64);
        host.write(jb.as_ref(), 0, &jobs).expect("write");
        const GUARD: u64 = 256;
        let out_len = table.total;
        let out = alloc(GUARD + out_len + GUARD);
        host.fill(out.as_ref(), 0, GUARD + out_len + GUARD, 0xAB)
            .expect("fill");
        let status = alloc(8);
        let mut init = [0u8; 8];
        init[4..].copy_from_slice(&u32::MAX.to_le_bytes());
        host.write(status.as_ref(), 0, &init).expect("write");
        host.launch(
            &encode::encoders().write,
            &grid,
            &[
                buf(src.as_ref(), len, AccessMode::Read),
                Arg::Scalar(Scalar::U64(len)),
                Arg::whole(rec.as_ref(), AccessMode::Read),
                Arg::whole(stats.as_ref(), AccessMode::Read),
                buf(jb.as_ref(), jobs.len() as u64, AccessMode::Read),
                Arg::Buffer {
                    buffer: out.as_ref(),
                    offset: GUARD,
                    len: out_len,
                    access: AccessMode::ReadWrite,
                },
                Arg::Scalar(Scalar::U64(out_len)),
                Arg::whole(status.as_ref(), AccessMode::ReadWrite),
                sc(np as u32),
                sc(ps as u32),
                sc(w),
                sc(0),
            ],
        )
        .expect("write pass");
        let mut s = [0u8; 8];
        host.read(status.as_ref(), 0, &mut s).expect("read");
        let mut back = vec![0u8; (GUARD + out_len + GUARD) as usize];
        host.read(out.as_ref(), 0, &mut back).expect("read");
        let (lo, hi) = (GUARD as usize, (GUARD + out_len) as usize);
        assert!(
            back[..lo].iter().chain(&back[hi..]).all(|&b| b == 0xAB),
            "encode_jobs: the write pass wrote outside its output"
        );
        if !changed {
            assert_eq!(s[..4], [0; 4], "encode_jobs: untouched tables were flagged");
            // Compare with the host encoder's images, chunk by chunk.
            let mut forced = o.clone();
            forced.force = Some(PageDecision::Codec(DeviceCodec::Bitplane));
            let want = CompressedBuffer::compress(data, &forced).expect("host encoder");
            for (c, &off) in want.chunks().iter().zip(&table.offsets) {
                let at = lo + off as usize;
                assert!(
                    back[at..at + c.image.len()] == c.image[..],
                    "encode_jobs: the write pass's image differs from the host encoder's"
                );
            }
        }
    });
}
