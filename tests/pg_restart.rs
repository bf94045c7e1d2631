//! PostgreSQL restarted under a write load: the real `plinth serve` binary on a PostgreSQL
//! cluster of the test's own (initdb in a temp dir, so restarting it disturbs no other
//! test), one writer putting documents while the cluster is stopped (`pg_ctl stop -m
//! fast`) and started again. While the database is down the server answers 503
//! `unavailable` (or `request_timeout`), never a 500; once it is back the server serves
//! again by itself; every acknowledged write is present afterwards.

#[path = "api/support/mod.rs"]
mod support;

#[path = "crash/server.rs"]
#[allow(dead_code)]
mod server;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use plinth::store::Location;
use serde_json::{Value, json};
use server::{Server, TENANT};
use support::Storage;

/// A PostgreSQL cluster in a temporary directory, owned by the `postgres` user when the
/// test runs as root (initdb and postgres refuse to run as root).
struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

fn pg_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| d.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Cluster {
    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd.args(args).output().expect("run a PostgreSQL tool");
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn init(bin: PathBuf) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        if is_root() {
            let ok = Command::new("chown")
                .args(["postgres"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown postgres {}", dir.path().display());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let c = Cluster { bin, dir, port };
        c.run(
            "initdb",
            &[
                "-D",
                &c.data(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
            ],
        );
        c.start();
        c
    }

    fn start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-l", &log, "-w", "start", "-o", &opts],
        );
    }

    fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = Command::new(if is_root() { "runuser" } else { "true" })
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &data, "-m", "immediate", "stop"])
            .output();
        if !is_root() {
            let _ = Command::new(self.bin.join("pg_ctl"))
                .args(["-D", &data, "-m", "immediate", "stop"])
                .output();
        }
    }
}

/// One PUT; the status (0 when the request itself failed) and the body.
async fn put(http: &reqwest::Client, base: &str, key: &str, id: &str, n: u64) -> (u16, Value) {
    let url = format!("{base}/v1/t/{TENANT}/collections/items/docs/{id}");
    match http
        .put(url)
        .bearer_auth(key)
        .json(&json!({ "n": n }))
        .timeout(Duration::from_secs(40))
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarts_under_load() {
    let Some(bin) = pg_bin() else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI=true and no PostgreSQL server binaries under /usr/lib/postgresql"
        );
        eprintln!("skipped: no PostgreSQL server binaries (initdb) under /usr/lib/postgresql");
        return;
    };
    // reqwest is built with rustls but no crypto provider of its own (see Cargo.toml).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cluster = Cluster::init(bin);
    let storage = Storage {
        location: Location::Postgres(cluster.url()),
        _dir: None,
    };
    let log_dir = tempfile::tempdir().expect("tempdir");
    let log = log_dir.path().join("serve.log");
    let server = Server::start(&storage, &log, true).await;
    let http = reqwest::Client::new();
    let creds = server::set_up(&http, &server).await;
    let base = server.base.clone();

    let mut acked: BTreeMap<String, u64> = BTreeMap::new();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut n = 0u64;
    let mut write = |id: String| {
        n += 1;
        let (http, base, key) = (http.clone(), base.clone(), creds.key.clone());
        let value = n;
        async move {
            let (status, body) = put(&http, &base, &key, &id, value).await;
            (id, value, status, body)
        }
    };
    let mut record = |(id, value, status, body): (String, u64, u16, Value)| {
        *statuses.entry(status).or_default() += 1;
        if (200..300).contains(&status) {
            acked.insert(id, value);
        } else {
            assert!(
                status == 503,
                "while the database was away the server answered {status}: {body}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            let code = body["code"].as_str().unwrap_or("");
            assert!(
                code == "unavailable" || code == "request_timeout",
                "503 with code {code}: {body}"
            );
        }
        status
    };

    // Before: the database is up.
    for i in 0..30 {
        let s = record(write(format!("before{i}")).await);
        assert!((200..300).contains(&s), "write before the restart: {s}");
    }
    // Down: writes fail cleanly (503), none hangs past the request timeout.
    cluster.stop();
    let down_at = Instant::now();
    // At once: each waits for the pool's acquire timeout (10 s) before its 503.
    let down: Vec<_> = (0..3).map(|i| write(format!("down{i}"))).collect();
    let mut failures = 0;
    for outcome in futures_util::future::join_all(down).await {
        if record(outcome) == 503 {
            failures += 1;
        }
    }
    println!(
        "database down: {failures} of 3 writes answered 503 in {:?}",
        down_at.elapsed()
    );
    assert!(failures >= 1, "no write noticed the database was down");
    // Up again: the server reconnects by itself.
    cluster.start();
    let up_at = Instant::now();
    let mut back = None;
    for i in 0..200 {
        let s = record(write(format!("after{i}")).await);
        if (200..300).contains(&s) {
            back.get_or_insert(up_at.elapsed());
        }
        if back.is_some() && i >= 20 {
            break;
        }
        assert!(
            up_at.elapsed() < Duration::from_secs(60),
            "not serving 60 s after the database came back"
        );
    }
    let back = back.expect("writes succeed after the restart");
    println!("serving again {back:?} after the database came back; answers: {statuses:?}");

    // Every acknowledged write is there, with its value.
    for (id, value) in &acked {
        let r = http
            .get(format!("{base}/v1/t/{TENANT}/collections/items/docs/{id}"))
            .bearer_auth(&creds.key)
            .send()
            .await
            .expect("get");
        assert_eq!(r.status().as_u16(), 200, "acknowledged {id} missing");
        let doc: Value = r.json().await.expect("json");
        assert_eq!(doc["data"]["n"], json!(value), "{id}");
    }
    println!("{} acknowledged writes, all present", acked.len());
    drop(server);
}
