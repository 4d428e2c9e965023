//! Waiting for room on a device: a caller refused with `BudgetExceeded` while another
//! lease holds the budget waits on `MemoryManager::wait_for_room` (a condition variable
//! signalled by lease releases, finished uploads and dropped buffers), not by polling.

use std::sync::Arc;
use std::time::{Duration, Instant};

use vuma_core::{
    AccessMode, DynDevice, Error, HostDevice, LinkInfo, MemoryConfig, MemoryManager, Outcome,
};

const MIB: u64 = 1 << 20;

#[test]
fn a_release_wakes_a_caller_waiting_for_room() {
    let dev: Arc<dyn DynDevice> = Arc::new(
        HostDevice::with_budget("small", 8 * MIB)
            .behind_link(LinkInfo::from_pcie(5, 16))
            .without_in_place(),
    );
    let mm = Arc::new(MemoryManager::new(vec![dev], MemoryConfig::default()));
    let a = mm.create(6 * MIB).unwrap();
    let b = mm.create(6 * MIB).unwrap();
    let held = mm.acquire(&a, 0, AccessMode::Read, 1).unwrap();
    let seen = mm.room_changes();
    assert!(matches!(
        mm.acquire(&b, 0, AccessMode::Read, 1),
        Err(Error::BudgetExceeded { .. })
    ));
    // Nothing changes: the wait ends at its deadline and says so.
    let t = Instant::now();
    assert!(!mm.wait_for_room(seen, t + Duration::from_millis(20)));
    assert!(t.elapsed() >= Duration::from_millis(20));
    // A release on another thread wakes the waiter, which then gets its copy.
    let releaser = {
        let mm = mm.clone();
        std::thread::spawn(move || mm.release(held, Outcome::Completed))
    };
    assert!(mm.wait_for_room(seen, Instant::now() + Duration::from_secs(30)));
    releaser.join().unwrap();
    let lease = mm.acquire(&b, 0, AccessMode::Read, 1).unwrap();
    mm.release(lease, Outcome::Completed);
    // Dropping a buffer counts too.
    let seen = mm.room_changes();
    drop(a);
    assert_ne!(mm.room_changes(), seen);
}
