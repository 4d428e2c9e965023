//! `hl_float`'s host variant (the reference of the CUDA decoder) through a real launch on
//! [`HostDevice`]: chunks of float pages of every data set decode to the data; corrupt
//! chunks flag exactly the pages the codec's decoder rejects, and nothing is written outside
//! the destination.

mod floatchunk;

use vuma_core::{Error, HostDevice};
use vuma_hyperloop::floatcodec;
use vuma_hyperloop::floatdecode::{float_chunk, FLAG_FLOAT};
use vuma_hyperloop::kernels::{Entry, FLAG_KIND, FLAG_TABLE};
use vuma_hyperloop::page::ElemWidth;
use vuma_hyperloop::realdata;

/// What the decoder must report for `chunk`: flags and lowest flagged page, computed from
/// the codec's host decoder page by page.
pub fn expected_status(chunk: &[u8], npages: u32, dst_len: usize) -> [u32; 2] {
    let mut st = [0u32, u32::MAX];
    for p in 0..npages as usize {
        let e = Entry::read(chunk, p);
        let f = if e.kind != 5 {
            FLAG_KIND
        } else if !matches!(e.width, 1 | 2 | 4) || !e.in_bounds(chunk.len() as u64, dst_len as u64)
        {
            FLAG_TABLE
        } else {
            let w = ElemWidth::from_bytes(usize::from(e.width)).unwrap();
            let s = &chunk[e.src_off as usize..(e.src_off + u64::from(e.src_len)) as usize];
            let mut d = vec![0u8; e.dst_len as usize];
            match floatcodec::decode_page(s, w, &mut d) {
                Ok(()) => 0,
                Err(Error::Corrupt { .. }) => FLAG_FLOAT,
                Err(e) => panic!("not a Corrupt error: {e}"),
            }
        };
        if f != 0 {
            st[0] |= f;
            st[1] = st[1].min(p as u32);
        }
    }
    st
}

#[test]
fn host_variant_decodes_every_dataset() {
    let real = realdata::trained_f32(2 << 20)
        .ok()
        .map(|f| (f.clone(), realdata::f32_bytes_to_bf16(&f)));
    if real.is_none() {
        eprintln!(
            "SKIP real-weight sets of host_variant_decodes_every_dataset: {}",
            realdata::MISSING
        );
    }
    let dev = HostDevice::new();
    for (name, data, width) in floatchunk::datasets(real) {
        for ps in [64 << 10, 4096] {
            let (chunk, np) = floatchunk::chunk_of(&data, ps, width);
            let (st, out) = floatchunk::run(&dev, &chunk, np, floatchunk::kinds(), data.len());
            assert_eq!(st, [0, u32::MAX], "{name}: status");
            assert!(out == data, "{name}: output differs");
        }
    }
}

#[test]
fn host_variant_flags_exactly_the_corrupt_pages() {
    let dev = HostDevice::new();
    let data = vuma_hyperloop::datasets::relu_f32(300_000, 8);
    let (chunk, np) = floatchunk::chunk_of(&data, 16 << 10, ElemWidth::F32);
    let mut flagged = 0;
    for (what, c) in floatchunk::corruptions(&chunk, np, 1) {
        let (st, _) = floatchunk::run(&dev, &c, np, floatchunk::kinds(), data.len());
        assert_eq!(st, expected_status(&c, np, data.len()), "{what}");
        flagged += usize::from(st[0] != 0);
    }
    assert!(flagged > 10, "{flagged}");
    // Float pages launched without their kinds bit, and a table past the chunk.
    let (st, _) = floatchunk::run(&dev, &chunk, np, 0, data.len());
    assert_eq!(st, [FLAG_KIND, 0]);
    let (st, _) = floatchunk::run(&dev, &chunk[..64], np, floatchunk::kinds(), data.len());
    assert_eq!(st, [FLAG_TABLE, 0]);
    let empty = float_chunk(&[], ElemWidth::F32);
    let (st, _) = floatchunk::run(&dev, &empty, 0, floatchunk::kinds(), 16);
    assert_eq!(st, [0, u32::MAX]);
}
