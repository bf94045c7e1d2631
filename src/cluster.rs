//! Nodes sharing one PostgreSQL database each cache tenants, rule sets, deploys, secrets,
//! sessions and service keys for about a second. A change made through one node, or by
//! the `plinth` CLI, is announced on [`TENANT_CHANGED`] (by `AdminService`'s audit, which
//! every tenant change passes through); each node drops what it cached of that tenant,
//! so the change takes effect everywhere within milliseconds, not a cache lifetime.

use std::time::Duration;

use crate::app::AppState;
use crate::store::TENANT_CHANGED;

/// Follows announcements until the task is aborted (PostgreSQL only; returns at once on
/// SQLite). A lost connection is made again; what was announced meanwhile expires from
/// the caches by itself.
pub async fn follow_tenant_changes(state: AppState) {
    let Some(pool) = state.store.postgres_pool() else {
        return;
    };
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cluster: cannot LISTEN for tenant changes; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(TENANT_CHANGED).await {
            tracing::warn!(error = %e, "cluster: LISTEN failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        loop {
            match listener.recv().await {
                Ok(n) => forget_tenant(&state, n.payload()).await,
                Err(e) => {
                    tracing::warn!(error = %e, "cluster: LISTEN connection lost");
                    break;
                }
            }
        }
    }
}

/// Drops everything this node cached of the tenant `slug`.
pub async fn forget_tenant(state: &AppState, slug: &str) {
    // The id from the database (the tenant may be new here); from the cache when the
    // tenant is gone or the database does not answer.
    let id = match state.store.get_tenant_by_slug(slug).await {
        Ok(Some(row)) => Some(row.id),
        _ => state.registry.cached_id(slug),
    };
    state.registry.invalidate(slug);
    if let Some(id) = id {
        state.rules.forget(id);
        state.secrets.forget(id);
        state.functions.expire(id);
        state.auth.drop_cached_tenant(id);
    }
}
