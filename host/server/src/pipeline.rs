//! Ingest pipelines: the ordered stages a topic runs every produced batch through.
//!
//! A topic's document may carry `"pipeline": [{"component": "validate", "config": {…}}, …]`.
//! Each stage is a component (built-in or the tenant's, `name` or `name@version`) of one of the
//! stage worlds, with its JSON configuration; the world decides what the stage does:
//! a validator accepts or rejects, an enricher rewrites or rejects, a router picks the topic,
//! key or dead-letter topic, a transformer maps each event to zero or more events.
//!
//! Stages are built (components compiled, the configuration checked by the guest's `init`) when
//! the topic is created or changed, so a bad pipeline is refused then; they are cached per
//! topic and rebuilt after a restart on first use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::StatusCode;
use serde_json::Value;
use sluice_runtime::{
    BatchContext, CallError, Decision, Event, HostServices, Stage, StageLabels, StageStats,
    Verdict, Violation, World,
};

use crate::components::Components;
use crate::error::ApiError;
use crate::guest_events::PackedBatch;

/// A stage as the topic document names it.
#[derive(Debug, Clone, PartialEq)]
pub struct StageSpec {
    pub component: String,
    pub config: String,
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
}

pub struct Pipeline {
    pub stages: Vec<PipelineStage>,
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
            label: resolved.label,
            stage,
        });
    }
    Ok(Pipeline { stages })
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

/// What became of one produced event.
#[derive(Debug)]
pub enum Fate {
    /// Append to the topic (`None`: the topic it was produced to).
    Append { topic: Option<String>, event: Event },
    /// Append to a dead-letter topic (`None`: `<topic>.dlq`) with the reason.
    DeadLetter {
        topic: Option<String>,
        event: Event,
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

impl Fate {
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

    /// Only validators, each taking batches as one buffer: [`Pipeline::validate_packed`] may run
    /// it.
    pub fn packs(&self) -> bool {
        self.stages.iter().all(|s| s.stage.packs())
    }

    /// Run a packed batch through a pipeline of packing validators. Per event: `None` when
    /// every stage accepted it (append it as it is), else the fate that stopped it.
    pub fn validate_packed(&self, ctx: &BatchContext, batch: &PackedBatch) -> Vec<Option<Fate>> {
        let mut fates: Vec<Option<Fate>> = (0..batch.events.len()).map(|_| None).collect();
        let mut live: Vec<usize> = (0..batch.events.len()).collect();
        for s in &self.stages {
            if live.is_empty() {
                break;
            }
            let events: Vec<_> = live.iter().map(|&i| batch.events[i]).collect();
            match s.stage.validate_packed(ctx, &batch.buffer, &events) {
                Ok(verdicts) => {
                    let mut kept = Vec::with_capacity(live.len());
                    for (i, v) in live.into_iter().zip(verdicts) {
                        match v {
                            Verdict::Accept => kept.push(i),
                            Verdict::Reject(r) => {
                                fates[i] = Some(Fate::Rejected {
                                    stage: s.label.clone(),
                                    reason: r.reason,
                                    violations: r.violations,
                                })
                            }
                        }
                    }
                    live = kept;
                }
                Err(error) => {
                    for i in live.drain(..) {
                        fates[i] = Some(Fate::Failed {
                            stage: s.label.clone(),
                            error: error.clone(),
                        });
                    }
                }
            }
        }
        fates
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
