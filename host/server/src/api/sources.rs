//! `/v1/sources` (a tenant's edge gateways) and the URLs their senders call:
//! `POST /hooks/{tenant}/{name}` (no API key: the source's component verifies the signature)
//! and `POST /v1/sources/{name}/hooks` (with a key that may produce to the source's topic).

use std::sync::Arc;

use http::{Response, StatusCode};
use serde_json::{Value, json};

use crate::app::App;
use crate::call::{Body, Call, empty, json, named_body};
use sluice_sources::{MAX_BODY_BYTES, Request, Source, Sources};
use sluice_tenancy::auth::{Principal, Role};
use sluice_tenancy::error::ApiError;

const BODY_LIMIT: usize = 64 << 10;

/// Managing a source needs admin on its topic (a source appends to it without a key).
fn require_admin(who: &Principal, topic: &str) -> Result<(), ApiError> {
    who.require(Role::Admin, topic)
}

fn parse(body: Value, name: Option<&str>) -> Result<Source, ApiError> {
    let mut body = named_body(body, name)?;
    let o = body.as_object_mut().expect("named_body answers an object");
    o.remove("created_ms");
    o.remove("url");
    serde_json::from_value(body).map_err(|e| ApiError::invalid(format!("invalid source: {e}")))
}

fn shown(tenant: &str, def: &Source) -> Value {
    let mut v = Sources::shown(def);
    v["url"] = json!(format!("/hooks/{tenant}/{}", def.name));
    v
}

pub fn list(app: &Arc<App>, who: &Principal) -> Result<Response<Body>, ApiError> {
    let sources: Vec<Value> = app
        .sources
        .list(&who.tenant)
        .iter()
        .filter(|s| who.can(Role::Admin, &s.topic))
        .map(|s| shown(&who.tenant, s))
        .collect();
    Ok(json(StatusCode::OK, &json!({ "sources": sources })))
}

pub async fn create(
    app: &Arc<App>,
    who: &Principal,
    call: Call,
) -> Result<Response<Body>, ApiError> {
    let def = parse(call.json(BODY_LIMIT).await?, None)?;
    require_admin(who, &def.topic)?;
    if app.sources.get(&who.tenant, &def.name).is_some() {
        return Err(ApiError::conflict(
            40909,
            format!(
                "source `{}` exists (PUT /v1/sources/{} replaces it)",
                def.name, def.name
            ),
        ));
    }
    let def = app.sources.put(&who.tenant, def).await?;
    Ok(json(StatusCode::CREATED, &shown(&who.tenant, &def)))
}

pub fn get(app: &Arc<App>, who: &Principal, name: &str) -> Result<Response<Body>, ApiError> {
    let def = app
        .sources
        .get(&who.tenant, name)
        .ok_or_else(|| sluice_sources::not_found(name))?;
    require_admin(who, &def.topic)?;
    Ok(json(StatusCode::OK, &shown(&who.tenant, &def)))
}

pub async fn put(
    app: &Arc<App>,
    who: &Principal,
    name: &str,
    call: Call,
) -> Result<Response<Body>, ApiError> {
    let def = parse(call.json(BODY_LIMIT).await?, Some(name))?;
    require_admin(who, &def.topic)?;
    if let Some(old) = app.sources.get(&who.tenant, name) {
        require_admin(who, &old.topic)?;
    }
    let def = app.sources.put(&who.tenant, def).await?;
    Ok(json(StatusCode::OK, &shown(&who.tenant, &def)))
}

pub async fn delete(
    app: &Arc<App>,
    who: &Principal,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let def = app
        .sources
        .get(&who.tenant, name)
        .ok_or_else(|| sluice_sources::not_found(name))?;
    require_admin(who, &def.topic)?;
    app.sources.delete(&who.tenant, name).await?;
    Ok(Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(empty())
        .expect("response builds"))
}

/// `OPTIONS /hooks/{tenant}/{name}`: the CloudEvents webhook abuse-protection handshake. A
/// sender names itself in `WebHook-Request-Origin`; an allowed origin gets
/// `WebHook-Allowed-Origin` (and `WebHook-Allowed-Rate` when the source sets one).
pub fn handshake(
    app: &Arc<App>,
    tenant: &str,
    name: &str,
    call: &Call,
) -> Result<Response<Body>, ApiError> {
    let origin = call
        .headers
        .get("webhook-request-origin")
        .and_then(|v| v.to_str().ok())
        .filter(|o| !o.is_empty() && o.len() <= 253)
        .ok_or_else(|| {
            ApiError::bad_request("the handshake needs a WebHook-Request-Origin header")
        })?;
    let (granted, rate) = app.sources.handshake(tenant, name, origin)?;
    let mut r = Response::builder()
        .status(StatusCode::OK)
        .header("allow", "POST, OPTIONS")
        .header("webhook-allowed-origin", granted);
    if let Some(rate) = rate {
        r = r.header("webhook-allowed-rate", rate.to_string());
    }
    Ok(r.body(empty()).expect("response builds"))
}

/// A sender's request to a source: verified by the source's component, its events appended.
pub async fn receive(
    app: &Arc<App>,
    tenant: &str,
    name: &str,
    who: Option<&Principal>,
    call: Call,
) -> Result<Response<Body>, ApiError> {
    let method = call.method.to_string();
    let path = format!("/{}", call.path.join("/"));
    let mut query: Vec<String> = call.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    query.sort();
    let headers: Vec<(String, Vec<u8>)> = call
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    let body = call.body(MAX_BODY_BYTES.min(app.max_body_bytes)).await?;
    let request = Request {
        method,
        path,
        query: query.join("&"),
        headers,
        body,
    };
    let (status, answer) = app.sources.receive(tenant, name, request, who).await?;
    Ok(json(status, &answer))
}
