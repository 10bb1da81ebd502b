//! Server configuration: command-line flags over an optional TOML file over defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use sluice_log::LogOptions;

/// The `--config FILE` format. Every field is optional; flags win over the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    /// `s3://bucket/prefix`; absent = the local data directory.
    pub store: Option<String>,
    /// Largest request body accepted (bytes).
    pub max_body_bytes: Option<usize>,
    #[serde(default)]
    pub s3: S3Config,
    #[serde(default)]
    pub log: LogTuning,
    #[serde(default)]
    pub wasm: WasmTuning,
    #[serde(default)]
    pub webhooks: WebhookConfig,
    /// What one request may carry (events, ids, headers).
    #[serde(default)]
    pub limits: sluice_ingest::envelope::Limits,
    #[serde(default)]
    pub registry: RegistryTuning,
    /// The listener's bounds: slow headers, connections, shutdown.
    #[serde(default)]
    pub http: HttpLimits,
    #[serde(default)]
    pub disk: DiskConfig,
    /// TLS on the listener (the `--tls-cert`/`--tls-key` flags win).
    pub tls: Option<crate::tls::TlsFiles>,
    /// Every tenant's quotas unless it has its own (`PUT /v1/tenants/{t}/quotas`).
    #[serde(default)]
    pub quotas: sluice_tenancy::quotas::QuotaLimits,
    /// The key-encryption key of sealed (PHI) topics (`SLUICE_KEK` wins).
    #[serde(default)]
    pub encryption: EncryptionConfig,
}

/// Where the key-encryption key (KEK) of sealed topics comes from: 32 bytes of base64, given
/// directly or in a file. Without one, a first start writes a random one to `<data>/kek.key`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncryptionConfig {
    pub kek: Option<String>,
    pub kek_file: Option<std::path::PathBuf>,
    /// KEKs being rotated out: data keys they wrapped are wrapped again with the current one.
    pub previous_keks: Vec<String>,
}

/// Headroom on the local data disk.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiskConfig {
    /// Free bytes kept on the data directory's filesystem: under it new events are refused
    /// (507) while checkpoints, retention and deletes go on. Ignored on an object store.
    pub reserve_bytes: u64,
}

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig {
            reserve_bytes: 1 << 30,
        }
    }
}

/// Bounds for the schema registry.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryTuning {
    /// The work one compatibility check may do (steps, each a comparison of two subschemas
    /// weighted by their size); a check past it is refused with 422 (42207).
    pub check_steps: u64,
}

impl Default for RegistryTuning {
    fn default() -> Self {
        RegistryTuning {
            check_steps: sluice_registry::DEFAULT_CHECK_STEPS,
        }
    }
}

/// Webhook delivery settings.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Internal networks (CIDR) webhooks may be delivered to. Private, loopback, link-local
    /// and other internal addresses are refused unless listed here.
    #[serde(default)]
    pub allow_networks: Vec<ipnet::IpNet>,
}

/// Bounds for WebAssembly guests (pipelines and transforms).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasmTuning {
    /// The longest one call into a guest may run (default 500ms): a batch whose stage runs
    /// longer fails with a timeout. Longer allows heavier transforms; shorter bounds how long a
    /// looping guest holds a core.
    #[serde(default, with = "humantime_serde")]
    pub call_timeout: Option<Duration>,
    /// The most linear memory one guest instance may use (bytes; default 64 MiB).
    pub memory_limit: Option<usize>,
    /// Guest instances alive at once (default 256): each reserves address space up front.
    pub max_instances: Option<u32>,
    /// Where compiled components are cached (default `<data>/compiled`).
    pub cache_dir: Option<PathBuf>,
    /// Guest calls one tenant may run at once (default 16); more fail at once (429, 42904).
    pub max_calls_per_tenant: Option<u32>,
    /// Guest instances one tenant may keep alive (default 64) of `max_instances`.
    pub max_instances_per_tenant: Option<u32>,
}

impl WasmTuning {
    pub fn options(&self) -> sluice_runtime::RuntimeOptions {
        let d = sluice_runtime::RuntimeOptions::default();
        sluice_runtime::RuntimeOptions {
            cache_dir: self.cache_dir.clone(),
            call_timeout: self.call_timeout.unwrap_or(d.call_timeout),
            memory_limit: self.memory_limit.unwrap_or(d.memory_limit),
            max_instances: self.max_instances.unwrap_or(d.max_instances),
            epoch_tick: d.epoch_tick,
            max_calls_per_tenant: self
                .max_calls_per_tenant
                .unwrap_or(d.max_calls_per_tenant)
                .max(1),
            max_instances_per_tenant: self
                .max_instances_per_tenant
                .unwrap_or(d.max_instances_per_tenant)
                .max(1),
        }
    }
}

/// S3 settings beyond the standard `AWS_*` environment variables.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Endpoint override for S3-compatible stores (also `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Allow plain HTTP endpoints (local test servers).
    pub allow_http: Option<bool>,
}

/// Log tuning; see `sluice_log::LogOptions` for what each trades.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogTuning {
    #[serde(default, with = "humantime_serde")]
    pub flush_window: Option<Duration>,
    pub flush_max_bytes: Option<usize>,
    pub segment_bytes: Option<u64>,
    pub inline_max_bytes: Option<usize>,
    pub cache_bytes: Option<usize>,
    pub checkpoint_commits: Option<u64>,
    #[serde(default, with = "humantime_serde")]
    pub checkpoint_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub wal_gc_min_age: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub dedup_window: Option<Duration>,
    pub dedup_max_entries: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub retention_interval: Option<Duration>,
    pub merge_target_bytes: Option<u64>,
    pub merge_min_objects: Option<usize>,
    pub compaction_max_bytes_per_s: Option<u64>,
}

impl LogTuning {
    /// Options for a store: a local directory flushes as soon as it can; an object store waits
    /// a little to put more into each (billed) request.
    pub fn options(&self, remote: bool) -> LogOptions {
        let d = LogOptions::default();
        LogOptions {
            flush_window: self.flush_window.unwrap_or(if remote {
                Duration::from_millis(50)
            } else {
                d.flush_window
            }),
            flush_max_bytes: self.flush_max_bytes.unwrap_or(d.flush_max_bytes),
            segment_bytes: self.segment_bytes.unwrap_or(d.segment_bytes),
            inline_max_bytes: self.inline_max_bytes.unwrap_or(d.inline_max_bytes),
            cache_bytes: self.cache_bytes.unwrap_or(d.cache_bytes),
            checkpoint_commits: self.checkpoint_commits.unwrap_or(d.checkpoint_commits),
            checkpoint_interval: self.checkpoint_interval.unwrap_or(d.checkpoint_interval),
            wal_gc_min_age: self.wal_gc_min_age.unwrap_or(d.wal_gc_min_age),
            dedup_window: self.dedup_window.unwrap_or(d.dedup_window),
            dedup_max_entries: self.dedup_max_entries.unwrap_or(d.dedup_max_entries),
            retention_interval: self.retention_interval.unwrap_or(d.retention_interval),
            merge_target_bytes: self.merge_target_bytes.unwrap_or(d.merge_target_bytes),
            merge_min_objects: self.merge_min_objects.unwrap_or(d.merge_min_objects),
            compaction_bytes_per_s: self
                .compaction_max_bytes_per_s
                .unwrap_or(d.compaction_bytes_per_s),
        }
    }
}

pub const DEFAULT_DATA: &str = "./sluice-data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_MAX_BODY: usize = 64 << 20;

impl FileConfig {
    pub fn load(path: &std::path::Path) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations_and_rejects_unknown_keys() {
        let c: FileConfig = toml::from_str(
            "listen = \"127.0.0.1:9000\"\n[log]\nflush_window = \"2ms\"\nretention_interval = \"1m\"\n",
        )
        .unwrap();
        let o = c.log.options(false);
        assert_eq!(o.flush_window, Duration::from_millis(2));
        assert_eq!(o.retention_interval, Duration::from_secs(60));
        assert!(toml::from_str::<FileConfig>("colour = 1").is_err());
        assert_eq!(
            FileConfig::default().log.options(true).flush_window,
            Duration::from_millis(50)
        );
    }
}

/// The listener's bounds (`[http]` in the configuration; docs/CONFIG.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpLimits {
    /// A connection that has not sent a whole request head this long after it began one is
    /// closed (slow-header clients).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Connections served at once; past it, new ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// Streams (SSE, WebSocket) one API key may have open at once; past it, 429.
    pub max_streams_per_key: usize,
    /// On shutdown, how long requests in flight may take to finish before their connections
    /// are closed (streams and long polls end at once).
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// A request refused for a rate quota (429 with `Retry-After`) is answered after this
    /// long at most (never past its `Retry-After`): a client looping on refusals waits instead
    /// of spending the server's CPU on thousands of them a second. `0s` answers at once.
    #[serde(with = "humantime_serde")]
    pub throttle_delay: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 4096,
            max_streams_per_key: 32,
            shutdown_grace: Duration::from_secs(10),
            throttle_delay: Duration::from_secs(1),
        }
    }
}
