//! Idle tenants stay closed while hooks run (issue 16): the hook runner's rescans and the
//! change-log retention open no idle tenant's file, and a job queued for an idle tenant
//! by another process (the CLI) still runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use plinth::store::Location;
use serde_json::json;

use crate::backend_tests;
use crate::cli::plinth;
use crate::documents::{docs, put, tenant_with_key};
use crate::functions::deploy;
use crate::support::*;

backend_tests!(idle_tenants_stay_closed_while_hooks_run);

const TENANTS: usize = 12;
const IDLE: Duration = Duration::from_secs(1);
/// Shorter than the idle time, as the default (30 s) is shorter than the default idle
/// time (60 s): a rescan that opened every tenant would keep them all open.
const RESCAN: Duration = Duration::from_millis(200);

/// Descriptors this process holds on files under `dir`: either driver's connections,
/// their WAL and shared memory.
fn open_files_under(dir: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|p| p.starts_with(dir))
        .count()
}

/// The directory of the tenant files (None on PostgreSQL).
fn tenant_dir(app: &TestApp) -> Option<PathBuf> {
    match &app.storage.location {
        Location::SqliteDir(d) => Some(d.join(plinth::store::backup::SQLITE_TENANT_DIR)),
        Location::Postgres(_) => None,
    }
}

/// What this server holds open of its tenants: descriptors on tenant files, and the
/// connections `/metrics` counts.
async fn held_open(app: &TestApp) -> (usize, u64) {
    let files = tenant_dir(app).map_or(0, |d| open_files_under(&d));
    let text = app.get("/metrics", None).await.text;
    let connections = text
        .lines()
        .find_map(|l| l.strip_prefix("plinth_sqlite_connections "))
        .unwrap_or_else(|| panic!("plinth_sqlite_connections missing: {text}"))
        .parse::<f64>()
        .expect("a number");
    (files, connections as u64)
}

async fn idle_tenants_stay_closed_while_hooks_run(b: Backend) {
    let mut app = TestApp::start_with(b, |c| {
        c.sqlite.idle_close = IDLE;
        c.functions.hook_rescan = RESCAN;
    })
    .await;
    // A dead job in `shop`: its hook fails and has no second attempt.
    let shop = tenant_with_key(&mut app, "shop").await;
    let manifest = "[[hooks]]\nfunction = \"receipt\"\ncollection = \"orders\"\non = [\"create\"]\nmax_attempts = 1\n";
    let failing = "export default async () => { throw new Error('mail server down') }";
    deploy(
        &mut app,
        "shop",
        &[("plinth.toml", manifest), ("functions/receipt.js", failing)],
    )
    .await
    .ok(201);
    put(
        &app,
        &shop,
        &format!("{}/o1", docs("shop", "orders")),
        json!({"total": 5}),
    )
    .await
    .ok(201);
    let admin = app.admin().await;
    let dead = eventually(Duration::from_secs(20), "the job dies", || async {
        let p = app
            .get("/admin/v1/tenants/shop/jobs?state=dead", Some(&admin))
            .await
            .ok(200);
        p["items"].as_array().unwrap().first().cloned()
    })
    .await;
    let job = dead["id"].as_str().unwrap().to_string();
    let fixed = "export default async (event, ctx) => { await ctx.db.put('receipts', event.doc.id, { attempt: event.attempt }) }";
    deploy(
        &mut app,
        "shop",
        &[("plinth.toml", manifest), ("functions/receipt.js", fixed)],
    )
    .await
    .ok(201);
    // More tenants, each written once.
    for t in 0..TENANTS {
        let slug = format!("idle{t}");
        let key = tenant_with_key(&mut app, &slug).await;
        put(
            &app,
            &key,
            &format!("{}/d", docs(&slug, "notes")),
            json!({"t": t}),
        )
        .await
        .ok(201);
    }
    let busy = held_open(&app).await;
    eprintln!(
        "{} tenants in use: {} descriptors on their files, {} connections",
        TENANTS + 1,
        busy.0,
        busy.1
    );
    if b == Backend::Sqlite {
        assert!(
            busy.0 > 0 && busy.1 > 0,
            "tenant files open in use: {busy:?}"
        );
    }

    // Every tenant goes idle and stays so through rescans (ten in two seconds) and a pass
    // of the change-log retention.
    let closed_after = std::time::Instant::now();
    eventually(
        Duration::from_secs(20),
        "every tenant file closed",
        || async { (held_open(&app).await == (0, 0)).then_some(()) },
    )
    .await;
    eprintln!(
        "all closed {} ms after the last use",
        closed_after.elapsed().as_millis()
    );
    let quiet_since = chrono::Utc::now().timestamp_millis();
    tokio::time::sleep(RESCAN * 10).await;
    let state = app.running.as_ref().unwrap().state.clone();
    plinth::app::prune_changes_written_since(&state, Some(quiet_since))
        .await
        .unwrap();
    assert_eq!(
        held_open(&app).await,
        (0, 0),
        "hook rescans and the retention left the idle tenants closed"
    );

    // A job queued for an idle tenant by another process runs.
    let out = plinth(
        &app.storage,
        &["jobs", "retry", &job, "--tenant", "shop"],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let receipt = eventually(Duration::from_secs(10), "the retried job runs", || async {
        let r = app
            .get(&format!("{}/o1", docs("shop", "receipts")), Some(&shop))
            .await;
        (r.status.as_u16() == 200).then(|| r.json())
    })
    .await;
    assert_eq!(receipt["data"]["attempt"], 1);
}
