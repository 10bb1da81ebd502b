//! Workflow event triggers (the seeds' shape): an event matching a trigger's pattern and
//! condition starts or cancels a workflow, by a delivery to the workflow endpoint of
//! `{workflowDefinitionId, triggerType, correlationKey, input, ...}`.
//!
//! A tenant's triggers are delivered by one delivery loop (the subscription `triggers`): each
//! event's matching triggers become a chain of deliveries, highest priority first, each
//! waiting for the one before it to be done; with the retry, dead-letter and at-least-once
//! rules of webhook subscriptions.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::egress::Egress;
use super::rules::{check_target, compile_cel as compile, valid_pattern};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TriggerType {
    #[serde(rename = "START")]
    Start,
    #[serde(rename = "CANCEL")]
    Cancel,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Trigger {
    #[serde(default)]
    pub id: String,
    pub workflow_definition_id: String,
    /// An event-type pattern (`customer.*`).
    pub event_pattern: String,
    pub trigger_type: TriggerType,
    /// CEL over `event`, `data`, `type`, `key`, `headers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_condition: Option<String>,
    /// CEL whose value is the workflow's input (default: the event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_mapping: Option<String>,
    /// CEL whose value (as text) correlates the workflow instance (`data.order_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_key: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Higher first, when one event matches several triggers.
    #[serde(default)]
    pub priority: i32,
    /// Sluice's additions: the topics whose events are matched, and the workflow endpoint.
    pub topics: Vec<String>,
    pub endpoint: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub created_ms: i64,
    #[serde(default)]
    pub updated_ms: i64,
}

fn yes() -> bool {
    true
}

pub struct CompiledTrigger {
    pub trigger: Trigger,
    pub condition: Option<super::rules::Cel>,
    pub mapping: Option<super::rules::Cel>,
    pub correlation: Option<super::rules::Cel>,
}

impl Trigger {
    pub fn compile(self) -> Result<CompiledTrigger, String> {
        Ok(CompiledTrigger {
            condition: compile("eventCondition", &self.event_condition)?,
            mapping: compile("inputMapping", &self.input_mapping)?,
            correlation: compile("correlationKey", &self.correlation_key)?,
            trigger: self,
        })
    }

    /// Every problem, one message.
    pub fn check(
        &self,
        egress: &Egress,
        topic_exists: impl Fn(&str) -> bool,
    ) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.workflow_definition_id.trim().is_empty() {
            problems.push("workflowDefinitionId: required".to_owned());
        }
        if !valid_pattern(&self.event_pattern) {
            problems.push(format!(
                "eventPattern: `{}` is not a pattern (letters, digits, `._-:/` and `*`)",
                self.event_pattern
            ));
        }
        check_target(
            &mut problems,
            egress,
            "endpoint",
            &self.endpoint,
            &self.topics,
            topic_exists,
        );
        for (what, src) in [
            ("eventCondition", &self.event_condition),
            ("inputMapping", &self.input_mapping),
            ("correlationKey", &self.correlation_key),
        ] {
            if let Err(e) = compile(what, src) {
                problems.push(e);
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

impl CompiledTrigger {
    /// The delivery body for one event, or `None` when the trigger does not apply.
    pub fn body(
        &self,
        event_type: &str,
        ctx: &super::rules::Scope,
        event: &Value,
        source: Value,
    ) -> Result<Option<Value>, String> {
        let t = &self.trigger;
        if !sluice_tenancy::auth::glob(&t.event_pattern, event_type) {
            return Ok(None);
        }
        if let Some(c) = &self.condition
            && !super::rules::holds(c, ctx)?
        {
            return Ok(None);
        }
        let input = match &self.mapping {
            Some(m) => super::rules::map(m, ctx)?,
            None => event.clone(),
        };
        let correlation = match &self.correlation {
            None => Value::Null,
            Some(c) => match super::rules::map(c, ctx)? {
                Value::String(s) => Value::String(s),
                Value::Null => Value::Null,
                other => Value::String(other.to_string()),
            },
        };
        Ok(Some(json!({
            "triggerId": t.id,
            "workflowDefinitionId": t.workflow_definition_id,
            "triggerType": t.trigger_type,
            "correlationKey": correlation,
            "priority": t.priority,
            "input": input,
            "event": source,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_shape_parses_checks_and_builds_the_body() {
        let t: Trigger = serde_json::from_value(json!({
            "workflowDefinitionId": "wf-onboard", "eventPattern": "customer.*",
            "triggerType": "START", "eventCondition": "data.tier == 'gold'",
            "inputMapping": "{'customer': data.id}", "correlationKey": "data.id",
            "enabled": true, "priority": 5, "topics": ["customers"],
            "endpoint": "https://flows.example.com/start"}))
        .unwrap();
        assert!(t.check(&Egress::default(), |_| true).is_ok());
        let c = t.compile().unwrap();
        let event = json!({"type": "customer.created", "payload": {"id": 42, "tier": "gold"}});
        let ctx = super::super::rules::cel_context(&event, "customer.created", None, &json!({}));
        let body = c
            .body("customer.created", &ctx, &event, json!({}))
            .unwrap()
            .unwrap();
        assert_eq!(body["triggerType"], "START");
        assert_eq!(body["correlationKey"], "42");
        assert_eq!(body["input"], json!({"customer": 42}));
        assert!(
            c.body("order.created", &ctx, &event, json!({}))
                .unwrap()
                .is_none()
        );
        let bad: Trigger = serde_json::from_value(json!({
            "workflowDefinitionId": "", "eventPattern": "a b", "triggerType": "CANCEL",
            "correlationKey": "data.", "topics": [], "endpoint": "http://127.0.0.1/"}))
        .unwrap();
        let e = bad.check(&Egress::default(), |_| true).unwrap_err();
        for word in [
            "workflowDefinitionId",
            "eventPattern",
            "endpoint",
            "topics",
            "correlationKey",
        ] {
            assert!(e.contains(word), "{e}");
        }
        assert!(serde_json::from_value::<Trigger>(json!({"triggerType": "PAUSE"})).is_err());
    }
}
