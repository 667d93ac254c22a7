//! The client side of SIP over TLS to the trunk (RFC 3261 §18, §26.3.1):
//! rustls with the ring provider (as the dial-in listener), trusting only
//! the CA certificates of `[sip] trunk.tls_ca` (this build carries no
//! system root store), checking that the trunk's certificate is for the
//! configured name, and presenting a client certificate when one is
//! configured. Built at config load, so a daemon that starts can dial.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// What a TLS connection to the trunk is made with.
#[derive(Clone)]
pub struct TrunkTls {
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) server_name: ServerName<'static>,
}

impl fmt::Debug for TrunkTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrunkTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TrunkTls {
    /// From the CA bundle `ca`, the name the trunk's certificate must be
    /// for, and an optional client certificate chain and key. The error is
    /// a sentence fragment saying what to fix (the config error adds
    /// `[sip.trunk]`).
    pub(crate) fn new(
        ca: &Path,
        server_name: &str,
        client: Option<(&Path, &Path)>,
    ) -> Result<Self, String> {
        let certs = CertificateDer::pem_file_iter(ca)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| {
                format!(
                    "tls_ca = {:?} holds no readable PEM certificates ({e}); name the PEM file of the CA certificates the trunk's certificate is issued by",
                    ca.display().to_string()
                )
            })?;
        let mut roots = RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(format!(
                "tls_ca = {:?} holds no usable CA certificate; name the PEM file of the CA certificates the trunk's certificate is issued by",
                ca.display().to_string()
            ));
        }
        let server_name = ServerName::try_from(server_name.to_owned()).map_err(|_| {
            format!(
                "tls_server_name = {server_name:?} is neither a DNS name nor an IP address; write the name the trunk's certificate is for"
            )
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup failed ({e})"))?
            .with_root_certificates(roots);
        let config = match client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| {
                        format!(
                            "tls_cert = {:?} holds no readable PEM certificate ({e})",
                            cert.display().to_string()
                        )
                    })?;
                if chain.is_empty() {
                    return Err(format!(
                        "tls_cert = {:?} holds no certificate",
                        cert.display().to_string()
                    ));
                }
                let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    format!(
                        "tls_key = {:?} holds no readable PEM private key ({e})",
                        key.display().to_string()
                    )
                })?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| {
                        format!(
                            "tls_cert and tls_key ({} and {}) do not make a usable certificate and key ({e})",
                            cert.display(),
                            key.display()
                        )
                    })?
            }
        };
        Ok(Self {
            config: Arc::new(config),
            server_name,
        })
    }
}
