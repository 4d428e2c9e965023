//! The host mirror of the device block encoder: the presence mask of a plane, the mode
//! `he_plan` picks from it and the block `he_emit` writes, function by function as in
//! `src/encode.cu`; and [`encode_block_as_device`], which the tests compare with
//! [`bitplane::encode_block`](crate::bitplane::encode_block).

use crate::bitplane::GROUP;
use crate::page;

/// The mode of one block, as `he_plan` picks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Plan {
    pub(super) mode: u8,
    pub(super) sub: u8,
    pub(super) k: u32,
    pub(super) d: usize,
    pub(super) size: usize,
    pub(super) value: u8,
    pub(super) nz: usize,
}

/// Presence mask (bit v: value v occurs) and zero count of a plane.
pub(super) fn mask_of(x: &[u8]) -> ([u32; 8], usize) {
    let mut mk = [0u32; 8];
    let mut z = 0;
    for &v in x {
        mk[usize::from(v >> 5)] |= 1 << (v & 31);
        z += usize::from(v == 0);
    }
    (mk, z)
}

fn low(mk: &[u32; 8], skip_zero: bool) -> u8 {
    for (q, &w) in mk.iter().enumerate() {
        let x = if q == 0 && skip_zero { w & !1 } else { w };
        if x != 0 {
            return (q * 32 + x.trailing_zeros() as usize) as u8;
        }
    }
    0
}

fn rank(mk: &[u32; 8], v: usize, skip_zero: bool) -> usize {
    let word = |q: usize| {
        if q == 0 && skip_zero {
            mk[q] & !1
        } else {
            mk[q]
        }
    };
    let below: u32 = (0..v >> 5).map(|q| word(q).count_ones()).sum();
    (below + (word(v >> 5) & ((1u32 << (v & 31)) - 1)).count_ones()) as usize
}

fn bits(d: usize) -> u32 {
    page::bits_for(d)
}

/// `he_plan`: the mode of a block of `m` bytes (see the CUDA source).
pub(super) fn plan(mk: &[u32; 8], zeros: usize, m: usize) -> Plan {
    let mut b = Plan {
        mode: 1,
        sub: 0,
        k: 0,
        d: 0,
        size: 0,
        value: 0,
        nz: m - zeros,
    };
    let distinct: usize = mk.iter().map(|w| w.count_ones() as usize).sum();
    if distinct <= 1 {
        b.mode = 0;
        b.size = 2;
        b.value = low(mk, false);
        return b;
    }
    let raw = 1 + m;
    let kp = bits(distinct);
    let pk = (1..=7).contains(&kp);
    let pack = if pk {
        3 + distinct + (m * kp as usize).div_ceil(8)
    } else {
        0
    };
    let nz = m - zeros;
    let nzd = distinct - usize::from(zeros > 0);
    let sp = zeros > 0 && nz > 0;
    let (mut sub, mut ks, mut subsz) = (1u8, 0u32, 0usize);
    if sp {
        if nzd == 1 {
            sub = 0;
            subsz = 2;
        } else {
            ks = bits(nzd);
            let r = 1 + nz;
            let p = 3 + nzd + (nz * ks as usize).div_ceil(8);
            if (1..=7).contains(&ks) && p < r {
                sub = 2;
                subsz = p;
            } else {
                sub = 1;
                subsz = r;
            }
        }
    }
    let sparse = if sp { 3 + m.div_ceil(8) + subsz } else { 0 };
    let mut best = raw;
    if pk && pack < best {
        best = pack;
    }
    if sp && sparse < best {
        best = sparse;
    }
    if pk && pack == best {
        b.mode = 2;
        b.k = kp;
        b.d = distinct;
        b.size = pack;
    } else if sp && sparse == best {
        b.mode = 3;
        b.sub = sub;
        b.k = ks;
        b.d = nzd;
        b.size = sparse;
        b.value = low(mk, true);
    } else {
        b.mode = 1;
        b.size = raw;
    }
    b
}

/// `he_pack`: values `8c..8c + 8` into bytes `k*c..k*c + k`, as device thread `c` does.
fn pack(vals: &[u8], sidx: &[u8; 256], k: u32, dst: &mut [u8]) {
    let ku = k as usize;
    let nb = (vals.len() * ku).div_ceil(8);
    for (c, v8) in vals.chunks(8).enumerate() {
        let acc = v8.iter().enumerate().fold(0u64, |a, (j, &v)| {
            a | u64::from(sidx[usize::from(v)]) << (j as u32 * k)
        });
        for b in 0..ku {
            if c * ku + b < nb {
                dst[c * ku + b] = (acc >> (8 * b)) as u8;
            }
        }
    }
}

/// `he_emit`: writes block `b` of plane `x` into `o[..b.size]`. The mask `mk` holds every
/// value of `x` and `x` has `m - b.nz` zero bytes (the write pass checks both).
pub(super) fn emit(x: &[u8], mk: &[u32; 8], b: &Plan, o: &mut [u8]) {
    let m = x.len();
    let mut sidx = [0u8; 256];
    match b.mode {
        0 => {
            o[0] = 0;
            o[1] = b.value;
        }
        1 => {
            o[0] = 1;
            o[1..1 + m].copy_from_slice(x);
        }
        2 => {
            for (v, s) in sidx.iter_mut().enumerate() {
                *s = rank(mk, v, false) as u8;
            }
            o[0] = 2;
            o[1] = b.k as u8;
            o[2] = (b.d - 1) as u8;
            for v in 0..256 {
                if (mk[v >> 5] >> (v & 31)) & 1 != 0 {
                    o[3 + usize::from(sidx[v])] = v as u8;
                }
            }
            pack(x, &sidx, b.k, &mut o[3 + b.d..]);
        }
        _ => {
            let bm = m.div_ceil(8);
            o[0] = 3;
            o[1 + bm] = (b.nz & 255) as u8;
            o[2 + bm] = (b.nz >> 8) as u8;
            o[3 + bm] = b.sub;
            for (q, by) in o[1..1 + bm].iter_mut().enumerate() {
                *by = x[q * 8..(q * 8 + 8).min(m)]
                    .iter()
                    .enumerate()
                    .fold(0u8, |a, (j, &v)| a | (u8::from(v != 0) << j));
            }
            let r = &mut o[4 + bm..];
            if b.sub == 0 {
                r[0] = b.value;
                return;
            }
            // The non-zero bytes in order (the device ranks them by warp prefix sums).
            let mut nzv = [0u8; GROUP];
            for (c, &xi) in x.iter().filter(|&&xi| xi != 0).enumerate() {
                if c < b.nz.min(GROUP) {
                    nzv[c] = xi;
                }
            }
            if b.sub == 1 {
                r[..b.nz].copy_from_slice(&nzv[..b.nz]);
                return;
            }
            for (v, s) in sidx.iter_mut().enumerate() {
                *s = rank(mk, v, true) as u8;
            }
            r[0] = b.k as u8;
            r[1] = (b.d - 1) as u8;
            for v in 1..256 {
                if (mk[v >> 5] >> (v & 31)) & 1 != 0 {
                    r[2 + usize::from(sidx[v])] = v as u8;
                }
            }
            pack(&nzv[..b.nz], &sidx, b.k, &mut r[2 + b.d..]);
        }
    }
}

/// Encodes one block of at most 1024 bytes the way the device does (presence mask, mode by
/// [`bitplane::encode_block`](crate::bitplane::encode_block)'s cost formulas, one output byte per thread); appends it to
/// `dst`. Byte-identical to [`bitplane::encode_block`](crate::bitplane::encode_block) (the tests check it).
pub fn encode_block_as_device(data: &[u8], dst: &mut Vec<u8>) {
    let (mk, z) = mask_of(data);
    let b = plan(&mk, z, data.len());
    let at = dst.len();
    dst.resize(at + b.size, 0);
    emit(data, &mk, &b, &mut dst[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bitplane;
    use crate::datasets::{Dataset, SplitMix64};

    /// Blocks of many shapes: constant, few values, sparse, dense, every value.
    fn blocks() -> Vec<Vec<u8>> {
        let mut r = SplitMix64::new(9);
        let mut out = Vec::new();
        for m in [
            1usize, 2, 3, 7, 8, 9, 31, 33, 100, 255, 256, 511, 777, 1000, 1023, 1024,
        ] {
            for kind in 0..10 {
                let v: Vec<u8> = (0..m)
                    .map(|i| {
                        let x = r.next_u64();
                        match kind {
                            0 => 0,
                            1 => 0x3F,
                            2 => (x % 2) as u8 * 200,
                            3 => [0u8, 0, 0, 0, 0, 0, 0, 5][(x % 8) as usize],
                            4 => {
                                if x.is_multiple_of(3) {
                                    (x >> 8) as u8 % 5 + 1
                                } else {
                                    0
                                }
                            }
                            5 => {
                                if x.is_multiple_of(2) {
                                    (x >> 8) as u8
                                } else {
                                    0
                                }
                            }
                            6 => (x % 128) as u8,
                            7 => (x >> 16) as u8,
                            8 => (i % 256) as u8,
                            _ => {
                                if x.is_multiple_of(5) {
                                    0
                                } else {
                                    (x % 60) as u8 + 1
                                }
                            }
                        }
                    })
                    .collect();
                out.push(v);
            }
        }
        out
    }

    #[test]
    fn device_block_encoder_matches_the_host_encoder() {
        for b in blocks() {
            let mut a = Vec::new();
            bitplane::encode_block(&b, &mut a);
            let mut d = Vec::new();
            encode_block_as_device(&b, &mut d);
            assert_eq!(
                a,
                d,
                "block of {} bytes starting {:?}",
                b.len(),
                &b[..b.len().min(8)]
            );
        }
    }

    #[test]
    fn device_block_encoder_matches_on_dataset_planes() {
        for ds in Dataset::ALL {
            let data = ds.generate(256 << 10, 3);
            let w = ds.width().bytes();
            let n = data.len() / w;
            for g in 0..n.div_ceil(GROUP) {
                let m = (n - g * GROUP).min(GROUP);
                for p in 0..w {
                    let plane: Vec<u8> = (0..m).map(|i| data[(g * GROUP + i) * w + p]).collect();
                    let (mut a, mut d) = (Vec::new(), Vec::new());
                    bitplane::encode_block(&plane, &mut a);
                    encode_block_as_device(&plane, &mut d);
                    assert_eq!(a, d, "{} group {g} plane {p}", ds.name());
                }
            }
        }
    }
}
