//! `sluice keys`, `sluice tenants` and `sluice audit`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use reqwest::Method;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
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
        /// Bind the key to this PEM client certificate: over TLS with a client CA, the
        /// certificate alone authenticates as the key, and the key's secret works only with it.
        #[arg(long)]
        client_cert: Option<PathBuf>,
    },
    /// Bind a key to a PEM client certificate, or unbind it.
    Bind {
        id: String,
        #[arg(long, required_unless_present = "unbind")]
        client_cert: Option<PathBuf>,
        #[arg(long, conflicts_with = "client_cert")]
        unbind: bool,
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
            client_cert,
        } => {
            let scopes: Vec<Value> = scopes
                .iter()
                .map(|s| {
                    let (role, topics) = s.split_once(':').unwrap_or((s, "*"));
                    json!({"role": role, "topics": topics})
                })
                .collect();
            let client_cert = client_cert.as_deref().map(fingerprint).transpose()?;
            let body = json!({
                "tenant": tenant, "scopes": scopes, "description": description,
                "client_cert_sha256": client_cert,
            });
            print(
                &c.call(Method::POST, "/v1/keys", Some(Body::Json(body)))
                    .await?,
            );
        }
        KeysCmd::Bind {
            id, client_cert, ..
        } => {
            let client_cert = client_cert.as_deref().map(fingerprint).transpose()?;
            let body = json!({"client_cert_sha256": client_cert});
            let path = format!("/v1/keys/{}/client-cert", enc(&id));
            print(&c.call(Method::PUT, &path, Some(Body::Json(body))).await?);
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

/// The SHA-256 of the first certificate in a PEM file, as keys are bound to it.
fn fingerprint(pem: &Path) -> anyhow::Result<String> {
    let leaf = CertificateDer::pem_file_iter(pem)
        .with_context(|| format!("reading {}", pem.display()))?
        .next()
        .with_context(|| format!("no certificate in {}", pem.display()))?
        .with_context(|| format!("reading {}", pem.display()))?;
    Ok(sluice_tenancy::auth::fingerprint(&leaf))
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
