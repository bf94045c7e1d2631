//! Control tables: tenants, platform admins, the setup tokens, signing keys, audit log.

use super::{Store, StoreError, StoreResult, now_ms, on_db, on_unique};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TenantRow {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub suspended: bool,
    /// JSON array of allowed CORS origins.
    pub cors_origins: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// The storage location of the tenant's data (`default` or a cluster's name).
    pub location: String,
    /// A move is copying the tenant: its writes are refused.
    pub moving: bool,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AdminRow {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub created_at: i64,
    /// `owner`, `admin`, `tenant_admin` or `viewer`.
    pub role: String,
    /// JSON array of the ids of the tenants a `tenant_admin` is assigned.
    pub tenant_ids: String,
    pub password_version: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SigningKeyRow {
    pub kid: String,
    pub alg: String,
    pub secret: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub tenant: Option<String>,
    pub target: Option<String>,
    pub detail: String,
}

pub struct NewAudit<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub tenant: Option<&'a str>,
    pub target: Option<&'a str>,
    pub detail: serde_json::Value,
}

pub struct AuditQuery<'a> {
    pub tenant: Option<&'a str>,
    /// Only entries of these tenants (slugs), for an admin who sees only some; `None`: all
    /// entries, platform-wide ones included.
    pub visible: Option<&'a [String]>,
    /// Only entries older than this id (keyset cursor).
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// How many pending setup tokens are kept: the newest, one per start of a node while no
/// admin exists.
const SETUP_TOKENS_KEPT: i64 = 32;

pub(super) const ADMIN_COLUMNS: &str =
    "id, email, password_hash, created_at, role, tenant_ids, password_version";

const TENANT_COLUMNS: &str =
    "id, slug, name, suspended, cors_origins, created_at, updated_at, location, moving";

impl Store {
    // ---- tenants ----------------------------------------------------------------------

    /// Creates a tenant whose data lives at `location` (`default` or a configured
    /// cluster, checked by the caller).
    pub async fn create_tenant(
        &self,
        slug: &str,
        name: &str,
        location: &str,
    ) -> StoreResult<TenantRow> {
        let now = now_ms();
        let db = self.control_db();
        let sql = format!(
            "INSERT INTO tenants (slug, name, suspended, cors_origins, created_at, updated_at, \
             location) VALUES ($1, $2, FALSE, '[]', $3, $3, $4) RETURNING {TENANT_COLUMNS}"
        );
        let row: TenantRow = on_db!(db, |p| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(slug)
                .bind(name)
                .bind(now)
                .bind(location)
                .fetch_one(&p)
                .await
                .map_err(|e| on_unique(e, "slug", "a tenant with this slug exists"))?
        });
        if let Err(e) = self.provision_tenant(row.id, slug, location).await {
            // Leave no half-created tenant behind.
            let _ = self.delete_tenant_row(row.id).await;
            return Err(e);
        }
        Ok(row)
    }

    pub async fn list_tenants(&self) -> StoreResult<Vec<TenantRow>> {
        let db = self.control_db();
        let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants ORDER BY slug");
        Ok(on_db!(db, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&p)
            .await?))
    }

    pub async fn get_tenant_by_slug(&self, slug: &str) -> StoreResult<Option<TenantRow>> {
        let db = self.control_db();
        let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE slug = $1");
        Ok(on_db!(db, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(slug)
            .fetch_optional(&p)
            .await?))
    }

    /// Updates the mutable settings of a tenant; `None` leaves a field as it is.
    pub async fn update_tenant(
        &self,
        slug: &str,
        name: Option<&str>,
        suspended: Option<bool>,
        cors_origins: Option<&str>,
    ) -> StoreResult<TenantRow> {
        let db = self.control_db();
        let sql = format!(
            "UPDATE tenants SET name = COALESCE($2, name), suspended = COALESCE($3, suspended), \
             cors_origins = COALESCE($4, cors_origins), updated_at = $5 \
             WHERE slug = $1 RETURNING {TENANT_COLUMNS}"
        );
        let row: Option<TenantRow> = on_db!(db, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(slug)
            .bind(name)
            .bind(suspended)
            .bind(cors_origins)
            .bind(now_ms())
            .fetch_optional(&p)
            .await?);
        row.ok_or(StoreError::NotFound)
    }

    /// Deletes a tenant and all its data (on SQLite: its database file).
    pub async fn delete_tenant(&self, slug: &str) -> StoreResult<TenantRow> {
        let tenant = self
            .get_tenant_by_slug(slug)
            .await?
            .ok_or(StoreError::NotFound)?;
        self.delete_tenant_row(tenant.id).await?;
        self.drop_tenant_storage(tenant.id, &tenant.location)
            .await?;
        Ok(tenant)
    }

    async fn delete_tenant_row(&self, id: i64) -> StoreResult<()> {
        let db = self.control_db();
        on_db!(&db, |p| {
            for sql in [
                "DELETE FROM usage WHERE tenant_id = $1",
                "DELETE FROM usage_hours WHERE tenant_id = $1",
                "DELETE FROM tenant_moves WHERE tenant_id = $1",
            ] {
                sqlx::query(sql).bind(id).execute(p).await?;
            }
        });
        on_db!(db, |p| sqlx::query("DELETE FROM tenants WHERE id = $1")
            .bind(id)
            .execute(&p)
            .await?
            .rows_affected());
        Ok(())
    }

    // ---- admins and first-run setup -------------------------------------------------------

    pub async fn count_admins(&self) -> StoreResult<i64> {
        let db = self.control_db();
        Ok(on_db!(db, |p| sqlx::query_scalar(
            "SELECT COUNT(*) FROM admins"
        )
        .fetch_one(&p)
        .await?))
    }

    pub async fn create_admin(
        &self,
        id: &str,
        email: &str,
        password_hash: &str,
        role: &str,
        tenant_ids: &str,
    ) -> StoreResult<AdminRow> {
        let db = self.control_db();
        let sql = format!(
            "INSERT INTO admins (id, email, password_hash, created_at, role, tenant_ids) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {ADMIN_COLUMNS}"
        );
        Ok(on_db!(db, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(email)
            .bind(password_hash)
            .bind(now_ms())
            .bind(role)
            .bind(tenant_ids)
            .fetch_one(&p)
            .await
            .map_err(|e| on_unique(
                e,
                "email",
                "an admin with this email exists"
            ))?))
    }

    pub async fn get_admin_by_email(&self, email: &str) -> StoreResult<Option<AdminRow>> {
        let db = self.control_db();
        let sql = format!("SELECT {ADMIN_COLUMNS} FROM admins WHERE email = $1");
        Ok(on_db!(db, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(email)
            .fetch_optional(&p)
            .await?))
    }

    pub async fn get_admin(&self, id: &str) -> StoreResult<Option<AdminRow>> {
        let db = self.control_db();
        let sql = format!("SELECT {ADMIN_COLUMNS} FROM admins WHERE id = $1");
        Ok(on_db!(db, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&p)
            .await?))
    }

    /// Adds a pending setup token (stored hashed) beside the others: each node started
    /// while no admin exists prints one, and each works until the first admin is made.
    /// Only the newest `SETUP_TOKENS_KEPT` are kept (a node restarting in a loop would
    /// otherwise add one per start).
    pub async fn add_setup_token(&self, token_hash: &str) -> StoreResult<()> {
        let db = self.control_db();
        on_db!(db, |p| {
            sqlx::query(
                "INSERT INTO setup_tokens (token_hash, created_at) VALUES ($1, $2) \
                 ON CONFLICT (token_hash) DO NOTHING",
            )
            .bind(token_hash)
            .bind(now_ms())
            .execute(&p)
            .await?;
            sqlx::query(
                "DELETE FROM setup_tokens WHERE token_hash NOT IN (SELECT token_hash \
                 FROM setup_tokens ORDER BY created_at DESC, token_hash DESC LIMIT $1)",
            )
            .bind(SETUP_TOKENS_KEPT)
            .execute(&p)
            .await?;
        });
        Ok(())
    }

    /// Whether `token_hash` is a pending setup token and no admin exists yet: the cheap
    /// check that setup makes before it spends a password hash on the request.
    pub async fn setup_token_pending(&self, token_hash: &str) -> StoreResult<bool> {
        let db = self.control_db();
        let found: i64 = on_db!(db, |p| sqlx::query_scalar(
            "SELECT COUNT(*) FROM setup_tokens WHERE token_hash = $1 \
             AND NOT EXISTS (SELECT 1 FROM admins)"
        )
        .bind(token_hash)
        .fetch_one(&p)
        .await?);
        Ok(found > 0)
    }

    /// Creates the first admin if `token_hash` is a pending setup token and no admin
    /// exists yet; consumes every pending token. The checks and the writes are one
    /// transaction, serialised (SQLite: the write lock; PostgreSQL: an advisory lock), so
    /// two setups with two nodes' tokens cannot both make a first admin.
    pub async fn create_first_admin(
        &self,
        token_hash: &str,
        id: &str,
        email: &str,
        password_hash: &str,
    ) -> StoreResult<Option<AdminRow>> {
        let db = self.control_db();
        let begin = db.begin_write();
        let postgres = self.kind() == super::BackendKind::Postgres;
        let now = now_ms();
        on_db!(db, |p| {
            let mut tx = p.begin_with(begin).await?;
            if postgres {
                sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('plinth:setup', 0))")
                    .execute(&mut *tx)
                    .await?;
            }
            let pending: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM setup_tokens WHERE token_hash = $1 \
                 AND NOT EXISTS (SELECT 1 FROM admins)",
            )
            .bind(token_hash)
            .fetch_one(&mut *tx)
            .await?;
            if pending != 1 {
                return Ok(None);
            }
            sqlx::query("DELETE FROM setup_tokens")
                .execute(&mut *tx)
                .await?;
            // The first admin is an owner (the column's default).
            let admin: AdminRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "INSERT INTO admins (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4) \
                 RETURNING {ADMIN_COLUMNS}"
            )))
            .bind(id)
            .bind(email)
            .bind(password_hash)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Some(admin))
        })
    }

    pub async fn clear_setup_token(&self) -> StoreResult<()> {
        let db = self.control_db();
        on_db!(db, |p| sqlx::query("DELETE FROM setup_tokens")
            .execute(&p)
            .await?
            .rows_affected());
        Ok(())
    }

    // ---- signing keys -----------------------------------------------------------------

    /// All signing keys, newest first.
    pub async fn list_signing_keys(&self) -> StoreResult<Vec<SigningKeyRow>> {
        let db = self.control_db();
        Ok(on_db!(db, |p| sqlx::query_as(
            "SELECT kid, alg, secret, created_at, retired_at FROM signing_keys \
             ORDER BY created_at DESC, kid DESC"
        )
        .fetch_all(&p)
        .await?))
    }

    /// Inserts a key unless one with this kid exists (nodes racing at first start).
    pub async fn insert_signing_key(&self, key: &SigningKeyRow) -> StoreResult<()> {
        let db = self.control_db();
        on_db!(db, |p| sqlx::query(
            "INSERT INTO signing_keys (kid, alg, secret, created_at, retired_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (kid) DO NOTHING"
        )
        .bind(&key.kid)
        .bind(&key.alg)
        .bind(&key.secret)
        .bind(key.created_at)
        .bind(key.retired_at)
        .execute(&p)
        .await?
        .rows_affected());
        Ok(())
    }

    /// Marks every key but `keep_kid` retired (they still verify until dropped).
    pub async fn retire_signing_keys_except(&self, keep_kid: &str) -> StoreResult<()> {
        let db = self.control_db();
        on_db!(db, |p| sqlx::query(
            "UPDATE signing_keys SET retired_at = $2 WHERE kid <> $1 AND retired_at IS NULL"
        )
        .bind(keep_kid)
        .bind(now_ms())
        .execute(&p)
        .await?
        .rows_affected());
        Ok(())
    }

    // ---- audit ------------------------------------------------------------------------

    pub async fn append_audit(&self, entry: NewAudit<'_>) -> StoreResult<()> {
        let db = self.control_db();
        on_db!(db, |p| sqlx::query(
            "INSERT INTO audit_log (at, actor, action, tenant, target, detail) \
             VALUES ($1, $2, $3, $4, $5, $6)"
        )
        .bind(now_ms())
        .bind(entry.actor)
        .bind(entry.action)
        .bind(entry.tenant)
        .bind(entry.target)
        .bind(entry.detail.to_string())
        .execute(&p)
        .await?
        .rows_affected());
        Ok(())
    }

    /// Newest first.
    pub async fn list_audit(&self, q: AuditQuery<'_>) -> StoreResult<Vec<AuditEntry>> {
        let db = self.control_db();
        // Only placeholders are spliced into the text; the slugs are bound.
        let visible = match q.visible {
            None => String::new(),
            Some([]) => " AND 1 = 0".into(),
            Some(slugs) => {
                let marks: Vec<String> = (0..slugs.len()).map(|i| format!("${}", i + 4)).collect();
                format!(" AND tenant IN ({})", marks.join(", "))
            }
        };
        let sql = format!(
            "SELECT id, at, actor, action, tenant, target, detail FROM audit_log \
             WHERE ($1 IS NULL OR tenant = $1) AND ($2 IS NULL OR id < $2){visible} \
             ORDER BY id DESC LIMIT $3"
        );
        Ok(on_db!(db, |p| {
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(q.tenant)
                .bind(q.before_id)
                .bind(q.limit);
            for slug in q.visible.unwrap_or_default() {
                query = query.bind(slug);
            }
            query.fetch_all(&p).await?
        }))
    }
}

impl Store {
    /// A server-wide secret, generated with `make` and stored the first time it is asked
    /// for. Nodes racing at first start all end up with the stored one.
    pub async fn server_secret(
        &self,
        name: &str,
        make: impl FnOnce() -> String,
    ) -> StoreResult<String> {
        let db = self.control_db();
        let candidate = make();
        on_db!(db, |p| {
            sqlx::query(
                "INSERT INTO server_secrets (name, value, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(&candidate)
            .bind(now_ms())
            .execute(&p)
            .await?;
            Ok(
                sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = $1")
                    .bind(name)
                    .fetch_one(&p)
                    .await?,
            )
        })
    }
}

impl From<TenantRow> for crate::tenancy::Tenant {
    fn from(row: TenantRow) -> Self {
        crate::tenancy::Tenant {
            id: row.id,
            slug: row.slug,
            name: row.name,
            suspended: row.suspended,
            cors_origins: serde_json::from_str(&row.cors_origins).unwrap_or_default(),
            created_at: row.created_at,
            updated_at: row.updated_at,
            location: row.location,
            moving: row.moving,
        }
    }
}
