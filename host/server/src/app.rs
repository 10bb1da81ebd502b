//! [`App`]: the services a request handler may call.

use std::sync::Arc;

use sluice_delivery::Webhooks;
use sluice_groups::Groups;
use sluice_ingest::Ingest;
use sluice_ingest::catalog::Catalog;
use sluice_ingest::components::Components;
use sluice_ingest::schemas::Registry;
use sluice_ingest::transforms::Transforms;
use sluice_log::Log;
use sluice_tenancy::audit::Audit;
use sluice_tenancy::auth::Directory;
use sluice_tenancy::clock::Clock;
use sluice_tenancy::quotas::QuotaBook;

use crate::metrics::Metrics;

/// The services a request handler may call: a plain bundle, put together by
/// [`crate::serve::start`], that only the HTTP layer sees. Each service received what it uses
/// when it was built; none of them holds the bundle.
pub struct App {
    pub log: Log,
    pub directory: Arc<Directory>,
    /// Tenants' produce and fetch quotas.
    pub quotas: Arc<QuotaBook>,
    /// Tenants' audit trails.
    pub audit: Arc<Audit>,
    pub metrics: Metrics,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// The listener's bounds.
    pub http: crate::config::HttpLimits,
    /// The seed's Topic Configuration schema, compiled once.
    pub topic_schema: jsonschema::Validator,
    /// Built-in and uploaded WebAssembly components, and the runtime that runs them.
    pub components: Arc<Components>,
    /// The one way into a topic: pipelines, dead letters, the append.
    pub ingest: Arc<Ingest>,
    /// Tenants' running transforms.
    pub transforms: Transforms,
    /// Tenants' schema registries.
    pub registry: Arc<Registry>,
    /// Tenants' event catalogs.
    pub catalog: Arc<Catalog>,
    /// Tenants' consumer groups and their committed offsets.
    pub groups: Arc<Groups>,
    /// Tenants' webhook subscriptions and their delivery loops.
    pub webhooks: Arc<Webhooks>,
    /// Sources: the edge gateways' ingress.
    pub sources: Arc<sluice_sources::Sources>,
    /// Compacted topics kept compacted.
    pub compactor: Arc<sluice_compaction::Compactor>,
    /// The FHIR gateway.
    pub fhir: Arc<sluice_fhir::Fhir>,
    /// The time that schedules retries (tests move it).
    pub clock: Arc<Clock>,
    /// Tenants' data keys for sealed (PHI) topics.
    pub data_keys: Arc<sluice_tenancy::data_keys::DataKeys>,
    /// What topics that require redaction look like to readers without the `phi` role.
    pub redaction: Arc<sluice_ingest::redaction::Redaction>,
    /// Turns `true` when the server stops: long-lived responses (streams) end.
    pub closing: tokio::sync::watch::Sender<bool>,
    /// Streams open per API key.
    pub streams: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

impl App {
    /// The topic configuration schema every topic document is checked against.
    pub fn topic_schema() -> jsonschema::Validator {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("api/topic_schema.json")).expect("schema is JSON");
        jsonschema::validator_for(&schema).expect("schema compiles")
    }
}
