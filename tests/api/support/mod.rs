//! Test harness: a real server on 127.0.0.1:0, on a fresh SQLite directory or a fresh
//! PostgreSQL database, driven over HTTP.
//!
//! PostgreSQL comes from `TEST_POSTGRES_URL` (scripts/test.sh starts a throwaway cluster
//! and sets it). Without it, PostgreSQL tests are skipped with a message, except under
//! `CI=true`, where a missing PostgreSQL fails them.
//!
//! One file per concern: `server` starts and stops the app, `storage` gives it a fresh
//! place for its data (and removes it afterwards), `postgres` the test cluster's
//! databases, `client` the HTTP calls and the account helpers built on them, `jwt` token
//! forging and decoding, `ws` the realtime WebSocket client, `smtp` a mail sink.
//! Everything is re-exported here, so tests `use crate::support::*`.

#![allow(dead_code)]

mod client;
mod jwt;
mod postgres;
mod server;
pub mod smtp;
mod storage;
mod ws;

// Not every test binary that includes the harness uses every part of it.
#[allow(unused_imports)]
pub use client::*;
#[allow(unused_imports)]
pub use jwt::*;
pub use postgres::*;
pub use server::*;
pub use storage::*;
#[allow(unused_imports)]
pub use ws::*;

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each listed `async fn name(b: Backend)` as two tests, `sqlite::name` and
/// `postgres::name`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if !$crate::support::postgres_available() {
                        return;
                    }
                    super::$name($crate::support::Backend::Postgres).await
                }
            )*
        }
    };
}

/// Held for their whole run by the tests that open thousands of descriptors (idle
/// connections, slowloris, thousands of sockets), one at a time: together they would
/// pass the open-files limit (20,000 on the development machine).
pub static DESCRIPTOR_HEAVY: std::sync::LazyLock<tokio::sync::Mutex<()>> =
    std::sync::LazyLock::new(|| tokio::sync::Mutex::new(()));

/// Polls `check` until it returns Some, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
