//! Read-only admin views: the server's facts and a tenant's collections with counts.

use serde_json::json;

use crate::backend_tests;
use crate::support::*;

backend_tests!(
    server_info_names_version_and_backend,
    collections_are_counted_per_tenant
);

async fn server_info_names_version_and_backend(b: Backend) {
    let mut app = TestApp::start(b).await;
    app.get("/admin/v1/server", None)
        .await
        .problem(401, "auth_required");
    app.get("/admin/v1/server", Some("not-a-token"))
        .await
        .problem(401, "invalid_token");
    let admin = app.admin().await;
    let r = app.get("/admin/v1/server", Some(&admin)).await.ok(200);
    assert_eq!(r["version"], env!("CARGO_PKG_VERSION"));
    let backend = match b {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(r["backend"], backend);
    assert!(r["uptime_seconds"].as_u64().is_some(), "{r}");

    let spec = app.get("/openapi.json", None).await.ok(200);
    for path in ["/admin/v1/server", "/admin/v1/tenants/{tenant}/collections"] {
        assert!(
            spec["paths"][path]["get"].is_object(),
            "openapi lacks {path}"
        );
    }
    assert!(
        spec["paths"]
            .as_object()
            .expect("paths")
            .keys()
            .all(|p| !p.starts_with("/_")),
        "the console is no part of the API"
    );
}

async fn collections_are_counted_per_tenant(b: Backend) {
    let mut app = TestApp::start(b).await;
    let admin = app.admin().await;
    app.create_tenant("alpha").await;
    app.create_tenant("beta").await;
    let empty = app
        .get("/admin/v1/tenants/alpha/collections", Some(&admin))
        .await
        .ok(200);
    assert_eq!(empty, json!({"items": []}));

    let alpha = app.create_key("alpha", "t").await["key"]
        .as_str()
        .expect("key")
        .to_string();
    let beta = app.create_key("beta", "t").await["key"]
        .as_str()
        .expect("key")
        .to_string();
    let mut writes = Vec::new();
    for i in 0..5 {
        writes.push(json!({"op": "create", "collection": "posts", "data": {"i": i}}));
    }
    writes.push(json!({"op": "put", "collection": "authors", "id": "ann", "data": {}}));
    writes.push(json!({"op": "put", "collection": "authors", "id": "bob", "data": {}}));
    app.post("/v1/t/alpha/batch", Some(&alpha), json!({"writes": writes}))
        .await
        .ok(200);
    app.post(
        "/v1/t/beta/collections/other/docs",
        Some(&beta),
        json!({"x": 1}),
    )
    .await
    .ok(201);
    app.delete("/v1/t/alpha/collections/authors/docs/bob", Some(&alpha))
        .await
        .ok(204);

    let r = app
        .get("/admin/v1/tenants/alpha/collections", Some(&admin))
        .await
        .ok(200);
    assert_eq!(
        r,
        json!({"items": [{"name": "authors", "count": 1}, {"name": "posts", "count": 5}]}),
        "only alpha's collections, by name, deleted documents not counted"
    );

    app.get("/admin/v1/tenants/nobody/collections", Some(&admin))
        .await
        .problem(404, "tenant_not_found");
    app.get("/admin/v1/tenants/alpha/collections", None)
        .await
        .problem(401, "auth_required");
    app.get("/admin/v1/tenants/alpha/collections", Some(&alpha))
        .await
        .problem(401, "invalid_token");
}
