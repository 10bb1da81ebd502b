//! `/v1/topics`: create, list, describe, reconfigure and delete a tenant's topics.
//!
//! The request body of `POST` is the seed's Topic Configuration document, validated against
//! its JSON Schema; Sluice adds the optional `keyField` (where the record key comes from when a
//! producer gives none). `replicationFactor` is accepted for compatibility: durability comes
//! from the object store.

use std::collections::BTreeMap;

use http::{Response, StatusCode};
use serde_json::{Map, Value, json};
use sluice_log::{NewTopic, TopicInfo};

use sluice_tenancy::auth::{Principal, Role};
use sluice_tenancy::error::{ApiError, from_log};
use sluice_tenancy::{check_topic_name, log_name};

use crate::app::App;
use crate::call::{Body, Call, json};

const TOPIC_BODY_LIMIT: usize = 1 << 20;

/// Fields that live outside `spec` in the log.
const CORE: [&str; 3] = ["name", "partitions", "config"];

pub async fn create(app: &App, who: &Principal, call: Call) -> Result<Response<Body>, ApiError> {
    let doc: Value = call.json(TOPIC_BODY_LIMIT).await?;
    let name = doc
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("`name` is required and must be a string"))?
        .to_owned();
    check_topic_name(&name)?;
    who.require(Role::Admin, &name)?;
    validate(app, &doc)?;
    let mut doc = doc;
    let pipeline = app.ingest.build_pipeline(who, &mut doc).await?;
    let partitions = doc["partitions"].as_u64().unwrap_or(1);
    let partitions =
        u32::try_from(partitions).map_err(|_| ApiError::invalid("`partitions` is too large"))?;
    let config: BTreeMap<String, Value> = serde_json::from_value(doc["config"].clone())
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    app.compactor.check_policy(&who.tenant, &config).await?;
    app.redaction.check(&who.tenant, &config).await?;
    // A PHI topic is sealed with the tenant's data key, made first.
    if doc["dataSensitivity"] == "PHI" {
        app.data_keys.ensure(&who.tenant).await?;
    }
    let full = log_name(&who.tenant, &name);
    let info = app
        .log
        .create_topic(NewTopic {
            name: full.clone(),
            partitions,
            config,
            spec: spec_of(&doc),
        })
        .await
        .map_err(|e| from_log(e, &name))?;
    if pipeline.is_some() {
        app.ingest
            .pipeline_changed(&who.tenant, &full, Some(doc["pipeline"].clone()), pipeline);
    }
    apply_schema_config(app, who, &name, &doc).await?;
    Ok(json(StatusCode::CREATED, &describe_json(&name, &info)))
}

/// `schemaConfig.compatibility` sets the compatibility level of the topic's subjects (its
/// `valueSchema` and `keySchema`, by default `<topic>-value`) in the schema registry.
async fn apply_schema_config(
    app: &App,
    who: &Principal,
    topic: &str,
    doc: &Value,
) -> Result<(), ApiError> {
    let Some(level) = doc
        .pointer("/schemaConfig/compatibility")
        .and_then(Value::as_str)
    else {
        return Ok(());
    };
    let level: sluice_registry::Level = level.parse().map_err(ApiError::invalid)?;
    let named = |field: &str| {
        doc.pointer(&format!("/schemaConfig/{field}"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let mut subjects = vec![named("valueSchema").unwrap_or_else(|| format!("{topic}-value"))];
    subjects.extend(named("keySchema"));
    let changes = subjects
        .into_iter()
        .map(|subject| sluice_registry::Change::Config {
            subject: Some(subject),
            level: Some(level),
        })
        .collect();
    app.registry.write(&who.tenant, |_| Ok(((), changes))).await
}

pub fn list(app: &App, who: &Principal) -> Result<Response<Body>, ApiError> {
    let prefix = log_name(&who.tenant, "");
    let topics: Vec<Value> = app
        .log
        .topics(&prefix)
        .iter()
        .filter_map(|t| {
            let name = &t.meta.name[prefix.len()..];
            // The tenant's own internal topics (`_audit`) are read through their APIs.
            (!name.starts_with('_')
                && (who.can(Role::Consume, name) || who.can(Role::Produce, name)))
            .then(|| describe_json(name, t))
        })
        .collect();
    Ok(json(StatusCode::OK, &json!({ "topics": topics })))
}

pub fn describe(app: &App, who: &Principal, name: &str) -> Result<Response<Body>, ApiError> {
    check_topic_name(name)?;
    if !(who.can(Role::Consume, name) || who.can(Role::Produce, name)) {
        who.require(Role::Consume, name)?;
    }
    let full = log_name(&who.tenant, name);
    let info = app
        .log
        .topic(&full)
        .ok_or_else(|| ApiError::topic_not_found(name))?;
    let mut doc = describe_json(name, &info);
    if info.config.compacted() {
        doc["compaction"] = compaction_json(app, &full, info.partitions.len() as u32);
    }
    Ok(json(StatusCode::OK, &doc))
}

/// Per partition of a compacted topic: how much is not yet compacted (`dirty_ratio`, the
/// share of bytes; compaction runs from `min.cleanable.dirty.ratio`), how old the oldest such
/// run is, and the last run.
fn compaction_json(app: &App, full: &str, partitions: u32) -> Value {
    let now = sluice_tenancy::now_ms();
    let runs: std::collections::HashMap<u32, sluice_compaction::RunStatus> =
        app.compactor.status(full).into_iter().collect();
    (0..partitions)
        .map(|p| {
            let (dirty_ratio, oldest) = app.log.dirty(full, p).unwrap_or((0.0, None));
            json!({
                "partition": p,
                "dirty_ratio": dirty_ratio,
                "lag_ms": oldest.map(|ts| (now - ts).max(0)),
                "last_run": runs.get(&p),
            })
        })
        .collect()
}

/// `POST /v1/topics/{topic}/compact[?partition=N]` (admin): compact every partition (or one)
/// now.
pub async fn compact(
    app: &App,
    who: &Principal,
    name: &str,
    call: &Call,
) -> Result<Response<Body>, ApiError> {
    check_topic_name(name)?;
    who.require(Role::Admin, name)?;
    let full = log_name(&who.tenant, name);
    let info = app
        .log
        .topic(&full)
        .ok_or_else(|| ApiError::topic_not_found(name))?;
    if !info.config.compacted() {
        return Err(ApiError::invalid(format!(
            "topic `{name}` is not compacted (cleanup.policy is not compact or delete,compact)"
        )));
    }
    let only = match call.query("partition") {
        None => None,
        Some(p) => Some(
            p.parse::<u32>()
                .ok()
                .filter(|p| (*p as usize) < info.partitions.len())
                .ok_or_else(|| {
                    ApiError::bad_request(format!("`partition`: no partition {p} in `{name}`"))
                })?,
        ),
    };
    let results = match only {
        Some(p) => vec![(p, app.compactor.compact_partition(&full, p).await)],
        None => app
            .compactor
            .compact_topic(&full)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .into_iter()
            .enumerate()
            .map(|(p, r)| (p as u32, r))
            .collect(),
    };
    let partitions: Vec<Value> = results
        .into_iter()
        .map(|(p, r)| match r {
            Ok(done) => json!({"partition": p, "compacted": done}),
            Err(e) => json!({"partition": p, "error": e.to_string()}),
        })
        .collect();
    Ok(json(StatusCode::OK, &json!({ "partitions": partitions })))
}

/// Merge-patch: `config` keys are merged (a `null` removes one), other fields replace, and
/// `partitions` may only grow. The result is validated like a new topic.
pub async fn update(
    app: &App,
    who: &Principal,
    name: &str,
    call: Call,
) -> Result<Response<Body>, ApiError> {
    check_topic_name(name)?;
    who.require(Role::Admin, name)?;
    let patch: Value = call.json(TOPIC_BODY_LIMIT).await?;
    let Value::Object(patch) = patch else {
        return Err(ApiError::invalid("the body must be a JSON object"));
    };
    if patch.get("name").is_some_and(|n| n != name) {
        return Err(ApiError::invalid("a topic cannot be renamed"));
    }
    let full = log_name(&who.tenant, name);
    let current = app
        .log
        .topic(&full)
        .ok_or_else(|| ApiError::topic_not_found(name))?;
    let Value::Object(mut doc) = document(name, &current) else {
        unreachable!("a topic document is an object")
    };
    for (k, v) in patch {
        if k == "config" {
            let Value::Object(changes) = v else {
                return Err(ApiError::invalid("`config` must be an object"));
            };
            let config = doc
                .entry("config")
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .expect("config is an object");
            for (ck, cv) in changes {
                if cv.is_null() {
                    config.remove(&ck);
                } else {
                    config.insert(ck, cv);
                }
            }
        } else if v.is_null() && !CORE.contains(&k.as_str()) {
            doc.remove(&k);
        } else {
            doc.insert(k, v);
        }
    }
    let doc = Value::Object(doc);
    validate(app, &doc)?;
    let mut doc = doc;
    let pipeline = app.ingest.build_pipeline(who, &mut doc).await?;
    let partitions = doc["partitions"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .ok_or_else(|| ApiError::invalid("`partitions` is out of range"))?;
    let config: BTreeMap<String, Value> = serde_json::from_value(doc["config"].clone())
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    app.compactor.check_policy(&who.tenant, &config).await?;
    app.redaction.check(&who.tenant, &config).await?;
    if doc["dataSensitivity"] == "PHI" {
        app.data_keys.ensure(&who.tenant).await?;
    }
    let info = app
        .log
        .update_topic(&full, Some(partitions), config, spec_of(&doc))
        .await
        .map_err(|e| from_log(e, name))?;
    app.ingest
        .pipeline_changed(&who.tenant, &full, Some(doc["pipeline"].clone()), pipeline);
    apply_schema_config(app, who, name, &doc).await?;
    Ok(json(StatusCode::OK, &describe_json(name, &info)))
}

pub async fn delete(app: &App, who: &Principal, name: &str) -> Result<Response<Body>, ApiError> {
    check_topic_name(name)?;
    who.require(Role::Admin, name)?;
    app.log
        .delete_topic(&log_name(&who.tenant, name))
        .await
        .map_err(|e| from_log(e, name))?;
    app.ingest.topic_deleted(&log_name(&who.tenant, name));
    Ok(Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(crate::call::empty())
        .expect("response builds"))
}

fn validate(app: &App, doc: &Value) -> Result<(), ApiError> {
    let errors: Vec<String> = app
        .topic_schema
        .iter_errors(doc)
        .map(|e| {
            let at = e.instance_path().to_string();
            if at.is_empty() {
                e.to_string()
            } else {
                format!("{at}: {e}")
            }
        })
        .collect();
    if !errors.is_empty() {
        return Err(ApiError::invalid(format!(
            "invalid topic configuration: {}",
            errors.join("; ")
        )));
    }
    if doc.get("keyField").is_some_and(|k| !k.is_string()) {
        return Err(ApiError::invalid("`keyField` must be a string"));
    }
    let config: BTreeMap<String, Value> = serde_json::from_value(doc["config"].clone())
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    sluice_log::TopicConfig::parse(&config).map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok(())
}

fn spec_of(doc: &Value) -> Value {
    let mut spec = doc.as_object().cloned().unwrap_or_default();
    for k in CORE {
        spec.remove(k);
    }
    Value::Object(spec)
}

/// The topic document as created (or last patched).
fn document(name: &str, info: &TopicInfo) -> Value {
    let mut doc = info.meta.spec.as_object().cloned().unwrap_or_default();
    doc.insert("name".into(), json!(name));
    doc.insert("partitions".into(), json!(info.meta.partitions));
    doc.insert("config".into(), json!(info.meta.config));
    Value::Object(doc)
}

/// The document plus what the log knows: offsets and sizes per partition.
pub fn describe_json(name: &str, info: &TopicInfo) -> Value {
    let mut doc = document(name, info);
    let o = doc.as_object_mut().expect("object");
    o.insert(
        "created_at".into(),
        json!(
            chrono::DateTime::from_timestamp_millis(info.meta.created_ms)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        ),
    );
    o.insert(
        "partition_offsets".into(),
        info.partitions
            .iter()
            .enumerate()
            .map(|(i, p)| {
                json!({"partition": i, "start_offset": p.start_offset, "end_offset": p.next_offset, "bytes": p.bytes})
            })
            .collect(),
    );
    doc
}
