//! Tenants, API keys and who may do what.
//!
//! The directory lives in the internal topic `_auth` of the log (one record per tenant or key,
//! the newest record per key wins, as in a compacted topic), so it survives restarts and moves
//! with the object store. Keys are `sk_<id>_<secret>`; only an Argon2id hash of the secret is
//! stored. A verified secret's SHA-256 is remembered in memory so the slow hash is paid once per
//! key and process, and compared in constant time.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, RwLock};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sluice_log::{Log, LogError};
use subtle::ConstantTimeEq;

use crate::clock::now_ms;
use crate::error::ApiError;

/// The internal topic holding the directory.
pub const AUTH_TOPIC: &str = "_auth";
pub const DEFAULT_TENANT: &str = "default";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything on matching topics: create, configure, delete, produce, consume; on `*`
    /// also the tenant's keys.
    Admin,
    Produce,
    Consume,
    /// Read topics that require redaction (see `redaction.component`) as stored.
    Phi,
}

/// A role on the topics whose names match a pattern (`*` matches any run of characters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    pub role: Role,
    #[serde(default = "all_topics")]
    pub topics: String,
}

fn all_topics() -> String {
    "*".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tenant {
    pub name: String,
    pub created_ms: i64,
    #[serde(default)]
    pub description: String,
    /// The tenant's own quota limits (unset ones fall back to the server's defaults).
    #[serde(default, skip_serializing_if = "is_default")]
    pub quotas: crate::quota_limits::QuotaLimits,
}

fn is_default(q: &crate::quota_limits::QuotaLimits) -> bool {
    *q == crate::quota_limits::QuotaLimits::default()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: String,
    pub tenant: String,
    /// Argon2id PHC string of the secret.
    pub hash: String,
    pub scopes: Vec<Scope>,
    /// May manage tenants and every tenant's keys (the bootstrap key).
    #[serde(default)]
    pub system: bool,
    pub created_ms: i64,
    #[serde(default)]
    pub revoked_ms: Option<i64>,
    #[serde(default)]
    pub description: String,
    /// The SHA-256 of the DER client certificate this key is bound to (64 lowercase hex
    /// digits): a connection presenting that certificate (verified against the listener's
    /// client CA) authenticates as this key without a secret, and the key's secret is accepted
    /// only over such a connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_sha256: Option<String>,
}

/// A client certificate's fingerprint as keys are bound to it: 64 lowercase hex digits of the
/// SHA-256 of its DER bytes. Written with or without `:` separators, in either case.
pub fn normalize_fingerprint(text: &str) -> Result<String, ApiError> {
    let hex: String = text
        .trim()
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex)
    } else {
        Err(ApiError::invalid(
            "client_cert_sha256 must be the SHA-256 of the certificate's DER bytes: 64 hex digits (`:` separators allowed)",
        ))
    }
}

/// The fingerprint of a DER certificate, as [`normalize_fingerprint`] writes it.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Who is calling, once their key checked out.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: String,
    pub tenant: String,
    pub scopes: Vec<Scope>,
    pub system: bool,
}

impl Principal {
    /// May this caller act as `role` on `topic`? Admin implies every role.
    pub fn can(&self, role: Role, topic: &str) -> bool {
        self.scopes
            .iter()
            .any(|s| (s.role == role || s.role == Role::Admin) && glob(&s.topics, topic))
    }

    /// Tenant administration: admin on every topic.
    pub fn is_tenant_admin(&self) -> bool {
        self.scopes
            .iter()
            .any(|s| s.role == Role::Admin && s.topics == "*")
    }

    pub fn require(&self, role: Role, topic: &str) -> Result<(), ApiError> {
        if self.can(role, topic) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "key {} may not {} topic `{topic}`",
                self.key_id,
                match role {
                    Role::Admin => "administer",
                    Role::Produce => "produce to",
                    Role::Consume => "consume from",
                    Role::Phi => "read unredacted",
                }
            )))
        }
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            pi += 1;
            mark = ti;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

pub fn valid_tenant_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[derive(Default)]
struct Entries {
    tenants: BTreeMap<String, Tenant>,
    keys: BTreeMap<String, ApiKey>,
    /// Unrevoked keys by the client certificate they are bound to.
    by_cert: HashMap<String, String>,
}

impl Entries {
    /// The newest record per tenant or key wins, as in a compacted topic.
    fn apply(&mut self, entry: Entry) {
        match entry {
            Entry::Tenant(t) => {
                self.tenants.insert(t.name.clone(), t);
            }
            Entry::Key(k) => {
                if let Some(old) = self
                    .keys
                    .get(&k.id)
                    .and_then(|o| o.client_cert_sha256.as_ref())
                    && self.by_cert.get(old) == Some(&k.id)
                {
                    self.by_cert.remove(old);
                }
                if let Some(cert) = &k.client_cert_sha256
                    && k.revoked_ms.is_none()
                {
                    self.by_cert.insert(cert.clone(), k.id.clone());
                }
                self.keys.insert(k.id.clone(), k);
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Entry {
    Tenant(Tenant),
    Key(ApiKey),
}

pub struct Directory {
    log: Log,
    entries: RwLock<Entries>,
    /// SHA-256 of secrets that passed Argon2 verification, by key id.
    verified: Mutex<HashMap<String, [u8; 32]>>,
    /// Serializes check-then-write changes (a tenant created twice at once).
    writes: tokio::sync::Mutex<()>,
    /// Argon2 verifications running at once (each takes tens of ms of a core): wrong secrets
    /// queue here instead of taking the blocking pool.
    verifying: tokio::sync::Semaphore,
    /// Recent failed verifications per key id: (window start ms, failures in it).
    failures: Mutex<HashMap<String, (i64, u32)>>,
    /// Bumped by every revocation: what a key opened (streams) ends when its key is revoked.
    revocations: tokio::sync::watch::Sender<u64>,
}

/// Argon2 verifications at once.
const VERIFYING_AT_ONCE: usize = 2;
/// Failed verifications one key id may have per window before it is refused unverified.
const FAILURES_PER_WINDOW: u32 = 10;
const FAILURE_WINDOW_MS: i64 = 60_000;
/// Key ids whose failures are remembered; past it the oldest windows are forgotten.
const FAILURES_KEPT: usize = 100_000;

/// A newly created key; the only moment its secret is known.
pub struct IssuedKey {
    pub key: ApiKey,
    pub secret: String,
}

impl IssuedKey {
    pub fn token(&self) -> String {
        format!("sk_{}_{}", self.key.id, self.secret)
    }
}

impl Directory {
    /// Load the directory from the log, creating its topic on first start.
    pub async fn load(log: Log) -> Result<Directory, LogError> {
        crate::internal_topics::ensure(
            &log,
            AUTH_TOPIC,
            "tenants and API keys",
            &[crate::internal_topics::compact()],
        )
        .await?;
        let mut entries = Entries::default();
        let (mut offset, end) = log.offsets(AUTH_TOPIC, 0)?;
        while offset < end {
            let r = log.read(AUTH_TOPIC, 0, offset, 10_000, 16 << 20).await?;
            for s in &r.records {
                match serde_json::from_slice::<Entry>(s.record.value_bytes()) {
                    Ok(entry) => entries.apply(entry),
                    Err(e) => {
                        tracing::warn!(offset = s.offset, error = %e, "skipping unreadable directory record")
                    }
                }
            }
            offset = r.next_offset;
        }
        Ok(Directory {
            log,
            entries: RwLock::new(entries),
            verified: Mutex::new(HashMap::new()),
            writes: tokio::sync::Mutex::new(()),
            verifying: tokio::sync::Semaphore::new(VERIFYING_AT_ONCE),
            failures: Mutex::new(HashMap::new()),
            revocations: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Append an entry to the directory topic (durably), then apply it in memory.
    async fn write(&self, entry: Entry) -> Result<(), ApiError> {
        let key = match &entry {
            Entry::Tenant(t) => format!("tenant/{}", t.name),
            Entry::Key(k) => format!("key/{}", k.id),
        };
        crate::internal_topics::append(
            &self.log,
            AUTH_TOPIC,
            key,
            serde_json::to_vec(&entry).expect("entry serializes"),
        )
        .await?;
        self.entries.write().expect("entries").apply(entry);
        Ok(())
    }

    pub fn tenant_exists(&self, name: &str) -> bool {
        self.entries
            .read()
            .expect("entries")
            .tenants
            .contains_key(name)
    }

    pub fn tenants(&self) -> Vec<Tenant> {
        self.entries
            .read()
            .expect("entries")
            .tenants
            .values()
            .cloned()
            .collect()
    }

    /// First start: the `default` tenant and a system admin key. `None` if tenants exist.
    pub async fn bootstrap(&self) -> Result<Option<IssuedKey>, ApiError> {
        if !self.tenants().is_empty() {
            return Ok(None);
        }
        self.create_tenant(DEFAULT_TENANT, "created on first start")
            .await?;
        let key = self
            .create_key(
                DEFAULT_TENANT,
                vec![Scope {
                    role: Role::Admin,
                    topics: "*".into(),
                }],
                true,
                "bootstrap admin key",
            )
            .await?;
        Ok(Some(key))
    }

    pub async fn create_tenant(&self, name: &str, description: &str) -> Result<Tenant, ApiError> {
        if !valid_tenant_name(name) {
            return Err(ApiError::invalid(format!(
                "invalid tenant name `{name}`: 1-64 characters of [a-z0-9_-], starting with a letter or digit"
            )));
        }
        let _guard = self.writes.lock().await;
        if self.tenant_exists(name) {
            return Err(ApiError::conflict(
                40902,
                format!("tenant `{name}` already exists"),
            ));
        }
        let tenant = Tenant {
            name: name.into(),
            created_ms: now_ms(),
            description: description.into(),
            quotas: Default::default(),
        };
        self.write(Entry::Tenant(tenant.clone())).await?;
        Ok(tenant)
    }

    /// The tenant's own quota limits (default: none set).
    pub fn quotas(&self, tenant: &str) -> crate::quota_limits::QuotaLimits {
        let entries = self.entries.read().expect("entries");
        entries
            .tenants
            .get(tenant)
            .map(|t| t.quotas)
            .unwrap_or_default()
    }

    /// Replace the tenant's quota limits, durably.
    pub async fn set_quotas(
        &self,
        tenant: &str,
        quotas: crate::quota_limits::QuotaLimits,
    ) -> Result<Tenant, ApiError> {
        let _guard = self.writes.lock().await;
        let mut t = self
            .tenants()
            .into_iter()
            .find(|t| t.name == tenant)
            .ok_or_else(|| ApiError::not_found(format!("tenant `{tenant}` does not exist")))?;
        t.quotas = quotas;
        self.write(Entry::Tenant(t.clone())).await?;
        Ok(t)
    }

    pub async fn create_key(
        &self,
        tenant: &str,
        scopes: Vec<Scope>,
        system: bool,
        description: &str,
    ) -> Result<IssuedKey, ApiError> {
        self.create_bound_key(tenant, scopes, system, description, None)
            .await
    }

    /// [`Directory::create_key`], bound to a client certificate when `client_cert_sha256` is
    /// given (see [`ApiKey::client_cert_sha256`]).
    pub async fn create_bound_key(
        &self,
        tenant: &str,
        scopes: Vec<Scope>,
        system: bool,
        description: &str,
        client_cert_sha256: Option<&str>,
    ) -> Result<IssuedKey, ApiError> {
        let client_cert_sha256 = client_cert_sha256.map(normalize_fingerprint).transpose()?;
        if !self.tenant_exists(tenant) {
            return Err(ApiError::not_found(format!(
                "tenant `{tenant}` does not exist"
            )));
        }
        if scopes.is_empty() {
            return Err(ApiError::invalid("a key needs at least one scope"));
        }
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let secret = URL_SAFE_NO_PAD.encode(raw);
        let mut id_raw = [0u8; 8];
        rand::rng().fill_bytes(&mut id_raw);
        let id: String = id_raw.iter().map(|b| format!("{b:02x}")).collect();
        let hash = {
            let secret = secret.clone();
            tokio::task::spawn_blocking(move || {
                let mut salt = [0u8; 16];
                rand::rng().fill_bytes(&mut salt);
                let salt = SaltString::encode_b64(&salt)?;
                Argon2::default()
                    .hash_password(secret.as_bytes(), &salt)
                    .map(|h| h.to_string())
            })
            .await
            .expect("hashing task")
            .map_err(|e| ApiError::internal(format!("hashing the key: {e}")))?
        };
        let key = ApiKey {
            id: id.clone(),
            tenant: tenant.into(),
            hash,
            scopes,
            system,
            created_ms: now_ms(),
            revoked_ms: None,
            description: description.into(),
            client_cert_sha256,
        };
        let _guard = self.writes.lock().await;
        self.check_cert_free(&key)?;
        self.write(Entry::Key(key.clone())).await?;
        Ok(IssuedKey { key, secret })
    }

    /// Bind the key `id` to a client certificate, or (`None`) unbind it.
    pub async fn bind_client_cert(
        &self,
        id: &str,
        client_cert_sha256: Option<&str>,
    ) -> Result<ApiKey, ApiError> {
        let client_cert_sha256 = client_cert_sha256.map(normalize_fingerprint).transpose()?;
        let _guard = self.writes.lock().await;
        let mut key = self
            .key(id)
            .ok_or_else(|| ApiError::not_found(format!("key `{id}` does not exist")))?;
        if key.revoked_ms.is_some() {
            return Err(ApiError::invalid(format!("key `{id}` is revoked")));
        }
        key.client_cert_sha256 = client_cert_sha256;
        self.check_cert_free(&key)?;
        self.write(Entry::Key(key.clone())).await?;
        Ok(key)
    }

    /// One certificate names one key: refuse `key`'s binding when another unrevoked key has it.
    fn check_cert_free(&self, key: &ApiKey) -> Result<(), ApiError> {
        let Some(cert) = &key.client_cert_sha256 else {
            return Ok(());
        };
        match self.entries.read().expect("entries").by_cert.get(cert) {
            Some(holder) if *holder != key.id => Err(ApiError::conflict(
                40910,
                format!("another key ({holder}) is bound to this client certificate"),
            )),
            _ => Ok(()),
        }
    }

    /// Keys of one tenant (all tenants for `None`), hashes included: callers strip them.
    pub fn keys(&self, tenant: Option<&str>) -> Vec<ApiKey> {
        let e = self.entries.read().expect("entries");
        e.keys
            .values()
            .filter(|k| tenant.is_none_or(|t| k.tenant == t))
            .cloned()
            .collect()
    }

    pub fn key(&self, id: &str) -> Option<ApiKey> {
        self.entries.read().expect("entries").keys.get(id).cloned()
    }

    pub async fn revoke(&self, id: &str) -> Result<ApiKey, ApiError> {
        let _guard = self.writes.lock().await;
        let mut key = self
            .key(id)
            .ok_or_else(|| ApiError::not_found(format!("key `{id}` does not exist")))?;
        if key.revoked_ms.is_none() {
            key.revoked_ms = Some(now_ms());
            self.write(Entry::Key(key.clone())).await?;
            self.verified.lock().expect("verified").remove(id);
            self.revocations.send_modify(|n| *n += 1);
        }
        Ok(key)
    }

    /// Who a refused `Authorization` header claims to be: its key id, and that key's tenant
    /// when the key exists (for the audit trail; nothing is verified).
    pub fn claimed(&self, header: Option<&str>) -> (Option<String>, Option<String>) {
        let Some((id, _)) = header.and_then(parse_credentials) else {
            return (None, None);
        };
        let tenant = self.key(&id).map(|k| k.tenant);
        (Some(id), tenant)
    }

    /// Changes whenever a key is revoked (then ask [`Directory::is_revoked`]).
    pub fn revocations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    /// Is the key `id` revoked (or unknown)?
    pub fn is_revoked(&self, id: &str) -> bool {
        self.key(id).is_none_or(|k| k.revoked_ms.is_some())
    }

    /// Check an `Authorization` header value, and the fingerprint of the client certificate
    /// the connection presented (verified against the listener's client CA), if any. Without
    /// a header, a certificate bound to a key authenticates as that key; a key bound to a
    /// certificate is accepted only over a connection presenting it.
    pub async fn authenticate(
        &self,
        header: Option<&str>,
        client_cert: Option<&str>,
    ) -> Result<Principal, ApiError> {
        let Some(header) = header else {
            let Some(cert) = client_cert else {
                return Err(ApiError::unauthorized(
                    "missing Authorization header (Bearer <key> or Basic <id:secret>)",
                ));
            };
            let bound = {
                let entries = self.entries.read().expect("entries");
                entries
                    .by_cert
                    .get(cert)
                    .and_then(|id| entries.keys.get(id))
                    .filter(|k| k.revoked_ms.is_none())
                    .cloned()
            };
            let key = bound.ok_or_else(|| {
                ApiError::new(
                    http::StatusCode::UNAUTHORIZED,
                    40103,
                    format!(
                        "no Authorization header, and the client certificate (sha256 {cert}) is bound to no key"
                    ),
                )
            })?;
            return Ok(Principal {
                key_id: key.id,
                tenant: key.tenant,
                scopes: key.scopes,
                system: key.system,
            });
        };
        let (id, secret) = parse_credentials(header)
            .ok_or_else(|| ApiError::unauthorized("malformed Authorization header"))?;
        let invalid = || ApiError::unauthorized("invalid API key");
        let key = self.key(&id).ok_or_else(invalid)?;
        if key.revoked_ms.is_some() {
            return Err(ApiError::unauthorized("this API key was revoked"));
        }
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let cached = self.verified.lock().expect("verified").get(&id).copied();
        let ok = match cached {
            Some(known) => bool::from(known.ct_eq(&digest)),
            None => {
                self.check_failures(&id)?;
                let _turn = self.verifying.acquire().await.expect("never closed");
                let hash = key.hash.clone();
                let ok = tokio::task::spawn_blocking(move || {
                    PasswordHash::new(&hash).is_ok_and(|h| {
                        Argon2::default()
                            .verify_password(secret.as_bytes(), &h)
                            .is_ok()
                    })
                })
                .await
                .expect("verification task");
                if ok {
                    self.verified
                        .lock()
                        .expect("verified")
                        .insert(id.clone(), digest);
                } else {
                    self.failed(&id);
                }
                ok
            }
        };
        if !ok {
            return Err(invalid());
        }
        if let Some(bound) = &key.client_cert_sha256
            && client_cert != Some(bound.as_str())
        {
            return Err(ApiError::new(
                http::StatusCode::UNAUTHORIZED,
                40103,
                "this key is bound to a client certificate: send it over a connection presenting that certificate",
            ));
        }
        Ok(Principal {
            key_id: key.id,
            tenant: key.tenant,
            scopes: key.scopes,
            system: key.system,
        })
    }
}

impl Directory {
    /// Refuse, without verifying, a key id with too many recent failures (429).
    fn check_failures(&self, id: &str) -> Result<(), ApiError> {
        let failures = self.failures.lock().expect("failures");
        match failures.get(id) {
            Some((since, n))
                if *n >= FAILURES_PER_WINDOW && now_ms() - since < FAILURE_WINDOW_MS =>
            {
                let wait_s = (FAILURE_WINDOW_MS - (now_ms() - since)) / 1000 + 1;
                Err(ApiError::new(
                    http::StatusCode::TOO_MANY_REQUESTS,
                    42901,
                    format!("too many failed attempts with this key id; try again in {wait_s} s"),
                )
                .retry_after(wait_s as u64))
            }
            _ => Ok(()),
        }
    }

    fn failed(&self, id: &str) {
        let now = now_ms();
        let mut failures = self.failures.lock().expect("failures");
        if failures.len() >= FAILURES_KEPT {
            failures.retain(|_, (since, _)| now - *since < FAILURE_WINDOW_MS);
            if failures.len() >= FAILURES_KEPT {
                failures.clear();
            }
        }
        let entry = failures.entry(id.to_owned()).or_insert((now, 0));
        if now - entry.0 >= FAILURE_WINDOW_MS {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }
}

/// `Bearer sk_<id>_<secret>`, or `Basic base64(<id>:<secret>)` as Confluent clients send it
/// (the password may also be the whole `sk_...` key).
fn parse_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, value) = header.trim().split_once(' ')?;
    let value = value.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return split_token(value);
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = String::from_utf8(STANDARD.decode(value).ok()?).ok()?;
        let (user, pass) = decoded.split_once(':')?;
        if let Some((id, secret)) = split_token(pass) {
            return (id == user.trim_start_matches("sk_") || user.is_empty())
                .then_some((id, secret));
        }
        return Some((user.trim_start_matches("sk_").to_owned(), pass.to_owned()));
    }
    None
}

fn split_token(token: &str) -> Option<(String, String)> {
    let rest = token.strip_prefix("sk_")?;
    let (id, secret) = rest.split_at_checked(16)?;
    let secret = secret.strip_prefix('_')?;
    (id.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty())
        .then(|| (id.to_owned(), secret.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wrong_secrets_for_one_key_id_are_refused_unverified_after_a_few() {
        let dir = tempfile::tempdir().unwrap();
        let log = crate::test_log(dir.path()).await;
        let directory = Directory::load(log.clone()).await.unwrap();
        let admin = directory.bootstrap().await.unwrap().unwrap();
        let wrong = format!("Bearer sk_{}_{}", admin.key.id, "guess");
        for _ in 0..FAILURES_PER_WINDOW {
            let e = directory
                .authenticate(Some(&wrong), None)
                .await
                .unwrap_err();
            assert_eq!(e.error_code, 40101);
        }
        let limited = directory
            .authenticate(Some(&wrong), None)
            .await
            .unwrap_err();
        assert_eq!((limited.status.as_u16(), limited.error_code), (429, 42901));
        // Even the right secret waits out the window: the id is not verified meanwhile.
        let right = format!("Bearer {}", admin.token());
        assert_eq!(
            directory
                .authenticate(Some(&right), None)
                .await
                .unwrap_err()
                .error_code,
            42901
        );
        log.close().await;
    }

    #[tokio::test]
    async fn keys_authenticate_until_revoked_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let open = || async {
            let log = crate::test_log(dir.path()).await;
            (log.clone(), Directory::load(log).await.unwrap())
        };
        let (log, directory) = open().await;
        let admin = directory.bootstrap().await.unwrap().expect("first start");
        assert!(directory.bootstrap().await.unwrap().is_none(), "only once");
        directory.create_tenant("acme", "").await.unwrap();
        let producer = directory
            .create_key(
                "acme",
                vec![Scope {
                    role: Role::Produce,
                    topics: "orders.*".into(),
                }],
                false,
                "",
            )
            .await
            .unwrap();
        let bearer = |k: &IssuedKey| format!("Bearer {}", k.token());
        let who = directory
            .authenticate(Some(&bearer(&producer)), None)
            .await
            .unwrap();
        assert_eq!(who.tenant, "acme");
        assert!(who.can(Role::Produce, "orders.created"));
        assert!(!who.can(Role::Produce, "payments"));
        assert!(!who.can(Role::Consume, "orders.created"));
        assert!(!who.system);
        // Basic credentials (Confluent clients) carry the same key.
        let basic = format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", producer.key.id, producer.secret))
        );
        assert_eq!(
            directory
                .authenticate(Some(&basic), None)
                .await
                .unwrap()
                .tenant,
            "acme"
        );
        let wrong = format!("Bearer sk_{}_{}", producer.key.id, "not-the-secret");
        assert_eq!(
            directory
                .authenticate(Some(&wrong), None)
                .await
                .unwrap_err()
                .error_code,
            40101
        );
        assert_eq!(
            directory
                .authenticate(None, None)
                .await
                .unwrap_err()
                .error_code,
            40101
        );
        // A restart reads the same directory back from `_auth`.
        log.close().await;
        let (log, directory) = open().await;
        assert!(
            directory
                .authenticate(Some(&bearer(&admin)), None)
                .await
                .unwrap()
                .system
        );
        directory.revoke(&producer.key.id).await.unwrap();
        let revoked = directory
            .authenticate(Some(&bearer(&producer)), None)
            .await
            .unwrap_err();
        assert!(revoked.message.contains("revoked"), "{}", revoked.message);
        log.close().await;
    }

    #[tokio::test]
    async fn a_client_certificate_names_one_key_until_it_is_revoked_or_unbound() {
        let dir = tempfile::tempdir().unwrap();
        let open = || async {
            let log = crate::test_log(dir.path()).await;
            (log.clone(), Directory::load(log).await.unwrap())
        };
        let (log, directory) = open().await;
        directory.bootstrap().await.unwrap();
        directory.create_tenant("acme", "").await.unwrap();
        let cert = fingerprint(b"a DER certificate");
        let other = fingerprint(b"another certificate");
        let consume = || {
            vec![Scope {
                role: Role::Consume,
                topics: "*".into(),
            }]
        };
        // Written with colons and in capitals, stored as 64 lowercase hex digits.
        let colons: Vec<String> = cert
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8(c.to_vec()).unwrap().to_uppercase())
            .collect();
        let bound = directory
            .create_bound_key("acme", consume(), false, "", Some(&colons.join(":")))
            .await
            .unwrap();
        assert_eq!(bound.key.client_cert_sha256.as_deref(), Some(cert.as_str()));
        let bad = directory
            .create_bound_key("acme", consume(), false, "", Some("abc"))
            .await
            .err()
            .expect("refused");
        assert_eq!(bad.status.as_u16(), 422);
        let taken = directory
            .create_bound_key("acme", consume(), false, "", Some(&cert))
            .await
            .err()
            .expect("refused");
        assert_eq!((taken.status.as_u16(), taken.error_code), (409, 40910));

        // The certificate alone authenticates as the key; an unknown one does not.
        let who = directory.authenticate(None, Some(&cert)).await.unwrap();
        assert_eq!(
            (who.key_id.as_str(), who.tenant.as_str()),
            (bound.key.id.as_str(), "acme")
        );
        let stranger = directory
            .authenticate(None, Some(&other))
            .await
            .unwrap_err();
        assert_eq!(stranger.error_code, 40103);
        // The bound key's secret counts only over a connection presenting the certificate.
        let header = format!("Bearer {}", bound.token());
        let without = directory
            .authenticate(Some(&header), None)
            .await
            .unwrap_err();
        assert_eq!(without.error_code, 40103);
        let wrong = directory
            .authenticate(Some(&header), Some(&other))
            .await
            .unwrap_err();
        assert_eq!(wrong.error_code, 40103);
        assert!(
            directory
                .authenticate(Some(&header), Some(&cert))
                .await
                .is_ok()
        );

        // Rebinding moves the certificate; a restart reads the binding back.
        directory
            .bind_client_cert(&bound.key.id, Some(&other))
            .await
            .unwrap();
        assert_eq!(
            directory
                .authenticate(None, Some(&cert))
                .await
                .unwrap_err()
                .error_code,
            40103
        );
        log.close().await;
        let (log, directory) = open().await;
        let who = directory.authenticate(None, Some(&other)).await.unwrap();
        assert_eq!(who.key_id, bound.key.id);
        // Revoked: the certificate names nothing, and can be bound to a new key.
        directory.revoke(&bound.key.id).await.unwrap();
        assert_eq!(
            directory
                .authenticate(None, Some(&other))
                .await
                .unwrap_err()
                .error_code,
            40103
        );
        directory
            .create_bound_key("acme", consume(), false, "", Some(&other))
            .await
            .unwrap();
        log.close().await;
    }

    #[test]
    fn glob_patterns() {
        assert!(glob("*", "anything"));
        assert!(glob("orders.*", "orders.created"));
        assert!(!glob("orders.*", "payments.created"));
        assert!(glob("*.dlq", "orders.dlq"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
    }

    #[test]
    fn credentials() {
        let token = "sk_0123456789abcdef_sec_ret-x";
        assert_eq!(
            parse_credentials(&format!("Bearer {token}")),
            Some(("0123456789abcdef".into(), "sec_ret-x".into()))
        );
        let basic = STANDARD.encode("0123456789abcdef:sec_ret-x");
        assert_eq!(
            parse_credentials(&format!("Basic {basic}")),
            Some(("0123456789abcdef".into(), "sec_ret-x".into()))
        );
        let basic = STANDARD.encode(format!("0123456789abcdef:{token}"));
        assert_eq!(
            parse_credentials(&format!("Basic {basic}")),
            Some(("0123456789abcdef".into(), "sec_ret-x".into()))
        );
        assert_eq!(parse_credentials("Bearer nope"), None);
        assert_eq!(parse_credentials("Digest x"), None);
    }

    #[test]
    fn scopes() {
        let p = Principal {
            key_id: "k".into(),
            tenant: "t".into(),
            scopes: vec![
                Scope {
                    role: Role::Produce,
                    topics: "orders.*".into(),
                },
                Scope {
                    role: Role::Consume,
                    topics: "*".into(),
                },
            ],
            system: false,
        };
        assert!(p.can(Role::Produce, "orders.created"));
        assert!(!p.can(Role::Produce, "payments"));
        assert!(p.can(Role::Consume, "payments"));
        assert!(!p.can(Role::Admin, "orders.created"));
        assert!(!p.is_tenant_admin());
    }
}
