//! `POST /v1/topics/{topic}/events`: append one envelope, an array of them, or NDJSON; or
//! CloudEvents in any of the HTTP binding's modes (binary, structured, batch).
//!
//! The body is parsed here, in the request's own task; [`sluice_ingest::Ingest::append`] runs
//! the topic's pipeline and appends. The answer lists, in request order, each event's position
//! or its own error: one bad event never costs the others.

use std::time::Instant;

use http::{Response, StatusCode, header};
use serde_json::{Value, json};
use sluice_ingest::Outcome;
use sluice_ingest::cloudevents::{self, Mode};
use sluice_ingest::envelope::{self, Event, Framing};
use sluice_tenancy::auth::Principal;
use sluice_tenancy::error::ApiError;
use sluice_tenancy::now_ms;

use crate::app::App;
use crate::call::{Body, Call, json, set_retry_after};
use crate::metrics::TopicLabels;

pub async fn produce(
    app: &App,
    who: &Principal,
    topic: &str,
    call: Call,
) -> Result<Response<Body>, ApiError> {
    let started = Instant::now();
    let prepared = app.ingest.prepare(who, topic)?;
    let content_type = call.header(header::CONTENT_TYPE).map(str::to_owned);
    let cloud = cloudevents::mode(
        content_type.as_deref(),
        call.headers.contains_key("ce-specversion"),
    );
    if let Some(mode) = cloud {
        return produce_cloudevents(
            app,
            who,
            topic,
            &prepared,
            mode,
            content_type,
            call,
            started,
        )
        .await;
    }
    let framing = Framing::from_content_type(content_type.as_deref()).ok_or_else(|| {
        ApiError::unsupported_media(
            "send application/json (an event or an array of events), application/x-ndjson, \
             application/octet-stream (one record's raw value), or CloudEvents (binary mode, \
             application/cloudevents+json, application/cloudevents-batch+json)",
        )
    })?;
    let binary_key = call.query("key").map(str::to_owned);
    let binary_partition = match call.query("partition") {
        None => None,
        Some(p) => Some(p.parse::<u32>().map_err(|_| {
            ApiError::invalid(format!("`partition` must be a partition number, not `{p}`"))
        })?),
    };
    let body = match framing {
        Framing::Binary => call.body(app.max_body_bytes).await?,
        _ => {
            call.events_body(
                app.max_body_bytes,
                framing,
                app.ingest.limits().max_events_per_request,
                |read| charge_refused(app, who, read),
            )
            .await?
        }
    };

    let rules = prepared.rules();
    let now = now_ms();

    let items: Vec<Result<Event, ApiError>> = match framing {
        Framing::Binary => vec![envelope::binary(
            body,
            binary_key.as_deref(),
            binary_partition,
            &rules,
            &who.key_id,
            now,
        )],
        _ => envelope::split(&body, framing, app.ingest.limits().max_events_per_request)?
            .into_iter()
            .map(|item| item.and_then(|text| envelope::parse(text, &rules, &who.key_id, now)))
            .collect(),
    };
    answer(app, who, topic, &prepared, items, now, started).await
}

/// CloudEvents over HTTP: one event (binary or structured mode) or a batch.
#[allow(clippy::too_many_arguments)]
async fn produce_cloudevents(
    app: &App,
    who: &Principal,
    topic: &str,
    prepared: &sluice_ingest::Prepared,
    mode: Mode,
    content_type: Option<String>,
    call: Call,
    started: Instant,
) -> Result<Response<Body>, ApiError> {
    let max = app.ingest.limits().max_events_per_request;
    let headers: Vec<(String, Vec<u8>)> = call
        .headers
        .iter()
        .filter(|(n, _)| n.as_str().starts_with("ce-"))
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    let body = match mode {
        Mode::Batch => {
            call.events_body(app.max_body_bytes, Framing::Json, max, |read| {
                charge_refused(app, who, read)
            })
            .await?
        }
        _ => call.body(app.max_body_bytes).await?,
    };
    let rules = prepared.rules();
    let now = now_ms();
    let items = match mode {
        Mode::Batch => cloudevents::batch_body(&body, max, &rules, &who.key_id, now)?,
        Mode::Structured => vec![cloudevents::structured_body(
            &body,
            &rules,
            &who.key_id,
            now,
        )],
        Mode::Binary => vec![cloudevents::binary(
            &headers,
            content_type.as_deref(),
            body,
            &rules,
            &who.key_id,
            now,
        )],
    };
    answer(app, who, topic, prepared, items, now, started).await
}

/// A body refused for its event count still made the server read it: its bytes count against
/// the tenant's produce bytes quota (so re-sending it is throttled like any other load). The
/// charge's own answer does not matter: the request is refused either way.
fn charge_refused(app: &App, who: &Principal, read: u64) {
    let _ = app.quotas.charge_produce(&who.tenant, 0, read);
}

/// Append what parsed and answer for every item in order.
async fn answer(
    app: &App,
    who: &Principal,
    topic: &str,
    prepared: &sluice_ingest::Prepared,
    items: Vec<Result<Event, ApiError>>,
    now: i64,
    started: Instant,
) -> Result<Response<Body>, ApiError> {
    let Outcome {
        results,
        deprecated,
    } = app.ingest.append(who, prepared, items, now).await?;
    let rejected = results.iter().filter(|r| r.is_err()).count();
    let labels = TopicLabels {
        tenant: who.tenant.clone(),
        topic: topic.to_owned(),
    };
    app.metrics
        .events_rejected
        .get_or_create(&labels)
        .inc_by(rejected as u64);

    let first_error = results.iter().find_map(|r| r.as_ref().err().cloned());
    let all_failed = rejected == results.len();
    let body: Vec<Value> = results
        .into_iter()
        .map(|r| match r {
            Ok(v) => v,
            Err(e) => json!({"error_code": e.error_code, "message": e.message}),
        })
        .collect();
    app.metrics
        .produce_latency
        .observe(started.elapsed().as_secs_f64());
    match first_error {
        // Nothing was appended: answer with the (first) reason, and each event's.
        Some(e) if all_failed => {
            let mut response = json(
                e.status,
                &json!({"error_code": e.error_code, "message": e.message, "results": body}),
            );
            // A condition that passes (a busy component, a full disk): when to come back.
            set_retry_after(&mut response, &e);
            Ok(response)
        }
        _ => {
            let mut response = json(StatusCode::OK, &json!({ "results": body }));
            if !deprecated.is_empty() {
                let warning = format!(
                    "299 sluice \"deprecated event type(s) in the event catalog: {}\"",
                    deprecated.join(", ")
                );
                if let Ok(v) = http::HeaderValue::from_str(&warning) {
                    response.headers_mut().insert(header::WARNING, v);
                }
            }
            Ok(response)
        }
    }
}
