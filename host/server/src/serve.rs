//! `sluice serve`: open the store and the log, load the directory, bootstrap on first start,
//! and run the server until a shutdown signal.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::prefix::PrefixStore;
use sluice_log::{Log, LogOptions, Storage};
use sluice_runtime::{Runtime, RuntimeOptions};
use tokio::net::TcpListener;

use sluice_delivery::Webhooks;
use sluice_delivery::egress::Egress;
use sluice_groups::Groups;
use sluice_ingest::Ingest;
use sluice_ingest::catalog::Catalog;
use sluice_ingest::components::Components;
use sluice_ingest::disk::DiskGuard;
use sluice_ingest::envelope::Limits;
use sluice_ingest::schemas::Registry;
use sluice_ingest::transforms::Transforms;
use sluice_tenancy::Clock;
use sluice_tenancy::auth::Directory;
use sluice_tenancy::internal_topics::{self, OFFSETS_TOPIC};
use sluice_tenancy::quotas::{QuotaBook, QuotaLimits};

use crate::app::App;
use crate::config::{DiskConfig, HttpLimits, RegistryTuning, S3Config};
use crate::metrics::Metrics;
use crate::server;

#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Local state: the data itself with the default store, and `admin.key`.
    pub data: PathBuf,
    pub listen: SocketAddr,
    /// `s3://bucket/prefix`, or `None` for the local data directory.
    pub store: Option<String>,
    pub s3: S3Config,
    pub log: LogOptions,
    pub max_body_bytes: usize,
    /// Bounds for WebAssembly guests; its `cache_dir` defaults to `<data>/compiled`.
    pub wasm: RuntimeOptions,
    /// Where webhooks may be delivered.
    pub webhooks: Egress,
    /// What one request and each of its events may carry.
    pub limits: Limits,
    /// Bounds for the schema registry.
    pub registry: RegistryTuning,
    /// The listener's bounds.
    pub http: HttpLimits,
    /// Headroom on the local data disk.
    pub disk: DiskConfig,
    /// TLS on the listener; plain HTTP without.
    pub tls: Option<crate::tls::TlsFiles>,
    /// Every tenant's quotas unless it has its own.
    pub quotas: QuotaLimits,
    /// The key-encryption key of sealed (PHI) topics.
    pub encryption: crate::config::EncryptionConfig,
}

/// The KEKs: the configured one (or `<data>/kek.key`, written on first start) first, then the
/// previous ones.
fn keks(
    data: &std::path::Path,
    c: &crate::config::EncryptionConfig,
) -> Result<Vec<sluice_tenancy::data_keys::Kek>, ServeError> {
    use sluice_tenancy::data_keys::Kek;
    let current = match (&c.kek, &c.kek_file) {
        (Some(k), _) => k.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map_err(|e| ServeError::Encryption(format!("reading {}: {e}", f.display())))?,
        (None, None) => {
            let path = data.join("kek.key");
            match std::fs::read_to_string(&path) {
                Ok(k) => k,
                Err(_) => {
                    std::fs::create_dir_all(data)?;
                    let k = Kek::generate();
                    write_private(&path, &k)?;
                    k
                }
            }
        }
    };
    let mut out = vec![Kek::from_base64(&current).map_err(ServeError::Encryption)?];
    for k in &c.previous_keks {
        out.push(Kek::from_base64(k).map_err(ServeError::Encryption)?);
    }
    Ok(out)
}

/// Write a secret readable by its owner only.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)?.write_all(text.as_bytes())
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("invalid --store `{0}`: expected s3://bucket[/prefix]")]
    StoreUrl(String),
    #[error("configuring S3: {0}")]
    S3(#[from] object_store::Error),
    #[error("opening the log: {0}")]
    Log(#[from] sluice_log::LogError),
    #[error("first start: {0}")]
    Bootstrap(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("starting the WebAssembly runtime: {0}")]
    Runtime(#[from] sluice_runtime::RuntimeError),
    #[error("the key-encryption key: {0}")]
    Encryption(String),
}

pub fn storage(opts: &ServeOptions) -> Result<Storage, ServeError> {
    let Some(url) = &opts.store else {
        return Ok(Storage::Local(opts.data.clone()));
    };
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| ServeError::StoreUrl(url.clone()))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(ServeError::StoreUrl(url.clone()));
    }
    // Commit records rely on create-if-absent (`If-None-Match: *`).
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_conditional_put(S3ConditionalPut::ETagMatch);
    let endpoint = opts
        .s3
        .endpoint
        .clone()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
    if let Some(e) = endpoint {
        let http = e.starts_with("http://");
        b = b
            .with_endpoint(e)
            .with_allow_http(opts.s3.allow_http.unwrap_or(http));
        // S3-compatible servers are usually addressed by path, not virtual host.
        b = b.with_virtual_hosted_style_request(false);
    }
    if let Some(r) = &opts.s3.region {
        b = b.with_region(r);
    }
    let s3 = Arc::new(b.build()?);
    let prefix = prefix.trim_matches('/');
    Ok(Storage::ObjectStore(if prefix.is_empty() {
        s3
    } else {
        Arc::new(PrefixStore::new(s3, prefix))
    }))
}

/// Open everything; on first start also create the `default` tenant and its admin key, which
/// is written to `<data>/admin.key` (mode 0600) and returned so the caller can print it once.
pub async fn start(opts: &ServeOptions) -> Result<(Arc<App>, Option<String>), ServeError> {
    std::fs::create_dir_all(&opts.data)?;
    let log = Log::open(storage(opts)?, opts.log.clone()).await?;
    let data_keys = Arc::new(
        sluice_tenancy::data_keys::DataKeys::load(log.clone(), keks(&opts.data, &opts.encryption)?)
            .await?,
    );
    log.set_keyring(data_keys.clone());
    let directory = Arc::new(Directory::load(log.clone()).await?);
    let quotas = Arc::new(QuotaBook::new(directory.clone(), opts.quotas));
    let issued = directory
        .bootstrap()
        .await
        .map_err(|e| ServeError::Bootstrap(e.message))?;
    let token = match issued {
        Some(k) => {
            let token = k.token();
            let path = opts.data.join("admin.key");
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)?;
            writeln!(f, "{token}")?;
            f.sync_all()?;
            Some(token)
        }
        None => None,
    };
    let mut wasm = opts.wasm.clone();
    if wasm.cache_dir.is_none() {
        wasm.cache_dir = Some(opts.data.join("compiled"));
    }
    let runtime = Runtime::new(wasm)?;
    let components = Arc::new(Components::load(log.clone(), runtime).await?);
    // `_offsets` is read once; transforms, groups and subscriptions each take their keys.
    internal_topics::ensure(
        &log,
        OFFSETS_TOPIC,
        "committed offsets of transforms, groups and subscriptions",
        &[internal_topics::compact()],
    )
    .await?;
    let committed = internal_topics::read_all(&log, OFFSETS_TOPIC).await?;
    sluice_registry::set_check_steps(opts.registry.check_steps);
    // Avro decoding (REST Proxy): a length past this is refused, not allocated.
    apache_avro::util::max_allocation_bytes(opts.limits.avro_max_allocation_bytes);
    let registry = Arc::new(Registry::load(log.clone()).await?);
    let catalog = Arc::new(Catalog::load(log.clone()).await?);
    let ingest = Arc::new(Ingest::new(
        log.clone(),
        components.clone(),
        registry.clone(),
        catalog.clone(),
        opts.limits,
        DiskGuard::new(
            opts.store.is_none().then(|| opts.data.clone()),
            opts.disk.reserve_bytes,
        ),
        quotas.clone(),
    ));
    let transforms = Transforms::load(
        log.clone(),
        &committed,
        components.clone(),
        ingest.guest_services().clone(),
    )
    .await?;
    let groups = Arc::new(Groups::load(log.clone(), &committed).await?);
    let clock = Arc::new(Clock::default());
    let redaction = Arc::new(sluice_ingest::redaction::Redaction::new(
        log.clone(),
        components.clone(),
        ingest.guest_services().clone(),
    ));
    let webhooks = Arc::new(
        Webhooks::load(
            log.clone(),
            opts.webhooks.clone(),
            &committed,
            clock.clone(),
            catalog.clone(),
            quotas.clone(),
            redaction.clone(),
        )
        .await?,
    );
    let sources = Arc::new(
        sluice_sources::Sources::load(log.clone(), components.clone(), ingest.clone()).await?,
    );
    webhooks.resume().await;
    transforms.resume().await;
    let compactor = sluice_compaction::Compactor::new(log.clone(), components.clone());
    let fhir = Arc::new(sluice_fhir::Fhir::new(
        log.clone(),
        ingest.clone(),
        components.clone(),
        webhooks.clone(),
        clock.clone(),
        redaction.clone(),
        &committed,
    ));
    drop(committed);
    fhir.resume();
    compactor.spawn(opts.log.retention_interval);
    groups.spawn_sweeper(std::time::Duration::from_millis(250));
    let audit = sluice_tenancy::audit::Audit::new(log.clone());
    let app = Arc::new(App {
        metrics: Metrics::new(&ingest.metrics),
        topic_schema: App::topic_schema(),
        max_body_bytes: opts.max_body_bytes,
        http: opts.http,
        closing: tokio::sync::watch::Sender::new(false),
        streams: Default::default(),
        log,
        directory,
        quotas,
        audit,
        components,
        ingest,
        transforms,
        registry,
        catalog,
        groups,
        webhooks,
        sources,
        compactor,
        fhir,
        clock,
        data_keys,
        redaction,
    });
    Ok((app, token))
}

/// Run `sluice serve` until Ctrl-C or SIGTERM.
pub async fn serve(opts: ServeOptions) -> anyhow::Result<()> {
    let tls = opts.tls.as_ref().map(crate::tls::acceptor).transpose()?;
    let (app, token) = start(&opts).await?;
    let listener = TcpListener::bind(opts.listen).await?;
    let addr = listener.local_addr()?;
    if let Some(token) = token {
        println!(
            "First start: created tenant `default` and its admin key (shown once, also in {}):",
            opts.data.join("admin.key").display()
        );
        println!("  {token}");
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    match &opts.store {
        Some(s) => println!(
            "Sluice listening on {scheme}://{addr} (store: {s}, epoch {})",
            app.log.epoch()
        ),
        None => println!(
            "Sluice listening on {scheme}://{addr} (data: {}, epoch {})",
            opts.data.display(),
            app.log.epoch()
        ),
    }
    server::run_with_tls(listener, app, tls, shutdown_signal()).await;
    println!("Sluice stopped; everything acknowledged is on disk.");
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
