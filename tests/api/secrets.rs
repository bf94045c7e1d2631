//! Tenant secrets: the admin API, validation, isolation, encryption at rest, and the
//! decrypted environment functions read (`SecretsService::env`).

use std::collections::BTreeMap;
use std::time::Duration;

use plinth::config::Secret;
use plinth::secrets::SecretsError;
use plinth::store::Location;
use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::documents::scope_of;
use crate::support::*;

backend_tests!(
    secret_lifecycle,
    secret_input_is_validated,
    secrets_are_limited_per_tenant,
    secrets_are_isolated_between_tenants,
    secrets_are_encrypted_at_rest,
    server_key_from_config_or_stored,
);

fn path(tenant: &str, name: &str) -> String {
    format!("/admin/v1/tenants/{tenant}/secrets/{name}")
}

async fn put_secret(
    app: &TestApp,
    token: Option<&str>,
    tenant: &str,
    name: &str,
    value: &str,
) -> Reply {
    app.send(
        app.req(Method::PUT, &path(tenant, name), token)
            .json(&json!({ "value": value })),
    )
    .await
}

async fn list(app: &TestApp, token: &str, tenant: &str) -> Value {
    app.get(&format!("/admin/v1/tenants/{tenant}/secrets"), Some(token))
        .await
        .ok(200)
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|s| s["name"].as_str().expect("name").to_string())
        .collect()
}

/// The decrypted environment, as a function would get it.
async fn env(app: &TestApp, tenant: &str) -> Result<BTreeMap<String, String>, SecretsError> {
    let state = &app.running.as_ref().unwrap().state;
    let scope = scope_of(app, tenant).await;
    state.secrets.env(&scope).await.map(|e| (*e).clone())
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn audit_actions(page: &Value) -> Vec<(String, String)> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("secret."))
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["target"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

async fn secret_lifecycle(b: Backend) {
    let mut app = TestApp::start(b).await;
    let admin = app.admin().await;
    app.create_tenant("acme").await;
    assert_eq!(
        names(&list(&app, &admin, "acme").await),
        Vec::<String>::new()
    );
    assert_eq!(env(&app, "acme").await.unwrap(), map(&[]));

    let first = "sk_live_first-VALUE-0001";
    let r = put_secret(&app, Some(&admin), "acme", "STRIPE_KEY", first).await;
    assert!(!r.text.contains(first), "{}", r.text);
    let created = r.ok(200);
    assert_eq!(created["name"], "STRIPE_KEY");
    assert!(created["updated_at"].is_string());
    assert!(created.get("value").is_none(), "{created}");
    put_secret(&app, Some(&admin), "acme", "_EMPTY", "")
        .await
        .ok(200);
    put_secret(
        &app,
        Some(&admin),
        "acme",
        "A1",
        "ünïcødé ✓ \"quoted\"\nline",
    )
    .await
    .ok(200);

    let l = list(&app, &admin, "acme").await;
    assert_eq!(names(&l), ["A1", "STRIPE_KEY", "_EMPTY"], "by name");
    assert!(!l.to_string().contains(first), "{l}");
    for item in l["items"].as_array().unwrap() {
        assert_eq!(
            item.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["name", "updated_at"]
        );
    }
    assert_eq!(
        env(&app, "acme").await.unwrap(),
        map(&[
            ("A1", "ünïcødé ✓ \"quoted\"\nline"),
            ("STRIPE_KEY", first),
            ("_EMPTY", "")
        ])
    );

    // Overwrite: a new value and update time, still one entry; this node's cached
    // environment shows the new value at once.
    let second = "sk_live_second-VALUE-0002";
    let r = put_secret(&app, Some(&admin), "acme", "STRIPE_KEY", second).await;
    assert!(
        !r.text.contains(second) && !r.text.contains(first),
        "{}",
        r.text
    );
    let updated = r.ok(200);
    assert!(updated["updated_at"].as_str() >= created["updated_at"].as_str());
    let l = list(&app, &admin, "acme").await;
    assert_eq!(names(&l).len(), 3);
    assert!(!l.to_string().contains(second));
    assert_eq!(env(&app, "acme").await.unwrap()["STRIPE_KEY"], second);

    let r = app.delete(&path("acme", "STRIPE_KEY"), Some(&admin)).await;
    assert!(r.text.is_empty(), "{}", r.text);
    r.ok(204);
    assert_eq!(names(&list(&app, &admin, "acme").await), ["A1", "_EMPTY"]);
    assert!(!env(&app, "acme").await.unwrap().contains_key("STRIPE_KEY"));
    app.delete(&path("acme", "STRIPE_KEY"), Some(&admin))
        .await
        .problem(404, "not_found");

    // Audited by name, never with the value.
    let audit = app
        .get("/admin/v1/audit?tenant=acme", Some(&admin))
        .await
        .ok(200);
    assert!(!audit.to_string().contains(first) && !audit.to_string().contains(second));
    let expected: Vec<(String, String)> = [
        ("secret.delete", "STRIPE_KEY"),
        ("secret.set", "STRIPE_KEY"),
        ("secret.set", "A1"),
        ("secret.set", "_EMPTY"),
        ("secret.set", "STRIPE_KEY"),
    ]
    .iter()
    .map(|(a, t)| (a.to_string(), t.to_string()))
    .collect();
    assert_eq!(audit_actions(&audit), expected);
    assert_eq!(audit["items"][0]["actor"], "admin:root@plinth.test");

    // The OpenAPI document lists the routes.
    let spec = app.get("/openapi.json", None).await.ok(200);
    assert!(spec["paths"]["/admin/v1/tenants/{tenant}/secrets/{name}"]["put"].is_object());
    assert!(spec["paths"]["/admin/v1/tenants/{tenant}/secrets"]["get"].is_object());
}

async fn secret_input_is_validated(b: Backend) {
    let mut app = TestApp::start(b).await;
    let admin = app.admin().await;
    app.create_tenant("acme").await;

    for name in [
        "api_key",
        "Api_Key",
        "1KEY",
        "API-KEY",
        "API.KEY",
        "A%20B",
        "%C3%84PI",
        &"A".repeat(65),
    ] {
        let p = put_secret(&app, Some(&admin), "acme", name, "v")
            .await
            .problem(400, "validation_failed");
        assert!(p["fields"]["name"].is_string(), "{name}: {p}");
        let p = app
            .delete(&path("acme", name), Some(&admin))
            .await
            .problem(400, "validation_failed");
        assert!(p["fields"]["name"].is_string(), "{name}: {p}");
    }
    put_secret(&app, Some(&admin), "acme", &"A".repeat(64), "v")
        .await
        .ok(200);
    app.delete(&path("acme", &"A".repeat(64)), Some(&admin))
        .await
        .ok(204);

    // Values: at most 8192 bytes of UTF-8 (bytes, not characters).
    let big = "x".repeat(8193);
    let r = put_secret(&app, Some(&admin), "acme", "BIG", &big).await;
    assert!(!r.text.contains(&big));
    let p = r.problem(400, "validation_failed");
    assert!(p["fields"]["value"].is_string(), "{p}");
    let p = put_secret(&app, Some(&admin), "acme", "BIG", &"é".repeat(4097))
        .await
        .problem(400, "validation_failed");
    assert!(p["fields"]["value"].is_string(), "{p}");

    // Bodies.
    let put_raw = |body: &'static str, ct: &'static str| {
        app.send(
            app.req(Method::PUT, &path("acme", "RAW"), Some(&admin))
                .header("content-type", ct)
                .body(body),
        )
    };
    put_raw("{\"value\": ", "application/json")
        .await
        .problem(400, "malformed_json");
    put_raw("{}", "application/json")
        .await
        .problem(400, "invalid_body");
    put_raw("{\"value\": 42}", "application/json")
        .await
        .problem(400, "invalid_body");
    put_raw("{\"value\": null}", "application/json")
        .await
        .problem(400, "invalid_body");
    put_raw("value", "text/plain")
        .await
        .problem(415, "unsupported_media_type");

    // Callers and tenants.
    put_secret(&app, None, "acme", "NOAUTH", "v")
        .await
        .problem(401, "auth_required");
    put_secret(&app, Some("not-a-token"), "acme", "NOAUTH", "v")
        .await
        .problem(401, "invalid_token");
    let user = app.signup("acme", "u@acme.test").await;
    put_secret(&app, Some(&user.access), "acme", "NOAUTH", "v")
        .await
        .problem(401, "invalid_token");
    let key = app.create_key("acme", "k").await;
    put_secret(&app, key["key"].as_str(), "acme", "NOAUTH", "v")
        .await
        .problem(401, "invalid_token");
    app.get("/admin/v1/tenants/acme/secrets", None)
        .await
        .problem(401, "auth_required");
    app.delete(&path("acme", "NOAUTH"), None)
        .await
        .problem(401, "auth_required");
    put_secret(&app, Some(&admin), "nope", "KEY", "v")
        .await
        .problem(404, "tenant_not_found");
    app.get("/admin/v1/tenants/nope/secrets", Some(&admin))
        .await
        .problem(404, "tenant_not_found");
    app.delete(&path("nope", "KEY"), Some(&admin))
        .await
        .problem(404, "tenant_not_found");
    app.delete(&path("acme", "NEVER_SET"), Some(&admin))
        .await
        .problem(404, "not_found");

    // Nothing was stored or audited by any refused request.
    assert_eq!(
        names(&list(&app, &admin, "acme").await),
        Vec::<String>::new()
    );
    assert_eq!(env(&app, "acme").await.unwrap(), map(&[]));
    let audit = app.get("/admin/v1/audit", Some(&admin)).await.ok(200);
    assert_eq!(audit_actions(&audit).len(), 2, "only the 64-character name");
}

async fn secrets_are_limited_per_tenant(b: Backend) {
    let mut app = TestApp::start(b).await;
    let admin = app.admin().await;
    app.create_tenant("acme").await;
    app.create_tenant("beta").await;
    for i in 0..90 {
        put_secret(&app, Some(&admin), "acme", &format!("S{i:03}"), "v")
            .await
            .ok(200);
    }
    // Twenty new names at once for the last ten places: the count and the write are one
    // step, so exactly ten fit.
    let racers = (90..110).map(|i| {
        let (app, admin) = (&app, &admin);
        async move {
            put_secret(app, Some(admin), "acme", &format!("S{i:03}"), "v")
                .await
                .status
                .as_u16()
        }
    });
    let mut statuses = futures_util::future::join_all(racers).await;
    statuses.sort();
    assert_eq!(statuses, [[200; 10], [409; 10]].concat());
    assert_eq!(names(&list(&app, &admin, "acme").await).len(), 100);

    // The same race straight at the service, where the writes overlap more closely.
    let state = app.running.as_ref().unwrap().state.clone();
    let scope = scope_of(&app, "beta").await;
    for i in 0..90 {
        state
            .secrets
            .set(&scope, &format!("S{i:03}"), "v")
            .await
            .unwrap();
    }
    let racers: Vec<_> = (90..130)
        .map(|i| {
            let (state, scope) = (state.clone(), scope.clone());
            tokio::spawn(async move { state.secrets.set(&scope, &format!("S{i:03}"), "v").await })
        })
        .collect();
    let mut ok = 0;
    for r in futures_util::future::join_all(racers).await {
        match r.unwrap() {
            Ok(_) => ok += 1,
            Err(SecretsError::TooMany) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(ok, 10);
    assert_eq!(state.secrets.list(&scope).await.unwrap().len(), 100);
    for i in 0..130 {
        let _ = state.secrets.delete(&scope, &format!("S{i:03}")).await;
    }

    let p = put_secret(&app, Some(&admin), "acme", "ONE_TOO_MANY", "v")
        .await
        .problem(409, "too_many_secrets");
    assert!(p["detail"].as_str().unwrap().contains("100"), "{p}");
    assert_eq!(names(&list(&app, &admin, "acme").await).len(), 100);
    assert!(
        !env(&app, "acme")
            .await
            .unwrap()
            .contains_key("ONE_TOO_MANY")
    );
    // Replacing an existing secret at the limit is fine; so is another tenant.
    put_secret(&app, Some(&admin), "acme", "S001", "new")
        .await
        .ok(200);
    put_secret(&app, Some(&admin), "beta", "ONE_TOO_MANY", "v")
        .await
        .ok(200);
    // Deleting one makes room for one.
    app.delete(&path("acme", "S000"), Some(&admin))
        .await
        .ok(204);
    put_secret(&app, Some(&admin), "acme", "ONE_TOO_MANY", "v")
        .await
        .ok(200);
    put_secret(&app, Some(&admin), "acme", "TWO_TOO_MANY", "v")
        .await
        .problem(409, "too_many_secrets");
    let e = env(&app, "acme").await.unwrap();
    assert_eq!(e.len(), 100);
    assert_eq!(e["S001"], "new");
}

async fn secrets_are_isolated_between_tenants(b: Backend) {
    let mut app = TestApp::start(b).await;
    let admin = app.admin().await;
    app.create_tenant("alpha").await;
    app.create_tenant("bravo").await;
    put_secret(&app, Some(&admin), "alpha", "API_KEY", "alpha-value")
        .await
        .ok(200);
    assert_eq!(
        names(&list(&app, &admin, "bravo").await),
        Vec::<String>::new()
    );
    assert_eq!(env(&app, "bravo").await.unwrap(), map(&[]));
    app.delete(&path("bravo", "API_KEY"), Some(&admin))
        .await
        .problem(404, "not_found");
    assert_eq!(names(&list(&app, &admin, "alpha").await), ["API_KEY"]);

    put_secret(&app, Some(&admin), "bravo", "API_KEY", "bravo-value")
        .await
        .ok(200);
    assert_eq!(
        env(&app, "alpha").await.unwrap(),
        map(&[("API_KEY", "alpha-value")])
    );
    assert_eq!(
        env(&app, "bravo").await.unwrap(),
        map(&[("API_KEY", "bravo-value")])
    );
    app.delete(&path("bravo", "API_KEY"), Some(&admin))
        .await
        .ok(204);
    assert_eq!(
        env(&app, "alpha").await.unwrap(),
        map(&[("API_KEY", "alpha-value")])
    );

    // A deleted tenant's secrets go with it; a new tenant of the same slug starts empty.
    app.delete("/admin/v1/tenants/alpha", Some(&admin))
        .await
        .ok(204);
    app.create_tenant("alpha").await;
    assert_eq!(
        names(&list(&app, &admin, "alpha").await),
        Vec::<String>::new()
    );
    assert_eq!(env(&app, "alpha").await.unwrap(), map(&[]));
}

/// Every file under the SQLite data directory (databases, WAL and shared-memory files).
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Runs statements on a tenant's database from outside the server (an attacker with the
/// database, or a bad migration): on SQLite the tenant's own file, on PostgreSQL the one
/// database.
async fn raw_sql(app: &TestApp, tenant: &str, sql: &str, binds: (i64, Vec<u8>, Vec<u8>)) {
    use sqlx::Connection;
    let state = &app.running.as_ref().unwrap().state;
    let id = scope_of(app, tenant).await.tenant().id;
    match &app.storage.location {
        Location::SqliteDir(_) => {
            let file = state.store.tenant_file(id).unwrap();
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display()))
                .await
                .unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
                .bind(binds.0)
                .bind(binds.1)
                .bind(binds.2)
                .execute(&mut c)
                .await
                .unwrap();
            c.close().await.unwrap();
        }
        Location::Postgres(url) => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
                .bind(binds.0)
                .bind(binds.1)
                .bind(binds.2)
                .execute(&mut c)
                .await
                .unwrap();
            c.close().await.unwrap();
        }
    }
}

async fn secrets_are_encrypted_at_rest(b: Backend) {
    // No cache: each `env` reads what is stored right now.
    let mut app = TestApp::start_with(b, |c| c.secrets_cache_ttl = Duration::ZERO).await;
    let admin = app.admin().await;
    app.create_tenant("acme").await;
    app.create_tenant("beta").await;
    let plaintext = "PLAINTEXT-MARKER-7f3a9c-do-not-store";
    put_secret(&app, Some(&admin), "acme", "AT_REST_MARKER_NAME", plaintext)
        .await
        .ok(200);
    // Overwritten once, so an old page or WAL frame would also be caught.
    put_secret(&app, Some(&admin), "acme", "AT_REST_MARKER_NAME", plaintext)
        .await
        .ok(200);
    assert_eq!(
        env(&app, "acme").await.unwrap()["AT_REST_MARKER_NAME"],
        plaintext
    );

    let state = app.running.as_ref().unwrap().state.clone();
    let acme = scope_of(&app, "acme").await;
    let beta = scope_of(&app, "beta").await;
    let rows = state.store.load_secrets(&acme).await.unwrap();
    assert_eq!(rows.len(), 1);
    let row = rows[0].clone();
    assert_eq!(row.nonce.len(), 24);
    assert_eq!(
        row.ciphertext.len(),
        plaintext.len() + 16,
        "ciphertext and tag"
    );
    assert!(!contains(&row.ciphertext, plaintext.as_bytes()));

    match &app.storage.location {
        Location::SqliteDir(dir) => {
            let mut name_seen = false;
            for f in files_under(dir) {
                let bytes = std::fs::read(&f).unwrap();
                assert!(
                    !contains(&bytes, plaintext.as_bytes()),
                    "plaintext found in {}",
                    f.display()
                );
                name_seen |= contains(&bytes, b"AT_REST_MARKER_NAME");
            }
            assert!(
                name_seen,
                "the scan reads the stored rows (the name is plain)"
            );
        }
        Location::Postgres(url) => {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            // Every column of every row of the secrets table and the audit log, as text.
            for table in ["secrets", "audit_log"] {
                let dump: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT t::text FROM {table} t"
                )))
                .fetch_all(&mut c)
                .await
                .unwrap();
                let dump = dump.join("\n");
                assert!(!dump.contains(plaintext), "plaintext in {table}: {dump}");
                assert!(!dump.contains(&hex_of(plaintext.as_bytes())), "{table}");
            }
            let ct: Vec<u8> = sqlx::query_scalar(
                "SELECT ciphertext FROM secrets WHERE tenant_id = $1 AND name = $2",
            )
            .bind(acme.tenant().id)
            .bind("AT_REST_MARKER_NAME")
            .fetch_one(&mut c)
            .await
            .unwrap();
            assert_eq!(ct, row.ciphertext);
            c.close().await.unwrap();
        }
    }

    // A ciphertext copied to another name, or to another tenant, does not decrypt: the
    // environment is refused as a whole rather than served wrong.
    raw_sql(
        &app,
        "beta",
        "INSERT INTO secrets (tenant_id, name, nonce, ciphertext, updated_at) \
         VALUES ($1, 'AT_REST_MARKER_NAME', $2, $3, 0)",
        (beta.tenant().id, row.nonce.clone(), row.ciphertext.clone()),
    )
    .await;
    assert_eq!(
        names(&list(&app, &admin, "beta").await),
        ["AT_REST_MARKER_NAME"]
    );
    match env(&app, "beta").await {
        Err(SecretsError::Undecryptable(name)) => assert_eq!(name, "AT_REST_MARKER_NAME"),
        other => panic!("a ciphertext of another tenant decrypted: {other:?}"),
    }
    raw_sql(
        &app,
        "acme",
        "INSERT INTO secrets (tenant_id, name, nonce, ciphertext, updated_at) \
         VALUES ($1, 'MOVED', $2, $3, 0)",
        (acme.tenant().id, row.nonce.clone(), row.ciphertext.clone()),
    )
    .await;
    match env(&app, "acme").await {
        Err(SecretsError::Undecryptable(name)) => assert_eq!(name, "MOVED"),
        other => panic!("a ciphertext moved to another name decrypted: {other:?}"),
    }
    // Setting the secret properly repairs the environment.
    put_secret(&app, Some(&admin), "acme", "MOVED", "fixed")
        .await
        .ok(200);
    assert_eq!(env(&app, "acme").await.unwrap()["MOVED"], "fixed");
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn server_key_from_config_or_stored(b: Backend) {
    // Without a configured key, one is generated on first start and kept: secrets set
    // before a restart decrypt after it.
    let mut app = TestApp::start(b).await;
    let admin = app.admin().await;
    app.create_tenant("acme").await;
    put_secret(&app, Some(&admin), "acme", "KEPT", "across-restarts")
        .await
        .ok(200);
    let storage = app.stop().await;
    let app = TestApp::start_on(b, storage, |_| {}).await;
    assert_eq!(
        env(&app, "acme").await.unwrap(),
        map(&[("KEPT", "across-restarts")])
    );
    app.stop().await;

    // A configured key is used instead; only that key opens what it sealed.
    let key = random_secret();
    let with_key =
        |k: Vec<u8>| move |c: &mut plinth::config::Config| c.secrets_key = Some(Secret::new(k));
    let mut app = TestApp::start_with(b, with_key(key.clone())).await;
    let admin = app.admin().await;
    app.create_tenant("acme").await;
    put_secret(&app, Some(&admin), "acme", "CONFIGURED", "by-config-key")
        .await
        .ok(200);
    let storage = app.stop().await;
    let app = TestApp::start_on(b, storage, with_key(key.clone())).await;
    assert_eq!(
        env(&app, "acme").await.unwrap(),
        map(&[("CONFIGURED", "by-config-key")])
    );
    let storage = app.stop().await;
    let app = TestApp::start_on(b, storage, with_key(random_secret())).await;
    assert!(matches!(
        env(&app, "acme").await,
        Err(SecretsError::Undecryptable(_))
    ));
    let storage = app.stop().await;
    // Nor does the stored key (generated now, since none was stored before).
    let app = TestApp::start_on(b, storage, |_| {}).await;
    assert!(matches!(
        env(&app, "acme").await,
        Err(SecretsError::Undecryptable(_))
    ));
}
