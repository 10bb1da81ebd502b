//! A source's configuration, as JSON.

use serde_json::Value;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::{Refusal, Request};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    StandardWebhooks,
    GitHub,
    Stripe,
    Hmac(HmacSpec),
    Basic,
    ApiKey { header: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HmacSpec {
    pub header: String,
    pub algorithm: Algorithm,
    pub base64: bool,
    pub prefix: String,
    /// The signed content: literal text with `{body}` and `{header:Name}` parts.
    pub template: String,
    pub timestamp_header: Option<String>,
}

/// Where a value is read from: a JSON pointer into the body, or a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locator {
    Pointer(String),
    Header(String),
}

impl Locator {
    fn parse(field: &str, s: &str) -> Result<Locator, ConfigError> {
        if let Some(h) = s.strip_prefix("header:") {
            if h.is_empty() {
                return Err(ConfigError(format!("`{field}`: name the header")));
            }
            Ok(Locator::Header(h.to_owned()))
        } else if s.is_empty() || s.starts_with('/') {
            Ok(Locator::Pointer(s.to_owned()))
        } else {
            Err(ConfigError(format!(
                "`{field}` must be a JSON pointer (`/type`) or `header:Name`, not `{s}`"
            )))
        }
    }

    /// The value: a string as is, a number or boolean as text; `None` when absent or null.
    pub fn find(&self, request: &Request, body: &Value) -> Result<Option<String>, Refusal> {
        match self {
            Locator::Header(h) => Ok(request.header(h)?.map(str::to_owned)),
            Locator::Pointer(p) => Ok(match body.pointer(p) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(v @ (Value::Number(_) | Value::Bool(_))) => Some(v.to_string()),
                Some(v) => Some(v.to_string()),
            }),
        }
    }
}

/// A configuration that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The most secrets one source may hold (rotation needs two or three).
pub const MAX_SECRETS: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub scheme: Scheme,
    pub secrets: Vec<String>,
    /// How far a signed timestamp may be from now (seconds).
    pub tolerance: i64,
    pub event_type: Option<Locator>,
    pub key: Option<Locator>,
    pub id: Option<Locator>,
}

/// `5m`, `300s`, `1h`, `90` (seconds).
fn seconds(field: &str, s: &str) -> Result<i64, ConfigError> {
    let s = s.trim();
    let (n, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, ""), |i| s.split_at(i));
    let n: i64 = n
        .parse()
        .map_err(|_| ConfigError(format!("`{field}`: `{s}` is not a duration (`5m`, `300s`)")))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(ConfigError(format!("`{field}`: unknown unit in `{s}`"))),
    };
    let total = n.saturating_mul(scale);
    if !(1..=86_400).contains(&total) {
        return Err(ConfigError(format!(
            "`{field}`: `{s}` must be between 1 s and 24 h"
        )));
    }
    Ok(total)
}

impl Config {
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| ConfigError(format!("not JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| ConfigError("the configuration must be a JSON object".into()))?;
        const KNOWN: [&str; 14] = [
            "scheme",
            "format",
            "secret",
            "secrets",
            "tolerance",
            "event_type",
            "key",
            "id",
            "header",
            "algorithm",
            "encoding",
            "prefix",
            "template",
            "timestamp_header",
        ];
        if let Some(k) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(ConfigError(format!("unknown field `{k}`")));
        }
        let text = |k: &str| -> Result<Option<String>, ConfigError> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(ConfigError(format!("`{k}` must be a string"))),
            }
        };
        let mut secrets: Vec<String> = text("secret")?.into_iter().collect();
        match obj.get("secrets") {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) => {
                for s in a {
                    secrets.push(
                        s.as_str()
                            .ok_or_else(|| ConfigError("`secrets` must hold strings".into()))?
                            .to_owned(),
                    );
                }
            }
            Some(_) => return Err(ConfigError("`secrets` must be a list of strings".into())),
        }
        if secrets.is_empty() || secrets.iter().any(|s| s.is_empty() || s.len() > 1024) {
            return Err(ConfigError(
                "give `secret` (or `secrets`): 1 to 1024 bytes each".into(),
            ));
        }
        if secrets.len() > MAX_SECRETS {
            return Err(ConfigError(format!("at most {MAX_SECRETS} secrets")));
        }
        let header = text("header")?;
        match text("format")?.as_deref() {
            None | Some("webhook") | Some("cloudevents") => {}
            Some(other) => {
                return Err(ConfigError(format!(
                    "`format`: `{other}`; use webhook (the default) or cloudevents"
                )));
            }
        }
        let scheme = match text("scheme")?.as_deref() {
            Some("standard-webhooks") => Scheme::StandardWebhooks,
            Some("github") => Scheme::GitHub,
            Some("stripe") => Scheme::Stripe,
            Some("basic") => Scheme::Basic,
            Some("api-key") => Scheme::ApiKey {
                header: header.clone().unwrap_or_else(|| "x-api-key".into()),
            },
            Some("hmac") => {
                let algorithm = match text("algorithm")?.as_deref().unwrap_or("sha256") {
                    "sha1" => Algorithm::Sha1,
                    "sha256" => Algorithm::Sha256,
                    "sha512" => Algorithm::Sha512,
                    other => {
                        return Err(ConfigError(format!(
                            "`algorithm`: `{other}`; use sha1, sha256 or sha512"
                        )));
                    }
                };
                let base64 = match text("encoding")?.as_deref().unwrap_or("hex") {
                    "hex" => false,
                    "base64" => true,
                    other => {
                        return Err(ConfigError(format!(
                            "`encoding`: `{other}`; use hex or base64"
                        )));
                    }
                };
                let template = text("template")?.unwrap_or_else(|| "{body}".into());
                if template.len() > 256 {
                    return Err(ConfigError("`template`: at most 256 bytes".into()));
                }
                Scheme::Hmac(HmacSpec {
                    header: header
                        .clone()
                        .ok_or_else(|| ConfigError("`hmac` needs `header`".into()))?,
                    algorithm,
                    base64,
                    prefix: text("prefix")?.unwrap_or_default(),
                    template,
                    timestamp_header: text("timestamp_header")?,
                })
            }
            Some(other) => {
                return Err(ConfigError(format!(
                    "`scheme`: `{other}`; use standard-webhooks, github, stripe, hmac, basic or api-key"
                )));
            }
            None => return Err(ConfigError("`scheme` is required".into())),
        };
        if let Scheme::StandardWebhooks = scheme {
            for s in &secrets {
                if !(s.starts_with("whsec_") || s.starts_with("whpk_")) {
                    return Err(ConfigError(
                        "standard-webhooks secrets are `whsec_…` (HMAC) or `whpk_…` (ed25519 public keys)"
                            .into(),
                    ));
                }
                standard_key(s).map_err(ConfigError)?;
            }
        }
        let locator = |k: &str| -> Result<Option<Locator>, ConfigError> {
            text(k)?.map(|s| Locator::parse(k, &s)).transpose()
        };
        Ok(Config {
            scheme,
            secrets,
            tolerance: text("tolerance")?
                .map(|t| seconds("tolerance", &t))
                .transpose()?
                .unwrap_or(300),
            event_type: locator("event_type")?,
            key: locator("key")?,
            id: locator("id")?,
        })
    }
}

/// A Standard Webhooks secret's key bytes: `whsec_<base64>` (HMAC key) or `whpk_<base64>`
/// (ed25519 public key, 32 bytes).
pub(crate) fn standard_key(secret: &str) -> Result<Vec<u8>, String> {
    let (b64, public) = match (secret.strip_prefix("whsec_"), secret.strip_prefix("whpk_")) {
        (Some(b), _) => (b, false),
        (_, Some(b)) => (b, true),
        _ => return Err("a standard-webhooks secret starts with whsec_ or whpk_".into()),
    };
    let key = STANDARD
        .decode(b64)
        .map_err(|e| format!("the secret's key is not base64: {e}"))?;
    if public && key.len() != 32 {
        return Err("a whpk_ key is 32 bytes (ed25519)".into());
    }
    Ok(key)
}
