//! Scheduled backups (`serve --backup-dir --backup-every --backup-keep`): the same backup
//! as `plinth backup`, taken by the server, then the oldest beyond the kept number
//! removed. A failure is logged and counted in /metrics and never stops the server; the
//! backups already taken stay until a new one completes.

use std::time::Instant;

use tokio::time::MissedTickBehavior;

use crate::backup::{self, Schedule, Tools};
use crate::state::AppState;
use crate::store::Location;
use crate::store::backup::BackupLeadership;

pub(super) async fn run_forever(state: AppState, schedule: Schedule) {
    // On PostgreSQL several nodes may share the database: one leads, the others skip.
    let mut leadership = match &state.config.location {
        Location::Postgres(url) => Some(BackupLeadership::new(url.clone())),
        Location::SqliteDir(_) => None,
    };
    let first = tokio::time::Instant::now() + schedule.every;
    let mut tick = tokio::time::interval_at(first, schedule.every);
    // A backup longer than the interval delays the next one; they never pile up.
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tracing::info!(
        dir = %schedule.dir.display(),
        every_secs = schedule.every.as_secs(),
        keep = schedule.keep,
        "scheduled backups on"
    );
    // What a backup interrupted by the last stop (a crash, kill -9) left, at once rather
    // than at the first backup an interval from now.
    let dir = schedule.dir.clone();
    let _ = tokio::task::spawn_blocking(move || backup::clear_partials(&dir)).await;
    loop {
        tick.tick().await;
        if let Some(l) = leadership.as_mut() {
            match l.lead().await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::debug!("another node takes the scheduled backups");
                    continue;
                }
                Err(e) => {
                    state.metrics.backup_failed();
                    tracing::error!(error = %e, "scheduled backup skipped: the backup lock cannot be checked");
                    continue;
                }
            }
        }
        backup_once(&state, &schedule).await;
    }
}

/// One scheduled backup and, when it completed, the pruning; true when it completed.
async fn backup_once(state: &AppState, schedule: &Schedule) -> bool {
    let started = Instant::now();
    let tools = Tools {
        pg_dump: schedule.pg_dump.clone(),
        pg_restore: None,
    };
    let taken = match backup::take(
        &state.config.location,
        &schedule.dir,
        &tools,
        backup::quiet(),
    )
    .await
    {
        Ok(t) => t,
        Err(e) => {
            state.metrics.backup_failed();
            tracing::error!(error = %e, dir = %schedule.dir.display(), "scheduled backup failed");
            return false;
        }
    };
    // Pruned before the success is counted, with no await between the backup's rename
    // and the pruning: a scrape that sees N backups counted sees them pruned too.
    match backup::prune(&schedule.dir, schedule.keep) {
        Ok(removed) => {
            for old in removed {
                tracing::info!(dir = %old.display(), "old backup removed");
            }
        }
        Err(e) => tracing::warn!(error = %e, "old backups not removed"),
    }
    let seconds = started.elapsed().as_secs_f64();
    state.metrics.backup_succeeded(seconds, taken.bytes());
    tracing::info!(
        dir = %taken.dir.display(),
        bytes = taken.bytes(),
        seconds,
        "scheduled backup completed"
    );
    true
}
