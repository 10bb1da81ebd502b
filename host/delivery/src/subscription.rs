//! A webhook subscription: what to deliver (topics, event-type patterns, a CEL condition),
//! how (an optional CEL input mapping, custom headers, signing secrets), and the delivery
//! rules (retry schedule, timeout, rate limit, ordering, when to give up on an endpoint).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::egress::Egress;
use super::rules::{check_target, compile_cel, valid_pattern};
use super::signing;

/// Svix's schedule: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
pub const DEFAULT_SCHEDULE: [Duration; 8] = [
    Duration::ZERO,
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Ordering {
    /// Events of one key are delivered one after the other (a retry holds the key's later
    /// events back); different keys go in parallel.
    #[serde(rename = "per-key")]
    PerKey,
    #[default]
    #[serde(rename = "none")]
    None,
}

/// A secret being rotated out: still signs until `expires_ms`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OldSecret {
    pub secret: String,
    pub expires_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    #[serde(default)]
    pub id: String,
    pub url: String,
    /// The tenant's topics whose events are delivered.
    pub topics: Vec<String>,
    /// Event-type patterns (`invoice.*`; `*` matches any run of characters).
    #[serde(default = "all_types")]
    pub event_types: Vec<String>,
    /// A CEL expression over `event`, `data`, `type`, `key`, `headers`; only events for which
    /// it is `true` are delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// A CEL expression whose value (JSON) is the delivered body; default: the event as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_mapping: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `whsec_…` (HMAC, `v1`) or `whsk_…` (ed25519, `v1a`); made by Sluice when absent.
    #[serde(default)]
    pub secret: String,
    /// `v1` (HMAC-SHA256, the default) or `v1a` (ed25519): the kind of secret made.
    #[serde(default = "v1")]
    pub signature: String,
    #[serde(default)]
    pub old_secrets: Vec<OldSecret>,
    /// Deliveries started per second at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    #[serde(default)]
    pub ordering: Ordering,
    /// How each event is sent: the stored envelope (default), or a CloudEvent in the HTTP
    /// binding's binary or structured mode.
    #[serde(default)]
    pub encoding: Encoding,
    /// Validate the endpoint with the CloudEvents webhook abuse-protection handshake
    /// (`OPTIONS` with `WebHook-Request-Origin`) before the first delivery; an endpoint that
    /// does not grant it disables the subscription.
    #[serde(default)]
    pub handshake: bool,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Why it was disabled by Sluice (410 Gone, failing too long), if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// Delays before each attempt (the first is usually `0s`).
    #[serde(default = "default_schedule", with = "humantime_list")]
    pub retry_schedule: Vec<Duration>,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// An endpoint failing without a success for this long is disabled.
    #[serde(default = "default_disable_after", with = "humantime_serde")]
    pub disable_after: Duration,
    /// Where a new subscription starts: `latest` (default) or `earliest`.
    #[serde(default = "latest")]
    pub start: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub created_ms: i64,
    #[serde(default)]
    pub updated_ms: i64,
}

/// What a delivery's body is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    /// The event as stored (or the input mapping's value), `application/json`.
    #[default]
    Envelope,
    /// `ce-*` headers, the data as the body with its content type.
    CloudeventsBinary,
    /// One `application/cloudevents+json` object.
    CloudeventsStructured,
    /// The stored record's value as it is, `application/fhir+json` (FHIR subscriptions'
    /// notification Bundles).
    Fhir,
}

impl Encoding {
    /// The content type of what an attempt sends (CloudEvents' binary mode: the data's own).
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Envelope | Encoding::CloudeventsBinary => "application/json",
            Encoding::CloudeventsStructured => "application/cloudevents+json",
            Encoding::Fhir => "application/fhir+json",
        }
    }
}

fn all_types() -> Vec<String> {
    vec!["*".into()]
}
fn yes() -> bool {
    true
}
fn v1() -> String {
    "v1".into()
}
fn latest() -> String {
    "latest".into()
}
fn default_schedule() -> Vec<Duration> {
    DEFAULT_SCHEDULE.to_vec()
}
fn default_timeout() -> Duration {
    Duration::from_secs(15)
}
fn default_disable_after() -> Duration {
    Duration::from_secs(5 * 24 * 3600)
}

mod humantime_list {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|d| humantime::format_duration(*d).to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let texts = Vec::<String>::deserialize(d)?;
        texts
            .iter()
            .map(|t| humantime::parse_duration(t).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// A subscription's CEL programs, compiled once.
pub struct Compiled {
    pub condition: Option<super::rules::Cel>,
    pub mapping: Option<super::rules::Cel>,
    /// The trigger loop's triggers, highest priority first (empty for subscriptions).
    pub triggers: Vec<super::trigger::CompiledTrigger>,
}

impl Subscription {
    /// Every problem, one message; the CEL programs when there is none.
    pub fn check(
        &self,
        egress: &Egress,
        topic_exists: impl Fn(&str) -> bool,
        known_types: &[String],
    ) -> Result<Compiled, String> {
        let mut problems = Vec::new();
        check_target(
            &mut problems,
            egress,
            "url",
            &self.url,
            &self.topics,
            topic_exists,
        );
        if self.event_types.is_empty() {
            problems.push("event_types: give at least one pattern (`*` for all)".into());
        }
        for p in &self.event_types {
            if !valid_pattern(p) {
                problems.push(format!(
                    "event_types: `{p}` is not a pattern (letters, digits, `._-:/` and `*`)"
                ));
            } else if !known_types.is_empty()
                && !known_types.iter().any(|t| sluice_tenancy::auth::glob(p, t))
            {
                problems.push(format!(
                    "event_types: `{p}` matches no event type of the event catalog"
                ));
            }
        }
        let mut compile = |what: &str, src: &Option<String>| {
            compile_cel(what, src).unwrap_or_else(|e| {
                problems.push(e);
                None
            })
        };
        let condition = compile("condition", &self.condition);
        let mapping = compile("input_mapping", &self.input_mapping);
        match self.signature.as_str() {
            "v1" if !self.secret.is_empty() && signing::key_of(&self.secret).is_none() => {
                problems.push("secret: use `whsec_` and 16-64 bytes of base64".into());
            }
            "v1a" if !self.secret.is_empty() && signing::public_key_of(&self.secret).is_none() => {
                problems.push("secret: for `v1a` use `whsk_` and a 32-byte base64 seed".into());
            }
            "v1" | "v1a" => {}
            other => problems.push(format!("signature: `{other}`; use `v1` or `v1a`")),
        }
        for (name, value) in &self.headers {
            let lower = name.to_ascii_lowercase();
            if http::HeaderName::from_bytes(name.as_bytes()).is_err()
                || http::HeaderValue::from_str(value).is_err()
            {
                problems.push(format!("headers: `{name}` is not a valid header"));
            } else if lower.starts_with("webhook-")
                || ["content-type", "content-length", "host", "user-agent"]
                    .contains(&lower.as_str())
            {
                problems.push(format!("headers: `{name}` is set by Sluice"));
            }
        }
        if self.retry_schedule.is_empty() || self.retry_schedule.len() > 50 {
            problems.push("retry_schedule: 1 to 50 delays".into());
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(300) {
            problems.push("timeout: above 0 and at most 5m".into());
        }
        if self.rate_limit == Some(0) {
            problems.push("rate_limit: at least 1 per second (or leave it out)".into());
        }
        if self.start != "latest" && self.start != "earliest" {
            problems.push("start: `latest` or `earliest`".into());
        }
        if problems.is_empty() {
            Ok(Compiled {
                condition,
                mapping,
                triggers: Vec::new(),
            })
        } else {
            Err(problems.join("; "))
        }
    }

    /// The CEL programs alone (for definitions checked when they were stored).
    pub fn compile(&self) -> Result<Compiled, String> {
        Ok(Compiled {
            condition: compile_cel("condition", &self.condition)?,
            mapping: compile_cel("input_mapping", &self.input_mapping)?,
            triggers: Vec::new(),
        })
    }

    /// The keys that sign now: the current secret and those rotated out but not expired.
    pub fn keys(&self, now_ms: i64) -> Vec<signing::Key> {
        std::iter::once(self.secret.as_str())
            .chain(
                self.old_secrets
                    .iter()
                    .filter(|o| o.expires_ms > now_ms)
                    .map(|o| o.secret.as_str()),
            )
            .filter_map(signing::parse)
            .collect()
    }

    pub fn matches_type(&self, event_type: &str) -> bool {
        self.event_types
            .iter()
            .any(|p| sluice_tenancy::auth::glob(p, event_type))
    }

    /// A new secret of this subscription's kind.
    pub fn new_secret(&self) -> String {
        if self.signature == "v1a" {
            signing::new_signing_key()
        } else {
            signing::new_secret()
        }
    }

    /// The view callers get: secrets left out (an ed25519 subscription's public key shown).
    pub fn public(&self) -> Value {
        let mut v = serde_json::to_value(self).expect("serializes");
        if let Some(o) = v.as_object_mut() {
            o.remove("secret");
            o.remove("old_secrets");
            if let Some(pk) = signing::public_key_of(&self.secret) {
                o.insert("public_key".into(), Value::String(pk));
            }
        }
        v
    }
}

pub type Shared = Arc<(Subscription, Compiled)>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{cel_context, holds, map};
    use serde_json::json;

    fn sub(extra: Value) -> Subscription {
        let mut v = json!({"url": "https://hooks.example.com/in", "topics": ["orders"]});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn defaults_and_checks() {
        let s = sub(json!({}));
        assert_eq!(s.retry_schedule.len(), 8);
        assert_eq!(s.retry_schedule[2], Duration::from_secs(300));
        assert!(s.enabled);
        assert!(s.check(&Egress::default(), |_| true, &[]).is_ok());
        let bad = sub(
            json!({"url": "http://10.0.0.1/", "condition": "data.amount >",
                             "event_types": ["in voice"], "headers": {"webhook-id": "x"}}),
        );
        let e = bad.check(&Egress::default(), |_| false, &[]).err().unwrap();
        for word in [
            "url",
            "condition",
            "event_types",
            "headers",
            "does not exist",
        ] {
            assert!(e.contains(word), "{e}");
        }
        let unknown = sub(json!({"event_types": ["invoice.*"]}));
        let e = unknown
            .check(&Egress::default(), |_| true, &["order.created".into()])
            .err()
            .unwrap();
        assert!(e.contains("matches no event type"), "{e}");
    }

    #[test]
    fn conditions_and_mappings_run_over_the_event() {
        let s = sub(
            json!({"condition": "data.amount > 100 && type.startsWith('invoice.')",
                           "input_mapping": "{'id': event.id, 'total': data.amount}"}),
        );
        let c = s.check(&Egress::default(), |_| true, &[]).unwrap();
        let event = json!({"id": "e1", "type": "invoice.paid", "payload": {"amount": 250}});
        let ctx = cel_context(&event, "invoice.paid", None, &json!({}));
        assert!(holds(c.condition.as_ref().unwrap(), &ctx).unwrap());
        assert_eq!(
            map(c.mapping.as_ref().unwrap(), &ctx).unwrap(),
            json!({"id": "e1", "total": 250})
        );
        let small = json!({"id": "e2", "payload": {"amount": 5}});
        let ctx = cel_context(&small, "invoice.paid", None, &json!({}));
        assert!(!holds(c.condition.as_ref().unwrap(), &ctx).unwrap());
        assert!(s.matches_type("anything"));
    }
}
