//! A source's definition, as stored and as `/v1/sources` takes it.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_tenancy::error::ApiError;

/// `{"name": "stripe-payments", "topic": "payments", "component": "webhook-gateway",
///   "config": {"scheme": "stripe", "secret": "whsec_…", "tolerance": "5m", ...}}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub name: String,
    pub topic: String,
    #[serde(default = "webhook_gateway")]
    pub component: String,
    #[serde(default)]
    pub config: Value,
    #[serde(default)]
    pub description: String,
    /// Senders the CloudEvents abuse-protection handshake (`OPTIONS` with
    /// `WebHook-Request-Origin`) grants: host names, or `*` for any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    /// The request rate (per minute) the handshake grants (`WebHook-Allowed-Rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_rate: Option<u32>,
    #[serde(default)]
    pub created_ms: i64,
}

fn webhook_gateway() -> String {
    "webhook-gateway".into()
}

/// The largest configuration a source may have (JSON bytes).
pub const MAX_CONFIG_BYTES: usize = 16 << 10;

/// A definition that cannot be used (422).
#[derive(Debug)]
pub struct SourceError(String);

impl SourceError {
    pub fn new(message: impl Into<String>) -> SourceError {
        SourceError(message.into())
    }
}

impl From<SourceError> for ApiError {
    fn from(e: SourceError) -> ApiError {
        ApiError::new(http::StatusCode::UNPROCESSABLE_ENTITY, 42220, e.0)
    }
}

/// A source's name: what its URL ends with.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

impl Source {
    pub fn check(&self) -> Result<(), SourceError> {
        if !valid_name(&self.name) {
            return Err(SourceError::new(format!(
                "`name`: `{}`; use 1-64 characters of [a-zA-Z0-9._-]",
                self.name
            )));
        }
        sluice_tenancy::names::check_topic_name(&self.topic)
            .map_err(|e| SourceError::new(format!("`topic`: {}", e.message)))?;
        if !self.config.is_object() {
            return Err(SourceError::new("`config` must be a JSON object"));
        }
        let size = self.config.to_string().len();
        if size > MAX_CONFIG_BYTES {
            return Err(SourceError::new(format!(
                "`config` is {size} bytes; at most {MAX_CONFIG_BYTES}"
            )));
        }
        if self.allowed_origins.len() > 32
            || self
                .allowed_origins
                .iter()
                .any(|o| o.is_empty() || o.len() > 253)
        {
            return Err(SourceError::new(
                "`allowed_origins`: at most 32 host names (or `*`) of up to 253 characters",
            ));
        }
        if self.description.len() > 1024 {
            return Err(SourceError::new("`description`: at most 1024 bytes"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(config: Value) -> Source {
        Source {
            name: "s".into(),
            topic: "t".into(),
            component: webhook_gateway(),
            config,
            description: String::new(),
            allowed_origins: vec![],
            allowed_rate: None,
            created_ms: 0,
        }
    }

    #[test]
    fn definitions_are_bounded() {
        assert!(source(serde_json::json!({})).check().is_ok());
        let big = serde_json::json!({"secret": "x".repeat(MAX_CONFIG_BYTES)});
        assert!(source(big).check().unwrap_err().0.contains("bytes"));
        assert!(
            source(serde_json::json!([]))
                .check()
                .unwrap_err()
                .0
                .contains("object")
        );
        let mut s = source(serde_json::json!({}));
        s.name = "a/b".into();
        assert!(s.check().unwrap_err().0.contains("name"));
        let mut s = source(serde_json::json!({}));
        s.allowed_origins = vec!["o".into(); 33];
        assert!(s.check().unwrap_err().0.contains("allowed_origins"));
        let mut s = source(serde_json::json!({}));
        s.description = "d".repeat(1025);
        assert!(s.check().unwrap_err().0.contains("description"));
    }
}
