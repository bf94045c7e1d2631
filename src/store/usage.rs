//! Per-tenant usage counters (in the control database): one row per tenant and UTC day
//! (`usage`, kept) and one per tenant and UTC hour (`usage_hours`, pruned after a
//! retention period by `prune_usage_hours`).

use sqlx::Row;

use super::{Store, StoreResult, on_db};

/// Counts to add to (or read from) one tenant's day or hour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct UsageCounts {
    /// Requests to the tenant's API (realtime upgrades included).
    pub requests: i64,
    /// Those of the requests answered with a 4xx or 5xx status.
    pub errors: i64,
    pub doc_writes: i64,
    pub invocations: i64,
    /// Function CPU time, µs.
    pub cpu_us: i64,
    /// Realtime (WebSocket) connections opened.
    pub realtime_connections: i64,
    /// The most realtime connections open at once, as one node saw them (with several
    /// nodes, the busiest node's figure: nodes do not add theirs up).
    pub realtime_peak: i64,
}

impl UsageCounts {
    pub fn is_zero(&self) -> bool {
        *self == UsageCounts::default()
    }

    /// Merges `o` in: counts add up, the peak is the larger one.
    pub fn add(&mut self, o: &UsageCounts) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.doc_writes += o.doc_writes;
        self.invocations += o.invocations;
        self.cpu_us += o.cpu_us;
        self.realtime_connections += o.realtime_connections;
        self.realtime_peak = self.realtime_peak.max(o.realtime_peak);
    }
}

/// The upsert that adds counts to a row of `table` keyed by (tenant_id, `key`).
fn add_sql(table: &str, key: &str) -> String {
    format!(
        "INSERT INTO {table} (tenant_id, {key}, requests, errors, doc_writes, invocations, \
         cpu_us, realtime_connections, realtime_peak) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (tenant_id, {key}) DO UPDATE SET \
         requests = {table}.requests + excluded.requests, \
         errors = {table}.errors + excluded.errors, \
         doc_writes = {table}.doc_writes + excluded.doc_writes, \
         invocations = {table}.invocations + excluded.invocations, \
         cpu_us = {table}.cpu_us + excluded.cpu_us, \
         realtime_connections = {table}.realtime_connections + excluded.realtime_connections, \
         realtime_peak = CASE WHEN excluded.realtime_peak > {table}.realtime_peak \
         THEN excluded.realtime_peak ELSE {table}.realtime_peak END"
    )
}

fn list_sql(table: &str, key: &str) -> String {
    format!(
        "SELECT {key}, requests, errors, doc_writes, invocations, cpu_us, realtime_connections, \
         realtime_peak FROM {table} WHERE tenant_id = $1 AND {key} >= $2 ORDER BY {key}"
    )
}

impl Store {
    /// Adds `c` to the tenant's `day` and `hour` rows, both or neither (a failed flush
    /// keeps its counts for the next one, which must not count the day twice).
    pub async fn add_usage(
        &self,
        tenant: i64,
        day: &str,
        hour: &str,
        c: &UsageCounts,
    ) -> StoreResult<()> {
        let db = self.control_db();
        on_db!(db, |p| {
            let mut tx = p.begin().await?;
            for (table, key, at) in [("usage", "day", day), ("usage_hours", "hour", hour)] {
                sqlx::query(sqlx::AssertSqlSafe(add_sql(table, key)))
                    .bind(tenant)
                    .bind(at)
                    .bind(c.requests)
                    .bind(c.errors)
                    .bind(c.doc_writes)
                    .bind(c.invocations)
                    .bind(c.cpu_us)
                    .bind(c.realtime_connections)
                    .bind(c.realtime_peak)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Days from `from_day` (YYYY-MM-DD) on, oldest first.
    pub async fn list_usage_days(
        &self,
        tenant: i64,
        from_day: &str,
    ) -> StoreResult<Vec<(String, UsageCounts)>> {
        self.list_usage(tenant, "usage", "day", from_day).await
    }

    /// Hours from `from_hour` (YYYY-MM-DDTHH:00:00Z) on, oldest first.
    pub async fn list_usage_hours(
        &self,
        tenant: i64,
        from_hour: &str,
    ) -> StoreResult<Vec<(String, UsageCounts)>> {
        self.list_usage(tenant, "usage_hours", "hour", from_hour)
            .await
    }

    async fn list_usage(
        &self,
        tenant: i64,
        table: &str,
        key: &str,
        from: &str,
    ) -> StoreResult<Vec<(String, UsageCounts)>> {
        let db = self.control_db();
        on_db!(db, |p| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(list_sql(table, key)))
                .bind(tenant)
                .bind(from)
                .fetch_all(&p)
                .await?;
            rows.iter()
                .map(|r| -> StoreResult<(String, UsageCounts)> {
                    Ok((
                        r.try_get(0)?,
                        UsageCounts {
                            requests: r.try_get(1)?,
                            errors: r.try_get(2)?,
                            doc_writes: r.try_get(3)?,
                            invocations: r.try_get(4)?,
                            cpu_us: r.try_get(5)?,
                            realtime_connections: r.try_get(6)?,
                            realtime_peak: r.try_get(7)?,
                        },
                    ))
                })
                .collect()
        })
    }

    /// Deletes every tenant's hour rows before `before_hour`; returns how many went.
    pub async fn prune_usage_hours(&self, before_hour: &str) -> StoreResult<u64> {
        let db = self.control_db();
        Ok(on_db!(db, |p| sqlx::query(
            "DELETE FROM usage_hours WHERE hour < $1"
        )
        .bind(before_hour)
        .execute(&p)
        .await?
        .rows_affected()))
    }

    /// Committed document writes per tenant since the last call.
    pub fn take_write_counts(&self) -> std::collections::HashMap<i64, u64> {
        std::mem::take(&mut *self.write_counts.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub(crate) fn count_writes(&self, tenant: i64, n: u64) {
        if n > 0 {
            *self
                .write_counts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(tenant)
                .or_default() += n;
        }
    }
}
