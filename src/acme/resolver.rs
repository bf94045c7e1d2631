//! The certificate a handshake gets: the current one, or, for a ClientHello that offers
//! only ALPN `acme-tls/1` (the CA validating a TLS-ALPN-01 challenge, RFC 8737), the
//! challenge certificate of the name it asks for. One port serves both, like Caddy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The ALPN protocol of TLS-ALPN-01 validation.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

#[derive(Default)]
pub struct AcmeCerts {
    /// None until the first certificate is obtained: normal handshakes fail until then.
    current: RwLock<Option<Arc<CertifiedKey>>>,
    /// Challenge certificates by DNS name, while an order is being validated.
    challenges: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for AcmeCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeCerts")
            .field("has_certificate", &self.current().is_some())
            .finish_non_exhaustive()
    }
}

impl AcmeCerts {
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Handshakes from now on get `key`; connections already open keep theirs.
    pub fn set_current(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(key);
    }

    pub fn set_challenge(&self, domain: &str, key: Arc<CertifiedKey>) {
        self.challenges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(domain.to_string(), key);
    }

    pub fn clear_challenges(&self) {
        self.challenges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    fn challenge(&self, domain: &str) -> Option<Arc<CertifiedKey>> {
        self.challenges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(domain)
            .cloned()
    }
}

impl ResolvesServerCert for AcmeCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let validation = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if validation {
            // No name, or one with no challenge pending: no certificate, the handshake
            // fails (the real certificate must never answer an `acme-tls/1` hello).
            let name = hello.server_name()?.to_ascii_lowercase();
            return self.challenge(&name);
        }
        self.current()
    }
}
