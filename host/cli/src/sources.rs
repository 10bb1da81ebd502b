//! `sluice sources`: the tenant's edge gateways (signed webhooks in).

use anyhow::Context;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{Body, Client, enc, print};

#[derive(Subcommand)]
pub enum SourcesCmd {
    /// Create (or replace) a source: its URL is /hooks/<tenant>/<name>.
    Create {
        name: String,
        /// The topic its events go to.
        #[arg(long)]
        topic: String,
        /// standard-webhooks, github, stripe, hmac, basic or api-key.
        #[arg(long)]
        scheme: String,
        /// A secret (repeatable: several are valid at once while rotating).
        #[arg(long = "secret", required = true)]
        secrets: Vec<String>,
        /// Where the event type is: a JSON pointer into the body (`/type`) or `header:Name`.
        #[arg(long)]
        event_type: Option<String>,
        /// Where the partitioning key is (same forms).
        #[arg(long)]
        key: Option<String>,
        /// How far a signed timestamp may be from now (`5m`).
        #[arg(long)]
        tolerance: Option<String>,
        /// Other configuration of the component, JSON (merged over the flags).
        #[arg(long)]
        config: Option<String>,
        /// The ingress component (default: the built-in webhook-gateway).
        #[arg(long)]
        component: Option<String>,
    },
    /// List sources (secrets masked).
    List,
    /// Describe a source.
    Show { name: String },
    /// Delete a source: its URL answers 404 from then on.
    Delete { name: String },
}

pub async fn sources(c: &Client, cmd: SourcesCmd) -> anyhow::Result<()> {
    match cmd {
        SourcesCmd::Create {
            name,
            topic,
            scheme,
            secrets,
            event_type,
            key,
            tolerance,
            config,
            component,
        } => {
            let mut cfg = json!({"scheme": scheme, "secrets": secrets});
            for (k, v) in [
                ("event_type", event_type),
                ("key", key),
                ("tolerance", tolerance),
            ] {
                if let Some(v) = v {
                    cfg[k] = json!(v);
                }
            }
            if let Some(extra) = config {
                let extra: Value = serde_json::from_str(&extra)
                    .with_context(|| format!("--config is not JSON: {extra}"))?;
                for (k, v) in extra
                    .as_object()
                    .context("--config must be a JSON object")?
                {
                    cfg[k] = v.clone();
                }
            }
            let mut body = json!({"name": name, "topic": topic, "config": cfg});
            if let Some(component) = component {
                body["component"] = json!(component);
            }
            let v = c
                .call(
                    Method::PUT,
                    &format!("/v1/sources/{}", enc(&name)),
                    Some(Body::Json(body)),
                )
                .await?;
            println!(
                "source {name}: POST {} (to topic {})",
                v["url"].as_str().unwrap_or("?"),
                v["topic"].as_str().unwrap_or("?")
            );
        }
        SourcesCmd::List => print(&c.call(Method::GET, "/v1/sources", None).await?),
        SourcesCmd::Show { name } => print(
            &c.call(Method::GET, &format!("/v1/sources/{}", enc(&name)), None)
                .await?,
        ),
        SourcesCmd::Delete { name } => {
            c.call(Method::DELETE, &format!("/v1/sources/{}", enc(&name)), None)
                .await?;
            println!("deleted source {name}");
        }
    }
    Ok(())
}
