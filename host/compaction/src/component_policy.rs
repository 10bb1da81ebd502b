//! A compaction policy run by a WebAssembly component (the `compaction-policy` world).
//!
//! The log shows the policy every record of the range twice. On the first pass this adapter
//! groups the records by key (offset, timestamp, headers, size, tombstone flag: never the
//! value); before the second it hands the groups to the component in bounded calls and keeps
//! the offsets it answered `true` for. Keyless records always survive (nothing supersedes
//! them). An answer of the wrong shape, a trap or a timeout fails the run: the topic is left
//! as it was and the run is tried again later.

use std::collections::HashMap;
use std::collections::HashSet;

use bytes::Bytes;
use sluice_log::compaction::{Policy, PolicyError, PolicyFuture, RecordView};
use sluice_runtime::{Candidate, CompactionContext, Header, KeyGroup, Stage};

/// Records one run may group (what the adapter holds in memory); past it the run ends early
/// (at a run boundary) and the rest waits for the next run.
pub const MAX_CANDIDATES: usize = 500_000;
/// Header bytes one run may hold.
pub const MAX_HEADER_BYTES: usize = 64 << 20;
/// Records per component call.
pub const CANDIDATES_PER_CALL: usize = 8192;

pub struct ComponentPolicy {
    stage: Stage,
    ctx: CompactionContext,
    /// Key → its group's index in `groups`.
    index: HashMap<Bytes, usize, foldhash::fast::RandomState>,
    groups: Vec<KeyGroup>,
    candidates: usize,
    header_bytes: usize,
    /// The offsets that survive, once the component answered.
    kept: Option<HashSet<u64, foldhash::fast::RandomState>>,
}

impl ComponentPolicy {
    pub fn new(stage: Stage, ctx: CompactionContext) -> ComponentPolicy {
        ComponentPolicy {
            stage,
            ctx,
            index: HashMap::default(),
            groups: Vec::new(),
            candidates: 0,
            header_bytes: 0,
            kept: None,
        }
    }

    fn group(&mut self, batch: &[RecordView<'_>]) -> bool {
        for r in batch {
            let Some(key) = r.key else { continue };
            let headers: Vec<Header> = r
                .headers
                .iter()
                .map(|(name, value)| Header {
                    name: name.clone(),
                    value: value.to_vec(),
                })
                .collect();
            self.header_bytes += headers
                .iter()
                .map(|h| h.name.len() + h.value.len())
                .sum::<usize>();
            let size = key.len()
                + r.value.map_or(0, <[u8]>::len)
                + r.headers
                    .iter()
                    .map(|(n, v)| n.len() + v.len())
                    .sum::<usize>();
            let candidate = Candidate {
                offset: r.offset,
                timestamp: r.timestamp,
                headers,
                size: u32::try_from(size).unwrap_or(u32::MAX),
                tombstone: r.tombstone(),
            };
            let i = match self.index.get(key) {
                Some(&i) => i,
                None => {
                    self.groups.push(KeyGroup {
                        key: key.to_vec(),
                        records: Vec::new(),
                    });
                    self.index
                        .insert(Bytes::copy_from_slice(key), self.groups.len() - 1);
                    self.groups.len() - 1
                }
            };
            self.groups[i].records.push(candidate);
            self.candidates += 1;
        }
        self.candidates < MAX_CANDIDATES && self.header_bytes < MAX_HEADER_BYTES
    }

    /// Ask the component about every group, in calls of about [`CANDIDATES_PER_CALL`] records.
    async fn decide(&mut self) -> Result<(), PolicyError> {
        let mut kept = HashSet::default();
        let mut groups = std::mem::take(&mut self.groups).into_iter().peekable();
        self.index.clear();
        while groups.peek().is_some() {
            // About CANDIDATES_PER_CALL records per call (a larger group goes alone).
            let mut call = Vec::new();
            let mut records = 0;
            while let Some(g) = groups.next_if(|_| call.is_empty() || records < CANDIDATES_PER_CALL)
            {
                records += g.records.len();
                call.push(g);
            }
            let (stage, ctx) = (self.stage.clone(), self.ctx.clone());
            let (call, answer) = tokio::task::spawn_blocking(move || {
                let answer = stage.select(&ctx, &call);
                (call, answer)
            })
            .await
            .map_err(|e| PolicyError::Failed(format!("the compactor call panicked: {e}")))?;
            let answer = answer.map_err(|e| PolicyError::Failed(e.to_string()))?;
            for (g, keep) in call.iter().zip(&answer) {
                if keep.len() != g.records.len() {
                    return Err(PolicyError::Failed(format!(
                        "the compactor answered {} times for the {} records of a key",
                        keep.len(),
                        g.records.len()
                    )));
                }
                for (r, k) in g.records.iter().zip(keep) {
                    if *k {
                        kept.insert(r.offset);
                    }
                }
            }
        }
        self.kept = Some(kept);
        Ok(())
    }
}

impl Policy for ComponentPolicy {
    fn observe<'a, 'r: 'a>(&'a mut self, batch: &'a [RecordView<'r>]) -> PolicyFuture<'a, bool> {
        let more = self.group(batch);
        Box::pin(std::future::ready(Ok(more)))
    }

    fn survivors<'a, 'r: 'a>(
        &'a mut self,
        batch: &'a [RecordView<'r>],
    ) -> PolicyFuture<'a, Vec<bool>> {
        Box::pin(async move {
            if self.kept.is_none() {
                self.decide().await?;
            }
            let kept = self.kept.as_ref().expect("decided above");
            Ok(batch
                .iter()
                .map(|r| r.key.is_none() || kept.contains(&r.offset))
                .collect())
        })
    }
}
