//! Per-tenant metering: requests and how many of them failed, document writes, function
//! invocations and their CPU time, realtime connections opened and the most open at once.
//! Counted in memory on the hot paths per tenant and UTC hour, added to the control
//! database every few seconds (and before a report), so metering costs a map update per
//! event.
//!
//! Each flush adds to two rows: the tenant's day and its hour. Days are kept (as they were
//! before hours existed); hours only for [`HOUR_RETENTION`], pruned by the first flush of
//! each hour, so the hour table stays bounded. Days are not summed from hours because the
//! hours are pruned, and the day rows written before this change have no hours to sum.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::store::{Store, StoreResult, UsageCounts};

/// How many hours of hour rows are kept, the current one included: 14 days.
pub const HOUR_RETENTION: u32 = 14 * 24;

/// Hours since the Unix epoch (UTC): the key of an hour bucket.
type Hour = i64;

/// The realtime connections open now, per tenant (wired to the realtime broker).
type OpenSockets = Box<dyn Fn() -> Vec<(i64, usize)> + Send + Sync>;

pub struct Usage {
    store: Store,
    pending: Mutex<HashMap<(i64, Hour), UsageCounts>>,
    /// Serialises flushes, so a report sees everything counted before it.
    flushing: tokio::sync::Mutex<()>,
    open_sockets: OnceLock<OpenSockets>,
    /// The hour whose open sockets were sampled (by its first flush).
    sampled: AtomicI64,
    /// The hour of the last prune of old hour rows.
    pruned: AtomicI64,
}

/// Buckets of a usage report.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Deserialize,
    serde::Serialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    #[default]
    Day,
    Hour,
}

/// The period of a report: the last N days or hours, the current one included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Span {
    Days(u32),
    Hours(u32),
}

/// One day of a tenant's usage.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct UsageDay {
    /// YYYY-MM-DD (UTC)
    pub day: String,
    #[serde(flatten)]
    pub counts: UsageCounts,
}

/// One hour of a tenant's usage.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct UsageHour {
    /// The hour's start, YYYY-MM-DDTHH:00:00Z (UTC)
    pub hour: String,
    #[serde(flatten)]
    pub counts: UsageCounts,
}

/// A tenant's usage over a span: per day or per hour, and the total.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct UsageSeries {
    pub granularity: Granularity,
    /// With `granularity=day`: the days with use, oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days: Option<Vec<UsageDay>>,
    /// With `granularity=hour`: the hours with use, oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hours: Option<Vec<UsageHour>>,
    /// The sums over the span (`realtime_peak`: the largest).
    pub total: UsageCounts,
}

fn current_hour() -> Hour {
    Utc::now().timestamp().div_euclid(3600)
}

fn start_of(hour: Hour) -> DateTime<Utc> {
    DateTime::from_timestamp(hour.saturating_mul(3600), 0).unwrap_or_default()
}

fn hour_label(hour: Hour) -> String {
    start_of(hour).format("%Y-%m-%dT%H:00:00Z").to_string()
}

fn day_label(hour: Hour) -> String {
    start_of(hour).format("%Y-%m-%d").to_string()
}

impl Usage {
    pub fn new(store: Store) -> Usage {
        Usage {
            store,
            pending: Mutex::new(HashMap::new()),
            flushing: tokio::sync::Mutex::new(()),
            open_sockets: OnceLock::new(),
            sampled: AtomicI64::new(Hour::MIN),
            pruned: AtomicI64::new(Hour::MIN),
        }
    }

    /// Where the open realtime connections are read. Opens record the peak as it grows;
    /// what they cannot see is the connections already open when an hour starts, so the
    /// hour's first flush (within 10 s of its start) samples those. Set once, by the
    /// composition root.
    pub fn watch_open_sockets(&self, open: impl Fn() -> Vec<(i64, usize)> + Send + Sync + 'static) {
        let _ = self.open_sockets.set(Box::new(open));
    }

    fn with(&self, tenant: i64, f: impl FnOnce(&mut UsageCounts)) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        f(p.entry((tenant, current_hour())).or_default());
    }

    /// A request to the tenant's API answered with `status`.
    pub fn request(&self, tenant: i64, status: u16) {
        self.with(tenant, |c| {
            c.requests += 1;
            if status >= 400 {
                c.errors += 1;
            }
        });
    }

    /// A realtime connection opened; `open_now` of the tenant's are open with it.
    pub fn realtime_opened(&self, tenant: i64, open_now: usize) {
        self.with(tenant, |c| {
            c.realtime_connections += 1;
            c.realtime_peak = c.realtime_peak.max(open_now as i64);
        });
    }

    pub fn invocation(&self, tenant: i64, cpu: Duration) {
        self.with(tenant, |c| {
            c.invocations += 1;
            c.cpu_us += cpu.as_micros() as i64;
        });
    }

    /// Adds everything counted so far to its day and hour rows, and prunes old hours.
    pub async fn flush(&self) -> StoreResult<()> {
        let _one = self.flushing.lock().await;
        let now = current_hour();
        let first_of_hour = self.sampled.swap(now, Ordering::Relaxed) != now;
        let open = match self.open_sockets.get() {
            Some(open) if first_of_hour => open(),
            _ => Vec::new(),
        };
        let mut batch =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        for (tenant, n) in open {
            let c = batch.entry((tenant, now)).or_default();
            c.realtime_peak = c.realtime_peak.max(n as i64);
        }
        // The store counts writes without their time: they go to the hour they are
        // flushed in, at most one flush period late.
        for (tenant, n) in self.store.take_write_counts() {
            batch.entry((tenant, now)).or_default().doc_writes += n as i64;
        }
        let mut rows = batch.into_iter().filter(|(_, c)| !c.is_zero());
        while let Some(((tenant, hour), counts)) = rows.next() {
            let written = self
                .store
                .add_usage(tenant, &day_label(hour), &hour_label(hour), &counts)
                .await;
            if let Err(e) = written {
                // Keep this row and those not yet written for the next flush rather than
                // lose them.
                let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                for (key, c) in std::iter::once(((tenant, hour), counts)).chain(rows) {
                    p.entry(key).or_default().add(&c);
                }
                return Err(e);
            }
        }
        self.prune(now).await
    }

    /// Once an hour: deletes the hour rows older than the retention.
    async fn prune(&self, now: Hour) -> StoreResult<()> {
        if self.pruned.load(Ordering::Relaxed) == now {
            return Ok(());
        }
        let oldest_kept = now - i64::from(HOUR_RETENTION) + 1;
        let gone = self
            .store
            .prune_usage_hours(&hour_label(oldest_kept))
            .await?;
        if gone > 0 {
            tracing::debug!(rows = gone, "old usage hours pruned");
        }
        self.pruned.store(now, Ordering::Relaxed);
        Ok(())
    }

    /// The tenant's usage over `span` (the current day or hour included), oldest first,
    /// and the total over it.
    pub async fn report(&self, tenant: i64, span: Span) -> StoreResult<UsageSeries> {
        self.flush().await?;
        let now = current_hour();
        let back = |n: u32| i64::from(n.saturating_sub(1));
        let (granularity, rows) = match span {
            Span::Days(n) => {
                let from = day_label(now - 24 * back(n));
                (
                    Granularity::Day,
                    self.store.list_usage_days(tenant, &from).await?,
                )
            }
            Span::Hours(n) => {
                let from = hour_label(now - back(n));
                (
                    Granularity::Hour,
                    self.store.list_usage_hours(tenant, &from).await?,
                )
            }
        };
        let mut total = UsageCounts::default();
        for (_, counts) in &rows {
            total.add(counts);
        }
        let (days, hours) = match granularity {
            Granularity::Day => (
                Some(
                    rows.into_iter()
                        .map(|(day, counts)| UsageDay { day, counts })
                        .collect(),
                ),
                None,
            ),
            Granularity::Hour => (
                None,
                Some(
                    rows.into_iter()
                        .map(|(hour, counts)| UsageHour { hour, counts })
                        .collect(),
                ),
            ),
        };
        Ok(UsageSeries {
            granularity,
            days,
            hours,
            total,
        })
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

#[cfg(test)]
#[path = "usage_tests.rs"]
mod tests;
