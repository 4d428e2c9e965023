//! Hyperloop on Vulkan (lavapipe in CI, real GPUs in the hardware tier): the SPIR-V decoders
//! against the host reference, bit-exactly, on every data set, every forced decision, odd
//! sizes and every home of the compressed bytes; corrupt and truncated pages must get the
//! same typed error as on the host, and bytes around the destination range stay untouched.
//! Every test ends with zero validation errors when the validation layer is active
//! (`VUMA_VK_VALIDATION=1`).
//!
//! Without a Vulkan device these tests print a SKIP line and pass; with
//! `VUMA_REQUIRE_VULKAN=1` (or `VUMA_REQUIRE_HW=1`) they fail instead.
//!
//! With `VUMA_UNDER_SANITIZER=1` (the bundle's sanitizer passes; kept symmetric with the
//! CUDA tests) the at-scale data sets and the decode-rate sample shrink 16-fold (see
//! `common::scaled`); the at-scale test then runs on CPU devices (lavapipe) too.

mod common;
mod vk;
// Only the mixed-kind chunk and the launch of the other decoders are used here (the float
// decoder's own tests are in `vulkan_float.rs`).
#[allow(dead_code)]
mod floatupload;

use vk::{assert_clean, vulkan};
use vuma_core::{DynBuffer, DynDevice, HostDevice, Placement};
use vuma_hyperloop::datasets::{Dataset, SplitMix64};
use vuma_hyperloop::encode::{
    encode_grid, encoders, stats_bytes, DeviceEncoder, JOB_BYTES, REC, STAT,
};
use vuma_hyperloop::kernels::{Entry, PageKind, ENTRY_BYTES};
use vuma_hyperloop::page::ElemWidth;
use vuma_hyperloop::planner::{DeviceCodec, PageDecision};
use vuma_hyperloop::residency::{
    CompressOptions, CompressedBuffer, DeviceCompressed, PinnedCompressed, Uploader,
};
use vuma_vulkan::VulkanDevice;

/// Bytes after the data (and, through a dst offset, before it) that must stay untouched.
const GUARD: u64 = 4099;
const PATTERN: u8 = 0xCD;

/// Decodes on `dev` into a pattern-filled destination with `GUARD` spare bytes; checks the
/// spare bytes and returns the data bytes, or the error text.
fn decode_into(
    dev: &dyn DynDevice,
    cb: &CompressedBuffer,
    what: &str,
    f: &mut dyn FnMut(&mut Uploader<'_>, &dyn DynBuffer) -> vuma_core::Result<()>,
) -> Result<Vec<u8>, String> {
    common::decode_into(dev, cb.len(), GUARD, what, f)
}

/// Decodes `cb` on `dev` through every home Vulkan supports; returns the output per home.
fn all_homes(dev: &dyn DynDevice, cb: &CompressedBuffer) -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let mut ok = |name: &'static str, r: Result<Vec<u8>, String>| {
        out.push((name, r.unwrap_or_else(|e| panic!("{name}: {e}"))));
    };
    ok(
        "pageable",
        decode_into(dev, cb, "pageable", &mut |u, d| u.upload(cb, d).map(drop)),
    );
    // A destination of exactly the data's length (no spare word at the end).
    {
        let dst = dev.alloc(cb.len(), Placement::DeviceLocal).unwrap();
        dev.fill(dst.as_ref(), 0, cb.len(), PATTERN).unwrap();
        Uploader::new(dev).upload(cb, dst.as_ref()).unwrap();
        let mut back = vec![0u8; cb.len() as usize];
        dev.read(dst.as_ref(), 0, &mut back).unwrap();
        ok("pageable, exact dst", Ok(back));
    }
    for (name, placement) in [
        ("pinned", Placement::Staging),
        ("mapped", Placement::HostMapped),
        ("resident", Placement::DeviceLocal),
    ] {
        if !dev.supports(placement) {
            eprintln!("SKIP home {name}: the device does not support {placement:?}");
            continue;
        }
        let r = match placement {
            Placement::Staging => {
                let p = PinnedCompressed::pin(dev, cb).unwrap();
                decode_into(dev, cb, name, &mut |u, d| u.upload_pinned(&p, d).map(drop))
            }
            Placement::HostMapped => {
                let p = PinnedCompressed::map(dev, cb).unwrap();
                decode_into(dev, cb, name, &mut |u, d| u.upload_pinned(&p, d).map(drop))
            }
            _ => {
                let p = DeviceCompressed::new(dev, cb).unwrap();
                decode_into(dev, cb, name, &mut |u, d| {
                    u.decode_resident(&p, d).map(drop)
                })
            }
        };
        ok(name, r);
    }
    out
}

/// Host decode of `cb` (the reference).
fn host_decode(cb: &CompressedBuffer) -> Vec<u8> {
    let mut out = vec![0u8; cb.len() as usize];
    cb.decompress_host(&mut out).unwrap();
    out
}

/// Data that exercises the LZ4 decoder's corners: matches with offsets 1, 2, 3, 5 and 7
/// (overlapping copies), long literal runs (length extensions), long matches.
fn lz4_corners(len: usize, seed: u64) -> Vec<u8> {
    let mut r = SplitMix64::new(seed);
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        let kind = r.next_u64() % 4;
        let n = 1 + (r.next_u64() % 700) as usize;
        match kind {
            0 => v.extend((0..n).map(|_| r.next_u64() as u8)),
            1 => {
                let period = [1usize, 2, 3, 5, 7][(r.next_u64() % 5) as usize];
                let pat: Vec<u8> = (0..period).map(|_| r.next_u64() as u8).collect();
                v.extend((0..n * 3).map(|i| pat[i % period]));
            }
            2 => {
                // Repeat an earlier stretch (a far match).
                if v.len() > 64 {
                    let from = (r.next_u64() as usize) % (v.len() - 32);
                    let take = n.min(v.len() - from);
                    let piece = v[from..from + take].to_vec();
                    v.extend(piece);
                }
            }
            _ => v.extend(std::iter::repeat_n(0u8, n * 5)),
        }
    }
    v.truncate(len);
    v
}

/// The device codecs Vulkan decodes (those whose decoder has a SPIR-V variant: all of them).
fn vulkan_codecs() -> impl Iterator<Item = DeviceCodec> {
    DeviceCodec::ALL
        .into_iter()
        .filter(|c| c.decodes_on(vuma_core::Backend::Vulkan))
}

fn decisions() -> Vec<Option<PageDecision>> {
    let mut forced = vec![None, Some(PageDecision::Zero), Some(PageDecision::Raw)];
    forced.extend(vulkan_codecs().map(|c| Some(PageDecision::Codec(c))));
    forced
}

fn check_all(dev: &VulkanDevice, name: &str, data: &[u8], width: ElemWidth) {
    for force in decisions() {
        for direct_min in [1usize << 20, 64 << 10] {
            let mut opts = CompressOptions::with_width(width);
            opts.chunk_bytes = 256 << 10;
            opts.force = force;
            opts.direct_min_bytes = direct_min;
            let cb = CompressedBuffer::compress(data, &opts).unwrap();
            let reference = host_decode(&cb);
            if force != Some(PageDecision::Zero) {
                assert!(reference == data, "{name} {force:?}: host decode differs");
            }
            for (home, out) in all_homes(dev, &cb) {
                assert!(
                    out == reference,
                    "{name} ({} bytes) {force:?} direct_min {direct_min} via {home}: device \
                     output differs from the host at byte {:?}",
                    data.len(),
                    out.iter().zip(&reference).position(|(a, b)| a != b)
                );
            }
            eprintln!(
                "ok {name} ({} bytes) {force:?} direct_min {direct_min}: {}",
                data.len(),
                cb.summary()
            );
        }
    }
}

#[test]
fn vulkan_decoders_match_the_host_on_every_dataset() {
    let Some(dev) = vulkan() else { return };
    for ds in Dataset::ALL {
        // A final partial page whose length is not a multiple of 4 (nor of 2).
        let data = ds.generate((5 << 16) + 1023 + 2 + 1, 5);
        check_all(&dev, ds.name(), &data, ds.width());
    }
    assert_clean(&dev);
}

#[test]
fn vulkan_decoders_match_the_host_on_odd_sizes_and_lz4_corners() {
    let Some(dev) = vulkan() else { return };
    for len in [1usize, 2, 3, 5, 7, 1021, 4097, 65535, 65537, 3 * 65536 + 6] {
        for ds in [Dataset::ReluF32, Dataset::Bf16Weights, Dataset::ZeroHeavy] {
            let data = ds.generate(len, len as u64);
            for width in [ds.width(), ElemWidth::U8] {
                for force in [None, Some(PageDecision::Codec(DeviceCodec::Bitplane))] {
                    let mut opts = CompressOptions::with_width(width);
                    opts.chunk_bytes = 128 << 10;
                    opts.force = force;
                    let cb = CompressedBuffer::compress(&data, &opts).unwrap();
                    for (home, out) in all_homes(&dev, &cb) {
                        assert!(
                            out == data,
                            "{} len {len} {width:?} {force:?} via {home}: output differs",
                            ds.name()
                        );
                    }
                }
            }
        }
        let data = lz4_corners(len, 11);
        let mut opts = CompressOptions::with_width(ElemWidth::U8);
        opts.force = Some(PageDecision::Codec(DeviceCodec::Lz4));
        let cb = CompressedBuffer::compress(&data, &opts).unwrap();
        for (home, out) in all_homes(&dev, &cb) {
            assert!(
                out == data,
                "lz4 corners len {len} via {home}: output differs"
            );
        }
    }
    let data = lz4_corners(6 << 16, 3);
    check_all(&dev, "lz4_corners", &data, ElemWidth::U8);
    assert_clean(&dev);
}

/// Runs `cb` (pageable) on `dev`: the error text or the output; guard bytes checked.
fn outcome(dev: &dyn DynDevice, cb: &CompressedBuffer) -> Result<Vec<u8>, String> {
    decode_into(dev, cb, "corrupt", &mut |u, d| {
        u.upload_unverified(cb, d).map(drop)
    })
}

fn same_outcome(host: &HostDevice, dev: &VulkanDevice, cb: &CompressedBuffer, what: &str) -> bool {
    let h = outcome(host, cb);
    let d = outcome(dev, cb);
    // The homes that read the images in place see the same bytes.
    // Placing images on the device verifies them: re-sealed (the checksum does not change
    // what decodes), they are placed unless their page tables fail the coverage check.
    if dev.supports(Placement::DeviceLocal) {
        let mut sealed = cb.clone();
        for c in sealed.chunks_mut() {
            c.seal();
        }
        match DeviceCompressed::new(dev, &sealed) {
            Ok(resident) => {
                let r = decode_into(dev, cb, what, &mut |u, b| {
                    u.decode_resident(&resident, b).map(drop)
                });
                assert_eq!(
                    r.as_ref().err(),
                    d.as_ref().err(),
                    "{what}: resident and pageable homes disagree"
                );
            }
            Err(e) => assert!(
                matches!(e, vuma_core::Error::Corrupt { .. }) && sealed.verify().is_err(),
                "{what}: placing failed with {e}"
            ),
        }
    }
    match (&h, &d) {
        (Err(a), Err(b)) => {
            assert_eq!(a, b, "{what}: host and device flag differently");
            true
        }
        (Ok(a), Ok(b)) => {
            assert!(a == b, "{what}: outputs differ");
            false
        }
        _ => panic!(
            "{what}: host {:?} vs device {:?}",
            h.as_ref().err(),
            d.as_ref().err()
        ),
    }
}

#[test]
fn vulkan_flags_exactly_what_the_host_flags() {
    let Some(dev) = vulkan() else { return };
    let host = HostDevice::new();
    let mut rng = SplitMix64::new(1234);
    for (ds, codec, kind) in [
        (Dataset::ReluF32, DeviceCodec::Bitplane, PageKind::Bitplane),
        (
            Dataset::Bf16Weights,
            DeviceCodec::Bitplane,
            PageKind::Bitplane,
        ),
        (Dataset::Random, DeviceCodec::Bitplane, PageKind::Bitplane),
        (Dataset::ReluF32, DeviceCodec::Lz4, PageKind::Lz4),
        (Dataset::ZeroHeavy, DeviceCodec::Lz4, PageKind::Lz4),
    ] {
        // A partial last page of odd length; random bytes in 4 bits (so that bitplane pages
        // stay coded), LZ4's corner cases in place of the zero-heavy pages.
        let len = (4 << 16) + 333;
        let data = match ds {
            Dataset::Random => ds.generate(len, 3).iter().map(|b| b & 0x0F).collect(),
            Dataset::ZeroHeavy => lz4_corners(len, 3),
            _ => ds.generate(len, 3),
        };
        let mut opts = CompressOptions::with_width(ds.width());
        opts.force = Some(PageDecision::Codec(codec));
        let clean = CompressedBuffer::compress(&data, &opts).unwrap();
        let entries: Vec<Entry> = {
            let c = &clean.chunks()[0];
            (0..c.npages as usize)
                .map(|i| Entry::read(&c.image, i))
                .collect()
        };
        let coded: Vec<Entry> = entries
            .iter()
            .copied()
            .filter(|e| e.kind == kind as u8)
            .collect();
        assert!(coded.len() >= 2, "{}: too few coded pages", ds.name());
        let what = format!("{} {}", ds.name(), codec.name());
        let (mut flagged, mut trials) = (0, 0);
        for t in 0..24 {
            let mut cb = clean.clone();
            let e = coded[(rng.next_u64() as usize) % coded.len()];
            let img = &mut cb.chunks_mut()[0].image;
            // Corrupt the first bytes (headers, offset tables, tokens) more often.
            let span = if t % 2 == 0 {
                64.min(e.src_len as usize)
            } else {
                e.src_len as usize
            };
            for _ in 0..1 + rng.next_u64() % 3 {
                let at = e.src_off as usize + (rng.next_u64() as usize) % span;
                img[at] ^= 1 << (rng.next_u64() % 8);
            }
            trials += 1;
            if same_outcome(&host, &dev, &cb, &format!("{what} flip {t}")) {
                flagged += 1;
            }
        }
        eprintln!("{what}: {flagged}/{trials} corruptions flagged identically");
        assert!(flagged > trials / 4, "{what}: too few corruptions detected");
        // Table corruption and truncation: every edit must be flagged, identically.
        let last = *coded.last().unwrap();
        let edits: Vec<(&str, Entry)> = vec![
            (
                "src_off out of the chunk",
                Entry {
                    src_off: 1 << 40,
                    ..coded[1]
                },
            ),
            (
                "dst past the data",
                Entry {
                    dst_off: data.len() as u64 - 100,
                    ..coded[1]
                },
            ),
            (
                "unknown kind",
                Entry {
                    kind: 7,
                    ..coded[1]
                },
            ),
            (
                "kind not launched",
                Entry {
                    kind: if kind == PageKind::Lz4 {
                        PageKind::Bitplane as u8
                    } else {
                        PageKind::Lz4 as u8
                    },
                    ..coded[1]
                },
            ),
            (
                "truncated page",
                Entry {
                    src_len: coded[1].src_len - 1,
                    ..coded[1]
                },
            ),
            (
                "truncated to nothing",
                Entry {
                    src_len: 0,
                    ..coded[1]
                },
            ),
            (
                "short destination",
                Entry {
                    dst_len: coded[1].dst_len - 4,
                    ..coded[1]
                },
            ),
            (
                "empty destination",
                Entry {
                    dst_len: 0,
                    ..coded[1]
                },
            ),
            (
                "page too large",
                Entry {
                    dst_len: 65536 + 4,
                    ..coded[1]
                },
            ),
            (
                "last page one byte longer",
                Entry {
                    dst_len: last.dst_len + 1,
                    ..last
                },
            ),
            (
                "bad width",
                Entry {
                    width: 3,
                    ..coded[1]
                },
            ),
            (
                "zero page with data",
                Entry {
                    kind: PageKind::Zero as u8,
                    ..coded[1]
                },
            ),
            (
                "raw page of the wrong size",
                Entry {
                    kind: PageKind::Raw as u8,
                    ..coded[1]
                },
            ),
            (
                "src_off past the chunk by one",
                Entry {
                    src_off: clean.chunks()[0].head_len as u64 - u64::from(coded[1].src_len) + 1,
                    ..coded[1]
                },
            ),
            (
                "dst_off with the high word set",
                Entry {
                    dst_off: coded[1].dst_off | (1 << 32),
                    ..coded[1]
                },
            ),
        ];
        let at1 = entries.iter().position(|x| *x == coded[1]).unwrap();
        let at_last = entries.iter().position(|x| *x == last).unwrap();
        for (name, e) in edits {
            let mut cb = clean.clone();
            let at = if e.dst_off == last.dst_off {
                at_last
            } else {
                at1
            };
            let c = &mut cb.chunks_mut()[0];
            if matches!(name, "zero page with data" | "raw page of the wrong size") {
                c.has_fill = true;
            }
            c.image[at * ENTRY_BYTES..(at + 1) * ENTRY_BYTES].copy_from_slice(&e.to_bytes());
            let what = format!("{what}: {name}");
            if name == "bad width" && kind == PageKind::Lz4 {
                // LZ4 pages ignore the width.
                same_outcome(&host, &dev, &cb, &what);
                continue;
            }
            assert!(same_outcome(&host, &dev, &cb, &what), "{what}: not flagged");
        }
        // A head shorter than its page table, and a head cut short.
        let mut cb = clean.clone();
        let c = &mut cb.chunks_mut()[0];
        c.head_len = c.npages as usize * ENTRY_BYTES - 16;
        assert!(same_outcome(&host, &dev, &cb, &format!("{what}: npages")));
        let mut cb = clean.clone();
        let c = &mut cb.chunks_mut()[0];
        c.head_len = (c.head_len - 4096).next_multiple_of(16);
        assert!(same_outcome(&host, &dev, &cb, &format!("{what}: head cut")));
    }
    assert_clean(&dev);
}

#[test]
fn vulkan_decoders_leave_bytes_outside_their_pages() {
    // Destination ranges that start and end inside words: every other page is dropped from
    // the table (marked direct, with no run: nothing writes it) and the others are moved
    // by 1, 3, 5 bytes into the gap, so pattern bytes share words with page bytes.
    let Some(dev) = vulkan() else { return };
    let host = HostDevice::new();
    let data = Dataset::ReluF32.generate(6 << 16, 9);
    for force in [
        PageDecision::Raw,
        PageDecision::Codec(DeviceCodec::Bitplane),
        PageDecision::Codec(DeviceCodec::Lz4),
    ] {
        let mut opts = CompressOptions::with_width(ElemWidth::F32);
        opts.force = Some(force);
        let mut cb = CompressedBuffer::compress(&data, &opts).unwrap();
        let c = &mut cb.chunks_mut()[0];
        assert!(c.runs.is_empty(), "{force:?}: no direct runs expected");
        for i in 0..c.npages as usize {
            let mut e = Entry::read(&c.image, i);
            if i % 2 == 1 {
                e.kind = PageKind::Direct as u8;
            } else {
                e.dst_off += 1 + i as u64;
            }
            c.image[i * ENTRY_BYTES..(i + 1) * ENTRY_BYTES].copy_from_slice(&e.to_bytes());
        }
        let h = outcome(&host, &cb);
        let d = outcome(&dev, &cb);
        assert!(h.is_ok(), "{force:?}: {h:?}");
        assert!(h == d, "{force:?}: moved pages differ from the host");
    }
    assert_clean(&dev);
}

/// Whether `dev` is a real GPU (lavapipe is a CPU device: it runs the small cases only).
fn is_gpu(dev: &VulkanDevice) -> bool {
    DynDevice::info(dev).kind != vuma_core::DeviceKind::Cpu
}

#[test]
fn vulkan_decoders_match_the_host_at_scale() {
    let Some(dev) = vulkan() else { return };
    if !is_gpu(&dev) && !common::under_sanitizer() {
        eprintln!("SKIP: 8 MiB data sets run on GPUs only (this device is a CPU)");
        return;
    }
    for ds in Dataset::ALL {
        let len = common::scaled(
            (8 << 20)
                + if ds.width() == ElemWidth::U8 {
                    4099
                } else {
                    4096 + 6
                },
        );
        let data = ds.generate(len, 5);
        let mut forced = vec![None];
        forced.extend(vulkan_codecs().map(|c| Some(PageDecision::Codec(c))));
        for force in forced {
            let mut opts = CompressOptions::with_width(ds.width());
            opts.chunk_bytes = common::scaled_chunk(2 << 20);
            opts.direct_min_bytes = common::scaled_chunk(opts.direct_min_bytes);
            opts.force = force;
            let cb = CompressedBuffer::compress(&data, &opts).unwrap();
            assert!(
                cb.chunks().len() >= 2,
                "{} {force:?}: one chunk only (the uploads must span several)",
                ds.name()
            );
            for (home, out) in all_homes(&dev, &cb) {
                assert!(
                    out == data,
                    "{} {force:?} via {home}: device output differs",
                    ds.name()
                );
            }
            eprintln!("ok {} {force:?}: {}", ds.name(), cb.summary());
        }
    }
    assert_clean(&dev);
}

#[test]
fn vulkan_decode_rates_are_measured() {
    let Some(dev) = vulkan() else { return };
    let gpu = is_gpu(&dev);
    let prior = vuma_hyperloop::CostModel::for_device(DynDevice::info(&dev));
    let mut m = prior.clone();
    let (sample, iters) = common::rate_sample(if gpu { (64 << 20, 5) } else { (1 << 20, 1) });
    vuma_hyperloop::residency::measure_device_decode(&dev, &mut m, sample, iters).unwrap();
    eprintln!("measured cost model:\n{}", m.to_text());
    common::assert_rates_measured(&prior, &m);
    assert_clean(&dev);
}

/// The Vulkan decoders, launched on a chunk of every kind with the float bit set (as the
/// uploader of a device with a float decoder launches them): they leave the float pages
/// alone, flag nothing, and match the host.
#[test]
fn vulkan_decoders_leave_float_pages_alone() {
    let Some(dev) = vulkan() else { return };
    let host = HostDevice::new();
    for direct in [false, true] {
        let (data, cb) = floatupload::mixed(direct);
        let (st, out) = floatupload::launch_others(&dev, &cb);
        floatupload::assert_others_leave_float_pages(&cb, &data, st, &out);
        let (hst, hout) = floatupload::launch_others(&host, &cb);
        assert_eq!(st, hst);
        assert!(out == hout, "device and host differ");
    }
    assert_clean(&dev);
}

/// Vulkan has a float decoder: a model for the device plans float pages where they pay
/// (bf16 weights, copies overlapping decodes), and the upload decodes them bit-exactly.
#[test]
fn vulkan_gets_float_pages() {
    let Some(dev) = vulkan() else { return };
    let data = vuma_hyperloop::datasets::bf16_weights(1 << 20, 4);
    let mut opts = CompressOptions::for_device(DynDevice::info(&dev), ElemWidth::Bf16);
    assert!(opts.model.float_decoder);
    // A device where compression pays (copies overlap decodes, a float decoder faster than
    // the link; lavapipe's own model sends everything raw).
    opts.model.concurrent_copies = true;
    opts.model.float.device_decode = 300e9;
    let cb = CompressedBuffer::compress(&data, &opts).unwrap();
    assert!(cb.summary().float_pages > 0, "{}", cb.summary());
    let n = data.len() as u64;
    let dst = dev.alloc(n, Placement::DeviceLocal).unwrap();
    dev.fill(dst.as_ref(), 0, n, 0xCD).unwrap();
    Uploader::new(&dev).upload(&cb, dst.as_ref()).unwrap();
    let mut back = vec![0u8; data.len()];
    dev.read(dst.as_ref(), 0, &mut back).unwrap();
    assert!(back == data, "float pages decoded bit-exactly");
    assert_clean(&dev);
}

// ---- the device encoder (eviction) --------------------------------------------------------

/// Evicts `data` (written to a device buffer of `dev` at `offset`, `spare` bytes after it)
/// through `enc` to `home`; checks the round trip through the uploader and returns the
/// downloaded chunk images as a compressed buffer (the evicted buffer is recycled).
fn evict_on(
    dev: &dyn DynDevice,
    enc: &mut DeviceEncoder<'_>,
    data: &[u8],
    (offset, spare): (u64, u64),
    opts: &CompressOptions,
    home: Placement,
) -> CompressedBuffer {
    let n = data.len() as u64;
    let src = dev
        .alloc(offset + n + spare, Placement::DeviceLocal)
        .unwrap();
    dev.fill(src.as_ref(), 0, offset + n + spare, 0xEE).unwrap();
    dev.write(src.as_ref(), offset, data).unwrap();
    let ev = enc
        .evict_range(src.as_ref(), offset, n, opts, home)
        .unwrap_or_else(|e| panic!("evict {n} bytes at {offset} to {home:?}: {e}"));
    let back = common::decode_into(dev, n, GUARD, "eviction", &mut |u, d| {
        u.upload_pinned(ev.pinned(), d).map(drop)
    })
    .unwrap();
    assert!(back == *data, "{home:?}: eviction round trip differs");
    let cb = ev.to_compressed(dev).unwrap();
    enc.recycle(ev);
    cb
}

/// Evicts `data` on `dev` to each of `homes` it supports and compares the chunk images with
/// the host encoder's, byte for byte.
fn check_eviction(
    dev: &VulkanDevice,
    enc: &mut DeviceEncoder<'_>,
    what: &str,
    data: &[u8],
    at: (u64, u64),
    opts: &CompressOptions,
    homes: &[Placement],
) {
    let mut forced = opts.clone();
    forced.force = Some(PageDecision::Codec(DeviceCodec::Bitplane));
    let want = CompressedBuffer::compress(data, &forced).unwrap();
    for &home in homes {
        if !DynDevice::supports(dev, home) {
            eprintln!("SKIP home {home:?}: not supported");
            continue;
        }
        let got = evict_on(dev, enc, data, at, opts, home);
        assert_eq!(
            got.chunks().len(),
            want.chunks().len(),
            "{what} {home:?}: chunk count"
        );
        for (i, (a, b)) in got.chunks().iter().zip(want.chunks()).enumerate() {
            if a != b {
                let p = a.image.iter().zip(&b.image).position(|(x, y)| x != y);
                panic!(
                    "{what} {home:?}: chunk {i} differs from the host encoder (lengths {} vs {}, first difference at {p:?})",
                    a.image.len(),
                    b.image.len()
                );
            }
        }
        assert_eq!(got.summary().bytes_sent, want.summary().bytes_sent);
    }
}

/// Staging twice (the second run reuses scratch and output buffers holding the first run's
/// bytes: padding must still come out zero) and mapped.
const ALL_HOMES: [Placement; 3] = [
    Placement::Staging,
    Placement::HostMapped,
    Placement::Staging,
];
const STAGING: [Placement; 1] = [Placement::Staging];

fn enc_opts(width: ElemWidth, page: usize, chunk: usize, direct: usize) -> CompressOptions {
    let mut o = CompressOptions::with_width(width);
    o.plan.page_size = page;
    o.chunk_bytes = chunk;
    o.direct_min_bytes = direct;
    o
}

#[test]
fn vulkan_eviction_matches_the_host_encoder() {
    let Some(dev) = vulkan() else { return };
    let mut enc = DeviceEncoder::new(&dev);
    for ds in Dataset::ALL {
        // Several chunks, a partial last page of odd length.
        let data = ds.generate((5 << 16) + 4099, 6);
        for width in [ds.width(), ElemWidth::U8, ElemWidth::Bf16, ElemWidth::F32] {
            let o = enc_opts(width, 64 << 10, 128 << 10, 64 << 10);
            check_eviction(&dev, &mut enc, ds.name(), &data, (0, 0), &o, &ALL_HOMES);
            eprintln!("ok eviction {} {width:?}", ds.name());
        }
    }
    assert_clean(&dev);
}

#[test]
fn vulkan_eviction_of_tiny_mixed_and_offset_buffers() {
    let Some(dev) = vulkan() else { return };
    let mut enc = DeviceEncoder::new(&dev);
    for len in [1usize, 3, 6, 1023, 1025, 4097, 65537] {
        let random = vuma_hyperloop::datasets::random_bytes(len, len as u64);
        let relu = vuma_hyperloop::datasets::relu_f32(len, len as u64);
        for width in [ElemWidth::U8, ElemWidth::Bf16, ElemWidth::F32] {
            let o = enc_opts(width, 64 << 10, 64 << 10, 1 << 20);
            for (name, data) in [("random", &random), ("relu", &relu)] {
                check_eviction(&dev, &mut enc, name, data, (0, 0), &o, &STAGING);
            }
        }
        let o = enc_opts(ElemWidth::F32, 64 << 10, 64 << 10, 1 << 20);
        check_eviction(
            &dev,
            &mut enc,
            "zero",
            &vec![0u8; len],
            (0, 0),
            &o,
            &STAGING,
        );
    }
    // Zero, ReLU, random and constant pages mixed, small pages, odd lengths of the source
    // range at word-aligned, odd and 256-byte-aligned offsets (the last word of the range
    // inside the buffer or not).
    let mut data = vec![0u8; 8 << 10];
    data.extend(vuma_hyperloop::datasets::relu_f32(12 << 10, 1));
    data.extend(vuma_hyperloop::datasets::random_bytes(9 << 10, 2));
    data.extend(vec![7u8; 3 << 10]);
    data.extend(vuma_hyperloop::datasets::relu_f32((1 << 10) + 3, 3));
    for width in [ElemWidth::U8, ElemWidth::Bf16, ElemWidth::F32] {
        let o = enc_opts(width, 2 << 10, 8 << 10, 4 << 10);
        check_eviction(&dev, &mut enc, "mixed", &data, (0, 0), &o, &ALL_HOMES);
        for at in [(0u64, 1u64), (256, 0), (256, 7), (4, 3), (3, 0)] {
            check_eviction(&dev, &mut enc, "mixed", &data, at, &o, &STAGING);
        }
    }
    assert_clean(&dev);
}

/// Changes to the records or statistics: (word index, value).
type Tamper = Vec<(usize, u32)>;

/// Runs both encoder passes on `dev` over `data` (64 KiB pages of f32) with `jobs` writing
/// into an output of `out_len` bytes (followed by a guard), after the given changes to the
/// size pass's records and statistics (word index, value); returns the status and output.
fn enc_write_outcome(
    dev: &dyn DynDevice,
    data: &[u8],
    jobs: &[u8],
    out_len: u64,
    rec_tamper: &[(usize, u32)],
    stat_tamper: &[(usize, u32)],
) -> ([u8; 8], Vec<u8>) {
    use vuma_core::{AccessMode, Arg, Scalar};
    fn whole(b: &dyn DynBuffer, access: AccessMode) -> Arg<'_, dyn DynBuffer> {
        Arg::Buffer {
            buffer: b,
            offset: 0,
            len: b.len(),
            access,
        }
    }
    let np = data.len().div_ceil(64 << 10);
    let src_len = data.len() as u64;
    let src = dev
        .alloc(src_len.next_multiple_of(4), Placement::DeviceLocal)
        .unwrap();
    dev.write(src.as_ref(), 0, data).unwrap();
    let rec = dev
        .alloc((np * REC * 4) as u64, Placement::DeviceLocal)
        .unwrap();
    let stats = dev
        .alloc(
            stats_bytes(np, 64 << 10, ElemWidth::F32),
            Placement::DeviceLocal,
        )
        .unwrap();
    let sums = dev.alloc(8 * np as u64, Placement::DeviceLocal).unwrap();
    dev.fill(sums.as_ref(), 0, 8 * np as u64, 0).unwrap();
    let g = encode_grid(np as u32, 64 << 10, ElemWidth::F32);
    let sc = |v: u32| Arg::Scalar(Scalar::U32(v));
    dev.launch(
        &encoders().size,
        &g,
        &[
            whole(src.as_ref(), AccessMode::Read),
            Arg::Scalar(Scalar::U64(src_len)),
            whole(rec.as_ref(), AccessMode::ReadWrite),
            whole(stats.as_ref(), AccessMode::ReadWrite),
            whole(sums.as_ref(), AccessMode::ReadWrite),
            sc(np as u32),
            sc(64 << 10),
            sc(4),
        ],
    )
    .unwrap();
    for &(at, v) in rec_tamper {
        dev.write(rec.as_ref(), 4 * at as u64, &v.to_le_bytes())
            .unwrap();
    }
    for &(at, v) in stat_tamper {
        dev.write(stats.as_ref(), 4 * at as u64, &v.to_le_bytes())
            .unwrap();
    }
    let jb = dev
        .alloc(jobs.len() as u64, Placement::DeviceLocal)
        .unwrap();
    dev.write(jb.as_ref(), 0, jobs).unwrap();
    let out = dev.alloc(out_len + GUARD, Placement::DeviceLocal).unwrap();
    dev.fill(out.as_ref(), 0, out_len + GUARD, 0xAB).unwrap();
    let status = dev.alloc(8, Placement::DeviceLocal).unwrap();
    let mut init = [0u8; 8];
    init[4..].copy_from_slice(&u32::MAX.to_le_bytes());
    dev.write(status.as_ref(), 0, &init).unwrap();
    dev.launch(
        &encoders().write,
        &g,
        &[
            whole(src.as_ref(), AccessMode::Read),
            Arg::Scalar(Scalar::U64(src_len)),
            whole(rec.as_ref(), AccessMode::Read),
            whole(stats.as_ref(), AccessMode::Read),
            whole(jb.as_ref(), AccessMode::Read),
            Arg::Buffer {
                buffer: out.as_ref(),
                offset: 0,
                len: out_len,
                access: AccessMode::ReadWrite,
            },
            Arg::Scalar(Scalar::U64(out_len)),
            whole(status.as_ref(), AccessMode::ReadWrite),
            sc(np as u32),
            sc(64 << 10),
            sc(4),
            sc(0),
        ],
    )
    .unwrap();
    let mut st = [0u8; 8];
    dev.read(status.as_ref(), 0, &mut st).unwrap();
    let mut back = vec![0u8; (out_len + GUARD) as usize];
    dev.read(out.as_ref(), 0, &mut back).unwrap();
    assert!(
        back[out_len as usize..].iter().all(|&b| b == 0xAB),
        "encoder wrote past its output"
    );
    back.truncate(out_len as usize);
    (st, back)
}

#[test]
fn vulkan_encoder_flags_exactly_what_the_host_flags() {
    let Some(dev) = vulkan() else { return };
    let host = HostDevice::new();
    // Mixed pages: ReLU (bitplane), random (raw), zero, with a short last page.
    let mut data = vuma_hyperloop::datasets::relu_f32(2 << 16, 8);
    data.extend(vuma_hyperloop::datasets::random_bytes(1 << 16, 9));
    data.extend(vec![0u8; 1 << 16]);
    data.extend(vuma_hyperloop::datasets::relu_f32(3002, 10));
    let mut opts = CompressOptions::with_width(ElemWidth::F32);
    opts.force = Some(PageDecision::Codec(DeviceCodec::Bitplane));
    opts.direct_min_bytes = 64 << 10;
    let cb = CompressedBuffer::compress(&data, &opts).unwrap();
    assert_eq!(cb.chunks().len(), 1);
    let img = &cb.chunks()[0].image;
    let np = cb.chunks()[0].npages as usize;
    let mut jobs = vec![0u8; np * JOB_BYTES];
    for i in 0..np {
        jobs[i * JOB_BYTES + 8..i * JOB_BYTES + 12].copy_from_slice(&(i as u32).to_le_bytes());
        jobs[i * JOB_BYTES + 16..(i + 1) * JOB_BYTES]
            .copy_from_slice(&Entry::read(img, i).to_bytes());
    }
    let out_len = img.len() as u64;
    let run = |d: &dyn DynDevice, jobs: &[u8], rt: &[(usize, u32)], stt: &[(usize, u32)]| {
        enc_write_outcome(d, &data, jobs, out_len, rt, stt)
    };
    // The clean jobs rebuild the host encoder's image exactly, on both devices.
    for d in [&host as &dyn DynDevice, &dev] {
        let (st, out) = run(d, &jobs, &[], &[]);
        assert_eq!(st[..4], [0; 4], "{}: clean jobs flagged", d.info().name);
        assert!(
            out == *img,
            "{}: clean jobs differ from the host image at {:?}",
            d.info().name,
            out.iter().zip(img).position(|(a, b)| a != b)
        );
    }
    // Corrupt jobs: the same status on both.
    let mut rng = SplitMix64::new(77);
    let mut flagged = 0;
    for _ in 0..40 {
        let mut bad = jobs.clone();
        for _ in 0..1 + rng.next_u64() % 2 {
            let p = (rng.next_u64() as usize) % np;
            // Offsets, index, src_off, lengths, dst_off, kind, width.
            let field = [0usize, 8, 16, 24, 28, 32, 40, 41][(rng.next_u64() % 8) as usize];
            bad[p * JOB_BYTES + field] ^= 1 << (rng.next_u64() % 8);
        }
        // (Unflagged corrupt jobs may make pages overlap: their bytes then depend on the
        // order of the writes, so only the status is compared.)
        let (h, _) = run(&host, &bad, &[], &[]);
        let (d, _) = run(&dev, &bad, &[], &[]);
        assert_eq!(h, d, "host and device encoders flag differently");
        flagged += usize::from(h[..4] != [0; 4]);
    }
    eprintln!("{flagged}/40 corrupt job sets flagged identically");
    assert!(flagged > 10);
    // Corrupt records and statistics (page 0 and 1 are bitplane pages): the same status,
    // and the same bytes (groups that are flagged are not written on either).
    let slots = (stats_bytes(1, 64 << 10, ElemWidth::F32) / 4) as usize;
    let first = Entry::read(img, 0);
    assert_eq!(first.kind, PageKind::Bitplane as u8);
    let mut cases: Vec<(Tamper, Tamper)> = vec![
        (vec![(0, 1)], vec![]),
        (vec![(3, 2000)], vec![]),
        (vec![(REC + 5, 7)], vec![]),
        (vec![], vec![(8, 1025)]),
        (vec![], vec![(8, 0)]),
        (vec![], vec![(STAT * 6 + 3, 0)]),
        (vec![], vec![(slots + STAT * 2 + 8, 12345)]),
    ];
    for _ in 0..16 {
        let at = (rng.next_u64() as usize) % (2 * slots);
        cases.push((vec![], vec![(at, rng.next_u64() as u32)]));
        let at = (rng.next_u64() as usize) % (2 * REC);
        cases.push((vec![(at, (rng.next_u64() % 1100) as u32)], vec![]));
    }
    // Swap two records of page 0: the totals agree, the per-block sizes do not.
    let r: Vec<u32> = (0..5)
        .map(|i| {
            let at = first.src_off as usize + 8 + 4 * i;
            let rd = |k: usize| u32::from_le_bytes(img[k..k + 4].try_into().unwrap());
            rd(at + 4) - rd(at)
        })
        .collect();
    if let Some(b) = (1..4).find(|&b| r[b] != r[0]) {
        cases.push((vec![(0, r[b]), (b, r[0])], vec![]));
    }
    let mut seen = 0;
    for (rt, stt) in &cases {
        let (h, ho) = run(&host, &jobs, rt, stt);
        let (d, dout) = run(&dev, &jobs, rt, stt);
        assert_eq!(h, d, "records {rt:?} stats {stt:?}: flagged differently");
        assert!(
            ho == dout,
            "records {rt:?} stats {stt:?}: outputs differ at {:?}",
            ho.iter().zip(&dout).position(|(a, b)| a != b)
        );
        seen += usize::from(h[..4] != [0; 4]);
    }
    eprintln!(
        "{seen}/{} corrupt records/statistics flagged identically",
        cases.len()
    );
    assert!(seen > cases.len() / 3);
    assert_clean(&dev);
}
