//! A Subscription's operations: `$status`, `$events` (replayed from its topic) and
//! `$get-ws-binding-token`, and the WebSocket channel a token binds.

use std::time::Duration;

use http::StatusCode;
use serde_json::json;
use sluice_tenancy::auth::{Principal, Role};
use sluice_tenancy::log_name;
use tokio::sync::mpsc;

use crate::notification::{self, Content, Kind, for_version};
use crate::notifier::{Running, notifications_topic};
use crate::subscription::Channel;
use crate::{Fhir, FhirError, FhirResponse, TOPIC, instant};

/// Events one `$events` answers at most (ask again from the last one for more).
pub const MAX_EVENTS_PER_QUERY: u64 = 100;
/// How long a WebSocket binding token is good for.
pub const WS_TOKEN_TTL_MS: i64 = 5 * 60 * 1000;
/// Unused binding tokens kept at most (the oldest go first).
pub const MAX_WS_TOKENS: usize = 10_000;
/// WebSocket connections per tenant.
pub const MAX_WS_PER_TENANT: usize = 100;
/// How long a new WebSocket has to send `bind-with-token`.
pub const WS_BIND_TIMEOUT: Duration = Duration::from_secs(30);

impl Fhir {
    /// A running Subscription of the caller's tenant (404 otherwise).
    fn running(&self, who: &Principal, id: &str) -> Result<Running, FhirError> {
        who.require(Role::Consume, TOPIC)?;
        self.subscribers(&who.tenant)
            .running
            .lock()
            .expect("running")
            .get(id)
            .cloned()
            .ok_or_else(|| {
                FhirError::new(
                    StatusCode::NOT_FOUND,
                    "not-found",
                    format!("Subscription/{id} is not a running Subscription of this server"),
                )
            })
    }

    /// `Subscription/{id}/$status`: a `searchset` Bundle holding its status (`query-status`).
    pub fn status(&self, who: &Principal, id: &str) -> Result<FhirResponse, FhirError> {
        let r = self.running(who, id)?;
        let now = self.clock.now_ms();
        let mut status = r.status_bundle(Kind::QueryStatus, now)["entry"][0]["resource"].clone();
        if let Some(e) = &r.error {
            if status["resourceType"] == "Parameters" {
                if let Some(p) = status["parameter"].as_array_mut() {
                    p.push(json!({"name": "error", "valueCodeableConcept": {"text": e}}));
                }
            } else {
                status["error"] = json!([{"text": e}]);
            }
        }
        Ok(FhirResponse {
            status: StatusCode::OK,
            headers: Vec::new(),
            body: Some(json!({
                "resourceType": "Bundle",
                "id": uuid::Uuid::new_v4().to_string(),
                "type": "searchset",
                "timestamp": instant(now),
                "total": 1,
                "entry": [{"fullUrl": format!("urn:uuid:{}", status["id"].as_str().unwrap_or_default()),
                           "resource": status, "search": {"mode": "match"}}],
            })),
        })
    }

    /// `Subscription/{id}/$events?eventsSinceNumber=&eventsUntilNumber=&content=`: the stored
    /// notifications of those events, as one `query-event` notification (at most
    /// [`MAX_EVENTS_PER_QUERY`] events; `content` may ask for less than the Subscription's).
    pub async fn events(
        &self,
        who: &Principal,
        id: &str,
        since: Option<&str>,
        until: Option<&str>,
        content: Option<&str>,
    ) -> Result<FhirResponse, FhirError> {
        let r = self.running(who, id)?;
        let number = |v: Option<&str>, name: &str, default: u64| match v {
            None => Ok(default),
            Some(s) => s.parse::<u64>().map_err(|_| {
                FhirError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    format!(
                        "{name} must be an event number, not `{}`",
                        s.chars().take(32).collect::<String>()
                    ),
                )
            }),
        };
        let since = number(since, "eventsSinceNumber", 1)?.max(1);
        let until = number(until, "eventsUntilNumber", r.events)?.min(r.events);
        let until = until.min(since.saturating_add(MAX_EVENTS_PER_QUERY - 1));
        let content = match content {
            None => r.spec.content,
            Some(c) => Content::parse(c).ok_or_else(|| {
                FhirError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    "content must be empty, id-only or full-resource",
                )
            })?,
        };
        let stored = if since <= until {
            self.stored_events(&who.tenant, id, since, until).await?
        } else {
            Vec::new()
        };
        let events: Vec<notification::NotificationEvent> = stored
            .into_iter()
            .map(|(mut e, resource)| {
                if let Some(f) = e.focus.as_mut() {
                    f.resource = resource;
                }
                e
            })
            .collect();
        let bundle = notification::bundle(
            &r.subscription_ref(),
            Kind::QueryEvent,
            r.events,
            &events,
            content,
            &instant(self.clock.now_ms()),
        );
        Ok(FhirResponse {
            status: StatusCode::OK,
            headers: Vec::new(),
            body: Some(for_version(bundle, r.spec.version)),
        })
    }

    /// `Subscription/{id}/$get-ws-binding-token`: a token a WebSocket binds with
    /// (`bind-with-token <token>` at `websocket-url`), good for [`WS_TOKEN_TTL_MS`].
    pub fn ws_binding_token(
        &self,
        who: &Principal,
        id: &str,
        websocket_url: &str,
    ) -> Result<FhirResponse, FhirError> {
        let r = self.running(who, id)?;
        if r.spec.channel != Channel::Websocket {
            return Err(FhirError::new(
                StatusCode::BAD_REQUEST,
                "invalid",
                format!("Subscription/{id} has no websocket channel"),
            ));
        }
        let now = self.clock.now_ms();
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let expires = now + WS_TOKEN_TTL_MS;
        {
            let mut tokens = self.ws_tokens.lock().expect("tokens");
            tokens.retain(|_, (_, _, e)| *e > now);
            if tokens.len() >= MAX_WS_TOKENS {
                let oldest = tokens
                    .iter()
                    .min_by_key(|(_, (_, _, e))| *e)
                    .map(|(t, _)| t.clone());
                if let Some(t) = oldest {
                    tokens.remove(&t);
                }
            }
            tokens.insert(token.clone(), (who.tenant.clone(), id.to_owned(), expires));
        }
        Ok(FhirResponse {
            status: StatusCode::OK,
            headers: Vec::new(),
            body: Some(json!({"resourceType": "Parameters", "parameter": [
                {"name": "token", "valueString": token},
                {"name": "expiration", "valueDateTime": instant(expires)},
                {"name": "subscription", "valueString": format!("Subscription/{id}")},
                {"name": "websocket-url", "valueUrl": websocket_url},
            ]})),
        })
    }

    /// A WebSocket of `tenant` sent `bind-with-token <token>`: the notifications to send it
    /// (the handshake first, then every new notification and the heartbeats), until the
    /// receiver is dropped. A token binds once.
    pub fn bind(
        self: &std::sync::Arc<Self>,
        tenant: &str,
        message: &str,
    ) -> Result<mpsc::Receiver<String>, String> {
        let token = message
            .trim()
            .strip_prefix("bind-with-token ")
            .ok_or("expected `bind-with-token <token>`")?
            .trim();
        let now = self.clock.now_ms();
        let (owner, id, expires) = self
            .ws_tokens
            .lock()
            .expect("tokens")
            .remove(token)
            .ok_or("unknown or used token")?;
        if owner != tenant || expires <= now {
            return Err("unknown or expired token".into());
        }
        let subscribers = self.subscribers(tenant);
        let running = subscribers
            .running
            .lock()
            .expect("running")
            .get(&id)
            .cloned()
            .ok_or("the Subscription is not running")?;
        {
            let mut open = self.ws_open.lock().expect("ws");
            let n = open.entry(tenant.to_owned()).or_default();
            if *n >= MAX_WS_PER_TENANT {
                return Err(format!("at most {MAX_WS_PER_TENANT} WebSockets per tenant"));
            }
            *n += 1;
        }
        let (tx, rx) = mpsc::channel(64);
        let fhir = self.clone();
        let tenant = tenant.to_owned();
        tokio::spawn(async move {
            fhir.feed(&tenant, &id, running, tx).await;
            let mut open = fhir.ws_open.lock().expect("ws");
            if let Some(n) = open.get_mut(&tenant) {
                *n -= 1;
            }
        });
        Ok(rx)
    }

    /// What a bound WebSocket receives.
    async fn feed(&self, tenant: &str, id: &str, running: Running, tx: mpsc::Sender<String>) {
        let topic = log_name(tenant, &notifications_topic(id));
        let Ok((_, mut next)) = self.log.offsets(&topic, 0) else {
            return;
        };
        let mut current = running;
        current.events = next.saturating_sub(1);
        let mut last_sent = self.clock.now_ms();
        let handshake = current.status_bundle(Kind::Handshake, last_sent);
        if tx.send(handshake.to_string()).await.is_err() {
            return;
        }
        loop {
            if tx.is_closed() || self.log.is_closed() {
                return;
            }
            let _ = self
                .log
                .wait_for(&topic, 0, next, Duration::from_millis(250))
                .await;
            match self.log.read(&topic, 0, next, 100, 4 << 20).await {
                Ok(read) => {
                    for s in &read.records {
                        let text = String::from_utf8_lossy(s.record.value_bytes()).into_owned();
                        if tx.send(text).await.is_err() {
                            return;
                        }
                        last_sent = self.clock.now_ms();
                        current.events = s.offset;
                    }
                    next = read.next_offset.max(next);
                }
                Err(sluice_log::LogError::TopicNotFound(_)) => return,
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
            if let Some(period) = current.spec.heartbeat {
                let now = self.clock.now_ms();
                if now - last_sent >= period as i64 * 1000 {
                    if let Some(r) = self
                        .subscribers(tenant)
                        .running
                        .lock()
                        .expect("running")
                        .get(id)
                    {
                        current.status = r.status.clone();
                    }
                    let beat = current.status_bundle(Kind::Heartbeat, now);
                    if tx.send(beat.to_string()).await.is_err() {
                        return;
                    }
                    last_sent = now;
                }
            }
        }
    }
}

/// The `websocket-url` for a request's base (`http://host/fhir/t` → `ws://host/fhir/t/$websocket`).
pub fn websocket_url(base: &str) -> String {
    let ws = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_owned()
    };
    format!("{ws}/$websocket")
}
