//! How a client command reaches the gateway: the connection flags, and a minimal client of the
//! HTTP API that turns error bodies into messages.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;

use sluice_server::config::DEFAULT_DATA;

/// How a client command reaches the gateway.
#[derive(Args, Clone)]
pub struct Conn {
    /// The gateway's URL.
    #[arg(
        long,
        env = "SLUICE_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// API key (default: the `admin.key` file in --data).
    #[arg(long, env = "SLUICE_KEY", global = true, hide_env_values = true)]
    pub key: Option<String>,
    /// Data directory holding `admin.key`.
    #[arg(long, default_value = DEFAULT_DATA, global = true)]
    pub data: PathBuf,
    /// Trust the gateway's certificate when it is issued under this PEM root (HTTPS).
    #[arg(long, env = "SLUICE_TLS_CA", global = true)]
    pub tls_ca: Option<PathBuf>,
    /// Present this PEM client certificate (with --tls-client-key); without --key it
    /// authenticates as the key bound to it.
    #[arg(
        long,
        env = "SLUICE_TLS_CLIENT_CERT",
        global = true,
        requires = "tls_client_key"
    )]
    pub tls_client_cert: Option<PathBuf>,
    /// The PEM private key of --tls-client-cert.
    #[arg(
        long,
        env = "SLUICE_TLS_CLIENT_KEY",
        global = true,
        requires = "tls_client_cert"
    )]
    pub tls_client_key: Option<PathBuf>,
}

/// A minimal client of the HTTP API that turns error bodies into messages.
pub struct Client {
    http: reqwest::Client,
    url: String,
    /// None: the client certificate authenticates.
    key: Option<String>,
}

impl Client {
    pub fn new(conn: &Conn) -> anyhow::Result<Client> {
        let key = match &conn.key {
            Some(k) => Some(k.clone()),
            // A client certificate stands in for the key.
            None if conn.tls_client_cert.is_some() => None,
            None => {
                let path = conn.data.join("admin.key");
                let key = std::fs::read_to_string(&path).with_context(|| {
                    format!(
                        "no --key / SLUICE_KEY given and {} is not readable",
                        path.display()
                    )
                })?;
                Some(key.trim().to_owned())
            }
        };
        let read =
            |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        let mut http = reqwest::Client::builder();
        if let Some(ca) = &conn.tls_ca {
            http = http.add_root_certificate(
                reqwest::Certificate::from_pem(&read(ca)?)
                    .with_context(|| format!("{} is not a PEM certificate", ca.display()))?,
            );
        }
        if let (Some(cert), Some(key)) = (&conn.tls_client_cert, &conn.tls_client_key) {
            let mut pem = read(cert)?;
            pem.push(b'\n');
            pem.extend(read(key)?);
            http = http.identity(reqwest::Identity::from_pem(&pem).with_context(|| {
                format!(
                    "{} and {} are not a PEM certificate and key",
                    cert.display(),
                    key.display()
                )
            })?);
        }
        Ok(Client {
            http: http.build()?,
            url: conn.url.trim_end_matches('/').to_owned(),
            key,
        })
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Body>,
    ) -> anyhow::Result<Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(key) = &self.key {
            req = req.bearer_auth(key);
        }
        match body {
            Some(Body::Json(v)) => req = req.json(&v),
            Some(Body::NdJson(text)) => {
                req = req
                    .header("content-type", "application/x-ndjson")
                    .body(text)
            }
            Some(Body::Wasm(bytes)) => {
                req = req.header("content-type", "application/wasm").body(bytes)
            }
            None => {}
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the gateway at {}", self.url))?;
        let status = resp.status();
        let text = resp.text().await?;
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if !status.is_success() && value.get("results").is_none() {
            let msg = value
                .get("message")
                .and_then(Value::as_str)
                .map_or_else(|| value.to_string(), str::to_owned);
            let code = value
                .get("error_code")
                .map(Value::to_string)
                .unwrap_or_default();
            bail!("{msg} (HTTP {status}, error_code {code})");
        }
        Ok(value)
    }
}

pub enum Body {
    Json(Value),
    NdJson(String),
    Wasm(Vec<u8>),
}

pub fn print(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).expect("JSON prints"));
}

pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
