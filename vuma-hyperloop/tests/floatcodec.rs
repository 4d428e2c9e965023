//! The float codec ([`vuma_hyperloop::floatcodec`]): round trips (proptest over widths,
//! lengths and value distributions), its modes (Huffman, zero elision, raw fallback), and
//! corrupt input: every truncation and every single-byte mutation of valid pages, plus
//! targeted header corruptions, give `Ok` or a typed `Error::Corrupt`, never a panic.

use proptest::prelude::*;
use vuma_core::{Codec, Error};
use vuma_hyperloop::datasets::{self, SplitMix64};
use vuma_hyperloop::floatcodec::{self, huff_header, lanes_for, FloatCodec, FIXED_HEADER};
use vuma_hyperloop::page::ElemWidth;

const WIDTHS: [ElemWidth; 3] = [ElemWidth::U8, ElemWidth::Bf16, ElemWidth::F32];

fn encode(data: &[u8], width: ElemWidth) -> Vec<u8> {
    let mut enc = Vec::new();
    let n = FloatCodec::new(width).compress(data, &mut enc).unwrap();
    assert_eq!(n, enc.len());
    assert!(n <= FloatCodec::new(width).max_compressed_len(data.len()));
    enc
}

fn roundtrip(data: &[u8], width: ElemWidth) -> Vec<u8> {
    let enc = encode(data, width);
    let mut out = vec![0xA5u8; data.len()];
    FloatCodec::new(width).decompress(&enc, &mut out).unwrap();
    assert!(
        out == data,
        "{width:?}: {} bytes differ after a round trip",
        data.len()
    );
    enc
}

fn is_corrupt(r: &vuma_core::Result<()>) -> bool {
    match r {
        Ok(()) => false,
        Err(Error::Corrupt { codec, .. }) => {
            assert_eq!(*codec, "float");
            true
        }
        Err(e) => panic!("not a Corrupt error: {e:?}"),
    }
}

/// f32 values of varied shapes: normal weights, ReLU, constants, specials, subnormals.
fn f32_values(kind: u8, n: usize, seed: u64) -> Vec<u8> {
    let mut r = SplitMix64::new(seed);
    (0..n)
        .flat_map(|i| {
            let x: f32 = match kind % 6 {
                0 => (r.normal_pair().0 * 0.02) as f32,
                1 => r.normal_pair().0.max(0.0) as f32,
                2 => 1.5,
                3 => [0.0, -0.0, f32::INFINITY, f32::NAN, f32::MIN_POSITIVE][i % 5],
                4 => f32::from_bits(r.next_u64() as u32 & 0x007F_FFFF), // subnormals and zeros
                _ => f32::from_bits(r.next_u64() as u32),
            };
            x.to_le_bytes()
        })
        .collect()
}

#[test]
fn modes_are_picked_by_the_data() {
    // ReLU: exact zeros elided.
    let relu = datasets::relu_f32(64 << 10, 1);
    let enc = roundtrip(&relu, ElemWidth::F32);
    assert_eq!(enc[2], floatcodec::MODE_HUFF | floatcodec::FLAG_ZERO);
    assert!(relu.len() as f64 / enc.len() as f64 > 2.1);
    // bf16 weights: Huffman, no zeros to elide.
    let w = datasets::bf16_weights(64 << 10, 1);
    let enc = roundtrip(&w, ElemWidth::Bf16);
    assert_eq!(enc[2] & floatcodec::MODE_HUFF, floatcodec::MODE_HUFF);
    assert!(w.len() as f64 / enc.len() as f64 > 1.45);
    // Subnormals: zero elision would lose them, so it is off.
    let sub = f32_values(4, 16 << 10, 2);
    let enc = roundtrip(&sub, ElemWidth::F32);
    assert_eq!(enc[2] & floatcodec::FLAG_ZERO, 0);
    // Random bytes: raw, 12 bytes of header.
    let rand = datasets::random_bytes(64 << 10, 3);
    for width in WIDTHS {
        let enc = roundtrip(&rand, width);
        assert_eq!(enc[2], floatcodec::MODE_RAW);
        assert_eq!(enc.len(), rand.len() + FIXED_HEADER);
    }
    // Constant data: one symbol, one bit per element.
    let n = 16 << 10;
    let c = f32_values(2, n, 4);
    let enc = roundtrip(&c, ElemWidth::F32);
    let lanes = lanes_for(n);
    assert_eq!(usize::from(enc[3]), lanes);
    assert!(enc.len() < huff_header(lanes) + n * 3 + n / 8 + lanes);
    // All zeros: one symbol and no sm bytes.
    let z = vec![0u8; 64 << 10];
    let enc = roundtrip(&z, ElemWidth::F32);
    assert!(enc.len() < huff_header(lanes) + 2100, "{}", enc.len());
}

#[test]
fn odd_lengths_and_few_elements() {
    let data = f32_values(0, 2000, 5);
    for width in WIDTHS {
        for len in [0, 1, 2, 3, 5, 31, 32, 33, 63, 64, 65, 127, 1023, 4097, 7999] {
            roundtrip(&data[..len], width);
        }
    }
}

#[test]
fn every_truncation_is_corrupt() {
    for (data, width) in [
        (datasets::relu_f32(6000, 1), ElemWidth::F32),
        (datasets::bf16_weights(6002, 2), ElemWidth::Bf16),
        (f32_values(3, 700, 3), ElemWidth::F32),
        (datasets::random_bytes(3000, 4), ElemWidth::Bf16),
    ] {
        let enc = roundtrip(&data, width);
        let mut out = vec![0u8; data.len()];
        for cut in 0..enc.len() {
            let r = FloatCodec::new(width).decompress(&enc[..cut], &mut out);
            assert!(
                is_corrupt(&r),
                "{width:?}: truncated to {cut} of {} decoded",
                enc.len()
            );
        }
        // One byte too many is corrupt too.
        let mut long = enc.clone();
        long.push(0);
        assert!(is_corrupt(
            &FloatCodec::new(width).decompress(&long, &mut out)
        ));
        // The wrong destination length, or the wrong width.
        let mut short = vec![0u8; data.len() - 1];
        assert!(is_corrupt(
            &FloatCodec::new(width).decompress(&enc, &mut short)
        ));
        let other = if width == ElemWidth::F32 {
            ElemWidth::Bf16
        } else {
            ElemWidth::F32
        };
        assert!(is_corrupt(
            &FloatCodec::new(other).decompress(&enc, &mut out)
        ));
    }
}

#[test]
fn every_single_byte_mutation_is_ok_or_corrupt() {
    for (data, width) in [
        (datasets::relu_f32(4000, 1), ElemWidth::F32),
        (datasets::bf16_weights(4002, 2), ElemWidth::Bf16),
        (f32_values(0, 900, 3), ElemWidth::F32),
    ] {
        let enc = roundtrip(&data, width);
        let mut out = vec![0u8; data.len()];
        let mut flagged = 0;
        for at in 0..enc.len() {
            for x in [1u8, 0x80, 0xFF] {
                let mut m = enc.clone();
                m[at] ^= x;
                if is_corrupt(&FloatCodec::new(width).decompress(&m, &mut out)) {
                    flagged += 1;
                }
            }
        }
        // Header and stream damage is mostly caught (sm bytes are stored raw: no check can
        // see a flipped mantissa bit).
        eprintln!(
            "{width:?}: {flagged} of {} mutations flagged",
            3 * enc.len()
        );
        assert!(flagged > 0);
    }
}

#[test]
fn targeted_header_corruptions_are_typed_errors() {
    let data = datasets::bf16_weights(8192, 7);
    let enc = roundtrip(&data, ElemWidth::Bf16);
    let c = FloatCodec::new(ElemWidth::Bf16);
    let mut out = vec![0u8; data.len()];
    let check = |f: &dyn Fn(&mut Vec<u8>), what: &str| {
        let mut m = enc.clone();
        f(&mut m);
        let mut o = out.clone();
        assert!(is_corrupt(&c.decompress(&m, &mut o)), "{what} not flagged");
    };
    check(&|m| m[0] = 0, "magic");
    check(&|m| m[2] = 7, "unknown mode");
    check(&|m| m[3] = 16, "lane count");
    check(&|m| m[8] ^= 1, "sm count");
    // Every symbol given length 1: over-subscribed.
    check(
        &|m| m[FIXED_HEADER..FIXED_HEADER + 128].fill(0x11),
        "over-subscribed code",
    );
    // No symbol at all.
    check(
        &|m| m[FIXED_HEADER..FIXED_HEADER + 128].fill(0),
        "empty code",
    );
    // Lane ends decreasing.
    check(
        &|m| {
            let at = FIXED_HEADER + 128;
            m[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        },
        "lane end",
    );
    // Lane ends shifted (total unchanged): streams split at the wrong places.
    check(
        &|m| {
            let at = FIXED_HEADER + 128 + 4;
            let v = u32::from_le_bytes([m[at], m[at + 1], m[at + 2], m[at + 3]]);
            m[at..at + 4].copy_from_slice(&(v + 1).to_le_bytes());
        },
        "lane split",
    );
    // A raw page whose size disagrees.
    let rand = datasets::random_bytes(100, 1);
    let mut raw = encode(&rand, ElemWidth::F32);
    raw.pop();
    let mut o = vec![0u8; 100];
    assert!(is_corrupt(
        &FloatCodec::new(ElemWidth::F32).decompress(&raw, &mut o)
    ));
    out.fill(0);
}

#[test]
fn zero_elision_counts_are_checked() {
    // Claim one more sm entry than there are non-zero symbols, the page size kept
    // consistent: only the count of decoded non-zero symbols can catch it.
    let data = datasets::relu_f32(4096, 9);
    let enc = roundtrip(&data, ElemWidth::F32);
    assert_ne!(enc[2] & floatcodec::FLAG_ZERO, 0);
    let mut m = enc.clone();
    let nsm = u32::from_le_bytes([m[8], m[9], m[10], m[11]]);
    m[8..12].copy_from_slice(&(nsm + 1).to_le_bytes());
    m.extend_from_slice(&[0, 0, 0]);
    let mut out = vec![0u8; data.len()];
    assert!(is_corrupt(
        &FloatCodec::new(ElemWidth::F32).decompress(&m, &mut out)
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn prop_round_trips(kind in 0u8..6, n in 0usize..3000, seed in any::<u64>(), extra in 0usize..4, w in 0usize..3) {
        let mut data = f32_values(kind, n, seed);
        data.extend(std::iter::repeat_n(0x3Cu8, extra));
        roundtrip(&data, WIDTHS[w]);
        roundtrip(&realdata_like_bf16(&data), ElemWidth::Bf16);
    }

    #[test]
    fn prop_small_alphabets(bytes in proptest::collection::vec(0u8..4, 0..5000), w in 0usize..3) {
        // Few symbols, long runs of one: deep, skewed codes.
        let data: Vec<u8> = bytes.iter().map(|&b| b * 0x40).collect();
        roundtrip(&data, WIDTHS[w]);
    }

    #[test]
    fn prop_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000), len in 0usize..4000, w in 0usize..3) {
        let mut out = vec![0u8; len];
        let _ = is_corrupt(&FloatCodec::new(WIDTHS[w]).decompress(&bytes, &mut out));
    }

    #[test]
    fn prop_garbage_after_a_valid_header(seed in any::<u64>(), keep in 0usize..400, tail in proptest::collection::vec(any::<u8>(), 0..3000)) {
        // A real header (code lengths, lane ends) followed by garbage streams.
        let data = datasets::bf16_weights(4000, seed);
        let enc = encode(&data, ElemWidth::Bf16);
        let mut m = enc[..keep.min(enc.len())].to_vec();
        m.extend_from_slice(&tail);
        let mut out = vec![0u8; data.len()];
        let _ = is_corrupt(&FloatCodec::new(ElemWidth::Bf16).decompress(&m, &mut out));
    }
}

/// Rounds the whole f32 values of `data` to bf16.
fn realdata_like_bf16(data: &[u8]) -> Vec<u8> {
    vuma_hyperloop::realdata::f32_bytes_to_bf16(data)
}

#[test]
fn pages_are_cut_into_groups_whose_starts_are_checked() {
    use vuma_hyperloop::floatcodec::{decode_page, group_range, LANES, LENGTHS_BYTES, MAX_GROUPS};
    assert_eq!(lanes_for(255), LANES);
    assert_eq!(lanes_for(512), 2 * LANES);
    assert_eq!(lanes_for(1 << 15), MAX_GROUPS * LANES);
    // Groups cover the elements once, in order, each a multiple of 32 but the last.
    for n in [1024, 1000, 4097, 32768] {
        let g = lanes_for(n) / LANES;
        let mut next = 0;
        for i in 0..g {
            let r = group_range(n, g, i);
            assert_eq!(r.start, next);
            assert!(r.end == n || r.len().is_multiple_of(LANES));
            next = r.end;
        }
        assert_eq!(next, n);
    }
    for (data, width) in [
        (datasets::relu_f32(64 << 10, 9), ElemWidth::F32),
        (datasets::bf16_weights(64 << 10, 9), ElemWidth::Bf16),
    ] {
        let enc = roundtrip(&data, width);
        let lanes = usize::from(enc[3]);
        assert_eq!(lanes, MAX_GROUPS * LANES);
        let starts = FIXED_HEADER + LENGTHS_BYTES + 2 * lanes;
        for g in 1..MAX_GROUPS {
            for delta in [1u32, u32::MAX] {
                let mut bad = enc.clone();
                let at = starts + 4 * (g - 1);
                let v = u32::from_le_bytes(bad[at..at + 4].try_into().unwrap()).wrapping_add(delta);
                bad[at..at + 4].copy_from_slice(&v.to_le_bytes());
                let mut out = vec![0u8; data.len()];
                assert!(
                    decode_page(&bad, width, &mut out).is_err(),
                    "group {g} start {delta}"
                );
            }
        }
        // A lane count the format does not have.
        let mut bad = enc.clone();
        bad[3] = 96;
        let mut out = vec![0u8; data.len()];
        assert!(decode_page(&bad, width, &mut out).is_err());
    }
}
