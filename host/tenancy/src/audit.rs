//! The audit trail: who changed what (keys, tenants, topics, schemas, components, transforms,
//! subscriptions, quotas) and who was refused (bad keys, missing scopes), appended to each
//! tenant's own audit topic `<tenant>/_audit` (90 days; `_audit` for what names no tenant).
//!
//! Changes are recorded before their answer goes out (durably; a failed write is retried and
//! counted). Refusals go through a bounded queue to a background writer, so a flood of bad
//! requests costs the log at most the queue's worth: past it they are counted, not written.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sluice_log::{Log, LogError};
use tokio::sync::mpsc;

use crate::error::{ApiError, from_log};
use crate::internal_topics;
use crate::names::log_name;

/// The audit topic's name under each tenant.
pub const AUDIT_TOPIC: &str = "_audit";
const RETENTION_MS: i64 = 90 * 24 * 3600 * 1000;
/// Refusals waiting to be written; past it they are counted and dropped.
const REFUSALS_QUEUED: usize = 1024;
/// The most records one read returns.
pub const MAX_READ: usize = 1000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub time_ms: i64,
    /// The tenant the action concerns (`None`: no tenant could be told, e.g. an unknown key).
    pub tenant: Option<String>,
    /// The key that acted or was refused.
    pub key_id: Option<String>,
    /// `METHOD /route/{template}`, or `auth.failed`.
    pub action: String,
    /// The path acted on.
    pub resource: String,
    /// The HTTP status answered.
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

pub struct Audit {
    log: Log,
    refusals: mpsc::Sender<AuditRecord>,
    /// Refusals not written because the queue was full.
    pub dropped: AtomicU64,
    /// Writes that failed (each retried; counted per failure).
    pub write_failures: AtomicU64,
}

fn topic_of(tenant: Option<&str>) -> String {
    match tenant {
        Some(t) => log_name(t, AUDIT_TOPIC),
        None => AUDIT_TOPIC.to_owned(),
    }
}

impl Audit {
    pub fn new(log: Log) -> Arc<Audit> {
        let (tx, mut rx) = mpsc::channel::<AuditRecord>(REFUSALS_QUEUED);
        let audit = Arc::new(Audit {
            log,
            refusals: tx,
            dropped: AtomicU64::new(0),
            write_failures: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&audit);
        tokio::spawn(async move {
            while let Some(r) = rx.recv().await {
                let Some(audit) = weak.upgrade() else { return };
                let _written = audit.write(&r).await;
            }
        });
        audit
    }

    /// Record a change, durably, before it is answered: retried three times, then counted in
    /// `write_failures` and logged (the change itself has happened and is not undone).
    pub async fn record(&self, r: AuditRecord) {
        for attempt in 0..3u32 {
            if self.write(&r).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
        }
        tracing::error!(
            action = r.action,
            resource = r.resource,
            "audit record not written"
        );
    }

    /// Record a refusal without waiting (queued; counted in `dropped` when the queue is full).
    pub fn refused(&self, r: AuditRecord) {
        if self.refusals.try_send(r).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn write(&self, r: &AuditRecord) -> bool {
        let topic = topic_of(r.tenant.as_deref());
        let result: Result<(), ApiError> = async {
            ensure(&self.log, &topic)
                .await
                .map_err(|e| from_log(e, AUDIT_TOPIC))?;
            internal_topics::append(
                &self.log,
                &topic,
                r.action.clone(),
                serde_json::to_vec(r).expect("serializes"),
            )
            .await
        }
        .await;
        match result {
            Ok(()) => true,
            Err(e) => {
                self.write_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e.message, "writing an audit record");
                false
            }
        }
    }

    /// The tenant's records (the system-wide ones with `None`) from `since_ms` on, oldest
    /// first, at most `limit` (≤ [`MAX_READ`]).
    pub async fn read(
        &self,
        tenant: Option<&str>,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, ApiError> {
        let topic = topic_of(tenant);
        if self.log.topic(&topic).is_none() {
            return Ok(Vec::new());
        }
        let limit = limit.clamp(1, MAX_READ);
        let from = self
            .log
            .offset_for_timestamp(&topic, 0, since_ms)
            .await
            .map_err(|e| from_log(e, AUDIT_TOPIC))?;
        let mut out = Vec::new();
        self.log
            .scan(&topic, 0, from, u64::MAX, |s| {
                if let Ok(r) = serde_json::from_slice::<AuditRecord>(s.record.value_bytes()) {
                    out.push(r);
                }
                out.len() < limit
            })
            .await
            .map_err(|e| from_log(e, AUDIT_TOPIC))?;
        Ok(out)
    }
}

async fn ensure(log: &Log, topic: &str) -> Result<(), LogError> {
    internal_topics::ensure(
        log,
        topic,
        "audit trail: changes and refusals, 90 days",
        &[("retention.ms", json!(RETENTION_MS))],
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(tenant: Option<&str>, action: &str, time_ms: i64) -> AuditRecord {
        AuditRecord {
            time_ms,
            tenant: tenant.map(str::to_owned),
            key_id: Some("k".into()),
            action: action.into(),
            resource: "/v1/topics/x".into(),
            status: 201,
            detail: None,
        }
    }

    #[tokio::test]
    async fn each_tenant_reads_its_own_trail() {
        let dir = tempfile::tempdir().unwrap();
        let log = crate::test_log(dir.path()).await;
        let audit = Audit::new(log.clone());
        audit.record(rec(Some("a"), "POST /v1/topics", 1)).await;
        audit
            .record(rec(Some("b"), "DELETE /v1/topics/{topic}", 2))
            .await;
        audit.refused(rec(None, "auth.failed", 3));
        let a = audit.read(Some("a"), 0, 10).await.unwrap();
        assert_eq!(a, vec![rec(Some("a"), "POST /v1/topics", 1)]);
        assert_eq!(audit.read(Some("b"), 0, 10).await.unwrap().len(), 1);
        assert!(audit.read(Some("nobody"), 0, 10).await.unwrap().is_empty());
        // Refusals are written in the background.
        for _ in 0..100 {
            if !audit.read(None, 0, 10).await.unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            audit.read(None, 0, 10).await.unwrap()[0].action,
            "auth.failed"
        );
        // A tenant's trail is kept 90 days, in a topic no tenant can name.
        let topic = log.topic(&log_name("a", AUDIT_TOPIC)).unwrap();
        assert_eq!(topic.meta.config["retention.ms"], json!(RETENTION_MS));
        log.close().await;
    }
}
