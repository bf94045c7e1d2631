//! One certificate order: the account (kept in the cache, created once per CA), the
//! order, a TLS-ALPN-01 challenge certificate per name for the resolver to answer the
//! CA's validation with, the CSR with a fresh key, and the issued chain.

use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

use super::http_client::ReqwestClient;
use super::{Acme, AcmeError};

/// Validation and issuance get this long each: pebble takes a second, Let's Encrypt
/// usually a few.
const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(250))
    .backoff(1.5)
    .timeout(Duration::from_secs(90));

const NO_ACCOUNT: &str = "urn:ietf:params:acme:error:accountDoesNotExist";

/// The issued chain and its key, as PEM.
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
}

impl Acme {
    /// Orders a certificate for every configured name. Challenge certificates stay
    /// with the resolver until the caller clears them.
    pub(super) async fn order(&self) -> Result<Issued, AcmeError> {
        let identifiers: Vec<Identifier> = self
            .settings
            .domains
            .iter()
            .map(|d| Identifier::Dns(d.clone()))
            .collect();
        let new_order = NewOrder::new(&identifiers);
        let mut order = match self.account().await?.new_order(&new_order).await {
            // The CA no longer knows the kept account (deactivated, or a test CA that
            // was restarted): without a new one every retry would fail the same way.
            Err(instant_acme::Error::Api(p)) if p.r#type.as_deref() == Some(NO_ACCOUNT) => {
                tracing::warn!(
                    directory = %self.settings.directory,
                    "the ACME CA no longer knows the kept account; creating a new one"
                );
                self.cache.forget_account()?;
                self.account().await?.new_order(&new_order).await
            }
            result => result,
        }
        .map_err(|e| AcmeError::ca("creating the order", e))?;
        let mut authorizations = order.authorizations();
        while let Some(result) = authorizations.next().await {
            let mut authz = result.map_err(|e| AcmeError::ca("reading an authorization", e))?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                // Validated recently for this account (the CA may reuse it).
                AuthorizationStatus::Valid => continue,
                status => {
                    return Err(AcmeError::Refused(format!(
                        "authorization for {} is {status:?}",
                        authz.identifier()
                    )));
                }
            }
            let name = authz.identifier().to_string();
            let mut challenge = authz.challenge(ChallengeType::TlsAlpn01).ok_or_else(|| {
                AcmeError::Refused(format!("no tls-alpn-01 challenge for {name}"))
            })?;
            let key = challenge_key(&name, challenge.key_authorization().digest().as_ref())?;
            self.certs.set_challenge(&name, Arc::new(key));
            tracing::info!(domain = %name, "ACME challenge ready, asking the CA to validate");
            challenge
                .set_ready()
                .await
                .map_err(|e| AcmeError::ca("answering the challenge", e))?;
        }
        let status = order
            .poll_ready(&POLL)
            .await
            .map_err(|e| AcmeError::ca("waiting for validation", e))?;
        if status != OrderStatus::Ready {
            let mut why = problem_of(order.state().error.as_ref());
            if why.is_empty() {
                why = challenge_errors(&mut order).await;
            }
            return Err(AcmeError::Refused(format!(
                "the order is {status:?} after validation{why}"
            )));
        }
        let key = rcgen::KeyPair::generate().map_err(|e| AcmeError::Setup(e.to_string()))?;
        let mut params = rcgen::CertificateParams::new(self.settings.domains.clone())
            .map_err(|e| AcmeError::Setup(e.to_string()))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params
            .serialize_request(&key)
            .map_err(|e| AcmeError::Setup(e.to_string()))?;
        order
            .finalize_csr(csr.der())
            .await
            .map_err(|e| AcmeError::ca("finalizing the order", e))?;
        let chain_pem = order
            .poll_certificate(&POLL)
            .await
            .map_err(|e| AcmeError::ca("downloading the certificate", e))?;
        Ok(Issued {
            chain_pem,
            key_pem: key.serialize_pem(),
        })
    }

    /// The cached account for this CA, or a new one (kept before it is used).
    async fn account(&self) -> Result<Account, AcmeError> {
        let directory = &self.settings.directory;
        let client = || -> Result<Box<ReqwestClient>, AcmeError> {
            Ok(Box::new(ReqwestClient::new(
                self.settings.ca_root.as_deref(),
            )?))
        };
        if let Some(credentials) = self.cache.account(directory)? {
            return Account::builder_with_http(client()?)
                .from_credentials(credentials)
                .await
                .map_err(|e| AcmeError::ca("loading the account", e));
        }
        let contact = self.settings.email.as_ref().map(|e| format!("mailto:{e}"));
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let (account, credentials) = Account::builder_with_http(client()?)
            .create(
                &NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                directory.clone(),
                None,
            )
            .await
            .map_err(|e| AcmeError::ca("creating the account", e))?;
        self.cache.save_account(directory, credentials)?;
        tracing::info!(directory = %directory, id = %account.id(), "ACME account created");
        Ok(account)
    }
}

/// The self-signed certificate RFC 8737 asks for: the name, and the SHA-256 of the key
/// authorization in the critical acmeIdentifier extension.
fn challenge_key(name: &str, digest: &[u8]) -> Result<CertifiedKey, AcmeError> {
    let setup = |e: rcgen::Error| AcmeError::Setup(format!("challenge certificate: {e}"));
    let key = rcgen::KeyPair::generate().map_err(setup)?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).map_err(setup)?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(setup)?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signer = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| AcmeError::Setup(format!("challenge key: {e}")))?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signer))
}

/// Why validation failed, as the CA says in each failed challenge (e.g. it could not
/// connect to port 443, or got another certificate): what an operator needs to fix.
async fn challenge_errors(order: &mut instant_acme::Order) -> String {
    let mut why = String::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        let Ok(state) = authz.refresh().await else {
            continue;
        };
        let name = state.identifier().to_string();
        for problem in state.challenges.iter().filter_map(|c| c.error.as_ref()) {
            why.push_str(&format!("; {name}: {problem}"));
        }
    }
    why
}

fn problem_of(problem: Option<&instant_acme::Problem>) -> String {
    problem.map(|p| format!(": {p}")).unwrap_or_default()
}
