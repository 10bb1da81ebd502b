//! # sluice: the command line
//!
//! `sluice serve` runs the gateway (`sluice-server`); `sluice openapi` prints its API document;
//! every other command is a client of a running gateway's HTTP API, one module per command
//! group.

mod client;
mod consume;
mod edge;
mod groups;
mod keys;
mod produce;
mod schemas;
mod serve;
mod sources;
mod subscriptions;
mod topics;
mod transforms;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use client::Client;
pub use client::Conn;
use groups::GroupsCmd;
use keys::{KeysCmd, TenantsCmd};
use schemas::SchemasCmd;
use serve::ServeArgs;
use sources::SourcesCmd;
use subscriptions::SubscriptionsCmd;
use topics::TopicsCmd;
use transforms::{DeployArgs, TransformsCmd};

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Sluice: a WebAssembly edge event gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(ServeArgs),
    /// Print the HTTP API's OpenAPI 3.1 document (the one `GET /openapi.json` serves).
    Openapi,
    /// Serve spin.toml's edge gateway in-process (the Spin component, without the Spin CLI).
    Edge(edge::EdgeArgs),
    /// Manage topics.
    Topics {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: TopicsCmd,
    },
    /// Produce JSON events (one per line) from stdin or a file.
    Produce {
        #[command(flatten)]
        conn: Conn,
        topic: String,
        /// Read events from this file instead of stdin (shows progress).
        #[arg(long, short)]
        file: Option<PathBuf>,
        /// Events per request.
        #[arg(long, default_value_t = 500)]
        batch: usize,
    },
    /// Print a topic's events as JSON lines.
    Consume {
        #[command(flatten)]
        conn: Conn,
        topic: String,
        /// Only this partition (default: all).
        #[arg(long, short)]
        partition: Option<u32>,
        /// Start at the oldest event (default: the newest).
        #[arg(long, conflicts_with_all = ["offset", "since"])]
        from_beginning: bool,
        /// Start at this offset (in each partition read).
        #[arg(long, conflicts_with = "since")]
        offset: Option<u64>,
        /// Start at the first event at or after this time (RFC 3339 or ms since the epoch).
        #[arg(long)]
        since: Option<String>,
        /// Keep waiting for new events.
        #[arg(long)]
        follow: bool,
        /// Stop after this many events.
        #[arg(long)]
        max: Option<u64>,
        /// Print the whole record (partition, offset, key, headers) instead of the event.
        #[arg(long)]
        full: bool,
        /// Read as a member of this consumer group: the group's partitions are shared with its
        /// other members, and what was printed is committed.
        #[arg(long, short, conflicts_with_all = ["partition", "offset", "since"])]
        group: Option<String>,
    },
    /// Sources (edge gateways): signed webhooks in, at /hooks/<tenant>/<name>.
    Sources {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: SourcesCmd,
    },
    /// Webhook subscriptions: create, list, attempts, replay.
    Subscriptions {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: SubscriptionsCmd,
    },
    /// Consumer groups: list, describe, reset offsets, delete.
    Groups {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: GroupsCmd,
    },
    /// Manage API keys.
    Keys {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: KeysCmd,
    },
    /// The tenant's audit trail: changes and refusals, oldest first (tenant admin key).
    Audit {
        #[command(flatten)]
        conn: Conn,
        /// From this time on (RFC 3339 or ms since the epoch).
        #[arg(long)]
        since: Option<String>,
        /// At most this many records (up to 1,000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Another tenant's trail (system key).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Manage tenants (system admin key).
    Tenants {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: TenantsCmd,
    },
    /// Upload a WebAssembly component and (with --input/--output) run it as a transform:
    /// `sluice deploy redact target/redact.wasm --input phi.raw --output phi.clean`.
    /// Deploying again uploads a new version and swaps it in without losing events.
    Deploy {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        args: DeployArgs,
    },
    /// Manage transforms.
    Transforms {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: TransformsCmd,
    },
    /// The schema registry: register, get, list, check compatibility, delete.
    Schemas {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: SchemasCmd,
    },
}

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
                tracing_subscriber::EnvFilter::new(
                    "warn,sluice=info,sluice_server=info,sluice_log=info",
                )
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the async runtime starts");
    let result = runtime.block_on(run(cli));
    // Dropping a runtime waits for every blocking task, however long: bound it.
    runtime.shutdown_timeout(EXIT_GRACE);
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => sluice_server::serve::serve(args.options()?).await,
        Command::Edge(args) => edge::edge(args).await,
        Command::Openapi => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(sluice_server::api::openapi::document())?;
            writeln!(out)?;
            Ok(())
        }
        Command::Topics { conn, cmd } => topics::topics(&Client::new(&conn)?, cmd).await,
        Command::Produce {
            conn,
            topic,
            file,
            batch,
        } => produce::produce(&Client::new(&conn)?, &topic, file, batch.max(1)).await,
        Command::Consume {
            conn,
            topic,
            from_beginning,
            follow,
            max,
            full,
            group: Some(group),
            ..
        } => {
            consume::consume_group(
                &Client::new(&conn)?,
                &topic,
                &group,
                from_beginning,
                follow,
                max,
                full,
            )
            .await
        }
        Command::Consume {
            conn,
            topic,
            partition,
            from_beginning,
            offset,
            since,
            follow,
            max,
            full,
            group: None,
        } => {
            let start = match (from_beginning, offset, since) {
                (true, _, _) => consume::Start::Earliest,
                (_, Some(o), _) => consume::Start::Offset(o),
                (_, _, Some(t)) => consume::Start::Time(t),
                _ => consume::Start::Latest,
            };
            consume::consume(
                &Client::new(&conn)?,
                &topic,
                partition,
                start,
                follow,
                max,
                full,
            )
            .await
        }
        Command::Keys { conn, cmd } => keys::keys(&Client::new(&conn)?, cmd).await,
        Command::Tenants { conn, cmd } => keys::tenants(&Client::new(&conn)?, cmd).await,
        Command::Audit {
            conn,
            since,
            limit,
            tenant,
        } => keys::audit(&Client::new(&conn)?, since, limit, tenant).await,
        Command::Deploy { conn, args } => transforms::deploy(&Client::new(&conn)?, args).await,
        Command::Transforms { conn, cmd } => {
            transforms::transforms(&Client::new(&conn)?, cmd).await
        }
        Command::Schemas { conn, cmd } => schemas::schemas(&Client::new(&conn)?, cmd).await,
        Command::Groups { conn, cmd } => groups::groups(&Client::new(&conn)?, cmd).await,
        Command::Sources { conn, cmd } => sources::sources(&Client::new(&conn)?, cmd).await,
        Command::Subscriptions { conn, cmd } => {
            subscriptions::subscriptions(&Client::new(&conn)?, cmd).await
        }
    }
}
