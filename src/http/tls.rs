//! TLS for `plinth serve --tls-cert --tls-key`: rustls with the ring provider (the one
//! sqlx and reqwest already build, so there is one TLS stack), ALPN `h2` and `http/1.1`.
//! The certificate sits behind a resolver so that SIGHUP can swap it: handshakes after a
//! reload get the new one, connections already open keep theirs, and files that fail to
//! load leave the old certificate in place.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsFiles;

/// What is wrong with the TLS files; every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS certificate file {}: {reason}", path.display())]
    Cert { path: PathBuf, reason: String },
    #[error("TLS key file {}: {reason}", path.display())]
    Key { path: PathBuf, reason: String },
    #[error(
        "TLS key file {} does not belong to the certificate in {}",
        key.display(),
        cert.display()
    )]
    Mismatch { cert: PathBuf, key: PathBuf },
    /// The cause is in the message, not `source()` (see `StoreError`).
    #[error("TLS setup: {0}")]
    Setup(rustls::Error),
}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        TlsError::Setup(e)
    }
}

/// The certificate being served, and the files it is read from again on reload.
pub struct CertStore {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl CertStore {
    /// Reads and checks both files.
    pub fn load(files: &TlsFiles) -> Result<Arc<CertStore>, TlsError> {
        let key = load(files)?;
        Ok(Arc::new(CertStore {
            files: files.clone(),
            current: RwLock::new(Arc::new(key)),
        }))
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Reads both files again; on any error the certificate served stays the old one.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = Arc::new(load(&self.files)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = key;
        Ok(())
    }

    fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The handshakes of a server serving these files (see [`acceptor`]).
    pub fn acceptor(self: &Arc<Self>) -> Result<TlsAcceptor, TlsError> {
        acceptor(self.clone(), &[])
    }
}

/// The server side of every handshake: TLS 1.2 and 1.3, no client certificates,
/// HTTP/2 preferred over HTTP/1.1 when the client offers both; `extra_alpn` after them
/// (ACME's `acme-tls/1`: rustls refuses a hello whose protocols it does not list).
pub fn acceptor(
    resolver: Arc<dyn ResolvesServerCert>,
    extra_alpn: &[&[u8]],
) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
        .alpn_protocols
        .extend(extra_alpn.iter().map(|p| p.to_vec()));
    Ok(TlsAcceptor::from(Arc::new(config)))
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Reads the chain and the key, and checks that the key is the certificate's.
fn load(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let cert_err = |reason: String| TlsError::Cert {
        path: files.cert.clone(),
        reason,
    };
    let key_err = |reason: String| TlsError::Key {
        path: files.key.clone(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(&read(&files.cert).map_err(cert_err)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(pem_reason(e, "CERTIFICATE")))?;
    if chain.is_empty() {
        return Err(cert_err(pem_reason(
            pem::Error::NoItemsFound,
            "CERTIFICATE",
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(&files.key).map_err(key_err)?)
        .map_err(|e| key_err(pem_reason(e, "PRIVATE KEY")))?;
    let signer = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| key_err(format!("not a usable private key ({e})")))?;
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::Mismatch {
                cert: files.cert.clone(),
                key: files.key.clone(),
            })
        }
        // ring can always give the key's public half, so "unknown" does not happen; a
        // certificate that does not parse lands here.
        Err(e) => Err(cert_err(format!("not a usable certificate ({e})"))),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read it ({e})"))
}

fn pem_reason(e: pem::Error, what: &str) -> String {
    match e {
        pem::Error::NoItemsFound => format!("no PEM {what} block in it"),
        e => format!("not valid PEM ({e})"),
    }
}

/// Reloads the certificate on every SIGHUP, for the life of the process. The handler is
/// installed before this returns, so a SIGHUP sent once the server says it listens can
/// no longer end the process (the default action).
#[cfg(unix)]
pub fn reload_on_sighup(store: Arc<CertStore>) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let s = store.clone();
            // Two small files, but still a blocking read: off the async workers.
            match tokio::task::spawn_blocking(move || s.reload()).await {
                Ok(Ok(())) => tracing::info!(
                    cert = %store.files.cert.display(),
                    "TLS certificate reloaded"
                ),
                Ok(Err(e)) => tracing::error!(
                    error = %e,
                    "TLS certificate reload failed; still serving the previous certificate"
                ),
                Err(e) => tracing::error!(error = %e, "TLS certificate reload panicked"),
            }
        }
    }))
}
