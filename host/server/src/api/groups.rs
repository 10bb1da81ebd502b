//! `/v1/groups`: consumer groups as an operator sees them: list, declare (the seeds'
//! `ConsumerGroupConfig`), describe (state, members, assignments, committed offsets, lag),
//! reset offsets of a stopped group, delete.
//!
//! Reading needs any key of the tenant; changing a group needs `admin` on every topic it
//! covers (a tenant admin key always does).

use std::collections::BTreeSet;

use http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::App;
use crate::call::{Body, Call, json};
use sluice_groups::{GroupConfig, ResetTo};
use sluice_ingest::envelope::parse_time_text;
use sluice_tenancy::auth::{Principal, Role};
use sluice_tenancy::error::ApiError;

fn require_admin_of(who: &Principal, topics: &BTreeSet<String>) -> Result<(), ApiError> {
    if who.is_tenant_admin() {
        return Ok(());
    }
    if topics.is_empty() {
        return Err(ApiError::forbidden(
            "a group that names no topics needs a tenant admin key",
        ));
    }
    for t in topics {
        who.require(Role::Admin, t)?;
    }
    Ok(())
}

/// Topics a group covers now (configured, subscribed, committed).
fn topics_of(app: &App, who: &Principal, id: &str) -> Result<BTreeSet<String>, ApiError> {
    let d = app.groups.describe(&who.tenant, id)?;
    let mut topics: BTreeSet<String> = d["partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["topic"].as_str().map(str::to_owned))
        .collect();
    topics.extend(
        d["config"]["topics"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_owned)),
    );
    Ok(topics)
}

pub fn list(app: &App, who: &Principal) -> Result<Response<Body>, ApiError> {
    let groups: Vec<Value> = app
        .groups
        .list(&who.tenant)
        .into_iter()
        .filter_map(|id| app.groups.describe(&who.tenant, &id).ok())
        .map(|d| {
            json!({
                "group_id": d["group_id"], "state": d["state"],
                "members": d["members"].as_array().map_or(0, Vec::len),
                "total_lag": d["total_lag"], "declared": d["declared"],
                "owner": d["config"]["owner"], "description": d["config"]["description"],
            })
        })
        .collect();
    Ok(json(StatusCode::OK, &json!({ "groups": groups })))
}

pub fn describe(app: &App, who: &Principal, id: &str) -> Result<Response<Body>, ApiError> {
    Ok(json(StatusCode::OK, &app.groups.describe(&who.tenant, id)?))
}

async fn read_config(app: &App, call: Call, id: Option<&str>) -> Result<GroupConfig, ApiError> {
    let mut body: Value = call.json(app.max_body_bytes).await?;
    if let (Some(id), Some(obj)) = (id, body.as_object_mut()) {
        match obj.get("groupId") {
            None => {
                obj.insert("groupId".into(), json!(id));
            }
            Some(given) if given != id => {
                return Err(ApiError::invalid(format!(
                    "groupId `{given}` does not match the URL's `{id}`"
                )));
            }
            Some(_) => {}
        }
    }
    serde_json::from_value(body).map_err(|e| ApiError::invalid(format!("invalid group: {e}")))
}

/// `POST /v1/groups`: declare a new group (409 if it is declared already).
pub async fn create(app: &App, who: &Principal, call: Call) -> Result<Response<Body>, ApiError> {
    let config = read_config(app, call, None).await?;
    if app
        .groups
        .describe(&who.tenant, &config.group_id)
        .is_ok_and(|d| d["declared"] == json!(true))
    {
        return Err(ApiError::conflict(
            40907,
            format!("consumer group `{}` already exists", config.group_id),
        ));
    }
    put_config(app, who, config).await
}

/// `PUT /v1/groups/{id}`: declare or reconfigure.
pub async fn put(
    app: &App,
    who: &Principal,
    id: &str,
    call: Call,
) -> Result<Response<Body>, ApiError> {
    let config = read_config(app, call, Some(id)).await?;
    put_config(app, who, config).await
}

async fn put_config(
    app: &App,
    who: &Principal,
    config: GroupConfig,
) -> Result<Response<Body>, ApiError> {
    let mut topics: BTreeSet<String> = config.topics.iter().cloned().collect();
    if let Ok(current) = topics_of(app, who, &config.group_id) {
        topics.extend(current);
    }
    require_admin_of(who, &topics)?;
    let id = config.group_id.clone();
    let created = app.groups.put_config(&who.tenant, config).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json(status, &app.groups.describe(&who.tenant, &id)?))
}

pub async fn delete(app: &App, who: &Principal, id: &str) -> Result<Response<Body>, ApiError> {
    require_admin_of(who, &topics_of(app, who, id)?)?;
    app.groups.delete(&who.tenant, id).await?;
    Ok(Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(crate::call::empty())
        .expect("response builds"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reset {
    to: String,
    #[serde(default)]
    offset: Option<u64>,
    #[serde(default)]
    timestamp: Option<Value>,
    #[serde(default)]
    topics: Option<Vec<String>>,
}

/// `POST /v1/groups/{id}/offsets/reset`: `{"to": "earliest" | "latest" | "offset" |
/// "timestamp", "offset": n, "timestamp": ms or RFC 3339, "topics": [...]}`; only while the
/// group has no members.
pub async fn reset(
    app: &App,
    who: &Principal,
    id: &str,
    call: Call,
) -> Result<Response<Body>, ApiError> {
    let r: Reset = call.json(app.max_body_bytes).await?;
    let to = match r.to.as_str() {
        "earliest" => ResetTo::Earliest,
        "latest" => ResetTo::Latest,
        "offset" => ResetTo::Offset(
            r.offset
                .ok_or_else(|| ApiError::invalid("`to: offset` needs `offset`"))?,
        ),
        "timestamp" => {
            let t = r
                .timestamp
                .ok_or_else(|| ApiError::invalid("`to: timestamp` needs `timestamp`"))?;
            let ms = match &t {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => parse_time_text(s),
                _ => None,
            }
            .ok_or_else(|| {
                ApiError::invalid("`timestamp` must be milliseconds or an RFC 3339 time")
            })?;
            ResetTo::Timestamp(ms)
        }
        other => {
            return Err(ApiError::invalid(format!(
                "`to` must be earliest, latest, offset or timestamp, not `{other}`"
            )));
        }
    };
    let mut topics = topics_of(app, who, id)?;
    if let Some(t) = &r.topics {
        topics.extend(t.iter().cloned());
    }
    require_admin_of(who, &topics)?;
    let offsets = app.groups.reset(&who.tenant, id, to, r.topics).await?;
    let list: Vec<Value> = offsets
        .into_iter()
        .map(|(tp, o)| json!({"topic": tp.topic, "partition": tp.partition, "offset": o}))
        .collect();
    Ok(json(
        StatusCode::OK,
        &json!({ "group_id": id, "offsets": list }),
    ))
}

/// `GET /v1/alerts`: the tenant's newest operational alerts (lag above a group's threshold and
/// back), oldest first; a system key sees every tenant's.
pub async fn alerts(app: &App, who: &Principal) -> Result<Response<Body>, ApiError> {
    const NEWEST: u64 = 1_000;
    let topic = sluice_tenancy::internal_topics::ALERTS_TOPIC;
    let (_, end) = app
        .log
        .offsets(topic, 0)
        .map_err(|e| sluice_tenancy::error::from_log(e, topic))?;
    let mut out = Vec::new();
    app.log
        .scan(topic, 0, end.saturating_sub(NEWEST), end, |s| {
            if let Ok(v) = serde_json::from_slice::<Value>(s.record.value_bytes())
                && (who.system || v["tenant"] == json!(who.tenant))
            {
                out.push(v);
            }
            true
        })
        .await
        .map_err(|e| sluice_tenancy::error::from_log(e, topic))?;
    Ok(json(StatusCode::OK, &json!({ "alerts": out })))
}
