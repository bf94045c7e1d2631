//! `plinth backup` and `plinth restore` as the real binary beside a running server, and
//! the server's scheduled backups: online consistency, refusals of damaged backups and
//! non-empty targets, retention, failures counted, one node of a cluster taking them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plinth::backup::Schedule;
use plinth::store::ChangeOp;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::documents::{docs, put, scope_of, tenant_with_key};
use crate::functions::deploy;
use crate::support::*;

backend_tests!(
    backup_while_writing_then_restore,
    restore_refuses_damage_and_nonempty_targets,
    scheduled_backups_keep_the_newest,
    scheduled_backup_failures_are_counted,
    an_interrupted_backups_partial_folder_is_removed
);

const MANIFEST: &str = "rules = \"rules.toml\"\n[[http]]\nname = \"which\"\nfunction = \"which\"\n";
const RULES: &str = "[w]\nread = \"auth != null\"\n";

async fn cli(args: &[&str], storage: &[String]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_plinth"))
        .args(args)
        .args(storage)
        .env_remove("PLINTH_DATABASE_URL")
        .env_remove("PLINTH_DATA_DIR")
        .env_remove("PLINTH_SECRETS_KEY")
        .env_remove("PLINTH_SERVER")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("plinth runs")
}

#[track_caller]
fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "exit {:?}: {err}", o.status);
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[track_caller]
fn refused(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "expected a refusal: {err}");
    assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
}

fn path_arg(p: &Path) -> String {
    p.display().to_string()
}

/// Takes a backup of `storage` into `to` with the CLI; the new backup's folder.
async fn take_backup(storage: &Storage, to: &Path) -> PathBuf {
    let out = cli(&["backup", "--to", &path_arg(to)], &storage.cli_args()).await;
    PathBuf::from(ok(&out))
}

async fn restore(from: &Path, target: &Storage, extra: &[&str]) -> Output {
    let from = path_arg(from);
    let mut args = vec!["restore", "--from", from.as_str()];
    args.extend_from_slice(extra);
    cli(&args, &target.cli_args()).await
}

async fn backup_while_writing_then_restore(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_key(&mut app, "shop").await;
    deploy(
        &mut app,
        "shop",
        &[
            ("plinth.toml", MANIFEST),
            ("rules.toml", RULES),
            ("functions/which.js", "export default () => 'one'"),
        ],
    )
    .await
    .ok(201);
    app.signup("shop", "ann@example.com").await;

    // One writer, bounded in count and time, recording each acknowledged write.
    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let (http, base, key) = (app.http.clone(), app.base.clone(), key.clone());
        let (acked, stop) = (acked.clone(), stop.clone());
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            for i in 0..20_000u64 {
                if stop.load(Ordering::Relaxed) || tokio::time::Instant::now() > deadline {
                    break;
                }
                let url = format!("{base}{}/w{i:05}", docs("shop", "w"));
                let r = http
                    .put(url)
                    .bearer_auth(&key)
                    .json(&json!({"i": i}))
                    .send()
                    .await
                    .expect("write sent");
                assert_eq!(r.status().as_u16(), 201, "write {i}");
                acked.lock().unwrap().push(i);
            }
        }
    });
    eventually(Duration::from_secs(20), "100 writes", || {
        let n = acked.lock().unwrap().len();
        async move { (n >= 100).then_some(()) }
    })
    .await;
    let before: BTreeSet<u64> = acked.lock().unwrap().iter().copied().collect();
    let backups = tempfile::tempdir().unwrap();
    let dir = take_backup(&app.storage, backups.path()).await;
    let during = acked.lock().unwrap().len() - before.len();
    // Writes go on after the backup, and none of them may show in it... or break it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let total = acked.lock().unwrap().len();
    eprintln!(
        "writes acknowledged: {} before the backup, {during} while it ran, {total} in all",
        before.len()
    );

    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let backend = if b == Backend::Sqlite {
        "sqlite"
    } else {
        "postgres"
    };
    assert_eq!(manifest["backend"], backend);
    assert!(
        manifest["schema_version"].as_i64().unwrap() > 0,
        "{manifest}"
    );
    assert_eq!(manifest["plinth_version"], env!("CARGO_PKG_VERSION"));
    for f in manifest["files"].as_array().unwrap() {
        assert_eq!(f["sha256"].as_str().unwrap().len(), 64, "{f}");
        let len = std::fs::metadata(dir.join(f["path"].as_str().unwrap()))
            .unwrap()
            .len();
        assert_eq!(f["bytes"].as_u64().unwrap(), len, "{f}");
    }
    app.stop().await;

    let target = Storage::fresh(b).await;
    ok(&restore(&dir, &target, &[]).await);
    let restored = TestApp::start_on(b, target, |_| {}).await;
    let state = restored.running.as_ref().unwrap().state.clone();
    let scope = scope_of(&restored, "shop").await;

    // The change log and the documents agree, with no hole in the log.
    let (changes, _) = state
        .store
        .changes_since(&scope, 0, 100_000, None)
        .await
        .unwrap();
    let (last_seq, _) = state.store.change_seq(&scope).await.unwrap();
    let seqs: Vec<i64> = changes.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, (1..=last_seq).collect::<Vec<_>>());
    let written: BTreeSet<u64> = changes
        .iter()
        .filter(|c| c.collection == "w")
        .map(|c| {
            assert_eq!(c.op, ChangeOp::Create, "{}", c.doc_id);
            c.doc_id[1..].parse().unwrap()
        })
        .collect();
    let counts = state.store.collection_counts(&scope).await.unwrap();
    assert_eq!(counts, vec![("w".to_string(), written.len() as i64)]);
    // Every write acknowledged before the backup began is in it; nothing never written is.
    let missing: Vec<&u64> = before.difference(&written).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not restored: {missing:?}"
    );
    assert!(written.iter().all(|i| *i < total as u64), "{written:?}");

    // The tenant's users sign in, its rules and its function are there.
    let login = restored
        .login("shop", "ann@example.com", PASSWORD)
        .await
        .ok(200);
    let ann = Session::from_json(&login);
    let first = format!("{}/w00000", docs("shop", "w"));
    restored.get(&first, Some(&ann.access)).await.ok(200);
    let anonymous = restored.get(&first, None).await.status.as_u16();
    assert!(
        (400..500).contains(&anonymous),
        "anonymous read: {anonymous}"
    );
    let which = restored.get("/v1/t/shop/fn/which", None).await;
    assert_eq!((which.status.as_u16(), which.text.as_str()), (200, "one"));
    // And it takes writes.
    put(
        &restored,
        &key,
        &format!("{}/after", docs("shop", "w")),
        json!({}),
    )
    .await
    .ok(201);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Rewrites a backup's manifest entry for `path` to match the file as it now is.
fn reseal(dir: &Path, path: &str) {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(dir.join(path)).unwrap();
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    for f in manifest["files"].as_array_mut().unwrap() {
        if f["path"] == path {
            f["bytes"] = json!(bytes.len());
            f["sha256"] = json!(hex::encode(Sha256::digest(&bytes)));
        }
    }
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
}

/// Relations in the target's PostgreSQL database, or entries in its SQLite directory.
async fn held(target: &Storage) -> usize {
    match &target.location {
        plinth::store::Location::SqliteDir(d) => std::fs::read_dir(d).unwrap().count(),
        plinth::store::Location::Postgres(url) => {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = 'public'",
            )
            .fetch_one(&mut c)
            .await
            .unwrap();
            n as usize
        }
    }
}

async fn restore_refuses_damage_and_nonempty_targets(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_key(&mut app, "shop").await;
    for i in 0..3 {
        put(
            &app,
            &key,
            &format!("{}/d{i}", docs("shop", "w")),
            json!({"i": i}),
        )
        .await
        .ok(201);
    }
    // A stopped server's data backs up too.
    let storage = app.stop().await;
    let backups = tempfile::tempdir().unwrap();
    let good = take_backup(&storage, backups.path()).await;
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(good.join("manifest.json")).unwrap()).unwrap();
    // The tenant's file on SQLite, the dump on PostgreSQL.
    let data_file = manifest["files"].as_array().unwrap().last().unwrap()["path"]
        .as_str()
        .unwrap()
        .to_string();
    let target = Storage::fresh(b).await;

    let flipped = backups.path().join("flipped");
    copy_dir(&good, &flipped);
    let mut bytes = std::fs::read(flipped.join(&data_file)).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(flipped.join(&data_file), &bytes).unwrap();
    refused(&restore(&flipped, &target, &[]).await, "checksum");
    assert_eq!(held(&target).await, 0, "a refused restore wrote nothing");

    let cut = backups.path().join("cut");
    copy_dir(&good, &cut);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(cut.join(&data_file))
        .unwrap();
    file.set_len(mid as u64).unwrap();
    refused(&restore(&cut, &target, &[]).await, "damaged");
    refused(
        &restore(backups.path(), &target, &[]).await,
        "not a Plinth backup",
    );
    assert_eq!(held(&target).await, 0, "a refused restore wrote nothing");

    // A cut file under a manifest resealed to match: the checksums pass, the database
    // itself (SQLite's check; pg_restore, in one transaction) refuses it.
    let resealed = backups.path().join("resealed");
    copy_dir(&cut, &resealed);
    reseal(&resealed, &data_file);
    let said = if b == Backend::Sqlite {
        "not a sound SQLite database"
    } else {
        "pg_restore failed"
    };
    refused(&restore(&resealed, &target, &[]).await, said);
    assert_eq!(held(&target).await, 0, "a refused restore wrote nothing");
    if postgres_available() {
        // A backup of the other backend.
        let other = Storage::fresh(if b == Backend::Sqlite {
            Backend::Postgres
        } else {
            Backend::Sqlite
        })
        .await;
        refused(&restore(&good, &other, &[]).await, "restore it with");
    }

    ok(&restore(&good, &target, &[]).await);
    refused(&restore(&good, &target, &[]).await, "not empty");
    if b == Backend::Sqlite {
        ok(&restore(&good, &target, &["--force"]).await);
    }
    let app = TestApp::start_on(b, target, |_| {}).await;
    let d = app
        .get(&format!("{}/d2", docs("shop", "w")), Some(&key))
        .await
        .ok(200);
    assert_eq!(d["data"]["i"], 2, "{d}");
}

/// The complete backups in `dir` (a manifest inside), by name.
fn complete(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().join("manifest.json").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn backups_metric(app: &TestApp, outcome: &str) -> u64 {
    let text = app.get("/metrics", None).await.text;
    let series = format!("plinth_backups_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
        .trim()
        .parse()
        .unwrap()
}

fn schedule(dir: &Path, keep: usize) -> Schedule {
    Schedule {
        dir: dir.to_path_buf(),
        every: Duration::from_secs(1),
        keep,
        pg_dump: None,
    }
}

async fn scheduled_backups_keep_the_newest(b: Backend) {
    let backups = tempfile::tempdir().unwrap();
    let dir = backups.path().to_path_buf();
    let mut app = TestApp::start_with(b, |c| c.backups = Some(schedule(&dir, 2))).await;
    let key = tenant_with_key(&mut app, "shop").await;
    put(
        &app,
        &key,
        &format!("{}/one", docs("shop", "w")),
        json!({"n": 1}),
    )
    .await
    .ok(201);
    let mut seen = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while backups_metric(&app, "ok").await < 4 {
        seen.extend(complete(&dir));
        assert!(tokio::time::Instant::now() < deadline, "4 backups in 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(backups_metric(&app, "failed").await, 0);
    let storage = app.stop().await;
    let kept = complete(&dir);
    seen.extend(kept.iter().cloned());
    assert!(seen.len() >= 3, "saw {seen:?}");
    let newest: BTreeSet<String> = seen.iter().rev().take(2).cloned().collect();
    assert_eq!(kept, newest, "kept the newest two of {seen:?}");
    drop(storage);

    // The newest restores, with the document written before it.
    let last = dir.join(kept.iter().next_back().unwrap());
    let target = Storage::fresh(b).await;
    ok(&restore(&last, &target, &[]).await);
    let app = TestApp::start_on(b, target, |_| {}).await;
    app.get(&format!("{}/one", docs("shop", "w")), Some(&key))
        .await
        .ok(200);
}

async fn scheduled_backup_failures_are_counted(b: Backend) {
    // A directory that cannot be made: its parent is a file.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("file"), "x").unwrap();
    let dir = tmp.path().join("file").join("backups");
    let mut app = TestApp::start_with(b, |c| c.backups = Some(schedule(&dir, 2))).await;
    eventually(Duration::from_secs(20), "two failed backups", || {
        let app = &app;
        async move { (backups_metric(app, "failed").await >= 2).then_some(()) }
    })
    .await;
    assert_eq!(backups_metric(&app, "ok").await, 0);
    // The server goes on serving.
    app.get("/healthz", None).await.ok(200);
    let key = tenant_with_key(&mut app, "shop").await;
    put(
        &app,
        &key,
        &format!("{}/still", docs("shop", "w")),
        json!({}),
    )
    .await
    .ok(201);
}

/// Two nodes on one PostgreSQL database, each with a schedule: one takes the backups;
/// when it stops, the other takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_one_node_takes_the_scheduled_backups() {
    if !postgres_available() {
        return;
    }
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a_path = dir_a.path().to_path_buf();
    let a = TestApp::start_with(Backend::Postgres, |c| {
        c.backups = Some(schedule(&a_path, 10))
    })
    .await;
    let shared = Storage {
        location: a.storage.location.clone(),
        _dir: None,
    };
    let b_path = dir_b.path().to_path_buf();
    let b = TestApp::start_on(Backend::Postgres, shared, |c| {
        c.backups = Some(schedule(&b_path, 10))
    })
    .await;
    eventually(Duration::from_secs(30), "three backups", || {
        let (a, b) = (&a, &b);
        async move {
            let n = backups_metric(a, "ok").await + backups_metric(b, "ok").await;
            (n >= 3).then_some(())
        }
    })
    .await;
    let (na, nb) = (
        backups_metric(&a, "ok").await,
        backups_metric(&b, "ok").await,
    );
    assert!(na == 0 || nb == 0, "both nodes took backups: {na} and {nb}");
    let (leader, follower, follower_dir) = if na > 0 {
        (a, b, dir_b.path())
    } else {
        (b, a, dir_a.path())
    };
    assert!(complete(follower_dir).is_empty());
    // The leader's lock goes with its connection; the follower takes over.
    let _storage = leader.stop().await;
    eventually(
        Duration::from_secs(30),
        "the other node's first backup",
        || {
            let f = &follower;
            async move { (backups_metric(f, "ok").await >= 1).then_some(()) }
        },
    )
    .await;
    assert!(!complete(follower_dir).is_empty());
    // The follower first: one of the two storages owns the database.
    let follower_storage = follower.stop().await;
    drop(follower_storage);
}

/// What a backup killed mid-way leaves (a `.<stamp>.partial` folder) is removed by the
/// next backup and at `serve` start; a partial folder a running backup holds, and
/// anything not named like one, stay.
async fn an_interrupted_backups_partial_folder_is_removed(b: Backend) {
    let mut app = TestApp::start(b).await;
    tenant_with_key(&mut app, "shop").await;
    let storage = app.stop().await;
    let backups = tempfile::tempdir().unwrap();
    let dir = backups.path();
    // As a crash leaves it: files in it, no manifest.
    let crashed = dir.join(".20260101T000000.000Z.partial");
    std::fs::create_dir_all(crashed.join("tenants")).unwrap();
    std::fs::write(crashed.join("control.db"), "half").unwrap();
    // Not a backup's: another name, and a file named like a partial folder.
    let other = dir.join(".mine.partial");
    std::fs::create_dir(&other).unwrap();
    let file = dir.join(".20260102T000000.000Z.partial");
    std::fs::write(&file, "x").unwrap();
    // Being written by another backup: it holds the folder's lock, as `take` does.
    let running = dir.join(".20260103T000000.000Z.partial");
    std::fs::create_dir(&running).unwrap();
    let lock = std::fs::File::open(&running).unwrap();
    lock.try_lock().unwrap();

    let taken = take_backup(&storage, dir).await;
    assert!(taken.join("manifest.json").is_file());
    assert!(!crashed.exists(), "the crashed backup's folder stayed");
    assert!(other.exists() && file.is_file() && running.exists());
    // Once its holder is gone, the next backup removes it too.
    drop(lock);
    take_backup(&storage, dir).await;
    assert!(!running.exists());
    assert!(other.exists() && file.is_file());
    assert_eq!(complete(dir).len(), 2);

    // A server with scheduled backups clears them when it starts, not an interval later.
    let crashed = dir.join(".20260104T000000.000Z.partial");
    std::fs::create_dir(&crashed).unwrap();
    let mut hourly = schedule(dir, 2);
    hourly.every = Duration::from_secs(3600);
    let app = TestApp::start_on(b, storage, |c| c.backups = Some(hourly)).await;
    eventually(
        Duration::from_secs(10),
        "the partial folder removed",
        || {
            let gone = !crashed.exists();
            async move { gone.then_some(()) }
        },
    )
    .await;
    assert!(other.exists() && file.is_file());
    assert_eq!(complete(dir).len(), 2);
    drop(app);
}
