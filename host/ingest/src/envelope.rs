//! Turning a produce request body into records.
//!
//! A body is one JSON envelope, a JSON array of envelopes, or NDJSON (one per line). Each
//! envelope is parsed on its own, so one bad event is rejected alone. The stored value is the
//! envelope itself (with `event_id` filled in when missing, and the produce directives `key`,
//! `partition` and `headers` taken out); its metadata also travels in record headers (`ce_*`,
//! as the CloudEvents Kafka binding does), so routing never has to parse the payload.
//!
//! Only the envelope's top level is parsed; `payload` and other nested values are carried as
//! raw JSON text, never re-serialized.

use std::borrow::Cow;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use sluice_log::{Record, StoredRecord};

use sluice_tenancy::error::ApiError;

/// One envelope, parsed.
#[derive(Debug)]
pub struct Event {
    pub event_id: String,
    /// The producer chose the id (so a retry may repeat it); generated ids are never seen twice.
    pub id_given: bool,
    pub record: Record,
    /// An explicit partition asked for by the producer.
    pub partition: Option<u32>,
    /// Where the envelope's one `payload` member is in the stored value (none when there is
    /// none, or several), for validators that check only it.
    pub payload: Option<std::ops::Range<usize>>,
}

/// How the request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Json,
    NdJson,
    /// `application/octet-stream`: the body is one record's value as it is (for example a
    /// Confluent wire-format record: magic byte 0, a 4-byte schema id, the serialized body).
    Binary,
}

impl Framing {
    /// From the `Content-Type` header; `None` means 415.
    pub fn from_content_type(ct: Option<&str>) -> Option<Framing> {
        let Some(ct) = ct else {
            return Some(Framing::Json);
        };
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match mime.as_str() {
            // curl's `-d` sends form encoding; what it carries is still the JSON the user typed.
            "" | "application/json" | "text/json" | "application/x-www-form-urlencoded" => {
                Some(Framing::Json)
            }
            "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/x-jsonlines"
            | "application/jsonlines" => Some(Framing::NdJson),
            "application/octet-stream" => Some(Framing::Binary),
            _ => None,
        }
    }
}

/// Split a body into the raw text of each event. An error here fails the whole request (the
/// body as a whole is not valid JSON); per-event errors come later.
/// More than `max` events is refused as a whole before any is parsed; a JSON array is counted
/// while it is read, so an array of millions of tiny items costs no more than `max` of them.
pub fn split(
    body: &[u8],
    framing: Framing,
    max: usize,
) -> Result<Vec<Result<&str, ApiError>>, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::bad_json(format!("the body is not valid UTF-8: {e}")))?;
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err(ApiError::bad_request("the body holds no events"));
    }
    let lines = || -> Result<Vec<Result<&str, ApiError>>, ApiError> {
        let mut out = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if out.len() == max {
                return Err(too_many_events(max));
            }
            out.push(Ok(line));
        }
        Ok(out)
    };
    let events = match framing {
        Framing::NdJson | Framing::Binary => lines()?,
        Framing::Json if trimmed.starts_with('[') => array_items(text, max)?
            .into_iter()
            .map(|r| Ok(r.get()))
            .collect(),
        Framing::Json => match serde_json::from_str::<&RawValue>(text) {
            Ok(one) => vec![Ok(one.get())],
            // Several lines of JSON sent as application/json: treat them as NDJSON.
            Err(e) if e.is_syntax() && e.to_string().contains("trailing characters") => lines()?,
            Err(e) => return Err(ApiError::bad_json(format!("malformed JSON: {e}"))),
        },
    };
    if events.is_empty() {
        return Err(ApiError::bad_request("the body holds no events"));
    }
    Ok(events)
}

/// Counts, while a body arrives, how many events it holds at least, so a request of more than
/// the limit is refused before the rest of it is kept or parsed (an 8 MiB array of `1,` is four million
/// items; the count passes the limit within its first 20 KB). A lower bound: items of a JSON
/// array are the commas between them at the top level (plus one), NDJSON items the lines that
/// hold something; [`split`] counts exactly once the body is whole.
#[derive(Debug, Default)]
pub struct ItemCount {
    ndjson: bool,
    /// The body is a JSON array (its first byte that is not white space is `[`).
    array: Option<bool>,
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// Top-level array separators (JSON) or finished non-empty lines (NDJSON).
    separators: usize,
    line_has_content: bool,
}

impl ItemCount {
    pub fn new(framing: Framing) -> ItemCount {
        ItemCount {
            ndjson: framing == Framing::NdJson,
            ..ItemCount::default()
        }
    }

    /// Take the next part of the body; the events it certainly holds so far.
    pub fn feed(&mut self, chunk: &[u8]) -> usize {
        for &b in chunk {
            if self.ndjson {
                match b {
                    b'\n' => {
                        if self.line_has_content {
                            self.separators += 1;
                        }
                        self.line_has_content = false;
                    }
                    b' ' | b'\t' | b'\r' => {}
                    _ => self.line_has_content = true,
                }
                continue;
            }
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            if self.array.is_none() && !b.is_ascii_whitespace() {
                self.array = Some(b == b'[');
            }
            match b {
                b'"' => self.in_string = true,
                b'[' | b'{' => self.depth += 1,
                b']' | b'}' => self.depth = self.depth.saturating_sub(1),
                b',' if self.depth == 1 && self.array == Some(true) => self.separators += 1,
                _ => {}
            }
        }
        if self.ndjson {
            self.separators + usize::from(self.line_has_content)
        } else {
            self.separators + usize::from(self.separators > 0)
        }
    }
}

pub fn too_many_events(max: usize) -> ApiError {
    ApiError::new(
        http::StatusCode::PAYLOAD_TOO_LARGE,
        41302,
        format!("more than {max} events in one request (limits.max_events_per_request)"),
    )
}

/// The items of a JSON array, as raw text, refusing more than `max` as soon as the next one
/// starts.
pub fn array_items(text: &str, max: usize) -> Result<Vec<&RawValue>, ApiError> {
    struct Items<'a> {
        max: usize,
        over: &'a std::cell::Cell<bool>,
    }
    impl<'de> Visitor<'de> for Items<'_> {
        type Value = Vec<&'de RawValue>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON array of events")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element::<&'de RawValue>()? {
                if out.len() == self.max {
                    self.over.set(true);
                    return Err(serde::de::Error::custom("too many events"));
                }
                out.push(item);
            }
            Ok(out)
        }
    }
    let over = std::cell::Cell::new(false);
    let mut de = serde_json::Deserializer::from_str(text);
    let items = de
        .deserialize_seq(Items { max, over: &over })
        .and_then(|items| de.end().map(|()| items));
    match items {
        Ok(items) => Ok(items),
        Err(_) if over.get() => Err(too_many_events(max)),
        Err(e) if e.is_data() => Err(ApiError::invalid(format!("expected an array: {e}"))),
        Err(e) => Err(ApiError::bad_json(format!("malformed JSON array: {e}"))),
    }
}

/// The top-level fields of an object, in order, values left as raw JSON.
struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<Cow<'de, str>, &'de RawValue>()? {
                    out.push((k, v));
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl Fields<'_> {
    fn get(&self, name: &str) -> Option<&RawValue> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
    }
}

/// What the topic says about events going into it.
pub struct TopicRules<'a> {
    /// Where the record key comes from when the producer gives none: a top-level field name
    /// (`org_id`) or a JSON pointer (`/payload/customer/id`).
    pub key_field: Option<&'a str>,
    pub log_append_time: bool,
    pub max_message_bytes: u32,
    pub limits: Limits,
}

/// What one produce request and each of its events may carry: checked while the body is
/// read, before any per-event work (`[limits]` in the configuration; docs/CONFIG.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Events in one request (JSON array items, NDJSON lines).
    pub max_events_per_request: usize,
    /// Bytes of a producer's `event_id`.
    pub max_event_id_bytes: usize,
    /// Headers a producer may give one event.
    pub max_headers_per_event: usize,
    /// Bytes of one header, name and value together.
    pub max_header_bytes: usize,
    /// The most one allocation may take while decoding an Avro value (the REST Proxy's Avro
    /// format): a length field claiming more is refused instead of allocated. Process-wide.
    pub avro_max_allocation_bytes: usize,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        max_events_per_request: 10_000,
        max_event_id_bytes: 256,
        max_headers_per_event: 64,
        max_header_bytes: 16 << 10,
        avro_max_allocation_bytes: 16 << 20,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Header names only the gateway writes: CloudEvents attributes it derives (`ce_*`), the
/// content type readers are told, and its own bookkeeping (`sluice_*`, such as the producing
/// key's id). A producer setting one could forge them, or change what validators check.
pub fn is_reserved_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("ce_") || lower.starts_with("sluice_") || lower == "content-type"
}

/// Parse one envelope.
pub fn parse(raw: &str, rules: &TopicRules, key_id: &str, now_ms: i64) -> Result<Event, ApiError> {
    let fields: Fields = serde_json::from_str(raw).map_err(|e| {
        if e.is_data() {
            ApiError::invalid(format!("an event must be a JSON object: {e}"))
        } else {
            ApiError::bad_json(format!("malformed event: {e}"))
        }
    })?;
    let string = |name: &str| -> Result<Option<String>, ApiError> {
        match fields.get(name) {
            None => Ok(None),
            Some(v) => match serde_json::from_str::<Value>(v.get()) {
                Ok(Value::String(s)) => Ok(Some(s)),
                Ok(Value::Null) => Ok(None),
                Ok(_) => Err(ApiError::invalid(format!("`{name}` must be a string"))),
                Err(e) => Err(ApiError::bad_json(format!("`{name}`: {e}"))),
            },
        }
    };

    let given_id = string("event_id")?;
    if given_id.as_deref() == Some("") {
        return Err(ApiError::invalid("`event_id` must not be empty"));
    }
    if let Some(id) = &given_id
        && id.len() > rules.limits.max_event_id_bytes
    {
        return Err(ApiError::invalid(format!(
            "`event_id` is {} bytes; the limit is {} (limits.max_event_id_bytes)",
            id.len(),
            rules.limits.max_event_id_bytes
        )));
    }
    let event_id = given_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let event_type = string("event_type")?;
    let subject = string("subject")?;

    let timestamp = match fields.get("timestamp") {
        None => None,
        Some(v) => Some(parse_time(v).ok_or_else(|| {
            ApiError::invalid(
                "`timestamp` must be an RFC 3339 time or milliseconds since the epoch",
            )
        })?),
    };
    let timestamp = if rules.log_append_time {
        now_ms
    } else {
        timestamp.unwrap_or(now_ms)
    };

    let partition = match fields.get("partition") {
        None => None,
        Some(v) => match serde_json::from_str::<Value>(v.get()) {
            Ok(Value::Null) => None,
            Ok(Value::Number(n)) if n.as_u64().is_some_and(|p| p <= u64::from(u32::MAX)) => {
                Some(n.as_u64().expect("checked") as u32)
            }
            _ => {
                return Err(ApiError::invalid(
                    "`partition` must be a non-negative integer",
                ));
            }
        },
    };

    let key = match fields.get("key") {
        Some(v) => key_bytes(v.get(), "key")?,
        None => match rules.key_field {
            Some(f) if f.starts_with('/') => {
                let (top, rest) = f[1..]
                    .split_once('/')
                    .map_or((&f[1..], ""), |(a, b)| (a, b));
                match fields.get(&unescape_pointer(top)) {
                    None => None,
                    Some(v) => {
                        let value: Value = serde_json::from_str(v.get())
                            .map_err(|e| ApiError::bad_json(format!("`{top}`: {e}")))?;
                        let inner = if rest.is_empty() {
                            Some(&value)
                        } else {
                            value.pointer(&format!("/{rest}"))
                        };
                        inner.and_then(value_key)
                    }
                }
            }
            Some(f) => match fields.get(f) {
                Some(v) => key_bytes(v.get(), f)?,
                None => None,
            },
            None => None,
        },
    };

    // Constant or derivable metadata (`ce_specversion`, `ce_time` = the record timestamp,
    // `content-type`) is not stored per event: readers get it added back (see `read_headers`).
    let mut headers: Vec<(String, Bytes)> = Vec::with_capacity(6);
    headers.push(("ce_id".into(), Bytes::from(event_id.clone())));
    if let Some(t) = &event_type {
        headers.push(("ce_type".into(), Bytes::from(t.clone())));
    }
    if let Some(src) = fields.get("source") {
        let src = match serde_json::from_str::<Value>(src.get()) {
            Ok(Value::String(s)) => s,
            Ok(Value::Object(o)) => o
                .get("service")
                .and_then(Value::as_str)
                .map_or_else(|| src.get().to_owned(), str::to_owned),
            Ok(_) => src.get().to_owned(),
            Err(e) => return Err(ApiError::bad_json(format!("`source`: {e}"))),
        };
        headers.push(("ce_source".into(), Bytes::from(src)));
    }
    if let Some(s) = &subject {
        headers.push(("ce_subject".into(), Bytes::from(s.clone())));
    }
    headers.push(("sluice_key_id".into(), Bytes::from(key_id.to_owned())));
    if let Some(h) = fields.get("headers") {
        let map: serde_json::Map<String, Value> = serde_json::from_str(h.get())
            .map_err(|_| ApiError::invalid("`headers` must be an object of strings"))?;
        let limits = &rules.limits;
        if map.len() > limits.max_headers_per_event {
            return Err(ApiError::invalid(format!(
                "{} headers; an event may carry {} (limits.max_headers_per_event)",
                map.len(),
                limits.max_headers_per_event
            )));
        }
        for (k, v) in map {
            let Value::String(v) = v else {
                return Err(ApiError::invalid(format!("header `{k}` must be a string")));
            };
            if is_reserved_header(&k) {
                return Err(ApiError::invalid(format!(
                    "header `{k}` is reserved: `ce_*`, `sluice_*` and `content-type` are set by \
                     the gateway (use the envelope's fields: event_type, source, subject)"
                )));
            }
            if k.len() + v.len() > limits.max_header_bytes {
                return Err(ApiError::invalid(format!(
                    "header `{}` is {} bytes with its name; the limit is {} \
                     (limits.max_header_bytes)",
                    k.chars().take(64).collect::<String>(),
                    k.len() + v.len(),
                    limits.max_header_bytes
                )));
            }
            headers.push((k, Bytes::from(v)));
        }
    }

    // The stored envelope: the given fields in their order, without the produce directives,
    // with the event id first when it had to be generated.
    let mut value = String::with_capacity(raw.len() + 64);
    value.push('{');
    if given_id.is_none() {
        value.push_str("\"event_id\":");
        value.push_str(&serde_json::to_string(&event_id).expect("string serializes"));
    }
    let mut payload = None;
    let mut payloads = 0;
    for (k, v) in &fields.0 {
        if matches!(k.as_ref(), "key" | "partition" | "headers")
            || (k == "event_id" && given_id.is_none())
        {
            continue;
        }
        if value.len() > 1 {
            value.push(',');
        }
        value.push_str(&serde_json::to_string(k.as_ref()).expect("string serializes"));
        value.push(':');
        if k == "payload" {
            payloads += 1;
            payload = Some(value.len()..value.len() + v.get().len());
        }
        value.push_str(v.get());
    }
    value.push('}');
    let payload = payload.filter(|_| payloads == 1);

    let record = Record {
        key,
        value: Some(Bytes::from(value)),
        headers,
        timestamp,
    };
    if record.size() > rules.max_message_bytes as usize {
        return Err(ApiError::too_large(format!(
            "event of {} bytes exceeds the topic's max.message.bytes {}",
            record.size(),
            rules.max_message_bytes
        )));
    }
    Ok(Event {
        id_given: given_id.is_some(),
        event_id,
        record,
        partition,
        payload,
    })
}

/// One raw record (the `application/octet-stream` framing): the value is the body as it is,
/// the key and partition come from the query string. It gets an event id and the producer's
/// key id like an envelope, and `content-type: application/octet-stream`, so guests and readers
/// know not to look for an envelope in it.
pub fn binary(
    body: Bytes,
    key: Option<&str>,
    partition: Option<u32>,
    rules: &TopicRules,
    key_id: &str,
    now_ms: i64,
) -> Result<Event, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the body holds no record"));
    }
    raw(
        Some(body),
        key.map(|k| Bytes::from(k.to_owned())),
        partition,
        "application/octet-stream",
        rules,
        key_id,
        now_ms,
    )
}

/// One raw record with the given content type (not `application/json`, which marks
/// envelopes): an event id and the producer's key id are added as headers.
pub fn raw(
    value: Option<Bytes>,
    key: Option<Bytes>,
    partition: Option<u32>,
    content_type: &'static str,
    rules: &TopicRules,
    key_id: &str,
    now_ms: i64,
) -> Result<Event, ApiError> {
    let event_id = uuid::Uuid::now_v7().to_string();
    let record = Record {
        key,
        value,
        headers: vec![
            ("ce_id".into(), Bytes::from(event_id.clone())),
            (
                "content-type".into(),
                Bytes::from_static(content_type.as_bytes()),
            ),
            ("sluice_key_id".into(), Bytes::from(key_id.to_owned())),
        ],
        timestamp: now_ms,
    };
    if record.size() > rules.max_message_bytes as usize {
        return Err(ApiError::too_large(format!(
            "record of {} bytes exceeds the topic's max.message.bytes {}",
            record.size(),
            rules.max_message_bytes
        )));
    }
    Ok(Event {
        event_id,
        id_given: false,
        record,
        partition,
        payload: None,
    })
}

/// The headers a reader sees: the stored ones, and for envelopes (they carry `ce_id`) the
/// CloudEvents attributes that were not stored because they are constant or derivable.
pub fn read_headers(record: &Record) -> Vec<(String, Bytes)> {
    let mut out = record.headers.clone();
    if record.header("ce_id").is_some() {
        let time = chrono::DateTime::from_timestamp_millis(record.timestamp)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default();
        out.push(("ce_specversion".into(), Bytes::from_static(b"1.0")));
        out.push(("ce_time".into(), Bytes::from(time)));
        if record.header("content-type").is_none() {
            out.push((
                "content-type".into(),
                Bytes::from_static(b"application/json"),
            ));
        }
    }
    out
}

fn unescape_pointer(s: &str) -> String {
    s.replace("~1", "/").replace("~0", "~")
}

fn value_key(v: &Value) -> Option<Bytes> {
    match v {
        Value::String(s) => Some(Bytes::from(s.clone())),
        Value::Number(n) => Some(Bytes::from(n.to_string())),
        Value::Bool(b) => Some(Bytes::from(b.to_string())),
        _ => None,
    }
}

fn key_bytes(raw: &str, name: &str) -> Result<Option<Bytes>, ApiError> {
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Null) => Ok(None),
        Ok(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => Ok(value_key(&v)),
        Ok(_) => Err(ApiError::invalid(format!(
            "`{name}` must be a string or a number"
        ))),
        Err(e) => Err(ApiError::bad_json(format!("`{name}` is not valid: {e}"))),
    }
}

fn parse_time(v: &RawValue) -> Option<i64> {
    match serde_json::from_str::<Value>(v.get()).ok()? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => parse_time_text(&s),
        _ => None,
    }
}

/// RFC 3339 text, or integer milliseconds since the epoch.
pub fn parse_time_text(s: &str) -> Option<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Some(ms);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// One record as a reader sees it: the envelope as `event` when the value is JSON, otherwise
/// the bytes as base64 `value`. Keys and header values that are not UTF-8 come as base64 too,
/// with `key_encoding` / `headers_encoding` saying so.
#[derive(Serialize)]
pub struct EventView<'a> {
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
    /// A value that is not JSON, base64; `null` for a null value (a tombstone).
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<Option<String>>,
}

impl<'a> From<&'a StoredRecord> for EventView<'a> {
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
        let event = r
            .value
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|t| serde_json::from_str::<&RawValue>(t).ok());
        EventView {
            partition: s.partition,
            offset: s.offset,
            timestamp: r.timestamp,
            key,
            key_encoding,
            headers,
            headers_encoding: binary_headers.then_some("base64"),
            value: event
                .is_none()
                .then(|| r.value.as_ref().map(|v| STANDARD.encode(v))),
            event,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_counted_while_the_body_arrives() {
        let count = |framing, parts: &[&str]| {
            let mut c = ItemCount::new(framing);
            parts.iter().map(|p| c.feed(p.as_bytes())).last().unwrap()
        };
        assert_eq!(count(Framing::Json, &["[1,", "2,3", "]"]), 3);
        assert_eq!(
            count(
                Framing::Json,
                &["[{\"a\": [1, 2], \"s\": \"x,\\\",y\"}", ", 2]"]
            ),
            2
        );
        assert_eq!(
            count(Framing::Json, &["{\"a\": 1, \"b\": 2}"]),
            0,
            "one object: no separators"
        );
        assert_eq!(count(Framing::NdJson, &["{}\n", "\n  \n{}", "\n{}"]), 3);
        // Never more than `split` finds.
        let body = "[1, [2, 3], {\"x\": \"a,b\"}, \"]\"]";
        let exact = split(body.as_bytes(), Framing::Json, 100).unwrap().len();
        assert_eq!(count(Framing::Json, &[body]), exact);
    }

    const RULES: TopicRules = TopicRules {
        key_field: Some("org_id"),
        log_append_time: false,
        max_message_bytes: 1 << 20,
        limits: Limits::DEFAULT,
    };

    #[test]
    fn the_payload_span_points_into_the_stored_value() {
        let e = parse(
            r#"{"event_type":"t", "payload" : {"a": [1, "}"]}, "note":"x"}"#,
            &RULES,
            "kid",
            1,
        )
        .unwrap();
        let span = e.payload.clone().expect("one payload");
        assert_eq!(&e.record.value_bytes()[span], br#"{"a": [1, "}"]}"#);
        let twice = parse(r#"{"payload":{},"payload":{"b":1}}"#, &RULES, "kid", 1).unwrap();
        assert_eq!(
            twice.payload, None,
            "which one counts is left to the validator"
        );
        let none = parse(r#"{"event_type":"t"}"#, &RULES, "kid", 1).unwrap();
        assert_eq!(none.payload, None);
    }

    #[test]
    fn envelope_becomes_a_record() {
        let e = parse(
            r#"{"event_type":"bronze.data.cleaned","timestamp":"2024-12-26T10:00:00Z","source":{"service":"conn","instance":"i1"},"org_id":456,"payload":{"a":[1,2,{"b":null}]},"headers":{"x":"y"}}"#,
            &RULES,
            "kid",
            1,
        )
        .unwrap();
        assert_eq!(e.record.key.as_deref(), Some(&b"456"[..]));
        assert_eq!(e.record.timestamp, 1_735_207_200_000);
        assert_eq!(e.record.header("ce_type").unwrap(), "bronze.data.cleaned");
        assert_eq!(e.record.header("ce_source").unwrap(), "conn");
        assert_eq!(e.record.header("x").unwrap(), "y");
        assert_eq!(e.record.header("sluice_key_id").unwrap(), "kid");
        assert!(
            e.record.header("ce_time").is_none(),
            "derivable metadata is not stored"
        );
        let shown = read_headers(&e.record);
        let time = shown.iter().find(|(k, _)| k == "ce_time").unwrap();
        assert_eq!(time.1, "2024-12-26T10:00:00.000Z");
        let v: Value = serde_json::from_slice(e.record.value_bytes()).unwrap();
        assert_eq!(v["event_id"], e.event_id.as_str());
        assert_eq!(v["payload"]["a"][2]["b"], Value::Null);
        assert!(v.get("headers").is_none());
        // the payload is carried as written
        assert!(
            std::str::from_utf8(e.record.value_bytes())
                .unwrap()
                .contains(r#""payload":{"a":[1,2,{"b":null}]}"#)
        );
    }

    #[test]
    fn explicit_key_and_pointer_key() {
        let e = parse(r#"{"event_id":"e1","key":"k1","org_id":1}"#, &RULES, "k", 0).unwrap();
        assert_eq!(e.record.key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(e.event_id, "e1");
        let rules = TopicRules {
            key_field: Some("/payload/customer/id"),
            ..RULES
        };
        let e = parse(r#"{"payload":{"customer":{"id":"c9"}}}"#, &rules, "k", 0).unwrap();
        assert_eq!(e.record.key.as_deref(), Some(&b"c9"[..]));
    }

    #[test]
    fn bad_events_are_rejected_with_reasons() {
        for (raw, code) in [
            ("[1]", 42201),
            ("{\"event_id\": 5}", 42201),
            ("{\"timestamp\": \"yesterday\"}", 42201),
            ("{\"partition\": -1}", 42201),
            ("{\"key\": \"\\ud800\"}", 40001),
            ("{\"key\": {\"a\":1}}", 42201),
            ("{\"event_id\": \"\"}", 42201),
        ] {
            let err = parse(raw, &RULES, "k", 0).unwrap_err();
            assert_eq!(err.error_code, code, "{raw}: {err:?}");
        }
        let small = TopicRules {
            max_message_bytes: 1024,
            ..RULES
        };
        let big = format!("{{\"payload\":\"{}\"}}", "x".repeat(2000));
        assert_eq!(parse(&big, &small, "k", 0).unwrap_err().error_code, 41301);
    }

    #[test]
    fn too_many_events_are_refused_while_counting() {
        let many = format!("[{}1]", "1,".repeat(50));
        assert_eq!(split(many.as_bytes(), Framing::Json, 51).unwrap().len(), 51);
        let err = split(many.as_bytes(), Framing::Json, 50).unwrap_err();
        assert_eq!((err.status.as_u16(), err.error_code), (413, 41302));
        // Counting stops at the first item over: the rest is not even parsed.
        let broken_after = format!("[{}1, this is not JSON", "1,".repeat(10));
        assert_eq!(
            split(broken_after.as_bytes(), Framing::Json, 5)
                .unwrap_err()
                .error_code,
            41302
        );
        let lines = "{}\n".repeat(11);
        assert_eq!(
            split(lines.as_bytes(), Framing::NdJson, 10)
                .unwrap_err()
                .error_code,
            41302
        );
        assert_eq!(
            split(lines.as_bytes(), Framing::NdJson, 11).unwrap().len(),
            11
        );
    }

    #[test]
    fn ids_and_headers_are_bounded_and_reserved_names_refused() {
        let rules = TopicRules {
            limits: Limits {
                max_event_id_bytes: 8,
                max_headers_per_event: 2,
                max_header_bytes: 16,
                ..Limits::DEFAULT
            },
            ..RULES
        };
        assert!(parse(r#"{"event_id":"12345678"}"#, &rules, "k", 0).is_ok());
        let long_id = parse(r#"{"event_id":"123456789"}"#, &rules, "k", 0).unwrap_err();
        assert_eq!(long_id.error_code, 42201);
        assert!(
            long_id.message.contains("max_event_id_bytes"),
            "{}",
            long_id.message
        );
        let three = r#"{"headers":{"a":"1","b":"2","c":"3"}}"#;
        assert_eq!(parse(three, &rules, "k", 0).unwrap_err().error_code, 42201);
        let big = r#"{"headers":{"name":"0123456789abc"}}"#;
        assert!(
            parse(big, &rules, "k", 0)
                .unwrap_err()
                .message
                .contains("max_header_bytes")
        );
        for name in [
            "ce_type",
            "CE_source",
            "sluice_key_id",
            "Content-Type",
            "sluice_dlq_reason",
        ] {
            let forged = format!(r#"{{"headers":{{"{name}":"x"}}}}"#);
            let err = parse(&forged, &RULES, "k", 0).unwrap_err();
            assert!(err.message.contains("reserved"), "{name}: {}", err.message);
        }
        let ok = parse(r#"{"headers":{"traceparent":"00-ab"}}"#, &RULES, "k", 0).unwrap();
        assert_eq!(
            ok.record.header("traceparent").map(|v| &v[..]),
            Some(&b"00-ab"[..])
        );
    }

    #[test]
    fn framing() {
        let body = b"{\"a\":1}\n\n{\"b\":2}\n";
        assert_eq!(split(body, Framing::NdJson, 100).unwrap().len(), 2);
        assert_eq!(split(body, Framing::Json, 100).unwrap().len(), 2);
        assert_eq!(
            split(b"[{\"a\":1},{\"b\":2},3]", Framing::Json, 100)
                .unwrap()
                .len(),
            3
        );
        assert_eq!(split(b"{\"a\":1}", Framing::Json, 100).unwrap().len(), 1);
        assert!(split(b"[{\"a\":1}", Framing::Json, 100).is_err());
        assert!(split(b"{\"a\":", Framing::Json, 100).is_err());
        assert!(split(b"  ", Framing::Json, 100).is_err());
        assert!(split(&[0xff, 0xfe], Framing::Json, 100).is_err());
        assert!(Framing::from_content_type(Some("text/plain")).is_none());
        assert_eq!(
            Framing::from_content_type(Some("application/x-ndjson")),
            Some(Framing::NdJson)
        );
    }
}
