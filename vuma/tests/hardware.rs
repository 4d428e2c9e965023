//! The seed scenario on whatever GPUs this machine has (skips loudly without one; fails
//! without one when `VUMA_REQUIRE_HW=1`).

use vuma::{demo, Tier, UnifiedMemoryManager};
use vuma_core::{Backend, DeviceKind};

#[test]
fn seed_scenario_on_the_gpu() {
    let vuma = UnifiedMemoryManager::new().expect("manager");
    let gpus: Vec<_> = vuma
        .devices()
        .iter()
        .filter(|d| d.info().backend != Backend::Host && d.info().kind == DeviceKind::Discrete)
        .collect();
    if gpus.is_empty() {
        let why: Vec<String> = vuma
            .backends()
            .iter()
            .map(|b| {
                format!(
                    "{}: {}",
                    b.backend,
                    b.error.as_deref().unwrap_or("no discrete GPU")
                )
            })
            .collect();
        vuma_core::conformance::skip_or_fail("hw", &why.join("; "));
        return;
    }
    print!("{}", vuma::info::to_text(&vuma));
    let out = demo::run(&vuma, &demo::DemoOptions::default()).expect("demo on the GPU");
    for r in &out.reports {
        println!("{r}\n");
    }
    let ai = &out.reports[0];
    assert_eq!(
        ai.tier,
        Tier::High,
        "heavy AI work goes to the discrete GPU"
    );
    assert_ne!(ai.backend, Backend::Host);
    let ui = &out.reports[1];
    assert_eq!(ui.tier, Tier::Low, "UI work stays on the low tier");
    let big = &out.reports[2];
    assert_eq!(big.tier, Tier::High);
    assert!(
        big.buffers
            .iter()
            .all(|b| b.placement == vuma_core::Placement::DeviceLocal),
        "a 256 MiB buffer migrates to VRAM"
    );
    let again = &out.reports[3];
    assert_eq!(again.bytes_moved, 0, "second run finds its input resident");
    assert_eq!(out.verified.len(), 3);
}
