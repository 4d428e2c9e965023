//! Hyperloop on CUDA (hardware tier): device decoders against the host reference, on every
//! data set and every home of the compressed bytes, and on corrupt pages (the device must
//! flag exactly what the host flags and never write outside its pages); the device encoder
//! (eviction) against the host encoder, byte for byte, and on corrupt jobs.
//!
//! Without a CUDA device these tests print a SKIP line and pass; with `VUMA_REQUIRE_CUDA=1`
//! (or `VUMA_REQUIRE_HW=1`) they fail instead.
//!
//! Under compute-sanitizer (`VUMA_UNDER_SANITIZER=1`, set by the bundle's `run.sh` in its
//! sanitizer passes) the data sets, chunks and the decode-rate sample shrink 16-fold (see
//! `common::scaled`): still several chunks per upload, every page kind, odd tails and guard
//! bytes, but the run fits the sanitizer's time (racecheck did not finish in 420 s at full
//! size on an H200).

mod common;

use vuma_core::conformance::skip_or_fail;
use vuma_core::{DynDevice, HostDevice, Placement};
use vuma_hyperloop::datasets::{self, Dataset, SplitMix64};
use vuma_hyperloop::encode::{encode_grid, encoders, stats_bytes, DeviceEncoder, JOB_BYTES, REC};
use vuma_hyperloop::kernels::{Entry, PageKind, ENTRY_BYTES};
use vuma_hyperloop::page::ElemWidth;
use vuma_hyperloop::planner::{CostModel, DeviceCodec, PageDecision};
use vuma_hyperloop::residency::{
    measure_device_decode, CompressOptions, CompressedBuffer, DeviceCompressed, PinnedCompressed,
    Uploader,
};

fn cuda() -> Option<vuma_cuda::CudaDevice> {
    match vuma_cuda::devices() {
        Ok(mut v) if !v.is_empty() => Some(v.remove(0)),
        Ok(_) => {
            skip_or_fail("cuda", "no CUDA device");
            None
        }
        Err(e) => {
            skip_or_fail("cuda", &e.to_string());
            None
        }
    }
}

const GUARD: u64 = 64 << 10;

/// Decodes `cb` on `dev` through every home; returns the output (guard checked) per home.
fn all_homes(dev: &dyn DynDevice, cb: &CompressedBuffer) -> Vec<(&'static str, Vec<u8>)> {
    let run = |name: &'static str,
               f: &mut dyn FnMut(
        &mut Uploader<'_>,
        &dyn vuma_core::DynBuffer,
    ) -> vuma_core::Result<()>| {
        let out = common::decode_into(dev, cb.len(), GUARD, name, f)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        (name, out)
    };
    let pinned = PinnedCompressed::pin(dev, cb).unwrap();
    let mapped = PinnedCompressed::map(dev, cb).unwrap();
    let resident = DeviceCompressed::new(dev, cb).unwrap();
    vec![
        run("pageable", &mut |u, d| u.upload(cb, d).map(drop)),
        run("pinned", &mut |u, d| u.upload_pinned(&pinned, d).map(drop)),
        run("mapped", &mut |u, d| u.upload_pinned(&mapped, d).map(drop)),
        run("resident", &mut |u, d| {
            u.decode_resident(&resident, d).map(drop)
        }),
    ]
}

#[test]
fn cuda_decoders_match_the_host_on_every_dataset() {
    let Some(dev) = cuda() else { return };
    eprintln!(
        "device: {}{}",
        DynDevice::info(&dev).name,
        if common::under_sanitizer() {
            " (sanitizer scale: data and chunks / 16)"
        } else {
            ""
        }
    );
    for ds in Dataset::ALL {
        let len = common::scaled(
            (8 << 20)
                + if ds.width() == ElemWidth::U8 {
                    4099
                } else {
                    4096
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
}

/// Runs `cb` on `dev` without the host's integrity checks (these tests probe the decoders'
/// own): the error text (status flags and first bad page) or the output.
fn outcome(dev: &dyn DynDevice, cb: &CompressedBuffer) -> Result<Vec<u8>, String> {
    common::decode_into(dev, cb.len(), GUARD, "upload", &mut |u, d| {
        u.upload_unverified(cb, d).map(drop)
    })
}

#[test]
fn cuda_flags_exactly_what_the_host_flags() {
    let Some(dev) = cuda() else { return };
    let host = HostDevice::new();
    let mut rng = SplitMix64::new(1234);
    for (ds, codec, kind) in [
        (Dataset::ReluF32, DeviceCodec::Bitplane, PageKind::Bitplane),
        (
            Dataset::Bf16Weights,
            DeviceCodec::Bitplane,
            PageKind::Bitplane,
        ),
        (Dataset::ReluF32, DeviceCodec::Lz4, PageKind::Lz4),
    ] {
        let data = ds.generate(common::scaled(1 << 20), 3);
        let mut opts = CompressOptions::with_width(ds.width());
        opts.force = Some(PageDecision::Codec(codec));
        let clean = CompressedBuffer::compress(&data, &opts).unwrap();
        let entries: Vec<Entry> = {
            let c = &clean.chunks()[0];
            (0..c.npages as usize)
                .map(|i| Entry::read(&c.image, i))
                .collect()
        };
        assert!(entries.iter().all(|e| e.kind == kind as u8));
        let (mut flagged, mut trials) = (0, 0);
        for t in 0..if common::under_sanitizer() { 40 } else { 120 } {
            let mut cb = clean.clone();
            let e = entries[(rng.next_u64() as usize) % entries.len()];
            let img = &mut cb.chunks_mut()[0].image;
            // Corrupt the first bytes (headers, offset tables, tokens) more often than the rest.
            let span = if t % 2 == 0 {
                64.min(e.src_len as usize)
            } else {
                e.src_len as usize
            };
            for _ in 0..1 + rng.next_u64() % 3 {
                let at = e.src_off as usize + (rng.next_u64() as usize) % span;
                img[at] ^= 1 << (rng.next_u64() % 8);
            }
            let h = outcome(&host, &cb);
            let d = outcome(&dev, &cb);
            trials += 1;
            match (&h, &d) {
                (Err(a), Err(b)) => {
                    assert_eq!(
                        a,
                        b,
                        "{} {}: host and device flag differently",
                        ds.name(),
                        codec.name()
                    );
                    flagged += 1;
                }
                (Ok(a), Ok(b)) => assert!(a == b, "{} {}: outputs differ", ds.name(), codec.name()),
                _ => panic!(
                    "{} {}: host {:?} vs device {:?}",
                    ds.name(),
                    codec.name(),
                    h.as_ref().err(),
                    d.as_ref().err()
                ),
            }
        }
        eprintln!(
            "{} {}: {flagged}/{trials} corruptions flagged identically",
            ds.name(),
            codec.name()
        );
        // Table corruption: an entry pointing out of the chunk, past the destination, bad
        // kind, a kind whose kernel is not launched for the chunk.
        for edit in 0..4 {
            let mut cb = clean.clone();
            let mut e = entries[1];
            match edit {
                0 => e.src_off = 1 << 40,
                1 => e.dst_off = data.len() as u64 - 100,
                2 => e.kind = 7,
                _ => {
                    e.kind = if kind == PageKind::Lz4 {
                        PageKind::Bitplane as u8
                    } else {
                        PageKind::Lz4 as u8
                    }
                }
            }
            cb.chunks_mut()[0].image[ENTRY_BYTES..2 * ENTRY_BYTES].copy_from_slice(&e.to_bytes());
            let h = outcome(&host, &cb);
            let d = outcome(&dev, &cb);
            assert!(
                h.is_err() && h.as_ref().err() == d.as_ref().err(),
                "edit {edit}: {h:?} vs {d:?}"
            );
        }
    }
}

#[test]
fn cuda_decode_rates_are_measured() {
    let Some(dev) = cuda() else { return };
    let prior = CostModel::for_device(DynDevice::info(&dev));
    let mut m = prior.clone();
    let (sample, iters) = common::rate_sample((64 << 20, 5));
    measure_device_decode(&dev, &mut m, sample, iters).unwrap();
    eprintln!("measured cost model:\n{}", m.to_text());
    common::assert_rates_measured(&prior, &m);
}

#[test]
fn plain_datasets_are_deterministic() {
    // Runs everywhere: the generators the hardware tests rely on are seeded.
    assert_eq!(datasets::relu_f32(4096, 1), datasets::relu_f32(4096, 1));
    assert_ne!(datasets::relu_f32(4096, 1), datasets::relu_f32(4096, 2));
}

/// Evicts `data` (written to a device buffer of `dev`) through `enc` to `home`; returns the
/// downloaded chunk images as a compressed buffer (the evicted buffer is recycled).
fn evict_on(
    dev: &dyn DynDevice,
    enc: &mut DeviceEncoder<'_>,
    data: &[u8],
    opts: &CompressOptions,
    home: Placement,
) -> CompressedBuffer {
    let src = dev
        .alloc(data.len() as u64, Placement::DeviceLocal)
        .unwrap();
    dev.write(src.as_ref(), 0, data).unwrap();
    let ev = enc
        .evict(src.as_ref(), data.len() as u64, opts, home)
        .unwrap();
    // Back up through the uploader, from the pinned images themselves.
    let back = common::decode_into(dev, data.len() as u64, GUARD, "eviction", &mut |u, d| {
        u.upload_pinned(ev.pinned(), d).map(drop)
    })
    .unwrap();
    assert!(back == *data, "{home:?}: eviction round trip differs");
    let cb = ev.to_compressed(dev).unwrap();
    enc.recycle(ev);
    cb
}

#[test]
fn cuda_eviction_matches_the_host_encoder() {
    let Some(dev) = cuda() else { return };
    let mut enc = DeviceEncoder::new(&dev);
    for ds in Dataset::ALL {
        let data = ds.generate(common::scaled((8 << 20) + 4099), 6);
        for width in [ds.width(), ElemWidth::U8, ElemWidth::F32] {
            let mut opts = CompressOptions::with_width(width);
            opts.chunk_bytes = common::scaled_chunk(2 << 20);
            opts.direct_min_bytes = common::scaled_chunk(256 << 10);
            let mut forced = opts.clone();
            forced.force = Some(PageDecision::Codec(DeviceCodec::Bitplane));
            let want = CompressedBuffer::compress(&data, &forced).unwrap();
            // Twice per home: the second run reuses scratch and output buffers holding the
            // first run's bytes (padding must still come out zero).
            for home in [
                Placement::Staging,
                Placement::HostMapped,
                Placement::Staging,
            ] {
                let got = evict_on(&dev, &mut enc, &data, &opts, home);
                for (i, (a, b)) in got.chunks().iter().zip(want.chunks()).enumerate() {
                    if a != b {
                        let at = a.image.iter().zip(&b.image).position(|(x, y)| x != y);
                        panic!(
                            "{} {width:?} {home:?}: chunk {i} differs from the host encoder (lengths {} vs {}, first difference at {at:?})",
                            ds.name(),
                            a.image.len(),
                            b.image.len()
                        );
                    }
                }
                assert_eq!(got.chunks().len(), want.chunks().len());
                assert_eq!(got.summary().bytes_sent, want.summary().bytes_sent);
            }
            eprintln!("ok eviction {} {width:?}: {}", ds.name(), want.summary());
        }
    }
}

/// Runs both encoder passes on `dev` over `data` (64 KiB pages of f32) with `jobs` writing
/// into an output of `out_len` bytes (followed by a guard); returns the status and output.
fn enc_write_outcome(
    dev: &dyn DynDevice,
    data: &[u8],
    jobs: &[u8],
    out_len: u64,
) -> ([u8; 8], Vec<u8>) {
    use vuma_core::{AccessMode, Arg, Scalar};
    let np = data.len().div_ceil(64 << 10);
    fn whole(
        b: &dyn vuma_core::DynBuffer,
        access: AccessMode,
    ) -> Arg<'_, dyn vuma_core::DynBuffer> {
        Arg::Buffer {
            buffer: b,
            offset: 0,
            len: b.len(),
            access,
        }
    }
    let src = dev
        .alloc(data.len() as u64, Placement::DeviceLocal)
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
            Arg::Scalar(Scalar::U64(data.len() as u64)),
            whole(rec.as_ref(), AccessMode::ReadWrite),
            whole(stats.as_ref(), AccessMode::ReadWrite),
            whole(sums.as_ref(), AccessMode::ReadWrite),
            sc(np as u32),
            sc(64 << 10),
            sc(4),
        ],
    )
    .unwrap();
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
            Arg::Scalar(Scalar::U64(data.len() as u64)),
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
fn cuda_encoder_flags_exactly_what_the_host_flags() {
    let Some(dev) = cuda() else { return };
    let host = HostDevice::new();
    // Mixed pages: ReLU (bitplane), random (raw), zero, with a short last page.
    let mut data = datasets::relu_f32(4 << 16, 8);
    data.extend(datasets::random_bytes(2 << 16, 9));
    data.extend(vec![0u8; 1 << 16]);
    data.extend(datasets::relu_f32(3000, 10));
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
    // The clean jobs rebuild the host encoder's image exactly, on both devices.
    for d in [&host as &dyn DynDevice, &dev] {
        let (st, out) = enc_write_outcome(d, &data, &jobs, out_len);
        assert_eq!(u32::from_le_bytes([st[0], st[1], st[2], st[3]]), 0);
        assert!(
            out == *img,
            "{}: clean jobs differ from the host image",
            d.info().name
        );
    }
    let mut rng = SplitMix64::new(77);
    let mut flagged = 0;
    for _ in 0..60 {
        let mut bad = jobs.clone();
        for _ in 0..1 + rng.next_u64() % 2 {
            let p = (rng.next_u64() as usize) % np;
            // Offsets, index, src_off, lengths, dst_off, kind, width.
            let field = [0usize, 8, 16, 24, 28, 32, 40, 41][(rng.next_u64() % 8) as usize];
            bad[p * JOB_BYTES + field] ^= 1 << (rng.next_u64() % 8);
        }
        let (h, _) = enc_write_outcome(&host, &data, &bad, out_len);
        let (d, _) = enc_write_outcome(&dev, &data, &bad, out_len);
        assert_eq!(h, d, "host and device encoders flag differently");
        flagged += usize::from(h[..4] != [0; 4]);
    }
    eprintln!("{flagged}/60 corrupt job sets flagged identically");
    assert!(flagged > 20);
}
