//! `compactor`: Sluice's built-in compaction policies (the `compaction-policy` world). The host
//! groups a compacted partition's records by key; for each key's records (oldest first) the
//! policy answers which survive. Configuration (`compaction.policy.config`):
//!
//! - `{"policy": "latest"}` (default): Kafka's — the newest record of each key;
//! - `{"policy": "latest-n", "n": N}` (1..=1000): the newest N records of each key;
//! - `{"policy": "fhir-latest-version"}`: FHIR's — the record with the highest
//!   `meta.versionId` of each resource (key `{Type}/{id}`), read from the `fhir_version_id`
//!   header (an integer; ties and records without it go by offset).
//!
//! In every policy a tombstone deletes its key: the records before it go, and the tombstone
//! itself goes once it is older than the topic's `delete.retention.ms`.

/// A policy, parsed from its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Latest,
    LatestN(usize),
    FhirLatestVersion,
}

/// The header the FHIR gateway writes `meta.versionId` into.
pub const FHIR_VERSION_HEADER: &str = "fhir_version_id";
/// The most records per key `latest-n` keeps.
pub const MAX_N: u64 = 1000;

impl Policy {
    pub fn parse(config: &str) -> Result<Policy, String> {
        let config = config.trim();
        if config.is_empty() {
            return Ok(Policy::Latest);
        }
        let v: serde_json::Value =
            serde_json::from_str(config).map_err(|e| format!("config is not JSON: {e}"))?;
        let obj = v
            .as_object()
            .ok_or("config must be a JSON object such as {\"policy\": \"latest\"}")?;
        if let Some(k) = obj.keys().find(|k| *k != "policy" && *k != "n") {
            return Err(format!("unknown config field `{k}` (policy, n)"));
        }
        match obj
            .get("policy")
            .and_then(|p| p.as_str())
            .unwrap_or("latest")
        {
            "latest" => Ok(Policy::Latest),
            "latest-n" => {
                let n = obj
                    .get("n")
                    .and_then(serde_json::Value::as_u64)
                    .filter(|n| (1..=MAX_N).contains(n))
                    .ok_or(format!("latest-n needs `n`, an integer from 1 to {MAX_N}"))?;
                Ok(Policy::LatestN(n as usize))
            }
            "fhir-latest-version" => Ok(Policy::FhirLatestVersion),
            other => Err(format!(
                "unknown policy `{other}` (latest, latest-n, fhir-latest-version)"
            )),
        }
    }
}

/// What the policy sees of one record.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub offset: u64,
    pub timestamp: i64,
    pub headers: &'a [(String, Vec<u8>)],
    pub tombstone: bool,
}

/// Which of one key's records (oldest first) survive.
pub fn select(
    policy: Policy,
    now: i64,
    delete_retention_ms: i64,
    records: &[Candidate<'_>],
) -> Vec<bool> {
    let mut keep = vec![false; records.len()];
    // Records in the order that decides "newest": by offset, or by FHIR version.
    let mut order: Vec<usize> = (0..records.len()).collect();
    if policy == Policy::FhirLatestVersion {
        order.sort_by_key(|&i| (fhir_version(&records[i]), records[i].offset));
    }
    let n = match policy {
        Policy::LatestN(n) => n,
        Policy::Latest | Policy::FhirLatestVersion => 1,
    };
    // From the newest back: up to n records, stopping at a tombstone (it deletes what is
    // older), which itself stays until it expires.
    let expired = |c: &Candidate<'_>| c.timestamp < now.saturating_sub(delete_retention_ms);
    for (kept, &i) in order.iter().rev().take(n).enumerate() {
        let c = &records[i];
        if c.tombstone {
            keep[i] = !expired(c) && kept == 0;
            break;
        }
        keep[i] = true;
    }
    keep
}

fn fhir_version(c: &Candidate<'_>) -> u64 {
    c.headers
        .iter()
        .find(|(name, _)| name == FHIR_VERSION_HEADER)
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(target_arch = "wasm32")]
mod guest {
    use std::cell::Cell;

    wit_bindgen::generate!({ world: "compaction-policy", path: "../../wit" });

    use exports::sluice::gateway::compactor::{CompactionContext, Guest, KeyGroup};

    thread_local! {
        static POLICY: Cell<Option<super::Policy>> = const { Cell::new(None) };
    }

    struct Compactor;

    impl Guest for Compactor {
        fn init(config: String) -> Result<(), String> {
            let policy = super::Policy::parse(&config)?;
            POLICY.with(|p| p.set(Some(policy)));
            Ok(())
        }

        fn select(ctx: CompactionContext, groups: Vec<KeyGroup>) -> Vec<Vec<bool>> {
            let policy = POLICY.with(Cell::get).unwrap_or(super::Policy::Latest);
            groups
                .iter()
                .map(|g| {
                    let headers: Vec<Vec<(String, Vec<u8>)>> = g
                        .records
                        .iter()
                        .map(|r| {
                            r.headers
                                .iter()
                                .map(|h| (h.name.clone(), h.value.clone()))
                                .collect()
                        })
                        .collect();
                    let candidates: Vec<super::Candidate<'_>> = g
                        .records
                        .iter()
                        .zip(&headers)
                        .map(|(r, h)| super::Candidate {
                            offset: r.offset,
                            timestamp: r.timestamp,
                            headers: h,
                            tombstone: r.tombstone,
                        })
                        .collect();
                    super::select(policy, ctx.now, ctx.delete_retention_ms, &candidates)
                })
                .collect()
        }
    }

    export!(Compactor);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(offset, tombstone, headers)` of a test record.
    type Rec = (u64, bool, Vec<(String, Vec<u8>)>);

    fn c(offset: u64, tombstone: bool, version: Option<&str>) -> Rec {
        (
            offset,
            tombstone,
            version
                .map(|v| vec![(FHIR_VERSION_HEADER.to_owned(), v.as_bytes().to_vec())])
                .unwrap_or_default(),
        )
    }

    fn run(policy: Policy, records: &[Rec], age: i64) -> Vec<bool> {
        let candidates: Vec<Candidate<'_>> = records
            .iter()
            .map(|(o, t, h)| Candidate {
                offset: *o,
                timestamp: 1_000_000 - age,
                headers: h,
                tombstone: *t,
            })
            .collect();
        select(policy, 1_000_000, 1000, &candidates)
    }

    #[test]
    fn latest_keeps_the_newest_and_tombstones_until_they_expire() {
        let plain = [c(1, false, None), c(2, false, None), c(3, false, None)];
        assert_eq!(run(Policy::Latest, &plain, 0), [false, false, true]);
        let deleted = [c(1, false, None), c(2, true, None)];
        assert_eq!(run(Policy::Latest, &deleted, 10), [false, true]);
        assert_eq!(run(Policy::Latest, &deleted, 5000), [false, false]);
        // A record after a tombstone brings the key back; the tombstone is no longer needed.
        let back = [c(1, false, None), c(2, true, None), c(3, false, None)];
        assert_eq!(run(Policy::Latest, &back, 0), [false, false, true]);
    }

    #[test]
    fn latest_n_keeps_n_and_stops_at_a_tombstone() {
        let r: Vec<_> = (1..=5).map(|o| c(o, false, None)).collect();
        assert_eq!(
            run(Policy::LatestN(3), &r, 0),
            [false, false, true, true, true]
        );
        let t = [
            c(1, false, None),
            c(2, true, None),
            c(3, false, None),
            c(4, false, None),
        ];
        assert_eq!(run(Policy::LatestN(3), &t, 0), [false, false, true, true]);
        let last = [c(1, false, None), c(2, false, None), c(3, true, None)];
        assert_eq!(run(Policy::LatestN(3), &last, 0), [false, false, true]);
    }

    #[test]
    fn fhir_keeps_the_highest_version_whatever_the_arrival_order() {
        let r = [
            c(1, false, Some("2")),
            c(2, false, Some("3")),
            c(3, false, Some("1")),
        ];
        assert_eq!(run(Policy::FhirLatestVersion, &r, 0), [false, true, false]);
        let tie = [c(1, false, Some("4")), c(2, false, Some(" 4 "))];
        assert_eq!(run(Policy::FhirLatestVersion, &tie, 0), [false, true]);
        let missing = [c(1, false, Some("1")), c(2, false, None)];
        assert_eq!(run(Policy::FhirLatestVersion, &missing, 0), [true, false]);
    }

    #[test]
    fn configs_are_checked() {
        assert_eq!(Policy::parse(""), Ok(Policy::Latest));
        assert_eq!(
            Policy::parse(r#"{"policy":"latest-n","n":3}"#),
            Ok(Policy::LatestN(3))
        );
        assert_eq!(
            Policy::parse(r#"{"policy":"fhir-latest-version"}"#),
            Ok(Policy::FhirLatestVersion)
        );
        for bad in [
            r#"{"policy":"latest-n"}"#,
            r#"{"policy":"latest-n","n":0}"#,
            r#"{"policy":"latest-n","n":5000}"#,
            r#"{"policy":"newest"}"#,
            r#"{"policy":"latest","x":1}"#,
            "[1]",
            "{",
        ] {
            assert!(Policy::parse(bad).is_err(), "{bad}");
        }
    }
}
