//! Host reference of the device LZ4 block decoder: the same algorithm and the same checks as
//! the CUDA kernel in [`crate::kernels`] (one warp per page there), so that host and device
//! agree on every input, valid or corrupt.
//!
//! Standard LZ4 block format (as `lz4_flex::block` and liblz4 write it): sequences of a token
//! (high nibble literal length, low nibble match length − 4, 15 = more bytes follow, each 255
//! = continue), the literals, a little-endian u16 offset and the match length extension; the
//! last sequence has literals only and ends the input.

use vuma_core::Result;

use crate::codecs::corrupt;

fn bad(reason: &str) -> vuma_core::Error {
    corrupt("lz4", reason)
}

/// Decodes the LZ4 block `src` into `dst`, which must be exactly the original length.
/// Corrupt or truncated input is an [`vuma_core::Error::Corrupt`]; no byte outside `dst` is
/// ever written and no byte outside `src` read.
pub fn decode(src: &[u8], dst: &mut [u8]) -> Result<()> {
    let (slen, dlen) = (src.len(), dst.len());
    let (mut ip, mut op) = (0usize, 0usize);
    loop {
        if ip >= slen {
            return Err(bad("truncated: token expected"));
        }
        let token = src[ip];
        ip += 1;
        let mut lit = usize::from(token >> 4);
        if lit == 15 {
            loop {
                if ip >= slen {
                    return Err(bad("truncated literal length"));
                }
                let b = src[ip];
                ip += 1;
                lit += usize::from(b);
                if lit > dlen {
                    return Err(bad("literal length too long"));
                }
                if b != 255 {
                    break;
                }
            }
        }
        if lit > slen - ip || lit > dlen - op {
            return Err(bad("literals out of range"));
        }
        dst[op..op + lit].copy_from_slice(&src[ip..ip + lit]);
        ip += lit;
        op += lit;
        if ip == slen {
            break;
        }
        if slen - ip < 2 {
            return Err(bad("truncated offset"));
        }
        let off = usize::from(u16::from_le_bytes([src[ip], src[ip + 1]]));
        ip += 2;
        if off == 0 || off > op {
            return Err(bad("match offset out of range"));
        }
        let mut ml = usize::from(token & 15);
        if ml == 15 {
            loop {
                if ip >= slen {
                    return Err(bad("truncated match length"));
                }
                let b = src[ip];
                ip += 1;
                ml += usize::from(b);
                if ml > dlen {
                    return Err(bad("match length too long"));
                }
                if b != 255 {
                    break;
                }
            }
        }
        ml += 4;
        if ml > dlen - op {
            return Err(bad("match out of range"));
        }
        let from = op - off;
        for j in 0..ml {
            dst[op + j] = dst[from + j % off];
        }
        op += ml;
    }
    if op != dlen {
        return Err(bad("decoded length mismatch"));
    }
    Ok(())
}
