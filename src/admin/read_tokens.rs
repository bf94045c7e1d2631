//! Read tokens for the tenant API: how an admin's console reads a tenant's documents
//! (a viewer, who makes no service key, above all). A token names the admin (or admin
//! API key) it was made for and how they proved it (console session, admin token, API
//! key); every use checks, through `auth::reader::ReaderCheck`, that this proof still
//! stands and that the role still sees the tenant, so removal, demotion, sign-out,
//! a password change or a revoked key end it at once rather than at its expiry.

use std::time::Duration;

use futures_util::future::BoxFuture;

use super::access::Via;
use super::admins::principal_of;
use super::api_keys::principal_of_key;
use super::{Actor, AdminError, AdminService, Principal, Result};
use crate::auth::AuthError;
use crate::auth::reader::{ReaderCheck, ReaderVerdict};
use crate::auth::tokens::{READER_PREFIX, ReaderClaims, ReaderVia, reader_claims};
use crate::store::{NewAudit, now_ms};

/// How long a read token works; the console asks for another in time. Each use is
/// checked against its admin, so this bounds only how long a leaked one is worth trying.
pub const READ_TOKEN_TTL: Duration = Duration::from_secs(10 * 60);

impl AdminService {
    /// A token that reads `slug`'s documents through the tenant API (lists, gets,
    /// realtime) as `principal`, past the rules, and writes nothing: every write it asks
    /// for is 403 `read_only`. Any role may have one for a tenant it sees. Audited as
    /// `read_token.create`.
    pub async fn read_token(&self, principal: &Principal, slug: &str) -> Result<String> {
        let tenant = self.get_tenant(slug).await?;
        let via = match (&principal.via, &principal.key_prefix) {
            (Via::Session { id, .. }, _) => ReaderVia::Session(id.clone()),
            (Via::ApiKey, Some(prefix)) => ReaderVia::Key(prefix.clone()),
            (Via::ApiKey, None) => {
                return Err(AdminError::Internal("an API key without a prefix".into()));
            }
            (Via::Token, _) => {
                let admin = self
                    .store
                    .get_admin(&principal.id)
                    .await?
                    .ok_or(AdminError::SessionExpired)?;
                ReaderVia::Token(admin.password_version)
            }
        };
        let actor = Actor::of(principal);
        let claims = reader_claims(
            tenant.reader_audience(),
            &principal.id,
            &actor.0,
            &via,
            READ_TOKEN_TTL,
        );
        let token = format!("{READER_PREFIX}{}", self.keyring.sign(&claims)?);
        // Straight to the log, not through `audit`: a read token changes nothing other
        // nodes cache of the tenant, so there is nothing to announce.
        self.store
            .append_audit(NewAudit {
                actor: &actor.0,
                action: "read_token.create",
                tenant: Some(&tenant.slug),
                target: Some(&principal.id),
                detail: serde_json::json!({
                    "via": claims.via,
                    "expires_in": READ_TOKEN_TTL.as_secs(),
                }),
            })
            .await?;
        Ok(token)
    }

    /// Whether the admin (or key) a verified read token names may still read tenant
    /// `tenant_id` through the proof the token was made with.
    pub async fn read_token_verdict(
        &self,
        tenant_id: i64,
        claims: &ReaderClaims,
    ) -> Result<ReaderVerdict> {
        let principal = match claims.proof() {
            None => return Ok(ReaderVerdict::Ended),
            Some(ReaderVia::Session(id)) => {
                let Some(session) = self.store.get_admin_session(&id).await? else {
                    return Ok(ReaderVerdict::Ended);
                };
                let now = now_ms();
                let idle_ms = self.sessions.idle.as_millis() as i64;
                if session.admin_id != claims.sub
                    || now >= session.expires_at
                    || now - session.last_seen_at >= idle_ms
                {
                    return Ok(ReaderVerdict::Ended);
                }
                self.live_admin(&claims.sub, None).await?
            }
            Some(ReaderVia::Token(pwv)) => self.live_admin(&claims.sub, Some(pwv)).await?,
            Some(ReaderVia::Key(prefix)) => match self.store.admin_key_by_prefix(&prefix).await? {
                Some(row)
                    if row.id == claims.sub
                        && row.revoked_at.is_none()
                        && row.expires_at.is_none_or(|e| e > now_ms()) =>
                {
                    principal_of_key(row)
                }
                _ => None,
            },
        };
        Ok(match principal {
            None => ReaderVerdict::Ended,
            Some(p) if p.sees(tenant_id) => ReaderVerdict::Live,
            Some(_) => ReaderVerdict::Hidden,
        })
    }

    /// The admin `id` as a principal, if they still exist (with this password version,
    /// when given) and have a role this server knows.
    async fn live_admin(&self, id: &str, pwv: Option<i64>) -> Result<Option<Principal>> {
        Ok(match self.store.get_admin(id).await? {
            Some(admin) if pwv.is_none_or(|v| v == admin.password_version) => {
                principal_of(admin, Via::Token).ok()
            }
            _ => None,
        })
    }
}

impl ReaderCheck for AdminService {
    fn check<'a>(
        &'a self,
        tenant: i64,
        claims: &'a ReaderClaims,
    ) -> BoxFuture<'a, std::result::Result<ReaderVerdict, AuthError>> {
        Box::pin(async move {
            self.read_token_verdict(tenant, claims)
                .await
                .map_err(|e| match e {
                    AdminError::Store(e) => AuthError::Store(e),
                    other => AuthError::Internal(other.to_string()),
                })
        })
    }
}
