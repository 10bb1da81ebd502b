//! `sluice-bench`: the numbers in docs/BENCHMARKS.md.
//!
//! Build and run (release):
//! ```sh
//! cargo build --release -p sluice -p sluice-bench
//! target/release/sluice-bench all --dir /path/on/the/disk/to/measure
//! ```
//! HTTP benchmarks run the real `sluice` binary (found beside this one) as a separate process
//! and drive it over loopback; library benchmarks use `sluice-log` directly.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod compaction;
mod edge;
mod fhir;
mod http_load;
mod isolation;
mod latency_store;
mod outbound;
mod phi;
mod registry;
mod wasm;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Sluice benchmarks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Directory for data (put it on the disk being measured). Default: a temp dir.
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    /// Seconds per load phase.
    #[arg(long, global = true, default_value_t = 15)]
    seconds: u64,
}

#[derive(Subcommand, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    /// Everything below, in order.
    All,
    /// The disk's own fsync'd sequential write rate.
    Disk,
    /// 100 events per request, 8 clients; write amplification; then fetch and tail latency.
    Batched,
    /// One event per request, 64 clients: ack latency.
    Single,
    /// Restart time with 10 million events stored.
    Restart,
    /// Object-store PUTs per second at full load with S3-like latency and a 100 ms window.
    S3,
    /// The WebAssembly runtime: boundary cost, validate throughput, instantiation, compile.
    Wasm,
    /// Batched produce with the validate+enrich+route pipeline vs without.
    Pipeline,
    /// Validated produce (a registered 20-field JSON Schema) vs unvalidated; lookups by id.
    Registry,
    /// Webhook deliveries/s with 100 subscriptions; produce-to-first-attempt latency.
    Webhooks,
    /// Consumer-group fetch through the REST Proxy API; SSE fan-out to 1,000 clients.
    Consumers,
    /// One tenant's produce latency, quiet and while another tenant attacks.
    Isolation,
    /// Edge gateways: signed webhooks in and CloudEvents batches, against plain produce.
    Edge,
    /// Compaction: restart after 10 M `_offsets` commits, throughput, produce p99 meanwhile.
    Compaction,
    /// FHIR resources in (checked, versioned, appended) against plain produce.
    Fhir,
    /// FHIR notification fan-out to 100 rest-hook Subscriptions: notifications/s, latency.
    FhirFanout,
    /// PHI (sealed) topics' produce and fetch against plain topics.
    Phi,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let tmp;
    let dir = match &cli.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            tmp = tempfile::tempdir_in(".")?;
            tmp.path().to_owned()
        }
    };
    println!("# sluice-bench on {} ({} cores)", hostname(), num_cpus());
    let run = |c: Cmd| cli.cmd == Cmd::All || cli.cmd == c;
    let secs = Duration::from_secs(cli.seconds);
    if run(Cmd::Disk) {
        disk(&dir.join("disk-probe"), secs.min(Duration::from_secs(10)))?;
    }
    if run(Cmd::Batched) {
        rt.block_on(http_load::batched(&dir.join("batched"), secs))?;
    }
    if run(Cmd::Single) {
        rt.block_on(http_load::single(&dir.join("single"), secs))?;
    }
    if run(Cmd::Restart) {
        rt.block_on(http_load::restart(&dir.join("restart"), 10_000_000))?;
    }
    if run(Cmd::S3) {
        rt.block_on(latency_store::s3_like(secs))?;
    }
    if run(Cmd::Wasm) {
        wasm::components(&dir, secs)?;
    }
    if run(Cmd::Pipeline) {
        rt.block_on(http_load::pipeline(&dir.join("pipeline"), secs))?;
    }
    if run(Cmd::Registry) {
        rt.block_on(registry::run(&dir.join("registry"), secs))?;
    }
    if run(Cmd::Webhooks) {
        rt.block_on(outbound::webhooks(&dir.join("webhooks"), secs))?;
    }
    if run(Cmd::Consumers) {
        rt.block_on(outbound::consumers(&dir.join("consumers"), secs))?;
    }
    if run(Cmd::Isolation) {
        rt.block_on(isolation::run(&dir.join("isolation"), secs))?;
    }
    if run(Cmd::Edge) {
        rt.block_on(edge::run(&dir.join("edge"), secs))?;
    }
    if run(Cmd::Fhir) {
        rt.block_on(fhir::run(&dir.join("fhir"), secs))?;
    }
    if run(Cmd::FhirFanout) {
        rt.block_on(fhir::fanout(&dir.join("fhir-fanout"), secs))?;
    }
    if run(Cmd::Phi) {
        rt.block_on(phi::run(&dir.join("phi"), secs))?;
    }
    if run(Cmd::Compaction) {
        rt.block_on(compaction::run(&dir.join("compaction"), secs))?;
    }
    Ok(())
}

/// Sequential 1 MiB writes, each followed by fdatasync: what the disk gives a durable log.
fn disk(path: &Path, secs: Duration) -> anyhow::Result<f64> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).context("disk probe file")?;
    let buf = vec![0x5au8; 1 << 20];
    let start = Instant::now();
    let mut written = 0u64;
    while start.elapsed() < secs {
        f.write_all(&buf)?;
        f.sync_data()?;
        written += buf.len() as u64;
    }
    let rate = written as f64 / start.elapsed().as_secs_f64() / 1e6;
    drop(f);
    std::fs::remove_file(path)?;
    println!("disk: sequential 1 MiB writes + fdatasync: {rate:.0} MB/s");
    Ok(rate)
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname").map_or_else(|_| "?".into(), |s| s.trim().to_owned())
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Percentile of sorted microsecond samples, in milliseconds.
pub fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}
