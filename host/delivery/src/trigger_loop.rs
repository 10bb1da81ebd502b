//! A tenant's workflow triggers: stored in `_triggers`, delivered by one loop per tenant (the
//! subscription `triggers`), which is rebuilt whenever a trigger changes.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::subscription::{self, Subscription};
use super::{TRIGGER_LOOP, TRIGGERS_TOPIC, Webhooks, check_error, signing, trigger};
use sluice_tenancy::error::ApiError;
use sluice_tenancy::internal_topics;

impl Webhooks {
    pub fn list_triggers(&self, tenant: &str) -> Vec<trigger::Trigger> {
        let mut out: Vec<trigger::Trigger> = self
            .triggers
            .lock()
            .expect("triggers")
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|(_, t)| t.clone())
            .collect();
        out.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.created_ms.cmp(&b.created_ms))
                .then(a.id.cmp(&b.id))
        });
        out
    }

    pub fn get_trigger(&self, tenant: &str, id: &str) -> Option<trigger::Trigger> {
        self.triggers
            .lock()
            .expect("triggers")
            .get(&(tenant.to_owned(), id.to_owned()))
            .cloned()
    }

    /// Create (no `current`) or replace a trigger; the tenant's trigger loop restarts with it.
    pub async fn put_trigger(
        self: &Arc<Self>,
        tenant: &str,
        mut t: trigger::Trigger,
        current: Option<&trigger::Trigger>,
    ) -> Result<trigger::Trigger, ApiError> {
        t.check(&self.egress, |name| {
            self.log
                .topic(&sluice_tenancy::log_name(tenant, name))
                .is_some()
        })
        .map_err(check_error)?;
        let now = sluice_tenancy::now_ms();
        match current {
            None => {
                t.id = format!("trg_{}", uuid::Uuid::now_v7().simple());
                t.created_ms = now;
            }
            Some(c) => {
                t.id = c.id.clone();
                t.created_ms = c.created_ms;
            }
        }
        t.updated_ms = now;
        internal_topics::append(
            &self.log,
            TRIGGERS_TOPIC,
            format!("{tenant}/{}", t.id),
            serde_json::to_vec(&json!({ "trigger": t })).expect("serializes"),
        )
        .await?;
        self.triggers
            .lock()
            .expect("triggers")
            .insert((tenant.to_owned(), t.id.clone()), t.clone());
        self.rebuild_triggers(tenant).await?;
        Ok(t)
    }

    pub async fn delete_trigger(self: &Arc<Self>, tenant: &str, id: &str) -> Result<(), ApiError> {
        if self.get_trigger(tenant, id).is_none() {
            return Err(trigger_not_found(id));
        }
        internal_topics::append(
            &self.log,
            TRIGGERS_TOPIC,
            format!("{tenant}/{id}"),
            serde_json::to_vec(&json!({ "deleted": true })).expect("serializes"),
        )
        .await?;
        self.triggers
            .lock()
            .expect("triggers")
            .remove(&(tenant.to_owned(), id.to_owned()));
        self.rebuild_triggers(tenant).await
    }

    /// The secret that signs the tenant's trigger deliveries (made on first use).
    pub async fn trigger_secret(&self, tenant: &str) -> Result<String, ApiError> {
        if let Some(s) = self.trigger_secrets.lock().expect("secrets").get(tenant) {
            return Ok(s.clone());
        }
        let secret = signing::new_secret();
        internal_topics::append(
            &self.log,
            TRIGGERS_TOPIC,
            tenant.to_owned(),
            serde_json::to_vec(&json!({ "secret": secret })).expect("serializes"),
        )
        .await?;
        self.trigger_secrets
            .lock()
            .expect("secrets")
            .insert(tenant.to_owned(), secret.clone());
        Ok(secret)
    }

    /// (Re)start the tenant's trigger loop over its enabled triggers, highest priority first.
    pub(super) async fn rebuild_triggers(self: &Arc<Self>, tenant: &str) -> Result<(), ApiError> {
        self.stop(tenant, TRIGGER_LOOP).await;
        let list: Vec<trigger::Trigger> = self
            .list_triggers(tenant)
            .into_iter()
            .filter(|t| t.enabled)
            .collect();
        if list.is_empty() {
            return Ok(());
        }
        let secret = self.trigger_secret(tenant).await?;
        let mut topics: Vec<String> = list.iter().flat_map(|t| t.topics.clone()).collect();
        topics.sort();
        topics.dedup();
        // Topics new to the loop start at their end: a new trigger acts on what comes next.
        let known = self.committed(tenant, TRIGGER_LOOP);
        let mut start = Vec::new();
        for t in &topics {
            let full = sluice_tenancy::log_name(tenant, t);
            let n = self
                .log
                .inspect_topic(&full, |m, _| m.partitions)
                .unwrap_or(0);
            for p in 0..n {
                if !known.contains_key(&(t.clone(), p)) {
                    let (_, end) = self
                        .log
                        .offsets(&full, p)
                        .map_err(|e| sluice_tenancy::error::from_log(e, t))?;
                    start.push(((t.clone(), p), end));
                }
            }
        }
        self.store_offsets(tenant, TRIGGER_LOOP, &start).await?;
        let mut compiled = Vec::with_capacity(list.len());
        for t in list.iter().cloned() {
            compiled.push(t.compile().map_err(check_error)?);
        }
        let now = sluice_tenancy::now_ms();
        let sub = Subscription {
            id: TRIGGER_LOOP.into(),
            url: list[0].endpoint.clone(),
            topics,
            event_types: vec!["*".into()],
            condition: None,
            input_mapping: None,
            headers: Default::default(),
            secret,
            signature: "v1".into(),
            old_secrets: Vec::new(),
            rate_limit: None,
            ordering: subscription::Ordering::PerKey,
            encoding: subscription::Encoding::Envelope,
            handshake: false,
            enabled: true,
            disabled_reason: None,
            retry_schedule: subscription::DEFAULT_SCHEDULE.to_vec(),
            timeout: Duration::from_secs(15),
            disable_after: Duration::from_secs(5 * 24 * 3600),
            start: "latest".into(),
            description: "workflow triggers".into(),
            created_ms: now,
            updated_ms: now,
        };
        let shared = Arc::new((
            sub,
            subscription::Compiled {
                condition: None,
                mapping: None,
                triggers: compiled,
            },
        ));
        self.start(tenant, shared).await;
        Ok(())
    }
}

pub fn trigger_not_found(id: &str) -> ApiError {
    ApiError::new(
        http::StatusCode::NOT_FOUND,
        40409,
        format!("trigger `{id}` does not exist"),
    )
}
