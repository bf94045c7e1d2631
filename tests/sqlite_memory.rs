//! SQLite's memory across many tenants, held to the node's budget (PLINTH_SQLITE_CACHE_MIB)
//! and measured with SQLite's own counter (`sqlite3_memory_used`, the value of
//! `plinth_sqlite_memory_bytes`). SQLite only. A test binary of its own: the counter and
//! the budget are process-wide, so the servers of other tests would blur both.

// The server binary's allocator (src/main.rs), as in tests/api.
#[cfg(all(unix, not(target_env = "musl")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[path = "api/support/mod.rs"]
mod support;

use std::time::Duration;

use plinth::store::{SqliteTuning, sqlite_memory};
use serde_json::{Value, json};
use support::{Backend, TestApp};

const TENANTS: usize = 300;
const DOCS: usize = 60;
const BUDGET: u64 = 8 << 20;
/// What the budget cannot free: the schema and prepared statements of open connections
/// and the first allocation of each one's page cache (20 pages), for each tenant file
/// open (its writer, a reader, a cold-path connection). Every tenant's file may be open
/// at once: on a fast run none has been idle for the second the test allows before all
/// are read. Measured: 64.5 MiB with all 300 open (8 + ~190 KiB a tenant) in a quiet
/// run, 21-30 MiB in runs slow enough for idle files to close, 370-390 MiB without the
/// budget. The margin is that worst case, rounded up.
const MARGIN: u64 = TENANTS as u64 * (256 << 10);

fn slug(t: usize) -> String {
    format!("m{t:03}")
}

/// About 2 KB of JSON, different for every document.
fn doc(t: usize, i: usize) -> Value {
    json!({"t": t, "i": i, "text": format!("{t}:{i};").repeat(2000 / format!("{t}:{i};").len())})
}

/// Creates the tenants and their documents; answers each tenant's service key.
async fn seed(app: &mut TestApp) -> Vec<String> {
    let mut keys = Vec::with_capacity(TENANTS);
    for t in 0..TENANTS {
        app.create_tenant(&slug(t)).await;
        let key = app.create_key(&slug(t), "seed").await["key"]
            .as_str()
            .expect("key")
            .to_string();
        let writes: Vec<Value> = (0..DOCS)
            .map(|i| json!({"op": "put", "collection": "notes", "id": format!("n{i:03}"), "data": doc(t, i)}))
            .collect();
        app.post(
            &format!("/v1/t/{}/batch", slug(t)),
            Some(&key),
            json!({ "writes": writes }),
        )
        .await
        .ok(200);
        keys.push(key);
    }
    keys
}

/// Reads every tenant's documents (a list of all, a get of one) and checks them;
/// answers the most SQLite held after any tenant.
async fn touch_all(app: &TestApp, keys: &[String]) -> i64 {
    let mut most = 0;
    for (t, key) in keys.iter().enumerate() {
        let list = app
            .get(
                &format!("/v1/t/{}/collections/notes/docs?limit=1000", slug(t)),
                Some(key),
            )
            .await
            .ok(200);
        let items = list["items"].as_array().expect("items");
        assert_eq!(items.len(), DOCS, "tenant {t}");
        for item in items {
            let i = item["data"]["i"].as_u64().expect("i") as usize;
            assert_eq!(item["data"], doc(t, i), "tenant {t}, document {i}");
        }
        let one = app
            .get(
                &format!("/v1/t/{}/collections/notes/docs/n{:03}", slug(t), t % DOCS),
                Some(key),
            )
            .await
            .ok(200);
        assert_eq!(one["data"], doc(t, t % DOCS));
        most = most.max(sqlite_memory().used);
    }
    most
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} missing: {text}"))
        .parse()
        .expect("a number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tenants_stay_within_the_sqlite_budget() {
    // Without a budget, and with connections kept open, the same reads hold far more
    // than the budget: what follows could fail.
    let mut app = TestApp::start_with(Backend::Sqlite, |c| {
        c.sqlite = SqliteTuning {
            cache_budget: 0,
            mmap: 0,
            conn_cache: 0,
            idle_close: Duration::from_secs(3600),
        };
    })
    .await;
    let keys = seed(&mut app).await;
    let unbounded = touch_all(&app, &keys).await;
    eprintln!("SQLite heap, no budget: {} KiB", unbounded / 1024);
    assert!(
        unbounded > 3 * (BUDGET + MARGIN) as i64,
        "the workload is too small to test the budget: {unbounded} bytes without it"
    );
    let storage = app.stop().await;
    // The first server's connections close in the background once it has stopped.
    support::eventually(
        Duration::from_secs(30),
        "the first server's connections closed",
        || async {
            let used = sqlite_memory().used;
            (used < (BUDGET / 2) as i64).then_some(used)
        },
    )
    .await;

    // With the budget (and no memory map, so every read goes through SQLite's caches).
    let app = TestApp::start_on(Backend::Sqlite, storage, |c| {
        c.sqlite = SqliteTuning {
            cache_budget: BUDGET,
            mmap: 0,
            conn_cache: 0,
            idle_close: Duration::from_secs(1),
        };
    })
    .await;
    let bounded = touch_all(&app, &keys).await;
    eprintln!(
        "SQLite heap, budget {} KiB: at most {} KiB",
        BUDGET / 1024,
        bounded / 1024
    );
    assert!(
        bounded <= (BUDGET + MARGIN) as i64,
        "SQLite held {bounded} bytes, budget {BUDGET} + margin {MARGIN}"
    );

    // The same figures on /metrics.
    let text = app.get("/metrics", None).await.text;
    assert_eq!(
        metric(&text, "plinth_sqlite_memory_budget_bytes"),
        BUDGET as f64
    );
    let shown = metric(&text, "plinth_sqlite_memory_bytes");
    assert!(shown > 0.0 && shown <= (BUDGET + MARGIN) as f64, "{shown}");
    assert!(
        text.contains("# TYPE plinth_sqlite_memory_bytes gauge"),
        "{text}"
    );

    // Idle tenants give their connections back: the heap falls well under the budget.
    let settled = support::eventually(
        Duration::from_secs(20),
        "idle connections closed",
        || async {
            let used = sqlite_memory().used;
            (used < (BUDGET / 2) as i64).then_some(used)
        },
    )
    .await;
    eprintln!("SQLite heap once idle: {} KiB", settled / 1024);
}
