//! # sluice-tenancy: who is asking, and under which names their data lives
//!
//! The base every other Sluice crate stands on, with no HTTP server in it:
//!
//! - [`auth`]: tenants, API keys (`sk_<id>_<secret>`, Argon2id-hashed), scopes and the
//!   [`auth::Principal`] a verified key becomes; the [`auth::Directory`] keeps them in the
//!   internal topic `_auth`.
//! - [`names`]: the tenant-qualified name of a topic in the log (`<tenant>/<topic>`), computed
//!   in exactly one place, and the rules for topic names.
//! - [`internal_topics`]: the gateway's own single-partition topics (`_auth`, `_offsets`,
//!   `_alerts`, …) and how their owners create, replay and append to them.
//! - [`audit`]: each tenant's audit trail (`<tenant>/_audit`, 90 days): changes and refusals.
//! - [`quotas`]: per-tenant produce and fetch rates (token buckets; 429 with `Retry-After`).
//! - [`clock`]: the time that schedules work, which tests move forward.
//! - [`error`]: the one error shape every service answers with (`{"error_code", "message"}`
//!   with its status), and how log errors map onto it.

pub mod audit;
pub mod auth;
pub mod clock;
pub mod data_keys;
pub mod error;
pub mod internal_topics;
pub mod names;
pub mod quota_limits;
pub mod quotas;

pub use auth::{Directory, Principal, Role};
pub use clock::{Clock, now_ms};
pub use error::{ApiError, from_log};
pub use names::{check_topic_name, log_name};

/// A fresh local log in `dir`, for the unit tests.
#[cfg(test)]
pub(crate) async fn test_log(dir: &std::path::Path) -> sluice_log::Log {
    sluice_log::Log::open(
        sluice_log::Storage::Local(dir.to_owned()),
        sluice_log::LogOptions::default(),
    )
    .await
    .expect("a local log opens")
}
