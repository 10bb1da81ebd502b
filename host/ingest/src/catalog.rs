//! The event catalog: each tenant's event definitions (the seeds' `event_definitions`), kept
//! in the internal topic `_event_definitions` (key `tenant/event_id`, the newest record wins,
//! an empty value deletes).
//!
//! A definition's `payload_schema` is registered in the tenant's schema registry under the
//! subject `<event_id>-payload` (so it evolves under the registry's compatibility rules), and
//! its `examples` must validate against it. Produce validates events whose `event_type`
//! matches an active definition's `pattern` in the validate component; deprecated types are
//! accepted with a warning.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_log::{Log, LogError};

use sluice_tenancy::error::ApiError;
use sluice_tenancy::internal_topics;

pub const CATALOG_TOPIC: &str = "_event_definitions";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Draft,
    Active,
    Deprecated,
}

/// One event type, as the seeds describe it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Definition {
    /// Business identifier, e.g. `BookingEvents.created`.
    pub event_id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The `event_type` it describes (`bookings.created`), or a prefix ending in `*`.
    pub pattern: String,
    /// Semantic version of the definition.
    pub version: String,
    #[serde(default)]
    pub source_types: Vec<String>,
    pub payload_schema: Value,
    #[serde(default)]
    pub examples: Vec<Value>,
    #[serde(default)]
    pub ui_metadata: Value,
    #[serde(default)]
    pub status: Status,
    /// Where the payload schema is registered (filled in by the gateway).
    #[serde(default)]
    pub schema_subject: String,
    #[serde(default)]
    pub schema_id: u32,
    #[serde(default)]
    pub schema_version: u32,
    /// Bumped by every update; an update naming another revision is refused (optimistic
    /// concurrency).
    #[serde(default)]
    pub revision: u64,
    #[serde(default)]
    pub created_ms: i64,
    #[serde(default)]
    pub updated_ms: i64,
}

impl Definition {
    /// Check what a client sent; the gateway's fields are its own.
    pub fn check(&self) -> Result<(), ApiError> {
        let id_ok = !self.event_id.is_empty()
            && self.event_id.len() <= 255
            && self
                .event_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !id_ok {
            return Err(ApiError::invalid(
                "`event_id` must be 1-255 characters of [A-Za-z0-9._-] (e.g. BookingEvents.created)",
            ));
        }
        if self.name.trim().is_empty() {
            return Err(ApiError::invalid("`name` must not be empty"));
        }
        let pattern_ok = !self.pattern.is_empty()
            && !self.pattern[..self.pattern.len() - 1].contains('*')
            && self.pattern.len() <= 255;
        if !pattern_ok {
            return Err(ApiError::invalid(
                "`pattern` is an event type (`bookings.created`) or a prefix ending in `*` (`bookings.*`)",
            ));
        }
        if !is_semver(&self.version) {
            return Err(ApiError::invalid(format!(
                "`version` must be a semantic version such as 1.0.0, not `{}`",
                self.version
            )));
        }
        if !self.payload_schema.is_object() && !self.payload_schema.is_boolean() {
            return Err(ApiError::invalid("`payload_schema` must be a JSON Schema"));
        }
        Ok(())
    }

    pub fn subject(&self) -> String {
        format!("{}-payload", self.event_id)
    }

    /// Does this definition describe events of `event_type`?
    pub fn matches(&self, event_type: &str) -> bool {
        match self.pattern.strip_suffix('*') {
            Some(prefix) => event_type.starts_with(prefix),
            None => self.pattern == event_type,
        }
    }
}

/// `MAJOR.MINOR.PATCH`, with an optional `-prerelease` and `+build`.
pub fn is_semver(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let rest = &v[core.len()..];
    let parts: Vec<&str> = core.split('.').collect();
    let numbers = parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
        });
    let suffix = rest.is_empty()
        || (rest.len() > 1
            && rest[1..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-+".contains(&b)));
    numbers && suffix
}

/// Validate each example against the schema; the errors, one line per failure.
pub fn check_examples(schema: &Value, examples: &[Value]) -> Result<(), Vec<String>> {
    let validator = jsonschema::validator_for(schema)
        .map_err(|e| vec![format!("payload_schema is not a valid JSON Schema: {e}")])?;
    let failures: Vec<String> = examples
        .iter()
        .enumerate()
        .flat_map(|(i, example)| {
            validator
                .iter_errors(example)
                .take(8)
                .map(move |e| format!("examples[{i}] at `{}`: {e}", e.instance_path()))
                .collect::<Vec<_>>()
        })
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures)
    }
}

#[derive(Default)]
struct TenantCatalog {
    definitions: BTreeMap<String, Definition>,
    generation: u64,
}

pub struct Catalog {
    log: Log,
    tenants: RwLock<HashMap<String, TenantCatalog>>,
    /// Updates are decided and stored one at a time (revisions stay honest).
    pub writes: tokio::sync::Mutex<()>,
}

impl Catalog {
    pub async fn load(log: Log) -> Result<Catalog, LogError> {
        internal_topics::ensure(
            &log,
            CATALOG_TOPIC,
            "event catalog: tenants' event definitions",
            &[internal_topics::compact()],
        )
        .await?;
        let mut tenants: HashMap<String, TenantCatalog> = HashMap::new();
        internal_topics::replay(&log, CATALOG_TOPIC, |offset, record| {
            let Some((tenant, event_id)) = record
                .key
                .as_ref()
                .and_then(|k| std::str::from_utf8(k).ok())
                .and_then(|k| k.split_once('/'))
            else {
                return;
            };
            let t = tenants.entry(tenant.to_owned()).or_default();
            t.generation += 1;
            if record.value_bytes().is_empty() {
                t.definitions.remove(event_id);
            } else if let Ok(d) = serde_json::from_slice::<Definition>(record.value_bytes()) {
                t.definitions.insert(event_id.to_owned(), d);
            } else {
                tracing::warn!(offset, "skipping an unreadable event definition");
            }
        })
        .await?;
        Ok(Catalog {
            log,
            tenants: RwLock::new(tenants),
            writes: tokio::sync::Mutex::new(()),
        })
    }

    pub fn get(&self, tenant: &str, event_id: &str) -> Option<Definition> {
        let tenants = self.tenants.read().expect("catalog");
        tenants.get(tenant)?.definitions.get(event_id).cloned()
    }

    pub fn list(&self, tenant: &str) -> Vec<Definition> {
        let tenants = self.tenants.read().expect("catalog");
        tenants
            .get(tenant)
            .map(|t| t.definitions.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Store (or with `None`, delete) a definition, durably, then keep it.
    pub async fn put(
        &self,
        tenant: &str,
        event_id: &str,
        definition: Option<&Definition>,
    ) -> Result<(), ApiError> {
        let value = definition
            .map(|d| serde_json::to_vec(d).expect("definitions serialize"))
            .unwrap_or_default();
        internal_topics::append(
            &self.log,
            CATALOG_TOPIC,
            format!("{tenant}/{event_id}"),
            value,
        )
        .await?;
        let mut tenants = self.tenants.write().expect("catalog");
        let t = tenants.entry(tenant.to_owned()).or_default();
        t.generation += 1;
        match definition {
            Some(d) => {
                t.definitions.insert(event_id.to_owned(), d.clone());
            }
            None => {
                t.definitions.remove(event_id);
            }
        }
        Ok(())
    }

    /// Bumped by every change of the tenant's catalog.
    pub fn generation(&self, tenant: &str) -> u64 {
        let tenants = self.tenants.read().expect("catalog");
        tenants.get(tenant).map_or(0, |t| t.generation)
    }

    /// The active definitions' (pattern, subject) pairs, for the validate stage.
    pub fn active(&self, tenant: &str) -> Vec<(String, String)> {
        let tenants = self.tenants.read().expect("catalog");
        tenants
            .get(tenant)
            .map(|t| {
                t.definitions
                    .values()
                    .filter(|d| d.status == Status::Active)
                    .map(|d| (d.pattern.clone(), d.subject()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the tenant has active definitions (produce then runs the validate stage).
    pub fn has_active(&self, tenant: &str) -> bool {
        let tenants = self.tenants.read().expect("catalog");
        tenants
            .get(tenant)
            .is_some_and(|t| t.definitions.values().any(|d| d.status == Status::Active))
    }

    /// Whether the tenant has any active or deprecated definitions (produce then looks).
    pub fn in_force(&self, tenant: &str) -> bool {
        let tenants = self.tenants.read().expect("catalog");
        tenants
            .get(tenant)
            .is_some_and(|t| t.definitions.values().any(|d| d.status != Status::Draft))
    }

    /// The deprecated definition `event_type` falls under, if any.
    pub fn deprecated(&self, tenant: &str, event_type: &str) -> Option<String> {
        let tenants = self.tenants.read().expect("catalog");
        let t = tenants.get(tenant)?;
        // An active definition wins over a deprecated one for the same type.
        let active = t
            .definitions
            .values()
            .any(|d| d.status == Status::Active && d.matches(event_type));
        if active {
            return None;
        }
        t.definitions
            .values()
            .find(|d| d.status == Status::Deprecated && d.matches(event_type))
            .map(|d| d.event_id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn semantic_versions() {
        for ok in [
            "1.0.0",
            "0.1.2",
            "10.20.30",
            "1.0.0-alpha.1",
            "1.0.0+build.5",
        ] {
            assert!(is_semver(ok), "{ok}");
        }
        for bad in ["1.0", "1.0.0.0", "01.0.0", "v1.0.0", "1.0.0-", "", "a.b.c"] {
            assert!(!is_semver(bad), "{bad}");
        }
    }

    #[test]
    fn examples_are_checked_against_the_schema() {
        let schema = json!({"type": "object", "required": ["booking_id"],
            "properties": {"booking_id": {"type": "string"}}});
        assert!(check_examples(&schema, &[json!({"booking_id": "b1"})]).is_ok());
        let errors = check_examples(
            &schema,
            &[json!({"booking_id": "b1"}), json!({"booking_id": 7})],
        )
        .unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("examples[1] at `/booking_id`"),
            "{errors:?}"
        );
        assert!(check_examples(&json!({"type": 5}), &[]).is_err());
    }

    #[test]
    fn patterns_match_types_or_prefixes() {
        let mut d: Definition = serde_json::from_value(json!({
            "event_id": "BookingEvents.created", "name": "Booking created",
            "pattern": "bookings.created", "version": "1.0.0", "payload_schema": {}
        }))
        .unwrap();
        assert!(d.check().is_ok());
        assert!(d.matches("bookings.created") && !d.matches("bookings.cancelled"));
        d.pattern = "bookings.*".into();
        assert!(d.matches("bookings.cancelled"));
        d.pattern = "*.x.*".into();
        assert!(d.check().is_err());
        d.pattern = "bookings.created".into();
        d.event_id = "has space".into();
        assert!(d.check().is_err());
    }
}
