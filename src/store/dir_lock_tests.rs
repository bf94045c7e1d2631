//! The data directory's change lock on a real SQLite store: the moves one process runs at
//! once share it; a local change (here a separate open of the file, as another process's
//! would be) is refused while a move holds it, and changes hold it side by side.

use super::*;

#[tokio::test]
async fn moves_share_the_change_lock_and_exclude_changes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(
        &Location::SqliteDir(dir.path().to_path_buf()),
        4,
        SqliteTuning::default(),
    )
    .await
    .expect("open store");
    let refused = |what: &str| match store.lock_for_change() {
        Err(StoreError::Conflict(m)) => assert!(m.contains("a tenant move runs"), "{what}: {m}"),
        Err(e) => panic!("{what}: {e}"),
        Ok(_) => panic!("{what}: a change went beside a move"),
    };

    let first = store
        .lock_for_move()
        .await
        .expect("a move")
        .expect("SQLite");
    let second = store
        .lock_for_move()
        .await
        .expect("a second move at once")
        .expect("SQLite");
    assert!(std::sync::Arc::ptr_eq(&first, &second), "one hold for both");
    refused("two moves");
    drop(first);
    refused("the second move");
    drop(second);

    let change = store.lock_for_change().expect("a change").expect("SQLite");
    let other = store
        .lock_for_change()
        .expect("changes side by side")
        .expect("SQLite");
    drop((change, other));
    store
        .lock_for_move()
        .await
        .expect("a move once the changes ended")
        .expect("SQLite");
}
