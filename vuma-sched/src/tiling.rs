//! Tile-based dispatch: a working set larger than the device's L2 is cut into tiles that fit
//! in about half of it (the other half holds the tile being transferred and the outputs), so
//! that the transfer of tile i+1 can overlap the compute on tile i.

use std::ops::Range;

/// The smallest tile [`tiles`] makes, whatever the cache size: 64 KiB (a tiny or bogus L2
/// must not turn a large working set into millions of ranges).
pub const MIN_TILE_BYTES: u64 = 64 << 10;

/// The tile size for a cache of `l2_bytes`: half of it rounded down to a multiple of
/// `align` (0 counts as 1), at least [`MIN_TILE_BYTES`] rounded up to `align`. `None` when
/// the cache size is unknown (0).
pub fn tile_size(l2_bytes: u64, align: u64) -> Option<u64> {
    if l2_bytes == 0 {
        return None;
    }
    let align = align.max(1);
    let half = (l2_bytes / 2) / align * align;
    let floor = MIN_TILE_BYTES.div_ceil(align).saturating_mul(align);
    Some(half.max(floor))
}

/// The tiles of a working set, lazily (see [`plan_tiles`]).
#[derive(Debug, Clone)]
pub struct Tiles {
    next: u64,
    end: u64,
    tile: u64,
}

impl Iterator for Tiles {
    type Item = Range<u64>;
    fn next(&mut self) -> Option<Range<u64>> {
        if self.next >= self.end {
            return None;
        }
        let start = self.next;
        let stop = start.saturating_add(self.tile).min(self.end);
        self.next = stop;
        Some(start..stop)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = (self.end - self.next).div_ceil(self.tile.max(1));
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        (n, Some(n))
    }
}

impl ExactSizeIterator for Tiles {}

/// The tiles of `working_set` bytes for a device with `l2_bytes` of L2, lazily: ranges that
/// cover `0..working_set` exactly, in order, each starting at a multiple of `align` and at
/// most [`tile_size`] long. An unknown L2 (0) or a working set that fits gives one tile; an
/// empty working set gives none.
pub fn tiles(working_set: u64, l2_bytes: u64, align: u64) -> Tiles {
    let tile = tile_size(l2_bytes, align).unwrap_or(working_set).max(1);
    Tiles {
        next: 0,
        end: working_set,
        tile,
    }
}

/// The tiles of `working_set` bytes for a device with `l2_bytes` of L2 cache, each fitting in
/// about half the L2 and aligned to `align`; see [`tiles`] for the exact rules.
pub fn plan_tiles(working_set: u64, l2_bytes: u64, align: u64) -> Vec<Range<u64>> {
    tiles(working_set, l2_bytes, align).collect()
}
