//! Reading: `GET /v1/topics/{topic}/partitions/{p}/events` (with long-poll at the tail) and
//! `GET /v1/topics/{topic}/offsets`.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{Response, StatusCode};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use sluice_log::StoredRecord;

use super::{check_topic_name, log_name};
use crate::auth::{Principal, Role};
use crate::envelope::{parse_time_text, read_headers};
use crate::error::{ApiError, from_log};
use crate::metrics::TopicLabels;
use crate::server::{App, Body, Call, json, raw_json};

const MAX_EVENTS: usize = 10_000;
const DEFAULT_EVENTS: usize = 500;
const MAX_BYTES: usize = 64 << 20;
const DEFAULT_BYTES: usize = 1 << 20;
const MAX_WAIT_MS: u64 = 60_000;

fn number<T: std::str::FromStr>(call: &Call, name: &str) -> Result<Option<T>, ApiError> {
    call.query(name)
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<T>().map_err(|_| {
                ApiError::bad_request(format!("`{name}` must be a non-negative integer"))
            })
        })
        .transpose()
}

pub async fn fetch(
    app: &App,
    who: &Principal,
    topic: &str,
    partition: &str,
    call: &Call,
) -> Result<Response<Body>, ApiError> {
    check_topic_name(topic)?;
    who.require(Role::Consume, topic)?;
    let partition: u32 = partition
        .parse()
        .map_err(|_| ApiError::bad_request("the partition must be a non-negative integer"))?;
    let full = log_name(&who.tenant, topic);
    let (start, hw) = app
        .log
        .offsets(&full, partition)
        .map_err(|e| from_log(e, topic))?;
    let offset = number::<u64>(call, "offset")?.unwrap_or(start);
    let max_events = number::<usize>(call, "max_events")?
        .unwrap_or(DEFAULT_EVENTS)
        .clamp(1, MAX_EVENTS);
    let max_bytes = number::<usize>(call, "max_bytes")?
        .unwrap_or(DEFAULT_BYTES)
        .clamp(1, MAX_BYTES);
    let wait_ms = number::<u64>(call, "wait_ms")?
        .unwrap_or(0)
        .min(MAX_WAIT_MS);
    if offset == hw && wait_ms > 0 {
        app.log
            .wait_for(&full, partition, offset, Duration::from_millis(wait_ms))
            .await
            .map_err(|e| from_log(e, topic))?;
    }
    let read = app
        .log
        .read(&full, partition, offset, max_events, max_bytes)
        .await
        .map_err(|e| from_log(e, topic))?;
    let bytes: usize = read.records.iter().map(|r| r.record.value.len()).sum();
    let labels = TopicLabels {
        tenant: who.tenant.clone(),
        topic: topic.to_owned(),
    };
    app.metrics
        .events_out
        .get_or_create(&labels)
        .inc_by(read.records.len() as u64);
    app.metrics
        .bytes_out
        .get_or_create(&labels)
        .inc_by(bytes as u64);

    let events: Vec<EventOut> = read.records.iter().map(EventOut::from).collect();
    let body = serde_json::to_vec(&json!({
        "events": events,
        "next_offset": read.next_offset,
        "start_offset": read.start_offset,
        "high_watermark": read.high_watermark,
    }))
    .expect("response serializes");
    Ok(raw_json(StatusCode::OK, body))
}

/// One record as a reader sees it: the envelope as `event` when the value is JSON, otherwise
/// the bytes as base64 `value`. Keys and header values that are not UTF-8 come as base64 too,
/// with `key_encoding` / `headers_encoding` saying so.
#[derive(Serialize)]
pub(crate) struct EventOut<'a> {
    partition: u32,
    offset: u64,
    timestamp: i64,
    key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_encoding: Option<&'static str>,
    headers: serde_json::Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    headers_encoding: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
}

impl<'a> From<&'a StoredRecord> for EventOut<'a> {
    fn from(s: &'a StoredRecord) -> Self {
        let r = &s.record;
        let (key, key_encoding) = match &r.key {
            None => (None, None),
            Some(k) => match std::str::from_utf8(k) {
                Ok(t) => (Some(t.to_owned()), None),
                Err(_) => (Some(STANDARD.encode(k)), Some("base64")),
            },
        };
        let shown = read_headers(r);
        let binary_headers = shown.iter().any(|(_, v)| std::str::from_utf8(v).is_err());
        let headers = shown
            .iter()
            .map(|(k, v)| {
                let v = if binary_headers {
                    STANDARD.encode(v)
                } else {
                    String::from_utf8_lossy(v).into_owned()
                };
                (k.clone(), Value::String(v))
            })
            .collect();
        let event = std::str::from_utf8(&r.value)
            .ok()
            .and_then(|t| serde_json::from_str::<&RawValue>(t).ok());
        EventOut {
            partition: s.partition,
            offset: s.offset,
            timestamp: r.timestamp,
            key,
            key_encoding,
            headers,
            headers_encoding: binary_headers.then_some("base64"),
            value: event.is_none().then(|| STANDARD.encode(&r.value)),
            event,
        }
    }
}

/// `?timestamp=<ms|RFC 3339|earliest|latest>`, or `?earliest` / `?latest`; without any, both
/// ends of every partition.
pub async fn offsets(
    app: &App,
    who: &Principal,
    topic: &str,
    call: &Call,
) -> Result<Response<Body>, ApiError> {
    check_topic_name(topic)?;
    who.require(Role::Consume, topic)?;
    let full = log_name(&who.tenant, topic);
    let info = app
        .log
        .topic(&full)
        .ok_or_else(|| ApiError::topic_not_found(topic))?;
    enum At {
        Earliest,
        Latest,
        Time(i64),
    }
    let at = match call.query("timestamp") {
        Some("earliest") => At::Earliest,
        Some("latest") | None if call.query("earliest").is_none() => At::Latest,
        None => At::Earliest,
        Some(t) => At::Time(parse_time_text(t).ok_or_else(|| {
            ApiError::bad_request("`timestamp` must be milliseconds, RFC 3339, earliest or latest")
        })?),
    };
    let mut out = Vec::with_capacity(info.partitions.len());
    for (i, p) in info.partitions.iter().enumerate() {
        let offset = match at {
            At::Earliest => p.start_offset,
            At::Latest => p.next_offset,
            At::Time(ms) => app
                .log
                .offset_for_timestamp(&full, i as u32, ms)
                .await
                .map_err(|e| from_log(e, topic))?,
        };
        out.push(json!({
            "partition": i, "offset": offset,
            "start_offset": p.start_offset, "high_watermark": p.next_offset,
        }));
    }
    Ok(json(
        StatusCode::OK,
        &json!({"topic": topic, "offsets": out}),
    ))
}
