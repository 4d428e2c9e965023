//! [`CompressedStore`]: host-side store for cold pages evicted from a device. Pages go in
//! compressed (zstd or lz4, any [`Codec`]), all-zero pages as a marker only, pages that do
//! not shrink as they are; the store tracks the bytes it saves.

use vuma_core::{Codec, Error, Result};

use crate::page::is_zero;

/// A handle to one stored page (stale handles are detected, never aliased).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StoreHandle {
    slot: u32,
    generation: u32,
}

#[derive(Debug)]
enum Stored {
    Zero,
    Raw(Vec<u8>),
    Compressed(Vec<u8>),
}

#[derive(Debug)]
struct Slot {
    generation: u32,
    entry: Option<(usize, Stored)>,
}

/// Totals of a [`CompressedStore`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Pages held.
    pub pages: usize,
    /// Uncompressed bytes held.
    pub bytes_in: u64,
    /// Bytes actually stored.
    pub bytes_stored: u64,
    /// All-zero pages held (stored as a marker).
    pub zero_pages: usize,
    /// Pages stored raw (did not shrink).
    pub raw_pages: usize,
}

impl StoreStats {
    /// Bytes saved by compression.
    pub fn bytes_saved(&self) -> u64 {
        self.bytes_in.saturating_sub(self.bytes_stored)
    }
}

/// The host-side compressed store for evicted pages.
#[derive(Debug)]
pub struct CompressedStore {
    codec: Box<dyn Codec>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    stats: StoreStats,
}

impl CompressedStore {
    /// A store compressing with `codec`.
    pub fn new(codec: Box<dyn Codec>) -> Self {
        CompressedStore {
            codec,
            slots: Vec::new(),
            free: Vec::new(),
            stats: StoreStats::default(),
        }
    }

    /// A store with zstd level 1 (or lz4, or none, by the features compiled in).
    pub fn with_default_codec() -> Self {
        #[cfg(feature = "zstd")]
        let c: Box<dyn Codec> = Box::new(crate::codecs::Zstd::default());
        #[cfg(all(not(feature = "zstd"), feature = "lz4"))]
        let c: Box<dyn Codec> = Box::new(crate::codecs::Lz4);
        #[cfg(all(not(feature = "zstd"), not(feature = "lz4")))]
        let c: Box<dyn Codec> = Box::new(crate::codecs::Raw);
        Self::new(c)
    }

    /// The codec's name.
    pub fn codec_name(&self) -> &'static str {
        self.codec.name()
    }

    /// Stores `page`; returns its handle.
    pub fn put(&mut self, page: &[u8]) -> Result<StoreHandle> {
        let stored = if is_zero(page) {
            self.stats.zero_pages += 1;
            Stored::Zero
        } else {
            let mut out = Vec::with_capacity(page.len() / 2);
            self.codec.compress(page, &mut out)?;
            if out.len() < page.len() {
                out.shrink_to_fit();
                Stored::Compressed(out)
            } else {
                self.stats.raw_pages += 1;
                Stored::Raw(page.to_vec())
            }
        };
        let size = match &stored {
            Stored::Zero => 0,
            Stored::Raw(v) | Stored::Compressed(v) => v.len() as u64,
        };
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                let s = u32::try_from(self.slots.len())
                    .map_err(|_| Error::invalid("compressed store is full (2^32 pages)"))?;
                self.slots.push(Slot {
                    generation: 0,
                    entry: None,
                });
                s
            }
        };
        let sl = &mut self.slots[slot as usize];
        sl.entry = Some((page.len(), stored));
        self.stats.pages += 1;
        self.stats.bytes_in += page.len() as u64;
        self.stats.bytes_stored += size;
        Ok(StoreHandle {
            slot,
            generation: sl.generation,
        })
    }

    fn entry(&self, h: StoreHandle) -> Result<&(usize, Stored)> {
        self.slots
            .get(h.slot as usize)
            .filter(|s| s.generation == h.generation)
            .and_then(|s| s.entry.as_ref())
            .ok_or_else(|| Error::invalid(format!("stale or unknown store handle {h:?}")))
    }

    /// Uncompressed length of the page behind `h`.
    pub fn page_len(&self, h: StoreHandle) -> Result<usize> {
        self.entry(h).map(|e| e.0)
    }

    /// Decompresses the page behind `h` into `out` (exactly its length).
    pub fn get_into(&self, h: StoreHandle, out: &mut [u8]) -> Result<()> {
        let (len, stored) = self.entry(h)?;
        if out.len() != *len {
            return Err(Error::invalid(format!(
                "page is {len} bytes, output {}",
                out.len()
            )));
        }
        match stored {
            Stored::Zero => out.fill(0),
            Stored::Raw(v) => out.copy_from_slice(v),
            Stored::Compressed(v) => self.codec.decompress(v, out)?,
        }
        Ok(())
    }

    /// The page behind `h`.
    pub fn get(&self, h: StoreHandle) -> Result<Vec<u8>> {
        let mut out = vec![0u8; self.page_len(h)?];
        self.get_into(h, &mut out)?;
        Ok(out)
    }

    /// Removes the page behind `h` and returns it; the handle becomes stale.
    pub fn take(&mut self, h: StoreHandle) -> Result<Vec<u8>> {
        let page = self.get(h)?;
        let sl = &mut self.slots[h.slot as usize];
        if let Some((len, stored)) = sl.entry.take() {
            self.stats.pages -= 1;
            self.stats.bytes_in -= len as u64;
            match stored {
                Stored::Zero => self.stats.zero_pages -= 1,
                Stored::Raw(v) => {
                    self.stats.raw_pages -= 1;
                    self.stats.bytes_stored -= v.len() as u64;
                }
                Stored::Compressed(v) => self.stats.bytes_stored -= v.len() as u64,
            }
        }
        sl.generation = sl.generation.wrapping_add(1);
        self.free.push(h.slot);
        Ok(page)
    }

    /// Totals.
    pub fn stats(&self) -> StoreStats {
        self.stats
    }
}
