//! The [`Codec`] trait: a byte compressor for Hyperloop pages and the compressed store.

use crate::error::Result;

/// A lossless compressor of byte pages.
///
/// Implementations live in `vuma-hyperloop`; device-side decoders of the same formats live
/// with the backends' kernels. Decoders must treat input as untrusted: corrupt or truncated
/// data is an [`Error::Corrupt`](crate::Error::Corrupt), never a panic or a write out of
/// bounds.
pub trait Codec: Send + Sync + std::fmt::Debug {
    /// Stable short name (`"lz4"`, `"zstd"`, `"snappy"`, …).
    fn name(&self) -> &'static str;
    /// Upper bound of the compressed size of `len` input bytes.
    fn max_compressed_len(&self, len: usize) -> usize;
    /// Appends the compressed form of `src` to `dst`; returns the number of bytes appended.
    fn compress(&self, src: &[u8], dst: &mut Vec<u8>) -> Result<usize>;
    /// Decompresses `src` into `dst`, which must be exactly the original length.
    fn decompress(&self, src: &[u8], dst: &mut [u8]) -> Result<()>;
}
