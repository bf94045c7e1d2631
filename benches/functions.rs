//! Function benchmarks, in-process through the real service and worker pool (no HTTP):
//!
//! - warm: one trivial HTTP function called back to back (its runtime and module loaded)
//! - cold: the first call after activating another deploy version (a new runtime, the
//!   prelude and the module loaded from bytecode)
//! - hook: concurrent document writes, each triggering an after hook that increments a
//!   counter; write throughput, and the time until the counter is exact
//!
//! `cargo bench --bench functions -- --seconds 5 --writers 64` prints JSON lines.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use plinth::admin::Actor;
use plinth::app::App;
use plinth::config::Config;
use plinth::names::{CollectionName, DocId};
use plinth::store::Location;
use serde_json::json;

fn pct(sorted: &[Duration], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_micros() as u64
}

fn summary(label: &str, mut lat: Vec<Duration>, extra: serde_json::Value) {
    lat.sort();
    let mut v = json!({
        "label": label,
        "n": lat.len(),
        "p50_us": pct(&lat, 0.50),
        "p99_us": pct(&lat, 0.99),
        "max_us": lat.last().map(|d| d.as_micros() as u64).unwrap_or(0),
    });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in e {
            o.insert(k.clone(), x.clone());
        }
    }
    println!("{v}");
}

fn files(tag: &str) -> BTreeMap<String, String> {
    let mut f = BTreeMap::new();
    f.insert(
        "plinth.toml".into(),
        "[[http]]\nname = \"noop\"\nfunction = \"noop\"\n\
         [[hooks]]\nfunction = \"count\"\ncollection = \"events\"\non = [\"create\"]\n"
            .into(),
    );
    f.insert(
        "functions/noop.js".into(),
        format!("export default (req) => ({{ ok: true, tag: '{tag}' }})"),
    );
    f.insert(
        "functions/count.js".into(),
        "export default async (event, ctx) => { await ctx.db.increment('counters', 'c', 'n', 1) }"
            .into(),
    );
    f
}

#[tokio::main]
async fn main() {
    let mut seconds = 5u64;
    let mut writers = 64usize;
    let mut warm_calls = 20_000usize;
    let mut cold_calls = 200usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = || args.next().and_then(|s| s.parse::<u64>().ok());
        match a.as_str() {
            "--seconds" => seconds = num().unwrap_or(5),
            "--writers" => writers = num().unwrap_or(64) as usize,
            "--warm" => warm_calls = num().unwrap_or(20_000) as usize,
            "--cold" => cold_calls = num().unwrap_or(200) as usize,
            _ => {}
        }
    }
    // Warnings of the hook runner (a failed drain, a retried job) explain a slow drain.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("PLINTH_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::new(
        Location::SqliteDir(dir.path().to_path_buf()),
        ([127, 0, 0, 1], 0).into(),
    );
    // The server's settings, so a run can compare SQLite cache sizes.
    let mib = |name: &str| {
        std::env::var(name)
            .ok()?
            .parse::<u64>()
            .ok()
            .map(|m| m << 20)
    };
    if let Some(bytes) = mib("PLINTH_SQLITE_CACHE_MIB") {
        config.sqlite.cache_budget = bytes;
    }
    if let Some(bytes) = mib("PLINTH_SQLITE_CONN_CACHE_MIB") {
        config.sqlite.conn_cache = bytes;
    }
    let running = App::build(config).await.expect("app").spawn();
    let state = running.state.clone();
    let actor = Actor::cli();
    state
        .admin
        .create_tenant(
            &actor,
            &plinth::admin::parse_slug("bench").expect("slug"),
            "bench",
        )
        .await
        .expect("tenant");
    let v1 = state
        .admin
        .deploy(&actor, "bench", files("a"))
        .await
        .expect("deploy")
        .version;
    let v2 = state
        .admin
        .deploy(&actor, "bench", files("b"))
        .await
        .expect("deploy")
        .version;
    let scope = state.admin.cli_scope("bench").await.expect("scope");
    let fns = state.functions.clone();

    // Warm: the same function, back to back.
    for _ in 0..1000 {
        fns.call_http(&scope, "noop", json!({}))
            .await
            .expect("call");
    }
    let mut lat = Vec::with_capacity(warm_calls);
    let start = Instant::now();
    for _ in 0..warm_calls {
        let t = Instant::now();
        fns.call_http(&scope, "noop", json!({}))
            .await
            .expect("call");
        lat.push(t.elapsed());
    }
    let per_sec = warm_calls as f64 / start.elapsed().as_secs_f64();
    summary("warm", lat, json!({ "calls_per_sec": per_sec.round() }));

    // Cold: activate the other version, then time the first call.
    let mut lat = Vec::with_capacity(cold_calls);
    for i in 0..cold_calls {
        let v = if i % 2 == 0 { v1 } else { v2 };
        state
            .admin
            .activate_deploy(&actor, "bench", v)
            .await
            .expect("activate");
        let t = Instant::now();
        fns.call_http(&scope, "noop", json!({}))
            .await
            .expect("call");
        lat.push(t.elapsed());
    }
    summary("cold", lat, json!({}));

    // Writes with an after hook incrementing one counter.
    state
        .docs
        .put(
            &scope,
            &CollectionName::parse("counters").expect("name"),
            &DocId::parse("c").expect("id"),
            json!({ "n": 0 }),
            Default::default(),
        )
        .await
        .expect("counter");
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    let events = CollectionName::parse("events").expect("name");
    for _ in 0..writers {
        let (docs, scope, stop, written, events) = (
            state.docs.clone(),
            scope.clone(),
            stop.clone(),
            written.clone(),
            events.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                docs.create(&scope, &events, json!({ "kind": "vote" }))
                    .await
                    .expect("write");
                lat.push(t.elapsed());
                written.fetch_add(1, Ordering::Relaxed);
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("writer"));
    }
    let write_secs = start.elapsed().as_secs_f64();
    let n = written.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut counted = 0;
    while Instant::now() < deadline {
        let c = state
            .docs
            .get(
                &scope,
                &CollectionName::parse("counters").expect("name"),
                &DocId::parse("c").expect("id"),
            )
            .await
            .expect("counter");
        counted = c.data["n"].as_u64().unwrap_or(0);
        if counted >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained_secs = start.elapsed().as_secs_f64();
    summary(
        "hook_writes",
        lat,
        json!({
            "writers": writers,
            "writes": n,
            "writes_per_sec": (n as f64 / write_secs).round(),
            "counter": counted,
            "exact": counted == n,
            "hooks_done_per_sec": (counted as f64 / drained_secs).round(),
            "drain_lag_ms": ((drained_secs - write_secs) * 1000.0).round(),
        }),
    );
    running.stop().await;
}
