//! Nodes sharing one PostgreSQL database each cache tenants, rule sets, deploys, secrets,
//! sessions, service keys and admins' live read tokens for about a second. A change made
//! through one node, or by the `plinth` CLI, is announced to every node (by
//! `AdminService`'s audit, which every tenant change passes through, and by its changes
//! to admins, their sessions and keys); each node drops what it cached of it, so the
//! change takes effect everywhere within milliseconds, not a cache lifetime.

use crate::state::AppState;
use crate::store::{Announcement, Topic};

/// Follows tenant, session and admin announcements until the task is aborted (returns at once on SQLite). What
/// was announced while the connection was lost expires from the caches by itself.
pub async fn follow_tenant_changes(state: AppState) {
    let store = state.store.clone();
    store
        .follow_announcements(&[Topic::Tenants, Topic::Sessions, Topic::Admins], |a| {
            let state = state.clone();
            async move {
                match a {
                    Announcement::TenantChanged { slug } => forget_tenant(&state, &slug).await,
                    // Sessions another node ended (announced by its `auth`): this node's
                    // cached checks must not outlive them.
                    Announcement::SessionEnded { tenant, session_id } => {
                        state.auth.drop_cached_session(tenant, &session_id);
                    }
                    Announcement::UserSessions { tenant, user_id } => {
                        state.auth.drop_cached_user(tenant, &user_id);
                    }
                    // Admins, sessions or keys changed on another node: the read tokens
                    // this node found live are checked again.
                    Announcement::AdminsChanged => state.auth.drop_cached_readers(),
                    // Moves announced while not listening went unheard.
                    Announcement::Resumed => state.store.forget_placements(),
                    Announcement::Commit { .. } => {}
                }
            }
        })
        .await;
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
    // A move may have switched the tenant's location: ask the control table again.
    state.store.forget_placements();
    if let Some(id) = id {
        state.rules.forget(id);
        state.secrets.forget(id);
        state.functions.expire(id);
        state.auth.drop_cached_tenant(id);
    }
}
