//! `sluice topics`: create, list, describe, delete.

use anyhow::anyhow;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{Body, Client, enc, print};

#[derive(Subcommand)]
pub enum TopicsCmd {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        #[arg(long, default_value_t = 1)]
        replication_factor: u32,
        /// Topic config entries, `key=value` (repeatable), e.g. `retention.ms=86400000`.
        #[arg(long = "config", short = 'c')]
        config: Vec<String>,
        /// Envelope field (or JSON pointer) that keys events without an explicit key.
        #[arg(long)]
        key_field: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// List topics.
    List,
    /// Show a topic's configuration and offsets.
    Describe { name: String },
    /// Delete a topic and its events.
    Delete { name: String },
    /// Compact a compacted topic now, partition by partition, with a progress bar.
    Compact { name: String },
}

pub async fn topics(c: &Client, cmd: TopicsCmd) -> anyhow::Result<()> {
    match cmd {
        TopicsCmd::Create {
            name,
            partitions,
            replication_factor,
            config,
            key_field,
            description,
        } => {
            let mut cfg = serde_json::Map::new();
            for kv in config {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| anyhow!("--config takes key=value, got `{kv}`"))?;
                let v = v
                    .parse::<i64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| Value::String(v.to_owned()));
                cfg.insert(k.to_owned(), v);
            }
            let mut body = json!({"name": name, "partitions": partitions,
                "replicationFactor": replication_factor, "config": cfg});
            if let Some(k) = key_field {
                body["keyField"] = json!(k);
            }
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            print(
                &c.call(Method::POST, "/v1/topics", Some(Body::Json(body)))
                    .await?,
            );
        }
        TopicsCmd::List => {
            let v = c.call(Method::GET, "/v1/topics", None).await?;
            for t in v["topics"].as_array().into_iter().flatten() {
                let events: u64 = t["partition_offsets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        p["end_offset"].as_u64().unwrap_or(0)
                            - p["start_offset"].as_u64().unwrap_or(0)
                    })
                    .sum();
                println!(
                    "{}\tpartitions={}\tevents={}",
                    t["name"].as_str().unwrap_or(""),
                    t["partitions"],
                    events
                );
            }
        }
        TopicsCmd::Describe { name } => print(
            &c.call(Method::GET, &format!("/v1/topics/{}", enc(&name)), None)
                .await?,
        ),
        TopicsCmd::Compact { name } => {
            let topic = c
                .call(Method::GET, &format!("/v1/topics/{}", enc(&name)), None)
                .await?;
            let partitions = topic["partitions"].as_u64().unwrap_or(1);
            let bar = indicatif::ProgressBar::new(partitions);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} partitions {msg}")
                    .expect("template"),
            );
            let (mut records_in, mut records_out, mut reclaimed) = (0u64, 0u64, 0u64);
            for p in 0..partitions {
                let path = format!("/v1/topics/{}/compact?partition={p}", enc(&name));
                let v = c.call(Method::POST, &path, None).await?;
                for r in v["partitions"].as_array().into_iter().flatten() {
                    if let Some(e) = r["error"].as_str() {
                        bar.println(format!("partition {p}: {e}"));
                    }
                    let done = &r["compacted"];
                    let n = |f: &str| done[f].as_u64().unwrap_or(0);
                    records_in += n("records_in");
                    records_out += n("records_out");
                    reclaimed += n("bytes_in").saturating_sub(n("bytes_out"));
                }
                bar.inc(1);
            }
            bar.finish_and_clear();
            println!(
                "compacted {name}: {records_in} records read, {records_out} kept, {reclaimed} bytes reclaimed"
            );
        }
        TopicsCmd::Delete { name } => {
            c.call(Method::DELETE, &format!("/v1/topics/{}", enc(&name)), None)
                .await?;
            println!("deleted topic {name}");
        }
    }
    Ok(())
}
