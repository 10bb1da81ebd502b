//! The one place that knows object keys. Nothing else formats or parses a key.
//!
//! ```text
//! wal/{seq:020}.json               commit records, created with PutMode::Create (the fence);
//!                                  on a local directory, a hard link to the writer's identity
//! wal/writers/{epoch:010}-{nonce}-{generation:08}.json   local only: a writer's identity
//!                                  (epoch and nonce); a new generation every so many links
//! wal/logs/{epoch:010}-{nonce}-{first_seq:020}.log   local only: that writer's commit records
//! manifest/{seq:020}.json          checkpoints of the whole log state as of commit `seq`
//! dedup/{seq:020}.json             event ids committed up to checkpoint `seq` (idempotency)
//! data/{epoch:010}-{seq:020}.seg   data objects: appended segments (local) or flush objects (S3)
//! ```
//! Zero-padded numbers make lexical order numeric order, so a listing is already sorted.

use std::path::{Path as FsPath, PathBuf};

use object_store::path::Path;
use serde::{Deserialize, Serialize};

pub const WAL_DIR: &str = "wal";
pub const MANIFEST_DIR: &str = "manifest";
pub const DATA_DIR: &str = "data";
pub const DEDUP_DIR: &str = "dedup";

/// Names one data object: the writer epoch that created it and the commit sequence it started at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DataId {
    pub epoch: u64,
    pub seq: u64,
}

pub fn commit(seq: u64) -> Path {
    Path::from(format!("{WAL_DIR}/{seq:020}.json"))
}

/// Local only: the identity file of a writer, the target of its `wal/{seq}` hard links.
pub fn local_writer(root: &FsPath, epoch: u64, nonce: u64, generation: u64) -> PathBuf {
    root.join(format!(
        "{WAL_DIR}/writers/{epoch:010}-{nonce:016x}-{generation:08}.json"
    ))
}

/// Local only: `(epoch, nonce, generation)` of a writer identity file name (names written
/// before generations existed read as generation 0).
pub fn parse_local_writer(name: &str) -> Option<(u64, u64, u64)> {
    let mut parts = name.strip_suffix(".json")?.split('-');
    let epoch = parts.next()?.parse().ok()?;
    let nonce = u64::from_str_radix(parts.next()?, 16).ok()?;
    let generation = match parts.next() {
        Some(g) => g.parse().ok()?,
        None => 0,
    };
    parts.next().is_none().then_some((epoch, nonce, generation))
}

/// Local only: a writer's commit-record log starting at `first_seq`.
pub fn local_commit_log(root: &FsPath, epoch: u64, nonce: u64, first_seq: u64) -> PathBuf {
    root.join(format!(
        "{WAL_DIR}/logs/{epoch:010}-{nonce:016x}-{first_seq:020}.log"
    ))
}

/// Local only: `(epoch, nonce, first_seq)` of a commit-record log file name.
pub fn parse_local_commit_log(name: &str) -> Option<(u64, u64, u64)> {
    let stem = name.strip_suffix(".log")?;
    let mut it = stem.split('-');
    let epoch = it.next()?.parse().ok()?;
    let nonce = u64::from_str_radix(it.next()?, 16).ok()?;
    let first = it.next()?.parse().ok()?;
    it.next().is_none().then_some((epoch, nonce, first))
}

/// The file behind `wal/{seq}` in a local store.
pub fn local_commit(root: &FsPath, seq: u64) -> PathBuf {
    root.join(commit(seq).as_ref())
}

/// The `event_id`s committed between the previous checkpoint and checkpoint `seq`.
pub fn dedup(seq: u64) -> Path {
    Path::from(format!("{DEDUP_DIR}/{seq:020}.json"))
}

pub fn manifest(seq: u64) -> Path {
    Path::from(format!("{MANIFEST_DIR}/{seq:020}.json"))
}

pub fn data(id: DataId) -> Path {
    Path::from(data_key(id))
}

fn data_key(id: DataId) -> String {
    format!("{DATA_DIR}/{:010}-{:020}.seg", id.epoch, id.seq)
}

/// The file behind a data object in a local store rooted at `root`.
pub fn local_data(root: &FsPath, id: DataId) -> PathBuf {
    root.join(data_key(id))
}

/// The sequence number of a `wal/` or `manifest/` key, or `None` for anything else.
pub fn parse_seq(path: &Path) -> Option<u64> {
    let name = path.filename()?;
    let digits = name.strip_suffix(".json")?;
    if digits.len() != 20 {
        return None;
    }
    digits.parse().ok()
}

/// The id of a `data/` key.
pub fn parse_data(path: &Path) -> Option<DataId> {
    let name = path.filename()?.strip_suffix(".seg")?;
    let (epoch, seq) = name.split_once('-')?;
    Some(DataId {
        epoch: epoch.parse().ok()?,
        seq: seq.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sort() {
        assert_eq!(commit(7).as_ref(), "wal/00000000000000000007.json");
        assert_eq!(parse_seq(&commit(7)), Some(7));
        assert_eq!(parse_seq(&manifest(123)), Some(123));
        assert_eq!(parse_seq(&Path::from("wal/#tmp")), None);
        let id = DataId { epoch: 3, seq: 99 };
        assert_eq!(
            data(id).as_ref(),
            "data/0000000003-00000000000000000099.seg"
        );
        assert_eq!(parse_data(&data(id)), Some(id));
        assert!(commit(9).as_ref() < commit(10).as_ref());
        let log = local_commit_log(FsPath::new("/r"), 3, 0xab, 17);
        let name = log.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_local_commit_log(name), Some((3, 0xab, 17)));
    }
}
