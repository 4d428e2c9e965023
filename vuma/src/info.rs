//! `vuma info`: what this machine has, per backend, and why a backend is absent.

use std::fmt::Write;

use serde_json::{json, Value};
use vuma_core::{human_bytes, DeviceInfo};

use crate::UnifiedMemoryManager;

fn link(i: &DeviceInfo) -> String {
    match &i.host_link {
        None => "none".into(),
        Some(l) => {
            let mut s = format!(
                "{:.1} GB/s H2D, {:.1} GB/s D2H ({})",
                l.h2d_bytes_per_s / 1e9,
                l.d2h_bytes_per_s / 1e9,
                if l.measured { "measured" } else { "estimated" }
            );
            if let (Some(g), Some(w)) = (l.pcie_generation, l.pcie_width) {
                let _ = write!(s, ", PCIe Gen{g} x{w}");
            }
            s
        }
    }
}

fn device_json(vuma: &UnifiedMemoryManager, i: &DeviceInfo) -> Value {
    json!({
        "name": i.name,
        "backend": i.backend.to_string(),
        "kind": i.kind.to_string(),
        "tier": vuma.scheduler().tier_of(i.id).map(|t| t.to_string()),
        "uuid": i.uuid_string(),
        "memory_total": i.memory_total,
        "memory_budget": i.memory_budget,
        "max_allocation": i.max_allocation,
        "l2_bytes": i.l2_bytes,
        "compute_units": i.compute_units,
        "compute_capability": i.compute_capability.map(|(a, b)| format!("{a}.{b}")),
        "can_map_host_memory": i.can_map_host_memory,
        "unified_memory": i.unified_memory,
        "copy_engines": i.copy_engines,
        "host_link": i.host_link.as_ref().map(|l| json!({
            "h2d_bytes_per_s": l.h2d_bytes_per_s,
            "d2h_bytes_per_s": l.d2h_bytes_per_s,
            "measured": l.measured,
            "pcie_generation": l.pcie_generation,
            "pcie_width": l.pcie_width,
        })),
        "heaps": i.heaps.iter().map(|h| json!({
            "size": h.size, "budget": h.budget, "device_local": h.device_local, "host_visible": h.host_visible,
        })).collect::<Vec<_>>(),
        "driver": i.driver,
        "extra": i.extra.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
    })
}

/// Codecs compiled in (Hyperloop).
pub fn codecs() -> Vec<&'static str> {
    #[cfg(feature = "hyperloop")]
    {
        vuma_hyperloop::codecs::all_codecs(vuma_hyperloop::page::ElemWidth::F32)
            .iter()
            .map(|c| c.name())
            .collect()
    }
    #[cfg(not(feature = "hyperloop"))]
    {
        Vec::new()
    }
}

/// `vuma info` as JSON.
pub fn to_json(vuma: &UnifiedMemoryManager) -> Value {
    json!({
        "backends": vuma.backends().iter().map(|b| json!({
            "backend": b.backend.to_string(),
            "compiled": b.compiled,
            "available": b.available(),
            "error": b.error,
            "devices": b.devices.iter().map(|d| device_json(vuma, d)).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "codecs": codecs(),
    })
}

/// `vuma info` as text.
pub fn to_text(vuma: &UnifiedMemoryManager) -> String {
    let mut s = String::new();
    for b in vuma.backends() {
        let state = if b.available() {
            format!("{} device(s)", b.devices.len())
        } else {
            format!("absent: {}", b.error.as_deref().unwrap_or("unknown"))
        };
        let _ = writeln!(s, "{} backend: {state}", b.backend);
        for i in &b.devices {
            let tier = vuma
                .scheduler()
                .tier_of(i.id)
                .map_or("-".to_string(), |t| t.to_string());
            let _ = writeln!(s, "  [{}] {} — {}, {tier}", i.ordinal, i.name, i.kind);
            if let Some(u) = i.uuid_string() {
                let _ = writeln!(s, "      uuid            {u}");
            }
            if let Some((a, b)) = i.compute_capability {
                let _ = writeln!(s, "      compute cap.    {a}.{b}");
            }
            let _ = writeln!(
                s,
                "      memory          {} total, {} budget, {} max allocation",
                human_bytes(i.memory_total),
                human_bytes(i.memory_budget),
                human_bytes(i.max_allocation)
            );
            let _ = writeln!(
                s,
                "      compute         {} units, L2 {}, {} copy engines",
                i.compute_units,
                human_bytes(i.l2_bytes),
                i.copy_engines
            );
            let _ = writeln!(s, "      host link       {}", link(i));
            let _ = writeln!(
                s,
                "      zero-copy       {}{}",
                if i.can_map_host_memory { "yes" } else { "no" },
                if i.unified_memory {
                    " (shares host memory)"
                } else {
                    ""
                }
            );
            for (n, h) in i.heaps.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "      heap {n}          {}{}{}{}",
                    human_bytes(h.size),
                    if h.device_local {
                        " device-local"
                    } else {
                        " host"
                    },
                    if h.host_visible { " host-visible" } else { "" },
                    h.budget
                        .map_or(String::new(), |b| format!(", budget {}", human_bytes(b)))
                );
            }
            let _ = writeln!(s, "      driver          {}", i.driver);
            for (k, v) in &i.extra {
                let _ = writeln!(s, "      {k:<15} {v}");
            }
        }
    }
    let c = codecs();
    let _ = writeln!(
        s,
        "codecs: {}",
        if c.is_empty() {
            "none (hyperloop feature off)".to_string()
        } else {
            c.join(", ")
        }
    );
    s
}
