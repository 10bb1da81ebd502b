//! # sluice-fhir: the FHIR gateway
//!
//! `/fhir/{tenant}/...` speaks FHIR's REST API over the tenant's topic `fhir.resources`
//! (created on first use, compacted to the newest version of each resource):
//!
//! - changes (`POST /{Type}`, `PUT /{Type}/{id}`, `DELETE /{Type}/{id}`, a `transaction` or
//!   `batch` Bundle at `POST /`) go through the built-in `fhir-gateway` component, which checks
//!   the resources and answers one event per change (`fhir.{Type}.{create|update|delete}`,
//!   keyed `{Type}/{id}`); this crate gives each its id (creates), `meta.versionId` (one more
//!   than the resource's last) and `meta.lastUpdated`, appends them through `Ingest`, and
//!   answers as a FHIR server does (201/200 with `Location`, `ETag: W/"n"`, `Last-Modified`
//!   and the resource; a Bundle answers a `transaction-response`/`batch-response`);
//! - `If-Match: W/"n"` on an update or delete must name the current version (else 412);
//! - reads (`GET /{Type}/{id}`) come from the newest event of the resource's key (410 once
//!   deleted), through an index of each resource's latest version built from the topic on
//!   first use;
//! - `GET /metadata` is the CapabilityStatement.
//!
//! Every failure is an `OperationOutcome` ([`FhirError`]). Changes of one resource are
//! versioned in order (a lock per resource, held from versioning to indexing).

pub mod fhirpath;
pub mod notification;
pub mod notifier;
pub mod operations;
pub mod subscription;
pub mod trigger;

#[cfg(test)]
mod fixtures;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};
use sluice_ingest::append::Ingest;
use sluice_ingest::components::Components;
use sluice_ingest::envelope;
use sluice_log::{Log, LogError, NewTopic};
use sluice_runtime::{Accepted, CallError, Header, HttpRequest, Stage, StageLabels, World};
use sluice_tenancy::auth::{Principal, Role};
use sluice_tenancy::error::ApiError;
use sluice_tenancy::log_name;

/// The tenant's topic of resource changes.
pub const TOPIC: &str = "fhir.resources";
/// The header holding a resource's `meta.versionId` (what the FHIR compaction policy orders by).
pub const VERSION_HEADER: &str = "fhir_version_id";
/// The header holding the offset of a resource's previous version (updates and deletes).
pub const PREVIOUS_HEADER: &str = "fhir_previous_offset";
/// The header holding the base URL the change was made at (`http://host/fhir/{tenant}`):
/// what notifications' references start with.
pub const BASE_HEADER: &str = "fhir_base";
/// In a request's view of the index: a version planned by the request itself.
const IN_REQUEST: u64 = u64::MAX;
/// The largest FHIR request body.
pub const MAX_BODY_BYTES: usize = 4 << 20;
/// Subscriptions per tenant.
pub const MAX_SUBSCRIPTIONS: usize = 1000;
/// SubscriptionTopics a Subscription's topic is looked for among (per tenant).
pub const MAX_TOPICS: usize = 1000;

/// EHR subscriptions whose event numbers are followed per tenant (for gaps); others are taken
/// without gap reports.
pub const MAX_TRACKED_SUBSCRIPTIONS: usize = 10_000;

/// Resource types whose structure the gateway checks in depth.
pub const CHECKED_TYPES: [&str; 7] = [
    "Patient",
    "Encounter",
    "Observation",
    "Condition",
    "MedicationRequest",
    "DiagnosticReport",
    "Bundle",
];

/// A FHIR answer: status, headers, and a resource (or none).
pub struct FhirResponse {
    pub status: StatusCode,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Value>,
}

/// A failure, as FHIR reports it: an `OperationOutcome`.
#[derive(Debug)]
pub struct FhirError {
    pub status: StatusCode,
    pub outcome: Value,
    pub retry_after: Option<u64>,
}

impl FhirError {
    fn new(status: StatusCode, code: &str, diagnostics: impl Into<String>) -> FhirError {
        FhirError {
            status,
            outcome: outcome(code, &diagnostics.into()),
            retry_after: None,
        }
    }
}

/// A one-issue OperationOutcome.
pub fn outcome(code: &str, diagnostics: &str) -> Value {
    json!({"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": code, "diagnostics": diagnostics}
    ]})
}

impl From<ApiError> for FhirError {
    fn from(e: ApiError) -> FhirError {
        let code = match e.status.as_u16() {
            400 => "invalid",
            401 => "login",
            403 => "forbidden",
            404 => "not-found",
            409 | 412 => "conflict",
            413 => "too-costly",
            415 => "not-supported",
            422 => "processing",
            429 => "throttled",
            507 => "transient",
            _ => "exception",
        };
        FhirError {
            status: e.status,
            outcome: outcome(
                code,
                &format!("{} (error_code {})", e.message, e.error_code),
            ),
            retry_after: e.retry_after,
        }
    }
}

impl From<LogError> for FhirError {
    fn from(e: LogError) -> FhirError {
        sluice_tenancy::error::from_log(e, TOPIC).into()
    }
}

/// The newest version of one resource.
#[derive(Debug, Clone, Copy)]
struct Latest {
    version: u64,
    offset: u64,
    deleted: bool,
    last_updated_ms: i64,
}

/// One tenant's resources: the index of their latest versions, and a lock per resource that a
/// change holds from versioning to indexing.
struct Resources {
    index: Mutex<HashMap<String, Latest>>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The locks a change holds; given back (and forgotten when nobody waits) when dropped.
struct HeldKeys<'a> {
    resources: &'a Resources,
    guards: Vec<(String, tokio::sync::OwnedMutexGuard<()>)>,
}

impl Drop for HeldKeys<'_> {
    fn drop(&mut self) {
        let mut locks = self.resources.locks.lock().expect("locks");
        for (key, guard) in self.guards.drain(..) {
            drop(guard);
            if locks.get(&key).is_some_and(|l| Arc::strong_count(l) == 1) {
                locks.remove(&key);
            }
        }
    }
}

impl Resources {
    /// Take the locks of `keys`, in key order (so two changes never wait on each other).
    async fn lock_keys(&self, keys: &std::collections::BTreeSet<String>) -> HeldKeys<'_> {
        let mut guards = Vec::with_capacity(keys.len());
        for key in keys {
            let lock = self
                .locks
                .lock()
                .expect("locks")
                .entry(key.clone())
                .or_default()
                .clone();
            guards.push((key.clone(), lock.lock_owned().await));
        }
        HeldKeys {
            resources: self,
            guards,
        }
    }
}

pub struct Fhir {
    log: Log,
    ingest: Arc<Ingest>,
    components: Arc<Components>,
    /// The built-in `fhir-gateway`, started once per tenant (so its calls count against that
    /// tenant's share of the runtime).
    gateways: Mutex<HashMap<String, Stage>>,
    tenants: Mutex<HashMap<String, Arc<Resources>>>,
    /// The last event number received per tenant and EHR subscription, for gaps (at most
    /// [`MAX_TRACKED_SUBSCRIPTIONS`] per tenant, references of at most 512 bytes).
    notified: Mutex<HashMap<String, HashMap<String, u64>>>,
    /// Delivers rest-hook notifications (and records heartbeats).
    webhooks: Arc<sluice_delivery::Webhooks>,
    /// Heartbeats' time (tests move it).
    clock: Arc<sluice_tenancy::Clock>,
    /// Full-resource notifications of a `fhir.resources` that requires redaction are redacted.
    redaction: Arc<sluice_ingest::redaction::Redaction>,
    /// Per tenant, the Subscriptions its notifier runs.
    subscribers: Mutex<HashMap<String, Arc<notifier::Subscribers>>>,
    /// Tenants whose notifier runs.
    notifiers: Mutex<std::collections::HashSet<String>>,
    /// Per tenant, the notifier's committed offset as found at start.
    notifier_offsets: Mutex<HashMap<String, u64>>,
    /// WebSocket binding tokens: token → (tenant, Subscription id, expiry).
    ws_tokens: Mutex<HashMap<String, (String, String, i64)>>,
    /// Bound WebSockets per tenant.
    ws_open: Mutex<HashMap<String, usize>>,
    pub metrics: FhirMetrics,
}

/// Counters `/metrics` shows.
#[derive(Default)]
pub struct FhirMetrics {
    /// Event notifications appended (to every Subscription's topic).
    pub notifications: std::sync::atomic::AtomicU64,
}

/// A request to a tenant's FHIR API, below `/fhir/{tenant}`.
pub struct FhirRequest {
    pub method: String,
    /// From the first `/` after the tenant.
    pub path: String,
    pub content_type: Option<String>,
    pub if_match: Option<String>,
    pub body: Bytes,
    /// The request's base URL for `Location` (`http://host/fhir/{tenant}`).
    pub base: String,
}

impl Fhir {
    /// `committed`: the records of `_offsets` (the notifiers' offsets are among them).
    pub fn new(
        log: Log,
        ingest: Arc<Ingest>,
        components: Arc<Components>,
        webhooks: Arc<sluice_delivery::Webhooks>,
        clock: Arc<sluice_tenancy::Clock>,
        redaction: Arc<sluice_ingest::redaction::Redaction>,
        committed: &[sluice_log::Record],
    ) -> Fhir {
        let notifier_offsets = committed
            .iter()
            .filter_map(|r| {
                let tenant = std::str::from_utf8(r.key.as_ref()?)
                    .ok()?
                    .strip_prefix("fhir-notifier/")?;
                let v: Value = serde_json::from_slice(r.value_bytes()).ok()?;
                Some((tenant.to_owned(), v["offset"].as_u64()?))
            })
            .collect();
        Fhir {
            log,
            ingest,
            components,
            gateways: Mutex::new(HashMap::new()),
            tenants: Mutex::new(HashMap::new()),
            notified: Mutex::new(HashMap::new()),
            webhooks,
            clock,
            redaction,
            subscribers: Mutex::new(HashMap::new()),
            notifiers: Mutex::new(Default::default()),
            notifier_offsets: Mutex::new(notifier_offsets),
            ws_tokens: Mutex::new(HashMap::new()),
            ws_open: Mutex::new(HashMap::new()),
            metrics: FhirMetrics::default(),
        }
    }

    /// The principal Sluice writes as (a Subscription's status): produce on the FHIR topic.
    fn system_principal(tenant: &str) -> Principal {
        Principal {
            key_id: "fhir:subscriptions".into(),
            tenant: tenant.to_owned(),
            scopes: vec![sluice_tenancy::auth::Scope {
                role: Role::Produce,
                topics: TOPIC.to_owned(),
            }],
            system: false,
        }
    }

    /// Write a Subscription's status as a new version of it (what reads show), unless it says
    /// so already. A client's change in between wins (and is tried again on).
    pub(crate) async fn write_status(
        &self,
        tenant: &str,
        id: &str,
        status: &str,
    ) -> Result<(), FhirError> {
        let resources = self.resources(tenant).await?;
        let who = Self::system_principal(tenant);
        let prepared = self.ingest.prepare(&who, TOPIC)?;
        let key = format!("Subscription/{id}");
        for _ in 0..3 {
            let latest = resources.index.lock().expect("index").get(&key).copied();
            let Some(latest) = latest.filter(|l| !l.deleted) else {
                return Ok(());
            };
            let Some(stored) = self.record_at(tenant, latest.offset).await? else {
                return Ok(());
            };
            let envelope: Value =
                serde_json::from_slice(stored.record.value_bytes()).unwrap_or(Value::Null);
            let mut resource = envelope["payload"].clone();
            if resource["status"] == status {
                return Ok(());
            }
            resource["status"] = json!(status);
            let header = |name: &str| {
                stored
                    .record
                    .header(name)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            let base = header(BASE_HEADER);
            let a = Accepted {
                id: None,
                type_: "fhir.Subscription.update".into(),
                key: Some(key.clone().into_bytes()),
                payload: resource.to_string(),
                headers: vec![Header {
                    name: "fhir_version".into(),
                    value: header("fhir_version").into_bytes(),
                }],
            };
            let etag = format!("W/\"{}\"", latest.version);
            let now = sluice_tenancy::now_ms();
            match self
                .apply(&who, &prepared, &resources, &[&a], Some(&etag), &base, now)
                .await
            {
                Err(e) if e.status == StatusCode::PRECONDITION_FAILED => continue,
                r => return r.map(|_| ()),
            }
        }
        Ok(())
    }

    /// The tenant's `fhir-gateway` stage.
    async fn gateway(&self, tenant: &str) -> Result<Stage, FhirError> {
        if let Some(s) = self.gateways.lock().expect("gateways").get(tenant) {
            return Ok(s.clone());
        }
        let (resolved, compiled) = self.components.resolve(tenant, "fhir-gateway").await?;
        let runtime = self.components.runtime().clone();
        let host = self.ingest.guest_services().clone();
        let labels = StageLabels {
            tenant: tenant.to_owned(),
            component: resolved.label,
        };
        let stage = tokio::task::spawn_blocking(move || {
            Stage::new(
                &runtime,
                &compiled,
                World::Ingress,
                String::new(),
                host,
                labels,
            )
        })
        .await
        .map_err(panicked)?
        .map_err(|e| {
            FhirError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "transient",
                format!("the FHIR gateway component did not start: {e}"),
            )
        })?;
        Ok(self
            .gateways
            .lock()
            .expect("gateways")
            .entry(tenant.to_owned())
            .or_insert(stage)
            .clone())
    }

    /// `GET /fhir/{tenant}/metadata`.
    pub fn capability_statement(&self, base: &str) -> FhirResponse {
        let resource = |t: &str| {
            json!({"type": t, "versioning": "versioned", "readHistory": false,
                   "updateCreate": true, "conditionalCreate": false,
                   "interaction": [{"code": "read"}, {"code": "create"}, {"code": "update"}, {"code": "delete"}]})
        };
        let mut resources: Vec<Value> = CHECKED_TYPES.iter().map(|t| resource(t)).collect();
        resources.push(resource("SubscriptionTopic"));
        let mut subscription = resource("Subscription");
        subscription["operation"] = json!([
            {"name": "status", "definition": "http://hl7.org/fhir/OperationDefinition/Subscription-status"},
            {"name": "events", "definition": "http://hl7.org/fhir/OperationDefinition/Subscription-events"},
            {"name": "get-ws-binding-token", "definition": "http://hl7.org/fhir/OperationDefinition/Subscription-get-ws-binding-token"},
        ]);
        resources.push(subscription);
        FhirResponse {
            status: StatusCode::OK,
            headers: Vec::new(),
            body: Some(json!({
                "resourceType": "CapabilityStatement",
                "status": "active",
                "date": chrono::Utc::now().format("%Y-%m-%d").to_string(),
                "kind": "instance",
                "software": {"name": "Sluice", "version": env!("CARGO_PKG_VERSION")},
                "implementation": {"description": "Sluice FHIR gateway", "url": base},
                "fhirVersion": "5.0.0",
                "format": ["application/fhir+json", "json"],
                "rest": [{
                    "mode": "server",
                    "security": {"description": "API keys as Bearer tokens (SMART-style); scopes on the topic fhir.resources"},
                    "resource": resources,
                    "interaction": [{"code": "transaction"}, {"code": "batch"}],
                }],
            })),
        }
    }

    /// A change: through the gateway component, versioned, appended, answered.
    pub async fn change(
        self: &Arc<Self>,
        who: &Principal,
        request: FhirRequest,
    ) -> Result<FhirResponse, FhirError> {
        who.require(Role::Produce, TOPIC)?;
        if request.body.len() > MAX_BODY_BYTES {
            return Err(FhirError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-costly",
                format!("a FHIR request body is at most {MAX_BODY_BYTES} bytes"),
            ));
        }
        let resources = self.resources(&who.tenant).await?;
        self.start_notifier(&who.tenant);
        let prepared = self.ingest.prepare(who, TOPIC)?;
        let now = sluice_tenancy::now_ms();
        let http_request = HttpRequest {
            method: request.method.clone(),
            path: request.path.clone(),
            query: String::new(),
            headers: request
                .content_type
                .iter()
                .map(|ct| Header {
                    name: "content-type".into(),
                    value: ct.as_bytes().to_vec(),
                })
                .collect(),
            body: request.body.to_vec(),
            received: now,
        };
        let stage = self.gateway(&who.tenant).await?;
        let answer = tokio::task::spawn_blocking(move || stage.ingress(&http_request))
            .await
            .map_err(panicked)?
            .map_err(component_failed)?;
        let accepted = answer.map_err(|r| {
            let status = StatusCode::from_u16(r.status)
                .ok()
                .filter(StatusCode::is_client_error)
                .unwrap_or(StatusCode::BAD_REQUEST);
            let outcome = serde_json::from_str::<Value>(&r.message)
                .ok()
                .filter(|v| v["resourceType"] == "OperationOutcome")
                .unwrap_or_else(|| outcome(&r.code, &r.message));
            FhirError {
                status,
                outcome,
                retry_after: None,
            }
        })?;
        let bundle = request.path.trim_matches('/').is_empty();
        let max = self.ingest.limits().max_events_per_request;
        if accepted.len() > max {
            return Err(FhirError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-costly",
                format!("at most {max} changes per request"),
            ));
        }
        // The Bundle's type, read once (its entries are skipped, not built).
        let bundle_kind = if bundle {
            #[derive(serde::Deserialize)]
            struct Kind {
                #[serde(rename = "type")]
                kind: Option<String>,
            }
            serde_json::from_slice::<Kind>(&request.body)
                .ok()
                .and_then(|k| k.kind)
                .unwrap_or_default()
        } else {
            String::new()
        };
        let transaction = || matches!(bundle_kind.as_str(), "transaction" | "batch");
        if bundle
            && accepted.iter().all(|a| notification_of(a).is_some())
            && (!accepted.is_empty() || !transaction())
        {
            return self.notifications(who, &prepared, accepted, now).await;
        }
        // A batch's refused entries are answered in their place, not appended.
        let (refused, accepted): (Vec<Numbered<'_>>, Vec<Numbered<'_>>) = accepted
            .iter()
            .enumerate()
            .partition(|(_, a)| a.type_ == "fhir.outcome");
        let order: Vec<usize> = accepted.iter().map(|(i, _)| *i).collect();
        let accepted: Vec<&Accepted> = accepted.into_iter().map(|(_, a)| a).collect();
        let if_match = if bundle {
            None
        } else {
            request.if_match.as_deref()
        };
        let mut entries = self
            .apply(
                who,
                &prepared,
                &resources,
                &accepted,
                if_match,
                &request.base,
                now,
            )
            .await?;
        let last_modified = http_date(now);
        if bundle {
            let mut response_entries: Vec<(usize, Value)> = refused
                .iter()
                .map(|(i, a)| {
                    let status = a
                        .headers
                        .iter()
                        .find(|h| h.name == "fhir_status")
                        .map_or("422".into(), |h| String::from_utf8_lossy(&h.value).into_owned());
                    let reason = StatusCode::from_bytes(status.as_bytes())
                        .ok()
                        .and_then(|s| s.canonical_reason())
                        .unwrap_or("Unprocessable Entity");
                    let outcome: Value = serde_json::from_str(&a.payload).unwrap_or(Value::Null);
                    (*i, json!({"response": {"status": format!("{status} {reason}"), "outcome": outcome}}))
                })
                .collect();
            let changed = entries.iter().zip(&order).map(|((p, existed), i)| {
                let status = match (p.interaction, existed) {
                    ("delete", _) => "204 No Content",
                    ("create", _) | ("update", false) => "201 Created",
                    _ => "200 OK",
                };
                let entry = json!({"response": {
                    "status": status,
                    "location": format!("{}/_history/{}", p.key, p.version),
                    "etag": format!("W/\"{}\"", p.version),
                    "lastModified": instant(now),
                }});
                (*i, entry)
            });
            response_entries.extend(changed);
            response_entries.sort_by_key(|(i, _)| *i);
            let response_entries: Vec<Value> =
                response_entries.into_iter().map(|(_, e)| e).collect();
            return Ok(FhirResponse {
                status: StatusCode::OK,
                headers: Vec::new(),
                body: Some(json!({
                    "resourceType": "Bundle",
                    "type": format!("{bundle_kind}-response"),
                    "entry": response_entries,
                })),
            });
        }
        let (p, existed) = entries.pop().expect("one change");
        let etag = format!("W/\"{}\"", p.version);
        if p.interaction == "delete" {
            return Ok(FhirResponse {
                status: StatusCode::NO_CONTENT,
                headers: vec![("etag", etag)],
                body: None,
            });
        }
        let status = if p.interaction == "create" || !existed {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok(FhirResponse {
            status,
            headers: vec![
                (
                    "location",
                    format!("{}/{}/_history/{}", request.base, p.key, p.version),
                ),
                ("etag", etag),
                ("last-modified", last_modified),
            ],
            body: Some(p.resource.clone()),
        })
    }

    /// Version, check, append and index changes. Changes of one resource are versioned in
    /// order: the locks of the resources the changes name are held (in key order) from
    /// planning to indexing; other resources' changes go on meanwhile (creates name fresh ids
    /// and need none). Per change: what was appended, and whether the resource existed.
    #[allow(clippy::too_many_arguments)]
    async fn apply(
        &self,
        who: &Principal,
        prepared: &sluice_ingest::Prepared,
        resources: &Resources,
        accepted: &[&Accepted],
        if_match: Option<&str>,
        base: &str,
        now: i64,
    ) -> Result<Vec<(Planned, bool)>, FhirError> {
        let named: std::collections::BTreeSet<String> = accepted
            .iter()
            .filter_map(|a| {
                a.key
                    .as_ref()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
            })
            .collect();
        let _held = resources.lock_keys(&named).await;
        let planned = {
            let index = resources.index.lock().expect("index");
            // Later changes in the request see the earlier ones (a PUT then a DELETE of one id).
            let mut view: HashMap<String, Latest> = named
                .iter()
                .filter_map(|k| index.get(k).map(|l| (k.clone(), *l)))
                .collect();
            let mut planned = Vec::with_capacity(accepted.len());
            for a in accepted {
                let p = plan(a, &view, base, now)?;
                view.insert(
                    p.key.clone(),
                    Latest {
                        version: p.version,
                        offset: IN_REQUEST,
                        deleted: p.interaction == "delete",
                        last_updated_ms: now,
                    },
                );
                planned.push(p);
            }
            if let (Some(expected), Some(p)) = (if_match, planned.first()) {
                let current = index.get(&p.key).filter(|l| !l.deleted).map(|l| l.version);
                if parse_etag(expected) != current {
                    return Err(FhirError::new(
                        StatusCode::PRECONDITION_FAILED,
                        "conflict",
                        format!(
                            "If-Match {expected}: the current version of {} is {}",
                            p.key,
                            current.map_or("none".to_owned(), |v| format!("W/\"{v}\""))
                        ),
                    ));
                }
            }
            planned
        };
        self.check_subscriptions(&who.tenant, resources, &planned)
            .await?;
        let rules = prepared.rules();
        let items = planned
            .iter()
            .map(|p| envelope::parse(&p.envelope, &rules, &who.key_id, now))
            .collect();
        let results = if planned.is_empty() {
            Vec::new()
        } else {
            self.ingest.append(who, prepared, items, now).await?.results
        };
        let mut entries = Vec::with_capacity(planned.len());
        let mut first_error = None;
        {
            let mut index = resources.index.lock().expect("index");
            for (p, r) in planned.into_iter().zip(results) {
                let v = match r {
                    Ok(v) => v,
                    Err(e) => {
                        first_error.get_or_insert(e);
                        continue;
                    }
                };
                let offset = v["offset"].as_u64().unwrap_or_default();
                let existed = index.get(&p.key).is_some_and(|l| !l.deleted);
                index.insert(
                    p.key.clone(),
                    Latest {
                        version: p.version,
                        offset,
                        deleted: p.interaction == "delete",
                        last_updated_ms: now,
                    },
                );
                entries.push((p, existed));
            }
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(entries),
        }
    }

    /// An EHR's notifications: one event per notification event, its id the subscription and
    /// event number (a resent notification is a duplicate), gaps in the numbers reported (in
    /// the answer, and as `fhir_gap` on the event after one).
    async fn notifications(
        &self,
        who: &Principal,
        prepared: &sluice_ingest::Prepared,
        accepted: Vec<Accepted>,
        now: i64,
    ) -> Result<FhirResponse, FhirError> {
        let mut issues = Vec::new();
        let mut envelopes = Vec::with_capacity(accepted.len());
        {
            let mut all = self.notified.lock().expect("notified");
            let last = all.entry(who.tenant.clone()).or_default();
            for a in &accepted {
                let (subscription, number) = notification_of(a).expect("checked");
                let mut headers: serde_json::Map<String, Value> = a
                    .headers
                    .iter()
                    .map(|h| (h.name.clone(), json!(String::from_utf8_lossy(&h.value))))
                    .collect();
                let tracked = subscription.len() <= 512
                    && (last.len() < MAX_TRACKED_SUBSCRIPTIONS || last.contains_key(&subscription));
                if tracked {
                    let seen = last.entry(subscription.clone()).or_insert(0);
                    if *seen > 0 && number > *seen + 1 {
                        let gap = format!("{}-{}", *seen + 1, number - 1);
                        issues.push(json!({"severity": "warning", "code": "incomplete",
                            "diagnostics": format!("events {gap} of {subscription} were not received: ask the sender's $events for them")}));
                        headers.insert("fhir_gap".into(), json!(gap));
                    }
                    *seen = (*seen).max(number);
                }
                let mut e = json!({
                    "event_id": format!("{subscription}#{number}"),
                    "event_type": a.type_,
                    "source": "/fhir/notifications",
                    "headers": headers,
                    "payload": serde_json::from_str::<Value>(&a.payload).unwrap_or(Value::Null),
                });
                if let Some(k) = &a.key {
                    e["key"] = json!(String::from_utf8_lossy(k));
                }
                envelopes.push(e.to_string());
            }
        }
        let rules = prepared.rules();
        let items = envelopes
            .iter()
            .map(|e| envelope::parse(e, &rules, &who.key_id, now))
            .collect();
        let outcome = self.ingest.append(who, prepared, items, now).await?;
        let mut appended = 0;
        for r in outcome.results {
            let v = r?;
            if v["duplicate"] != json!(true) {
                appended += 1;
            }
        }
        issues.insert(
            0,
            json!({"severity": "information", "code": "informational",
                   "diagnostics": format!("{appended} notification events appended ({} received)", accepted.len())}),
        );
        Ok(FhirResponse {
            status: StatusCode::OK,
            headers: Vec::new(),
            body: Some(json!({"resourceType": "OperationOutcome", "issue": issues})),
        })
    }

    /// SubscriptionTopics must have criteria Sluice can evaluate, and a Subscription must name
    /// a SubscriptionTopic of the tenant (one in the same request counts): refused (422) now
    /// rather than never notifying later.
    async fn check_subscriptions(
        &self,
        tenant: &str,
        resources: &Resources,
        planned: &[Planned],
    ) -> Result<(), FhirError> {
        let unprocessable = |code: &str, message: String, expression: &str| FhirError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            outcome: json!({"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": code, "diagnostics": message, "expression": [expression]}
            ]}),
            retry_after: None,
        };
        let changed = |p: &&Planned| p.interaction != "delete";
        for p in planned.iter().filter(changed) {
            if p.resource["resourceType"] == "SubscriptionTopic" {
                trigger::check(&p.resource).map_err(|e| {
                    unprocessable(
                        "not-supported",
                        e.to_string(),
                        "SubscriptionTopic.resourceTrigger",
                    )
                })?;
            }
        }
        let subscriptions: Vec<&Planned> = planned
            .iter()
            .filter(changed)
            .filter(|p| p.resource["resourceType"] == "Subscription")
            .collect();
        if !subscriptions.is_empty() {
            let phi = self
                .log
                .inspect_topic(&log_name(tenant, TOPIC), |m, _| {
                    sluice_log::sealing::sealed(m)
                })
                .unwrap_or(false);
            let count = resources
                .index
                .lock()
                .expect("index")
                .iter()
                .filter(|(k, l)| k.starts_with("Subscription/") && !l.deleted)
                .count();
            if count + subscriptions.len() > MAX_SUBSCRIPTIONS {
                return Err(FhirError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "too-costly",
                    format!("a tenant has at most {MAX_SUBSCRIPTIONS} Subscriptions"),
                ));
            }
            for p in &subscriptions {
                let spec = subscription::parse(
                    &p.resource,
                    subscription::Version::parse(&p.fhir_version),
                )
                .map_err(|problems| FhirError {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    outcome: json!({"resourceType": "OperationOutcome", "issue": problems
                        .iter()
                        .map(|(expression, message)| json!({"severity": "error", "code": "not-supported",
                            "diagnostics": message, "expression": [expression]}))
                        .collect::<Vec<_>>()}),
                    retry_after: None,
                })?;
                if let subscription::Channel::RestHook { endpoint, .. } = &spec.channel {
                    self.webhooks
                        .check_endpoint(endpoint)
                        .map_err(|e| unprocessable("invalid", e, "Subscription.endpoint"))?;
                    if phi && !sluice_delivery::egress::tls_or_loopback(endpoint) {
                        return Err(unprocessable(
                            "security",
                            format!(
                                "`{TOPIC}` holds PHI: notifications go to https endpoints only, not `{endpoint}`"
                            ),
                            "Subscription.endpoint",
                        ));
                    }
                }
            }
        }
        let wanted: Vec<(String, &'static str)> = planned
            .iter()
            .filter(changed)
            .filter(|p| p.resource["resourceType"] == "Subscription")
            .map(|p| {
                // R5 `topic`; the R4/R4B backport's `criteria`.
                match p.resource["topic"].as_str() {
                    Some(t) => (t.to_owned(), "Subscription.topic"),
                    None => (
                        p.resource["criteria"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        "Subscription.criteria",
                    ),
                }
            })
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let mut known: std::collections::HashSet<String> = planned
            .iter()
            .filter(changed)
            .filter(|p| p.resource["resourceType"] == "SubscriptionTopic")
            .filter_map(|p| p.resource["url"].as_str().map(str::to_owned))
            .collect();
        let stored: Vec<u64> = {
            let index = resources.index.lock().expect("index");
            index
                .iter()
                .filter(|(k, l)| k.starts_with("SubscriptionTopic/") && !l.deleted)
                .map(|(_, l)| l.offset)
                .take(MAX_TOPICS)
                .collect()
        };
        for offset in stored {
            if let Some(s) = self.record_at(tenant, offset).await?
                && let Ok(e) = serde_json::from_slice::<Value>(s.record.value_bytes())
                && let Some(url) = e["payload"]["url"].as_str()
            {
                known.insert(url.to_owned());
            }
        }
        for (topic, expression) in wanted {
            if !known.contains(&topic) {
                return Err(unprocessable(
                    "invalid",
                    format!("`{topic}` is not a SubscriptionTopic of this server"),
                    expression,
                ));
            }
        }
        Ok(())
    }

    /// `GET /fhir/{tenant}/{Type}/{id}`: the newest version.
    pub async fn read(
        &self,
        who: &Principal,
        resource_type: &str,
        id: &str,
    ) -> Result<FhirResponse, FhirError> {
        who.require(Role::Consume, TOPIC)?;
        let key = format!("{resource_type}/{id}");
        let not_found = || {
            FhirError::new(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("{key} is not known"),
            )
        };
        let full = log_name(&who.tenant, TOPIC);
        if self.log.topic(&full).is_none() {
            return Err(not_found());
        }
        let latest = {
            let resources = self.resources(&who.tenant).await?;
            let index = resources.index.lock().expect("index");
            index.get(&key).copied().ok_or_else(not_found)?
        };
        if latest.deleted {
            return Err(FhirError::new(
                StatusCode::GONE,
                "deleted",
                format!("{key} was deleted (version {})", latest.version),
            ));
        }
        let record = self
            .record_at(&who.tenant, latest.offset)
            .await?
            .ok_or_else(not_found)?;
        let envelope: Value = serde_json::from_slice(record.record.value_bytes()).map_err(|e| {
            FhirError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "exception",
                e.to_string(),
            )
        })?;
        Ok(FhirResponse {
            status: StatusCode::OK,
            headers: vec![
                ("etag", format!("W/\"{}\"", latest.version)),
                ("last-modified", http_date(latest.last_updated_ms)),
            ],
            body: Some(envelope["payload"].clone()),
        })
    }

    /// The change stored at `offset` of the tenant's `fhir.resources`, if it is still there
    /// (what the index points at: a read, a status update, a stored SubscriptionTopic, the
    /// version before a change).
    pub(crate) async fn record_at(
        &self,
        tenant: &str,
        offset: u64,
    ) -> Result<Option<sluice_log::StoredRecord>, LogError> {
        let read = self
            .log
            .read(&log_name(tenant, TOPIC), 0, offset, 1, 8 << 20)
            .await?;
        Ok(read.records.into_iter().find(|s| s.offset == offset))
    }

    /// The tenant's resources: its topic created and its index built on first use.
    async fn resources(&self, tenant: &str) -> Result<Arc<Resources>, FhirError> {
        if let Some(r) = self.tenants.lock().expect("tenants").get(tenant) {
            return Ok(r.clone());
        }
        let full = log_name(tenant, TOPIC);
        if self.log.topic(&full).is_none() {
            let created = self
                .log
                .create_topic(NewTopic {
                    name: full.clone(),
                    partitions: 1,
                    config: [
                        ("retention.ms".to_owned(), json!(-1)),
                        ("cleanup.policy".to_owned(), json!("compact")),
                        ("compaction.policy".to_owned(), json!("compactor")),
                        (
                            "compaction.policy.config".to_owned(),
                            json!({"policy": "fhir-latest-version"}),
                        ),
                    ]
                    .into(),
                    spec: json!({"description": "FHIR resource changes (the FHIR gateway)"}),
                })
                .await;
            match created {
                Ok(_) | Err(LogError::TopicExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut index = HashMap::new();
        self.log
            .scan(&full, 0, 0, u64::MAX, |s| {
                let Some(key) = s
                    .record
                    .key
                    .as_ref()
                    .and_then(|k| std::str::from_utf8(k).ok())
                else {
                    return true;
                };
                let version = s
                    .record
                    .header(VERSION_HEADER)
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let deleted = serde_json::from_slice::<Value>(s.record.value_bytes())
                    .map(|e| e["payload"]["deleted"] == json!(true))
                    .unwrap_or(s.record.is_null());
                index.insert(
                    key.to_owned(),
                    Latest {
                        version,
                        offset: s.offset,
                        deleted,
                        last_updated_ms: s.record.timestamp,
                    },
                );
                true
            })
            .await?;
        let resources = Arc::new(Resources {
            index: Mutex::new(index),
            locks: Mutex::new(HashMap::new()),
        });
        Ok(self
            .tenants
            .lock()
            .expect("tenants")
            .entry(tenant.to_owned())
            .or_insert(resources)
            .clone())
    }
}

/// An event the component answered, with its place in the request.
type Numbered<'a> = (usize, &'a Accepted);

/// One change, ready to append.
struct Planned {
    key: String,
    version: u64,
    interaction: &'static str,
    resource: Value,
    /// `R4`, `R4B` or `R5`.
    fhir_version: String,
    envelope: String,
}

/// Give a change its id (creates), version and `meta`, and the envelope that stores it.
fn plan(
    a: &Accepted,
    index: &HashMap<String, Latest>,
    base: &str,
    now: i64,
) -> Result<Planned, FhirError> {
    let bad = |m: String| FhirError::new(StatusCode::BAD_GATEWAY, "exception", m);
    let mut resource: Value = serde_json::from_str(&a.payload).map_err(|e| {
        bad(format!(
            "the FHIR gateway answered a resource that is not JSON: {e}"
        ))
    })?;
    let interaction = match a.type_.rsplit('.').next() {
        Some("create") => "create",
        Some("update") => "update",
        Some("delete") => "delete",
        _ => {
            return Err(bad(format!(
                "the FHIR gateway answered the event type `{}`",
                a.type_
            )));
        }
    };
    let resource_type = resource["resourceType"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let id = match a.key.as_ref() {
        Some(k) => String::from_utf8_lossy(k)
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned(),
        None => uuid::Uuid::new_v4().to_string(),
    };
    let key = format!("{resource_type}/{id}");
    let version = index.get(&key).map_or(0, |l| l.version) + 1;
    // An update of a resource that does not exist (or was deleted) creates it.
    let interaction = match interaction {
        "update" if index.get(&key).is_none_or(|l| l.deleted) => "create",
        other => other,
    };
    resource["id"] = json!(id);
    if interaction != "delete" {
        if !resource["meta"].is_object() {
            resource["meta"] = json!({});
        }
        resource["meta"]["versionId"] = json!(version.to_string());
        resource["meta"]["lastUpdated"] = json!(instant(now));
    }
    let fhir_version = a
        .headers
        .iter()
        .find(|h| h.name == "fhir_version")
        .map(|h| String::from_utf8_lossy(&h.value).into_owned())
        .unwrap_or_else(|| "R5".into());
    let mut headers = json!({VERSION_HEADER: version.to_string(), "fhir_version": fhir_version,
                             BASE_HEADER: base});
    // Where the version before this one is (subscriptions' `previous` criteria read it).
    if let Some(l) = index
        .get(&key)
        .filter(|l| l.offset != IN_REQUEST && interaction != "create")
    {
        headers[PREVIOUS_HEADER] = json!(l.offset.to_string());
    }
    let envelope = json!({
        "event_type": format!("fhir.{resource_type}.{interaction}"),
        "key": key,
        "source": "/fhir",
        "headers": headers,
        "payload": resource,
    })
    .to_string();
    Ok(Planned {
        key,
        version,
        interaction,
        resource,
        fhir_version,
        envelope,
    })
}

/// A blocking task that did not finish (it panicked, or the runtime is stopping).
fn panicked(e: tokio::task::JoinError) -> FhirError {
    FhirError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "exception",
        e.to_string(),
    )
}

/// A notification event's subscription and event number (its headers), if it is one.
fn notification_of(a: &Accepted) -> Option<(String, u64)> {
    if !(a.type_ == "fhir.notification" || a.type_.ends_with(".notified")) {
        return None;
    }
    let header = |name: &str| {
        a.headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| String::from_utf8_lossy(&h.value).into_owned())
    };
    Some((
        header("fhir_subscription").unwrap_or_default(),
        header("fhir_event_number")?.parse().ok()?,
    ))
}

fn component_failed(e: CallError) -> FhirError {
    if let CallError::OutOfMemory(limit) = e {
        // What the request asked the checks to hold: too much for one request.
        return FhirError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-costly",
            format!(
                "checking this request took more than the FHIR gateway's memory ({limit} bytes): send fewer or smaller resources per request"
            ),
        );
    }
    let status = match e {
        CallError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
        CallError::Suspended(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_GATEWAY,
    };
    let mut err = FhirError::new(
        status,
        "exception",
        format!("the FHIR gateway component failed: {e}"),
    );
    if status != StatusCode::BAD_GATEWAY {
        err.retry_after = Some(1);
    }
    err
}

/// `W/"3"` (or `"3"`) → 3.
fn parse_etag(s: &str) -> Option<u64> {
    s.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .ok()
}

/// A FHIR instant (UTC, milliseconds).
pub(crate) fn instant(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// An HTTP date.
fn http_date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_and_dates() {
        assert_eq!(parse_etag("W/\"3\""), Some(3));
        assert_eq!(parse_etag("\"12\""), Some(12));
        assert_eq!(parse_etag("W/\"x\""), None);
        assert_eq!(instant(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    }

    #[test]
    fn api_errors_become_operation_outcomes() {
        let e: FhirError = ApiError::forbidden("no").into();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert_eq!(e.outcome["resourceType"], "OperationOutcome");
        assert_eq!(e.outcome["issue"][0]["code"], "forbidden");
    }
}
