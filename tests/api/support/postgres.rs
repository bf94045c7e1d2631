//! The test cluster's databases: one fresh database per test app, dropped after it.

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

/// A fresh, empty database on the test cluster; its URL.
pub async fn fresh_postgres_database() -> String {
    create_postgres_database().await.1
}

/// A fresh, empty database on the test cluster: its name and its URL.
pub async fn create_postgres_database() -> (String, String) {
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
    let url = with_database(&admin_url, &name);
    (name, url)
}

/// Drops a database made by [`fresh_postgres_database`], ending the connections still
/// open to it (a server dropped without being stopped may hold some).
pub async fn drop_postgres_database(name: &str) {
    use sqlx::Connection;
    let admin_url = std::env::var("TEST_POSTGRES_URL").expect("TEST_POSTGRES_URL");
    let mut conn = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("connect to TEST_POSTGRES_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .expect("drop test database");
    conn.close().await.ok();
}
