//! `/v1/tenants` and `/v1/keys`: tenants (system keys only) and API keys (tenant admins for
//! their own tenant, system keys for any).

use http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::App;
use crate::call::{Body, Call, json, require_system};
use sluice_tenancy::auth::{ApiKey, Principal, Role, Scope};
use sluice_tenancy::error::ApiError;

const ADMIN_BODY_LIMIT: usize = 64 << 10;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTenant {
    name: String,
    #[serde(default)]
    description: String,
}

pub async fn create_tenant(
    app: &App,
    who: &Principal,
    call: Call,
) -> Result<Response<Body>, ApiError> {
    require_system(who)?;
    let req: NewTenant = call.json(ADMIN_BODY_LIMIT).await?;
    let tenant = app
        .directory
        .create_tenant(&req.name, &req.description)
        .await?;
    // A tenant is only usable with a key: hand out its first admin key right away.
    let key = app
        .directory
        .create_key(
            &tenant.name,
            vec![Scope {
                role: Role::Admin,
                topics: "*".into(),
            }],
            false,
            "first admin key",
        )
        .await?;
    Ok(json(
        StatusCode::CREATED,
        &json!({"tenant": tenant, "admin_key": {"id": key.key.id, "key": key.token()}}),
    ))
}

/// `GET /v1/tenants/{t}/quotas` (system key): the tenant's own limits and those in force.
pub fn quotas(app: &App, who: &Principal, tenant: &str) -> Result<Response<Body>, ApiError> {
    require_system(who)?;
    if !app.directory.tenant_exists(tenant) {
        return Err(ApiError::not_found(format!(
            "tenant `{tenant}` does not exist"
        )));
    }
    Ok(json(
        StatusCode::OK,
        &json!({
            "tenant": tenant,
            "quotas": app.directory.quotas(tenant),
            "in_force": app.quotas.limits(tenant),
        }),
    ))
}

/// `PUT /v1/tenants/{t}/quotas` (system key): replace the tenant's own limits (unset fields fall
/// back to the server's `[quotas]`).
pub async fn set_quotas(
    app: &App,
    who: &Principal,
    tenant: &str,
    call: Call,
) -> Result<Response<Body>, ApiError> {
    require_system(who)?;
    let limits: sluice_tenancy::quotas::QuotaLimits = call.json(ADMIN_BODY_LIMIT).await?;
    app.directory.set_quotas(tenant, limits).await?;
    quotas(app, who, tenant)
}

/// `GET /v1/audit?since=&limit=&tenant=`: the tenant's audit trail, oldest first (tenant admin;
/// the system key may name any `tenant`, or `tenant=` empty for what names no tenant).
pub async fn audit(app: &App, who: &Principal, call: &Call) -> Result<Response<Body>, ApiError> {
    if !who.is_tenant_admin() {
        return Err(ApiError::forbidden(
            "the audit trail needs a tenant admin key",
        ));
    }
    let tenant = match call.query("tenant") {
        Some(t) if t != who.tenant => {
            require_system(who)?;
            (!t.is_empty()).then_some(t)
        }
        _ => Some(who.tenant.as_str()),
    };
    let since = match call.query("since") {
        None => 0,
        Some(t) => sluice_ingest::envelope::parse_time_text(t).ok_or_else(|| {
            ApiError::bad_request("`since` must be milliseconds or an RFC 3339 time")
        })?,
    };
    let limit = match call.query("limit") {
        None => 100,
        Some(n) => n
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request("`limit` must be a number"))?,
    };
    let records = app.audit.read(tenant, since, limit).await?;
    Ok(json(StatusCode::OK, &json!({ "records": records })))
}

/// `GET /v1/data-keys`: the ids of the tenant's data keys for PHI topics (the last seals new
/// data); never the keys (tenant admin).
pub fn data_keys(app: &App, who: &Principal) -> Result<Response<Body>, ApiError> {
    if !who.is_tenant_admin() {
        return Err(ApiError::forbidden("data keys need a tenant admin key"));
    }
    let ids = app.data_keys.ids(&who.tenant);
    Ok(json(
        StatusCode::OK,
        &json!({"data_keys": ids, "sealing": ids.last()}),
    ))
}

/// `POST /v1/data-keys/rotate`: a new data key seals the tenant's PHI topics from now on;
/// the older ones still open what they sealed (tenant admin).
pub async fn rotate_data_key(app: &App, who: &Principal) -> Result<Response<Body>, ApiError> {
    if !who.is_tenant_admin() {
        return Err(ApiError::forbidden("data keys need a tenant admin key"));
    }
    let id = app.data_keys.rotate(&who.tenant).await?;
    Ok(json(
        StatusCode::OK,
        &json!({"data_keys": app.data_keys.ids(&who.tenant), "sealing": id}),
    ))
}

pub fn list_tenants(app: &App, who: &Principal) -> Result<Response<Body>, ApiError> {
    require_system(who)?;
    Ok(json(
        StatusCode::OK,
        &json!({"tenants": app.directory.tenants()}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    tenant: Option<String>,
    scopes: Vec<Scope>,
    #[serde(default)]
    description: String,
    /// Bind the key to a client certificate (see docs/SECURITY.md).
    #[serde(default)]
    client_cert_sha256: Option<String>,
}

/// The tenant a request acts on: the caller's own, or (system keys only) another.
fn target_tenant(who: &Principal, asked: Option<&str>) -> Result<String, ApiError> {
    match asked {
        Some(t) if t != who.tenant => {
            require_system(who)?;
            Ok(t.to_owned())
        }
        _ => {
            if !who.is_tenant_admin() {
                return Err(ApiError::forbidden(
                    "managing keys needs an admin scope on `*`",
                ));
            }
            Ok(who.tenant.clone())
        }
    }
}

pub async fn create_key(
    app: &App,
    who: &Principal,
    call: Call,
) -> Result<Response<Body>, ApiError> {
    let req: NewKey = call.json(ADMIN_BODY_LIMIT).await?;
    let tenant = target_tenant(who, req.tenant.as_deref())?;
    let issued = app
        .directory
        .create_bound_key(
            &tenant,
            req.scopes,
            false,
            &req.description,
            req.client_cert_sha256.as_deref(),
        )
        .await?;
    let mut body = key_json(&issued.key);
    body["key"] = json!(issued.token());
    Ok(json(StatusCode::CREATED, &body))
}

pub fn list_keys(app: &App, who: &Principal, call: &Call) -> Result<Response<Body>, ApiError> {
    let tenant = target_tenant(who, call.query("tenant"))?;
    let keys: Vec<Value> = app
        .directory
        .keys(Some(&tenant))
        .iter()
        .map(key_json)
        .collect();
    Ok(json(StatusCode::OK, &json!({"keys": keys})))
}

pub async fn revoke_key(app: &App, who: &Principal, id: &str) -> Result<Response<Body>, ApiError> {
    managed_key(app, who, id)?;
    let key = app.directory.revoke(id).await?;
    Ok(json(StatusCode::OK, &key_json(&key)))
}

/// The key `id`, if the caller may manage it (another tenant's key looks exactly like a
/// missing one).
fn managed_key(app: &App, who: &Principal, id: &str) -> Result<ApiKey, ApiError> {
    let not_found = || ApiError::not_found(format!("key `{id}` does not exist"));
    let key = app.directory.key(id).ok_or_else(not_found)?;
    if key.tenant != who.tenant && !who.system {
        return Err(not_found());
    }
    target_tenant(who, Some(&key.tenant))?;
    Ok(key)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientCertBinding {
    client_cert_sha256: Option<String>,
}

/// `PUT /v1/keys/{id}/client-cert`: bind the key to a client certificate, or unbind it.
pub async fn bind_client_cert(
    app: &App,
    who: &Principal,
    id: &str,
    call: Call,
) -> Result<Response<Body>, ApiError> {
    let req: ClientCertBinding = call.json(ADMIN_BODY_LIMIT).await?;
    managed_key(app, who, id)?;
    let key = app
        .directory
        .bind_client_cert(id, req.client_cert_sha256.as_deref())
        .await?;
    Ok(json(StatusCode::OK, &key_json(&key)))
}

/// The calling key, and the client certificate the connection presented (its SHA-256, what
/// a key is bound to).
pub fn whoami(who: &Principal, call: &Call) -> Response<Body> {
    json(
        StatusCode::OK,
        &json!({
            "key_id": who.key_id, "tenant": who.tenant, "scopes": who.scopes, "system": who.system,
            "client_cert_sha256": call.client_cert.as_deref(),
        }),
    )
}

/// A key as listed: never its hash.
fn key_json(k: &ApiKey) -> Value {
    json!({
        "id": k.id, "tenant": k.tenant, "scopes": k.scopes, "system": k.system,
        "description": k.description, "created_ms": k.created_ms,
        "revoked": k.revoked_ms.is_some(), "revoked_ms": k.revoked_ms,
        "client_cert_sha256": k.client_cert_sha256,
    })
}
