//! Hyperloop on CUDA (hardware tier): device decoders against the host reference, on every
//! data set and every home of the compressed bytes, and on corrupt pages (the device must
//! flag exactly what the host flags and never write outside its pages).
//!
//! Without a CUDA device these tests print a SKIP line and pass; with `VUMA_REQUIRE_CUDA=1`
//! (or `VUMA_REQUIRE_HW=1`) they fail instead.

use vuma_core::conformance::skip_or_fail;
use vuma_core::{DynDevice, HostDevice, Placement};
use vuma_hyperloop::datasets::{self, Dataset, SplitMix64};
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
    let len = cb.len();
    let dst = dev.alloc(len + GUARD, Placement::DeviceLocal).unwrap();
    let mut up = Uploader::new(dev);
    let mut out = Vec::new();
    let mut run =
        |name: &'static str, f: &mut dyn FnMut(&mut Uploader<'_>, &dyn vuma_core::DynBuffer)| {
            dev.fill(dst.as_ref(), 0, len + GUARD, 0xCD).unwrap();
            f(&mut up, dst.as_ref());
            let mut back = vec![0u8; (len + GUARD) as usize];
            dev.read(dst.as_ref(), 0, &mut back).unwrap();
            assert!(
                back[len as usize..].iter().all(|&b| b == 0xCD),
                "{name}: write past the data"
            );
            back.truncate(len as usize);
            out.push((name, back));
        };
    run("pageable", &mut |u, d| {
        u.upload(cb, d).unwrap();
    });
    let pinned = PinnedCompressed::pin(dev, cb).unwrap();
    run("pinned", &mut |u, d| {
        u.upload_pinned(&pinned, d).unwrap();
    });
    let mapped = PinnedCompressed::map(dev, cb).unwrap();
    run("mapped", &mut |u, d| {
        u.upload_pinned(&mapped, d).unwrap();
    });
    let resident = DeviceCompressed::new(dev, cb).unwrap();
    run("resident", &mut |u, d| {
        u.decode_resident(&resident, d).unwrap();
    });
    out
}

#[test]
fn cuda_decoders_match_the_host_on_every_dataset() {
    let Some(dev) = cuda() else { return };
    eprintln!("device: {}", DynDevice::info(&dev).name);
    for ds in Dataset::ALL {
        let len = (8 << 20)
            + if ds.width() == ElemWidth::U8 {
                4099
            } else {
                4096
            };
        let data = ds.generate(len, 5);
        let mut forced = vec![None];
        forced.extend(DeviceCodec::ALL.map(|c| Some(PageDecision::Codec(c))));
        for force in forced {
            let mut opts = CompressOptions::with_width(ds.width());
            opts.chunk_bytes = 2 << 20;
            opts.force = force;
            let cb = CompressedBuffer::compress(&data, &opts).unwrap();
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

/// Runs `cb` on `dev`: the error text (status flags and first bad page) or the output.
fn outcome(dev: &dyn DynDevice, cb: &CompressedBuffer) -> Result<Vec<u8>, String> {
    let len = cb.len();
    let dst = dev.alloc(len + GUARD, Placement::DeviceLocal).unwrap();
    dev.fill(dst.as_ref(), 0, len + GUARD, 0xCD).unwrap();
    let r = Uploader::new(dev).upload(cb, dst.as_ref());
    let mut back = vec![0u8; (len + GUARD) as usize];
    dev.read(dst.as_ref(), 0, &mut back).unwrap();
    assert!(
        back[len as usize..].iter().all(|&b| b == 0xCD),
        "write past the data"
    );
    back.truncate(len as usize);
    match r {
        Ok(_) => Ok(back),
        Err(e) => Err(e.to_string()),
    }
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
        let data = ds.generate(1 << 20, 3);
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
        for t in 0..120 {
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
    measure_device_decode(&dev, &mut m, 64 << 20, 5).unwrap();
    eprintln!("measured cost model:\n{}", m.to_text());
    assert!(m.decode_measured);
    // Measured, finite and positive; no speed threshold (a timed test claims no
    // performance, and under compute-sanitizer kernels run orders of magnitude slower).
    for (what, v, before) in [
        (
            "bitplane decode",
            m.bitplane.device_decode,
            prior.bitplane.device_decode,
        ),
        ("lz4 decode", m.lz4.device_decode, prior.lz4.device_decode),
        ("mapped h2d", m.mapped_h2d, prior.mapped_h2d),
    ] {
        assert!(v.is_finite() && v > 0.0, "{what} rate not measured: {v}");
        assert_ne!(v, before, "{what} still holds its prior value");
    }
}

#[test]
fn plain_datasets_are_deterministic() {
    // Runs everywhere: the generators the hardware tests rely on are seeded.
    assert_eq!(datasets::relu_f32(4096, 1), datasets::relu_f32(4096, 1));
    assert_ne!(datasets::relu_f32(4096, 1), datasets::relu_f32(4096, 2));
}
