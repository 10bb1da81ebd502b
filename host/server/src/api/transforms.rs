//! `/v1/transforms`: a tenant's continuously running transforms: deploy (create or redeploy),
//! list, status with lag, stop, start, delete.

use std::sync::Arc;

use http::{Response, StatusCode};
use serde_json::{Value, json};

use crate::app::App;
use crate::call::{Body, Call, json, named_body};
use sluice_ingest::transforms::TransformDef;
use sluice_tenancy::auth::Principal;
use sluice_tenancy::error::ApiError;

const BODY_LIMIT: usize = 1 << 20;

fn require_admin(who: &Principal) -> Result<(), ApiError> {
    if who.system || who.is_tenant_admin() {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "managing transforms needs an admin key for all of the tenant's topics",
        ))
    }
}

fn parse(body: Value, name: Option<&str>) -> Result<TransformDef, ApiError> {
    let mut body = named_body(body, name)?;
    let o = body.as_object_mut().expect("named_body answers an object");
    // `output` (one topic) is accepted for `outputs`.
    if let Some(out) = o.remove("output") {
        o.insert("outputs".into(), json!([out]));
    }
    o.remove("resolved");
    o.remove("updated_ms");
    serde_json::from_value(body).map_err(|e| ApiError::invalid(format!("invalid transform: {e}")))
}

/// `POST /v1/transforms`: create (409 if the name is taken).
pub async fn create(
    app: &Arc<App>,
    who: &Principal,
    call: Call,
) -> Result<Response<Body>, ApiError> {
    require_admin(who)?;
    let def = parse(call.json(BODY_LIMIT).await?, None)?;
    if app.transforms.get(&who.tenant, &def.name).is_some() {
        return Err(ApiError::conflict(
            40903,
            format!("transform `{}` exists", def.name),
        ));
    }
    let def = app.transforms.deploy(&who.tenant, def).await?;
    Ok(json(StatusCode::CREATED, &def))
}

/// `PUT /v1/transforms/{name}`: create or redeploy.
pub async fn put(
    app: &Arc<App>,
    who: &Principal,
    name: &str,
    call: Call,
) -> Result<Response<Body>, ApiError> {
    require_admin(who)?;
    let def = parse(call.json(BODY_LIMIT).await?, Some(name))?;
    let existed = app.transforms.get(&who.tenant, name).is_some();
    let def = app.transforms.deploy(&who.tenant, def).await?;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(json(status, &def))
}

pub fn list(app: &App, who: &Principal) -> Result<Response<Body>, ApiError> {
    require_admin(who)?;
    Ok(json(
        StatusCode::OK,
        &json!({"transforms": app.transforms.list(&who.tenant)}),
    ))
}

pub async fn status(app: &App, who: &Principal, name: &str) -> Result<Response<Body>, ApiError> {
    require_admin(who)?;
    Ok(json(
        StatusCode::OK,
        &app.transforms.status(&who.tenant, name).await?,
    ))
}

pub async fn set_state(
    app: &Arc<App>,
    who: &Principal,
    name: &str,
    run: bool,
) -> Result<Response<Body>, ApiError> {
    require_admin(who)?;
    app.transforms.set_state(&who.tenant, name, run).await?;
    Ok(json(
        StatusCode::OK,
        &app.transforms.status(&who.tenant, name).await?,
    ))
}

pub async fn delete(app: &App, who: &Principal, name: &str) -> Result<Response<Body>, ApiError> {
    require_admin(who)?;
    app.transforms.delete(&who.tenant, name).await?;
    Ok(Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(crate::call::empty())
        .expect("response builds"))
}
