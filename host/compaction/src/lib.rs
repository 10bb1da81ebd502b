//! # sluice-compaction: compacted topics kept compacted
//!
//! The log ([`sluice_log::compaction`]) knows how to compact one partition with a policy; this
//! crate decides when and with which:
//!
//! - every `interval` the [`Compactor`] runs the partitions that are due (dirty share of bytes
//!   at `min.cleanable.dirty.ratio`, or an uncompacted run older than `max.compaction.lag.ms`),
//!   one at a time, so compaction takes at most one core's share beside produce;
//! - a topic's policy is the log's built-in newest-record-per-key, unless its config names a
//!   component: `compaction.policy` = a `compactor`-world component of the topic's tenant or a
//!   built-in (`compactor`, with `{"policy": "latest" | "latest-n" | "fhir-latest-version"}`
//!   in `compaction.policy.config`), run through [`ComponentPolicy`];
//! - a run that fails (a policy that traps, loops or answers garbage; a race with retention)
//!   changes nothing, is recorded in the partition's [`RunStatus`] and counted, and is tried
//!   again at the next round;
//! - [`Compactor::compact_topic`] runs a topic's partitions now (`sluice topics compact`);
//! - runs execute on their own runtime, whose threads (its worker and its blocking pool, where
//!   records are decoded and encoded) run at the lowest CPU priority (`nice` 19): the produce
//!   path's threads take the cores first, and compaction gets what they leave.

mod component_policy;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use sluice_ingest::components::Components;
use sluice_log::compaction::Compacted;
use sluice_log::{Log, LogError};
use sluice_runtime::{CompactionContext, NoHostServices, Stage, StageLabels, World};
use sluice_tenancy::error::ApiError;

pub use component_policy::{CANDIDATES_PER_CALL, ComponentPolicy, MAX_CANDIDATES};

/// The topic config key naming a compactor component.
pub const POLICY_KEY: &str = "compaction.policy";
/// The topic config key holding the component's configuration (a JSON object or a string).
pub const POLICY_CONFIG_KEY: &str = "compaction.policy.config";
/// The longest `compaction.policy.config`.
pub const MAX_POLICY_CONFIG_BYTES: usize = 16 << 10;

/// The last run of one partition.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunStatus {
    /// When it ended (ms since the epoch).
    pub last_run_ms: Option<i64>,
    /// What it did, when it succeeded.
    pub last: Option<Compacted>,
    /// Why it failed, when it did (the partition was left as it was).
    pub last_error: Option<String>,
    pub runs: u64,
    pub failures: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CompactionError {
    #[error(transparent)]
    Log(#[from] LogError),
    /// The topic's policy could not be started.
    #[error("compaction.policy: {0}")]
    Policy(String),
}

pub struct Compactor {
    log: Log,
    components: Arc<Components>,
    status: Mutex<HashMap<(String, u32), RunStatus>>,
    /// One run at a time (the background round and `compact_topic` share it).
    running: tokio::sync::Mutex<()>,
    /// Where runs execute: threads at the lowest CPU priority.
    background: Option<tokio::runtime::Runtime>,
}

impl Drop for Compactor {
    fn drop(&mut self) {
        // Dropped from async code (a server stopping): do not block on the threads.
        if let Some(rt) = self.background.take() {
            rt.shutdown_background();
        }
    }
}

/// Lower the calling thread's CPU priority to the least (Linux applies `nice` per thread).
#[allow(unsafe_code)]
fn lowest_priority() {
    // SAFETY: gettid and setpriority take plain integers and touch no memory of ours.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19);
    }
}

impl Compactor {
    pub fn new(log: Log, components: Arc<Components>) -> Arc<Compactor> {
        let background = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(2)
            .thread_name("sluice-compaction")
            .on_thread_start(lowest_priority)
            .enable_all()
            .build()
            .expect("the compaction runtime starts");
        Arc::new(Compactor {
            log,
            components,
            status: Mutex::new(HashMap::new()),
            running: tokio::sync::Mutex::new(()),
            background: Some(background),
        })
    }

    /// Run due partitions every `interval` until the log closes.
    pub fn spawn(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if me.log.is_closed() {
                    return;
                }
                me.run_due().await;
            }
        })
    }

    /// One round: every due partition, once.
    pub async fn run_due(self: &Arc<Self>) {
        for (topic, partition) in self.log.compaction_due() {
            if self.log.is_closed() {
                return;
            }
            let _ = self.run(&topic, partition).await;
        }
    }

    /// Compact every partition of the log topic `topic` now; one result per partition.
    pub async fn compact_topic(
        self: &Arc<Self>,
        topic: &str,
    ) -> Result<Vec<Result<Compacted, CompactionError>>, CompactionError> {
        let info = self
            .log
            .topic(topic)
            .ok_or_else(|| LogError::TopicNotFound(topic.into()))?;
        let mut out = Vec::with_capacity(info.partitions.len());
        for p in 0..info.partitions.len() as u32 {
            out.push(self.run(topic, p).await);
        }
        Ok(out)
    }

    /// Compact one partition of the log topic `topic` now.
    pub async fn compact_partition(
        self: &Arc<Self>,
        topic: &str,
        partition: u32,
    ) -> Result<Compacted, CompactionError> {
        self.run(topic, partition).await
    }

    /// The last run of each partition of `topic` that ran.
    pub fn status(&self, topic: &str) -> Vec<(u32, RunStatus)> {
        let status = self.status.lock().expect("status");
        let mut out: Vec<(u32, RunStatus)> = status
            .iter()
            .filter(|((t, _), _)| t == topic)
            .map(|((_, p), s)| (*p, s.clone()))
            .collect();
        out.sort_by_key(|(p, _)| *p);
        out
    }

    /// `(log topic, partition, when its last run ended)` of every partition that ran.
    pub fn last_runs(&self) -> Vec<(String, u32, i64)> {
        let status = self.status.lock().expect("status");
        let mut out: Vec<(String, u32, i64)> = status
            .iter()
            .filter_map(|((t, p), s)| s.last_run_ms.map(|at| (t.clone(), *p, at)))
            .collect();
        out.sort();
        out
    }

    /// Failed runs so far, over every partition.
    pub fn failures(&self) -> u64 {
        self.status
            .lock()
            .expect("status")
            .values()
            .map(|s| s.failures)
            .sum()
    }

    /// Check a topic config's policy keys: the component exists for `tenant`, is a compactor,
    /// and accepts the configuration (what creating or changing the topic must pass).
    pub async fn check_policy(
        &self,
        tenant: &str,
        config: &std::collections::BTreeMap<String, serde_json::Value>,
    ) -> Result<(), ApiError> {
        if !config.contains_key(POLICY_KEY) && !config.contains_key(POLICY_CONFIG_KEY) {
            return Ok(());
        }
        self.stage(tenant, "", 0, config)
            .await
            .map(drop)
            .map_err(|e| ApiError::invalid(e.to_string()))
    }

    async fn run(
        self: &Arc<Self>,
        topic: &str,
        partition: u32,
    ) -> Result<Compacted, CompactionError> {
        let _one = self.running.lock().await;
        let (me, t) = (self.clone(), topic.to_owned());
        let background = self.background.as_ref().expect("until dropped").handle();
        let result = match background
            .spawn(async move { me.run_now(&t, partition).await })
            .await
        {
            Ok(r) => r,
            Err(e) => Err(CompactionError::Policy(format!("the run stopped: {e}"))),
        };
        let mut status = self.status.lock().expect("status");
        let s = status.entry((topic.to_owned(), partition)).or_default();
        s.last_run_ms = Some(sluice_tenancy::now_ms());
        s.runs += 1;
        match &result {
            Ok(done) => {
                s.last = Some(done.clone());
                s.last_error = None;
            }
            Err(e) => {
                s.failures += 1;
                s.last_error = Some(e.to_string());
                tracing::warn!(topic, partition, error = %e, "compaction failed; will retry");
            }
        }
        result
    }

    async fn run_now(&self, topic: &str, partition: u32) -> Result<Compacted, CompactionError> {
        let config = self
            .log
            .topic(topic)
            .ok_or_else(|| LogError::TopicNotFound(topic.into()))?
            .meta
            .config;
        if !config.contains_key(POLICY_KEY) {
            return Ok(self.log.compact(topic, partition).await?);
        }
        // Tenants' topics are `{tenant}/{topic}`; the policy is resolved in that tenant.
        let tenant = topic.split_once('/').map_or("", |(t, _)| t);
        let stage = self.stage(tenant, topic, partition, &config).await?;
        let mut policy = ComponentPolicy::new(stage.0, stage.1);
        Ok(self.log.compact_with(topic, partition, &mut policy).await?)
    }

    /// The topic's compactor, started with its configuration.
    async fn stage(
        &self,
        tenant: &str,
        topic: &str,
        partition: u32,
        config: &std::collections::BTreeMap<String, serde_json::Value>,
    ) -> Result<(Stage, CompactionContext), CompactionError> {
        let policy_error = |m: String| CompactionError::Policy(m);
        let reference = match config.get(POLICY_KEY) {
            Some(serde_json::Value::String(s)) => s.clone(),
            None => "compactor".to_owned(),
            Some(_) => return Err(policy_error("must be a component name".into())),
        };
        let policy_config = match config.get(POLICY_CONFIG_KEY) {
            None => String::new(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
        };
        if policy_config.len() > MAX_POLICY_CONFIG_BYTES {
            return Err(policy_error(format!(
                "{POLICY_CONFIG_KEY} is longer than {MAX_POLICY_CONFIG_BYTES} bytes"
            )));
        }
        let (resolved, compiled) = self
            .components
            .resolve(tenant, &reference)
            .await
            .map_err(|e| policy_error(e.message))?;
        if resolved.world != World::Compactor {
            return Err(policy_error(format!(
                "`{reference}` is a {} component; a compaction policy needs a compactor \
                 component (such as the built-in `compactor`)",
                resolved.world.name()
            )));
        }
        let runtime = self.components.runtime().clone();
        let labels = StageLabels {
            tenant: tenant.to_owned(),
            component: resolved.label.clone(),
        };
        let stage = tokio::task::spawn_blocking(move || {
            Stage::new(
                &runtime,
                &compiled,
                World::Compactor,
                policy_config,
                Arc::new(NoHostServices),
                labels,
            )
        })
        .await
        .map_err(|e| policy_error(e.to_string()))?
        .map_err(|e| policy_error(format!("`{reference}` refused its configuration: {e}")))?;
        let delete_retention_ms = self
            .log
            .inspect_topic(topic, |_, c| c.delete_retention_ms)
            .unwrap_or_default();
        let ctx = CompactionContext {
            topic: topic.split_once('/').map_or(topic, |(_, t)| t).to_owned(),
            partition,
            now: sluice_tenancy::now_ms(),
            delete_retention_ms,
        };
        Ok((stage, ctx))
    }
}
