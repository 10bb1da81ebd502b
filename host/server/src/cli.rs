//! The `sluice` command line: `serve` runs the gateway; every other command is a client of a
//! running gateway's HTTP API.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

use crate::config::{DEFAULT_DATA, DEFAULT_LISTEN, DEFAULT_MAX_BODY, FileConfig};
use crate::serve::ServeOptions;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Sluice: a WebAssembly edge event gateway"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve(ServeArgs),
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
        /// The component's name (and the transform's, unless --transform says otherwise).
        name: String,
        /// The component's `.wasm` (built for wasm32-wasip2 against wit/).
        wasm: PathBuf,
        /// Input topic of the transform.
        #[arg(long, requires = "output")]
        input: Option<String>,
        /// Output topic(s) of the transform (repeatable; the first is the default output).
        #[arg(long, requires = "input")]
        output: Vec<String>,
        /// The component's configuration, JSON.
        #[arg(long, default_value = "{}")]
        config: String,
        /// Dead-letter topic (default `<input>.dlq`).
        #[arg(long)]
        dlq: Option<String>,
        /// Events per call into the component.
        #[arg(long, default_value_t = 100)]
        batch_size: usize,
        /// The transform's name (default: the component's).
        #[arg(long)]
        transform: Option<String>,
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

#[derive(Subcommand)]
pub enum SubscriptionsCmd {
    /// Subscribe a URL to events of topics; prints the subscription with its secret.
    Create {
        /// Where to deliver (the subscription's `url`; `--url` is the gateway's).
        #[arg(long, required_unless_present = "file")]
        endpoint: Option<String>,
        /// A topic to deliver from (repeat for more).
        #[arg(long = "topic", required_unless_present = "file")]
        topics: Vec<String>,
        /// An event-type pattern such as `invoice.*` (repeat; default: every type).
        #[arg(long = "type")]
        types: Vec<String>,
        /// A CEL condition over `event`, `data`, `type`, `key`, `headers`.
        #[arg(long)]
        condition: Option<String>,
        /// A CEL expression whose value is the delivered body.
        #[arg(long)]
        mapping: Option<String>,
        /// `per-key` or `none`.
        #[arg(long)]
        ordering: Option<String>,
        /// Start from the oldest stored event instead of the next one.
        #[arg(long)]
        from_beginning: bool,
        /// The whole definition as JSON (a file), instead of the flags.
        #[arg(long, conflicts_with_all = ["endpoint", "topics"])]
        file: Option<PathBuf>,
    },
    List,
    /// The newest delivery attempts.
    Attempts {
        id: String,
        #[arg(long)]
        event_id: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Deliver again the events stored since a time (RFC 3339 or ms).
    Replay {
        id: String,
        #[arg(long)]
        since: String,
        #[arg(long)]
        until: Option<String>,
    },
    Delete {
        id: String,
    },
}

#[derive(Subcommand)]
pub enum GroupsCmd {
    /// The tenant's groups with their state and lag.
    List,
    /// A group's state, members, assignments, committed offsets and lag.
    Describe { id: String },
    /// Move a stopped group's committed offsets.
    Reset {
        id: String,
        /// earliest, latest, offset (with --offset) or timestamp (with --timestamp).
        #[arg(long)]
        to: String,
        #[arg(long)]
        offset: Option<u64>,
        /// RFC 3339 or milliseconds since the epoch.
        #[arg(long)]
        timestamp: Option<String>,
        /// Only these topics (repeat; default: every topic of the group).
        #[arg(long = "topic")]
        topics: Vec<String>,
    },
    /// Delete a stopped group and its offsets.
    Delete { id: String },
}

#[derive(Subcommand)]
pub enum SchemasCmd {
    /// Register a schema file under a subject (`orders-value`); prints its id and version.
    Register {
        subject: String,
        file: PathBuf,
        /// AVRO or JSON (default: JSON for `.json` files, AVRO otherwise).
        #[arg(long = "type")]
        schema_type: Option<String>,
        /// A reference, `name=subject:version` (repeatable).
        #[arg(long = "reference")]
        references: Vec<String>,
    },
    /// Print a subject's version (default: the latest), or a schema by global id.
    Get {
        #[arg(required_unless_present = "id")]
        subject: Option<String>,
        #[arg(long, default_value = "latest")]
        version: String,
        #[arg(long, conflicts_with = "subject")]
        id: Option<u32>,
    },
    /// List subjects, or a subject's versions.
    List {
        subject: Option<String>,
        /// Include soft-deleted ones.
        #[arg(long)]
        deleted: bool,
    },
    /// Check a schema file against a subject under its compatibility level; exits 1 when it
    /// is incompatible (for CI pipelines).
    Check {
        subject: String,
        file: PathBuf,
        #[arg(long = "type")]
        schema_type: Option<String>,
        /// Against one version only (default: those the level names).
        #[arg(long)]
        version: Option<String>,
    },
    /// Delete a subject, or one version; soft unless --permanent (which needs soft first).
    Delete {
        subject: String,
        #[arg(long)]
        version: Option<String>,
        #[arg(long)]
        permanent: bool,
    },
}

/// The body Confluent's API takes for a schema file.
fn schema_request(
    file: &Path,
    schema_type: Option<&str>,
    references: &[String],
) -> anyhow::Result<Value> {
    let schema =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let schema_type = match schema_type {
        Some(t) => t.to_ascii_uppercase(),
        None if file.extension().is_some_and(|e| e == "json") => "JSON".into(),
        None => "AVRO".into(),
    };
    let references = references
        .iter()
        .map(|r| {
            let (name, at) = r
                .split_once('=')
                .context("a reference is name=subject:version")?;
            let (subject, version) = at
                .rsplit_once(':')
                .context("a reference is name=subject:version")?;
            let version: u32 = version
                .parse()
                .context("a reference's version is a number")?;
            Ok(json!({"name": name, "subject": subject, "version": version}))
        })
        .collect::<anyhow::Result<Vec<Value>>>()?;
    Ok(json!({"schema": schema, "schemaType": schema_type, "references": references}))
}

#[derive(Subcommand)]
pub enum TransformsCmd {
    /// List transforms.
    List,
    /// Show a transform's state, offsets, lag and counters.
    Status { name: String },
    /// Stop a transform (its current batch finishes and is committed).
    Stop { name: String },
    /// Start a stopped transform from its committed offsets.
    Start { name: String },
    /// Delete a transform.
    Delete { name: String },
}

#[derive(Args, Clone)]
pub struct ServeArgs {
    /// Data directory (the log itself with the default store; always `admin.key`).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Object store URL, `s3://bucket/prefix` (AWS_* variables; AWS_ENDPOINT_URL for
    /// S3-compatible stores). Default: the data directory.
    #[arg(long)]
    pub store: Option<String>,
    /// TOML configuration file; flags win over it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// An internal network (CIDR, e.g. 127.0.0.0/8) webhooks may be delivered to; repeat for
    /// more. Adds to `[webhooks] allow_networks`.
    #[arg(long = "webhook-allow-network")]
    pub webhook_allow_network: Vec<ipnet::IpNet>,
}

impl ServeArgs {
    pub fn options(&self) -> anyhow::Result<ServeOptions> {
        let file = match &self.config {
            Some(p) => FileConfig::load(p).map_err(|e| anyhow!(e))?,
            None => FileConfig::default(),
        };
        let store = self.store.clone().or(file.store);
        Ok(ServeOptions {
            data: self
                .data
                .clone()
                .or(file.data)
                .unwrap_or_else(|| DEFAULT_DATA.into()),
            listen: self
                .listen
                .or(file.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("default address")),
            log: file.log.options(store.is_some()),
            store,
            s3: file.s3,
            max_body_bytes: file.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY),
            wasm: file.wasm.options(),
            webhooks: crate::webhooks::egress::Egress {
                allow: file
                    .webhooks
                    .allow_networks
                    .into_iter()
                    .chain(self.webhook_allow_network.iter().cloned())
                    .collect(),
            },
        })
    }
}

/// How a client command reaches the gateway.
#[derive(Args, Clone)]
pub struct Conn {
    /// The gateway's URL.
    #[arg(
        long,
        env = "SLUICE_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// API key (default: the `admin.key` file in --data).
    #[arg(long, env = "SLUICE_KEY", global = true, hide_env_values = true)]
    pub key: Option<String>,
    /// Data directory holding `admin.key`.
    #[arg(long, default_value = DEFAULT_DATA, global = true)]
    pub data: PathBuf,
}

#[derive(Subcommand)]
pub enum TopicsCmd {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        #[arg(long, default_value_t = 1)]
        replication_factor: u32,
        /// Topic config entries, `key=value` (repeatable), e.g. `retention.ms=86400000`.
        #[arg(long = "config", short = 'c')]
        config: Vec<String>,
        /// Envelope field (or JSON pointer) that keys events without an explicit key.
        #[arg(long)]
        key_field: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// List topics.
    List,
    /// Show a topic's configuration and offsets.
    Describe { name: String },
    /// Delete a topic and its events.
    Delete { name: String },
}

#[derive(Subcommand)]
pub enum KeysCmd {
    /// Create a key. Scopes are `ROLE:PATTERN` with ROLE admin|produce|consume, e.g.
    /// `produce:orders.*`.
    Create {
        #[arg(long = "scope", short = 's', required = true)]
        scopes: Vec<String>,
        /// Another tenant (system key only).
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List keys (never their secrets).
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a key.
    Revoke { id: String },
}

#[derive(Subcommand)]
pub enum TenantsCmd {
    /// Create a tenant and print its first admin key.
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List tenants.
    List,
}

/// A minimal client of the HTTP API that turns error bodies into messages.
struct Client {
    http: reqwest::Client,
    url: String,
    key: String,
}

impl Client {
    fn new(conn: &Conn) -> anyhow::Result<Client> {
        let key = match &conn.key {
            Some(k) => k.clone(),
            None => {
                let path = conn.data.join("admin.key");
                std::fs::read_to_string(&path)
                    .with_context(|| {
                        format!(
                            "no --key / SLUICE_KEY given and {} is not readable",
                            path.display()
                        )
                    })?
                    .trim()
                    .to_owned()
            }
        };
        Ok(Client {
            http: reqwest::Client::builder().build()?,
            url: conn.url.trim_end_matches('/').to_owned(),
            key,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Body>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.key);
        match body {
            Some(Body::Json(v)) => req = req.json(&v),
            Some(Body::NdJson(text)) => {
                req = req
                    .header("content-type", "application/x-ndjson")
                    .body(text)
            }
            Some(Body::Wasm(bytes)) => {
                req = req.header("content-type", "application/wasm").body(bytes)
            }
            None => {}
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the gateway at {}", self.url))?;
        let status = resp.status();
        let text = resp.text().await?;
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if !status.is_success() && value.get("results").is_none() {
            let msg = value
                .get("message")
                .and_then(Value::as_str)
                .map_or_else(|| value.to_string(), str::to_owned);
            let code = value
                .get("error_code")
                .map(Value::to_string)
                .unwrap_or_default();
            bail!("{msg} (HTTP {status}, error_code {code})");
        }
        Ok(value)
    }
}

enum Body {
    Json(Value),
    NdJson(String),
    Wasm(Vec<u8>),
}

fn print(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).expect("JSON prints"));
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    use reqwest::Method;
    match cli.command {
        Command::Serve(args) => crate::serve::serve(args.options()?).await,
        Command::Topics { conn, cmd } => {
            let c = Client::new(&conn)?;
            match cmd {
                TopicsCmd::Create {
                    name,
                    partitions,
                    replication_factor,
                    config,
                    key_field,
                    description,
                } => {
                    let mut cfg = serde_json::Map::new();
                    for kv in config {
                        let (k, v) = kv
                            .split_once('=')
                            .ok_or_else(|| anyhow!("--config takes key=value, got `{kv}`"))?;
                        let v = v
                            .parse::<i64>()
                            .map(Value::from)
                            .unwrap_or_else(|_| Value::String(v.to_owned()));
                        cfg.insert(k.to_owned(), v);
                    }
                    let mut body = json!({"name": name, "partitions": partitions,
                        "replicationFactor": replication_factor, "config": cfg});
                    if let Some(k) = key_field {
                        body["keyField"] = json!(k);
                    }
                    if let Some(d) = description {
                        body["description"] = json!(d);
                    }
                    print(
                        &c.call(Method::POST, "/v1/topics", Some(Body::Json(body)))
                            .await?,
                    );
                }
                TopicsCmd::List => {
                    let v = c.call(Method::GET, "/v1/topics", None).await?;
                    for t in v["topics"].as_array().into_iter().flatten() {
                        let events: u64 = t["partition_offsets"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|p| {
                                p["end_offset"].as_u64().unwrap_or(0)
                                    - p["start_offset"].as_u64().unwrap_or(0)
                            })
                            .sum();
                        println!(
                            "{}\tpartitions={}\tevents={}",
                            t["name"].as_str().unwrap_or(""),
                            t["partitions"],
                            events
                        );
                    }
                }
                TopicsCmd::Describe { name } => print(
                    &c.call(Method::GET, &format!("/v1/topics/{}", enc(&name)), None)
                        .await?,
                ),
                TopicsCmd::Delete { name } => {
                    c.call(Method::DELETE, &format!("/v1/topics/{}", enc(&name)), None)
                        .await?;
                    println!("deleted topic {name}");
                }
            }
            Ok(())
        }
        Command::Produce {
            conn,
            topic,
            file,
            batch,
        } => produce(&Client::new(&conn)?, &topic, file, batch.max(1)).await,
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
            consume_group(
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
                (true, _, _) => Start::Earliest,
                (_, Some(o), _) => Start::Offset(o),
                (_, _, Some(t)) => Start::Time(t),
                _ => Start::Latest,
            };
            consume(
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
        Command::Keys { conn, cmd } => {
            let c = Client::new(&conn)?;
            match cmd {
                KeysCmd::Create {
                    scopes,
                    tenant,
                    description,
                } => {
                    let scopes: Vec<Value> = scopes
                        .iter()
                        .map(|s| {
                            let (role, topics) = s.split_once(':').unwrap_or((s, "*"));
                            json!({"role": role, "topics": topics})
                        })
                        .collect();
                    let body =
                        json!({"tenant": tenant, "scopes": scopes, "description": description});
                    print(
                        &c.call(Method::POST, "/v1/keys", Some(Body::Json(body)))
                            .await?,
                    );
                }
                KeysCmd::List { tenant } => {
                    let q = tenant
                        .map(|t| format!("?tenant={}", enc(&t)))
                        .unwrap_or_default();
                    print(&c.call(Method::GET, &format!("/v1/keys{q}"), None).await?);
                }
                KeysCmd::Revoke { id } => {
                    c.call(Method::DELETE, &format!("/v1/keys/{}", enc(&id)), None)
                        .await?;
                    println!("revoked key {id}");
                }
            }
            Ok(())
        }
        Command::Tenants { conn, cmd } => {
            let c = Client::new(&conn)?;
            match cmd {
                TenantsCmd::Create { name, description } => {
                    let body = json!({"name": name, "description": description});
                    print(
                        &c.call(Method::POST, "/v1/tenants", Some(Body::Json(body)))
                            .await?,
                    );
                }
                TenantsCmd::List => print(&c.call(Method::GET, "/v1/tenants", None).await?),
            }
            Ok(())
        }
        Command::Deploy {
            conn,
            name,
            wasm,
            input,
            output,
            config,
            dlq,
            batch_size,
            transform,
        } => {
            let c = Client::new(&conn)?;
            let config: Value = serde_json::from_str(&config)
                .with_context(|| format!("--config is not JSON: {config}"))?;
            let bytes =
                std::fs::read(&wasm).with_context(|| format!("cannot read {}", wasm.display()))?;
            let version = c
                .call(
                    Method::PUT,
                    &format!("/v1/components/{}", enc(&name)),
                    Some(Body::Wasm(bytes)),
                )
                .await?;
            println!(
                "component {name} version {} ({} world, sha256 {})",
                version["version"],
                version["world"].as_str().unwrap_or("?"),
                version["sha256"].as_str().unwrap_or("?")
            );
            if let Some(input) = input {
                let t = transform.unwrap_or_else(|| name.clone());
                let body = json!({
                    "component": format!("{name}@{}", version["version"]),
                    "config": config, "input": input, "outputs": output,
                    "dlq": dlq, "batch_size": batch_size,
                });
                let def = c
                    .call(
                        Method::PUT,
                        &format!("/v1/transforms/{}", enc(&t)),
                        Some(Body::Json(body)),
                    )
                    .await?;
                println!(
                    "transform {t} running {} from {} to {}",
                    def["resolved"].as_str().unwrap_or("?"),
                    def["input"].as_str().unwrap_or("?"),
                    def["outputs"]
                );
            }
            Ok(())
        }
        Command::Transforms { conn, cmd } => {
            let c = Client::new(&conn)?;
            let path = |n: &str| format!("/v1/transforms/{}", enc(n));
            match cmd {
                TransformsCmd::List => print(&c.call(Method::GET, "/v1/transforms", None).await?),
                TransformsCmd::Status { name } => {
                    print(&c.call(Method::GET, &path(&name), None).await?)
                }
                TransformsCmd::Stop { name } => print(
                    &c.call(
                        Method::POST,
                        &format!("{}/stop", path(&name)),
                        Some(Body::Json(json!({}))),
                    )
                    .await?,
                ),
                TransformsCmd::Start { name } => print(
                    &c.call(
                        Method::POST,
                        &format!("{}/start", path(&name)),
                        Some(Body::Json(json!({}))),
                    )
                    .await?,
                ),
                TransformsCmd::Delete { name } => {
                    c.call(Method::DELETE, &path(&name), None).await?;
                    println!("deleted transform {name}");
                }
            }
            Ok(())
        }
        Command::Schemas { conn, cmd } => schemas(&Client::new(&conn)?, cmd).await,
        Command::Groups { conn, cmd } => groups(&Client::new(&conn)?, cmd).await,
        Command::Subscriptions { conn, cmd } => subscriptions(&Client::new(&conn)?, cmd).await,
    }
}

async fn schemas(c: &Client, cmd: SchemasCmd) -> anyhow::Result<()> {
    use reqwest::Method;
    let subject_path = |s: &str| format!("/registry/subjects/{}", enc(s));
    match cmd {
        SchemasCmd::Register {
            subject,
            file,
            schema_type,
            references,
        } => {
            let body = schema_request(&file, schema_type.as_deref(), &references)?;
            let v = c
                .call(
                    Method::POST,
                    &format!("{}/versions", subject_path(&subject)),
                    Some(Body::Json(body)),
                )
                .await?;
            println!(
                "registered {subject} version {} (id {})",
                v["version"], v["id"]
            );
        }
        SchemasCmd::Get {
            subject,
            version,
            id,
        } => {
            let path = match (id, subject) {
                (Some(id), _) => format!("/registry/schemas/ids/{id}"),
                (None, Some(s)) => format!("{}/versions/{}", subject_path(&s), enc(&version)),
                (None, None) => bail!("give a subject or --id"),
            };
            print(&c.call(Method::GET, &path, None).await?);
        }
        SchemasCmd::List { subject, deleted } => {
            let path = match subject {
                Some(s) => format!("{}/versions?deleted={deleted}", subject_path(&s)),
                None => format!("/registry/subjects?deleted={deleted}"),
            };
            print(&c.call(Method::GET, &path, None).await?);
        }
        SchemasCmd::Check {
            subject,
            file,
            schema_type,
            version,
        } => {
            let body = schema_request(&file, schema_type.as_deref(), &[])?;
            let mut path = format!(
                "/registry/compatibility/subjects/{}/versions",
                enc(&subject)
            );
            if let Some(v) = version {
                path.push('/');
                path.push_str(&enc(&v));
            }
            path.push_str("?verbose=true");
            let v = c.call(Method::POST, &path, Some(Body::Json(body))).await?;
            if v["is_compatible"] == json!(true) {
                println!("compatible with {subject}");
            } else {
                for m in v["messages"].as_array().into_iter().flatten() {
                    eprintln!("{}", m.as_str().unwrap_or_default());
                }
                bail!("incompatible with {subject}");
            }
        }
        SchemasCmd::Delete {
            subject,
            version,
            permanent,
        } => {
            let path = match &version {
                Some(v) => format!("{}/versions/{}", subject_path(&subject), enc(v)),
                None => subject_path(&subject),
            };
            let v = c
                .call(
                    Method::DELETE,
                    &format!("{path}?permanent={permanent}"),
                    None,
                )
                .await?;
            let how = if permanent { "permanently" } else { "soft-" };
            println!("{how}deleted {subject} version(s) {v}");
        }
    }
    Ok(())
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn produce(
    c: &Client,
    topic: &str,
    file: Option<PathBuf>,
    batch: usize,
) -> anyhow::Result<()> {
    let (reader, bar): (Box<dyn BufRead>, Option<indicatif::ProgressBar>) = match &file {
        Some(p) => {
            let f = std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
            let bar = indicatif::ProgressBar::new(f.metadata()?.len());
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
                )
                .expect("template"),
            );
            (Box::new(std::io::BufReader::new(f)), Some(bar))
        }
        None => (Box::new(std::io::BufReader::new(std::io::stdin())), None),
    };
    let path = format!("/v1/topics/{}/events", enc(topic));
    let (mut sent, mut rejected, mut line_no) = (0u64, 0u64, 0u64);
    let mut chunk: Vec<(u64, String)> = Vec::with_capacity(batch);
    let mut lines = reader.lines();
    loop {
        let line = lines.next().transpose()?;
        if let Some(l) = &line {
            line_no += 1;
            if let Some(b) = &bar {
                b.inc(l.len() as u64 + 1);
            }
            if !l.trim().is_empty() {
                chunk.push((line_no, l.clone()));
            }
        }
        if chunk.len() >= batch || (line.is_none() && !chunk.is_empty()) {
            let body = chunk
                .iter()
                .map(|(_, l)| l.as_str())
                .collect::<Vec<_>>()
                .join("\n");
            let v = c
                .call(reqwest::Method::POST, &path, Some(Body::NdJson(body)))
                .await?;
            for (r, (n, _)) in v["results"].as_array().into_iter().flatten().zip(&chunk) {
                if r.get("error_code").is_some() {
                    rejected += 1;
                    let msg = format!("line {n}: {}", r["message"].as_str().unwrap_or(""));
                    match &bar {
                        Some(b) => b.suspend(|| eprintln!("{msg}")),
                        None => eprintln!("{msg}"),
                    }
                } else {
                    sent += 1;
                }
            }
            if let Some(b) = &bar {
                b.set_message(format!("{sent} events"));
            }
            chunk.clear();
        }
        if line.is_none() {
            break;
        }
    }
    if let Some(b) = bar {
        b.finish();
    }
    eprintln!(
        "produced {sent} events to {topic}{}",
        if rejected > 0 {
            format!(", {rejected} rejected")
        } else {
            String::new()
        }
    );
    if rejected > 0 {
        bail!("{rejected} events were rejected");
    }
    Ok(())
}

enum Start {
    Earliest,
    Latest,
    Offset(u64),
    Time(String),
}

async fn consume(
    c: &Client,
    topic: &str,
    partition: Option<u32>,
    start: Start,
    follow: bool,
    max: Option<u64>,
    full: bool,
) -> anyhow::Result<()> {
    let t = enc(topic);
    let at = match &start {
        Start::Earliest => "?timestamp=earliest".to_owned(),
        Start::Time(s) => format!("?timestamp={}", enc(s)),
        _ => "?timestamp=latest".to_owned(),
    };
    let offsets = c
        .call(
            reqwest::Method::GET,
            &format!("/v1/topics/{t}/offsets{at}"),
            None,
        )
        .await?;
    let mut positions: Vec<(u32, u64)> = offsets["offsets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| {
            let p = o["partition"].as_u64()? as u32;
            let off = match start {
                Start::Offset(n) => n,
                _ => o["offset"].as_u64()?,
            };
            partition.is_none_or(|want| want == p).then_some((p, off))
        })
        .collect();
    if positions.is_empty() {
        bail!("topic {topic} has no partition {}", partition.unwrap_or(0));
    }
    let mut printed = 0u64;
    let out = std::io::stdout();
    loop {
        let mut got_any = false;
        for (p, off) in positions.iter_mut() {
            // With one partition the server can long-poll for us.
            let wait = if follow && partition.is_some() {
                1000
            } else {
                0
            };
            let v = c
                .call(
                    reqwest::Method::GET,
                    &format!("/v1/topics/{t}/partitions/{p}/events?offset={off}&wait_ms={wait}"),
                    None,
                )
                .await?;
            let mut lock = out.lock();
            for e in v["events"].as_array().into_iter().flatten() {
                let line = if full {
                    e.clone()
                } else {
                    e.get("event")
                        .cloned()
                        .unwrap_or_else(|| e["value"].clone())
                };
                writeln!(lock, "{line}")?;
                printed += 1;
                got_any = true;
                if max.is_some_and(|m| printed >= m) {
                    return Ok(());
                }
            }
            *off = v["next_offset"].as_u64().unwrap_or(*off);
        }
        if !got_any {
            if !follow {
                return Ok(());
            }
            if partition.is_none() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn groups(c: &Client, cmd: GroupsCmd) -> anyhow::Result<()> {
    use reqwest::Method;
    match cmd {
        GroupsCmd::List => {
            let v = c.call(Method::GET, "/v1/groups", None).await?;
            println!(
                "{:<32} {:<20} {:>7} {:>12}",
                "GROUP", "STATE", "MEMBERS", "LAG"
            );
            for g in v["groups"].as_array().into_iter().flatten() {
                println!(
                    "{:<32} {:<20} {:>7} {:>12}",
                    g["group_id"].as_str().unwrap_or_default(),
                    g["state"].as_str().unwrap_or_default(),
                    g["members"],
                    g["total_lag"]
                );
            }
        }
        GroupsCmd::Describe { id } => print(
            &c.call(Method::GET, &format!("/v1/groups/{}", enc(&id)), None)
                .await?,
        ),
        GroupsCmd::Reset {
            id,
            to,
            offset,
            timestamp,
            topics,
        } => {
            let mut body = json!({ "to": to });
            if let Some(o) = offset {
                body["offset"] = json!(o);
            }
            if let Some(t) = timestamp {
                body["timestamp"] = match t.parse::<i64>() {
                    Ok(ms) => json!(ms),
                    Err(_) => json!(t),
                };
            }
            if !topics.is_empty() {
                body["topics"] = json!(topics);
            }
            print(
                &c.call(
                    Method::POST,
                    &format!("/v1/groups/{}/offsets/reset", enc(&id)),
                    Some(Body::Json(body)),
                )
                .await?,
            )
        }
        GroupsCmd::Delete { id } => {
            c.call(Method::DELETE, &format!("/v1/groups/{}", enc(&id)), None)
                .await?;
            println!("deleted group {id}");
        }
    }
    Ok(())
}

/// `sluice consume --group G`: a REST Proxy consumer instance of group G; each batch is
/// committed once printed (at-least-once), and the instance leaves the group at the end
/// (or on Ctrl-C).
async fn consume_group(
    c: &Client,
    topic: &str,
    group: &str,
    from_beginning: bool,
    follow: bool,
    max: Option<u64>,
    full: bool,
) -> anyhow::Result<()> {
    use base64::Engine;
    use reqwest::Method;
    let mut settings = json!({"format": "binary", "auto.commit.enable": false});
    if from_beginning {
        settings["auto.offset.reset"] = json!("earliest");
    }
    let created = c
        .call(
            Method::POST,
            &format!("/consumers/{}", enc(group)),
            Some(Body::Json(settings)),
        )
        .await?;
    let instance = format!(
        "/consumers/{}/instances/{}",
        enc(group),
        created["instance_id"].as_str().unwrap_or_default()
    );
    let work = async {
        c.call(
            Method::POST,
            &format!("{instance}/subscription"),
            Some(Body::Json(json!({ "topics": [topic] }))),
        )
        .await?;
        let mut printed = 0u64;
        let mut empty = 0;
        let out = std::io::stdout();
        loop {
            let v = c
                .call(
                    Method::GET,
                    &format!("{instance}/records?timeout=1000"),
                    None,
                )
                .await?;
            let records = v.as_array().cloned().unwrap_or_default();
            if records.is_empty() {
                empty += 1;
                // The first polls may go to joining the group.
                if !follow && empty >= 3 {
                    return Ok::<(), anyhow::Error>(());
                }
                continue;
            }
            empty = 0;
            let mut offsets = std::collections::BTreeMap::new();
            {
                let mut lock = out.lock();
                for r in &records {
                    let value = r["value"]
                        .as_str()
                        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                        .unwrap_or_default();
                    let text = String::from_utf8_lossy(&value);
                    if full {
                        let mut shown = r.clone();
                        shown["value"] = serde_json::from_str(&text)
                            .unwrap_or_else(|_| Value::String(text.into_owned()));
                        writeln!(lock, "{shown}")?;
                    } else {
                        writeln!(lock, "{text}")?;
                    }
                    offsets.insert(
                        (r["topic"].clone().to_string(), r["partition"].as_u64()),
                        json!({"topic": r["topic"], "partition": r["partition"],
                               "offset": r["offset"].as_u64().unwrap_or(0) + 1}),
                    );
                    printed += 1;
                    if max.is_some_and(|m| printed >= m) {
                        break;
                    }
                }
            }
            let list: Vec<Value> = offsets.into_values().collect();
            c.call(
                Method::POST,
                &format!("{instance}/offsets"),
                Some(Body::Json(json!({ "offsets": list }))),
            )
            .await?;
            if max.is_some_and(|m| printed >= m) {
                return Ok(());
            }
        }
    };
    let outcome = tokio::select! {
        r = work => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    // Leave the group either way, so its partitions move to the other members at once.
    let left = c.call(Method::DELETE, &instance, None).await;
    outcome?;
    left.map(|_| ())
}

fn time_arg(t: &str) -> Value {
    match t.parse::<i64>() {
        Ok(ms) => json!(ms),
        Err(_) => json!(t),
    }
}

async fn subscriptions(c: &Client, cmd: SubscriptionsCmd) -> anyhow::Result<()> {
    use reqwest::Method;
    match cmd {
        SubscriptionsCmd::Create {
            endpoint,
            topics,
            types,
            condition,
            mapping,
            ordering,
            from_beginning,
            file,
        } => {
            let body = match file {
                Some(f) => {
                    let text = std::fs::read_to_string(&f)
                        .with_context(|| format!("reading {}", f.display()))?;
                    serde_json::from_str(&text)
                        .with_context(|| format!("{} is not JSON", f.display()))?
                }
                None => {
                    let mut b = json!({"url": endpoint, "topics": topics});
                    if !types.is_empty() {
                        b["event_types"] = json!(types);
                    }
                    if let Some(cnd) = condition {
                        b["condition"] = json!(cnd);
                    }
                    if let Some(m) = mapping {
                        b["input_mapping"] = json!(m);
                    }
                    if let Some(o) = ordering {
                        b["ordering"] = json!(o);
                    }
                    if from_beginning {
                        b["start"] = json!("earliest");
                    }
                    b
                }
            };
            print(
                &c.call(Method::POST, "/v1/subscriptions", Some(Body::Json(body)))
                    .await?,
            )
        }
        SubscriptionsCmd::List => {
            let v = c.call(Method::GET, "/v1/subscriptions", None).await?;
            println!("{:<36} {:<8} {:>8}  URL", "ID", "ENABLED", "LAG");
            for s in v["subscriptions"].as_array().into_iter().flatten() {
                println!(
                    "{:<36} {:<8} {:>8}  {}",
                    s["id"].as_str().unwrap_or_default(),
                    s["enabled"],
                    s["lag"],
                    s["url"].as_str().unwrap_or_default()
                );
            }
        }
        SubscriptionsCmd::Attempts {
            id,
            event_id,
            limit,
        } => {
            let mut path = format!("/v1/subscriptions/{}/attempts?limit={limit}", enc(&id));
            if let Some(e) = event_id {
                path.push_str(&format!("&event_id={}", enc(&e)));
            }
            print(&c.call(Method::GET, &path, None).await?)
        }
        SubscriptionsCmd::Replay { id, since, until } => {
            let mut body = json!({ "since": time_arg(&since) });
            if let Some(u) = until {
                body["until"] = time_arg(&u);
            }
            print(
                &c.call(
                    Method::POST,
                    &format!("/v1/subscriptions/{}/replay", enc(&id)),
                    Some(Body::Json(body)),
                )
                .await?,
            )
        }
        SubscriptionsCmd::Delete { id } => {
            c.call(
                Method::DELETE,
                &format!("/v1/subscriptions/{}", enc(&id)),
                None,
            )
            .await?;
            println!("deleted subscription {id}");
        }
    }
    Ok(())
}
