//! The local `plinth` CLI and a moving tenant: the CLI is a process of its own, whose
//! writes no server's freeze stops, so its changes to a tenant's data are refused while
//! a move holds the tenant (here, one whose mover died half-way), as the admin API's are.
//! Such a change and a move (local, or a server's) also exclude each other through the
//! change lock (SQLite: the data directory's; PostgreSQL: an advisory lock per tenant),
//! so a change checked just before a move marks the tenant cannot write behind the
//! copy's back.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use plinth::store::Location;
use serde_json::json;

use crate::backend_tests;
use crate::cli::{plinth, plinth_command, plinth_env};
use crate::documents::tenant_with_key;
use crate::placement::second_cluster;
use crate::placement_recovery::{crashed_move, past_the_lease, restart};
use crate::support::*;

backend_tests!(
    cli_changes_are_refused_while_the_tenant_moves,
    cli_changes_and_a_local_move_exclude_each_other,
    a_servers_move_waits_for_cli_changes,
);

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// Runs the CLI; (success, stdout and stderr).
fn run(storage: &Storage, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let o = plinth(storage, args, stdin);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

/// Every change of the tenant's data through the CLI exits non-zero saying the tenant is
/// moving, and changes nothing; changes to its control row only (suspend, resume) go
/// through, as over HTTP. Once the move is rolled back, the same commands work.
async fn cli_changes_are_refused_while_the_tenant_moves(b: Backend) {
    if !postgres_available() {
        return;
    }
    let (_cluster, url) = second_cluster().await;
    let cluster = format!("eu2={url}");
    let mut app = restart(b, Storage::fresh(b).await, &url).await;
    let admin = app.admin().await;
    tenant_with_key(&mut app, "shop").await;
    let storage = app.stop().await;

    let files = tempfile::tempdir().unwrap();
    write(
        files.path(),
        "rules.toml",
        "[notes]\nread = \"auth != null\"\ncreate = \"true\"\n",
    );
    write(
        files.path(),
        "bundle/plinth.toml",
        "[[http]]\nname = \"hi\"\nfunction = \"hi\"\n",
    );
    write(
        files.path(),
        "bundle/functions/hi.js",
        "export default () => 'hi'",
    );
    let rules = files.path().join("rules.toml").display().to_string();
    let bundle = files.path().join("bundle").display().to_string();
    let changes: Vec<(Vec<&str>, Option<&str>)> = vec![
        (
            vec!["rules", "deploy", rules.as_str(), "--tenant", "shop"],
            None,
        ),
        (vec!["deploy", bundle.as_str(), "--tenant", "shop"], None),
        (vec!["deploy", "activate", "1", "--tenant", "shop"], None),
        (
            vec!["secret", "set", "TOKEN", "--tenant", "shop"],
            Some("v"),
        ),
        (vec!["secret", "delete", "TOKEN", "--tenant", "shop"], None),
        (
            vec!["key", "create", "--tenant", "shop", "--name", "k2"],
            None,
        ),
        (
            vec!["users", "create", "new@shop.test", "--tenant", "shop"],
            None,
        ),
        (vec!["tenant", "delete", "shop", "--yes"], None),
    ];

    let crashed = crashed_move(&storage, &cluster, "eu2", "after-copy");
    for (args, stdin) in &changes {
        let (ok, out) = run(&storage, args, *stdin);
        assert!(!ok, "{args:?} went through a moving tenant: {out}");
        assert!(out.contains("moving"), "{args:?}: {out}");
    }
    for args in [["tenant", "suspend", "shop"], ["tenant", "resume", "shop"]] {
        let (ok, out) = run(&storage, &args, None);
        assert!(ok, "{args:?}: {out}");
    }

    // Nothing changed: no rules, deploy, secret or extra key; the tenant is there.
    let app = restart(b, storage, &url).await;
    let t = app
        .get("/admin/v1/tenants/shop", Some(&admin))
        .await
        .ok(200);
    assert_eq!(t["moving"], true, "{t}");
    assert_eq!(t["suspended"], false, "{t}");
    for (path, empty) in [
        ("deploys", true),
        ("secrets", true),
        ("keys", false),
        ("users", true),
    ] {
        let list = app
            .get(&format!("/admin/v1/tenants/shop/{path}"), Some(&admin))
            .await
            .ok(200);
        let n = list["items"].as_array().map_or(0, Vec::len);
        assert_eq!(n == 0, empty, "{path}: {list}");
        if path == "keys" {
            assert_eq!(n, 1, "{list}");
        }
    }
    let storage = app.stop().await;

    // The move rolled back, the CLI's changes go through.
    past_the_lease(crashed).await;
    let o = plinth_env(
        &storage,
        &["tenant", "move", "shop", "--to", "default"],
        None,
        &[("PLINTH_CLUSTERS", cluster.as_str())],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (args, stdin) in &changes[..4] {
        let (ok, out) = run(&storage, args, *stdin);
        assert!(ok, "{args:?} after the move: {out}");
    }
}

/// A test server with the eu2 cluster, "shop" (with a key) at `default`, and eu2's
/// schema made (by a tenant placed there) so that a move finds its tables; (the app,
/// the admin token, `PLINTH_CLUSTERS`, the cluster's URL). The cluster lives as long as
/// the returned `Owned`.
async fn shop_and_eu2(b: Backend) -> (TestApp, String, String, String, Owned) {
    let (cluster, url) = second_cluster().await;
    let mut app = restart(b, Storage::fresh(b).await, &url).await;
    let admin = app.admin().await;
    tenant_with_key(&mut app, "shop").await;
    app.post(
        "/admin/v1/tenants",
        Some(&admin),
        json!({"slug": "other", "location": "eu2"}),
    )
    .await
    .ok(201);
    (app, admin, format!("eu2={url}"), url, cluster)
}

/// `plinth secret set NAME --tenant shop`, started: it holds the change lock while it
/// waits for the value on its standard input (returned once it holds the lock).
async fn secret_set_waiting(storage: &Storage, name: &str, env: &[(&str, &str)]) -> Child {
    let child = plinth_command(storage, &["secret", "set", name, "--tenant", "shop"], env)
        .spawn()
        .expect("spawn plinth");
    match &storage.location {
        Location::SqliteDir(dir) => wait_for_flock(&dir.join("changes.lock"), child.id()),
        Location::Postgres(url) => wait_for_shared_advisory_lock(url).await,
    }
    child
}

/// Waits until a session of the test's PostgreSQL database holds an advisory lock
/// shared (the CLI's change lock; its backend's pid is not the CLI's).
async fn wait_for_shared_advisory_lock(url: &str) {
    use sqlx::Connection;
    let mut pg = sqlx::PgConnection::connect(url).await.expect("connect");
    let started = Instant::now();
    loop {
        let held: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
             AND mode = 'ShareLock' AND granted AND database = \
             (SELECT oid FROM pg_database WHERE datname = current_database()))",
        )
        .fetch_one(&mut pg)
        .await
        .expect("pg_locks");
        if held {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no session took the change lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until process `pid` holds a `flock` on `file`, as /proc/locks lists them
/// (taking the lock to find out would race with the process taking it).
fn wait_for_flock(file: &Path, pid: u32) {
    use std::os::unix::fs::MetadataExt;
    let started = Instant::now();
    loop {
        let held = std::fs::metadata(file).ok().is_some_and(|m| {
            let inode = format!(":{}", m.ino());
            std::fs::read_to_string("/proc/locks")
                .expect("/proc/locks")
                .lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .any(|f| {
                    f.len() > 5
                        && f[1] == "FLOCK"
                        && f[4] == pid.to_string()
                        && f[5].ends_with(&inode)
                })
        });
        if held {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "process {pid} took no lock on {}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Gives `child` its standard input and waits for it; (success, stdout and stderr).
fn finish(mut child: Child, stdin: &str) -> (bool, String) {
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("write stdin");
    drop(input);
    let o = child.wait_with_output().expect("plinth output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

/// The names of shop's secrets, through the admin API.
async fn secret_names(app: &TestApp, admin: &str) -> Vec<String> {
    let list = app
        .get("/admin/v1/tenants/shop/secrets", Some(admin))
        .await
        .ok(200);
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

/// Processes of the CLI: a local move waits for a change in progress and then gives up,
/// changing nothing (the change goes on); while a move copies, a change is refused at
/// once (SQLite: with the lock's message; PostgreSQL: the lock is free once the tenant
/// is marked, and the mark refuses it) and reads go on; what was changed before the move
/// is at the target after it.
async fn cli_changes_and_a_local_move_exclude_each_other(b: Backend) {
    if !postgres_available() {
        return;
    }
    let (app, admin, cluster, url, _cluster) = shop_and_eu2(b).await;
    let storage = app.stop().await;
    let env = [("PLINTH_CLUSTERS", cluster.as_str())];
    let move_args = ["tenant", "move", "shop", "--to", "eu2"];

    // 1. A change in progress: the move waits for it (5 s), then gives up.
    let held = secret_set_waiting(&storage, "HELD", &env).await;
    let o = plinth_env(&storage, &move_args, None, &env);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "the move ran beside a change: {err}");
    assert!(
        err.contains("a local `plinth` command is changing"),
        "{err}"
    );
    let (ok, out) = finish(held, "v");
    assert!(ok, "the change after the refused move: {out}");

    // 2. A move in progress, its copy held up by the test's lock on eu2's tables.
    use sqlx::Connection;
    let mut pg = sqlx::PgConnection::connect(&url).await.expect("eu2");
    let mut eu2_lock = pg.begin().await.expect("begin");
    sqlx::query("LOCK TABLE jobs, documents IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *eu2_lock)
        .await
        .expect("lock eu2");
    let mut mover = plinth_command(&storage, &move_args, &env)
        .spawn()
        .expect("spawn the move");
    let (tx, rx) = mpsc::channel();
    let stderr = BufReader::new(mover.stderr.take().expect("stderr"));
    let lines = std::thread::spawn(move || {
        let mut all = Vec::new();
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push(line);
        }
        all
    });
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the move pauses writes");
        if line.contains("writes paused") {
            break;
        }
    }
    // SQLite: no value on its standard input, it must not get as far as reading one.
    let (stdin, refusal) = match b {
        Backend::Sqlite => (None, "a tenant move runs on this data directory"),
        Backend::Postgres => (Some("v"), "moving"),
    };
    let late = ["secret", "set", "LATE", "--tenant", "shop"];
    let (ok, out) = run(&storage, &late, stdin);
    assert!(!ok, "a change went through during the move: {out}");
    assert!(out.contains(refusal), "{out}");
    let (ok, out) = run(&storage, &["secret", "list", "--tenant", "shop"], None);
    assert!(ok && out.contains("HELD"), "a read during the move: {out}");
    eu2_lock.rollback().await.expect("unlock eu2");
    let o = mover.wait_with_output().expect("the move");
    let lines = lines.join().expect("stderr").join("\n");
    assert!(o.status.success(), "{lines}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("tenant moved: shop default -> eu2"), "{out}");

    let app = restart(b, storage, &url).await;
    let t = app
        .get("/admin/v1/tenants/shop", Some(&admin))
        .await
        .ok(200);
    assert_eq!(
        (t["location"].as_str(), t["moving"].as_bool()),
        (Some("eu2"), Some(false)),
        "{t}"
    );
    assert_eq!(secret_names(&app, &admin).await, ["HELD"]);
}

/// A local change runs beside a server (as it always has), and the server's own move
/// waits for it, then answers 409 with the lock's message; once the change has ended
/// the move runs and carries it.
async fn a_servers_move_waits_for_cli_changes(b: Backend) {
    if !postgres_available() {
        return;
    }
    let (app, admin, cluster, _url, _cluster) = shop_and_eu2(b).await;
    let env = [("PLINTH_CLUSTERS", cluster.as_str())];
    let held = secret_set_waiting(&app.storage, "HELD", &env).await;
    let started = Instant::now();
    let r = app
        .post(
            "/admin/v1/tenants/shop/move",
            Some(&admin),
            json!({"to": "eu2"}),
        )
        .await;
    let p = r.problem(409, "conflict");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("a local `plinth` command is changing"),
        "{p}"
    );
    assert!(started.elapsed() >= Duration::from_secs(4), "it waited");
    let (ok, out) = finish(held, "v");
    assert!(ok, "a CLI change beside a server: {out}");
    let report = app
        .post(
            "/admin/v1/tenants/shop/move",
            Some(&admin),
            json!({"to": "eu2"}),
        )
        .await
        .ok(200);
    assert_eq!(report["to"], "eu2", "{report}");
    assert_eq!(secret_names(&app, &admin).await, ["HELD"]);
}
