//! The memory manager's model test ([`vuma_core::conformance::model`]) through the real
//! PCIe Hyperloop path on the host device (the encoders' and decoders' host variants): two
//! threads, injected faults, a device lost midway; every byte checked against the model.

use std::sync::Arc;

use vuma_core::conformance::model::{run, ModelConfig};
use vuma_core::TransferPath;
use vuma_hyperloop::{HyperloopPath, PathConfig};

#[test]
fn the_model_holds_through_hyperloop() {
    for seed in 1..=8u64 {
        let path = HyperloopPath::new(PathConfig {
            page_size: 16 << 10,
            min_bytes: 64 << 10,
            on_shared_memory: true,
            always_encode: true,
            scan_bytes_per_s: 1e12,
            call_overhead_s: Some(1e-9),
            ..PathConfig::default()
        })
        .unwrap();
        let cfg = ModelConfig {
            seed,
            ..ModelConfig::default()
        };
        match run(Some(Arc::new(path) as Arc<dyn TransferPath>), &cfg) {
            Ok(line) => eprintln!("{line}"),
            Err(e) => panic!("seed {seed}: {e}"),
        }
    }
}
