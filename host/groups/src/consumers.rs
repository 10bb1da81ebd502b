//! Consumer instances (Confluent REST Proxy v2): each is a member of its group once it
//! subscribes, or reads the partitions it was assigned by hand. Positions (the next offset to
//! read, per partition) live here; committed offsets live in the group.
//!
//! Every call of an instance is its heartbeat. A records request is the member's poll: it gives
//! up partitions the rebalance moved away (committing their positions first when auto-commit
//! is on), takes the partitions it was granted (starting at the committed offset, or where
//! `auto.offset.reset` says), then reads.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::Serialize;
use serde_json::{Value, json};
use sluice_log::{LogError, StoredRecord};

use super::{Committed, GroupConfig, GroupError, Groups, OffsetReset, TopicPartition};
use sluice_tenancy::error::ApiError;
use sluice_tenancy::log_name;
use sluice_tenancy::now_ms;

/// How records' keys and values are embedded in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Base64.
    Binary,
    /// The bytes are JSON and are embedded as such.
    Json,
    /// Confluent wire format (magic 0, schema id) with a JSON body, embedded as JSON.
    JsonSchema,
    /// Confluent wire format with an Avro body, embedded in Avro's JSON encoding (the REST
    /// Proxy API decodes it with the registry's schema of that id).
    Avro,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "binary" => Some(Format::Binary),
            "json" => Some(Format::Json),
            "jsonschema" => Some(Format::JsonSchema),
            "avro" => Some(Format::Avro),
            _ => None,
        }
    }

    /// A key or value as this format embeds it. JSON keys that are not JSON (keys written
    /// through Sluice's own produce API are plain text) are given as strings.
    fn embed(self, bytes: Option<&Bytes>, is_key: bool) -> Result<Value, String> {
        // Null is null; empty is "" in binary (base64 of nothing) and null in the formats
        // that cannot hold nothing, as Kafka's deserializers give it.
        let Some(b) = bytes.filter(|b| !b.is_empty() || self == Format::Binary) else {
            return Ok(Value::Null);
        };
        match self {
            Format::Binary => Ok(Value::String(STANDARD.encode(b))),
            Format::Json => match serde_json::from_slice(b) {
                Ok(v) => Ok(v),
                Err(_) if is_key => Ok(Value::String(String::from_utf8_lossy(b).into_owned())),
                Err(e) => Err(format!("the value is not JSON ({e})")),
            },
            // Keys go as JSON (or text); values are decoded by the caller, who has the schemas.
            Format::Avro if is_key => Format::Json.embed(Some(b), true),
            Format::Avro => Err("Avro values need the schema registry".into()),
            Format::JsonSchema => {
                if b.len() < 5 || b[0] != 0 {
                    if is_key {
                        return Format::Json.embed(Some(b), true);
                    }
                    return Err("the value is not in the schema registry's wire format".into());
                }
                serde_json::from_slice(&b[5..])
                    .map_err(|e| format!("the value's body is not JSON ({e})"))
            }
        }
    }

    pub fn embed_record(self, topic: &str, r: &StoredRecord) -> Result<ConsumedRecord, String> {
        self.embed_record_with(topic, r, |b| self.embed(b, false))
    }

    /// The record, its value shown by `value` (for formats that need more than the bytes).
    pub fn embed_record_with(
        self,
        topic: &str,
        r: &StoredRecord,
        value: impl FnOnce(Option<&Bytes>) -> Result<Value, String>,
    ) -> Result<ConsumedRecord, String> {
        // Null stays null and empty stays empty, as in Kafka.
        let value = value(r.record.value.as_ref()).map_err(|e| {
            format!(
                "record {topic}/{}/{} cannot be read as {}: {e}; read it with a binary consumer",
                r.partition,
                r.offset,
                self.name()
            )
        })?;
        Ok(ConsumedRecord {
            topic: topic.to_owned(),
            key: self.embed(r.record.key.as_ref(), true)?,
            value,
            partition: r.partition,
            offset: r.offset,
            timestamp: r.record.timestamp,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Binary => "binary",
            Format::Json => "json",
            Format::JsonSchema => "jsonschema",
            Format::Avro => "avro",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Subscription {
    None,
    Topics(BTreeSet<String>),
    /// A regular expression over the tenant's topic names (whole-name match).
    Pattern(String, regex::Regex),
    /// Partitions chosen by the consumer, outside the group's balancing.
    Assigned(BTreeSet<TopicPartition>),
}

impl Subscription {
    pub fn describe(&self) -> Value {
        match self {
            Subscription::None => Value::Null,
            Subscription::Topics(t) => json!({ "topics": t }),
            Subscription::Pattern(p, _) => json!({ "topic_pattern": p }),
            Subscription::Assigned(tps) => json!({ "partitions": tps }),
        }
    }
}

/// A consumer instance's settings, from its creation request.
#[derive(Debug, Clone)]
pub struct InstanceSettings {
    /// The API key creating it: only that key (or its tenant's admin) may use the instance.
    pub owner: String,
    pub name: Option<String>,
    pub format: Format,
    pub auto_offset_reset: Option<OffsetReset>,
    pub auto_commit: bool,
    pub request_wait_ms: Option<u64>,
    pub min_bytes: Option<u64>,
}

#[derive(Debug)]
pub struct Instance {
    pub id: String,
    /// The key id that created it.
    pub owner: String,
    pub format: Format,
    pub reset: OffsetReset,
    pub auto_commit: bool,
    pub request_wait_ms: Option<u64>,
    pub subscription: Subscription,
    pub positions: BTreeMap<TopicPartition, u64>,
    pub last_seen_ms: i64,
    pub session_timeout_ms: u64,
    last_commit_ms: i64,
    /// One records request at a time per instance.
    reading: Arc<tokio::sync::Mutex<()>>,
    /// Where the next read starts, so no partition starves the others.
    rotation: usize,
}

impl Instance {
    pub fn manually_assigned(&self, tp: &TopicPartition) -> bool {
        matches!(&self.subscription, Subscription::Assigned(s) if s.contains(tp))
    }

    pub fn assigned_topics(&self) -> Vec<String> {
        match &self.subscription {
            Subscription::Assigned(s) => s.iter().map(|tp| tp.topic.clone()).collect(),
            _ => Vec::new(),
        }
    }
}

/// What a records request reads, decided under the lock.
struct Plan {
    parts: Vec<(TopicPartition, u64)>,
    /// Positions of revoked partitions (auto-commit), applied already, to store.
    commit: Vec<(TopicPartition, Option<Committed>)>,
}

/// Commit positions in memory at once (see [`Groups::store_applied_offsets`]); returns them
/// to be stored.
fn apply_positions(
    g: &mut super::Group,
    positions: Vec<(TopicPartition, u64)>,
) -> Vec<(TopicPartition, Option<Committed>)> {
    let now = now_ms();
    positions
        .into_iter()
        .map(|(tp, offset)| {
            let c = Committed {
                offset,
                metadata: String::new(),
                commit_ms: now,
            };
            g.committed.insert(tp.clone(), c.clone());
            (tp, Some(c))
        })
        .collect()
}

/// A records request's limits.
pub struct ReadLimits {
    pub max_bytes: Option<u64>,
    pub timeout_ms: Option<u64>,
}

/// A record as a REST Proxy consumer receives it.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumedRecord {
    pub topic: String,
    pub key: Value,
    pub value: Value,
    pub partition: u32,
    pub offset: u64,
    pub timestamp: i64,
}

impl Groups {
    fn with_instance<T>(
        &self,
        tenant: &str,
        group: &str,
        instance: &str,
        f: impl FnOnce(&Groups, &mut super::Group, &str) -> Result<T, GroupError>,
    ) -> Result<T, GroupError> {
        let mut groups = self.groups.lock().expect("groups");
        let not_found = || GroupError::InstanceNotFound {
            group: group.to_owned(),
            instance: instance.to_owned(),
        };
        let g = groups
            .get_mut(&(tenant.to_owned(), group.to_owned()))
            .ok_or_else(not_found)?;
        let i = g.instances.get_mut(instance).ok_or_else(not_found)?;
        i.last_seen_ms = now_ms();
        f(self, g, instance)
    }

    /// May the key `key_id` (a tenant admin when `admin`) use this instance? Only the key that
    /// created it, or its tenant's admin: another key of the tenant cannot read, seek or commit
    /// through it.
    pub fn authorize_instance(
        &self,
        tenant: &str,
        group: &str,
        instance: &str,
        key_id: &str,
        admin: bool,
    ) -> Result<(), GroupError> {
        let groups = self.groups.lock().expect("groups");
        let owner = groups
            .get(&(tenant.to_owned(), group.to_owned()))
            .and_then(|g| g.instances.get(instance))
            .map(|i| i.owner.clone())
            .ok_or_else(|| GroupError::InstanceNotFound {
                group: group.to_owned(),
                instance: instance.to_owned(),
            })?;
        if admin || owner == key_id {
            Ok(())
        } else {
            Err(GroupError::Api(ApiError::forbidden(format!(
                "consumer instance `{instance}` belongs to another API key"
            ))))
        }
    }

    /// `POST /consumers/{group}`: a new instance; returns its id.
    pub fn create_instance(
        &self,
        tenant: &str,
        group: &str,
        settings: InstanceSettings,
    ) -> Result<String, GroupError> {
        if !super::config::valid_group_id(group) {
            return Err(GroupError::InvalidConfig(format!(
                "group `{group}`: use 1-249 characters of [a-zA-Z0-9._-]"
            )));
        }
        let id = settings
            .name
            .clone()
            .unwrap_or_else(|| format!("rest-consumer-{}", uuid::Uuid::new_v4()));
        if !super::config::valid_group_id(&id) {
            return Err(GroupError::InvalidConfig(format!(
                "name `{id}`: use 1-249 characters of [a-zA-Z0-9._-]"
            )));
        }
        let mut groups = self.groups.lock().expect("groups");
        let g = groups
            .entry((tenant.to_owned(), group.to_owned()))
            .or_insert_with(|| super::Group::new(GroupConfig::implicit(group), false));
        if g.instances.contains_key(&id) {
            return Err(GroupError::InstanceExists(id));
        }
        let now = now_ms();
        g.instances.insert(
            id.clone(),
            Instance {
                id: id.clone(),
                owner: settings.owner,
                format: settings.format,
                reset: settings
                    .auto_offset_reset
                    .unwrap_or(g.config.config.auto_offset_reset),
                auto_commit: settings.auto_commit,
                request_wait_ms: settings.request_wait_ms,
                subscription: Subscription::None,
                positions: BTreeMap::new(),
                last_seen_ms: now,
                session_timeout_ms: g.config.config.session_timeout,
                last_commit_ms: now,
                reading: Arc::new(tokio::sync::Mutex::new(())),
                rotation: 0,
            },
        );
        Ok(id)
    }

    /// `DELETE /consumers/{group}/instances/{instance}`: leave the group, committing positions
    /// first when auto-commit is on.
    pub async fn delete_instance(
        &self,
        tenant: &str,
        group: &str,
        instance: &str,
    ) -> Result<(), GroupError> {
        let commit = self.with_instance(tenant, group, instance, |me, g, id| {
            let i = g.instances.remove(id).expect("checked");
            let topics = g.membership.subscribed_topics();
            g.membership.leave(id, me.partition_counts(tenant, &topics));
            Ok(if i.auto_commit {
                apply_positions(g, i.positions.into_iter().collect())
            } else {
                Vec::new()
            })
        })?;
        self.store_applied_offsets(tenant, group, commit).await
    }

    /// The instance's embedded format.
    pub fn format_of(
        &self,
        tenant: &str,
        group: &str,
        instance: &str,
    ) -> Result<Format, GroupError> {
        self.with_instance(tenant, group, instance, |_, g, id| {
            Ok(g.instances[id].format)
        })
    }

    /// `POST .../subscription`: topics or a pattern. Joins the group (a rebalance).
    pub fn subscribe(
        &self,
        tenant: &str,
        group: &str,
        instance: &str,
        topics: Option<Vec<String>>,
        pattern: Option<String>,
    ) -> Result<(), GroupError> {
        let subscription = match (topics, pattern) {
            (Some(t), None) if !t.is_empty() => {
                let set: BTreeSet<String> = t.into_iter().collect();
                let counts = self.partition_counts(tenant, &set);
                if let Some(missing) = set.iter().find(|t| !counts.contains_key(*t)) {
                    return Err(sluice_tenancy::error::ApiError::topic_not_found(missing).into());
                }
                Subscription::Topics(set)
            }
            (None, Some(p)) => {
                let re = regex::Regex::new(&format!("^(?:{p})$")).map_err(|e| {
                    GroupError::Api(sluice_tenancy::error::ApiError::invalid(format!(
                        "topic_pattern is not a regular expression: {e}"
                    )))
                })?;
                Subscription::Pattern(p, re)
            }
            _ => {
                return Err(GroupError::Api(sluice_tenancy::error::ApiError::invalid(
                    "give either `topics` (a non-empty list) or `topic_pattern`",
                )));
            }
        };
        self.with_instance(tenant, group, instance, |me, g, id| {
            let i = g.instances.get_mut(id).expect("checked");
            if matches!(i.subscription, Subscription::Assigned(_)) {
                return Err(GroupError::IllegalState(
                    "Subscription to topics, partitions and pattern are mutually exclusive".into(),
                ));
            }
            i.subscription = subscription;
            let topics = me.resolve(tenant, &i.subscription);
            let timeout = i.session_timeout_ms;
            let mut all = g.membership.subscribed_topics();
            all.extend(topics.iter().cloned());
            let counts = me.partition_counts(tenant, &all);
            g.membership.join(id, topics, timeout, now_ms(), counts);
            Ok(())
        })
    }

    fn resolve(&self, tenant: &str, s: &Subscription) -> BTreeSet<String> {
        match s {
            Subscription::Topics(t) => t.clone(),
            Subscription::Pattern(_, re) => {
                let prefix = format!("{tenant}/");
                self.log
                    .topics(&prefix)
                    .into_iter()
                    .filter_map(|t| t.meta.name.strip_prefix(&prefix).map(str::to_owned))
                    .filter(|t| !t.starts_with('_') && re.is_match(t))
                    .collect()
            }
            _ => BTreeSet::new(),
        }
    }

    pub fn subscription(
        &self,
        tenant: &str,
        group: &str,
        instance: &str,
    ) -> Result<Vec<String>, GroupError> {
        self.with_instance(tenant, group, instance, |me, g, id| {
            let i = &g.instances[id];
            Ok(me.resolve(tenant, &i.subscription).into_iter().collect())
        })
    }

    /// `DELETE .../subscription`: leave the group (positions are dropped, as Kafka's
    /// `unsubscribe` does).
    pub fn unsubscribe(&self, tenant: &str, group: &str, instance: &str) -> Result<(), GroupError> {
        self.with_instance(tenant, group, instance, |me, g, id| {
            let i = g.instances.get_mut(id).expect("checked");
            i.subscription = Subscription::None;
            i.positions.clear();
            let topics = g.membership.subscribed_topics();
            g.membership.leave(id, me.partition_counts(tenant, &topics));
            Ok(())
        })
    }

    /// `POST .../assignments`: read these partitions, outside the group's balancing.
    pub fn assign(
        &self,
        tenant: &str,
        group: &str,
        instance: &str,
        partitions: Vec<TopicPartition>,
    ) -> Result<(), GroupError> {
        let topics: BTreeSet<String> = partitions.iter().map(|tp| tp.topic.clone()).collect();
        let counts = self.partition_counts(tenant, &topics);
        for tp in &partitions {
            match counts.get(&tp.topic) {
                None => {
                    return Err(sluice_tenancy::error::ApiError::topic_not_found(&tp.topic).into());
                }
                Some(n) if tp.partition >= *n => {
                    return Err(GroupError::Api(sluice_tenancy::error::ApiError::new(
                        http::StatusCode::NOT_FOUND,
                        40402,
                        format!("Partition not found: {}/{}", tp.topic, tp.partition),
                    )));
                }
                Some(_) => {}
            }
        }
        self.with_instance(tenant, group, instance, |_, g, id| {
            if g.membership.member(id).is_some() {
                return Err(GroupError::IllegalState(
                    "Subscription to topics, partitions and pattern are mutually exclusive".into(),
                ));
            }
            let i = g.instances.get_mut(id).expect("checked");
            let set: BTreeSet<TopicPartition> = partitions.into_iter().collect();
            i.positions.retain(|tp, _| set.contains(tp));
            i.subscription = if set.is_empty() {
                Subscription::None
            } else {
                Subscription::Assigned(set)
            };
            Ok(())
        })
    }

    /// `GET .../assignments`: what the instance reads now.
    pub fn assignments(
        &self,
        tenant: &str,
        group: &str,
        instance: &str,
    ) -> Result<Vec<TopicPartition>, GroupError> {
        self.with_instance(tenant, group, instance, |_, g, id| {
            Ok(match &g.instances[id].subscription {
                Subscription::Assigned(s) => s.iter().cloned().collect(),
                _ => g.membership.owned(id),
            })
        })
    }

    /// Partitions the instance may read or seek now.
    fn readable(g: &super::Group, id: &str) -> BTreeSet<TopicPartition> {
        match &g.instances[id].subscription {
            Subscription::Assigned(s) => s.clone(),
            _ => g.membership.owned(id).into_iter().collect(),
        }
    }

    /// `POST .../positions` and `.../positions/beginning|end`: seek. `offset: None` = the
    /// beginning, `Some(u64::MAX)` = the end.
    pub fn seek(
        &self,
        tenant: &str,
        group: &str,
        instance: &str,
        seeks: Vec<(TopicPartition, Seek)>,
    ) -> Result<(), GroupError> {
        self.with_instance(tenant, group, instance, |me, g, id| {
            let readable = Self::readable(g, id);
            let mut decided = Vec::with_capacity(seeks.len());
            for (tp, seek) in seeks {
                if !readable.contains(&tp) {
                    return Err(GroupError::IllegalState(format!(
                        "No current assignment for partition {}-{}",
                        tp.topic, tp.partition
                    )));
                }
                let (start, end) = me.log.offsets(&log_name(tenant, &tp.topic), tp.partition)?;
                let offset = match seek {
                    Seek::Beginning => start,
                    Seek::End => end,
                    Seek::To(o) => o,
                };
                decided.push((tp, offset));
            }
            let i = g.instances.get_mut(id).expect("checked");
            i.positions.extend(decided);
            Ok(())
        })
    }

    /// `POST .../offsets`: commit the given offsets, or (`None`) every position.
    pub async fn commit(
        &self,
        tenant: &str,
        group: &str,
        instance: &str,
        offsets: Option<Vec<(TopicPartition, u64, String)>>,
    ) -> Result<(), GroupError> {
        let entries = self.with_instance(tenant, group, instance, |_, g, id| {
            let readable = Self::readable(g, id);
            let i = &g.instances[id];
            match offsets {
                None => Ok(i
                    .positions
                    .iter()
                    .filter(|(tp, _)| readable.contains(*tp))
                    .map(|(tp, o)| (tp.clone(), *o, String::new()))
                    .collect()),
                Some(list) => {
                    if let Some((tp, ..)) = list.iter().find(|(tp, ..)| !readable.contains(tp)) {
                        // Kafka's CommitFailedException: the group has rebalanced.
                        return Err(GroupError::IllegalState(format!(
                            "partition {}-{} is not assigned to this consumer (the group \
                             rebalanced); commit failed",
                            tp.topic, tp.partition
                        )));
                    }
                    Ok(list)
                }
            }
        })?;
        let now = now_ms();
        let offsets = entries
            .into_iter()
            .map(|(tp, offset, metadata)| {
                (
                    tp,
                    Some(Committed {
                        offset,
                        metadata,
                        commit_ms: now,
                    }),
                )
            })
            .collect();
        self.store_offsets(tenant, group, offsets).await
    }

    /// `GET .../offsets`: the group's committed offsets of these partitions.
    pub fn committed(
        &self,
        tenant: &str,
        group: &str,
        instance: &str,
        partitions: Vec<TopicPartition>,
    ) -> Result<Vec<(TopicPartition, Option<Committed>)>, GroupError> {
        self.with_instance(tenant, group, instance, |_, g, _| {
            Ok(partitions
                .into_iter()
                .map(|tp| {
                    let c = g.committed.get(&tp).cloned();
                    (tp, c)
                })
                .collect())
        })
    }

    async fn commit_positions(
        &self,
        tenant: &str,
        group: &str,
        positions: Vec<(TopicPartition, u64)>,
    ) -> Result<(), GroupError> {
        let now = now_ms();
        let offsets = positions
            .into_iter()
            .map(|(tp, offset)| {
                (
                    tp,
                    Some(Committed {
                        offset,
                        metadata: String::new(),
                        commit_ms: now,
                    }),
                )
            })
            .collect();
        self.store_offsets(tenant, group, offsets).await
    }

    /// The member's poll (see the module's documentation), under the lock.
    fn plan(&self, tenant: &str, group: &str, instance: &str) -> Result<Plan, GroupError> {
        self.with_instance(tenant, group, instance, |me, g, id| {
            let now = now_ms();
            let subscription = g.instances[id].subscription.clone();
            let mut commit = Vec::new();
            let readable: Vec<TopicPartition> = match &subscription {
                Subscription::None => {
                    return Err(GroupError::IllegalState(
                        "Consumer is not subscribed to any topics or assigned any partitions"
                            .into(),
                    ));
                }
                Subscription::Assigned(s) => s.iter().cloned().collect(),
                Subscription::Topics(_) | Subscription::Pattern(..) => {
                    let topics = me.resolve(tenant, &subscription);
                    let timeout = g.instances[id].session_timeout_ms;
                    if g.membership.member(id).is_none_or(|m| m.topics != topics) {
                        let mut all = g.membership.subscribed_topics();
                        all.extend(topics.iter().cloned());
                        let counts = me.partition_counts(tenant, &all);
                        g.membership.join(id, topics, timeout, now, counts);
                    } else {
                        let counts = me.partition_counts(tenant, &g.membership.subscribed_topics());
                        g.membership.refresh(counts);
                    }
                    let poll = g.membership.poll(id, now).expect("joined above");
                    let i = g.instances.get_mut(id).expect("checked");
                    let mut given_up = Vec::new();
                    for tp in poll.revoked {
                        if let Some(p) = i.positions.remove(&tp)
                            && i.auto_commit
                        {
                            given_up.push((tp, p));
                        }
                    }
                    commit = apply_positions(g, given_up);
                    poll.owned
                }
            };
            let i = g.instances.get_mut(id).expect("checked");
            let mut parts = Vec::with_capacity(readable.len());
            for tp in readable {
                let position = match i.positions.get(&tp) {
                    Some(p) => *p,
                    None => {
                        let (start, end) =
                            me.log.offsets(&log_name(tenant, &tp.topic), tp.partition)?;
                        let p = match g.committed.get(&tp) {
                            Some(c) if (start..=end).contains(&c.offset) => c.offset,
                            _ => match i.reset {
                                OffsetReset::Earliest => start,
                                OffsetReset::Latest => end,
                            },
                        };
                        i.positions.insert(tp.clone(), p);
                        p
                    }
                };
                parts.push((tp, position));
            }
            if !parts.is_empty() {
                i.rotation = (i.rotation + 1) % parts.len();
                parts.rotate_left(i.rotation);
            }
            Ok(Plan { parts, commit })
        })
    }

    /// `GET .../records`: read from the instance's partitions, long-polling up to the
    /// timeout when there is nothing new. `embed` shows a record (topic, record) as the caller
    /// wants it, or says why it cannot.
    pub async fn read<T>(
        &self,
        tenant: &str,
        group: &str,
        instance: &str,
        limits: ReadLimits,
        embed: impl Fn(&str, &StoredRecord) -> Result<T, String>,
    ) -> Result<Vec<T>, GroupError> {
        let (reading, wait, max_bytes, max_records) =
            self.with_instance(tenant, group, instance, |_, g, id| {
                let i = &g.instances[id];
                let c = &g.config.config;
                Ok((
                    i.reading.clone(),
                    limits
                        .timeout_ms
                        .or(i.request_wait_ms)
                        .unwrap_or(c.max_wait_time_in_ms)
                        .min(super::config::MAX_WAIT_MS),
                    limits
                        .max_bytes
                        .unwrap_or(c.max_bytes)
                        .clamp(1, super::config::MAX_BYTES) as usize,
                    g.config.processing.batch_size as usize,
                ))
            })?;
        let _one_read = reading.lock().await;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait);
        loop {
            let plan = self.plan(tenant, group, instance)?;
            self.store_applied_offsets(tenant, group, plan.commit)
                .await?;
            let mut got: Vec<(TopicPartition, T)> = Vec::new();
            let mut undecodable: Option<String> = None;
            let mut advanced: Vec<(TopicPartition, u64, u64)> = Vec::new();
            let mut bytes = 0usize;
            for (tp, position) in &plan.parts {
                if got.len() >= max_records || bytes >= max_bytes {
                    break;
                }
                let full = log_name(tenant, &tp.topic);
                let read = match self
                    .log
                    .read(
                        &full,
                        tp.partition,
                        *position,
                        max_records - got.len(),
                        max_bytes - bytes,
                    )
                    .await
                {
                    Ok(r) => r,
                    Err(LogError::OffsetOutOfRange { start, end, .. }) => {
                        // Retention passed it, or a seek beyond the end: reset.
                        let reset = self.with_instance(tenant, group, instance, |_, g, id| {
                            Ok(g.instances[id].reset)
                        })?;
                        let to = match reset {
                            OffsetReset::Earliest => start,
                            OffsetReset::Latest => end,
                        };
                        advanced.push((tp.clone(), *position, to));
                        continue;
                    }
                    Err(LogError::TopicNotFound(_)) => continue,
                    Err(e) => return Err(e.into()),
                };
                // Records this consumer's format cannot show stop the read there: the
                // position stays on them, and the consumer gets the error if nothing else.
                let mut next = read.next_offset;
                for r in read.records {
                    match embed(&tp.topic, &r) {
                        Ok(c) => {
                            bytes += r.record.size();
                            got.push((tp.clone(), c));
                        }
                        Err(e) => {
                            next = r.offset;
                            undecodable.get_or_insert(e);
                            break;
                        }
                    }
                }
                if next != *position {
                    advanced.push((tp.clone(), *position, next));
                }
            }
            // Keep what is still ours and unmoved (a rebalance or a seek may have come
            // between); the rest will be read again by whoever owns it.
            let (kept, auto_commit) = self.with_instance(tenant, group, instance, |_, g, id| {
                let readable = Self::readable(g, id);
                let interval = g.config.config.auto_commit_interval as i64;
                let i = g.instances.get_mut(id).expect("checked");
                let mut keep: BTreeSet<TopicPartition> = BTreeSet::new();
                for (tp, from, to) in &advanced {
                    if readable.contains(tp) && i.positions.get(tp) == Some(from) {
                        i.positions.insert(tp.clone(), *to);
                        keep.insert(tp.clone());
                    }
                }
                let now = now_ms();
                let commit = if i.auto_commit && now - i.last_commit_ms >= interval {
                    i.last_commit_ms = now;
                    let changed: Vec<(TopicPartition, u64)> = i
                        .positions
                        .iter()
                        .filter(|(tp, p)| {
                            readable.contains(*tp)
                                && g.committed.get(*tp).map(|c| c.offset) != Some(**p)
                        })
                        .map(|(tp, p)| (tp.clone(), *p))
                        .collect();
                    changed
                } else {
                    Vec::new()
                };
                Ok((keep, commit))
            })?;
            got.retain(|(tp, _)| kept.contains(tp));
            self.commit_positions(tenant, group, auto_commit).await?;
            if got.is_empty()
                && let Some(e) = undecodable
            {
                return Err(GroupError::Api(ApiError::new(
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    50002,
                    e,
                )));
            }
            let now = tokio::time::Instant::now();
            if !got.is_empty() || now >= deadline {
                return Ok(got.into_iter().map(|(_, c)| c).collect());
            }
            // Wait for new records on any of the partitions, a slice at a time so a rebalance
            // (which this instance's poll takes part in) is not held up.
            let slice = (deadline - now).min(Duration::from_millis(100));
            if plan.parts.is_empty() {
                tokio::time::sleep(slice).await;
            } else {
                let waits = plan.parts.iter().map(|(tp, position)| {
                    let full = log_name(tenant, &tp.topic);
                    let log = self.log.clone();
                    let (p, o) = (tp.partition, *position);
                    Box::pin(async move { log.wait_for(&full, p, o, slice).await })
                });
                let _ = futures::future::select_all(waits).await;
            }
        }
    }
}

/// Where a seek goes.
#[derive(Debug, Clone, Copy)]
pub enum Seek {
    Beginning,
    End,
    To(u64),
}
