//! The component catalog: the built-in components every tenant may name, and each tenant's
//! uploaded components with their versions.
//!
//! Uploads live in the internal topic `_components` (one record per version: key
//! `tenant/name`, the `.wasm` as value, its metadata in headers), so they are as durable as
//! events and every host on the same store sees them. Compiled code is kept in memory by
//! content hash and on disk by the runtime's cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use serde::Serialize;
use serde_json::json;
use sluice_log::{Compression, EncodedRecords, Log, LogError, PartitionAppend, Record};
use sluice_runtime::{Compiled, Runtime, World};

use sluice_tenancy::error::{ApiError, from_log};
use sluice_tenancy::internal_topics;
use sluice_tenancy::now_ms;

pub const COMPONENTS_TOPIC: &str = "_components";
/// The largest component accepted.
pub const MAX_COMPONENT_BYTES: usize = 32 << 20;

/// One uploaded version.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentVersion {
    pub name: String,
    pub version: u32,
    pub world: String,
    pub sha256: String,
    pub size: usize,
    pub created_ms: i64,
    #[serde(skip)]
    offset: u64,
}

/// What a pipeline or transform names: `validate` (built-in), `mine` (newest version) or
/// `mine@3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// `validate`, or `mine@3`: a reference pinned to its version.
    pub label: String,
    pub world: World,
    pub hash: String,
}

pub struct Components {
    log: Log,
    runtime: Runtime,
    versions: RwLock<HashMap<(String, String), Vec<ComponentVersion>>>,
    /// Compiled components by content hash.
    compiled: Mutex<HashMap<String, Arc<Compiled>>>,
    /// Uploads are serialized so versions stay dense.
    uploads: tokio::sync::Mutex<()>,
    compiling: tokio::sync::Mutex<()>,
}

fn header<'a>(r: &'a Record, name: &str) -> Option<&'a str> {
    r.header(name).and_then(|v| std::str::from_utf8(v).ok())
}

impl Components {
    /// Load the catalog, creating its topic on first start.
    pub async fn load(log: Log, runtime: Runtime) -> Result<Components, LogError> {
        internal_topics::ensure(
            &log,
            COMPONENTS_TOPIC,
            "tenants' WebAssembly components",
            &[("max.message.bytes", json!(MAX_COMPONENT_BYTES + (1 << 20)))],
        )
        .await?;
        let mut versions: HashMap<(String, String), Vec<ComponentVersion>> = HashMap::new();
        let (mut offset, end) = log.offsets(COMPONENTS_TOPIC, 0)?;
        while offset < end {
            let r = log.read(COMPONENTS_TOPIC, 0, offset, 64, 64 << 20).await?;
            for s in &r.records {
                let rec = &s.record;
                let parsed = (|| {
                    Some((
                        header(rec, "tenant")?.to_owned(),
                        ComponentVersion {
                            name: header(rec, "name")?.to_owned(),
                            version: header(rec, "version")?.parse().ok()?,
                            world: header(rec, "world")?.to_owned(),
                            sha256: header(rec, "sha256")?.to_owned(),
                            size: rec.value_bytes().len(),
                            created_ms: rec.timestamp,
                            offset: s.offset,
                        },
                    ))
                })();
                match parsed {
                    Some((tenant, v)) => versions
                        .entry((tenant, v.name.clone()))
                        .or_default()
                        .push(v),
                    None => {
                        tracing::warn!(offset = s.offset, "skipping an unreadable component record")
                    }
                }
            }
            offset = r.next_offset;
        }
        Ok(Components {
            log,
            runtime,
            versions: RwLock::new(versions),
            compiled: Mutex::new(HashMap::new()),
            uploads: tokio::sync::Mutex::new(()),
            compiling: tokio::sync::Mutex::new(()),
        })
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Compile (or fetch compiled) bytes; CPU-heavy the first time, so off the async threads.
    pub async fn compile(&self, wasm: Bytes) -> Result<Arc<Compiled>, ApiError> {
        let hash = sluice_runtime::content_hash(&wasm);
        if let Some(c) = self.compiled.lock().expect("compiled").get(&hash) {
            return Ok(c.clone());
        }
        // One compile at a time: requests arriving together for a component not yet compiled
        // wait for the first one's result instead of each compiling it (seconds of CPU each).
        let _one_at_a_time = self.compiling.lock().await;
        if let Some(c) = self.compiled.lock().expect("compiled").get(&hash) {
            return Ok(c.clone());
        }
        let runtime = self.runtime.clone();
        let compiled = tokio::task::spawn_blocking(move || runtime.compile(&wasm))
            .await
            .map_err(|e| ApiError::internal(format!("compiling: {e}")))?
            .map_err(|e| {
                ApiError::new(http::StatusCode::UNPROCESSABLE_ENTITY, 42211, e.to_string())
            })?;
        self.compiled
            .lock()
            .expect("compiled")
            .insert(hash, compiled.clone());
        Ok(compiled)
    }

    /// Upload a new version of a tenant's component. The same bytes as the newest version
    /// return that version (`false`: nothing new was stored).
    pub async fn upload(
        &self,
        tenant: &str,
        name: &str,
        wasm: Bytes,
        required: Option<World>,
    ) -> Result<(ComponentVersion, bool), ApiError> {
        if sluice_builtins::builtin(name).is_some() {
            return Err(ApiError::invalid(format!(
                "`{name}` is a built-in component's name; choose another"
            )));
        }
        let compiled = self.compile(wasm.clone()).await?;
        let world = {
            let runtime = self.runtime.clone();
            let compiled = compiled.clone();
            tokio::task::spawn_blocking(move || match required {
                Some(w) => compiled.check_world(&runtime, w).map(|()| w),
                None => compiled.world(&runtime).ok_or_else(|| {
                    sluice_runtime::RuntimeError::WrongWorld {
                        world: "validator|enricher|router|transformer",
                        reason: "it exports none of the sluice:gateway stage interfaces \
                                 (validate, enrich, route, transform) with imports the host provides"
                            .into(),
                    }
                }),
            })
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(|e| ApiError::new(http::StatusCode::UNPROCESSABLE_ENTITY, 42211, e.to_string()))?
        };
        let _serial = self.uploads.lock().await;
        let key = (tenant.to_owned(), name.to_owned());
        let newest = self
            .versions
            .read()
            .expect("versions")
            .get(&key)
            .and_then(|v| v.last().cloned());
        if let Some(n) = &newest
            && n.sha256 == compiled.hash
        {
            return Ok((n.clone(), false));
        }
        let version = newest.map_or(1, |n| n.version + 1);
        let created_ms = now_ms();
        let record = Record {
            key: Some(Bytes::from(format!("{tenant}/{name}"))),
            value: Some(wasm.clone()),
            headers: vec![
                ("tenant".into(), Bytes::from(tenant.to_owned())),
                ("name".into(), Bytes::from(name.to_owned())),
                ("version".into(), Bytes::from(version.to_string())),
                ("world".into(), Bytes::from(world.name())),
                ("sha256".into(), Bytes::from(compiled.hash.clone())),
            ],
            timestamp: created_ms,
        };
        let stored = self
            .log
            .append(
                COMPONENTS_TOPIC,
                vec![PartitionAppend {
                    partition: 0,
                    records: EncodedRecords::encode(&[record], Compression::Zstd),
                    event_ids: vec![],
                }],
            )
            .await
            .map_err(|e| from_log(e, COMPONENTS_TOPIC))?;
        let v = ComponentVersion {
            name: name.to_owned(),
            version,
            world: world.name().to_owned(),
            sha256: compiled.hash.clone(),
            size: wasm.len(),
            created_ms,
            offset: stored[0][0].offset,
        };
        self.versions
            .write()
            .expect("versions")
            .entry(key)
            .or_default()
            .push(v.clone());
        Ok((v, true))
    }

    /// A tenant's components, newest version last in each list.
    pub fn list(&self, tenant: &str) -> Vec<Vec<ComponentVersion>> {
        let versions = self.versions.read().expect("versions");
        let mut out: Vec<Vec<ComponentVersion>> = versions
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|(_, v)| v.clone())
            .collect();
        out.sort_by(|a, b| a[0].name.cmp(&b[0].name));
        out
    }

    pub fn versions(&self, tenant: &str, name: &str) -> Option<Vec<ComponentVersion>> {
        self.versions
            .read()
            .expect("versions")
            .get(&(tenant.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Resolve a reference to a compiled component.
    pub async fn resolve(
        &self,
        tenant: &str,
        reference: &str,
    ) -> Result<(Resolved, Arc<Compiled>), ApiError> {
        if let Some(b) = sluice_builtins::builtin(reference) {
            let compiled = self.compile(Bytes::from_static(b.wasm)).await?;
            let world = World::parse(b.world).expect("built-ins name their world");
            return Ok((
                Resolved {
                    label: b.name.to_owned(),
                    world,
                    hash: compiled.hash.clone(),
                },
                compiled,
            ));
        }
        let (name, version) = match reference.split_once('@') {
            Some((n, v)) => (
                n,
                Some(v.parse::<u32>().map_err(|_| {
                    ApiError::invalid(format!(
                        "`{reference}`: the version after @ must be a number"
                    ))
                })?),
            ),
            None => (reference, None),
        };
        let not_found = || {
            ApiError::new(
                http::StatusCode::NOT_FOUND,
                40403,
                format!("component `{reference}` does not exist"),
            )
        };
        let v = {
            let versions = self.versions.read().expect("versions");
            let list = versions
                .get(&(tenant.to_owned(), name.to_owned()))
                .ok_or_else(not_found)?;
            match version {
                Some(n) => list.iter().find(|v| v.version == n).cloned(),
                None => list.last().cloned(),
            }
            .ok_or_else(not_found)?
        };
        let r = self
            .log
            .read(COMPONENTS_TOPIC, 0, v.offset, 1, MAX_COMPONENT_BYTES * 2)
            .await
            .map_err(|e| from_log(e, COMPONENTS_TOPIC))?;
        let record = r
            .records
            .into_iter()
            .find(|s| s.offset == v.offset)
            .ok_or_else(|| {
                ApiError::internal(format!("component `{reference}` is missing from the log"))
            })?;
        let compiled = self
            .compile(record.record.value.unwrap_or_default())
            .await?;
        Ok((
            Resolved {
                label: format!("{}@{}", v.name, v.version),
                world: World::parse(&v.world).ok_or_else(|| ApiError::internal("unknown world"))?,
                hash: compiled.hash.clone(),
            },
            compiled,
        ))
    }
}
