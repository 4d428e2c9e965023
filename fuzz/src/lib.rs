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
use vuma_hyperloop::floatcodec::FloatCodec;
use vuma_hyperloop::page::ElemWidth;
use vuma_hyperloop::planner::{CostModel, DeviceCodec, PageDecision};
use vuma_hyperloop::residency::{CompressOptions, CompressedBuffer, Uploader};

/// Largest output a codec target decodes to (256 KiB).
pub const MAX_OUT: usize = 1 << 18;

/// The targets, by name (what `cargo fuzz run` and `cargo xtask fuzz --target` take).
pub const TARGETS: [&str; 10] = [
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
