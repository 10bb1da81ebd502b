//! `sluice consume`: a topic's events as JSON lines, from partitions or as a group member.

use std::io::Write;
use std::time::Duration;

use anyhow::bail;
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{Body, Client, enc};

pub enum Start {
    Earliest,
    Latest,
    Offset(u64),
    Time(String),
}

pub async fn consume(
    c: &Client,
    topic: &str,
    partition: Option<u32>,
    start: Start,
    follow: bool,
    max: Option<u64>,
    full: bool,
) -> anyhow::Result<()> {
    let t = enc(topic);
    let at = match &start {
        Start::Earliest => "?timestamp=earliest".to_owned(),
        Start::Time(s) => format!("?timestamp={}", enc(s)),
        _ => "?timestamp=latest".to_owned(),
    };
    let offsets = c
        .call(
            reqwest::Method::GET,
            &format!("/v1/topics/{t}/offsets{at}"),
            None,
        )
        .await?;
    let mut positions: Vec<(u32, u64)> = offsets["offsets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| {
            let p = o["partition"].as_u64()? as u32;
            let off = match start {
                Start::Offset(n) => n,
                _ => o["offset"].as_u64()?,
            };
            partition.is_none_or(|want| want == p).then_some((p, off))
        })
        .collect();
    if positions.is_empty() {
        bail!("topic {topic} has no partition {}", partition.unwrap_or(0));
    }
    let mut printed = 0u64;
    let out = std::io::stdout();
    loop {
        let mut got_any = false;
        for (p, off) in positions.iter_mut() {
            // With one partition the server can long-poll for us.
            let wait = if follow && partition.is_some() {
                1000
            } else {
                0
            };
            let v = c
                .call(
                    reqwest::Method::GET,
                    &format!("/v1/topics/{t}/partitions/{p}/events?offset={off}&wait_ms={wait}"),
                    None,
                )
                .await?;
            let mut lock = out.lock();
            for e in v["events"].as_array().into_iter().flatten() {
                let line = if full {
                    e.clone()
                } else {
                    e.get("event")
                        .cloned()
                        .unwrap_or_else(|| e["value"].clone())
                };
                writeln!(lock, "{line}")?;
                printed += 1;
                got_any = true;
                if max.is_some_and(|m| printed >= m) {
                    return Ok(());
                }
            }
            *off = v["next_offset"].as_u64().unwrap_or(*off);
        }
        if !got_any {
            if !follow {
                return Ok(());
            }
            if partition.is_none() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// `sluice consume --group G`: a REST Proxy consumer instance of group G; each batch is
/// committed once printed (at-least-once), and the instance leaves the group at the end
/// (or on Ctrl-C).
pub async fn consume_group(
    c: &Client,
    topic: &str,
    group: &str,
    from_beginning: bool,
    follow: bool,
    max: Option<u64>,
    full: bool,
) -> anyhow::Result<()> {
    use base64::Engine;
    let mut settings = json!({"format": "binary", "auto.commit.enable": false});
    if from_beginning {
        settings["auto.offset.reset"] = json!("earliest");
    }
    let created = c
        .call(
            Method::POST,
            &format!("/consumers/{}", enc(group)),
            Some(Body::Json(settings)),
        )
        .await?;
    let instance = format!(
        "/consumers/{}/instances/{}",
        enc(group),
        created["instance_id"].as_str().unwrap_or_default()
    );
    let work = async {
        c.call(
            Method::POST,
            &format!("{instance}/subscription"),
            Some(Body::Json(json!({ "topics": [topic] }))),
        )
        .await?;
        let mut printed = 0u64;
        let mut empty = 0;
        let out = std::io::stdout();
        loop {
            let v = c
                .call(
                    Method::GET,
                    &format!("{instance}/records?timeout=1000"),
                    None,
                )
                .await?;
            let records = v.as_array().cloned().unwrap_or_default();
            if records.is_empty() {
                empty += 1;
                // The first polls may go to joining the group.
                if !follow && empty >= 3 {
                    return Ok::<(), anyhow::Error>(());
                }
                continue;
            }
            empty = 0;
            let mut offsets = std::collections::BTreeMap::new();
            {
                let mut lock = out.lock();
                for r in &records {
                    let value = r["value"]
                        .as_str()
                        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                        .unwrap_or_default();
                    let text = String::from_utf8_lossy(&value);
                    if full {
                        let mut shown = r.clone();
                        shown["value"] = serde_json::from_str(&text)
                            .unwrap_or_else(|_| Value::String(text.into_owned()));
                        writeln!(lock, "{shown}")?;
                    } else {
                        writeln!(lock, "{text}")?;
                    }
                    offsets.insert(
                        (r["topic"].clone().to_string(), r["partition"].as_u64()),
                        json!({"topic": r["topic"], "partition": r["partition"],
                               "offset": r["offset"].as_u64().unwrap_or(0) + 1}),
                    );
                    printed += 1;
                    if max.is_some_and(|m| printed >= m) {
                        break;
                    }
                }
            }
            let list: Vec<Value> = offsets.into_values().collect();
            c.call(
                Method::POST,
                &format!("{instance}/offsets"),
                Some(Body::Json(json!({ "offsets": list }))),
            )
            .await?;
            if max.is_some_and(|m| printed >= m) {
                return Ok(());
            }
        }
    };
    let outcome = tokio::select! {
        r = work => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    // Leave the group either way, so its partitions move to the other members at once.
    let left = c.call(Method::DELETE, &instance, None).await;
    outcome?;
    left.map(|_| ())
}
