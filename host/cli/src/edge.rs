//! `sluice edge`: serve a `spin.toml` gateway (webhooks, FHIR) in-process (wasmtime-wasi-http), the
//! same component a Spin edge runs, for local use and tests without the Spin CLI.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use sluice_edge::{EdgeComponent, Manifest};

#[derive(Args)]
pub struct EdgeArgs {
    /// The Spin manifest.
    #[arg(long, default_value = "spin.toml")]
    manifest: PathBuf,
    /// The component to serve (default: the first HTTP trigger's).
    #[arg(long)]
    component: Option<String>,
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// An application variable, `name=value` (repeatable), as `spin up --variable` takes it.
    #[arg(long = "variable", value_parser = parse_variable)]
    variables: Vec<(String, String)>,
}

fn parse_variable(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{s}`: use name=value"))
}

pub async fn edge(args: EdgeArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.manifest)
        .with_context(|| format!("reading {}", args.manifest.display()))?;
    let manifest = Manifest::parse(&text)?;
    let id = match args.component {
        Some(c) => c,
        None => manifest
            .trigger
            .http
            .first()
            .map(|t| t.component.clone())
            .context("spin.toml has no HTTP trigger")?,
    };
    let spec = manifest.component(&id)?;
    // The built file when there is one (`spin build`), else the copy built into this binary.
    let dir = args.manifest.parent().unwrap_or(std::path::Path::new("."));
    let wasm = match std::fs::read(dir.join(&spec.source)) {
        Ok(bytes) => bytes,
        Err(e) => match sluice_builtins::edge::component(&id) {
            Some(bytes) => bytes.to_vec(),
            None => return Err(e).with_context(|| format!("reading {}", spec.source)),
        },
    };
    let vars: HashMap<String, String> = args.variables.into_iter().collect();
    let component = Arc::new(
        tokio::task::spawn_blocking(move || EdgeComponent::load(&manifest, &id, &wasm, &vars))
            .await??,
    );
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("Sluice edge listening on http://{}", listener.local_addr()?);
    sluice_edge::serve(component, listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    Ok(())
}
