//! CloudEvents 1.0 in, over the HTTP protocol binding: binary mode (`ce-*` headers, the body
//! as `data`, `Content-Type` as `datacontenttype`), structured mode
//! (`application/cloudevents+json`) and batch mode (`application/cloudevents-batch+json`).
//!
//! Each event becomes a record as produce makes it: JSON data becomes the envelope's
//! `payload` (so pipelines and schemas see it as any produced event), other data is stored as
//! it is with its content type. The attributes are kept as the `ce_*` headers the gateway
//! writes for every event (`ce_id`, `ce_type`, `ce_source`, `ce_subject`, and the record's
//! timestamp for `time`); `dataschema` and extension attributes are kept as `ce_<name>`.

use bytes::Bytes;
use serde_json::{Map, Value};
use sluice_log::Record;
use sluice_tenancy::error::ApiError;

use crate::envelope::{self, Event, TopicRules};

pub const STRUCTURED: &str = "application/cloudevents+json";
pub const BATCH: &str = "application/cloudevents-batch+json";

/// How a request carries CloudEvents, if it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Binary,
    Structured,
    Batch,
}

/// The mode of a request from its content type and whether it has a `ce-specversion` header.
pub fn mode(content_type: Option<&str>, has_specversion: bool) -> Option<Mode> {
    let media = content_type
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if media == BATCH {
        Some(Mode::Batch)
    } else if media == STRUCTURED {
        Some(Mode::Structured)
    } else if has_specversion {
        Some(Mode::Binary)
    } else {
        None
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message.into())
}

/// An extension attribute's name: lower-case letters and digits (the specification's rule).
pub(crate) fn valid_extension(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Is data of this content type JSON (so it becomes the envelope's payload)?
fn is_json(content_type: Option<&str>) -> bool {
    match content_type {
        None => true,
        Some(c) => {
            let media = c
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            media == "application/json" || media == "text/json" || media.ends_with("+json")
        }
    }
}

/// One event's attributes, as strings, before its data is placed.
struct Attributes {
    id: String,
    source: String,
    event_type: String,
    subject: Option<String>,
    time: Option<i64>,
    datacontenttype: Option<String>,
    /// `dataschema` and the extensions, as `ce_<name>` headers.
    extra: Vec<(String, String)>,
}

impl Attributes {
    /// From a map of attribute → text; checks the required ones and the spec version.
    fn from_texts(
        mut texts: Vec<(String, String)>,
        max_headers: usize,
    ) -> Result<Attributes, ApiError> {
        let mut take = |name: &str| {
            texts
                .iter()
                .position(|(k, _)| k == name)
                .map(|i| texts.remove(i).1)
        };
        let specversion = take("specversion");
        let id = take("id");
        let source = take("source");
        let event_type = take("type");
        let absent: Vec<&str> = [
            ("specversion", specversion.is_none()),
            ("id", id.is_none()),
            ("source", source.is_none()),
            ("type", event_type.is_none()),
        ]
        .into_iter()
        .filter(|(_, a)| *a)
        .map(|(n, _)| n)
        .collect();
        if !absent.is_empty() {
            return Err(bad(format!(
                "a CloudEvent needs the attributes {}",
                absent.join(", ")
            )));
        }
        let specversion = specversion.expect("checked");
        if specversion != "1.0" {
            return Err(bad(format!(
                "specversion `{specversion}`: this gateway takes CloudEvents 1.0"
            )));
        }
        let (id, source, event_type) = (
            id.expect("checked"),
            source.expect("checked"),
            event_type.expect("checked"),
        );
        for (name, v) in [("id", &id), ("source", &source), ("type", &event_type)] {
            if v.is_empty() {
                return Err(bad(format!("the CloudEvents attribute `{name}` is empty")));
            }
        }
        let subject = take("subject");
        let time = match take("time") {
            None => None,
            Some(t) => Some(
                envelope::parse_time_text(&t)
                    .ok_or_else(|| bad(format!("`time`: `{t}` is not an RFC 3339 timestamp")))?,
            ),
        };
        let datacontenttype = take("datacontenttype");
        let mut extra = Vec::new();
        if let Some(s) = take("dataschema") {
            extra.push(("ce_dataschema".to_owned(), s));
        }
        for (name, value) in texts {
            if !valid_extension(&name) {
                return Err(bad(format!(
                    "`{name}` is not a CloudEvents attribute name (lower-case letters and digits)"
                )));
            }
            extra.push((format!("ce_{name}"), value));
        }
        if extra.len() > max_headers {
            return Err(bad(format!(
                "{} extension attributes; an event may carry {max_headers}",
                extra.len()
            )));
        }
        Ok(Attributes {
            id,
            source,
            event_type,
            subject,
            time,
            datacontenttype,
            extra,
        })
    }
}

/// The record for one event: JSON data as an envelope's payload, other data as it is.
fn record(
    a: Attributes,
    data: Data,
    rules: &TopicRules,
    key_id: &str,
    now_ms: i64,
) -> Result<Event, ApiError> {
    if a.id.len() > rules.limits.max_event_id_bytes {
        return Err(ApiError::invalid(format!(
            "`id` is {} bytes; the limit is {} (limits.max_event_id_bytes)",
            a.id.len(),
            rules.limits.max_event_id_bytes
        )));
    }
    for (k, v) in &a.extra {
        if k.len() + v.len() > rules.limits.max_header_bytes {
            return Err(ApiError::invalid(format!(
                "attribute `{}` is over {} bytes (limits.max_header_bytes)",
                &k[3..],
                rules.limits.max_header_bytes
            )));
        }
    }
    let json_data = is_json(a.datacontenttype.as_deref());
    let mut event = match data {
        Data::Json(value) if json_data => {
            let mut env = Map::new();
            env.insert("event_id".into(), Value::String(a.id.clone()));
            env.insert("event_type".into(), Value::String(a.event_type.clone()));
            env.insert("source".into(), Value::String(a.source.clone()));
            if let Some(s) = &a.subject {
                env.insert("subject".into(), Value::String(s.clone()));
            }
            if let Some(t) = a.time {
                env.insert("timestamp".into(), Value::from(t));
            }
            if let Some(v) = value {
                env.insert("payload".into(), v);
            }
            envelope::parse(&Value::Object(env).to_string(), rules, key_id, now_ms)?
        }
        data => {
            let bytes = match data {
                Data::Json(Some(Value::String(s))) => Bytes::from(s),
                Data::Json(Some(v)) => Bytes::from(v.to_string()),
                Data::Json(None) => Bytes::new(),
                Data::Bytes(b) => b,
            };
            let content_type = a
                .datacontenttype
                .clone()
                .unwrap_or_else(|| "application/octet-stream".into());
            let mut headers = vec![
                ("ce_id".to_owned(), Bytes::from(a.id.clone())),
                ("ce_type".to_owned(), Bytes::from(a.event_type.clone())),
                ("ce_source".to_owned(), Bytes::from(a.source.clone())),
            ];
            if let Some(s) = &a.subject {
                headers.push(("ce_subject".into(), Bytes::from(s.clone())));
            }
            headers.push(("content-type".into(), Bytes::from(content_type)));
            headers.push(("sluice_key_id".into(), Bytes::from(key_id.to_owned())));
            let record = Record {
                key: None,
                value: Some(bytes),
                headers,
                timestamp: if rules.log_append_time {
                    now_ms
                } else {
                    a.time.unwrap_or(now_ms)
                },
            };
            if record.size() > rules.max_message_bytes as usize {
                return Err(ApiError::too_large(format!(
                    "event of {} bytes exceeds the topic's max.message.bytes {}",
                    record.size(),
                    rules.max_message_bytes
                )));
            }
            Event {
                event_id: a.id.clone(),
                id_given: true,
                record,
                partition: None,
                payload: None,
            }
        }
    };
    for (k, v) in a.extra {
        event.record.headers.push((k, Bytes::from(v)));
    }
    Ok(event)
}

enum Data {
    /// Structured mode's `data` (absent: `None`), or a binary-mode body of JSON.
    Json(Option<Value>),
    Bytes(Bytes),
}

/// A structured-mode event (one JSON object).
pub fn structured(
    event: Value,
    rules: &TopicRules,
    key_id: &str,
    now_ms: i64,
) -> Result<Event, ApiError> {
    let Value::Object(mut obj) = event else {
        return Err(bad("a structured CloudEvent is a JSON object"));
    };
    let data = obj.remove("data");
    let data_base64 = obj.remove("data_base64");
    let mut texts = Vec::with_capacity(obj.len());
    for (k, v) in obj {
        let text = match v {
            Value::String(s) => s,
            Value::Null => continue,
            Value::Bool(_) | Value::Number(_) => v.to_string(),
            _ => {
                return Err(bad(format!(
                    "the attribute `{k}` must be a string, number or boolean"
                )));
            }
        };
        texts.push((k, text));
    }
    let a = Attributes::from_texts(texts, rules.limits.max_headers_per_event)?;
    let data = match (data, data_base64) {
        (Some(_), Some(_)) => {
            return Err(bad("a CloudEvent has `data` or `data_base64`, not both"));
        }
        (_, Some(Value::String(b64))) => {
            use base64::Engine as _;
            Data::Bytes(Bytes::from(
                base64::engine::general_purpose::STANDARD
                    .decode(b64.as_bytes())
                    .map_err(|e| bad(format!("`data_base64`: {e}")))?,
            ))
        }
        (_, Some(_)) => return Err(bad("`data_base64` must be a base64 string")),
        (data, None) => Data::Json(data),
    };
    record(a, data, rules, key_id, now_ms)
}

/// A structured-mode request: one event.
pub fn structured_body(
    body: &[u8],
    rules: &TopicRules,
    key_id: &str,
    now_ms: i64,
) -> Result<Event, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_json(format!("malformed CloudEvent: {e}")))?;
    structured(v, rules, key_id, now_ms)
}

/// A batch-mode request: a JSON array of structured events, each answered on its own.
pub fn batch_body(
    body: &[u8],
    max: usize,
    rules: &TopicRules,
    key_id: &str,
    now_ms: i64,
) -> Result<Vec<Result<Event, ApiError>>, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::bad_json(format!("the body is not valid UTF-8: {e}")))?;
    if !text.trim_start().starts_with('[') {
        return Err(bad("a CloudEvents batch is a JSON array"));
    }
    let items = envelope::array_items(text, max)?;
    Ok(items
        .into_iter()
        .map(|raw| {
            let v: Value = serde_json::from_str(raw.get())
                .map_err(|e| ApiError::bad_json(format!("malformed CloudEvent: {e}")))?;
            structured(v, rules, key_id, now_ms)
        })
        .collect())
}

/// Percent-decode a binary-mode header value (RFC 3986, UTF-8).
pub fn percent_decode(v: &[u8]) -> Result<String, String> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%' {
            let hex = v.get(i + 1..i + 3).ok_or("a `%` without two hex digits")?;
            let s = std::str::from_utf8(hex).map_err(|_| "a `%` without two hex digits")?;
            out.push(u8::from_str_radix(s, 16).map_err(|_| "a `%` without two hex digits")?);
            i += 3;
        } else {
            out.push(v[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent-encoded bytes that are not UTF-8".into())
}

/// A binary-mode request: `ce-*` headers (names in any case), the body as data, and its
/// content type as `datacontenttype`.
pub fn binary(
    headers: &[(String, Vec<u8>)],
    content_type: Option<&str>,
    body: Bytes,
    rules: &TopicRules,
    key_id: &str,
    now_ms: i64,
) -> Result<Event, ApiError> {
    let mut texts: Vec<(String, String)> = Vec::new();
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        let Some(attr) = lower.strip_prefix("ce-") else {
            continue;
        };
        if attr == "datacontenttype" || attr == "data" {
            return Err(bad(format!(
                "`ce-{attr}` is not a binary-mode header (the body is the data, its \
                 Content-Type the datacontenttype)"
            )));
        }
        if texts.iter().any(|(k, _)| k == attr) {
            return Err(bad(format!("`ce-{attr}` is given more than once")));
        }
        let text = percent_decode(value).map_err(|e| bad(format!("`ce-{attr}`: {e}")))?;
        texts.push((attr.to_owned(), text));
    }
    if let Some(ct) = content_type {
        texts.push(("datacontenttype".into(), ct.to_owned()));
    }
    let a = Attributes::from_texts(texts, rules.limits.max_headers_per_event)?;
    let data = if is_json(a.datacontenttype.as_deref()) {
        if body.is_empty() {
            Data::Json(None)
        } else {
            Data::Json(Some(serde_json::from_slice(&body).map_err(|e| {
                ApiError::bad_json(format!("the data is declared JSON but is not: {e}"))
            })?))
        }
    } else {
        Data::Bytes(body)
    };
    record(a, data, rules, key_id, now_ms)
}

pub mod out;

#[cfg(test)]
mod tests;
