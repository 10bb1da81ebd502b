//! A bounded memory cache of recently written runs, so tailing readers never touch the store.
//!
//! Keyed by where a run lives (data object and position), filled by the writer right after a
//! commit, evicted oldest-first: tail readers want exactly the newest data.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

use crate::paths::DataId;

pub struct RunCache {
    capacity: usize,
    size: usize,
    runs: HashMap<(DataId, u64), Bytes>,
    order: VecDeque<(DataId, u64)>,
}

impl RunCache {
    pub fn new(capacity: usize) -> RunCache {
        RunCache {
            capacity,
            size: 0,
            runs: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn insert(&mut self, data: DataId, pos: u64, bytes: Bytes) {
        if bytes.len() > self.capacity {
            return;
        }
        self.size += bytes.len();
        if let Some(old) = self.runs.insert((data, pos), bytes) {
            self.size -= old.len();
        } else {
            self.order.push_back((data, pos));
        }
        while self.size > self.capacity {
            let Some(k) = self.order.pop_front() else {
                break;
            };
            if let Some(b) = self.runs.remove(&k) {
                self.size -= b.len();
            }
        }
    }

    pub fn get(&self, data: DataId, pos: u64) -> Option<Bytes> {
        self.runs.get(&(data, pos)).cloned()
    }

    /// Forget every run of a deleted data object.
    pub fn forget(&mut self, data: DataId) {
        let before = self.runs.len();
        self.runs.retain(|(d, _), _| *d != data);
        if self.runs.len() != before {
            self.order.retain(|(d, _)| *d != data);
            self.size = self.runs.values().map(Bytes::len).sum();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_oldest_first_within_capacity() {
        let id = DataId { epoch: 1, seq: 1 };
        let mut c = RunCache::new(10);
        c.insert(id, 0, Bytes::from_static(b"aaaa"));
        c.insert(id, 4, Bytes::from_static(b"bbbb"));
        c.insert(id, 8, Bytes::from_static(b"cccc"));
        assert!(c.get(id, 0).is_none());
        assert_eq!(c.get(id, 4).unwrap(), "bbbb");
        assert_eq!(c.get(id, 8).unwrap(), "cccc");
        c.forget(id);
        assert!(c.get(id, 8).is_none());
    }
}
