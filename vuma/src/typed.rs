//! Typed views of unified buffers: create, write and read them as slices of any
//! [`bytemuck::Pod`] type (`f32`, `u32`, `[f32; 4]`, your own `#[repr(C)]` structs) instead
//! of bytes, with every size checked.
//!
//! ```
//! use vuma::UnifiedMemoryManager;
//!
//! let vuma = UnifiedMemoryManager::builder().cuda(false).vulkan(false).build()?;
//! let x = vuma.create_buffer_from_slice(&[1.0f32, 2.0, 3.0, 4.0])?;
//! assert_eq!(vuma.to_vec_of::<f32>(&x)?, [1.0, 2.0, 3.0, 4.0]);
//! let mut two = [0.0f32; 2];
//! vuma.read_into(&x, 2, &mut two)?; // elements 2 and 3
//! assert_eq!(two, [3.0, 4.0]);
//! // 16 bytes are not a whole number of 12-byte elements: an error, not a panic.
//! assert!(vuma.to_vec_of::<[f32; 3]>(&x).is_err());
//! # Ok::<(), vuma::Error>(())
//! ```

use std::sync::Arc;

use bytemuck::Pod;

use vuma_core::{DeviceId, Residency};

use crate::{Error, Result, UnifiedBuffer, UnifiedMemoryManager};

/// The size of `T` in bytes; zero-sized types are refused (a buffer of them says nothing).
fn elem_size<T: Pod>() -> Result<usize> {
    match std::mem::size_of::<T>() {
        0 => Err(Error::invalid(format!(
            "`{}` is zero-sized: typed buffers need an element type of at least one byte",
            std::any::type_name::<T>()
        ))),
        n => Ok(n),
    }
}

/// The byte offset of element `offset_elems` of `T`, without overflow.
fn byte_offset<T: Pod>(offset_elems: u64) -> Result<u64> {
    let size = elem_size::<T>()? as u64;
    offset_elems.checked_mul(size).ok_or_else(|| {
        Error::invalid(format!(
            "element offset {offset_elems} of `{}` ({size} bytes each) overflows a byte offset",
            std::any::type_name::<T>()
        ))
    })
}

impl UnifiedMemoryManager {
    /// A new unified buffer holding a copy of `data` (its bytes, in memory order, so
    /// little-endian on every machine VUMA runs on).
    ///
    /// Errors: [`Error::ZeroSize`] for an empty slice, [`Error::InvalidArgument`] for a
    /// zero-sized `T`, and whatever [`UnifiedMemoryManager::create_buffer_from`] returns.
    pub fn create_buffer_from_slice<T: Pod>(&self, data: &[T]) -> Result<Arc<UnifiedBuffer>> {
        elem_size::<T>()?;
        self.create_buffer_from(bytemuck::cast_slice(data))
    }

    /// A new unified buffer holding a copy of `data`, resident on `device`: the typed
    /// [`UnifiedMemoryManager::create_buffer_from_on`] (the upload overlaps the host copy's
    /// fill). Returns the buffer and the upload's outcome.
    ///
    /// Errors: those of [`create_buffer_from_slice`](Self::create_buffer_from_slice), and
    /// [`Error::InvalidArgument`] for an unknown device.
    pub fn create_buffer_from_slice_on<T: Pod>(
        &self,
        data: &[T],
        device: DeviceId,
    ) -> Result<(Arc<UnifiedBuffer>, Result<Residency>)> {
        elem_size::<T>()?;
        self.create_buffer_from_on(bytemuck::cast_slice(data), device)
    }

    /// Writes `data` from the host, starting at element `offset_elems` (in units of `T`).
    ///
    /// Errors: [`Error::OutOfRange`] when the elements reach past the end of the buffer,
    /// [`Error::InvalidArgument`] for a zero-sized `T` or an offset that overflows.
    pub fn write_slice<T: Pod>(
        &self,
        buf: &UnifiedBuffer,
        offset_elems: u64,
        data: &[T],
    ) -> Result<()> {
        let offset = byte_offset::<T>(offset_elems)?;
        self.write(buf, offset, bytemuck::cast_slice(data))
    }

    /// Reads `out.len()` elements of `T`, starting at element `offset_elems`, into `out`
    /// (bringing data back from a device if needed).
    ///
    /// Errors: [`Error::OutOfRange`] when the elements reach past the end of the buffer,
    /// [`Error::InvalidArgument`] for a zero-sized `T` or an offset that overflows.
    pub fn read_into<T: Pod>(
        &self,
        buf: &UnifiedBuffer,
        offset_elems: u64,
        out: &mut [T],
    ) -> Result<()> {
        let offset = byte_offset::<T>(offset_elems)?;
        self.read(buf, offset, bytemuck::cast_slice_mut(out))
    }

    /// The whole buffer on the host as elements of `T`.
    ///
    /// Errors: [`Error::ElementSize`] when the buffer's length is not a multiple of
    /// `size_of::<T>()`, [`Error::InvalidArgument`] for a zero-sized `T` or a buffer larger
    /// than this machine's address space, and whatever [`UnifiedMemoryManager::read`]
    /// returns.
    pub fn to_vec_of<T: Pod>(&self, buf: &UnifiedBuffer) -> Result<Vec<T>> {
        let size = elem_size::<T>()?;
        let bytes = buf.len();
        if !bytes.is_multiple_of(size as u64) {
            return Err(Error::ElementSize {
                bytes,
                elem: std::any::type_name::<T>(),
                elem_size: size,
            });
        }
        let n = usize::try_from(bytes / size as u64).map_err(|_| {
            Error::invalid(format!(
                "a buffer of {bytes} bytes does not fit this machine's address space; read it in parts with read_into"
            ))
        })?;
        let mut out = vec![T::zeroed(); n];
        self.read(buf, 0, bytemuck::cast_slice_mut(&mut out))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> UnifiedMemoryManager {
        UnifiedMemoryManager::builder()
            .cuda(false)
            .vulkan(false)
            .build()
            .unwrap()
    }

    #[test]
    fn slices_round_trip_through_buffers() {
        let vuma = host();
        let data: Vec<f32> = (0..1000).map(|i| i as f32 * 0.5 - 7.0).collect();
        let b = vuma.create_buffer_from_slice(&data).unwrap();
        assert_eq!(b.len(), 4000);
        assert_eq!(vuma.to_vec_of::<f32>(&b).unwrap(), data);
        // The bytes are the elements' little-endian bytes.
        let bytes = vuma.to_vec(&b).unwrap();
        assert_eq!(bytes[4..8], data[1].to_le_bytes());
        // Other views of the same bytes.
        let words = vuma.to_vec_of::<u32>(&b).unwrap();
        assert_eq!(words[999], data[999].to_bits());
        let quads = vuma.to_vec_of::<[f32; 4]>(&b).unwrap();
        assert_eq!(quads.len(), 250);
        assert_eq!(quads[1], [data[4], data[5], data[6], data[7]]);
    }

    #[test]
    fn read_into_and_write_slice_use_element_offsets() {
        let vuma = host();
        let b = vuma.create_buffer_from_slice(&[0u64; 8]).unwrap();
        vuma.write_slice(&b, 5, &[7u64, 8]).unwrap();
        let mut out = [0u64; 3];
        vuma.read_into(&b, 4, &mut out).unwrap();
        assert_eq!(out, [0, 7, 8]);
        // An empty read at the end is fine; one element past it is not.
        vuma.read_into::<u64>(&b, 8, &mut []).unwrap();
        assert!(matches!(
            vuma.read_into(&b, 6, &mut out),
            Err(Error::OutOfRange {
                offset: 48,
                len: 24,
                size: 64
            })
        ));
        assert!(matches!(
            vuma.write_slice(&b, 7, &[1u64, 2]),
            Err(Error::OutOfRange { .. })
        ));
        // Offsets that overflow a byte offset are errors, not panics.
        assert!(matches!(
            vuma.read_into(&b, u64::MAX / 4, &mut out),
            Err(Error::InvalidArgument(_))
        ));
        assert_eq!(vuma.to_vec_of::<u64>(&b).unwrap(), [0, 0, 0, 0, 0, 7, 8, 0]);
    }

    #[test]
    fn sizes_that_do_not_divide_are_typed_errors() {
        let vuma = host();
        let b = vuma.create_buffer_from(&[1, 2, 3, 4, 5, 6]).unwrap();
        match vuma.to_vec_of::<u32>(&b) {
            Err(
                e @ Error::ElementSize {
                    bytes: 6,
                    elem_size: 4,
                    ..
                },
            ) => {
                let msg = e.to_string();
                assert!(msg.contains("6 bytes") && msg.contains("u32"), "{msg}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(vuma.to_vec_of::<u16>(&b).unwrap(), [0x0201, 0x0403, 0x0605]);
        // Zero-sized element types and empty slices are refused.
        assert!(matches!(
            vuma.to_vec_of::<()>(&b),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            vuma.create_buffer_from_slice::<()>(&[(), ()]),
            Err(Error::InvalidArgument(_))
        ));
        assert!(vuma.create_buffer_from_slice::<f32>(&[]).is_err());
    }

    #[test]
    fn slices_go_straight_onto_a_device() {
        let vuma = host();
        let dev = vuma.devices()[0].info().id;
        let data: Vec<u32> = (0..100_000).map(|i| i * 3 + 1).collect();
        let (b, upload) = vuma.create_buffer_from_slice_on(&data, dev).unwrap();
        let r = upload.unwrap();
        // The host device uses the host copy in place: there is nothing to send.
        assert!(r.in_place && r.transfers.is_empty(), "{r:?}");
        assert_eq!(vuma.memory().missing_bytes(&b, 0), 0, "resident");
        assert_eq!(vuma.to_vec_of::<u32>(&b).unwrap(), data);
        assert!(matches!(
            vuma.create_buffer_from_slice_on::<()>(&[()], dev),
            Err(Error::InvalidArgument(_))
        ));
        let nowhere = vuma_core::DeviceId::fresh();
        assert!(matches!(
            vuma.create_buffer_from_slice_on(&data, nowhere),
            Err(Error::InvalidArgument(_))
        ));
        assert_eq!(vuma.stats().buffers, 1, "nothing made by refused calls");
    }
}
