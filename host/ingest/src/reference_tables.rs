//! What guests reach through their host imports: reference tables kept from tenants' topics
//! (the newest value per key, as a compacted topic reads), and the tenant's schema registry.
//!
//! Guests run on blocking threads, so a lookup catches its table up with the log right there
//! (reading only what was appended since the last lookup), and then answers from memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sluice_log::Log;
use sluice_runtime::{HostServices, Schema};

use crate::schemas::Registry;

/// The most entries one table keeps; past it, lookups of keys not yet seen find nothing.
const MAX_ENTRIES: usize = 1_000_000;

#[derive(Default)]
struct Table {
    /// Per partition, the next offset to read.
    next: Vec<u64>,
    entries: HashMap<String, Vec<u8>>,
}

pub struct GatewayServices {
    log: Log,
    registry: Arc<Registry>,
    tables: Mutex<HashMap<String, Arc<Mutex<Table>>>>,
}

impl GatewayServices {
    pub fn new(log: Log, registry: Arc<Registry>) -> GatewayServices {
        GatewayServices {
            log,
            registry,
            tables: Mutex::new(HashMap::new()),
        }
    }

    fn catch_up(&self, topic: &str, table: &mut Table) {
        let Some(partitions) = self
            .log
            .inspect_topic(topic, |meta, _| meta.partitions as usize)
        else {
            return;
        };
        if table.next.len() < partitions {
            table.next.resize(partitions, 0);
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for p in 0..partitions {
            let Ok((start, end)) = self.log.offsets(topic, p as u32) else {
                continue;
            };
            let mut at = table.next[p].max(start);
            while at < end {
                let read = handle.block_on(self.log.read(topic, p as u32, at, 10_000, 8 << 20));
                let Ok(r) = read else { break };
                for s in r.records {
                    let Some(key) = &s.record.key else { continue };
                    let key = String::from_utf8_lossy(key).into_owned();
                    // A null value (or, as written before null existed, an empty one) deletes.
                    if s.record.value_bytes().is_empty() {
                        table.entries.remove(&key);
                    } else if table.entries.len() < MAX_ENTRIES || table.entries.contains_key(&key)
                    {
                        table.entries.insert(key, s.record.value_bytes().to_vec());
                    }
                }
                if r.next_offset <= at {
                    break;
                }
                at = r.next_offset;
            }
            table.next[p] = at;
        }
    }
}

impl HostServices for GatewayServices {
    fn lookup(&self, tenant: &str, table: &str, key: &str) -> Option<Vec<u8>> {
        if !sluice_log::valid_topic_name(table) || table.starts_with('_') {
            return None;
        }
        let topic = sluice_tenancy::log_name(tenant, table);
        let t = self
            .tables
            .lock()
            .expect("tables")
            .entry(topic.clone())
            .or_default()
            .clone();
        let mut t = t.lock().expect("table");
        self.catch_up(&topic, &mut t);
        t.entries.get(key).cloned()
    }

    fn schema_by_id(&self, tenant: &str, id: u32) -> Option<Schema> {
        self.registry.guest_by_id(tenant, id)
    }

    fn latest_schema(&self, tenant: &str, subject: &str) -> Option<Schema> {
        self.registry.guest_latest(tenant, subject)
    }

    fn schema_in_subject(&self, tenant: &str, subject: &str, id: u32) -> Option<Schema> {
        self.registry.guest_in_subject(tenant, subject, id)
    }
}
