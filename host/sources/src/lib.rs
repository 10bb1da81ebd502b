//! Sources: where the edge gateways' events come in. A source names a topic, an ingress
//! component (the built-in `webhook-gateway`, or a tenant's own) and that component's
//! configuration (scheme, secrets, where the event type and key are). A request to
//! `POST /hooks/{tenant}/{source}` needs no API key: the component verifies it (the signature
//! is the credential) and answers the events it carries, which are appended through
//! [`sluice_ingest::append::Ingest`] exactly as produce appends (pipelines, schemas, dead
//! letters, quotas, idempotency by event id, so a replayed delivery is a duplicate).
//!
//! Definitions are kept in the internal topic `_sources` (one keyed record per change).

mod receive;
mod source;

pub use receive::{MAX_BODY_BYTES, Request};
pub use source::{Source, SourceError};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use sluice_ingest::append::Ingest;
use sluice_ingest::components::Components;
use sluice_log::{Log, LogError};
use sluice_runtime::{Stage, StageLabels, World};
use sluice_tenancy::error::ApiError;
use sluice_tenancy::internal_topics;

/// The internal topic of source definitions: key `<tenant>/<name>`, value the definition
/// (empty: deleted).
pub const SOURCES_TOPIC: &str = "_sources";
/// Sources one tenant may define.
pub const MAX_SOURCES_PER_TENANT: usize = 256;

/// A source with its running component.
struct Live {
    def: Source,
    stage: Stage,
}

/// Every tenant's sources.
pub struct Sources {
    log: Log,
    components: Arc<Components>,
    ingest: Arc<Ingest>,
    live: Mutex<HashMap<(String, String), Arc<Live>>>,
}

pub fn not_found(name: &str) -> ApiError {
    ApiError::new(
        http::StatusCode::NOT_FOUND,
        40410,
        format!("source `{name}` not found"),
    )
}

impl Sources {
    /// Load every definition and start its component. A source whose component no longer
    /// starts is logged and left out (its requests get 404 until it is defined again).
    pub async fn load(
        log: Log,
        components: Arc<Components>,
        ingest: Arc<Ingest>,
    ) -> Result<Sources, LogError> {
        internal_topics::ensure(
            &log,
            SOURCES_TOPIC,
            "sources (edge gateways)",
            &[internal_topics::compact()],
        )
        .await?;
        let mut defs: HashMap<(String, String), Source> = HashMap::new();
        internal_topics::replay(&log, SOURCES_TOPIC, |_, r| {
            let Some(key) = r.key.as_ref().and_then(|k| std::str::from_utf8(k).ok()) else {
                return;
            };
            let Some((tenant, name)) = key.split_once('/') else {
                return;
            };
            let k = (tenant.to_owned(), name.to_owned());
            if r.value_bytes().is_empty() {
                defs.remove(&k);
            } else if let Ok(s) = serde_json::from_slice::<Source>(r.value_bytes()) {
                defs.insert(k, s);
            }
        })
        .await?;
        let sources = Sources {
            log,
            components,
            ingest,
            live: Mutex::new(HashMap::new()),
        };
        for ((tenant, name), def) in defs {
            match sources.start(&tenant, def).await {
                Ok(live) => {
                    sources
                        .live
                        .lock()
                        .expect("sources")
                        .insert((tenant, name), Arc::new(live));
                }
                Err(e) => {
                    tracing::warn!(tenant, source = name, error = %e.message, "a source did not start")
                }
            }
        }
        Ok(sources)
    }

    /// Start `def`'s component with its configuration (which the component checks).
    async fn start(&self, tenant: &str, def: Source) -> Result<Live, ApiError> {
        let (resolved, compiled) = self.components.resolve(tenant, &def.component).await?;
        if resolved.world != World::Ingress {
            return Err(SourceError::new(format!(
                "`component`: `{}` is a {} component; a source needs an ingress component \
                 (such as `webhook-gateway`)",
                def.component,
                resolved.world.name()
            ))
            .into());
        }
        let runtime = self.components.runtime().clone();
        let host = self.ingest.guest_services().clone();
        let config = def.config.to_string();
        let labels = StageLabels {
            tenant: tenant.to_owned(),
            component: resolved.label.clone(),
        };
        let stage = tokio::task::spawn_blocking(move || {
            Stage::new(&runtime, &compiled, World::Ingress, config, host, labels)
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| SourceError::new(format!("`config`: {e}")))?;
        Ok(Live { def, stage })
    }

    /// Create or replace a source; the component must accept its configuration.
    pub async fn put(&self, tenant: &str, mut def: Source) -> Result<Source, ApiError> {
        def.check()?;
        if self
            .log
            .topic(&sluice_tenancy::log_name(tenant, &def.topic))
            .is_none()
        {
            return Err(ApiError::topic_not_found(&def.topic));
        }
        let existing = self.get(tenant, &def.name);
        if existing.is_none() && self.list(tenant).len() >= MAX_SOURCES_PER_TENANT {
            return Err(SourceError::new(format!(
                "a tenant may have {MAX_SOURCES_PER_TENANT} sources"
            ))
            .into());
        }
        def.created_ms = existing
            .map(|e| e.created_ms)
            .unwrap_or_else(sluice_tenancy::now_ms);
        let live = self.start(tenant, def.clone()).await?;
        internal_topics::append(
            &self.log,
            SOURCES_TOPIC,
            format!("{tenant}/{}", def.name),
            serde_json::to_vec(&def).expect("a source serializes"),
        )
        .await?;
        self.live
            .lock()
            .expect("sources")
            .insert((tenant.to_owned(), def.name.clone()), Arc::new(live));
        Ok(def)
    }

    pub fn get(&self, tenant: &str, name: &str) -> Option<Source> {
        self.running(tenant, name).map(|l| l.def.clone())
    }

    /// The tenant's sources, by name.
    pub fn list(&self, tenant: &str) -> Vec<Source> {
        let mut out: Vec<Source> = self
            .live
            .lock()
            .expect("sources")
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|(_, l)| l.def.clone())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub async fn delete(&self, tenant: &str, name: &str) -> Result<(), ApiError> {
        if self.get(tenant, name).is_none() {
            return Err(not_found(name));
        }
        internal_topics::delete(&self.log, SOURCES_TOPIC, format!("{tenant}/{name}")).await?;
        self.live
            .lock()
            .expect("sources")
            .remove(&(tenant.to_owned(), name.to_owned()));
        Ok(())
    }

    /// The CloudEvents webhook abuse-protection handshake: may `origin` send to this source?
    /// The origin granted (as asked, or `*`) and the rate, or why not.
    pub fn handshake(
        &self,
        tenant: &str,
        name: &str,
        origin: &str,
    ) -> Result<(String, Option<u32>), ApiError> {
        let def = self.get(tenant, name).ok_or_else(|| not_found(name))?;
        if def.allowed_origins.iter().any(|o| o == "*") {
            return Ok(("*".into(), def.allowed_rate));
        }
        if def
            .allowed_origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin))
        {
            return Ok((origin.to_owned(), def.allowed_rate));
        }
        Err(ApiError::forbidden(format!(
            "origin `{origin}` may not send to source `{name}` (its `allowed_origins`)"
        )))
    }

    fn running(&self, tenant: &str, name: &str) -> Option<Arc<Live>> {
        self.live
            .lock()
            .expect("sources")
            .get(&(tenant.to_owned(), name.to_owned()))
            .cloned()
    }

    /// A definition as shown to clients: secrets masked.
    pub fn shown(def: &Source) -> Value {
        let mut v = serde_json::to_value(def).expect("a source serializes");
        if let Some(config) = v.get_mut("config").and_then(Value::as_object_mut) {
            for k in ["secret", "secrets"] {
                if let Some(s) = config.get_mut(k) {
                    *s = mask(s);
                }
            }
        }
        v
    }
}

/// `whsec_…abcd`: enough to tell secrets apart, never enough to use one.
fn mask(v: &Value) -> Value {
    match v {
        Value::String(s) => {
            let tail: String = s
                .chars()
                .rev()
                .take(4)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let head: String = s.chars().take_while(|c| *c != '_').collect();
            if s.len() > 12 && s.contains('_') {
                Value::String(format!("{head}_…{tail}"))
            } else {
                Value::String("…".into())
            }
        }
        Value::Array(a) => Value::Array(a.iter().map(mask).collect()),
        other => other.clone(),
    }
}
