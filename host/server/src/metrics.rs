//! Prometheus metrics: the server's own families, plus the log's counters rendered at scrape.

use std::fmt::Write;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sluice_log::{LogMetrics, metrics::FLUSH_BYTES_BUCKETS};
use sluice_runtime::{StageLabels, StageStats};

use sluice_groups::PartitionLag;
use sluice_ingest::metrics::IngestMetrics;
pub use sluice_ingest::metrics::TopicLabels;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub status: u16,
}

pub struct Metrics {
    registry: Registry,
    pub events_out: Family<TopicLabels, Counter>,
    pub bytes_out: Family<TopicLabels, Counter>,
    pub events_rejected: Family<TopicLabels, Counter>,
    pub produce_latency: Histogram,
    pub requests: Family<RequestLabels, Counter>,
    /// Encoding is not reentrant-safe across scrapes; one at a time.
    encode: Mutex<()>,
}

/// What a scrape renders besides the server's own families, from every service.
pub struct Scrape<'a> {
    pub log: &'a LogMetrics,
    /// Every built pipeline stage and running transform, with its counters.
    pub stages: &'a [(StageLabels, StageStats)],
    pub lag: &'a [(String, String, PartitionLag)],
    /// Webhook dead letters that could not be written at once.
    pub dead_letter_failures: u64,
    /// FHIR event notifications appended (every Subscription's).
    pub fhir_notifications: u64,
    pub disk: &'a sluice_ingest::disk::DiskGuard,
    /// Requests refused per (tenant, quota).
    pub throttled: &'a [(String, &'static str, u64)],
    pub audit: &'a sluice_tenancy::audit::Audit,
    /// Compacted partitions: `(log topic, partition, dirty ratio, oldest dirty run's time)`.
    pub compaction: &'a [(String, u32, f64, Option<i64>)],
    /// Compaction runs that failed (each retried at the next round).
    pub compaction_failures: u64,
    /// `(log topic, partition, ms since the epoch)` of each partition's last compaction run.
    pub compaction_runs: &'a [(String, u32, i64)],
}

impl Metrics {
    /// The server's families, and ingest's (`ingest` keeps counting into its own; a scrape
    /// renders them).
    pub fn new(ingest: &IngestMetrics) -> Self {
        let mut registry = Registry::with_prefix("sluice");
        let events_out = Family::<TopicLabels, Counter>::default();
        let bytes_out = Family::<TopicLabels, Counter>::default();
        let events_rejected = Family::<TopicLabels, Counter>::default();
        let produce_latency = Histogram::new(exponential_buckets(0.000_25, 2.0, 16));
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "deprecated_events",
            "Events of a type the event catalog marks deprecated (accepted with a warning)",
            ingest.deprecated_events.clone(),
        );
        registry.register("events_in", "Events appended", ingest.events_in.clone());
        registry.register(
            "bytes_in",
            "Bytes of events appended",
            ingest.bytes_in.clone(),
        );
        registry.register("events_out", "Events served to readers", events_out.clone());
        registry.register("bytes_out", "Bytes of events served", bytes_out.clone());
        registry.register(
            "events_rejected",
            "Events refused at produce",
            events_rejected.clone(),
        );
        registry.register(
            "produce_latency_seconds",
            "Time from request to durable acknowledgement",
            produce_latency.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        Metrics {
            registry,
            events_out,
            bytes_out,
            events_rejected,
            produce_latency,
            requests,
            encode: Mutex::new(()),
        }
    }
}

impl Metrics {
    pub fn render(&self, scrape: &Scrape) -> String {
        let Scrape {
            log,
            stages,
            lag,
            dead_letter_failures,
            fhir_notifications,
            disk,
            throttled,
            audit,
            compaction,
            compaction_failures,
            compaction_runs,
        } = *scrape;
        let _one = self.encode.lock().expect("encode");
        let mut out = String::new();
        prometheus_client::encoding::text::encode_registry(&mut out, &self.registry)
            .expect("writing to a String");
        let counters: [(&str, &str, &std::sync::atomic::AtomicU64); 19] = [
            (
                "merges",
                "Small objects merged into larger ones",
                &log.merges,
            ),
            (
                "data_write_microseconds",
                "Time making flush data durable",
                &log.data_write_us,
            ),
            (
                "commit_microseconds",
                "Time creating commit records",
                &log.commit_us,
            ),
            ("flushes", "Group commits made durable", &log.flushes),
            (
                "flush_records",
                "Records in group commits",
                &log.flush_records,
            ),
            ("commits", "Commit records created", &log.commits),
            ("checkpoints", "Checkpoints written", &log.checkpoints),
            ("store_puts", "Object store PUT requests", &log.store_puts),
            ("store_gets", "Object store GET requests", &log.store_gets),
            (
                "store_lists",
                "Object store LIST requests",
                &log.store_lists,
            ),
            (
                "store_deletes",
                "Object store DELETE requests",
                &log.store_deletes,
            ),
            (
                "store_errors",
                "Object store request errors",
                &log.store_errors,
            ),
            (
                "duplicates",
                "Appends dropped as duplicates",
                &log.duplicates,
            ),
            ("cache_hits", "Reads served from memory", &log.cache_hits),
            (
                "cache_misses",
                "Reads that went to the store",
                &log.cache_misses,
            ),
            (
                "data_objects_deleted",
                "Data objects removed by retention",
                &log.data_objects_deleted,
            ),
            (
                "flush_bytes",
                "Bytes made durable by group commits",
                &log.flush_bytes,
            ),
            ("compactions", "Compaction runs committed", &log.compactions),
            (
                "compaction_reclaimed_bytes",
                "Bytes compaction removed (runs replaced less runs written)",
                &log.compacted_bytes_reclaimed,
            ),
        ];
        // The registry output ends with "# EOF"; keep that last.
        if let Some(i) = out.rfind("# EOF") {
            out.truncate(i);
        }
        for (name, help, c) in counters {
            let _ = writeln!(out, "# HELP sluice_log_{name} {help}.");
            let _ = writeln!(out, "# TYPE sluice_log_{name} counter");
            let _ = writeln!(out, "sluice_log_{name}_total {}", LogMetrics::get(c));
        }
        let _ = writeln!(
            out,
            "# HELP sluice_log_flush_size_bytes Size of each group commit."
        );
        let _ = writeln!(out, "# TYPE sluice_log_flush_size_bytes histogram");
        let mut cumulative = 0;
        for (i, bound) in FLUSH_BYTES_BUCKETS.iter().enumerate() {
            cumulative += LogMetrics::get(&log.flush_bytes_buckets[i]);
            let le = if *bound == u64::MAX {
                "+Inf".to_owned()
            } else {
                bound.to_string()
            };
            let _ = writeln!(
                out,
                "sluice_log_flush_size_bytes_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "sluice_log_flush_size_bytes_sum {}",
            LogMetrics::get(&log.flush_bytes)
        );
        let _ = writeln!(
            out,
            "sluice_log_flush_size_bytes_count {}",
            LogMetrics::get(&log.flushes)
        );
        render_components(&mut out, stages);
        render_lag(&mut out, lag);
        render_compaction(&mut out, compaction, compaction_failures, compaction_runs);
        let _ = writeln!(
            out,
            "# HELP sluice_webhook_dead_letter_failures Webhook dead letters not written at the \
             first try (each is retried until written; the event is not done meanwhile)."
        );
        let _ = writeln!(out, "# TYPE sluice_webhook_dead_letter_failures counter");
        let _ = writeln!(
            out,
            "sluice_webhook_dead_letter_failures_total {dead_letter_failures}"
        );
        let _ = writeln!(
            out,
            "# HELP sluice_fhir_notifications FHIR event notifications appended to Subscriptions' topics."
        );
        let _ = writeln!(out, "# TYPE sluice_fhir_notifications counter");
        let _ = writeln!(out, "sluice_fhir_notifications_total {fhir_notifications}");
        let _ = writeln!(
            out,
            "# HELP sluice_quota_throttled Requests refused for a tenant's quota."
        );
        let _ = writeln!(out, "# TYPE sluice_quota_throttled counter");
        for (tenant, quota, n) in throttled {
            let _ = writeln!(
                out,
                "sluice_quota_throttled_total{{tenant=\"{tenant}\",quota=\"{quota}\"}} {n}"
            );
        }
        for (name, help, value) in [
            (
                "sluice_audit_dropped",
                "Refusals not written to the audit trail (its queue was full).",
                &audit.dropped,
            ),
            (
                "sluice_audit_write_failures",
                "Audit records whose write failed (each retried).",
                &audit.write_failures,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(
                out,
                "{name}_total {}",
                value.load(std::sync::atomic::Ordering::Relaxed)
            );
        }
        if let Some(free) = disk.free() {
            let _ = writeln!(
                out,
                "# HELP sluice_disk_free_bytes Free bytes on the data directory's filesystem."
            );
            let _ = writeln!(out, "# TYPE sluice_disk_free_bytes gauge");
            let _ = writeln!(out, "sluice_disk_free_bytes {free}");
            let _ = writeln!(
                out,
                "# HELP sluice_disk_reserve_bytes Free bytes kept: under it new events are refused."
            );
            let _ = writeln!(out, "# TYPE sluice_disk_reserve_bytes gauge");
            let _ = writeln!(out, "sluice_disk_reserve_bytes {}", disk.reserve());
        }
        out.push_str("# EOF\n");
        out
    }
}

/// Compacted partitions: dirty share and the age of the oldest uncompacted run; failed runs.
/// Topic names are the log's (`tenant/topic`, both of restricted characters): one series per
/// compacted partition.
fn render_compaction(
    out: &mut String,
    partitions: &[(String, u32, f64, Option<i64>)],
    failures: u64,
    runs: &[(String, u32, i64)],
) {
    let now = sluice_tenancy::now_ms();
    let _ = writeln!(
        out,
        "# HELP sluice_compaction_dirty_ratio Share of a compacted partition's bytes not yet compacted."
    );
    let _ = writeln!(out, "# TYPE sluice_compaction_dirty_ratio gauge");
    for (topic, p, ratio, _) in partitions {
        let _ = writeln!(
            out,
            "sluice_compaction_dirty_ratio{{topic=\"{topic}\",partition=\"{p}\"}} {ratio}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP sluice_compaction_lag_seconds Age of the newest record of a compacted partition's oldest uncompacted run."
    );
    let _ = writeln!(out, "# TYPE sluice_compaction_lag_seconds gauge");
    for (topic, p, _, oldest) in partitions {
        let lag = oldest.map_or(0.0, |ts| (now - ts).max(0) as f64 / 1000.0);
        let _ = writeln!(
            out,
            "sluice_compaction_lag_seconds{{topic=\"{topic}\",partition=\"{p}\"}} {lag}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP sluice_compaction_failures Compaction runs that failed and changed nothing (retried)."
    );
    let _ = writeln!(out, "# TYPE sluice_compaction_failures counter");
    let _ = writeln!(out, "sluice_compaction_failures_total {failures}");
    let _ = writeln!(
        out,
        "# HELP sluice_compaction_last_run_timestamp_seconds When a partition's last compaction run ended."
    );
    let _ = writeln!(
        out,
        "# TYPE sluice_compaction_last_run_timestamp_seconds gauge"
    );
    for (topic, p, at) in runs {
        let _ = writeln!(
            out,
            "sluice_compaction_last_run_timestamp_seconds{{topic=\"{topic}\",partition=\"{p}\"}} {}",
            *at as f64 / 1000.0
        );
    }
}

/// Consumer groups' lag per partition, and committed offsets.
fn render_lag(out: &mut String, lag: &[(String, String, PartitionLag)]) {
    let _ = writeln!(
        out,
        "# HELP sluice_group_lag Events between a group's committed offset and the log end."
    );
    let _ = writeln!(out, "# TYPE sluice_group_lag gauge");
    for (tenant, group, l) in lag {
        let _ = writeln!(
            out,
            "sluice_group_lag{{tenant=\"{tenant}\",group=\"{group}\",topic=\"{}\",partition=\"{}\"}} {}",
            l.topic, l.partition, l.lag
        );
    }
    let _ = writeln!(
        out,
        "# HELP sluice_group_committed_offset A group's committed offset."
    );
    let _ = writeln!(out, "# TYPE sluice_group_committed_offset gauge");
    for (tenant, group, l) in lag {
        if let Some(c) = l.committed {
            let _ = writeln!(
                out,
                "sluice_group_committed_offset{{tenant=\"{tenant}\",group=\"{group}\",topic=\"{}\",partition=\"{}\"}} {c}",
                l.topic, l.partition
            );
        }
    }
}

/// Per-component counters, summed over the stages that run the same component.
fn render_components(out: &mut String, stages: &[(StageLabels, StageStats)]) {
    let mut by: std::collections::BTreeMap<(String, String), StageStats> = Default::default();
    for (labels, stats) in stages {
        let key = (labels.tenant.clone(), labels.component.clone());
        match by.get_mut(&key) {
            None => {
                by.insert(key, stats.clone());
            }
            Some(sum) => {
                sum.calls += stats.calls;
                sum.events += stats.events;
                sum.seconds += stats.seconds;
                sum.instantiations += stats.instantiations;
                for (kind, n) in &stats.errors {
                    if let Some(e) = sum.errors.iter_mut().find(|(k, _)| k == kind) {
                        e.1 += n;
                    }
                }
            }
        }
    }
    type Pick = fn(&StageStats) -> String;
    let series: [(&str, &str, Pick); 4] = [
        ("calls", "Calls into a component (one per batch)", |s| {
            s.calls.to_string()
        }),
        ("events", "Events passed to a component", |s| {
            s.events.to_string()
        }),
        ("seconds", "Time spent inside a component", |s| {
            format!("{:.6}", s.seconds)
        }),
        ("instantiations", "Instances created", |s| {
            s.instantiations.to_string()
        }),
    ];
    for (name, help, pick) in series {
        let _ = writeln!(out, "# HELP sluice_component_{name} {help}.");
        let _ = writeln!(out, "# TYPE sluice_component_{name} counter");
        for ((tenant, component), stats) in &by {
            let _ = writeln!(
                out,
                "sluice_component_{name}_total{{tenant=\"{tenant}\",component=\"{component}\"}} {}",
                pick(stats)
            );
        }
    }
    let _ = writeln!(out, "# HELP sluice_component_errors Failed calls by kind.");
    let _ = writeln!(out, "# TYPE sluice_component_errors counter");
    for ((tenant, component), stats) in &by {
        for (kind, n) in &stats.errors {
            let _ = writeln!(
                out,
                "sluice_component_errors_total{{tenant=\"{tenant}\",component=\"{component}\",kind=\"{}\"}} {n}",
                kind.name()
            );
        }
    }
}
