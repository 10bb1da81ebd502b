//! `/v1/subscriptions`: webhook subscriptions, their attempts, replays and dead-letter
//! re-drives; `/v1/triggers`: workflow event triggers.
//!
//! Managing a subscription (create, change, delete, see or rotate its secret, replay) needs
//! `admin` on each of its topics; reading it and its attempts needs `consume` on them.

use std::sync::Arc;
use std::time::Duration;

use http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::App;
use crate::call::{Body, Call, json};
use sluice_delivery::subscription::Subscription;
use sluice_delivery::trigger::Trigger;
use sluice_delivery::{SUBSCRIPTION_HEADER, TRIGGER_LOOP, delivery, not_found, trigger_not_found};
use sluice_ingest::dead_letters;
use sluice_ingest::envelope::{parse_time_text, read_headers};
use sluice_tenancy::auth::{Principal, Role};
use sluice_tenancy::error::ApiError;

/// `role` on every topic a subscription or trigger reads.
fn require(who: &Principal, role: Role, topics: &[String]) -> Result<(), ApiError> {
    for t in topics {
        who.require(role, t)?;
    }
    Ok(())
}

/// A definition (subscription or trigger) from a request body: every field's problem is 42216.
fn parse<T: serde::de::DeserializeOwned>(what: &str, body: Value) -> Result<T, ApiError> {
    serde_json::from_value(body).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42216,
            format!("invalid {what}: {e}"),
        )
    })
}

/// `old` with the fields of a PATCH body replaced.
fn patched<T: serde::Serialize + serde::de::DeserializeOwned>(
    what: &str,
    old: &T,
    body: &Value,
) -> Result<T, ApiError> {
    let mut v = serde_json::to_value(old).expect("serializes");
    let Some(changes) = body.as_object() else {
        return Err(ApiError::invalid(
            "a PATCH body is an object of the fields to change",
        ));
    };
    for (k, x) in changes {
        v[k] = x.clone();
    }
    parse(what, v)
}

fn view(app: &App, tenant: &str, s: &Subscription) -> Value {
    let mut v = s.public();
    let committed = app.webhooks.committed(tenant, &s.id);
    let mut lag = 0u64;
    let mut positions = Vec::new();
    for ((topic, p), o) in committed {
        let end = app
            .log
            .offsets(&sluice_tenancy::log_name(tenant, &topic), p)
            .map_or(o, |(_, e)| e);
        lag += end.saturating_sub(o);
        positions
            .push(json!({"topic": topic, "partition": p, "committed": o, "log_end_offset": end}));
    }
    v["positions"] = json!(positions);
    v["lag"] = json!(lag);
    v
}

pub fn list(app: &App, who: &Principal) -> Result<Response<Body>, ApiError> {
    let subs: Vec<Value> = app
        .webhooks
        .list(&who.tenant)
        .iter()
        .filter(|s| s.0.topics.iter().all(|t| who.can(Role::Consume, t)))
        .map(|s| view(app, &who.tenant, &s.0))
        .collect();
    Ok(json(StatusCode::OK, &json!({ "subscriptions": subs })))
}

pub async fn create(
    app: &Arc<App>,
    who: &Principal,
    call: Call,
) -> Result<Response<Body>, ApiError> {
    let body: Value = call.json(app.max_body_bytes).await?;
    if body.get("id").is_some() {
        return Err(ApiError::invalid("`id` is chosen by Sluice"));
    }
    let s: Subscription = parse("subscription", body)?;
    require(who, Role::Admin, &s.topics)?;
    let s = app.webhooks.put(&who.tenant, s, None).await?;
    let mut v = view(app, &who.tenant, &s);
    // The secret is shown here, and to admins at `/secret`.
    v["secret"] = json!(s.secret);
    Ok(json(StatusCode::CREATED, &v))
}

fn current(app: &App, who: &Principal, id: &str, role: Role) -> Result<Subscription, ApiError> {
    let s = app
        .webhooks
        .get(&who.tenant, id)
        .ok_or_else(|| not_found(id))?
        .0
        .clone();
    require(who, role, &s.topics)?;
    Ok(s)
}

pub fn describe(app: &App, who: &Principal, id: &str) -> Result<Response<Body>, ApiError> {
    let s = current(app, who, id, Role::Consume)?;
    Ok(json(StatusCode::OK, &view(app, &who.tenant, &s)))
}

/// `PUT` replaces the definition (the secret is kept unless one is given); `PATCH` changes
/// the fields given (`{"enabled": true}` re-enables a subscription Sluice disabled).
pub async fn update(
    app: &Arc<App>,
    who: &Principal,
    id: &str,
    call: Call,
    merge: bool,
) -> Result<Response<Body>, ApiError> {
    let old = current(app, who, id, Role::Admin)?;
    let body: Value = call.json(app.max_body_bytes).await?;
    if body.get("id").is_some_and(|v| v != id) {
        return Err(ApiError::invalid("`id` cannot change"));
    }
    let new = if merge {
        patched("subscription", &old, &body)?
    } else {
        let mut s: Subscription = parse("subscription", body)?;
        s.old_secrets = Vec::new();
        s
    };
    require(who, Role::Admin, &new.topics)?;
    let s = app.webhooks.put(&who.tenant, new, Some(&old)).await?;
    Ok(json(StatusCode::OK, &view(app, &who.tenant, &s)))
}

pub async fn delete(app: &App, who: &Principal, id: &str) -> Result<Response<Body>, ApiError> {
    current(app, who, id, Role::Admin)?;
    app.webhooks.delete(&who.tenant, id).await?;
    Ok(Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(crate::call::empty())
        .expect("response builds"))
}

pub fn secret(app: &App, who: &Principal, id: &str) -> Result<Response<Body>, ApiError> {
    let s = current(app, who, id, Role::Admin)?;
    let now = app.clock.now_ms();
    let old: Vec<Value> = s
        .old_secrets
        .iter()
        .filter(|o| o.expires_ms > now)
        .map(|o| json!({"secret": o.secret, "expires_ms": o.expires_ms}))
        .collect();
    Ok(json(
        StatusCode::OK,
        &json!({"secret": s.secret, "previous": old}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rotate {
    #[serde(default)]
    secret: Option<String>,
    /// How long the old secret keeps signing (default 24h).
    #[serde(default, with = "humantime_serde")]
    grace: Option<Duration>,
}

pub async fn rotate(
    app: &Arc<App>,
    who: &Principal,
    id: &str,
    call: Call,
) -> Result<Response<Body>, ApiError> {
    current(app, who, id, Role::Admin)?;
    let body = call.body(app.max_body_bytes).await?;
    let r: Rotate = if body.iter().all(u8::is_ascii_whitespace) {
        Rotate {
            secret: None,
            grace: None,
        }
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid(format!("invalid request: {e}")))?
    };
    let grace = r.grace.unwrap_or(Duration::from_secs(24 * 3600));
    let s = app
        .webhooks
        .rotate(&who.tenant, id, r.secret, grace)
        .await?;
    Ok(json(
        StatusCode::OK,
        &json!({"secret": s.secret, "previous_valid_for": humantime::format_duration(grace).to_string()}),
    ))
}

pub fn attempts(
    app: &App,
    who: &Principal,
    id: &str,
    call: &Call,
) -> Result<Response<Body>, ApiError> {
    current(app, who, id, Role::Consume)?;
    let limit = match call.query("limit") {
        None => 100,
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request("`limit` must be a number"))?
            .clamp(1, 1_000),
    };
    let list = app
        .webhooks
        .attempts(&who.tenant, id, call.query("event_id"), limit);
    Ok(json(StatusCode::OK, &json!({ "attempts": list })))
}

fn time_of(v: &Value, name: &str) -> Result<Option<i64>, ApiError> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_i64()),
        Some(Value::String(s)) => parse_time_text(s)
            .map(Some)
            .ok_or_else(|| ApiError::invalid(format!("`{name}` must be milliseconds or RFC 3339"))),
        Some(_) => Err(ApiError::invalid(format!(
            "`{name}` must be milliseconds or RFC 3339"
        ))),
    }
}

const MAX_REPLAY: usize = 100_000;

/// `POST .../replay`: `{"since": time, "until": time}` delivers again every event of the
/// subscription's topics stored in that window, or `{"topic", "partition", "from_offset",
/// "to_offset"}` those of an offset range (that its types and condition select), under the same
/// rules, without moving its offsets. At most 100,000 events per request.
pub async fn replay(
    app: &Arc<App>,
    who: &Principal,
    id: &str,
    call: Call,
) -> Result<Response<Body>, ApiError> {
    let s = current(app, who, id, Role::Admin)?;
    let body: Value = call.json(app.max_body_bytes).await?;
    let records = if body.get("from_offset").is_some() {
        // By offsets: one partition of one of its topics, [from_offset, to_offset).
        let topic = body["topic"]
            .as_str()
            .filter(|t| s.topics.iter().any(|x| x == t))
            .ok_or_else(|| ApiError::invalid("`topic`: one of the subscription's topics"))?;
        let partition = body["partition"]
            .as_u64()
            .ok_or_else(|| ApiError::invalid("`partition` is required with offsets"))?
            as u32;
        let from = body["from_offset"]
            .as_u64()
            .ok_or_else(|| ApiError::invalid("`from_offset` must be an offset"))?;
        let to = match body.get("to_offset") {
            None | Some(Value::Null) => u64::MAX,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| ApiError::invalid("`to_offset` must be an offset"))?,
        };
        delivery::read_offsets(
            &app.log,
            &who.tenant,
            topic,
            partition,
            from,
            to,
            MAX_REPLAY,
        )
        .await
        .map_err(|e| sluice_tenancy::error::from_log(e, topic))?
    } else {
        let since = time_of(&body, "since")?
            .ok_or_else(|| ApiError::invalid("give `since` (a time) or `from_offset`"))?;
        let until = time_of(&body, "until")?.unwrap_or(i64::MAX);
        if until < since {
            return Err(ApiError::invalid("`until` is before `since`"));
        }
        delivery::read_range(&app.log, &who.tenant, &s.topics, since, until, MAX_REPLAY)
            .await
            .map_err(|e| sluice_tenancy::error::from_log(e, &s.topics.join(",")))?
    };
    let n = records.len();
    app.webhooks.replay(&who.tenant, id, records).await?;
    Ok(json(
        StatusCode::ACCEPTED,
        &json!({"subscription": id, "replaying": n}),
    ))
}

/// `POST .../redrive`: deliver again the events this subscription dead-lettered
/// (`{"from_offset": n}` skips dead-letter records before offset n of each `T.dlq`).
pub async fn redrive(
    app: &Arc<App>,
    who: &Principal,
    id: &str,
    call: Call,
) -> Result<Response<Body>, ApiError> {
    let s = current(app, who, id, Role::Admin)?;
    let body = call.body(app.max_body_bytes).await?;
    let from: u64 = if body.iter().all(u8::is_ascii_whitespace) {
        0
    } else {
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid(format!("invalid request: {e}")))?;
        v.get("from_offset").and_then(Value::as_u64).unwrap_or(0)
    };
    let mut records = Vec::new();
    for t in &s.topics {
        let dlq = sluice_tenancy::log_name(&who.tenant, &dead_letters::dlq_of(t));
        if app.log.topic(&dlq).is_none() {
            continue;
        }
        app.log
            .scan(&dlq, 0, from, u64::MAX, |rec| {
                let mine = read_headers(&rec.record)
                    .iter()
                    .any(|(k, v)| k == SUBSCRIPTION_HEADER && v.as_ref() == id.as_bytes());
                if mine {
                    records.push((t.clone(), rec));
                }
                records.len() < MAX_REPLAY
            })
            .await
            .map_err(|e| sluice_tenancy::error::from_log(e, &dead_letters::dlq_of(t)))?;
    }
    let n = records.len();
    app.webhooks.replay(&who.tenant, id, records).await?;
    Ok(json(
        StatusCode::ACCEPTED,
        &json!({"subscription": id, "redriving": n}),
    ))
}

// Workflow event triggers: `/v1/triggers`.

pub fn list_triggers(app: &App, who: &Principal) -> Result<Response<Body>, ApiError> {
    let list: Vec<Trigger> = app
        .webhooks
        .list_triggers(&who.tenant)
        .into_iter()
        .filter(|t| t.topics.iter().all(|topic| who.can(Role::Consume, topic)))
        .collect();
    Ok(json(StatusCode::OK, &json!({ "triggers": list })))
}

pub async fn create_trigger(
    app: &Arc<App>,
    who: &Principal,
    call: Call,
) -> Result<Response<Body>, ApiError> {
    let body: Value = call.json(app.max_body_bytes).await?;
    if body.get("id").is_some() {
        return Err(ApiError::invalid("`id` is chosen by Sluice"));
    }
    let t: Trigger = parse("trigger", body)?;
    require(who, Role::Admin, &t.topics)?;
    let t = app.webhooks.put_trigger(&who.tenant, t, None).await?;
    Ok(json(StatusCode::CREATED, &t))
}

fn current_trigger(app: &App, who: &Principal, id: &str, role: Role) -> Result<Trigger, ApiError> {
    let t = app
        .webhooks
        .get_trigger(&who.tenant, id)
        .ok_or_else(|| trigger_not_found(id))?;
    require(who, role, &t.topics)?;
    Ok(t)
}

pub fn describe_trigger(app: &App, who: &Principal, id: &str) -> Result<Response<Body>, ApiError> {
    Ok(json(
        StatusCode::OK,
        &current_trigger(app, who, id, Role::Consume)?,
    ))
}

pub async fn update_trigger(
    app: &Arc<App>,
    who: &Principal,
    id: &str,
    call: Call,
    merge: bool,
) -> Result<Response<Body>, ApiError> {
    let old = current_trigger(app, who, id, Role::Admin)?;
    let body: Value = call.json(app.max_body_bytes).await?;
    let new = if merge {
        patched("trigger", &old, &body)?
    } else {
        parse("trigger", body)?
    };
    require(who, Role::Admin, &new.topics)?;
    let t = app
        .webhooks
        .put_trigger(&who.tenant, new, Some(&old))
        .await?;
    Ok(json(StatusCode::OK, &t))
}

pub async fn delete_trigger(
    app: &Arc<App>,
    who: &Principal,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    current_trigger(app, who, id, Role::Admin)?;
    app.webhooks.delete_trigger(&who.tenant, id).await?;
    Ok(Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(crate::call::empty())
        .expect("response builds"))
}

/// Attempts of the tenant's trigger deliveries (`?event_id=` takes `<event id>:<trigger id>`).
pub fn trigger_attempts(
    app: &App,
    who: &Principal,
    call: &Call,
) -> Result<Response<Body>, ApiError> {
    if !who.can(Role::Consume, "*") {
        return Err(ApiError::forbidden(
            "trigger attempts need consume on every topic",
        ));
    }
    let list = app
        .webhooks
        .attempts(&who.tenant, TRIGGER_LOOP, call.query("event_id"), 1_000);
    Ok(json(StatusCode::OK, &json!({ "attempts": list })))
}

pub async fn trigger_secret(app: &App, who: &Principal) -> Result<Response<Body>, ApiError> {
    if !who.is_tenant_admin() {
        return Err(ApiError::forbidden(
            "the trigger signing secret needs a tenant admin key",
        ));
    }
    let secret = app.webhooks.trigger_secret(&who.tenant).await?;
    Ok(json(StatusCode::OK, &json!({ "secret": secret })))
}
