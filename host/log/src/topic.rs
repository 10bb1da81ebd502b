//! Topic configuration: the seed's Topic Configuration `config` map, parsed into typed settings.
//!
//! The raw map is kept as given (so `GET` returns what was set, and unknown keys survive, as the
//! schema's `additionalProperties: true` allows); the typed view is what the log acts on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How a batch payload is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compression {
    None,
    Zstd,
    Gzip,
    Snappy,
    Lz4,
}

impl Compression {
    pub fn code(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Zstd => 1,
            Compression::Gzip => 2,
            Compression::Snappy => 3,
            Compression::Lz4 => 4,
        }
    }

    pub fn from_code(code: u8) -> Option<Compression> {
        match code {
            0 => Some(Compression::None),
            1 => Some(Compression::Zstd),
            2 => Some(Compression::Gzip),
            3 => Some(Compression::Snappy),
            4 => Some(Compression::Lz4),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupPolicy {
    Delete,
    Compact,
    DeleteCompact,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// The producer's timestamp is kept.
    CreateTime,
    /// The log stamps each record with the time it was appended.
    LogAppendTime,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("invalid topic config `{key}`: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

/// The typed settings the log acts on.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    /// Records older than this may be deleted; `None` keeps them forever (`-1`).
    pub retention_ms: Option<i64>,
    /// Per partition, the oldest data beyond this size may be deleted; `None` = unbounded.
    pub retention_bytes: Option<i64>,
    pub cleanup_policy: CleanupPolicy,
    /// Largest record (key + value + headers) accepted.
    pub max_message_bytes: u32,
    pub compression: Compression,
    pub segment_bytes: u64,
    pub segment_ms: i64,
    /// Compacted topics: how long a tombstone (a null value) is kept before compaction may
    /// remove it.
    pub delete_retention_ms: i64,
    pub timestamp_type: TimestampType,
    /// Compacted topics: a record younger than this is never compacted away.
    pub min_compaction_lag_ms: i64,
    /// Compacted topics: a record older than this (and superseded) is compacted away even if
    /// the partition is not dirty enough.
    pub max_compaction_lag_ms: Option<i64>,
    /// Compacted topics: compact a partition once this share of its bytes is uncompacted.
    pub min_cleanable_dirty_ratio: f64,
}

impl TopicConfig {
    /// Does compaction apply (`compact` or `delete,compact`)?
    pub fn compacted(&self) -> bool {
        matches!(
            self.cleanup_policy,
            CleanupPolicy::Compact | CleanupPolicy::DeleteCompact
        )
    }
}

pub const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
pub const DEFAULT_MAX_MESSAGE_BYTES: u32 = 1024 * 1024;

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            retention_ms: Some(DEFAULT_RETENTION_MS),
            retention_bytes: None,
            cleanup_policy: CleanupPolicy::Delete,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            compression: Compression::None,
            segment_bytes: 1 << 30,
            segment_ms: DEFAULT_RETENTION_MS,
            delete_retention_ms: 24 * 3600 * 1000,
            timestamp_type: TimestampType::CreateTime,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: None,
            min_cleanable_dirty_ratio: 0.5,
        }
    }
}

/// Keys the log understands; other keys are kept but ignored.
pub const KNOWN_KEYS: &[&str] = &[
    "retention.ms",
    "retention.bytes",
    "cleanup.policy",
    "max.message.bytes",
    "compression.type",
    "segment.bytes",
    "segment.ms",
    "delete.retention.ms",
    "min.compaction.lag.ms",
    "max.compaction.lag.ms",
    "min.cleanable.dirty.ratio",
    "message.timestamp.type",
    "min.insync.replicas",
];

impl TopicConfig {
    /// Parse a config map. Values may be JSON numbers or numeric strings (Kafka tools send strings).
    pub fn parse(raw: &BTreeMap<String, Value>) -> Result<TopicConfig, ConfigError> {
        let mut c = TopicConfig::default();
        for (key, value) in raw {
            let err = |reason: &str| ConfigError {
                key: key.clone(),
                reason: reason.to_owned(),
            };
            match key.as_str() {
                "retention.ms" => {
                    c.retention_ms =
                        retention(int(value).ok_or_else(|| err("expected an integer"))?)
                            .ok_or_else(|| err("must be -1 or positive"))?
                }
                "retention.bytes" => {
                    c.retention_bytes =
                        retention(int(value).ok_or_else(|| err("expected an integer"))?)
                            .ok_or_else(|| err("must be -1 or positive"))?
                }
                "cleanup.policy" => {
                    c.cleanup_policy = match text(value)
                        .ok_or_else(|| err("expected a string"))?
                        .replace(' ', "")
                        .as_str()
                    {
                        "delete" => CleanupPolicy::Delete,
                        "compact" => CleanupPolicy::Compact,
                        "delete,compact" | "compact,delete" => CleanupPolicy::DeleteCompact,
                        _ => return Err(err("expected delete, compact or delete,compact")),
                    }
                }
                "max.message.bytes" => {
                    let v = int(value).ok_or_else(|| err("expected an integer"))?;
                    if !(1024..=64 * 1024 * 1024).contains(&v) {
                        return Err(err("must be between 1024 and 67108864"));
                    }
                    c.max_message_bytes = v as u32;
                }
                "compression.type" => {
                    c.compression = match text(value)
                        .ok_or_else(|| err("expected a string"))?
                        .as_str()
                    {
                        "uncompressed" | "none" | "producer" => Compression::None,
                        "zstd" => Compression::Zstd,
                        "gzip" => Compression::Gzip,
                        "snappy" => Compression::Snappy,
                        "lz4" => Compression::Lz4,
                        _ => {
                            return Err(err(
                                "expected uncompressed, zstd, gzip, snappy, lz4 or producer",
                            ));
                        }
                    }
                }
                "segment.bytes" => {
                    let v = int(value).ok_or_else(|| err("expected an integer"))?;
                    if v < 1024 {
                        return Err(err("must be at least 1024"));
                    }
                    c.segment_bytes = v as u64;
                }
                "segment.ms" => {
                    let v = int(value).ok_or_else(|| err("expected an integer"))?;
                    if v < 1 {
                        return Err(err("must be positive"));
                    }
                    c.segment_ms = v;
                }
                "delete.retention.ms" => {
                    let v = int(value).ok_or_else(|| err("expected an integer"))?;
                    if v < 0 {
                        return Err(err("must not be negative"));
                    }
                    c.delete_retention_ms = v;
                }
                "min.compaction.lag.ms" => {
                    let v = int(value).ok_or_else(|| err("expected an integer"))?;
                    if v < 0 {
                        return Err(err("must not be negative"));
                    }
                    c.min_compaction_lag_ms = v;
                }
                "max.compaction.lag.ms" => {
                    let v = int(value).ok_or_else(|| err("expected an integer"))?;
                    if v < 1 {
                        return Err(err("must be positive"));
                    }
                    c.max_compaction_lag_ms = (v != i64::MAX).then_some(v);
                }
                "min.cleanable.dirty.ratio" => {
                    let v = value
                        .as_f64()
                        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
                        .ok_or_else(|| err("expected a number"))?;
                    if !(0.0..=1.0).contains(&v) {
                        return Err(err("must be between 0 and 1"));
                    }
                    c.min_cleanable_dirty_ratio = v;
                }
                "message.timestamp.type" => {
                    c.timestamp_type = match text(value)
                        .ok_or_else(|| err("expected a string"))?
                        .as_str()
                    {
                        "CreateTime" => TimestampType::CreateTime,
                        "LogAppendTime" => TimestampType::LogAppendTime,
                        _ => return Err(err("expected CreateTime or LogAppendTime")),
                    }
                }
                "min.insync.replicas" => {
                    int(value)
                        .filter(|v| *v >= 1)
                        .ok_or_else(|| err("expected a positive integer"))?;
                }
                _ => {}
            }
        }
        Ok(c)
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

/// `-1` means unbounded; otherwise the value must be positive.
fn retention(v: i64) -> Option<Option<i64>> {
    match v {
        -1 => Some(None),
        v if v > 0 => Some(Some(v)),
        _ => None,
    }
}

/// Names the log accepts: a topic name, optionally behind one namespace (`tenant/topic`).
pub fn valid_log_name(name: &str) -> bool {
    match name.split_once('/') {
        Some((ns, topic)) => valid_topic_name(ns) && valid_topic_name(topic),
        None => valid_topic_name(name),
    }
}

/// Topic names: the seed's pattern, and at most 249 characters as in Kafka.
pub fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> BTreeMap<String, Value> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn parses_numbers_and_strings() {
        let c = TopicConfig::parse(&map(json!({
            "retention.ms": "86400000", "retention.bytes": -1, "cleanup.policy": "compact, delete",
            "compression.type": "zstd", "message.timestamp.type": "LogAppendTime", "x.custom": true
        })))
        .unwrap();
        assert_eq!(c.retention_ms, Some(86_400_000));
        assert_eq!(c.retention_bytes, None);
        assert_eq!(c.cleanup_policy, CleanupPolicy::DeleteCompact);
        assert_eq!(c.compression, Compression::Zstd);
        assert_eq!(c.timestamp_type, TimestampType::LogAppendTime);
        for (name, codec) in [
            ("gzip", Compression::Gzip),
            ("snappy", Compression::Snappy),
            ("lz4", Compression::Lz4),
            ("producer", Compression::None),
        ] {
            let c = TopicConfig::parse(&map(json!({ "compression.type": name }))).unwrap();
            assert_eq!(c.compression, codec);
        }
    }

    #[test]
    fn rejects_bad_values_with_the_key() {
        for (k, v) in [
            ("retention.ms", json!(0)),
            ("cleanup.policy", json!("purge")),
            ("max.message.bytes", json!(10)),
            ("compression.type", json!("brotli")),
            ("message.timestamp.type", json!(3)),
        ] {
            let e = TopicConfig::parse(&map(json!({ k: v }))).unwrap_err();
            assert_eq!(e.key, k);
        }
    }

    #[test]
    fn topic_names() {
        assert!(valid_topic_name("bronze.data.cleaned"));
        assert!(valid_topic_name("a_b-C.9"));
        assert!(!valid_topic_name(""));
        assert!(!valid_topic_name("a/b"));
        assert!(!valid_topic_name(".."));
        assert!(!valid_topic_name(&"x".repeat(250)));
        assert!(valid_log_name("acme/orders"));
        assert!(!valid_log_name("acme/or/ders"));
        assert!(!valid_log_name("/orders"));
    }
}
