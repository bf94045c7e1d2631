//! Nodes starting together on one PostgreSQL database without configured keys and
//! without an admin: they end up with one signing key set, and each node's printed setup
//! token works (for the first admin only).

use std::time::Duration;

use plinth::auth::tokens::{ADMIN_AUDIENCE, AdminClaims, Keyring, admin_claims};
use plinth::store::{SqliteTuning, Store};
use serde_json::json;

use crate::support::*;

/// Nodes loading their keys at the same moment on a database with none: one key is
/// stored, every node signs with it, and a token signed by any node verifies on all.
/// (Each used to generate and insert a key of its own.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyrings_loaded_at_once_share_one_key_on_postgres() {
    if !postgres_available() {
        return;
    }
    let storage = Storage::fresh(Backend::Postgres).await;
    // Opened (and migrated) first, so that the keyring loads, not the migrations, race.
    let mut stores = Vec::new();
    for _ in 0..6 {
        stores.push(
            Store::open(&storage.location, 2, SqliteTuning::default())
                .await
                .expect("store opens"),
        );
    }
    let rings: Vec<Keyring> =
        futures_util::future::join_all(stores.iter().map(|s| Keyring::load(s.clone(), None)))
            .await
            .into_iter()
            .map(|r| r.expect("keyring loads"))
            .collect();
    let stored = stores[0].list_signing_keys().await.expect("keys");
    assert_eq!(
        stored.len(),
        1,
        "one key for every node, got {:?}",
        stored.iter().map(|k| &k.kid).collect::<Vec<_>>()
    );
    let claims = admin_claims("admin-1", "a@nodes.test", 0, Duration::from_secs(60));
    for signer in &rings {
        assert_eq!(
            signer.current_kid().as_deref(),
            Some(stored[0].kid.as_str())
        );
        let token = signer.sign(&claims).expect("signs");
        for verifier in &rings {
            let got: AdminClaims = verifier
                .verify(&token, ADMIN_AUDIENCE)
                .await
                .expect("a token of one node verifies on another");
            assert_eq!(got.sub, "admin-1");
        }
    }
    for s in &stores {
        s.close().await;
    }
}

/// Three servers started at once on a fresh database (migrations included): a token one
/// of them issues is accepted by the others, all signed with the same key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_started_at_once_accept_each_others_tokens_on_postgres() {
    if !postgres_available() {
        return;
    }
    let storage = Storage::fresh(Backend::Postgres).await;
    let on_same = || Storage {
        location: storage.location.clone(),
        _dir: None,
    };
    let (a, b, c) = tokio::join!(
        TestApp::start_on(Backend::Postgres, on_same(), |_| {}),
        TestApp::start_on(Backend::Postgres, on_same(), |_| {}),
        TestApp::start_on(Backend::Postgres, on_same(), |_| {}),
    );
    let nodes = [a, b, c];
    let token = nodes[0].setup_token().expect("no admin yet");
    nodes[0]
        .post(
            "/admin/v1/setup",
            None,
            json!({"token": token, "email": "root@nodes.test", "password": PASSWORD}),
        )
        .await
        .ok(201);
    let mut tokens = Vec::new();
    for n in &nodes {
        let r = n
            .post(
                "/admin/v1/auth/login",
                None,
                json!({"email": "root@nodes.test", "password": PASSWORD}),
            )
            .await
            .ok(200);
        tokens.push(r["access_token"].as_str().expect("token").to_string());
    }
    let kids: Vec<_> = tokens
        .iter()
        .map(|t| jwt_header(t)["kid"].clone())
        .collect();
    assert!(kids.iter().all(|k| *k == kids[0]), "{kids:?}");
    for t in &tokens {
        for n in &nodes {
            n.get("/admin/v1/tenants", Some(t)).await.ok(200);
        }
    }
    for n in nodes {
        n.stop().await;
    }
}

/// Two nodes on one database, both started while no admin exists.
async fn two_nodes_without_admin() -> (TestApp, TestApp) {
    let a = TestApp::start(Backend::Postgres).await;
    let b = TestApp::start_on(
        Backend::Postgres,
        Storage {
            location: a.storage.location.clone(),
            _dir: None,
        },
        |_| {},
    )
    .await;
    (a, b)
}

async fn setup(node: &TestApp, token: &str, email: &str) -> Reply {
    node.post(
        "/admin/v1/setup",
        None,
        json!({"token": token, "email": email, "password": PASSWORD}),
    )
    .await
}

/// Each node started while no admin exists prints a setup token, and each works through
/// either node until the first admin is made; then every one is spent. (The second
/// node's start used to replace the first's token.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_nodes_setup_token_works_until_the_first_admin_on_postgres() {
    if !postgres_available() {
        return;
    }
    let (a, b) = two_nodes_without_admin().await;
    let ta = a.setup_token().expect("a printed a token");
    let tb = b.setup_token().expect("b printed a token");
    assert_ne!(ta, tb);
    setup(&a, "not-a-token", "x@nodes.test")
        .await
        .problem(403, "invalid_setup_token");
    // A's token, printed before B started, through B.
    setup(&b, &ta, "first@nodes.test").await.ok(201);
    for node in [&a, &b] {
        for token in [&ta, &tb] {
            setup(node, token, "late@nodes.test")
                .await
                .problem(403, "invalid_setup_token");
        }
    }
    b.stop().await;
    a.stop().await;
}

/// Both nodes' tokens used at the same moment: one makes the first admin, the other is
/// refused, and there is one admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_setups_at_once_make_one_admin_on_postgres() {
    if !postgres_available() {
        return;
    }
    let (a, b) = two_nodes_without_admin().await;
    let ta = a.setup_token().expect("a printed a token");
    let tb = b.setup_token().expect("b printed a token");
    let (ra, rb) = tokio::join!(
        setup(&b, &ta, "first@nodes.test"),
        setup(&a, &tb, "second@nodes.test"),
    );
    let (winner, refused) = match (ra.status.as_u16(), rb.status.as_u16()) {
        (201, _) => ("first@nodes.test", &rb),
        (_, 201) => ("second@nodes.test", &ra),
        _ => panic!(
            "no first admin: {} {} / {} {}",
            ra.status, ra.text, rb.status, rb.text
        ),
    };
    refused.problem(403, "invalid_setup_token");
    let admin = b
        .post(
            "/admin/v1/auth/login",
            None,
            json!({"email": winner, "password": PASSWORD}),
        )
        .await
        .ok(200)["access_token"]
        .as_str()
        .expect("token")
        .to_string();
    let admins = a.get("/admin/v1/admins", Some(&admin)).await.ok(200);
    assert_eq!(
        admins["items"].as_array().map(Vec::len),
        Some(1),
        "{admins}"
    );
    b.stop().await;
    a.stop().await;
}

/// One node (SQLite) restarted before the first admin exists: the token of the earlier
/// start still works, as a second node's would on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_adds_a_setup_token_on_sqlite() {
    let first = TestApp::start(Backend::Sqlite).await;
    let early = first.setup_token().expect("a token");
    let storage = first.stop().await;
    let second = TestApp::start_on(Backend::Sqlite, storage, |_| {}).await;
    let late = second.setup_token().expect("another token");
    assert_ne!(early, late);
    second
        .post(
            "/admin/v1/setup",
            None,
            json!({"token": early, "email": "root@nodes.test", "password": PASSWORD}),
        )
        .await
        .ok(201);
    second
        .post(
            "/admin/v1/setup",
            None,
            json!({"token": late, "email": "two@nodes.test", "password": PASSWORD}),
        )
        .await
        .problem(403, "invalid_setup_token");
}
