//! The log's errors. Each variant tells the caller what to do: fix the request (`TopicNotFound`,
//! `InvalidPartition`, ...), retry later (`Storage`), or stop writing (`Fenced`).

use crate::format::FormatError;
use crate::topic::ConfigError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    #[error("topic `{0}` already exists")]
    TopicExists(String),
    #[error("topic `{0}` does not exist")]
    TopicNotFound(String),
    #[error("invalid topic name `{0}`: use 1-249 characters of [a-zA-Z0-9._-]")]
    InvalidTopicName(String),
    #[error("topic `{topic}` has {partitions} partitions; partition {partition} does not exist")]
    InvalidPartition {
        topic: String,
        partition: u32,
        partitions: u32,
    },
    #[error(
        "partition count must be between 1 and {max} and can only grow (asked {asked}, has {has})"
    )]
    InvalidPartitionCount { asked: u32, has: u32, max: u32 },
    #[error(transparent)]
    InvalidConfig(#[from] ConfigError),
    #[error("offset {offset} is out of range [{start}, {end}]")]
    OffsetOutOfRange { offset: u64, start: u64, end: u64 },
    #[error("this writer (epoch {epoch}) was fenced by epoch {by}: another host owns the log now")]
    Fenced { epoch: u64, by: u64 },
    #[error("the log is closed")]
    Closed,
    #[error("object store: {0}")]
    Storage(String),
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A sealed (encrypted) topic's key is missing or wrong.
    #[error("encrypted data: {0}")]
    Sealed(String),
}

impl From<FormatError> for LogError {
    fn from(e: FormatError) -> Self {
        match e {
            FormatError::Sealed(s) => LogError::Sealed(s.to_string()),
            e => LogError::Corrupt(e.to_string()),
        }
    }
}

impl From<object_store::Error> for LogError {
    fn from(e: object_store::Error) -> Self {
        LogError::Storage(e.to_string())
    }
}
