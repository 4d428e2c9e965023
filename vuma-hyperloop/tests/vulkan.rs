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

use vuma_core::conformance::skip_or_fail;
use vuma_core::{DynBuffer, DynDevice, HostDevice, Placement};
use vuma_hyperloop::datasets::{Dataset, SplitMix64};
use vuma_hyperloop::kernels::{Entry, PageKind, ENTRY_BYTES};
use vuma_hyperloop::page::ElemWidth;
use vuma_hyperloop::planner::{DeviceCodec, PageDecision};
use vuma_hyperloop::residency::{
    CompressOptions, CompressedBuffer, DeviceCompressed, PinnedCompressed, Uploader,
};
use vuma_vulkan::{VulkanDevice, VulkanOptions};

fn vulkan() -> Option<VulkanDevice> {
    match VulkanDevice::open_with(0, &VulkanOptions::default()) {
        Ok(d) => {
            eprintln!("vulkan device: {}", DynDevice::info(&d).name);
            Some(d)
        }
        Err(e) => {
            skip_or_fail("vulkan", &e.to_string());
            None
        }
    }
}

fn assert_clean(dev: &VulkanDevice) {
    DynDevice::synchronize(dev).expect("synchronize");
    if dev.validation_active() {
        assert_eq!(
            dev.validation_errors(),
            0,
            "validation errors: {:#?}",
            dev.validation_messages()
        );
    } else {
        eprintln!(
            "VALIDATION UNAVAILABLE: {}",
            dev.validation_note().unwrap_or("layer not active")
        );
    }
}

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

fn decisions() -> Vec<Option<PageDecision>> {
    let mut forced = vec![None, Some(PageDecision::Zero), Some(PageDecision::Raw)];
    forced.extend(DeviceCodec::ALL.map(|c| Some(PageDecision::Codec(c))));
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
    decode_into(dev, cb, "corrupt", &mut |u, d| u.upload(cb, d).map(drop))
}

fn same_outcome(host: &HostDevice, dev: &VulkanDevice, cb: &CompressedBuffer, what: &str) -> bool {
    let h = outcome(host, cb);
    let d = outcome(dev, cb);
    // The homes that read the images in place see the same bytes.
    if dev.supports(Placement::DeviceLocal) {
        let resident = DeviceCompressed::new(dev, cb).unwrap();
        let r = decode_into(dev, cb, what, &mut |u, b| {
            u.decode_resident(&resident, b).map(drop)
        });
        assert_eq!(
            r.as_ref().err(),
            d.as_ref().err(),
            "{what}: resident and pageable homes disagree"
        );
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
        forced.extend(DeviceCodec::ALL.map(|c| Some(PageDecision::Codec(c))));
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
