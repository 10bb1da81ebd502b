//! `/v1/components`: a tenant's WebAssembly components (upload, list, versions), and the
//! built-ins every tenant may use.

use http::{Response, StatusCode};
use serde_json::{Value, json};
use sluice_runtime::World;

use crate::app::App;
use crate::call::{Body, Call, json};
use sluice_ingest::components::MAX_COMPONENT_BYTES;
use sluice_tenancy::auth::Principal;
use sluice_tenancy::error::ApiError;

fn require_admin(who: &Principal) -> Result<(), ApiError> {
    if who.system || who.is_tenant_admin() {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "managing components needs an admin key for all of the tenant's topics",
        ))
    }
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "invalid component name `{name}`: use 1-64 characters of [a-z0-9._-], starting with a letter or digit"
        )))
    }
}

/// `PUT /v1/components/{name}[?world=transformer]` with the `.wasm` as the body.
pub async fn upload(
    app: &App,
    who: &Principal,
    name: &str,
    call: Call,
) -> Result<Response<Body>, ApiError> {
    require_admin(who)?;
    check_name(name)?;
    let world = match call.query("world") {
        None => None,
        Some(w) => Some(World::parse(w).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown world `{w}` (validator, enricher, router, transformer)"
            ))
        })?),
    };
    let wasm = call.body(MAX_COMPONENT_BYTES).await?;
    if wasm.is_empty() {
        return Err(ApiError::bad_request(
            "the body must be the component's .wasm",
        ));
    }
    let (version, created) = app
        .components
        .upload(&who.tenant, name, wasm, world)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json(status, &version))
}

pub fn list(app: &App, who: &Principal) -> Result<Response<Body>, ApiError> {
    let components: Vec<Value> = app
        .components
        .list(&who.tenant)
        .into_iter()
        .map(|versions| {
            let latest = versions.last().cloned();
            json!({"name": versions[0].name, "latest": latest, "versions": versions.len()})
        })
        .collect();
    let builtins: Vec<Value> = sluice_builtins::BUILTINS
        .iter()
        .map(|b| json!({"name": b.name, "world": b.world}))
        .collect();
    Ok(json(
        StatusCode::OK,
        &json!({"components": components, "builtins": builtins}),
    ))
}

pub fn describe(app: &App, who: &Principal, name: &str) -> Result<Response<Body>, ApiError> {
    let versions = app.components.versions(&who.tenant, name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            40403,
            format!("component `{name}` does not exist"),
        )
    })?;
    Ok(json(
        StatusCode::OK,
        &json!({"name": name, "versions": versions}),
    ))
}
