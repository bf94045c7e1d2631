//! Cross-tenant everything: alpha's credentials, ids, cursors and functions against
//! bravo, over REST, the admin API, WebSocket and `ctx.db`.

use reqwest::Method;
use serde_json::{Value, json};

use super::*;
use crate::backend_tests;
use crate::realtime::Client;

backend_tests!(other_tenants_are_out_of_reach);

/// Every tenant route with a body that would be valid, as (method, path, body).
fn tenant_routes(t: &str, coll: &str, id: &str) -> Vec<(Method, String, Option<Value>)> {
    let docs = format!("/v1/t/{t}/collections/{coll}/docs");
    let doc = format!("{docs}/{id}");
    let auth = format!("/v1/t/{t}/auth");
    vec![
        (Method::GET, doc.clone(), None),
        (Method::GET, docs.clone(), None),
        (
            Method::GET,
            format!("{docs}?filter=doc.n%20%3D%3D%201"),
            None,
        ),
        (Method::POST, docs.clone(), Some(json!({"n": 2}))),
        (Method::PUT, doc.clone(), Some(json!({"n": 2}))),
        (Method::PATCH, doc.clone(), Some(json!({"n": 2}))),
        (Method::DELETE, doc.clone(), None),
        (
            Method::POST,
            format!("/v1/t/{t}/batch"),
            Some(json!({"writes": [
                {"op": "patch", "collection": coll, "id": id, "patch": {"n": 3}},
                {"op": "delete", "collection": coll, "id": id},
            ]})),
        ),
        (Method::GET, format!("{auth}/me"), None),
        (
            Method::POST,
            format!("{auth}/password"),
            Some(json!({"current_password": PASSWORD, "new_password": "taken-over-password-9"})),
        ),
        (Method::POST, format!("{auth}/logout"), Some(json!({}))),
        (
            Method::POST,
            format!("{auth}/verify/request"),
            Some(json!({})),
        ),
        (
            Method::GET,
            format!("/v1/t/{t}/fn/peek?id={id}&c={coll}"),
            None,
        ),
        (Method::POST, format!("/v1/t/{t}/fn/peek"), Some(json!({}))),
    ]
}

/// The admin routes of a tenant that read or change something.
fn admin_routes(t: &str, user: &str) -> Vec<(Method, String, Option<Value>)> {
    let base = format!("/admin/v1/tenants/{t}");
    vec![
        (Method::GET, base.clone(), None),
        (Method::PATCH, base.clone(), Some(json!({"name": "pwned"}))),
        (Method::DELETE, base.clone(), None),
        (Method::POST, format!("{base}/suspend"), None),
        (Method::GET, format!("{base}/users"), None),
        (Method::POST, format!("{base}/users/{user}/disable"), None),
        (Method::DELETE, format!("{base}/users/{user}"), None),
        (Method::GET, format!("{base}/keys"), None),
        (
            Method::POST,
            format!("{base}/keys"),
            Some(json!({"name": "evil"})),
        ),
        (Method::GET, format!("{base}/secrets"), None),
        (
            Method::PUT,
            format!("{base}/secrets/API_KEY"),
            Some(json!({"value": "evil"})),
        ),
        (Method::GET, format!("{base}/rules"), None),
        (Method::GET, format!("{base}/deploys"), None),
        (Method::POST, format!("{base}/deploys/1/activate"), None),
        (Method::GET, format!("{base}/invocations"), None),
        (Method::GET, format!("{base}/usage"), None),
    ]
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: &Option<Value>,
) -> Reply {
    let mut req = app.req(method, path, token);
    if let Some(b) = body {
        req = req.json(b);
    }
    app.send(req).await
}

async fn other_tenants_are_out_of_reach(b: Backend) {
    let World {
        mut app,
        alpha,
        bravo,
    } = world(b, &[]).await;
    let tally = Tally::new("cross_tenant", b);
    let bravo_before = state(&mut app, &bravo).await;
    let alpha_before = state(&mut app, &alpha).await;

    // 1. alpha's user tokens and service key against every bravo route, on bravo's ids
    //    and on alpha's own ids: 401 invalid_token, whatever the route.
    let creds = [
        ("alpha owner", alpha.owner.access.clone()),
        ("alpha other", alpha.other.access.clone()),
        ("alpha key", alpha.key.clone()),
    ];
    for (who, token) in &creds {
        for (coll, id) in bravo.docs.iter().chain(alpha.docs.iter()) {
            for (m, path, body) in tenant_routes("bravo", coll, id) {
                let r = send(&app, m.clone(), &path, Some(token), &body).await;
                tally.expect(&format!("{who}: {m} {path}"), &r, 401, "invalid_token");
            }
        }
        // ...and against bravo's admin routes (not an admin token at all).
        for (m, path, body) in admin_routes("bravo", &bravo.owner.user_id) {
            let r = send(&app, m.clone(), &path, Some(token), &body).await;
            tally.expect(&format!("{who}: {m} {path}"), &r, 401, "invalid_token");
        }
        let r = app
            .send(
                app.req(Method::PUT, "/admin/v1/tenants/bravo/rules", Some(token))
                    .header("content-type", "application/toml")
                    .body("[notes]\nread = \"true\"\n"),
            )
            .await;
        tally.expect(&format!("{who}: PUT bravo rules"), &r, 401, "invalid_token");
    }

    // 2. alpha's refresh tokens spent at bravo: refused, and alpha's session survives.
    for s in [&alpha.owner, &alpha.other] {
        for path in ["/v1/t/bravo/auth/refresh", "/v1/t/bravo/auth/logout"] {
            let r = app
                .post(path, None, json!({"refresh_token": s.refresh}))
                .await;
            tally.expect(
                &format!("alpha refresh at {path}"),
                &r,
                401,
                "invalid_refresh_token",
            );
        }
    }
    app.get("/v1/t/alpha/auth/me", Some(&alpha.owner.access))
        .await
        .ok(200);

    // 3. bravo's own callers naming alpha's ids: those documents do not exist there.
    for (coll, id) in &alpha.docs {
        let path = format!("/v1/t/bravo/collections/{coll}/docs/{id}");
        let r = app.get(&path, Some(&bravo.key)).await;
        tally.expect(
            &format!("bravo key: GET {path}"),
            &r,
            404,
            "document_not_found",
        );
        let r = app.delete(&path, Some(&bravo.key)).await;
        tally.expect(
            &format!("bravo key: DELETE {path}"),
            &r,
            404,
            "document_not_found",
        );
        let r = app
            .send(
                app.req(Method::PATCH, &path, Some(&bravo.key))
                    .header("content-type", "application/json-patch+json")
                    .body(r#"[{"op":"test","path":"/tenant","value":"alpha"}]"#),
            )
            .await;
        tally.expect(
            &format!("bravo key: PATCH {path}"),
            &r,
            404,
            "document_not_found",
        );
    }
    let r = app
        .get(
            &format!(
                "/v1/t/bravo/collections/public/docs/{}",
                alpha.doc("public")
            ),
            None,
        )
        .await;
    tally.expect(
        "anonymous: alpha's public id under bravo",
        &r,
        404,
        "document_not_found",
    );
    // A user of bravo cannot tell alpha's notes from nothing either.
    let r = app
        .get(
            &format!("/v1/t/bravo/collections/notes/docs/{}", alpha.doc("notes")),
            Some(&bravo.other.access),
        )
        .await;
    tally.expect_any(
        "bravo user: alpha's note id under bravo",
        &r,
        &[(404, "document_not_found"), (403, "rule_denied")],
    );
    // alpha's admin-side user ids through bravo's admin routes.
    let admin = app.admin().await;
    for s in [&alpha.owner, &alpha.other] {
        for (m, suffix) in [
            (Method::GET, ""),
            (Method::POST, "/disable"),
            (Method::POST, "/revoke-sessions"),
            (Method::DELETE, ""),
        ] {
            let path = format!("/admin/v1/tenants/bravo/users/{}{suffix}", s.user_id);
            let r = app.send(app.req(m.clone(), &path, Some(&admin))).await;
            tally.expect(&format!("admin: {m} {path}"), &r, 404, "not_found");
        }
    }

    // 4. Cursors of alpha's lists are refused by bravo's.
    for coll in ["public", "notes"] {
        let page = app
            .get(
                &format!("/v1/t/alpha/collections/{coll}/docs?limit=1"),
                Some(&alpha.key),
            )
            .await
            .ok(200);
        // A page of one needs a second document to hand out a cursor: alpha writes one
        // (its own write, made on purpose).
        let cursor = match page["next_cursor"].as_str() {
            Some(c) => c.to_string(),
            None => {
                crate::documents::put(
                    &app,
                    &alpha.key,
                    &format!("/v1/t/alpha/collections/{coll}/docs/extra"),
                    json!({"owner": alpha.owner.user_id, "tenant": "alpha"}),
                )
                .await
                .ok(201);
                app.get(
                    &format!("/v1/t/alpha/collections/{coll}/docs?limit=1"),
                    Some(&alpha.key),
                )
                .await
                .ok(200)["next_cursor"]
                    .as_str()
                    .expect("cursor")
                    .to_string()
            }
        };
        let r = app
            .get(
                &format!("/v1/t/bravo/collections/{coll}/docs?limit=1&cursor={cursor}"),
                Some(&bravo.key),
            )
            .await;
        tally.expect(
            &format!("alpha cursor on bravo {coll}"),
            &r,
            400,
            "invalid_cursor",
        );
    }
    assert_eq!(
        state(&mut app, &alpha).await.change_seq,
        alpha_before.change_seq + 2,
        "only alpha's two extra documents were written"
    );
    let alpha_before = state(&mut app, &alpha).await;

    // 5. Realtime: alpha's credentials cannot open or authenticate a bravo socket; a
    //    bravo socket's `since` replays bravo's log only, never alpha's.
    for (who, token) in &creds {
        let url = format!(
            "ws://{}/v1/t/bravo/realtime?access_token={token}",
            app.base.trim_start_matches("http://")
        );
        tally.tried();
        match tokio_tungstenite::connect_async(&url).await {
            Err(e) if e.to_string().contains("401") => {}
            other => tally.mismatch(format!(
                "{who}: realtime upgrade at bravo: expected 401, got {:?}",
                other.map(|_| "connected")
            )),
        }
    }
    let mut ws = Client::connect(&app, "bravo", None).await;
    for (who, token) in &creds {
        ws.send(json!({"type": "auth", "token": token})).await;
        let m = ws.recv().await;
        tally.tried();
        if m["error"]["code"] != "invalid_token" {
            tally.mismatch(format!("{who}: auth on a bravo socket: {m}"));
        }
    }
    // Still anonymous: the owner-only collection is refused, the public one replays
    // bravo's history only.
    ws.send(json!({"type": "subscribe", "id": "n", "collection": "notes"}))
        .await;
    let m = ws.recv().await;
    tally.tried();
    if m["error"]["code"] != "rule_denied" {
        tally.mismatch(format!("anonymous subscribe to bravo notes: {m}"));
    }
    ws.send(json!({"type": "subscribe", "id": "p", "collection": "public", "since": 0}))
        .await;
    tally.tried();
    // `subscribed` comes first, then the replayed changes.
    let mut replayed = Vec::new();
    while let Some(m) = ws.try_recv(std::time::Duration::from_millis(500)).await {
        match m["type"].as_str() {
            Some("change") => replayed.push(m),
            Some("subscribed") => {}
            _ => {
                tally.mismatch(format!("since=0 on bravo public: {m}"));
                break;
            }
        }
    }
    let tenants: Vec<&Value> = replayed
        .iter()
        .map(|c| &c["doc"]["data"]["tenant"])
        .collect();
    // bravo-pub was created and updated once: exactly those two, both bravo's.
    if tenants.len() != 2 || tenants.iter().any(|t| **t != "bravo") {
        tally.mismatch(format!("since=0 on bravo replayed {tenants:?}"));
    }
    // A `since` from alpha's (longer) log is ahead of bravo's: refused, not a gap.
    let alpha_seq = alpha_before.change_seq;
    ws.send(
        json!({"type": "subscribe", "id": "q", "collection": "public", "since": alpha_seq + 1000}),
    )
    .await;
    let m = ws.recv().await;
    tally.tried();
    if m["error"]["code"] != "invalid_since" {
        tally.mismatch(format!("since ahead of bravo's log: {m}"));
    }
    // A live alpha write reaches no bravo subscriber.
    crate::documents::put(
        &app,
        &alpha.key,
        "/v1/t/alpha/collections/public/docs/live",
        json!({"tenant": "alpha"}),
    )
    .await
    .ok(201);
    if let Some(m) = ws.try_recv(std::time::Duration::from_millis(500)).await {
        tally.mismatch(format!("bravo socket saw {m} after an alpha write"));
    }
    let alpha_before = state(&mut app, &alpha).await;

    // 6. ctx.db inside alpha's function: bravo's ids and odd collection names find
    //    nothing of bravo's, and ctx.env holds alpha's secret only.
    for (coll, id) in bravo
        .docs
        .iter()
        .map(|(c, i)| (c.as_str(), i.as_str()))
        .chain([
            ("..%2Fbravo", "x"),
            ("bravo%2Fnotes", "bravo-note"),
            ("notes", "..%2F..%2Fbravo%2Fnotes%2Fbravo-note"),
            ("public%27%20OR%201%3D1", "x"),
        ])
    {
        let r = app
            .get(&format!("/v1/t/alpha/fn/peek?c={coll}&id={id}"), None)
            .await;
        tally.saw(&format!("alpha peek {coll}/{id}"), &r);
        let v: Value = serde_json::from_str(&r.text).unwrap_or(Value::Null);
        let leaked = r.text.contains("bravo-secret-value")
            || v["get"]["tenant"] == "bravo"
            || v["list"]
                .as_array()
                .is_some_and(|l| l.iter().any(|t| t == "bravo"));
        if r.status != 200 || leaked || v["env"] != json!(["API_KEY"]) {
            tally.mismatch(format!("alpha peek {coll}/{id}: {} {}", r.status, r.text));
        }
    }

    tally.finish();
    assert_unchanged(&mut app, &bravo, &bravo_before, "cross-tenant attacks").await;
    assert_unchanged(&mut app, &alpha, &alpha_before, "cross-tenant attacks").await;
    // bravo's users still work.
    app.get("/v1/t/bravo/auth/me", Some(&bravo.owner.access))
        .await
        .ok(200);
}
