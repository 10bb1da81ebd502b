//! The schema registry's storage: every tenant's [`Subjects`], kept in the compacted internal
//! topic `_schemas` (as Confluent keeps its `_schemas`). A change is appended, durably, before
//! it is applied, so what a client was told is what a restart rebuilds; ids never change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use sluice_log::{Compression, EncodedRecords, Log, LogError, PartitionAppend, Record};
use sluice_registry::{Change, RegistryError, SchemaType, Subjects, VersionSpec};
use sluice_runtime::Schema;

use sluice_tenancy::error::{ApiError, from_log};
use sluice_tenancy::internal_topics;
use sluice_tenancy::now_ms;

pub const SCHEMAS_TOPIC: &str = "_schemas";

/// Readers take a snapshot of a tenant's [`Subjects`] (an `Arc`, cloned under the lock for an
/// instant) and work on it with no lock held, so a long compatibility check never stalls
/// produce, which reads the registry on every request; those checks run on blocking threads.
pub struct Registry {
    log: Log,
    tenants: RwLock<HashMap<String, Arc<Subjects>>>,
    /// Per tenant, changes are decided and stored one at a time, so two registrations never
    /// race for an id or a version.
    writes: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Registry {
    /// Replay `_schemas`, creating it on first start.
    pub async fn load(log: Log) -> Result<Registry, LogError> {
        internal_topics::ensure(
            &log,
            SCHEMAS_TOPIC,
            "schema registry: subjects, versions, configuration",
            &[internal_topics::compact()],
        )
        .await?;
        let mut tenants: HashMap<String, Arc<Subjects>> = HashMap::new();
        internal_topics::replay(&log, SCHEMAS_TOPIC, |offset, record| {
            let tenant = record
                .key
                .as_ref()
                .and_then(|k| std::str::from_utf8(k).ok())
                .and_then(|k| k.split_once('/'))
                .map(|(t, _)| t.to_owned());
            match (
                tenant,
                serde_json::from_slice::<Change>(record.value_bytes()),
            ) {
                (Some(t), Ok(change)) => {
                    Arc::make_mut(tenants.entry(t).or_default()).apply(&change)
                }
                _ => tracing::warn!(offset, "skipping an unreadable schema record"),
            }
        })
        .await?;
        Ok(Registry {
            log,
            tenants: RwLock::new(tenants),
            writes: Mutex::new(HashMap::new()),
        })
    }

    /// The tenant's registry as it is now.
    fn snapshot(&self, tenant: &str) -> Arc<Subjects> {
        let tenants = self.tenants.read().expect("registry");
        tenants.get(tenant).cloned().unwrap_or_default()
    }

    fn writes_of(&self, tenant: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut writes = self.writes.lock().expect("writes");
        writes.entry(tenant.to_owned()).or_default().clone()
    }

    /// Read one tenant's registry (quick reads: no schema is compared).
    pub fn read<R>(&self, tenant: &str, f: impl FnOnce(&Subjects) -> R) -> R {
        f(&self.snapshot(tenant))
    }

    /// Read one tenant's registry on a blocking thread: for what compares schemas, which may
    /// take up to the registry's check budget.
    pub async fn read_blocking<R: Send + 'static>(
        &self,
        tenant: &str,
        f: impl FnOnce(&Subjects) -> R + Send + 'static,
    ) -> Result<R, ApiError> {
        let snapshot = self.snapshot(tenant);
        tokio::task::spawn_blocking(move || f(&snapshot))
            .await
            .map_err(|e| ApiError::internal(format!("registry check: {e}")))
    }

    /// Decide a change from the current state, store it, then apply it: `decide` returns the
    /// answer and the changes to make.
    pub async fn write<R>(
        &self,
        tenant: &str,
        decide: impl FnOnce(&Subjects) -> Result<(R, Vec<Change>), RegistryError>,
    ) -> Result<R, ApiError> {
        let writes = self.writes_of(tenant);
        let _one_at_a_time = writes.lock().await;
        let (answer, changes) = self.read(tenant, decide).map_err(registry_error)?;
        self.store(tenant, changes).await?;
        Ok(answer)
    }

    /// [`Registry::write`] with `decide` on a blocking thread: registrations, which check
    /// compatibility.
    pub async fn write_blocking<R: Send + 'static>(
        &self,
        tenant: &str,
        decide: impl FnOnce(&Subjects) -> Result<(R, Vec<Change>), RegistryError> + Send + 'static,
    ) -> Result<R, ApiError> {
        let writes = self.writes_of(tenant);
        let _one_at_a_time = writes.lock().await;
        let (answer, changes) = self
            .read_blocking(tenant, decide)
            .await?
            .map_err(registry_error)?;
        self.store(tenant, changes).await?;
        Ok(answer)
    }

    /// Append changes durably, then apply them.
    async fn store(&self, tenant: &str, changes: Vec<Change>) -> Result<(), ApiError> {
        if changes.is_empty() {
            return Ok(());
        }
        let records: Vec<Record> = changes
            .iter()
            .map(|c| Record {
                key: Some(Bytes::from(format!("{tenant}/{}", c.key()))),
                value: Some(Bytes::from(
                    serde_json::to_vec(c).expect("changes serialize"),
                )),
                headers: vec![],
                timestamp: now_ms(),
            })
            .collect();
        self.log
            .append(
                SCHEMAS_TOPIC,
                vec![PartitionAppend {
                    partition: 0,
                    records: EncodedRecords::encode(&records, Compression::None),
                    event_ids: vec![],
                }],
            )
            .await
            .map_err(|e| from_log(e, SCHEMAS_TOPIC))?;
        let mut tenants = self.tenants.write().expect("registry");
        let subjects = Arc::make_mut(tenants.entry(tenant.to_owned()).or_default());
        for c in &changes {
            subjects.apply(c);
        }
        Ok(())
    }

    /// Register `schema` under `subject` (its rules apply), or find it there: the version.
    pub async fn register(
        &self,
        tenant: &str,
        subject: &str,
        schema_type: SchemaType,
        schema: String,
    ) -> Result<sluice_registry::Version, ApiError> {
        let subject = subject.to_owned();
        self.write_blocking(tenant, move |s| {
            let out = s.register(
                &subject,
                sluice_registry::Registration {
                    schema_type,
                    schema,
                    references: vec![],
                    id: None,
                    version: None,
                },
            )?;
            Ok((out.version, out.change.into_iter().collect()))
        })
        .await
    }

    /// Bumped by every change of the tenant's registry.
    pub fn generation(&self, tenant: &str) -> u64 {
        self.read(tenant, Subjects::generation)
    }

    /// The newest live version's id under `subject`, if any.
    pub fn latest_id(&self, tenant: &str, subject: &str) -> Option<u32> {
        self.read(tenant, |s| {
            s.version(subject, VersionSpec::Latest, false)
                .ok()
                .map(|v| v.id)
        })
    }

    // ---- what guests reach through the `schemas` import ----

    pub fn guest_by_id(&self, tenant: &str, id: u32) -> Option<Schema> {
        self.read(tenant, |s| {
            let (subject, version) = s.id_versions(id, false).ok()?.into_iter().next()?;
            let v = s
                .version(&subject, VersionSpec::Number(version), false)
                .ok()?;
            Some(guest_schema(v))
        })
    }

    pub fn guest_latest(&self, tenant: &str, subject: &str) -> Option<Schema> {
        self.read(tenant, |s| {
            s.version(subject, VersionSpec::Latest, false)
                .ok()
                .map(guest_schema)
        })
    }

    pub fn guest_in_subject(&self, tenant: &str, subject: &str, id: u32) -> Option<Schema> {
        self.read(tenant, |s| {
            let (_, version) = s
                .id_versions(id, false)
                .ok()?
                .into_iter()
                .find(|(holder, _)| holder == subject)?;
            let v = s
                .version(subject, VersionSpec::Number(version), false)
                .ok()?;
            Some(guest_schema(v))
        })
    }
}

fn guest_schema(v: &sluice_registry::Version) -> Schema {
    use sluice_runtime::SchemaType as G;
    Schema {
        id: v.id,
        subject: v.subject.clone(),
        version: v.version,
        schema_type: match v.schema_type {
            SchemaType::Avro => G::Avro,
            SchemaType::Json => G::Json,
            SchemaType::Protobuf => G::Protobuf,
        },
        definition: v.schema.clone(),
    }
}

/// Confluent's error shape and codes; the HTTP status is the code's first three digits.
pub fn registry_error(e: RegistryError) -> ApiError {
    let status =
        http::StatusCode::from_u16(e.status()).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    ApiError::new(status, e.code(), e.to_string())
}
