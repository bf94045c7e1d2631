//! Who uses a SQLite data directory: a serving node holds a shared lock on
//! `DIR/serve.lock` while it runs, and a local `plinth tenant move` takes it exclusively
//! for the move. Processes sharing SQLite files hear no announcements, so a server would
//! neither see a move's mark in time nor drop its cached placement after the switch
//! (its writes would land at the copy the move deletes): the move runs only while no
//! server does, and no server starts while it runs. The lock is the kernel's (`flock`),
//! so a crashed process holds it no longer.

use std::fs::{File, OpenOptions, TryLockError};

use super::{Backend, Store, StoreError, StoreResult};

const LOCK_FILE: &str = "serve.lock";

/// A held lock on the data directory; released when dropped (or the process ends).
pub struct DirLock(#[allow(dead_code)] File);

impl Store {
    /// On SQLite, locks the data directory: shared for a server, exclusive for a local
    /// move; `Conflict` when the other kind holds it. `None` on PostgreSQL, whose nodes
    /// and CLI hear each other's announcements.
    pub fn lock_data_dir(&self, exclusive: bool) -> StoreResult<Option<DirLock>> {
        let Backend::Sqlite(s) = &*self.inner else {
            return Ok(None);
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(s.dir().join(LOCK_FILE))?;
        let locked = match exclusive {
            true => file.try_lock(),
            false => file.try_lock_shared(),
        };
        match locked {
            Ok(()) => Ok(Some(DirLock(file))),
            Err(TryLockError::WouldBlock) => Err(StoreError::Conflict(match exclusive {
                true => {
                    "a server runs on this data directory: move the tenant through it \
                     (--server, or a login), or stop it first"
                }
                false => "a local `plinth tenant move` runs on this data directory",
            })),
            Err(TryLockError::Error(e)) => Err(e.into()),
        }
    }
}
