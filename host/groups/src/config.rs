//! A consumer group's configuration: the seeds' `ConsumerGroupConfig` shape, with Kafka's
//! defaults for what a group created implicitly (by a REST Proxy consumer) does not say.

use serde::{Deserialize, Serialize};

use super::assignor::Strategy;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OffsetReset {
    Earliest,
    /// Kafka's default.
    #[default]
    Latest,
}

impl OffsetReset {
    pub fn parse(s: &str) -> Option<OffsetReset> {
        match s {
            "earliest" | "smallest" => Some(OffsetReset::Earliest),
            "latest" | "largest" => Some(OffsetReset::Latest),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ErrorHandling {
    #[default]
    #[serde(rename = "continue")]
    Continue,
    #[serde(rename = "dead-letter-queue")]
    DeadLetterQueue,
    #[serde(rename = "retry")]
    Retry,
    #[serde(rename = "pause")]
    Pause,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupConfig {
    pub group_id: String,
    /// Topics the group is meant to read (what `sluice consume --group` subscribes to, and
    /// what lag is reported for before anything was committed).
    #[serde(default)]
    pub topics: Vec<String>,
    #[serde(default)]
    pub config: ConsumerSettings,
    #[serde(default)]
    pub processing: Processing,
    #[serde(default)]
    pub monitoring: Monitoring,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub description: String,
    /// Sluice's addition: `range` or `cooperative-sticky` (the default).
    #[serde(default)]
    pub assignment_strategy: Strategy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsumerSettings {
    /// A member not heard from for this long leaves the group (ms).
    #[serde(default = "defaults::session_timeout")]
    pub session_timeout: u64,
    #[serde(default = "defaults::heartbeat_interval")]
    pub heartbeat_interval: u64,
    #[serde(default)]
    pub auto_offset_reset: OffsetReset,
    /// Default `max_bytes` of a records request.
    #[serde(default = "defaults::max_bytes")]
    pub max_bytes: u64,
    /// Default long-poll time of a records request (ms).
    #[serde(default = "defaults::max_wait")]
    pub max_wait_time_in_ms: u64,
    /// Accepted for compatibility: Sluice never creates topics on subscription.
    #[serde(default)]
    pub allow_auto_topic_creation: bool,
    #[serde(default = "defaults::auto_commit_interval")]
    pub auto_commit_interval: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Processing {
    #[serde(default = "defaults::one")]
    pub concurrency: u32,
    /// The most records one records request returns.
    #[serde(default = "defaults::batch_size")]
    pub batch_size: u32,
    #[serde(default)]
    pub error_handling: ErrorHandling,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Monitoring {
    /// Lag (in events) above which an alert is raised; 0: no alerts.
    #[serde(default)]
    pub lag_threshold: u64,
    #[serde(default = "defaults::lag_check_interval")]
    pub lag_check_interval: u64,
}

mod defaults {
    pub fn session_timeout() -> u64 {
        45_000
    }
    pub fn heartbeat_interval() -> u64 {
        3_000
    }
    pub fn max_bytes() -> u64 {
        1 << 20
    }
    pub fn max_wait() -> u64 {
        500
    }
    pub fn auto_commit_interval() -> u64 {
        5_000
    }
    pub fn one() -> u32 {
        1
    }
    pub fn batch_size() -> u32 {
        500
    }
    pub fn lag_check_interval() -> u64 {
        30_000
    }
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults")
    }
}

impl Default for Processing {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults")
    }
}

impl Default for Monitoring {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults")
    }
}

/// Bounds, as Kafka's brokers set them (`group.min/max.session.timeout.ms`), but with a lower
/// minimum so short-lived tests and edge devices can use short sessions.
pub const MIN_SESSION_MS: u64 = 500;
pub const MAX_SESSION_MS: u64 = 1_800_000;
pub const MAX_BYTES: u64 = 64 << 20;
pub const MAX_WAIT_MS: u64 = 60_000;

/// Group ids follow the topic-name rule: 1-249 of `[a-zA-Z0-9._-]`.
pub fn valid_group_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 249
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl GroupConfig {
    /// A group created implicitly: Kafka's defaults.
    pub fn implicit(group_id: &str) -> GroupConfig {
        GroupConfig {
            group_id: group_id.to_owned(),
            topics: Vec::new(),
            config: ConsumerSettings::default(),
            processing: Processing::default(),
            monitoring: Monitoring::default(),
            owner: String::new(),
            description: String::new(),
            assignment_strategy: Strategy::default(),
        }
    }

    /// Every problem with the values, one message.
    pub fn check(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if !valid_group_id(&self.group_id) {
            problems.push(format!(
                "groupId `{}`: use 1-249 characters of [a-zA-Z0-9._-]",
                self.group_id
            ));
        }
        let c = &self.config;
        if !(MIN_SESSION_MS..=MAX_SESSION_MS).contains(&c.session_timeout) {
            problems.push(format!(
                "config.sessionTimeout must be {MIN_SESSION_MS}..={MAX_SESSION_MS} ms"
            ));
        }
        if c.heartbeat_interval == 0 || c.heartbeat_interval >= c.session_timeout {
            problems
                .push("config.heartbeatInterval must be above 0 and below sessionTimeout".into());
        }
        if c.max_bytes == 0 || c.max_bytes > MAX_BYTES {
            problems.push(format!("config.maxBytes must be 1..={MAX_BYTES}"));
        }
        if c.max_wait_time_in_ms > MAX_WAIT_MS {
            problems.push(format!(
                "config.maxWaitTimeInMs must be at most {MAX_WAIT_MS}"
            ));
        }
        if c.auto_commit_interval == 0 {
            problems.push("config.autoCommitInterval must be above 0".into());
        }
        if self.processing.concurrency == 0 || self.processing.batch_size == 0 {
            problems.push("processing.concurrency and processing.batchSize must be above 0".into());
        }
        if self.monitoring.lag_check_interval < 1_000 {
            problems.push("monitoring.lagCheckInterval must be at least 1000 ms".into());
        }
        for t in &self.topics {
            if !sluice_log::valid_topic_name(t) || t.starts_with('_') {
                problems.push(format!("topics: `{t}` is not a topic name"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_shape_parses_and_defaults_fill_the_rest() {
        let c: GroupConfig = serde_json::from_str(
            r#"{"groupId": "billing", "topics": ["orders"],
                "config": {"sessionTimeout": 30000, "heartbeatInterval": 3000,
                           "autoOffsetReset": "earliest", "maxBytes": 1048576,
                           "maxWaitTimeInMs": 100, "allowAutoTopicCreation": false,
                           "autoCommitInterval": 1000},
                "processing": {"concurrency": 4, "batchSize": 100,
                               "errorHandling": "dead-letter-queue"},
                "monitoring": {"lagThreshold": 1000, "lagCheckInterval": 60000},
                "owner": "billing-team", "description": "invoices"}"#,
        )
        .unwrap();
        assert_eq!(c.config.auto_offset_reset, OffsetReset::Earliest);
        assert_eq!(c.processing.error_handling, ErrorHandling::DeadLetterQueue);
        assert!(c.check().is_ok());
        let implicit = GroupConfig::implicit("g");
        assert_eq!(implicit.config.session_timeout, 45_000);
        assert_eq!(implicit.config.auto_offset_reset, OffsetReset::Latest);
        assert!(implicit.check().is_ok());
    }

    #[test]
    fn bad_values_are_all_named() {
        let c: GroupConfig = serde_json::from_str(
            r#"{"groupId": "a/b", "config": {"sessionTimeout": 10, "heartbeatInterval": 20},
                "topics": ["_auth"]}"#,
        )
        .unwrap();
        let e = c.check().unwrap_err();
        for word in ["groupId", "sessionTimeout", "heartbeatInterval", "_auth"] {
            assert!(e.contains(word), "{e}");
        }
        assert!(serde_json::from_str::<GroupConfig>(r#"{"groupId":"g","bogus":1}"#).is_err());
        assert!(
            serde_json::from_str::<GroupConfig>(
                r#"{"groupId":"g","config":{"autoOffsetReset":"middle"}}"#
            )
            .is_err()
        );
    }
}
