//! Inviting admins by mail (owners only, like adding one): the invitee gets a one-time
//! link to the console, chooses a password there and is signed in. The link's token is
//! 256 random bits, stored only as a SHA-256 hash, spent once, and expires
//! (`Config::admin_invite_ttl`); a new invitation to the same email replaces the one
//! pending. The mail goes through the transport users' reset mail uses.

use std::sync::Arc;
use std::time::Duration;

use super::access::{Principal, Role};
use super::admins::{ids_json, tenant_ids};
use super::sessions::OpenedSession;
use super::{Actor, AdminError, AdminService, Result, field};
use crate::auth::mail::{Email, Mailer};
use crate::auth::{AuthError, CredentialError, password};
use crate::crypto::{random_token, sha256_hex};
use crate::store::{AdminInviteRow, NewAdminInvite, StoreError, now_ms};

/// Where invitations are sent from and what their links point at.
pub struct InviteMail {
    pub mailer: Arc<Mailer>,
    /// The server's public base URL; the link opens `{public_url}/_/invite`.
    pub public_url: String,
    /// How long a link works.
    pub ttl: Duration,
}

/// A pending invitation as the API shows it: tenants by slug, never the token.
#[derive(Debug, Clone)]
pub struct InviteView {
    pub id: String,
    pub email: String,
    pub role: Role,
    pub tenants: Vec<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

impl AdminService {
    fn invite_view(
        &self,
        row: AdminInviteRow,
        map: &std::collections::BTreeMap<i64, String>,
    ) -> InviteView {
        let role = Role::parse(&row.role).unwrap_or(Role::Viewer);
        InviteView {
            id: row.id,
            email: row.email,
            role,
            tenants: Self::slugs(map, &tenant_ids(&row.tenant_ids)),
            created_at: row.created_at,
            expires_at: row.expires_at,
        }
    }

    /// Invites `email` as an admin with this role and tenants: the rules of adding an
    /// admin (owners only; an API key makes no owner), then a mail with a one-time link.
    pub async fn invite_admin(
        &self,
        p: &Principal,
        email: &str,
        role: &str,
        tenants: &[String],
    ) -> Result<InviteView> {
        let (role, ids) = self.checked_grant(p, role, tenants).await?;
        let email = password::normalize_email(email).map_err(|e| field("email", e))?;
        if self.store.get_admin_by_email(&email).await?.is_some() {
            return Err(AdminError::AdminExists);
        }
        let token = random_token(32);
        let id = uuid::Uuid::now_v7().to_string();
        let row = self
            .store
            .create_admin_invite(&NewAdminInvite {
                id: &id,
                token_hash: &sha256_hex(&token),
                email: &email,
                role: role.as_str(),
                tenant_ids: &ids_json(&ids),
                invited_by: &p.id,
                expires_at: now_ms() + self.invites.ttl.as_millis() as i64,
            })
            .await?;
        let view = self.invite_view(row, &self.slug_map().await?);
        self.audit(
            &Actor::of(p),
            "admin_invite.create",
            None,
            Some(&view.id),
            serde_json::json!({"email": view.email, "role": role.as_str(), "tenants": view.tenants}),
        )
        .await?;
        self.send_invite(&view, &p.email, &token);
        Ok(view)
    }

    /// Mails the link in the background: the answer does not wait on the mail server
    /// (whose failures are logged, as for users' mail).
    fn send_invite(&self, invite: &InviteView, from: &str, token: &str) {
        let base = self.invites.public_url.trim_end_matches('/');
        let link = format!("{base}/_/invite#token={token}");
        let hours = self.invites.ttl.as_secs() / 3600;
        let body = format!(
            "{from} invites you to administer this Plinth server as {role}.\n\n\
             To choose your password and sign in, open this link:\n\n{link}\n\n\
             Token: {token}\n\nIt expires in {hours} hour(s) and works once. If you did not \
             expect this, ignore this message.\n",
            role = invite.role.as_str(),
        );
        let email = Email {
            to: invite.email.clone(),
            subject: "You are invited to administer Plinth".into(),
            body,
            link,
        };
        let mailer = self.invites.mailer.clone();
        tokio::spawn(async move { mailer.send(email).await });
    }

    /// Pending invitations (owners only), oldest first.
    pub async fn list_invites(&self, p: &Principal) -> Result<Vec<InviteView>> {
        Self::require_owner(p)?;
        let map = self.slug_map().await?;
        Ok(self
            .store
            .list_admin_invites(now_ms())
            .await?
            .into_iter()
            .map(|row| self.invite_view(row, &map))
            .collect())
    }

    /// Withdraws a pending invitation (owners only): its link stops working.
    pub async fn withdraw_invite(&self, p: &Principal, id: &str) -> Result<()> {
        Self::require_owner(p)?;
        let row = self
            .store
            .delete_admin_invite(id)
            .await
            .map_err(|e| super::not_found_as(e, "invitation"))?;
        self.audit(
            &Actor::of(p),
            "admin_invite.delete",
            None,
            Some(id),
            serde_json::json!({"email": row.email}),
        )
        .await?;
        Ok(())
    }

    /// The invitee sets their password with the link's token: the invitation is spent,
    /// the admin made and a console session opened. A refused password leaves the link
    /// usable. Each attempt hashes a password, so it is throttled per client IP.
    pub async fn accept_invite(&self, token: &str, pw: &str, ip: &str) -> Result<OpenedSession> {
        let invalid = || AdminError::User(AuthError::InvalidOneTimeToken);
        if token.is_empty() {
            return Err(field("token", "is required"));
        }
        self.limiter
            .check_ip(ip)
            .map_err(CredentialError::RateLimited)?;
        let token_hash = sha256_hex(token);
        let invite = self
            .store
            .pending_admin_invite(&token_hash, now_ms())
            .await?
            .ok_or_else(invalid)?;
        let (_, hash) = self.checked_credentials(&invite.email, pw).await?;
        let id = uuid::Uuid::now_v7().to_string();
        let admin = self
            .store
            .accept_admin_invite(&token_hash, now_ms(), &id, &hash)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => AdminError::AdminExists,
                other => other.into(),
            })?
            .ok_or_else(invalid)?;
        let view = self.view(admin.clone(), &self.slug_map().await?);
        self.audit(
            &Actor::admin(&admin.email),
            "admin_invite.accept",
            None,
            Some(&admin.id),
            serde_json::json!({"email": view.email, "role": view.role.as_str(),
                               "tenants": view.tenants, "invite": invite.id}),
        )
        .await?;
        self.start_session(admin).await
    }
}
