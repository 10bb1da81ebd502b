//! `sluice serve`: its flags, and the options they make with the configuration file.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;

use sluice_server::config::{DEFAULT_DATA, DEFAULT_LISTEN, DEFAULT_MAX_BODY, FileConfig};
use sluice_server::serve::ServeOptions;

#[derive(Args, Clone)]
pub struct ServeArgs {
    /// Data directory (the log itself with the default store; always `admin.key`).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Object store URL, `s3://bucket/prefix` (AWS_* variables; AWS_ENDPOINT_URL for
    /// S3-compatible stores). Default: the data directory.
    #[arg(long)]
    pub store: Option<String>,
    /// TOML configuration file; flags win over it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// An internal network (CIDR, e.g. 127.0.0.0/8) webhooks may be delivered to; repeat for
    /// more. Adds to `[webhooks] allow_networks`.
    #[arg(long = "webhook-allow-network")]
    pub webhook_allow_network: Vec<ipnet::IpNet>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Ask clients for a certificate issued under these PEM roots; a request without an
    /// Authorization header then authenticates as the key bound to its certificate.
    #[arg(long)]
    pub tls_client_ca: Option<PathBuf>,
    /// Refuse TLS connections without a valid client certificate (with --tls-client-ca).
    #[arg(long, requires = "tls_client_ca")]
    pub tls_require_client_cert: bool,
}

impl ServeArgs {
    /// TLS from the flags over the file's `[tls]`.
    fn tls(
        &self,
        file: Option<sluice_server::tls::TlsFiles>,
    ) -> anyhow::Result<Option<sluice_server::tls::TlsFiles>> {
        let mut tls = match (&self.tls_cert, &self.tls_key, file) {
            (Some(cert), Some(key), file) => Some(sluice_server::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: file.as_ref().and_then(|f| f.client_ca.clone()),
                require_client_cert: file.is_some_and(|f| f.require_client_cert),
            }),
            (_, _, file) => file,
        };
        match (&mut tls, &self.tls_client_ca) {
            (None, Some(_)) => {
                anyhow::bail!("--tls-client-ca needs TLS: --tls-cert and --tls-key, or [tls]")
            }
            (Some(tls), ca) => {
                if let Some(ca) = ca {
                    tls.client_ca = Some(ca.clone());
                }
                tls.require_client_cert |= self.tls_require_client_cert;
            }
            (None, None) => {}
        }
        Ok(tls)
    }

    pub fn options(&self) -> anyhow::Result<ServeOptions> {
        let file = match &self.config {
            Some(p) => FileConfig::load(p).map_err(|e| anyhow!(e))?,
            None => FileConfig::default(),
        };
        let store = self.store.clone().or(file.store);
        Ok(ServeOptions {
            data: self
                .data
                .clone()
                .or(file.data)
                .unwrap_or_else(|| DEFAULT_DATA.into()),
            listen: self
                .listen
                .or(file.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("default address")),
            log: file.log.options(store.is_some()),
            store,
            s3: file.s3,
            max_body_bytes: file.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY),
            wasm: file.wasm.options(),
            limits: file.limits,
            registry: file.registry,
            http: file.http,
            disk: file.disk,
            quotas: file.quotas,
            encryption: {
                let mut e = file.encryption;
                if let Ok(k) = std::env::var("SLUICE_KEK") {
                    e.kek = Some(k);
                }
                if let Ok(p) = std::env::var("SLUICE_KEK_PREVIOUS") {
                    e.previous_keks = p.split(',').map(str::to_owned).collect();
                }
                e
            },
            tls: self.tls(file.tls)?,
            webhooks: sluice_delivery::egress::Egress {
                allow: file
                    .webhooks
                    .allow_networks
                    .into_iter()
                    .chain(self.webhook_allow_network.iter().cloned())
                    .collect(),
            },
        })
    }
}
