//! The gateway's own topics (`_auth`, `_components`, `_transforms`, `_offsets`): one
//! partition, kept forever, created on first start, written one keyed record at a time.
//!
//! Those whose every key names one thing (a key, a definition, an offset) are compacted
//! (their owners [`ensure`] them with [`compact`]): only the newest record per key is kept, and a deletion (a null value, or
//! `{"deleted": true}`) goes after `delete.retention.ms`. So a restart reads a bounded amount
//! however long the gateway has run.

use bytes::Bytes;
use serde_json::{Value, json};
use sluice_log::{Compression, EncodedRecords, Log, LogError, NewTopic, PartitionAppend, Record};

use crate::clock::now_ms;
use crate::error::{ApiError, from_log};

/// Committed offsets of transforms, consumer groups and subscriptions (each owner reads its
/// own keys from it at start).
pub const OFFSETS_TOPIC: &str = "_offsets";
/// Operational alerts (lag above a group's threshold, endpoints disabled).
pub const ALERTS_TOPIC: &str = "_alerts";

/// The config of an internal topic whose newest record per key is its state.
pub fn compact() -> (&'static str, Value) {
    ("cleanup.policy", json!("compact"))
}

/// Create the internal topic `name` unless it exists; `config` adds to `retention.ms = -1`.
/// A topic that exists gets the settings it lacks (one created by an older version).
pub async fn ensure(
    log: &Log,
    name: &str,
    description: &str,
    config: &[(&str, Value)],
) -> Result<(), LogError> {
    let mut all = vec![("retention.ms".to_owned(), json!(-1))];
    all.extend(config.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    if let Some(t) = log.topic(name) {
        let mut merged = t.meta.config.clone();
        let mut changed = false;
        for (k, v) in &all {
            if merged.get(k) != Some(v) {
                merged.insert(k.clone(), v.clone());
                changed = true;
            }
        }
        if changed {
            log.update_topic(name, None, merged, t.meta.spec).await?;
        }
        return Ok(());
    }
    match log
        .create_topic(NewTopic {
            name: name.into(),
            partitions: 1,
            config: all.into_iter().collect(),
            spec: json!({ "description": description }),
        })
        .await
    {
        Ok(_) | Err(LogError::TopicExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Every record of the internal topic `name`, oldest first, with its offset (how each owner
/// rebuilds its state at start).
pub async fn replay(
    log: &Log,
    name: &str,
    mut each: impl FnMut(u64, &Record),
) -> Result<(), LogError> {
    log.scan(name, 0, 0, u64::MAX, |s| {
        each(s.offset, &s.record);
        true
    })
    .await
}

/// Every record of the internal topic `name`, oldest first (read once, for several owners).
pub async fn read_all(log: &Log, name: &str) -> Result<Vec<Record>, LogError> {
    let mut out = Vec::new();
    replay(log, name, |_, r| out.push(r.clone())).await?;
    Ok(out)
}

/// Append one keyed record, durably.
pub async fn append(log: &Log, topic: &str, key: String, value: Vec<u8>) -> Result<(), ApiError> {
    append_all(log, topic, vec![(key, value)]).await
}

/// Delete `key`: append a null value (a tombstone that compaction removes in time).
pub async fn delete(log: &Log, topic: &str, key: String) -> Result<(), ApiError> {
    append_records(
        log,
        topic,
        vec![Record {
            key: Some(Bytes::from(key)),
            value: None,
            headers: vec![],
            timestamp: now_ms(),
        }],
    )
    .await
}

/// Append keyed records, durably, in one write.
pub async fn append_all(
    log: &Log,
    topic: &str,
    entries: Vec<(String, Vec<u8>)>,
) -> Result<(), ApiError> {
    let now = now_ms();
    let records: Vec<Record> = entries
        .into_iter()
        .map(|(key, value)| Record {
            key: Some(Bytes::from(key)),
            value: Some(Bytes::from(value)),
            headers: vec![],
            timestamp: now,
        })
        .collect();
    append_records(log, topic, records).await
}

/// Append records to partition 0 of `topic`, durably, in one write.
pub async fn append_records(log: &Log, topic: &str, records: Vec<Record>) -> Result<(), ApiError> {
    let event_ids = vec![None; records.len()];
    log.append(
        topic,
        vec![PartitionAppend {
            partition: 0,
            records: EncodedRecords::encode(&records, Compression::None),
            event_ids,
        }],
    )
    .await
    .map_err(|e| from_log(e, topic))?;
    Ok(())
}
