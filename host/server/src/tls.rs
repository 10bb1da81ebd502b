//! TLS on the listener (rustls, aws-lc-rs): `sluice serve --tls-cert FILE --tls-key FILE`, or
//! `[tls]` in the configuration. PEM files: the certificate chain (leaf first) and its private
//! key (PKCS#8, PKCS#1 or SEC1). HTTP/1.1 is offered by ALPN.
//!
//! Client certificates: with `client_ca` (`--tls-client-ca`), clients may present a
//! certificate issued under one of its PEM roots; the handshake verifies it, and a request
//! without an `Authorization` header then authenticates as the key bound to the certificate's
//! SHA-256 (see `sluice_tenancy::auth::ApiKey::client_cert_sha256`). With
//! `require_client_cert`, a connection without a valid certificate is refused in the handshake.

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
    /// PEM roots that client certificates are verified against (none: not asked for).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Refuse connections that present no valid client certificate (needs `client_ca`).
    #[serde(default)]
    pub require_client_cert: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading the TLS certificate chain {0}: {1}")]
    Cert(PathBuf, String),
    #[error("reading the TLS private key {0}: {1}")]
    Key(PathBuf, String),
    #[error("the TLS certificate and key do not make a server configuration: {0}")]
    Config(String),
    #[error("the client CA {0}: {1}")]
    ClientCa(PathBuf, String),
    #[error(
        "require_client_cert needs client_ca: the roots client certificates are checked against"
    )]
    RequireWithoutCa,
}

/// The acceptor for `files`, checked now so a bad certificate stops the start, not a client.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let certs = read_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| TlsError::Key(files.key.clone(), e.to_string()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &files.client_ca {
        None if files.require_client_cert => return Err(TlsError::RequireWithoutCa),
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| TlsError::ClientCa(ca.clone(), e.to_string()))?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider);
            let verifier = if files.require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier
                .build()
                .map_err(|e| TlsError::ClientCa(ca.clone(), e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
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
            client_ca: None,
            require_client_cert: false,
        };
        let e = acceptor(&files).err().expect("refused").to_string();
        assert!(e.contains("x.pem"), "{e}");
        let missing = TlsFiles {
            cert: dir.path().join("none.pem"),
            key: garbage,
            client_ca: None,
            require_client_cert: false,
        };
        assert!(
            acceptor(&missing)
                .err()
                .expect("refused")
                .to_string()
                .contains("none.pem")
        );
    }

    #[test]
    fn a_client_ca_must_hold_certificates_and_requiring_one_needs_it() {
        let dir = tempfile::tempdir().unwrap();
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert_file, key_file) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, signing_key.serialize_pem()).unwrap();
        let empty = dir.path().join("empty-ca.pem");
        std::fs::write(&empty, "").unwrap();
        let files = |client_ca: Option<PathBuf>, require_client_cert| TlsFiles {
            cert: cert_file.clone(),
            key: key_file.clone(),
            client_ca,
            require_client_cert,
        };
        assert!(matches!(
            acceptor(&files(None, true)),
            Err(TlsError::RequireWithoutCa)
        ));
        let e = acceptor(&files(Some(empty.clone()), false))
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("empty-ca.pem"), "{e}");
        assert!(acceptor(&files(Some(cert_file.clone()), true)).is_ok());
        assert!(acceptor(&files(Some(cert_file.clone()), false)).is_ok());
    }
}
