//! `GET /v1/topics/{topic}/stream`: a topic as Server-Sent Events.
//!
//! Each event is one SSE message whose `data:` is the record as the fetch API shows it
//! (partition, offset, timestamp, key, headers, event or value) and whose `id:` is the cursor
//! after it: every partition's next offset, `0:17,1:5,2:9`. A client that reconnects with
//! `Last-Event-ID` (browsers do it by themselves) resumes exactly after the last event it got.
//! Without one: `from=earliest|latest|<cursor>` or `since=<time>`; the default is `latest`.
//! A comment line (`: heartbeat`) goes out when nothing else did for `heartbeat_ms` (15 s by
//! default), so proxies keep the connection open.
//!
//! The same over WebSocket: a request with `Upgrade: websocket` gets text frames
//! `{"id": cursor, "data": record}` and pings for heartbeats.
//!
//! With `group=G` the stream is a member of consumer group G instead: the group's partitions
//! are shared among its members (streams or REST Proxy consumers), positions are committed
//! as they go and when the stream ends, and `id:` is `partition:offset` of the event.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use sluice_log::StoredRecord;
use tokio::sync::mpsc;

use crate::app::App;
use crate::call::{Body, Call};
use sluice_groups::OffsetReset;
use sluice_groups::consumers::{Format, InstanceSettings, ReadLimits};
use sluice_ingest::envelope::EventView;
use sluice_ingest::envelope::parse_time_text;
use sluice_tenancy::auth::{Principal, Role};
use sluice_tenancy::error::{ApiError, from_log};
use sluice_tenancy::{check_topic_name, log_name};

const DEFAULT_HEARTBEAT_MS: u64 = 15_000;
const MIN_HEARTBEAT_MS: u64 = 100;

/// Every partition's next offset, as `0:17,1:5`.
fn cursor(positions: &[u64]) -> String {
    let mut out = String::with_capacity(positions.len() * 8);
    for (p, o) in positions.iter().enumerate() {
        if p > 0 {
            out.push(',');
        }
        out.push_str(&format!("{p}:{o}"));
    }
    out
}

fn parse_cursor(text: &str, partitions: usize) -> Option<Vec<Option<u64>>> {
    let mut out = vec![None; partitions];
    for part in text.split(',').filter(|s| !s.is_empty()) {
        let (p, o) = part.split_once(':')?;
        let p: usize = p.trim().parse().ok()?;
        let o: u64 = o.trim().parse().ok()?;
        if p < partitions {
            out[p] = Some(o);
        }
    }
    Some(out)
}

/// What a stream sends, before it is framed as SSE or WebSocket.
pub enum Out {
    Message { id: String, data: Vec<u8> },
    Heartbeat,
    Error(serde_json::Value),
}

impl Out {
    fn sse(self) -> Bytes {
        match self {
            Out::Message { id, data } => message(&id, &data),
            Out::Heartbeat => Bytes::from_static(b": heartbeat\n\n"),
            Out::Error(v) => Bytes::from(format!("event: error\ndata: {v}\n\n")),
        }
    }

    /// A WebSocket text frame: `{"id": cursor, "data": record}` (SSE's two fields), `{"error": ...}`; a ping for
    /// a heartbeat.
    fn ws(self) -> tokio_tungstenite::tungstenite::Message {
        use tokio_tungstenite::tungstenite::Message;
        match self {
            Out::Message { id, data } => {
                let mut text = String::with_capacity(data.len() + id.len() + 24);
                text.push_str("{\"id\":");
                text.push_str(&serde_json::to_string(&id).expect("string"));
                text.push_str(",\"data\":");
                text.push_str(std::str::from_utf8(&data).expect("JSON is UTF-8"));
                text.push('}');
                Message::Text(text.into())
            }
            Out::Heartbeat => Message::Ping(Bytes::new()),
            Out::Error(v) => Message::Text(serde_json::json!({ "error": v }).to_string().into()),
        }
    }
}

fn message(id: &str, data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + id.len() + 16);
    out.extend_from_slice(b"id: ");
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// How each event is written: Sluice's record view, or a structured CloudEvent
/// (`?format=cloudevents`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Render {
    Sluice,
    CloudEvents,
}

fn event_json(r: &StoredRecord, topic: &str, render: Render) -> Vec<u8> {
    // The record as JSON has no raw newlines (JSON escapes them), so one `data:` line holds it.
    match render {
        Render::Sluice => serde_json::to_vec(&EventView::from(r)),
        Render::CloudEvents => {
            serde_json::to_vec(&sluice_ingest::cloudevents::out::structured(r, topic, None))
        }
    }
    .expect("event serializes")
}

pub async fn stream(
    app: &Arc<App>,
    who: &Principal,
    topic: &str,
    mut call: Call,
) -> Result<Response<Body>, ApiError> {
    let websocket = WebSocket::from_call(&mut call)?;
    let call = &call;
    check_topic_name(topic)?;
    who.require(Role::Consume, topic)?;
    let full = log_name(&who.tenant, topic);
    let partitions = app
        .log
        .inspect_topic(&full, |meta, _| meta.partitions)
        .ok_or_else(|| ApiError::topic_not_found(topic))?;
    let render = match call.query("format") {
        None | Some("sluice") => Render::Sluice,
        Some("cloudevents") => Render::CloudEvents,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`format`: `{other}`; use sluice (the default) or cloudevents"
            )));
        }
    };
    let heartbeat = match call.query("heartbeat_ms") {
        None => DEFAULT_HEARTBEAT_MS,
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request("`heartbeat_ms` must be milliseconds"))?
            .max(MIN_HEARTBEAT_MS),
    };
    let heartbeat = Duration::from_millis(heartbeat);
    let lease = Lease::take(app, who)?;
    let (tx, rx) = mpsc::channel::<Out>(16);

    if let Some(group) = call.query("group").filter(|g| !g.is_empty()) {
        let reset = match call.query("from") {
            None => None,
            Some("earliest") => Some(OffsetReset::Earliest),
            Some("latest") => Some(OffsetReset::Latest),
            Some(_) => {
                return Err(ApiError::bad_request(
                    "with `group`, `from` is earliest or latest (where the group starts when it \
                     has no committed offset)",
                ));
            }
        };
        let instance = app.groups.create_instance(
            &who.tenant,
            group,
            InstanceSettings {
                owner: who.key_id.clone(),
                name: Some(format!("stream-{}", uuid::Uuid::new_v4())),
                format: Format::Binary,
                auto_offset_reset: reset,
                auto_commit: true,
                request_wait_ms: None,
                min_bytes: None,
            },
        )?;
        app.groups.subscribe(
            &who.tenant,
            group,
            &instance,
            Some(vec![topic.to_owned()]),
            None,
        )?;
        tokio::spawn(group_stream(
            app.clone(),
            who.clone(),
            (who.tenant.clone(), group.to_owned(), instance),
            heartbeat,
            render,
            tx,
            lease,
        ));
    } else {
        let resume = call.header(header::HeaderName::from_static("last-event-id"));
        let mut positions = Vec::with_capacity(partitions as usize);
        let asked: Option<Vec<Option<u64>>> = match (resume, call.query("from")) {
            (Some(c), _) | (None, Some(c)) if c != "earliest" && c != "latest" => {
                Some(parse_cursor(c, partitions as usize).ok_or_else(|| {
                    ApiError::bad_request(
                        "the cursor (Last-Event-ID or `from`) must look like `0:17,1:5`",
                    )
                })?)
            }
            _ => None,
        };
        let since = match call.query("since") {
            None => None,
            Some(t) => Some(parse_time_text(t).ok_or_else(|| {
                ApiError::bad_request("`since` must be milliseconds or an RFC 3339 time")
            })?),
        };
        let earliest = call.query("from") == Some("earliest");
        for p in 0..partitions {
            let (start, end) = app.log.offsets(&full, p).map_err(|e| from_log(e, topic))?;
            let at = match (&asked, since) {
                // Partitions the cursor does not name (added since) start at their beginning.
                (Some(c), _) => c[p as usize].unwrap_or(start),
                (None, Some(ms)) => app
                    .log
                    .offset_for_timestamp(&full, p, ms)
                    .await
                    .map_err(|e| from_log(e, topic))?,
                (None, None) if earliest => start,
                (None, None) => end,
            };
            positions.push(at.clamp(start, end));
        }
        tokio::spawn(topic_stream(
            app.clone(),
            who.clone(),
            full,
            (topic.to_owned(), render),
            positions,
            heartbeat,
            tx,
            lease,
        ));
    }

    if let Some(upgrade) = websocket {
        return Ok(upgrade.respond(rx));
    }
    let hello = futures::stream::iter([Ok::<_, Infallible>(Frame::data(Bytes::from_static(
        b"retry: 2000\n: connected\n\n",
    )))]);
    let body = StreamBody::new(futures::StreamExt::chain(
        hello,
        futures::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|o| (Ok::<_, Infallible>(Frame::data(o.sse())), rx))
        }),
    ));
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(body.boxed_unsync())
        .expect("response builds"))
}

/// A WebSocket handshake asked for by the request, checked before the stream starts.
pub(crate) struct WebSocket {
    pub(crate) accept: String,
    pub(crate) upgrade: hyper::upgrade::OnUpgrade,
}

impl WebSocket {
    pub(crate) fn from_call(call: &mut Call) -> Result<Option<WebSocket>, ApiError> {
        let wants = call
            .header(header::UPGRADE)
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
        if !wants {
            return Ok(None);
        }
        let key = call
            .header(header::SEC_WEBSOCKET_KEY)
            .ok_or_else(|| ApiError::bad_request("a WebSocket upgrade needs Sec-WebSocket-Key"))?;
        if call.header(header::SEC_WEBSOCKET_VERSION) != Some("13") {
            return Err(ApiError::bad_request("WebSocket version 13 only"));
        }
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let upgrade = call
            .upgrade
            .take()
            .ok_or_else(|| ApiError::bad_request("this connection cannot be upgraded"))?;
        Ok(Some(WebSocket { accept, upgrade }))
    }

    /// Answer 101, then relay the stream's messages as text frames (heartbeats as pings)
    /// until either side ends; the client's frames are read (answering pings, noticing close).
    fn respond(self, rx: mpsc::Receiver<Out>) -> Response<Body> {
        self.respond_with(move |sink, incoming| relay(rx, sink, incoming, Out::ws))
    }

    /// Answer 101, then run `session` over the socket's two halves.
    pub(crate) fn respond_with<F, Fut>(self, session: F) -> Response<Body>
    where
        F: FnOnce(WsSink, WsIncoming) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        use futures::StreamExt;
        use tokio_tungstenite::tungstenite::protocol::Role;
        let upgrade = self.upgrade;
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                hyper_util::rt::TokioIo::new(upgraded),
                Role::Server,
                None,
            )
            .await;
            let (sink, incoming) = ws.split();
            session(sink, incoming).await;
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::UPGRADE, "websocket")
            .header(header::CONNECTION, "Upgrade")
            .header(header::SEC_WEBSOCKET_ACCEPT, self.accept)
            .body(crate::call::empty())
            .expect("response builds")
    }
}

type WsStream =
    tokio_tungstenite::WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>;
pub(crate) type WsSink =
    futures::stream::SplitSink<WsStream, tokio_tungstenite::tungstenite::Message>;
pub(crate) type WsIncoming = futures::stream::SplitStream<WsStream>;

/// Relay messages as frames (`frame` makes each) until either side ends; the client's frames
/// are read (answering pings, noticing close).
pub(crate) async fn relay<T>(
    mut rx: mpsc::Receiver<T>,
    mut sink: WsSink,
    mut incoming: WsIncoming,
    frame: fn(T) -> tokio_tungstenite::tungstenite::Message,
) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(o) => {
                    if sink.send(frame(o)).await.is_err() {
                        break;
                    }
                }
                None => {
                    let _ = sink.send(Message::Close(None)).await;
                    break;
                }
            },
            msg = incoming.next() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    // Dropping `rx` tells the producer the client is gone.
}

/// A group read's records (of several topics), each topic's redacted for `who` where the
/// topic requires it; in their order.
pub(crate) async fn redact_mixed(
    app: &App,
    who: &Principal,
    records: Vec<(String, StoredRecord)>,
) -> Result<Vec<(String, StoredRecord)>, ApiError> {
    let mut by_topic: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
    for (i, (t, _)) in records.iter().enumerate() {
        by_topic.entry(t.clone()).or_default().push(i);
    }
    let mut records: Vec<Option<(String, StoredRecord)>> = records.into_iter().map(Some).collect();
    for (topic, at) in by_topic {
        if !app.redaction.applies(Some(who), &who.tenant, &topic) {
            continue;
        }
        let mut batch: Vec<StoredRecord> = at
            .iter()
            .map(|i| records[*i].take().expect("once").1)
            .collect();
        app.redaction
            .apply(Some(who), &who.tenant, &topic, &mut batch)
            .await?;
        for (i, r) in at.into_iter().zip(batch) {
            records[i] = Some((topic.clone(), r));
        }
    }
    Ok(records.into_iter().map(|r| r.expect("put back")).collect())
}

/// One of a key's open streams: counted against `max_streams_per_key` while it lives, and
/// ended when the server stops or the key is revoked.
struct Lease {
    app: Arc<App>,
    key_id: String,
    closing: tokio::sync::watch::Receiver<bool>,
    revocations: tokio::sync::watch::Receiver<u64>,
}

impl Lease {
    fn take(app: &Arc<App>, who: &Principal) -> Result<Lease, ApiError> {
        let mut open = app.streams.lock().expect("streams");
        let n = open.entry(who.key_id.clone()).or_default();
        if *n >= app.http.max_streams_per_key {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                42902,
                format!(
                    "this key has {n} streams open; the limit is {} (http.max_streams_per_key)",
                    app.http.max_streams_per_key
                ),
            ));
        }
        *n += 1;
        Ok(Lease {
            app: app.clone(),
            key_id: who.key_id.clone(),
            closing: app.closing.subscribe(),
            revocations: app.directory.revocations(),
        })
    }

    /// Should the stream end now?
    fn over(&self) -> bool {
        *self.closing.borrow() || self.app.directory.is_revoked(&self.key_id)
    }

    /// Resolves when the stream must end: the server stops or the key is revoked.
    async fn ended(&mut self) {
        loop {
            if self.over() {
                return;
            }
            tokio::select! {
                _ = self.closing.changed() => {}
                changed = self.revocations.changed() => {
                    if changed.is_err() {
                        // The directory is gone: the server is stopping.
                        return;
                    }
                }
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut open = self.app.streams.lock().expect("streams");
        if let Some(n) = open.get_mut(&self.key_id) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key_id);
            }
        }
    }
}

/// Send `b`, unless the client is gone or the stream must end: then `false`.
async fn send(tx: &mpsc::Sender<Out>, lease: &mut Lease, b: Out) -> bool {
    if lease.over() {
        return false;
    }
    tokio::select! {
        sent = tx.send(b) => sent.is_ok(),
        _ = lease.ended() => false,
    }
}

#[allow(clippy::too_many_arguments)]
async fn topic_stream(
    app: Arc<App>,
    who: Principal,
    full: String,
    (topic, render): (String, Render),
    mut positions: Vec<u64>,
    heartbeat: Duration,
    tx: mpsc::Sender<Out>,
    mut lease: Lease,
) {
    let mut quiet_since = tokio::time::Instant::now();
    loop {
        let mut sent = false;
        for p in 0..positions.len() {
            let mut read = match app
                .log
                .read(&full, p as u32, positions[p], 500, 1 << 20)
                .await
            {
                Ok(r) => r,
                Err(sluice_log::LogError::OffsetOutOfRange { start, .. }) => {
                    // Retention passed the reader: go on from the oldest event kept.
                    positions[p] = start;
                    continue;
                }
                Err(e) => {
                    let v = serde_json::json!({"message": e.to_string()});
                    let _ = send(&tx, &mut lease, Out::Error(v)).await;
                    return;
                }
            };
            if let Err(e) = app
                .redaction
                .apply(Some(&who), &who.tenant, &topic, &mut read.records)
                .await
            {
                let v = serde_json::json!({"error_code": e.error_code, "message": e.message});
                let _ = send(&tx, &mut lease, Out::Error(v)).await;
                return;
            }
            for r in &read.records {
                positions[p] = r.offset + 1;
                let out = Out::Message {
                    id: cursor(&positions),
                    data: event_json(r, &topic, render),
                };
                if !send(&tx, &mut lease, out).await {
                    return;
                }
                sent = true;
            }
            positions[p] = positions[p].max(read.next_offset);
        }
        if sent {
            quiet_since = tokio::time::Instant::now();
            continue;
        }
        let until_heartbeat = heartbeat.saturating_sub(quiet_since.elapsed());
        if until_heartbeat.is_zero() {
            if !send(&tx, &mut lease, Out::Heartbeat).await {
                return;
            }
            quiet_since = tokio::time::Instant::now();
            continue;
        }
        // Wait for any partition to grow, the heartbeat, the client leaving or shutdown.
        let waits = positions.iter().enumerate().map(|(p, o)| {
            let log = app.log.clone();
            let full = full.clone();
            let o = *o;
            Box::pin(async move { log.wait_for(&full, p as u32, o, until_heartbeat).await })
        });
        tokio::select! {
            _ = futures::future::select_all(waits) => {}
            _ = tx.closed() => return,
            _ = lease.ended() => return,
        }
    }
}

async fn group_stream(
    app: Arc<App>,
    who: Principal,
    (tenant, group, instance): (String, String, String),
    heartbeat: Duration,
    render: Render,
    tx: mpsc::Sender<Out>,
    mut lease: Lease,
) {
    let mut quiet_since = tokio::time::Instant::now();
    'serve: loop {
        let wait = heartbeat
            .saturating_sub(quiet_since.elapsed())
            .min(Duration::from_secs(1));
        let limits = ReadLimits {
            max_bytes: None,
            timeout_ms: Some(wait.as_millis() as u64),
        };
        let read = tokio::select! {
            r = app.groups.read(&tenant, &group, &instance, limits, |topic, r| {
                Ok((topic.to_owned(), r.clone()))
            }) => r.map_err(ApiError::from),

            _ = tx.closed() => break 'serve,
            _ = lease.ended() => break 'serve,
        };
        match read {
            Ok(messages) if messages.is_empty() => {
                if quiet_since.elapsed() >= heartbeat {
                    if !send(&tx, &mut lease, Out::Heartbeat).await {
                        break;
                    }
                    quiet_since = tokio::time::Instant::now();
                }
            }
            Ok(records) => {
                let records = match redact_mixed(&app, &who, records).await {
                    Ok(r) => r,
                    Err(e) => {
                        let v =
                            serde_json::json!({"error_code": e.error_code, "message": e.message});
                        let _ = send(&tx, &mut lease, Out::Error(v)).await;
                        break;
                    }
                };
                for (topic, r) in records {
                    let m = Out::Message {
                        id: format!("{}:{}", r.partition, r.offset),
                        data: event_json(&r, &topic, render),
                    };
                    if !send(&tx, &mut lease, m).await {
                        break 'serve;
                    }
                }
                quiet_since = tokio::time::Instant::now();
            }
            Err(e) => {
                let v = serde_json::json!({"error_code": e.error_code, "message": e.message});
                let _ = send(&tx, &mut lease, Out::Error(v)).await;
                break;
            }
        }
    }
    // Leave the group (committing positions) so the partitions move on at once.
    if let Err(e) = app.groups.delete_instance(&tenant, &group, &instance).await {
        tracing::debug!(error = %e, "stream consumer left");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let c = cursor(&[17, 5, 0]);
        assert_eq!(c, "0:17,1:5,2:0");
        assert_eq!(
            parse_cursor(&c, 4),
            Some(vec![Some(17), Some(5), Some(0), None])
        );
        assert_eq!(parse_cursor("0:x", 1), None);
        assert_eq!(parse_cursor("9:1", 1), Some(vec![None]));
    }
}
