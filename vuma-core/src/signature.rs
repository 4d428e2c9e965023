//! Kernel signatures: what a kernel's parameters are, checked before every launch.
//!
//! A [`Signature`] lists a kernel's parameters in order (buffers with the access the kernel
//! makes, scalars with their type) and *bounds*: "scalar `n` times `k` bytes must fit in
//! buffer `x`", the contract under which the kernel stays inside its buffers. Every backend
//! checks a launch's arguments against the signature of the kernel (through
//! [`crate::device::check_launch_args`]) before anything reaches a driver: a wrong count, a
//! wrong kind, a read-only argument for a parameter the kernel writes, or an element count
//! larger than a buffer is a typed [`Error::InvalidArgument`] that names the parameter,
//! never a launch. Backends add what the driver can tell on its own (the parameter count
//! and sizes of a CUDA function, the bindings and push constants of a SPIR-V module) for
//! kernels without a signature.

use std::borrow::Cow;
use std::fmt;

use crate::arg::{Arg, Scalar};
use crate::error::{Error, Result};
use crate::placement::AccessMode;

/// The type of a scalar parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScalarKind {
    /// `u32`.
    U32,
    /// `i32`.
    I32,
    /// `u64`.
    U64,
    /// `f32`.
    F32,
}

impl ScalarKind {
    /// The kind of a value.
    pub fn of(s: Scalar) -> Self {
        match s {
            Scalar::U32(_) => ScalarKind::U32,
            Scalar::I32(_) => ScalarKind::I32,
            Scalar::U64(_) => ScalarKind::U64,
            Scalar::F32(_) => ScalarKind::F32,
        }
    }
}

/// One parameter of a kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// A buffer the kernel accesses as `access`.
    Buffer {
        /// Name, for error messages.
        name: Cow<'static, str>,
        /// What the kernel does with it.
        access: AccessMode,
    },
    /// A scalar.
    Scalar {
        /// Name, for error messages.
        name: Cow<'static, str>,
        /// Its type.
        kind: ScalarKind,
    },
}

impl Param {
    fn name(&self) -> &str {
        match self {
            Param::Buffer { name, .. } | Param::Scalar { name, .. } => name,
        }
    }
}

/// "The value of scalar parameter `count` times `elem_bytes` bytes must fit in buffer
/// parameter `buffer`."
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    /// Index of the scalar parameter.
    pub count: usize,
    /// Index of the buffer parameter.
    pub buffer: usize,
    /// Bytes per counted element.
    pub elem_bytes: u64,
}

/// The parameters of a kernel and the bounds that keep it inside its buffers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signature {
    params: Vec<Param>,
    bounds: Vec<Bound>,
}

impl Signature {
    /// A signature with no parameters yet.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a buffer parameter the kernel only reads.
    pub fn read(self, name: impl Into<Cow<'static, str>>) -> Self {
        self.buffer(name, AccessMode::Read)
    }
    /// Adds a buffer parameter the kernel overwrites entirely.
    pub fn write(self, name: impl Into<Cow<'static, str>>) -> Self {
        self.buffer(name, AccessMode::Write)
    }
    /// Adds a buffer parameter the kernel reads and writes.
    pub fn read_write(self, name: impl Into<Cow<'static, str>>) -> Self {
        self.buffer(name, AccessMode::ReadWrite)
    }
    /// Adds a buffer parameter.
    pub fn buffer(mut self, name: impl Into<Cow<'static, str>>, access: AccessMode) -> Self {
        self.params.push(Param::Buffer {
            name: name.into(),
            access,
        });
        self
    }
    /// Adds a scalar parameter.
    pub fn scalar(mut self, name: impl Into<Cow<'static, str>>, kind: ScalarKind) -> Self {
        self.params.push(Param::Scalar {
            name: name.into(),
            kind,
        });
        self
    }
    /// Adds a `u32` parameter.
    pub fn u32(self, name: impl Into<Cow<'static, str>>) -> Self {
        self.scalar(name, ScalarKind::U32)
    }
    /// Adds an `f32` parameter.
    pub fn f32(self, name: impl Into<Cow<'static, str>>) -> Self {
        self.scalar(name, ScalarKind::F32)
    }
    /// Adds a `u64` parameter.
    pub fn u64(self, name: impl Into<Cow<'static, str>>) -> Self {
        self.scalar(name, ScalarKind::U64)
    }
    /// Declares that the value of scalar `count` times `elem_bytes` must fit in buffer
    /// `buffer` (both by name).
    ///
    /// # Panics
    /// When either name is not a parameter of the right kind declared before: a mistake in
    /// the kernel's definition, found the first time it is built.
    pub fn bound(mut self, count: &str, buffer: &str, elem_bytes: u64) -> Self {
        let find = |name: &str, want_buffer: bool| {
            self.params
                .iter()
                .position(|p| p.name() == name && matches!(p, Param::Buffer { .. }) == want_buffer)
                .unwrap_or_else(|| {
                    panic!(
                        "signature bound: no {} parameter named `{name}` declared before",
                        if want_buffer { "buffer" } else { "scalar" }
                    )
                })
        };
        let bound = Bound {
            count: find(count, false),
            buffer: find(buffer, true),
            elem_bytes,
        };
        self.bounds.push(bound);
        self
    }
    /// The parameters, in order.
    pub fn params(&self) -> &[Param] {
        &self.params
    }
    /// The bounds.
    pub fn bounds(&self) -> &[Bound] {
        &self.bounds
    }

    /// Checks a launch's arguments against the signature of kernel `kernel`.
    pub fn check<B: ?Sized + crate::buffer::Buffer>(
        &self,
        kernel: &str,
        args: &[Arg<'_, B>],
    ) -> Result<()> {
        if args.len() != self.params.len() {
            return Err(Error::invalid(format!(
                "kernel `{kernel}` takes {} arguments {self}, {} given",
                self.params.len(),
                args.len()
            )));
        }
        for (i, (p, a)) in self.params.iter().zip(args).enumerate() {
            match (p, a) {
                (Param::Buffer { name, access }, Arg::Buffer { access: given, .. }) => {
                    if access.writes() && !given.writes() {
                        return Err(Error::invalid(format!(
                            "kernel `{kernel}` writes argument {i} (`{name}`), passed as {given:?}: \
                             pass it with write access so that other copies are invalidated"
                        )));
                    }
                    if access.reads() && !given.reads() {
                        return Err(Error::invalid(format!(
                            "kernel `{kernel}` reads argument {i} (`{name}`), passed as {given:?} \
                             (write-only: its contents would not be transferred)"
                        )));
                    }
                }
                (Param::Scalar { name, kind }, Arg::Scalar(s)) if ScalarKind::of(*s) != *kind => {
                    return Err(Error::invalid(format!(
                        "kernel `{kernel}` argument {i} (`{name}`) is a {kind:?} scalar, {:?} given",
                        ScalarKind::of(*s)
                    )));
                }
                (Param::Scalar { .. }, Arg::Scalar(_)) => {}
                (p, _) => {
                    return Err(Error::invalid(format!(
                        "kernel `{kernel}` argument {i} (`{}`) must be a {}, a {} was given ({self})",
                        p.name(),
                        if matches!(p, Param::Buffer { .. }) { "buffer" } else { "scalar" },
                        if matches!(a, Arg::Buffer { .. }) { "buffer" } else { "scalar" },
                    )));
                }
            }
        }
        for b in &self.bounds {
            let (Arg::Scalar(s), Arg::Buffer { len, .. }) = (&args[b.count], &args[b.buffer])
            else {
                continue; // kinds were checked above
            };
            let need = s.as_u64().map(|n| n.checked_mul(b.elem_bytes));
            let ok = matches!(need, Some(Some(need)) if need <= *len);
            if !ok {
                return Err(Error::invalid(format!(
                    "kernel `{kernel}`: `{}` = {s:?} elements of {} bytes do not fit in `{}` \
                     ({len} bytes)",
                    self.params[b.count].name(),
                    b.elem_bytes,
                    self.params[b.buffer].name()
                )));
            }
        }
        Ok(())
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(")?;
        for (i, p) in self.params.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match p {
                Param::Buffer { name, access } => write!(f, "{name}: buffer {access:?}")?,
                Param::Scalar { name, kind } => write!(f, "{name}: {kind:?}")?,
            }
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::HostDevice;
    use crate::{Device, Placement};

    fn sig() -> Signature {
        Signature::new()
            .read("x")
            .write("y")
            .u32("n")
            .f32("scale")
            .bound("n", "x", 4)
            .bound("n", "y", 4)
    }

    #[test]
    fn checks_count_kinds_access_and_bounds() {
        let d = HostDevice::new();
        let x = d.alloc(64, Placement::DeviceLocal).unwrap();
        let y = d.alloc(32, Placement::DeviceLocal).unwrap();
        let buf = |b, access| Arg::Buffer {
            buffer: b,
            offset: 0,
            len: crate::Buffer::len(b),
            access,
        };
        let good = [
            buf(&x, AccessMode::Read),
            buf(&y, AccessMode::Write),
            Arg::Scalar(Scalar::U32(8)),
            Arg::Scalar(Scalar::F32(2.0)),
        ];
        sig().check("k", &good).unwrap();
        let msg = |args: &[Arg<'_, _>]| sig().check("k", args).unwrap_err().to_string();
        assert!(msg(&good[..2]).contains("takes 4 arguments"));
        let mut a = good;
        a[2] = Arg::Scalar(Scalar::U32(9)); // 36 bytes > y's 32
        assert!(msg(&a).contains("do not fit in `y`"), "{}", msg(&a));
        a[2] = Arg::Scalar(Scalar::I32(-1));
        assert!(msg(&a).contains("U32 scalar"));
        let mut a = good;
        a[1] = buf(&y, AccessMode::Read);
        assert!(msg(&a).contains("writes argument 1"));
        let mut a = good;
        a[0] = Arg::Scalar(Scalar::U32(1));
        assert!(msg(&a).contains("must be a buffer"));
        let mut a = good;
        a[3] = Arg::Scalar(Scalar::U32(1));
        assert!(msg(&a).contains("F32 scalar"));
    }

    #[test]
    fn huge_counts_do_not_overflow() {
        let d = HostDevice::new();
        let x = d.alloc(64, Placement::DeviceLocal).unwrap();
        let s = Signature::new().read("x").u64("n").bound("n", "x", 8);
        let args = [
            Arg::Buffer {
                buffer: &x,
                offset: 0,
                len: 64,
                access: AccessMode::Read,
            },
            Arg::Scalar(Scalar::U64(u64::MAX)),
        ];
        assert!(s.check("k", &args).is_err());
    }

    #[test]
    #[should_panic(expected = "no scalar parameter named `m`")]
    fn bounds_name_declared_parameters() {
        let _ = Signature::new().read("x").bound("m", "x", 4);
    }
}
