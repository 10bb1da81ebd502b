//! Per-tenant data keys for sealed (PHI) topics, envelope-encrypted.
//!
//! Each tenant with a sealed topic has data keys (random AES-256 keys, numbered from 1); the
//! newest seals new batches, every one still opens what it sealed. A data key is stored only
//! wrapped (AES-256-GCM) by the key-encryption key (KEK), in `_data_keys` (compacted, keyed
//! `{tenant}/{id}`); the KEK comes from the configuration or the environment and is never
//! stored in the log. Rotating the data key (`rotate`) seals new data with a new key; rotating
//! the KEK is giving the new one as current and the old one as previous: at start every data
//! key the old one wrapped is wrapped again with the new one.
//!
//! A data key no configured KEK unwraps makes reads of what it sealed fail with a clear error
//! (`LogError::Sealed`), never plaintext or garbage.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sluice_log::sealing::{DataKey, Keyring};
use sluice_log::{Log, LogError};

use crate::error::ApiError;
use crate::internal_topics;

pub const DATA_KEYS_TOPIC: &str = "_data_keys";
/// Data keys a tenant may have (each rotation adds one; all are kept to open old data).
pub const MAX_DATA_KEYS: usize = 1000;

/// A key-encryption key: 32 bytes (given as base64).
pub struct Kek {
    key: DataKey,
    /// The first bytes of its SHA-256, hex: which KEK wrapped a data key.
    pub id: String,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kek({})", self.id)
    }
}

impl Kek {
    pub fn from_base64(text: &str) -> Result<Kek, String> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|e| format!("a key-encryption key is 32 bytes of base64: {e}"))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| format!("a key-encryption key is 32 bytes, not {}", b.len()))?;
        Ok(Kek::new(&key))
    }

    pub fn new(key: &[u8; 32]) -> Kek {
        use sha2::Digest;
        let id = sha2::Sha256::digest(key)[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Kek {
            key: DataKey::new(0, key),
            id,
        }
    }

    /// A new random KEK, as base64 (what a first start writes when none is configured).
    pub fn generate() -> String {
        STANDARD.encode(rand::random::<[u8; 32]>())
    }
}

pub struct DataKeys {
    log: Log,
    /// The current KEK first, then previous ones (read only).
    keks: Vec<Kek>,
    /// Per tenant, its data keys, oldest first.
    keys: RwLock<HashMap<String, Vec<Arc<DataKey>>>>,
    /// Data keys no KEK unwraps: why, per (tenant, id).
    unavailable: RwLock<HashMap<(String, u32), String>>,
}

fn aad(tenant: &str, id: u32) -> Vec<u8> {
    format!("{tenant}/{id}").into_bytes()
}

impl DataKeys {
    pub async fn load(log: Log, keks: Vec<Kek>) -> Result<DataKeys, LogError> {
        assert!(!keks.is_empty(), "a current key-encryption key");
        internal_topics::ensure(
            &log,
            DATA_KEYS_TOPIC,
            "tenants' data keys, wrapped by the key-encryption key",
            &[internal_topics::compact()],
        )
        .await?;
        let mut stored: HashMap<(String, u32), Value> = HashMap::new();
        internal_topics::replay(&log, DATA_KEYS_TOPIC, |_, r| {
            let Some((tenant, id)) = r
                .key
                .as_ref()
                .and_then(|k| std::str::from_utf8(k).ok())
                .and_then(|k| k.rsplit_once('/'))
                .and_then(|(t, i)| Some((t.to_owned(), i.parse::<u32>().ok()?)))
            else {
                return;
            };
            if let Ok(v) = serde_json::from_slice::<Value>(r.value_bytes()) {
                stored.insert((tenant, id), v);
            }
        })
        .await?;
        let keys = DataKeys {
            log,
            keks,
            keys: RwLock::new(HashMap::new()),
            unavailable: RwLock::new(HashMap::new()),
        };
        let mut rewrap = Vec::new();
        let mut sorted: Vec<_> = stored.into_iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        for ((tenant, id), v) in sorted {
            let wrapped = v["wrapped"]
                .as_str()
                .and_then(|w| STANDARD.decode(w).ok())
                .unwrap_or_default();
            let opened = keys.keks.iter().enumerate().find_map(|(i, kek)| {
                kek.key
                    .open(&aad(&tenant, id), &wrapped)
                    .ok()
                    .map(|k| (i, k))
            });
            match opened.and_then(|(i, k)| Some((i, <[u8; 32]>::try_from(k).ok()?))) {
                Some((i, raw)) => {
                    if i > 0 {
                        rewrap.push((tenant.clone(), id, raw));
                    }
                    keys.keys
                        .write()
                        .expect("keys")
                        .entry(tenant)
                        .or_default()
                        .push(Arc::new(DataKey::new(id, &raw)));
                }
                None => {
                    keys.unavailable.write().expect("unavailable").insert(
                        (tenant.clone(), id),
                        format!(
                            "data key {id} of tenant `{tenant}` was wrapped by key-encryption key {} and none configured unwraps it",
                            v["kek"].as_str().unwrap_or("?")
                        ),
                    );
                }
            }
        }
        for (tenant, id, raw) in rewrap {
            keys.store(&tenant, id, &raw)
                .await
                .map_err(|e| LogError::Storage(e.message))?;
        }
        Ok(keys)
    }

    async fn store(&self, tenant: &str, id: u32, raw: &[u8; 32]) -> Result<(), ApiError> {
        let kek = &self.keks[0];
        let wrapped = kek.key.seal(&aad(tenant, id), raw);
        internal_topics::append(
            &self.log,
            DATA_KEYS_TOPIC,
            format!("{tenant}/{id}"),
            serde_json::to_vec(&json!({"wrapped": STANDARD.encode(&wrapped), "kek": kek.id,
                                        "created_ms": crate::now_ms()}))
            .expect("JSON"),
        )
        .await
    }

    /// Make sure the tenant has a data key (before it gets a sealed topic).
    pub async fn ensure(&self, tenant: &str) -> Result<(), ApiError> {
        let has = self
            .keys
            .read()
            .expect("keys")
            .get(tenant)
            .is_some_and(|k| !k.is_empty());
        if has {
            return Ok(());
        }
        self.rotate(tenant).await.map(|_| ())
    }

    /// A new data key for the tenant: what seals from now on. Its id.
    pub async fn rotate(&self, tenant: &str) -> Result<u32, ApiError> {
        let id = {
            let keys = self.keys.read().expect("keys");
            if keys.get(tenant).map_or(0, Vec::len) >= MAX_DATA_KEYS {
                return Err(ApiError::conflict(
                    40911,
                    format!("a tenant has at most {MAX_DATA_KEYS} data keys"),
                ));
            }
            let unavailable = self.unavailable.read().expect("unavailable");
            let newest = keys.get(tenant).and_then(|k| k.last()).map_or(0, |k| k.id);
            let lost = unavailable
                .keys()
                .filter(|(t, _)| t == tenant)
                .map(|(_, i)| *i)
                .max()
                .unwrap_or(0);
            newest.max(lost) + 1
        };
        let raw: [u8; 32] = rand::random();
        self.store(tenant, id, &raw).await?;
        self.keys
            .write()
            .expect("keys")
            .entry(tenant.to_owned())
            .or_default()
            .push(Arc::new(DataKey::new(id, &raw)));
        Ok(id)
    }

    /// The ids of the tenant's data keys (the last seals).
    pub fn ids(&self, tenant: &str) -> Vec<u32> {
        self.keys
            .read()
            .expect("keys")
            .get(tenant)
            .map(|k| k.iter().map(|k| k.id).collect())
            .unwrap_or_default()
    }
}

fn tenant_of(topic: &str) -> &str {
    topic.split_once('/').map_or(topic, |(t, _)| t)
}

impl Keyring for DataKeys {
    fn sealing_key(&self, topic: &str) -> Result<Arc<DataKey>, String> {
        let tenant = tenant_of(topic);
        self.keys
            .read()
            .expect("keys")
            .get(tenant)
            .and_then(|k| k.last().cloned())
            .ok_or_else(|| format!("tenant `{tenant}` has no data key for its sealed topics"))
    }

    fn opening_key(&self, topic: &str, id: u32) -> Result<Arc<DataKey>, String> {
        let tenant = tenant_of(topic);
        if let Some(k) = self
            .keys
            .read()
            .expect("keys")
            .get(tenant)
            .and_then(|k| k.iter().find(|k| k.id == id).cloned())
        {
            return Ok(k);
        }
        Err(self
            .unavailable
            .read()
            .expect("unavailable")
            .get(&(tenant.to_owned(), id))
            .cloned()
            .unwrap_or_else(|| format!("tenant `{tenant}` has no data key {id}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kek_must_be_32_bytes_of_base64() {
        assert!(Kek::from_base64("not base64!").is_err());
        assert!(
            Kek::from_base64(&STANDARD.encode([1u8; 16]))
                .unwrap_err()
                .contains("32 bytes, not 16")
        );
        let generated = Kek::generate();
        assert_eq!(Kek::from_base64(&generated).unwrap().id.len(), 16);
    }

    #[tokio::test]
    async fn keys_survive_restarts_open_by_id_and_are_bounded_in_number() {
        let dir = tempfile::tempdir().unwrap();
        let log = crate::test_log(dir.path()).await;
        let keys = DataKeys::load(log.clone(), vec![Kek::new(&[1; 32])])
            .await
            .unwrap();
        assert!(keys.sealing_key("t/phi").is_err(), "no key before ensure");
        keys.ensure("t").await.unwrap();
        keys.ensure("t").await.unwrap();
        assert_eq!(keys.ids("t"), [1]);
        let first = keys.sealing_key("t/phi").unwrap();
        let sealed = first.seal(b"a", b"secret");
        for _ in 1..MAX_DATA_KEYS {
            keys.rotate("t").await.unwrap();
        }
        let refused = keys.rotate("t").await.unwrap_err();
        assert_eq!(refused.error_code, 40911);
        assert_eq!(keys.sealing_key("t/phi").unwrap().id, MAX_DATA_KEYS as u32);
        log.close().await;
        // Again, with the KEK: every key is back and opens by its id.
        let log = crate::test_log(dir.path()).await;
        let again = DataKeys::load(log.clone(), vec![Kek::new(&[1; 32])])
            .await
            .unwrap();
        assert_eq!(again.ids("t").len(), MAX_DATA_KEYS);
        let k = again.opening_key("t/phi", 1).unwrap();
        assert_eq!(k.open(b"a", &sealed).unwrap(), b"secret");
        assert!(again.opening_key("other/phi", 1).is_err(), "per tenant");
        log.close().await;
        // With another KEK: unavailable, and said why.
        let log = crate::test_log(dir.path()).await;
        let wrong = DataKeys::load(log.clone(), vec![Kek::new(&[2; 32])])
            .await
            .unwrap();
        assert!(
            wrong
                .opening_key("t/phi", 1)
                .unwrap_err()
                .contains("none configured unwraps it")
        );
        log.close().await;
    }
}
