//! The change log: reading it after a seq, its position, and pruning it.

use super::Change;
use crate::store::{Store, StoreResult, TenantData, on_db, postgres};
use crate::tenancy::Scope;

impl Store {
    /// Changes after `since`, in seq order, at most `limit`, only of `collections` when
    /// given; and how far the log was read: the seq the caller may continue after (the
    /// last change returned when `limit` were, else the log's end when the read began),
    /// so changes of other collections are skipped without being read.
    pub async fn changes_since(
        &self,
        scope: &Scope,
        since: i64,
        limit: i64,
        collections: Option<&[String]>,
    ) -> StoreResult<(Vec<Change>, i64)> {
        let (out, end) = match self.tenant_data(scope).await? {
            (TenantData::Sqlite(file), tenant) => {
                file.changes_since(tenant, since, limit, collections)?
            }
            (TenantData::Postgres(pool), tenant) => {
                // Seqs are taken under the tenant_seq row lock and committed in order, so
                // every change up to the end read here is already visible to the next
                // statement.
                let (end, _) = self.change_seq(scope).await?;
                let range = (since, end);
                (
                    postgres::changes(&pool, tenant, range, limit, collections).await?,
                    end,
                )
            }
        };
        let reached = match out.last() {
            Some(c) if out.len() as i64 >= limit => c.seq,
            _ => end.max(since),
        };
        Ok((out, reached))
    }

    /// Every collection that holds documents, with its count, by name. A full count per
    /// collection (the admin console's data browser shows it once per visit, not per page).
    pub async fn collection_counts(&self, scope: &Scope) -> StoreResult<Vec<(String, i64)>> {
        let (db, tenant) = self.tenant_db(scope).await?;
        Ok(on_db!(db, |p| sqlx::query_as(
            "SELECT collection, COUNT(*) FROM documents WHERE tenant_id = $1 \
             GROUP BY collection ORDER BY collection"
        )
        .bind(tenant)
        .fetch_all(&p)
        .await?))
    }

    /// (last seq, pruned through): the log holds the changes after `pruned_through`.
    pub async fn change_seq(&self, scope: &Scope) -> StoreResult<(i64, i64)> {
        let (db, tenant) = self.tenant_db(scope).await?;
        let row: Option<(i64, i64)> = on_db!(db, |p| sqlx::query_as(
            "SELECT seq, pruned_through FROM tenant_seq WHERE tenant_id = $1"
        )
        .bind(tenant)
        .fetch_optional(&p)
        .await?);
        Ok(row.unwrap_or((0, 0)))
    }

    /// Deletes changes older than `older_than_ms` and records how far the log was cut.
    pub async fn prune_changes(&self, scope: &Scope, older_than_ms: i64) -> StoreResult<u64> {
        let (db, tenant) = self.tenant_db(scope).await?;
        let begin = db.begin_write();
        on_db!(db, |p| {
            let mut tx = p.begin_with(begin).await?;
            let cut: Option<i64> =
                sqlx::query_scalar("SELECT MAX(seq) FROM changes WHERE tenant_id = $1 AND at < $2")
                    .bind(tenant)
                    .bind(older_than_ms)
                    .fetch_one(&mut *tx)
                    .await?;
            let Some(cut) = cut else {
                return Ok(0);
            };
            let n = sqlx::query("DELETE FROM changes WHERE tenant_id = $1 AND seq <= $2")
                .bind(tenant)
                .bind(cut)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query(
                "UPDATE tenant_seq SET pruned_through = $2 WHERE tenant_id = $1 AND pruned_through < $2",
            )
            .bind(tenant)
            .bind(cut)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(n)
        })
    }
}
