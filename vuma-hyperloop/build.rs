//! Compiles Hyperloop's WGSL decoders and encoders to SPIR-V with naga at build time and
//! writes each as little-endian words to `$OUT_DIR/<name>.spv` (embedded by
//! `src/kernels.rs`, `src/floatdecode.rs` and `src/encode.rs`).
//!
//! Every decoder module is `shaders/common.wgsl` (bindings, push constants, page-table
//! checks, byte access to word arrays) followed by its kernel's file; every encoder module
//! is `shaders/hl_enc_common.wgsl` (the source binding, block planning) followed by its
//! kernel's file. The writer flags are set
//! explicitly (no `DEBUG`, whatever naga's own build profile) so the output is
//! reproducible. naga 30 spells WGSL push constants `var<immediate>` (validated with
//! `Capabilities::IMMEDIATES`).
//!
//! `hl_float` is written without naga's zero-initialisation of workgroup memory (its
//! shader writes every workgroup word before reading it): the polyfill stores every word of
//! the workgroup variables from invocation 0 at entry, which llvmpipe (lavapipe) compiles
//! word by word: 40 s of cold compile for `hl_float`'s 8 KiB table on a 2-core machine,
//! against 0.5 s without it.

use std::path::{Path, PathBuf};

fn read(path: &str) -> String {
    println!("cargo:rerun-if-changed={path}");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn compile(name: &str, source: &str, out_dir: &Path) {
    compile_with(name, source, out_dir, true)
}

fn compile_with(name: &str, source: &str, out_dir: &Path, zero_init: bool) {
    let module = match naga::front::wgsl::parse_str(source) {
        Ok(m) => m,
        Err(e) => panic!("WGSL parse of {name}: {}", e.emit_to_string(source)),
    };
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::IMMEDIATES,
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("naga validation of {name}: {}", e.emit_to_string(source)));
    let opts = naga::back::spv::Options {
        lang_version: (1, 0),
        flags: naga::back::spv::WriterFlags::empty(),
        zero_initialize_workgroup_memory: if zero_init {
            naga::back::spv::ZeroInitializeWorkgroupMemoryMode::Polyfill
        } else {
            naga::back::spv::ZeroInitializeWorkgroupMemoryMode::None
        },
        // No naga bounds checks here: naga 30 cannot bound-check atomics, which the
        // encoder kernels use; these kernels check every range against their records
        // and flag what does not fit (FLAG_* status words) instead.
        ..Default::default()
    };
    let words = naga::back::spv::write_vec(&module, &info, &opts, None)
        .unwrap_or_else(|e| panic!("SPIR-V output of {name}: {e}"));
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    std::fs::write(out_dir.join(format!("{name}.spv")), bytes)
        .unwrap_or_else(|e| panic!("writing {name}.spv: {e}"));
}

fn main() {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let common = read("shaders/common.wgsl");
    for name in ["hl_fill_copy", "hl_bitplane", "hl_lz4"] {
        let kernel = read(&format!("shaders/{name}.wgsl"));
        compile(name, &format!("{common}\n{kernel}"), &out_dir);
    }
    let kernel = read("shaders/hl_float.wgsl");
    compile_with("hl_float", &format!("{common}\n{kernel}"), &out_dir, false);
    let enc_common = read("shaders/hl_enc_common.wgsl");
    for name in ["hl_enc_size", "hl_enc_write"] {
        let kernel = read(&format!("shaders/{name}.wgsl"));
        compile(name, &format!("{enc_common}\n{kernel}"), &out_dir);
    }
    println!("cargo:rerun-if-changed=build.rs");
}
