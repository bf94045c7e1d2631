//! Whether an admin's read token still stands. The token is the tenant API's credential,
//! checked here in `auth`; whether its admin, role and session or key still hold is the
//! admin layer's knowledge, so `admin` answers through [`ReaderCheck`], registered by the
//! composition root (`AppState::open`). Without one, read tokens are refused.

use futures_util::future::BoxFuture;

use super::AuthError;
use super::tokens::ReaderClaims;

/// What the admin layer says of a read token that verified (signature, audience, expiry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReaderVerdict {
    /// Its admin (or API key) may still read the tenant.
    Live,
    /// Its admin was removed, its session ended, its admin's password changed, or its
    /// API key was revoked or expired: 401.
    Ended,
    /// Its admin is a tenant admin no longer assigned this tenant: 404, as for a tenant
    /// that does not exist (what the admin routes answer them).
    Hidden,
}

pub trait ReaderCheck: Send + Sync {
    fn check<'a>(
        &'a self,
        tenant: i64,
        claims: &'a ReaderClaims,
    ) -> BoxFuture<'a, Result<ReaderVerdict, AuthError>>;
}
