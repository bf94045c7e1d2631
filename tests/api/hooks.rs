//! After hooks through the real interfaces: the outbox in the write's transaction, exact
//! counters, retries and dead jobs, runaway recursion, a kill -9 between commit and
//! execution, and one tenant's looping hooks beside another's.

use std::process::Stdio;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::cli::{plinth, serve_process};
use crate::documents::{docs, put, tenant_with_key};
use crate::functions::deploy;
use crate::support::*;

backend_tests!(
    after_hooks_keep_an_exact_tally,
    failing_hooks_retry_then_die_and_can_be_retried,
    hooks_that_trigger_themselves_stop,
    hooks_run_after_a_kill_between_commit_and_execution,
    before_hooks_transform_or_refuse_writes,
    batched_hooks_get_arrays_and_retry_alone,
    acknowledged_hook_writes_happen_once,
    a_superseded_delivery_cannot_acknowledge,
    queued_jobs_are_released_at_shutdown,
    looping_and_failing_hooks_do_not_delay_another_tenants,
);

const HOOK_MANIFEST: &str = r#"
[[hooks]]
function = "tally"
collection = "votes"
on = ["create", "update", "delete"]
when = "true"
"#;

/// Keeps tallies/{poll}.counts exact: the event id is marked in the same batch as the
/// increments, so a re-delivered event changes nothing.
const TALLY: &str = r#"
export default async function (event, ctx) {
  const poll = (event.doc ?? event.before).data.poll;
  const inc = {};
  if (event.before) inc[event.before.data.option] = (inc[event.before.data.option] ?? 0) - 1;
  if (event.doc) inc[event.doc.data.option] = (inc[event.doc.data.option] ?? 0) + 1;
  const writes = [{ op: 'create', collection: 'applied', id: event.id,
                    data: { op: event.op, seq: event.seq, auth: event.auth } }];
  for (const [option, by] of Object.entries(inc)) {
    if (by !== 0) writes.push({ op: 'patch', collection: 'tallies', id: poll,
      patch: [{ op: 'increment', path: `/counts/${option}`, value: by }] });
  }
  try {
    await ctx.db.batch(writes);
  } catch (e) {
    if (e.code === 'precondition_failed') return; // already counted (the marker exists)
    throw e;
  }
}
"#;

/// A tenant's invocation log for one function, once it holds at least `n` entries (it is
/// written in batches, off the invocations' path).
async fn logged(app: &TestApp, admin: &str, tenant: &str, function: &str, n: usize) -> Value {
    let path = format!("/admin/v1/tenants/{tenant}/invocations?function={function}");
    eventually(Duration::from_secs(5), "invocations logged", || async {
        let p = app.get(&path, Some(admin)).await.ok(200);
        (p["items"].as_array().unwrap().len() >= n).then_some(p)
    })
    .await
}

/// The shop tenant's outbox as the admin API lists it (`query`: "" or e.g. "?state=dead").
async fn outbox(app: &TestApp, admin: &str, query: &str) -> Value {
    app.get(&format!("/admin/v1/tenants/shop/jobs{query}"), Some(admin))
        .await
        .ok(200)
}

async fn counts(app: &TestApp, key: &str, tenant: &str) -> Value {
    app.get(&format!("{}/p1", docs(tenant, "tallies")), Some(key))
        .await
        .ok(200)["data"]["counts"]
        .clone()
}

async fn after_hooks_keep_an_exact_tally(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_key(&mut app, "poll").await;
    deploy(
        &mut app,
        "poll",
        &[
            ("plinth.toml", HOOK_MANIFEST),
            ("functions/tally.js", TALLY),
        ],
    )
    .await
    .ok(201);
    put(
        &app,
        &key,
        &format!("{}/p1", docs("poll", "tallies")),
        json!({"counts": {}}),
    )
    .await
    .ok(201);

    // 60 voters vote concurrently; then 20 change their vote and 10 withdraw it.
    let vote = |i: usize, option: &'static str| {
        let req = app
            .req(
                Method::PUT,
                &format!("{}/v{i}", docs("poll", "votes")),
                Some(&key),
            )
            .json(&json!({"poll": "p1", "option": option}));
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let firsts = futures_util::future::join_all(
        (0..60).map(|i| vote(i, if i % 3 == 0 { "red" } else { "blue" })),
    )
    .await;
    assert!(firsts.iter().all(|s| *s == 201), "{firsts:?}");
    let changes = futures_util::future::join_all((0..20).map(|i| vote(i, "green"))).await;
    assert!(changes.iter().all(|s| *s == 200), "{changes:?}");
    for i in 50..60 {
        app.delete(&format!("{}/v{i}", docs("poll", "votes")), Some(&key))
            .await
            .ok(204);
    }
    // What the votes say now, counted from the votes themselves.
    let mut expected = std::collections::BTreeMap::<String, i64>::new();
    let all = app
        .get(&format!("{}?limit=1000", docs("poll", "votes")), Some(&key))
        .await
        .ok(200);
    for v in all["items"].as_array().unwrap() {
        *expected
            .entry(v["data"]["option"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let expected = json!({
        "red": expected.get("red").copied().unwrap_or(0),
        "blue": expected.get("blue").copied().unwrap_or(0),
        "green": expected.get("green").copied().unwrap_or(0),
    });
    let got = eventually(Duration::from_secs(20), "the tally catches up", || async {
        let c = counts(&app, &key, "poll").await;
        let norm = json!({
            "red": c["red"].as_i64().unwrap_or(0),
            "blue": c["blue"].as_i64().unwrap_or(0),
            "green": c["green"].as_i64().unwrap_or(0),
        });
        (norm == expected).then_some(norm)
    })
    .await;
    assert_eq!(got, expected);
    // One job per write, each applied once; the event carried op and seq.
    let applied = app
        .get(
            &format!("{}?limit=1000", docs("poll", "applied")),
            Some(&key),
        )
        .await
        .ok(200);
    let items = applied["items"].as_array().unwrap();
    assert_eq!(items.len(), 60 + 20 + 10);
    assert!(items.iter().any(|i| i["data"]["op"] == "delete"));
    assert!(items.iter().all(|i| i["data"]["seq"].as_i64().unwrap() > 0));
    let admin = app.admin().await;
    // A job is finished (deleted) just after its invocation's writes commit: the last
    // ones may still be on their way.
    eventually(Duration::from_secs(10), "done jobs are deleted", || async {
        let jobs = app
            .get("/admin/v1/tenants/poll/jobs", Some(&admin))
            .await
            .ok(200);
        (jobs["items"] == json!([])).then_some(())
    })
    .await;
    // The log is written off the invocation's path, in batches.
    let log = eventually(Duration::from_secs(5), "the tally is logged", || async {
        let p = app
            .get(
                "/admin/v1/tenants/poll/invocations?function=tally&limit=1",
                Some(&admin),
            )
            .await
            .ok(200);
        (!p["items"].as_array().unwrap().is_empty()).then_some(p)
    })
    .await;
    assert_eq!(log["items"][0]["trigger"], "after");

    // A user's write carries `auth` into the event; writes the `when` excludes queue nothing.
    let user = app.signup("poll", "ann@example.com").await;
    let rules = "[votes]\nread = \"true\"\ncreate = \"auth != null\"\n";
    crate::rules::install_rules(&mut app, "poll", rules)
        .await
        .ok(200);
    let r = app
        .post(
            &docs("poll", "votes"),
            Some(&user.access),
            json!({"poll": "p1", "option": "red"}),
        )
        .await
        .ok(201);
    let id = r["id"].as_str().unwrap().to_string();
    let auth = eventually(
        Duration::from_secs(10),
        "the user's vote is counted",
        || async {
            let a = app
                .get(
                    &format!("{}?limit=1000", docs("poll", "applied")),
                    Some(&key),
                )
                .await
                .ok(200);
            a["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["data"]["auth"].is_object())
                .map(|i| i["data"]["auth"].clone())
        },
    )
    .await;
    assert_eq!(auth["uid"], user.user_id.as_str());
    assert!(!id.is_empty());
}

async fn failing_hooks_retry_then_die_and_can_be_retried(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_key(&mut app, "shop").await;
    let manifest = "[[hooks]]\nfunction = \"flaky\"\ncollection = \"orders\"\non = [\"create\"]\nmax_attempts = 2\n";
    let failing = "export default async (event) => { throw new Error('payment API down for ' + event.doc.id) }";
    deploy(
        &mut app,
        "shop",
        &[("plinth.toml", manifest), ("functions/flaky.js", failing)],
    )
    .await
    .ok(201);
    put(
        &app,
        &key,
        &format!("{}/o1", docs("shop", "orders")),
        json!({"total": 5}),
    )
    .await
    .ok(201);
    let admin = app.admin().await;
    let dead = eventually(
        Duration::from_secs(20),
        "the job dies after 2 attempts",
        || async {
            let p = outbox(&app, &admin, "?state=dead").await;
            p["items"].as_array().unwrap().first().cloned()
        },
    )
    .await;
    assert_eq!(dead["attempts"], 2);
    assert_eq!(dead["function"], "flaky");
    assert_eq!(dead["event"]["doc"]["id"], "o1");
    assert!(
        dead["last_error"]
            .as_str()
            .unwrap()
            .contains("payment API down for o1"),
        "{dead}"
    );
    let id = dead["id"].as_str().unwrap().to_string();
    // Two failed invocations are in the log.
    let log = logged(&app, &admin, "shop", "flaky", 2).await;
    assert_eq!(log["items"].as_array().unwrap().len(), 2);
    assert!(
        log["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["outcome"] == "error")
    );

    // Fixed in a new deploy, then retried: it runs and is gone.
    let fixed = "export default async (event, ctx) => { await ctx.db.put('receipts', event.doc.id, { attempt: event.attempt }) }";
    deploy(
        &mut app,
        "shop",
        &[("plinth.toml", manifest), ("functions/flaky.js", fixed)],
    )
    .await
    .ok(201);
    app.post(
        &format!("/admin/v1/tenants/shop/jobs/{id}/retry"),
        Some(&admin),
        json!({}),
    )
    .await
    .ok(204);
    let receipt = eventually(Duration::from_secs(10), "the retried job runs", || async {
        let r = app
            .get(&format!("{}/o1", docs("shop", "receipts")), Some(&key))
            .await;
        (r.status.as_u16() == 200).then(|| r.json())
    })
    .await;
    assert_eq!(receipt["data"]["attempt"], 1);
    eventually(
        Duration::from_secs(5),
        "the done job is deleted",
        || async {
            let p = outbox(&app, &admin, "").await;
            p["items"].as_array().unwrap().is_empty().then_some(())
        },
    )
    .await;
    // Retrying what is not a dead job.
    app.post(
        &format!("/admin/v1/tenants/shop/jobs/{id}/retry"),
        Some(&admin),
        json!({}),
    )
    .await
    .problem(404, "job_not_found");
    app.get("/admin/v1/tenants/shop/jobs?state=running", Some(&admin))
        .await
        .problem(400, "validation_failed");
}

async fn hooks_that_trigger_themselves_stop(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_key(&mut app, "loop").await;
    let manifest = "[[hooks]]\nfunction = \"again\"\ncollection = \"things\"\non = [\"create\"]\nmax_attempts = 1\n";
    let again = "export default async (event, ctx) => { await ctx.db.create('things', { parent: event.doc.id }) }";
    deploy(
        &mut app,
        "loop",
        &[("plinth.toml", manifest), ("functions/again.js", again)],
    )
    .await
    .ok(201);
    app.post(&docs("loop", "things"), Some(&key), json!({"root": true}))
        .await
        .ok(201);
    let admin = app.admin().await;
    let dead = eventually(
        Duration::from_secs(20),
        "the chain stops at the depth limit",
        || async {
            let p = app
                .get("/admin/v1/tenants/loop/jobs?state=dead", Some(&admin))
                .await
                .ok(200);
            p["items"].as_array().unwrap().first().cloned()
        },
    )
    .await;
    assert!(
        dead["last_error"].as_str().unwrap().contains("hooks deep"),
        "{dead}"
    );
    // The client's document and one per hook depth below the limit (1..=7).
    let things = app
        .get(&format!("{}?limit=100", docs("loop", "things")), Some(&key))
        .await
        .ok(200);
    assert_eq!(things["items"].as_array().unwrap().len(), 8, "{things}");
}

async fn hooks_run_after_a_kill_between_commit_and_execution(b: Backend) {
    let storage = Storage::fresh(b).await;
    let out = plinth(&storage, &["tenant", "create", "poll"], None);
    assert!(out.status.success());
    let out = plinth(
        &storage,
        &["key", "create", "--tenant", "poll", "--name", "t"],
        None,
    );
    let key = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("functions")).unwrap();
    std::fs::write(dir.path().join("plinth.toml"), HOOK_MANIFEST).unwrap();
    std::fs::write(dir.path().join("functions/tally.js"), TALLY).unwrap();
    let d = dir.path().display().to_string();
    let out = plinth(&storage, &["deploy", &d, "--tenant", "poll"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A server that commits writes but runs no hooks: every job stays in the outbox.
    let (mut child, rx) = serve_process(
        &storage,
        &["--listen", "127.0.0.1:0", "--run-hooks", "false"],
        Stdio::null(),
    );
    let base = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("serve output");
        if let Some(rest) = line.strip_prefix("plinth listening on http://") {
            break format!("http://{}", rest.split_whitespace().next().unwrap());
        }
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let put_doc = |path: String, body: Value| {
        let req = http
            .put(format!("{base}{path}"))
            .bearer_auth(&key)
            .json(&body);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(
        put_doc(
            format!("{}/p1", docs("poll", "tallies")),
            json!({"counts": {}})
        )
        .await,
        201
    );
    for i in 0..25 {
        let option = if i % 5 == 0 { "red" } else { "blue" };
        let status = put_doc(
            format!("{}/v{i}", docs("poll", "votes")),
            json!({"poll": "p1", "option": option}),
        )
        .await;
        assert_eq!(status, 201);
    }
    // kill -9: the process gets no chance to run or hand over anything.
    child.kill().unwrap();
    child.wait().unwrap();
    let out = plinth(
        &storage,
        &["jobs", "list", "--tenant", "poll", "--state", "pending"],
        None,
    );
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        listing.lines().count(),
        26,
        "25 pending jobs and a header:\n{listing}"
    );

    // A new server runs them.
    let app = TestApp::start_on(b, storage, |_| {}).await;
    let got = eventually(
        Duration::from_secs(20),
        "the outbox drains after restart",
        || async {
            let c = counts(&app, &key, "poll").await;
            (c == json!({"red": 5, "blue": 20})).then_some(c)
        },
    )
    .await;
    assert_eq!(got, json!({"red": 5, "blue": 20}));
}

async fn before_hooks_transform_or_refuse_writes(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_key(&mut app, "blog").await;
    let manifest = r#"
[[hooks]]
function = "normalize"
collection = "posts"
on = ["create", "update"]
phase = "before"

[[hooks]]
function = "guard"
collection = "locked"
on = ["delete"]
phase = "before"

[[hooks]]
function = "spin"
collection = "slow"
on = ["create"]
phase = "before"
"#;
    let normalize = r#"
export default (event) => {
  const d = event.doc.data;
  if (typeof d.title !== 'string' || !d.title.trim()) throw new Error('title is required');
  const title = d.title.trim();
  return { ...d, title, slug: title.toLowerCase().replace(/[^a-z0-9]+/g, '-'),
           was: event.before ? event.before.data.title : null, op: event.op };
}"#;
    let guard = "export default (event) => { throw new Error(`${event.id} is locked`) }";
    let spin = "export default () => { while (true) {} }";
    deploy(
        &mut app,
        "blog",
        &[
            ("plinth.toml", manifest),
            ("functions/normalize.js", normalize),
            ("functions/guard.js", guard),
            ("functions/spin.js", spin),
        ],
    )
    .await
    .ok(201);

    // Transformed on create, then on a merge patch (the hook sees the patched data).
    let r = app
        .post(
            &docs("blog", "posts"),
            Some(&key),
            json!({"title": "  Hello World "}),
        )
        .await
        .ok(201);
    assert_eq!(r["data"]["slug"], "hello-world");
    assert_eq!(r["data"]["title"], "Hello World");
    assert_eq!(r["data"]["op"], "create");
    let id = r["id"].as_str().unwrap().to_string();
    let path = format!("{}/{id}", docs("blog", "posts"));
    let r = app
        .patch(&path, Some(&key), json!({"title": "Second Take"}))
        .await
        .ok(200);
    assert_eq!(r["data"]["slug"], "second-take");
    assert_eq!(r["data"]["was"], "Hello World");
    assert_eq!(r["version"], 2);

    // Refused: 400 with the hook's message; nothing stored.
    let p = app
        .post(
            &docs("blog", "posts"),
            Some(&key),
            json!({"body": "no title"}),
        )
        .await
        .problem(400, "function_rejected");
    assert_eq!(p["detail"], "title is required");
    let r = app
        .post(
            "/v1/t/blog/batch",
            Some(&key),
            json!({"writes": [
                {"op": "put", "collection": "notes", "id": "n1", "data": {"a": 1}},
                {"op": "create", "collection": "posts", "data": {"title": "   "}}
            ]}),
        )
        .await
        .problem(400, "function_rejected");
    assert_eq!(r["index"], 1);
    app.get(&format!("{}/n1", docs("blog", "notes")), Some(&key))
        .await
        .problem(404, "document_not_found");
    let list = app.get(&docs("blog", "posts"), Some(&key)).await.ok(200);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    // A delete the hook refuses leaves the document.
    put(
        &app,
        &key,
        &format!("{}/k", docs("blog", "locked")),
        json!({"v": 1}),
    )
    .await
    .ok(201);
    let p = app
        .delete(&format!("{}/k", docs("blog", "locked")), Some(&key))
        .await
        .problem(400, "function_rejected");
    assert_eq!(p["detail"], "k is locked");
    app.get(&format!("{}/k", docs("blog", "locked")), Some(&key))
        .await
        .ok(200);

    // Over budget (100 ms by default): a clear error, nothing written.
    app.post(&docs("blog", "slow"), Some(&key), json!({"x": 1}))
        .await
        .problem(504, "function_timeout");
    let list = app.get(&docs("blog", "slow"), Some(&key)).await.ok(200);
    assert_eq!(list["items"], json!([]));
    let admin = app.admin().await;
    let log = eventually(
        Duration::from_secs(5),
        "before invocations logged",
        || async {
            let p = app
                .get(
                    "/admin/v1/tenants/blog/invocations?function=spin",
                    Some(&admin),
                )
                .await
                .ok(200);
            p["items"].as_array().unwrap().first().cloned()
        },
    )
    .await;
    assert_eq!(log["trigger"], "before");
    assert_eq!(log["outcome"], "timeout");
}

/// A hook declared with `batch` gets arrays of events: first attempts of jobs committed
/// together share invocations (at most `batch` each, in seq order); after a failure each
/// job is retried alone, still as an array.
async fn batched_hooks_get_arrays_and_retry_alone(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_key(&mut app, "shop").await;
    let manifest = "[[hooks]]\nfunction = \"record\"\ncollection = \"orders\"\non = [\"create\"]\nbatch = 20\n";
    // Records each invocation; the first attempt of a batch that holds order o7 fails.
    let record = r#"
export default async function (events, ctx) {
  if (!Array.isArray(events)) throw new Error('expected an array');
  const ids = events.map((e) => e.doc.id);
  if (ids.includes('o7') && events[0].attempt === 1) throw new Error('o7 is not ready');
  await ctx.db.create('runs', { ids, seqs: events.map((e) => e.seq),
                                attempts: events.map((e) => e.attempt) });
}
"#;
    deploy(
        &mut app,
        "shop",
        &[("plinth.toml", manifest), ("functions/record.js", record)],
    )
    .await
    .ok(201);
    // 50 orders in one transaction: their 50 jobs are committed, and claimed, together.
    let writes: Vec<Value> = (0..50)
        .map(|i| json!({"op": "create", "collection": "orders", "id": format!("o{i}"), "data": {"n": i}}))
        .collect();
    app.post("/v1/t/shop/batch", Some(&key), json!({ "writes": writes }))
        .await
        .ok(200);
    let runs = eventually(
        Duration::from_secs(20),
        "every order is recorded",
        || async {
            let r = app
                .get(&format!("{}?limit=1000", docs("shop", "runs")), Some(&key))
                .await
                .ok(200);
            let items = r["items"].as_array().unwrap().clone();
            let n: usize = items
                .iter()
                .map(|i| i["data"]["ids"].as_array().unwrap().len())
                .sum();
            (n >= 50).then_some(items)
        },
    )
    .await;
    let mut seen = std::collections::BTreeSet::new();
    let mut sizes = Vec::new();
    for run in &runs {
        let ids = run["data"]["ids"].as_array().unwrap();
        sizes.push(ids.len());
        assert!(ids.len() <= 20, "a batch is at most 20 events: {run}");
        let seqs: Vec<i64> = run["data"]["seqs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_i64().unwrap())
            .collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in seq order: {run}");
        for id in ids {
            assert!(seen.insert(id.as_str().unwrap().to_string()), "{id} twice");
        }
        if ids.iter().any(|i| i == "o7") || run["data"]["attempts"][0] == 2 {
            // The failed batch's jobs come back one by one, on their second attempt.
            assert_eq!(ids.len(), 1, "{run}");
            assert_eq!(run["data"]["attempts"], json!([2]), "{run}");
        }
    }
    assert_eq!(seen.len(), 50, "each order exactly once");
    assert!(
        sizes.iter().any(|n| *n > 1),
        "jobs committed together share an invocation: {sizes:?}"
    );
    let retried = runs
        .iter()
        .filter(|r| r["data"]["attempts"] == json!([2]))
        .count();
    assert!(
        (1..=20).contains(&retried),
        "only the failed batch is retried, job by job: {retried}"
    );

    // A batch of a before hook, a batch out of range and a function taking batches on one
    // hook but single events on another are refused at deploy.
    for (manifest, says) in [
        (
            "[[hooks]]\nfunction = \"record\"\ncollection = \"orders\"\non = [\"create\"]\nphase = \"before\"\nbatch = 5\n",
            "batch is for after hooks only",
        ),
        (
            "[[hooks]]\nfunction = \"record\"\ncollection = \"orders\"\non = [\"create\"]\nbatch = 0\n",
            "batch must be 1 to 256",
        ),
        (
            "[[hooks]]\nfunction = \"record\"\ncollection = \"orders\"\non = [\"create\"]\nbatch = 5\n\n[[hooks]]\nfunction = \"record\"\ncollection = \"items\"\non = [\"create\"]\n",
            "all its after hooks must take batches, or none",
        ),
    ] {
        let r = deploy(
            &mut app,
            "shop",
            &[("plinth.toml", manifest), ("functions/record.js", record)],
        )
        .await;
        assert_eq!(r.status.as_u16(), 400, "{}", r.text);
        assert!(r.text.contains(says), "{says}: {}", r.text);
    }
}

/// Counts orders with acknowledging batches, probing the rules of `{ack: true}` on the way:
/// a refused acknowledging batch can be tried again, a second acknowledgement is refused,
/// and an invocation that fails after acknowledging is not retried.
const ACK_COUNT: &str = r#"
export default async function (event, ctx) {
  const id = event.doc.id;
  let first = null, second = null;
  try {
    await ctx.db.batch([{ op: 'patch', collection: 'counters', id: 'missing',
                          patch: [{ op: 'increment', path: '/n', value: 1 }] }], { ack: true });
  } catch (e) { first = e.code; }
  await ctx.db.batch([{ op: 'patch', collection: 'counters', id: 'c',
                        patch: [{ op: 'increment', path: '/n', value: 1 }] }], { ack: true });
  try {
    await ctx.db.batch([{ op: 'put', collection: 'stray', id, data: {} }], { ack: true });
  } catch (e) { second = e.code; }
  await ctx.db.put('notes', id, { first, second, attempt: event.attempt });
  throw new Error('fails after acknowledging');
}
"#;

async fn acknowledged_hook_writes_happen_once(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_key(&mut app, "shop").await;
    let manifest = "[[hooks]]\nfunction = \"count\"\ncollection = \"orders\"\non = [\"create\"]\nmax_attempts = 3\n\n[[http]]\nname = \"probe\"\nfunction = \"probe\"\n";
    let probe = r#"
export default async function (req, ctx) {
  try {
    await ctx.db.batch([{ op: 'put', collection: 'stray', id: 'http', data: {} }], { ack: true });
    return { status: 200, body: 'acknowledged' };
  } catch (e) {
    return { status: 200, body: JSON.stringify({ code: e.code, status: e.status, message: e.message }) };
  }
}
"#;
    deploy(
        &mut app,
        "shop",
        &[
            ("plinth.toml", manifest),
            ("functions/count.js", ACK_COUNT),
            ("functions/probe.js", probe),
        ],
    )
    .await
    .ok(201);
    put(
        &app,
        &key,
        &format!("{}/c", docs("shop", "counters")),
        json!({"n": 0}),
    )
    .await
    .ok(201);
    for i in 0..3 {
        put(
            &app,
            &key,
            &format!("{}/o{i}", docs("shop", "orders")),
            json!({"i": i}),
        )
        .await
        .ok(201);
    }
    let notes = eventually(Duration::from_secs(20), "three orders noted", || async {
        let p = app.get(&docs("shop", "notes"), Some(&key)).await.ok(200);
        (p["items"].as_array().unwrap().len() >= 3).then_some(p)
    })
    .await;
    for note in notes["items"].as_array().unwrap() {
        // The refused batch (a patch of a missing document) acknowledged nothing, so the
        // next one could; after that the events are acknowledged and a third is refused.
        assert_eq!(note["data"]["first"], "document_not_found", "{note}");
        assert_eq!(note["data"]["second"], "invalid_argument", "{note}");
        assert_eq!(note["data"]["attempt"], 1, "{note}");
    }
    let admin = app.admin().await;
    // Every invocation threw after acknowledging: the jobs are gone, none is retried
    // (a retry would be due 1 to 1.25 s after the failure) and the count is exact.
    let log = logged(&app, &admin, "shop", "count", 3).await;
    assert!(
        log["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["outcome"] == "error"),
        "{log}"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for state in ["pending", "dead"] {
        let jobs = outbox(&app, &admin, &format!("?state={state}")).await;
        assert_eq!(jobs["items"], json!([]), "{state}: {jobs}");
    }
    let log = app
        .get(
            "/admin/v1/tenants/shop/invocations?function=count",
            Some(&admin),
        )
        .await
        .ok(200);
    assert_eq!(
        log["items"].as_array().unwrap().len(),
        3,
        "no retries: {log}"
    );
    let c = app
        .get(&format!("{}/c", docs("shop", "counters")), Some(&key))
        .await
        .ok(200);
    assert_eq!(c["data"]["n"], 3);
    let stray = app.get(&docs("shop", "stray"), Some(&key)).await.ok(200);
    assert_eq!(
        stray["items"],
        json!([]),
        "refused acknowledging batches wrote nothing"
    );

    // Only after hooks acknowledge; elsewhere the batch is refused and writes nothing.
    let r = app
        .send(
            app.req(Method::POST, "/v1/t/shop/fn/probe", Some(&key))
                .body("{}"),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    let said: Value = serde_json::from_str(&r.text).expect("the probe answers JSON");
    assert_eq!(said["code"], "invalid_argument", "{said}");
    assert_eq!(said["status"], 400, "{said}");
    assert!(
        said["message"]
            .as_str()
            .unwrap()
            .contains("only after hooks"),
        "{said}"
    );
    let stray = app.get(&docs("shop", "stray"), Some(&key)).await.ok(200);
    assert_eq!(stray["items"], json!([]));
}

/// Two nodes on one storage. The first claims the job and takes longer than its lease;
/// the second claims it again and acknowledges it. The first's acknowledgement then fails
/// with `delivery_superseded` and writes nothing: the effect happens once.
async fn a_superseded_delivery_cannot_acknowledge(b: Backend) {
    let lease = Some(Duration::from_millis(1500));
    let mut app = TestApp::start_with(b, |c| c.functions.hook_lease = lease).await;
    let key = tenant_with_key(&mut app, "shop").await;
    let manifest = "[[hooks]]\nfunction = \"count\"\ncollection = \"orders\"\non = [\"create\"]\n\n[limits.count]\ntimeout_ms = 10000\n";
    let count = r#"
export default async function (event, ctx) {
  // The first delivery outlives its lease (1.5 s) by far.
  if (event.attempt === 1) { const end = Date.now() + 4000; while (Date.now() < end) {} }
  let outcome = 'acknowledged';
  try {
    await ctx.db.batch([{ op: 'patch', collection: 'counters', id: 'c',
                          patch: [{ op: 'increment', path: '/n', value: 1 }] }], { ack: true });
  } catch (e) { outcome = e.code; }
  await ctx.db.put('notes', `attempt-${event.attempt}`, { outcome });
}
"#;
    deploy(
        &mut app,
        "shop",
        &[("plinth.toml", manifest), ("functions/count.js", count)],
    )
    .await
    .ok(201);
    put(
        &app,
        &key,
        &format!("{}/c", docs("shop", "counters")),
        json!({"n": 0}),
    )
    .await
    .ok(201);
    put(
        &app,
        &key,
        &format!("{}/o1", docs("shop", "orders")),
        json!({}),
    )
    .await
    .ok(201);
    let admin = app.admin().await;
    eventually(
        Duration::from_secs(10),
        "the first node claims the job",
        || async {
            let p = outbox(&app, &admin, "").await;
            (p["items"][0]["attempts"] == 1).then_some(())
        },
    )
    .await;
    let second = TestApp::start_on(
        b,
        Storage {
            location: app.storage.location.clone(),
            _dir: None,
        },
        |c| c.functions.hook_lease = lease,
    )
    .await;
    let notes = eventually(Duration::from_secs(20), "both deliveries noted", || async {
        let p = app.get(&docs("shop", "notes"), Some(&key)).await.ok(200);
        (p["items"].as_array().unwrap().len() >= 2).then_some(p)
    })
    .await;
    let outcome = |id: &str| {
        notes["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id)
            .map(|n| n["data"]["outcome"].clone())
    };
    assert_eq!(outcome("attempt-2"), Some(json!("acknowledged")), "{notes}");
    assert_eq!(
        outcome("attempt-1"),
        Some(json!("delivery_superseded")),
        "{notes}"
    );
    let c = app
        .get(&format!("{}/c", docs("shop", "counters")), Some(&key))
        .await
        .ok(200);
    assert_eq!(c["data"]["n"], 1, "counted once");
    let jobs = outbox(&app, &admin, "").await;
    assert_eq!(jobs["items"], json!([]), "{jobs}");
    second.stop().await;
}

/// A node claims the jobs of its own writes as it commits them and runs them from memory.
/// Those still queued when it shuts down go back to the outbox, so the next node runs them
/// at once rather than when their claims (130 s by default) run out.
async fn queued_jobs_are_released_at_shutdown(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_key(&mut app, "shop").await;
    let manifest = "[[hooks]]\nfunction = \"mark\"\ncollection = \"orders\"\non = [\"create\"]\n\n[limits.mark]\ntimeout_ms = 10000\n";
    let mark = r#"
export default async function (event, ctx) {
  if (event.doc.id === 'slow') {
    await ctx.db.put('started', 'slow', {});
    const end = Date.now() + 2500; while (Date.now() < end) {}
  }
  await ctx.db.put('seen', event.doc.id, { attempt: event.attempt });
}
"#;
    deploy(
        &mut app,
        "shop",
        &[("plinth.toml", manifest), ("functions/mark.js", mark)],
    )
    .await
    .ok(201);
    put(
        &app,
        &key,
        &format!("{}/slow", docs("shop", "orders")),
        json!({}),
    )
    .await
    .ok(201);
    // Once 'slow' has started, the runner is busy with it; the next jobs wait in its memory.
    eventually(Duration::from_secs(10), "the slow job starts", || async {
        let r = app
            .get(&format!("{}/slow", docs("shop", "started")), Some(&key))
            .await;
        (r.status.as_u16() == 200).then_some(())
    })
    .await;
    for id in ["a", "b"] {
        put(
            &app,
            &key,
            &format!("{}/{id}", docs("shop", "orders")),
            json!({}),
        )
        .await
        .ok(201);
    }
    let admin = app.admin().await;
    let jobs = outbox(&app, &admin, "").await;
    let items = jobs["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{jobs}");
    assert!(
        items.iter().all(|j| j["attempts"] == 1),
        "claimed at birth: {jobs}"
    );
    let storage = app.stop().await;
    let app = TestApp::start_on(b, storage, |_| {}).await;
    for id in ["a", "b"] {
        let seen = eventually(Duration::from_secs(10), "a released job runs", || async {
            let r = app
                .get(&format!("{}/{id}", docs("shop", "seen")), Some(&key))
                .await;
            (r.status.as_u16() == 200).then(|| r.json())
        })
        .await;
        assert_eq!(
            seen["data"]["attempt"], 1,
            "released on its first attempt: {seen}"
        );
    }
}

/// Tenant `gamma`'s hooks write, then loop until their 30 s budget ends, on more jobs than
/// it has workers; tenant `theta`'s hooks throw and are retried. Tenant `delta`'s one-line
/// hook still runs at once (the pool keeps a worker from any one tenant, and no tenant's
/// jobs wait for another's), and the server then stops without waiting for the loops.
async fn looping_and_failing_hooks_do_not_delay_another_tenants(b: Backend) {
    const WORKERS: usize = 3;
    let mut app = TestApp::start_with(b, |c| c.functions.workers = WORKERS).await;
    let gamma = tenant_with_key(&mut app, "gamma").await;
    let theta = tenant_with_key(&mut app, "theta").await;
    let delta = tenant_with_key(&mut app, "delta").await;
    let hook = |function: &str, extra: &str| {
        format!(
            "[[hooks]]\nfunction = \"{function}\"\ncollection = \"orders\"\non = [\"create\"]\n{extra}"
        )
    };
    // The write first: a loop that follows a host call is resumed, not started, by a worker.
    let spin = "export default async (event, ctx) => { await ctx.db.put('started', event.doc.id, {}); for (;;) {} }";
    let spin_manifest = hook(
        "spin",
        "max_attempts = 2\n\n[limits.spin]\ntimeout_ms = 30000\n",
    );
    let fail = "export default async (event) => { throw new Error('no ' + event.doc.id) }";
    let mark =
        "export default async (event, ctx) => { await ctx.db.put('marks', event.doc.id, {}) }";
    for (tenant, manifest, file, source) in [
        ("gamma", spin_manifest, "functions/spin.js", spin),
        (
            "theta",
            hook("fail", "max_attempts = 5\n"),
            "functions/fail.js",
            fail,
        ),
        ("delta", hook("mark", ""), "functions/mark.js", mark),
    ] {
        deploy(
            &mut app,
            tenant,
            &[("plinth.toml", manifest.as_str()), (file, source)],
        )
        .await
        .ok(201);
    }
    // Committed together, gamma's jobs are claimed and started together: more than its share.
    let orders = |n: usize| {
        let writes: Vec<Value> = (0..n)
            .map(|i| json!({"op": "create", "collection": "orders", "id": format!("o{i}"), "data": {}}))
            .collect();
        json!({ "writes": writes })
    };
    app.post("/v1/t/gamma/batch", Some(&gamma), orders(WORKERS + 1))
        .await
        .ok(200);
    eventually(
        Duration::from_secs(10),
        "gamma's hooks loop on all the workers it may use",
        || async {
            let p = app
                .get(&docs("gamma", "started"), Some(&gamma))
                .await
                .ok(200);
            (p["items"].as_array().unwrap().len() >= WORKERS - 1).then_some(())
        },
    )
    .await;
    app.post("/v1/t/theta/batch", Some(&theta), orders(10))
        .await
        .ok(200);

    let written = std::time::Instant::now();
    put(
        &app,
        &delta,
        &format!("{}/o1", docs("delta", "orders")),
        json!({}),
    )
    .await
    .ok(201);
    eventually(
        Duration::from_secs(5),
        "delta's hook runs beside gamma's loops",
        || async {
            let r = app
                .get(&format!("{}/o1", docs("delta", "marks")), Some(&delta))
                .await;
            (r.status.as_u16() == 200).then_some(())
        },
    )
    .await;
    println!(
        "delta's hook ran {:?} after its write (gamma looping, theta failing)",
        written.elapsed()
    );

    let stopping = std::time::Instant::now();
    app.stop().await;
    let stopped = stopping.elapsed();
    println!("the server stopped in {stopped:?} with gamma's hooks looping");
    assert!(
        stopped < Duration::from_secs(20),
        "the stop waited for the looping hooks (30 s budget): {stopped:?}"
    );
}
