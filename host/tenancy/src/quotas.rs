//! Per-tenant quotas: produce events/s and bytes/s, fetch bytes/s, component time/s, webhook
//! deliveries/s; and the counts and sizes a tenant may hold: subscriptions, stored bytes. One
//! tenant at its quota is answered 429 with `Retry-After` (a held amount, without: only
//! deleting makes room), and another tenant's requests never wait behind it.
//!
//! Each quota is a token bucket holding one second of its rate. A request is let through while
//! the bucket is not in debt, then charged in full (so one large request is never refused for
//! its size alone, and what it overdrew is paid back before the next one passes); in debt, it
//! is refused with the time until the debt is repaid.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::auth::Directory;
use crate::error::ApiError;

pub use crate::quota_limits::QuotaLimits;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    ProduceEvents,
    ProduceBytes,
    FetchBytes,
    /// Guest time in microseconds (the rate is `component_ms_per_s` × 1000).
    ComponentMicros,
    WebhookDeliveries,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::ProduceEvents => "produce_events_per_s",
            Kind::ProduceBytes => "produce_bytes_per_s",
            Kind::FetchBytes => "fetch_bytes_per_s",
            Kind::ComponentMicros => "component_ms_per_s",
            Kind::WebhookDeliveries => "webhook_deliveries_per_s",
        }
    }
}

struct Bucket {
    /// Tokens now (negative: in debt).
    tokens: f64,
    at: Instant,
    /// The rate it fills at: a changed limit starts a full bucket.
    rate: u64,
}

/// Every tenant's buckets; limits come from the directory (with the defaults).
pub struct QuotaBook {
    directory: Arc<Directory>,
    defaults: QuotaLimits,
    buckets: Mutex<HashMap<(String, Kind), Bucket>>,
    /// Requests refused, per (tenant, quota).
    throttled: Mutex<HashMap<(String, &'static str), u64>>,
}

impl QuotaBook {
    pub fn new(directory: Arc<Directory>, defaults: QuotaLimits) -> QuotaBook {
        QuotaBook {
            directory,
            defaults,
            buckets: Mutex::new(HashMap::new()),
            throttled: Mutex::new(HashMap::new()),
        }
    }

    /// The limits in force for `tenant`.
    pub fn limits(&self, tenant: &str) -> QuotaLimits {
        self.directory.quotas(tenant).or(self.defaults)
    }

    /// Before producing `events` events of `bytes` bytes: refused (429) while in debt.
    pub fn charge_produce(&self, tenant: &str, events: u64, bytes: u64) -> Result<(), ApiError> {
        self.charge_produce_within(tenant, self.limits(tenant), events, bytes)
    }

    /// [`QuotaBook::charge_produce`] with the limits [`QuotaBook::admit_produce`] read.
    pub fn charge_produce_within(
        &self,
        tenant: &str,
        limits: QuotaLimits,
        events: u64,
        bytes: u64,
    ) -> Result<(), ApiError> {
        self.charge(
            tenant,
            Kind::ProduceEvents,
            limits.produce_events_per_s,
            events,
        )?;
        self.charge(
            tenant,
            Kind::ProduceBytes,
            limits.produce_bytes_per_s,
            bytes,
        )
    }

    /// Before a produce request's body is even read: refused (429) while the tenant is in debt
    /// on either produce quota, so an over-quota flood costs no parsing. The limits in force,
    /// for charging the request once it is parsed.
    pub fn admit_produce(&self, tenant: &str) -> Result<QuotaLimits, ApiError> {
        let limits = self.limits(tenant);
        self.charge(tenant, Kind::ProduceEvents, limits.produce_events_per_s, 0)?;
        self.charge(tenant, Kind::ProduceBytes, limits.produce_bytes_per_s, 0)?;
        self.charge(tenant, Kind::ComponentMicros, component_rate(limits), 0)?;
        Ok(limits)
    }

    /// After the tenant's pipeline ran for `spent` (charged in full; the tenant's next
    /// produce is refused while the debt lasts).
    pub fn charge_component(&self, tenant: &str, limits: QuotaLimits, spent: Duration) {
        if let Some(rate) = component_rate(limits) {
            let mut buckets = self.buckets.lock().expect("buckets");
            let b = bucket(&mut buckets, tenant, Kind::ComponentMicros, rate);
            b.tokens -= spent.as_micros() as f64;
        }
    }

    /// One webhook delivery attempt: `Ok` (charged) or how long to wait before the tenant's
    /// next one.
    pub fn take_delivery(&self, tenant: &str) -> Result<(), Duration> {
        let Some(rate) = self
            .limits(tenant)
            .webhook_deliveries_per_s
            .filter(|r| *r > 0)
        else {
            return Ok(());
        };
        let mut buckets = self.buckets.lock().expect("buckets");
        let b = bucket(&mut buckets, tenant, Kind::WebhookDeliveries, rate);
        if b.tokens < 1.0 {
            let wait = Duration::from_secs_f64((1.0 - b.tokens) / rate as f64);
            drop(buckets);
            self.count_throttled(tenant, Kind::WebhookDeliveries.name());
            return Err(wait.max(Duration::from_millis(1)));
        }
        b.tokens -= 1.0;
        Ok(())
    }

    /// Before adding one more of something the tenant holds `have` of (`what`: the quota's
    /// name): refused (429, no `Retry-After`) at `limit`.
    pub fn check_count(
        &self,
        tenant: &str,
        what: &'static str,
        have: u64,
        limit: Option<u64>,
    ) -> Result<(), ApiError> {
        match limit {
            Some(limit) if have >= limit => {
                self.count_throttled(tenant, what);
                Err(ApiError::new(
                    http::StatusCode::TOO_MANY_REQUESTS,
                    42903,
                    format!(
                        "tenant `{tenant}` is at its quota {what} = {limit} (it holds {have}); \
                         delete some first, or ask for a higher quota"
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    fn count_throttled(&self, tenant: &str, what: &'static str) {
        *self
            .throttled
            .lock()
            .expect("throttled")
            .entry((tenant.to_owned(), what))
            .or_default() += 1;
    }

    /// Before serving a read: refused (429) while the tenant's fetch bytes are in debt.
    pub fn admit_fetch(&self, tenant: &str) -> Result<(), ApiError> {
        let limit = self.limits(tenant).fetch_bytes_per_s;
        self.charge(tenant, Kind::FetchBytes, limit, 0)
    }

    /// After serving `bytes` to a reader.
    pub fn charge_fetch(&self, tenant: &str, bytes: u64) {
        if let Some(rate) = self.limits(tenant).fetch_bytes_per_s {
            let mut buckets = self.buckets.lock().expect("buckets");
            let b = bucket(&mut buckets, tenant, Kind::FetchBytes, rate);
            b.tokens -= bytes as f64;
        }
    }

    /// Requests refused so far, per (tenant, quota name), for `/metrics`.
    pub fn throttled(&self) -> Vec<(String, &'static str, u64)> {
        let t = self.throttled.lock().expect("throttled");
        let mut out: Vec<_> = t.iter().map(|((a, b), n)| (a.clone(), *b, *n)).collect();
        out.sort();
        out
    }

    fn charge(
        &self,
        tenant: &str,
        kind: Kind,
        rate: Option<u64>,
        amount: u64,
    ) -> Result<(), ApiError> {
        let Some(rate) = rate.filter(|r| *r > 0) else {
            return Ok(());
        };
        let mut buckets = self.buckets.lock().expect("buckets");
        let b = bucket(&mut buckets, tenant, kind, rate);
        if b.tokens < 0.0 {
            let wait_s = (-b.tokens / rate as f64).ceil().max(1.0) as u64;
            drop(buckets);
            self.count_throttled(tenant, kind.name());
            return Err(ApiError::new(
                http::StatusCode::TOO_MANY_REQUESTS,
                42903,
                format!(
                    "tenant `{tenant}` is over its quota {} = {rate}; retry in {wait_s} s",
                    kind.name()
                ),
            )
            .retry_after(wait_s));
        }
        b.tokens -= amount as f64;
        Ok(())
    }
}

/// The component-time bucket's rate, in microseconds per second.
fn component_rate(limits: QuotaLimits) -> Option<u64> {
    limits
        .component_ms_per_s
        .filter(|ms| *ms > 0)
        .map(|ms| ms.saturating_mul(1000))
}

/// The tenant's bucket for `kind`, refilled to now (at most one second of `rate` banked); a
/// new rate starts full.
fn bucket<'a>(
    buckets: &'a mut HashMap<(String, Kind), Bucket>,
    tenant: &str,
    kind: Kind,
    rate: u64,
) -> &'a mut Bucket {
    let now = Instant::now();
    let full = Bucket {
        tokens: rate as f64,
        at: now,
        rate,
    };
    let b = buckets.entry((tenant.to_owned(), kind)).or_insert(full);
    if b.rate != rate {
        b.tokens = rate as f64;
        b.rate = rate;
    }
    let refill = now.duration_since(b.at).as_secs_f64() * rate as f64;
    b.tokens = (b.tokens + refill).min(rate as f64);
    b.at = now;
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn book(dir: &std::path::Path, defaults: QuotaLimits) -> (sluice_log::Log, QuotaBook) {
        let log = crate::test_log(dir).await;
        let directory = Arc::new(Directory::load(log.clone()).await.unwrap());
        directory.create_tenant("a", "").await.unwrap();
        directory.create_tenant("b", "").await.unwrap();
        (log, QuotaBook::new(directory, defaults))
    }

    #[tokio::test]
    async fn a_tenant_over_its_quota_is_refused_and_another_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let defaults = QuotaLimits {
            produce_events_per_s: Some(100),
            ..QuotaLimits::default()
        };
        let (log, book) = book(dir.path(), defaults).await;
        // One second's worth passes, then the overdraft is refused with when to come back.
        book.charge_produce("a", 150, 0).unwrap();
        let e = book.charge_produce("a", 1, 0).unwrap_err();
        assert_eq!((e.status.as_u16(), e.error_code), (429, 42903));
        assert_eq!(e.retry_after, Some(1));
        // In debt, a request is refused before its body is read.
        assert_eq!(book.admit_produce("a").unwrap_err().error_code, 42903);
        assert!(book.admit_produce("b").is_ok());
        // The other tenant has its own bucket.
        book.charge_produce("b", 100, 0).unwrap();
        assert_eq!(
            book.throttled(),
            vec![("a".to_owned(), "produce_events_per_s", 2)]
        );
        // A tenant's own limit wins over the default; none means unlimited.
        book.directory
            .set_quotas(
                "b",
                QuotaLimits {
                    produce_events_per_s: Some(1_000_000),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        for _ in 0..10 {
            book.charge_produce("b", 50_000, 0).unwrap();
        }
        assert_eq!(book.limits("b").produce_events_per_s, Some(1_000_000));
        let unlimited = QuotaBook::new(book.directory.clone(), QuotaLimits::default());
        for _ in 0..100 {
            unlimited
                .charge_produce("a", u64::MAX / 1000, u64::MAX / 1000)
                .unwrap();
        }
        log.close().await;
    }

    #[tokio::test]
    async fn fetch_bytes_are_charged_after_the_read() {
        let dir = tempfile::tempdir().unwrap();
        let defaults = QuotaLimits {
            fetch_bytes_per_s: Some(1_000),
            ..QuotaLimits::default()
        };
        let (log, book) = book(dir.path(), defaults).await;
        book.admit_fetch("a").unwrap();
        book.charge_fetch("a", 5_000);
        let e = book.admit_fetch("a").unwrap_err();
        assert_eq!(e.retry_after, Some(4));
        book.admit_fetch("b").unwrap();
        log.close().await;
    }

    #[tokio::test]
    async fn component_time_deliveries_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let defaults = QuotaLimits {
            component_ms_per_s: Some(100),
            webhook_deliveries_per_s: Some(2),
            max_subscriptions: Some(3),
            ..QuotaLimits::default()
        };
        let (log, book) = book(dir.path(), defaults).await;
        // Guest time: 300 ms against 100 ms/s puts the tenant 2 s in debt.
        let limits = book.admit_produce("a").unwrap();
        book.charge_component("a", limits, Duration::from_millis(300));
        let e = book.admit_produce("a").unwrap_err();
        assert_eq!((e.error_code, e.retry_after), (42903, Some(2)));
        assert!(e.message.contains("component_ms_per_s"), "{}", e.message);
        assert!(book.admit_produce("b").is_ok());
        // Deliveries: two a second, then a wait of about half a second each.
        book.take_delivery("a").unwrap();
        book.take_delivery("a").unwrap();
        let wait = book.take_delivery("a").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        book.take_delivery("b").unwrap();
        // Counts: at the limit, one more is refused without a time to wait.
        book.check_count("a", "max_subscriptions", 2, Some(3))
            .unwrap();
        let e = book
            .check_count("a", "max_subscriptions", 3, Some(3))
            .unwrap_err();
        assert_eq!(
            (e.status.as_u16(), e.error_code, e.retry_after),
            (429, 42903, None)
        );
        let refused: Vec<_> = book
            .throttled()
            .into_iter()
            .map(|(t, q, _)| (t, q))
            .collect();
        assert!(refused.contains(&("a".into(), "component_ms_per_s")));
        assert!(refused.contains(&("a".into(), "webhook_deliveries_per_s")));
        assert!(refused.contains(&("a".into(), "max_subscriptions")));
        log.close().await;
    }
}
