//! Redaction on the way out: a topic may require a transformer component (such as the
//! built-in `redact-phi`) on every outbound path. Its config keys:
//!
//! - `redaction.component`: the component (a transformer), e.g. `redact-phi`;
//! - `redaction.config`: its configuration (JSON, at most [`MAX_CONFIG_BYTES`]).
//!
//! Readers whose key has the `phi` role on the topic (or `admin`) read it as stored; every
//! other reader, every webhook delivery and every FHIR notification gets what the component
//! makes of each record (its first output; a record it refuses is withheld: its value becomes
//! null with the header `sluice_redacted: refused`). A component that cannot run fails the
//! read (503): nothing leaves unredacted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::Value;
use sluice_log::{Log, StoredRecord};
use sluice_runtime::{BatchContext, Stage};
use sluice_tenancy::auth::{Principal, Role};
use sluice_tenancy::error::ApiError;
use sluice_tenancy::log_name;

use crate::components::Components;
use crate::guest_events::{to_event, to_record};
use crate::reference_tables::GatewayServices;

pub const COMPONENT_KEY: &str = "redaction.component";
pub const CONFIG_KEY: &str = "redaction.config";
/// The longest `redaction.config`.
pub const MAX_CONFIG_BYTES: usize = 16 * 1024;
/// The header on a record the component refused (its value withheld).
pub const REDACTED_HEADER: &str = "sluice_redacted";

/// A topic's rule: the component and its configuration.
type Rule = (String, String);

/// `redaction.config` as the component gets it: JSON text (a string is taken as it is).
fn config_text(v: Option<&Value>) -> String {
    match v {
        None => "{}".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

pub struct Redaction {
    log: Log,
    components: Arc<Components>,
    host: Arc<GatewayServices>,
    /// Per (tenant, topic), the rule it was built for and its stage.
    stages: Mutex<HashMap<(String, String), (Rule, Stage)>>,
}

impl Redaction {
    pub fn new(log: Log, components: Arc<Components>, host: Arc<GatewayServices>) -> Redaction {
        Redaction {
            log,
            components,
            host,
            stages: Mutex::new(HashMap::new()),
        }
    }

    /// The topic's rule, `(component, config)`, if it requires redaction.
    fn rule(&self, tenant: &str, topic: &str) -> Option<Rule> {
        self.log
            .inspect_topic(&log_name(tenant, topic), |m, _| {
                let component = m.config.get(COMPONENT_KEY)?.as_str()?.to_owned();
                Some((component, config_text(m.config.get(CONFIG_KEY))))
            })
            .flatten()
    }

    /// Does this reader get `topic` redacted? (`None` for deliveries: always.)
    pub fn applies(&self, who: Option<&Principal>, tenant: &str, topic: &str) -> bool {
        who.is_none_or(|w| !w.can(Role::Phi, topic)) && self.rule(tenant, topic).is_some()
    }

    /// Check a topic config's redaction keys (at create and update).
    pub async fn check(
        &self,
        tenant: &str,
        config: &std::collections::BTreeMap<String, Value>,
    ) -> Result<(), ApiError> {
        let Some(component) = config.get(COMPONENT_KEY) else {
            if config.contains_key(CONFIG_KEY) {
                return Err(ApiError::invalid(format!(
                    "{CONFIG_KEY} needs {COMPONENT_KEY}"
                )));
            }
            return Ok(());
        };
        let component = component
            .as_str()
            .ok_or_else(|| ApiError::invalid(format!("{COMPONENT_KEY} is a component name")))?;
        self.build(tenant, component, config_text(config.get(CONFIG_KEY)))
            .await
            .map(drop)
    }

    async fn build(
        &self,
        tenant: &str,
        component: &str,
        config: String,
    ) -> Result<Stage, ApiError> {
        if config.len() > MAX_CONFIG_BYTES {
            return Err(ApiError::invalid(format!(
                "{CONFIG_KEY} is longer than {MAX_CONFIG_BYTES} bytes"
            )));
        }
        crate::transforms::transformer_stage(
            &self.components,
            self.host.clone(),
            tenant,
            component,
            config,
            "redaction (such as `redact-phi`)",
        )
        .await
        .map(|(stage, _)| stage)
    }

    /// The topic's stage, built once per rule.
    async fn stage(
        &self,
        tenant: &str,
        topic: &str,
        rule: (String, String),
    ) -> Result<Stage, ApiError> {
        let key = (tenant.to_owned(), topic.to_owned());
        if let Some((r, s)) = self.stages.lock().expect("stages").get(&key)
            && *r == rule
        {
            return Ok(s.clone());
        }
        let stage = self
            .build(tenant, &rule.0, rule.1.clone())
            .await
            .map_err(|e| ApiError::unavailable(format!("redaction of `{topic}`: {}", e.message)))?;
        self.stages
            .lock()
            .expect("stages")
            .insert(key, (rule, stage.clone()));
        Ok(stage)
    }

    /// Redact `records` of `topic` in place for a reader (`who`), or for a delivery (`None`),
    /// when the topic requires it.
    pub async fn apply(
        &self,
        who: Option<&Principal>,
        tenant: &str,
        topic: &str,
        records: &mut [StoredRecord],
    ) -> Result<(), ApiError> {
        if records.is_empty() || who.is_some_and(|w| w.can(Role::Phi, topic)) {
            return Ok(());
        }
        let Some(rule) = self.rule(tenant, topic) else {
            return Ok(());
        };
        let stage = self.stage(tenant, topic, rule).await?;
        let events: Vec<_> = records.iter().map(|s| to_event(&s.record)).collect();
        let ctx = BatchContext {
            tenant: tenant.to_owned(),
            topic: topic.to_owned(),
            key_id: who.map(|w| w.key_id.clone()),
            ingest_time: sluice_tenancy::now_ms(),
        };
        let results = tokio::task::spawn_blocking(move || stage.transform(&ctx, &events))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(|e| ApiError::unavailable(format!("redaction of `{topic}`: {e}")))?;
        for (s, result) in records.iter_mut().zip(results) {
            let timestamp = s.record.timestamp;
            match result.ok().and_then(|outputs| outputs.into_iter().next()) {
                Some(o) => {
                    s.record = to_record(o.event);
                    s.record.timestamp = timestamp;
                }
                None => {
                    s.record.value = None;
                    s.record.headers =
                        vec![(REDACTED_HEADER.into(), Bytes::from_static(b"refused"))];
                }
            }
        }
        Ok(())
    }
}
