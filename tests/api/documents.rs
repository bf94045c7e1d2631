//! The document store: CRUD, conditional writes, patches, batches, concurrency, the
//! change log, and bad input that must store nothing.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::support::*;

backend_tests!(
    crud_with_a_service_key,
    conditional_writes,
    if_match_compares_strongly,
    patches,
    increment_overflow_is_refused,
    bad_documents_store_nothing,
    batch_is_all_or_nothing,
    concurrent_increments_are_exact,
    conflicting_if_match_writes_one_wins,
    change_log_is_gap_free_under_concurrency,
    change_log_retention,
    extreme_numbers_round_trip,
);

/// A tenant with a service key; returns the key.
pub async fn tenant_with_key(app: &mut TestApp, slug: &str) -> String {
    app.create_tenant(slug).await;
    app.create_key(slug, "test").await["key"]
        .as_str()
        .unwrap()
        .to_string()
}

pub fn docs(tenant: &str, collection: &str) -> String {
    format!("/v1/t/{tenant}/collections/{collection}/docs")
}

pub async fn put(app: &TestApp, key: &str, path: &str, body: Value) -> Reply {
    app.send(app.req(Method::PUT, path, Some(key)).json(&body))
        .await
}

async fn patch_with(app: &TestApp, key: &str, path: &str, ct: &str, body: Value) -> Reply {
    app.send(
        app.req(Method::PATCH, path, Some(key))
            .header("content-type", ct)
            .body(body.to_string()),
    )
    .await
}

async fn crud_with_a_service_key(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_key(&mut app, "shop").await;
    let base = docs("shop", "items");

    let r = app
        .post(&base, Some(&key), json!({"name": "lamp", "price": 12}))
        .await;
    let created = r.ok(201);
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
    assert_eq!(created["collection"], "items");
    assert_eq!(created["version"], 1);
    assert_eq!(created["data"], json!({"name": "lamp", "price": 12}));
    assert_eq!(r.headers["etag"], "\"1\"");
    assert_eq!(
        r.headers["location"].to_str().unwrap(),
        format!("{base}/{id}")
    );

    let r = app.get(&format!("{base}/{id}"), Some(&key)).await;
    assert_eq!(r.ok(200)["data"]["name"], "lamp");
    assert_eq!(r.headers["etag"], "\"1\"");

    // PUT at a client id: created, then replaced.
    let r = put(
        &app,
        &key,
        &format!("{base}/lamp-2"),
        json!({"name": "lamp 2"}),
    )
    .await;
    assert_eq!(r.ok(201)["version"], 1);
    let r = put(
        &app,
        &key,
        &format!("{base}/lamp-2"),
        json!({"name": "lamp two"}),
    )
    .await;
    let v = r.ok(200);
    assert_eq!(v["version"], 2);
    assert_eq!(v["data"], json!({"name": "lamp two"}));
    assert_eq!(r.headers["etag"], "\"2\"");
    assert!(v["updated_at"].as_str().unwrap() >= v["created_at"].as_str().unwrap());

    app.delete(&format!("{base}/lamp-2"), Some(&key))
        .await
        .ok(204);
    app.get(&format!("{base}/lamp-2"), Some(&key))
        .await
        .problem(404, "document_not_found");
    app.delete(&format!("{base}/lamp-2"), Some(&key))
        .await
        .problem(404, "document_not_found");

    // Without rules, users and anonymous callers get nothing.
    let user = app.signup("shop", "u@shop.test").await;
    app.get(&format!("{base}/{id}"), Some(&user.access))
        .await
        .problem(403, "rule_denied");
    app.get(&format!("{base}/{id}"), None)
        .await
        .problem(403, "rule_denied");
    app.post(&base, Some(&user.access), json!({"x": 1}))
        .await
        .problem(403, "rule_denied");
    app.get(&base, None).await.problem(403, "rule_denied");
}

async fn conditional_writes(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_key(&mut app, "shop").await;
    let path = format!("{}/a1", docs("shop", "items"));
    put(&app, &key, &path, json!({"n": 1})).await.ok(201);

    let cond = |m: Method, h: &str, v: &str| app.req(m, &path, Some(&key)).header(h, v);
    let r = app
        .send(cond(Method::PUT, "if-match", "\"7\"").json(&json!({"n": 2})))
        .await;
    r.problem(412, "precondition_failed");
    let r = app
        .send(cond(Method::PUT, "if-none-match", "*").json(&json!({"n": 2})))
        .await;
    r.problem(412, "precondition_failed");
    let r = app.send(cond(Method::DELETE, "if-match", "\"2\"")).await;
    r.problem(412, "precondition_failed");
    let r = app
        .send(cond(Method::PUT, "if-match", "nonsense").json(&json!({"n": 2})))
        .await;
    r.problem(400, "invalid_precondition");
    // Nothing changed.
    assert_eq!(
        app.get(&path, Some(&key)).await.ok(200),
        app.get(&path, Some(&key)).await.ok(200)
    );
    assert_eq!(app.get(&path, Some(&key)).await.ok(200)["version"], 1);

    let r = app
        .send(cond(Method::PUT, "if-match", "\"1\"").json(&json!({"n": 2})))
        .await;
    assert_eq!(r.ok(200)["version"], 2);
    let r = app
        .send(cond(Method::PUT, "if-match", "2").json(&json!({"n": 3})))
        .await;
    assert_eq!(r.ok(200)["version"], 3);
    let r = app
        .send(cond(Method::PUT, "if-match", "*").json(&json!({"n": 4})))
        .await;
    assert_eq!(r.ok(200)["version"], 4);

    // If-Match on a missing document; If-None-Match on a new one creates it.
    let missing = format!("{}/nope", docs("shop", "items"));
    let r = app
        .send(
            app.req(Method::PUT, &missing, Some(&key))
                .header("if-match", "*")
                .json(&json!({})),
        )
        .await;
    r.problem(412, "precondition_failed");
    app.get(&missing, Some(&key))
        .await
        .problem(404, "document_not_found");
    let r = app
        .send(
            app.req(Method::PUT, &missing, Some(&key))
                .header("if-none-match", "*")
                .json(&json!({})),
        )
        .await;
    r.ok(201);

    let r = app.send(cond(Method::DELETE, "if-match", "\"4\"")).await;
    r.ok(204);
}

/// If-Match uses strong comparison (RFC 9110 §13.1.1): a weak tag matches nothing, not
/// even the version it names; the write is refused like a stale version.
async fn if_match_compares_strongly(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_key(&mut app, "shop").await;
    let path = format!("{}/w1", docs("shop", "items"));
    put(&app, &key, &path, json!({"n": 1})).await.ok(201);
    let weak = |m: Method| app.req(m, &path, Some(&key)).header("if-match", "W/\"1\"");

    let r = app.send(weak(Method::PUT).json(&json!({"n": 2}))).await;
    let p = r.problem(412, "precondition_failed");
    assert!(p["detail"].as_str().unwrap().contains("strong"), "{p}");
    let r = app
        .send(
            weak(Method::PATCH)
                .header("content-type", "application/merge-patch+json")
                .body(json!({"n": 3}).to_string()),
        )
        .await;
    r.problem(412, "precondition_failed");
    app.send(weak(Method::DELETE))
        .await
        .problem(412, "precondition_failed");
    let r = app
        .send(
            app.req(Method::PUT, &path, Some(&key))
                .header("if-match", "W/\"one\"")
                .json(&json!({"n": 4})),
        )
        .await;
    r.problem(400, "invalid_precondition");

    let doc = app.get(&path, Some(&key)).await.ok(200);
    assert_eq!(
        (doc["version"].as_i64(), doc["data"].clone()),
        (Some(1), json!({"n": 1}))
    );
    // The strong form of the same tag matches.
    let r = app
        .send(
            app.req(Method::PUT, &path, Some(&key))
                .header("if-match", "\"1\"")
                .json(&json!({"n": 5})),
        )
        .await;
    assert_eq!(r.ok(200)["version"], 2);
}

async fn patches(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_key(&mut app, "shop").await;
    let path = format!("{}/p1", docs("shop", "items"));
    put(
        &app,
        &key,
        &path,
        json!({"a": 1, "b": {"c": 2}, "tags": ["x"]}),
    )
    .await
    .ok(201);

    let r = patch_with(
        &app,
        &key,
        &path,
        "application/merge-patch+json",
        json!({"a": null, "b": {"d": 3}}),
    )
    .await;
    let v = r.ok(200);
    assert_eq!(v["data"], json!({"b": {"c": 2, "d": 3}, "tags": ["x"]}));
    assert_eq!(v["version"], 2);

    let r = patch_with(
        &app,
        &key,
        &path,
        "application/json-patch+json",
        json!([
            {"op": "add", "path": "/tags/-", "value": "y"},
            {"op": "increment", "path": "/counts/likes", "value": 5},
            {"op": "increment", "path": "/b/c", "value": -1},
            {"op": "test", "path": "/b/d", "value": 3}
        ]),
    )
    .await;
    let v = r.ok(200);
    assert_eq!(
        v["data"],
        json!({"b": {"c": 1, "d": 3}, "tags": ["x", "y"], "counts": {"likes": 5}})
    );
    assert_eq!(v["version"], 3);

    // A failing test op, a bad op, a bad target: 4xx and the document is untouched.
    let r = patch_with(
        &app,
        &key,
        &path,
        "application/json-patch+json",
        json!([
            {"op": "replace", "path": "/b/c", "value": 100},
            {"op": "test", "path": "/b/d", "value": 4}
        ]),
    )
    .await;
    r.problem(409, "patch_test_failed");
    patch_with(
        &app,
        &key,
        &path,
        "application/json-patch+json",
        json!([{"op": "jump", "path": "/a"}]),
    )
    .await
    .problem(400, "invalid_patch");
    patch_with(
        &app,
        &key,
        &path,
        "application/json-patch+json",
        json!({"op": "add"}),
    )
    .await
    .problem(400, "invalid_patch");
    patch_with(
        &app,
        &key,
        &path,
        "application/json-patch+json",
        json!([{"op": "increment", "path": "/tags", "value": 1}]),
    )
    .await
    .problem(409, "patch_failed");
    patch_with(
        &app,
        &key,
        &path,
        "application/json-patch+json",
        json!([{"op": "replace", "path": "", "value": [1]}]),
    )
    .await
    .problem(400, "invalid_document");
    patch_with(&app, &key, &path, "text/plain", json!({"a": 1}))
        .await
        .problem(415, "unsupported_media_type");
    let now = app.get(&path, Some(&key)).await.ok(200);
    assert_eq!(now["version"], 3);
    assert_eq!(now["data"]["b"]["c"], 1);

    let missing = format!("{}/none", docs("shop", "items"));
    patch_with(
        &app,
        &key,
        &missing,
        "application/merge-patch+json",
        json!({"a": 1}),
    )
    .await
    .problem(404, "document_not_found");
}

/// `increment` adds integers exactly: a sum outside the 64-bit signed range is refused
/// (400 `increment_overflow`), never stored as a rounded float, and nothing is written.
async fn increment_overflow_is_refused(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_key(&mut app, "shop").await;
    let path = format!("{}/big", docs("shop", "counters"));
    let data = json!({"max": i64::MAX, "min": i64::MIN, "one": 1});
    put(&app, &key, &path, data.clone()).await.ok(201);
    let increment = |ops: Value| patch_with(&app, &key, &path, "application/json-patch+json", ops);

    for (field, by) in [
        ("max", json!(1)),
        ("one", json!(i64::MAX)),
        ("min", json!(-1)),
    ] {
        let p = increment(json!([{"op": "increment", "path": format!("/{field}"), "value": by}]))
            .await
            .problem(400, "increment_overflow");
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .contains("64-bit integer range"),
            "{p}"
        );
    }
    // All or nothing: an earlier op of the same patch is not applied either.
    increment(json!([
        {"op": "increment", "path": "/one", "value": 1},
        {"op": "increment", "path": "/max", "value": 1}
    ]))
    .await
    .problem(400, "increment_overflow");
    // In a batch the failing write is named.
    let p = app
        .post(
            "/v1/t/shop/batch",
            Some(&key),
            json!({"writes": [{"op": "patch", "collection": "counters", "id": "big",
                               "patch": [{"op": "increment", "path": "/max", "value": 1}]}]}),
        )
        .await
        .problem(400, "increment_overflow");
    assert_eq!(p["index"], 0);

    let doc = app.get(&path, Some(&key)).await.ok(200);
    assert_eq!(doc["version"], 1, "nothing was written");
    assert_eq!(doc["data"], data, "exact integers, unchanged");
    // Up to the limit is fine, and stays an exact integer.
    let r = increment(json!([
        {"op": "increment", "path": "/max", "value": -1},
        {"op": "increment", "path": "/one", "value": i64::MAX - 1}
    ]))
    .await;
    let doc = r.ok(200);
    assert_eq!(doc["data"]["max"], json!(i64::MAX - 1));
    assert_eq!(doc["data"]["one"], json!(i64::MAX));
}

async fn bad_documents_store_nothing(b: Backend) {
    let mut app = TestApp::start_with(b, |c| c.doc_max_bytes = 2000).await;
    let key = tenant_with_key(&mut app, "shop").await;

    for coll in ["Items", "1items", "it-ems", "", "a b", &"a".repeat(64)] {
        let path = format!("/v1/t/shop/collections/{}/docs", urlencode(coll));
        let r = app.post(&path, Some(&key), json!({"a": 1})).await;
        assert!(matches!(r.status.as_u16(), 400 | 404), "{coll}: {}", r.text);
        if r.status == 400 {
            r.problem(400, "validation_failed");
        }
    }
    for id in ["a b", "a.b", "ü", &"x".repeat(129), "a%2Fb"] {
        let path = format!("{}/{}", docs("shop", "items"), urlencode(id));
        let r = put(&app, &key, &path, json!({"a": 1})).await;
        assert!(matches!(r.status.as_u16(), 400 | 404), "{id}: {}", r.text);
    }
    for data in [
        json!([1, 2]),
        json!("text"),
        json!(5),
        json!(null),
        json!(true),
        json!({"nul": "a\u{0000}b"}),
        json!({"k\u{0000}": 1}),
    ] {
        app.post(&docs("shop", "items"), Some(&key), data)
            .await
            .problem(400, "invalid_document");
    }
    let mut deep = json!(1);
    for _ in 0..33 {
        deep = json!({ "d": deep });
    }
    app.post(&docs("shop", "items"), Some(&key), deep)
        .await
        .problem(400, "invalid_document");
    let big = json!({"s": "x".repeat(3000)});
    app.post(&docs("shop", "items"), Some(&key), big)
        .await
        .problem(413, "document_too_large");
    let r = app
        .send(
            app.req(Method::POST, &docs("shop", "items"), Some(&key))
                .header("content-type", "application/json")
                .body("{\"a\": [1, 2,}"),
        )
        .await;
    let p = r.problem(400, "malformed_json");
    assert!(p["detail"].as_str().unwrap().contains("line 1 column"));

    let list = app.get(&docs("shop", "items"), Some(&key)).await.ok(200);
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        0,
        "nothing was stored: {list}"
    );
    let (seq, _) = change_seq(&app, "shop").await;
    assert_eq!(seq, 0, "no change was logged");
}

pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' || b == b'~' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub async fn change_seq(app: &TestApp, tenant: &str) -> (i64, i64) {
    let state = &app.running.as_ref().unwrap().state;
    let scope = scope_of(app, tenant).await;
    state.store.change_seq(&scope).await.unwrap()
}

/// An admin-caller scope on a tenant, for reading the change log in-process.
pub async fn scope_of(app: &TestApp, tenant: &str) -> plinth::tenancy::Scope {
    let state = &app.running.as_ref().unwrap().state;
    state.admin.cli_scope(tenant).await.unwrap()
}

async fn batch_is_all_or_nothing(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_key(&mut app, "shop").await;
    put(
        &app,
        &key,
        &format!("{}/keep", docs("shop", "items")),
        json!({"n": 1}),
    )
    .await
    .ok(201);
    put(
        &app,
        &key,
        &format!("{}/gone", docs("shop", "items")),
        json!({"n": 1}),
    )
    .await
    .ok(201);

    let r = app
        .post("/v1/t/shop/batch", Some(&key), json!({"writes": [
            {"op": "create", "collection": "items", "data": {"n": 10}},
            {"op": "put", "collection": "items", "id": "b1", "data": {"n": 20}},
            {"op": "patch", "collection": "items", "id": "keep", "patch": [{"op": "increment", "path": "/n", "value": 1}], "if_match": 1},
            {"op": "patch", "collection": "items", "id": "b1", "patch": {"m": 1}},
            {"op": "delete", "collection": "items", "id": "gone"},
            {"op": "create", "collection": "other", "id": "o1", "data": {}}
        ]}))
        .await
        .ok(200);
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), 6);
    assert_eq!(results[1]["op"], "create");
    assert_eq!(results[3]["op"], "update");
    assert_eq!(results[3]["doc"]["data"], json!({"n": 20, "m": 1}));
    assert_eq!(results[4]["op"], "delete");
    assert!(results[4]["doc"].is_null());
    let seqs: Vec<i64> = results.iter().map(|r| r["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert_eq!(
        app.get(&format!("{}/keep", docs("shop", "items")), Some(&key))
            .await
            .ok(200)["data"]["n"],
        2
    );

    let before = app.get(&docs("shop", "items"), Some(&key)).await.ok(200);
    let (seq_before, _) = change_seq(&app, "shop").await;
    // Each of these batches has exactly one bad write; none of their writes may land.
    let bad_batches = [
        (
            json!({"op": "delete", "collection": "items", "id": "missing"}),
            404,
            "document_not_found",
        ),
        (
            json!({"op": "patch", "collection": "items", "id": "keep", "patch": {"x": 1}, "if_match": 99}),
            412,
            "precondition_failed",
        ),
        (
            json!({"op": "create", "collection": "items", "data": [1]}),
            400,
            "invalid_document",
        ),
        (
            json!({"op": "create", "collection": "Bad", "data": {}}),
            400,
            "validation_failed",
        ),
        (
            json!({"op": "frobnicate", "collection": "items", "id": "x"}),
            400,
            "validation_failed",
        ),
        (
            json!({"op": "put", "collection": "items", "data": {}}),
            400,
            "validation_failed",
        ),
        (
            json!({"op": "patch", "collection": "items", "id": "keep", "patch": [{"op": "test", "path": "/n", "value": 0}]}),
            409,
            "patch_test_failed",
        ),
        (
            json!({"op": "create", "collection": "items", "id": "keep", "data": {}}),
            412,
            "precondition_failed",
        ),
    ];
    for (bad, status, code) in bad_batches {
        let r = app
            .post("/v1/t/shop/batch", Some(&key), json!({"writes": [
                {"op": "put", "collection": "items", "id": "new1", "data": {"n": 1}},
                {"op": "patch", "collection": "items", "id": "keep", "patch": [{"op": "increment", "path": "/n", "value": 100}]},
                bad,
            ]}))
            .await;
        let p = r.problem(status, code);
        assert_eq!(p["index"], 2, "{p}");
        assert!(p["detail"].as_str().unwrap().starts_with("write 2:"), "{p}");
    }
    assert_eq!(
        app.get(&docs("shop", "items"), Some(&key)).await.ok(200),
        before
    );
    assert_eq!(change_seq(&app, "shop").await.0, seq_before);

    let too_many: Vec<Value> = (0..501)
        .map(|i| json!({"op": "put", "collection": "items", "id": format!("x{i}"), "data": {}}))
        .collect();
    app.post("/v1/t/shop/batch", Some(&key), json!({"writes": too_many}))
        .await
        .problem(400, "validation_failed");
    app.post("/v1/t/shop/batch", Some(&key), json!({"writes": []}))
        .await
        .problem(400, "validation_failed");
    let max: Vec<Value> = (0..500)
        .map(
            |i| json!({"op": "put", "collection": "bulk", "id": format!("x{i}"), "data": {"i": i}}),
        )
        .collect();
    let r = app
        .post("/v1/t/shop/batch", Some(&key), json!({"writes": max}))
        .await
        .ok(200);
    assert_eq!(r["results"].as_array().unwrap().len(), 500);
}

async fn concurrent_increments_are_exact(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_key(&mut app, "shop").await;
    let path = format!("{}/counter", docs("shop", "counters"));
    put(&app, &key, &path, json!({"n": 0})).await.ok(201);
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let req = app
            .req(Method::PATCH, &path, Some(&key))
            .header("content-type", "application/json-patch+json")
            .body(json!([{"op": "increment", "path": "/n", "value": 1}]).to_string());
        tasks.push(tokio::spawn(async move {
            req.send().await.map(|r| r.status().as_u16())
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 200);
    }
    let v = app.get(&path, Some(&key)).await.ok(200);
    assert_eq!(v["data"]["n"], 200);
    assert_eq!(v["version"], 201);
}

async fn conflicting_if_match_writes_one_wins(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_key(&mut app, "shop").await;
    let path = format!("{}/c1", docs("shop", "items"));
    put(&app, &key, &path, json!({"owner": "nobody"}))
        .await
        .ok(201);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let req = app
            .req(Method::PUT, &path, Some(&key))
            .header("if-match", "\"1\"")
            .json(&json!({"owner": format!("w{i}")}));
        tasks.push(tokio::spawn(async move {
            req.send().await.map(|r| r.status().as_u16())
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap().unwrap());
    }
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 412).count(), 19, "{codes:?}");
    assert_eq!(app.get(&path, Some(&key)).await.ok(200)["version"], 2);
}

async fn change_log_is_gap_free_under_concurrency(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_key(&mut app, "shop").await;
    let mut tasks = Vec::new();
    for w in 0..8 {
        let http = app.http.clone();
        let base = app.url(&docs("shop", "log"));
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..15 {
                let r = http
                    .put(format!("{base}/d{w}-{}", i % 5))
                    .bearer_auth(&key)
                    .json(&json!({"w": w, "i": i}))
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
            }
            let r = http
                .delete(format!("{base}/d{w}-0"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 204);
        }));
    }
    // A reader following the log while the writers run must never see a hole.
    let state = app.running.as_ref().unwrap().state.clone();
    let scope = scope_of(&app, "shop").await;
    let mut seen: Vec<i64> = Vec::new();
    let mut last = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < 8 * 16 {
        let batch = state
            .store
            .changes_since(&scope, last, 1000, None)
            .await
            .unwrap()
            .0;
        for c in &batch {
            assert_eq!(c.seq, last + 1, "hole or reorder after seq {last}");
            last = c.seq;
            seen.push(c.seq);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "reader stalled at {last}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let all = state
        .store
        .changes_since(&scope, 0, 10_000, None)
        .await
        .unwrap()
        .0;
    assert_eq!(all.len(), 8 * 16);
    // Replaying the log gives exactly the stored documents.
    let mut replay = std::collections::BTreeMap::new();
    for c in &all {
        match c.op {
            plinth::store::ChangeOp::Delete => {
                assert!(c.before.is_some() && c.data.is_none());
                replay.remove(&c.doc_id);
            }
            _ => {
                replay.insert(c.doc_id.clone(), c.data.clone().unwrap());
            }
        }
    }
    let list = app
        .get(&format!("{}?limit=1000", docs("shop", "log")), Some(&key))
        .await
        .ok(200);
    let stored: std::collections::BTreeMap<String, Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["id"].as_str().unwrap().to_string(), d["data"].clone()))
        .collect();
    assert_eq!(stored, replay);
    let ids: HashSet<&str> = all.iter().map(|c| c.doc_id.as_str()).collect();
    assert_eq!(ids.len(), 40);
}

async fn change_log_retention(b: Backend) {
    let mut app = TestApp::start_with(b, |c| c.changes_retention = Duration::ZERO).await;
    let key = tenant_with_key(&mut app, "shop").await;
    for i in 0..5 {
        put(
            &app,
            &key,
            &format!("{}/r{i}", docs("shop", "items")),
            json!({"i": i}),
        )
        .await
        .ok(201);
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    let state = app.running.as_ref().unwrap().state.clone();
    let pruned = plinth::app::prune_changes_once(&state).await.unwrap();
    assert_eq!(pruned, 5);
    let (seq, pruned_through) = change_seq(&app, "shop").await;
    assert_eq!((seq, pruned_through), (5, 5));
    put(
        &app,
        &key,
        &format!("{}/r9", docs("shop", "items")),
        json!({}),
    )
    .await
    .ok(201);
    let scope = scope_of(&app, "shop").await;
    let rest = state
        .store
        .changes_since(&scope, 0, 100, None)
        .await
        .unwrap()
        .0;
    assert_eq!(
        rest.iter().map(|c| c.seq).collect::<Vec<_>>(),
        vec![6],
        "seq keeps counting after pruning"
    );
}

/// Numbers at the edges of f64 come back as written, on both stores. PostgreSQL's jsonb
/// returns them as exact decimals (f64::MAX as 309 digits), which serde_json read as out of
/// range: the document then answered 500 to every read, write and delete (schemathesis
/// found it).
async fn extreme_numbers_round_trip(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_key(&mut app, "nums").await;
    let base = docs("nums", "edges");
    let doc = format!("{base}/edge");
    let data = json!({"xs": [
        f64::MAX, f64::MIN, f64::MIN_POSITIVE, 5e-324, 1e308, 1.5e300, -9.999999999999999e307,
        123456789012345678901234567890.0
    ]});
    assert_eq!(
        put(&app, &key, &doc, data.clone()).await.ok(201)["data"],
        data
    );
    assert_eq!(app.get(&doc, Some(&key)).await.ok(200)["data"], data);
    assert_eq!(
        app.get(&base, Some(&key)).await.ok(200)["items"][0]["data"],
        data
    );
    let r = patch_with(
        &app,
        &key,
        &doc,
        "application/merge-patch+json",
        json!({"y": f64::MAX}),
    )
    .await;
    assert_eq!(r.ok(200)["data"]["y"], json!(f64::MAX));
    app.delete(&doc, Some(&key)).await.ok(204);
}

/// A tmpfs of `mib` MiB mounted on a temporary directory (root only); unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mib: u32) -> Result<SmallDisk, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(SmallDisk { dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// SQLite on a full disk: writes are refused with a clean 507 problem+json and leave
/// nothing half-written, reads keep working, and writes work again once there is room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_full_disk_refuses_writes_cleanly() {
    let disk = match SmallDisk::mount(24) {
        Ok(d) => d,
        Err(why) => {
            // Mounting needs root (CAP_SYS_ADMIN); CI runs as root, where it works.
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "CI=true and a tmpfs cannot be mounted: {why}"
            );
            eprintln!("skipped: cannot mount a small tmpfs ({why})");
            return;
        }
    };
    let data = disk.dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    // Room to give back later.
    let filler = disk.dir.path().join("filler");
    std::fs::write(&filler, vec![0u8; 6 << 20]).unwrap();
    let storage = Storage {
        location: plinth::store::Location::SqliteDir(data),
        _dir: None,
    };
    let mut app = TestApp::start_on(Backend::Sqlite, storage, |_| {}).await;
    let key = tenant_with_key(&mut app, "shop").await;
    let pad = "x".repeat(200_000);
    let mut written = Vec::new();
    let mut refused = None;
    for i in 0..200 {
        let path = format!("{}/d{i}", docs("shop", "items"));
        let r = put(&app, &key, &path, json!({"i": i, "pad": pad})).await;
        if r.status.is_success() {
            written.push(i);
        } else {
            refused = Some((i, r));
            break;
        }
    }
    let (at, r) = refused.expect("the disk filled up");
    r.problem(507, "storage_full");
    println!("disk full after {} documents", written.len());
    // Nothing of the refused write, and reads keep working.
    app.get(&format!("{}/d{at}", docs("shop", "items")), Some(&key))
        .await
        .problem(404, "document_not_found");
    for i in [0, *written.last().unwrap()] {
        app.get(&format!("{}/d{i}", docs("shop", "items")), Some(&key))
            .await
            .ok(200);
    }
    let page = app
        .get(&format!("{}?limit=5", docs("shop", "items")), Some(&key))
        .await
        .ok(200);
    assert_eq!(page["items"].as_array().unwrap().len(), 5);
    // Room again: writes work.
    std::fs::remove_file(&filler).unwrap();
    put(
        &app,
        &key,
        &format!("{}/d{at}", docs("shop", "items")),
        json!({"i": at, "pad": pad}),
    )
    .await
    .ok(201);
    app.stop().await;
    drop(disk);
}
