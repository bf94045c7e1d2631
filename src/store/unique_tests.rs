//! Unique violations are mapped by the constraint they break, on a real SQLite store
//! (the PostgreSQL names are covered by the API suite's conflict tests on both backends).

use super::*;

#[tokio::test]
async fn unique_violations_map_by_constraint() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(
        &Location::SqliteDir(dir.path().to_path_buf()),
        4,
        super::SqliteTuning::default(),
    )
    .await
    .expect("open store");
    let first = store
        .create_tenant("acme", "Acme", "default")
        .await
        .expect("create");
    match store.create_tenant("acme", "Again", "default").await {
        Err(StoreError::Conflict(what)) => assert!(what.contains("slug"), "{what}"),
        other => panic!("a second slug should conflict: {other:?}"),
    }

    // The same row again breaks the primary key, not the slug's constraint: mapped for
    // "slug" it is a fault; mapped for "id", the constraint it breaks, a conflict.
    let Db::Sqlite(pool) = store.control_db() else {
        panic!("a SQLite store");
    };
    let insert = || {
        sqlx::query(
            "INSERT INTO tenants (id, slug, name, suspended, cors_origins, created_at, updated_at) \
             VALUES ($1, 'other', 'x', FALSE, '[]', 0, 0)",
        )
        .bind(first.id)
        .execute(&pool)
    };
    let err = insert().await.expect_err("duplicate id");
    assert!(
        matches!(on_unique(err, "slug", "slug taken"), StoreError::Db(_)),
        "a primary-key violation is not a slug conflict"
    );
    let err = insert().await.expect_err("duplicate id");
    assert!(matches!(
        on_unique(err, "id", "id taken"),
        StoreError::Conflict("id taken")
    ));
}
