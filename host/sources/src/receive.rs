//! A request to a source: verified by its component, its events appended through `Ingest`.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use sluice_ingest::envelope;
use sluice_runtime::{Accepted, CallError, Header, HttpRequest, Refusal};
use sluice_tenancy::auth::{Principal, Role, Scope};
use sluice_tenancy::error::ApiError;

use crate::{Sources, not_found};

/// The largest request body a source takes (webhooks are small; larger is 413).
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Requests to the built-in `webhook-gateway` up to this size are verified on the request's
/// own task (its HMAC over them is microseconds); larger ones, and tenants' own components,
/// run on a blocking thread.
const INLINE_BODY_BYTES: usize = 64 << 10;

/// Headers one request may carry to the component, and their total size.
pub const MAX_HEADERS: usize = 100;
pub const MAX_HEADER_BYTES: usize = 64 << 10;

/// A request as the server received it.
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Bytes,
}

/// The envelope a component's event becomes (the produce API's shape).
#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<&'a str>,
    event_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    source: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    headers: BTreeMap<String, String>,
    payload: &'a RawValue,
}

/// The principal a source appends as: produce on its own topic only, under a key id of its
/// own (so its event ids, the senders' delivery ids, dedup only against its own).
fn principal(tenant: &str, name: &str, topic: &str) -> Principal {
    Principal {
        key_id: format!("source:{name}"),
        tenant: tenant.to_owned(),
        scopes: vec![Scope {
            role: Role::Produce,
            topics: topic.to_owned(),
        }],
        system: false,
    }
}

/// A component's refusal as the API's error: its status (4xx), and the component's code and
/// message.
fn refused(r: Refusal) -> ApiError {
    let status = StatusCode::from_u16(r.status)
        .ok()
        .filter(StatusCode::is_client_error)
        .unwrap_or(StatusCode::BAD_REQUEST);
    let code = match status.as_u16() {
        400 => 40003,
        401 => 40102,
        s => u32::from(s) * 100 + 20,
    };
    ApiError::new(status, code, format!("{}: {}", r.code, r.message))
}

/// The component itself failed: as a pipeline stage's failure is answered.
fn failed(name: &str, e: CallError) -> ApiError {
    match e {
        CallError::Busy(_) => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            42904,
            format!("source `{name}`: {e}; retry shortly"),
        )
        .retry_after(1),
        CallError::Suspended(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            50303,
            format!("source `{name}`'s component is suspended after repeated failures: {e}"),
        )
        .retry_after(1),
        e => ApiError::new(
            StatusCode::BAD_GATEWAY,
            50201,
            format!("source `{name}`'s component failed ({}): {e}", e.kind()),
        ),
    }
}

impl Sources {
    /// A request to `tenant`'s source `name`. `key`: the API key it came with, if any
    /// (`/v1/sources/{name}/hooks`), which must then be allowed to produce to the source's
    /// topic; the public `/hooks/{tenant}/{name}` has none (the signature is the credential).
    /// Answers the produce API's `{"results": [...]}` (a replay is `"duplicate": true`).
    pub async fn receive(
        &self,
        tenant: &str,
        name: &str,
        request: Request,
        key: Option<&Principal>,
    ) -> Result<(StatusCode, Value), ApiError> {
        let live = self.running(tenant, name).ok_or_else(|| not_found(name))?;
        let topic = live.def.topic.clone();
        if let Some(p) = key {
            p.require(Role::Produce, &topic)?;
        }
        if request.headers.len() > MAX_HEADERS
            || request
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len())
                .sum::<usize>()
                > MAX_HEADER_BYTES
        {
            return Err(ApiError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                43101,
                format!("at most {MAX_HEADERS} headers of {MAX_HEADER_BYTES} bytes in all"),
            ));
        }
        let who = principal(tenant, name, &topic);
        // What CloudEvents need of the request, if the source reads them (kept before the
        // request goes to the component).
        let reads_cloudevents =
            live.def.config.get("format").and_then(Value::as_str) == Some("cloudevents");
        let cloud = reads_cloudevents.then(|| CloudRequest {
            content_type: request
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
                .map(str::to_owned),
            ce_headers: request
                .headers
                .iter()
                .filter(|(n, _)| n.to_ascii_lowercase().starts_with("ce-"))
                .cloned()
                .collect(),
            body: request.body.clone(),
        });
        // Quotas and the disk reserve before the component runs.
        let prepared = self.ingest.prepare(&who, &topic)?;
        let now = sluice_tenancy::now_ms();
        let http_request = HttpRequest {
            method: request.method,
            path: request.path,
            query: request.query,
            headers: request
                .headers
                .into_iter()
                .map(|(name, value)| Header { name, value })
                .collect(),
            body: request.body.to_vec(),
            received: now,
        };
        // The built-in gateway's verification of a small request takes microseconds: it runs
        // here. Anything else (a tenant's own component, a large body) runs on a blocking
        // thread, so a slow guest never holds an async worker.
        let inline =
            live.def.component == "webhook-gateway" && http_request.body.len() <= INLINE_BODY_BYTES;
        let answer = if inline {
            live.stage.ingress(&http_request)
        } else {
            let stage = live.stage.clone();
            tokio::task::spawn_blocking(move || stage.ingress(&http_request))
                .await
                .map_err(|e| ApiError::internal(format!("source: {e}")))?
        }
        .map_err(|e| failed(name, e))?;
        let accepted = answer.map_err(refused)?;
        let max = self.ingest.limits().max_events_per_request;
        if accepted.len() > max {
            return Err(envelope::too_many_events(max));
        }
        let rules = prepared.rules();
        let items = if let Some(cloud) = &cloud {
            // Verified by the component; the body is CloudEvents, read as produce reads them.
            cloudevents_items(cloud, max, &rules, &who.key_id, now)?
        } else {
            accepted
                .iter()
                .map(|a| {
                    let text = envelope_text(a, name)?;
                    envelope::parse(&text, &rules, &who.key_id, now)
                })
                .collect()
        };
        let outcome = self.ingest.append(&who, &prepared, items, now).await?;
        let first_error = outcome
            .results
            .iter()
            .find_map(|r| r.as_ref().err().cloned());
        let all_failed = outcome.results.iter().all(Result::is_err);
        let results: Vec<Value> = outcome
            .results
            .into_iter()
            .map(|r| match r {
                Ok(v) => v,
                Err(e) => serde_json::json!({"error_code": e.error_code, "message": e.message}),
            })
            .collect();
        match first_error {
            Some(e) if all_failed => Err(e),
            _ => Ok((StatusCode::OK, serde_json::json!({ "results": results }))),
        }
    }
}

/// A request's CloudEvents parts: its content type, `ce-*` headers and body.
struct CloudRequest {
    content_type: Option<String>,
    ce_headers: Vec<(String, Vec<u8>)>,
    body: Bytes,
}

/// The CloudEvents a verified request carries, in whichever mode it uses.
fn cloudevents_items(
    r: &CloudRequest,
    max: usize,
    rules: &envelope::TopicRules,
    key_id: &str,
    now: i64,
) -> Result<Vec<Result<envelope::Event, ApiError>>, ApiError> {
    use sluice_ingest::cloudevents::{self, Mode};
    match cloudevents::mode(r.content_type.as_deref(), !r.ce_headers.is_empty()) {
        Some(Mode::Batch) => cloudevents::batch_body(&r.body, max, rules, key_id, now),
        Some(Mode::Structured) => Ok(vec![cloudevents::structured_body(
            &r.body, rules, key_id, now,
        )]),
        Some(Mode::Binary) => Ok(vec![cloudevents::binary(
            &r.ce_headers,
            r.content_type.as_deref(),
            r.body.clone(),
            rules,
            key_id,
            now,
        )]),
        None => Err(ApiError::bad_request(
            "this source takes CloudEvents: binary mode (ce-* headers), \
             application/cloudevents+json or application/cloudevents-batch+json",
        )),
    }
}

/// The produce envelope for one accepted event.
fn envelope_text(a: &Accepted, source: &str) -> Result<String, ApiError> {
    let payload: &RawValue = serde_json::from_str(&a.payload).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            50201,
            format!("the source's component answered a payload that is not JSON: {e}"),
        )
    })?;
    let headers = a
        .headers
        .iter()
        .map(|h| {
            (
                h.name.clone(),
                String::from_utf8_lossy(&h.value).into_owned(),
            )
        })
        .collect();
    let e = Envelope {
        event_id: a.id.as_deref(),
        event_type: &a.type_,
        key: a
            .key
            .as_ref()
            .map(|k| String::from_utf8_lossy(k).into_owned()),
        source: format!("/sources/{source}"),
        headers,
        payload,
    };
    Ok(serde_json::to_string(&e).expect("an envelope serializes"))
}
