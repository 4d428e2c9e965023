//! Fault injection: a shared plan that devices consult before allocations and copies, so
//! tests can prove that no failure loses data.

use std::sync::atomic::{AtomicU64, Ordering};

/// Where a fault can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultSite {
    /// Device allocation.
    Alloc,
    /// Host-to-device copy.
    Write,
    /// Device-to-host copy.
    Read,
    /// Device-to-device copy.
    Copy,
    /// Kernel launch.
    Launch,
}

/// A seeded plan that fails a fraction of operations.
#[derive(Debug)]
pub struct FaultPlan {
    state: AtomicU64,
    /// Probability of failure per operation, in 1/65536ths.
    rate: u64,
    injected: AtomicU64,
    enabled: std::sync::atomic::AtomicBool,
    lost: std::sync::atomic::AtomicBool,
}

impl FaultPlan {
    /// Fails each operation with probability `rate` (0.0..=1.0), deterministically from `seed`.
    pub fn new(seed: u64, rate: f64) -> Self {
        FaultPlan {
            state: AtomicU64::new(seed | 1),
            rate: (rate.clamp(0.0, 1.0) * 65536.0) as u64,
            injected: AtomicU64::new(0),
            enabled: std::sync::atomic::AtomicBool::new(true),
            lost: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether the operation at `site` should fail now.
    pub fn should_fail(&self, _site: FaultSite) -> bool {
        if !self.enabled.load(Ordering::Relaxed) {
            return false;
        }
        // xorshift64*, advanced atomically.
        let mut x = self.state.load(Ordering::Relaxed);
        loop {
            let mut y = x;
            y ^= y >> 12;
            y ^= y << 25;
            y ^= y >> 27;
            match self
                .state
                .compare_exchange_weak(x, y, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    let r = y.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 48;
                    let fail = r < self.rate;
                    if fail {
                        self.injected.fetch_add(1, Ordering::Relaxed);
                    }
                    return fail;
                }
                Err(cur) => x = cur,
            }
        }
    }

    /// Turns injection on or off (e.g. off for a final verification pass).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// Loses the device for good, as a fatal driver error would: from now on every
    /// operation of a device using this plan fails with
    /// [`Error::DeviceLost`](crate::Error::DeviceLost), except
    /// [`Device::read_host_resident`](crate::Device::read_host_resident) of host-resident
    /// buffers (whose memory outlives the device).
    pub fn lose_device(&self) {
        self.lost.store(true, Ordering::SeqCst);
    }

    /// Whether [`lose_device`](Self::lose_device) was called.
    pub fn device_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }
}
