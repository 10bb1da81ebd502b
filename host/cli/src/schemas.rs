//! `sluice schemas`: the schema registry.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{Body, Client, enc, print};

#[derive(Subcommand)]
pub enum SchemasCmd {
    /// Register a schema file under a subject (`orders-value`); prints its id and version.
    Register {
        subject: String,
        file: PathBuf,
        /// AVRO or JSON (default: JSON for `.json` files, AVRO otherwise).
        #[arg(long = "type")]
        schema_type: Option<String>,
        /// A reference, `name=subject:version` (repeatable).
        #[arg(long = "reference")]
        references: Vec<String>,
    },
    /// Print a subject's version (default: the latest), or a schema by global id.
    Get {
        #[arg(required_unless_present = "id")]
        subject: Option<String>,
        #[arg(long, default_value = "latest")]
        version: String,
        #[arg(long, conflicts_with = "subject")]
        id: Option<u32>,
    },
    /// List subjects, or a subject's versions.
    List {
        subject: Option<String>,
        /// Include soft-deleted ones.
        #[arg(long)]
        deleted: bool,
    },
    /// Check a schema file against a subject under its compatibility level; exits 1 when it
    /// is incompatible (for CI pipelines).
    Check {
        subject: String,
        file: PathBuf,
        #[arg(long = "type")]
        schema_type: Option<String>,
        /// Against one version only (default: those the level names).
        #[arg(long)]
        version: Option<String>,
    },
    /// Delete a subject, or one version; soft unless --permanent (which needs soft first).
    Delete {
        subject: String,
        #[arg(long)]
        version: Option<String>,
        #[arg(long)]
        permanent: bool,
    },
}

/// The body Confluent's API takes for a schema file.
fn schema_request(
    file: &Path,
    schema_type: Option<&str>,
    references: &[String],
) -> anyhow::Result<Value> {
    let schema =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let schema_type = match schema_type {
        Some(t) => t.to_ascii_uppercase(),
        None if file.extension().is_some_and(|e| e == "json") => "JSON".into(),
        None => "AVRO".into(),
    };
    let references = references
        .iter()
        .map(|r| {
            let (name, at) = r
                .split_once('=')
                .context("a reference is name=subject:version")?;
            let (subject, version) = at
                .rsplit_once(':')
                .context("a reference is name=subject:version")?;
            let version: u32 = version
                .parse()
                .context("a reference's version is a number")?;
            Ok(json!({"name": name, "subject": subject, "version": version}))
        })
        .collect::<anyhow::Result<Vec<Value>>>()?;
    Ok(json!({"schema": schema, "schemaType": schema_type, "references": references}))
}

pub async fn schemas(c: &Client, cmd: SchemasCmd) -> anyhow::Result<()> {
    let subject_path = |s: &str| format!("/registry/subjects/{}", enc(s));
    match cmd {
        SchemasCmd::Register {
            subject,
            file,
            schema_type,
            references,
        } => {
            let body = schema_request(&file, schema_type.as_deref(), &references)?;
            let v = c
                .call(
                    Method::POST,
                    &format!("{}/versions", subject_path(&subject)),
                    Some(Body::Json(body)),
                )
                .await?;
            println!(
                "registered {subject} version {} (id {})",
                v["version"], v["id"]
            );
        }
        SchemasCmd::Get {
            subject,
            version,
            id,
        } => {
            let path = match (id, subject) {
                (Some(id), _) => format!("/registry/schemas/ids/{id}"),
                (None, Some(s)) => format!("{}/versions/{}", subject_path(&s), enc(&version)),
                (None, None) => bail!("give a subject or --id"),
            };
            print(&c.call(Method::GET, &path, None).await?);
        }
        SchemasCmd::List { subject, deleted } => {
            let path = match subject {
                Some(s) => format!("{}/versions?deleted={deleted}", subject_path(&s)),
                None => format!("/registry/subjects?deleted={deleted}"),
            };
            print(&c.call(Method::GET, &path, None).await?);
        }
        SchemasCmd::Check {
            subject,
            file,
            schema_type,
            version,
        } => {
            let body = schema_request(&file, schema_type.as_deref(), &[])?;
            let mut path = format!(
                "/registry/compatibility/subjects/{}/versions",
                enc(&subject)
            );
            if let Some(v) = version {
                path.push('/');
                path.push_str(&enc(&v));
            }
            path.push_str("?verbose=true");
            let v = c.call(Method::POST, &path, Some(Body::Json(body))).await?;
            if v["is_compatible"] == json!(true) {
                println!("compatible with {subject}");
            } else {
                for m in v["messages"].as_array().into_iter().flatten() {
                    eprintln!("{}", m.as_str().unwrap_or_default());
                }
                bail!("incompatible with {subject}");
            }
        }
        SchemasCmd::Delete {
            subject,
            version,
            permanent,
        } => {
            let path = match &version {
                Some(v) => format!("{}/versions/{}", subject_path(&subject), enc(v)),
                None => subject_path(&subject),
            };
            let v = c
                .call(
                    Method::DELETE,
                    &format!("{path}?permanent={permanent}"),
                    None,
                )
                .await?;
            let how = if permanent { "permanently" } else { "soft-" };
            println!("{how}deleted {subject} version(s) {v}");
        }
    }
    Ok(())
}
