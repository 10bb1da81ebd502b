//! Consumer groups: Kafka's semantics over HTTP.
//!
//! - [`assignor`]: the `range` and `cooperative-sticky` strategies.
//! - [`membership`]: members, generations, and ownership that only moves through its owners.
//! - [`config`]: the seeds' `ConsumerGroupConfig`.
//! - [`consumers`]: REST Proxy consumer instances (members) reading and committing.
//!
//! [`Groups`] is the one owner of every tenant's groups. Committed offsets and declared
//! configurations are records of the compacted internal topic `_offsets` (as Kafka's
//! `__consumer_offsets`): `group/<tenant>/<group>/<topic>/<partition>` → `{"offset": n,
//! "metadata": s}` (`{"offset": null}` forgets one), `group-config/<tenant>/<group>` →
//! `{"config": {...}}` (`{"deleted": true}` forgets it). Memberships are not stored: after a
//! restart, members create their instances again, as Kafka's members rejoin.

pub mod assignor;
pub mod config;
pub mod consumers;
pub mod membership;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sluice_log::{Log, LogError, Record};

pub use assignor::{Strategy, TopicPartition};
pub use config::{GroupConfig, OffsetReset};
use consumers::Instance;
pub use membership::GroupState;
use membership::Membership;
use sluice_tenancy::error::ApiError;
use sluice_tenancy::internal_topics::OFFSETS_TOPIC;
use sluice_tenancy::internal_topics::{self, ALERTS_TOPIC};
use sluice_tenancy::log_name;
use sluice_tenancy::now_ms;

#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("consumer group `{0}` does not exist")]
    GroupNotFound(String),
    #[error("Consumer instance not found: `{instance}` in group `{group}`")]
    InstanceNotFound { group: String, instance: String },
    #[error(
        "Consumer with specified consumer ID already exists in the specified consumer group: `{0}`"
    )]
    InstanceExists(String),
    #[error("Illegal state: {0}")]
    IllegalState(String),
    #[error("Invalid consumer configuration: {0}")]
    InvalidConfig(String),
    #[error("the group has active members ({0}); stop them before {1}")]
    NotEmpty(usize, &'static str),
    #[error("{0}")]
    Log(#[from] LogError),
    #[error("{0}")]
    Api(ApiError),
}

impl From<GroupError> for ApiError {
    fn from(e: GroupError) -> ApiError {
        use http::StatusCode as S;
        let message = e.to_string();
        match e {
            GroupError::GroupNotFound(_) => ApiError::new(S::NOT_FOUND, 40407, message),
            // Confluent's REST Proxy codes.
            GroupError::InstanceNotFound { .. } => ApiError::new(S::NOT_FOUND, 40403, message),
            GroupError::InstanceExists(_) => ApiError::new(S::CONFLICT, 40902, message),
            GroupError::IllegalState(_) => ApiError::new(S::CONFLICT, 40903, message),
            GroupError::InvalidConfig(_) => ApiError::new(S::UNPROCESSABLE_ENTITY, 42204, message),
            GroupError::NotEmpty(..) => ApiError::new(S::CONFLICT, 40906, message),
            GroupError::Log(e) => sluice_tenancy::error::from_log(e, "_offsets"),
            GroupError::Api(e) => e,
        }
    }
}

impl From<ApiError> for GroupError {
    fn from(e: ApiError) -> GroupError {
        GroupError::Api(e)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Committed {
    pub offset: u64,
    #[serde(default)]
    pub metadata: String,
    #[serde(default)]
    pub commit_ms: i64,
}

/// One group of one tenant.
pub(crate) struct Group {
    pub config: GroupConfig,
    /// Configured through `/v1/groups` (else created by a consumer, with defaults).
    pub declared: bool,
    pub membership: Membership,
    pub instances: BTreeMap<String, Instance>,
    pub committed: BTreeMap<TopicPartition, Committed>,
    /// Partitions whose lag is above the threshold (an alert was raised, not yet cleared).
    pub lagging: BTreeSet<TopicPartition>,
    pub last_lag_check_ms: i64,
}

impl Group {
    fn new(config: GroupConfig, declared: bool) -> Group {
        Group {
            membership: Membership::new(config.assignment_strategy),
            config,
            declared,
            instances: BTreeMap::new(),
            committed: BTreeMap::new(),
            lagging: BTreeSet::new(),
            last_lag_check_ms: 0,
        }
    }
}

type Key = (String, String);

pub struct Groups {
    log: Log,
    pub(crate) groups: Mutex<HashMap<Key, Group>>,
    /// Commits are appended and applied in one order.
    commit_order: tokio::sync::Mutex<()>,
}

fn offset_key(tenant: &str, group: &str, tp: &TopicPartition) -> String {
    format!("group/{tenant}/{group}/{}/{}", tp.topic, tp.partition)
}

fn config_key(tenant: &str, group: &str) -> String {
    format!("group-config/{tenant}/{group}")
}

/// One partition's position for reporting: committed offset, log end, lag.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: u32,
    pub committed: Option<u64>,
    pub log_end_offset: u64,
    pub lag: u64,
    pub owner: Option<String>,
}

impl Groups {
    /// Rebuild every group's configuration and committed offsets from `_offsets`.
    /// `committed`: the records of `_offsets`, read once for every owner.
    pub async fn load(log: Log, committed: &[Record]) -> Result<Groups, LogError> {
        internal_topics::ensure(&log, ALERTS_TOPIC, "operational alerts", &[]).await?;
        let mut groups: HashMap<Key, Group> = HashMap::new();
        for r in committed {
            let Some(key) = r.key.as_ref().and_then(|k| std::str::from_utf8(k).ok()) else {
                continue;
            };
            let Ok(v) = serde_json::from_slice::<Value>(r.value_bytes()) else {
                continue;
            };
            if let Some(rest) = key.strip_prefix("group-config/") {
                let Some((tenant, group)) = rest.split_once('/') else {
                    continue;
                };
                let k = (tenant.to_owned(), group.to_owned());
                if v["deleted"] == json!(true) {
                    groups.remove(&k);
                } else if let Ok(c) = serde_json::from_value::<GroupConfig>(v["config"].clone()) {
                    match groups.get_mut(&k) {
                        Some(g) => {
                            g.membership = Membership::new(c.assignment_strategy);
                            g.config = c;
                            g.declared = true;
                        }
                        None => {
                            groups.insert(k, Group::new(c, true));
                        }
                    }
                }
            } else if let Some(rest) = key.strip_prefix("group/") {
                let parts: Vec<&str> = rest.split('/').collect();
                let [tenant, group, topic, partition] = parts.as_slice() else {
                    continue;
                };
                let Ok(partition) = partition.parse::<u32>() else {
                    continue;
                };
                let k = ((*tenant).to_owned(), (*group).to_owned());
                let tp = TopicPartition::new(*topic, partition);
                match serde_json::from_value::<Committed>(v) {
                    Ok(c) => {
                        groups
                            .entry(k)
                            .or_insert_with(|| Group::new(GroupConfig::implicit(group), false))
                            .committed
                            .insert(tp, c);
                    }
                    Err(_) => {
                        if let Some(g) = groups.get_mut(&k) {
                            g.committed.remove(&tp);
                        }
                    }
                }
            }
        }
        // Groups whose offsets were all forgotten and that were never declared are gone.
        groups.retain(|_, g| g.declared || !g.committed.is_empty());
        Ok(Groups {
            log,
            groups: Mutex::new(groups),
            commit_order: tokio::sync::Mutex::new(()),
        })
    }

    /// Partition counts of a tenant's topics (topics that do not exist are left out).
    pub(crate) fn partition_counts(
        &self,
        tenant: &str,
        topics: &BTreeSet<String>,
    ) -> BTreeMap<String, u32> {
        topics
            .iter()
            .filter_map(|t| {
                self.log
                    .inspect_topic(&log_name(tenant, t), |meta, _| meta.partitions)
                    .map(|n| (t.clone(), n))
            })
            .collect()
    }

    /// Make offsets durable, then apply them. `None` forgets a partition's offset.
    pub(crate) async fn store_offsets(
        &self,
        tenant: &str,
        group: &str,
        offsets: Vec<(TopicPartition, Option<Committed>)>,
    ) -> Result<(), GroupError> {
        self.write_offsets(tenant, group, offsets, true).await
    }

    /// Make offsets durable that were applied already (a member's positions, committed as it
    /// gave its partitions up: applied at once, under the lock that released them, so the
    /// next owner starts there; a failure to store them means redelivery, never loss).
    pub(crate) async fn store_applied_offsets(
        &self,
        tenant: &str,
        group: &str,
        offsets: Vec<(TopicPartition, Option<Committed>)>,
    ) -> Result<(), GroupError> {
        self.write_offsets(tenant, group, offsets, false).await
    }

    async fn write_offsets(
        &self,
        tenant: &str,
        group: &str,
        offsets: Vec<(TopicPartition, Option<Committed>)>,
        apply: bool,
    ) -> Result<(), GroupError> {
        let _order = self.commit_order.lock().await;
        // A commit that changes nothing is not appended (consumers commit the same offsets
        // again and again; `_offsets` would grow with every one).
        let offsets = if apply {
            let groups = self.groups.lock().expect("groups");
            let g = groups.get(&(tenant.to_owned(), group.to_owned()));
            offsets
                .into_iter()
                .filter(|(tp, c)| {
                    let now = g.and_then(|g| g.committed.get(tp));
                    match (c, now) {
                        (Some(c), Some(n)) => c.offset != n.offset || c.metadata != n.metadata,
                        (None, None) => false,
                        _ => true,
                    }
                })
                .collect()
        } else {
            offsets
        };
        if offsets.is_empty() {
            return Ok(());
        }
        let records = offsets
            .iter()
            .map(|(tp, c)| {
                let value = match c {
                    Some(c) => serde_json::to_vec(c),
                    None => serde_json::to_vec(&json!({ "offset": null })),
                }
                .expect("serializes");
                (offset_key(tenant, group, tp), value)
            })
            .collect();
        internal_topics::append_all(&self.log, OFFSETS_TOPIC, records).await?;
        if !apply {
            return Ok(());
        }
        let mut groups = self.groups.lock().expect("groups");
        let g = groups
            .entry((tenant.to_owned(), group.to_owned()))
            .or_insert_with(|| Group::new(GroupConfig::implicit(group), false));
        for (tp, c) in offsets {
            match c {
                Some(c) => {
                    g.committed.insert(tp, c);
                }
                None => {
                    g.committed.remove(&tp);
                }
            }
        }
        Ok(())
    }

    /// Declare or reconfigure a group (`PUT /v1/groups/{id}`). A new assignment strategy
    /// applies once the group is empty.
    pub async fn put_config(&self, tenant: &str, config: GroupConfig) -> Result<bool, GroupError> {
        config.check().map_err(GroupError::InvalidConfig)?;
        let value = serde_json::to_vec(&json!({ "config": config })).expect("serializes");
        let _order = self.commit_order.lock().await;
        internal_topics::append(
            &self.log,
            OFFSETS_TOPIC,
            config_key(tenant, &config.group_id),
            value,
        )
        .await?;
        let mut groups = self.groups.lock().expect("groups");
        let key = (tenant.to_owned(), config.group_id.clone());
        let created = match groups.get_mut(&key) {
            Some(g) => {
                let created = !g.declared;
                if g.membership.members().is_empty() {
                    g.membership = Membership::new(config.assignment_strategy);
                }
                g.config = config;
                g.declared = true;
                created
            }
            None => {
                groups.insert(key, Group::new(config, true));
                true
            }
        };
        Ok(created)
    }

    /// Delete an empty group: its configuration and committed offsets.
    pub async fn delete(&self, tenant: &str, group: &str) -> Result<(), GroupError> {
        let tps: Vec<TopicPartition> = {
            let groups = self.groups.lock().expect("groups");
            let g = groups
                .get(&(tenant.to_owned(), group.to_owned()))
                .ok_or_else(|| GroupError::GroupNotFound(group.to_owned()))?;
            if !g.instances.is_empty() {
                return Err(GroupError::NotEmpty(g.instances.len(), "deleting it"));
            }
            g.committed.keys().cloned().collect()
        };
        let mut records: Vec<(String, Vec<u8>)> = tps
            .iter()
            .map(|tp| {
                (
                    offset_key(tenant, group, tp),
                    serde_json::to_vec(&json!({ "offset": null })).expect("serializes"),
                )
            })
            .collect();
        records.push((
            config_key(tenant, group),
            serde_json::to_vec(&json!({ "deleted": true })).expect("serializes"),
        ));
        let _order = self.commit_order.lock().await;
        internal_topics::append_all(&self.log, OFFSETS_TOPIC, records).await?;
        self.groups
            .lock()
            .expect("groups")
            .remove(&(tenant.to_owned(), group.to_owned()));
        Ok(())
    }

    /// Ids of a tenant's groups, sorted.
    pub fn list(&self, tenant: &str) -> Vec<String> {
        let groups = self.groups.lock().expect("groups");
        let mut ids: Vec<String> = groups
            .keys()
            .filter(|(t, _)| t == tenant)
            .map(|(_, g)| g.clone())
            .collect();
        ids.sort();
        ids
    }

    /// The partitions a group is about: those it has committed, its members' subscriptions
    /// and its configured topics.
    fn partitions_of(&self, tenant: &str, g: &Group) -> BTreeSet<TopicPartition> {
        let mut topics: BTreeSet<String> = g.config.topics.iter().cloned().collect();
        topics.extend(g.membership.subscribed_topics());
        topics.extend(g.instances.values().flat_map(|i| i.assigned_topics()));
        let mut out: BTreeSet<TopicPartition> = g.committed.keys().cloned().collect();
        for (t, n) in self.partition_counts(tenant, &topics) {
            out.extend((0..n).map(|p| TopicPartition::new(t.clone(), p)));
        }
        out
    }

    fn lag_of(&self, tenant: &str, g: &Group) -> Vec<PartitionLag> {
        self.partitions_of(tenant, g)
            .into_iter()
            .map(|tp| {
                let (start, end) = self
                    .log
                    .offsets(&log_name(tenant, &tp.topic), tp.partition)
                    .unwrap_or((0, 0));
                let committed = g.committed.get(&tp).map(|c| c.offset);
                // Without a commit, the group would start where its reset policy says.
                let from = committed.unwrap_or(match g.config.config.auto_offset_reset {
                    OffsetReset::Earliest => start,
                    OffsetReset::Latest => end,
                });
                PartitionLag {
                    owner: g.membership.owner(&tp).map(str::to_owned).or_else(|| {
                        g.instances
                            .values()
                            .find(|i| i.manually_assigned(&tp))
                            .map(|i| i.id.clone())
                    }),
                    committed,
                    log_end_offset: end,
                    lag: end.saturating_sub(from.max(start)),
                    topic: tp.topic,
                    partition: tp.partition,
                }
            })
            .collect()
    }

    /// `GET /v1/groups/{id}`: configuration, state, members and what they own, offsets, lag.
    pub fn describe(&self, tenant: &str, group: &str) -> Result<Value, GroupError> {
        let groups = self.groups.lock().expect("groups");
        let g = groups
            .get(&(tenant.to_owned(), group.to_owned()))
            .ok_or_else(|| GroupError::GroupNotFound(group.to_owned()))?;
        let members: Vec<Value> = g
            .instances
            .values()
            .map(|i| {
                let member = g.membership.member(&i.id);
                let assignment: Vec<&TopicPartition> = match &i.subscription {
                    consumers::Subscription::Assigned(tps) => tps.iter().collect(),
                    _ => Vec::new(),
                };
                json!({
                    "instance_id": i.id,
                    "format": i.format.name(),
                    "subscription": i.subscription.describe(),
                    "owned": if member.is_some() { json!(g.membership.owned(&i.id)) } else { json!(assignment) },
                    "target": g.membership.target(&i.id),
                    "joined_ms": member.map(|m| m.joined_ms),
                    "last_seen_ms": i.last_seen_ms,
                    "session_timeout_ms": i.session_timeout_ms,
                })
            })
            .collect();
        let lag = self.lag_of(tenant, g);
        let total: u64 = lag.iter().map(|l| l.lag).sum();
        Ok(json!({
            "group_id": group,
            "state": state_of(g),
            "generation": g.membership.generation,
            "assignment_strategy": g.membership.strategy.name(),
            "declared": g.declared,
            "config": g.config,
            "members": members,
            "partitions": lag,
            "total_lag": total,
        }))
    }

    /// Per tenant, group and partition: the lag (for `/metrics`).
    pub fn lag_snapshot(&self) -> Vec<(String, String, PartitionLag)> {
        let groups = self.groups.lock().expect("groups");
        let mut out = Vec::new();
        for ((tenant, id), g) in groups.iter() {
            for l in self.lag_of(tenant, g) {
                out.push((tenant.clone(), id.clone(), l));
            }
        }
        out.sort_by(|a, b| {
            (&a.0, &a.1, &a.2.topic, a.2.partition).cmp(&(&b.0, &b.1, &b.2.topic, b.2.partition))
        });
        out
    }

    /// Set an empty group's offsets (`POST /v1/groups/{id}/offsets/reset`).
    pub async fn reset(
        &self,
        tenant: &str,
        group: &str,
        to: ResetTo,
        topics: Option<Vec<String>>,
    ) -> Result<Vec<(TopicPartition, u64)>, GroupError> {
        let tps: Vec<TopicPartition> = {
            let groups = self.groups.lock().expect("groups");
            let g = groups
                .get(&(tenant.to_owned(), group.to_owned()))
                .ok_or_else(|| GroupError::GroupNotFound(group.to_owned()))?;
            if !g.instances.is_empty() {
                return Err(GroupError::NotEmpty(
                    g.instances.len(),
                    "resetting its offsets",
                ));
            }
            let all = self.partitions_of(tenant, g);
            match &topics {
                None => all.into_iter().collect(),
                Some(ts) => {
                    let wanted: BTreeSet<String> = ts.iter().cloned().collect();
                    let counts = self.partition_counts(tenant, &wanted);
                    if let Some(missing) = wanted.iter().find(|t| !counts.contains_key(*t)) {
                        return Err(ApiError::topic_not_found(missing).into());
                    }
                    counts
                        .into_iter()
                        .flat_map(|(t, n)| (0..n).map(move |p| TopicPartition::new(t.clone(), p)))
                        .collect()
                }
            }
        };
        let mut offsets = Vec::with_capacity(tps.len());
        for tp in tps {
            let full = log_name(tenant, &tp.topic);
            let Ok((start, end)) = self.log.offsets(&full, tp.partition) else {
                continue;
            };
            let offset = match to {
                ResetTo::Earliest => start,
                ResetTo::Latest => end,
                ResetTo::Offset(o) => o.clamp(start, end),
                ResetTo::Timestamp(ms) => {
                    self.log
                        .offset_for_timestamp(&full, tp.partition, ms)
                        .await?
                }
            };
            offsets.push((tp, offset));
        }
        let stored = offsets
            .iter()
            .map(|(tp, o)| {
                (
                    tp.clone(),
                    Some(Committed {
                        offset: *o,
                        metadata: "reset".into(),
                        commit_ms: now_ms(),
                    }),
                )
            })
            .collect();
        self.store_offsets(tenant, group, stored).await?;
        Ok(offsets)
    }

    /// Drop members and instances not heard from within their session timeout, and check lag
    /// against thresholds (raising and clearing alerts in `_alerts`). Run periodically.
    pub async fn sweep(&self, now: i64) {
        let mut alerts = Vec::new();
        {
            let mut groups = self.groups.lock().expect("groups");
            let keys: Vec<Key> = groups.keys().cloned().collect();
            for key in keys {
                let g = groups.get_mut(&key).expect("key");
                let tenant = key.0.clone();
                let expired: Vec<String> = g
                    .instances
                    .values()
                    .filter(|i| now - i.last_seen_ms > i.session_timeout_ms as i64)
                    .map(|i| i.id.clone())
                    .collect();
                for id in &expired {
                    tracing::info!(
                        tenant,
                        group = key.1,
                        instance = id,
                        "consumer instance timed out"
                    );
                    g.instances.remove(id);
                }
                let topics = g.membership.subscribed_topics();
                let counts = self.partition_counts(&tenant, &topics);
                g.membership.expire(now, || counts);
                let threshold = g.config.monitoring.lag_threshold;
                if threshold > 0
                    && now - g.last_lag_check_ms >= g.config.monitoring.lag_check_interval as i64
                {
                    g.last_lag_check_ms = now;
                    for l in self.lag_of(&tenant, g) {
                        let tp = TopicPartition::new(l.topic.clone(), l.partition);
                        let above = l.lag > threshold;
                        let was = g.lagging.contains(&tp);
                        if above != was {
                            if above {
                                g.lagging.insert(tp);
                            } else {
                                g.lagging.remove(&tp);
                            }
                            alerts.push(json!({
                                "type": if above { "sluice.group.lag.exceeded" } else { "sluice.group.lag.recovered" },
                                "tenant": tenant, "group": key.1,
                                "topic": l.topic, "partition": l.partition,
                                "lag": l.lag, "threshold": threshold, "time_ms": now,
                            }));
                        }
                    }
                }
            }
        }
        for a in alerts {
            tracing::warn!(alert = %a, "consumer group lag");
            let key = format!(
                "lag/{}/{}/{}/{}",
                a["tenant"].as_str().unwrap_or_default(),
                a["group"].as_str().unwrap_or_default(),
                a["topic"].as_str().unwrap_or_default(),
                a["partition"]
            );
            if let Err(e) = internal_topics::append(
                &self.log,
                ALERTS_TOPIC,
                key,
                serde_json::to_vec(&a).expect("serializes"),
            )
            .await
            {
                tracing::warn!(error = %e.message, "writing an alert");
            }
        }
    }

    /// Sweep every `every` until the process ends.
    pub fn spawn_sweeper(self: &Arc<Self>, every: Duration) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(groups) = me.upgrade() else { return };
                groups.sweep(now_ms()).await;
            }
        });
    }
}

pub(crate) fn state_of(g: &Group) -> GroupState {
    if g.instances.is_empty() {
        GroupState::Empty
    } else if g.membership.members().is_empty() {
        // Only manually assigned consumers: nothing to balance.
        GroupState::Stable
    } else {
        g.membership.state()
    }
}

/// Where a reset moves a group's offsets.
#[derive(Debug, Clone, Copy)]
pub enum ResetTo {
    Earliest,
    Latest,
    Offset(u64),
    Timestamp(i64),
}
