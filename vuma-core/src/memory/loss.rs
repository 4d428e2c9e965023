//! Device loss: after a fatal driver error (`Error::DeviceLost`) the device's memory is
//! gone and it is never used again. Every buffer keeps what survives elsewhere — a host
//! copy, a copy on another device, a packed host copy (its bytes live in host memory and
//! are decoded on the host) — and a buffer whose only valid data was in the lost device's
//! memory says so (`Error::DataLost` on every read) instead of serving stale bytes.

use super::{BufferId, MemoryManager, State};
use crate::error::Error;

impl MemoryManager {
    /// Marks device `index` lost (as a fatal error from it would): its copies are dropped
    /// from every buffer, later acquires on it fail with `Error::DeviceLost`, and buffers
    /// whose only valid data lived there are reported lost. Returns every buffer whose data
    /// was lost with the device so far (empty when everything survived elsewhere), however
    /// the loss was noticed: the facade calls it when a kernel launch reports the device
    /// lost, the manager itself when one of its own transfers does, and a write lease that
    /// ends after the loss adds its buffer. Idempotent.
    pub fn device_lost(&self, index: usize, reason: &str) -> Vec<BufferId> {
        if index >= self.shared.devices.len() {
            return Vec::new();
        }
        let mut st = self.shared.lock();
        self.lose_device(&mut st, index, reason);
        let mut ids = st.lost_with[index].clone();
        ids.sort();
        ids
    }

    /// Whether device `index` was lost.
    pub fn is_lost(&self, index: usize) -> bool {
        let st = self.shared.lock();
        st.lost_devices.get(index).is_some_and(|l| l.is_some())
    }

    /// [`device_lost`](Self::device_lost) under the lock.
    pub(super) fn lose_device(&self, st: &mut State, index: usize, reason: &str) -> Vec<BufferId> {
        if st.lost_devices[index].is_some() {
            return Vec::new();
        }
        let name = self.shared.devices[index].device.info().name.clone();
        tracing::error!(device = %name, index, reason, "device lost; recovering its buffers");
        st.lost_devices[index] = Some(reason.to_string());
        // Pooled pinned blocks registered with it are unpinned and freed; nothing is
        // pinned for it again.
        self.shared
            .host_pool
            .device_lost(&self.shared.devices[index].device);
        let mut lost = Vec::new();
        let State {
            buffers,
            stats,
            budget_used,
            ..
        } = st;
        for (&id, b) in buffers.iter_mut() {
            // A copy being filled is not valid yet; its filler removes or keeps it when
            // its upload fails (an invalid copy on a lost device is never used).
            if b.copies.get(&index).is_none_or(|c| c.filling) {
                continue;
            }
            let c = b.copies.remove(&index).expect("present");
            stats.devices[index].bytes_in_use -= b.size;
            if c.counts {
                budget_used[index] -= b.size;
            }
            if c.valid && !b.any_valid() && b.lost.is_none() {
                b.lost = Some(format!(
                    "its only valid copy was on {name}, which was lost ({reason})"
                ));
                lost.push(id);
            }
        }
        lost.sort();
        if !lost.is_empty() {
            tracing::error!(device = %name, buffers = ?lost, "data lost with the device");
        }
        st.lost_with[index].extend(lost.iter().copied());
        lost
    }

    /// Marks device `index` lost when `e` says it is.
    pub(super) fn note_loss(&self, st: &mut State, index: usize, e: &Error) {
        if let Error::DeviceLost { reason, .. } = e {
            self.lose_device(st, index, reason);
        }
    }
}
