//! `/v1/event-definitions`: the tenant's event catalog (see [`sluice_ingest::catalog`]).
//!
//! Creating or updating a definition registers its `payload_schema` in the schema registry
//! (subject `<event_id>-payload`, under the registry's compatibility rules) and refuses it
//! when an example does not validate. Reads need any key of the tenant; writes a tenant admin.

use http::{Response, StatusCode};
use serde_json::{Value, json};
use sluice_registry::SchemaType;

use crate::app::App;
use crate::call::{Body, Call, json};
use sluice_ingest::catalog::{Definition, Status, check_examples};
use sluice_tenancy::auth::Principal;
use sluice_tenancy::error::ApiError;
use sluice_tenancy::now_ms;

const MAX_DEFINITION_BYTES: usize = 1 << 20;

fn not_found(event_id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        40406,
        format!("event definition `{event_id}` does not exist"),
    )
}

fn require_tenant_admin(who: &Principal) -> Result<(), ApiError> {
    if who.is_tenant_admin() {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "changing the event catalog needs a tenant admin key",
        ))
    }
}

pub fn list(app: &App, who: &Principal, call: &Call) -> Result<Response<Body>, ApiError> {
    let status = match call.query("status") {
        None => None,
        Some(s) => Some(
            serde_json::from_value::<Status>(json!(s.to_ascii_lowercase()))
                .map_err(|_| ApiError::invalid("`status` is one of draft, active, deprecated"))?,
        ),
    };
    let definitions: Vec<Definition> = app
        .catalog
        .list(&who.tenant)
        .into_iter()
        .filter(|d| status.is_none_or(|s| d.status == s))
        .collect();
    Ok(json(
        StatusCode::OK,
        &json!({ "event_definitions": definitions }),
    ))
}

pub fn describe(app: &App, who: &Principal, event_id: &str) -> Result<Response<Body>, ApiError> {
    let d = app
        .catalog
        .get(&who.tenant, event_id)
        .ok_or_else(|| not_found(event_id))?;
    Ok(json(StatusCode::OK, &d))
}

pub async fn create(app: &App, who: &Principal, call: Call) -> Result<Response<Body>, ApiError> {
    require_tenant_admin(who)?;
    let d: Definition = call.json(MAX_DEFINITION_BYTES).await?;
    let _one_at_a_time = app.catalog.writes.lock().await;
    if app.catalog.get(&who.tenant, &d.event_id).is_some() {
        return Err(ApiError::conflict(
            40904,
            format!("event definition `{}` already exists", d.event_id),
        ));
    }
    let stored = save(app, who, d, None).await?;
    Ok(json(StatusCode::CREATED, &stored))
}

pub async fn update(
    app: &App,
    who: &Principal,
    event_id: &str,
    call: Call,
) -> Result<Response<Body>, ApiError> {
    require_tenant_admin(who)?;
    let mut body: Value = call.json(MAX_DEFINITION_BYTES).await?;
    let given_revision = body.get("revision").and_then(Value::as_u64);
    match body.get("event_id") {
        None => body["event_id"] = json!(event_id),
        Some(v) if v == event_id => {}
        Some(_) => {
            return Err(ApiError::invalid(
                "`event_id` in the body differs from the one in the URL",
            ));
        }
    }
    let d: Definition = serde_json::from_value(body)
        .map_err(|e| ApiError::invalid(format!("invalid request: {e}")))?;
    let _one_at_a_time = app.catalog.writes.lock().await;
    let current = app
        .catalog
        .get(&who.tenant, event_id)
        .ok_or_else(|| not_found(event_id))?;
    if let Some(r) = given_revision
        && r != current.revision
    {
        return Err(ApiError::conflict(
            40905,
            format!(
                "event definition `{event_id}` is at revision {}, not {r}: read it again and retry",
                current.revision
            ),
        ));
    }
    let stored = save(app, who, d, Some(current)).await?;
    Ok(json(StatusCode::OK, &stored))
}

pub async fn delete(
    app: &App,
    who: &Principal,
    event_id: &str,
) -> Result<Response<Body>, ApiError> {
    require_tenant_admin(who)?;
    let _one_at_a_time = app.catalog.writes.lock().await;
    let d = app
        .catalog
        .get(&who.tenant, event_id)
        .ok_or_else(|| not_found(event_id))?;
    app.catalog.put(&who.tenant, event_id, None).await?;
    Ok(json(StatusCode::OK, &json!({ "deleted": d.event_id })))
}

/// Check a definition, register its schema, store it.
async fn save(
    app: &App,
    who: &Principal,
    mut d: Definition,
    current: Option<Definition>,
) -> Result<Definition, ApiError> {
    d.check()?;
    if let Err(failures) = check_examples(&d.payload_schema, &d.examples) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42215,
            format!(
                "the definition's examples do not follow its payload_schema: {}",
                failures.join("; ")
            ),
        ));
    }
    let subject = d.subject();
    let schema = d.payload_schema.to_string();
    let version = app
        .registry
        .register(&who.tenant, &subject, SchemaType::Json, schema)
        .await?;
    let now = now_ms();
    d.schema_subject = subject;
    d.schema_id = version.id;
    d.schema_version = version.version;
    d.revision = current.as_ref().map_or(1, |c| c.revision + 1);
    d.created_ms = current.as_ref().map_or(now, |c| c.created_ms);
    d.updated_ms = now;
    app.catalog
        .put(&who.tenant, &d.event_id.clone(), Some(&d))
        .await?;
    Ok(d)
}
