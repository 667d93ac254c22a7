//! The browser's side, for sluice's own tests and `sluice-bench`: a DTLS
//! client (`a=setup:active`) and the ICE check a browser sends, sans-IO.
//! Never used by the relay itself.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use dimpl::{Dtls, Output};

use crate::identity::DtlsIdentity;
use crate::keying::{DtlsSrtpProfile, LegKeying};
use crate::stun::{Class, METHOD_BINDING, MessageWriter, StunError, attr};

/// A DTLS-SRTP client with its own certificate.
pub struct DtlsClient {
    dtls: Dtls,
    keying: Option<LegKeying>,
    peer_cert: Option<Vec<u8>>,
    failed: bool,
}

impl std::fmt::Debug for DtlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsClient")
            .field("keyed", &self.keying.is_some())
            .finish_non_exhaustive()
    }
}

impl DtlsClient {
    /// A client using `identity`, starting at `now`.
    pub fn new(identity: &DtlsIdentity, now: Instant) -> Self {
        // Building a dimpl config validates its crypto provider (about a
        // millisecond); every client shares one.
        static CONFIG: OnceLock<Arc<dimpl::Config>> = OnceLock::new();
        let config = CONFIG.get_or_init(|| {
            let config = dimpl::Config::builder()
                .with_crypto_provider(crate::crypto::provider())
                .build()
                // The defaults and a provider whose every part is dimpl's
                // own or ring's: nothing here can be refused.
                .unwrap_or_else(|e| unreachable!("dimpl refused its default config: {e}"));
            Arc::new(config)
        });
        let mut dtls = Dtls::new_12(Arc::clone(config), identity.certificate.clone(), now);
        dtls.set_active(true);
        Self {
            dtls,
            keying: None,
            peer_cert: None,
            failed: false,
        }
    }

    /// Feeds a datagram from the relay.
    pub fn handle_packet(&mut self, now: Instant, datagram: &[u8]) {
        if self.dtls.handle_timeout(now).is_err() || self.dtls.handle_packet(datagram).is_err() {
            self.failed = true;
        }
    }

    /// Advances time (retransmissions).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.dtls.handle_timeout(now).is_err() {
            self.failed = true;
        }
    }

    /// Every datagram due now, each as its own `Vec`.
    pub fn poll_transmits(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 2048];
        loop {
            match self.dtls.poll_output(&mut buf) {
                Output::Packet(p) => out.push(p.to_vec()),
                Output::Timeout(_) => break,
                Output::BufferTooSmall { needed } => buf.resize(needed, 0),
                Output::PeerCert(der) => self.peer_cert = Some(der.to_vec()),
                Output::KeyingMaterial(m, p) => {
                    let profile = match p {
                        dimpl::SrtpProfile::AEAD_AES_256_GCM => DtlsSrtpProfile::AeadAes256Gcm,
                        dimpl::SrtpProfile::AEAD_AES_128_GCM => DtlsSrtpProfile::AeadAes128Gcm,
                        _ => DtlsSrtpProfile::AesCm128HmacSha1_80,
                    };
                    self.keying = LegKeying::split(profile, &m).ok();
                }
                _ => {}
            }
        }
        out
    }

    /// The leg's keys once the handshake is done (the same split the relay
    /// makes: `client_to_relay` is what this side protects with).
    pub fn keying(&self) -> Option<&LegKeying> {
        self.keying.as_ref()
    }

    /// The relay's certificate (DER), once received.
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        self.peer_cert.as_deref()
    }

    /// Whether dimpl ended the connection.
    pub fn has_failed(&self) -> bool {
        self.failed
    }
}

/// Writes the Binding request a controlling browser sends the relay:
/// USERNAME `relay_ufrag:own_ufrag`, ICE-CONTROLLING, optionally
/// USE-CANDIDATE, MESSAGE-INTEGRITY under the relay's password, FINGERPRINT.
pub fn write_check(
    out: &mut [u8],
    transaction_id: [u8; 12],
    relay_ufrag: &str,
    own_ufrag: &str,
    relay_pwd: &str,
    use_candidate: bool,
) -> Result<usize, StunError> {
    let mut username = [0u8; 520];
    let (r, o) = (relay_ufrag.as_bytes(), own_ufrag.as_bytes());
    let n = r.len() + 1 + o.len();
    let name = username.get_mut(..n).ok_or(StunError::BufferTooSmall)?;
    name[..r.len()].copy_from_slice(r);
    name[r.len()] = b':';
    name[r.len() + 1..].copy_from_slice(o);
    let mut w = MessageWriter::new(out, Class::Request, METHOD_BINDING, transaction_id);
    w.attribute(attr::USERNAME, &username[..n])
        .attribute(attr::PRIORITY, &0x6e7f_1effu32.to_be_bytes())
        .attribute(attr::ICE_CONTROLLING, &transaction_id[..8]);
    if use_candidate {
        w.attribute(attr::USE_CANDIDATE, &[]);
    }
    w.integrity(relay_pwd.as_bytes()).fingerprint().finish()
}
