//! Nodes starting together, and what is per node: three nodes of this version started at
//! once against a database an older version left migrate it once (sqlx's migrator holds a
//! PostgreSQL advisory lock) and agree on the keys they generate; login rate limits are
//! counted per node.

use serde_json::json;
use sqlx::Connection;

use crate::harness::{Cluster, Node, PASSWORD, TENANT, cli, expect, shared_env};

/// The migrations of this version; the test applies a prefix of them to play the older
/// version's database.
static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_starting_at_once_migrate_an_older_database_once() {
    if !crate::support::postgres_available() {
        return;
    }
    crate::harness::init();
    let db = crate::support::fresh_postgres_database().await;
    let versions: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
    assert!(versions.len() >= 3, "expected several migrations");
    let old = versions[versions.len() / 2];
    {
        let mut conn = sqlx::PgConnection::connect(&db).await.expect("connect");
        MIGRATIONS
            .run_to(old, &mut conn)
            .await
            .expect("older schema");
        conn.close().await.ok();
    }
    // No configured keys: the nodes must agree on the ones they generate and store.
    let env: Vec<(String, String)> = shared_env(&db)
        .into_iter()
        .filter(|(k, _)| k != "PLINTH_SECRETS_KEY" && k != "PLINTH_JWT_SECRET")
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| Node::spawn(&env, &dir.path().join(format!("node{i}.log"))))
        .collect();
    for n in &mut nodes {
        n.wait_listening().await;
    }

    let mut conn = sqlx::PgConnection::connect(&db).await.expect("connect");
    let applied: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .expect("migrations table");
    let want: Vec<(i64, bool)> = versions.iter().map(|v| (*v, true)).collect();
    assert_eq!(applied, want, "each migration applied once, all successful");
    conn.close().await.ok();

    // One admin (by the CLI); a token from each node is good on every node.
    cli(
        &env,
        &[
            "admin",
            "create",
            "--email",
            "ops@start.test",
            "--password-stdin",
        ],
        Some(PASSWORD),
    );
    let http = reqwest::Client::new();
    let mut tokens = Vec::new();
    for n in &nodes {
        let v = expect(
            http.post(format!("{}/admin/v1/auth/login", n.base()))
                .json(&json!({"email": "ops@start.test", "password": PASSWORD})),
            200,
        )
        .await;
        tokens.push(v["access_token"].as_str().expect("token").to_string());
    }
    // One key set: every node signs with the same key, the one stored key. (Each racing
    // node used to insert a key of its own; a node that had read the table before the
    // others inserted signed with its own key, which the others found only by reloading,
    // at most once every 5 s.)
    let kids: Vec<String> = tokens.iter().map(|t| kid_of(t)).collect();
    assert!(
        kids.iter().all(|k| *k == kids[0]),
        "the nodes sign with different keys: {kids:?}"
    );
    let mut conn = sqlx::PgConnection::connect(&db).await.expect("connect");
    let stored: Vec<String> = sqlx::query_scalar("SELECT kid FROM signing_keys")
        .fetch_all(&mut conn)
        .await
        .expect("signing keys");
    conn.close().await.ok();
    assert_eq!(
        stored,
        vec![kids[0].clone()],
        "one stored key, the one in use"
    );
    for t in &tokens {
        for n in &nodes {
            expect(
                http.get(format!("{}/admin/v1/tenants", n.base()))
                    .bearer_auth(t),
                200,
            )
            .await;
        }
    }
    // A secret sealed by one node is opened by another (the same generated key).
    let [a, b, c] = [nodes[0].base(), nodes[1].base(), nodes[2].base()];
    expect(
        http.post(format!("{a}/admin/v1/tenants"))
            .bearer_auth(&tokens[0])
            .json(&json!({"slug": TENANT})),
        201,
    )
    .await;
    expect(
        http.put(format!("{b}/admin/v1/tenants/{TENANT}/secrets/GREETING"))
            .bearer_auth(&tokens[1])
            .json(&json!({"value": "sealed on b"})),
        200,
    )
    .await;
    expect(
        http.post(format!("{c}/admin/v1/tenants/{TENANT}/deploys"))
            .bearer_auth(&tokens[2])
            .json(&json!({"files": {
                "plinth.toml": "[[http]]\nname = \"env\"\nfunction = \"env\"\n",
                "functions/env.js": "export default async function (req, ctx) { return { status: 200, body: { g: ctx.env.GREETING } }; }\n",
            }})),
        201,
    )
    .await;
    for base in [&a, &b, &c] {
        let v = expect(http.get(format!("{base}/v1/t/{TENANT}/fn/env")), 200).await;
        assert_eq!(v, json!({"g": "sealed on b"}), "on {base}");
    }
    for n in &mut nodes {
        assert!(
            n.exited().is_none(),
            "a node exited:\n{}",
            crate::harness::log_tail(&n.log)
        );
    }
}

/// The `kid` in a JWT's header.
fn kid_of(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().expect("JWT header");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .expect("base64url header");
    let v: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON header");
    v["kid"].as_str().expect("kid").to_string()
}

/// Login attempts are limited per client address by each node in its own memory: a
/// client that used up its attempts on one node still has them on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_rate_limits_are_counted_per_node() {
    let Some(c) = Cluster::start(2, &[("PLINTH_LOGIN_PER_IP", "3")]).await else {
        return;
    };
    let attempt = |base: String| {
        let http = c.http.clone();
        async move {
            http.post(format!("{base}/v1/t/{TENANT}/auth/login"))
                // The nodes trust X-Forwarded-For (as behind the proxy).
                .header("x-forwarded-for", "203.0.113.9")
                .json(&json!({"email": "nobody@cluster.test", "password": "wrong-password-1"}))
                .send()
                .await
                .expect("login attempt")
                .status()
                .as_u16()
        }
    };
    let (a, b) = (c.nodes[0].base(), c.nodes[1].base());
    for _ in 0..3 {
        assert_eq!(attempt(a.clone()).await, 401);
    }
    assert_eq!(attempt(a.clone()).await, 429, "node A's limit");
    // Node B has counted nothing for this address.
    for _ in 0..3 {
        assert_eq!(attempt(b.clone()).await, 401, "node B counts on its own");
    }
    assert_eq!(attempt(b.clone()).await, 429, "node B's limit");
}
