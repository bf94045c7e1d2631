//! The change lock: what keeps a local `plinth` command that changes a tenant's data
//! apart from a move of that tenant. Such a command checks the tenant's `moving` mark
//! once, then writes, maybe seconds later (argon2 in `users create`, a bundle's
//! compilation in `deploy`); a move marking the tenant in between would copy without
//! that write, which lands at the source the move deletes.
//!
//! - SQLite: the data directory's `changes.lock` (`dir_lock`).
//! - PostgreSQL: an advisory lock per tenant in the control database, where the mark
//!   lives. The command holds it shared, as a session lock on a connection of its own
//!   (not a pooled one: the lock would stay with it), from before its check to its end.
//!   The move takes it exclusively in the transaction that sets the mark: it waits for
//!   the commands in progress (up to `CHANGES_WAIT`, as on SQLite, then `Conflict`),
//!   and a command that takes the lock after that transaction reads the mark and is
//!   refused with `tenant_moving`. Held only while marking, the lock keeps no
//!   connection for the rest of the move, and a mover that dies holds nothing.

use sqlx::PgConnection;

use super::dir_lock::{CHANGES_WAIT, DirLock};
use super::{Backend, Store, StoreError, StoreResult};

/// A held change lock; released when dropped (or the process ends: a closed
/// connection's session locks go with it).
pub struct ChangeLock(#[allow(dead_code)] Held);

#[allow(dead_code)]
enum Held {
    Dir(DirLock),
    Tenants(PgConnection),
}

/// The move's side, run first in the transaction that marks the tenant: the bound on
/// its wait for the commands in progress (`$1`: `fence_timeout()`), then the lock
/// (`$1`: the tenant's id).
pub(super) const FENCE_TIMEOUT: &str = "SELECT set_config('lock_timeout', $1, true)";
pub(super) const MOVE_FENCE: &str =
    "SELECT pg_advisory_xact_lock(hashtextextended('plinth:changes', $1))";

/// `lock_timeout` in milliseconds: the wait of a move on SQLite, `CHANGES_WAIT`.
pub(super) fn fence_timeout() -> String {
    CHANGES_WAIT.as_millis().to_string()
}

/// The move's fence timed out (`lock_not_available`): a command changing the tenant
/// is still running.
pub(super) fn fence_error(e: sqlx::Error) -> StoreError {
    let timed_out = e
        .as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code == "55P03");
    match timed_out {
        true => StoreError::Conflict(
            "a local `plinth` command is changing this tenant: try the move again when it \
             has ended",
        ),
        false => e.into(),
    }
}

impl Store {
    /// The change lock for a local command changing the tenants `slugs` (those that
    /// exist), held until dropped; `Conflict` at once while a move holds it (on SQLite:
    /// any move on the data directory; on PostgreSQL: a move of one of these tenants
    /// marking it, or waiting to).
    pub async fn lock_tenants_for_change(&self, slugs: &[&str]) -> StoreResult<Option<ChangeLock>> {
        let Backend::Postgres(pool) = &*self.inner else {
            return Ok(self.lock_for_change()?.map(|l| ChangeLock(Held::Dir(l))));
        };
        let mut conn = pool.acquire().await?.detach();
        for slug in slugs {
            // A slug with no tenant: nothing to move, and a tenant created under it
            // later is not marked.
            let got: Option<bool> = sqlx::query_scalar(
                "SELECT pg_try_advisory_lock_shared(hashtextextended('plinth:changes', id)) \
                 FROM tenants WHERE slug = $1",
            )
            .bind(slug)
            .fetch_optional(&mut conn)
            .await?;
            if got == Some(false) {
                return Err(StoreError::Conflict(
                    "a move of this tenant is starting: try again when it has ended",
                ));
            }
        }
        Ok(Some(ChangeLock(Held::Tenants(conn))))
    }
}
