//! The seed's usage: create the manager, describe workloads, let VUMA place and run them.
//!
//! `cargo run --release -p vuma --example seed`

use vuma::{kernels, GpuWorkload, Priority, Scalar, UnifiedMemoryManager, WorkloadKind};

fn main() -> vuma::Result<()> {
    let vuma = UnifiedMemoryManager::new()?;
    for b in vuma.backends() {
        match &b.error {
            None => println!("{}: {} device(s)", b.backend, b.devices.len()),
            Some(e) => println!("{}: absent ({e})", b.backend),
        }
    }

    // The seed's block as written: a workload described by metadata only (a type string,
    // an integer priority, a memory requirement, no kernel) is planned, not run.
    let ai_task = GpuWorkload::metadata("AI_Training_Job", "INFERENCE".parse()?)
        .complexity(0.95)
        .memory_requirement(4096 << 20)
        .priority(Priority::from_level(10)?);
    println!("{}\n", vuma.process_workload(&ai_task)?);

    // A heavy AI workload over 32 MiB of activations.
    let n: u32 = 8 << 20;
    let input: Vec<f32> = (0..n).map(|i| (i % 200) as f32 - 100.0).collect();
    let x = vuma.create_buffer_from_slice(&input)?;
    let y = vuma.create_buffer(u64::from(n) * 4)?;
    let heavy = GpuWorkload::new(
        "transformer-layer",
        WorkloadKind::AiInference,
        kernels::relu_scale(),
    )
    .complexity(0.9)
    .priority(Priority::High)
    .read(&x, 1)
    .write(&y)
    .scalar(Scalar::U32(n))
    .scalar(Scalar::F32(1.0))
    .launch(kernels::launch_for(u64::from(n)));
    println!("{}\n", vuma.process_workload(&heavy)?);

    // Light UI work: a small blend that should stay on the low tier.
    let px: u32 = 256 * 256;
    let a = vuma.create_buffer_from(&vec![0x80u8; px as usize * 4])?;
    let b = vuma.create_buffer_from(&vec![0x40u8; px as usize * 4])?;
    let out = vuma.create_buffer(u64::from(px) * 4)?;
    let light = GpuWorkload::new("ui-overlay", WorkloadKind::Ui, kernels::blend())
        .complexity(0.1)
        .priority(Priority::Realtime)
        .read(&a, 1)
        .read(&b, 1)
        .write(&out)
        .scalar(Scalar::U32(px))
        .launch(kernels::launch_for(u64::from(px)));
    println!("{}", vuma.process_workload(&light)?);

    let y_host: Vec<f32> = vuma.to_vec_of(&y)?;
    assert_eq!((y_host[0], y_host[150]), (0.0, 50.0));
    assert_eq!(vuma.to_vec(&out)?[0], 0x60);
    println!("\nresults verified on the host");
    Ok(())
}
