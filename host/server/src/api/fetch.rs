//! Reading: `GET /v1/topics/{topic}/partitions/{p}/events` (with long-poll at the tail) and
//! `GET /v1/topics/{topic}/offsets`.

use std::time::Duration;

use http::{Response, StatusCode};
use serde_json::{Value, json};
use sluice_tenancy::{check_topic_name, log_name};

use crate::app::App;
use crate::call::{Body, Call, json, raw_json};
use crate::metrics::TopicLabels;
use sluice_ingest::envelope::{EventView, parse_time_text};
use sluice_tenancy::auth::{Principal, Role};
use sluice_tenancy::error::{ApiError, from_log};

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
    app.quotas.admit_fetch(&who.tenant)?;
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
        // A long poll ends early when the server stops: shutdown never waits for one.
        let mut closing = app.closing.subscribe();
        tokio::select! {
            waited = app.log.wait_for(&full, partition, offset, Duration::from_millis(wait_ms)) => {
                waited.map_err(|e| from_log(e, topic))?;
            }
            _ = closing.wait_for(|c| *c) => {}
        }
    }
    let mut read = app
        .log
        .read(&full, partition, offset, max_events, max_bytes)
        .await
        .map_err(|e| from_log(e, topic))?;
    app.redaction
        .apply(Some(who), &who.tenant, topic, &mut read.records)
        .await?;
    let bytes: usize = read
        .records
        .iter()
        .map(|r| r.record.value_bytes().len())
        .sum();
    app.quotas.charge_fetch(&who.tenant, bytes as u64);
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

    let events: Value = match call.query("format") {
        None | Some("sluice") => {
            json!(read.records.iter().map(EventView::from).collect::<Vec<_>>())
        }
        Some("cloudevents") => json!(
            read.records
                .iter()
                .map(|r| sluice_ingest::cloudevents::out::structured(r, topic, None))
                .collect::<Vec<_>>()
        ),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`format`: `{other}`; use sluice (the default) or cloudevents"
            )));
        }
    };
    let body = serde_json::to_vec(&json!({
        "events": events,
        "next_offset": read.next_offset,
        "start_offset": read.start_offset,
        "high_watermark": read.high_watermark,
    }))
    .expect("response serializes");
    Ok(raw_json(StatusCode::OK, body))
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
