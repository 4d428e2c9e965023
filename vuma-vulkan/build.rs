//! Compiles VUMA's WGSL kernels to SPIR-V with naga at build time and writes each as
//! little-endian words to `$OUT_DIR/<name>.spv` (embedded by `src/kernels.rs`).
//!
//! The writer flags are set explicitly (no `DEBUG`, whatever naga's own build profile) so
//! the output is reproducible. naga 30 spells WGSL push constants `var<immediate>`
//! (validated with `Capabilities::IMMEDIATES`).

use std::path::PathBuf;

fn compile(name: &str, source: &str, out_dir: &std::path::Path) {
    let module = match naga::front::wgsl::parse_str(source) {
        Ok(m) => m,
        Err(e) => panic!("WGSL parse of {name}: {}", e.emit_to_string(source)),
    };
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::IMMEDIATES,
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("naga validation of {name}: {e:?}"));
    let opts = naga::back::spv::Options {
        lang_version: (1, 0),
        flags: naga::back::spv::WriterFlags::empty(),
        // Out-of-bounds reads give zero and writes are dropped, whatever a kernel's
        // indices say: a shader can never write past its binding.
        bounds_check_policies: naga::proc::BoundsCheckPolicies {
            index: naga::proc::BoundsCheckPolicy::ReadZeroSkipWrite,
            buffer: naga::proc::BoundsCheckPolicy::ReadZeroSkipWrite,
            ..Default::default()
        },
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
    compile(
        "increment",
        vuma_core::conformance::INCREMENT_WGSL,
        &out_dir,
    );
    for name in ["increment_2d", "read_sum"] {
        let path = format!("shaders/{name}.wgsl");
        println!("cargo:rerun-if-changed={path}");
        let src = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
        compile(name, &src, &out_dir);
    }
    println!("cargo:rerun-if-changed=build.rs");
}
