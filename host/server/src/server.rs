//! The HTTP server: one port, one router, graceful shutdown that flushes the log.
//!
//! [`run`] is a function of (listener, app, shutdown), so tests bind port 0 and call the very
//! same function the binary does.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde::Serialize;
use sluice_log::Log;
use tokio::net::TcpListener;

use sluice_delivery::Webhooks;
use sluice_groups::Groups;
use sluice_ingest::Ingest;
use sluice_ingest::catalog::Catalog;
use sluice_ingest::components::Components;
use sluice_ingest::schemas::Registry;
use sluice_ingest::transforms::Transforms;
use sluice_tenancy::auth::{Directory, Principal};
use sluice_tenancy::clock::Clock;
use sluice_tenancy::error::ApiError;

use crate::api;
use crate::metrics::{Metrics, RequestLabels};

/// Response bodies: whole ones ([`full`], [`empty`]) or streams (server-sent events).
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

pub fn empty() -> Body {
    http_body_util::Empty::new().boxed_unsync()
}

/// The services a request handler may call: a plain bundle, put together by
/// [`crate::serve::start`], that only the HTTP layer sees. Each service received what it uses
/// when it was built; none of them holds the bundle.
pub struct App {
    pub log: Log,
    pub directory: Directory,
    pub metrics: Metrics,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// The seed's Topic Configuration schema, compiled once.
    pub topic_schema: jsonschema::Validator,
    /// Built-in and uploaded WebAssembly components, and the runtime that runs them.
    pub components: Arc<Components>,
    /// The one way into a topic: pipelines, dead letters, the append.
    pub ingest: Arc<Ingest>,
    /// Tenants' running transforms.
    pub transforms: Transforms,
    /// Tenants' schema registries.
    pub registry: Arc<Registry>,
    /// Tenants' event catalogs.
    pub catalog: Arc<Catalog>,
    /// Tenants' consumer groups and their committed offsets.
    pub groups: Arc<Groups>,
    /// Tenants' webhook subscriptions and their delivery loops.
    pub webhooks: Arc<Webhooks>,
    /// The time that schedules retries (tests move it).
    pub clock: Arc<Clock>,
    /// Turns `true` when the server stops: long-lived responses (streams) end.
    pub closing: tokio::sync::watch::Sender<bool>,
}

impl App {
    /// The topic configuration schema every topic document is checked against.
    pub fn topic_schema() -> jsonschema::Validator {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("api/topic_schema.json")).expect("schema is JSON");
        jsonschema::validator_for(&schema).expect("schema compiles")
    }
}

/// Serve until `shutdown` resolves, then stop accepting, let requests in flight finish (up to
/// 10 s), and close the log, which flushes and checkpoints.
pub async fn run(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
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
                let app = app.clone();
                let service = hyper::service::service_fn(move |req| {
                    let app = app.clone();
                    async move { Ok::<_, Infallible>(handle(app, req).await) }
                });
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    app.closing.send_replace(true);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 10 s; closing anyway");
    }
    // Transforms finish and commit their batch before the log closes.
    app.transforms.stop_all().await;
    app.webhooks.stop_all().await;
    app.log.close().await;
}

/// A request, read and authenticated as far as its route needs.
pub struct Call {
    pub method: Method,
    pub path: Vec<String>,
    pub query: HashMap<String, String>,
    pub headers: http::HeaderMap,
    pub body: Incoming,
    /// The connection, once the response switches protocols (WebSocket).
    pub upgrade: Option<hyper::upgrade::OnUpgrade>,
}

impl Call {
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    pub fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The whole body, refused with 413 past `limit`.
    pub async fn body(self, limit: usize) -> Result<Bytes, ApiError> {
        match Limited::new(self.body, limit).collect().await {
            Ok(c) => Ok(c.to_bytes()),
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                Err(ApiError::too_large(format!(
                    "request body exceeds {limit} bytes"
                )))
            }
            Err(e) => Err(ApiError::bad_request(format!("reading the body: {e}"))),
        }
    }

    pub async fn json<T: serde::de::DeserializeOwned>(self, limit: usize) -> Result<T, ApiError> {
        let body = self.body(limit).await?;
        serde_json::from_slice(&body).map_err(|e| {
            if e.is_data() {
                ApiError::invalid(format!("invalid request: {e}"))
            } else {
                ApiError::bad_json(format!("malformed JSON: {e}"))
            }
        })
    }
}

async fn handle(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
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
    };
    let (route, result) = route(&app, call).await;
    let response = result.unwrap_or_else(|e| error_response(&e));
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
        _ => {
            let principal = match app
                .directory
                .authenticate(call.header(header::AUTHORIZATION))
                .await
            {
                Ok(p) => p,
                Err(e) => return ("unauthenticated", Err(e)),
            };
            api::dispatch(app, principal, call).await
        }
    }
}

fn readiness(app: &App) -> Response<Body> {
    match app.log.fenced_by() {
        None => json(
            StatusCode::OK,
            &serde_json::json!({"status": "ready", "epoch": app.log.epoch()}),
        ),
        Some(by) => error_response(&ApiError::unavailable(format!(
            "fenced: writer epoch {by} owns the log now"
        ))),
    }
}

/// Requests that need a system key (tenant management, metrics across tenants).
pub fn require_system(p: &Principal) -> Result<(), ApiError> {
    if p.system {
        Ok(())
    } else {
        Err(ApiError::forbidden("this needs a system admin key"))
    }
}

pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Body> {
    raw_json(
        status,
        serde_json::to_vec(value).expect("response serializes"),
    )
}

pub fn raw_json(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(body))
        .expect("response builds")
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = json(e.status, e);
    if e.status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer realm=\"sluice\", Basic realm=\"sluice\""),
        );
    }
    r
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
