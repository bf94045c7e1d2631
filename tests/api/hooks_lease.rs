//! Hook jobs that wait for a worker keep their claims: a node claims a batch of jobs with
//! a lease and runs them on its workers one after another (the tenant runs on all but one
//! worker); jobs still waiting, or run but not yet recorded, when the lease would end are
//! not taken over by another node and run twice. A job whose run outlasts its claim is
//! claimed again, but never for an attempt past its `max_attempts`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::backend_tests;
use crate::documents::{docs, put, tenant_with_key};
use crate::functions::deploy;
use crate::support::*;

backend_tests!(a_claim_starts_no_attempt_past_the_last);

const MANIFEST: &str = r#"
[[hooks]]
function = "slow"
collection = "tasks"
on = ["create"]
"#;

/// 300 ms of JavaScript, then one document per run of the event.
const SLOW: &str = r#"
export default async (event, ctx) => {
  const end = Date.now() + 300; while (Date.now() < end) {}
  await ctx.db.create('runs', { event: event.id, doc: event.doc.id });
};
"#;

const JOBS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_waiting_for_a_worker_are_not_run_twice_on_postgres() {
    if !postgres_available() {
        return;
    }
    // A 3 s lease; two workers, so the tenant's jobs run one at a time: twenty jobs of
    // 300 ms take 6 s, past the lease of the jobs claimed with the first. (A job's run,
    // its wait to resume after `ctx.db` included, stays well within one lease.)
    let configure = |c: &mut plinth::config::Config| {
        c.functions.hook_lease = Some(Duration::from_secs(3));
        c.functions.workers = 2;
    };
    let mut a = TestApp::start_with(Backend::Postgres, configure).await;
    let key = tenant_with_key(&mut a, "shop").await;
    deploy(
        &mut a,
        "shop",
        &[("plinth.toml", MANIFEST), ("functions/slow.js", SLOW)],
    )
    .await
    .ok(201);
    let b = TestApp::start_on(
        Backend::Postgres,
        Storage {
            location: a.storage.location.clone(),
            _dir: None,
        },
        configure,
    )
    .await;

    // One batch of writes through A: A claims their jobs as it commits them.
    let writes: Vec<Value> = (0..JOBS)
        .map(|i| json!({"op": "put", "collection": "tasks", "id": format!("t{i}"), "data": {}}))
        .collect();
    a.post("/v1/t/shop/batch", Some(&key), json!({"writes": writes}))
        .await
        .ok(200);
    // Past A's lease, a write through B: B runs its own job, then claims what is due.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    put(
        &b,
        &key,
        &format!("{}/late", docs("shop", "tasks")),
        json!({}),
    )
    .await
    .ok(201);

    let admin = a.admin().await;
    // Until the outbox is empty and every job's run is in (more runs may be in then).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let (jobs, runs) = loop {
        let jobs = a
            .get("/admin/v1/tenants/shop/jobs", Some(&admin))
            .await
            .ok(200);
        let runs = a
            .get(&format!("{}?limit=1000", docs("shop", "runs")), Some(&key))
            .await
            .ok(200)["items"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let idle = jobs["items"].as_array().is_some_and(Vec::is_empty);
        if (idle && runs.len() > JOBS) || tokio::time::Instant::now() > deadline {
            break (jobs, runs);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        jobs["items"],
        json!([]),
        "the outbox empties; runs: {runs:?}"
    );
    let mut per_doc = std::collections::BTreeMap::<String, usize>::new();
    for r in &runs {
        *per_doc
            .entry(r["data"]["doc"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    assert_eq!(per_doc.len(), JOBS + 1, "{per_doc:?}");
    assert!(
        per_doc.values().all(|n| *n == 1),
        "each job ran once: {per_doc:?}"
    );
    b.stop().await;
}

/// One attempt, with room for a run of 4 s.
const ONE_ATTEMPT: &str = "[[hooks]]\nfunction = \"outlive\"\ncollection = \"orders\"\n\
    on = [\"create\"]\nmax_attempts = 1\n\n[limits.outlive]\ntimeout_ms = 10000\n";

/// 4 s of JavaScript (past a 1 s lease), a note of the run, then a failure.
const OUTLIVE: &str = r#"
export default async (event, ctx) => {
  const end = Date.now() + 4000; while (Date.now() < end) {}
  await ctx.db.put('runs', `attempt-${event.attempt}`, {});
  throw new Error('failed after its lease');
};
"#;

async fn dead_jobs(app: &TestApp, admin: &str) -> Vec<Value> {
    app.get("/admin/v1/tenants/shop/jobs?state=dead", Some(admin))
        .await
        .ok(200)["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Two nodes on one storage. The first claims the job of its write (its one attempt)
/// and runs it past its lease; the second finds it due again at its last attempt and,
/// rather than start a second, leaves it dead, saying its lease ran out. The first run
/// then records its own failure on it: dead after one attempt, run once.
async fn a_claim_starts_no_attempt_past_the_last(b: Backend) {
    let lease = Some(Duration::from_secs(1));
    let mut a = TestApp::start_with(b, |c| c.functions.hook_lease = lease).await;
    let key = tenant_with_key(&mut a, "shop").await;
    deploy(
        &mut a,
        "shop",
        &[
            ("plinth.toml", ONE_ATTEMPT),
            ("functions/outlive.js", OUTLIVE),
        ],
    )
    .await
    .ok(201);
    put(
        &a,
        &key,
        &format!("{}/o1", docs("shop", "orders")),
        json!({}),
    )
    .await
    .ok(201);
    // Started after the write, the second node finds the job at its start, due when
    // the first node's claim runs out.
    let second = TestApp::start_on(
        b,
        Storage {
            location: a.storage.location.clone(),
            _dir: None,
        },
        |c| c.functions.hook_lease = lease,
    )
    .await;
    let admin = a.admin().await;
    let dead = eventually(
        Duration::from_secs(10),
        "the claim leaves it dead",
        || async { dead_jobs(&a, &admin).await.first().cloned() },
    )
    .await;
    assert_eq!(dead["attempts"], 1, "{dead}");
    assert!(
        dead["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("did not finish within its claim's lease")),
        "dead by the second node's claim, before the run ended: {dead}"
    );
    let dead = eventually(
        Duration::from_secs(15),
        "the run's failure recorded",
        || async {
            let jobs = dead_jobs(&a, &admin).await;
            jobs.first()
                .filter(|j| {
                    j["last_error"]
                        .as_str()
                        .is_some_and(|e| e.contains("failed after its lease"))
                })
                .cloned()
        },
    )
    .await;
    assert_eq!(
        (&dead["attempts"], &dead["max_attempts"]),
        (&json!(1), &json!(1)),
        "{dead}"
    );
    // Time for another attempt (4 s) to have run and been noted: none was.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let runs = a.get(&docs("shop", "runs"), Some(&key)).await.ok(200);
    let ids: Vec<&str> = runs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, ["attempt-1"], "{runs}");
    let all = a
        .get("/admin/v1/tenants/shop/jobs", Some(&admin))
        .await
        .ok(200);
    assert_eq!(all["items"].as_array().map(Vec::len), Some(1), "{all}");
    second.stop().await;
}
