//! Stored records as CloudEvents 1.0: structured mode (one JSON object, for fetch, SSE and
//! `cloudevents-structured` webhooks) and binary mode (`ce-*` headers and the data as the body,
//! for `cloudevents-binary` webhooks).
//!
//! `id`, `type`, `source`, `subject` come from the record's `ce_*` headers (every produced
//! event has them; a record without is named after its place: `<topic>-<partition>-<offset>`,
//! type `sluice.record`, source `/topics/<topic>`); `time` is the record's timestamp; the
//! other `ce_*` headers are extension attributes. An envelope's `payload` is the data
//! (`application/json`); a raw record's value is the data with its content type (as
//! `data_base64` in structured mode). Sluice adds `sluicetopic`, `sluicepartition`,
//! `sluiceoffset`, and `partitionkey` (the record key) as extensions.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde_json::{Map, Value};
use sluice_log::StoredRecord;

use super::valid_extension;

/// The parts every encoding needs.
struct Parts {
    attributes: Vec<(String, Value)>,
    data: Data,
}

enum Data {
    Json(Value),
    Bytes { bytes: Bytes, content_type: String },
    None,
}

fn parts(s: &StoredRecord, topic: &str, data: Option<Value>) -> Parts {
    let r = &s.record;
    let header = |name: &str| {
        r.header(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_owned)
    };
    let content_type = header("content-type");
    let envelope: Option<Value> = match content_type.as_deref() {
        None | Some("application/json") => r
            .value
            .as_deref()
            .and_then(|v| serde_json::from_slice(v).ok()),
        _ => None,
    };
    let event_type = header("ce_type")
        .or_else(|| {
            envelope
                .as_ref()
                .and_then(|e| e.get("event_type"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "sluice.record".into());
    let time = chrono::DateTime::from_timestamp_millis(r.timestamp)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default();
    let mut attributes: Vec<(String, Value)> = vec![
        ("specversion".into(), "1.0".into()),
        (
            "id".into(),
            header("ce_id")
                .unwrap_or_else(|| format!("{topic}-{}-{}", s.partition, s.offset))
                .into(),
        ),
        (
            "source".into(),
            header("ce_source")
                .unwrap_or_else(|| format!("/topics/{topic}"))
                .into(),
        ),
        ("type".into(), event_type.into()),
        ("time".into(), time.into()),
    ];
    if let Some(subject) = header("ce_subject") {
        attributes.push(("subject".into(), subject.into()));
    }
    for (k, v) in &r.headers {
        let Some(name) = k.strip_prefix("ce_") else {
            continue;
        };
        if matches!(
            name,
            "id" | "type" | "source" | "subject" | "specversion" | "time"
        ) || !valid_extension(name)
        {
            continue;
        }
        if let Ok(v) = std::str::from_utf8(v) {
            attributes.push((name.to_owned(), v.into()));
        }
    }
    attributes.push(("sluicetopic".into(), topic.into()));
    attributes.push(("sluicepartition".into(), s.partition.into()));
    attributes.push(("sluiceoffset".into(), s.offset.into()));
    if let Some(k) = r.key.as_ref().and_then(|k| std::str::from_utf8(k).ok()) {
        attributes.push(("partitionkey".into(), k.into()));
    }
    let data = match (data, envelope) {
        (Some(v), _) => Data::Json(v),
        (None, Some(Value::Object(mut env)))
            if env.contains_key("event_type")
                || env.contains_key("payload")
                || header("ce_id").is_some() =>
        {
            env.remove("payload").map_or(Data::None, Data::Json)
        }
        (None, Some(v)) => Data::Json(v),
        // A null value (a tombstone) is an event without data.
        (None, None) => match &r.value {
            None => Data::None,
            Some(bytes) => Data::Bytes {
                bytes: bytes.clone(),
                content_type: content_type.unwrap_or_else(|| "application/octet-stream".into()),
            },
        },
    };
    Parts { attributes, data }
}

/// The record as a structured-mode CloudEvent; `data` replaces its data (a mapping's value).
pub fn structured(s: &StoredRecord, topic: &str, data: Option<Value>) -> Value {
    let p = parts(s, topic, data);
    let mut out: Map<String, Value> = p.attributes.into_iter().collect();
    match p.data {
        Data::Json(v) => {
            out.insert("datacontenttype".into(), "application/json".into());
            out.insert("data".into(), v);
        }
        Data::Bytes {
            bytes,
            content_type,
        } => {
            out.insert("datacontenttype".into(), content_type.into());
            out.insert("data_base64".into(), STANDARD.encode(&bytes).into());
        }
        Data::None => {}
    }
    Value::Object(out)
}

/// Percent-encode a header value as the HTTP binding asks: printable ASCII but `"` and `%`
/// as is, everything else (space, non-ASCII as UTF-8) as `%XX`.
pub fn percent_encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if (0x21..=0x7e).contains(&b) && b != b'"' && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The record in binary mode: `ce-*` headers, the body, its content type.
pub fn binary(
    s: &StoredRecord,
    topic: &str,
    data: Option<Value>,
) -> (Vec<(String, String)>, Bytes, String) {
    let p = parts(s, topic, data);
    let headers = p
        .attributes
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (format!("ce-{k}"), percent_encode(&text))
        })
        .collect();
    match p.data {
        Data::Json(v) => (
            headers,
            Bytes::from(serde_json::to_vec(&v).expect("JSON")),
            "application/json".into(),
        ),
        Data::Bytes {
            bytes,
            content_type,
        } => (headers, bytes, content_type),
        Data::None => (headers, Bytes::new(), "application/json".into()),
    }
}
