//! Mutual TLS between the nodes: every node presents a certificate signed
//! by the cluster's CA and accepts only peers that present one too. The
//! cookie still authenticates the `ractor_cluster` session inside.

use std::sync::Arc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Why the TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("{what}: no PEM certificate in it")]
    NoCertificate { what: &'static str },
    #[error("{what}: {reason}")]
    Pem { what: &'static str, reason: String },
    #[error("the TLS settings are unusable: {0}")]
    Config(String),
}

/// The node's TLS, both ends.
#[derive(Clone)]
pub struct ClusterTls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterTls")
    }
}

fn certs(pem: &[u8], what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { what });
    }
    Ok(certs)
}

impl ClusterTls {
    /// From PEM: this node's certificate chain, its private key, and the
    /// CA that signs every node's certificate.
    pub fn from_pem(chain: &[u8], key: &[u8], ca: &[u8]) -> Result<ClusterTls, TlsError> {
        let chain = certs(chain, "the node certificate")?;
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::Pem {
            what: "the node key",
            reason: e.to_string(),
        })?;
        let mut roots = rustls::RootCertStore::empty();
        for c in certs(ca, "the CA certificate")? {
            roots
                .add(c)
                .map_err(|e| TlsError::Config(format!("the CA certificate: {e}")))?;
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = |e: rustls::Error| TlsError::Config(e.to_string());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(config)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(config)?;
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(config)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(config)?;
        Ok(ClusterTls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }

    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    pub(crate) fn connector(&self) -> TlsConnector {
        self.connector.clone()
    }
}

/// The name a peer's certificate must carry, from the `host:port` it is
/// dialed at: its IP address or its DNS name.
pub(crate) fn server_name(addr: &str) -> Option<ServerName<'static>> {
    let host = match addr.rsplit_once(':') {
        Some((h, _)) => h,
        None => addr,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_come_from_the_dialed_host() {
        assert!(matches!(
            server_name("10.0.0.1:7100"),
            Some(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("[::1]:7100"),
            Some(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("sb-1.example.net:7100"),
            Some(ServerName::DnsName(_))
        ));
    }

    #[test]
    fn bad_pem_is_a_clear_error() {
        let e = ClusterTls::from_pem(b"not pem", b"", b"").unwrap_err();
        assert!(e.to_string().contains("node certificate"), "{e}");
    }
}
