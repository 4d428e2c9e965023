//! Kernel arguments: a range of a buffer with the access a kernel makes to it, or a scalar
//! passed by value.

use crate::placement::AccessMode;

/// A scalar kernel argument, passed by value (CUDA), as a push constant (Vulkan, in order,
/// each 4 bytes except 8 for 64-bit values) or as a value (host).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar {
    /// 32-bit unsigned.
    U32(u32),
    /// 32-bit signed.
    I32(i32),
    /// 64-bit unsigned.
    U64(u64),
    /// 32-bit float.
    F32(f32),
}

impl Scalar {
    /// Little-endian bytes of the value.
    pub fn to_le_bytes(self) -> Vec<u8> {
        match self {
            Scalar::U32(v) => v.to_le_bytes().to_vec(),
            Scalar::I32(v) => v.to_le_bytes().to_vec(),
            Scalar::U64(v) => v.to_le_bytes().to_vec(),
            Scalar::F32(v) => v.to_le_bytes().to_vec(),
        }
    }
    /// The value as `u64` where it is an integer.
    pub fn as_u64(self) -> Option<u64> {
        match self {
            Scalar::U32(v) => Some(v.into()),
            Scalar::I32(v) => u64::try_from(v).ok(),
            Scalar::U64(v) => Some(v),
            Scalar::F32(_) => None,
        }
    }
}

/// One kernel argument: a range of a buffer, or a scalar.
#[derive(Debug)]
pub enum Arg<'a, B: ?Sized> {
    /// `len` bytes of `buffer` starting at `offset`, accessed as `access`.
    Buffer {
        /// The buffer.
        buffer: &'a B,
        /// Start of the range in bytes (backends may require 256-byte alignment).
        offset: u64,
        /// Length of the range in bytes.
        len: u64,
        /// How the kernel uses it.
        access: AccessMode,
    },
    /// A value.
    Scalar(Scalar),
}

impl<B: ?Sized> Clone for Arg<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: ?Sized> Copy for Arg<'_, B> {}

impl<'a, B: ?Sized + crate::buffer::Buffer> Arg<'a, B> {
    /// The whole of `buffer`.
    pub fn whole(buffer: &'a B, access: AccessMode) -> Self {
        Arg::Buffer {
            buffer,
            offset: 0,
            len: buffer.len(),
            access,
        }
    }
}
