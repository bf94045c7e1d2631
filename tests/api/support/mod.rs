//! Test harness: a real server on 127.0.0.1:0, on a fresh SQLite directory or a fresh
//! PostgreSQL database, driven over HTTP.
//!
//! PostgreSQL comes from `TEST_POSTGRES_URL` (scripts/test.sh starts a throwaway cluster
//! and sets it). Without it, PostgreSQL tests are skipped with a message, except under
//! `CI=true`, where a missing PostgreSQL fails them.

#![allow(dead_code)]

pub mod smtp;

use std::time::Duration;

use base64::Engine;
use plinth::app::{App, RunningApp};
use plinth::config::{Config, Secret};
use plinth::store::Location;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each listed `async fn name(b: Backend)` as two tests, `sqlite::name` and
/// `postgres::name`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if !$crate::support::postgres_available() {
                        return;
                    }
                    super::$name($crate::support::Backend::Postgres).await
                }
            )*
        }
    };
}

/// True when PostgreSQL tests can run; prints why not otherwise. Panics under CI=true.
pub fn postgres_available() -> bool {
    if std::env::var("TEST_POSTGRES_URL").is_ok_and(|u| !u.is_empty()) {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "CI=true but TEST_POSTGRES_URL is not set: PostgreSQL tests cannot be skipped in CI"
        );
    }
    eprintln!(
        "SKIPPED (PostgreSQL): TEST_POSTGRES_URL is not set; run scripts/test.sh to start a throwaway cluster"
    );
    false
}

/// Replaces the database name in a PostgreSQL URL.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// A fresh, empty database on the test cluster.
pub async fn fresh_postgres_database() -> String {
    use sqlx::Connection;
    let admin_url = std::env::var("TEST_POSTGRES_URL").expect("TEST_POSTGRES_URL");
    let name = format!("plinth_test_{}", uuid::Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("connect to TEST_POSTGRES_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    conn.close().await.ok();
    with_database(&admin_url, &name)
}

/// Where a test app keeps its data; SQLite directories are deleted with the value.
pub struct Storage {
    pub location: Location,
    pub _dir: Option<tempfile::TempDir>,
}

impl Storage {
    pub async fn fresh(backend: Backend) -> Storage {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                Storage {
                    location: Location::SqliteDir(dir.path().to_path_buf()),
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => Storage {
                location: Location::Postgres(fresh_postgres_database().await),
                _dir: None,
            },
        }
    }

    pub fn sqlite_dir(&self) -> Option<&std::path::Path> {
        match &self.location {
            Location::SqliteDir(d) => Some(d),
            Location::Postgres(_) => None,
        }
    }

    /// Arguments that point the CLI at this storage.
    pub fn cli_args(&self) -> Vec<String> {
        match &self.location {
            Location::SqliteDir(d) => vec!["--data-dir".into(), d.display().to_string()],
            Location::Postgres(url) => vec!["--database-url".into(), url.clone()],
        }
    }
}

pub const PASSWORD: &str = "correct-horse-battery";

pub struct TestApp {
    pub backend: Backend,
    pub storage: Storage,
    pub running: Option<RunningApp>,
    pub base: String,
    pub http: reqwest::Client,
    /// The JWT secret the server signs with, when the test configured one (for forging).
    pub jwt_secret: Option<Vec<u8>>,
    admin_token: Option<String>,
}

/// A signed-in end user.
#[derive(Clone, Debug)]
pub struct Session {
    pub user_id: String,
    pub email: String,
    pub access: String,
    pub refresh: String,
}

impl Session {
    pub fn from_json(v: &Value) -> Session {
        Session {
            user_id: v["user"]["id"].as_str().expect("user.id").to_string(),
            email: v["user"]["email"].as_str().expect("user.email").to_string(),
            access: v["access_token"]
                .as_str()
                .expect("access_token")
                .to_string(),
            refresh: v["refresh_token"]
                .as_str()
                .expect("refresh_token")
                .to_string(),
        }
    }
}

/// An HTTP answer, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// Asserts a problem+json answer with this status and code; returns the body.
    #[track_caller]
    pub fn problem(&self, status: u16, code: &str) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "expected {status} {code}, got {}: {}",
            self.status,
            self.text
        );
        let ct = self
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            ct.starts_with("application/problem+json"),
            "content-type {ct}: {}",
            self.text
        );
        let body = self.json();
        assert_eq!(body["code"], code, "{}", self.text);
        assert_eq!(body["status"], status, "{}", self.text);
        assert!(body["type"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(body["detail"].as_str().is_some(), "{}", self.text);
        body
    }

    #[track_caller]
    pub fn ok(&self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected answer: {}",
            self.text
        );
        if self.text.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }
}

/// Server logs (warnings and errors) go to the test's captured output.
fn init_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // reqwest is built with rustls but no crypto provider of its own (see Cargo.toml).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("PLINTH_LOG")
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_test_writer()
            .try_init();
    });
}

pub fn random_secret() -> Vec<u8> {
    let mut s = vec![0u8; 32];
    rand::fill(&mut s[..]);
    s
}

impl TestApp {
    pub async fn start(backend: Backend) -> TestApp {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> TestApp {
        let storage = Storage::fresh(backend).await;
        Self::start_on(backend, storage, configure).await
    }

    /// Starts a server on existing storage (to test restarts and the CLI's effects).
    pub async fn start_on(
        backend: Backend,
        storage: Storage,
        configure: impl FnOnce(&mut Config),
    ) -> TestApp {
        init_logs();
        let mut config = Config::new(storage.location.clone(), ([127, 0, 0, 1], 0).into());
        config.pg_max_connections = 5;
        // Many tests log in repeatedly from 127.0.0.1; the rate-limit test sets its own.
        config.login_per_ip_per_minute = 10_000;
        config.login_free_failures = 10_000;
        config.login_failures_per_account_per_hour = 10_000;
        configure(&mut config);
        let jwt_secret = config.jwt_secret.as_ref().map(|s| s.expose().clone());
        let app = App::build(config).await.expect("app builds");
        let running = app.spawn();
        let base = format!("http://{}", running.addr);
        TestApp {
            backend,
            storage,
            running: Some(running),
            base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            jwt_secret,
            admin_token: None,
        }
    }

    /// Stops the server and hands back its storage.
    pub async fn stop(mut self) -> Storage {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
        self.storage
    }

    pub fn setup_token(&self) -> Option<String> {
        self.running.as_ref().and_then(|r| r.setup_token.clone())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let res = req.send().await.expect("request sent");
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap_or_default();
        Reply {
            status,
            headers,
            text,
        }
    }

    pub fn req(&self, method: Method, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, self.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(self.req(Method::GET, path, token)).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.send(self.req(Method::POST, path, token).json(&body))
            .await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.send(self.req(Method::PATCH, path, token).json(&body))
            .await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(self.req(Method::DELETE, path, token)).await
    }

    /// The first admin's token (created through the setup endpoint on first use).
    pub async fn admin(&mut self) -> String {
        if let Some(t) = &self.admin_token {
            return t.clone();
        }
        let token = self.setup_token().expect("fresh app has a setup token");
        let r = self
            .post(
                "/admin/v1/setup",
                None,
                json!({"token": token, "email": "root@plinth.test", "password": PASSWORD}),
            )
            .await;
        let t = r.ok(201)["access_token"]
            .as_str()
            .expect("token")
            .to_string();
        self.admin_token = Some(t.clone());
        t
    }

    pub async fn create_tenant(&mut self, slug: &str) -> Value {
        let admin = self.admin().await;
        self.post(
            "/admin/v1/tenants",
            Some(&admin),
            json!({"slug": slug, "name": slug}),
        )
        .await
        .ok(201)
    }

    pub async fn signup(&self, tenant: &str, email: &str) -> Session {
        let r = self
            .post(
                &format!("/v1/t/{tenant}/auth/signup"),
                None,
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        Session::from_json(&r.ok(201))
    }

    pub async fn login(&self, tenant: &str, email: &str, password: &str) -> Reply {
        self.post(
            &format!("/v1/t/{tenant}/auth/login"),
            None,
            json!({"email": email, "password": password}),
        )
        .await
    }

    /// A login from `ip`, as a trusted proxy would forward it (the server needs
    /// `trust_forwarded_for`).
    pub async fn login_from(&self, ip: &str, tenant: &str, email: &str, password: &str) -> Reply {
        self.send(
            self.req(Method::POST, &format!("/v1/t/{tenant}/auth/login"), None)
                .header("x-forwarded-for", ip)
                .json(&json!({"email": email, "password": password})),
        )
        .await
    }

    pub async fn create_key(&mut self, tenant: &str, name: &str) -> Value {
        let admin = self.admin().await;
        self.post(
            &format!("/admin/v1/tenants/{tenant}/keys"),
            Some(&admin),
            json!({"name": name}),
        )
        .await
        .ok(201)
    }

    /// Number of users of a tenant, as the admin API sees them.
    pub async fn user_count(&mut self, tenant: &str) -> usize {
        let admin = self.admin().await;
        let r = self
            .get(
                &format!("/admin/v1/tenants/{tenant}/users?limit=1000"),
                Some(&admin),
            )
            .await;
        r.ok(200)["items"].as_array().expect("items").len()
    }
}

/// Signs arbitrary claims with the test's configured secret (HS256, that kid).
pub fn forge(secret: &[u8], claims: &Value) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
    let kid = format!("cfg-{}", &plinth::crypto::sha256_hex(&b64)[..12]);
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid);
    encode(&header, claims, &EncodingKey::from_secret(secret)).expect("encode")
}

/// Decodes a JWT's payload without checking it.
/// The slowest of `n` `/healthz` answers, 10 ms apart: run beside an attack, it shows
/// whether the server kept serving (print it; assert only a generous bound).
pub async fn worst_healthz(app: &TestApp, n: usize) -> Duration {
    let mut worst = Duration::ZERO;
    for _ in 0..n {
        let t = std::time::Instant::now();
        app.get("/healthz", None).await.ok(200);
        worst = worst.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worst
}

pub fn jwt_payload(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64");
    serde_json::from_slice(&bytes).expect("json")
}

pub fn jwt_header(token: &str) -> Value {
    let part = token.split('.').next().expect("header");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64");
    serde_json::from_slice(&bytes).expect("json")
}

pub fn config_secret(c: &mut Config) -> Vec<u8> {
    let s = random_secret();
    c.jwt_secret = Some(Secret::new(s.clone()));
    s
}

/// Held for their whole run by the tests that open thousands of descriptors (idle
/// connections, slowloris, thousands of sockets), one at a time: together they would
/// pass the open-files limit (20,000 on the development machine).
pub static DESCRIPTOR_HEAVY: std::sync::LazyLock<tokio::sync::Mutex<()>> =
    std::sync::LazyLock::new(|| tokio::sync::Mutex::new(()));

/// Polls `check` until it returns Some, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
