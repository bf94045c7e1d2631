//! SQLite's memory: each connection's page cache and memory map, one budget for the whole
//! process, and the counters `/metrics` shows.
//!
//! Every tenant file has connections of its own (a writer and idle readers through
//! rusqlite, a small sqlx pool), and each connection has its own page cache. Left at
//! SQLite's default (2 MB a connection), a node's memory grows with tenants × connections.
//! The SQLite that libsqlite3-sys bundles is built with `SQLITE_ENABLE_MEMORY_MANAGEMENT`,
//! so all connections' page caches share one LRU list, and once SQLite's heap passes the
//! soft heap limit, a cache needing a page takes the least recently used page of any
//! connection instead of allocating, and `sqlite3_release_memory` frees unused pages. So
//! every connection may cache up to its own cap (`conn_cache`, see `cache_size_pragma`)
//! and all of them together are held near the budget. The limit is soft: SQLite never fails an
//! allocation for it (a hard limit would turn memory pressure into failed requests), and
//! what it cannot free (the schema and the prepared statements of open connections,
//! pages a statement is using) can go past it; idle connections are closed
//! (`store::tenant_files`), which gives that back.
//!
//! The memory map (`mmap_size`) serves reads from the operating system's page cache with
//! no copy into SQLite's: those pages are the kernel's, shared by every connection to the
//! file, clean (the kernel drops them under pressure and reads them again), and not part
//! of SQLite's heap or budget. They do count in the process's RSS (as `RssFile`, not
//! `RssAnon`) while mapped and resident, so RSS overstates what the node needs.

#![allow(unsafe_code)]

use std::time::Duration;

/// How SQLite may use memory on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SqliteTuning {
    /// SQLite's heap for the whole process (the soft heap limit), in bytes; 0: no budget,
    /// and each connection keeps SQLite's default cache of 2,000 KiB.
    pub cache_budget: u64,
    /// The most one connection caches, in bytes, within the budget; 0: up to the budget.
    /// See `cache_size_pragma`.
    pub conn_cache: u64,
    /// Bytes of each database file read through a memory map; 0: none.
    pub mmap: u64,
    /// A tenant file unused this long closes its connections.
    pub idle_close: Duration,
}

impl Default for SqliteTuning {
    fn default() -> SqliteTuning {
        SqliteTuning {
            cache_budget: u64::from(SqliteTuning::DEFAULT_CACHE_MIB) << 20,
            conn_cache: u64::from(SqliteTuning::DEFAULT_CONN_CACHE_MIB) << 20,
            mmap: u64::from(SqliteTuning::DEFAULT_MMAP_MIB) << 20,
            idle_close: Duration::from_secs(u64::from(SqliteTuning::DEFAULT_IDLE_SECS)),
        }
    }
}

impl SqliteTuning {
    // The defaults' reasons, with the figures, are in docs/deploy.md ("Memory").
    pub const DEFAULT_CACHE_MIB: u32 = 256;
    pub const DEFAULT_CONN_CACHE_MIB: u32 = 16;
    pub const DEFAULT_MMAP_MIB: u32 = 0;
    pub const DEFAULT_IDLE_SECS: u32 = 60;

    /// `PRAGMA cache_size` of each connection: negative means KiB. Each connection is
    /// capped below the budget because SQLite walks a connection's whole page table
    /// (sized by the most pages it ever held) when a commit or another connection's write
    /// drops pages from it: with the whole 256 MiB budget allowed per connection, that
    /// walk took 3.5% of the CPU of a write-heavy load (hooks done/s in the functions
    /// benchmark) against 0.1% at SQLite's default 2 MB (BENCHMARKS.md, "Figures behind
    /// choices").
    pub(crate) fn cache_size_pragma(&self) -> i64 {
        if self.cache_budget == 0 {
            return -2000;
        }
        let cap = match self.conn_cache {
            0 => self.cache_budget,
            c => c.min(self.cache_budget),
        };
        -i64::try_from(cap / 1024).unwrap_or(i64::MAX).max(1)
    }

    /// `PRAGMA mmap_size` of each connection (SQLite caps it at its compile-time maximum,
    /// 2 GiB here).
    pub(crate) fn mmap_pragma(&self) -> i64 {
        i64::try_from(self.mmap).unwrap_or(i64::MAX)
    }

    /// Sets the process's soft heap limit. Process-wide: the last store opened in a
    /// process sets it (a server opens one).
    pub(crate) fn apply_process_limit(&self) {
        let limit = i64::try_from(self.cache_budget).unwrap_or(i64::MAX);
        // SAFETY: a plain C call without pointers; SQLite serialises it with its own mutex
        // and initialises itself first if needed.
        unsafe {
            rusqlite::ffi::sqlite3_soft_heap_limit64(limit);
        }
    }
}

/// SQLite's heap in this process, from SQLite's own counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SqliteMemory {
    /// Bytes SQLite has allocated now.
    pub used: i64,
    /// The most it has held at once since the process started.
    pub highwater: i64,
    /// The soft heap limit in force (0: none).
    pub budget: i64,
}

/// Reads SQLite's memory counters (they are process-wide: every connection of every
/// store, sqlx's and rusqlite's, links the same SQLite).
pub fn sqlite_memory() -> SqliteMemory {
    // SAFETY: plain C calls without pointers; `sqlite3_memory_highwater(0)` only reads,
    // and `sqlite3_soft_heap_limit64(-1)` only reads the limit.
    unsafe {
        SqliteMemory {
            used: rusqlite::ffi::sqlite3_memory_used(),
            highwater: rusqlite::ffi::sqlite3_memory_highwater(0),
            budget: rusqlite::ffi::sqlite3_soft_heap_limit64(-1),
        }
    }
}
