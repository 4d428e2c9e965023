//! Vulkan benchmarks (harness = false). Without a Vulkan device: prints SKIP and exits 0.
//! `VUMA_BENCH_QUICK=1` shrinks sizes and iterations. Validation layers stay off.
//!
//! - `vulkan/h2d_staged/<size>`: `Device::write` of a pageable host buffer into device-local
//!   memory (staging ring, pipelined; `H2dStrategy::Staging` whatever `VUMA_VK_H2D` says) vs
//!   one raw `vkCmdCopyBuffer` from host-visible memory (a `Staging` buffer) into
//!   device-local memory, in the same run;
//! - `vulkan/h2d_bar/<size>`: the same write with `H2dStrategy::Bar` (copy threads write
//!   into BAR slots, then VRAM→VRAM copies) vs the same raw copy, measured again right after;
//!   a line says how many bytes really went through the BAR ring (0: the device has no BAR
//!   upload type and the row measured the staging fallback);
//! - `vulkan/d2h_staged/<size>`: `Device::read` vs one raw `vkCmdCopyBuffer` into host-visible
//!   memory;
//! - `vulkan/zero_copy_read/<size>`: a kernel reading host memory in place (`HostMapped`)
//!   vs copying it to device-local memory and then reading it there (GB/s of source bytes,
//!   host clock, submit to completion).

use std::time::Instant;

use vuma_core::bench::{median, Record};
use vuma_core::{AccessMode, Arg, Device, LaunchConfig, Placement, Scalar};
use vuma_vulkan::{H2dStrategy, VulkanDevice, VulkanOptions};

fn gbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / secs / 1e9
}

fn time(iters: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    let mut s: Vec<f64> = (0..iters)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    median(&mut s)
}

fn main() {
    let quick = std::env::var("VUMA_BENCH_QUICK").is_ok_and(|v| v == "1");
    let dev = match VulkanDevice::open_with(0, &VulkanOptions::default()) {
        Ok(d) => d,
        Err(e) => {
            println!("SKIP: vulkan benchmarks: {e}");
            return;
        }
    };
    let name = dev.info().name.clone();
    let size: u64 = if quick { 16 << 20 } else { 256 << 20 };
    let iters = if quick { 3 } else { 9 };
    let label = format!("{}MiB", size >> 20);
    println!(
        "device: {name} ({}), dedicated transfer queue: {}",
        dev.info().kind,
        dev.has_dedicated_transfer_queue()
    );

    let run = || -> vuma_core::Result<()> {
        let host: Vec<u8> = (0..size).map(|i| (i * 13 % 251) as u8).collect();
        let mut back = vec![0u8; size as usize];
        let dl = dev.alloc(size, Placement::DeviceLocal)?;
        let stg = dev.alloc(size, Placement::Staging)?;
        dev.write(&stg, 0, &host)?;

        // H2D
        let from_env = dev.h2d_strategy();
        dev.set_h2d_strategy(H2dStrategy::Staging);
        let vuma = time(iters, || dev.write(&dl, 0, &host).expect("write"));
        let raw = time(iters, || dev.copy(&stg, 0, &dl, 0, size).expect("copy"));
        Record {
            bench: format!("vulkan/h2d_staged/{label}"),
            device: name.clone(),
            value: gbps(size, vuma),
            unit: "GB/s".into(),
            baseline: "vkCmdCopyBuffer host-visible->device-local".into(),
            baseline_value: gbps(size, raw),
            higher_is_better: true,
        }
        .emit();

        // H2D through the BAR.
        dev.set_h2d_strategy(H2dStrategy::Bar);
        let bar_before = dev.bar_bytes_written();
        let vuma = time(iters, || dev.write(&dl, 0, &host).expect("write"));
        let bar_bytes = dev.bar_bytes_written() - bar_before;
        dev.read(&dl, 0, &mut back)?;
        assert!(back == host, "BAR upload mismatch");
        back.fill(0);
        let raw = time(iters, || dev.copy(&stg, 0, &dl, 0, size).expect("copy"));
        println!(
            "  (BAR upload type {:?}: {} of {} bytes written through the BAR ring)",
            dev.bar_upload_type(),
            bar_bytes,
            size * (iters as u64 + 1)
        );
        Record {
            bench: format!("vulkan/h2d_bar/{label}"),
            device: name.clone(),
            value: gbps(size, vuma),
            unit: "GB/s".into(),
            baseline: "vkCmdCopyBuffer host-visible->device-local".into(),
            baseline_value: gbps(size, raw),
            higher_is_better: true,
        }
        .emit();
        dev.set_h2d_strategy(from_env);

        // D2H
        let vuma = time(iters, || dev.read(&dl, 0, &mut back).expect("read"));
        let raw = time(iters, || dev.copy(&dl, 0, &stg, 0, size).expect("copy"));
        assert!(back == host, "read-back mismatch");
        Record {
            bench: format!("vulkan/d2h_staged/{label}"),
            device: name.clone(),
            value: gbps(size, vuma),
            unit: "GB/s".into(),
            baseline: "vkCmdCopyBuffer device-local->host-visible".into(),
            baseline_value: gbps(size, raw),
            higher_is_better: true,
        }
        .emit();

        // Zero-copy compute read vs copy-then-read.
        let hm = dev.alloc(size, Placement::HostMapped)?;
        dev.write(&hm, 0, &host)?;
        let groups = 4096u32;
        let out = dev.alloc(u64::from(groups) * 256 * 4, Placement::DeviceLocal)?;
        let k = vuma_vulkan::read_sum_kernel();
        let cfg = LaunchConfig {
            grid: [groups, 1, 1],
            block: [256, 1, 1],
            shared_mem_bytes: 0,
        };
        let max_range = dev.max_storage_buffer_range();
        let chunk = size.min(max_range / 16 * 16);
        let read_all = |b: &vuma_vulkan::VulkanBuffer| {
            let mut off = 0;
            while off < size {
                let len = chunk.min(size - off);
                dev.launch(
                    &k,
                    &cfg,
                    &[
                        Arg::Buffer {
                            buffer: b,
                            offset: off,
                            len,
                            access: AccessMode::Read,
                        },
                        Arg::whole(&out, AccessMode::Write),
                        Arg::Scalar(Scalar::U32((len / 16) as u32)),
                    ],
                )
                .expect("launch");
                off += len;
            }
        };
        let zc = time(iters, || read_all(&hm));
        let cr = time(iters, || {
            dev.copy(&hm, 0, &dl, 0, size).expect("copy");
            read_all(&dl);
        });
        let dl_only = time(iters, || read_all(&dl));
        println!(
            "  (kernel reading device-local memory alone: {:.2} GB/s)",
            gbps(size, dl_only)
        );
        Record {
            bench: format!("vulkan/zero_copy_read/{label}"),
            device: name.clone(),
            value: gbps(size, zc),
            unit: "GB/s".into(),
            baseline: "copy to device-local, then read".into(),
            baseline_value: gbps(size, cr),
            higher_is_better: true,
        }
        .emit();
        Ok(())
    };
    if let Err(e) = run() {
        eprintln!("vulkan benchmark failed: {e}");
        std::process::exit(1);
    }
}
