//! The record: what the log stores, and what a reader gets back.

use bytes::Bytes;

/// One record as a producer hands it to the log. Offsets are assigned by the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// Partitioning and compaction key; `None` for keyless records.
    pub key: Option<Bytes>,
    /// The payload, opaque to the log. `None` is a null value: in a compacted topic, a
    /// tombstone that deletes its key. An empty value is not null.
    pub value: Option<Bytes>,
    /// Ordered headers; names may repeat, as in Kafka.
    pub headers: Vec<(String, Bytes)>,
    /// Milliseconds since the Unix epoch (producer time, or append time per topic config).
    pub timestamp: i64,
}

/// A record read back from the log, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub partition: u32,
    pub offset: u64,
    pub record: Record,
}

impl Record {
    /// Bytes the record occupies, roughly as stored (used for size limits and metrics).
    pub fn size(&self) -> usize {
        self.key.as_ref().map_or(0, Bytes::len)
            + self.value.as_ref().map_or(0, Bytes::len)
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
            + 16
    }

    /// The value's bytes; a null value reads as empty (for callers that store their own
    /// documents and never write null).
    pub fn value_bytes(&self) -> &[u8] {
        self.value.as_deref().unwrap_or_default()
    }

    /// A null value (a tombstone in a compacted topic).
    pub fn is_null(&self) -> bool {
        self.value.is_none()
    }

    /// The first header with this name.
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}
