use clap::Parser;

/// glibc malloc spent a quarter of the produce path in `_int_malloc` under load; mimalloc does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,sluice=info,sluice_log=info")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = sluice::cli::Cli::parse();
    if let Err(e) = sluice::cli::run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
