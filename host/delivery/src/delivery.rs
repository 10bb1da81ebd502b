//! One subscription's delivery loop: read its topics from the committed offsets, keep the
//! events its types and condition select, and deliver each, signed, under the subscription's
//! rules:
//!
//! - 2xx is success; anything else (3xx included: redirects are not followed), a timeout or
//!   a connection error is a failure, retried after the next delay of the schedule (±10%
//!   jitter, never before the endpoint's `Retry-After`);
//! - 429, 502 and 504 also pause the whole endpoint (for `Retry-After`, else the delay);
//! - 410 disables the subscription; so does failing without a single success for
//!   `disable_after`; both raise an operational alert;
//! - an event whose attempts are exhausted goes to the topic's dead-letter topic `T.dlq`
//!   with the reason in its headers;
//! - with `ordering: per-key`, an event waits until its key's earlier events are done.
//!
//! Progress is a committed offset per partition: the oldest event not yet done (delivered or
//! dead-lettered). A restart resumes there, so every event is delivered at least once.
//! Replays and re-drives go through the same rules without moving the offsets.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rand::Rng;
use serde_json::Value;
use sluice_log::{Log, LogError, Record, StoredRecord};
use tokio::sync::{mpsc, watch};

use super::rules;
use super::subscription::{Encoding, Ordering, Shared};
use super::{Attempt, Outcome};
use crate::Webhooks;
use sluice_ingest::cloudevents;
use sluice_ingest::dead_letters;
use sluice_ingest::envelope::{EventView, read_headers};
use sluice_tenancy::log_name;

/// Attempts in flight per subscription.
const MAX_IN_FLIGHT: usize = 64;
/// Events read but not done per subscription.
const MAX_OUTSTANDING: usize = 4_096;
const READ_BATCH: usize = 500;

/// Work sent to a running subscription.
pub enum Command {
    /// Deliver these records again (they do not move the committed offsets).
    Replay(Vec<(String, StoredRecord)>),
}

/// What a record asks to deliver.
struct Selected {
    id: String,
    body: Bytes,
    /// The body's content type and extra headers (CloudEvents' binary mode puts the event's
    /// attributes there).
    format: Format,
    /// Another endpoint than the subscription's (a trigger's).
    url: Option<String>,
    /// Deliveries with the same chain go one after another (a trigger chain).
    chain: Option<Bytes>,
}

/// A delivery's content type and the headers its encoding adds.
#[derive(Clone, Debug)]
struct Format {
    content_type: String,
    headers: Arc<Vec<(String, String)>>,
}

impl Format {
    fn json() -> Format {
        Format {
            content_type: "application/json".into(),
            headers: Arc::new(Vec::new()),
        }
    }
}

#[derive(Clone)]
struct Delivery {
    url: Option<String>,
    topic: String,
    partition: u32,
    offset: u64,
    event_id: String,
    key: Option<Bytes>,
    body: Bytes,
    format: Format,
    /// The stored record, for the dead-letter topic.
    record: Record,
    /// Attempts made so far.
    attempts: u32,
    /// Not before this time (a retry resumed after a restart).
    due: Option<i64>,
    tracked: bool,
}

struct Response {
    status: Option<u16>,
    retry_after: Option<Duration>,
    excerpt: String,
    error: Option<String>,
    latency: Duration,
}

type Tp = (String, u32);

pub struct Runner {
    /// The owner: the log, the clock, the HTTP client and the record of attempts.
    webhooks: Arc<Webhooks>,
    tenant: String,
    sub: Shared,
    next_read: BTreeMap<Tp, u64>,
    /// Per partition, offsets not done (and how many deliveries each still has).
    pending: BTreeMap<Tp, BTreeMap<u64, u32>>,
    committed: BTreeMap<Tp, u64>,
    ready: VecDeque<Delivery>,
    waiting: BTreeMap<(i64, u64), Delivery>,
    seq: u64,
    key_queues: HashMap<Bytes, VecDeque<Delivery>>,
    paused_until: i64,
    failing_since: Option<i64>,
    rate_window: (Instant, u32),
    /// The newest attempt of events found at start (see [`Runner::resume`]).
    recovered: HashMap<String, Attempt>,
    /// Turns `true` when the loop is asked to stop (a dead letter that cannot be written is
    /// retried until then).
    stop: watch::Receiver<bool>,
}

impl Runner {
    pub fn new(
        webhooks: Arc<Webhooks>,
        tenant: String,
        sub: Shared,
        committed: BTreeMap<Tp, u64>,
        recovered: HashMap<String, Attempt>,
    ) -> Runner {
        Runner {
            webhooks,
            tenant,
            sub,
            recovered,
            next_read: committed.clone(),
            pending: BTreeMap::new(),
            committed,
            ready: VecDeque::new(),
            waiting: BTreeMap::new(),
            seq: 0,
            key_queues: HashMap::new(),
            paused_until: 0,
            failing_since: None,
            rate_window: (Instant::now(), 0),
            stop: watch::channel(false).1,
        }
    }

    fn id(&self) -> &str {
        &self.sub.0.id
    }

    fn outstanding(&self) -> usize {
        self.ready.len()
            + self.waiting.len()
            + self.key_queues.values().map(VecDeque::len).sum::<usize>()
    }

    /// Partitions of the subscribed topics (new ones start at their beginning).
    fn refresh_partitions(&mut self) {
        for t in &self.sub.0.topics {
            let full = log_name(&self.tenant, t);
            let Some(n) = self.webhooks.log.inspect_topic(&full, |m, _| m.partitions) else {
                continue;
            };
            for p in 0..n {
                let tp = (t.clone(), p);
                if !self.next_read.contains_key(&tp) {
                    let start = self.webhooks.log.offsets(&full, p).map_or(0, |(s, _)| s);
                    self.next_read.insert(tp.clone(), start);
                    self.committed.entry(tp).or_insert(start);
                }
            }
        }
    }

    /// The deliveries a record makes: none, one (a subscription), or one per matching
    /// trigger, highest priority first (the trigger loop): (webhook id, body, endpoint).
    fn select(shared: &Shared, topic: &str, s: &StoredRecord) -> Result<Vec<Selected>, String> {
        let sub = &shared.0;
        let compiled = &shared.1;
        let r = &s.record;
        let headers = read_headers(r);
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
        };
        let event: Option<Value> = serde_json::from_slice(r.value_bytes()).ok();
        let event_type = header("ce_type")
            .map(str::to_owned)
            .or_else(|| {
                event.as_ref().and_then(|e| {
                    e.get("type")
                        .or_else(|| e.get("event_type"))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
            })
            .unwrap_or_default();
        if compiled.triggers.is_empty() && !sub.matches_type(&event_type) {
            return Ok(Vec::new());
        }
        let event_id = header("ce_id")
            .map(str::to_owned)
            .or_else(|| {
                event
                    .as_ref()
                    .and_then(|e| e.get("event_id").or_else(|| e.get("id")))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| format!("{topic}-{}-{}", s.partition, s.offset));
        let shown = || {
            event
                .clone()
                .unwrap_or_else(|| serde_json::to_value(EventView::from(s)).unwrap_or(Value::Null))
        };
        let needs_ctx = compiled.condition.is_some()
            || compiled.mapping.is_some()
            || !compiled.triggers.is_empty();
        let ctx = needs_ctx.then(|| {
            let hv: serde_json::Map<String, Value> = headers
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(String::from_utf8_lossy(v).into())))
                .collect();
            let key = r.key.as_ref().and_then(|k| std::str::from_utf8(k).ok());
            rules::cel_context(&shown(), &event_type, key, &Value::Object(hv))
        });
        if !compiled.triggers.is_empty() {
            let ctx = ctx.as_ref().expect("built for triggers");
            let event = shown();
            let source = serde_json::json!({"id": event_id, "type": event_type, "topic": topic,
                                             "partition": s.partition, "offset": s.offset});
            let mut out = Vec::new();
            for t in &compiled.triggers {
                if !t.trigger.enabled {
                    continue;
                }
                if let Some(body) = t.body(&event_type, ctx, &event, source.clone())? {
                    out.push(Selected {
                        id: format!("{event_id}:{}", t.trigger.id),
                        body: Bytes::from(serde_json::to_vec(&body).expect("JSON")),
                        format: Format::json(),
                        url: Some(t.trigger.endpoint.clone()),
                        // One chain per event: each trigger waits for the one before.
                        chain: Some(Bytes::from(format!("{topic}/{}/{}", s.partition, s.offset))),
                    });
                }
            }
            return Ok(out);
        }
        if let (Some(cond), Some(ctx)) = (&compiled.condition, &ctx)
            && !rules::holds(cond, ctx)?
        {
            return Ok(Vec::new());
        }
        let mapped = match (&compiled.mapping, &ctx) {
            (Some(m), Some(ctx)) => Some(rules::map(m, ctx)?),
            _ => None,
        };
        let (body, format) = match sub.encoding {
            Encoding::Envelope => (
                match mapped {
                    Some(v) => Bytes::from(serde_json::to_vec(&v).expect("JSON")),
                    None if event.is_some() => r.value.clone().unwrap_or_default(),
                    None => Bytes::from(serde_json::to_vec(&shown()).expect("JSON")),
                },
                Format::json(),
            ),
            Encoding::Fhir => (
                r.value.clone().unwrap_or_default(),
                Format {
                    content_type: sub.encoding.content_type().into(),
                    headers: Arc::new(Vec::new()),
                },
            ),
            Encoding::CloudeventsStructured => (
                Bytes::from(
                    serde_json::to_vec(&cloudevents::out::structured(s, topic, mapped))
                        .expect("JSON"),
                ),
                Format {
                    content_type: cloudevents::STRUCTURED.into(),
                    headers: Arc::new(Vec::new()),
                },
            ),
            Encoding::CloudeventsBinary => {
                let (headers, body, content_type) = cloudevents::out::binary(s, topic, mapped);
                (
                    body,
                    Format {
                        content_type,
                        headers: Arc::new(headers),
                    },
                )
            }
        };
        Ok(vec![Selected {
            format,
            id: event_id,
            body,
            url: None,
            chain: None,
        }])
    }

    /// Whether choosing what a record delivers evaluates CEL (so runs off the async workers).
    fn evaluates(&self) -> bool {
        let c = &self.sub.1;
        c.condition.is_some() || c.mapping.is_some() || !c.triggers.is_empty()
    }

    /// [`Runner::select`] for a batch of records, on a blocking thread when it evaluates CEL.
    async fn select_all(
        &self,
        topic: &str,
        records: Vec<StoredRecord>,
    ) -> Vec<(StoredRecord, Result<Vec<Selected>, String>)> {
        let pick = {
            let (shared, topic) = (self.sub.clone(), topic.to_owned());
            move || {
                records
                    .into_iter()
                    .map(|s| {
                        let selected = Self::select(&shared, &topic, &s);
                        (s, selected)
                    })
                    .collect::<Vec<_>>()
            }
        };
        if !self.evaluates() {
            return pick();
        }
        match tokio::task::spawn_blocking(pick).await {
            Ok(selected) => selected,
            // Evaluation panicked: nothing is lost, the records are read again.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    fn deliveries(
        &self,
        topic: &str,
        s: StoredRecord,
        selected: Result<Vec<Selected>, String>,
        tracked: bool,
    ) -> Result<Vec<Delivery>, Box<(Delivery, String)>> {
        let make = |sel: Selected, s: &StoredRecord| Delivery {
            topic: topic.to_owned(),
            partition: s.partition,
            offset: s.offset,
            event_id: sel.id,
            key: sel.chain.or_else(|| s.record.key.clone()),
            url: sel.url,
            body: sel.body,
            format: sel.format,
            record: s.record.clone(),
            attempts: 0,
            due: None,
            tracked,
        };
        match selected {
            Ok(selected) => Ok(selected.into_iter().map(|sel| make(sel, &s)).collect()),
            // A condition or mapping that fails on this event: dead-letter it with the reason.
            Err(reason) => {
                let sel = Selected {
                    id: format!("{topic}-{}-{}", s.partition, s.offset),
                    body: Bytes::new(),
                    format: Format::json(),
                    url: None,
                    chain: None,
                };
                Err(Box::new((make(sel, &s), reason)))
            }
        }
    }

    fn hold(&mut self, d: &Delivery) {
        if d.tracked {
            *self
                .pending
                .entry((d.topic.clone(), d.partition))
                .or_default()
                .entry(d.offset)
                .or_default() += 1;
        }
    }

    fn release(&mut self, d: &Delivery) {
        if d.tracked
            && let Some(set) = self.pending.get_mut(&(d.topic.clone(), d.partition))
            && let Some(n) = set.get_mut(&d.offset)
        {
            *n -= 1;
            if *n == 0 {
                set.remove(&d.offset);
            }
        }
    }

    /// An event read past the committed offset that was attempted before a restart: done
    /// (delivered, dead-lettered) → skipped; waiting for a retry → resumed at its attempt
    /// count and due time. Otherwise it starts afresh.
    fn resume(&mut self, d: Delivery) {
        let Some(a) = self
            .recovered
            .remove(&d.event_id)
            .filter(|a| a.topic == d.topic && a.partition == d.partition && a.offset == d.offset)
        else {
            return self.admit(d);
        };
        match a.outcome {
            Outcome::Delivered | Outcome::DeadLettered => {}
            Outcome::Retrying | Outcome::Throttled => {
                let mut d = d;
                d.attempts = a.attempt;
                d.due = Some(a.next_attempt_ms.unwrap_or(0));
                let due = d.due;
                self.admit_due(d, due);
            }
            Outcome::Failed | Outcome::Disabled => self.admit(d),
        }
    }

    fn admit(&mut self, d: Delivery) {
        self.admit_due(d, None)
    }

    /// Admit an event: into its key's queue when that key is busy, else ready (or waiting
    /// until `due`).
    fn admit_due(&mut self, d: Delivery, due: Option<i64>) {
        self.hold(&d);
        if self.sub.0.ordering == Ordering::PerKey
            && let Some(k) = d.key.clone()
        {
            if let Some(q) = self.key_queues.get_mut(&k) {
                q.push_back(d);
                return;
            }
            self.key_queues.insert(k, VecDeque::new());
        }
        match due {
            Some(at) => {
                self.seq += 1;
                self.waiting.insert((at, self.seq), d);
            }
            None => self.ready.push_back(d),
        }
    }

    /// An event is done (delivered or dead-lettered): release its offset and its key.
    fn finish(&mut self, d: &Delivery) {
        self.release(d);
        if self.sub.0.ordering == Ordering::PerKey
            && let Some(k) = &d.key
            && let Some(q) = self.key_queues.get_mut(k)
        {
            match q.pop_front() {
                Some(next) => match next.due {
                    Some(at) => {
                        self.seq += 1;
                        self.waiting.insert((at, self.seq), next);
                    }
                    None => self.ready.push_front(next),
                },
                None => {
                    self.key_queues.remove(k);
                }
            }
        }
    }

    /// The offsets to commit: per partition, the oldest event not done.
    fn watermarks(&self) -> BTreeMap<Tp, u64> {
        self.next_read
            .iter()
            .map(|(tp, next)| {
                let low = self
                    .pending
                    .get(tp)
                    .and_then(|s| s.first_key_value().map(|(o, _)| *o))
                    .unwrap_or(*next);
                (tp.clone(), low)
            })
            .collect()
    }

    async fn commit(&mut self) {
        let marks = self.watermarks();
        let changed: Vec<(Tp, u64)> = marks
            .into_iter()
            .filter(|(tp, o)| self.committed.get(tp) != Some(o))
            .collect();
        if changed.is_empty() {
            return;
        }
        match self
            .webhooks
            .store_offsets(&self.tenant, self.id(), &changed)
            .await
        {
            Ok(()) => self.committed.extend(changed),
            Err(e) => tracing::warn!(error = %e.message, "committing webhook offsets"),
        }
    }

    async fn read_more(&mut self) -> bool {
        let mut got = false;
        let tps: Vec<Tp> = self.next_read.keys().cloned().collect();
        for tp in tps {
            if self.outstanding() >= MAX_OUTSTANDING {
                break;
            }
            let full = log_name(&self.tenant, &tp.0);
            let at = self.next_read[&tp];
            let read = match self
                .webhooks
                .log
                .read(&full, tp.1, at, READ_BATCH, 4 << 20)
                .await
            {
                Ok(r) => r,
                Err(LogError::OffsetOutOfRange { start, .. }) => {
                    // Retention passed us: go on from the oldest event kept.
                    self.next_read.insert(tp.clone(), start);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, topic = tp.0, "webhook read");
                    continue;
                }
            };
            let mut records = read.records;
            // A topic that requires redaction is delivered redacted, or not yet (read again).
            if let Err(e) = self
                .webhooks
                .redaction
                .apply(None, &self.tenant, &tp.0, &mut records)
                .await
            {
                tracing::warn!(error = %e.message, topic = tp.0, "webhook redaction");
                continue;
            }
            for (s, selected) in self.select_all(&tp.0, records).await {
                got = true;
                self.next_read.insert(tp.clone(), s.offset + 1);
                match self.deliveries(&tp.0, s, selected, true) {
                    Ok(list) if self.recovered.is_empty() => {
                        list.into_iter().for_each(|d| self.admit(d))
                    }
                    Ok(list) => list.into_iter().for_each(|d| self.resume(d)),
                    Err(failed) => {
                        let (d, reason) = *failed;
                        self.admit_failed(d, reason).await
                    }
                }
            }
            let next = self.next_read[&tp].max(read.next_offset);
            self.next_read.insert(tp, next);
        }
        got
    }

    /// An event the condition or mapping could not evaluate: straight to the dead letters.
    async fn admit_failed(&mut self, d: Delivery, reason: String) {
        self.hold(&d);
        // Not written (the loop is stopping): held, so its offset is not committed and the
        // next start takes it up again.
        if self.dead_letter(&d, &reason).await {
            self.release(&d);
        }
    }

    /// Write the event to its topic's dead-letter topic, retrying (with backoff, each failure
    /// counted in `sluice_webhook_dead_letter_failures`) until it is written or the loop stops:
    /// `false` means it was not written and the event must not be marked done.
    async fn dead_letter(&self, d: &Delivery, reason: &str) -> bool {
        let dlq = dead_letters::dlq_of(&d.topic);
        let mut record = d.record.clone();
        dead_letters::mark(&mut record, &d.topic, "webhook", reason);
        record
            .headers
            .retain(|(k, _)| k != super::SUBSCRIPTION_HEADER && k != "sluice_dlq_attempts");
        record.headers.push((
            super::SUBSCRIPTION_HEADER.into(),
            Bytes::from(self.id().to_owned()),
        ));
        record.headers.push((
            "sluice_dlq_attempts".into(),
            Bytes::from(d.attempts.to_string()),
        ));
        let mut backoff = Duration::from_millis(100);
        loop {
            let result = async {
                dead_letters::ensure(&self.webhooks.log, &self.tenant, &dlq).await?;
                sluice_tenancy::internal_topics::append_records(
                    &self.webhooks.log,
                    &log_name(&self.tenant, &dlq),
                    vec![record.clone()],
                )
                .await
            }
            .await;
            let Err(e) = result else { break };
            self.webhooks
                .dead_letter_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(error = %e.message, retry_in = ?backoff, "writing a dead letter");
            let mut stop = self.stop.clone();
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.wait_for(|s| *s) => return false,
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
        self.webhooks.record(Attempt {
            tenant: self.tenant.clone(),
            subscription: self.id().to_owned(),
            event_id: d.event_id.clone(),
            topic: d.topic.clone(),
            partition: d.partition,
            offset: d.offset,
            attempt: d.attempts,
            time_ms: self.webhooks.clock.now_ms(),
            status: None,
            latency_ms: 0,
            error: Some(reason.to_owned()),
            response: String::new(),
            outcome: Outcome::DeadLettered,
            next_attempt_ms: None,
        });
        true
    }

    fn rate_allows(&mut self) -> bool {
        let Some(limit) = self.sub.0.rate_limit else {
            return true;
        };
        let (start, count) = &mut self.rate_window;
        if start.elapsed() >= Duration::from_secs(1) {
            *start = Instant::now();
            *count = 0;
        }
        if *count < limit {
            *count += 1;
            true
        } else {
            false
        }
    }

    /// Run until stopped, or until the subscription disables itself (returns its reason).
    pub async fn run(
        mut self,
        mut stop: watch::Receiver<bool>,
        mut commands: mpsc::Receiver<Command>,
    ) -> Option<String> {
        self.stop = stop.clone();
        let client = self.webhooks.client.clone();
        if self.sub.0.handshake {
            match handshake(&client, &self.sub.0.url, &mut stop).await {
                Handshake::Granted => {}
                Handshake::Refused(reason) => return Some(reason),
                Handshake::Stopped => return None,
            }
        }
        let mut in_flight = FuturesUnordered::new();
        let mut commit_tick = tokio::time::interval(Duration::from_millis(200));
        commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.refresh_partitions();
        let mut refreshed = Instant::now();
        let mut caught_up = false;
        loop {
            if *stop.borrow() {
                break;
            }
            let now = self.webhooks.clock.now_ms();
            // Retries that are due.
            while let Some(entry) = self.waiting.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let d = entry.remove();
                self.ready.push_back(d);
            }
            // Start attempts.
            let mut rate_limited = false;
            while in_flight.len() < MAX_IN_FLIGHT
                && now >= self.paused_until
                && !self.ready.is_empty()
            {
                if !self.rate_allows() || self.webhooks.quotas.take_delivery(&self.tenant).is_err()
                {
                    rate_limited = true;
                    break;
                }
                let d = self.ready.pop_front().expect("not empty");
                in_flight.push(attempt(
                    client.clone(),
                    self.sub.clone(),
                    self.webhooks.clock.now_ms(),
                    d,
                ));
            }
            if refreshed.elapsed() > Duration::from_secs(5) {
                self.refresh_partitions();
                refreshed = Instant::now();
            }
            if self.outstanding() < MAX_OUTSTANDING {
                caught_up = !self.read_more().await;
            }
            let next_due = self.waiting.keys().next().map(|k| k.0);
            let wake_at = match (next_due, self.paused_until > now) {
                (Some(d), true) => Some(d.max(self.paused_until)),
                (Some(d), false) => Some(d),
                (None, true) => Some(self.paused_until),
                (None, false) => None,
            };
            let clock = self.webhooks.clock.clone();
            let timer = async move {
                match wake_at {
                    Some(t) => clock.sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            // New events, when we have read everything and have room.
            let log = self.webhooks.log.clone();
            let watch_new: Vec<_> = if caught_up && self.outstanding() < MAX_OUTSTANDING {
                self.next_read
                    .iter()
                    .map(|(tp, o)| (log_name(&self.tenant, &tp.0), tp.1, *o))
                    .collect()
            } else {
                Vec::new()
            };
            let new_data = async move {
                if watch_new.is_empty() {
                    return std::future::pending().await;
                }
                let waits = watch_new.into_iter().map(|(full, p, o)| {
                    let log = log.clone();
                    Box::pin(async move { log.wait_for(&full, p, o, Duration::from_secs(1)).await })
                });
                let _ = futures::future::select_all(waits).await;
            };
            let ready_to_start = !self.ready.is_empty()
                && in_flight.len() < MAX_IN_FLIGHT
                && !rate_limited
                && now >= self.paused_until;
            if ready_to_start || (!caught_up && self.outstanding() < MAX_OUTSTANDING) {
                // More to do right away; still take finished attempts first.
                if let Some(Some((d, resp))) = futures::FutureExt::now_or_never(in_flight.next())
                    && let Some(reason) = self.settle(d, resp).await
                {
                    self.commit().await;
                    return Some(reason);
                }
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                Some((d, resp)) = in_flight.next(), if !in_flight.is_empty() => {
                    if let Some(reason) = self.settle(d, resp).await {
                        self.commit().await;
                        return Some(reason);
                    }
                }
                _ = timer => {}
                _ = new_data => {}
                _ = commit_tick.tick() => self.commit().await,
                _ = tokio::time::sleep(Duration::from_millis(100)), if rate_limited => {}
                c = commands.recv() => match c {
                    Some(Command::Replay(records)) => {
                        for (topic, s) in records {
                            let mut one = vec![s];
                            if let Err(e) = self
                                .webhooks
                                .redaction
                                .apply(None, &self.tenant, &topic, &mut one)
                                .await
                            {
                                tracing::warn!(error = %e.message, topic, "replay: redaction");
                                continue;
                            }
                            let picked = self.select_all(&topic, one).await;
                            let Some((s, selected)) = picked.into_iter().next() else {
                                continue;
                            };
                            match self.deliveries(&topic, s, selected, false) {
                                Ok(list) => list.into_iter().for_each(|d| self.admit(d)),
                                Err(failed) => {
                        let (d, reason) = *failed;
                        self.admit_failed(d, reason).await
                    }
                            }
                        }
                    }
                    None => break,
                },
                _ = stop.changed() => break,
            }
        }
        // Stopping: let attempts in flight finish briefly, then commit what is done.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while let Ok(Some((d, resp))) = tokio::time::timeout_at(deadline, in_flight.next()).await {
            if self.settle(d, resp).await.is_some() {
                break;
            }
        }
        self.commit().await;
        None
    }

    /// Apply an attempt's outcome. `Some(reason)` when the subscription must be disabled.
    async fn settle(&mut self, mut d: Delivery, resp: Response) -> Option<String> {
        d.attempts += 1;
        let now = self.webhooks.clock.now_ms();
        let shared = self.sub.clone();
        let sub = &shared.0;
        let mut record = Attempt {
            tenant: self.tenant.clone(),
            subscription: sub.id.clone(),
            event_id: d.event_id.clone(),
            topic: d.topic.clone(),
            partition: d.partition,
            offset: d.offset,
            attempt: d.attempts,
            time_ms: now,
            status: resp.status,
            latency_ms: resp.latency.as_millis() as u64,
            error: resp.error.clone(),
            response: resp.excerpt.clone(),
            outcome: Outcome::Delivered,
            next_attempt_ms: None,
        };
        if resp.status.is_some_and(|s| (200..300).contains(&s)) {
            self.failing_since = None;
            self.webhooks.record(record);
            self.finish(&d);
            return None;
        }
        let failing_since = *self.failing_since.get_or_insert(now);
        if resp.status == Some(410) {
            record.outcome = Outcome::Disabled;
            self.webhooks.record(record);
            return Some(format!(
                "the endpoint answered 410 Gone on {} (event {})",
                chrono::DateTime::from_timestamp_millis(now)
                    .map_or_else(String::new, |t| t.to_rfc3339()),
                d.event_id
            ));
        }
        let throttled = matches!(resp.status, Some(429 | 502 | 504));
        let retry_after_ms = resp.retry_after.map_or(0, |d| d.as_millis() as i64);
        if (d.attempts as usize) < sub.retry_schedule.len() {
            let delay = sub.retry_schedule[d.attempts as usize].as_millis() as i64;
            let jitter = if delay > 0 {
                rand::rng().random_range(-(delay / 10)..=delay / 10)
            } else {
                0
            };
            let due = now + (delay + jitter).max(retry_after_ms);
            if throttled {
                self.paused_until = self
                    .paused_until
                    .max(now + retry_after_ms.max(delay).max(1_000));
                record.outcome = Outcome::Throttled;
            } else {
                record.outcome = Outcome::Retrying;
            }
            record.next_attempt_ms = Some(due);
            self.webhooks.record(record);
            self.seq += 1;
            self.waiting.insert((due, self.seq), d);
        } else {
            record.outcome = Outcome::Failed;
            self.webhooks.record(record);
            let reason = format!(
                "delivery failed after {} attempts; last: {}",
                d.attempts,
                resp.status
                    .map(|s| format!("HTTP {s}"))
                    .or(resp.error.clone())
                    .unwrap_or_default()
            );
            if self.dead_letter(&d, &reason).await {
                self.finish(&d);
            }
        }
        if now - failing_since >= sub.disable_after.as_millis() as i64 {
            return Some(format!(
                "the endpoint failed every attempt for {} (since {})",
                humantime::format_duration(sub.disable_after),
                chrono::DateTime::from_timestamp_millis(failing_since)
                    .map_or_else(String::new, |t| t.to_rfc3339())
            ));
        }
        None
    }
}

/// What `WebHook-Request-Origin` Sluice names itself with in the handshake.
pub const HANDSHAKE_ORIGIN: &str = "sluice";

enum Handshake {
    Granted,
    Refused(String),
    Stopped,
}

/// The CloudEvents webhook abuse-protection handshake: `OPTIONS` with our origin; the endpoint
/// must answer 2xx with `WebHook-Allowed-Origin` naming it (or `*`). An endpoint that cannot be
/// reached is asked again (1 s, doubling to a minute) until it answers or the loop stops.
async fn handshake(
    client: &reqwest::Client,
    url: &str,
    stop: &mut watch::Receiver<bool>,
) -> Handshake {
    let mut pause = Duration::from_secs(1);
    loop {
        let answer = client
            .request(reqwest::Method::OPTIONS, url)
            .header("webhook-request-origin", HANDSHAKE_ORIGIN)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match answer {
            Ok(r) => {
                let allowed = r
                    .headers()
                    .get("webhook-allowed-origin")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                return match (r.status().is_success(), allowed) {
                    (true, Some(o)) if o == "*" || o.eq_ignore_ascii_case(HANDSHAKE_ORIGIN) => {
                        Handshake::Granted
                    }
                    (ok, allowed) => Handshake::Refused(format!(
                        "the endpoint refused the abuse-protection handshake ({}, \
                         WebHook-Allowed-Origin {})",
                        if ok {
                            "2xx".to_owned()
                        } else {
                            r.status().to_string()
                        },
                        allowed.as_deref().unwrap_or("missing")
                    )),
                };
            }
            Err(e) => {
                tracing::warn!(error = %e, url, "abuse-protection handshake: no answer; asking again");
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.changed() => return Handshake::Stopped,
                }
                pause = (pause * 2).min(Duration::from_secs(60));
            }
        }
    }
}

/// One attempt: POST the body, signed with every valid secret.
async fn attempt(
    client: reqwest::Client,
    sub: Shared,
    now_ms: i64,
    d: Delivery,
) -> (Delivery, Response) {
    let resp = post(
        &client,
        &sub,
        now_ms,
        d.url.as_deref(),
        &d.event_id,
        &d.format,
        d.body.clone(),
    )
    .await;
    (d, resp)
}

/// POST `body` to the subscription's endpoint (or `url`), signed with every valid secret, with
/// the format's and the subscription's headers; the answer's status and start.
async fn post(
    client: &reqwest::Client,
    sub: &Shared,
    now_ms: i64,
    url: Option<&str>,
    event_id: &str,
    format: &Format,
    body: Bytes,
) -> Response {
    let s = &sub.0;
    // Receivers check the timestamp against their own clock: the real time.
    let timestamp = sluice_tenancy::now_ms() / 1000;
    let signature = super::signing::header(&s.keys(now_ms), event_id, timestamp, &body);
    let mut req = client
        .post(url.unwrap_or(&s.url))
        .timeout(s.timeout)
        .header("content-type", &format.content_type)
        .header("webhook-id", event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature);
    for (k, v) in format.headers.iter().map(|(k, v)| (k, v)).chain(&s.headers) {
        req = req.header(k, v);
    }
    let started = Instant::now();
    match req.body(body).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let mut excerpt = String::new();
            let mut body = r;
            while excerpt.len() < 512 {
                match body.chunk().await {
                    Ok(Some(c)) => excerpt.push_str(&String::from_utf8_lossy(&c)),
                    _ => break,
                }
            }
            excerpt.truncate(excerpt.floor_char_boundary(512));
            Response {
                status: Some(status),
                retry_after,
                excerpt,
                error: None,
                latency: started.elapsed(),
            }
        }
        Err(e) => Response {
            status: None,
            retry_after: None,
            excerpt: String::new(),
            error: Some(if e.is_timeout() {
                format!("timed out after {}", humantime::format_duration(s.timeout))
            } else {
                let mut msg = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(inner) = src {
                    msg = format!("{msg}: {inner}");
                    src = inner.source();
                }
                msg
            }),
            latency: started.elapsed(),
        },
    }
}

/// One delivery outside the subscription's topics and schedule (a FHIR heartbeat): a single
/// attempt, recorded as the subscription's attempts are, not retried. `Ok` on 2xx.
pub async fn send_once(
    webhooks: &Webhooks,
    tenant: &str,
    sub: &Shared,
    event_id: &str,
    body: Bytes,
) -> Result<(), String> {
    let now = webhooks.clock.now_ms();
    let format = Format {
        content_type: sub.0.encoding.content_type().to_owned(),
        headers: Arc::new(Vec::new()),
    };
    let resp = post(&webhooks.client, sub, now, None, event_id, &format, body).await;
    let delivered = resp.status.is_some_and(|s| (200..300).contains(&s));
    webhooks.record(Attempt {
        tenant: tenant.to_owned(),
        subscription: sub.0.id.clone(),
        event_id: event_id.to_owned(),
        topic: String::new(),
        partition: 0,
        offset: 0,
        attempt: 1,
        time_ms: now,
        status: resp.status,
        latency_ms: resp.latency.as_millis() as u64,
        error: resp.error.clone(),
        response: resp.excerpt,
        outcome: if delivered {
            Outcome::Delivered
        } else {
            Outcome::Failed
        },
        next_attempt_ms: None,
    });
    if delivered {
        Ok(())
    } else {
        Err(resp
            .error
            .unwrap_or_else(|| format!("status {}", resp.status.unwrap_or_default())))
    }
}

/// Read events of one partition in `[from, to)` (a replay), at most `limit`.
pub async fn read_offsets(
    log: &Log,
    tenant: &str,
    topic: &str,
    partition: u32,
    from: u64,
    to: u64,
    limit: usize,
) -> Result<Vec<(String, StoredRecord)>, LogError> {
    let mut out = Vec::new();
    log.scan(&log_name(tenant, topic), partition, from, to, |s| {
        out.push((topic.to_owned(), s));
        out.len() < limit
    })
    .await?;
    Ok(out)
}

/// Read events of `topics` between two times (a replay), at most `limit`.
pub async fn read_range(
    log: &Log,
    tenant: &str,
    topics: &[String],
    since_ms: i64,
    until_ms: i64,
    limit: usize,
) -> Result<Vec<(String, StoredRecord)>, LogError> {
    let mut out = Vec::new();
    for t in topics {
        let full = log_name(tenant, t);
        let Some(n) = log.inspect_topic(&full, |m, _| m.partitions) else {
            continue;
        };
        for p in 0..n {
            if out.len() >= limit {
                return Ok(out);
            }
            let from = log.offset_for_timestamp(&full, p, since_ms).await?;
            log.scan(&full, p, from, u64::MAX, |s| {
                if s.record.timestamp > until_ms || out.len() >= limit {
                    return false;
                }
                out.push((t.clone(), s));
                true
            })
            .await?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_is_svixs() {
        let s = super::super::subscription::DEFAULT_SCHEDULE;
        let secs: Vec<u64> = s.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, vec![0, 5, 300, 1800, 7200, 18000, 36000, 36000]);
    }
}
