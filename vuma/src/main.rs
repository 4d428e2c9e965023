//! The `vuma` command: `info`, `demo`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vuma::{demo, info, UnifiedMemoryManager};

#[derive(Parser, Debug)]
#[command(
    name = "vuma",
    version,
    about = "VUMA: virtual unified memory for PCs with discrete GPUs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Devices per backend and tier, memory, link, codecs; why a backend is absent.
    Info {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// The seed scenario (heavy AI job, light UI work, a large buffer) with every decision.
    Demo {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Multiplies buffer sizes (default 1.0: 64 MiB activations, 256 MiB large buffer).
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// Use only the host device.
        #[arg(long)]
        host_only: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("VUMA_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> vuma::Result<()> {
    match cli.command {
        Command::Info { json } => {
            let vuma = UnifiedMemoryManager::new()?;
            if json {
                println!("{:#}", info::to_json(&vuma));
            } else {
                print!("{}", info::to_text(&vuma));
            }
        }
        Command::Demo {
            json,
            scale,
            host_only,
        } => {
            let vuma = UnifiedMemoryManager::builder()
                .cuda(!host_only)
                .vulkan(!host_only)
                .build()?;
            if !json {
                println!("VUMA demo — devices:");
                for b in vuma.backends() {
                    match (&b.error, b.devices.is_empty()) {
                        (_, false) => {
                            for d in &b.devices {
                                println!("  {:<7} {} ({})", b.backend.to_string(), d.name, d.kind);
                            }
                        }
                        (Some(e), true) => println!("  {:<7} absent: {e}", b.backend.to_string()),
                        (None, true) => println!("  {:<7} absent", b.backend.to_string()),
                    }
                }
                println!();
            }
            let out = demo::run(&vuma, &demo::DemoOptions { scale })?;
            if json {
                println!("{:#}", out.to_json());
            } else {
                for r in &out.reports {
                    println!("{r}\n");
                }
                for v in &out.verified {
                    println!("verified: {v}");
                }
                let s = vuma.stats();
                println!(
                    "\nmemory: host {} in use (peak {}); {}",
                    vuma_core::human_bytes(s.host.bytes_in_use),
                    vuma_core::human_bytes(s.host.peak_bytes),
                    s.devices
                        .iter()
                        .zip(vuma.devices())
                        .map(|(d, dev)| format!(
                            "{}: {} in use, {} evictions, {} hits / {} misses",
                            dev.info().name,
                            vuma_core::human_bytes(d.bytes_in_use),
                            d.evictions,
                            d.hits,
                            d.misses
                        ))
                        .collect::<Vec<_>>()
                        .join("; ")
                );
            }
        }
    }
    Ok(())
}
