//! Per-tenant transforms: a component that runs continuously from an input topic into output
//! topics, with at-least-once delivery.
//!
//! A transform reads its input from its committed offsets, calls its component in batches
//! (one call per batch), appends the outputs (and what the component rejects or fails on, to
//! the dead-letter topic with the reason), and only then commits the offsets. A crash between
//! the append and the commit processes that batch again; output ids come from the component
//! (deterministic for the built-ins), so the log's idempotent append drops such repeats within
//! its deduplication window.
//!
//! Definitions live in the internal topic `_transforms` (the newest record per key wins; a
//! record with `"deleted": true` removes one), committed offsets in `_offsets`. A redeploy or
//! a stop lets the running batch finish and commit, then swaps or stops: nothing is lost and
//! nothing repeats.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sluice_log::partitioner::partition_for_key;
use sluice_log::{EncodedRecords, Log, LogError, PartitionAppend, Record};
use sluice_runtime::{BatchContext, CallError, Stage, StageLabels, StageStats};
use tokio::sync::watch;

use crate::components::Components;
use crate::dead_letters;
use crate::guest_events::{id_of, to_event, to_record};
use crate::reference_tables::GatewayServices;
use sluice_tenancy::error::ApiError;
use sluice_tenancy::internal_topics::{self, OFFSETS_TOPIC};
use sluice_tenancy::log_name;
use sluice_tenancy::now_ms;

pub const TRANSFORMS_TOPIC: &str = "_transforms";

/// A transform as deployed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TransformDef {
    pub name: String,
    /// The component as named (`redact-phi`, `mine`, `mine@2`).
    pub component: String,
    #[serde(default)]
    pub config: Value,
    pub input: String,
    /// Output topics; a component's default output is the first.
    pub outputs: Vec<String>,
    /// Dead-letter topic (default `<input>.dlq`).
    #[serde(default)]
    pub dlq: Option<String>,
    /// Events per call into the component.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// `running` or `stopped`.
    #[serde(default = "running")]
    pub state: String,
    /// The component version this deployment pinned (`mine@2`), so restarts run the same code.
    #[serde(default)]
    pub resolved: String,
    #[serde(default)]
    pub updated_ms: i64,
}

fn default_batch() -> usize {
    100
}

fn running() -> String {
    "running".into()
}

impl TransformDef {
    pub fn dlq(&self) -> String {
        self.dlq
            .clone()
            .unwrap_or_else(|| dead_letters::dlq_of(&self.input))
    }
}

#[derive(Serialize, Deserialize)]
struct Stored {
    tenant: String,
    #[serde(default)]
    deleted: bool,
    def: Option<TransformDef>,
}

/// Counters a running transform keeps.
#[derive(Default)]
struct Progress {
    batches: AtomicU64,
    events_in: AtomicU64,
    events_out: AtomicU64,
    dead_letters: AtomicU64,
    last_error: Mutex<Option<String>>,
}

struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    stage: Stage,
    progress: Arc<Progress>,
}

type Key = (String, String);

pub struct Transforms {
    log: Log,
    /// Where transforms' components come from, and what their host imports reach.
    components: Arc<Components>,
    guest_services: Arc<GatewayServices>,
    defs: Mutex<HashMap<Key, TransformDef>>,
    offsets: Arc<Mutex<HashMap<Key, Vec<u64>>>>,
    running: tokio::sync::Mutex<HashMap<Key, Running>>,
}

/// Every record of a one-partition internal topic, in order.
async fn read_topic(log: &Log, topic: &str) -> Result<Vec<Record>, LogError> {
    let mut out = Vec::new();
    let (mut offset, end) = log.offsets(topic, 0)?;
    while offset < end {
        let r = log.read(topic, 0, offset, 10_000, 16 << 20).await?;
        out.extend(r.records.into_iter().map(|s| s.record));
        offset = r.next_offset;
    }
    Ok(out)
}

fn offsets_key(tenant: &str, name: &str) -> String {
    format!("transform/{tenant}/{name}")
}

impl Transforms {
    /// Load definitions (creating their topic on first start) and, from `committed` (the
    /// records of `_offsets`, read once for every owner), committed offsets.
    pub async fn load(
        log: Log,
        committed: &[Record],
        components: Arc<Components>,
        guest_services: Arc<GatewayServices>,
    ) -> Result<Transforms, LogError> {
        internal_topics::ensure(
            &log,
            TRANSFORMS_TOPIC,
            "tenants' transforms",
            &[internal_topics::compact()],
        )
        .await?;
        let mut defs = HashMap::new();
        for r in read_topic(&log, TRANSFORMS_TOPIC).await? {
            match serde_json::from_slice::<Stored>(r.value_bytes()) {
                Ok(Stored {
                    tenant,
                    deleted: false,
                    def: Some(def),
                }) => {
                    defs.insert((tenant, def.name.clone()), def);
                }
                Ok(Stored { tenant, def, .. }) => {
                    if let Some(d) = def {
                        defs.remove(&(tenant, d.name));
                    }
                }
                Err(e) => tracing::warn!("skipping an unreadable transform record: {e}"),
            }
        }
        let mut offsets = HashMap::new();
        for r in committed {
            let Some(key) = r.key.as_ref().and_then(|k| std::str::from_utf8(k).ok()) else {
                continue;
            };
            let Some(rest) = key.strip_prefix("transform/") else {
                continue;
            };
            let Some((tenant, name)) = rest.split_once('/') else {
                continue;
            };
            if let Ok(v) = serde_json::from_slice::<Value>(r.value_bytes())
                && let Some(list) = v["offsets"].as_array()
            {
                let list: Vec<u64> = list.iter().filter_map(Value::as_u64).collect();
                offsets.insert((tenant.to_owned(), name.to_owned()), list);
            }
        }
        Ok(Transforms {
            log,
            components,
            guest_services,
            defs: Mutex::new(defs),
            offsets: Arc::new(Mutex::new(offsets)),
            running: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Start every transform that was running before the restart.
    pub async fn resume(&self) {
        let defs: Vec<(Key, TransformDef)> = self
            .defs
            .lock()
            .expect("defs")
            .iter()
            .filter(|(_, d)| d.state == "running")
            .map(|(k, d)| (k.clone(), d.clone()))
            .collect();
        for ((tenant, _), def) in defs {
            if let Err(e) = self.start(&tenant, &def).await {
                tracing::warn!(
                    tenant,
                    transform = def.name,
                    "could not resume: {}",
                    e.message
                );
            }
        }
    }

    pub fn get(&self, tenant: &str, name: &str) -> Option<TransformDef> {
        self.defs
            .lock()
            .expect("defs")
            .get(&(tenant.to_owned(), name.to_owned()))
            .cloned()
    }

    pub fn list(&self, tenant: &str) -> Vec<TransformDef> {
        let mut out: Vec<TransformDef> = self
            .defs
            .lock()
            .expect("defs")
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|(_, d)| d.clone())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    async fn persist(
        &self,
        tenant: &str,
        def: &TransformDef,
        deleted: bool,
    ) -> Result<(), ApiError> {
        let stored = Stored {
            tenant: tenant.to_owned(),
            deleted,
            def: Some(def.clone()),
        };
        internal_topics::append(
            &self.log,
            TRANSFORMS_TOPIC,
            format!("{tenant}/{}", def.name),
            serde_json::to_vec(&stored).expect("serializes"),
        )
        .await?;
        let key = (tenant.to_owned(), def.name.clone());
        let mut defs = self.defs.lock().expect("defs");
        if deleted {
            defs.remove(&key);
        } else {
            defs.insert(key, def.clone());
        }
        Ok(())
    }

    /// Create or redeploy: build the new stage first (so a bad deployment changes nothing),
    /// stop the running one after its batch, save, start the new one.
    pub async fn deploy(
        &self,
        tenant: &str,
        mut def: TransformDef,
    ) -> Result<TransformDef, ApiError> {
        check_def(&self.log, tenant, &def)?;
        let stage = build_stage(
            &self.components,
            self.guest_services.clone(),
            tenant,
            &mut def,
        )
        .await?;
        def.updated_ms = now_ms();
        let key = (tenant.to_owned(), def.name.clone());
        let mut running = self.running.lock().await;
        if let Some(r) = running.remove(&key) {
            stop_runner(r).await;
        }
        self.persist(tenant, &def, false).await?;
        if def.state == "running" {
            running.insert(key, self.spawn(tenant, &def, stage));
        }
        Ok(def)
    }

    async fn start(&self, tenant: &str, def: &TransformDef) -> Result<(), ApiError> {
        let mut def = def.clone();
        if !def.resolved.is_empty() {
            def.component = def.resolved.clone();
        }
        let stage = build_stage(
            &self.components,
            self.guest_services.clone(),
            tenant,
            &mut def,
        )
        .await?;
        let key = (tenant.to_owned(), def.name.clone());
        let mut running = self.running.lock().await;
        if let Some(r) = running.remove(&key) {
            stop_runner(r).await;
        }
        running.insert(key, self.spawn(tenant, &def, stage));
        Ok(())
    }

    /// Set a transform running or stopped.
    pub async fn set_state(
        &self,
        tenant: &str,
        name: &str,
        run: bool,
    ) -> Result<TransformDef, ApiError> {
        let mut def = self.get(tenant, name).ok_or_else(|| not_found(name))?;
        let key = (tenant.to_owned(), name.to_owned());
        if run {
            def.state = "running".into();
            self.persist(tenant, &def, false).await?;
            self.start(tenant, &def).await?;
        } else {
            if let Some(r) = self.running.lock().await.remove(&key) {
                stop_runner(r).await;
            }
            def.state = "stopped".into();
            self.persist(tenant, &def, false).await?;
        }
        Ok(def)
    }

    /// Delete a transform and forget its offsets: one created later under the same name
    /// starts from the beginning of its input.
    pub async fn delete(&self, tenant: &str, name: &str) -> Result<(), ApiError> {
        let def = self.get(tenant, name).ok_or_else(|| not_found(name))?;
        let key = (tenant.to_owned(), name.to_owned());
        if let Some(r) = self.running.lock().await.remove(&key) {
            stop_runner(r).await;
        }
        self.persist(tenant, &def, true).await?;
        internal_topics::append(
            &self.log,
            OFFSETS_TOPIC,
            offsets_key(tenant, name),
            serde_json::to_vec(&json!({ "offsets": [] })).expect("serializes"),
        )
        .await?;
        self.offsets.lock().expect("offsets").remove(&key);
        Ok(())
    }

    /// Stop every runner (each finishes and commits its batch): for shutdown.
    pub async fn stop_all(&self) {
        let mut running = self.running.lock().await;
        for (_, r) in running.drain() {
            stop_runner(r).await;
        }
    }

    /// A transform's status: state, offsets and lag per input partition, counters.
    pub async fn status(&self, tenant: &str, name: &str) -> Result<Value, ApiError> {
        let def = self.get(tenant, name).ok_or_else(|| not_found(name))?;
        let key = (tenant.to_owned(), name.to_owned());
        let committed = self
            .offsets
            .lock()
            .expect("offsets")
            .get(&key)
            .cloned()
            .unwrap_or_default();
        let input = log_name(tenant, &def.input);
        let partitions = self.log.topic(&input).map_or(0, |t| t.meta.partitions);
        let mut lag_total = 0;
        let parts: Vec<Value> = (0..partitions)
            .map(|p| {
                let (start, end) = self.log.offsets(&input, p).unwrap_or((0, 0));
                let at = committed.get(p as usize).copied().unwrap_or(0).max(start);
                lag_total += end.saturating_sub(at);
                json!({"partition": p, "committed": at, "end": end, "lag": end.saturating_sub(at)})
            })
            .collect();
        let running = self.running.lock().await;
        let r = running.get(&key);
        let mut v = json!({
            "transform": def,
            "state": if r.is_some() { "running" } else { "stopped" },
            "partitions": parts,
            "lag": lag_total,
        });
        if let Some(r) = r {
            let p = &r.progress;
            let stats: StageStats = r.stage.stats();
            v["processed"] = json!({
                "batches": p.batches.load(Ordering::Relaxed),
                "events_in": p.events_in.load(Ordering::Relaxed),
                "events_out": p.events_out.load(Ordering::Relaxed),
                "dead_letters": p.dead_letters.load(Ordering::Relaxed),
            });
            v["component_calls"] = json!(stats.calls);
            v["component_seconds"] = json!(stats.seconds);
            v["last_error"] = json!(*p.last_error.lock().expect("last_error"));
        }
        Ok(v)
    }

    /// Stage counters of running transforms, for `/metrics`.
    pub async fn stats(&self) -> Vec<(StageLabels, StageStats)> {
        let running = self.running.lock().await;
        running
            .values()
            .map(|r| (r.stage.labels(), r.stage.stats()))
            .collect()
    }

    fn spawn(&self, tenant: &str, def: &TransformDef, stage: Stage) -> Running {
        let (stop, stopped) = watch::channel(false);
        let progress = Arc::new(Progress::default());
        let runner = Runner {
            log: self.log.clone(),
            tenant: tenant.to_owned(),
            def: def.clone(),
            stage: stage.clone(),
            offsets: self.offsets.clone(),
            progress: progress.clone(),
        };
        let task = tokio::spawn(runner.run(stopped));
        Running {
            stop,
            task,
            stage,
            progress,
        }
    }
}

async fn stop_runner(r: Running) {
    let _ = r.stop.send(true);
    let _ = r.task.await;
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(
        http::StatusCode::NOT_FOUND,
        40404,
        format!("transform `{name}` does not exist"),
    )
}

fn check_def(log: &Log, tenant: &str, def: &TransformDef) -> Result<(), ApiError> {
    let valid_name = !def.name.is_empty()
        && def.name.len() <= 64
        && def
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !valid_name {
        return Err(ApiError::invalid(
            "a transform name is 1-64 characters of [a-zA-Z0-9._-]",
        ));
    }
    if def.outputs.is_empty() {
        return Err(ApiError::invalid(
            "a transform needs at least one output topic",
        ));
    }
    if def.batch_size == 0 || def.batch_size > 10_000 {
        return Err(ApiError::invalid("`batch_size` must be 1-10000"));
    }
    if def.state != "running" && def.state != "stopped" {
        return Err(ApiError::invalid("`state` is `running` or `stopped`"));
    }
    for t in std::iter::once(&def.input).chain(&def.outputs) {
        sluice_tenancy::check_topic_name(t)?;
        if log.topic(&log_name(tenant, t)).is_none() {
            return Err(ApiError::topic_not_found(t));
        }
    }
    if def.outputs.contains(&def.input) {
        return Err(ApiError::invalid(
            "a transform cannot write to its own input topic",
        ));
    }
    sluice_tenancy::check_topic_name(&def.dlq())?;
    Ok(())
}

async fn build_stage(
    components: &Components,
    host: Arc<GatewayServices>,
    tenant: &str,
    def: &mut TransformDef,
) -> Result<Stage, ApiError> {
    let config = if def.config.is_null() {
        "{}".to_owned()
    } else {
        def.config.to_string()
    };
    let (stage, label) = transformer_stage(
        components,
        host,
        tenant,
        &def.component,
        config,
        "a transform",
    )
    .await?;
    def.resolved = label;
    Ok(stage)
}

/// A transformer component's stage with `config` (`what` needs it: named in the refusal of a
/// component of another world); the stage and the component's resolved label.
pub(crate) async fn transformer_stage(
    components: &Components,
    host: Arc<GatewayServices>,
    tenant: &str,
    component: &str,
    config: String,
    what: &str,
) -> Result<(Stage, String), ApiError> {
    let (resolved, compiled) = components.resolve(tenant, component).await?;
    if resolved.world != sluice_runtime::World::Transformer {
        return Err(ApiError::new(
            http::StatusCode::UNPROCESSABLE_ENTITY,
            42211,
            format!(
                "`{component}` is a {} component; {what} needs a transformer",
                resolved.world.name()
            ),
        ));
    }
    let runtime = components.runtime().clone();
    let label = resolved.label.clone();
    let labels = StageLabels {
        tenant: tenant.to_owned(),
        component: resolved.label,
    };
    let stage = tokio::task::spawn_blocking(move || {
        Stage::new(
            &runtime,
            &compiled,
            sluice_runtime::World::Transformer,
            config,
            host,
            labels,
        )
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::new(http::StatusCode::UNPROCESSABLE_ENTITY, 42212, e.to_string()))?;
    Ok((stage, label))
}

struct Runner {
    log: Log,
    tenant: String,
    def: TransformDef,
    stage: Stage,
    offsets: Arc<Mutex<HashMap<Key, Vec<u64>>>>,
    progress: Arc<Progress>,
}

/// How long an idle runner waits for new input before looking again (and at its stop flag).
const IDLE_WAIT: Duration = Duration::from_millis(500);

impl Runner {
    fn key(&self) -> Key {
        (self.tenant.clone(), self.def.name.clone())
    }

    fn failed(&self, e: String) {
        tracing::warn!(tenant = self.tenant, transform = self.def.name, "{e}");
        *self.progress.last_error.lock().expect("last_error") = Some(e);
    }

    async fn run(self, mut stop: watch::Receiver<bool>) {
        let input = log_name(&self.tenant, &self.def.input);
        let mut next_partition = 0u32;
        loop {
            if *stop.borrow() {
                return;
            }
            let Some(info) = self.log.topic(&input) else {
                self.failed(format!("input topic `{}` is gone", self.def.input));
                tokio::select! { _ = stop.changed() => {}, _ = tokio::time::sleep(IDLE_WAIT) => {} }
                continue;
            };
            let partitions = info.meta.partitions;
            let committed = self
                .offsets
                .lock()
                .expect("offsets")
                .get(&self.key())
                .cloned()
                .unwrap_or_default();
            let at = |p: u32| committed.get(p as usize).copied().unwrap_or(0);
            // The next partition with input, round-robin so none starves.
            let mut work = None;
            for i in 0..partitions {
                let p = (next_partition + i) % partitions;
                if let Ok((start, end)) = self.log.offsets(&input, p)
                    && at(p).max(start) < end
                {
                    work = Some((p, at(p).max(start)));
                    break;
                }
            }
            let Some((p, from)) = work else {
                let mut waits: FuturesUnordered<_> = (0..partitions)
                    .map(|p| self.log.wait_for(&input, p, at(p), IDLE_WAIT))
                    .collect();
                tokio::select! {
                    _ = stop.changed() => {}
                    _ = waits.next() => {}
                }
                continue;
            };
            next_partition = (p + 1) % partitions;
            match self.process(&input, p, from, partitions).await {
                Ok(()) => {}
                Err(e) => {
                    self.failed(e);
                    tokio::select! { _ = stop.changed() => {}, _ = tokio::time::sleep(Duration::from_secs(1)) => {} }
                }
            }
        }
    }

    /// One batch of one partition: call, append outputs and dead letters, commit.
    async fn process(&self, input: &str, p: u32, from: u64, partitions: u32) -> Result<(), String> {
        let read = self
            .log
            .read(input, p, from, self.def.batch_size, 8 << 20)
            .await
            .map_err(|e| format!("reading `{}`: {e}", self.def.input))?;
        if read.records.is_empty() {
            return Ok(());
        }
        let next = read.next_offset;
        let records: Vec<Record> = read.records.into_iter().map(|s| s.record).collect();
        let events: Vec<_> = records.iter().map(to_event).collect();
        let ctx = BatchContext {
            tenant: self.tenant.clone(),
            topic: self.def.input.clone(),
            key_id: None,
            ingest_time: now_ms(),
        };
        let stage = self.stage.clone();
        let n = events.len();
        let result = tokio::task::spawn_blocking(move || stage.transform(&ctx, &events))
            .await
            .map_err(|e| format!("transform task: {e}"))?;
        let mut out: HashMap<String, Vec<Record>> = HashMap::new();
        let mut dead: Vec<Record> = Vec::new();
        let label = self.stage.labels().component;
        let mut to_dlq = |mut r: Record, reason: &str| {
            dead_letters::mark(&mut r, &self.def.input, &label, reason);
            dead.push(r);
        };
        match result {
            Ok(results) => {
                for (input_record, r) in records.into_iter().zip(results) {
                    match r {
                        Ok(outputs) => {
                            for o in outputs {
                                let topic = o.topic.unwrap_or_else(|| self.def.outputs[0].clone());
                                if self.def.outputs.contains(&topic) {
                                    out.entry(topic).or_default().push(to_record(o.event));
                                } else {
                                    to_dlq(
                                        input_record.clone(),
                                        &format!(
                                            "the component wrote to `{topic}`, which is not one of the transform's outputs"
                                        ),
                                    );
                                }
                            }
                        }
                        Err(rejection) => {
                            let details = crate::pipeline::details(&rejection.violations);
                            to_dlq(input_record, &format!("{}: {details}", rejection.reason));
                        }
                    }
                }
            }
            // Not the events' fault: keep them, retry after a pause.
            Err(e @ (CallError::Suspended(_) | CallError::Instantiate(_) | CallError::Busy(_))) => {
                return Err(format!("component `{label}`: {e}"));
            }
            Err(e) => {
                let reason = format!("{} ({})", e, e.kind());
                for r in records {
                    to_dlq(r, &reason);
                }
            }
        }
        let mut emitted = 0u64;
        for (topic, records) in out {
            emitted += records.len() as u64;
            self.append(&topic, records).await?;
        }
        let dead_count = dead.len() as u64;
        if !dead.is_empty() {
            let dlq = self.def.dlq();
            dead_letters::ensure(&self.log, &self.tenant, &dlq)
                .await
                .map_err(|e| e.message)?;
            self.append(&dlq, dead).await?;
        }
        // Commit only after everything above is durable.
        let mut committed = self
            .offsets
            .lock()
            .expect("offsets")
            .get(&self.key())
            .cloned()
            .unwrap_or_default();
        if committed.len() < partitions as usize {
            committed.resize(partitions as usize, 0);
        }
        let moved = committed[p as usize] != next;
        committed[p as usize] = next;
        if moved {
            internal_topics::append(
                &self.log,
                OFFSETS_TOPIC,
                offsets_key(&self.tenant, &self.def.name),
                serde_json::to_vec(&json!({ "offsets": committed })).expect("serializes"),
            )
            .await
            .map_err(|e| format!("committing offsets: {}", e.message))?;
        }
        self.offsets
            .lock()
            .expect("offsets")
            .insert(self.key(), committed);
        let pr = &self.progress;
        pr.batches.fetch_add(1, Ordering::Relaxed);
        pr.events_in.fetch_add(n as u64, Ordering::Relaxed);
        pr.events_out.fetch_add(emitted, Ordering::Relaxed);
        pr.dead_letters.fetch_add(dead_count, Ordering::Relaxed);
        Ok(())
    }

    /// Append to a topic of the tenant, partitioned by key; ids go to the idempotency table.
    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<(), String> {
        let full = log_name(&self.tenant, topic);
        let (partitions, compression) = self
            .log
            .inspect_topic(&full, |meta, config| (meta.partitions, config.compression))
            .ok_or_else(|| format!("output topic `{topic}` does not exist"))?;
        let mut by_partition: HashMap<u32, (Vec<Record>, Vec<Option<String>>)> = HashMap::new();
        for (i, r) in records.into_iter().enumerate() {
            let id = id_of(&r);
            // Keyless outputs go by their id, so a batch processed again lands where it did.
            let p = match &r.key {
                Some(k) => partition_for_key(k, partitions),
                None if !id.is_empty() => partition_for_key(id.as_bytes(), partitions),
                None => (i as u32) % partitions,
            };
            let e = by_partition.entry(p).or_default();
            e.1.push((!id.is_empty()).then_some(id));
            e.0.push(r);
        }
        let parts = by_partition
            .into_iter()
            .map(|(partition, (records, ids))| PartitionAppend {
                partition,
                records: EncodedRecords::encode(&records, compression),
                event_ids: ids,
            })
            .collect();
        self.log
            .append(&full, parts)
            .await
            .map(|_| ())
            .map_err(|e| format!("appending to `{topic}`: {e}"))
    }
}
