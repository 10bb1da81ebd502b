//! Counters the log keeps about itself; the server renders them for Prometheus.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Upper bounds (bytes) of the flush-size histogram buckets.
pub const FLUSH_BYTES_BUCKETS: [u64; 10] = [
    1 << 10,
    4 << 10,
    16 << 10,
    64 << 10,
    256 << 10,
    1 << 20,
    4 << 20,
    16 << 20,
    64 << 20,
    u64::MAX,
];

#[derive(Default)]
pub struct LogMetrics {
    pub flushes: AtomicU64,
    pub flush_records: AtomicU64,
    pub flush_bytes: AtomicU64,
    pub flush_bytes_buckets: [AtomicU64; 10],
    pub commits: AtomicU64,
    pub checkpoints: AtomicU64,
    pub store_puts: AtomicU64,
    pub store_gets: AtomicU64,
    pub store_lists: AtomicU64,
    pub store_deletes: AtomicU64,
    pub store_errors: AtomicU64,
    pub duplicates: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub data_objects_deleted: AtomicU64,
    /// Small objects merged into larger ones (object stores).
    pub merges: AtomicU64,
    /// Compaction runs committed.
    pub compactions: AtomicU64,
    /// Bytes of runs compaction replaced, less the bytes it wrote.
    pub compacted_bytes_reclaimed: AtomicU64,
    /// Time spent making flush data durable (microseconds, summed).
    pub data_write_us: AtomicU64,
    /// Time spent creating commit records (microseconds, summed).
    pub commit_us: AtomicU64,
}

impl LogMetrics {
    pub fn observe_flush(&self, records: u64, bytes: u64) {
        self.flushes.fetch_add(1, Relaxed);
        self.flush_records.fetch_add(records, Relaxed);
        self.flush_bytes.fetch_add(bytes, Relaxed);
        let i = FLUSH_BYTES_BUCKETS
            .iter()
            .position(|b| bytes <= *b)
            .unwrap_or(FLUSH_BYTES_BUCKETS.len() - 1);
        self.flush_bytes_buckets[i].fetch_add(1, Relaxed);
    }

    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }
}
