//! Dead-letter topics: `T.dlq` beside each topic `T` (created on first use, 14 days of
//! retention, as DESIGN.md says), and the headers that say why an event is there.

use bytes::Bytes;
use serde_json::json;
use sluice_log::{Log, LogError, NewTopic, Record};

use sluice_tenancy::error::{ApiError, from_log};
use sluice_tenancy::log_name;

pub const REASON: &str = "sluice_dlq_reason";
pub const STAGE: &str = "sluice_dlq_stage";
pub const ORIGIN_TOPIC: &str = "sluice_dlq_topic";

const RETENTION_MS: i64 = 14 * 24 * 3600 * 1000;

/// The default dead-letter topic of `topic`.
pub fn dlq_of(topic: &str) -> String {
    format!("{topic}.dlq")
}

/// Add the reason headers to a record bound for a dead-letter topic.
pub fn mark(record: &mut Record, origin_topic: &str, stage: &str, reason: &str) {
    record
        .headers
        .retain(|(k, _)| k != REASON && k != STAGE && k != ORIGIN_TOPIC);
    record
        .headers
        .push((REASON.into(), Bytes::from(reason.to_owned())));
    record
        .headers
        .push((STAGE.into(), Bytes::from(stage.to_owned())));
    record
        .headers
        .push((ORIGIN_TOPIC.into(), Bytes::from(origin_topic.to_owned())));
}

/// Create a tenant's dead-letter topic if it does not exist yet.
pub async fn ensure(log: &Log, tenant: &str, name: &str) -> Result<(), ApiError> {
    let full = log_name(tenant, name);
    if log.topic(&full).is_some() {
        return Ok(());
    }
    if !sluice_log::valid_topic_name(name) {
        return Err(ApiError::invalid(format!(
            "dead-letter topic name `{name}` is not a valid topic name"
        )));
    }
    let mut spec =
        json!({"description": "dead letters: events a pipeline or transform could not deliver"});
    // The dead letters of a sealed (PHI) topic are sealed too.
    if let Some(source) = name.strip_suffix(".dlq")
        && let Some(s) = log.inspect_topic(&log_name(tenant, source), |m, _| {
            m.spec["dataSensitivity"].clone()
        })
        && !s.is_null()
    {
        spec["dataSensitivity"] = s;
    }
    match log
        .create_topic(NewTopic {
            name: full,
            partitions: 1,
            config: [("retention.ms".to_owned(), json!(RETENTION_MS))].into(),
            spec,
        })
        .await
    {
        Ok(_) | Err(LogError::TopicExists(_)) => Ok(()),
        Err(e) => Err(from_log(e, name)),
    }
}
