//! Memory statistics per location as a table or JSON (what `vuma demo` prints at its end).
//!
//! The figures come from [`UnifiedMemoryManager::stats`], O(1) to read and always on.
//!
//! ```
//! use vuma::{stats, UnifiedMemoryManager};
//!
//! let vuma = UnifiedMemoryManager::builder().cuda(false).vulkan(false).build()?;
//! let _buf = vuma.create_buffer_from(&[1, 2, 3, 4])?;
//! let table = stats::to_table(&vuma);
//! assert!(table.starts_with("location"));
//! assert_eq!(stats::to_json(&vuma)["locations"][0]["location"], "host memory");
//! # Ok::<(), vuma_core::Error>(())
//! ```

use serde_json::{json, Value};
use vuma_core::bench::report::text_table;
use vuma_core::human_bytes;
use vuma_core::memory::LocationStats;

use crate::UnifiedMemoryManager;

/// Each location (host memory first, then each device by index) with its statistics.
pub fn locations(vuma: &UnifiedMemoryManager) -> Vec<(String, LocationStats)> {
    let s = vuma.stats();
    let mut out = vec![("host memory".to_string(), s.host)];
    for (d, dev) in s.devices.iter().zip(vuma.devices()) {
        let i = dev.info();
        let backend = i.backend.to_string();
        let name = if i.name.to_lowercase().contains(&backend) {
            i.name.clone()
        } else {
            format!("{} ({backend})", i.name)
        };
        out.push((name, *d));
    }
    out
}

/// Hits over acquires (`None` when nothing was acquired there).
pub fn hit_rate(s: &LocationStats) -> Option<f64> {
    let n = s.hits + s.misses;
    (n > 0).then(|| s.hits as f64 / n as f64)
}

/// The statistics as a table: location | in use | peak | allocations | evictions |
/// write-backs | copied in | over the link | saved | used in place | hits / misses | hit
/// rate. "Over the link" is what crossed; "saved" what the transfer path did not have to
/// send; "used in place" the bytes of the buffers kernels used as the host copy itself
/// (devices that share host memory: nothing allocated, nothing copied).
pub fn to_table(vuma: &UnifiedMemoryManager) -> String {
    let rows: Vec<Vec<String>> = locations(vuma)
        .into_iter()
        .map(|(name, s)| {
            vec![
                name,
                human_bytes(s.bytes_in_use),
                human_bytes(s.peak_bytes),
                s.allocations.to_string(),
                s.evictions.to_string(),
                human_bytes(s.writeback_bytes),
                human_bytes(s.bytes_in),
                human_bytes(s.link_bytes_in),
                human_bytes(s.bytes_saved),
                human_bytes(s.in_place_bytes),
                format!("{} / {}", s.hits, s.misses),
                hit_rate(&s).map_or_else(|| "-".into(), |r| format!("{:.0}%", r * 100.0)),
            ]
        })
        .collect();
    text_table(
        &[
            "location",
            "in use",
            "peak",
            "allocations",
            "evictions",
            "write-backs",
            "copied in",
            "over the link",
            "saved",
            "used in place",
            "hits / misses",
            "hit rate",
        ],
        &rows,
        &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
    )
}

/// The statistics as JSON: `{"buffers": n, "locations": [{location, bytes_in_use, …}]}`.
pub fn to_json(vuma: &UnifiedMemoryManager) -> Value {
    let locs: Vec<Value> = locations(vuma)
        .into_iter()
        .map(|(name, s)| {
            json!({
                "location": name,
                "bytes_in_use": s.bytes_in_use,
                "peak_bytes": s.peak_bytes,
                "allocations": s.allocations,
                "evictions": s.evictions,
                "writeback_bytes": s.writeback_bytes,
                "bytes_in": s.bytes_in,
                "link_bytes_in": s.link_bytes_in,
                "bytes_saved": s.bytes_saved,
                "packed_bytes": s.packed_bytes,
                "packed_writebacks": s.packed_writebacks,
                "pooled_bytes": s.pooled_bytes,
                "pool_hits": s.pool_hits,
                "pool_misses": s.pool_misses,
                "in_place_uses": s.in_place_uses,
                "in_place_bytes": s.in_place_bytes,
                "hits": s.hits,
                "misses": s.misses,
                "hit_rate": hit_rate(&s),
            })
        })
        .collect();
    json!({"buffers": vuma.stats().buffers, "locations": locs})
}
