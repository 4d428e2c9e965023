//! Compiles the facade's WGSL kernels to SPIR-V with naga when the `vulkan` feature is on.

fn main() {
    println!("cargo::rerun-if-changed=shaders");
    #[cfg(feature = "vulkan")]
    compile_shaders();
}

#[cfg(feature = "vulkan")]
fn compile_shaders() {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    for name in ["relu_scale", "blend", "scale_u32"] {
        let path = format!("shaders/{name}.wgsl");
        let src = std::fs::read_to_string(&path).expect("read shader");
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{path}: {}", e.emit_to_string(&src)));
        let info = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::IMMEDIATES,
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{path}: {e:?}"));
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
        let words = naga::back::spv::write_vec(&module, &info, &opts, None).expect("SPIR-V");
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        std::fs::write(out.join(format!("{name}.spv")), bytes).expect("write spv");
    }
}
