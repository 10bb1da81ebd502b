//! Topic names as tenants write them and as the log stores them.
//!
//! Every tenant's topics live in one log under `<tenant>/<topic>`; a tenant never sees the
//! namespace. [`log_name`] is the one place that computes it.

use crate::error::ApiError;

/// The log's name for a tenant's topic.
pub fn log_name(tenant: &str, topic: &str) -> String {
    format!("{tenant}/{topic}")
}

/// Check a topic name from a URL or body: the seed's pattern; `_` names are internal.
pub fn check_topic_name(name: &str) -> Result<(), ApiError> {
    if !sluice_log::valid_topic_name(name) {
        return Err(ApiError::invalid(format!(
            "invalid topic name `{name}`: use 1-249 characters of [a-zA-Z0-9._-]"
        )));
    }
    if name.starts_with('_') {
        return Err(ApiError::invalid(format!(
            "topic names starting with `_` are reserved for internal topics (`{name}`)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_qualified_names() {
        assert_eq!(log_name("acme", "orders"), "acme/orders");
        assert!(check_topic_name("orders.created").is_ok());
        let internal = check_topic_name("_auth").unwrap_err();
        assert_eq!(internal.error_code, 42201);
        assert!(check_topic_name("a/b").is_err());
        assert!(check_topic_name("").is_err());
    }
}
