//! FHIR subscriptions out: one notifier per tenant tails the tenant's `fhir.resources` and
//! turns each change a Subscription's topic fires on (and its filters pass) into a
//! notification Bundle, appended to that Subscription's own topic
//! `fhir.subscription.{id}`:
//!
//! - offset 0 of that topic is the handshake, offset `n` is event `n`: event numbers are
//!   offsets, so they have no gaps, survive restarts, and `$events` reads them back;
//! - a rest-hook's notifications are delivered by the webhook engine (a webhook subscription
//!   `fhir-{id}` on that topic, per-key ordered: in order, retried on the webhook schedule for
//!   days, dead-lettered, every attempt recorded); a WebSocket channel reads the same topic;
//! - the Subscription's status follows its deliveries (`requested` until the handshake is
//!   delivered, `active`, `error` while failing, `off` when the client says so) and is
//!   written back as a new version of the resource;
//! - heartbeats go out when nothing was sent for `heartbeatPeriod` (on the clock tests move).
//!
//! The notifier commits its offset in `_offsets` (`fhir-notifier/{tenant}`) after the
//! notifications of what it read are durable; each notification carries the offset of the
//! change it is for, so a restart between the two notifies nothing twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use sluice_log::{EncodedRecords, LogError, NewTopic, PartitionAppend, Record, StoredRecord};
use sluice_tenancy::internal_topics::{self, OFFSETS_TOPIC};
use sluice_tenancy::log_name;

use crate::notification::{
    self, Content, Focus, Kind, NotificationEvent, SubscriptionRef, for_version,
};
use crate::subscription::{self, Channel, Spec, Version};
use crate::trigger::{self, Interaction, ResourceChange};
use crate::{BASE_HEADER, Fhir, PREVIOUS_HEADER, TOPIC, instant};

/// How long a Subscription's notifications are kept (what `$events` can replay).
pub const NOTIFICATION_RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;
/// Changes read per step.
const READ_BATCH: usize = 500;
/// Headers of each notification record: its event number, the change's offset in
/// `fhir.resources`, and the focus (what `$events` rebuilds a notification from).
pub const EVENT_NUMBER_HEADER: &str = "fhir_event_number";
pub const SOURCE_OFFSET_HEADER: &str = "fhir_source_offset";
const FOCUS_HEADER: &str = "fhir_focus";
const FOCUS_URL_HEADER: &str = "fhir_focus_url";
const METHOD_HEADER: &str = "fhir_method";

/// The topic holding a Subscription's notifications.
pub fn notifications_topic(id: &str) -> String {
    format!("fhir.subscription.{id}")
}

/// The webhook subscription that delivers a rest-hook Subscription's notifications.
pub fn webhook_id(id: &str) -> String {
    format!("fhir-{id}")
}

fn offsets_key(tenant: &str) -> String {
    format!("fhir-notifier/{tenant}")
}

/// A Subscription as the notifier runs it.
#[derive(Debug, Clone)]
pub struct Running {
    pub spec: Spec,
    /// `requested`, `active`, `error` or `off`: as it runs now.
    pub status: String,
    /// `{base}/Subscription/{id}`.
    pub reference: String,
    /// `http://host/fhir/{tenant}`: what focus references start with.
    pub base: String,
    /// The newest event's number (0: none yet).
    pub events: u64,
    /// When something was last appended or sent (a heartbeat is due `heartbeat` later).
    pub last_sent_ms: i64,
    /// Changes at or below this offset are notified already.
    pub notified_through: Option<u64>,
    /// Why its status is `error`, if it is.
    pub error: Option<String>,
}

impl Running {
    pub fn subscription_ref(&self) -> SubscriptionRef {
        SubscriptionRef {
            reference: self.reference.clone(),
            topic: self.spec.topic.clone(),
            status: self.status.clone(),
        }
    }

    /// A notification without events (handshake, heartbeat, query-status), in the
    /// Subscription's version.
    pub fn status_bundle(&self, kind: Kind, now_ms: i64) -> Value {
        let mut sub = self.subscription_ref();
        if kind == Kind::Handshake {
            sub.status = "requested".into();
        }
        for_version(
            notification::bundle(
                &sub,
                kind,
                self.events,
                &[],
                self.spec.content,
                &instant(now_ms),
            ),
            self.spec.version,
        )
    }
}

/// One tenant's Subscriptions and SubscriptionTopics: written by its notifier, read by the API.
#[derive(Default)]
pub struct Subscribers {
    pub running: Mutex<HashMap<String, Running>>,
    topics: Mutex<Topics>,
}

/// The tenant's SubscriptionTopics.
#[derive(Default)]
struct Topics {
    /// By canonical URL.
    by_url: HashMap<String, Arc<Value>>,
    /// The URL of each, by its id.
    url_of: HashMap<String, String>,
}

/// Why a step of the notifier did not finish: it is tried again (never skipped).
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("{0}")]
    Api(String),
}

impl From<sluice_tenancy::error::ApiError> for StepError {
    fn from(e: sluice_tenancy::error::ApiError) -> StepError {
        StepError::Api(e.message)
    }
}

/// A change read from `fhir.resources`.
struct Change {
    offset: u64,
    key: String,
    resource_type: String,
    id: String,
    interaction: Interaction,
    resource: Value,
    version: Version,
    base: String,
    previous_offset: Option<u64>,
    timestamp_ms: i64,
    /// The resource as notifications show it when the topic requires redaction (`None`
    /// inside: the component withheld it); unset, the resource as stored.
    shown: Option<Option<Value>>,
}

fn change_of(s: &StoredRecord) -> Option<Change> {
    let key = std::str::from_utf8(s.record.key.as_ref()?).ok()?.to_owned();
    let (resource_type, id) = key.split_once('/')?;
    let envelope: Value = serde_json::from_slice(s.record.value_bytes()).ok()?;
    let interaction = match envelope["event_type"].as_str()?.rsplit('.').next()? {
        "create" => Interaction::Create,
        "update" => Interaction::Update,
        "delete" => Interaction::Delete,
        _ => return None,
    };
    let header = |name: &str| {
        s.record
            .header(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_owned)
    };
    Some(Change {
        offset: s.offset,
        resource_type: resource_type.to_owned(),
        id: id.to_owned(),
        interaction,
        resource: envelope["payload"].clone(),
        version: Version::parse(&header("fhir_version").unwrap_or_default()),
        base: header(BASE_HEADER).unwrap_or_default(),
        previous_offset: header(PREVIOUS_HEADER).and_then(|o| o.parse().ok()),
        timestamp_ms: s.record.timestamp,
        shown: None,
        key,
    })
}

impl Fhir {
    /// The tenant's subscribers (empty until its notifier loads them).
    pub fn subscribers(&self, tenant: &str) -> Arc<Subscribers> {
        self.subscribers
            .lock()
            .expect("subscribers")
            .entry(tenant.to_owned())
            .or_default()
            .clone()
    }

    /// Start the tenant's notifier, once.
    pub(crate) fn start_notifier(self: &Arc<Self>, tenant: &str) {
        if !self
            .notifiers
            .lock()
            .expect("notifiers")
            .insert(tenant.to_owned())
        {
            return;
        }
        let fhir = self.clone();
        let tenant = tenant.to_owned();
        tokio::spawn(async move { fhir.notify(tenant).await });
    }

    /// Start the notifier of every tenant with a FHIR topic (at start-up).
    pub fn resume(self: &Arc<Self>) {
        let suffix = format!("/{TOPIC}");
        for t in self.log.topics("") {
            if let Some(tenant) = t.meta.name.strip_suffix(&suffix)
                && !tenant.contains('/')
            {
                self.start_notifier(tenant);
            }
        }
    }

    /// The tenant's notifier: load, then tail `fhir.resources` until the log closes.
    async fn notify(self: Arc<Self>, tenant: String) {
        let full = log_name(&tenant, TOPIC);
        let subscribers = self.subscribers(&tenant);
        let mut next = self
            .notifier_offsets
            .lock()
            .expect("notifier offsets")
            .get(&tenant)
            .copied()
            .unwrap_or(0);
        let mut pause = Duration::from_millis(100);
        // What was set up before `next`: registered again, without side effects.
        loop {
            match self.load(&tenant, &subscribers, next).await {
                Ok(()) => break,
                Err(_) if self.log.is_closed() => return,
                Err(e) => {
                    tracing::warn!(tenant, error = %e, "loading FHIR subscriptions; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
            }
        }
        let mut last_tick = std::time::Instant::now();
        loop {
            if self.log.is_closed() {
                return;
            }
            let step = self.step(&tenant, &subscribers, next).await;
            match step {
                Ok(n) if n > next => {
                    next = n;
                    pause = Duration::from_millis(100);
                }
                Ok(_) => {
                    let _ = self
                        .log
                        .wait_for(&full, 0, next, Duration::from_millis(500))
                        .await;
                }
                Err(e) => {
                    if self.log.is_closed() {
                        return;
                    }
                    tracing::warn!(tenant, error = %e, "FHIR notifications; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
            }
            if last_tick.elapsed() >= Duration::from_millis(250) {
                last_tick = std::time::Instant::now();
                self.tick(&tenant, &subscribers).await;
            }
        }
    }

    /// Register the Subscriptions and SubscriptionTopics changed before `until`.
    async fn load(
        &self,
        tenant: &str,
        subscribers: &Subscribers,
        until: u64,
    ) -> Result<(), StepError> {
        let full = log_name(tenant, TOPIC);
        let mut changes = Vec::new();
        self.log
            .scan(&full, 0, 0, until, |s| {
                let subscription_or_topic = s.record.key.as_ref().is_some_and(|k| {
                    k.starts_with(b"Subscription/") || k.starts_with(b"SubscriptionTopic/")
                });
                if subscription_or_topic && let Some(c) = change_of(&s) {
                    changes.push(c);
                }
                true
            })
            .await?;
        for c in changes {
            self.definition_changed(tenant, subscribers, &c, false)
                .await?;
        }
        Ok(())
    }

    /// Read changes from `next`, notify, commit: the offset to go on from.
    async fn step(
        &self,
        tenant: &str,
        subscribers: &Subscribers,
        next: u64,
    ) -> Result<u64, StepError> {
        let full = log_name(tenant, TOPIC);
        let read = self.log.read(&full, 0, next, READ_BATCH, 8 << 20).await?;
        if read.records.is_empty() {
            return Ok(read.next_offset.max(next));
        }
        let mut pending: HashMap<String, Vec<Record>> = HashMap::new();
        let now = self.clock.now_ms();
        // A `fhir.resources` that requires redaction: full-resource notifications carry the
        // redacted resource (what the component refuses, none).
        let full_content = subscribers
            .running
            .lock()
            .expect("running")
            .values()
            .any(|r| r.spec.content == Content::FullResource);
        let redacted = if full_content && self.redaction.applies(None, tenant, TOPIC) {
            let mut copy = read.records.clone();
            self.redaction.apply(None, tenant, TOPIC, &mut copy).await?;
            Some(copy)
        } else {
            None
        };
        for (i, s) in read.records.iter().enumerate() {
            let Some(mut c) = change_of(s) else { continue };
            if c.resource_type == "Subscription" || c.resource_type == "SubscriptionTopic" {
                // What was built so far goes first: a Subscription's setup reads its topic.
                self.flush(tenant, subscribers, &mut pending, now).await?;
                self.definition_changed(tenant, subscribers, &c, true)
                    .await?;
            }
            if let Some(r) = &redacted {
                c.shown = Some(change_of(&r[i]).map(|x| x.resource));
            }
            self.match_change(tenant, subscribers, &c, &mut pending)
                .await?;
        }
        self.flush(tenant, subscribers, &mut pending, now).await?;
        let after = read.next_offset;
        internal_topics::append(
            &self.log,
            OFFSETS_TOPIC,
            offsets_key(tenant),
            serde_json::to_vec(&json!({"offset": after})).expect("JSON"),
        )
        .await?;
        Ok(after)
    }

    /// Append the notifications built so far, per Subscription (each topic's records at once).
    async fn flush(
        &self,
        tenant: &str,
        subscribers: &Subscribers,
        pending: &mut HashMap<String, Vec<Record>>,
        now: i64,
    ) -> Result<(), StepError> {
        // Every Subscription's records at once: the appends share the log's group commits.
        let appends = pending.drain().map(|(id, records)| async move {
            let last_source = records
                .last()
                .and_then(|r| r.header(SOURCE_OFFSET_HEADER))
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.parse::<u64>().ok());
            let n = records.len() as u64;
            let topic = log_name(tenant, &notifications_topic(&id));
            let appended = self
                .log
                .append(
                    &topic,
                    vec![PartitionAppend {
                        partition: 0,
                        records: EncodedRecords::encode(&records, sluice_log::Compression::None),
                        event_ids: vec![None; records.len()],
                    }],
                )
                .await;
            (id, topic, n, last_source, appended)
        });
        let results = futures::future::join_all(appends).await;
        let mut running = subscribers.running.lock().expect("running");
        let mut failed = None;
        for (id, topic, n, last_source, appended) in results {
            match appended {
                Ok(_) => {
                    if let Some(r) = running.get_mut(&id) {
                        r.last_sent_ms = now;
                        r.notified_through = last_source.or(r.notified_through);
                    }
                    self.metrics
                        .notifications
                        .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                }
                // Deleted meanwhile: nothing to notify.
                Err(LogError::TopicNotFound(_)) => {
                    running.remove(&id);
                }
                Err(e) => {
                    // Numbers were given to events that may not be stored: count them again
                    // from the topic (event n is at offset n); the step is tried again.
                    if let (Some(r), Ok((_, end))) =
                        (running.get_mut(&id), self.log.offsets(&topic, 0))
                    {
                        r.events = end.saturating_sub(1);
                    }
                    failed.get_or_insert(e);
                }
            }
        }
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// The notifications one change makes, added to `pending`.
    async fn match_change(
        &self,
        tenant: &str,
        subscribers: &Subscribers,
        c: &Change,
        pending: &mut HashMap<String, Vec<Record>>,
    ) -> Result<(), StepError> {
        // The topics that could fire, each with the Subscriptions on it: a topic is evaluated
        // once per change however many subscribe to it.
        let candidates: HashMap<String, (Arc<Value>, Vec<String>)> = {
            let running = subscribers.running.lock().expect("running");
            let topics = subscribers.topics.lock().expect("topics");
            let mut by_topic: HashMap<String, (Arc<Value>, Vec<String>)> = HashMap::new();
            for (id, r) in running.iter() {
                if r.status == "off" || r.notified_through.is_some_and(|n| n >= c.offset) {
                    continue;
                }
                if let Some(t) = topics.by_url.get(&r.spec.topic) {
                    by_topic
                        .entry(r.spec.topic.clone())
                        .or_insert_with(|| (t.clone(), Vec::new()))
                        .1
                        .push(id.clone());
                }
            }
            by_topic
        };
        if candidates.is_empty() {
            return Ok(());
        }
        let needs_previous = candidates.values().any(|(t, _)| {
            t["resourceTrigger"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| r["queryCriteria"]["previous"].is_string())
        });
        let previous = match (needs_previous, c.previous_offset) {
            (true, Some(o)) => self.record_at(tenant, o).await?.and_then(|s| {
                serde_json::from_slice::<Value>(s.record.value_bytes())
                    .ok()
                    .map(|e| e["payload"].clone())
            }),
            _ => None,
        };
        let current = (c.interaction != Interaction::Delete).then_some(&c.resource);
        let change = ResourceChange {
            resource_type: &c.resource_type,
            interaction: c.interaction,
            previous: previous.as_ref(),
            current,
        };
        let mut fired = Vec::new();
        for (url, (topic, ids)) in &candidates {
            match trigger::fires(topic, &change) {
                Ok(true) => fired.extend(ids.iter().map(|id| (id, topic))),
                Ok(false) => {}
                // Checked when the topic was accepted; a criterion that cannot be evaluated
                // now fires nothing.
                Err(e) => tracing::warn!(tenant, topic = url, error = %e, "topic criteria"),
            }
        }
        if fired.is_empty() {
            return Ok(());
        }
        let filtered = current.or(previous.as_ref()).unwrap_or(&c.resource);
        let mut running = subscribers.running.lock().expect("running");
        for (id, topic) in fired {
            let Some(r) = running.get_mut(id) else {
                continue;
            };
            if !subscription::passes(&r.spec.filters, &c.resource_type, filtered) {
                continue;
            }
            r.events += 1;
            pending
                .entry(id.clone())
                .or_default()
                .push(notification_record(id, r, c, topic, self.clock.now_ms()));
        }
        Ok(())
    }

    /// A Subscription or SubscriptionTopic was written: register it (and, `live`, set up or
    /// stop its delivery).
    async fn definition_changed(
        &self,
        tenant: &str,
        subscribers: &Subscribers,
        c: &Change,
        live: bool,
    ) -> Result<(), StepError> {
        if c.resource_type == "SubscriptionTopic" {
            let mut topics = subscribers.topics.lock().expect("topics");
            let Topics { by_url, url_of } = &mut *topics;
            if let Some(old) = url_of.remove(&c.id) {
                by_url.remove(&old);
            }
            if c.interaction != Interaction::Delete
                && let Some(url) = c.resource["url"].as_str()
            {
                by_url.insert(url.to_owned(), Arc::new(c.resource.clone()));
                url_of.insert(c.id.clone(), url.to_owned());
            }
            return Ok(());
        }
        let id = c.id.clone();
        if c.interaction == Interaction::Delete {
            subscribers.running.lock().expect("running").remove(&id);
            if live {
                self.stop_delivery(tenant, &id).await?;
            }
            return Ok(());
        }
        let spec = match subscription::parse(&c.resource, c.version) {
            Ok(s) => s,
            Err(problems) => {
                // Checked when written; one that no longer reads is not run.
                tracing::warn!(
                    tenant,
                    subscription = id,
                    ?problems,
                    "not running a Subscription"
                );
                subscribers.running.lock().expect("running").remove(&id);
                return Ok(());
            }
        };
        let previous = subscribers
            .running
            .lock()
            .expect("running")
            .get(&id)
            .cloned();
        if !live {
            let mut r = self.registered(tenant, &id, spec, &c.base).await?;
            r.status = c.resource["status"]
                .as_str()
                .unwrap_or("requested")
                .to_owned();
            subscribers.running.lock().expect("running").insert(id, r);
            return Ok(());
        }
        match previous {
            Some(p) if p.spec.same_delivery(&spec) => {
                let wanted = spec.status.clone();
                let restart = wanted == "requested" && matches!(p.status.as_str(), "off" | "error");
                if wanted == "off" && p.status != "off" {
                    self.stop_delivery(tenant, &id).await?;
                    if let Some(r) = subscribers.running.lock().expect("running").get_mut(&id) {
                        r.status = "off".into();
                        r.spec = spec;
                    }
                    return Ok(());
                }
                if !restart {
                    if let Some(r) = subscribers.running.lock().expect("running").get_mut(&id) {
                        r.spec = spec;
                    }
                    return Ok(());
                }
                self.set_up(tenant, subscribers, &id, spec, &c.base).await
            }
            _ if spec.status == "off" => {
                let mut r = self.registered(tenant, &id, spec, &c.base).await?;
                r.status = "off".into();
                subscribers.running.lock().expect("running").insert(id, r);
                Ok(())
            }
            _ => self.set_up(tenant, subscribers, &id, spec, &c.base).await,
        }
    }

    /// A Subscription as found in its topic: events so far, what they cover.
    async fn registered(
        &self,
        tenant: &str,
        id: &str,
        spec: Spec,
        base: &str,
    ) -> Result<Running, StepError> {
        let topic = log_name(tenant, &notifications_topic(id));
        let (events, notified_through) = match self.log.offsets(&topic, 0) {
            Ok((_, end)) => {
                let last = if end > 1 {
                    let read = self.log.read(&topic, 0, end - 1, 1, 8 << 20).await?;
                    read.records
                        .last()
                        .and_then(|s| s.record.header(SOURCE_OFFSET_HEADER))
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .and_then(|v| v.parse::<u64>().ok())
                } else {
                    None
                };
                (end.saturating_sub(1), last)
            }
            Err(LogError::TopicNotFound(_)) => (0, None),
            Err(e) => return Err(e.into()),
        };
        Ok(Running {
            status: "requested".into(),
            reference: format!("{base}/Subscription/{id}"),
            base: base.to_owned(),
            events,
            last_sent_ms: self.clock.now_ms(),
            notified_through,
            error: None,
            spec,
        })
    }

    /// Start delivering a Subscription: its topic (with the handshake at offset 0) and, for a
    /// rest-hook, the webhook subscription that delivers it.
    async fn set_up(
        &self,
        tenant: &str,
        subscribers: &Subscribers,
        id: &str,
        spec: Spec,
        base: &str,
    ) -> Result<(), StepError> {
        let topic_name = notifications_topic(id);
        let topic = log_name(tenant, &topic_name);
        if self.log.topic(&topic).is_none() {
            let sensitivity = self
                .log
                .inspect_topic(&log_name(tenant, TOPIC), |m, _| {
                    m.spec["dataSensitivity"].clone()
                })
                .unwrap_or(Value::Null);
            let mut spec_doc =
                json!({"description": format!("notifications of FHIR Subscription/{id}")});
            if !sensitivity.is_null() {
                spec_doc["dataSensitivity"] = sensitivity;
            }
            match self
                .log
                .create_topic(NewTopic {
                    name: topic.clone(),
                    partitions: 1,
                    config: [("retention.ms".to_owned(), json!(NOTIFICATION_RETENTION_MS))].into(),
                    spec: spec_doc,
                })
                .await
            {
                Ok(_) | Err(LogError::TopicExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut r = self.registered(tenant, id, spec, base).await?;
        r.status = "requested".into();
        if self.log.offsets(&topic, 0)?.1 == 0 {
            let handshake = r.status_bundle(Kind::Handshake, self.clock.now_ms());
            self.log
                .append(
                    &topic,
                    vec![PartitionAppend {
                        partition: 0,
                        records: EncodedRecords::encode(
                            &[Record {
                                key: Some(Bytes::from(id.to_owned())),
                                value: Some(Bytes::from(handshake.to_string())),
                                headers: vec![(EVENT_NUMBER_HEADER.into(), Bytes::from("0"))],
                                timestamp: sluice_tenancy::now_ms(),
                            }],
                            sluice_log::Compression::None,
                        ),
                        event_ids: vec![None],
                    }],
                )
                .await?;
        }
        match &r.spec.channel {
            Channel::RestHook { endpoint, headers } => {
                let wid = webhook_id(id);
                let current = self.webhooks.get(tenant, &wid).map(|s| s.0.clone());
                let hook = sluice_delivery::subscription::Subscription {
                    id: wid.clone(),
                    url: endpoint.clone(),
                    topics: vec![topic_name],
                    event_types: vec!["*".into()],
                    condition: None,
                    input_mapping: None,
                    headers: headers.iter().cloned().collect(),
                    secret: String::new(),
                    signature: "v1".into(),
                    old_secrets: Vec::new(),
                    rate_limit: None,
                    ordering: sluice_delivery::subscription::Ordering::PerKey,
                    encoding: sluice_delivery::subscription::Encoding::Fhir,
                    handshake: false,
                    enabled: true,
                    disabled_reason: None,
                    retry_schedule: sluice_delivery::subscription::DEFAULT_SCHEDULE.to_vec(),
                    timeout: r.spec.timeout,
                    disable_after: Duration::from_secs(5 * 24 * 3600),
                    start: "earliest".into(),
                    description: format!("FHIR Subscription/{id}"),
                    created_ms: 0,
                    updated_ms: 0,
                };
                if let Err(e) = self.webhooks.put(tenant, hook, current.as_ref()).await {
                    if e.status.is_server_error() {
                        return Err(e.into());
                    }
                    r.status = "error".into();
                    r.error = Some(e.message);
                }
            }
            // A WebSocket's handshake is sent when a client binds.
            Channel::Websocket => r.status = "active".into(),
        }
        let (status, stored) = (r.status.clone(), r.spec.status.clone());
        subscribers
            .running
            .lock()
            .expect("running")
            .insert(id.to_owned(), r);
        // What reads show: `active` for a WebSocket channel, `error` for a refused endpoint.
        if status != stored
            && let Err(e) = self.write_status(tenant, id, &status).await
        {
            tracing::warn!(tenant, subscription = id, error = ?e.outcome, "writing a Subscription's status");
        }
        Ok(())
    }

    /// A deleted or switched-off Subscription's deliveries stop (its notifications stay for
    /// `$events` until their retention).
    async fn stop_delivery(&self, tenant: &str, id: &str) -> Result<(), StepError> {
        let wid = webhook_id(id);
        if self.webhooks.get(tenant, &wid).is_some() {
            self.webhooks.delete(tenant, &wid).await?;
        }
        Ok(())
    }

    /// Statuses that follow deliveries, and heartbeats that are due.
    async fn tick(&self, tenant: &str, subscribers: &Subscribers) {
        let now = self.clock.now_ms();
        let snapshot: Vec<(String, Running)> = subscribers
            .running
            .lock()
            .expect("running")
            .iter()
            .map(|(id, r)| (id.clone(), r.clone()))
            .collect();
        for (id, r) in snapshot {
            if r.status == "off" || !matches!(r.spec.channel, Channel::RestHook { .. }) {
                continue;
            }
            let wid = webhook_id(&id);
            let Some(hook) = self.webhooks.get(tenant, &wid) else {
                continue;
            };
            let newest = self.webhooks.attempts(tenant, &wid, None, 1);
            let (status, error) = if !hook.0.enabled {
                (
                    "error",
                    hook.0
                        .disabled_reason
                        .clone()
                        .or(Some("delivery was given up".into())),
                )
            } else {
                match newest.first().map(|a| a.outcome) {
                    Some(sluice_delivery::Outcome::Delivered) => ("active", None),
                    Some(_) => (
                        "error",
                        newest.first().map(|a| {
                            a.error
                                .clone()
                                .unwrap_or_else(|| format!("status {}", a.status.unwrap_or(0)))
                        }),
                    ),
                    None => (r.status.as_str(), r.error.clone()),
                }
            };
            if status != r.status {
                if let Some(x) = subscribers.running.lock().expect("running").get_mut(&id) {
                    x.status = status.to_owned();
                    x.error = error.clone();
                }
                if let Err(e) = self.write_status(tenant, &id, status).await {
                    tracing::warn!(tenant, subscription = id, error = ?e.outcome, "writing a Subscription's status");
                }
            }
            if let Some(period) = r.spec.heartbeat
                && status == "active"
                && now - r.last_sent_ms >= period as i64 * 1000
            {
                if let Some(x) = subscribers.running.lock().expect("running").get_mut(&id) {
                    x.last_sent_ms = now;
                }
                let body = r.status_bundle(Kind::Heartbeat, now);
                let event_id = body["id"].as_str().unwrap_or_default().to_owned();
                if let Err(e) = self
                    .webhooks
                    .send_once(tenant, &wid, &event_id, Bytes::from(body.to_string()))
                    .await
                {
                    tracing::debug!(tenant, subscription = id, error = e, "heartbeat");
                }
            }
        }
    }

    /// The notifications of events `since..=until` of a Subscription, as stored (`$events`).
    pub async fn stored_events(
        &self,
        tenant: &str,
        id: &str,
        since: u64,
        until: u64,
    ) -> Result<Vec<(NotificationEvent, Option<Value>)>, LogError> {
        let topic = log_name(tenant, &notifications_topic(id));
        let mut out = Vec::new();
        self.log
            .scan(&topic, 0, since.max(1), until.saturating_add(1), |s| {
                let header = |name: &str| {
                    s.record
                        .header(name)
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .map(str::to_owned)
                };
                let (Some(reference), Some(relative)) =
                    (header(FOCUS_URL_HEADER), header(FOCUS_HEADER))
                else {
                    return true;
                };
                let bundle: Value =
                    serde_json::from_slice(s.record.value_bytes()).unwrap_or(Value::Null);
                let resource = bundle["entry"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|e| e["fullUrl"].as_str() == Some(reference.as_str()))
                    .and_then(|e| e.get("resource").cloned());
                let method = match header(METHOD_HEADER).as_deref() {
                    Some("POST") => "POST",
                    Some("DELETE") => "DELETE",
                    _ => "PUT",
                };
                out.push((
                    NotificationEvent {
                        number: s.offset,
                        timestamp: Some(instant(s.record.timestamp)),
                        focus: Some(Focus {
                            reference,
                            relative,
                            method,
                            status: status_of(method),
                            resource: None,
                            context: Vec::new(),
                        }),
                    },
                    resource,
                ));
                true
            })
            .await?;
        Ok(out)
    }
}

fn status_of(method: &str) -> &'static str {
    match method {
        "POST" => "201",
        "DELETE" => "204",
        _ => "200",
    }
}

/// The record of one event-notification: the Bundle as delivered, and what rebuilds it.
fn notification_record(id: &str, r: &Running, c: &Change, topic: &Value, now_ms: i64) -> Record {
    let number = r.events;
    let method = match c.interaction {
        Interaction::Create => "POST",
        Interaction::Update => "PUT",
        Interaction::Delete => "DELETE",
    };
    let relative = match c.interaction {
        Interaction::Create => c.resource_type.clone(),
        _ => c.key.clone(),
    };
    let reference = format!("{}/{}", r.base, c.key);
    let full = r.spec.content == Content::FullResource;
    let resource = (full && c.interaction != Interaction::Delete)
        .then(|| match &c.shown {
            None => Some(c.resource.clone()),
            Some(shown) => shown.clone(),
        })
        .flatten();
    let context = shape_context(topic, &c.resource_type, &c.resource, &r.base);
    let event = NotificationEvent {
        number,
        timestamp: Some(instant(c.timestamp_ms)),
        focus: Some(Focus {
            reference: reference.clone(),
            relative,
            method,
            status: status_of(method),
            resource,
            context,
        }),
    };
    let mut sub = r.subscription_ref();
    if sub.status == "requested" {
        // Delivered after the handshake, when the Subscription is active.
        sub.status = "active".into();
    }
    let bundle = for_version(
        notification::bundle(
            &sub,
            Kind::EventNotification,
            number,
            &[event],
            r.spec.content,
            &instant(now_ms),
        ),
        r.spec.version,
    );
    Record {
        key: Some(Bytes::from(id.to_owned())),
        value: Some(Bytes::from(bundle.to_string())),
        headers: vec![
            (EVENT_NUMBER_HEADER.into(), Bytes::from(number.to_string())),
            (
                SOURCE_OFFSET_HEADER.into(),
                Bytes::from(c.offset.to_string()),
            ),
            (FOCUS_HEADER.into(), Bytes::from(c.key.clone())),
            (FOCUS_URL_HEADER.into(), Bytes::from(reference)),
            (METHOD_HEADER.into(), Bytes::from(method)),
        ],
        timestamp: sluice_tenancy::now_ms(),
    }
}

/// The references a topic's `notificationShape` includes for a resource of `resource_type`
/// (`Encounter:patient`, `Encounter:subject`, `Observation:encounter`), absolute, without their
/// content (the focus's own resource is what a notification carries).
fn shape_context(
    topic: &Value,
    resource_type: &str,
    resource: &Value,
    base: &str,
) -> Vec<(String, Option<Value>)> {
    let mut out = Vec::new();
    for shape in topic["notificationShape"].as_array().into_iter().flatten() {
        let applies = shape["resource"]
            .as_str()
            .is_some_and(|r| r == resource_type || r.ends_with(&format!("/{resource_type}")));
        if !applies {
            continue;
        }
        for include in shape["include"].as_array().into_iter().flatten() {
            let Some(param) = include
                .as_str()
                .and_then(|i| i.split('&').next())
                .and_then(|i| i.split_once(':'))
                .map(|(_, p)| p)
            else {
                continue;
            };
            let element = match param {
                "patient" | "subject" => "subject",
                "encounter" => "encounter",
                _ => continue,
            };
            if let Some(reference) = resource[element]["reference"].as_str() {
                let absolute = if reference.contains("://") {
                    reference.to_owned()
                } else {
                    format!("{base}/{reference}")
                };
                if !out.iter().any(|(r, _)| r == &absolute) {
                    out.push((absolute, None));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topics_shape_includes_the_patient_by_reference() {
        let topic = json!({"notificationShape": [{"resource": "http://hl7.org/fhir/StructureDefinition/Encounter",
                                                  "include": ["Encounter:patient&iterate=Patient.link", "Encounter:practitioner"]}]});
        let enc = json!({"resourceType": "Encounter", "subject": {"reference": "Patient/ABC"}});
        assert_eq!(
            shape_context(&topic, "Encounter", &enc, "http://x/fhir/t"),
            vec![("http://x/fhir/t/Patient/ABC".to_owned(), None)]
        );
        assert!(shape_context(&topic, "Observation", &enc, "http://x").is_empty());
    }
}
