//! Confluent REST Proxy v2: `/topics` (metadata, produce) and `/consumers` (consumer
//! instances of consumer groups), with Confluent's content types, JSON shapes and error codes
//! (40403 consumer instance not found, 40601 format mismatch, 40902 instance exists, 40903
//! illegal state, 42204 invalid consumer configuration, ...).
//!
//! Records produced here go through the topic's pipeline like any other (validation against
//! the topic's schema included); the embedded formats are `binary` (base64), `json`,
//! `jsonschema` and `avro` (the value's schema is registered under `<topic>-value` and the
//! value is written in the schema registry's wire format; Avro values are exchanged in Avro's
//! JSON encoding).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_registry::SchemaType;

use crate::app::App;
use crate::call::{Body, Call};
use sluice_groups::consumers::{Format, InstanceSettings, ReadLimits, Seek};
use sluice_groups::{OffsetReset, TopicPartition};
use sluice_ingest::Outcome;
use sluice_ingest::envelope;
use sluice_registry::avro_json::AvroSchema;
use sluice_tenancy::auth::{Principal, Role};
use sluice_tenancy::error::ApiError;
use sluice_tenancy::log_name;
use sluice_tenancy::now_ms;

/// Confluent's response content type.
pub const V2_JSON: &str = "application/vnd.kafka.v2+json";

fn v2(status: StatusCode, value: &Value) -> Response<Body> {
    let mut r = crate::call::json(status, value);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(V2_JSON),
    );
    r
}

fn no_content() -> Response<Body> {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(crate::call::empty())
        .expect("response builds")
}

/// The embedded format named by a `application/vnd.kafka.<format>.v2+json` media type;
/// `Ok(None)` for the format-less `application/vnd.kafka.v2+json`, `application/json` or
/// anything generic.
fn format_of(media: Option<&str>) -> Result<Option<Format>, String> {
    let Some(m) = media else { return Ok(None) };
    for part in m.split(',') {
        let t = part.split(';').next().unwrap_or("").trim();
        if let Some(rest) = t.strip_prefix("application/vnd.kafka.") {
            let name = rest.strip_suffix(".v2+json").unwrap_or(rest);
            if name == "v2+json" {
                return Ok(None);
            }
            return Format::parse(name)
                .map(Some)
                .ok_or_else(|| format!("embedded format `{name}` is not supported"));
        }
    }
    Ok(None)
}

pub async fn handle(
    app: &App,
    who: &Principal,
    path: &[&str],
    call: Call,
) -> (&'static str, Result<Response<Body>, ApiError>) {
    let m = call.method.clone();
    match (path, &m) {
        (["topics"], &Method::GET) => ("rest.topics", Ok(list_topics(app, who))),
        (["topics", t], &Method::GET) => ("rest.topic", describe_topic(app, who, t)),
        (["topics", t], &Method::POST) => ("rest.produce", produce(app, who, t, None, call).await),
        (["topics", t, "partitions"], &Method::GET) => {
            ("rest.partitions", partitions(app, who, t, None))
        }
        (["topics", t, "partitions", p], &Method::GET) => {
            ("rest.partitions", partitions(app, who, t, Some(p)))
        }
        (["topics", t, "partitions", p], &Method::POST) => {
            ("rest.produce", produce(app, who, t, Some(p), call).await)
        }
        (["topics", t, "partitions", p, "offsets"], &Method::GET) => {
            ("rest.offsets", partition_offsets(app, who, t, p))
        }
        (["consumers", g], &Method::POST) => {
            ("rest.consumer", create_consumer(app, who, g, call).await)
        }
        (["consumers", g, "instances", i, rest @ ..], _) => {
            // An instance is its creator's: another key of the tenant may not use it.
            let owned = app.groups.authorize_instance(
                &who.tenant,
                g,
                i,
                &who.key_id,
                who.is_tenant_admin(),
            );
            let answer = match (owned, rest) {
                (Err(e), _) => Err(ApiError::from(e)),
                (Ok(()), []) if call.method == Method::DELETE => app
                    .groups
                    .delete_instance(&who.tenant, g, i)
                    .await
                    .map(|()| no_content())
                    .map_err(ApiError::from),
                (Ok(()), _) => consumer(app, who, g, i, rest, call).await,
            };
            ("rest.consumer", answer)
        }
        (["topics", ..] | ["consumers", ..], _) => ("method", Err(ApiError::method_not_allowed())),
        _ => (
            "unknown",
            Err(ApiError::not_found(format!(
                "no such resource: {m} /{}",
                path.join("/")
            ))),
        ),
    }
}

fn list_topics(app: &App, who: &Principal) -> Response<Body> {
    let prefix = format!("{}/", who.tenant);
    let names: Vec<String> = app
        .log
        .topics(&prefix)
        .into_iter()
        .filter_map(|t| t.meta.name.strip_prefix(&prefix).map(str::to_owned))
        .filter(|n| !n.starts_with('_') && (who.can(Role::Consume, n) || who.can(Role::Produce, n)))
        .collect();
    v2(StatusCode::OK, &json!(names))
}

fn partition_json(p: u32) -> Value {
    json!({
        "partition": p, "leader": 0,
        "replicas": [{"broker": 0, "leader": true, "in_sync": true}],
    })
}

fn describe_topic(app: &App, who: &Principal, topic: &str) -> Result<Response<Body>, ApiError> {
    who.require(Role::Consume, topic)?;
    let info = app
        .log
        .topic(&log_name(&who.tenant, topic))
        .ok_or_else(|| ApiError::topic_not_found(topic))?;
    let configs: serde_json::Map<String, Value> = info
        .meta
        .spec
        .get("config")
        .and_then(Value::as_object)
        .map(|c| {
            c.iter()
                .map(|(k, v)| {
                    let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                    (k.clone(), json!(text))
                })
                .collect()
        })
        .unwrap_or_default();
    let partitions: Vec<Value> = (0..info.meta.partitions).map(partition_json).collect();
    Ok(v2(
        StatusCode::OK,
        &json!({"name": topic, "configs": configs, "partitions": partitions}),
    ))
}

fn partition_number(topic: &str, p: &str, count: u32) -> Result<u32, ApiError> {
    p.parse::<u32>().ok().filter(|n| *n < count).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            40402,
            format!("Partition not found: topic `{topic}` has no partition `{p}`"),
        )
    })
}

fn partitions(
    app: &App,
    who: &Principal,
    topic: &str,
    one: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    who.require(Role::Consume, topic)?;
    let count = app
        .log
        .inspect_topic(&log_name(&who.tenant, topic), |meta, _| meta.partitions)
        .ok_or_else(|| ApiError::topic_not_found(topic))?;
    Ok(match one {
        Some(p) => v2(
            StatusCode::OK,
            &partition_json(partition_number(topic, p, count)?),
        ),
        None => v2(
            StatusCode::OK,
            &json!((0..count).map(partition_json).collect::<Vec<_>>()),
        ),
    })
}

fn partition_offsets(
    app: &App,
    who: &Principal,
    topic: &str,
    p: &str,
) -> Result<Response<Body>, ApiError> {
    who.require(Role::Consume, topic)?;
    let full = log_name(&who.tenant, topic);
    let count = app
        .log
        .inspect_topic(&full, |meta, _| meta.partitions)
        .ok_or_else(|| ApiError::topic_not_found(topic))?;
    let p = partition_number(topic, p, count)?;
    let (start, end) = app
        .log
        .offsets(&full, p)
        .map_err(|e| sluice_tenancy::error::from_log(e, topic))?;
    Ok(v2(
        StatusCode::OK,
        &json!({"beginning_offset": start, "end_offset": end}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProduceRequest {
    /// Kept as text until counted: at most `limits.max_events_per_request` are parsed.
    records: Box<serde_json::value::RawValue>,
    #[serde(default)]
    key_schema: Option<String>,
    #[serde(default)]
    key_schema_id: Option<u32>,
    #[serde(default)]
    value_schema: Option<String>,
    #[serde(default)]
    value_schema_id: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProduceRecord {
    #[serde(default)]
    key: Option<Value>,
    #[serde(default)]
    value: Option<Value>,
    #[serde(default)]
    partition: Option<u32>,
}

async fn produce(
    app: &App,
    who: &Principal,
    topic: &str,
    partition: Option<&str>,
    call: Call,
) -> Result<Response<Body>, ApiError> {
    let prepared = app.ingest.prepare(who, topic)?;
    let format = format_of(call.header(header::CONTENT_TYPE))
        .map_err(ApiError::unsupported_media)?
        .ok_or_else(|| {
            ApiError::unsupported_media(
                "send application/vnd.kafka.{binary,json,jsonschema,avro}.v2+json",
            )
        })?;
    let path_partition = match partition {
        None => None,
        Some(p) => {
            let count = app
                .log
                .inspect_topic(&log_name(&who.tenant, topic), |meta, _| meta.partitions)
                .ok_or_else(|| ApiError::topic_not_found(topic))?;
            Some(partition_number(topic, p, count)?)
        }
    };
    let request: ProduceRequest = call.json(app.max_body_bytes).await?;
    if request.key_schema.is_some() || request.key_schema_id.is_some() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42205,
            "key schemas are not supported: keys are sent as they are",
        ));
    }
    let value_schema_id = match format {
        Format::JsonSchema | Format::Avro => {
            Some(value_schema_id(app, who, topic, &request, format).await?)
        }
        _ => {
            if request.value_schema.is_some() || request.value_schema_id.is_some() {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    42205,
                    format!("the {} format takes no schema", format.name()),
                ));
            }
            None
        }
    };
    // A schema registered just now brings the topic a validating pipeline: look again.
    let prepared = if value_schema_id.is_some() {
        app.ingest.prepare(who, topic)?
    } else {
        prepared
    };
    let rules = prepared.rules();
    let now = now_ms();
    let content_type = match format {
        Format::Binary => "application/octet-stream",
        Format::Json => "application/vnd.kafka.json",
        Format::JsonSchema => "application/vnd.kafka.jsonschema",
        Format::Avro => "application/vnd.kafka.avro",
    };
    let avro = match (format, value_schema_id) {
        (Format::Avro, Some(id)) => Some(avro_schema(app, &who.tenant, id)?),
        _ => None,
    };
    let records = envelope::array_items(
        request.records.get(),
        app.ingest.limits().max_events_per_request,
    )?;
    let items: Vec<_> = records
        .into_iter()
        .map(|raw| {
            let r: ProduceRecord = serde_json::from_str(raw.get())
                .map_err(|e| ApiError::invalid(format!("invalid record: {e}")))?;
            let key = embedded_bytes(format, r.key, None, "key")?;
            let value = match (&avro, r.value.filter(|v| !v.is_null())) {
                (Some(schema), Some(v)) => {
                    let body = schema.encode(&v).map_err(|e| {
                        ApiError::new(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            42203,
                            format!("Conversion of JSON to Avro failed: {e}"),
                        )
                    })?;
                    let mut out = vec![0u8];
                    out.extend_from_slice(&value_schema_id.unwrap_or(0).to_be_bytes());
                    out.extend_from_slice(&body);
                    Some(Bytes::from(out))
                }
                // A null (or absent) value stays null: in a compacted topic, a tombstone.
                (_, v) => embedded_bytes(format, v, value_schema_id, "value")?,
            };
            envelope::raw(
                value,
                key,
                path_partition.or(r.partition),
                content_type,
                &rules,
                &who.key_id,
                now,
            )
        })
        .collect();
    if items.is_empty() {
        return Err(ApiError::invalid("`records` is empty"));
    }
    let Outcome { results, .. } = app.ingest.append(who, &prepared, items, now).await?;
    let offsets: Vec<Value> = results
        .into_iter()
        .map(|r| match r {
            Ok(v) if v.get("offset").is_some() => json!({
                "partition": v["partition"], "offset": v["offset"],
                "error_code": null, "error": null,
            }),
            Ok(_) => json!({"partition": null, "offset": null, "error_code": null,
                            "error": null, "dropped": true}),
            // Confluent's per-record codes: 1 non-retriable, 2 retriable.
            Err(e) => json!({
                "partition": null, "offset": null,
                "error_code": if e.status.is_server_error() { 2 } else { 1 },
                "error": e.message,
            }),
        })
        .collect();
    Ok(v2(
        StatusCode::OK,
        &json!({"key_schema_id": null, "value_schema_id": value_schema_id, "offsets": offsets}),
    ))
}

/// The id of the value schema: the one given, which must be in the registry, or the schema
/// given, registered under `<topic>-value` (under the subject's compatibility rules).
/// The registry's Avro schema of `id`, parsed.
fn avro_schema(app: &App, tenant: &str, id: u32) -> Result<AvroSchema, ApiError> {
    let s = app.registry.guest_by_id(tenant, id).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42206,
            format!("schema id {id} is not in the registry"),
        )
    })?;
    AvroSchema::parse(&s.definition).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42205,
            format!("schema {id} is not an Avro schema Sluice can use: {e}"),
        )
    })
}

async fn value_schema_id(
    app: &App,
    who: &Principal,
    topic: &str,
    request: &ProduceRequest,
    format: Format,
) -> Result<u32, ApiError> {
    let subject = format!("{topic}-value");
    match (&request.value_schema, request.value_schema_id) {
        (None, Some(id)) => {
            if app
                .registry
                .guest_in_subject(&who.tenant, &subject, id)
                .is_none()
            {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    42206,
                    format!("schema id {id} is not a version of subject `{subject}`"),
                ));
            }
            Ok(id)
        }
        (Some(schema), None) => {
            let schema = schema.clone();
            let schema_type = if format == Format::Avro {
                SchemaType::Avro
            } else {
                SchemaType::Json
            };
            let version = app
                .registry
                .register(&who.tenant, &subject, schema_type, schema)
                .await
                .map_err(|e| ApiError::new(e.status, 42205, e.message))?;
            Ok(version.id)
        }
        _ => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42202,
            "Request includes values but does not include value schema: give value_schema \
             or value_schema_id",
        )),
    }
}

/// A key or value of a produce request as bytes.
fn embedded_bytes(
    format: Format,
    v: Option<Value>,
    schema_id: Option<u32>,
    what: &str,
) -> Result<Option<Bytes>, ApiError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    Ok(Some(match format {
        Format::Binary => {
            let text = v.as_str().ok_or_else(|| {
                ApiError::invalid(format!("binary format: the {what} must be a base64 string"))
            })?;
            Bytes::from(STANDARD.decode(text).map_err(|e| {
                ApiError::invalid(format!("binary format: the {what} is not base64: {e}"))
            })?)
        }
        Format::Json => Bytes::from(serde_json::to_vec(&v).expect("serializes")),
        Format::JsonSchema | Format::Avro => match schema_id {
            // Keys go as JSON.
            None => Bytes::from(serde_json::to_vec(&v).expect("serializes")),
            Some(id) => {
                let mut out = vec![0u8];
                out.extend_from_slice(&id.to_be_bytes());
                serde_json::to_writer(&mut out, &v).expect("serializes");
                Bytes::from(out)
            }
        },
    }))
}

#[derive(Deserialize)]
struct CreateConsumer {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default, rename = "auto.offset.reset")]
    auto_offset_reset: Option<String>,
    #[serde(default, rename = "auto.commit.enable")]
    auto_commit_enable: Option<Value>,
    #[serde(default, rename = "fetch.min.bytes")]
    fetch_min_bytes: Option<Value>,
    #[serde(default, rename = "consumer.request.timeout.ms")]
    request_timeout_ms: Option<Value>,
}

/// Confluent takes these settings as strings or numbers.
fn setting_u64(v: &Option<Value>, name: &str) -> Result<Option<u64>, ApiError> {
    let parsed = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    parsed
        .map(Some)
        .ok_or_else(|| invalid_config(format!("`{name}` must be a non-negative integer")))
}

fn invalid_config(message: String) -> ApiError {
    ApiError::from(sluice_groups::GroupError::InvalidConfig(message))
}

async fn create_consumer(
    app: &App,
    who: &Principal,
    group: &str,
    call: Call,
) -> Result<Response<Body>, ApiError> {
    let base = call
        .header(header::HOST)
        .map(|h| format!("http://{h}"))
        .unwrap_or_default();
    let body = call.body(app.max_body_bytes).await?;
    let req: CreateConsumer = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::from_str("{}").expect("empty")
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| invalid_config(format!("the request body: {e}")))?
    };
    let format = match req.format.as_deref() {
        None => Format::Binary,
        Some(f) => Format::parse(f).ok_or_else(|| {
            invalid_config(format!(
                "format `{f}` is not supported: use binary, json, jsonschema or avro"
            ))
        })?,
    };
    let auto_offset_reset = match req.auto_offset_reset.as_deref() {
        None => None,
        Some(r) => Some(OffsetReset::parse(r).ok_or_else(|| {
            invalid_config(format!("auto.offset.reset `{r}`: use earliest or latest"))
        })?),
    };
    let auto_commit = match &req.auto_commit_enable {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
        Some(other) => {
            return Err(invalid_config(format!(
                "auto.commit.enable `{other}`: use true or false"
            )));
        }
    };
    let settings = InstanceSettings {
        owner: who.key_id.clone(),
        name: req.name,
        format,
        auto_offset_reset,
        auto_commit,
        request_wait_ms: setting_u64(&req.request_timeout_ms, "consumer.request.timeout.ms")?,
        min_bytes: setting_u64(&req.fetch_min_bytes, "fetch.min.bytes")?,
    };
    let id = app.groups.create_instance(&who.tenant, group, settings)?;
    Ok(v2(
        StatusCode::OK,
        &json!({
            "instance_id": id,
            "base_uri": format!("{base}/consumers/{group}/instances/{id}"),
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartitionRef {
    topic: String,
    partition: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartitionOffset {
    topic: String,
    partition: u32,
    offset: u64,
    #[serde(default)]
    metadata: Option<String>,
}

fn tps(list: Vec<PartitionRef>) -> Vec<TopicPartition> {
    list.into_iter()
        .map(|p| TopicPartition::new(p.topic, p.partition))
        .collect()
}

async fn consumer(
    app: &App,
    who: &Principal,
    group: &str,
    instance: &str,
    rest: &[&str],
    call: Call,
) -> Result<Response<Body>, ApiError> {
    let groups = &app.groups;
    let tenant = who.tenant.as_str();
    let require_topics = |topics: &mut dyn Iterator<Item = &str>| -> Result<(), ApiError> {
        for t in topics {
            who.require(Role::Consume, t)?;
        }
        Ok(())
    };
    let limit = app.max_body_bytes;
    match (rest, &call.method) {
        (["subscription"], &Method::POST) => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Subscribe {
                #[serde(default)]
                topics: Option<Vec<String>>,
                #[serde(default)]
                topic_pattern: Option<String>,
            }
            let s: Subscribe = call.json(limit).await?;
            if let Some(t) = &s.topics {
                require_topics(&mut t.iter().map(String::as_str))?;
            }
            if s.topic_pattern.is_some() && !who.can(Role::Consume, "*") {
                return Err(ApiError::forbidden(
                    "a topic_pattern subscription needs consume on every topic (`*`)",
                ));
            }
            groups.subscribe(tenant, group, instance, s.topics, s.topic_pattern)?;
            Ok(no_content())
        }
        (["subscription"], &Method::GET) => {
            let topics = groups.subscription(tenant, group, instance)?;
            Ok(v2(StatusCode::OK, &json!({ "topics": topics })))
        }
        (["subscription"], &Method::DELETE) => {
            groups.unsubscribe(tenant, group, instance)?;
            Ok(no_content())
        }
        (["assignments"], &Method::POST) => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Assign {
                partitions: Vec<PartitionRef>,
            }
            let a: Assign = call.json(limit).await?;
            let list = tps(a.partitions);
            require_topics(&mut list.iter().map(|tp| tp.topic.as_str()))?;
            groups.assign(tenant, group, instance, list)?;
            Ok(no_content())
        }
        (["assignments"], &Method::GET) => {
            let list = groups.assignments(tenant, group, instance)?;
            Ok(v2(StatusCode::OK, &json!({ "partitions": list })))
        }
        (["positions"], &Method::POST) => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Positions {
                offsets: Vec<PartitionOffset>,
            }
            let p: Positions = call.json(limit).await?;
            let seeks = p
                .offsets
                .into_iter()
                .map(|o| {
                    (
                        TopicPartition::new(o.topic, o.partition),
                        Seek::To(o.offset),
                    )
                })
                .collect();
            groups.seek(tenant, group, instance, seeks)?;
            Ok(no_content())
        }
        (["positions", end @ ("beginning" | "end")], &Method::POST) => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Partitions {
                partitions: Vec<PartitionRef>,
            }
            let p: Partitions = call.json(limit).await?;
            let to = if *end == "beginning" {
                Seek::Beginning
            } else {
                Seek::End
            };
            let seeks = tps(p.partitions).into_iter().map(|tp| (tp, to)).collect();
            groups.seek(tenant, group, instance, seeks)?;
            Ok(no_content())
        }
        (["records"], &Method::GET) => {
            let asked = format_of(call.header(header::ACCEPT))
                .map_err(|m| ApiError::new(StatusCode::NOT_ACCEPTABLE, 40601, m))?;
            let number = |name: &str| -> Result<Option<u64>, ApiError> {
                call.query(name)
                    .map(|v| {
                        v.parse::<u64>().map_err(|_| {
                            ApiError::bad_request(format!(
                                "`{name}` must be a non-negative integer"
                            ))
                        })
                    })
                    .transpose()
            };
            let limits = ReadLimits {
                max_bytes: number("max_bytes")?,
                timeout_ms: number("timeout")?,
            };
            let format = groups.format_of(tenant, group, instance)?;
            if asked.is_some_and(|a| a != format) {
                return Err(ApiError::new(
                    StatusCode::NOT_ACCEPTABLE,
                    40601,
                    "The requested embedded data format does not match the deserializer for \
                     this consumer instance",
                ));
            }
            // Avro values are decoded with the registry's schema of their id (parsed once).
            let schemas: std::sync::Mutex<
                std::collections::HashMap<u32, std::sync::Arc<AvroSchema>>,
            > = Default::default();
            let avro_value = |b: Option<&Bytes>| -> Result<Value, String> {
                let Some(b) = b else { return Ok(Value::Null) };
                if b.len() < 5 || b[0] != 0 {
                    return Err("the value is not in the schema registry's wire format".into());
                }
                let id = u32::from_be_bytes([b[1], b[2], b[3], b[4]]);
                let cached = schemas.lock().expect("schemas").get(&id).cloned();
                let schema = match cached {
                    Some(s) => s,
                    None => {
                        let s = std::sync::Arc::new(
                            avro_schema(app, tenant, id).map_err(|e| e.message)?,
                        );
                        schemas.lock().expect("schemas").insert(id, s.clone());
                        s
                    }
                };
                schema.decode(&b[5..]).map_err(|e| e.to_string())
            };
            let embed = |topic: &str, r: &sluice_log::StoredRecord| {
                if format == Format::Avro {
                    format.embed_record_with(topic, r, avro_value)
                } else {
                    format.embed_record(topic, r)
                }
            };
            // Records of topics that require redaction (for this key) are embedded once
            // redacted; the others as they are read.
            // Whether each topic is redacted for this key, looked up once per topic.
            let redacts: std::sync::Mutex<std::collections::HashMap<String, bool>> =
                Default::default();
            let read = groups
                .read(tenant, group, instance, limits, |topic, r| {
                    let mut known = redacts.lock().expect("redacts");
                    let redacted = match known.get(topic) {
                        Some(b) => *b,
                        None => {
                            let b = app.redaction.applies(Some(who), tenant, topic);
                            known.insert(topic.to_owned(), b);
                            b
                        }
                    };
                    drop(known);
                    if redacted {
                        Ok(Err((topic.to_owned(), r.clone())))
                    } else {
                        embed(topic, r).map(Ok)
                    }
                })
                .await?;
            let pending: Vec<(String, sluice_log::StoredRecord)> = read
                .iter()
                .filter_map(|r| r.as_ref().err().cloned())
                .collect();
            let mut redacted = crate::api::stream::redact_mixed(app, who, pending)
                .await?
                .into_iter();
            let mut records = Vec::with_capacity(read.len());
            for r in read {
                records.push(match r {
                    Ok(done) => done,
                    Err(_) => {
                        let (topic, r) = redacted.next().expect("one redacted per pending");
                        embed(&topic, &r).map_err(|e| {
                            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, 42201, e)
                        })?
                    }
                });
            }
            let mut r = v2(StatusCode::OK, &json!(records));
            let media = format!("application/vnd.kafka.{}.v2+json", format.name());
            if let Ok(v) = http::HeaderValue::from_str(&media) {
                r.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            Ok(r)
        }
        (["offsets"], &Method::POST) => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Commit {
                #[serde(default)]
                offsets: Option<Vec<PartitionOffset>>,
            }
            let body = call.body(limit).await?;
            let c: Commit = if body.iter().all(u8::is_ascii_whitespace) {
                Commit { offsets: None }
            } else {
                serde_json::from_slice(&body)
                    .map_err(|e| ApiError::invalid(format!("invalid request: {e}")))?
            };
            let offsets = c.offsets.map(|list| {
                list.into_iter()
                    .map(|o| {
                        (
                            TopicPartition::new(o.topic, o.partition),
                            o.offset,
                            o.metadata.unwrap_or_default(),
                        )
                    })
                    .collect()
            });
            groups.commit(tenant, group, instance, offsets).await?;
            Ok(v2(StatusCode::OK, &json!({})))
        }
        (["offsets"], &Method::GET) => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Partitions {
                partitions: Vec<PartitionRef>,
            }
            let p: Partitions = call.json(limit).await?;
            let list = groups.committed(tenant, group, instance, tps(p.partitions))?;
            let offsets: Vec<Value> = list
                .into_iter()
                .map(|(tp, c)| {
                    json!({
                        "topic": tp.topic, "partition": tp.partition,
                        // Kafka's "no offset": -1.
                        "offset": c.as_ref().map_or(-1, |c| c.offset as i64),
                        "metadata": c.map(|c| c.metadata).unwrap_or_default(),
                    })
                })
                .collect();
            Ok(v2(StatusCode::OK, &json!({ "offsets": offsets })))
        }
        (
            ["subscription" | "assignments" | "positions" | "records" | "offsets"]
            | ["positions", "beginning" | "end"],
            _,
        ) => Err(ApiError::method_not_allowed()),
        _ => Err(ApiError::not_found(format!(
            "no such consumer resource: {}",
            rest.join("/")
        ))),
    }
}
