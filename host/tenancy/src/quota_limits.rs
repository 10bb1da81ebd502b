//! A tenant's quota limits, as stored with the tenant (the key directory keeps them) and as
//! [`crate::quotas::QuotaBook`] enforces them.

use serde::{Deserialize, Serialize};

/// A tenant's limits; `None` is unlimited. Stored with the tenant; unset fields fall back to
/// the server's defaults (`[quotas]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub produce_events_per_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub produce_bytes_per_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_bytes_per_s: Option<u64>,
    /// Milliseconds of WebAssembly guest time per second, across the tenant's pipelines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_ms_per_s: Option<u64>,
    /// Webhook delivery attempts per second, across the tenant's subscriptions (over it,
    /// deliveries wait; nothing is refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_deliveries_per_s: Option<u64>,
    /// Webhook subscriptions the tenant may have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_subscriptions: Option<u64>,
    /// Bytes the tenant's topics may hold; at or over it, produce is refused until retention
    /// or deletes free space.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_bytes: Option<u64>,
}

impl QuotaLimits {
    /// `self`'s limits, with `defaults` where `self` sets none.
    pub fn or(self, defaults: QuotaLimits) -> QuotaLimits {
        QuotaLimits {
            produce_events_per_s: self.produce_events_per_s.or(defaults.produce_events_per_s),
            produce_bytes_per_s: self.produce_bytes_per_s.or(defaults.produce_bytes_per_s),
            fetch_bytes_per_s: self.fetch_bytes_per_s.or(defaults.fetch_bytes_per_s),
            component_ms_per_s: self.component_ms_per_s.or(defaults.component_ms_per_s),
            webhook_deliveries_per_s: self
                .webhook_deliveries_per_s
                .or(defaults.webhook_deliveries_per_s),
            max_subscriptions: self.max_subscriptions.or(defaults.max_subscriptions),
            storage_bytes: self.storage_bytes.or(defaults.storage_bytes),
        }
    }
}
