//! The cold-path reads every request may make on a tenant file (its service key, the
//! version of its active rule set, the set itself), through rusqlite like the hot paths:
//! the first request to a tenant whose file was closed opens one connection, instead of
//! that and a sqlx connection (a thread of its own and its own page cache) beside it.

use rusqlite::{OptionalExtension, params};

use super::SqliteFile;
use crate::store::{ServiceKeyRow, StoreResult};

impl SqliteFile {
    /// The live (unrevoked) key with this prefix.
    pub(crate) fn find_service_key(
        &self,
        tenant: i64,
        prefix: &str,
    ) -> StoreResult<Option<ServiceKeyRow>> {
        self.with_reader(|c| {
            c.prepare_cached(
                "SELECT id, name, prefix, key_hash, created_at, revoked_at FROM service_keys \
                 WHERE tenant_id = ?1 AND prefix = ?2 AND revoked_at IS NULL",
            )?
            .query_row(params![tenant, prefix], |r| {
                Ok(ServiceKeyRow {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    prefix: r.get(2)?,
                    key_hash: r.get(3)?,
                    created_at: r.get(4)?,
                    revoked_at: r.get(5)?,
                })
            })
            .optional()
        })
    }

    /// The active rule set's version (0: none installed).
    pub(crate) fn active_ruleset_version(&self, tenant: i64) -> StoreResult<i64> {
        self.with_reader(|c| {
            c.prepare_cached("SELECT MAX(version) FROM rulesets WHERE tenant_id = ?1")?
                .query_row(params![tenant], |r| r.get::<_, Option<i64>>(0))
                .map(|v| v.unwrap_or(0))
        })
    }

    /// The active (latest) rule set: (version, source).
    pub(crate) fn active_ruleset(&self, tenant: i64) -> StoreResult<Option<(i64, String)>> {
        self.with_reader(|c| {
            c.prepare_cached(
                "SELECT version, source FROM rulesets WHERE tenant_id = ?1 \
                 ORDER BY version DESC LIMIT 1",
            )?
            .query_row(params![tenant], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
        })
    }
}
