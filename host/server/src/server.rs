//! The HTTP server: one port, one router, graceful shutdown that flushes the log.
//!
//! [`run`] is a function of (listener, app, shutdown), so tests bind port 0 and call the very
//! same function the binary does.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use sluice_tenancy::audit::AuditRecord;
use sluice_tenancy::auth::fingerprint;
use sluice_tenancy::error::ApiError;
use sluice_tenancy::now_ms;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::api;
use crate::app::App;
use crate::call::{Body, Call, error_response, json};
use crate::metrics::RequestLabels;

/// Serve plain HTTP until `shutdown` resolves (see [`run_with_tls`]).
pub async fn run(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    run_with_tls(listener, app, None, shutdown).await
}

/// Serve until `shutdown` resolves (over TLS when `tls` is given), then stop accepting, let
/// requests in flight finish (up to `shutdown_grace`), and close the log, which flushes and
/// checkpoints.
pub async fn run_with_tls(
    listener: TcpListener,
    app: Arc<App>,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(app.http.header_read_timeout);
    let builder = Arc::new(builder);
    let handshake_timeout = app.http.header_read_timeout;
    let connections = Arc::new(Semaphore::new(app.http.max_connections));
    tokio::pin!(shutdown);
    loop {
        // A connection slot first: at the cap, new connections wait in the backlog.
        let slot = tokio::select! {
            slot = connections.clone().acquire_owned() => slot.expect("never closed"),
            _ = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => break,
        };
        let (stream, _) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match &tls {
            None => {
                let conn = builder.serve_connection_with_upgrades(
                    TokioIo::new(stream),
                    service(app.clone(), None),
                );
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    let _ = conn.await;
                    drop(slot);
                });
            }
            Some(acceptor) => {
                // The handshake runs in the connection's task, bounded like a request head.
                let (acceptor, builder, app) = (acceptor.clone(), builder.clone(), app.clone());
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await
                    else {
                        return;
                    };
                    // A client certificate, when one was presented, passed the client CA in the
                    // handshake; requests on this connection carry its fingerprint.
                    let client_cert = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .map(|leaf| ClientCert(Arc::from(fingerprint(leaf))));
                    let conn = builder.serve_connection_with_upgrades(
                        TokioIo::new(stream),
                        service(app, client_cert),
                    );
                    let _ = watcher.watch(conn.into_owned()).await;
                    drop(slot);
                });
            }
        }
    }
    drop(listener);
    app.closing.send_replace(true);
    let grace = app.http.shutdown_grace;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {grace:?}; closing anyway");
    }
    // Transforms finish and commit their batch before the log closes.
    app.transforms.stop_all().await;
    app.webhooks.stop_all().await;
    app.log.close().await;
}

/// The SHA-256 of the client certificate a TLS connection presented (verified in the
/// handshake against the listener's client CA).
#[derive(Clone)]
struct ClientCert(Arc<str>);

/// The service of one connection.
fn service(
    app: Arc<App>,
    client_cert: Option<ClientCert>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Body>, Infallible>> + Send,
> + Clone
+ Send
+ 'static {
    hyper::service::service_fn(move |req| {
        let (app, client_cert) = (app.clone(), client_cert.clone());
        async move { Ok::<_, Infallible>(handle(app, req, client_cert.map(|c| c.0)).await) }
    })
}

async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
    client_cert: Option<Arc<str>>,
) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    let upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let path: Vec<String> = parts
        .uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let query = parts.uri.query().map(parse_query).unwrap_or_default();
    let call = Call {
        method: parts.method,
        path,
        query,
        headers: parts.headers,
        body,
        upgrade,
        client_cert,
    };
    let (route, result) = route(&app, call).await;
    let response = result.unwrap_or_else(|e| error_response(&e));
    // Throttled or unavailable for a while (429, 503, 507 with `Retry-After`): the answer waits
    // (costing nothing meanwhile), so a client that loops on refusals sends a few a second, not
    // thousands.
    if let Some(seconds) = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        let delay = app.http.throttle_delay.min(Duration::from_secs(seconds));
        if !delay.is_zero() {
            let mut closing = app.closing.subscribe();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = closing.wait_for(|c| *c) => {}
            }
        }
    }
    app.metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

async fn route(app: &Arc<App>, call: Call) -> (&'static str, Result<Response<Body>, ApiError>) {
    let segments: Vec<&str> = call.path.iter().map(String::as_str).collect();
    match segments.as_slice() {
        ["healthz"] => (
            "healthz",
            Ok(json(StatusCode::OK, &serde_json::json!({"status": "ok"}))),
        ),
        ["readyz"] => ("readyz", Ok(readiness(app))),
        // A source's public URL: no API key (its component verifies the request).
        ["hooks", tenant, name] => {
            let (tenant, name) = (tenant.to_string(), name.to_string());
            if call.method == http::Method::OPTIONS {
                return ("hooks", api::sources::handshake(app, &tenant, &name, &call));
            }
            if call.method != http::Method::POST {
                return ("hooks", Err(ApiError::method_not_allowed()));
            }
            (
                "hooks",
                api::sources::receive(app, &tenant, &name, None, call).await,
            )
        }
        // The FHIR API answers everything, failures included, as FHIR does.
        ["fhir", tenant, ..] => {
            let (tenant, rest) = (tenant.to_string(), call.path[2..].to_vec());
            (
                "fhir",
                Ok(api::fhir::route(app, &tenant, &rest, call).await),
            )
        }
        ["openapi.json"] if call.method == http::Method::GET => (
            "openapi",
            Ok(crate::call::raw_json(
                StatusCode::OK,
                api::openapi::document().to_vec(),
            )),
        ),
        _ => {
            let resource = format!("/{}", call.path.join("/"));
            let principal = match app
                .directory
                .authenticate(
                    call.header(header::AUTHORIZATION),
                    call.client_cert.as_deref(),
                )
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    let (key_id, tenant) =
                        app.directory.claimed(call.header(header::AUTHORIZATION));
                    app.audit.refused(AuditRecord {
                        time_ms: now_ms(),
                        tenant,
                        key_id,
                        action: "auth.failed".into(),
                        resource,
                        status: e.status.as_u16(),
                        detail: Some(e.message.clone()),
                    });
                    return ("unauthenticated", Err(e));
                }
            };
            let found = {
                let segments: Vec<&str> = call.path.iter().map(String::as_str).collect();
                api::routes::find(&call.method, &segments)
            };
            let (tenant, key_id) = (principal.tenant.clone(), principal.key_id.clone());
            let (label, result) = api::dispatch(app, principal, call, &found).await;
            let outcome = match &result {
                Ok(r) => (r.status().as_u16(), None),
                Err(e) => (e.status.as_u16(), Some(e.message.clone())),
            };
            if let api::routes::Found::Route(route) = found {
                audit(app, route, resource, tenant, key_id, outcome).await;
            }
            (label, result)
        }
    }
}

/// Changes are recorded in the tenant's audit trail before they are answered; refusals
/// (403) are queued for it.
async fn audit(
    app: &App,
    route: &api::routes::Route,
    resource: String,
    tenant: String,
    key_id: String,
    (status, detail): (u16, Option<String>),
) {
    let refused = status == StatusCode::FORBIDDEN.as_u16();
    let changed = api::routes::audited(route) && (200..300).contains(&status);
    if !refused && !changed {
        return;
    }
    let method = &route.method;
    let record = AuditRecord {
        time_ms: now_ms(),
        tenant: Some(tenant),
        key_id: Some(key_id),
        action: format!("{method} {}", route.path),
        resource,
        status,
        detail,
    };
    if refused {
        app.audit.refused(record);
    } else {
        app.audit.record(record).await;
    }
}

fn readiness(app: &App) -> Response<Body> {
    let disk = app.ingest.disk();
    let disk_json = serde_json::json!({"free_bytes": disk.free(), "reserve_bytes": disk.reserve()});
    match (app.log.fenced_by(), disk.check()) {
        (Some(by), _) => error_response(&ApiError::unavailable(format!(
            "fenced: writer epoch {by} owns the log now"
        ))),
        (None, Err(full)) => {
            let mut body = serde_json::to_value(&full).expect("serializes");
            body["disk"] = disk_json;
            json(full.status, &body)
        }
        (None, Ok(())) => json(
            StatusCode::OK,
            &serde_json::json!({"status": "ready", "epoch": app.log.epoch(), "disk": disk_json}),
        ),
    }
}

fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(&v.replace('+', " ")))
        })
        .collect()
}

/// Percent-decoding; invalid escapes are kept as written.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%41%42"), "AB");
        let q = parse_query("offset=5&since=2024-01-01T00%3A00%3A00Z&earliest");
        assert_eq!(q["offset"], "5");
        assert_eq!(q["since"], "2024-01-01T00:00:00Z");
        assert_eq!(q["earliest"], "");
    }
}
