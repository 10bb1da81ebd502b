//! The HTTP APIs, one module per resource. [`dispatch`] maps an authenticated call to a handler.

mod admin;
mod components;
mod event_definitions;
mod fetch;
pub mod fhir;
mod groups;
pub mod openapi;
mod produce;
mod registry;
mod rest_proxy;
pub mod routes;
pub mod sources;
mod stream;
mod subscriptions;
mod topics;
mod transforms;

use std::sync::Arc;

use http::{Method, Response, StatusCode};

use crate::app::App;
use crate::call::{Body, Call, require_system};
use crate::metrics::Scrape;
use sluice_tenancy::auth::Principal;
use sluice_tenancy::error::ApiError;

/// Answer an authenticated call; `found` is where the route table put it (only what the table
/// lists reaches a handler, and so is in `/openapi.json`).
pub async fn dispatch(
    app: &Arc<App>,
    who: Principal,
    call: Call,
    found: &routes::Found,
) -> (&'static str, Result<Response<Body>, ApiError>) {
    let path: Vec<String> = call.path.clone();
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    let m = call.method.clone();
    match found {
        routes::Found::Route(_) => {}
        routes::Found::OtherMethod => return ("method", Err(ApiError::method_not_allowed())),
        routes::Found::Unknown => return ("unknown", Err(unknown(&m, &path))),
    }
    match (p.as_slice(), &m) {
        (["metrics"], &Method::GET) => ("metrics", metrics(app, &who).await),
        (["v1", "topics"], &Method::POST) => ("topics", topics::create(app, &who, call).await),
        (["v1", "topics"], &Method::GET) => ("topics", topics::list(app, &who)),
        (["v1", "topics", t], &Method::GET) => ("topic", topics::describe(app, &who, t)),
        (["v1", "topics", t], &Method::PATCH) => {
            ("topic", topics::update(app, &who, t, call).await)
        }
        (["v1", "topics", t], &Method::DELETE) => ("topic", topics::delete(app, &who, t).await),
        (["v1", "topics", t, "events"], &Method::POST) => {
            ("produce", produce::produce(app, &who, t, call).await)
        }
        (["v1", "topics", t, "partitions", p, "events"], &Method::GET) => {
            ("fetch", fetch::fetch(app, &who, t, p, &call).await)
        }
        (["v1", "topics", t, "stream"], &Method::GET) => {
            ("stream", stream::stream(app, &who, t, call).await)
        }
        (["v1", "topics", t, "compact"], &Method::POST) => {
            ("compact", topics::compact(app, &who, t, &call).await)
        }
        (["v1", "topics", t, "offsets"], &Method::GET) => {
            ("offsets", fetch::offsets(app, &who, t, &call).await)
        }
        (["v1", "tenants"], &Method::POST) => {
            ("tenants", admin::create_tenant(app, &who, call).await)
        }
        (["v1", "tenants"], &Method::GET) => ("tenants", admin::list_tenants(app, &who)),
        (["v1", "tenants", t, "quotas"], &Method::GET) => ("quotas", admin::quotas(app, &who, t)),
        (["v1", "tenants", t, "quotas"], &Method::PUT) => {
            ("quotas", admin::set_quotas(app, &who, t, call).await)
        }
        (["v1", "keys"], &Method::POST) => ("keys", admin::create_key(app, &who, call).await),
        (["v1", "keys"], &Method::GET) => ("keys", admin::list_keys(app, &who, &call)),
        (["v1", "keys", id], &Method::DELETE) => ("keys", admin::revoke_key(app, &who, id).await),
        (["v1", "keys", id, "client-cert"], &Method::PUT) => {
            ("keys", admin::bind_client_cert(app, &who, id, call).await)
        }
        (["v1", "whoami"], &Method::GET) => ("whoami", Ok(admin::whoami(&who, &call))),
        (["v1", "audit"], &Method::GET) => ("audit", admin::audit(app, &who, &call).await),
        (["v1", "data-keys"], &Method::GET) => ("data-keys", admin::data_keys(app, &who)),
        (["v1", "data-keys", "rotate"], &Method::POST) => {
            ("data-keys", admin::rotate_data_key(app, &who).await)
        }
        (["v1", "components"], &Method::GET) => ("components", components::list(app, &who)),
        (["v1", "components", n], &Method::PUT) => {
            ("component", components::upload(app, &who, n, call).await)
        }
        (["v1", "components", n], &Method::GET) => {
            ("component", components::describe(app, &who, n))
        }
        (["v1", "transforms"], &Method::GET) => ("transforms", transforms::list(app, &who)),
        (["v1", "transforms"], &Method::POST) => {
            ("transforms", transforms::create(app, &who, call).await)
        }
        (["v1", "transforms", n], &Method::GET) => {
            ("transform", transforms::status(app, &who, n).await)
        }
        (["v1", "transforms", n], &Method::PUT) => {
            ("transform", transforms::put(app, &who, n, call).await)
        }
        (["v1", "transforms", n], &Method::DELETE) => {
            ("transform", transforms::delete(app, &who, n).await)
        }
        (["v1", "transforms", n, "stop"], &Method::POST) => (
            "transform",
            transforms::set_state(app, &who, n, false).await,
        ),
        (["v1", "transforms", n, "start"], &Method::POST) => {
            ("transform", transforms::set_state(app, &who, n, true).await)
        }
        (["v1", "event-definitions"], &Method::GET) => (
            "event-definitions",
            event_definitions::list(app, &who, &call),
        ),
        (["v1", "event-definitions"], &Method::POST) => (
            "event-definitions",
            event_definitions::create(app, &who, call).await,
        ),
        (["v1", "event-definitions", id], &Method::GET) => (
            "event-definition",
            event_definitions::describe(app, &who, id),
        ),
        (["v1", "event-definitions", id], &Method::PUT) => (
            "event-definition",
            event_definitions::update(app, &who, id, call).await,
        ),
        (["v1", "event-definitions", id], &Method::DELETE) => (
            "event-definition",
            event_definitions::delete(app, &who, id).await,
        ),
        (["v1", "sources"], &Method::GET) => ("sources", sources::list(app, &who)),
        (["v1", "sources"], &Method::POST) => ("sources", sources::create(app, &who, call).await),
        (["v1", "sources", name], &Method::GET) => ("source", sources::get(app, &who, name)),
        (["v1", "sources", name], &Method::PUT) => {
            ("source", sources::put(app, &who, name, call).await)
        }
        (["v1", "sources", name], &Method::DELETE) => {
            ("source", sources::delete(app, &who, name).await)
        }
        (["v1", "sources", name, "hooks"], &Method::POST) => {
            let tenant = who.tenant.clone();
            (
                "hooks",
                sources::receive(app, &tenant, name, Some(&who), call).await,
            )
        }
        (["v1", "subscriptions"], &Method::GET) => {
            ("subscriptions", subscriptions::list(app, &who))
        }
        (["v1", "subscriptions"], &Method::POST) => (
            "subscriptions",
            subscriptions::create(app, &who, call).await,
        ),
        (["v1", "subscriptions", id], &Method::GET) => {
            ("subscription", subscriptions::describe(app, &who, id))
        }
        (["v1", "subscriptions", id], &Method::PUT) => (
            "subscription",
            subscriptions::update(app, &who, id, call, false).await,
        ),
        (["v1", "subscriptions", id], &Method::PATCH) => (
            "subscription",
            subscriptions::update(app, &who, id, call, true).await,
        ),
        (["v1", "subscriptions", id], &Method::DELETE) => {
            ("subscription", subscriptions::delete(app, &who, id).await)
        }
        (["v1", "subscriptions", id, "secret"], &Method::GET) => {
            ("subscription", subscriptions::secret(app, &who, id))
        }
        (["v1", "subscriptions", id, "rotate-secret"], &Method::POST) => (
            "subscription",
            subscriptions::rotate(app, &who, id, call).await,
        ),
        (["v1", "subscriptions", id, "attempts"], &Method::GET) => {
            ("attempts", subscriptions::attempts(app, &who, id, &call))
        }
        (["v1", "subscriptions", id, "replay"], &Method::POST) => {
            ("replay", subscriptions::replay(app, &who, id, call).await)
        }
        (["v1", "subscriptions", id, "redrive"], &Method::POST) => {
            ("replay", subscriptions::redrive(app, &who, id, call).await)
        }
        (["v1", "triggers"], &Method::GET) => ("triggers", subscriptions::list_triggers(app, &who)),
        (["v1", "triggers"], &Method::POST) => (
            "triggers",
            subscriptions::create_trigger(app, &who, call).await,
        ),
        (["v1", "triggers", "attempts"], &Method::GET) => (
            "triggers",
            subscriptions::trigger_attempts(app, &who, &call),
        ),
        (["v1", "triggers", "secret"], &Method::GET) => {
            ("triggers", subscriptions::trigger_secret(app, &who).await)
        }
        (["v1", "triggers", id], &Method::GET) => {
            ("trigger", subscriptions::describe_trigger(app, &who, id))
        }
        (["v1", "triggers", id], &Method::PUT) => (
            "trigger",
            subscriptions::update_trigger(app, &who, id, call, false).await,
        ),
        (["v1", "triggers", id], &Method::PATCH) => (
            "trigger",
            subscriptions::update_trigger(app, &who, id, call, true).await,
        ),
        (["v1", "triggers", id], &Method::DELETE) => (
            "trigger",
            subscriptions::delete_trigger(app, &who, id).await,
        ),
        (["v1", "alerts"], &Method::GET) => ("alerts", groups::alerts(app, &who).await),
        (["v1", "groups"], &Method::GET) => ("groups", groups::list(app, &who)),
        (["v1", "groups"], &Method::POST) => ("groups", groups::create(app, &who, call).await),
        (["v1", "groups", id], &Method::GET) => ("group", groups::describe(app, &who, id)),
        (["v1", "groups", id], &Method::PUT) => ("group", groups::put(app, &who, id, call).await),
        (["v1", "groups", id], &Method::DELETE) => ("group", groups::delete(app, &who, id).await),
        (["v1", "groups", id, "offsets", "reset"], &Method::POST) => {
            ("group", groups::reset(app, &who, id, call).await)
        }
        (["registry", rest @ ..], _) => ("registry", registry::handle(app, &who, rest, call).await),
        (["topics" | "consumers", ..], _) => rest_proxy::handle(app, &who, &p, call).await,
        // A route in the table that no arm above answers: the test that calls every
        // documented route finds it.
        _ => ("unknown", Err(unknown(&m, &path))),
    }
}

fn unknown(m: &Method, path: &[String]) -> ApiError {
    ApiError::not_found(format!("no such resource: {m} /{}", path.join("/")))
}

async fn metrics(app: &App, who: &Principal) -> Result<Response<Body>, ApiError> {
    require_system(who)?;
    let mut stages = app.ingest.stage_stats();
    stages.extend(app.transforms.stats().await);
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
        .body(crate::call::full(
            app.metrics.render(&Scrape {
                log: app.log.metrics(),
                stages: &stages,
                lag: &app.groups.lag_snapshot(),
                dead_letter_failures: app
                    .webhooks
                    .dead_letter_failures
                    .load(std::sync::atomic::Ordering::Relaxed),
                fhir_notifications: app
                    .fhir
                    .metrics
                    .notifications
                    .load(std::sync::atomic::Ordering::Relaxed),
                disk: app.ingest.disk(),
                throttled: &app.quotas.throttled(),
                audit: &app.audit,
                compaction: &app.log.compaction_overview(),
                compaction_failures: app.compactor.failures(),
                compaction_runs: &app.compactor.last_runs(),
            }),
        ))
        .expect("response builds"))
}
