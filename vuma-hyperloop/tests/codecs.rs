//! Codec round trips, corrupt and truncated inputs, proptest round trips, and the bitplane
//! codec's ratios and block modes.

use proptest::prelude::*;
use vuma_core::{Codec, Error};
use vuma_hyperloop::bitplane::{self, Bitplane};
use vuma_hyperloop::codecs::{self, Raw};
use vuma_hyperloop::datasets::{self, Dataset};
use vuma_hyperloop::lz4block;
use vuma_hyperloop::page::{self, ElemWidth};

fn host_codecs(width: ElemWidth) -> Vec<Box<dyn Codec>> {
    let mut v = codecs::all_codecs(width);
    v.push(Box::new(Raw));
    v
}

fn roundtrip(c: &dyn Codec, data: &[u8]) -> usize {
    let mut enc = Vec::new();
    let n = c.compress(data, &mut enc).unwrap();
    assert_eq!(n, enc.len(), "{}: returned length", c.name());
    assert!(n <= c.max_compressed_len(data.len()), "{}: bound", c.name());
    let mut out = vec![0xA5u8; data.len()];
    c.decompress(&enc, &mut out).unwrap();
    assert!(out == data, "{}: round trip differs", c.name());
    n
}

#[test]
fn every_codec_round_trips_every_dataset() {
    for ds in Dataset::ALL {
        let data = ds.generate(256 << 10, 42);
        for c in host_codecs(ds.width()) {
            let mut total = 0;
            for r in page::pages(data.len(), page::DEFAULT_PAGE_SIZE) {
                total += roundtrip(c.as_ref(), &data[r]);
            }
            eprintln!(
                "{:>12} {:>8}: ratio {:.3}",
                ds.name(),
                c.name(),
                data.len() as f64 / total as f64
            );
        }
    }
}

#[test]
fn compress_appends_to_existing_output() {
    let data = datasets::relu_f32(10_000, 3);
    for c in host_codecs(ElemWidth::F32) {
        let mut enc = vec![7u8, 7, 7];
        let n = c.compress(&data, &mut enc).unwrap();
        assert_eq!(enc.len(), 3 + n);
        assert_eq!(&enc[..3], &[7, 7, 7]);
        let mut out = vec![0u8; data.len()];
        c.decompress(&enc[3..], &mut out).unwrap();
        assert_eq!(out, data);
    }
}

fn is_corrupt(r: vuma_core::Result<()>) -> bool {
    matches!(r, Err(Error::Corrupt { .. }))
}

#[test]
fn truncated_input_is_corrupt_for_every_codec() {
    for ds in [Dataset::ReluF32, Dataset::Bf16Weights, Dataset::Random] {
        let data = ds.generate(64 << 10, 5);
        for c in host_codecs(ds.width()) {
            let mut enc = Vec::new();
            c.compress(&data, &mut enc).unwrap();
            for cut in [0, 1, enc.len() / 3, enc.len() / 2, enc.len() - 1] {
                let mut out = vec![0u8; data.len()];
                assert!(
                    is_corrupt(c.decompress(&enc[..cut], &mut out)),
                    "{} on {}: truncation at {cut} of {} not reported",
                    c.name(),
                    ds.name(),
                    enc.len()
                );
            }
            // Wrong destination length.
            let mut short = vec![0u8; data.len() - 1];
            assert!(
                is_corrupt(c.decompress(&enc, &mut short)),
                "{}: short dst",
                c.name()
            );
            let mut long = vec![0u8; data.len() + 1];
            assert!(
                is_corrupt(c.decompress(&enc, &mut long)),
                "{}: long dst",
                c.name()
            );
        }
    }
}

#[test]
fn corrupted_input_never_panics_and_errors_are_typed() {
    let data = datasets::relu_f32(64 << 10, 9);
    let mut rng = datasets::SplitMix64::new(77);
    for c in host_codecs(ElemWidth::F32) {
        let mut enc = Vec::new();
        c.compress(&data, &mut enc).unwrap();
        let mut detected = 0;
        for _ in 0..300 {
            let mut bad = enc.clone();
            for _ in 0..1 + rng.next_u64() % 4 {
                let i = (rng.next_u64() as usize) % bad.len();
                bad[i] ^= 1 << (rng.next_u64() % 8);
            }
            let mut out = vec![0u8; data.len()];
            match c.decompress(&bad, &mut out) {
                Ok(()) => {}
                Err(Error::Corrupt { .. }) => detected += 1,
                Err(e) => panic!("{}: untyped error {e}", c.name()),
            }
        }
        eprintln!("{}: {detected}/300 corruptions detected", c.name());
    }
}

#[test]
fn bitplane_reaches_its_target_ratios() {
    let relu = datasets::relu_f32(1 << 20, 1);
    let bf16 = datasets::bf16_weights(1 << 20, 1);
    let ratio = |data: &[u8], w| {
        let c = Bitplane::new(w);
        let mut total = 0;
        for r in page::pages(data.len(), page::DEFAULT_PAGE_SIZE) {
            total += roundtrip(&c, &data[r]);
        }
        data.len() as f64 / total as f64
    };
    let r_relu = ratio(&relu, ElemWidth::F32);
    let r_bf16 = ratio(&bf16, ElemWidth::Bf16);
    eprintln!("bitplane: relu f32 {r_relu:.3}, bf16 weights {r_bf16:.3}");
    assert!(r_relu >= 1.6, "relu ratio {r_relu}");
    assert!(r_bf16 >= 1.2, "bf16 ratio {r_bf16}");
}

#[test]
fn bitplane_block_modes_round_trip() {
    let mut cases: Vec<Vec<u8>> = vec![
        vec![0; 1024],
        vec![9; 1000],
        (0..1024).map(|i| (i % 3) as u8).collect(), // pack k=2
        (0..1024).map(|i| (i * 7 % 128) as u8).collect(), // pack k=7
        (0..1024).map(|i| if i % 5 == 0 { 3 } else { 0 }).collect(), // sparse const
        (0..1024)
            .map(|i| if i % 4 == 0 { (i % 251) as u8 | 1 } else { 0 })
            .collect(), // sparse raw
        (0..1023)
            .map(|i| if i % 3 == 0 { 1 + (i % 5) as u8 } else { 0 })
            .collect(), // sparse pack, m%8≠0
        (0..1024).map(|i| (i * 131 % 256) as u8).collect(), // raw
        vec![1],
    ];
    cases.push((0..17).map(|i| i as u8).collect());
    for data in &cases {
        let mut enc = Vec::new();
        bitplane::encode_block(data, &mut enc);
        assert!(enc.len() <= data.len() + 1);
        let mut out = vec![0xEEu8; data.len()];
        bitplane::decode_block(&enc, data.len(), &mut out).unwrap();
        assert_eq!(&out, data, "mode {}", enc[0]);
        // Every truncation of a block is detected.
        for cut in 0..enc.len() {
            assert!(bitplane::decode_block(&enc[..cut], data.len(), &mut out).is_err());
        }
    }
}

#[test]
fn bitplane_pages_of_odd_lengths() {
    for w in [ElemWidth::U8, ElemWidth::Bf16, ElemWidth::F32] {
        for len in [1usize, 2, 3, 5, 1023, 1024, 4097, 65535, 65536] {
            let data = datasets::relu_f32(len, len as u64);
            roundtrip(&Bitplane::new(w), &data);
        }
    }
}

#[cfg(feature = "lz4")]
fn lz4c(data: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    codecs::Lz4.compress(data, &mut v).unwrap();
    v
}

#[cfg(feature = "lz4")]
#[test]
fn lz4_reference_decoder_matches_lz4_flex() {
    for ds in Dataset::ALL {
        let data = ds.generate(256 << 10, 11);
        for r in page::pages(data.len(), page::DEFAULT_PAGE_SIZE) {
            let page = &data[r];
            let enc = lz4c(page);
            let mut out = vec![0u8; page.len()];
            lz4block::decode(&enc, &mut out).unwrap();
            assert!(out == page);
            assert!(lz4block::decode(&enc[..enc.len() - 1], &mut out).is_err());
        }
    }
    // Overlapping matches (offset < match length).
    let data: Vec<u8> = b"abcabcabcabcabcabcabcabcabcabcabcabcxyzxyzxyz".repeat(50);
    let enc = lz4c(&data);
    let mut out = vec![0u8; data.len()];
    lz4block::decode(&enc, &mut out).unwrap();
    assert_eq!(out, data);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn prop_codecs_round_trip(data in proptest::collection::vec(any::<u8>(), 0..6000)) {
        for c in host_codecs(ElemWidth::F32) {
            roundtrip(c.as_ref(), &data);
        }
    }

    #[test]
    fn prop_codecs_round_trip_small_alphabets(
        data in proptest::collection::vec(prop_oneof![Just(0u8), Just(0x3f), Just(0x40), 0u8..4], 1..9000),
        w in prop_oneof![Just(ElemWidth::U8), Just(ElemWidth::Bf16), Just(ElemWidth::F32)],
    ) {
        for c in host_codecs(w) {
            roundtrip(c.as_ref(), &data);
        }
    }

    #[test]
    fn prop_decoders_survive_garbage(data in proptest::collection::vec(any::<u8>(), 0..3000), len in 0usize..5000) {
        let mut out = vec![0u8; len];
        for c in host_codecs(ElemWidth::F32) {
            let _ = c.decompress(&data, &mut out);
        }
        let _ = lz4block::decode(&data, &mut out);
        for w in [ElemWidth::U8, ElemWidth::Bf16, ElemWidth::F32] {
            let _ = bitplane::decode_page(&data, w, &mut out);
        }
    }
}
