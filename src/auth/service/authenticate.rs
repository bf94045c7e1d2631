//! Who a tenant request's bearer token stands for.

use std::sync::Arc;

use super::AuthService;
use crate::auth::cache::CachedKey;
use crate::auth::reader::ReaderVerdict;
use crate::auth::tokens::{AccessClaims, READER_PREFIX, ReaderClaims, TokenError};
use crate::auth::{AuthError, CredentialError};
use crate::store::SessionState;
use crate::tenancy::{Scope, SystemTask, Tenant, UserCaller, service_keys};

impl AuthService {
    /// Decides who a tenant request's bearer token stands for. A present but invalid
    /// token is an error, never a silent downgrade to anonymous. An admin's read token
    /// is checked by its signature and expiry, then by the admin layer: its admin, role
    /// and session or key must still stand (see `AdminService::read_token`).
    pub async fn authenticate(
        &self,
        tenant: Arc<Tenant>,
        bearer: Option<&str>,
    ) -> Result<Scope, AuthError> {
        let Some(token) = bearer else {
            return Ok(Scope::anonymous(tenant));
        };
        if let Some(jwt) = token.strip_prefix(READER_PREFIX) {
            let claims: ReaderClaims = self
                .keyring
                .verify(jwt, &tenant.reader_audience())
                .await
                .map_err(|e| match e {
                    TokenError::Expired => AuthError::TokenExpired,
                    TokenError::Invalid(why) => CredentialError::InvalidToken(why).into(),
                })?;
            self.check_reader(tenant.id, token, &claims).await?;
            return Ok(Scope::reader(tenant, &claims.actor));
        }
        let lookup = Scope::system(tenant.clone(), SystemTask::Authentication);
        if let Some(prefix) = service_keys::prefix_of(token) {
            let key = match self.cache.key(tenant.id, prefix) {
                Some(k) => Some(k),
                None => {
                    let found = self.store.find_service_key(&lookup, prefix).await?;
                    found.map(|row| {
                        let k = CachedKey {
                            id: row.id,
                            hash: row.key_hash,
                        };
                        self.cache.remember_key(tenant.id, prefix, k.clone());
                        k
                    })
                }
            };
            return match key {
                Some(k) if service_keys::matches(token, &k.hash) => {
                    Ok(Scope::service_key(tenant, k.id))
                }
                _ => Err(
                    CredentialError::InvalidToken("unknown or revoked service key".into()).into(),
                ),
            };
        }
        let audience = tenant.audience();
        let claims = match self
            .cache
            .verified(token, crate::auth::tokens::unix_now())
            .filter(|c| c.aud == audience)
        {
            Some(c) => c,
            None => {
                let claims: AccessClaims =
                    self.keyring
                        .verify(token, &audience)
                        .await
                        .map_err(|e| match e {
                            TokenError::Expired => AuthError::TokenExpired,
                            TokenError::Invalid(why) => CredentialError::InvalidToken(why).into(),
                        })?;
                let claims = Arc::new(claims);
                self.cache.remember_verified(token, claims.clone());
                claims
            }
        };
        let live = self.cache.session_live(tenant.id, &claims.sid, &claims.sub)
            || match self
                .store
                .session_state(&lookup, &claims.sid, &claims.sub)
                .await?
            {
                SessionState::Active => {
                    self.cache
                        .remember_session(tenant.id, &claims.sid, &claims.sub);
                    true
                }
                SessionState::Inactive => false,
            };
        match if live {
            SessionState::Active
        } else {
            SessionState::Inactive
        } {
            SessionState::Active => Ok(Scope::user(
                tenant,
                UserCaller {
                    uid: claims.sub.clone(),
                    email: claims.email.clone(),
                    email_verified: claims.email_verified,
                    session_id: claims.sid.clone(),
                },
            )),
            SessionState::Inactive => Err(AuthError::SessionRevoked),
        }
    }

    /// Whether a verified read token still stands, from this node's short cache or the
    /// admin layer.
    async fn check_reader(
        &self,
        tenant: i64,
        token: &str,
        claims: &ReaderClaims,
    ) -> Result<(), AuthError> {
        if self.cache.reader_live(token) {
            return Ok(());
        }
        let check = self.reader_check.get().ok_or_else(|| {
            CredentialError::InvalidToken("read tokens are not accepted here".into())
        })?;
        match check.check(tenant, claims).await? {
            ReaderVerdict::Live => {
                self.cache.remember_reader(token);
                Ok(())
            }
            ReaderVerdict::Ended => Err(AuthError::ReaderRevoked),
            ReaderVerdict::Hidden => Err(AuthError::TenantHidden),
        }
    }
}
