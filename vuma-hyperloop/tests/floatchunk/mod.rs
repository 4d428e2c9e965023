//! Helpers of the `hl_float` tests (host variant in `floatdecode.rs`, CUDA in
//! `cuda_float.rs`): float-codec chunks of every data set, corrupt chunks, and one launch
//! of the decoder on a device with guard bytes around the destination.

use vuma_core::{AccessMode, Arg, DynDevice, Placement, Scalar};
use vuma_hyperloop::datasets::{self, SplitMix64};
use vuma_hyperloop::floatcodec;
use vuma_hyperloop::floatdecode::{float_chunk, float_decoder, float_grid, float_kind_bit};
use vuma_hyperloop::kernels::ENTRY_BYTES;
use vuma_hyperloop::page::{self, ElemWidth};

/// Guard bytes after the destination (must stay untouched).
pub const GUARD: usize = 4096;

/// A chunk of float pages of `data` (pages of `ps` bytes; the last may be short).
pub fn chunk_of(data: &[u8], ps: usize, width: ElemWidth) -> (Vec<u8>, u32) {
    let pages: Vec<(Vec<u8>, usize)> = page::pages(data.len(), ps)
        .map(|r| {
            let mut enc = Vec::new();
            floatcodec::encode_page(&data[r.clone()], width, &mut enc).unwrap();
            (enc, r.len())
        })
        .collect();
    let n = pages.len() as u32;
    (float_chunk(&pages, width), n)
}

/// The data sets the decoder is checked on: (name, bytes, width).
pub fn datasets(real: Option<(Vec<u8>, Vec<u8>)>) -> Vec<(String, Vec<u8>, ElemWidth)> {
    let mut v = vec![
        (
            "relu f32".to_string(),
            datasets::relu_f32((1 << 20) + 4100, 1),
            ElemWidth::F32,
        ),
        (
            "bf16 weights".to_string(),
            datasets::bf16_weights((1 << 20) + 2050, 2),
            ElemWidth::Bf16,
        ),
        (
            "random".to_string(),
            datasets::random_bytes(300_001, 3),
            ElemWidth::F32,
        ),
        (
            "random u8".to_string(),
            datasets::random_bytes(70_000, 4),
            ElemWidth::U8,
        ),
        ("zeros".to_string(), vec![0u8; 200_000], ElemWidth::F32),
    ];
    let mut r = SplitMix64::new(5);
    let skewed: Vec<u8> = (0..150_001)
        .map(|_| u8::from(r.next_u64().is_multiple_of(7)) * 0x3C)
        .collect();
    v.push(("skewed u8".to_string(), skewed, ElemWidth::U8));
    if let Some((f, b)) = real {
        v.push(("real fp32".to_string(), f, ElemWidth::F32));
        v.push(("real bf16".to_string(), b, ElemWidth::Bf16));
    }
    v
}

/// Launches `hl_float` on `chunk` (`npages` pages, kinds mask `kinds`) into a destination of
/// `dst_len` bytes (pre-filled with 0xAB, plus [`GUARD`] guard bytes, checked); returns the
/// status words and the destination.
pub fn run(
    dev: &dyn DynDevice,
    chunk: &[u8],
    npages: u32,
    kinds: u32,
    dst_len: usize,
) -> ([u32; 2], Vec<u8>) {
    let c = dev
        .alloc(chunk.len().max(16) as u64, Placement::DeviceLocal)
        .unwrap();
    dev.write(c.as_ref(), 0, chunk).unwrap();
    let total = (dst_len + GUARD) as u64;
    let d = dev.alloc(total, Placement::DeviceLocal).unwrap();
    dev.fill(d.as_ref(), 0, total, 0xAB).unwrap();
    let st = dev.alloc(8, Placement::DeviceLocal).unwrap();
    let mut init = [0u8; 8];
    init[4..].copy_from_slice(&u32::MAX.to_le_bytes());
    dev.write(st.as_ref(), 0, &init).unwrap();
    let args = [
        Arg::Buffer {
            buffer: c.as_ref(),
            offset: 0,
            len: chunk.len().max(16) as u64,
            access: AccessMode::Read,
        },
        Arg::Scalar(Scalar::U64(chunk.len() as u64)),
        Arg::Buffer {
            buffer: d.as_ref(),
            offset: 0,
            // Whole words (Vulkan binds words; the guard bytes of the last one must survive).
            len: dst_len.next_multiple_of(4) as u64,
            access: AccessMode::ReadWrite,
        },
        Arg::Scalar(Scalar::U64(dst_len as u64)),
        Arg::whole(st.as_ref(), AccessMode::ReadWrite),
        Arg::Scalar(Scalar::U32(npages)),
        Arg::Scalar(Scalar::U32(kinds)),
    ];
    dev.launch(float_decoder(), &float_grid(npages), &args)
        .unwrap();
    let mut s = [0u8; 8];
    dev.read(st.as_ref(), 0, &mut s).unwrap();
    let mut out = vec![0u8; dst_len + GUARD];
    dev.read(d.as_ref(), 0, &mut out).unwrap();
    assert!(
        out[dst_len..].iter().all(|&b| b == 0xAB),
        "hl_float wrote past the destination"
    );
    out.truncate(dst_len);
    let w = |i: usize| u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
    ([w(0), w(4)], out)
}

/// The kinds mask of a chunk of float pages.
pub fn kinds() -> u32 {
    float_kind_bit()
}

/// Corrupt variants of `chunk` (`npages` pages): (what, chunk). Every page's data is
/// damaged somewhere (header bytes, code lengths, lane ends, streams, truncated lengths).
pub fn corruptions(chunk: &[u8], npages: u32, seed: u64) -> Vec<(String, Vec<u8>)> {
    let mut r = SplitMix64::new(seed);
    let mut out = Vec::new();
    let entry = |c: &[u8], p: usize| vuma_hyperloop::kernels::Entry::read(c, p);
    for round in 0..24 {
        let mut c = chunk.to_vec();
        for p in 0..npages as usize {
            let e = entry(&c, p);
            if e.src_len == 0 || !r.next_u64().is_multiple_of(3) {
                continue;
            }
            let base = e.src_off as usize;
            let at = match round % 4 {
                0 => (r.next_u64() % 12) as usize,       // fixed header
                1 => 12 + (r.next_u64() % 256) as usize, // lengths and lane ends
                _ => (r.next_u64() % u64::from(e.src_len)) as usize, // anywhere
            };
            if at < e.src_len as usize {
                c[base + at] ^= 1 << (r.next_u64() % 8);
            }
            if round % 6 == 5 {
                // A page claiming fewer source bytes than it has.
                let l = (r.next_u64() % u64::from(e.src_len)) as u32;
                c[p * ENTRY_BYTES + 8..p * ENTRY_BYTES + 12].copy_from_slice(&l.to_le_bytes());
            }
        }
        out.push((format!("round {round}"), c));
    }
    // Table damage: a width of 3, an unknown kind, a destination past the end.
    let mut c = chunk.to_vec();
    c[25] = 3;
    out.push(("width 3".into(), c));
    let mut c = chunk.to_vec();
    c[24] = 9;
    out.push(("kind 9".into(), c));
    let mut c = chunk.to_vec();
    c[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    out.push(("dst_off".into(), c));
    out
}
