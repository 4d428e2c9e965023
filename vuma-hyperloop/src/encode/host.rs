//! The host variants of the two encoder kernels (`hl_enc_size`, `hl_enc_write`), of
//! identical semantics to the CUDA C of `src/encode.cu` (same arguments, grid, outputs and
//! status flags; another block shape writes nothing or flags every page), for
//! [`vuma_core::HostDevice`]; and the little-endian word access they share with the
//! encoder.

use vuma_core::{Error, HostLaunch, Result, Scalar};

use super::block::{emit, mask_of, plan, Plan};
use super::{BLOCK, FLAG_JOB, FLAG_SIZE, JOB_BYTES, REC, STAT};
use crate::bitplane::{GROUP, HEADER, MAGIC};
use crate::kernels::{Entry, ENTRY_BYTES};

fn geom_ok(ps: u32, w: u32) -> bool {
    matches!(w, 1 | 2 | 4) && (1024..=65536).contains(&ps) && ps.is_multiple_of(1024)
}

pub(super) fn rd32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn rd64(b: &[u8], at: usize) -> u64 {
    u64::from(rd32(b, at)) | (u64::from(rd32(b, at + 4)) << 32)
}

fn wr32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Statistics slots of a page of `ps` bytes of `w`-byte elements (`he_slots`).
pub(super) fn slots_of(ps: usize, w: usize) -> usize {
    ps.div_ceil(w * GROUP) * w
}

/// The planes of group `g` (elements `e0..e0+m` of `w` bytes at `s`).
fn group_planes(s: &[u8], e0: usize, m: usize, w: usize, pl: &mut [[u8; GROUP]; 4]) {
    for (j, &v) in s[e0 * w..(e0 + m) * w].iter().enumerate() {
        pl[j % w][j / w] = v;
    }
}

pub(super) fn host_enc_size(l: &mut HostLaunch<'_>) -> Result<()> {
    let [Scalar::U64(src_len), Scalar::U32(npages), Scalar::U32(ps), Scalar::U32(w)] =
        l.scalars[..]
    else {
        return Err(Error::invalid(
            "hl_enc_size takes (src, src_len: u64, records, stats, summary, npages: u32, page_size: u32, width: u32)",
        ));
    };
    let [src, rec, stats, sum] = &mut l.buffers[..] else {
        return Err(Error::invalid(
            "hl_enc_size takes four buffers: src, records, stats, summary",
        ));
    };
    let np = npages as usize;
    if src_len > src.len() as u64 || rec.len() < np * REC * 4 || sum.len() < np * 8 {
        return Err(Error::invalid(
            "hl_enc_size: src_len exceeds src, or records/summary too small for npages",
        ));
    }
    if !geom_ok(ps, w) || l.config.block != BLOCK {
        return Ok(()); // as on the device: a bad geometry writes nothing
    }
    let (ps, w) = (ps as usize, w as usize);
    let slots = slots_of(ps, w);
    if stats.len() < np * slots * STAT * 4 {
        return Err(Error::invalid("hl_enc_size: stats too small for npages"));
    }
    let src = &src[..src_len as usize];
    let mut pl = [[0u8; GROUP]; 4];
    for page in 0..np {
        let start = page * ps;
        if start >= src.len() {
            break;
        }
        let s = &src[start..(start + ps).min(src.len())];
        let n = s.len() / w;
        let groups = n.div_ceil(GROUP);
        let mut tot = rd32(sum, 8 * page);
        let mut nzf = rd32(sum, 8 * page + 4);
        if s[n * w..].iter().any(|&b| b != 0) {
            nzf |= 1;
        }
        for g in 0..groups {
            let e0 = g * GROUP;
            let m = (n - e0).min(GROUP);
            group_planes(s, e0, m, w, &mut pl);
            for (p, x) in pl.iter().enumerate().take(w) {
                let (mk, z) = mask_of(&x[..m]);
                let b = plan(&mk, z, m);
                let at = 4 * STAT * (page * slots + g * w + p);
                for (q, &word) in mk.iter().enumerate() {
                    wr32(stats, at + 4 * q, word);
                }
                wr32(stats, at + 32, z as u32);
                wr32(rec, 4 * (page * REC + g * w + p), b.size as u32);
                tot = tot.wrapping_add(b.size as u32);
                if z != m {
                    nzf |= 1;
                }
            }
        }
        wr32(sum, 8 * page, tot);
        wr32(sum, 8 * page + 4, nzf);
    }
    Ok(())
}

fn flag(status: &mut [u8], f: u32, page: usize) {
    let old = rd32(status, 0);
    wr32(status, 0, old | f);
    let first = rd32(status, 4);
    wr32(status, 4, first.min(page as u32));
}

pub(super) fn host_enc_write(l: &mut HostLaunch<'_>) -> Result<()> {
    let [Scalar::U64(src_len), Scalar::U64(out_len), Scalar::U32(npages), Scalar::U32(ps), Scalar::U32(w), Scalar::U32(page0)] =
        l.scalars[..]
    else {
        return Err(Error::invalid(
            "hl_enc_write takes (src, src_len: u64, records, stats, jobs, out, out_len: u64, status, npages: u32, page_size: u32, width: u32, page0: u32)",
        ));
    };
    let [src, rec, stats, jobs, out, status] = &mut l.buffers[..] else {
        return Err(Error::invalid(
            "hl_enc_write takes six buffers: src, records, stats, jobs, out, status",
        ));
    };
    let np = npages as usize;
    if src_len > src.len() as u64
        || out_len > out.len() as u64
        || rec.len() < np * REC * 4
        || jobs.len() < np * JOB_BYTES
        || status.len() < 8
    {
        return Err(Error::invalid(
            "hl_enc_write: src_len/out_len exceed their buffers, records/jobs too small for npages, or status < 8 bytes",
        ));
    }
    let slots = if geom_ok(ps, w) {
        slots_of(ps as usize, w as usize)
    } else {
        0
    };
    if stats.len() < np * slots * STAT * 4 {
        return Err(Error::invalid("hl_enc_write: stats too small for npages"));
    }
    let src = &src[..src_len as usize];
    let out = &mut out[..out_len as usize];
    let (ps64, w64) = (u64::from(ps), u64::from(w));
    // Pages page0..npages, one block row each on the device (the grid covers the rest).
    let last = np.min(page0 as usize + l.config.grid[0] as usize);
    let pages = (page0 as usize).min(last)..last;
    if l.config.block != BLOCK {
        for page in pages {
            flag(status, FLAG_JOB, page);
        }
        return Ok(());
    }
    for page in pages {
        let jb = &jobs[page * JOB_BYTES..(page + 1) * JOB_BYTES];
        let coff = rd64(jb, 0);
        let idx = u64::from(rd32(jb, 8));
        let en = &jb[16..16 + ENTRY_BYTES];
        let e = Entry::read(en, 0);
        let (soff, slen, dlen, kind) = (e.src_off, u64::from(e.src_len), e.dst_len, e.kind);
        let start = page as u64 * ps64;
        let ok = geom_ok(ps, w)
            && start < src_len
            && e.dst_off == start
            && u64::from(e.width) == w64
            && u64::from(dlen) == (src_len - start).min(ps64)
            && coff <= out_len
            && idx * 32 + 32 <= out_len - coff
            && soff <= out_len - coff
            && soff % 16 == 0
            && (soff + slen).next_multiple_of(16) <= out_len - coff
            && match kind {
                0 => slen == 0,
                1 | 4 => slen == u64::from(dlen),
                2 => true,
                _ => false,
            };
        if !ok {
            flag(status, FLAG_JOB, page);
            continue;
        }
        let (w, dlen) = (w as usize, dlen as usize);
        let n = dlen / w;
        let groups = n.div_ceil(GROUP);
        let tail = dlen % w;
        let entries = groups * w + 1;
        let hdr_end = HEADER + 4 * entries + tail;
        let r: Vec<u32> = (0..REC).map(|j| rd32(rec, 4 * (page * REC + j))).collect();
        if kind == 2 {
            let sizes = &r[..entries - 1];
            let tot: u64 = sizes.iter().map(|&x| u64::from(x)).sum();
            if sizes.iter().any(|&x| !(2..=1025).contains(&x)) || hdr_end as u64 + tot != slen {
                flag(status, FLAG_SIZE, page);
                continue;
            }
        }
        let o = &mut out[coff as usize..];
        let at = idx as usize * 32;
        o[at..at + 32].copy_from_slice(en);
        let pend = (soff + slen) as usize;
        o[pend..pend.next_multiple_of(16)].fill(0);
        let s = &src[start as usize..start as usize + dlen];
        let po = &mut o[soff as usize..pend];
        match kind {
            0 => continue,
            1 | 4 => {
                po.copy_from_slice(s);
                continue;
            }
            _ => {}
        }
        po[0] = MAGIC;
        po[1] = w as u8;
        po[2..4].copy_from_slice(&(groups as u16).to_le_bytes());
        po[4..8].copy_from_slice(&(dlen as u32).to_le_bytes());
        // Entry j: the end of the header plus the sizes of the blocks before j.
        let mut a = hdr_end as u32;
        for (j, &size) in r.iter().enumerate().take(entries - 1) {
            wr32(po, HEADER + 4 * j, a);
            a += size;
        }
        wr32(po, HEADER + 4 * (entries - 1), a);
        po[HEADER + 4 * entries..hdr_end].copy_from_slice(&s[n * w..]);
        let mut pl = [[0u8; GROUP]; 4];
        let mut ost = [0u8; 4 * (GROUP + 1)];
        for g in 0..groups {
            let e0 = g * GROUP;
            let m = (n - e0).min(GROUP);
            group_planes(s, e0, m, w, &mut pl);
            let ga = hdr_end + r[..g * w].iter().map(|&x| x as usize).sum::<usize>();
            let glen: usize = r[g * w..g * w + w].iter().map(|&x| x as usize).sum();
            let mut at = 0;
            let mut same = true;
            for (p, x) in pl.iter().enumerate().take(w) {
                let x = &x[..m];
                let st = 4 * STAT * (page * slots + g * w + p);
                let mk: [u32; 8] = std::array::from_fn(|q| rd32(stats, st + 4 * q));
                let z = rd32(stats, st + 32) as usize;
                // The statistics must be those of the data (zero count, every byte in the
                // mask) and give the record's size.
                let b = (z <= m).then(|| plan(&mk, z, m));
                let fits = |b: &Plan| {
                    b.size == r[g * w + p] as usize
                        && x.iter().filter(|&&v| v == 0).count() == z
                        && x.iter()
                            .all(|&v| (mk[usize::from(v >> 5)] >> (v & 31)) & 1 != 0)
                };
                let Some(b) = b.filter(fits) else {
                    same = false;
                    break;
                };
                emit(x, &mk, &b, &mut ost[at..at + b.size]);
                at += b.size;
            }
            if !same {
                flag(status, FLAG_SIZE, page);
                continue;
            }
            po[ga..ga + glen].copy_from_slice(&ost[..glen]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bitplane;
    use crate::datasets;
    use crate::encode::encoder::whole;
    use crate::encode::{encode_grid, encoders, stats_bytes};
    use crate::kernels::PageKind;
    use crate::page::ElemWidth;
    use vuma_core::{AccessMode, Arg, DynDevice, HostDevice, LaunchConfig, Placement};

    /// Runs `hl_enc_write` on the host over 3 pages of a 192 KiB buffer with `jobs`, after
    /// the size pass and the given changes to its records and statistics (word index,
    /// value); returns the status and the output.
    fn write_pass(jobs: &[u8], out_len: u64, rec_tamper: &[(usize, u32)]) -> ([u8; 8], Vec<u8>) {
        write_pass_with(jobs, out_len, rec_tamper, &[], BLOCK)
    }

    fn write_pass_with(
        jobs: &[u8],
        out_len: u64,
        rec_tamper: &[(usize, u32)],
        stat_tamper: &[(usize, u32)],
        block: [u32; 3],
    ) -> ([u8; 8], Vec<u8>) {
        let host = HostDevice::new();
        let data = datasets::relu_f32(3 << 16, 5);
        let np = 3usize;
        let src = DynDevice::alloc(&host, data.len() as u64, Placement::DeviceLocal).unwrap();
        DynDevice::write(&host, src.as_ref(), 0, &data).unwrap();
        let rec = DynDevice::alloc(&host, (np * REC * 4) as u64, Placement::DeviceLocal).unwrap();
        let stats = DynDevice::alloc(
            &host,
            stats_bytes(np, 64 << 10, ElemWidth::F32),
            Placement::DeviceLocal,
        )
        .unwrap();
        let sums = DynDevice::alloc(&host, 8 * np as u64, Placement::DeviceLocal).unwrap();
        DynDevice::fill(&host, sums.as_ref(), 0, 8 * np as u64, 0).unwrap();
        let g = encode_grid(np as u32, 64 << 10, ElemWidth::F32);
        let sc = |v: u32| Arg::Scalar(Scalar::U32(v));
        DynDevice::launch(
            &host,
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
        for &(at, v) in rec_tamper {
            DynDevice::write(&host, rec.as_ref(), 4 * at as u64, &v.to_le_bytes()).unwrap();
        }
        for &(at, v) in stat_tamper {
            DynDevice::write(&host, stats.as_ref(), 4 * at as u64, &v.to_le_bytes()).unwrap();
        }
        let g = LaunchConfig { block, ..g };
        let jb = DynDevice::alloc(&host, jobs.len() as u64, Placement::DeviceLocal).unwrap();
        DynDevice::write(&host, jb.as_ref(), 0, jobs).unwrap();
        let out = DynDevice::alloc(&host, out_len + 4096, Placement::DeviceLocal).unwrap();
        DynDevice::fill(&host, out.as_ref(), 0, out_len + 4096, 0xAB).unwrap();
        let status = DynDevice::alloc(&host, 8, Placement::DeviceLocal).unwrap();
        let mut init = [0u8; 8];
        init[4..].copy_from_slice(&u32::MAX.to_le_bytes());
        DynDevice::write(&host, status.as_ref(), 0, &init).unwrap();
        DynDevice::launch(
            &host,
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
        DynDevice::read(&host, status.as_ref(), 0, &mut st).unwrap();
        let mut back = vec![0u8; (out_len + 4096) as usize];
        DynDevice::read(&host, out.as_ref(), 0, &mut back).unwrap();
        assert!(
            back[out_len as usize..].iter().all(|&b| b == 0xAB),
            "write past out_len"
        );
        (st, back)
    }

    fn job(chunk_off: u64, index: u32, e: Entry) -> Vec<u8> {
        let mut j = vec![0u8; JOB_BYTES];
        j[0..8].copy_from_slice(&chunk_off.to_le_bytes());
        j[8..12].copy_from_slice(&index.to_le_bytes());
        j[16..48].copy_from_slice(&e.to_bytes());
        j
    }

    fn raw_entry(p: u64, src_off: u64) -> Entry {
        Entry {
            src_off,
            src_len: 64 << 10,
            dst_len: 64 << 10,
            dst_off: p << 16,
            kind: PageKind::Raw as u8,
            width: 4,
        }
    }

    #[test]
    fn write_pass_flags_bad_jobs_and_never_writes_outside() {
        let out_len = 3 * (64 << 10) + 96;
        // A good job set: three raw pages.
        let good: Vec<u8> = (0..3u64)
            .flat_map(|p| job(0, p as u32, raw_entry(p, 96 + (p << 16))))
            .collect();
        let (st, out) = write_pass(&good, out_len, &[]);
        assert_eq!(rd32(&st, 0), 0);
        let data = datasets::relu_f32(3 << 16, 5);
        assert!(out[96..96 + (3 << 16)] == data[..]);
        // Page 1 past the output, page 2 with the wrong destination, page 0 a bad kind.
        let mut bad = good.clone();
        bad[JOB_BYTES..2 * JOB_BYTES].copy_from_slice(&job(0, 1, raw_entry(1, out_len - 16)));
        let mut e = raw_entry(2, 96 + (2 << 16));
        e.dst_off = 0;
        bad[2 * JOB_BYTES..].copy_from_slice(&job(0, 2, e));
        let mut e = raw_entry(0, 96);
        e.kind = 9;
        bad[..JOB_BYTES].copy_from_slice(&job(0, 0, e));
        let (st, _) = write_pass(&bad, out_len, &[]);
        assert_eq!((rd32(&st, 0), rd32(&st, 4)), (FLAG_JOB, 0));
        // A misaligned page and an entry index past the output.
        let mut bad = good.clone();
        bad[..JOB_BYTES].copy_from_slice(&job(0, 0, raw_entry(0, 97)));
        bad[JOB_BYTES..2 * JOB_BYTES].copy_from_slice(&job(out_len, 1, raw_entry(1, 0)));
        let (st, _) = write_pass(&bad, out_len, &[]);
        assert_eq!((rd32(&st, 0), rd32(&st, 4)), (FLAG_JOB, 0));
    }

    #[test]
    fn write_pass_flags_sizes_that_disagree() {
        // Page 0 as a bitplane page whose length the records do not give.
        let e = Entry {
            src_off: 96,
            src_len: 1000,
            dst_len: 64 << 10,
            dst_off: 0,
            kind: PageKind::Bitplane as u8,
            width: 4,
        };
        let mut jobs = job(0, 0, e);
        for p in 1..3u64 {
            jobs.extend(job(
                0,
                p as u32,
                Entry {
                    kind: PageKind::Zero as u8,
                    src_len: 0,
                    ..raw_entry(p, 96 + 1008)
                },
            ));
        }
        let (st, out) = write_pass(&jobs, 4096, &[]);
        assert_eq!((rd32(&st, 0), rd32(&st, 4)), (FLAG_SIZE, 0));
        assert!(
            out[96..1096].iter().all(|&b| b == 0xAB),
            "flagged page written"
        );
        // The right length, but a record that disagrees with the data.
        let data = datasets::relu_f32(64 << 10, 5);
        let mut enc = Vec::new();
        bitplane::encode_page(&data, ElemWidth::F32, &mut enc).unwrap();
        let e = Entry {
            src_len: enc.len() as u32,
            ..e
        };
        let mut jobs = job(0, 0, e);
        for p in 1..3u64 {
            jobs.extend(job(
                0,
                p as u32,
                Entry {
                    kind: PageKind::Zero as u8,
                    src_len: 0,
                    ..raw_entry(p, 96)
                },
            ));
        }
        let (st, out) = write_pass(&jobs, 96 + enc.len() as u64 + 16, &[]);
        assert_eq!(rd32(&st, 0), 0);
        assert!(
            out[96..96 + enc.len()] == enc[..],
            "bitplane page differs from the host encoder"
        );
        // Swap two records: totals agree, per-block sizes do not.
        let (a, b) = (0usize, 3usize);
        let mut s = [0u32; 2];
        for (k, i) in [a, b].into_iter().enumerate() {
            s[k] = rd32(&enc, HEADER + 4 * (i + 1)) - rd32(&enc, HEADER + 4 * i);
        }
        assert_ne!(s[0], s[1], "pick two blocks of different sizes");
        {
            let (st, _) = write_pass(&jobs, 96 + enc.len() as u64 + 16, &[(a, s[1]), (b, s[0])]);
            assert_eq!((rd32(&st, 0), rd32(&st, 4)), (FLAG_SIZE, 0));
        }
    }

    /// The jobs of `write_pass_flags_sizes_that_disagree`'s good case: page 0 a bitplane
    /// page, pages 1 and 2 zero pages; and the host encoder's image of page 0.
    fn bitplane_jobs() -> (Vec<u8>, Vec<u8>) {
        let data = datasets::relu_f32(64 << 10, 5);
        let mut enc = Vec::new();
        bitplane::encode_page(&data, ElemWidth::F32, &mut enc).unwrap();
        let e = Entry {
            src_off: 96,
            src_len: enc.len() as u32,
            dst_len: 64 << 10,
            dst_off: 0,
            kind: PageKind::Bitplane as u8,
            width: 4,
        };
        let mut jobs = job(0, 0, e);
        for p in 1..3u64 {
            jobs.extend(job(
                0,
                p as u32,
                Entry {
                    kind: PageKind::Zero as u8,
                    src_len: 0,
                    ..raw_entry(p, 96)
                },
            ));
        }
        (jobs, enc)
    }

    #[test]
    fn write_pass_checks_the_statistics() {
        let (jobs, enc) = bitplane_jobs();
        let out_len = 96 + enc.len() as u64 + 16;
        let run =
            |stat_tamper: &[(usize, u32)]| write_pass_with(&jobs, out_len, &[], stat_tamper, BLOCK);
        let (st, out) = run(&[]);
        assert_eq!(rd32(&st, 0), 0);
        assert!(out[96..96 + enc.len()] == enc[..]);
        // Plane 0 of group 0 (slot 0): the low mantissa bytes, many distinct values.
        let data = datasets::relu_f32(64 << 10, 5);
        let x: Vec<u8> = (0..GROUP).map(|i| data[4 * i]).collect();
        let (mk, z) = mask_of(&x);
        let size = plan(&mk, z, GROUP).size;
        // A zero count past the group.
        let (st, _) = run(&[(8, GROUP as u32 + 1)]);
        assert_eq!((rd32(&st, 0), rd32(&st, 4)), (FLAG_SIZE, 0));
        // A zero count off by one.
        let (st, _) = run(&[(8, z as u32 + 1)]);
        assert_eq!((rd32(&st, 0), rd32(&st, 4)), (FLAG_SIZE, 0));
        // A value that occurs missing from the mask, the block size unchanged: only the
        // check against the data finds it.
        let v = *x.iter().rfind(|&&v| v != 0).unwrap();
        let mut bad = mk;
        bad[usize::from(v >> 5)] &= !(1 << (v & 31));
        assert_eq!(
            plan(&bad, z, GROUP).size,
            size,
            "pick a value that keeps the size"
        );
        let q = usize::from(v >> 5);
        let (st, out) = run(&[(q, bad[q])]);
        assert_eq!((rd32(&st, 0), rd32(&st, 4)), (FLAG_SIZE, 0));
        // The other groups are still written; group 0 (right after the header) is not.
        let hdr_end = rd32(&enc, HEADER) as usize;
        let g1 = rd32(&enc, HEADER + 4 * 4) as usize;
        assert!(out[96 + hdr_end..96 + g1].iter().all(|&b| b == 0xAB));
        assert!(out[96 + g1..96 + enc.len()] == enc[g1..]);
        // Garbage everywhere in slot 5: never a write outside the page (write_pass checks
        // the guard), always flagged.
        let junk: Vec<(usize, u32)> = (0..STAT)
            .map(|i| (5 * STAT + i, 0x9E37_79B9u32.rotate_left(i as u32)))
            .collect();
        let (st, _) = run(&junk);
        assert_eq!((rd32(&st, 0), rd32(&st, 4)), (FLAG_SIZE, 0));
    }

    #[test]
    fn kernels_refuse_other_block_shapes() {
        let (jobs, enc) = bitplane_jobs();
        let out_len = 96 + enc.len() as u64 + 16;
        for block in [[128, 1, 1], [256, 2, 1], [512, 1, 1]] {
            let (st, out) = write_pass_with(&jobs, out_len, &[], &[], block);
            assert_eq!((rd32(&st, 0), rd32(&st, 4)), (FLAG_JOB, 0));
            assert!(out.iter().all(|&b| b == 0xAB), "{block:?}: wrote");
        }
        // The size pass writes nothing.
        let host = HostDevice::new();
        let data = datasets::relu_f32(1 << 16, 5);
        let src = DynDevice::alloc(&host, data.len() as u64, Placement::DeviceLocal).unwrap();
        DynDevice::write(&host, src.as_ref(), 0, &data).unwrap();
        let rec = DynDevice::alloc(&host, (REC * 4) as u64, Placement::DeviceLocal).unwrap();
        let nst = stats_bytes(1, 64 << 10, ElemWidth::F32);
        let stats = DynDevice::alloc(&host, nst, Placement::DeviceLocal).unwrap();
        let sums = DynDevice::alloc(&host, 8, Placement::DeviceLocal).unwrap();
        for b in [rec.as_ref(), stats.as_ref(), sums.as_ref()] {
            DynDevice::fill(&host, b, 0, b.len(), 0x5A).unwrap();
        }
        let g = LaunchConfig {
            block: [128, 1, 1],
            ..encode_grid(1, 64 << 10, ElemWidth::F32)
        };
        let sc = |v: u32| Arg::Scalar(Scalar::U32(v));
        DynDevice::launch(
            &host,
            &encoders().size,
            &g,
            &[
                whole(src.as_ref(), AccessMode::Read),
                Arg::Scalar(Scalar::U64(data.len() as u64)),
                whole(rec.as_ref(), AccessMode::ReadWrite),
                whole(stats.as_ref(), AccessMode::ReadWrite),
                whole(sums.as_ref(), AccessMode::ReadWrite),
                sc(1),
                sc(64 << 10),
                sc(4),
            ],
        )
        .unwrap();
        for b in [rec.as_ref(), stats.as_ref(), sums.as_ref()] {
            let mut v = vec![0u8; b.len() as usize];
            DynDevice::read(&host, b, 0, &mut v).unwrap();
            assert!(v.iter().all(|&x| x == 0x5A));
        }
    }
}
