//! Invitations of admins by mail: created by an owner, spent once by the invitee, who
//! becomes an admin in the same transaction.

use super::control::ADMIN_COLUMNS;
use super::{AdminRow, Store, StoreError, StoreResult, now_ms, on_db, on_unique};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AdminInviteRow {
    pub id: String,
    pub email: String,
    pub role: String,
    pub tenant_ids: String,
    /// The admin or admin API key that sent it.
    pub invited_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

pub struct NewAdminInvite<'a> {
    pub id: &'a str,
    pub token_hash: &'a str,
    pub email: &'a str,
    pub role: &'a str,
    pub tenant_ids: &'a str,
    pub invited_by: &'a str,
    pub expires_at: i64,
}

const INVITE_COLUMNS: &str =
    "id, email, role, tenant_ids, invited_by, created_at, expires_at, used_at";

impl Store {
    /// Stores an invitation. Any other of the same email is dropped, so only the newest
    /// link works, and so are the expired ones: the table holds only live invitations
    /// and those used lately.
    pub async fn create_admin_invite(&self, i: &NewAdminInvite<'_>) -> StoreResult<AdminInviteRow> {
        let db = self.control_db();
        let begin = db.begin_write();
        let sql = format!(
            "INSERT INTO admin_invites (id, token_hash, email, role, tenant_ids, invited_by, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             RETURNING {INVITE_COLUMNS}"
        );
        on_db!(db, |p| {
            let mut tx = p.begin_with(begin).await?;
            sqlx::query("DELETE FROM admin_invites WHERE email = $1 OR expires_at <= $2")
                .bind(i.email)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            let row: AdminInviteRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(i.id)
                .bind(i.token_hash)
                .bind(i.email)
                .bind(i.role)
                .bind(i.tenant_ids)
                .bind(i.invited_by)
                .bind(now_ms())
                .bind(i.expires_at)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(row)
        })
    }

    /// The invitation of this token hash, if it is unused and unexpired at `now`.
    pub async fn pending_admin_invite(
        &self,
        token_hash: &str,
        now: i64,
    ) -> StoreResult<Option<AdminInviteRow>> {
        let db = self.control_db();
        let sql = format!(
            "SELECT {INVITE_COLUMNS} FROM admin_invites \
             WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2"
        );
        Ok(on_db!(db, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(token_hash)
            .bind(now)
            .fetch_optional(&p)
            .await?))
    }

    /// Pending invitations (unused, unexpired at `now`), oldest first.
    pub async fn list_admin_invites(&self, now: i64) -> StoreResult<Vec<AdminInviteRow>> {
        let db = self.control_db();
        let sql = format!(
            "SELECT {INVITE_COLUMNS} FROM admin_invites \
             WHERE used_at IS NULL AND expires_at > $1 ORDER BY created_at, id"
        );
        Ok(on_db!(db, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .fetch_all(&p)
            .await?))
    }

    /// Withdraws a pending invitation; NotFound when there is none with this id.
    pub async fn delete_admin_invite(&self, id: &str) -> StoreResult<AdminInviteRow> {
        let db = self.control_db();
        let sql = format!(
            "DELETE FROM admin_invites WHERE id = $1 AND used_at IS NULL RETURNING {INVITE_COLUMNS}"
        );
        let row: Option<AdminInviteRow> = on_db!(db, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&p)
            .await?);
        row.ok_or(StoreError::NotFound)
    }

    /// Spends the invitation of this token hash and makes its admin, in one transaction:
    /// None when the invitation is unknown, used or expired at `now`; Conflict when an
    /// admin with its email exists (the invitation stays unspent).
    pub async fn accept_admin_invite(
        &self,
        token_hash: &str,
        now: i64,
        admin_id: &str,
        password_hash: &str,
    ) -> StoreResult<Option<AdminRow>> {
        let db = self.control_db();
        let begin = db.begin_write();
        let insert = format!(
            "INSERT INTO admins (id, email, password_hash, created_at, role, tenant_ids) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {ADMIN_COLUMNS}"
        );
        on_db!(db, |p| {
            let mut tx = p.begin_with(begin).await?;
            let spent: Option<(String, String, String)> = sqlx::query_as(
                "UPDATE admin_invites SET used_at = $2 \
                 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 \
                 RETURNING email, role, tenant_ids",
            )
            .bind(token_hash)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((email, role, tenant_ids)) = spent else {
                return Ok(None);
            };
            let admin: AdminRow = sqlx::query_as(sqlx::AssertSqlSafe(insert))
                .bind(admin_id)
                .bind(&email)
                .bind(password_hash)
                .bind(now)
                .bind(&role)
                .bind(&tenant_ids)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| on_unique(e, "email", "an admin with this email exists"))?;
            tx.commit().await?;
            Ok(Some(admin))
        })
    }
}
