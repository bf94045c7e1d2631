//! Per-tenant metering: requests, document writes, function invocations and their CPU
//! time. Counted in memory on the hot paths, added to the control database every few
//! seconds (and before a report), so metering costs a map update per event.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::store::{Store, StoreResult, UsageCounts};

pub struct Usage {
    store: Store,
    pending: Mutex<HashMap<i64, UsageCounts>>,
    /// Serialises flushes, so a report sees everything counted before it.
    flushing: tokio::sync::Mutex<()>,
}

/// One day of a tenant's usage.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct UsageDay {
    /// YYYY-MM-DD (UTC)
    pub day: String,
    #[serde(flatten)]
    pub counts: UsageCounts,
}

fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

impl Usage {
    pub fn new(store: Store) -> Usage {
        Usage {
            store,
            pending: Mutex::new(HashMap::new()),
            flushing: tokio::sync::Mutex::new(()),
        }
    }

    fn with(&self, tenant: i64, f: impl FnOnce(&mut UsageCounts)) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        f(p.entry(tenant).or_default());
    }

    pub fn request(&self, tenant: i64) {
        self.with(tenant, |c| c.requests += 1);
    }

    pub fn invocation(&self, tenant: i64, cpu: Duration) {
        self.with(tenant, |c| {
            c.invocations += 1;
            c.cpu_us += cpu.as_micros() as i64;
        });
    }

    /// Adds everything counted so far to today's rows.
    pub async fn flush(&self) -> StoreResult<()> {
        let _one = self.flushing.lock().await;
        let mut batch =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        for (tenant, n) in self.store.take_write_counts() {
            batch.entry(tenant).or_default().doc_writes += n as i64;
        }
        let day = today();
        for (tenant, counts) in batch {
            if counts.is_zero() {
                continue;
            }
            if let Err(e) = self.store.add_usage(tenant, &day, &counts).await {
                // Keep the counts for the next flush rather than lose them.
                self.with(tenant, |c| c.add(&counts));
                return Err(e);
            }
        }
        Ok(())
    }

    /// The tenant's usage for the last `days` days (today included), oldest first, and
    /// the total over them.
    pub async fn report(
        &self,
        tenant: i64,
        days: u32,
    ) -> StoreResult<(Vec<UsageDay>, UsageCounts)> {
        self.flush().await?;
        let from = (chrono::Utc::now() - chrono::Duration::days(days.saturating_sub(1) as i64))
            .format("%Y-%m-%d")
            .to_string();
        let rows = self.store.list_usage(tenant, &from).await?;
        let mut total = UsageCounts::default();
        let days = rows
            .into_iter()
            .map(|(day, counts)| {
                total.add(&counts);
                UsageDay { day, counts }
            })
            .collect();
        Ok((days, total))
    }

    /// Flushes every 10 s until aborted.
    pub async fn flush_forever(self: std::sync::Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tick.tick().await;
            if let Err(e) = self.flush().await {
                tracing::warn!(error = %e, "usage flush failed; will retry");
            }
        }
    }
}
