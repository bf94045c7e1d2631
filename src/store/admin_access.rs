//! Who may administer the platform: admins' roles and tenant assignments (with the rule
//! that one owner always remains), admin API keys, and console sessions.

use super::control::ADMIN_COLUMNS;
use super::{AdminRow, Store, StoreError, StoreResult, now_ms, on_db, on_unique, one_row};

/// Whether `$id` is an owner and no other owner exists, inside transaction `$tx`. Locks
/// the owners' rows first. A macro: the same text runs on both backends' transactions.
macro_rules! last_owner {
    ($tx:expr, $id:expr) => {{
        sqlx::query("UPDATE admins SET role = role WHERE role = 'owner'")
            .execute(&mut *$tx)
            .await?;
        let owners: Vec<(String,)> = sqlx::query_as("SELECT id FROM admins WHERE role = 'owner'")
            .fetch_all(&mut *$tx)
            .await?;
        owners.len() == 1 && owners[0].0 == $id
    }};
}

/// The result of a change that could leave the platform without an owner.
#[derive(Debug)]
pub enum OwnerGuarded<T> {
    Done(T),
    /// Refused: the admin is the last owner.
    LastOwner,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AdminKeyRow {
    pub id: String,
    pub name: String,
    pub role: String,
    pub tenant_ids: String,
    pub prefix: String,
    pub key_hash: String,
    /// The admin or admin key that made it.
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

pub struct NewAdminKey<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub role: &'a str,
    pub tenant_ids: &'a str,
    pub prefix: &'a str,
    pub key_hash: &'a str,
    pub created_by: &'a str,
    pub expires_at: Option<i64>,
}

const KEY_COLUMNS: &str = "id, name, role, tenant_ids, prefix, key_hash, created_by, created_at, \
                           expires_at, last_used_at, revoked_at";

/// A console session with its admin, as read on each request.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AdminSessionRow {
    pub id: String,
    pub admin_id: String,
    pub csrf_hash: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
}

impl Store {
    // ---- admins -----------------------------------------------------------------------

    /// Every admin, oldest first.
    pub async fn list_admins(&self) -> StoreResult<Vec<AdminRow>> {
        let db = self.control_db();
        let sql = format!("SELECT {ADMIN_COLUMNS} FROM admins ORDER BY created_at, id");
        Ok(on_db!(db, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&p)
            .await?))
    }

    /// Sets an admin's role and/or tenants (`None` keeps them), unless that would leave
    /// no owner. The owners' rows are locked first (an UPDATE that changes nothing), so
    /// two owners demoting each other at once on PostgreSQL cannot both succeed; SQLite's
    /// write transaction serialises them anyway.
    pub async fn update_admin_access(
        &self,
        id: &str,
        role: Option<&str>,
        tenant_ids: Option<&str>,
    ) -> StoreResult<OwnerGuarded<AdminRow>> {
        let db = self.control_db();
        let begin = db.begin_write();
        let sql = format!(
            "UPDATE admins SET role = COALESCE($2, role), tenant_ids = COALESCE($3, tenant_ids) \
             WHERE id = $1 RETURNING {ADMIN_COLUMNS}"
        );
        on_db!(db, |p| {
            let mut tx = p.begin_with(begin).await?;
            if role.is_some_and(|r| r != "owner") && last_owner!(tx, id) {
                return Ok(OwnerGuarded::LastOwner);
            }
            let row: Option<AdminRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .bind(role)
                .bind(tenant_ids)
                .fetch_optional(&mut *tx)
                .await?;
            let row = row.ok_or(StoreError::NotFound)?;
            tx.commit().await?;
            Ok(OwnerGuarded::Done(row))
        })
    }

    /// Deletes an admin (and, by cascade, their console sessions) unless they are the
    /// last owner.
    pub async fn delete_admin(&self, id: &str) -> StoreResult<OwnerGuarded<AdminRow>> {
        let db = self.control_db();
        let begin = db.begin_write();
        let sql = format!("DELETE FROM admins WHERE id = $1 RETURNING {ADMIN_COLUMNS}");
        on_db!(db, |p| {
            let mut tx = p.begin_with(begin).await?;
            if last_owner!(tx, id) {
                return Ok(OwnerGuarded::LastOwner);
            }
            sqlx::query("DELETE FROM admin_sessions WHERE admin_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let row: Option<AdminRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            let row = row.ok_or(StoreError::NotFound)?;
            tx.commit().await?;
            Ok(OwnerGuarded::Done(row))
        })
    }

    /// Replaces an admin's password hash, bumps their password version (older admin
    /// tokens stop working) and ends every console session of theirs.
    pub async fn set_admin_password(&self, id: &str, password_hash: &str) -> StoreResult<()> {
        let db = self.control_db();
        let begin = db.begin_write();
        on_db!(db, |p| {
            let mut tx = p.begin_with(begin).await?;
            let n = sqlx::query(
                "UPDATE admins SET password_hash = $2, password_version = password_version + 1 \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(password_hash)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            one_row(n)?;
            sqlx::query("DELETE FROM admin_sessions WHERE admin_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    // ---- admin API keys -----------------------------------------------------------------

    pub async fn create_admin_key(&self, k: NewAdminKey<'_>) -> StoreResult<AdminKeyRow> {
        let db = self.control_db();
        let sql = format!(
            "INSERT INTO admin_api_keys (id, name, role, tenant_ids, prefix, key_hash, \
             created_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             RETURNING {KEY_COLUMNS}"
        );
        Ok(on_db!(db, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(k.id)
            .bind(k.name)
            .bind(k.role)
            .bind(k.tenant_ids)
            .bind(k.prefix)
            .bind(k.key_hash)
            .bind(k.created_by)
            .bind(now_ms())
            .bind(k.expires_at)
            .fetch_one(&p)
            .await
            .map_err(|e| on_unique(
                e,
                "prefix",
                "key prefix collision"
            ))?))
    }

    /// Keys, revoked ones included, oldest first; only those `created_by` made, if given.
    pub async fn list_admin_keys(&self, created_by: Option<&str>) -> StoreResult<Vec<AdminKeyRow>> {
        let db = self.control_db();
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM admin_api_keys WHERE ($1 IS NULL OR created_by = $1) \
             ORDER BY created_at, id"
        );
        Ok(on_db!(db, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(created_by)
            .fetch_all(&p)
            .await?))
    }

    pub async fn admin_key_by_prefix(&self, prefix: &str) -> StoreResult<Option<AdminKeyRow>> {
        let db = self.control_db();
        let sql = format!("SELECT {KEY_COLUMNS} FROM admin_api_keys WHERE prefix = $1");
        Ok(on_db!(db, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(prefix)
            .fetch_optional(&p)
            .await?))
    }

    /// Revokes a key (once; revoking again keeps the first time). `created_by` limits it
    /// to the keys that principal made.
    pub async fn revoke_admin_key(
        &self,
        id: &str,
        created_by: Option<&str>,
    ) -> StoreResult<AdminKeyRow> {
        let db = self.control_db();
        let sql = format!(
            "UPDATE admin_api_keys SET revoked_at = COALESCE(revoked_at, $3) \
             WHERE id = $1 AND ($2 IS NULL OR created_by = $2) RETURNING {KEY_COLUMNS}"
        );
        let row: Option<AdminKeyRow> = on_db!(db, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(created_by)
            .bind(now_ms())
            .fetch_optional(&p)
            .await?);
        row.ok_or(StoreError::NotFound)
    }

    pub async fn touch_admin_key(&self, id: &str, at: i64) -> StoreResult<()> {
        self.touch(
            "UPDATE admin_api_keys SET last_used_at = $2 WHERE id = $1",
            id,
            at,
        )
        .await
    }

    /// Runs a statement that records a use (`$1` the row's id, `$2` the time).
    async fn touch(&self, sql: &'static str, id: &str, at: i64) -> StoreResult<()> {
        let db = self.control_db();
        on_db!(db, |p| sqlx::query(sql)
            .bind(id)
            .bind(at)
            .execute(&p)
            .await?
            .rows_affected());
        Ok(())
    }

    // ---- console sessions ---------------------------------------------------------------

    pub async fn create_admin_session(&self, s: &AdminSessionRow) -> StoreResult<()> {
        let db = self.control_db();
        on_db!(db, |p| sqlx::query(
            "INSERT INTO admin_sessions (id, admin_id, csrf_hash, created_at, last_seen_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5, $6)"
        )
        .bind(&s.id)
        .bind(&s.admin_id)
        .bind(&s.csrf_hash)
        .bind(s.created_at)
        .bind(s.last_seen_at)
        .bind(s.expires_at)
        .execute(&p)
        .await?
        .rows_affected());
        Ok(())
    }

    pub async fn get_admin_session(&self, id: &str) -> StoreResult<Option<AdminSessionRow>> {
        let db = self.control_db();
        Ok(on_db!(db, |p| sqlx::query_as(
            "SELECT id, admin_id, csrf_hash, created_at, last_seen_at, expires_at \
             FROM admin_sessions WHERE id = $1"
        )
        .bind(id)
        .fetch_optional(&p)
        .await?))
    }

    pub async fn touch_admin_session(&self, id: &str, at: i64) -> StoreResult<()> {
        self.touch(
            "UPDATE admin_sessions SET last_seen_at = $2 WHERE id = $1 AND last_seen_at < $2",
            id,
            at,
        )
        .await
    }

    pub async fn delete_admin_session(&self, id: &str) -> StoreResult<()> {
        let db = self.control_db();
        on_db!(db, |p| sqlx::query(
            "DELETE FROM admin_sessions WHERE id = $1"
        )
        .bind(id)
        .execute(&p)
        .await?
        .rows_affected());
        Ok(())
    }

    /// Drops sessions past their absolute lifetime or idle since before `idle_before`.
    pub async fn prune_admin_sessions(&self, now: i64, idle_before: i64) -> StoreResult<u64> {
        let db = self.control_db();
        Ok(on_db!(db, |p| sqlx::query(
            "DELETE FROM admin_sessions WHERE expires_at <= $1 OR last_seen_at < $2"
        )
        .bind(now)
        .bind(idle_before)
        .execute(&p)
        .await?
        .rows_affected()))
    }
}
