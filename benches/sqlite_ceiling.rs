//! The ceiling for single-document writes on SQLite: one row inserted per transaction,
//! in WAL mode with synchronous=NORMAL (Plinth's settings), nothing else, one thread.
//!
//! `cargo bench --bench sqlite_ceiling -- --seconds 5` prints one JSON line.

use std::time::{Duration, Instant};

use rusqlite::{Connection, params};

fn main() {
    let mut seconds = 5u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--seconds" {
            seconds = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let conn = Connection::open(dir.path().join("ceiling.db")).expect("open");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    conn.pragma_update(None, "synchronous", "NORMAL")
        .expect("sync");
    conn.execute_batch(
        "CREATE TABLE docs (id TEXT PRIMARY KEY, data TEXT NOT NULL, created_at INTEGER NOT NULL)",
    )
    .expect("table");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut n: u64 = 0;
    let mut lat = Vec::with_capacity(1 << 20);
    while Instant::now() < deadline && n < 10_000_000 {
        let t = Instant::now();
        conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
        conn.prepare_cached("INSERT INTO docs (id, data, created_at) VALUES (?1, ?2, ?3)")
            .expect("prepare")
            .execute(params![
                format!("d{n}"),
                r#"{"owner":"u","title":"t"}"#,
                n as i64
            ])
            .expect("insert");
        conn.execute_batch("COMMIT").expect("commit");
        lat.push(t.elapsed().as_micros() as u32);
        n += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    println!(
        "{{\"label\":\"sqlite-ceiling\",\"inserts\":{n},\"per_sec\":{:.0},\"p50_us\":{},\"p99_us\":{}}}",
        n as f64 / secs,
        lat[lat.len() / 2],
        lat[(lat.len() as f64 * 0.99) as usize]
    );
}
