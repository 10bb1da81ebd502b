//! `POST /v1/topics/{topic}/events`: append one envelope, an array of them, or NDJSON.
//!
//! Events are parsed, partitioned and encoded here, in the request's own task (so this work
//! spreads over cores); the log's single writer only assigns offsets and makes them durable.
//! The answer lists, in request order, each event's position or its own error: one bad event
//! never costs the others.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use http::{Response, StatusCode, header};
use serde_json::{Value, json};
use sluice_log::partitioner::partition_for_key;
use sluice_log::{EncodedRecords, PartitionAppend, Record, TimestampType};

use super::{check_topic_name, log_name};
use crate::auth::{Principal, Role, now_ms};
use crate::envelope::{self, Event, Framing, TopicRules};
use crate::error::{ApiError, from_log};
use crate::metrics::TopicLabels;
use crate::server::{App, Body, Call, json};

pub async fn produce(
    app: &App,
    who: &Principal,
    topic: &str,
    call: Call,
) -> Result<Response<Body>, ApiError> {
    let started = Instant::now();
    check_topic_name(topic)?;
    who.require(Role::Produce, topic)?;
    let full = log_name(&who.tenant, topic);
    // Only what producing needs, read in place: this runs for every request.
    let topic_view = app
        .log
        .inspect_topic(&full, |meta, config| {
            let key_field = meta
                .spec
                .get("keyField")
                .and_then(Value::as_str)
                .map(str::to_owned);
            (meta.partitions, config.clone(), key_field)
        })
        .ok_or_else(|| ApiError::topic_not_found(topic))?;
    let (partitions, config, key_field) = topic_view;
    let framing =
        Framing::from_content_type(call.header(header::CONTENT_TYPE)).ok_or_else(|| {
            ApiError::unsupported_media(
                "send application/json (an event or an array of events) or application/x-ndjson",
            )
        })?;
    let body = call.body(app.max_body_bytes).await?;
    let raw = envelope::split(&body, framing)?;

    let rules = TopicRules {
        key_field: key_field.as_deref(),
        log_append_time: config.timestamp_type == TimestampType::LogAppendTime,
        max_message_bytes: config.max_message_bytes,
    };
    let now = now_ms();
    // Keyless events of one request stick to one partition; the next request takes the next.
    let sticky = sticky_counter(app, &full).fetch_add(1, Ordering::Relaxed) % partitions;

    let mut results: Vec<Option<Result<Value, ApiError>>> = Vec::with_capacity(raw.len());
    let mut by_partition: BTreeMap<u32, Vec<(usize, Event)>> = BTreeMap::new();
    let mut bytes_in = 0u64;
    for (i, item) in raw.into_iter().enumerate() {
        let event = item.and_then(|text| envelope::parse(text, &rules, &who.key_id, now));
        match event {
            Ok(e) => {
                let p = match (e.partition, &e.record.key) {
                    (Some(p), _) if p >= partitions => {
                        results.push(Some(Err(ApiError::new(
                            StatusCode::NOT_FOUND,
                            40402,
                            format!("topic `{topic}` has {partitions} partitions; partition {p} does not exist"),
                        ))));
                        continue;
                    }
                    (Some(p), _) => p,
                    (None, Some(k)) => partition_for_key(k, partitions),
                    (None, None) => sticky,
                };
                bytes_in += e.record.size() as u64;
                results.push(None);
                by_partition.entry(p).or_default().push((i, e));
            }
            Err(err) => results.push(Some(Err(err))),
        }
    }

    let mut slots: Vec<Vec<(usize, String)>> = Vec::with_capacity(by_partition.len());
    let mut parts = Vec::with_capacity(by_partition.len());
    for (partition, events) in by_partition {
        let mut records: Vec<Record> = Vec::with_capacity(events.len());
        let mut ids = Vec::with_capacity(events.len());
        let mut slot = Vec::with_capacity(events.len());
        for (i, e) in events {
            ids.push(e.id_given.then(|| e.event_id.clone()));
            slot.push((i, e.event_id));
            records.push(e.record);
        }
        parts.push(PartitionAppend {
            partition,
            records: EncodedRecords::encode(&records, config.compression),
            event_ids: ids,
        });
        slots.push(slot);
    }

    let labels = TopicLabels {
        tenant: who.tenant.clone(),
        topic: topic.to_owned(),
    };
    let mut appended = 0u64;
    if !parts.is_empty() {
        let stored = app
            .log
            .append(&full, parts)
            .await
            .map_err(|e| from_log(e, topic))?;
        for (slot, positions) in slots.into_iter().zip(stored) {
            for ((i, event_id), a) in slot.into_iter().zip(positions) {
                let mut v =
                    json!({"event_id": event_id, "partition": a.partition, "offset": a.offset});
                if a.duplicate {
                    v["duplicate"] = json!(true);
                } else {
                    appended += 1;
                }
                results[i] = Some(Ok(v));
            }
        }
    }
    let rejected = results.iter().filter(|r| matches!(r, Some(Err(_)))).count();
    app.metrics
        .events_in
        .get_or_create(&labels)
        .inc_by(appended);
    app.metrics.bytes_in.get_or_create(&labels).inc_by(bytes_in);
    app.metrics
        .events_rejected
        .get_or_create(&labels)
        .inc_by(rejected as u64);

    let first_error = results.iter().find_map(|r| match r {
        Some(Err(e)) => Some(e.clone()),
        _ => None,
    });
    let all_failed = rejected == results.len();
    let body: Vec<Value> = results
        .into_iter()
        .map(|r| match r.expect("every event has a result") {
            Ok(v) => v,
            Err(e) => json!({"error_code": e.error_code, "message": e.message}),
        })
        .collect();
    app.metrics
        .produce_latency
        .observe(started.elapsed().as_secs_f64());
    match first_error {
        // Nothing was appended: answer with the (first) reason, and each event's.
        Some(e) if all_failed => Ok(json(
            e.status,
            &json!({"error_code": e.error_code, "message": e.message, "results": body}),
        )),
        _ => Ok(json(StatusCode::OK, &json!({ "results": body }))),
    }
}

fn sticky_counter(app: &App, topic: &str) -> Arc<AtomicU32> {
    app.sticky
        .lock()
        .expect("sticky")
        .entry(topic.to_owned())
        .or_insert_with(|| Arc::new(AtomicU32::new(rand::random())))
        .clone()
}
