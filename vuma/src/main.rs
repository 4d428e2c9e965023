//! The `vuma` command: `info`, `demo`, `bench`; `--trace FILE` for a Perfetto timeline.

use std::fs::File;
use std::io::{BufWriter, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::prelude::*;
use vuma::core::bench::{report, svg};
use vuma::trace::ChromeTrace;
use vuma::{bench, demo, info, stats, UnifiedMemoryManager};

#[derive(Parser, Debug)]
#[command(
    name = "vuma",
    version,
    about = "VUMA: virtual unified memory for PCs with discrete GPUs"
)]
struct Cli {
    /// Write a timeline of VUMA's spans (allocation, transfers, eviction, launches) to FILE
    /// in Chrome trace format; open it in https://ui.perfetto.dev.
    #[arg(long, global = true, value_name = "FILE")]
    trace: Option<PathBuf>,
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
    /// The seed scenario (heavy AI job, light UI work, a large buffer) with every decision,
    /// then memory statistics per location.
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
    /// Benchmarks on every device found (transfers from pageable memory, pool allocation),
    /// each against a baseline measured in the same run: a table, results.json and
    /// results.svg.
    Bench {
        /// Sizes up to 64 MiB and fewer repetitions.
        #[arg(long)]
        quick: bool,
        /// Print the records as a JSON array instead of the table.
        #[arg(long)]
        json: bool,
        /// Output folder for results.json and results.svg.
        #[arg(long, value_name = "DIR", default_value = "target/vuma-bench")]
        out: PathBuf,
        /// Run nothing: render the table and plot from existing JSON/JSONL files of records
        /// (e.g. bench/results/*.jsonl).
        #[arg(long, value_name = "FILE", num_args = 1..)]
        from: Vec<PathBuf>,
        /// Keep only the records whose benchmark id starts with PREFIX (repeatable; e.g.
        /// `--only manager/stream_oversubscribed` for a plot of one benchmark).
        #[arg(long, value_name = "PREFIX")]
        only: Vec<String>,
        /// Use only the host device.
        #[arg(long)]
        host_only: bool,
    },
}

type CliResult = Result<(), Box<dyn std::error::Error>>;

/// Creates the `--trace` file before any work, so that a bad path fails at once.
fn create_trace_file(path: &Path) -> Result<File, String> {
    File::create(path).map_err(|e| {
        format!(
            "cannot create the trace file {}: {e} (give a writable path to --trace)",
            path.display()
        )
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let trace_file = match cli.trace.as_deref().map(create_trace_file).transpose() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // `VUMA_LOG=debug` (any `EnvFilter` directive): events, and each span when it closes
    // (with its fields and time busy/idle); colour only on a terminal.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_span_events(FmtSpan::CLOSE)
        .with_filter(tracing_subscriber::EnvFilter::from_env("VUMA_LOG"));
    let trace = trace_file.as_ref().map(|_| ChromeTrace::new());
    let chrome = trace
        .as_ref()
        .map(|t| t.layer().with_filter(LevelFilter::DEBUG));
    tracing_subscriber::registry().with(fmt).with(chrome).init();

    let result = run(cli.command);
    let mut code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    };
    if let (Some(t), Some(file), Some(path)) = (trace, trace_file, cli.trace) {
        match t.write_to(&mut BufWriter::new(file)) {
            Ok(()) => eprintln!(
                "trace: {} events written to {} (open in https://ui.perfetto.dev)",
                t.len(),
                path.display()
            ),
            Err(e) => {
                eprintln!("error: cannot write trace {}: {e}", path.display());
                code = ExitCode::FAILURE;
            }
        }
    }
    code
}

fn run(cmd: Command) -> CliResult {
    match cmd {
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
        } => run_demo(json, scale, host_only)?,
        Command::Bench {
            quick,
            json,
            out,
            from,
            only,
            host_only,
        } => run_bench(quick, json, &out, &from, &only, host_only)?,
    }
    Ok(())
}

fn manager(host_only: bool) -> vuma::Result<UnifiedMemoryManager> {
    UnifiedMemoryManager::builder()
        .cuda(!host_only)
        .vulkan(!host_only)
        .build()
}

fn print_devices(vuma: &UnifiedMemoryManager) {
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
}

fn run_demo(json: bool, scale: f64, host_only: bool) -> CliResult {
    let vuma = manager(host_only)?;
    if !json {
        println!("VUMA demo — devices:");
        print_devices(&vuma);
        println!();
    }
    let out = demo::run(&vuma, &demo::DemoOptions { scale })?;
    if json {
        let mut v = out.to_json();
        v["stats"] = stats::to_json(&vuma);
        println!("{v:#}");
    } else {
        for r in &out.reports {
            println!("{r}\n");
        }
        for v in &out.verified {
            println!("verified: {v}");
        }
        println!(
            "\nmemory statistics ({} live buffers):\n{}",
            vuma.stats().buffers,
            stats::to_table(&vuma)
        );
    }
    Ok(())
}

fn run_bench(
    quick: bool,
    json: bool,
    out: &Path,
    from: &[PathBuf],
    only: &[String],
    host_only: bool,
) -> CliResult {
    let mut entries: Vec<report::Entry> = if !from.is_empty() {
        let mut all = Vec::new();
        for f in from {
            let text = std::fs::read_to_string(f)
                .map_err(|e| format!("cannot read {}: {e}", f.display()))?;
            let recs = report::parse(&text).map_err(|e| format!("{}: {e}", f.display()))?;
            if recs.is_empty() {
                return Err(format!("{}: no benchmark records in it", f.display()).into());
            }
            all.extend(recs);
        }
        all
    } else {
        {
            let vuma = manager(host_only)?;
            let opts = if quick {
                bench::BenchOptions::quick()
            } else {
                bench::BenchOptions::full()
            };
            eprintln!("vuma bench on {} device(s):", vuma.devices().len());
            for d in vuma.devices() {
                eprintln!("  {} ({})", d.info().name, d.info().backend);
            }
            let bar = indicatif::ProgressBar::new(bench::steps(&vuma, &opts));
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:32} {pos}/{len} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            let recs = bench::run(&vuma, &opts, &mut |label| {
                bar.inc(1);
                bar.set_message(label.to_string());
            });
            bar.finish_and_clear();
            recs?.iter().map(report::Entry::from).collect()
        }
    };
    if !only.is_empty() {
        let before = entries.len();
        entries.retain(|e| only.iter().any(|p| e.bench.starts_with(p.as_str())));
        if entries.is_empty() {
            return Err(format!(
                "none of the {before} records has a benchmark id starting with {}",
                only.join(" or ")
            )
            .into());
        }
    }
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let (json_path, svg_path) = (out.join("results.json"), out.join("results.svg"));
    let array = report::to_json_array(&entries);
    std::fs::write(&json_path, &array)
        .map_err(|e| format!("cannot write {}: {e}", json_path.display()))?;
    std::fs::write(&svg_path, svg::render(&entries))
        .map_err(|e| format!("cannot write {}: {e}", svg_path.display()))?;
    if json {
        print!("{array}");
    } else {
        print!("{}", report::render_table(&entries));
    }
    let wins = entries
        .iter()
        .filter(|r| r.ratio.is_some_and(|x| x >= 1.0))
        .count();
    eprintln!(
        "{} records ({wins} at or above the baseline); wrote {} and {}",
        entries.len(),
        json_path.display(),
        svg_path.display()
    );
    Ok(())
}
