//! Console sessions: a cookie holding 256 random bits, stored server-side only as a hash
//! (so every node sees a logout at the next request), with an idle timeout and an
//! absolute lifetime. Each session has a CSRF token derived from the cookie's value: the
//! page can be given it again after a reload (`GET /admin/v1/auth/session`), and it
//! proves nothing without the cookie.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::Digest;

use super::access::{Principal, Via};
use super::admins::principal_of;
use super::{AdminError, AdminService, Result};
use crate::crypto::{random_token, sha256_hex};
use crate::store::{AdminRow, AdminSessionRow, now_ms};

/// The session cookie's name.
pub const COOKIE: &str = "plinth_admin_session";

#[derive(Clone, Copy, Debug)]
pub struct SessionTimes {
    /// A session unused this long ends.
    pub idle: Duration,
    /// A session ends this long after sign-in, however busy.
    pub lifetime: Duration,
}

/// A new session: the cookie's value and the CSRF token go to the client once.
pub struct OpenedSession {
    pub cookie: String,
    pub csrf_token: String,
    pub expires_at: i64,
    pub principal: Principal,
}

/// The CSRF token of the session whose cookie holds `cookie`.
fn csrf_of(cookie: &str) -> String {
    let mut h = sha2::Sha256::new();
    h.update(b"plinth admin csrf\0");
    h.update(cookie.as_bytes());
    URL_SAFE_NO_PAD.encode(h.finalize())
}

impl AdminService {
    pub fn session_times(&self) -> SessionTimes {
        self.sessions
    }

    /// Signs in with email and password (rate limited like `login`) and opens a session.
    pub async fn open_session(&self, email: &str, pw: &str, ip: &str) -> Result<OpenedSession> {
        let admin = self.check_password(email, pw, ip).await?;
        self.start_session(admin).await
    }

    /// Opens a session for an admin whose credentials were just proven (a sign-in, an
    /// accepted invitation).
    pub(super) async fn start_session(&self, admin: AdminRow) -> Result<OpenedSession> {
        let now = now_ms();
        let idle_ms = self.sessions.idle.as_millis() as i64;
        // Ended sessions are dropped here, at sign-in, rather than by a timer.
        self.store.prune_admin_sessions(now, now - idle_ms).await?;
        let cookie = random_token(32);
        let csrf_token = csrf_of(&cookie);
        let expires_at = now + self.sessions.lifetime.as_millis() as i64;
        self.store
            .create_admin_session(&AdminSessionRow {
                id: sha256_hex(&cookie),
                admin_id: admin.id.clone(),
                csrf_hash: sha256_hex(&csrf_token),
                created_at: now,
                last_seen_at: now,
                expires_at,
            })
            .await?;
        let principal = principal_of(
            admin,
            Via::Session {
                id: sha256_hex(&cookie),
                csrf_token: csrf_token.clone(),
            },
        )?;
        Ok(OpenedSession {
            cookie,
            csrf_token,
            expires_at,
            principal,
        })
    }

    /// The principal of a session cookie's value. Ended sessions are deleted on sight.
    pub async fn verify_session(&self, cookie: &str) -> Result<Principal> {
        let id = sha256_hex(cookie);
        let session = self
            .store
            .get_admin_session(&id)
            .await?
            .ok_or(AdminError::SessionExpired)?;
        let now = now_ms();
        let idle_ms = self.sessions.idle.as_millis() as i64;
        if now >= session.expires_at || now - session.last_seen_at >= idle_ms {
            self.store.delete_admin_session(&id).await?;
            return Err(AdminError::SessionExpired);
        }
        let csrf_token = csrf_of(cookie);
        if !crate::crypto::ct_eq(
            sha256_hex(&csrf_token).as_bytes(),
            session.csrf_hash.as_bytes(),
        ) {
            return Err(AdminError::SessionExpired);
        }
        // One write per tenth of the idle timeout (at most a minute), not one per request.
        if now - session.last_seen_at >= (idle_ms / 10).min(60_000) {
            self.store.touch_admin_session(&id, now).await?;
        }
        let admin = self
            .store
            .get_admin(&session.admin_id)
            .await?
            .ok_or(AdminError::SessionExpired)?;
        principal_of(admin, Via::Session { id, csrf_token })
    }

    /// Ends the caller's session (a no-op for tokens and keys).
    pub async fn close_session(&self, p: &Principal) -> Result<()> {
        if let Via::Session { id, .. } = &p.via {
            self.store.delete_admin_session(id).await?;
            self.auth_cache.forget_readers().await;
        }
        Ok(())
    }
}
