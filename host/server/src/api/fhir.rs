//! `/fhir/{tenant}/...`: the FHIR gateway's REST API (the `sluice-fhir` crate does the work).
//! API keys come as Bearer tokens, as SMART clients send them; every failure, the
//! authentication's included, is an `OperationOutcome` with `application/fhir+json`.

use http::{Method, Response, StatusCode, header};
use sluice_fhir::{FhirError, FhirRequest, FhirResponse};
use sluice_tenancy::auth::Principal;

use crate::app::App;
use crate::call::{Body, Call};

pub const FHIR_JSON: &str = "application/fhir+json";

/// Answer one request to `/fhir/{tenant}/{rest...}`.
pub async fn route(app: &App, tenant: &str, rest: &[String], call: Call) -> Response<Body> {
    let base = format!(
        "{}/fhir/{tenant}",
        call.header(header::HOST)
            .map(|h| format!("http://{h}"))
            .unwrap_or_default()
    );
    // The WebSocket channel: the binding token authenticates, in the first message.
    if call.method == Method::GET && rest.len() == 1 && rest[0] == "$websocket" {
        return websocket(app, tenant, call).unwrap_or_else(render_error);
    }
    match answer(app, tenant, rest, call, &base).await {
        Ok(r) => render(r),
        Err(e) => render_error(e),
    }
}

async fn answer(
    app: &App,
    tenant: &str,
    rest: &[String],
    call: Call,
    base: &str,
) -> Result<FhirResponse, FhirError> {
    let segments: Vec<&str> = rest.iter().map(String::as_str).collect();
    if let (&Method::GET, ["metadata"]) = (&call.method, segments.as_slice()) {
        return Ok(app.fhir.capability_statement(base));
    }

    let who = authenticate(app, tenant, &call).await?;
    match (&call.method, segments.as_slice()) {
        (&Method::GET | &Method::POST, ["Subscription", id, "$status"]) => {
            app.fhir.status(&who, id)
        }
        (&Method::GET | &Method::POST, ["Subscription", id, "$events"]) => {
            app.fhir
                .events(
                    &who,
                    id,
                    call.query("eventsSinceNumber"),
                    call.query("eventsUntilNumber"),
                    call.query("content"),
                )
                .await
        }
        (&Method::GET | &Method::POST, ["Subscription", id, "$get-ws-binding-token"]) => app
            .fhir
            .ws_binding_token(&who, id, &sluice_fhir::operations::websocket_url(base)),
        (&Method::GET, [t, id]) => app.fhir.read(&who, t, id).await,
        (&Method::GET, _) => Err(not_supported("search and history are not supported yet")),
        (&Method::POST | &Method::PUT | &Method::DELETE, _) => {
            let method = call.method.to_string();
            let path = format!("/{}", segments.join("/"));
            let content_type = call.header(header::CONTENT_TYPE).map(str::to_owned);
            let if_match = call.header(header::IF_MATCH).map(str::to_owned);
            let body = call.body(sluice_fhir::MAX_BODY_BYTES).await?;
            let request = FhirRequest {
                method,
                path,
                content_type,
                if_match,
                body,
                base: base.to_owned(),
            };
            app.fhir.change(&who, request).await
        }
        _ => Err(not_supported("method not allowed")),
    }
}

/// `GET /fhir/{tenant}/$websocket`: upgrade, wait for `bind-with-token <token>` (at most
/// [`sluice_fhir::operations::WS_BIND_TIMEOUT`]), then send the Subscription's notifications
/// as text frames until either side ends.
fn websocket(app: &App, tenant: &str, call: Call) -> Result<Response<Body>, FhirError> {
    let mut call = call;
    let ws = crate::api::stream::WebSocket::from_call(&mut call)?.ok_or_else(|| FhirError {
        status: StatusCode::BAD_REQUEST,
        outcome: sluice_fhir::outcome("invalid", "a WebSocket upgrade is expected here"),
        retry_after: None,
    })?;
    let fhir = app.fhir.clone();
    let tenant = tenant.to_owned();
    let response = ws.respond_with(move |mut sink, mut incoming| async move {
        use futures::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let first = tokio::time::timeout(sluice_fhir::operations::WS_BIND_TIMEOUT, async {
            loop {
                match incoming.next().await {
                    Some(Ok(Message::Text(t))) => return Some(t.to_string()),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    _ => return None,
                }
            }
        })
        .await;
        let Ok(Some(text)) = first else {
            let _ = sink.send(Message::Close(None)).await;
            return;
        };
        // At most a token's length is looked at.
        let text: String = text.chars().take(256).collect();
        let rx = match fhir.bind(&tenant, &text) {
            Ok(rx) => rx,
            Err(e) => {
                let outcome = sluice_fhir::outcome("security", &e);
                let _ = sink.send(Message::Text(outcome.to_string().into())).await;
                let _ = sink.send(Message::Close(None)).await;
                return;
            }
        };
        crate::api::stream::relay(rx, sink, incoming, |text: String| {
            Message::Text(text.into())
        })
        .await;
    });
    Ok(response)
}

fn not_supported(message: &str) -> FhirError {
    FhirError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        outcome: sluice_fhir::outcome("not-supported", message),
        retry_after: None,
    }
}

/// The caller's key, which must be of the tenant in the path.
async fn authenticate(app: &App, tenant: &str, call: &Call) -> Result<Principal, FhirError> {
    let who = app
        .directory
        .authenticate(
            call.header(header::AUTHORIZATION),
            call.client_cert.as_deref(),
        )
        .await?;
    if who.tenant != tenant {
        return Err(FhirError {
            status: StatusCode::FORBIDDEN,
            outcome: sluice_fhir::outcome(
                "forbidden",
                &format!("key {} is not a key of tenant `{tenant}`", who.key_id),
            ),
            retry_after: None,
        });
    }
    Ok(who)
}

fn render(r: FhirResponse) -> Response<Body> {
    let mut b = Response::builder().status(r.status);
    for (name, value) in r.headers {
        b = b.header(name, value);
    }
    match r.body {
        Some(v) => b
            .header(header::CONTENT_TYPE, FHIR_JSON)
            .body(crate::call::full(serde_json::to_vec(&v).expect("JSON")))
            .expect("response builds"),
        None => b
            .body(crate::call::full(Vec::new()))
            .expect("response builds"),
    }
}

fn render_error(e: FhirError) -> Response<Body> {
    let mut b = Response::builder()
        .status(e.status)
        .header(header::CONTENT_TYPE, FHIR_JSON);
    if let Some(s) = e.retry_after {
        b = b.header(header::RETRY_AFTER, s.to_string());
    }
    b.body(crate::call::full(
        serde_json::to_vec(&e.outcome).expect("JSON"),
    ))
    .expect("response builds")
}
