//! Automatic certificates (`serve --acme-domain`): an ACME client (instant-acme, over
//! reqwest) that obtains the server's certificate and renews it when less than 30 days
//! remain, answering the CA's TLS-ALPN-01 validation on the server's own TLS port
//! (`resolver`). The account and the certificate are kept in `--acme-dir` (`cache`), so
//! a restart serves the kept certificate without asking the CA. The server starts
//! without a certificate (handshakes fail until one is obtained); a failed order is
//! logged and tried again with a growing delay, never ending the process.

mod cache;
mod der;
mod http_client;
mod order;
pub mod resolver;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::AcmeSettings;

pub use resolver::{ACME_TLS_ALPN, AcmeCerts};

/// What went wrong; every message says which file or which step.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("ACME directory {}: {reason}", path.display())]
    Dir { path: PathBuf, reason: String },
    #[error("ACME file {}: {reason}", path.display())]
    Cache { path: PathBuf, reason: String },
    #[error("ACME CA root {}: {reason}", path.display())]
    CaRoot { path: PathBuf, reason: String },
    /// The cause is in the message (the whole chain), not `source()`.
    #[error("ACME CA, {step}: {reason}")]
    Ca { step: &'static str, reason: String },
    #[error("ACME CA refused: {0}")]
    Refused(String),
    #[error("the CA issued an unusable certificate: {0}")]
    Issued(String),
    #[error("ACME set-up: {0}")]
    Setup(String),
}

impl AcmeError {
    fn ca(step: &'static str, e: instant_acme::Error) -> AcmeError {
        AcmeError::Ca {
            step,
            reason: error_chain(&e),
        }
    }
}

/// An error and its sources, `a: b: c` (reqwest's own message omits the cause, e.g.
/// "connection refused" or a certificate error).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// The first retry after a failed order, doubled after each failure up to `MAX_RETRY`.
/// Not faster: Let's Encrypt allows 5 failed validations per name and hour.
const FIRST_RETRY: Duration = Duration::from_secs(60);
const MAX_RETRY: Duration = Duration::from_secs(6 * 3600);

pub struct Acme {
    settings: AcmeSettings,
    certs: Arc<AcmeCerts>,
    cache: cache::Cache,
    /// The served certificate's notAfter (Unix seconds), once there is one.
    not_after: Mutex<Option<i64>>,
}

impl std::fmt::Debug for Acme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acme")
            .field("domains", &self.settings.domains)
            .field("directory", &self.settings.directory)
            .finish_non_exhaustive()
    }
}

impl Acme {
    /// Opens the ACME directory and serves the certificate kept there when it is for
    /// this CA and these names. An unusable kept certificate is logged and replaced by
    /// a new order; a directory that cannot be made or an unreadable CA root ends the
    /// start.
    pub fn open(settings: AcmeSettings) -> Result<Arc<Acme>, AcmeError> {
        let cache = cache::Cache::open(&settings.dir)?;
        // Checked now, so a wrong path is a start-up error rather than a retry loop.
        http_client::ReqwestClient::new(settings.ca_root.as_deref())?;
        let acme = Acme {
            certs: Arc::new(AcmeCerts::default()),
            cache,
            not_after: Mutex::new(None),
            settings,
        };
        match acme
            .cache
            .certificate(&acme.settings.directory, &acme.settings.domains)
        {
            Ok(Some(loaded)) => {
                tracing::info!(
                    domains = ?acme.settings.domains,
                    not_after = %timestamp(loaded.not_after),
                    "ACME certificate loaded from the cache"
                );
                acme.serve(loaded);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cached ACME certificate unusable; ordering a new one")
            }
        }
        Ok(Arc::new(acme))
    }

    /// What the TLS acceptor asks for each handshake's certificate.
    pub fn resolver(&self) -> Arc<AcmeCerts> {
        self.certs.clone()
    }

    pub fn domains(&self) -> &[String] {
        &self.settings.domains
    }

    fn serve(&self, loaded: cache::Loaded) {
        self.certs.set_current(Arc::new(loaded.key));
        *self.not_after.lock().unwrap_or_else(|e| e.into_inner()) = Some(loaded.not_after);
    }

    /// Whether the certificate must be (re)newed now: none yet, or less than the
    /// renewal margin left.
    fn due(&self) -> bool {
        let not_after = *self.not_after.lock().unwrap_or_else(|e| e.into_inner());
        let margin = i64::try_from(self.settings.renew_before.as_secs()).unwrap_or(i64::MAX);
        not_after.is_none_or(|t| t.saturating_sub(margin) <= chrono::Utc::now().timestamp())
    }

    /// Orders when due, for the life of the process: checks at once, then every
    /// `check_every`; after a failure, again after a growing delay.
    pub async fn run_forever(self: Arc<Self>) {
        let mut failures: u32 = 0;
        loop {
            let wait = match self.renew_if_due().await {
                Ok(()) => {
                    failures = 0;
                    self.settings.check_every
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let wait = FIRST_RETRY
                        .saturating_mul(2u32.saturating_pow(failures - 1))
                        .min(MAX_RETRY);
                    tracing::error!(
                        error = %e,
                        domains = ?self.settings.domains,
                        directory = %self.settings.directory,
                        failures,
                        retry_in_secs = wait.as_secs(),
                        "ACME certificate order failed; will retry"
                    );
                    wait
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    async fn renew_if_due(&self) -> Result<(), AcmeError> {
        if !self.due() {
            return Ok(());
        }
        tracing::info!(
            domains = ?self.settings.domains,
            directory = %self.settings.directory,
            "ordering an ACME certificate"
        );
        let issued = self.order().await;
        self.certs.clear_challenges();
        let issued = issued?;
        let loaded = self.cache.save_certificate(
            &self.settings.directory,
            &self.settings.domains,
            issued.chain_pem,
            issued.key_pem,
        )?;
        tracing::info!(
            domains = ?self.settings.domains,
            not_after = %timestamp(loaded.not_after),
            "ACME certificate obtained"
        );
        self.serve(loaded);
        Ok(())
    }
}

/// SIGHUP reloads certificate files; with ACME there are none to reload, and the signal
/// must not end the process (its default action).
#[cfg(unix)]
pub fn ignore_sighup() -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP ignored: the ACME certificate is renewed on its own");
        }
    }))
}

fn timestamp(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| unix.to_string())
}
