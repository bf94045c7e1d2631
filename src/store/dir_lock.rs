//! Who uses a SQLite data directory. Processes sharing SQLite files hear no
//! announcements, so the kernel's locks (`flock`, released with a crashed process too)
//! keep apart what must not overlap:
//!
//! - `DIR/serve.lock`: a serving node holds it shared while it runs, a local
//!   `plinth tenant move` exclusively for the move. A server would neither see a move's
//!   mark in time nor drop its cached placement after the switch (its writes would land
//!   at the copy the move deletes): the move runs only while no server does, and no
//!   server starts while it runs.
//! - `DIR/changes.lock`: a local `plinth` command that changes a tenant's data (rules,
//!   deploys, secrets, keys, users, jobs, an import, a deletion) holds it shared while it
//!   runs, and every move (local, or in a server) exclusively. The command checks the
//!   tenant's mark once, then writes: without the lock a move marking the tenant between
//!   the two would copy without that write, which lands at the source the move deletes.
//!   Such commands run beside each other and beside servers, as they always have.

use std::fs::{File, OpenOptions, TryLockError};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::{Backend, Store, StoreError, StoreResult};

const SERVE_FILE: &str = "serve.lock";
const CHANGES_FILE: &str = "changes.lock";

/// How long a move waits for the local commands changing tenants to end: they are short
/// (but for one waiting on its standard input); a move runs for as long as its copy.
pub(super) const CHANGES_WAIT: Duration = Duration::from_secs(5);

/// A held lock on the data directory; released when dropped (or the process ends).
pub struct DirLock(#[allow(dead_code)] File);

/// The change lock as a move holds it: shared by the moves one process runs at once
/// (locks of one process's separate opens exclude each other too).
pub type MoveLock = Arc<DirLock>;

enum Attempt {
    /// Not SQLite: PostgreSQL nodes and CLI processes hear each other's announcements.
    NotSqlite,
    Held(DirLock),
    /// Another process holds it in a mode that excludes this one.
    Busy,
}

impl Store {
    /// On SQLite, locks the data directory: shared for a server, exclusive for a local
    /// move; `Conflict` when the other kind holds it. `None` on PostgreSQL, whose nodes
    /// and CLI hear each other's announcements.
    pub fn lock_data_dir(&self, exclusive: bool) -> StoreResult<Option<DirLock>> {
        match self.try_lock(SERVE_FILE, exclusive)? {
            Attempt::NotSqlite => Ok(None),
            Attempt::Held(lock) => Ok(Some(lock)),
            Attempt::Busy => Err(StoreError::Conflict(match exclusive {
                true => {
                    "a server runs on this data directory: move the tenant through it \
                     (--server, or a login), or stop it first"
                }
                false => "a local `plinth tenant move` runs on this data directory",
            })),
        }
    }

    /// On SQLite, the change lock for a local command that changes a tenant's data, held
    /// until dropped; `Conflict` at once while a move runs (it may run for minutes).
    pub fn lock_for_change(&self) -> StoreResult<Option<DirLock>> {
        match self.try_lock(CHANGES_FILE, false)? {
            Attempt::NotSqlite => Ok(None),
            Attempt::Held(lock) => Ok(Some(lock)),
            Attempt::Busy => Err(StoreError::Conflict(
                "a tenant move runs on this data directory (a local `plinth tenant move`, \
                 or one in a server): try again when it has ended",
            )),
        }
    }

    /// On SQLite, the change lock for a move, held until dropped: waits up to
    /// `CHANGES_WAIT` for the local commands changing tenants to end, then `Conflict`.
    pub async fn lock_for_move(&self) -> StoreResult<Option<MoveLock>> {
        if !matches!(&*self.inner, Backend::Sqlite(_)) {
            return Ok(None);
        }
        let started = Instant::now();
        loop {
            {
                let mut held = (self.placement.move_lock)
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if let Some(lock) = held.upgrade() {
                    return Ok(Some(lock));
                }
                if let Attempt::Held(lock) = self.try_lock(CHANGES_FILE, true)? {
                    let lock = Arc::new(lock);
                    *held = Arc::downgrade(&lock);
                    return Ok(Some(lock));
                }
            }
            if started.elapsed() >= CHANGES_WAIT {
                return Err(StoreError::Conflict(
                    "a local `plinth` command is changing a tenant on this data directory: \
                     try the move again when it has ended",
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn try_lock(&self, name: &str, exclusive: bool) -> StoreResult<Attempt> {
        let Backend::Sqlite(s) = &*self.inner else {
            return Ok(Attempt::NotSqlite);
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(s.dir().join(name))?;
        let locked = match exclusive {
            true => file.try_lock(),
            false => file.try_lock_shared(),
        };
        match locked {
            Ok(()) => Ok(Attempt::Held(DirLock(file))),
            Err(TryLockError::WouldBlock) => Ok(Attempt::Busy),
            Err(TryLockError::Error(e)) => Err(e.into()),
        }
    }
}

/// What the store keeps of the move lock: the one its running moves share.
pub(super) type HeldMoveLock = std::sync::Mutex<Weak<DirLock>>;
