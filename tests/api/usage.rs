//! Usage per hour and per day through the admin API: requests, errors, writes and
//! realtime connections land in the tenant's hour (the report flushes the meter first),
//! the default answer keeps its per-day shape, bad parameters are 400 problems, and
//! tenant admins see only their tenants' usage.

use serde_json::{Value, json};

use crate::admin_roles::add_admin;
use crate::backend_tests;
use crate::documents::{docs, put, tenant_with_key};
use crate::support::*;

backend_tests!(
    hours_count_requests_errors_writes_and_sockets,
    bad_usage_parameters_are_refused,
    usage_is_read_by_the_admins_of_the_tenant_only,
);

fn hourly(tenant: &str, hours: u32) -> String {
    format!("/admin/v1/tenants/{tenant}/usage?granularity=hour&hours={hours}")
}

/// The hours of a report, after checking each is a listed UTC hour and they add up to
/// the total.
fn hours_of(report: &Value) -> Vec<Value> {
    assert_eq!(report["granularity"], "hour", "{report}");
    assert!(report.get("days").is_none(), "{report}");
    let hours = report["hours"].as_array().expect("hours").clone();
    let mut sum = 0;
    for h in &hours {
        let at = h["hour"].as_str().expect("hour");
        assert!(
            at.len() == 20 && at.ends_with(":00:00Z") && at.as_bytes()[10] == b'T',
            "{at}"
        );
        sum += h["requests"].as_i64().unwrap();
    }
    assert_eq!(
        sum,
        report["total"]["requests"].as_i64().unwrap(),
        "{report}"
    );
    hours
}

async fn hours_count_requests_errors_writes_and_sockets(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_key(&mut app, "metered").await;
    app.create_tenant("quiet").await;
    let admin = app.admin().await;
    let before = app.get(&hourly("metered", 48), Some(&admin)).await.ok(200);
    assert_eq!(before["tenant"], "metered");
    assert!(hours_of(&before).is_empty(), "nothing yet: {before}");
    assert_eq!(before["total"]["requests"], 0, "{before}");

    // Two writes and a read that succeed, two requests that fail, two sockets.
    for id in ["a", "b"] {
        put(
            &app,
            &key,
            &format!("{}/{id}", docs("metered", "things")),
            json!({}),
        )
        .await
        .ok(201);
    }
    app.get(&format!("{}/a", docs("metered", "things")), Some(&key))
        .await
        .ok(200);
    app.get(&format!("{}/nope", docs("metered", "things")), Some(&key))
        .await
        .problem(404, "document_not_found");
    let forged = app
        .get(&docs("metered", "things"), Some("forged-token"))
        .await;
    assert_eq!(forged.status.as_u16(), 401, "{}", forged.text);
    let mut sockets = Vec::new();
    for _ in 0..2 {
        let (ws, _) = tokio_tungstenite::connect_async(ws_url(&app, "metered"))
            .await
            .expect("upgrade");
        sockets.push(ws);
    }

    let report = app.get(&hourly("metered", 48), Some(&admin)).await.ok(200);
    let hours = hours_of(&report);
    assert!(
        (1..=2).contains(&hours.len()),
        "this hour (and the last, across an hour's start): {report}"
    );
    let total = &report["total"];
    assert_eq!(
        total["requests"], 7,
        "3 good, 2 failed, 2 upgrades: {report}"
    );
    assert_eq!(total["errors"], 2, "{report}");
    assert_eq!(total["doc_writes"], 2, "{report}");
    assert_eq!(total["realtime_connections"], 2, "{report}");
    assert_eq!(total["realtime_peak"], 2, "{report}");
    assert_eq!(total["invocations"], 0, "{report}");

    // The current hour alone has the sockets: still open, they are its peak.
    let now = app.get(&hourly("metered", 1), Some(&admin)).await.ok(200);
    assert_eq!(hours_of(&now).len(), 1, "{now}");
    assert_eq!(now["total"]["realtime_peak"], 2, "{now}");

    // Without parameters: per day, as before, with the same counts.
    let daily = app
        .get("/admin/v1/tenants/metered/usage", Some(&admin))
        .await
        .ok(200);
    assert_eq!(daily["granularity"], "day", "{daily}");
    assert!(daily.get("hours").is_none(), "{daily}");
    assert!(!daily["days"].as_array().expect("days").is_empty());
    assert_eq!(daily["total"], report["total"], "{daily}");
    let explicit = app
        .get(
            "/admin/v1/tenants/metered/usage?granularity=day&days=2",
            Some(&admin),
        )
        .await
        .ok(200);
    assert_eq!(explicit["total"], report["total"], "{explicit}");

    // Another tenant's hours stay empty.
    let quiet = app.get(&hourly("quiet", 336), Some(&admin)).await.ok(200);
    assert!(hours_of(&quiet).is_empty(), "{quiet}");
    assert_eq!(quiet["total"]["realtime_connections"], 0, "{quiet}");
    drop(sockets);
}

async fn bad_usage_parameters_are_refused(b: Backend) {
    let mut app = TestApp::start(b).await;
    app.create_tenant("acme").await;
    let admin = app.admin().await;
    let base = "/admin/v1/tenants/acme/usage";
    for (query, code) in [
        ("granularity=hour&hours=0", "validation_failed"),
        ("granularity=hour&hours=337", "validation_failed"),
        ("granularity=hour&hours=100000", "validation_failed"),
        ("hours=5", "validation_failed"),
        ("granularity=day&hours=5", "validation_failed"),
        ("granularity=hour&days=2", "validation_failed"),
        ("days=0", "validation_failed"),
        ("days=367", "validation_failed"),
        ("granularity=minute", "invalid_query"),
        ("granularity=HOUR", "invalid_query"),
        ("granularity=hour&hours=-1", "invalid_query"),
        ("granularity=hour&hours=two", "invalid_query"),
        ("granularity=hour&hours=99999999999", "invalid_query"),
    ] {
        let r = app.get(&format!("{base}?{query}"), Some(&admin)).await;
        assert_eq!(r.status.as_u16(), 400, "{query}: {}", r.text);
        r.problem(400, code);
    }
    // The edges are fine.
    for query in [
        "granularity=hour&hours=336",
        "granularity=hour&hours=1",
        "granularity=hour",
    ] {
        let r = app
            .get(&format!("{base}?{query}"), Some(&admin))
            .await
            .ok(200);
        assert_eq!(r["granularity"], "hour", "{query}: {r}");
    }
    app.get(&hourly("nobody", 5), Some(&admin))
        .await
        .problem(404, "tenant_not_found");
    app.get(&hourly("acme", 5), None)
        .await
        .problem(401, "auth_required");
}

async fn usage_is_read_by_the_admins_of_the_tenant_only(b: Backend) {
    let mut app = TestApp::start(b).await;
    let owner = app.admin().await;
    app.create_tenant("mine").await;
    app.create_tenant("other").await;
    let (_, ta) = add_admin(&app, &owner, "ta@x.test", "tenant_admin", &["mine"]).await;
    let (_, viewer) = add_admin(&app, &owner, "viewer@x.test", "viewer", &[]).await;

    app.get(&hourly("mine", 24), Some(&ta)).await.ok(200);
    // Another tenant's usage is hidden as if the tenant did not exist, bad parameters
    // or not (the tenant is checked before them, so a 400 cannot tell it exists).
    let hidden = app.get(&hourly("other", 24), Some(&ta)).await;
    let absent = app.get(&hourly("nope", 24), Some(&owner)).await;
    assert_eq!(
        hidden.problem(404, "tenant_not_found")["detail"],
        absent.problem(404, "tenant_not_found")["detail"]
    );
    for tenant in ["other", "nope"] {
        app.get(&hourly(tenant, 0), Some(&ta))
            .await
            .problem(404, "tenant_not_found");
        app.get(
            &format!("/admin/v1/tenants/{tenant}/usage?granularity=minute"),
            Some(&ta),
        )
        .await
        .problem(404, "tenant_not_found");
    }
    app.get("/admin/v1/tenants/other/usage", Some(&ta))
        .await
        .problem(404, "tenant_not_found");

    // A viewer reads every tenant's usage, per hour and per day.
    for tenant in ["mine", "other"] {
        app.get(&hourly(tenant, 48), Some(&viewer)).await.ok(200);
        app.get(
            &format!("/admin/v1/tenants/{tenant}/usage?days=7"),
            Some(&viewer),
        )
        .await
        .ok(200);
    }
    app.get(&hourly("mine", 0), Some(&viewer))
        .await
        .problem(400, "validation_failed");
}
