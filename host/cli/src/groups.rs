//! `sluice groups`: consumer groups.

use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use super::client::{Body, Client, enc, print};

#[derive(Subcommand)]
pub enum GroupsCmd {
    /// The tenant's groups with their state and lag.
    List,
    /// A group's state, members, assignments, committed offsets and lag.
    Describe { id: String },
    /// Move a stopped group's committed offsets.
    Reset {
        id: String,
        /// earliest, latest, offset (with --offset) or timestamp (with --timestamp).
        #[arg(long)]
        to: String,
        #[arg(long)]
        offset: Option<u64>,
        /// RFC 3339 or milliseconds since the epoch.
        #[arg(long)]
        timestamp: Option<String>,
        /// Only these topics (repeat; default: every topic of the group).
        #[arg(long = "topic")]
        topics: Vec<String>,
    },
    /// Delete a stopped group and its offsets.
    Delete { id: String },
}

pub async fn groups(c: &Client, cmd: GroupsCmd) -> anyhow::Result<()> {
    match cmd {
        GroupsCmd::List => {
            let v = c.call(Method::GET, "/v1/groups", None).await?;
            println!(
                "{:<32} {:<20} {:>7} {:>12}",
                "GROUP", "STATE", "MEMBERS", "LAG"
            );
            for g in v["groups"].as_array().into_iter().flatten() {
                println!(
                    "{:<32} {:<20} {:>7} {:>12}",
                    g["group_id"].as_str().unwrap_or_default(),
                    g["state"].as_str().unwrap_or_default(),
                    g["members"],
                    g["total_lag"]
                );
            }
        }
        GroupsCmd::Describe { id } => print(
            &c.call(Method::GET, &format!("/v1/groups/{}", enc(&id)), None)
                .await?,
        ),
        GroupsCmd::Reset {
            id,
            to,
            offset,
            timestamp,
            topics,
        } => {
            let mut body = json!({ "to": to });
            if let Some(o) = offset {
                body["offset"] = json!(o);
            }
            if let Some(t) = timestamp {
                body["timestamp"] = match t.parse::<i64>() {
                    Ok(ms) => json!(ms),
                    Err(_) => json!(t),
                };
            }
            if !topics.is_empty() {
                body["topics"] = json!(topics);
            }
            print(
                &c.call(
                    Method::POST,
                    &format!("/v1/groups/{}/offsets/reset", enc(&id)),
                    Some(Body::Json(body)),
                )
                .await?,
            )
        }
        GroupsCmd::Delete { id } => {
            c.call(Method::DELETE, &format!("/v1/groups/{}", enc(&id)), None)
                .await?;
            println!("deleted group {id}");
        }
    }
    Ok(())
}
