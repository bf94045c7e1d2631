//! What a node holds per tenant follows the tenants in use (issue 17): once the tenants
//! it served go idle, their files, compiled rules and slug lookups are released
//! (`plinth_tenants_cached`); a cold tenant answers again, and the change-log retention
//! still visits a tenant whose file closed after a write.

use std::time::Duration;

use serde_json::json;

use crate::backend_tests;
use crate::documents::{docs, put, tenant_with_key};
use crate::support::*;

backend_tests!(idle_tenants_release_what_they_held);

const TENANTS: usize = 8;
const IDLE: Duration = Duration::from_secs(3);

/// `plinth_tenants_cached` by kind: (files, rules, lookups).
async fn cached(app: &TestApp) -> (u64, u64, u64) {
    let text = app.get("/metrics", None).await.text;
    let gauge = |kind: &str| {
        let prefix = format!("plinth_tenants_cached{{kind=\"{kind}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("{prefix}missing: {text}"))
            .parse::<f64>()
            .expect("a number") as u64
    };
    (gauge("files"), gauge("rules"), gauge("lookups"))
}

async fn idle_tenants_release_what_they_held(b: Backend) {
    let mut app = TestApp::start_with(b, |c| {
        c.sqlite.idle_close = IDLE;
        c.changes_retention = Duration::ZERO;
    })
    .await;
    let before_writes = chrono::Utc::now().timestamp_millis();
    let mut keys = Vec::new();
    for t in 0..TENANTS {
        let slug = format!("cold{t}");
        let key = tenant_with_key(&mut app, &slug).await;
        put(
            &app,
            &key,
            &format!("{}/d", docs(&slug, "notes")),
            json!({"t": t}),
        )
        .await
        .ok(201);
        // Anonymous: checked against the tenant's rules (none, so denied), which compiles
        // and caches its rule set.
        let r = app.get(&format!("{}/d", docs(&slug, "notes")), None).await;
        assert_eq!(r.status.as_u16(), 403, "{}", r.text);
        keys.push((slug, key));
    }
    // Creating the tenants may take longer than the idle time on a loaded machine: touch
    // each again (file, lookup and rules) just before counting what is held.
    for (slug, key) in &keys {
        app.get(&format!("{}/d", docs(slug, "notes")), Some(key.as_str()))
            .await
            .ok(200);
        let r = app.get(&format!("{}/d", docs(slug, "notes")), None).await;
        assert_eq!(r.status.as_u16(), 403, "{}", r.text);
    }
    let busy = cached(&app).await;
    let files = if b == Backend::Sqlite {
        TENANTS as u64
    } else {
        0
    };
    assert!(
        busy.0 == files && busy.1 >= TENANTS as u64 && busy.2 >= TENANTS as u64,
        "(files, rules, lookups) of {TENANTS} tenants in use: {busy:?}"
    );

    let released = eventually(
        Duration::from_secs(20),
        "the idle tenants released",
        || async {
            let now = cached(&app).await;
            (now == (0, 0, 0)).then_some(now)
        },
    )
    .await;
    assert_eq!(released, (0, 0, 0));

    // A cold tenant answers, from a file opened again.
    let (slug, key) = &keys[3];
    let r = app
        .get(&format!("{}/d", docs(slug, "notes")), Some(key.as_str()))
        .await
        .ok(200);
    assert_eq!(r["data"], json!({"t": 3}));
    let (files, _, lookups) = cached(&app).await;
    assert_eq!((files, lookups), (u64::from(b == Backend::Sqlite), 1));
    // A key that is not this tenant's is still refused after the reopen.
    let r = app
        .get(
            &format!("{}/d", docs(slug, "notes")),
            Some(keys[4].1.as_str()),
        )
        .await;
    assert_eq!(r.status.as_u16(), 401, "{}", r.text);

    // Every tenant was written before its file closed: the retention still visits each
    // (one change apiece, all past a zero retention).
    tokio::time::sleep(Duration::from_millis(5)).await;
    let state = app.running.as_ref().unwrap().state.clone();
    let pruned = plinth::app::prune_changes_written_since(&state, Some(before_writes))
        .await
        .unwrap();
    assert_eq!(pruned, TENANTS as u64);
}
