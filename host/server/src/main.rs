use clap::Parser;

/// glibc malloc spent a quarter of the produce path in `_int_malloc` under load; mimalloc does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// After the server stopped (the log closed, everything acknowledged durable), how long work
/// still running may take before the process exits anyway.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,sluice=info,sluice_log=info")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = sluice::cli::Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the async runtime starts");
    let result = runtime.block_on(sluice::cli::run(cli));
    // Dropping a runtime waits for every blocking task, however long: bound it.
    runtime.shutdown_timeout(EXIT_GRACE);
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
