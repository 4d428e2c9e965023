//! # vuma-hyperloop
//!
//! VUMA's **PCIe Hyperloop**: pages cross the link compressed and are decoded on the
//! device; all-zero pages are not sent at all. This crate owns
//!
//! - the host [`Codec`](vuma_core::Codec)s — [`codecs::Lz4`] (LZ4 block, `lz4_flex`),
//!   [`codecs::Zstd`] (level configurable, default 1), [`codecs::Snappy`] (raw format) — and
//!   [`bitplane::Bitplane`], a codec for typed tensor data built for massively parallel
//!   decode (byte planes, per-1024-byte-block constant / raw / dictionary bit-packing / zero
//!   bitmap);
//! - [`floatcodec::FloatCodec`], an entropy-coded float codec (exponents Huffman-coded
//!   with per-page tables, signs and mantissas raw, exact zeros elided; 32 independent
//!   lane streams per page so one GPU warp decodes a page), host reference encoder and
//!   decoder; [`floatdecode`]: its device decoder `hl_float` (CUDA C in
//!   `src/floatcodec.cu`, SPIR-V for Vulkan from `shaders/hl_float.wgsl`, and a host variant
//!   of identical semantics; the planner picks the codec only on devices with a decoder);
//! - [`page`]: cutting buffers into pages (default 64 KiB), word-wise all-zero detection
//!   and a sampled per-page complexity estimate (byte entropy, runs, byte-plane statistics);
//! - [`kernels`]: the device decoders — CUDA C source for zero fill + raw copy, bitplane and
//!   LZ4 block decoding (bounds-checked, errors to a status word), SPIR-V for Vulkan (WGSL
//!   compiled by naga at build time), each with a host-function variant of identical
//!   semantics, launched through [`vuma_core::DynDevice`];
//! - [`encode`]: the device encoder of the bitplane codec, CUDA C and WGSL (eviction
//!   compresses on the device and downloads fewer bytes; output byte-identical to the host
//!   encoder's);
//! - [`planner`]: the [`CostModel`] (link bandwidth from
//!   [`DeviceInfo::host_link`](vuma_core::DeviceInfo), device decode and host encode rates,
//!   measured once and cacheable) and the per-page [`TransferPlan`]
//!   (Zero / Raw / Codec) with bytes sent and saved;
//! - [`residency`]: compressed host residency — [`CompressedBuffer`]
//!   (compress once), [`Uploader`] (batched, double-buffered chunk
//!   copies + device decode), pinned and device-resident forms;
//! - [`path`]: [`HyperloopPath`], the memory manager's
//!   [`TransferPath`](vuma_core::TransferPath): write-backs encoded on the GPU and kept
//!   compressed in pinned host memory, uploads that skip zero pages where that pays, and
//!   [`HyperloopPath::pack_host`] for host bytes (every codec the device decodes);
//! - [`chunk`]: chunk images ([`chunk::ChunkImage`]) and their layout, shared by the host
//!   and the device encoder;
//! - [`integrity`]: a checksum per chunk image and a coverage check of its page table,
//!   verified on the host before anything is decoded;
//! - [`store`]: [`CompressedStore`] for cold evicted pages;
//! - [`datasets`]: seeded generators of the data sets tests and benches use.
//!
//! ## How it maps VUMA's concepts
//! A transfer is a [`TransferPlan`] over pages; a chunk of pages
//! crosses the link as one buffer copy and is decoded by [`Kernel`](vuma_core::Kernel)s
//! whose CUDA variant runs on `vuma-cuda`, whose SPIR-V variant runs on `vuma-vulkan` and
//! whose host variant runs on [`HostDevice`](vuma_core::HostDevice) (and is the reference).
//! The crate knows no backend.
//!
//! Host encoding is ~30× slower than a Gen5 link (measured on the H100 machine), so nothing here encodes in
//! the transfer path: [`CompressedBuffer`] compresses once and
//! uploads many times, and the planner charges host encoding to the plan when it is asked
//! to encode ([`EncodeCost`](planner::EncodeCost)).
//!
//! ## Feature flags
//! - `lz4` (default) — [`codecs::Lz4`] through `lz4_flex` (LZ4 pages need it to be encoded;
//!   the device LZ4 decoder and its host reference are always built);
//! - `zstd` (default) — [`codecs::Zstd`] through `zstd` (host only; the default codec of
//!   [`CompressedStore`]);
//! - `snappy` (default) — [`codecs::Snappy`] through `snap` (host only).
//!
//! ## A short tour
//! ```
//! use vuma_core::{DynDevice, HostDevice, Placement};
//! use vuma_hyperloop::{datasets, page::ElemWidth, residency::{CompressOptions, CompressedBuffer, Uploader}};
//!
//! let data = datasets::relu_f32(1 << 20, 1);
//! let cb = CompressedBuffer::compress(&data, &CompressOptions::with_width(ElemWidth::F32))?;
//! assert!(cb.summary().ratio() > 1.5);
//! let host = HostDevice::new();
//! let dst = DynDevice::alloc(&host, data.len() as u64, Placement::DeviceLocal)?;
//! Uploader::new(&host).upload(&cb, dst.as_ref())?;
//! let mut back = vec![0u8; data.len()];
//! DynDevice::read(&host, dst.as_ref(), 0, &mut back)?;
//! assert_eq!(back, data);
//! # Ok::<(), vuma_core::Error>(())
//! ```
//!
//! # Feature flags
//!
//! Rendered from the crate's manifest (`Cargo.toml`), so this list cannot drift from it:
#![doc = document_features::document_features!()]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod activations;
pub mod bitplane;
pub mod chunk;
pub mod codecs;
pub mod datasets;
pub mod encode;
pub mod floatcodec;
pub mod floatdecode;
pub mod integrity;
pub mod kernels;
pub mod lz4block;
pub mod page;
pub mod path;
pub mod planner;
pub mod realdata;
pub mod residency;
pub mod store;

pub use encode::{DeviceEncoder, EncoderScratch};
pub use path::{HyperloopPath, PathConfig};
pub use planner::{CostModel, DeviceCodec, PageDecision, PlanConfig, TransferPlan};
pub use residency::{CompressOptions, CompressedBuffer, PinnedCompressed, UploadScratch, Uploader};
pub use store::CompressedStore;
