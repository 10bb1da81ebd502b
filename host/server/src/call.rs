//! The request and response shapes every handler shares: a [`Call`] read as far as its route
//! needs, response [`Body`]s, JSON answers and the one error shape.

use std::collections::HashMap;
use std::convert::Infallible;

use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Serialize;
use sluice_tenancy::auth::Principal;
use sluice_tenancy::error::ApiError;

/// Response bodies: whole ones ([`full`], [`empty`]) or streams (server-sent events).
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

pub fn empty() -> Body {
    http_body_util::Empty::new().boxed_unsync()
}

/// How much of a body past its limit is read (and dropped) before a 413, so that a client
/// still sending reads the answer; a body larger still has its connection closed.
pub const DRAIN_BYTES: usize = 64 << 20;

/// A request, read and authenticated as far as its route needs.
pub struct Call {
    pub method: Method,
    pub path: Vec<String>,
    pub query: HashMap<String, String>,
    pub headers: http::HeaderMap,
    pub body: Incoming,
    /// The connection, once the response switches protocols (WebSocket).
    pub upgrade: Option<hyper::upgrade::OnUpgrade>,
    /// The SHA-256 (64 lowercase hex digits) of the client certificate the TLS connection
    /// presented, verified against the listener's client CA.
    pub client_cert: Option<std::sync::Arc<str>>,
}

impl Call {
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    pub fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The whole body, refused with 413 past `limit`. What follows the limit is read and
    /// dropped, up to [`DRAIN_BYTES`] more, so a client still sending gets the 413 rather than
    /// a reset connection; past that the connection is closed.
    pub async fn body(self, limit: usize) -> Result<Bytes, ApiError> {
        let mut body = self.body;
        let mut out = bytes::BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if out.len() + data.len() > limit {
                drop(out);
                let mut dropped = 0usize;
                while dropped < DRAIN_BYTES {
                    match body.frame().await {
                        Some(Ok(f)) => dropped += f.data_ref().map_or(0, |d| d.len()),
                        _ => break,
                    }
                }
                return Err(ApiError::too_large(format!(
                    "request body exceeds {limit} bytes"
                )));
            }
            out.extend_from_slice(&data);
        }
        Ok(out.freeze())
    }

    /// [`Call::body`] for a produce request: its events are counted as the body arrives, and
    /// one holding more than `max_events` is refused (413, 41302) once the count passes it:
    /// nothing more is kept or parsed, the rest is read and dropped (within the body limit),
    /// so the client gets the answer rather than a reset connection.
    ///
    /// `refused` is told how many bytes a refused body made the server read (to charge them).
    pub async fn events_body(
        self,
        limit: usize,
        framing: sluice_ingest::envelope::Framing,
        max_events: usize,
        refused: impl FnOnce(u64),
    ) -> Result<Bytes, ApiError> {
        use sluice_ingest::envelope::{ItemCount, too_many_events};
        let mut body = Limited::new(self.body, limit);
        let mut count = ItemCount::new(framing);
        let mut out = bytes::BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    ApiError::too_large(format!("request body exceeds {limit} bytes"))
                } else {
                    ApiError::bad_request(format!("reading the body: {e}"))
                }
            })?;
            if let Ok(data) = frame.into_data() {
                if count.feed(&data) > max_events {
                    // Refused: the rest is read and dropped, not kept or parsed (a client
                    // still sending would otherwise see its connection reset instead of the
                    // answer); the body limit still bounds how much.
                    let mut read = (out.len() + data.len()) as u64;
                    drop(out);
                    while let Some(Ok(f)) = body.frame().await {
                        read += f.data_ref().map_or(0, |d| d.len() as u64);
                    }
                    refused(read);
                    return Err(too_many_events(max_events));
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(out.freeze())
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

/// A resource's JSON body named by its URL: the body's `name`, if given, must be the URL's;
/// without one it gets the URL's. The body as an object, for the caller to finish.
pub fn named_body(
    mut body: serde_json::Value,
    name: Option<&str>,
) -> Result<serde_json::Value, ApiError> {
    let Some(o) = body.as_object_mut() else {
        return Err(ApiError::invalid("the body must be a JSON object"));
    };
    if let Some(n) = name {
        match o.get("name") {
            Some(serde_json::Value::String(given)) if given != n => {
                return Err(ApiError::invalid(
                    "the body's `name` differs from the URL's",
                ));
            }
            _ => {
                o.insert("name".into(), n.into());
            }
        }
    }
    Ok(body)
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

/// `e`'s `Retry-After` on a response answering it (conditions that pass: when to look again).
pub fn set_retry_after(r: &mut Response<Body>, e: &ApiError) {
    if let Some(seconds) = e.retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, http::HeaderValue::from(seconds));
    }
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = json(e.status, e);
    set_retry_after(&mut r, e);
    if e.status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer realm=\"sluice\", Basic realm=\"sluice\""),
        );
    }
    r
}
