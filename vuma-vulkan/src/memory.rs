//! Memory-type selection: a pure function from a device's memory table and a purpose to a
//! memory type index.
//!
//! Vulkan reports memory *types* (property flags + the heap they live in). Which one a buffer
//! should use depends on who touches it and how, and on whether the device is discrete:
//!
//! | purpose | discrete GPU | integrated GPU / CPU device |
//! | --- | --- | --- |
//! | [`MemoryPurpose::DeviceLocal`] | `DEVICE_LOCAL`, preferably not host-visible (keeps the BAR free) | `DEVICE_LOCAL` |
//! | [`MemoryPurpose::Upload`] (CPU writes only) | large BAR (`DEVICE_LOCAL\|HOST_VISIBLE` in the VRAM heap) on purpose; else system memory, write-combined preferred | `DEVICE_LOCAL\|HOST_VISIBLE` |
//! | [`MemoryPurpose::Readback`] (CPU reads) | system memory, `HOST_CACHED` preferred, **never** BAR | host-visible, `HOST_CACHED` preferred |
//! | [`MemoryPurpose::HostMapped`] (zero-copy) | system memory, `HOST_CACHED` preferred, **never** BAR | `DEVICE_LOCAL\|HOST_VISIBLE`, cached preferred |
//!
//! The BAR rule comes from a measurement on the H100 (see `docs` of the crate root): the CPU
//! reads BAR memory at 0.007 GB/s, so memory the CPU reads must never live there, while CPU
//! *writes* to it run at 4.6–4.8 GB/s per thread. A small BAR (a separate 256 MiB heap) is
//! left alone altogether: it is scarce and drivers use it themselves.
//!
//! Every host purpose requires `HOST_VISIBLE|HOST_COHERENT` (Vulkan guarantees one such type),
//! so VUMA never flushes or invalidates mapped ranges.

use ash::vk;

/// Why a buffer is allocated; decides its memory type with [`select_memory_type`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemoryPurpose {
    /// Only the device touches it (kernels, copies): VRAM on a discrete GPU.
    DeviceLocal,
    /// The CPU writes it (never reads it) and the device copies from it.
    Upload,
    /// The device writes it and the CPU reads it (also: staging used both ways).
    Readback,
    /// Zero-copy: host memory that kernels access in place and the CPU reads and writes.
    HostMapped,
}

/// One memory type of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryTypeDesc {
    /// Its property flags.
    pub flags: vk::MemoryPropertyFlags,
    /// Index of its heap in [`MemoryTable::heaps`].
    pub heap: u32,
}

/// One memory heap of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryHeapDesc {
    /// Size in bytes.
    pub size: u64,
    /// Its flags (`DEVICE_LOCAL` or not).
    pub flags: vk::MemoryHeapFlags,
}

/// A device's memory types and heaps: the part of `VkPhysicalDeviceMemoryProperties` that
/// memory-type selection needs, in a form tests can build by hand.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemoryTable {
    /// Memory types, indexed by memory type index.
    pub types: Vec<MemoryTypeDesc>,
    /// Memory heaps, indexed by heap index.
    pub heaps: Vec<MemoryHeapDesc>,
}

impl MemoryTable {
    /// Copies the table out of the driver's structure.
    pub fn from_vk(props: &vk::PhysicalDeviceMemoryProperties) -> Self {
        let types = props
            .memory_types
            .iter()
            .take(props.memory_type_count as usize)
            .map(|t| MemoryTypeDesc {
                flags: t.property_flags,
                heap: t.heap_index,
            })
            .collect();
        let heaps = props
            .memory_heaps
            .iter()
            .take(props.memory_heap_count as usize)
            .map(|h| MemoryHeapDesc {
                size: h.size,
                flags: h.flags,
            })
            .collect();
        MemoryTable { types, heaps }
    }

    /// Total size of the device-local heaps.
    pub fn device_local_bytes(&self) -> u64 {
        self.heaps
            .iter()
            .filter(|h| h.flags.contains(vk::MemoryHeapFlags::DEVICE_LOCAL))
            .map(|h| h.size)
            .sum()
    }

    fn heap_size(&self, heap: u32) -> u64 {
        self.heaps.get(heap as usize).map_or(0, |h| h.size)
    }

    /// Whether the device has a *large* BAR: a `DEVICE_LOCAL|HOST_VISIBLE` type whose heap
    /// holds at least half of all device-local memory (resizable BAR maps all of VRAM),
    /// rather than a separate small window (typically 256 MiB).
    pub fn has_large_bar(&self) -> bool {
        let vram = self.device_local_bytes();
        self.types.iter().any(|t| {
            is_bar(t.flags) && vram > 0 && self.heap_size(t.heap).saturating_mul(2) >= vram
        })
    }
}

fn is_bar(f: vk::MemoryPropertyFlags) -> bool {
    f.contains(vk::MemoryPropertyFlags::DEVICE_LOCAL | vk::MemoryPropertyFlags::HOST_VISIBLE)
}

const DL: vk::MemoryPropertyFlags = vk::MemoryPropertyFlags::DEVICE_LOCAL;
const HV: vk::MemoryPropertyFlags = vk::MemoryPropertyFlags::HOST_VISIBLE;
const HC: vk::MemoryPropertyFlags = vk::MemoryPropertyFlags::HOST_COHERENT;
const CACHED: vk::MemoryPropertyFlags = vk::MemoryPropertyFlags::HOST_CACHED;
/// Flags VUMA never wants for buffers (protected memory, lazily allocated memory).
const UNWANTED: vk::MemoryPropertyFlags = vk::MemoryPropertyFlags::from_raw(
    vk::MemoryPropertyFlags::PROTECTED.as_raw()
        | vk::MemoryPropertyFlags::LAZILY_ALLOCATED.as_raw(),
);

/// Chooses the memory type for `purpose`.
///
/// - `table`: the device's memory types and heaps;
/// - `unified`: whether device memory *is* host memory (integrated GPU, CPU device such as
///   lavapipe); on such devices host-visible device-local memory is the natural zero-copy
///   path and the BAR rule does not apply;
/// - `allowed`: the `memoryTypeBits` of the resource (`u32::MAX` for any).
///
/// Returns `None` when no type fits (e.g. a discrete device whose only host-visible memory
/// is BAR, asked for readback). Ties go to the lowest index, as the Vulkan spec orders types
/// by preference. See the module documentation for the rules.
pub fn select_memory_type(
    table: &MemoryTable,
    purpose: MemoryPurpose,
    unified: bool,
    allowed: u32,
) -> Option<u32> {
    let large_bar = table.has_large_bar();
    let mut best: Option<(i32, u32)> = None;
    for (i, t) in table.types.iter().enumerate() {
        let i = i as u32;
        if i >= 32 || allowed & (1 << i) == 0 || t.flags.intersects(UNWANTED) {
            continue;
        }
        let f = t.flags;
        let score = match purpose {
            MemoryPurpose::DeviceLocal => {
                if !f.contains(DL) {
                    continue;
                }
                if f.contains(HV) {
                    0
                } else {
                    1
                }
            }
            MemoryPurpose::Upload => {
                if !f.contains(HV | HC) {
                    continue;
                }
                if unified {
                    i32::from(f.contains(DL)) * 4 + i32::from(!f.contains(CACHED))
                } else if f.contains(DL) {
                    // BAR: on purpose when it maps (most of) VRAM, never a small window.
                    if large_bar
                        && table.heap_size(t.heap).saturating_mul(2) >= table.device_local_bytes()
                    {
                        8
                    } else {
                        continue;
                    }
                } else {
                    // System memory; write-combined (uncached) suits write-only streams.
                    2 + i32::from(!f.contains(CACHED))
                }
            }
            MemoryPurpose::Readback => {
                if !f.contains(HV | HC) || (!unified && f.contains(DL)) {
                    continue;
                }
                i32::from(f.contains(CACHED)) * 4 + i32::from(unified && f.contains(DL))
            }
            MemoryPurpose::HostMapped => {
                if !f.contains(HV | HC) || (!unified && f.contains(DL)) {
                    continue;
                }
                if unified {
                    i32::from(f.contains(DL)) * 4 + i32::from(f.contains(CACHED)) * 2
                } else {
                    i32::from(f.contains(CACHED)) * 4
                }
            }
        };
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((score, i));
        }
    }
    best.map(|(_, i)| i)
}

/// The BAR upload memory type: the `Upload` type when it is `DEVICE_LOCAL|HOST_VISIBLE`
/// (on a discrete GPU [`select_memory_type`] picks it only for a large BAR, never for a
/// small window; on unified devices all memory is host memory anyway).
pub(crate) fn bar_upload_type(table: &MemoryTable, upload: Option<u32>) -> Option<u32> {
    let t = upload?;
    let flags = table.types.get(t as usize)?.flags;
    is_bar(flags).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;

    fn table(heaps: &[(u64, bool)], types: &[(vk::MemoryPropertyFlags, u32)]) -> MemoryTable {
        MemoryTable {
            heaps: heaps
                .iter()
                .map(|&(size, dl)| MemoryHeapDesc {
                    size,
                    flags: if dl {
                        vk::MemoryHeapFlags::DEVICE_LOCAL
                    } else {
                        vk::MemoryHeapFlags::empty()
                    },
                })
                .collect(),
            types: types
                .iter()
                .map(|&(flags, heap)| MemoryTypeDesc { flags, heap })
                .collect(),
        }
    }

    /// The H100's table, as its driver (580.159) reports it.
    fn h100() -> MemoryTable {
        table(
            &[(79 * GIB + 665 * MIB, true), (94 * GIB + 410 * MIB, false)],
            &[
                (vk::MemoryPropertyFlags::empty(), 1),
                (DL, 0),
                (HV | HC, 1),
                (HV | HC | CACHED, 1),
                (DL | HV | HC, 0),
            ],
        )
    }

    /// A discrete GPU without resizable BAR: a 256 MiB BAR window in its own heap.
    fn small_bar() -> MemoryTable {
        table(
            &[(8 * GIB, true), (32 * GIB, false), (256 * MIB, true)],
            &[
                (DL, 0),
                (HV | HC, 1),
                (HV | HC | CACHED, 1),
                (DL | HV | HC, 2),
            ],
        )
    }

    /// An integrated GPU: one heap, every flag.
    fn integrated() -> MemoryTable {
        table(
            &[(16 * GIB, true)],
            &[(DL, 0), (DL | HV | HC, 0), (DL | HV | HC | CACHED, 0)],
        )
    }

    /// lavapipe: one heap, one type with every flag.
    fn lavapipe() -> MemoryTable {
        table(&[(2 * GIB, true)], &[(DL | HV | HC | CACHED, 0)])
    }

    use MemoryPurpose::*;

    #[test]
    fn h100_table() {
        let t = h100();
        assert!(t.has_large_bar());
        assert_eq!(select_memory_type(&t, DeviceLocal, false, !0), Some(1));
        assert_eq!(
            select_memory_type(&t, Upload, false, !0),
            Some(4),
            "large BAR on purpose"
        );
        assert_eq!(
            select_memory_type(&t, Readback, false, !0),
            Some(3),
            "cached system memory"
        );
        assert_eq!(select_memory_type(&t, HostMapped, false, !0), Some(3));
        // Masked to what a resource allows: readback without cached memory takes type 2,
        // never the BAR.
        assert_eq!(select_memory_type(&t, Readback, false, 0b10111), Some(2));
        assert_eq!(select_memory_type(&t, Readback, false, 0b10011), None);
        assert_eq!(select_memory_type(&t, HostMapped, false, 0b10000), None);
        // Upload without the BAR falls back to write-combined system memory.
        assert_eq!(select_memory_type(&t, Upload, false, 0b01111), Some(2));
        // DeviceLocal uses the BAR only when nothing else is allowed.
        assert_eq!(select_memory_type(&t, DeviceLocal, false, 0b10000), Some(4));
    }

    #[test]
    fn small_bar_table() {
        let t = small_bar();
        assert!(!t.has_large_bar());
        assert_eq!(select_memory_type(&t, DeviceLocal, false, !0), Some(0));
        assert_eq!(
            select_memory_type(&t, Upload, false, !0),
            Some(1),
            "small BAR left alone"
        );
        assert_eq!(select_memory_type(&t, Readback, false, !0), Some(2));
        assert_eq!(select_memory_type(&t, HostMapped, false, !0), Some(2));
        assert_eq!(select_memory_type(&t, Upload, false, 0b1000), None);
    }

    #[test]
    fn integrated_table() {
        let t = integrated();
        assert_eq!(select_memory_type(&t, DeviceLocal, true, !0), Some(0));
        assert_eq!(select_memory_type(&t, Upload, true, !0), Some(1));
        assert_eq!(select_memory_type(&t, Readback, true, !0), Some(2));
        assert_eq!(
            select_memory_type(&t, HostMapped, true, !0),
            Some(2),
            "zero-copy in place"
        );
    }

    #[test]
    fn lavapipe_table() {
        let t = lavapipe();
        for p in [DeviceLocal, Upload, Readback, HostMapped] {
            assert_eq!(select_memory_type(&t, p, true, !0), Some(0), "{p:?}");
        }
        assert_eq!(select_memory_type(&t, Readback, true, 0), None);
    }

    #[test]
    fn protected_and_lazy_types_are_never_chosen() {
        let t = table(
            &[(GIB, true)],
            &[(DL | vk::MemoryPropertyFlags::PROTECTED, 0), (DL, 0)],
        );
        assert_eq!(select_memory_type(&t, DeviceLocal, false, !0), Some(1));
        let t = table(
            &[(GIB, true)],
            &[(DL | vk::MemoryPropertyFlags::LAZILY_ALLOCATED, 0)],
        );
        assert_eq!(select_memory_type(&t, DeviceLocal, false, !0), None);
    }

    #[test]
    fn non_coherent_host_memory_is_skipped() {
        let t = table(
            &[(GIB, true), (GIB, false)],
            &[(DL, 0), (HV | CACHED, 1), (HV | HC, 1)],
        );
        assert_eq!(select_memory_type(&t, Readback, false, !0), Some(2));
    }

    #[test]
    fn from_vk_round_trip() {
        let mut p = vk::PhysicalDeviceMemoryProperties {
            memory_type_count: 2,
            memory_heap_count: 1,
            ..Default::default()
        };
        p.memory_heaps[0] = vk::MemoryHeap {
            size: GIB,
            flags: vk::MemoryHeapFlags::DEVICE_LOCAL,
        };
        p.memory_types[0] = vk::MemoryType {
            property_flags: DL,
            heap_index: 0,
        };
        p.memory_types[1] = vk::MemoryType {
            property_flags: DL | HV | HC,
            heap_index: 0,
        };
        let t = MemoryTable::from_vk(&p);
        assert_eq!(t.types.len(), 2);
        assert_eq!(t.heaps.len(), 1);
        assert_eq!(t.device_local_bytes(), GIB);
        assert!(t.has_large_bar());
    }

    fn bar_of(t: &MemoryTable, unified: bool) -> Option<u32> {
        bar_upload_type(
            t,
            select_memory_type(t, MemoryPurpose::Upload, unified, u32::MAX),
        )
    }

    #[test]
    fn bar_type_only_for_large_bar_or_unified_memory() {
        use vk::MemoryPropertyFlags as F;
        let (dl, hv, hc, c) = (
            F::DEVICE_LOCAL,
            F::HOST_VISIBLE,
            F::HOST_COHERENT,
            F::HOST_CACHED,
        );
        // The H100/H200: all of VRAM behind the BAR (type 4).
        let h100 = table(
            &[(80 * GIB, true), (94 * GIB, false)],
            &[
                (F::empty(), 1),
                (dl, 0),
                (hv | hc, 1),
                (hv | hc | c, 1),
                (dl | hv | hc, 0),
            ],
        );
        assert_eq!(bar_of(&h100, false), Some(4));
        // A 256 MiB BAR window is left alone.
        let small = table(
            &[(8 * GIB, true), (32 * GIB, false), (GIB / 4, true)],
            &[(dl, 0), (hv | hc, 1), (hv | hc | c, 1), (dl | hv | hc, 2)],
        );
        assert_eq!(bar_of(&small, false), None);
        // No host-visible device-local memory at all.
        let no_bar = table(
            &[(8 * GIB, true), (32 * GIB, false)],
            &[(dl, 0), (hv | hc, 1)],
        );
        assert_eq!(bar_of(&no_bar, false), None);
        // lavapipe: one type with every flag.
        let lvp = table(&[(2 * GIB, true)], &[(dl | hv | hc | c, 0)]);
        assert_eq!(bar_of(&lvp, true), Some(0));
        assert_eq!(bar_upload_type(&lvp, None), None);
        assert_eq!(bar_upload_type(&lvp, Some(7)), None);
    }
}
