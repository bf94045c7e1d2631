//! Tenant export and import: every row a tenant's portable state is made of, read in
//! pages (documents) or whole (the small tables), and written back in one transaction.
//!
//! Not carried: sessions, refresh and mail tokens (a move signs everyone out), the change
//! log, jobs, invocations and usage (history of the old placement, not state).

use super::{Db, Store, StoreError, StoreResult, on_db};
use crate::tenancy::Scope;

/// One document as stored; `data` is the JSON object's text.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct DocRecord {
    pub collection: String,
    pub id: String,
    pub version: i64,
    pub data: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct RulesetRecord {
    pub version: i64,
    pub source: String,
    pub created_at: i64,
    pub created_by: String,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct DeployRecord {
    pub version: i64,
    pub manifest: String,
    pub files: String,
    pub rules: Option<String>,
    pub created_at: i64,
    pub created_by: String,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct ActiveDeployRecord {
    pub version: i64,
    pub activated_at: i64,
    pub activated_by: String,
}

/// An end user, password hash included. The same columns as `users::UserRow` today, but
/// a line of the export file: files written by one version are read by the next, so
/// this stays as it is (pinned by `admin::export::format_tests`) when the store's row
/// for its own queries grows.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct UserRecord {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub email_verified: bool,
    pub disabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A service key, by its hash (the key itself was shown once and is not stored).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct ServiceKeyRecord {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub key_hash: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// A secret sealed for the target tenant (the store never sees a value).
#[derive(Debug, Clone)]
pub struct SealedSecret {
    pub name: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub updated_at: i64,
}

/// A tenant's small tables, read at once.
#[derive(Debug, Default)]
pub struct TenantTables {
    pub rulesets: Vec<RulesetRecord>,
    pub deploys: Vec<DeployRecord>,
    pub active_deploy: Option<ActiveDeployRecord>,
    pub users: Vec<UserRecord>,
    pub service_keys: Vec<ServiceKeyRecord>,
}

/// Everything an import writes, already checked.
#[derive(Debug, Default)]
pub struct TenantImport {
    pub tables: TenantTables,
    pub documents: Vec<DocRecord>,
    pub secrets: Vec<SealedSecret>,
}

/// What an export hands its sink, in this order: the small tables, then pages of
/// documents.
pub enum ExportPart {
    Tables(TenantTables),
    Documents(Vec<DocRecord>),
}

/// Reads the small tables on `$tx` (a transaction of either dialect).
macro_rules! read_tables {
    ($tx:ident, $tenant:expr) => {
        TenantTables {
            rulesets: sqlx::query_as(
                "SELECT version, source, created_at, created_by FROM rulesets \
                 WHERE tenant_id = $1 ORDER BY version",
            )
            .bind($tenant)
            .fetch_all(&mut *$tx)
            .await?,
            deploys: sqlx::query_as(
                "SELECT version, manifest, files, rules, created_at, created_by FROM deploys \
                 WHERE tenant_id = $1 ORDER BY version",
            )
            .bind($tenant)
            .fetch_all(&mut *$tx)
            .await?,
            active_deploy: sqlx::query_as(
                "SELECT version, activated_at, activated_by FROM deploy_active \
                 WHERE tenant_id = $1",
            )
            .bind($tenant)
            .fetch_optional(&mut *$tx)
            .await?,
            users: sqlx::query_as(
                "SELECT id, email, password_hash, email_verified, disabled, created_at, \
                 updated_at FROM users WHERE tenant_id = $1 ORDER BY id",
            )
            .bind($tenant)
            .fetch_all(&mut *$tx)
            .await?,
            service_keys: sqlx::query_as(
                "SELECT id, name, prefix, key_hash, created_at, revoked_at FROM service_keys \
                 WHERE tenant_id = $1 ORDER BY id",
            )
            .bind($tenant)
            .fetch_all(&mut *$tx)
            .await?,
        }
    };
}

fn doc_select(db: &Db) -> &'static str {
    match db {
        Db::Sqlite(_) => {
            "SELECT collection, id, version, data, created_at, updated_at FROM documents \
             WHERE tenant_id = $1 AND (collection, id) > ($2, $3) \
             ORDER BY collection, id LIMIT $4"
        }
        Db::Postgres(_) => {
            "SELECT collection, id, version, data::text AS data, created_at, updated_at \
             FROM documents WHERE tenant_id = $1 AND (collection, id) > ($2, $3) \
             ORDER BY collection, id LIMIT $4"
        }
    }
}

/// What a replacing import deletes first: the portable state, and what hangs on it
/// (sessions and tokens of the old users: a replacement signs everyone out; jobs of the
/// old data and deploys). Invocations and usage stay: history, not state.
const CLEAR: &[&str] = &[
    "DELETE FROM refresh_tokens WHERE tenant_id = $1",
    "DELETE FROM sessions WHERE tenant_id = $1",
    "DELETE FROM user_tokens WHERE tenant_id = $1",
    "DELETE FROM users WHERE tenant_id = $1",
    "DELETE FROM service_keys WHERE tenant_id = $1",
    "DELETE FROM documents WHERE tenant_id = $1",
    "DELETE FROM changes WHERE tenant_id = $1",
    "DELETE FROM jobs WHERE tenant_id = $1",
    "DELETE FROM rulesets WHERE tenant_id = $1",
    "DELETE FROM deploy_active WHERE tenant_id = $1",
    "DELETE FROM deploys WHERE tenant_id = $1",
    "DELETE FROM secrets WHERE tenant_id = $1",
];

/// Deletes what `CLEAR` names on `$tx` (a transaction of either dialect) and cuts the
/// change log where it stands. The seq row lock first: writers take it too, so none
/// commits halfway through the replacement.
macro_rules! clear_tenant {
    ($tx:ident, $tenant:expr) => {
        let seq: i64 = sqlx::query_scalar(super::sql::LOCK_SEQ_SQL)
            .bind($tenant)
            .fetch_one(&mut *$tx)
            .await?;
        for statement in CLEAR.iter().copied() {
            sqlx::query(statement)
                .bind($tenant)
                .execute(&mut *$tx)
                .await?;
        }
        sqlx::query("UPDATE tenant_seq SET pruned_through = $2 WHERE tenant_id = $1")
            .bind($tenant)
            .bind(seq)
            .execute(&mut *$tx)
            .await?;
    };
}

fn doc_insert(db: &Db) -> &'static str {
    match db {
        Db::Sqlite(_) => {
            "INSERT INTO documents (tenant_id, collection, id, data, version, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        }
        Db::Postgres(_) => {
            "INSERT INTO documents (tenant_id, collection, id, data, version, created_at, \
             updated_at) VALUES ($1, $2, $3, CAST($4 AS jsonb), $5, $6, $7)"
        }
    }
}

impl Store {
    /// Reads the whole tenant in one read-only snapshot (PostgreSQL: REPEATABLE READ;
    /// SQLite: one read transaction of the WAL), so the documents, rules, deploys, users
    /// and keys agree with each other however long the export takes. `sink` gets the
    /// small tables first, then the documents in key order, `page` at a time; its
    /// error stops the read and is handed back as the inner `Err`.
    pub async fn export_snapshot<E>(
        &self,
        scope: &Scope,
        page: i64,
        mut sink: impl FnMut(ExportPart) -> Result<(), E>,
    ) -> StoreResult<Result<(), E>> {
        let (db, tenant) = self.tenant_db(scope).await?;
        let begin = match &db {
            Db::Sqlite(_) => "BEGIN",
            Db::Postgres(_) => "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
        };
        let docs = doc_select(&db);
        on_db!(db, |p| {
            let mut tx = p.begin_with(begin).await?;
            let tables = read_tables!(tx, tenant);
            if let Err(e) = sink(ExportPart::Tables(tables)) {
                return Ok(Err(e));
            }
            let mut after = (String::new(), String::new());
            loop {
                let rows: Vec<DocRecord> = sqlx::query_as(docs)
                    .bind(tenant)
                    .bind(&after.0)
                    .bind(&after.1)
                    .bind(page)
                    .fetch_all(&mut *tx)
                    .await?;
                let Some(last) = rows.last() else { break };
                after = (last.collection.clone(), last.id.clone());
                let full = rows.len() as i64 == page;
                if let Err(e) = sink(ExportPart::Documents(rows)) {
                    return Ok(Err(e));
                }
                if !full {
                    break;
                }
            }
            tx.commit().await?;
            Ok(Ok(()))
        })
    }

    /// Writes an import into the (new, empty) tenant in one transaction: all of it, or
    /// on any error none of it.
    pub async fn import_tenant(&self, scope: &Scope, data: &TenantImport) -> StoreResult<()> {
        self.write_import(scope, data, false).await
    }

    /// Replaces the tenant's portable state with an import in one transaction: what
    /// `CLEAR` names is deleted, the import written, and the change log cut where it
    /// stands (a `since` from before the replacement is told to resync, as after
    /// retention). All of it, or on any error none of it.
    pub async fn replace_tenant(&self, scope: &Scope, data: &TenantImport) -> StoreResult<()> {
        self.write_import(scope, data, true).await
    }

    /// A key the import holds twice (a user, a document, a version) is the file's fault,
    /// found by the database: said as a `Conflict`, not as a fault of the store.
    async fn write_import(
        &self,
        scope: &Scope,
        data: &TenantImport,
        replace: bool,
    ) -> StoreResult<()> {
        self.write_import_tx(scope, data, replace)
            .await
            .map_err(|e| match e {
                StoreError::Db(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                    StoreError::Conflict(
                        "it holds one key twice (a user, document, service key, secret or \
                         version)",
                    )
                }
                other => other,
            })
    }

    async fn write_import_tx(
        &self,
        scope: &Scope,
        data: &TenantImport,
        replace: bool,
    ) -> StoreResult<()> {
        let (db, tenant) = self.tenant_db(scope).await?;
        let begin = db.begin_write();
        let insert_doc = doc_insert(&db);
        let t = &data.tables;
        on_db!(db, |p| {
            let mut tx = p.begin_with(begin).await?;
            if replace {
                clear_tenant!(tx, tenant);
            }
            for d in &data.documents {
                sqlx::query(insert_doc)
                    .bind(tenant)
                    .bind(&d.collection)
                    .bind(&d.id)
                    .bind(&d.data)
                    .bind(d.version)
                    .bind(d.created_at)
                    .bind(d.updated_at)
                    .execute(&mut *tx)
                    .await?;
            }
            for r in &t.rulesets {
                sqlx::query(
                    "INSERT INTO rulesets (tenant_id, version, source, created_at, created_by) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(tenant)
                .bind(r.version)
                .bind(&r.source)
                .bind(r.created_at)
                .bind(&r.created_by)
                .execute(&mut *tx)
                .await?;
            }
            for d in &t.deploys {
                sqlx::query(
                    "INSERT INTO deploys (tenant_id, version, manifest, files, rules, \
                     created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(tenant)
                .bind(d.version)
                .bind(&d.manifest)
                .bind(&d.files)
                .bind(&d.rules)
                .bind(d.created_at)
                .bind(&d.created_by)
                .execute(&mut *tx)
                .await?;
            }
            if let Some(a) = &t.active_deploy {
                sqlx::query(
                    "INSERT INTO deploy_active (tenant_id, version, activated_at, activated_by) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(tenant)
                .bind(a.version)
                .bind(a.activated_at)
                .bind(&a.activated_by)
                .execute(&mut *tx)
                .await?;
            }
            for u in &t.users {
                sqlx::query(
                    "INSERT INTO users (tenant_id, id, email, password_hash, email_verified, \
                     disabled, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(tenant)
                .bind(&u.id)
                .bind(&u.email)
                .bind(&u.password_hash)
                .bind(u.email_verified)
                .bind(u.disabled)
                .bind(u.created_at)
                .bind(u.updated_at)
                .execute(&mut *tx)
                .await?;
            }
            for k in &t.service_keys {
                sqlx::query(
                    "INSERT INTO service_keys (tenant_id, id, name, prefix, key_hash, \
                     created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(tenant)
                .bind(&k.id)
                .bind(&k.name)
                .bind(&k.prefix)
                .bind(&k.key_hash)
                .bind(k.created_at)
                .bind(k.revoked_at)
                .execute(&mut *tx)
                .await?;
            }
            for s in &data.secrets {
                sqlx::query(
                    "INSERT INTO secrets (tenant_id, name, nonce, ciphertext, updated_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(tenant)
                .bind(&s.name)
                .bind(&s.nonce)
                .bind(&s.ciphertext)
                .bind(s.updated_at)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }
}
