//! Float-codec pages in compressed residency, on the host device (the decoders' host
//! variants): `CompressedBuffer::compress` + `Uploader` round trips on every data set (real
//! weights when cached), chunks mixing float, bitplane, LZ4, raw, direct and zero pages,
//! corrupt and truncated chunks with float pages (typed errors, nothing written outside the
//! destination), and the planner choosing the float codec only where the device decodes it.

mod floatupload;

use vuma_core::{Backend, DynDevice, Error, HostDevice};
use vuma_hyperloop::datasets::{self, SplitMix64};
use vuma_hyperloop::kernels::{Entry, PageKind, ENTRY_BYTES};
use vuma_hyperloop::page::ElemWidth;
use vuma_hyperloop::planner::{self, CostModel, DeviceCodec, PlanConfig};
use vuma_hyperloop::residency::{CompressOptions, CompressedBuffer};

/// What `cuda_float.rs` checks on CUDA, on the host device.
#[test]
fn float_pages_round_trip_on_every_dataset() {
    let host = HostDevice::new();
    floatupload::check_uploads(&host, 2 << 20, "float_pages_round_trip_on_every_dataset");
}

#[test]
fn typed_data_is_planned_float_on_the_host_device() {
    let host = HostDevice::new();
    for (name, data, width) in [
        ("bf16", datasets::bf16_weights(4 << 20, 3), ElemWidth::Bf16),
        ("relu", datasets::relu_f32(4 << 20, 3), ElemWidth::F32),
    ] {
        let mut opts = CompressOptions::for_device(DynDevice::info(&host), width);
        assert!(opts.model.float_decoder);
        // A float decoder faster than the link (the prior is below it: see `CostModel`).
        opts.model.float.device_decode = 300e9;
        let cb = CompressedBuffer::compress(&data, &opts).unwrap();
        let s = cb.summary();
        assert_eq!(s.float_pages, s.pages, "{name}: {s}");
        floatupload::assert_round_trips(&host, name, &data, &cb);
    }
}

#[test]
fn chunks_mixing_every_page_kind_decode_exactly() {
    let host = HostDevice::new();
    for direct in [false, true] {
        let (data, cb) = floatupload::mixed(direct);
        floatupload::assert_mixed(&cb, direct);
        eprintln!("mixed (direct {direct}): {}", cb.summary());
        floatupload::assert_round_trips(&host, "mixed", &data, &cb);
        let mut out = vec![0u8; data.len()];
        cb.decompress_host(&mut out).unwrap();
        assert!(out == data);
        // Float pages launched alongside the other kernels: hl_float runs once per chunk.
        let dst =
            DynDevice::alloc(&host, data.len() as u64, vuma_core::Placement::DeviceLocal).unwrap();
        let r = vuma_hyperloop::Uploader::new(&host)
            .upload(&cb, dst.as_ref())
            .unwrap();
        let lz4 = usize::from(cfg!(feature = "lz4"));
        assert_eq!(r.launches, 3 + lz4, "fill/copy, bitplane, float (and lz4)");
    }
    // The other decoders, launched with the float bit set but without hl_float, leave the
    // float pages to it: no flag, their own pages decoded.
    for direct in [false, true] {
        let (data, cb) = floatupload::mixed(direct);
        let (st, out) = floatupload::launch_others(&host, &cb);
        floatupload::assert_others_leave_float_pages(&cb, &data, st, &out);
    }
}

/// The error of uploading `cb` (`Err` text of the first home), checking every home agrees.
fn upload_error(host: &HostDevice, cb: &CompressedBuffer) -> Option<String> {
    let outs = floatupload::all_homes(host, cb);
    let first = outs[0].1.as_ref().err().cloned();
    for (home, r) in &outs {
        assert_eq!(
            r.as_ref().err(),
            first.as_ref(),
            "{home} and pageable disagree"
        );
    }
    first
}

/// The host decode's error for `cb` re-sealed (its checksums recomputed, so that the
/// decoders' own checks are reached; the host integrity checks are tested in `host.rs`).
fn corrupt_error(cb: &CompressedBuffer) -> Error {
    let mut sealed = cb.clone();
    for c in sealed.chunks_mut() {
        c.seal();
    }
    let mut out = vec![0u8; cb.len() as usize];
    sealed.decompress_host(&mut out).unwrap_err()
}

/// The table index and entry of every float page of chunk 0.
fn float_pages(cb: &CompressedBuffer) -> Vec<(usize, Entry)> {
    let c = &cb.chunks()[0];
    (0..c.npages as usize)
        .map(|i| (i, Entry::read(&c.image, i)))
        .filter(|(_, e)| e.kind == PageKind::Float as u8)
        .collect()
}

fn set_entry(cb: &mut CompressedBuffer, i: usize, e: &Entry) {
    cb.chunks_mut()[0].image[i * ENTRY_BYTES..(i + 1) * ENTRY_BYTES].copy_from_slice(&e.to_bytes());
}

#[test]
fn corrupt_float_pages_are_typed_errors() {
    let host = HostDevice::new();
    let (data, clean) = floatupload::mixed(true);
    let pages = float_pages(&clean);
    assert_eq!(pages.len(), 6);
    let is_float_corrupt = |e: &Error| matches!(e, Error::Corrupt { codec: "float", .. });
    // A float page one byte short, garbage in its header, a code-length table that
    // over-subscribes the code space.
    for &(i, e) in &pages {
        let mut cb = clean.clone();
        let mut short = e;
        short.src_len -= 1;
        set_entry(&mut cb, i, &short);
        let err = corrupt_error(&cb);
        assert!(is_float_corrupt(&err), "page {i} short: {err}");
        assert!(upload_error(&host, &cb).is_some());
        let mut cb = clean.clone();
        let at = e.src_off as usize;
        cb.chunks_mut()[0].image[at..at + 4].copy_from_slice(&[0xFF; 4]);
        assert!(is_float_corrupt(&corrupt_error(&cb)), "page {i} header");
        let mut cb = clean.clone();
        cb.chunks_mut()[0].image[at + 12..at + 20].fill(0x11);
        assert!(is_float_corrupt(&corrupt_error(&cb)), "page {i} lengths");
    }
    // Random bit flips in the float pages' bytes: Ok (a flipped mantissa bit decodes) or
    // a Corrupt error, never anything else, never a write past the destination.
    let mut rng = SplitMix64::new(16);
    let mut flagged = 0;
    for t in 0..200 {
        let mut cb = clean.clone();
        let (_, e) = pages[t % pages.len()];
        let span = if t % 2 == 0 { 300 } else { e.src_len as usize };
        for _ in 0..1 + rng.next_u64() % 3 {
            let at = e.src_off as usize + (rng.next_u64() as usize) % span.min(e.src_len as usize);
            cb.chunks_mut()[0].image[at] ^= 1 << (rng.next_u64() % 8);
        }
        if let Some(err) = upload_error(&host, &cb) {
            assert!(err.starts_with("corrupt "), "{err}");
            flagged += 1;
        }
    }
    assert!(flagged > 100, "{flagged} of 200 flip sets flagged");
    // Table damage on a float page: outside the chunk, past the destination, a width of 3,
    // kind 5 without hl_float launched for the chunk, an unknown kind.
    let (i, e) = pages[1];
    for edit in 0..5 {
        let mut cb = clean.clone();
        let mut e2 = e;
        match edit {
            0 => e2.src_off = 1 << 40,
            1 => e2.dst_off = data.len() as u64 - 100,
            2 => e2.width = 3,
            3 => cb.chunks_mut()[0].has_float = false,
            _ => e2.kind = 6,
        }
        set_entry(&mut cb, i, &e2);
        let err = corrupt_error(&cb);
        assert!(
            matches!(
                err,
                Error::Corrupt {
                    codec: "hyperloop chunk",
                    ..
                }
            ),
            "edit {edit}: {err}"
        );
        assert!(upload_error(&host, &cb).is_some(), "edit {edit}");
    }
    // hl_float launched for a chunk without float pages leaves the other kinds alone.
    let (other_data, mut other) = floatupload::mixed(false);
    let c = &mut other.chunks_mut()[0];
    for i in 0..c.npages as usize {
        let e = Entry::read(&c.image, i);
        if e.kind == PageKind::Float as u8 {
            let mut e2 = e;
            e2.kind = PageKind::Raw as u8;
            c.image[i * ENTRY_BYTES..(i + 1) * ENTRY_BYTES].copy_from_slice(&e2.to_bytes());
        }
    }
    let err = upload_error(&host, &other).expect("float bytes as raw pages");
    assert!(err.contains("hyperloop chunk"), "{err}");
    let _ = other_data;
}

#[test]
fn truncated_chunks_with_float_pages_are_typed_errors() {
    let host = HostDevice::new();
    let (_, clean) = floatupload::mixed(false);
    let len = clean.chunks()[0].image.len();
    let pages = float_pages(&clean);
    let last_float_end = pages
        .iter()
        .map(|(_, e)| e.src_off as usize + e.src_len as usize)
        .max()
        .unwrap();
    for keep in [0, 100, 17 * ENTRY_BYTES, last_float_end - 1, len / 2] {
        let mut cb = clean.clone();
        let c = &mut cb.chunks_mut()[0];
        c.image.truncate(keep);
        c.head_len = c.head_len.min(keep);
        let err = corrupt_error(&cb);
        assert!(matches!(err, Error::Corrupt { .. }), "keep {keep}: {err}");
        assert!(upload_error(&host, &cb).is_some(), "keep {keep}");
    }
}

#[test]
fn the_float_codec_is_planned_only_where_the_device_decodes_it() {
    assert!(DeviceCodec::Float.decodes_on(Backend::Host));
    assert!(DeviceCodec::Float.decodes_on(Backend::Cuda));
    assert!(DeviceCodec::Float.decodes_on(Backend::Vulkan));
    let host = HostDevice::new();
    let mut vk = DynDevice::info(&host).clone();
    vk.backend = Backend::Vulkan;
    let data = datasets::bf16_weights(2 << 20, 5);
    let cfg = PlanConfig {
        width: ElemWidth::Bf16,
        ..PlanConfig::default()
    };
    assert!(cfg.codecs.contains(&DeviceCodec::Float));
    // Decoders assumed faster than the link (the float prior is below it: see `CostModel`),
    // so that only whether the device decodes float pages decides.
    let fast = |mut m: CostModel| {
        m.float.device_decode = 300e9;
        m
    };
    for (what, model, float) in [
        (
            "host",
            fast(CostModel::for_device(DynDevice::info(&host))),
            true,
        ),
        ("vulkan", fast(CostModel::for_device(&vk)), true),
        (
            "vulkan without the float decoder",
            CostModel {
                float_decoder: false,
                ..fast(CostModel::for_device(&vk))
            },
            false,
        ),
        ("no device", CostModel::default(), false),
        (
            "default with the float decoder",
            CostModel {
                float_decoder: true,
                float: vuma_hyperloop::planner::CodecRates {
                    device_decode: 300e9,
                    ..CostModel::default().float
                },
                ..CostModel::default()
            },
            true,
        ),
    ] {
        assert_eq!(model.float_decoder, float, "{what}");
        assert_eq!(model.decodes(DeviceCodec::Float), float, "{what}");
        let p = planner::plan(&data, &model, &cfg).unwrap();
        assert_eq!(p.summary.float_pages > 0, float, "{what}: {}", p.summary);
        if !float {
            assert!(p.summary.bitplane_pages > 0, "{what}: {}", p.summary);
        }
    }
}

#[test]
fn cost_models_keep_the_float_codec_through_text() {
    let mut m = CostModel {
        float_decoder: true,
        ..CostModel::default()
    };
    m.float.device_decode = 321e9;
    m.float.host_encode = 2.5e9;
    let back = CostModel::from_text(&m.to_text()).unwrap();
    assert_eq!(back, m);
    // A model cached before the float codec existed keeps it off.
    let old = "link_h2d 5e10\nbitplane.device_decode 1e11\n";
    assert!(!CostModel::from_text(old).unwrap().float_decoder);
    let mut bad = m.clone();
    bad.float.device_decode = f64::NAN;
    assert!(bad.validate().is_err());
}

/// Host bytes packed through the path (`HyperloopPath::pack_host`): planned for the device,
/// so float pages where the device decodes them; the packed copy uploads and unpacks
/// bit-exactly, belongs to its device, and what would not pay is not packed.
#[test]
fn host_bytes_pack_with_float_pages_through_the_path() {
    use vuma_core::Placement;
    use vuma_hyperloop::{HyperloopPath, PathConfig};
    let host = HostDevice::new();
    let cfg = PathConfig {
        on_shared_memory: true,
        always_encode: true,
        width: ElemWidth::Bf16,
        chunk_bytes: 1 << 20,
        ..PathConfig::default()
    };
    let path = HyperloopPath::new(cfg.clone()).unwrap();
    let data = datasets::bf16_weights((4 << 20) + 6, 9);
    let n = data.len() as u64;
    let (packed, s) = path.pack_host(&host, &data).unwrap().expect("packed");
    eprintln!("{s}");
    // Every whole page coded (float where the model's float decoder outruns the link,
    // else bitplane); the 6-byte last page does not shrink and goes raw.
    let coded = s.float_pages + s.bitplane_pages;
    assert_eq!((coded, s.raw_pages), (s.pages - 1, 1), "{s}");
    assert_eq!(packed.logical_bytes(), n);
    assert!(
        packed.stored_bytes() < n * 4 / 5,
        "{}",
        packed.stored_bytes()
    );
    let dst = DynDevice::alloc(&host, n + 64, Placement::DeviceLocal).unwrap();
    let r = packed.upload(&host, dst.as_ref(), 64).unwrap();
    assert_eq!(r.compressed_pages, coded as u64);
    assert!(r.link_bytes < n * 4 / 5, "{r:?}");
    let mut back = vec![0u8; data.len()];
    DynDevice::read(&host, dst.as_ref(), 64, &mut back).unwrap();
    assert!(back == data, "packed upload differs");
    let mut out = vec![0u8; data.len()];
    packed.unpack(&host, &mut out).unwrap();
    assert!(out == data, "unpack differs");
    assert!(packed.unpack(&host, &mut out[1..]).is_err());
    let other = HostDevice::new();
    let foreign = DynDevice::alloc(&other, n, Placement::DeviceLocal).unwrap();
    assert!(!packed.can_upload_to(&other));
    assert!(matches!(
        packed.upload(&other, foreign.as_ref(), 0),
        Err(Error::WrongDevice { .. })
    ));
    // Random bytes save nothing; the default configuration leaves devices that share host
    // memory alone; small buffers go plain.
    let random = datasets::random_bytes(4 << 20, 1);
    assert!(path.pack_host(&host, &random).unwrap().is_none());
    let plain = HyperloopPath::new(PathConfig::default()).unwrap();
    assert!(plain.pack_host(&host, &data).unwrap().is_none());
    assert!(path.pack_host(&host, &data[..4096]).unwrap().is_none());
}
