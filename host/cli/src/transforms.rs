//! `sluice deploy` (a component, and a transform running it) and `sluice transforms`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{Body, Client, enc, print};

/// What `sluice deploy` uploads and (with `--input`) runs.
#[derive(Args)]
pub struct DeployArgs {
    /// The component's name (and the transform's, unless --transform says otherwise).
    pub name: String,
    /// The component's `.wasm` (built for wasm32-wasip2 against wit/).
    pub wasm: PathBuf,
    /// Input topic of the transform.
    #[arg(long, requires = "output")]
    pub input: Option<String>,
    /// Output topic(s) of the transform (repeatable; the first is the default output).
    #[arg(long, requires = "input")]
    pub output: Vec<String>,
    /// The component's configuration, JSON.
    #[arg(long, default_value = "{}")]
    pub config: String,
    /// Dead-letter topic (default `<input>.dlq`).
    #[arg(long)]
    pub dlq: Option<String>,
    /// Events per call into the component.
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// The transform's name (default: the component's).
    #[arg(long)]
    pub transform: Option<String>,
}

#[derive(Subcommand)]
pub enum TransformsCmd {
    /// List transforms.
    List,
    /// Show a transform's state, offsets, lag and counters.
    Status { name: String },
    /// Stop a transform (its current batch finishes and is committed).
    Stop { name: String },
    /// Start a stopped transform from its committed offsets.
    Start { name: String },
    /// Delete a transform.
    Delete { name: String },
}

/// Upload the component and, with an input, run it as a transform.
pub async fn deploy(c: &Client, args: DeployArgs) -> anyhow::Result<()> {
    let DeployArgs {
        name,
        wasm,
        input,
        output,
        config,
        dlq,
        batch_size,
        transform,
    } = args;
    let config: Value =
        serde_json::from_str(&config).with_context(|| format!("--config is not JSON: {config}"))?;
    let bytes = std::fs::read(&wasm).with_context(|| format!("cannot read {}", wasm.display()))?;
    let version = c
        .call(
            Method::PUT,
            &format!("/v1/components/{}", enc(&name)),
            Some(Body::Wasm(bytes)),
        )
        .await?;
    println!(
        "component {name} version {} ({} world, sha256 {})",
        version["version"],
        version["world"].as_str().unwrap_or("?"),
        version["sha256"].as_str().unwrap_or("?")
    );
    if let Some(input) = input {
        let t = transform.unwrap_or_else(|| name.clone());
        let body = json!({
            "component": format!("{name}@{}", version["version"]),
            "config": config, "input": input, "outputs": output,
            "dlq": dlq, "batch_size": batch_size,
        });
        let def = c
            .call(
                Method::PUT,
                &format!("/v1/transforms/{}", enc(&t)),
                Some(Body::Json(body)),
            )
            .await?;
        println!(
            "transform {t} running {} from {} to {}",
            def["resolved"].as_str().unwrap_or("?"),
            def["input"].as_str().unwrap_or("?"),
            def["outputs"]
        );
    }
    Ok(())
}

pub async fn transforms(c: &Client, cmd: TransformsCmd) -> anyhow::Result<()> {
    let path = |n: &str| format!("/v1/transforms/{}", enc(n));
    match cmd {
        TransformsCmd::List => print(&c.call(Method::GET, "/v1/transforms", None).await?),
        TransformsCmd::Status { name } => print(&c.call(Method::GET, &path(&name), None).await?),
        TransformsCmd::Stop { name } => print(
            &c.call(
                Method::POST,
                &format!("{}/stop", path(&name)),
                Some(Body::Json(json!({}))),
            )
            .await?,
        ),
        TransformsCmd::Start { name } => print(
            &c.call(
                Method::POST,
                &format!("{}/start", path(&name)),
                Some(Body::Json(json!({}))),
            )
            .await?,
        ),
        TransformsCmd::Delete { name } => {
            c.call(Method::DELETE, &path(&name), None).await?;
            println!("deleted transform {name}");
        }
    }
    Ok(())
}
