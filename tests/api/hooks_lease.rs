//! Hook jobs that wait for a worker keep their claims: a node claims a batch of jobs with
//! a lease and runs them on its workers one after another (the tenant runs on all but one
//! worker); jobs still waiting, or run but not yet recorded, when the lease would end are
//! not taken over by another node and run twice.

use std::time::Duration;

use serde_json::{Value, json};

use crate::documents::{docs, put, tenant_with_key};
use crate::functions::deploy;
use crate::support::*;

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
