//! Prefetch: make a buffer resident on a device ahead of the workload that needs it, while
//! other work goes on (what `cudaMemPrefetchAsync` is to CUDA Unified Memory, for VUMA's
//! explicit migration).
//!
//! [`UnifiedMemoryManager::prefetch`] returns at once; a worker thread allocates the copy
//! (evicting least-recently-used copies within the device's budget, as any acquire does)
//! and uploads it. The upload from the host copy runs outside the memory manager's lock,
//! so workloads on other buffers proceed meanwhile (their kernels, other uploads); a
//! workload that needs this buffer waits for the upload instead of starting a second one,
//! and finds the copy resident. Host writes to the buffer wait for the upload to finish.

use std::sync::Arc;
use std::thread::JoinHandle;

use vuma_core::{DeviceId, Error, Residency, Result, UnifiedBuffer};

use crate::UnifiedMemoryManager;

/// A prefetch in flight; [`Prefetch::wait`] gives its outcome. Dropping it lets the
/// prefetch finish unobserved (its errors are then only logged).
#[derive(Debug)]
pub struct Prefetch {
    handle: Option<JoinHandle<Result<Residency>>>,
}

impl Prefetch {
    /// Waits for the prefetch and returns what it did (the upload's transfer report,
    /// evictions) or why it failed. A failed prefetch changes nothing: the buffer's valid
    /// copies are as they were, and the workload that needs it uploads it then.
    pub fn wait(mut self) -> Result<Residency> {
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(Error::invalid("the prefetch worker panicked")),
            None => Err(Error::invalid("prefetch already waited for")),
        }
    }

    /// Whether it has finished.
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl UnifiedMemoryManager {
    /// Starts making `buffer` resident on device `device` for reading; returns at once.
    /// See the [module documentation](crate::prefetch). An unknown device is an error
    /// now; everything else is reported by [`Prefetch::wait`].
    pub fn prefetch(&self, buffer: &Arc<UnifiedBuffer>, device: DeviceId) -> Result<Prefetch> {
        let index = self
            .memory()
            .device_index(device)
            .ok_or_else(|| Error::invalid(format!("prefetch: no device {device} here")))?;
        let memory = self.memory().clone();
        let buffer = Arc::clone(buffer);
        let handle = std::thread::Builder::new()
            .name("vuma-prefetch".into())
            .spawn(move || {
                let r = memory.prefetch(&buffer, index);
                if let Err(e) = &r {
                    tracing::debug!(buffer = buffer.id().0, error = %e, "prefetch failed");
                }
                r
            })
            .map_err(|e| Error::invalid(format!("prefetch: cannot start a worker: {e}")))?;
        Ok(Prefetch {
            handle: Some(handle),
        })
    }
}
