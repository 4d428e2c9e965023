//! [`Inner`]: the state of one opened device that its buffers and fences share (they keep it
//! alive): the primary context, the streams and their events, the staging ring, host ranges
//! pinned by the caller, the module cache, and errors raised while dropping buffers. Opening
//! fills it in (`adapter`), dropping the last handle tears it down here; the operations on it
//! live with their concept (`submit`, `staging`, `compute`, `buffer`).

use std::collections::{BTreeMap, HashMap};
use std::ffi::c_void;
use std::sync::{Arc, Mutex, MutexGuard};

use cudarc::driver::sys;
use vuma_core::{DeviceId, Error, Result};

use crate::options::RING_SLOT_BYTES;
use crate::ring::{bind, Ring};

/// One compiled module and the functions looked up in it.
pub(crate) struct Module {
    pub(crate) module: sys::CUmodule,
    pub(crate) functions: HashMap<String, sys::CUfunction>,
}

/// The shared state of one opened device; buffers keep it alive.
pub(crate) struct Inner {
    pub(crate) ctx: sys::CUcontext,
    pub(crate) cu_device: sys::CUdevice,
    pub(crate) retained: bool,
    pub(crate) id: DeviceId,
    pub(crate) name: String,
    pub(crate) ordinal: u32,
    pub(crate) compute: sys::CUstream,
    pub(crate) h2d: sys::CUstream,
    pub(crate) d2h: sys::CUstream,
    /// The stream of [`Device::copy_concurrent`](vuma_core::Device::copy_concurrent):
    /// ordered after the compute stream at each issue, joined back only by `wait_for`,
    /// buffer drops and synchronisation.
    pub(crate) side: sys::CUstream,
    pub(crate) side_state: Mutex<Side>,
    pub(crate) ring: Mutex<Ring>,
    /// Host ranges page-locked through `pin_host` (start → length): `write` and `read`
    /// with host memory inside one DMA straight from or into it.
    pub(crate) pinned: Mutex<BTreeMap<usize, usize>>,
    /// Parameter sizes of each launched function, read once from the driver.
    pub(crate) param_sizes: Mutex<HashMap<usize, Arc<[usize]>>>,
    pub(crate) modules: Mutex<HashMap<u128, Module>>,
    pub(crate) deferred: Mutex<Vec<Error>>,
    pub(crate) cc: (u32, u32),
    pub(crate) total: u64,
    pub(crate) host_total: u64,
    pub(crate) threads: usize,
}

// SAFETY: the raw handles (context, streams, events, modules, functions, pinned pointers)
// are driver objects that CUDA allows to be used from any thread; every piece of mutable
// state (the ring, the module cache, deferred errors) is behind a mutex.
unsafe impl Send for Inner {}
// SAFETY: see `Send`.
unsafe impl Sync for Inner {}

/// The events of the side stream (behind a mutex: record-then-wait pairs must not
/// interleave between threads).
pub(crate) struct Side {
    /// Recorded on the compute stream before a side copy (the side stream waits on it).
    pub(crate) ev_start: sys::CUevent,
    /// Recorded on the side stream when the compute stream must catch up with it.
    pub(crate) ev_join: sys::CUevent,
    /// Whether side copies were issued since the compute stream last waited for all of them.
    pub(crate) pending: bool,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    /// The state of device `cu_device` before opening: no context, stream, event or ring
    /// slot yet (every handle null, which `Drop` skips), `threads` host threads for CPU
    /// copies (at most 8).
    pub(crate) fn unopened(cu_device: sys::CUdevice, ordinal: u32, threads: usize) -> Inner {
        Inner {
            ctx: std::ptr::null_mut(),
            cu_device,
            retained: false,
            id: DeviceId::fresh(),
            name: String::new(),
            ordinal,
            compute: std::ptr::null_mut(),
            h2d: std::ptr::null_mut(),
            d2h: std::ptr::null_mut(),
            side: std::ptr::null_mut(),
            side_state: Mutex::new(Side {
                ev_start: std::ptr::null_mut(),
                ev_join: std::ptr::null_mut(),
                pending: false,
            }),
            pinned: Mutex::new(BTreeMap::new()),
            param_sizes: Mutex::new(HashMap::new()),
            ring: Mutex::new(Ring {
                slots: Vec::new(),
                slot_bytes: RING_SLOT_BYTES,
                ev_start: std::ptr::null_mut(),
                ev_done: std::ptr::null_mut(),
            }),
            modules: Mutex::new(HashMap::new()),
            deferred: Mutex::new(Vec::new()),
            cc: (0, 0),
            total: 0,
            host_total: vuma_core::host::physical_memory().unwrap_or(u64::MAX),
            threads: threads.min(8),
        }
    }

    pub(crate) fn bind(&self) -> Result<()> {
        bind(self.ctx)
    }

    /// Records an error raised where it cannot be returned (`Drop`); the next
    /// `synchronize` reports it.
    pub(crate) fn defer(&self, e: Error) {
        tracing::warn!(device = %self.name, "deferred CUDA error: {e}");
        lock(&self.deferred).push(e);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.ctx.is_null() {
            return;
        }
        if bind(self.ctx).is_err() {
            return;
        }
        // SAFETY: (whole block) every handle below was created in this context by `open`,
        // is destroyed exactly once here (null handles are skipped), and no buffer is left
        // (buffers hold an `Arc<Inner>`), so nothing uses them any more.
        unsafe {
            for s in [self.compute, self.h2d, self.d2h, self.side] {
                if !s.is_null() {
                    sys::cuStreamSynchronize(s);
                }
            }
            let side = self.side_state.get_mut().unwrap_or_else(|e| e.into_inner());
            for e in [side.ev_start, side.ev_join] {
                if !e.is_null() {
                    sys::cuEventDestroy_v2(e);
                }
            }
            let ring = self.ring.get_mut().unwrap_or_else(|e| e.into_inner());
            for slot in ring.slots.drain(..) {
                if !slot.event.is_null() {
                    sys::cuEventDestroy_v2(slot.event);
                }
                for e in slot.sub_events {
                    sys::cuEventDestroy_v2(e);
                }
                if !slot.host.is_null() {
                    sys::cuMemFreeHost(slot.host as *mut c_void);
                }
            }
            for e in [ring.ev_start, ring.ev_done] {
                if !e.is_null() {
                    sys::cuEventDestroy_v2(e);
                }
            }
            let modules = self.modules.get_mut().unwrap_or_else(|e| e.into_inner());
            for (_, m) in modules.drain() {
                sys::cuModuleUnload(m.module);
            }
            for s in [self.compute, self.h2d, self.d2h, self.side] {
                if !s.is_null() {
                    sys::cuStreamDestroy_v2(s);
                }
            }
            if self.retained {
                sys::cuDevicePrimaryCtxRelease_v2(self.cu_device);
            }
        }
    }
}
