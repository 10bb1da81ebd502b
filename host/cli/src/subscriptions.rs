//! `sluice subscriptions`: webhook subscriptions.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{Body, Client, enc, print};

#[derive(Subcommand)]
pub enum SubscriptionsCmd {
    /// Subscribe a URL to events of topics; prints the subscription with its secret.
    Create {
        /// Where to deliver (the subscription's `url`; `--url` is the gateway's).
        #[arg(long, required_unless_present = "file")]
        endpoint: Option<String>,
        /// A topic to deliver from (repeat for more).
        #[arg(long = "topic", required_unless_present = "file")]
        topics: Vec<String>,
        /// An event-type pattern such as `invoice.*` (repeat; default: every type).
        #[arg(long = "type")]
        types: Vec<String>,
        /// A CEL condition over `event`, `data`, `type`, `key`, `headers`.
        #[arg(long)]
        condition: Option<String>,
        /// A CEL expression whose value is the delivered body.
        #[arg(long)]
        mapping: Option<String>,
        /// `per-key` or `none`.
        #[arg(long)]
        ordering: Option<String>,
        /// Start from the oldest stored event instead of the next one.
        #[arg(long)]
        from_beginning: bool,
        /// The whole definition as JSON (a file), instead of the flags.
        #[arg(long, conflicts_with_all = ["endpoint", "topics"])]
        file: Option<PathBuf>,
    },
    List,
    /// The newest delivery attempts.
    Attempts {
        id: String,
        #[arg(long)]
        event_id: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Deliver again the events stored since a time (RFC 3339 or ms).
    Replay {
        id: String,
        #[arg(long)]
        since: String,
        #[arg(long)]
        until: Option<String>,
    },
    Delete {
        id: String,
    },
}

fn time_arg(t: &str) -> Value {
    match t.parse::<i64>() {
        Ok(ms) => json!(ms),
        Err(_) => json!(t),
    }
}

pub async fn subscriptions(c: &Client, cmd: SubscriptionsCmd) -> anyhow::Result<()> {
    match cmd {
        SubscriptionsCmd::Create {
            endpoint,
            topics,
            types,
            condition,
            mapping,
            ordering,
            from_beginning,
            file,
        } => {
            let body = match file {
                Some(f) => {
                    let text = std::fs::read_to_string(&f)
                        .with_context(|| format!("reading {}", f.display()))?;
                    serde_json::from_str(&text)
                        .with_context(|| format!("{} is not JSON", f.display()))?
                }
                None => {
                    let mut b = json!({"url": endpoint, "topics": topics});
                    if !types.is_empty() {
                        b["event_types"] = json!(types);
                    }
                    if let Some(cnd) = condition {
                        b["condition"] = json!(cnd);
                    }
                    if let Some(m) = mapping {
                        b["input_mapping"] = json!(m);
                    }
                    if let Some(o) = ordering {
                        b["ordering"] = json!(o);
                    }
                    if from_beginning {
                        b["start"] = json!("earliest");
                    }
                    b
                }
            };
            print(
                &c.call(Method::POST, "/v1/subscriptions", Some(Body::Json(body)))
                    .await?,
            )
        }
        SubscriptionsCmd::List => {
            let v = c.call(Method::GET, "/v1/subscriptions", None).await?;
            println!("{:<36} {:<8} {:>8}  URL", "ID", "ENABLED", "LAG");
            for s in v["subscriptions"].as_array().into_iter().flatten() {
                println!(
                    "{:<36} {:<8} {:>8}  {}",
                    s["id"].as_str().unwrap_or_default(),
                    s["enabled"],
                    s["lag"],
                    s["url"].as_str().unwrap_or_default()
                );
            }
        }
        SubscriptionsCmd::Attempts {
            id,
            event_id,
            limit,
        } => {
            let mut path = format!("/v1/subscriptions/{}/attempts?limit={limit}", enc(&id));
            if let Some(e) = event_id {
                path.push_str(&format!("&event_id={}", enc(&e)));
            }
            print(&c.call(Method::GET, &path, None).await?)
        }
        SubscriptionsCmd::Replay { id, since, until } => {
            let mut body = json!({ "since": time_arg(&since) });
            if let Some(u) = until {
                body["until"] = time_arg(&u);
            }
            print(
                &c.call(
                    Method::POST,
                    &format!("/v1/subscriptions/{}/replay", enc(&id)),
                    Some(Body::Json(body)),
                )
                .await?,
            )
        }
        SubscriptionsCmd::Delete { id } => {
            c.call(
                Method::DELETE,
                &format!("/v1/subscriptions/{}", enc(&id)),
                None,
            )
            .await?;
            println!("deleted subscription {id}");
        }
    }
    Ok(())
}
