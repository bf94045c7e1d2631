//! Watches for tenants a dead mover left marked `moving` (read-only): at start and then
//! every half minute, logs each once and sets `plinth_tenant_moves_stale`. A mover that
//! is alive beats its heartbeat, so a slow move is not reported; the admin API's
//! `GET /admin/v1/tenants/{slug}` shows the move with `stale`.

use std::collections::HashSet;
use std::time::Duration;

use crate::state::AppState;

const EVERY: Duration = Duration::from_secs(30);

pub async fn watch_forever(state: AppState) {
    // (slug, started_at) already reported, so a stuck move is logged once per node.
    let mut reported: HashSet<(String, i64)> = HashSet::new();
    loop {
        match state.admin.stale_moves().await {
            Ok(stale) => {
                state.metrics.set_stale_moves(stale.len());
                for (slug, rec) in &stale {
                    if reported.insert((slug.clone(), rec.started_at)) {
                        tracing::warn!(tenant = %slug, from = %rec.from, to = %rec.to,
                            phase = ?rec.phase, silent_s = rec.silent_ms() / 1000,
                            "a tenant move was interrupted: the tenant stays read-only until \
                             `plinth tenant move {slug} --to <location>` finishes or rolls it back");
                    }
                }
                reported.retain(|(s, _)| stale.iter().any(|(slug, _)| slug == s));
            }
            Err(e) => tracing::warn!(error = %e, "could not check for interrupted moves"),
        }
        tokio::time::sleep(EVERY).await;
    }
}
