//! Host [`Codec`] implementations: [`Lz4`] (LZ4 block format, `lz4_flex`), [`Zstd`]
//! (`zstd`, level configurable) and [`Snappy`] (Snappy raw format, `snap`), each behind its
//! cargo feature; [`Bitplane`](crate::bitplane::Bitplane) lives in its own module.
//!
//! Every decoder treats its input as untrusted: corrupt or truncated input, and input that
//! decodes to a length other than the destination's, is an [`Error::Corrupt`].

use vuma_core::{Codec, Error, Result};

/// An [`Error::Corrupt`] for `codec`.
pub(crate) fn corrupt(codec: &'static str, reason: impl Into<String>) -> Error {
    Error::Corrupt {
        codec,
        reason: reason.into(),
    }
}

/// LZ4 block format (no frame), as `lz4_flex::block` writes it; the device decoder in
/// [`crate::kernels`] reads the same format.
#[cfg(feature = "lz4")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lz4;

#[cfg(feature = "lz4")]
impl Codec for Lz4 {
    fn name(&self) -> &'static str {
        "lz4"
    }
    fn max_compressed_len(&self, len: usize) -> usize {
        lz4_flex::block::get_maximum_output_size(len)
    }
    fn compress(&self, src: &[u8], dst: &mut Vec<u8>) -> Result<usize> {
        let start = dst.len();
        dst.resize(start + self.max_compressed_len(src.len()), 0);
        match lz4_flex::block::compress_into(src, &mut dst[start..]) {
            Ok(n) => {
                dst.truncate(start + n);
                Ok(n)
            }
            Err(e) => {
                dst.truncate(start);
                Err(Error::invalid(format!("lz4 compression failed: {e}")))
            }
        }
    }
    fn decompress(&self, src: &[u8], dst: &mut [u8]) -> Result<()> {
        let n = lz4_flex::block::decompress_into(src, dst)
            .map_err(|e| corrupt("lz4", e.to_string()))?;
        if n != dst.len() {
            return Err(corrupt(
                "lz4",
                format!("decoded {n} bytes, expected {}", dst.len()),
            ));
        }
        Ok(())
    }
}

/// Zstandard (one frame per page, content size recorded), level configurable (default 1).
#[cfg(feature = "zstd")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zstd {
    level: i32,
}

#[cfg(feature = "zstd")]
impl Default for Zstd {
    fn default() -> Self {
        Zstd { level: 1 }
    }
}

#[cfg(feature = "zstd")]
impl Zstd {
    /// Zstd at `level`; levels outside zstd's range are an [`Error::InvalidArgument`].
    pub fn with_level(level: i32) -> Result<Self> {
        let range = zstd::compression_level_range();
        if !range.contains(&level) {
            return Err(Error::invalid(format!(
                "zstd level {level} outside {}..={}",
                range.start(),
                range.end()
            )));
        }
        Ok(Zstd { level })
    }
    /// The compression level.
    pub fn level(&self) -> i32 {
        self.level
    }
}

#[cfg(feature = "zstd")]
impl Codec for Zstd {
    fn name(&self) -> &'static str {
        "zstd"
    }
    fn max_compressed_len(&self, len: usize) -> usize {
        zstd::zstd_safe::compress_bound(len)
    }
    fn compress(&self, src: &[u8], dst: &mut Vec<u8>) -> Result<usize> {
        let start = dst.len();
        dst.resize(start + self.max_compressed_len(src.len()), 0);
        match zstd::bulk::compress_to_buffer(src, &mut dst[start..], self.level) {
            Ok(n) => {
                dst.truncate(start + n);
                Ok(n)
            }
            Err(e) => {
                dst.truncate(start);
                Err(Error::invalid(format!("zstd compression failed: {e}")))
            }
        }
    }
    fn decompress(&self, src: &[u8], dst: &mut [u8]) -> Result<()> {
        let n = zstd::bulk::decompress_to_buffer(src, dst)
            .map_err(|e| corrupt("zstd", e.to_string()))?;
        if n != dst.len() {
            return Err(corrupt(
                "zstd",
                format!("decoded {n} bytes, expected {}", dst.len()),
            ));
        }
        Ok(())
    }
}

/// Snappy raw format (no framing), as `snap::raw` writes it.
#[cfg(feature = "snappy")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snappy;

#[cfg(feature = "snappy")]
impl Codec for Snappy {
    fn name(&self) -> &'static str {
        "snappy"
    }
    fn max_compressed_len(&self, len: usize) -> usize {
        snap::raw::max_compress_len(len)
    }
    fn compress(&self, src: &[u8], dst: &mut Vec<u8>) -> Result<usize> {
        let max = self.max_compressed_len(src.len());
        if max == 0 {
            return Err(Error::invalid(format!(
                "snappy cannot compress {} bytes at once",
                src.len()
            )));
        }
        let start = dst.len();
        dst.resize(start + max, 0);
        match snap::raw::Encoder::new().compress(src, &mut dst[start..]) {
            Ok(n) => {
                dst.truncate(start + n);
                Ok(n)
            }
            Err(e) => {
                dst.truncate(start);
                Err(Error::invalid(format!("snappy compression failed: {e}")))
            }
        }
    }
    fn decompress(&self, src: &[u8], dst: &mut [u8]) -> Result<()> {
        let n = snap::raw::decompress_len(src).map_err(|e| corrupt("snappy", e.to_string()))?;
        if n != dst.len() {
            return Err(corrupt(
                "snappy",
                format!("header says {n} bytes, expected {}", dst.len()),
            ));
        }
        let got = snap::raw::Decoder::new()
            .decompress(src, dst)
            .map_err(|e| corrupt("snappy", e.to_string()))?;
        if got != dst.len() {
            return Err(corrupt(
                "snappy",
                format!("decoded {got} bytes, expected {}", dst.len()),
            ));
        }
        Ok(())
    }
}

/// Identity "codec": the bytes as they are. The planner's `Raw` choice, and a baseline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Raw;

impl Codec for Raw {
    fn name(&self) -> &'static str {
        "raw"
    }
    fn max_compressed_len(&self, len: usize) -> usize {
        len
    }
    fn compress(&self, src: &[u8], dst: &mut Vec<u8>) -> Result<usize> {
        dst.extend_from_slice(src);
        Ok(src.len())
    }
    fn decompress(&self, src: &[u8], dst: &mut [u8]) -> Result<()> {
        if src.len() != dst.len() {
            return Err(corrupt(
                "raw",
                format!("{} bytes stored, expected {}", src.len(), dst.len()),
            ));
        }
        dst.copy_from_slice(src);
        Ok(())
    }
}

/// Every host codec compiled in (by feature), plus the bitplane and float codecs for
/// `width`.
pub fn all_codecs(width: crate::page::ElemWidth) -> Vec<Box<dyn Codec>> {
    let v: Vec<Box<dyn Codec>> = vec![
        #[cfg(feature = "lz4")]
        Box::new(Lz4),
        #[cfg(feature = "zstd")]
        Box::new(Zstd::default()),
        #[cfg(feature = "snappy")]
        Box::new(Snappy),
        Box::new(crate::bitplane::Bitplane::new(width)),
        Box::new(crate::floatcodec::FloatCodec::new(width)),
    ];
    v
}

/// Appends the LZ4 block encoding of `page` to `out` (an LZ4 page of a chunk image).
#[cfg(feature = "lz4")]
pub(crate) fn lz4_encode_page(page: &[u8], out: &mut Vec<u8>) -> Result<()> {
    Lz4.compress(page, out).map(|_| ())
}

/// LZ4 pages need the `lz4` feature to be encoded.
#[cfg(not(feature = "lz4"))]
pub(crate) fn lz4_encode_page(_page: &[u8], _out: &mut Vec<u8>) -> Result<()> {
    Err(Error::invalid(
        "lz4 encoding needs vuma-hyperloop's `lz4` feature",
    ))
}
