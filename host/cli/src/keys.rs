//! `sluice keys`, `sluice tenants` and `sluice audit`.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{Body, Client, enc, print};

#[derive(Subcommand)]
pub enum KeysCmd {
    /// Create a key. Scopes are `ROLE:PATTERN` with ROLE admin|produce|consume, e.g.
    /// `produce:orders.*`.
    Create {
        #[arg(long = "scope", short = 's', required = true)]
        scopes: Vec<String>,
        /// Another tenant (system key only).
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List keys (never their secrets).
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a key.
    Revoke { id: String },
}

#[derive(Subcommand)]
pub enum TenantsCmd {
    /// Create a tenant and print its first admin key.
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List tenants.
    List,
}

pub async fn keys(c: &Client, cmd: KeysCmd) -> anyhow::Result<()> {
    match cmd {
        KeysCmd::Create {
            scopes,
            tenant,
            description,
        } => {
            let scopes: Vec<Value> = scopes
                .iter()
                .map(|s| {
                    let (role, topics) = s.split_once(':').unwrap_or((s, "*"));
                    json!({"role": role, "topics": topics})
                })
                .collect();
            let body = json!({"tenant": tenant, "scopes": scopes, "description": description});
            print(
                &c.call(Method::POST, "/v1/keys", Some(Body::Json(body)))
                    .await?,
            );
        }
        KeysCmd::List { tenant } => {
            let q = tenant
                .map(|t| format!("?tenant={}", enc(&t)))
                .unwrap_or_default();
            print(&c.call(Method::GET, &format!("/v1/keys{q}"), None).await?);
        }
        KeysCmd::Revoke { id } => {
            c.call(Method::DELETE, &format!("/v1/keys/{}", enc(&id)), None)
                .await?;
            println!("revoked key {id}");
        }
    }
    Ok(())
}

pub async fn tenants(c: &Client, cmd: TenantsCmd) -> anyhow::Result<()> {
    match cmd {
        TenantsCmd::Create { name, description } => {
            let body = json!({"name": name, "description": description});
            print(
                &c.call(Method::POST, "/v1/tenants", Some(Body::Json(body)))
                    .await?,
            );
        }
        TenantsCmd::List => print(&c.call(Method::GET, "/v1/tenants", None).await?),
    }
    Ok(())
}

/// Print the audit trail as JSON lines, oldest first.
pub async fn audit(
    c: &Client,
    since: Option<String>,
    limit: usize,
    tenant: Option<String>,
) -> anyhow::Result<()> {
    let mut q = format!("?limit={limit}");
    if let Some(s) = since {
        q.push_str(&format!("&since={}", enc(&s)));
    }
    if let Some(t) = tenant {
        q.push_str(&format!("&tenant={}", enc(&t)));
    }
    let v = c.call(Method::GET, &format!("/v1/audit{q}"), None).await?;
    for r in v["records"].as_array().into_iter().flatten() {
        println!("{r}");
    }
    Ok(())
}
