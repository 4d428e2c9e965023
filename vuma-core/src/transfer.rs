//! Transfer paths: how the [`MemoryManager`](crate::MemoryManager) moves a buffer's bytes
//! across the link.
//!
//! Without a path the manager uses [`DynDevice::write`] to upload a host copy and
//! [`DynDevice::read`] to write a device copy back. A [`TransferPath`] (PCIe Hyperloop, in
//! `vuma-hyperloop`) replaces both:
//! - [`TransferPath::upload`] may send fewer bytes than the buffer holds (all-zero pages
//!   are filled on the device instead of crossing the link);
//! - [`TransferPath::evict`] may turn a device copy into a [`PackedHost`] copy, compressed
//!   on the device, so that fewer bytes come back, less host memory holds them, and the next
//!   upload to that device sends the compressed bytes and decodes them there.
//!
//! Every transfer returns a [`TransferReport`]: what was decided, the bytes the buffer
//! holds and the bytes that crossed. The manager adds them up in its statistics and hands
//! them to the caller in [`Residency::transfers`](crate::Residency), so that a workload
//! report shows every decision and the bytes saved.
//!
//! A path must never lose data: when it returns an error the manager keeps its valid copies
//! as they were (and falls back to a plain copy where it can).

use crate::buffer::DynBuffer;
use crate::device::DynDevice;
use crate::error::Result;

/// Which way a transfer went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferKind {
    /// Host copy to device copy.
    Upload,
    /// Device copy to host copy (write-back on eviction or for a host read).
    Download,
}

impl TransferKind {
    /// `"upload"` or `"download"`.
    pub fn as_str(self) -> &'static str {
        match self {
            TransferKind::Upload => "upload",
            TransferKind::Download => "download",
        }
    }
}

/// What one transfer did.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferReport {
    /// Which way.
    pub kind: TransferKind,
    /// The path that moved the bytes (`"direct"`, `"hyperloop"`).
    pub path: &'static str,
    /// What was decided and why (one line, for reports and logs).
    pub decision: String,
    /// Bytes of the buffer (what the destination holds afterwards).
    pub logical_bytes: u64,
    /// Bytes that crossed the link.
    pub link_bytes: u64,
    /// Pages sent as nothing (filled on the device).
    pub zero_pages: u64,
    /// Pages sent as they are.
    pub raw_pages: u64,
    /// Pages sent compressed.
    pub compressed_pages: u64,
    /// Wall time, seconds.
    pub time_s: f64,
}

impl TransferReport {
    /// A plain copy of `bytes` (no pages, nothing saved).
    pub fn direct(kind: TransferKind, bytes: u64, time_s: f64) -> Self {
        TransferReport {
            kind,
            path: "direct",
            decision: "plain copy".into(),
            logical_bytes: bytes,
            link_bytes: bytes,
            zero_pages: 0,
            raw_pages: 0,
            compressed_pages: 0,
            time_s,
        }
    }

    /// Bytes that did not have to cross the link.
    pub fn bytes_saved(&self) -> u64 {
        self.logical_bytes.saturating_sub(self.link_bytes)
    }

    /// Logical bytes per byte sent (1.0 for a plain copy).
    pub fn ratio(&self) -> f64 {
        if self.link_bytes == 0 {
            if self.logical_bytes == 0 {
                1.0
            } else {
                f64::INFINITY
            }
        } else {
            self.logical_bytes as f64 / self.link_bytes as f64
        }
    }
}

/// A host copy held in a path's own form (compressed chunk images in pinned memory): what
/// [`TransferPath::evict`] returns. It stays valid until it is unpacked or dropped.
pub trait PackedHost: Send + Sync + std::fmt::Debug {
    /// Bytes of the buffer it holds.
    fn logical_bytes(&self) -> u64;
    /// Host bytes it occupies.
    fn stored_bytes(&self) -> u64;
    /// Whether [`upload`](Self::upload) can target `dev` (the packed form may live in
    /// memory only the device that packed it can read).
    fn can_upload_to(&self, dev: &dyn DynDevice) -> bool;
    /// Decodes the whole content into `out` (`out.len()` = [`logical_bytes`](Self::logical_bytes));
    /// `dev` is the device that packed it.
    fn unpack(&self, dev: &dyn DynDevice, out: &mut [u8]) -> Result<()>;
    /// Sends the packed bytes to `dst[dst_offset..]` on `dev` and decodes them there.
    fn upload(
        &self,
        dev: &dyn DynDevice,
        dst: &dyn DynBuffer,
        dst_offset: u64,
    ) -> Result<TransferReport>;
}

/// A way of moving bytes across the link, plugged into
/// [`MemoryConfig::transfer`](crate::MemoryConfig). Dyn-safe: one path serves devices of
/// every backend (it may decline devices it cannot serve by doing a plain copy or, for
/// [`evict`](Self::evict), by returning `None`).
pub trait TransferPath: Send + Sync + std::fmt::Debug {
    /// Short name for reports (`"hyperloop"`).
    fn name(&self) -> &'static str;
    /// Uploads `src` into `dst[dst_offset..dst_offset + src.len()]` on `dev`.
    fn upload(
        &self,
        dev: &dyn DynDevice,
        src: &[u8],
        dst: &dyn DynBuffer,
        dst_offset: u64,
    ) -> Result<TransferReport>;
    /// Turns `src[offset..offset + len]` on `dev` into a packed host copy, or `None` when
    /// this path would not beat a plain download here (the caller then reads the bytes
    /// back plainly). The device copy is left untouched either way.
    fn evict(
        &self,
        dev: &dyn DynDevice,
        src: &dyn DynBuffer,
        offset: u64,
        len: u64,
    ) -> Result<Option<(Box<dyn PackedHost>, TransferReport)>>;
    /// A *clean* device copy (the host copy holds the same bytes) is being evicted: packs
    /// it, like [`evict`](Self::evict), so that later uploads of this read-mostly buffer
    /// cross the link packed; the plain host copy stays as well. `None` (the default):
    /// packing would not pay here (the manager then just frees the device copy).
    fn pack_clean(
        &self,
        dev: &dyn DynDevice,
        src: &dyn DynBuffer,
        offset: u64,
        len: u64,
    ) -> Result<Option<(Box<dyn PackedHost>, TransferReport)>> {
        let _ = (dev, src, offset, len);
        Ok(None)
    }

    /// Packs the plain host bytes of a clean copy for `dev` (called before
    /// [`pack_clean`](Self::pack_clean), when the manager evicts a clean device copy whose
    /// host copy is plain): a path whose host encoder codes better than its device encoder
    /// (codecs the device decodes but does not encode) packs here. `None` (the default):
    /// not here; the manager then asks `pack_clean`.
    fn pack_clean_host(
        &self,
        dev: &dyn DynDevice,
        host: &[u8],
    ) -> Result<Option<Box<dyn PackedHost>>> {
        let _ = (dev, host);
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_reports_save_nothing() {
        let r = TransferReport::direct(TransferKind::Upload, 4096, 0.001);
        assert_eq!(r.bytes_saved(), 0);
        assert_eq!(r.ratio(), 1.0);
        assert_eq!(r.path, "direct");
        let mut z = r.clone();
        z.link_bytes = 0;
        assert_eq!(z.bytes_saved(), 4096);
        assert!(z.ratio().is_infinite());
    }
}
