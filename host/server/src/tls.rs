//! TLS on the listener (rustls, aws-lc-rs): `sluice serve --tls-cert FILE --tls-key FILE`, or
//! `[tls]` in the configuration. PEM files: the certificate chain (leaf first) and its private
//! key (PKCS#8, PKCS#1 or SEC1). HTTP/1.1 is offered by ALPN.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio_rustls::TlsAcceptor;

/// Where the listener's certificate and key are.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading the TLS certificate chain {0}: {1}")]
    Cert(PathBuf, String),
    #[error("reading the TLS private key {0}: {1}")]
    Key(PathBuf, String),
    #[error("the TLS certificate and key do not make a server configuration: {0}")]
    Config(String),
}

/// The acceptor for `files`, checked now so a bad certificate stops the start, not a client.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let certs = read_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| TlsError::Key(files.key.clone(), e.to_string()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::Cert(path.to_owned(), e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Cert(path.to_owned(), e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Cert(
            path.to_owned(),
            "no certificate in it".into(),
        ));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_garbled_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("x.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let files = TlsFiles {
            cert: garbage.clone(),
            key: garbage.clone(),
        };
        let e = acceptor(&files).err().expect("refused").to_string();
        assert!(e.contains("x.pem"), "{e}");
        let missing = TlsFiles {
            cert: dir.path().join("none.pem"),
            key: garbage,
        };
        assert!(
            acceptor(&missing)
                .err()
                .expect("refused")
                .to_string()
                .contains("none.pem")
        );
    }
}
