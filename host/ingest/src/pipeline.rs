//! Ingest pipelines: the ordered stages a topic runs every produced batch through.
//!
//! A topic's document may carry `"pipeline": [{"component": "validate", "config": {…}}, …]`.
//! Each stage is a component (built-in or the tenant's, `name` or `name@version`) of one of the
//! stage worlds, with its JSON configuration; the world decides what the stage does:
//! a validator accepts or rejects, an enricher rewrites or rejects, a router picks the topic,
//! key or dead-letter topic, a transformer maps each event to zero or more events.
//!
//! When every stage also takes batches as one buffer (the built-in validate, enrich and route
//! do), [`Pipeline::run_packed`] runs the events as the stored records they already are: one
//! buffer crosses into each guest, enrichers answer with what changes, and nothing is converted
//! to the WIT `event` and back. Otherwise [`Pipeline::run`] passes `list<event>`.
//!
//! Stages are built (components compiled, the configuration checked by the guest's `init`) when
//! the topic is created or changed, so a bad pipeline is refused then; they are cached per
//! topic and rebuilt after a restart on first use.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::StatusCode;
use serde_json::Value;
use sluice_runtime::{
    BatchContext, CallError, Change, Decision, Event, HostServices, Span, Stage, StageLabels,
    StageStats, Verdict, Violation, World,
};

use crate::components::Components;
use crate::envelope;
use crate::guest_events::pack;
use sluice_tenancy::error::ApiError;

/// Packed runs of built-in stages over at most this many bytes, which lately took at most
/// `INLINE_MICROS` on average, run on the request's own thread (see [`Pipeline::cheap`]):
/// on two cores, handing each batch to a blocking thread and back cost more than the stages.
const INLINE_BYTES: usize = 256 << 10;
const INLINE_MICROS: u64 = 2_000;

/// A stage as the topic document names it.
#[derive(Debug, Clone, PartialEq)]
pub struct StageSpec {
    pub component: String,
    pub config: String,
}

/// The topics built-in stages name in their configuration: where `route` may send events
/// (`topic`, `dlqTopic` of its rules and default), and which reference tables `enrich` reads
/// (`lookups[].table`). Checked against the configuring key's scopes, so a pipeline cannot
/// write to or read from a topic its author may not.
pub struct Reaches {
    pub writes: Vec<String>,
    pub reads: Vec<String>,
}

pub fn reaches(specs: &[StageSpec]) -> Reaches {
    let mut out = Reaches {
        writes: Vec::new(),
        reads: Vec::new(),
    };
    for spec in specs {
        let Ok(config) = serde_json::from_str::<Value>(&spec.config) else {
            continue;
        };
        match spec.component.split('@').next().unwrap_or_default() {
            "route" => {
                let rules = config["rules"].as_array().into_iter().flatten();
                for action in rules.chain(std::iter::once(&config["default"])) {
                    for field in ["topic", "dlqTopic"] {
                        if let Some(t) = action[field].as_str() {
                            out.writes.push(t.to_owned());
                        }
                    }
                }
            }
            "enrich" => {
                for l in config["lookups"].as_array().into_iter().flatten() {
                    if let Some(t) = l["table"].as_str() {
                        out.reads.push(t.to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Parse the `pipeline` field of a topic document (absent or empty: no pipeline).
pub fn parse_spec(doc: &Value) -> Result<Vec<StageSpec>, ApiError> {
    let Some(p) = doc.get("pipeline") else {
        return Ok(Vec::new());
    };
    let Value::Array(stages) = p else {
        return Err(ApiError::invalid(
            "`pipeline` must be an array of {\"component\": …, \"config\": {…}}",
        ));
    };
    if stages.len() > 16 {
        return Err(ApiError::invalid("a pipeline has at most 16 stages"));
    }
    stages
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let component = s
                .get("component")
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty())
                .ok_or_else(|| {
                    ApiError::invalid(format!("pipeline[{i}].component must name a component"))
                })?;
            if let Some(o) = s.as_object()
                && let Some(k) = o.keys().find(|k| *k != "component" && *k != "config")
            {
                return Err(ApiError::invalid(format!(
                    "pipeline[{i}]: unknown field `{k}` (known: component, config)"
                )));
            }
            let config = match s.get("config") {
                None | Some(Value::Null) => "{}".to_owned(),
                Some(c) => c.to_string(),
            };
            Ok(StageSpec {
                component: component.to_owned(),
                config,
            })
        })
        .collect()
}

pub struct PipelineStage {
    /// `validate` or `mine@3`.
    pub label: String,
    pub stage: Stage,
    /// A built-in that runs in bounded time without blocking host imports, so small batches
    /// may run on the request's own task (the reference-table import may read the log and
    /// must run on a blocking thread: `enrich` with `lookups` is not one).
    pub inline_safe: bool,
}

/// Whether a stage of `label` with `config` may run on the request's own task.
fn inline_safe(label: &str, config: &str) -> bool {
    let looks_up = || {
        serde_json::from_str::<Value>(config)
            .ok()
            .and_then(|v| {
                v.get("lookups")
                    .and_then(Value::as_array)
                    .map(|a| !a.is_empty())
            })
            .unwrap_or(false)
    };
    sluice_builtins::builtin(label).is_some() && !(label == "enrich" && looks_up())
}

pub struct Pipeline {
    pub stages: Vec<PipelineStage>,
    /// A moving average of how long a packed run takes, in microseconds (see
    /// [`Pipeline::cheap`]).
    run_micros: AtomicU64,
}

/// Build the stages of a pipeline for a tenant.
pub async fn build(
    components: &Components,
    host: Arc<dyn HostServices>,
    tenant: &str,
    specs: &[StageSpec],
) -> Result<Pipeline, ApiError> {
    let mut stages = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let (resolved, compiled) = components.resolve(tenant, &spec.component).await?;
        let runtime = components.runtime().clone();
        let host = host.clone();
        let config = spec.config.clone();
        let labels = StageLabels {
            tenant: tenant.to_owned(),
            component: resolved.label.clone(),
        };
        let world = resolved.world;
        if matches!(world, World::Ingress | World::Compactor) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                42212,
                format!(
                    "pipeline[{i}] (`{}`): an {} component is not a pipeline stage (an ingress \
                     component serves a source, /v1/sources; a compactor a compacted topic's \
                     `compaction.policy`)",
                    spec.component,
                    world.name()
                ),
            ));
        }
        let stage = tokio::task::spawn_blocking(move || {
            Stage::new(&runtime, &compiled, world, config, host, labels)
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                42212,
                format!("pipeline[{i}] (`{}`): {e}", spec.component),
            )
        })?;
        stages.push(PipelineStage {
            inline_safe: inline_safe(&resolved.label, &spec.config),
            label: resolved.label,
            stage,
        });
    }
    Ok(Pipeline::new(stages))
}

/// A built pipeline and the topic's `pipeline` field it was built from.
/// What a pipeline was built from: the topic's `pipeline` field, its value schema's subject,
/// and the registry's generation at the time.
pub struct PipelineKey<'a> {
    pub stages: Option<&'a Value>,
    pub subject: Option<&'a str>,
    pub generation: u64,
}

struct Built {
    stages: Option<Value>,
    subject: Option<String>,
    generation: u64,
    pipeline: Arc<Pipeline>,
}

/// Built pipelines by log topic name.
#[derive(Default)]
pub struct Pipelines {
    built: Mutex<HashMap<String, Built>>,
    /// Builds happen one at a time, so concurrent requests to a topic whose pipeline is not
    /// built yet wait for one build instead of each starting their own.
    pub building: tokio::sync::Mutex<()>,
}

impl Pipelines {
    /// The pipeline built from exactly this key, if there is one: checked on every produce,
    /// so it compares the stored JSON and parses nothing.
    pub fn cached(&self, topic: &str, key: &PipelineKey) -> Option<Arc<Pipeline>> {
        let built = self.built.lock().expect("pipelines");
        built
            .get(topic)
            .filter(|b| {
                b.stages.as_ref() == key.stages
                    && b.subject.as_deref() == key.subject
                    // Validators read the registry when they start: any change rebuilds.
                    && b.generation == key.generation
            })
            .map(|b| b.pipeline.clone())
    }

    pub fn insert(
        &self,
        topic: &str,
        stages: Option<Value>,
        subject: Option<String>,
        generation: u64,
        pipeline: Arc<Pipeline>,
    ) {
        self.built.lock().expect("pipelines").insert(
            topic.to_owned(),
            Built {
                stages,
                subject,
                generation,
                pipeline,
            },
        );
    }

    pub fn remove(&self, topic: &str) {
        self.built.lock().expect("pipelines").remove(topic);
    }

    /// Counters of every built stage, labelled by tenant and component.
    pub fn stats(&self) -> Vec<(StageLabels, StageStats)> {
        let built = self.built.lock().expect("pipelines");
        built
            .values()
            .flat_map(|b| {
                b.pipeline
                    .stages
                    .iter()
                    .map(|s| (s.stage.labels(), s.stage.stats()))
            })
            .collect()
    }
}

/// What became of one produced event (`E`: the event as it comes out, or `()` where the
/// caller's records were changed in place).
#[derive(Debug)]
pub enum Fate<E = Event> {
    /// Append to the topic (`None`: the topic it was produced to).
    Append { topic: Option<String>, event: E },
    /// Append to a dead-letter topic (`None`: `<topic>.dlq`) with the reason.
    DeadLetter {
        topic: Option<String>,
        event: E,
        stage: String,
        reason: String,
    },
    /// Acknowledged, stored nowhere (a router's `drop`).
    Dropped,
    /// Refused, with the stage's reason; nothing stored.
    Rejected {
        stage: String,
        reason: String,
        violations: Vec<Violation>,
    },
    /// The stage itself failed (trap, deadline, memory, bad answer); nothing stored.
    Failed { stage: String, error: CallError },
}

impl<E> Fate<E> {
    pub fn error(&self) -> Option<ApiError> {
        match self {
            Fate::Rejected {
                stage,
                reason,
                violations,
            } => {
                let mut message = format!("rejected by `{stage}` ({reason})");
                let details = details(violations);
                if !details.is_empty() {
                    message.push_str(": ");
                    message.push_str(&details);
                }
                Some(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    42210,
                    message,
                ))
            }
            Fate::Failed {
                stage,
                error: error @ CallError::Busy(_),
            } => Some(
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    42904,
                    format!("pipeline stage `{stage}` did not run: {error}; retry shortly"),
                )
                .retry_after(1),
            ),
            Fate::Failed {
                stage,
                error: error @ CallError::Suspended(_),
            } => Some(
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    50303,
                    format!(
                        "pipeline stage `{stage}` is suspended after repeated failures; \
                         retry later: {error}"
                    ),
                )
                .retry_after(1),
            ),
            Fate::Failed { stage, error } => Some(ApiError::new(
                StatusCode::BAD_GATEWAY,
                50201,
                format!(
                    "pipeline stage `{stage}` failed ({}): {error}",
                    error.kind()
                ),
            )),
            _ => None,
        }
    }
}

/// A rejection's violations as one line: `/path: message; message`.
pub fn details(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| {
            if v.path.is_empty() {
                v.message.clone()
            } else {
                format!("{}: {}", v.path, v.message)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Where an event in flight came from and where it is going.
struct Meta {
    origin: usize,
    topic: Option<String>,
}

impl Pipeline {
    /// Only validators: events come out as they went in, or not at all.
    pub fn validate_only(&self) -> bool {
        self.stages
            .iter()
            .all(|s| s.stage.world() == World::Validator)
    }

    pub fn new(stages: Vec<PipelineStage>) -> Pipeline {
        Pipeline {
            stages,
            run_micros: AtomicU64::new(0),
        }
    }

    /// Whether a packed run of `bytes` may go on the request's own thread: only Sluice's own
    /// components with no blocking host imports (see [`PipelineStage::inline_safe`]), a small
    /// batch, and runs that have been short lately (a tenant's schema may still make the
    /// built-in validator slow, and a slow run moves the next ones to a blocking thread until
    /// the average is low again).
    pub fn cheap(&self, bytes: usize) -> bool {
        bytes <= INLINE_BYTES
            && self.run_micros.load(Ordering::Relaxed) <= INLINE_MICROS
            && self.stages.iter().all(|s| s.inline_safe)
    }

    /// Count a packed run's time into the average [`Pipeline::cheap`] looks at.
    fn record_run(&self, took: std::time::Duration) {
        let micros = took.as_micros().min(u128::from(u32::MAX)) as u64;
        // An exponential moving average with weight 1/8; races lose a sample, nothing more.
        let old = self.run_micros.load(Ordering::Relaxed);
        let new = old - old / 8 + micros / 8;
        self.run_micros.store(new, Ordering::Relaxed);
    }

    /// Every stage takes batches as one buffer: [`Pipeline::run_packed`] may run it.
    pub fn packs(&self) -> bool {
        self.stages.iter().all(|s| s.stage.packs())
    }

    /// Run parsed events through a pipeline of packing stages (see [`Pipeline::packs`]),
    /// changing their records in place as enrichers and routers say (data, headers, key). One
    /// fate per event; `None` if the batch does not fit a packed buffer (32-bit offsets).
    pub fn run_packed(
        &self,
        ctx: &BatchContext,
        events: &mut [envelope::Event],
    ) -> Option<Vec<Fate<()>>> {
        let started = std::time::Instant::now();
        let fates = self.run_packed_stages(ctx, events);
        self.record_run(started.elapsed());
        fates
    }

    fn run_packed_stages(
        &self,
        ctx: &BatchContext,
        events: &mut [envelope::Event],
    ) -> Option<Vec<Fate<()>>> {
        let n = events.len();
        let mut fates: Vec<Option<Fate<()>>> = (0..n).map(|_| None).collect();
        let mut topics: Vec<Option<String>> = vec![None; n];
        let mut live: Vec<usize> = (0..n).collect();
        let layout = |events: &[envelope::Event], live: &[usize]| {
            pack(
                live.iter()
                    .map(|&i| (&events[i].record, events[i].payload.clone())),
            )
        };
        let mut batch = layout(events, &live)?;
        // Where each live event is in `batch`, and whether an enricher changed what it holds.
        let mut slot: Vec<usize> = (0..n).collect();
        let mut stale = false;
        for s in &self.stages {
            if live.is_empty() {
                break;
            }
            let label = &s.label;
            if stale {
                match layout(events, &live) {
                    Some(b) => batch = b,
                    None => {
                        let error = CallError::BadOutput("the batch outgrew 4 GiB".into());
                        for i in live.drain(..) {
                            fates[i] = Some(Fate::Failed {
                                stage: label.clone(),
                                error: error.clone(),
                            });
                        }
                        break;
                    }
                }
                for (k, &i) in live.iter().enumerate() {
                    slot[i] = k;
                }
                stale = false;
            }
            let these: Vec<_> = live.iter().map(|&i| batch.events[slot[i]]).collect();
            let rejected = |r: sluice_runtime::Rejection| {
                Some(Fate::Rejected {
                    stage: label.clone(),
                    reason: r.reason,
                    violations: r.violations,
                })
            };
            let mut kept = Vec::with_capacity(live.len());
            let failed = match s.stage.world() {
                World::Validator => match s.stage.validate_packed(ctx, &batch.buffer, &these) {
                    Ok(verdicts) => {
                        for (i, v) in live.drain(..).zip(verdicts) {
                            match v {
                                Verdict::Accept => kept.push(i),
                                Verdict::Reject(r) => fates[i] = rejected(r),
                            }
                        }
                        None
                    }
                    Err(e) => Some(e),
                },
                World::Enricher => match s.stage.enrich_packed(ctx, &batch.buffer, &these) {
                    Ok(answer) => {
                        for (i, change) in live.drain(..).zip(answer.changes) {
                            match change {
                                Ok(change) => {
                                    stale |= apply(&mut events[i], change, &answer.buffer);
                                    kept.push(i);
                                }
                                Err(r) => fates[i] = rejected(r),
                            }
                        }
                        None
                    }
                    Err(e) => Some(e),
                },
                World::Router => match s.stage.route_packed(ctx, &batch.buffer, &these) {
                    Ok(decisions) => {
                        for (i, d) in live.drain(..).zip(decisions) {
                            match d {
                                Decision::Deliver(to) => {
                                    if let Some(t) = to.topic {
                                        topics[i] = Some(t);
                                    }
                                    if let Some(k) = to.key {
                                        events[i].record.key = Some(Bytes::from(k));
                                    }
                                    kept.push(i);
                                }
                                Decision::DeadLetter(dl) => {
                                    fates[i] = Some(Fate::DeadLetter {
                                        topic: dl.topic,
                                        event: (),
                                        stage: label.clone(),
                                        reason: dl.reason,
                                    })
                                }
                                Decision::Drop => fates[i] = Some(Fate::Dropped),
                            }
                        }
                        None
                    }
                    Err(e) => Some(e),
                },
                World::Transformer | World::Ingress | World::Compactor => {
                    Some(CallError::BadOutput(
                        "only validators, enrichers and routers take packed batches".into(),
                    ))
                }
            };
            if let Some(error) = failed {
                for i in live.drain(..) {
                    fates[i] = Some(Fate::Failed {
                        stage: label.clone(),
                        error: error.clone(),
                    });
                }
            }
            live = kept;
        }
        for i in live {
            fates[i] = Some(Fate::Append {
                topic: topics[i].take(),
                event: (),
            });
        }
        Some(
            fates
                .into_iter()
                .map(|f| f.expect("every event has a fate"))
                .collect(),
        )
    }

    /// Run a batch through every stage. Returns, per input event (by index), its fates (a
    /// transformer may turn one event into several, or none).
    pub fn run(&self, ctx: &BatchContext, events: Vec<Event>) -> Vec<Vec<Fate>> {
        let mut fates: Vec<Vec<Fate>> = (0..events.len()).map(|_| Vec::new()).collect();
        // The events in flight, and beside them (same index) where each came from: the guest
        // reads `events` in place, nothing is copied between stages.
        let mut events = events;
        let mut metas: Vec<Meta> = (0..events.len())
            .map(|origin| Meta {
                origin,
                topic: None,
            })
            .collect();
        for s in &self.stages {
            if events.is_empty() {
                break;
            }
            let label = &s.label;
            let rejected = |r: sluice_runtime::Rejection| Fate::Rejected {
                stage: label.clone(),
                reason: r.reason,
                violations: r.violations,
            };
            let result: Result<(Vec<Event>, Vec<Meta>), CallError> = match s.stage.world() {
                World::Validator => s.stage.validate(ctx, &events).map(|verdicts| {
                    let mut kept = (Vec::with_capacity(events.len()), Vec::new());
                    for ((event, meta), v) in events.drain(..).zip(metas.drain(..)).zip(verdicts) {
                        match v {
                            Verdict::Accept => {
                                kept.0.push(event);
                                kept.1.push(meta);
                            }
                            Verdict::Reject(r) => fates[meta.origin].push(rejected(r)),
                        }
                    }
                    kept
                }),
                World::Enricher => s.stage.enrich(ctx, &events).map(|out| {
                    let mut kept = (Vec::with_capacity(events.len()), Vec::new());
                    for (meta, r) in metas.drain(..).zip(out) {
                        match r {
                            Ok(e) => {
                                kept.0.push(e);
                                kept.1.push(meta);
                            }
                            Err(r) => fates[meta.origin].push(rejected(r)),
                        }
                    }
                    kept
                }),
                World::Router => s.stage.route(ctx, &events).map(|decisions| {
                    let mut kept = (Vec::with_capacity(events.len()), Vec::new());
                    for ((mut event, mut meta), d) in
                        events.drain(..).zip(metas.drain(..)).zip(decisions)
                    {
                        match d {
                            Decision::Deliver(to) => {
                                if let Some(t) = to.topic {
                                    meta.topic = Some(t);
                                }
                                if let Some(k) = to.key {
                                    event.key = Some(k);
                                }
                                kept.0.push(event);
                                kept.1.push(meta);
                            }
                            Decision::DeadLetter(dl) => fates[meta.origin].push(Fate::DeadLetter {
                                topic: dl.topic,
                                event,
                                stage: label.clone(),
                                reason: dl.reason,
                            }),
                            Decision::Drop => fates[meta.origin].push(Fate::Dropped),
                        }
                    }
                    kept
                }),
                World::Ingress | World::Compactor => Err(CallError::BadOutput(
                    "an ingress or compactor component is not a pipeline stage".into(),
                )),
                World::Transformer => s.stage.transform(ctx, &events).map(|out| {
                    let mut kept = (Vec::with_capacity(events.len()), Vec::new());
                    for (meta, r) in metas.drain(..).zip(out) {
                        match r {
                            Ok(outputs) => {
                                if outputs.is_empty() {
                                    fates[meta.origin].push(Fate::Dropped);
                                }
                                for o in outputs {
                                    kept.0.push(o.event);
                                    kept.1.push(Meta {
                                        origin: meta.origin,
                                        topic: o.topic.or_else(|| meta.topic.clone()),
                                    });
                                }
                            }
                            Err(r) => fates[meta.origin].push(rejected(r)),
                        }
                    }
                    kept
                }),
            };
            match result {
                Ok((e, m)) => {
                    events = e;
                    metas = m;
                }
                Err(error) => {
                    for meta in metas.drain(..) {
                        fates[meta.origin].push(Fate::Failed {
                            stage: label.clone(),
                            error: error.clone(),
                        });
                    }
                    events.clear();
                }
            }
        }
        for (event, meta) in events.into_iter().zip(metas) {
            fates[meta.origin].push(Fate::Append {
                topic: meta.topic,
                event,
            });
        }
        fates
    }
}

/// Apply an enricher's change to a parsed event (the stage checked the spans); whether its
/// data changed.
fn apply(e: &mut envelope::Event, change: Change, answer: &[u8]) -> bool {
    let bytes = |s: Span| &answer[s.offset as usize..(s.offset + s.len) as usize];
    match change {
        Change::Keep => false,
        Change::Insert(insertion) => {
            let (at, text) = (insertion.at as usize, bytes(insertion.text));
            if text.is_empty() {
                return false;
            }
            let old = e.record.value_bytes();
            let mut value = Vec::with_capacity(old.len() + text.len());
            value.extend_from_slice(&old[..at]);
            value.extend_from_slice(text);
            value.extend_from_slice(&old[at..]);
            e.record.value = Some(Bytes::from(value));
            // The payload's bytes are unchanged (so still well-formed) unless the text went
            // into them.
            e.payload = match e.payload.take() {
                Some(p) if p.end <= at => Some(p),
                Some(p) if p.start >= at => Some(p.start + text.len()..p.end + text.len()),
                _ => None,
            };
            true
        }
        Change::Replace(s) => {
            e.record.value = Some(Bytes::copy_from_slice(bytes(s)));
            e.payload = None;
            true
        }
        Change::Headers(headers) => {
            for h in headers {
                if e.record.header(&h.name).is_none() {
                    e.record.headers.push((h.name, Bytes::from(h.value)));
                }
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn stages_that_may_block_never_run_inline() {
        assert!(inline_safe("validate", r#"{"schema":{}}"#));
        assert!(inline_safe("enrich", r#"{"fields":["tenant"]}"#));
        assert!(inline_safe("enrich", r#"{"lookups":[]}"#));
        assert!(!inline_safe(
            "enrich",
            r#"{"lookups":[{"table":"t","key":"/a","into":"/b"}]}"#
        ));
        assert!(!inline_safe("mine@3", "{}"), "a tenant's component");
    }

    #[test]
    fn a_slow_run_sends_the_next_ones_to_a_blocking_thread() {
        let p = Pipeline::new(Vec::new());
        assert!(p.cheap(1 << 10));
        assert!(!p.cheap(INLINE_BYTES + 1), "a big batch never runs inline");
        p.record_run(Duration::from_millis(400));
        assert!(!p.cheap(1 << 10), "50 ms on average after one 400 ms run");
        let mut runs = 0;
        while !p.cheap(1 << 10) {
            p.record_run(Duration::from_micros(50));
            runs += 1;
        }
        assert!((20..60).contains(&runs), "{runs} short runs to come back");
    }
}
