//! Tile-based dispatch: a memory-bound multi-pass kernel over a working set far larger than
//! the L2, run all passes per L2-sized tile (VUMA) vs pass after pass over the whole buffer
//! (baseline), on the CUDA device. Records effective GB/s (bytes read and written by all
//! passes / run time).

use std::sync::Arc;

use vuma::{kernels, GpuWorkload, UnifiedMemoryManager, WorkloadKind};
use vuma_core::bench::{median, Record};
use vuma_core::{human_bytes, Backend, DeviceKind, Scalar};

fn main() {
    let quick = std::env::var("VUMA_BENCH_QUICK").is_ok_and(|v| v == "1");
    let vuma = match UnifiedMemoryManager::builder()
        .host(false)
        .vulkan(false)
        .build()
    {
        Ok(v) => Arc::new(v),
        Err(e) => {
            println!("SKIP: tiling bench needs a CUDA device: {e}");
            return;
        }
    };
    let Some(dev) = vuma
        .devices()
        .iter()
        .find(|d| d.info().backend == Backend::Cuda && d.info().kind == DeviceKind::Discrete)
        .cloned()
    else {
        println!("SKIP: tiling bench needs a discrete CUDA device");
        return;
    };
    let name = dev.info().name.clone();
    let bytes: u64 = if quick { 256 << 20 } else { 1 << 30 };
    let n = bytes / 4;
    let passes = 8u32;
    let buf = vuma.create_buffer(bytes).expect("buffer");
    let job = |tiled: bool| {
        let w = GpuWorkload::new(
            "multipass",
            WorkloadKind::HeavyCompute,
            kernels::scale_u32(),
        )
        .complexity(0.9)
        .read_write(&buf, passes)
        .scalar(Scalar::U32(n as u32))
        .scalar(Scalar::U32(3))
        .scalar(Scalar::U32(1))
        .passes(passes)
        .launch(kernels::launch_for(n));
        if tiled {
            w.tiled(4)
        } else {
            w
        }
    };
    // Warm up: migrate the buffer, compile the kernel.
    let first = vuma.process_workload(&job(false)).expect("warm-up");
    assert_eq!(first.device, name);
    let mut runs = 1u32;
    let (mut tiled, mut plain) = (Vec::new(), Vec::new());
    let mut tiles = 0;
    for _ in 0..if quick { 3 } else { 7 } {
        let r = vuma.process_workload(&job(true)).expect("tiled");
        tiles = r.tiles;
        tiled.push(r.times.run.as_secs_f64());
        let r = vuma.process_workload(&job(false)).expect("untiled");
        plain.push(r.times.run.as_secs_f64());
        runs += 2;
    }
    // Check the result: every element went through `runs * passes` steps of x*3+1 from 0.
    let out = vuma.to_vec(&buf).expect("read back");
    let mut want = 0u32;
    for _ in 0..runs * passes {
        want = want.wrapping_mul(3).wrapping_add(1);
    }
    for i in [0usize, 777, n as usize - 1] {
        let got = u32::from_le_bytes([out[4 * i], out[4 * i + 1], out[4 * i + 2], out[4 * i + 3]]);
        assert_eq!(got, want, "element {i}");
    }
    let traffic = 2.0 * bytes as f64 * f64::from(passes);
    let t = median(&mut tiled);
    let p = median(&mut plain);
    println!(
        "{tiles} tiles of about {} each",
        human_bytes(bytes / u64::from(tiles.max(1)))
    );
    Record {
        bench: format!(
            "sched/tiled_multipass_x{passes}/{}",
            human_bytes(bytes).replace(' ', "")
        ),
        device: name,
        value: traffic / t / 1e9,
        unit: "GB/s".into(),
        baseline: format!("untiled, {passes} whole-buffer passes"),
        baseline_value: traffic / p / 1e9,
        higher_is_better: true,
    }
    .emit();
}
