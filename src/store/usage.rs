//! Per-tenant, per-day usage counters (in the control database).

use sqlx::Row;

use super::{Store, StoreResult, on_db};

/// Counts to add to (or read from) one tenant's day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct UsageCounts {
    pub requests: i64,
    pub doc_writes: i64,
    pub invocations: i64,
    pub cpu_us: i64,
}

impl UsageCounts {
    pub fn is_zero(&self) -> bool {
        *self == UsageCounts::default()
    }

    pub fn add(&mut self, o: &UsageCounts) {
        self.requests += o.requests;
        self.doc_writes += o.doc_writes;
        self.invocations += o.invocations;
        self.cpu_us += o.cpu_us;
    }
}

impl Store {
    pub async fn add_usage(&self, tenant: i64, day: &str, c: &UsageCounts) -> StoreResult<()> {
        let db = self.control_db();
        on_db!(db, |p| {
            sqlx::query(
                "INSERT INTO usage (tenant_id, day, requests, doc_writes, invocations, cpu_us) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, day) DO UPDATE SET \
                 requests = usage.requests + excluded.requests, \
                 doc_writes = usage.doc_writes + excluded.doc_writes, \
                 invocations = usage.invocations + excluded.invocations, \
                 cpu_us = usage.cpu_us + excluded.cpu_us",
            )
            .bind(tenant)
            .bind(day)
            .bind(c.requests)
            .bind(c.doc_writes)
            .bind(c.invocations)
            .bind(c.cpu_us)
            .execute(&p)
            .await?;
        });
        Ok(())
    }

    /// Days from `from_day` on, oldest first.
    pub async fn list_usage(
        &self,
        tenant: i64,
        from_day: &str,
    ) -> StoreResult<Vec<(String, UsageCounts)>> {
        let db = self.control_db();
        on_db!(db, |p| {
            let rows = sqlx::query(
                "SELECT day, requests, doc_writes, invocations, cpu_us FROM usage \
                 WHERE tenant_id = $1 AND day >= $2 ORDER BY day",
            )
            .bind(tenant)
            .bind(from_day)
            .fetch_all(&p)
            .await?;
            rows.iter()
                .map(|r| -> StoreResult<(String, UsageCounts)> {
                    Ok((
                        r.try_get(0)?,
                        UsageCounts {
                            requests: r.try_get(1)?,
                            doc_writes: r.try_get(2)?,
                            invocations: r.try_get(3)?,
                            cpu_us: r.try_get(4)?,
                        },
                    ))
                })
                .collect()
        })
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
