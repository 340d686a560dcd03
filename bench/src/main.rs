//! `leadflow-bench`: measures Leadflow on this machine and writes `BENCHMARKS.md`
//! (`scripts/bench` builds it next to `leadflow` and runs it). A binary of its own, so
//! the benchmark, its fakes and its load generator are not shipped in the product.
#![forbid(unsafe_code)]

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "leadflow-bench",
    about = "Measure this machine and write the figures to BENCHMARKS.md"
)]
struct Cli {
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: std::path::PathBuf,
    /// Smaller workloads: a quick check that every section runs.
    #[arg(long)]
    quick: bool,
    /// Only these sections (queue, ingest, pipeline, long, recovery, media, media_memory,
    /// webhooks, connections, fairness, retention, metrics); the others keep their figures.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    // Media sections run the worker in this process, and its PDF extraction child is this
    // executable (`LEADFLOW_PDF_EXTRACTOR` defaults to it).
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(leadflow_worker::media::pdf::CHILD_COMMAND) {
        std::process::exit(leadflow_worker::media::pdf::child_main(&args[2..]));
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("LEADFLOW_LOG").unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(leadflow_bench::run(leadflow_bench::Options {
            out: cli.out,
            quick: cli.quick,
            only: cli.only,
        }))
}
