//! The one way into a topic: [`Ingest::append`] takes events a gateway has parsed (the
//! produce API, the REST Proxy, and every future ingress) and makes them durable.
//!
//! Events are partitioned and encoded in the caller's own task (so this work spreads over
//! cores); the log's single writer only assigns offsets and makes them durable. A topic with an
//! ingest pipeline runs the batch through its WebAssembly stages first (on a blocking thread, or
//! inline when it is small and only built-in stages that have been fast run it: see
//! `Pipeline::cheap`): they may reject events, rewrite them, route them to other topics of the
//! tenant or to a dead-letter topic. The outcome lists, in request order, each event's position
//! or its own error: one bad event never costs the others.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::{Value, json};
use sluice_log::partitioner::partition_for_key;
use sluice_log::{EncodedRecords, Log, PartitionAppend, Record, TimestampType};
use sluice_runtime::{BatchContext, StageLabels, StageStats};
use sluice_tenancy::auth::{Principal, Role};
use sluice_tenancy::error::{ApiError, from_log};
use sluice_tenancy::quotas::{QuotaBook, QuotaLimits};
use sluice_tenancy::{check_topic_name, log_name};

use crate::catalog::Catalog;
use crate::components::Components;
use crate::dead_letters;
use crate::disk::DiskGuard;
use crate::envelope::{Event, Limits, TopicRules};
use crate::guest_events::{id_of, to_event, to_record};
use crate::metrics::{EventTypeLabels, IngestMetrics, TopicLabels};
use crate::pipeline::{self, Fate, Pipeline, PipelineKey, Pipelines};
use crate::reference_tables::GatewayServices;
use crate::schemas::Registry;

/// Producing to a tenant's topics: their pipelines (built once and cached), the partition
/// keyless events go to, and the counters of what was appended. One per server.
pub struct Ingest {
    log: Log,
    components: Arc<Components>,
    /// What guests reach through their host imports (reference tables, schemas).
    guest_services: Arc<GatewayServices>,
    registry: Arc<Registry>,
    catalog: Arc<Catalog>,
    /// Topics' ingest pipelines, built once and cached.
    pipelines: Pipelines,
    /// Per topic, the partition keyless events go to next (sticky per request, rotating).
    sticky: Mutex<HashMap<String, Arc<AtomicU32>>>,
    /// Per tenant, its stored bytes and when they were summed ([`Ingest::stored_bytes`]).
    stored: Mutex<HashMap<String, (Instant, u64)>>,
    /// What one request and each of its events may carry.
    limits: Limits,
    /// Free space against the reserve: under it, new events are refused.
    disk: Arc<DiskGuard>,
    /// Tenants' produce quotas.
    quotas: Arc<QuotaBook>,
    pub metrics: IngestMetrics,
}

/// One record on its way into a topic, and the request event it answers for.
struct Placement {
    origin: usize,
    /// The topic as the tenant names it.
    topic: String,
    record: Record,
    /// An explicit partition asked for by the producer (only for the topic it produced to).
    partition: Option<u32>,
    event_id: String,
    /// Pass the id to the log's idempotency table (the producer or a guest chose it).
    dedup: bool,
    /// Why it goes to a dead-letter topic.
    dead_letter: Option<String>,
}

impl Placement {
    /// Request event `origin` into `topic` as it was parsed.
    fn as_parsed(origin: usize, topic: &str, e: Event) -> Placement {
        Placement {
            origin,
            topic: topic.to_owned(),
            record: e.record,
            partition: e.partition,
            event_id: e.event_id,
            dedup: e.id_given,
            dead_letter: None,
        }
    }
}

/// A topic's built pipeline, or what to build it from (stages, value subject).
type CachedOrSpec = Result<Arc<Pipeline>, (Option<Value>, Option<String>)>;

/// What producing to a topic needs to know about it, read once per request.
pub struct Prepared {
    /// The topic as the tenant names it.
    topic: String,
    limits: Limits,
    /// The tenant's quota limits, read once when the request was admitted.
    quotas: QuotaLimits,
    config: sluice_log::TopicConfig,
    key_field: Option<String>,
    pipeline: Option<CachedOrSpec>,
    generation: u64,
}

impl Prepared {
    pub fn rules(&self) -> TopicRules<'_> {
        TopicRules {
            key_field: self.key_field.as_deref(),
            log_append_time: self.config.timestamp_type == TimestampType::LogAppendTime,
            max_message_bytes: self.config.max_message_bytes,
            limits: self.limits,
        }
    }
}

/// Each request item's answer (position(s), drop, or its own error), and the deprecated event
/// types seen.
pub struct Outcome {
    pub results: Vec<Result<Value, ApiError>>,
    pub deprecated: Vec<String>,
}

type Answer = (usize, Result<Value, ApiError>);

impl Ingest {
    pub fn new(
        log: Log,
        components: Arc<Components>,
        registry: Arc<Registry>,
        catalog: Arc<Catalog>,
        limits: Limits,
        disk: Arc<DiskGuard>,
        quotas: Arc<QuotaBook>,
    ) -> Ingest {
        Ingest {
            limits,
            disk,
            quotas,
            guest_services: Arc::new(GatewayServices::new(log.clone(), registry.clone())),
            log,
            components,
            registry,
            catalog,
            pipelines: Pipelines::default(),
            sticky: Mutex::new(HashMap::new()),
            stored: Mutex::new(HashMap::new()),
            metrics: IngestMetrics::default(),
        }
    }

    /// Free space against the reserve (for `/readyz` and `/metrics`).
    pub fn disk(&self) -> &DiskGuard {
        &self.disk
    }

    /// What one request and each of its events may carry (every ingress checks them).
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// What guests reach through their host imports (transforms run with the same).
    pub fn guest_services(&self) -> &Arc<GatewayServices> {
        &self.guest_services
    }

    /// Changes whenever the tenant's schemas or event definitions change: pipelines whose
    /// validators read them are rebuilt.
    pub fn schema_generation(&self, tenant: &str) -> u64 {
        self.registry.generation(tenant) + self.catalog.generation(tenant)
    }

    /// Every built pipeline stage, with its counters.
    pub fn stage_stats(&self) -> Vec<(StageLabels, StageStats)> {
        self.pipelines.stats()
    }

    /// Build a topic document's ingest pipeline, so a pipeline that cannot run is refused
    /// before the topic is created or changed. Tenant components are pinned to the version
    /// they were built with (`mine` → `mine@3` in the stored document), so a restart or
    /// another host runs the same code until the topic is patched.
    ///
    /// The built-in stages' targets are checked against `who`'s scopes first: routing or
    /// dead-lettering into a topic needs produce on it, an `enrich` lookup consume on its table.
    pub async fn build_pipeline(
        &self,
        who: &Principal,
        doc: &mut Value,
    ) -> Result<Option<Arc<Pipeline>>, ApiError> {
        let specs = pipeline::parse_spec(doc)?;
        if specs.is_empty() {
            return Ok(None);
        }
        let reaches = pipeline::reaches(&specs);
        for t in &reaches.writes {
            who.require(Role::Produce, t)?;
        }
        for t in &reaches.reads {
            who.require(Role::Consume, t)?;
        }
        let tenant = who.tenant.as_str();
        let built = pipeline::build(
            &self.components,
            self.guest_services.clone(),
            tenant,
            &specs,
        )
        .await?;
        for (i, (spec, stage)) in specs.iter().zip(&built.stages).enumerate() {
            if spec.component != stage.label {
                doc["pipeline"][i]["component"] = Value::String(stage.label.clone());
            }
        }
        Ok(Some(Arc::new(built)))
    }

    /// A topic was created or changed: its pipeline (built by [`Ingest::build_pipeline`]
    /// from `stages`) is the one produce uses from now on, or it has none.
    pub fn pipeline_changed(
        &self,
        tenant: &str,
        full: &str,
        stages: Option<Value>,
        built: Option<Arc<Pipeline>>,
    ) {
        match built {
            Some(p) => self
                .pipelines
                .insert(full, stages, None, self.schema_generation(tenant), p),
            None => self.pipelines.remove(full),
        }
    }

    /// Bytes the tenant's own topics hold, summed at most once a second (the storage quota needs
    /// no more precision, and produce must not walk every topic per request).
    pub fn stored_bytes(&self, tenant: &str) -> u64 {
        let mut cache = self.stored.lock().expect("stored");
        if let Some((at, bytes)) = cache.get(tenant)
            && at.elapsed() < Duration::from_secs(1)
        {
            return *bytes;
        }
        let prefix = log_name(tenant, "");
        let bytes = self
            .log
            .topics(&prefix)
            .iter()
            // Internal topics (`_audit`) are the server's record, not the tenant's data.
            .filter(|t| !t.meta.name[prefix.len()..].starts_with('_'))
            .flat_map(|t| &t.partitions)
            .map(|p| p.bytes)
            .sum();
        cache.insert(tenant.to_owned(), (Instant::now(), bytes));
        bytes
    }

    /// A topic was deleted: forget what producing to it kept.
    pub fn topic_deleted(&self, full: &str) {
        self.sticky.lock().expect("sticky").remove(full);
        self.pipelines.remove(full);
    }

    /// Check the caller may produce to `topic` and read what producing needs.
    pub fn prepare(&self, who: &Principal, topic: &str) -> Result<Prepared, ApiError> {
        check_topic_name(topic)?;
        who.require(Role::Produce, topic)?;
        self.disk.check()?;
        let quotas = self.quotas.admit_produce(&who.tenant)?;
        if quotas.storage_bytes.is_some() {
            self.quotas.check_count(
                &who.tenant,
                "storage_bytes",
                self.stored_bytes(&who.tenant),
                quotas.storage_bytes,
            )?;
        }
        let full = log_name(&who.tenant, topic);
        // Schemas and event definitions change rarely; a pipeline built before the newest change
        // is rebuilt.
        let generation = self.schema_generation(&who.tenant);
        let catalog = self.catalog.has_active(&who.tenant);
        let default_subject = format!("{topic}-value");
        // Only what producing needs, read in place: this runs for every request.
        let topic_view = self
            .log
            .inspect_topic(&full, |meta, config| {
                let key_field = meta
                    .spec
                    .get("keyField")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                // The value schema's subject: named in `schemaConfig`, or `<topic>-value` when
                // that subject has a schema.
                let named = meta
                    .spec
                    .pointer("/schemaConfig/valueSchema")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty());
                let subject = match named {
                    Some(s) => Some(s.to_owned()),
                    None => self
                        .registry
                        .latest_id(&who.tenant, &default_subject)
                        .map(|_| default_subject.clone()),
                };
                let stages = meta
                    .spec
                    .get("pipeline")
                    .filter(|p| p.as_array().is_some_and(|a| !a.is_empty()));
                // The built pipeline when it is current; what to build it from when not.
                let pipeline = (stages.is_some() || subject.is_some() || catalog).then(|| {
                    let wanted = PipelineKey {
                        stages,
                        subject: subject.as_deref(),
                        generation,
                    };
                    self.pipelines
                        .cached(&full, &wanted)
                        .ok_or_else(|| (stages.cloned(), subject.clone()))
                });
                (config.clone(), key_field, pipeline)
            })
            .ok_or_else(|| ApiError::topic_not_found(topic))?;
        let (config, key_field, pipeline) = topic_view;
        Ok(Prepared {
            topic: topic.to_owned(),
            limits: self.limits,
            quotas,
            config,
            key_field,
            pipeline,
            generation,
        })
    }

    /// Run parsed events through the topic's pipeline (if any) and append them, answering for
    /// each in order. Shared by every produce API.
    pub async fn append(
        &self,
        who: &Principal,
        prepared: &Prepared,
        items: Vec<Result<Event, ApiError>>,
        now: i64,
    ) -> Result<Outcome, ApiError> {
        let topic = prepared.topic.as_str();
        // The tenant's produce quota, charged for what parsed (the whole request waits when
        // the tenant is in debt).
        let (events, bytes) = items.iter().flatten().fold((0u64, 0u64), |(n, b), e| {
            (n + 1, b + e.record.size() as u64)
        });
        self.quotas
            .charge_produce_within(&who.tenant, prepared.quotas, events, bytes)?;
        let full = log_name(&who.tenant, topic);
        let generation = prepared.generation;
        let mut errors: Vec<Option<ApiError>> = Vec::with_capacity(items.len());
        let mut answers: Vec<Vec<Value>> = Vec::with_capacity(items.len());
        let mut ids: Vec<String> = Vec::with_capacity(items.len());
        let mut parsed: Vec<(usize, Event)> = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            answers.push(Vec::new());
            match item {
                Ok(e) => {
                    ids.push(e.event_id.clone());
                    errors.push(None);
                    parsed.push((i, e));
                }
                Err(err) => {
                    ids.push(String::new());
                    errors.push(Some(err));
                }
            }
        }

        // Event types the catalog marks deprecated: accepted, counted, and the producer warned.
        let mut deprecated: Vec<String> = Vec::new();
        if self.catalog.in_force(&who.tenant) {
            for (_, e) in &parsed {
                let Some(t) = e
                    .record
                    .header("ce_type")
                    .and_then(|v| std::str::from_utf8(v).ok())
                else {
                    continue;
                };
                if self.catalog.deprecated(&who.tenant, t).is_some() {
                    self.metrics
                        .deprecated_events
                        .get_or_create(&EventTypeLabels {
                            tenant: who.tenant.clone(),
                            event_type: t.to_owned(),
                        })
                        .inc();
                    if !deprecated.iter().any(|d| d == t) {
                        deprecated.push(t.to_owned());
                    }
                }
            }
        }

        let mut placements: Vec<Placement> = Vec::with_capacity(parsed.len());
        let pipeline = match prepared.pipeline.clone() {
            Some(p) if !parsed.is_empty() => {
                Some(self.pipeline_for(&who.tenant, &full, generation, p).await?)
            }
            _ => None,
        };
        // Stages that take batches as one buffer: the records cross each boundary in one piece
        // and are changed in place; an accepted one is appended as it now is.
        let mut packed = None;
        if let Some(p) = pipeline.as_ref().filter(|p| p.packs()) {
            let (p, ctx) = (p.clone(), batch_context(who, topic, now));
            let (origins, mut events): (Vec<usize>, Vec<Event>) =
                std::mem::take(&mut parsed).into_iter().unzip();
            let bytes: usize = events.iter().map(|e| e.record.value_bytes().len()).sum();
            let inline = p.cheap(bytes);
            let run = move || {
                let started = Instant::now();
                let fates = p.run_packed(&ctx, &mut events);
                (events, fates, started.elapsed())
            };
            let (events, fates, spent) = if inline {
                run()
            } else {
                tokio::task::spawn_blocking(run)
                    .await
                    .map_err(|e| ApiError::internal(format!("pipeline: {e}")))?
            };
            self.quotas
                .charge_component(&who.tenant, prepared.quotas, spent);
            parsed = origins.into_iter().zip(events).collect();
            // `None`: too big to pack, so the per-event path below.
            packed = fates;
        }
        if let Some(fates) = packed {
            for ((i, e), fate) in parsed.into_iter().zip(fates) {
                if let Some(err) = fate.error() {
                    errors[i] = Some(err);
                    continue;
                }
                match fate {
                    Fate::Append { topic: to, .. } => {
                        let mut p = Placement::as_parsed(i, topic, e);
                        if let Some(to) = to {
                            p.topic = to;
                            p.partition = None;
                        }
                        placements.push(p);
                    }
                    Fate::DeadLetter {
                        topic: to,
                        stage,
                        reason,
                        ..
                    } => {
                        let mut p = Placement::as_parsed(i, topic, e);
                        dead_letters::mark(&mut p.record, topic, &stage, &reason);
                        p.topic = to.unwrap_or_else(|| dead_letters::dlq_of(topic));
                        p.partition = None;
                        p.dead_letter = Some(reason);
                        placements.push(p);
                    }
                    Fate::Dropped => {
                        answers[i].push(json!({"event_id": e.event_id, "dropped": true}))
                    }
                    Fate::Rejected { .. } | Fate::Failed { .. } => {}
                }
            }
        } else if let Some(pipeline) = pipeline {
            // Validators cannot change an event: an accepted one is appended as it was parsed,
            // without converting it back from the guest's form.
            let keep_records = pipeline.validate_only();
            let events: Vec<_> = parsed.iter().map(|(_, e)| to_event(&e.record)).collect();
            let ctx = batch_context(who, topic, now);
            let (fates, spent) = tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                (pipeline.run(&ctx, events), started.elapsed())
            })
            .await
            .map_err(|e| ApiError::internal(format!("pipeline: {e}")))?;
            self.quotas
                .charge_component(&who.tenant, prepared.quotas, spent);
            for ((i, mut e), fates) in parsed.into_iter().zip(fates) {
                if let Some(err) = fates.iter().find_map(Fate::error) {
                    errors[i] = Some(err);
                    continue;
                }
                let mut original = keep_records.then(|| std::mem::take(&mut e.record));
                for fate in fates {
                    match fate {
                        Fate::Append { topic: to, event } => {
                            let (record, id) = match original.take() {
                                Some(record) => (record, e.event_id.clone()),
                                None => {
                                    let record = to_record(event);
                                    let id = id_of(&record);
                                    (record, id)
                                }
                            };
                            placements.push(Placement {
                                origin: i,
                                partition: if to.is_none() { e.partition } else { None },
                                topic: to.unwrap_or_else(|| topic.to_owned()),
                                dedup: e.id_given || id != e.event_id,
                                event_id: id,
                                record,
                                dead_letter: None,
                            });
                        }
                        Fate::DeadLetter {
                            topic: to,
                            event,
                            stage,
                            reason,
                        } => {
                            let mut record = to_record(event);
                            dead_letters::mark(&mut record, topic, &stage, &reason);
                            placements.push(Placement {
                                origin: i,
                                partition: None,
                                topic: to.unwrap_or_else(|| dead_letters::dlq_of(topic)),
                                event_id: id_of(&record),
                                dedup: e.id_given,
                                record,
                                dead_letter: Some(reason),
                            });
                        }
                        Fate::Dropped => {
                            answers[i].push(json!({"event_id": e.event_id, "dropped": true}))
                        }
                        Fate::Rejected { .. } | Fate::Failed { .. } => {}
                    }
                }
            }
        } else {
            for (i, e) in parsed {
                placements.push(Placement::as_parsed(i, topic, e));
            }
        }

        let mut by_topic: BTreeMap<String, Vec<Placement>> = BTreeMap::new();
        for p in placements {
            by_topic.entry(p.topic.clone()).or_default().push(p);
        }
        for (target, placed) in by_topic {
            let outcome = self.append_to(who, &target, target != topic, placed).await;
            match outcome {
                Ok(done) => {
                    for (origin, answer) in done {
                        match answer {
                            Ok(v) => answers[origin].push(v),
                            Err(e) => errors[origin] = Some(e),
                        }
                    }
                }
                Err((origins, e)) => {
                    for o in origins {
                        errors[o] = Some(e.clone());
                    }
                }
            }
        }

        let results: Vec<Result<Value, ApiError>> = errors
            .into_iter()
            .zip(answers)
            .zip(ids)
            .map(|((err, mut answers), id)| match err {
                Some(e) => Err(e),
                None if answers.len() == 1 => Ok(answers.pop().expect("one")),
                None if answers.is_empty() => Ok(json!({"event_id": id, "dropped": true})),
                None => Ok(json!({"event_id": id, "outputs": answers})),
            })
            .collect();
        Ok(Outcome {
            results,
            deprecated,
        })
    }

    /// Append placements to one topic of the tenant. `elsewhere`: the topic is not the one the
    /// request named (a route or a dead-letter topic), so the answers name it.
    async fn append_to(
        &self,
        who: &Principal,
        topic: &str,
        elsewhere: bool,
        placed: Vec<Placement>,
    ) -> Result<Vec<Answer>, (Vec<usize>, ApiError)> {
        let origins = || placed.iter().map(|p| p.origin).collect::<Vec<_>>();
        let full = log_name(&who.tenant, topic);
        let is_dlq = placed.iter().all(|p| p.dead_letter.is_some());
        if self.log.topic(&full).is_none() {
            if is_dlq {
                if let Err(e) = dead_letters::ensure(&self.log, &who.tenant, topic).await {
                    return Err((origins(), e));
                }
            } else {
                let e = ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    42213,
                    format!(
                        "the pipeline routes this event to topic `{topic}`, which does not exist"
                    ),
                );
                return Err((origins(), e));
            }
        }
        let Some((partitions, config)) = self
            .log
            .inspect_topic(&full, |meta, config| (meta.partitions, config.clone()))
        else {
            return Err((origins(), ApiError::topic_not_found(topic)));
        };
        // Keyless events of one request stick to one partition; the next request takes the next.
        let sticky = self.sticky_counter(&full).fetch_add(1, Ordering::Relaxed) % partitions;
        let mut answers: Vec<Answer> = Vec::new();
        let mut by_partition: BTreeMap<u32, Vec<Placement>> = BTreeMap::new();
        let mut bytes_in = 0u64;
        for p in placed {
            let size = p.record.size();
            if size > config.max_message_bytes as usize {
                answers.push((
                    p.origin,
                    Err(ApiError::too_large(format!(
                        "event of {size} bytes exceeds topic `{topic}`'s max.message.bytes {}",
                        config.max_message_bytes
                    ))),
                ));
                continue;
            }
            let partition = match (p.partition, &p.record.key) {
                (Some(n), _) if n >= partitions => {
                    answers.push((
                    p.origin,
                    Err(ApiError::new(
                        StatusCode::NOT_FOUND,
                        40402,
                        format!("topic `{topic}` has {partitions} partitions; partition {n} does not exist"),
                    )),
                ));
                    continue;
                }
                (Some(n), _) => n,
                (None, Some(k)) => partition_for_key(k, partitions),
                (None, None) => sticky,
            };
            bytes_in += size as u64;
            by_partition.entry(partition).or_default().push(p);
        }
        if by_partition.is_empty() {
            return Ok(answers);
        }
        let mut slots: Vec<Vec<(usize, String, Option<String>)>> = Vec::new();
        let mut parts = Vec::with_capacity(by_partition.len());
        for (partition, placed) in by_partition {
            let mut records: Vec<Record> = Vec::with_capacity(placed.len());
            let mut ids = Vec::with_capacity(placed.len());
            let mut slot = Vec::with_capacity(placed.len());
            for p in placed {
                // Idempotency is per producing key: one key's event ids cannot suppress
                // another's events.
                ids.push(p.dedup.then(|| dedup_id(&who.key_id, &p.event_id)));
                slot.push((p.origin, p.event_id, p.dead_letter));
                records.push(p.record);
            }
            parts.push(PartitionAppend {
                partition,
                records: EncodedRecords::encode(&records, config.compression),
                event_ids: ids,
            });
            slots.push(slot);
        }
        let all: Vec<usize> = slots.iter().flatten().map(|(o, _, _)| *o).collect();
        let stored = self
            .log
            .append(&full, parts)
            .await
            .map_err(|e| (all, from_log(e, topic)))?;
        let mut appended = 0u64;
        for (slot, positions) in slots.into_iter().zip(stored) {
            for ((origin, event_id, dead_letter), a) in slot.into_iter().zip(positions) {
                let mut v =
                    json!({"event_id": event_id, "partition": a.partition, "offset": a.offset});
                if elsewhere {
                    v["topic"] = json!(topic);
                }
                if let Some(reason) = dead_letter {
                    v["dead_letter"] = json!({ "reason": reason });
                }
                if a.duplicate {
                    v["duplicate"] = json!(true);
                } else {
                    appended += 1;
                }
                answers.push((origin, Ok(v)));
            }
        }
        let labels = TopicLabels {
            tenant: who.tenant.clone(),
            topic: topic.to_owned(),
        };
        self.metrics
            .events_in
            .get_or_create(&labels)
            .inc_by(appended);
        self.metrics
            .bytes_in
            .get_or_create(&labels)
            .inc_by(bytes_in);
        Ok(answers)
    }

    /// The topic's pipeline: the cached one, or built (on first use, after a restart, after a
    /// schema change) and cached. A topic with a value schema validates against it first.
    async fn pipeline_for(
        &self,
        tenant: &str,
        full: &str,
        generation: u64,
        cached_or_spec: CachedOrSpec,
    ) -> Result<Arc<Pipeline>, ApiError> {
        let (stages, subject) = match cached_or_spec {
            Ok(p) => return Ok(p),
            Err(spec) => spec,
        };
        let _one_at_a_time = self.pipelines.building.lock().await;
        let key = PipelineKey {
            stages: stages.as_ref(),
            subject: subject.as_deref(),
            generation,
        };
        if let Some(built) = self.pipelines.cached(full, &key) {
            return Ok(built);
        }
        let mut specs = Vec::new();
        // The event catalog: events of an active definition's type follow its payload schema.
        let types: Vec<Value> = self
            .catalog
            .active(tenant)
            .into_iter()
            .map(|(pattern, subject)| json!({"pattern": pattern, "subject": subject}))
            .collect();
        if !types.is_empty() {
            specs.push(pipeline::StageSpec {
                component: "validate".into(),
                config: json!({ "types": types, "pointer": "/payload" }).to_string(),
            });
        }
        if let Some(subject) = &subject {
            if self.registry.latest_id(tenant, subject).is_none() {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    42214,
                    format!(
                        "the topic's value schema subject `{subject}` has no schema registered; \
                     register one (POST /registry/subjects/{subject}/versions) before producing"
                    ),
                ));
            }
            specs.push(pipeline::StageSpec {
                component: "validate".into(),
                config: json!({ "subject": subject, "pointer": "/payload" }).to_string(),
            });
        }
        if let Some(stages) = &stages {
            specs.extend(pipeline::parse_spec(&json!({ "pipeline": stages }))?);
        }
        let built = Arc::new(
            pipeline::build(
                &self.components,
                self.guest_services.clone(),
                tenant,
                &specs,
            )
            .await?,
        );
        self.pipelines
            .insert(full, stages, subject, generation, built.clone());
        Ok(built)
    }

    fn sticky_counter(&self, topic: &str) -> Arc<AtomicU32> {
        self.sticky
            .lock()
            .expect("sticky")
            .entry(topic.to_owned())
            .or_insert_with(|| Arc::new(AtomicU32::new(rand::random())))
            .clone()
    }
}

/// The id the log's idempotency table keeps for an event: the producing key's id with the
/// event's.
fn dedup_id(key_id: &str, event_id: &str) -> String {
    format!("{key_id}/{event_id}")
}

fn batch_context(who: &Principal, topic: &str, now: i64) -> BatchContext {
    BatchContext {
        tenant: who.tenant.clone(),
        topic: topic.to_owned(),
        key_id: Some(who.key_id.clone()),
        ingest_time: now,
    }
}

#[cfg(test)]
mod tests {
    use sluice_log::{LogOptions, NewTopic, Storage};
    use sluice_runtime::{Runtime, RuntimeOptions};
    use sluice_tenancy::auth::Scope;

    use super::*;
    use crate::envelope;

    /// An `Ingest` over a fresh local log, with no HTTP server anywhere.
    async fn ingest(dir: &std::path::Path) -> (Log, Ingest) {
        let log = Log::open(Storage::Local(dir.to_owned()), LogOptions::default())
            .await
            .unwrap();
        let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
        let components = Arc::new(Components::load(log.clone(), runtime).await.unwrap());
        let registry = Arc::new(Registry::load(log.clone()).await.unwrap());
        let catalog = Arc::new(Catalog::load(log.clone()).await.unwrap());
        let ingest = Ingest::new(
            log.clone(),
            components,
            registry,
            catalog,
            Limits::DEFAULT,
            DiskGuard::new(None, 0),
            Arc::new(QuotaBook::new(
                Arc::new(sluice_tenancy::Directory::load(log.clone()).await.unwrap()),
                Default::default(),
            )),
        );
        (log, ingest)
    }

    async fn topic(log: &Log, tenant: &str, name: &str, partitions: u32, spec: Value) {
        log.create_topic(NewTopic {
            name: log_name(tenant, name),
            partitions,
            config: Default::default(),
            spec,
        })
        .await
        .unwrap();
    }

    fn who(tenant: &str, role: Role, topics: &str) -> Principal {
        Principal {
            key_id: "k1".into(),
            tenant: tenant.into(),
            scopes: vec![Scope {
                role,
                topics: topics.into(),
            }],
            system: false,
        }
    }

    fn events(prepared: &Prepared, texts: &[&str]) -> Vec<Result<Event, ApiError>> {
        texts
            .iter()
            .map(|t| envelope::parse(t, &prepared.rules(), "k1", 1_000))
            .collect()
    }

    #[tokio::test]
    async fn appends_in_request_order_keyed_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let (log, ingest) = ingest(dir.path()).await;
        topic(&log, "acme", "orders", 3, json!({"keyField": "org_id"})).await;
        let me = who("acme", Role::Produce, "orders");
        let prepared = ingest.prepare(&me, "orders").unwrap();
        let batch = events(
            &prepared,
            &[
                r#"{"event_type":"a","org_id":7,"event_id":"e1","payload":{}}"#,
                r#"{"event_type":"a","org_id":7,"payload":{}}"#,
                r#"not json"#,
            ],
        );
        let out = ingest.append(&me, &prepared, batch, 1_000).await.unwrap();
        let r = &out.results;
        assert_eq!(r.len(), 3);
        let (first, second) = (r[0].as_ref().unwrap(), r[1].as_ref().unwrap());
        assert_eq!(first["event_id"], "e1");
        // One key, one partition, consecutive offsets.
        assert_eq!(first["partition"], second["partition"]);
        assert_eq!(
            second["offset"].as_u64(),
            first["offset"].as_u64().map(|o| o + 1)
        );
        assert_eq!(r[2].as_ref().unwrap_err().error_code, 40001);
        // The same event id again is a duplicate: acknowledged, not appended twice.
        let again = events(
            &prepared,
            &[r#"{"event_type":"a","org_id":7,"event_id":"e1","payload":{}}"#],
        );
        let out = ingest.append(&me, &prepared, again, 1_000).await.unwrap();
        let dup = out.results[0].as_ref().unwrap();
        assert_eq!(dup["duplicate"], true);
        assert_eq!(dup["offset"], first["offset"]);
        let p = first["partition"].as_u64().unwrap() as u32;
        assert_eq!(log.offsets(&log_name("acme", "orders"), p).unwrap().1, 2);
        assert_eq!(
            ingest
                .metrics
                .events_in
                .get_or_create(&TopicLabels {
                    tenant: "acme".into(),
                    topic: "orders".into()
                })
                .get(),
            2
        );
    }

    fn refused(prepared: Result<Prepared, ApiError>) -> u32 {
        prepared.err().expect("refused").error_code
    }

    #[tokio::test]
    async fn one_keys_event_ids_do_not_suppress_anothers() {
        let dir = tempfile::tempdir().unwrap();
        let (log, ingest) = ingest(dir.path()).await;
        topic(&log, "acme", "orders", 1, json!({})).await;
        let first = who("acme", Role::Produce, "*");
        let mut second = who("acme", Role::Produce, "*");
        second.key_id = "k2".into();
        let text = r#"{"event_type":"a","event_id":"same","payload":{}}"#;
        for (key, duplicate) in [(&first, false), (&second, false), (&first, true)] {
            let prepared = ingest.prepare(key, "orders").unwrap();
            let batch = events(&prepared, &[text]);
            let out = ingest.append(key, &prepared, batch, 1_000).await.unwrap();
            let r = out.results[0].as_ref().unwrap();
            assert_eq!(
                r.get("duplicate").is_some(),
                duplicate,
                "{} {r}",
                key.key_id
            );
        }
        assert_eq!(log.offsets(&log_name("acme", "orders"), 0).unwrap().1, 2);
    }

    #[tokio::test]
    async fn scopes_and_tenants_are_checked_before_anything_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let (log, ingest) = ingest(dir.path()).await;
        topic(&log, "acme", "orders", 1, json!({})).await;
        let reader = who("acme", Role::Consume, "*");
        assert_eq!(refused(ingest.prepare(&reader, "orders")), 40301);
        let other_topic = who("acme", Role::Produce, "payments.*");
        assert_eq!(refused(ingest.prepare(&other_topic, "orders")), 40301);
        // Another tenant's topic of the same name does not exist for this one.
        let other_tenant = who("globex", Role::Produce, "*");
        assert_eq!(refused(ingest.prepare(&other_tenant, "orders")), 40401);
        assert_eq!(refused(ingest.prepare(&other_tenant, "_auth")), 42201);
    }

    #[tokio::test]
    async fn a_pipeline_routes_and_dead_letters_without_a_server() {
        let dir = tempfile::tempdir().unwrap();
        let (log, ingest) = ingest(dir.path()).await;
        let pipeline = json!([{"component": "route", "config": {"rules": [
            {"type": "*.test", "dlq": "no test events"},
            {"type": "audit.*", "topic": "audit"}
        ]}}]);
        topic(&log, "acme", "in", 1, json!({"pipeline": pipeline})).await;
        topic(&log, "acme", "audit", 1, json!({})).await;
        let me = who("acme", Role::Produce, "*");
        let prepared = ingest.prepare(&me, "in").unwrap();
        let batch = events(
            &prepared,
            &[
                r#"{"event_type":"order.created","payload":{}}"#,
                r#"{"event_type":"order.test","payload":{}}"#,
                r#"{"event_type":"audit.login","payload":{}}"#,
            ],
        );
        let out = ingest.append(&me, &prepared, batch, 1_000).await.unwrap();
        let r: Vec<&Value> = out.results.iter().map(|r| r.as_ref().unwrap()).collect();
        assert!(r[0].get("topic").is_none(), "{}", r[0]);
        assert_eq!(r[1]["topic"], "in.dlq");
        assert_eq!(r[1]["dead_letter"]["reason"], "no test events");
        assert_eq!(r[2]["topic"], "audit");
        // The dead-letter topic was created on first use.
        assert!(log.topic(&log_name("acme", "in.dlq")).is_some());
        assert_eq!(ingest.stage_stats().len(), 1);
    }
}
