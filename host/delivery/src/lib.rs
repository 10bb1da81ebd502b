//! Webhook subscriptions (API-marketplace subscribers): signed delivery under the Standard
//! Webhooks specification, with retries, dead letters, replay and re-drive.
//!
//! - [`subscription`]: the definition and its checks.
//! - [`rules`]: what subscriptions and triggers share: patterns, targets, CEL expressions.
//! - [`signing`]: `webhook-signature` values.
//! - [`egress`]: outbound HTTP that cannot be pointed at internal addresses.
//! - [`delivery`]: one subscription's delivery loop and its rules.
//! - [`trigger`], `trigger_loop`: workflow event triggers, and the per-tenant loop that
//!   delivers them.
//!
//! [`Webhooks`] owns every tenant's subscriptions (stored in `_subscriptions`, the newest
//! record per `<tenant>/<id>` wins), their committed offsets (in `_offsets`, keys
//! `subscription/<tenant>/<id>/<topic>/<partition>`), their running delivery loops, and the
//! record of every attempt (kept in memory per subscription, newest first, and appended to
//! `_webhook_attempts`, 14 days).

pub mod delivery;
pub mod egress;
pub mod rules;
pub mod signing;
pub mod subscription;
pub mod trigger;
mod trigger_loop;

pub use trigger_loop::trigger_not_found;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sluice_log::{Log, LogError};
use tokio::sync::{mpsc, watch};

use delivery::{Command, Runner};
use egress::Egress;
use sluice_ingest::catalog::Catalog;
use sluice_tenancy::Clock;
use sluice_tenancy::error::ApiError;
use sluice_tenancy::internal_topics;
use sluice_tenancy::internal_topics::OFFSETS_TOPIC;
use sluice_tenancy::quotas::QuotaBook;
use subscription::{Shared, Subscription};

pub const SUBSCRIPTIONS_TOPIC: &str = "_subscriptions";
/// Tenants' workflow triggers (`<tenant>/<id>`) and their signing secrets (`<tenant>`).
pub const TRIGGERS_TOPIC: &str = "_triggers";
/// The id of a tenant's trigger delivery loop (attempts and offsets are kept under it).
pub const TRIGGER_LOOP: &str = "triggers";
pub const ATTEMPTS_TOPIC: &str = "_webhook_attempts";
/// On dead letters: the subscription that gave up on the event.
pub const SUBSCRIPTION_HEADER: &str = "sluice_subscription";
/// Attempts kept in memory per subscription.
const ATTEMPTS_KEPT: usize = 1_000;
const ATTEMPTS_RETENTION_MS: i64 = 14 * 24 * 3600 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Delivered,
    Retrying,
    Throttled,
    Failed,
    DeadLettered,
    Disabled,
}

/// One delivery attempt, as `GET /v1/subscriptions/{id}/attempts` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    /// The record's key in `_webhook_attempts`.
    #[serde(skip_serializing, default)]
    pub tenant: String,
    pub subscription: String,
    pub event_id: String,
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub attempt: u32,
    pub time_ms: i64,
    pub status: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
    /// The start of the endpoint's answer.
    pub response: String,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_ms: Option<i64>,
}

type Key = (String, String);
/// A subscription's committed offsets: (topic, partition) → offset.
type Offsets = BTreeMap<(String, u32), u64>;

struct Running {
    stop: watch::Sender<bool>,
    commands: mpsc::Sender<Command>,
    task: tokio::task::JoinHandle<()>,
}

pub struct Webhooks {
    log: Log,
    /// Deliveries of topics that require redaction are redacted.
    redaction: Arc<sluice_ingest::redaction::Redaction>,
    /// Dead letters that could not be written at the first try (each retried until written).
    pub dead_letter_failures: std::sync::atomic::AtomicU64,
    /// The time that schedules retries and disable windows (tests move it).
    clock: Arc<Clock>,
    /// The tenant's event catalog: the types a subscription may filter on.
    catalog: Arc<Catalog>,
    /// Tenants' delivery rates and subscription counts.
    quotas: Arc<QuotaBook>,
    pub egress: Egress,
    pub(crate) client: reqwest::Client,
    subs: Mutex<HashMap<Key, Shared>>,
    offsets: Mutex<HashMap<Key, Offsets>>,
    running: tokio::sync::Mutex<HashMap<Key, Running>>,
    attempts: Mutex<HashMap<Key, VecDeque<Attempt>>>,
    attempt_log: mpsc::UnboundedSender<Attempt>,
    triggers: Mutex<HashMap<Key, trigger::Trigger>>,
    trigger_secrets: Mutex<HashMap<String, String>>,
    /// Per subscription, the newest attempt of each event as found at start: its delivery
    /// loop resumes retries where they were and skips what was done past its offsets.
    recovered: Mutex<HashMap<Key, HashMap<String, Attempt>>>,
}

fn offsets_key(tenant: &str, id: &str, topic: &str, partition: u32) -> String {
    format!("subscription/{tenant}/{id}/{topic}/{partition}")
}

fn check_error(message: String) -> ApiError {
    ApiError::new(http::StatusCode::UNPROCESSABLE_ENTITY, 42216, message)
}

pub fn not_found(id: &str) -> ApiError {
    ApiError::new(
        http::StatusCode::NOT_FOUND,
        40408,
        format!("subscription `{id}` does not exist"),
    )
}

impl Webhooks {
    /// `committed`: the records of `_offsets`, read once for every owner.
    pub async fn load(
        log: Log,
        egress: Egress,
        committed: &[sluice_log::Record],
        clock: Arc<Clock>,
        catalog: Arc<Catalog>,
        quotas: Arc<QuotaBook>,
        redaction: Arc<sluice_ingest::redaction::Redaction>,
    ) -> Result<Webhooks, LogError> {
        internal_topics::ensure(
            &log,
            SUBSCRIPTIONS_TOPIC,
            "webhook subscriptions",
            &[internal_topics::compact()],
        )
        .await?;
        internal_topics::ensure(
            &log,
            ATTEMPTS_TOPIC,
            "webhook delivery attempts",
            &[("retention.ms", json!(ATTEMPTS_RETENTION_MS))],
        )
        .await?;
        let mut defs: HashMap<Key, Subscription> = HashMap::new();
        internal_topics::replay(&log, SUBSCRIPTIONS_TOPIC, |_, r| {
            let Some(key) = r.key.as_ref().and_then(|k| std::str::from_utf8(k).ok()) else {
                return;
            };
            let Some((tenant, id)) = key.split_once('/') else {
                return;
            };
            let k = (tenant.to_owned(), id.to_owned());
            match serde_json::from_slice::<Value>(r.value_bytes()) {
                Ok(v) if v["deleted"] == json!(true) => {
                    defs.remove(&k);
                }
                Ok(v) => match serde_json::from_value::<Subscription>(v["subscription"].clone()) {
                    Ok(s) => {
                        defs.insert(k, s);
                    }
                    Err(e) => tracing::warn!("skipping an unreadable subscription: {e}"),
                },
                Err(e) => tracing::warn!("skipping an unreadable subscription: {e}"),
            }
        })
        .await?;
        let mut subs = HashMap::new();
        for (k, s) in defs {
            // Checked when stored; only the programs need compiling again.
            match s.compile() {
                Ok(c) => {
                    subs.insert(k, Arc::new((s, c)));
                }
                Err(e) => tracing::warn!(id = s.id, "skipping a subscription: {e}"),
            }
        }
        let mut offsets: HashMap<Key, Offsets> = HashMap::new();
        for r in committed {
            let Some(rest) = r
                .key
                .as_ref()
                .and_then(|k| std::str::from_utf8(k).ok())
                .and_then(|k| k.strip_prefix("subscription/"))
            else {
                continue;
            };
            let parts: Vec<&str> = rest.split('/').collect();
            let [tenant, id, topic, partition] = parts.as_slice() else {
                continue;
            };
            let (Ok(p), Ok(v)) = (
                partition.parse::<u32>(),
                serde_json::from_slice::<Value>(r.value_bytes()),
            ) else {
                continue;
            };
            let k = ((*tenant).to_owned(), (*id).to_owned());
            match v["offset"].as_u64() {
                Some(o) => {
                    offsets
                        .entry(k)
                        .or_default()
                        .insert(((*topic).to_owned(), p), o);
                }
                None => {
                    offsets.remove(&k);
                }
            }
        }
        // The newest attempts, back into memory.
        let mut attempts: HashMap<Key, VecDeque<Attempt>> = HashMap::new();
        let (_, end) = log.offsets(ATTEMPTS_TOPIC, 0)?;
        log.scan(ATTEMPTS_TOPIC, 0, end.saturating_sub(100_000), end, |s| {
            if let Ok(mut a) = serde_json::from_slice::<Attempt>(s.record.value_bytes())
                && let Some(tenant) = s
                    .record
                    .key
                    .as_ref()
                    .and_then(|k| std::str::from_utf8(k).ok())
            {
                a.tenant = tenant.to_owned();
                let q = attempts
                    .entry((a.tenant.clone(), a.subscription.clone()))
                    .or_default();
                q.push_front(a);
                q.truncate(ATTEMPTS_KEPT);
            }
            true
        })
        .await?;
        let recovered: HashMap<Key, HashMap<String, Attempt>> = attempts
            .iter()
            .map(|(k, q)| {
                let mut newest: HashMap<String, Attempt> = HashMap::new();
                for a in q {
                    newest
                        .entry(a.event_id.clone())
                        .or_insert_with(|| a.clone());
                }
                (k.clone(), newest)
            })
            .collect();
        internal_topics::ensure(
            &log,
            TRIGGERS_TOPIC,
            "workflow event triggers",
            &[internal_topics::compact()],
        )
        .await?;
        let mut triggers: HashMap<Key, trigger::Trigger> = HashMap::new();
        let mut trigger_secrets: HashMap<String, String> = HashMap::new();
        internal_topics::replay(&log, TRIGGERS_TOPIC, |_, r| {
            let Some(key) = r.key.as_ref().and_then(|k| std::str::from_utf8(k).ok()) else {
                return;
            };
            let Ok(v) = serde_json::from_slice::<Value>(r.value_bytes()) else {
                return;
            };
            match key.split_once('/') {
                None => {
                    if let Some(secret) = v["secret"].as_str() {
                        trigger_secrets.insert(key.to_owned(), secret.to_owned());
                    }
                }
                Some((tenant, id)) => {
                    let k = (tenant.to_owned(), id.to_owned());
                    if v["deleted"] == json!(true) {
                        triggers.remove(&k);
                    } else if let Ok(t) =
                        serde_json::from_value::<trigger::Trigger>(v["trigger"].clone())
                    {
                        triggers.insert(k, t);
                    }
                }
            }
        })
        .await?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_attempts(log.clone(), rx));
        Ok(Webhooks {
            redaction,
            dead_letter_failures: std::sync::atomic::AtomicU64::new(0),
            clock,
            catalog,
            quotas,
            client: egress.client(),
            egress,
            log,
            subs: Mutex::new(subs),
            offsets: Mutex::new(offsets),
            running: tokio::sync::Mutex::new(HashMap::new()),
            attempts: Mutex::new(attempts),
            attempt_log: tx,
            triggers: Mutex::new(triggers),
            trigger_secrets: Mutex::new(trigger_secrets),
            recovered: Mutex::new(recovered),
        })
    }

    /// Start every enabled subscription (at start-up).
    pub async fn resume(self: &Arc<Self>) {
        let all: Vec<(Key, Shared)> = self
            .subs
            .lock()
            .expect("subs")
            .iter()
            .filter(|(_, s)| s.0.enabled)
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        for ((tenant, _), s) in all {
            self.start(&tenant, s).await;
        }
        let tenants: std::collections::BTreeSet<String> = self
            .triggers
            .lock()
            .expect("triggers")
            .keys()
            .map(|(t, _)| t.clone())
            .collect();
        for tenant in tenants {
            if let Err(e) = self.rebuild_triggers(&tenant).await {
                tracing::error!(tenant, error = %e.message, "starting triggers");
            }
        }
    }

    async fn start(self: &Arc<Self>, tenant: &str, sub: Shared) {
        let key = (tenant.to_owned(), sub.0.id.clone());
        let committed = self
            .offsets
            .lock()
            .expect("offsets")
            .get(&key)
            .cloned()
            .unwrap_or_default();
        let recovered = self
            .recovered
            .lock()
            .expect("recovered")
            .remove(&key)
            .unwrap_or_default();
        let (stop, stop_rx) = watch::channel(false);
        let (commands, commands_rx) = mpsc::channel(16);
        let runner = Runner::new(self.clone(), tenant.to_owned(), sub, committed, recovered);
        let webhooks = self.clone();
        let key2 = key.clone();
        let task = tokio::spawn(async move {
            if let Some(reason) = runner.run(stop_rx, commands_rx).await {
                webhooks.disable(&key2.0, &key2.1, reason).await;
            }
        });
        let mut running = self.running.lock().await;
        if let Some(old) = running.insert(
            key,
            Running {
                stop,
                commands,
                task,
            },
        ) {
            let _ = old.stop.send(true);
        }
    }

    async fn stop(&self, tenant: &str, id: &str) {
        let r = self
            .running
            .lock()
            .await
            .remove(&(tenant.to_owned(), id.to_owned()));
        if let Some(r) = r {
            let _ = r.stop.send(true);
            let _ = r.task.await;
        }
    }

    /// Stop every delivery loop (each commits what is done): for shutdown.
    pub async fn stop_all(&self) {
        let all: Vec<Running> = self.running.lock().await.drain().map(|(_, r)| r).collect();
        for r in &all {
            let _ = r.stop.send(true);
        }
        for r in all {
            let _ = r.task.await;
        }
    }

    /// The subscription disabled itself (410, failing too long): store that, raise an alert.
    async fn disable(&self, tenant: &str, id: &str, reason: String) {
        tracing::warn!(
            tenant,
            subscription = id,
            reason,
            "webhook subscription disabled"
        );
        self.running
            .lock()
            .await
            .remove(&(tenant.to_owned(), id.to_owned()));
        let Some(current) = self.get(tenant, id) else {
            // The trigger loop: its triggers stay as they are; the alert says what happened.
            self.alert(tenant, id, "", &reason).await;
            return;
        };
        let mut s = current.0.clone();
        s.enabled = false;
        s.disabled_reason = Some(reason.clone());
        if let Err(e) = self.persist(tenant, &s).await {
            tracing::error!(error = %e.message, "storing a disabled subscription");
        }
        let Ok(compiled) = s.compile() else {
            return;
        };
        self.subs.lock().expect("subs").insert(
            (tenant.to_owned(), id.to_owned()),
            Arc::new((s.clone(), compiled)),
        );
        self.alert(tenant, id, &s.url, &reason).await;
    }

    async fn alert(&self, tenant: &str, id: &str, url: &str, reason: &str) {
        let alert = json!({
            "type": "sluice.webhook.endpoint.disabled", "tenant": tenant,
            "subscription": id, "url": url, "reason": reason,
            "time_ms": sluice_tenancy::now_ms(),
        });
        if let Err(e) = internal_topics::append(
            &self.log,
            sluice_tenancy::internal_topics::ALERTS_TOPIC,
            format!("webhook/{tenant}/{id}"),
            serde_json::to_vec(&alert).expect("serializes"),
        )
        .await
        {
            tracing::error!(error = %e.message, "writing an alert");
        }
    }

    async fn persist(&self, tenant: &str, s: &Subscription) -> Result<(), ApiError> {
        internal_topics::append(
            &self.log,
            SUBSCRIPTIONS_TOPIC,
            format!("{tenant}/{}", s.id),
            serde_json::to_vec(&json!({ "subscription": s })).expect("serializes"),
        )
        .await
    }

    pub fn get(&self, tenant: &str, id: &str) -> Option<Shared> {
        self.subs
            .lock()
            .expect("subs")
            .get(&(tenant.to_owned(), id.to_owned()))
            .cloned()
    }

    pub fn list(&self, tenant: &str) -> Vec<Shared> {
        let mut out: Vec<Shared> = self
            .subs
            .lock()
            .expect("subs")
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|(_, s)| s.clone())
            .collect();
        out.sort_by(|a, b| {
            a.0.created_ms
                .cmp(&b.0.created_ms)
                .then(a.0.id.cmp(&b.0.id))
        });
        out
    }

    /// Can deliveries go to `url` (a URL, and not to an address egress refuses)?
    pub fn check_endpoint(&self, url: &str) -> Result<reqwest::Url, String> {
        self.egress.check_url(url)
    }

    /// One attempt outside the subscription's topics (a FHIR heartbeat), recorded, not retried.
    pub async fn send_once(
        &self,
        tenant: &str,
        id: &str,
        event_id: &str,
        body: Bytes,
    ) -> Result<(), String> {
        let sub = self
            .get(tenant, id)
            .ok_or_else(|| format!("subscription `{id}` does not exist"))?;
        delivery::send_once(self, tenant, &sub, event_id, body).await
    }

    /// Create (no `current`) or replace a subscription, check it, store it and (re)start its
    /// delivery loop.
    pub async fn put(
        self: &Arc<Self>,
        tenant: &str,
        mut s: Subscription,
        current: Option<&Subscription>,
    ) -> Result<Subscription, ApiError> {
        let known: Vec<String> = self
            .catalog
            .active(tenant)
            .into_iter()
            .map(|(pattern, _)| pattern)
            .collect();
        let compiled = s
            .check(
                &self.egress,
                |t| {
                    self.log
                        .topic(&sluice_tenancy::log_name(tenant, t))
                        .is_some()
                },
                &known,
            )
            .map_err(check_error)?;
        // PHI leaves only over TLS (loopback aside: it never leaves the machine).
        let phi = s.topics.iter().any(|t| {
            self.log
                .inspect_topic(&sluice_tenancy::log_name(tenant, t), |m, _| {
                    sluice_log::sealing::sealed(m)
                })
                .unwrap_or(false)
        });
        if phi && !egress::tls_or_loopback(&s.url) {
            return Err(check_error(format!(
                "url: a subscription to PHI topics delivers to https endpoints only, not `{}`",
                s.url
            )));
        }
        let now = sluice_tenancy::now_ms();
        match current {
            None => {
                self.quotas.check_count(
                    tenant,
                    "max_subscriptions",
                    self.list(tenant).len() as u64,
                    self.quotas.limits(tenant).max_subscriptions,
                )?;
                // Sluice's own subscriptions (a FHIR Subscription's) come with their id; the
                // API refuses one from clients.
                if s.id.is_empty() {
                    s.id = format!("sub_{}", uuid::Uuid::now_v7().simple());
                }
                s.created_ms = now;
                if s.secret.is_empty() {
                    s.secret = s.new_secret();
                }
            }
            Some(c) => {
                s.id = c.id.clone();
                s.created_ms = c.created_ms;
                if s.secret.is_empty() {
                    s.secret = c.secret.clone();
                    s.old_secrets = c.old_secrets.clone();
                }
                if s.enabled {
                    s.disabled_reason = None;
                }
            }
        }
        s.updated_ms = now;
        if current.is_none() {
            // Where it starts is decided now and stored, so nothing produced after this
            // answer can be missed, restart or not.
            let mut start = Vec::new();
            for t in &s.topics {
                let full = sluice_tenancy::log_name(tenant, t);
                let n = self
                    .log
                    .inspect_topic(&full, |m, _| m.partitions)
                    .unwrap_or(0);
                for p in 0..n {
                    let (first, end) = self
                        .log
                        .offsets(&full, p)
                        .map_err(|e| sluice_tenancy::error::from_log(e, t))?;
                    let at = if s.start == "earliest" { first } else { end };
                    start.push(((t.clone(), p), at));
                }
            }
            self.store_offsets(tenant, &s.id, &start).await?;
        }
        self.stop(tenant, &s.id).await;
        self.persist(tenant, &s).await?;
        let shared = Arc::new((s.clone(), compiled));
        self.subs
            .lock()
            .expect("subs")
            .insert((tenant.to_owned(), s.id.clone()), shared.clone());
        if s.enabled {
            self.start(tenant, shared).await;
        }
        Ok(s)
    }

    pub async fn delete(&self, tenant: &str, id: &str) -> Result<(), ApiError> {
        if self.get(tenant, id).is_none() {
            return Err(not_found(id));
        }
        self.stop(tenant, id).await;
        internal_topics::append(
            &self.log,
            SUBSCRIPTIONS_TOPIC,
            format!("{tenant}/{id}"),
            serde_json::to_vec(&json!({ "deleted": true })).expect("serializes"),
        )
        .await?;
        let key = (tenant.to_owned(), id.to_owned());
        self.subs.lock().expect("subs").remove(&key);
        self.offsets.lock().expect("offsets").remove(&key);
        Ok(())
    }

    /// Replace the secret; the old one keeps signing for `grace`.
    pub async fn rotate(
        self: &Arc<Self>,
        tenant: &str,
        id: &str,
        new_secret: Option<String>,
        grace: Duration,
    ) -> Result<Subscription, ApiError> {
        let current = self.get(tenant, id).ok_or_else(|| not_found(id))?;
        let mut s = current.0.clone();
        let now = self.clock.now_ms();
        s.old_secrets.retain(|o| o.expires_ms > now);
        s.old_secrets.push(subscription::OldSecret {
            secret: s.secret.clone(),
            expires_ms: now + grace.as_millis() as i64,
        });
        s.secret = new_secret.unwrap_or_else(signing::new_secret);
        if signing::key_of(&s.secret).is_none() {
            return Err(check_error(
                "secret: use `whsec_` and 16-64 bytes of base64".into(),
            ));
        }
        self.put(tenant, s, Some(&current.0)).await
    }

    /// Commit a subscription's offsets (durably, then in memory).
    pub async fn store_offsets(
        &self,
        tenant: &str,
        id: &str,
        offsets: &[((String, u32), u64)],
    ) -> Result<(), ApiError> {
        // Offsets that did not move are not appended again.
        let offsets: Vec<((String, u32), u64)> = {
            let all = self.offsets.lock().expect("offsets");
            let now = all.get(&(tenant.to_owned(), id.to_owned()));
            offsets
                .iter()
                .filter(|(tp, o)| now.and_then(|n| n.get(tp)) != Some(o))
                .cloned()
                .collect()
        };
        if offsets.is_empty() {
            return Ok(());
        }
        let records = offsets
            .iter()
            .map(|((t, p), o)| {
                (
                    offsets_key(tenant, id, t, *p),
                    serde_json::to_vec(&json!({ "offset": o })).expect("serializes"),
                )
            })
            .collect();
        internal_topics::append_all(&self.log, OFFSETS_TOPIC, records).await?;
        self.offsets
            .lock()
            .expect("offsets")
            .entry((tenant.to_owned(), id.to_owned()))
            .or_default()
            .extend(offsets.iter().cloned());
        Ok(())
    }

    pub fn committed(&self, tenant: &str, id: &str) -> BTreeMap<(String, u32), u64> {
        self.offsets
            .lock()
            .expect("offsets")
            .get(&(tenant.to_owned(), id.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    pub fn record(&self, a: Attempt) {
        let _ = self.attempt_log.send(a.clone());
        let mut all = self.attempts.lock().expect("attempts");
        let q = all
            .entry((a.tenant.clone(), a.subscription.clone()))
            .or_default();
        q.push_front(a);
        q.truncate(ATTEMPTS_KEPT);
    }

    /// The newest attempts first; only those of `event_id` if given.
    pub fn attempts(
        &self,
        tenant: &str,
        id: &str,
        event_id: Option<&str>,
        limit: usize,
    ) -> Vec<Attempt> {
        self.attempts
            .lock()
            .expect("attempts")
            .get(&(tenant.to_owned(), id.to_owned()))
            .map(|q| {
                q.iter()
                    .filter(|a| event_id.is_none_or(|e| a.event_id == e))
                    .take(limit)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Hand records to a running subscription for delivery again.
    pub async fn replay(
        &self,
        tenant: &str,
        id: &str,
        records: Vec<(String, sluice_log::StoredRecord)>,
    ) -> Result<(), ApiError> {
        let sender = self
            .running
            .lock()
            .await
            .get(&(tenant.to_owned(), id.to_owned()))
            .map(|r| r.commands.clone())
            .ok_or_else(|| {
                ApiError::conflict(
                    40908,
                    format!("subscription `{id}` is disabled; enable it first"),
                )
            })?;
        sender
            .send(Command::Replay(records))
            .await
            .map_err(|_| ApiError::unavailable("the subscription stopped"))
    }
}

/// Append attempts to `_webhook_attempts`, batched.
async fn write_attempts(log: Log, mut rx: mpsc::UnboundedReceiver<Attempt>) {
    let mut batch = Vec::new();
    while let Some(a) = rx.recv().await {
        batch.push(a);
        while let Ok(a) = rx.try_recv() {
            batch.push(a);
            if batch.len() >= 5_000 {
                break;
            }
        }
        let records = batch
            .drain(..)
            .map(|a| sluice_log::Record {
                key: Some(Bytes::from(a.tenant.clone())),
                value: Some(Bytes::from(serde_json::to_vec(&a).expect("serializes"))),
                headers: vec![],
                timestamp: sluice_tenancy::now_ms(),
            })
            .collect();
        if let Err(e) = internal_topics::append_records(&log, ATTEMPTS_TOPIC, records).await {
            if matches!(e.status, http::StatusCode::SERVICE_UNAVAILABLE) {
                tracing::debug!(error = %e.message, "recording attempts");
            } else {
                tracing::warn!(error = %e.message, "recording attempts");
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
